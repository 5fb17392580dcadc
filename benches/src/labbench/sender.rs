//! The lab's senders, each in a process of its own (this binary re-executed with the hidden
//! `lab-sender` subcommand) so its CPU time is its own: our node, or the reference pipeline.
//! Both register with the lab's signaling service as a node offering the `pattern` title, and
//! both write what they measured themselves to a JSON file once a second:
//! `{"capture_to_packet_ms": [...], "encode_ms": [...]}` — frame made → its packets handed to the
//! transport (our node: `write_sample` returned; the reference: the payloader's last packet),
//! and frame made → encoded, ms, per frame, in order, appended to and never rewritten, so the
//! lab takes the ones recorded after the measurement began.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use server::config::NodeConfig;
use tokio::process::{Child, Command};

use crate::reference::{self, ReferenceArgs};

/// Longer than the senders' write period.
const FLUSH: Duration = Duration::from_millis(1100);

/// The hidden subcommand's name.
pub const SUBCOMMAND: &str = "lab-sender";

/// Which sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SenderKind {
    /// Our node (`server::Node`) with its built-in `pattern` title.
    Stratus,
    /// The Selkies-style GStreamer `webrtcbin` pipeline ([`crate::reference`]).
    Reference,
}

impl SenderKind {
    /// The node id it registers with.
    pub fn node_id(self) -> &'static str {
        match self {
            SenderKind::Stratus => "lab-stratus",
            SenderKind::Reference => "lab-reference",
        }
    }
}

/// What a sender streams.
#[derive(Debug, Clone)]
pub struct SenderArgs {
    /// Which sender.
    pub kind: SenderKind,
    /// The node WebSocket URL of the lab's signaling service.
    pub signaling_url: String,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate, kbit/s.
    pub kbps: u32,
    /// Where to write the sender's own measurements.
    pub metrics_out: PathBuf,
}

/// A sender process; killed when dropped.
#[derive(Debug)]
pub struct SenderProcess {
    child: Child,
    metrics: PathBuf,
    log: PathBuf,
}

impl SenderProcess {
    /// Starts `args.kind` in a child process (its log and metrics file go in `dir`).
    pub fn spawn(args: &SenderArgs, dir: &Path) -> anyhow::Result<SenderProcess> {
        let exe = std::env::current_exe().context("this binary's path")?;
        let log = dir.join(format!("{}.log", args.kind.node_id()));
        let log_file = std::fs::File::create(&log).context("the sender's log")?;
        let kind = match args.kind {
            SenderKind::Stratus => "stratus",
            SenderKind::Reference => "reference",
        };
        let child = Command::new(exe)
            .arg(SUBCOMMAND)
            .args(["--kind", kind, "--signaling", &args.signaling_url])
            .args(["--width", &args.width.to_string()])
            .args(["--height", &args.height.to_string()])
            .args(["--fps", &args.fps.to_string()])
            .args(["--kbps", &args.kbps.to_string()])
            .arg("--metrics-out")
            .arg(&args.metrics_out)
            .env(
                "RUST_LOG",
                std::env::var("STRATUS_LAB_SENDER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("start the sender process")?;
        Ok(SenderProcess {
            child,
            metrics: args.metrics_out.clone(),
            log,
        })
    }

    /// Its process id; `None` once it has exited.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The samples of `field` (`capture_to_packet_ms`, `encode_ms`) the sender has written so far,
    /// oldest first (may be empty).
    pub fn samples(&self, field: &str) -> Vec<f64> {
        self.file()[field]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
            .unwrap_or_default()
    }

    /// The sender's measurements file as JSON (null before it wrote one).
    fn file(&self) -> serde_json::Value {
        std::fs::read_to_string(&self.metrics)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// How many samples of each stage (`capture_to_packet_ms`, `encode_ms`) it has written so
    /// far: a mark to take later samples from.
    pub fn marks(&self) -> (usize, usize) {
        let v = self.file();
        let len = |k: &str| v[k].as_array().map_or(0, Vec::len);
        (len("capture_to_packet_ms"), len("encode_ms"))
    }

    /// [`SenderProcess::marks`] once the sender has written what it measured until now (it
    /// writes once a second).
    pub async fn marks_after_flush(&self) -> (usize, usize) {
        tokio::time::sleep(FLUSH).await;
        self.marks()
    }

    /// The last lines of its log, for errors.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

/// The child's side: runs the sender until signaling closes or the parent kills it.
pub fn serve(args: SenderArgs) -> anyhow::Result<()> {
    // Die with the lab: a sender left behind (the lab killed, or a panic that aborts) would
    // otherwise reconnect to a signaling service that is gone, forever.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a signal for this process; no memory is passed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        match args.kind {
            SenderKind::Stratus => {
                let mut config = NodeConfig::loopback(args.signaling_url.clone());
                config.node_id = args.kind.node_id().into();
                config.capacity = 1;
                config.titles = vec![signaling::catalog::PATTERN_TITLE.to_string()];
                config.video.width = args.width;
                config.video.height = args.height;
                config.video.fps = args.fps;
                // The reference runs at a fixed bitrate; ours starts at it and may not exceed it.
                config.video.start_kbps = args.kbps;
                config.video.max_kbps = args.kbps;
                // The reference sends no sound; neither do we here, so both pay for video only.
                config.sessions.audio = false;
                let node = server::Node::new(config);
                let metrics = node.metrics();
                let out = args.metrics_out.clone();
                tokio::spawn(async move {
                    // Append-only, so the lab can take what came after a point in time.
                    let (mut packet, mut encode) = (Vec::new(), Vec::new());
                    let mut seen: std::collections::HashMap<String, (u64, u64)> =
                        Default::default();
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        for (id, m) in metrics.sessions() {
                            let seen = seen.entry(id).or_default();
                            let (p, n) = m.capture_to_packet_since(seen.0);
                            let (e, k) = m.encode_since(seen.1);
                            *seen = (n, k);
                            if packet.len() < reference::KEEP {
                                packet.extend(p);
                                encode.extend(e);
                            }
                        }
                        write_samples(&out, &packet, &encode);
                    }
                });
                node.run(std::future::pending()).await;
                Ok(())
            }
            SenderKind::Reference => {
                let samples = reference::Samples::default();
                let out = args.metrics_out.clone();
                let writer = samples.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        // Copied out, so the pipeline's probes never wait for the file.
                        let snapshot = writer
                            .lock()
                            .map(|s| (s.last_packet.clone(), s.encoded.clone()));
                        if let Ok((packet, encode)) = snapshot {
                            write_samples(&out, &packet, &encode);
                        }
                    }
                });
                reference::run(
                    ReferenceArgs {
                        signaling_url: args.signaling_url,
                        node_id: args.kind.node_id().into(),
                        width: args.width,
                        height: args.height,
                        fps: args.fps,
                        bitrate_kbps: args.kbps,
                    },
                    samples,
                )
                .await
            }
        }
    })
}

fn write_samples(path: &Path, capture_to_packet: &[f64], encode: &[f64]) {
    let text =
        serde_json::json!({ "capture_to_packet_ms": capture_to_packet, "encode_ms": encode })
            .to_string();
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .is_err()
    {
        tracing::warn!("cannot write the sender's metrics to {}", path.display());
    }
}
