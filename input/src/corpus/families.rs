//! Motion families: what players do with a pointer or a stick, each drawn as a true [`Path`]
//! and reported through the [`Device`]s that produce it in practice.

use std::f64::consts::{PI, TAU};

use super::path::{Profile, Segment, render_segments};
use super::{Device, MotionConfig, Path, SplitMix64, plan};
use crate::trace::{Stop, Trace};

/// Length of each family trace, milliseconds.
pub const FAMILY_DURATION_MS: u64 = 10_000;
/// Traces per family in [`family_corpus`].
pub const FAMILY_TRACES: u64 = 6;
/// Step of the true paths, microseconds (4 kHz).
const PATH_STEP_US: u64 = 250;
/// The screen the pointer families move on, pixels.
const SCREEN: (f64, f64) = (1920.0, 1080.0);
/// Seed of the first family trace.
const FAMILY_SEED: u64 = 0x4641_4D49_4C59_0001;

/// A kind of motion. See [`Family::describe`] for each one's model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Minimum-jerk aimed moves with pauses and clicks (the original corpus' model).
    Aimed,
    /// Flicks across much of the screen in 60–180 ms that brake late and stop hard, some
    /// overshooting and correcting, then a hold.
    Flick,
    /// Jittery tracking: the velocity is a random walk (Ornstein–Uhlenbeck).
    RandomWalk,
    /// Drags with the button held: slower moves, some at constant speed.
    Drag,
    /// A resting hand: tremor and small nudges.
    Idle,
    /// Circles and strafing arcs.
    Circle,
    /// An analog stick (deflection scaled to ±1000 px): pushes, holds, turns, releases.
    Stick,
}

impl Family {
    /// Every family, in report order.
    pub const ALL: [Family; 7] = [
        Family::Aimed,
        Family::Flick,
        Family::RandomWalk,
        Family::Drag,
        Family::Idle,
        Family::Circle,
        Family::Stick,
    ];

    /// The name in reports (`aimed`, `flick`, `random_walk`, `drag`, `idle`, `circle`,
    /// `stick`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Aimed => "aimed",
            Family::Flick => "flick",
            Family::RandomWalk => "random_walk",
            Family::Drag => "drag",
            Family::Idle => "idle",
            Family::Circle => "circle",
            Family::Stick => "stick",
        }
    }

    /// The family named `name`.
    pub fn named(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the family is held out of tuning: the predictor's settings were chosen on the
    /// others (aimed, flick, random walk), and these say whether they generalise.
    pub fn is_validation(self) -> bool {
        !matches!(self, Family::Aimed | Family::Flick | Family::RandomWalk)
    }

    /// One line on the model.
    pub fn describe(self) -> &'static str {
        match self {
            Family::Aimed => "minimum-jerk aimed moves, 20-1200 px, Fitts durations, clicks",
            Family::Flick => {
                "300-1500 px in 60-180 ms, braking late, half overshoot 3-10 % and correct"
            }
            Family::RandomWalk => "Ornstein-Uhlenbeck velocity, 200-1200 px/s, 0.1-0.4 s",
            Family::Drag => "button held; min-jerk or constant-speed moves, 1.5x slower",
            Family::Idle => "tremor 0.3-1.5 px and 2-8 px nudges every 0.5-2 s",
            Family::Circle => "circles r 60-400 px at 0.6-2.5 s a turn, min-jerk arcs",
            Family::Stick => "push to 30-100 % in 40-120 ms, hold, turn, spring back",
        }
    }

    /// The devices this family is reported through (a trace uses one, in turn).
    pub fn devices(self) -> Vec<Device> {
        let names: &[&str] = match self {
            Family::Stick => &["gamepad-60hz", "gamepad-250hz"],
            _ => &[
                "mouse-125hz",
                "mouse-1000hz",
                "browser-60hz",
                "windows-timer-64hz",
                "browser-144hz",
                "mouse-8000hz",
                "browser-240hz",
            ],
        };
        names
            .iter()
            .map(|n| Device::named(n).expect("a preset"))
            .collect()
    }

    /// The true motion for `seed`, `duration_ms` long.
    pub fn path(self, seed: u64, duration_ms: u64) -> Path {
        let mut rng = SplitMix64::new(seed);
        let d = duration_ms as f64 * 1e-3;
        let mut path = match self {
            Family::Aimed => aimed(&mut rng, d),
            Family::Flick => flick(&mut rng, d),
            Family::RandomWalk => random_walk(&mut rng, d),
            Family::Drag => drag(&mut rng, d),
            Family::Idle => idle(&mut rng, d),
            Family::Circle => circle(&mut rng, d),
            Family::Stick => stick(&mut rng, d),
        };
        let (lo, hi) = match self {
            Family::Stick => (0.0, 0.0),
            Family::Idle => (0.3, 1.5),
            _ => (0.3, 1.0),
        };
        add_tremor(&mut path, &mut rng, lo, hi);
        path
    }
}

