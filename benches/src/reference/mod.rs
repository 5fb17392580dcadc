//! The lab's reference sender: a plain GStreamer WebRTC pipeline configured the way
//! Selkies-GStreamer configures its software H.264 path, fed the `pattern` title's frames.
//!
//! ```text
//! PatternGenerator (I420, codes stamped at generation) → appsrc → x264enc → rtph264pay → webrtcbin
//! ```
//!
//! It registers with our signaling service as a node offering the `pattern` title, so the
//! browser page, the signaling path and the measuring script are the very same ones our node is
//! measured with; only the sender differs.
//!
//! x264enc's settings are Selkies-GStreamer's (`gstwebrtc_app.py`, software encoder, infinite
//! GOP): `threads = min(4, max(1, cores − 1))`, `aud=false`, `b-adapt=false`, `bframes=0`,
//! `dct8x8=false`, `insert-vui=true`, `key-int-max=2147483647`, `mb-tree=false`,
//! `rc-lookahead=0`, `sync-lookahead=0`, `vbv-buf-capacity = ceil(1000 / fps) × 1.5` ms,
//! `sliced-threads=true`, `byte-stream=true`, `pass=cbr`, `speed-preset=ultrafast`,
//! `tune=zerolatency`, caps `profile=main`; `rtph264pay mtu=1200 aggregate-mode=zero-latency
//! config-interval=-1`, NACK/PLI/FIR feedback, and the playout-delay header extension at 0
//! ([`playout_delay`], a `GstRTPHeaderExtension` subclass as Selkies has). What GStreamer 1.22
//! (Debian 12) cannot reproduce is listed in [`NOT_REPRODUCED`].

pub mod playout_delay;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;
use signaling::protocol::{IceCandidate, NodeMsg, NodeSite, PROTOCOL_VERSION, ServerMsg};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Selkies-GStreamer options the reference cannot reproduce on GStreamer 1.22.
pub const NOT_REPRODUCED: &[&str] = &[
    "rtpgccbwe congestion control (gst-plugins-rs; not packaged for Debian 12): the bitrate is fixed",
    "the transport-wide congestion control header extension (only used with rtpgccbwe)",
];

/// What the reference sends.
#[derive(Debug, Clone)]
pub struct ReferenceArgs {
    /// The signaling service's node WebSocket URL (`ws://…/ws/node`).
    pub signaling_url: String,
    /// The id it registers with.
    pub node_id: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// x264enc's bitrate, kbit/s.
    pub bitrate_kbps: u32,
}

/// What the pipeline tells the signaling task.
#[derive(Debug)]
enum Event {
    Answer(String),
    Ice(u32, String),
    Failed(String),
}

/// What the reference measures of itself, ms per frame, oldest first; the first [`KEEP`] are
/// kept.
#[derive(Debug, Default)]
pub struct Stages {
    /// Frame made → encoded (out of x264enc).
    pub encoded: Vec<f64>,
    /// Frame made → its last RTP packet out of the payloader.
    pub last_packet: Vec<f64>,
}

/// [`Stages`], shared with the pipeline's probes.
pub type Samples = Arc<Mutex<Stages>>;

/// Samples kept per stage (five minutes at 60 fps).
pub const KEEP: usize = 18_000;

