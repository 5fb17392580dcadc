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

use crate::layout::{self, Layout};
use crate::limits::{check_frame, unsupported_size, validate};
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
    width: u32,
    height: u32,
}

/// The input size the source caps currently say, and how frames of that size reach appsrc.
#[derive(Debug, Clone, Copy)]
struct Input {
    width: u32,
    height: u32,
    /// GStreamer's layout for these caps when it differs from our tightly packed planes, so
    /// frames are repacked into it; `None` when the layouts agree and frames go without a copy
    /// (see [`crate::layout`]).
    repack: Option<Layout>,
}

impl Input {
    /// The caps for `width`×`height` at `fps` and the input they make.
    fn new(width: u32, height: u32, fps: u32) -> Result<(Self, gst::Caps), String> {
        let caps = raw_caps(width, height, fps);
        let info = gst_video::VideoInfo::from_caps(&caps)
            .map_err(|e| format!("no video info for {caps}: {e}"))?;
        let repack = layout::repack_target(&info);
        Ok((
            Self {
                width,
                height,
                repack,
            },
            caps,
        ))
    }
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
    input: Mutex<Input>,
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

        let (input, caps) = Input::new(config.width, config.height, config.fps).map_err(|e| {
            pipeline_error(
                profile.element,
                format!(
                    "the video encoder cannot take {}x{} pictures",
                    config.width, config.height
                ),
                &e,
            )
        })?;
        let appsrc = gst_app::AppSrc::builder()
            .caps(&caps)
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
            .map_err(|e| {
                pipeline_error(
                    profile.element,
                    "the video encoder could not be created".into(),
                    &e,
                )
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
        let assemble = |e: glib::BoolError| {
            pipeline_error(
                profile.element,
                "the video encoder could not be set up".into(),
                &e,
            )
        };
        pipeline.add_many(elements).map_err(assemble)?;
        gst::Element::link_many(elements).map_err(assemble)?;
        if let Some(takes) = unsupported_size(profile, &element, config.width, config.height, &caps)
        {
            return Err(EncoderError::InvalidConfig(format!(
                "{} takes {takes}, not {}x{}",
                profile.element, config.width, config.height
            )));
        }

        let this = Self {
            pipeline,
            appsrc,
            appsink,
            element,
            profile,
            base_ns: AtomicU64::new(u64::MAX),
            bitrate_kbps: AtomicU32::new(0),
            pending: Mutex::new(VecDeque::new()),
            input: Mutex::new(input),
            config,
        };
        this.set_bitrate(this.config.bitrate_kbps);
        this.pipeline.set_state(gst::State::Playing).map_err(|e| {
            this.bus_error("the video encoder could not start")
                .unwrap_or_else(|| {
                    pipeline_error(
                        profile.element,
                        "the video encoder could not start".into(),
                        &e,
                    )
                })
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
    ///
    /// Frames whose width is a multiple of 8 go to the encoder without a copy; other widths are
    /// repacked into the strides GStreamer assumes (see the `layout` module), which costs
    /// microseconds.
    ///
    /// Errors are sentences a player can read; GStreamer's own words are logged.
    pub fn push(&self, frame: &Frame, rois: &[Roi]) -> Result<(), EncoderError> {
        let (w, h) = (frame.width, frame.height);
        let expected_len = PixelFormat::I420.frame_len(w, h);
        check_frame(frame, expected_len)?;
        let repack = {
            let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
            if (input.width, input.height) != (w, h) {
                let (next, caps) = Input::new(w, h, self.config.fps).map_err(|e| {
                    pipeline_error(
                        self.profile.element,
                        format!("the video encoder cannot take {w}x{h} pictures"),
                        &e,
                    )
                })?;
                // Refused before the caps change, so the stream goes on at the previous size.
                if let Some(takes) = unsupported_size(self.profile, &self.element, w, h, &caps) {
                    tracing::warn!(
                        element = self.profile.element,
                        frame_id = frame.id,
                        "encoder cannot take {w}x{h} pictures; it takes {takes}"
                    );
                    return Err(EncoderError::FrameMismatch {
                        frame_id: frame.id,
                        got: format!("{w}x{h} pixels"),
                        expected: takes,
                    });
                }
                tracing::info!(
                    from = ?(input.width, input.height),
                    to = ?(w, h),
                    repack = next.repack.is_some(),
                    "encoder input size changes"
                );
                self.appsrc.set_caps(Some(&caps));
                *input = next;
            }
            input.repack
        };
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
        let mut buffer = match repack {
            // Our planes are GStreamer's layout for these caps: hand them over as they are.
            None => gst::Buffer::from_slice(frame.data.slice(..expected_len)),
            Some(target) => {
                let data = layout::repack(&frame.data, w, h, &target).ok_or_else(|| {
                    pipeline_error(
                        self.profile.element,
                        format!("the video encoder cannot take {w}x{h} pictures"),
                        &format!("no room for a {w}x{h} picture in {target:?}"),
                    )
                })?;
                gst::Buffer::from_mut_slice(data)
            }
        };
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
                width: w,
                height: h,
            });
        }
        self.appsrc.push_buffer(buffer).map_err(|flow| {
            self.bus_error(&format!(
                "the video encoder stopped while encoding {w}x{h} pictures"
            ))
            .unwrap_or_else(|| {
                pipeline_error(
                    self.profile.element,
                    format!("the video encoder stopped taking {w}x{h} pictures"),
                    &format!("appsrc refused a buffer: {flow:?}"),
                )
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
            let (w, h) = self.input_size();
            return match self.bus_error(&format!(
                "the video encoder stopped while encoding {w}x{h} pictures"
            )) {
                Some(e) => Err(e),
                None => Ok(None),
            };
        };
        let encoded_ns = capture::clock::monotonic_ns();
        let Some(buffer) = sample.buffer() else {
            return Ok(None);
        };
        let map = buffer.map_readable().map_err(|e| {
            pipeline_error(
                self.profile.element,
                "the video encoder produced a picture that cannot be read".into(),
                &e,
            )
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
        let source = self.match_pending(pts);
        Ok(Some(EncodedFrame {
            au,
            keyframe,
            frame_id: source.frame_id,
            captured_ns: source.captured_ns,
            encoded_ns,
            width: source.width,
            height: source.height,
        }))
    }

    /// Finds the pushed frame an output belongs to; frames before it were dropped by the encoder.
    /// An output no pushed frame is known for (the FIFO overflowed) gets id and capture time 0
    /// and the current input size.
    fn match_pending(&self, pts: Option<u64>) -> Pending {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(p) = pending.pop_front() {
            if pts.is_none_or(|pts| p.pts >= pts) {
                return p;
            }
        }
        drop(pending);
        let (width, height) = self.input_size();
        Pending {
            pts: 0,
            frame_id: 0,
            captured_ns: 0,
            width,
            height,
        }
    }

    /// The size the input caps say now.
    fn input_size(&self) -> (u32, u32) {
        let input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        (input.width, input.height)
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

    /// The first error message on the bus, if any, as `sentence` for the player; what GStreamer
    /// said (element, message, debug string) goes to the log.
    fn bus_error(&self, sentence: &str) -> Option<EncoderError> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        let gst::MessageView::Error(err) = msg.view() else {
            return None;
        };
        let details = format!(
            "{}: {}{}",
            msg.src().map(|s| s.path_string()).unwrap_or_default(),
            err.error(),
            err.debug().map(|d| format!(" ({d})")).unwrap_or_default()
        );
        Some(pipeline_error(
            self.profile.element,
            sentence.into(),
            &details,
        ))
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

/// A pipeline failure: `sentence` is what the player reads, `details` (GStreamer's own words)
/// go to the log only.
fn pipeline_error(
    element: &str,
    sentence: String,
    details: &dyn std::fmt::Display,
) -> EncoderError {
    tracing::error!(element, %details, "{sentence}");
    EncoderError::Pipeline {
        element: element.into(),
        message: sentence,
    }
}
