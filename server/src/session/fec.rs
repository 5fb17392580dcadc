//! Forward error correction for video: FlexFEC-03 repair packets, one block per frame, as many
//! as the player's measured loss calls for.
//!
//! NACK repairs a lost packet one round trip later, and a receiver that renders as soon as it
//! can shows the frames that waited for it all at once: at 5 % loss each way, 60 fps and
//! 6 Mbit/s (ten packets a frame, four frames in ten with a loss) Chromium presented 20 of the
//! 60 frames a second and froze ten times in 30 s, each freeze a retransmission lost again. A
//! repair packet sent with the frame repairs a loss on arrival. Here:
//!
//! - a **block** is the packets of one frame (it closes on the RTP marker bit), or
//!   [`MAX_BLOCK`] packets of a large one, so a frame's repair leaves right behind it and never
//!   waits for the next frame;
//! - the **number of repair packets** per block ([`repair_count`]) is the smallest that brings
//!   the chance that the frame still needs a retransmission under [`FRAME_TARGET`] at the loss
//!   the player reports (its reception reports' cumulative counters, [`super::loss_meter`]),
//!   at most [`MAX_OVERHEAD`] of the block; none below [`MIN_LOSS`], so a clean path pays
//!   nothing. Repair packets are interleaved (the first protects packets 0, k, 2k…), so a
//!   burst lands in different ones;
//! - FEC takes its bytes from the encoder, not on top of the estimate: the share of the bytes
//!   sent that were repair is published in the [`SharedEstimate`], and the encoder's target is
//!   the estimate less that share ([`super::peer::BitrateEstimate`]).
//!
//! It is negotiated only when the player offers `video/flexfec-03` (Chromium does by default);
//! the stream then has a repair SSRC of its own, announced in an `a=ssrc-group:FEC-FR` line.
//! [`repair_count`] is the Sans-IO decision; [`FecSender`] the interceptor. It sits wire-ward of
//! the transport-wide sequence numbering (2 000) and application-ward of the congestion
//! controller's send history (1 000): a repair packet is the XOR of the protected packets *as
//! they leave*, and the numbering writes a header extension into every packet, so a repair
//! computed before it (rtc's own FEC slot, 5 000) rebuilt packets Chromium could not use — the
//! first try froze for 3 s at a time. Repair packets are therefore not paced (they follow the
//! frame's last packet out of the pacer) and carry no transport-wide number.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rtc::interceptor::{
    AttributedPacket, FlexFec03Encoder, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

use super::fallback::SharedEstimate;
use crate::metrics::SessionMetrics;

/// Where [`FecSender`] sits: between the congestion controller (1 000) and the transport-wide
/// sequence numbering (2 000); see the module docs.
pub const FEC_SLOT: usize = 1_800;
/// Below this loss no repair is sent.
pub const MIN_LOSS: f64 = 0.005;
/// The chance a frame still needs a retransmission that the repair aims for.
pub const FRAME_TARGET: f64 = 0.02;
/// Repair packets are at most this share of a block's media packets (rounded down; one at
/// least).
pub const MAX_OVERHEAD: f64 = 0.3;
/// The most media packets in one block (a keyframe is split).
pub const MAX_BLOCK: usize = 48;
/// How fast the published repair share follows the bytes sent (per block).
const SHARE_SMOOTHING: f64 = 0.05;

/// How many repair packets protect a block of `media` packets at packet loss `loss` (0–1):
/// the fewest that leave the block unrecoverable (a repair group — the media packets one
/// repair packet covers, and the repair packet — losing two or more) with probability under
/// [`FRAME_TARGET`], at most [`MAX_OVERHEAD`] × `media` rounded down (one at least); 0 under
/// [`MIN_LOSS`].
pub fn repair_count(media: usize, loss: f64) -> usize {
    if media == 0 || !loss.is_finite() || loss < MIN_LOSS {
        return 0;
    }
    let p = loss.min(0.5);
    let most = ((media as f64 * MAX_OVERHEAD).floor() as usize).clamp(1, media);
    for k in 1..=most {
        if unrecoverable(media, k, p) <= FRAME_TARGET {
            return k;
        }
    }
    most
}

/// The chance that a block of `media` packets with `k` interleaved repair packets loses two
/// packets of one group, each packet lost independently with probability `p`.
fn unrecoverable(media: usize, k: usize, p: f64) -> f64 {
    let mut whole = 1.0;
    for group in 0..k {
        // Repair packet `group` covers media packets group, group + k, group + 2k, …
        let covered = (media - group).div_ceil(k);
        let n = covered as i32 + 1;
        let none = (1.0 - p).powi(n);
        let one = f64::from(n) * p * (1.0 - p).powi(n - 1);
        whole *= none + one;
    }
    1.0 - whole
}

/// One protected stream: its encoder and the block being gathered.
struct Protected {
    encoder: FlexFec03Encoder,
    block: Vec<rtc::rtp::Packet>,
}

