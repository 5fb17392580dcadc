//! `stratus-bench predict`: the pointer predictor against its baselines, on the synthetic
//! motion corpus ([`input::corpus::default_corpus`]) or on recorded traces.
//!
//! For each trace, every sample is fed to each predictor and the prediction for
//! `sample time + horizon` is compared with the trace's position at that time (see
//! [`input::predict::evaluate_samples`]). Errors are pooled over all traces.
//!
//! # JSON fields
//!
//! One flat object; names are stable.
//!
//! | Field | Meaning |
//! |-------|---------|
//! | `traces` | traces measured |
//! | `samples` | samples in them |
//! | `{p}_rms_px_h{h}` | root mean square prediction error, pixels |
//! | `{p}_p95_px_h{h}` | 95th percentile (nearest rank) prediction error, pixels |
//! | `{p}_overshoot_px_h{h}` | mean over stops of the furthest a prediction for the first 100 ms after the stop landed beyond it, along the move, pixels |
//! | `{p}_predict_ns_per_event` | measured wall time of one `observe` plus one `predict`, ns |
//!
//! `{p}` is `none` (last sample), `linear` (last two samples) or `kalman`
//! ([`input::predict::Predictor`] with its default config); `{h}` is each of [`HORIZONS_MS`].
//! Overshoot uses the corpus' known stops, or stops detected from speed in recordings.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use input::corpus;
use input::predict::{
    ErrorSamples, LinearExtrapolation, NoPrediction, PointerPredictor, Predictor, PredictorConfig,
    evaluate_samples,
};
use input::trace::Trace;

use crate::stats::{Report, percentile};

/// Prediction horizons measured, milliseconds.
pub const HORIZONS_MS: [u32; 4] = [16, 33, 50, 100];
/// Extension of trace files picked up from a directory.
pub const TRACE_EXTENSION: &str = "trace";
/// Timing passes over all traces per predictor; the median pass is reported.
const TIMING_PASSES: usize = 3;

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct PredictArgs {
    /// A trace file, or a directory whose `*.trace` files are all used; `None` for the default
    /// corpus.
    pub traces: Option<PathBuf>,
}

/// The predictors compared, in report order.
fn predictors() -> Vec<Box<dyn PointerPredictor>> {
    vec![
        Box::new(NoPrediction::default()),
        Box::new(LinearExtrapolation::default()),
        Box::new(Predictor::new(PredictorConfig::default())),
    ]
}

/// Reads the traces at `path`: one file, or every `*.trace` file in a directory (sorted).
pub fn load_traces(path: &Path) -> anyhow::Result<Vec<Trace>> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == TRACE_EXTENSION))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!(
                "no *.{TRACE_EXTENSION} files in {}; record some with a client or pass one file",
                path.display()
            );
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            Trace::parse(&text).with_context(|| format!("{} is not a trace", file.display()))
        })
        .collect()
}

/// Runs the benchmark and returns its report.
pub fn run(args: &PredictArgs) -> anyhow::Result<Report> {
    let traces = match &args.traces {
        Some(path) => load_traces(path)?,
        None => corpus::default_corpus(),
    };
    let samples: usize = traces.iter().map(|t| t.samples.len()).sum();
    if samples == 0 {
        bail!("the traces hold no samples");
    }
    let mut report = Report::default()
        .field("traces", traces.len())
        .field("samples", samples);
    let mut predictors = predictors();
    for h in HORIZONS_MS {
        for p in predictors.iter_mut() {
            let mut all = ErrorSamples::default();
            for trace in &traces {
                all.extend(evaluate_samples(trace, p.as_mut(), f64::from(h)));
            }
            let stats = all.stats();
            let name = p.name();
            report = report
                .field(&format!("{name}_rms_px_h{h}"), stats.rms_px)
                .field(
                    &format!("{name}_p95_px_h{h}"),
                    percentile(&all.errors_px, 95.0),
                )
                .field(
                    &format!("{name}_overshoot_px_h{h}"),
                    stats.overshoot_px_at_stops,
                );
        }
    }
    for p in predictors.iter_mut() {
        let ns = ns_per_event(&traces, p.as_mut(), samples);
        report = report.field(&format!("{}_predict_ns_per_event", p.name()), ns);
    }
    Ok(report)
}

/// Wall time of `observe` + `predict` per sample over all traces, median of a few passes.
fn ns_per_event(traces: &[Trace], p: &mut dyn PointerPredictor, samples: usize) -> f64 {
    let mut passes: Vec<f64> = (0..TIMING_PASSES)
        .map(|_| {
            let start = Instant::now();
            for trace in traces {
                p.reset();
                for s in &trace.samples {
                    p.observe(black_box(s.t_us), black_box(s.x), black_box(s.y));
                    black_box(p.predict(s.t_us + 50_000));
                }
            }
            start.elapsed().as_nanos() as f64 / samples as f64
        })
        .collect();
    passes.sort_by(f64::total_cmp);
    passes[passes.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_directory_of_traces_and_reports_every_field() {
        let dir = std::env::temp_dir().join(format!("stratus-predict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = corpus::MotionConfig::new(250, 3_000);
        for seed in 0..2 {
            let text = corpus::synthesize(&config, seed).to_string();
            std::fs::write(dir.join(format!("{seed}.trace")), text).expect("write");
        }
        std::fs::write(dir.join("README"), "not a trace").expect("write");
        let report = run(&PredictArgs {
            traces: Some(dir.clone()),
        })
        .expect("runs");
        let json = report.to_json();
        assert_eq!(json["traces"], 2);
        for p in ["none", "linear", "kalman"] {
            for h in HORIZONS_MS {
                for m in ["rms_px", "p95_px", "overshoot_px"] {
                    let v = json[format!("{p}_{m}_h{h}")].as_f64();
                    assert!(v.is_some_and(|v| v >= 0.0), "{p}_{m}_h{h}: {json}");
                }
            }
            assert!(json[format!("{p}_predict_ns_per_event")].as_f64() > Some(0.0));
        }
        std::fs::write(dir.join("bad.trace"), "# stratus-trace v1\n0 1 2\n").expect("write");
        let err = run(&PredictArgs {
            traces: Some(dir.clone()),
        })
        .expect_err("a bad file fails the run");
        let msg = format!("{err:#}");
        assert!(msg.contains("bad.trace is not a trace: line 2"), "{msg}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
