//! Regions of interest → libx264 quantiser offsets, one float per 16×16 macroblock in raster
//! order (what `x264_image_properties_t::quant_offsets` takes). Pure arithmetic, plus reading a
//! region's quality from its `GstVideoRegionOfInterestMeta`.

use gstreamer as gst;
use gstreamer_video as gst_video;

use super::{DEFAULT_DELTA_QP, MAX_DELTA_QP, ROI_DELTA_QP_FIELD, ROI_PARAM};

/// Macroblock edge in luma pixels.
const MB: u32 = 16;

/// A rectangle of the picture in pixels and the QP change wanted inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Region {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// QP change, negative = better quality; clamped to ±[`MAX_DELTA_QP`] when used.
    pub delta_qp: i32,
}

impl Region {
    /// The region a ROI meta describes, with its quality read from the meta's parameters: a
    /// `roi/stratus` structure's `delta-qp`, else any other `roi/…` structure's `delta-qp` (the
    /// convention of `vaapih264enc` and `msdkh264enc`), else [`DEFAULT_DELTA_QP`].
    pub fn from_meta(meta: &gst_video::VideoRegionOfInterestMeta) -> Self {
        let (x, y, width, height) = meta.rect();
        let delta = |s: &gst::StructureRef| s.get::<i32>(ROI_DELTA_QP_FIELD).ok();
        let delta_qp = meta
            .param(ROI_PARAM)
            .and_then(delta)
            .or_else(|| {
                meta.params()
                    .filter(|s| s.name().starts_with("roi/"))
                    .find_map(delta)
            })
            .unwrap_or(DEFAULT_DELTA_QP);
        Self {
            x,
            y,
            width,
            height,
            delta_qp: clamp_delta(delta_qp),
        }
    }
}

/// Limits a QP change to what libx264's offsets are meant for.
pub(crate) fn clamp_delta(delta_qp: i32) -> i32 {
    delta_qp.clamp(-MAX_DELTA_QP, MAX_DELTA_QP)
}

/// Combines two regions' wishes for one macroblock: a request for more quality (negative) wins
/// over a request for less, and among requests of the same sign the strongest wins.
pub(crate) fn strongest(a: i32, b: i32) -> i32 {
    if a < 0 || b < 0 { a.min(b) } else { a.max(b) }
}

/// Macroblock columns and rows of a `width`×`height` picture.
pub(crate) fn mb_size(width: u32, height: u32) -> (usize, usize) {
    (width.div_ceil(MB) as usize, height.div_ceil(MB) as usize)
}

/// Macroblocks `[first, end)` that pixels `[pos, pos + len)` touch, clamped to a picture side of
/// `size` pixels; `None` when nothing of it is inside.
fn mb_span(pos: u32, len: u32, size: u32) -> Option<(usize, usize)> {
    let end = pos.saturating_add(len).min(size);
    if pos >= end {
        return None;
    }
    Some(((pos / MB) as usize, end.div_ceil(MB) as usize))
}

