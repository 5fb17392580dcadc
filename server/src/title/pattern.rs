//! `pattern`, the built-in CPU title: game-like frames made on the CPU straight in I420, with
//! no Vulkan. It is the equal input of the latency lab (our stack and a reference sender are fed
//! the same frames) and the content the fleet's checkers verify.
//!
//! Each frame holds, like the demo title's:
//! - a textured background (smooth waves and fine per-pixel detail) that pans 3 px right and
//!   2 px down per frame, wrapping seamlessly, so an encoder is short of bits as with a game;
//! - a bright ball that bounces across the picture;
//! - the latency code (epoch ms at generation) in rows 0–31 and the frame-id code in rows
//!   32–63 (`stream_formats::latency_code`), on neutral chroma;
//! - the swatch ([`capture::offscreen::swatch_rgb`] of the frame id) at the bottom right;
//! - the input indicator ([`capture::offscreen::indicator_rgb`]) at the bottom left and a
//!   crosshair at the pointer, from [`DemoControls`], so the demo's injector drives it too.
//!
//! A frame is a handful of row copies and small fills: well under a millisecond at 720p.

use std::sync::Arc;

use bytes::Bytes;
use stream_formats::latency_code::{self, CodeRow};

use capture::clock::FrameClock;
use capture::convert::rgb_to_ycbcr;
use capture::offscreen::{DemoControls, indicator_rgb, swatch_rect, swatch_rgb};
use capture::{CaptureError, Frame, PixelFormat, Source};

/// Pan per frame, pixels (right, down).
pub const PAN: (usize, usize) = (3, 2);
/// Rows the two codes take at the top of the frame.
const CODE_ROWS: usize = 2 * latency_code::CELL_HEIGHT;
/// Edge of the input indicator, pixels (as the demo's).
const INDICATOR: usize = 48;
/// Margin of the indicator from the frame's edges.
const INDICATOR_MARGIN: usize = 16;

/// A seamlessly wrapping texture of `w`×`h` samples.
#[derive(Debug)]
struct Tile {
    w: usize,
    h: usize,
    samples: Vec<u8>,
}

impl Tile {
    /// Smooth waves whose periods divide the tile, plus fine hashed detail, around `mid`.
    fn new(w: usize, h: usize, seed: u32, mid: f32, amplitude: f32, detail: u32) -> Tile {
        let tau = std::f32::consts::TAU;
        let mut samples = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
                let wave = (tau * 5.0 * fx).sin() * (tau * 3.0 * fy).cos() * 0.6
                    + (tau * (7.0 * fx + 4.0 * fy)).sin() * 0.4;
                let fine =
                    (hash(x as u32, y as u32, seed) % (2 * detail + 1)) as f32 - detail as f32;
                samples.push((mid + wave * amplitude + fine).clamp(16.0, 240.0) as u8);
            }
        }
        Tile { w, h, samples }
    }

    /// Copies row `y` of the window at `(dx, dy)` (wrapping) into `out`.
    fn copy_row(&self, out: &mut [u8], y: usize, dx: usize, dy: usize) {
        let row = &self.samples[((y + dy) % self.h) * self.w..][..self.w];
        let start = dx % self.w;
        let mut filled = 0;
        while filled < out.len() {
            let from = (start + filled) % self.w;
            let n = (self.w - from).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&row[from..from + n]);
            filled += n;
        }
    }
}

fn hash(x: u32, y: u32, seed: u32) -> u32 {
    let mut h = x
        .wrapping_mul(0x27d4_eb2d)
        .wrapping_add(y.wrapping_mul(0x1656_67b1))
        .wrapping_add(seed.wrapping_mul(0x9e37_79b9));
    h ^= h >> 15;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^ (h >> 13)
}

/// Makes the pattern's frames.
#[derive(Debug)]
pub struct PatternGenerator {
    width: usize,
    height: usize,
    luma: Tile,
    cb: Tile,
    cr: Tile,
}

