//! The built-in demo title: an offscreen Vulkan renderer that needs no window or X server.
//!
//! One compute pass draws the scene (see `shaders/scene.wgsl`): a moving colour field, a
//! bouncing checkered square, the latency code (row 0), the frame-id code (row 1), a swatch whose
//! colour is [`swatch_rgb`]`(frame_id)`, an input indicator and a crosshair at the pointer. On a
//! GPU a second pass converts it to I420 ([`crate::convert`]); on a CPU device (lavapipe) the
//! scene is drawn into host memory and converted by the CPU's SIMD converter
//! ([`crate::convert::simd`]), which is several times faster there. [`crate::path`] chooses.
//!
//! [`DemoRenderer`] renders on demand; [`DemoSource`] paces it at a frame rate and is the
//! [`Source`] a node streams from. [`DemoControls`] is the channel input reaches the title by.

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ash::vk;

use crate::convert::{I420Converter, SourceFormat, check_size, simd};
use crate::path::{CapturePath, ResolvedPath};
use crate::vk::{
    Buffer, ComputePipeline, Submitter, VkContext, barrier_to_host, buffer_barrier, push_bytes,
};
use crate::{CaptureError, Frame, PixelFormat, Source, clock};

static SCENE_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/scene.spv"));

/// Size of the scene shader's push-constant block in bytes (12 words).
const PUSH_SIZE: u32 = 48;
/// The scene shader's workgroup edge.
const GROUP: u32 = 8;
/// Horizontally adjacent pixels each scene-shader invocation draws.
const PIXELS_PER_INVOCATION: u32 = 16;

/// Geometry of the known-colour swatch: a square of this edge, this far from the bottom-right.
pub const SWATCH_SIZE: u32 = 192;
/// Distance of the swatch from the right and bottom edges.
pub const SWATCH_MARGIN: u32 = 32;
/// Edge of the input indicator square at the bottom-left corner.
pub const INDICATOR_SIZE: u32 = 128;

/// The swatch colours, indexed by `frame_id % 8`.
const PALETTE: [[u8; 3]; 8] = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
    [0, 255, 255],
    [255, 0, 255],
    [255, 255, 255],
    [0, 0, 0],
];

/// The RGB colour of the swatch in the frame with this id.
pub fn swatch_rgb(frame_id: u64) -> [u8; 3] {
    PALETTE[(frame_id % 8) as usize]
}

/// The swatch rectangle `(x, y, width, height)` in a `width`×`height` frame, if it fits.
pub fn swatch_rect(width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let edge = SWATCH_SIZE + SWATCH_MARGIN;
    (width > edge && height > edge).then(|| (width - edge, height - edge, SWATCH_SIZE, SWATCH_SIZE))
}

/// The RGB colour of the input indicator for a last key code and a button mask, as the scene
/// shader draws it.
pub fn indicator_rgb(key: u32, buttons: u32) -> [u8; 3] {
    [
        (key.wrapping_mul(37) % 256) as u8,
        (key.wrapping_mul(91).wrapping_add(64) % 256) as u8,
        (buttons.wrapping_mul(85).wrapping_add(32) % 256) as u8,
    ]
}

/// Input state the demo title draws: pointer, held buttons and the last key pressed.
///
/// Shared between the node's input injection and the renderer; every field is a relaxed atomic
/// because a reader that sees an update one frame late is harmless.
#[derive(Debug, Default)]
pub struct DemoControls {
    pointer_x: AtomicI32,
    pointer_y: AtomicI32,
    buttons: AtomicU32,
    key: AtomicU32,
}

impl DemoControls {
    /// Moves the crosshair to (x, y) in frame pixels.
    pub fn set_pointer(&self, x: i32, y: i32) {
        self.pointer_x.store(x, Ordering::Relaxed);
        self.pointer_y.store(y, Ordering::Relaxed);
    }

    /// Sets the mask of held buttons (bit 0 = primary).
    pub fn set_buttons(&self, mask: u32) {
        self.buttons.store(mask, Ordering::Relaxed);
    }

    /// Records the last key pressed.
    pub fn set_key(&self, code: u32) {
        self.key.store(code, Ordering::Relaxed);
    }

    /// (pointer x, pointer y, buttons, key) as the next frame will draw them.
    pub fn snapshot(&self) -> (i32, i32, u32, u32) {
        (
            self.pointer_x.load(Ordering::Relaxed),
            self.pointer_y.load(Ordering::Relaxed),
            self.buttons.load(Ordering::Relaxed),
            self.key.load(Ordering::Relaxed),
        )
    }
}

