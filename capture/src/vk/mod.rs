//! A small Vulkan context for compute work ([`VkContext`]: instance, one device with a compute
//! queue, owned or borrowed from a game), and what the renderer, the converter and the capture
//! layer build on it:
//!
//! - `resources`: buffers with their memory, compute pipelines with their descriptor set, a
//!   submit-and-wait command buffer (crate-internal);
//! - `commands`: the barriers, copy regions and command pools every recording here uses
//!   ([`image_barrier`], [`buffer_barrier`], [`image_copy`], [`COLOR_RANGE`],
//!   [`command_buffers`]), public with [`memory_type_index`] and [`vk_err`] so that the test
//!   title and the benchmarks, which drive devices of their own, record the same thing.
//!
//! Every call that can fail maps to [`CaptureError`] with the name of the call, and the two
//! failures a new user meets first — no loader, no driver — name the package that fixes them.

mod commands;
mod resources;

use std::sync::Arc;

use ash::vk;

pub use commands::{
    COLOR_RANGE, barrier_to_host, buffer_barrier, command_buffers, image_barrier, image_copy,
};
pub(crate) use resources::{Buffer, ComputePipeline, Submitter, push_bytes};

use crate::CaptureError;

/// Shorthand for mapping a failed Vulkan call to [`CaptureError::Vulkan`].
pub fn vk_err(call: &'static str) -> impl Fn(vk::Result) -> CaptureError {
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
    device_type: vk::PhysicalDeviceType,
}

impl std::fmt::Debug for VkContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VkContext")
            .field("device_name", &self.device_name)
            .field("device_type", &self.device_type)
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
        tracing::info!(device = %device_name, device_type = ?props.device_type, "vulkan device opened");
        Ok(Self {
            _entry: Some(entry),
            instance: Some(instance),
            physical,
            device,
            queue,
            queue_family,
            memory,
            device_name,
            device_type: props.device_type,
        })
    }

    /// Wraps a device someone else created and will destroy (the game's, inside the capture
    /// layer). `device` dispatches to the next layer or the driver; `queue` must belong to
    /// `queue_family`, and `memory`, `device_name` and `device_type` describe `physical`.
    pub fn borrowed(
        device: ash::Device,
        physical: vk::PhysicalDevice,
        queue: vk::Queue,
        queue_family: u32,
        memory: vk::PhysicalDeviceMemoryProperties,
        device_name: String,
        device_type: vk::PhysicalDeviceType,
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
            device_type,
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

    /// The device's type (`CPU` for lavapipe and SwiftShader), which
    /// [`crate::path::CapturePath::resolve`] chooses the conversion path by.
    pub fn device_type(&self) -> vk::PhysicalDeviceType {
        self.device_type
    }

    fn memory_type(
        &self,
        bits: u32,
        flags: vk::MemoryPropertyFlags,
        what: &'static str,
    ) -> Result<u32, CaptureError> {
        memory_type_index(&self.memory, bits, flags).ok_or(CaptureError::NoMemoryType(what))
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

/// The index of a memory type allowed by `bits` (a requirement's `memory_type_bits`) that has
/// all of `flags`, the first in the device's order.
pub fn memory_type_index(
    memory: &vk::PhysicalDeviceMemoryProperties,
    bits: u32,
    flags: vk::MemoryPropertyFlags,
) -> Option<u32> {
    (0..memory.memory_type_count).find(|&i| {
        bits & (1 << i) != 0
            && memory.memory_types[i as usize]
                .property_flags
                .contains(flags)
    })
}