impl PatternGenerator {
    /// A generator of `width`×`height` frames (even sizes; odd ones are rounded down).
    pub fn new(width: u32, height: u32) -> Result<PatternGenerator, CaptureError> {
        let (w, h) = ((width & !1) as usize, (height & !1) as usize);
        if w < 2 || h < 2 || w > 8192 || h > 8192 {
            return Err(CaptureError::InvalidSize {
                width,
                height,
                reason: "the pattern title makes frames from 2x2 to 8192x8192",
            });
        }
        // Tiles a little larger than the frame, rounded to whole wave periods, so a pan wraps
        // without a seam and the picture does not repeat within a frame.
        let (tw, th) = (w + 256, h + 256);
        Ok(PatternGenerator {
            width: w,
            height: h,
            luma: Tile::new(tw, th, 7, 120.0, 55.0, 20),
            cb: Tile::new(tw / 2, th / 2, 11, 128.0, 18.0, 4),
            cr: Tile::new(tw / 2, th / 2, 13, 128.0, 18.0, 4),
        })
    }

    /// Frame size in pixels.
    pub fn size(&self) -> (u32, u32) {
        (self.width as u32, self.height as u32)
    }

    /// Frame `id` as tightly packed I420, its latency code carrying `epoch_ms`; the pointer,
    /// buttons and key from `controls`, when given.
    pub fn frame(&self, id: u64, epoch_ms: u64, controls: Option<&DemoControls>) -> Vec<u8> {
        let (w, h) = (self.width, self.height);
        let (cw, ch) = (w / 2, h / 2);
        let mut data = vec![0u8; w * h + 2 * cw * ch];
        let (luma, chroma) = data.split_at_mut(w * h);
        let (cb, cr) = chroma.split_at_mut(cw * ch);
        let t = id as usize;
        let (dx, dy) = (PAN.0 * t, PAN.1 * t);
        for (y, row) in luma.chunks_exact_mut(w).enumerate() {
            self.luma.copy_row(row, y, dx, dy);
        }
        for (y, (b, r)) in cb
            .chunks_exact_mut(cw)
            .zip(cr.chunks_exact_mut(cw))
            .enumerate()
        {
            self.cb.copy_row(b, y, dx / 2, dy / 2);
            self.cr.copy_row(r, y, dx / 2, dy / 2);
        }
        let mut planes = Planes { w, h, luma, cb, cr };
        planes.ball(t);
        if let Some(c) = controls {
            let (px, py, buttons, key) = c.snapshot();
            planes.crosshair(px, py);
            let x = INDICATOR_MARGIN;
            let y = h.saturating_sub(INDICATOR + INDICATOR_MARGIN);
            planes.fill(x, y, INDICATOR, INDICATOR, indicator_rgb(key, buttons));
        }
        if let Some((x, y, sw, sh)) = swatch_rect(w as u32, h as u32) {
            let (x, y) = (x as usize, y as usize);
            planes.fill(x, y, sw as usize, sh as usize, swatch_rgb(id));
        }
        planes.codes(epoch_ms, id);
        data
    }
}

/// A frame's three planes while it is drawn.
struct Planes<'a> {
    w: usize,
    h: usize,
    luma: &'a mut [u8],
    cb: &'a mut [u8],
    cr: &'a mut [u8],
}

