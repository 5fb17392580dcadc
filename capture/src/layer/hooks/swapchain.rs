//! Swapchain hooks: creation (adds `TRANSFER_SRC` usage when the surface allows it and the
//! format is one we convert, and records the images) and destruction, and which swapchain is
//! captured: the most recently created one still alive, on any device.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use ash::vk::{self, Handle};

use super::device::{DeviceData, device_by_key};
use super::{DISABLED, guard, lock};
use crate::convert::SourceFormat;
use crate::layer::loader::{cast, key};

/// A captured swapchain: its images and what they hold.
pub(super) struct Swapchain {
    pub(super) images: Vec<vk::Image>,
    pub(super) format: SourceFormat,
    pub(super) width: u32,
    pub(super) height: u32,
}

/// Captured swapchains of every device, oldest first; the last is captured.
static TARGETS: Mutex<Vec<(usize, vk::SwapchainKHR)>> = Mutex::new(Vec::new());

pub(super) fn forget_swapchain(device_key: usize, sc: vk::SwapchainKHR) {
    lock(&TARGETS).retain(|t| *t != (device_key, sc));
}

pub(super) fn is_target(device_key: usize, sc: vk::SwapchainKHR) -> bool {
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

pub(super) unsafe extern "system" fn create_swapchain(
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

pub(super) unsafe extern "system" fn destroy_swapchain(
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
