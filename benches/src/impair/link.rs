//! One direction of an impaired path, Sans-IO: a packet goes in at `now` and comes out (or not)
//! at a time the model decides. Nothing here reads a clock or touches a socket, so every rule is
//! tested on virtual time.
//!
//! In the order a packet meets them (as netem and a bottleneck router would apply them):
//! 1. a blackout drops everything while it lasts;
//! 2. the bottleneck: a rate cap in front of a drop-tail queue whose limit is a *time* (how long
//!    the queue may take to drain at the current rate), as `tc tbf latency` — a packet that would
//!    wait longer is dropped, and a dropped packet costs no capacity;
//! 3. random loss after the bottleneck (a lossy last hop: the packet used the capacity and is
//!    then lost), i.i.d. or Gilbert–Elliott;
//! 4. one-way delay plus jitter, uniform in ±jitter; without reordering a packet never overtakes
//!    the one before it (its delivery waits for the previous one's), with reordering it may.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// The link's randomness: SplitMix64 (the corpus's generator), so a scenario replays the same
/// losses and jitter for the same seed.
type Rng = input::corpus::SplitMix64;

/// True with probability `p`.
fn chance(rng: &mut Rng, p: f64) -> bool {
    p > 0.0 && rng.next_f64() < p
}

/// Which packets are lost at random.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Loss {
    /// None.
    #[default]
    None,
    /// Each packet independently with this probability.
    Iid(f64),
    /// The Gilbert–Elliott two-state model: per packet the chain moves good → bad with
    /// `good_to_bad` and bad → good with `bad_to_good`, then the packet is lost with the state's
    /// loss probability.
    GilbertElliott {
        /// P(good → bad) per packet.
        good_to_bad: f64,
        /// P(bad → good) per packet.
        bad_to_good: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl Loss {
    /// Bursty loss with a mean loss rate `mean` and bursts of `burst` packets on average: a
    /// Gilbert–Elliott chain that loses every packet in the bad state and none in the good one
    /// (the "simple Gilbert" model), so burst lengths are geometric with that mean.
    pub fn bursts(mean: f64, burst: f64) -> Loss {
        let bad_to_good = 1.0 / burst.max(1.0);
        let mean = mean.clamp(0.0, 0.99);
        Loss::GilbertElliott {
            good_to_bad: mean * bad_to_good / (1.0 - mean),
            bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// The long-run loss rate the model produces.
    pub fn mean(&self) -> f64 {
        match *self {
            Loss::None => 0.0,
            Loss::Iid(p) => p,
            Loss::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let total = good_to_bad + bad_to_good;
                if total <= 0.0 {
                    return loss_good;
                }
                let bad = good_to_bad / total;
                bad * loss_bad + (1.0 - bad) * loss_good
            }
        }
    }
}

/// How one direction is impaired. The default is a perfect link.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Jitter: each packet's delay varies uniformly within ±this.
    pub jitter: Duration,
    /// Whether jitter may reorder packets.
    pub reorder: bool,
    /// Random loss after the bottleneck.
    pub loss: Loss,
    /// Bottleneck rate in bit/s; 0 for none.
    pub rate_bps: u64,
    /// The bottleneck queue's limit, as the time it takes to drain at the rate (ignored without
    /// a rate).
    pub queue: Duration,
}

/// What became of a packet handed to [`Link::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It will come out at this instant.
    Delivered(Instant),
    /// A blackout dropped it.
    Blackout,
    /// The bottleneck's queue was full.
    QueueFull,
    /// Random loss.
    Lost,
}

/// Packets and bytes by fate, for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets handed in.
    pub sent: u64,
    /// Bytes handed in.
    pub sent_bytes: u64,
    /// Packets that will come (or came) out.
    pub delivered: u64,
    /// Bytes of those.
    pub delivered_bytes: u64,
    /// Dropped by a blackout.
    pub blackout: u64,
    /// Dropped by the full queue.
    pub queue_full: u64,
    /// Lost at random.
    pub lost: u64,
}

/// One direction of the path. Packets are opaque byte vectors.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: Rng,
    /// Gilbert–Elliott state: true while bad.
    bad: bool,
    blackout: bool,
    /// When the bottleneck finishes sending what it has accepted.
    busy_until: Option<Instant>,
    /// The latest delivery time handed out (for in-order delivery).
    last_delivery: Option<Instant>,
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    next_id: u64,
    counters: LinkCounters,
    /// Per delivered packet: how long it waited in the bottleneck queue.
    queue_delays: Vec<Duration>,
}

