//! The stream's geometry: the size of the title's frames and the size the player receives,
//! and the mapping between the two.
//!
//! One [`StreamGeometry`] travels with every frame from the media thread (which knows the
//! source frame's size and the ladder rung that shrank it) through the encoder to the session,
//! which hands it to the input path when that frame is sent. So the pointer the player sends
//! (in the pixels of the picture it decodes), the input the title receives and the region of
//! interest the encoder spends bits on agree at every rung and after a title resizes.

use encoder::roi::Roi;

/// Where the title's pixels and the player's pixels meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamGeometry {
    /// The title's frame size: the space input is injected in and the pointer hint lives in.
    pub source: (u32, u32),
    /// The encoded frame size: what the player decodes, and the space of the positions it
    /// sends.
    pub stream: (u32, u32),
}

impl StreamGeometry {
    /// A stream sent at the title's own size.
    pub fn full(width: u32, height: u32) -> Self {
        Self {
            source: (width, height),
            stream: (width, height),
        }
    }

    /// True when the stream is smaller (or larger) than the title's frames.
    pub fn is_scaled(&self) -> bool {
        self.source != self.stream
    }

    /// A point in stream pixels as source pixels: the source pixel under the stream pixel's
    /// top-left corner, clamped inside the source frame.
    pub fn to_source(&self, x: i32, y: i32) -> (i32, i32) {
        (
            map(x, self.stream.0, self.source.0),
            map(y, self.stream.1, self.source.1),
        )
    }

    /// A point in source pixels as stream pixels, clamped inside the stream frame.
    pub fn to_stream(&self, x: i32, y: i32) -> (i32, i32) {
        (
            map(x, self.source.0, self.stream.0),
            map(y, self.source.1, self.stream.1),
        )
    }

    /// A region in source pixels as stream pixels (its edges mapped, so it covers the same
    /// part of the picture).
    pub fn roi_to_stream(&self, roi: Roi) -> Roi {
        if !self.is_scaled() {
            return roi;
        }
        let edge = |v: u32, from: u32, to: u32| -> u32 {
            if from == 0 {
                0
            } else {
                (u64::from(v) * u64::from(to) / u64::from(from)) as u32
            }
        };
        let (sw, sh) = self.source;
        let (tw, th) = self.stream;
        let (x0, y0) = (edge(roi.x, sw, tw), edge(roi.y, sh, th));
        let x1 = edge(roi.x.saturating_add(roi.width), sw, tw).min(tw);
        let y1 = edge(roi.y.saturating_add(roi.height), sh, th).min(th);
        Roi {
            x: x0,
            y: y0,
            width: x1.saturating_sub(x0),
            height: y1.saturating_sub(y0),
            quality: roi.quality,
        }
    }
}

/// `v` on an axis of `from` pixels, scaled to an axis of `to` pixels and clamped to it.
fn map(v: i32, from: u32, to: u32) -> i32 {
    if from == 0 || to == 0 {
        return 0;
    }
    let scaled = i64::from(v.max(0)) * i64::from(to) / i64::from(from);
    scaled.min(i64::from(to) - 1) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_size_points_map_both_ways() {
        let g = StreamGeometry {
            source: (1280, 720),
            stream: (640, 360),
        };
        assert!(g.is_scaled());
        assert_eq!(g.to_source(320, 180), (640, 360));
        assert_eq!(g.to_source(639, 359), (1278, 718));
        assert_eq!(g.to_source(5000, -3), (1279, 0), "clamped inside the frame");
        assert_eq!(g.to_stream(640, 360), (320, 180));
        assert_eq!(g.to_stream(1279, 719), (639, 359));
    }

    #[test]
    fn full_size_is_the_identity() {
        let g = StreamGeometry::full(500, 500);
        assert!(!g.is_scaled());
        assert_eq!(g.to_source(123, 499), (123, 499));
        let roi = Roi {
            x: 10,
            y: 20,
            width: 30,
            height: 40,
            quality: -12,
        };
        assert_eq!(g.roi_to_stream(roi), roi);
    }

    #[test]
    fn regions_cover_the_same_part_of_the_picture() {
        let g = StreamGeometry {
            source: (1280, 720),
            stream: (640, 360),
        };
        let roi = Roi {
            x: 532,
            y: 252,
            width: 216,
            height: 216,
            quality: -12,
        };
        let r = g.roi_to_stream(roi);
        assert_eq!(
            (r.x, r.y, r.width, r.height, r.quality),
            (266, 126, 108, 108, -12)
        );
        // A region running off the edge stays inside the stream.
        let edge = g.roi_to_stream(Roi { x: 1200, ..roi });
        assert_eq!(edge.x + edge.width, 640);
    }
}
