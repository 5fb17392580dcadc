//! XTest injection into an X display: [`XTestInjector`].
//!
//! The XTEST extension's `FakeInput` request makes the X server behave as if a real device had
//! produced the event: it goes through the server's keymap, focus and grabs exactly like
//! hardware input (without pointer acceleration), and reaches only that display.
//!
//! # Mapping
//!
//! - Keys: [`KeyCode::x11_keysym`] names the key; the keycode is looked up in the server's own
//!   keyboard mapping (`GetKeyboardMapping`): the lowest keycode that has the keysym in the
//!   first group (columns 0 and 1), else the first found scanning the other columns in order.
//!   Preferring column 0 outright would be wrong: the evdev keymap puts `KP_Decimal` unshifted
//!   on the rarely present keypad-comma key (keycode 129) and shifted on the keypad's own
//!   decimal key (91). The table is cached and rebuilt after a `MappingNotify`. A keysym that no keycode produces is an [`InjectError::Failed`] naming the
//!   key: remapping a spare keycode would change the keymap every other client of the display
//!   sees, so that is left to whoever configures the session's keymap.
//! - Absolute motion: root-window coordinates; the caller passes frame pixels, which are the
//!   session display's screen pixels.
//! - Relative motion: `MotionNotify` with detail 1 (relative).
//! - Buttons: left 1, middle 2, right 3, back 8, forward 9.
//! - Wheel: 1/120 notch units are accumulated per axis (see [`crate::inject`]); each whole notch
//!   is a click (press and release) of button 4 (up), 5 (down), 6 (left) or 7 (right).
//! - Gamepads and touch: [`InjectError::Unsupported`] (core X has no such devices; use uinput).
//!
//! # Flushing and errors
//!
//! Each [`Injector::inject`] call writes its requests and flushes them: one small write per
//! event, because batching would add the batch interval to every event's latency. Requests are
//! not individually checked (that would cost a round trip per event); an X error the server
//! sends back is reported by the next call as [`InjectError::Failed`], and [`XTestInjector::sync`]
//! waits until the server has processed everything sent so far.
//!
//! The X server does not release keys or buttons a departed XTest client left pressed, so the
//! injector remembers what it holds down and releases it in [`Injector::release_all`] and when
//! dropped; dropping waits for one round trip, because a server may discard requests it has not
//! read yet when it sees the connection close.

use std::collections::{BTreeSet, HashMap};

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, ConnectionExt as _, KEY_PRESS_EVENT,
    KEY_RELEASE_EVENT, Keycode, Keysym, MOTION_NOTIFY_EVENT, Mapping, Window,
};
use x11rb::protocol::xtest::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use x11rb::x11_utils::X11Error;

use super::{InjectError, Injector, NotchAccumulator};
use crate::{EventKind, InputEvent, KeyCode, MouseButton};

/// The backend name in errors and [`Injector::name`].
pub(crate) const BACKEND: &str = "xtest";

/// `time` argument of `FakeInput`: deliver now.
const CURRENT_TIME: u32 = 0;
/// `deviceid` argument of `FakeInput`: the core devices (no XInput device).
const CORE_DEVICE: u8 = 0;
/// `detail` of a `MotionNotify` fake input whose coordinates are relative.
const RELATIVE: u8 = 1;
/// `detail` of a `MotionNotify` fake input whose coordinates are absolute.
const ABSOLUTE: u8 = 0;

/// Core X pointer buttons for the wheel, per direction.
const WHEEL_UP: u8 = 4;
const WHEEL_DOWN: u8 = 5;
const WHEEL_LEFT: u8 = 6;
const WHEEL_RIGHT: u8 = 7;

/// Injects input into one X display through the XTEST extension.
#[derive(Debug)]
pub struct XTestInjector {
    conn: RustConnection,
    /// The display as named by the caller (or `$DISPLAY`), for messages.
    display: String,
    root: Window,
    screen_size: (u16, u16),
    /// keysym → keycode, built from the server's keyboard mapping; `None` after a keyboard
    /// `MappingNotify` until the next key needs it.
    keymap: Option<HashMap<Keysym, Keycode>>,
    wheel_x: NotchAccumulator,
    wheel_y: NotchAccumulator,
    keys_down: BTreeSet<Keycode>,
    buttons_down: BTreeSet<u8>,
}

