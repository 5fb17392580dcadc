//! XTest injection observed by a real X client.
//!
//! Each test starts its own Xvfb, maps a window of its own at a known position with the
//! keyboard focus, injects through [`XTestInjector`] and asserts what the window receives:
//! keycodes whose keysyms are the injected keys, buttons (wheel notches included), and pointer
//! positions relative to the window and the root. Every wait is bounded.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use input::inject::uinput::evdev_key;
use input::inject::{InjectError, Injector, XTestInjector};
use input::{EventKind, InputEvent, KeyCode, MouseButton, TouchPhase};
use x11rb::connection::Connection as _;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    AutoRepeatMode, ChangeKeyboardControlAux, ConnectionExt as _, CreateWindowAux, EventMask,
    InputFocus, KeyButMask, Keycode, Keysym, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// The observer window's place on the 1280×720 screen; not at the origin, so window and root
/// coordinates differ.
const WIN_X: i16 = 100;
const WIN_Y: i16 = 50;
const WIN_W: u16 = 800;
const WIN_H: u16 = 500;
/// Bound on every wait for the X server.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An Xvfb started by a test, killed when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    /// Starts `Xvfb -displayfd 1`, which picks a free display number itself (no race with
    /// other tests or sessions) and prints it once it accepts connections. `None` when Xvfb is
    /// not installed, after saying so.
    fn start(extra_args: &[&str]) -> Option<Xvfb> {
        let spawned = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x720x24",
                "-nolisten",
                "tcp",
            ])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipping: Xvfb is not installed (apt-get install xvfb)");
                return None;
            }
            Err(e) => panic!("cannot start Xvfb: {e}"),
        };
        // Drain both pipes so Xvfb never blocks on a full one; keep the end of stderr for the
        // failure message.
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = stderr.read(&mut chunk) {
                    let mut tail = tail.lock().expect("stderr tail lock");
                    tail.extend_from_slice(&chunk[..n]);
                    let excess = tail.len().saturating_sub(4096);
                    tail.drain(..excess);
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let number = rx
            .recv_timeout(TIMEOUT)
            .ok()
            .and_then(|line| line.trim().parse::<u32>().ok());
        let Some(number) = number else {
            let _ = child.kill();
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            let tail = stderr_tail.lock().expect("stderr tail lock");
            panic!(
                "Xvfb did not report a display within {TIMEOUT:?}; its stderr ends with:\n{}",
                String::from_utf8_lossy(&tail)
            );
        };
        let xvfb = Xvfb {
            child,
            display: format!(":{number}"),
        };
        let socket = format!("/tmp/.X11-unix/X{number}");
        wait_until(|| Path::new(&socket).exists(), "the Xvfb socket to appear");
        Some(xvfb)
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the observer window received, reduced to what the tests compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Key {
        down: bool,
        keycode: Keycode,
        shift: bool,
    },
    Button {
        down: bool,
        button: u8,
        at: (i16, i16),
    },
    Motion {
        at: (i16, i16),
        root: (i16, i16),
    },
}

/// A client with a mapped, focused window that records the input it receives.
struct Observer {
    conn: RustConnection,
    window: Window,
    min_keycode: Keycode,
    keysyms_per_keycode: usize,
    keysyms: Vec<Keysym>,
}

