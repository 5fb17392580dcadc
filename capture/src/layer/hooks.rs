//! The Vulkan layer's entry points and hooks (loader–layer interface version 2).
//!
//! The cdylib `capture/layer` exports [`negotiate`], [`get_instance_proc_addr`] and
//! [`get_device_proc_addr`] under their Vulkan names. Hooks: instance and device creation and
//! destruction (to build dispatch tables for the next layer down), `vkGetDeviceQueue(2)` (to
//! learn each queue's family), swapchain creation (adds `TRANSFER_SRC` usage when the surface
//! allows it and the format is one we convert) and destruction, and `vkQueuePresentKHR`.
//!
//! Every hook calls down the chain whatever happens to our part: the capture work runs inside
//! [`guard`], which catches panics, logs, and switches capture off for the process. A panic
//! never crosses the FFI boundary.

use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ash::vk::{self, Handle};

use super::grab::{Grab, SetDeviceLoaderData};
pub use super::loader::NegotiateLayerInterface;
use super::loader::{
    LAYER_LINK_INFO, LAYER_NEGOTIATE_INTERFACE_STRUCT, LOADER_DATA_CALLBACK, LayerDeviceLink,
    LayerInstanceLink, cast, find_layer_info, key,
};
use super::worker::{self, Job};
use crate::CaptureError;
use crate::convert::SourceFormat;
use crate::ring::FrameMeta;
use crate::vk::VkContext;

/// Grabs (frames in flight) per device.
const GRABS: usize = 3;
/// Longest the layer waits for its own in-flight frames when the game tears something down.
const TEARDOWN_WAIT: Duration = Duration::from_secs(3);

