//! `stratus-bench lab`: our streaming stack against a plain GStreamer sender, side by side, on
//! equal input.
//!
//! Three cases, run in turn within every round (so a machine's slow minute hurts all of them
//! alike), `--runs` rounds, pooled:
//!
//! - `stratus_browser`: our node playing the built-in `pattern` title into headless Chromium
//!   through our page;
//! - `reference_browser`: the Selkies-style `webrtcbin` pipeline ([`crate::reference`]) fed
//!   the same generator's frames, into the same Chromium, through the same page and signaling;
//! - `stratus_native`: our node into the native client on Xvfb.
//!
//! Each sender runs in a process of its own ([`sender`]), so its CPU time is its own. In
//! Chromium every presented frame's glass-to-glass is the `requestVideoFrameCallback`'s
//! expected display time − the frame's latency code, and the sender's share is the callback's
//! `receiveTime` (its last packet received) − the code; the native client measures the same from
//! the pixels it presents. Jitter buffer, decode and freezes come from `getStats` (the native
//! client counts freezes by the W3C rule and has no jitter buffer); CPU is process time over
//! wall time, 100 = one core, for the sender and for the receiver (Chromium with all its
//! processes).

pub mod sender;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use signaling::config::Config;
use signaling::service::{ReplicaState, Service};
use tokio::sync::watch;

use crate::cpu::CpuMeter;
use crate::e2e::{INBOUND_VIDEO, StatsSpan, open_measured_page, presented_fps};
use crate::stats::percentile;
use sender::{SenderArgs, SenderKind, SenderProcess};

/// The cases, in the order each round runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// Our node into headless Chromium.
    StratusBrowser,
    /// The reference sender into headless Chromium.
    ReferenceBrowser,
    /// Our node into the native client.
    StratusNative,
}

impl Case {
    /// Every case.
    pub const ALL: [Case; 3] = [
        Case::StratusBrowser,
        Case::ReferenceBrowser,
        Case::StratusNative,
    ];

