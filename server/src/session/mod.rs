//! One streaming session: negotiate with the player, start the title and the encoder once
//! connected, send every access unit, and tear everything down when either side leaves.
//!
//! The decisions — bitrate, keyframes, the quality ladder, grace periods, limits — are made by
//! the Sans-IO [`control::SessionControl`]; this module is its async driver. It owns the peer
//! connection ([`peer`]), the tracks ([`negotiate`]), the media path and the title, feeds the
//! core what happens and carries out what the core says.

pub mod control;
pub(crate) mod fallback;
pub mod fec;
pub mod loss_cap;
pub mod loss_meter;
mod negotiate;
pub(crate) mod peer;
pub mod queue_guard;
pub mod retransmit;
mod start;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use encoder::{EncodedFrame, Encoder};
use rtc::media::Sample;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::playout_delay_extension::PlayoutDelayExtension;
use signaling::protocol::{IceCandidate, NodeMsg};
use tokio::sync::mpsc;
use tracing::Instrument;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use crate::audio::AudioPacket;
use crate::config::VideoConfig;
use crate::input::{InputPath, PointerHint};
use crate::media::{LadderConfig, MediaFrame, MediaPipeline, StreamGeometry};
use crate::metrics::SessionMetrics;
use crate::title::{NodeResources, RunningTitle, TitleKind};
pub use control::SessionEnd;
use control::{ControlConfig, Input, MetricsSample, Output, PeerState, SessionControl};
use negotiate::{Interrupted, OutTrack};
use peer::RateBounds;

/// Commands the agent sends into a running session.
#[derive(Debug)]
pub(crate) enum SessionCmd {
    /// A trickled candidate from the player.
    RemoteIce(IceCandidate),
    /// End the session.
    End(String),
}

/// What a session needs to start.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
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

/// What the peer connection tells the session.
enum PeerEvent {
    State(RTCPeerConnectionState),
    GatheringComplete,
    DataChannel(Arc<dyn DataChannel>),
}

