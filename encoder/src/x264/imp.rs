//! The `stratusx264enc` implementation: a `GstVideoEncoder` subclass over [`super::ffi`].

use std::sync::{LazyLock, Mutex, MutexGuard};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use gstreamer_video::subclass::prelude::*;

use super::roi_map::{self, Region};
use super::{BACKGROUND_DELTA_QP, ELEMENT_NAME, ffi};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        ELEMENT_NAME,
        gst::DebugColorFlags::empty(),
        Some("Stratus libx264 H.264 encoder with region-of-interest meta"),
    )
});

const DEFAULT_BITRATE: u32 = 2000;
const MIN_BITRATE: u32 = 1;
const MAX_BITRATE: u32 = 1_000_000;
/// 0 means [`KEY_INT_SECONDS`] of frames at the negotiated frame rate.
const DEFAULT_KEY_INT_MAX: u32 = 0;
const KEY_INT_SECONDS: u32 = 4;
/// libx264's "infinite" key interval (`X264_KEYINT_MAX_INFINITE`).
const MAX_KEY_INT_MAX: u32 = 1 << 30;
const DEFAULT_INTRA_REFRESH: bool = false;
const DEFAULT_ROI: bool = true;
/// 0 means one slice thread per available core, at most [`MAX_AUTO_THREADS`].
const DEFAULT_THREADS: u32 = 0;
/// Most slices `threads = 0` makes: each slice thread makes a slice, and Chromium's H.264
/// decoding copes badly with more than four (Selkies-GStreamer caps its x264 at four for the
/// same reason); a node with many cores runs several sessions anyway.
const MAX_AUTO_THREADS: u32 = 4;

/// Slice threads for `threads = 0` on a machine with `cores` cores: one per core, at most
/// [`MAX_AUTO_THREADS`].
fn auto_threads(cores: usize) -> u32 {
    (cores.clamp(1, MAX_AUTO_THREADS as usize)) as u32
}
/// libx264's `X264_THREAD_MAX`.
const MAX_THREADS: u32 = 128;
/// Frame rate assumed for rate control when the caps say "variable" (0/1).
const FALLBACK_FPS: (u32, u32) = (30, 1);

/// Property values; the bitrate may change at any time, the rest take effect at the next caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    bitrate: u32,
    key_int_max: u32,
    intra_refresh: bool,
    roi: bool,
    threads: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bitrate: DEFAULT_BITRATE,
            key_int_max: DEFAULT_KEY_INT_MAX,
            intra_refresh: DEFAULT_INTRA_REFRESH,
            roi: DEFAULT_ROI,
            threads: DEFAULT_THREADS,
        }
    }
}

/// Everything that exists between caps and stop.
#[derive(Debug)]
struct State {
    encoder: ffi::Encoder,
    info: gst_video::VideoInfo,
    /// Per-macroblock quantiser offsets, reused from frame to frame: libx264 copies them inside
    /// `x264_encoder_encode` (see the `ffi` module docs), so one array serves every frame.
    offsets: Vec<f32>,
    /// The regions of the current frame, reused likewise.
    regions: Vec<Region>,
    /// A bitrate libx264 refused, so it is not retried on every frame.
    refused_bitrate: Option<u32>,
}

/// The element's private implementation.
#[derive(Debug, Default)]
pub struct StratusX264Enc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
}

