//! The encoder in a real GStreamer pipeline, checked by decoding its output with avdec_h264.

use std::time::Duration;

use bytes::Bytes;
use capture::{Frame, PixelFormat};
use encoder::{EncodedFrame, Encoder, EncoderConfig, EncoderError};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

mod common;
mod sizes;
mod x264;

use common::nal_types;

const W: u32 = 320;
const H: u32 = 240;

/// A synthetic I420 frame: a gradient that moves with `id`, with noise so that the encoder
/// spends whatever bitrate it is given.
fn frame(id: u64) -> Frame {
    let mut data = vec![128u8; PixelFormat::I420.frame_len(W, H)];
    let mut seed = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for y in 0..H as usize {
        for x in 0..W as usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let noise = (seed % 48) as usize;
            data[y * W as usize + x] = ((x + y + id as usize * 4 + noise) % 220 + 16) as u8;
        }
    }
    Frame {
        id,
        captured_ns: 1_000_000_000 + id * 33_333_333,
        width: W,
        height: H,
        format: PixelFormat::I420,
        data: Bytes::from(data),
    }
}

fn encode(enc: &Encoder, id: u64) -> EncodedFrame {
    enc.push(&frame(id), &[]).expect("push");
    enc.pull(Duration::from_secs(5))
        .expect("pull")
        .expect("one access unit per frame")
}

#[test]
fn access_units_decode_at_the_right_size() {
    access_units_decode_with("x264enc");
    access_units_decode_with("stratusx264enc");
}

