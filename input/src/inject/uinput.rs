//! uinput injection through virtual kernel input devices: [`UinputInjector`].
//!
//! `/dev/uinput` lets a process create input devices that the kernel treats like hardware:
//! udev tags them, and libinput, X servers, Wayland compositors and games reading evdev (SDL)
//! pick them up. The injector creates:
//!
//! - a **keyboard and mouse** ([`Device::KeyboardMouse`]): every [`KeyCode`] as its evdev
//!   `KEY_*` code ([`evdev_key`]), `BTN_LEFT`/`RIGHT`/`MIDDLE`/`SIDE`/`EXTRA`, `REL_X`/`REL_Y`,
//!   and the wheels both as whole notches (`REL_WHEEL`, `REL_HWHEEL`) and in 1/120 notch units
//!   (`REL_WHEEL_HI_RES`, `REL_HWHEEL_HI_RES`), which is what the kernel's own HID mice send;
//! - an **absolute pointer** ([`Device::Pointer`]): `ABS_X`/`ABS_Y` over
//!   [`UinputConfig::pointer_size`]. It is a separate device because udev, libinput and the Xorg
//!   evdev driver classify a device with both relative and absolute axes as one or the other
//!   and ignore half of it. It also declares the three main buttons, without which udev does
//!   not tag it as a mouse at all; clicks are nonetheless always sent from the keyboard and
//!   mouse device, since the pointer position is shared by the whole seat;
//! - one **gamepad** per pad in use ([`Device::Gamepad`]), created on the pad's first event so
//!   games see only the pads players actually use. W3C Standard Gamepad buttons 0–16 map to
//!   `BTN_SOUTH`, `BTN_EAST`, `BTN_NORTH`, `BTN_WEST`, `BTN_TL`, `BTN_TR`, `BTN_TL2`, `BTN_TR2`,
//!   `BTN_SELECT`, `BTN_START`, `BTN_THUMBL`, `BTN_THUMBR`, `BTN_DPAD_UP`/`DOWN`/`LEFT`/`RIGHT`
//!   and `BTN_MODE`. Buttons 2 and 3 (left and top face buttons) take `BTN_NORTH` and
//!   `BTN_WEST`, the codes also named `BTN_X` and `BTN_Y`: that is what the kernel's xpad
//!   driver sends and what SDL expects from a non-Sony pad. Axes 0–3 map to `ABS_X`, `ABS_Y`,
//!   `ABS_RX`, `ABS_RY` (−32767..=32767, positive right and down, as the wire has them); the
//!   analog triggers (buttons 6 and 7) also report their pressure as `ABS_Z`/`ABS_RZ`
//!   (0..=65535). A button counts as pressed from half its travel.
//!
//! Touch events are [`InjectError::Unsupported`]. Each event becomes one batch of records
//! followed by `SYN_REPORT`, written with a single `write`. The translation from [`InputEvent`]
//! to records is the pure [`Translator`], tested without the device.
//!
//! uinput devices are visible to the whole machine, not to one session: prefer XTest when the
//! session has its own X display (see [`crate::inject`]).

mod device;

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{InjectError, Injector, NotchAccumulator};
use crate::{EventKind, InputEvent, KeyCode, MAX_GAMEPADS, MouseButton};
use device::{DeviceSpec, VirtualDevice};

/// The backend name in errors and [`Injector::name`].
pub(crate) const BACKEND: &str = "uinput";

/// Event type `EV_SYN`: synchronisation; `SYN_REPORT` (code 0) ends a batch.
pub const EV_SYN: u16 = 0x00;
/// Event type `EV_KEY`: keys and buttons; value 1 pressed, 0 released.
pub const EV_KEY: u16 = 0x01;
/// Event type `EV_REL`: relative axes (mouse motion, wheels).
pub const EV_REL: u16 = 0x02;
/// Event type `EV_ABS`: absolute axes (pointer position, sticks, triggers).
pub const EV_ABS: u16 = 0x03;