/// Fills `offsets` for a `width`×`height` picture: every macroblock a region touches gets that
/// region's (clamped) QP change, the strongest one where regions overlap (see [`strongest`]); the
/// others get `background` when at least one macroblock is inside a region, else 0. Parts of
/// regions outside the picture are clipped, empty regions ignored.
///
/// Returns the number of macroblocks inside a region. `offsets` is reused between pictures, so
/// a steady stream of pictures allocates nothing.
pub(crate) fn fill_quant_offsets(
    offsets: &mut Vec<f32>,
    width: u32,
    height: u32,
    regions: &[Region],
    background: f32,
) -> usize {
    let (mbw, mbh) = mb_size(width, height);
    offsets.clear();
    // NaN marks "no region yet"; the deltas are small integers, exact in f32.
    offsets.resize(mbw * mbh, f32::NAN);
    for r in regions {
        let (Some((x0, x1)), Some((y0, y1))) =
            (mb_span(r.x, r.width, width), mb_span(r.y, r.height, height))
        else {
            continue;
        };
        let delta = clamp_delta(r.delta_qp);
        for row in offsets[y0 * mbw..y1 * mbw].chunks_exact_mut(mbw) {
            for mb in &mut row[x0..x1] {
                *mb = if mb.is_nan() {
                    delta as f32
                } else {
                    strongest(*mb as i32, delta) as f32
                };
            }
        }
    }
    let inside = offsets.iter().filter(|o| !o.is_nan()).count();
    let outside = if inside > 0 { background } else { 0.0 };
    for o in offsets.iter_mut().filter(|o| o.is_nan()) {
        *o = outside;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(x: u32, y: u32, width: u32, height: u32, delta_qp: i32) -> Region {
        Region {
            x,
            y,
            width,
            height,
            delta_qp,
        }
    }

    /// The offsets as a grid of integers, for readable assertions.
    fn grid(offsets: &[f32], mbw: usize) -> Vec<Vec<i32>> {
        offsets
            .chunks(mbw)
            .map(|row| row.iter().map(|&o| o as i32).collect())
            .collect()
    }

    #[test]
    fn aligned_region_covers_exactly_its_macroblocks() {
        let mut o = Vec::new();
        let n = fill_quant_offsets(&mut o, 64, 48, &[region(16, 16, 32, 16, -12)], 1.0);
        assert_eq!(n, 2);
        assert_eq!(
            grid(&o, 4),
            vec![vec![1, 1, 1, 1], vec![1, -12, -12, 1], vec![1, 1, 1, 1]]
        );
    }

    #[test]
    fn unaligned_edges_round_outwards() {
        let mut o = Vec::new();
        // Pixels 15..17 touch macroblocks 0 and 1 in both directions.
        let n = fill_quant_offsets(&mut o, 64, 48, &[region(15, 15, 2, 2, -5)], 0.0);
        assert_eq!(n, 4);
        assert_eq!(
            grid(&o, 4),
            vec![vec![-5, -5, 0, 0], vec![-5, -5, 0, 0], vec![0, 0, 0, 0]]
        );
        // A one-pixel region still gets its macroblock.
        let n = fill_quant_offsets(&mut o, 64, 48, &[region(63, 47, 1, 1, -5)], 0.0);
        assert_eq!(n, 1);
        assert_eq!(o[11], -5.0);
    }

    #[test]
    fn partial_last_macroblock_row_and_column() {
        // 1080 = 67.5 macroblocks: the last row is partial but exists.
        let (mbw, mbh) = mb_size(1920, 1080);
        assert_eq!((mbw, mbh), (120, 68));
        let mut o = Vec::new();
        let n = fill_quant_offsets(&mut o, 1920, 1080, &[region(1904, 1072, 100, 100, -3)], 0.0);
        assert_eq!(o.len(), 120 * 68);
        assert_eq!(n, 1);
        assert_eq!(o[120 * 68 - 1], -3.0);
    }

    #[test]
    fn sizes_that_are_not_whole_macroblocks_round_up_like_libx264() {
        for (w, h) in [
            (500, 500),
            (502, 376),
            (970, 546),
            (1366, 768),
            (322, 180),
            (2, 2),
        ] {
            let config = super::super::ffi::Config {
                width: w,
                height: h,
                fps_num: 30,
                fps_den: 1,
                bitrate_kbps: 1000,
                key_int_max: 120,
                intra_refresh: false,
                threads: 1,
            };
            let (mbw, mbh) = mb_size(w, h);
            assert_eq!((mbw, mbh), config.mb_size(), "{w}x{h}");
            // A region over the bottom right corner reaches the last, partial macroblock.
            let mut o = Vec::new();
            let n = fill_quant_offsets(&mut o, w, h, &[region(w - 1, h - 1, 100, 100, -7)], 0.0);
            assert_eq!((o.len(), n), (mbw * mbh, 1), "{w}x{h}");
            assert_eq!(o[mbw * mbh - 1], -7.0, "{w}x{h}");
        }
        // 500 = 31 whole macroblocks and 4 pixels: pixels 484..500 touch macroblocks 30 and 31.
        let mut o = Vec::new();
        let n = fill_quant_offsets(&mut o, 500, 500, &[region(484, 484, 16, 16, -5)], 0.0);
        assert_eq!(n, 4);
        let g = grid(&o, 32);
        assert_eq!(
            (g[30][30], g[30][31], g[31][30], g[31][31]),
            (-5, -5, -5, -5)
        );
        assert_eq!(g[29][31], 0);
        // A 2x2 picture is one macroblock.
        let n = fill_quant_offsets(&mut o, 2, 2, &[region(0, 0, 2, 2, -5)], 0.0);
        assert_eq!((n, o.as_slice()), (1, &[-5.0][..]));
    }

    #[test]
    fn regions_are_clipped_and_empty_ones_ignored() {
        let mut o = Vec::new();
        // Overhangs the right and bottom edges: clipped to the picture.
        let n = fill_quant_offsets(&mut o, 64, 48, &[region(40, 40, 1000, 1000, -4)], 1.0);
        assert_eq!(n, 2, "macroblocks (2,2) and (3,2)");
        assert_eq!(grid(&o, 4)[2], vec![1, 1, -4, -4]);
        // Entirely outside, zero-sized, and at u32::MAX (no overflow): nothing inside, so no
        // background either.
        let regions = [
            region(64, 0, 16, 16, -4),
            region(0, 48, 16, 16, -4),
            region(10, 10, 0, 16, -4),
            region(10, 10, 16, 0, -4),
            region(u32::MAX, u32::MAX, u32::MAX, u32::MAX, -4),
        ];
        let n = fill_quant_offsets(&mut o, 64, 48, &regions, 1.0);
        assert_eq!(n, 0);
        assert!(o.iter().all(|&x| x == 0.0));
        // The whole picture.
        let n = fill_quant_offsets(&mut o, 64, 48, &[region(0, 0, u32::MAX, u32::MAX, -4)], 1.0);
        assert_eq!(n, 12);
        assert!(o.iter().all(|&x| x == -4.0));
    }

    #[test]
    fn deltas_are_clamped() {
        let mut o = Vec::new();
        fill_quant_offsets(&mut o, 32, 16, &[region(0, 0, 16, 16, -100)], 0.0);
        assert_eq!(o[0], -MAX_DELTA_QP as f32);
        fill_quant_offsets(&mut o, 32, 16, &[region(0, 0, 16, 16, 100)], 0.0);
        assert_eq!(o[0], MAX_DELTA_QP as f32);
        assert_eq!(clamp_delta(i32::MIN), -20);
    }

    #[test]
    fn overlapping_regions_take_the_strongest() {
        let mut o = Vec::new();
        let regions = [
            region(0, 0, 32, 16, -4),
            region(16, 0, 32, 16, -12),
            region(32, 0, 32, 16, 6),
            region(48, 0, 16, 16, 3),
        ];
        fill_quant_offsets(&mut o, 64, 16, &regions, 0.0);
        // mb0: -4; mb1: -4 vs -12; mb2: -12 vs +6 (quality wins); mb3: +6 vs +3.
        assert_eq!(grid(&o, 4), vec![vec![-4, -12, -12, 6]]);
        assert_eq!(strongest(-1, 5), -1);
        assert_eq!(strongest(5, -1), -1);
        assert_eq!(strongest(2, 5), 5);
        assert_eq!(strongest(0, 0), 0);
    }

    #[test]
    fn buffer_is_resized_for_each_picture() {
        let mut o = vec![9.0; 3];
        fill_quant_offsets(&mut o, 48, 32, &[], 1.0);
        assert_eq!(o, vec![0.0; 6]);
    }

    #[test]
    fn quality_comes_from_the_meta() {
        gst::init().expect("gst");
        let mut buffer = gst::Buffer::new();
        let buf = buffer.get_mut().expect("writable");
        super::super::add_roi_meta(buf, (1, 2, 3, 4), -12);
        super::super::add_roi_meta(buf, (0, 0, 8, 8), -99);
        let mut vaapi = gst_video::VideoRegionOfInterestMeta::add(buf, "face", (5, 6, 7, 8));
        vaapi.add_param(
            gst::Structure::builder("roi/vaapi")
                .field("delta-qp", 4i32)
                .build(),
        );
        gst_video::VideoRegionOfInterestMeta::add(buf, "anything", (0, 0, 1, 1));
        let regions: Vec<Region> = buffer
            .iter_meta::<gst_video::VideoRegionOfInterestMeta>()
            .map(|m| Region::from_meta(&m))
            .collect();
        assert_eq!(
            regions,
            vec![
                region(1, 2, 3, 4, -12),
                region(0, 0, 8, 8, -20),
                region(5, 6, 7, 8, 4),
                region(0, 0, 1, 1, DEFAULT_DELTA_QP),
            ]
        );
    }
}
