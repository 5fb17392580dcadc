//! The one table of H.264 encoder elements: what each needs for low-latency WebRTC output,
//! whether it is hardware, and whether it honours ROI meta. Selection logic is pure so it is
//! tested without any of the hardware present.

/// How an element's bitrate property counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitrateUnit {
    /// kbit/s (x264enc, nvh264enc, vaapih264enc, …).
    Kbps,
    /// bit/s (openh264enc).
    Bps,
}

/// One encoder element and the settings that make it fit for interactive streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderProfile {
    /// GStreamer element factory name.
    pub element: &'static str,
    /// Runs on dedicated hardware.
    pub hardware: bool,
    /// Reads `GstVideoRegionOfInterestMeta`.
    pub roi: bool,
    /// Properties set from strings at creation (enums and flags as their nicks).
    pub properties: &'static [(&'static str, &'static str)],
    /// Name of the bitrate property.
    pub bitrate_property: &'static str,
    /// Unit of the bitrate property.
    pub bitrate_unit: BitrateUnit,
    /// Name of the keyframe-interval property, if any.
    pub gop_property: Option<&'static str>,
}

/// Every element we know, best first: hardware before software.
pub const PROFILES: &[EncoderProfile] = &[
    EncoderProfile {
        element: "x264enc",
        hardware: false,
        roi: false,
        properties: &[
            ("tune", "zerolatency"),
            ("speed-preset", "ultrafast"),
            ("bframes", "0"),
            ("b-adapt", "false"),
            ("byte-stream", "true"),
            ("aud", "false"),
            ("insert-vui", "true"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("key-int-max"),
    },
    EncoderProfile {
        element: "openh264enc",
        hardware: false,
        roi: false,
        properties: &[("usage-type", "screen"), ("rate-control", "bitrate")],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Bps,
        gop_property: Some("gop-size"),
    },
];

/// Picks the profile to use given the element names present in the registry.
///
/// Names in `prefer` are tried first, in order; then the table's own order. Returns `None`
/// when nothing usable is present.
pub fn select<'a>(
    prefer: &[String],
    available: impl Fn(&str) -> bool,
    table: &'a [EncoderProfile],
) -> Option<&'a EncoderProfile> {
    let preferred = prefer
        .iter()
        .filter_map(|name| table.iter().find(|p| p.element == name));
    preferred.chain(table.iter()).find(|p| available(p.element))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_x264_when_nothing_else() {
        let p = select(&[], |n| n == "x264enc", PROFILES).expect("x264enc");
        assert_eq!(p.element, "x264enc");
        assert!(!p.hardware);
        assert!(p.properties.contains(&("tune", "zerolatency")));
        assert!(p.properties.contains(&("bframes", "0")));
    }

    #[test]
    fn preference_wins_when_present_only() {
        let all = |_: &str| true;
        let p = select(&["openh264enc".into()], all, PROFILES).expect("present");
        assert_eq!(p.element, "openh264enc");
        let p = select(&["openh264enc".into()], |n| n == "x264enc", PROFILES).expect("fallback");
        assert_eq!(p.element, "x264enc");
        let p = select(&["no-such-enc".into()], all, PROFILES).expect("unknown name ignored");
        assert_eq!(p.element, PROFILES[0].element);
    }

    #[test]
    fn nothing_available_is_none() {
        assert!(select(&[], |_| false, PROFILES).is_none());
    }
}
