//! Pointer prediction: where the pointer (or a stick) will be when the frame it causes is shown.
//!
//! The client sends, with each pointer move, the position predicted for `now + horizon`, where
//! [`Horizon`] follows the measured one-way latency plus decode and present time. The game then
//! reacts to where the hand *will be*, hiding most of the stream's latency while aiming.
//!
//! # Model
//!
//! [`Predictor`] is a Kalman filter with a constant-acceleration state per axis,
//! `[p, v, a]`, driven by white jerk of spectral density `q` (px²/s⁵). Both axes share one
//! covariance (their noise is isotropic), so one 3 × 3 covariance and gain serve x and y. Over
//! an interval `dt` (any length: 125–1000 Hz and jitter are just different `dt`s):
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
//! - **Resets.** [`PointerPredictor::reset`] forgets everything (call it on a button press: a
//!   click ends an aimed move). The filter also restarts by itself on a gap longer than
//!   [`PredictorConfig::max_gap_ms`] or a jump of more than [`PredictorConfig::jump_px`] from
//!   where it expected the sample (pointer lock, a teleport, a new touch).
//! - **No overshoot at stops.** A min-jerk move ends decelerating. When the acceleration
//!   opposes the velocity and would stop the pointer within the horizon, the prediction is
//!   that stop point, `p + v·ts + ½·a·ts²` with `ts = |v|² / −(a·v)`, never beyond. While
//!   speeding up, only a fraction [`PredictorConfig::accel_weight`] of the acceleration is
//!   extrapolated, because a min-jerk move's acceleration fades before its midpoint. The
//!   displacement is capped at [`PredictorConfig::max_speed_px_s`] × horizon, and the horizon
//!   at [`PredictorConfig::max_horizon_ms`].
//!
//! For a stick, feed the deflection scaled to pixels (e.g. ±1000) so the defaults apply.
//!
//! # Tuning
//!
//! The defaults were chosen by sweeping each parameter on [`crate::corpus::default_corpus`]
//! at a 50 ms horizon, and checked on corpus traces with other seeds and on a noisier variant
//! (2 px quantisation, 1–2 px tremor, ±40 % jitter); `stratus-bench predict` prints the
//! numbers. A high base jerk density (2·10⁷ px²/s⁵) matters most: aimed moves start and stop
//! abruptly, and a sluggish filter lags by tens of pixels. The rest gate (100 px/s) keeps the
//! pointer still while the hand is. The adaptation raises `q` up to 30× when the motion
//! surprises the filter; its gain is modest, because the innovation cannot tell a manoeuvre
//! from more sensor noise than `r` assumes, so `r` is set on the generous side (1 px).
//! Extrapolating half of the acceleration while speeding up, and all of it while braking,
//! keeps the overshoot at stops to about a pixel at 50 ms.
//!
//! Baselines for measurement, behind the same [`PointerPredictor`] trait: [`NoPrediction`] (the
//! last sample) and [`LinearExtrapolation`] (the last two samples). [`evaluate`] measures any of
//! them on a [`Trace`].
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

use nalgebra::{Matrix3, Matrix3x2, RowVector2, Vector3};

use crate::trace::Trace;

/// Default [`PredictorConfig::measurement_noise_px`].
pub const DEFAULT_MEASUREMENT_NOISE_PX: f64 = 1.0;
/// Default [`PredictorConfig::jerk_psd`].
pub const DEFAULT_JERK_PSD: f64 = 2.0e7;
/// Default [`PredictorConfig::adapt_ms`].
pub const DEFAULT_ADAPT_MS: f64 = 20.0;
/// Default [`PredictorConfig::adapt_gain`].
pub const DEFAULT_ADAPT_GAIN: f64 = 3.0;
/// Default [`PredictorConfig::max_q_scale`].
pub const DEFAULT_MAX_Q_SCALE: f64 = 30.0;
/// A single surprise counts at most this much in the adaptation, so one outlier cannot
/// saturate `q`.
pub const NIS_CAP: f64 = 10.0;
/// Default [`PredictorConfig::accel_weight`].
pub const DEFAULT_ACCEL_WEIGHT: f64 = 0.5;
/// Default [`PredictorConfig::rest_speed_px_s`].
pub const DEFAULT_REST_SPEED_PX_S: f64 = 100.0;
/// Default [`PredictorConfig::initial_speed_px_s`].
pub const DEFAULT_INITIAL_SPEED_PX_S: f64 = 300.0;
/// Default [`PredictorConfig::initial_accel_px_s2`].
pub const DEFAULT_INITIAL_ACCEL_PX_S2: f64 = 3000.0;
/// Default [`PredictorConfig::jump_px`].
pub const DEFAULT_JUMP_PX: f64 = 300.0;
/// Default [`PredictorConfig::max_gap_ms`].
pub const DEFAULT_MAX_GAP_MS: f64 = 100.0;
/// Default [`PredictorConfig::max_horizon_ms`].
pub const DEFAULT_MAX_HORIZON_MS: f64 = 150.0;
/// Default [`PredictorConfig::max_speed_px_s`].
pub const DEFAULT_MAX_SPEED_PX_S: f64 = 20_000.0;

