//! What a run of a scenario is judged by, computed from what the receiver presented and what
//! the relay saw. Pure functions of their inputs, so each rule is tested on made-up timelines.
//!
//! - Freezes follow the W3C webrtc-stats definition (`freezeCount`): a frame is frozen when the
//!   time since the previous one is at least max(3 × the mean of the 30 before it, that mean +
//!   150 ms); its duration is that interval. A picture that stops until the run ends is a
//!   freeze too.
//! - Recovery after a blackout: from the blackout's end to the first presented frame that was
//!   made after it (a fresh picture, not a late one from before).
//! - Rate tracking: the node's sending rate (1 s windows of the relay's bins) against the
//!   bottleneck's capacity; its mean absolute error in per cent, and per capacity change how
//!   long until the rate is within ±25 % of the new capacity.

use std::time::Duration;

use super::relay::BIN;

/// One presented frame: when it was shown and when its picture was made (the latency code),
/// both epoch ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Presented {
    /// When it was shown (or decoded, for a headless receiver).
    pub at_ms: f64,
    /// When the sender made it; `None` when the code could not be read.
    pub made_ms: Option<f64>,
}

/// Freezes over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Freezes {
    /// How many.
    pub count: u64,
    /// Their total duration, ms.
    pub total_ms: f64,
    /// The longest, ms.
    pub longest_ms: f64,
}

/// Freezes among frames shown at `times` (epoch ms, ascending) within the span from
/// `start_ms` to `end_ms`: frames before the span only set the mean a gap is judged against, a
/// gap counts when it ends inside the span, and a picture still frozen at `end_ms` counts up to
/// it.
pub fn freezes(times: &[f64], start_ms: f64, end_ms: f64) -> Freezes {
    const WINDOW: usize = 30;
    let mut out = Freezes::default();
    let mut durations: std::collections::VecDeque<f64> = std::collections::VecDeque::new();
    let judge = |d: f64, durations: &std::collections::VecDeque<f64>, out: &mut Freezes| {
        if durations.is_empty() {
            return;
        }
        let mean = durations.iter().sum::<f64>() / durations.len() as f64;
        if d >= (3.0 * mean).max(mean + 150.0) {
            out.count += 1;
            out.total_ms += d;
            out.longest_ms = out.longest_ms.max(d);
        }
    };
    let mut last = None;
    for w in times.windows(2) {
        if w[1] > end_ms {
            break;
        }
        let d = w[1] - w[0];
        if w[1] > start_ms {
            judge(d, &durations, &mut out);
        }
        if durations.len() == WINDOW {
            durations.pop_front();
        }
        durations.push_back(d);
        last = Some(w[1]);
    }
    let last = last.or_else(|| times.first().copied().filter(|t| *t <= end_ms));
    match last {
        Some(last) => judge(end_ms - last, &durations, &mut out),
        // Nothing at all was shown: the whole span is one freeze.
        None => {
            out.count = 1;
            out.total_ms = end_ms - start_ms;
            out.longest_ms = end_ms - start_ms;
        }
    }
    out
}

/// From `event_end_ms` to the first frame made at or after it being shown; `None` if none was.
pub fn recovery_ms(frames: &[Presented], event_end_ms: f64) -> Option<f64> {
    frames
        .iter()
        .find(|f| f.made_ms.is_some_and(|m| m >= event_end_ms))
        .map(|f| (f.at_ms - event_end_ms).max(0.0))
}

/// The sending rate in bit/s over the 1 s ending with each bin (shorter at the start).
pub fn rate_series(bins: &[u64]) -> Vec<f64> {
    let per_window = (Duration::from_secs(1).as_nanos() / BIN.as_nanos()) as usize;
    (0..bins.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(per_window);
            let bytes: u64 = bins[from..=i].iter().sum();
            bytes as f64 * 8.0 / (BIN.as_secs_f64() * (i + 1 - from) as f64)
        })
        .collect()
}

/// Rate tracking against `capacity` (bit/s at a time into the span; 0 = none).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracking {
    /// Mean |rate − capacity| / capacity over the capped bins, per cent; `None` without a cap.
    pub error_pct: Option<f64>,
    /// Per change: how long until the rate was within ±25 % of the new capacity (`None`: not
    /// before the next change or the end).
    pub settle_ms: Vec<Option<f64>>,
}