/// Locks `m`, going on with the data if a previous holder panicked (nothing here leaves it
/// half-updated).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl StratusX264Enc {
    /// Applies a changed `bitrate` property to the running encoder.
    fn apply_bitrate(&self, state: &mut State, kbps: u32) {
        if state.encoder.config().bitrate_kbps == kbps || state.refused_bitrate == Some(kbps) {
            return;
        }
        match state.encoder.set_bitrate(kbps) {
            Ok(()) => {
                state.refused_bitrate = None;
                gst::debug!(CAT, imp = self, "bitrate now {kbps} kbit/s");
            }
            Err(err) => {
                state.refused_bitrate = Some(kbps);
                gst::element_imp_warning!(
                    self,
                    gst::LibraryError::Settings,
                    ["cannot change the bitrate to {} kbit/s: {}", kbps, err]
                );
            }
        }
    }

    /// Hands an access unit to the base class on the frame it was made from.
    fn finish_encoded(&self, out: ffi::Encoded) -> Result<gst::FlowSuccess, gst::FlowError> {
        let obj = self.obj();
        // The pts is the frame's system_frame_number (a guint32 that GStreamer compares as int).
        let Some(mut frame) = obj.frame(out.pts as u32 as i32) else {
            gst::warning!(
                CAT,
                imp = self,
                "no pending frame {} for an output",
                out.pts
            );
            return Ok(gst::FlowSuccess::Ok);
        };
        gst::trace!(
            CAT,
            imp = self,
            "frame {}: {} bytes, idr={}",
            out.pts,
            out.data.len(),
            out.idr
        );
        // The base class marks every buffer that is not a sync point DELTA_UNIT. Only IDRs are
        // sync points: an intra-refresh recovery point cannot start a decoder cleanly.
        if out.idr {
            frame.set_flags(gst_video::VideoCodecFrameFlags::SYNC_POINT);
        } else {
            frame.unset_flags(gst_video::VideoCodecFrameFlags::SYNC_POINT);
        }
        frame.set_output_buffer(gst::Buffer::from_mut_slice(out.data));
        obj.finish_frame(frame)
    }

    /// Takes out every picture libx264 still holds; pushes them downstream if `push`.
    fn drain(&self, push: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let pending = match lock(&self.state).as_mut() {
            Some(state) => state.encoder.delayed_frames(),
            None => return Ok(gst::FlowSuccess::Ok),
        };
        // Bounded: each call outputs at most one of the pictures counted above.
        for _ in 0..pending {
            let out = {
                let mut guard = lock(&self.state);
                let Some(state) = guard.as_mut() else {
                    break;
                };
                if state.encoder.delayed_frames() == 0 {
                    break;
                }
                state.encoder.encode(None)
            };
            match out {
                Ok(Some(out)) if push => {
                    self.finish_encoded(out)?;
                }
                Ok(_) => {}
                Err(err) => {
                    gst::element_imp_error!(
                        self,
                        gst::LibraryError::Encode,
                        ["cannot drain libx264: {}", err]
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Opens libx264 for the negotiated input.
    fn open_encoder(
        &self,
        info: &gst_video::VideoInfo,
    ) -> Result<ffi::Encoder, gst::LoggableError> {
        let (width, height) = (info.width(), info.height());
        if info.format() != gst_video::VideoFormat::I420 {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ["format {:?} is not I420", info.format()]
            );
            return Err(gst::loggable_error!(CAT, "format {:?}", info.format()));
        }
        if width == 0 || height == 0 || width % 2 != 0 || height % 2 != 0 {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                [
                    "size {}x{} refused: I420 needs a non-zero, even width and height",
                    width,
                    height
                ]
            );
            return Err(gst::loggable_error!(CAT, "odd size {width}x{height}"));
        }
        let fps = info.fps();
        let (fps_num, fps_den) = match (u32::try_from(fps.numer()), u32::try_from(fps.denom())) {
            (Ok(n), Ok(d)) if n > 0 && d > 0 => (n, d),
            _ => FALLBACK_FPS,
        };
        let settings = *lock(&self.settings);
        let key_int_max = match settings.key_int_max {
            0 => fps_num.div_ceil(fps_den).saturating_mul(KEY_INT_SECONDS),
            n => n,
        };
        let threads = match settings.threads {
            0 => auto_threads(std::thread::available_parallelism().map_or(1, |n| n.get())),
            n => n,
        };
        let config = ffi::Config {
            width,
            height,
            fps_num,
            fps_den,
            bitrate_kbps: settings.bitrate,
            key_int_max,
            intra_refresh: settings.intra_refresh,
            threads,
        };
        let encoder = ffi::Encoder::open(config).map_err(|err| {
            gst::element_imp_error!(self, gst::LibraryError::Init, ["{}", err]);
            gst::loggable_error!(CAT, "{err}")
        })?;
        gst::info!(
            CAT,
            imp = self,
            "libx264 build {} open: {config:?}",
            x264_sys::X264_BUILD
        );
        Ok(encoder)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for StratusX264Enc {
    const NAME: &'static str = "StratusX264Enc";
    type Type = super::StratusX264Enc;
    type ParentType = gst_video::VideoEncoder;
}

impl ObjectImpl for StratusX264Enc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("bitrate")
                    .nick("Bitrate")
                    .blurb("Target bitrate in kbit/s (CBR-like, VBV of four frames); may change while playing")
                    .minimum(MIN_BITRATE)
                    .maximum(MAX_BITRATE)
                    .default_value(DEFAULT_BITRATE)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("key-int-max")
                    .nick("Maximum key interval")
                    .blurb("Longest distance between IDRs (or intra refresh cycles) in frames; 0 = 4 seconds of frames")
                    .maximum(MAX_KEY_INT_MAX)
                    .default_value(DEFAULT_KEY_INT_MAX)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("intra-refresh")
                    .nick("Intra refresh")
                    .blurb("Refresh the picture with a moving column of intra blocks instead of IDR pictures")
                    .default_value(DEFAULT_INTRA_REFRESH)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("roi")
                    .nick("Regions of interest")
                    .blurb("Honour GstVideoRegionOfInterestMeta with libx264 quantiser offsets")
                    .default_value(DEFAULT_ROI)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("threads")
                    .nick("Threads")
                    .blurb("Slice threads; 0 = one per core, at most 4")
                    .maximum(MAX_THREADS)
                    .default_value(DEFAULT_THREADS)
                    .mutable_ready()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        // GObject has checked the value's type and range against the pspec.
        match pspec.name() {
            "bitrate" => {
                let v = value.get().unwrap_or(DEFAULT_BITRATE);
                gst::debug!(
                    CAT,
                    imp = self,
                    "bitrate {} -> {v} kbit/s",
                    settings.bitrate
                );
                settings.bitrate = v;
            }
            "key-int-max" => settings.key_int_max = value.get().unwrap_or(DEFAULT_KEY_INT_MAX),
            "intra-refresh" => {
                settings.intra_refresh = value.get().unwrap_or(DEFAULT_INTRA_REFRESH)
            }
            "roi" => settings.roi = value.get().unwrap_or(DEFAULT_ROI),
            "threads" => settings.threads = value.get().unwrap_or(DEFAULT_THREADS),
            other => gst::warning!(CAT, imp = self, "no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "bitrate" => settings.bitrate.to_value(),
            "key-int-max" => settings.key_int_max.to_value(),
            "intra-refresh" => settings.intra_refresh.to_value(),
            "roi" => settings.roi.to_value(),
            "threads" => settings.threads.to_value(),
            // GObject only asks for properties listed above.
            _ => pspec.default_value().clone(),
        }
    }
}

impl GstObjectImpl for StratusX264Enc {}

impl ElementImpl for StratusX264Enc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Stratus x264 H.264 encoder",
                "Codec/Encoder/Video",
                "Low-latency constrained-baseline H.264 with libx264, honouring region-of-interest meta",
                "Stratus developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let sink_caps = gst_video::VideoCapsBuilder::new()
                .format(gst_video::VideoFormat::I420)
                .build();
            let src_caps = gst::Caps::builder("video/x-h264")
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .field("profile", "constrained-baseline")
                .build();
            [
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &sink_caps,
                ),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &src_caps,
                ),
            ]
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .expect("static pad templates are valid")
        });
        TEMPLATES.as_ref()
    }
}

