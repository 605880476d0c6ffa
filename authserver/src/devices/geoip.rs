//! GeoIP: where an address is, from a MaxMind-format database file (`geoip.database`:
//! GeoLite2/GeoIP2 Country or City, or any database with the same record shape). A
//! country database gives the ISO country code only; a city database also gives
//! coordinates, which the impossible-travel check needs.
//!
//! The file is read into memory once at start-up (no mmap: that would need `unsafe`,
//! and a replaced file under a running pod must not change what it reads); a file that
//! is missing, unreadable or not a MaxMind DB stops `serve` with an error naming it.
//! What the database says is not trusted further than its shape: a country code must
//! be two ASCII letters and coordinates must be finite and on Earth, or they are left out.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("failed to open the GeoIP database {}: {source}", path.display())]
pub struct OpenError {
    pub path: PathBuf,
    #[source]
    pub source: maxminddb::MaxMindDbError,
}

/// Where an address is, as far as the database knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    /// Latitude and longitude in degrees (city databases only).
    pub coordinates: Option<(f64, f64)>,
}

/// An open database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata().database_type)
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// Reads and checks the database at `path` (its metadata and search tree layout; a
    /// lookup that meets a broken record later finds nothing and says so in the log).
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| OpenError {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::from_reader(reader, path))
    }

    /// A database from its bytes (tests).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, maxminddb::MaxMindDbError> {
        Ok(Self::from_reader(
            maxminddb::Reader::from_source(bytes)?,
            Path::new("(memory)"),
        ))
    }

    fn from_reader(reader: maxminddb::Reader<Vec<u8>>, path: &Path) -> Self {
        tracing::info!(
            path = %path.display(),
            database_type = %reader.metadata().database_type,
            "GeoIP database loaded"
        );
        Self {
            reader,
            path: path.to_owned(),
        }
    }

    /// Where `ip` is; nothing for an address the database does not cover (private
    /// ranges, for one).
    pub fn locate(&self, ip: IpAddr) -> Place {
        let record = self
            .reader
            .lookup(ip)
            .and_then(|r| r.decode::<maxminddb::geoip2::City<'_>>());
        let city = match record {
            Ok(Some(c)) => c,
            Ok(None) => return Place::default(),
            Err(e) => {
                tracing::warn!(error = %e, path = %self.path.display(), "GeoIP lookup failed");
                return Place::default();
            }
        };
        let country = city
            .country
            .iso_code
            .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase);
        let coordinates = match (city.location.latitude, city.location.longitude) {
            (Some(lat), Some(lon))
                if lat.is_finite()
                    && lon.is_finite()
                    && (-90.0..=90.0).contains(&lat)
                    && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            _ => None,
        };
        Place {
            country,
            coordinates,
        }
    }
}

#[cfg(test)]
mod tests {
    use testkit::mmdb::{Value, Writer, city_record, country_record};

    use super::*;

    fn city_db() -> Vec<u8> {
        Writer::new("GeoIP2-City")
            .insert(
                "198.51.100.0".parse().unwrap(),
                24,
                &city_record("DE", "Berlin", 52.52, 13.405),
            )
            .insert(
                "203.0.113.0".parse().unwrap(),
                24,
                &city_record("AU", "Sydney", -33.8688, 151.2093),
            )
            .insert(
                "2001:db8::".parse().unwrap(),
                32,
                &city_record("JP", "Tokyo", 35.6762, 139.6503),
            )
            .build()
    }

    #[test]
    fn the_test_writer_makes_a_database_the_maxmind_reader_verifies_and_reads() {
        let reader = maxminddb::Reader::from_source(city_db()).expect("opens");
        reader.verify().expect("a valid MaxMind DB");
        let m = reader.metadata();
        assert_eq!(m.database_type, "GeoIP2-City");
        assert_eq!((m.ip_version, m.record_size), (6, 24));
        assert_eq!(m.binary_format_major_version, 2);
        let hit = reader.lookup("198.51.100.77".parse().unwrap()).unwrap();
        let city: maxminddb::geoip2::City<'_> = hit.decode().unwrap().expect("a record");
        assert_eq!(city.country.iso_code, Some("DE"));
        assert_eq!(city.city.names.english, Some("Berlin"));
        assert_eq!(city.location.latitude, Some(52.52));
        assert_eq!(hit.network().unwrap().to_string(), "198.51.100.0/24");
        let miss = reader.lookup("192.0.2.1".parse().unwrap()).unwrap();
        assert!(!miss.has_data());
        // An IPv4-only database too.
        let v4 = Writer::ipv4("GeoLite2-Country")
            .insert("10.0.0.0".parse().unwrap(), 8, &country_record("NL"))
            .build();
        let reader = maxminddb::Reader::from_source(v4).expect("opens");
        reader.verify().expect("valid");
        let c: maxminddb::geoip2::Country<'_> = reader
            .lookup("10.1.2.3".parse().unwrap())
            .unwrap()
            .decode()
            .unwrap()
            .expect("a record");
        assert_eq!(c.country.iso_code, Some("NL"));
    }

    #[test]
    fn addresses_are_located_by_country_and_coordinates() {
        let geo = GeoIp::from_bytes(city_db()).unwrap();
        let berlin = geo.locate("198.51.100.9".parse().unwrap());
        assert_eq!(berlin.country.as_deref(), Some("DE"));
        assert_eq!(berlin.coordinates, Some((52.52, 13.405)));
        let tokyo = geo.locate("2001:db8::1".parse().unwrap());
        assert_eq!(tokyo.country.as_deref(), Some("JP"));
        assert_eq!(geo.locate("10.0.0.1".parse().unwrap()), Place::default());
        assert_eq!(geo.locate("::1".parse().unwrap()), Place::default());
    }

    #[test]
    fn odd_records_are_left_out_rather_than_trusted() {
        let db = Writer::new("GeoIP2-City")
            .insert(
                "198.51.100.0".parse().unwrap(),
                24,
                &city_record("<script>", "X", 91.0, 13.0),
            )
            .insert(
                "203.0.113.0".parse().unwrap(),
                24,
                &Value::map([("country", Value::str("not a map"))]),
            )
            .insert("192.0.2.0".parse().unwrap(), 24, &country_record("fr"))
            .build();
        let geo = GeoIp::from_bytes(db).unwrap();
        assert_eq!(
            geo.locate("198.51.100.1".parse().unwrap()),
            Place::default(),
            "a bad code and a latitude beyond the pole"
        );
        assert_eq!(geo.locate("203.0.113.1".parse().unwrap()), Place::default());
        assert_eq!(
            geo.locate("192.0.2.1".parse().unwrap()).country.as_deref(),
            Some("FR")
        );
    }

    #[test]
    fn a_missing_or_broken_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mmdb");
        let e = GeoIp::open(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.mmdb"), "{e}");
        let broken = dir.path().join("broken.mmdb");
        std::fs::write(&broken, b"this is not a database").unwrap();
        let e = GeoIp::open(&broken).unwrap_err().to_string();
        assert!(e.contains("broken.mmdb"), "{e}");
        let good = dir.path().join("good.mmdb");
        std::fs::write(&good, city_db()).unwrap();
        assert!(GeoIp::open(&good).is_ok());
    }
}
