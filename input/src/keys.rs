//! The portable key code set carried by [`EventKind::Key`](crate::EventKind::Key).
//!
//! A [`KeyCode`] names a *physical* key (its position on a US layout), like the DOM's
//! `KeyboardEvent.code`, not the character it types: the node's own keyboard layout decides the
//! character, so games that bind WASD by position keep working on AZERTY clients.
//!
//! Every mapping comes from the one table in this file (the `key_table!` invocation): each row
//! gives the variant, its wire value, its DOM code and its X11 keysym. A new mapping (winit's
//! `KeyCode`, Windows virtual keys, evdev) can be derived from [`KeyCode::ALL`] and
//! [`KeyCode::dom_code`], since those crates name keys after the same DOM codes.
//!
//! The wire value of a key is its USB HID usage ID on the keyboard page (0x07). That numbering
//! is an external standard, so it never needs renumbering when keys are added, and the W3C
//! `code` specification lists the same usage next to each DOM code.

/// Defines [`KeyCode`] and all its mappings from a single table, so the mappings cannot drift
/// apart: a row is `Variant = hid_usage, "DomCode", x11_keysym;`.
macro_rules! key_table {
    ($($name:ident = $hid:literal, $dom:literal, $keysym:literal;)*) => {
        /// A physical key, named after its DOM `KeyboardEvent.code` (US layout position).
        ///
        /// `key as u16` (or [`KeyCode::as_u16`]) is the wire value, the key's USB HID usage ID
        /// (keyboard page); [`KeyCode::from_u16`] is the inverse. Non-exhaustive because the set
        /// will grow (media keys, international keys) without a wire version bump.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum KeyCode {
            $(
                #[doc = concat!("DOM code `", $dom, "` (HID usage ", stringify!($hid),
                                ", X11 keysym ", stringify!($keysym), ").")]
                $name = $hid,
            )*
        }

        impl KeyCode {
            /// Every key code, in wire-value order; the table other mappings derive from.
            pub const ALL: &'static [KeyCode] = &[$(KeyCode::$name,)*];

            /// The key with this wire value, or `None` if the value names no known key.
            pub const fn from_u16(value: u16) -> Option<KeyCode> {
                match value {
                    $($hid => Some(KeyCode::$name),)*
                    _ => None,
                }
            }

            /// The DOM `KeyboardEvent.code` string of this key, e.g. `"KeyA"` or `"ShiftLeft"`.
            pub const fn dom_code(self) -> &'static str {
                match self {
                    $(KeyCode::$name => $dom,)*
                }
            }

            /// The X11 keysym a node injects for this key (e.g. through XTest).
            ///
            /// Letters map to the lowercase keysyms (`XK_a` = 0x61): a keysym is only used to
            /// find the physical keycode, and the X server applies Shift itself.
            pub const fn x11_keysym(self) -> u32 {
                match self {
                    $(KeyCode::$name => $keysym,)*
                }
            }

            /// The key with this DOM `KeyboardEvent.code`, or `None` for codes outside the set.
            ///
            /// Also accepts `"OSLeft"`/`"OSRight"`, which Firefox before version 118 reported
            /// for the Meta keys.
            pub fn from_dom_code(code: &str) -> Option<KeyCode> {
                match code {
                    $($dom => Some(KeyCode::$name),)*
                    _ => DOM_ALIASES
                        .iter()
                        .find(|(alias, _)| *alias == code)
                        .map(|&(_, key)| key),
                }
            }
        }
    };
}

/// Obsolete DOM codes that browsers still in use may send, and the key they mean.
const DOM_ALIASES: &[(&str, KeyCode)] = &[
    ("OSLeft", KeyCode::MetaLeft),
    ("OSRight", KeyCode::MetaRight),
];

