//! [`Device`]: how hardware and browsers report a motion — rate, coalescing, timestamps, lost
//! and repeated events, whole pixels.

use super::{Path, SplitMix64};
use crate::trace::{Sample, Trace, TraceMeta};

/// A way of reporting a [`Path`]: a sensor polled at `rate_hz`, optionally coalesced into one
/// event per display frame, with coarse timestamps, lost and repeated events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Device {
    /// Short name for reports.
    pub name: &'static str,
    /// The sensor's polling rate, Hz.
    pub rate_hz: f64,
    /// Each polling interval is scaled by a factor uniform in `1 ± jitter`.
    pub jitter: f64,
    /// Events are delivered once per frame of a display at this rate, Hz, carrying the last
    /// polled position and its timestamp (a browser's `pointermove`, an OS event queue);
    /// `None`: every poll is an event.
    pub coalesce_hz: Option<f64>,
    /// Timestamps are floored to multiples of this, microseconds (15 625 for the Windows timer
    /// tick, 1 000 for millisecond clocks, 1 for exact).
    pub stamp_us: u64,
    /// Probability that a poll is lost.
    pub drop: f64,
    /// Probability that an event is delivered twice.
    pub duplicate: f64,
    /// Positions are rounded to multiples of this, pixels.
    pub quantum_px: f64,
}

/// The device presets of [`super::family_corpus`]: mice at 125 Hz, 1 kHz and 8 kHz as a native
/// client sees them; a 1 kHz mouse in a browser at 60, 144 and 240 Hz; a 125 Hz mouse on a
/// Windows timer (64 Hz events, 15.625 ms timestamps, as RDP clients record); gamepads polled
/// at 60 Hz (the Gamepad API on `requestAnimationFrame`) and 250 Hz, 16-bit axes scaled to
/// ±1000 px.
pub const DEVICES: [Device; 9] = [
    mouse("mouse-125hz", 125.0),
    mouse("mouse-1000hz", 1000.0),
    mouse("mouse-8000hz", 8000.0),
    browser("browser-60hz", 60.0),
    browser("browser-144hz", 144.0),
    browser("browser-240hz", 240.0),
    Device {
        name: "windows-timer-64hz",
        rate_hz: 125.0,
        jitter: 0.1,
        coalesce_hz: Some(64.0),
        stamp_us: 15_625,
        drop: 0.01,
        duplicate: 0.01,
        quantum_px: 1.0,
    },
    gamepad("gamepad-60hz", 60.0),
    gamepad("gamepad-250hz", 250.0),
];

const fn mouse(name: &'static str, rate_hz: f64) -> Device {
    Device {
        name,
        rate_hz,
        jitter: 0.1,
        coalesce_hz: None,
        stamp_us: 1,
        drop: 0.01,
        duplicate: 0.005,
        quantum_px: 1.0,
    }
}

const fn browser(name: &'static str, frame_hz: f64) -> Device {
    Device {
        name,
        rate_hz: 1000.0,
        jitter: 0.1,
        coalesce_hz: Some(frame_hz),
        stamp_us: 100,
        drop: 0.01,
        duplicate: 0.005,
        quantum_px: 1.0,
    }
}

const fn gamepad(name: &'static str, rate_hz: f64) -> Device {
    Device {
        name,
        rate_hz,
        jitter: 0.05,
        coalesce_hz: None,
        stamp_us: 100,
        drop: 0.005,
        duplicate: 0.01,
        quantum_px: 1000.0 / 32767.0,
    }
}

impl Device {
    /// The preset named `name`.
    pub fn named(name: &str) -> Option<Device> {
        DEVICES.iter().find(|d| d.name == name).copied()
    }

