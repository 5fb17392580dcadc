//! The demo title and both conversion paths (GPU compute, CPU read-back with SIMD) on a real
//! Vulkan device (lavapipe on CI).

mod formats;
mod grab;

use capture::convert::{rgb_to_ycbcr, ycbcr_to_rgb};
use capture::offscreen::{DemoRenderer, DemoSource, swatch_rect, swatch_rgb};
use capture::path::{CapturePath, ResolvedPath};
use capture::{Frame, PixelFormat, Source};
use stream_formats::latency_code::{CodeRow, read_luma_plane};

fn renderer(w: u32, h: u32) -> DemoRenderer {
    DemoRenderer::new(w, h).expect("a Vulkan device (install mesa-vulkan-drivers for lavapipe)")
}

fn codes(frame: &Frame) -> (Option<u64>, Option<u64>) {
    let y = frame.plane(0).expect("y plane");
    let (w, h) = (frame.width as usize, frame.height as usize);
    (
        read_luma_plane(y, w, h, CodeRow::EpochMs),
        read_luma_plane(y, w, h, CodeRow::FrameId),
    )
}

/// Mean (Y, Cb, Cr) over the inner half of the swatch.
fn swatch_ycbcr(frame: &Frame) -> (f64, f64, f64) {
    let (x0, y0, w, h) = swatch_rect(frame.width, frame.height).expect("swatch fits");
    let (x0, y0, w, h) = (
        (x0 + w / 4) as usize,
        (y0 + h / 4) as usize,
        (w / 2) as usize,
        (h / 2) as usize,
    );
    let mut sum = (0.0, 0.0, 0.0);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            sum.0 += frame.sample(0, x, y).expect("y") as f64;
            sum.1 += frame.sample(1, x / 2, y / 2).expect("u") as f64;
            sum.2 += frame.sample(2, x / 2, y / 2).expect("v") as f64;
        }
    }
    let n = (w * h) as f64;
    (sum.0 / n, sum.1 / n, sum.2 / n)
}

/// Three demo frames converted on `path`: the codes read back and the swatch has its colour.
fn frames_carry_their_codes_and_swatch(path: CapturePath) {
    let mut r = DemoRenderer::with_path(1280, 720, path)
        .expect("a Vulkan device (install mesa-vulkan-drivers for lavapipe)");
    match path {
        CapturePath::Gpu => assert_eq!(r.path(), ResolvedPath::Gpu),
        CapturePath::Cpu => assert_eq!(r.path(), ResolvedPath::Cpu),
        CapturePath::Auto => {}
    }
    let before = capture::clock::epoch_ms();
    for _ in 0..3 {
        let (frame, timings) = r.render().expect("render");
        assert_eq!(frame.format, PixelFormat::I420);
        assert_eq!(frame.data.len(), 1280 * 720 * 3 / 2);
        let (epoch, id) = codes(&frame);
        assert_eq!(id, Some(frame.id), "frame-id code");
        let epoch = epoch.expect("latency code readable");
        assert!(
            epoch >= before && epoch <= capture::clock::epoch_ms(),
            "epoch {epoch}"
        );
        let (y, cb, cr) = swatch_ycbcr(&frame);
        let [r8, g8, b8] = swatch_rgb(frame.id);
        let (ey, ecb, ecr) = rgb_to_ycbcr(r8, g8, b8);
        assert!(
            (y - ey as f64).abs() <= 2.0,
            "Y {y} vs {ey} for frame {}",
            frame.id
        );
        assert!((cb - ecb as f64).abs() <= 2.0, "Cb {cb} vs {ecb}");
        assert!((cr - ecr as f64).abs() <= 2.0, "Cr {cr} vs {ecr}");
        let back = ycbcr_to_rgb(y.round() as u8, cb.round() as u8, cr.round() as u8);
        assert!((back.0 as i32 - r8 as i32).abs() <= 4, "{back:?}");
        assert!(timings.render.as_secs() < 5 && timings.convert.as_secs() < 5);
    }
}

#[test]
fn demo_frames_carry_their_codes_and_swatch() {
    frames_carry_their_codes_and_swatch(CapturePath::Auto);
}

#[test]
fn both_paths_stamp_the_same_codes_and_swatch() {
    frames_carry_their_codes_and_swatch(CapturePath::Gpu);
    frames_carry_their_codes_and_swatch(CapturePath::Cpu);
}

#[test]
fn auto_converts_on_the_cpu_exactly_on_a_cpu_device() {
    let r = renderer(64, 64);
    let ctx = capture::vk::VkContext::new().expect("a Vulkan device");
    let expected = CapturePath::Auto.resolve(ctx.device_type());
    assert_eq!(r.path(), expected, "{}", r.device_name());
    if ctx.device_type() == ash::vk::PhysicalDeviceType::CPU {
        assert_eq!(r.path(), ResolvedPath::Cpu);
    }
}

#[test]
fn the_scene_moves() {
    let mut r = renderer(640, 360);
    let (a, _) = r.render().expect("render");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (b, _) = r.render().expect("render");
    // Compare below the code rows, where the scene itself is drawn.
    let ya = &a.plane(0).expect("y")[640 * 64..];
    let yb = &b.plane(0).expect("y")[640 * 64..];
    let changed = ya.iter().zip(yb).filter(|(p, q)| p != q).count();
    assert!(
        changed > ya.len() / 10,
        "only {changed} of {} luma samples changed",
        ya.len()
    );
    let black = ya.iter().filter(|&&v| v <= 17).count();
    assert!(black < ya.len() / 2, "frame is mostly black");
}

#[test]
fn demo_source_paces_and_numbers_frames() {
    let mut s = DemoSource::new(320, 240, 50).expect("source");
    let start = std::time::Instant::now();
    let ids: Vec<u64> = (0..10).map(|_| s.next_frame().expect("frame").id).collect();
    let elapsed = start.elapsed();
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "ids increase: {ids:?}");
    // 10 frames at 50 fps are due over 180 ms (the first is due at once).
    assert!(
        elapsed >= std::time::Duration::from_millis(170),
        "{elapsed:?} is too fast for 50 fps"
    );
}

#[test]
fn bad_sizes_are_clear_errors() {
    let err = DemoRenderer::new(1001, 720).expect_err("odd width");
    assert!(err.to_string().contains("multiple of 8"), "{err}");
    let err = DemoSource::new(1280, 720, 0).expect_err("zero fps");
    assert!(err.to_string().contains("frame rate"), "{err}");
}
