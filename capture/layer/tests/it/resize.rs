//! Our own test title: known images checked against the CPU conversion, a swapchain recreated
//! at a new size, and a node that goes away and comes back.

use std::time::Duration;

use capture::Frame;
use capture::convert::reference_i420;
use capture::layer::RingSource;
use capture::synthetic::test_pattern;

use crate::harness::{
    Reaped, TempDir, Xvfb, check_ids, collect, install, max_diff, require, testapp, title,
};

fn reference(w: u32, h: u32, phase: u32) -> Vec<u8> {
    let pattern = test_pattern(w, h, phase);
    reference_i420(w, h, |x, y| pattern(x, y).map(|c| c as f32 / 255.0))
}

/// Every frame of size (w, h) matches the CPU reference of phase `phase` within ±2.
fn check_phase(frames: &[&Frame], w: u32, h: u32, phase: u32) {
    let expected = reference(w, h, phase);
    for f in frames {
        let diff = max_diff(&f.data, &expected);
        assert!(
            diff <= 2,
            "frame {} ({w}x{h}) differs from the CPU reference by {diff}",
            f.id
        );
    }
}

#[test]
fn resized_swapchain_keeps_being_captured_at_the_new_size() {
    let _machine = crate::harness::exclusive();
    if !require(&["Xvfb"]) {
        return;
    }
    let x = Xvfb::start();
    let dir = TempDir::new("resize");
    let install = install(&dir.0);
    let mut source = RingSource::listen(dir.0.join("capture.sock")).expect("listen");
    let mut child = Reaped(
        title(testapp(), &x.display, &install, source.socket_path())
            .args([
                "--phase",
                "320x240:60",
                "--phase",
                "642x363:60",
                "--interval-ms",
                "15",
            ])
            .spawn()
            .expect("start the test title"),
    );
    let frames = collect(&mut source, &mut child, Duration::from_secs(90), |_| false);
    let status = child
        .wait_for(Duration::from_secs(30))
        .expect("test title exits");
    assert!(status.success(), "test title failed: {status}");
    let small: Vec<&Frame> = frames
        .iter()
        .filter(|f| (f.width, f.height) == (320, 240))
        .collect();
    let large: Vec<&Frame> = frames
        .iter()
        .filter(|f| (f.width, f.height) == (642, 363))
        .collect();
    eprintln!(
        "resize: {} frames at 320x240, {} at 642x363, stats {:?}",
        small.len(),
        large.len(),
        source.stats()
    );
    assert_eq!(
        small.len() + large.len(),
        frames.len(),
        "frames of an unexpected size"
    );
    assert!(
        small.len() >= 20,
        "only {} frames before the resize",
        small.len()
    );
    assert!(
        large.len() >= 20,
        "only {} frames after the resize",
        large.len()
    );
    let first_large = frames
        .iter()
        .position(|f| f.width == 642)
        .expect("large frames");
    assert!(
        frames[first_large..].iter().all(|f| f.width == 642),
        "old size after the resize"
    );
    check_ids(&frames, source.stats().dropped);
    check_phase(&small, 320, 240, 0);
    check_phase(&large, 642, 363, 1);
}

#[test]
fn both_capture_paths_match_the_cpu_reference() {
    let _machine = crate::harness::exclusive();
    if !require(&["Xvfb"]) {
        return;
    }
    let x = Xvfb::start();
    // An odd size, so both paths' handling of a last lone column and row is checked.
    let (w, h) = (333u32, 101u32);
    for path in ["gpu", "cpu"] {
        let dir = TempDir::new(&format!("path-{path}"));
        let install = install(&dir.0);
        let mut source = RingSource::listen(dir.0.join("capture.sock")).expect("listen");
        let mut child = Reaped(
            title(testapp(), &x.display, &install, source.socket_path())
                .env(capture::path::PATH_ENV, path)
                .args(["--phase", &format!("{w}x{h}:40"), "--interval-ms", "10"])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start the test title"),
        );
        let frames = collect(&mut source, &mut child, Duration::from_secs(60), |_| false);
        let status = child
            .wait_for(Duration::from_secs(30))
            .expect("test title exits");
        assert!(
            status.success(),
            "test title failed on the {path} path: {status}"
        );
        let mut log = String::new();
        std::io::Read::read_to_string(&mut child.0.stderr.take().expect("stderr"), &mut log)
            .expect("title log");
        assert!(
            log.contains(&format!("path={path}")),
            "the layer did not capture on the {path} path: {log}"
        );
        assert!(frames.len() >= 10, "{path}: only {} frames", frames.len());
        let all: Vec<&Frame> = frames.iter().collect();
        check_phase(&all, w, h, 0);
    }
}

#[test]
fn srgb_swapchains_are_captured_as_stored() {
    let _machine = crate::harness::exclusive();
    if !require(&["Xvfb"]) {
        return;
    }
    let x = Xvfb::start();
    let dir = TempDir::new("srgb");
    let install = install(&dir.0);
    let mut source = RingSource::listen(dir.0.join("capture.sock")).expect("listen");
    let mut child = Reaped(
        title(testapp(), &x.display, &install, source.socket_path())
            .args([
                "--phase",
                "256x144:40",
                "--format",
                "bgra-srgb",
                "--interval-ms",
                "10",
            ])
            .spawn()
            .expect("start the test title"),
    );
    let frames = collect(&mut source, &mut child, Duration::from_secs(60), |_| false);
    let status = child
        .wait_for(Duration::from_secs(30))
        .expect("test title exits");
    assert!(status.success(), "test title failed: {status}");
    assert!(frames.len() >= 10, "only {} frames", frames.len());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().expect("stdout"), &mut out)
        .expect("title output");
    assert!(
        out.contains("B8G8R8A8_SRGB"),
        "the title did not get an sRGB swapchain: {out}"
    );
    let all: Vec<&Frame> = frames.iter().collect();
    check_phase(&all, 256, 144, 0);
}

#[test]
fn the_node_can_go_away_and_come_back() {
    let _machine = crate::harness::exclusive();
    if !require(&["Xvfb"]) {
        return;
    }
    let x = Xvfb::start();
    let dir = TempDir::new("restart");
    let install = install(&dir.0);
    let socket = dir.0.join("capture.sock");
    let mut first = RingSource::listen(&socket).expect("listen");
    let mut child = Reaped(
        title(testapp(), &x.display, &install, &socket)
            .args(["--phase", "320x180:400", "--interval-ms", "10"])
            .spawn()
            .expect("start the test title"),
    );
    let before = collect(&mut first, &mut child, Duration::from_secs(30), |f| {
        f.len() >= 10
    });
    assert!(
        before.len() >= 10,
        "only {} frames before the node left",
        before.len()
    );
    drop(first);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.running(),
        "the title must keep running without the node"
    );
    let mut second = RingSource::listen(&socket).expect("listen again");
    let after = collect(&mut second, &mut child, Duration::from_secs(30), |f| {
        f.len() >= 10
    });
    assert!(
        after.len() >= 10,
        "only {} frames after the node came back",
        after.len()
    );
    assert!(
        after[0].id > before[before.len() - 1].id,
        "frame ids continue across reconnection"
    );
    let status = child
        .wait_for(Duration::from_secs(60))
        .expect("test title exits");
    assert!(status.success(), "test title failed: {status}");
}
