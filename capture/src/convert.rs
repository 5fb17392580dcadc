//! RGBA → I420 conversion on the GPU, and on the CPU with SIMD ([`simd`], the path a CPU
//! Vulkan device such as lavapipe takes: see [`crate::path`]).
//!
//! The GPU conversion runs as one compute dispatch that reads the source image and writes the three
//! planes straight into a host-visible buffer, so a frame crosses to the CPU as 1.5 bytes a
//! pixel instead of 4, and the CPU never touches colour maths.
//!
//! Colour: BT.601 matrix, limited ("TV") range: Y in 16..=235, Cb/Cr in 16..=240, chroma the
//! mean of each 2×2 quad (sited at the quad's centre). [`rgb_to_ycbcr`] and [`reference_i420`]
//! are the CPU reference the shader and the SIMD converter are tested against (within ±2 per
//! sample).
//!
//! Sources: packed RGBA8 (the demo title) and the swapchain formats the capture layer meets,
//! BGRA8 and 10-bit A2B10G10R10 / A2R10G10B10, UNORM or sRGB ([`SourceFormat`]). Any size is
//! accepted for captured images: the GPU writes a layout padded to a multiple of 8 × 2 and the
//! read-back repacks it tightly.

pub mod simd;

use std::sync::Arc;

use ash::vk;
use bytes::Bytes;

use crate::vk::{Buffer, ComputePipeline, Submitter, VkContext, barrier_to_host, push_bytes};
use crate::{CaptureError, PixelFormat};

static I420_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/i420.spv"));

/// Size of the shader's push-constant block in bytes (12 words).
const PUSH_SIZE: u32 = 48;
/// The shader's workgroup is 8×8 invocations; each invocation converts 8×2 pixels.
const GROUP: u32 = 8;
/// Largest width or height the converter accepts.
pub const MAX_EDGE: u32 = 8192;

/// Checks that a frame size can be converted: non-zero, width a multiple of 8, height even.
pub fn check_size(width: u32, height: u32) -> Result<(), CaptureError> {
    let reason = if width == 0 || height == 0 {
        "width and height must be non-zero"
    } else if !width.is_multiple_of(8) {
        "width must be a multiple of 8"
    } else if !height.is_multiple_of(2) {
        "height must be even"
    } else if width > MAX_EDGE || height > MAX_EDGE {
        "width and height must be at most 8192"
    } else {
        return Ok(());
    };
    Err(CaptureError::InvalidSize {
        width,
        height,
        reason,
    })
}

/// Checks that a captured image of any size can be converted: non-zero and at most 8192.
pub fn check_source_size(width: u32, height: u32) -> Result<(), CaptureError> {
    let reason = if width == 0 || height == 0 {
        "width and height must be non-zero"
    } else if width > MAX_EDGE || height > MAX_EDGE {
        "width and height must be at most 8192"
    } else {
        return Ok(());
    };
    Err(CaptureError::InvalidSize {
        width,
        height,
        reason,
    })
}

/// How one 32-bit source pixel is packed. sRGB and UNORM variants of a layout share a value:
/// the stored (gamma-encoded) values are what a video encoder wants, so both are read as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// Bytes R, G, B, A (`R8G8B8A8_*`, `A8B8G8R8_*_PACK32`).
    Rgba8,
    /// Bytes B, G, R, A (`B8G8R8A8_*`), the usual swapchain format.
    Bgra8,
    /// 10-bit `A2B10G10R10_UNORM_PACK32`: R in bits 0..10, G in 10..20, B in 20..30.
    A2b10g10r10,
    /// 10-bit `A2R10G10B10_UNORM_PACK32`: B in bits 0..10, G in 10..20, R in 20..30.
    A2r10g10b10,
}

impl SourceFormat {
    /// The format of a Vulkan image whose texels copy out as these words, if we can convert it.
    pub fn from_vk(format: vk::Format) -> Option<Self> {
        match format {
            vk::Format::R8G8B8A8_UNORM
            | vk::Format::R8G8B8A8_SRGB
            | vk::Format::A8B8G8R8_UNORM_PACK32
            | vk::Format::A8B8G8R8_SRGB_PACK32 => Some(Self::Rgba8),
            vk::Format::B8G8R8A8_UNORM | vk::Format::B8G8R8A8_SRGB => Some(Self::Bgra8),
            vk::Format::A2B10G10R10_UNORM_PACK32 => Some(Self::A2b10g10r10),
            vk::Format::A2R10G10B10_UNORM_PACK32 => Some(Self::A2r10g10b10),
            _ => None,
        }
    }

