//! `stratus-bench node`: what one node sustains on this machine.
//!
//! A signaling service and a node with the demo title run in this process ([`crate::lab`]);
//! the players are headless webrtc-rs peers ([`crate::rtc_peer`]) that receive and count
//! frames without decoding them, so nearly all of the two cores go to the node. Latencies and
//! frame rates are the node's own figures ([`server::metrics`]): capture→packet is the time
//! from a frame's capture to its RTP packets being handed to the transport, and the frame rate
//! is frames sent per second of the measuring window. Each player's received frame rate is
//! reported beside them.
//!
//! 1. One session at 1280×720, 60 fps: warm-up, then the measuring window; capture→packet p50
//!    and p99 over the frames sent in the window.
//! 2. For n = 1, 2, … `max_sessions`: a fresh node at 1280×720, 30 fps with capacity n and n
//!    players at once. A level passes when every session sends ≥ 29 fps and its capture→packet
//!    p99 is ≤ 33 ms; the bench stops at the first level that fails (unless `all_levels`).
//!
//! Fields (stable): `capture_to_packet_ms_p50`, `capture_to_packet_ms_p99` (one 720p60
//! session), `sessions_720p30_max` (the largest passing n; 0 if none), plus `fps_720p60`
//! (node side), `receiver_fps_720p60`, `frames_dropped_720p60`, `quality_step_720p60`,
//! `samples_720p60`, `receiver_audio_pps_720p60` (Opus packets per second the player got; 0
//! without `audio`), `title`, `levels` (one object per n: `sessions`, `min_fps`, `min_receiver_fps`,
//! `worst_p50_ms`, `worst_p99_ms`, `max_quality_step`, `passed`, and `error` when the level
//! could not run), `seconds`, `warmup_s`, `audio`, `load_avg_1m` (at the start),
//! `load_avg_1m_end`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use server::config::NodeConfig;
use server::metrics::{SessionMetrics, quantile};

use crate::lab::Lab;
use crate::rtc_peer::{Player, PlayerOptions};
use crate::stats::Report;

/// Samples of capture→packet each session keeps (`server::metrics`' window). Windows longer
/// than this many frames are measured over their last this-many frames.
const SAMPLE_WINDOW: usize = 4096;

/// A level passes when every session sends at least this many frames per second…
pub const MIN_FPS_720P30: f64 = 29.0;
/// …and its capture→packet p99 is at most this, in ms.
pub const MAX_P99_MS_720P30: f64 = 33.0;

/// What to run.
#[derive(Debug, Clone)]
pub struct NodeArgs {
    /// Measuring window per phase and level, in seconds.
    pub seconds: f64,
    /// Warm-up after the first frame, before measuring, in seconds.
    pub warmup: f64,
    /// The most concurrent 720p30 sessions to try.
    pub max_sessions: u32,
    /// Stream sound too (the node's PulseAudio and Opus path; players receive it).
    pub audio: bool,
    /// Run every level up to `max_sessions` even after one fails (for the record;
    /// `sessions_720p30_max` still counts only the passing levels from 1 up).
    pub all_levels: bool,
    /// The title the sessions play: `demo` (the built-in title: its capture time is when it
    /// starts rendering a frame) or `vkcube` (Debian's, run in a session sandbox and captured
    /// by our Vulkan layer: its capture time is its present).
    pub title: String,
}

impl Default for NodeArgs {
    fn default() -> Self {
        Self {
            seconds: 10.0,
            warmup: 3.0,
            max_sessions: 6,
            audio: false,
            all_levels: false,
            title: signaling::catalog::DEMO_TITLE.to_string(),
        }
    }
}

/// One session over the measuring window.
#[derive(Debug, Clone)]
struct SessionResult {
    /// Frames the node sent per second.
    fps: f64,
    /// Frames the player received per second.
    receiver_fps: f64,
    /// Capture→packet over the window, ms.
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
    frames_dropped: u64,
    quality_step: u64,
    /// Opus packets the player received per second.
    audio_pps: f64,
}

/// One session's counters at one instant.
struct Snapshot {
    at: Instant,
    frames_sent: u64,
    frames_dropped: u64,
    samples: Vec<f64>,
    received: u64,
    audio_packets: u64,
}

