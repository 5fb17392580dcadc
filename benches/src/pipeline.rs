//! `stratus-bench pipeline`: renders demo-title frames, converts them to I420 and encodes them,
//! in one process, one frame at a time, and reports each stage's time; then times the CPU
//! `pattern` title's frames at the same size (what the latency lab feeds both senders).
//!
//! The conversion takes the demo's default path, `auto` (SIMD on the CPU for a CPU device such
//! as lavapipe, the compute shader on a GPU), unless `STRATUS_CAPTURE_PATH` says `gpu` or
//! `cpu`; `capture_path` reports the one used.

use std::time::{Duration, Instant};

use anyhow::Context;
use capture::offscreen::DemoRenderer;
use capture::path::CapturePath;
use encoder::{Encoder, EncoderConfig};
use server::title::pattern::PatternGenerator;

use crate::stats::{Report, percentile};

/// Frames rendered before measuring, so shader compilation and encoder start-up are excluded.
pub const WARMUP_FRAMES: u32 = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct PipelineArgs {
    /// Frames to measure.
    pub frames: u32,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Nominal frame rate given to the encoder (frames are produced as fast as possible).
    pub fps: u32,
    /// Encoder bitrate in kbit/s.
    pub bitrate_kbps: u32,
}

/// Runs the benchmark and returns its report.
pub fn run(args: &PipelineArgs) -> anyhow::Result<Report> {
    let setting = CapturePath::from_env()?;
    let mut renderer =
        DemoRenderer::with_path(args.width, args.height, setting).context("open the demo title")?;
    let encoder = Encoder::open(EncoderConfig::new(
        args.width,
        args.height,
        args.fps,
        args.bitrate_kbps,
    ))
    .context("open the encoder")?;
    let info = encoder.describe();
    let (mut render, mut convert, mut encode, mut total) = (vec![], vec![], vec![], vec![]);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut measured_wall = Duration::ZERO;
    for i in 0..WARMUP_FRAMES + args.frames {
        let start = Instant::now();
        let (frame, timings) = renderer.render().context("render a frame")?;
        let pushed = Instant::now();
        encoder.push(&frame, &[]).context("encode a frame")?;
        encoder
            .pull(Duration::from_secs(2))
            .context("encode a frame")?
            .with_context(|| format!("the encoder produced nothing for frame {}", frame.id))?;
        let done = Instant::now();
        if i >= WARMUP_FRAMES {
            render.push(ms(timings.render));
            convert.push(ms(timings.convert));
            encode.push(ms(done - pushed));
            total.push(ms(done - start));
            measured_wall += done - start;
        }
    }
    let pattern = PatternGenerator::new(args.width, args.height).context("the pattern title")?;
    let mut made = Vec::with_capacity(args.frames as usize);
    for i in 0..WARMUP_FRAMES + args.frames {
        let start = Instant::now();
        let frame = pattern.frame(u64::from(i), 0, None);
        std::hint::black_box(&frame);
        if i >= WARMUP_FRAMES {
            made.push(ms(start.elapsed()));
        }
    }
    Ok(Report::default()
        .field("width", args.width)
        .field("height", args.height)
        .field("frames", args.frames)
        .field(
            "fps",
            args.frames as f64 / measured_wall.as_secs_f64().max(1e-9),
        )
        .field("render_ms_p50", percentile(&render, 50.0))
        .field("convert_ms_p50", percentile(&convert, 50.0))
        .field("encode_ms_p50", percentile(&encode, 50.0))
        .field("encode_ms_p99", percentile(&encode, 99.0))
        .field("total_ms_p50", percentile(&total, 50.0))
        .field("total_ms_p99", percentile(&total, 99.0))
        .field("pattern_ms_p50", percentile(&made, 50.0))
        .field("pattern_ms_p99", percentile(&made, 99.0))
        .field("capture_path", renderer.path().as_str())
        .field("capture_path_setting", setting.as_str())
        .field("encoder", info.element)
        .field("device", renderer.device_name().to_string()))
}
