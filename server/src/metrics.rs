//! The node's Prometheus metrics: node-wide counters and one set of gauges per running
//! session, rendered as text at `GET /metrics` on the node's HTTP listener.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Samples of capture→packet latency each session keeps for percentiles.
const LATENCY_WINDOW: usize = 4096;

/// Node-wide counters and the running sessions' figures.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Sessions started.
    pub sessions_started: AtomicU64,
    /// Sessions that ended because the title could not start or failed.
    pub sessions_failed: AtomicU64,
    /// Sessions ended, for any reason.
    pub sessions_ended: AtomicU64,
    /// Sessions refused (capacity, draining).
    pub sessions_refused: AtomicU64,
    sessions: Mutex<BTreeMap<String, Arc<SessionMetrics>>>,
}

/// One session's figures, updated by its task and media threads.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    /// Frames handed to the transport.
    pub frames_sent: AtomicU64,
    /// Frames dropped anywhere on the node (ring, encoder queue, sender queue).
    pub frames_dropped: AtomicU64,
    /// Keyframe requests (PLI/FIR) from the player.
    pub pli: AtomicU64,
    /// Keyframes actually forced (requests are merged to one per 300 ms).
    pub keyframes_forced: AtomicU64,
    /// Packets resent for NACKs.
    pub rtx_packets: AtomicU64,
    /// Bytes resent for NACKs.
    pub rtx_bytes: AtomicU64,
    /// NACKed packets the retransmission budget refused (too old, resent enough, over its
    /// share of the rate, forgotten).
    pub rtx_refused: AtomicU64,
    /// Forward-error-correction packets sent.
    pub fec_packets: AtomicU64,
    /// Forward-error-correction bytes sent.
    pub fec_bytes: AtomicU64,
    /// Encoder target, kbit/s.
    pub bitrate_kbps: AtomicU64,
    /// Round-trip time to the player, µs (from RTCP).
    pub rtt_us: AtomicU64,
    /// Fraction of packets the player reports lost, ‰.
    pub loss_permille: AtomicU64,
    /// Frames per second sent over the last second, ×100.
    pub fps_x100: AtomicU64,
    /// Mean encode time over the last second, µs.
    pub encode_us: AtomicU64,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// The stream's current size and rate step (0 = full; see `session::Ladder`).
    pub quality_step: AtomicU64,
    latency: Mutex<LatencyWindow>,
    encode: Mutex<LatencyWindow>,
}

#[derive(Debug, Default)]
struct LatencyWindow {
    samples: Vec<f64>,
    next: usize,
    /// Samples recorded since the start.
    total: u64,
}

impl LatencyWindow {
    fn record(&mut self, ms: f64) {
        if self.samples.len() < LATENCY_WINDOW {
            self.samples.push(ms);
        } else {
            let i = self.next;
            self.samples[i] = ms;
        }
        self.next = (self.next + 1) % LATENCY_WINDOW;
        self.total += 1;
    }

    /// The samples recorded after the first `seen`, oldest first (at most the window's worth),
    /// and the count recorded so far.
    fn since(&self, seen: u64) -> (Vec<f64>, u64) {
        let fresh = (self.total.saturating_sub(seen) as usize).min(self.samples.len());
        let len = self.samples.len();
        // The newest sample sits just before `next` (the window is full once it wraps).
        let newest_end = if len < LATENCY_WINDOW {
            len
        } else {
            self.next + len
        };
        let out = (newest_end - fresh..newest_end)
            .map(|i| self.samples[i % len])
            .collect();
        (out, self.total)
    }
}

impl SessionMetrics {
    /// Records one frame's capture→packet time.
    pub fn record_capture_to_packet(&self, ms: f64) {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(ms);
    }

