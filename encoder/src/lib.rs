//! H.264 encoding for Stratus through GStreamer.
//!
//! [`Encoder::open`] builds `appsrc ! <encoder> ! h264parse ! appsink` for the best H.264
//! element present ([`profiles`]), configured for interactive streaming: no B-frames, zero
//! lookahead, constrained-baseline output that every browser decodes, SPS/PPS before every IDR,
//! one access unit per output buffer.
//!
//! Regions of interest ([`roi`]) travel with each frame as `GstVideoRegionOfInterestMeta`; the
//! elements that honour it spend more bits there at the same bitrate. Among software encoders
//! that is ours, `stratusx264enc` ([`x264`]: libx264 with per-macroblock quant offsets),
//! registered in-process and preferred over stock `x264enc`.
//!
//! ```no_run
//! use encoder::{Encoder, EncoderConfig};
//! # fn demo(frame: capture::Frame) -> Result<(), encoder::EncoderError> {
//! let enc = Encoder::open(EncoderConfig::new(1280, 720, 60, 4000))?;
//! let rois = encoder::roi::RoiPolicy::new(1280, 720).regions(Some((640, 360)));
//! enc.push(&frame, &rois)?;
//! if let Some(out) = enc.pull(std::time::Duration::from_millis(100))? {
//!     println!("frame {} -> {} bytes, key={}", out.frame_id, out.au.len(), out.keyframe);
//! }
//! enc.set_bitrate(2500); // from congestion control
//! enc.force_keyframe(); // from a PLI
//! # Ok(()) }
//! ```
//!
//! [`Encoder::push`] and [`Encoder::pull`] may run on different threads; [`Encoder::set_bitrate`]
//! and [`Encoder::force_keyframe`] are cheap and callable from anywhere.
//!
//! Boundary: this crate knows nothing about WebRTC.
#![deny(missing_docs)]

mod gst_log;
mod gst_pipeline;
mod layout;
mod limits;
pub mod profiles;
pub mod roi;
pub mod x264;

pub use gst_log::install as bridge_gstreamer_log;
pub use gst_pipeline::Encoder;
pub use roi::{Roi, RoiPolicy};

use bytes::Bytes;

/// Video codecs the encoder can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// H.264, 8-bit 4:2:0, constrained-baseline compatible.
    H264,
}

/// What to encode and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Nominal frame rate.
    pub fps: u32,
    /// Initial target bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Output codec.
    pub codec: Codec,
    /// Element names to try before the profile table's order (e.g. `["x264enc"]`).
    pub prefer: Vec<String>,
    /// Whether to honour region-of-interest meta when the element supports it.
    pub roi: bool,
    /// Longest distance between keyframes, in frames (PLI forces them sooner).
    pub keyframe_interval: u32,
}

impl EncoderConfig {
    /// A configuration with the defaults for interactive streaming.
    pub fn new(width: u32, height: u32, fps: u32, bitrate_kbps: u32) -> Self {
        Self {
            width,
            height,
            fps,
            bitrate_kbps,
            codec: Codec::H264,
            prefer: Vec::new(),
            roi: false,
            keyframe_interval: fps.saturating_mul(4).max(1),
        }
    }
}

/// Which element was picked and what it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderInfo {
    /// GStreamer element name, e.g. `x264enc`.
    pub element: String,
    /// Runs on dedicated hardware.
    pub hardware: bool,
    /// Honours region-of-interest meta.
    pub roi_supported: bool,
}

/// One encoded picture: a whole H.264 access unit in Annex-B byte-stream form.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The access unit (start codes included; SPS/PPS precede every IDR).
    pub au: Bytes,
    /// True for an IDR picture.
    pub keyframe: bool,
    /// Id of the source frame.
    pub frame_id: u64,
    /// Capture time of the source frame (CLOCK_MONOTONIC ns).
    pub captured_ns: u64,
    /// When the encoder delivered it (CLOCK_MONOTONIC ns).
    pub encoded_ns: u64,
    /// Width in pixels this access unit was encoded at: that of the frame it was made from,
    /// which after a size change may differ from [`EncoderConfig::width`].
    pub width: u32,
    /// Height in pixels this access unit was encoded at (see [`EncodedFrame::width`]).
    pub height: u32,
}

/// What can go wrong while encoding.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// GStreamer itself could not start.
    #[error("cannot initialise GStreamer: {0}")]
    Init(String),
    /// No H.264 encoder element is installed.
    #[error(
        "no H.264 encoder element found (tried {tried}); install gstreamer1.0-plugins-ugly for \
         x264enc"
    )]
    NoEncoder {
        /// Names tried, comma-separated.
        tried: String,
    },
    /// An element the pipeline needs is missing.
    #[error("GStreamer element {element} is missing; install {package}")]
    MissingElement {
        /// Factory name.
        element: &'static str,
        /// Debian package that provides it.
        package: &'static str,
    },
    /// The configuration cannot be encoded.
    #[error("{0}")]
    InvalidConfig(String),
    /// A frame the encoder cannot take (wrong format, short data, an odd size or one outside
    /// what the element takes).
    /// The message is a sentence a player can read; the frame's details are logged.
    #[error("the picture is {got}, but the video stream takes {expected}")]
    FrameMismatch {
        /// Offending frame.
        frame_id: u64,
        /// What the frame is, in words ("501x500 pixels").
        got: String,
        /// What the encoder takes, in words.
        expected: String,
    },
    /// The pipeline reported an error or refused data.
    #[error("{message}")]
    Pipeline {
        /// The encoder element in use.
        element: String,
        /// What went wrong as a sentence a player can read ("the video encoder stopped while
        /// encoding 2x2 pictures"). What GStreamer said, debug string included, is logged at
        /// error level where the error is made, not carried here.
        message: String,
    },
}
