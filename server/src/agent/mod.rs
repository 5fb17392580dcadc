//! The node agent: keeps a connection to signaling (reconnecting with jittered backoff), takes
//! session requests, runs each session as a task, and reports their ends. [`backoff`] spaces
//! its reconnections; [`probe`] serves the RTT probe and `/metrics`.

mod backoff;
mod probe;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use signaling::protocol::{self, ErrorCode, NodeMsg, PROTOCOL_VERSION, ServerMsg, SessionStats};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::config::NodeConfig;
use crate::session::{self, SessionCmd, SessionParams};
use crate::title::{NodeResources, PATTERN_BUILTIN, TitleKind};
use backoff::Backoff;

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
    ended: JoinSet<(String, session::SessionEnd, u64)>,
    /// Taking no new sessions (signaling's `drain` or [`Drainer::drain`]).
    draining: Arc<AtomicBool>,
    /// Set once [`Drainer::drain`] was called: when the last session ends, the node stops.
    drain_deadline: Option<tokio::time::Instant>,
    drain_tx: Arc<watch::Sender<bool>>,
    drain_rx: watch::Receiver<bool>,
    resources: Option<Arc<NodeResources>>,
    metrics: Arc<crate::metrics::NodeMetrics>,
    to_signaling_tx: mpsc::Sender<NodeMsg>,
    to_signaling_rx: mpsc::Receiver<NodeMsg>,
}

/// Asks a running [`Node`] to drain: take no new sessions, let the running ones end (or end
/// them after the configured drain timeout), then stop. What SIGTERM does.
#[derive(Debug, Clone)]
pub struct Drainer(Arc<watch::Sender<bool>>);

