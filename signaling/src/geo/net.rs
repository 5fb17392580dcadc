//! IPv4 and IPv6 networks in CIDR notation, shared by the GeoIP database and the
//! trusted-proxy list.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::quote;

/// The netmask with the top `len` bits set; `len` is at most 32.
pub(super) fn mask_v4(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

/// The netmask with the top `len` bits set; `len` is at most 128.
pub(super) fn mask_v6(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

/// An IPv4 or IPv6 network: address bits (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Net {
    V4(u32, u8),
    V6(u128, u8),
}

impl Net {
    /// Parses `a.b.c.d/len`, `v6::addr/len` or a bare address (a single host).
    ///
    /// Host bits must be zero: `10.0.0.1/8` is probably a typo, and silently widening or
    /// narrowing it would change who is trusted or where a client is placed.
    /// Networks inside `::ffff:0:0/96` are stored as IPv4 so they match mapped lookups.
    pub(super) fn parse(s: &str) -> Result<Self, String> {
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

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip.to_canonical()) {
            (Net::V4(bits, len), IpAddr::V4(v4)) => u32::from(v4) & mask_v4(len) == bits,
            (Net::V6(bits, len), IpAddr::V6(v6)) => u128::from(v6) & mask_v6(len) == bits,
            _ => false,
        }
    }
}
