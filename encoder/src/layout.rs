//! Our I420 planes versus the layout GStreamer assumes for them.
//!
//! A [`capture::Frame`] in I420 is tightly packed: Y stride = width, chroma stride = width / 2,
//! the three planes back to back. A raw-video buffer that carries no `GstVideoMeta` must be in
//! GStreamer's *default* layout for its caps, which rounds each plane's stride up to a multiple
//! of 4: a 500-pixel-wide picture has chroma stride 252, not 250, and a 502-pixel-wide one luma
//! stride 504. The two layouts agree exactly when the width is a multiple of 8; such frames go to
//! the encoder as they are, without a copy. Frames of other widths are repacked into GStreamer's
//! layout ([`repack`]).
//!
//! Why a repack rather than a `GstVideoMeta` describing our strides: a producer may attach a meta
//! with a non-default layout only to buffers for an element that says, in its allocation query,
//! that it reads the meta; appsrc has no such negotiation, so a meta would have to be trusted by
//! every element of the table — hardware ones included, which cannot be checked on a machine
//! without them. A buffer in the default layout is right for every element by definition. The
//! copy is cheap next to the encode (every encoder copies its input into its own picture anyway;
//! libx264 does in `x264_frame_copy_picture`): measured on the 2-core development machine in a
//! test build (`cargo test -p encoder --lib repack_cost -- --nocapture`), about 25 µs for
//! 500×500, 60 µs for 970×546, 110 µs for 1366×768 and 290 µs for 1918×1080.

use capture::PixelFormat;
use gstreamer_video as gst_video;

/// Where the three planes of an I420 picture lie in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Byte offset of each plane's first row.
    pub offsets: [usize; 3],
    /// Bytes from one row to the next, per plane.
    pub strides: [usize; 3],
    /// Bytes of the whole buffer.
    pub size: usize,
}

impl Layout {
    /// Our layout: planes tightly packed and back to back ([`PixelFormat::planes`]).
    pub(crate) fn packed(width: u32, height: u32) -> Self {
        let planes = PixelFormat::I420.planes(width, height);
        let mut layout = Self {
            offsets: [0; 3],
            strides: [0; 3],
            size: PixelFormat::I420.frame_len(width, height),
        };
        for (i, plane) in planes.iter().take(3).enumerate() {
            layout.offsets[i] = plane.offset;
            layout.strides[i] = plane.stride;
        }
        layout
    }

    /// The layout `info` describes, or `None` if it is not three planes with positive strides.
    pub(crate) fn of(info: &gst_video::VideoInfo) -> Option<Self> {
        if info.n_planes() != 3 {
            return None;
        }
        let mut layout = Self {
            offsets: [0; 3],
            strides: [0; 3],
            size: info.size(),
        };
        for i in 0..3 {
            layout.offsets[i] = *info.offset().get(i)?;
            layout.strides[i] = usize::try_from(*info.stride().get(i)?).ok()?;
        }
        Some(layout)
    }
}

/// The layout frames of `info`'s size must be repacked into: `None` when GStreamer's layout for
/// `info` is ours, so frames go as they are.
pub(crate) fn repack_target(info: &gst_video::VideoInfo) -> Option<Layout> {
    let packed = Layout::packed(info.width(), info.height());
    match Layout::of(info) {
        Some(theirs) if theirs == packed => None,
        Some(theirs) => Some(theirs),
        // Not three planes: cannot happen for I420 caps. Frames then go as they are and the
        // element reports what it cannot map.
        None => None,
    }
}

