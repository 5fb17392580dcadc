//! Frame capture for Stratus: where the pixels a node streams come from.
//!
//! A [`Source`] yields [`Frame`]s, each stamped with an id and the CLOCK_MONOTONIC time it was
//! made ([`clock`]). Sources:
//!
//! - [`offscreen::DemoSource`]: the built-in demo title, an offscreen Vulkan renderer that
//!   needs no window (Mesa's lavapipe runs it on any CPU). It draws the latency code and a
//!   frame-id code so any receiver can tell which frame it shows and when it was made.
//! - [`layer::RingSource`]: any Vulkan game, captured by our Vulkan layer (the cdylib in
//!   `capture/layer`), which converts each presented frame on the GPU and hands it over through
//!   a shared-memory ring ([`ring`]).
//! - [`synthetic::TexturedScene`]: a textured, noisy, scrolling sequence computed on the CPU,
//!   for encoder tests and benchmarks that need game-like content ([`synthetic::test_pattern`]
//!   is the known still image the layer's test title presents).
//!
//! Pixels are converted RGBA → I420 on the GPU ([`convert`]) before they are read back, so a
//! frame crosses to the CPU as 1.5 bytes a pixel — except on a CPU Vulkan device (lavapipe),
//! where the RGBA is read back and converted with SIMD ([`convert::simd`]), several times
//! faster there; [`path`] chooses (`gpu`, `cpu` or `auto`). [`vk`] is the Vulkan context they
//! run on, with the buffer, pipeline, barrier and copy helpers they share. [`display`] is a
//! session's X display ([`display::Xvfb`]), where a sandboxed title runs.
//!
//! The layer's test title (an X11 window and a swapchain, `stratus-vk-testapp`) is test tooling
//! and lives in its own package, `capture-testapp`, not here.
//!
//! ```no_run
//! use capture::{offscreen::DemoSource, Source};
//! let mut source = DemoSource::new(1280, 720, 60)?;
//! let frame = source.next_frame()?; // blocks until the frame is due
//! assert_eq!(frame.plane(0).map(<[u8]>::len), Some(1280 * 720));
//! # Ok::<(), capture::CaptureError>(())
//! ```
//!
//! Boundary: this crate never touches the network.
#![deny(missing_docs)]

pub mod clock;
pub mod convert;
pub mod display;
mod frame;
pub mod layer;
pub mod offscreen;
pub mod path;
pub mod ring;
pub mod synthetic;
pub mod vk;

pub use frame::{Frame, PixelFormat, Plane};

/// What can go wrong while capturing or rendering.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// `libvulkan.so.1` could not be loaded.
    #[error(
        "the Vulkan loader could not be loaded ({0}); install it with `apt-get install libvulkan1`"
    )]
    LoaderMissing(String),
    /// The loader found no driver, or no device with a compute queue.
    #[error(
        "no Vulkan device with a compute queue was found; install Mesa's CPU driver lavapipe \
         (`apt-get install mesa-vulkan-drivers`) or your GPU's Vulkan driver"
    )]
    NoDevice,
    /// A Vulkan call failed.
    #[error("vulkan call {call} failed: {result}")]
    Vulkan {
        /// The Vulkan entry point that failed.
        call: &'static str,
        /// What it returned.
        result: ash::vk::Result,
    },
    /// The device has no memory type suitable for a buffer or image we need.
    #[error("the Vulkan device has no suitable memory type for the {0}")]
    NoMemoryType(&'static str),
    /// A compiled shader could not be loaded (a build problem).
    #[error("invalid SPIR-V shader: {0}")]
    Shader(String),
    /// The frame size cannot be captured or converted.
    #[error("invalid frame size {width}x{height}: {reason}")]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The CPU conversion refused a frame (sizes that do not fit, a format it does not read).
    #[error("cpu conversion of a {width}x{height} frame: {reason}")]
    CpuConvert {
        /// Frame width.
        width: u32,
        /// Frame height.
        height: u32,
        /// What did not fit.
        reason: String,
    },
    /// The conversion could not be submitted after the copy was: the present must still wait
    /// for `semaphore`, which the copy signals.
    #[error("vkQueueSubmit of the conversion failed: {result}")]
    ConvertSubmit {
        /// The copy's semaphore.
        semaphore: ash::vk::Semaphore,
        /// What the submit returned.
        result: ash::vk::Result,
    },
    /// The capture layer or its socket could not be set up.
    #[error("capture layer: {0}")]
    Layer(String),
    /// The frame ring failed.
    #[error(transparent)]
    Ring(#[from] ring::RingError),
    /// No frame arrived in time from a source that waits for a producer.
    #[error("no frame from the title within {0:?}")]
    NoFrame(std::time::Duration),
    /// The frame rate is zero or absurd.
    #[error("invalid frame rate {0}: must be between 1 and 240")]
    InvalidFrameRate(u32),
}

/// Anything that yields frames: the demo title, the capture-layer ring.
pub trait Source: Send {
    /// Blocks until the next frame is available and returns it.
    fn next_frame(&mut self) -> Result<Frame, CaptureError>;

    /// Frame size in pixels.
    fn size(&self) -> (u32, u32);

    /// A one-line human description for logs.
    fn describe(&self) -> String;
}