// Codes from linux/input-event-codes.h.
const SYN_REPORT: u16 = 0;
const REL_X: u16 = 0x00;
const REL_Y: u16 = 0x01;
const REL_HWHEEL: u16 = 0x06;
const REL_WHEEL: u16 = 0x08;
const REL_WHEEL_HI_RES: u16 = 0x0b;
const REL_HWHEEL_HI_RES: u16 = 0x0c;
const ABS_X: u16 = 0x00;
const ABS_Y: u16 = 0x01;
const ABS_Z: u16 = 0x02;
const ABS_RX: u16 = 0x03;
const ABS_RY: u16 = 0x04;
const ABS_RZ: u16 = 0x05;
const BTN_LEFT: u16 = 0x110;
const BTN_RIGHT: u16 = 0x111;
const BTN_MIDDLE: u16 = 0x112;
const BTN_SIDE: u16 = 0x113;
const BTN_EXTRA: u16 = 0x114;
const BTN_SOUTH: u16 = 0x130;
const BTN_EAST: u16 = 0x131;
const BTN_NORTH: u16 = 0x133;
const BTN_WEST: u16 = 0x134;
const BTN_TL: u16 = 0x136;
const BTN_TR: u16 = 0x137;
const BTN_TL2: u16 = 0x138;
const BTN_TR2: u16 = 0x139;
const BTN_SELECT: u16 = 0x13a;
const BTN_START: u16 = 0x13b;
const BTN_MODE: u16 = 0x13c;
const BTN_THUMBL: u16 = 0x13d;
const BTN_THUMBR: u16 = 0x13e;
const BTN_DPAD_UP: u16 = 0x220;
const BTN_DPAD_DOWN: u16 = 0x221;
const BTN_DPAD_LEFT: u16 = 0x222;
const BTN_DPAD_RIGHT: u16 = 0x223;
const BUS_VIRTUAL: u16 = 0x06;

/// The evdev code of each W3C Standard Gamepad button, by button index.
const GAMEPAD_BUTTON_CODES: [u16; crate::GAMEPAD_BUTTONS as usize] = [
    BTN_SOUTH,
    BTN_EAST,
    BTN_NORTH,
    BTN_WEST,
    BTN_TL,
    BTN_TR,
    BTN_TL2,
    BTN_TR2,
    BTN_SELECT,
    BTN_START,
    BTN_THUMBL,
    BTN_THUMBR,
    BTN_DPAD_UP,
    BTN_DPAD_DOWN,
    BTN_DPAD_LEFT,
    BTN_DPAD_RIGHT,
    BTN_MODE,
];
/// The evdev axis of each W3C Standard Gamepad axis, by axis index.
const GAMEPAD_AXIS_CODES: [u16; crate::GAMEPAD_AXES as usize] = [ABS_X, ABS_Y, ABS_RX, ABS_RY];
/// W3C buttons 6 and 7, the analog triggers, and the axes that carry their pressure.
const TRIGGERS: [(u8, u16); 2] = [(6, ABS_Z), (7, ABS_RZ)];
/// From this value on a gamepad button counts as pressed (half its travel).
const BUTTON_PRESSED_MIN: u16 = 0x8000;
/// Stick range: symmetric around the centre, so the wire's −32767..=32767 maps 1:1.
const STICK_MAX: i32 = 32767;

/// The evdev `KEY_*` code of a physical key.
///
/// This is the USB HID keyboard usage → evdev table of the kernel's `hid-input.c`, for the
/// usages [`KeyCode`] has. X servers using the `evdev` XKB rules number keys as this code plus 8.
#[rustfmt::skip]
pub const fn evdev_key(key: KeyCode) -> u16 {
    use KeyCode::*;
    match key {
        Escape => 1,
        Digit1 => 2, Digit2 => 3, Digit3 => 4, Digit4 => 5, Digit5 => 6,
        Digit6 => 7, Digit7 => 8, Digit8 => 9, Digit9 => 10, Digit0 => 11,
        Minus => 12, Equal => 13, Backspace => 14, Tab => 15,
        KeyQ => 16, KeyW => 17, KeyE => 18, KeyR => 19, KeyT => 20,
        KeyY => 21, KeyU => 22, KeyI => 23, KeyO => 24, KeyP => 25,
        BracketLeft => 26, BracketRight => 27, Enter => 28, ControlLeft => 29,
        KeyA => 30, KeyS => 31, KeyD => 32, KeyF => 33, KeyG => 34,
        KeyH => 35, KeyJ => 36, KeyK => 37, KeyL => 38,
        Semicolon => 39, Quote => 40, Backquote => 41, ShiftLeft => 42, Backslash => 43,
        KeyZ => 44, KeyX => 45, KeyC => 46, KeyV => 47, KeyB => 48, KeyN => 49, KeyM => 50,
        Comma => 51, Period => 52, Slash => 53, ShiftRight => 54, NumpadMultiply => 55,
        AltLeft => 56, Space => 57, CapsLock => 58,
        F1 => 59, F2 => 60, F3 => 61, F4 => 62, F5 => 63,
        F6 => 64, F7 => 65, F8 => 66, F9 => 67, F10 => 68,
        Numpad7 => 71, Numpad8 => 72, Numpad9 => 73, NumpadSubtract => 74,
        Numpad4 => 75, Numpad5 => 76, Numpad6 => 77, NumpadAdd => 78,
        Numpad1 => 79, Numpad2 => 80, Numpad3 => 81, Numpad0 => 82, NumpadDecimal => 83,
        F11 => 87, F12 => 88,
        NumpadEnter => 96, ControlRight => 97, NumpadDivide => 98, AltRight => 100,
        Home => 102, ArrowUp => 103, PageUp => 104, ArrowLeft => 105, ArrowRight => 106,
        End => 107, ArrowDown => 108, PageDown => 109, Insert => 110, Delete => 111,
        MetaLeft => 125, MetaRight => 126,
    }
}

