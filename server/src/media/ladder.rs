//! The quality ladder: when the congestion controller's estimate stays below a floor, the
//! stream steps down — first to half the frame rate, then also to half the resolution — and
//! back up when the estimate recovers. Below the floor more bitrate cuts alone would make every
//! frame a smear; fewer, smaller frames stay sharp.
//!
//! [`Ladder`] is Sans-IO: time and the estimate are arguments. [`Rung`]s are applied by the
//! media thread ([`crate::media`]): it keeps one frame in [`Rung::keep_every`] and shrinks kept
//! frames with [`downscale_i420`]; the encoder follows the new size with a new sequence.

use std::time::{Duration, Instant};

use bytes::Bytes;
use capture::{Frame, PixelFormat};

/// One step of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// The frame is shrunk by this factor in each dimension (1 or 2).
    pub scale: u32,
    /// One frame in this many is kept.
    pub keep_every: u32,
}

/// From full quality down: full, half frame rate, half frame rate at half size.
pub const RUNGS: [Rung; 3] = [
    Rung {
        scale: 1,
        keep_every: 1,
    },
    Rung {
        scale: 1,
        keep_every: 2,
    },
    Rung {
        scale: 2,
        keep_every: 2,
    },
];

/// When to step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LadderConfig {
    /// Below this estimate (kbit/s) for [`LadderConfig::down_after`], full quality steps down.
    /// Each lower rung's floor is half the one above it.
    pub floor_kbps: u32,
    /// How long the estimate must stay under a floor before stepping down.
    pub down_after: Duration,
    /// How long it must stay above the upper rung's floor × [`LadderConfig::up_margin`] before
    /// stepping back up.
    pub up_after: Duration,
    /// Hysteresis factor for stepping up.
    pub up_margin: f64,
}

impl LadderConfig {
    /// Defaults around `floor_kbps`: down after 2 s under it, up after 5 s at 1.5× the floor.
    pub fn new(floor_kbps: u32) -> Self {
        Self {
            floor_kbps,
            down_after: Duration::from_secs(2),
            up_after: Duration::from_secs(5),
            up_margin: 1.5,
        }
    }

    /// The floor of rung `i`: under it (for a while) the stream steps below `i`.
    pub fn floor(&self, i: usize) -> f64 {
        f64::from(self.floor_kbps) / f64::from(1u32 << i.min(16))
    }
}

/// Where the stream is on the ladder, and for how long the estimate has said to move.
#[derive(Debug, Clone)]
pub struct Ladder {
    config: LadderConfig,
    rung: usize,
    below_since: Option<Instant>,
    above_since: Option<Instant>,
}

impl Ladder {
    /// At full quality.
    pub fn new(config: LadderConfig) -> Self {
        Self {
            config,
            rung: 0,
            below_since: None,
            above_since: None,
        }
    }

    /// The current rung's index into [`RUNGS`].
    pub fn rung(&self) -> usize {
        self.rung
    }

    /// Takes the estimate at `now`; returns the new rung when it changes.
    pub fn observe(&mut self, kbps: f64, now: Instant) -> Option<usize> {
        let can_go_down = self.rung + 1 < RUNGS.len();
        if can_go_down && kbps < self.config.floor(self.rung) {
            self.above_since = None;
            let since = *self.below_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.down_after {
                self.rung += 1;
                self.below_since = None;
                return Some(self.rung);
            }
            return None;
        }
        self.below_since = None;
        if self.rung > 0 && kbps >= self.config.floor(self.rung - 1) * self.config.up_margin {
            let since = *self.above_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.up_after {
                self.rung -= 1;
                self.above_since = None;
                return Some(self.rung);
            }
        } else {
            self.above_since = None;
        }
        None
    }
}

/// `frame` (I420) at half its size, each output sample the mean of a 2×2 block; the output
/// size is rounded down to even. Frames of odd size or too small to halve are returned as they
/// are.
pub fn downscale_i420(frame: &Frame) -> Frame {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let (ow, oh) = ((w / 2) & !1, (h / 2) & !1);
    if frame.format != PixelFormat::I420
        || w % 2 != 0
        || h % 2 != 0
        || ow < 2
        || oh < 2
        || frame.data.len() < PixelFormat::I420.frame_len(frame.width, frame.height)
    {
        return frame.clone();
    }
    let mut out = vec![0u8; PixelFormat::I420.frame_len(ow as u32, oh as u32)];
    let (src_y, src_rest) = frame.data.split_at(w * h);
    let (cw, ch) = (w / 2, h / 2);
    let (src_u, src_v) = src_rest.split_at(cw * ch);
    let (dst_y, dst_rest) = out.split_at_mut(ow * oh);
    let (dst_u, dst_v) = dst_rest.split_at_mut((ow / 2) * (oh / 2));
    halve_plane(src_y, w, dst_y, ow, oh);
    halve_plane(src_u, cw, dst_u, ow / 2, oh / 2);
    halve_plane(&src_v[..cw * ch], cw, dst_v, ow / 2, oh / 2);
    Frame {
        id: frame.id,
        captured_ns: frame.captured_ns,
        width: ow as u32,
        height: oh as u32,
        format: PixelFormat::I420,
        data: Bytes::from(out),
    }
}