    /// The value the shader's `src_format` switch expects.
    fn code(self) -> u32 {
        match self {
            Self::Rgba8 => 0,
            Self::Bgra8 => 1,
            Self::A2b10g10r10 => 2,
            Self::A2r10g10b10 => 3,
        }
    }

    /// CPU decoding of one packed pixel to R, G, B in 0..=1, as the shader reads it.
    pub fn decode(self, word: u32) -> [f32; 3] {
        let byte = |shift: u32| ((word >> shift) & 0xff) as f32 / 255.0;
        let ten = |shift: u32| ((word >> shift) & 0x3ff) as f32 / 1023.0;
        match self {
            Self::Rgba8 => [byte(0), byte(8), byte(16)],
            Self::Bgra8 => [byte(16), byte(8), byte(0)],
            Self::A2b10g10r10 => [ten(0), ten(10), ten(20)],
            Self::A2r10g10b10 => [ten(20), ten(10), ten(0)],
        }
    }

    /// Packs 8-bit R, G, B (alpha opaque) into one pixel of this format.
    pub fn encode(self, [r, g, b]: [u8; 3]) -> u32 {
        let (r, g, b) = (r as u32, g as u32, b as u32);
        let ten = |v: u32| (v * 1023 + 127) / 255;
        match self {
            Self::Rgba8 => r | (g << 8) | (b << 16) | (0xff << 24),
            Self::Bgra8 => b | (g << 8) | (r << 16) | (0xff << 24),
            Self::A2b10g10r10 => ten(r) | (ten(g) << 10) | (ten(b) << 20) | (3 << 30),
            Self::A2r10g10b10 => ten(b) | (ten(g) << 10) | (ten(r) << 20) | (3 << 30),
        }
    }
}

/// Converts one buffer of packed 32-bit pixels (bound at construction) into an I420 buffer.
///
/// The GPU writes a padded layout (width rounded up to 8, height to 2, edges repeated);
/// [`I420Converter::read`] and [`I420Converter::read_into`] return the tight layout of
/// [`PixelFormat::I420`] at the source's own size.
pub struct I420Converter {
    pipeline: ComputePipeline,
    output: Buffer,
    width: u32,
    height: u32,
    padded_width: u32,
    padded_height: u32,
    format: SourceFormat,
}

