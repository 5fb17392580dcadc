//! `stratus-bench`: the Stratus benchmark harness. Each subcommand prints a table, or one JSON
//! object with `--json`; field names are stable.

use benches::pipeline::{self, PipelineArgs};
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
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    };
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
