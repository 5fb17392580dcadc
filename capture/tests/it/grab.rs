//! The capture layer's grab on both paths — the compute shader (GPU) and the read-back with
//! SIMD conversion (CPU) — against the CPU reference, on a Vulkan image holding the known test
//! image, at sizes that need padding and at sizes that do not.

use std::sync::Arc;
use std::time::Duration;

use ash::vk;
use capture::PixelFormat;
use capture::convert::{SourceFormat, reference_i420};
use capture::layer::Grab;
use capture::path::ResolvedPath;
use capture::synthetic::test_pattern;
use capture::vk::{
    VkContext, buffer_barrier, command_buffers, image_barrier, image_copy, memory_type_index,
};

use super::formats::{context, max_diff};

/// A `width`×`height` image of `format` holding `words` (row by row), in `GENERAL` layout.
struct TestImage {
    ctx: Arc<VkContext>,
    image: vk::Image,
    memory: vk::DeviceMemory,
}

impl TestImage {
    fn new(ctx: &Arc<VkContext>, format: vk::Format, w: u32, h: u32, words: &[u32]) -> Self {
        let device = ctx.device();
        let mem = ctx.memory_properties();
        let info = vk::ImageCreateInfo::default()
            .image_type(vk::ImageType::TYPE_2D)
            .format(format)
            .extent(vk::Extent3D {
                width: w,
                height: h,
                depth: 1,
            })
            .mip_levels(1)
            .array_layers(1)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(vk::ImageTiling::OPTIMAL)
            .usage(vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST)
            .initial_layout(vk::ImageLayout::UNDEFINED);
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        // SAFETY: valid create infos on this device; the staging buffer and the command pool
        // are destroyed below after the queue is idle, the image and its memory in Drop.
        unsafe {
            let image = device.create_image(&info, None).expect("image");
            let req = device.get_image_memory_requirements(image);
            let index = memory_type_index(mem, req.memory_type_bits, Default::default())
                .expect("image memory type");
            let memory = device
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(req.size)
                        .memory_type_index(index),
                    None,
                )
                .expect("image memory");
            device
                .bind_image_memory(image, memory, 0)
                .expect("bind image");

            let len = 4 * words.len() as u64;
            let staging = device
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(len)
                        .usage(vk::BufferUsageFlags::TRANSFER_SRC),
                    None,
                )
                .expect("staging buffer");
            let req = device.get_buffer_memory_requirements(staging);
            let index =
                memory_type_index(mem, req.memory_type_bits, host).expect("host memory type");
            let staging_memory = device
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(req.size)
                        .memory_type_index(index),
                    None,
                )
                .expect("staging memory");
            device
                .bind_buffer_memory(staging, staging_memory, 0)
                .expect("bind staging");
            let ptr = device
                .map_memory(staging_memory, 0, vk::WHOLE_SIZE, Default::default())
                .expect("map");
            std::ptr::copy_nonoverlapping(words.as_ptr(), ptr.cast::<u32>(), words.len());
            device.unmap_memory(staging_memory);

            let (pool, cmds) = command_buffers(device, ctx.queue_family(), 1).expect("pool");
            let cmd = cmds[0];
            device
                .begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())
                .expect("begin");
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::HOST,
                vk::PipelineStageFlags::TRANSFER,
                vk::DependencyFlags::empty(),
                &[],
                &[buffer_barrier(
                    staging,
                    vk::AccessFlags::HOST_WRITE,
                    vk::AccessFlags::TRANSFER_READ,
                )],
                &[image_barrier(
                    image,
                    (vk::AccessFlags::empty(), vk::ImageLayout::UNDEFINED),
                    (
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                    ),
                )],
            );
            device.cmd_copy_buffer_to_image(
                cmd,
                staging,
                image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &[image_copy(w, h)],
            );
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::TRANSFER,
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &[image_barrier(
                    image,
                    (
                        vk::AccessFlags::TRANSFER_WRITE,
                        vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                    ),
                    (vk::AccessFlags::TRANSFER_READ, vk::ImageLayout::GENERAL),
                )],
            );
            device.end_command_buffer(cmd).expect("end");
            let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
            device
                .queue_submit(ctx.queue(), &submit, vk::Fence::null())
                .expect("submit");
            device.queue_wait_idle(ctx.queue()).expect("idle");
            device.destroy_command_pool(pool, None);
            device.destroy_buffer(staging, None);
            device.free_memory(staging_memory, None);
            Self {
                ctx: ctx.clone(),
                image,
                memory,
            }
        }
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let device = self.ctx.device();
        // SAFETY: the tests wait for every grab of the image before dropping it.
        unsafe {
            let _ = device.queue_wait_idle(self.ctx.queue());
            device.destroy_image(self.image, None);
            device.free_memory(self.memory, None);
        }
    }
}

