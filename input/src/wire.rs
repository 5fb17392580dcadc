//! The binary encoding of [`InputEvent`]; the layout is documented in the crate docs.
//!
//! Every event is a 12-byte header plus a fixed-size payload chosen by the kind tag, so a
//! decoder knows an event's full length from its first two bytes and never has to scan or
//! allocate. Decoding validates every field, which makes the encoding canonical: an accepted
//! byte string re-encodes to exactly the same bytes.

use crate::keys::KeyCode;

/// The wire format version, byte 0 of every event. Bumped on any incompatible layout change.
pub const WIRE_VERSION: u8 = 1;

/// Size of the header shared by every event: version, tag, seq and the 48-bit timestamp.
pub const HEADER_BYTES: usize = 12;

/// The largest encoded event (a [`EventKind::Touch`]), for sizing buffers.
pub const MAX_EVENT_BYTES: usize = HEADER_BYTES + TOUCH_LEN;

/// The smallest encoded event (a [`EventKind::Button`]); bounds [`DecodeAll`]'s length.
const MIN_EVENT_BYTES: usize = HEADER_BYTES + BUTTON_LEN;

/// The largest timestamp the 48-bit field holds, about 8.9 years of microseconds.
pub const MAX_TIMESTAMP_US: u64 = (1 << 48) - 1;

/// How many gamepads an event can address (`pad` is `0..MAX_GAMEPADS`).
pub const MAX_GAMEPADS: u8 = 4;

/// Buttons of the W3C Standard Gamepad mapping (`button` is `0..GAMEPAD_BUTTONS`).
pub const GAMEPAD_BUTTONS: u8 = 17;

/// Axes of the W3C Standard Gamepad mapping (`axis` is `0..GAMEPAD_AXES`).
pub const GAMEPAD_AXES: u8 = 4;

// Kind tags. 0 is deliberately unused so a zero-filled buffer never decodes as an event.
const TAG_KEY: u8 = 1;
const TAG_MOUSE_MOVE: u8 = 2;
const TAG_MOUSE_MOVE_REL: u8 = 3;
const TAG_BUTTON: u8 = 4;
const TAG_WHEEL: u8 = 5;
const TAG_GAMEPAD_BUTTON: u8 = 6;
const TAG_GAMEPAD_AXIS: u8 = 7;
const TAG_TOUCH: u8 = 8;

// Payload sizes; the encoder and decoder both use these, so they cannot disagree.
const KEY_LEN: usize = 3;
const MOUSE_MOVE_LEN: usize = 4;
const MOUSE_MOVE_REL_LEN: usize = 4;
const BUTTON_LEN: usize = 2;
const WHEEL_LEN: usize = 4;
const GAMEPAD_BUTTON_LEN: usize = 4;
const GAMEPAD_AXIS_LEN: usize = 4;
const TOUCH_LEN: usize = 6;

/// One input event as sent from a client to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputEvent {
    /// Sequence number, incremented per event by the client (wrapping), so the node can spot
    /// loss and reordering on an unreliable channel.
    pub seq: u32,
    /// When the client saw the event, in microseconds on the client's own clock (for example
    /// since the session started). Only differences are meaningful; at most
    /// [`MAX_TIMESTAMP_US`].
    pub t_us: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`InputEvent`] reports.
