//! Loss recovery on the receiving side, Sans-IO: a reorder buffer in front of the depacketiser
//! that asks for missing packets again (NACK), a bounded number of times, and gives up on a gap
//! when waiting longer would cost more than a keyframe.
//!
//! Packets go in with their RTP sequence number as they arrive ([`Recovery::push`]) and come
//! out in sequence order ([`Recovery::poll`]). While the sequence is whole nothing waits. When a
//! packet is missing, the ones after it are held and the missing one is asked for at once; the
//! request is repeated after about a round trip if the packet has not come, at most
//! [`RecoveryConfig::max_nacks`] times; the gap is given up once it has been waited for
//! [`RecoveryConfig::give_up`] (or the held packets exceed [`RecoveryConfig::max_held`]), and
//! the packets after it are released — the depacketiser then sees the gap, drops the broken
//! units and asks for a keyframe. A gap wider than [`RecoveryConfig::max_gap`] (an outage, not
//! a loss) is not asked for at all: a keyframe costs less than its retransmission.
//!
//! Why not webrtc-rs's NACK generator: it asks for every missing packet it remembers every
//! 100 ms, without end, and nothing in front of the depacketiser waited for the answers, so
//! over a lossy link it stormed and still lost the frames. The round trip is learnt from the
//! requests themselves: from a NACK to the retransmission it brought.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The rules.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryConfig {
    /// How long a gap is waited for at most.
    pub give_up: Duration,
    /// Requests per missing packet.
    pub max_nacks: u32,
    /// A gap wider than this many packets is not asked for.
    pub max_gap: u16,
    /// Packets held behind a gap at most.
    pub max_held: usize,
    /// The round trip assumed before one is measured.
    pub initial_rtt: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            give_up: Duration::from_millis(250),
            max_nacks: 3,
            max_gap: 128,
            max_held: 1024,
            initial_rtt: Duration::from_millis(100),
        }
    }
}

/// What [`Recovery::poll`] hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<T> {
    /// The next packet in sequence order, with its sequence number.
    Packet(u16, T),
    /// Ask the sender for these packets again (send one RTCP NACK).
    Nack(Vec<u16>),
}

/// Counters for the overlay and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Packets asked for (each request counts).
    pub nacked: u64,
    /// Missing packets that arrived after all.
    pub recovered: u64,
    /// Missing packets given up on.
    pub given_up: u64,
    /// Packets that came after their place had been given up on, or twice.
    pub late: u64,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    since: Instant,
    nacks: u32,
    last_nack: Option<Instant>,
}

/// The longest a first request waits for a reordered packet.
const MAX_REORDER_WAIT: Duration = Duration::from_millis(60);

/// See the module docs. `T` is the packet.
#[derive(Debug)]
pub struct Recovery<T> {
    config: RecoveryConfig,
    /// The extended sequence number expected next (released up to before it).
    next: Option<u64>,
    /// The highest extended sequence number seen.
    highest: Option<u64>,
    held: BTreeMap<u64, T>,
    missing: BTreeMap<u64, Missing>,
    out: VecDeque<Output<T>>,
    rtt: Duration,
    /// The round trip came from [`Recovery::set_rtt`] (else it is learnt from answers).
    rtt_given: bool,
    /// How late reordered packets have come (decaying maximum): a missing packet is first
    /// asked for only after this, so a path that reorders does not cost a retransmission per
    /// overtaken packet.
    reorder_wait: Duration,
    stats: RecoveryStats,
}