impl std::fmt::Debug for I420Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Converter")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl I420Converter {
    /// Builds a converter reading `source`, a buffer of `width`×`height` packed RGBA8 pixels
    /// (row stride = width). The size must pass [`check_size`], so no padding is needed.
    pub fn new(
        ctx: &Arc<VkContext>,
        source: vk::Buffer,
        width: u32,
        height: u32,
    ) -> Result<Self, CaptureError> {
        check_size(width, height)?;
        Self::for_source(ctx, source, width, height, SourceFormat::Rgba8)
    }

    /// Builds a converter reading `source`, a buffer of `width`×`height` pixels packed as
    /// `format` (row stride = width). Any size up to 8192×8192 is accepted.
    pub fn for_source(
        ctx: &Arc<VkContext>,
        source: vk::Buffer,
        width: u32,
        height: u32,
        format: SourceFormat,
    ) -> Result<Self, CaptureError> {
        check_source_size(width, height)?;
        let (padded_width, padded_height) = (width.next_multiple_of(8), height.next_multiple_of(2));
        let pipeline = ComputePipeline::new(
            ctx,
            I420_SPV,
            &[
                vk::DescriptorType::STORAGE_BUFFER,
                vk::DescriptorType::STORAGE_BUFFER,
            ],
            PUSH_SIZE,
        )?;
        let len = PixelFormat::I420.frame_len(padded_width, padded_height);
        let output = Buffer::host(ctx, len, vk::BufferUsageFlags::STORAGE_BUFFER)?;
        pipeline.bind_storage_buffers(&[source, output.buffer]);
        Ok(Self {
            pipeline,
            output,
            width,
            height,
            padded_width,
            padded_height,
            format,
        })
    }

    /// The source size in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Bytes of one converted frame in the tight layout [`I420Converter::read_into`] writes.
    pub fn frame_len(&self) -> usize {
        PixelFormat::I420.frame_len(self.width, self.height)
    }

    /// Records the conversion into `cmd`. The source buffer must already be written and made
    /// visible to compute-shader reads; afterwards the output is visible to host reads.
    pub fn record(&self, device: &ash::Device, cmd: vk::CommandBuffer) {
        let (w, h) = (self.padded_width, self.padded_height);
        let y_words = w * h / 4;
        let c_words = (w / 2) * (h / 2) / 4;
        let push = push_bytes(&[
            w,
            h,
            0,
            y_words,
            y_words + c_words,
            w / 4,
            w / 8,
            self.width,
            self.width,
            self.height,
            self.format.code(),
            0,
        ]);
        self.pipeline.record_dispatch(
            cmd,
            &push,
            [(w / 8).div_ceil(GROUP), (h / 2).div_ceil(GROUP), 1],
        );
        // SAFETY: `cmd` is recording on this device and the output buffer belongs to it.
        unsafe {
            barrier_to_host(
                device,
                cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::AccessFlags::SHADER_WRITE,
                self.output.buffer,
            );
        }
    }

    /// Copies the converted planes out. Call after the recording submission completed.
    pub fn read(&self) -> Bytes {
        if (self.width, self.height) == (self.padded_width, self.padded_height) {
            return Bytes::copy_from_slice(self.output.bytes());
        }
        let mut out = vec![0u8; self.frame_len()];
        self.read_into(&mut out);
        Bytes::from(out)
    }

    /// Copies the converted planes, tightly packed, into the start of `dst` and returns the
    /// bytes written ([`I420Converter::frame_len`]); writes nothing and returns 0 when `dst` is
    /// too short. Call after the recording submission completed.
    pub fn read_into(&self, dst: &mut [u8]) -> usize {
        let len = self.frame_len();
        let Some(dst) = dst.get_mut(..len) else {
            return 0;
        };
        let src = self.output.bytes();
        let padded = PixelFormat::I420.planes(self.padded_width, self.padded_height);
        let tight = PixelFormat::I420.planes(self.width, self.height);
        for (from, to) in padded.iter().zip(&tight) {
            if from.stride == to.stride {
                dst[to.offset..to.offset + to.len()]
                    .copy_from_slice(&src[from.offset..from.offset + to.len()]);
                continue;
            }
            for row in 0..to.height {
                let s = from.offset + row * from.stride;
                let d = to.offset + row * to.stride;
                dst[d..d + to.width].copy_from_slice(&src[s..s + to.width]);
            }
        }
        len
    }
}

/// A converter with its own host-visible source buffer: upload packed pixels from the CPU,
/// convert on the GPU, read I420 back. For tests, tools and benchmarks that start from pixels
/// in memory; the demo title and the capture layer feed the converter on the GPU instead.
pub struct HostConverter {
    submitter: Submitter,
    converter: I420Converter,
    source: Buffer,
}

impl std::fmt::Debug for HostConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConverter")
            .field("converter", &self.converter)
            .finish_non_exhaustive()
    }
}

impl HostConverter {
    /// A converter for `width`×`height` pixels packed as `format`.
    pub fn new(
        ctx: &Arc<VkContext>,
        width: u32,
        height: u32,
        format: SourceFormat,
    ) -> Result<Self, CaptureError> {
        check_source_size(width, height)?;
        let source = Buffer::host(
            ctx,
            4 * width as usize * height as usize,
            vk::BufferUsageFlags::STORAGE_BUFFER,
        )?;
        let converter = I420Converter::for_source(ctx, source.buffer, width, height, format)?;
        Ok(Self {
            submitter: Submitter::new(ctx)?,
            converter,
            source,
        })
    }

    /// Converts one image (`width × height` words, row by row) and returns tight I420.
    pub fn convert(&mut self, pixels: &[u32]) -> Result<Bytes, CaptureError> {
        let (w, h) = self.converter.size();
        if pixels.len() != w as usize * h as usize {
            return Err(CaptureError::InvalidSize {
                width: w,
                height: h,
                reason: "pixel count does not match the converter's size",
            });
        }
        let bytes: &[u8] = &pixels
            .iter()
            .flat_map(|p| p.to_le_bytes())
            .collect::<Vec<u8>>();
        self.source.write(bytes);
        let cmd = self.submitter.begin()?;
        let device = self.submitter.device().clone();
        let barrier = [vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::HOST_WRITE)
            .dst_access_mask(vk::AccessFlags::SHADER_READ)];
        // SAFETY: `cmd` is recording on this device.
        unsafe {
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::HOST,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::DependencyFlags::empty(),
                &barrier,
                &[],
                &[],
            );
        }
        self.converter.record(&device, cmd);
        self.submitter.submit_and_wait()?;
        Ok(self.converter.read())
    }
}

