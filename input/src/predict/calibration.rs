//! [`Calibration`]: how far a predictor should trust each of its models, learned from how its
//! past predictions turned out.
//!
//! From each sample, two models extrapolate a displacement from the sample's position: the
//! Kalman filter's (`D₁`) and the line through the last two samples at least 8 ms apart (`D₂`).
//! When the position `h` later is known, so is the displacement that really happened, `A`.
//! The least-squares weights of `A ≈ g₁·D₁ + g₂·D₂`, from the normal equations
//!
//! ```text
//! Σ w·(Dᵢ·Dⱼ) · g = Σ w·(Dᵢ·A)        (i, j ∈ {1, 2})
//! ```
//!
//! say how much of what each model predicts comes true for this hand, device and game: about
//! `[1, 0]` on smooth tracking; lower on motion the filter cannot foresee (flicks, a stick's
//! spring), where `last sample + g·D` removes the harm an overconfident model does; and never
//! worse than not predicting in the fit's own terms, because `g = 0` is exactly not predicting
//! and one of the weights the fit could choose. Weights `w` decay with time
//! ([`CALIBRATION_MS`]), so the fit follows a player who switches from browsing to aiming; a
//! button press or a jump drops the checks in flight but keeps what was learned.
//!
//! Each horizon in [`CHECK_HORIZONS_MS`] and each speed regime ([`REGIME_SPEEDS_PX_S`]: a
//! resting hand's tremor, ordinary moves, flicks and snaps) keeps its own fit: a model is
//! trusted further at 16 ms than at 100 ms, and less at rest than in a steady move. Other
//! horizons interpolate. Priors pull the weights towards [`MODEL_PRIOR`] (the filter whole)
//! with a weight of [`PRIOR_WEIGHT_PX2`] on the filter and [`LINE_PRIOR_WEIGHT_PX2`] on the
//! line, so a fresh predictor is the filter and the noisy line earns weight only on evidence.
//! The fit's residual is the expected error of a prediction
//! ([`Calibration::relative_error`]): the predictor's confidence.
//!
//! Everything is sans-IO: the predictor feeds samples and the displacements it would predict.

use std::collections::VecDeque;

/// The horizons whose outcome is checked, milliseconds.
pub const CHECK_HORIZONS_MS: [f64; 4] = [16.0, 33.0, 50.0, 100.0];
/// Time constant of the fits' forgetting, milliseconds.
pub const CALIBRATION_MS: f64 = 3000.0;
/// Weight of the prior on the Kalman model's weight, in squared pixels of displacement: a
/// single 10 px prediction's worth, so evidence takes over at once.
pub const PRIOR_WEIGHT_PX2: f64 = 100.0;
/// Weight of the prior that the line model adds nothing, squared pixels: the line is noisy,
/// so it earns weight only on plenty of evidence.
pub const LINE_PRIOR_WEIGHT_PX2: f64 = 1.0e5;
/// The scale never exceeds this (it may exceed 1 where a device stamps its events late).
pub const MAX_GAIN: f64 = 1.2;
/// What the weights are before any evidence: the Kalman model whole, no line.
pub const MODEL_PRIOR: [f64; MODELS] = [1.0, 0.0];
/// Prior expected error, as a fraction of the displacement predicted.
const PRIOR_ERROR: f64 = 0.25;
/// Outcomes straddling a gap between samples longer than this are not scored, microseconds.
const MAX_GAP_US: u64 = 100_000;
/// At most this many checks wait per horizon (8 kHz for 100 ms is 800).
const MAX_PENDING: usize = 4096;

/// Models combined: the Kalman filter's extrapolation and the last two samples' line.
pub const MODELS: usize = 2;
/// Upper bounds of the speed regimes, px/s: each regime keeps its own fits.
pub const REGIME_SPEEDS_PX_S: [f64; REGIMES - 1] = [150.0, 1500.0];
/// Speed regimes: resting (tremor), moving, fast (flicks, a stick's snap).
pub const REGIMES: usize = 3;
const H: usize = CHECK_HORIZONS_MS.len();

