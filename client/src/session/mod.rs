//! One play session from the client's side: a session token, the signaling WebSocket (hello,
//! welcome, offer, answer, trickled ICE), and a webrtc-rs peer connection that receives the
//! node's H.264 and Opus tracks and sends input on the `input` data channel.
//!
//! Video packets are depacketised here ([`crate::depacketize`]) and whole access units handed
//! to a [`MediaSink`]; audio payloads go to it as they arrive. When a unit is lost the session
//! asks the node for a keyframe (RTCP PLI, at most one per [`PLI_INTERVAL`]) instead of asking
//! for every missing packet again: webrtc-rs's NACK generator repeats its requests every
//! 100 ms, a storm that over a congested link starves new frames.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rtc::data_channel::RTCDataChannelInit;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use signaling::protocol::{ClientMsg, ErrorCode, IceCandidate, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription, StatsSelector,
};

use crate::depacketize::{AccessUnit, Depacketizer};
use crate::http;

/// Keyframe requests are at most this frequent.
pub const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// Where the received media goes. Called from the session's tasks; must not block for long.
pub trait MediaSink: Send + Sync + 'static {
    /// A whole H.264 access unit (Annex B), `arrived` when its last packet came in. Returns
    /// true to ask the node for a keyframe (the decoder started over).
    fn video(&self, unit: AccessUnit, arrived: Instant) -> bool;
    /// One Opus packet's payload.
    fn audio(&self, payload: &[u8]);
}

/// How to reach the service and what to ask for.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The signaling service's HTTP/WebSocket address.
    pub signaling: SocketAddr,
    /// The title to play; the catalog's default when `None`.
    pub title: Option<String>,
    /// Address our ICE host candidates are gathered on.
    pub bind_ip: IpAddr,
    /// Bound on each step: the token, the welcome, the answer, reaching `connected`.
    pub step_timeout: Duration,
    /// A session token obtained elsewhere (an identity provider in front of the service);
    /// without one the client asks `POST /api/token`, which a demo service answers.
    pub token: Option<String>,
}

impl SessionOptions {
    /// Options for `signaling` with the defaults: loopback candidates, 15 s steps.
    pub fn new(signaling: SocketAddr) -> Self {
        Self {
            signaling,
            title: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            step_timeout: Duration::from_secs(15),
            token: None,
        }
    }
}

/// Why a session could not start; each is a different screen for the player.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The signaling service did not answer.
    #[error("cannot reach the signaling service: {0}")]
    Unreachable(String),
    /// The service refused our credentials.
    #[error("the signaling service refused to sign us in: {0}")]
    AuthRefused(String),
    /// No node can take a session now.
    #[error("no node is available: {0}")]
    NoNode(String),
    /// The service refused the request for another reason (unknown title, policy…).
    #[error("the signaling service refused the session: {0}")]
    Refused(String),
    /// The session was assigned but could not be set up (node gone, ICE failed…).
    #[error("the session could not start: {0}")]
    Failed(String),
}

impl ConnectError {
    /// True when trying again later may succeed without the player changing anything.
    pub fn worth_retrying(&self) -> bool {
        matches!(
            self,
            ConnectError::Unreachable(_) | ConnectError::NoNode(_) | ConnectError::Failed(_)
        )
    }
}

/// Titles in the service's catalog: `(id, name)`.
pub async fn fetch_catalog(
    signaling: SocketAddr,
    limit: Duration,
) -> Result<Vec<(String, String)>, ConnectError> {
    let r = http::request(signaling, "GET", "/api/titles", None, limit)
        .await
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    if r.status != 200 {
        return Err(ConnectError::Refused(format!(
            "GET /api/titles: {} {}",
            r.status, r.body
        )));
    }
    let json: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| {
        ConnectError::Refused(format!("GET /api/titles: the body is not JSON ({e})"))
    })?;
    let list = json
        .get("titles")
        .and_then(|t| t.as_array())
        .or_else(|| json.as_array())
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        .filter_map(|t| {
            let id = t.get("id")?.as_str()?.to_owned();
            let name = t
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or(&id)
                .to_owned();
            Some((id, name))
        })
        .collect())
}

