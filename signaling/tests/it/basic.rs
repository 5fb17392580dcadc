//! Pairing and relaying between one client and one node.

use serde_json::json;
use signaling::SignalingError;
use signaling::service::Service;

use crate::support::*;

#[tokio::test]
async fn offer_answer_and_ice_are_relayed() {
    let svc = start().await;
    let addr = svc.addr;
    let mut n = node(addr, "n1", 1, json!({})).await;
    let mut c = client(addr).await;
    let welcome = hello(&mut c, json!({})).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["node_id"], "n1");
    send(&mut c, json!({"type": "offer", "sdp": "v=0 offer"})).await;
    let start = recv_type(&mut n, "start_session").await;
    assert_eq!(start["sdp"], "v=0 offer");
    assert_eq!(start["title"], "demo");
    assert!(start["epoch"].as_u64().expect("epoch") >= 1);
    let sid = start["session_id"].as_str().expect("sid").to_string();
    assert_eq!(sid, welcome["session_id"]);

    send(&mut c, json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})).await;
    let ice = recv_type(&mut n, "ice").await;
    assert_eq!(ice["session_id"], sid.as_str());
    assert_eq!(ice["candidate"]["sdpMLineIndex"], 0);

    send(
        &mut n,
        json!({"type": "answer", "session_id": sid, "sdp": "v=0 answer"}),
    )
    .await;
    assert_eq!(recv_type(&mut c, "answer").await["sdp"], "v=0 answer");
    send(&mut n, json!({"type": "ice", "session_id": sid, "candidate": {"candidate": "candidate:2 1 udp 1 127.0.0.1 10 typ host"}})).await;
    assert!(recv_type(&mut c, "ice").await["session_id"].is_null());

    // A node may not answer for a session that is not its own.
    send(
        &mut n,
        json!({"type": "answer", "session_id": "feed", "sdp": "v=0 x"}),
    )
    .await;
    assert_eq!(
        recv(&mut n).await.expect("error")["code"],
        "unknown_session"
    );

    // The node is full now: a second player is told so.
    let mut c2 = client(addr).await;
    let refused = hello(&mut c2, json!({})).await;
    assert_eq!(refused["code"], "no_node_available", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .expect("message")
            .contains("busy")
    );

    // The player leaves: the node is told to end the session, and the slot comes free.
    drop(c);
    let end = recv_type(&mut n, "end_session").await;
    assert_eq!(end["session_id"], sid.as_str());
    let mut c3 = client(addr).await;
    assert_eq!(hello(&mut c3, json!({})).await["type"], "welcome");
}

#[tokio::test]
async fn node_ending_a_session_tells_the_player_and_records_it() {
    let svc = start().await;
    let addr = svc.addr;
    let mut n = node(addr, "n1", 1, json!({})).await;
    let mut c = client(addr).await;
    let welcome = hello(&mut c, json!({})).await;
    let sid = welcome["session_id"].as_str().expect("sid").to_string();
    send(&mut c, json!({"type": "offer", "sdp": "v=0"})).await;
    recv_type(&mut n, "start_session").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    send(&mut n, json!({"type": "session_ended", "session_id": sid, "reason": "the title exited", "stats": {"bytes_sent": 250000, "rtt_ms": 12.5}})).await;
    let ended = recv_type(&mut c, "session_ended").await;
    assert_eq!(ended["reason"], "the title exited");
    // The record is closed with the node's figures.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let sessions = http(addr, "GET", "/api/sessions", &[], None).await.json();
        let rec = &sessions[0];
        if rec["end_reason"] == "the title exited" {
            assert_eq!(rec["session_id"], sid.as_str());
            assert_eq!(rec["node_id"], "n1");
            assert_eq!(rec["title"], "demo");
            assert!(rec["user"].as_str().expect("user").starts_with("guest-"));
            assert_eq!(rec["bytes_sent"], 250000);
            assert_eq!(rec["rtt_ms"], 12.5);
            assert!(rec["duration_ms"].as_u64().expect("duration") >= 200);
            assert!(rec["mean_bitrate_kbps"].as_f64().expect("bitrate") > 0.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "record not closed: {sessions}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn when_the_player_leaves_the_record_gets_the_nodes_figures() {
    let svc = start().await;
    let addr = svc.addr;
    let mut n = node(addr, "n1", 1, json!({})).await;
    let mut c = client(addr).await;
    let sid = hello(&mut c, json!({})).await["session_id"]
        .as_str()
        .expect("sid")
        .to_string();
    send(&mut c, json!({"type": "offer", "sdp": "v=0"})).await;
    recv_type(&mut n, "start_session").await;
    drop(c);
    assert_eq!(
        recv_type(&mut n, "end_session").await["session_id"],
        sid.as_str()
    );
    send(&mut n, json!({"type": "session_ended", "session_id": sid, "reason": "ended on request", "stats": {"bytes_sent": 4242}})).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let rec = http(addr, "GET", "/api/sessions", &[], None).await.json()[0].clone();
        if rec["end_reason"].is_string() {
            assert_eq!(rec["end_reason"], "client disconnected", "{rec}");
            assert_eq!(rec["bytes_sent"], 4242, "{rec}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "record not closed: {rec}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn lost_node_ends_the_players_session() {
    let svc = start().await;
    let addr = svc.addr;
    let n = node(addr, "n1", 1, json!({})).await;
    let mut c = client(addr).await;
    assert_eq!(hello(&mut c, json!({})).await["type"], "welcome");
    drop(n);
    let ended = recv_type(&mut c, "session_ended").await;
    assert!(
        ended["reason"].as_str().expect("reason").contains("lost"),
        "{ended}"
    );
}

#[tokio::test]
async fn duplicate_node_ids_are_refused() {
    let svc = start().await;
    let _first = node(svc.addr, "same", 1, json!({})).await;
    let mut second = node_socket(svc.addr).await;
    send(&mut second, node_hello("same", 1, json!({}))).await;
    assert_eq!(
        recv(&mut second).await.expect("error")["code"],
        "duplicate_node"
    );
}

#[tokio::test]
async fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = Service::bind(addr).await.expect_err("port is taken");
    assert!(matches!(err, SignalingError::AddrInUse { .. }), "{err:?}");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test]
async fn serves_the_browser_page() {
    let svc = start().await;
    let reply = http(svc.addr, "GET", "/", &[], None).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("<video"), "page has a video element");
    assert!(
        reply.body.contains("id=\"picker\""),
        "page has the title picker"
    );
}