    /// The recent capture→packet times, in ms (unordered).
    pub fn capture_to_packet_samples(&self) -> Vec<f64> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .samples
            .clone()
    }

    /// The capture→packet times recorded after the first `seen`, oldest first, and the count
    /// recorded so far: a reader that passes back the count gets each sample once.
    pub fn capture_to_packet_since(&self, seen: u64) -> (Vec<f64>, u64) {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since(seen)
    }

    /// [`SessionMetrics::capture_to_packet_since`] for the capture→encoded times.
    pub fn encode_since(&self, seen: u64) -> (Vec<f64>, u64) {
        self.encode
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .since(seen)
    }

    /// Records one frame's capture→encoded time (queues before the encoder included).
    pub fn record_encode(&self, ms: f64) {
        self.encode
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(ms);
    }

    /// The recent capture→encoded times, in ms (unordered).
    pub fn encode_samples(&self) -> Vec<f64> {
        self.encode
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .samples
            .clone()
    }
}

/// One of a session's sample windows.
type WindowOf = fn(&SessionMetrics) -> &Mutex<LatencyWindow>;

/// The `q`-quantile (0..=1) of `samples` (nearest rank); `None` when empty.
pub fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
    Some(sorted[rank - 1])
}

impl NodeMetrics {
    /// Registers a running session; its figures show until [`NodeMetrics::remove`].
    pub fn add(&self, session_id: &str) -> Arc<SessionMetrics> {
        let m = Arc::new(SessionMetrics::default());
        self.lock().insert(session_id.to_string(), m.clone());
        m
    }

    /// Forgets an ended session.
    pub fn remove(&self, session_id: &str) {
        self.lock().remove(session_id);
    }

