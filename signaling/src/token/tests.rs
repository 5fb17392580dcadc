//! Unit tests of the parent module.
use super::*;

const NOW: u64 = 1_700_000_000;

fn key() -> TokenKey {
    TokenKey::new(&[7u8; 32]).expect("32 bytes is enough")
}

/// Signs arbitrary claims JSON the way an outside issuer would, to build tokens `issue`
/// refuses to make.
fn forge(key_bytes: &[u8], json: &str) -> String {
    let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(json));
    let mut mac = HmacSha256::new_from_slice(key_bytes).expect("any length");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn claims_json(iat: u64, exp: u64, aud: &str, nonce: &str) -> String {
    format!(r#"{{"sub":"p","aud":"{aud}","iat":{iat},"exp":{exp},"nonce":"{nonce}"}}"#)
}

const NONCE: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn round_trip() {
    let key = key();
    let (token, claims) = key
        .issue("player-42", AUD_CLIENT, 60, Some("demo"), NOW)
        .expect("issue");
    assert!(token.starts_with("v1."));
    assert_eq!(claims.sub, "player-42");
    assert_eq!(claims.aud, AUD_CLIENT);
    assert_eq!((claims.iat, claims.exp), (NOW, NOW + 60));
    assert_eq!(claims.title.as_deref(), Some("demo"));
    assert_eq!(claims.nonce.len(), 32);
    assert_eq!(key.verify(&token, AUD_CLIENT, NOW), Ok(claims.clone()));
    assert_eq!(key.verify(&token, AUD_CLIENT, NOW + 59), Ok(claims));

    let (_, other) = key
        .issue("player-42", AUD_CLIENT, 60, None, NOW)
        .expect("issue");
    let (_, again) = key
        .issue("player-42", AUD_CLIENT, 60, None, NOW)
        .expect("issue");
    assert_ne!(other.nonce, again.nonce);
}

#[test]
fn ttl_is_clamped() {
    let key = key();
    let (_, long) = key.issue("p", AUD_NODE, 86_400, None, NOW).expect("issue");
    assert_eq!(long.exp - long.iat, MAX_TOKEN_LIFETIME_S);
    let (_, zero) = key.issue("p", AUD_NODE, 0, None, NOW).expect("issue");
    assert_eq!(zero.exp - zero.iat, 1);
}

#[test]
fn issue_refuses_tokens_nobody_would_accept() {
    let key = key();
    assert_eq!(
        key.issue("", AUD_CLIENT, 60, None, NOW)
            .map(|_| ())
            .map_err(|e| e.reason()),
        Err("malformed")
    );
    assert!(key.issue("p", "", 60, None, NOW).is_err());
    let long = "t".repeat(MAX_TOKEN_BYTES);
    let err = key
        .issue("p", AUD_CLIENT, 60, Some(&long), NOW)
        .expect_err("too big");
    assert!(err.to_string().contains("limit"), "{err}");
}

/// A token minted by an independent implementation following the module docs (Python's
/// `hmac`/`base64`/`json`, with `json.dumps` default spacing) verifies here. Computed with:
///
/// ```text
/// key = b"an-identity-provider-shared-key-0123456789"
/// claims = {"sub": "player-42", "aud": "stratus-client", "iat": 1700000000,
///           "exp": 1700000060, "nonce": "00112233445566778899aabbccddeeff", "title": "demo"}
/// signing_input = "v1." + b64(json.dumps(claims).encode())
/// token = signing_input + "." + b64(hmac.new(key, signing_input.encode(), sha256).digest())
/// ```
#[test]
fn third_party_token_verifies() {
    let token = "v1.eyJzdWIiOiAicGxheWVyLTQyIiwgImF1ZCI6ICJzdHJhdHVzLWNsaWVudCIsICJpYXQiOiAxNzAwMDAwMDAwLCAiZXhwIjogMTcwMDAwMDA2MCwgIm5vbmNlIjogIjAwMTEyMjMzNDQ1NTY2Nzc4ODk5YWFiYmNjZGRlZWZmIiwgInRpdGxlIjogImRlbW8ifQ.ZW5gXtZWuz6ix3HUI1cnrtI-5OugliFfzXz6jXdxOpA";
    let key = TokenKey::from_secret_str("an-identity-provider-shared-key-0123456789")
        .expect("long enough");
    let claims = key.verify(token, AUD_CLIENT, NOW + 1).expect("valid");
    assert_eq!(claims.sub, "player-42");
    assert_eq!(claims.nonce, "00112233445566778899aabbccddeeff");
    assert_eq!(claims.title.as_deref(), Some("demo"));
    assert_eq!(
        key.verify(token, AUD_CLIENT, NOW + 70),
        Err(TokenError::Expired)
    );
}

#[test]
fn tampering_is_detected() {
    let key = key();
    let (token, _) = key
        .issue("player-42", AUD_CLIENT, 60, None, NOW)
        .expect("issue");
    let (signed, sig) = token.rsplit_once('.').expect("three parts");
    let payload = signed.strip_prefix("v1.").expect("prefix");

    // A payload re-encoded with another subject, keeping the signature.
    let json = URL_SAFE_NO_PAD.decode(payload).expect("b64");
    let json = String::from_utf8(json)
        .expect("utf8")
        .replace("player-42", "player-43");
    let forged = format!("v1.{}.{sig}", URL_SAFE_NO_PAD.encode(json));
    assert_eq!(
        key.verify(&forged, AUD_CLIENT, NOW),
        Err(TokenError::BadSignature)
    );

    // One flipped character in the payload, and in the signature.
    let flip = |s: &str, i: usize| {
        let mut b = s.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).expect("ascii")
    };
    let bad_payload = format!("v1.{}.{sig}", flip(payload, 5));
    assert_eq!(
        key.verify(&bad_payload, AUD_CLIENT, NOW),
        Err(TokenError::BadSignature)
    );
    let bad_sig = format!("{signed}.{}", flip(sig, 0));
    assert_eq!(
        key.verify(&bad_sig, AUD_CLIENT, NOW),
        Err(TokenError::BadSignature)
    );

    // A truncated signature is refused, not compared as a prefix. (Cut in bytes and
    // re-encoded: cutting the text could leave non-zero trailing bits, a format error.)
    let sig_bytes = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    let short_sig = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig_bytes[..16]));
    assert_eq!(
        key.verify(&short_sig, AUD_CLIENT, NOW),
        Err(TokenError::BadSignature)
    );

    // Another version prefix, both unsigned and re-labelled.
    let v2 = token.replacen("v1.", "v2.", 1);
    assert_eq!(
        key.verify(&v2, AUD_CLIENT, NOW).map_err(|e| e.reason()),
        Err("malformed")
    );
    let bare = token.strip_prefix("v1.").expect("prefix");
    assert_eq!(
        key.verify(bare, AUD_CLIENT, NOW).map_err(|e| e.reason()),
        Err("malformed")
    );

    // Another key.
    let other = TokenKey::new(&[8u8; 32]).expect("key");
    assert_eq!(
        other.verify(&token, AUD_CLIENT, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn expiry_and_not_before_allow_for_skew() {
    let key = key();
    let (token, _) = key.issue("p", AUD_CLIENT, 60, None, NOW).expect("issue");
    let exp = NOW + 60;
    assert!(
        key.verify(&token, AUD_CLIENT, exp + CLOCK_SKEW_S - 1)
            .is_ok()
    );
    assert_eq!(
        key.verify(&token, AUD_CLIENT, exp + CLOCK_SKEW_S),
        Err(TokenError::Expired)
    );
    assert_eq!(
        key.verify(&token, AUD_CLIENT, u64::MAX),
        Err(TokenError::Expired)
    );

    assert!(key.verify(&token, AUD_CLIENT, NOW - CLOCK_SKEW_S).is_ok());
    assert_eq!(
        key.verify(&token, AUD_CLIENT, NOW - CLOCK_SKEW_S - 1),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        key.verify(&token, AUD_CLIENT, 0),
        Err(TokenError::NotYetValid)
    );
}

#[test]
fn too_long_lived_tokens_are_refused_even_when_signed() {
    let bytes = [7u8; 32];
    let key = TokenKey::new(&bytes).expect("key");
    let token = forge(&bytes, &claims_json(NOW, NOW + 600, AUD_CLIENT, NONCE));
    let err = key.verify(&token, AUD_CLIENT, NOW).expect_err("600 s");
    assert_eq!(err, TokenError::TooLongLived);
    assert!(err.to_string().contains("300 seconds"), "{err}");

    let ok = forge(&bytes, &claims_json(NOW, NOW + 300, AUD_CLIENT, NONCE));
    assert!(key.verify(&ok, AUD_CLIENT, NOW).is_ok());

    let backwards = forge(&bytes, &claims_json(NOW, NOW - 1, AUD_CLIENT, NONCE));
    assert_eq!(
        key.verify(&backwards, AUD_CLIENT, NOW)
            .map_err(|e| e.reason()),
        Err("malformed")
    );
}

#[test]
fn wrong_audience() {
    let key = key();
    let (token, _) = key.issue("node-1", AUD_NODE, 60, None, NOW).expect("issue");
    let err = key.verify(&token, AUD_CLIENT, NOW).expect_err("node token");
    assert_eq!(
        err,
        TokenError::WrongAudience {
            expected: AUD_CLIENT.into(),
            got: AUD_NODE.into()
        }
    );
    assert_eq!(err.reason(), "wrong_audience");
    assert!(err.to_string().contains("stratus-client"), "{err}");
}

#[test]
fn signed_but_invalid_claims_are_malformed() {
    let bytes = [7u8; 32];
    let key = TokenKey::new(&bytes).expect("key");
    for (json, what) in [
        (
            claims_json(NOW, NOW + 60, AUD_CLIENT, "0123"),
            "short nonce",
        ),
        (
            claims_json(NOW, NOW + 60, AUD_CLIENT, "0123456789ABCDEF"),
            "uppercase nonce",
        ),
        (
            claims_json(NOW, NOW + 60, AUD_CLIENT, &"a".repeat(65)),
            "long nonce",
        ),
        (
            claims_json(NOW, NOW + 60, AUD_CLIENT, "0123456789abcdeg"),
            "non-hex nonce",
        ),
        ("{}".to_owned(), "no claims"),
        ("null".to_owned(), "not an object"),
        (r#"{"sub":1}"#.to_owned(), "wrong type"),
        (
            r#"{"sub":"p","aud":"stratus-client","iat":-1,"exp":1,"nonce":"0123456789abcdef"}"#
                .to_owned(),
            "negative time",
        ),
        ("\u{0}".to_owned(), "not JSON"),
    ] {
        let token = forge(&bytes, &json);
        assert_eq!(
            key.verify(&token, AUD_CLIENT, NOW).map_err(|e| e.reason()),
            Err("malformed"),
            "{what}"
        );
    }
    // Shortest and longest nonces are fine; unknown members are ignored.
    for nonce in ["0123456789abcdef".to_owned(), "f".repeat(64)] {
        let token = forge(&bytes, &claims_json(NOW, NOW + 60, AUD_CLIENT, &nonce));
        assert!(key.verify(&token, AUD_CLIENT, NOW).is_ok(), "{nonce}");
    }
    let extra = forge(
        &bytes,
        r#"{"sub":"p","aud":"stratus-client","iat":1700000000,"exp":1700000060,"nonce":"0123456789abcdef","jti":"x"}"#,
    );
    assert!(key.verify(&extra, AUD_CLIENT, NOW).is_ok());
}

#[test]
fn oversize_and_garbage_are_errors_not_panics() {
    let key = key();
    assert_eq!(key.verify("", AUD_CLIENT, NOW), Err(TokenError::Missing));
    let huge = "v1.".to_owned() + &"A".repeat(MAX_TOKEN_BYTES);
    let err = key.verify(&huge, AUD_CLIENT, NOW).expect_err("huge");
    assert_eq!(err.reason(), "malformed");
    assert!(err.to_string().contains("2048-byte limit"), "{err}");
    assert!(key.verify(&"x".repeat(1 << 20), AUD_CLIENT, NOW).is_err());

    for garbage in [
        ".",
        "..",
        "...",
        "v1.",
        "v1..",
        "v1...",
        "v1.a.b.c",
        "v1.!!!.???",
        "v1.eyJ9.====",
        "v1.eyJ9.AAAA=",
        "v1.\u{0}.\u{0}",
        "v1.é.é",
        "v1.😀😀.😀",
        " v1.a.b",
        "Bearer v1.a.b",
    ] {
        let err = key.verify(garbage, AUD_CLIENT, NOW).expect_err(garbage);
        assert!(
            matches!(err, TokenError::Malformed(_) | TokenError::BadSignature),
            "{garbage:?}: {err:?}"
        );
    }
    // Every prefix of a real token, including ones cut inside a base64 quantum.
    let (token, _) = key.issue("p", AUD_CLIENT, 60, None, NOW).expect("issue");
    for end in 0..token.len() {
        assert!(key.verify(&token[..end], AUD_CLIENT, NOW).is_err(), "{end}");
    }
}

#[test]
fn keys() {
    assert_eq!(
        TokenKey::new(&[1u8; 31]).map(|_| ()),
        Err(TokenError::WeakKey)
    );
    assert!(TokenKey::new(&[1u8; 32]).is_ok());
    let short = "x".repeat(31);
    assert_eq!(
        TokenKey::from_secret_str(&short).map(|_| ()),
        Err(TokenError::WeakKey)
    );
    // 16 two-byte characters are 32 bytes but only 16 characters.
    assert!(TokenKey::from_secret_str(&"é".repeat(16)).is_err());

    let secret = "correct-horse-battery-staple-0123456789";
    let key = TokenKey::from_secret_str(secret).expect("long enough");
    let shown = format!("{key:?}");
    assert!(!shown.contains("correct"), "{shown}");
    assert_eq!(
        TokenError::WeakKey.to_string(),
        "the token key is too short: use at least 32 bytes of random data (e.g. the output \
         of `openssl rand -base64 48`)"
    );

    // The text's bytes are the key, so `new` with them accepts the same tokens.
    let same = TokenKey::new(secret.as_bytes()).expect("key");
    let (token, _) = key.issue("p", AUD_CLIENT, 60, None, NOW).expect("issue");
    assert!(same.verify(&token, AUD_CLIENT, NOW).is_ok());

    // Two random keys differ.
    let (token, _) = TokenKey::random()
        .issue("p", AUD_CLIENT, 60, None, NOW)
        .expect("issue");
    assert_eq!(
        TokenKey::random().verify(&token, AUD_CLIENT, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn messages_and_reasons() {
    assert_eq!(
        TokenError::Expired.to_string(),
        "the token has expired; ask for a new one"
    );
    let all = [
        TokenError::Missing,
        TokenError::Malformed("x".into()),
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::TooLongLived,
        TokenError::WrongAudience {
            expected: "a".into(),
            got: "b".into(),
        },
        TokenError::Replayed,
        TokenError::WeakKey,
    ];
    let reasons: Vec<_> = all.iter().map(TokenError::reason).collect();
    assert_eq!(
        reasons,
        [
            "missing",
            "malformed",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "too_long_lived",
            "wrong_audience",
            "replayed",
            "weak_key"
        ]
    );
    for e in all {
        let msg = e.to_string();
        assert!(msg.starts_with(char::is_lowercase), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}

#[test]
fn replay_cache_spends_each_nonce_once() {
    let mut cache = ReplayCache::new(10);
    assert!(cache.is_empty());
    assert!(cache.check_and_insert("aa", NOW + 60, NOW));
    assert!(!cache.check_and_insert("aa", NOW + 60, NOW + 1));
    assert!(cache.check_and_insert("bb", NOW + 60, NOW + 1));
    assert_eq!(cache.len(), 2);

    // Still remembered while the token could verify (exp + skew)...
    assert!(!cache.check_and_insert("aa", NOW + 60, NOW + 60 + CLOCK_SKEW_S - 1));
    // ...and forgotten once it cannot.
    assert!(cache.check_and_insert("cc", NOW + 400, NOW + 60 + CLOCK_SKEW_S));
    assert_eq!(cache.len(), 1, "aa and bb were pruned");
    let shown = format!("{cache:?}");
    assert!(shown.contains("len: 1") && !shown.contains("cc"), "{shown}");
}

#[test]
fn replay_cache_is_bounded_and_fails_closed() {
    let mut cache = ReplayCache::new(2);
    assert!(cache.check_and_insert("a", NOW + 10, NOW));
    assert!(cache.check_and_insert("b", NOW + 100, NOW));
    // Full of live nonces: a new one is refused rather than stored or evicting.
    assert!(!cache.check_and_insert("c", NOW + 100, NOW + 1));
    assert_eq!(cache.len(), 2);
    assert!(
        !cache.check_and_insert("a", NOW + 10, NOW + 1),
        "still spent"
    );
    // Once "a" expires there is room again.
    assert!(cache.check_and_insert("c", NOW + 100, NOW + 10 + CLOCK_SKEW_S));
    assert!(!cache.check_and_insert("b", NOW + 100, NOW + 10 + CLOCK_SKEW_S));

    assert!(!ReplayCache::new(0).check_and_insert("a", NOW + 10, NOW));
}

#[test]
fn replay_cache_caps_far_future_expiry() {
    let mut cache = ReplayCache::new(1);
    assert!(cache.check_and_insert("a", u64::MAX, NOW));
    let later = NOW + MAX_TOKEN_LIFETIME_S + 2 * CLOCK_SKEW_S;
    assert!(cache.check_and_insert("b", u64::MAX, later));
    assert_eq!(cache.len(), 1);
}

/// Found by the `token` fuzz target: at the very end of the clock's range, a nonce was
/// dropped as soon as it was stored although its token still verified.
#[test]
fn replay_cache_holds_at_the_end_of_time() {
    let key = key();
    let now = u64::MAX;
    let (token, _) = key
        .issue("p", AUD_CLIENT, 60, None, now - 10)
        .expect("issue");
    let claims = key.verify(&token, AUD_CLIENT, now).expect("valid");
    let mut cache = ReplayCache::new(4);
    assert!(cache.check_and_insert(&claims.nonce, claims.exp, now));
    assert!(!cache.check_and_insert(&claims.nonce, claims.exp, now));
}

#[test]
fn verify_then_spend() {
    let key = key();
    let mut cache = ReplayCache::new(100);
    let (token, _) = key.issue("p", AUD_CLIENT, 60, None, NOW).expect("issue");
    let claims = key.verify(&token, AUD_CLIENT, NOW).expect("valid");
    assert!(cache.check_and_insert(&claims.nonce, claims.exp, NOW));
    let again = key
        .verify(&token, AUD_CLIENT, NOW + 1)
        .expect("still valid");
    assert!(!cache.check_and_insert(&again.nonce, again.exp, NOW + 1));
}