/// The displacements each model predicts from one sample.
pub type Displacements = [(f64, f64); MODELS];

/// A prediction waiting for its outcome.
#[derive(Debug, Clone, Copy)]
struct Pending {
    due_us: u64,
    regime: usize,
    base: (f64, f64),
    disp: Displacements,
}

/// One (regime, horizon) fit: the normal equations of `A ≈ Σ g_m D_m`.
#[derive(Debug, Clone, Copy, Default)]
struct Fit {
    /// Σ w·(D_i·D_j).
    dd: [[f64; MODELS]; MODELS],
    /// Σ w·(D_i·A).
    da: [f64; MODELS],
    /// Σ w·(A·A).
    aa: f64,
}

impl Fit {
    fn decay(&mut self, k: f64) {
        for row in &mut self.dd {
            for v in row {
                *v *= k;
            }
        }
        for v in &mut self.da {
            *v *= k;
        }
        self.aa *= k;
    }

    fn add(&mut self, d: &Displacements, a: (f64, f64)) {
        for i in 0..MODELS {
            for j in 0..MODELS {
                self.dd[i][j] += d[i].0 * d[j].0 + d[i].1 * d[j].1;
            }
            self.da[i] += d[i].0 * a.0 + d[i].1 * a.1;
        }
        self.aa += a.0 * a.0 + a.1 * a.1;
    }

    /// The weights that fit best, pulled towards [`MODEL_PRIOR`] with weights
    /// [`PRIOR_WEIGHT_PX2`] on the Kalman model and [`LINE_PRIOR_WEIGHT_PX2`] on the line; and
    /// the fit's residual relative to the Kalman model's displacement.
    fn solve(&self) -> ([f64; MODELS], f64) {
        let prior = MODEL_PRIOR;
        let p = [PRIOR_WEIGHT_PX2, LINE_PRIOR_WEIGHT_PX2];
        let m = [
            [self.dd[0][0] + p[0], self.dd[0][1]],
            [self.dd[1][0], self.dd[1][1] + p[1]],
        ];
        let b = [self.da[0] + p[0] * prior[0], self.da[1] + p[1] * prior[1]];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let g = if det.abs() > 1e-12 {
            [
                (b[0] * m[1][1] - m[0][1] * b[1]) / det,
                (m[0][0] * b[1] - m[1][0] * b[0]) / det,
            ]
        } else {
            prior
        }
        .map(|g| g.clamp(-MAX_GAIN, MAX_GAIN));
        // Σw|A − g·D|² over the evidence, plus the prior's expected error.
        let mut resid = self.aa + PRIOR_ERROR * PRIOR_ERROR * p[0];
        for i in 0..MODELS {
            resid -= 2.0 * g[i] * self.da[i];
            for j in 0..MODELS {
                resid += g[i] * g[j] * self.dd[i][j];
            }
        }
        (g, (resid.max(0.0) / m[0][0]).sqrt())
    }
}

/// The fits of one predictor. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    pending: [VecDeque<Pending>; H],
    fits: [[Fit; H]; REGIMES],
    last: Option<(u64, f64, f64)>,
    decayed_at_us: Option<u64>,
}

/// The regime of a model speed, px/s.
pub fn regime(speed_px_s: f64) -> usize {
    REGIME_SPEEDS_PX_S
        .iter()
        .position(|&s| speed_px_s < s)
        .unwrap_or(REGIMES - 1)
}