impl Link {
    /// A link impaired as `config` says, its randomness from `seed`.
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: Rng::new(seed),
            bad: false,
            blackout: false,
            busy_until: None,
            last_delivery: None,
            in_flight: BinaryHeap::new(),
            next_id: 0,
            counters: LinkCounters::default(),
            queue_delays: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// Replaces the configuration (a capacity change, loss starting…); packets already accepted
    /// keep the fate they were given.
    pub fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Changes only the bottleneck rate (0: none).
    pub fn set_rate(&mut self, rate_bps: u64) {
        self.config.rate_bps = rate_bps;
    }

    /// Starts or ends a blackout.
    pub fn set_blackout(&mut self, on: bool) {
        self.blackout = on;
    }

    /// Whether a blackout is on.
    pub fn blackout(&self) -> bool {
        self.blackout
    }

    /// Hands `packet` to the link at `now`.
    pub fn send(&mut self, now: Instant, packet: Vec<u8>) -> Fate {
        self.counters.sent += 1;
        self.counters.sent_bytes += packet.len() as u64;
        if self.blackout {
            self.counters.blackout += 1;
            return Fate::Blackout;
        }
        // The bottleneck.
        let mut departs = now;
        let mut waited = Duration::ZERO;
        if self.config.rate_bps > 0 {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            waited = start - now;
            if waited > self.config.queue {
                self.counters.queue_full += 1;
                return Fate::QueueFull;
            }
            let bits = packet.len() as f64 * 8.0;
            departs = start + Duration::from_secs_f64(bits / self.config.rate_bps as f64);
            self.busy_until = Some(departs);
        }
        // Random loss after it.
        if self.lose() {
            self.counters.lost += 1;
            return Fate::Lost;
        }
        // Delay and jitter.
        let jitter = self.config.jitter.as_secs_f64();
        let offset = if jitter > 0.0 {
            (self.rng.next_f64() * 2.0 - 1.0) * jitter
        } else {
            0.0
        };
        let delay = (self.config.delay.as_secs_f64() + offset).max(0.0);
        let mut at = departs + Duration::from_secs_f64(delay);
        if !self.config.reorder
            && let Some(last) = self.last_delivery
        {
            at = at.max(last);
        }
        self.last_delivery = Some(self.last_delivery.map_or(at, |l| l.max(at)));
        self.counters.delivered += 1;
        self.counters.delivered_bytes += packet.len() as u64;
        self.queue_delays.push(waited);
        self.in_flight.push(Reverse((at, self.next_id, packet)));
        self.next_id += 1;
        Fate::Delivered(at)
    }

    fn lose(&mut self) -> bool {
        match self.config.loss {
            Loss::None => false,
            Loss::Iid(p) => chance(&mut self.rng, p),
            Loss::GilbertElliott {
                good_to_bad,
                bad_to_good,
                loss_good,
                loss_bad,
            } => {
                let flip = if self.bad { bad_to_good } else { good_to_bad };
                if chance(&mut self.rng, flip) {
                    self.bad = !self.bad;
                }
                chance(&mut self.rng, if self.bad { loss_bad } else { loss_good })
            }
        }
    }

    /// The next packet due at or before `now`, if any.
    pub fn receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        let Reverse((at, _, _)) = self.in_flight.peek()?;
        if *at > now {
            return None;
        }
        self.in_flight.pop().map(|Reverse((_, _, p))| p)
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The counters so far.
    pub fn counters(&self) -> LinkCounters {
        self.counters
    }

    /// How long each delivered packet waited in the bottleneck queue, in order.
    pub fn queue_delays(&self) -> &[Duration] {
        &self.queue_delays
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain(link: &mut Link, until: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| link.receive(until)).collect()
    }

