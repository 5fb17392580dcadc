//! The node agent: keeps a connection to signaling (reconnecting with jittered backoff), takes
//! session requests, runs each session as a task, and reports their ends.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use signaling::protocol::{self, ErrorCode, NodeMsg, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::Backoff;
use crate::config::NodeConfig;
use crate::session::{self, SessionCmd, SessionParams};

/// How long registration may take after connecting.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long running sessions get to wind down at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A streaming node. See the crate docs.
#[derive(Debug)]
pub struct Node {
    config: NodeConfig,
    sessions: HashMap<String, mpsc::Sender<SessionCmd>>,
    ended: JoinSet<(String, String)>,
    to_signaling_tx: mpsc::Sender<NodeMsg>,
    to_signaling_rx: mpsc::Receiver<NodeMsg>,
}

/// Why one signaling connection ended.
enum Disconnect {
    Lost(String),
    Shutdown,
}

impl Node {
    /// A node with this configuration; nothing runs until [`Node::run`].
    pub fn new(config: NodeConfig) -> Self {
        let (to_signaling_tx, to_signaling_rx) = mpsc::channel(256);
        Self {
            config,
            sessions: HashMap::new(),
            ended: JoinSet::new(),
            to_signaling_tx,
            to_signaling_rx,
        }
    }

    /// Connects to signaling and serves sessions until `shutdown` completes; then ends every
    /// session and returns. Connection failures are retried forever with backoff.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let url = self.config.signaling_url.clone();
        loop {
            let connected = tokio::select! {
                r = tokio_tungstenite::connect_async(url.as_str()) => r,
                _ = &mut shutdown => break,
            };
            let reason = match connected {
                Ok((ws, _)) => match self.serve(ws, &mut backoff, &mut shutdown).await {
                    Disconnect::Shutdown => break,
                    Disconnect::Lost(reason) => reason,
                },
                Err(e) => format!("unreachable ({e})"),
            };
            let delay = backoff.next_delay(rand::random());
            tracing::warn!(
                "signaling at {url}: {reason}; retrying in {:.1} s",
                delay.as_secs_f64()
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = &mut shutdown => break,
            }
        }
        self.end_all("the node is shutting down").await;
    }

    async fn serve(
        &mut self,
        ws: Ws,
        backoff: &mut Backoff,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Disconnect {
        let (mut sink, mut stream) = ws.split();
        let hello = NodeMsg::Hello {
            version: PROTOCOL_VERSION,
            node_id: self.config.node_id.clone(),
            capacity: self.config.capacity,
            titles: vec!["demo".into()],
        };
        if let Err(e) = sink.send(text(&hello)).await {
            return Disconnect::Lost(format!("cannot send hello ({e})"));
        }
        let registered = tokio::time::timeout(REGISTER_TIMEOUT, stream.next()).await;
        match registered {
            Ok(Some(Ok(Message::Text(t)))) => match protocol::parse::<ServerMsg>(&t) {
                Ok(ServerMsg::Registered { node_id, .. }) => {
                    tracing::info!(node_id, url = %self.config.signaling_url, "registered with signaling");
                    backoff.reset();
                }
                Ok(ServerMsg::Error { code, message }) => {
                    return Disconnect::Lost(format!("registration refused: {code:?}: {message}"));
                }
                other => return Disconnect::Lost(format!("unexpected reply to hello: {other:?}")),
            },
            Ok(other) => {
                return Disconnect::Lost(format!("closed during registration ({other:?})"));
            }
            Err(_) => return Disconnect::Lost("no reply to hello".into()),
        }
        // Sessions that ended while we were away are reported now.
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => self.handle(&t),
                    Some(Ok(Message::Close(_))) | None => return Disconnect::Lost("connection closed".into()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Disconnect::Lost(format!("connection failed ({e})")),
                },
                Some(out) = self.to_signaling_rx.recv() => {
                    if let Err(e) = sink.send(text(&out)).await {
                        return Disconnect::Lost(format!("send failed ({e})"));
                    }
                },
                Some(done) = self.ended.join_next(), if !self.ended.is_empty() => {
                    if let Ok((session_id, reason)) = done {
                        self.sessions.remove(&session_id);
                        tracing::info!(session_id, reason, "session over");
                        let msg = NodeMsg::SessionEnded { session_id, reason };
                        if let Err(e) = sink.send(text(&msg)).await {
                            return Disconnect::Lost(format!("send failed ({e})"));
                        }
                    }
                },
                _ = shutdown.as_mut() => {
                    let _ = sink.close().await;
                    return Disconnect::Shutdown;
                }
            }
        }
    }

    fn handle(&mut self, text: &str) {
        let msg = match protocol::parse::<ServerMsg>(text) {
            Ok(msg) => msg,
            Err(e) => {
                tracing::warn!("ignoring a message from signaling: {e}");
                return;
            }
        };
        match msg {
            ServerMsg::StartSession {
                session_id, sdp, ..
            } => self.start_session(session_id, sdp),
            ServerMsg::Ice {
                session_id: Some(session_id),
                candidate,
            } => {
                if let Some(s) = self.sessions.get(&session_id) {
                    let _ = s.try_send(SessionCmd::RemoteIce(candidate));
                }
            }
            ServerMsg::EndSession { session_id, reason } => {
                if let Some(s) = self.sessions.get(&session_id) {
                    let _ = s.try_send(SessionCmd::End(reason));
                }
            }
            ServerMsg::Error { code, message } => {
                tracing::warn!(?code, "signaling reported: {message}");
            }
            other => tracing::debug!("ignoring {other:?}"),
        }
    }

    fn start_session(&mut self, session_id: String, offer_sdp: String) {
        if self.sessions.contains_key(&session_id) {
            tracing::warn!(session_id, "duplicate start for a running session ignored");
            return;
        }
        if self.sessions.len() as u32 >= self.config.capacity {
            let _ = self.to_signaling_tx.try_send(NodeMsg::SessionEnded {
                session_id,
                reason: format!("{:?}: the node is at capacity", ErrorCode::NoNodeAvailable),
            });
            return;
        }
        let (tx, rx) = mpsc::channel(64);
        self.sessions.insert(session_id.clone(), tx);
        let params = SessionParams {
            session_id: session_id.clone(),
            offer_sdp,
            video: self.config.video.clone(),
            rtc_ip: self.config.rtc_ip,
        };
        let to_signaling = self.to_signaling_tx.clone();
        tracing::info!(session_id, "starting a session");
        self.ended.spawn(async move {
            let reason = session::run(params, to_signaling, rx).await;
            (session_id, reason)
        });
    }

    async fn end_all(&mut self, reason: &str) {
        for s in self.sessions.values() {
            let _ = s.try_send(SessionCmd::End(reason.to_string()));
        }
        let all = async { while self.ended.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            tracing::warn!("sessions did not end within {SHUTDOWN_GRACE:?}; aborting them");
            self.ended.abort_all();
        }
        self.sessions.clear();
    }
}

fn text(msg: &NodeMsg) -> Message {
    Message::Text(
        serde_json::to_string(msg)
            .expect("protocol messages always serialise")
            .into(),
    )
}
