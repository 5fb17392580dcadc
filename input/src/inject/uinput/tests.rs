//! The translation from input events to evdev records, without the device.

use super::*;

fn ev(kind: EventKind) -> InputEvent {
    InputEvent {
        seq: 0,
        t_us: 0,
        kind,
    }
}

fn records(translator: &mut Translator, kind: EventKind) -> (Device, Vec<(u16, u16, i32)>) {
    let out = translator.translate(&ev(kind)).expect("translates");
    let list = out
        .records
        .iter()
        .map(|r| (r.event_type, r.code, r.value))
        .collect();
    (out.device, list)
}

const SYN: (u16, u16, i32) = (EV_SYN, SYN_REPORT, 0);

#[test]
fn evdev_keys_are_the_kernel_codes() {
    let known = [
        (KeyCode::KeyA, 30),
        (KeyCode::KeyZ, 44),
        (KeyCode::Digit1, 2),
        (KeyCode::Digit0, 11),
        (KeyCode::Enter, 28),
        (KeyCode::Escape, 1),
        (KeyCode::Space, 57),
        (KeyCode::ShiftLeft, 42),
        (KeyCode::ShiftRight, 54),
        (KeyCode::ArrowLeft, 105),
        (KeyCode::ArrowDown, 108),
        (KeyCode::F10, 68),
        (KeyCode::F11, 87),
        (KeyCode::F12, 88),
        (KeyCode::Numpad0, 82),
        (KeyCode::NumpadEnter, 96),
        (KeyCode::Delete, 111),
        (KeyCode::MetaLeft, 125),
        (KeyCode::MetaRight, 126),
    ];
    for (key, code) in known {
        assert_eq!(evdev_key(key), code, "{key:?}");
    }
    let codes: BTreeSet<u16> = KeyCode::ALL.iter().map(|&k| evdev_key(k)).collect();
    assert_eq!(
        codes.len(),
        KeyCode::ALL.len(),
        "two keys share an evdev code"
    );
    // All below BTN_MISC (0x100), so none collides with a button.
    assert!(codes.iter().all(|&c| (1..0x100).contains(&c)), "{codes:?}");
    // udev tags a device as a keyboard only if it has KEY_ESC..=KEY_S (1..=31).
    assert!((1..=31).all(|c| codes.contains(&c)));
}

#[test]
fn keys_and_buttons_press_and_release() {
    let mut t = Translator::new((1280, 720));
    let down = EventKind::Key {
        code: KeyCode::KeyA,
        down: true,
    };
    assert_eq!(
        records(&mut t, down),
        (Device::KeyboardMouse, vec![(EV_KEY, 30, 1), SYN])
    );
    let up = EventKind::Key {
        code: KeyCode::KeyA,
        down: false,
    };
    assert_eq!(records(&mut t, up).1, vec![(EV_KEY, 30, 0), SYN]);
    let buttons = [
        (MouseButton::Left, BTN_LEFT),
        (MouseButton::Right, BTN_RIGHT),
        (MouseButton::Middle, BTN_MIDDLE),
        (MouseButton::Back, BTN_SIDE),
        (MouseButton::Forward, BTN_EXTRA),
    ];
    for (button, code) in buttons {
        let kind = EventKind::Button { button, down: true };
        assert_eq!(
            records(&mut t, kind),
            (Device::KeyboardMouse, vec![(EV_KEY, code, 1), SYN])
        );
    }
    assert_eq!((BTN_LEFT, BTN_RIGHT, BTN_EXTRA), (0x110, 0x111, 0x114));
}

#[test]
fn motion_relative_and_absolute() {
    let mut t = Translator::new((1280, 720));
    let rel = EventKind::MouseMoveRel { dx: 5, dy: -3 };
    assert_eq!(
        records(&mut t, rel),
        (
            Device::KeyboardMouse,
            vec![(EV_REL, REL_X, 5), (EV_REL, REL_Y, -3), SYN]
        )
    );
    let rel = EventKind::MouseMoveRel { dx: 0, dy: 7 };
    assert_eq!(records(&mut t, rel).1, vec![(EV_REL, REL_Y, 7), SYN]);
    let none = EventKind::MouseMoveRel { dx: 0, dy: 0 };
    assert_eq!(records(&mut t, none).1, vec![], "nothing to report, no SYN");
    let abs = EventKind::MouseMove { x: 640, y: 360 };
    assert_eq!(
        records(&mut t, abs),
        (
            Device::Pointer,
            vec![(EV_ABS, ABS_X, 640), (EV_ABS, ABS_Y, 360), SYN]
        )
    );
    let beyond = EventKind::MouseMove {
        x: u16::MAX,
        y: 720,
    };
    assert_eq!(
        records(&mut t, beyond).1,
        vec![(EV_ABS, ABS_X, 1279), (EV_ABS, ABS_Y, 719), SYN],
        "clamped to the configured range"
    );
    let mut degenerate = Translator::new((0, 0));
    let abs = EventKind::MouseMove { x: 3, y: 4 };
    assert_eq!(
        records(&mut degenerate, abs).1,
        vec![(EV_ABS, ABS_X, 0), (EV_ABS, ABS_Y, 0), SYN]
    );
}

