//! Player input on the node: the per-session input path (data-channel bytes → [`InputGate`] →
//! the stream's geometry → [`Injector`]) and the pointer hint the region of interest follows.
//!
//! Players send positions in the pixels of the picture they decode. On a lower rung of the
//! quality ladder, or when a title draws at its own size, that picture is not the title's
//! frame: [`InputPath::set_geometry`] (called as each frame is sent) keeps the gate's clamp at
//! the stream's size and maps every absolute position to the title's pixels before it is
//! injected and before it becomes the hint, so input and region of interest land where the
//! player pointed at every rung.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use input::gate::{GateConfig, GateCounters, InputGate};
use input::inject::Injector;
use input::{EventKind, InputEvent};

use crate::media::StreamGeometry;

/// Where the player's pointer is, as far as the node knows, in the title's frame pixels: the
/// region-of-interest hint, written by the input path and read by the media thread.
#[derive(Debug, Default)]
pub struct PointerHint {
    x: AtomicI32,
    y: AtomicI32,
    known: AtomicBool,
}

impl PointerHint {
    /// The last pointer position in the title's frame pixels, if any input has said.
    pub fn get(&self) -> Option<(i32, i32)> {
        self.known.load(Ordering::Relaxed).then(|| {
            (
                self.x.load(Ordering::Relaxed),
                self.y.load(Ordering::Relaxed),
            )
        })
    }

    /// Records a pointer position in the title's frame pixels.
    pub fn set(&self, x: i32, y: i32) {
        self.x.store(x, Ordering::Relaxed);
        self.y.store(y, Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
    }
}

/// One session's input path: decode and police the bytes, map positions to the title's
/// pixels, then inject.
pub struct InputPath {
    gate: InputGate,
    injector: Box<dyn Injector>,
    geometry: StreamGeometry,
    events: Vec<InputEvent>,
    failed: u64,
    hint: Arc<PointerHint>,
}

impl std::fmt::Debug for InputPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputPath")
            .field("injector", &self.injector.name())
            .field("geometry", &self.geometry)
            .field("counters", &self.gate.counters())
            .field("failed", &self.failed)
            .finish()
    }
}

/// A frame size as the gate's clamp (the wire carries 16-bit positions).
fn gate_size((w, h): (u32, u32)) -> (u16, u16) {
    let clamp = |v: u32| v.min(u32::from(u16::MAX)) as u16;
    (clamp(w), clamp(h))
}

impl InputPath {
    /// A path into `injector` for a stream of `geometry`, keeping `hint` at the pointer.
    pub fn new(
        injector: Box<dyn Injector>,
        geometry: StreamGeometry,
        hint: Arc<PointerHint>,
    ) -> Self {
        let (w, h) = gate_size(geometry.stream);
        Self {
            gate: InputGate::new(GateConfig::new(w, h)),
            injector,
            geometry,
            events: Vec::new(),
            failed: 0,
            hint,
        }
    }

    /// The geometry of the frames the player now receives; positions that arrive from now on
    /// are read in it.
    pub fn set_geometry(&mut self, geometry: StreamGeometry) {
        if geometry != self.geometry {
            tracing::debug!(?geometry, "input follows the stream's geometry");
            let (w, h) = gate_size(geometry.stream);
            self.gate.set_frame_size(w, h);
            self.geometry = geometry;
        }
    }

    /// Handles one data-channel message received at `now_us`.
    pub fn handle(&mut self, datagram: &[u8], now_us: u64) {
        self.events.clear();
        self.gate.admit(datagram, now_us, &mut self.events);
        let (w, h) = (self.geometry.source.0 as i32, self.geometry.source.1 as i32);
        for event in &mut self.events {
            match &mut event.kind {
                EventKind::MouseMove { x, y } | EventKind::Touch { x, y, .. } => {
                    let (sx, sy) = self.geometry.to_source(i32::from(*x), i32::from(*y));
                    // In range: the source size fits the wire's 16 bits (the gate's clamp).
                    (*x, *y) = (sx.clamp(0, 0xffff) as u16, sy.clamp(0, 0xffff) as u16);
                    self.hint.set(sx, sy);
                }
                // Relative motion is the player's hand, not a place in the picture: it is
                // injected as it came, and the hint moves by it in the title's pixels.
                EventKind::MouseMoveRel { dx, dy } => {
                    let (x, y) = self.hint.get().unwrap_or((w / 2, h / 2));
                    self.hint.set(
                        (x + i32::from(*dx)).clamp(0, (w - 1).max(0)),
                        (y + i32::from(*dy)).clamp(0, (h - 1).max(0)),
                    );
                }
                _ => {}
            }
            if let Err(e) = self.injector.inject(event) {
                self.failed += 1;
                // Log the first of each run of failures; the count says the rest.
                if self.failed.is_power_of_two() {
                    tracing::warn!(failed = self.failed, "input injection: {e}");
                }
            }
        }
    }

