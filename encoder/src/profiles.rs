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
    /// Properties set from strings at creation (enums and flags as their nicks). A property the
    /// element (or its version) lacks, or a value it refuses, is skipped with a log line.
    pub properties: &'static [(&'static str, &'static str)],
    /// Name of the bitrate property.
    pub bitrate_property: &'static str,
    /// Unit of the bitrate property.
    pub bitrate_unit: BitrateUnit,
    /// Name of the keyframe-interval property, if any.
    pub gop_property: Option<&'static str>,
    /// Smallest picture (width, height) the element encodes, where that is more than its caps
    /// say: openh264 refuses anything under 16×16 only once it sees a frame. Hardware elements
    /// state their device's limits in their sink caps, which the encoder also checks.
    pub min_size: (u32, u32),
    /// Memory the element takes on its sink pad, best first (`None` in the list = system
    /// memory). We feed system memory today; GPU capture will feed the others.
    pub memory: &'static [Option<&'static str>],
}

/// Every element we know, best first: hardware before software, and among software encoders
/// ours (which honours ROI) before stock x264enc.
pub const PROFILES: &[EncoderProfile] = &[
    EncoderProfile {
        element: "nvh264enc",
        hardware: true,
        roi: false,
        properties: &[
            ("preset", "low-latency-hq"),
            ("rc-mode", "cbr"),
            ("zerolatency", "true"),
            ("bframes", "0"),
            ("aud", "false"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("gop-size"),
        min_size: (2, 2),
        memory: &[Some("memory:CUDAMemory"), Some("memory:GLMemory"), None],
    },
    EncoderProfile {
        element: "nvautogpuh264enc",
        hardware: true,
        roi: false,
        properties: &[
            ("preset", "p1"),
            ("tune", "ultra-low-latency"),
            ("rate-control", "cbr"),
            ("b-frames", "0"),
            ("zero-reorder-delay", "true"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("gop-size"),
        min_size: (2, 2),
        memory: &[Some("memory:CUDAMemory"), None],
    },
    EncoderProfile {
        element: "msdkh264enc",
        hardware: true,
        roi: true,
        properties: &[
            ("rate-control", "cbr"),
            ("async-depth", "1"),
            ("b-frames", "0"),
            ("target-usage", "7"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("gop-size"),
        min_size: (2, 2),
        memory: &[
            Some("memory:MSDKSystemMemory"),
            Some("memory:VAMemory"),
            None,
        ],
    },
    EncoderProfile {
        element: "vaapih264enc",
        hardware: true,
        roi: true,
        properties: &[
            ("rate-control", "cbr"),
            ("max-bframes", "0"),
            ("tune", "none"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("keyframe-period"),
        min_size: (2, 2),
        memory: &[Some("memory:VASurface"), None],
    },
    EncoderProfile {
        element: "vah264enc",
        hardware: true,
        roi: false,
        properties: &[
            ("rate-control", "cbr"),
            ("b-frames", "0"),
            ("target-usage", "7"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("key-int-max"),
        min_size: (2, 2),
        memory: &[Some("memory:VAMemory"), Some("memory:DMABuf"), None],
    },
    EncoderProfile {
        element: "qsvh264enc",
        hardware: true,
        roi: false,
        properties: &[
            ("rate-control", "cbr"),
            ("b-frames", "0"),
            ("target-usage", "7"),
        ],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("gop-size"),
        min_size: (2, 2),
        memory: &[Some("memory:VAMemory"), None],
    },
    EncoderProfile {
        element: "stratusx264enc",
        hardware: false,
        roi: true,
        properties: &[],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Kbps,
        gop_property: Some("key-int-max"),
        min_size: (2, 2),
        memory: &[None],
    },
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
        min_size: (2, 2),
        memory: &[None],
    },
    EncoderProfile {
        element: "openh264enc",
        hardware: false,
        roi: false,
        properties: &[("usage-type", "screen"), ("rate-control", "bitrate")],
        bitrate_property: "bitrate",
        bitrate_unit: BitrateUnit::Bps,
        gop_property: Some("gop-size"),
        min_size: (16, 16),
        memory: &[None],
    },
];

/// The profile of an element, if the table knows it.
pub fn profile(element: &str) -> Option<&'static EncoderProfile> {
    PROFILES.iter().find(|p| p.element == element)
}

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

    fn pick(prefer: &[&str], present: &[&str]) -> Option<&'static str> {
        let prefer: Vec<String> = prefer.iter().map(|s| s.to_string()).collect();
        select(&prefer, |n| present.contains(&n), PROFILES).map(|p| p.element)
    }

    #[test]
    fn software_only_machine_picks_ours_then_stock_x264() {
        assert_eq!(
            pick(&[], &["x264enc", "stratusx264enc", "openh264enc"]),
            Some("stratusx264enc")
        );
        assert_eq!(pick(&[], &["x264enc", "openh264enc"]), Some("x264enc"));
        assert_eq!(pick(&[], &["openh264enc"]), Some("openh264enc"));
        let openh264 = profile("openh264enc").expect("in the table");
        assert_eq!(openh264.min_size, (16, 16), "it refuses smaller pictures");
        let ours = profile("stratusx264enc").expect("in the table");
        assert!(ours.roi && !ours.hardware);
        let x264 = profile("x264enc").expect("in the table");
        assert!(x264.properties.contains(&("tune", "zerolatency")));
        assert!(x264.properties.contains(&("bframes", "0")));
    }

    #[test]
    fn hardware_wins_when_present() {
        let all = [
            "x264enc",
            "stratusx264enc",
            "vah264enc",
            "nvh264enc",
            "vaapih264enc",
        ];
        assert_eq!(pick(&[], &all), Some("nvh264enc"));
        assert_eq!(pick(&[], &["x264enc", "vah264enc"]), Some("vah264enc"));
        assert_eq!(
            pick(&[], &["x264enc", "msdkh264enc", "vah264enc"]),
            Some("msdkh264enc")
        );
        let nv = profile("nvh264enc").expect("nv");
        assert!(nv.hardware && nv.properties.contains(&("zerolatency", "true")));
        assert_eq!(nv.memory.first(), Some(&Some("memory:CUDAMemory")));
    }

    #[test]
    fn roi_support_is_where_the_elements_read_the_meta() {
        let roi: Vec<_> = PROFILES
            .iter()
            .filter(|p| p.roi)
            .map(|p| p.element)
            .collect();
        assert_eq!(roi, ["msdkh264enc", "vaapih264enc", "stratusx264enc"]);
    }

    #[test]
    fn preference_wins_when_present_only() {
        assert_eq!(
            pick(&["x264enc"], &["x264enc", "nvh264enc"]),
            Some("x264enc")
        );
        assert_eq!(pick(&["openh264enc"], &["x264enc"]), Some("x264enc"));
        assert_eq!(pick(&["no-such-enc"], &["x264enc"]), Some("x264enc"));
        assert_eq!(pick(&[], &[]), None);
    }

    #[test]
    fn every_profile_accepts_system_memory_and_no_element_is_listed_twice() {
        for p in PROFILES {
            assert!(
                p.memory.contains(&None),
                "{} must take system memory",
                p.element
            );
            assert_eq!(
                PROFILES.iter().filter(|q| q.element == p.element).count(),
                1
            );
        }
    }
}
