//! Starting a connected session's title, encoder and media threads.

use std::sync::Arc;

use encoder::roi::RoiPolicy;
use encoder::{Encoder, EncoderConfig};
use tokio::sync::mpsc;

use super::SessionParams;
use crate::audio::AudioPacket;
use crate::input::PointerHint;
use crate::media::{MediaFrame, MediaPipeline, RoiSettings};
use crate::title::RunningTitle;

/// Starts the title and the encoder on a blocking thread (Vulkan, GStreamer and the title's
/// first frame block), then the media threads.
pub(super) async fn start_media(
    params: &SessionParams,
    out: mpsc::Sender<MediaFrame>,
    audio_out: Option<mpsc::Sender<AudioPacket>>,
    hint: Arc<PointerHint>,
) -> Result<(MediaPipeline, Arc<Encoder>, RunningTitle), String> {
    let v = params.video.clone();
    let kind = params.title.clone();
    let sid = params.session_id.clone();
    let resources = params.resources.clone();
    tokio::task::spawn_blocking(move || {
        let mut title = RunningTitle::start(&kind, &sid, &v, &resources, audio_out)?;
        let (width, height) = title.size;
        let mut config = EncoderConfig::new(width, height, v.fps, v.start_kbps);
        config.prefer = v.prefer_encoders.clone();
        config.roi = v.roi;
        let encoder =
            Arc::new(Encoder::open(config).map_err(|e| format!("the title's picture cannot be streamed: {e}"))?);
        let source = title
            .source
            .take()
            .ok_or_else(|| "internal: the title has no frame source".to_string())?;
        tracing::info!(title = %source.describe(), encoder = ?encoder.describe(), width, height, "media path ready");
        let roi = v.roi.then(|| {
            let mut policy = RoiPolicy::new(width, height);
            policy.quality = v.roi_quality;
            policy.size_fraction = v.roi_size;
            RoiSettings { policy, hint }
        });
        let pipeline = MediaPipeline::start(source, encoder.clone(), out, roi)
            .map_err(|e| format!("cannot start the media threads: {e}"))?;
        Ok((pipeline, encoder, title))
    })
    .await
    .map_err(|e| format!("media setup panicked: {e}"))?
}