fn snapshot(m: &SessionMetrics, player: &Player) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        frames_sent: m.frames_sent.load(Ordering::Relaxed),
        frames_dropped: m.frames_dropped.load(Ordering::Relaxed),
        samples: m.capture_to_packet_samples(),
        received: player.frames(),
        audio_packets: player.audio_packets(),
    }
}

/// Runs the benchmark and returns its report.
pub fn run(args: &NodeArgs) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(bench(args))
}

async fn bench(args: &NodeArgs) -> anyhow::Result<Report> {
    let load_start = load_avg_1m();

    // Phase 1: one 720p60 session.
    let one = run_level(args, 60, 1).await.context("one 720p60 session")?;
    let one = &one[0];
    eprintln!(
        "720p60: {:.1} fps sent, {:.1} received, capture→packet p50 {:.2} ms p99 {:.2} ms",
        one.fps, one.receiver_fps, one.p50_ms, one.p99_ms
    );

    // Phase 2: as many 720p30 sessions as keep their rate and latency.
    let mut levels = Vec::new();
    let mut max_passing = 0;
    let mut failed = false;
    for n in 1..=args.max_sessions {
        let level = match run_level(args, 30, n).await {
            Ok(results) => {
                let min = |f: fn(&SessionResult) -> f64| {
                    results.iter().map(f).fold(f64::INFINITY, f64::min)
                };
                let max = |f: fn(&SessionResult) -> f64| results.iter().map(f).fold(0.0, f64::max);
                let min_fps = min(|r| r.fps);
                let worst_p99 = max(|r| r.p99_ms);
                let passed = results
                    .iter()
                    .all(|r| r.fps >= MIN_FPS_720P30 && r.p99_ms <= MAX_P99_MS_720P30);
                json!({
                    "sessions": n,
                    "min_fps": round3(min_fps),
                    "min_receiver_fps": round3(min(|r| r.receiver_fps)),
                    "worst_p50_ms": round3(max(|r| r.p50_ms)),
                    "worst_p99_ms": round3(worst_p99),
                    "max_quality_step": results.iter().map(|r| r.quality_step).max().unwrap_or(0),
                    "frames_dropped": results.iter().map(|r| r.frames_dropped).sum::<u64>(),
                    "passed": passed,
                })
            }
            Err(e) => json!({ "sessions": n, "passed": false, "error": format!("{e:#}") }),
        };
        eprintln!("720p30 × {n}: {level}");
        let passed = level["passed"].as_bool().unwrap_or(false);
        levels.push(level);
        failed |= !passed;
        if !failed {
            max_passing = n;
        } else if !args.all_levels {
            break;
        }
    }

    Ok(Report::default()
        .field("capture_to_packet_ms_p50", one.p50_ms)
        .field("capture_to_packet_ms_p99", one.p99_ms)
        .field("sessions_720p30_max", max_passing)
        .field("fps_720p60", one.fps)
        .field("receiver_fps_720p60", one.receiver_fps)
        .field("frames_dropped_720p60", one.frames_dropped)
        .field("quality_step_720p60", one.quality_step)
        .field("samples_720p60", one.samples)
        .field("receiver_audio_pps_720p60", one.audio_pps)
        .field("levels", Value::Array(levels))
        .field("seconds", args.seconds)
        .field("warmup_s", args.warmup)
        .field("audio", args.audio)
        .field("title", args.title.as_str())
        .field("load_avg_1m", load_start)
        .field("load_avg_1m_end", load_avg_1m()))
}

