//! `stratus-bench impair`: every scenario, for each client, through the relay; our node and,
//! where asked, the latency lab's reference sender into the same Chromium behind the same
//! relay. One row per scenario, client and sender, judged against the scenario's band.
//!
//! Each run: a fresh signaling service and sender process (the latency lab's, so our node and
//! the reference run exactly as they do there, 720p30 `pattern` by default), a relay, the
//! receiver connected through it on a clean path and settled, then the scenario's impairments
//! for its length, then the verdict from what the receiver presented and what the relay saw.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::measure::{Presented, freezes, recovery_ms, tracking};
use super::relay::{BIN, Relay, RelayReport};
use super::scenario::Scenario;
use crate::chromium::Chromium;
use crate::e2e::{INBOUND_VIDEO, StatsSpan, instrument, page_options};
use crate::labbench::sender::SenderKind;
use crate::labbench::{Signaling, start_sender};
use crate::stats::percentile;
use crate::viewer::Viewer;

/// Which receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// Headless Chromium on our page.
    Browser,
    /// The native client's session and decoder, headless ([`crate::viewer`]).
    Native,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Browser => "browser",
            Client::Native => "native",
        }
    }
}

/// The scenarios the reference sender also runs by default (the side-by-side set).
pub const REFERENCE_SCENARIOS: [&str; 4] = ["R2", "R3", "R6", "R7"];

/// What to run.
#[derive(Debug, Clone)]
pub struct ImpairArgs {
    /// Scenario names ("R1"…"R10").
    pub scenarios: Vec<String>,
    /// Receivers.
    pub clients: Vec<Client>,
    /// Scenarios the reference sender runs too (into the browser).
    pub reference: Vec<String>,
    /// Run our node too (false: only the reference's rows).
    pub stratus: bool,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// The senders' bitrate (our node's start and ceiling; the reference's fixed rate), kbit/s.
    pub kbps: u32,
    /// Every scenario's length instead of its own (events keep their place in the run).
    pub seconds: Option<u32>,
    /// Seed of the relay's randomness.
    pub seed: u64,
}

/// One run's outcome.
#[derive(Debug, Clone, Default)]
struct Outcome {
    frames: Vec<Presented>,
    begin_ms: f64,
    end_ms: f64,
    keyframes: u64,
    /// Packets the receiver asked for again, and keyframes it asked for.
    nacks: u64,
    plis: u64,
    lost: Option<String>,
    relay: RelayReport,
}

/// Runs the bench; returns `{"rows": [...], ...}`.
pub fn run(args: &ImpairArgs) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let dir = std::env::temp_dir().join(format!("stratus-impair-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("a directory for the senders' logs")?;
    let mut rows = Vec::new();
    for name in &args.scenarios {
        let scenario = match args.seconds {
            Some(s) => Scenario::with_length(name, Duration::from_secs(u64::from(s))),
            None => Scenario::full(name),
        }
        .with_context(|| format!("no scenario {name:?} (R1…R10)"))?;
        let mut runs: Vec<(SenderKind, Client)> = args
            .clients
            .iter()
            .filter(|_| args.stratus)
            .map(|c| (SenderKind::Stratus, *c))
            .collect();
        if args
            .reference
            .iter()
            .any(|r| r.eq_ignore_ascii_case(scenario.name))
        {
            runs.push((SenderKind::Reference, Client::Browser));
        }
        for (sender, client) in runs {
            eprintln!(
                "impair: {} ({}), {} into the {} client, {} s",
                scenario.name,
                scenario.what,
                sender.node_id(),
                client.name(),
                scenario.length.as_secs()
            );
            let files = dir.join(format!(
                "{}-{}-{}",
                scenario.name,
                sender.node_id(),
                client.name()
            ));
            let outcome = runtime
                .block_on(run_one(&scenario, sender, client, args, &files))
                .with_context(|| {
                    format!(
                        "{} with {} into {}",
                        scenario.name,
                        sender.node_id(),
                        client.name()
                    )
                })?;
            let row = row(&scenario, sender, client, &outcome);
            if let Some(dir) = std::env::var_os("STRATUS_IMPAIR_TRACE") {
                trace(std::path::Path::new(&dir), &row, &outcome);
            }
            eprintln!("impair: {}", one_line(&row));
            rows.push(row);
        }
    }
    judge_all(&mut rows);
    if std::env::var_os("STRATUS_LAB_KEEP").is_some() {
        eprintln!("impair: the senders' logs are in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(json!({
        "width": args.width,
        "height": args.height,
        "fps_asked": args.fps,
        "kbps": args.kbps,
        "seed": args.seed,
        "rows": rows,
    }))
}

