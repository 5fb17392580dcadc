//! Command helpers: the barriers, copy regions and command pools that the capture layer, the
//! converter, the test title and the benchmarks record, built in one place so that they all
//! say the same thing.

use ash::vk;

use super::vk_err;
use crate::CaptureError;

/// A command pool on queue family `family` whose buffers can be reset one by one, and `count`
/// primary command buffers from it. On failure nothing is left behind.
///
/// # Safety
/// `family` must be a queue family of `device`. The caller destroys the pool (which frees the
/// buffers) once their last submission has completed.
pub unsafe fn command_buffers(
    device: &ash::Device,
    family: u32,
    count: u32,
) -> Result<(vk::CommandPool, Vec<vk::CommandBuffer>), CaptureError> {
    let info = vk::CommandPoolCreateInfo::default()
        .queue_family_index(family)
        .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
    // SAFETY: valid create info for a family of this device (the caller's rule).
    let pool = unsafe { device.create_command_pool(&info, None) }
        .map_err(vk_err("vkCreateCommandPool"))?;
    let alloc = vk::CommandBufferAllocateInfo::default()
        .command_pool(pool)
        .level(vk::CommandBufferLevel::PRIMARY)
        .command_buffer_count(count);
    // SAFETY: `pool` was just made on this device.
    match unsafe { device.allocate_command_buffers(&alloc) } {
        Ok(cmds) => Ok((pool, cmds)),
        Err(result) => {
            // SAFETY: nothing was allocated from the pool.
            unsafe { device.destroy_command_pool(pool, None) };
            Err(vk_err("vkAllocateCommandBuffers")(result))
        }
    }
}

/// The colour aspect of an image's first mip level and array layer: the whole of every image
/// the capture path, its test title and the benchmarks touch.
pub const COLOR_RANGE: vk::ImageSubresourceRange = vk::ImageSubresourceRange {
    aspect_mask: vk::ImageAspectFlags::COLOR,
    base_mip_level: 0,
    level_count: 1,
    base_array_layer: 0,
    layer_count: 1,
};

/// A barrier over the whole of `image` ([`COLOR_RANGE`]) that moves it from `(access, layout)`
/// `from` to `to`, on the same queue family.
pub fn image_barrier(
    image: vk::Image,
    from: (vk::AccessFlags, vk::ImageLayout),
    to: (vk::AccessFlags, vk::ImageLayout),
) -> vk::ImageMemoryBarrier<'static> {
    vk::ImageMemoryBarrier::default()
        .src_access_mask(from.0)
        .dst_access_mask(to.0)
        .old_layout(from.1)
        .new_layout(to.1)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .image(image)
        .subresource_range(COLOR_RANGE)
}

/// A barrier over the whole of `buffer`: accesses `src` before it, `dst` after it, on the same
/// queue family.
pub fn buffer_barrier(
    buffer: vk::Buffer,
    src: vk::AccessFlags,
    dst: vk::AccessFlags,
) -> vk::BufferMemoryBarrier<'static> {
    vk::BufferMemoryBarrier::default()
        .src_access_mask(src)
        .dst_access_mask(dst)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .buffer(buffer)
        .offset(0)
        .size(vk::WHOLE_SIZE)
}

/// Records a barrier that makes what stage `stage` wrote to `buffer` (with `access`) visible to
/// the host, which reads it after the submission's fence.
///
/// # Safety
/// `cmd` is recording on `device`, and `buffer` belongs to `device`.
pub unsafe fn barrier_to_host(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    stage: vk::PipelineStageFlags,
    access: vk::AccessFlags,
    buffer: vk::Buffer,
) {
    let barrier = [buffer_barrier(buffer, access, vk::AccessFlags::HOST_READ)];
    // SAFETY: the caller's promise.
    unsafe {
        device.cmd_pipeline_barrier(
            cmd,
            stage,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[],
            &barrier,
            &[],
        );
    }
}

/// The copy region between a whole `width`×`height` colour image and a buffer that holds its
/// texels row by row, tightly packed, from offset 0 (either direction).
pub fn image_copy(width: u32, height: u32) -> vk::BufferImageCopy {
    vk::BufferImageCopy::default()
        .image_subresource(vk::ImageSubresourceLayers {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            mip_level: 0,
            base_array_layer: 0,
            layer_count: 1,
        })
        .image_extent(vk::Extent3D {
            width,
            height,
            depth: 1,
        })
}