/// Runs the reference node until the signaling connection closes, noting each frame's time
/// from generation to encoded and to its last packet in `samples`.
pub async fn run(args: ReferenceArgs, samples: Samples) -> anyhow::Result<()> {
    gst::init().context("initialise GStreamer")?;
    for element in ["webrtcbin", "x264enc", "rtph264pay", "nicesrc"] {
        if gst::ElementFactory::find(element).is_none() {
            bail!(
                "the reference sender needs the GStreamer element {element}; install \
                 gstreamer1.0-plugins-bad, -ugly, -good and gstreamer1.0-nice"
            );
        }
    }
    let (ws, _) = tokio_tungstenite::connect_async(args.signaling_url.as_str())
        .await
        .with_context(|| format!("connect to {}", args.signaling_url))?;
    let (mut tx, mut rx) = ws.split();
    let hello = NodeMsg::Hello {
        version: PROTOCOL_VERSION,
        node_id: args.node_id.clone(),
        capacity: 1,
        titles: vec![signaling::catalog::PATTERN_TITLE.to_string()],
        site: NodeSite::default(),
        gpu_class: "cpu".into(),
        public_addr: None,
        probe_url: None,
        agent_version: "reference (gstreamer webrtcbin)".into(),
    };
    send(&mut tx, &hello).await?;
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    let (events_tx, mut events) = mpsc::unbounded_channel::<(String, Event)>();
    let mut session: Option<(String, Session)> = None;
    loop {
        tokio::select! {
            msg = rx.next() => {
                let Some(msg) = msg else { return Ok(()) };
                let Message::Text(text) = msg.context("signaling connection")? else { continue };
                let msg: ServerMsg = serde_json::from_str(&text)
                    .with_context(|| format!("a message from signaling: {text}"))?;
                match msg {
                    ServerMsg::StartSession { session_id, sdp, .. } => {
                        session = None;
                        let events_tx = events_tx.clone();
                        let id = session_id.clone();
                        let started = Session::start(&args, &sdp, samples.clone(), move |e| {
                            let _ = events_tx.send((id.clone(), e));
                        });
                        match started {
                            Ok(s) => session = Some((session_id, s)),
                            Err(e) => {
                                send(&mut tx, &NodeMsg::SessionEnded {
                                    session_id, reason: format!("the reference sender cannot start: {e:#}"),
                                    permanent: true, stats: None,
                                }).await?;
                            }
                        }
                    }
                    ServerMsg::Ice { session_id: Some(id), candidate } => {
                        if let Some((current, s)) = &session && *current == id {
                            s.add_candidate(&candidate);
                        }
                    }
                    ServerMsg::EndSession { session_id, .. }
                        if session.as_ref().is_some_and(|(id, _)| *id == session_id) =>
                    {
                        session = None;
                    }
                    ServerMsg::Error { code, message } => {
                        tracing::warn!("signaling refused something: {code:?}: {message}");
                    }
                    _ => {}
                }
            }
            Some((id, event)) = events.recv() => {
                if session.as_ref().is_none_or(|(current, _)| *current != id) {
                    continue;
                }
                match event {
                    Event::Answer(sdp) => {
                        tracing::debug!(%sdp, "the reference's answer");
                        send(&mut tx, &NodeMsg::Answer { session_id: id, sdp }).await?;
                    }
                    Event::Ice(mline, candidate) => {
                        let candidate = IceCandidate { candidate, sdp_mid: None, sdp_mline_index: Some(mline as u16) };
                        send(&mut tx, &NodeMsg::Ice { session_id: id, candidate }).await?;
                    }
                    Event::Failed(reason) => {
                        session = None;
                        send(&mut tx, &NodeMsg::SessionEnded { session_id: id, reason, permanent: true, stats: None }).await?;
                    }
                }
            }
            _ = heartbeat.tick() => {
                let sessions = u32::from(session.is_some());
                send(&mut tx, &NodeMsg::Heartbeat { sessions, draining: false }).await?;
            }
        }
    }
}

async fn send<S>(tx: &mut S, msg: &NodeMsg) -> anyhow::Result<()>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let text = serde_json::to_string(msg).context("encode a node message")?;
    tx.send(Message::Text(text.into()))
        .await
        .context("send to signaling")
}

/// One player's pipeline; stopped on drop.
struct Session {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    running: Arc<AtomicBool>,
    feeder: Option<std::thread::JoinHandle<()>>,
}

