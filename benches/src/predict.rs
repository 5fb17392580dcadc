//! `stratus-bench predict`: the pointer predictor against its baselines, on the synthetic
//! motion corpus ([`input::corpus::default_corpus`]) or on recorded traces.
//!
//! For each trace, every sample is fed to each predictor and the prediction for
//! `sample time + horizon` is compared with the trace's position at that time (see
//! [`input::predict::evaluate_samples`]). Errors are pooled over all traces.
//!
//! Then, unless `--no-families`, every motion family of [`corpus::family_corpus`] (aimed moves,
//! flicks, random walks, drags, idle hands, circles, sticks; each reported through the devices
//! that produce it: 125 Hz–8 kHz mice, browsers coalescing to 60–240 Hz, the Windows timer,
//! gamepads) is measured against its true motion ([`input::predict::evaluate_family`]), one
//! row per family and one pooling the validation split (the families the predictor was not
//! tuned on). Each trace starts from a fresh predictor.
//!
//! # JSON fields
//!
//! One object; names are stable. The top level pools the default corpus (or `--traces`):
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
//! | `families` | array of per-family rows, below |
//!
//! Each row of `families`: `family` (`aimed`, `flick`, `random_walk`, `drag`, `idle`, `circle`,
//! `stick`, or `validation` for the held-out families pooled), `validation` (bool), `traces`,
//! `samples`, `devices`, and the same `{p}_rms_px_h{h}`, `{p}_p95_px_h{h}` and
//! `{p}_overshoot_px_h{h}` fields.
//!
//! `{p}` is `none` (last sample), `linear` (last two samples) or `kalman` (the shipped
//! [`input::predict::Predictor`] with its default config, whatever its model); `{h}` is each of
//! [`HORIZONS_MS`]. Overshoot uses the known stops of synthetic traces, or stops detected from
//! speed in recordings.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use input::corpus::{self, Family, FamilyTrace};
use input::predict::{
    ErrorSamples, LinearExtrapolation, NoPrediction, PointerPredictor, Predictor, PredictorConfig,
    evaluate_family, evaluate_samples,
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
    /// Whether to also measure every motion family of [`corpus::family_corpus`].
    pub families: bool,
}

/// The `family` of the row that pools the validation split.
pub const VALIDATION_ROW: &str = "validation";

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

