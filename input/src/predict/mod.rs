//! Pointer prediction: where the pointer (or a stick) will be when the frame it causes is shown.
//!
//! The client sends, with each pointer move, the position predicted for `now + horizon`, where
//! [`Horizon`] follows the measured one-way latency plus decode and present time. The game then
//! reacts to where the hand *will be*, hiding most of the stream's latency while aiming.
//!
//! # Model
//!
//! [`Predictor`] combines two models of where the pointer is going and learns, from how its own
//! past predictions turned out, how far to trust each ([`Calibration`]):
//!
//! 1. a Kalman filter with a constant-acceleration state per axis (below);
//! 2. the line through the last sample and the latest one at least [`LINE_BASE_US`] older.
//!
//! From each sample it predicts `last sample + g₁·D₁ + g₂·D₂`, where `Dᵢ` are the two models'
//! displacements and the weights `gᵢ` are the least-squares fit, over the last few seconds, of
//! the displacements that really followed earlier samples, per horizon and per speed regime
//! (rest, moving, fast). `g = 0` is exactly not predicting, so on motion neither model foresees
//! (a flick's hard stop, a stick's spring, a resting hand's tremor) the fit backs off towards
//! the last sample instead of overshooting; on smooth tracking it keeps the filter whole. The
//! fit's residual is the prediction's expected error, [`Predictor::predict_with_error`]: the
//! predictor's confidence, which the node's region of interest can use.
//!
//! The filter's state is `[p, v, a]` per axis, driven by white jerk of spectral density `q`
//! (px²/s⁵). Both axes share one covariance (their noise is isotropic), so one 3 × 3 covariance
//! and gain serve x and y. Over an interval `dt` (any length: 125–8000 Hz and jitter are just
//! different `dt`s):
//!
//! ```text
//! F = | 1 dt dt²/2 |      Q = q · | dt⁵/20 dt⁴/8 dt³/6 |      z = p + noise (variance r)
//!     | 0 1  dt    |              | dt⁴/8  dt³/3 dt²/2 |
//!     | 0 0  1     |              | dt³/6  dt²/2 dt    |
//! ```
//!
//! - **Adaptive noise.** Hands alternate between rest (tremor and sensor quantisation only) and
//!   aimed moves whose jerk reaches 10⁶ px/s³. The normalised innovation squared,
//!   `ν = |z − p̂|² / 2S`, is 1 on average when the filter's model fits the motion. The
//!   logarithm of `q`'s scale integrates `ν − 1` (ν capped at 10) with gain
//!   [`PredictorConfig::adapt_gain`] per [`PredictorConfig::adapt_ms`], within
//!   `1..=`[`PredictorConfig::max_q_scale`] × [`PredictorConfig::jerk_psd`]: surprises raise
//!   `q` within a few samples when a move starts or ends, and it sinks back at rest, where the
//!   filter then smooths harder. The integral runs on time, not samples, so it behaves the same
//!   at 125 and 1000 Hz.
//! - **Rest.** Extrapolating tremor (8–12 Hz) 50 ms ahead only adds error, so the predicted
//!   displacement is scaled by `s² / (s² + s_rest²)` for estimated speed `s` and
//!   [`PredictorConfig::rest_speed_px_s`].
//! - **Resets.** [`PointerPredictor::reset`] forgets everything; [`PointerPredictor::restart`]
//!   forgets the motion but keeps the calibration (call it on a button press: a click ends an
//!   aimed move). The filter also restarts by itself on a gap longer than
//!   [`PredictorConfig::max_gap_ms`] or a jump of more than [`PredictorConfig::jump_px`] from
//!   where it expected the sample (pointer lock, a teleport, a new touch). A restarted filter's
//!   first [`WARMUP_US`] are its transient and are not scored.
//! - **No overshoot at stops.** A min-jerk move ends decelerating. When the acceleration
//!   opposes the velocity and would stop the pointer within the horizon, the filter's
//!   prediction is that stop point, `p + v·ts + ½·a·ts²` with `ts = |v|² / −(a·v)`, never
//!   beyond. While speeding up, only a fraction [`PredictorConfig::accel_weight`] of the
//!   acceleration is extrapolated, because a min-jerk move's acceleration fades before its
//!   midpoint. The displacement is capped at [`PredictorConfig::max_speed_px_s`] × horizon, and
//!   the horizon at [`PredictorConfig::max_horizon_ms`].
//!
//! For a stick, feed the deflection scaled to pixels (e.g. ±1000) so the defaults apply.
//!
//! # Tuning and validation
//!
//! The filter's defaults were chosen by sweeping each parameter on
//! [`crate::corpus::default_corpus`] at a 50 ms horizon; the calibration's constants and the
//! filter's `max_q_scale` (raised from 30 to 1000 so the filter keeps up with flicks) on the
//! tuning families of [`crate::corpus::family_corpus`] (aimed moves, flicks, random walks).
//! Drags, idle hands, circles and sticks are held out as the validation split;
//! `stratus-bench predict` prints every family at 16–100 ms against [`NoPrediction`] (the last
//! sample) and [`LinearExtrapolation`] (the last two samples), measured by [`evaluate_family`]
//! against the true motion. [`evaluate`] measures any predictor on a recorded [`Trace`].
//!
//! # Drive loop
//!
//! The predictor is sans-IO: no clock, no threads; time is an argument.
//!
//! ```
//! use input::predict::{Horizon, PointerPredictor, Predictor, PredictorConfig};
//!
//! let mut predictor = Predictor::new(PredictorConfig::default());
//! let mut horizon = Horizon::new(20.0, 8.0, 8.0); // one-way, decode, present (ms)
//! for i in 0..100u64 {
//!     let t_us = i * 1000; // pointermove at 1000 Hz: the pointer goes right at 500 px/s
//!     predictor.observe(t_us, 100.0 + 0.5 * i as f64, 300.0);
//!     if i % 50 == 0 {
//!         horizon.observe_one_way_ms(22.0); // a fresh measurement from the stats
//!     }
//!     let (x, y) = predictor.predict(t_us + horizon.us());
//!     // send (x, y) instead of the raw position
//!     # let _ = (x, y);
//! }
//! let (x, _) = predictor.predict(99_000 + horizon.us());
//! let lead = x - 149.5;
//! assert!((lead - 500.0 * horizon.ms() / 1000.0).abs() < 2.0, "leads by {lead} px");
//! predictor.reset(); // on a button press
//! ```
//!
//! [`Trace`]: crate::trace::Trace

