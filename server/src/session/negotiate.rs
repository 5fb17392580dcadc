//! Negotiation: the player's offer in, our tracks added, the answer out once ICE has gathered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use signaling::protocol::{IceCandidate, NodeMsg};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

use super::peer;
use super::{PeerEvent, SessionCmd};

/// How long ICE gathering may take before the answer goes out with what it has.
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// One of our outgoing tracks, with what writing to it needs.
pub(super) struct OutTrack {
    pub track: Arc<TrackLocalStaticSample>,
    pub sender: Arc<dyn RtpSender>,
    pub ssrc: u32,
    pub payload_type: u8,
}

impl OutTrack {
    /// The payload type the answer settled on (the registered one until then).
    pub async fn refresh_payload_type(&mut self) {
        if let Some(pt) = negotiated_payload_type(&self.sender).await {
            self.payload_type = pt;
        }
    }
}

/// What negotiation leaves behind.
pub(super) struct Negotiated {
    pub video: OutTrack,
    /// Only when the player's offer has an audio section.
    pub audio: Option<OutTrack>,
}

/// How negotiation ended when it did not produce an answer.
pub(super) enum Interrupted {
    /// The session was ended (by the node or signaling) before the answer went out.
    Ended(String),
    /// Something failed.
    Failed(String),
}

/// A track of ours: one stream id for video and audio, so the player plays them in sync.
fn make_track(
    kind: RtpCodecKind,
    id: &str,
    codec: RTCRtpCodec,
) -> Result<(Arc<TrackLocalStaticSample>, u32), String> {
    let ssrc: u32 = rand::random();
    let track = TrackLocalStaticSample::new(
        Instant::now(),
        MediaStreamTrack::new(
            "stratus".to_owned(),
            id.to_owned(),
            id.to_owned(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        ),
    )
    .map_err(|e| format!("cannot create the {id} track: {e}"))?;
    Ok((Arc::new(track), ssrc))
}

/// Adds `track` to the peer connection.
async fn add_track(
    pc: &Arc<dyn PeerConnection>,
    (track, ssrc): (Arc<TrackLocalStaticSample>, u32),
    payload_type: u8,
) -> Result<OutTrack, String> {
    let sender = pc
        .add_track(track.clone() as Arc<dyn TrackLocal>)
        .await
        .map_err(|e| format!("cannot add a track: {e}"))?;
    Ok(OutTrack {
        track,
        sender,
        ssrc,
        payload_type,
    })
}

/// Applies the player's offer, adds our tracks, answers, waits for ICE gathering (bounded)
/// and sends the answer to signaling; candidates that arrive meanwhile are applied after.
pub(super) async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    session_id: &str,
    offer_sdp: &str,
    to_signaling: &mpsc::Sender<NodeMsg>,
    cmds: &mut mpsc::Receiver<SessionCmd>,
    events: &mut mpsc::UnboundedReceiver<PeerEvent>,
) -> Result<Negotiated, Interrupted> {
    let failed = |what: String| Interrupted::Failed(what);
    let video =
        make_track(RtpCodecKind::Video, "stratus-video", peer::h264_codec()).map_err(failed)?;
    // Sound goes on a second track of the same stream, when the player asked for audio.
    let audio = if offer_sdp.lines().any(|l| l.starts_with("m=audio")) {
        Some(make_track(RtpCodecKind::Audio, "stratus-audio", peer::opus_codec()).map_err(failed)?)
    } else {
        None
    };
    let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
        .map_err(|e| failed(format!("the player's offer is not valid SDP: {e}")))?;
    pc.set_remote_description(offer)
        .await
        .map_err(|e| failed(format!("the player's offer was refused: {e}")))?;
    // A track binds to its sender when added, with the header-extension ids known then; added
    // after the offer, those are the negotiated ids, so the playout-delay extension is accepted.
    let video = add_track(pc, video, peer::H264_PAYLOAD_TYPE)
        .await
        .map_err(failed)?;
    let audio = match audio {
        Some(a) => Some(
            add_track(pc, a, peer::OPUS_PAYLOAD_TYPE)
                .await
                .map_err(failed)?,
        ),
        None => None,
    };
    let answer = pc.create_answer(None).await.map_err(|e| {
        failed(format!(
            "cannot answer the player's offer (no H.264 in it?): {e}"
        ))
    })?;
    pc.set_local_description(answer)
        .await
        .map_err(|e| failed(format!("cannot apply the local answer: {e}")))?;

    // Candidates that arrive while gathering are applied after the answer is out.
    let mut early_ice = Vec::new();
    let gather_deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PeerEvent::GatheringComplete) => break,
                Some(PeerEvent::State(s)) => tracing::debug!(session_id, "peer state {s} while gathering"),
                Some(PeerEvent::DataChannel(_)) => {}
                None => return Err(failed("the peer connection went away while gathering".into())),
            },
            cmd = cmds.recv() => match cmd {
                Some(SessionCmd::RemoteIce(c)) => early_ice.push(c),
                Some(SessionCmd::End(reason)) => return Err(Interrupted::Ended(reason)),
                None => return Err(Interrupted::Ended("the node is shutting down".into())),
            },
            _ = tokio::time::sleep_until(gather_deadline) => {
                tracing::warn!(session_id, "ICE gathering did not complete in {GATHER_TIMEOUT:?}; answering with what we have");
                break;
            }
        }
    }
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| failed("no local description after answering".into()))?;
    to_signaling
        .send(NodeMsg::Answer {
            session_id: session_id.to_owned(),
            sdp: local.sdp,
        })
        .await
        .map_err(|_| failed("lost the signaling connection".into()))?;
    for c in early_ice {
        add_candidate(pc, session_id, c).await;
    }
    Ok(Negotiated { video, audio })
}

/// Applies a trickled candidate from the player; a bad one is logged and ignored.
pub(super) async fn add_candidate(pc: &Arc<dyn PeerConnection>, session_id: &str, c: IceCandidate) {
    if c.candidate.is_empty() {
        return; // end-of-candidates marker
    }
    let init = RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_mline_index,
        ..Default::default()
    };
    if let Err(e) = pc.add_ice_candidate(init).await {
        tracing::debug!(session_id, "ignoring a remote candidate: {e}");
    }
}

async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    sender
        .get_parameters()
        .await
        .ok()?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
}