/// How long each GPU stage of one demo frame took, measured on the CPU around submit-and-wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderTimings {
    /// Drawing the scene.
    pub render: Duration,
    /// RGBA → I420 conversion plus the copy out of the readback buffer (GPU path), or the
    /// SIMD conversion out of the scene's host-visible buffer (CPU path).
    pub convert: Duration,
}

/// Renders demo-title frames on demand and returns them as I420.
pub struct DemoRenderer {
    ctx: Arc<VkContext>,
    submitter: Submitter,
    /// The compute conversion on the GPU path; `None` on the CPU path.
    converter: Option<I420Converter>,
    scene: ComputePipeline,
    pixels: Buffer,
    width: u32,
    height: u32,
    start: Instant,
    next_id: u64,
    controls: Arc<DemoControls>,
}

impl std::fmt::Debug for DemoRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoRenderer")
            .field("device", &self.ctx.device_name())
            .field("width", &self.width)
            .field("height", &self.height)
            .field("next_id", &self.next_id)
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl DemoRenderer {
    /// Opens the Vulkan device and builds the renderer for `width`×`height` frames, converting
    /// on the path [`CapturePath::Auto`] chooses for the device.
    pub fn new(width: u32, height: u32) -> Result<Self, CaptureError> {
        Self::with_path(width, height, CapturePath::Auto)
    }

    /// Opens the Vulkan device and builds the renderer, converting on `path`.
    pub fn with_path(width: u32, height: u32, path: CapturePath) -> Result<Self, CaptureError> {
        Self::with_context(VkContext::new()?, width, height, path)
    }

    /// Builds the renderer on an existing Vulkan context, converting on `path`.
    pub fn with_context(
        ctx: Arc<VkContext>,
        width: u32,
        height: u32,
        path: CapturePath,
    ) -> Result<Self, CaptureError> {
        check_size(width, height)?;
        let len = 4 * width as usize * height as usize;
        let cpu = path.resolve(ctx.device_type()) == ResolvedPath::Cpu;
        let pixels = if cpu {
            Buffer::readback(&ctx, len, vk::BufferUsageFlags::STORAGE_BUFFER)?
        } else {
            let usage = vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_SRC;
            Buffer::device(&ctx, len, usage)?
        };
        let scene = ComputePipeline::new(
            &ctx,
            SCENE_SPV,
            &[vk::DescriptorType::STORAGE_BUFFER],
            PUSH_SIZE,
        )?;
        scene.bind_storage_buffers(&[pixels.buffer]);
        let converter = if cpu {
            None
        } else {
            Some(I420Converter::new(&ctx, pixels.buffer, width, height)?)
        };
        let submitter = Submitter::new(&ctx)?;
        Ok(Self {
            ctx,
            submitter,
            converter,
            scene,
            pixels,
            width,
            height,
            start: Instant::now(),
            next_id: 0,
            controls: Arc::new(DemoControls::default()),
        })
    }

    /// The input channel into this title.
    pub fn controls(&self) -> Arc<DemoControls> {
        self.controls.clone()
    }

    /// The Vulkan device the title renders on.
    pub fn device_name(&self) -> &str {
        self.ctx.device_name()
    }

    /// The path frames are converted to I420 on.
    pub fn path(&self) -> ResolvedPath {
        match self.converter {
            Some(_) => ResolvedPath::Gpu,
            None => ResolvedPath::Cpu,
        }
    }

    /// Frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Renders the next frame (id = previous + 1) and converts it to I420.
    pub fn render(&mut self) -> Result<(Frame, RenderTimings), CaptureError> {
        let id = self.next_id;
        self.next_id += 1;
        self.render_frame(id)
    }

    /// Renders the frame with a given id (the animation follows the wall time since creation).
    pub fn render_frame(&mut self, id: u64) -> Result<(Frame, RenderTimings), CaptureError> {
        let device = self.ctx.device().clone();
        let t0 = Instant::now();
        let captured_ns = clock::monotonic_ns();
        let epoch_ms = clock::epoch_ms();
        let time_ms = self.start.elapsed().as_millis() as u32;
        let (px, py, buttons, key) = self.controls.snapshot();
        let push = push_bytes(&[
            self.width,
            self.height,
            id as u32,
            (id >> 32) as u32,
            epoch_ms as u32,
            ((epoch_ms >> 32) & 0xffff) as u32,
            time_ms,
            buttons,
            px as u32,
            py as u32,
            key,
            0,
        ]);

        let cmd = self.submitter.begin()?;
        // Each submission is waited for before the next, so the previous frame's reads of the
        // pixel buffer are complete; no barrier is needed before overwriting it.
        self.scene.record_dispatch(
            cmd,
            &push,
            [
                self.width.div_ceil(GROUP * PIXELS_PER_INVOCATION),
                self.height.div_ceil(GROUP),
                1,
            ],
        );
        let Some(converter) = &self.converter else {
            // The CPU path: the scene's buffer is host memory; convert straight out of it.
            // SAFETY: `cmd` is recording on this device; the buffer belongs to it.
            unsafe {
                barrier_to_host(
                    &device,
                    cmd,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::AccessFlags::SHADER_WRITE,
                    self.pixels.buffer,
                );
            }
            self.submitter.submit_and_wait()?;
            let t1 = Instant::now();
            let mut data = vec![0u8; PixelFormat::I420.frame_len(self.width, self.height)];
            simd::convert_into(
                self.pixels.bytes(),
                4 * self.width as usize,
                self.width,
                self.height,
                SourceFormat::Rgba8,
                &mut data,
            )?;
            let t2 = Instant::now();
            return Ok((
                self.frame(id, captured_ns, data.into()),
                RenderTimings {
                    render: t1 - t0,
                    convert: t2 - t1,
                },
            ));
        };
        self.submitter.submit_and_wait()?;
        let t1 = Instant::now();

        let cmd = self.submitter.begin()?;
        let to_read = [buffer_barrier(
            self.pixels.buffer,
            vk::AccessFlags::SHADER_WRITE,
            vk::AccessFlags::SHADER_READ,
        )];
        // SAFETY: `cmd` is recording; every handle belongs to this device and outlives the
        // submission, which `submit_and_wait` completes before returning.
        unsafe {
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::DependencyFlags::empty(),
                &[],
                &to_read,
                &[],
            );
        }
        converter.record(&device, cmd);
        self.submitter.submit_and_wait()?;
        let data = converter.read();
        let t2 = Instant::now();
        Ok((
            self.frame(id, captured_ns, data),
            RenderTimings {
                render: t1 - t0,
                convert: t2 - t1,
            },
        ))
    }

    fn frame(&self, id: u64, captured_ns: u64, data: bytes::Bytes) -> Frame {
        Frame {
            id,
            captured_ns,
            width: self.width,
            height: self.height,
            format: PixelFormat::I420,
            data,
        }
    }
}