impl Observer {
    fn open(display: &str) -> Observer {
        let (conn, screen) = x11rb::connect(Some(display)).expect("observer connects");
        let root = conn.setup().roots[screen].root;
        let window = conn.generate_id().expect("window id");
        let mask = EventMask::KEY_PRESS
            | EventMask::KEY_RELEASE
            | EventMask::BUTTON_PRESS
            | EventMask::BUTTON_RELEASE
            | EventMask::POINTER_MOTION;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            root,
            WIN_X,
            WIN_Y,
            WIN_W,
            WIN_H,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &CreateWindowAux::new().override_redirect(1).event_mask(mask),
        )
        .expect("create window");
        conn.map_window(window).expect("map window");
        // Without this a key held past the repeat delay (a slow, busy machine) would add
        // release/press pairs that the exact comparisons below would trip over.
        conn.change_keyboard_control(
            &ChangeKeyboardControlAux::new().auto_repeat_mode(AutoRepeatMode::OFF),
        )
        .expect("autorepeat off");
        conn.set_input_focus(InputFocus::PARENT, window, x11rb::CURRENT_TIME)
            .expect("set focus");
        let focus = conn
            .get_input_focus()
            .expect("get focus")
            .reply()
            .expect("focus reply");
        assert_eq!(focus.focus, window, "the window has the keyboard focus");
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let mapping = conn
            .get_keyboard_mapping(min, max - min + 1)
            .expect("keyboard mapping")
            .reply()
            .expect("keyboard mapping reply");
        Observer {
            conn,
            window,
            min_keycode: min,
            keysyms_per_keycode: usize::from(mapping.keysyms_per_keycode),
            keysyms: mapping.keysyms,
        }
    }

    /// The keysyms of `keycode`, in column order, from the observer's own mapping.
    fn keysyms_of(&self, keycode: Keycode) -> &[Keysym] {
        let row = usize::from(keycode - self.min_keycode) * self.keysyms_per_keycode;
        &self.keysyms[row..row + self.keysyms_per_keycode]
    }

    /// Waits (bounded) for `count` input events, then makes a round trip and collects any
    /// further ones, so that extra events show up in the result too.
    fn collect(&self, count: usize) -> Vec<Seen> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + TIMEOUT;
        while seen.len() < count && Instant::now() < deadline {
            match self.conn.poll_for_event().expect("observer connection") {
                Some(event) => seen.extend(self.reduce(event)),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        self.conn
            .get_input_focus()
            .expect("round trip")
            .reply()
            .expect("round trip reply");
        while let Some(event) = self.conn.poll_for_event().expect("observer connection") {
            seen.extend(self.reduce(event));
        }
        seen
    }

    fn reduce(&self, event: Event) -> Option<Seen> {
        let shift = |state: KeyButMask| state.contains(KeyButMask::SHIFT);
        let seen = match event {
            Event::KeyPress(e) | Event::KeyRelease(e) if e.event == self.window => Seen::Key {
                down: matches!(event, Event::KeyPress(_)),
                keycode: e.detail,
                shift: shift(e.state),
            },
            Event::ButtonPress(e) | Event::ButtonRelease(e) if e.event == self.window => {
                Seen::Button {
                    down: matches!(event, Event::ButtonPress(_)),
                    button: e.detail,
                    at: (e.event_x, e.event_y),
                }
            }
            Event::MotionNotify(e) if e.event == self.window => Seen::Motion {
                at: (e.event_x, e.event_y),
                root: (e.root_x, e.root_y),
            },
            Event::Error(e) => panic!("X error on the observer: {e:?}"),
            _ => return None,
        };
        Some(seen)
    }
}

fn ev(kind: EventKind) -> InputEvent {
    InputEvent {
        seq: 0,
        t_us: 0,
        kind,
    }
}

/// Injects `kinds`, waits until the server has processed them, and returns what the window saw
/// (waiting for at least `expected` events).
fn run(
    injector: &mut XTestInjector,
    observer: &Observer,
    kinds: &[EventKind],
    expected: usize,
) -> Vec<Seen> {
    for &kind in kinds {
        injector
            .inject(&ev(kind))
            .unwrap_or_else(|e| panic!("injecting {kind:?}: {e}"));
    }
    injector.sync().expect("injected events processed");
    observer.collect(expected)
}

fn key(code: KeyCode, down: bool) -> EventKind {
    EventKind::Key { code, down }
}

fn button(button: MouseButton, down: bool) -> EventKind {
    EventKind::Button { button, down }
}

/// Press and release of core button `number`, at window position `at`.
fn click(number: u8, at: (i16, i16)) -> [Seen; 2] {
    [true, false].map(|down| Seen::Button {
        down,
        button: number,
        at,
    })
}

