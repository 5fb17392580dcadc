//! The work of capturing one presented image: copy it into a buffer on the game's queue, then
//! one of two paths ([`ResolvedPath`]):
//!
//! - **GPU**: convert it to I420 with the same compute pass the demo title uses and leave it in
//!   a host-visible buffer for the read-back. Two submissions per frame: the copy (which waits
//!   for the game's present semaphores and signals [`Grab::copied`], the only semaphore the
//!   present then waits for) before the present, and the conversion (which signals the fence
//!   the layer's worker thread waits on) after it.
//! - **CPU** (a CPU device such as lavapipe, whose shaders run slower than SIMD code on the same
//!   cores): the copy goes straight into a host-visible buffer and signals the fence itself; the
//!   worker then converts the packed pixels with [`crate::convert::simd`] straight into the ring
//!   slot ([`Grab::read_into`]). There is no conversion submission.
//!
//! Either way the game's present is held back by the copy alone, never by the conversion or the
//! read-back.

use std::sync::Arc;
use std::time::Duration;

use ash::vk;

use crate::CaptureError;
use crate::convert::{I420Converter, SourceFormat, simd};
use crate::path::ResolvedPath;
use crate::vk::{
    Buffer, VkContext, barrier_to_host, buffer_barrier, command_buffers, image_barrier, image_copy,
    vk_err,
};

/// The loader's callback that makes a dispatchable object a layer creates (our command
/// buffers) usable by the layers and driver below.
pub type SetDeviceLoaderData =
    unsafe extern "system" fn(device: vk::Device, object: *mut std::ffi::c_void) -> vk::Result;

/// One set of capture resources for images of one size and format on one queue family.
pub struct Grab {
    ctx: Arc<VkContext>,
    pool: vk::CommandPool,
    copy_cmd: vk::CommandBuffer,
    convert_cmd: vk::CommandBuffer,
    copied: vk::Semaphore,
    fence: vk::Fence,
    pixels: Buffer,
    /// The compute pass on the GPU path; `None` on the CPU path.
    converter: Option<I420Converter>,
    width: u32,
    height: u32,
    format: SourceFormat,
}

impl std::fmt::Debug for Grab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grab")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("format", &self.format)
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

// SAFETY: Vulkan handles are plain identifiers; the layer's protocol (a busy flag) ensures only
// one thread uses a Grab's command buffers, fence and buffers at a time.
unsafe impl Send for Grab {}
// SAFETY: as above; shared references only read handles, and the mapped pixels or output after
// the fence.
unsafe impl Sync for Grab {}

impl Grab {
    /// Resources for capturing `width`×`height` images packed as `format` on queues of the
    /// context's queue family, converted on `path` (a format the CPU converter does not read,
    /// 10-bit, keeps the GPU pass: see [`Grab::path`]). `loader_data` is the loader's callback
    /// when `ctx` is a game's device seen from inside a layer, `None` for a device we created.
    pub fn new(
        ctx: &Arc<VkContext>,
        loader_data: Option<SetDeviceLoaderData>,
        width: u32,
        height: u32,
        format: SourceFormat,
        path: ResolvedPath,
    ) -> Result<Self, CaptureError> {
        let device = ctx.device();
        let len = 4 * width as usize * height as usize;
        let (pixels, converter) = if path == ResolvedPath::Cpu && simd::supports(format) {
            crate::convert::check_source_size(width, height)?;
            let usage = vk::BufferUsageFlags::TRANSFER_DST;
            (Buffer::readback(ctx, len, usage)?, None)
        } else {
            let usage = vk::BufferUsageFlags::STORAGE_BUFFER | vk::BufferUsageFlags::TRANSFER_DST;
            let pixels = Buffer::device(ctx, len, usage)?;
            let converter = I420Converter::for_source(ctx, pixels.buffer, width, height, format)?;
            (pixels, Some(converter))
        };
        let mut this = Self {
            ctx: ctx.clone(),
            pool: vk::CommandPool::null(),
            copy_cmd: vk::CommandBuffer::null(),
            convert_cmd: vk::CommandBuffer::null(),
            copied: vk::Semaphore::null(),
            fence: vk::Fence::null(),
            pixels,
            converter,
            width,
            height,
            format,
        };
        // SAFETY: the context's queue family belongs to its device; valid create infos; each
        // handle is stored in `this` as soon as it exists so Drop releases whatever was made
        // before a failure.
        unsafe {
            let (pool, cmds) = command_buffers(device, ctx.queue_family(), 2)?;
            this.pool = pool;
            this.copy_cmd = cmds[0];
            this.convert_cmd = cmds[1];
            if let Some(set) = loader_data {
                for cmd in cmds {
                    set(
                        device.handle(),
                        vk::Handle::as_raw(cmd) as *mut std::ffi::c_void,
                    )
                    .result()
                    .map_err(vk_err("vkSetDeviceLoaderData"))?;
                }
            }
            this.copied = device
                .create_semaphore(&vk::SemaphoreCreateInfo::default(), None)
                .map_err(vk_err("vkCreateSemaphore"))?;
            this.fence = device
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .map_err(vk_err("vkCreateFence"))?;
        }
        Ok(this)
    }

