//! `stratus-bench`: the Stratus benchmark harness. Each subcommand prints a table, or one JSON
//! object with `--json`; field names are stable.

use anyhow::Context;
use benches::capture::{self as capture_bench, CaptureArgs};
use benches::e2e::{self, E2eArgs};
use benches::encode::{self, EncodeArgs};
use benches::impair::{
    self, bench as impair_bench,
    bench::{Client, ImpairArgs},
};
use benches::labbench::sender::{self as lab_sender, SenderArgs, SenderKind};
use benches::labbench::{self, Case, LabArgs};
use benches::node::{self as node_bench, NodeArgs};
use benches::pipeline::{self, PipelineArgs};
use benches::predict::{self, PredictArgs};
use benches::signaling::{self as signaling_bench, SignalingArgs};
use benches::stats::Report;
use clap::{Parser, Subcommand};

/// Stratus benchmarks.
#[derive(Debug, Parser)]
#[command(name = "stratus-bench", version)]
struct Cli {
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Render → GPU I420 conversion → encode, in process, frame by frame.
    Pipeline {
        /// Frames to measure (after a warm-up of 10).
        #[arg(long, default_value_t = 300)]
        frames: u32,
        /// Frame width.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Frame height.
        #[arg(long, default_value_t = 720)]
        height: u32,
        /// Nominal frame rate for the encoder's rate control.
        #[arg(long, default_value_t = 60)]
        fps: u32,
        /// Encoder bitrate in kbit/s.
        #[arg(long, default_value_t = 4000)]
        bitrate_kbps: u32,
    },
    /// Pointer prediction error of none, linear and kalman at 16–100 ms horizons.
    Predict {
        /// A trace file, or a directory of `*.trace` files (default: the synthetic corpus).
        #[arg(long)]
        traces: Option<std::path::PathBuf>,
        /// Skip the per-family rows (the motion families of the synthetic corpus).
        #[arg(long)]
        no_families: bool,
    },
    /// Our node against a plain GStreamer webrtcbin sender (Selkies-style x264enc), side by
    /// side on the `pattern` title: into headless Chromium, and our node into the native client.
    Lab {
        /// Frame size, `WIDTHxHEIGHT`.
        #[arg(long, default_value = "1280x720")]
        size: String,
        /// Frames per second.
        #[arg(long, default_value_t = 60)]
        fps: u32,
        /// Video bitrate, kbit/s.
        #[arg(long, default_value_t = 6000)]
        kbps: u32,
        /// Rounds; each runs every case once, in turn.
        #[arg(long, default_value_t = 5)]
        runs: u32,
        /// Seconds measured per case and round.
        #[arg(long, default_value_t = 30)]
        seconds: u32,
        /// Only these cases (all by default).
        #[arg(long, value_enum, value_delimiter = ',')]
        cases: Vec<Case>,
    },
    /// The impairment lab: scenarios R1–R10 (loss, jitter, blackouts, capacity changes,
    /// bufferbloat, impaired feedback, cross traffic) through a relay, for each client, with
    /// the reference sender beside ours where asked.
    Impair {
        /// Scenarios, comma-separated, or `all`.
        #[arg(long, default_value = "all", value_delimiter = ',')]
        scenario: Vec<String>,
        /// Receivers.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Client::Browser, Client::Native])]
        clients: Vec<Client>,
        /// Scenarios the reference sender also runs (into the browser); `none` for none.
        #[arg(long, default_value = "R2,R3,R6,R7", value_delimiter = ',')]
        reference: Vec<String>,
        /// Only the reference sender's rows (not our node's).
        #[arg(long)]
        only_reference: bool,
        /// Frame size, `WIDTHxHEIGHT`.
        #[arg(long, default_value = "1280x720")]
        size: String,
        /// Frames per second.
        #[arg(long, default_value_t = 30)]
        fps: u32,
        /// The senders' bitrate, kbit/s (our node's start and ceiling; the reference's rate).
        #[arg(long, default_value_t = 4000)]
        kbps: u32,
        /// Every scenario's length in seconds (default: its own, 30 s; R7 100 s).
        #[arg(long)]
        seconds: Option<u32>,
        /// Seed of the relay's randomness.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// (Internal) one of the lab's senders, in its own process.
    #[command(name = "lab-sender", hide = true)]
    LabSender {
        #[arg(long, value_enum)]
        kind: SenderKind,
        #[arg(long)]
        signaling: String,
        #[arg(long)]
        width: u32,
        #[arg(long)]
        height: u32,
        #[arg(long)]
        fps: u32,
        #[arg(long)]
        kbps: u32,
        #[arg(long)]
        metrics_out: std::path::PathBuf,
    },
    /// Our ROI encoder element against stock x264enc: speed, ROI quality, rate accuracy.
    Encode {
        /// Frames per sequence.
        #[arg(long, default_value_t = 120)]
        frames: u32,
        /// Only this size (`WIDTHxHEIGHT`); both 1280x720 and 1920x1080 by default.
        #[arg(long)]
        size: Option<String>,
        /// The sequence: `texture` (game-like detail and noise) or `demo` (the smooth demo title).
        #[arg(long, value_enum, default_value = "texture")]
        content: ContentKind,
        /// Frame rate of the sequence (the encoders' rate control sees it).
        #[arg(long, default_value_t = 60)]
        fps: u32,
    },
    /// Assignments per second and p99 through the authenticated WebSocket front door, with
    /// the in-memory store and with Redis, and the memory of 10,000 idle client WebSockets.
    Signaling {
        /// Seconds each assignment phase runs.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Concurrent clients (8 saturates this 2-core machine; more only queues).
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Idle WebSockets to hold.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Skip the Redis phase.
        #[arg(long)]
        skip_redis: bool,
    },
    /// The capture layer in a Vulkan title under Xvfb: present overhead, GPU convert +
    /// readback against GStreamer's videoconvert, drops.
    Capture {
        /// Frames the title presents per run.
        #[arg(long, default_value_t = 300)]
        frames: u32,
        /// Only this size (`WIDTHxHEIGHT`); both 1280x720 and 1920x1080 by default.
        #[arg(long)]
        size: Option<String>,
        /// Pause between the title's frames in ms (16 ≈ 60 fps).
        #[arg(long, default_value_t = 16)]
        interval_ms: u64,
    },
    /// One node's capture→packet latency for a 720p60 session, and how many concurrent 720p30
    /// sessions keep ≥ 29 fps and p99 ≤ 33 ms; players are headless webrtc-rs peers.
    Node {
        /// Seconds to measure, per phase and per level.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Seconds of warm-up after the first frame, before measuring.
        #[arg(long, default_value_t = 3.0)]
        warmup: f64,
        /// The most concurrent 720p30 sessions to try.
        #[arg(long, default_value_t = 6)]
        max_sessions: u32,
        /// Stream sound too (the node starts PulseAudio; players receive Opus).
        #[arg(long)]
        audio: bool,
        /// Go on through every level up to --max-sessions after one fails.
        #[arg(long)]
        all_levels: bool,
        /// The title played: `demo` (built in) or `vkcube` (Debian's, captured by our layer).
        #[arg(long, default_value = "demo")]
        title: String,
    },
    /// Glass-to-glass and input-to-photon latency through a real client, on loopback.
    E2e {
        /// Which client plays the stream.
        #[arg(long, value_enum, default_value = "browser")]
        client: ClientKind,
        /// Frame width.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Frame height.
        #[arg(long, default_value_t = 720)]
        height: u32,
        /// Frames per second the node renders.
        #[arg(long, default_value_t = 60)]
        fps: u32,
        /// Seconds to measure.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Key presses for input-to-photon.
        #[arg(long, default_value_t = 20)]
        key_presses: u32,
    },
}

/// Sequences the encode bench can use.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ContentKind {
    /// A scrolling texture with fine detail and temporal noise.
    Texture,
    /// The demo title.
    Demo,
}

