//! The fleet: liveness, draining, nearest-node assignment, RTT ranking and the geofence.

use std::time::Duration;

use serde_json::json;
use signaling::config::Config;
use signaling::policy::GeofenceRule;

use crate::support::*;

fn paris() -> serde_json::Value {
    json!({"region": "eu-west", "country": "FR", "coords": {"lat": 48.86, "lon": 2.35}})
}
fn new_york() -> serde_json::Value {
    json!({"region": "us-east", "country": "US", "coords": {"lat": 40.71, "lon": -74.0}})
}
fn tokyo() -> serde_json::Value {
    json!({"region": "ap-northeast", "country": "JP", "coords": {"lat": 35.68, "lon": 139.69}})
}

fn behind_proxy() -> Config {
    Config {
        trusted_proxies: vec!["127.0.0.1".into()],
        ..Config::default()
    }
}

/// A client whose trusted proxy says where it is.
async fn located_client(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> Ws {
    let t = token(addr).await;
    try_connect(addr, &format!("/ws?token={t}"), headers)
        .await
        .expect("upgrade")
}

#[tokio::test]
async fn silent_nodes_die_after_three_seconds_and_heartbeats_keep_nodes_alive() {
    let svc = start().await;
    let addr = svc.addr;
    let mut silent = node(addr, "silent", 1, json!({})).await;
    let mut chatty = node(addr, "chatty", 1, json!({})).await;
    let started = tokio::time::Instant::now();
    let beats = tokio::spawn(async move {
        for _ in 0..10 {
            heartbeat(&mut chatty).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        chatty
    });
    // The silent node is told and dropped within the 3 s window plus a sweep.
    let told = recv_within(&mut silent, Duration::from_secs(6)).await;
    let elapsed = started.elapsed();
    assert_eq!(told.expect("a last word")["code"], "node_lost");
    assert!(
        elapsed >= Duration::from_millis(2900) && elapsed < Duration::from_millis(5500),
        "dropped after {elapsed:?}"
    );
    let nodes = http(addr, "GET", "/api/nodes", &[], None).await.json();
    let ids: Vec<&str> = nodes
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|n| n["node_id"].as_str())
        .collect();
    assert_eq!(ids, ["chatty"], "{nodes}");
    let _chatty = beats.await.expect("heartbeats");
}

#[tokio::test]
async fn draining_nodes_take_no_new_sessions() {
    let svc = start().await;
    let addr = svc.addr;
    let mut n = node(addr, "n1", 4, json!({})).await;
    let mut first = client(addr).await;
    assert_eq!(hello(&mut first, json!({})).await["type"], "welcome");
    let reply = http(addr, "POST", "/api/nodes/n1/drain", &[], None).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(recv_type(&mut n, "drain").await["type"], "drain");
    let mut second = client(addr).await;
    let refused = hello(&mut second, json!({})).await;
    assert_eq!(refused["code"], "no_node_available", "{refused}");
    // The running session is untouched.
    send(&mut first, json!({"type": "offer", "sdp": "v=0"})).await;
    assert_eq!(recv(&mut n).await.expect("start")["type"], "start_session");
    assert_eq!(
        http(addr, "POST", "/api/nodes/nope/drain", &[], None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn the_nearest_node_wins_and_load_and_measured_rtt_reorder() {
    let svc = start_with(&behind_proxy()).await;
    let addr = svc.addr;
    let _p = node(addr, "paris", 1, paris()).await;
    let _n = node(addr, "new-york", 2, new_york()).await;
    let _t = node(addr, "tokyo", 2, tokyo()).await;
    let london = [("x-client-lat", "51.51"), ("x-client-lon", "-0.13")];
    let boston = [("x-client-lat", "42.36"), ("x-client-lon", "-71.06")];

    let mut c = located_client(addr, &boston).await;
    assert_eq!(hello(&mut c, json!({})).await["node_id"], "new-york");

    // A client in London measured a lower round trip to Tokyo than to Paris (odd, but
    // measured beats guessed).
    let mut c2 = located_client(addr, &london).await;
    assert_eq!(
        hello(&mut c2, json!({"rtt_ms": {"paris": 80.0, "tokyo": 20.0}})).await["node_id"],
        "tokyo"
    );
    // Nonsense RTTs are ignored: distance decides.
    let mut c3 = located_client(addr, &london).await;
    assert_eq!(
        hello(&mut c3, json!({"rtt_ms": {"tokyo": -5.0}})).await["node_id"],
        "paris"
    );
    // Paris is full now; the next London player goes to the next nearest, New York.
    let mut c4 = located_client(addr, &london).await;
    assert_eq!(hello(&mut c4, json!({})).await["node_id"], "new-york");
}

#[tokio::test]
async fn probe_targets_are_the_nearest_with_endpoints() {
    let svc = start_with(&behind_proxy()).await;
    let addr = svc.addr;
    let with_probe = |site: serde_json::Value, url: &str| {
        let mut s = site;
        s["probe_url"] = json!(url);
        s
    };
    let _p = node(
        addr,
        "paris",
        1,
        with_probe(paris(), "http://127.0.0.1:1/probe"),
    )
    .await;
    let _n = node(
        addr,
        "new-york",
        1,
        with_probe(new_york(), "http://127.0.0.1:2/probe"),
    )
    .await;
    let _t = node(
        addr,
        "tokyo",
        1,
        with_probe(tokyo(), "http://127.0.0.1:3/probe"),
    )
    .await;
    let _x = node(addr, "no-probe", 1, json!({})).await;
    let reply = http(
        addr,
        "GET",
        "/api/probe",
        &[("x-client-lat", "50.0"), ("x-client-lon", "8.0")],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ids: Vec<String> = reply
        .json()
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["node_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids, ["paris", "new-york", "tokyo"]);
}

fn embargo() -> Vec<GeofenceRule> {
    signaling::policy::GeofencePolicy::from_toml(
        r#"
        [[rule]]
        gpu_class = "h100"
        deny = ["IR", "KP"]
        "#,
    )
    .expect("policy")
    .rules
}

async fn publish_big_game(addr: std::net::SocketAddr) {
    let manifest = json!({"id": "big-game", "name": "Big Game", "launch": {"kind": "command", "argv": ["/opt/big/game"]}, "gpu_class": "h100"});
    let reply = http(
        addr,
        "PUT",
        "/api/titles/big-game",
        &[("authorization", "Bearer studio-key")],
        Some(&manifest.to_string()),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

#[tokio::test]
async fn the_geofence_keeps_h100_from_embargoed_countries_and_ignores_spoofed_headers() {
    let studios = vec![signaling::config::Studio {
        name: "acme".into(),
        key: "studio-key".into(),
    }];
    // Behind a trusted proxy: the proxy's country header is believed.
    let mut config = behind_proxy();
    config.rules = embargo();
    config.studios = studios.clone();
    let svc = start_with(&config).await;
    let addr = svc.addr;
    publish_big_game(addr).await;
    let _h = node(
        addr,
        "h100-de",
        4,
        json!({"gpu_class": "h100", "country": "DE", "titles": ["demo", "big-game"]}),
    )
    .await;
    let cases = [
        ("IR", "big-game", "forbidden"),
        ("KP", "big-game", "forbidden"),
        ("DE", "big-game", "welcome"),
        ("US", "big-game", "welcome"),
        // The embargo is on the GPU class, not the country: the demo title does not need an
        // H100, but the only node is one, so the rule still applies to it.
        ("IR", "demo", "forbidden"),
    ];
    for (country, title, want) in cases {
        let mut c = located_client(addr, &[("x-client-country", country)]).await;
        let reply = hello(&mut c, json!({"title": title})).await;
        let got = if reply["type"] == "welcome" {
            "welcome"
        } else {
            reply["code"].as_str().expect("code")
        };
        assert_eq!(got, want, "{country} {title}: {reply}");
        if want == "forbidden" {
            assert!(
                reply["message"].as_str().expect("message").contains("h100"),
                "{reply}"
            );
        }
    }
    // An X-Forwarded-For chain through the trusted proxy is followed, but the client's own
    // claims about itself are not believed without a trusted hop.
    drop(svc);

    // Not behind a trusted proxy: the same headers are ignored, the location is unknown, and
    // the embargo fails closed for the H100 title.
    let config = Config {
        rules: embargo(),
        studios,
        ..Config::default()
    };
    let svc = start_with(&config).await;
    let addr = svc.addr;
    publish_big_game(addr).await;
    let _h = node(
        addr,
        "h100-de",
        4,
        json!({"gpu_class": "h100", "country": "DE", "titles": ["demo", "big-game"]}),
    )
    .await;
    let mut c = located_client(
        addr,
        &[("x-client-country", "DE"), ("x-forwarded-for", "5.6.7.8")],
    )
    .await;
    let reply = hello(&mut c, json!({"title": "big-game"})).await;
    assert_eq!(
        reply["code"], "forbidden",
        "spoofed country ignored: {reply}"
    );
}

#[tokio::test]
async fn a_title_needing_another_gpu_class_is_not_sent_to_this_node() {
    let studios = vec![signaling::config::Studio {
        name: "acme".into(),
        key: "studio-key".into(),
    }];
    let config = Config {
        studios,
        ..Config::default()
    };
    let svc = start_with(&config).await;
    let addr = svc.addr;
    publish_big_game(addr).await;
    let _cpu = node(addr, "cpu-1", 4, json!({"titles": ["demo", "big-game"]})).await;
    let mut c = client(addr).await;
    let reply = hello(&mut c, json!({"title": "big-game"})).await;
    assert_eq!(reply["code"], "no_node_available", "{reply}");
    let mut c = client(addr).await;
    let reply = hello(&mut c, json!({"title": "no-such-game"})).await;
    assert_eq!(reply["code"], "unknown_title", "{reply}");
}