    #[test]
    fn a_perfect_link_delivers_at_once_in_order() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::default(), 1);
        for i in 0..10u8 {
            assert_eq!(link.send(t0, vec![i]), Fate::Delivered(t0));
        }
        let got = drain(&mut link, t0);
        assert_eq!(got, (0..10u8).map(|i| vec![i]).collect::<Vec<_>>());
    }

    #[test]
    fn delay_holds_packets_until_due() {
        let t0 = Instant::now();
        let mut link = Link::new(
            LinkConfig {
                delay: ms(50),
                ..LinkConfig::default()
            },
            1,
        );
        link.send(t0, vec![1]);
        assert_eq!(link.receive(t0 + ms(49)), None);
        assert_eq!(link.next_due(), Some(t0 + ms(50)));
        assert_eq!(link.receive(t0 + ms(50)), Some(vec![1]));
    }

    #[test]
    fn the_rate_cap_spaces_packets_and_the_queue_limit_drops() {
        let t0 = Instant::now();
        // 1 Mbit/s: a 1250-byte packet takes 10 ms. A 35 ms queue accepts a wait of up to 35 ms.
        let mut link = Link::new(
            LinkConfig {
                rate_bps: 1_000_000,
                queue: ms(35),
                ..LinkConfig::default()
            },
            1,
        );
        let fates: Vec<Fate> = (0..6).map(|_| link.send(t0, vec![0; 1250])).collect();
        assert_eq!(
            fates,
            vec![
                Fate::Delivered(t0 + ms(10)),
                Fate::Delivered(t0 + ms(20)),
                Fate::Delivered(t0 + ms(30)),
                Fate::Delivered(t0 + ms(40)),
                Fate::QueueFull,
                Fate::QueueFull,
            ]
        );
        assert_eq!(link.queue_delays(), &[ms(0), ms(10), ms(20), ms(30)]);
        // Once the queue drains there is room again.
        assert_eq!(
            link.send(t0 + ms(50), vec![0; 1250]),
            Fate::Delivered(t0 + ms(60))
        );
        let c = link.counters();
        assert_eq!((c.sent, c.delivered, c.queue_full), (7, 5, 2));
    }

    #[test]
    fn iid_loss_matches_its_rate() {
        let t0 = Instant::now();
        let mut link = Link::new(
            LinkConfig {
                loss: Loss::Iid(0.05),
                ..LinkConfig::default()
            },
            7,
        );
        for _ in 0..20_000 {
            link.send(t0, vec![0]);
        }
        let rate = link.counters().lost as f64 / 20_000.0;
        assert!((rate - 0.05).abs() < 0.006, "{rate}");
    }

    #[test]
    fn gilbert_elliott_bursts_have_the_asked_mean_and_length() {
        let t0 = Instant::now();
        let loss = Loss::bursts(0.02, 3.0);
        assert!((loss.mean() - 0.02).abs() < 1e-9);
        let mut link = Link::new(
            LinkConfig {
                loss,
                ..LinkConfig::default()
            },
            11,
        );
        let lost: Vec<bool> = (0..200_000)
            .map(|_| link.send(t0, vec![0]) == Fate::Lost)
            .collect();
        let total = lost.iter().filter(|l| **l).count();
        let bursts = lost.windows(2).filter(|w| w[1] && !w[0]).count();
        let rate = total as f64 / lost.len() as f64;
        let mean_burst = total as f64 / bursts as f64;
        assert!((rate - 0.02).abs() < 0.003, "loss {rate}");
        assert!((mean_burst - 3.0).abs() < 0.3, "burst {mean_burst}");
    }

    #[test]
    fn jitter_without_reordering_keeps_order_and_with_it_does_not() {
        let t0 = Instant::now();
        let config = LinkConfig {
            delay: ms(50),
            jitter: ms(20),
            ..LinkConfig::default()
        };
        let mut ordered = Link::new(config, 3);
        let mut reordering = Link::new(
            LinkConfig {
                reorder: true,
                ..config
            },
            3,
        );
        for i in 0..200u32 {
            let at = t0 + ms(u64::from(i));
            ordered.send(at, i.to_le_bytes().to_vec());
            reordering.send(at, i.to_le_bytes().to_vec());
        }
        let order = |link: &mut Link| -> Vec<u32> {
            drain(link, t0 + ms(1000))
                .into_iter()
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
                .collect()
        };
        let a = order(&mut ordered);
        let b = order(&mut reordering);
        assert_eq!(a, (0..200).collect::<Vec<_>>());
        assert_eq!(b.len(), 200);
        assert!(b.windows(2).any(|w| w[1] < w[0]), "no reordering");
    }

    #[test]
    fn a_blackout_drops_everything_then_lifts() {
        let t0 = Instant::now();
        let mut link = Link::new(LinkConfig::default(), 1);
        link.set_blackout(true);
        assert_eq!(link.send(t0, vec![1]), Fate::Blackout);
        link.set_blackout(false);
        assert_eq!(link.send(t0, vec![2]), Fate::Delivered(t0));
        assert_eq!(drain(&mut link, t0), vec![vec![2]]);
        assert_eq!(link.counters().blackout, 1);
    }
}