    /// Image size this grab captures.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Pixel packing this grab reads.
    pub fn format(&self) -> SourceFormat {
        self.format
    }

    /// The path this grab converts on.
    pub fn path(&self) -> ResolvedPath {
        match self.converter {
            Some(_) => ResolvedPath::Gpu,
            None => ResolvedPath::Cpu,
        }
    }

    /// Bytes of one converted frame.
    pub fn frame_len(&self) -> usize {
        crate::PixelFormat::I420.frame_len(self.width, self.height)
    }

    /// The semaphore the copy signals; the present must wait for it.
    pub fn copied(&self) -> vk::Semaphore {
        self.copied
    }

    /// Records the copy of `image` (in `layout`, left in it) and the conversion, and submits
    /// the copy after `waits`. Returns the semaphore the present must wait for instead of
    /// `waits`. Call [`Grab::submit_convert`] next, after the present: so the present never
    /// queues behind the conversion. On the CPU path the copy lands in host memory and signals
    /// the fence [`Grab::wait`] waits for. The previous frame of this grab must be complete
    /// ([`Grab::wait`] returned).
    pub fn submit_copy(
        &self,
        queue: vk::Queue,
        image: vk::Image,
        layout: vk::ImageLayout,
        waits: &[vk::Semaphore],
    ) -> Result<vk::Semaphore, CaptureError> {
        let device = self.ctx.device();
        let begin = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        let to_copy = [image_barrier(
            image,
            (vk::AccessFlags::MEMORY_WRITE, layout),
            (
                vk::AccessFlags::TRANSFER_READ,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            ),
        )];
        let back = [image_barrier(
            image,
            (
                vk::AccessFlags::TRANSFER_READ,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            ),
            (vk::AccessFlags::empty(), layout),
        )];
        let region = [image_copy(self.width, self.height)];
        let to_shader = [buffer_barrier(
            self.pixels.buffer,
            vk::AccessFlags::TRANSFER_WRITE,
            vk::AccessFlags::SHADER_READ,
        )];
        let wait_stages = vec![vk::PipelineStageFlags::ALL_COMMANDS; waits.len()];
        let copy_cmds = [self.copy_cmd];
        let signal = [self.copied];
        // SAFETY: the caller guarantees the previous use of these command buffers and the fence
        // completed; every handle belongs to this device; the image is a presentable image of
        // the swapchain being presented, in `layout`, and is returned to it.
        unsafe {
            device
                .reset_fences(&[self.fence])
                .map_err(vk_err("vkResetFences"))?;
            for cmd in [self.copy_cmd, self.convert_cmd] {
                device
                    .reset_command_buffer(cmd, vk::CommandBufferResetFlags::empty())
                    .map_err(vk_err("vkResetCommandBuffer"))?;
                device
                    .begin_command_buffer(cmd, &begin)
                    .map_err(vk_err("vkBeginCommandBuffer"))?;
            }
            let cmd = self.copy_cmd;
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                vk::PipelineStageFlags::TRANSFER,
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &to_copy,
            );
            device.cmd_copy_image_to_buffer(
                cmd,
                image,
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                self.pixels.buffer,
                &region,
            );
            device.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &back,
            );
            if self.converter.is_none() {
                barrier_to_host(
                    device,
                    cmd,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::AccessFlags::TRANSFER_WRITE,
                    self.pixels.buffer,
                );
            }
            device
                .end_command_buffer(cmd)
                .map_err(vk_err("vkEndCommandBuffer"))?;
            let cmd = self.convert_cmd;
            if let Some(converter) = &self.converter {
                device.cmd_pipeline_barrier(
                    cmd,
                    vk::PipelineStageFlags::TRANSFER,
                    vk::PipelineStageFlags::COMPUTE_SHADER,
                    vk::DependencyFlags::empty(),
                    &[],
                    &to_shader,
                    &[],
                );
                converter.record(device, cmd);
            }
            device
                .end_command_buffer(cmd)
                .map_err(vk_err("vkEndCommandBuffer"))?;
            let copy = [vk::SubmitInfo::default()
                .wait_semaphores(waits)
                .wait_dst_stage_mask(&wait_stages)
                .command_buffers(&copy_cmds)
                .signal_semaphores(&signal)];
            // On the CPU path the copy is the last GPU work of the frame.
            let fence = match self.converter {
                Some(_) => vk::Fence::null(),
                None => self.fence,
            };
            device
                .queue_submit(queue, &copy, fence)
                .map_err(vk_err("vkQueueSubmit"))?;
        }
        Ok(self.copied)
    }

    /// Submits the conversion recorded by [`Grab::submit_copy`]; its completion signals the
    /// fence [`Grab::wait`] waits for. Nothing to do on the CPU path, where the copy signalled
    /// the fence.
    pub fn submit_convert(&self, queue: vk::Queue) -> Result<(), CaptureError> {
        if self.converter.is_none() {
            return Ok(());
        }
        let cmds = [self.convert_cmd];
        let convert = [vk::SubmitInfo::default().command_buffers(&cmds)];
        // SAFETY: the command buffer was recorded by `submit_copy` and not submitted since.
        unsafe { self.ctx.device().queue_submit(queue, &convert, self.fence) }
            .map_err(vk_err("vkQueueSubmit"))
    }

    /// [`Grab::submit_copy`] then [`Grab::submit_convert`], for callers with no present
    /// in between. If the conversion cannot be submitted, the error carries the semaphore the
    /// copy will still signal.
    pub fn submit(
        &self,
        queue: vk::Queue,
        image: vk::Image,
        layout: vk::ImageLayout,
        waits: &[vk::Semaphore],
    ) -> Result<vk::Semaphore, CaptureError> {
        let semaphore = self.submit_copy(queue, image, layout, waits)?;
        self.submit_convert(queue).map_err(|e| match e {
            CaptureError::Vulkan { result, .. } => {
                CaptureError::ConvertSubmit { semaphore, result }
            }
            other => other,
        })?;
        Ok(semaphore)
    }

    /// Waits up to `timeout` for the last submitted frame's conversion.
    pub fn wait(&self, timeout: Duration) -> Result<(), CaptureError> {
        // SAFETY: the fence belongs to this device.
        unsafe {
            self.ctx
                .device()
                .wait_for_fences(&[self.fence], true, timeout.as_nanos() as u64)
        }
        .map_err(vk_err("vkWaitForFences"))
    }

    /// Writes the converted frame (tight I420) into `dst` — on the CPU path, converting the
    /// copied pixels straight into it; returns the bytes written (0 when `dst` is too short).
    /// Call after [`Grab::wait`] succeeded.
    pub fn read_into(&self, dst: &mut [u8]) -> usize {
        let Some(converter) = &self.converter else {
            if dst.len() < self.frame_len() {
                return 0;
            }
            let stride = 4 * self.width as usize;
            let src = self.pixels.bytes();
            return match simd::convert_into(src, stride, self.width, self.height, self.format, dst)
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "stratus capture: frame not converted");
                    0
                }
            };
        };
        converter.read_into(dst)
    }
}

impl Drop for Grab {
    fn drop(&mut self) {
        let device = self.ctx.device();
        // SAFETY: owners drop a Grab only when its last submission completed (fence waited or
        // the device idle); null handles are ignored.
        unsafe {
            device.destroy_fence(self.fence, None);
            device.destroy_semaphore(self.copied, None);
            device.destroy_command_pool(self.pool, None);
        }
    }
}
