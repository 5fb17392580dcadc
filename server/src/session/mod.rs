//! One streaming session: negotiate with the player's browser, start the title and the encoder
//! once connected, send every access unit, follow the congestion controller's estimate, answer
//! keyframe requests, and tear everything down when either side leaves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use encoder::roi::RoiPolicy;
use encoder::{EncodedFrame, Encoder, EncoderConfig};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::playout_delay_extension::PlayoutDelayExtension;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use signaling::protocol::{IceCandidate, NodeMsg};
use tokio::sync::mpsc;
use tracing::Instrument;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription,
};

use crate::audio::AudioPacket;
use crate::config::VideoConfig;
use crate::controls::{InputPath, PointerHint};
use crate::ladder::{Ladder, LadderConfig};
use crate::media::MediaPipeline;
use crate::metrics::SessionMetrics;
use crate::peer::{self, RateBounds};
use crate::title::{NodeResources, RunningTitle, TitleKind};

/// How long the player has to connect after the answer is sent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ICE gathering may take before the answer goes out with what it has.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a disconnected peer has to come back before the session ends.
const DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// Keyframe requests closer together than this are merged (a burst of PLIs during loss would
/// otherwise send a burst of large IDR frames and make the loss worse).
const MIN_KEYFRAME_GAP: Duration = Duration::from_millis(300);
/// How often the encoder bitrate follows the congestion controller.
const RATE_INTERVAL: Duration = Duration::from_millis(100);

/// Commands the agent sends into a running session.
#[derive(Debug)]
pub enum SessionCmd {
    /// A trickled candidate from the player.
    RemoteIce(IceCandidate),
    /// End the session.
    End(String),
}

/// What a session needs to start.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Session id from signaling.
    pub session_id: String,
    /// The player's offer.
    pub offer_sdp: String,
    /// Video settings.
    pub video: VideoConfig,
    /// Address for ICE host candidates.
    pub rtc_ip: IpAddr,
    /// Media bytes handed to the transport, for the session record.
    pub bytes_sent: Arc<std::sync::atomic::AtomicU64>,
    /// The title to run.
    pub title: TitleKind,
    /// What the node's sessions share (sandbox root, capture layer, sound server).
    pub resources: Arc<NodeResources>,
    /// This session's figures for `/metrics`.
    pub metrics: Arc<SessionMetrics>,
}

enum PeerEvent {
    State(RTCPeerConnectionState),
    GatheringComplete,
    DataChannel(Arc<dyn DataChannel>),
}

struct Events(mpsc::UnboundedSender<PeerEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(PeerEvent::State(state));
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        let _ = self.0.send(PeerEvent::DataChannel(data_channel));
    }
}

/// Label of the data channel that carries [`input::InputEvent`]s.
pub const INPUT_CHANNEL: &str = "input";
/// Input messages queued between the data channel and the session before the oldest are
/// dropped (the gate's rate limit sits behind this).
const INPUT_QUEUE: usize = 256;