/// One evdev record (`struct input_event` without its timestamp, which the kernel fills in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Record {
    /// Event type: [`EV_SYN`], [`EV_KEY`], [`EV_REL`] or [`EV_ABS`].
    pub event_type: u16,
    /// Key, button or axis code within the type.
    pub code: u16,
    /// Key state (1 pressed, 0 released), relative delta or absolute position.
    pub value: i32,
}

impl Record {
    const fn new(event_type: u16, code: u16, value: i32) -> Record {
        Record {
            event_type,
            code,
            value,
        }
    }

    /// The `SYN_REPORT` record that ends every batch.
    pub const SYN_REPORT: Record = Record::new(EV_SYN, SYN_REPORT, 0);
}

/// Which of the injector's virtual devices a batch of records belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Device {
    /// The keyboard and relative mouse, with buttons and wheels.
    KeyboardMouse,
    /// The absolute pointer.
    Pointer,
    /// Gamepad `0..MAX_GAMEPADS`.
    Gamepad(u8),
}

/// The records one event becomes: empty when the event changes nothing (a zero relative motion
/// or wheel turn), otherwise ending with [`Record::SYN_REPORT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The device that must emit the records.
    pub device: Device,
    /// The records, in order.
    pub records: Vec<Record>,
}

/// Turns [`InputEvent`]s into evdev records: the whole of the uinput backend except the device.
///
/// It keeps the wheel remainders and which keys and buttons are held (for
/// [`Translator::release_all`]), and never panics: events out of range are errors.
#[derive(Debug, Clone)]
pub struct Translator {
    /// Largest `ABS_X` and `ABS_Y` values of the absolute pointer.
    pointer_max: (i32, i32),
    wheel_x: NotchAccumulator,
    wheel_y: NotchAccumulator,
    /// Held keys and buttons, per device.
    held: BTreeSet<(Device, u16)>,
    pads_used: [bool; MAX_GAMEPADS as usize],
}

impl Translator {
    /// A translator for an absolute pointer of `pointer_size` (width, height) pixels.
    pub fn new(pointer_size: (u16, u16)) -> Translator {
        Translator {
            pointer_max: (
                i32::from(pointer_size.0.max(1)) - 1,
                i32::from(pointer_size.1.max(1)) - 1,
            ),
            wheel_x: NotchAccumulator::default(),
            wheel_y: NotchAccumulator::default(),
            held: BTreeSet::new(),
            pads_used: [false; MAX_GAMEPADS as usize],
        }
    }