/// Grabs `image` twice on `path` (the second time reusing the grab, as the layer does) and
/// returns the I420 it gave.
fn grab(
    ctx: &Arc<VkContext>,
    image: &TestImage,
    w: u32,
    h: u32,
    format: SourceFormat,
    path: ResolvedPath,
) -> (ResolvedPath, Vec<u8>) {
    let grab = Grab::new(ctx, None, w, h, format, path).expect("grab");
    // Longer than the frame, as a ring slot is: only the frame's bytes are written.
    let mut out = vec![0u8; grab.frame_len() + 16];
    for _ in 0..2 {
        grab.submit(ctx.queue(), image.image, vk::ImageLayout::GENERAL, &[])
            .expect("submit");
        grab.wait(Duration::from_secs(10)).expect("wait");
        assert_eq!(grab.read_into(&mut out), PixelFormat::I420.frame_len(w, h));
    }
    assert!(
        out[grab.frame_len()..].iter().all(|&b| b == 0),
        "wrote past the frame"
    );
    assert_eq!(
        grab.read_into(&mut [0u8; 10]),
        0,
        "a short slot gets nothing"
    );
    out.truncate(grab.frame_len());
    (grab.path(), out)
}

#[test]
fn both_paths_match_the_cpu_reference() {
    let ctx = context();
    let formats = [
        (vk::Format::B8G8R8A8_UNORM, SourceFormat::Bgra8),
        (vk::Format::R8G8B8A8_UNORM, SourceFormat::Rgba8),
    ];
    for (w, h) in [(320, 180), (333, 101), (642, 363)] {
        let pattern = test_pattern(w, h, 2);
        let expected = reference_i420(w, h, |x, y| pattern(x, y).map(|c| c as f32 / 255.0));
        for (vk_format, format) in formats {
            let words: Vec<u32> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| format.encode(pattern(x, y)))
                .collect();
            let image = TestImage::new(&ctx, vk_format, w, h, &words);
            for path in [ResolvedPath::Gpu, ResolvedPath::Cpu] {
                let (used, out) = grab(&ctx, &image, w, h, format, path);
                assert_eq!(used, path, "{format:?} {w}x{h}");
                let diff = max_diff(&out, &expected);
                assert!(
                    diff <= 2,
                    "{path:?} path, {format:?} {w}x{h}: {diff} from the CPU reference"
                );
            }
        }
    }
}

#[test]
fn ten_bit_images_keep_the_gpu_pass_on_the_cpu_path() {
    let ctx = context();
    let (w, h) = (130, 66);
    let pattern = test_pattern(w, h, 1);
    let format = SourceFormat::A2b10g10r10;
    let words: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| format.encode(pattern(x, y)))
        .collect();
    let image = TestImage::new(&ctx, vk::Format::A2B10G10R10_UNORM_PACK32, w, h, &words);
    let (used, out) = grab(&ctx, &image, w, h, format, ResolvedPath::Cpu);
    assert_eq!(
        used,
        ResolvedPath::Gpu,
        "the CPU converter reads 8-bit pixels only"
    );
    let expected = reference_i420(w, h, |x, y| format.decode(words[(y * w + x) as usize]));
    let diff = max_diff(&out, &expected);
    assert!(diff <= 2, "{diff} from the CPU reference");
}
