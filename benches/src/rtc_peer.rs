//! A headless player: a webrtc-rs peer that does what the browser page does — token, client
//! WebSocket, hello, offer with a recvonly video transceiver (and optionally audio) and the
//! `input` data channel, trickled ICE, answer — but does not decode. It counts the video's RTP
//! packets, bytes and frames (one frame per new RTP timestamp), per second too, so benchmarks
//! can run several players next to a node without taking its cores the way Chromium would.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr) -> anyhow::Result<()> {
//! use benches::rtc_peer::{Player, PlayerOptions};
//! let player = Player::connect(addr, &PlayerOptions::default()).await?;
//! player.wait_frames(60, std::time::Duration::from_secs(10)).await?;
//! println!("{} frames, {} bytes", player.frames(), player.bytes());
//! player.close().await;
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use rtc::data_channel::RTCDataChannelInit;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use signaling::protocol::{ClientMsg, IceCandidate, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
    RTCSessionDescription,
};

/// How a [`Player`] connects.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    /// The title to ask for (`hello.title`); the catalog's default when `None`.
    pub title: Option<String>,
    /// Also receive the sound (a recvonly Opus transceiver, as the page has).
    pub audio: bool,
    /// Address the player's ICE host candidates are gathered on.
    pub bind_ip: IpAddr,
    /// Bound on each step: the token, the welcome, the answer, and reaching `connected`.
    pub step_timeout: Duration,
    /// Send all media through this relay (the node's candidates are redirected to it and the
    /// player's own are not sent, so the node only sees the relay).
    pub through: Option<Arc<crate::shaper::Shaper>>,
    /// Ask for lost packets again (NACK). webrtc-rs's generator asks for every missing packet
    /// every 100 ms for as long as it remembers them, which over a congested link is a storm of
    /// retransmissions that starves new frames; a browser gives up and asks for a keyframe.
    pub nack: bool,
}

impl Default for PlayerOptions {
    fn default() -> Self {
        Self {
            title: None,
            audio: false,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            step_timeout: Duration::from_secs(20),
            through: None,
            nack: true,
        }
    }
}

/// What the player has received so far.
#[derive(Debug, Default)]
struct Counters {
    frames: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    audio_packets: AtomicU64,
    /// Video frames per second, indexed by whole seconds since the first video packet.
    per_second: Mutex<PerSecond>,
}

#[derive(Debug, Default)]
struct PerSecond {
    since: Option<Instant>,
    frames: Vec<u64>,
}

impl Counters {
    fn count_frame(&self, now: Instant) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        let mut s = self.per_second.lock().unwrap_or_else(|p| p.into_inner());
        let since = *s.since.get_or_insert(now);
        let i = now.duration_since(since).as_secs() as usize;
        if s.frames.len() <= i {
            s.frames.resize(i + 1, 0);
        }
        s.frames[i] += 1;
    }
}

/// State the peer connection's event handler shares with the [`Player`].
struct Shared {
    counters: Counters,
    state: watch::Sender<RTCPeerConnectionState>,
    /// Where trickled local candidates go (the signaling task sends them).
    outbound: mpsc::UnboundedSender<ClientMsg>,
    /// The first media section's mid, for the candidates we trickle.
    mid: OnceLock<String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Why the session ended, if signaling said so.
    ended: Mutex<Option<String>>,
    /// The relay media goes through, if any.
    through: Option<Arc<crate::shaper::Shaper>>,
}

impl Shared {
    fn spawn(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
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
        if self.0.through.is_some() {
            return; // the node must reach us only through the relay
        }
        // `to_json` leaves the mid empty; the page's candidates name the first m-line, and with
        // BUNDLE every section shares that transport.
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
        tracing::debug!(%state, "player peer connection state");
        let _ = self.0.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.0.clone();
        self.0.spawn(tokio::spawn(read_track(track, shared)));
    }
}