impl XTestInjector {
    /// Connects to `display` (e.g. `":57"`; `None` uses `$DISPLAY`), checks that it has the XTEST
    /// extension, and loads its keyboard mapping.
    ///
    /// Fails with [`InjectError::Unavailable`] naming the display when it cannot be opened or
    /// lacks XTEST.
    pub fn connect(display: Option<&str>) -> Result<Self, InjectError> {
        let name = match display {
            Some(name) => name.to_owned(),
            None => std::env::var("DISPLAY").unwrap_or_else(|_| "$DISPLAY (unset)".to_owned()),
        };
        let unavailable = |reason: String| InjectError::Unavailable {
            backend: BACKEND,
            reason,
        };
        if !display_number_in_range(&name) {
            return Err(unavailable(format!(
                "X display {name} is out of range (display numbers go up to {MAX_DISPLAY})"
            )));
        }
        let (conn, screen) = x11rb::connect(display)
            .map_err(|e| unavailable(format!("cannot open X display {name}: {e}")))?;
        match conn.extension_information(xtest::X11_EXTENSION_NAME) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(unavailable(format!(
                    "X display {name} has no XTEST extension (start the X server without \
                     `-extension XTEST`)"
                )));
            }
            Err(e) => {
                return Err(unavailable(format!(
                    "cannot query X display {name} for XTEST: {e}"
                )));
            }
        }
        let setup = conn.setup();
        let Some(root_screen) = setup.roots.get(screen) else {
            return Err(unavailable(format!(
                "X display {name} has no screen {screen}"
            )));
        };
        let root = root_screen.root;
        let screen_size = (root_screen.width_in_pixels, root_screen.height_in_pixels);
        let mut injector = XTestInjector {
            conn,
            display: name,
            root,
            screen_size,
            keymap: None,
            wheel_x: NotchAccumulator::default(),
            wheel_y: NotchAccumulator::default(),
            keys_down: BTreeSet::new(),
            buttons_down: BTreeSet::new(),
        };
        injector.load_keymap().map_err(|e| match e {
            InjectError::Failed { reason, .. } => unavailable(reason),
            other => other,
        })?;
        Ok(injector)
    }

    /// The display this injector is connected to, as given to [`XTestInjector::connect`].
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Width and height of the screen in pixels: the range absolute coordinates must fall in.
    pub fn screen_size(&self) -> (u16, u16) {
        self.screen_size
    }

    /// The keycode that types `key` on this display, from the cached keyboard mapping.
    pub fn keycode(&mut self, key: KeyCode) -> Result<Keycode, InjectError> {
        let keysym = key.x11_keysym();
        let keymap = match &self.keymap {
            Some(keymap) => keymap,
            None => self.load_keymap()?,
        };
        keymap
            .get(&keysym)
            .copied()
            .ok_or_else(|| InjectError::Failed {
                backend: BACKEND,
                reason: format!(
                    "no keycode of X display {} produces keysym {keysym:#x} for key {} \
                     (add it to the display's keymap, e.g. with xmodmap)",
                    self.display,
                    key.dom_code()
                ),
            })
    }

    /// Waits until the X server has processed every event injected so far (one round trip), and
    /// reports any error it sent back.
    pub fn sync(&mut self) -> Result<(), InjectError> {
        self.conn
            .get_input_focus()
            .map_err(|e| self.failed(format!("cannot send a request: {e}")))?
            .reply()
            .map_err(|e| self.failed(format!("round trip failed: {e}")))?;
        self.drain_events()
    }

    /// Fetches the keyboard mapping and rebuilds the keysym → keycode table.
    fn load_keymap(&mut self) -> Result<&HashMap<Keysym, Keycode>, InjectError> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let count = max.saturating_sub(min).saturating_add(1);
        let reply = self
            .conn
            .get_keyboard_mapping(min, count)
            .map_err(|e| self.failed(format!("cannot request the keyboard mapping: {e}")))?
            .reply()
            .map_err(|e| {
                self.failed(format!(
                    "cannot read the keyboard mapping of X display {}: {e}",
                    self.display
                ))
            })?;
        Ok(self.keymap.insert(keysym_table(
            min,
            usize::from(reply.keysyms_per_keycode),
            &reply.keysyms,
        )))
    }

    /// Reads whatever the server sent: a keyboard `MappingNotify` invalidates the keymap, an
    /// error from an earlier unchecked request is returned.
    fn drain_events(&mut self) -> Result<(), InjectError> {
        let mut server_error: Option<X11Error> = None;
        loop {
            let event = self
                .conn
                .poll_for_event()
                .map_err(|e| self.failed(format!("connection to X display lost: {e}")))?;
            match event {
                None => break,
                Some(Event::MappingNotify(notify)) if notify.request == Mapping::KEYBOARD => {
                    self.keymap = None;
                }
                Some(Event::Error(error)) => {
                    server_error.get_or_insert(error);
                }
                Some(_) => {}
            }
        }
        match server_error {
            None => Ok(()),
            Some(e) => Err(self.failed(format!(
                "X display {} rejected an earlier request: {:?} in {} (value {:#x})",
                self.display,
                e.error_kind,
                e.request_name.unwrap_or("an unknown request"),
                e.bad_value
            ))),
        }
    }

    /// Sends one `FakeInput` request (not flushed).
    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), InjectError> {
        self.conn
            .xtest_fake_input(kind, detail, CURRENT_TIME, self.root, x, y, CORE_DEVICE)
            .map(|cookie| cookie.ignore_error())
            .map_err(|e| self.failed(format!("cannot send to X display {}: {e}", self.display)))
    }

    /// Presses or releases a pointer button and remembers which are held.
    fn button(&mut self, button: u8, down: bool) -> Result<(), InjectError> {
        let kind = if down {
            BUTTON_PRESS_EVENT
        } else {
            BUTTON_RELEASE_EVENT
        };
        self.fake(kind, button, 0, 0)?;
        if down {
            self.buttons_down.insert(button);
        } else {
            self.buttons_down.remove(&button);
        }
        Ok(())
    }

    /// Sends `notches` clicks of the wheel button for that direction.
    fn wheel_clicks(
        &mut self,
        notches: i32,
        negative: u8,
        positive: u8,
    ) -> Result<(), InjectError> {
        let button = if notches < 0 { negative } else { positive };
        for _ in 0..notches.unsigned_abs() {
            self.fake(BUTTON_PRESS_EVENT, button, 0, 0)?;
            self.fake(BUTTON_RELEASE_EVENT, button, 0, 0)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), InjectError> {
        self.conn
            .flush()
            .map_err(|e| self.failed(format!("cannot send to X display {}: {e}", self.display)))
    }

    fn failed(&self, reason: String) -> InjectError {
        InjectError::Failed {
            backend: BACKEND,
            reason,
        }
    }
}

