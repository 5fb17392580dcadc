//! Short-lived TURN credentials for coturn's TURN REST API (`use-auth-secret`).
//!
//! coturn, started with `use-auth-secret` and `static-auth-secret=<secret>`, accepts any user
//! name of the form `expiry:user` whose password is `base64(HMAC-SHA1(secret, username))`,
//! until the Unix time `expiry` passes. The signaling service shares the secret with coturn and
//! hands each client a fresh pair with [`TurnConfig::credentials`], so no TURN password is
//! long-lived and nothing needs provisioning per user.
//!
//! ```
//! use signaling::turn::TurnConfig;
//!
//! let turn = TurnConfig::new(vec!["turn:turn.example.com:3478".into()], "shared-secret", 600)?;
//! let server = turn.credentials("player-42", 1_700_000_000);
//! assert_eq!(server.username.as_deref(), Some("1700000600:player-42"));
//! # Ok::<(), signaling::turn::TurnError>(())
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::protocol::IceServer;

/// Longest lifetime of TURN credentials, in seconds.
pub const MAX_TURN_TTL_S: u64 = 3600;

/// Longest user part of a TURN user name, in characters; enough for any account id, and it
/// keeps the STUN USERNAME attribute well under its 513-byte limit.
const MAX_USER_CHARS: usize = 64;

/// URL schemes an `RTCIceServer` accepts.
const SCHEMES: [&str; 3] = ["turn:", "turns:", "stun:"];

/// Why a TURN configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// No server URL was configured.
    #[error("no TURN server URL was given; configure at least one `turn:` or `turns:` URL")]
    NoUrls,
    /// A URL is not a `turn:`, `turns:` or `stun:` URL.
    #[error(
        "{url:?} is not a TURN or STUN URL; write it as `turn:host:port`, `turns:host:port` or \
         `stun:host:port`"
    )]
    BadUrl {
        /// The URL as configured.
        url: String,
    },
    /// The shared secret is empty.
    #[error("the TURN shared secret is empty; set it to coturn's `static-auth-secret`")]
    EmptySecret,
}

/// Where the TURN servers are and the secret shared with them.
///
/// [`TurnConfig::new`] validates; the fields are public for reading, and [`TurnConfig::credentials`]
/// clamps `ttl_s` again in case they were changed. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct TurnConfig {
    /// `turn:`, `turns:` or `stun:` URLs handed to clients as they are.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// How long minted credentials last, in seconds (`1..=`[`MAX_TURN_TTL_S`]).
    pub ttl_s: u64,
}

impl fmt::Debug for TurnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnConfig")
            .field("urls", &self.urls)
            .field("secret", &"<redacted>")
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

impl TurnConfig {
    /// A configuration for the servers at `urls` sharing `secret`, minting credentials that last
    /// `ttl_s` seconds, clamped to `1..=`[`MAX_TURN_TTL_S`].
    ///
    /// Fails if `urls` is empty, a URL does not start with `turn:`, `turns:` or `stun:`
    /// (in any case) followed by a host, or `secret` is empty.
    pub fn new(
        urls: Vec<String>,
        secret: impl Into<String>,
        ttl_s: u64,
    ) -> Result<Self, TurnError> {
        if urls.is_empty() {
            return Err(TurnError::NoUrls);
        }
        if let Some(bad) = urls.iter().find(|url| !is_ice_url(url)) {
            return Err(TurnError::BadUrl { url: bad.clone() });
        }
        let secret = secret.into();
        if secret.is_empty() {
            return Err(TurnError::EmptySecret);
        }
        Ok(TurnConfig {
            urls,
            secret,
            ttl_s: clamp_ttl(ttl_s),
        })
    }