/// Set when any of our code panicked: capture stays off, hooks only pass calls down.
static DISABLED: AtomicBool = AtomicBool::new(false);
/// Next frame id (counts presents of the captured swapchain, dropped ones included).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Runs our part of a hook; on panic logs, disables capture and returns `None`.
fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(_) => {
            DISABLED.store(true, Ordering::Relaxed);
            tracing::error!(
                hook = what,
                "stratus capture: internal error; capture is off"
            );
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- per-instance and per-device state ----

struct InstanceData {
    instance: ash::Instance,
    next_gipa: vk::PFN_vkGetInstanceProcAddr,
}

struct SwapchainFns {
    create: Option<vk::PFN_vkCreateSwapchainKHR>,
    destroy: Option<vk::PFN_vkDestroySwapchainKHR>,
    images: Option<vk::PFN_vkGetSwapchainImagesKHR>,
    present: Option<vk::PFN_vkQueuePresentKHR>,
    get_queue: vk::PFN_vkGetDeviceQueue,
    get_queue2: Option<vk::PFN_vkGetDeviceQueue2>,
    destroy_device: vk::PFN_vkDestroyDevice,
}

struct Swapchain {
    images: Vec<vk::Image>,
    format: SourceFormat,
    width: u32,
    height: u32,
}

struct Slot {
    grab: Arc<Grab>,
    busy: Arc<AtomicBool>,
}

#[derive(Default)]
struct Capture {
    swapchains: HashMap<vk::SwapchainKHR, Swapchain>,
    /// Captured swapchains, oldest first; the last is the one captured.
    order: Vec<vk::SwapchainKHR>,
    /// Grabs for the current size, format and queue family.
    slots: Vec<Slot>,
    slots_key: Option<(u32, u32, SourceFormat, u32)>,
    /// Grabs of an earlier size still in flight when replaced.
    retired: Vec<Slot>,
    /// The context for the queue family `slots` were made for.
    ctx: Option<Arc<VkContext>>,
    /// Set after a failure that makes capture on this device unsafe (device lost).
    off: bool,
    failed: Arc<AtomicBool>,
}

struct DeviceData {
    device: ash::Device,
    instance: Option<Arc<InstanceData>>,
    physical: vk::PhysicalDevice,
    next_gdpa: vk::PFN_vkGetDeviceProcAddr,
    loader_data: Option<SetDeviceLoaderData>,
    fns: SwapchainFns,
    memory: vk::PhysicalDeviceMemoryProperties,
    families: Vec<vk::QueueFamilyProperties>,
    name: String,
    queues: Mutex<HashMap<vk::Queue, u32>>,
    capture: Mutex<Capture>,
}

static INSTANCES: Mutex<Option<HashMap<usize, Arc<InstanceData>>>> = Mutex::new(None);
static DEVICES: Mutex<Option<HashMap<usize, Arc<DeviceData>>>> = Mutex::new(None);

fn instance_by_key(k: usize) -> Option<Arc<InstanceData>> {
    lock(&INSTANCES).as_ref()?.get(&k).cloned()
}

fn device_by_key(k: usize) -> Option<Arc<DeviceData>> {
    lock(&DEVICES).as_ref()?.get(&k).cloned()
}

macro_rules! hook_table {
    ($($name:literal => $f:expr),* $(,)?) => {
        fn lookup_hook(name: &CStr) -> vk::PFN_vkVoidFunction {
            $(
                if name.to_bytes() == $name.as_bytes() {
                    // SAFETY: every hook is an `extern "system"` fn; the loader casts it back
                    // to the type of the entry point it asked for, which is the hook's type.
                    return Some(unsafe { std::mem::transmute::<*const (), unsafe extern "system" fn()>($f as *const ()) });
                }
            )*
            None
        }
    };
}

hook_table! {
    "vkGetInstanceProcAddr" => get_instance_proc_addr as vk::PFN_vkGetInstanceProcAddr,
    "vkGetDeviceProcAddr" => get_device_proc_addr as vk::PFN_vkGetDeviceProcAddr,
    "vkCreateInstance" => create_instance as vk::PFN_vkCreateInstance,
    "vkDestroyInstance" => destroy_instance as vk::PFN_vkDestroyInstance,
    "vkCreateDevice" => create_device as vk::PFN_vkCreateDevice,
    "vkDestroyDevice" => destroy_device as vk::PFN_vkDestroyDevice,
    "vkGetDeviceQueue" => get_device_queue as vk::PFN_vkGetDeviceQueue,
    "vkGetDeviceQueue2" => get_device_queue2 as vk::PFN_vkGetDeviceQueue2,
    "vkCreateSwapchainKHR" => create_swapchain as vk::PFN_vkCreateSwapchainKHR,
    "vkDestroySwapchainKHR" => destroy_swapchain as vk::PFN_vkDestroySwapchainKHR,
    "vkQueuePresentKHR" => queue_present as vk::PFN_vkQueuePresentKHR,
}

/// Device-level names we hook (returned by `vkGetDeviceProcAddr` only if the next layer has
/// them, so a disabled extension stays invisible).
const DEVICE_HOOKS: &[&str] = &[
    "vkGetDeviceProcAddr",
    "vkDestroyDevice",
    "vkGetDeviceQueue",
    "vkGetDeviceQueue2",
    "vkCreateSwapchainKHR",
    "vkDestroySwapchainKHR",
    "vkQueuePresentKHR",
];

// ---- exported entry points ----

/// `vkNegotiateLoaderLayerInterfaceVersion`: agrees on interface version 2.
///
/// # Safety
/// Called by the Vulkan loader with a valid (or null) structure.
pub unsafe extern "system" fn negotiate(info: *mut NegotiateLayerInterface) -> vk::Result {
    if info.is_null() {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    }
    // SAFETY: the loader passes a valid, writable structure.
    unsafe {
        if (*info).s_type != LAYER_NEGOTIATE_INTERFACE_STRUCT
            || (*info).loader_layer_interface_version < 2
        {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        (*info).loader_layer_interface_version = 2;
        (*info).pfn_get_instance_proc_addr = Some(get_instance_proc_addr);
        (*info).pfn_get_device_proc_addr = Some(get_device_proc_addr);
        (*info).pfn_get_physical_device_proc_addr = std::ptr::null();
    }
    vk::Result::SUCCESS
}

/// `vkGetInstanceProcAddr`: our hooks, else the next layer's functions.
///
/// # Safety
/// Called by the loader or the application with a valid name.
pub unsafe extern "system" fn get_instance_proc_addr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    if name.is_null() {
        return None;
    }
    // SAFETY: the caller passes a NUL-terminated name.
    let cname = unsafe { CStr::from_ptr(name) };
    if let Some(f) = lookup_hook(cname) {
        return Some(f);
    }
    if instance == vk::Instance::null() {
        return None;
    }
    // SAFETY: a non-null instance is a valid dispatchable handle.
    let data = instance_by_key(unsafe { key(instance.as_raw()) })?;
    // SAFETY: forwarding the caller's arguments to the next layer.
    unsafe { (data.next_gipa)(instance, name) }
}

/// `vkGetDeviceProcAddr`: our device hooks (when the next layer has the function), else the
/// next layer's.
///
/// # Safety
/// Called by the loader or the application with a valid device and name.
pub unsafe extern "system" fn get_device_proc_addr(
    device: vk::Device,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    if name.is_null() || device == vk::Device::null() {
        return None;
    }
    // SAFETY: a valid dispatchable handle.
    let data = device_by_key(unsafe { key(device.as_raw()) })?;
    // SAFETY: forwarding the caller's arguments to the next layer.
    let next = unsafe { (data.next_gdpa)(device, name) };
    // SAFETY: NUL-terminated name from the caller.
    let cname = unsafe { CStr::from_ptr(name) };
    let ours = cname
        .to_str()
        .is_ok_and(|n| DEVICE_HOOKS.contains(&n))
        .then(|| lookup_hook(cname))
        .flatten();
    match (next, ours) {
        (Some(_), Some(f)) => Some(f),
        _ => next,
    }
}

// ---- instance ----

unsafe extern "system" fn create_instance(
    info: *const vk::InstanceCreateInfo<'_>,
    alloc: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::Instance,
) -> vk::Result {
    // SAFETY: the loader passes a valid create info whose chain holds our link.
    let link_info = unsafe {
        find_layer_info(
            (*info).p_next,
            vk::StructureType::LOADER_INSTANCE_CREATE_INFO,
            LAYER_LINK_INFO,
        )
    };
    if link_info.is_null() {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    }
    // SAFETY: the link list is valid; advancing it hands the next layer its own link, as the
    // loader–layer interface requires.
    let next_gipa = unsafe {
        let link = (*link_info).u as *mut LayerInstanceLink;
        if link.is_null() {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        (*link_info).u = (*link).next as *mut c_void;
        (*link).next_get_instance_proc_addr
    };
    // SAFETY: looking up a global command with a null instance is allowed.
    let Some(next_create) = (unsafe {
        cast::<vk::PFN_vkCreateInstance>(next_gipa(
            vk::Instance::null(),
            c"vkCreateInstance".as_ptr(),
        ))
    }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: forwarding the application's arguments.
    let result = unsafe { next_create(info, alloc, out) };
    if result != vk::Result::SUCCESS {
        return result;
    }
    guard("vkCreateInstance", || {
        // SAFETY: `out` holds the new instance; the loader functions come from the next layer.
        let instance = unsafe { *out };
        // SAFETY: as above.
        let ash_instance = unsafe {
            ash::Instance::load_with(
                |name| std::mem::transmute(next_gipa(instance, name.as_ptr())),
                instance,
            )
        };
        let data = Arc::new(InstanceData {
            instance: ash_instance,
            next_gipa,
        });
        // SAFETY: valid dispatchable handle.
        let k = unsafe { key(instance.as_raw()) };
        lock(&INSTANCES)
            .get_or_insert_with(HashMap::new)
            .insert(k, data);
        tracing::debug!("stratus capture: instance created");
    });
    result
}

unsafe extern "system" fn destroy_instance(
    instance: vk::Instance,
    alloc: *const vk::AllocationCallbacks<'_>,
) {
    if instance == vk::Instance::null() {
        return;
    }
    // SAFETY: valid dispatchable handle.
    let k = unsafe { key(instance.as_raw()) };
    let data = lock(&INSTANCES).as_mut().and_then(|m| m.remove(&k));
    if let Some(data) = data {
        // SAFETY: forwarding to the next layer's destroy.
        unsafe { (data.instance.fp_v1_0().destroy_instance)(instance, alloc) };
    }
}

// ---- device ----

unsafe extern "system" fn create_device(
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
        let (memory, families, name) = match &instance_data {
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

unsafe extern "system" fn destroy_device(
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

unsafe extern "system" fn get_device_queue(
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

unsafe extern "system" fn get_device_queue2(
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

// ---- swapchains ----

/// Captured swapchains of every device, oldest first; the last is captured.
static TARGETS: Mutex<Vec<(usize, vk::SwapchainKHR)>> = Mutex::new(Vec::new());

fn forget_swapchain(device_key: usize, sc: vk::SwapchainKHR) {
    lock(&TARGETS).retain(|t| *t != (device_key, sc));
}

fn is_target(device_key: usize, sc: vk::SwapchainKHR) -> bool {
    lock(&TARGETS).last() == Some(&(device_key, sc))
}

/// Whether we can capture a swapchain of this create info, and if so its source format.
fn capturable(data: &DeviceData, info: &vk::SwapchainCreateInfoKHR<'_>) -> Option<SourceFormat> {
    if DISABLED.load(Ordering::Relaxed) || lock(&data.capture).off {
        return None;
    }
    let Some(format) = SourceFormat::from_vk(info.image_format) else {
        tracing::warn!(format = ?info.image_format, "stratus capture: swapchain format not captured");
        return None;
    };
    let inst = data.instance.as_ref()?;
    // SAFETY: looking up an instance function from the next layer.
    let caps_fn = unsafe {
        cast::<vk::PFN_vkGetPhysicalDeviceSurfaceCapabilitiesKHR>((inst.next_gipa)(
            inst.instance.handle(),
            c"vkGetPhysicalDeviceSurfaceCapabilitiesKHR".as_ptr(),
        ))
    }?;
    let mut caps = vk::SurfaceCapabilitiesKHR::default();
    // SAFETY: valid physical device and surface (from the application's create info).
    let r = unsafe { caps_fn(data.physical, info.surface, &mut caps) };
    if r != vk::Result::SUCCESS
        || !caps
            .supported_usage_flags
            .contains(vk::ImageUsageFlags::TRANSFER_SRC)
    {
        tracing::warn!("stratus capture: surface cannot be a copy source; not captured");
        return None;
    }
    Some(format)
}

unsafe extern "system" fn create_swapchain(
    device: vk::Device,
    info: *const vk::SwapchainCreateInfoKHR<'_>,
    alloc: *const vk::AllocationCallbacks<'_>,
    out: *mut vk::SwapchainKHR,
) -> vk::Result {
    // SAFETY: valid dispatchable handle.
    let k = unsafe { key(device.as_raw()) };
    let Some(data) = device_by_key(k) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    let Some(next) = data.fns.create else {
        return vk::Result::ERROR_EXTENSION_NOT_PRESENT;
    };
    // SAFETY: the application's create info is valid for the duration of the call.
    let app_info = unsafe { &*info };
    let format = guard("vkCreateSwapchainKHR", || capturable(&data, app_info)).flatten();
    let mut result = vk::Result::ERROR_INITIALIZATION_FAILED;
    let mut captured = false;
    if format.is_some() {
        let mut ours = *app_info;
        ours.image_usage |= vk::ImageUsageFlags::TRANSFER_SRC;
        // SAFETY: the application's create info with one more usage bit the surface supports.
        result = unsafe { next(device, &ours, alloc, out) };
        captured = result == vk::Result::SUCCESS;
    }
    if !captured {
        // SAFETY: forwarding the application's arguments unchanged.
        result = unsafe { next(device, info, alloc, out) };
    }
    if result != vk::Result::SUCCESS || !captured {
        return result;
    }
    // SAFETY: the next layer wrote the swapchain.
    let sc = unsafe { *out };
    guard("vkCreateSwapchainKHR", || {
        let Some(images_fn) = data.fns.images else {
            return;
        };
        let mut count = 0u32;
        // SAFETY: standard two-call enumeration on the swapchain just made.
        let images = unsafe {
            if images_fn(device, sc, &mut count, std::ptr::null_mut()) != vk::Result::SUCCESS {
                return;
            }
            let mut images = vec![vk::Image::null(); count as usize];
            if images_fn(device, sc, &mut count, images.as_mut_ptr()) != vk::Result::SUCCESS {
                return;
            }
            images.truncate(count as usize);
            images
        };
        let Some(format) = format else { return };
        let extent = app_info.image_extent;
        tracing::info!(
            width = extent.width,
            height = extent.height,
            ?format,
            images = images.len(),
            "stratus capture: capturing a new swapchain"
        );
        lock(&data.capture).swapchains.insert(
            sc,
            Swapchain {
                images,
                format,
                width: extent.width,
                height: extent.height,
            },
        );
        lock(&data.capture).order.push(sc);
        lock(&TARGETS).push((k, sc));
    });
    result
}

unsafe extern "system" fn destroy_swapchain(
    device: vk::Device,
    sc: vk::SwapchainKHR,
    alloc: *const vk::AllocationCallbacks<'_>,
) {
    // SAFETY: valid dispatchable handle.
    let k = unsafe { key(device.as_raw()) };
    let Some(data) = device_by_key(k) else {
        return;
    };
    guard("vkDestroySwapchainKHR", || {
        forget_swapchain(k, sc);
        let mut cap = lock(&data.capture);
        cap.swapchains.remove(&sc);
        cap.order.retain(|s| *s != sc);
    });
    if let Some(next) = data.fns.destroy {
        // SAFETY: forwarding the application's arguments.
        unsafe { next(device, sc, alloc) };
    }
}

// ---- present ----

unsafe extern "system" fn queue_present(
    queue: vk::Queue,
    info: *const vk::PresentInfoKHR<'_>,
) -> vk::Result {
    // SAFETY: valid dispatchable handle; a queue shares its device's key.
    let Some(data) = device_by_key(unsafe { key(queue.as_raw()) }) else {
        return vk::Result::ERROR_DEVICE_LOST;
    };
    let Some(next) = data.fns.present else {
        return vk::Result::ERROR_EXTENSION_NOT_PRESENT;
    };
    // SAFETY: the application's present info is valid for the call.
    let app_info = unsafe { &*info };
    let pending = if DISABLED.load(Ordering::Relaxed) {
        None
    } else {
        guard("vkQueuePresentKHR", || {
            capture_present(&data, queue, app_info)
        })
        .flatten()
    };
    let result = match &pending {
        Some(p) => {
            let waits = [p.wait];
            let mut ours = *app_info;
            ours.wait_semaphore_count = 1;
            ours.p_wait_semaphores = waits.as_ptr();
            // SAFETY: the application's present, now waiting on our copy, which itself waited
            // on the application's semaphores.
            unsafe { next(queue, &ours) }
        }
        // SAFETY: forwarding the application's arguments unchanged.
        None => unsafe { next(queue, info) },
    };
    if result == vk::Result::ERROR_DEVICE_LOST {
        guard("vkQueuePresentKHR", || {
            tracing::warn!("stratus capture: device lost; capture stops on this device");
            lock(&data.capture).off = true;
        });
    } else if let Some(p) = pending {
        guard("vkQueuePresentKHR", || finish_present(&data, queue, p));
    }
    // Like a display's vsync, where the node asks for it (Xvfb has none).
    if let Some(pacer) = PACER.get_or_init(super::pacer::Pacer::from_env) {
        pacer.wait();
    }
    result
}

/// The present pacer [`super::pacer::FPS_ENV`] asks for, read once.
static PACER: std::sync::OnceLock<Option<super::pacer::Pacer>> = std::sync::OnceLock::new();

/// A frame whose copy is submitted: the present waits for `wait`; the conversion follows.
struct Pending {
    wait: vk::Semaphore,
    job: Job,
}

/// After the present: submits the conversion and hands the frame to the worker.
fn finish_present(data: &DeviceData, queue: vk::Queue, mut p: Pending) {
    let Some(worker) = worker::get() else { return };
    let start = Instant::now();
    match p.job.grab.submit_convert(queue) {
        Ok(()) => {
            p.job.meta.hook_ns += start.elapsed().as_nanos() as u64;
            worker.send(p.job);
        }
        Err(e) => {
            // The grab stays busy (its fence will never signal), so it is never reused.
            tracing::error!(error = %e, "stratus capture: conversion submit failed; capture stops on this device");
            lock(&data.capture).off = true;
            worker.count_drop();
        }
    }
}

/// Our part of a present before it: picks the captured swapchain, submits the copy, and returns
/// the frame whose semaphore the present must wait for (None: present unchanged).
fn capture_present(
    data: &DeviceData,
    queue: vk::Queue,
    info: &vk::PresentInfoKHR<'_>,
) -> Option<Pending> {
    let entered = Instant::now();
    // SAFETY: valid dispatchable handle.
    let k = unsafe { key(data.device.handle().as_raw()) };
    let count = info.swapchain_count as usize;
    if count == 0 || info.p_swapchains.is_null() || info.p_image_indices.is_null() {
        return None;
    }
    // SAFETY: the application's arrays hold `swapchain_count` entries.
    let (swapchains, indices) = unsafe {
        (
            std::slice::from_raw_parts(info.p_swapchains, count),
            std::slice::from_raw_parts(info.p_image_indices, count),
        )
    };
    let i = swapchains.iter().position(|&sc| is_target(k, sc))?;
    let meta_id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let present_ns = crate::clock::monotonic_ns();
    let worker = worker::get()?;
    if !worker.connected() {
        worker.count_skip();
        return None;
    }
    let frame = FrameMeta {
        frame_id: meta_id,
        present_ns,
        width: 0,
        height: 0,
        hook_ns: 0,
    };
    let pending = submit_frame(data, queue, info, swapchains[i], indices[i], frame, entered);
    // Every id a frame was given either reaches the ring or is counted as dropped, so the
    // reader can tell drops from gaps.
    if pending.is_none() {
        worker.count_drop();
    }
    pending
}

/// Submits the copy of one present of the captured swapchain; None when the frame is dropped.
fn submit_frame(
    data: &DeviceData,
    queue: vk::Queue,
    info: &vk::PresentInfoKHR<'_>,
    swapchain: vk::SwapchainKHR,
    image_index: u32,
    mut frame: FrameMeta,
    entered: Instant,
) -> Option<Pending> {
    let none = None;
    let mut cap = lock(&data.capture);
    if cap.off || cap.failed.load(Ordering::Relaxed) {
        cap.off = true;
        return none;
    }
    let Some((image, format, width, height)) = cap.swapchains.get(&swapchain).and_then(|sc| {
        Some((
            *sc.images.get(image_index as usize)?,
            sc.format,
            sc.width,
            sc.height,
        ))
    }) else {
        return none;
    };
    let Some(family) = lock(&data.queues).get(&queue).copied() else {
        return none;
    };
    let slots_key = (width, height, format, family);
    if cap.slots_key != Some(slots_key)
        && let Err(e) = rebuild(data, &mut cap, slots_key)
    {
        tracing::error!(error = %e, "stratus capture: cannot set up capture; capture stops on this device");
        cap.off = true;
        return none;
    }
    let Some(slot) = cap.slots.iter().find(|s| !s.busy.load(Ordering::Acquire)) else {
        return none;
    };
    let waits = if info.wait_semaphore_count == 0 || info.p_wait_semaphores.is_null() {
        &[][..]
    } else {
        // SAFETY: the application's array holds `wait_semaphore_count` entries.
        unsafe {
            std::slice::from_raw_parts(info.p_wait_semaphores, info.wait_semaphore_count as usize)
        }
    };
    match slot
        .grab
        .submit_copy(queue, image, vk::ImageLayout::PRESENT_SRC_KHR, waits)
    {
        Ok(wait) => {
            slot.busy.store(true, Ordering::Release);
            frame.width = width;
            frame.height = height;
            frame.hook_ns = entered.elapsed().as_nanos() as u64;
            Some(Pending {
                wait,
                job: Job {
                    grab: slot.grab.clone(),
                    busy: slot.busy.clone(),
                    meta: frame,
                    failed: cap.failed.clone(),
                },
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "stratus capture: copy submit failed; capture stops on this device");
            cap.off = true;
            none
        }
    }
}

/// Replaces the grabs with new ones for `(width, height, format, family)`.
fn rebuild(
    data: &DeviceData,
    cap: &mut Capture,
    (width, height, format, family): (u32, u32, SourceFormat, u32),
) -> Result<(), CaptureError> {
    let old: Vec<Slot> = cap.slots.drain(..).collect();
    cap.retired.extend(old);
    let retired = std::mem::take(&mut cap.retired);
    let (done, busy): (Vec<Slot>, Vec<Slot>) = retired
        .into_iter()
        .partition(|s| !s.busy.load(Ordering::Acquire));
    drop(done);
    cap.retired = busy;
    cap.slots_key = None;
    let compute = data
        .families
        .get(family as usize)
        .is_some_and(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE));
    if !compute {
        return Err(CaptureError::NoDevice);
    }
    let ctx = match &cap.ctx {
        Some(ctx) if ctx.queue_family() == family => ctx.clone(),
        _ => VkContext::borrowed(
            data.device.clone(),
            data.physical,
            vk::Queue::null(),
            family,
            data.memory,
            data.name.clone(),
        ),
    };
    let mut slots = Vec::with_capacity(GRABS);
    for _ in 0..GRABS {
        slots.push(Slot {
            grab: Arc::new(Grab::new(&ctx, data.loader_data, width, height, format)?),
            busy: Arc::new(AtomicBool::new(false)),
        });
    }
    tracing::info!(width, height, ?format, device = %data.name, "stratus capture: capture resources ready");
    cap.ctx = Some(ctx);
    cap.slots = slots;
    cap.slots_key = Some((width, height, format, family));
    Ok(())
}
