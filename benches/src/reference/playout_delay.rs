//! The playout-delay RTP header extension (`http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`)
//! with a minimum and maximum of 0, as Selkies-GStreamer writes it on its video: it tells
//! libwebrtc to render each frame as soon as it is decoded. GStreamer 1.22 ships no element for
//! it; Selkies subclasses `GstRTPHeaderExtension` in Python, and this is the same subclass in
//! Rust. Our node writes the same extension (webrtc-rs's `PlayoutDelayExtension::new(0, 0)`).

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtp as gst_rtp;

/// The extension's URI.
pub const URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";

glib::wrapper! {
    /// A playout-delay extension writing min = max = 0.
    pub struct PlayoutDelay(ObjectSubclass<imp::PlayoutDelay>)
        @extends gst_rtp::RTPHeaderExtension, gst::Element, gst::Object;
}

impl PlayoutDelay {
    /// The extension with the RTP header extension id `id` (what the offer's `extmap` gives it).
    pub fn with_id(id: u32) -> PlayoutDelay {
        let ext: PlayoutDelay = glib::Object::new();
        use gst_rtp::prelude::RTPHeaderExtensionExt;
        ext.set_id(id);
        ext
    }
}

/// The id the offer's first media section of `kind` (`video`) gives `uri`, if any.
pub fn offered_id(offer: &str, kind: &str, uri: &str) -> Option<u32> {
    let mut in_kind = false;
    for line in offer.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            if in_kind {
                return None;
            }
            in_kind = media.starts_with(kind);
        } else if in_kind && let Some(rest) = line.strip_prefix("a=extmap:") {
            let mut parts = rest.split_whitespace();
            let id = parts.next()?.split('/').next()?;
            if parts.next() == Some(uri) {
                return id.parse().ok();
            }
        }
    }
    None
}

mod imp {
    use super::*;
    use gst::subclass::prelude::*;
    use gst_rtp::subclass::prelude::*;

    /// See [`super::PlayoutDelay`].
    #[derive(Debug, Default)]
    pub struct PlayoutDelay;

    #[glib::object_subclass]
    impl ObjectSubclass for PlayoutDelay {
        const NAME: &'static str = "StratusLabPlayoutDelay";
        type Type = super::PlayoutDelay;
        type ParentType = gst_rtp::RTPHeaderExtension;
    }

    impl ObjectImpl for PlayoutDelay {}
    impl GstObjectImpl for PlayoutDelay {}

    impl ElementImpl for PlayoutDelay {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: std::sync::OnceLock<gst::subclass::ElementMetadata> =
                std::sync::OnceLock::new();
            Some(META.get_or_init(|| {
                gst::subclass::ElementMetadata::new(
                    "Playout delay RTP header extension",
                    gst_rtp::RTP_HDREXT_ELEMENT_CLASS,
                    "Asks the receiver to render at once (min = max = 0)",
                    "Stratus",
                )
            }))
        }
    }

    impl RTPHeaderExtensionImpl for PlayoutDelay {
        const URI: &'static str = super::URI;

        fn supported_flags(&self) -> gst_rtp::RTPHeaderExtensionFlags {
            gst_rtp::RTPHeaderExtensionFlags::ONE_BYTE | gst_rtp::RTPHeaderExtensionFlags::TWO_BYTE
        }

        fn max_size(&self, _input: &gst::BufferRef) -> usize {
            3
        }

        fn write(
            &self,
            _input: &gst::BufferRef,
            _flags: gst_rtp::RTPHeaderExtensionFlags,
            _output: &gst::BufferRef,
            data: &mut [u8],
        ) -> Result<usize, gst::LoggableError> {
            let Some(out) = data.get_mut(..3) else {
                return Err(gst::loggable_error!(
                    gst::CAT_RUST,
                    "no room for the playout delay"
                ));
            };
            // 12 bits of minimum, 12 of maximum, in 10 ms units: both 0.
            out.fill(0);
            Ok(3)
        }

        fn read(
            &self,
            _flags: gst_rtp::RTPHeaderExtensionFlags,
            _data: &[u8],
            _output: &mut gst::BufferRef,
        ) -> Result<(), gst::LoggableError> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_offered_id_in_the_video_section_only() {
        let offer = "v=0\r\nm=audio 9 RTP 111\r\na=extmap:9 http://x/playout-delay\r\n\
            m=video 9 RTP 96\r\na=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
            a=extmap:12/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay\r\n";
        assert_eq!(offered_id(offer, "video", URI), Some(12));
        assert_eq!(offered_id(offer, "video", "urn:nothing"), None);
    }

    #[test]
    fn writes_zero_delays() {
        use gst_rtp::prelude::*;
        gst::init().expect("gstreamer");
        let ext = PlayoutDelay::with_id(5);
        assert_eq!(ext.id(), 5);
        assert_eq!(ext.uri().as_deref(), Some(URI));
        let buffer = gst::Buffer::new();
        let mut data = [0xffu8; 8];
        let n = ext
            .write(
                &buffer,
                gst_rtp::RTPHeaderExtensionFlags::ONE_BYTE,
                &buffer,
                &mut data,
            )
            .expect("write");
        assert_eq!((n, &data[..3]), (3, &[0u8, 0, 0][..]));
    }
}