impl Planes<'_> {
    /// Fills a rectangle (clipped to the frame; chroma on the even grid) with an RGB colour.
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        let (yy, u, v) = rgb_to_ycbcr(rgb[0], rgb[1], rgb[2]);
        let (x1, y1) = ((x + w).min(self.w), (y + h).min(self.h));
        for row in y.min(self.h)..y1 {
            self.luma[row * self.w + x.min(x1)..row * self.w + x1].fill(yy);
        }
        let cw = self.w / 2;
        let (cx0, cx1) = (x.div_ceil(2).min(cw), (x1 / 2).min(cw));
        for row in y.div_ceil(2)..(y1 / 2).min(self.h / 2) {
            if cx0 < cx1 {
                self.cb[row * cw + cx0..row * cw + cx1].fill(u);
                self.cr[row * cw + cx0..row * cw + cx1].fill(v);
            }
        }
    }

    /// A bright ball bouncing off the frame's edges (below the codes), one frame step at a time.
    fn ball(&mut self, t: usize) {
        let r = (self.h / 14).max(4);
        let (span_x, span_y) = (
            self.w.saturating_sub(2 * r).max(1),
            self.h.saturating_sub(2 * r + CODE_ROWS).max(1),
        );
        let bounce = |pos: usize, span: usize| {
            let p = pos % (2 * span);
            if p < span { p } else { 2 * span - p }
        };
        let cx = r + bounce(t * 7, span_x);
        let cy = CODE_ROWS + r + bounce(t * 5, span_y);
        let (yy, u, v) = rgb_to_ycbcr(250, 150, 20);
        let r2 = (r * r) as isize;
        for row in cy.saturating_sub(r)..(cy + r).min(self.h) {
            let d = row as isize - cy as isize;
            let half = ((r2 - d * d).max(0) as f32).sqrt() as usize;
            let (x0, x1) = (cx.saturating_sub(half), (cx + half).min(self.w));
            self.luma[row * self.w + x0..row * self.w + x1].fill(yy);
            if row % 2 == 0 {
                let cw = self.w / 2;
                let c = row / 2;
                if c < self.h / 2 && x0 / 2 < (x1 / 2).min(cw) {
                    self.cb[c * cw + x0 / 2..c * cw + (x1 / 2).min(cw)].fill(u);
                    self.cr[c * cw + x0 / 2..c * cw + (x1 / 2).min(cw)].fill(v);
                }
            }
        }
    }

    /// A white crosshair at the pointer.
    fn crosshair(&mut self, px: i32, py: i32) {
        let (px, py) = (px.max(0) as usize, py.max(0) as usize);
        if px >= self.w || py >= self.h {
            return;
        }
        let (x0, x1) = (px.saturating_sub(12), (px + 13).min(self.w));
        self.luma[py * self.w + x0..py * self.w + x1].fill(235);
        for row in py.saturating_sub(12)..(py + 13).min(self.h) {
            self.luma[row * self.w + px] = 235;
        }
    }

    /// The latency and frame-id codes in the top rows, on neutral chroma.
    fn codes(&mut self, epoch_ms: u64, id: u64) {
        let rows = CODE_ROWS.min(self.h);
        let cols = latency_code::CODE_WIDTH.min(self.w);
        let cw = self.w / 2;
        for row in 0..rows / 2 {
            self.cb[row * cw..row * cw + cols / 2].fill(128);
            self.cr[row * cw..row * cw + cols / 2].fill(128);
        }
        latency_code::stamp_luma_plane(self.luma, self.w, self.h, CodeRow::EpochMs, epoch_ms);
        latency_code::stamp_luma_plane(self.luma, self.w, self.h, CodeRow::FrameId, id);
    }
}

/// The pattern title as a frame [`Source`], paced at `fps`: a frame whose time has passed is
/// skipped (its id too), so a slow consumer sees gaps, never a backlog.
#[derive(Debug)]
pub struct PatternSource {
    generator: PatternGenerator,
    controls: Arc<DemoControls>,
    clock: FrameClock,
}

impl PatternSource {
    /// The title at `width`×`height` and `fps`.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<PatternSource, CaptureError> {
        Ok(PatternSource {
            generator: PatternGenerator::new(width, height)?,
            controls: Arc::new(DemoControls::default()),
            clock: FrameClock::new(fps),
        })
    }

    /// The input state it draws (for the demo's injector).
    pub fn controls(&self) -> Arc<DemoControls> {
        self.controls.clone()
    }
}