    /// Reports `path` through this device; the same seed gives the same events.
    pub fn observe(&self, path: &Path, seed: u64) -> Observed {
        let mut rng = SplitMix64::new(seed ^ 0xD1CE_D1CE_D1CE_D1CE);
        let end = path.duration_us();
        let period_us = 1e6 / self.rate_hz.max(1.0);
        let q = self.quantum_px.max(1e-9);
        // Polls: (true time, position).
        let mut polls = Vec::new();
        let mut t = rng.range(0.0, period_us);
        while (t as u64) <= end {
            let t_us = t as u64;
            if rng.next_f64() >= self.drop {
                let (x, y) = path.at(t_us);
                polls.push((t_us, (x / q).round() * q, (y / q).round() * q));
            }
            t += period_us * rng.range(1.0 - self.jitter, 1.0 + self.jitter);
        }
        // Events: one per poll, or the last poll of each display frame.
        let events: Vec<(u64, f64, f64)> = match self.coalesce_hz {
            None => polls,
            Some(hz) => {
                let frame_us = 1e6 / hz.max(1.0);
                let phase = rng.range(0.0, frame_us);
                let mut out: Vec<(u64, f64, f64)> = Vec::new();
                let mut last_frame = None;
                for p in polls {
                    let frame = ((p.0 as f64 - phase) / frame_us).ceil() as i64;
                    if last_frame == Some(frame) {
                        *out.last_mut().expect("a frame has an event") = p;
                    } else {
                        out.push(p);
                        last_frame = Some(frame);
                    }
                }
                out
            }
        };
        let stamp = self.stamp_us.max(1);
        let mut samples = Vec::with_capacity(events.len());
        let mut true_t_us = Vec::with_capacity(events.len());
        for (t_us, x, y) in events {
            let copies = if rng.next_f64() < self.duplicate {
                2
            } else {
                1
            };
            for _ in 0..copies {
                samples.push(Sample {
                    t_us: t_us / stamp * stamp,
                    x,
                    y,
                    buttons: path.buttons_at(t_us),
                });
                true_t_us.push(t_us);
            }
        }
        Observed {
            trace: Trace {
                meta: TraceMeta {
                    rate_hz: self.coalesce_hz.unwrap_or(self.rate_hz).round() as u32,
                    source: format!("stratus corpus: {}", self.name),
                },
                samples,
                stops: Vec::new(),
            },
            true_t_us,
        }
    }
}

/// A [`Path`] as a device reported it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    /// The events, with the device's timestamps and positions; no stops (a client sees none).
    pub trace: Trace,
    /// For each event, the true time its position was taken, microseconds.
    pub true_t_us: Vec<u64>,
}

#[cfg(test)]
mod tests {
    use super::super::path::{Profile, Segment, render_segments};
    use super::*;

    fn ramp() -> Path {
        let seg = Segment {
            t0: 0.0,
            t1: 2.0,
            from: (0.0, 0.0),
            to: (2000.0, 0.0),
            profile: Profile::Cruise(0.01),
        };
        render_segments(&[seg], (0.0, 0.0), 2.0, 250, false)
    }

    #[test]
    fn coalescing_and_coarse_stamps_behave_like_the_hardware() {
        let path = ramp();
        let windows = Device::named("windows-timer-64hz")
            .expect("preset")
            .observe(&path, 1);
        let n = windows.trace.samples.len();
        assert!((115..140).contains(&n), "{n} events in 2 s at 64 Hz");
        for (s, &t) in windows.trace.samples.iter().zip(&windows.true_t_us) {
            assert_eq!(s.t_us % 15_625, 0, "floored to the timer tick");
            assert!(t >= s.t_us && t - s.t_us < 15_625);
            assert_eq!(s.x, s.x.round(), "whole pixels");
        }
        assert!(
            windows
                .trace
                .samples
                .windows(2)
                .any(|w| w[1].t_us - w[0].t_us >= 31_250),
            "a tick without an event"
        );
        let fast = Device::named("mouse-8000hz")
            .expect("preset")
            .observe(&path, 2);
        let n = fast.trace.samples.len();
        assert!((15_500..16_300).contains(&n), "{n} events in 2 s at 8 kHz");
        assert!(
            fast.trace
                .samples
                .windows(2)
                .all(|w| w[0].t_us <= w[1].t_us)
        );
        assert_eq!(
            fast,
            Device::named("mouse-8000hz")
                .expect("preset")
                .observe(&path, 2)
        );
        let pad = Device::named("gamepad-60hz")
            .expect("preset")
            .observe(&path, 3);
        assert!(
            pad.trace.samples.iter().any(|s| s.x != s.x.round()),
            "fine axis"
        );
    }
}
