//! Congestion control with receivers that are not our own client, on a clean loopback link:
//!
//! - GStreamer's `webrtcbin` (1.22) as a receiver. In its default configuration its offer names
//!   `transport-cc` feedback but no transport-wide-cc header extension, so no TWCC feedback
//!   comes back at all and the node goes by the receiver reports. With the extension in its video
//!   caps (as applications that want TWCC add it) it negotiates transport-cc on video only: the
//!   node's audio packets carry no TWCC number, and they must not read as lost (they dragged the
//!   estimate to the 300 kbit/s floor within seconds);
//! - a webrtc-rs receiver that offers REMB and abs-send-time but no transport-cc and sends a
//!   REMB of its own: the node's bitrate follows it.
//!
//! Both speak our client protocol to signaling (hello → welcome, offer → answer, ICE), as the
//! browser page does.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use server::config::NodeConfig;
use server::metrics::SessionMetrics;
use signaling::protocol::{ClientMsg, IceCandidate, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// The stream both tests ask for: small enough to leave the two cores some room.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const FPS: u32 = 30;
const START_KBPS: u32 = 2_000;

/// Each bounded step: welcome, answer, first frame.
const STEP: Duration = Duration::from_secs(20);

fn node_config() -> NodeConfig {
    let mut config = NodeConfig::loopback("");
    config.video.width = WIDTH;
    config.video.height = HEIGHT;
    config.video.fps = FPS;
    config.video.start_kbps = START_KBPS;
    config.video.max_kbps = 6_000;
    // The audio track is the point of the webrtcbin case: it is what carries no TWCC number.
    config.sessions.audio = true;
    config
}

/// Our client protocol over the signaling WebSocket: messages to send go in `out`, what the
/// service says comes out of `inbound`; the pump stops when this is dropped.
struct Signaling {
    session_id: String,
    out: mpsc::UnboundedSender<ClientMsg>,
    inbound: mpsc::UnboundedReceiver<ServerMsg>,
    pump: JoinHandle<()>,
}

impl Signaling {
    /// Says hello for the `pattern` title and waits (bounded) for the welcome.
    async fn open(url: &str) -> anyhow::Result<Signaling> {
        let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
            .await
            .context("connecting to signaling timed out")?
            .context("connect to signaling")?;
        let (mut tx, mut rx) = ws.split();
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            title: Some(signaling::catalog::PATTERN_TITLE.into()),
            rtt_ms: Default::default(),
        };
        tx.send(Message::Text(serde_json::to_string(&hello)?.into()))
            .await?;
        let session_id = tokio::time::timeout(STEP, async {
            while let Some(msg) = rx.next().await {
                let Message::Text(text) = msg? else { continue };
                match serde_json::from_str::<ServerMsg>(&text)? {
                    ServerMsg::Welcome { session_id, .. } => return Ok(session_id),
                    ServerMsg::Error { code, message } => bail!("refused: {code:?}: {message}"),
                    _ => {}
                }
            }
            bail!("signaling closed before the welcome")
        })
        .await
        .context("no welcome")??;
        let (out, mut outgoing) = mpsc::unbounded_channel::<ClientMsg>();
        let (inbound_tx, inbound) = mpsc::unbounded_channel();
        let pump = tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = outgoing.recv() => {
                        let Some(msg) = msg else { break };
                        let Ok(text) = serde_json::to_string(&msg) else { continue };
                        if tx.send(Message::Text(text.into())).await.is_err() {
                            break;
                        }
                    }
                    msg = rx.next() => {
                        let Some(Ok(Message::Text(text))) = msg else { break };
                        match serde_json::from_str::<ServerMsg>(&text) {
                            Ok(msg) => { let _ = inbound_tx.send(msg); }
                            Err(e) => eprintln!("an unreadable message from signaling: {e}: {text}"),
                        }
                    }
                }
            }
            let _ = tx.send(Message::Close(None)).await;
        });
        Ok(Signaling {
            session_id,
            out,
            inbound,
            pump,
        })
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        let _ = self.out.send(ClientMsg::Bye);
        self.pump.abort();
    }
}

