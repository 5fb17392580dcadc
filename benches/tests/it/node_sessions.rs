//! Node sessions end to end: two players at once on one node — the built-in demo and Debian's
//! `vkcube`, published by a studio and run in its own sandbox — each in its own headless
//! Chromium, with sound; and titles that fail to start, whose reasons reach the player and the
//! session record.

use std::time::Duration;

use benches::chromium::{Chromium, LaunchOptions};
use benches::e2e::INBOUND_VIDEO;
use serde_json::Value;
use server::config::NodeConfig;

use crate::support::{publish, studio};

fn have(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

/// The dominant frequency of the page's received sound, from a Web Audio analyser.
const AUDIO_PEAK: &str = r#"(async () => {
  const stream = window.stratus.audioStream;
  if (!stream) return { error: 'no audio track' };
  const ctx = new AudioContext();
  await ctx.resume();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  ctx.createMediaStreamSource(stream).connect(analyser);
  await new Promise(r => setTimeout(r, 1500));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 1;
  for (let i = 2; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const out = { peakHz: best * ctx.sampleRate / analyser.fftSize, peakDb: bins[best], rate: ctx.sampleRate };
  await ctx.close();
  return out;
})()"#;

const INBOUND_AUDIO: &str = "window.stratus.pc.getStats().then(r => { let a = null; r.forEach(s => { if (s.type === 'inbound-rtp' && s.kind === 'audio') a = s; }); return a; })";

