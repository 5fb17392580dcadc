//! Short-lived signed tokens that admit a client or a node to the WebSocket.
//!
//! An endpoint behind an operator-configured [`TokenKey`] issues tokens with [`TokenKey::issue`];
//! the WebSocket upgrade checks them with [`TokenKey::verify`] and then spends the token's nonce
//! in a [`ReplayCache`] (or, with several replicas, in Redis with `SET NX EX`), so that a token
//! admits exactly one connection.
//!
//! # Wire format (v1)
//!
//! The format is small enough that another party holding the key — an identity provider's
//! backend, say — can mint tokens without this crate:
//!
//! ```text
//! token     = "v1." payload "." signature
//! payload   = BASE64URL-NOPAD( claims as a UTF-8 JSON object )
//! signature = BASE64URL-NOPAD( HMAC-SHA256( key, ASCII bytes of "v1." payload ) )
//! ```
//!
//! - BASE64URL-NOPAD is the URL-safe alphabet of RFC 4648 §5 (`-` and `_`) *without* `=`
//!   padding; padded or non-canonical encodings are refused.
//! - The MAC covers the payload exactly as transmitted, so any JSON serialiser will do; the
//!   receiver never re-serialises.
//! - `key` is the raw key bytes: for a key configured as text (see [`TokenKey::from_secret_str`])
//!   that is the text's UTF-8 bytes, with no decoding and no trimming.
//! - The whole token must be at most [`MAX_TOKEN_BYTES`] bytes.
//!
//! The claims ([`Claims`]) are a JSON object with these members; unknown members are ignored:
//!
//! | member  | type    | meaning                                                                |
//! |---------|---------|------------------------------------------------------------------------|
//! | `sub`   | string  | who the token is for: a player or account id, or a node id             |
//! | `aud`   | string  | [`AUD_CLIENT`] (`"stratus-client"`) or [`AUD_NODE`] (`"stratus-node"`)  |
//! | `iat`   | integer | issued at, Unix seconds                                                |
//! | `exp`   | integer | expires at, Unix seconds; `exp - iat` at most [`MAX_TOKEN_LIFETIME_S`] |
//! | `nonce` | string  | 16 to 64 lowercase hex digits, unique per token (use 128 random bits)  |
//! | `title` | string  | optional: the title the token is restricted to                         |
//!
//! A token is accepted while `exp > now - CLOCK_SKEW_S` and `iat <= now + CLOCK_SKEW_S`
//! ([`CLOCK_SKEW_S`]), so the issuer's and the service's clocks must agree to a few seconds.
//!
//! Minting a token in Python, for example:
//!
//! ```python
//! import base64, hashlib, hmac, json, os, time
//!
//! def b64(raw: bytes) -> str:
//!     return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
//!
//! now = int(time.time())
//! claims = {"sub": "player-42", "aud": "stratus-client", "iat": now, "exp": now + 60,
//!           "nonce": os.urandom(16).hex()}
//! signing_input = "v1." + b64(json.dumps(claims).encode())
//! mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
//! token = signing_input + "." + b64(mac)
//! ```
//!
//! In Rust:
//!
//! ```
//! use signaling::token::{AUD_CLIENT, TokenKey};
//!
//! let key = TokenKey::from_secret_str("an operator-chosen secret of 32+ characters")?;
//! let now = 1_700_000_000;
//! let (token, issued) = key.issue("player-42", AUD_CLIENT, 60, None, now)?;
//! let claims = key.verify(&token, AUD_CLIENT, now + 10)?;
//! assert_eq!(claims, issued);
//! # Ok::<(), signaling::token::TokenError>(())
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Longest lifetime (`exp - iat`) a token may have, in seconds.
pub const MAX_TOKEN_LIFETIME_S: u64 = 300;

/// Largest token accepted, in bytes; longer input is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 2048;

/// How far the issuer's clock may be off from ours, in seconds, in either direction.
pub const CLOCK_SKEW_S: u64 = 5;

/// Audience of tokens that admit a player's client.
pub const AUD_CLIENT: &str = "stratus-client";

/// Audience of tokens that admit a node agent.
pub const AUD_NODE: &str = "stratus-node";

