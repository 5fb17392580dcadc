//! Debian's `vkcube` captured through the layer, and its frame rate with no node listening.

use std::process::Stdio;
use std::time::{Duration, Instant};

use capture::layer::RingSource;

use crate::harness::{Reaped, TempDir, Xvfb, check_ids, collect, install, require, title};

#[test]
fn vkcube_frames_reach_the_node() {
    let _machine = crate::harness::exclusive();
    if !require(&["Xvfb", "vkcube"]) {
        return;
    }
    let x = Xvfb::start();
    let dir = TempDir::new("vkcube");
    let install = install(&dir.0);
    let mut source = RingSource::listen(dir.0.join("capture.sock")).expect("listen");
    // An odd size, so the padded conversion and tight repacking are exercised.
    let (w, h) = (610u32, 431u32);
    let mut child = Reaped(
        title("vkcube", &x.display, &install, source.socket_path())
            .args([
                "--c",
                "600",
                "--width",
                &w.to_string(),
                "--height",
                &h.to_string(),
            ])
            .spawn()
            .expect("start vkcube"),
    );
    let frames = collect(&mut source, &mut child, Duration::from_secs(60), |f| {
        f.len() >= 150
    });
    let status = child
        .wait_for(Duration::from_secs(60))
        .expect("vkcube exits");
    assert!(status.success(), "vkcube failed with the layer: {status}");
    let stats = source.stats();
    eprintln!("vkcube: {} frames read, stats {stats:?}", frames.len());
    assert!(frames.len() >= 60, "only {} frames captured", frames.len());
    for f in &frames {
        assert_eq!((f.width, f.height), (w, h), "frame {} size", f.id);
        assert_eq!(f.data.len(), capture::PixelFormat::I420.frame_len(w, h));
    }
    check_ids(&frames, stats.dropped);
    // Not black: vkcube draws a lit, textured cube on a grey background.
    for f in frames.iter().step_by(10) {
        let y = f.plane(0).expect("luma");
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / y.len() as f64;
        let bright = y.iter().filter(|&&v| v > 40).count();
        assert!(
            mean > 30.0 && bright > y.len() / 4,
            "frame {} looks black (mean luma {mean:.1})",
            f.id
        );
    }
    // It turns: frames far apart differ in many samples.
    let (a, b) = (&frames[0], &frames[frames.len() - 1]);
    let changed = a
        .plane(0)
        .expect("luma")
        .iter()
        .zip(b.plane(0).expect("luma"))
        .filter(|(p, q)| p.abs_diff(**q) > 8)
        .count();
    assert!(
        changed > (w * h / 100) as usize,
        "frames {} and {} differ in only {changed} samples",
        a.id,
        b.id
    );
    // Present times are CLOCK_MONOTONIC and increase with the ids.
    assert!(
        frames
            .windows(2)
            .all(|p| p[1].captured_ns > p[0].captured_ns)
    );
    let now = capture::clock::monotonic_ns();
    assert!(
        frames
            .iter()
            .all(|f| f.captured_ns <= now && now - f.captured_ns < 120_000_000_000)
    );
    // The title exited: the source notices and stops being connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while source.connected() && Instant::now() < deadline {
        let _ = source
            .next_frame_timeout(Duration::from_millis(100))
            .expect("source");
    }
    assert!(
        !source.connected(),
        "the source still holds the ring of an exited title"
    );
}

/// Runs `vkcube --c frames` to completion and returns its wall time.
fn run_vkcube(display: &str, frames: u32, env: &[(String, String)]) -> Duration {
    let start = Instant::now();
    let mut child = Reaped(
        std::process::Command::new("vkcube")
            .env("DISPLAY", display)
            .envs(env.iter().cloned())
            .args(["--c", &frames.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vkcube"),
    );
    let status = child
        .wait_for(Duration::from_secs(120))
        .expect("vkcube exits within 120 s");
    assert!(status.success(), "vkcube failed: {status}");
    start.elapsed()
}

#[test]
fn vkcube_keeps_its_frame_rate_without_a_node() {
    let _machine = crate::harness::exclusive();
    if !require(&["Xvfb", "vkcube"]) {
        return;
    }
    let x = Xvfb::start();
    let dir = TempDir::new("fps");
    let install = install(&dir.0);
    // The layer is on, but nobody listens at this path.
    let env = install.env(&dir.0.join("nobody.sock"));
    // The frame rate is the steady state: the time a run of `long` frames takes beyond one of
    // `short`, so process start-up and exit (where the layer loads) do not count.
    let (short, long) = (100u32, 2100u32);
    let frames = long - short;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    // Interleaved runs, best of each: the least disturbed by other work on the machine. At
    // ~900 fps, 500-frame runs last half a second and their ratio swung by 20 % from run to
    // run (one measured 659 against 820 fps); 2,000-frame runs measured 0.97–1.04.
    for _ in 0..5 {
        without.push(run_vkcube(&x.display, long, &[]).saturating_sub(run_vkcube(
            &x.display,
            short,
            &[],
        )));
        with.push(
            run_vkcube(&x.display, long, &env).saturating_sub(run_vkcube(&x.display, short, &env)),
        );
    }
    let best = |v: &[Duration]| v.iter().min().copied().expect("runs");
    let (base, layered) = (best(&without), best(&with));
    let fps = |d: Duration| f64::from(frames) / d.as_secs_f64().max(1e-6);
    eprintln!(
        "vkcube {frames} frames (steady state): without layer {base:?} ({:.0} fps), with layer and no node {layered:?} ({:.0} fps)",
        fps(base),
        fps(layered)
    );
    // The 10 % target is measured by `stratus-bench capture` (`vkcube_no_node_fps_ratio`): at
    // ~1,000 fps this machine's noise alone moved the ratio by up to 18 % (1,095 against 901
    // fps in one run of these very pairs). This test guards what the layer must not do without
    // a node — GPU work per frame, which costs lavapipe several milliseconds at vkcube's size,
    // several times a whole frame here.
    assert!(
        fps(layered) >= 0.6 * fps(base),
        "with the layer and no node vkcube ran at {:.0} fps against {:.0} without",
        fps(layered),
        fps(base)
    );
}
