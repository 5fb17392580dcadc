//! A small Vulkan context for compute work: instance, one device with a compute queue, and the
//! buffer, image and pipeline helpers the renderer and the converter share.
//!
//! Every call that can fail maps to [`CaptureError`] with the name of the call, and the two
//! failures a new user meets first — no loader, no driver — name the package that fixes them.

use std::ffi::CStr;
use std::sync::Arc;

use ash::vk;

use crate::CaptureError;

/// Shorthand for mapping a failed Vulkan call to [`CaptureError::Vulkan`].
pub(crate) fn vk_err(call: &'static str) -> impl Fn(vk::Result) -> CaptureError {
    move |result| CaptureError::Vulkan { call, result }
}

/// A Vulkan instance and logical device with one compute-capable queue.
///
/// Either owned (made by [`VkContext::new`], destroyed on drop) or borrowed from a game by the
/// capture layer ([`VkContext::borrowed`]), in which case drop leaves the device alone.
pub struct VkContext {
    _entry: Option<ash::Entry>,
    /// The instance, when this context owns it (and the device).
    instance: Option<ash::Instance>,
    physical: vk::PhysicalDevice,
    device: ash::Device,
    queue: vk::Queue,
    queue_family: u32,
    memory: vk::PhysicalDeviceMemoryProperties,
    device_name: String,
}

impl std::fmt::Debug for VkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VkContext")
            .field("device_name", &self.device_name)
            .field("queue_family", &self.queue_family)
            .finish_non_exhaustive()
    }
}

impl VkContext {
    /// Loads the Vulkan loader, creates an instance and opens the best device with a compute
    /// queue (discrete GPU, then integrated, then virtual, then CPU such as lavapipe).
    pub fn new() -> Result<Arc<Self>, CaptureError> {
        // SAFETY: loading libvulkan runs its initialisers; we rely on the system loader being sane.
        let entry = unsafe { ash::Entry::load() }
            .map_err(|e| CaptureError::LoaderMissing(e.to_string()))?;
        let app_info = vk::ApplicationInfo::default()
            .application_name(c"stratus")
            .engine_name(c"stratus")
            .api_version(vk::API_VERSION_1_1);
        let create_info = vk::InstanceCreateInfo::default().application_info(&app_info);
        // SAFETY: the create info and everything it points to live until the call returns.
        let instance = match unsafe { entry.create_instance(&create_info, None) } {
            Ok(instance) => instance,
            Err(vk::Result::ERROR_INCOMPATIBLE_DRIVER) => return Err(CaptureError::NoDevice),
            Err(result) => {
                return Err(CaptureError::Vulkan {
                    call: "vkCreateInstance",
                    result,
                });
            }
        };
        match Self::open_device(entry.clone(), instance.clone()) {
            Ok(ctx) => Ok(Arc::new(ctx)),
            Err(e) => {
                // SAFETY: no object created from this instance survives the failed open.
                unsafe { instance.destroy_instance(None) };
                Err(e)
            }
        }
    }

