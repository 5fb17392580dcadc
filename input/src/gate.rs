//! The node's input gate: everything a player's input passes before it reaches the game.
//!
//! [`InputGate`] decodes datagrams from one session's input data channel, drops events beyond
//! the rate limit (a token bucket refilled at [`GateConfig::max_events_per_s`]), clamps
//! coordinates to the frame, and counts what it refused. It is a plain struct without clock or
//! I/O: the caller passes the receive time, so it is tested on virtual time.
//!
//! ```
//! use input::gate::{GateConfig, InputGate};
//! use input::{EventKind, InputEvent};
//!
//! let mut gate = InputGate::new(GateConfig::new(1280, 720));
//! let datagram = InputEvent { seq: 1, t_us: 5, kind: EventKind::MouseMove { x: 5000, y: 10 } }
//!     .to_bytes()
//!     .expect("valid");
//! let mut out = Vec::new();
//! gate.admit(&datagram, 1_000, &mut out);
//! assert_eq!(out[0].kind, EventKind::MouseMove { x: 1279, y: 10 }); // clamped to the frame
//! assert_eq!(gate.counters().clamped, 1);
//! ```
//!
//! "Only from the session's own data channel" is structural: each session owns one gate fed
//! only by its own channel, so there is no path for another peer's bytes into it.

use crate::{EventKind, InputEvent, decode_all};

/// The default rate limit: events per second a session may inject.
pub const DEFAULT_MAX_EVENTS_PER_S: u32 = 1000;
/// The bucket holds this fraction of a second of events, so a short burst (a 1000 Hz mouse
/// and a key chord in the same millisecond) passes while a flood does not.
const BURST_SECONDS: f64 = 0.25;

/// Limits for one session's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Frame width: absolute x is clamped to `0..width`.
    pub width: u16,
    /// Frame height: absolute y is clamped to `0..height`.
    pub height: u16,
    /// Sustained events per second; beyond it events are dropped and counted.
    pub max_events_per_s: u32,
}

impl GateConfig {
    /// A gate for a `width`×`height` frame with the default rate limit.
    pub fn new(width: u16, height: u16) -> Self {
        Self {
            width,
            height,
            max_events_per_s: DEFAULT_MAX_EVENTS_PER_S,
        }
    }
}

/// What the gate did, cumulatively.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCounters {
    /// Events passed on.
    pub accepted: u64,
    /// Events dropped by the rate limit.
    pub rate_limited: u64,
    /// Datagrams (or their tails) that did not decode: bad version, unknown kind, unknown key
    /// code, out-of-range values, truncation.
    pub malformed: u64,
    /// Accepted events whose coordinates were clamped to the frame.
    pub clamped: u64,
}

/// One session's input gate. See the module docs.
#[derive(Debug, Clone)]
pub struct InputGate {
    config: GateConfig,
    tokens: f64,
    last_us: Option<u64>,
    counters: GateCounters,
}

impl InputGate {
    /// A gate with a full bucket.
    pub fn new(config: GateConfig) -> Self {
        Self {
            config,
            tokens: Self::capacity(&config),
            last_us: None,
            counters: GateCounters::default(),
        }
    }

    fn capacity(config: &GateConfig) -> f64 {
        (config.max_events_per_s as f64 * BURST_SECONDS).max(1.0)
    }

    /// The gate's limits.
    pub fn config(&self) -> GateConfig {
        self.config
    }

    /// Changes the frame size (after a resolution change); the rate state is kept.
    pub fn set_frame_size(&mut self, width: u16, height: u16) {
        self.config.width = width;
        self.config.height = height;
    }

    /// What the gate has done so far.
    pub fn counters(&self) -> GateCounters {
        self.counters
    }

    /// Decodes `datagram`, received at `now_us` (the node's clock, any monotonic origin), and
    /// appends the events to inject to `out`, in order. Returns how many were appended.
    ///
    /// A datagram that stops decoding part-way keeps the events before the bad one.
    pub fn admit(&mut self, datagram: &[u8], now_us: u64, out: &mut Vec<InputEvent>) -> usize {
        self.refill(now_us);
        let before = out.len();
        for decoded in decode_all(datagram) {
            let mut event = match decoded {
                Ok(event) => event,
                Err(_) => {
                    self.counters.malformed += 1;
                    break;
                }
            };
            if self.tokens < 1.0 {
                self.counters.rate_limited += 1;
                continue;
            }
            self.tokens -= 1.0;
            if self.clamp(&mut event) {
                self.counters.clamped += 1;
            }
            self.counters.accepted += 1;
            out.push(event);
        }
        out.len() - before
    }