/// The fields of one set of traces: `{p}_rms_px_h{h}`, `{p}_p95_px_h{h}` and
/// `{p}_overshoot_px_h{h}` for every predictor and horizon, from `score(predictor, horizon)`.
fn error_fields(
    mut report: Report,
    predictors: &mut [Box<dyn PointerPredictor>],
    mut score: impl FnMut(&mut dyn PointerPredictor, f64) -> ErrorSamples,
) -> Report {
    for h in HORIZONS_MS {
        for p in predictors.iter_mut() {
            let all = score(p.as_mut(), f64::from(h));
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
    report
}

/// Runs the benchmark: the pooled fields at the top level and, in `families`, one row per
/// motion family of [`corpus::family_corpus`] (see the module docs).
pub fn run(args: &PredictArgs) -> anyhow::Result<serde_json::Value> {
    let traces = match &args.traces {
        Some(path) => load_traces(path)?,
        None => corpus::default_corpus(),
    };
    let samples: usize = traces.iter().map(|t| t.samples.len()).sum();
    if samples == 0 {
        bail!("the traces hold no samples");
    }
    let report = Report::default()
        .field("traces", traces.len())
        .field("samples", samples);
    let mut predictors = predictors();
    let mut report = error_fields(report, &mut predictors, |p, h| {
        let mut all = ErrorSamples::default();
        for trace in &traces {
            all.extend(evaluate_samples(trace, p, h));
        }
        all
    });
    for p in predictors.iter_mut() {
        let ns = ns_per_event(&traces, p.as_mut(), samples);
        report = report.field(&format!("{}_predict_ns_per_event", p.name()), ns);
    }
    let family_traces = if args.families {
        corpus::family_corpus()
    } else {
        Vec::new()
    };
    let mut rows = Vec::new();
    // Each family, then the validation split pooled.
    let mut groups: Vec<(String, bool, Vec<&FamilyTrace>)> = Family::ALL
        .iter()
        .map(|f| {
            let members = family_traces.iter().filter(|t| t.family == *f).collect();
            (f.name().to_string(), f.is_validation(), members)
        })
        .collect();
    groups.push((
        VALIDATION_ROW.to_string(),
        true,
        family_traces
            .iter()
            .filter(|t| t.family.is_validation())
            .collect(),
    ));
    for (name, validation, members) in groups {
        if members.is_empty() {
            continue;
        }
        let mut devices: Vec<&str> = members.iter().map(|t| t.device).collect();
        devices.dedup();
        let row = Report::default()
            .field("family", name)
            .field("validation", validation)
            .field("traces", members.len())
            .field(
                "samples",
                members
                    .iter()
                    .map(|t| t.observed.samples.len())
                    .sum::<usize>(),
            )
            .field("devices", devices.join(","));
        let row = error_fields(row, &mut predictors, |p, h| {
            let mut all = ErrorSamples::default();
            for trace in &members {
                all.extend(evaluate_family(trace, p, h));
            }
            all
        });
        rows.push(row.to_json());
    }
    let mut json = report.to_json();
    json["families"] = serde_json::Value::Array(rows);
    Ok(json)
}

/// The report as text: the pooled fields, then one line per family with the RMS error of each
/// predictor at 16, 50 and 100 ms.
pub fn table(report: &serde_json::Value) -> String {
    let mut out = String::new();
    let Some(map) = report.as_object() else {
        return out;
    };
    let width = map.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in map.iter().filter(|(k, _)| *k != "families") {
        out.push_str(&format!("{k:<width$}  {v}\n"));
    }
    let rows = report["families"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return out;
    }
    out.push_str("\nRMS error (px) per family; overshoot at stops at 50 ms\n");
    out.push_str(&format!("{:<12} {:>4}", "family", "val"));
    for h in [16, 50, 100] {
        for p in ["none", "linear", "kalman"] {
            out.push_str(&format!(" {:>9}", format!("{p}@{h}")));
        }
    }
    out.push_str(&format!(" {:>9} {:>9}\n", "lin_over", "kal_over"));
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        out.push_str(&format!(
            "{:<12} {:>4}",
            r["family"].as_str().unwrap_or("?"),
            if r["validation"] == true { "yes" } else { "" }
        ));
        for h in [16, 50, 100] {
            for p in ["none", "linear", "kalman"] {
                out.push_str(&format!(" {:>9.2}", f(&format!("{p}_rms_px_h{h}"))));
            }
        }
        out.push_str(&format!(
            " {:>9.2} {:>9.2}\n",
            f("linear_overshoot_px_h50"),
            f("kalman_overshoot_px_h50")
        ));
    }
    out
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
        let json = run(&PredictArgs {
            traces: Some(dir.clone()),
            families: false,
        })
        .expect("runs");
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
            families: false,
        })
        .expect_err("a bad file fails the run");
        let msg = format!("{err:#}");
        assert!(msg.contains("bad.trace is not a trace: line 2"), "{msg}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn reports_one_row_per_family_and_the_validation_split() {
        let dir = std::env::temp_dir().join(format!("stratus-predict-f-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let text = corpus::synthesize(&corpus::MotionConfig::new(125, 1_000), 1).to_string();
        std::fs::write(dir.join("one.trace"), text).expect("write");
        let json = run(&PredictArgs {
            traces: Some(dir.clone()),
            families: true,
        })
        .expect("runs");
        std::fs::remove_dir_all(&dir).expect("clean up");
        let rows = json["families"].as_array().expect("families");
        let names: Vec<&str> = rows.iter().filter_map(|r| r["family"].as_str()).collect();
        let mut expected: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
        expected.push(VALIDATION_ROW);
        assert_eq!(names, expected);
        for row in rows {
            assert!(row["traces"].as_u64() > Some(0), "{row}");
            for p in ["none", "linear", "kalman"] {
                for h in HORIZONS_MS {
                    assert!(
                        row[format!("{p}_rms_px_h{h}")].as_f64() > Some(0.0),
                        "{row}"
                    );
                    assert!(row[format!("{p}_overshoot_px_h{h}")].as_f64() >= Some(0.0));
                }
            }
        }
        assert!(table(&json).contains("\nflick "), "{}", table(&json));
    }
}
