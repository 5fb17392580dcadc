//! Region-of-interest policy: where the encoder should spend its bits.
//!
//! A [`Roi`] is a rectangle of the frame and a quality delta in QP steps (negative = better).
//! [`RoiPolicy`] turns what the node knows into regions for each frame:
//!
//! - a *hint*: the predicted pointer or crosshair position the client sent (the player looks
//!   where they aim), giving a rectangle of the configured size centred on it;
//! - no hint (titles without a pointer): a centre-weighted default, the middle of the frame,
//!   where the action of most games is.
//!
//! Regions travel with each buffer as `GstVideoRegionOfInterestMeta`, so one pipeline serves
//! every encoder; those that honour it (see [`crate::profiles`]) spend the bits, others ignore
//! it. Like the rest of the crate's logic it is plain data and arithmetic: no clock, no I/O.

/// A rectangle of the frame to encode at a different quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roi {
    /// Left edge, pixels.
    pub x: u32,
    /// Top edge, pixels.
    pub y: u32,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Quality change in QP steps: negative spends more bits here, positive fewer.
    pub quality: i8,
}

/// The default region edge as a fraction of the frame's shorter side.
pub const DEFAULT_SIZE_FRACTION: f32 = 0.3;
/// The default quality change inside the region (QP steps).
pub const DEFAULT_QUALITY: i8 = -12;
/// Largest quality change accepted (either sign), as libx264's quant offsets are meant.
pub const MAX_QUALITY: i8 = 20;

/// How the node places regions of interest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiPolicy {
    /// Frame width.
    pub frame_width: u32,
    /// Frame height.
    pub frame_height: u32,
    /// Region edge as a fraction of the frame's shorter side (0–1).
    pub size_fraction: f32,
    /// Quality change inside the region; clamped to ±[`MAX_QUALITY`].
    pub quality: i8,
    /// Whether to fall back to the frame centre when there is no hint.
    pub centre_default: bool,
}

impl RoiPolicy {
    /// A policy for `width`×`height` frames with the defaults.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            frame_width: width,
            frame_height: height,
            size_fraction: DEFAULT_SIZE_FRACTION,
            quality: DEFAULT_QUALITY,
            centre_default: true,
        }
    }

    /// The regions for one frame, given the latest pointer hint in frame pixels (which may lie
    /// outside the frame; the region is kept inside).
    pub fn regions(&self, hint: Option<(i32, i32)>) -> Vec<Roi> {
        let (fw, fh) = (self.frame_width, self.frame_height);
        if fw == 0 || fh == 0 {
            return Vec::new();
        }
        let centre = match hint {
            Some(point) => point,
            None if self.centre_default => ((fw / 2) as i32, (fh / 2) as i32),
            None => return Vec::new(),
        };
        let edge = (fw.min(fh) as f32 * self.size_fraction.clamp(0.0, 1.0)).round() as u32;
        // At least one macroblock, at most the frame (which may be smaller than a macroblock:
        // `clamp` would panic there).
        let (w, h) = (edge.max(16).min(fw), edge.max(16).min(fh));
        let left = (centre.0 as i64 - w as i64 / 2).clamp(0, (fw - w) as i64) as u32;
        let top = (centre.1 as i64 - h as i64 / 2).clamp(0, (fh - h) as i64) as u32;
        vec![Roi {
            x: left,
            y: top,
            width: w,
            height: h,
            quality: self.quality.clamp(-MAX_QUALITY, MAX_QUALITY),
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_centres_the_region_and_it_stays_inside() {
        let p = RoiPolicy::new(1280, 720);
        let r = p.regions(Some((640, 360)));
        assert_eq!(
            r,
            vec![Roi {
                x: 532,
                y: 252,
                width: 216,
                height: 216,
                quality: -12
            }]
        );
        let corner = p.regions(Some((-500, 9000)))[0];
        assert_eq!((corner.x, corner.y), (0, 720 - 216));
        let right = p.regions(Some((1279, 0)))[0];
        assert_eq!(right.x + right.width, 1280);
    }

    #[test]
    fn no_hint_is_centre_weighted_or_nothing() {
        let mut p = RoiPolicy::new(1920, 1080);
        let c = p.regions(None)[0];
        assert_eq!((c.x + c.width / 2, c.y + c.height / 2), (960, 540));
        p.centre_default = false;
        assert!(p.regions(None).is_empty());
    }

    #[test]
    fn sizes_and_quality_are_bounded() {
        let mut p = RoiPolicy::new(64, 48);
        p.size_fraction = 5.0;
        p.quality = -100;
        let r = p.regions(Some((10, 10)))[0];
        assert_eq!((r.width, r.height, r.quality), (48, 48, -MAX_QUALITY));
        p.size_fraction = 0.0;
        assert_eq!(p.regions(None)[0].width, 16, "at least one macroblock");
        assert!(RoiPolicy::new(0, 0).regions(None).is_empty());
    }

    #[test]
    fn frames_smaller_than_a_macroblock_get_the_whole_frame() {
        let tiny = RoiPolicy::new(2, 2).regions(Some((100, -100)))[0];
        assert_eq!((tiny.x, tiny.y, tiny.width, tiny.height), (0, 0, 2, 2));
        let strip = RoiPolicy::new(500, 10).regions(None)[0];
        assert_eq!((strip.width, strip.height), (16, 10));
        assert_eq!(strip.x + strip.width / 2, 250);
    }

    #[test]
    fn regions_end_inside_frames_that_are_not_whole_macroblocks() {
        for (w, h) in [(500, 500), (502, 376), (970, 546), (1366, 768), (322, 180)] {
            let corner = RoiPolicy::new(w, h).regions(Some((w as i32, h as i32)))[0];
            assert_eq!((corner.x + corner.width, corner.y + corner.height), (w, h));
        }
    }
}
