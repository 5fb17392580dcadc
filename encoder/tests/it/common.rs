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

/// A cheap deterministic hash of a pixel position, for noise.
fn hash(x: u32, y: u32, seed: u32) -> u32 {
    let mut h = x.wrapping_mul(0x9e37_79b1) ^ y.wrapping_mul(0x85eb_ca77) ^ seed;
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^ (h >> 15)
}

/// A textured scene that scrolls diagonally, with fine static detail (which motion compensation
/// can follow) and a little temporal noise (which it cannot), so an encoder at a few Mbit/s is
/// short of bits everywhere, as with a real game.
#[derive(Debug)]
pub(crate) struct Scene {
    width: u32,
    height: u32,
    canvas_width: u32,
    canvas: Vec<u8>,
}

/// Scroll per frame, pixels.
const SCROLL: (u32, u32) = (3, 2);

impl Scene {
    /// A scene for `frames` pictures of `width`×`height`.
    pub(crate) fn new(width: u32, height: u32, frames: u32) -> Self {
        let canvas_width = width + SCROLL.0 * frames;
        let canvas_height = height + SCROLL.1 * frames;
        let mut canvas = Vec::with_capacity((canvas_width * canvas_height) as usize);
        for y in 0..canvas_height {
            for x in 0..canvas_width {
                let wave = (x as f32 * 0.045).sin() * (y as f32 * 0.031).cos() * 45.0
                    + ((x + 2 * y) as f32 * 0.013).sin() * 25.0;
                let detail = (hash(x, y, 7) % 41) as f32 - 20.0;
                canvas.push((128.0 + wave + detail).clamp(16.0, 235.0) as u8);
            }
        }
        Self {
            width,
            height,
            canvas_width,
            canvas,
        }
    }

    /// Picture `index` as tightly packed I420.
    pub(crate) fn picture(&self, index: u32) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let (cw, ch) = (w / 2, h / 2);
        let mut data = vec![0u8; w * h + 2 * cw * ch];
        let (dx, dy) = ((SCROLL.0 * index) as usize, (SCROLL.1 * index) as usize);
        let (luma, chroma) = data.split_at_mut(w * h);
        for (y, row) in luma.chunks_exact_mut(w).enumerate() {
            let start = (y + dy) * self.canvas_width as usize + dx;
            let src = &self.canvas[start..start + w];
            for (x, (out, &v)) in row.iter_mut().zip(src).enumerate() {
                let noise = (hash(x as u32, y as u32, index) % 7) as i32 - 3;
                *out = (i32::from(v) + noise).clamp(16, 235) as u8;
            }
        }
        let (u, v) = chroma.split_at_mut(cw * ch);
        for y in 0..ch {
            for x in 0..cw {
                let (sx, sy) = (x + dx / 2, y + dy / 2);
                u[y * cw + x] = (96 + (sx / 4 + sy / 8) % 64) as u8;
                v[y * cw + x] = (160 - (sx / 8 + sy / 4) % 64) as u8;
            }
        }
        data
    }
}

/// One decoded picture's luma, tightly packed.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height` luma samples.
    pub luma: Vec<u8>,
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
        let stride = frame.plane_stride()[0] as usize;
        let plane = frame.plane_data(0).expect("luma");
        let mut luma = Vec::with_capacity(w * h);
        for row in 0..h {
            luma.extend_from_slice(&plane[row * stride..row * stride + w]);
        }
        decoded.push(Decoded {
            width: info.width(),
            height: info.height(),
            luma,
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
