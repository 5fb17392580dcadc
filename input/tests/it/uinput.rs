//! uinput injection: the errors that name the fix, and, where `/dev/uinput` exists, a round trip
//! through real kernel devices read back from their `/dev/input/eventN` nodes.

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use input::inject::uinput::{Device, Record, Translator};
use input::inject::{InjectError, Injector, UinputConfig, UinputInjector};
use input::{EventKind, InputEvent, KeyCode, MouseButton};

const TIMEOUT: Duration = Duration::from_secs(5);

fn unavailable_reason(config: &UinputConfig) -> String {
    match UinputInjector::open(config) {
        Err(InjectError::Unavailable { backend, reason }) => {
            assert_eq!(backend, "uinput");
            reason
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn a_missing_node_is_unavailable_and_says_how_to_fix_it() {
    let config = UinputConfig {
        path: "/nonexistent/uinput".into(),
        ..UinputConfig::default()
    };
    let reason = unavailable_reason(&config);
    assert!(
        reason.contains("/nonexistent/uinput does not exist") && reason.contains("modprobe uinput"),
        "{reason}"
    );
    if Path::new("/dev/uinput").exists() {
        eprintln!("/dev/uinput exists here: the default path is covered by the round trip");
    } else {
        let reason = unavailable_reason(&UinputConfig::default());
        assert!(
            reason.contains("/dev/uinput does not exist (load the uinput module: modprobe uinput)"),
            "{reason}"
        );
    }
}

#[test]
fn a_node_that_is_not_uinput_is_unavailable() {
    let config = UinputConfig {
        path: "/dev/null".into(),
        ..UinputConfig::default()
    };
    let reason = unavailable_reason(&config);
    assert!(
        reason.contains("/dev/null is not a uinput device"),
        "{reason}"
    );
}

/// Reads `input_event`s from an evdev node until `count` arrived (bounded).
fn read_records(node: &Path, file: &mut std::fs::File, count: usize) -> Vec<Record> {
    let size = std::mem::size_of::<libc::input_event>();
    let mut records = Vec::new();
    let mut buffer = vec![0u8; size * 64];
    let deadline = Instant::now() + TIMEOUT;
    while records.len() < count {
        assert!(
            Instant::now() < deadline,
            "{}: only {records:?} within {TIMEOUT:?}",
            node.display()
        );
        match file.read(&mut buffer) {
            Ok(n) => {
                for event in buffer[..n].chunks_exact(size) {
                    let tail = &event[size - 8..];
                    records.push(Record {
                        event_type: u16::from_ne_bytes([tail[0], tail[1]]),
                        code: u16::from_ne_bytes([tail[2], tail[3]]),
                        value: i32::from_ne_bytes([tail[4], tail[5], tail[6], tail[7]]),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("reading {}: {e}", node.display()),
        }
    }
    records
}

fn open_node(injector: &UinputInjector, device: Device) -> (PathBuf, std::fs::File) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(node) = injector.event_node(device)
            && let Ok(file) = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&node)
        {
            return (node, file);
        }
        assert!(Instant::now() < deadline, "no event node for {device:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn events_come_out_of_the_kernel_devices_as_translated() {
    if !Path::new("/dev/uinput").exists() {
        eprintln!(
            "skipping the uinput round trip: /dev/uinput does not exist here (modprobe uinput)"
        );
        return;
    }
    let config = UinputConfig {
        name: format!("Stratus test {}", std::process::id()),
        pointer_size: (1280, 720),
        ..UinputConfig::default()
    };
    let mut injector = match UinputInjector::open(&config) {
        Ok(injector) => injector,
        Err(InjectError::Unavailable { reason, .. }) if reason.contains("permission denied") => {
            eprintln!("skipping the uinput round trip: {reason}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let mut reference = Translator::new(config.pointer_size);
    let ev = |kind| InputEvent {
        seq: 0,
        t_us: 0,
        kind,
    };

    let (node, mut file) = open_node(&injector, Device::KeyboardMouse);
    let kinds = [
        EventKind::Key {
            code: KeyCode::KeyA,
            down: true,
        },
        EventKind::Key {
            code: KeyCode::KeyA,
            down: false,
        },
        EventKind::Button {
            button: MouseButton::Right,
            down: true,
        },
        EventKind::Button {
            button: MouseButton::Right,
            down: false,
        },
        EventKind::MouseMoveRel { dx: 7, dy: -3 },
        EventKind::Wheel { dx: 0, dy: 180 },
        EventKind::Wheel { dx: -120, dy: 60 },
    ];
    let mut expected = Vec::new();
    for kind in kinds {
        injector.inject(&ev(kind)).expect("inject");
        let batch = reference.translate(&ev(kind)).expect("translate");
        assert_eq!(batch.device, Device::KeyboardMouse);
        expected.extend(batch.records);
    }
    assert_eq!(read_records(&node, &mut file, expected.len()), expected);

    let (node, mut file) = open_node(&injector, Device::Pointer);
    let kind = EventKind::MouseMove { x: 640, y: 360 };
    injector.inject(&ev(kind)).expect("inject");
    let expected = reference.translate(&ev(kind)).expect("translate").records;
    assert_eq!(read_records(&node, &mut file, expected.len()), expected);

    // The gamepad appears on its first event; what follows is read back from it.
    let first = EventKind::GamepadAxis {
        pad: 1,
        axis: 0,
        value: 1000,
    };
    injector.inject(&ev(first)).expect("inject");
    reference.translate(&ev(first)).expect("translate");
    let (node, mut file) = open_node(&injector, Device::Gamepad(1));
    let kinds = [
        EventKind::GamepadButton {
            pad: 1,
            button: 0,
            value: u16::MAX,
        },
        EventKind::GamepadButton {
            pad: 1,
            button: 7,
            value: 40000,
        },
        EventKind::GamepadAxis {
            pad: 1,
            axis: 3,
            value: -20000,
        },
    ];
    let mut expected = Vec::new();
    for kind in kinds {
        injector.inject(&ev(kind)).expect("inject");
        expected.extend(reference.translate(&ev(kind)).expect("translate").records);
    }
    assert_eq!(read_records(&node, &mut file, expected.len()), expected);

    // Releasing lets go of the pad's buttons and centres it; the kernel passes on only the
    // records that change something (ABS_Y, ABS_RX and ABS_Z were already 0).
    injector.release_all().expect("release");
    let (key, abs) = (input::inject::uinput::EV_KEY, input::inject::uinput::EV_ABS);
    let released = |event_type, code| Record {
        event_type,
        code,
        value: 0,
    };
    let expected = [
        released(key, 0x130), // BTN_SOUTH
        released(key, 0x139), // BTN_TR2
        released(abs, 0x00),  // ABS_X
        released(abs, 0x04),  // ABS_RY
        released(abs, 0x05),  // ABS_RZ
        Record::SYN_REPORT,
    ];
    assert_eq!(read_records(&node, &mut file, expected.len()), expected);
}
