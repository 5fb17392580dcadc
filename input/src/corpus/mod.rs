//! Synthetic pointer traces from a model of human aimed movement, for measuring predictors.
//!
//! A hand moving a pointer to a target follows, to a good approximation, the minimum-jerk
//! profile (Flash & Hogan, 1985): from `p0` to `p1` in `T`,
//! `p(τ) = p0 + (p1 − p0)(10τ³ − 15τ⁴ + 6τ⁵)` with `τ = t / T`, a bell-shaped speed that peaks
//! at 1.875 × the mean. [`synthesize`] chains such moves:
//!
//! - distances log-uniform in [`MotionConfig::distance_px`] (20–1200 px: more short moves than
//!   long ones, as in real use), in a random direction that keeps the target on screen;
//! - durations from Fitts' law, `150 ms + 100 ms × log2(1 + D / 20 px)`, ±20 %, clamped to
//!   [`MotionConfig::move_ms`] (150–900 ms);
//! - a pause of [`MotionConfig::pause_ms`] (100–600 ms) after each move, with a click (button 1
//!   held for 60–120 ms) in 40 % of them;
//! - physiological tremor on both axes: two sinusoids per axis at 8–12 Hz with a total
//!   amplitude of 0.3–1 px;
//! - sampling at [`MotionConfig::rate_hz`] with each interval jittered by ±20 % and 1 % of
//!   samples lost (USB polling and event coalescing), positions quantised to whole pixels
//!   (sensor counts), timestamps in whole microseconds.
//!
//! Each move's end is recorded as a [`Stop`], so overshoot is measured where the hand really
//! stopped. Everything derives from a seed through [`SplitMix64`]: the same seed gives the same
//! trace on every machine.
//!
//! [`default_corpus`] is the fixed set the bench and tests use: rates 125, 250, 500 and
//! 1000 Hz × [`DEFAULT_TRACES_PER_RATE`] traces × [`DEFAULT_DURATION_MS`], seeds
//! `DEFAULT_SEED + index`.
//!
//! # Motion families and devices
//!
//! Aimed moves are one kind of motion among many, and the one the predictor was first tuned
//! on. [`family_corpus`] adds what players also do, each a [`Family`]: flicks that end in a
//! hard stop, random-walk tracking, drags, idle hands, circles and strafing arcs, analog
//! sticks. A family's generator draws the true motion as a finely sampled [`Path`]; a
//! [`Device`] then reports it the way real hardware and browsers do (125 Hz to 8 kHz mice,
//! events coalesced to a 60–240 Hz display, timestamps floored to 15.625 ms or 1 ms, dropped
//! and duplicated events, whole pixels), giving an [`Observed`] trace that keeps, for every
//! event, the true time its position was taken. Predictions are scored against the true
//! motion at the true time plus the horizon ([`crate::predict::evaluate_family`]), so a device
//! that reports late or coarsely costs what it costs a player.

mod device;
mod families;
mod path;

pub use device::{DEVICES, Device, Observed};
pub use families::{FAMILY_DURATION_MS, FAMILY_TRACES, Family, FamilyTrace, family_corpus};
pub use path::Path;

use crate::trace::{Sample, Stop, Trace, TraceMeta};

/// Sample rates of the default corpus, Hz.
pub const DEFAULT_RATES_HZ: [u32; 4] = [125, 250, 500, 1000];
/// Traces per rate in the default corpus.
pub const DEFAULT_TRACES_PER_RATE: u64 = 4;
/// Length of each default trace, milliseconds.
pub const DEFAULT_DURATION_MS: u64 = 15_000;
/// Seed of the first default trace; trace `i` uses `DEFAULT_SEED + i`.
pub const DEFAULT_SEED: u64 = 0x5354_5241_5455_5301;

/// SplitMix64 (Steele, Lea & Flood, 2014): a tiny, fast, well-mixed deterministic generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// A standard normal deviate (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.next_f64(); // in (0, 1]: the logarithm stays finite
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Log-uniform in `[lo, hi)` (both positive): as many short values as long ones per octave.
    pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.next_f64()).exp()
    }
}

/// Parameters of the motion model. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// Nominal sample rate, Hz.
    pub rate_hz: u32,
    /// Trace length, milliseconds.
    pub duration_ms: u64,
    /// Screen size in pixels; targets stay inside it.
    pub screen_px: (f64, f64),
    /// Move distances, pixels (log-uniform between the two).
    pub distance_px: (f64, f64),
    /// Move durations are clamped to this range, milliseconds.
    pub move_ms: (f64, f64),
    /// Pause after each move, milliseconds (uniform).
    pub pause_ms: (f64, f64),
    /// Total tremor amplitude per axis, pixels (uniform per trace).
    pub tremor_px: (f64, f64),
    /// Tremor frequencies, Hz.
    pub tremor_hz: (f64, f64),
    /// Each sampling interval is scaled by a factor uniform in `1 ± jitter`.
    pub jitter: f64,
    /// Probability that a sample is lost.
    pub loss: f64,
    /// Positions are rounded to multiples of this, pixels.
    pub quantum_px: f64,
}

