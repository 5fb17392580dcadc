//! The Stratus node: streams titles to players.
//!
//! A [`Node`] keeps a WebSocket to the signaling service and runs one session per player. The
//! crate's rooms:
//!
//! - `agent` — the [`Node`] itself: the signaling connection with jittered backoff, sessions
//!   as tasks, draining ([`Drainer`]), and the probe endpoint that serves the RTT probe and
//!   [`metrics`] at `/metrics`.
//! - [`session`] — one player's session. Its decisions (bitrate, keyframes, the quality
//!   ladder, grace periods, limits) are the Sans-IO [`session::control::SessionControl`]; the
//!   async driver around it negotiates, owns the webrtc-rs peer connection and writes the
//!   samples.
//! - `media` — the capture and encode threads, the quality ladder's rungs, and the stream
//!   geometry that travels with every frame so pointer, region of interest and injected input
//!   agree at every rung.
//! - [`title`] — what a session runs: the built-in demo ([`title::demo`], rendered in-process
//!   on Vulkan) or a catalog program in its own [`title::sandbox`] (display, process group,
//!   capture layer), each with its sound in the session's own sink ([`audio`]).
//! - `input` — the per-session input path: gate, geometry, injector.
//!
//! ```no_run
//! # async fn demo() {
//! use server::{Node, config::NodeConfig};
//! let node = Node::new(NodeConfig::loopback("ws://127.0.0.1:8080/ws/node"));
//! node.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # }
//! ```
//!
//! Boundary: configuration is parsed only in `main` and [`config`].
#![deny(missing_docs)]

mod agent;
pub mod audio;
pub mod config;
mod input;
pub mod media;
pub mod metrics;
pub mod session;
pub mod title;

pub use agent::{Drainer, Node};
