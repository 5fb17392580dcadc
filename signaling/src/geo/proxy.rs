//! Trusted-proxy header parsing: the client's address from `X-Forwarded-For` and its
//! location from `X-Client-*`, believed only when the TCP peer is a trusted proxy.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

#[cfg(feature = "service")]
use axum::http::HeaderMap;

use super::net::Net;
use super::{GeoError, quote};
#[cfg(feature = "service")]
use super::{GeoIpDb, LatLon, Location, normalize_country, normalize_region};

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
pub(super) const X_FORWARDED_FOR: &str = "x-forwarded-for";
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
