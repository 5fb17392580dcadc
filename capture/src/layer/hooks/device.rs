//! Device hooks: creation (the dispatch table for the next layer down, the device's memory
//! and queue families), destruction (waits, bounded, for the frames still in flight), and
//! `vkGetDeviceQueue(2)`, which records the family of every queue the game asks for so that a
//! present knows where its copy runs.

use std::collections::HashMap;
use std::ffi::{CStr, c_void};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ash::vk::{self, Handle};

use super::instance::{InstanceData, instance_by_key};
use super::present::{Capture, Slot};
use super::swapchain::forget_swapchain;
use super::{guard, lock};
use crate::layer::grab::SetDeviceLoaderData;
use crate::layer::loader::{
    LAYER_LINK_INFO, LOADER_DATA_CALLBACK, LayerDeviceLink, cast, find_layer_info, key,
};
use crate::layer::worker;

/// Longest the layer waits for its own in-flight frames when the game tears something down.
const TEARDOWN_WAIT: Duration = Duration::from_secs(3);

/// The next layer's device functions the hooks call down to.
pub(super) struct SwapchainFns {
    pub(super) create: Option<vk::PFN_vkCreateSwapchainKHR>,
    pub(super) destroy: Option<vk::PFN_vkDestroySwapchainKHR>,
    pub(super) images: Option<vk::PFN_vkGetSwapchainImagesKHR>,
    pub(super) present: Option<vk::PFN_vkQueuePresentKHR>,
    pub(super) get_queue: vk::PFN_vkGetDeviceQueue,
    pub(super) get_queue2: Option<vk::PFN_vkGetDeviceQueue2>,
    pub(super) destroy_device: vk::PFN_vkDestroyDevice,
}

/// Everything the layer keeps for one of the game's devices.
pub(super) struct DeviceData {
    pub(super) device: ash::Device,
    pub(super) instance: Option<Arc<InstanceData>>,
    pub(super) physical: vk::PhysicalDevice,
    pub(super) next_gdpa: vk::PFN_vkGetDeviceProcAddr,
    pub(super) loader_data: Option<SetDeviceLoaderData>,
    pub(super) fns: SwapchainFns,
    pub(super) memory: vk::PhysicalDeviceMemoryProperties,
    pub(super) families: Vec<vk::QueueFamilyProperties>,
    pub(super) name: String,
    /// `CPU` for lavapipe and SwiftShader, which capture on the CPU path.
    pub(super) device_type: vk::PhysicalDeviceType,
    pub(super) queues: Mutex<HashMap<vk::Queue, u32>>,
    pub(super) capture: Mutex<Capture>,
}

/// Devices by their loader key.
static DEVICES: Mutex<Option<HashMap<usize, Arc<DeviceData>>>> = Mutex::new(None);

pub(super) fn device_by_key(k: usize) -> Option<Arc<DeviceData>> {
    lock(&DEVICES).as_ref()?.get(&k).cloned()
}