/// `POST /api/token` as the signaling service documents it.
async fn fetch_token(options: &SessionOptions) -> Result<String, ConnectError> {
    let body = match &options.title {
        Some(t) => serde_json::json!({ "title": t }),
        None => serde_json::json!({}),
    }
    .to_string();
    let r = http::request(
        options.signaling,
        "POST",
        "/api/token",
        Some(&body),
        options.step_timeout,
    )
    .await
    .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    match r.status {
        200 => {}
        401 | 403 => return Err(ConnectError::AuthRefused(r.body)),
        s => {
            return Err(ConnectError::Refused(format!(
                "POST /api/token: {s} {}",
                r.body
            )));
        }
    }
    let json: serde_json::Value = serde_json::from_str(&r.body)
        .map_err(|e| ConnectError::Refused(format!("POST /api/token: not JSON ({e})")))?;
    json["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ConnectError::Refused(format!("POST /api/token: no token in {json}")))
}

/// Counters the overlay and the reports read.
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Video RTP packets received.
    pub video_packets: AtomicU64,
    /// Video RTP payload bytes received.
    pub video_bytes: AtomicU64,
    /// Video packets missing from the sequence.
    pub lost_packets: AtomicU64,
    /// Access units handed to the sink.
    pub units: AtomicU64,
    /// Keyframe requests sent.
    pub keyframe_requests: AtomicU64,
    /// Opus packets received.
    pub audio_packets: AtomicU64,
    /// Input datagrams sent.
    pub input_sent: AtomicU64,
    /// Input datagrams dropped (the channel was not open or refused them).
    pub input_dropped: AtomicU64,
    /// Last ICE round-trip time, microseconds (0 before the first measurement).
    pub rtt_us: AtomicU64,
}

/// State the peer connection's handler and tasks share with the [`Session`].
struct Shared {
    counters: Arc<SessionCounters>,
    sink: Arc<dyn MediaSink>,
    state: watch::Sender<RTCPeerConnectionState>,
    outbound: mpsc::UnboundedSender<ClientMsg>,
    mid: OnceLock<String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Why the session ended, once it has.
    ended: watch::Sender<Option<String>>,
}

impl Shared {
    fn spawn(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    fn end(&self, why: impl Into<String>) {
        let why = why.into();
        self.ended.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(why);
                true
            } else {
                false
            }
        });
    }
}

