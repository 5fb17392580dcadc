//! The device objects the demo title, the converter and the capture layer build on: buffers
//! with their memory, compute pipelines with their descriptor set, and a submit-and-wait
//! command buffer.

use std::ffi::CStr;
use std::sync::Arc;

use ash::vk;

use super::{VkContext, command_buffers, vk_err};
use crate::CaptureError;

/// A buffer with its memory: device-local, or host-visible and persistently mapped.
pub(crate) struct Buffer {
    ctx: Arc<VkContext>,
    pub(crate) buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: Option<*mut u8>,
    pub(crate) len: usize,
}

// SAFETY: the mapping is owned by this struct and only read through `&self`; Vulkan handles
// are plain identifiers usable from any thread.
unsafe impl Send for Buffer {}

impl Buffer {
    /// A device-local buffer (GPU-only working memory).
    pub(crate) fn device(
        ctx: &Arc<VkContext>,
        len: usize,
        usage: vk::BufferUsageFlags,
    ) -> Result<Self, CaptureError> {
        Self::new(
            ctx,
            len,
            usage,
            vk::MemoryPropertyFlags::DEVICE_LOCAL,
            "frame buffer",
        )
    }

    /// A host-visible, host-coherent buffer, mapped for reading results back.
    pub(crate) fn host(
        ctx: &Arc<VkContext>,
        len: usize,
        usage: vk::BufferUsageFlags,
    ) -> Result<Self, CaptureError> {
        let flags = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        Self::new(ctx, len, usage, flags, "readback buffer")
    }

    /// A host-visible, host-coherent buffer the CPU reads a whole frame of pixels from,
    /// host-cached where the device offers it: the SIMD converter reads every byte, and
    /// uncached (write-combined) memory on a GPU reads many times slower.
    pub(crate) fn readback(
        ctx: &Arc<VkContext>,
        len: usize,
        usage: vk::BufferUsageFlags,
    ) -> Result<Self, CaptureError> {
        let cached = vk::MemoryPropertyFlags::HOST_VISIBLE
            | vk::MemoryPropertyFlags::HOST_COHERENT
            | vk::MemoryPropertyFlags::HOST_CACHED;
        match Self::new(ctx, len, usage, cached, "cached readback buffer") {
            Err(CaptureError::NoMemoryType(_)) => Self::host(ctx, len, usage),
            other => other,
        }
    }

    fn new(
        ctx: &Arc<VkContext>,
        len: usize,
        usage: vk::BufferUsageFlags,
        flags: vk::MemoryPropertyFlags,
        what: &'static str,
    ) -> Result<Self, CaptureError> {
        let device = ctx.device();
        let info = vk::BufferCreateInfo::default()
            .size(len as u64)
            .usage(usage)
            .sharing_mode(vk::SharingMode::EXCLUSIVE);
        // SAFETY: valid create info.
        let buffer =
            unsafe { device.create_buffer(&info, None) }.map_err(vk_err("vkCreateBuffer"))?;
        let mut this = Self {
            ctx: ctx.clone(),
            buffer,
            memory: vk::DeviceMemory::null(),
            ptr: None,
            len,
        };
        // SAFETY: `buffer` is valid.
        let req = unsafe { device.get_buffer_memory_requirements(buffer) };
        let index = ctx.memory_type(req.memory_type_bits, flags, what)?;
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(req.size)
            .memory_type_index(index);
        // SAFETY: valid allocate info; the memory is stored in `this` at once so Drop frees it.
        this.memory =
            unsafe { device.allocate_memory(&alloc, None) }.map_err(vk_err("vkAllocateMemory"))?;
        // SAFETY: fresh memory sized for the buffer.
        unsafe { device.bind_buffer_memory(buffer, this.memory, 0) }
            .map_err(vk_err("vkBindBufferMemory"))?;
        if flags.contains(vk::MemoryPropertyFlags::HOST_VISIBLE) {
            // SAFETY: host-visible memory, not mapped yet.
            let ptr =
                unsafe { device.map_memory(this.memory, 0, vk::WHOLE_SIZE, Default::default()) }
                    .map_err(vk_err("vkMapMemory"))?;
            this.ptr = Some(ptr.cast());
        }
        Ok(this)
    }

    /// Copies `data` into the start of a host-visible buffer (no-op for a device-local one).
    /// Call only when the GPU is not using the buffer.
    pub(crate) fn write(&self, data: &[u8]) {
        if let Some(ptr) = self.ptr {
            let n = data.len().min(self.len);
            // SAFETY: `ptr` maps at least `len` bytes; no GPU work reads it now (caller's rule).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, n) };
        }
    }

    /// The mapped contents (empty for a device-local buffer). Call only when the GPU has
    /// finished writing (after a fence wait).
    pub(crate) fn bytes(&self) -> &[u8] {
        match self.ptr {
            // SAFETY: `ptr` maps at least `len` bytes for the lifetime of `self`; host-coherent
            // memory needs no invalidation, and callers read only after the writer's fence.
            Some(ptr) => unsafe { std::slice::from_raw_parts(ptr, self.len) },
            None => &[],
        }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let device = self.ctx.device();
        // SAFETY: owners wait for their fences before dropping; null handles are ignored.
        unsafe {
            if self.ptr.is_some() {
                device.unmap_memory(self.memory);
            }
            device.destroy_buffer(self.buffer, None);
            device.free_memory(self.memory, None);
        }
    }
}

