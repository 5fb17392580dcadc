//! Frame pacing for titles on displays without vertical sync (Xvfb): when the node sets
//! [`FPS_ENV`], each present of the captured swapchain returns no sooner than one frame interval
//! after the previous one, as a display's vsync would make it. A title that renders slower than
//! the rate is never held back.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The variable the node sets to the session's frame rate (1–1000; unset or 0: no pacing).
pub const FPS_ENV: &str = "STRATUS_CAPTURE_FPS";

/// Paces presents to one per interval.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    /// A pacer for `fps` frames per second; `None` for 0 or more than 1000.
    pub fn new(fps: u32) -> Option<Pacer> {
        (1..=1000).contains(&fps).then(|| Pacer {
            interval: Duration::from_secs(1) / fps,
            next: Mutex::new(None),
        })
    }

    /// The pacer [`FPS_ENV`] asks for, if any.
    pub fn from_env() -> Option<Pacer> {
        let fps = std::env::var(FPS_ENV).ok()?.trim().parse().ok()?;
        Self::new(fps)
    }

    /// How long a present made at `now` must wait, and records the slot it takes. A present
    /// that is late (the title is slower than the rate) waits for nothing and restarts the
    /// schedule from `now`, so a slow frame is never followed by a burst.
    pub fn delay(&self, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let (wait, slot) = match *next {
            Some(at) if at > now => (at - now, at),
            _ => (Duration::ZERO, now),
        };
        *next = Some(slot + self.interval);
        wait
    }

    /// Waits out [`Pacer::delay`].
    pub fn wait(&self) {
        let wait = self.delay(Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_presents_are_spaced_one_interval_apart() {
        let p = Pacer::new(50).expect("pacer");
        let t0 = Instant::now();
        assert_eq!(p.delay(t0), Duration::ZERO);
        // Back to back: the second waits a whole interval, the third two.
        assert_eq!(p.delay(t0), Duration::from_millis(20));
        assert_eq!(p.delay(t0), Duration::from_millis(40));
    }

    #[test]
    fn a_late_present_restarts_the_schedule_without_a_burst() {
        let p = Pacer::new(50).expect("pacer");
        let t0 = Instant::now();
        p.delay(t0);
        let late = t0 + Duration::from_millis(100);
        assert_eq!(p.delay(late), Duration::ZERO);
        assert_eq!(
            p.delay(late + Duration::from_millis(5)),
            Duration::from_millis(15)
        );
    }

    #[test]
    fn out_of_range_rates_mean_no_pacing() {
        assert!(Pacer::new(0).is_none());
        assert!(Pacer::new(1001).is_none());
        assert!(Pacer::new(60).is_some());
    }
}
