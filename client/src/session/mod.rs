//! One play session from the player's side — the one session the native client, the checker
//! and every test player use: a session token, the signaling WebSocket (hello, welcome,
//! offer, answer, trickled ICE), and a webrtc-rs peer connection that receives the node's
//! H.264 and Opus tracks and sends input on the `input` data channel.
//!
//! Rooms: [`signaling`] (catalog, token, the WebSocket and the task that relays negotiation
//! for the session's life), `negotiation` (the Sans-IO order of offer, answer and candidates:
//! an answer that arrives before our own local description is held until it is applied),
//! `peer` (the peer connection, its events, the track readers), `input` (the data channel).
//!
//! Video packets are depacketised ([`crate::depacketize`]) and whole access units handed to a
//! [`MediaSink`]; audio payloads go to it as they arrive, and every RTP packet passes its
//! [`MediaSink::rtp`] hook first. Video passes [`crate::recovery`] first: packets are put back
//! in order, a missing one is asked for again (RTCP NACK) a bounded number of times, about a
//! round trip apart, and given up when waiting longer would cost more than a keyframe; then
//! the session asks the node for one (RTCP PLI, at most one per [`PLI_INTERVAL`]). (Not
//! webrtc-rs's NACK generator: it repeats every request every 100 ms for as long as it
//! remembers the packet, a storm that over a congested link starves new frames.) Test players
//! may switch NACK and keyframe requests off ([`SessionOptions`]), and send the media through
//! a relay ([`MediaRoute`]).

mod input;
mod negotiation;
mod peer;
pub mod signaling;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ::signaling::protocol::ClientMsg;
use rtc::data_channel::RTCDataChannelInit;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState, StatsSelector};

use crate::depacketize::AccessUnit;
pub use signaling::{fetch_catalog, percent_encode};

/// Keyframe requests are at most this frequent.
pub const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// Where the received media goes. Called from the session's tasks; must not block for long.
pub trait MediaSink: Send + Sync + 'static {
    /// A whole H.264 access unit (Annex B), `arrived` when its last packet came in. Returns
    /// true to ask the node for a keyframe (the decoder started over).
    fn video(&self, unit: AccessUnit, arrived: Instant) -> bool;
    /// One Opus packet's payload.
    fn audio(&self, payload: &[u8]);
    /// Every RTP packet as it arrives, before anything else sees it (`video` says which
    /// track). For instruments; does nothing by default.
    fn rtp(&self, video: bool, header: &rtc::rtp::Header, payload_len: usize, arrived: Instant) {
        let _ = (video, header, payload_len, arrived);
    }
}

/// Sends the session's media through a relay between the player and the node (an impairment
/// lab, a shaper): the node's answer is rewritten so its candidates point at the relay, our
/// own candidates are not sent and the node's trickled ones are ignored, so the only path
/// between the two is the relay's.
pub trait MediaRoute: Send + Sync + std::fmt::Debug + 'static {
    /// The node's answer as our peer connection should see it.
    fn answer(&self, sdp: &str) -> String;
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
    /// Receive the title's sound (a recvonly Opus transceiver). On by default.
    pub audio: bool,
    /// Ask for lost packets again (NACK, bounded; see the module docs). On by default.
    pub nack: bool,
    /// Ask for a keyframe when a unit was lost or the sink asks. On by default.
    pub keyframe_requests: bool,
    /// Send all media through this relay.
    pub route: Option<Arc<dyn MediaRoute>>,
}

