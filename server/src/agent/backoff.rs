//! Jittered exponential backoff for reconnecting to signaling.

use std::time::Duration;

/// Delays that double from `base` up to `max`, each drawn uniformly from its upper half so that
/// a fleet of nodes restarted together does not reconnect in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The next delay, given a uniform random number in [0, 1).
    pub fn next_delay(&mut self, unit_random: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
        let top: Vec<_> = (0..8).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(top[0], Duration::from_millis(250));
        assert_eq!(top[1], Duration::from_millis(500));
        assert_eq!(top[4], Duration::from_secs(4));
        assert_eq!(top[7], Duration::from_secs(8), "capped");
        b.reset();
        assert_eq!(
            b.next_delay(0.0),
            Duration::from_millis(125),
            "lower half of the first step"
        );
    }
}