/// Forwards the peer connection's events into the session's queue.
struct PeerEvents(mpsc::UnboundedSender<PeerEvent>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerEvents {
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
pub(crate) async fn run(
    params: SessionParams,
    to_signaling: mpsc::Sender<NodeMsg>,
    cmds: mpsc::Receiver<SessionCmd>,
) -> SessionEnd {
    let span = tracing::info_span!("session", session_id = %params.session_id);
    match run_inner(&params, to_signaling, cmds)
        .instrument(span)
        .await
    {
        Ok(end) => end,
        Err(e) => {
            tracing::warn!(session_id = %params.session_id, "session failed: {e}");
            SessionEnd::transient(e)
        }
    }
}

async fn run_inner(
    params: &SessionParams,
    to_signaling: mpsc::Sender<NodeMsg>,
    mut cmds: mpsc::Receiver<SessionCmd>,
) -> Result<SessionEnd, String> {
    let v = &params.video;
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let rates = RateBounds {
        start: v.start_kbps as f64 * 1000.0,
        min: v.min_kbps as f64 * 1000.0,
        max: v.max_kbps as f64 * 1000.0,
    };
    let handler: Arc<dyn PeerConnectionEventHandler> = Arc::new(PeerEvents(ev_tx));
    let (pc, estimate) = peer::build_peer(params.rtc_ip, rates, handler, params.metrics.clone())
        .await
        .map_err(|e| format!("cannot create the peer connection: {e}"))?;
    let negotiated = negotiate::negotiate(
        &pc,
        &params.session_id,
        &params.offer_sdp,
        &to_signaling,
        &mut cmds,
        &mut events,
    )
    .await;
    let result = match negotiated {
        Ok(tracks) => {
            let mut driver = Driver::new(params, pc.clone(), estimate, tracks);
            Ok(driver.run(&mut cmds, &mut events).await)
        }
        Err(Interrupted::Ended(reason)) => Ok(SessionEnd::transient(reason)),
        Err(Interrupted::Failed(why)) => Err(why),
    };
    if let Err(e) = pc.close().await {
        tracing::debug!(session_id = %params.session_id, "closing the peer connection: {e}");
    }
    result
}

/// The core's settings for this session.
fn control_config(params: &SessionParams) -> ControlConfig {
    let v = &params.video;
    let mut config = ControlConfig::new(v.start_kbps, v.min_kbps, v.max_kbps);
    config.ladder = (v.ladder_floor_kbps > 0).then(|| LadderConfig::new(v.ladder_floor_kbps));
    config.max_duration = params.resources.config.max_duration;
    config
}

/// The running media path, its encoder and the title feeding it.
struct Media {
    pipeline: MediaPipeline,
    encoder: Arc<Encoder>,
}

/// Everything the drive loop owns.
struct Driver<'a> {
    params: &'a SessionParams,
    pc: Arc<dyn PeerConnection>,
    estimate: peer::BitrateEstimate,
    core: SessionControl,
    video: OutTrack,
    audio: Option<OutTrack>,
    media: Option<Media>,
    title: Option<RunningTitle>,
    input: Option<InputPath>,
    hint: Arc<PointerHint>,
    frame_tx: Option<mpsc::Sender<MediaFrame>>,
    audio_tx: Option<mpsc::Sender<AudioPacket>>,
    last_captured_ns: Option<u64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<'a> Driver<'a> {
    fn new(
        params: &'a SessionParams,
        pc: Arc<dyn PeerConnection>,
        estimate: peer::BitrateEstimate,
        tracks: negotiate::Negotiated,
    ) -> Self {
        Self {
            core: SessionControl::new(control_config(params), Instant::now()),
            params,
            pc,
            estimate,
            video: tracks.video,
            audio: tracks.audio,
            media: None,
            title: None,
            input: None,
            hint: Arc::new(PointerHint::default()),
            frame_tx: None,
            audio_tx: None,
            last_captured_ns: None,
            tasks: Vec::new(),
        }
    }

    /// Moves events into the core and its commands out until it ends the session.
    async fn run(
        &mut self,
        cmds: &mut mpsc::Receiver<SessionCmd>,
        events: &mut mpsc::UnboundedReceiver<PeerEvent>,
    ) -> SessionEnd {
        let sid = self.params.session_id.clone();
        // Keyframe requests from the player (PLI/FIR) arrive as events on the local track.
        let (kf_tx, mut kf_rx) = mpsc::channel::<()>(4);
        let kf_track = self.video.track.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(ev) = kf_track.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(_) = ev {
                    let _ = kf_tx.try_send(());
                }
            }
        }));
        // The audio track's own events (its RTCP) are drained and ignored.
        if let Some(a) = &self.audio {
            let t = a.track.clone();
            self.tasks.push(tokio::spawn(
                async move { while t.poll().await.is_some() {} },
            ));
        }
        let (frame_tx, mut frames) = mpsc::channel::<MediaFrame>(4);
        self.frame_tx = Some(frame_tx);
        let (audio_tx, mut audio_rx) = mpsc::channel::<AudioPacket>(8);
        self.audio_tx = self.audio.is_some().then_some(audio_tx);
        let (input_tx, mut input_rx) = mpsc::channel::<bytes::Bytes>(INPUT_QUEUE);

        let end = loop {
            if let Some(end) = self.carry_out().await {
                break end;
            }
            let wake = tokio::time::Instant::from_std(self.core.poll_timeout());
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(SessionCmd::RemoteIce(c)) => negotiate::add_candidate(&self.pc, &sid, c).await,
                    Some(SessionCmd::End(reason)) => self.stop(SessionEnd::transient(reason)),
                    None => self.stop(SessionEnd::transient("the node is shutting down")),
                },
                ev = events.recv() => match ev {
                    Some(PeerEvent::State(s)) => {
                        if let Some(state) = peer_state(s) {
                            self.core.handle_input(Input::Peer(state), Instant::now());
                        }
                    }
                    Some(PeerEvent::DataChannel(dc)) => {
                        let label = dc.label().await.unwrap_or_default();
                        if label == INPUT_CHANNEL {
                            self.tasks.push(tokio::spawn(read_input_channel(dc, input_tx.clone())));
                        } else {
                            tracing::debug!(session_id = %sid, label, "ignoring an unknown data channel");
                        }
                    }
                    Some(PeerEvent::GatheringComplete) => {}
                    None => self.stop(SessionEnd::transient("the peer connection went away")),
                },
                frame = frames.recv(), if self.media.is_some() => match frame {
                    Some(frame) => self.send_video(frame).await,
                    // Started again, the media path would fail the same way: the title's frames
                    // or the encoder are the cause, not the network.
                    None => {
                        let why = self.media.as_ref().and_then(|m| m.pipeline.failure());
                        let reason = why.unwrap_or_else(|| "the media path stopped".into());
                        self.stop(SessionEnd::permanent(reason));
                    }
                },
                Some(packet) = audio_rx.recv() => self.send_audio(packet).await,
                Some(datagram) = input_rx.recv() => {
                    if let Some(path) = &mut self.input {
                        path.handle(&datagram, capture::clock::monotonic_ns() / 1000);
                    }
                },
                Some(()) = kf_rx.recv() => {
                    self.params.metrics.pli.fetch_add(1, Relaxed);
                    self.core.handle_input(Input::KeyframeRequest, Instant::now());
                },
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if let Some(why) = self.title.as_mut().and_then(RunningTitle::exited) {
                        self.params.resources.metrics.sessions_failed.fetch_add(1, Relaxed);
                        self.stop(SessionEnd::permanent(why));
                    }
                    let bps = self.estimate.media_bits_per_second();
                    self.core.handle_input(Input::Estimate { bps }, now);
                    self.core.handle_input(Input::Tick, now);
                },
            }
        };
        self.finish(&end.reason).await;
        end
    }

    /// Tells the core the session must end.
    fn stop(&mut self, end: SessionEnd) {
        self.core.handle_input(Input::Stop(end), Instant::now());
    }

    /// Carries out what the core has decided; returns the reason once it ends the session.
    async fn carry_out(&mut self) -> Option<SessionEnd> {
        let sid = &self.params.session_id;
        let metrics = &self.params.metrics;
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::StartMedia => self.start_media().await,
                Output::SetBitrate { kbps } => {
                    tracing::debug!(session_id = %sid, kbps, "encoder bitrate follows congestion control");
                    if let Some(m) = &self.media {
                        m.encoder.set_bitrate(kbps);
                    }
                }
                Output::ForceKeyframe => {
                    if let Some(m) = &self.media {
                        tracing::debug!(session_id = %sid, "keyframe requested by the player");
                        m.encoder.force_keyframe();
                        metrics.keyframes_forced.fetch_add(1, Relaxed);
                    }
                }
                Output::SetRung { index, rung } => {
                    tracing::info!(session_id = %sid, rung = index, scale = rung.scale, keep_every = rung.keep_every, "quality ladder step");
                    if let Some(m) = &self.media {
                        m.pipeline.set_rung(rung);
                    }
                    metrics.quality_step.store(index as u64, Relaxed);
                }
                Output::Metrics(sample) => self.publish(sample).await,
                Output::End(end) => return Some(end),
            }
        }
        None
    }

    /// Starts the title and the media path (blocking work, off the runtime).
    async fn start_media(&mut self) {
        let sid = &self.params.session_id;
        tracing::info!(session_id = %sid, "player connected; starting the title");
        self.video.refresh_payload_type().await;
        if let Some(a) = &mut self.audio {
            a.refresh_payload_type().await;
        }
        let Some(frames) = self.frame_tx.take() else {
            return self.stop(SessionEnd::transient("internal: media started twice"));
        };
        match start::start_media(self.params, frames, self.audio_tx.take(), self.hint.clone()).await
        {
            Ok((pipeline, encoder, mut running)) => {
                if let Some(injector) = running.injector.take() {
                    let (w, h) = running.size;
                    let geometry = StreamGeometry::full(w, h);
                    self.input = Some(InputPath::new(injector, geometry, self.hint.clone()));
                }
                self.media = Some(Media { pipeline, encoder });
                self.title = Some(running);
                self.core.handle_input(Input::MediaStarted, Instant::now());
            }
            Err(reason) => {
                self.params
                    .resources
                    .metrics
                    .sessions_failed
                    .fetch_add(1, Relaxed);
                self.stop(SessionEnd::permanent(reason));
            }
        }
    }

    /// Writes one access unit to the video track, with the playout-delay extension, and lets
    /// the input path read positions in its geometry from now on.
    async fn send_video(&mut self, MediaFrame { frame, geometry }: MediaFrame) {
        let sid = &self.params.session_id;
        let metrics = &self.params.metrics;
        if let Some(path) = &mut self.input {
            path.set_geometry(geometry);
        }
        let interval = Duration::from_secs(1) / self.params.video.fps.max(1);
        let duration = match self.last_captured_ns {
            Some(prev) if frame.captured_ns > prev => {
                Duration::from_nanos(frame.captured_ns - prev)
            }
            _ => interval,
        };
        self.last_captured_ns = Some(frame.captured_ns);
        let EncodedFrame {
            au,
            frame_id,
            captured_ns,
            encoded_ns,
            ..
        } = frame;
        let age = Duration::from_nanos(capture::clock::monotonic_ns().saturating_sub(captured_ns));
        let sample = Sample {
            data: au,
            duration,
            ..Sample::new(Instant::now().checked_sub(age).unwrap_or_else(Instant::now))
        };
        let bytes = sample.data.len() as u64;
        let res = self
            .video
            .track
            .sample_writer(self.video.ssrc, self.video.payload_type)
            .with_extension(HeaderExtension::PlayoutDelay(PlayoutDelayExtension::new(
                0, 0,
            )))
            .write_sample(&sample)
            .await;
        let capture_to_packet_ms =
            capture::clock::monotonic_ns().saturating_sub(captured_ns) as f64 / 1e6;
        metrics.record_capture_to_packet(capture_to_packet_ms);
        let encode_ns = encoded_ns.saturating_sub(captured_ns);
        metrics.record_encode(encode_ns as f64 / 1e6);
        self.core
            .handle_input(Input::FrameSent { encode_ns }, Instant::now());
        match res {
            Ok(_) => {
                self.params.bytes_sent.fetch_add(bytes, Relaxed);
                metrics.frames_sent.fetch_add(1, Relaxed);
            }
            Err(e) => tracing::debug!(session_id = %sid, frame_id, "write_sample: {e}"),
        }
        tracing::trace!(
            session_id = %sid,
            frame_id,
            encode_ms = encode_ns as f64 / 1e6,
            capture_to_packet_ms,
            "frame sent"
        );
    }

    /// Writes one Opus packet to the audio track.
    async fn send_audio(&mut self, packet: AudioPacket) {
        let Some(audio) = &self.audio else { return };
        let bytes = packet.data.len() as u64;
        let sample = Sample {
            data: packet.data,
            duration: packet.duration,
            ..Sample::new(Instant::now())
        };
        match audio
            .track
            .sample_writer(audio.ssrc, audio.payload_type)
            .write_sample(&sample)
            .await
        {
            Ok(_) => {
                self.params.bytes_sent.fetch_add(bytes, Relaxed);
                self.params.metrics.audio_packets.fetch_add(1, Relaxed);
            }
            Err(e) => {
                tracing::debug!(session_id = %self.params.session_id, "audio write_sample: {e}")
            }
        }
    }

    /// Publishes the period's figures, with the transport's RTT and loss.
    async fn publish(&mut self, sample: MetricsSample) {
        let metrics = &self.params.metrics;
        metrics.fps_x100.store((sample.fps * 100.0) as u64, Relaxed);
        if let Some(us) = sample.encode_us {
            metrics.encode_us.store(us, Relaxed);
        }
        metrics
            .bitrate_kbps
            .store(u64::from(sample.bitrate_kbps), Relaxed);
        if let Some(m) = &self.media {
            let counters = m.pipeline.counters();
            metrics
                .frames_dropped
                .store(counters.dropped.load(Relaxed), Relaxed);
        }
        let report = self
            .pc
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
    }

    /// Stops the tasks, the media path and the title.
    async fn finish(&mut self, reason: &str) {
        let sid = &self.params.session_id;
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(path) = &self.input {
            tracing::info!(session_id = %sid, counters = ?path.counters(), "input summary");
        }
        if let Some(Media { pipeline, .. }) = self.media.take() {
            let counters = pipeline.counters();
            tracing::info!(
                session_id = %sid,
                captured = counters.captured.load(Relaxed),
                encoded = counters.encoded.load(Relaxed),
                dropped = counters.dropped.load(Relaxed),
                %reason,
                "session ended"
            );
            // Joining the media threads blocks for up to a frame; keep it off the runtime.
            let _ = tokio::task::spawn_blocking(move || drop(pipeline)).await;
        }
        if let Some(title) = self.title.take() {
            // Stopping the title waits for its processes to exit.
            let _ = tokio::task::spawn_blocking(move || drop(title)).await;
        }
    }
}

/// The peer connection's states the core acts on.
fn peer_state(state: RTCPeerConnectionState) -> Option<PeerState> {
    match state {
        RTCPeerConnectionState::Connected => Some(PeerState::Connected),
        RTCPeerConnectionState::Disconnected => Some(PeerState::Disconnected),
        RTCPeerConnectionState::Failed => Some(PeerState::Failed),
        RTCPeerConnectionState::Closed => Some(PeerState::Closed),
        _ => None,
    }
}