///
/// Coordinates are pixels of the video frame (not of the client's window), with the origin at
/// the top-left, x to the right and y downwards; relative values use the same directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A key was pressed or released.
    Key {
        /// Which physical key.
        code: KeyCode,
        /// `true` for press (and auto-repeat), `false` for release.
        down: bool,
    },
    /// The pointer moved to an absolute position.
    MouseMove {
        /// Column in frame pixels.
        x: u16,
        /// Row in frame pixels.
        y: u16,
    },
    /// The pointer moved by a relative amount (pointer lock, games with mouse look).
    MouseMoveRel {
        /// Horizontal motion, positive to the right.
        dx: i16,
        /// Vertical motion, positive downwards.
        dy: i16,
    },
    /// A mouse button was pressed or released.
    Button {
        /// Which button.
        button: MouseButton,
        /// `true` for press, `false` for release.
        down: bool,
    },
    /// The wheel turned, in units of 1/120 of a notch (Windows' `WHEEL_DELTA` is one notch) so
    /// high-resolution wheels and touchpads keep their precision.
    ///
    /// Signs follow DOM `WheelEvent`: positive `dy` scrolls down (towards the user), positive
    /// `dx` scrolls right. This is the opposite of the sign of Windows' vertical wheel delta.
    Wheel {
        /// Horizontal scroll, positive to the right.
        dx: i16,
        /// Vertical scroll, positive downwards.
        dy: i16,
    },
    /// A gamepad button changed, with its analog pressure.
    GamepadButton {
        /// Which gamepad, `0..MAX_GAMEPADS`.
        pad: u8,
        /// W3C Standard Gamepad button index, `0..GAMEPAD_BUTTONS`.
        button: u8,
        /// Pressure from 0 (released) to 65535 (fully pressed); digital buttons use the ends.
        value: u16,
    },
    /// A gamepad axis moved.
    GamepadAxis {
        /// Which gamepad, `0..MAX_GAMEPADS`.
        pad: u8,
        /// W3C Standard Gamepad axis index, `0..GAMEPAD_AXES`: left stick x, left stick y,
        /// right stick x, right stick y.
        axis: u8,
        /// Position scaled from -1.0..=1.0 to -32767..=32767 (positive is right or down).
        value: i16,
    },
    /// A touch point changed.
    Touch {
        /// Identifies the touch point while it lasts; ids may be reused after `End`/`Cancel`.
        id: u8,
        /// What happened to the touch point.
        phase: TouchPhase,
        /// Column in frame pixels.
        x: u16,
        /// Row in frame pixels.
        y: u16,
    },
}

/// A mouse button. The wire values match DOM `MouseEvent.button`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MouseButton {
    /// The primary button.
    Left = 0,
    /// The middle button (usually the wheel).
    Middle = 1,
    /// The secondary button.
    Right = 2,
    /// The "browser back" side button.
    Back = 3,
    /// The "browser forward" side button.
    Forward = 4,
}

impl MouseButton {
    /// The button with this wire value (equal to DOM `MouseEvent.button`), if any.
    pub const fn from_u8(value: u8) -> Option<MouseButton> {
        match value {
            0 => Some(MouseButton::Left),
            1 => Some(MouseButton::Middle),
            2 => Some(MouseButton::Right),
            3 => Some(MouseButton::Back),
            4 => Some(MouseButton::Forward),
            _ => None,
        }
    }
}

/// The phase of a touch point, as in DOM `touchstart`/`touchmove`/`touchend`/`touchcancel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TouchPhase {
    /// The finger touched the surface.
    Start = 0,
    /// The finger moved.
    Move = 1,
    /// The finger lifted.
    End = 2,
    /// The system took the touch away (e.g. a gesture or a palm); treat as lifted.
    Cancel = 3,
}

impl TouchPhase {
    /// The phase with this wire value, if any.
    pub const fn from_u8(value: u8) -> Option<TouchPhase> {
        match value {
            0 => Some(TouchPhase::Start),
            1 => Some(TouchPhase::Move),
            2 => Some(TouchPhase::End),
            3 => Some(TouchPhase::Cancel),
            _ => None,
        }
    }
}

/// Why an event could not be encoded. Nothing is written to the buffer in that case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The timestamp does not fit the 48-bit field.
    #[error("timestamp {0} us exceeds the 48-bit wire field (max {MAX_TIMESTAMP_US})")]
    TimestampOutOfRange(u64),
    /// A field is outside its documented range, so the node would reject the event.
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// Which field, e.g. `"gamepad_button.pad"`.
        field: &'static str,
        /// The rejected value.
        value: u32,
    },
}

/// Why bytes could not be decoded as an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends before the event does.
    #[error("truncated event: needed {needed} bytes, got {got}")]
    Truncated {
        /// Bytes the event needs (the header size while the kind is still unknown).
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The version byte is not [`WIRE_VERSION`].
    #[error("unsupported wire version {0} (expected {WIRE_VERSION})")]
    UnsupportedVersion(u8),
    /// The kind tag names no known event kind.
    #[error("unknown event kind tag {0}")]
    UnknownKind(u8),
    /// A field holds a value outside its range.
    #[error("invalid value {value} for {field}")]
    InvalidValue {
        /// Which field, e.g. `"key.code"` or `"touch.phase"`.
        field: &'static str,
        /// The rejected value.
        value: u32,
    },
}