struct Handler(Arc<Shared>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        if init.candidate.trim_start_matches("candidate:").is_empty() {
            return;
        }
        // `to_json` leaves the mid empty; with BUNDLE every section shares the first one's
        // transport, as the page's candidates say.
        let mid = self.0.mid.get().cloned().unwrap_or_else(|| "0".to_owned());
        let _ = self.0.outbound.send(ClientMsg::Ice {
            candidate: IceCandidate {
                candidate: init.candidate,
                sdp_mid: Some(mid),
                sdp_mline_index: Some(0),
            },
        });
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        let _ = self.0.state.send(state);
        match state {
            RTCPeerConnectionState::Failed => self.0.end("the connection to the node failed"),
            RTCPeerConnectionState::Disconnected => {
                self.0.end("the connection to the node was lost")
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.0.clone();
        self.0.spawn(tokio::spawn(read_track(track, shared)));
    }
}

/// Reads one remote track until it ends.
async fn read_track(track: Arc<dyn TrackRemote>, shared: Arc<Shared>) {
    let video = track.kind().await == RtpCodecKind::Video;
    let c = &shared.counters;
    let mut depacketizer = Depacketizer::new();
    let mut last_pli: Option<Instant> = None;
    let mut lost_seen = 0;
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        if !video {
            c.audio_packets.fetch_add(1, Ordering::Relaxed);
            shared.sink.audio(&packet.payload);
            continue;
        }
        c.video_packets.fetch_add(1, Ordering::Relaxed);
        c.video_bytes
            .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        let h = &packet.header;
        let pushed = depacketizer.push(h.sequence_number, h.timestamp, h.marker, &packet.payload);
        let lost = depacketizer.stats().lost_packets;
        if lost != lost_seen {
            c.lost_packets
                .fetch_add(lost - lost_seen, Ordering::Relaxed);
            lost_seen = lost;
        }
        let mut want_keyframe = pushed.request_keyframe;
        for unit in pushed.units {
            c.units.fetch_add(1, Ordering::Relaxed);
            want_keyframe |= shared.sink.video(unit, Instant::now());
        }
        if want_keyframe && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL) {
            last_pli = Some(Instant::now());
            c.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            let pli = PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: h.ssrc,
            };
            if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                tracing::debug!("cannot send a keyframe request: {e}");
            }
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A session in progress. Dropping it tears everything down; [`Session::close`] says goodbye
/// first.
pub struct Session {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    session_id: String,
    node_id: String,
    signaling: Option<JoinHandle<()>>,
    input: mpsc::UnboundedSender<Vec<u8>>,
    ended: watch::Receiver<Option<String>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Signs in, asks for a session and negotiates it; returns once the peer connection is
    /// `connected`. Each step is bounded by `options.step_timeout`; `progress` hears what the
    /// session is waiting for, for the player's status line.
    pub async fn connect(
        options: &SessionOptions,
        sink: Arc<dyn MediaSink>,
        counters: Arc<SessionCounters>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<Session, ConnectError> {
        let limit = options.step_timeout;
        let addr = options.signaling;
        progress(format!("signing in at {addr}"));
        let token = match &options.token {
            Some(t) => t.clone(),
            None => fetch_token(options).await?,
        };
        let url = format!("ws://{addr}/ws?token={}", percent_encode(&token));
        let (mut ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(&url))
            .await
            .map_err(|_| ConnectError::Unreachable(format!("no WebSocket within {limit:?}")))?
            .map_err(|e| match &e {
                tokio_tungstenite::tungstenite::Error::Http(r)
                    if matches!(r.status().as_u16(), 401 | 403) =>
                {
                    ConnectError::AuthRefused(format!("the WebSocket upgrade: {}", r.status()))
                }
                _ => ConnectError::Unreachable(format!("the WebSocket: {e}")),
            })?;
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            title: options.title.clone(),
            rtt_ms: Default::default(),
        };
        ws.send(text(&hello))
            .await
            .map_err(|e| ConnectError::Unreachable(format!("send the hello: {e}")))?;
        progress("waiting for a node".into());
        let (session_id, node_id, ice_servers) = match next_msg(&mut ws, limit).await? {
            ServerMsg::Welcome {
                session_id,
                node_id,
                ice_servers,
                ..
            } => (session_id, node_id, ice_servers),
            ServerMsg::Error { code, message } => return Err(refusal(code, message)),
            other => {
                return Err(ConnectError::Refused(format!(
                    "expected a welcome, got {other:?}"
                )));
            }
        };
        tracing::info!(%session_id, %node_id, "session assigned");
        progress(format!("connecting to node {node_id}"));

        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
        let (ended_tx, ended) = watch::channel(None);
        let shared = Arc::new(Shared {
            counters,
            sink,
            state: state_tx,
            outbound: outbound.clone(),
            mid: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            ended: ended_tx,
        });
        let failed =
            |what: &str, e: &dyn std::fmt::Display| ConnectError::Failed(format!("{what}: {e}"));
        let pc = build_peer(options.bind_ip, ice_servers, Handler(shared.clone()))
            .await
            .map_err(|e| failed("build the peer connection", &e))?;
        let init = |direction| RTCRtpTransceiverInit {
            direction,
            streams: vec![],
            send_encodings: vec![],
        };
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            pc.add_transceiver_from_kind(kind, Some(init(RTCRtpTransceiverDirection::Recvonly)))
                .await
                .map_err(|e| failed("add a transceiver", &e))?;
        }
        // Reliable and ordered, like the page's: a lost key release would leave a key held.
        let channel = pc
            .create_data_channel(
                "input",
                Some(RTCDataChannelInit {
                    ordered: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| failed("create the input channel", &e))?;
        let (input, input_rx) = mpsc::unbounded_channel();
        shared.spawn(tokio::spawn(run_input(
            channel,
            input_rx,
            shared.counters.clone(),
        )));
        let offer = pc
            .create_offer(None)
            .await
            .map_err(|e| failed("create the offer", &e))?;
        let mid = offer
            .sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let _ = shared.mid.set(mid);
        // The offer goes out before any candidate: both take the same queue.
        let _ = outbound.send(ClientMsg::Offer {
            sdp: offer.sdp.clone(),
        });
        let (answered_tx, mut answered) = mpsc::channel(1);
        let signaling = tokio::spawn(run_signaling(
            ws,
            outbound_rx,
            pc.clone(),
            shared.clone(),
            answered_tx,
        ));
        let session = Session {
            pc: pc.clone(),
            shared,
            session_id,
            node_id,
            signaling: Some(signaling),
            input,
            ended,
        };
        pc.set_local_description(offer)
            .await
            .map_err(|e| failed("apply the offer", &e))?;
        match tokio::time::timeout(limit, answered.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e),
            Ok(None) => {
                return Err(ConnectError::Failed(
                    "signaling went away before the answer".into(),
                ));
            }
            Err(_) => {
                return Err(ConnectError::Failed(format!(
                    "node {} did not answer within {limit:?}",
                    session.node_id
                )));
            }
        }
        let wait = state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected => {}
            Ok(Ok(s)) => {
                return Err(ConnectError::Failed(format!(
                    "the connection to node {} is {}",
                    session.node_id, *s
                )));
            }
            Ok(Err(_)) => return Err(ConnectError::Failed("the peer connection went away".into())),
            Err(_) => {
                return Err(ConnectError::Failed(format!(
                    "no connection to node {} within {limit:?}",
                    session.node_id
                )));
            }
        }
        if let Some(why) = session.ended() {
            return Err(ConnectError::Failed(why));
        }
        Ok(session)
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The node serving it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Queues one input datagram for the data channel; never blocks.
    pub fn send_input(&self, datagram: Vec<u8>) {
        if self.input.send(datagram).is_err() {
            self.shared
                .counters
                .input_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Why the session ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.ended.borrow().clone()
    }

    /// Resolves with the reason when the session ends (the node or signaling ended it, or the
    /// connection to the node failed or was lost).
    pub async fn wait_end(&self) -> String {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "the session went away".into(),
        }
    }