impl<T> Recovery<T> {
    /// An empty buffer.
    pub fn new(config: RecoveryConfig) -> Self {
        Self {
            config,
            next: None,
            highest: None,
            held: BTreeMap::new(),
            missing: BTreeMap::new(),
            out: VecDeque::new(),
            rtt: config.initial_rtt,
            rtt_given: false,
            reorder_wait: Duration::ZERO,
            stats: RecoveryStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> RecoveryStats {
        self.stats
    }

    /// The round trip in use.
    pub fn rtt(&self) -> Duration {
        self.rtt
    }

    /// The round trip as measured elsewhere (ICE, RTCP): used from now on instead of learning
    /// it from the requests' answers, and it tells a retransmission from a packet that was only
    /// overtaken (one that comes back sooner than half a round trip after its request).
    pub fn set_rtt(&mut self, rtt: Duration) {
        if !rtt.is_zero() {
            self.rtt = rtt;
            self.rtt_given = true;
        }
    }

    /// `seq` as an extended number near the highest seen.
    fn extend(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            return u64::from(seq) + (1 << 16);
        };
        let delta = seq.wrapping_sub(highest as u16) as i16;
        highest.saturating_add_signed(i64::from(delta))
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, seq: u16, now: Instant, packet: T) {
        let ext = self.extend(seq);
        let Some(next) = self.next else {
            self.next = Some(ext + 1);
            self.highest = Some(ext);
            self.out.push_back(Output::Packet(seq, packet));
            return;
        };
        if ext < next || self.held.contains_key(&ext) {
            self.stats.late += 1;
            return;
        }
        if let Some(m) = self.missing.remove(&ext) {
            self.stats.recovered += 1;
            match m.last_nack {
                // The first answer to the latest request is one round trip — unless it came
                // sooner than any answer could (the round trip is known from elsewhere).
                Some(asked)
                    if !self.rtt_given || now.saturating_duration_since(asked) >= self.rtt / 2 =>
                {
                    if !self.rtt_given {
                        let sample = now.saturating_duration_since(asked);
                        self.rtt = (self.rtt * 7 + sample) / 8;
                    }
                }
                // Never asked for, or back too soon to be an answer: it was overtaken, and came
                // this late.
                _ => {
                    let late = now.saturating_duration_since(m.since).min(MAX_REORDER_WAIT);
                    self.reorder_wait = self.reorder_wait.max(late);
                }
            }
        }
        let highest = self.highest.unwrap_or(ext);
        if ext > highest {
            // Everything between the highest and this one is missing.
            let gap = ext - highest - 1;
            if gap > u64::from(self.config.max_gap) {
                // An outage: give the old gaps and this one up, and start over from here.
                self.release_all_held();
                self.stats.given_up += gap;
                self.next = Some(ext);
            } else {
                for s in highest + 1..ext {
                    self.missing.insert(
                        s,
                        Missing {
                            since: now,
                            nacks: 0,
                            last_nack: None,
                        },
                    );
                }
            }
            self.highest = Some(ext);
        }
        self.held.insert(ext, packet);
        if self.held.len() > self.config.max_held {
            self.give_up_first();
        }
        self.release();
        self.request(now);
    }

    /// Hands out every held packet up to the first gap.
    fn release(&mut self) {
        let Some(mut next) = self.next else { return };
        while let Some(packet) = self.held.remove(&next) {
            self.out.push_back(Output::Packet(next as u16, packet));
            next += 1;
        }
        self.next = Some(next);
    }

    /// Gives up the first gap and releases what follows it.
    fn give_up_first(&mut self) {
        let Some(next) = self.next else { return };
        let Some(&first_held) = self.held.keys().next() else {
            return;
        };
        let skipped = first_held.saturating_sub(next);
        self.stats.given_up += skipped;
        self.missing.retain(|s, _| *s >= first_held);
        self.next = Some(first_held);
        self.release();
    }

    fn release_all_held(&mut self) {
        while !self.held.is_empty() {
            self.give_up_first();
        }
        self.missing.clear();
    }

    /// How long before a request is repeated.
    fn retry(&self) -> Duration {
        (self.rtt + self.rtt / 4).max(Duration::from_millis(20))
    }

    /// Queues one NACK for every missing packet that is due a request.
    fn request(&mut self, now: Instant) {
        let retry = self.retry();
        let max = self.config.max_nacks;
        let wait = self.reorder_wait;
        // The estimate of how late overtaken packets come decays, so one odd packet does not
        // delay every request for good.
        self.reorder_wait = self.reorder_wait.mul_f64(0.999);
        let due: Vec<u16> = self
            .missing
            .iter_mut()
            .filter(|(_, m)| {
                m.nacks < max
                    && match m.last_nack {
                        None => now.saturating_duration_since(m.since) >= wait,
                        Some(t) => now.saturating_duration_since(t) >= retry,
                    }
            })
            .map(|(s, m)| {
                m.nacks += 1;
                m.last_nack = Some(now);
                *s as u16
            })
            .collect();
        if !due.is_empty() {
            self.stats.nacked += due.len() as u64;
            self.out.push_back(Output::Nack(due));
        }
    }

    /// When the first gap is given up: a round trip after its last request went unanswered,
    /// and never later than [`RecoveryConfig::give_up`] after it was found.
    fn give_up_at(&self) -> Option<Instant> {
        let m = self.missing.values().next()?;
        let cap = m.since + self.config.give_up;
        let exhausted = (m.nacks >= self.config.max_nacks)
            .then(|| m.last_nack.map(|t| t + self.retry()))
            .flatten();
        Some(exhausted.map_or(cap, |e| e.min(cap)))
    }

    /// Gives up gaps waited for too long and repeats requests that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.give_up_at().is_some_and(|at| at <= now) {
            self.give_up_first();
        }
        self.request(now);
    }

    /// The next packet or request, if any.
    pub fn poll(&mut self) -> Option<Output<T>> {
        self.out.pop_front()
    }

    /// When [`Recovery::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = self.retry();
        let max = self.config.max_nacks;
        let give_up = self.give_up_at();
        let wait = self.reorder_wait;
        let repeat = self
            .missing
            .values()
            .filter(|m| m.nacks < max)
            .map(|m| m.last_nack.map_or(m.since + wait, |t| t + retry))
            .min();
        [give_up, repeat].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(r: &mut Recovery<u16>) -> (Vec<u16>, Vec<Vec<u16>>) {
        let (mut packets, mut nacks) = (Vec::new(), Vec::new());
        while let Some(o) = r.poll() {
            match o {
                Output::Packet(s, p) => {
                    assert_eq!(s, p);
                    packets.push(p);
                }
                Output::Nack(n) => nacks.push(n),
            }
        }
        (packets, nacks)
    }

    #[test]
    fn a_whole_sequence_passes_at_once() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default());
        for s in 65_530u16..=65_535 {
            r.push(s, t0, s);
        }
        for s in 0u16..5 {
            r.push(s, t0, s);
        }
        let (packets, nacks) = drain(&mut r);
        assert_eq!(packets.len(), 11);
        assert_eq!(packets[6], 0, "across the wrap");
        assert!(nacks.is_empty());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn a_gap_is_asked_for_held_and_filled() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default());
        r.push(10, t0, 10);
        r.push(13, t0, 13);
        r.push(14, t0, 14);
        let (packets, nacks) = drain(&mut r);
        assert_eq!(packets, vec![10]);
        assert_eq!(nacks, vec![vec![11, 12]]);
        r.push(11, t0 + ms(40), 11);
        assert_eq!(drain(&mut r).0, vec![11]);
        r.push(12, t0 + ms(42), 12);
        assert_eq!(drain(&mut r).0, vec![12, 13, 14]);
        assert_eq!(r.stats().recovered, 2);
        // The round trip moved from 100 ms towards the 40 ms it took.
        assert!(r.rtt() < ms(100) && r.rtt() > ms(80), "{:?}", r.rtt());
        // A duplicate is dropped.
        r.push(12, t0 + ms(50), 12);
        assert_eq!(drain(&mut r).0, Vec::<u16>::new());
        assert_eq!(r.stats().late, 1);
    }

    #[test]
    fn requests_repeat_a_bounded_number_of_times_then_the_gap_is_given_up() {
        let t0 = Instant::now();
        let config = RecoveryConfig {
            initial_rtt: ms(40),
            ..RecoveryConfig::default()
        };
        let mut r = Recovery::new(config);
        r.push(1, t0, 1);
        r.push(3, t0, 3);
        let mut requests = drain(&mut r).1.len();
        let mut now = t0;
        while let Some(at) = r.poll_timeout() {
            assert!(at > now, "the timer must move forward");
            now = at;
            r.handle_timeout(now);
            let (packets, nacks) = drain(&mut r);
            requests += nacks.len();
            if !packets.is_empty() {
                assert_eq!(packets, vec![3]);
                break;
            }
        }
        // Asked for at 0, 50 and 100 ms; given up a retry after the last request.
        assert_eq!(requests, 3);
        assert_eq!(now, t0 + ms(150));
        assert_eq!(r.stats().given_up, 1);
        // The packet coming after all is late.
        r.push(2, now + ms(1), 2);
        assert_eq!(drain(&mut r).0, Vec::<u16>::new());
    }

    #[test]
    fn a_path_that_reorders_is_given_time_before_a_request() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default());
        r.set_rtt(ms(80));
        r.push(1, t0, 1);
        r.push(3, t0, 3);
        // Asked for at once: no reordering seen yet. It was only overtaken, 20 ms late.
        assert_eq!(drain(&mut r).1, vec![vec![2]]);
        r.push(2, t0 + ms(20), 2);
        drain(&mut r);
        // Now a gap waits about that long before its first request.
        r.push(5, t0 + ms(30), 5);
        assert!(drain(&mut r).1.is_empty(), "asked for at once");
        let at = r.poll_timeout().expect("a timer");
        assert!(at >= t0 + ms(49) && at <= t0 + ms(50), "{:?}", at - t0);
        r.handle_timeout(at);
        assert_eq!(drain(&mut r).1, vec![vec![4]]);
    }

    #[test]
    fn an_outage_is_not_asked_for() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig::default());
        r.push(1, t0, 1);
        r.push(500, t0, 500);
        r.push(501, t0, 501);
        let (packets, nacks) = drain(&mut r);
        assert_eq!(packets, vec![1, 500, 501]);
        assert!(nacks.is_empty());
        assert_eq!(r.stats().given_up, 498);
    }

    #[test]
    fn too_many_held_packets_give_the_gap_up() {
        let t0 = Instant::now();
        let mut r = Recovery::new(RecoveryConfig {
            max_held: 4,
            ..RecoveryConfig::default()
        });
        r.push(1, t0, 1);
        for s in 3..=7 {
            r.push(s, t0, s);
        }
        assert_eq!(drain(&mut r).0, vec![1, 3, 4, 5, 6, 7]);
    }
}
