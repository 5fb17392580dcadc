//! The signaling service over real sockets: pairing, relaying, and bad input.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use signaling::SignalingError;
use signaling::service::Service;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn start() -> std::net::SocketAddr {
    let service = Service::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = service.local_addr();
    tokio::spawn(service.run(std::future::pending()));
    addr
}

async fn connect(addr: std::net::SocketAddr, path: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .expect("connect");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message, or `None` if the socket closed; fails the test after 5 s.
async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("reply within 5 s");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("json")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

async fn node(addr: std::net::SocketAddr, id: &str) -> Ws {
    let mut ws = connect(addr, "/ws/node").await;
    send(
        &mut ws,
        json!({"type": "hello", "version": 1, "node_id": id, "capacity": 1, "titles": ["demo"]}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await.expect("registered")["type"],
        "registered"
    );
    ws
}

#[tokio::test]
async fn offer_answer_and_ice_are_relayed() {
    let addr = start().await;
    let mut n = node(addr, "n1").await;
    let mut c = connect(addr, "/ws").await;
    send(&mut c, json!({"type": "hello", "version": 1})).await;
    let welcome = recv(&mut c).await.expect("welcome");
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["node_id"], "n1");
    send(&mut c, json!({"type": "offer", "sdp": "v=0 offer"})).await;
    let start = recv(&mut n).await.expect("start_session");
    assert_eq!(start["type"], "start_session");
    assert_eq!(start["sdp"], "v=0 offer");
    let sid = start["session_id"].as_str().expect("sid").to_string();
    assert_eq!(sid, welcome["session_id"]);

    send(&mut c, json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})).await;
    let ice = recv(&mut n).await.expect("ice");
    assert_eq!(ice["session_id"], sid.as_str());
    assert_eq!(ice["candidate"]["sdpMLineIndex"], 0);

    send(
        &mut n,
        json!({"type": "answer", "session_id": sid, "sdp": "v=0 answer"}),
    )
    .await;
    assert_eq!(recv(&mut c).await.expect("answer")["sdp"], "v=0 answer");

    // The node is full now: a second player is told so.
    let mut c2 = connect(addr, "/ws").await;
    send(&mut c2, json!({"type": "hello", "version": 1})).await;
    let refused = recv(&mut c2).await.expect("error");
    assert_eq!(refused["code"], "no_node_available");

    // The player leaves: the node is told to end the session.
    drop(c);
    let end = recv(&mut n).await.expect("end_session");
    assert_eq!(end["type"], "end_session");
    assert_eq!(end["session_id"], sid.as_str());
}

#[tokio::test]
async fn lost_node_ends_the_players_session() {
    let addr = start().await;
    let n = node(addr, "n1").await;
    let mut c = connect(addr, "/ws").await;
    send(&mut c, json!({"type": "hello", "version": 1})).await;
    assert_eq!(recv(&mut c).await.expect("welcome")["type"], "welcome");
    drop(n);
    let ended = recv(&mut c).await.expect("session_ended");
    assert_eq!(ended["type"], "session_ended");
    assert!(
        ended["reason"].as_str().expect("reason").contains("lost"),
        "{ended}"
    );
}

#[tokio::test]
async fn malformed_messages_get_errors_and_the_service_survives() {
    let addr = start().await;
    let mut c = connect(addr, "/ws").await;
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

    // Oversize frames close the connection rather than being buffered.
    let huge = "x".repeat(200 * 1024);
    let _ = c.send(Message::Text(huge.into())).await;
    assert!(
        recv(&mut c).await.is_none(),
        "oversize message closes the socket"
    );

    // Endless garbage is cut off.
    let mut g = connect(addr, "/ws/node").await;
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
    let mut v = connect(addr, "/ws").await;
    send(&mut v, json!({"type": "hello", "version": 99})).await;
    assert_eq!(
        recv(&mut v).await.expect("error")["code"],
        "version_mismatch"
    );
    let _ = node(addr, "still-alive").await;
}

#[tokio::test]
async fn duplicate_node_ids_are_refused() {
    let addr = start().await;
    let _first = node(addr, "same").await;
    let mut second = connect(addr, "/ws/node").await;
    send(
        &mut second,
        json!({"type": "hello", "version": 1, "node_id": "same", "capacity": 1}),
    )
    .await;
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
    let addr = start().await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("<video"), "page has a video element");
}
