//! RGBA/BGRA → I420 on the CPU with SIMD (`yuvutils-rs`), the conversion of the CPU capture
//! path ([`crate::path::ResolvedPath::Cpu`]): on a CPU Vulkan device it is several times faster
//! than the compute shader, which lavapipe runs on the same cores.
//!
//! Same colour as the GPU pass and the reference ([`super::reference_i420`]): BT.601 limited
//! range, chroma the mean of each 2×2 quad, the last column and row standing alone at odd sizes
//! (which is what repeating them gives). Measured within ±1 of the reference on the test image
//! and on noise. Only the 8-bit layouts are read here; a 10-bit swapchain keeps the GPU pass.

use yuvutils_rs::{
    BufferStoreMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix,
    bgra_to_yuv420, rgba_to_yuv420,
};

use super::{SourceFormat, check_source_size};
use crate::{CaptureError, PixelFormat};

/// Whether the CPU converter reads pixels packed as `format`.
pub fn supports(format: SourceFormat) -> bool {
    matches!(format, SourceFormat::Rgba8 | SourceFormat::Bgra8)
}

/// Converts `width`×`height` pixels packed as `format` — `src`, rows `stride` bytes apart —
/// into tight I420 at the start of `dst`, and returns the bytes written
/// ([`PixelFormat::frame_len`]). `dst` may be longer (a ring slot); nothing else is written.
pub fn convert_into(
    src: &[u8],
    stride: usize,
    width: u32,
    height: u32,
    format: SourceFormat,
    dst: &mut [u8],
) -> Result<usize, CaptureError> {
    check_source_size(width, height)?;
    let fail = |reason: String| CaptureError::CpuConvert {
        width,
        height,
        reason,
    };
    let len = PixelFormat::I420.frame_len(width, height);
    let Some(dst) = dst.get_mut(..len) else {
        return Err(fail(format!(
            "the destination holds {} bytes, the frame needs {len}",
            dst.len()
        )));
    };
    let planes = PixelFormat::I420.planes(width, height);
    let (y, chroma) = dst.split_at_mut(planes[1].offset);
    let (u, v) = chroma.split_at_mut(planes[2].offset - planes[1].offset);
    let stride32 =
        u32::try_from(stride).map_err(|_| fail(format!("row stride {stride} is too large")))?;
    let mut image = YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: planes[0].stride as u32,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: planes[1].stride as u32,
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: planes[2].stride as u32,
        width,
        height,
    };
    let convert = match format {
        SourceFormat::Rgba8 => rgba_to_yuv420,
        SourceFormat::Bgra8 => bgra_to_yuv420,
        other => {
            return Err(fail(format!(
                "{other:?} is not read on the CPU (only 8-bit RGBA and BGRA)"
            )));
        }
    };
    convert(
        &mut image,
        src,
        stride32,
        YuvRange::Limited,
        YuvStandardMatrix::Bt601,
        YuvConversionMode::Balanced,
    )
    .map_err(|e| fail(e.to_string()))?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::reference_i420;
    use crate::synthetic::test_pattern;

    fn max_diff(a: &[u8], b: &[u8]) -> u8 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap_or(0)
    }

    /// Pixels of the test image packed as `format`, rows `stride` bytes apart (the padding
    /// filled with a colour that would show if it were read).
    fn packed(w: u32, h: u32, stride: usize, format: SourceFormat) -> Vec<u8> {
        let pattern = test_pattern(w, h, 5);
        let mut out = vec![0x7fu8; stride * h as usize];
        for y in 0..h {
            for x in 0..w {
                let at = y as usize * stride + 4 * x as usize;
                out[at..at + 4].copy_from_slice(&format.encode(pattern(x, y)).to_le_bytes());
            }
        }
        out
    }

    #[test]
    fn matches_the_reference_at_even_and_odd_sizes() {
        for (w, h) in [(320, 180), (333, 101), (1, 1), (2, 3), (64, 2)] {
            for format in [SourceFormat::Rgba8, SourceFormat::Bgra8] {
                for stride in [4 * w as usize, 4 * w as usize + 12] {
                    let src = packed(w, h, stride, format);
                    let mut out = vec![0u8; PixelFormat::I420.frame_len(w, h) + 7];
                    let n = convert_into(&src, stride, w, h, format, &mut out).expect("convert");
                    assert_eq!(n, PixelFormat::I420.frame_len(w, h));
                    assert!(out[n..].iter().all(|&b| b == 0), "wrote past the frame");
                    let word = |x: u32, y: u32| {
                        let at = y as usize * stride + 4 * x as usize;
                        u32::from_le_bytes([src[at], src[at + 1], src[at + 2], src[at + 3]])
                    };
                    let reference = reference_i420(w, h, |x, y| format.decode(word(x, y)));
                    let diff = max_diff(&out[..n], &reference);
                    assert!(
                        diff <= 2,
                        "{format:?} {w}x{h} stride {stride}: {diff} from the CPU reference"
                    );
                }
            }
        }
    }

    #[test]
    fn short_buffers_and_other_formats_are_refused() {
        let src = packed(16, 16, 64, SourceFormat::Bgra8);
        let mut short = vec![0u8; 100];
        let err = convert_into(&src, 64, 16, 16, SourceFormat::Bgra8, &mut short)
            .expect_err("short destination");
        assert!(
            err.to_string().contains("destination holds 100 bytes"),
            "{err}"
        );
        let mut out = vec![0u8; PixelFormat::I420.frame_len(16, 16)];
        let err = convert_into(&src[..100], 64, 16, 16, SourceFormat::Bgra8, &mut out)
            .expect_err("short source");
        assert!(err.to_string().contains("16x16"), "{err}");
        let err = convert_into(&src, 64, 16, 16, SourceFormat::A2b10g10r10, &mut out)
            .expect_err("10-bit");
        assert!(err.to_string().contains("not read on the CPU"), "{err}");
        assert!(!supports(SourceFormat::A2r10g10b10));
        assert!(supports(SourceFormat::Bgra8) && supports(SourceFormat::Rgba8));
    }
}