/// Shortest key accepted, in bytes: HMAC-SHA256 is only as strong as its key, and 32 random
/// bytes match the hash's 256-bit output.
const MIN_KEY_BYTES: usize = 32;

/// Bounds on the nonce's length, in hex digits: at least 64 bits, and short enough that a
/// replay store is not filled with junk.
const NONCE_HEX_LEN: std::ops::RangeInclusive<usize> = 16..=64;

/// The version prefix of the one format this build speaks. It is part of the MAC input, so a
/// token cannot be re-labelled as another version.
const PREFIX: &str = "v1.";

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused, or a key or token could not be made.
///
/// The messages are written for the person holding the token; [`TokenError::reason`] gives a
/// short label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("no token was given; get one from the token endpoint and present it when connecting")]
    Missing,
    /// The token is not in the v1 format, or (when issuing) the token would be invalid.
    #[error("the token is malformed ({0}); ask for a new one")]
    Malformed(String),
    /// The MAC does not match: the token was altered or signed with another key.
    #[error(
        "the token's signature does not match; it was altered or signed with another key, \
         ask for a new one"
    )]
    BadSignature,
    /// The token's `exp` has passed.
    #[error("the token has expired; ask for a new one")]
    Expired,
    /// The token's `iat` lies in the future.
    #[error("the token is not valid yet; check that this machine's clock and the issuer's agree")]
    NotYetValid,
    /// The token's `exp - iat` exceeds [`MAX_TOKEN_LIFETIME_S`].
    #[error(
        "the token lives longer than {MAX_TOKEN_LIFETIME_S} seconds; the issuer must give it an \
         earlier expiry"
    )]
    TooLongLived,
    /// The token was issued for another audience (a node token used by a client, say).
    #[error("the token is meant for {got:?}, not {expected:?}; ask for a token for {expected:?}")]
    WrongAudience {
        /// The audience the verifier wanted.
        expected: String,
        /// The audience in the token.
        got: String,
    },
    /// The token's nonce was already spent.
    #[error("the token was already used; ask for a new token for each connection")]
    Replayed,
    /// The key offered is too short to be safe.
    #[error(
        "the token key is too short: use at least {MIN_KEY_BYTES} bytes of random data \
         (e.g. the output of `openssl rand -base64 48`)"
    )]
    WeakKey,
}

impl TokenError {
    /// A short snake_case label for metrics and logs, e.g. `expired`.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::TooLongLived => "too_long_lived",
            TokenError::WrongAudience { .. } => "wrong_audience",
            TokenError::Replayed => "replayed",
            TokenError::WeakKey => "weak_key",
        }
    }
}

/// What a token asserts. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the token is for: a player or account id, or a node id.
    pub sub: String,
    /// Which service role it admits: [`AUD_CLIENT`] or [`AUD_NODE`].
    pub aud: String,
    /// When it was issued.
    pub iat: u64,
    /// When it expires.
    pub exp: u64,
    /// A unique value (lowercase hex) so that each token can be spent once.
    pub nonce: String,
    /// The title the token is restricted to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// The secret key that signs and checks tokens.
