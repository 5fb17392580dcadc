//! The adaptive constant-acceleration Kalman predictor, [`Predictor`], and its settings; the
//! model and the tuning are described in the [`predict`](super) module docs.

use std::collections::VecDeque;

use nalgebra::{Matrix3, Matrix3x2, RowVector2, Vector3};

use super::PointerPredictor;
use super::calibration::{CHECK_HORIZONS_MS, Calibration, Displacements, regime};

/// Default [`PredictorConfig::measurement_noise_px`].
pub const DEFAULT_MEASUREMENT_NOISE_PX: f64 = 1.0;
/// Default [`PredictorConfig::jerk_psd`].
pub const DEFAULT_JERK_PSD: f64 = 2.0e7;
/// Default [`PredictorConfig::adapt_ms`].
pub const DEFAULT_ADAPT_MS: f64 = 20.0;
/// Default [`PredictorConfig::adapt_gain`].
pub const DEFAULT_ADAPT_GAIN: f64 = 3.0;
/// Default [`PredictorConfig::max_q_scale`].
pub const DEFAULT_MAX_Q_SCALE: f64 = 1000.0;
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

/// A prediction with its confidence, from [`Predictor::predict_with_error`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Predicted position, pixels.
    pub x: f64,
    /// Predicted position, pixels.
    pub y: f64,
    /// Expected distance from the truth, pixels (the calibration's residual times the
    /// displacement predicted).
    pub error_px: f64,
    /// The weights given to the Kalman model's and the last two samples' displacements.
    pub weights: [f64; 2],
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
    /// The last sample: time, position.
    last: (u64, f64, f64),
    /// When the filter (re)started, microseconds.
    started_us: u64,
    /// The latest sample stamped at least [`LINE_BASE_US`] before `last` (or the oldest one
    /// since the start, if none is that old yet and it is older than `last`).
    anchor: Option<(u64, f64, f64)>,
}

/// The filter's first this-many microseconds after a (re)start are its transient, not its
/// skill: their predictions are not scored by the calibration.
pub const WARMUP_US: u64 = 30_000;

/// The line model's velocity is measured over at least this long, microseconds: over two
/// consecutive samples of an 8 kHz mouse, whole-pixel positions make the velocity noise alone
/// 8000 px/s.
pub const LINE_BASE_US: u64 = 8_000;

/// The adaptive constant-acceleration Kalman predictor. See the module docs.
#[derive(Debug, Clone)]
pub struct Predictor {
    config: PredictorConfig,
    state: Option<State>,
    resets: u64,
    calibration: Calibration,
    /// Recent samples, from the line model's anchor to the last.
    history: VecDeque<(u64, f64, f64)>,
}

impl Predictor {
    /// A predictor with `config`.
    pub fn new(config: PredictorConfig) -> Self {
        Self {
            config,
            state: None,
            resets: 0,
            calibration: Calibration::default(),
            history: VecDeque::new(),
        }
    }

    /// How far the predictor trusts each of its models `horizon_ms` ahead at its current
    /// speed: the weights of the Kalman filter's and the last two samples' displacements
    /// (see [`Calibration`]); `[1, 0]` before it has learned anything.
    pub fn weights(&self, horizon_ms: f64) -> [f64; 2] {
        let regime = self.state.as_ref().map_or(0, |s| self.regime(s));
        self.calibration.weights(regime, horizon_ms)
    }

    /// The prediction for `t_us` with its expected error in pixels (the predictor's
    /// confidence: small on motion it has foreseen well, large on motion it has not).
    pub fn predict_with_error(&self, t_us: u64) -> Option<Prediction> {
        let s = self.state.as_ref()?;
        let h_ms = t_us.saturating_sub(s.t_us) as f64 * 1e-3;
        let (base, disps) = self.displacements(s, h_ms * 1e-3);
        let regime = self.regime(s);
        let w = self.calibration.weights(regime, h_ms);
        let (dx, dy) = (
            w[0] * disps[0].0 + w[1] * disps[1].0,
            w[0] * disps[0].1 + w[1] * disps[1].1,
        );
        let len = disps[0].0.hypot(disps[0].1);
        Some(Prediction {
            x: base.0 + dx,
            y: base.1 + dy,
            error_px: self.calibration.relative_error(regime, h_ms) * len,
            weights: w,
        })
    }

