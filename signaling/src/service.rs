//! The HTTP and WebSocket service: serves the browser client, takes client and node
//! connections, and routes their messages through the [`Hub`].
//!
//! Routes:
//! - `GET /` and the page's files: the browser client;
//! - `GET /ws`: a player's client connection ([`ClientMsg`] in, [`ServerMsg`] out);
//! - `GET /ws/node`: a node agent's connection ([`NodeMsg`] in, [`ServerMsg`] out);
//! - `GET /api/nodes`: the connected nodes (JSON);
//! - `GET /healthz`: `ok`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::hub::{Hub, OUTBOX_DEPTH, Outbox};
use crate::protocol::{
    ClientMsg, ErrorCode, MAX_MESSAGE_BYTES, NodeMsg, PROTOCOL_VERSION, ServerMsg, parse,
};
use crate::{SignalingError, web};

/// Malformed messages a connection may send before it is closed.
const MAX_BAD_MESSAGES: u32 = 16;

/// A bound, not yet running signaling service.
#[derive(Debug)]
pub struct Service {
    listener: TcpListener,
    hub: Arc<Hub>,
}

impl Service {
    /// Binds the service to `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> Result<Self, SignalingError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                SignalingError::AddrInUse { addr }
            } else {
                SignalingError::Bind { addr, source }
            }
        })?;
        Ok(Self {
            listener,
            hub: Arc::new(Hub::default()),
        })
    }

    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The routing state, for embedding and tests.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SignalingError> {
        let addr = self.local_addr();
        tracing::info!(%addr, "signaling service listening");
        axum::serve(self.listener, router(self.hub))
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| SignalingError::Serve { addr, source })
    }
}

/// The service's routes over a hub.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/", get(static_file_root))
        .route("/{file}", get(static_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/nodes", get(nodes))
        .route("/ws", get(client_ws))
        .route("/ws/node", get(node_ws))
        .with_state(hub)
}

async fn static_file_root() -> Response {
    serve_file("/")
}

async fn static_file(Path(file): Path<String>) -> Response {
    serve_file(&format!("/{file}"))
}

fn serve_file(path: &str) -> Response {
    match web::file(path) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, f.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            f.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn nodes(State(hub): State<Arc<Hub>>) -> Response {
    axum::Json(hub.nodes()).into_response()
}

async fn client_ws(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| client_connection(socket, hub))
}

async fn node_ws(ws: WebSocketUpgrade, State(hub): State<Arc<Hub>>) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| node_connection(socket, hub))
}

/// Splits a socket into an outbox (drained by a writer task) and its reading half.
fn spawn_writer(socket: WebSocket) -> (Outbox, futures_util::stream::SplitStream<WebSocket>) {
    let (mut sink, stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<ServerMsg>(OUTBOX_DEPTH);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink
                .send(Message::Text(msg.to_json().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (tx, stream)
}

/// Reads the next text message; `None` when the peer closed or the socket failed.
async fn next_text(stream: &mut futures_util::stream::SplitStream<WebSocket>) -> Option<String> {
    loop {
        match stream.next().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Binary(_)) => return Some(String::from("<binary>")),
            Ok(Message::Close(_)) => return None,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!("websocket read failed: {e}");
                return None;
            }
        }
    }
}

/// Counts malformed messages and says whether the connection should be dropped.
struct Strikes(u32);

impl Strikes {
    fn bad(&mut self, outbox: &Outbox, code: ErrorCode, message: String) -> bool {
        self.0 += 1;
        tracing::debug!(?code, %message, "refused a message");
        let _ = outbox.try_send(ServerMsg::error(code, message));
        self.0 >= MAX_BAD_MESSAGES
    }
}

