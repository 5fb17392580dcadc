//! A headless native viewer: the native client's own session ([`client::session::Session`] with
//! the native client's defaults — sound, keyframe requests on loss, no NACK) and its decoder
//! ([`client::video::RecoveringDecoder`]), without the window. Every decoded picture's latency
//! code is read as it comes out of the decoder, so the impairment lab can judge the native
//! client's loss handling (freezes, recovery, glass-to-glass to the decoded picture) without an
//! Xvfb per run.
//!
//! What it leaves out of the native client is only the present (one copy into the window,
//! ≈ 1–2 ms), which no impairment changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use client::depacketize::AccessUnit;
use client::latency_code::{self, CodeRow};
use client::measure::epoch_ms_now;
use client::session::{MediaRoute, MediaSink, Session, SessionCounters, SessionOptions};
use client::video::RecoveringDecoder;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::impair::measure::Presented;

#[derive(Debug, Default)]
struct Seen {
    frames: Mutex<Vec<Presented>>,
    keyframes: AtomicU64,
}

struct Sink {
    decoder: RecoveringDecoder,
    seen: Arc<Seen>,
}

impl MediaSink for Sink {
    fn video(&self, unit: AccessUnit, arrived: Instant) -> bool {
        if unit.keyframe {
            self.seen.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        self.decoder.push(&unit, arrived)
    }

    fn audio(&self, _payload: &[u8]) {}
}

/// A connected headless viewer; closes its session on [`Viewer::close`].
pub struct Viewer {
    session: Session,
    seen: Arc<Seen>,
    counters: Arc<SessionCounters>,
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("session", &self.session.session_id())
            .finish_non_exhaustive()
    }
}

impl Viewer {
    /// Plays `title` (the catalog's default when `None`) from the service on `signaling`, the
    /// media through `route` when given.
    pub async fn connect(
        signaling: SocketAddr,
        title: Option<&str>,
        route: Option<Arc<dyn MediaRoute>>,
    ) -> anyhow::Result<Viewer> {
        let seen = Arc::new(Seen::default());
        let on_frame = {
            let seen = seen.clone();
            move |frame: client::video::DecodedFrame| {
                let at_ms = epoch_ms_now();
                let made = frame
                    .with_pixels(|px| {
                        latency_code::read_rgba(
                            px,
                            frame.stride,
                            frame.height as usize,
                            CodeRow::EpochMs,
                        )
                    })
                    .flatten();
                seen.frames
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Presented {
                        at_ms,
                        made_ms: made.map(|m| m as f64),
                    });
            }
        };
        let decoder = RecoveringDecoder::start(None, on_frame).context("start a decoder")?;
        let sink: Arc<dyn MediaSink> = Arc::new(Sink {
            decoder,
            seen: seen.clone(),
        });
        let mut options = SessionOptions::new(signaling);
        options.title = title.map(str::to_owned);
        options.step_timeout = Duration::from_secs(20);
        options.route = route;
        let counters = Arc::new(SessionCounters::default());
        let session = Session::connect(&options, sink, counters.clone(), &|_| {})
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Viewer {
            session,
            seen,
            counters,
        })
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> Vec<Presented> {
        self.seen
            .frames
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keyframes received so far.
    pub fn keyframes(&self) -> u64 {
        self.seen.keyframes.load(Ordering::Relaxed)
    }

    /// The session's counters (packets, bytes, loss).
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// Refreshes the round trip the loss recovery uses, as the native client does every second.
    pub async fn refresh_rtt(&self) {
        self.session.refresh_rtt().await;
    }

    /// Plays for `span`, refreshing the round trip every second as the native client does.
    pub async fn play_for(&self, span: Duration) {
        let end = tokio::time::Instant::now() + span;
        while tokio::time::Instant::now() < end {
            self.refresh_rtt().await;
            tokio::time::sleep_until(end.min(tokio::time::Instant::now() + Duration::from_secs(1)))
                .await;
        }
    }

    /// The peer connection's state.
    pub fn state(&self) -> RTCPeerConnectionState {
        self.session.state()
    }

    /// Why the session ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.session.ended()
    }

    /// The session signaling assigned.
    pub fn session_id(&self) -> &str {
        self.session.session_id()
    }

    /// Says `bye` and closes the peer connection.
    pub async fn close(self) {
        self.session.close().await;
    }
}
