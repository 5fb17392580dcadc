//! The quality ladder: when the congestion controller's estimate stays below a floor, the
//! stream steps down — first to half the frame rate, then also to half the resolution — and
//! back up when the estimate recovers. Below the floor more bitrate cuts alone would make every
//! frame a smear; fewer, smaller frames stay sharp.
//!
//! [`Ladder`] is Sans-IO: time and the estimate are arguments. [`Rung`]s are applied by the
//! media thread ([`crate::media`]): it keeps one frame in [`Rung::keep_every`] and shrinks kept
//! frames with [`super::scale::downscale_i420`]; the encoder follows the new size with a new
//! sequence. The session core ([`crate::session::control`]) decides when to step.

use std::time::{Duration, Instant};

/// One step of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// The frame is shrunk by this factor in each dimension (1 or 2).
    pub scale: u32,
    /// One frame in this many is kept.
    pub keep_every: u32,
}

/// From full quality down: full, half frame rate, half frame rate at half size.
pub const RUNGS: [Rung; 3] = [
    Rung {
        scale: 1,
        keep_every: 1,
    },
    Rung {
        scale: 1,
        keep_every: 2,
    },
    Rung {
        scale: 2,
        keep_every: 2,
    },
];

/// When to step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LadderConfig {
    /// Below this estimate (kbit/s) for [`LadderConfig::down_after`], full quality steps down.
    /// Each lower rung's floor is half the one above it.
    pub floor_kbps: u32,
    /// How long the estimate must stay under a floor before stepping down.
    pub down_after: Duration,
    /// How long it must stay above the upper rung's floor × [`LadderConfig::up_margin`] before
    /// stepping back up.
    pub up_after: Duration,
    /// Hysteresis factor for stepping up.
    pub up_margin: f64,
}

impl LadderConfig {
    /// Defaults around `floor_kbps`: down after 2 s under it, up after 5 s at 1.5× the floor.
    pub fn new(floor_kbps: u32) -> Self {
        Self {
            floor_kbps,
            down_after: Duration::from_secs(2),
            up_after: Duration::from_secs(5),
            up_margin: 1.5,
        }
    }

    /// The floor of rung `i`: under it (for a while) the stream steps below `i`.
    pub fn floor(&self, i: usize) -> f64 {
        f64::from(self.floor_kbps) / f64::from(1u32 << i.min(16))
    }
}

/// Where the stream is on the ladder, and for how long the estimate has said to move.
#[derive(Debug, Clone)]
pub struct Ladder {
    config: LadderConfig,
    rung: usize,
    below_since: Option<Instant>,
    above_since: Option<Instant>,
}

impl Ladder {
    /// At full quality.
    pub fn new(config: LadderConfig) -> Self {
        Self {
            config,
            rung: 0,
            below_since: None,
            above_since: None,
        }
    }

    /// The current rung's index into [`RUNGS`].
    pub fn rung(&self) -> usize {
        self.rung
    }

    /// Takes the estimate at `now`; returns the new rung when it changes.
    pub fn observe(&mut self, kbps: f64, now: Instant) -> Option<usize> {
        let can_go_down = self.rung + 1 < RUNGS.len();
        if can_go_down && kbps < self.config.floor(self.rung) {
            self.above_since = None;
            let since = *self.below_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.down_after {
                self.rung += 1;
                self.below_since = None;
                return Some(self.rung);
            }
            return None;
        }
        self.below_since = None;
        if self.rung > 0 && kbps >= self.config.floor(self.rung - 1) * self.config.up_margin {
            let since = *self.above_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.up_after {
                self.rung -= 1;
                self.above_since = None;
                return Some(self.rung);
            }
        } else {
            self.above_since = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_sustained_low_estimate_steps_down_one_rung_at_a_time() {
        let mut l = Ladder::new(LadderConfig::new(1000));
        let t0 = Instant::now();
        // A dip shorter than 2 s changes nothing.
        assert_eq!(l.observe(500.0, at(t0, 0)), None);
        assert_eq!(l.observe(500.0, at(t0, 1500)), None);
        assert_eq!(l.observe(2000.0, at(t0, 1600)), None);
        assert_eq!(l.observe(500.0, at(t0, 1700)), None);
        assert_eq!(l.observe(500.0, at(t0, 3600)), None);
        assert_eq!(l.observe(500.0, at(t0, 3700)), Some(1));
        // Rung 1's floor is 500: 450 for 2 s more goes to rung 2, the bottom.
        assert_eq!(l.observe(450.0, at(t0, 3800)), None);
        assert_eq!(l.observe(450.0, at(t0, 5800)), Some(2));
        assert_eq!(l.observe(10.0, at(t0, 20_000)), None);
        assert_eq!(l.rung(), 2);
    }

    #[test]
    fn recovery_steps_back_up_only_after_a_sustained_margin() {
        let mut l = Ladder::new(LadderConfig::new(1000));
        let t0 = Instant::now();
        l.observe(100.0, at(t0, 0));
        l.observe(100.0, at(t0, 2000));
        l.observe(100.0, at(t0, 2100));
        assert_eq!(l.observe(100.0, at(t0, 4100)), Some(2));
        // Up from rung 2 needs ≥ 1.5 × 500 = 750 for 5 s.
        assert_eq!(l.observe(700.0, at(t0, 5000)), None);
        assert_eq!(l.observe(800.0, at(t0, 6000)), None);
        assert_eq!(l.observe(800.0, at(t0, 10_999)), None);
        assert_eq!(l.observe(800.0, at(t0, 11_000)), Some(1));
        // Up from rung 1 needs ≥ 1500; between floors it stays.
        assert_eq!(l.observe(1200.0, at(t0, 30_000)), None);
        assert_eq!(l.observe(1600.0, at(t0, 31_000)), None);
        assert_eq!(l.observe(1600.0, at(t0, 36_000)), Some(0));
    }
}