async fn run_one(
    scenario: &Scenario,
    kind: SenderKind,
    client: Client,
    args: &ImpairArgs,
    dir: &std::path::Path,
) -> anyhow::Result<Outcome> {
    let stream = (args.width, args.height, args.fps, args.kbps);
    let (signaling, mut sender) = start_sender(kind, stream, dir).await?;
    let relay = Arc::new(Relay::start(args.seed).await.context("start the relay")?);
    let run = match client {
        Client::Browser => browser(scenario, args, &signaling, &relay).await,
        Client::Native => native(scenario, &signaling, &relay).await,
    };
    run.map_err(|e| {
        let state = if sender.exited() { "exited" } else { "running" };
        anyhow::anyhow!("{e:#}\nthe sender ({state}) logged:\n{}", sender.log_tail())
    })
}

async fn browser(
    scenario: &Scenario,
    args: &ImpairArgs,
    signaling: &Signaling,
    relay: &Relay,
) -> anyhow::Result<Outcome> {
    let url = format!(
        "http://{}/?title={}",
        signaling.addr,
        signaling::catalog::PATTERN_TITLE
    );
    let mut options = page_options(args.width, args.height);
    options.before_load = Some(relay.browser_hook());
    let mut page = Chromium::launch(&url, &options).await?;
    // The relay learns where the node is from the candidates the page was given.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let noted = page.eval("window.__relay || null").await?;
        if relay.learn_from_page(&noted) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the page was given no node candidate to send through the relay: {noted}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    instrument(&mut page).await?;
    let before = page.eval(INBOUND_VIDEO).await?;
    let begin_ms = client::measure::epoch_ms_now();
    relay.begin(scenario);
    let seconds = scenario.length.as_secs_f64();
    page.eval(&format!("window.__lab.start({seconds})")).await?;
    tokio::time::sleep(scenario.length).await;
    let end_ms = client::measure::epoch_ms_now();
    let report = relay.end();
    let lab = page.eval("window.__lab.report()").await?;
    let after = page.eval(INBOUND_VIDEO).await?;
    let state = page
        .eval("window.stratus && window.stratus.pc ? window.stratus.pc.connectionState : 'gone'")
        .await?;
    drop(page);
    let at = lab["at"].as_array().cloned().unwrap_or_default();
    let made = lab["made"].as_array().cloned().unwrap_or_default();
    let frames = at
        .iter()
        .zip(made.iter())
        .filter_map(|(a, m)| {
            Some(Presented {
                at_ms: a.as_f64()?,
                made_ms: m.as_f64(),
            })
        })
        .collect();
    let stats = StatsSpan { before, after };
    Ok(Outcome {
        frames,
        begin_ms,
        end_ms,
        keyframes: stats.delta("keyFramesDecoded").max(0.0) as u64,
        nacks: stats.delta("nackCount").max(0.0) as u64,
        plis: stats.delta("pliCount").max(0.0) as u64,
        lost: (state != "connected").then(|| format!("the peer connection is {state}")),
        relay: report,
    })
}

