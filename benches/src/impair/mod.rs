//! The impairment lab: what real networks do to a stream, reproduced on loopback.
//!
//! - [`link`]: one direction of an impaired path, Sans-IO (delay, jitter with or without
//!   reordering, i.i.d. and Gilbert–Elliott loss, a rate cap in front of a drop-tail queue
//!   measured in ms, blackouts).
//! - [`scenario`]: R1–R10 and their timelines.
//! - [`relay`]: the UDP relay that puts a [`link::Link`] in each direction between a player and
//!   a node, for our client session and for a browser, and measures what crosses it.
//! - [`measure`]: freezes (W3C), recovery, rate tracking.
//! - [`bench`]: `stratus-bench impair`.

pub mod bench;
pub mod link;
pub mod measure;
pub mod relay;
pub mod scenario;
