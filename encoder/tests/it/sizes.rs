//! Every even frame size encodes: pictures whose width is not a multiple of 8 (or 16) go through
//! each software encoder present, are decoded back with avdec_h264 and compared with what was
//! pushed, plane by plane, with a known feature checked at its known place.
//!
//! Our frames are tightly packed; GStreamer's default I420 layout pads strides to multiples of 4,
//! so for these widths the encoder must repack (a 500x500 frame once ended a session with
//! "cannot map a 500x500 I420 frame").

use std::time::Duration;

use bytes::Bytes;
use capture::{Frame, PixelFormat};
use encoder::{EncodedFrame, Encoder, EncoderConfig, EncoderError, RoiPolicy};
use gstreamer as gst;

use crate::common::{Decoded, decode_h264};

/// Sizes whose widths are not multiples of 8 (500, 970 and 1366 are 4 or 6 mod 8; 502 and 322
/// are 6 and 2 mod 8, so even the luma stride differs) nor, except 1366x768, heights multiples
/// of 16.
const SIZES: &[(u32, u32)] = &[(500, 500), (502, 376), (970, 546), (1366, 768), (322, 180)];
/// The session's size before the game's window takes over: a multiple of 8, no repack.
const SESSION: (u32, u32) = (1280, 720);
const FRAMES_PER_SIZE: u64 = 3;
const KBPS: u32 = 8000;

/// The H.264 elements of the table that are installed here, ours first.
fn software_encoders() -> Vec<&'static str> {
    encoder::x264::register().expect("register stratusx264enc");
    ["stratusx264enc", "x264enc", "openh264enc"]
        .into_iter()
        .filter(|name| {
            let present = gst::ElementFactory::find(name).is_some();
            if !present {
                println!("{name} is not installed here; skipped");
            }
            present
        })
        .collect()
}

/// The feature: a square of `side` pixels at (`x`, `y`), all even so it covers whole chroma
/// samples.
fn feature(w: u32, h: u32) -> (u32, u32, u32) {
    let side = (w.min(h) / 6).max(2) & !1;
    ((w / 4) & !1, (h / 3) & !1, side)
}

const FEATURE_Y: u8 = 235;
const FEATURE_U: u8 = 60;
const FEATURE_V: u8 = 200;