async fn client_connection(socket: WebSocket, hub: Arc<Hub>) {
    let (outbox, mut stream) = spawn_writer(socket);
    let mut strikes = Strikes(0);
    // Until hello, nothing else is accepted.
    let title = loop {
        let Some(text) = next_text(&mut stream).await else {
            return;
        };
        match parse::<ClientMsg>(&text) {
            Ok(ClientMsg::Hello { version, title }) if version == PROTOCOL_VERSION => break title,
            Ok(ClientMsg::Hello { version, .. }) => {
                let _ = outbox.try_send(ServerMsg::error(
                    ErrorCode::VersionMismatch,
                    format!("this service speaks protocol {PROTOCOL_VERSION}, not {version}"),
                ));
                return;
            }
            Ok(_) => {
                if strikes.bad(
                    &outbox,
                    ErrorCode::UnexpectedMessage,
                    "send hello first".into(),
                ) {
                    return;
                }
            }
            Err(e) => {
                if strikes.bad(&outbox, ErrorCode::BadMessage, e) {
                    return;
                }
            }
        }
    };
    let (session_id, node_id) = match hub.open_session(title, outbox.clone()) {
        Ok(ids) => ids,
        Err(code) => {
            let _ = outbox.try_send(ServerMsg::error(
                code,
                "no node can take a session right now; try again shortly",
            ));
            return;
        }
    };
    let _ = outbox.try_send(ServerMsg::Welcome {
        version: PROTOCOL_VERSION,
        session_id: session_id.clone(),
        node_id,
    });
    let mut reason = "client disconnected";
    while let Some(text) = next_text(&mut stream).await {
        let routed = match parse::<ClientMsg>(&text) {
            Ok(ClientMsg::Offer { sdp }) => hub.client_offer(&session_id, sdp),
            Ok(ClientMsg::Ice { candidate }) => hub.client_ice(&session_id, candidate),
            Ok(ClientMsg::Bye) => {
                reason = "client said bye";
                break;
            }
            Ok(ClientMsg::Hello { .. }) => {
                if strikes.bad(
                    &outbox,
                    ErrorCode::UnexpectedMessage,
                    "hello was already sent".into(),
                ) {
                    break;
                }
                Ok(())
            }
            Err(e) => {
                if strikes.bad(&outbox, ErrorCode::BadMessage, e) {
                    reason = "too many malformed messages";
                    break;
                }
                Ok(())
            }
        };
        if let Err(code) = routed {
            let _ = outbox.try_send(ServerMsg::error(code, "the session is no longer active"));
        }
    }
    hub.client_gone(&session_id, reason);
}

async fn node_connection(socket: WebSocket, hub: Arc<Hub>) {
    let (outbox, mut stream) = spawn_writer(socket);
    let mut strikes = Strikes(0);
    let node_id = loop {
        let Some(text) = next_text(&mut stream).await else {
            return;
        };
        match parse::<NodeMsg>(&text) {
            Ok(NodeMsg::Hello {
                version,
                node_id,
                capacity,
                titles,
            }) => {
                if version != PROTOCOL_VERSION {
                    let _ = outbox.try_send(ServerMsg::error(
                        ErrorCode::VersionMismatch,
                        format!("this service speaks protocol {PROTOCOL_VERSION}, not {version}"),
                    ));
                    return;
                }
                if node_id.is_empty() || node_id.len() > 128 {
                    let _ = outbox.try_send(ServerMsg::error(
                        ErrorCode::BadMessage,
                        "node_id must be 1 to 128 characters",
                    ));
                    return;
                }
                match hub.register_node(&node_id, capacity, titles, outbox.clone()) {
                    Ok(()) => break node_id,
                    Err(code) => {
                        let _ = outbox.try_send(ServerMsg::error(
                            code,
                            format!("a node with id {node_id:?} is already connected"),
                        ));
                        return;
                    }
                }
            }
            Ok(_) => {
                if strikes.bad(
                    &outbox,
                    ErrorCode::UnexpectedMessage,
                    "send hello first".into(),
                ) {
                    return;
                }
            }
            Err(e) => {
                if strikes.bad(&outbox, ErrorCode::BadMessage, e) {
                    return;
                }
            }
        }
    };
    while let Some(text) = next_text(&mut stream).await {
        let routed = match parse::<NodeMsg>(&text) {
            Ok(NodeMsg::Answer { session_id, sdp }) => hub.node_answer(&node_id, &session_id, sdp),
            Ok(NodeMsg::Ice {
                session_id,
                candidate,
            }) => hub.node_ice(&node_id, &session_id, candidate),
            Ok(NodeMsg::SessionEnded { session_id, reason }) => {
                hub.node_session_ended(&node_id, &session_id, reason);
                Ok(())
            }
            Ok(NodeMsg::Hello { .. }) => {
                if strikes.bad(
                    &outbox,
                    ErrorCode::UnexpectedMessage,
                    "hello was already sent".into(),
                ) {
                    break;
                }
                Ok(())
            }
            Err(e) => {
                if strikes.bad(&outbox, ErrorCode::BadMessage, e) {
                    break;
                }
                Ok(())
            }
        };
        if let Err(code) = routed {
            let _ = outbox.try_send(ServerMsg::error(code, "no such session on this node"));
        }
    }
    hub.node_gone(&node_id);
}
