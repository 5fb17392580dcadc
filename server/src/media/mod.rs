//! A session's media path: a capture thread that takes frames from the title's [`Source`],
//! applies the quality ladder's rung and pushes them into the encoder, and an output thread
//! that pulls encoded access units and hands them, each with its [`StreamGeometry`], to the
//! async sender.
//!
//! Both are plain OS threads because the source blocks (pacing, GPU fences) and the encoder's
//! pull blocks; neither belongs on the async runtime. The sender queue is short and never
//! blocks the encoder: when the network side falls behind, frames are dropped and counted.
//! The rung arrives as a message ([`MediaPipeline::set_rung`]); the decision to step lives in
//! the session core ([`crate::session::control`]), the rungs themselves in [`ladder`], the
//! pixel work in [`scale`].

pub mod geometry;
pub mod ladder;
pub mod scale;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use capture::{Frame, Source};
use encoder::roi::RoiPolicy;
use encoder::{EncodedFrame, Encoder};
use tokio::sync::mpsc;

pub use geometry::StreamGeometry;
pub use ladder::{Ladder, LadderConfig, RUNGS, Rung};

use crate::input::PointerHint;

/// How long the output thread waits for a frame before checking whether to stop.
const PULL_TIMEOUT: Duration = Duration::from_millis(50);
/// Geometries remembered for frames inside the encoder (it holds one or two; more are frames
/// it dropped).
const GEOMETRY_QUEUE: usize = 32;

/// Counters of one session's media path.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// Frames the source delivered.
    pub captured: AtomicU64,
    /// Access units the encoder delivered.
    pub encoded: AtomicU64,
    /// Access units dropped because the sender was behind.
    pub dropped: AtomicU64,
    /// Frames left out on purpose by a lower rung of the quality ladder.
    pub thinned: AtomicU64,
}

/// One encoded access unit and the geometry of the picture it holds.
#[derive(Debug, Clone)]
pub struct MediaFrame {
    /// The access unit.
    pub frame: EncodedFrame,
    /// The title's frame size and the size it was encoded at.
    pub geometry: StreamGeometry,
}

/// Region-of-interest placement for the media thread: the policy's settings (its frame size
/// follows each frame) and where the player's pointer is.
#[derive(Debug, Clone)]
pub struct RoiSettings {
    /// Size fraction, quality and fallback; `frame_width`/`frame_height` are replaced by each
    /// frame's size.
    pub policy: RoiPolicy,
    /// The pointer, in the title's frame pixels.
    pub hint: Arc<PointerHint>,
}

/// A running capture → encode path. Stops (and joins its threads) when dropped.
#[derive(Debug)]
pub struct MediaPipeline {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
    counters: Arc<MediaCounters>,
    rungs: std_mpsc::Sender<Rung>,
}

impl MediaPipeline {
    /// Starts the threads at the top rung. Encoded frames go to `out`; when the path fails,
    /// `out` closes and [`MediaPipeline::failure`] says why. With `roi`, every frame carries
    /// the policy's regions around the pointer, in the encoded frame's pixels.
    pub fn start(
        mut source: Box<dyn Source>,
        encoder: Arc<Encoder>,
        out: mpsc::Sender<MediaFrame>,
        roi: Option<RoiSettings>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let counters = Arc::new(MediaCounters::default());
        let geometries = Arc::new(Mutex::new(VecDeque::<(u64, StreamGeometry)>::new()));
        let (rungs, rung_rx) = std_mpsc::channel::<Rung>();
        let fail = {
            let (stop, failure) = (stop.clone(), failure.clone());
            move |reason: String| {
                tracing::error!(%reason, "media path failed");
                failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(reason);
                stop.store(true, Ordering::Relaxed);
            }
        };

        let capture = {
            let (stop, encoder, counters, fail, geometries) = (
                stop.clone(),
                encoder.clone(),
                counters.clone(),
                fail.clone(),
                geometries.clone(),
            );
            std::thread::Builder::new()
                .name("stratus-capture".into())
                .spawn(move || {
                    let mut seen = 0u64;
                    let mut rung = RUNGS[0];
                    while !stop.load(Ordering::Relaxed) {
                        let frame = match source.next_frame() {
                            Ok(frame) => frame,
                            Err(e) => {
                                return fail(format!("the title stopped producing frames: {e}"));
                            }
                        };
                        counters.captured.fetch_add(1, Ordering::Relaxed);
                        tracing::trace!(
                            frame_id = frame.id,
                            capture_ms = capture::clock::monotonic_ns()
                                .saturating_sub(frame.captured_ns)
                                as f64
                                / 1e6,
                            "frame captured"
                        );
                        if let Some(latest) = rung_rx.try_iter().last() {
                            rung = latest;
                        }
                        seen += 1;
                        if !seen.is_multiple_of(u64::from(rung.keep_every.max(1))) {
                            counters.thinned.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let (frame, geometry) = apply_rung(frame, rung);
                        let rois = roi
                            .as_ref()
                            .map(|r| regions(r, geometry))
                            .unwrap_or_default();
                        {
                            let mut g = geometries.lock().unwrap_or_else(|p| p.into_inner());
                            if g.len() >= GEOMETRY_QUEUE {
                                g.pop_front();
                            }
                            g.push_back((frame.id, geometry));
                        }
                        if let Err(e) = encoder.push(&frame, &rois) {
                            return fail(format!("the encoder refused a frame: {e}"));
                        }
                    }
                })?
        };
        let output = {
            let (stop, counters) = (stop.clone(), counters.clone());
            std::thread::Builder::new()
                .name("stratus-encode-out".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match encoder.pull(PULL_TIMEOUT) {
                            Ok(Some(frame)) => {
                                counters.encoded.fetch_add(1, Ordering::Relaxed);
                                let geometry = geometry_of(&geometries, &frame);
                                match out.try_send(MediaFrame { frame, geometry }) {
                                    Ok(()) => {}
                                    Err(mpsc::error::TrySendError::Full(_)) => {
                                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                                }
                            }
                            Ok(None) => {}
                            Err(e) => return fail(format!("the encoder failed: {e}")),
                        }
                    }
                })?
        };
        Ok(Self {
            stop,
            threads: vec![capture, output],
            failure,
            counters,
            rungs,
        })
    }