    /// Credentials for `user`, valid from `now_unix` for the configured TTL, as an ICE server
    /// entry for the client.
    ///
    /// The user name is `expiry:user`. `user` only labels the allocation in coturn's logs, so
    /// it is sanitised rather than refused: `:` (coturn's separator) and control characters
    /// are dropped and it is cut to 64 characters.
    pub fn credentials(&self, user: &str, now_unix: u64) -> IceServer {
        let expiry = now_unix.saturating_add(clamp_ttl(self.ttl_s));
        let user: String = user
            .chars()
            .filter(|c| *c != ':' && !c.is_control())
            .take(MAX_USER_CHARS)
            .collect();
        let username = format!("{expiry}:{user}");
        let mut mac = Hmac::<Sha1>::new_from_slice(self.secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(username.as_bytes());
        let credential = STANDARD.encode(mac.finalize().into_bytes());
        IceServer {
            urls: self.urls.clone(),
            username: Some(username),
            credential: Some(credential),
        }
    }
}

fn clamp_ttl(ttl_s: u64) -> u64 {
    ttl_s.clamp(1, MAX_TURN_TTL_S)
}

fn is_ice_url(url: &str) -> bool {
    SCHEMES.iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
            && url.len() > scheme.len()
    }) && !url.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn config(ttl_s: u64) -> TurnConfig {
        TurnConfig::new(
            vec!["turn:turn.example.com:3478?transport=udp".into()],
            "north-wind-turn-secret",
            ttl_s,
        )
        .expect("valid config")
    }

    #[test]
    fn known_vector() {
        let server = config(3600).credentials("player-42", NOW);
        assert_eq!(server.urls, ["turn:turn.example.com:3478?transport=udp"]);
        assert_eq!(server.username.as_deref(), Some("1700003600:player-42"));
        // Computed independently with:
        //   printf '%s' '1700003600:player-42' \
        //     | openssl dgst -sha1 -hmac 'north-wind-turn-secret' -binary | base64
        assert_eq!(
            server.credential.as_deref(),
            Some("gx2ZhRgMprz1Qgh8Qy3sFNCk2qM=")
        );
        // The browser's RTCIceServer spelling.
        let json = serde_json::to_value(&server).expect("serialises");
        assert_eq!(json["username"], "1700003600:player-42");
        assert_eq!(json["credential"], "gx2ZhRgMprz1Qgh8Qy3sFNCk2qM=");
    }

    #[test]
    fn ttl_is_clamped() {
        assert_eq!(config(86_400).ttl_s, MAX_TURN_TTL_S);
        assert_eq!(config(0).ttl_s, 1);
        assert_eq!(config(600).ttl_s, 600);
        let expiry = |c: &TurnConfig| c.credentials("u", NOW).username.expect("set");
        assert_eq!(expiry(&config(0)), format!("{}:u", NOW + 1));

        // Fields changed after `new` are clamped when minting.
        let mut loose = config(600);
        loose.ttl_s = u64::MAX;
        assert_eq!(expiry(&loose), format!("{}:u", NOW + MAX_TURN_TTL_S));
        let late = config(600).credentials("u", u64::MAX);
        assert_eq!(late.username, Some(format!("{}:u", u64::MAX)));
    }

    #[test]
    fn user_is_sanitised() {
        let c = config(60);
        let name = |user: &str| c.credentials(user, NOW).username.expect("set");
        assert_eq!(name("a:b:c"), format!("{}:abc", NOW + 60));
        assert_eq!(
            name("evil\n\r\t\u{0}\u{7f}x"),
            format!("{}:evilx", NOW + 60)
        );
        assert_eq!(name(""), format!("{}:", NOW + 60));
        assert_eq!(name("jörg"), format!("{}:jörg", NOW + 60));
        let long = "x".repeat(200);
        assert_eq!(name(&long), format!("{}:{}", NOW + 60, "x".repeat(64)));
        let long_wide = "é".repeat(100);
        assert_eq!(name(&long_wide), format!("{}:{}", NOW + 60, "é".repeat(64)));
    }

    #[test]
    fn config_is_validated() {
        let ok =
            |urls: &[&str]| TurnConfig::new(urls.iter().map(|u| u.to_string()).collect(), "s", 60);
        assert!(ok(&["turn:a:3478", "turns:a:5349?transport=tcp", "stun:a"]).is_ok());
        assert!(ok(&["TURN:a:3478"]).is_ok());
        assert_eq!(ok(&[]).map(|_| ()), Err(TurnError::NoUrls));
        for bad in ["http://a", "turn:", "turn", "", "turn: a", "é", "stuns:a"] {
            assert_eq!(
                ok(&["turn:a", bad]).map(|_| ()),
                Err(TurnError::BadUrl { url: bad.into() }),
                "{bad:?}"
            );
        }
        assert_eq!(
            TurnConfig::new(vec!["turn:a".into()], "", 60).map(|_| ()),
            Err(TurnError::EmptySecret)
        );
        let err = ok(&["http://a"]).expect_err("bad");
        assert!(err.to_string().contains("turn:host:port"), "{err}");
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", config(60));
        assert!(!shown.contains("north-wind"), "{shown}");
        assert!(shown.contains("turn.example.com"), "{shown}");
    }
}
