//! Decoding the H.264 stream with GStreamer: `appsrc ! h264parse ! <decoder> ! videoconvert !
//! BGRx ! appsink`.
//!
//! The decoder is chosen by probing, best first: NVIDIA's `nvh264dec`, VA-API's `vah264dec`,
//! then the software `avdec_h264` (FFmpeg, slice threads only: frame threads would hold frames
//! back) and `openh264dec`. A hardware decoder is used only if its element exists *and* starts
//! (both need their device). BGRx is what the window takes as is (a little-endian `0RGB` word
//! per pixel), so the only copy after the decoder is the one into the window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::depacketize::AccessUnit;

/// H.264 decoders we know, best first: `(element, what it is)`.
pub const DECODERS: [(&str, &str); 4] = [
    ("nvh264dec", "NVIDIA NVDEC (hardware)"),
    ("vah264dec", "VA-API (hardware)"),
    ("avdec_h264", "FFmpeg (software)"),
    ("openh264dec", "OpenH264 (software)"),
];

/// Why no decoder could be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecoderError {
    /// GStreamer itself did not start.
    #[error("GStreamer did not start: {0}")]
    Gstreamer(String),
    /// None of the decoders exists or starts here.
    #[error(
        "no H.264 decoder works on this machine (tried {tried}); install gstreamer1.0-libav \
         (avdec_h264) or a hardware decoder's GStreamer plugin"
    )]
    Missing {
        /// What was tried and why each failed.
        tried: String,
    },
}

/// One decoded picture, still in GStreamer's buffer (no copy yet).
#[derive(Debug, Clone)]
pub struct DecodedFrame {
    /// The sample; its buffer holds BGRx rows.
    pub sample: gst::Sample,
    /// Picture width in pixels.
    pub width: u32,
    /// Picture height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub stride: usize,
    /// From the access unit's last packet to the decoded picture (decode and conversion).
    pub decode: Duration,
    /// When the decoder handed it out.
    pub decoded_at: Instant,
}

impl DecodedFrame {
    /// Runs `f` over the picture's bytes (BGRx rows `stride` apart).
    pub fn with_pixels<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let buffer = self.sample.buffer()?;
        let map = buffer.map_readable().ok()?;
        Some(f(map.as_slice()))
    }
}

/// A running decoder: push access units in, decoded frames come out on the callback.
#[derive(Debug)]
pub struct Decoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    element: &'static str,
    base: Instant,
}

type FrameCallback = Arc<dyn Fn(DecodedFrame) + Send + Sync>;

/// Initialises GStreamer once.
pub fn init() -> Result<(), DecoderError> {
    gst::init().map_err(|e| DecoderError::Gstreamer(e.to_string()))
}

impl Decoder {
    /// Starts the best decoder that works here, or the one named by `only`. `on_frame` runs on
    /// GStreamer's streaming thread for every decoded picture.
    pub fn start(
        only: Option<&str>,
        on_frame: impl Fn(DecodedFrame) + Send + Sync + 'static,
    ) -> Result<Decoder, DecoderError> {
        Self::start_shared(only, Arc::new(on_frame))
    }

    fn start_shared(only: Option<&str>, on_frame: FrameCallback) -> Result<Decoder, DecoderError> {
        init()?;
        let mut tried = Vec::new();
        for (element, what) in DECODERS {
            if only.is_some_and(|o| o != element) {
                continue;
            }
            if gst::ElementFactory::find(element).is_none() {
                tried.push(format!("{element}: not installed"));
                continue;
            }
            match Self::build(element, on_frame.clone()) {
                Ok(decoder) => {
                    tracing::info!("decoding with {element} ({what})");
                    return Ok(decoder);
                }
                Err(why) => {
                    tracing::info!("{element} does not start here: {why}");
                    tried.push(format!("{element}: {why}"));
                }
            }
        }
        if let Some(o) = only
            && !DECODERS.iter().any(|(e, _)| *e == o)
        {
            tried.push(format!("{o}: not a decoder we know"));
        }
        Err(DecoderError::Missing {
            tried: tried.join("; "),
        })
    }

