//! Xvfb, the layer's manifest, child processes that are always reaped, and frame checks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use capture::Frame;
use capture::layer::{LayerInstall, RingSource};

/// True when `name` is an executable on PATH.
/// The tests of this binary run Vulkan titles under Xvfb on a shared two-core machine; run in
/// parallel they would measure each other (the frame-rate comparison most of all). Each test
/// holds this for its whole run.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A failed test poisons the lock; the next one may still run alone.
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

/// Prints why a test is skipped when one of `tools` is missing; true when all are present.
pub fn require(tools: &[&str]) -> bool {
    for tool in tools {
        if !have(tool) {
            eprintln!(
                "SKIP: `{tool}` is not installed (apt-get install xvfb vulkan-tools mesa-vulkan-drivers)"
            );
            return false;
        }
    }
    true
}

/// A child process killed and reaped on drop.
pub struct Reaped(pub Child);

impl Reaped {
    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An Xvfb server on a free display; see [`capture::display::Xvfb`].
pub struct Xvfb;

impl Xvfb {
    /// Starts one, failing the test with the reason if it cannot.
    pub fn start() -> capture::display::Xvfb {
        capture::display::Xvfb::start().expect("start Xvfb")
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tag` and this process.
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("stratus-layer-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The layer built for this test run (cargo builds the package's cdylib before its tests).
pub fn install(dir: &Path) -> LayerInstall {
    let library = LayerInstall::find_library().expect("the layer library next to the test binary");
    LayerInstall::write(dir, library).expect("write the manifest")
}

/// Our test title, `stratus-vk-testapp` (package `capture-testapp`), built next to the test
/// programs.
pub fn testapp() -> PathBuf {
    capture_testapp::binary().unwrap_or_else(|e| panic!("{e}"))
}

/// A command for a title on `display` with the layer enabled and pointed at `socket`.
pub fn title(
    program: impl AsRef<std::ffi::OsStr>,
    display: &str,
    install: &LayerInstall,
    socket: &Path,
) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("DISPLAY", display)
        .env("STRATUS_CAPTURE_LOG", "info")
        .envs(install.env(socket))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Reads frames until `stop` says so, the title exits and the ring is drained, or `timeout`.
pub fn collect(
    source: &mut RingSource,
    child: &mut Reaped,
    timeout: Duration,
    mut stop: impl FnMut(&[Frame]) -> bool,
) -> Vec<Frame> {
    let deadline = Instant::now() + timeout;
    let mut frames = Vec::new();
    while Instant::now() < deadline && !stop(&frames) {
        match source
            .next_frame_timeout(Duration::from_millis(200))
            .expect("ring source")
        {
            Some(frame) => frames.push(frame),
            None if !child.running() => break,
            None => {}
        }
    }
    frames
}

/// Frame ids increase; the gaps between them add up to no more than the drops counted.
pub fn check_ids(frames: &[Frame], dropped: u64) {
    let mut gaps = 0;
    for pair in frames.windows(2) {
        assert!(
            pair[1].id > pair[0].id,
            "ids must increase: {} then {}",
            pair[0].id,
            pair[1].id
        );
        gaps += pair[1].id - pair[0].id - 1;
    }
    assert!(
        gaps <= dropped,
        "{gaps} frame ids missing but only {dropped} drops counted"
    );
}

/// Largest absolute difference between two sample arrays.
pub fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}