/// A pointer predictor: fed samples, asked where the pointer will be.
pub trait PointerPredictor {
    /// Feeds the sample taken at `t_us` (microseconds, any epoch, non-decreasing).
    fn observe(&mut self, t_us: u64, x: f64, y: f64);
    /// The predicted position at `t_us` (normally later than the last sample); `(0, 0)` before
    /// the first sample.
    fn predict(&self, t_us: u64) -> (f64, f64);
    /// Forgets all history, as after a discontinuity.
    fn reset(&mut self);
    /// A short name for reports (`none`, `linear`, `kalman`).
    fn name(&self) -> &'static str;
}

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

/// The Kalman predictor's settings. See the module docs for the model; the defaults are tuned
/// on [`crate::corpus::default_corpus`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictorConfig {
    /// Standard deviation of a sample's position noise (tremor, quantisation), pixels.
    pub measurement_noise_px: f64,
    /// Base spectral density of the jerk, px²/s⁵.
    pub jerk_psd: f64,
    /// Time unit of the adaptation's integral, milliseconds.
    pub adapt_ms: f64,
    /// How fast the log of the jerk density's scale follows `ν − 1`, per `adapt_ms`.
    pub adapt_gain: f64,
    /// Upper bound of the jerk density's scale (the lower bound is 1).
    pub max_q_scale: f64,
    /// Fraction of the estimated acceleration extrapolated while speeding up, 0–1 (braking
    /// always uses all of it).
    pub accel_weight: f64,
    /// Below about this speed the pointer is resting (tremor): the extrapolation is scaled by
    /// `speed² / (speed² + rest_speed²)`, px/s.
    pub rest_speed_px_s: f64,
    /// Prior standard deviation of the velocity after a (re)start, px/s.
    pub initial_speed_px_s: f64,
    /// Prior standard deviation of the acceleration after a (re)start, px/s².
    pub initial_accel_px_s2: f64,
    /// A sample this far from where the filter expected it restarts the filter, pixels.
    pub jump_px: f64,
    /// A gap between samples longer than this restarts the filter, milliseconds.
    pub max_gap_ms: f64,
    /// Predictions further ahead than this are made for this horizon, milliseconds.
    pub max_horizon_ms: f64,
    /// The predicted displacement is at most this speed times the horizon, px/s.
    pub max_speed_px_s: f64,
}

impl Default for PredictorConfig {
    fn default() -> Self {
        Self {
            measurement_noise_px: DEFAULT_MEASUREMENT_NOISE_PX,
            jerk_psd: DEFAULT_JERK_PSD,
            adapt_ms: DEFAULT_ADAPT_MS,
            adapt_gain: DEFAULT_ADAPT_GAIN,
            max_q_scale: DEFAULT_MAX_Q_SCALE,
            accel_weight: DEFAULT_ACCEL_WEIGHT,
            rest_speed_px_s: DEFAULT_REST_SPEED_PX_S,
            initial_speed_px_s: DEFAULT_INITIAL_SPEED_PX_S,
            initial_accel_px_s2: DEFAULT_INITIAL_ACCEL_PX_S2,
            jump_px: DEFAULT_JUMP_PX,
            max_gap_ms: DEFAULT_MAX_GAP_MS,
            max_horizon_ms: DEFAULT_MAX_HORIZON_MS,
            max_speed_px_s: DEFAULT_MAX_SPEED_PX_S,
        }
    }
}

