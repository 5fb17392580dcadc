//! The clocks frames are stamped with.
//!
//! Frame timestamps are CLOCK_MONOTONIC nanoseconds so that every process on one machine (the
//! capture layer inside a game, the node, a local client) agrees on them. The latency code drawn
//! into frames carries wall-clock milliseconds instead, so that a receiver with no access to our
//! timestamps (a browser page) can still tell when a frame was made.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Unix epoch time now, in whole milliseconds (floor), as the latency code carries it.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The schedule of a source that makes its own frames (the demo, the pattern): one frame every
/// `1/fps` from the start. A source that falls behind skips ahead instead of bursting, and the
/// skipped ticks' frame ids are never used, so the gap shows downstream as dropped frames.
#[derive(Debug, Clone)]
pub struct FrameClock {
    epoch: Instant,
    interval: Duration,
    next_tick: u64,
}

impl FrameClock {
    /// A schedule of `fps` frames a second starting now (`fps` 0 is taken as 1).
    pub fn new(fps: u32) -> Self {
        Self {
            epoch: Instant::now(),
            interval: Duration::from_secs(1) / fps.max(1),
            next_tick: 0,
        }
    }

    /// Sleeps until the next frame is due and returns its id.
    pub fn wait_next(&mut self) -> u64 {
        let due = self.due(self.next_tick);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        self.tick(Instant::now())
    }

    /// The id of the frame to make at `now` (a tick whose time has passed is skipped), and the
    /// schedule moves past it.
    pub fn tick(&mut self, now: Instant) -> u64 {
        let late = (now
            .saturating_duration_since(self.due(self.next_tick))
            .as_nanos()
            / self.interval.as_nanos().max(1)) as u64;
        let id = self.next_tick + late;
        self.next_tick = id + 1;
        id
    }

    fn due(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_nanos((self.interval.as_nanos() as u64).saturating_mul(tick))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_frame_clock_skips_the_ticks_a_slow_source_missed() {
        let mut clock = super::FrameClock::new(100);
        let t0 = clock.epoch;
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        assert_eq!(clock.tick(at(0)), 0);
        assert_eq!(clock.tick(at(10)), 1);
        // 35 ms late for tick 2: ticks 2, 3 and 4 have passed; frame 5 is made.
        assert_eq!(clock.tick(at(55)), 5);
        assert_eq!(clock.tick(at(60)), 6);
    }

    #[test]
    fn monotonic_advances() {
        let a = super::monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::monotonic_ns();
        assert!(b - a >= 2_000_000, "{a} -> {b}");
    }

    #[test]
    fn epoch_fits_48_bits() {
        let ms = super::epoch_ms();
        assert!(ms > 1_700_000_000_000 && ms < (1 << 48));
    }
}
