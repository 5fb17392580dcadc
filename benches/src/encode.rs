//! `stratus-bench encode`: our ROI encoder element against stock `x264enc`, side by side, on the
//! same demo-title frames.
//!
//! For each size (1280x720, 1920x1080) and each encoder, the same moving sequence (by default
//! [`capture::synthetic::TexturedScene`], game-like texture and noise; `--content demo` for the
//! smooth demo title) is encoded twice at the same target bitrate, once without and once with a region of
//! interest (the centre-weighted default of [`encoder::roi::RoiPolicy`]); both outputs are
//! decoded with `avdec_h264` and compared with the source frames (Y-plane PSNR) inside and
//! outside the region.
//!
//! One row per (encoder, size), fields (stable): `encoder`, `width`, `height`, `frames`,
//! `target_kbps`, `encode_ms_p50`, `encode_ms_p99` (push to pulled access unit, ROI run),
//! `fps_max` (1000 / mean encode ms), `roi_gain_db` (PSNR inside the region, ROI on minus off),
//! `bg_loss_db` (PSNR outside, off minus on), `bitrate_error_pct` (|actual − target| / target
//! of the ROI run), `psnr_roi_db_on`, `psnr_bg_db_on`; quality and rate exclude the first
//! second, while rate control settles.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use capture::Frame;
use capture::offscreen::DemoRenderer;
use encoder::roi::{Roi, RoiPolicy};
use encoder::{Encoder, EncoderConfig};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::stats::{Report, percentile};

/// What to run.
#[derive(Debug, Clone)]
pub struct EncodeArgs {
    /// Frames per sequence.
    pub frames: u32,
    /// Frame rate the encoders are told (rate control) and the sequence's time step.
    pub fps: u32,
    /// Sizes to run, `(width, height)`.
    pub sizes: Vec<(u32, u32)>,
    /// Encoders to compare, by element name.
    pub encoders: Vec<String>,
    /// Which sequence to encode.
    pub content: Content,
}

/// The sequence the encoders are compared on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A scrolling texture with fine detail and temporal noise: short of bits, like a game.
    Texture,
    /// The demo title: smooth gradients, cheap to code, so ROI has little to win.
    Demo,
}

impl Default for EncodeArgs {
    fn default() -> Self {
        Self {
            frames: 120,
            fps: 60,
            sizes: vec![(1280, 720), (1920, 1080)],
            encoders: vec!["stratusx264enc".into(), "x264enc".into()],
            content: Content::Texture,
        }
    }
}

/// Target bitrate: 2 Mbit/s at 720p30 (the reference conditions of the ROI measurement in
/// DESIGN.md), scaled by pixel count and frame rate, i.e. the same bits per pixel per frame.
fn target_kbps(width: u32, height: u32, fps: u32) -> u32 {
    ((width * height) as f64 / (1280.0 * 720.0) * (fps as f64 / 30.0) * 2000.0).round() as u32
}

/// Makes the sequence once; frames are stamped 1/fps apart so rate control sees real time.
fn sequence(
    content: Content,
    width: u32,
    height: u32,
    frames: u32,
    fps: u32,
) -> anyhow::Result<Vec<Frame>> {
    match content {
        Content::Texture => {
            let scene = capture::synthetic::TexturedScene::new(width, height, frames);
            Ok((0..frames).map(|i| scene.frame(i, fps)).collect())
        }
        Content::Demo => render(width, height, frames, fps),
    }
}

/// Renders the demo title.
fn render(width: u32, height: u32, frames: u32, fps: u32) -> anyhow::Result<Vec<Frame>> {
    let mut renderer = DemoRenderer::new(width, height).context("open the demo title")?;
    let step = 1_000_000_000 / fps as u64;
    (0..frames as u64)
        .map(|i| {
            let (mut frame, _) = renderer.render_frame(i)?;
            frame.captured_ns = 1_000_000_000 + i * step;
            Ok(frame)
        })
        .collect()
}

struct Run {
    aus: Vec<Bytes>,
    encode_ms: Vec<f64>,
}

fn encode(
    element: &str,
    frames: &[Frame],
    fps: u32,
    kbps: u32,
    rois: &[Roi],
) -> anyhow::Result<Run> {
    let (w, h) = (frames[0].width, frames[0].height);
    let mut config = EncoderConfig::new(w, h, fps, kbps);
    config.prefer = vec![element.to_string()];
    config.roi = !rois.is_empty();
    let enc = Encoder::open(config).with_context(|| format!("open {element}"))?;
    if enc.describe().element != element {
        bail!(
            "{element} is not available (got {})",
            enc.describe().element
        );
    }
    let mut run = Run {
        aus: Vec::new(),
        encode_ms: Vec::new(),
    };
    for frame in frames {
        let start = Instant::now();
        enc.push(frame, rois)?;
        let au = enc
            .pull(Duration::from_secs(5))?
            .with_context(|| format!("{element} produced nothing for frame {}", frame.id))?;
        run.encode_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        run.aus.push(au.au);
    }
    Ok(run)
}

