//! The Stratus capture layer: a Vulkan layer, built as `libstratus_capture_layer.so`, that a
//! node enables for a title through its environment (`VK_ADD_LAYER_PATH` with the manifest
//! `capture::layer::LayerInstall` writes, and `VK_INSTANCE_LAYERS=VK_LAYER_STRATUS_capture`).
//!
//! This crate only exports the loader's three entry points; everything else lives in
//! `capture::layer` (hooks, GPU copy and conversion, the worker thread) and `capture::ring`
//! (the shared-memory protocol). No panic crosses these functions: each one catches unwinding
//! and answers as a layer that is not there would.
//!
//! Logging goes to standard error, filtered by `STRATUS_CAPTURE_LOG` (default `warn`).
#![deny(missing_docs)]

use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ash::vk;
use capture::layer::hooks;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_CAPTURE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // A second call (several instances) finds the subscriber set and changes nothing.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Loader–layer interface negotiation (version 2).
///
/// # Safety
/// Called by the Vulkan loader with a valid structure.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vkNegotiateLoaderLayerInterfaceVersion(
    info: *mut hooks::NegotiateLayerInterface,
) -> vk::Result {
    catch_unwind(AssertUnwindSafe(|| {
        init_logging();
        // SAFETY: forwarding the loader's argument.
        unsafe { hooks::negotiate(info) }
    }))
    .unwrap_or(vk::Result::ERROR_INITIALIZATION_FAILED)
}

/// The layer's `vkGetInstanceProcAddr`.
///
/// # Safety
/// Called by the loader or application with a valid instance (or null) and name.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vkGetInstanceProcAddr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: forwarding the caller's arguments.
    catch_unwind(AssertUnwindSafe(|| unsafe {
        hooks::get_instance_proc_addr(instance, name)
    }))
    .unwrap_or(None)
}

/// The layer's `vkGetDeviceProcAddr`.
///
/// # Safety
/// Called by the loader or application with a valid device and name.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn vkGetDeviceProcAddr(
    device: vk::Device,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: forwarding the caller's arguments.
    catch_unwind(AssertUnwindSafe(|| unsafe {
        hooks::get_device_proc_addr(device, name)
    }))
    .unwrap_or(None)
}
