//! How far ahead to predict, [`Horizon`]: the smoothed one-way latency plus decode and present
//! time.

/// Default gain of [`Horizon`]'s latency average (as TCP's smoothed RTT, RFC 6298).
pub const HORIZON_GAIN: f64 = 0.125;
/// [`Horizon`] never asks for more than this, milliseconds.
pub const MAX_HORIZON_MS: f64 = 150.0;

/// How far ahead to predict: smoothed one-way latency + decode time + present time.
///
/// Latency measurements are noisy (a late packet, a stats hiccup); the horizon follows their
/// exponential average with gain [`HORIZON_GAIN`] so the predicted pointer does not jitter with
/// them. Non-finite or negative measurements are ignored; the total is clamped to
/// `0..=`[`MAX_HORIZON_MS`], beyond which prediction does more harm than good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Horizon {
    one_way_ms: f64,
    decode_ms: f64,
    present_ms: f64,
}

impl Horizon {
    /// A horizon starting from a first one-way latency estimate and the decode and present
    /// times, all in milliseconds.
    pub fn new(one_way_ms: f64, decode_ms: f64, present_ms: f64) -> Self {
        let ok = |v: f64| if v.is_finite() { v.max(0.0) } else { 0.0 };
        Self {
            one_way_ms: ok(one_way_ms),
            decode_ms: ok(decode_ms),
            present_ms: ok(present_ms),
        }
    }

    /// Folds in a new one-way latency measurement, milliseconds.
    pub fn observe_one_way_ms(&mut self, ms: f64) {
        if ms.is_finite() && ms >= 0.0 {
            self.one_way_ms += HORIZON_GAIN * (ms.min(10.0 * MAX_HORIZON_MS) - self.one_way_ms);
        }
    }

    /// Updates the decode and present times (e.g. from the video element's stats), ms.
    pub fn set_decode_present_ms(&mut self, decode_ms: f64, present_ms: f64) {
        *self = Self::new(self.one_way_ms, decode_ms, present_ms);
    }

    /// The smoothed one-way latency, milliseconds.
    pub fn one_way_ms(&self) -> f64 {
        self.one_way_ms
    }

    /// The horizon, milliseconds.
    pub fn ms(&self) -> f64 {
        (self.one_way_ms + self.decode_ms + self.present_ms).clamp(0.0, MAX_HORIZON_MS)
    }

    /// The horizon, microseconds (add it to the sample time to get the time to predict for).
    pub fn us(&self) -> u64 {
        (self.ms() * 1000.0).round() as u64
    }
}
