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
        init()?;
        let on_frame: Arc<dyn Fn(DecodedFrame) + Send + Sync> = Arc::new(on_frame);
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

    fn build(
        element: &'static str,
        on_frame: Arc<dyn Fn(DecodedFrame) + Send + Sync>,
    ) -> Result<Decoder, String> {
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
        pipeline
            .add_many([
                src.upcast_ref(),
                &parse,
                &decode,
                &convert,
                sink.upcast_ref(),
            ])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([
            src.upcast_ref(),
            &parse,
            &decode,
            &convert,
            sink.upcast_ref(),
        ])
        .map_err(|e| e.to_string())?;
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
