//! `stratus-bench e2e --client browser`: glass-to-glass and input-to-photon latency of the
//! whole product, measured from pixels.
//!
//! A signaling service and a node with the demo title run in this process ([`crate::lab`]);
//! Debian's headless Chromium plays the stream from the browser page. In the page, a
//! `requestVideoFrameCallback` loop reads the latency code (the epoch ms at which the node
//! rendered the frame) from every presented frame and subtracts it from the frame's expected
//! display time: that is glass-to-glass, on one machine and one wall clock. For input-to-photon,
//! the harness presses keys through Chromium's input pipeline (DevTools `Input` domain); the page
//! notes each keydown's time and the expected display time of the first frame whose input
//! indicator shows that key.
//!
//! `stratus-bench e2e --client native` does the same with the native client (`stratus-client`,
//! built next to this binary) in a window on its own Xvfb: the client reads the latency code
//! from each frame it presents, right after the present, and notes input-to-photon from each
//! key event's arrival in its window to the first presented frame whose indicator shows the
//! key; the harness types the keys through XTEST and reads the client's `--report`. Its fields:
//! `glass_to_glass_ms_p50`, `glass_to_glass_ms_p95`, `input_to_photon_ms_p50`, `fps`,
//! `decode_ms_p50` (last packet in to decoded BGRx picture out), `client_ms_p50` (last packet
//! in to presented: the client's share of glass-to-glass), `node_capture_to_packet_ms_p50` (the
//! node's share, from its metrics; both clients report it), plus `decoder`, `first_frame_ms`
//! (client start to its first picture: window, decoder, token, signaling, ICE, first keyframe),
//! `width`, `height`, `seconds`, `frames`, `samples`, `key_presses`, `lost_packets`.
//!
//! Browser fields (stable): `glass_to_glass_ms_p50`, `glass_to_glass_ms_p95`, `input_to_photon_ms_p50`,
//! `fps` (frames presented per second), `decode_ms_mean` (Chromium's `totalDecodeTime` per
//! frame), `jitter_buffer_ms_mean` (`jitterBufferDelay / jitterBufferEmittedCount`), `freezes`
//! (`freezeCount`), plus `width`, `height`, `seconds`, `frames`, `samples`, `key_presses`.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use server::config::NodeConfig;

use crate::chromium::{Chromium, LaunchOptions};
use crate::lab::Lab;
use crate::stats::{Report, percentile};

/// What to run.
#[derive(Debug, Clone)]
pub struct E2eArgs {
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second the node renders.
    pub fps: u32,
    /// How long to measure.
    pub seconds: u32,
    /// Key presses for input-to-photon, spread over the run.
    pub key_presses: u32,
}