mod baselines;
mod calibration;
mod eval;
mod golden;
mod horizon;
mod kalman;
#[cfg(test)]
mod tests;

pub use baselines::{LinearExtrapolation, NoPrediction};
pub use calibration::{
    CALIBRATION_MS, CHECK_HORIZONS_MS, Calibration, Displacements, LINE_PRIOR_WEIGHT_PX2, MAX_GAIN,
    MODEL_PRIOR, MODELS, PRIOR_WEIGHT_PX2, REGIME_SPEEDS_PX_S, REGIMES, regime,
};
pub use eval::{
    ErrorSamples, ErrorStats, OVERSHOOT_WINDOW_US, evaluate, evaluate_family, evaluate_observed,
    evaluate_samples,
};
pub use golden::{GOLDEN_HORIZONS_MS, golden_vectors};
pub use horizon::{HORIZON_GAIN, Horizon, MAX_HORIZON_MS};
pub use kalman::{
    DEFAULT_ACCEL_WEIGHT, DEFAULT_ADAPT_GAIN, DEFAULT_ADAPT_MS, DEFAULT_INITIAL_ACCEL_PX_S2,
    DEFAULT_INITIAL_SPEED_PX_S, DEFAULT_JERK_PSD, DEFAULT_JUMP_PX, DEFAULT_MAX_GAP_MS,
    DEFAULT_MAX_HORIZON_MS, DEFAULT_MAX_Q_SCALE, DEFAULT_MAX_SPEED_PX_S,
    DEFAULT_MEASUREMENT_NOISE_PX, DEFAULT_REST_SPEED_PX_S, LINE_BASE_US, NIS_CAP, Prediction,
    Predictor, PredictorConfig, WARMUP_US,
};

/// A pointer predictor: fed samples, asked where the pointer will be.
pub trait PointerPredictor {
    /// Feeds the sample taken at `t_us` (microseconds, any epoch, non-decreasing).
    fn observe(&mut self, t_us: u64, x: f64, y: f64);
    /// The predicted position at `t_us` (normally later than the last sample); `(0, 0)` before
    /// the first sample.
    fn predict(&self, t_us: u64) -> (f64, f64);
    /// Forgets all history, including anything learned about the player.
    fn reset(&mut self);
    /// Forgets the motion, as after a discontinuity (a button press ends an aimed move),
    /// keeping what was learned about the player; by default the same as [`Self::reset`].
    fn restart(&mut self) {
        self.reset();
    }
    /// A short name for reports (`none`, `linear`, `kalman`: the shipped predictor keeps the
    /// name `kalman` in reports).
    fn name(&self) -> &'static str;
}
