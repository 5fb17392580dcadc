//! Session sandboxes with real titles: Debian's `vkcube` under the capture layer on its own
//! Xvfb, titles that fail, and teardown that leaves nothing behind.

use std::path::Path;
use std::time::Duration;

use capture::Source;
use capture::layer::LayerInstall;
use server::title::sandbox::{Sandbox, SandboxError, SandboxSpec};

/// Sandboxes start Xvfb and Vulkan titles; one at a time on two cores.
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static MACHINE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "stratus-sandbox-test-{what}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The layer's manifest in `dir`; the library is built with the workspace (`cargo build`).
fn layer(dir: &Path) -> LayerInstall {
    let lib =
        LayerInstall::find_library().expect("the capture layer library (cargo build --workspace)");
    LayerInstall::write(&dir.join("layer"), lib).expect("write the manifest")
}

fn spec(id: &str, argv: &[&str], timeout: Duration) -> SandboxSpec {
    SandboxSpec {
        session_id: id.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        width: 320,
        height: 240,
        fps: 30,
        first_frame_timeout: timeout,
        env: vec![],
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Processes whose environment names `session_id` (what the sandbox sets for the title).
fn processes_of(session_id: &str) -> Vec<u32> {
    let needle = format!("STRATUS_SESSION_ID={session_id}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
            && alive(pid)
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn vkcube_plays_in_a_sandbox_and_leaves_nothing_behind() {
    let _machine = exclusive();
    if !have("vkcube") || !have("Xvfb") {
        eprintln!("SKIP: apt-get install vulkan-tools xvfb");
        return;
    }
    let root = TempDir::new("vkcube");
    let install = layer(&root.0);
    // The title starts a helper child of its own too: teardown must reach it.
    let (mut sandbox, mut source) = Sandbox::start(
        &root.0,
        &install,
        &spec(
            "vk-1",
            &[
                "sh",
                "-c",
                "sleep 300 & exec vkcube --width {width} --height {height}",
            ],
            Duration::from_secs(30),
        ),
    )
    .expect("vkcube shows a frame");
    assert_eq!(source.size(), (320, 240));
    let mut ids = Vec::new();
    for _ in 0..30 {
        let f = source.next_frame().expect("frames keep coming");
        assert_eq!((f.width, f.height), (320, 240));
        ids.push(f.id);
    }
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "ids increase: {ids:?}");
    assert!(sandbox.exit_status().is_none(), "vkcube still runs");
    let display = sandbox.display().expect("display").to_string();
    let number = display.trim_start_matches(':').to_string();
    let (title, xvfb, dir) = (
        sandbox.title_pid().expect("pid"),
        sandbox.display_pid().expect("xvfb pid"),
        sandbox.dir().to_path_buf(),
    );
    let members = processes_of("vk-1");
    assert!(members.len() >= 2, "vkcube and its sleep: {members:?}");
    assert!(dir.join("capture.sock").exists());

    drop(source);
    drop(sandbox);
    for pid in members.iter().chain([&title, &xvfb]) {
        assert!(!alive(*pid), "process {pid} survived the teardown");
    }
    assert!(processes_of("vk-1").is_empty());
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(
        !Path::new(&format!("/tmp/.X11-unix/X{number}")).exists(),
        "the display's socket is left behind"
    );
    assert!(
        !Path::new(&format!("/tmp/.X{number}-lock")).exists(),
        "the display's lock is left behind"
    );
}

#[test]
fn vkcube_is_paced_to_the_session_rate() {
    let _machine = exclusive();
    if !have("vkcube") || !have("Xvfb") {
        eprintln!("SKIP: apt-get install vulkan-tools xvfb");
        return;
    }
    let root = TempDir::new("pace");
    let install = layer(&root.0);
    let (_sandbox, mut source) = Sandbox::start(
        &root.0,
        &install,
        &spec(
            "vk-pace",
            &["vkcube", "--width", "{width}", "--height", "{height}"],
            Duration::from_secs(30),
        ),
    )
    .expect("vkcube shows a frame");
    // Unpaced, vkcube renders 320x240 at hundreds of frames per second on lavapipe; paced to
    // 30 it presents about 30. The ids count presents (captured or dropped).
    let first = source.next_frame().expect("frame");
    let start = std::time::Instant::now();
    let mut last = first.id;
    while start.elapsed() < Duration::from_secs(2) {
        last = source.next_frame().expect("frame").id;
    }
    let rate = (last - first.id) as f64 / start.elapsed().as_secs_f64();
    eprintln!("vkcube presented at {rate:.1} fps with the session at 30");
    assert!(rate < 40.0, "not paced: {rate:.1} presents/s");
    assert!(rate > 10.0, "too slow: {rate:.1} presents/s");
}

#[test]
fn a_title_that_exits_at_once_says_how_and_what_it_printed() {
    let _machine = exclusive();
    if !have("Xvfb") {
        eprintln!("SKIP: apt-get install xvfb");
        return;
    }
    let root = TempDir::new("exit");
    let install = layer(&root.0);
    let err = Sandbox::start(
        &root.0,
        &install,
        &spec(
            "exit-1",
            &["sh", "-c", "echo 'cannot find game.pak' >&2; exit 3"],
            Duration::from_secs(10),
        ),
    )
    .expect_err("the title exits");
    let text = err.to_string();
    assert!(matches!(err, SandboxError::ExitedEarly { .. }), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("cannot find game.pak"), "{text}");
    assert!(std::fs::read_dir(&root.0).expect("root").all(|e| {
        let name = e.expect("entry").file_name();
        name == "layer"
    }));
}

#[test]
fn a_title_that_never_shows_a_frame_times_out_and_is_stopped() {
    let _machine = exclusive();
    if !have("Xvfb") {
        eprintln!("SKIP: apt-get install xvfb");
        return;
    }
    let root = TempDir::new("noframe");
    let install = layer(&root.0);
    let started = std::time::Instant::now();
    let err = Sandbox::start(
        &root.0,
        &install,
        &spec("noframe-1", &["sleep", "600"], Duration::from_secs(2)),
    )
    .expect_err("no frame");
    assert!(matches!(err, SandboxError::NoFirstFrame { .. }), "{err}");
    assert!(err.to_string().contains("no frame within 2s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        processes_of("noframe-1").is_empty(),
        "the title was not stopped"
    );
}

#[test]
fn a_missing_program_is_named() {
    let _machine = exclusive();
    if !have("Xvfb") {
        eprintln!("SKIP: apt-get install xvfb");
        return;
    }
    let root = TempDir::new("missing");
    let install = layer(&root.0);
    let err = Sandbox::start(
        &root.0,
        &install,
        &spec("missing-1", &["/nonexistent/game"], Duration::from_secs(2)),
    )
    .expect_err("no such program");
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/game"), "{err}");
}

#[test]
fn a_runtime_dir_too_long_for_the_capture_socket_is_refused_up_front() {
    let root = TempDir::new("long");
    let install = layer(&root.0);
    let deep = root.0.join("d".repeat(100));
    let err = Sandbox::start(
        &deep,
        &install,
        &spec("long-1", &["vkcube"], Duration::from_secs(2)),
    )
    .expect_err("no room for the socket path");
    assert!(matches!(err, SandboxError::Setup(_)), "{err}");
    assert!(err.to_string().contains("--runtime-dir"), "{err}");
    assert!(!deep.exists(), "nothing is made for a refused sandbox");
}
