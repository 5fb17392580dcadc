//! Hostile and broken input: errors and clean closes, never a panic, and the service keeps
//! serving. Panics in the service's tasks are caught by a hook (the runtime would otherwise
//! swallow them), so these tests run on a multi-threaded runtime.

use futures_util::SinkExt;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_errors_and_the_service_survives() {
    let panics_before = worker_panics();
    let svc = start().await;
    let addr = svc.addr;
    let mut n = node(addr, "n1", 4, json!({})).await;
    let mut c = client(addr).await;
    for bad in [
        "{",
        "null",
        "[1,2]",
        r#"{"type":"launch_missiles"}"#,
        r#"{"type":"offer","sdp":"x"}"#,
    ] {
        c.send(Message::Text(bad.into())).await.expect("send");
        let reply = recv(&mut c).await.expect("an error reply, not a close");
        assert_eq!(reply["type"], "error", "{bad}: {reply}");
    }
    c.send(Message::Binary(vec![0xff, 0x00, 0x13].into()))
        .await
        .expect("send");
    assert_eq!(recv(&mut c).await.expect("reply")["code"], "bad_message");
    assert_eq!(hello(&mut c, json!({})).await["type"], "welcome");

    // Invalid SDP and candidates are refused at the door, not relayed to the node.
    for bad in [
        json!({"type": "offer", "sdp": "not sdp at all"}),
        json!({"type": "offer", "sdp": "v=0\r\n\u{0}"}),
        json!({"type": "ice", "candidate": {"candidate": "rm -rf /"}}),
        json!({"type": "ice", "candidate": {"candidate": format!("candidate:{}", "9".repeat(5000))}}),
        json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 1.2.3.4 5 typ host\r\na=evil"}}),
    ] {
        send(&mut c, bad.clone()).await;
        let reply = recv(&mut c).await.expect("an error reply");
        assert_eq!(reply["code"], "bad_message", "{bad}: {reply}");
    }
    send(
        &mut c,
        json!({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}),
    )
    .await;
    assert_eq!(
        recv(&mut n).await.expect("start")["type"],
        "start_session",
        "the first thing the node sees is the valid offer"
    );

    // Oversize frames close the connection rather than being buffered.
    let huge = "x".repeat(200 * 1024);
    let _ = c.send(Message::Text(huge.into())).await;
    assert!(
        recv(&mut c).await.is_none(),
        "oversize message closes the socket"
    );

    // Endless garbage is cut off.
    let mut g = node_socket(addr).await;
    let mut closed = false;
    for _ in 0..40 {
        if g.send(Message::Text("garbage".into())).await.is_err() {
            closed = true;
            break;
        }
    }
    while !closed {
        closed = recv(&mut g).await.is_none();
    }

    // The service still serves.
    let mut v = client(addr).await;
    send(&mut v, json!({"type": "hello", "version": 99})).await;
    assert_eq!(
        recv(&mut v).await.expect("error")["code"],
        "version_mismatch"
    );
    let _ = node(addr, "still-alive", 1, json!({})).await;
    assert_eq!(worker_panics(), panics_before, "a service task panicked");
}

/// Valid-looking messages with random mutations, over many connections, at both endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_mutations_never_panic_the_service() {
    let panics_before = worker_panics();
    let svc = start().await;
    let addr = svc.addr;
    let _n = node(addr, "n1", 64, json!({})).await;
    let seeds = [
        json!({"type": "hello", "version": 1, "title": "demo", "rtt_ms": {"n1": 3.0}}).to_string(),
        json!({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}).to_string(),
        json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}).to_string(),
        json!({"type": "hello", "version": 1, "node_id": "x", "capacity": 1, "titles": ["demo"], "coords": {"lat": 1.0, "lon": 2.0}}).to_string(),
        json!({"type": "heartbeat", "sessions": 1, "draining": false}).to_string(),
        json!({"type": "session_ended", "session_id": "abc", "reason": "r", "stats": {"bytes_sent": 1}}).to_string(),
        json!({"type": "bye"}).to_string(),
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5712a7u64);
    let mut sent = 0;
    for round in 0..24 {
        let mut ws = if round % 3 == 0 {
            node_socket(addr).await
        } else {
            client(addr).await
        };
        for _ in 0..40 {
            let mut bytes = seeds[rng.random_range(0..seeds.len())].clone().into_bytes();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..bytes.len().max(1));
                match rng.random_range(0..4) {
                    0 if !bytes.is_empty() => {
                        let i = at.min(bytes.len() - 1);
                        bytes[i] = rng.random();
                    }
                    1 => bytes.insert(at.min(bytes.len()), rng.random()),
                    2 if !bytes.is_empty() => {
                        bytes.remove(at.min(bytes.len() - 1));
                    }
                    _ => {
                        let from = rng.random_range(0..bytes.len().max(1));
                        let chunk: Vec<u8> = bytes[from..].iter().take(8).copied().collect();
                        bytes.splice(at.min(bytes.len())..at.min(bytes.len()), chunk);
                    }
                }
            }
            let text = String::from_utf8_lossy(&bytes).to_string();
            if ws.send(Message::Text(text.into())).await.is_err() {
                break;
            }
            sent += 1;
        }
        drop(ws);
    }
    assert!(sent > 300, "sent {sent} mutated messages");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut c = client(addr).await;
    assert_eq!(
        hello(&mut c, json!({})).await["type"],
        "welcome",
        "still assigning"
    );
    assert_eq!(worker_panics(), panics_before, "a service task panicked");
}
