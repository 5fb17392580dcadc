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

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

#[cfg(feature = "service")]
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// Longest region name accepted, so that a header or a database cannot make us carry
/// arbitrarily long strings into logs and deny reasons.
const MAX_REGION_LEN: usize = 64;

/// Longest piece of offending input quoted back in an error message.
const MAX_QUOTED_LEN: usize = 80;

/// Column names of the GeoIP CSV; a first data line equal to this is a header row and skipped.
const CSV_COLUMNS: &str = "network,country,region,latitude,longitude";

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

/// The netmask with the top `len` bits set; `len` is at most 32.
fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The netmask with the top `len` bits set; `len` is at most 128.
fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// An IPv4 or IPv6 network: address bits (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

impl Net {
    /// Parses `a.b.c.d/len`, `v6::addr/len` or a bare address (a single host).
    ///
    /// Host bits must be zero: `10.0.0.1/8` is probably a typo, and silently widening or
    /// narrowing it would change who is trusted or where a client is placed.
    /// Networks inside `::ffff:0:0/96` are stored as IPv4 so they match mapped lookups.
    fn parse(s: &str) -> Result<Self, String> {
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not an IP address", quote(addr.trim())))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => {
                let len = len.trim();
                // u8::from_str accepts a leading '+', which no CIDR notation has.
                let parsed = if len.starts_with('+') {
                    None
                } else {
                    len.parse::<u8>().ok()
                };
                match parsed {
                    Some(n) if n <= max => n,
                    _ => {
                        return Err(format!(
                            "prefix length {:?} is not a number from 0 to {max}",
                            quote(len)
                        ));
                    }
                }
            }
        };
        let net = match ip {
            IpAddr::V4(v4) => Net::V4(u32::from(v4), len),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if len >= 96 => Net::V4(u32::from(v4), len - 96),
                _ => Net::V6(u128::from(v6), len),
            },
        };
        let host_bits_zero = match net {
            Net::V4(bits, len) => bits & !mask_v4(len) == 0,
            Net::V6(bits, len) => bits & !mask_v6(len) == 0,
        };
        if !host_bits_zero {
            let (bits, len) = match net {
                Net::V4(bits, len) => (IpAddr::V4(Ipv4Addr::from(bits & mask_v4(len))), len),
                Net::V6(bits, len) => (IpAddr::V6(Ipv6Addr::from(bits & mask_v6(len))), len),
            };
            return Err(format!(
                "{:?} has host bits set (did you mean {bits}/{len}?)",
                quote(s.trim())
            ));
        }
        Ok(net)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip.to_canonical()) {
            (Net::V4(bits, len), IpAddr::V4(v4)) => u32::from(v4) & mask_v4(len) == bits,
            (Net::V6(bits, len), IpAddr::V6(v6)) => u128::from(v6) & mask_v6(len) == bits,
            _ => false,
        }
    }
}

/// An IP-to-location table with longest-prefix matching, loaded from CSV.
///
/// # File format
///
/// One network per line, five comma-separated fields:
///
/// ```text
/// # network,country,region,latitude,longitude
/// 203.0.113.0/24,FR,eu-west,48.8566,2.3522
/// 203.0.113.128/25,DE,eu-central,50.1109,8.6821
/// 2001:db8::/32,US,us-east,,
/// 198.51.100.7,,,,
/// ```
///
/// - `network` is an IPv4 or IPv6 CIDR network; a bare address is a single host (/32 or /128).
///   Host bits must be zero. Networks inside `::ffff:0:0/96` are treated as the IPv4 networks
///   they map.
/// - `country` is an ISO 3166-1 alpha-2 code (any case; `XX` and `ZZ` mean unknown), `region`
///   a name of ASCII letters, digits, `-`, `_` and `.` (stored lowercase), `latitude` and
///   `longitude` decimal degrees given together.
/// - Every field but `network` may be empty. All five fields must be present.
/// - Blank lines and everything from `#` to the end of a line are ignored, and so is a first
///   line that spells out the column names as above.
/// - A network may appear only once.
///
/// When several networks contain an address, the longest prefix wins.
#[derive(Debug, Clone, Default)]
pub struct GeoIpDb {
    /// Locations, indexed by the maps below.
    locations: Vec<Location>,
    /// Per IPv4 prefix length (descending), network bits to location index.
    v4: Vec<(u8, HashMap<u32, usize>)>,
    /// Per IPv6 prefix length (descending), network bits to location index.
    v6: Vec<(u8, HashMap<u128, usize>)>,
}

