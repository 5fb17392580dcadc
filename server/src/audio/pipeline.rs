//! The GStreamer pipelines: recording a session sink's monitor into Opus packets, and the demo
//! title's tone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;

use super::{
    AudioError, CHANNELS, EXPECTED_LOSS_PERCENT, FRAME_DURATION, FRAME_SAMPLES, OPUS_BITRATE,
    SAMPLE_RATE, SessionSink, SoundServer,
};

/// How long the pulling thread waits for a buffer before it checks for stop and failure.
const PULL_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a start waits for its pipeline to reach PLAYING.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// `pulsesrc buffer-time`: PulseAudio's record buffer, in µs.
const CAPTURE_BUFFER_US: i64 = 20_000;
/// `pulsesrc latency-time`: the size of one read from PulseAudio, in µs.
const CAPTURE_LATENCY_US: i64 = 10_000;
/// `pulsesink buffer-time` for the demo tone, in µs.
const TONE_BUFFER_US: i64 = 40_000;
/// How long the tone's player has to connect to the sound server.
const TONE_START_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest Opus packet (RFC 6716 allows 1275 bytes per frame; libopus recommends 4000).
const MAX_PACKET: usize = 4000;

/// One encoded Opus packet of session audio.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    /// The Opus packet: one 20 ms frame, 48 kHz stereo.
    pub data: Bytes,
    /// CLOCK_MONOTONIC time ([`capture::clock::monotonic_ns`]) at which the frame's last sample
    /// reached the node.
    pub captured_ns: u64,
    /// The audio the packet holds ([`FRAME_DURATION`]).
    pub duration: Duration,
}

/// The first error a pipeline reported, shared between its bus handler and its owner.
type Failure = Arc<Mutex<Option<String>>>;

fn record(failure: &Failure, reason: String) {
    let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(reason);
    }
}

fn read(failure: &Failure) -> Option<String> {
    failure.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

fn make(factory: &'static str, package: &'static str) -> Result<gst::Element, AudioError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| AudioError::MissingElement {
            element: factory,
            package,
        })
}

fn init(what: &'static str) -> Result<(), AudioError> {
    gst::init().map_err(|e| AudioError::Pipeline {
        what,
        message: format!("cannot initialise GStreamer: {e}"),
    })?;
    encoder::bridge_gstreamer_log();
    Ok(())
}

fn raw_caps(format: Option<&str>) -> gst::Caps {
    let mut caps = gst::Caps::builder("audio/x-raw")
        .field("rate", SAMPLE_RATE as i32)
        .field("channels", CHANNELS as i32)
        .field("layout", "interleaved");
    if let Some(format) = format {
        caps = caps.field("format", format);
    }
    caps.build()
}

/// Builds a pipeline of `elements` linked in order, with a bus handler that records the first
/// error in the returned slot and drops every message (nobody polls this bus, so nothing may
/// pile up on it), and starts it, waiting at most [`START_TIMEOUT`] for PLAYING.
fn run_pipeline(
    what: &'static str,
    elements: &[&gst::Element],
) -> Result<(gst::Pipeline, Failure), AudioError> {
    let fail = |message: String| AudioError::Pipeline { what, message };
    let pipeline = gst::Pipeline::with_name(&format!("stratus-audio-{what}"));
    pipeline
        .add_many(elements)
        .map_err(|e| fail(e.to_string()))?;
    gst::Element::link_many(elements).map_err(|e| fail(format!("cannot link: {e}")))?;
    let failure: Failure = Arc::default();
    let slot = failure.clone();
    pipeline
        .bus()
        .expect("a pipeline has a bus")
        .set_sync_handler(move |_, message| {
            match message.view() {
                gst::MessageView::Error(e) => {
                    let source = e.src().map(|s| s.name().to_string()).unwrap_or_default();
                    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    record(&slot, format!("{source}: {}{debug}", e.error()));
                }
                gst::MessageView::Warning(w) => {
                    tracing::warn!(pipeline = what, "{}", w.error());
                }
                _ => {}
            }
            gst::BusSyncReply::Drop
        });
    let started = pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| "cannot start".to_owned())
        .and_then(|_| {
            match pipeline.state(gst::ClockTime::from_nseconds(
                START_TIMEOUT.as_nanos() as u64
            )) {
                (Ok(_), gst::State::Playing, _) => Ok(()),
                (Ok(_), state, _) => Err(format!(
                    "still {state:?} after {START_TIMEOUT:?}, not playing"
                )),
                (Err(_), _, _) => Err("cannot start".to_owned()),
            }
        });
    if let Err(reason) = started {
        let _ = pipeline.set_state(gst::State::Null);
        return Err(fail(read(&failure).unwrap_or(reason)));
    }
    Ok((pipeline, failure))
}

