//! What the client writes to files: pointer recordings (F9, `--record`) and the JSON report
//! (`--report`) the tests and the native end-to-end bench read.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use input::Trace;

use super::App;
use crate::controller::Screen;

/// A pointer trace being recorded.
pub(super) struct Recording {
    pub(super) trace: Trace,
    pub(super) started: Instant,
}

impl Recording {
    pub(super) fn new() -> Self {
        let mut trace = Trace::default();
        trace.meta.source = "stratus-client pointer recording".into();
        Recording {
            trace,
            started: Instant::now(),
        }
    }
}

impl App {
    pub(super) fn save_recording(&mut self) {
        let Some(rec) = self.recording.take() else {
            return;
        };
        if rec.trace.samples.is_empty() {
            return;
        }
        let dir = self
            .options
            .record
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let path = dir.join(format!(
            "pointer-{}.trace",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        let mut text = String::new();
        if rec.trace.write(&mut text).is_ok() {
            match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
                Ok(()) => tracing::info!(
                    "saved {} pointer samples to {}",
                    rec.trace.samples.len(),
                    path.display()
                ),
                Err(e) => tracing::error!("cannot save the recording to {}: {e}", path.display()),
            }
        }
    }

    pub(super) fn write_report(&self) {
        let Some(path) = &self.options.report else {
            return;
        };
        let c = &self.shared.counters;
        let m = &self.measure;
        let screen = self.shared.screen();
        let (problem, detail) = match &screen {
            Screen::Problem {
                problem, detail, ..
            } => (Some(problem.name()), Some(detail.clone())),
            _ => (None, None),
        };
        let session = self.shared.session();
        let audio = self.sink.as_ref().map(|s| s.audio.level());
        let window = self
            .window
            .as_ref()
            .map(|w| (w.inner_size().width, w.inner_size().height));
        let frame = self.current.as_ref().map(|f| (f.width, f.height));
        let report = serde_json::json!({
            "screen": screen.name(),
            "problem": problem,
            "detail": detail,
            "session_id": session.as_ref().map(|s| s.session_id().to_owned()),
            "node_id": session.as_ref().map(|s| s.node_id().to_owned()),
            "reconnects": self.shared.reconnects.load(Ordering::Relaxed),
            "decoder": self.decoder_name,
            "window": window,
            "frame": frame,
            "frames_presented": m.presented,
            "first_frame_ms": self.first_frame.map(|d| d.as_secs_f64() * 1000.0),
            "fps": m.fps(),
            "last_frame_id": m.last_frame_id,
            "glass_to_glass_ms": m.g2g_ms,
            "decode_ms": m.decode_ms,
            "client_ms": m.client_ms,
            "sender_ms": m.sender_ms,
            "freezes": m.freezes.count(),
            "input_to_photon_ms": m.i2p_ms,
            "video_packets": c.video_packets.load(Ordering::Relaxed),
            "video_bytes": c.video_bytes.load(Ordering::Relaxed),
            "lost_packets": c.lost_packets.load(Ordering::Relaxed),
            "keyframe_requests": c.keyframe_requests.load(Ordering::Relaxed),
            "units": c.units.load(Ordering::Relaxed),
            "audio_packets": c.audio_packets.load(Ordering::Relaxed),
            "audio": audio.map(|a| serde_json::json!({
                "packets": a.packets, "bad_packets": a.bad_packets, "samples": a.samples,
                "peak": a.peak, "rms": a.rms,
            })),
            "audio_output": self.sink.as_ref().map(|s| s.audio.silent_because().map_or("playing".to_owned(), str::to_owned)),
            "input_sent": c.input_sent.load(Ordering::Relaxed),
            "input_dropped": c.input_dropped.load(Ordering::Relaxed),
            "rtt_ms": c.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0,
            "stats_overlay": self.show_stats,
            "pointer_locked": self.locked,
        });
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, report.to_string()).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!("cannot write the report to {}: {e}", path.display());
        }
    }
}