    /// Refreshes the RTT counter from the ICE candidate pair in use.
    pub async fn refresh_rtt(&self) {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        if let Some(pair) = report
            .candidate_pairs()
            .find(|p| p.nominated && p.current_round_trip_time > 0.0)
        {
            self.shared.counters.rtt_us.store(
                (pair.current_round_trip_time * 1e6) as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Says `bye` to signaling and closes the peer connection, within a few seconds.
    pub async fn close(mut self) {
        let _ = self.shared.outbound.send(ClientMsg::Bye);
        if let Some(task) = self.signaling.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        if tokio::time::timeout(Duration::from_secs(3), self.pc.close())
            .await
            .is_err()
        {
            tracing::warn!(session_id = %self.session_id, "closing the peer connection took over 3 s");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(task) = self.signaling.take() {
            task.abort();
        }
        for task in self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let pc = self.pc.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(3), pc.close()).await;
            });
        }
    }
}

/// Sends queued input once the channel is open; input queued before that is dropped (the
/// game has not started showing anything the player could react to).
async fn run_input(
    channel: Arc<dyn DataChannel>,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    counters: Arc<SessionCounters>,
) {
    let mut open = false;
    loop {
        tokio::select! {
            event = channel.poll() => match event {
                Some(DataChannelEvent::OnOpen) => open = true,
                Some(DataChannelEvent::OnClose) | None => break,
                Some(_) => {}
            },
            datagram = queue.recv() => {
                let Some(datagram) = datagram else { break };
                if !open {
                    counters.input_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match channel.send(bytes::BytesMut::from(&datagram[..])).await {
                    Ok(()) => counters.input_sent.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::debug!("input not sent: {e}");
                        counters.input_dropped.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }
    }
}

/// A refusal from signaling as the error the player sees.
fn refusal(code: ErrorCode, message: String) -> ConnectError {
    match code {
        ErrorCode::NoNodeAvailable | ErrorCode::Unavailable => ConnectError::NoNode(message),
        ErrorCode::Forbidden => ConnectError::AuthRefused(message),
        ErrorCode::NodeLost => ConnectError::Failed(message),
        _ => ConnectError::Refused(format!("{code:?}: {message}")),
    }
}

/// The next message from signaling within `limit`.
async fn next_msg(ws: &mut Ws, limit: Duration) -> Result<ServerMsg, ConnectError> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return signaling::protocol::parse::<ServerMsg>(&t)
                        .map_err(|e| ConnectError::Refused(format!("signaling sent {t:?}: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ConnectError::Unreachable(format!(
                        "signaling closed the WebSocket: {frame:?}"
                    )));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(ConnectError::Unreachable(format!(
                        "the signaling WebSocket failed: {e}"
                    )));
                }
                None => {
                    return Err(ConnectError::Unreachable(
                        "signaling closed the WebSocket".into(),
                    ));
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| ConnectError::NoNode(format!("no welcome within {limit:?}")))?
}

/// Relays between signaling and the peer connection for the session's life.
async fn run_signaling(
    mut ws: Ws,
    mut outbound: mpsc::UnboundedReceiver<ClientMsg>,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    answered: mpsc::Sender<Result<(), ConnectError>>,
) {
    let mut have_answer = false;
    let mut early: Vec<RTCIceCandidateInit> = Vec::new();
    let fail = |e: ConnectError| {
        let _ = answered.try_send(Err(e));
    };
    loop {
        tokio::select! {
            out = outbound.recv() => {
                let Some(msg) = out else { break };
                let bye = matches!(msg, ClientMsg::Bye);
                if let Err(e) = ws.send(text(&msg)).await {
                    fail(ConnectError::Unreachable(format!("cannot send to signaling: {e}")));
                    shared.end(format!("signaling went away: {e}"));
                    break;
                }
                if bye {
                    let _ = ws.close(None).await;
                    break;
                }
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => {
                        fail(ConnectError::Unreachable("signaling closed the WebSocket".into()));
                        shared.end("signaling closed the connection");
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        fail(ConnectError::Unreachable(format!("the signaling WebSocket failed: {e}")));
                        shared.end(format!("signaling went away: {e}"));
                        break;
                    }
                };
                let msg = match signaling::protocol::parse::<ServerMsg>(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("unreadable message from signaling: {e}");
                        continue;
                    }
                };
                match msg {
                    ServerMsg::Answer { sdp } => {
                        let applied = match RTCSessionDescription::answer(sdp) {
                            Ok(answer) => pc.set_remote_description(answer).await.map_err(|e| format!("the node's answer was refused: {e}")),
                            Err(e) => Err(format!("the node's answer is not valid SDP: {e}")),
                        };
                        match applied {
                            Ok(()) => {
                                have_answer = true;
                                for c in early.drain(..) {
                                    add_candidate(&pc, c).await;
                                }
                                let _ = answered.try_send(Ok(()));
                            }
                            Err(why) => fail(ConnectError::Failed(why)),
                        }
                    }
                    ServerMsg::Ice { candidate, .. } => {
                        let init = RTCIceCandidateInit {
                            candidate: candidate.candidate,
                            sdp_mid: candidate.sdp_mid,
                            sdp_mline_index: candidate.sdp_mline_index,
                            ..Default::default()
                        };
                        if have_answer {
                            add_candidate(&pc, init).await;
                        } else {
                            early.push(init);
                        }
                    }
                    ServerMsg::SessionEnded { reason } => {
                        fail(ConnectError::Failed(format!("the session ended: {reason}")));
                        shared.end(reason);
                    }
                    ServerMsg::Error { code, message } => {
                        tracing::warn!(?code, "signaling error: {message}");
                        if code == ErrorCode::NodeLost {
                            shared.end(format!("the node was lost: {message}"));
                        }
                        fail(refusal(code, message));
                    }
                    other => tracing::debug!("ignoring {other:?}"),
                }
            }
        }
    }
}