/// Reads one remote track until it ends, counting what arrives.
async fn read_track(track: Arc<dyn TrackRemote>, shared: Arc<Shared>) {
    let video = track.kind().await == RtpCodecKind::Video;
    let c = &shared.counters;
    let mut last_ts: Option<u32> = None;
    while let Some(event) = track.poll().await {
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        if !video {
            c.audio_packets.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes
            .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        // All packets of an access unit share its RTP timestamp; a newer timestamp starts the
        // next frame. Older ones (reordered, retransmitted) belong to frames already counted.
        let ts = packet.header.timestamp;
        let newer = last_ts.is_none_or(|last| (ts.wrapping_sub(last) as i32) > 0);
        if newer {
            last_ts = Some(ts);
            c.count_frame(Instant::now());
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message from signaling, within `limit`.
async fn next_msg(ws: &mut Ws, limit: Duration, waiting_for: &str) -> anyhow::Result<ServerMsg> {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return signaling::protocol::parse::<ServerMsg>(&t)
                        .map_err(|e| anyhow!("signaling sent {t:?}: {e}"));
                }
                Some(Ok(Message::Close(frame))) => {
                    bail!(
                        "signaling closed the WebSocket while we waited for {waiting_for}: {frame:?}"
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    bail!("signaling WebSocket failed while we waited for {waiting_for}: {e}")
                }
                None => bail!("signaling closed the WebSocket while we waited for {waiting_for}"),
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .with_context(|| format!("no {waiting_for} from signaling within {limit:?}"))?
}

/// What the signaling task tells [`Player::connect`] about the negotiation.
enum Negotiation {
    /// The answer arrived and was applied.
    Answered,
    /// Signaling refused or ended the session, or the answer was unusable.
    Failed(String),
}

/// A connected headless player; closes its peer connection and signaling socket on
/// [`Player::close`] (or, less politely, on drop).
pub struct Player {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    state: watch::Receiver<RTCPeerConnectionState>,
    session_id: String,
    node_id: String,
    signaling: Option<JoinHandle<()>>,
    _input: Arc<dyn DataChannel>,
    connected_at: Instant,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("session_id", &self.session_id)
            .field("node_id", &self.node_id)
            .field("state", &*self.state.borrow())
            .field("frames", &self.frames())
            .finish_non_exhaustive()
    }
}

impl Player {
    /// Signs in at the signaling service on `addr` (`POST /api/token`), asks for a session and
    /// negotiates it; returns once the peer connection is `connected`. Every step is bounded
    /// by `options.step_timeout`.
    pub async fn connect(addr: SocketAddr, options: &PlayerOptions) -> anyhow::Result<Player> {
        let limit = options.step_timeout;
        let token = tokio::time::timeout(limit, fetch_token(addr, options.title.as_deref()))
            .await
            .with_context(|| format!("no token from {addr} within {limit:?}"))??;
        let url = format!(
            "ws://{addr}/ws?token={}",
            client::session::percent_encode(&token)
        );
        let (mut ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(&url))
            .await
            .with_context(|| {
                format!("the client WebSocket at {addr} did not open within {limit:?}")
            })?
            .with_context(|| format!("open the client WebSocket at ws://{addr}/ws"))?;
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            title: options.title.clone(),
            rtt_ms: Default::default(),
        };
        ws.send(text(&hello)).await.context("send the hello")?;
        let (session_id, node_id, ice_servers) =
            match next_msg(&mut ws, limit, "the welcome").await? {
                ServerMsg::Welcome {
                    session_id,
                    node_id,
                    ice_servers,
                    ..
                } => (session_id, node_id, ice_servers),
                ServerMsg::Error { code, message } => {
                    bail!("signaling refused the session: {code:?}: {message}")
                }
                other => bail!("expected a welcome from signaling, got {other:?}"),
            };
        tracing::debug!(%session_id, %node_id, "player welcomed");

        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            state: state_tx,
            outbound: outbound.clone(),
            mid: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
            ended: Mutex::new(None),
            through: options.through.clone(),
        });
        let pc = build_peer(options, ice_servers, Handler(shared.clone()))
            .await
            .context("build the player's peer connection")?;
        let init = |direction| RTCRtpTransceiverInit {
            direction,
            streams: vec![],
            send_encodings: vec![],
        };
        pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(init(RTCRtpTransceiverDirection::Recvonly)),
        )
        .await
        .context("add the video transceiver")?;
        if options.audio {
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(init(RTCRtpTransceiverDirection::Recvonly)),
            )
            .await
            .context("add the audio transceiver")?;
        }
        // Reliable and ordered, like the page's: the node reads input from it.
        let input = pc
            .create_data_channel(
                "input",
                Some(RTCDataChannelInit {
                    ordered: true,
                    ..Default::default()
                }),
            )
            .await
            .context("create the input data channel")?;
        // Its events (open, close) are drained so they never queue up in the driver.
        let events = input.clone();
        shared.spawn(tokio::spawn(async move {
            while events.poll().await.is_some() {}
        }));

        let offer = pc.create_offer(None).await.context("create the offer")?;
        let mid = offer
            .sdp
            .lines()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .unwrap_or("0")
            .trim()
            .to_owned();
        let _ = shared.mid.set(mid);
        // The offer goes out before any candidate: both take the same queue, and candidates
        // only appear once the local description is set.
        outbound
            .send(ClientMsg::Offer {
                sdp: offer.sdp.clone(),
            })
            .map_err(|_| anyhow!("the signaling queue closed"))?;
        let (negotiation_tx, mut negotiation) = mpsc::channel(1);
        let signaling = tokio::spawn(run_signaling(
            ws,
            outbound_rx,
            pc.clone(),
            shared.clone(),
            negotiation_tx,
        ));
        let mut player = Player {
            pc: pc.clone(),
            shared,
            state,
            session_id,
            node_id,
            signaling: Some(signaling),
            _input: input,
            connected_at: Instant::now(),
        };
        pc.set_local_description(offer)
            .await
            .context("apply the local offer")?;

        match tokio::time::timeout(limit, negotiation.recv()).await {
            Ok(Some(Negotiation::Answered)) => {}
            Ok(Some(Negotiation::Failed(why))) => bail!("session {}: {why}", player.session_id),
            Ok(None) => bail!(
                "session {}: the signaling connection ended before the answer",
                player.session_id
            ),
            Err(_) => bail!(
                "session {}: no answer from node {} within {limit:?}",
                player.session_id,
                player.node_id
            ),
        }
        player.wait_connected(limit).await?;
        player.connected_at = Instant::now();
        Ok(player)
    }

    /// Waits until the peer connection is `connected`; fails at once if it fails or closes,
    /// or signaling ends the session.
    pub async fn wait_connected(&self, limit: Duration) -> anyhow::Result<()> {
        let mut state = self.state.clone();
        let wait = state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        let reached = match tokio::time::timeout(limit, wait).await {
            Ok(Ok(s)) => *s,
            Ok(Err(_)) => bail!("session {}: the peer connection went away", self.session_id),
            Err(_) => bail!(
                "session {}: the peer connection did not connect within {limit:?} (state {}){}",
                self.session_id,
                self.state(),
                self.ended_note()
            ),
        };
        if reached != RTCPeerConnectionState::Connected {
            bail!(
                "session {}: the peer connection is {reached}{}",
                self.session_id,
                self.ended_note()
            );
        }
        Ok(())
    }

    /// Waits until at least `frames` video frames have arrived in all.
    pub async fn wait_frames(&self, frames: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.frames() < frames {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "session {}: {} of {frames} frames within {limit:?} (state {}){}",
                    self.session_id,
                    self.frames(),
                    self.state(),
                    self.ended_note()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn ended_note(&self) -> String {
        self.shared
            .ended()
            .map(|r| format!("; signaling says the session ended: {r}"))
            .unwrap_or_default()
    }

    /// Video frames received (distinct RTP timestamps).
    pub fn frames(&self) -> u64 {
        self.shared.counters.frames.load(Ordering::Relaxed)
    }

    /// Video RTP payload bytes received.
    pub fn bytes(&self) -> u64 {
        self.shared.counters.bytes.load(Ordering::Relaxed)
    }

    /// Video RTP packets received.
    pub fn packets(&self) -> u64 {
        self.shared.counters.packets.load(Ordering::Relaxed)
    }

    /// Audio RTP packets received (0 unless [`PlayerOptions::audio`]).
    pub fn audio_packets(&self) -> u64 {
        self.shared.counters.audio_packets.load(Ordering::Relaxed)
    }

    /// Video frames received in each whole second since the first video packet.
    pub fn frames_per_second(&self) -> Vec<u64> {
        self.shared
            .counters
            .per_second
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .frames
            .clone()
    }

    /// True while the peer connection is `connected`.
    pub fn connected(&self) -> bool {
        self.state() == RTCPeerConnectionState::Connected
    }

    /// The peer connection's state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// When the peer connection reached `connected`.
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }

    /// The session signaling assigned.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The node serving it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Why the session ended, if signaling said it did.
    pub fn ended(&self) -> Option<String> {
        self.shared.ended()
    }

    /// Says `bye` to signaling and closes the peer connection; bounded to a few seconds.
    pub async fn close(mut self) {
        let _ = self.shared.outbound.send(ClientMsg::Bye);
        if let Some(task) = self.signaling.take() {
            // The task sends the bye and closes the socket, then ends.
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
            tracing::warn!(session_id = %self.session_id, "closing the player's peer connection took over 3 s");
        }
    }
}