/// The measuring script: installs `window.__lab` with `start(seconds)` and `report()`. Per
/// presented frame it keeps glass-to-glass (`g2g`: expected display time − the frame's latency
/// code) and the sender's share (`snd`: the time the frame's last packet was received, the
/// callback's `receiveTime`, − the code), and for every presented frame when it was shown
/// (`at`, epoch ms) and its code (`made`, epoch ms or null), which freezes and recovery are
/// judged from.
pub(crate) const LAB_JS: &str = r#"
(async () => {
  const { readCode } = await import('/stratus.js');
  const { KEY_CODES } = await import('/keys.js');
  const video = document.getElementById('video');
  const codes = document.createElement('canvas');
  codes.width = 912; codes.height = 64;
  const cctx = codes.getContext('2d', { willReadFrequently: true });
  const ind = document.createElement('canvas');
  ind.width = 64; ind.height = 64;
  const ictx = ind.getContext('2d', { willReadFrequently: true });
  const indicator = (key) => [(key * 37) % 256, (key * 91 + 64) % 256, 32];
  const lab = { g2g: [], snd: [], i2p: [], at: [], made: [], frames: 0, presented0: null, presented: 0, pending: null, keydowns: 0, done: false, t0: 0, t1: 0 };
  window.addEventListener('keydown', (e) => {
    const key = KEY_CODES[e.code];
    if (key !== undefined && !e.repeat) { lab.pending = { key, at: e.timeStamp }; lab.keydowns++; }
  }, { capture: true });
  const onFrame = (now, meta) => {
    lab.frames++;
    lab.tLast = now;
    // The compositor's own count: callbacks can miss frames when the page's thread is busy.
    if (meta.presentedFrames !== undefined) {
      if (lab.presented0 === null) lab.presented0 = meta.presentedFrames;
      lab.presented = meta.presentedFrames - lab.presented0;
    }
    const shown = meta.expectedDisplayTime || now;
    cctx.drawImage(video, 0, 0, 912, 64, 0, 0, 912, 64);
    const epoch = readCode(cctx.getImageData(0, 0, 912, 64), 0);
    lab.at.push(performance.timeOrigin + shown);
    lab.made.push(epoch);
    if (epoch !== null) {
      lab.g2g.push(performance.timeOrigin + shown - epoch);
      if (meta.receiveTime) lab.snd.push(performance.timeOrigin + meta.receiveTime - epoch);
    }
    if (lab.pending) {
      const h = video.videoHeight;
      ictx.drawImage(video, 32, h - 96, 64, 64, 0, 0, 64, 64);
      const d = ictx.getImageData(0, 0, 64, 64).data;
      const sum = [0, 0, 0];
      for (let p = 0; p < d.length; p += 4) { sum[0] += d[p]; sum[1] += d[p + 1]; sum[2] += d[p + 2]; }
      const got = sum.map((v) => v / 4096);
      const want = indicator(lab.pending.key);
      if (got.every((v, i) => Math.abs(v - want[i]) <= 40)) {
        lab.i2p.push(shown - lab.pending.at);
        lab.pending = null;
      }
    }
    if (performance.now() < lab.t1) video.requestVideoFrameCallback(onFrame); else lab.done = true;
  };
  lab.start = (seconds) => {
    lab.t0 = performance.now();
    lab.t1 = lab.t0 + seconds * 1000;
    video.requestVideoFrameCallback(onFrame);
  };
  lab.report = () => ({ g2g: lab.g2g, snd: lab.snd, i2p: lab.i2p, at: lab.at, made: lab.made, frames: lab.frames, presented: lab.presented, keydowns: lab.keydowns,
                        elapsed_ms: (lab.tLast || performance.now()) - lab.t0, done: lab.done });
  window.__lab = lab;
  return true;
})()
"#;

/// JavaScript that resolves to the page's inbound-rtp video stats object (or null before the
/// peer connection exists).
pub const INBOUND_VIDEO: &str = r#"(async () => {
  if (!window.stratus || !window.stratus.pc) return null;
  const report = await window.stratus.pc.getStats();
  let out = null;
  report.forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'video') out = s; });
  return out;
})()"#;

/// Opens `url` in headless Chromium with a viewport for a `width`×`height` stream, waits for the
/// first decoded frame, lets the jitter buffer and congestion control settle (2 s) and installs
/// [`LAB_JS`]: the page the browser benchmarks measure.
pub(crate) async fn open_measured_page(
    url: &str,
    width: u32,
    height: u32,
) -> anyhow::Result<Chromium> {
    let mut page = Chromium::launch(url, &page_options(width, height)).await?;
    instrument(&mut page).await?;
    Ok(page)
}

/// Launch options for a page that shows a `width`×`height` stream.
pub(crate) fn page_options(width: u32, height: u32) -> LaunchOptions {
    LaunchOptions {
        window: (width, height + 80),
        ..LaunchOptions::default()
    }
}