impl SessionOptions {
    /// Options for `signaling` with the defaults: loopback candidates, 15 s steps, sound,
    /// NACK and keyframe requests.
    pub fn new(signaling: SocketAddr) -> Self {
        Self {
            signaling,
            title: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            step_timeout: Duration::from_secs(15),
            token: None,
            audio: true,
            nack: true,
            keyframe_requests: true,
            route: None,
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
    /// Packets asked for again (NACK); each request counts.
    pub nacked: AtomicU64,
    /// Missing packets that arrived after all (reordered or retransmitted).
    pub recovered: AtomicU64,
    /// Opus packets received.
    pub audio_packets: AtomicU64,
    /// Input datagrams sent.
    pub input_sent: AtomicU64,
    /// Input datagrams dropped (the channel was not open or refused them).
    pub input_dropped: AtomicU64,
    /// Last ICE round-trip time, microseconds (0 before the first measurement).
    pub rtt_us: AtomicU64,
}

/// What the peer connection's handler and the session's tasks share with the [`Session`].
struct SessionState {
    counters: Arc<SessionCounters>,
    sink: Arc<dyn MediaSink>,
    state: watch::Sender<RTCPeerConnectionState>,
    outbound: mpsc::UnboundedSender<ClientMsg>,
    mid: OnceLock<String>,
    keyframe_requests: bool,
    nack: bool,
    route: Option<Arc<dyn MediaRoute>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Why the session ended, once it has.
    ended: watch::Sender<Option<String>>,
    /// The node said starting the session again would end the same way.
    permanent: std::sync::atomic::AtomicBool,
}

impl SessionState {
    fn spawn(&self, task: JoinHandle<()>) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
    }

    /// Ends the session for a reason that trying again would meet again.
    fn end_for_good(&self, why: impl Into<String>) {
        self.permanent.store(true, Ordering::Relaxed);
        self.end(why);
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

/// A session in progress. Dropping it tears everything down; [`Session::close`] says goodbye
/// first.
pub struct Session {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<SessionState>,
    session_id: String,
    node_id: String,
    signaling: Option<JoinHandle<()>>,
    input: mpsc::UnboundedSender<Vec<u8>>,
    ended: watch::Receiver<Option<String>>,
    state: watch::Receiver<RTCPeerConnectionState>,
    connected_at: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .field("node_id", &self.node_id)
            .field("state", &self.state())
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
        progress(format!("signing in at {}", options.signaling));
        let welcome = signaling::sign_in(options).await?;
        let (session_id, node_id) = (welcome.session_id, welcome.node_id);
        tracing::info!(%session_id, %node_id, "session assigned");
        progress(format!("connecting to node {node_id}"));

        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (ended_tx, ended) = watch::channel(None);
        let shared = Arc::new(SessionState {
            counters,
            sink,
            state: state_tx,
            outbound: outbound.clone(),
            mid: OnceLock::new(),
            keyframe_requests: options.keyframe_requests,
            nack: options.nack,
            route: options.route.clone(),
            tasks: Mutex::new(Vec::new()),
            ended: ended_tx,
            permanent: std::sync::atomic::AtomicBool::new(false),
        });
        let failed =
            |what: &str, e: &dyn std::fmt::Display| ConnectError::Failed(format!("{what}: {e}"));
        let pc = peer::build(
            options.bind_ip,
            options.audio,
            options.nack,
            welcome.ice_servers,
            peer::PeerHandler(shared.clone()),
        )
        .await
        .map_err(|e| failed("build the peer connection", &e))?;
        let init = |direction| RTCRtpTransceiverInit {
            direction,
            streams: vec![],
            send_encodings: vec![],
        };
        let kinds: &[RtpCodecKind] = if options.audio {
            &[RtpCodecKind::Video, RtpCodecKind::Audio]
        } else {
            &[RtpCodecKind::Video]
        };
        for &kind in kinds {
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
        shared.spawn(tokio::spawn(input::run(
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
        // The offer goes out at once, before any candidate (both take the same queue, and
        // candidates appear only once the local description is set); the relay task holds
        // the answer until `local_applied` says our offer is in place.
        let _ = outbound.send(ClientMsg::Offer {
            sdp: offer.sdp.clone(),
        });
        let (local_tx, local_applied) = watch::channel(false);
        let (answered_tx, mut answered) = mpsc::channel(1);
        let relay = signaling::Relay {
            ws: welcome.ws,
            outbound: outbound_rx,
            pc: pc.clone(),
            state: shared.clone(),
            local_applied,
            answered: answered_tx,
        };
        let session = Session {
            pc: pc.clone(),
            shared,
            session_id,
            node_id,
            signaling: Some(tokio::spawn(signaling::run(relay))),
            input,
            ended,
            state,
            connected_at: Instant::now(),
        };
        pc.set_local_description(offer)
            .await
            .map_err(|e| failed("apply the offer", &e))?;
        let _ = local_tx.send(true);
        session.wait_answer(&mut answered, limit).await?;
        let mut session = session;
        session.wait_connected(limit).await?;
        session.connected_at = Instant::now();
        Ok(session)
    }

    async fn wait_answer(
        &self,
        answered: &mut mpsc::Receiver<Result<(), ConnectError>>,
        limit: Duration,
    ) -> Result<(), ConnectError> {
        match tokio::time::timeout(limit, answered.recv()).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(ConnectError::Failed(
                "signaling went away before the answer".into(),
            )),
            Err(_) => Err(ConnectError::Failed(format!(
                "node {} did not answer within {limit:?}",
                self.node_id
            ))),
        }
    }

    async fn wait_connected(&self, limit: Duration) -> Result<(), ConnectError> {
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
            Ok(Err(_)) => {
                return Err(ConnectError::Failed("the peer connection went away".into()));
            }
            Err(_) => {
                return Err(ConnectError::Failed(format!(
                    "no connection to node {} within {limit:?} (state {}){}",
                    self.node_id,
                    self.state(),
                    self.ended_note()
                )));
            }
        };
        if reached != RTCPeerConnectionState::Connected {
            return Err(ConnectError::Failed(format!(
                "the connection to node {} is {reached}{}",
                self.node_id,
                self.ended_note()
            )));
        }
        match self.ended() {
            Some(why) => Err(ConnectError::Failed(why)),
            None => Ok(()),
        }
    }

    fn ended_note(&self) -> String {
        self.ended()
            .map(|r| format!("; the session ended: {r}"))
            .unwrap_or_default()
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The node serving it.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The peer connection's state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.state.borrow()
    }

    /// When the peer connection reached `connected`.
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }

    /// The session's counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.shared.counters
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

    /// True when the node said that starting the same session again would end the same way
    /// (the title cannot start or exited, its picture cannot be streamed, the time limit):
    /// the player decides whether to try again, not the client.
    pub fn ended_for_good(&self) -> bool {
        self.shared.permanent.load(Ordering::Relaxed)
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