impl GeoIpDb {
    /// Parses database text in the format described on [`GeoIpDb`].
    pub fn parse(text: &str) -> Result<Self, GeoError> {
        // Per-prefix-length hash maps: a lookup costs one hash probe per prefix length present
        // in the file (a handful for real databases, at most 33 + 129), independent of the
        // number of networks.
        let mut v4: HashMap<u8, HashMap<u32, usize>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, usize>> = HashMap::new();
        // Line numbers of the networks, to name the first occurrence of a duplicate.
        let mut lines: Vec<usize> = Vec::new();
        let mut locations = Vec::new();
        let mut seen_data = false;

        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw
                .split_once('#')
                .map_or(raw, |(data, _comment)| data)
                .trim();
            if content.is_empty() {
                continue;
            }
            let first = !seen_data;
            seen_data = true;
            if first && is_header_row(content) {
                continue;
            }
            let err = |message: String| GeoError::Line { line, message };

            let fields: Vec<&str> = content.split(',').map(str::trim).collect();
            let [network, country, region, lat, lon] = fields[..] else {
                return Err(err(format!(
                    "expected 5 comma-separated fields ({CSV_COLUMNS}), found {}",
                    fields.len()
                )));
            };
            let net = Net::parse(network).map_err(|m| err(format!("network: {m}")))?;
            let location = parse_location_fields(country, region, lat, lon).map_err(err)?;

            let slot = locations.len();
            let previous = match net {
                Net::V4(bits, len) => *v4.entry(len).or_default().entry(bits).or_insert(slot),
                Net::V6(bits, len) => *v6.entry(len).or_default().entry(bits).or_insert(slot),
            };
            if previous != slot {
                return Err(err(format!(
                    "network {network} is already listed on line {}",
                    lines[previous]
                )));
            }
            locations.push(location);
            lines.push(line);
        }

        let mut v4: Vec<_> = v4.into_iter().collect();
        v4.sort_unstable_by_key(|(len, _)| Reverse(*len));
        let mut v6: Vec<_> = v6.into_iter().collect();
        v6.sort_unstable_by_key(|(len, _)| Reverse(*len));
        Ok(Self { locations, v4, v6 })
    }

    /// Reads and parses a database file; errors name the file and line.
    pub fn load(path: &Path) -> Result<Self, GeoError> {
        let text = std::fs::read_to_string(path).map_err(|source| GeoError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            GeoError::Line { line, message } => GeoError::FileLine {
                path: path.to_path_buf(),
                line,
                message,
            },
            other => other,
        })
    }

    /// The location of the most specific network containing `ip`, if any. IPv4-mapped IPv6
    /// addresses (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4 peers) look up as IPv4.
    pub fn lookup(&self, ip: IpAddr) -> Option<Location> {
        let index = match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4
                    .iter()
                    .find_map(|(len, map)| map.get(&(bits & mask_v4(*len))))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6
                    .iter()
                    .find_map(|(len, map)| map.get(&(bits & mask_v6(*len))))
            }
        }?;
        self.locations.get(*index).cloned()
    }

    /// Number of networks.
    pub fn len(&self) -> usize {
        self.locations.len()
    }

    /// True when the database has no networks.
    pub fn is_empty(&self) -> bool {
        self.locations.is_empty()
    }
}

fn is_header_row(content: &str) -> bool {
    let normalized: String = content
        .split(',')
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(",");
    normalized.eq_ignore_ascii_case(CSV_COLUMNS)
}

/// The location from the non-network fields of a database line.
fn parse_location_fields(
    country: &str,
    region: &str,
    lat: &str,
    lon: &str,
) -> Result<Location, String> {
    let country = match country {
        "" => None,
        // XX and ZZ are valid codes that mean "unknown"; normalize_country maps them to None.
        c if is_alpha2(c) => normalize_country(c),
        c => {
            return Err(format!(
                "country {:?} is not a two-letter ISO 3166-1 code",
                quote(c)
            ));
        }
    };
    let region = match region {
        "" => None,
        r => Some(normalize_region(r).ok_or_else(|| {
            format!(
                "region {:?} must be 1 to {MAX_REGION_LEN} ASCII letters, digits, '-', '_' or '.'",
                quote(r)
            )
        })?),
    };
    let coords = match (lat, lon) {
        ("", "") => None,
        ("", _) | (_, "") => {
            return Err("latitude and longitude must be given together".to_string());
        }
        (lat, lon) => {
            let parse = |s: &str| s.parse::<f64>().ok();
            let point = parse(lat)
                .zip(parse(lon))
                .and_then(|(lat, lon)| LatLon::new(lat, lon));
            Some(point.ok_or_else(|| {
                format!(
                    "coordinates {:?},{:?} are not a latitude from -90 to 90 and a longitude \
                     from -180 to 180",
                    quote(lat),
                    quote(lon)
                )
            })?)
        }
    };
    Ok(Location {
        country,
        region,
        coords,
    })
}

/// The proxies whose `X-Forwarded-For` and `X-Client-*` headers are believed.
///
/// Only list proxies that overwrite (not append to) the `X-Client-*` headers and append the
/// address they received a connection from to `X-Forwarded-For`; anything else lets clients
/// choose where they appear to be. The default trusts nobody.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies {
    nets: Vec<Net>,
}