pub(super) unsafe extern "system" fn create_device(
    physical: vk::PhysicalDevice,
    info: *const vk::DeviceCreateInfo<'_>,
    alloc: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Device,
) -> vk::Result {
    // SAFETY: the loader passes a valid create info whose chain holds our link.
    let (link_info, data_info) = unsafe {
        (
            find_layer_info(
                (*info).p_next,
                vk::StructureType::LOADER_DEVICE_CREATE_INFO,
                LAYER_LINK_INFO,
            ),
            find_layer_info(
                (*info).p_next,
                vk::StructureType::LOADER_DEVICE_CREATE_INFO,
                LOADER_DATA_CALLBACK,
            ),
        )
    };
    if link_info.is_null() {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    }
    // SAFETY: as in create_instance: advance the chain for the next layer.
    let (next_gipa, next_gdpa) = unsafe {
        let link = (*link_info).u as *mut LayerDeviceLink;
        if link.is_null() {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        (*link_info).u = (*link).next as *mut c_void;
        (
            (*link).next_get_instance_proc_addr,
            (*link).next_get_device_proc_addr,
        )
    };
    let loader_data: Option<SetDeviceLoaderData> = if data_info.is_null() {
        None
    } else {
        // SAFETY: the union holds the loader's callback for this entry's `function`.
        unsafe {
            cast::<SetDeviceLoaderData>(std::mem::transmute::<*mut c_void, vk::PFN_vkVoidFunction>(
                (*data_info).u,
            ))
        }
    };
    // SAFETY: a physical device handle is dispatchable; its key is its instance's.
    let instance_data = instance_by_key(unsafe { key(physical.as_raw()) });
    let instance_handle = instance_data
        .as_ref()
        .map_or(vk::Instance::null(), |d| d.instance.handle());
    // SAFETY: looking up vkCreateDevice from the next layer.
    let Some(next_create) = (unsafe {
        cast::<vk::PFN_vkCreateDevice>(next_gipa(instance_handle, c"vkCreateDevice".as_ptr()))
    }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: forwarding the application's arguments.
    let result = unsafe { next_create(physical, info, alloc, out) };
    if result != vk::Result::SUCCESS {
        return result;
    }
    // SAFETY: `out` holds the new device.
    let device = unsafe { *out };
    // We cannot pass calls down without a dispatch table, so the table is built outside the
    // guard; it only looks functions up.
    // SAFETY: looking up device functions of the new device from the next layer.
    let lookup = |name: &CStr| unsafe { next_gdpa(device, name.as_ptr()) };
    // SAFETY: each lookup is cast to the type of the function it names.
    let fns = unsafe {
        let (Some(get_queue), Some(destroy_device)) = (
            cast::<vk::PFN_vkGetDeviceQueue>(lookup(c"vkGetDeviceQueue")),
            cast::<vk::PFN_vkDestroyDevice>(lookup(c"vkDestroyDevice")),
        ) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        SwapchainFns {
            create: cast(lookup(c"vkCreateSwapchainKHR")),
            destroy: cast(lookup(c"vkDestroySwapchainKHR")),
            images: cast(lookup(c"vkGetSwapchainImagesKHR")),
            present: cast(lookup(c"vkQueuePresentKHR")),
            get_queue,
            get_queue2: cast(lookup(c"vkGetDeviceQueue2")),
            destroy_device,
        }
    };
    // SAFETY: as above.
    let ash_device =
        unsafe { ash::Device::load_with(|name| std::mem::transmute(lookup(name)), device) };
    let made = guard("vkCreateDevice", || {
        let (memory, families, name, device_type) = match &instance_data {
            // SAFETY: `physical` belongs to this instance.
            Some(inst) => unsafe {
                let props = inst.instance.get_physical_device_properties(physical);
                (
                    inst.instance
                        .get_physical_device_memory_properties(physical),
                    inst.instance
                        .get_physical_device_queue_family_properties(physical),
                    props
                        .device_name_as_c_str()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    props.device_type,
                )
            },
            None => {
                tracing::warn!("stratus capture: device of an unknown instance; not captured");
                Default::default()
            }
        };
        let data = Arc::new(DeviceData {
            device: ash_device,
            instance: instance_data.clone(),
            physical,
            next_gdpa,
            loader_data,
            fns,
            memory,
            families,
            name,
            device_type,
            queues: Mutex::new(HashMap::new()),
            capture: Mutex::new(Capture::default()),
        });
        // SAFETY: valid dispatchable handle.
        let k = unsafe { key(device.as_raw()) };
        lock(&DEVICES)
            .get_or_insert_with(HashMap::new)
            .insert(k, data);
        // Start the worker now, so it is connected by the first present.
        worker::get();
    });
    if made.is_none() {
        // Without our record the hooks cannot pass calls down; undo and fail cleanly.
        // SAFETY: destroying the device we just created, with the application's allocator.
        unsafe {
            if let Some(destroy) = cast::<vk::PFN_vkDestroyDevice>(lookup(c"vkDestroyDevice")) {
                destroy(device, alloc);
            }
        }
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    }
    result
}

pub(super) unsafe extern "system" fn destroy_device(
    device: vk::Device,
    alloc: *const vk::AllocationCallbacks<'_>,
) {
    if device == vk::Device::null() {
        return;
    }
    // SAFETY: valid dispatchable handle.
    let k = unsafe { key(device.as_raw()) };
    let Some(data) = lock(&DEVICES).as_mut().and_then(|m| m.remove(&k)) else {
        return;
    };
    guard("vkDestroyDevice", || {
        let mut guard = lock(&data.capture);
        let cap = &mut *guard;
        let slots: Vec<Slot> = cap.slots.drain(..).chain(cap.retired.drain(..)).collect();
        release(&data, slots);
        cap.ctx = None;
        for sc in cap.order.drain(..) {
            forget_swapchain(k, sc);
        }
        cap.swapchains.clear();
        if let Some(w) = worker::get() {
            let (published, skipped, dropped) = w.counters();
            tracing::info!(
                published,
                skipped,
                dropped,
                "stratus capture: device destroyed"
            );
        }
    });
    // SAFETY: forwarding to the next layer; our objects on this device are gone.
    unsafe { (data.fns.destroy_device)(device, alloc) };
}

/// Waits (bounded) until the worker is done with `slots`, then drops them; a slot still busy
/// after the wait is leaked rather than destroyed under the worker.
fn release(data: &DeviceData, slots: Vec<Slot>) {
    let start = Instant::now();
    while slots.iter().any(|s| s.busy.load(Ordering::Acquire)) && start.elapsed() < TEARDOWN_WAIT {
        std::thread::sleep(Duration::from_millis(1));
    }
    for slot in slots {
        if slot.busy.load(Ordering::Acquire) {
            tracing::warn!(device = %data.name, "stratus capture: a frame is still in flight; leaking its resources");
            std::mem::forget(slot);
        }
    }
}

fn record_queue(device: vk::Device, queue: vk::Queue, family: u32) {
    if queue == vk::Queue::null() {
        return;
    }
    // SAFETY: valid dispatchable handle.
    if let Some(data) = device_by_key(unsafe { key(device.as_raw()) }) {
        lock(&data.queues).insert(queue, family);
    }
}

pub(super) unsafe extern "system" fn get_device_queue(
    device: vk::Device,
    family: u32,
    index: u32,
    out: *mut vk::Queue,
) {
    // SAFETY: valid dispatchable handle.
    let Some(data) = device_by_key(unsafe { key(device.as_raw()) }) else {
        return;
    };
    // SAFETY: forwarding the application's arguments.
    unsafe { (data.fns.get_queue)(device, family, index, out) };
    // SAFETY: the next layer wrote the queue.
    let queue = unsafe { *out };
    guard("vkGetDeviceQueue", || record_queue(device, queue, family));
}

pub(super) unsafe extern "system" fn get_device_queue2(
    device: vk::Device,
    info: *const vk::DeviceQueueInfo2<'_>,
    out: *mut vk::Queue,
) {
    // SAFETY: valid dispatchable handle.
    let Some(data) = device_by_key(unsafe { key(device.as_raw()) }) else {
        return;
    };
    let Some(next) = data.fns.get_queue2 else {
        return;
    };
    // SAFETY: forwarding the application's arguments.
    unsafe { next(device, info, out) };
    // SAFETY: valid info from the application and the queue the next layer wrote.
    let (queue, family) = unsafe { (*out, (*info).queue_family_index) };
    guard("vkGetDeviceQueue2", || record_queue(device, queue, family));
}
