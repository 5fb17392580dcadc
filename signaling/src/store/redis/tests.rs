//! Unit tests of the parent module.
use super::commands::{node_from_row, nonce_ttl_s};
use super::*;
use crate::store::NodeRecord;
use crate::token::{CLOCK_SKEW_S, MAX_TOKEN_LIFETIME_S};

#[test]
fn urls_are_shown_without_secrets() {
    assert_eq!(
        redact_url("redis://127.0.0.1:6379/"),
        "redis://127.0.0.1:6379/"
    );
    assert_eq!(
        redact_url("redis://:hunter2@redis.internal:6379/0"),
        "redis://***@redis.internal:6379/0"
    );
    assert_eq!(redact_url("rediss://user:p%40ss@host"), "rediss://***@host");
    assert_eq!(
        redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
        "redis+unix:///run/redis.sock?***"
    );
    assert_eq!(redact_url("not a url"), "not a url");
}

#[test]
fn nonces_live_as_long_as_in_the_replay_cache() {
    let now = 1_700_000_000;
    assert_eq!(nonce_ttl_s(now + 60, now), 60 + CLOCK_SKEW_S);
    // A bogus far-future expiry cannot pin a key.
    assert_eq!(
        nonce_ttl_s(u64::MAX, now),
        MAX_TOKEN_LIFETIME_S + 2 * CLOCK_SKEW_S
    );
    // Long expired: remembered for the shortest time Redis takes.
    assert_eq!(nonce_ttl_s(now - 600, now), 1);
}

#[test]
fn node_rows_decode_or_say_what_is_wrong() {
    let record = NodeRecord {
        node_id: "n1".into(),
        site: Default::default(),
        gpu_class: "cpu".into(),
        capacity: 2,
        titles: Vec::new(),
        public_addr: None,
        probe_url: None,
        agent_version: "1".into(),
        sessions: 0,
        draining: false,
        replica: "r1".into(),
        last_seen_ms: 5,
        registered_ms: 5,
    };
    let json = serde_json::to_string(&record).expect("encodes");
    let row = |sessions: &str| {
        vec![
            Some("n1".to_string()),
            Some(json.clone()),
            Some("r2".to_string()),
            Some(sessions.to_string()),
            Some("1".to_string()),
            Some("9".to_string()),
        ]
    };
    let node = node_from_row(row("3")).expect("decodes");
    assert_eq!((node.replica.as_str(), node.sessions), ("r2", 3));
    assert!(node.draining);
    assert_eq!(node.last_seen_ms, 9);

    let err = node_from_row(row("many")).expect_err("corrupt");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("many"), "{err}");
    let mut garbled = row("1");
    garbled[1] = Some("{".into());
    assert!(matches!(
        node_from_row(garbled),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        node_from_row(vec![None]),
        Err(StoreError::Corrupt { .. })
    ));
}