#[test]
fn keys_reach_the_focused_window_as_their_keysyms() {
    let Some(xvfb) = Xvfb::start(&[]) else { return };
    let observer = Observer::open(&xvfb.display);
    let mut injector = XTestInjector::connect(Some(&xvfb.display)).expect("xtest connects");
    assert_eq!(injector.display(), xvfb.display);
    assert_eq!(injector.screen_size(), (1280, 720));

    // The keysym in column 0 (unshifted) of the keycode the window receives.
    let plain = [
        (KeyCode::KeyA, 0x61),        // XK_a
        (KeyCode::Enter, 0xFF0D),     // XK_Return
        (KeyCode::ShiftLeft, 0xFFE1), // XK_Shift_L
        (KeyCode::ArrowLeft, 0xFF51), // XK_Left
        (KeyCode::Digit1, 0x31),      // XK_1
        (KeyCode::F12, 0xFFC9),       // XK_F12
        (KeyCode::Space, 0x20),       // XK_space
    ];
    for (code, keysym) in plain {
        let seen = run(
            &mut injector,
            &observer,
            &[key(code, true), key(code, false)],
            2,
        );
        let keycode = injector.keycode(code).expect("key has a keycode");
        // An event's state is the modifiers just before it: Shift shows on Shift's release.
        let expect = [true, false].map(|down| Seen::Key {
            down,
            keycode,
            shift: !down && code == KeyCode::ShiftLeft,
        });
        assert_eq!(seen, expect, "{code:?}");
        assert_eq!(observer.keysyms_of(keycode)[0], keysym, "{code:?}");
    }

    // The X server applies Shift itself: KeyA with ShiftLeft held arrives with the Shift state.
    let a = injector.keycode(KeyCode::KeyA).expect("a");
    let shift = injector.keycode(KeyCode::ShiftLeft).expect("shift");
    let kinds = [
        key(KeyCode::ShiftLeft, true),
        key(KeyCode::KeyA, true),
        key(KeyCode::KeyA, false),
        key(KeyCode::ShiftLeft, false),
    ];
    let seen = run(&mut injector, &observer, &kinds, 4);
    let k = |down, keycode, shift| Seen::Key {
        down,
        keycode,
        shift,
    };
    let expect = [
        k(true, shift, false),
        k(true, a, true),
        k(false, a, true),
        k(false, shift, true),
    ];
    assert_eq!(seen, expect);

    // Every key of the table types its keysym, and (with the evdev XKB rules Xvfb uses) sits
    // on keycode evdev + 8: a cross-check of the uinput backend's HID → evdev table.
    let mut mismatches = Vec::new();
    for &code in KeyCode::ALL {
        let keycode = injector.keycode(code).expect("every key has a keycode");
        if !observer.keysyms_of(keycode).contains(&code.x11_keysym()) {
            mismatches.push(format!("{code:?}: keycode {keycode} lacks its keysym"));
        }
        if u16::from(keycode) != evdev_key(code) + 8 {
            mismatches.push(format!(
                "{code:?}: keycode {keycode}, evdev {}",
                evdev_key(code)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // Keys still held are released by release_all, and by dropping the injector.
    let control = injector.keycode(KeyCode::ControlLeft).expect("control");
    let w = injector.keycode(KeyCode::KeyW).expect("w");
    let kinds = [key(KeyCode::ControlLeft, true), key(KeyCode::KeyW, true)];
    assert_eq!(run(&mut injector, &observer, &kinds, 2).len(), 2);
    injector.release_all().expect("release");
    injector.sync().expect("sync");
    let mut released = observer.collect(2);
    released.sort();
    let mut expect = vec![k(false, control, false), k(false, w, false)];
    expect.sort();
    assert_eq!(released, expect);

    let q = injector.keycode(KeyCode::KeyQ).expect("q");
    assert_eq!(
        run(&mut injector, &observer, &[key(KeyCode::KeyQ, true)], 1).len(),
        1
    );
    drop(injector);
    assert_eq!(
        observer.collect(1),
        [k(false, q, false)],
        "dropping releases"
    );
}

#[test]
fn pointer_motion_buttons_and_wheel_reach_the_window() {
    let Some(xvfb) = Xvfb::start(&[]) else { return };
    let observer = Observer::open(&xvfb.display);
    let mut injector = XTestInjector::connect(Some(&xvfb.display)).expect("xtest connects");

    // Absolute motion is in root (screen) pixels.
    let seen = run(
        &mut injector,
        &observer,
        &[EventKind::MouseMove { x: 300, y: 200 }],
        1,
    );
    let at = (300 - WIN_X, 200 - WIN_Y);
    assert_eq!(
        seen,
        [Seen::Motion {
            at,
            root: (300, 200)
        }]
    );

    // Relative motion moves from there.
    let seen = run(
        &mut injector,
        &observer,
        &[EventKind::MouseMoveRel { dx: 15, dy: -7 }],
        1,
    );
    let at = (315 - WIN_X, 193 - WIN_Y);
    assert_eq!(
        seen,
        [Seen::Motion {
            at,
            root: (315, 193)
        }]
    );
    let seen = run(
        &mut injector,
        &observer,
        &[EventKind::MouseMoveRel { dx: 0, dy: 0 }],
        0,
    );
    assert_eq!(seen, [], "a zero relative motion is no event");

    // Buttons: left 1, middle 2, right 3, back 8, forward 9.
    for (mouse, number) in [
        (MouseButton::Left, 1),
        (MouseButton::Middle, 2),
        (MouseButton::Right, 3),
        (MouseButton::Back, 8),
        (MouseButton::Forward, 9),
    ] {
        let kinds = [button(mouse, true), button(mouse, false)];
        let seen = run(&mut injector, &observer, &kinds, 2);
        assert_eq!(seen, click(number, at), "{mouse:?}");
    }

    // One wheel notch is one click of button 4 (up), 5 (down), 6 (left) or 7 (right).
    let wheel = |dx, dy| EventKind::Wheel { dx, dy };
    for (dx, dy, number) in [(0, 120, 5), (0, -120, 4), (120, 0, 7), (-120, 0, 6)] {
        let seen = run(&mut injector, &observer, &[wheel(dx, dy)], 2);
        assert_eq!(seen, click(number, at), "wheel ({dx}, {dy})");
    }
    let seen = run(&mut injector, &observer, &[wheel(0, 360)], 6);
    assert_eq!(seen, [click(5, at), click(5, at), click(5, at)].concat());

    // Half a notch clicks nothing until the second half arrives. The left click after it is a
    // marker: it must be the very next thing the window sees.
    let left = [
        button(MouseButton::Left, true),
        button(MouseButton::Left, false),
    ];
    let seen = run(
        &mut injector,
        &observer,
        &[wheel(0, 60), left[0], left[1]],
        2,
    );
    assert_eq!(seen, click(1, at), "no wheel click for half a notch");
    let seen = run(&mut injector, &observer, &[wheel(0, 60)], 2);
    assert_eq!(seen, click(5, at), "the second half completes the notch");
    let seen = run(
        &mut injector,
        &observer,
        &[wheel(0, -60), left[0], left[1]],
        2,
    );
    assert_eq!(seen, click(1, at));
    let seen = run(&mut injector, &observer, &[wheel(0, -60)], 2);
    assert_eq!(seen, click(4, at));

    // A button still held is released by release_all.
    let seen = run(
        &mut injector,
        &observer,
        &[button(MouseButton::Right, true)],
        1,
    );
    assert_eq!(seen, click(3, at)[..1]);
    injector.release_all().expect("release");
    injector.sync().expect("sync");
    assert_eq!(observer.collect(1), click(3, at)[1..]);

    // Gamepads and touch are not for XTest; the injector keeps working afterwards.
    let pad = EventKind::GamepadButton {
        pad: 0,
        button: 0,
        value: u16::MAX,
    };
    let touch = EventKind::Touch {
        id: 0,
        phase: TouchPhase::Start,
        x: 10,
        y: 10,
    };
    for (kind, what) in [(pad, "gamepad events"), (touch, "touch events")] {
        match injector.inject(&ev(kind)) {
            Err(InjectError::Unsupported { backend, what: w }) => {
                assert_eq!((backend, w), ("xtest", what));
            }
            other => panic!("{kind:?}: expected unsupported, got {other:?}"),
        }
    }
    let seen = run(&mut injector, &observer, &left, 2);
    assert_eq!(seen, click(1, at));
}

#[test]
fn a_display_without_a_server_is_unavailable_and_named() {
    // Start at :189 and take the first number with neither a socket nor a lock file.
    let display = (189..=199)
        .chain(90..189)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .map(|n| format!(":{n}"))
        .expect("a free display number in 90..=199");
    match XTestInjector::connect(Some(&display)) {
        Err(InjectError::Unavailable { backend, reason }) => {
            assert_eq!(backend, "xtest");
            assert!(
                reason.contains(&format!("cannot open X display {display}")),
                "{reason}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn a_display_without_xtest_is_unavailable() {
    let Some(xvfb) = Xvfb::start(&["-extension", "XTEST"]) else {
        return;
    };
    match XTestInjector::connect(Some(&xvfb.display)) {
        Err(InjectError::Unavailable { backend, reason }) => {
            assert_eq!(backend, "xtest");
            assert!(
                reason.contains(&format!(
                    "X display {} has no XTEST extension",
                    xvfb.display
                )),
                "{reason}"
            );
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
}