    /// The running sessions' figures.
    pub fn sessions(&self) -> Vec<(String, Arc<SessionMetrics>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<SessionMetrics>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prometheus text exposition format.
    pub fn render(&self, capacity: u32, draining: bool) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let sessions = self.sessions();
        let _ = writeln!(
            out,
            "# HELP stratus_node_sessions Sessions running.\n# TYPE stratus_node_sessions gauge\nstratus_node_sessions {}",
            sessions.len()
        );
        let _ = writeln!(
            out,
            "# HELP stratus_node_capacity Sessions this node accepts.\n# TYPE stratus_node_capacity gauge\nstratus_node_capacity {capacity}"
        );
        let _ = writeln!(
            out,
            "# HELP stratus_node_draining 1 while the node takes no new sessions.\n# TYPE stratus_node_draining gauge\nstratus_node_draining {}",
            u8::from(draining)
        );
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "stratus_node_sessions_started_total",
            "Sessions started.",
            load(&self.sessions_started),
        );
        counter(
            &mut out,
            "stratus_node_sessions_ended_total",
            "Sessions ended.",
            load(&self.sessions_ended),
        );
        counter(
            &mut out,
            "stratus_node_sessions_failed_total",
            "Sessions whose title failed to start or crashed.",
            load(&self.sessions_failed),
        );
        counter(
            &mut out,
            "stratus_node_sessions_refused_total",
            "Session requests refused (capacity, draining).",
            load(&self.sessions_refused),
        );
        type Field = fn(&SessionMetrics) -> f64;
        let gauges: [(&str, &str, &str, Field); 14] = [
            (
                "stratus_session_fps",
                "gauge",
                "Frames sent per second.",
                |m| m.fps_x100.load(Ordering::Relaxed) as f64 / 100.0,
            ),
            (
                "stratus_session_encode_ms",
                "gauge",
                "Mean encode time over the last second.",
                |m| m.encode_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "stratus_session_bitrate_kbps",
                "gauge",
                "Encoder target bitrate.",
                |m| m.bitrate_kbps.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_rtt_ms",
                "gauge",
                "Round-trip time to the player.",
                |m| m.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "stratus_session_loss_ratio",
                "gauge",
                "Fraction of packets the player lost.",
                |m| m.loss_permille.load(Ordering::Relaxed) as f64 / 1000.0,
            ),
            (
                "stratus_session_quality_step",
                "gauge",
                "Resolution/frame-rate step (0 = full).",
                |m| m.quality_step.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_frames_sent_total",
                "counter",
                "Frames sent.",
                |m| m.frames_sent.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_frames_dropped_total",
                "counter",
                "Frames dropped on the node.",
                |m| m.frames_dropped.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_pli_total",
                "counter",
                "Keyframe requests from the player.",
                |m| m.pli.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_keyframes_forced_total",
                "counter",
                "Keyframes forced.",
                |m| m.keyframes_forced.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_rtx_bytes_total",
                "counter",
                "Bytes resent for NACKs.",
                |m| m.rtx_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_rtx_refused_total",
                "counter",
                "NACKed packets the retransmission budget refused.",
                |m| m.rtx_refused.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_fec_bytes_total",
                "counter",
                "Forward-error-correction (FlexFEC) bytes sent.",
                |m| m.fec_bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "stratus_session_audio_packets_total",
                "counter",
                "Opus packets sent.",
                |m| m.audio_packets.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, field) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (id, m) in &sessions {
                let _ = writeln!(out, "{name}{{session=\"{id}\"}} {}", field(m));
            }
        }
        let summaries: [(&str, &str, WindowOf); 2] = [
            (
                "stratus_session_capture_to_packet_ms",
                "Capture to RTP packet time over the recent frames.",
                |m| &m.latency,
            ),
            (
                "stratus_session_encode_ms",
                "Capture to encoded time (queues before the encoder included) over the recent frames.",
                |m| &m.encode,
            ),
        ];
        for (name, help, window_of) in summaries {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} summary");
            for (id, m) in &sessions {
                let (samples, total) = {
                    let w = window_of(m).lock().unwrap_or_else(|p| p.into_inner());
                    (w.samples.clone(), w.total)
                };
                for q in [0.5, 0.99] {
                    if let Some(v) = quantile(&samples, q) {
                        let _ = writeln!(out, "{name}{{session=\"{id}\",quantile=\"{q}\"}} {v:.3}");
                    }
                }
                // A summary's count is every observation, not the window's.
                let _ = writeln!(out, "{name}_count{{session=\"{id}\"}} {total}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.5), Some(50.0));
        assert_eq!(quantile(&s, 0.99), Some(99.0));
        assert_eq!(quantile(&s, 1.0), Some(100.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_latency_window_keeps_the_newest_samples() {
        let m = SessionMetrics::default();
        for i in 0..(LATENCY_WINDOW + 10) {
            m.record_capture_to_packet(i as f64);
        }
        let s = m.capture_to_packet_samples();
        assert_eq!(s.len(), LATENCY_WINDOW);
        assert!(!s.contains(&0.0) && s.contains(&((LATENCY_WINDOW + 9) as f64)));
    }

    #[test]
    fn sessions_render_with_labels_and_vanish_when_removed() {
        let node = NodeMetrics::default();
        let m = node.add("abc");
        m.frames_sent.store(42, Ordering::Relaxed);
        m.record_capture_to_packet(3.0);
        node.sessions_started.fetch_add(1, Ordering::Relaxed);
        let text = node.render(4, false);
        assert!(
            text.contains("stratus_session_frames_sent_total{session=\"abc\"} 42"),
            "{text}"
        );
        assert!(text.contains("stratus_node_sessions 1"), "{text}");
        assert!(
            text.contains("stratus_node_sessions_started_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "stratus_session_capture_to_packet_ms{session=\"abc\",quantile=\"0.5\"} 3.000"
            ),
            "{text}"
        );
        node.remove("abc");
        assert!(!node.render(4, true).contains("session=\"abc\""));
    }

    #[test]
    fn a_reader_gets_each_sample_once_in_order() {
        let m = SessionMetrics::default();
        let (none, seen) = m.capture_to_packet_since(0);
        assert!(none.is_empty() && seen == 0);
        for i in 0..10 {
            m.record_capture_to_packet(f64::from(i));
        }
        let (first, seen) = m.capture_to_packet_since(0);
        assert_eq!(first, (0..10).map(f64::from).collect::<Vec<_>>());
        for i in 10..(LATENCY_WINDOW as u32 + 20) {
            m.record_capture_to_packet(f64::from(i));
        }
        // More than a window since: the window's worth, oldest first.
        let (next, total) = m.capture_to_packet_since(seen);
        assert_eq!(total, LATENCY_WINDOW as u64 + 20);
        assert_eq!(next.len(), LATENCY_WINDOW);
        assert_eq!(next[0], 20.0);
        assert_eq!(
            next.last().copied(),
            Some(f64::from(LATENCY_WINDOW as u32 + 19))
        );
        m.record_capture_to_packet(-1.0);
        assert_eq!(m.capture_to_packet_since(total).0, [-1.0]);
    }
}