/// Box-filters `src` (rows of `stride`) into `dst` of `w`×`h`, each sample from a 2×2 block.
fn halve_plane(src: &[u8], stride: usize, dst: &mut [u8], w: usize, h: usize) {
    for y in 0..h {
        let (r0, r1) = (&src[2 * y * stride..], &src[(2 * y + 1) * stride..]);
        let row = &mut dst[y * w..(y + 1) * w];
        for (x, out) in row.iter_mut().enumerate() {
            let sum = u16::from(r0[2 * x])
                + u16::from(r0[2 * x + 1])
                + u16::from(r1[2 * x])
                + u16::from(r1[2 * x + 1]);
            *out = ((sum + 2) / 4) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn a_sustained_low_estimate_steps_down_one_rung_at_a_time() {
        let mut l = Ladder::new(LadderConfig::new(1000));
        let t0 = Instant::now();
        // A dip shorter than 2 s changes nothing.
        assert_eq!(l.observe(500.0, at(t0, 0)), None);
        assert_eq!(l.observe(500.0, at(t0, 1500)), None);
        assert_eq!(l.observe(2000.0, at(t0, 1600)), None);
        assert_eq!(l.observe(500.0, at(t0, 1700)), None);
        assert_eq!(l.observe(500.0, at(t0, 3600)), None);
        assert_eq!(l.observe(500.0, at(t0, 3700)), Some(1));
        // Rung 1's floor is 500: 450 for 2 s more goes to rung 2, the bottom.
        assert_eq!(l.observe(450.0, at(t0, 3800)), None);
        assert_eq!(l.observe(450.0, at(t0, 5800)), Some(2));
        assert_eq!(l.observe(10.0, at(t0, 20_000)), None);
        assert_eq!(l.rung(), 2);
    }

    #[test]
    fn recovery_steps_back_up_only_after_a_sustained_margin() {
        let mut l = Ladder::new(LadderConfig::new(1000));
        let t0 = Instant::now();
        l.observe(100.0, at(t0, 0));
        l.observe(100.0, at(t0, 2000));
        l.observe(100.0, at(t0, 2100));
        assert_eq!(l.observe(100.0, at(t0, 4100)), Some(2));
        // Up from rung 2 needs ≥ 1.5 × 500 = 750 for 5 s.
        assert_eq!(l.observe(700.0, at(t0, 5000)), None);
        assert_eq!(l.observe(800.0, at(t0, 6000)), None);
        assert_eq!(l.observe(800.0, at(t0, 10_999)), None);
        assert_eq!(l.observe(800.0, at(t0, 11_000)), Some(1));
        // Up from rung 1 needs ≥ 1500; between floors it stays.
        assert_eq!(l.observe(1200.0, at(t0, 30_000)), None);
        assert_eq!(l.observe(1600.0, at(t0, 31_000)), None);
        assert_eq!(l.observe(1600.0, at(t0, 36_000)), Some(0));
    }

    #[test]
    fn downscale_averages_blocks_and_keeps_the_frame_identity() {
        let (w, h) = (8u32, 4u32);
        let mut data = vec![0u8; PixelFormat::I420.frame_len(w, h)];
        for y in 0..4 {
            for x in 0..8 {
                data[y * 8 + x] = (x * 10 + y) as u8;
            }
        }
        data[32..40].fill(100);
        data[40..].fill(200);
        let frame = Frame {
            id: 9,
            captured_ns: 77,
            width: w,
            height: h,
            format: PixelFormat::I420,
            data: Bytes::from(data.clone()),
        };
        let half = downscale_i420(&frame);
        assert_eq!(
            (half.width, half.height, half.id, half.captured_ns),
            (4, 2, 9, 77)
        );
        assert_eq!(half.data.len(), PixelFormat::I420.frame_len(4, 2));
        // Block (0,0): 0, 10, 1, 11 → 5.5 → 6 (rounded).
        assert_eq!(half.data[0], 6);
        // Block (3,1): x 6..8, y 2..4: 62, 72, 63, 73 → 67.5 → 68.
        assert_eq!(half.data[4 + 3], 68);
        assert_eq!(&half.data[8..10], &[100, 100]);
        assert_eq!(&half.data[10..12], &[200, 200]);
    }

    #[test]
    fn sizes_round_down_to_even_and_tiny_frames_pass_through() {
        let frame = |w: u32, h: u32| Frame {
            id: 0,
            captured_ns: 0,
            width: w,
            height: h,
            format: PixelFormat::I420,
            data: Bytes::from(vec![50u8; PixelFormat::I420.frame_len(w, h)]),
        };
        let half = downscale_i420(&frame(1280, 720));
        assert_eq!((half.width, half.height), (640, 360));
        let half = downscale_i420(&frame(644, 362));
        assert_eq!((half.width, half.height), (322, 180));
        assert!(half.data.iter().all(|&v| v == 50));
        let tiny = downscale_i420(&frame(2, 2));
        assert_eq!((tiny.width, tiny.height), (2, 2));
    }
}
