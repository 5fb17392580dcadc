//! [`Presenter`]: an X11 window (XCB), a swapchain, and frames uploaded from the CPU.
//!
//! The window lives on the X display in `DISPLAY` (Xvfb in tests); Vulkan comes from the
//! system loader, so layers enabled through the environment (or [`PresenterOptions::layers`])
//! apply to it as to any game.

use std::ffi::CString;
use std::time::{Duration, Instant};

use ash::vk;
use capture::CaptureError;
use capture::convert::SourceFormat;
use capture::vk::{command_buffers, image_barrier, image_copy, memory_type_index, vk_err};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt};
use x11rb::xcb_ffi::XCBConnection;

use crate::PresenterError;

fn err(what: impl std::fmt::Display) -> PresenterError {
    PresenterError::Window(what.to_string())
}

fn vkr(call: &'static str) -> impl Fn(vk::Result) -> PresenterError {
    move |result| vk_err(call)(result).into()
}

/// How to open a [`Presenter`].
#[derive(Debug, Clone)]
pub struct PresenterOptions {
    /// Window width.
    pub width: u32,
    /// Window height.
    pub height: u32,
    /// Layers to enable on the instance (besides any the environment enables).
    pub layers: Vec<String>,
    /// Preferred swapchain formats, best first; the surface's first format otherwise.
    pub formats: Vec<vk::Format>,
}

impl Default for PresenterOptions {
    fn default() -> Self {
        Self {
            width: 640,
            height: 480,
            layers: Vec::new(),
            formats: vec![vk::Format::B8G8R8A8_UNORM],
        }
    }
}

struct Upload {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut u8,
    len: usize,
}

/// A window with a swapchain that presents CPU-made images.
pub struct Presenter {
    _entry: ash::Entry,
    instance: ash::Instance,
    surface_fn: ash::khr::surface::Instance,
    physical: vk::PhysicalDevice,
    device: ash::Device,
    swapchain_fn: ash::khr::swapchain::Device,
    queue: vk::Queue,
    conn: XCBConnection,
    window: xproto::Window,
    surface: vk::SurfaceKHR,
    swapchain: vk::SwapchainKHR,
    images: Vec<vk::Image>,
    format: vk::Format,
    extent: vk::Extent2D,
    pool: vk::CommandPool,
    cmd: vk::CommandBuffer,
    acquired: vk::Semaphore,
    rendered: vk::Semaphore,
    fence: vk::Fence,
    memory: vk::PhysicalDeviceMemoryProperties,
    upload: Option<Upload>,
}

impl std::fmt::Debug for Presenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presenter")
            .field("format", &self.format)
            .field("extent", &self.extent)
            .finish_non_exhaustive()
    }
}

