//! RGBA → I420 conversion on the GPU.
//!
//! The conversion runs as one compute dispatch that reads the source image and writes the three
//! planes straight into a host-visible buffer, so a frame crosses to the CPU as 1.5 bytes a
//! pixel instead of 4, and the CPU never touches colour maths.
//!
//! Colour: BT.601 matrix, limited ("TV") range: Y in 16..=235, Cb/Cr in 16..=240, chroma the
//! mean of each 2×2 quad (sited at the quad's centre). [`rgb_to_ycbcr`] is the CPU reference the
//! shader is tested against.

use std::sync::Arc;

use ash::vk;
use bytes::Bytes;

use crate::vk::{Buffer, ComputePipeline, VkContext, push_bytes};
use crate::{CaptureError, PixelFormat};

static I420_SPV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/i420.spv"));

/// Size of the shader's push-constant block in bytes (8 words).
const PUSH_SIZE: u32 = 32;
/// The shader's workgroup is 8×8 invocations; each invocation converts 8×2 pixels.
const GROUP: u32 = 8;

/// Checks that a frame size can be converted: non-zero, width a multiple of 8, height even.
pub fn check_size(width: u32, height: u32) -> Result<(), CaptureError> {
    let reason = if width == 0 || height == 0 {
        "width and height must be non-zero"
    } else if !width.is_multiple_of(8) {
        "width must be a multiple of 8"
    } else if !height.is_multiple_of(2) {
        "height must be even"
    } else if width > 8192 || height > 8192 {
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

/// Converts one buffer of packed RGBA8 pixels (bound at construction) into an I420 buffer.
pub struct I420Converter {
    pipeline: ComputePipeline,
    output: Buffer,
    width: u32,
    height: u32,
}

impl std::fmt::Debug for I420Converter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Converter")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

impl I420Converter {
    /// Builds a converter reading `source`, a buffer of `width`×`height` packed RGBA8 pixels
    /// (row stride = width).
    pub fn new(
        ctx: &Arc<VkContext>,
        source: vk::Buffer,
        width: u32,
        height: u32,
    ) -> Result<Self, CaptureError> {
        check_size(width, height)?;
        let pipeline = ComputePipeline::new(
            ctx,
            I420_SPV,
            &[
                vk::DescriptorType::STORAGE_BUFFER,
                vk::DescriptorType::STORAGE_BUFFER,
            ],
            PUSH_SIZE,
        )?;
        let len = PixelFormat::I420.frame_len(width, height);
        let output = Buffer::host(ctx, len, vk::BufferUsageFlags::STORAGE_BUFFER)?;
        let source_info = [vk::DescriptorBufferInfo {
            buffer: source,
            offset: 0,
            range: vk::WHOLE_SIZE,
        }];
        let buffer_info = [vk::DescriptorBufferInfo {
            buffer: output.buffer,
            offset: 0,
            range: vk::WHOLE_SIZE,
        }];
        let writes = [
            vk::WriteDescriptorSet::default()
                .dst_set(pipeline.set)
                .dst_binding(0)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&source_info),
            vk::WriteDescriptorSet::default()
                .dst_set(pipeline.set)
                .dst_binding(1)
                .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                .buffer_info(&buffer_info),
        ];
        // SAFETY: the set and buffers are valid and not in use by the GPU yet.
        unsafe { ctx.device().update_descriptor_sets(&writes, &[]) };
        Ok(Self {
            pipeline,
            output,
            width,
            height,
        })
    }

    /// Records the conversion into `cmd`. The source buffer must already be written and made
    /// visible to compute-shader reads; afterwards the output is visible to host reads.
    pub fn record(&self, device: &ash::Device, cmd: vk::CommandBuffer) {
        let (w, h) = (self.width, self.height);
        let y_words = w * h / 4;
        let c_words = (w / 2) * (h / 2) / 4;
        let push = push_bytes(&[w, h, 0, y_words, y_words + c_words, w / 4, w / 8, w]);
        let barrier = [vk::BufferMemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::SHADER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ)
            .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
            .buffer(self.output.buffer)
            .offset(0)
            .size(vk::WHOLE_SIZE)];
        // SAFETY: `cmd` is recording; the pipeline, layout and set belong to this device.
        unsafe {
            device.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, self.pipeline.pipeline);
            device.cmd_bind_descriptor_sets(
                cmd,
                vk::PipelineBindPoint::COMPUTE,
                self.pipeline.layout,
                0,
                &[self.pipeline.set],
                &[],
            );
            device.cmd_push_constants(
                cmd,
                self.pipeline.layout,
                vk::ShaderStageFlags::COMPUTE,
                0,
                &push,
            );
            device.cmd_dispatch(cmd, (w / 8).div_ceil(GROUP), (h / 2).div_ceil(GROUP), 1);
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::COMPUTE_SHADER,
                vk::PipelineStageFlags::HOST,
                vk::DependencyFlags::empty(),
                &[],
                &barrier,
                &[],
            );
        }
    }

    /// Copies the converted planes out. Call after the recording submission completed.
    pub fn read(&self) -> Bytes {
        Bytes::copy_from_slice(self.output.bytes())
    }
}

/// The CPU reference of the shader's colour conversion: full-range RGB → limited-range BT.601
/// Y, Cb, Cr, rounded to the nearest integer.
pub fn rgb_to_ycbcr(r: u8, g: u8, b: u8) -> (u8, u8, u8) {
    let (r, g, b) = (r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0);
    let y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b;
    let cb = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b;
    let cr = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b;
    let q = |v: f32| (v + 0.5).clamp(0.0, 255.0) as u8;
    (q(y), q(cb), q(cr))
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
