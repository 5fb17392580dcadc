//! The media threads of a session: a capture thread that takes frames from the [`Source`] and
//! pushes them into the encoder, and an output thread that pulls encoded access units and
//! hands them to the async sender.
//!
//! Both are plain OS threads because the source blocks (pacing, GPU fences) and the encoder's
//! pull blocks; neither belongs on the async runtime. The sender queue is short and never
//! blocks the encoder: when the network side falls behind, frames are dropped and counted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use capture::Source;
use encoder::roi::RoiPolicy;
use encoder::{EncodedFrame, Encoder};

use crate::controls::PointerHint;
use crate::ladder::{RUNGS, downscale_i420};
use tokio::sync::mpsc;

/// How long the output thread waits for a frame before checking whether to stop.
const PULL_TIMEOUT: Duration = Duration::from_millis(50);

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

/// A running capture → encode path. Stops (and joins its threads) when dropped.
#[derive(Debug)]
pub struct MediaPipeline {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
    counters: Arc<MediaCounters>,
}

impl MediaPipeline {
    /// Starts the threads. Encoded frames go to `out`; when the path fails, `out` closes and
    /// [`MediaPipeline::failure`] says why.
    /// With `roi`, every frame carries the policy's regions around the pointer `hint`. `rung`
    /// is the quality ladder's current step ([`crate::ladder::RUNGS`]), read every frame.
    pub fn start(
        mut source: Box<dyn Source>,
        encoder: Arc<Encoder>,
        out: mpsc::Sender<EncodedFrame>,
        roi: Option<(RoiPolicy, Arc<PointerHint>)>,
        rung: Arc<AtomicUsize>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let counters = Arc::new(MediaCounters::default());
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
            let (stop, encoder, counters, fail) = (
                stop.clone(),
                encoder.clone(),
                counters.clone(),
                fail.clone(),
            );
            std::thread::Builder::new()
                .name("stratus-capture".into())
                .spawn(move || {
                    let mut seen = 0u64;
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
                        let step = RUNGS[rung.load(Ordering::Relaxed).min(RUNGS.len() - 1)];
                        seen += 1;
                        if !seen.is_multiple_of(u64::from(step.keep_every)) {
                            counters.thinned.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let mut rois = roi
                            .as_ref()
                            .map(|(policy, hint)| policy.regions(hint.get()))
                            .unwrap_or_default();
                        let frame = if step.scale > 1 {
                            for r in &mut rois {
                                r.x /= step.scale;
                                r.y /= step.scale;
                                r.width /= step.scale;
                                r.height /= step.scale;
                            }
                            downscale_i420(&frame)
                        } else {
                            frame
                        };
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
                                match out.try_send(frame) {
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
        })
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

impl Drop for MediaPipeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