impl Session {
    /// Builds the pipeline for `offer`, answers it, and starts feeding frames.
    fn start(
        args: &ReferenceArgs,
        offer: &str,
        samples: Samples,
        events: impl Fn(Event) + Send + Sync + Clone + 'static,
    ) -> anyhow::Result<Session> {
        let pt = h264_payload_type(offer)
            .context("the offer has no H.264 (packetization-mode=1) for the video")?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores.saturating_sub(1)).clamp(1, 4);
        let vbv_ms = 1000u32.div_ceil(args.fps.max(1)) * 3 / 2;
        let description = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true \
               caps=video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
             ! x264enc name=enc threads={threads} aud=false b-adapt=false bframes=0 dct8x8=false \
               insert-vui=true key-int-max=2147483647 mb-tree=false rc-lookahead=0 \
               sync-lookahead=0 vbv-buf-capacity={vbv_ms} sliced-threads=true byte-stream=true \
               pass=cbr speed-preset=ultrafast tune=zerolatency bitrate={kbps} \
             ! video/x-h264,profile=main,stream-format=byte-stream \
             ! rtph264pay name=pay mtu=1200 aggregate-mode=zero-latency config-interval=-1 pt={pt} \
             ! application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload={pt},\
               rtcp-fb-nack-pli=true,rtcp-fb-ccm-fir=true,rtcp-fb-x-gstreamer-fir-as-repair=true \
             ! webrtcbin name=webrtc bundle-policy=max-bundle",
            w = args.width,
            h = args.height,
            fps = args.fps,
            kbps = args.bitrate_kbps,
        );
        let pipeline = gst::parse::launch(&description)
            .context("build the reference pipeline")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("the reference description is not a pipeline"))?;
        let webrtc = pipeline.by_name("webrtc").context("webrtcbin")?;
        let src = pipeline
            .by_name("src")
            .context("appsrc")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| anyhow!("src is not an appsrc"))?;
        loopback_only(&webrtc);
        // Selkies turns retransmission on for the video: `do-nack` on its transceiver (RFC 4588
        // RTX in the answer, and webrtcbin answers NACKs). Its FEC stays off, as Selkies leaves
        // it unless a loss percentage is configured.
        match webrtc
            .emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&0i32])
        {
            Some(t) => t.set_property("do-nack", true),
            None => bail!("the reference pipeline has no video transceiver to enable NACK on"),
        }
        let enc = pipeline.by_name("enc").context("x264enc")?;
        note_age(&enc, samples.clone(), |s| &mut s.encoded);
        let pay = pipeline.by_name("pay").context("rtph264pay")?;
        note_age(&pay, samples, |s| &mut s.last_packet);
        // Selkies writes the playout delay on video when the offer names the extension.
        if let Some(id) = playout_delay::offered_id(offer, "video", playout_delay::URI) {
            let ext = playout_delay::PlayoutDelay::with_id(id);
            pay.emit_by_name::<()>("add-extension", &[&ext]);
        }

        let ice_events = events.clone();
        webrtc.connect("on-ice-candidate", false, move |values| {
            let mline = values[1].get::<u32>().unwrap_or(0);
            if let Ok(candidate) = values[2].get::<String>()
                && !candidate.is_empty()
            {
                ice_events(Event::Ice(mline, candidate));
            }
            None
        });
        let bus = pipeline.bus().context("the pipeline's bus")?;
        let bus_events = events.clone();
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Error(err) = msg.view() {
                bus_events(Event::Failed(format!(
                    "the reference pipeline failed: {} ({:?})",
                    err.error(),
                    err.debug()
                )));
            }
            gst::BusSyncReply::Drop
        });
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes())
            .map_err(|e| anyhow!("the offer is not SDP: {e}"))?;
        pipeline
            .set_state(gst::State::Playing)
            .context("start the reference pipeline")?;
        let offer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, sdp);
        let answering = webrtc.clone();
        let answer_events = events.clone();
        let remote_set = gst::Promise::with_change_func(move |_| {
            let webrtc = answering.clone();
            let local = answering.clone();
            let events = answer_events.clone();
            let answered = gst::Promise::with_change_func(move |reply| {
                let answer = match reply {
                    Ok(Some(reply)) => reply
                        .value("answer")
                        .ok()
                        .and_then(|v| v.get::<gst_webrtc::WebRTCSessionDescription>().ok()),
                    _ => None,
                };
                let Some(answer) = answer else {
                    events(Event::Failed(format!(
                        "webrtcbin made no answer: {reply:?}"
                    )));
                    return;
                };
                local
                    .emit_by_name::<()>("set-local-description", &[&answer, &None::<gst::Promise>]);
                match answer.sdp().as_text() {
                    Ok(text) => events(Event::Answer(text)),
                    Err(e) => events(Event::Failed(format!("the answer cannot be written: {e}"))),
                }
            });
            webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &answered]);
        });
        webrtc.emit_by_name::<()>("set-remote-description", &[&offer, &remote_set]);

        let running = Arc::new(AtomicBool::new(true));
        let feeder = {
            let running = running.clone();
            let (width, height, fps) = (args.width, args.height, args.fps);
            std::thread::Builder::new()
                .name("reference-frames".into())
                .spawn(move || feed(&src, width, height, fps, &running))
                .context("start the frame thread")?
        };
        Ok(Session {
            pipeline,
            webrtc,
            running,
            feeder: Some(feeder),
        })
    }

    /// Adds the player's trickled candidate.
    fn add_candidate(&self, candidate: &IceCandidate) {
        if candidate.candidate.is_empty() {
            return;
        }
        let mline = u32::from(candidate.sdp_mline_index.unwrap_or(0));
        self.webrtc
            .emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate.candidate]);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Pushes the pattern's frames into `src` at `fps`, each stamped with its generation time.
