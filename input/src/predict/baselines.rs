//! The baselines the Kalman predictor is measured against: [`NoPrediction`] and
//! [`LinearExtrapolation`].

use super::PointerPredictor;

/// The baseline that does not predict: the last sample.
#[derive(Debug, Clone, Default)]
pub struct NoPrediction {
    last: Option<(f64, f64)>,
}

impl PointerPredictor for NoPrediction {
    fn observe(&mut self, _t_us: u64, x: f64, y: f64) {
        self.last = Some((x, y));
    }
    fn predict(&self, _t_us: u64) -> (f64, f64) {
        self.last.unwrap_or((0.0, 0.0))
    }
    fn reset(&mut self) {
        self.last = None;
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

/// The baseline that extrapolates the velocity between the last two samples.
#[derive(Debug, Clone, Default)]
pub struct LinearExtrapolation {
    prev: Option<(u64, f64, f64)>,
    last: Option<(u64, f64, f64)>,
}

impl PointerPredictor for LinearExtrapolation {
    fn observe(&mut self, t_us: u64, x: f64, y: f64) {
        self.prev = self.last;
        self.last = Some((t_us, x, y));
    }
    fn predict(&self, t_us: u64) -> (f64, f64) {
        match (self.prev, self.last) {
            (Some((t0, x0, y0)), Some((t1, x1, y1))) if t1 > t0 => {
                let f = (t_us as f64 - t1 as f64) / (t1 - t0) as f64;
                (x1 + (x1 - x0) * f, y1 + (y1 - y0) * f)
            }
            (_, Some((_, x, y))) => (x, y),
            _ => (0.0, 0.0),
        }
    }
    fn reset(&mut self) {
        *self = Self::default();
    }
    fn name(&self) -> &'static str {
        "linear"
    }
}
