//! Where a client is: its real IP address behind proxies, and its location.
//!
//! - [`client_ip`] finds the client's address from the TCP peer and `X-Forwarded-For`, trusting
//!   the header only when the peer is one of the configured [`TrustedProxies`].
//! - [`GeoIpDb`] maps addresses to a [`Location`] (country, region, coordinates) from a CSV file
//!   with longest-prefix matching.
//! - [`location_from_headers`] reads the location a trusted proxy or CDN put in `X-Client-*`
//!   headers, and [`resolve_location`] combines all of the above.
//! - [`great_circle_km`] measures the distance between two [`LatLon`] points, for ranking nodes
//!   when the client has not measured round-trip times.
//!
//! Nothing here does network I/O; [`GeoIpDb::load`] is the only function that touches the file
//! system.
//!
//! ```
//! use signaling::geo::{resolve_location, GeoIpDb, TrustedProxies};
//! use axum::http::HeaderMap;
//!
//! let db = GeoIpDb::parse("198.51.100.0/24,FR,eu-west,48.8566,2.3522\n")?;
//! let proxies = TrustedProxies::parse(&["10.0.0.0/8".to_string()])?;
//! let mut headers = HeaderMap::new();
//! headers.insert("x-forwarded-for", "198.51.100.7".parse().expect("ascii"));
//! let peer = "10.1.2.3".parse().expect("literal");
//! let (ip, location) = resolve_location(peer, &headers, &proxies, Some(&db));
//! assert_eq!(ip.to_string(), "198.51.100.7");
//! assert_eq!(location.country.as_deref(), Some("FR"));
//! # Ok::<(), signaling::geo::GeoError>(())
//! ```

// The proxy-header helpers are the service's; without it they are unused.
#![cfg_attr(not(feature = "service"), allow(dead_code))]

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod db;
mod net;
mod proxy;
#[cfg(all(test, feature = "service"))]
mod tests;

pub use db::GeoIpDb;
pub use proxy::TrustedProxies;
#[cfg(feature = "service")]
pub use proxy::{client_ip, location_from_headers, resolve_location};

/// Mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Longest region name accepted, so that a header or a database cannot make us carry
/// arbitrarily long strings into logs and deny reasons.
const MAX_REGION_LEN: usize = 64;

/// Longest piece of offending input quoted back in an error message.
const MAX_QUOTED_LEN: usize = 80;

/// What can go wrong reading a GeoIP database or a trusted-proxy list.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// A line of GeoIP database text (see [`GeoIpDb::parse`]) is malformed.
    #[error("geoip database line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A line of a GeoIP database file (see [`GeoIpDb::load`]) is malformed.
    #[error("geoip database {}, line {line}: {message}", path.display())]
    FileLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The GeoIP database file could not be read.
    #[error("cannot read geoip database {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An entry of the trusted-proxy list is not an address or CIDR network.
    #[error("trusted proxy entry {index} ({entry:?}): {message}")]
    Proxy {
        /// 0-based position in the list.
        index: usize,
        /// The entry as given (shortened if very long).
        entry: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A point on Earth in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    /// Latitude in degrees, -90 (south) to 90 (north).
    pub lat: f64,
    /// Longitude in degrees, -180 (west) to 180 (east).
    pub lon: f64,
}

impl LatLon {
    /// A point, or `None` if either value is not finite or out of range.
    pub fn new(lat: f64, lon: f64) -> Option<Self> {
        // RangeInclusive::contains is false for NaN, and infinities are out of range, so this
        // also rejects non-finite values.
        if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) {
            Some(Self { lat, lon })
        } else {
            None
        }
    }
}

/// Great-circle distance between two points in kilometres (haversine formula on a sphere with
/// the mean Earth radius; within about 0.5 % of the ellipsoidal distance, plenty for ranking).
pub fn great_circle_km(a: LatLon, b: LatLon) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    // Rounding can push h a hair above 1 for antipodal points, which would make asin NaN.
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// What is known about where a client is. Every field may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code, uppercase (`"FR"`).
    pub country: Option<String>,
    /// Free-form region name, lowercase (`"eu-west"`).
    pub region: Option<String>,
    /// Approximate coordinates.
    pub coords: Option<LatLon>,
}

impl Location {
    /// True when nothing at all is known.
    pub fn is_unknown(&self) -> bool {
        self.country.is_none() && self.region.is_none() && self.coords.is_none()
    }

    /// Fills the fields this location lacks from `other`, keeping the ones it has.
    fn fill_from(&mut self, other: Location) {
        if self.country.is_none() {
            self.country = other.country;
        }
        if self.region.is_none() {
            self.region = other.region;
        }
        if self.coords.is_none() {
            self.coords = other.coords;
        }
    }
}

/// A normalised ISO country code, or `None` if `s` is not two ASCII letters.
///
/// `XX` and `ZZ` are user-assigned codes that CDNs send for "unknown"; treating them as a real
/// country would let an unknown client slip past a country embargo, so they count as absent.
pub(crate) fn normalize_country(s: &str) -> Option<String> {
    let s = s.trim();
    if !is_alpha2(s) {
        return None;
    }
    let upper = s.to_ascii_uppercase();
    (upper != "XX" && upper != "ZZ").then_some(upper)
}

fn is_alpha2(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A normalised region name, or `None` if `s` is empty, too long, or has characters other
/// than ASCII letters, digits, `-`, `_` and `.`.
pub(crate) fn normalize_region(s: &str) -> Option<String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= MAX_REGION_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| s.to_ascii_lowercase())
}

/// Cuts untrusted text down to a size fit for an error message.
fn quote(s: &str) -> String {
    if s.len() <= MAX_QUOTED_LEN {
        return s.to_string();
    }
    let mut end = MAX_QUOTED_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