async fn add_candidate(pc: &Arc<dyn PeerConnection>, c: RTCIceCandidateInit) {
    if c.candidate.is_empty() {
        return;
    }
    if let Err(e) = pc.add_ice_candidate(c).await {
        tracing::debug!("ignoring a remote candidate: {e}");
    }
}

/// The peer connection: the node's formats, receiver reports and TWCC feedback (so the node's
/// congestion control has something to go on), no NACK (see the module docs).
async fn build_peer(
    bind_ip: IpAddr,
    ice_servers: Vec<signaling::protocol::IceServer>,
    handler: Handler,
) -> Result<Arc<dyn PeerConnection>, rtc::shared::error::Error> {
    let mut media = MediaEngine::default();
    stream_formats::register_stream_formats(&mut media, true)?;
    let registry =
        configure_rtcp_reports(configure_twcc_receiver_only(Registry::new(), &mut media)?);
    let ice_servers = ice_servers
        .into_iter()
        .map(|s| RTCIceServer {
            urls: s.urls,
            username: s.username.unwrap_or_default(),
            credential: s.credential.unwrap_or_default(),
        })
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(ice_servers)
                .build(),
        )
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec![format!("{bind_ip}:0")])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

/// Percent-encodes everything but RFC 3986's unreserved characters (`encodeURIComponent`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn text(msg: &ClientMsg) -> Message {
    Message::Text(
        serde_json::to_string(msg)
            .expect("client messages always serialise")
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_players_screens() {
        let m = || "m".to_owned();
        assert!(matches!(
            refusal(ErrorCode::NoNodeAvailable, m()),
            ConnectError::NoNode(_)
        ));
        assert!(matches!(
            refusal(ErrorCode::Forbidden, m()),
            ConnectError::AuthRefused(_)
        ));
        assert!(matches!(
            refusal(ErrorCode::UnknownTitle, m()),
            ConnectError::Refused(_)
        ));
        assert!(!refusal(ErrorCode::UnknownTitle, m()).worth_retrying());
        assert!(refusal(ErrorCode::NodeLost, m()).worth_retrying());
    }

    #[test]
    fn percent_encoding_keeps_unreserved_characters() {
        assert_eq!(percent_encode("aZ0-_.~"), "aZ0-_.~");
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    }
}
