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
//! - over [`HIGH_LOSS`] the cap becomes the rate in force × (1 − loss / 2);
//! - under [`LOW_LOSS`] it grows by [`GROWTH`] per report, and is lifted once it is twice GCC's
//!   target;
//! - between, it holds: a few per cent of loss is the path, not congestion, and NACK repairs it.
//!
//! Sans-IO: the report's number, loss and the target are arguments.

use super::fallback::{HIGH_LOSS, LOW_LOSS};

/// Growth per report with little loss.
pub const GROWTH: f64 = 1.08;

/// See the module docs.
#[derive(Debug, Default, Clone)]
pub struct LossCap {
    /// The last report acted on.
    seen: u64,
    cap: Option<f64>,
}

impl LossCap {
    /// The cap in force.
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }

    /// Report number `report` (increasing; the same number is acted on once) said `loss` was
    /// lost, GCC's target being `target`. Returns the cap.
    pub fn on_report(&mut self, report: u64, loss: f64, target: f64) -> Option<f64> {
        if report == self.seen {
            return self.cap;
        }
        self.seen = report;
        if loss > HIGH_LOSS {
            let rate = self.cap.map_or(target, |c| c.min(target));
            self.cap = Some(rate * (1.0 - 0.5 * loss.min(1.0)));
        } else if loss < LOW_LOSS
            && let Some(cap) = self.cap
        {
            let grown = cap * GROWTH;
            self.cap = (grown < 2.0 * target).then_some(grown);
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
    fn a_few_per_cent_of_loss_is_left_alone() {
        let mut c = LossCap::default();
        for n in 1..=30 {
            assert_eq!(c.on_report(n, 0.05, 4e6), None);
        }
    }

    #[test]
    fn heavy_loss_cuts_each_report_once_and_clean_reports_lift_it() {
        let mut c = LossCap::default();
        let cap = c.on_report(1, 0.3, 4e6).expect("a cut");
        assert!((cap - 4e6 * 0.85).abs() < 1.0, "{cap}");
        // The same report again changes nothing.
        assert_eq!(c.on_report(1, 0.3, 4e6), Some(cap));
        let again = c.on_report(2, 0.3, 4e6).expect("a second cut");
        assert!((again - cap * 0.85).abs() < 1.0);
        assert_eq!(c.limit(4e6), again);
        let mut n = 3;
        while c.on_report(n, 0.0, 4e6).is_some() {
            n += 1;
            assert!(n < 100, "never lifted");
        }
        assert_eq!(c.limit(4e6), 4e6);
    }
}
