//! A tiny MaxMind DB writer (format 2.0, <https://maxmind.github.io/MaxMind-DB/>), so that
//! tests build the GeoIP database they need instead of shipping a real one (GeoLite2 is
//! licensed and far too large for a fixture).
//!
//! Layout written: the binary search tree over the address bits (24-bit records, one
//! node per trie node, the root first), 16 zero bytes, the data section (one record per
//! inserted network, values encoded as the spec's maps, strings, doubles and unsigned
//! integers), then `\xAB\xCD\xEFMaxMind.com` and the metadata map.
//!
//! What it does not model: pointers and deduplication in the data section (every
//! network gets its own record), record sizes other than 24 bits, and more than 2^24
//! nodes plus data. Networks inserted later that fall inside an earlier, shorter one
//! split it; an earlier network inside a later, shorter one is overwritten.

use std::net::IpAddr;

/// A value of the data section.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Bool(bool),
    Map(Vec<(String, Value)>),
    Array(Vec<Value>),
}

impl Value {
    /// A map from `(key, value)` pairs.
    pub fn map<const N: usize>(pairs: [(&str, Value); N]) -> Self {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    /// A string.
    pub fn str(s: &str) -> Self {
        Value::Str(s.to_owned())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Str(s) => {
                control(out, 2, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            Value::Double(d) => {
                control(out, 3, 8);
                out.extend_from_slice(&d.to_be_bytes());
            }
            Value::U16(v) => unsigned(out, 5, u64::from(*v)),
            Value::U32(v) => unsigned(out, 6, u64::from(*v)),
            Value::U64(v) => unsigned(out, 9, *v),
            Value::Bool(b) => control(out, 14, usize::from(*b)),
            Value::Map(pairs) => {
                control(out, 7, pairs.len());
                for (k, v) in pairs {
                    Value::Str(k.clone()).encode(out);
                    v.encode(out);
                }
            }
            Value::Array(items) => {
                control(out, 11, items.len());
                for v in items {
                    v.encode(out);
                }
            }
        }
    }
}

/// A control byte for `kind` with `size` (types above 7 are "extended": type 0 in the
/// control byte and `kind - 7` in the next one; sizes of 29 and more take extra bytes).
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (small, extra): (u8, Vec<u8>) = if size < 29 {
        (u8::try_from(size).expect("under 29"), Vec::new())
    } else if size < 285 {
        (29, vec![u8::try_from(size - 29).expect("under 256")])
    } else if size < 65_821 {
        let v = u16::try_from(size - 285).expect("under 65536");
        (30, v.to_be_bytes().to_vec())
    } else {
        let v = u32::try_from(size - 65_821).expect("a test-sized value");
        (31, v.to_be_bytes()[1..].to_vec())
    };
    if kind <= 7 {
        out.push((kind << 5) | small);
    } else {
        out.push(small);
        out.push(kind - 7);
    }
    out.extend_from_slice(&extra);
}

/// An unsigned integer in as few big-endian bytes as it needs.
fn unsigned(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Empty,
    Node(usize),
    /// An offset into the data section.
    Data(usize),
}

/// A database under construction.
#[derive(Debug)]
pub struct Writer {
    ip_version: u16,
    database_type: String,
    nodes: Vec<[Record; 2]>,
    data: Vec<u8>,
}

impl Writer {
    /// An IPv6 database (IPv4 addresses live at `::a.b.c.d`, as in MaxMind's own
    /// databases) of `database_type` (e.g. `GeoIP2-City`, `GeoLite2-Country`).
    pub fn new(database_type: &str) -> Self {
        Self {
            ip_version: 6,
            database_type: database_type.to_owned(),
            nodes: vec![[Record::Empty; 2]],
            data: Vec::new(),
        }
    }

    /// An IPv4-only database.
    pub fn ipv4(database_type: &str) -> Self {
        Self {
            ip_version: 4,
            ..Self::new(database_type)
        }
    }

