//! Frames as they travel from capture to the encoder.

use bytes::Bytes;

/// How a frame's pixels are laid out in [`Frame::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// Planar 4:2:0: a full-size Y plane, then quarter-size U (Cb) and V (Cr) planes, each
    /// tightly packed (Y stride = width, chroma stride = width / 2). BT.601, limited range.
    I420,
    /// Packed 8-bit R, G, B, A; stride = 4 × width.
    Rgba,
}

/// One plane of a frame: where it starts in [`Frame::data`], its stride and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    /// Byte offset of the plane's first row.
    pub offset: usize,
    /// Bytes from one row to the next.
    pub stride: usize,
    /// Width of the plane in samples.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
}

impl Plane {
    /// Bytes the plane occupies.
    pub fn len(&self) -> usize {
        self.stride * self.height
    }

    /// True for a plane with no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PixelFormat {
    /// The planes of a `width`×`height` image in this format.
    pub fn planes(self, width: u32, height: u32) -> Vec<Plane> {
        let (w, h) = (width as usize, height as usize);
        match self {
            PixelFormat::I420 => {
                let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                let y = Plane {
                    offset: 0,
                    stride: w,
                    width: w,
                    height: h,
                };
                let u = Plane {
                    offset: y.len(),
                    stride: cw,
                    width: cw,
                    height: ch,
                };
                let v = Plane {
                    offset: u.offset + u.len(),
                    ..u
                };
                vec![y, u, v]
            }
            PixelFormat::Rgba => vec![Plane {
                offset: 0,
                stride: 4 * w,
                width: w,
                height: h,
            }],
        }
    }

    /// Total bytes of a `width`×`height` image in this format.
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        self.planes(width, height).iter().map(Plane::len).sum()
    }
}

/// One captured or rendered picture with the identity and time it carries down the pipeline.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Increases by one for every frame the source produced, dropped ones included, so a gap
    /// means frames were lost.
    pub id: u64,
    /// When the frame was made, in CLOCK_MONOTONIC nanoseconds (see [`crate::clock`]).
    pub captured_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixel layout of [`Frame::data`].
    pub format: PixelFormat,
    /// The pixels, planes back to back as [`PixelFormat::planes`] describes.
    pub data: Bytes,
}

impl Frame {
    /// The bytes of plane `index` (0 = Y or RGBA, 1 = U, 2 = V).
    ///
    /// Returns `None` when the format has no such plane or the data is shorter than the layout.
    pub fn plane(&self, index: usize) -> Option<&[u8]> {
        let plane = *self.format.planes(self.width, self.height).get(index)?;
        self.data.get(plane.offset..plane.offset + plane.len())
    }

    /// Sample (x, y) of plane `index`, or `None` outside the plane.
    pub fn sample(&self, index: usize, x: usize, y: usize) -> Option<u8> {
        let plane = *self.format.planes(self.width, self.height).get(index)?;
        if x >= plane.width || y >= plane.height {
            return None;
        }
        self.data.get(plane.offset + y * plane.stride + x).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i420_planes_are_back_to_back() {
        let planes = PixelFormat::I420.planes(1280, 720);
        assert_eq!(planes[0].len(), 1280 * 720);
        assert_eq!(planes[1].offset, 1280 * 720);
        assert_eq!(planes[1].len(), 640 * 360);
        assert_eq!(planes[2].offset, 1280 * 720 + 640 * 360);
        assert_eq!(PixelFormat::I420.frame_len(1280, 720), 1280 * 720 * 3 / 2);
    }

    #[test]
    fn plane_of_short_data_is_none() {
        let frame = Frame {
            id: 0,
            captured_ns: 0,
            width: 16,
            height: 16,
            format: PixelFormat::I420,
            data: Bytes::from(vec![0u8; 10]),
        };
        assert!(frame.plane(0).is_none());
        assert!(frame.sample(0, 3, 0).is_some());
        assert!(frame.sample(0, 16, 0).is_none());
        assert!(frame.plane(3).is_none());
    }
}