/// The session's metrics on the node.
fn session_metrics(lab: &benches::lab::Lab, session_id: &str) -> Arc<SessionMetrics> {
    lab.node_metrics()
        .sessions()
        .into_iter()
        .find(|(id, _)| id == session_id)
        .map(|(_, m)| m)
        .unwrap_or_else(|| panic!("the node has no session {session_id}"))
}

/// Waits (bounded) until `count` has reached `at_least`.
async fn wait_count(count: &AtomicU64, at_least: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    while count.load(Relaxed) < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} of {at_least} within {STEP:?}",
            count.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a receiver saw over a span, and what the node said meanwhile.
#[derive(Debug)]
struct Span {
    /// Frames the receiver got per second over the span.
    fps: f64,
    /// The node's encoder bitrate, sampled each second, kbit/s.
    bitrate_kbps: Vec<u64>,
    /// The node's own frame rate at the end.
    node_fps: f64,
}

impl Span {
    fn lowest_kbps(&self) -> u64 {
        self.bitrate_kbps.iter().copied().min().unwrap_or(0)
    }
    fn last_kbps(&self) -> u64 {
        self.bitrate_kbps.last().copied().unwrap_or(0)
    }
}

/// Counts `frames` over `span`, sampling the node's bitrate every second.
async fn measure(m: &SessionMetrics, frames: &AtomicU64, span: Duration) -> Span {
    let start = Instant::now();
    let first = frames.load(Relaxed);
    let mut bitrate_kbps = Vec::new();
    while start.elapsed() < span {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bitrate_kbps.push(m.bitrate_kbps.load(Relaxed));
    }
    Span {
        fps: (frames.load(Relaxed) - first) as f64 / start.elapsed().as_secs_f64(),
        bitrate_kbps,
        node_fps: m.fps_x100.load(Relaxed) as f64 / 100.0,
    }
}

// ---------------------------------------------------------------------------------------------
// GStreamer webrtcbin as the receiver.

/// A `webrtcbin` that receives H.264 and Opus and decodes the video; stopped on drop.
struct GstReceiver {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    /// Decoded video frames.
    frames: Arc<AtomicU64>,
    /// Opus packets depayloaded.
    audio: Arc<AtomicU64>,
    /// The offer it made, once made.
    offer: Arc<std::sync::Mutex<Option<String>>>,
}

