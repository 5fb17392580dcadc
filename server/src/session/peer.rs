//! Building a WebRTC peer connection for one session: H.264 with NACK, PLI/FIR and TWCC, Opus,
//! Google Congestion Control whose estimate the session reads, the playout-delay extension,
//! and an interceptor that lets keyframe requests reach the application.
//!
//! One estimate drives both the encoder (through [`BitrateEstimate`]) and the pacer (at
//! [`PACING_FACTOR`] times it), from the first packet: both start at the configured start rate.
//! GCC leads once TWCC feedback arrives, and counts only the packets that carried a
//! transport-wide sequence number; until then (and for good, with a player that sends none) the
//! player's REMB or receiver reports do, through [`super::fallback`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    Attribute, BandwidthEstimator, CongestionControlBuilder, EstimatorStats, Gcc, Interceptor,
    PacerBuilder, Packet, PacketReport, Registry, Slot, StreamInfo, TaggedPacket,
    TwccReceiverBuilder, TwccSenderBuilder,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
    TYPE_RTCP_FB_GOOG_REMB, TYPE_RTCP_FB_TRANSPORT_CC,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler};

use super::fallback::{FALLBACK_SLOT, FallbackControl, SharedEstimate};
use super::fec::{FEC_SLOT, FecSender};
use super::loss_cap::LossCap;
use super::queue_guard::QueueGuard;
use super::retransmit::{BudgetConfig, RETRANSMIT_SLOT, RetransmitFilter};
use crate::metrics::SessionMetrics;

/// The pacer sends at this multiple of the congestion estimate, as libwebrtc's does (its
/// default pace multiplier). The encoder aims at the estimate, but keyframes, retransmissions,
/// audio and RTCP come on top; paced at exactly the estimate they wait in the pacer's queue (up
/// to 4096 packets) and add that wait to every frame behind them.
pub const PACING_FACTOR: f64 = 2.5;

use stream_formats::{
    FLEXFEC_PAYLOAD_TYPE, RTX_PAYLOAD_TYPE, flexfec_codec, register_stream_formats, rtx_codec,
};
pub(crate) use stream_formats::{H264_PAYLOAD_TYPE, OPUS_PAYLOAD_TYPE, h264_codec, opus_codec};

/// The congestion controller's latest target, published for the session to read: GCC's once
/// TWCC feedback has arrived, the player's REMB or receiver reports' until then.
#[derive(Debug, Clone)]
pub struct BitrateEstimate(Arc<SharedEstimate>);

impl BitrateEstimate {
    /// The current target in bit/s.
    pub fn bits_per_second(&self) -> f64 {
        self.0.bits_per_second()
    }

    /// The share of our packets the player's latest reports say the path lost (0–1).
    pub fn path_loss(&self) -> f64 {
        self.0.receiver_loss().1
    }

    /// What the encoder may spend: the target less the share forward error correction takes
    /// ([`super::fec`]).
    pub fn media_bits_per_second(&self) -> f64 {
        self.0.bits_per_second() * (1.0 - self.0.repair_share())
    }

    /// An estimate that stays at `bits_per_second` (tests).
    #[cfg(test)]
    pub(crate) fn fixed(bits_per_second: f64) -> Self {
        Self(Arc::new(SharedEstimate::new(bits_per_second)))
    }
}

/// Delegates to GCC, with only the packets that carried a TWCC number, and publishes its
/// target after every update once TWCC feedback has arrived.
struct ReportingEstimator {
    inner: Gcc,
    /// Caps GCC's target while the path holds a standing queue.
    guard: QueueGuard,
    /// GCC's loss half on the player's own loss count (GCC reads only what arrived).
    loss: LossCap,
    estimate: Arc<SharedEstimate>,
    /// When the components were last logged (debug).
    logged: Option<Instant>,
}

/// The reports GCC may read: those of packets that carried a transport-wide sequence number.
///
/// webrtc-rs's congestion controller records every packet of every local stream, TWCC number or
/// not, and reports the ones feedback never named as lost once a later packet is acknowledged. A
/// player that negotiates transport-cc on video only (`webrtcbin` with the extension in its video
/// caps) never names our audio packets, and GCC read them as loss — 50 audio packets a second
/// beside some 200 of video, about 20 % — and drove the estimate to the floor within seconds on
/// a clean loopback. (RFC 8888 feedback, which names packets by their RTP sequence number, is not
/// negotiated by the node.)
fn twcc_only(reports: &[PacketReport]) -> Cow<'_, [PacketReport]> {
    if reports.iter().all(|r| r.is_twcc) {
        Cow::Borrowed(reports)
    } else {
        Cow::Owned(reports.iter().filter(|r| r.is_twcc).cloned().collect())
    }
}

