//! A standing-queue guard beside GCC: it caps the estimate when the path holds a queue.
//!
//! GCC's delay half reacts to a queue that is *growing* (the delay gradient). A bottleneck with
//! a deep drop-tail buffer (bufferbloat: RFC 8867 §5.1's 300 ms queue, a cable modem) fills,
//! then stays full: the delay stops growing, GCC reads "normal" and keeps increasing, and only
//! the tail drops tell it anything. The impairment lab measured exactly that — the estimate
//! climbing 0.7 → 3.8 Mbit/s over a 2 Mbit/s link whose 300 ms queue stayed full, every frame
//! 300 ms late. libwebrtc avoids the worst of it by never probing far above what was received;
//! this guard looks at the queue itself:
//!
//! - each TWCC report gives a packet's one-way delay up to an unknown constant (arrival at the
//!   receiver minus departure here); the smallest seen over [`BASE_WINDOW`] is the path's own
//!   delay, and a packet's delay above it is queueing;
//! - when even the *least* delayed packet of a feedback batch waited more than [`QUEUE_LIMIT`]
//!   (a standing queue — jitter raises some packets' delay, never all of them), the cap falls to
//!   [`DECREASE`] × the rate the receiver got, so the queue drains, and holds while it drains
//!   (cutting every interval while a deep queue drains would drive the rate to the floor), and
//!   cuts again only if, a drain time after the cut, the queue has not shrunk. (A loss-based
//!   flow sharing the bottleneck keeps the queue full whatever we send, and this guard yields to
//!   it: RFC 8867 §5.6's case is not solved here. Lifting the cap when a cut did not drain the
//!   queue was tried; it also fired on our own slow drains at 0.6–2 Mbit/s and left the queue
//!   full for seconds.)
//! - with the queue under half the limit the cap grows by [`INCREASE`] per interval — slower,
//!   [`NEAR_INCREASE`], near the rate the bottleneck delivered while the last queue stood,
//!   where the next queue would start — and it is lifted once it is [`LIFT`] × GCC's own
//!   target. (Bounding it by 1.5× what the player receives was tried: on a low rung the
//!   encoder sends less than it may, and the cap, the estimate and the rung held each other
//!   down — 350 kbit/s on a 2.5 Mbit/s link.)
//!
//! Sans-IO: time and reports are arguments.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::interceptor::PacketReport;

/// A batch whose least delayed packet queued longer than this means a standing queue.
pub const QUEUE_LIMIT: Duration = Duration::from_millis(60);
/// How long the path's own delay is remembered (its minimum over this window): long enough to
/// see the path empty between bursts, short enough that a route whose delay grew is learnt
/// again within seconds rather than read as a queue for good.
pub const BASE_WINDOW: Duration = Duration::from_secs(10);
/// At most one change per this.
pub const INTERVAL: Duration = Duration::from_millis(200);
/// On a standing queue the cap becomes this × the received rate.
pub const DECREASE: f64 = 0.85;
/// With the queue drained the cap grows by this per interval…
pub const INCREASE: f64 = 1.05;
/// …but by only this while it is near the rate the bottleneck delivered at the last cut (from
/// [`NEAR_LOW`] to [`NEAR_HIGH`] times it): that is where the last queue stood. Growing 27 % a
/// second straight through it refilled a 300 ms queue every few seconds (a freeze each time).
pub const NEAR_INCREASE: f64 = 1.02;
/// The near zone's lower edge, as a share of the last delivered rate.
pub const NEAR_LOW: f64 = 0.9;
/// The near zone's upper edge: past it without a queue, the link has grown; that rate is
/// forgotten and growth is fast again.
pub const NEAR_HIGH: f64 = 1.2;
/// The cap is lifted once it is this far above GCC's target.
pub const LIFT: f64 = 2.0;
/// The window the received rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// See the module docs.
#[derive(Debug)]
pub struct QueueGuard {
    /// A fixed departure instant every delay is measured against.
    epoch: Option<Instant>,
    /// Per second of feedback, the smallest one-way delay seen (s, up to a constant).
    minima: VecDeque<(Instant, f64)>,
    /// Bytes received, by when they were reported.
    received: VecDeque<(Instant, usize)>,
    received_bytes: usize,
    cap: Option<f64>,
    last_change: Option<Instant>,
    /// The last cut of this episode: when, and the queue (s) it saw.
    last_cut: Option<(Instant, f64)>,
    /// What the bottleneck delivered (bit/s) when a queue last stood (the most within one
    /// episode of cuts).
    delivered: Option<f64>,
}

