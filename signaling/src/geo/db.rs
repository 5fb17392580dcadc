//! The GeoIP database: a CSV file of networks and their locations, looked up by longest
//! prefix.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use super::net::{Net, mask_v4, mask_v6};
use super::{
    GeoError, LatLon, Location, MAX_REGION_LEN, is_alpha2, normalize_country, normalize_region,
    quote,
};

/// Column names of the GeoIP CSV; a first data line equal to this is a header row and skipped.
const CSV_COLUMNS: &str = "network,country,region,latitude,longitude";

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
