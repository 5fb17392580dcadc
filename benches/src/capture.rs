//! `stratus-bench capture`: the capture layer in a real Vulkan title.
//!
//! For each size it runs our test title (`stratus-vk-testapp`, presenting the known test image
//! at 60 fps on lavapipe under Xvfb) twice — without the layer, and with the layer and this
//! process reading its ring as the node would — and compares the time the title spends in
//! `vkQueuePresentKHR`. It then times the layer's conversion path in isolation (copy of a
//! presented image, I420 conversion, read-back: `capture::layer::Grab`) and GStreamer's
//! `videoconvert` RGBA→I420 on frames of the same size, as the CPU reference.
//!
//! The path is the layer's default, `auto` (the CPU path with SIMD conversion on a CPU device
//! such as lavapipe, the compute shader on a GPU), unless `STRATUS_CAPTURE_PATH` says `gpu` or
//! `cpu`; the layer in the title reads the same variable. `capture_path` reports the one used.
//!
//! Needs `Xvfb`, and `stratus-vk-testapp` plus `libstratus_capture_layer.so` next to this
//! binary: `cargo build --release -p benches -p capture-layer -p capture-testapp`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ash::vk;
use capture::convert::SourceFormat;
use capture::layer::{Grab, LayerInstall, RingSource};
use capture::path::{CapturePath, PATH_ENV, ResolvedPath};
use capture::synthetic::test_pattern;
use capture::vk::{COLOR_RANGE, VkContext, command_buffers, image_barrier, memory_type_index};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::stats::{Report, percentile};

/// What to run.
#[derive(Debug, Clone)]
pub struct CaptureArgs {
    /// Frames the title presents per run (and iterations of the isolated measurements).
    pub frames: u32,
    /// Sizes to measure.
    pub sizes: Vec<(u32, u32)>,
    /// Pause between the title's frames (16 ms ≈ a 60 fps game).
    pub interval_ms: u64,
}

impl Default for CaptureArgs {
    fn default() -> Self {
        Self {
            frames: 300,
            sizes: vec![(1280, 720), (1920, 1080)],
            interval_ms: 16,
        }
    }
}

/// A child process killed and reaped on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn testapp() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name("stratus-vk-testapp");
    if !path.is_file() {
        bail!(
            "{} not found; build it with `cargo build --release -p benches -p capture-layer -p capture-testapp`",
            path.display()
        );
    }
    Ok(path)
}

