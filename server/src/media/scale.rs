//! Pixel operations the quality ladder applies to frames.

use bytes::Bytes;
use capture::{Frame, PixelFormat};

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