/// The first of these elements GStreamer has, or why none will do.
fn first_element(names: &[&'static str]) -> anyhow::Result<&'static str> {
    names
        .iter()
        .copied()
        .find(|n| gst::ElementFactory::find(n).is_some())
        .ok_or_else(|| anyhow!("none of the GStreamer elements {names:?} is installed"))
}

impl GstReceiver {
    /// Builds the receiver, makes its offer (recvonly H.264 and Opus, as webrtcbin writes it by
    /// default; with `twcc_on_video`, the transport-wide-cc header extension in the video's caps,
    /// as applications that want TWCC feedback add it) and sends it and the candidates it
    /// gathers through `out`.
    fn start(
        out: mpsc::UnboundedSender<ClientMsg>,
        twcc_on_video: bool,
    ) -> anyhow::Result<GstReceiver> {
        gst::init().context("initialise GStreamer")?;
        for element in ["webrtcbin", "nicesrc", "rtph264depay", "rtpopusdepay"] {
            first_element(&[element])?;
        }
        let decoder = first_element(&["avdec_h264", "openh264dec"])?;
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .name("webrtc")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .context("make webrtcbin")?;
        pipeline.add(&webrtc)?;
        benches::reference::restrict_to_loopback(&webrtc);

        let frames = Arc::new(AtomicU64::new(0));
        let audio = Arc::new(AtomicU64::new(0));
        let weak = pipeline.downgrade();
        let (video_count, audio_count) = (frames.clone(), audio.clone());
        webrtc.connect_pad_added(move |_, pad| {
            if pad.direction() != gst::PadDirection::Src {
                return;
            }
            let Some(pipeline) = weak.upgrade() else {
                return;
            };
            let media = pad
                .current_caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok()))
                .unwrap_or_default();
            let (description, count) = if media == "video" {
                (
                    format!(
                        "queue ! rtph264depay ! h264parse ! {decoder} name=dec ! fakesink name=sink sync=false"
                    ),
                    video_count.clone(),
                )
            } else {
                (
                    "queue ! rtpopusdepay name=dec ! fakesink name=sink sync=false".to_owned(),
                    audio_count.clone(),
                )
            };
            if let Err(e) = link_branch(&pipeline, pad, &description, count) {
                eprintln!("cannot receive the {media} stream: {e:#}");
            }
        });

        let ice_out = out.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values[1].get::<u32>().unwrap_or(0);
            if let Ok(candidate) = values[2].get::<String>()
                && !candidate.is_empty()
            {
                let _ = ice_out.send(ClientMsg::Ice {
                    candidate: IceCandidate {
                        candidate,
                        sdp_mid: None,
                        sdp_mline_index: u16::try_from(mline).ok(),
                    },
                });
            }
            None
        });

        use gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly;
        let mut video_caps = gst::Caps::from_str(
            "application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,\
             packetization-mode=(string)1,profile-level-id=(string)42e01f,\
             rtcp-fb-nack-pli=(boolean)true,rtcp-fb-ccm-fir=(boolean)true",
        )?;
        if twcc_on_video {
            video_caps
                .make_mut()
                .set("extmap-3", rtc::sdp::extmap::TRANSPORT_CC_URI);
        }
        let audio_caps = gst::Caps::from_str(
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,\
             encoding-params=(string)2",
        )?;
        for caps in [&video_caps, &audio_caps] {
            webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&Recvonly, caps],
            );
        }
        pipeline.set_state(gst::State::Playing)?;

        let local = webrtc.clone();
        let offer = Arc::new(std::sync::Mutex::new(None));
        let made = offer.clone();
        let offered = gst::Promise::with_change_func(move |reply| {
            let offer = match reply {
                Ok(Some(reply)) => reply
                    .value("offer")
                    .ok()
                    .and_then(|v| v.get::<gst_webrtc::WebRTCSessionDescription>().ok()),
                _ => None,
            };
            let Some(offer) = offer else {
                eprintln!("webrtcbin made no offer: {reply:?}");
                return;
            };
            local.emit_by_name::<()>("set-local-description", &[&offer, &None::<gst::Promise>]);
            match offer.sdp().as_text() {
                Ok(sdp) => {
                    eprintln!("webrtcbin's offer:\n{sdp}");
                    *made.lock().unwrap_or_else(|p| p.into_inner()) = Some(sdp.clone());
                    let _ = out.send(ClientMsg::Offer { sdp });
                }
                Err(e) => eprintln!("the offer cannot be written: {e}"),
            }
        });
        webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &offered]);
        Ok(GstReceiver {
            pipeline,
            webrtc,
            frames,
            audio,
            offer,
        })
    }

    /// Applies what signaling relays from the node.
    fn handle(&self, msg: ServerMsg) {
        match msg {
            ServerMsg::Answer { sdp } => match gst_sdp::SDPMessage::parse_buffer(sdp.as_bytes()) {
                Ok(sdp) => {
                    let answer = gst_webrtc::WebRTCSessionDescription::new(
                        gst_webrtc::WebRTCSDPType::Answer,
                        sdp,
                    );
                    self.webrtc.emit_by_name::<()>(
                        "set-remote-description",
                        &[&answer, &None::<gst::Promise>],
                    );
                }
                Err(e) => eprintln!("the node's answer is not SDP: {e}"),
            },
            ServerMsg::Ice { candidate, .. } if !candidate.candidate.is_empty() => {
                let mline = u32::from(candidate.sdp_mline_index.unwrap_or(0));
                self.webrtc
                    .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate.candidate]);
            }
            ServerMsg::SessionEnded { reason, .. } => eprintln!("the session ended: {reason}"),
            _ => {}
        }
    }
}