/// Decodes access units with avdec_h264 and returns each picture's Y plane (tightly packed).
fn decode(aus: &[Bytes], width: u32, height: u32) -> anyhow::Result<Vec<Vec<u8>>> {
    let pipeline = gst::parse::launch(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 \
         ! appsink name=sink sync=false",
    )?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow::anyhow!("not a pipeline"))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .context("appsrc")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .context("appsink")?;
    pipeline.set_state(gst::State::Playing)?;
    // Feed from another thread so the bounded appsink queue cannot stall the producer.
    let feed: Vec<Bytes> = aus.to_vec();
    let feeder = std::thread::spawn(move || {
        for (i, au) in feed.into_iter().enumerate() {
            let mut buf = gst::Buffer::from_slice(au);
            if let Some(b) = buf.get_mut() {
                b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 16));
            }
            if src.push_buffer(buf).is_err() {
                break;
            }
        }
        let _ = src.end_of_stream();
    });
    let (w, h) = (width as usize, height as usize);
    let mut planes = Vec::new();
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        let buffer = sample.buffer().context("sample without buffer")?;
        let info = sample
            .caps()
            .and_then(|c| gstreamer_video::VideoInfo::from_caps(c).ok())
            .context("decoded caps")?;
        let map = buffer.map_readable()?;
        let stride = info.stride()[0] as usize;
        let offset = info.offset()[0];
        let mut y = Vec::with_capacity(w * h);
        for row in 0..h {
            let start = offset + row * stride;
            y.extend_from_slice(map.get(start..start + w).context("short decoded plane")?);
        }
        planes.push(y);
    }
    let _ = feeder.join();
    pipeline.set_state(gst::State::Null)?;
    Ok(planes)
}

/// PSNR of the Y plane inside and outside `roi`, over the frames from `skip` on.
fn psnr(
    source: &[Frame],
    decoded: &[Vec<u8>],
    roi: &Roi,
    skip: usize,
) -> anyhow::Result<(f64, f64)> {
    if decoded.len() != source.len() {
        bail!(
            "decoded {} pictures from {} frames",
            decoded.len(),
            source.len()
        );
    }
    let (mut se_in, mut n_in, mut se_out, mut n_out) = (0f64, 0u64, 0f64, 0u64);
    for (frame, dec) in source.iter().zip(decoded).skip(skip) {
        let src = frame.plane(0).context("source Y plane")?;
        let w = frame.width as usize;
        for (i, (a, b)) in src.iter().zip(dec).enumerate() {
            let (x, y) = ((i % w) as u32, (i / w) as u32);
            let d = (*a as f64 - *b as f64).powi(2);
            let inside =
                x >= roi.x && x < roi.x + roi.width && y >= roi.y && y < roi.y + roi.height;
            if inside {
                se_in += d;
                n_in += 1;
            } else {
                se_out += d;
                n_out += 1;
            }
        }
    }
    let db = |se: f64, n: u64| 10.0 * (255.0f64.powi(2) / (se / n.max(1) as f64).max(1e-9)).log10();
    Ok((db(se_in, n_in), db(se_out, n_out)))
}

/// Runs the comparison and returns one report per (encoder, size).
pub fn run(args: &EncodeArgs) -> anyhow::Result<Vec<Report>> {
    gst::init()?;
    let mut reports = Vec::new();
    for &(width, height) in &args.sizes {
        let frames = sequence(args.content, width, height, args.frames, args.fps)?;
        let kbps = target_kbps(width, height, args.fps);
        let roi = RoiPolicy::new(width, height).regions(None);
        for element in &args.encoders {
            let off = encode(element, &frames, args.fps, kbps, &[])?;
            let on = encode(element, &frames, args.fps, kbps, &roi)?;
            // Rate control settles within the first second (and the first frame is an IDR);
            // quality and rate are measured after it.
            let settled = (args.fps as usize).min(on.aus.len() / 2);
            let (in_off, out_off) =
                psnr(&frames, &decode(&off.aus, width, height)?, &roi[0], settled)?;
            let (in_on, out_on) =
                psnr(&frames, &decode(&on.aus, width, height)?, &roi[0], settled)?;
            let bytes: usize = on.aus[settled..].iter().map(Bytes::len).sum();
            let seconds = (on.aus.len() - settled) as f64 / args.fps as f64;
            let actual_kbps = bytes as f64 * 8.0 / 1000.0 / seconds;
            let mean_ms = on.encode_ms.iter().sum::<f64>() / on.encode_ms.len() as f64;
            reports.push(
                Report::default()
                    .field("encoder", element.as_str())
                    .field("content", format!("{:?}", args.content).to_lowercase())
                    .field("width", width)
                    .field("height", height)
                    .field("frames", args.frames)
                    .field("target_kbps", kbps)
                    .field("encode_ms_p50", percentile(&on.encode_ms, 50.0))
                    .field("encode_ms_p99", percentile(&on.encode_ms, 99.0))
                    .field("fps_max", 1000.0 / mean_ms)
                    .field("roi_gain_db", in_on - in_off)
                    .field("bg_loss_db", out_off - out_on)
                    .field(
                        "bitrate_error_pct",
                        (actual_kbps - kbps as f64).abs() / kbps as f64 * 100.0,
                    )
                    .field("psnr_roi_db_on", in_on)
                    .field("psnr_bg_db_on", out_on),
            );
        }
    }
    Ok(reports)
}
