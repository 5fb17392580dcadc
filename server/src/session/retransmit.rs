//! A retransmission budget: which NACKed packets the node sends again.
//!
//! webrtc-rs's NACK responder resends every packet every time it is asked. Over a congested
//! link that is how a stream dies: the bottleneck drops packets, the receiver asks for them,
//! the retransmissions join the queue that dropped them, more is dropped and asked for — the
//! impairment lab measured retransmissions at 3–7× the media under a 2 Mbit/s cap, and
//! glass-to-glass in seconds. Here a packet is resent only while it can still help:
//!
//! - **by age**: not once it was first sent longer ago than [`BudgetConfig::max_age`] (its
//!   frame's deadline has passed: by the time a resend arrives the picture has moved on);
//! - **per packet**: at most [`BudgetConfig::max_per_packet`] times, and not again within
//!   [`BudgetConfig::min_interval`] (an earlier resend is still on its way);
//! - **by rate**: retransmissions take at most [`BudgetConfig::rate_share`] of the congestion
//!   estimate over the last [`BudgetConfig::window`].
//!
//! A packet refused because it is past its deadline, was resent as often as allowed, or is
//! forgotten cannot be repaired any more, so the receiver needs a keyframe: [`RetransmitFilter`]
//! hands the application a picture-loss indication in its place (the session core merges
//! keyframe requests), rather than letting the receiver wait for a packet that will not come. A
//! packet refused for the rate is only refused for now: the receiver asks again if it still
//! needs it (over a path that reorders, most such requests are for packets that are only late).
//!
//! [`RetransmitBudget`] is the Sans-IO decision; [`RetransmitFilter`] is the interceptor that
//! sits between the pacer and the NACK responder, sees every packet sent and every NACK
//! received, and passes the responder only the sequence numbers the budget allows.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

use super::peer::BitrateEstimate;
use crate::metrics::SessionMetrics;

/// The budget's rules.
#[derive(Debug, Clone, Copy)]
pub struct BudgetConfig {
    /// A packet first sent longer ago than this is not resent.
    pub max_age: Duration,
    /// Resends per packet.
    pub max_per_packet: u32,
    /// A packet is not resent again sooner than this after its last resend.
    pub min_interval: Duration,
    /// Retransmissions' share of the congestion estimate.
    pub rate_share: f64,
    /// The window the share is measured over.
    pub window: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            max_age: Duration::from_millis(500),
            max_per_packet: 2,
            min_interval: Duration::from_millis(40),
            rate_share: 0.35,
            window: Duration::from_millis(500),
        }
    }
}

impl BudgetConfig {
    /// The bytes retransmissions may take per [`Self::window`] at a rate of `rate_bps`.
    fn allowance(&self, rate_bps: f64) -> f64 {
        rate_bps.max(0.0) / 8.0 * self.window.as_secs_f64() * self.rate_share
    }
}

/// What the budget says about one requested packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it again.
    Resend,
    /// A resend is already on its way.
    AlreadySent,
    /// Its frame's deadline has passed.
    TooOld,
    /// It was resent as often as allowed.
    Exhausted,
    /// Retransmissions have used their share of the rate.
    OverBudget,
    /// Not in the history (never sent, or long forgotten).
    Unknown,
}

/// From this much loss on the path (the player's reports), an allowed resend goes out twice: a
/// resend is lost as often as the original, and a lost resend costs the receiver another round
/// trip — at 5 % loss each way most of the freezes left were exactly that — while the second
/// copy costs a few per cent of the rate (the copies count against the same share).
pub const SECOND_COPY_LOSS: f64 = 0.01;

/// Where the filter sits in the interceptor chain: between the pacer (3 000) and the NACK
/// responder (4 000).
pub const RETRANSMIT_SLOT: usize = 3_500;

/// How many packets per stream the history remembers (a power of two).
const HISTORY: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Sent {
    seq: u16,
    at: Instant,
    size: usize,
    resends: u32,
    last_resend: Option<Instant>,
}

