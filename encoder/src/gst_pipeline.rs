//! The GStreamer pipeline behind [`Encoder`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use capture::{Frame, PixelFormat};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::profiles::{self, BitrateUnit, EncoderProfile};
use crate::roi::Roi;
use crate::{EncodedFrame, EncoderConfig, EncoderError, EncoderInfo};

/// Frames pushed but not yet pulled before the oldest are forgotten (a stuck encoder must not
/// grow memory without bound).
const MAX_PENDING: usize = 64;
/// Bitrate bounds any caller is held to, in kbit/s.
const MIN_KBPS: u32 = 100;
const MAX_KBPS: u32 = 100_000;

/// Identity of a pushed frame, matched to its output by presentation timestamp.
#[derive(Debug, Clone, Copy)]
struct Pending {
    pts: u64,
    frame_id: u64,
    captured_ns: u64,
}

/// An open H.264 encoder. See the crate docs.
#[derive(Debug)]
pub struct Encoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    appsink: gst_app::AppSink,
    element: gst::Element,
    profile: &'static EncoderProfile,
    config: EncoderConfig,
    /// Capture time of the first frame: PTS are relative to it.
    base_ns: AtomicU64,
    bitrate_kbps: AtomicU32,
    pending: Mutex<VecDeque<Pending>>,
    /// The size the input caps currently say (frames of another size change them).
    size: Mutex<(u32, u32)>,
}

/// The raw caps for frames of `width`×`height` at `fps`.
fn raw_caps(width: u32, height: u32, fps: u32) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format(gst_video::VideoFormat::I420)
        .width(width as i32)
        .height(height as i32)
        .framerate(gst::Fraction::new(fps as i32, 1))
        .field("colorimetry", "bt601")
        .build()
}

fn make(factory: &'static str, package: &'static str) -> Result<gst::Element, EncoderError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| EncoderError::MissingElement {
            element: factory,
            package,
        })
}

impl Encoder {
    /// Builds and starts the pipeline for `config`.
    pub fn open(config: EncoderConfig) -> Result<Self, EncoderError> {
        gst::init().map_err(|e| EncoderError::Init(e.to_string()))?;
        crate::gst_log::install();
        crate::x264::register()
            .map_err(|e| EncoderError::Init(format!("cannot register stratusx264enc: {e}")))?;
        validate(&config)?;
        let profile = profiles::select(
            &config.prefer,
            |name| gst::ElementFactory::find(name).is_some(),
            profiles::PROFILES,
        )
        .ok_or_else(|| EncoderError::NoEncoder {
            tried: profiles::PROFILES
                .iter()
                .map(|p| p.element)
                .collect::<Vec<_>>()
                .join(", "),
        })?;
        if let Some(wanted) = config.prefer.first()
            && wanted != profile.element
        {
            tracing::warn!(
                wanted,
                using = profile.element,
                "preferred encoder unavailable"
            );
        }

        let appsrc = gst_app::AppSrc::builder()
            .caps(&raw_caps(config.width, config.height, config.fps))
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(false)
            .block(false)
            // One frame of queue, and the oldest goes when a newer one arrives: an encoder that
            // falls behind skips frames instead of adding a frame interval of latency per
            // queued frame.
            .max_buffers(1)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .build();
        let element = gst::ElementFactory::make(profile.element)
            .build()
            .map_err(|e| EncoderError::Pipeline {
                element: profile.element.into(),
                message: e.to_string(),
            })?;
        for (name, value) in profile.properties {
            set_from_str(&element, name, value);
        }
        if let Some(gop) = profile.gop_property {
            set_from_str(&element, gop, &config.keyframe_interval.to_string());
        }
        let enc_caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-h264")
                    .field("profile", "constrained-baseline")
                    .build(),
            )
            .build()
            .map_err(|_| EncoderError::MissingElement {
                element: "capsfilter",
                package: "gstreamer1.0-plugins-base",
            })?;
        let parse = make("h264parse", "gstreamer1.0-plugins-bad")?;
        parse.set_property("config-interval", -1i32);
        let out_caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .build();
        let appsink = gst_app::AppSink::builder()
            .caps(&out_caps)
            .sync(false)
            .max_buffers(16)
            .drop(false)
            .build();