    /// The speed regime of the filter's state.
    fn regime(&self, s: &State) -> usize {
        regime(s.x[(1, 0)].hypot(s.x[(1, 1)]))
    }

    /// The last sample and, as displacements from it `h` seconds ahead, the Kalman model's
    /// prediction and the line through the last two samples (with distinct timestamps), both
    /// capped at [`PredictorConfig::max_speed_px_s`]. Weights of 0 are exactly not predicting.
    fn displacements(&self, s: &State, h: f64) -> ((f64, f64), Displacements) {
        let c = &self.config;
        let h = h.clamp(0.0, c.max_horizon_ms * 1e-3);
        let ((px, py), (dx, dy)) = self.extrapolate(s, h);
        let (lt, lx, ly) = s.last;
        let kalman = (px + dx - lx, py + dy - ly);
        let linear = match s.anchor {
            Some((pt, pxx, pyy)) if lt > pt => {
                let dt = (lt - pt) as f64 * 1e-6;
                let (vx, vy) = ((lx - pxx) / dt, (ly - pyy) / dt);
                let speed = vx.hypot(vy);
                let k = if speed > c.max_speed_px_s {
                    c.max_speed_px_s / speed
                } else {
                    1.0
                };
                (vx * h * k, vy * h * k)
            }
            _ => (0.0, 0.0),
        };
        ((lx, ly), [kalman, linear])
    }

    /// The model's position estimate and the displacement it extrapolates `h` seconds ahead,
    /// before calibration.
    fn extrapolate(&self, s: &State, h: f64) -> ((f64, f64), (f64, f64)) {
        let c = &self.config;
        let mut h = h.clamp(0.0, c.max_horizon_ms * 1e-3);
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
        ((px, py), (dx * gain, dy * gain))
    }

    /// Restarts the filter from a sample, keeping the calibration.
    fn restart_at(&mut self, t_us: u64, x: f64, y: f64) {
        self.resets += 1;
        self.calibration.restart();
        self.state = Some(self.start(t_us, x, y));
        self.calibration.observe(t_us, x, y);
        self.history.clear();
        self.history.push_back((t_us, x, y));
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
            last: (t_us, x, y),
            anchor: None,
            started_us: t_us,
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
            self.calibration.observe(t_us, x, y);
            self.history.clear();
            self.history.push_back((t_us, x, y));
            return;
        };
        // A sample older than the last one is taken as simultaneous with it.
        let dt = t_us.saturating_sub(s.t_us) as f64 * 1e-6;
        if dt * 1e3 > c.max_gap_ms {
            self.restart_at(t_us, x, y);
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
            self.restart_at(t_us, x, y);
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
        s.last = (t_us.max(s.last.0), x, y);
        self.history.push_back(s.last);
        while self.history.len() > 1 && self.history[1].0 + LINE_BASE_US <= s.last.0 {
            self.history.pop_front();
        }
        s.anchor = self.history.front().copied().filter(|a| a.0 < s.last.0);
        self.state = Some(s);
        // Score the predictions that fall due, then record this sample's.
        self.calibration.observe(t_us, x, y);
        if s.t_us >= s.started_us + WARMUP_US {
            let base = (s.last.1, s.last.2);
            let disps = CHECK_HORIZONS_MS.map(|h| self.displacements(&s, h * 1e-3).1);
            self.calibration
                .schedule(s.t_us, self.regime(&s), base, disps);
        }
    }

    fn predict(&self, t_us: u64) -> (f64, f64) {
        self.predict_with_error(t_us)
            .map_or((0.0, 0.0), |p| (p.x, p.y))
    }

    fn reset(&mut self) {
        self.state = None;
        self.calibration.clear();
    }

    fn restart(&mut self) {
        self.state = None;
        self.calibration.restart();
    }

    fn name(&self) -> &'static str {
        "kalman"
    }
}