impl Drop for Player {
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
    }
}

/// Relays between signaling and the peer connection for the session's life: our offer,
/// candidates and bye out; the answer, the node's candidates and the end of the session in.
async fn run_signaling(
    mut ws: Ws,
    mut outbound: mpsc::UnboundedReceiver<ClientMsg>,
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    negotiation: mpsc::Sender<Negotiation>,
) {
    let mut answered = false;
    // Candidates that arrive before the answer wait for it (they need a remote description).
    let mut early: Vec<RTCIceCandidateInit> = Vec::new();
    let fail = |why: String| {
        let _ = negotiation.try_send(Negotiation::Failed(why));
    };
    loop {
        tokio::select! {
            out = outbound.recv() => {
                let Some(msg) = out else { break };
                let bye = matches!(msg, ClientMsg::Bye);
                if let Err(e) = ws.send(text(&msg)).await {
                    fail(format!("cannot send to signaling: {e}"));
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
                        fail("signaling closed the WebSocket".into());
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        fail(format!("signaling WebSocket failed: {e}"));
                        break;
                    }
                };
                let msg = match signaling::protocol::parse::<ServerMsg>(&text) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("player: unreadable message from signaling: {e}");
                        continue;
                    }
                };
                match msg {
                    ServerMsg::Answer { sdp } => {
                        let sdp = match &shared.through {
                            Some(relay) => {
                                let (sdp, node) = crate::shaper::redirect_candidates(&sdp, relay.player_side());
                                if let Some(node) = node {
                                    relay.set_node(node);
                                }
                                sdp
                            }
                            None => sdp,
                        };
                        let applied = match RTCSessionDescription::answer(sdp) {
                            Ok(answer) => pc.set_remote_description(answer).await.map_err(|e| format!("the node's answer was refused: {e}")),
                            Err(e) => Err(format!("the node's answer is not valid SDP: {e}")),
                        };
                        match applied {
                            Ok(()) => {
                                answered = true;
                                for c in early.drain(..) {
                                    add_candidate(&pc, c).await;
                                }
                                let _ = negotiation.try_send(Negotiation::Answered);
                            }
                            Err(why) => fail(why),
                        }
                    }
                    ServerMsg::Ice { .. } if shared.through.is_some() => {
                        // Only the relay, already in the answer, may reach the node.
                    }
                    ServerMsg::Ice { candidate, .. } => {
                        let init = RTCIceCandidateInit {
                            candidate: candidate.candidate,
                            sdp_mid: candidate.sdp_mid,
                            sdp_mline_index: candidate.sdp_mline_index,
                            ..Default::default()
                        };
                        if answered {
                            add_candidate(&pc, init).await;
                        } else {
                            early.push(init);
                        }
                    }
                    ServerMsg::SessionEnded { reason } => {
                        *shared.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
                        fail(format!("the session ended: {reason}"));
                    }
                    ServerMsg::Error { code, message } => {
                        tracing::warn!(?code, "player: signaling error: {message}");
                        fail(format!("signaling error {code:?}: {message}"));
                    }
                    other => tracing::debug!("player: ignoring {other:?}"),
                }
            }
        }
    }
}