async fn native(
    scenario: &Scenario,
    signaling: &Signaling,
    relay: &Arc<Relay>,
) -> anyhow::Result<Outcome> {
    let route: Arc<dyn client::session::MediaRoute> = relay.clone();
    let viewer = Viewer::connect(
        signaling.addr,
        Some(signaling::catalog::PATTERN_TITLE),
        Some(route),
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while viewer.frames().len() < 30 {
        if Instant::now() > deadline {
            bail!(
                "{} frames decoded in 30 s (state {}){}",
                viewer.frames().len(),
                viewer.state(),
                viewer
                    .ended()
                    .map(|e| format!(", ended: {e}"))
                    .unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    viewer.play_for(Duration::from_secs(2)).await;
    let keyframes = viewer.keyframes();
    let counted = |v: &Viewer| {
        let c = v.counters();
        (
            c.nacked.load(std::sync::atomic::Ordering::Relaxed),
            c.keyframe_requests
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    let (nacks0, plis0) = counted(&viewer);
    let begin_ms = client::measure::epoch_ms_now();
    relay.begin(scenario);
    viewer.play_for(scenario.length).await;
    let end_ms = client::measure::epoch_ms_now();
    let report = relay.end();
    let frames = viewer.frames();
    let lost = viewer.ended().or_else(|| {
        (viewer.state() != webrtc::peer_connection::RTCPeerConnectionState::Connected)
            .then(|| format!("the peer connection is {}", viewer.state()))
    });
    let keyframes = viewer.keyframes() - keyframes;
    let (nacks, plis) = counted(&viewer);
    viewer.close().await;
    Ok(Outcome {
        frames,
        begin_ms,
        end_ms,
        keyframes,
        nacks: nacks - nacks0,
        plis: plis - plis0,
        lost,
        relay: report,
    })
}

/// Writes a run's timeline (per 100 ms: kbit/s sent, the longest delay given, capacity) and
/// its frames to `dir`, for looking into a run.
fn trace(dir: &std::path::Path, row: &Value, o: &Outcome) {
    let name = format!(
        "{}-{}-{}",
        row["scenario"].as_str().unwrap_or(""),
        row["sender"].as_str().unwrap_or(""),
        row["client"].as_str().unwrap_or("")
    );
    let bins: Vec<Value> = o
        .relay
        .sent_bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!([
                i as f64 / 10.0,
                *b as f64 * 8.0 / 100.0,
                o.relay.delay_bins.get(i).copied().unwrap_or(0.0)
            ])
        })
        .collect();
    let frames: Vec<Value> = o
        .frames
        .iter()
        .filter(|f| f.at_ms >= o.begin_ms)
        .map(|f| json!([f.at_ms - o.begin_ms, f.made_ms.map(|m| f.at_ms - m)]))
        .collect();
    let text = json!({ "row": row, "bins_s_kbps_delayms": bins, "frames_at_g2g": frames });
    let _ = std::fs::create_dir_all(dir);
    let _ = std::fs::write(dir.join(format!("{name}.json")), text.to_string());
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn opt(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!(round1(v)))
}

/// The row for one run (its verdict is added by [`judge_all`]).
fn row(scenario: &Scenario, kind: SenderKind, client: Client, o: &Outcome) -> Value {
    let sender = match kind {
        SenderKind::Stratus => "stratus",
        SenderKind::Reference => "reference",
    };
    let times: Vec<f64> = o.frames.iter().map(|f| f.at_ms).collect();
    let f = freezes(&times, o.begin_ms, o.end_ms);
    let in_span: Vec<&Presented> = o
        .frames
        .iter()
        .filter(|p| p.at_ms > o.begin_ms && p.at_ms <= o.end_ms)
        .collect();
    let g2g: Vec<f64> = in_span
        .iter()
        .filter_map(|p| p.made_ms.map(|m| p.at_ms - m))
        .collect();
    let seconds = (o.end_ms - o.begin_ms) / 1000.0;
    let blackouts = scenario.blackouts();
    let recover_each: Vec<Option<f64>> = if !blackouts.is_empty() {
        blackouts
            .iter()
            .map(|(_, end)| {
                let end_ms = o.begin_ms + end.as_secs_f64() * 1000.0;
                let later: Vec<Presented> = o
                    .frames
                    .iter()
                    .filter(|p| p.at_ms >= end_ms)
                    .copied()
                    .collect();
                recovery_ms(&later, end_ms)
            })
            .collect()
    } else {
        Vec::new()
    };
    let t = tracking(
        &o.relay.sent_bins,
        |at| scenario.capacity_at(at),
        &scenario.capacity_changes(),
    );
    let recover_each = if recover_each.is_empty() {
        t.settle_ms.clone()
    } else {
        recover_each
    };
    // The worst recovery; a recovery that never came is the rest of the run.
    let recover_ms = (!recover_each.is_empty()).then(|| {
        recover_each
            .iter()
            .map(|r| r.unwrap_or(f64::INFINITY))
            .fold(0.0, f64::max)
    });
    let media = o.relay.media_bytes.max(1) as f64;
    let sent: u64 = o.relay.sent_bins.iter().sum();
    let delivered: u64 = o.relay.delivered_bins.iter().sum();
    let capacity_bytes: f64 = (0..o.relay.sent_bins.len().max(1))
        .map(|i| scenario.capacity_at(BIN * (i as u32)) as f64 * BIN.as_secs_f64() / 8.0)
        .sum();
    let media_share_pct = (scenario.cross_traffic && capacity_bytes > 0.0)
        .then(|| delivered as f64 / capacity_bytes * 100.0);
    json!({
        "scenario": scenario.name,
        "what": scenario.what,
        "client": client.name(),
        "sender": sender,
        "seconds": round1(seconds),
        "frames": in_span.len(),
        "fps": round1(in_span.len() as f64 / seconds.max(1e-9)),
        "freezes": f.count,
        "freeze_ms_total": round1(f.total_ms),
        "longest_freeze_ms": round1(f.longest_ms),
        "g2g_ms_p50": if g2g.is_empty() { Value::Null } else { json!(round1(percentile(&g2g, 50.0))) },
        "g2g_ms_p95": if g2g.is_empty() { Value::Null } else { json!(round1(percentile(&g2g, 95.0))) },
        "recover_ms": recover_ms.map(|r| if r.is_finite() { json!(round1(r)) } else { json!("never") }).unwrap_or(Value::Null),
        "recover_ms_each": recover_each.iter().map(|r| opt(*r)).collect::<Vec<_>>(),
        "rate_error_pct": opt(t.error_pct),
        "queue_ms_p95": if o.relay.queue_ms.is_empty() { Value::Null } else { json!(round1(percentile(&o.relay.queue_ms, 95.0))) },
        "sent_kbps": round1(sent as f64 * 8.0 / 1000.0 / seconds.max(1e-9)),
        "rtx_pct": round1(o.relay.rtx_bytes as f64 / media * 100.0),
        "fec_pct": round1(o.relay.fec_bytes as f64 / media * 100.0),
        "media_share_pct": opt(media_share_pct),
        "keyframes": o.keyframes,
        "nacks_sent": o.nacks,
        "keyframe_requests": o.plis,
        "dropped_by_path": o.relay.down.lost + o.relay.down.queue_full + o.relay.down.blackout,
        "session_lost": o.lost,
    })
}

/// Adds `pass` and `band` to every row: the bands (R2 against R1's p95 for the same
/// client and sender when R1 ran).
fn judge_all(rows: &mut [Value]) {
    let r1: Vec<(String, String, Option<f64>)> = rows
        .iter()
        .filter(|r| r["scenario"] == "R1")
        .map(|r| {
            (
                r["client"].as_str().unwrap_or("").to_owned(),
                r["sender"].as_str().unwrap_or("").to_owned(),
                r["g2g_ms_p95"].as_f64(),
            )
        })
        .collect();
    for r in rows.iter_mut() {
        let clean_p95 = r1
            .iter()
            .find(|(c, s, _)| r["client"] == c.as_str() && r["sender"] == s.as_str())
            .and_then(|(_, _, p)| *p);
        let (band, pass) = judge(r, clean_p95);
        r["band"] = json!(band);
        r["pass"] = json!(pass);
    }
}

/// The band for a row's scenario and whether the row is inside it.
fn judge(r: &Value, clean_p95: Option<f64>) -> (String, Option<bool>) {
    let num = |k: &str| r[k].as_f64();
    let longest = num("longest_freeze_ms").unwrap_or(f64::INFINITY);
    let alive = r["session_lost"].is_null();
    let recovered = |limit: f64| {
        r["recover_ms_each"].as_array().is_some_and(|a| {
            !a.is_empty() && a.iter().all(|v| v.as_f64().is_some_and(|x| x <= limit))
        })
    };
    match r["scenario"].as_str().unwrap_or("") {
        "R1" => ("0 freezes".into(), Some(alive && r["freezes"] == 0)),
        "R2" => {
            let p95_ok = match (clean_p95, num("g2g_ms_p95")) {
                (Some(c), Some(p)) => p <= 1.5 * c,
                (None, Some(_)) => true,
                _ => false,
            };
            let band = if clean_p95.is_some() {
                "no freeze > 200 ms, g2g p95 ≤ 1.5× R1's"
            } else {
                "no freeze > 200 ms (R1 not run: p95 not compared)"
            };
            (band.into(), Some(alive && longest <= 200.0 && p95_ok))
        }
        "R3" | "R4" => (
            "longest freeze ≤ 500 ms".into(),
            Some(alive && longest <= 500.0),
        ),
        "R5" => ("no freeze > 300 ms".into(), Some(alive && longest <= 300.0)),
        "R6" => (
            "picture back ≤ 1 s after each blackout, session kept".into(),
            Some(alive && recovered(1000.0)),
        ),
        "R7" => (
            "rate within ±25 % of capacity ≤ 10 s after each change, queue p95 ≤ 150 ms".into(),
            Some(alive && recovered(10_000.0) && num("queue_ms_p95").is_some_and(|q| q <= 150.0)),
        ),
        "R10" => (
            "media keeps ≥ 30 % of the bottleneck".into(),
            Some(alive && num("media_share_pct").is_some_and(|s| s >= 30.0)),
        ),
        _ => ("no band (reported)".into(), None),
    }
}

fn one_line(r: &Value) -> String {
    format!(
        "{} {} {}: {} fps, {} freezes ({} ms, longest {} ms), g2g p50/p95 {}/{} ms, recover {}, rate error {} %, queue p95 {} ms, {} kbit/s sent, rtx {} %, {} keyframes, {} NACKed, {} PLIs{}",
        r["scenario"].as_str().unwrap_or(""),
        r["client"].as_str().unwrap_or(""),
        r["sender"].as_str().unwrap_or(""),
        r["fps"],
        r["freezes"],
        r["freeze_ms_total"],
        r["longest_freeze_ms"],
        r["g2g_ms_p50"],
        r["g2g_ms_p95"],
        r["recover_ms"],
        r["rate_error_pct"],
        r["queue_ms_p95"],
        r["sent_kbps"],
        r["rtx_pct"],
        r["keyframes"],
        r["nacks_sent"],
        r["keyframe_requests"],
        r["session_lost"]
            .as_str()
            .map(|l| format!(", LOST: {l}"))
            .unwrap_or_default()
    )
}

/// The report as a table: one line per row.
pub fn table(report: &Value) -> String {
    let mut out = format!(
        "{:<4} {:<8} {:<10} {:>6} {:>7} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6} {:>5}  {}\n",
        "",
        "client",
        "sender",
        "fps",
        "freezes",
        "frz_ms",
        "longest",
        "g2g_p50",
        "g2g_p95",
        "recover",
        "rate_err",
        "queue95",
        "kbps",
        "rtx%",
        "keyf",
        "band"
    );
    let cell = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    for r in report["rows"].as_array().into_iter().flatten() {
        let verdict = match r["pass"].as_bool() {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "-",
        };
        out.push_str(&format!(
            "{:<4} {:<8} {:<10} {:>6} {:>7} {:>9} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6} {:>5}  {} ({})\n",
            cell(&r["scenario"]),
            cell(&r["client"]),
            cell(&r["sender"]),
            cell(&r["fps"]),
            cell(&r["freezes"]),
            cell(&r["freeze_ms_total"]),
            cell(&r["longest_freeze_ms"]),
            cell(&r["g2g_ms_p50"]),
            cell(&r["g2g_ms_p95"]),
            cell(&r["recover_ms"]),
            cell(&r["rate_error_pct"]),
            cell(&r["queue_ms_p95"]),
            cell(&r["sent_kbps"]),
            cell(&r["rtx_pct"]),
            cell(&r["keyframes"]),
            verdict,
            cell(&r["band"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(fps: f64, from: f64, to: f64, g2g: f64) -> Vec<Presented> {
        let step = 1000.0 / fps;
        let n = ((to - from) / step) as usize;
        (0..n)
            .map(|i| {
                let at = from + i as f64 * step;
                Presented {
                    at_ms: at,
                    made_ms: Some(at - g2g),
                }
            })
            .collect()
    }

    #[test]
    fn a_blackout_run_is_judged_by_its_recovery() {
        let scenario = Scenario::with_length("R6", Duration::from_secs(10)).expect("R6");
        // Blackouts 3.0–3.5 s and 6–8 s; the picture comes back 300 ms and 1500 ms after.
        let mut f = frames(30.0, 0.0, 3000.0, 50.0);
        f.extend(frames(30.0, 3800.0, 6000.0, 50.0));
        f.extend(frames(30.0, 9500.0, 10_000.0, 50.0));
        let o = Outcome {
            frames: f,
            begin_ms: 0.0,
            end_ms: 10_000.0,
            ..Outcome::default()
        };
        let mut rows = vec![row(&scenario, SenderKind::Stratus, Client::Native, &o)];
        judge_all(&mut rows);
        let r = &rows[0];
        assert_eq!(r["freezes"], 2, "{r}");
        let each: Vec<f64> = r["recover_ms_each"]
            .as_array()
            .expect("each")
            .iter()
            .map(|v| v.as_f64().expect("a number"))
            .collect();
        assert!(
            (each[0] - 300.0).abs() < 40.0 && (each[1] - 1500.0).abs() < 40.0,
            "{each:?}"
        );
        assert_eq!(r["pass"], false, "{r}");
    }

    #[test]
    fn r2_is_judged_against_r1() {
        let clean = frames(30.0, 0.0, 10_000.0, 40.0);
        let lossy = frames(30.0, 0.0, 10_000.0, 70.0);
        let mk = |name: &str, f: Vec<Presented>| {
            let s = Scenario::with_length(name, Duration::from_secs(10)).expect("scenario");
            row(
                &s,
                SenderKind::Stratus,
                Client::Browser,
                &Outcome {
                    frames: f,
                    begin_ms: 0.0,
                    end_ms: 10_000.0,
                    ..Outcome::default()
                },
            )
        };
        let mut rows = vec![mk("R1", clean), mk("R2", lossy)];
        judge_all(&mut rows);
        assert_eq!(rows[0]["pass"], true);
        // 70 ms > 1.5 × 40 ms.
        assert_eq!(rows[1]["pass"], false, "{}", rows[1]);
        assert!(table(&json!({ "rows": rows })).contains("FAIL"));
    }
}