impl Default for QueueGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueGuard {
    /// A guard with no cap.
    pub fn new() -> Self {
        Self {
            epoch: None,
            minima: VecDeque::new(),
            received: VecDeque::new(),
            received_bytes: 0,
            cap: None,
            last_change: None,
            last_cut: None,
            delivered: None,
        }
    }

    /// The cap in force, bit/s.
    pub fn cap(&self) -> Option<f64> {
        self.cap
    }

    /// The path's own one-way delay (up to the constant) as remembered.
    fn base(&self) -> Option<f64> {
        self.minima.iter().map(|(_, d)| *d).reduce(f64::min)
    }

    /// One feedback batch at `now`; `target` is GCC's current target. Returns the cap.
    pub fn on_reports(
        &mut self,
        now: Instant,
        reports: &[PacketReport],
        target: f64,
    ) -> Option<f64> {
        let epoch = *self
            .epoch
            .get_or_insert_with(|| reports.first().map_or(now, |r| r.departure));
        let delays: Vec<f64> = reports
            .iter()
            .filter_map(|r| {
                let arrival = r.arrival?;
                let sent = r.departure.checked_duration_since(epoch)?;
                Some(arrival.as_secs_f64() - sent.as_secs_f64())
            })
            .collect();
        for r in reports.iter().filter(|r| r.arrived) {
            self.received.push_back((now, r.size));
            self.received_bytes += r.size;
        }
        while self
            .received
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            if let Some((_, n)) = self.received.pop_front() {
                self.received_bytes -= n;
            }
        }
        let Some(least) = delays.iter().copied().reduce(f64::min) else {
            return self.cap;
        };
        // Remember the minimum per second, for the window.
        match self.minima.back_mut() {
            Some((t, d)) if now.saturating_duration_since(*t) < Duration::from_secs(1) => {
                *d = d.min(least);
            }
            _ => self.minima.push_back((now, least)),
        }
        while self
            .minima
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > BASE_WINDOW)
        {
            self.minima.pop_front();
        }
        let Some(base) = self.base() else {
            return self.cap;
        };
        if self
            .last_change
            .is_some_and(|t| now.saturating_duration_since(t) < INTERVAL)
        {
            return self.cap;
        }
        let queued = least - base;
        let received = self.received_bytes as f64 * 8.0 / RATE_WINDOW.as_secs_f64();
        if queued > QUEUE_LIMIT.as_secs_f64() {
            match self.last_cut {
                None if received > 0.0 => {
                    let cut = DECREASE * received;
                    self.cap = Some(self.cap.map_or(cut, |c| c.min(cut)));
                    self.last_change = Some(now);
                    self.last_cut = Some((now, queued));
                    self.delivered = Some(received);
                }
                // A drain time after the cut the queue has not shrunk: cut again.
                Some((t, q))
                    if now.saturating_duration_since(t)
                        >= INTERVAL + Duration::from_secs_f64(q)
                        && queued >= 0.9 * q
                        && received > 0.0 =>
                {
                    let cut = DECREASE * received;
                    self.cap = Some(self.cap.map_or(cut, |c| c.min(cut)));
                    self.last_change = Some(now);
                    self.last_cut = Some((now, queued));
                    // Within an episode the first cut saw the bottleneck's rate best: later
                    // ones see it while the queue drains under an already lower rate.
                    self.delivered = Some(self.delivered.map_or(received, |d| d.max(received)));
                }
                // Ours, draining: hold.
                _ => {}
            }
        } else if queued < QUEUE_LIMIT.as_secs_f64() / 2.0
            && let Some(cap) = self.cap
        {
            // Drained: the next queue is a new episode.
            self.last_cut = None;
            let near = self.delivered.map(|d| (NEAR_LOW * d, NEAR_HIGH * d));
            let grown = match near {
                Some((_, high)) if cap >= high => {
                    self.delivered = None;
                    cap * INCREASE
                }
                Some((low, _)) if cap >= low => cap * NEAR_INCREASE,
                _ => cap * INCREASE,
            };
            self.cap = (grown < LIFT * target).then_some(grown);
            self.last_change = Some(now);
        }
        self.cap
    }

    /// `target` as the guard lets it through.
    pub fn limit(&self, target: f64) -> f64 {
        self.cap.map_or(target, |c| target.min(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `n` 1200-byte packets sent 1 ms apart from `sent`, each arriving `owd(i)`
    /// later on the receiver's clock (which starts 5 s off ours).
    fn batch(t0: Instant, sent: Duration, n: u64, owd: impl Fn(u64) -> f64) -> Vec<PacketReport> {
        (0..n)
            .map(|i| {
                let departure = t0 + sent + Duration::from_millis(i);
                let at = (sent + Duration::from_millis(i)).as_secs_f64() + 5.0 + owd(i);
                PacketReport {
                    ssrc: 1,
                    id: i,
                    rtp_sequence_number: i as u16,
                    is_twcc: true,
                    twcc_sequence_number: i as u16,
                    size: 1200,
                    arrived: true,
                    departure,
                    arrival: Some(Duration::from_secs_f64(at)),
                    ecn: Default::default(),
                }
            })
            .collect()
    }

    /// Feeds `g` batch number `k` (20 packets sent at `k` × 100 ms, each `owd` s on the way,
    /// reported 100 ms after it was sent) with GCC's target `target`; returns the cap.
    fn feed(g: &mut QueueGuard, t0: Instant, k: u64, owd: f64, target: f64) -> Option<f64> {
        let sent = Duration::from_millis(100 * k);
        g.on_reports(
            t0 + sent + Duration::from_millis(100),
            &batch(t0, sent, 20, |_| owd),
            target,
        )
    }

    #[test]
    fn a_clean_or_jittery_path_is_never_capped() {
        let t0 = Instant::now();
        let mut g = QueueGuard::new();
        for k in 0..50u64 {
            let sent = Duration::from_millis(100 * k);
            // 50 ms ± 20 ms of jitter: some packets are delayed, never all of a batch.
            let reports = batch(t0, sent, 20, |i| 0.05 + if i % 3 == 0 { 0.0 } else { 0.04 });
            assert_eq!(
                g.on_reports(t0 + sent + Duration::from_millis(120), &reports, 4e6),
                None
            );
        }
    }

    #[test]
    fn a_standing_queue_caps_the_rate_until_it_drains() {
        let t0 = Instant::now();
        let mut g = QueueGuard::new();
        // Two seconds clean at 40 ms.
        for k in 0..20 {
            feed(&mut g, t0, k, 0.04, 4e6);
        }
        assert_eq!(g.cap(), None);
        // Then a 300 ms standing queue: capped under what was received.
        let mut capped = None;
        for k in 20..40 {
            capped = feed(&mut g, t0, k, 0.34, 4e6);
        }
        let cap = capped.expect("capped");
        // 20 packets of 1200 bytes per 100 ms are 1.92 Mbit/s.
        assert!(cap <= 0.85 * 1.92e6 + 1.0, "{cap}");
        assert!(g.limit(4e6) <= cap);
        // Each cut follows what was received; cuts do not compound on one another.
        assert!(
            cap > 0.8 * 1.92e6 * 0.85,
            "cut below the received rate's share: {cap}"
        );
        // The queue drains: the cap grows, then is lifted once far above GCC's target.
        for k in 40..200 {
            feed(&mut g, t0, k, 0.04, 2e6);
        }
        assert_eq!(g.cap(), None);
        // A new queue, smaller than the first, is cut at once: the last episode is forgotten.
        let k = 200;
        let cut = feed(&mut g, t0, k, 0.12, 2e6);
        assert!(cut.is_some(), "a second standing queue was not cut");
    }

    #[test]
    fn the_cap_grows_slowly_where_the_last_queue_stood_and_fast_elsewhere() {
        let t0 = Instant::now();
        let mut g = QueueGuard::new();
        for k in 0..20 {
            feed(&mut g, t0, k, 0.04, 8e6);
        }
        // A standing queue while 1.92 Mbit/s got through: cut to 0.85 of it.
        let mut k = 20;
        while g.cap().is_none() {
            feed(&mut g, t0, k, 0.34, 8e6);
            k += 1;
            assert!(k < 40, "never cut");
        }
        // Drained: count the intervals (200 ms) the cap takes across the near zone, and above.
        let mut steps = Vec::new();
        let mut last = g.cap().expect("capped");
        while let Some(cap) = g.cap() {
            feed(&mut g, t0, k, 0.04, 2.2e6);
            k += 1;
            if let Some(now) = g.cap()
                && now != last
            {
                steps.push((last, now / last));
                last = now;
            }
            assert!(k < 2000, "never lifted: {cap}");
        }
        let delivered = 1.92e6;
        for (from, step) in steps {
            let near = from >= NEAR_LOW * delivered && from < NEAR_HIGH * delivered;
            let want = if near { NEAR_INCREASE } else { INCREASE };
            assert!((step - want).abs() < 1e-9, "from {from}: ×{step}");
        }
    }
}