fn feed(src: &gst_app::AppSrc, width: u32, height: u32, fps: u32, running: &AtomicBool) {
    let generator = match server::title::pattern::PatternGenerator::new(width, height) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("the pattern cannot be made: {e}");
            return;
        }
    };
    let mut clock = capture::clock::FrameClock::new(fps);
    while running.load(Ordering::Relaxed) {
        let id = clock.wait_next();
        let frame = generator.frame(id, capture::clock::epoch_ms(), None);
        if src.push_buffer(gst::Buffer::from_mut_slice(frame)).is_err() {
            return;
        }
    }
    let _ = src.end_of_stream();
}

/// Notes, for each frame leaving `element` (for a payloader: each RTP packet with the marker
/// bit, a frame's last), the pipeline's running time minus the frame's: the appsrc stamped the
/// frame with the running time at which it was pushed (`do-timestamp`), just after it was made.
fn note_age(
    element: &gst::Element,
    samples: Samples,
    stage: impl Fn(&mut Stages) -> &mut Vec<f64> + Send + Sync + 'static,
) {
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    let rtp = element.name().starts_with("pay");
    let element = element.clone();
    let last_of_frame = move |buffer: &gst::BufferRef| {
        !rtp || buffer
            .map_readable()
            .is_ok_and(|map| map.len() > 1 && map[1] & 0x80 != 0)
    };
    // The payloader pushes a frame's fragments as one buffer list, single packets as buffers.
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |pad, info| {
            let last = match &info.data {
                Some(gst::PadProbeData::Buffer(b)) => Some(b.as_ref()).filter(|b| last_of_frame(b)),
                Some(gst::PadProbeData::BufferList(list)) => list.iter().find(|b| last_of_frame(b)),
                _ => None,
            };
            // x264enc shifts timestamps by 1000 hours (and its segment with them) to keep DTS
            // positive, so the packet's time is read through the segment.
            if let Some(buffer) = last
                && let Some(segment) = pad
                    .sticky_event::<gst::event::Segment>(0)
                    .and_then(|e| e.segment().clone().downcast::<gst::ClockTime>().ok())
                && let Some(now) = element.current_running_time()
                && let Some(pts) = segment.to_running_time(buffer.pts())
            {
                let ms = now.saturating_sub(pts).nseconds() as f64 / 1e6;
                if let Ok(mut s) = samples.lock() {
                    let s = stage(&mut s);
                    if s.len() < KEEP {
                        s.push(ms);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
}

/// Keeps a `webrtcbin`'s ICE agent (libnice) on 127.0.0.1, as the reference's own sessions
/// are: for other test peers built on `webrtcbin` (a receiver, say) in a namespace holding only
/// `lo`.
pub fn restrict_to_loopback(webrtc: &gst::Element) {
    loopback_only(webrtc);
}

/// Keeps libnice on loopback: the lab's packets never leave the machine, and in a namespace
/// holding only `lo` libnice would otherwise find no address at all (it skips loopback).
fn loopback_only(webrtc: &gst::Element) {
    let Some(ice) = webrtc.property::<Option<gst::glib::Object>>("ice-agent") else {
        return;
    };
    // GstWebRTCNice's action signal (libnice's nice_agent_add_local_address): once an address
    // is added, libnice gathers on the added ones only.
    let added: bool = ice.emit_by_name("add-local-ip-address", &[&"127.0.0.1"]);
    if !added {
        tracing::warn!("libnice refused 127.0.0.1 as the reference's local address");
    }
}

/// The payload type the offer gives H.264 with packetization mode 1, preferring Main profile
/// (what the reference encodes), then Constrained Baseline, then any.
pub fn h264_payload_type(offer: &str) -> Option<u8> {
    let mut in_video = false;
    let mut h264: Vec<u8> = Vec::new();
    let mut fmtp: Vec<(u8, String)> = Vec::new();
    for line in offer.lines() {
        let line = line.trim_end();
        if let Some(media) = line.strip_prefix("m=") {
            if in_video {
                break;
            }
            in_video = media.starts_with("video");
            continue;
        }
        if !in_video {
            continue;
        }
        if let Some(rest) = line.strip_prefix("a=rtpmap:") {
            let mut parts = rest.splitn(2, ' ');
            let (Some(pt), Some(codec)) = (parts.next(), parts.next()) else {
                continue;
            };
            if codec.to_ascii_uppercase().starts_with("H264/90000")
                && let Ok(pt) = pt.parse()
            {
                h264.push(pt);
            }
        } else if let Some(rest) = line.strip_prefix("a=fmtp:") {
            let mut parts = rest.splitn(2, ' ');
            if let (Some(Ok(pt)), Some(params)) = (parts.next().map(str::parse), parts.next()) {
                fmtp.push((pt, params.to_ascii_lowercase()));
            }
        }
    }
    let params = |pt: u8| {
        fmtp.iter()
            .find(|(p, _)| *p == pt)
            .map_or("", |(_, s)| s.as_str())
    };
    let mode1: Vec<u8> = h264
        .into_iter()
        .filter(|pt| params(*pt).contains("packetization-mode=1"))
        .collect();
    let profile = |prefix: &str| {
        mode1
            .iter()
            .copied()
            .find(|pt| params(*pt).contains(&format!("profile-level-id={prefix}")))
    };
    profile("4d")
        .or_else(|| profile("42e0"))
        .or_else(|| mode1.first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 102 106 127\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f\r\n\
        a=rtpmap:106 H264/90000\r\na=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
        a=rtpmap:127 H264/90000\r\na=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";

    #[test]
    fn picks_main_profile_in_packetization_mode_1() {
        assert_eq!(h264_payload_type(OFFER), Some(127));
        let no_main = OFFER.replace("profile-level-id=4d001f", "profile-level-id=640c1f");
        assert_eq!(h264_payload_type(&no_main), Some(106));
        assert_eq!(
            h264_payload_type("v=0\r\nm=video 9 RTP 96\r\na=rtpmap:96 VP8/90000\r\n"),
            None
        );
    }
}