/// One trace of [`family_corpus`]: a family's true motion and how a device reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyTrace {
    /// The family.
    pub family: Family,
    /// The device preset's name.
    pub device: &'static str,
    /// What the client saw.
    pub observed: Trace,
    /// For each observed sample, the true time its position was taken, microseconds.
    pub true_t_us: Vec<u64>,
    /// The true motion (exact, at 4 kHz), with its stops.
    pub truth: Trace,
}

impl FamilyTrace {
    /// Draws `family`'s trace for `seed` through `device`.
    pub fn new(family: Family, device: Device, seed: u64, duration_ms: u64) -> Self {
        let path = family.path(seed, duration_ms);
        let observed = device.observe(&path, seed);
        let source = format!(
            "stratus corpus: {} via {}, seed {seed:#x}",
            family.name(),
            device.name
        );
        let mut trace = observed.trace;
        trace.meta.source = source.clone();
        FamilyTrace {
            family,
            device: device.name,
            observed: trace,
            true_t_us: observed.true_t_us,
            truth: path.to_trace(&source),
        }
    }
}

/// The fixed family corpus: [`FAMILY_TRACES`] traces of [`FAMILY_DURATION_MS`] per family in
/// [`Family::ALL`] order, each through the family's devices in turn.
pub fn family_corpus() -> Vec<FamilyTrace> {
    let mut out = Vec::new();
    for (f, family) in Family::ALL.into_iter().enumerate() {
        let devices = family.devices();
        for k in 0..FAMILY_TRACES {
            let device = devices[k as usize % devices.len()];
            let seed = FAMILY_SEED + 1000 * f as u64 + k;
            out.push(FamilyTrace::new(family, device, seed, FAMILY_DURATION_MS));
        }
    }
    out
}

/// Two sinusoids per axis at 8–12 Hz with a total amplitude uniform in `lo..hi` pixels.
fn add_tremor(path: &mut Path, rng: &mut SplitMix64, lo: f64, hi: f64) {
    if hi <= 0.0 {
        return;
    }
    let amp = rng.range(lo, hi);
    let mut axis = || {
        let share = rng.range(0.3, 0.7);
        [share, 1.0 - share].map(|a| (a * amp, rng.range(8.0, 12.0) * TAU, rng.range(0.0, TAU)))
    };
    let (ax, ay) = (axis(), axis());
    let step = path.step_us as f64 * 1e-6;
    for (i, p) in path.points.iter_mut().enumerate() {
        let t = i as f64 * step;
        let wobble = |parts: &[(f64, f64, f64); 2]| -> f64 {
            parts.iter().map(|(a, w, ph)| a * (w * t + ph).sin()).sum()
        };
        p.0 += wobble(&ax);
        p.1 += wobble(&ay);
    }
}

/// A target `dist` away from `from` in a random direction that stays on screen (with a
/// margin), or the screen's centre when none does after a few tries.
fn target_from(rng: &mut SplitMix64, from: (f64, f64), dist: f64, margin: f64) -> (f64, f64) {
    for _ in 0..32 {
        let a = rng.range(0.0, TAU);
        let to = (from.0 + dist * a.cos(), from.1 + dist * a.sin());
        if (margin..SCREEN.0 - margin).contains(&to.0)
            && (margin..SCREEN.1 - margin).contains(&to.1)
        {
            return to;
        }
    }
    (SCREEN.0 / 2.0, SCREEN.1 / 2.0)
}

fn press(path: &mut Path, down_s: f64, up_s: f64) {
    path.presses
        .push(((down_s * 1e6) as u64, (up_s.max(down_s) * 1e6) as u64));
}