/// The colour maths of the shader on the CPU, unrounded: R, G, B in 0..=1 → limited-range
/// BT.601 Y, Cb, Cr.
pub fn ycbcr_of(rgb: [f32; 3]) -> [f32; 3] {
    let [r, g, b] = rgb;
    [
        16.0 + 65.481 * r + 128.553 * g + 24.966 * b,
        128.0 - 37.797 * r - 74.203 * g + 112.0 * b,
        128.0 + 112.0 * r - 93.786 * g - 18.214 * b,
    ]
}

fn quantise(v: f32) -> u8 {
    (v + 0.5).clamp(0.0, 255.0) as u8
}

/// The CPU reference of a whole conversion: a `width`×`height` image whose pixel (x, y) is
/// `pixel(x, y)` (R, G, B in 0..=1) → tight I420 (luma per pixel; chroma from the mean of each
/// 2×2 quad, the last column and row repeated at odd sizes), as the GPU path must produce it.
pub fn reference_i420(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [f32; 3]) -> Vec<u8> {
    let planes = PixelFormat::I420.planes(width, height);
    let mut out = vec![0u8; PixelFormat::I420.frame_len(width, height)];
    for y in 0..height {
        for x in 0..width {
            out[y as usize * planes[0].stride + x as usize] = quantise(ycbcr_of(pixel(x, y))[0]);
        }
    }
    for cy in 0..planes[1].height as u32 {
        for cx in 0..planes[1].width as u32 {
            let mut mean = [0.0f32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = pixel((2 * cx + dx).min(width - 1), (2 * cy + dy).min(height - 1));
                for c in 0..3 {
                    mean[c] += p[c] * 0.25;
                }
            }
            let [_, cb, cr] = ycbcr_of(mean);
            let i = cy as usize * planes[1].stride + cx as usize;
            out[planes[1].offset + i] = quantise(cb);
            out[planes[2].offset + i] = quantise(cr);
        }
    }
    out
}

/// The CPU reference of the shader's colour conversion: full-range RGB → limited-range BT.601
/// Y, Cb, Cr, rounded to the nearest integer.
pub fn rgb_to_ycbcr(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let [y, cb, cr] = ycbcr_of([r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0]);
    (quantise(y), quantise(cb), quantise(cr))
}

/// The inverse of [`rgb_to_ycbcr`] (limited-range BT.601 → full-range RGB), for receivers and
/// tests that check colours after decoding.
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> (u8, u8, u8) {
    let y = (y as f32 - 16.0) * (255.0 / 219.0);
    let cb = cb as f32 - 128.0;
    let cr = cr as f32 - 128.0;
    let r = y + 1.596_027 * cr;
    let g = y - 0.391_762 * cb - 0.812_968 * cr;
    let b = y + 2.017_232 * cb;
    let q = |v: f32| (v + 0.5).clamp(0.0, 255.0) as u8;
    (q(r), q(g), q(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_hits_the_range_ends() {
        assert_eq!(rgb_to_ycbcr(0, 0, 0), (16, 128, 128));
        assert_eq!(rgb_to_ycbcr(255, 255, 255), (235, 128, 128));
        assert_eq!(rgb_to_ycbcr(255, 0, 0), (81, 90, 240));
        assert_eq!(rgb_to_ycbcr(0, 0, 255), (41, 240, 110));
    }

    #[test]
    fn round_trip_is_close() {
        for &(r, g, b) in &[(255, 0, 0), (0, 255, 0), (12, 200, 99), (128, 128, 128)] {
            let (y, cb, cr) = rgb_to_ycbcr(r, g, b);
            let (r2, g2, b2) = ycbcr_to_rgb(y, cb, cr);
            for (a, b) in [(r, r2), (g, g2), (b, b2)] {
                assert!(
                    (a as i32 - b as i32).abs() <= 3,
                    "{r},{g},{b} -> {r2},{g2},{b2}"
                );
            }
        }
    }

    #[test]
    fn odd_sizes_are_refused() {
        assert!(check_size(1280, 720).is_ok());
        assert!(check_size(0, 720).is_err());
        assert!(check_size(1281, 720).is_err());
        assert!(check_size(1280, 721).is_err());
        let err = check_size(100, 100).expect_err("100 is not a multiple of 8");
        assert!(err.to_string().contains("multiple of 8"), "{err}");
    }
}
