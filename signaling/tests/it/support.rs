//! What the tests share: starting services, a small HTTP client, tokens, and WebSocket peers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use signaling::config::Config;
use signaling::service::{ReplicaState, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A client or node WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running service; stops when dropped.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<ReplicaState>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), signaling::SignalingError>>>,
}

impl Running {
    /// Stops the service and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts a service with `config` on a free loopback port.
pub async fn start_with(config: &Config) -> Running {
    let service = Service::bind_with("127.0.0.1:0".parse().expect("addr"), config)
        .await
        .expect("bind");
    run(service)
}

/// Starts a service over prepared shared state.
pub async fn start_shared(shared: Arc<ReplicaState>) -> Running {
    let service = Service::bind_shared("127.0.0.1:0".parse().expect("addr"), shared)
        .await
        .expect("bind");
    run(service)
}

fn run(service: Service) -> Running {
    let addr = service.local_addr();
    let shared = service.shared();
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(service.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    Running {
        addr,
        shared,
        stop,
        task: Some(task),
    }
}

/// Starts a service with the embedded defaults.
pub async fn start() -> Running {
    start_with(&Config::default()).await
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("json body ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request; `headers` as `("name", "value")`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("reply in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply { status, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A guest token from `POST /api/token`.
pub async fn token(addr: SocketAddr) -> String {
    let reply = http(addr, "POST", "/api/token", &[], Some("{}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["token"].as_str().expect("token").to_string()
}

/// Opens a WebSocket; `Err(status)` when the upgrade is refused.
pub async fn try_connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, u16> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (k, v) in headers {
        request.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            v.parse().expect("header value"),
        );
    }
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("handshake in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

/// A client WebSocket with a fresh guest token.
pub async fn client(addr: SocketAddr) -> Ws {
    let t = token(addr).await;
    try_connect(addr, &format!("/ws?token={t}"), &[])
        .await
        .expect("client upgrade accepted")
}

/// A node WebSocket (no node key configured).
pub async fn node_socket(addr: SocketAddr) -> Ws {
    try_connect(addr, "/ws/node", &[])
        .await
        .expect("node upgrade accepted")
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message, or `None` if the socket closed; fails the test after 5 s.
pub async fn recv(ws: &mut Ws) -> Option<Value> {
    recv_within(ws, Duration::from_secs(5)).await
}

/// The next JSON message within `limit`, or `None` if the socket closed.
pub async fn recv_within(ws: &mut Ws, limit: Duration) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(limit, ws.next())
            .await
            .expect("a message in time");
        match msg {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("json")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// The next message that is not a heartbeat-style noise for nodes (skips nothing today; kept
/// so tests read well).
pub async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    let v = recv(ws)
        .await
        .unwrap_or_else(|| panic!("socket closed waiting for {ty}"));
    assert_eq!(v["type"], ty, "{v}");
    v
}

/// A node hello with these details.
pub fn node_hello(id: &str, capacity: u32, extra: Value) -> Value {
    let mut hello = json!({"type": "hello", "version": 1, "node_id": id, "capacity": capacity, "titles": ["demo"]});
    if let (Some(h), Some(e)) = (hello.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            h.insert(k.clone(), v.clone());
        }
    }
    hello
}

/// A registered node that keeps heartbeating in the background until the socket is used
/// elsewhere; returns the socket.
pub async fn node(addr: SocketAddr, id: &str, capacity: u32, extra: Value) -> Ws {
    let mut ws = node_socket(addr).await;
    send(&mut ws, node_hello(id, capacity, extra)).await;
    let reply = recv(&mut ws).await.expect("registered");
    assert_eq!(reply["type"], "registered", "{reply}");
    ws
}

/// Sends a heartbeat.
pub async fn heartbeat(ws: &mut Ws) {
    send(ws, json!({"type": "heartbeat", "sessions": 0})).await;
}

/// Sends hello and returns the reply (welcome or error).
pub async fn hello(ws: &mut Ws, extra: Value) -> Value {
    let mut h = json!({"type": "hello", "version": 1});
    if let (Some(h), Some(e)) = (h.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            h.insert(k.clone(), v.clone());
        }
    }
    send(ws, h).await;
    recv(ws).await.expect("a reply to hello")
}

static WORKER_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Installs (once) a panic hook that counts panics on Tokio worker threads, where the
/// service's tasks run in `multi_thread` tests; returns the count so far.
pub fn worker_panics() -> usize {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-runtime-worker"))
            {
                WORKER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    WORKER_PANICS.load(Ordering::SeqCst)
}