    fn open_device(entry: ash::Entry, instance: ash::Instance) -> Result<Self, CaptureError> {
        // SAFETY: `instance` is a valid instance.
        let devices = unsafe { instance.enumerate_physical_devices() }
            .map_err(vk_err("vkEnumeratePhysicalDevices"))?;
        let rank = |t: vk::PhysicalDeviceType| match t {
            vk::PhysicalDeviceType::DISCRETE_GPU => 0,
            vk::PhysicalDeviceType::INTEGRATED_GPU => 1,
            vk::PhysicalDeviceType::VIRTUAL_GPU => 2,
            vk::PhysicalDeviceType::CPU => 3,
            _ => 4,
        };
        let mut best: Option<(u32, vk::PhysicalDevice, u32)> = None;
        for pd in devices {
            // SAFETY: `pd` came from this instance.
            let props = unsafe { instance.get_physical_device_properties(pd) };
            // SAFETY: as above.
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            let Some(family) = families
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
            else {
                continue;
            };
            let r = rank(props.device_type);
            if best.is_none_or(|(br, _, _)| r < br) {
                best = Some((r, pd, family as u32));
            }
        }
        let (_, physical, queue_family) = best.ok_or(CaptureError::NoDevice)?;
        // SAFETY: `physical` came from this instance.
        let props = unsafe { instance.get_physical_device_properties(physical) };
        let device_name = props
            .device_name_as_c_str()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_string());
        let priorities = [1.0f32];
        let queue_info = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(queue_family)
            .queue_priorities(&priorities)];
        let device_info = vk::DeviceCreateInfo::default().queue_create_infos(&queue_info);
        // SAFETY: the create info is valid and outlives the call.
        let device = unsafe { instance.create_device(physical, &device_info, None) }
            .map_err(vk_err("vkCreateDevice"))?;
        // SAFETY: the queue family and index were requested at device creation.
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        // SAFETY: `physical` is valid.
        let memory = unsafe { instance.get_physical_device_memory_properties(physical) };
        tracing::info!(device = %device_name, "vulkan device opened");
        Ok(Self {
            _entry: Some(entry),
            instance: Some(instance),
            physical,
            device,
            queue,
            queue_family,
            memory,
            device_name,
        })
    }

    /// Wraps a device someone else created and will destroy (the game's, inside the capture
    /// layer). `device` dispatches to the next layer or the driver; `queue` must belong to
    /// `queue_family`, and `memory` describes `physical`.
    pub fn borrowed(
        device: ash::Device,
        physical: vk::PhysicalDevice,
        queue: vk::Queue,
        queue_family: u32,
        memory: vk::PhysicalDeviceMemoryProperties,
        device_name: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            _entry: None,
            instance: None,
            physical,
            device,
            queue,
            queue_family,
            memory,
            device_name,
        })
    }

    /// The logical device.
    pub fn device(&self) -> &ash::Device {
        &self.device
    }

    /// The compute queue.
    pub fn queue(&self) -> vk::Queue {
        self.queue
    }

    /// The compute queue's family index.
    pub fn queue_family(&self) -> u32 {
        self.queue_family
    }

    /// The physical device.
    pub fn physical_device(&self) -> vk::PhysicalDevice {
        self.physical
    }

    /// The physical device's memory types and heaps.
    pub fn memory_properties(&self) -> &vk::PhysicalDeviceMemoryProperties {
        &self.memory
    }

    /// The device's name as the driver reports it (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    fn memory_type(
        &self,
        bits: u32,
        flags: vk::MemoryPropertyFlags,
        what: &'static str,
    ) -> Result<u32, CaptureError> {
        (0..self.memory.memory_type_count)
            .find(|&i| {
                bits & (1 << i) != 0
                    && self.memory.memory_types[i as usize]
                        .property_flags
                        .contains(flags)
            })
            .ok_or(CaptureError::NoMemoryType(what))
    }
}

impl Drop for VkContext {
    fn drop(&mut self) {
        // A borrowed device belongs to the game, which destroys it itself.
        let Some(instance) = &self.instance else {
            return;
        };
        // SAFETY: every object created from this device holds an Arc to the context, so none is
        // alive any more; waiting idle makes sure no submitted work still uses them.
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_device(None);
            instance.destroy_instance(None);
        }
    }
}

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
    pub(crate) pipeline: vk::Pipeline,
    pub(crate) layout: vk::PipelineLayout,
    set_layout: vk::DescriptorSetLayout,
    pool: vk::DescriptorPool,
    pub(crate) set: vk::DescriptorSet,
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
        // SAFETY: valid create infos; handles stored as created so Drop cleans up on failure.
        unsafe {
            let info = vk::CommandPoolCreateInfo::default()
                .queue_family_index(ctx.queue_family())
                .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER);
            this.pool = device
                .create_command_pool(&info, None)
                .map_err(vk_err("vkCreateCommandPool"))?;
            let alloc = vk::CommandBufferAllocateInfo::default()
                .command_pool(this.pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1);
            this.cmd = device
                .allocate_command_buffers(&alloc)
                .map_err(vk_err("vkAllocateCommandBuffers"))?[0];
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