impl Injector for XTestInjector {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        self.drain_events()?;
        match event.kind {
            EventKind::Key { code, down } => {
                let keycode = self.keycode(code)?;
                let kind = if down {
                    KEY_PRESS_EVENT
                } else {
                    KEY_RELEASE_EVENT
                };
                self.fake(kind, keycode, 0, 0)?;
                if down {
                    self.keys_down.insert(keycode);
                } else {
                    self.keys_down.remove(&keycode);
                }
            }
            EventKind::MouseMove { x, y } => {
                self.fake(MOTION_NOTIFY_EVENT, ABSOLUTE, clamp_i16(x), clamp_i16(y))?;
            }
            EventKind::MouseMoveRel { dx, dy } => {
                if dx == 0 && dy == 0 {
                    return Ok(());
                }
                self.fake(MOTION_NOTIFY_EVENT, RELATIVE, dx, dy)?;
            }
            EventKind::Button { button, down } => self.button(x_button(button), down)?,
            EventKind::Wheel { dx, dy } => {
                let vertical = self.wheel_y.add(dy);
                let horizontal = self.wheel_x.add(dx);
                if vertical == 0 && horizontal == 0 {
                    return Ok(());
                }
                // Positive dy scrolls down (DOM convention), which X calls button 5.
                self.wheel_clicks(vertical, WHEEL_UP, WHEEL_DOWN)?;
                self.wheel_clicks(horizontal, WHEEL_LEFT, WHEEL_RIGHT)?;
            }
            EventKind::GamepadButton { .. } | EventKind::GamepadAxis { .. } => {
                return Err(InjectError::Unsupported {
                    backend: BACKEND,
                    what: "gamepad events",
                });
            }
            EventKind::Touch { .. } => {
                return Err(InjectError::Unsupported {
                    backend: BACKEND,
                    what: "touch events",
                });
            }
        }
        self.flush()
    }

    fn release_all(&mut self) -> Result<(), InjectError> {
        for keycode in std::mem::take(&mut self.keys_down) {
            self.fake(KEY_RELEASE_EVENT, keycode, 0, 0)?;
        }
        for button in std::mem::take(&mut self.buttons_down) {
            self.fake(BUTTON_RELEASE_EVENT, button, 0, 0)?;
        }
        self.flush()
    }
}