/// The Sans-IO decision: fed with every packet sent, asked about every packet requested.
#[derive(Debug)]
pub struct RetransmitBudget {
    config: BudgetConfig,
    streams: Vec<(u32, Vec<Option<Sent>>)>,
    /// Bytes resent, with when, over the window.
    recent: VecDeque<(Instant, usize)>,
    recent_bytes: usize,
}

impl RetransmitBudget {
    /// An empty budget.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            config,
            streams: Vec::new(),
            recent: VecDeque::new(),
            recent_bytes: 0,
        }
    }

    fn history(&mut self, ssrc: u32) -> &mut Vec<Option<Sent>> {
        let i = match self.streams.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                self.streams.push((ssrc, vec![None; HISTORY]));
                self.streams.len() - 1
            }
        };
        &mut self.streams[i].1
    }

    /// A media packet of stream `ssrc` left at `now`.
    pub fn sent(&mut self, ssrc: u32, seq: u16, size: usize, now: Instant) {
        self.history(ssrc)[usize::from(seq) % HISTORY] = Some(Sent {
            seq,
            at: now,
            size,
            resends: 0,
            last_resend: None,
        });
    }

    /// Whether packet `seq` of `ssrc`, requested at `now`, is sent again, the estimate being
    /// `rate_bps`. A `Resend` is counted against the budget.
    pub fn judge(&mut self, ssrc: u32, seq: u16, now: Instant, rate_bps: f64) -> Verdict {
        let config = self.config;
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > config.window)
        {
            if let Some((_, n)) = self.recent.pop_front() {
                self.recent_bytes -= n;
            }
        }
        let allowance = config.allowance(rate_bps);
        let recent_bytes = self.recent_bytes;
        let slot = &mut self.history(ssrc)[usize::from(seq) % HISTORY];
        let Some(sent) = slot.as_mut().filter(|s| s.seq == seq) else {
            return Verdict::Unknown;
        };
        if now.saturating_duration_since(sent.at) > config.max_age {
            return Verdict::TooOld;
        }
        if sent
            .last_resend
            .is_some_and(|t| now.saturating_duration_since(t) < config.min_interval)
        {
            return Verdict::AlreadySent;
        }
        if sent.resends >= config.max_per_packet {
            return Verdict::Exhausted;
        }
        if (recent_bytes + sent.size) as f64 > allowance {
            return Verdict::OverBudget;
        }
        sent.resends += 1;
        sent.last_resend = Some(now);
        let size = sent.size;
        self.recent.push_back((now, size));
        self.recent_bytes += size;
        Verdict::Resend
    }

    /// Whether a second copy of packet `seq` of `ssrc`, just judged [`Verdict::Resend`] at
    /// `now`, fits the rate share too; if so it is counted against it.
    pub fn second_copy(&mut self, ssrc: u32, seq: u16, now: Instant, rate_bps: f64) -> bool {
        let config = self.config;
        let allowance = config.allowance(rate_bps);
        let recent_bytes = self.recent_bytes;
        let slot = &mut self.history(ssrc)[usize::from(seq) % HISTORY];
        let Some(size) = slot.as_ref().filter(|s| s.seq == seq).map(|s| s.size) else {
            return false;
        };
        if (recent_bytes + size) as f64 > allowance {
            return false;
        }
        self.recent.push_back((now, size));
        self.recent_bytes += size;
        true
    }
}

