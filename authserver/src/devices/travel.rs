//! Impossible travel: the speed a user would have needed between their previous sign-in
//! and this one, from the two places (GeoIP city coordinates) and times. Pure: the
//! caller brings both sightings and `now`.

use crate::clock::UnixTime;

/// Mean Earth radius (IUGG), km.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Closer than this, two sign-ins are never flagged: a city database places an address
/// only within tens of kilometres (its accuracy radius), and two providers in one city
/// can be that far apart on the map.
pub const MIN_DISTANCE_KM: f64 = 100.0;

/// Great-circle distance between two points in degrees (haversine), in km.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The journey between two sign-ins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Journey {
    pub distance_km: f64,
    pub elapsed_seconds: i64,
    /// km/h; infinite when no time passed between two distinct places.
    pub speed_kmh: f64,
}

impl Journey {
    /// From the previous sign-in (`from`, at `then`) to this one (`to`, at `now`).
    pub fn between(from: (f64, f64), then: UnixTime, to: (f64, f64), now: UnixTime) -> Self {
        let distance_km = distance_km(from, to);
        let elapsed_seconds = (now - then).max(0);
        // Seconds to hours in f64: exact for any realistic elapsed time.
        #[allow(clippy::cast_precision_loss)]
        let hours = elapsed_seconds as f64 / 3600.0;
        let speed_kmh = if hours > 0.0 {
            distance_km / hours
        } else if distance_km > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        Self {
            distance_km,
            elapsed_seconds,
            speed_kmh,
        }
    }

    /// Whether this journey is impossible at `max_kmh` (0: the check is off).
    pub fn impossible(&self, max_kmh: u32) -> bool {
        max_kmh > 0 && self.distance_km >= MIN_DISTANCE_KM && self.speed_kmh > f64::from(max_kmh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERLIN: (f64, f64) = (52.52, 13.405);
    const SYDNEY: (f64, f64) = (-33.8688, 151.2093);
    const POTSDAM: (f64, f64) = (52.3906, 13.0645);

    #[test]
    fn distances_are_great_circle_kilometres() {
        let d = distance_km(BERLIN, SYDNEY);
        assert!((16_000.0..16_200.0).contains(&d), "{d}");
        assert!(distance_km(BERLIN, BERLIN).abs() < 1e-9);
        let d = distance_km(BERLIN, POTSDAM);
        assert!((20.0..35.0).contains(&d), "{d}");
        // Antipodes: half the circumference, no NaN from rounding.
        let d = distance_km((0.0, 0.0), (0.0, 180.0));
        assert!(
            (d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0,
            "{d}"
        );
    }

    #[test]
    fn minutes_between_continents_are_impossible_and_a_day_is_not() {
        let fast = Journey::between(BERLIN, 1_000, SYDNEY, 1_000 + 10 * 60);
        assert!(fast.speed_kmh > 90_000.0, "{fast:?}");
        assert!(fast.impossible(900));
        let slow = Journey::between(BERLIN, 1_000, SYDNEY, 1_000 + 24 * 3600);
        assert!((600.0..700.0).contains(&slow.speed_kmh), "{slow:?}");
        assert!(!slow.impossible(900));
        assert!(slow.impossible(500));
        assert!(!fast.impossible(0), "0 is off");
    }

    #[test]
    fn the_same_second_elsewhere_is_infinitely_fast_and_nearby_is_never_flagged() {
        let j = Journey::between(BERLIN, 5, SYDNEY, 5);
        assert!(j.speed_kmh.is_infinite() && j.impossible(20_000));
        let j = Journey::between(BERLIN, 5, BERLIN, 5);
        assert!(j.speed_kmh.abs() < f64::EPSILON && !j.impossible(1));
        // Potsdam one minute after Berlin: fast, but within the database's accuracy.
        let j = Journey::between(BERLIN, 0, POTSDAM, 60);
        assert!(j.speed_kmh > 900.0 && !j.impossible(900), "{j:?}");
        // A clock going backwards counts as no time.
        let j = Journey::between(BERLIN, 100, SYDNEY, 50);
        assert_eq!(j.elapsed_seconds, 0);
    }
}