async fn open(url: &str) -> Chromium {
    let mut page = Chromium::launch(
        url,
        &LaunchOptions {
            window: (800, 600),
            ..LaunchOptions::default()
        },
    )
    .await
    .expect("launch headless chromium");
    page.wait_for(
        &format!("window.stratus && window.stratus.pc && ({INBOUND_VIDEO}).then(s => s && s.framesDecoded > 0)"),
        Duration::from_secs(60),
        "the first decoded frame",
    )
    .await
    .expect("first frame");
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_demo_and_vkcube_play_at_once_with_sound() {
    if !have("vkcube") {
        eprintln!("SKIP: apt-get install vulkan-tools");
        return;
    }
    let mut config = NodeConfig::loopback("");
    config.capacity = 2;
    config.titles = vec!["demo".into(), "vkcube".into()];
    config.video.width = 640;
    config.video.height = 360;
    config.video.fps = 30;
    let root = std::env::temp_dir().join(format!("stratus-it-sessions-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    config.sessions.runtime_root = root.clone();
    let before = Leftovers::now(&root);
    let stack = crate::support::start_with(config, &studio()).await;
    publish(
        stack.addr,
        "vkcube",
        &["vkcube", "--width", "{width}", "--height", "{height}"],
    )
    .await;

    let mut demo = open(&format!("{}?title=demo", stack.page_url())).await;
    let mut cube = open(&format!("{}?title=vkcube", stack.page_url())).await;
    let sessions = stack.shared().store.sessions(10).await.expect("records");
    let titles: Vec<&str> = sessions.iter().map(|r| r.title.as_str()).collect();
    assert!(
        titles.contains(&"demo") && titles.contains(&"vkcube"),
        "{titles:?}"
    );

    // Both decode for 20 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = [
        demo.eval(INBOUND_VIDEO).await.expect("stats"),
        cube.eval(INBOUND_VIDEO).await.expect("stats"),
    ];
    tokio::time::sleep(Duration::from_secs(20)).await;
    let last = [
        demo.eval(INBOUND_VIDEO).await.expect("stats"),
        cube.eval(INBOUND_VIDEO).await.expect("stats"),
    ];
    let mut rates = Vec::new();
    for (name, (a, b)) in ["demo", "vkcube"].iter().zip(first.iter().zip(&last)) {
        let secs = (num(b, "timestamp") - num(a, "timestamp")) / 1000.0;
        let fps = (num(b, "framesDecoded") - num(a, "framesDecoded")) / secs;
        eprintln!(
            "{name}: {fps:.1} fps decoded over {secs:.1} s at {}x{}",
            num(b, "frameWidth"),
            num(b, "frameHeight")
        );
        assert_eq!(
            (num(b, "frameWidth"), num(b, "frameHeight")),
            (640.0, 360.0),
            "{name}"
        );
        rates.push(fps);
    }
    // A liveness floor: each stream keeps flowing while the other plays. The rate two sessions
    // sustain is `stratus-bench node` (sessions_720p30_max) on a quiet machine.
    for (name, fps) in ["demo", "vkcube"].iter().zip(&rates) {
        assert!(*fps >= 15.0, "{name} decoded at {fps:.1} fps");
    }

    // Sound: both pages receive the audio track; the demo's tone is its spectral peak.
    for (name, page) in [("demo", &mut demo), ("vkcube", &mut cube)] {
        let audio = page.eval(INBOUND_AUDIO).await.expect("audio stats");
        eprintln!("{name}: inbound audio {audio}");
        page.wait_for(
            &format!("({INBOUND_AUDIO}).then(a => a && a.packetsReceived > 50)"),
            Duration::from_secs(10),
            "audio packets",
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let peak = demo.eval(AUDIO_PEAK).await.expect("analyse");
    eprintln!("demo audio: {peak}");
    let hz = num(&peak, "peakHz");
    assert!(
        (hz - server::audio::DEMO_TONE_HZ).abs() <= 15.0,
        "the demo's tone is {} Hz; the received sound peaks at {hz:.1} Hz ({peak})",
        server::audio::DEMO_TONE_HZ
    );

    // While they play, the check below sees what the sessions hold (so it can see leftovers).
    let during = Leftovers::now(&root);
    assert!(
        during.processes.iter().any(|p| p.ends_with("vkcube"))
            && during.processes.iter().any(|p| p.ends_with("Xvfb"))
            && during.session_dirs.len() == 1
            && during.sinks.len() == 2
            && during.x_sockets.len() > before.x_sockets.len(),
        "the sessions' resources are not where the teardown check looks: {during:#?}"
    );

    // Teardown: the browsers leave; the node ends both sessions and stops the sandboxed title.
    drop(demo);
    drop(cube);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let records = stack.shared().store.sessions(10).await.expect("records");
        if records.iter().all(|r| r.end_reason.is_some()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sessions did not end: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing of theirs remains: no title process, no Xvfb, no X socket or lock, no sink, no
    // shared-memory file, no session directory. (The node's sound server and layer install
    // are the node's, not a session's: they go when the node stops.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let after = Leftovers::now(&root);
        let left = after.beyond(&before);
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "left behind after both sessions ended: {left:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stack);
    let _ = std::fs::remove_dir_all(&root);
}

/// What sessions could leave behind on this machine.
#[derive(Debug, Default)]
struct Leftovers {
    /// Processes started for a session (they carry `STRATUS_SESSION_ID`), and Xvfb servers
    /// that this process started.
    processes: Vec<String>,
    x_sockets: Vec<String>,
    x_locks: Vec<String>,
    shm: Vec<String>,
    /// `session-*` directories under the node's runtime directory.
    session_dirs: Vec<String>,
    /// Sinks on the node's sound server other than the node's own.
    sinks: Vec<String>,
}

impl Leftovers {
    fn now(root: &std::path::Path) -> Leftovers {
        let names = |dir: &str, prefix: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with(prefix))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        };
        let me = std::process::id().to_string();
        let mut processes = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let path = entry.path();
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0).into_owned();
            let session = std::fs::read(path.join("environ"))
                .is_ok_and(|env| env.windows(19).any(|w| w == b"STRATUS_SESSION_ID="));
            let ppid = std::fs::read_to_string(path.join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            if session || (argv0.ends_with("Xvfb") && ppid == me) {
                processes.push(format!("{} {argv0}", entry.file_name().to_string_lossy()));
            }
        }
        let mut session_dirs = Vec::new();
        let mut sinks = Vec::new();
        for node_dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let dir = node_dir.path();
            for s in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if s.file_name().to_string_lossy().starts_with("session-") {
                    session_dirs.push(s.path().display().to_string());
                }
            }
            let socket = dir.join("pulse").join("native");
            if socket.exists() {
                let out = std::process::Command::new("pactl")
                    .env("PULSE_SERVER", format!("unix:{}", socket.display()))
                    .args(["list", "short", "sinks"])
                    .output();
                if let Ok(out) = out {
                    sinks.extend(
                        String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .filter(|l| l.contains("stratus_"))
                            .map(str::to_owned),
                    );
                }
            }
        }
        Leftovers {
            processes,
            x_sockets: names("/tmp/.X11-unix", "X"),
            x_locks: names("/tmp", ".X"),
            shm: names("/dev/shm", ""),
            session_dirs,
            sinks,
        }
    }

    /// What `self` has that `before` had not.
    fn beyond(&self, before: &Leftovers) -> Vec<String> {
        let new = |now: &[String], then: &[String]| -> Vec<String> {
            now.iter().filter(|x| !then.contains(x)).cloned().collect()
        };
        let mut left = new(&self.processes, &before.processes);
        left.extend(new(&self.x_sockets, &before.x_sockets));
        left.extend(new(&self.x_locks, &before.x_locks));
        left.extend(new(&self.shm, &before.shm));
        left.extend(self.session_dirs.iter().cloned());
        left.extend(self.sinks.iter().cloned());
        left
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_that_fail_reach_the_player_and_the_session_record() {
    let mut config = NodeConfig::loopback("");
    config.titles = vec!["demo".into(), "crasher".into(), "blank".into()];
    config.video.width = 320;
    config.video.height = 240;
    config.video.fps = 30;
    config.sessions.first_frame_timeout = Duration::from_secs(3);
    let stack = crate::support::start_with(config, &studio()).await;
    publish(
        stack.addr,
        "crasher",
        &["sh", "-c", "echo 'missing game data' >&2; exit 7"],
    )
    .await;
    publish(stack.addr, "blank", &["sleep", "600"]).await;

    for (title, want) in [
        (
            "crasher",
            "the title exited (exit status: 7) before showing a frame: missing game data",
        ),
        ("blank", "the title showed no frame within 3s"),
    ] {
        let mut page = crate::support::play_until_the_session_ends(&stack, title).await;
        let shown = page
            .eval("({ end: window.stratus.lastEnd, status: window.stratus.status })")
            .await
            .expect("state");
        eprintln!("{title}: {shown}");
        let end = shown["end"].as_str().unwrap_or_default();
        assert!(end.contains(want), "{title}: the player saw {end:?}");
        assert!(
            shown["status"].as_str().unwrap_or_default().contains(want),
            "{title}: the page says {shown}"
        );
        drop(page);
        let records = stack.shared().store.sessions(10).await.expect("records");
        let record = records
            .iter()
            .find(|r| r.title == title)
            .unwrap_or_else(|| panic!("no record for {title}: {records:?}"));
        let reason = record.end_reason.as_deref().unwrap_or_default();
        assert!(reason.contains(want), "{title}: the record says {reason:?}");
    }
}
