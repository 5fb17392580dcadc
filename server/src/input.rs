//! Player input on the node: the demo title's injector, and the per-session input path
//! (data channel bytes → [`InputGate`] → [`Injector`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use capture::offscreen::DemoControls;
use input::gate::{GateConfig, GateCounters, InputGate};
use input::inject::{InjectError, Injector};
use input::{EventKind, InputEvent, MouseButton};

/// Injects into the built-in demo title: the pointer moves its crosshair, buttons and the last
/// key pressed colour its input indicator.
#[derive(Debug)]
pub struct DemoInjector {
    controls: Arc<DemoControls>,
    width: i32,
    height: i32,
}

impl DemoInjector {
    /// An injector for a demo title of this frame size.
    pub fn new(controls: Arc<DemoControls>, width: u32, height: u32) -> Self {
        Self {
            controls,
            width: width as i32,
            height: height as i32,
        }
    }
}

/// The key code the demo title shows for a gamepad button: above the keyboard's range, with
/// distinct low bits (the indicator's colour depends on them) for every pad and button.
pub fn gamepad_key(pad: u8, button: u8) -> u32 {
    0x1000 | ((pad as u32) << 5) | (button as u32 + 1)
}

fn button_bit(button: MouseButton) -> u32 {
    1 << (button as u32)
}

impl Injector for DemoInjector {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        let (px, py, buttons, _) = self.controls.snapshot();
        match event.kind {
            EventKind::MouseMove { x, y } => self.controls.set_pointer(x as i32, y as i32),
            EventKind::MouseMoveRel { dx, dy } => self.controls.set_pointer(
                (px + dx as i32).clamp(0, self.width - 1),
                (py + dy as i32).clamp(0, self.height - 1),
            ),
            EventKind::Button { button, down } => {
                let bit = button_bit(button);
                self.controls
                    .set_buttons(if down { buttons | bit } else { buttons & !bit });
            }
            EventKind::Key { code, down: true } => self.controls.set_key(code as u32),
            EventKind::Key { down: false, .. } => {}
            // A gamepad button shows as a key code above the keyboard's range, so the indicator
            // proves it arrived; see `gamepad_key`.
            EventKind::GamepadButton { pad, button, value } if value > 0 => {
                self.controls.set_key(gamepad_key(pad, button))
            }
            EventKind::GamepadButton { .. } => {}
            EventKind::GamepadAxis { .. } => {
                return Err(InjectError::Unsupported {
                    backend: "demo",
                    what: "gamepad axes",
                });
            }
            EventKind::Wheel { .. } => {
                return Err(InjectError::Unsupported {
                    backend: "demo",
                    what: "the wheel",
                });
            }
            EventKind::Touch { x, y, .. } => self.controls.set_pointer(x as i32, y as i32),
        }
        Ok(())
    }
}

/// Where the player's pointer is, as far as the node knows: the region-of-interest hint.
#[derive(Debug, Default)]
pub struct PointerHint {
    x: AtomicI32,
    y: AtomicI32,
    known: AtomicBool,
}

impl PointerHint {
    /// The last pointer position in frame pixels, if any input has said.
    pub fn get(&self) -> Option<(i32, i32)> {
        self.known.load(Ordering::Relaxed).then(|| {
            (
                self.x.load(Ordering::Relaxed),
                self.y.load(Ordering::Relaxed),
            )
        })
    }

    /// Records a pointer position in frame pixels.
    pub fn set(&self, x: i32, y: i32) {
        self.x.store(x, Ordering::Relaxed);
        self.y.store(y, Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
    }
}

/// One session's input path: decode and police the bytes, then inject.
pub struct InputPath {
    gate: InputGate,
    injector: Box<dyn Injector>,
    events: Vec<InputEvent>,
    failed: u64,
    hint: Arc<PointerHint>,
}

impl std::fmt::Debug for InputPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputPath")
            .field("injector", &self.injector.name())
            .field("counters", &self.gate.counters())
            .field("failed", &self.failed)
            .finish()
    }
}

impl InputPath {
    /// A path into `injector` for frames of `width`×`height`, keeping `hint` at the pointer.
    pub fn new(
        injector: Box<dyn Injector>,
        width: u32,
        height: u32,
        hint: Arc<PointerHint>,
    ) -> Self {
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        Self {
            gate: InputGate::new(GateConfig::new(clamp(width), clamp(height))),
            injector,
            events: Vec::new(),
            failed: 0,
            hint,
        }
    }

    /// Handles one data-channel message received at `now_us`.
    pub fn handle(&mut self, datagram: &[u8], now_us: u64) {
        self.events.clear();
        self.gate.admit(datagram, now_us, &mut self.events);
        let (w, h) = (
            self.gate.config().width as i32,
            self.gate.config().height as i32,
        );
        for event in &self.events {
            match event.kind {
                EventKind::MouseMove { x, y } | EventKind::Touch { x, y, .. } => {
                    self.hint.set(x as i32, y as i32)
                }
                EventKind::MouseMoveRel { dx, dy } => {
                    let (x, y) = self.hint.get().unwrap_or((w / 2, h / 2));
                    self.hint.set(
                        (x + dx as i32).clamp(0, (w - 1).max(0)),
                        (y + dy as i32).clamp(0, (h - 1).max(0)),
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
    use input::KeyCode;

    #[test]
    fn demo_injector_moves_the_pointer_and_records_keys_and_buttons() {
        let controls = Arc::new(DemoControls::default());
        let hint = Arc::new(PointerHint::default());
        let mut path = InputPath::new(
            Box::new(DemoInjector::new(controls.clone(), 1280, 720)),
            1280,
            720,
            hint.clone(),
        );
        assert_eq!(hint.get(), None);
        let mut bytes = Vec::new();
        for (seq, kind) in [
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
        ]
        .into_iter()
        .enumerate()
        {
            InputEvent {
                seq: seq as u32,
                t_us: 0,
                kind,
            }
            .encode(&mut bytes)
            .expect("valid");
        }
        path.handle(&bytes, 0);
        assert_eq!(controls.snapshot(), (0, 210, 1 << 2, KeyCode::KeyW as u32));
        assert_eq!(
            hint.get(),
            Some((0, 210)),
            "the ROI hint follows the pointer"
        );
        assert_eq!(path.counters().accepted, 5);
        let mut pad = Vec::new();
        let press = EventKind::GamepadButton {
            pad: 0,
            button: 0,
            value: 65535,
        };
        InputEvent {
            seq: 9,
            t_us: 0,
            kind: press,
        }
        .encode(&mut pad)
        .expect("valid");
        path.handle(&pad, 1);
        assert_eq!(controls.snapshot().3, gamepad_key(0, 0));
        assert_ne!(
            capture::offscreen::indicator_rgb(gamepad_key(0, 0), 0),
            capture::offscreen::indicator_rgb(0, 0),
            "a gamepad button changes the indicator"
        );
        path.handle(b"garbage", 1);
        assert_eq!(path.counters().malformed, 1);
    }
}
