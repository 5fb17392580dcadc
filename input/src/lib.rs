//! Stratus input: the [`InputEvent`] wire format that clients send to nodes.
//!
//! A client (browser or native) turns each keyboard, mouse, gamepad or touch event into an
//! [`InputEvent`], encodes it into a few bytes and sends it on the input data channel; the node
//! decodes it and injects it into the game. The format is binary, versioned and fixed-size per
//! kind, so a pointer move costs 16 bytes, and decoding untrusted bytes never panics or
//! allocates.
//!
//! - [`wire`]: the event types, [`InputEvent::encode`], [`InputEvent::decode`], [`decode_all`].
//! - [`keys`]: [`KeyCode`], the portable physical key set, with its DOM and X11 mappings.
//!
//! The client also predicts where the pointer will be when the frame it causes is shown, and
//! sends that instead of the raw position:
//!
//! - [`predict`]: [`Predictor`], an adaptive Kalman filter and a line model weighted by a
//!   calibration learned from its own past predictions, sans-IO (time is an argument), with
//!   [`Horizon`] (how far ahead: smoothed one-way latency + decode + present) and the
//!   baselines it is measured against ([`predict::evaluate`]).
//! - [`trace`]: [`Trace`], the plain-text pointer recording format both clients write
//!   (documented there), with stop detection.
//! - [`corpus`]: synthetic traces: minimum-jerk aimed moves, and motion families (flicks,
//!   random walks, drags, idle hands, circles, sticks) reported through device models.
//!
//! # Wire format (version 1)
//!
//! Every event is a 12-byte header followed by a payload whose size is fixed by the kind tag.
//! All multi-byte integers are little-endian.
//!
//! | Offset | Size | Field                                                              |
//! |-------:|-----:|--------------------------------------------------------------------|
//! | 0      | 1    | version, [`WIRE_VERSION`] = 1                                      |
//! | 1      | 1    | kind tag (table below); 0 is never used                            |
//! | 2      | 4    | `seq`, u32                                                         |
//! | 6      | 6    | `t_us`, u48: client timestamp in microseconds (≤ [`MAX_TIMESTAMP_US`]) |
//! | 12     | n    | payload                                                            |
//!
//! | Tag | Kind                          | Payload (offsets from byte 12)                                   | Total |
//! |----:|-------------------------------|------------------------------------------------------------------|------:|
//! | 1   | [`Key`](EventKind::Key)       | 0: code u16 (USB HID usage, see [`KeyCode`]); 2: down u8 (0 or 1) | 15    |
//! | 2   | [`MouseMove`](EventKind::MouseMove) | 0: x u16; 2: y u16                                         | 16    |
//! | 3   | [`MouseMoveRel`](EventKind::MouseMoveRel) | 0: dx i16; 2: dy i16                                 | 16    |
//! | 4   | [`Button`](EventKind::Button) | 0: button u8 (0 left, 1 middle, 2 right, 3 back, 4 forward); 1: down u8 (0 or 1) | 14 |
//! | 5   | [`Wheel`](EventKind::Wheel)   | 0: dx i16; 2: dy i16 (1/120 notch)                               | 16    |
//! | 6   | [`GamepadButton`](EventKind::GamepadButton) | 0: pad u8 (0–3); 1: button u8 (0–16); 2: value u16 | 16 |
//! | 7   | [`GamepadAxis`](EventKind::GamepadAxis) | 0: pad u8 (0–3); 1: axis u8 (0–3); 2: value i16        | 16    |
//! | 8   | [`Touch`](EventKind::Touch)   | 0: id u8; 1: phase u8 (0 start, 1 move, 2 end, 3 cancel); 2: x u16; 4: y u16 | 18 |
//!
//! [`MAX_EVENT_BYTES`] (18) is the largest event. A datagram may carry several events back to
//! back; [`decode_all`] reads them. Values outside the ranges above are rejected on both sides
//! ([`EncodeError`], [`DecodeError::InvalidValue`]), so whatever decodes re-encodes to the same
//! bytes.
//!
//! # Example
//!
//! ```
//! use input::{EventKind, InputEvent, KeyCode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = KeyCode::from_dom_code("KeyW").ok_or("unknown key")?;
//! let event = InputEvent { seq: 7, t_us: 1_500_000, kind: EventKind::Key { code: key, down: true } };
//!
//! let mut datagram = Vec::new();
//! event.encode(&mut datagram)?;
//! InputEvent { seq: 8, t_us: 1_500_250, kind: EventKind::MouseMoveRel { dx: 3, dy: -1 } }
//!     .encode(&mut datagram)?;
//! assert_eq!(datagram.len(), 15 + 16);
//! assert_eq!(&datagram[..2], &[input::WIRE_VERSION, 1]);
//!
//! let (decoded, used) = InputEvent::decode(&datagram)?;
//! assert_eq!((decoded, used), (event, 15));
//! assert_eq!(input::decode_all(&datagram).collect::<Result<Vec<_>, _>>()?.len(), 2);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod corpus;
pub mod gate;
pub mod inject;
pub mod keys;
pub mod predict;
pub mod trace;
pub mod wire;

pub use keys::KeyCode;
pub use predict::{Horizon, PointerPredictor, Predictor, PredictorConfig};
pub use trace::{Trace, TraceError};
pub use wire::{
    DecodeAll, DecodeError, EncodeError, EventKind, GAMEPAD_AXES, GAMEPAD_BUTTONS, HEADER_BYTES,
    InputEvent, MAX_EVENT_BYTES, MAX_GAMEPADS, MAX_TIMESTAMP_US, MouseButton, TouchPhase,
    WIRE_VERSION, decode_all,
};