/// Cuts interleaved 48 kHz stereo PCM into 20 ms frames and encodes each with Opus. Pure: the
/// capture thread feeds it, and tests feed it synthetic PCM.
struct FrameEncoder {
    opus: opus::Encoder,
    /// Samples of the frame being filled (interleaved, fewer than one frame's worth).
    pending: Vec<i16>,
    out: Vec<u8>,
}

impl FrameEncoder {
    const FRAME_LEN: usize = FRAME_SAMPLES * CHANNELS;

    fn new() -> Result<Self, AudioError> {
        let step = |step| move |source| AudioError::Opus { step, source };
        // `Audio`, not `LowDelay`: LowDelay is CELT-only, and Opus' in-band FEC lives in the
        // SILK layer, so it would do nothing there. Audio mode adds no latency at 20 ms frames.
        let mut opus = opus::Encoder::new(
            SAMPLE_RATE,
            opus::Channels::Stereo,
            opus::Application::Audio,
        )
        .map_err(step("new"))?;
        opus.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE))
            .map_err(step("bitrate"))?;
        opus.set_inband_fec(true).map_err(step("inband FEC"))?;
        opus.set_packet_loss_perc(EXPECTED_LOSS_PERCENT)
            .map_err(step("packet loss"))?;
        Ok(Self {
            opus,
            pending: Vec::with_capacity(Self::FRAME_LEN),
            out: vec![0; MAX_PACKET],
        })
    }

    /// Adds `pcm` (interleaved stereo) and calls `emit(packet, samples_after)` for each frame
    /// it completes, where `samples_after` is how many samples per channel of `pcm` followed
    /// the frame's last one.
    fn push(
        &mut self,
        mut pcm: &[i16],
        mut emit: impl FnMut(Bytes, usize),
    ) -> Result<(), opus::Error> {
        while !pcm.is_empty() {
            let take = (Self::FRAME_LEN - self.pending.len()).min(pcm.len());
            self.pending.extend_from_slice(&pcm[..take]);
            pcm = &pcm[take..];
            if self.pending.len() == Self::FRAME_LEN {
                let len = self.opus.encode(&self.pending, &mut self.out)?;
                self.pending.clear();
                emit(
                    Bytes::copy_from_slice(&self.out[..len]),
                    pcm.len() / CHANNELS,
                );
            }
        }
        Ok(())
    }
}

/// Records a [`SessionSink`]'s monitor and sends it as Opus packets.
///
/// The pipeline is `pulsesrc ! audioconvert ! audioresample ! S16LE 48 kHz stereo ! appsink`
/// with a 20 ms record buffer read every 10 ms; an OS thread pulls from it, encodes every 20 ms
/// and `try_send`s each packet, dropping (and counting) packets the receiver has no room for:
/// late audio is worse than a gap. The thread ends on a pipeline error ([`failure`]) or when
/// the receiver is gone; dropping the value stops the pipeline and joins the thread.
///
/// [`failure`]: AudioCapture::failure
#[derive(Debug)]
pub struct AudioCapture {
    pipeline: gst::Pipeline,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    failure: Failure,
    packets: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl AudioCapture {
    /// Starts recording `sink`'s monitor on `server` into `out`.
    pub fn start(
        server: &SoundServer,
        sink: &SessionSink,
        out: mpsc::Sender<AudioPacket>,
    ) -> Result<AudioCapture, AudioError> {
        init("capture")?;
        let encoder = FrameEncoder::new()?;
        let src = make("pulsesrc", "gstreamer1.0-pulseaudio")?;
        src.set_property("server", server.server());
        src.set_property("device", sink.monitor());
        src.set_property("client-name", format!("stratus capture {}", sink.name()));
        src.set_property("buffer-time", CAPTURE_BUFFER_US);
        src.set_property("latency-time", CAPTURE_LATENCY_US);
        // The pipeline runs on the system clock: no element needs PulseAudio's.
        src.set_property("provide-clock", false);
        src.set_property("do-timestamp", true);
        let convert = make("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make("audioresample", "gstreamer1.0-plugins-base")?;
        let appsink = gst_app::AppSink::builder()
            .caps(&raw_caps(Some("S16LE")))
            .sync(false)
            .max_buffers(4)
            .drop(true)
            .build();
        let (pipeline, failure) = run_pipeline(
            "capture",
            &[&src, &convert, &resample, appsink.upcast_ref()],
        )?;

        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            appsink,
            encoder,
            out,
            stop: stop.clone(),
            failure: failure.clone(),
            packets: packets.clone(),
            dropped: dropped.clone(),
        };
        let sink_name = sink.name().to_owned();
        let thread = std::thread::Builder::new()
            .name("stratus-audio".into())
            .spawn(move || worker.run(&sink_name));
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(AudioError::Pipeline {
                    what: "capture",
                    message: format!("cannot start the capture thread: {e}"),
                });
            }
        };
        tracing::info!(sink = sink.name(), "audio capture started");
        Ok(AudioCapture {
            pipeline,
            thread: Some(thread),
            stop,
            failure,
            packets,
            dropped,
        })
    }

    /// Packets sent so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Packets dropped so far because the receiver's queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Why capture stopped, if it failed: the pipeline's first error (for example the sink
    /// going away) or an encoder error.
    pub fn failure(&self) -> Option<String> {
        read(&self.failure)
    }

    /// Whether the capture thread still runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for AudioCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::debug!(
            packets = self.packets(),
            dropped = self.dropped(),
            "audio capture stopped"
        );
    }
}

