//! The session's peer connection: built with the node's formats and the feedback the node's
//! congestion control needs, its events, and the tasks that read the remote tracks.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{
    TransportLayerNack, nack_pairs_from_sequence_numbers,
};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind};
use signaling::protocol::{ClientMsg, IceCandidate, IceServer};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::{PLI_INTERVAL, SessionState};
use crate::depacketize::Depacketizer;
use crate::recovery::{Output, Recovery, RecoveryConfig};

/// The peer connection's events, into the session's state.
pub(super) struct PeerHandler(pub Arc<SessionState>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let Ok(init) = event.candidate.to_json() else {
            return;
        };
        if init.candidate.trim_start_matches("candidate:").is_empty() {
            return;
        }
        if self.0.route.is_some() {
            return; // the node must reach us only through the relay
        }
        // `to_json` leaves the mid empty; with BUNDLE every section shares the first one's
        // transport, as the page's candidates say.
        let mid = self.0.mid.get().cloned().unwrap_or_else(|| "0".to_owned());
        let _ = self.0.outbound.send(ClientMsg::Ice {
            candidate: IceCandidate {
                candidate: init.candidate,
                sdp_mid: Some(mid),
                sdp_mline_index: Some(0),
            },
        });
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        let _ = self.0.state.send(state);
        match state {
            RTCPeerConnectionState::Failed => self.0.end("the connection to the node failed"),
            RTCPeerConnectionState::Disconnected => {
                self.0.end("the connection to the node was lost")
            }
            _ => {}
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let state = self.0.clone();
        self.0.spawn(tokio::spawn(read_track(track, state)));
    }
}

/// Reads one remote track until it ends: audio payloads to the sink; video packets through
/// the loss recovery (in order, missing ones asked for again, when NACK is on) and the
/// depacketiser, whole units to the sink, and a keyframe request (at most one per
/// [`PLI_INTERVAL`]) when a unit was lost after all or the sink asks for one.
async fn read_track(track: Arc<dyn TrackRemote>, state: Arc<SessionState>) {
    let video = track.kind().await == RtpCodecKind::Video;
    let c = &state.counters;
    let mut video_in = VideoIn {
        depacketizer: Depacketizer::new(),
        recovery: state.nack.then(|| Recovery::new(RecoveryConfig::default())),
        pending: Vec::new(),
        last_pli: None,
        lost_seen: 0,
        ssrc: 0,
    };
    loop {
        let timer = video_in.recovery.as_ref().and_then(Recovery::poll_timeout);
        let event = tokio::select! {
            e = track.poll() => match e {
                Some(e) => e,
                None => break,
            },
            _ = sleep_until(timer), if timer.is_some() => {
                if let Some(r) = video_in.recovery.as_mut() {
                    r.handle_timeout(Instant::now());
                }
                video_in.drain(&track, &state).await;
                continue;
            }
        };
        let TrackRemoteEvent::OnRtpPacket(packet) = event else {
            continue;
        };
        let arrived = Instant::now();
        state
            .sink
            .rtp(video, &packet.header, packet.payload.len(), arrived);
        if !video {
            c.audio_packets.fetch_add(1, Ordering::Relaxed);
            state.sink.audio(&packet.payload);
            continue;
        }
        c.video_packets.fetch_add(1, Ordering::Relaxed);
        c.video_bytes
            .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
        video_in.ssrc = packet.header.ssrc;
        let seq = packet.header.sequence_number;
        match video_in.recovery.as_mut() {
            Some(r) => {
                r.set_rtt(Duration::from_micros(c.rtt_us.load(Ordering::Relaxed)));
                r.push(seq, arrived, packet);
            }
            None => video_in.pending.push(packet),
        }
        video_in.drain(&track, &state).await;
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

/// The video track's receiving state.
struct VideoIn {
    depacketizer: Depacketizer,
    /// Reorders and asks for missing packets (NACK on).
    recovery: Option<Recovery<rtc::rtp::Packet>>,
    /// Packets as they came (NACK off).
    pending: Vec<rtc::rtp::Packet>,
    last_pli: Option<Instant>,
    lost_seen: u64,
    ssrc: u32,
}

impl VideoIn {
    /// One packet, in sequence order, into the depacketiser; true to ask for a keyframe.
    fn packet(&mut self, packet: rtc::rtp::Packet, state: &SessionState) -> bool {
        let c = &state.counters;
        let h = &packet.header;
        let pushed =
            self.depacketizer
                .push(h.sequence_number, h.timestamp, h.marker, &packet.payload);
        let lost = self.depacketizer.stats().lost_packets;
        if lost != self.lost_seen {
            c.lost_packets
                .fetch_add(lost - self.lost_seen, Ordering::Relaxed);
            self.lost_seen = lost;
        }
        let mut want_keyframe = pushed.request_keyframe;
        for unit in pushed.units {
            c.units.fetch_add(1, Ordering::Relaxed);
            want_keyframe |= state.sink.video(unit, Instant::now());
        }
        want_keyframe
    }

    /// Hands out what arrived or the recovery released and sends its requests; asks for a
    /// keyframe when the depacketiser or the sink wants one.
    async fn drain(&mut self, track: &Arc<dyn TrackRemote>, state: &SessionState) {
        let c = &state.counters;
        let mut want_keyframe = false;
        let mut nacks = Vec::new();
        for packet in std::mem::take(&mut self.pending) {
            want_keyframe |= self.packet(packet, state);
        }
        while let Some(out) = self.recovery.as_mut().and_then(Recovery::poll) {
            match out {
                Output::Packet(_, packet) => want_keyframe |= self.packet(packet, state),
                Output::Nack(seqs) => nacks.extend(seqs),
            }
        }
        if let Some(r) = &self.recovery {
            c.nacked.store(r.stats().nacked, Ordering::Relaxed);
            c.recovered.store(r.stats().recovered, Ordering::Relaxed);
        }
        if !nacks.is_empty() {
            let nack = TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: self.ssrc,
                nacks: nack_pairs_from_sequence_numbers(&nacks),
            };
            if let Err(e) = track.write_rtcp(vec![Box::new(nack)]).await {
                tracing::debug!("cannot send a NACK: {e}");
            }
        }
        if want_keyframe
            && state.keyframe_requests
            && self.last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL)
        {
            self.last_pli = Some(Instant::now());
            c.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            let pli = PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: self.ssrc,
            };
            if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                tracing::debug!("cannot send a keyframe request: {e}");
            }
        }
    }
}

