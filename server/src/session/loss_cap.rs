//! The loss half of congestion control, from the player's receiver reports.
//!
//! GCC's own loss half counts the packets TWCC feedback did not name as received, and over a
//! real path that count is wrong both ways up: a feedback packet lost on the way back makes
//! every packet it covered look lost, and a packet that was merely overtaken (reordering) is
//! reported missing by the feedback sent before it arrived and never counted again. The
//! impairment lab saw both: at 5 % loss each way GCC read ≈ 10 % and walked the rate down
//! from 3.9 to 0.2 Mbit/s over 30 s; with 50 ± 20 ms of reordering it read a third of the
//! packets as lost and collapsed within 2 s. The receiver's own count (RTCP reception reports,
//! RFC 3550 `fraction lost`) is exact: it counts what never arrived, after reordering, and
//! feedback loss cannot touch it. So GCC reads only what arrived, and this cap — GCC's rule on
//! the receiver's count — supplies the loss half:
//!
//! - the receiver's loss comes in windows of at least half a second and 50 packets
//!   ([`super::loss_meter`]: a receiver that sends feedback often sends reports often, each over
//!   a few dozen packets, and single reports were noise); when both the latest window and the
//!   smoothed loss (an exponential average over windows) are over [`HIGH_LOSS`], the cap becomes
//!   the rate in force × (1 − loss / 2), at most once per [`CUT_INTERVAL`];
//! - when the latest window is under [`LOW_LOSS`] it grows by [`GROWTH`] per second since the
//!   last change (windows may be 2 s apart at a low rate; the smoothed loss, still high from the
//!   congestion that is over, is not waited for), and is lifted once it is twice GCC's target;
//! - no cut while the queue guard drains a standing queue: the loss is that queue overflowing,
//!   and the guard has already cut for it;
//! - between, it holds: a few per cent of loss is the path, not congestion, and NACK and FEC
//!   repair it.
//!
//! Sans-IO: the report's number, loss and the target are arguments.

use std::time::{Duration, Instant};

use super::fallback::{HIGH_LOSS, LOW_LOSS};

/// Growth per second with little loss.
pub const GROWTH: f64 = 1.08;
/// The longest gap between two windows that counts toward growth.
pub const MAX_GROWTH_GAP: Duration = Duration::from_secs(3);
/// At most one cut per this.
pub const CUT_INTERVAL: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Debug, Default, Clone)]
pub struct LossCap {
    /// The last report acted on.
    seen: u64,
    /// The smoothed loss.
    average: Option<f64>,
    cap: Option<f64>,
    last_change: Option<Instant>,
}

impl LossCap {
    /// The cap in force.
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }

    /// Loss window number `report` (increasing; the same number is acted on once) closed by
    /// `now` and said `loss` was lost, GCC's target being `target`; `queue_draining` when the
    /// queue guard holds the rate down for a standing queue (the loss is that queue
    /// overflowing, already answered: cutting for it as well took the rate to a fifth of the
    /// link after a start into a 2 Mbit/s bottleneck). Returns the cap.
    pub fn on_report(
        &mut self,
        now: Instant,
        report: u64,
        loss: f64,
        target: f64,
        queue_draining: bool,
    ) -> Option<f64> {
        if report == self.seen {
            return self.cap;
        }
        self.seen = report;
        let average = self.average.map_or(loss, |a| 0.8 * a + 0.2 * loss);
        self.average = Some(average);
        let since = self
            .last_change
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
        if loss > HIGH_LOSS && average > HIGH_LOSS {
            if since >= CUT_INTERVAL && !queue_draining {
                let rate = self.cap.map_or(target, |c| c.min(target));
                self.cap = Some(rate * (1.0 - 0.5 * average.min(1.0)));
                self.last_change = Some(now);
            }
        } else if loss < LOW_LOSS
            && let Some(cap) = self.cap
        {
            let elapsed = since.min(MAX_GROWTH_GAP).as_secs_f64();
            let grown = cap * GROWTH.powf(elapsed);
            self.cap = (grown < 2.0 * target).then_some(grown);
            self.last_change = Some(now);
        }
        self.cap
    }

    /// `target` as the cap lets it through.
    pub fn limit(&self, target: f64) -> f64 {
        self.cap.map_or(target, |c| target.min(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_cent_of_loss_or_one_bad_window_is_left_alone() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        for n in 1..=30 {
            let at = t0 + Duration::from_millis(500 * n);
            // Every tenth window reads high.
            let loss = if n % 10 == 0 { 0.15 } else { 0.05 };
            assert_eq!(c.on_report(at, n, loss, 4e6, false), None, "report {n}");
        }
    }

    #[test]
    fn heavy_loss_cuts_once_a_second_and_clean_reports_lift_it() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        let cap = c.on_report(t0, 1, 0.3, 4e6, false).expect("a cut");
        assert!((cap - 4e6 * 0.85).abs() < 1.0, "{cap}");
        // The same report again, or another within the second, changes nothing.
        assert_eq!(c.on_report(t0, 1, 0.3, 4e6, false), Some(cap));
        assert_eq!(
            c.on_report(t0 + Duration::from_millis(500), 2, 0.3, 4e6, false),
            Some(cap)
        );
        let again = c
            .on_report(t0 + Duration::from_secs(1), 3, 0.3, 4e6, false)
            .expect("a second cut");
        assert!((again - cap * 0.85).abs() < 1.0);
        assert_eq!(c.limit(4e6), again);
        let mut n = 4;
        while c
            .on_report(t0 + Duration::from_secs(n), n, 0.0, 4e6, false)
            .is_some()
        {
            n += 1;
            assert!(n < 100, "never lifted");
        }
        assert_eq!(c.limit(4e6), 4e6);
    }

    #[test]
    fn clean_windows_grow_the_cap_at_once_and_by_the_time_between_them() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_report(t0, 1, 0.5, 3e6, false);
        let cut = c
            .on_report(t0 + Duration::from_secs(1), 2, 0.5, 3e6, false)
            .expect("cut");
        // A low rate: clean windows every 2 s. The smoothed loss is still high, but the path is
        // clean now and the cap grows from the first clean window, by the time since the cut.
        let grown = c
            .on_report(t0 + Duration::from_secs(3), 3, 0.0, 3e6, false)
            .expect("still capped");
        assert!(
            (grown / cut - GROWTH.powi(2)).abs() < 1e-9,
            "{grown} after {cut}"
        );
    }

    #[test]
    fn loss_from_a_queue_the_guard_is_draining_is_not_cut_for_twice() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        for n in 1..=5 {
            let at = t0 + Duration::from_secs(n);
            assert_eq!(c.on_report(at, n, 0.4, 3e6, true), None, "window {n}");
        }
        assert!(
            c.on_report(t0 + Duration::from_secs(6), 6, 0.4, 3e6, false)
                .is_some()
        );
    }
}
