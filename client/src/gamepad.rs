//! Gamepads through gilrs (evdev and udev on Linux), sent in the W3C Standard Gamepad layout the
//! browser page uses: 17 buttons (values 0–1 as u16), 4 axes (−1–1 as i16, up negative),
//! pads 0–3 by order of connection.
//!
//! gilrs reads the devices on its own thread ([`spawn`]), which sends to whatever session is
//! in play. When the machine has no gamepad support (no udev, no access to `/dev/input`) the
//! reason is logged and kept, and the client goes on without gamepads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gilrs::{Axis, Button, EventType, GamepadId, Gilrs};
use input::{EventKind, InputEvent, MAX_GAMEPADS};

use crate::controller::ClientState;

/// The Standard Gamepad index of a gilrs button.
pub fn standard_button(b: Button) -> Option<u8> {
    Some(match b {
        Button::South => 0,
        Button::East => 1,
        Button::West => 2,
        Button::North => 3,
        Button::LeftTrigger => 4,
        Button::RightTrigger => 5,
        Button::LeftTrigger2 => 6,
        Button::RightTrigger2 => 7,
        Button::Select => 8,
        Button::Start => 9,
        Button::LeftThumb => 10,
        Button::RightThumb => 11,
        Button::DPadUp => 12,
        Button::DPadDown => 13,
        Button::DPadLeft => 14,
        Button::DPadRight => 15,
        Button::Mode => 16,
        _ => return None,
    })
}

/// The Standard Gamepad index of a gilrs axis, and whether its sign flips (gilrs has up
/// positive, the Gamepad API up negative).
pub fn standard_axis(a: Axis) -> Option<(u8, bool)> {
    Some(match a {
        Axis::LeftStickX => (0, false),
        Axis::LeftStickY => (1, true),
        Axis::RightStickX => (2, false),
        Axis::RightStickY => (3, true),
        _ => return None,
    })
}

/// Pads by connection order, at most [`MAX_GAMEPADS`]; a freed slot is reused first.
#[derive(Debug)]
pub struct Slots<Id>(Vec<Option<Id>>);

impl<Id> Default for Slots<Id> {
    fn default() -> Self {
        Slots(Vec::new())
    }
}

impl<Id: PartialEq + Copy> Slots<Id> {
    /// The slot of `id`, giving it the first free one if it has none; `None` when all are
    /// taken.
    pub fn slot(&mut self, id: Id) -> Option<u8> {
        if let Some(i) = self.0.iter().position(|s| *s == Some(id)) {
            return Some(i as u8);
        }
        let free = self.0.iter().position(Option::is_none);
        let i = match free {
            Some(i) => i,
            None if self.0.len() < usize::from(MAX_GAMEPADS) => {
                self.0.push(None);
                self.0.len() - 1
            }
            None => return None,
        };
        self.0[i] = Some(id);
        Some(i as u8)
    }

    /// Frees `id`'s slot.
    pub fn release(&mut self, id: Id) {
        for s in &mut self.0 {
            if *s == Some(id) {
                *s = None;
            }
        }
    }
}

/// A change on a pad, as gilrs reports it (digital presses arrive as changes to 0 or 1, so
/// only changes are sent and nothing twice).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadChange {
    /// A button's value, 0–1.
    Button(Button, f32),
    /// An axis' value, −1–1, up positive.
    Axis(Axis, f32),
}

impl PadChange {
    /// The change a gilrs event carries, if it is one we send.
    pub fn of(event: &EventType) -> Option<PadChange> {
        match *event {
            EventType::ButtonChanged(b, v, _) => Some(PadChange::Button(b, v)),
            EventType::AxisChanged(a, v, _) => Some(PadChange::Axis(a, v)),
            _ => None,
        }
    }
}

/// The wire event for a change on pad `pad`, if it is one we send.
pub fn wire_kind(pad: u8, change: PadChange) -> Option<EventKind> {
    match change {
        PadChange::Button(b, value) => Some(EventKind::GamepadButton {
            pad,
            button: standard_button(b)?,
            value: (value.clamp(0.0, 1.0) * 65535.0).round() as u16,
        }),
        PadChange::Axis(a, value) => {
            let (axis, flip) = standard_axis(a)?;
            let v = if flip { -value } else { value };
            Some(EventKind::GamepadAxis {
                pad,
                axis,
                value: (v.clamp(-1.0, 1.0) * 32767.0).round() as i16,
            })
        }
    }
}