    /// The case's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Case::StratusBrowser => "stratus_browser",
            Case::ReferenceBrowser => "reference_browser",
            Case::StratusNative => "stratus_native",
        }
    }

    fn sender(self) -> SenderKind {
        match self {
            Case::ReferenceBrowser => SenderKind::Reference,
            _ => SenderKind::Stratus,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LabArgs {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second both senders make.
    pub fps: u32,
    /// Video bitrate, kbit/s.
    pub kbps: u32,
    /// Rounds; each runs every case once.
    pub runs: u32,
    /// Seconds measured per case and round.
    pub seconds: u32,
    /// The cases (all three by default).
    pub cases: Vec<Case>,
}

/// One case's measurements in one round.
#[derive(Debug, Clone, Default)]
struct CaseRun {
    g2g: Vec<f64>,
    sender: Vec<f64>,
    /// The sender's own frame made → its packets handed to its transport.
    sender_internal: Vec<f64>,
    /// The sender's own frame made → encoded.
    encode: Vec<f64>,
    jitter_buffer_ms: f64,
    decode_ms: f64,
    fps: f64,
    /// Video received, kbit/s.
    received_kbps: f64,
    freezes: u64,
    sender_cpu: f64,
    receiver_cpu: f64,
}

/// Runs the lab and returns its report: one object per case, the ratios and `runs`.
pub fn run(args: &LabArgs) -> anyhow::Result<Value> {
    if args.runs == 0 || args.seconds == 0 || args.cases.is_empty() {
        bail!("the lab needs at least one run of at least one second of one case");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let dir = std::env::temp_dir().join(format!("stratus-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("a directory for the lab's logs")?;
    let mut results: Vec<(Case, Vec<CaseRun>)> =
        args.cases.iter().map(|c| (*c, Vec::new())).collect();
    for round in 0..args.runs {
        for (case, runs) in &mut results {
            let files = dir.join(format!("{}-{}", case.name(), round + 1));
            eprintln!(
                "lab: round {}/{}, {} ({}x{} at {} fps, {} s)",
                round + 1,
                args.runs,
                case.name(),
                args.width,
                args.height,
                args.fps,
                args.seconds
            );
            let run = runtime
                .block_on(run_case(*case, args, &files))
                .with_context(|| format!("{} in round {}", case.name(), round + 1))?;
            runs.push(run);
        }
    }
    if std::env::var_os("STRATUS_LAB_KEEP").is_some() {
        eprintln!("lab: the senders' logs are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(report(args, &results))
}

/// The pooled report.
fn report(args: &LabArgs, results: &[(Case, Vec<CaseRun>)]) -> Value {
    let mut out = Map::new();
    out.insert("width".into(), json!(args.width));
    out.insert("height".into(), json!(args.height));
    out.insert("fps_asked".into(), json!(args.fps));
    out.insert("kbps".into(), json!(args.kbps));
    out.insert("seconds".into(), json!(args.seconds));
    out.insert("runs".into(), json!(args.runs));
    let mut pooled = Vec::new();
    for (case, runs) in results {
        let all = |f: fn(&CaseRun) -> &Vec<f64>| -> Vec<f64> {
            runs.iter().flat_map(|r| f(r).iter().copied()).collect()
        };
        let mean = |f: fn(&CaseRun) -> f64| -> f64 {
            runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
        };
        let g2g = all(|r| &r.g2g);
        let sender = all(|r| &r.sender);
        let internal = all(|r| &r.sender_internal);
        let encode = all(|r| &r.encode);
        let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
        // Where each case's time goes, from medians (so the stages add up to about the
        // glass-to-glass median, not exactly): frame made → encoded → the frame's packets handed
        // to the sender's transport (our node: `write_sample` returned, packets queued before
        // the pacer; the reference: its payloader's last packet, before webrtcbin's session,
        // SRTP and ICE) → last packet received (pacing, SRTP, the socket and the network) →
        // out of the jitter buffer → decoded → presented.
        let (g2g_p50, sender_p50, internal_p50, encode_p50) = (
            percentile(&g2g, 50.0),
            percentile(&sender, 50.0),
            percentile(&internal, 50.0),
            percentile(&encode, 50.0),
        );
        let (jitter, decode) = (mean(|r| r.jitter_buffer_ms), mean(|r| r.decode_ms));
        let stages = json!({
            "encode": round3(encode_p50),
            "packetise": round3((internal_p50 - encode_p50).max(0.0)),
            "pace_and_network": round3((sender_p50 - internal_p50).max(0.0)),
            "jitter_buffer": round3(jitter),
            "decode": round3(decode),
            "present": round3((g2g_p50 - sender_p50 - jitter - decode).max(0.0)),
        });
        let fields = json!({
            "g2g_ms_p50": round3(percentile(&g2g, 50.0)),
            "g2g_ms_p95": round3(percentile(&g2g, 95.0)),
            "g2g_ms_p99": round3(percentile(&g2g, 99.0)),
            "sender_ms_p50": round3(percentile(&sender, 50.0)),
            "sender_internal_ms_p50": round3(percentile(&internal, 50.0)),
            "jitter_buffer_ms_mean": round3(mean(|r| r.jitter_buffer_ms)),
            "decode_ms_mean": round3(mean(|r| r.decode_ms)),
            "fps": round3(mean(|r| r.fps)),
            "received_kbps": round3(mean(|r| r.received_kbps)),
            "fps_min_run": round3(runs.iter().map(|r| r.fps).fold(f64::INFINITY, f64::min)),
            "freezes": runs.iter().map(|r| r.freezes).sum::<u64>(),
            "sender_cpu_pct": round3(mean(|r| r.sender_cpu)),
            "receiver_cpu_pct": round3(mean(|r| r.receiver_cpu)),
            "g2g_ms_p50_per_run": runs.iter().map(|r| round3(percentile(&r.g2g, 50.0))).collect::<Vec<_>>(),
            "samples": g2g.len(),
            "stages_ms": stages,
        });
        pooled.push((*case, fields.clone()));
        out.insert(case.name().into(), fields);
    }
    let get = |case: Case, field: &str| -> Option<f64> {
        pooled
            .iter()
            .find(|(c, _)| *c == case)
            .and_then(|(_, v)| v[field].as_f64())
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!((a / b * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    // Each ratio: a case's field over the reference's.
    for (name, case, field) in [
        ("browser_g2g_ratio", Case::StratusBrowser, "g2g_ms_p50"),
        ("sender_ms_ratio", Case::StratusBrowser, "sender_ms_p50"),
        ("sender_cpu_ratio", Case::StratusBrowser, "sender_cpu_pct"),
        (
            "native_over_reference_g2g",
            Case::StratusNative,
            "g2g_ms_p50",
        ),
    ] {
        let value = ratio(get(case, field), get(Case::ReferenceBrowser, field));
        out.insert(name.into(), value);
    }
    out.insert(
        "reference_not_reproduced".into(),
        json!(crate::reference::NOT_REPRODUCED),
    );
    Value::Object(out)
}

/// The report as a table: one column per case, then the ratios.
pub fn table(report: &Value) -> String {
    let cases: Vec<&str> = Case::ALL
        .iter()
        .map(|c| c.name())
        .filter(|n| report.get(*n).is_some())
        .collect();
    let rows = [
        "g2g_ms_p50",
        "g2g_ms_p95",
        "g2g_ms_p99",
        "sender_ms_p50",
        "sender_internal_ms_p50",
        "jitter_buffer_ms_mean",
        "decode_ms_mean",
        "fps",
        "received_kbps",
        "freezes",
        "sender_cpu_pct",
        "receiver_cpu_pct",
        "samples",
    ];
    let mut out = format!(
        "{}x{} at {} fps, {} kbit/s, {} run(s) of {} s per case\n\n{:<24}",
        report["width"],
        report["height"],
        report["fps_asked"],
        report["kbps"],
        report["runs"],
        report["seconds"],
        ""
    );
    for c in &cases {
        out.push_str(&format!("{c:>19}"));
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("{row:<24}"));
        for c in &cases {
            out.push_str(&format!("{:>19}", report[*c][row].to_string()));
        }
        out.push('\n');
    }
    out.push_str("\nwhere the time goes (ms, from medians)\n");
    for stage in [
        "encode",
        "packetise",
        "pace_and_network",
        "jitter_buffer",
        "decode",
        "present",
    ] {
        out.push_str(&format!("{stage:<24}"));
        for c in &cases {
            out.push_str(&format!(
                "{:>19}",
                report[*c]["stages_ms"][stage].to_string()
            ));
        }
        out.push('\n');
    }
    out.push('\n');
    for r in [
        "browser_g2g_ratio",
        "sender_ms_ratio",
        "sender_cpu_ratio",
        "native_over_reference_g2g",
    ] {
        out.push_str(&format!("{r:<28}{}\n", report[r]));
    }
    out
}

/// The lab's signaling service, stopped on drop.
pub(crate) struct Signaling {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: std::sync::Arc<ReplicaState>,
    stop: watch::Sender<bool>,
}

impl Signaling {
    pub(crate) async fn start() -> anyhow::Result<Signaling> {
        let service = Service::bind_with(SocketAddr::from(([127, 0, 0, 1], 0)), &Config::default())
            .await
            .context("start the signaling service")?;
        let addr = service.local_addr();
        let shared = service.shared();
        let (stop, mut stop_rx) = watch::channel(false);
        tokio::spawn(service.run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        Ok(Signaling { addr, shared, stop })
    }
}

impl Drop for Signaling {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// A fresh signaling service and `kind`'s sender process streaming `width`×`height` at `fps`
/// and `kbps`, registered with it; the sender's log and measurements go in `dir` (created).
pub(crate) async fn start_sender(
    kind: SenderKind,
    (width, height, fps, kbps): (u32, u32, u32, u32),
    dir: &std::path::Path,
) -> anyhow::Result<(Signaling, SenderProcess)> {
    std::fs::create_dir_all(dir).context("a directory for the sender's files")?;
    let signaling = Signaling::start().await?;
    let sender = SenderProcess::spawn(
        &SenderArgs {
            kind,
            signaling_url: format!("ws://{}/ws/node", signaling.addr),
            width,
            height,
            fps,
            kbps,
            metrics_out: dir.join(format!("{}.json", kind.node_id())),
        },
        dir,
    )?;
    if let Err(e) = crate::lab::wait_registered(&signaling.shared, kind.node_id()).await {
        bail!("{e:#}; the sender's log:\n{}", sender.log_tail());
    }
    Ok((signaling, sender))
}

/// Runs one case once; the sender's log and measurements go in `dir` (a fresh directory).
async fn run_case(case: Case, args: &LabArgs, dir: &std::path::Path) -> anyhow::Result<CaseRun> {
    let stream = (args.width, args.height, args.fps, args.kbps);
    let (signaling, mut sender) = start_sender(case.sender(), stream, dir).await?;
    let run = match case {
        Case::StratusNative => native(args, &signaling, &sender).await,
        _ => browser(args, &signaling, &sender).await,
    };
    match run {
        Ok((mut run, (start, end))) => {
            // The sender's own samples from the measured span only (not the start-up's nor the
            // teardown's).
            let span = |mut v: Vec<f64>, from: usize, to: usize| {
                v.truncate(to);
                v.drain(..from.min(v.len()));
                v
            };
            run.sender_internal = span(sender.samples("capture_to_packet_ms"), start.0, end.0);
            run.encode = span(sender.samples("encode_ms"), start.1, end.1);
            Ok(run)
        }
        Err(e) => {
            let state = if sender.exited() { "exited" } else { "running" };
            bail!("{e:#}\nthe sender ({state}) logged:\n{}", sender.log_tail())
        }
    }
}

/// How many of the sender's samples of each stage were written at the start and at the end of
/// the measured span.
type Marks = ((usize, usize), (usize, usize));

fn list(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

async fn browser(
    args: &LabArgs,
    signaling: &Signaling,
    sender: &SenderProcess,
) -> anyhow::Result<(CaseRun, Marks)> {
    let url = format!(
        "http://{}/?title={}",
        signaling.addr,
        signaling::catalog::PATTERN_TITLE
    );
    let mut page = open_measured_page(&url, args.width, args.height).await?;
    let before = page.eval(INBOUND_VIDEO).await?;
    let marks = sender.marks();
    let sender_cpu = CpuMeter::start(sender.pid().context("the sender has exited")?);
    let receiver_cpu = CpuMeter::start(page.pid().context("chromium has exited")?);
    page.eval(&format!("window.__lab.start({})", args.seconds))
        .await?;
    tokio::time::sleep(Duration::from_secs(u64::from(args.seconds))).await;
    page.wait_for(
        "window.__lab.done",
        Duration::from_secs(20),
        "the end of the run",
    )
    .await?;
    let (sender_cpu, receiver_cpu) = (sender_cpu.percent(), receiver_cpu.percent());
    let end = sender.marks_after_flush().await;
    let after = page.eval(INBOUND_VIDEO).await?;
    let lab = page.eval("window.__lab.report()").await?;
    drop(page);

    let g2g = list(&lab["g2g"]);
    if g2g.is_empty() {
        bail!("no frame with a readable latency code was presented: {lab}");
    }
    let stats = StatsSpan { before, after };
    let elapsed_ms = lab["elapsed_ms"].as_f64().unwrap_or(0.0);
    Ok((
        CaseRun {
            g2g,
            sender: list(&lab["snd"]),
            sender_internal: Vec::new(),
            encode: Vec::new(),
            jitter_buffer_ms: stats.jitter_buffer_ms(),
            decode_ms: stats.decode_ms(),
            fps: presented_fps(&lab),
            received_kbps: 8.0 * stats.delta("bytesReceived") / elapsed_ms.max(1e-9),
            freezes: stats.delta("freezeCount").max(0.0) as u64,
            sender_cpu,
            receiver_cpu,
        },
        (marks, end),
    ))
}

async fn native(
    args: &LabArgs,
    signaling: &Signaling,
    sender: &SenderProcess,
) -> anyhow::Result<(CaseRun, Marks)> {
    use crate::native::NativeClient;

    let xvfb =
        capture::display::Xvfb::start_sized(args.width.max(1280) + 64, args.height.max(720) + 64)
            .context("start Xvfb for the client's window")?;
    let size = format!("{}x{}", args.width, args.height);
    let mut client = NativeClient::launch(
        &xvfb.display,
        signaling.addr,
        &[
            "--title",
            signaling::catalog::PATTERN_TITLE,
            "--size",
            &size,
        ],
    )?;
    client
        .wait_for("the first 60 frames", Duration::from_secs(60), |r| {
            r["screen"] == "playing" && r["frames_presented"].as_u64().unwrap_or(0) >= 60
        })
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = client.report().context("the client's report")?;
    let marks = sender.marks();
    let sender_cpu = CpuMeter::start(sender.pid().context("the sender has exited")?);
    let receiver_cpu = CpuMeter::start(client.pid());
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(u64::from(args.seconds))).await;
    let (sender_cpu, receiver_cpu) = (sender_cpu.percent(), receiver_cpu.percent());
    // The sender's file is rewritten once a second, the client's report twice: wait for both.
    let end = sender.marks_after_flush().await;
    let after = client.report().context("the client's report")?;
    let elapsed_s = started.elapsed().as_secs_f64();
    client.stop();

    let tail = |k: &str| -> Vec<f64> {
        let skip = before[k].as_array().map_or(0, Vec::len);
        after[k]
            .as_array()
            .map(|a| a.iter().skip(skip).filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let g2g = tail("glass_to_glass_ms");
    if g2g.is_empty() {
        bail!(
            "no frame with a readable latency code was presented: {}",
            crate::native::summary(Some(&after))
        );
    }
    let count = |k: &str| {
        after[k]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(before[k].as_u64().unwrap_or(0))
    };
    let decode = tail("decode_ms");
    Ok((
        CaseRun {
            g2g,
            sender: tail("sender_ms"),
            sender_internal: Vec::new(),
            encode: Vec::new(),
            jitter_buffer_ms: 0.0,
            decode_ms: decode.iter().sum::<f64>() / decode.len().max(1) as f64,
            fps: count("frames_presented") as f64 / elapsed_s.max(1e-9),
            received_kbps: 8.0 * count("video_bytes") as f64 / elapsed_s.max(1e-9) / 1000.0,
            freezes: count("freezes"),
            sender_cpu,
            receiver_cpu,
        },
        (marks, end),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(g2g: f64, sender: f64, cpu: f64) -> CaseRun {
        CaseRun {
            g2g: vec![g2g; 10],
            sender: vec![sender; 10],
            sender_internal: vec![sender - 1.0; 10],
            encode: vec![sender - 2.0; 10],
            jitter_buffer_ms: 1.0,
            decode_ms: 2.0,
            fps: 60.0,
            received_kbps: 6000.0,
            freezes: 1,
            sender_cpu: cpu,
            receiver_cpu: 50.0,
        }
    }

    #[test]
    fn pools_runs_and_takes_ratios_of_the_pooled_figures() {
        let args = LabArgs {
            width: 1280,
            height: 720,
            fps: 60,
            kbps: 6000,
            runs: 2,
            seconds: 30,
            cases: Case::ALL.to_vec(),
        };
        let results = vec![
            (
                Case::StratusBrowser,
                vec![run(20.0, 5.0, 30.0), run(20.0, 5.0, 30.0)],
            ),
            (
                Case::ReferenceBrowser,
                vec![run(40.0, 10.0, 40.0), run(40.0, 10.0, 20.0)],
            ),
            (
                Case::StratusNative,
                vec![run(10.0, 4.0, 30.0), run(10.0, 4.0, 30.0)],
            ),
        ];
        let r = report(&args, &results);
        assert_eq!(r["runs"], 2);
        assert_eq!(r["stratus_browser"]["g2g_ms_p50"], 20.0);
        assert_eq!(r["reference_browser"]["sender_cpu_pct"], 30.0);
        assert_eq!(r["stratus_browser"]["freezes"], 2);
        assert_eq!(r["stratus_browser"]["samples"], 20);
        assert_eq!(r["browser_g2g_ratio"], 0.5);
        assert_eq!(r["sender_ms_ratio"], 0.5);
        assert_eq!(r["sender_cpu_ratio"], 1.0);
        assert_eq!(r["native_over_reference_g2g"], 0.25);
        // The stages add up to glass-to-glass: 3 + 1 + 1 + 1 + 2 + 12.
        let stages = &r["stratus_browser"]["stages_ms"];
        assert_eq!(stages["encode"], 3.0);
        assert_eq!(stages["packetise"], 1.0);
        assert_eq!(stages["pace_and_network"], 1.0);
        assert_eq!(stages["present"], 12.0);
        let table = table(&r);
        assert!(table.contains("reference_browser") && table.contains("browser_g2g_ratio"));
    }

    #[test]
    fn a_missing_case_leaves_its_ratios_null() {
        let args = LabArgs {
            width: 640,
            height: 360,
            fps: 30,
            kbps: 2000,
            runs: 1,
            seconds: 5,
            cases: vec![Case::StratusBrowser],
        };
        let r = report(&args, &[(Case::StratusBrowser, vec![run(20.0, 5.0, 30.0)])]);
        assert!(r["browser_g2g_ratio"].is_null());
        assert!(r.get("reference_browser").is_none());
    }
}