/// Runs the title for `frames` frames at `w`×`h`; returns its present p50 in ms.
fn run_title(
    display: &str,
    env: &[(String, String)],
    (w, h): (u32, u32),
    args: &CaptureArgs,
    mut source: Option<&mut RingSource>,
) -> anyhow::Result<(f64, Vec<capture::ring::FrameTiming>, Vec<u64>)> {
    let mut child = Reaped(
        Command::new(testapp()?)
            .env("DISPLAY", display)
            .envs(env.iter().cloned())
            .args([
                "--phase",
                &format!("{w}x{h}:{}", args.frames),
                "--interval-ms",
                &args.interval_ms.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start stratus-vk-testapp")?,
    );
    let deadline = Instant::now()
        + Duration::from_millis(args.frames as u64 * (args.interval_ms + 50))
        + Duration::from_secs(30);
    let (mut timings, mut ids) = (Vec::new(), Vec::new());
    loop {
        if Instant::now() > deadline {
            bail!("the title did not finish in time");
        }
        if let Some(source) = source.as_deref_mut() {
            if let Some(frame) = source.next_frame_timeout(Duration::from_millis(100))? {
                timings.push(source.last_timing());
                ids.push(frame.id);
                continue;
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(status) = child.0.try_wait()? {
            if !status.success() {
                bail!("stratus-vk-testapp failed: {status}");
            }
            break;
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().context("stdout")?, &mut out)?;
    let p50 = out
        .split_whitespace()
        .skip_while(|w| *w != "present_p50_ms")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no present time in the title's output: {out}"))?;
    Ok((p50, timings, ids))
}

/// Times the layer's conversion path alone: copy a `w`×`h` BGRA image, convert, read back.
fn grab_times(
    ctx: &Arc<VkContext>,
    (w, h): (u32, u32),
    n: u32,
    path: ResolvedPath,
) -> anyhow::Result<Vec<f64>> {
    let device = ctx.device();
    let image_info = vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(vk::Format::B8G8R8A8_UNORM)
        .extent(vk::Extent3D {
            width: w,
            height: h,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(vk::ImageUsageFlags::TRANSFER_SRC | vk::ImageUsageFlags::TRANSFER_DST)
        .initial_layout(vk::ImageLayout::UNDEFINED);
    // SAFETY: valid create infos on this device and its queue family; everything made here is
    // destroyed below after the device is idle.
    unsafe {
        let image = device.create_image(&image_info, None)?;
        let req = device.get_image_memory_requirements(image);
        let mem = ctx.memory_properties();
        let index = memory_type_index(mem, req.memory_type_bits, vk::MemoryPropertyFlags::empty())
            .context("no memory type for the image")?;
        let memory = device.allocate_memory(
            &vk::MemoryAllocateInfo::default()
                .allocation_size(req.size)
                .memory_type_index(index),
            None,
        )?;
        device.bind_image_memory(image, memory, 0)?;
        let (pool, cmds) = command_buffers(device, ctx.queue_family(), 1)?;
        let cmd = cmds[0];
        device.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())?;
        let barrier = |old, new| {
            [image_barrier(
                image,
                (vk::AccessFlags::TRANSFER_WRITE, old),
                (
                    vk::AccessFlags::TRANSFER_READ | vk::AccessFlags::TRANSFER_WRITE,
                    new,
                ),
            )]
        };
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TOP_OF_PIPE,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &barrier(
                vk::ImageLayout::UNDEFINED,
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            ),
        );
        device.cmd_clear_color_image(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &vk::ClearColorValue {
                float32: [0.2, 0.5, 0.8, 1.0],
            },
            &[COLOR_RANGE],
        );
        device.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::TRANSFER,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &barrier(
                vk::ImageLayout::TRANSFER_DST_OPTIMAL,
                vk::ImageLayout::GENERAL,
            ),
        );
        device.end_command_buffer(cmd)?;
        let cmds = [cmd];
        device.queue_submit(
            ctx.queue(),
            &[vk::SubmitInfo::default().command_buffers(&cmds)],
            vk::Fence::null(),
        )?;
        device.queue_wait_idle(ctx.queue())?;

        let grab = Grab::new(ctx, None, w, h, SourceFormat::Bgra8, path)?;
        let mut out = vec![0u8; grab.frame_len()];
        let mut times = Vec::new();
        for i in 0..n + 5 {
            let start = Instant::now();
            grab.submit(ctx.queue(), image, vk::ImageLayout::GENERAL, &[])?;
            grab.wait(Duration::from_secs(5))?;
            grab.read_into(&mut out);
            if i >= 5 {
                times.push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        // The cleared colour must come out as its I420 value (a sanity check on the path).
        let (ey, _, _) = capture::convert::rgb_to_ycbcr(51, 128, 204);
        if out[0].abs_diff(ey) > 2 {
            bail!(
                "grab produced luma {} for a clear colour of luma {ey}",
                out[0]
            );
        }
        device.queue_wait_idle(ctx.queue())?;
        drop(grab);
        device.destroy_command_pool(pool, None);
        device.destroy_image(image, None);
        device.free_memory(memory, None);
        Ok(times)
    }
}

/// Times GStreamer's `videoconvert` RGBA→I420 on the test image, push to pull, per frame.
fn videoconvert_times((w, h): (u32, u32), n: u32) -> anyhow::Result<Vec<f64>> {
    gst::init()?;
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGBA,width={w},height={h},framerate=60/1 \
         ! videoconvert ! video/x-raw,format=I420 ! appsink name=sink sync=false"
    ))?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .context("appsrc")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .context("appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    let pattern = test_pattern(w, h, 0);
    let rgba: Vec<u8> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .flat_map(|(x, y)| {
            let [r, g, b] = pattern(x, y);
            [r, g, b, 255]
        })
        .collect();
    let mut times = Vec::new();
    for i in 0..n + 5 {
        let mut buf = gst::Buffer::from_slice(rgba.clone());
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 16));
        }
        let start = Instant::now();
        src.push_buffer(buf)?;
        sink.try_pull_sample(gst::ClockTime::from_seconds(5))
            .context("videoconvert produced nothing")?;
        if i >= 5 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(times)
}

/// Runs `vkcube --c frames` (unthrottled on Xvfb) to completion; returns its wall time.
fn vkcube_time(display: &str, frames: u32, env: &[(String, String)]) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut child = Reaped(
        Command::new("vkcube")
            .env("DISPLAY", display)
            .envs(env.iter().cloned())
            .args(["--c", &frames.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start vkcube (apt-get install vulkan-tools)")?,
    );
    let deadline = start + Duration::from_secs(120);
    loop {
        if let Some(status) = child.0.try_wait()? {
            if !status.success() {
                bail!("vkcube failed: {status}");
            }
            return Ok(start.elapsed());
        }
        if Instant::now() > deadline {
            bail!("vkcube did not finish {frames} frames within 120 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// vkcube's steady frame rate without the layer and with the layer but no node listening:
/// interleaved pairs, the best of each; the steady state is a 2,100-frame run minus a
/// 100-frame one, so start-up (where the layer loads) does not count.
fn vkcube_no_node_fps(display: &str, no_node: &[(String, String)]) -> anyhow::Result<(f64, f64)> {
    let (short, long) = (100u32, 2100u32);
    let steady = |env: &[(String, String)]| -> anyhow::Result<Duration> {
        Ok(vkcube_time(display, long, env)?.saturating_sub(vkcube_time(display, short, env)?))
    };
    let (mut without, mut with) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        without = without.min(steady(&[])?);
        with = with.min(steady(no_node)?);
    }
    let fps = |d: Duration| f64::from(long - short) / d.as_secs_f64().max(1e-6);
    Ok((fps(without), fps(with)))
}

/// Runs the benchmark; one report per size.
pub fn run(args: &CaptureArgs) -> anyhow::Result<Vec<Report>> {
    let xvfb = capture::display::Xvfb::start()?;
    let display = xvfb.display.clone();
    let dir = std::env::temp_dir().join(format!("stratus-bench-capture-{}", std::process::id()));
    let install = LayerInstall::write(&dir, LayerInstall::find_library()?)?;
    let ctx = VkContext::new().context("open a Vulkan device")?;
    let setting = CapturePath::from_env()?;
    let path = setting.resolve(ctx.device_type());
    let (vkcube_base, vkcube_no_node) =
        vkcube_no_node_fps(&display, &install.env(&dir.join("nobody.sock")))?;
    let mut reports = Vec::new();
    for &(w, h) in &args.sizes {
        let (base_ms, _, _) = run_title(&display, &[], (w, h), args, None)?;
        let mut source = RingSource::listen(dir.join("capture.sock"))?;
        let mut env = install.env(source.socket_path());
        env.push((PATH_ENV.to_string(), setting.to_string()));
        let (layer_ms, timings, ids) = run_title(&display, &env, (w, h), args, Some(&mut source))?;
        let stats = source.stats();
        drop(source);
        let hook: Vec<f64> = timings.iter().map(|t| t.hook_ns as f64 / 1e6).collect();
        let latency: Vec<f64> = timings
            .iter()
            .map(|t| t.published_ns.saturating_sub(t.present_ns) as f64 / 1e6)
            .collect();
        let gaps: u64 = ids.windows(2).map(|p| p[1] - p[0] - 1).sum();
        let gpu = percentile(&grab_times(&ctx, (w, h), args.frames.min(200), path)?, 50.0);
        let cpu = percentile(&videoconvert_times((w, h), args.frames.min(200))?, 50.0);
        reports.push(
            Report::default()
                .field("width", w)
                .field("height", h)
                .field("frames", args.frames)
                .field("present_overhead_ms_p50", layer_ms - base_ms)
                .field("present_ms_p50_without_layer", base_ms)
                .field("present_ms_p50_with_layer", layer_ms)
                .field("hook_ms_p50", percentile(&hook, 50.0))
                .field("capture_path", path.as_str())
                .field("capture_path_setting", setting.as_str())
                .field("convert_readback_ms_p50", gpu)
                .field("cpu_videoconvert_ms_p50", cpu)
                // Our path (whichever `capture_path` says) over videoconvert; the name is older
                // than the CPU path.
                .field("gpu_over_cpu", gpu / cpu)
                .field("capture_latency_ms_p50", percentile(&latency, 50.0))
                .field("frames_captured", stats.frames)
                .field("frames_dropped", stats.dropped)
                .field("id_gaps", gaps)
                .field("vkcube_fps_without_layer", vkcube_base)
                .field("vkcube_fps_with_layer_no_node", vkcube_no_node)
                .field("vkcube_no_node_fps_ratio", vkcube_no_node / vkcube_base)
                .field("device", ctx.device_name()),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(reports)
}