async fn add_candidate(pc: &Arc<dyn PeerConnection>, c: RTCIceCandidateInit) {
    if c.candidate.is_empty() {
        return; // end of candidates
    }
    if let Err(e) = pc.add_ice_candidate(c).await {
        tracing::debug!("player: ignoring a remote candidate: {e}");
    }
}

/// The peer connection: H.264 (and Opus) as the node offers them, the default interceptors
/// (NACK generator, receiver reports, TWCC feedback so the node's GCC has something to go on).
async fn build_peer(
    options: &PlayerOptions,
    ice_servers: Vec<signaling::protocol::IceServer>,
    handler: Handler,
) -> anyhow::Result<Arc<dyn PeerConnection>> {
    let mut media = MediaEngine::default();
    // The node's formats, offered like Chromium does (the playout-delay extension included), so
    // the node sends what it would to a browser.
    server::peer::register_stream_formats(&mut media, options.audio)?;
    // What `register_default_interceptors` sets up, with NACK optional.
    let registry =
        configure_rtcp_reports(configure_twcc_receiver_only(Registry::new(), &mut media)?);
    let registry = if options.nack {
        configure_nack(registry, &mut media)
    } else {
        registry
    };
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
        .with_udp_addrs(vec![format!("{}:0", options.bind_ip)])
        .build()
        .await?;
    Ok(Arc::new(pc))
}