impl Drainer {
    /// Starts draining.
    pub fn drain(&self) {
        let _ = self.0.send(true);
    }
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
        let (drain_tx, drain_rx) = watch::channel(false);
        Self {
            config,
            sessions: HashMap::new(),
            ended: JoinSet::new(),
            draining: Arc::new(AtomicBool::new(false)),
            drain_deadline: None,
            drain_tx: Arc::new(drain_tx),
            drain_rx,
            resources: None,
            metrics: Arc::default(),
            to_signaling_tx,
            to_signaling_rx,
        }
    }

    /// The node's metrics (what `/metrics` serves), live.
    pub fn metrics(&self) -> Arc<crate::metrics::NodeMetrics> {
        self.metrics.clone()
    }

    /// A handle that makes the node drain (see [`Drainer`]).
    pub fn drainer(&self) -> Drainer {
        Drainer(self.drain_tx.clone())
    }

    /// Connects to signaling and serves sessions until `shutdown` completes (or a drain
    /// finishes); then ends every session and returns. Connection failures are retried forever
    /// with backoff.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let session_config = self.config.sessions.clone();
        let metrics = self.metrics.clone();
        let resources = tokio::select! {
            r = tokio::task::spawn_blocking(move || NodeResources::prepare(session_config, metrics)) => r,
            _ = &mut shutdown => return,
        };
        let resources = match resources {
            Ok(r) => Arc::new(r),
            Err(e) => {
                tracing::error!("preparing the node failed: {e}");
                return;
            }
        };
        self.resources = Some(resources.clone());
        let probe = self.start_probe(&resources).await;
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
            if self.drain_deadline.is_some() && self.sessions.is_empty() {
                break;
            }
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
        // The last reference: the sound server stops and the runtime directory goes.
        self.resources = None;
        if let Ok(resources) = Arc::try_unwrap(resources) {
            let _ = tokio::task::spawn_blocking(move || drop(resources)).await;
        }
    }

    /// Starts the HTTP endpoint (RTT probe, `/metrics`) when configured.
    async fn start_probe(
        &mut self,
        resources: &Arc<NodeResources>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let addr = self.config.probe_listen?;
        let metrics: probe::MetricsFn = {
            let (metrics, draining, capacity) = (
                resources.metrics.clone(),
                self.draining.clone(),
                self.config.capacity,
            );
            Arc::new(move || metrics.render(capacity, draining.load(Ordering::Relaxed)))
        };
        match probe::bind(addr).await {
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                if self.config.probe_url.is_none() {
                    self.config.probe_url = Some(format!("http://{bound}/probe"));
                }
                tracing::info!(%bound, "RTT probe endpoint listening");
                Some(tokio::spawn(probe::serve(listener, Some(metrics))))
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
            titles: self.titles(),
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
                    if let Err(e) = sink.send(text(&self.heartbeat())).await {
                        return Disconnect::Lost(format!("send failed ({e})"));
                    }
                },
                _ = self.drain_rx.changed(), if self.drain_deadline.is_none() => {
                    self.start_drain();
                    if let Err(e) = sink.send(text(&self.heartbeat())).await {
                        return Disconnect::Lost(format!("send failed ({e})"));
                    }
                    if self.sessions.is_empty() {
                        let _ = sink.close().await;
                        return Disconnect::Shutdown;
                    }
                },
                _ = sleep_until_opt(self.drain_deadline), if self.drain_deadline.is_some() => {
                    tracing::warn!("drain timeout: ending the remaining sessions");
                    self.end_all("the node is shutting down (drain timeout)").await;
                    let _ = sink.close().await;
                    return Disconnect::Shutdown;
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
                    if let Ok((session_id, end, bytes_sent)) = done {
                        let session::SessionEnd { reason, permanent } = end;
                        self.sessions.remove(&session_id);
                        if let Some(r) = &self.resources {
                            r.metrics.remove(&session_id);
                            r.metrics.sessions_ended.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::info!(session_id, reason, permanent, bytes_sent, "session over");
                        let stats = Some(SessionStats { bytes_sent, rtt_ms: None });
                        let msg = NodeMsg::SessionEnded { session_id, reason, permanent, stats };
                        if let Err(e) = sink.send(text(&msg)).await {
                            return Disconnect::Lost(format!("send failed ({e})"));
                        }
                        if self.drain_deadline.is_some() && self.sessions.is_empty() {
                            tracing::info!("drained: the last session ended");
                            let _ = sink.close().await;
                            return Disconnect::Shutdown;
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
                session_id,
                sdp,
                title,
                launch,
                ..
            } => self.start_session(session_id, sdp, title, launch),
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
                self.draining.store(true, Ordering::Relaxed);
            }
            ServerMsg::Error { code, message } => {
                tracing::warn!(?code, "signaling reported: {message}");
            }
            other => tracing::debug!("ignoring {other:?}"),
        }
    }

    /// The titles this node runs: those it was configured with, and the pattern, which every
    /// node offers (checkers and the latency lab play it).
    fn titles(&self) -> Vec<String> {
        let mut titles = self.config.titles.clone();
        if !titles.iter().any(|t| t == PATTERN_BUILTIN) {
            titles.push(PATTERN_BUILTIN.to_string());
        }
        titles
    }

    fn heartbeat(&self) -> NodeMsg {
        NodeMsg::Heartbeat {
            sessions: self.sessions.len() as u32,
            draining: self.draining.load(Ordering::Relaxed),
        }
    }

    fn start_drain(&mut self) {
        let timeout = self.config.sessions.drain_timeout;
        tracing::info!(
            sessions = self.sessions.len(),
            "draining: taking no new sessions; stopping when the running ones end (at most {timeout:?})"
        );
        self.draining.store(true, Ordering::Relaxed);
        self.drain_deadline = Some(tokio::time::Instant::now() + timeout);
    }

    /// Refuses a session; `permanent` when asking this node again would be refused again.
    fn refuse(&self, session_id: String, reason: String, permanent: bool) {
        if let Some(r) = &self.resources {
            r.metrics.sessions_refused.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(session_id, "session refused: {reason}");
        let _ = self.to_signaling_tx.try_send(NodeMsg::SessionEnded {
            session_id,
            reason,
            permanent,
            stats: None,
        });
    }

    fn start_session(
        &mut self,
        session_id: String,
        offer_sdp: String,
        title: Option<String>,
        launch: Option<signaling::catalog::Launch>,
    ) {
        if self.sessions.contains_key(&session_id) {
            tracing::warn!(session_id, "duplicate start for a running session ignored");
            return;
        }
        if self.sessions.len() as u32 >= self.config.capacity {
            let reason = format!("{:?}: the node is at capacity", ErrorCode::NoNodeAvailable);
            return self.refuse(session_id, reason, false);
        }
        if self.draining.load(Ordering::Relaxed) {
            return self.refuse(session_id, "the node is draining".into(), false);
        }
        let Some(resources) = self.resources.clone() else {
            return self.refuse(session_id, "the node is still starting".into(), false);
        };
        if let Some(t) = &title
            && !self.titles().iter().any(|installed| installed == t)
        {
            return self.refuse(
                session_id,
                format!("title {t:?} is not installed on this node"),
                true,
            );
        }
        let kind = match TitleKind::from_launch(launch.as_ref()) {
            Ok(kind) => kind,
            Err(e) => return self.refuse(session_id, e, true),
        };
        let (tx, rx) = mpsc::channel(64);
        self.sessions.insert(session_id.clone(), tx);
        resources
            .metrics
            .sessions_started
            .fetch_add(1, Ordering::Relaxed);
        let params = SessionParams {
            session_id: session_id.clone(),
            offer_sdp,
            video: self.config.video.clone(),
            rtc_ip: self.config.rtc_ip,
            bytes_sent: Arc::new(AtomicU64::new(0)),
            title: kind,
            metrics: resources.metrics.add(&session_id),
            resources,
        };
        let bytes_sent = params.bytes_sent.clone();
        let to_signaling = self.to_signaling_tx.clone();
        tracing::info!(session_id, "starting a session");
        self.ended.spawn(async move {
            let end = session::run(params, to_signaling, rx).await;
            (session_id, end, bytes_sent.load(Ordering::Relaxed))
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

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn text(msg: &NodeMsg) -> Message {
    Message::Text(
        serde_json::to_string(msg)
            .expect("protocol messages always serialise")
            .into(),
    )
}
