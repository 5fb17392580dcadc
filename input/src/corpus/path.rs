//! [`Path`]: a true motion sampled finely, before any device reports it.

use crate::trace::{Sample, Stop, Trace, TraceMeta};

/// What the hand (or thumb) really did: positions at a fine, fixed step, the ends of its moves
/// and the intervals a button was held. Devices ([`super::Device`]) sample it; predictions are
/// scored against it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Path {
    /// Time between consecutive points, microseconds.
    pub step_us: u64,
    /// Positions at `0, step_us, 2·step_us, …`, pixels.
    pub points: Vec<(f64, f64)>,
    /// Ends of moves, where overshoot is measured.
    pub stops: Vec<Stop>,
    /// Intervals `[down, up)` during which the primary button is held, microseconds.
    pub presses: Vec<(u64, u64)>,
}

impl Path {
    /// The time of the last point, microseconds.
    pub fn duration_us(&self) -> u64 {
        self.points.len().saturating_sub(1) as u64 * self.step_us
    }

    /// The position at `t_us`, linearly interpolated; clamped to the ends.
    pub fn at(&self, t_us: u64) -> (f64, f64) {
        let Some(&last) = self.points.last() else {
            return (0.0, 0.0);
        };
        let step = self.step_us.max(1);
        let i = (t_us / step) as usize;
        if i + 1 >= self.points.len() {
            return last;
        }
        let f = (t_us % step) as f64 / step as f64;
        let (a, b) = (self.points[i], self.points[i + 1]);
        (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f)
    }

    /// The button mask at `t_us` (bit 0 while a press holds).
    pub fn buttons_at(&self, t_us: u64) -> u32 {
        u32::from(self.presses.iter().any(|&(d, u)| (d..u).contains(&t_us)))
    }

    /// The path as a [`Trace`] with exact timestamps and positions: the truth predictions are
    /// scored against.
    pub fn to_trace(&self, source: &str) -> Trace {
        let samples = self
            .points
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                let t_us = i as u64 * self.step_us;
                Sample {
                    t_us,
                    x,
                    y,
                    buttons: self.buttons_at(t_us),
                }
            })
            .collect();
        Trace {
            meta: TraceMeta {
                rate_hz: (1_000_000 / self.step_us.max(1)) as u32,
                source: source.to_string(),
            },
            samples,
            stops: self.stops.clone(),
        }
    }
}

/// How a segment's position fraction runs from 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Profile {
    /// Minimum jerk (a bell-shaped speed).
    MinJerk,
    /// Minimum jerk on warped time `τ^p` (`p > 1`): it starts gently and brakes late and hard,
    /// as a flick does.
    LateBrake(f64),
    /// Constant speed with smooth ramps over the first and last `ramp` of the time (a drag).
    Cruise(f64),
}

impl Profile {
    /// The position fraction at `tau` in `[0, 1]`.
    pub(crate) fn fraction(self, tau: f64) -> f64 {
        let t = tau.clamp(0.0, 1.0);
        match self {
            Profile::MinJerk => super::min_jerk(t),
            Profile::LateBrake(p) => super::min_jerk(t.powf(p)),
            Profile::Cruise(ramp) => {
                // Trapezoidal speed: accelerate over `ramp`, cruise, brake over `ramp`.
                let r = ramp.clamp(1e-3, 0.5);
                let peak = 1.0 / (1.0 - r); // area under the trapezoid is 1
                if t < r {
                    0.5 * peak * t * t / r
                } else if t <= 1.0 - r {
                    0.5 * peak * r + peak * (t - r)
                } else {
                    let u = 1.0 - t;
                    1.0 - 0.5 * peak * u * u / r
                }
            }
        }
    }
}

/// One straight move of a [`PathBuilder`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    pub(crate) t0: f64,
    pub(crate) t1: f64,
    pub(crate) from: (f64, f64),
    pub(crate) to: (f64, f64),
    pub(crate) profile: Profile,
}

/// Renders straight moves separated by holds into a [`Path`]: between moves the position holds
/// at the last move's end.
pub(crate) fn render_segments(
    segments: &[Segment],
    start: (f64, f64),
    duration_s: f64,
    step_us: u64,
    record_stops: bool,
) -> Path {
    let n = (duration_s * 1e6 / step_us as f64).floor() as usize + 1;
    let mut points = Vec::with_capacity(n);
    let mut k = 0;
    let mut pos = start;
    for i in 0..n {
        let t = (i as u64 * step_us) as f64 * 1e-6;
        while k < segments.len() && segments[k].t1 <= t {
            pos = segments[k].to;
            k += 1;
        }
        let p = match segments.get(k) {
            Some(s) if s.t0 <= t => {
                let f = s.profile.fraction((t - s.t0) / (s.t1 - s.t0));
                (
                    s.from.0 + (s.to.0 - s.from.0) * f,
                    s.from.1 + (s.to.1 - s.from.1) * f,
                )
            }
            _ => pos,
        };
        points.push(p);
    }
    let stops = if record_stops {
        segments
            .iter()
            .filter(|s| s.t1 <= duration_s)
            .filter_map(|s| {
                let (dx, dy) = (s.to.0 - s.from.0, s.to.1 - s.from.1);
                let len = dx.hypot(dy);
                (len >= crate::trace::MIN_MOVE_PX).then(|| Stop {
                    t_us: (s.t1 * 1e6).round() as u64,
                    x: s.to.0,
                    y: s.to.1,
                    dir_x: dx / len,
                    dir_y: dy / len,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Path {
        step_us,
        points,
        stops,
        presses: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_run_from_zero_to_one_monotonically() {
        for p in [
            Profile::MinJerk,
            Profile::LateBrake(1.6),
            Profile::Cruise(0.2),
        ] {
            assert!(p.fraction(0.0).abs() < 1e-12, "{p:?}");
            assert!((p.fraction(1.0) - 1.0).abs() < 1e-12, "{p:?}");
            let mut last = 0.0;
            for i in 1..=100 {
                let f = p.fraction(f64::from(i) / 100.0);
                assert!(f >= last - 1e-12, "{p:?} at {i}");
                last = f;
            }
        }
        // A late brake is behind min-jerk halfway and still fast near the end.
        assert!(Profile::LateBrake(1.6).fraction(0.5) < 0.3);
        let cruise = Profile::Cruise(0.2);
        assert!((cruise.fraction(0.6) - cruise.fraction(0.4) - 0.25).abs() < 1e-9);
    }

    #[test]
    fn segments_hold_between_moves_and_record_stops() {
        let seg = Segment {
            t0: 0.1,
            t1: 0.3,
            from: (0.0, 0.0),
            to: (100.0, 0.0),
            profile: Profile::MinJerk,
        };
        let path = render_segments(&[seg], (0.0, 0.0), 0.5, 250, true);
        assert_eq!(path.points.len(), 2001);
        assert_eq!(path.at(50_000), (0.0, 0.0));
        assert!((path.at(200_000).0 - 50.0).abs() < 1e-9);
        assert_eq!(path.at(400_000), (100.0, 0.0));
        assert_eq!(path.at(9_000_000), (100.0, 0.0), "clamped past the end");
        assert_eq!(path.stops.len(), 1);
        assert_eq!(path.stops[0].t_us, 300_000);
        let truth = path.to_trace("test");
        assert_eq!(truth.samples.len(), 2001);
        assert_eq!(truth.position_at(200_125), Some(path.at(200_125)));
    }
}