fn aimed(rng: &mut SplitMix64, d: f64) -> Path {
    let config = MotionConfig::new(1000, (d * 1e3) as u64);
    let (moves, clicks) = plan(&config, rng);
    let segments: Vec<Segment> = moves
        .iter()
        .map(|m| Segment {
            t0: m.t0,
            t1: m.t1,
            from: m.from,
            to: m.to,
            profile: Profile::MinJerk,
        })
        .collect();
    let start = (SCREEN.0 / 2.0, SCREEN.1 / 2.0);
    let mut path = render_segments(&segments, start, d, PATH_STEP_US, true);
    for (down, up) in clicks {
        press(&mut path, down, up);
    }
    path
}

fn flick(rng: &mut SplitMix64, d: f64) -> Path {
    let start = (SCREEN.0 / 2.0, SCREEN.1 / 2.0);
    let (mut segments, mut shots) = (Vec::new(), Vec::new());
    let (mut pos, mut t) = (start, rng.range(0.1, 0.3));
    while t < d {
        let dist = rng.log_range(300.0, 1500.0).min(SCREEN.0 * 0.75);
        let to = target_from(rng, pos, dist, 40.0);
        let ms = rng.range(60.0, 180.0);
        let brake = Profile::LateBrake(rng.range(1.0, 1.8));
        let t1 = t + ms * 1e-3;
        if rng.next_f64() < 0.5 {
            // Past the target by 3-10 %, then a corrective move back.
            let over = rng.range(0.03, 0.10);
            let past = (to.0 + (to.0 - pos.0) * over, to.1 + (to.1 - pos.1) * over);
            segments.push(Segment {
                t0: t,
                t1,
                from: pos,
                to: past,
                profile: brake,
            });
            let t2 = t1 + rng.range(0.02, 0.05);
            let t3 = t2 + rng.range(0.06, 0.12);
            segments.push(Segment {
                t0: t2,
                t1: t3,
                from: past,
                to,
                profile: Profile::MinJerk,
            });
            t = t3;
        } else {
            segments.push(Segment {
                t0: t,
                t1,
                from: pos,
                to,
                profile: brake,
            });
            t = t1;
        }
        pos = to;
        let hold = rng.range(0.15, 0.7);
        if rng.next_f64() < 0.6 {
            let down = t + rng.range(0.02, 0.08);
            shots.push((down, (down + rng.range(0.05, 0.1)).min(t + hold)));
        }
        t += hold;
    }
    let mut path = render_segments(&segments, start, d, PATH_STEP_US, true);
    for (down, up) in shots {
        press(&mut path, down, up);
    }
    path
}

fn random_walk(rng: &mut SplitMix64, d: f64) -> Path {
    let sigma = rng.range(200.0, 1200.0); // stationary speed spread per axis, px/s
    let tau = rng.range(0.1, 0.4); // velocity correlation time, s
    let dt = PATH_STEP_US as f64 * 1e-6;
    let n = (d / dt).floor() as usize + 1;
    let kick = sigma * (2.0 * dt / tau).sqrt();
    let (mut p, mut v) = ((SCREEN.0 / 2.0, SCREEN.1 / 2.0), (0.0, 0.0));
    let mut points = Vec::with_capacity(n);
    for _ in 0..n {
        points.push(p);
        v.0 += -v.0 / tau * dt + kick * rng.normal();
        v.1 += -v.1 / tau * dt + kick * rng.normal();
        p = (p.0 + v.0 * dt, p.1 + v.1 * dt);
        // Reflect at the screen's edges, as a tracked target bounces.
        if !(0.0..SCREEN.0).contains(&p.0) {
            v.0 = -v.0;
            p.0 = p.0.clamp(0.0, SCREEN.0);
        }
        if !(0.0..SCREEN.1).contains(&p.1) {
            v.1 = -v.1;
            p.1 = p.1.clamp(0.0, SCREEN.1);
        }
    }
    Path {
        step_us: PATH_STEP_US,
        points,
        stops: Vec::new(),
        presses: Vec::new(),
    }
}