    fn build(element: &'static str, on_frame: FrameCallback) -> Result<Decoder, String> {
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(
                &gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build(),
            )
            .is_live(true)
            .format(gst::Format::Time)
            .build();
        let make = |name: &str| {
            gst::ElementFactory::make(name)
                .build()
                .map_err(|e| format!("{name}: {e}"))
        };
        let parse = make("h264parse")?;
        let decode = make(element)?;
        if element == "avdec_h264" {
            decode.set_property_from_str("thread-type", "slice");
        }
        let convert = make("videoconvert")?;
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "BGRx")
                    .build(),
            )
            .sync(false)
            .max_buffers(2)
            .drop(true)
            .build();
        let chain = [
            src.upcast_ref(),
            &parse,
            &decode,
            &convert,
            sink.upcast_ref(),
        ];
        pipeline.add_many(chain).map_err(|e| e.to_string())?;
        gst::Element::link_many(chain).map_err(|e| e.to_string())?;
        let base = Instant::now();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let decoded_at = Instant::now();
                    let info = sample
                        .caps()
                        .and_then(gstreamer_video_info)
                        .ok_or(gst::FlowError::NotNegotiated)?;
                    let pts = sample
                        .buffer()
                        .and_then(|b| b.pts())
                        .map(|p| Duration::from_nanos(p.nseconds()))
                        .unwrap_or_default();
                    let decode = decoded_at.saturating_duration_since(base + pts);
                    on_frame(DecodedFrame {
                        sample,
                        width: info.0,
                        height: info.1,
                        stride: info.2,
                        decode,
                        decoded_at,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        if let Err(e) = pipeline.set_state(gst::State::Playing) {
            let _ = pipeline.set_state(gst::State::Null);
            let detail = pipeline
                .bus()
                .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(err) => Some(err.error().to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| e.to_string());
            return Err(detail);
        }
        Ok(Decoder {
            pipeline,
            src,
            element,
            base,
        })
    }

    /// The decoder element in use.
    pub fn element(&self) -> &'static str {
        self.element
    }

    /// Feeds one access unit that arrived at `arrived`.
    pub fn push(&self, unit: &AccessUnit, arrived: Instant) -> Result<(), String> {
        let mut buffer = gst::Buffer::from_slice(unit.data.clone());
        if let Some(b) = buffer.get_mut() {
            let pts = arrived.saturating_duration_since(self.base);
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
            if !unit.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| format!("the decoder refused a unit: {e:?}"))
    }

    /// The first error the pipeline reported, if any.
    pub fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(format!(
                "{}: {}",
                e.src().map(|s| s.name().to_string()).unwrap_or_default(),
                e.error()
            )),
            _ => None,
        }
    }
}

/// A [`Decoder`] that rebuilds itself when its pipeline fails, so one bad moment does not
/// freeze the picture for the rest of the session.
pub struct RecoveringDecoder {
    inner: std::sync::Mutex<Decoder>,
    on_frame: FrameCallback,
    restarts: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for RecoveringDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveringDecoder")
            .field("restarts", &self.restarts())
            .finish_non_exhaustive()
    }
}

impl RecoveringDecoder {
    /// Starts like [`Decoder::start`].
    pub fn start(
        only: Option<&str>,
        on_frame: impl Fn(DecodedFrame) + Send + Sync + 'static,
    ) -> Result<Self, DecoderError> {
        let on_frame: FrameCallback = Arc::new(on_frame);
        let decoder = Decoder::start_shared(only, on_frame.clone())?;
        Ok(RecoveringDecoder {
            inner: std::sync::Mutex::new(decoder),
            on_frame,
            restarts: Default::default(),
        })
    }