impl MotionConfig {
    /// The default model at `rate_hz` for `duration_ms`.
    pub fn new(rate_hz: u32, duration_ms: u64) -> Self {
        Self {
            rate_hz,
            duration_ms,
            screen_px: (1920.0, 1080.0),
            distance_px: (20.0, 1200.0),
            move_ms: (150.0, 900.0),
            pause_ms: (100.0, 600.0),
            tremor_px: (0.3, 1.0),
            tremor_hz: (8.0, 12.0),
            jitter: 0.2,
            loss: 0.01,
            quantum_px: 1.0,
        }
    }
}

/// One planned move.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Move {
    pub(crate) t0: f64,
    pub(crate) t1: f64,
    pub(crate) from: (f64, f64),
    pub(crate) to: (f64, f64),
}

/// The minimum-jerk position fraction at `tau` in `[0, 1]`.
pub fn min_jerk(tau: f64) -> f64 {
    let t = tau.clamp(0.0, 1.0);
    t * t * t * (10.0 - 15.0 * t + 6.0 * t * t)
}

pub(crate) fn plan(config: &MotionConfig, rng: &mut SplitMix64) -> (Vec<Move>, Vec<(f64, f64)>) {
    let end_s = config.duration_ms as f64 * 1e-3;
    let (w, h) = config.screen_px;
    let mut pos = (w / 2.0, h / 2.0);
    let mut t = rng.range(0.1, 0.3);
    let (mut moves, mut clicks) = (Vec::new(), Vec::new());
    let (dmin, dmax) = config.distance_px;
    while t < end_s {
        let mut target = pos;
        let mut dist = dmin;
        // A direction that keeps the target on screen exists for every distance up to the
        // screen's half-diagonal; the last try falls back to the screen centre.
        for attempt in 0..32 {
            dist = (dmin.ln() + (dmax.ln() - dmin.ln()) * rng.next_f64()).exp();
            let angle = rng.range(0.0, std::f64::consts::TAU);
            target = (pos.0 + dist * angle.cos(), pos.1 + dist * angle.sin());
            let inside = (0.0..w).contains(&target.0) && (0.0..h).contains(&target.1);
            if inside {
                break;
            }
            if attempt == 31 {
                target = (w / 2.0, h / 2.0);
                dist = (target.0 - pos.0).hypot(target.1 - pos.1);
            }
        }
        let fitts_ms = 150.0 + 100.0 * (1.0 + dist / 20.0).log2();
        let ms = (fitts_ms * rng.range(0.8, 1.2)).clamp(config.move_ms.0, config.move_ms.1);
        let t1 = t + ms * 1e-3;
        if dist >= 1.0 {
            moves.push(Move {
                t0: t,
                t1,
                from: pos,
                to: target,
            });
        }
        pos = target;
        let pause = rng.range(config.pause_ms.0, config.pause_ms.1) * 1e-3;
        if rng.next_f64() < 0.4 {
            // The click lands 30 ms after the stop and is released before the next move.
            let down = t1 + 0.03;
            let up = (down + rng.range(0.06, 0.12)).min(t1 + pause);
            clicks.push((down, up));
        }
        t = t1 + pause;
    }
    (moves, clicks)
}