fn drag(rng: &mut SplitMix64, d: f64) -> Path {
    let start = (SCREEN.0 / 2.0, SCREEN.1 / 2.0);
    let (mut segments, mut holds) = (Vec::new(), Vec::new());
    let (mut pos, mut t) = (start, rng.range(0.1, 0.3));
    while t < d {
        let dist = rng.log_range(60.0, 900.0);
        let to = target_from(rng, pos, dist, 20.0);
        let fitts = 150.0 + 100.0 * (1.0 + dist / 20.0).log2();
        let ms = (1.5 * fitts * rng.range(0.8, 1.2)).clamp(250.0, 1500.0);
        let profile = if rng.next_f64() < 0.5 {
            Profile::MinJerk
        } else {
            Profile::Cruise(rng.range(0.1, 0.25))
        };
        let down = t;
        let t0 = t + rng.range(0.05, 0.12);
        let t1 = t0 + ms * 1e-3;
        segments.push(Segment {
            t0,
            t1,
            from: pos,
            to,
            profile,
        });
        let up = t1 + rng.range(0.04, 0.1);
        holds.push((down, up));
        pos = to;
        t = up + rng.range(0.2, 0.8);
    }
    let mut path = render_segments(&segments, start, d, PATH_STEP_US, true);
    for (down, up) in holds {
        press(&mut path, down, up);
    }
    path
}

fn idle(rng: &mut SplitMix64, d: f64) -> Path {
    let start = (rng.range(200.0, 1700.0), rng.range(200.0, 900.0));
    let mut segments = Vec::new();
    let (mut pos, mut t) = (start, rng.range(0.2, 1.0));
    while t < d {
        let dist = rng.range(2.0, 8.0);
        let to = target_from(rng, pos, dist, 0.0);
        let t1 = t + rng.range(0.08, 0.2);
        segments.push(Segment {
            t0: t,
            t1,
            from: pos,
            to,
            profile: Profile::MinJerk,
        });
        pos = to;
        t = t1 + rng.range(0.5, 2.0);
    }
    render_segments(&segments, start, d, PATH_STEP_US, false)
}

fn circle(rng: &mut SplitMix64, d: f64) -> Path {
    let dt = PATH_STEP_US as f64 * 1e-6;
    let n = (d / dt).floor() as usize + 1;
    let mut points = Vec::with_capacity(n);
    let mut stops = Vec::new();
    let mut p = (SCREEN.0 / 2.0, SCREEN.1 / 2.0);
    let mut t = 0.0;
    // Each piece: (duration, position at local time) built from where the last one ended.
    while points.len() < n {
        let piece: Box<dyn Fn(f64) -> (f64, f64)>;
        let len;
        let start = p;
        match rng.next_f64() {
            x if x < 0.45 => {
                // A full-speed circle, entered where the pointer is.
                let r = rng.range(60.0, 400.0);
                let w = TAU / rng.range(0.6, 2.5) * if rng.next_f64() < 0.5 { 1.0 } else { -1.0 };
                let a0 = rng.range(0.0, TAU);
                let c = (start.0 - r * a0.cos(), start.1 - r * a0.sin());
                len = rng.range(1.0, 3.0);
                piece =
                    Box::new(move |s| (c.0 + r * (a0 + w * s).cos(), c.1 + r * (a0 + w * s).sin()));
            }
            x if x < 0.85 => {
                // A strafing arc: a min-jerk sweep along a wide circle, ending at rest.
                let r = rng.range(200.0, 900.0);
                let sweep = rng.range(PI / 3.0, PI) * if rng.next_f64() < 0.5 { 1.0 } else { -1.0 };
                let a0 = rng.range(0.0, TAU);
                let c = (start.0 - r * a0.cos(), start.1 - r * a0.sin());
                len = rng.range(0.4, 1.2);
                let total = len;
                piece = Box::new(move |s| {
                    let a = a0 + sweep * super::min_jerk(s / total);
                    (c.0 + r * a.cos(), c.1 + r * a.sin())
                });
                let a1 = a0 + sweep;
                let end = (c.0 + r * a1.cos(), c.1 + r * a1.sin());
                // The arc ends moving along its tangent.
                let sign = sweep.signum();
                let (tx, ty) = (-a1.sin() * sign, a1.cos() * sign);
                stops.push(Stop {
                    t_us: ((t + len) * 1e6).round() as u64,
                    x: end.0,
                    y: end.1,
                    dir_x: tx,
                    dir_y: ty,
                });
            }
            _ => {
                len = rng.range(0.1, 0.3);
                piece = Box::new(move |_| start);
            }
        }
        let mut s = 0.0;
        while s < len && points.len() < n {
            p = piece(s);
            points.push(p);
            s += dt;
            t += dt;
        }
        p = piece(len.min(s));
    }
    stops.retain(|s| s.t_us <= (d * 1e6) as u64);
    Path {
        step_us: PATH_STEP_US,
        points,
        stops,
        presses: Vec::new(),
    }
}