impl TrustedProxies {
    /// Parses addresses (`192.0.2.10`, `2001:db8::1`) and CIDR networks (`10.0.0.0/8`,
    /// `2001:db8::/32`). Host bits of a network must be zero.
    pub fn parse(list: &[String]) -> Result<Self, GeoError> {
        let nets = list
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                Net::parse(entry.trim()).map_err(|message| GeoError::Proxy {
                    index,
                    entry: quote(entry),
                    message,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// True when `ip` is a trusted proxy. IPv4-mapped IPv6 addresses match IPv4 entries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

/// Header a proxy appends the address it received the request from to.
const X_FORWARDED_FOR: &str = "x-forwarded-for";
/// Location headers a trusted proxy or CDN sets (see [`location_from_headers`]).
const X_CLIENT_COUNTRY: &str = "x-client-country";
const X_CLIENT_REGION: &str = "x-client-region";
const X_CLIENT_LAT: &str = "x-client-lat";
const X_CLIENT_LON: &str = "x-client-lon";

#[cfg(feature = "service")]
/// The client's IP address, given the TCP peer and the request headers.
///
/// - If `peer` is not a trusted proxy, `peer` is the answer and `X-Forwarded-For` is ignored:
///   anyone can send that header.
/// - Otherwise the entries of all `X-Forwarded-For` headers (in order, each a comma-separated
///   list) are walked from right to left. Trusted proxies are skipped; the first untrusted
///   address is the client. Entries may carry a port (`192.0.2.1:5678`, `[2001:db8::1]:443`).
/// - A malformed entry stops the walk and the last trusted hop (possibly `peer`) is returned:
///   whatever is left of garbage was not written by a proxy we trust.
/// - If every entry is a trusted proxy, the leftmost one is returned.
///
/// IPv4-mapped IPv6 addresses are returned as IPv4.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    let values: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
    let mut last_trusted = peer;
    for value in values.into_iter().rev() {
        // A header that is not visible ASCII is one malformed entry.
        let Ok(list) = value.to_str() else {
            return last_trusted;
        };
        for entry in list.rsplit(',') {
            match parse_hop(entry) {
                None => return last_trusted,
                Some(ip) if trusted.contains(ip) => last_trusted = ip,
                Some(ip) => return ip,
            }
        }
    }
    last_trusted
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (IPv6 then in brackets).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|sa| sa.ip()))
        .or_else(|| {
            let inner = entry.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

#[cfg(feature = "service")]
/// The one value of header `name`, if present exactly once and visible ASCII.
///
/// A repeated location header is ignored: a proxy that appends instead of replacing would
/// leave the client's own value next to its own, and we cannot tell which is which.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

#[cfg(feature = "service")]
/// The location a proxy or CDN put in `X-Client-Country` (ISO 3166-1 alpha-2),
/// `X-Client-Region`, `X-Client-Lat` and `X-Client-Lon`.
///
/// **Only call this for a request whose TCP peer is a trusted proxy** (see
/// [`TrustedProxies`]); from anyone else these headers are whatever the client wants us to
/// believe. [`resolve_location`] does that check.
///
/// Each field is validated on its own and an invalid or repeated one is ignored: a country
/// must be two letters (`XX` and `ZZ` mean unknown), a region ASCII letters, digits, `-`, `_`
/// or `.`, and latitude and longitude finite, in range, and both present. Returns `None` when
/// no field is valid.
pub fn location_from_headers(headers: &HeaderMap) -> Option<Location> {
    let country = single_header(headers, X_CLIENT_COUNTRY).and_then(normalize_country);
    let region = single_header(headers, X_CLIENT_REGION).and_then(normalize_region);
    let coordinate = |name| single_header(headers, name)?.trim().parse::<f64>().ok();
    let coords = coordinate(X_CLIENT_LAT)
        .zip(coordinate(X_CLIENT_LON))
        .and_then(|(lat, lon)| LatLon::new(lat, lon));
    let location = Location {
        country,
        region,
        coords,
    };
    (!location.is_unknown()).then_some(location)
}

#[cfg(feature = "service")]
/// The client's IP address (see [`client_ip`]) and location.
///
/// When `peer` is a trusted proxy, the fields of its `X-Client-*` headers (see
/// [`location_from_headers`]) come first; the GeoIP database entry for the resolved client
/// address fills the fields they leave unknown. Location headers from an untrusted peer are
/// ignored. Fields neither source knows stay `None`.
pub fn resolve_location(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    db: Option<&GeoIpDb>,
) -> (IpAddr, Location) {
    let ip = client_ip(peer, headers, trusted);
    let mut location = if trusted.contains(peer) {
        location_from_headers(headers).unwrap_or_default()
    } else {
        Location::default()
    };
    if let Some(found) = db.and_then(|db| db.lookup(ip)) {
        location.fill_from(found);
    }
    (ip, location)
}

#[cfg(all(test, feature = "service"))]
mod tests;