#[test]
fn wheel_sends_hi_res_units_and_whole_notches() {
    let mut t = Translator::new((1280, 720));
    // Down one notch: evdev's wheel is positive upwards, the wire's dy downwards.
    let down = EventKind::Wheel { dx: 0, dy: 120 };
    assert_eq!(
        records(&mut t, down).1,
        vec![
            (EV_REL, REL_WHEEL_HI_RES, -120),
            (EV_REL, REL_WHEEL, -1),
            SYN
        ]
    );
    let half_up = EventKind::Wheel { dx: 0, dy: -60 };
    assert_eq!(
        records(&mut t, half_up).1,
        vec![(EV_REL, REL_WHEEL_HI_RES, 60), SYN],
        "half a notch: hi-res only"
    );
    assert_eq!(
        records(&mut t, half_up).1,
        vec![(EV_REL, REL_WHEEL_HI_RES, 60), (EV_REL, REL_WHEEL, 1), SYN]
    );
    let right = EventKind::Wheel { dx: 240, dy: 0 };
    assert_eq!(
        records(&mut t, right).1,
        vec![
            (EV_REL, REL_HWHEEL_HI_RES, 240),
            (EV_REL, REL_HWHEEL, 2),
            SYN
        ]
    );
    assert_eq!(records(&mut t, EventKind::Wheel { dx: 0, dy: 0 }).1, vec![]);
}

#[test]
fn gamepad_buttons_axes_and_triggers() {
    let mut t = Translator::new((1280, 720));
    let press = |button, value| EventKind::GamepadButton {
        pad: 1,
        button,
        value,
    };
    assert_eq!(
        records(&mut t, press(0, u16::MAX)),
        (Device::Gamepad(1), vec![(EV_KEY, BTN_SOUTH, 1), SYN])
    );
    // Left and top face buttons: BTN_X (= BTN_NORTH) and BTN_Y (= BTN_WEST), as xpad sends.
    assert_eq!(records(&mut t, press(2, u16::MAX)).1[0], (EV_KEY, 0x133, 1));
    assert_eq!(records(&mut t, press(3, u16::MAX)).1[0], (EV_KEY, 0x134, 1));
    assert_eq!(records(&mut t, press(16, 0)).1[0], (EV_KEY, BTN_MODE, 0));
    assert_eq!(records(&mut t, press(12, 1)).1[0], (EV_KEY, BTN_DPAD_UP, 0));
    assert_eq!(
        records(&mut t, press(6, 0x7fff)).1,
        vec![(EV_ABS, ABS_Z, 0x7fff), (EV_KEY, BTN_TL2, 0), SYN],
        "a trigger below half travel is analog only"
    );
    assert_eq!(
        records(&mut t, press(7, 0x8000)).1,
        vec![(EV_ABS, ABS_RZ, 0x8000), (EV_KEY, BTN_TR2, 1), SYN]
    );
    let axis = |axis, value| EventKind::GamepadAxis {
        pad: 3,
        axis,
        value,
    };
    assert_eq!(
        records(&mut t, axis(0, 100)),
        (Device::Gamepad(3), vec![(EV_ABS, ABS_X, 100), SYN])
    );
    assert_eq!(
        records(&mut t, axis(1, i16::MIN)).1[0],
        (EV_ABS, ABS_Y, -32767)
    );
    assert_eq!(records(&mut t, axis(2, 1)).1[0], (EV_ABS, ABS_RX, 1));
    assert_eq!(
        records(&mut t, axis(3, 32767)).1[0],
        (EV_ABS, ABS_RY, 32767)
    );
}

#[test]
fn out_of_range_and_unsupported_events_are_errors() {
    let mut t = Translator::new((1280, 720));
    let bad = [
        EventKind::GamepadButton {
            pad: MAX_GAMEPADS,
            button: 0,
            value: 1,
        },
        EventKind::GamepadButton {
            pad: 0,
            button: crate::GAMEPAD_BUTTONS,
            value: 1,
        },
        EventKind::GamepadAxis {
            pad: 0,
            axis: crate::GAMEPAD_AXES,
            value: 1,
        },
    ];
    for kind in bad {
        let error = t.translate(&ev(kind)).expect_err("out of range");
        assert!(
            matches!(&error, InjectError::Failed { reason, .. } if reason.contains("out of range")),
            "{error}"
        );
    }
    let touch = EventKind::Touch {
        id: 0,
        phase: crate::TouchPhase::Start,
        x: 1,
        y: 1,
    };
    assert!(matches!(
        t.translate(&ev(touch)),
        Err(InjectError::Unsupported {
            backend: "uinput",
            what: "touch events"
        })
    ));
    assert!(
        t.release_all().is_empty(),
        "the failed events touched nothing"
    );
}

#[test]
fn release_all_releases_what_is_held_and_centres_pads() {
    let mut t = Translator::new((1280, 720));
    let key = |code, down| EventKind::Key { code, down };
    for kind in [
        key(KeyCode::ShiftLeft, true),
        key(KeyCode::KeyW, true),
        key(KeyCode::KeyW, false),
        EventKind::Button {
            button: MouseButton::Left,
            down: true,
        },
        EventKind::GamepadButton {
            pad: 2,
            button: 0,
            value: u16::MAX,
        },
    ] {
        t.translate(&ev(kind)).expect("translates");
    }
    let batches = t.release_all();
    let kbd = Translation {
        device: Device::KeyboardMouse,
        records: vec![
            Record::new(EV_KEY, 42, 0),
            Record::new(EV_KEY, BTN_LEFT, 0),
            Record::SYN_REPORT,
        ],
    };
    let pad = Translation {
        device: Device::Gamepad(2),
        records: vec![
            Record::new(EV_KEY, BTN_SOUTH, 0),
            Record::new(EV_ABS, ABS_X, 0),
            Record::new(EV_ABS, ABS_Y, 0),
            Record::new(EV_ABS, ABS_RX, 0),
            Record::new(EV_ABS, ABS_RY, 0),
            Record::new(EV_ABS, ABS_Z, 0),
            Record::new(EV_ABS, ABS_RZ, 0),
            Record::SYN_REPORT,
        ],
    };
    assert_eq!(batches, vec![kbd, pad]);
    assert!(t.release_all().is_empty(), "nothing held any more");
}