/// The interceptor: between the pacer and the NACK responder (see the module docs).
pub struct RetransmitFilter {
    budget: RetransmitBudget,
    /// The congestion estimate the session follows.
    estimate: BitrateEstimate,
    metrics: Arc<SessionMetrics>,
    /// Streams whose packets are remembered (the media streams; not their RTX streams).
    media: HashSet<u32>,
    /// Their forward-error-correction streams (not retransmissions).
    repair: HashSet<u32>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for RetransmitFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetransmitFilter")
            .field("budget", &self.budget)
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

impl RetransmitFilter {
    /// A filter reading the estimate from `estimate` and counting into the session's
    /// `metrics` (`rtx_packets`, `rtx_bytes`, `rtx_refused`).
    pub fn new(
        config: BudgetConfig,
        estimate: BitrateEstimate,
        metrics: Arc<SessionMetrics>,
    ) -> Self {
        Self {
            budget: RetransmitBudget::new(config),
            estimate,
            metrics,
            media: HashSet::new(),
            repair: HashSet::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// `nack` with only the packets the budget allows (`None` when none is), the ones to be
    /// sent a second time (on a lossy path), and whether a keyframe is needed in place of the
    /// refused ones.
    fn filter(
        &mut self,
        nack: &TransportLayerNack,
        now: Instant,
    ) -> (Option<TransportLayerNack>, Option<TransportLayerNack>, bool) {
        let rate = self.estimate.bits_per_second();
        let twice = self.estimate.path_loss() >= SECOND_COPY_LOSS;
        let mut allowed = Vec::new();
        let mut copies = Vec::new();
        let mut keyframe = false;
        for pair in &nack.nacks {
            for seq in pair.packet_list() {
                match self.budget.judge(nack.media_ssrc, seq, now, rate) {
                    Verdict::Resend => {
                        allowed.push(seq);
                        if twice && self.budget.second_copy(nack.media_ssrc, seq, now, rate) {
                            copies.push(seq);
                        }
                    }
                    Verdict::AlreadySent => {}
                    // Refused for now: the receiver asks again if it still needs it (a path
                    // that reorders has it NACK packets that are only late; a keyframe for
                    // each would cost far more than the retransmissions saved).
                    Verdict::OverBudget => {
                        self.metrics.rtx_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Verdict::TooOld | Verdict::Exhausted | Verdict::Unknown => {
                        self.metrics.rtx_refused.fetch_add(1, Ordering::Relaxed);
                        keyframe = true;
                    }
                }
            }
        }
        let request = |seqs: &[u16]| {
            (!seqs.is_empty()).then(|| TransportLayerNack {
                sender_ssrc: nack.sender_ssrc,
                media_ssrc: nack.media_ssrc,
                nacks: nack_pairs_from_sequence_numbers(seqs),
            })
        };
        (request(&allowed), request(&copies), keyframe)
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RetransmitFilter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && packets
                .iter()
                .any(|p| p.as_any().is::<TransportLayerNack>())
        {
            let mut out: Vec<Box<dyn rtc::rtcp::Packet>> = Vec::with_capacity(packets.len());
            let mut lost_media = Vec::new();
            for p in packets.clone() {
                let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() else {
                    out.push(p);
                    continue;
                };
                let (allowed, copies, keyframe) = self.filter(nack, msg.now);
                // The responder resends once per request: a second request, a second copy.
                for request in [allowed, copies].into_iter().flatten() {
                    out.push(Box::new(request));
                }
                if keyframe && !lost_media.contains(&nack.media_ssrc) {
                    lost_media.push(nack.media_ssrc);
                }
            }
            for media_ssrc in lost_media {
                out.push(Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                }));
            }
            if out.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(out);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &msg.message.packet {
            let ssrc = rtp.header.ssrc;
            if self.media.contains(&ssrc) {
                self.budget.sent(
                    ssrc,
                    rtp.header.sequence_number,
                    rtp.marshal_size(),
                    msg.now,
                );
            } else if !self.repair.contains(&ssrc) {
                // The responder's resends, on the RTX stream.
                self.metrics.rtx_packets.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .rtx_bytes
                    .fetch_add(rtp.marshal_size() as u64, Ordering::Relaxed);
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for RetransmitFilter {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.media.insert(info.ssrc);
        if let Some(fec) = info.ssrc_fec {
            self.repair.insert(fec);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.media.remove(&info.ssrc);
        if let Some(fec) = info.ssrc_fec {
            self.repair.remove(&fec);
        }
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    const RATE: f64 = 4_000_000.0;

    #[test]
    fn a_fresh_packet_is_resent_a_bounded_number_of_times() {
        let t0 = Instant::now();
        let mut b = RetransmitBudget::new(BudgetConfig::default());
        b.sent(1, 100, 1200, t0);
        assert_eq!(b.judge(1, 100, t0 + ms(50), RATE), Verdict::Resend);
        // Asked again before the resend could have arrived.
        assert_eq!(b.judge(1, 100, t0 + ms(60), RATE), Verdict::AlreadySent);
        assert_eq!(b.judge(1, 100, t0 + ms(120), RATE), Verdict::Resend);
        assert_eq!(b.judge(1, 100, t0 + ms(200), RATE), Verdict::Exhausted);
    }

    #[test]
    fn a_packet_past_its_deadline_or_unknown_is_not_resent() {
        let t0 = Instant::now();
        let mut b = RetransmitBudget::new(BudgetConfig::default());
        b.sent(1, 7, 1200, t0);
        assert_eq!(b.judge(1, 7, t0 + ms(501), RATE), Verdict::TooOld);
        assert_eq!(b.judge(1, 8, t0 + ms(10), RATE), Verdict::Unknown);
        assert_eq!(b.judge(2, 7, t0 + ms(10), RATE), Verdict::Unknown);
        // A slot reused by a newer packet does not answer for the old one.
        b.sent(1, 7 + HISTORY as u16, 1200, t0);
        assert_eq!(b.judge(1, 7, t0 + ms(10), RATE), Verdict::Unknown);
    }

    #[test]
    fn retransmissions_keep_to_their_share_of_the_rate() {
        let t0 = Instant::now();
        let mut b = RetransmitBudget::new(BudgetConfig::default());
        // 1 Mbit/s: 35 % of 0.5 s is 21 875 bytes, 18 packets of 1200.
        for seq in 0..100u16 {
            b.sent(1, seq, 1200, t0);
        }
        let resent = (0..100u16)
            .filter(|s| b.judge(1, *s, t0 + ms(20), 1_000_000.0) == Verdict::Resend)
            .count();
        assert_eq!(resent, 18);
        // Once the window has passed there is room again.
        assert_eq!(b.judge(1, 99, t0 + ms(530), 1_000_000.0), Verdict::TooOld);
        b.sent(1, 200, 1200, t0 + ms(500));
        assert_eq!(b.judge(1, 200, t0 + ms(530), 1_000_000.0), Verdict::Resend);
    }

    fn tagged(packet: Packet, now: Instant) -> TaggedPacket {
        TaggedPacket {
            now,
            transport: Default::default(),
            message: rtc::interceptor::AttributedPacket::new(packet),
        }
    }

    #[test]
    fn the_filter_passes_allowed_packets_and_asks_for_a_keyframe_for_the_rest() {
        let t0 = Instant::now();
        let estimate = BitrateEstimate::fixed(RATE);
        let metrics = Arc::new(SessionMetrics::default());
        let mut f = RetransmitFilter::new(BudgetConfig::default(), estimate, metrics.clone());
        f.bind_local_stream(&StreamInfo {
            ssrc: 42,
            ..StreamInfo::default()
        });
        for seq in [10u16, 11] {
            let mut rtp = rtc::rtp::Packet::default();
            rtp.header.ssrc = 42;
            rtp.header.sequence_number = seq;
            rtp.payload = vec![0u8; 1000].into();
            f.handle_write(tagged(Packet::Rtp(rtp), t0)).expect("write");
            f.poll_write().expect("passed on");
        }
        // 10 and 11 are fresh; 12 was never sent.
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 42,
            nacks: nack_pairs_from_sequence_numbers(&[10, 11, 12]),
        };
        f.handle_read(tagged(Packet::Rtcp(vec![Box::new(nack)]), t0 + ms(30)))
            .expect("read");
        let out = f.poll_read().expect("passed on");
        let Packet::Rtcp(packets) = &out.message.packet else {
            panic!("not RTCP");
        };
        let nack = packets[0]
            .as_any()
            .downcast_ref::<TransportLayerNack>()
            .expect("the NACK first");
        assert_eq!(nack.nacks[0].packet_list(), vec![10, 11]);
        let pli = packets[1]
            .as_any()
            .downcast_ref::<PictureLossIndication>()
            .expect("a keyframe request for 12");
        assert_eq!(pli.media_ssrc, 42);
        assert_eq!(metrics.rtx_refused.load(Ordering::Relaxed), 1);
    }
}
