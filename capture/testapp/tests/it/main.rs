//! The test title itself, under Xvfb on lavapipe: it presents every phase at the size asked for
//! and reports it. (The capture layer's tests, in `capture/layer`, run it with the layer.)
//!
//! Skips (printing why) only when `Xvfb` is not installed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capture::display::Xvfb;

const TESTAPP: &str = env!("CARGO_BIN_EXE_stratus-vk-testapp");

fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

#[test]
fn presents_every_phase_at_its_size() {
    if !have("Xvfb") {
        eprintln!("SKIP: `Xvfb` is not installed (apt-get install xvfb mesa-vulkan-drivers)");
        return;
    }
    let xvfb = Xvfb::start().expect("start Xvfb");
    let mut child = Command::new(TESTAPP)
        .env("DISPLAY", &xvfb.display)
        .args(["--phase", "160x120:3", "--phase", "200x100:3"])
        .args(["--interval-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start stratus-vk-testapp");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the title") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stratus-vk-testapp did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("read the title's output");
    assert!(
        status.success(),
        "stratus-vk-testapp failed: {status}\n{out}"
    );
    let phases: Vec<&str> = out.lines().filter(|l| l.starts_with("phase ")).collect();
    assert_eq!(phases.len(), 2, "one line per phase: {out}");
    assert!(phases[0].starts_with("phase 0 160x120 "), "{}", phases[0]);
    assert!(phases[1].starts_with("phase 1 200x100 "), "{}", phases[1]);
    assert!(
        phases
            .iter()
            .all(|l| l.contains("frames 3 present_p50_ms ")),
        "{out}"
    );
}
