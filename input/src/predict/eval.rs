//! Measuring a predictor on a [`Trace`] ([`evaluate`], [`evaluate_samples`]) or on what a device
//! reported of a true motion ([`evaluate_family`], [`evaluate_observed`]), with the error
//! statistics they produce.

use super::PointerPredictor;
use crate::corpus::FamilyTrace;
use crate::trace::Trace;

/// A stop's overshoot is measured on predictions for times this long after it, microseconds.
pub const OVERSHOOT_WINDOW_US: u64 = 100_000;

/// A predictor's error on one or more traces. See [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ErrorStats {
    /// Root mean square of the prediction error, pixels.
    pub rms_px: f64,
    /// 95th percentile (nearest rank) of the prediction error, pixels.
    pub p95_px: f64,
    /// Mean over stops of the largest distance a prediction landed beyond the stop point,
    /// along the move's direction, among predictions for the first 100 ms after the stop
    /// ([`OVERSHOOT_WINDOW_US`]); pixels, 0 when it never passed the stop.
    pub overshoot_px_at_stops: f64,
    /// Stops measured.
    pub stops: usize,
    /// Predictions measured.
    pub samples: usize,
}

/// The raw errors behind [`ErrorStats`], so several traces can be pooled before summarising.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorSamples {
    /// Distance between prediction and truth, one per prediction, pixels.
    pub errors_px: Vec<f64>,
    /// The overshoot of each stop, pixels.
    pub overshoots_px: Vec<f64>,
}

impl ErrorSamples {
    /// Adds `other`'s samples to these.
    pub fn extend(&mut self, other: ErrorSamples) {
        self.errors_px.extend(other.errors_px);
        self.overshoots_px.extend(other.overshoots_px);
    }

    /// The summary.
    pub fn stats(&self) -> ErrorStats {
        let n = self.errors_px.len();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let squares: Vec<f64> = self.errors_px.iter().map(|e| e * e).collect();
        let mut sorted = self.errors_px.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n.max(1));
        ErrorStats {
            rms_px: mean(&squares).sqrt(),
            p95_px: sorted.get(rank - 1).copied().unwrap_or(0.0),
            overshoot_px_at_stops: mean(&self.overshoots_px),
            stops: self.overshoots_px.len(),
            samples: n,
        }
    }
}

/// Replays `trace` into `predictor` and measures its predictions `horizon_ms` ahead.
///
/// After each sample at `t`, the prediction for `t + horizon` is compared with the trace's
/// position at `t + horizon`, linearly interpolated between samples (samples whose target
/// time is past the trace's end are not measured). The predictor is reset at the start and,
/// as a client would, restarted ([`PointerPredictor::restart`]) whenever a button goes
/// down. Overshoot uses the trace's stops, or those
/// [`crate::trace::detect_stops`] finds in a recording; see [`ErrorStats`].
pub fn evaluate_samples(
    trace: &Trace,
    predictor: &mut dyn PointerPredictor,
    horizon_ms: f64,
) -> ErrorSamples {
    let times: Vec<u64> = trace.samples.iter().map(|s| s.t_us).collect();
    evaluate_observed(trace, &times, trace, predictor, horizon_ms)
}

/// [`evaluate_observed`] on a [`FamilyTrace`]: what the device reported, scored against the
/// true motion.
pub fn evaluate_family(
    trace: &FamilyTrace,
    predictor: &mut dyn PointerPredictor,
    horizon_ms: f64,
) -> ErrorSamples {
    evaluate_observed(
        &trace.observed,
        &trace.true_t_us,
        &trace.truth,
        predictor,
        horizon_ms,
    )
}

/// Replays `observed` into `predictor` and scores each prediction against `truth`.
///
/// After each observed sample, stamped `t` by its device and taken at true time `true_t_us[i]`,
/// the predictor is asked for `t + horizon` (all a client can do) and the answer is compared
/// with `truth` at `true_t_us[i] + horizon`: a device that stamps coarsely or reports late is
/// charged for it. Resets on button presses and overshoot at `truth`'s stops are as in
/// [`evaluate_samples`]. Samples past the end of `true_t_us` are ignored.
pub fn evaluate_observed(
    observed: &Trace,
    true_t_us: &[u64],
    truth: &Trace,
    predictor: &mut dyn PointerPredictor,
    horizon_ms: f64,
) -> ErrorSamples {
    let horizon_us = (horizon_ms.max(0.0) * 1000.0).round() as u64;
    let mut stops = truth.stops_or_detected();
    stops.sort_by_key(|s| s.t_us);
    let mut overshoot: Vec<Option<f64>> = vec![None; stops.len()];
    let mut out = ErrorSamples::default();
    predictor.reset();
    let mut buttons = 0;
    let mut next_stop = 0;
    for (s, &true_t) in observed.samples.iter().zip(true_t_us) {
        if s.buttons & !buttons != 0 {
            predictor.restart();
        }
        buttons = s.buttons;
        predictor.observe(s.t_us, s.x, s.y);
        let target = true_t + horizon_us;
        let Some((tx, ty)) = truth.position_at(target) else {
            continue;
        };
        let (px, py) = predictor.predict(s.t_us + horizon_us);
        out.errors_px.push((px - tx).hypot(py - ty));
        while next_stop < stops.len() && stops[next_stop].t_us + OVERSHOOT_WINDOW_US <= target {
            next_stop += 1;
        }
        if let Some(stop) = stops.get(next_stop)
            && stop.t_us <= target
        {
            let beyond = ((px - stop.x) * stop.dir_x + (py - stop.y) * stop.dir_y).max(0.0);
            let worst = overshoot[next_stop].get_or_insert(0.0);
            *worst = worst.max(beyond);
        }
    }
    out.overshoots_px = overshoot.into_iter().flatten().collect();
    out
}

/// [`evaluate_samples`] summarised.
pub fn evaluate(
    trace: &Trace,
    predictor: &mut dyn PointerPredictor,
    horizon_ms: f64,
) -> ErrorStats {
    evaluate_samples(trace, predictor, horizon_ms).stats()
}