/// The payload size of a kind tag, or `None` for unknown tags.
const fn payload_len(tag: u8) -> Option<usize> {
    match tag {
        TAG_KEY => Some(KEY_LEN),
        TAG_MOUSE_MOVE => Some(MOUSE_MOVE_LEN),
        TAG_MOUSE_MOVE_REL => Some(MOUSE_MOVE_REL_LEN),
        TAG_BUTTON => Some(BUTTON_LEN),
        TAG_WHEEL => Some(WHEEL_LEN),
        TAG_GAMEPAD_BUTTON => Some(GAMEPAD_BUTTON_LEN),
        TAG_GAMEPAD_AXIS => Some(GAMEPAD_AXIS_LEN),
        TAG_TOUCH => Some(TOUCH_LEN),
        _ => None,
    }
}

/// Checks `value < limit` for a bounded `u8` field; shared by encoder and decoder so both
/// enforce the same ranges.
fn check_below(field: &'static str, value: u8, limit: u8) -> Result<u8, (&'static str, u32)> {
    if value < limit {
        Ok(value)
    } else {
        Err((field, u32::from(value)))
    }
}

fn bool_from_wire(field: &'static str, byte: u8) -> Result<bool, DecodeError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidValue {
            field,
            value: u32::from(byte),
        }),
    }
}

impl EventKind {
    const fn tag(&self) -> u8 {
        match self {
            EventKind::Key { .. } => TAG_KEY,
            EventKind::MouseMove { .. } => TAG_MOUSE_MOVE,
            EventKind::MouseMoveRel { .. } => TAG_MOUSE_MOVE_REL,
            EventKind::Button { .. } => TAG_BUTTON,
            EventKind::Wheel { .. } => TAG_WHEEL,
            EventKind::GamepadButton { .. } => TAG_GAMEPAD_BUTTON,
            EventKind::GamepadAxis { .. } => TAG_GAMEPAD_AXIS,
            EventKind::Touch { .. } => TAG_TOUCH,
        }
    }

    /// Rejects fields outside their ranges, so that every event that encodes also decodes.
    fn validate(&self) -> Result<(), (&'static str, u32)> {
        match *self {
            EventKind::GamepadButton { pad, button, .. } => {
                check_below("gamepad_button.pad", pad, MAX_GAMEPADS)?;
                check_below("gamepad_button.button", button, GAMEPAD_BUTTONS)?;
            }
            EventKind::GamepadAxis { pad, axis, .. } => {
                check_below("gamepad_axis.pad", pad, MAX_GAMEPADS)?;
                check_below("gamepad_axis.axis", axis, GAMEPAD_AXES)?;
            }
            // Every other field's type already restricts it to valid values.
            _ => {}
        }
        Ok(())
    }

    /// Appends the payload; the caller has validated the fields.
    fn write_payload(&self, buf: &mut Vec<u8>) {
        match *self {
            EventKind::Key { code, down } => {
                buf.extend_from_slice(&code.as_u16().to_le_bytes());
                buf.push(u8::from(down));
            }
            EventKind::MouseMove { x, y } => {
                buf.extend_from_slice(&x.to_le_bytes());
                buf.extend_from_slice(&y.to_le_bytes());
            }
            EventKind::MouseMoveRel { dx, dy } | EventKind::Wheel { dx, dy } => {
                buf.extend_from_slice(&dx.to_le_bytes());
                buf.extend_from_slice(&dy.to_le_bytes());
            }
            EventKind::Button { button, down } => {
                buf.extend_from_slice(&[button as u8, u8::from(down)]);
            }
            EventKind::GamepadButton { pad, button, value } => {
                buf.extend_from_slice(&[pad, button]);
                buf.extend_from_slice(&value.to_le_bytes());
            }
            EventKind::GamepadAxis { pad, axis, value } => {
                buf.extend_from_slice(&[pad, axis]);
                buf.extend_from_slice(&value.to_le_bytes());
            }
            EventKind::Touch { id, phase, x, y } => {
                buf.extend_from_slice(&[id, phase as u8]);
                buf.extend_from_slice(&x.to_le_bytes());
                buf.extend_from_slice(&y.to_le_bytes());
            }
        }
    }