/// Clients the e2e bench can drive.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ClientKind {
    /// Debian's headless Chromium playing the browser page.
    Browser,
    /// The native winit client.
    Native,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // The signaling bench runs its service in a child process: this binary, re-executed.
    let mut argv = std::env::args().skip(1);
    if argv.next().as_deref() == Some(signaling_bench::SERVE_SUBCOMMAND) {
        let store = argv.next().unwrap_or_else(|| "memory".to_string());
        return signaling_bench::serve(&store);
    }
    let cli = Cli::parse();
    let report: Report = match cli.bench {
        Bench::Pipeline {
            frames,
            width,
            height,
            fps,
            bitrate_kbps,
        } => pipeline::run(&PipelineArgs {
            frames,
            width,
            height,
            fps,
            bitrate_kbps,
        })?,
        Bench::E2e {
            client,
            width,
            height,
            fps,
            seconds,
            key_presses,
        } => {
            let args = E2eArgs {
                width,
                height,
                fps,
                seconds,
                key_presses,
            };
            match client {
                ClientKind::Browser => e2e::run_browser(&args)?,
                ClientKind::Native => e2e::run_native(&args)?,
            }
        }
        Bench::Node {
            seconds,
            warmup,
            max_sessions,
            audio,
            all_levels,
            title,
        } => node_bench::run(&NodeArgs {
            seconds,
            warmup,
            max_sessions,
            audio,
            all_levels,
            title,
        })?,
        Bench::Predict {
            traces,
            no_families,
        } => {
            let report = predict::run(&PredictArgs {
                traces,
                families: !no_families,
            })?;
            if cli.json {
                println!("{report}");
            } else {
                print!("{}", predict::table(&report));
            }
            return Ok(());
        }
        Bench::Signaling {
            seconds,
            concurrency,
            idle,
            skip_redis,
        } => signaling_bench::run(&SignalingArgs {
            seconds,
            concurrency,
            idle,
            skip_redis,
        })?,
        Bench::Capture {
            frames,
            size,
            interval_ms,
        } => {
            let mut args = CaptureArgs {
                frames,
                interval_ms,
                ..CaptureArgs::default()
            };
            if let Some(size) = size {
                args.sizes = vec![parse_size(&size)?];
            }
            let runs = capture_bench::run(&args)?;
            print_runs(&runs, cli.json);
            return Ok(());
        }
        Bench::Lab {
            size,
            fps,
            kbps,
            runs,
            seconds,
            cases,
        } => {
            let (width, height) = parse_size(&size)?;
            let report = labbench::run(&LabArgs {
                width,
                height,
                fps,
                kbps,
                runs,
                seconds,
                cases: if cases.is_empty() {
                    Case::ALL.to_vec()
                } else {
                    cases
                },
            })?;
            if cli.json {
                println!("{report}");
            } else {
                print!("{}", labbench::table(&report));
            }
            return Ok(());
        }
        Bench::Impair {
            scenario,
            clients,
            reference,
            only_reference,
            size,
            fps,
            kbps,
            seconds,
            seed,
        } => {
            let (width, height) = parse_size(&size)?;
            let all = |v: Vec<String>| -> Vec<String> {
                if v.iter().any(|s| s.eq_ignore_ascii_case("all")) {
                    impair::scenario::ALL
                        .iter()
                        .map(|s| s.to_string())
                        .collect()
                } else {
                    v.into_iter()
                        .filter(|s| !s.eq_ignore_ascii_case("none"))
                        .collect()
                }
            };
            let report = impair_bench::run(&ImpairArgs {
                scenarios: all(scenario),
                clients,
                reference: all(reference),
                stratus: !only_reference,
                width,
                height,
                fps,
                kbps,
                seconds,
                seed,
            })?;
            if cli.json {
                println!("{report}");
            } else {
                print!("{}", impair_bench::table(&report));
            }
            return Ok(());
        }
        Bench::LabSender {
            kind,
            signaling,
            width,
            height,
            fps,
            kbps,
            metrics_out,
        } => {
            return lab_sender::serve(SenderArgs {
                kind,
                signaling_url: signaling,
                width,
                height,
                fps,
                kbps,
                metrics_out,
            });
        }
        Bench::Encode {
            frames,
            size,
            content,
            fps,
        } => {
            let content = match content {
                ContentKind::Texture => encode::Content::Texture,
                ContentKind::Demo => encode::Content::Demo,
            };
            let mut args = EncodeArgs {
                frames,
                content,
                fps,
                ..EncodeArgs::default()
            };
            if let Some(size) = size {
                args.sizes = vec![parse_size(&size)?];
            }
            let runs = encode::run(&args)?;
            print_runs(&runs, cli.json);
            return Ok(());
        }
    };
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// `WIDTHxHEIGHT`.
fn parse_size(size: &str) -> anyhow::Result<(u32, u32)> {
    size.split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .with_context(|| format!("--size {size:?} is not WIDTHxHEIGHT"))
}

/// Prints one report per size: `{"runs": [...]}` with `--json`, tables otherwise.
fn print_runs(runs: &[Report], json: bool) {
    if json {
        let rows: Vec<_> = runs.iter().map(Report::to_json).collect();
        println!("{}", serde_json::json!({ "runs": rows }));
    } else {
        for run in runs {
            println!("{}", run.to_table());
        }
    }
}