    /// The gate's counters.
    pub fn counters(&self) -> GateCounters {
        self.gate.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::title::demo::{DemoInjector, gamepad_key};
    use capture::offscreen::DemoControls;
    use encoder::roi::RoiPolicy;
    use input::{KeyCode, MouseButton};

    fn encode(events: &[EventKind]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (seq, kind) in events.iter().enumerate() {
            InputEvent {
                seq: seq as u32,
                t_us: 0,
                kind: *kind,
            }
            .encode(&mut bytes)
            .expect("valid");
        }
        bytes
    }

    fn demo_path(width: u32, height: u32) -> (InputPath, Arc<DemoControls>, Arc<PointerHint>) {
        let controls = Arc::new(DemoControls::default());
        let hint = Arc::new(PointerHint::default());
        let path = InputPath::new(
            Box::new(DemoInjector::new(controls.clone(), width, height)),
            StreamGeometry::full(width, height),
            hint.clone(),
        );
        (path, controls, hint)
    }

    #[test]
    fn input_reaches_the_demo_and_the_hint_follows_the_pointer() {
        let (mut path, controls, hint) = demo_path(1280, 720);
        assert_eq!(hint.get(), None);
        path.handle(
            &encode(&[
                EventKind::MouseMove { x: 100, y: 200 },
                EventKind::MouseMoveRel { dx: -150, dy: 10 },
                EventKind::Button {
                    button: MouseButton::Right,
                    down: true,
                },
                EventKind::Key {
                    code: KeyCode::KeyW,
                    down: true,
                },
                EventKind::Key {
                    code: KeyCode::KeyW,
                    down: false,
                },
            ]),
            0,
        );
        assert_eq!(controls.snapshot(), (0, 210, 1 << 2, KeyCode::KeyW as u32));
        assert_eq!(
            hint.get(),
            Some((0, 210)),
            "the ROI hint follows the pointer"
        );
        assert_eq!(path.counters().accepted, 5);
        path.handle(
            &encode(&[EventKind::GamepadButton {
                pad: 0,
                button: 0,
                value: 65535,
            }]),
            1,
        );
        assert_eq!(controls.snapshot().3, gamepad_key(0, 0));
        assert_ne!(
            capture::offscreen::indicator_rgb(gamepad_key(0, 0), 0),
            capture::offscreen::indicator_rgb(0, 0),
            "a gamepad button changes the indicator"
        );
        path.handle(b"garbage", 1);
        assert_eq!(path.counters().malformed, 1);
    }

    /// Where the player points on the picture it decodes is where the title gets the pointer
    /// and where the encoder spends its bits, on the full and on the half-size rung.
    #[test]
    fn pointer_and_roi_land_where_the_player_pointed_on_every_rung() {
        let (mut path, controls, hint) = demo_path(1280, 720);
        let policy = RoiPolicy::new(1280, 720);
        for geometry in [
            StreamGeometry::full(1280, 720),
            StreamGeometry {
                source: (1280, 720),
                stream: (640, 360),
            },
        ] {
            path.set_geometry(geometry);
            // The player points at the picture's centre, in the pixels it decodes.
            let (cx, cy) = (geometry.stream.0 / 2, geometry.stream.1 / 2);
            path.handle(
                &encode(&[EventKind::MouseMove {
                    x: cx as u16,
                    y: cy as u16,
                }]),
                0,
            );
            let (px, py, _, _) = controls.snapshot();
            assert_eq!((px, py), (640, 360), "the title's pointer at {geometry:?}");
            assert_eq!(hint.get(), Some((640, 360)));
            // The region the encoder gets, in the stream's pixels, is centred on the same spot.
            let regions = policy.regions(hint.get());
            let r = geometry.roi_to_stream(regions[0]);
            let centre = (r.x + r.width / 2, r.y + r.height / 2);
            assert!(
                centre.0.abs_diff(cx) <= 1 && centre.1.abs_diff(cy) <= 1,
                "ROI centre {centre:?} against the pointer {:?} at {geometry:?}",
                (cx, cy)
            );
            // The gate clamps at the stream's edge, and the edge maps to the title's edge.
            path.handle(&encode(&[EventKind::MouseMove { x: 9999, y: 9999 }]), 0);
            let (px, py, _, _) = controls.snapshot();
            assert!(
                px >= 1278 && py >= 718,
                "the stream's corner is the title's: ({px}, {py}) at {geometry:?}"
            );
        }
    }
}