impl Drop for GstReceiver {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Links `pad` to a new bin made from `description`, counting the buffers leaving its
/// element `dec` in `count`.
fn link_branch(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    description: &str,
    count: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let bin = gst::parse::bin_from_description(description, true)?;
    let dec = bin.by_name("dec").context("the branch's dec element")?;
    dec.static_pad("src").context("dec's src pad")?.add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            count.fetch_add(1, Relaxed);
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.add(&bin)?;
    bin.sync_state_with_parent()?;
    let sink = bin.static_pad("sink").context("the branch's sink pad")?;
    pad.link(&sink)?;
    Ok(())
}

/// Plays the `pattern` title into a `webrtcbin` for 25 s (after 3 s to settle) and checks
/// the frame rate it decodes and the node's bitrate.
async fn webrtcbin_keeps_the_rate(twcc_on_video: bool) {
    if let Err(e) = gst::init().map_err(anyhow::Error::from).and_then(|()| {
        for element in ["webrtcbin", "nicesrc"] {
            first_element(&[element])?;
        }
        first_element(&["avdec_h264", "openh264dec"]).map(drop)
    }) {
        eprintln!("skipped: {e:#}");
        return;
    }
    let lab = crate::support::start(node_config()).await;
    let mut signaling = Signaling::open(&lab.client_ws_url().expect("a client URL"))
        .await
        .expect("a session from signaling");
    let session_id = signaling.session_id.clone();
    let receiver = Arc::new(
        GstReceiver::start(signaling.out.clone(), twcc_on_video).expect("start webrtcbin"),
    );
    let handler = receiver.clone();
    let relay = tokio::spawn(async move {
        while let Some(msg) = signaling.inbound.recv().await {
            handler.handle(msg);
        }
        signaling
    });

    wait_count(&receiver.frames, 30, "frames decoded by webrtcbin").await;
    // The case is the one intended: the extension on the video only, or nowhere.
    let offer = receiver
        .offer
        .lock()
        .expect("offer")
        .clone()
        .expect("an offer");
    let audio_section = offer.find("m=audio").expect("an audio section");
    let extension = offer.find(rtc::sdp::extmap::TRANSPORT_CC_URI);
    assert_eq!(
        extension.map(|at| at < audio_section),
        twcc_on_video.then_some(true),
        "webrtcbin's offer:\n{offer}"
    );
    assert_eq!(
        offer.matches(rtc::sdp::extmap::TRANSPORT_CC_URI).count(),
        usize::from(twcc_on_video),
        "webrtcbin's offer:\n{offer}"
    );
    let m = session_metrics(&lab, &session_id);
    // Past the first seconds, where the encoder settles and the first feedback arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let span = measure(&m, &receiver.frames, Duration::from_secs(25)).await;
    eprintln!(
        "webrtcbin (TWCC extension on video: {twcc_on_video}): {:.1} fps decoded, node {:.1} fps; bitrate kbit/s each second {:?}; {} audio packets",
        span.fps,
        span.node_fps,
        span.bitrate_kbps,
        receiver.audio.load(Relaxed)
    );
    assert!(
        receiver.audio.load(Relaxed) > 100,
        "the node's sound (the stream without TWCC numbers) never arrived"
    );
    assert!(span.fps >= 28.0, "{span:?}");
    let floor = u64::from(START_KBPS) * 3 / 4;
    assert!(
        span.lowest_kbps() >= floor,
        "the node's bitrate fell under {floor} kbit/s on a clean link: {span:?}"
    );
    // The relay holds the other reference to the receiver: once it is gone, dropping ours
    // stops the pipeline.
    relay.abort();
    let _ = relay.await;
    drop(receiver);
}

/// webrtcbin's default offer: `transport-cc` feedback on both sections but no header extension,
/// so no TWCC feedback comes back at all; the node goes by its receiver reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_webrtcbin_receiver_keeps_the_rate() {
    webrtcbin_keeps_the_rate(false).await;
}

/// The transport-wide-cc extension on the video only: the node's audio packets carry no TWCC
/// number, and GCC must not count them as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webrtcbin_receiver_with_transport_cc_on_video_only_keeps_the_rate() {
    webrtcbin_keeps_the_rate(true).await;
}

// ---------------------------------------------------------------------------------------------
// A webrtc-rs receiver with REMB and no transport-cc.