/// A compute pipeline with one descriptor set and a push-constant block.
pub(crate) struct ComputePipeline {
    ctx: Arc<VkContext>,
    pipeline: vk::Pipeline,
    layout: vk::PipelineLayout,
    set_layout: vk::DescriptorSetLayout,
    pool: vk::DescriptorPool,
    set: vk::DescriptorSet,
}

impl ComputePipeline {
    /// Builds a pipeline from SPIR-V bytes with bindings 0.. of the given descriptor types.
    pub(crate) fn new(
        ctx: &Arc<VkContext>,
        spirv: &[u8],
        bindings: &[vk::DescriptorType],
        push_size: u32,
    ) -> Result<Self, CaptureError> {
        let device = ctx.device();
        let words = ash::util::read_spv(&mut std::io::Cursor::new(spirv))
            .map_err(|e| CaptureError::Shader(e.to_string()))?;
        let mut this = Self {
            ctx: ctx.clone(),
            pipeline: vk::Pipeline::null(),
            layout: vk::PipelineLayout::null(),
            set_layout: vk::DescriptorSetLayout::null(),
            pool: vk::DescriptorPool::null(),
            set: vk::DescriptorSet::null(),
        };
        let layout_bindings: Vec<_> = bindings
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                vk::DescriptorSetLayoutBinding::default()
                    .binding(i as u32)
                    .descriptor_type(*ty)
                    .descriptor_count(1)
                    .stage_flags(vk::ShaderStageFlags::COMPUTE)
            })
            .collect();
        let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&layout_bindings);
        // SAFETY: valid create infos throughout; every handle is stored in `this` as soon as it
        // exists so that Drop releases whatever was created before a failure.
        unsafe {
            this.set_layout = device
                .create_descriptor_set_layout(&info, None)
                .map_err(vk_err("vkCreateDescriptorSetLayout"))?;
            let sizes: Vec<_> = bindings
                .iter()
                .map(|ty| vk::DescriptorPoolSize {
                    ty: *ty,
                    descriptor_count: 1,
                })
                .collect();
            let pool_info = vk::DescriptorPoolCreateInfo::default()
                .max_sets(1)
                .pool_sizes(&sizes);
            this.pool = device
                .create_descriptor_pool(&pool_info, None)
                .map_err(vk_err("vkCreateDescriptorPool"))?;
            let set_layouts = [this.set_layout];
            let alloc = vk::DescriptorSetAllocateInfo::default()
                .descriptor_pool(this.pool)
                .set_layouts(&set_layouts);
            this.set = device
                .allocate_descriptor_sets(&alloc)
                .map_err(vk_err("vkAllocateDescriptorSets"))?[0];
            let ranges = [vk::PushConstantRange {
                stage_flags: vk::ShaderStageFlags::COMPUTE,
                offset: 0,
                size: push_size,
            }];
            let layout_info = vk::PipelineLayoutCreateInfo::default()
                .set_layouts(&set_layouts)
                .push_constant_ranges(&ranges);
            this.layout = device
                .create_pipeline_layout(&layout_info, None)
                .map_err(vk_err("vkCreatePipelineLayout"))?;
            let module_info = vk::ShaderModuleCreateInfo::default().code(&words);
            let module = device
                .create_shader_module(&module_info, None)
                .map_err(vk_err("vkCreateShaderModule"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(ENTRY);
            let pipeline_info = [vk::ComputePipelineCreateInfo::default()
                .stage(stage)
                .layout(this.layout)];
            let created =
                device.create_compute_pipelines(vk::PipelineCache::null(), &pipeline_info, None);
            device.destroy_shader_module(module, None);
            this.pipeline = created.map_err(|(_, result)| CaptureError::Vulkan {
                call: "vkCreateComputePipelines",
                result,
            })?[0];
        }
        Ok(this)
    }

    /// Points bindings 0.. of the set at `buffers`, whole, as storage buffers. Call before any
    /// submission uses the set.
    pub(crate) fn bind_storage_buffers(&self, buffers: &[vk::Buffer]) {
        let infos: Vec<[vk::DescriptorBufferInfo; 1]> = buffers
            .iter()
            .map(|&buffer| {
                [vk::DescriptorBufferInfo {
                    buffer,
                    offset: 0,
                    range: vk::WHOLE_SIZE,
                }]
            })
            .collect();
        let writes: Vec<_> = infos
            .iter()
            .enumerate()
            .map(|(i, info)| {
                vk::WriteDescriptorSet::default()
                    .dst_set(self.set)
                    .dst_binding(i as u32)
                    .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                    .buffer_info(info)
            })
            .collect();
        // SAFETY: the set and buffers are valid, and no submission uses the set yet (the
        // caller's rule).
        unsafe { self.ctx.device().update_descriptor_sets(&writes, &[]) };
    }

    /// Records binding the pipeline and its set, the push constants (`push`, at most the block
    /// size given to [`ComputePipeline::new`]) and a dispatch of `groups` workgroups.
    pub(crate) fn record_dispatch(&self, cmd: vk::CommandBuffer, push: &[u8], groups: [u32; 3]) {
        let device = self.ctx.device();
        let [x, y, z] = groups;
        // SAFETY: `cmd` is recording on this pipeline's device; the pipeline, layout and set
        // belong to it and outlive the submission (their owners wait for it before dropping).
        unsafe {
            device.cmd_bind_pipeline(cmd, vk::PipelineBindPoint::COMPUTE, self.pipeline);
            device.cmd_bind_descriptor_sets(
                cmd,
                vk::PipelineBindPoint::COMPUTE,
                self.layout,
                0,
                &[self.set],
                &[],
            );
            device.cmd_push_constants(cmd, self.layout, vk::ShaderStageFlags::COMPUTE, 0, push);
            device.cmd_dispatch(cmd, x, y, z);
        }
    }
}