/// The capture thread's state.
struct Worker {
    appsink: gst_app::AppSink,
    encoder: FrameEncoder,
    out: mpsc::Sender<AudioPacket>,
    stop: Arc<AtomicBool>,
    failure: Failure,
    packets: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Worker {
    fn run(mut self, sink: &str) {
        let mut pcm: Vec<i16> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) && read(&self.failure).is_none() {
            let Some(sample) = self
                .appsink
                .try_pull_sample(gst::ClockTime::from_nseconds(PULL_TIMEOUT.as_nanos() as u64))
            else {
                if self.appsink.is_eos() && !self.stop.load(Ordering::Relaxed) {
                    record(&self.failure, "the sound server ended the stream".into());
                }
                continue;
            };
            let arrived_ns = capture::clock::monotonic_ns();
            let Some(buffer) = sample.buffer() else {
                continue;
            };
            let Ok(map) = buffer.map_readable() else {
                continue;
            };
            pcm.clear();
            pcm.extend(
                map.as_slice()
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
            let mut closed = false;
            let (out, packets, dropped) = (&self.out, &self.packets, &self.dropped);
            let pushed = self.encoder.push(&pcm, |data, samples_after| {
                let after_ns = samples_after as u64 * 1_000_000_000 / SAMPLE_RATE as u64;
                let packet = AudioPacket {
                    data,
                    captured_ns: arrived_ns.saturating_sub(after_ns),
                    duration: FRAME_DURATION,
                };
                match out.try_send(packet) {
                    Ok(()) => {
                        packets.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
                }
            });
            if let Err(e) = pushed {
                record(&self.failure, format!("opus encoder: {e}"));
            }
            if closed {
                tracing::debug!(sink, "audio receiver gone; capture thread ends");
                break;
            }
        }
        if let Some(reason) = read(&self.failure) {
            tracing::warn!(sink, %reason, "audio capture failed");
        }
    }
}

/// The built-in demo title's sound: a sine tone played into a session sink by a `pacat`
/// process (48 kHz stereo S16LE from a thread of ours). Dropping the value stops it.
#[derive(Debug)]
pub struct TonePlayer {
    child: std::process::Child,
    writer: Option<std::thread::JoinHandle<()>>,
    failure: Failure,
    freq_hz: f64,
}

impl TonePlayer {
    /// Plays a sine of `freq_hz` at half volume into `sink` on `server`, until dropped.
    ///
    /// The tone plays from its own process (`pacat`, fed from a thread), as a title's sound
    /// would: an in-process `pulsesink` shares libpulse's one main-loop lock with the node's
    /// captures, and one torn down while it was still starting could deadlock them all.
    pub fn start(
        server: &SoundServer,
        sink: &SessionSink,
        freq_hz: f64,
    ) -> Result<TonePlayer, AudioError> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let nyquist = f64::from(SAMPLE_RATE) / 2.0;
        if !(freq_hz > 0.0 && freq_hz < nyquist) {
            return Err(AudioError::Pipeline {
                what: "tone",
                message: format!("tone frequency {freq_hz} Hz is not between 0 and {nyquist} Hz"),
            });
        }
        let mut child = Command::new("pacat")
            .args(["--playback", "--raw", "--format=s16le", "--channels=2"])
            .arg(format!("--rate={SAMPLE_RATE}"))
            .arg(format!("--server={}", server.server()))
            .arg(format!("--device={}", sink.name()))
            .arg(format!("--client-name=stratus tone {}", sink.name()))
            // A game asks for about this much; pacat's default would put the tone far behind
            // the picture.
            .arg(format!("--latency-msec={}", TONE_BUFFER_US / 1000))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    AudioError::MissingProgram {
                        program: "pacat",
                        package: "pulseaudio-utils",
                    }
                } else {
                    AudioError::Spawn {
                        program: "pacat",
                        source,
                    }
                }
            })?;
        let Some(mut stdin) = child.stdin.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(AudioError::Pipeline {
                what: "tone",
                message: "pacat has no standard input".into(),
            });
        };
        let failure: Failure = Arc::default();
        let writer_failure = failure.clone();
        let writer = std::thread::Builder::new()
            .name("stratus-tone".into())
            .spawn(move || {
                // 10 ms blocks; the write blocks while pacat's buffer is full, which paces it.
                let frames = (SAMPLE_RATE / 100) as usize;
                let step = std::f64::consts::TAU * freq_hz / f64::from(SAMPLE_RATE);
                let mut phase = 0.0f64;
                let mut block = Vec::with_capacity(frames * CHANNELS * 2);
                loop {
                    block.clear();
                    for _ in 0..frames {
                        let v = (phase.sin() * 0.5 * f64::from(i16::MAX)) as i16;
                        phase = (phase + step) % std::f64::consts::TAU;
                        for _ in 0..CHANNELS {
                            block.extend_from_slice(&v.to_le_bytes());
                        }
                    }
                    if let Err(e) = stdin.write_all(&block) {
                        record(&writer_failure, format!("the tone stopped: {e}"));
                        return;
                    }
                }
            })
            .map_err(|source| AudioError::Spawn {
                program: "pacat",
                source,
            })?;
        let mut tone = TonePlayer {
            child,
            writer: Some(writer),
            failure,
            freq_hz,
        };
        // Playing once its stream is on the sink, as a title's sound is by the time it is heard.
        let deadline = std::time::Instant::now() + TONE_START_TIMEOUT;
        loop {
            if let Some(why) = tone.failure() {
                return Err(AudioError::Pipeline {
                    what: "tone",
                    message: why,
                });
            }
            if server.has_input(sink.name())? {
                break;
            }
            if std::time::Instant::now() >= deadline {
                return Err(AudioError::Pipeline {
                    what: "tone",
                    message: format!(
                        "pacat did not start playing into {} within {TONE_START_TIMEOUT:?}",
                        sink.name()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::debug!(sink = sink.name(), freq_hz, "tone playing");
        Ok(tone)
    }

    /// The tone's frequency in Hz.
    pub fn freq_hz(&self) -> f64 {
        self.freq_hz
    }

    /// Why the tone stopped, if it failed.
    pub fn failure(&mut self) -> Option<String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            record(&self.failure, format!("pacat exited ({status})"));
        }
        read(&self.failure)
    }
}

impl Drop for TonePlayer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The writer's next write fails now that pacat is gone.
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, frames: usize) -> Vec<i16> {
        (0..frames)
            .flat_map(|i| {
                let v =
                    (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(SAMPLE_RATE)).sin();
                let s = (v * 16_000.0) as i16;
                [s, s]
            })
            .collect()
    }

    #[test]
    fn pcm_is_cut_into_20ms_frames_whatever_the_buffer_size() {
        let mut encoder = FrameEncoder::new().expect("opus");
        let pcm = sine(660.0, FRAME_SAMPLES * 5 / 2);
        let mut packets = Vec::new();
        // 441 samples per push: no buffer boundary lines up with a frame boundary.
        for chunk in pcm.chunks(441 * CHANNELS) {
            encoder
                .push(chunk, |p, after| packets.push((p, after)))
                .expect("encode");
        }
        assert_eq!(packets.len(), 2, "2.5 frames make two packets");
        assert_eq!(encoder.pending.len(), FRAME_SAMPLES * CHANNELS / 2);
        // Frame 1 ends at sample 960: the third push (882..1323) holds 363 samples after it.
        assert_eq!(packets[0].1, 1323 - 960);
        let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Stereo).expect("dec");
        let mut out = vec![0i16; FRAME_SAMPLES * CHANNELS];
        for (packet, _) in &packets {
            assert!(
                (10..=400).contains(&packet.len()),
                "a 20 ms packet at 96 kbit/s is about 240 bytes, got {}",
                packet.len()
            );
            assert_eq!(
                decoder.decode(packet, &mut out, false).expect("decode"),
                FRAME_SAMPLES
            );
        }
    }
}