///
/// Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct TokenKey {
    // The keyed HMAC state, cloned for each token, so the key schedule runs once.
    mac: HmacSha256,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A key from raw bytes; at least 32 bytes, else [`TokenError::WeakKey`].
    pub fn new(bytes: &[u8]) -> Result<Self, TokenError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(TokenError::WeakKey);
        }
        let mac = HmacSha256::new_from_slice(bytes).expect("HMAC accepts keys of any length");
        Ok(TokenKey { mac })
    }

    /// A key from an operator's configured secret text, of at least 32 characters.
    ///
    /// The text's UTF-8 bytes are the key as they stand: the text is not decoded from hex or
    /// base64 and not trimmed, so a trailing newline read from a file is part of the key, and
    /// another issuer must use exactly the same bytes. Because the text is used raw, its
    /// strength is its entropy, not its length: 32 hex digits carry only 128 bits. Generate it
    /// with e.g. `openssl rand -base64 48`.
    pub fn from_secret_str(s: &str) -> Result<Self, TokenError> {
        // Counting characters, not bytes, keeps the rule the operator reads ("32 characters")
        // true for non-ASCII text too; 32 characters are always at least 32 bytes.
        if s.chars().count() < MIN_KEY_BYTES {
            return Err(TokenError::WeakKey);
        }
        Self::new(s.as_bytes())
    }

    /// A fresh random 256-bit key, for a single replica that issues and checks its own tokens
    /// (tokens do not survive a restart).
    pub fn random() -> Self {
        // `rand`'s thread RNG is a CSPRNG seeded from the operating system.
        let bytes: [u8; MIN_KEY_BYTES] = rand::random();
        Self::new(&bytes).expect("a 32-byte key is long enough")
    }

    /// Issues a token for `sub` and audience `aud`, valid from `now_unix` for `ttl_s` seconds.
    ///
    /// `ttl_s` is clamped to `1..=`[`MAX_TOKEN_LIFETIME_S`]. Returns the token text and the
    /// claims it carries. Fails with [`TokenError::Malformed`] when `sub` or `aud` is empty or
    /// the token would exceed [`MAX_TOKEN_BYTES`] (a very long `sub` or `title`), since no
    /// verifier would accept it.
    pub fn issue(
        &self,
        sub: &str,
        aud: &str,
        ttl_s: u64,
        title: Option<&str>,
        now_unix: u64,
    ) -> Result<(String, Claims), TokenError> {
        if sub.is_empty() {
            return Err(TokenError::Malformed("the subject is empty".into()));
        }
        if aud.is_empty() {
            return Err(TokenError::Malformed("the audience is empty".into()));
        }
        let ttl = ttl_s.clamp(1, MAX_TOKEN_LIFETIME_S);
        let claims = Claims {
            sub: sub.to_owned(),
            aud: aud.to_owned(),
            iat: now_unix,
            exp: now_unix.saturating_add(ttl),
            nonce: format!("{:032x}", rand::random::<u128>()),
            title: title.map(str::to_owned),
        };
        let json = serde_json::to_vec(&claims).expect("claims always serialise");
        let mut token = String::with_capacity(MAX_TOKEN_BYTES);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(json, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "the token would be {} bytes, over the {MAX_TOKEN_BYTES}-byte limit; shorten \
                 the subject or title",
                token.len()
            )));
        }
        Ok((token, claims))
    }

    /// Checks a token for audience `expected_aud` at time `now_unix` and returns its claims.
    ///
    /// The checks run in this order: size ([`MAX_TOKEN_BYTES`]), presence (an empty token is
    /// [`TokenError::Missing`]), format, the MAC in constant time — before any byte of the
    /// payload is decoded, so unauthenticated input never reaches the JSON parser — then
    /// expiry, not-before, lifetime, audience and nonce shape. It does not spend the nonce:
    /// pass it to [`ReplayCache::check_and_insert`] (or the shared store) next.
    ///
    /// Never panics, whatever the input.
    pub fn verify(
        &self,
        token: &str,
        expected_aud: &str,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed(format!(
                "{} bytes, over the {MAX_TOKEN_BYTES}-byte limit",
                token.len()
            )));
        }
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let rest = token
            .strip_prefix(PREFIX)
            .ok_or_else(|| malformed("it does not start with `v1.`"))?;
        let (payload_b64, sig_b64) = rest
            .split_once('.')
            .ok_or_else(|| malformed("it has no signature part"))?;
        if sig_b64.contains('.') {
            return Err(malformed("it has more than three parts"));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| malformed("the signature is not unpadded base64url"))?;
        // `token` starts with the prefix and `payload_b64` directly follows it, so this slice
        // is exactly the signed text "v1." + payload.
        let signed = &token[..PREFIX.len() + payload_b64.len()];
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        // `verify_slice` compares in constant time and refuses a tag of the wrong length.
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;

        let json = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| malformed("the payload is not unpadded base64url"))?;
        let claims: Claims = serde_json::from_slice(&json)
            .map_err(|e| TokenError::Malformed(format!("the claims are not valid: {e}")))?;

        if claims.exp <= now_unix.saturating_sub(CLOCK_SKEW_S) {
            return Err(TokenError::Expired);
        }
        if claims.iat > now_unix.saturating_add(CLOCK_SKEW_S) {
            return Err(TokenError::NotYetValid);
        }
        match claims.exp.checked_sub(claims.iat) {
            None => return Err(malformed("it expires before it was issued")),
            Some(lifetime) if lifetime > MAX_TOKEN_LIFETIME_S => {
                return Err(TokenError::TooLongLived);
            }
            Some(_) => {}
        }
        if claims.aud != expected_aud {
            return Err(TokenError::WrongAudience {
                expected: expected_aud.to_owned(),
                got: claims.aud,
            });
        }
        let nonce_ok = NONCE_HEX_LEN.contains(&claims.nonce.len())
            && claims
                .nonce
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !nonce_ok {
            return Err(malformed("the nonce is not 16 to 64 lowercase hex digits"));
        }
        Ok(claims)
    }
}