/// Copies the tightly packed `width`×`height` I420 picture `src` into a new buffer of layout
/// `dst`, padding bytes zero. `None` if `src` is short or a plane of `dst` does not fit in it.
pub(crate) fn repack(src: &[u8], width: u32, height: u32, dst: &Layout) -> Option<Vec<u8>> {
    let planes = PixelFormat::I420.planes(width, height);
    let mut out = vec![0u8; dst.size];
    for (i, plane) in planes.iter().take(3).enumerate() {
        let (offset, stride) = (dst.offsets[i], dst.strides[i]);
        if stride < plane.width {
            return None;
        }
        for row in 0..plane.height {
            let from = plane.offset + row * plane.stride;
            let to = offset + row * stride;
            out.get_mut(to..to + plane.width)?
                .copy_from_slice(src.get(from..from + plane.width)?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gstreamer as gst;
    use gstreamer_video::prelude::*;

    fn gst_info(width: u32, height: u32) -> gst_video::VideoInfo {
        gst::init().expect("gst");
        gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, width, height)
            .build()
            .expect("info")
    }

    /// A packed picture whose every sample names its plane, row and column.
    fn numbered(width: u32, height: u32) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, plane) in PixelFormat::I420.planes(width, height).iter().enumerate() {
            for y in 0..plane.height {
                for x in 0..plane.width {
                    data.push((i * 97 + y * 13 + x * 7) as u8);
                }
            }
        }
        data
    }

    #[test]
    fn widths_that_are_multiples_of_8_need_no_copy() {
        for (w, h) in [
            (1280, 720),
            (1920, 1080),
            (640, 360),
            (8, 2),
            (4096, 4096),
            (504, 502),
        ] {
            assert_eq!(repack_target(&gst_info(w, h)), None, "{w}x{h}");
        }
    }

    #[test]
    fn other_even_widths_are_repacked_into_gstreamers_strides() {
        // 500 = 4 mod 8: luma stride agrees, chroma 250 is rounded to 252.
        let target = repack_target(&gst_info(500, 500)).expect("500 differs");
        assert_eq!(target.strides, [500, 252, 252]);
        assert_eq!(target.offsets, [0, 250_000, 250_000 + 252 * 250]);
        assert_eq!(target.size, 250_000 + 2 * 252 * 250);
        // 502 = 6 mod 8: both strides differ.
        let target = repack_target(&gst_info(502, 376)).expect("502 differs");
        assert_eq!(target.strides, [504, 252, 252]);
        for (w, h) in [(970, 546), (1366, 768), (322, 180), (2, 2), (4092, 4094)] {
            let target = repack_target(&gst_info(w, h));
            assert!(target.is_some(), "{w}x{h}");
        }
    }

    #[test]
    fn repacked_samples_land_where_gstreamer_reads_them() {
        for (w, h) in [(500, 500), (502, 376), (322, 180), (2, 2), (6, 4)] {
            let info = gst_info(w, h);
            let target = repack_target(&info).expect("differs");
            let src = numbered(w, h);
            let out = repack(&src, w, h, &target).expect("fits");
            assert_eq!(out.len(), info.size());
            // Read back through GStreamer's own frame mapping.
            let buffer = gst::Buffer::from_slice(out);
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(&buffer, &info)
                .expect("GStreamer maps the repacked buffer");
            let packed = Layout::packed(w, h);
            for (i, plane) in PixelFormat::I420.planes(w, h).iter().enumerate() {
                let data = frame.plane_data(i as u32).expect("plane");
                let stride = frame.plane_stride()[i] as usize;
                for y in 0..plane.height {
                    for x in 0..plane.width {
                        assert_eq!(
                            data[y * stride + x],
                            src[packed.offsets[i] + y * plane.width + x],
                            "{w}x{h} plane {i} ({x}, {y})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn short_sources_and_bad_targets_are_refused() {
        let target = repack_target(&gst_info(500, 500)).expect("differs");
        let src = numbered(500, 500);
        assert!(repack(&src[..src.len() - 1], 500, 500, &target).is_none());
        // The last 2 bytes are padding of the last V row; 3 fewer cut into its samples.
        let mut small = target;
        small.size -= 3;
        assert!(repack(&src, 500, 500, &small).is_none());
        let mut narrow = target;
        narrow.strides[1] = 249;
        assert!(repack(&src, 500, 500, &narrow).is_none());
    }

    /// Prints what a repack costs (`cargo test -p encoder --lib repack_cost -- --nocapture`).
    #[test]
    fn repack_cost() {
        for (w, h) in [(500, 500), (970, 546), (1366, 768), (1918, 1080)] {
            let target = repack_target(&gst_info(w, h)).expect("differs");
            let src = numbered(w, h);
            let runs = 50;
            let start = std::time::Instant::now();
            for _ in 0..runs {
                std::hint::black_box(repack(std::hint::black_box(&src), w, h, &target));
            }
            println!("repack {w}x{h}: {:?} per frame", start.elapsed() / runs);
        }
    }
}