/// Waits for the page's first decoded frame, lets the jitter buffer and congestion control
/// settle (2 s) and installs [`LAB_JS`].
pub(crate) async fn instrument(page: &mut Chromium) -> anyhow::Result<()> {
    page.wait_for(
        "window.stratus && window.stratus.inspectFrame && (window.stratus.inspectFrame() || {}).frameId != null",
        Duration::from_secs(30),
        "the first decoded frame",
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    page.eval(LAB_JS)
        .await
        .context("install the measuring script")?;
    Ok(())
}

/// The page's inbound video stats ([`INBOUND_VIDEO`]) at the start and the end of a span.
pub(crate) struct StatsSpan {
    /// At the start.
    pub before: Value,
    /// At the end.
    pub after: Value,
}

impl StatsSpan {
    /// How much counter `k` grew over the span.
    pub fn delta(&self, k: &str) -> f64 {
        let num = |v: &Value| v[k].as_f64().unwrap_or(0.0);
        num(&self.after) - num(&self.before)
    }

    /// Milliseconds of `total` (a seconds counter) per unit of `count` over the span; 0 when
    /// `count` did not grow.
    pub fn per_ms(&self, total: &str, count: &str) -> f64 {
        let n = self.delta(count);
        if n > 0.0 {
            1000.0 * self.delta(total) / n
        } else {
            0.0
        }
    }

    /// Chromium's jitter buffer delay per frame, ms.
    pub fn jitter_buffer_ms(&self) -> f64 {
        self.per_ms("jitterBufferDelay", "jitterBufferEmittedCount")
    }

    /// Chromium's decode time per frame, ms.
    pub fn decode_ms(&self) -> f64 {
        self.per_ms("totalDecodeTime", "framesDecoded")
    }
}

/// Frames per second the compositor presented in [`LAB_JS`]'s report (callbacks alone miss
/// some when the page's thread is busy).
pub(crate) fn presented_fps(report: &Value) -> f64 {
    let num = |k: &str| report[k].as_f64().unwrap_or(0.0);
    num("presented").max(num("frames")) / (num("elapsed_ms") / 1000.0).max(1e-9)
}

/// Keys pressed for input-to-photon, in turn; adjacent ones give clearly different indicator
/// colours.
const KEYS: &[&str] = &[
    "KeyA", "KeyS", "KeyD", "KeyF", "KeyJ", "KeyK", "KeyL", "KeyQ",
];

/// The fields both clients report, in the same order: the run's size and length, glass-to-glass
/// and input-to-photon quantiles, frames presented per second.
fn latency_fields(report: Report, args: &E2eArgs, g2g: &[f64], i2p: &[f64], fps: f64) -> Report {
    report
        .field("width", args.width)
        .field("height", args.height)
        .field("seconds", args.seconds)
        .field("glass_to_glass_ms_p50", percentile(g2g, 50.0))
        .field("glass_to_glass_ms_p95", percentile(g2g, 95.0))
        .field("input_to_photon_ms_p50", percentile(i2p, 50.0))
        .field("fps", fps)
}

/// Runs `bench` on a two-thread runtime.
fn on_runtime(
    bench: impl std::future::Future<Output = anyhow::Result<Report>>,
) -> anyhow::Result<Report> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?
        .block_on(bench)
}

/// Signaling and a node streaming the demo at the run's size and rate.
async fn start_lab(args: &E2eArgs) -> anyhow::Result<Lab> {
    let mut config = NodeConfig::loopback("");
    config.video.width = args.width;
    config.video.height = args.height;
    config.video.fps = args.fps;
    Lab::start(config).await
}

/// Runs the browser benchmark and returns its report.
pub fn run_browser(args: &E2eArgs) -> anyhow::Result<Report> {
    on_runtime(browser(args))
}

async fn browser(args: &E2eArgs) -> anyhow::Result<Report> {
    let lab = start_lab(args).await?;
    let mut page = open_measured_page(&lab.page_url(), args.width, args.height).await?;
    let before = page.eval(INBOUND_VIDEO).await?;
    page.eval(&format!("window.__lab.start({})", args.seconds))
        .await?;

    let gap = Duration::from_secs_f64(args.seconds as f64 / (args.key_presses.max(1) + 1) as f64);
    for i in 0..args.key_presses {
        tokio::time::sleep(gap).await;
        let code = KEYS[i as usize % KEYS.len()];
        for kind in ["keyDown", "keyUp"] {
            page.call(
                "Input.dispatchKeyEvent",
                json!({ "type": kind, "code": code }),
            )
            .await
            .context("press a key")?;
        }
    }
    page.wait_for(
        "window.__lab.done",
        Duration::from_secs(args.seconds as u64 + 20),
        "the end of the run",
    )
    .await?;
    let after = page.eval(INBOUND_VIDEO).await?;
    let lab_report = page.eval("window.__lab.report()").await?;
    let node_ms = node_share_ms(&lab);
    drop(page);
    drop(lab);

    let list = |v: &Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let g2g = list(&lab_report["g2g"]);
    let i2p = list(&lab_report["i2p"]);
    if g2g.is_empty() {
        bail!("no frame with a readable latency code was presented: {lab_report}");
    }
    let num = |k: &str| lab_report[k].as_f64().unwrap_or(0.0);
    let frames = num("presented").max(num("frames"));
    let stats = StatsSpan { before, after };
    let report = Report::default().field("client", "browser");
    Ok(
        latency_fields(report, args, &g2g, &i2p, presented_fps(&lab_report))
            .field("decode_ms_mean", stats.decode_ms())
            .field("jitter_buffer_ms_mean", stats.jitter_buffer_ms())
            .field("node_capture_to_packet_ms_p50", node_ms)
            .field("freezes", stats.delta("freezeCount").max(0.0) as u64)
            .field("frames", frames as u64)
            .field("samples", g2g.len())
            .field("key_presses", i2p.len()),
    )
}