impl Drop for XTestInjector {
    fn drop(&mut self) {
        // Best effort: if the display is gone there is nothing left to release. The round trip
        // matters: an X server may discard requests still unread when it sees the connection
        // close, which is why Xlib's XCloseDisplay syncs too.
        let _ = self.release_all().and_then(|()| self.sync());
    }
}

/// The core X button number of a mouse button.
const fn x_button(button: MouseButton) -> u8 {
    match button {
        MouseButton::Left => 1,
        MouseButton::Middle => 2,
        MouseButton::Right => 3,
        MouseButton::Back => 8,
        MouseButton::Forward => 9,
    }
}

/// The largest display number x11rb 0.14 can connect to: it computes the TCP port
/// 6000 + display in a `u16`, which overflows (a panic in debug builds) above this.
const MAX_DISPLAY: u16 = u16::MAX - 6000;

/// Whether the display number of `name` (`[protocol/][host]:display[.screen]`) is at most
/// [`MAX_DISPLAY`]. Names x11rb cannot parse pass, so that x11rb reports them.
fn display_number_in_range(name: &str) -> bool {
    if name.starts_with('/') || name.starts_with("unix:") {
        return true; // A socket path, no display number.
    }
    let without_protocol = name.rsplit('/').next().unwrap_or(name);
    let Some((_, number_and_screen)) = without_protocol.rsplit_once(':') else {
        return true;
    };
    let number = number_and_screen
        .split('.')
        .next()
        .unwrap_or(number_and_screen);
    number.parse::<u16>().map_or(true, |n| n <= MAX_DISPLAY)
}

/// Root coordinates are 16-bit signed on the wire; frames are far smaller, so clamping only
/// guards against nonsense.
fn clamp_i16(value: u16) -> i16 {
    i16::try_from(value).unwrap_or(i16::MAX)
}

