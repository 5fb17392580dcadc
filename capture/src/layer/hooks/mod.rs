//! The Vulkan layer's entry points and hooks (loader–layer interface version 2).
//!
//! The cdylib `capture/layer` exports [`negotiate`], [`get_instance_proc_addr`] and
//! [`get_device_proc_addr`] under their Vulkan names; this file answers them from one table of
//! hooks, and the hooks live by what they track:
//!
//! - `instance`: instance creation and destruction (the next layer's instance functions);
//! - `device`: device creation and destruction (the dispatch table for the next layer down)
//!   and `vkGetDeviceQueue(2)` (to learn each queue's family);
//! - `swapchain`: swapchain creation (adds `TRANSFER_SRC` usage when the surface allows it and
//!   the format is one we convert) and destruction, and which swapchain is captured;
//! - `present`: `vkQueuePresentKHR`, the copy before the present, the conversion after it, and
//!   the grabs (frames in flight) of each device.
//!
//! Every hook calls down the chain whatever happens to our part: the capture work runs inside
//! `guard`, which catches panics, logs, and switches capture off for the process. A panic
//! never crosses the FFI boundary.

mod device;
mod instance;
mod present;
mod swapchain;

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use ash::vk::{self, Handle};

pub use super::loader::NegotiateLayerInterface;
use super::loader::{LAYER_NEGOTIATE_INTERFACE_STRUCT, key};
use device::{create_device, destroy_device, device_by_key, get_device_queue, get_device_queue2};
use instance::{create_instance, destroy_instance, instance_by_key};
use present::queue_present;
use swapchain::{create_swapchain, destroy_swapchain};

/// Set when any of our code panicked: capture stays off, hooks only pass calls down.
static DISABLED: AtomicBool = AtomicBool::new(false);

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