const ENTRY: &CStr = c"main";

impl Drop for ComputePipeline {
    fn drop(&mut self) {
        let device = self.ctx.device();
        // SAFETY: owners wait for their fences before dropping; null handles are ignored.
        unsafe {
            device.destroy_pipeline(self.pipeline, None);
            device.destroy_pipeline_layout(self.layout, None);
            device.destroy_descriptor_pool(self.pool, None);
            device.destroy_descriptor_set_layout(self.set_layout, None);
        }
    }
}

/// A command buffer with its pool and a fence, for submit-and-wait work on the compute queue.
pub(crate) struct Submitter {
    ctx: Arc<VkContext>,
    pool: vk::CommandPool,
    pub(crate) cmd: vk::CommandBuffer,
    fence: vk::Fence,
}

/// How long a single submission may take before we call the device lost.
const FENCE_TIMEOUT_NS: u64 = 5_000_000_000;

impl Submitter {
    pub(crate) fn new(ctx: &Arc<VkContext>) -> Result<Self, CaptureError> {
        let device = ctx.device();
        let mut this = Self {
            ctx: ctx.clone(),
            pool: vk::CommandPool::null(),
            cmd: vk::CommandBuffer::null(),
            fence: vk::Fence::null(),
        };
        // SAFETY: the context's queue family belongs to its device; valid create info; handles
        // stored as created so Drop cleans up on failure.
        unsafe {
            let (pool, cmds) = command_buffers(device, ctx.queue_family(), 1)?;
            this.pool = pool;
            this.cmd = cmds[0];
            this.fence = device
                .create_fence(&vk::FenceCreateInfo::default(), None)
                .map_err(vk_err("vkCreateFence"))?;
        }
        Ok(this)
    }

    /// The device this submitter records for.
    pub(crate) fn device(&self) -> &ash::Device {
        self.ctx.device()
    }

    /// Starts recording into the command buffer.
    pub(crate) fn begin(&self) -> Result<vk::CommandBuffer, CaptureError> {
        let device = self.ctx.device();
        let info = vk::CommandBufferBeginInfo::default()
            .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT);
        // SAFETY: the previous submission (if any) was waited for in `submit_and_wait`.
        unsafe {
            device
                .reset_command_buffer(self.cmd, Default::default())
                .map_err(vk_err("vkResetCommandBuffer"))?;
            device
                .begin_command_buffer(self.cmd, &info)
                .map_err(vk_err("vkBeginCommandBuffer"))?;
        }
        Ok(self.cmd)
    }

    /// Ends recording, submits, and waits for the GPU to finish.
    pub(crate) fn submit_and_wait(&self) -> Result<(), CaptureError> {
        let device = self.ctx.device();
        let cmds = [self.cmd];
        let submit = [vk::SubmitInfo::default().command_buffers(&cmds)];
        // SAFETY: the command buffer is in the recording state (from `begin`) and the fence is
        // unsignalled (reset after every wait).
        unsafe {
            device
                .end_command_buffer(self.cmd)
                .map_err(vk_err("vkEndCommandBuffer"))?;
            device
                .queue_submit(self.ctx.queue(), &submit, self.fence)
                .map_err(vk_err("vkQueueSubmit"))?;
            device
                .wait_for_fences(&[self.fence], true, FENCE_TIMEOUT_NS)
                .map_err(vk_err("vkWaitForFences"))?;
            device
                .reset_fences(&[self.fence])
                .map_err(vk_err("vkResetFences"))?;
        }
        Ok(())
    }
}

impl Drop for Submitter {
    fn drop(&mut self) {
        let device = self.ctx.device();
        // SAFETY: every submission was waited for; null handles are ignored.
        unsafe {
            let _ = device.queue_wait_idle(self.ctx.queue());
            device.destroy_fence(self.fence, None);
            device.destroy_command_pool(self.pool, None);
        }
    }
}

/// Serialises 32-bit words for `vkCmdPushConstants` (little-endian, as every Vulkan target is).
pub(crate) fn push_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
