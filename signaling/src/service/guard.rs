//! Checks at the door: bearer keys, `Origin`s, tokens, and per-connection rate limits.

use std::time::Instant;

use axum::http::{HeaderMap, header};
use subtle_eq::ct_eq;

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes one token; `false` when the peer is over its rate.
    pub(crate) fn allow(&mut self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The bearer token of an `Authorization` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Whether the request carries `Authorization: Bearer <key>` (compared in constant time).
pub(crate) fn has_key(headers: &HeaderMap, key: &str) -> bool {
    bearer(headers).is_some_and(|given| ct_eq(given.as_bytes(), key.as_bytes()))
}

/// Whether a browser's `Origin` may open a client WebSocket: absent (not a browser), the
/// service's own host, or listed in `allowed`.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.iter().any(|a| a == origin || a == "*") {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

mod subtle_eq {
    /// Compares without an early exit, so timing does not reveal the common prefix.
    pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let mut rl = RateLimiter::new(10.0, 5.0);
        let t0 = rl.last;
        assert!((0..5).all(|_| rl.allow_at(t0)));
        assert!(!rl.allow_at(t0));
        assert!(rl.allow_at(t0 + Duration::from_millis(100)));
        assert!(!rl.allow_at(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn origins() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("play.example.com"));
        assert!(origin_allowed(&h, &[]), "no Origin: not a browser");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://play.example.com"),
        );
        assert!(origin_allowed(&h, &[]));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!origin_allowed(&h, &[]));
        assert!(origin_allowed(&h, &["https://evil.example".to_string()]));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!origin_allowed(&h, &[]));
    }

    #[test]
    fn keys() {
        let mut h = HeaderMap::new();
        assert!(!has_key(&h, "k"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret-key"),
        );
        assert!(has_key(&h, "secret-key"));
        assert!(!has_key(&h, "secret-kez"));
        assert!(!has_key(&h, "secret"));
    }
}
