//! The session's peer connection: built with the node's formats and the feedback the node's
//! congestion control needs, its events, and the tasks that read the remote tracks.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_nack, configure_rtcp_reports, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use signaling::protocol::{ClientMsg, IceCandidate, IceServer};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

use super::{PLI_INTERVAL, SessionState};
use crate::depacketize::Depacketizer;

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
/// the depacketiser, whole units to the sink, and a keyframe request (at most one per
/// [`PLI_INTERVAL`]) when a unit was lost or the sink asks for one.
async fn read_track(track: Arc<dyn TrackRemote>, state: Arc<SessionState>) {
    let video = track.kind().await == RtpCodecKind::Video;
    let c = &state.counters;
    let mut depacketizer = Depacketizer::new();
    let mut last_pli: Option<Instant> = None;
    let mut lost_seen = 0;
    while let Some(event) = track.poll().await {
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
        let h = &packet.header;
        let pushed = depacketizer.push(h.sequence_number, h.timestamp, h.marker, &packet.payload);
        let lost = depacketizer.stats().lost_packets;
        if lost != lost_seen {
            c.lost_packets
                .fetch_add(lost - lost_seen, Ordering::Relaxed);
            lost_seen = lost;
        }
        let mut want_keyframe = pushed.request_keyframe;
        for unit in pushed.units {
            c.units.fetch_add(1, Ordering::Relaxed);
            want_keyframe |= state.sink.video(unit, Instant::now());
        }
        if want_keyframe
            && state.keyframe_requests
            && last_pli.is_none_or(|t| t.elapsed() >= PLI_INTERVAL)
        {
            last_pli = Some(Instant::now());
            c.keyframe_requests.fetch_add(1, Ordering::Relaxed);
            let pli = PictureLossIndication {
                sender_ssrc: 1,
                media_ssrc: h.ssrc,
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
/// NACK only when asked for (webrtc-rs's generator repeats every request every 100 ms for as
/// long as it remembers the packet; over a congested link that storm starves new frames).
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
    let registry = if nack {
        configure_nack(registry, &mut media)
    } else {
        registry
    };
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