/// The peer connection: the node's formats (offered as Chromium offers them, the
/// playout-delay extension included, so the node sends what it would to a browser), receiver
/// reports and TWCC feedback (so the node's congestion control has something to go on), and
/// NACK when asked for — negotiated only: the requests are [`crate::recovery`]'s, not
/// webrtc-rs's generator, which repeats every request every 100 ms for as long as it remembers
/// the packet (over a congested link that storm starves new frames).
pub(super) async fn build(
    bind_ip: IpAddr,
    audio: bool,
    nack: bool,
    ice_servers: Vec<IceServer>,
    handler: PeerHandler,
) -> Result<Arc<dyn PeerConnection>, rtc::shared::error::Error> {
    let mut media = MediaEngine::default();
    stream_formats::register_stream_formats(&mut media, audio)?;
    let registry =
        configure_rtcp_reports(configure_twcc_receiver_only(Registry::new(), &mut media)?);
    if nack {
        for parameter in ["", "pli"] {
            media.register_feedback(
                RTCPFeedback {
                    typ: "nack".to_owned(),
                    parameter: parameter.to_owned(),
                },
                RtpCodecKind::Video,
            );
        }
    }
    let ice_servers = ice_servers
        .into_iter()
        .map(|s| RTCIceServer {
            urls: s.urls,
            username: s.username.unwrap_or_default(),
            credential: s.credential.unwrap_or_default(),
        })
        .collect();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(
            RTCConfigurationBuilder::new()
                .with_ice_servers(ice_servers)
                .build(),
        )
        .with_media_engine(media)
        // The node publishes plain addresses; multicast queries would only leave the machine.
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_multicast_dns_mode(MulticastDnsMode::Disabled)
                .build(),
        )
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec![format!("{bind_ip}:0")])
        .build()
        .await?;
    Ok(Arc::new(pc))
}