impl Source for PatternSource {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        let id = self.clock.wait_next();
        let captured_ns = capture::clock::monotonic_ns();
        let data = self
            .generator
            .frame(id, capture::clock::epoch_ms(), Some(&self.controls));
        let (width, height) = self.generator.size();
        Ok(Frame {
            id,
            captured_ns,
            width,
            height,
            format: PixelFormat::I420,
            data: Bytes::from(data),
        })
    }

    fn size(&self) -> (u32, u32) {
        self.generator.size()
    }

    fn describe(&self) -> String {
        let (w, h) = self.generator.size();
        format!("pattern title {w}x{h} (CPU, I420)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_codes_swatch_and_indicator() {
        let g = PatternGenerator::new(1280, 720).expect("a generator");
        let controls = DemoControls::default();
        controls.set_key(42);
        let frame = g.frame(77, 1_700_000_000_123, Some(&controls));
        let (w, h) = (1280usize, 720usize);
        let luma = &frame[..w * h];
        assert_eq!(
            latency_code::read_luma_plane(luma, w, h, CodeRow::EpochMs),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            latency_code::read_luma_plane(luma, w, h, CodeRow::FrameId),
            Some(77)
        );
        let f = Frame {
            id: 77,
            captured_ns: 0,
            width: 1280,
            height: 720,
            format: PixelFormat::I420,
            data: Bytes::from(frame),
        };
        let sample_rgb = |x: usize, y: usize| {
            let yy = f.sample(0, x, y).expect("y");
            let u = f.sample(1, x / 2, y / 2).expect("u");
            let v = f.sample(2, x / 2, y / 2).expect("v");
            capture::convert::ycbcr_to_rgb(yy, u, v)
        };
        let (sx, sy, sw, sh) = swatch_rect(1280, 720).expect("a swatch");
        let got = sample_rgb((sx + sw / 2) as usize, (sy + sh / 2) as usize);
        let want = swatch_rgb(77);
        assert!(
            [got.0, got.1, got.2]
                .iter()
                .zip(want)
                .all(|(g, w)| g.abs_diff(w) <= 4),
            "swatch {got:?} against {want:?}"
        );
        let got = sample_rgb(INDICATOR_MARGIN + 24, h - INDICATOR_MARGIN - 24);
        let want = indicator_rgb(42, 0);
        assert!(
            [got.0, got.1, got.2]
                .iter()
                .zip(want)
                .all(|(g, w)| g.abs_diff(w) <= 4),
            "indicator {got:?} against {want:?}"
        );
    }

    #[test]
    fn the_picture_moves_from_frame_to_frame() {
        let g = PatternGenerator::new(640, 360).expect("a generator");
        let (a, b) = (g.frame(10, 0, None), g.frame(11, 0, None));
        // Below the codes, most of the picture changes.
        let changed = a[640 * 80..640 * 360]
            .iter()
            .zip(&b[640 * 80..640 * 360])
            .filter(|(x, y)| x != y)
            .count();
        assert!(changed > 640 * 280 / 2, "{changed} samples changed");
        // The pan is the background's only motion: frame 11 is frame 10 moved by PAN.
        let at = |f: &[u8], x: usize, y: usize| f[y * 640 + x];
        let mut same = 0;
        for y in 100..120 {
            for x in 5..40 {
                same += usize::from(at(&a, x + PAN.0, y + PAN.1) == at(&b, x, y));
            }
        }
        assert!(
            same > 20 * 35 * 9 / 10,
            "{same} of 700 samples follow the pan"
        );
    }

    #[test]
    fn odd_and_tiny_sizes_do_not_panic_and_nonsense_is_refused() {
        for (w, h) in [(2, 2), (100, 40), (502, 376), (1920, 1080)] {
            let g = PatternGenerator::new(w, h).expect("a generator");
            let frame = g.frame(3, 5, Some(&DemoControls::default()));
            assert_eq!(frame.len(), PixelFormat::I420.frame_len(w, h));
        }
        assert!(PatternGenerator::new(0, 10).is_err());
        assert!(PatternGenerator::new(10_000, 10).is_err());
    }
}
