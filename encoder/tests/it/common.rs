//! Helpers shared by the test modules: synthetic pictures, Annex-B parsing, decoding with
//! avdec_h264, and luma PSNR.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

/// NAL unit types in an Annex-B access unit.
pub(crate) fn nal_types(au: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            types.push(au[i + 3] & 0x1f);
            i += 3;
        }
        i += 1;
    }
    types
}

/// `profile_idc` and the constraint-flags byte of the first SPS in an Annex-B access unit.
pub(crate) fn sps_profile(au: &[u8]) -> Option<(u8, u8)> {
    let mut i = 0;
    while i + 5 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 && au[i + 3] & 0x1f == 7 {
            // profile_idc and the constraint flags are never 0, so no emulation prevention
            // byte can sit between them.
            return Some((au[i + 4], au[i + 5]));
        }
        i += 1;
    }
    None
}

/// The textured test scene now lives in the capture crate, shared with the benches.
pub(crate) use capture::synthetic::TexturedScene as Scene;

/// One decoded picture's planes, each tightly packed.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height` luma samples.
    pub luma: Vec<u8>,
    /// `width / 2 × height / 2` Cb samples.
    pub u: Vec<u8>,
    /// `width / 2 × height / 2` Cr samples.
    pub v: Vec<u8>,
}

/// Decodes Annex-B access units with `h264parse ! avdec_h264`, every wait bounded.
pub(crate) fn decode_h264(aus: &[Vec<u8>]) -> Vec<Decoded> {
    gst::init().expect("gst");
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 \
         ! appsink name=sink sync=false",
    )
    .expect("decoder pipeline")
    .downcast::<gst::Pipeline>()
    .expect("pipeline");
    let src = pipeline
        .by_name("src")
        .and_downcast::<gst_app::AppSrc>()
        .expect("appsrc");
    let sink = pipeline
        .by_name("sink")
        .and_downcast::<gst_app::AppSink>()
        .expect("appsink");
    pipeline.set_state(gst::State::Playing).expect("play");
    for (i, au) in aus.iter().enumerate() {
        let mut buf = gst::Buffer::from_slice(au.clone());
        buf.get_mut()
            .expect("writable")
            .set_pts(gst::ClockTime::from_mseconds(i as u64 * 33));
        src.push_buffer(buf).expect("push");
    }
    src.end_of_stream().expect("eos");
    let mut decoded = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).expect("info");
        let buffer = sample.buffer().expect("buffer");
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).expect("map");
        let (w, h) = (info.width() as usize, info.height() as usize);
        let packed = |i: usize, w: usize, h: usize| {
            let stride = frame.plane_stride()[i] as usize;
            let plane = frame.plane_data(i as u32).expect("plane");
            let mut samples = Vec::with_capacity(w * h);
            for row in 0..h {
                samples.extend_from_slice(&plane[row * stride..row * stride + w]);
            }
            samples
        };
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        decoded.push(Decoded {
            width: info.width(),
            height: info.height(),
            luma: packed(0, w, h),
            u: packed(1, cw, ch),
            v: packed(2, cw, ch),
        });
        if decoded.len() == aus.len() {
            break;
        }
    }
    pipeline.set_state(gst::State::Null).expect("stop");
    decoded
}

/// Accumulated squared error over some pixels.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SquaredError {
    sum: f64,
    count: u64,
}

impl SquaredError {
    /// Adds one pixel pair.
    pub(crate) fn add(&mut self, a: u8, b: u8) {
        let d = f64::from(a) - f64::from(b);
        self.sum += d * d;
        self.count += 1;
    }

    /// PSNR in dB for 8-bit samples.
    pub(crate) fn psnr(&self) -> f64 {
        let mse = self.sum / self.count.max(1) as f64;
        if mse == 0.0 {
            return 100.0;
        }
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

/// Luma PSNR of `decoded` against the `width`-wide luma `source`, inside and outside `rect`.
pub(crate) fn luma_error(
    source: &[u8],
    decoded: &[u8],
    width: u32,
    rect: (u32, u32, u32, u32),
    inside: &mut SquaredError,
    outside: &mut SquaredError,
) {
    let (rx, ry, rw, rh) = rect;
    for (i, (&a, &b)) in source.iter().zip(decoded).enumerate() {
        let (x, y) = (i as u32 % width, i as u32 / width);
        if x >= rx && x < rx + rw && y >= ry && y < ry + rh {
            inside.add(a, b);
        } else {
            outside.add(a, b);
        }
    }
}
