//! The node agent: keeps a connection to signaling (reconnecting with jittered backoff), takes
//! session requests, runs each session as a task, and reports their ends.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use signaling::protocol::{self, ErrorCode, NodeMsg, PROTOCOL_VERSION, ServerMsg, SessionStats};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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
    ended: JoinSet<(String, String, u64)>,
    draining: bool,
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
            draining: false,
            to_signaling_tx,
            to_signaling_rx,
        }
    }

    /// Connects to signaling and serves sessions until `shutdown` completes; then ends every
    /// session and returns. Connection failures are retried forever with backoff.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let probe = self.start_probe().await;
        let urls = self.config.signaling_urls.clone();
        if urls.is_empty() {
            tracing::error!("no signaling URL is configured; the node cannot take sessions");
        }
        let mut attempt = 0usize;
        while !urls.is_empty() {
            // Fail over between replicas: each attempt tries the next URL.
            let url = urls[attempt % urls.len()].clone();
            attempt += 1;
            let request = match self.request(&url) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("signaling URL {url} is unusable: {e}");
                    break;
                }
            };
            let connected = tokio::select! {
                r = tokio_tungstenite::connect_async(request) => r,
                _ = &mut shutdown => break,
            };
            let reason = match connected {
                Ok((ws, _)) => match self.serve(ws, &url, &mut backoff, &mut shutdown).await {
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
        if let Some(probe) = probe {
            probe.abort();
        }
    }

    /// Starts the RTT probe endpoint when configured.
    async fn start_probe(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let addr = self.config.probe_listen?;
        match crate::probe::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                if self.config.probe_url.is_none() {
                    self.config.probe_url = Some(format!("http://{bound}/probe"));
                }
                tracing::info!(%bound, "RTT probe endpoint listening");
                Some(tokio::spawn(crate::probe::serve(listener)))
            }
            Err(e) => {
                tracing::warn!(
                    "cannot serve the RTT probe endpoint on {addr}: {e}; clients will rank this node by distance"
                );
                None
            }
        }
    }

    /// The WebSocket request for `url`, with a fresh signed token when the node has a key.
    fn request(
        &self,
        url: &str,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, String> {
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(key) = &self.config.node_key {
            let key = signaling::token::TokenKey::from_secret_str(key)
                .map_err(|e| format!("node key: {e}"))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let (token, _) = key
                .issue(
                    &self.config.node_id,
                    signaling::token::AUD_NODE,
                    60,
                    None,
                    now,
                )
                .map_err(|e| e.to_string())?;
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|e| format!("token header: {e}"))?;
            request.headers_mut().insert("authorization", value);
        }
        Ok(request)
    }

    async fn serve(
        &mut self,
        ws: Ws,
        url: &str,
        backoff: &mut Backoff,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Disconnect {
        let (mut sink, mut stream) = ws.split();
        let hello = NodeMsg::Hello {
            version: PROTOCOL_VERSION,
            node_id: self.config.node_id.clone(),
            capacity: self.config.capacity,
            titles: self.config.titles.clone(),
            site: self.config.site.clone(),
            gpu_class: self.config.gpu_class.clone(),
            public_addr: self.config.public_addr.clone(),
            probe_url: self.config.probe_url.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        if let Err(e) = sink.send(text(&hello)).await {
            return Disconnect::Lost(format!("cannot send hello ({e})"));
        }
        let registered = tokio::time::timeout(REGISTER_TIMEOUT, stream.next()).await;
        let heartbeat_every;
        match registered {
            Ok(Some(Ok(Message::Text(t)))) => match protocol::parse::<ServerMsg>(&t) {
                Ok(ServerMsg::Registered {
                    node_id,
                    heartbeat_ms,
                    ..
                }) => {
                    tracing::info!(node_id, url, "registered with signaling");
                    backoff.reset();
                    heartbeat_every =
                        Duration::from_millis(u64::from(heartbeat_ms.clamp(100, 10_000)));
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
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Sessions that ended while we were away are reported now.
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let beat = NodeMsg::Heartbeat {
                        sessions: self.sessions.len() as u32,
                        draining: self.draining,
                    };
                    if let Err(e) = sink.send(text(&beat)).await {
                        return Disconnect::Lost(format!("send failed ({e})"));
                    }
                },
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
                    if let Ok((session_id, reason, bytes_sent)) = done {
                        self.sessions.remove(&session_id);
                        tracing::info!(session_id, reason, bytes_sent, "session over");
                        let stats = Some(SessionStats { bytes_sent, rtt_ms: None });
                        let msg = NodeMsg::SessionEnded { session_id, reason, stats };
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
            ServerMsg::Drain => {
                tracing::info!("draining: finishing running sessions, taking no new ones");
                self.draining = true;
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
                stats: None,
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
            bytes_sent: Arc::new(AtomicU64::new(0)),
        };
        let bytes_sent = params.bytes_sent.clone();
        let to_signaling = self.to_signaling_tx.clone();
        tracing::info!(session_id, "starting a session");
        self.ended.spawn(async move {
            let reason = session::run(params, to_signaling, rx).await;
            (session_id, reason, bytes_sent.load(Ordering::Relaxed))
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