/// Builds keysym → keycode from a `GetKeyboardMapping` reply for keycodes `min..`.
///
/// First the first group (columns 0 and 1, unshifted and shifted) of each keycode in order, so
/// a keysym maps to the lowest keycode that types it in the first layout; then the remaining
/// columns (other groups and levels) one column at a time, so another layout's keys only fill
/// gaps. `NoSymbol` (0) entries are skipped.
fn keysym_table(min: Keycode, per_keycode: usize, keysyms: &[Keysym]) -> HashMap<Keysym, Keycode> {
    let mut table = HashMap::new();
    if per_keycode == 0 {
        return table;
    }
    let rows = || {
        keysyms
            .chunks_exact(per_keycode)
            .enumerate()
            .filter_map(|(index, row)| {
                Some((Keycode::try_from(usize::from(min) + index).ok()?, row))
            })
    };
    let first_group = per_keycode.min(2);
    for (keycode, row) in rows() {
        for &keysym in &row[..first_group] {
            if keysym != 0 {
                table.entry(keysym).or_insert(keycode);
            }
        }
    }
    for column in first_group..per_keycode {
        for (keycode, row) in rows() {
            if row[column] != 0 {
                table.entry(row[column]).or_insert(keycode);
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keysym_table_prefers_the_first_group_then_the_lowest_keycode() {
        const XK_A: Keysym = 0x41;
        const XK_LOWER_A: Keysym = 0x61;
        const XK_KP_DECIMAL: Keysym = 0xFFAE;
        const XK_KP_DELETE: Keysym = 0xFF9F;
        const XK_SEMICOLON: Keysym = 0x3B;
        const XK_4: Keysym = 0x34;
        const XK_CYRILLIC_ZHE: Keysym = 0x6D6;
        const XK_CYRILLIC_A: Keysym = 0x6C1;
        // Keycodes 8..=12, four keysyms each (two groups of two levels), as in a "us,ru" map.
        #[rustfmt::skip]
        let keysyms = [
            0, 0, 0, 0,                                          // 8: nothing
            XK_4, 0x24, XK_4, XK_SEMICOLON,                      // 9: '4', ru has ';' shifted
            XK_LOWER_A, XK_A, XK_CYRILLIC_A, 0,                  // 10: the A key
            XK_KP_DELETE, XK_KP_DECIMAL, 0, 0,                   // 11: the keypad's decimal key
            XK_KP_DECIMAL, 0, XK_CYRILLIC_ZHE, 0,                // 12: keypad comma
        ];
        let mut keysyms = keysyms.to_vec();
        // 13: the semicolon key, after the '4' key that has ';' in the second group.
        keysyms.extend([XK_SEMICOLON, 0x3A, XK_CYRILLIC_ZHE, 0]);
        let table = keysym_table(8, 4, &keysyms);
        assert_eq!(table.get(&XK_LOWER_A), Some(&10));
        assert_eq!(table.get(&XK_A), Some(&10));
        assert_eq!(table.get(&XK_4), Some(&9));
        assert_eq!(
            table.get(&XK_KP_DECIMAL),
            Some(&11),
            "the lowest keycode in group 1"
        );
        assert_eq!(
            table.get(&XK_SEMICOLON),
            Some(&13),
            "group 1 beats another layout"
        );
        assert_eq!(
            table.get(&XK_CYRILLIC_ZHE),
            Some(&12),
            "other groups fill gaps"
        );
        assert_eq!(table.get(&XK_CYRILLIC_A), Some(&10));
        assert!(!table.contains_key(&0), "NoSymbol is not a key");
    }

    #[test]
    fn keysym_table_survives_odd_replies() {
        assert!(keysym_table(8, 0, &[1, 2, 3]).is_empty());
        // A trailing partial row is ignored; keycodes past 255 are dropped, not wrapped.
        let table = keysym_table(254, 1, &[0x61, 0x62, 0x63, 0x64]);
        assert_eq!(table.get(&0x61), Some(&254));
        assert_eq!(table.get(&0x62), Some(&255));
        assert_eq!(table.len(), 2, "{table:?}");
        let table = keysym_table(8, 3, &[0x61, 0, 0, 0x62]);
        assert_eq!(table.len(), 1, "{table:?}");
    }

    #[test]
    fn display_numbers_x11rb_cannot_handle_are_refused() {
        assert!(display_number_in_range(":0"));
        assert!(display_number_in_range("localhost:59535.1"));
        assert!(display_number_in_range("unix/:12"));
        assert!(display_number_in_range("/tmp/.X11-unix/X70000"));
        assert!(display_number_in_range("garbage"));
        assert!(!display_number_in_range(":59536"));
        assert!(!display_number_in_range("tcp/host:65535.0"));
        match XTestInjector::connect(Some(":65000")) {
            Err(InjectError::Unavailable { backend, reason }) => {
                assert_eq!(backend, "xtest");
                assert!(
                    reason.contains(":65000") && reason.contains("out of range"),
                    "{reason}"
                );
            }
            other => panic!("expected unavailable, got {other:?}"),
        }
    }

    #[test]
    fn buttons_follow_the_core_protocol() {
        assert_eq!(x_button(MouseButton::Left), 1);
        assert_eq!(x_button(MouseButton::Middle), 2);
        assert_eq!(x_button(MouseButton::Right), 3);
        assert_eq!(x_button(MouseButton::Back), 8);
        assert_eq!(x_button(MouseButton::Forward), 9);
        assert_eq!(clamp_i16(1279), 1279);
        assert_eq!(clamp_i16(u16::MAX), i16::MAX);
    }
}