/// The reports without the packets that arrived before one sent ahead of them (reordered on the
/// path), as libwebrtc's inter-arrival filter leaves them out: GCC's delay half reads a packet
/// that overtook another as a sudden delay drop and the next as a jump, and on a path that
/// reorders (Wi-Fi, 50 ± 20 ms of jitter) it saw overuse all the time and drove the rate to a
/// quarter of what the path carried. Packets that did not arrive stay (the loss half counts
/// them).
fn in_order(reports: &[PacketReport]) -> Cow<'_, [PacketReport]> {
    let mut latest: Option<Duration> = None;
    let mut reordered = Vec::new();
    let mut sorted: Vec<&PacketReport> = reports.iter().collect();
    sorted.sort_by_key(|r| r.departure);
    for r in sorted {
        let Some(arrival) = r.arrival else { continue };
        if latest.is_some_and(|l| arrival < l) {
            reordered.push(r.id);
        } else {
            latest = Some(arrival);
        }
    }
    if reordered.is_empty() {
        Cow::Borrowed(reports)
    } else {
        Cow::Owned(
            reports
                .iter()
                .filter(|r| !reordered.contains(&r.id))
                .cloned()
                .collect(),
        )
    }
}

impl ReportingEstimator {
    /// GCC's target as the queue guard and the loss cap let it through.
    fn target(&self) -> f64 {
        self.loss
            .limit(self.guard.limit(self.inner.target_bitrate()))
    }

    fn publish(&self) {
        self.estimate.publish_twcc(self.target());
    }
}

impl BandwidthEstimator for ReportingEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        let reports = twcc_only(reports);
        if reports.is_empty() {
            return;
        }
        // GCC reads only what arrived, in order; the loss half is `loss`, on the player's count.
        let arrived: Vec<PacketReport> = in_order(&reports)
            .iter()
            .filter(|r| r.arrived)
            .cloned()
            .collect();
        self.inner.on_reports(now, &arrived);
        let (report, lost) = self.estimate.receiver_loss();
        if report > 0 {
            self.loss.on_report(
                now,
                report,
                lost,
                self.guard.limit(self.inner.target_bitrate()),
                self.guard.cap().is_some(),
            );
        }
        self.guard
            .on_reports(now, &reports, self.inner.target_bitrate());
        self.publish();
        if self
            .logged
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            self.logged = Some(now);
            tracing::debug!(
                gcc_kbps = (self.inner.target_bitrate() / 1e3) as u64,
                queue_cap_kbps = self.guard.cap().map(|c| (c / 1e3) as u64),
                loss_cap_kbps = self.loss.cap().map(|c| (c / 1e3) as u64),
                receiver_loss = lost,
                "congestion control"
            );
        }
    }

    /// What the congestion controller hands the pacer: the estimate times [`PACING_FACTOR`].
    /// (The encoder follows the estimate itself, through [`BitrateEstimate`].)
    fn target_bitrate(&self) -> f64 {
        self.target() * PACING_FACTOR
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
        // Until TWCC feedback arrives the fallback publishes; GCC's untouched start rate must
        // not overwrite it.
        if self.estimate.twcc_in_charge() {
            self.publish();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn stats(&self) -> EstimatorStats {
        self.inner.stats()
    }
}

/// Passes PLI and FIR packets on to the application (they reach the local track's events);
/// sits closest to the application, where inbound RTCP would otherwise stop.
#[derive(Default)]
struct KeyframeRequests {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

fn is_keyframe_request(packet: &dyn rtc::rtcp::Packet) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p.as_ref()))
                .cloned()
                .collect();
            if requests.is_empty() {
                // Everything else has been handled by the interceptors below us.
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Bitrate bounds for the congestion controller, in bit/s.
#[derive(Debug, Clone, Copy)]
pub struct RateBounds {
    /// Where the estimate starts.
    pub start: f64,
    /// Floor.
    pub min: f64,
    /// Ceiling.
    pub max: f64,
}

/// Google Congestion Control on TWCC feedback, the REMB / receiver-report fallback, and a pacer
/// that starts at the start rate.
///
/// What webrtc-rs's `configure_congestion_control` sets up, but for the pacer: that one starts
/// at its default of 1 Mbit/s and follows the estimate only once the estimate *changes*. A
/// session whose estimate starts where it stays (start = max) was paced at 1 Mbit/s for good —
/// a 6 Mbit/s stream of game-like detail queued for seconds (the latency lab found it: 5 s
/// glass-to-glass, 11 fps) — and every session was paced at 1 Mbit/s until its first feedback.
fn congestion_control(
    registry: Registry,
    rates: RateBounds,
    estimate: &Arc<SharedEstimate>,
    media: &mut MediaEngine,
) -> Result<Registry, Error> {
    let estimator = ReportingEstimator {
        inner: Gcc::new(rates.start, rates.min, rates.max),
        guard: QueueGuard::new(),
        loss: LossCap::default(),
        logged: None,
        estimate: estimate.clone(),
    };
    // REMB is only ever about video; a player that does not offer it simply never sees it.
    media.register_feedback(
        RTCPFeedback {
            typ: TYPE_RTCP_FB_GOOG_REMB.to_owned(),
            parameter: String::new(),
        },
        RtpCodecKind::Video,
    );
    for kind in [RtpCodecKind::Video, RtpCodecKind::Audio] {
        media.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_TRANSPORT_CC.to_owned(),
                parameter: String::new(),
            },
            kind,
        );
        media.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
            },
            kind,
            None,
        )?;
    }
    Ok(registry
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(estimator).build(),
        )
        // Wire-ward of the pacer, so the rate it attaches to a REMB or receiver report reaches
        // the pacer on the same packet; application-ward of GCC, so it knows whether TWCC leads.
        .with(
            Slot::from(FALLBACK_SLOT),
            FallbackControl::new(rates, estimate.clone()),
        )
        .with(
            Slot::Pacer,
            PacerBuilder::new()
                .with_target_bitrate(rates.start * PACING_FACTOR)
                .build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build()))
}