key_table! {
    KeyA = 0x04, "KeyA", 0x61;
    KeyB = 0x05, "KeyB", 0x62;
    KeyC = 0x06, "KeyC", 0x63;
    KeyD = 0x07, "KeyD", 0x64;
    KeyE = 0x08, "KeyE", 0x65;
    KeyF = 0x09, "KeyF", 0x66;
    KeyG = 0x0A, "KeyG", 0x67;
    KeyH = 0x0B, "KeyH", 0x68;
    KeyI = 0x0C, "KeyI", 0x69;
    KeyJ = 0x0D, "KeyJ", 0x6A;
    KeyK = 0x0E, "KeyK", 0x6B;
    KeyL = 0x0F, "KeyL", 0x6C;
    KeyM = 0x10, "KeyM", 0x6D;
    KeyN = 0x11, "KeyN", 0x6E;
    KeyO = 0x12, "KeyO", 0x6F;
    KeyP = 0x13, "KeyP", 0x70;
    KeyQ = 0x14, "KeyQ", 0x71;
    KeyR = 0x15, "KeyR", 0x72;
    KeyS = 0x16, "KeyS", 0x73;
    KeyT = 0x17, "KeyT", 0x74;
    KeyU = 0x18, "KeyU", 0x75;
    KeyV = 0x19, "KeyV", 0x76;
    KeyW = 0x1A, "KeyW", 0x77;
    KeyX = 0x1B, "KeyX", 0x78;
    KeyY = 0x1C, "KeyY", 0x79;
    KeyZ = 0x1D, "KeyZ", 0x7A;
    // HID numbers the digit row 1..9 then 0, unlike ASCII.
    Digit1 = 0x1E, "Digit1", 0x31;
    Digit2 = 0x1F, "Digit2", 0x32;
    Digit3 = 0x20, "Digit3", 0x33;
    Digit4 = 0x21, "Digit4", 0x34;
    Digit5 = 0x22, "Digit5", 0x35;
    Digit6 = 0x23, "Digit6", 0x36;
    Digit7 = 0x24, "Digit7", 0x37;
    Digit8 = 0x25, "Digit8", 0x38;
    Digit9 = 0x26, "Digit9", 0x39;
    Digit0 = 0x27, "Digit0", 0x30;
    Enter = 0x28, "Enter", 0xFF0D;
    Escape = 0x29, "Escape", 0xFF1B;
    Backspace = 0x2A, "Backspace", 0xFF08;
    Tab = 0x2B, "Tab", 0xFF09;
    Space = 0x2C, "Space", 0x20;
    Minus = 0x2D, "Minus", 0x2D;
    Equal = 0x2E, "Equal", 0x3D;
    BracketLeft = 0x2F, "BracketLeft", 0x5B;
    BracketRight = 0x30, "BracketRight", 0x5D;
    Backslash = 0x31, "Backslash", 0x5C;
    Semicolon = 0x33, "Semicolon", 0x3B;
    Quote = 0x34, "Quote", 0x27;
    Backquote = 0x35, "Backquote", 0x60;
    Comma = 0x36, "Comma", 0x2C;
    Period = 0x37, "Period", 0x2E;
    Slash = 0x38, "Slash", 0x2F;
    CapsLock = 0x39, "CapsLock", 0xFFE5;
    F1 = 0x3A, "F1", 0xFFBE;
    F2 = 0x3B, "F2", 0xFFBF;
    F3 = 0x3C, "F3", 0xFFC0;
    F4 = 0x3D, "F4", 0xFFC1;
    F5 = 0x3E, "F5", 0xFFC2;
    F6 = 0x3F, "F6", 0xFFC3;
    F7 = 0x40, "F7", 0xFFC4;
    F8 = 0x41, "F8", 0xFFC5;
    F9 = 0x42, "F9", 0xFFC6;
    F10 = 0x43, "F10", 0xFFC7;
    F11 = 0x44, "F11", 0xFFC8;
    F12 = 0x45, "F12", 0xFFC9;
    Insert = 0x49, "Insert", 0xFF63;
    Home = 0x4A, "Home", 0xFF50;
    PageUp = 0x4B, "PageUp", 0xFF55;
    Delete = 0x4C, "Delete", 0xFFFF;
    End = 0x4D, "End", 0xFF57;
    PageDown = 0x4E, "PageDown", 0xFF56;
    ArrowRight = 0x4F, "ArrowRight", 0xFF53;
    ArrowLeft = 0x50, "ArrowLeft", 0xFF51;
    ArrowDown = 0x51, "ArrowDown", 0xFF54;
    ArrowUp = 0x52, "ArrowUp", 0xFF52;
    NumpadDivide = 0x54, "NumpadDivide", 0xFFAF;
    NumpadMultiply = 0x55, "NumpadMultiply", 0xFFAA;
    NumpadSubtract = 0x56, "NumpadSubtract", 0xFFAD;
    NumpadAdd = 0x57, "NumpadAdd", 0xFFAB;
    NumpadEnter = 0x58, "NumpadEnter", 0xFF8D;
    Numpad1 = 0x59, "Numpad1", 0xFFB1;
    Numpad2 = 0x5A, "Numpad2", 0xFFB2;
    Numpad3 = 0x5B, "Numpad3", 0xFFB3;
    Numpad4 = 0x5C, "Numpad4", 0xFFB4;
    Numpad5 = 0x5D, "Numpad5", 0xFFB5;
    Numpad6 = 0x5E, "Numpad6", 0xFFB6;
    Numpad7 = 0x5F, "Numpad7", 0xFFB7;
    Numpad8 = 0x60, "Numpad8", 0xFFB8;
    Numpad9 = 0x61, "Numpad9", 0xFFB9;
    Numpad0 = 0x62, "Numpad0", 0xFFB0;
    NumpadDecimal = 0x63, "NumpadDecimal", 0xFFAE;
    ControlLeft = 0xE0, "ControlLeft", 0xFFE3;
    ShiftLeft = 0xE1, "ShiftLeft", 0xFFE1;
    AltLeft = 0xE2, "AltLeft", 0xFFE9;
    // The Windows/Command key: X servers bind it to Super, not to the legacy Meta keysym.
    MetaLeft = 0xE3, "MetaLeft", 0xFFEB;
    ControlRight = 0xE4, "ControlRight", 0xFFE4;
    ShiftRight = 0xE5, "ShiftRight", 0xFFE2;
    AltRight = 0xE6, "AltRight", 0xFFEA;
    MetaRight = 0xE7, "MetaRight", 0xFFEC;
}