fn access_units_decode_with(element: &str) {
    let mut config = EncoderConfig::new(W, H, 30, 1000);
    config.prefer = vec![element.into()];
    let enc = Encoder::open(config).expect("open");
    let info = enc.describe();
    assert_eq!(info.element, element);
    assert!(!info.hardware);
    let aus: Vec<EncodedFrame> = (0..30).map(|i| encode(&enc, i)).collect();
    assert!(aus[0].keyframe, "the stream starts with an IDR");
    let first = nal_types(&aus[0].au);
    assert!(
        first.contains(&7) && first.contains(&8) && first.contains(&5),
        "SPS, PPS, IDR: {first:?}"
    );
    for (i, au) in aus.iter().enumerate() {
        assert_eq!(
            au.frame_id, i as u64,
            "outputs keep their frame ids in order"
        );
        assert_eq!(au.captured_ns, frame(i as u64).captured_ns);
        assert!(au.encoded_ns > 0);
    }

    // Decode everything with avdec_h264.
    gst::init().expect("gst");
    let pipeline = gst::parse::launch(
        "appsrc name=src is-live=false format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! appsink name=sink sync=false",
    )
    .expect("decoder pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let src = pipeline
        .by_name("src")
        .expect("src")
        .downcast::<gst_app::AppSrc>()
        .expect("appsrc");
    let sink = pipeline
        .by_name("sink")
        .expect("sink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("play");
    for (i, au) in aus.iter().enumerate() {
        let mut buf = gst::Buffer::from_slice(au.au.clone());
        buf.get_mut()
            .expect("writable")
            .set_pts(gst::ClockTime::from_mseconds(i as u64 * 33));
        src.push_buffer(buf).expect("push");
    }
    src.end_of_stream().expect("eos");
    let mut decoded = 0;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        let s = sample
            .caps()
            .expect("caps")
            .structure(0)
            .expect("structure")
            .to_owned();
        assert_eq!(s.get::<i32>("width").expect("width"), W as i32);
        assert_eq!(s.get::<i32>("height").expect("height"), H as i32);
        decoded += 1;
    }
    pipeline.set_state(gst::State::Null).expect("stop");
    assert_eq!(decoded, 30, "every access unit decodes to one picture");
}

#[test]
fn forced_keyframe_is_the_next_frame() {
    let enc = Encoder::open(EncoderConfig::new(W, H, 30, 1000)).expect("open");
    for i in 0..10 {
        encode(&enc, i);
    }
    assert!(!encode(&enc, 10).keyframe, "no keyframe without a request");
    enc.force_keyframe();
    let au = encode(&enc, 11);
    assert!(au.keyframe, "the frame after a request is an IDR");
    assert!(nal_types(&au.au).contains(&7), "with SPS");
}

#[test]
fn bitrate_changes_at_run_time() {
    let enc = Encoder::open(EncoderConfig::new(W, H, 30, 200)).expect("open");
    let bytes = |from: u64, enc: &Encoder| {
        (from..from + 30)
            .map(|i| encode(enc, i).au.len())
            .sum::<usize>()
    };
    let _ = bytes(0, &enc);
    let low = bytes(30, &enc);
    enc.set_bitrate(3000);
    assert_eq!(enc.bitrate(), 3000);
    let _ = bytes(60, &enc);
    let high = bytes(90, &enc);
    assert!(
        high > low * 2,
        "3000 kbit/s gave {high} bytes, 200 kbit/s gave {low}"
    );
}

/// A frame of `w`×`h` with content that moves with `id`.
fn sized_frame(id: u64, w: u32, h: u32) -> Frame {
    let mut data = vec![128u8; PixelFormat::I420.frame_len(w, h)];
    for y in 0..h as usize {
        for x in 0..w as usize {
            data[y * w as usize + x] = ((x * 3 + y + id as usize * 5) % 220 + 16) as u8;
        }
    }
    Frame {
        id,
        captured_ns: 1_000_000_000 + id * 33_333_333,
        width: w,
        height: h,
        format: PixelFormat::I420,
        data: Bytes::from(data),
    }
}

#[test]
fn a_new_frame_size_starts_a_new_sequence_at_that_size() {
    for element in ["stratusx264enc", "x264enc"] {
        let mut config = EncoderConfig::new(W, H, 30, 1000);
        config.prefer = vec![element.into()];
        let enc = Encoder::open(config).expect("open");
        let sizes = [(W, H), (W / 2, H / 2), (W, H)];
        let mut aus = Vec::new();
        let mut id = 0;
        for (w, h) in sizes {
            for _ in 0..10 {
                enc.push(&sized_frame(id, w, h), &[]).expect("push");
                let au = enc
                    .pull(Duration::from_secs(5))
                    .expect("pull")
                    .expect("one access unit per frame");
                if aus.len() % 10 == 0 {
                    assert!(
                        au.keyframe,
                        "{element}: the first frame at {w}x{h} is a keyframe"
                    );
                }
                aus.push(au.au.to_vec());
                id += 1;
            }
        }
        let decoded = common::decode_h264(&aus);
        let got: Vec<(u32, u32)> = decoded.iter().map(|d| (d.width, d.height)).collect();
        let want: Vec<(u32, u32)> = sizes
            .iter()
            .flat_map(|s| std::iter::repeat_n(*s, 10))
            .collect();
        assert_eq!(got, want, "{element}: decoded sizes");
    }
}

#[test]
fn bad_frames_and_configs_are_errors() {
    let err = Encoder::open(EncoderConfig::new(0, 240, 30, 1000)).expect_err("zero width");
    assert!(matches!(err, EncoderError::InvalidConfig(_)), "{err}");
    let err = Encoder::open(EncoderConfig::new(321, 240, 30, 1000)).expect_err("odd width");
    assert!(err.to_string().contains("even"), "{err}");

    let enc = Encoder::open(EncoderConfig::new(W, H, 30, 1000)).expect("open");
    let mut wrong = frame(0);
    wrong.width = 640;
    let err = enc
        .push(&wrong, &[])
        .expect_err("too little data for its size");
    assert!(err.to_string().contains("640x240"), "{err}");
    let mut odd = frame(0);
    odd.width = 319;
    let err = enc.push(&odd, &[]).expect_err("odd width");
    assert!(err.to_string().contains("even"), "{err}");
    let mut short = frame(1);
    short.data = short.data.slice(..100);
    assert!(enc.push(&short, &[]).is_err(), "short data");
    // The encoder still works after refusing bad frames.
    assert!(encode(&enc, 2).keyframe);
}

#[test]
fn preferring_a_missing_encoder_falls_back() {
    let mut config = EncoderConfig::new(W, H, 30, 1000);
    config.prefer = vec!["nvh264enc".into()];
    let enc = Encoder::open(config).expect("falls back to software");
    // No GPU here: the best software encoder is ours, which honours ROI.
    let info = enc.describe();
    assert_eq!(info.element, "stratusx264enc");
    assert!(
        !info.hardware && !info.roi_supported,
        "ROI is off unless configured"
    );
    let mut config = EncoderConfig::new(W, H, 30, 1000);
    config.roi = true;
    assert!(
        Encoder::open(config)
            .expect("open")
            .describe()
            .roi_supported
    );
}
