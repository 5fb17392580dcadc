//! GStreamer's own log, bridged into `tracing`, so element warnings and errors appear in the
//! node's logs (with the same filter and format) instead of on stderr.

use std::sync::Once;

use gstreamer as gst;

/// Installs the bridge once per process: GStreamer's default stderr printer is replaced, and
/// messages at WARNING or above are forwarded unless `GST_DEBUG` asks for more.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::log::remove_default_log_function();
        if std::env::var_os("GST_DEBUG").is_none() {
            gst::log::set_default_threshold(gst::DebugLevel::Warning);
        }
        gst::log::add_log_function(|category, level, file, function, line, object, message| {
            let Some(text) = message.get() else { return };
            let object = object.map(|o| o.to_string()).unwrap_or_default();
            let cat = category.name();
            match level {
                gst::DebugLevel::Error => {
                    tracing::error!(target: "gstreamer", category = cat, %object, %file, %function, line, "{text}")
                }
                gst::DebugLevel::Warning | gst::DebugLevel::Fixme => {
                    tracing::warn!(target: "gstreamer", category = cat, %object, "{text}")
                }
                gst::DebugLevel::Info => tracing::info!(target: "gstreamer", category = cat, %object, "{text}"),
                gst::DebugLevel::Debug => tracing::debug!(target: "gstreamer", category = cat, %object, "{text}"),
                _ => tracing::trace!(target: "gstreamer", category = cat, %object, "{text}"),
            }
        });
    });
}