        let pipeline = gst::Pipeline::with_name("stratus-encoder");
        let elements: [&gst::Element; 5] = [
            appsrc.upcast_ref(),
            &element,
            &enc_caps,
            &parse,
            appsink.upcast_ref(),
        ];
        let fail = |message: String| EncoderError::Pipeline {
            element: profile.element.into(),
            message,
        };
        pipeline
            .add_many(elements)
            .map_err(|e| fail(e.to_string()))?;
        gst::Element::link_many(elements).map_err(|e| fail(format!("cannot link: {e}")))?;

        let this = Self {
            pipeline,
            appsrc,
            appsink,
            element,
            profile,
            base_ns: AtomicU64::new(u64::MAX),
            bitrate_kbps: AtomicU32::new(0),
            pending: Mutex::new(VecDeque::new()),
            size: Mutex::new((config.width, config.height)),
            config,
        };
        this.set_bitrate(this.config.bitrate_kbps);
        this.pipeline.set_state(gst::State::Playing).map_err(|_| {
            this.bus_error()
                .unwrap_or_else(|| fail("cannot start the pipeline".into()))
        })?;
        tracing::info!(
            element = profile.element,
            hardware = profile.hardware,
            "encoder open"
        );
        Ok(this)
    }

    /// The element in use and what it supports.
    pub fn describe(&self) -> EncoderInfo {
        EncoderInfo {
            element: self.profile.element.to_string(),
            hardware: self.profile.hardware,
            roi_supported: self.profile.roi && self.config.roi,
        }
    }

    /// The configuration the encoder was opened with.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Queues a frame for encoding. Never blocks: if the encoder is still busy with the previous
    /// frame, a frame still waiting for it is dropped in favour of this newer one.
    ///
    /// A frame of another (even, non-zero, at most 4096) size than the previous one changes the
    /// stream's size: the encoder starts a new sequence (SPS/PPS and an IDR) at that size. That is
    /// how a title's window resize, or a step down the quality ladder, reaches the player.
    pub fn push(&self, frame: &Frame, rois: &[Roi]) -> Result<(), EncoderError> {
        let (w, h) = (frame.width, frame.height);
        let expected_len = PixelFormat::I420.frame_len(w, h);
        let size_ok =
            w > 0 && h > 0 && w.is_multiple_of(2) && h.is_multiple_of(2) && w <= 4096 && h <= 4096;
        if frame.format != PixelFormat::I420 || !size_ok || frame.data.len() < expected_len {
            return Err(EncoderError::FrameMismatch {
                frame_id: frame.id,
                got: format!(
                    "{:?} {}x{} ({} bytes)",
                    frame.format,
                    frame.width,
                    frame.height,
                    frame.data.len()
                ),
                expected: format!(
                    "I420 of an even size up to 4096x4096 ({expected_len} bytes at {w}x{h})"
                ),
            });
        }
        {
            let mut size = self.size.lock().unwrap_or_else(|p| p.into_inner());
            if *size != (w, h) {
                tracing::info!(from = ?*size, to = ?(w, h), "encoder input size changes");
                self.appsrc.set_caps(Some(&raw_caps(w, h, self.config.fps)));
                *size = (w, h);
            }
        }
        let base = match self.base_ns.compare_exchange(
            u64::MAX,
            frame.captured_ns,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => frame.captured_ns,
            Err(base) => base,
        };
        // PTS must increase; a frame stamped before the first one is clamped to it.
        let pts = frame.captured_ns.saturating_sub(base);
        let mut buffer = gst::Buffer::from_slice(frame.data.slice(..expected_len));
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            buffer.set_pts(gst::ClockTime::from_nseconds(pts));
            buffer.set_duration(gst::ClockTime::from_nseconds(
                1_000_000_000 / self.config.fps as u64,
            ));
            if self.config.roi {
                for roi in rois {
                    crate::x264::add_roi_meta(
                        buffer,
                        (roi.x, roi.y, roi.width, roi.height),
                        roi.quality as i32,
                    );
                }
            }
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                pending.pop_front();
            }
            pending.push_back(Pending {
                pts,
                frame_id: frame.id,
                captured_ns: frame.captured_ns,
            });
        }
        self.appsrc.push_buffer(buffer).map_err(|flow| {
            self.bus_error().unwrap_or_else(|| EncoderError::Pipeline {
                element: self.profile.element.into(),
                message: format!("the pipeline refused a frame: {flow:?}"),
            })
        })?;
        Ok(())
    }

    /// Waits up to `timeout` for the next encoded frame. `Ok(None)` means none was ready.
    pub fn pull(&self, timeout: Duration) -> Result<Option<EncodedFrame>, EncoderError> {
        let Some(sample) = self
            .appsink
            .try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        else {
            return match self.bus_error() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        };
        let encoded_ns = capture::clock::monotonic_ns();
        let Some(buffer) = sample.buffer() else {
            return Ok(None);
        };
        let map = buffer.map_readable().map_err(|e| EncoderError::Pipeline {
            element: self.profile.element.into(),
            message: format!("cannot read an output buffer: {e}"),
        })?;
        let au = Bytes::copy_from_slice(map.as_slice());
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        // Encoders shift timestamps (x264enc by 1000 h, to leave room for DTS < PTS) and say
        // so in the segment; the running time is what we pushed.
        let pts = buffer
            .pts()
            .and_then(|pts| {
                sample
                    .segment()
                    .and_then(|seg| seg.downcast_ref::<gst::ClockTime>())
                    .and_then(|seg| seg.to_running_time(pts))
            })
            .map(|t| t.nseconds());
        let (frame_id, captured_ns) = self.match_pending(pts);
        Ok(Some(EncodedFrame {
            au,
            keyframe,
            frame_id,
            captured_ns,
            encoded_ns,
        }))
    }

    /// Finds the pushed frame an output belongs to; frames before it were dropped by the encoder.
    fn match_pending(&self, pts: Option<u64>) -> (u64, u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = pending.pop_front() {
            if pts.is_none_or(|pts| p.pts >= pts) {
                return (p.frame_id, p.captured_ns);
            }
        }
        (0, 0)
    }

    /// Changes the target bitrate (kbit/s, clamped to 100–100000). Cheap; no keyframe.
    pub fn set_bitrate(&self, kbps: u32) {
        let kbps = kbps.clamp(MIN_KBPS, MAX_KBPS);
        if self.bitrate_kbps.swap(kbps, Ordering::Relaxed) == kbps {
            return;
        }
        let value = match self.profile.bitrate_unit {
            BitrateUnit::Kbps => kbps,
            BitrateUnit::Bps => kbps.saturating_mul(1000),
        };
        self.element
            .set_property(self.profile.bitrate_property, value);
    }

    /// The bitrate last set, in kbit/s.
    pub fn bitrate(&self) -> u32 {
        self.bitrate_kbps.load(Ordering::Relaxed)
    }

    /// Makes the next encoded frame an IDR with SPS/PPS.
    pub fn force_keyframe(&self) {
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        if let Some(pad) = self.element.static_pad("src")
            && !pad.send_event(event)
        {
            tracing::debug!("encoder ignored a force-key-unit event");
        }
    }

    /// The first error message on the bus, if any.
    fn bus_error(&self) -> Option<EncoderError> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        let gst::MessageView::Error(err) = msg.view() else {
            return None;
        };
        Some(EncoderError::Pipeline {
            element: self.profile.element.into(),
            message: format!(
                "{}{}",
                err.error(),
                err.debug().map(|d| format!(" ({d})")).unwrap_or_default()
            ),
        })
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Sets a property from its string form if the element has it and the value parses; logs and
/// skips otherwise. (glib's own `set_property_from_str` panics on a bad value, and hardware
/// plugins differ between versions.)
fn set_from_str(element: &gst::Element, name: &str, value: &str) {
    let Some(pspec) = element.find_property(name) else {
        tracing::debug!(element = %element.name(), name, "encoder has no such property; skipped");
        return;
    };
    match glib::Value::deserialize_with_pspec(value, &pspec) {
        Ok(v) => element.set_property_from_value(name, &v),
        Err(_) => {
            tracing::warn!(element = %element.name(), name, value, "encoder refused a property value; skipped")
        }
    }
}

fn validate(config: &EncoderConfig) -> Result<(), EncoderError> {
    let bad = |m: String| Err(EncoderError::InvalidConfig(m));
    if config.width == 0 || config.height == 0 {
        return bad(format!(
            "size {}x{} must be non-zero",
            config.width, config.height
        ));
    }
    if !config.width.is_multiple_of(2) || !config.height.is_multiple_of(2) {
        return bad(format!(
            "size {}x{} must be even for 4:2:0",
            config.width, config.height
        ));
    }
    if config.width > 4096 || config.height > 4096 {
        return bad(format!(
            "size {}x{} exceeds 4096x4096",
            config.width, config.height
        ));
    }
    if config.fps == 0 || config.fps > 240 {
        return bad(format!("frame rate {} must be 1 to 240", config.fps));
    }
    Ok(())
}