fn stick(rng: &mut SplitMix64, d: f64) -> Path {
    let mut segments = Vec::new();
    let (mut pos, mut t) = ((0.0, 0.0), rng.range(0.1, 0.3));
    let deflect = |a: f64, r: f64| (1000.0 * r * a.cos(), 1000.0 * r * a.sin());
    while t < d {
        // Push out from the centre.
        let mut a = rng.range(0.0, TAU);
        let to = deflect(a, rng.range(0.3, 1.0));
        let t1 = t + rng.range(0.04, 0.12);
        segments.push(Segment {
            t0: t,
            t1,
            from: pos,
            to,
            profile: Profile::MinJerk,
        });
        pos = to;
        t = t1 + rng.range(0.15, 0.9);
        // Sometimes turn while held, once or twice.
        while rng.next_f64() < 0.4 && t < d {
            a +=
                rng.range(PI / 6.0, 2.0 * PI / 3.0) * if rng.next_f64() < 0.5 { 1.0 } else { -1.0 };
            let to = deflect(a, rng.range(0.5, 1.0));
            let t1 = t + rng.range(0.1, 0.3);
            segments.push(Segment {
                t0: t,
                t1,
                from: pos,
                to,
                profile: Profile::MinJerk,
            });
            pos = to;
            t = t1 + rng.range(0.15, 0.6);
        }
        // Release: the spring snaps the stick back in a few tens of milliseconds.
        let t1 = t + rng.range(0.02, 0.05);
        segments.push(Segment {
            t0: t,
            t1,
            from: pos,
            to: (0.0, 0.0),
            profile: Profile::LateBrake(0.6),
        });
        pos = (0.0, 0.0);
        t = t1 + rng.range(0.2, 1.0);
    }
    render_segments(&segments, (0.0, 0.0), d, PATH_STEP_US, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_draws_what_it_says() {
        for family in Family::ALL {
            assert_eq!(Family::named(family.name()), Some(family));
            let path = family.path(42, 4_000);
            assert_eq!(path, family.path(42, 4_000), "{family:?} is deterministic");
            assert_eq!(path.duration_us(), 4_000_000, "{family:?}");
            let speeds: Vec<f64> = path
                .points
                .windows(8)
                .map(|w| (w[7].0 - w[0].0).hypot(w[7].1 - w[0].1) / (7.0 * 250e-6))
                .collect();
            let top = speeds.iter().copied().fold(0.0, f64::max);
            let (lo, hi) = match family {
                Family::Idle => (0.0, 400.0),
                Family::Flick => (5_000.0, 80_000.0),
                Family::Stick => (3_000.0, 200_000.0),
                Family::Drag => (200.0, 6_000.0),
                _ => (300.0, 30_000.0),
            };
            assert!(
                (lo..hi).contains(&top),
                "{family:?}: top speed {top:.0} px/s"
            );
            if matches!(family, Family::Drag | Family::Aimed | Family::Flick) {
                assert!(!path.presses.is_empty(), "{family:?} presses a button");
            }
            if matches!(family, Family::Aimed | Family::Flick | Family::Stick) {
                assert!(
                    path.stops.len() >= 3,
                    "{family:?}: {} stops",
                    path.stops.len()
                );
            }
        }
    }

    #[test]
    fn the_corpus_crosses_families_with_devices() {
        let corpus = family_corpus();
        assert_eq!(corpus.len(), Family::ALL.len() * FAMILY_TRACES as usize);
        for t in &corpus {
            assert_eq!(t.observed.samples.len(), t.true_t_us.len());
            assert!(
                t.observed.samples.len() > 100,
                "{} via {}",
                t.family.name(),
                t.device
            );
            assert!(t.truth.samples.len() > 30_000);
        }
        let devices: std::collections::HashSet<_> = corpus.iter().map(|t| t.device).collect();
        assert!(devices.len() >= 8, "{devices:?}");
        assert!(Family::ALL.iter().any(|f| f.is_validation()));
        assert!(Family::ALL.iter().any(|f| !f.is_validation()));
    }
}