impl Presenter {
    /// Opens a window on `DISPLAY`, a device with a queue that can present to it, and a
    /// swapchain of the window's size.
    pub fn new(opts: &PresenterOptions) -> Result<Self, PresenterError> {
        let (conn, screen_num) = XCBConnection::connect(None)
            .map_err(|e| err(format!("cannot open the X display: {e}")))?;
        let screen = &conn.setup().roots[screen_num];
        let window = conn.generate_id().map_err(err)?;
        let (root, visual, depth) = (screen.root, screen.root_visual, screen.root_depth);
        conn.create_window(
            depth,
            window,
            root,
            0,
            0,
            opts.width as u16,
            opts.height as u16,
            0,
            xproto::WindowClass::INPUT_OUTPUT,
            visual,
            &xproto::CreateWindowAux::new().background_pixel(screen.black_pixel),
        )
        .map_err(err)?;
        conn.map_window(window).map_err(err)?;
        conn.flush().map_err(err)?;
        conn.get_geometry(window)
            .map_err(err)?
            .reply()
            .map_err(err)?;

        // SAFETY: loading the system Vulkan loader.
        let entry = unsafe { ash::Entry::load() }
            .map_err(|e| CaptureError::LoaderMissing(e.to_string()))?;
        let layers: Vec<CString> = opts
            .layers
            .iter()
            .map(|l| CString::new(l.as_str()).map_err(err))
            .collect::<Result<_, _>>()?;
        let layer_ptrs: Vec<_> = layers.iter().map(|l| l.as_ptr()).collect();
        let extensions = [
            ash::khr::surface::NAME.as_ptr(),
            ash::khr::xcb_surface::NAME.as_ptr(),
        ];
        let app = vk::ApplicationInfo::default()
            .application_name(c"stratus-presenter")
            .api_version(vk::API_VERSION_1_1);
        let info = vk::InstanceCreateInfo::default()
            .application_info(&app)
            .enabled_layer_names(&layer_ptrs)
            .enabled_extension_names(&extensions);
        // SAFETY: valid create info.
        let instance =
            unsafe { entry.create_instance(&info, None) }.map_err(vkr("vkCreateInstance"))?;
        let surface_fn = ash::khr::surface::Instance::new(&entry, &instance);
        let xcb_fn = ash::khr::xcb_surface::Instance::new(&entry, &instance);
        let surface_info = vk::XcbSurfaceCreateInfoKHR::default()
            .connection(conn.get_raw_xcb_connection())
            .window(window);
        // SAFETY: the connection and window are alive for the presenter's lifetime.
        let surface = unsafe { xcb_fn.create_xcb_surface(&surface_info, None) }
            .map_err(vkr("vkCreateXcbSurfaceKHR"))?;
        // SAFETY: valid instance.
        let devices = unsafe { instance.enumerate_physical_devices() }
            .map_err(vkr("vkEnumeratePhysicalDevices"))?;
        let mut chosen = None;
        for pd in devices {
            // SAFETY: `pd` came from this instance.
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            for (i, f) in families.iter().enumerate() {
                // SAFETY: valid physical device, family index and surface.
                let present = unsafe {
                    surface_fn.get_physical_device_surface_support(pd, i as u32, surface)
                }
                .unwrap_or(false);
                if present && f.queue_flags.contains(vk::QueueFlags::GRAPHICS) {
                    chosen = Some((pd, i as u32));
                    break;
                }
            }
            if chosen.is_some() {
                break;
            }
        }
        let (physical, family) = chosen.ok_or(CaptureError::NoDevice)?;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(family)
            .queue_priorities(&priorities)];
        let dev_ext = [ash::khr::swapchain::NAME.as_ptr()];
        let dinfo = vk::DeviceCreateInfo::default()
            .queue_create_infos(&queues)
            .enabled_extension_names(&dev_ext);
        // SAFETY: valid create info.
        let device = unsafe { instance.create_device(physical, &dinfo, None) }
            .map_err(vkr("vkCreateDevice"))?;
        // SAFETY: the family and index were requested.
        let queue = unsafe { device.get_device_queue(family, 0) };
        let swapchain_fn = ash::khr::swapchain::Device::new(&instance, &device);
        // SAFETY: valid physical device.
        let memory = unsafe { instance.get_physical_device_memory_properties(physical) };
        // SAFETY: valid create infos on this device; `family` is one of its queue families.
        let (pool, cmd, acquired, rendered, fence) = unsafe {
            let (pool, cmds) = command_buffers(&device, family, 1)?;
            let cmd = cmds[0];
            let sem = vk::SemaphoreCreateInfo::default();
            (
                pool,
                cmd,
                device
                    .create_semaphore(&sem, None)
                    .map_err(vkr("vkCreateSemaphore"))?,
                device
                    .create_semaphore(&sem, None)
                    .map_err(vkr("vkCreateSemaphore"))?,
                device
                    .create_fence(
                        &vk::FenceCreateInfo::default().flags(vk::FenceCreateFlags::SIGNALED),
                        None,
                    )
                    .map_err(vkr("vkCreateFence"))?,
            )
        };
        let mut this = Self {
            _entry: entry,
            instance,
            surface_fn,
            physical,
            device,
            swapchain_fn,
            queue,
            conn,
            window,
            surface,
            swapchain: vk::SwapchainKHR::null(),
            images: Vec::new(),
            format: vk::Format::UNDEFINED,
            extent: vk::Extent2D::default(),
            pool,
            cmd,
            acquired,
            rendered,
            fence,
            memory,
            upload: None,
        };
        this.make_swapchain(&opts.formats, opts.width, opts.height)?;
        Ok(this)
    }

    fn make_swapchain(
        &mut self,
        prefer: &[vk::Format],
        width: u32,
        height: u32,
    ) -> Result<(), PresenterError> {
        // SAFETY: valid physical device and surface.
        let (caps, formats) = unsafe {
            (
                self.surface_fn
                    .get_physical_device_surface_capabilities(self.physical, self.surface)
                    .map_err(vkr("vkGetPhysicalDeviceSurfaceCapabilitiesKHR"))?,
                self.surface_fn
                    .get_physical_device_surface_formats(self.physical, self.surface)
                    .map_err(vkr("vkGetPhysicalDeviceSurfaceFormatsKHR"))?,
            )
        };
        let chosen = prefer
            .iter()
            .find_map(|p| formats.iter().find(|f| f.format == *p))
            .or_else(|| formats.first())
            .copied()
            .ok_or_else(|| err("the surface offers no format"))?;
        let extent = if caps.current_extent.width == u32::MAX {
            vk::Extent2D { width, height }
        } else {
            caps.current_extent
        };
        let count = (caps.min_image_count + 1).min(if caps.max_image_count == 0 {
            u32::MAX
        } else {
            caps.max_image_count
        });
        let old = self.swapchain;
        let info = vk::SwapchainCreateInfoKHR::default()
            .surface(self.surface)
            .min_image_count(count)
            .image_format(chosen.format)
            .image_color_space(chosen.color_space)
            .image_extent(extent)
            .image_array_layers(1)
            .image_usage(vk::ImageUsageFlags::TRANSFER_DST | vk::ImageUsageFlags::COLOR_ATTACHMENT)
            .image_sharing_mode(vk::SharingMode::EXCLUSIVE)
            .pre_transform(caps.current_transform)
            .composite_alpha(vk::CompositeAlphaFlagsKHR::OPAQUE)
            .present_mode(vk::PresentModeKHR::FIFO)
            .clipped(true)
            .old_swapchain(old);
        // SAFETY: valid create info; the old swapchain (if any) is retired by this call and
        // destroyed once the device is idle.
        unsafe {
            self.swapchain = self
                .swapchain_fn
                .create_swapchain(&info, None)
                .map_err(vkr("vkCreateSwapchainKHR"))?;
            if old != vk::SwapchainKHR::null() {
                let _ = self.device.device_wait_idle();
                self.swapchain_fn.destroy_swapchain(old, None);
            }
            self.images = self
                .swapchain_fn
                .get_swapchain_images(self.swapchain)
                .map_err(vkr("vkGetSwapchainImagesKHR"))?;
        }
        self.format = chosen.format;
        self.extent = extent;
        Ok(())
    }

    /// The swapchain's format.
    pub fn format(&self) -> vk::Format {
        self.format
    }

    /// The swapchain's size.
    pub fn size(&self) -> (u32, u32) {
        (self.extent.width, self.extent.height)
    }

    /// Resizes the window to `width`×`height` and recreates the swapchain at the new size.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), PresenterError> {
        self.conn
            .configure_window(
                self.window,
                &xproto::ConfigureWindowAux::new()
                    .width(width)
                    .height(height),
            )
            .map_err(err)?;
        self.conn.flush().map_err(err)?;
        self.conn
            .get_geometry(self.window)
            .map_err(err)?
            .reply()
            .map_err(err)?;
        let prefer = [self.format];
        self.make_swapchain(&prefer, width, height)
    }

    /// Packs an image (pixel (x, y) = `pixel(x, y)`) in the swapchain's format, for
    /// [`Presenter::present_words`].
    pub fn encode(&self, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Result<Vec<u32>, PresenterError> {
        let format = SourceFormat::from_vk(self.format)
            .ok_or_else(|| err(format!("cannot draw into {:?}", self.format)))?;
        let (w, h) = self.size();
        Ok((0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| format.encode(pixel(x, y)))
            .collect())
    }

    fn upload_buffer(&mut self, len: usize) -> Result<&Upload, PresenterError> {
        if self.upload.as_ref().is_some_and(|u| u.len >= len) {
            return Ok(self.upload.as_ref().expect("checked"));
        }
        if let Some(old) = self.upload.take() {
            // SAFETY: the fence was waited for before any new upload, so the GPU is done.
            unsafe {
                self.device.destroy_buffer(old.buffer, None);
                self.device.free_memory(old.memory, None);
            }
        }
        // SAFETY: valid create and allocate infos; memory type chosen from the device's list.
        let upload = unsafe {
            let buffer = self
                .device
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(len as u64)
                        .usage(vk::BufferUsageFlags::TRANSFER_SRC),
                    None,
                )
                .map_err(vkr("vkCreateBuffer"))?;
            let req = self.device.get_buffer_memory_requirements(buffer);
            let flags =
                vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let index = memory_type_index(&self.memory, req.memory_type_bits, flags)
                .ok_or(CaptureError::NoMemoryType("upload buffer"))?;
            let memory = self
                .device
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default()
                        .allocation_size(req.size)
                        .memory_type_index(index),
                    None,
                )
                .map_err(vkr("vkAllocateMemory"))?;
            self.device
                .bind_buffer_memory(buffer, memory, 0)
                .map_err(vkr("vkBindBufferMemory"))?;
            let ptr = self
                .device
                .map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty())
                .map_err(vkr("vkMapMemory"))?;
            Upload {
                buffer,
                memory,
                ptr: ptr.cast(),
                len,
            }
        };
        Ok(self.upload.insert(upload))
    }

    /// Uploads `words` (one packed pixel per word, [`Presenter::encode`]) into the next
    /// swapchain image and presents it. Returns the time spent inside `vkQueuePresentKHR`.
    pub fn present_words(&mut self, words: &[u32]) -> Result<Duration, PresenterError> {
        let (w, h) = self.size();
        if words.len() != (w * h) as usize {
            return Err(err(format!(
                "{} pixels for a {w}x{h} swapchain",
                words.len()
            )));
        }
        // SAFETY: the fence guards the previous frame's use of the command buffer and upload
        // buffer; all handles belong to this device.
        unsafe {
            self.device
                .wait_for_fences(&[self.fence], true, 5_000_000_000)
                .map_err(vkr("vkWaitForFences"))?;
        }
        // SAFETY: valid swapchain and semaphore (unsignalled: the last acquire was consumed).
        let (index, _) = {
            match unsafe {
                self.swapchain_fn.acquire_next_image(
                    self.swapchain,
                    5_000_000_000,
                    self.acquired,
                    vk::Fence::null(),
                )
            } {
                Ok(r) => r,
                Err(vk::Result::ERROR_OUT_OF_DATE_KHR) => {
                    let prefer = [self.format];
                    self.make_swapchain(&prefer, w, h)?;
                    return Err(err("swapchain out of date; recreated"));
                }
                Err(e) => return Err(vkr("vkAcquireNextImageKHR")(e)),
            }
        };
        let image = self.images[index as usize];
        let bytes = words.len() * 4;
        let upload = self.upload_buffer(bytes)?;
        let (buffer, ptr) = (upload.buffer, upload.ptr);
        // SAFETY: the mapping holds at least `bytes` bytes and the GPU is not reading it.
        unsafe { std::ptr::copy_nonoverlapping(words.as_ptr().cast::<u8>(), ptr, bytes) };
        let to_dst = [image_barrier(
            image,
            (vk::AccessFlags::empty(), vk::ImageLayout::UNDEFINED),
            (
                vk::AccessFlags::TRANSFER_WRITE,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            ),
        )];
        let to_present = [image_barrier(
            image,
            (
                vk::AccessFlags::TRANSFER_WRITE,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            ),
            (vk::AccessFlags::empty(), vk::ImageLayout::PRESENT_SRC_KHR),
        )];
        let region = [image_copy(w, h)];
        let waits = [self.acquired];
        let stages = [vk::PipelineStageFlags::TRANSFER];
        let cmds = [self.cmd];
        let signals = [self.rendered];
        // SAFETY: as above; the image was acquired and is transitioned to PRESENT_SRC.
        unsafe {
            let d = &self.device;
            d.reset_fences(&[self.fence])
                .map_err(vkr("vkResetFences"))?;
            d.reset_command_buffer(self.cmd, vk::CommandBufferResetFlags::empty())
                .map_err(vkr("vkResetCommandBuffer"))?;
            d.begin_command_buffer(
                self.cmd,
                &vk::CommandBufferBeginInfo::default()
                    .flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(vkr("vkBeginCommandBuffer"))?;
            d.cmd_pipeline_barrier(
                self.cmd,
                vk::PipelineStageFlags::TOP_OF_PIPE,
                vk::PipelineStageFlags::TRANSFER,
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &to_dst,
            );
            d.cmd_copy_buffer_to_image(
                self.cmd,
                buffer,
                image,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                &region,
            );
            d.cmd_pipeline_barrier(
                self.cmd,
                vk::PipelineStageFlags::TRANSFER,
                vk::PipelineStageFlags::BOTTOM_OF_PIPE,
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &to_present,
            );
            d.end_command_buffer(self.cmd)
                .map_err(vkr("vkEndCommandBuffer"))?;
            let submit = [vk::SubmitInfo::default()
                .wait_semaphores(&waits)
                .wait_dst_stage_mask(&stages)
                .command_buffers(&cmds)
                .signal_semaphores(&signals)];
            d.queue_submit(self.queue, &submit, self.fence)
                .map_err(vkr("vkQueueSubmit"))?;
        }
        let swapchains = [self.swapchain];
        let indices = [index];
        let present = vk::PresentInfoKHR::default()
            .wait_semaphores(&signals)
            .swapchains(&swapchains)
            .image_indices(&indices);
        let t0 = Instant::now();
        // SAFETY: valid present info for an acquired image.
        let result = unsafe { self.swapchain_fn.queue_present(self.queue, &present) };
        let spent = t0.elapsed();
        match result {
            Ok(_) | Err(vk::Result::SUBOPTIMAL_KHR) => Ok(spent),
            Err(e) => Err(vkr("vkQueuePresentKHR")(e)),
        }
    }
}

impl Drop for Presenter {
    fn drop(&mut self) {
        // SAFETY: waiting idle first, then destroying every object this presenter made, in
        // reverse order of creation.
        unsafe {
            let _ = self.device.device_wait_idle();
            if let Some(u) = self.upload.take() {
                self.device.destroy_buffer(u.buffer, None);
                self.device.free_memory(u.memory, None);
            }
            self.device.destroy_fence(self.fence, None);
            self.device.destroy_semaphore(self.rendered, None);
            self.device.destroy_semaphore(self.acquired, None);
            self.device.destroy_command_pool(self.pool, None);
            self.swapchain_fn.destroy_swapchain(self.swapchain, None);
            self.device.destroy_device(None);
            self.surface_fn.destroy_surface(self.surface, None);
            self.instance.destroy_instance(None);
        }
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.flush();
    }
}