impl Calibration {
    /// Scores the checks that fall due by the sample `(t_us, x, y)`, interpolating the
    /// position between the previous sample and this one.
    pub fn observe(&mut self, t_us: u64, x: f64, y: f64) {
        if let Some((t0, x0, y0)) = self.last {
            let gap_ok = t_us.saturating_sub(t0) <= MAX_GAP_US;
            let decay = match self.decayed_at_us {
                Some(d) => (-(t_us.saturating_sub(d) as f64) / (CALIBRATION_MS * 1e3)).exp(),
                None => 1.0,
            };
            self.decayed_at_us = Some(t_us);
            for fit in self.fits.iter_mut().flatten() {
                fit.decay(decay);
            }
            for (k, queue) in self.pending.iter_mut().enumerate() {
                while let Some(p) = queue.front().copied() {
                    if p.due_us > t_us {
                        break;
                    }
                    queue.pop_front();
                    if !gap_ok || p.due_us < t0 {
                        continue;
                    }
                    let f = if t_us > t0 {
                        (p.due_us - t0) as f64 / (t_us - t0) as f64
                    } else {
                        1.0
                    };
                    let a = (x0 + (x - x0) * f - p.base.0, y0 + (y - y0) * f - p.base.1);
                    self.fits[p.regime][k].add(&p.disp, a);
                }
            }
        }
        self.last = Some((t_us, x, y));
    }

    /// Records what the models predict from the sample at `t_us`, in speed regime `regime`
    /// ([`regime`]): the sample's position `base` and, for each of [`CHECK_HORIZONS_MS`], the
    /// displacement each model would add.
    pub fn schedule(
        &mut self,
        t_us: u64,
        regime: usize,
        base: (f64, f64),
        disps: [Displacements; H],
    ) {
        let regime = regime.min(REGIMES - 1);
        for ((queue, h), disp) in self.pending.iter_mut().zip(CHECK_HORIZONS_MS).zip(disps) {
            if queue.len() >= MAX_PENDING {
                queue.pop_front();
            }
            queue.push_back(Pending {
                due_us: t_us + (h * 1e3) as u64,
                regime,
                base,
                disp,
            });
        }
    }

    /// The weight of each model's displacement `horizon_ms` ahead in `regime`, each in
    /// `-MAX_GAIN..=MAX_GAIN`.
    pub fn weights(&self, regime: usize, horizon_ms: f64) -> [f64; MODELS] {
        let fits = &self.fits[regime.min(REGIMES - 1)];
        self.interpolate(horizon_ms, |k| fits[k].solve().0)
    }

    /// The expected error of the combined prediction `horizon_ms` ahead in `regime`, as a
    /// fraction of the first model's displacement: the fit's residual (with the prior).
    /// Multiply by that displacement's length for pixels.
    pub fn relative_error(&self, regime: usize, horizon_ms: f64) -> f64 {
        let fits = &self.fits[regime.min(REGIMES - 1)];
        self.interpolate(horizon_ms, |k| [fits[k].solve().1; MODELS])[0]
    }

