//! The player's loss, from the cumulative counters of its reception reports, over windows long
//! enough to mean something.
//!
//! A reception report's `fraction lost` covers the interval since the receiver's previous
//! report, and a receiver that sends feedback often sends reports often: libwebrtc puts a
//! receiver report in front of every NACK and PLI (RFC 4585 compound packets), so at 5 % loss
//! Chromium reported every 50 ms or so, over two or three dozen packets, and the figure jumped
//! between 0 and 12 % — the worst of them read as congestion and walked the rate from 6 to
//! 1.5 Mbit/s in 30 s on a path whose capacity never changed. The cumulative counters in the
//! same report (extended highest sequence number received, cumulative number lost) are exact
//! whatever the cadence; this meter differences them per stream and gives one loss figure per
//! window of at least [`MIN_WINDOW`] and [`MIN_PACKETS`] expected packets (or [`MAX_WINDOW`],
//! whichever has something in it), over all our streams together.
//!
//! Sans-IO: time and report fields are arguments.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A window is at least this long…
pub const MIN_WINDOW: Duration = Duration::from_millis(500);
/// …and covers at least this many expected packets, unless it has run [`MAX_WINDOW`].
pub const MIN_PACKETS: u64 = 50;
/// A window with fewer packets closes after this, if it has any.
pub const MAX_WINDOW: Duration = Duration::from_secs(2);
/// A jump in the highest sequence number larger than this is a restarted stream, not traffic.
const MAX_STEP: u32 = 1 << 20;

/// One stream's counters at the start of the window.
#[derive(Debug, Clone, Copy)]
struct Counters {
    highest: u32,
    lost: i64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct LossMeter {
    /// Per SSRC, the counters last folded into the window.
    streams: HashMap<u32, Counters>,
    started: Option<Instant>,
    expected: u64,
    lost: u64,
}

impl LossMeter {
    /// A report block about stream `ssrc` arrived at `now`: its extended highest sequence
    /// number and cumulative number of packets lost (RFC 3550 §6.4.1; a 24-bit signed count,
    /// given here already sign-extended). Returns the fraction lost over the window it closes,
    /// if it closes one.
    pub fn on_report(
        &mut self,
        now: Instant,
        ssrc: u32,
        highest: u32,
        cumulative_lost: i64,
    ) -> Option<f64> {
        let now_counters = Counters {
            highest,
            lost: cumulative_lost,
        };
        let started = *self.started.get_or_insert(now);
        if let Some(before) = self.streams.insert(ssrc, now_counters) {
            let step = highest.wrapping_sub(before.highest);
            if step <= MAX_STEP {
                let step = u64::from(step);
                // Duplicates can make the cumulative count fall; a count cannot exceed what was
                // expected.
                let lost = (cumulative_lost - before.lost).clamp(0, step as i64) as u64;
                self.expected += step;
                self.lost += lost;
            }
        }
        let age = now.saturating_duration_since(started);
        let full = age >= MIN_WINDOW && self.expected >= MIN_PACKETS;
        let stale = age >= MAX_WINDOW && self.expected > 0;
        if !(full || stale) {
            if age >= MAX_WINDOW {
                // Nothing flowed: start a fresh window rather than average over silence.
                self.started = Some(now);
            }
            return None;
        }
        let fraction = self.lost as f64 / self.expected as f64;
        self.started = Some(now);
        self.expected = 0;
        self.lost = 0;
        Some(fraction)
    }

    /// Forgets stream `ssrc` (it ended).
    pub fn forget(&mut self, ssrc: u32) {
        self.streams.remove(&ssrc);
    }
}

/// RFC 3550's cumulative number lost is a 24-bit two's-complement count.
pub fn sign_extend_24(value: u32) -> i64 {
    let v = i64::from(value & 0x00ff_ffff);
    if v & 0x0080_0000 != 0 {
        v - (1 << 24)
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn frequent_noisy_reports_become_one_exact_figure_per_window() {
        let t0 = Instant::now();
        let mut m = LossMeter::default();
        assert_eq!(m.on_report(t0, 7, 1000, 0), None);
        // Every 50 ms, 20 packets; one lost in every 20 (5 %), in clumps, so a single report
        // reads 0 % or 25 %.
        let mut out = Vec::new();
        let mut lost = 0;
        for n in 1..=40u32 {
            if n % 5 == 0 {
                lost += 5;
            }
            if let Some(f) = m.on_report(t0 + ms(50 * u64::from(n)), 7, 1000 + 20 * n, lost) {
                out.push(f);
            }
        }
        assert_eq!(out.len(), 4, "{out:?}");
        for f in out {
            assert!((f - 0.05).abs() < 0.001, "{f}");
        }
    }

    #[test]
    fn streams_add_up_and_a_sparse_one_still_closes_a_window() {
        let t0 = Instant::now();
        let mut m = LossMeter::default();
        m.on_report(t0, 1, 100, 0);
        m.on_report(t0, 2, 500, 3);
        // Video: 40 expected, 4 lost; audio: 20 expected, 0 lost; together 60, 4 lost.
        assert_eq!(
            m.on_report(t0 + ms(600), 1, 140, 4),
            None,
            "under 50 packets"
        );
        let f = m.on_report(t0 + ms(600), 2, 520, 3).expect("a window");
        assert!((f - 4.0 / 60.0).abs() < 1e-9, "{f}");
        // Ten packets over two seconds is a window too.
        assert_eq!(m.on_report(t0 + ms(1600), 1, 145, 4), None);
        let f = m
            .on_report(t0 + ms(2700), 1, 150, 5)
            .expect("a stale window");
        assert!((f - 0.1).abs() < 1e-9, "{f}");
    }

    #[test]
    fn duplicates_wraps_and_restarts_do_not_make_nonsense() {
        let t0 = Instant::now();
        let mut m = LossMeter::default();
        m.on_report(t0, 1, u32::MAX - 10, 50);
        // The cumulative count fell (duplicates): no negative loss.
        assert_eq!(m.on_report(t0 + ms(600), 1, 89, 40), Some(0.0));
        // A stream restarted far away: ignored, then counted from there.
        assert_eq!(m.on_report(t0 + ms(1200), 1, 3_000_000, 0), None);
        assert_eq!(m.on_report(t0 + ms(1800), 1, 3_000_100, 100), Some(1.0));
        assert_eq!(sign_extend_24(0x00ff_ffff), -1);
        assert_eq!(sign_extend_24(0x0000_0005), 5);
    }
}