    /// The decoder element in use.
    pub fn element(&self) -> &'static str {
        self.lock().element()
    }

    /// Times the pipeline was rebuilt.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Decoder> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Feeds one access unit. Returns true when the decoder had failed and was rebuilt: the
    /// caller should ask the sender for a keyframe, which a fresh decoder needs.
    pub fn push(&self, unit: &AccessUnit, arrived: Instant) -> bool {
        let mut decoder = self.lock();
        let failure = match decoder.error() {
            Some(e) => Some(e),
            None => decoder.push(unit, arrived).err(),
        };
        let Some(why) = failure else {
            return false;
        };
        tracing::warn!("the decoder failed ({why}); starting it again");
        match Decoder::start_shared(Some(decoder.element), self.on_frame.clone()) {
            Ok(fresh) => {
                *decoder = fresh;
                self.restarts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = decoder.push(unit, arrived) {
                    tracing::warn!("the restarted decoder refused a unit: {e}");
                }
            }
            Err(e) => tracing::error!("the decoder cannot start again: {e}"),
        }
        true
    }

    /// Posts an error on the pipeline's bus, as a failing element would (tests).
    #[doc(hidden)]
    pub fn inject_failure(&self) {
        let decoder = self.lock();
        let msg = gst::message::Error::builder(gst::CoreError::Failed, "injected failure")
            .src(&decoder.pipeline)
            .build();
        let _ = decoder.pipeline.post_message(msg);
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Width, height and stride of a raw video caps, without the video library.
fn gstreamer_video_info(caps: &gst::CapsRef) -> Option<(u32, u32, usize)> {
    let s = caps.structure(0)?;
    let width = u32::try_from(s.get::<i32>("width").ok()?).ok()?;
    let height = u32::try_from(s.get::<i32>("height").ok()?).ok()?;
    // BGRx rows are 4 bytes a pixel, already 4-byte aligned.
    Some((width, height, width as usize * 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Real H.264 access units from GStreamer's x264enc: `frames` pictures of 320×240.
    fn encoded(frames: u32) -> Vec<AccessUnit> {
        init().expect("gstreamer");
        let pipeline = gst::parse::launch(&format!(
            "videotestsrc num-buffers={frames} pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1 \
             ! x264enc tune=zerolatency key-int-max=10 ! video/x-h264,stream-format=byte-stream,alignment=au \
             ! appsink name=out sync=false"
        ))
        .expect("encoder pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        let sink = pipeline
            .by_name("out")
            .expect("appsink")
            .downcast::<gst_app::AppSink>()
            .expect("an appsink");
        pipeline.set_state(gst::State::Playing).expect("play");
        let mut units = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let buffer = sample.buffer().expect("buffer");
            let map = buffer.map_readable().expect("map");
            units.push(AccessUnit {
                data: map.as_slice().to_vec(),
                rtp_timestamp: units.len() as u32 * 3000,
                keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            });
        }
        let _ = pipeline.set_state(gst::State::Null);
        units
    }

    fn wait_for(count: &Mutex<Vec<(u32, u32, usize)>>, n: usize) -> Vec<(u32, u32, usize)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = count.lock().expect("lock").clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn decodes_real_h264_to_bgrx_pictures_and_recovers_from_a_failure() {
        let units = encoded(30);
        assert_eq!(units.len(), 30);
        let seen: Arc<Mutex<Vec<(u32, u32, usize)>>> = Arc::default();
        let sink = seen.clone();
        let decoder = RecoveringDecoder::start(None, move |f| {
            let bytes = f.with_pixels(|p| p.len()).unwrap_or(0);
            sink.lock().expect("lock").push((f.width, f.height, bytes));
        })
        .expect("a decoder works here");
        assert!(DECODERS.iter().any(|(e, _)| *e == decoder.element()));
        for u in &units[..20] {
            assert!(!decoder.push(u, Instant::now()), "no failure yet");
        }
        let got = wait_for(&seen, 20);
        assert_eq!(got.len(), 20, "every unit decoded once");
        assert!(
            got.iter()
                .all(|&(w, h, b)| (w, h) == (320, 240) && b >= 320 * 240 * 4)
        );

        // A failing pipeline is rebuilt on the next push, which asks for a keyframe; from the
        // next keyframe (unit 20, key-int-max 10) it decodes again.
        decoder.inject_failure();
        assert!(
            decoder.push(&units[19], Instant::now()),
            "the failure is noticed"
        );
        assert_eq!(decoder.restarts(), 1);
        for u in &units[20..] {
            decoder.push(u, Instant::now());
        }
        let got = wait_for(&seen, 30);
        assert!(got.len() >= 30, "{} pictures after the restart", got.len());
    }

    #[test]
    fn a_decoder_that_is_not_there_is_named_in_the_error() {
        let e = Decoder::start(Some("nvh264dec"), |_| {}).expect_err("no NVIDIA decoder here");
        assert!(e.to_string().contains("nvh264dec"), "{e}");
        let e = Decoder::start(Some("made-up-dec"), |_| {}).expect_err("not a decoder");
        assert!(e.to_string().contains("not a decoder we know"), "{e}");
    }
}
