//! Congestion control for players that send no transport-wide feedback: their REMB, or failing
//! that the loss and round trip in their receiver reports.
//!
//! GCC ([`super::peer`]) learns only from TWCC feedback. A player that negotiated no
//! transport-cc — one that offers only REMB and abs-send-time, or `webrtcbin`, whose default
//! offer names the feedback but not the header extension — never sends any, and the node's
//! estimate stayed at its start rate whatever the link did. This module is what leads instead:
//!
//! - [`FallbackRate`], the Sans-IO rule (time is an argument): the receiver's REMB, bounded by
//!   the configured floor and ceiling; without a fresh REMB, the receiver reports' loss, over
//!   windows of their cumulative counters ([`super::loss_meter`]; over 10 % lowers the rate in
//!   proportion, as GCC's loss half does; under 2 % lets it climb about 5 % a second toward the
//!   ceiling) and round trip (a queue building up, the round trip well
//!   over its recent floor, lowers it);
//! - [`FallbackControl`], the interceptor that reads REMB and receiver reports on their way in,
//!   feeds the rule, and publishes its rate into the [`SharedEstimate`] the session reads and to
//!   the pacer (times [`PACING_FACTOR`]) through `Attribute::TargetBitrateChanged`.
//!
//! **Precedence:** TWCC > REMB > receiver reports. Once GCC has had TWCC feedback it leads for
//! the rest of the session and REMB and receiver reports are ignored; a REMB leads for
//! [`REMB_STALE`] after it arrives.
//!
//! ```text
//! read:  wire → CongestionControl (GCC, 1_000) → FallbackControl (1_500) → … → Pacer (3_000)
//! ```
//!
//! The pacer follows the rate on the read leg only, from the attribute on the packet that
//! changed it, so this interceptor sits wire-ward of the pacer; and application-ward of the
//! congestion controller, so that on the read leg it sees a feedback packet after GCC has, and
//! knows whether TWCC has taken charge.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

use super::loss_meter::{LossMeter, sign_extend_24};
use super::peer::{PACING_FACTOR, RateBounds};

/// Where [`FallbackControl`] sits in the interceptor chain: just application-ward of the
/// congestion controller (1 000), wire-ward of the TWCC sender (2 000) and the pacer (3 000).
pub const FALLBACK_SLOT: usize = 1_500;

/// How long a REMB leads after it arrives. Receivers send one every second or more often; one
/// that stops is no longer saying anything about the path, and the receiver reports take over.
pub const REMB_STALE: Duration = Duration::from_secs(5);

/// Loss above this fraction lowers the rate (GCC's loss half uses the same bounds).
pub const HIGH_LOSS: f64 = 0.10;

/// Loss below this fraction lets the rate climb.
pub const LOW_LOSS: f64 = 0.02;

/// How fast the rate climbs on a clean path: this factor per second.
pub const CLIMB_PER_SECOND: f64 = 1.05;

/// The longest gap between two receiver reports that counts toward a climb: a receiver that
/// fell silent for a minute has not vouched for a minute of growth.
pub const MAX_CLIMB_GAP: Duration = Duration::from_secs(5);

/// Two decreases are at least this far apart, so that reports about several streams arriving
/// together (audio and video, each in its own packet) lower the rate once, not once each.
pub const DECREASE_INTERVAL: Duration = Duration::from_millis(200);

/// A round trip this much over its recent floor means a queue is building on the path.
pub const QUEUE_DELAY: Duration = Duration::from_millis(100);

/// What a building queue does to the rate (GCC's delay-based decrease factor).
pub const QUEUE_BACKOFF: f64 = 0.85;

/// The round-trip floor is the lowest sample over this window, so it follows a route change.
pub const RTT_WINDOW: Duration = Duration::from_secs(30);

/// The estimate the session reads, written by GCC once TWCC feedback arrives and by
/// [`FallbackControl`] until then.
#[derive(Debug)]
pub struct SharedEstimate {
    bits_per_second: AtomicU64,
    twcc: AtomicBool,
    /// The player's loss over the latest window of its reception reports (f64 bits,
    /// [`super::loss_meter`]), and how many windows have closed.
    receiver_loss: AtomicU64,
    receiver_reports: AtomicU64,
    /// The share of the bytes sent that are forward error correction (f64 bits, [`super::fec`]).
    repair_share: AtomicU64,
}