    /// Parses the payload of `tag` from `payload`, which holds exactly its bytes.
    fn read_payload(tag: u8, payload: &[u8]) -> Result<EventKind, DecodeError> {
        let invalid = |(field, value)| DecodeError::InvalidValue { field, value };
        // `fixed` cannot fail after decode's length check, but returning the error instead of
        // indexing keeps this function panic-free on its own.
        Ok(match tag {
            TAG_KEY => {
                let [c0, c1, down] = fixed::<KEY_LEN>(payload)?;
                let raw = u16::from_le_bytes([c0, c1]);
                let code = KeyCode::from_u16(raw).ok_or(invalid(("key.code", u32::from(raw))))?;
                EventKind::Key {
                    code,
                    down: bool_from_wire("key.down", down)?,
                }
            }
            TAG_MOUSE_MOVE => {
                let [x0, x1, y0, y1] = fixed::<MOUSE_MOVE_LEN>(payload)?;
                EventKind::MouseMove {
                    x: u16::from_le_bytes([x0, x1]),
                    y: u16::from_le_bytes([y0, y1]),
                }
            }
            TAG_MOUSE_MOVE_REL => {
                let [x0, x1, y0, y1] = fixed::<MOUSE_MOVE_REL_LEN>(payload)?;
                EventKind::MouseMoveRel {
                    dx: i16::from_le_bytes([x0, x1]),
                    dy: i16::from_le_bytes([y0, y1]),
                }
            }
            TAG_BUTTON => {
                let [button, down] = fixed::<BUTTON_LEN>(payload)?;
                EventKind::Button {
                    button: MouseButton::from_u8(button)
                        .ok_or(invalid(("button.button", u32::from(button))))?,
                    down: bool_from_wire("button.down", down)?,
                }
            }
            TAG_WHEEL => {
                let [x0, x1, y0, y1] = fixed::<WHEEL_LEN>(payload)?;
                EventKind::Wheel {
                    dx: i16::from_le_bytes([x0, x1]),
                    dy: i16::from_le_bytes([y0, y1]),
                }
            }
            TAG_GAMEPAD_BUTTON => {
                let [pad, button, v0, v1] = fixed::<GAMEPAD_BUTTON_LEN>(payload)?;
                EventKind::GamepadButton {
                    pad: check_below("gamepad_button.pad", pad, MAX_GAMEPADS).map_err(invalid)?,
                    button: check_below("gamepad_button.button", button, GAMEPAD_BUTTONS)
                        .map_err(invalid)?,
                    value: u16::from_le_bytes([v0, v1]),
                }
            }
            TAG_GAMEPAD_AXIS => {
                let [pad, axis, v0, v1] = fixed::<GAMEPAD_AXIS_LEN>(payload)?;
                EventKind::GamepadAxis {
                    pad: check_below("gamepad_axis.pad", pad, MAX_GAMEPADS).map_err(invalid)?,
                    axis: check_below("gamepad_axis.axis", axis, GAMEPAD_AXES).map_err(invalid)?,
                    value: i16::from_le_bytes([v0, v1]),
                }
            }
            TAG_TOUCH => {
                let [id, phase, x0, x1, y0, y1] = fixed::<TOUCH_LEN>(payload)?;
                EventKind::Touch {
                    id,
                    phase: TouchPhase::from_u8(phase)
                        .ok_or(invalid(("touch.phase", u32::from(phase))))?,
                    x: u16::from_le_bytes([x0, x1]),
                    y: u16::from_le_bytes([y0, y1]),
                }
            }
            other => return Err(DecodeError::UnknownKind(other)),
        })
    }
}

/// The first `N` bytes of a payload as an array, or `Truncated` if there are fewer.
fn fixed<const N: usize>(payload: &[u8]) -> Result<[u8; N], DecodeError> {
    payload
        .first_chunk::<N>()
        .copied()
        .ok_or(DecodeError::Truncated {
            needed: HEADER_BYTES + N,
            got: HEADER_BYTES + payload.len(),
        })
}

