//! The formats a Stratus node sends and its players receive, in one place so that both ends
//! speak exactly the same thing:
//!
//! - the RTP formats they negotiate (this file): H.264 (packetization-mode 1, constrained
//!   baseline) with RTX, Opus, the playout-delay header extension, and the payload types they
//!   are offered under;
//! - [`latency_code`]: the latency and frame-id codes drawn into a frame's top rows, with the
//!   reader every receiver measures glass-to-glass latency with.
#![deny(missing_docs)]

pub mod latency_code;

use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::shared::error::Error;

/// RTP payload type we offer H.264 under.
pub const H264_PAYLOAD_TYPE: u8 = 102;
/// RTP payload type we offer Opus under.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// RTP payload type of the H.264 stream's retransmissions.
pub const RTX_PAYLOAD_TYPE: u8 = 103;
/// RTP payload type we offer FlexFEC-03 under (a player's offer names its own).
pub const FLEXFEC_PAYLOAD_TYPE: u8 = 118;
/// The playout-delay RTP header extension (Chromium renders as soon as it decodes at 0/0).
pub const PLAYOUT_DELAY_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";

/// The H.264 codec we send: packetization-mode 1, constrained baseline.
pub fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Retransmissions of the H.264 stream (RFC 4588).
pub fn rtx_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/rtx".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!("apt={H264_PAYLOAD_TYPE}"),
        rtcp_feedback: vec![],
    }
}

/// Forward error correction of the H.264 stream: FlexFEC draft 03 (`video/flexfec-03`, what
/// Chromium offers), on a repair SSRC of its own. `repair-window` (µs) is how long a receiver
/// keeps media packets for repair; Chromium offers 10 s.
pub fn flexfec_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/flexfec-03".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: "repair-window=10000000".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The Opus codec we send: 48 kHz stereo, in-band FEC.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Registers what a session's streams are made of: H.264 (with `ccm fir` and the
/// playout-delay extension) and, with `audio`, Opus. The node and our test players share it so
/// they offer and answer the same formats.
pub fn register_stream_formats(media: &mut MediaEngine, audio: bool) -> Result<(), Error> {
    media.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: h264_codec(),
            payload_type: H264_PAYLOAD_TYPE,
        },
        RtpCodecKind::Video,
    )?;
    if audio {
        media.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )?;
    }
    media.register_feedback(
        RTCPFeedback {
            typ: "ccm".to_owned(),
            parameter: "fir".to_owned(),
        },
        RtpCodecKind::Video,
    );
    media.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: PLAYOUT_DELAY_URI.to_owned(),
        },
        RtpCodecKind::Video,
        None,
    )?;
    Ok(())
}
