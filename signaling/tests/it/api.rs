//! The HTTP API: studios publish, update and withdraw titles; the operator's view is guarded.

use serde_json::json;
use signaling::config::{Config, Studio};

use crate::support::*;

fn studios() -> Config {
    Config {
        studios: vec![
            Studio {
                name: "acme".into(),
                key: "acme-key".into(),
            },
            Studio {
                name: "globex".into(),
                key: "globex-key".into(),
            },
        ],
        operator_key: Some("ops-key".into()),
        ..Config::default()
    }
}

const ACME: (&str, &str) = ("authorization", "Bearer acme-key");
const GLOBEX: (&str, &str) = ("authorization", "Bearer globex-key");
const OPS: (&str, &str) = ("authorization", "Bearer ops-key");

#[tokio::test]
async fn a_studio_publishes_updates_and_withdraws_its_title() {
    let svc = start_with(&studios()).await;
    let addr = svc.addr;
    let manifest = json!({"id": "space-race", "name": "Space Race", "launch": {"kind": "image", "image": "registry.example.com/acme/space-race:1.0"}, "gpu_class": "any", "inputs": ["keyboard", "gamepad"], "allowed_regions": ["region:eu-west"]});
    let body = manifest.to_string();

    assert_eq!(
        http(addr, "PUT", "/api/titles/space-race", &[], Some(&body))
            .await
            .status,
        401
    );
    let created = http(addr, "PUT", "/api/titles/space-race", &[ACME], Some(&body)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json()["revision"], 1);
    assert_eq!(created.json()["studio"], "acme");

    // It is listed for players, not yet available (no node has it).
    let list = http(addr, "GET", "/api/titles", &[], None).await.json();
    let entry = list
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["id"] == "space-race")
        .cloned()
        .expect("listed");
    assert_eq!(entry["available"], false);
    assert_eq!(entry["name"], "Space Race");
    // A node with it installed makes it available.
    let _n = node(addr, "n1", 1, json!({"titles": ["demo", "space-race"]})).await;
    let list = http(addr, "GET", "/api/titles", &[], None).await.json();
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .any(|t| t["id"] == "space-race" && t["available"] == true)
    );

    let mut updated = manifest.clone();
    updated["name"] = json!("Space Race DX");
    let reply = http(
        addr,
        "PUT",
        "/api/titles/space-race",
        &[ACME],
        Some(&updated.to_string()),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["revision"], 2);
    assert_eq!(
        http(addr, "GET", "/api/titles/space-race", &[], None)
            .await
            .json()["manifest"]["name"],
        "Space Race DX"
    );

    // Another studio may neither overwrite nor withdraw it.
    let theirs = http(
        addr,
        "PUT",
        "/api/titles/space-race",
        &[GLOBEX],
        Some(&body),
    )
    .await;
    assert_eq!(theirs.status, 403, "{}", theirs.body);
    assert!(theirs.body.contains("another studio"));
    assert_eq!(
        http(addr, "DELETE", "/api/titles/space-race", &[GLOBEX], None)
            .await
            .status,
        403
    );

    assert_eq!(
        http(addr, "DELETE", "/api/titles/space-race", &[ACME], None)
            .await
            .status,
        204
    );
    assert_eq!(
        http(addr, "GET", "/api/titles/space-race", &[], None)
            .await
            .status,
        404
    );
    assert_eq!(
        http(addr, "DELETE", "/api/titles/space-race", &[ACME], None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bad_manifests_are_refused_with_the_reason() {
    let svc = start_with(&studios()).await;
    let addr = svc.addr;
    let cases = [
        ("/api/titles/x", "not json", 400, "invalid manifest"),
        ("/api/titles/x", r#"{"id":"x","name":"X"}"#, 400, "launch"),
        (
            "/api/titles/y",
            r#"{"id":"x","name":"X","launch":{"kind":"image","image":"a"}}"#,
            400,
            "differs",
        ),
        (
            "/api/titles/demo",
            r#"{"id":"demo","name":"X","launch":{"kind":"image","image":"a"}}"#,
            403,
            "built in",
        ),
        (
            "/api/titles/x",
            r#"{"id":"x","name":"X","launch":{"kind":"command","argv":[]}}"#,
            400,
            "program",
        ),
    ];
    for (path, body, status, needle) in cases {
        let reply = http(addr, "PUT", path, &[ACME], Some(body)).await;
        assert_eq!(reply.status, status, "{path} {body}: {}", reply.body);
        assert!(reply.body.contains(needle), "{body}: {}", reply.body);
    }
    assert_eq!(
        http(addr, "DELETE", "/api/titles/demo", &[ACME], None)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn the_operator_view_needs_the_operator_key() {
    let svc = start_with(&studios()).await;
    let addr = svc.addr;
    let _n = node(
        addr,
        "n1",
        3,
        json!({"region": "eu-west", "gpu_class": "l4"}),
    )
    .await;
    for path in ["/api/nodes", "/api/sessions", "/metrics"] {
        assert_eq!(
            http(addr, "GET", path, &[], None).await.status,
            401,
            "{path}"
        );
    }
    let nodes = http(addr, "GET", "/api/nodes", &[OPS], None).await.json();
    assert_eq!(nodes[0]["node_id"], "n1");
    assert_eq!(nodes[0]["gpu_class"], "l4");
    assert_eq!(nodes[0]["capacity"], 3);
    assert_eq!(nodes[0]["slots_used"], 0);
    let metrics = http(addr, "GET", "/metrics", &[OPS], None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("stratus_nodes_alive{"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("# TYPE stratus_assign_duration_seconds histogram")
    );
    assert_eq!(
        http(addr, "POST", "/api/nodes/n1/drain", &[], None)
            .await
            .status,
        401
    );
    assert_eq!(http(addr, "GET", "/healthz", &[], None).await.status, 200);
}