    /// The records for one event.
    pub fn translate(&mut self, event: &InputEvent) -> Result<Translation, InjectError> {
        let mut records = Vec::with_capacity(5);
        let device = match event.kind {
            EventKind::Key { code, down } => {
                self.key(Device::KeyboardMouse, evdev_key(code), down, &mut records);
                Device::KeyboardMouse
            }
            EventKind::MouseMove { x, y } => {
                records.push(Record::new(
                    EV_ABS,
                    ABS_X,
                    i32::from(x).min(self.pointer_max.0),
                ));
                records.push(Record::new(
                    EV_ABS,
                    ABS_Y,
                    i32::from(y).min(self.pointer_max.1),
                ));
                Device::Pointer
            }
            EventKind::MouseMoveRel { dx, dy } => {
                push_nonzero(&mut records, REL_X, i32::from(dx));
                push_nonzero(&mut records, REL_Y, i32::from(dy));
                Device::KeyboardMouse
            }
            EventKind::Button { button, down } => {
                self.key(
                    Device::KeyboardMouse,
                    mouse_button(button),
                    down,
                    &mut records,
                );
                Device::KeyboardMouse
            }
            EventKind::Wheel { dx, dy } => {
                // The wire's dy is positive downwards (DOM); evdev's wheel is positive upwards.
                let notches_y = self.wheel_y.add(dy);
                let notches_x = self.wheel_x.add(dx);
                push_nonzero(&mut records, REL_WHEEL_HI_RES, -i32::from(dy));
                push_nonzero(&mut records, REL_HWHEEL_HI_RES, i32::from(dx));
                push_nonzero(&mut records, REL_WHEEL, -notches_y);
                push_nonzero(&mut records, REL_HWHEEL, notches_x);
                Device::KeyboardMouse
            }
            EventKind::GamepadButton { pad, button, value } => {
                let code = GAMEPAD_BUTTON_CODES
                    .get(usize::from(button))
                    .copied()
                    .ok_or_else(|| out_of_range(format!("gamepad button {button}")))?;
                let device = self.pad(pad)?;
                if let Some(&(_, axis)) = TRIGGERS.iter().find(|(b, _)| *b == button) {
                    records.push(Record::new(EV_ABS, axis, i32::from(value)));
                }
                self.key(device, code, value >= BUTTON_PRESSED_MIN, &mut records);
                device
            }
            EventKind::GamepadAxis { pad, axis, value } => {
                let code = GAMEPAD_AXIS_CODES
                    .get(usize::from(axis))
                    .copied()
                    .ok_or_else(|| out_of_range(format!("gamepad axis {axis}")))?;
                let device = self.pad(pad)?;
                let value = i32::from(value).clamp(-STICK_MAX, STICK_MAX);
                records.push(Record::new(EV_ABS, code, value));
                device
            }
            EventKind::Touch { .. } => {
                return Err(InjectError::Unsupported {
                    backend: BACKEND,
                    what: "touch events",
                });
            }
        };
        if !records.is_empty() {
            records.push(Record::SYN_REPORT);
        }
        Ok(Translation { device, records })
    }

    /// Records that release every held key and button and centre every used gamepad.
    pub fn release_all(&mut self) -> Vec<Translation> {
        let mut batches: Vec<Translation> = Vec::new();
        for (device, code) in std::mem::take(&mut self.held) {
            match batches.last_mut() {
                Some(batch) if batch.device == device => {
                    batch.records.push(Record::new(EV_KEY, code, 0));
                }
                _ => batches.push(Translation {
                    device,
                    records: vec![Record::new(EV_KEY, code, 0)],
                }),
            }
        }
        for pad in 0..MAX_GAMEPADS {
            if !std::mem::take(&mut self.pads_used[usize::from(pad)]) {
                continue;
            }
            let device = Device::Gamepad(pad);
            let axes = GAMEPAD_AXIS_CODES
                .iter()
                .chain(TRIGGERS.iter().map(|(_, axis)| axis))
                .map(|&axis| Record::new(EV_ABS, axis, 0));
            match batches.iter_mut().find(|batch| batch.device == device) {
                Some(batch) => batch.records.extend(axes),
                None => batches.push(Translation {
                    device,
                    records: axes.collect(),
                }),
            }
        }
        for batch in &mut batches {
            batch.records.push(Record::SYN_REPORT);
        }
        batches
    }

    fn key(&mut self, device: Device, code: u16, down: bool, records: &mut Vec<Record>) {
        records.push(Record::new(EV_KEY, code, i32::from(down)));
        if down {
            self.held.insert((device, code));
        } else {
            self.held.remove(&(device, code));
        }
    }

    /// Marks `pad` as used; call only once the event is known to be valid.
    fn pad(&mut self, pad: u8) -> Result<Device, InjectError> {
        let used = self
            .pads_used
            .get_mut(usize::from(pad))
            .ok_or_else(|| out_of_range(format!("gamepad {pad}")))?;
        *used = true;
        Ok(Device::Gamepad(pad))
    }
}

