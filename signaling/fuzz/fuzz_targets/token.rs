//! Fuzzes the token verifier: no input may make it panic, and whatever it accepts must meet
//! every rule it promises to check.
//!
//! The first byte picks a mode. Arbitrary text alone almost never gets past the MAC, which
//! would leave the checks behind it unexplored, so the other modes sign with the fixed key,
//! exactly as an outside issuer following the documented wire format would:
//!
//! - `0`: the rest is the token text (lossy UTF-8);
//! - `1`: the rest is the claims payload, signed, verified at a fixed time;
//! - `2`: the next 8 bytes are the verifier's clock (little-endian Unix seconds, to reach the
//!   edges of the time arithmetic), the rest is the claims payload, signed;
//! - `3`: the rest chooses well-formed claims (times near the clock, either audience, nonces
//!   of any length and alphabet), signed; raw JSON rarely gets all five members right, so this
//!   is the mode that reaches the time, audience and nonce rules. Here the verdict is also
//!   checked against the rules restated independently below.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use signaling::token::{
    AUD_CLIENT, AUD_NODE, CLOCK_SKEW_S, MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME_S, ReplayCache,
    TokenKey,
};

const KEY: &[u8] = b"fuzzing-key-not-secret-0123456789";
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = TokenKey::new(KEY).expect("32 bytes is long enough");
    let (token, now, expected) = match mode % 4 {
        0 => (String::from_utf8_lossy(rest).into_owned(), NOW, None),
        1 => (sign(rest), NOW, None),
        2 => {
            let Some((clock, payload)) = rest.split_first_chunk::<8>() else {
                return;
            };
            (sign(payload), u64::from_le_bytes(*clock), None)
        }
        _ => {
            let Ok((token, now, valid)) = structured(&mut Unstructured::new(rest)) else {
                return;
            };
            (token, now, Some(valid))
        }
    };
    let verdict = key.verify(&token, AUD_CLIENT, now);
    if let Some(valid) = expected {
        assert_eq!(verdict.is_ok(), valid, "{token} at {now}: {verdict:?}");
    }
    let Ok(claims) = verdict else {
        return;
    };
    assert!(token.len() <= MAX_TOKEN_BYTES);
    assert_eq!(claims.aud, AUD_CLIENT);
    assert!(
        claims.exp > now.saturating_sub(CLOCK_SKEW_S),
        "expired: {claims:?} at {now}"
    );
    assert!(
        claims.iat <= now.saturating_add(CLOCK_SKEW_S),
        "not yet valid: {claims:?} at {now}"
    );
    assert!(claims.iat <= claims.exp && claims.exp - claims.iat <= MAX_TOKEN_LIFETIME_S);
    assert!((16..=64).contains(&claims.nonce.len()));
    assert!(
        claims
            .nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    );
    // An accepted token is spent once, and only once.
    let mut cache = ReplayCache::new(4);
    assert!(cache.check_and_insert(&claims.nonce, claims.exp, now));
    assert!(!cache.check_and_insert(&claims.nonce, claims.exp, now));
});

/// Well-formed claims from the fuzzer's bytes, signed; returns the token, the verifier's clock
/// and whether the token should be accepted, by the rules the token module documents.
fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<(String, u64, bool)> {
    let now = if u.ratio(1, 4)? { u.arbitrary()? } else { NOW };
    let iat = near(u, now)?;
    let exp = near(u, iat)?;
    let aud = *u.choose(&[AUD_CLIENT, AUD_NODE, "", "stratus-client "])?;
    let nonce: String = if u.ratio(1, 8)? {
        u.arbitrary()?
    } else {
        let len = u.int_in_range(0..=80)?;
        (0..len)
            .map(|_| u.choose(b"0123456789abcdefABCg").map(|&b| char::from(b)))
            .collect::<arbitrary::Result<_>>()?
    };
    let sub: String = u.arbitrary()?;
    let title: Option<String> = u.arbitrary()?;
    let mut claims = serde_json::json!({
        "sub": sub, "aud": aud, "iat": iat, "exp": exp, "nonce": nonce,
    });
    if let Some(title) = title {
        claims["title"] = title.into();
    }
    let token = sign(&serde_json::to_vec(&claims).expect("JSON values serialise"));
    let valid = token.len() <= MAX_TOKEN_BYTES
        && exp > now.saturating_sub(CLOCK_SKEW_S)
        && iat <= now.saturating_add(CLOCK_SKEW_S)
        && iat <= exp
        && exp - iat <= MAX_TOKEN_LIFETIME_S
        && aud == AUD_CLIENT
        && (16..=64).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    Ok((token, now, valid))
}

/// A time within a few minutes of `base`, where the rules' edges are, or now and then any time.
fn near(u: &mut Unstructured<'_>, base: u64) -> arbitrary::Result<u64> {
    if u.ratio(1, 8)? {
        u.arbitrary()
    } else {
        Ok(base.saturating_add_signed(u.int_in_range(-400..=400)?))
    }
}

/// `v1.` + payload + `.` + HMAC-SHA256 over the first two, as the token module documents.
fn sign(payload: &[u8]) -> String {
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}