/// The node's capture→packet time (median of its recent window) for the lab's session: the
/// node's share of glass-to-glass.
fn node_share_ms(lab: &Lab) -> f64 {
    let samples: Vec<f64> = lab
        .node_metrics()
        .sessions()
        .iter()
        .flat_map(|(_, m)| m.capture_to_packet_samples())
        .collect();
    percentile(&samples, 50.0)
}

/// Runs the native-client benchmark and returns its report.
pub fn run_native(args: &E2eArgs) -> anyhow::Result<Report> {
    on_runtime(native(args))
}

async fn native(args: &E2eArgs) -> anyhow::Result<Report> {
    use crate::native::{NativeClient, focus_window};
    use input::inject::Injector;

    let lab = start_lab(args).await?;
    let xvfb =
        capture::display::Xvfb::start_sized(args.width.max(1280) + 64, args.height.max(720) + 64)
            .context("start Xvfb for the client's window")?;
    let size = format!("{}x{}", args.width, args.height);
    let mut client = NativeClient::launch(
        &xvfb.display,
        lab.addr,
        &["--title", "demo", "--size", &size],
    )?;
    client
        .wait_for("the first 60 frames", Duration::from_secs(60), |r| {
            r["screen"] == "playing" && r["frames_presented"].as_u64().unwrap_or(0) >= 60
        })
        .await?;
    // Let the congestion controller settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    focus_window(&xvfb.display, "Stratus")?;
    let mut keyboard = input::inject::xtest::XTestInjector::connect(Some(&xvfb.display))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let before = client.report().context("the client's report")?;
    let started = std::time::Instant::now();
    let gap = Duration::from_secs_f64(args.seconds as f64 / (args.key_presses.max(1) + 1) as f64);
    for i in 0..args.key_presses {
        tokio::time::sleep(gap).await;
        let code = KEYS[i as usize % KEYS.len()];
        let code = input::KeyCode::from_dom_code(code).context("a key we know")?;
        for down in [true, false] {
            keyboard
                .inject(&input::InputEvent {
                    seq: 0,
                    t_us: 0,
                    kind: input::EventKind::Key { code, down },
                })
                .map_err(|e| anyhow::anyhow!("type a key: {e}"))?;
            keyboard.sync().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    let rest = Duration::from_secs(args.seconds as u64).saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    // The report is rewritten twice a second; take one written after the run.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = client.report().context("the client's report")?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let node_ms = node_share_ms(&lab);
    client.stop();
    drop(lab);

    let tail = |r: &Value, b: &Value, k: &str| -> Vec<f64> {
        let skip = b[k].as_array().map_or(0, Vec::len);
        r[k].as_array()
            .map(|a| a.iter().skip(skip).filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let g2g = tail(&after, &before, "glass_to_glass_ms");
    let i2p = tail(&after, &before, "input_to_photon_ms");
    let decode = tail(&after, &before, "decode_ms");
    let in_client = tail(&after, &before, "client_ms");
    if g2g.is_empty() {
        bail!(
            "no frame with a readable latency code was presented: {}",
            crate::native::summary(Some(&after))
        );
    }
    let count = |r: &Value, k: &str| r[k].as_u64().unwrap_or(0);
    let frames = count(&after, "frames_presented") - count(&before, "frames_presented");
    let report = Report::default()
        .field("client", "native")
        .field("decoder", after["decoder"].as_str().unwrap_or_default());
    Ok(latency_fields(
        report,
        args,
        &g2g,
        &i2p,
        frames as f64 / elapsed_s.max(1e-9),
    )
    .field("decode_ms_p50", percentile(&decode, 50.0))
    .field("client_ms_p50", percentile(&in_client, 50.0))
    .field("node_capture_to_packet_ms_p50", node_ms)
    .field(
        "first_frame_ms",
        after["first_frame_ms"].as_f64().unwrap_or(0.0),
    )
    .field("frames", frames)
    .field("samples", g2g.len())
    .field("key_presses", i2p.len())
    .field(
        "lost_packets",
        count(&after, "lost_packets") - count(&before, "lost_packets"),
    ))
}