fn malformed(why: &str) -> TokenError {
    TokenError::Malformed(why.to_owned())
}

/// Remembers spent nonces until their tokens can no longer verify, so each token admits one
/// connection.
///
/// This is the in-memory store for a single replica; with several replicas the nonce goes to
/// Redis with `SET NX EX` instead. Memory is bounded by `max_entries`: when the cache is full
/// even after dropping expired nonces, [`ReplayCache::check_and_insert`] refuses the token
/// (fails closed) rather than grow without bound or forget a nonce that could still be
/// replayed. Only the key holder can mint tokens, so filling the cache takes an issuer minting
/// more than `max_entries` tokens within a token lifetime (at most
/// [`MAX_TOKEN_LIFETIME_S`] + [`CLOCK_SKEW_S`] seconds); size it above the peak issue rate
/// times that, and the refusals end as soon as old tokens expire.
pub struct ReplayCache {
    max_entries: usize,
    // Nonces currently remembered.
    seen: HashSet<String>,
    // The same nonces, ordered by their tokens' expiry, so pruning costs only the entries it
    // removes. Each nonce in `seen` has exactly one entry here.
    by_exp: BinaryHeap<Reverse<(u64, String)>>,
}

impl fmt::Debug for ReplayCache {
    // The nonces themselves are noise in a log; the fill level is what matters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("len", &self.seen.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl ReplayCache {
    /// An empty cache that remembers at most `max_entries` nonces (`0` refuses every token).
    pub fn new(max_entries: usize) -> Self {
        ReplayCache {
            max_entries,
            seen: HashSet::new(),
            by_exp: BinaryHeap::new(),
        }
    }

    /// Spends `nonce` of a token expiring at `exp_unix`: `true` if this is its first use,
    /// `false` if it was already spent — or if the cache is full (see the type's docs).
    ///
    /// Nonces whose tokens have expired (allowing for [`CLOCK_SKEW_S`]) are dropped first.
    pub fn check_and_insert(&mut self, nonce: &str, exp_unix: u64, now_unix: u64) -> bool {
        self.prune(now_unix);
        if self.seen.contains(nonce) {
            return false;
        }
        if self.seen.len() >= self.max_entries {
            tracing::warn!(
                max_entries = self.max_entries,
                "replay cache is full of unexpired nonces; refusing the token until some expire"
            );
            return false;
        }
        // A verified token expires at most a lifetime (plus skew) from now; capping the
        // caller's `exp_unix` there means a bogus far-future expiry cannot pin an entry.
        let exp = exp_unix.min(now_unix.saturating_add(MAX_TOKEN_LIFETIME_S + CLOCK_SKEW_S));
        self.seen.insert(nonce.to_owned());
        self.by_exp.push(Reverse((exp, nonce.to_owned())));
        true
    }

    /// How many nonces are remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn prune(&mut self, now_unix: u64) {
        // Exactly `verify`'s expiry rule, in the same saturating arithmetic: a nonce is dropped
        // only once its token would be refused as expired. (Computing a "forget at" time as
        // `exp + skew` instead saturates at the end of the clock's range and drops a nonce
        // whose token still verifies; the fuzzer found that.)
        let expired_before = now_unix.saturating_sub(CLOCK_SKEW_S);
        while let Some(Reverse((exp, _))) = self.by_exp.peek() {
            if *exp > expired_before {
                break;
            }
            if let Some(Reverse((_, nonce))) = self.by_exp.pop() {
                self.seen.remove(&nonce);
            }
        }
    }
}

#[cfg(test)]
mod tests;