/// Synthesises one trace from `config` and `seed`. See the module docs for the model.
pub fn synthesize(config: &MotionConfig, seed: u64) -> Trace {
    let mut rng = SplitMix64::new(seed);
    let (moves, clicks) = plan(config, &mut rng);
    let amp = rng.range(config.tremor_px.0, config.tremor_px.1);
    // Per axis: two sinusoids (amplitude share, frequency, phase).
    let tremor: Vec<[(f64, f64, f64); 2]> = (0..2)
        .map(|_| {
            let share = rng.range(0.3, 0.7);
            let mut part = |a: f64| {
                (
                    a * amp,
                    rng.range(config.tremor_hz.0, config.tremor_hz.1) * std::f64::consts::TAU,
                    rng.range(0.0, std::f64::consts::TAU),
                )
            };
            [part(share), part(1.0 - share)]
        })
        .collect();
    let period_s = 1.0 / f64::from(config.rate_hz.max(1));
    let end_s = config.duration_ms as f64 * 1e-3;
    let q = config.quantum_px.max(1e-9);
    let mut samples = Vec::new();
    let (mut t, mut m) = (0.0_f64, 0usize);
    let start = (config.screen_px.0 / 2.0, config.screen_px.1 / 2.0);
    while t <= end_s {
        while m + 1 < moves.len() && moves[m + 1].t0 <= t {
            m += 1;
        }
        let (mut x, mut y) = match moves.get(m) {
            Some(mv) if mv.t0 <= t => {
                let f = min_jerk((t - mv.t0) / (mv.t1 - mv.t0));
                (
                    mv.from.0 + (mv.to.0 - mv.from.0) * f,
                    mv.from.1 + (mv.to.1 - mv.from.1) * f,
                )
            }
            _ => start,
        };
        for (axis, parts) in tremor.iter().enumerate() {
            let wobble: f64 = parts.iter().map(|(a, w, p)| a * (w * t + p).sin()).sum();
            if axis == 0 {
                x += wobble;
            } else {
                y += wobble;
            }
        }
        if rng.next_f64() >= config.loss {
            let buttons = u32::from(clicks.iter().any(|&(d, u)| (d..u).contains(&t)));
            samples.push(Sample {
                t_us: (t * 1e6).round() as u64,
                x: (x / q).round() * q,
                y: (y / q).round() * q,
                buttons,
            });
        }
        t += period_s * rng.range(1.0 - config.jitter, 1.0 + config.jitter);
    }
    let stops = moves
        .iter()
        .filter(|mv| mv.t1 <= end_s)
        .map(|mv| {
            let (dx, dy) = (mv.to.0 - mv.from.0, mv.to.1 - mv.from.1);
            let len = dx.hypot(dy);
            Stop {
                t_us: (mv.t1 * 1e6).round() as u64,
                x: mv.to.0,
                y: mv.to.1,
                dir_x: dx / len,
                dir_y: dy / len,
            }
        })
        .collect();
    Trace {
        meta: TraceMeta {
            rate_hz: config.rate_hz,
            source: format!("stratus corpus: minimum-jerk moves, seed {seed:#x}"),
        },
        samples,
        stops,
    }
}

/// The fixed default corpus: every rate in [`DEFAULT_RATES_HZ`] ×
/// [`DEFAULT_TRACES_PER_RATE`] traces of [`DEFAULT_DURATION_MS`], rate-major order.
pub fn default_corpus() -> Vec<Trace> {
    let mut seed = DEFAULT_SEED;
    let mut out = Vec::new();
    for rate in DEFAULT_RATES_HZ {
        for _ in 0..DEFAULT_TRACES_PER_RATE {
            out.push(synthesize(
                &MotionConfig::new(rate, DEFAULT_DURATION_MS),
                seed,
            ));
            seed += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference() {
        // First outputs for seed 1234567 from the reference C implementation.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn min_jerk_profile() {
        assert_eq!(min_jerk(0.0), 0.0);
        assert_eq!(min_jerk(1.0), 1.0);
        assert!((min_jerk(0.5) - 0.5).abs() < 1e-12);
        assert_eq!(min_jerk(2.0), 1.0);
    }

    #[test]
    fn traces_follow_the_model() {
        let config = MotionConfig::new(500, 10_000);
        let a = synthesize(&config, 7);
        assert_eq!(a, synthesize(&config, 7), "deterministic");
        assert_ne!(a.samples, synthesize(&config, 8).samples);
        // About 500 Hz with 1 % loss.
        let n = a.samples.len() as f64;
        assert!((4800.0..5050.0).contains(&n), "{n} samples");
        let gaps: Vec<u64> = a
            .samples
            .windows(2)
            .map(|w| w[1].t_us - w[0].t_us)
            .collect();
        assert!(
            gaps.iter().all(|&g| (1500..=5000).contains(&g)),
            "jittered intervals"
        );
        assert!(gaps.iter().any(|&g| g < 1700) && gaps.iter().any(|&g| g > 2300));
        for s in &a.samples {
            assert_eq!(s.x, s.x.round());
            assert!((-2.0..1922.0).contains(&s.x) && (-2.0..1082.0).contains(&s.y));
        }
        assert!(a.stops.len() >= 10, "{} moves in 10 s", a.stops.len());
        for stop in &a.stops {
            assert!((stop.dir_x.hypot(stop.dir_y) - 1.0).abs() < 1e-9);
            // The pointer rests within tremor and quantisation of the stop 20 ms later.
            let (x, y) = a.position_at(stop.t_us + 20_000).expect("inside the trace");
            assert!((x - stop.x).hypot(y - stop.y) < 2.5, "{stop:?} vs {x},{y}");
        }
        assert!(a.samples.iter().any(|s| s.buttons == 1));
    }
}
