//! The shared-memory frame ring between the capture layer (inside a game) and the node.
//!
//! The layer (the **writer**) creates the ring: a memfd holding a header page and
//! `slot_count` slots of `slot_capacity` bytes, plus an eventfd for wake-ups. It connects to the
//! node's Unix socket (path in [`SOCKET_ENV`]) and sends [`HELLO`] with both descriptors
//! attached (`SCM_RIGHTS`). The node (the **reader**, [`RingReader`]) maps the memfd. Nothing
//! else crosses the socket; the layer closing it (the game exited) is the only other signal.
//!
//! # Layout (version 1, little-endian, all offsets in bytes)
//!
//! Header, at 0 (one 4096-byte page):
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `magic: [u8; 8]` | `STRATUSR` |
//! | 8 | `version: u32` | [`VERSION`] |
//! | 12 | `slot_count: u32` | ≤ [`MAX_SLOTS`] |
//! | 16 | `slot_capacity: u64` | bytes of pixels a slot holds, a multiple of 4096 |
//! | 24 | `data_offset: u64` | where slot 0's pixels start: [`HEADER_LEN`] |
//! | 32 | `dropped: u64` (atomic) | frames the producer dropped since it made the ring |
//! | 40 | `published: u64` (atomic) | frames published into the ring |
//! | 48 | `producer_pid: u32` | |
//!
//! Slot *i*'s header, at 64 + 64·*i*: `state: u32` (atomic: [`SlotState`]), `format: u32`
//! (1 = I420, BT.601 limited range, tightly packed), `frame_id: u64`, `present_ns: u64`
//! (CLOCK_MONOTONIC at the game's present), `width: u32`, `height: u32`, `len: u64` (bytes of
//! pixels), `seq: u64` (publication order), `hook_ns: u64` (time the layer spent in the game's
//! present call for this frame), `published_ns: u64` (CLOCK_MONOTONIC when the frame was
//! written). Slot *i*'s pixels start at
//! `data_offset + i · slot_capacity`.
//!
//! # Protocol
//!
//! The writer takes a `Free` slot (compare-and-swap to `Writing`), fills pixels and fields,
//! stores `Ready` with release ordering and adds 1 to the eventfd. With no `Free` slot it drops
//! the frame and adds 1 to `dropped`: it never waits for the reader. The reader takes the
//! `Ready` slot with the lowest `seq` (compare-and-swap to `Reading`, acquire), copies it, and
//! stores `Free`. Frame ids count every frame the game presented on the captured swapchain, so
//! a gap in the ids the reader sees is a drop, and the gaps add up to at most `dropped`.
//!
//! The reader trusts nothing in the mapping: sizes are checked against the file size and the
//! slot capacity, and a slot with impossible fields is freed and skipped.

use std::io;

mod fds;
mod mapping;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub(crate) use fds::{hung_up, poll_fds};
pub use reader::RingReader;
pub use writer::RingWriter;

/// The environment variable that tells the capture layer where the node's socket is.
pub const SOCKET_ENV: &str = "STRATUS_CAPTURE_SOCKET";
/// First bytes of the ring file.
pub const MAGIC: [u8; 8] = *b"STRATUSR";
/// Protocol version in the header.
pub const VERSION: u32 = 1;
/// The message the layer sends with the two descriptors.
pub const HELLO: &[u8] = b"stratus-ring/1";
/// Bytes of the header page.
pub const HEADER_LEN: usize = 4096;
/// Most slots a ring may have (their headers must fit in the header page).
pub const MAX_SLOTS: u32 = 16;
/// Slots the layer makes.
pub const DEFAULT_SLOTS: u32 = 4;
/// Largest slot a reader accepts (an 8192×8192 I420 frame).
pub const MAX_SLOT_CAPACITY: u64 = 8192 * 8192 * 3 / 2;
/// Bytes a slot holds by default: one I420 frame of 4096×2160. The memfd is sparse, so only
/// the pages frames touch are ever allocated.
pub const DEFAULT_SLOT_CAPACITY: usize = 4096 * 2160 * 3 / 2;
/// Value of a slot's `format` field for tightly packed I420.
pub const FORMAT_I420: u32 = 1;

const SLOT_HEADERS_AT: usize = 64;
const SLOT_HEADER_LEN: usize = 64;
const PAGE: usize = 4096;

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// Empty; the writer may take it.
    Free = 0,
    /// The writer is filling it.
    Writing = 1,
    /// Holds a frame the reader has not taken.
    Ready = 2,
    /// The reader is copying it out.
    Reading = 3,
}

/// Ring and socket errors.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Io {
        /// What was called.
        call: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The peer sent something that is not a ring of this version.
    #[error("invalid frame ring from the capture layer: {0}")]
    Invalid(String),
}

fn io_err(call: &'static str) -> impl FnOnce(io::Error) -> RingError {
    move |source| RingError::Io { call, source }
}

fn last_err(call: &'static str) -> RingError {
    RingError::Io {
        call,
        source: io::Error::last_os_error(),
    }
}

/// What the writer knows about a frame it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// The frame's id (presents on the captured swapchain, counted from 0).
    pub frame_id: u64,
    /// CLOCK_MONOTONIC ns at the game's present.
    pub present_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Time the layer spent in the game's present call for this frame.
    pub hook_ns: u64,
}

/// Timing the layer recorded for one frame, besides its present time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameTiming {
    /// CLOCK_MONOTONIC ns at the game's present.
    pub present_ns: u64,
    /// Time the layer spent inside the game's present call.
    pub hook_ns: u64,
    /// CLOCK_MONOTONIC ns when the converted frame was in the ring.
    pub published_ns: u64,
}

/// What happened to a frame offered to [`RingWriter::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// The frame is in the ring and the reader was woken.
    Published,
    /// Every slot was busy: dropped and counted.
    Full,
    /// The frame does not fit in a slot: dropped and counted.
    TooLarge,
}