impl VideoEncoderImpl for StratusX264Enc {
    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn set_format(
        &self,
        input: &gst_video::VideoCodecState<'static, gst_video::video_codec_state::Readable>,
    ) -> Result<(), gst::LoggableError> {
        // Pictures of the previous format go out before the encoder is replaced.
        if self.drain(true).is_err() {
            gst::warning!(CAT, imp = self, "could not drain before new caps");
        }
        let info = input.info().clone();
        let mut encoder = self.open_encoder(&info)?;
        let (fps_num, fps_den) = (encoder.config().fps_num, encoder.config().fps_den);
        let delayed = encoder.max_delayed_frames() as u64;
        *lock(&self.state) = Some(State {
            encoder,
            info,
            offsets: Vec::new(),
            regions: Vec::new(),
            refused_bitrate: None,
        });

        let obj = self.obj();
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "byte-stream")
            .field("alignment", "au")
            .field("profile", "constrained-baseline")
            .build();
        let output = obj
            .set_output_state(caps, Some(input))
            .map_err(|_| gst::loggable_error!(CAT, "cannot set the output state"))?;
        obj.negotiate(output)
            .map_err(|_| gst::loggable_error!(CAT, "downstream refused H.264 caps"))?;
        // Pictures libx264 may hold back, in time (0 for this configuration).
        let latency = gst::ClockTime::SECOND
            .mul_div_floor(delayed * u64::from(fps_den), u64::from(fps_num))
            .unwrap_or(gst::ClockTime::ZERO);
        obj.set_latency(latency, latency);
        Ok(())
    }

    fn handle_frame(
        &self,
        frame: gst_video::VideoCodecFrame,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let settings = *lock(&self.settings);
        let force_idr = frame
            .flags()
            .contains(gst_video::VideoCodecFrameFlags::FORCE_KEYFRAME);
        let number = frame.system_frame_number();
        let encoded = {
            let mut guard = lock(&self.state);
            let Some(state) = guard.as_mut() else {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Negotiation,
                    ["a frame arrived before caps"]
                );
                return Err(gst::FlowError::NotNegotiated);
            };
            self.apply_bitrate(state, settings.bitrate);
            let Some(input) = frame.input_buffer() else {
                gst::element_imp_error!(self, gst::CoreError::Failed, ["frame without a buffer"]);
                return Err(gst::FlowError::Error);
            };
            let State {
                encoder,
                info,
                offsets,
                regions,
                ..
            } = state;
            let vframe =
                gst_video::VideoFrameRef::from_buffer_ref_readable(input, info).map_err(|_| {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["cannot map a {}x{} I420 frame", info.width(), info.height()]
                    );
                    gst::FlowError::Error
                })?;
            let plane = |i: u32| {
                let data = vframe.plane_data(i).map_err(|e| {
                    gst::element_imp_error!(self, gst::StreamError::Format, ["plane {}: {}", i, e]);
                    gst::FlowError::Error
                })?;
                let stride = usize::try_from(vframe.plane_stride()[i as usize]).map_err(|_| {
                    gst::element_imp_error!(self, gst::StreamError::Format, ["negative stride"]);
                    gst::FlowError::Error
                })?;
                Ok::<_, gst::FlowError>((data, stride))
            };
            let ((y, ys), (u, us), (v, vs)) = (plane(0)?, plane(1)?, plane(2)?);

            let mut with_roi = false;
            if settings.roi {
                regions.clear();
                regions.extend(
                    input
                        .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
                        .map(|meta| Region::from_meta(&meta)),
                );
                if !regions.is_empty() {
                    let inside = roi_map::fill_quant_offsets(
                        offsets,
                        info.width(),
                        info.height(),
                        regions,
                        BACKGROUND_DELTA_QP,
                    );
                    with_roi = inside > 0;
                    gst::trace!(
                        CAT,
                        imp = self,
                        "frame {number}: {} regions, {inside} macroblocks",
                        regions.len()
                    );
                }
            }
            let picture = ffi::Picture {
                planes: [y, u, v],
                strides: [ys, us, vs],
                pts: i64::from(number),
                force_idr,
                quant_offsets: with_roi.then_some(offsets.as_slice()),
            };
            if force_idr {
                gst::debug!(CAT, imp = self, "frame {number}: IDR requested");
            }
            encoder.encode(Some(&picture))
        };
        // The base class keeps the frame until finish_frame; ours is looked up by number.
        drop(frame);
        match encoded {
            Ok(Some(out)) => self.finish_encoded(out),
            Ok(None) => Ok(gst::FlowSuccess::Ok),
            Err(err) => {
                gst::element_imp_error!(self, gst::LibraryError::Encode, ["{}", err]);
                Err(gst::FlowError::Error)
            }
        }
    }

    fn finish(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.drain(true)
    }

    fn flush(&self) -> bool {
        // What libx264 may still hold belongs before the flush, and once drained (a null picture)
        // it takes no more input; a fresh encoder also makes the next picture an IDR, which a
        // decoder needs after a discontinuity.
        let Some(info) = lock(&self.state).as_ref().map(|state| state.info.clone()) else {
            return true;
        };
        let Ok(encoder) = self.open_encoder(&info) else {
            return false;
        };
        if let Some(state) = lock(&self.state).as_mut() {
            state.encoder = encoder;
            state.refused_bitrate = None;
        }
        gst::debug!(CAT, imp = self, "flushed: encoder reopened");
        true
    }

    fn propose_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        // Strided and offset planes are fine: frames are mapped with their video meta.
        query.add_allocation_meta::<gst_video::VideoMeta>(None);
        // The base class proposes a buffer pool only when the query carries usable caps; an
        // upstream that asks without them (appsrc does, before its first buffer) simply
        // allocates its own buffers, so that is not an error worth a log line per stream.
        if let Err(e) = self.parent_propose_allocation(query) {
            gst::debug!(CAT, imp = self, "no buffer pool proposed: {e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_threads_are_one_per_core_up_to_four() {
        assert_eq!(auto_threads(0), 1);
        assert_eq!(auto_threads(2), 2);
        assert_eq!(auto_threads(4), 4);
        assert_eq!(auto_threads(64), 4);
    }
}