mod remb_receiver {
    use super::*;
    use rtc::ice::mdns::MulticastDnsMode;
    use rtc::interceptor::Registry;
    use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
    use rtc::peer_connection::configuration::media_engine::MediaEngine;
    use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
    use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
    use rtc::rtp_transceiver::rtp_sender::{
        RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind, TYPE_RTCP_FB_GOOG_REMB,
    };
    use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
    use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
    use webrtc::peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
        RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSessionDescription,
    };

    /// What the receiver counts and the REMB it sends.
    #[derive(Debug, Default)]
    pub struct State {
        /// Video frames (distinct RTP timestamps).
        pub frames: AtomicU64,
        /// REMB sent every 200 ms, kbit/s.
        pub remb_kbps: AtomicU32,
        /// REMB packets sent.
        pub rembs: AtomicU64,
        last_ts: std::sync::Mutex<Option<u32>>,
    }

    struct Events {
        state: Arc<State>,
        out: mpsc::UnboundedSender<ClientMsg>,
    }

    #[async_trait::async_trait]
    impl PeerConnectionEventHandler for Events {
        async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
            let Ok(init) = event.candidate.to_json() else {
                return;
            };
            if init.candidate.trim_start_matches("candidate:").is_empty() {
                return;
            }
            let _ = self.out.send(ClientMsg::Ice {
                candidate: IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                },
            });
        }

        async fn on_track(&self, track: Arc<dyn TrackRemote>) {
            let state = self.state.clone();
            tokio::spawn(read_track(track, state));
        }
    }

    /// Counts the video's frames and, from the first video packet on, sends a REMB every
    /// 200 ms naming its SSRC.
    async fn read_track(track: Arc<dyn TrackRemote>, state: Arc<State>) {
        if track.kind().await != RtpCodecKind::Video {
            while track.poll().await.is_some() {}
            return;
        }
        let mut remb: Option<JoinHandle<()>> = None;
        while let Some(event) = track.poll().await {
            let TrackRemoteEvent::OnRtpPacket(packet) = event else {
                continue;
            };
            let ts = packet.header.timestamp;
            {
                let mut last = state.last_ts.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|l| (ts.wrapping_sub(l) as i32) > 0) {
                    *last = Some(ts);
                    state.frames.fetch_add(1, Relaxed);
                }
            }
            if remb.is_none() {
                let (track, state, ssrc) = (track.clone(), state.clone(), packet.header.ssrc);
                remb = Some(tokio::spawn(async move {
                    let mut every = tokio::time::interval(Duration::from_millis(200));
                    loop {
                        every.tick().await;
                        let kbps = state.remb_kbps.load(Relaxed);
                        let packet = ReceiverEstimatedMaximumBitrate {
                            sender_ssrc: 1,
                            bitrate: kbps as f32 * 1000.0,
                            ssrcs: vec![ssrc],
                        };
                        if track.write_rtcp(vec![Box::new(packet)]).await.is_err() {
                            return;
                        }
                        state.rembs.fetch_add(1, Relaxed);
                    }
                }));
            }
        }
        if let Some(remb) = remb {
            remb.abort();
        }
    }

    /// The peer connection: our formats, REMB and abs-send-time, receiver reports, and no
    /// transport-cc (neither the feedback nor the header extension).
    pub async fn connect(
        signaling: &mut Signaling,
        remb_kbps: u32,
    ) -> anyhow::Result<(Arc<dyn PeerConnection>, Arc<State>)> {
        let mut media = MediaEngine::default();
        stream_formats::register_stream_formats(&mut media, true)?;
        media.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_GOOG_REMB.to_owned(),
                parameter: String::new(),
            },
            RtpCodecKind::Video,
        );
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            media.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: rtc::sdp::extmap::ABS_SEND_TIME_URI.to_owned(),
                },
                kind,
                None,
            )?;
        }
        let state = Arc::new(State::default());
        state.remb_kbps.store(remb_kbps, Relaxed);
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(media)
                .with_setting_engine(
                    SettingEngineBuilder::new()
                        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
                        .build(),
                )
                .with_interceptor_registry(configure_rtcp_reports(Registry::new()))
                .with_handler(Arc::new(Events {
                    state: state.clone(),
                    out: signaling.out.clone(),
                }))
                .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
                .build()
                .await?,
        );
        for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
            let init = RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                streams: vec![],
                send_encodings: vec![],
            };
            pc.add_transceiver_from_kind(kind, Some(init)).await?;
        }
        let offer = pc.create_offer(None).await?;
        assert!(
            !offer.sdp.contains("transport-cc") && !offer.sdp.contains("transport-wide-cc"),
            "the REMB receiver offers transport-cc: {}",
            offer.sdp
        );
        let sdp = offer.sdp.clone();
        pc.set_local_description(offer).await?;
        signaling.out.send(ClientMsg::Offer { sdp })?;
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let msg = tokio::time::timeout_at(deadline, signaling.inbound.recv())
                .await
                .context("no answer from the node")?
                .context("signaling closed")?;
            match msg {
                ServerMsg::Answer { sdp } => {
                    assert!(
                        sdp.contains("goog-remb"),
                        "the node's answer does not take REMB: {sdp}"
                    );
                    pc.set_remote_description(RTCSessionDescription::answer(sdp)?)
                        .await?;
                    break;
                }
                ServerMsg::SessionEnded { reason, .. } => bail!("the session ended: {reason}"),
                _ => {}
            }
        }
        // The node's candidates are in its answer; any trickled later are applied as they come.
        let relay = pc.clone();
        let mut inbound = std::mem::replace(&mut signaling.inbound, mpsc::unbounded_channel().1);
        tokio::spawn(async move {
            while let Some(msg) = inbound.recv().await {
                if let ServerMsg::Ice { candidate, .. } = msg
                    && !candidate.candidate.is_empty()
                {
                    let init = RTCIceCandidateInit {
                        candidate: candidate.candidate,
                        sdp_mid: candidate.sdp_mid,
                        sdp_mline_index: candidate.sdp_mline_index,
                        ..Default::default()
                    };
                    let _ = relay.add_ice_candidate(init).await;
                }
            }
        });
        Ok((pc, state))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_without_transport_cc_is_followed_through_its_remb() {
    const LOW_REMB_KBPS: u32 = 800;
    const HIGH_REMB_KBPS: u32 = 5_000;
    let lab = crate::support::start(node_config()).await;
    let mut signaling = Signaling::open(&lab.client_ws_url().expect("a client URL"))
        .await
        .expect("a session from signaling");
    let (pc, state) = remb_receiver::connect(&mut signaling, LOW_REMB_KBPS)
        .await
        .expect("the REMB receiver connects");
    wait_count(&state.frames, 30, "frames at the REMB receiver").await;
    let m = session_metrics(&lab, &signaling.session_id);

    // A REMB well under the start rate: the node comes down to it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let low = measure(&m, &state.frames, Duration::from_secs(6)).await;
    eprintln!(
        "REMB {LOW_REMB_KBPS} kbit/s: bitrate kbit/s each second {:?}, {:.1} fps received, node {:.1} fps; {} REMBs sent",
        low.bitrate_kbps,
        low.fps,
        low.node_fps,
        state.rembs.load(Relaxed)
    );
    let ceiling = u64::from(LOW_REMB_KBPS) * 11 / 10;
    assert!(
        low.bitrate_kbps.iter().all(|&k| k <= ceiling),
        "the node's bitrate did not follow a REMB of {LOW_REMB_KBPS} kbit/s: {low:?}"
    );
    assert!(
        low.last_kbps() >= u64::from(LOW_REMB_KBPS) / 2,
        "the node went far under the REMB: {low:?}"
    );

    // A REMB over the start rate: the stream plays at full rate, at least 75 % of the start.
    state.remb_kbps.store(HIGH_REMB_KBPS, Relaxed);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let high = measure(&m, &state.frames, Duration::from_secs(15)).await;
    eprintln!(
        "REMB {HIGH_REMB_KBPS} kbit/s: bitrate kbit/s each second {:?}, {:.1} fps received, node {:.1} fps",
        high.bitrate_kbps, high.fps, high.node_fps
    );
    assert!(high.fps >= 28.0, "{high:?}");
    let floor = u64::from(START_KBPS) * 3 / 4;
    assert!(
        high.lowest_kbps() >= floor,
        "the node's bitrate stayed under {floor} kbit/s with a REMB of {HIGH_REMB_KBPS}: {high:?}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), pc.close()).await;
    drop(signaling);
}