/// `POST /api/token` as the page's `fetchToken` does; returns the token.
async fn fetch_token(addr: SocketAddr, title: Option<&str>) -> anyhow::Result<String> {
    let body = match title {
        Some(t) => serde_json::json!({ "title": t }),
        None => serde_json::json!({}),
    }
    .to_string();
    let reply = client::http::request(
        addr,
        "POST",
        "/api/token",
        Some(&body),
        Duration::from_secs(5),
    )
    .await
    .context("POST /api/token")?;
    if reply.status != 200 {
        bail!("POST /api/token: {} {}", reply.status, reply.body);
    }
    let json: serde_json::Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("POST /api/token: the body is not JSON: {:?}", reply.body))?;
    json["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("POST /api/token: no token in {json}"))
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
    use crate::lab::Lab;
    use server::config::NodeConfig;

    #[test]
    fn frames_are_bucketed_by_second() {
        let c = Counters::default();
        let t0 = Instant::now();
        c.count_frame(t0);
        c.count_frame(t0 + Duration::from_millis(500));
        c.count_frame(t0 + Duration::from_millis(2100));
        assert_eq!(c.frames.load(Ordering::Relaxed), 3);
        assert_eq!(c.per_second.lock().expect("lock").frames, vec![2, 0, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_player_connects_and_receives_frames() {
        let mut config = NodeConfig::loopback("");
        config.video.width = 320;
        config.video.height = 240;
        config.video.fps = 30;
        config.sessions.audio = false;
        let lab = Lab::start(config).await.expect("start the lab");
        let player = Player::connect(
            lab.addr,
            &PlayerOptions {
                title: Some("demo".into()),
                ..PlayerOptions::default()
            },
        )
        .await
        .expect("the player connects");
        assert!(player.connected());
        player
            .wait_frames(60, Duration::from_secs(20))
            .await
            .expect("60 frames");
        assert!(player.bytes() > 0 && player.packets() >= 60, "{player:?}");
        // The node counts the same session.
        let sessions = lab.node_metrics().sessions();
        assert!(
            sessions.iter().any(|(id, _)| id == player.session_id()),
            "node sessions {:?}, player session {}",
            sessions.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            player.session_id()
        );
        eprintln!(
            "{} frames, {} packets, {} bytes; per second {:?}",
            player.frames(),
            player.packets(),
            player.bytes(),
            player.frames_per_second()
        );
        tokio::time::timeout(Duration::from_secs(10), player.close())
            .await
            .expect("close within 10 s");
        drop(lab);
    }
}