/// The gamepad reader; stops when dropped.
#[derive(Debug)]
pub struct GamepadReader {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for GamepadReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts reading gamepads and sending their events to the session in play; `Err` says why
/// there are no gamepads here.
pub fn spawn(shared: Arc<ClientState>, started: Instant) -> Result<GamepadReader, String> {
    let mut gilrs = Gilrs::new().map_err(|e| format!("no gamepad support: {e}"))?;
    let pads = gilrs.gamepads().count();
    tracing::info!("{pads} gamepad(s) connected");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::Builder::new()
        .name("stratus-gamepads".into())
        .spawn(move || {
            let mut slots: Slots<GamepadId> = Slots::default();
            let mut seq = 0u32;
            while !stopped.load(Ordering::Relaxed) {
                let Some(event) = gilrs.next_event_blocking(Some(Duration::from_millis(100)))
                else {
                    continue;
                };
                if let EventType::Disconnected = event.event {
                    slots.release(event.id);
                    continue;
                }
                let Some(pad) = slots.slot(event.id) else {
                    continue;
                };
                let Some(kind) = PadChange::of(&event.event).and_then(|c| wire_kind(pad, c)) else {
                    continue;
                };
                let Some(session) = shared.session() else {
                    continue;
                };
                seq = seq.wrapping_add(1);
                let e = InputEvent {
                    seq,
                    t_us: (started.elapsed().as_micros() as u64).min(input::MAX_TIMESTAMP_US),
                    kind,
                };
                if let Ok(bytes) = e.to_bytes() {
                    session.send_input(bytes);
                }
            }
        })
        .map_err(|e| format!("cannot start the gamepad thread: {e}"))?;
    Ok(GamepadReader {
        stop,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_and_axes_map_to_the_standard_layout() {
        let all = [
            Button::South,
            Button::East,
            Button::West,
            Button::North,
            Button::LeftTrigger,
            Button::RightTrigger,
            Button::LeftTrigger2,
            Button::RightTrigger2,
            Button::Select,
            Button::Start,
            Button::LeftThumb,
            Button::RightThumb,
            Button::DPadUp,
            Button::DPadDown,
            Button::DPadLeft,
            Button::DPadRight,
            Button::Mode,
        ];
        let indices: Vec<u8> = all.iter().filter_map(|b| standard_button(*b)).collect();
        assert_eq!(indices, (0..17).collect::<Vec<u8>>());
        assert_eq!(standard_button(Button::C), None);
        assert_eq!(standard_axis(Axis::LeftStickY), Some((1, true)));
        assert_eq!(standard_axis(Axis::LeftZ), None);
    }

    #[test]
    fn pads_take_the_first_free_slot_of_four() {
        let mut s: Slots<u32> = Slots::default();
        assert_eq!(
            [10, 11, 12, 13].map(|id| s.slot(id)),
            [Some(0), Some(1), Some(2), Some(3)]
        );
        assert_eq!(s.slot(14), None, "a fifth pad has no slot");
        assert_eq!(s.slot(12), Some(2), "a known pad keeps its slot");
        s.release(11);
        assert_eq!(s.slot(14), Some(1));
    }

    #[test]
    fn values_are_scaled_and_clamped_and_up_is_negative() {
        assert_eq!(
            wire_kind(1, PadChange::Button(Button::RightTrigger2, 0.5)),
            Some(EventKind::GamepadButton {
                pad: 1,
                button: 7,
                value: 32768
            })
        );
        assert_eq!(
            wire_kind(0, PadChange::Axis(Axis::LeftStickY, 1.0)),
            Some(EventKind::GamepadAxis {
                pad: 0,
                axis: 1,
                value: -32767
            })
        );
        assert_eq!(
            wire_kind(0, PadChange::Axis(Axis::RightStickX, 7.0)),
            Some(EventKind::GamepadAxis {
                pad: 0,
                axis: 2,
                value: 32767
            })
        );
        assert_eq!(wire_kind(0, PadChange::Button(Button::C, 1.0)), None);
        // Every value encodes on the wire.
        for kind in [
            wire_kind(3, PadChange::Button(Button::Mode, 1.0)),
            wire_kind(3, PadChange::Axis(Axis::RightStickY, -1.0)),
        ] {
            let e = InputEvent {
                seq: 1,
                t_us: 1,
                kind: kind.expect("mapped"),
            };
            assert!(e.to_bytes().is_ok(), "{e:?}");
        }
    }
}