impl InputEvent {
    /// The number of bytes [`encode`](Self::encode) appends for this event.
    pub const fn encoded_len(&self) -> usize {
        match payload_len(self.kind.tag()) {
            Some(len) => HEADER_BYTES + len,
            // Every tag the encoder produces has a payload length; this arm is unreachable.
            None => MAX_EVENT_BYTES,
        }
    }

    /// Appends the encoding of this event to `buf`.
    ///
    /// Fails, leaving `buf` untouched, if [`t_us`](Self::t_us) exceeds [`MAX_TIMESTAMP_US`] or a
    /// gamepad field is out of range: such an event would not survive the trip.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        if self.t_us > MAX_TIMESTAMP_US {
            return Err(EncodeError::TimestampOutOfRange(self.t_us));
        }
        self.kind
            .validate()
            .map_err(|(field, value)| EncodeError::InvalidValue { field, value })?;

        buf.reserve(self.encoded_len());
        buf.push(WIRE_VERSION);
        buf.push(self.kind.tag());
        buf.extend_from_slice(&self.seq.to_le_bytes());
        // The low six bytes of the little-endian u64 are the u48; the top two are zero (checked).
        let [t0, t1, t2, t3, t4, t5, _, _] = self.t_us.to_le_bytes();
        buf.extend_from_slice(&[t0, t1, t2, t3, t4, t5]);
        self.kind.write_payload(buf);
        Ok(())
    }

    /// The encoding of this event in a new buffer.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode(&mut buf)?;
        Ok(buf)
    }

    /// Decodes one event from the start of `bytes`, returning it and the bytes it used.
    ///
    /// Bytes after the event are left alone (see [`decode_all`] for several events back to
    /// back). Never panics and never allocates, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<(InputEvent, usize), DecodeError> {
        let got = bytes.len();
        // Check the version before the length: a newer version may have another layout, and
        // "unsupported version" tells the operator more than "truncated".
        let Some(&version) = bytes.first() else {
            return Err(DecodeError::Truncated {
                needed: HEADER_BYTES,
                got,
            });
        };
        if version != WIRE_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let Some(&tag) = bytes.get(1) else {
            return Err(DecodeError::Truncated {
                needed: HEADER_BYTES,
                got,
            });
        };
        let len = payload_len(tag).ok_or(DecodeError::UnknownKind(tag))?;
        let needed = HEADER_BYTES + len;
        let Some((header, rest)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
            return Err(DecodeError::Truncated { needed, got });
        };
        let Some(payload) = rest.get(..len) else {
            return Err(DecodeError::Truncated { needed, got });
        };

        let [_, _, s0, s1, s2, s3, t0, t1, t2, t3, t4, t5] = *header;
        let event = InputEvent {
            seq: u32::from_le_bytes([s0, s1, s2, s3]),
            t_us: u64::from_le_bytes([t0, t1, t2, t3, t4, t5, 0, 0]),
            kind: EventKind::read_payload(tag, payload)?,
        };
        Ok((event, needed))
    }
}

/// Decodes the events packed back to back in `bytes` (e.g. one datagram).
///
/// Yields each event in order; on the first error it yields that error and then stops, since
/// after a bad event the position of the next one is unknown.
pub fn decode_all(bytes: &[u8]) -> DecodeAll<'_> {
    DecodeAll { rest: bytes }
}

/// Iterator returned by [`decode_all`].
#[derive(Debug, Clone)]
pub struct DecodeAll<'a> {
    rest: &'a [u8],
}

impl Iterator for DecodeAll<'_> {
    type Item = Result<InputEvent, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match InputEvent::decode(self.rest) {
            Ok((event, used)) => {
                self.rest = self.rest.get(used..).unwrap_or_default();
                Some(Ok(event))
            }
            Err(err) => {
                self.rest = &[];
                Some(Err(err))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Each item (event or the final error) consumes at least one byte; at most one more
        // than the full events that fit, for a trailing error.
        let min = usize::from(!self.rest.is_empty());
        (min, Some(self.rest.len().div_ceil(MIN_EVENT_BYTES)))
    }
}

impl std::iter::FusedIterator for DecodeAll<'_> {}

#[cfg(test)]
mod tests;