/// A `w`×`h` picture: smooth gradients in all three planes (a stride mix-up shears them) that
/// move a little with `id`, and a bright, strongly coloured square at [`feature`].
fn picture(id: u64, w: u32, h: u32) -> Frame {
    let (fx, fy, side) = feature(w, h);
    let inside = |x: u32, y: u32| x >= fx && x < fx + side && y >= fy && y < fy + side;
    let mut data = Vec::with_capacity(PixelFormat::I420.frame_len(w, h));
    for y in 0..h {
        for x in 0..w {
            data.push(if inside(x, y) {
                FEATURE_Y
            } else {
                (40 + x * 100 / w + y * 40 / h + id as u32) as u8
            });
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    for plane in 0..2 {
        for cy in 0..ch {
            for cx in 0..cw {
                data.push(match (inside(cx * 2, cy * 2), plane) {
                    (true, 0) => FEATURE_U,
                    (true, _) => FEATURE_V,
                    (false, 0) => (98 + cx * 60 / cw) as u8,
                    (false, _) => (98 + cy * 60 / ch) as u8,
                });
            }
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

/// Mean absolute difference of two planes.
fn mean_abs_error(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len(), "plane sizes");
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(&a, &b)| u64::from(a.abs_diff(b)))
        .sum();
    sum as f64 / a.len().max(1) as f64
}

/// Mean of `plane` (`width` samples a row) over the rectangle `(x, y, w, h)`.
fn mean_in(plane: &[u8], width: u32, (x, y, w, h): (u32, u32, u32, u32)) -> f64 {
    let mut sum = 0u64;
    for row in y..y + h {
        for col in x..x + w {
            sum += u64::from(plane[(row * width + col) as usize]);
        }
    }
    sum as f64 / f64::from((w * h).max(1))
}

/// Checks one decoded picture against the frame it came from; returns the mean absolute errors
/// of Y, U and V.
fn compare(element: &str, source: &Frame, decoded: &Decoded) -> [f64; 3] {
    let (w, h) = (source.width, source.height);
    assert_eq!(
        (decoded.width, decoded.height),
        (w, h),
        "{element}: decoded size"
    );
    let planes = [&decoded.luma, &decoded.u, &decoded.v];
    let mut errors = [0.0; 3];
    for (i, plane) in planes.iter().enumerate() {
        errors[i] = mean_abs_error(source.plane(i).expect("source plane"), plane);
    }
    // The feature, where it was drawn, away from its blurred edges; and the gradient just left
    // of it, where a sheared or shifted picture would put it.
    let (fx, fy, side) = feature(w, h);
    let m = side / 4;
    let core = (fx + m, fy + m, side - 2 * m, side - 2 * m);
    let chroma_core = (
        core.0 / 2,
        core.1 / 2,
        (core.2 / 2).max(1),
        (core.3 / 2).max(1),
    );
    let left = (fx - side, fy + m, side / 2, side - 2 * m);
    let y_in = mean_in(&decoded.luma, w, core);
    let y_left = mean_in(&decoded.luma, w, left);
    let u_in = mean_in(&decoded.u, w / 2, chroma_core);
    let v_in = mean_in(&decoded.v, w / 2, chroma_core);
    let at = format!("{element} at {w}x{h}, frame {}", source.id);
    assert!(y_in > 215.0, "{at}: feature luma {y_in:.1}");
    assert!(y_left < 190.0, "{at}: luma left of the feature {y_left:.1}");
    assert!(
        u_in < 80.0 && v_in > 180.0,
        "{at}: feature chroma {u_in:.1}/{v_in:.1}"
    );
    errors
}

/// Pushes `frame` and pulls its access unit, checking the size it says it was encoded at.
fn encode(enc: &Encoder, frame: &Frame, rois: &[encoder::Roi]) -> EncodedFrame {
    enc.push(frame, rois)
        .unwrap_or_else(|e| panic!("{}x{} refused: {e}", frame.width, frame.height));
    let au = enc
        .pull(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{}x{}: {e}", frame.width, frame.height))
        .expect("one access unit per frame");
    assert_eq!(au.frame_id, frame.id);
    assert_eq!(
        (au.width, au.height),
        (frame.width, frame.height),
        "encoded size"
    );
    au
}

#[test]
fn every_even_size_encodes_and_decodes_to_the_same_picture() {
    for element in software_encoders() {
        let mut config = EncoderConfig::new(SESSION.0, SESSION.1, 30, KBPS);
        config.prefer = vec![element.into()];
        // Regions of interest too: at these sizes they end in partial macroblocks.
        config.roi = true;
        let enc = Encoder::open(config).expect("open");
        assert_eq!(enc.describe().element, element);
        let mut sources = Vec::new();
        let mut aus = Vec::new();
        let mut id = 0;
        for &(w, h) in std::iter::once(&SESSION).chain(SIZES) {
            // The region at the bottom right corner, over the last partial macroblocks.
            let rois = RoiPolicy::new(w, h).regions(Some((w as i32, h as i32)));
            for _ in 0..FRAMES_PER_SIZE {
                let frame = picture(id, w, h);
                let au = encode(&enc, &frame, &rois);
                if (sources.len() as u64).is_multiple_of(FRAMES_PER_SIZE) {
                    assert!(au.keyframe, "{element}: {w}x{h} starts with an IDR");
                }
                aus.push(au.au.to_vec());
                sources.push(frame);
                id += 1;
            }
        }
        let decoded = decode_h264(&aus);
        assert_eq!(
            decoded.len(),
            aus.len(),
            "{element}: every access unit decodes"
        );
        for (source, decoded) in sources.iter().zip(&decoded) {
            let errors = compare(element, source, decoded);
            println!(
                "{element} {}x{} frame {}: mean abs error Y {:.2} U {:.2} V {:.2}",
                source.width, source.height, source.id, errors[0], errors[1], errors[2]
            );
            for (plane, error) in ["Y", "U", "V"].iter().zip(errors) {
                assert!(
                    error < 3.0,
                    "{element} at {}x{}: {plane} mean abs error {error:.2}",
                    source.width,
                    source.height
                );
            }
        }
    }
}

/// A message a player can read: one short sentence, none of GStreamer's debug string.
fn assert_plain(message: &str) {
    assert!(message.len() < 160, "too long for a player: {message}");
    for debug in ["Gst", "gst", ".c(", ".rs(", "/", "\n"] {
        assert!(!message.contains(debug), "GStreamer detail in {message:?}");
    }
}

#[test]
fn the_smallest_size_encodes_or_is_refused_in_plain_words() {
    for element in software_encoders() {
        let min = encoder::profiles::profile(element)
            .expect("in the table")
            .min_size;
        let config = |w, h| {
            let mut config = EncoderConfig::new(w, h, 30, KBPS);
            config.prefer = vec![element.into()];
            config
        };
        // A session at 320x240 whose title shrinks its window to 2x2.
        let enc = Encoder::open(config(320, 240)).expect("open");
        encode(&enc, &picture(0, 320, 240), &[]);
        let tiny = picture(1, 2, 2);
        if min <= (2, 2) {
            let au = encode(&enc, &tiny, &[]);
            assert!(au.keyframe, "{element}: a new size starts with an IDR");
            let decoded = decode_h264(&[au.au.to_vec()]);
            assert_eq!(decoded.len(), 1, "{element}: the 2x2 picture decodes");
            let d = &decoded[0];
            assert_eq!((d.width, d.height), (2, 2));
            // The feature fills the whole picture.
            let near = |got: &[u8], want: u8| got.iter().all(|&g| g.abs_diff(want) <= 3);
            assert!(
                near(&d.luma, FEATURE_Y) && near(&d.u, FEATURE_U) && near(&d.v, FEATURE_V),
                "{element}: 2x2 decoded as {d:?}"
            );
        } else {
            let err = enc
                .push(&tiny, &[])
                .expect_err("below the element's minimum");
            println!("{element} at 2x2: {err}");
            assert_plain(&err.to_string());
            assert!(
                err.to_string().contains("2x2") && err.to_string().contains("16x16"),
                "{element}: {err}"
            );
            // Refused before the caps change: the stream goes on at its size.
            encode(&enc, &picture(2, 320, 240), &[]);
            let err = Encoder::open(config(2, 2)).expect_err("below the minimum");
            assert!(
                matches!(err, EncoderError::InvalidConfig(_)) && err.to_string().contains("16x16"),
                "{element}: {err}"
            );
        }
    }
}

#[test]
fn refused_frames_say_why_in_plain_words() {
    let enc = Encoder::open(EncoderConfig::new(320, 240, 30, 1000)).expect("open");
    let odd = picture(0, 501, 500);
    let mut short = picture(1, 500, 500);
    short.data = short.data.slice(..1000);
    let mut rgba = picture(2, 320, 240);
    rgba.format = PixelFormat::Rgba;
    for (frame, words) in [(odd, "501x500"), (short, "1000 of"), (rgba, "Rgba")] {
        let err = enc.push(&frame, &[]).expect_err("refused");
        println!("{err}");
        assert_plain(&err.to_string());
        assert!(err.to_string().contains(words), "{err}");
        assert!(
            matches!(err, EncoderError::FrameMismatch { frame_id, .. } if frame_id == frame.id)
        );
    }
    // The encoder still works after refusing them.
    assert!(encode(&enc, &picture(3, 320, 240), &[]).keyframe);
}