/// See [`Tracking`]. The first second is left out of the error (the window is filling).
pub fn tracking(
    bins: &[u64],
    capacity: impl Fn(Duration) -> u64,
    changes: &[Duration],
) -> Tracking {
    let rates = rate_series(bins);
    let at = |i: usize| BIN * (i as u32 + 1);
    let skip = (Duration::from_secs(1).as_nanos() / BIN.as_nanos()) as usize;
    let errors: Vec<f64> = rates
        .iter()
        .enumerate()
        .skip(skip)
        .filter_map(|(i, r)| {
            let c = capacity(at(i)) as f64;
            (c > 0.0).then(|| (r - c).abs() / c * 100.0)
        })
        .collect();
    let error_pct = (!errors.is_empty()).then(|| errors.iter().sum::<f64>() / errors.len() as f64);
    let settle_ms = changes
        .iter()
        .enumerate()
        .map(|(k, change)| {
            let until = changes.get(k + 1).copied().unwrap_or(Duration::MAX);
            rates.iter().enumerate().find_map(|(i, r)| {
                let t = at(i);
                // The window must lie wholly after the change.
                if t < *change + Duration::from_secs(1) || t >= until {
                    return None;
                }
                let c = capacity(t) as f64;
                ((r - c).abs() <= 0.25 * c).then(|| (t - *change).as_secs_f64() * 1000.0)
            })
        })
        .collect();
    Tracking {
        error_pct,
        settle_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_picture_has_no_freeze() {
        let times: Vec<f64> = (0..300).map(|i| i as f64 * 33.3).collect();
        assert_eq!(freezes(&times, 0.0, 300.0 * 33.3), Freezes::default());
    }

    #[test]
    fn a_gap_is_a_freeze_of_its_length_and_a_stop_at_the_end_too() {
        let mut times: Vec<f64> = (0..60).map(|i| i as f64 * 33.3).collect();
        let resume = times[59] + 500.0;
        times.extend((0..60).map(|i| resume + i as f64 * 33.3));
        let end = times[119] + 1000.0;
        let f = freezes(&times, 0.0, end);
        assert_eq!(f.count, 2);
        assert!((f.longest_ms - 1000.0).abs() < 1e-6, "{f:?}");
        assert!((f.total_ms - 1500.0).abs() < 1e-6, "{f:?}");
        // A 100 ms hiccup at 30 fps is not a freeze (needs ≥ mean + 150 ms).
        let mut hiccup: Vec<f64> = (0..60).map(|i| i as f64 * 33.3).collect();
        let resume = hiccup[59] + 100.0;
        hiccup.extend((0..60).map(|i| resume + i as f64 * 33.3));
        assert_eq!(freezes(&hiccup, 0.0, hiccup[119]).count, 0);
        // Only gaps ending in the span count.
        assert_eq!(freezes(&times, times[61], end).count, 1);
        assert_eq!(freezes(&[], 0.0, 500.0).longest_ms, 500.0);
    }

    #[test]
    fn recovery_waits_for_a_fresh_picture() {
        let frames = [
            Presented {
                at_ms: 1000.0,
                made_ms: Some(900.0),
            },
            // Late frames from before the blackout's end do not count.
            Presented {
                at_ms: 2100.0,
                made_ms: Some(1500.0),
            },
            Presented {
                at_ms: 2200.0,
                made_ms: None,
            },
            Presented {
                at_ms: 2300.0,
                made_ms: Some(2050.0),
            },
        ];
        assert_eq!(recovery_ms(&frames, 2000.0), Some(300.0));
        assert_eq!(recovery_ms(&frames, 3000.0), None);
    }

    #[test]
    fn tracking_measures_error_and_settling() {
        // 1 Mbit/s for 5 s, then capacity 2 Mbit/s and the sender follows after 2 s.
        let per_bin = |bps: f64| (bps * BIN.as_secs_f64() / 8.0) as u64;
        let mut bins = vec![per_bin(1e6); 50];
        bins.extend(vec![per_bin(1e6); 20]);
        bins.extend(vec![per_bin(2e6); 30]);
        let cap = |t: Duration| {
            if t < Duration::from_secs(5) {
                1_000_000
            } else {
                2_000_000
            }
        };
        let t = tracking(&bins, cap, &[Duration::from_secs(5)]);
        let settle = t.settle_ms[0].expect("settles");
        // The 1 s window is within 25 % of 2 Mbit/s once ≥ 5/8 of it is at the new rate.
        assert!((2500.0..=2800.0).contains(&settle), "{settle}");
        let err = t.error_pct.expect("capped");
        assert!(err > 5.0 && err < 30.0, "{err}");
        assert_eq!(tracking(&bins, |_| 0, &[]).error_pct, None);
    }
}