fn round3(v: f64) -> f64 {
    if v.is_finite() {
        (v * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// A fresh lab at 1280×720 and `fps` with `sessions` players; one result per session.
async fn run_level(args: &NodeArgs, fps: u32, sessions: u32) -> anyhow::Result<Vec<SessionResult>> {
    let mut config = NodeConfig::loopback("");
    config.video.width = 1280;
    config.video.height = 720;
    config.video.fps = fps;
    config.capacity = sessions;
    config.sessions.audio = args.audio;
    let external = args.title != signaling::catalog::DEMO_TITLE;
    if external {
        config.titles.push(args.title.clone());
    }
    let lab = Lab::start(config).await?;
    if external {
        publish_command_title(&lab, &args.title).await?;
    }
    let metrics = lab.node_metrics();
    let options = PlayerOptions {
        title: Some(args.title.clone()),
        audio: args.audio,
        step_timeout: Duration::from_secs(30),
        ..PlayerOptions::default()
    };
    let connecting = (0..sessions).map(|_| Player::connect(lab.addr, &options));
    let mut players = Vec::new();
    let mut failure = None;
    for result in futures_util::future::join_all(connecting).await {
        match result {
            Ok(p) => players.push(p),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    let result = match failure {
        Some(e) => Err(e.context(format!("connect {sessions} players"))),
        None => measure(args, &lab, &players).await,
    };

    // Tear down and wait until the node has ended every session, so the next level starts on
    // idle cores.
    futures_util::future::join_all(players.into_iter().map(Player::close)).await;
    drop(lab);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !metrics.sessions().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    result
}

/// Puts a command title into the lab's catalog: `vkcube` at the stream's size.
async fn publish_command_title(lab: &Lab, id: &str) -> anyhow::Result<()> {
    use signaling::catalog::{Launch, Title};
    let argv: Vec<String> = match id {
        "vkcube" => ["vkcube", "--width", "{width}", "--height", "{height}"]
            .map(String::from)
            .to_vec(),
        other => bail!("unknown bench title {other:?}: demo or vkcube"),
    };
    let mut title: Title = signaling::catalog::demo_title();
    title.manifest.id = id.to_string();
    title.manifest.name = id.to_string();
    title.manifest.launch = Launch::Command { argv };
    title.studio = "bench".to_string();
    lab.shared()
        .store
        .put_title(&title)
        .await
        .map_err(|e| anyhow::anyhow!("publish {id}: {e}"))
}

/// Warm-up, then the measuring window over every player's session.
async fn measure(
    args: &NodeArgs,
    lab: &Lab,
    players: &[Player],
) -> anyhow::Result<Vec<SessionResult>> {
    for p in players {
        p.wait_frames(1, Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let metrics = lab.node_metrics();
    let by_id: HashMap<String, Arc<SessionMetrics>> = metrics.sessions().into_iter().collect();
    let mut sessions = Vec::new();
    for p in players {
        let Some(m) = by_id.get(p.session_id()) else {
            bail!(
                "the node runs no session {} (it runs {:?})",
                p.session_id(),
                by_id.keys().collect::<Vec<_>>()
            );
        };
        sessions.push((p, m.clone()));
    }
    let before: Vec<Snapshot> = sessions.iter().map(|(p, m)| snapshot(m, p)).collect();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let after: Vec<Snapshot> = sessions.iter().map(|(p, m)| snapshot(m, p)).collect();

    let mut results = Vec::new();
    for (((p, m), a), b) in sessions.iter().zip(&before).zip(after) {
        if !p.connected() {
            bail!(
                "session {} lost its connection: {}",
                p.session_id(),
                p.state()
            );
        }
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        // The node's window only appends until it is full, so the frames of the measuring
        // window are the samples added since the first snapshot.
        let window: &[f64] = if b.samples.len() < SAMPLE_WINDOW {
            &b.samples[a.samples.len().min(b.samples.len())..]
        } else {
            &b.samples
        };
        if window.is_empty() {
            bail!("session {} sent no frame in {secs:.1} s", p.session_id());
        }
        results.push(SessionResult {
            fps: b.frames_sent.saturating_sub(a.frames_sent) as f64 / secs,
            receiver_fps: b.received.saturating_sub(a.received) as f64 / secs,
            p50_ms: quantile(window, 0.5).unwrap_or(0.0),
            p99_ms: quantile(window, 0.99).unwrap_or(0.0),
            samples: window.len(),
            frames_dropped: b.frames_dropped.saturating_sub(a.frames_dropped),
            quality_step: m.quality_step.load(Ordering::Relaxed),
            audio_pps: b.audio_packets.saturating_sub(a.audio_packets) as f64 / secs,
        });
    }
    Ok(results)
}

/// The 1-minute load average from `/proc/loadavg`; -1 where it cannot be read.
pub fn load_avg_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_load_average_reads() {
        assert!(load_avg_1m() >= 0.0);
    }
}