    /// Maps the network `addr/prefix` to `value`. Panics on an IPv6 network in an IPv4
    /// database or a prefix longer than the address.
    pub fn insert(&mut self, addr: IpAddr, prefix: u8, value: &Value) -> &mut Self {
        let (bits, depth) = match (addr, self.ip_version) {
            (IpAddr::V4(v4), 4) => (u128::from(u32::from(v4)) << 96, prefix),
            (IpAddr::V4(v4), _) => (u128::from(u32::from(v4)), 96 + prefix),
            (IpAddr::V6(v6), 6) => (u128::from(v6), prefix),
            (IpAddr::V6(_), _) => panic!("an IPv6 network in an IPv4 database"),
        };
        let total = if self.ip_version == 4 { 32 } else { 128 };
        assert!(
            usize::from(depth) <= total,
            "prefix longer than the address"
        );
        assert!(depth > 0, "a network needs at least one bit");
        let offset = self.data.len();
        value.encode(&mut self.data);
        // The address's bit i from the top (an IPv4 database's addresses were shifted
        // to the top 32 bits above).
        let bit_at = |i: usize| -> usize { usize::from((bits >> (127 - i)) & 1 == 1) };
        let mut node = 0;
        for i in 0..usize::from(depth) {
            let bit = bit_at(i);
            if i + 1 == usize::from(depth) {
                self.nodes[node][bit] = Record::Data(offset);
                break;
            }
            node = match self.nodes[node][bit] {
                Record::Node(n) => n,
                other => {
                    // Empty, or a shorter network being split: both halves keep it.
                    let fill = if let Record::Data(_) = other {
                        other
                    } else {
                        Record::Empty
                    };
                    self.nodes.push([fill; 2]);
                    let n = self.nodes.len() - 1;
                    self.nodes[node][bit] = Record::Node(n);
                    n
                }
            };
        }
        self
    }

    /// The database file's bytes.
    pub fn build(&self) -> Vec<u8> {
        let node_count = self.nodes.len();
        let record = |r: Record| -> u32 {
            let v = match r {
                Record::Empty => node_count,
                Record::Node(n) => n,
                Record::Data(off) => node_count + 16 + off,
            };
            let v = u32::try_from(v).expect("a test-sized database");
            assert!(v < (1 << 24), "record does not fit 24 bits");
            v
        };
        let mut out = Vec::with_capacity(node_count * 6 + 16 + self.data.len() + 256);
        for [left, right] in &self.nodes {
            out.extend_from_slice(&record(*left).to_be_bytes()[1..]);
            out.extend_from_slice(&record(*right).to_be_bytes()[1..]);
        }
        out.extend_from_slice(&[0; 16]);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        Value::map([
            (
                "node_count",
                Value::U32(u32::try_from(node_count).expect("a test-sized database")),
            ),
            ("record_size", Value::U16(24)),
            ("ip_version", Value::U16(self.ip_version)),
            ("database_type", Value::Str(self.database_type.clone())),
            ("languages", Value::Array(vec![Value::str("en")])),
            ("binary_format_major_version", Value::U16(2)),
            ("binary_format_minor_version", Value::U16(0)),
            ("build_epoch", Value::U64(1_700_000_000)),
            (
                "description",
                Value::map([("en", Value::str("Gatehouse test database"))]),
            ),
        ])
        .encode(&mut out);
        out
    }
}

/// A GeoIP2-City-shaped record: country ISO code and name, a city name, coordinates.
pub fn city_record(iso_code: &str, city: &str, latitude: f64, longitude: f64) -> Value {
    Value::map([
        (
            "city",
            Value::map([("names", Value::map([("en", Value::str(city))]))]),
        ),
        (
            "country",
            Value::map([
                ("iso_code", Value::str(iso_code)),
                ("names", Value::map([("en", Value::str(iso_code))])),
            ]),
        ),
        (
            "location",
            Value::map([
                ("accuracy_radius", Value::U16(20)),
                ("latitude", Value::Double(latitude)),
                ("longitude", Value::Double(longitude)),
            ]),
        ),
    ])
}

/// A GeoIP2-Country-shaped record.
pub fn country_record(iso_code: &str) -> Value {
    Value::map([("country", Value::map([("iso_code", Value::str(iso_code))]))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_extra_bytes_the_spec_defines() {
        let mut out = Vec::new();
        control(&mut out, 2, 28);
        assert_eq!(out, [0x40 | 0x1c]);
        out.clear();
        control(&mut out, 2, 29);
        assert_eq!(out, [0x40 | 0x1d, 0]);
        out.clear();
        control(&mut out, 2, 300);
        assert_eq!(out, [0x40 | 0x1e, 0, 15]);
        out.clear();
        control(&mut out, 11, 2);
        assert_eq!(out, [2, 4], "an extended type");
        out.clear();
        unsigned(&mut out, 6, 0x0102);
        assert_eq!(out, [0xc0 | 2, 1, 2]);
    }

    #[test]
    fn a_network_is_one_path_of_nodes_ending_in_data() {
        let mut w = Writer::ipv4("Test");
        w.insert("10.0.0.0".parse().unwrap(), 8, &country_record("DE"));
        // Eight bits: the root and seven more nodes, the last pointing at data.
        assert_eq!(w.nodes.len(), 8);
        assert_eq!(w.nodes[7][0], Record::Data(0));
        let bytes = w.build();
        assert!(
            bytes
                .windows(14)
                .any(|win| win == b"\xAB\xCD\xEFMaxMind.com")
        );
    }
}
