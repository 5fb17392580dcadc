//! What the encoder takes: configurations, frames, and the sizes each element accepts. Every
//! refusal is worded for the player (session-ending reasons reach them), the details logged.

use capture::{Frame, PixelFormat};
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::profiles::EncoderProfile;
use crate::{EncoderConfig, EncoderError};

/// What the encoder element takes, in words, if it cannot take `width`×`height` pictures (as
/// `caps`): `None` when it can. Sizes below the table's minimum are refused, and sizes outside
/// what its sink pad's caps allow (hardware elements state their device's limits there).
pub(crate) fn unsupported_size(
    profile: &EncoderProfile,
    element: &gst::Element,
    width: u32,
    height: u32,
    caps: &gst::Caps,
) -> Option<String> {
    let (min_w, min_h) = profile.min_size;
    if width < min_w || height < min_h {
        return Some(format!("pictures of at least {min_w}x{min_h} pixels"));
    }
    let allowed = element.static_pad("sink")?.query_caps(None);
    if allowed.can_intersect(caps) {
        return None;
    }
    Some(match size_range(&allowed) {
        Some(((w0, w1), (h0, h1))) => format!("pictures from {w0}x{h0} to {w1}x{h1} pixels"),
        None => "pictures of another size".into(),
    })
}

/// Smallest and largest width, then smallest and largest height.
type SizeRange = ((i32, i32), (i32, i32));

/// The smallest and largest width and height any structure of `caps` allows; `None` when a
/// structure states no size.
fn size_range(caps: &gst::CapsRef) -> Option<SizeRange> {
    let field = |s: &gst::StructureRef, name: &str| {
        s.get::<gst::IntRange<i32>>(name)
            .map(|r| (r.min(), r.max()))
            .or_else(|_| s.get::<i32>(name).map(|v| (v, v)))
            .ok()
    };
    let mut range: Option<SizeRange> = None;
    for s in caps.iter() {
        let (w, h) = (field(s, "width")?, field(s, "height")?);
        range = Some(match range {
            None => (w, h),
            Some((rw, rh)) => (
                (rw.0.min(w.0), rw.1.max(w.1)),
                (rh.0.min(h.0), rh.1.max(h.1)),
            ),
        });
    }
    range
}

/// Refuses a frame the encoder cannot take, saying why in words a player can read.
pub(crate) fn check_frame(frame: &Frame, expected_len: usize) -> Result<(), EncoderError> {
    let (w, h) = (frame.width, frame.height);
    let refuse = |got: String, expected: &str| {
        tracing::warn!(
            frame_id = frame.id,
            format = ?frame.format,
            width = w,
            height = h,
            bytes = frame.data.len(),
            "encoder refused a frame"
        );
        Err(EncoderError::FrameMismatch {
            frame_id: frame.id,
            got,
            expected: expected.into(),
        })
    };
    if frame.format != PixelFormat::I420 {
        return refuse(
            format!("in the {:?} pixel format", frame.format),
            "I420 pictures",
        );
    }
    let size_ok =
        w > 0 && h > 0 && w.is_multiple_of(2) && h.is_multiple_of(2) && w <= 4096 && h <= 4096;
    if !size_ok {
        return refuse(
            format!("{w}x{h} pixels"),
            "pictures whose width and height are even and at most 4096 pixels",
        );
    }
    if frame.data.len() < expected_len {
        return refuse(
            format!(
                "{w}x{h} pixels with only {} of its {expected_len} bytes",
                frame.data.len()
            ),
            "whole pictures",
        );
    }
    Ok(())
}

/// Refuses a configuration the encoder cannot open.
pub(crate) fn validate(config: &EncoderConfig) -> Result<(), EncoderError> {
    let bad = |m: String| Err(EncoderError::InvalidConfig(m));
    let (w, h) = (config.width, config.height);
    if w == 0 || h == 0 || !w.is_multiple_of(2) || !h.is_multiple_of(2) || w > 4096 || h > 4096 {
        return bad(format!(
            "the picture is {w}x{h} pixels, but the video stream takes pictures whose width and \
             height are even and at most 4096 pixels"
        ));
    }
    if config.fps == 0 || config.fps > 240 {
        return bad(format!("frame rate {} must be 1 to 240", config.fps));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_range_spans_every_structure() {
        gst::init().expect("gst");
        let caps: gst::Caps = "video/x-raw(memory:CUDAMemory), format=NV12, width=[ 145, 4096 ], \
                               height=[ 49, 4096 ]; video/x-raw, format=I420, width=[ 160, 8192 ], \
                               height=[ 64, 2048 ]"
            .parse()
            .expect("caps");
        assert_eq!(size_range(&caps), Some(((145, 8192), (49, 4096))));
        let fixed: gst::Caps = "video/x-raw, width=640, height=480".parse().expect("caps");
        assert_eq!(size_range(&fixed), Some(((640, 640), (480, 480))));
        let any: gst::Caps = "video/x-raw, format=I420".parse().expect("caps");
        assert_eq!(size_range(&any), None);
    }
}
