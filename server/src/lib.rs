//! The Stratus node: streams titles to players.
//!
//! A [`Node`] keeps a WebSocket to the signaling service and runs one [`session`] per player:
//! the [`title`] runs (the built-in demo renders in-process with
//! [`capture::offscreen::DemoSource`]; a catalog program runs in its own [`sandbox`] — display,
//! process group, capture layer — with its sound in its own sink), the encoder turns frames into
//! H.264 access units ([`encoder::Encoder`]), and a webrtc-rs peer connection sends them and
//! the Opus sound with congestion control (GCC over TWCC) whose estimate drives the encoder
//! bitrate, and PLI/FIR forcing keyframes. [`metrics`] are served at `/metrics`.
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
pub mod backoff;
pub mod config;
pub mod controls;
pub mod ladder;
pub mod media;
pub mod metrics;
pub mod peer;
pub mod probe;
pub mod sandbox;
pub mod session;
pub mod title;

pub use agent::{Drainer, Node};