    fn refill(&mut self, now_us: u64) {
        let capacity = Self::capacity(&self.config);
        if let Some(last) = self.last_us {
            // A clock that goes backwards refills nothing rather than underflowing.
            let elapsed_s = now_us.saturating_sub(last) as f64 / 1e6;
            self.tokens =
                (self.tokens + elapsed_s * self.config.max_events_per_s as f64).min(capacity);
        }
        self.last_us = Some(self.last_us.map_or(now_us, |last| last.max(now_us)));
    }

    /// Clamps absolute coordinates into the frame; true if anything changed.
    fn clamp(&self, event: &mut InputEvent) -> bool {
        let (max_x, max_y) = (
            self.config.width.saturating_sub(1),
            self.config.height.saturating_sub(1),
        );
        let (x, y) = match &mut event.kind {
            EventKind::MouseMove { x, y } | EventKind::Touch { x, y, .. } => (x, y),
            _ => return false,
        };
        let (cx, cy) = ((*x).min(max_x), (*y).min(max_y));
        let changed = (cx, cy) != (*x, *y);
        (*x, *y) = (cx, cy);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyCode, TouchPhase};

    fn bytes(events: &[EventKind]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (i, kind) in events.iter().enumerate() {
            InputEvent {
                seq: i as u32,
                t_us: i as u64,
                kind: *kind,
            }
            .encode(&mut buf)
            .expect("valid");
        }
        buf
    }

    fn mv(x: u16, y: u16) -> EventKind {
        EventKind::MouseMove { x, y }
    }

    #[test]
    fn floods_are_cut_to_the_rate_and_counted() {
        let mut gate = InputGate::new(GateConfig::new(1280, 720));
        let one = bytes(&[mv(1, 1)]);
        let mut out = Vec::new();
        // 5000 events in the same instant: only the burst passes.
        for _ in 0..5000 {
            gate.admit(&one, 0, &mut out);
        }
        assert_eq!(out.len(), 250);
        assert_eq!(gate.counters().rate_limited, 4750);
        // Two seconds of 2000 events/s, evenly spread: 1000/s pass.
        out.clear();
        for i in 0..4000u64 {
            gate.admit(&one, 1_000_000 + i * 500, &mut out);
        }
        let passed = out.len() as f64;
        assert!(
            (1990.0..=2260.0).contains(&passed),
            "{passed} of 4000 passed"
        );
    }

    #[test]
    fn steady_1000_hz_mouse_is_never_limited() {
        let mut gate = InputGate::new(GateConfig::new(1280, 720));
        let one = bytes(&[mv(1, 1)]);
        let mut out = Vec::new();
        for i in 0..10_000u64 {
            gate.admit(&one, i * 1000, &mut out);
        }
        assert_eq!(out.len(), 10_000);
        assert_eq!(gate.counters().rate_limited, 0);
    }

    #[test]
    fn coordinates_are_clamped_to_the_frame() {
        let mut gate = InputGate::new(GateConfig::new(1280, 720));
        let touch = EventKind::Touch {
            id: 0,
            phase: TouchPhase::Move,
            x: 9999,
            y: 719,
        };
        let mut out = Vec::new();
        gate.admit(&bytes(&[mv(1280, 720), mv(5, 6), touch]), 0, &mut out);
        assert_eq!(out[0].kind, mv(1279, 719));
        assert_eq!(out[1].kind, mv(5, 6));
        assert_eq!(
            out[2].kind,
            EventKind::Touch {
                id: 0,
                phase: TouchPhase::Move,
                x: 1279,
                y: 719
            }
        );
        assert_eq!(gate.counters().clamped, 2);
    }

    #[test]
    fn malformed_tails_are_counted_and_earlier_events_kept() {
        let mut gate = InputGate::new(GateConfig::new(1280, 720));
        let key = EventKind::Key {
            code: KeyCode::KeyA,
            down: true,
        };
        let mut datagram = bytes(&[key, mv(3, 4)]);
        datagram.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1]); // unknown key code
        let mut out = Vec::new();
        assert_eq!(gate.admit(&datagram, 0, &mut out), 2);
        assert_eq!(gate.counters().malformed, 1);
        assert_eq!(gate.admit(&[], 0, &mut out), 0);
        assert_eq!(gate.admit(&[9, 9, 9], 0, &mut out), 0);
        assert_eq!(gate.counters().malformed, 2);
        assert_eq!(gate.counters().accepted, 2);
    }

    #[test]
    fn backwards_clock_does_not_mint_tokens() {
        let mut gate = InputGate::new(GateConfig {
            max_events_per_s: 4,
            ..GateConfig::new(10, 10)
        });
        let one = bytes(&[mv(1, 1)]);
        let mut out = Vec::new();
        gate.admit(&one, 10_000_000, &mut out);
        for _ in 0..10 {
            gate.admit(&one, 0, &mut out);
        }
        assert_eq!(
            out.len(),
            1,
            "capacity is one event at 4/s with a 0.25 s burst"
        );
    }
}
