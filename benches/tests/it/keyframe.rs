//! A webrtc-rs receiver (the kind of peer the native client is) asks the node for a keyframe
//! with an RTCP PLI, and an IDR follows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{Value, json};
use server::config::NodeConfig;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCSessionDescription,
};

/// What the receiver saw of each access unit: its RTP timestamp and whether it was an IDR.
#[derive(Debug)]
struct Unit {
    at: Instant,
    keyframe: bool,
}

struct Receiver {
    gathered: mpsc::UnboundedSender<()>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Receiver {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON message from signaling; fails the test after 15 s.
async fn next(ws: &mut Ws) -> Value {
    let msg = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str::<Value>(&t).expect("json");
                }
                Some(Ok(_)) => continue,
                other => panic!("signaling closed: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), msg)
        .await
        .expect("signaling answers within 15 s")
}

/// True if an H.264 RTP payload starts an IDR or carries an SPS (RFC 6184: single NAL, STAP-A,
/// FU-A start fragment).
fn starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        5 | 7 => true,
        24 => payload.get(3).is_some_and(|h| matches!(h & 0x1f, 5 | 7)),
        28 => payload
            .get(1)
            .is_some_and(|h| h & 0x80 != 0 && h & 0x1f == 5),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pli_from_the_player_brings_an_idr() {
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    config.video.width = 640;
    config.video.height = 360;
    let stack = crate::support::start(config).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(stack.client_ws_url().expect("token"))
        .await
        .expect("ws");
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({"type": "hello", "version": 1})))
        .await
        .expect("hello");

    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: stream_formats::h264_codec(),
                payload_type: 102,
            },
            RtpCodecKind::Video,
        )
        .expect("codec");
    let registry =
        register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
    let (gathered_tx, mut gathered) = mpsc::unbounded_channel();
    let (tracks_tx, mut tracks) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media)
        // No mDNS: the test runs where only loopback exists, and no packet may leave it.
        .with_setting_engine(
            rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder::new()
                .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                .build(),
        )
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Receiver {
            gathered: gathered_tx,
            tracks: tracks_tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .expect("peer");
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            streams: vec![],
            send_encodings: vec![],
        }),
    )
    .await
    .expect("transceiver");
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("local");
    tokio::time::timeout(Duration::from_secs(5), gathered.recv())
        .await
        .expect("gathering")
        .expect("gathered");
    let sdp = pc.local_description().await.expect("local description").sdp;

    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws.send(send(json!({"type": "offer", "sdp": sdp})))
        .await
        .expect("offer");
    let answer = next(&mut ws).await;
    assert_eq!(answer["type"], "answer", "{answer}");
    let answer = RTCSessionDescription::answer(answer["sdp"].as_str().expect("sdp").to_string())
        .expect("sdp");
    pc.set_remote_description(answer).await.expect("remote");

    let track = tokio::time::timeout(Duration::from_secs(20), tracks.recv())
        .await
        .expect("a track within 20 s")
        .expect("track");
    let mut units: Vec<Unit> = Vec::new();
    let mut last_ts = None;
    let mut pli_sent: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let media_ssrc = track.ssrcs().await.first().copied().expect("ssrc");
    loop {
        assert!(
            Instant::now() < deadline,
            "no IDR after the PLI; units: {units:?}"
        );
        let ev = tokio::time::timeout(Duration::from_secs(5), track.poll())
            .await
            .expect("media keeps flowing");
        let Some(TrackRemoteEvent::OnRtpPacket(packet)) = ev else {
            continue;
        };
        if last_ts != Some(packet.header.timestamp) {
            last_ts = Some(packet.header.timestamp);
            units.push(Unit {
                at: Instant::now(),
                keyframe: false,
            });
        }
        if starts_keyframe(&packet.payload) {
            units.last_mut().expect("unit").keyframe = true;
        }
        // After a second of ordinary frames, ask for a keyframe once.
        if pli_sent.is_none()
            && units.len() > 30
            && !units.iter().rev().take(10).any(|u| u.keyframe)
        {
            track
                .write_rtcp(vec![Box::new(PictureLossIndication {
                    sender_ssrc: 1,
                    media_ssrc,
                })])
                .await
                .expect("send PLI");
            pli_sent = Some(Instant::now());
        }
        if let Some(sent) = pli_sent
            && let Some(idr) = units.iter().find(|u| u.keyframe && u.at > sent)
        {
            let delay = idr.at - sent;
            eprintln!("IDR {delay:?} after the PLI");
            assert!(delay < Duration::from_secs(1), "IDR took {delay:?}");
            break;
        }
    }
    assert!(units[0].keyframe, "the stream opens with an IDR");
    pc.close().await.expect("close");
    drop(stack);
}