/// Forwards the messages of the session's input channel; ends when the channel closes.
async fn read_input_channel(dc: Arc<dyn DataChannel>, tx: mpsc::Sender<bytes::Bytes>) {
    while let Some(ev) = dc.poll().await {
        match ev {
            DataChannelEvent::OnMessage(msg) => match tx.try_send(msg.data.freeze()) {
                Ok(()) => {}
                // The session is behind; the gate would drop a flood like this anyway.
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!("input queue full; a message was dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            },
            DataChannelEvent::OnClose => return,
            _ => {}
        }
    }
}

/// Runs a session to its end and returns why it ended.
pub async fn run(
    params: SessionParams,
    to_signaling: mpsc::Sender<NodeMsg>,
    cmds: mpsc::Receiver<SessionCmd>,
) -> String {
    let span = tracing::info_span!("session", session_id = %params.session_id);
    match run_inner(&params, to_signaling, cmds)
        .instrument(span)
        .await
    {
        Ok(reason) => reason,
        Err(e) => {
            tracing::warn!(session_id = %params.session_id, "session failed: {e}");
            e
        }
    }
}

async fn run_inner(
    params: &SessionParams,
    to_signaling: mpsc::Sender<NodeMsg>,
    mut cmds: mpsc::Receiver<SessionCmd>,
) -> Result<String, String> {
    let sid = params.session_id.clone();
    let v = &params.video;
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let rates = RateBounds {
        start: v.start_kbps as f64 * 1000.0,
        min: v.min_kbps as f64 * 1000.0,
        max: v.max_kbps as f64 * 1000.0,
    };
    let handler: Arc<dyn PeerConnectionEventHandler> = Arc::new(Events(ev_tx));
    let (pc, estimate) = peer::build_peer(params.rtc_ip, rates, handler)
        .await
        .map_err(|e| format!("cannot create the peer connection: {e}"))?;
    let result =
        negotiate_and_stream(params, &pc, estimate, &to_signaling, &mut cmds, &mut events).await;
    if let Err(e) = pc.close().await {
        tracing::debug!(session_id = %sid, "closing the peer connection: {e}");
    }
    result
}

async fn negotiate_and_stream(
    params: &SessionParams,
    pc: &Arc<dyn PeerConnection>,
    estimate: peer::BitrateEstimate,
    to_signaling: &mpsc::Sender<NodeMsg>,
    cmds: &mut mpsc::Receiver<SessionCmd>,
    events: &mut mpsc::UnboundedReceiver<PeerEvent>,
) -> Result<String, String> {
    let sid = params.session_id.clone();
    let v = params.video.clone();
    let ssrc: u32 = rand::random();
    let track = Arc::new(
        TrackLocalStaticSample::new(
            Instant::now(),
            MediaStreamTrack::new(
                "stratus".to_owned(),
                "stratus-video".to_owned(),
                "stratus-video".to_owned(),
                RtpCodecKind::Video,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: peer::h264_codec(),
                    ..Default::default()
                }],
            ),
        )
        .map_err(|e| format!("cannot create the video track: {e}"))?,
    );
    // Sound goes on a second track of the same stream, when the player asked for audio.
    let audio_ssrc: u32 = rand::random();
    let audio_track = if params.offer_sdp.lines().any(|l| l.starts_with("m=audio")) {
        Some(Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "stratus".to_owned(),
                    "stratus-audio".to_owned(),
                    "stratus-audio".to_owned(),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(audio_ssrc),
                            ..Default::default()
                        },
                        codec: peer::opus_codec(),
                        ..Default::default()
                    }],
                ),
            )
            .map_err(|e| format!("cannot create the audio track: {e}"))?,
        ))
    } else {
        None
    };
    let offer = RTCSessionDescription::offer(params.offer_sdp.clone())
        .map_err(|e| format!("the player's offer is not valid SDP: {e}"))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| format!("the player's offer was refused: {e}"))?;
    // The track binds to its sender when added, with the header-extension ids known then; added
    // after the offer, those are the negotiated ids, so the playout-delay extension is accepted.
    let sender = pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| format!("cannot add the video track: {e}"))?;
    let audio_sender = match &audio_track {
        Some(t) => Some(
            pc.add_track(t.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| format!("cannot add the audio track: {e}"))?,
        ),
        None => None,
    };

    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| format!("cannot answer the player's offer (no H.264 in it?): {e}"))?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| format!("cannot apply the local answer: {e}"))?;

    // Candidates that arrive while gathering are applied after the answer is out.
    let mut early_ice = Vec::new();
    let gather_deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PeerEvent::GatheringComplete) => break,
                Some(PeerEvent::State(s)) => tracing::debug!(session_id = %sid, "peer state {s} while gathering"),
                Some(PeerEvent::DataChannel(_)) => {}
                None => return Err("the peer connection went away while gathering".into()),
            },
            cmd = cmds.recv() => match cmd {
                Some(SessionCmd::RemoteIce(c)) => early_ice.push(c),
                Some(SessionCmd::End(reason)) => return Ok(reason),
                None => return Ok("the node is shutting down".into()),
            },
            _ = tokio::time::sleep_until(gather_deadline) => {
                tracing::warn!(session_id = %sid, "ICE gathering did not complete in {GATHER_TIMEOUT:?}; answering with what we have");
                break;
            }
        }
    }
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| "no local description after answering".to_string())?;
    to_signaling
        .send(NodeMsg::Answer {
            session_id: sid.clone(),
            sdp: local.sdp,
        })
        .await
        .map_err(|_| "lost the signaling connection".to_string())?;
    for c in early_ice {
        add_candidate(pc, &sid, c).await;
    }

    // Keyframe requests from the player (PLI/FIR) arrive as events on the local track.
    let (kf_tx, mut kf_rx) = mpsc::channel::<()>(4);
    let kf_track = track.clone();
    let kf_task = tokio::spawn(async move {
        while let Some(ev) = kf_track.poll().await {
            if let TrackLocalEvent::OnRtcpPacket(_) = ev {
                let _ = kf_tx.try_send(());
            }
        }
    });

    // The audio track's own events (its RTCP) are drained and ignored.
    let audio_task = audio_track
        .clone()
        .map(|t| tokio::spawn(async move { while t.poll().await.is_some() {} }));

    let (frame_tx, mut frames) = mpsc::channel::<EncodedFrame>(4);
    let mut frame_tx = Some(frame_tx);
    let (audio_tx, mut audio_rx) = mpsc::channel::<AudioPacket>(8);
    let mut audio_tx = audio_track.is_some().then_some(audio_tx);
    let mut audio_pt = peer::OPUS_PAYLOAD_TYPE;
    let mut media: Option<(MediaPipeline, Arc<Encoder>)> = None;
    let mut title: Option<RunningTitle> = None;
    let metrics = params.metrics.clone();
    let started = tokio::time::Instant::now();
    let max_duration = params.resources.config.max_duration;
    let mut second = Second::default();
    // The quality ladder's rung, shared with the media thread.
    let rung = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut ladder =
        (v.ladder_floor_kbps > 0).then(|| Ladder::new(LadderConfig::new(v.ladder_floor_kbps)));
    let (input_tx, mut input_rx) = mpsc::channel::<bytes::Bytes>(INPUT_QUEUE);
    let mut input_path: Option<InputPath> = None;
    // The player's pointer, for region-of-interest encoding.
    let hint = Arc::new(PointerHint::default());
    let mut input_tasks = Vec::new();
    let mut payload_type = peer::H264_PAYLOAD_TYPE;
    let mut last_keyframe_request = Instant::now() - MIN_KEYFRAME_GAP;
    let mut last_captured_ns: Option<u64> = None;
    let mut rate_tick = tokio::time::interval(RATE_INTERVAL);
    let connect_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(connect_deadline);
    let mut disconnected_since: Option<tokio::time::Instant> = None;
    let frame_interval = Duration::from_secs(1) / v.fps;

    let reason = loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                Some(SessionCmd::RemoteIce(c)) => add_candidate(pc, &sid, c).await,
                Some(SessionCmd::End(reason)) => break reason,
                None => break "the node is shutting down".into(),
            },
            ev = events.recv() => match ev {
                Some(PeerEvent::State(RTCPeerConnectionState::Connected)) => {
                    disconnected_since = None;
                    if media.is_none() {
                        tracing::info!(session_id = %sid, "player connected; starting the title");
                        payload_type = negotiated_payload_type(&sender).await.unwrap_or(payload_type);
                        if let Some(s) = &audio_sender {
                            audio_pt = negotiated_payload_type(s).await.unwrap_or(audio_pt);
                        }
                        let Some(tx) = frame_tx.take() else { break "internal: media started twice".into() };
                        match start_media(params, tx, audio_tx.take(), hint.clone(), rung.clone()).await {
                            Ok((pipeline, encoder, mut running)) => {
                                if let Some(injector) = running.injector.take() {
                                    let (w, h) = running.size;
                                    input_path = Some(InputPath::new(injector, w, h, hint.clone()));
                                }
                                media = Some((pipeline, encoder));
                                title = Some(running);
                            }
                            Err(e) => {
                                params.resources.metrics.sessions_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                break e;
                            }
                        }
                    }
                }
                Some(PeerEvent::State(RTCPeerConnectionState::Disconnected)) => {
                    disconnected_since.get_or_insert_with(tokio::time::Instant::now);
                }
                Some(PeerEvent::State(RTCPeerConnectionState::Failed)) => break "the connection to the player failed".into(),
                Some(PeerEvent::State(RTCPeerConnectionState::Closed)) => break "the player closed the connection".into(),
                Some(PeerEvent::DataChannel(dc)) => {
                    let label = dc.label().await.unwrap_or_default();
                    if label == INPUT_CHANNEL {
                        input_tasks.push(tokio::spawn(read_input_channel(dc, input_tx.clone())));
                    } else {
                        tracing::debug!(session_id = %sid, label, "ignoring an unknown data channel");
                    }
                }
                Some(_) => {}
                None => break "the peer connection went away".into(),
            },
            frame = frames.recv(), if media.is_some() => {
                let Some(frame) = frame else {
                    let why = media.as_ref().and_then(|(m, _)| m.failure());
                    break why.unwrap_or_else(|| "the media path stopped".into());
                };
                let duration = match last_captured_ns {
                    Some(prev) if frame.captured_ns > prev => Duration::from_nanos(frame.captured_ns - prev),
                    _ => frame_interval,
                };
                last_captured_ns = Some(frame.captured_ns);
                let age = Duration::from_nanos(capture::clock::monotonic_ns().saturating_sub(frame.captured_ns));
                let sample = Sample {
                    data: frame.au,
                    duration,
                    ..Sample::new(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
                };
                let bytes = sample.data.len() as u64;
                let res = track
                    .sample_writer(ssrc, payload_type)
                    .with_extension(HeaderExtension::PlayoutDelay(PlayoutDelayExtension::new(0, 0)))
                    .write_sample(&sample)
                    .await;
                let capture_to_packet_ms = capture::clock::monotonic_ns()
                    .saturating_sub(frame.captured_ns) as f64 / 1e6;
                metrics.record_capture_to_packet(capture_to_packet_ms);
                second.frames += 1;
                second.encode_ns += frame.encoded_ns.saturating_sub(frame.captured_ns);
                match res {
                    Ok(_) => {
                        params.bytes_sent.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                        metrics.frames_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::debug!(session_id = %sid, frame_id = frame.frame_id, "write_sample: {e}");
                    }
                }
                tracing::trace!(
                    session_id = %sid,
                    frame_id = frame.frame_id,
                    encode_ms = frame.encoded_ns.saturating_sub(frame.captured_ns) as f64 / 1e6,
                    capture_to_packet_ms,
                    "frame sent"
                );
            },
            Some(packet) = audio_rx.recv() => {
                if let Some(track) = &audio_track {
                    let bytes = packet.data.len() as u64;
                    let sample = Sample {
                        data: packet.data,
                        duration: packet.duration,
                        ..Sample::new(Instant::now())
                    };
                    match track.sample_writer(audio_ssrc, audio_pt).write_sample(&sample).await {
                        Ok(_) => {
                            params.bytes_sent.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                            metrics.audio_packets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => tracing::debug!(session_id = %sid, "audio write_sample: {e}"),
                    }
                }
            },
            Some(datagram) = input_rx.recv() => {
                if let Some(path) = &mut input_path {
                    path.handle(&datagram, capture::clock::monotonic_ns() / 1000);
                }
            },
            Some(()) = kf_rx.recv() => {
                if let Some((_, enc)) = &media
                    && last_keyframe_request.elapsed() >= MIN_KEYFRAME_GAP
                {
                    last_keyframe_request = Instant::now();
                    tracing::debug!(session_id = %sid, "keyframe requested by the player");
                    enc.force_keyframe();
                    metrics.keyframes_forced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                metrics.pli.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            },
            _ = rate_tick.tick() => {
                if let Some((_, enc)) = &media {
                    let kbps = (estimate.bits_per_second() / 1000.0) as u32;
                    let current = enc.bitrate();
                    // Down at once (congestion), up smoothly (a third of the gap per tick), and
                    // changes under 5% are ignored to avoid encoder churn.
                    let target = smooth_bitrate(current, kbps).clamp(v.min_kbps, v.max_kbps);
                    if current == 0 || target.abs_diff(current) * 20 > current {
                        tracing::debug!(session_id = %sid, kbps, target, "encoder bitrate follows congestion control");
                        enc.set_bitrate(target);
                    }
                    if let Some(ladder) = &mut ladder
                        && let Some(step) = ladder.observe(f64::from(kbps), Instant::now())
                    {
                        let r = crate::ladder::RUNGS[step];
                        tracing::info!(session_id = %sid, kbps, rung = step, scale = r.scale, keep_every = r.keep_every, "quality ladder step");
                        rung.store(step, std::sync::atomic::Ordering::Relaxed);
                        metrics.quality_step.store(step as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                if let Some(since) = disconnected_since
                    && since.elapsed() > DISCONNECT_GRACE
                {
                    break "the player disconnected".into();
                }
                if let Some(why) = title.as_mut().and_then(RunningTitle::exited) {
                    params.resources.metrics.sessions_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    break why;
                }
                if let Some(limit) = max_duration
                    && started.elapsed() >= limit
                {
                    break format!("the session reached its time limit ({} s)", limit.as_secs());
                }
                if second.since.elapsed() >= Duration::from_secs(1) {
                    second.publish(&metrics, media.as_ref(), pc).await;
                }
            },
            _ = &mut connect_deadline, if media.is_none() => {
                break format!("the player did not connect within {CONNECT_TIMEOUT:?}");
            }
        }
    };
    kf_task.abort();
    if let Some(t) = audio_task {
        t.abort();
    }
    for task in input_tasks {
        task.abort();
    }
    if let Some(path) = &input_path {
        tracing::info!(session_id = %sid, counters = ?path.counters(), "input summary");
    }
    if let Some((pipeline, _)) = media {
        let counters = pipeline.counters();
        tracing::info!(
            session_id = %sid,
            captured = counters.captured.load(std::sync::atomic::Ordering::Relaxed),
            encoded = counters.encoded.load(std::sync::atomic::Ordering::Relaxed),
            dropped = counters.dropped.load(std::sync::atomic::Ordering::Relaxed),
            %reason,
            "session ended"
        );
        // Joining the media threads blocks for up to a frame; keep it off the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(pipeline)).await;
    }
    if let Some(title) = title {
        // Stopping the title waits for its processes to exit.
        let _ = tokio::task::spawn_blocking(move || drop(title)).await;
    }
    Ok(reason)
}

/// The next encoder bitrate given the current one and the congestion estimate (kbit/s): a drop
/// is followed at once, a rise by a third of the gap.
fn smooth_bitrate(current: u32, estimate: u32) -> u32 {
    if current == 0 || estimate <= current {
        estimate
    } else {
        current + (estimate - current).div_ceil(3)
    }
}

async fn add_candidate(pc: &Arc<dyn PeerConnection>, sid: &str, c: IceCandidate) {
    if c.candidate.is_empty() {
        return; // end-of-candidates marker
    }
    let init = RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_mline_index,
        ..Default::default()
    };
    if let Err(e) = pc.add_ice_candidate(init).await {
        tracing::debug!(session_id = %sid, "ignoring a remote candidate: {e}");
    }
}

async fn negotiated_payload_type(
    sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>,
) -> Option<u8> {
    sender
        .get_parameters()
        .await
        .ok()?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
}

/// Starts the title and the encoder on a blocking thread (Vulkan, GStreamer and the title's
/// first frame block), then the media threads.
async fn start_media(
    params: &SessionParams,
    out: mpsc::Sender<EncodedFrame>,
    audio_out: Option<mpsc::Sender<AudioPacket>>,
    hint: Arc<PointerHint>,
    rung: Arc<std::sync::atomic::AtomicUsize>,
) -> Result<(MediaPipeline, Arc<Encoder>, RunningTitle), String> {
    let v = params.video.clone();
    let kind = params.title.clone();
    let sid = params.session_id.clone();
    let resources = params.resources.clone();
    tokio::task::spawn_blocking(move || {
        let mut title = RunningTitle::start(&kind, &sid, &v, &resources, audio_out)?;
        let (width, height) = title.size;
        let mut config = EncoderConfig::new(width, height, v.fps, v.start_kbps);
        config.prefer = v.prefer_encoders.clone();
        config.roi = v.roi;
        let encoder =
            Arc::new(Encoder::open(config).map_err(|e| format!("cannot open the encoder: {e}"))?);
        let source = title
            .source
            .take()
            .ok_or_else(|| "internal: the title has no frame source".to_string())?;
        tracing::info!(title = %source.describe(), encoder = ?encoder.describe(), width, height, "media path ready");
        let roi = v.roi.then(|| {
            let mut policy = RoiPolicy::new(width, height);
            policy.quality = v.roi_quality;
            policy.size_fraction = v.roi_size;
            (policy, hint)
        });
        let pipeline = MediaPipeline::start(source, encoder.clone(), out, roi, rung)
            .map_err(|e| format!("cannot start the media threads: {e}"))?;
        Ok((pipeline, encoder, title))
    })
    .await
    .map_err(|e| format!("media setup panicked: {e}"))?
}

/// The figures of the current second, published to the session's metrics once a second.
struct Second {
    since: tokio::time::Instant,
    frames: u64,
    encode_ns: u64,
}

impl Default for Second {
    fn default() -> Self {
        Self {
            since: tokio::time::Instant::now(),
            frames: 0,
            encode_ns: 0,
        }
    }
}

impl Second {
    async fn publish(
        &mut self,
        metrics: &SessionMetrics,
        media: Option<&(MediaPipeline, Arc<Encoder>)>,
        pc: &Arc<dyn PeerConnection>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let secs = self.since.elapsed().as_secs_f64().max(1e-3);
        metrics
            .fps_x100
            .store((self.frames as f64 * 100.0 / secs) as u64, Relaxed);
        if let Some(per_frame_ns) = self.encode_ns.checked_div(self.frames) {
            metrics.encode_us.store(per_frame_ns / 1000, Relaxed);
        }
        if let Some((pipeline, encoder)) = media {
            metrics
                .bitrate_kbps
                .store(u64::from(encoder.bitrate()), Relaxed);
            let counters = pipeline.counters();
            metrics
                .frames_dropped
                .store(counters.dropped.load(Relaxed), Relaxed);
        }
        let report = pc
            .get_stats(Instant::now(), webrtc::peer_connection::StatsSelector::None)
            .await;
        for entry in report.iter() {
            if let rtc::statistics::report::RTCStatsReportEntry::RemoteInboundRtp(s) = entry
                && s.round_trip_time_measurements > 0
            {
                metrics
                    .rtt_us
                    .store((s.round_trip_time * 1e6) as u64, Relaxed);
                metrics
                    .loss_permille
                    .store((s.fraction_lost * 1000.0) as u64, Relaxed);
            }
        }
        *self = Second::default();
    }
}

#[cfg(test)]
mod tests {
    use super::smooth_bitrate;

    #[test]
    fn bitrate_drops_at_once_and_rises_smoothly() {
        assert_eq!(smooth_bitrate(4000, 1000), 1000);
        assert_eq!(smooth_bitrate(0, 3000), 3000);
        assert_eq!(smooth_bitrate(1000, 4000), 2000);
        assert_eq!(smooth_bitrate(2000, 4000), 2667);
        assert_eq!(smooth_bitrate(4000, 4000), 4000);
    }
}
