//! The session's interceptor chain ([`super::interceptors`]) on virtual time: where the pacer
//! starts, that it follows a REMB arriving on the read leg, and that GCC, fed by a real TWCC
//! receiver, counts only the packets that carried a TWCC number.

use std::time::{Duration, Instant};

use rtc::interceptor::{
    Attribute, AttributedPacket, CongestionControlBuilder, Gcc, Interceptor, Packet,
    RTPHeaderExtension, Registry, Slot, StreamInfo, TaggedPacket, TwccReceiverBuilder,
    TwccSenderBuilder,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::sansio::Protocol;
use rtc::shared::TransportContext;

use super::{BitrateEstimate, PACING_FACTOR, RateBounds, interceptors};

const RATES: RateBounds = RateBounds {
    start: 2_000_000.0,
    min: 300_000.0,
    max: 6_000_000.0,
};
const VIDEO: u32 = 0x1111;
const AUDIO: u32 = 0x2222;
const TWCC_EXTENSION_ID: u16 = 3;
/// A video packet's payload: seven to a frame make about 2 Mbit/s at 30 fps.
const VIDEO_PAYLOAD: usize = 1_190;
const AUDIO_PAYLOAD: usize = 120;

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// One of our streams, with the transport-wide-cc extension negotiated or not.
fn stream(ssrc: u32, twcc: bool) -> StreamInfo {
    let video = ssrc == VIDEO;
    StreamInfo {
        ssrc,
        payload_type: if video { 102 } else { 111 },
        mime_type: if video { "video/H264" } else { "audio/opus" }.to_owned(),
        clock_rate: if video { 90_000 } else { 48_000 },
        rtp_header_extensions: if twcc {
            vec![RTPHeaderExtension {
                uri: rtc::sdp::extmap::TRANSPORT_CC_URI.to_owned(),
                id: TWCC_EXTENSION_ID,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}

fn tagged(now: Instant, packet: Packet) -> TaggedPacket {
    TaggedPacket {
        now,
        transport: TransportContext::default(),
        message: AttributedPacket::new(packet),
    }
}

fn rtp(now: Instant, ssrc: u32, sequence_number: u16, payload: usize) -> TaggedPacket {
    tagged(
        now,
        Packet::Rtp(rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: if ssrc == VIDEO { 102 } else { 111 },
                sequence_number,
                timestamp: u32::from(sequence_number) * 100,
                ssrc,
                ..Default::default()
            },
            payload: vec![0u8; payload].into(),
        }),
    )
}

fn remb(now: Instant, bits_per_second: f32) -> TaggedPacket {
    tagged(
        now,
        Packet::Rtcp(vec![Box::new(ReceiverEstimatedMaximumBitrate {
            sender_ssrc: 1,
            bitrate: bits_per_second,
            ssrcs: vec![VIDEO],
        })]),
    )
}

/// The node's chain with our video (and audio) bound as a session binds them.
fn node_chain(video_twcc: bool, audio_twcc: bool) -> (impl Interceptor, BitrateEstimate) {
    let (registry, estimate) = interceptors(RATES, &mut MediaEngine::default(), Default::default())
        .expect("the session's interceptors");
    let mut chain = registry.build();
    chain.bind_local_stream(&stream(VIDEO, video_twcc));
    chain.bind_local_stream(&stream(AUDIO, audio_twcc));
    (chain, estimate)
}

/// Drains what `chain` releases to the wire at `now`; returns the RTP bits.
fn wire_bits(chain: &mut impl Interceptor, now: Instant) -> f64 {
    chain.handle_timeout(now).expect("timeout");
    let mut bits = 0.0;
    while let Some(out) = chain.poll_write() {
        if let Packet::Rtp(p) = &out.message.packet {
            bits += (rtc::shared::marshal::MarshalSize::marshal_size(p) * 8) as f64;
        }
    }
    bits
}

/// The pacer starts at the start rate times [`PACING_FACTOR`], as the estimate the encoder reads
/// starts at the start rate; a REMB read on the way in moves both, which it can only do from
/// wire-ward of the pacer.
#[test]
fn the_pacer_starts_with_the_estimate_and_follows_a_remb() {
    let t0 = Instant::now();
    let (mut chain, estimate) = node_chain(false, false);
    assert_eq!(estimate.bits_per_second(), RATES.start);
    // A backlog that outlasts the test at either rate.
    for seq in 0..600 {
        chain
            .handle_write(rtp(t0, VIDEO, seq, VIDEO_PAYLOAD))
            .expect("write");
    }
    let mut sent = 0.0;
    for step in 0..=200 {
        sent += wire_bits(&mut chain, t0 + ms(step));
    }
    // A tenth of a second of burst, then the rate.
    let pace = RATES.start * PACING_FACTOR;
    let want = pace * 0.1 + pace * 0.2;
    assert!(
        (sent - want).abs() < want * 0.05,
        "paced {sent} bits in 200 ms, want about {want}"
    );

    let t1 = t0 + ms(200);
    chain.handle_read(remb(t1, 800_000.0)).expect("read");
    while chain.poll_read().is_some() {}
    assert_eq!(estimate.bits_per_second(), 800_000.0);
    let mut sent = 0.0;
    for step in 1..=1_000 {
        sent += wire_bits(&mut chain, t1 + ms(step));
    }
    let pace = 800_000.0 * PACING_FACTOR;
    let want = pace * 0.1 + pace;
    assert!(
        sent <= want * 1.05 && sent >= pace * 0.95,
        "paced {sent} bits in the second after a REMB of 800 kbit/s, want at most {want}"
    );
}

/// A receiver one millisecond away with a TWCC receiver, bound to our video's extension only.
fn receiver() -> impl Interceptor {
    let mut receiver = Registry::new()
        .with(Slot::TwccReceiver, TwccReceiverBuilder::new().build())
        .build();
    receiver.bind_remote_stream(&stream(VIDEO, true));
    receiver.bind_remote_stream(&stream(AUDIO, false));
    receiver
}

/// Sends for `span` from `t0`: a 30 fps video (seven packets a frame) and 50 audio packets a
/// second; the receiver gets every packet and its feedback comes straight back. Returns the
/// rates `chain` announced on its read leg, in order.
fn stream_for(chain: &mut impl Interceptor, t0: Instant, span: Duration) -> Vec<f64> {
    let mut receiver = receiver();
    let (mut video_seq, mut audio_seq) = (0u16, 0u16);
    let mut announced = Vec::new();
    let steps = span.as_millis() as u64;
    for step in 0..steps {
        let now = t0 + ms(step);
        if step % 33 == 0 {
            for _ in 0..7 {
                chain
                    .handle_write(rtp(now, VIDEO, video_seq, VIDEO_PAYLOAD))
                    .expect("write");
                video_seq = video_seq.wrapping_add(1);
            }
        }
        if step % 20 == 0 {
            chain
                .handle_write(rtp(now, AUDIO, audio_seq, AUDIO_PAYLOAD))
                .expect("write");
            audio_seq = audio_seq.wrapping_add(1);
        }
        chain.handle_timeout(now).expect("timeout");
        while let Some(mut out) = chain.poll_write() {
            if matches!(out.message.packet, Packet::Rtp(_)) {
                out.now = now + ms(1);
                receiver.handle_read(out).expect("receive");
            }
        }
        while receiver.poll_read().is_some() {}
        receiver.handle_timeout(now + ms(1)).expect("timeout");
        while let Some(mut feedback) = receiver.poll_write() {
            feedback.now = now + ms(2);
            chain.handle_read(feedback).expect("feedback");
        }
        while let Some(read) = chain.poll_read() {
            if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
                read.message.get(&Attribute::TargetBitrateChanged {
                    bits_per_second: 0.0,
                })
            {
                announced.push(*bits_per_second);
            }
        }
    }
    announced
}

/// The webrtcbin case: transport-cc on the video only. Unfiltered, GCC reads every audio packet
/// as lost (a fifth of all packets) and collapses; ours keeps its rate, and once TWCC feedback
/// has arrived it leads: a REMB no longer moves the estimate.
#[test]
fn gcc_counts_only_the_packets_that_carried_a_twcc_number() {
    let t0 = Instant::now();

    // What webrtc-rs's controller does with GCC as it comes.
    let mut plain = Registry::new()
        .with(
            Slot::CongestionControl,
            CongestionControlBuilder::new(Gcc::new(RATES.start, RATES.min, RATES.max)).build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        .build();
    plain.bind_local_stream(&stream(VIDEO, true));
    plain.bind_local_stream(&stream(AUDIO, false));
    let announced = stream_for(&mut plain, t0, Duration::from_secs(10));
    let last = announced.last().copied().unwrap_or(RATES.start);
    assert!(
        last < RATES.start / 2.0,
        "unfiltered GCC was expected to collapse on the audio packets: {announced:?}"
    );

    let (mut chain, estimate) = node_chain(true, false);
    // A REMB before any TWCC feedback leads for now …
    chain.handle_read(remb(t0, 800_000.0)).expect("read");
    while chain.poll_read().is_some() {}
    assert_eq!(estimate.bits_per_second(), 800_000.0);
    stream_for(&mut chain, t0 + ms(1), Duration::from_secs(10));
    let gcc = estimate.bits_per_second();
    assert!(
        gcc >= RATES.start * 0.95,
        "GCC's estimate fell on a clean path with untracked audio: {gcc}"
    );
    // … and none after it.
    let later = t0 + Duration::from_secs(11);
    chain.handle_read(remb(later, 300_000.0)).expect("read");
    while chain.poll_read().is_some() {}
    assert_eq!(
        estimate.bits_per_second(),
        gcc,
        "TWCC leads; the REMB is ignored"
    );
}

/// A report of packet `id`, sent `sent_ms` after `t0` and arrived at `arrived_ms` (receiver
/// clock), or lost.
fn report(
    t0: Instant,
    id: u64,
    sent_ms: u64,
    arrived_ms: Option<u64>,
) -> rtc::interceptor::PacketReport {
    rtc::interceptor::PacketReport {
        ssrc: 1,
        id,
        rtp_sequence_number: id as u16,
        is_twcc: true,
        twcc_sequence_number: id as u16,
        size: 1200,
        arrived: arrived_ms.is_some(),
        departure: t0 + Duration::from_millis(sent_ms),
        arrival: arrived_ms.map(Duration::from_millis),
        ecn: Default::default(),
    }
}

#[test]
fn reordered_packets_are_left_out_of_the_delay_estimate() {
    let t0 = Instant::now();
    // Packet 2 overtook packet 1; packet 3 was lost.
    let reports = vec![
        report(t0, 0, 0, Some(50)),
        report(t0, 1, 1, Some(90)),
        report(t0, 2, 2, Some(60)),
        report(t0, 3, 3, None),
        report(t0, 4, 4, Some(95)),
    ];
    let kept: Vec<u64> = super::in_order(&reports).iter().map(|r| r.id).collect();
    assert_eq!(kept, vec![0, 1, 3, 4]);
    let clean = vec![report(t0, 0, 0, Some(50)), report(t0, 1, 1, Some(51))];
    assert!(matches!(
        super::in_order(&clean),
        std::borrow::Cow::Borrowed(_)
    ));
}