/// The filter's state once it has seen a sample.
#[derive(Debug, Clone, Copy)]
struct State {
    /// Rows position, velocity, acceleration; columns x, y.
    x: Matrix3x2<f64>,
    /// Covariance shared by both axes.
    p: Matrix3<f64>,
    t_us: u64,
    /// Natural log of the jerk density's scale.
    log_q_scale: f64,
}

/// The adaptive constant-acceleration Kalman predictor. See the module docs.
#[derive(Debug, Clone)]
pub struct Predictor {
    config: PredictorConfig,
    state: Option<State>,
    resets: u64,
}

impl Predictor {
    /// A predictor with `config`.
    pub fn new(config: PredictorConfig) -> Self {
        Self {
            config,
            state: None,
            resets: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PredictorConfig {
        &self.config
    }

    /// How many times the filter restarted by itself (gap or jump); [`PointerPredictor::reset`]
    /// does not count.
    pub fn auto_resets(&self) -> u64 {
        self.resets
    }

    /// The filtered position, velocity (px/s) and acceleration (px/s²), if any sample was seen.
    pub fn estimate(&self) -> Option<[(f64, f64); 3]> {
        self.state.map(|s| {
            let r = |i: usize| (s.x[(i, 0)], s.x[(i, 1)]);
            [r(0), r(1), r(2)]
        })
    }

    fn start(&self, t_us: u64, x: f64, y: f64) -> State {
        let c = &self.config;
        let r = c.measurement_noise_px * c.measurement_noise_px;
        State {
            x: Matrix3x2::new(x, y, 0.0, 0.0, 0.0, 0.0),
            p: Matrix3::from_diagonal(&Vector3::new(
                r,
                c.initial_speed_px_s * c.initial_speed_px_s,
                c.initial_accel_px_s2 * c.initial_accel_px_s2,
            )),
            t_us,
            log_q_scale: 0.0,
        }
    }
}

impl PointerPredictor for Predictor {
    fn observe(&mut self, t_us: u64, x: f64, y: f64) {
        let c = self.config;
        if !(x.is_finite() && y.is_finite()) {
            return; // Garbage in would poison the state until the next reset.
        }
        let Some(mut s) = self.state else {
            self.state = Some(self.start(t_us, x, y));
            return;
        };
        // A sample older than the last one is taken as simultaneous with it.
        let dt = t_us.saturating_sub(s.t_us) as f64 * 1e-6;
        if dt * 1e3 > c.max_gap_ms {
            self.resets += 1;
            self.state = Some(self.start(t_us, x, y));
            return;
        }
        let (dt2, dt3) = (dt * dt, dt * dt * dt);
        let f = Matrix3::new(1.0, dt, dt2 / 2.0, 0.0, 1.0, dt, 0.0, 0.0, 1.0);
        let q = c.jerk_psd * s.log_q_scale.exp();
        let qm = Matrix3::new(
            dt3 * dt2 / 20.0,
            dt2 * dt2 / 8.0,
            dt3 / 6.0,
            dt2 * dt2 / 8.0,
            dt3 / 3.0,
            dt2 / 2.0,
            dt3 / 6.0,
            dt2 / 2.0,
            dt,
        ) * q;
        let xp = f * s.x;
        let pp = f * s.p * f.transpose() + qm;
        let (ex, ey) = (x - xp[(0, 0)], y - xp[(0, 1)]);
        if ex.hypot(ey) > c.jump_px {
            self.resets += 1;
            self.state = Some(self.start(t_us, x, y));
            return;
        }
        let r = c.measurement_noise_px * c.measurement_noise_px;
        let sv = pp[(0, 0)] + r;
        let nis = (ex * ex + ey * ey) / (2.0 * sv);
        let alpha = 1.0 - (-dt * 1e3 / c.adapt_ms).exp();
        s.log_q_scale = (s.log_q_scale + alpha * c.adapt_gain * (nis.min(NIS_CAP) - 1.0))
            .clamp(0.0, c.max_q_scale.max(1.0).ln());
        let k: Vector3<f64> = pp.column(0) / sv;
        s.x = xp + k * RowVector2::new(ex, ey);
        s.p = pp - k * k.transpose() * sv;
        s.t_us = s.t_us.max(t_us);
        self.state = Some(s);
    }

    fn predict(&self, t_us: u64) -> (f64, f64) {
        let Some(s) = &self.state else {
            return (0.0, 0.0);
        };
        let c = &self.config;
        let mut h = (t_us.saturating_sub(s.t_us) as f64 * 1e-6).min(c.max_horizon_ms * 1e-3);
        let (px, py) = (s.x[(0, 0)], s.x[(0, 1)]);
        let (vx, vy) = (s.x[(1, 0)], s.x[(1, 1)]);
        let (mut ax, mut ay) = (s.x[(2, 0)], s.x[(2, 1)]);
        let along = ax * vx + ay * vy;
        if along < 0.0 {
            // Braking: stop where this deceleration brings the speed to 0, never beyond.
            h = h.min(-(vx * vx + vy * vy) / along);
        } else {
            // Speeding up: a min-jerk move's acceleration fades, so use only part of it.
            ax *= c.accel_weight;
            ay *= c.accel_weight;
        }
        let (dx, dy) = (vx * h + 0.5 * ax * h * h, vy * h + 0.5 * ay * h * h);
        let speed2 = vx * vx + vy * vy;
        let rest2 = c.rest_speed_px_s * c.rest_speed_px_s;
        let mut gain = if speed2 > 0.0 {
            speed2 / (speed2 + rest2)
        } else {
            0.0
        };
        let len = dx.hypot(dy) * gain;
        let limit = c.max_speed_px_s * h;
        if len > limit {
            gain *= limit / len;
        }
        let (dx, dy) = (dx * gain, dy * gain);
        (px + dx, py + dy)
    }

    fn reset(&mut self) {
        self.state = None;
    }

    fn name(&self) -> &'static str {
        "kalman"
    }
}

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

/// Horizons the golden vectors cycle through, milliseconds.
pub const GOLDEN_HORIZONS_MS: [u64; 3] = [16, 50, 100];

/// A golden case's samples, `(t_us, x, y)`.
type Observations = Vec<(u64, f64, f64)>;

/// The observation sequences of the golden vectors, with their names.
fn golden_cases() -> Vec<(&'static str, Observations)> {
    use crate::corpus::{MotionConfig, synthesize};
    let take = |rate: u32, seed: u64, n: usize| -> Observations {
        synthesize(&MotionConfig::new(rate, 5_000), seed)
            .samples
            .iter()
            .take(n)
            .map(|s| (s.t_us, s.x, s.y))
            .collect()
    };
    // A 250 Hz stretch with a 500 px jump and then a 150 ms gap, so both automatic resets are
    // exercised.
    let mut jumps = take(250, 0x5EED_0250, 320);
    for (i, (t, x, _)) in jumps.iter_mut().enumerate() {
        if i >= 150 {
            *x += 500.0;
        }
        if i >= 230 {
            *t += 150_000;
        }
    }
    vec![
        ("125 Hz", take(125, 0x5EED_0125, 400)),
        ("500 Hz", take(500, 0x5EED_0500, 600)),
        ("1000 Hz", take(1000, 0x5EED_1000, 600)),
        ("250 Hz with a jump and a gap", jumps),
    ]
}

/// Golden vectors for other implementations of [`Predictor`] (the browser's `predict.js`), as
/// JSON: `{"cases": [{"name", "observations": [[t_us, x, y], ...], "queries": [[t_us, x, y],
/// ...]}]}`. Each case starts from a fresh predictor with the default config; `queries[i]` is
/// asked right after `observations[i]` is fed, for that sample's time plus 16, 50 or 100 ms in
/// turn ([`GOLDEN_HORIZONS_MS`]), and holds the expected prediction to 1/1000 px.
pub fn golden_vectors() -> String {
    let mut out = String::from(
        "{\n\"generator\": \"input::predict::golden_vectors, default PredictorConfig\",\n\"cases\": [\n",
    );
    for (k, (name, obs)) in golden_cases().into_iter().enumerate() {
        let mut p = Predictor::new(PredictorConfig::default());
        let mut observations = Vec::with_capacity(obs.len());
        let mut queries = Vec::with_capacity(obs.len());
        for (i, &(t, x, y)) in obs.iter().enumerate() {
            p.observe(t, x, y);
            let target = t + GOLDEN_HORIZONS_MS[i % GOLDEN_HORIZONS_MS.len()] * 1000;
            let (px, py) = p.predict(target);
            observations.push(format!("[{t},{x},{y}]"));
            queries.push(format!("[{target},{px:.3},{py:.3}]"));
        }
        let sep = if k == 0 { "" } else { ",\n" };
        out.push_str(&format!(
            "{sep}{{\"name\": \"{name}\",\n\"observations\": [\n{}\n],\n\"queries\": [\n{}\n]}}",
            observations.join(",\n"),
            queries.join(",\n")
        ));
    }
    out.push_str("\n]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut dyn PointerPredictor, samples: impl IntoIterator<Item = (u64, f64, f64)>) {
        for (t, x, y) in samples {
            p.observe(t, x, y);
        }
    }

    #[test]
    fn baselines() {
        let mut none = NoPrediction::default();
        let mut lin = LinearExtrapolation::default();
        assert_eq!(none.predict(5), (0.0, 0.0));
        assert_eq!(lin.predict(5), (0.0, 0.0));
        for p in [&mut none as &mut dyn PointerPredictor, &mut lin] {
            feed(p, [(1000, 10.0, 20.0), (2000, 12.0, 19.0)]);
        }
        assert_eq!(none.predict(10_000), (12.0, 19.0));
        assert_eq!(lin.predict(4000), (16.0, 17.0));
        lin.observe(2000, 13.0, 19.0); // same time: no velocity, hold the last sample
        assert_eq!(lin.predict(4000), (13.0, 19.0));
        lin.reset();
        assert_eq!(lin.predict(4000), (0.0, 0.0));
        assert_eq!((none.name(), lin.name()), ("none", "linear"));
    }

    #[test]
    fn leads_a_steady_move_by_speed_times_horizon() {
        let mut p = Predictor::new(PredictorConfig::default());
        // 800 px/s to the right, 400 px/s down, at 500 Hz.
        feed(
            &mut p,
            (0..200u64).map(|i| (i * 2000, i as f64 * 1.6, i as f64 * 0.8)),
        );
        let (x, y) = p.predict(398_000 + 50_000);
        assert!((x - (318.4 + 40.0)).abs() < 1.0, "x {x}");
        assert!((y - (159.2 + 20.0)).abs() < 1.0, "y {y}");
        let [_, (vx, vy), _] = p.estimate().expect("seen samples");
        assert!(
            (vx - 800.0).abs() < 5.0 && (vy - 400.0).abs() < 5.0,
            "{vx} {vy}"
        );
        // Asking for the past or the present gives the filtered position.
        let (x0, _) = p.predict(0);
        assert!((x0 - 318.4).abs() < 0.5);
    }

    #[test]
    fn resting_pointer_stays_put() {
        let mut p = Predictor::new(PredictorConfig::default());
        // Sub-pixel tremor at 10 Hz, quantised: the prediction stays within a pixel.
        feed(
            &mut p,
            (0..1000u64).map(|i| {
                let t = i as f64 * 1e-3;
                let x = (500.0 + 0.6 * (62.8 * t).sin()).round();
                (i * 1000, x, 300.0)
            }),
        );
        let (x, y) = p.predict(999_000 + 50_000);
        assert!(
            (x - 500.0).abs() < 1.0 && (y - 300.0).abs() < 1e-6,
            "{x} {y}"
        );
    }

    #[test]
    fn restarts_on_gap_and_jump_and_ignores_garbage() {
        let mut p = Predictor::new(PredictorConfig::default());
        feed(&mut p, (0..50u64).map(|i| (i * 1000, i as f64 * 2.0, 0.0)));
        assert_eq!(p.auto_resets(), 0);
        p.observe(200_000, 98.0, 0.0); // 151 ms after the last sample
        assert_eq!(p.auto_resets(), 1);
        assert_eq!(
            p.predict(250_000),
            (98.0, 0.0),
            "no velocity survives a gap"
        );
        p.observe(201_000, 98.0, 0.0);
        p.observe(202_000, 1000.0, 500.0); // a teleport
        assert_eq!(p.auto_resets(), 2);
        assert_eq!(p.predict(260_000), (1000.0, 500.0));
        p.observe(203_000, f64::NAN, 1.0);
        p.observe(204_000, 1.0, f64::INFINITY);
        assert_eq!(p.predict(260_000), (1000.0, 500.0));
        p.reset();
        assert_eq!(p.predict(260_000), (0.0, 0.0));
        assert!(p.estimate().is_none());
    }

    #[test]
    fn deceleration_stops_short_and_extrapolation_is_capped() {
        let mut p = Predictor::new(PredictorConfig::default());
        // 100 ms at 2000 px/s, then braking at 20000 px/s²: at 160 ms the pointer is at 284 px
        // doing 800 px/s, and it will stop at 300 px, 16 px ahead, 40 ms later.
        let x_at = |t: f64| {
            let b = (t - 0.1).max(0.0);
            2000.0 * t - 10_000.0 * b * b
        };
        feed(
            &mut p,
            (0..=160u64).map(|i| (i * 1000, x_at(i as f64 * 1e-3), 0.0)),
        );
        for horizon_ms in [50, 100, 150, 1000] {
            let (x, _) = p.predict(160_000 + horizon_ms * 1000);
            // Velocity extrapolation would say 324 px at 50 ms and 364 px at 100 ms.
            assert!(x <= 302.0, "h {horizon_ms} ms: {x} passes the stop");
        }
        let mut fast = Predictor::new(PredictorConfig {
            max_speed_px_s: 1000.0,
            ..PredictorConfig::default()
        });
        feed(
            &mut fast,
            (0..100u64).map(|i| (i * 1000, i as f64 * 5.0, 0.0)),
        );
        let (x, _) = fast.predict(99_000 + 100_000);
        assert!(x - 495.0 <= 100.0 + 0.5, "capped at 1000 px/s: {x}");
        let (far, _) = fast.predict(99_000 + 10_000_000);
        assert!((far - x).abs() < 60.0, "horizon capped at 150 ms: {far}");
    }

    #[test]
    fn horizon_follows_latency_smoothly() {
        let mut h = Horizon::new(20.0, 5.0, 8.0);
        assert_eq!(h.ms(), 33.0);
        assert_eq!(h.us(), 33_000);
        h.observe_one_way_ms(100.0);
        assert_eq!(h.one_way_ms(), 30.0);
        for _ in 0..100 {
            h.observe_one_way_ms(40.0);
        }
        assert!((h.ms() - 53.0).abs() < 0.01);
        h.observe_one_way_ms(f64::NAN);
        h.observe_one_way_ms(-5.0);
        assert!((h.ms() - 53.0).abs() < 0.01);
        h.set_decode_present_ms(500.0, f64::INFINITY);
        assert_eq!(h.ms(), MAX_HORIZON_MS);
        assert_eq!(Horizon::new(f64::NAN, -1.0, 2.0).ms(), 2.0);
    }

    #[test]
    fn stats_summarise() {
        let s = ErrorSamples {
            errors_px: (1..=20).map(f64::from).collect(),
            overshoots_px: vec![1.0, 3.0],
        }
        .stats();
        assert_eq!(s.p95_px, 19.0);
        assert!((s.rms_px - (2870.0f64 / 20.0).sqrt()).abs() < 1e-9);
        assert_eq!((s.overshoot_px_at_stops, s.stops, s.samples), (2.0, 2, 20));
        assert_eq!(ErrorSamples::default().stats(), ErrorStats::default());
    }

    #[test]
    fn golden_vectors_are_json_shaped() {
        let g = golden_vectors();
        assert!(g.starts_with('{') && g.ends_with("}\n"));
        assert_eq!(g.matches("\"observations\"").count(), 4);
        assert!(g.len() < 300_000, "{} bytes", g.len());
    }
}