/// Builds the peer connection for a session. Host candidates are gathered on `ip` only.
pub async fn build_peer(
    ip: IpAddr,
    rates: RateBounds,
    handler: Arc<dyn PeerConnectionEventHandler>,
    metrics: Arc<SessionMetrics>,
) -> Result<(Arc<dyn PeerConnection>, BitrateEstimate), Error> {
    let mut media = MediaEngine::default();
    register_stream_formats(&mut media, true)?;
    // RTX (RFC 4588): the NACK responder resends lost packets on their own SSRC, so the
    // receiver's loss and jitter statistics of the media stream stay clean.
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: rtx_codec(),
            payload_type: RTX_PAYLOAD_TYPE,
        },
        RtpCodecKind::Video,
    )?;
    // FlexFEC-03 (`super::fec`): used only with a player that offers it.
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: flexfec_codec(),
            payload_type: FLEXFEC_PAYLOAD_TYPE,
        },
        RtpCodecKind::Video,
    )?;

    let (registry, estimate) = interceptors(rates, &mut media, metrics)?;

    // A server has no use for mDNS: it publishes no `.local` names, and it neither queries nor
    // resolves a player's (a browser's mDNS host candidate reaches it as peer-reflexive), so
    // no multicast leaves the node.
    let setting = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .build();
    let config = RTCConfigurationBuilder::new().build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(media)
        .with_setting_engine(setting)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![format!("{ip}:0")])
        .build()
        .await?;
    Ok((Arc::new(pc), estimate))
}

/// The session's interceptors — congestion control and its fallback, the pacer, NACK, RTCP
/// reports, keyframe requests — with the feedback they need registered in `media`, and the
/// estimate they publish.
fn interceptors(
    rates: RateBounds,
    media: &mut MediaEngine,
    metrics: Arc<SessionMetrics>,
) -> Result<(Registry, BitrateEstimate), Error> {
    let rates = RateBounds {
        start: rates.start.clamp(rates.min, rates.max),
        ..rates
    };
    let estimate = Arc::new(SharedEstimate::new(rates.start));
    let registry = congestion_control(Registry::new(), rates, &estimate, media)?;
    // NACK and RTCP reports; not `register_default_interceptors`, whose TWCC receiver the
    // congestion controller above already holds.
    let registry = configure_rtcp_reports(configure_nack(registry, media));
    // Repair packets, of the packets as they leave (after the pacer and the TWCC numbering).
    let registry = registry.with(
        Slot::from(FEC_SLOT),
        FecSender::new(estimate.clone(), metrics.clone()),
    );
    let estimate = BitrateEstimate(estimate);
    // Between the pacer (3 000) and the NACK responder (4 000): it sees every packet the
    // responder could resend and every NACK before the responder does.
    let registry = registry.with(
        Slot::from(RETRANSMIT_SLOT),
        RetransmitFilter::new(BudgetConfig::default(), estimate.clone(), metrics),
    );
    let registry = registry.with(Slot::from(14_000), KeyframeRequests::default());
    Ok((registry, estimate))
}

#[cfg(test)]
mod tests;
