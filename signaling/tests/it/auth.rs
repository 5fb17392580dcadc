//! Admission: tokens, origins, keys and rate limits, checked before the WebSocket upgrade.

use serde_json::json;
use signaling::config::{Config, Limits};
use signaling::token::{AUD_CLIENT, AUD_NODE, TokenKey};

use crate::support::*;

const KEY: &str = "test-token-key-0123456789abcdef-0123456789";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn keyed() -> Config {
    Config {
        token_key: Some(KEY.into()),
        ..Config::default()
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let svc = start_with(&keyed()).await;
    let addr = svc.addr;
    let key = TokenKey::from_secret_str(KEY).expect("key");
    let now = unix_now();
    assert_eq!(
        try_connect(addr, "/ws", &[]).await.err(),
        Some(401),
        "missing"
    );
    assert_eq!(
        try_connect(addr, "/ws?token=v1.garbage.garbage", &[])
            .await
            .err(),
        Some(401),
        "garbage"
    );
    let (expired, _) = key
        .issue("p", AUD_CLIENT, 60, None, now - 600)
        .expect("issue");
    assert_eq!(
        try_connect(addr, &format!("/ws?token={expired}"), &[])
            .await
            .err(),
        Some(401),
        "expired"
    );
    let (node_aud, _) = key.issue("p", AUD_NODE, 60, None, now).expect("issue");
    assert_eq!(
        try_connect(addr, &format!("/ws?token={node_aud}"), &[])
            .await
            .err(),
        Some(401),
        "wrong audience"
    );
    let other = TokenKey::from_secret_str("another-key-another-key-another-key-000").expect("key");
    let (forged, _) = other.issue("p", AUD_CLIENT, 60, None, now).expect("issue");
    assert_eq!(
        try_connect(addr, &format!("/ws?token={forged}"), &[])
            .await
            .err(),
        Some(401),
        "signed with another key"
    );
    let (good, _) = key.issue("p", AUD_CLIENT, 60, None, now).expect("issue");
    let first = try_connect(addr, &format!("/ws?token={good}"), &[]).await;
    assert!(first.is_ok(), "a fresh token is accepted");
    assert_eq!(
        try_connect(addr, &format!("/ws?token={good}"), &[])
            .await
            .err(),
        Some(401),
        "replayed"
    );
    let metrics = http(addr, "GET", "/metrics", &[], None).await.body;
    for reason in [
        "missing",
        "expired",
        "wrong_audience",
        "replayed",
        "bad_signature",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} counted:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn foreign_origins_are_refused() {
    let mut config = keyed();
    config.allowed_origins = vec!["https://play.example.com".into()];
    let svc = start_with(&config).await;
    let addr = svc.addr;
    let t = token(addr).await;
    assert_eq!(
        try_connect(
            addr,
            &format!("/ws?token={t}"),
            &[("origin", "https://evil.example")]
        )
        .await
        .err(),
        Some(403)
    );
    // The refused token was not spent: the origin is checked first.
    assert!(
        try_connect(
            addr,
            &format!("/ws?token={t}"),
            &[("origin", "https://play.example.com")]
        )
        .await
        .is_ok()
    );
    let t = token(addr).await;
    let own = format!("http://{addr}");
    assert!(
        try_connect(addr, &format!("/ws?token={t}"), &[("origin", own.as_str())])
            .await
            .is_ok(),
        "the service's own page may connect"
    );
}

#[tokio::test]
async fn the_issuer_key_guards_tokens_and_names_the_player() {
    let mut config = keyed();
    config.issuer_key = Some("idp-proxy-key".into());
    let svc = start_with(&config).await;
    let addr = svc.addr;
    let refused = http(addr, "POST", "/api/token", &[], Some("{}")).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("signed-in"), "{}", refused.body);
    let wrong = http(
        addr,
        "POST",
        "/api/token",
        &[("authorization", "Bearer nope")],
        Some("{}"),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let ok = http(
        addr,
        "POST",
        "/api/token",
        &[
            ("authorization", "Bearer idp-proxy-key"),
            ("x-stratus-user", "alice@example.com"),
        ],
        Some("{}"),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let body = ok.json();
    assert_eq!(body["user"], "alice@example.com");
    assert!(body["expires_at"].as_u64().expect("exp") <= unix_now() + 300);
    let claims = TokenKey::from_secret_str(KEY)
        .expect("key")
        .verify(
            body["token"].as_str().expect("token"),
            AUD_CLIENT,
            unix_now(),
        )
        .expect("valid token");
    assert_eq!(claims.sub, "alice@example.com");
}

#[tokio::test]
async fn a_title_bound_token_plays_only_that_title() {
    let svc = start_with(&keyed()).await;
    let addr = svc.addr;
    let _n = node(addr, "n1", 2, json!({})).await;
    let key = TokenKey::from_secret_str(KEY).expect("key");
    let (t, _) = key
        .issue("p", AUD_CLIENT, 60, Some("space-race"), unix_now())
        .expect("issue");
    let mut c = try_connect(addr, &format!("/ws?token={t}"), &[])
        .await
        .expect("upgrade");
    let reply = hello(&mut c, json!({"title": "demo"})).await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
}

#[tokio::test]
async fn nodes_need_a_token_when_a_node_key_is_set() {
    let mut config = keyed();
    config.node_key = Some("node-key-node-key-node-key-node-key-00".into());
    let svc = start_with(&config).await;
    let addr = svc.addr;
    assert_eq!(try_connect(addr, "/ws/node", &[]).await.err(), Some(401));
    let key = TokenKey::from_secret_str("node-key-node-key-node-key-node-key-00").expect("key");
    let (t, _) = key
        .issue("gpu-7", AUD_NODE, 60, None, unix_now())
        .expect("issue");
    let auth = format!("Bearer {t}");
    let mut ws = try_connect(addr, "/ws/node", &[("authorization", auth.as_str())])
        .await
        .expect("node admitted");
    send(&mut ws, node_hello("gpu-8", 1, json!({}))).await;
    let refused = recv(&mut ws).await.expect("error");
    assert_eq!(
        refused["code"], "forbidden",
        "a token names its node: {refused}"
    );
    let (t, _) = key
        .issue("gpu-7", AUD_NODE, 60, None, unix_now())
        .expect("issue");
    let auth = format!("Bearer {t}");
    let mut ws = try_connect(addr, "/ws/node", &[("authorization", auth.as_str())])
        .await
        .expect("node admitted");
    send(&mut ws, node_hello("gpu-7", 1, json!({}))).await;
    assert_eq!(recv(&mut ws).await.expect("reply")["type"], "registered");
}

#[tokio::test]
async fn floods_are_cut_off() {
    let mut config = keyed();
    config.limits = Limits {
        messages_per_s: 5.0,
        burst: 10.0,
    };
    let svc = start_with(&config).await;
    let addr = svc.addr;
    let _n = node(addr, "n1", 1, json!({})).await;
    let mut c = client(addr).await;
    assert_eq!(hello(&mut c, json!({})).await["type"], "welcome");
    let candidate = json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}});
    let mut limited = false;
    for _ in 0..200 {
        if futures_util::SinkExt::send(
            &mut c,
            tokio_tungstenite::tungstenite::Message::Text(candidate.to_string().into()),
        )
        .await
        .is_err()
        {
            break;
        }
    }
    while let Some(msg) = recv(&mut c).await {
        if msg["code"] == "rate_limited" {
            limited = true;
        }
    }
    assert!(
        limited,
        "the flood was told it is rate limited before the close"
    );
}
