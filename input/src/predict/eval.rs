//! Measuring a predictor on a [`Trace`]: [`evaluate`] and [`evaluate_samples`], with the
//! error statistics they produce.

use super::PointerPredictor;
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
/// as a client would, whenever a button goes down. Overshoot uses the trace's stops, or those
/// [`crate::trace::detect_stops`] finds in a recording; see [`ErrorStats`].
pub fn evaluate_samples(
    trace: &Trace,
    predictor: &mut dyn PointerPredictor,
    horizon_ms: f64,
) -> ErrorSamples {
    let horizon_us = (horizon_ms.max(0.0) * 1000.0).round() as u64;
    let mut stops = trace.stops_or_detected();
    stops.sort_by_key(|s| s.t_us);
    let mut overshoot: Vec<Option<f64>> = vec![None; stops.len()];
    let mut out = ErrorSamples::default();
    predictor.reset();
    let mut buttons = 0;
    let mut next_stop = 0;
    for s in &trace.samples {
        if s.buttons & !buttons != 0 {
            predictor.reset();
        }
        buttons = s.buttons;
        predictor.observe(s.t_us, s.x, s.y);
        let target = s.t_us + horizon_us;
        let Some((tx, ty)) = trace.position_at(target) else {
            continue;
        };
        let (px, py) = predictor.predict(target);
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
