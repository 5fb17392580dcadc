//! A synthetic, game-like test sequence that needs no GPU: a textured scene scrolling
//! diagonally with fine static detail (which motion compensation can follow) and a little
//! temporal noise (which it cannot), so an encoder at a few Mbit/s is short of bits
//! everywhere, as with a real game. The demo title, by contrast, is smooth and cheap to code.
//!
//! Used by the encoder's tests and `stratus-bench encode`.
//!
//! Also [`test_pattern`], the known still image the capture layer's test title presents and
//! the conversion tests check against the CPU reference.

use bytes::Bytes;

use crate::{Frame, PixelFormat};

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
pub struct TexturedScene {
    width: u32,
    height: u32,
    canvas_width: u32,
    canvas: Vec<u8>,
}

/// Scroll per frame, pixels.
const SCROLL: (u32, u32) = (3, 2);

impl TexturedScene {
    /// A scene for `frames` pictures of `width`×`height`.
    pub fn new(width: u32, height: u32, frames: u32) -> Self {
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
    pub fn picture(&self, index: u32) -> Vec<u8> {
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

impl TexturedScene {
    /// Picture `index` as an I420 [`Frame`] with id `index`, stamped `1/fps` apart.
    pub fn frame(&self, index: u32, fps: u32) -> Frame {
        Frame {
            id: index as u64,
            captured_ns: 1_000_000_000 + index as u64 * (1_000_000_000 / fps.max(1) as u64),
            width: self.width,
            height: self.height,
            format: PixelFormat::I420,
            data: Bytes::from(self.picture(index)),
        }
    }
}

/// The known test image: eight colour bars over the top half, a horizontal grey ramp and a
/// vertical red–blue ramp below, and a `phase`-dependent square so images differ between phases.
pub fn test_pattern(width: u32, height: u32, phase: u32) -> impl Fn(u32, u32) -> [u8; 3] {
    const BARS: [[u8; 3]; 8] = [
        [235, 235, 235],
        [235, 235, 16],
        [16, 235, 235],
        [16, 235, 16],
        [235, 16, 235],
        [235, 16, 16],
        [16, 16, 235],
        [40, 90, 160],
    ];
    move |x, y| {
        let (w, h) = (width.max(1), height.max(1));
        let square = w / 8;
        let sx = (phase * square) % w.saturating_sub(square).max(1);
        if x >= sx && x < sx + square && y >= h / 2 && y < h / 2 + square.min(h / 2) {
            return [250, 120, 10];
        }
        if y < h / 2 {
            BARS[(x * 8 / w) as usize % 8]
        } else if y < 3 * h / 4 {
            let v = (x * 255 / w) as u8;
            [v, v, v]
        } else {
            let v = (y * 255 / h) as u8;
            [v, 64, 255 - v]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_i420_and_move() {
        let scene = TexturedScene::new(64, 48, 4);
        let (a, b) = (scene.frame(0, 30), scene.frame(1, 30));
        assert_eq!(a.data.len(), PixelFormat::I420.frame_len(64, 48));
        assert_ne!(a.data, b.data);
        assert_eq!(b.captured_ns - a.captured_ns, 33_333_333);
    }
}