impl SharedEstimate {
    /// An estimate at `start` bit/s, with no TWCC feedback yet.
    pub fn new(start: f64) -> Self {
        Self {
            bits_per_second: AtomicU64::new(start.to_bits()),
            twcc: AtomicBool::new(false),
            receiver_loss: AtomicU64::new(0f64.to_bits()),
            receiver_reports: AtomicU64::new(0),
            repair_share: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// The current estimate in bit/s.
    pub fn bits_per_second(&self) -> f64 {
        f64::from_bits(self.bits_per_second.load(Ordering::Relaxed))
    }

    /// Whether TWCC feedback has arrived, so GCC leads.
    pub fn twcc_in_charge(&self) -> bool {
        self.twcc.load(Ordering::Relaxed)
    }

    /// GCC's estimate from TWCC feedback; from now on GCC leads.
    pub fn publish_twcc(&self, bits_per_second: f64) {
        self.twcc.store(true, Ordering::Relaxed);
        self.bits_per_second
            .store(bits_per_second.to_bits(), Ordering::Relaxed);
    }

    /// The player's reports said `fraction` of our packets were lost over a window.
    pub fn note_receiver_loss(&self, fraction: f64) {
        self.receiver_loss
            .store(fraction.to_bits(), Ordering::Relaxed);
        self.receiver_reports.fetch_add(1, Ordering::Relaxed);
    }

    /// How many reception reports have come, and the latest one's loss.
    pub fn receiver_loss(&self) -> (u64, f64) {
        (
            self.receiver_reports.load(Ordering::Relaxed),
            f64::from_bits(self.receiver_loss.load(Ordering::Relaxed)),
        )
    }

    /// The share (0–1) of the bytes sent that are repair packets.
    pub fn publish_repair_share(&self, share: f64) {
        let share = if share.is_finite() {
            share.clamp(0.0, 0.9)
        } else {
            0.0
        };
        self.repair_share.store(share.to_bits(), Ordering::Relaxed);
    }

    /// The share published by [`Self::publish_repair_share`].
    pub fn repair_share(&self) -> f64 {
        f64::from_bits(self.repair_share.load(Ordering::Relaxed))
    }

    /// The fallback's rate; ignored once GCC leads.
    pub fn publish_fallback(&self, bits_per_second: f64) {
        if !self.twcc_in_charge() {
            self.bits_per_second
                .store(bits_per_second.to_bits(), Ordering::Relaxed);
        }
    }
}

/// The rate for a player without TWCC feedback: the Sans-IO rule, driven by REMB values and
/// receiver-report figures with the instant they arrived.
#[derive(Debug, Clone)]
pub struct FallbackRate {
    bounds: RateBounds,
    target: f64,
    last_remb: Option<Instant>,
    last_report: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Recent round trips, oldest first, for their floor.
    rtts: VecDeque<(Instant, Duration)>,
}

impl FallbackRate {
    /// Starts at `bounds.start` (within the bounds).
    pub fn new(bounds: RateBounds) -> Self {
        Self {
            bounds,
            target: bounds.start.clamp(bounds.min, bounds.max),
            last_remb: None,
            last_report: None,
            last_decrease: None,
            rtts: VecDeque::new(),
        }
    }

    /// The current rate in bit/s.
    pub fn target(&self) -> f64 {
        self.target
    }

    /// Whether a REMB arrived less than [`REMB_STALE`] before `now`.
    pub fn remb_in_charge(&self, now: Instant) -> bool {
        self.last_remb
            .is_some_and(|at| now.saturating_duration_since(at) < REMB_STALE)
    }

    /// A REMB of `bits_per_second` arrived at `now`: the rate becomes it, within the bounds.
    /// A value that is not a rate (negative, not finite) is ignored.
    pub fn on_remb(&mut self, now: Instant, bits_per_second: f64) {
        if !bits_per_second.is_finite() || bits_per_second < 0.0 {
            return;
        }
        self.last_remb = Some(now);
        self.target = self.clamp(bits_per_second);
    }

    /// A receiver report arrived at `now`: the fraction of our packets it says were lost since
    /// the last one (0–1), and the round trip it implies, when it echoes one of our sender
    /// reports. Ignored while a REMB leads (the report's time still starts the next climb).
    pub fn on_receiver_report(&mut self, now: Instant, fraction_lost: f64, rtt: Option<Duration>) {
        let since_last = self
            .last_report
            .replace(now)
            .map(|at| now.saturating_duration_since(at));
        let queueing = rtt.is_some_and(|rtt| self.queue_building(now, rtt));
        if self.remb_in_charge(now) {
            return;
        }
        let can_decrease = self
            .last_decrease
            .is_none_or(|at| now.saturating_duration_since(at) >= DECREASE_INTERVAL);
        if fraction_lost > HIGH_LOSS || queueing {
            if can_decrease {
                let loss_factor = if fraction_lost > HIGH_LOSS {
                    1.0 - 0.5 * fraction_lost.min(1.0)
                } else {
                    1.0
                };
                let queue_factor = if queueing { QUEUE_BACKOFF } else { 1.0 };
                self.target = self.clamp(self.target * loss_factor.min(queue_factor));
                self.last_decrease = Some(now);
            }
        } else if fraction_lost < LOW_LOSS
            && let Some(gap) = since_last
        {
            let seconds = gap.min(MAX_CLIMB_GAP).as_secs_f64();
            self.target = self.clamp(self.target * CLIMB_PER_SECOND.powf(seconds));
        }
    }

    /// The lowest round trip over the last [`RTT_WINDOW`], `None` before the first.
    pub fn rtt_floor(&self) -> Option<Duration> {
        self.rtts.iter().map(|(_, rtt)| *rtt).min()
    }

    /// Notes `rtt` and says whether it is [`QUEUE_DELAY`] or more over the floor before it.
    fn queue_building(&mut self, now: Instant, rtt: Duration) -> bool {
        while self
            .rtts
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > RTT_WINDOW)
        {
            self.rtts.pop_front();
        }
        let floor = self.rtt_floor();
        self.rtts.push_back((now, rtt));
        floor.is_some_and(|floor| rtt >= floor + QUEUE_DELAY)
    }

    fn clamp(&self, bits_per_second: f64) -> f64 {
        bits_per_second.clamp(self.bounds.min, self.bounds.max)
    }
}

/// How many of our recent sender reports are remembered for round trips: a receiver echoes the
/// latest it has, and ours go every second or so.
const SENDER_REPORTS_KEPT: usize = 32;

/// The interceptor that feeds [`FallbackRate`] and publishes its rate while GCC has no TWCC
/// feedback; see the module docs for where it sits and why.
pub struct FallbackControl {
    rate: FallbackRate,
    estimate: std::sync::Arc<SharedEstimate>,
    /// Our media streams (their primary SSRCs): reception reports about anything else (a
    /// retransmission stream, another sender) are not ours to act on.
    local: HashSet<u32>,
    /// The player's loss over windows of its reports.
    loss: LossMeter,
    /// The shortest round trip since the last loss window closed.
    window_rtt: Option<Duration>,
    /// Our recent sender reports: the middle 32 bits of their NTP time (what a reception report
    /// echoes as its LSR) and when they left.
    sent_reports: VecDeque<(u32, Instant)>,
    /// The rate the pacer runs at, as far as this interceptor knows.
    pacer_bps: f64,
    /// Whether this interceptor has moved the pacer from where GCC would have it.
    moved_pacer: bool,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl FallbackControl {
    /// A controller within `bounds` publishing into `estimate`. The pacer must have been built
    /// at `bounds.start` × [`PACING_FACTOR`].
    pub fn new(bounds: RateBounds, estimate: std::sync::Arc<SharedEstimate>) -> Self {
        let rate = FallbackRate::new(bounds);
        Self {
            pacer_bps: rate.target() * PACING_FACTOR,
            rate,
            estimate,
            local: HashSet::new(),
            loss: LossMeter::default(),
            window_rtt: None,
            sent_reports: VecDeque::new(),
            moved_pacer: false,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// The round trip a reception report implies: now, less when the sender report it echoes
    /// left, less the delay the receiver says it held that report.
    fn round_trip(&self, now: Instant, report: &ReceptionReport) -> Option<Duration> {
        if report.last_sender_report == 0 {
            return None;
        }
        let sent = self
            .sent_reports
            .iter()
            .rev()
            .find(|(ntp, _)| *ntp == report.last_sender_report)?
            .1;
        // DLSR is in units of 1/65536 s.
        let held = Duration::from_secs_f64(f64::from(report.delay) / 65_536.0);
        now.saturating_duration_since(sent).checked_sub(held)
    }

    /// Feeds the rule what one compound packet says: its REMBs, and its reception reports about
    /// our streams — their loss over the [`LossMeter`]'s windows, and their shortest round trip
    /// since the last window — as one report once a window closes.
    fn ingest(&mut self, now: Instant, packets: &[Box<dyn rtc::rtcp::Packet>]) {
        let mut window_loss: Option<f64> = None;
        for packet in packets {
            let any = packet.as_any();
            let reports: &[ReceptionReport] =
                if let Some(remb) = any.downcast_ref::<ReceiverEstimatedMaximumBitrate>() {
                    self.rate.on_remb(now, f64::from(remb.bitrate));
                    continue;
                } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    &sr.reports
                } else {
                    continue;
                };
            for report in reports.iter().filter(|r| self.local.contains(&r.ssrc)) {
                if let Some(sample) = self.round_trip(now, report) {
                    self.window_rtt = Some(self.window_rtt.map_or(sample, |r| r.min(sample)));
                }
                if let Some(loss) = self.loss.on_report(
                    now,
                    report.ssrc,
                    report.last_sequence_number,
                    sign_extend_24(report.total_lost),
                ) {
                    window_loss = Some(loss);
                }
            }
        }
        if let Some(fraction) = window_loss {
            self.estimate.note_receiver_loss(fraction);
            let rtt = self.window_rtt.take();
            self.rate.on_receiver_report(now, fraction, rtt);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FallbackControl {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let changed = Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            };
            if self.estimate.twcc_in_charge() {
                // GCC leads; the receivers' loss still feeds its loss half (`loss_cap`).
                self.ingest(msg.now, packets);
                // GCC leads. If this interceptor had moved the pacer, hand it back to GCC's
                // estimate once, unless GCC has just set it on this very packet.
                if std::mem::take(&mut self.moved_pacer) && !msg.message.has(&changed) {
                    msg.message.add(Attribute::TargetBitrateChanged {
                        bits_per_second: self.estimate.bits_per_second() * PACING_FACTOR,
                    });
                }
            } else {
                self.ingest(msg.now, packets);
                let target = self.rate.target();
                self.estimate.publish_fallback(target);
                let pace = target * PACING_FACTOR;
                if pace != self.pacer_bps {
                    self.pacer_bps = pace;
                    self.moved_pacer = true;
                    msg.message.add(Attribute::TargetBitrateChanged {
                        bits_per_second: pace,
                    });
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for sr in packets
                .iter()
                .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                .filter(|sr| self.local.contains(&sr.ssrc))
            {
                // The middle 32 bits of the 64-bit NTP time, as a reception report's LSR has it.
                let ntp = (sr.ntp_time >> 16) as u32;
                if self.sent_reports.len() == SENDER_REPORTS_KEPT {
                    self.sent_reports.pop_front();
                }
                self.sent_reports.push_back((ntp, msg.now));
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for FallbackControl {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.local.insert(info.ssrc);
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.local.remove(&info.ssrc);
        self.loss.forget(info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rtc::interceptor::AttributedPacket;
    use rtc::shared::TransportContext;

    use super::*;

    const BOUNDS: RateBounds = RateBounds {
        start: 2_000_000.0,
        min: 300_000.0,
        max: 6_000_000.0,
    };

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 1e-9
    }

    #[test]
    fn a_remb_sets_the_rate_within_the_bounds() {
        let t0 = Instant::now();
        let mut rate = FallbackRate::new(BOUNDS);
        assert_eq!(rate.target(), BOUNDS.start);
        rate.on_remb(t0, 800_000.0);
        assert_eq!(rate.target(), 800_000.0);
        rate.on_remb(t0, 50_000_000.0);
        assert_eq!(rate.target(), BOUNDS.max, "the configured ceiling holds");
        rate.on_remb(t0, 10_000.0);
        assert_eq!(rate.target(), BOUNDS.min, "and the floor");
        rate.on_remb(t0, f64::NAN);
        rate.on_remb(t0, -1.0);
        assert_eq!(rate.target(), BOUNDS.min, "nonsense is ignored");
    }

    #[test]
    fn a_clean_path_climbs_about_five_percent_a_second_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut rate = FallbackRate::new(BOUNDS);
        // The first report only starts the clock.
        rate.on_receiver_report(t0, 0.0, None);
        assert_eq!(rate.target(), BOUNDS.start);
        for s in 1..=10 {
            rate.on_receiver_report(t0 + secs(f64::from(s)), 0.01, None);
        }
        let want = BOUNDS.start * 1.05f64.powi(10);
        assert!(close(rate.target(), want), "{} vs {want}", rate.target());
        // Reports every 2.5 s climb as fast per second.
        let mut sparse = FallbackRate::new(BOUNDS);
        for i in 0..=4 {
            sparse.on_receiver_report(t0 + secs(2.5 * f64::from(i)), 0.0, None);
        }
        assert!(
            close(sparse.target(), want),
            "{} vs {want}",
            sparse.target()
        );
        for s in 11..=60 {
            rate.on_receiver_report(t0 + secs(f64::from(s)), 0.0, None);
        }
        assert_eq!(rate.target(), BOUNDS.max);
    }

    #[test]
    fn a_long_silence_does_not_count_as_a_long_climb() {
        let t0 = Instant::now();
        let mut rate = FallbackRate::new(BOUNDS);
        rate.on_receiver_report(t0, 0.0, None);
        rate.on_receiver_report(t0 + secs(60.0), 0.0, None);
        let want = BOUNDS.start * 1.05f64.powf(MAX_CLIMB_GAP.as_secs_f64());
        assert!(close(rate.target(), want), "{} vs {want}", rate.target());
    }

    #[test]
    fn heavy_loss_lowers_the_rate_in_proportion_and_moderate_loss_holds_it() {
        let t0 = Instant::now();
        let mut rate = FallbackRate::new(BOUNDS);
        rate.on_receiver_report(t0, 0.05, None);
        rate.on_receiver_report(t0 + secs(1.0), 0.05, None);
        assert_eq!(rate.target(), BOUNDS.start, "5 % loss is inside the band");
        rate.on_receiver_report(t0 + secs(2.0), 0.25, None);
        assert!(
            close(rate.target(), BOUNDS.start * 0.875),
            "{}",
            rate.target()
        );
        // A second report at once (another stream's) does not lower it again.
        rate.on_receiver_report(t0 + secs(2.01), 0.25, None);
        assert!(
            close(rate.target(), BOUNDS.start * 0.875),
            "{}",
            rate.target()
        );
        for s in 3..40 {
            rate.on_receiver_report(t0 + secs(f64::from(s)), 0.5, None);
        }
        assert_eq!(rate.target(), BOUNDS.min, "never under the floor");
    }

    #[test]
    fn a_building_queue_lowers_the_rate() {
        let t0 = Instant::now();
        let mut rate = FallbackRate::new(BOUNDS);
        for s in 0..3 {
            rate.on_receiver_report(t0 + secs(f64::from(s)), 0.05, Some(secs(0.040)));
        }
        assert_eq!(rate.rtt_floor(), Some(secs(0.040)));
        assert_eq!(rate.target(), BOUNDS.start);
        // 60 ms over the floor: jitter, not a queue.
        rate.on_receiver_report(t0 + secs(3.0), 0.0, Some(secs(0.100)));
        assert!(rate.target() > BOUNDS.start, "{}", rate.target());
        let before = rate.target();
        rate.on_receiver_report(t0 + secs(4.0), 0.0, Some(secs(0.300)));
        assert!(
            close(rate.target(), before * QUEUE_BACKOFF),
            "{}",
            rate.target()
        );
        // The floor follows a route change once the old samples age out.
        let later = t0 + RTT_WINDOW + secs(10.0);
        rate.on_receiver_report(later, 0.0, Some(secs(0.300)));
        assert_eq!(rate.rtt_floor(), Some(secs(0.300)));
    }

    #[test]
    fn a_fresh_remb_leads_and_a_stale_one_hands_over_to_the_reports() {
        let t0 = Instant::now();
        let mut rate = FallbackRate::new(BOUNDS);
        rate.on_remb(t0, 1_000_000.0);
        rate.on_receiver_report(t0 + secs(1.0), 0.4, None);
        rate.on_receiver_report(t0 + secs(2.0), 0.0, None);
        assert_eq!(rate.target(), 1_000_000.0, "the REMB leads");
        assert!(rate.remb_in_charge(t0 + secs(4.9)));
        assert!(!rate.remb_in_charge(t0 + REMB_STALE));
        // Stale: the reports carry on from the REMB's rate.
        rate.on_receiver_report(t0 + secs(6.0), 0.0, None);
        assert!(
            close(rate.target(), 1_000_000.0 * 1.05f64.powi(4)),
            "{}",
            rate.target()
        );
    }

    fn rtcp(now: Instant, packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    fn remb(bps: f32) -> Box<dyn rtc::rtcp::Packet> {
        Box::new(ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate: bps,
            ssrcs: vec![VIDEO],
        })
    }

    /// A report about `ssrc`: highest sequence number `highest`, `lost` lost so far.
    fn receiver_report(
        ssrc: u32,
        highest: u32,
        lost: u32,
        lsr: u32,
        dlsr: u32,
    ) -> Box<dyn rtc::rtcp::Packet> {
        Box::new(ReceiverReport {
            ssrc: 1,
            reports: vec![ReceptionReport {
                ssrc,
                last_sequence_number: highest,
                total_lost: lost,
                last_sender_report: lsr,
                delay: dlsr,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    const VIDEO: u32 = 0x1234;

    /// The pacer rate a packet carries out of the interceptor, if any.
    fn paced(control: &mut FallbackControl) -> Option<f64> {
        let msg = control.poll_read().expect("the packet passes on");
        assert!(control.poll_read().is_none());
        match msg.message.get(&Attribute::TargetBitrateChanged {
            bits_per_second: 0.0,
        }) {
            Some(Attribute::TargetBitrateChanged { bits_per_second }) => Some(*bits_per_second),
            _ => None,
        }
    }

    fn control() -> (FallbackControl, Arc<SharedEstimate>) {
        let estimate = Arc::new(SharedEstimate::new(BOUNDS.start));
        let mut control = FallbackControl::new(BOUNDS, estimate.clone());
        control.bind_local_stream(&StreamInfo {
            ssrc: VIDEO,
            ..Default::default()
        });
        (control, estimate)
    }

    #[test]
    fn a_remb_reaches_the_estimate_and_the_pacer_once() {
        let t0 = Instant::now();
        let (mut control, estimate) = control();
        control
            .handle_read(rtcp(t0, vec![remb(800_000.0)]))
            .expect("read");
        assert_eq!(estimate.bits_per_second(), 800_000.0);
        assert_eq!(paced(&mut control), Some(800_000.0 * PACING_FACTOR));
        control
            .handle_read(rtcp(t0 + secs(0.2), vec![remb(800_000.0)]))
            .expect("read");
        assert_eq!(
            paced(&mut control),
            None,
            "an unchanged rate is not announced again"
        );
    }

    #[test]
    fn receiver_reports_about_our_streams_move_the_rate_and_others_do_not() {
        let t0 = Instant::now();
        let (mut control, estimate) = control();
        for (at, lost) in [(0.0, 0), (1.0, 50)] {
            control
                .handle_read(rtcp(
                    t0 + secs(at),
                    vec![receiver_report(99, 1000 + 100 * lost, lost, 0, 0)],
                ))
                .expect("read");
            assert_eq!(
                paced(&mut control),
                None,
                "another stream's loss is not ours"
            );
        }
        assert_eq!(estimate.bits_per_second(), BOUNDS.start);
        // The first report about our video only starts the count; 25 of the next 100 packets
        // lost is 25 % loss.
        control
            .handle_read(rtcp(t0, vec![receiver_report(VIDEO, 1000, 3, 0, 0)]))
            .expect("read");
        assert_eq!(paced(&mut control), None);
        control
            .handle_read(rtcp(
                t0 + secs(0.6),
                vec![receiver_report(VIDEO, 1100, 28, 0, 0)],
            ))
            .expect("read");
        let want = BOUNDS.start * 0.875;
        assert!(
            close(estimate.bits_per_second(), want),
            "{}",
            estimate.bits_per_second()
        );
        assert_eq!(paced(&mut control), Some(want * PACING_FACTOR));
    }

    #[test]
    fn the_round_trip_is_measured_against_our_sender_reports() {
        let t0 = Instant::now();
        let (mut control, _) = control();
        let ntp_time: u64 = 0xAABB_CCDD_EEFF_0011;
        let sr = SenderReport {
            ssrc: VIDEO,
            ntp_time,
            ..Default::default()
        };
        control
            .handle_write(rtcp(t0, vec![Box::new(sr)]))
            .expect("write");
        assert!(
            control.poll_write().is_some(),
            "the report goes on to the wire"
        );
        // Echoed 250 ms later, held 50 ms by the receiver (DLSR in 1/65536 s).
        let lsr = (ntp_time >> 16) as u32;
        let dlsr = 65_536 / 20;
        control
            .handle_read(rtcp(
                t0 + secs(0.250),
                vec![receiver_report(VIDEO, 100, 0, lsr, dlsr)],
            ))
            .expect("read");
        assert_eq!(
            control.rate.rtt_floor(),
            None,
            "the rule hears of it when the loss window closes"
        );
        control
            .handle_read(rtcp(
                t0 + secs(0.8),
                vec![receiver_report(VIDEO, 200, 0, 0, 0)],
            ))
            .expect("read");
        let rtt = control.rate.rtt_floor().expect("a round trip");
        assert!((rtt.as_secs_f64() - 0.200).abs() < 1e-3, "{rtt:?}");
        // An LSR we never sent gives none.
        control
            .handle_read(rtcp(
                t0 + secs(1.4),
                vec![receiver_report(VIDEO, 300, 0, 7, 0)],
            ))
            .expect("read");
        assert_eq!(control.rate.rtts.len(), 1);
    }

    #[test]
    fn once_twcc_leads_remb_is_ignored_and_the_pacer_is_handed_back() {
        let t0 = Instant::now();
        let (mut control, estimate) = control();
        control
            .handle_read(rtcp(t0, vec![remb(800_000.0)]))
            .expect("read");
        assert_eq!(paced(&mut control), Some(800_000.0 * PACING_FACTOR));
        // GCC has had TWCC feedback (its interceptor sits wire-ward of this one).
        estimate.publish_twcc(3_000_000.0);
        control
            .handle_read(rtcp(t0 + secs(0.1), vec![remb(500_000.0)]))
            .expect("read");
        assert_eq!(
            estimate.bits_per_second(),
            3_000_000.0,
            "the REMB is ignored"
        );
        assert_eq!(
            paced(&mut control),
            Some(3_000_000.0 * PACING_FACTOR),
            "the pacer goes back to GCC's estimate"
        );
        for (at, highest, lost) in [(0.2, 100, 0), (0.8, 200, 80)] {
            control
                .handle_read(rtcp(
                    t0 + secs(at),
                    vec![receiver_report(VIDEO, highest, lost, 0, 0)],
                ))
                .expect("read");
            assert_eq!(paced(&mut control), None);
        }
        assert_eq!(
            estimate.bits_per_second(),
            3_000_000.0,
            "and so are the reports"
        );
        estimate.publish_fallback(1.0);
        assert_eq!(estimate.bits_per_second(), 3_000_000.0);
    }
}