fn push_nonzero(records: &mut Vec<Record>, code: u16, value: i32) {
    if value != 0 {
        records.push(Record::new(EV_REL, code, value));
    }
}

fn out_of_range(what: String) -> InjectError {
    InjectError::Failed {
        backend: BACKEND,
        reason: format!("{what} is out of range"),
    }
}

const fn mouse_button(button: MouseButton) -> u16 {
    match button {
        MouseButton::Left => BTN_LEFT,
        MouseButton::Middle => BTN_MIDDLE,
        MouseButton::Right => BTN_RIGHT,
        MouseButton::Back => BTN_SIDE,
        MouseButton::Forward => BTN_EXTRA,
    }
}

/// Settings of the uinput backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UinputConfig {
    /// The uinput device node; `/dev/uinput` by default.
    pub path: PathBuf,
    /// Prefix of the device names, e.g. `"Stratus"` gives "Stratus keyboard and mouse".
    pub name: String,
    /// Width and height of the absolute pointer's range: the frame size in pixels.
    pub pointer_size: (u16, u16),
}

impl Default for UinputConfig {
    fn default() -> Self {
        UinputConfig {
            path: PathBuf::from("/dev/uinput"),
            name: "Stratus".to_owned(),
            pointer_size: (1920, 1080),
        }
    }
}

/// Injects input through virtual devices created with `/dev/uinput`.
#[derive(Debug)]
pub struct UinputInjector {
    config: UinputConfig,
    translator: Translator,
    keyboard_mouse: VirtualDevice,
    pointer: VirtualDevice,
    gamepads: [Option<VirtualDevice>; MAX_GAMEPADS as usize],
}

impl UinputInjector {
    /// Creates the keyboard and mouse and the absolute pointer devices (gamepads are created on
    /// their first event).
    ///
    /// Fails with [`InjectError::Unavailable`] when the uinput node is missing, not writable or
    /// not a uinput device, or the kernel refuses the devices.
    pub fn open(config: &UinputConfig) -> Result<Self, InjectError> {
        let create = |device| {
            VirtualDevice::create(&config.path, &DeviceSpec::for_device(device, config)).map_err(
                |error| match error {
                    InjectError::Failed { reason, .. } => InjectError::Unavailable {
                        backend: BACKEND,
                        reason,
                    },
                    other => other,
                },
            )
        };
        Ok(UinputInjector {
            config: config.clone(),
            translator: Translator::new(config.pointer_size),
            keyboard_mouse: create(Device::KeyboardMouse)?,
            pointer: create(Device::Pointer)?,
            gamepads: Default::default(),
        })
    }

    /// The `/dev/input/eventN` node of one of the devices, if it exists yet; useful in logs and
    /// for reading the events back.
    pub fn event_node(&self, device: Device) -> Option<PathBuf> {
        let virtual_device = match device {
            Device::KeyboardMouse => &self.keyboard_mouse,
            Device::Pointer => &self.pointer,
            Device::Gamepad(pad) => self.gamepads.get(usize::from(pad))?.as_ref()?,
        };
        virtual_device.event_node()
    }

    fn write(&mut self, batch: &Translation) -> Result<(), InjectError> {
        if batch.records.is_empty() {
            return Ok(());
        }
        let device = match batch.device {
            Device::KeyboardMouse => &mut self.keyboard_mouse,
            Device::Pointer => &mut self.pointer,
            Device::Gamepad(pad) => {
                let slot = self
                    .gamepads
                    .get_mut(usize::from(pad))
                    .ok_or_else(|| out_of_range(format!("gamepad {pad}")))?;
                match slot {
                    Some(device) => device,
                    None => slot.insert(VirtualDevice::create(
                        &self.config.path,
                        &DeviceSpec::for_device(batch.device, &self.config),
                    )?),
                }
            }
        };
        device.write(&batch.records)
    }
}

impl Injector for UinputInjector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        let batch = self.translator.translate(event)?;
        self.write(&batch)
    }

    fn release_all(&mut self) -> Result<(), InjectError> {
        let mut result = Ok(());
        for batch in self.translator.release_all() {
            // Release what can be released even if one device fails.
            if let Err(error) = self.write(&batch) {
                result = result.and(Err(error));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests;