    /// Moves the stream to `rung`, from the next captured frame on.
    pub fn set_rung(&self, rung: Rung) {
        // The capture thread owns the receiver until it stops; a send after that is moot.
        let _ = self.rungs.send(rung);
    }

    /// Why the path stopped on its own, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The path's counters.
    pub fn counters(&self) -> Arc<MediaCounters> {
        self.counters.clone()
    }
}

/// `frame` as the rung sends it, and the geometry that makes.
fn apply_rung(frame: Frame, rung: Rung) -> (Frame, StreamGeometry) {
    let source = (frame.width, frame.height);
    let frame = if rung.scale > 1 {
        scale::downscale_i420(&frame)
    } else {
        frame
    };
    let geometry = StreamGeometry {
        source,
        stream: (frame.width, frame.height),
    };
    (frame, geometry)
}

/// The regions for a frame of `geometry`: placed in the title's pixels around the pointer,
/// sent in the encoded frame's.
fn regions(roi: &RoiSettings, geometry: StreamGeometry) -> Vec<encoder::roi::Roi> {
    let policy = RoiPolicy {
        frame_width: geometry.source.0,
        frame_height: geometry.source.1,
        ..roi.policy
    };
    policy
        .regions(roi.hint.get())
        .into_iter()
        .map(|r| geometry.roi_to_stream(r))
        .collect()
}

/// The geometry recorded when `frame`'s source frame was pushed; frames the encoder dropped
/// are passed over. An unknown frame (none recorded) is taken at the size it was encoded at.
fn geometry_of(
    geometries: &Mutex<VecDeque<(u64, StreamGeometry)>>,
    frame: &EncodedFrame,
) -> StreamGeometry {
    let mut g = geometries.lock().unwrap_or_else(|p| p.into_inner());
    while let Some(&(id, geometry)) = g.front() {
        if id > frame.frame_id {
            break;
        }
        g.pop_front();
        if id == frame.frame_id {
            return geometry;
        }
    }
    StreamGeometry::full(frame.width, frame.height)
}

impl Drop for MediaPipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use capture::PixelFormat;

    fn frame(id: u64, w: u32, h: u32) -> Frame {
        Frame {
            id,
            captured_ns: 0,
            width: w,
            height: h,
            format: PixelFormat::I420,
            data: Bytes::from(vec![128u8; PixelFormat::I420.frame_len(w, h)]),
        }
    }

    #[test]
    fn the_rung_sets_the_geometry_and_the_regions_follow_it() {
        let (f, g) = apply_rung(frame(1, 1280, 720), RUNGS[2]);
        assert_eq!((f.width, f.height), (640, 360));
        assert_eq!(g.source, (1280, 720));
        assert_eq!(g.stream, (640, 360));
        let hint = Arc::new(PointerHint::default());
        hint.set(1280 - 1, 0);
        let settings = RoiSettings {
            policy: RoiPolicy::new(0, 0),
            hint,
        };
        for r in regions(&settings, g) {
            assert!(
                r.x + r.width <= 640 && r.y + r.height <= 360,
                "{r:?} inside the stream"
            );
            assert!(r.x + r.width >= 600, "{r:?} at the right edge");
        }
        let (_, g) = apply_rung(frame(2, 500, 500), RUNGS[0]);
        assert_eq!(g, StreamGeometry::full(500, 500));
    }
}
