//! The present hook: on each present of the captured swapchain, copies the presented image on
//! the game's queue (the present then waits for the copy alone), submits the conversion after
//! the present (GPU path; on the CPU path the worker converts), and hands the frame to the
//! worker thread. Also the grabs (frames in flight) of
//! each device, rebuilt when the captured size, format or queue family changes, and the pacer
//! that stands in for vertical sync where the node asks for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use ash::vk::{self, Handle};

use super::device::{DeviceData, device_by_key};
use super::swapchain::{Swapchain, is_target};
use super::{DISABLED, guard, lock};
use crate::CaptureError;
use crate::convert::SourceFormat;
use crate::layer::grab::Grab;
use crate::layer::loader::key;
use crate::layer::pacer::Pacer;
use crate::layer::worker::{self, Job};
use crate::path::{CapturePath, PATH_ENV};
use crate::ring::FrameMeta;
use crate::vk::VkContext;

/// Grabs (frames in flight) per device.
const GRABS: usize = 3;
/// Next frame id (counts presents of the captured swapchain, dropped ones included).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// One grab and whether a frame of it is still in flight (the worker clears `busy`).
pub(super) struct Slot {
    pub(super) grab: Arc<Grab>,
    pub(super) busy: Arc<AtomicBool>,
}

/// What one device captures: its captured swapchains and the grabs for the current one.
#[derive(Default)]
pub(super) struct Capture {
    /// Captured swapchains by handle.
    pub(super) swapchains: HashMap<vk::SwapchainKHR, Swapchain>,
    /// Captured swapchains, oldest first; the last is the one captured.
    pub(super) order: Vec<vk::SwapchainKHR>,
    /// Grabs for the current size, format and queue family.
    pub(super) slots: Vec<Slot>,
    pub(super) slots_key: Option<(u32, u32, SourceFormat, u32)>,
    /// Grabs of an earlier size still in flight when replaced.
    pub(super) retired: Vec<Slot>,
    /// The context for the queue family `slots` were made for.
    pub(super) ctx: Option<Arc<VkContext>>,
    /// Set after a failure that makes capture on this device unsafe (device lost).
    pub(super) off: bool,
    /// Set by the worker when a fence wait found the device lost.
    pub(super) failed: Arc<AtomicBool>,
}

pub(super) unsafe extern "system" fn queue_present(
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
    if let Some(pacer) = PACER.get_or_init(Pacer::from_env) {
        pacer.wait();
    }
    result
}

/// The present pacer [`crate::layer::pacer::FPS_ENV`] asks for, read once.
static PACER: OnceLock<Option<Pacer>> = OnceLock::new();

/// The capture path [`PATH_ENV`] asks for, read once; a value the layer does not know is
/// logged and read as `auto`, since the game must run whatever the node sent.
fn capture_path() -> CapturePath {
    static PATH: OnceLock<CapturePath> = OnceLock::new();
    *PATH.get_or_init(|| {
        CapturePath::from_env().unwrap_or_else(|e| {
            tracing::error!(error = %e, "stratus capture: {PATH_ENV} ignored; capturing on the auto path");
            CapturePath::Auto
        })
    })
}

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
            data.device_type,
        ),
    };
    let setting = capture_path();
    let path = setting.resolve(data.device_type);
    let mut slots = Vec::with_capacity(GRABS);
    for _ in 0..GRABS {
        slots.push(Slot {
            grab: Arc::new(Grab::new(
                &ctx,
                data.loader_data,
                width,
                height,
                format,
                path,
            )?),
            busy: Arc::new(AtomicBool::new(false)),
        });
    }
    let path = slots.first().map_or(path, |s| s.grab.path());
    tracing::info!(width, height, ?format, device = %data.name, device_type = ?data.device_type, %setting, %path, "stratus capture: capture resources ready");
    cap.ctx = Some(ctx);
    cap.slots = slots;
    cap.slots_key = Some((width, height, format, family));
    Ok(())
}