impl KeyCode {
    /// The wire value of this key (its USB HID usage ID); the same as `self as u16`.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_covers_the_required_set() {
        // 26 letters, 10 digits, 12 function keys, 5 editing keys, 4 arrows, 8 modifiers,
        // CapsLock, 6 navigation keys, 11 punctuation keys, 10 numpad digits, 6 numpad operators.
        assert_eq!(
            KeyCode::ALL.len(),
            26 + 10 + 12 + 5 + 4 + 8 + 1 + 6 + 11 + 10 + 6
        );
    }

    #[test]
    fn all_is_sorted_by_wire_value_and_unique() {
        for pair in KeyCode::ALL.windows(2) {
            assert!(pair[0].as_u16() < pair[1].as_u16(), "{pair:?}");
        }
        let doms: HashSet<_> = KeyCode::ALL.iter().map(|k| k.dom_code()).collect();
        assert_eq!(doms.len(), KeyCode::ALL.len(), "duplicate DOM code");
        let syms: HashSet<_> = KeyCode::ALL.iter().map(|k| k.x11_keysym()).collect();
        assert_eq!(syms.len(), KeyCode::ALL.len(), "duplicate keysym");
    }

    #[test]
    fn dom_code_round_trips_for_every_key() {
        for &key in KeyCode::ALL {
            assert_eq!(KeyCode::from_dom_code(key.dom_code()), Some(key));
        }
    }

    #[test]
    fn wire_value_round_trips_for_every_key() {
        for &key in KeyCode::ALL {
            assert_eq!(KeyCode::from_u16(key as u16), Some(key));
            assert_eq!(key.as_u16(), key as u16);
        }
        let known: HashSet<u16> = KeyCode::ALL.iter().map(|k| k.as_u16()).collect();
        for value in 0..=u16::MAX {
            assert_eq!(
                KeyCode::from_u16(value).is_some(),
                known.contains(&value),
                "{value:#x}"
            );
        }
    }

    #[test]
    fn known_dom_codes_and_hid_usages() {
        assert_eq!(KeyCode::from_dom_code("KeyA"), Some(KeyCode::KeyA));
        assert_eq!(KeyCode::from_dom_code("Digit1"), Some(KeyCode::Digit1));
        assert_eq!(
            KeyCode::from_dom_code("ArrowLeft"),
            Some(KeyCode::ArrowLeft)
        );
        assert_eq!(
            KeyCode::from_dom_code("ShiftLeft"),
            Some(KeyCode::ShiftLeft)
        );
        assert_eq!(KeyCode::from_dom_code("Numpad0"), Some(KeyCode::Numpad0));
        assert_eq!(KeyCode::from_dom_code("F1"), Some(KeyCode::F1));
        assert_eq!(KeyCode::KeyA as u16, 0x04);
        assert_eq!(KeyCode::Enter as u16, 0x28);
        assert_eq!(KeyCode::MetaRight as u16, 0xE7);
    }

    #[test]
    fn unknown_and_aliased_dom_codes() {
        assert_eq!(KeyCode::from_dom_code(""), None);
        assert_eq!(
            KeyCode::from_dom_code("keya"),
            None,
            "DOM codes are case-sensitive"
        );
        assert_eq!(KeyCode::from_dom_code("F13"), None);
        assert_eq!(KeyCode::from_dom_code("OSLeft"), Some(KeyCode::MetaLeft));
        assert_eq!(KeyCode::from_dom_code("OSRight"), Some(KeyCode::MetaRight));
        for &(alias, _) in DOM_ALIASES {
            assert!(
                KeyCode::ALL.iter().all(|k| k.dom_code() != alias),
                "{alias} is canonical"
            );
        }
    }

    #[test]
    fn known_keysyms() {
        assert_eq!(KeyCode::KeyA.x11_keysym(), 0x61); // XK_a
        assert_eq!(KeyCode::KeyZ.x11_keysym(), 0x7A); // XK_z
        assert_eq!(KeyCode::Digit0.x11_keysym(), 0x30); // XK_0
        assert_eq!(KeyCode::Enter.x11_keysym(), 0xFF0D); // XK_Return
        assert_eq!(KeyCode::ShiftLeft.x11_keysym(), 0xFFE1); // XK_Shift_L
        assert_eq!(KeyCode::ArrowLeft.x11_keysym(), 0xFF51); // XK_Left
        assert_eq!(KeyCode::F1.x11_keysym(), 0xFFBE); // XK_F1
        assert_eq!(KeyCode::F12.x11_keysym(), 0xFFC9); // XK_F12
        assert_eq!(KeyCode::Numpad0.x11_keysym(), 0xFFB0); // XK_KP_0
        assert_eq!(KeyCode::NumpadEnter.x11_keysym(), 0xFF8D); // XK_KP_Enter
        assert_eq!(KeyCode::Delete.x11_keysym(), 0xFFFF); // XK_Delete
        assert_eq!(KeyCode::Space.x11_keysym(), 0x20); // XK_space
    }

    #[test]
    fn sequential_runs_follow_their_standards() {
        // Letters, F-keys and keypad digits are contiguous in both HID and X11; checking the
        // runs catches a mistyped row that the spot checks above would miss.
        let letters = &KeyCode::ALL[..26];
        for (i, key) in letters.iter().enumerate() {
            let i = u16::try_from(i).expect("small");
            assert_eq!(key.as_u16(), 0x04 + i);
            assert_eq!(key.x11_keysym(), 0x61 + u32::from(i));
            let letter = char::from(b'A' + u8::try_from(i).expect("small"));
            assert_eq!(key.dom_code(), format!("Key{letter}"));
        }
        for n in 1..=12u32 {
            let key = KeyCode::from_dom_code(&format!("F{n}")).expect("F-key in table");
            assert_eq!(key.x11_keysym(), 0xFFBE + n - 1);
            assert_eq!(u32::from(key.as_u16()), 0x3A + n - 1);
        }
        for n in 0..=9u32 {
            let key = KeyCode::from_dom_code(&format!("Numpad{n}")).expect("numpad digit");
            assert_eq!(key.x11_keysym(), 0xFFB0 + n);
            let digit = KeyCode::from_dom_code(&format!("Digit{n}")).expect("digit");
            assert_eq!(digit.x11_keysym(), 0x30 + n);
        }
    }
}
