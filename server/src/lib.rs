//! The Stratus node: streams titles to players.
//!
//! A [`Node`] keeps a WebSocket to the signaling service and runs one [`session`] per player:
//! the title renders ([`capture::offscreen::DemoSource`]), the encoder turns frames into H.264
//! access units ([`encoder::Encoder`]), and a webrtc-rs peer connection sends them with
//! congestion control (GCC over TWCC) whose estimate drives the encoder bitrate, and PLI/FIR
//! forcing keyframes.
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
pub mod backoff;
pub mod config;
pub mod controls;
pub mod media;
pub mod peer;
pub mod probe;
pub mod session;

pub use agent::Node;