/// The interceptor; see the module docs.
pub struct FecSender {
    estimate: Arc<SharedEstimate>,
    metrics: Arc<SessionMetrics>,
    /// By media SSRC.
    streams: HashMap<u32, Protected>,
    /// Smoothed share of the bytes sent that were repair.
    share: f64,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for FecSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FecSender")
            .field("streams", &self.streams.keys().collect::<Vec<_>>())
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

impl FecSender {
    /// Reads the player's loss from `estimate` and publishes the repair share into it.
    pub fn new(estimate: Arc<SharedEstimate>, metrics: Arc<SessionMetrics>) -> Self {
        Self {
            estimate,
            metrics,
            streams: HashMap::new(),
            share: 0.0,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// Protects the gathered block of `ssrc` now; queues the repair packets.
    fn close_block(&mut self, ssrc: u32, now: Instant, transport: TransportContext) {
        let (_, loss) = self.estimate.receiver_loss();
        let Some(stream) = self.streams.get_mut(&ssrc) else {
            return;
        };
        let block = std::mem::take(&mut stream.block);
        let k = repair_count(block.len(), loss);
        let media_bytes: usize = block.iter().map(MarshalSize::marshal_size).sum();
        let repair = if k > 0 {
            stream.encoder.encode(&block, k as u32)
        } else {
            Vec::new()
        };
        let repair_bytes: usize = repair.iter().map(MarshalSize::marshal_size).sum();
        for packet in repair {
            self.write.push_back(TaggedPacket {
                now,
                transport,
                message: AttributedPacket::new(Packet::Rtp(packet)),
            });
        }
        if media_bytes + repair_bytes > 0 {
            let sample = repair_bytes as f64 / (media_bytes + repair_bytes) as f64;
            self.share += SHARE_SMOOTHING * (sample - self.share);
            self.estimate.publish_repair_share(self.share);
        }
        if repair_bytes > 0 {
            self.metrics
                .fec_packets
                .fetch_add(k as u64, Ordering::Relaxed);
            self.metrics
                .fec_bytes
                .fetch_add(repair_bytes as u64, Ordering::Relaxed);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FecSender {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let Packet::Rtp(rtp) = &msg.message.packet else {
            self.write.push_back(msg);
            return Ok(());
        };
        let ssrc = rtp.header.ssrc;
        let Some(stream) = self.streams.get_mut(&ssrc) else {
            self.write.push_back(msg);
            return Ok(());
        };
        // A block is a consecutive run (the encoder's masks count from its first packet).
        if stream.block.last().is_some_and(|last| {
            last.header.sequence_number.wrapping_add(1) != rtp.header.sequence_number
        }) {
            stream.block.clear();
        }
        stream.block.push(rtp.clone());
        let close = rtp.header.marker || stream.block.len() >= MAX_BLOCK;
        let (now, transport) = (msg.now, msg.transport);
        // The media packet first; its block's repair right behind it.
        self.write.push_back(msg);
        if close {
            self.close_block(ssrc, now, transport);
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for FecSender {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        // Both halves of the association or nothing: a repair SSRC to send on and a payload
        // type to mark the packets with, from the negotiated `a=ssrc-group:FEC-FR`.
        if let (Some(ssrc_fec), Some(payload_type)) = (info.ssrc_fec, info.payload_type_fec) {
            self.streams.insert(
                info.ssrc,
                Protected {
                    encoder: FlexFec03Encoder::new(payload_type, ssrc_fec)
                        .with_base_sequence_number(rand::random()),
                    block: Vec::new(),
                },
            );
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_path_pays_nothing_and_loss_buys_repair_in_proportion() {
        assert_eq!(repair_count(10, 0.0), 0);
        assert_eq!(repair_count(10, 0.004), 0);
        assert_eq!(repair_count(0, 0.05), 0);
        assert_eq!(repair_count(10, f64::NAN), 0);
        // 1 % loss: one repair packet for a ten-packet frame is enough.
        assert_eq!(repair_count(10, 0.01), 1);
        // More loss, more repair, never more than the cap.
        let mut last = 0;
        for loss in [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0] {
            let k = repair_count(10, loss);
            assert!(k >= last, "{loss}: {k} < {last}");
            assert!(k <= 3, "{loss}: {k}");
            last = k;
        }
        assert_eq!(repair_count(10, 1.0), 3);
        assert_eq!(repair_count(1, 0.05), 1, "a one-packet frame gets a copy");
    }

    #[test]
    fn the_chosen_repair_meets_the_target_where_the_cap_allows() {
        for media in 1..=MAX_BLOCK {
            for loss in [0.01, 0.02, 0.03, 0.05] {
                let k = repair_count(media, loss);
                let cap = ((media as f64 * MAX_OVERHEAD).floor() as usize).max(1);
                let residual = unrecoverable(media, k, loss);
                assert!(
                    residual <= FRAME_TARGET || k == cap,
                    "{media} packets at {loss}: {k} repair leave {residual}"
                );
                if k > 1 {
                    assert!(
                        unrecoverable(media, k - 1, loss) > FRAME_TARGET,
                        "{media} packets at {loss}: {k} is more than needed"
                    );
                }
            }
        }
    }

    #[test]
    fn unrecoverable_matches_a_hand_count() {
        // One repair packet over one media packet: lost only if both are.
        assert!((unrecoverable(1, 1, 0.1) - 0.01).abs() < 1e-12);
        // Two groups of (2 media + 1 repair), p = 0.5: each survives with 1/8 + 3/8.
        assert!((unrecoverable(4, 2, 0.5) - 0.75).abs() < 1e-12);
    }
}