    /// Drops the checks in flight (the motion restarted: a jump, a gap, a press), keeping
    /// what was learned.
    pub fn restart(&mut self) {
        for q in &mut self.pending {
            q.clear();
        }
        self.last = None;
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// `value` of the fits around `horizon_ms` (by index into [`CHECK_HORIZONS_MS`]),
    /// linearly interpolated, held beyond the ends.
    fn interpolate(
        &self,
        horizon_ms: f64,
        value: impl Fn(usize) -> [f64; MODELS],
    ) -> [f64; MODELS] {
        let hs = CHECK_HORIZONS_MS;
        let last = hs.len() - 1;
        if horizon_ms <= hs[0] {
            return value(0);
        }
        for i in 0..last {
            if horizon_ms <= hs[i + 1] {
                let f = (horizon_ms - hs[i]) / (hs[i + 1] - hs[i]);
                let (a, b) = (value(i), value(i + 1));
                return std::array::from_fn(|m| a[m] * (1.0 - f) + b[m] * f);
            }
        }
        value(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds a pointer at `x(t)` sampled at 1 kHz for `ms` in regime 1, with a Kalman model
    /// that predicts the displacement `model(t, h)` and a line that predicts `line(t, h)`.
    fn run(
        c: &mut Calibration,
        ms: u64,
        x: impl Fn(f64) -> f64,
        model: impl Fn(f64, f64) -> f64,
        line: impl Fn(f64, f64) -> f64,
    ) {
        for i in 0..ms {
            let t = i as f64 * 1e-3;
            c.observe(i * 1000, x(t), 0.0);
            let disps =
                CHECK_HORIZONS_MS.map(|h| [(model(t, h * 1e-3), 0.0), (line(t, h * 1e-3), 0.0)]);
            c.schedule(i * 1000, 1, (x(t), 0.0), disps);
        }
    }

    #[test]
    fn a_right_model_keeps_its_weight_and_a_wrong_one_loses_it() {
        let fresh = Calibration::default();
        assert_eq!(fresh.weights(1, 50.0), MODEL_PRIOR);
        let mut right = Calibration::default();
        run(
            &mut right,
            3000,
            |t| 500.0 * t,
            |_, h| 500.0 * h,
            |_, _| 0.0,
        );
        for h in [16.0, 50.0, 100.0] {
            let w = right.weights(1, h);
            assert!((w[0] - 1.0).abs() < 1e-6, "{w:?}");
            assert!(
                right.relative_error(1, h) < 0.3,
                "{}",
                right.relative_error(1, h)
            );
        }
        // A filter that predicts motion twice as fast as the hand's: its weight goes to 1/2.
        let mut eager = Calibration::default();
        run(
            &mut eager,
            6000,
            |t| 500.0 * t,
            |_, h| 1000.0 * h,
            |_, _| 0.0,
        );
        let w = eager.weights(1, 50.0);
        assert!((w[0] - 0.5).abs() < 0.05, "{w:?}");
        // A filter that predicts motion where there is none: its weight falls towards 0.
        let mut wrong = Calibration::default();
        run(
            &mut wrong,
            6000,
            |_| 100.0,
            |t, h| 800.0 * h * (t * 40.0).sin(),
            |_, _| 0.0,
        );
        assert!(
            wrong.weights(1, 50.0)[0].abs() < 0.1,
            "{:?}",
            wrong.weights(1, 50.0)
        );
        // Confidence: a fresh fit expects the prior's error; a filter whose every prediction
        // came true expects none; one that was half wrong expects about half its displacement
        // before learning to scale it (and none after).
        assert!((fresh.relative_error(1, 50.0) - PRIOR_ERROR).abs() < 1e-9);
        assert!(eager.relative_error(1, 50.0) < 0.05);
        // A filter that sees no motion and a line that is right: the line takes over.
        let mut switch = Calibration::default();
        run(
            &mut switch,
            6000,
            |t| 800.0 * t,
            |_, _| 0.0,
            |_, h| 800.0 * h,
        );
        let w = switch.weights(1, 33.0);
        assert!(w[1] > 0.9 && w[1] <= 1.0, "{w:?}");
        // Other regimes learned nothing; interpolation between horizons, held beyond them.
        assert_eq!(eager.weights(0, 50.0), MODEL_PRIOR);
        let g = |h| eager.weights(1, h)[0];
        assert!((g(200.0) - g(100.0)).abs() < 1e-12 && (g(1.0) - g(16.0)).abs() < 1e-12);
        assert!((g(75.0) - (g(50.0) + g(100.0)) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn regimes_follow_speed() {
        assert_eq!(regime(0.0), 0);
        assert_eq!(regime(REGIME_SPEEDS_PX_S[0]), 1);
        assert_eq!(regime(1e9), REGIMES - 1);
    }

    #[test]
    fn restart_keeps_the_fit_and_clear_forgets_it() {
        let mut c = Calibration::default();
        run(
            &mut c,
            6000,
            |_| 100.0,
            |t, h| 800.0 * h * (t * 40.0).sin(),
            |_, _| 0.0,
        );
        let w = c.weights(1, 50.0);
        c.restart();
        assert_eq!(c.weights(1, 50.0), w);
        c.clear();
        assert_eq!(c.weights(1, 50.0), MODEL_PRIOR);
    }
}