/// The demo title as a [`Source`]: renders a frame every `1/fps` seconds.
///
/// If rendering falls behind, the schedule skips ahead instead of bursting, and the skipped
/// frame ids are not used, so the gap is visible downstream as dropped frames.
#[derive(Debug)]
pub struct DemoSource {
    renderer: DemoRenderer,
    clock: clock::FrameClock,
    last: RenderTimings,
}

impl DemoSource {
    /// A `width`×`height` demo title at `fps` frames per second, converting on the path
    /// [`CapturePath::Auto`] chooses.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, CaptureError> {
        Self::with_path(width, height, fps, CapturePath::Auto)
    }

    /// A `width`×`height` demo title at `fps` frames per second, converting on `path`.
    pub fn with_path(
        width: u32,
        height: u32,
        fps: u32,
        path: CapturePath,
    ) -> Result<Self, CaptureError> {
        if fps == 0 || fps > 240 {
            return Err(CaptureError::InvalidFrameRate(fps));
        }
        let renderer = DemoRenderer::with_path(width, height, path)?;
        Ok(Self {
            renderer,
            clock: clock::FrameClock::new(fps),
            last: RenderTimings::default(),
        })
    }

    /// The input channel into the title.
    pub fn controls(&self) -> Arc<DemoControls> {
        self.renderer.controls()
    }

    /// GPU timings of the last frame.
    pub fn last_timings(&self) -> RenderTimings {
        self.last
    }
}

impl Source for DemoSource {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        let id = self.clock.wait_next();
        let (frame, timings) = self.renderer.render_frame(id)?;
        self.last = timings;
        Ok(frame)
    }

    fn size(&self) -> (u32, u32) {
        self.renderer.size()
    }

    fn describe(&self) -> String {
        format!(
            "demo title {}x{} on {} ({} path)",
            self.renderer.width,
            self.renderer.height,
            self.renderer.device_name(),
            self.renderer.path()
        )
    }
}
