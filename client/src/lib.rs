//! Stratus thin clients.
//!
//! - The browser client: a static page (`client/web/`) that the signaling service embeds and
//!   serves.
//! - The native client, `stratus-client` ([`app::run`]): a winit window that plays a session.
//!   Its parts, each usable alone:
//!   - [`session`]: the one client session (token, signaling, the webrtc-rs peer connection,
//!     input out) that the native client, the checker and every test player use;
//!   - [`recovery`]: the reorder buffer and bounded NACK in front of it (sans-IO);
//!   - [`depacketize`]: H.264 RTP to Annex B access units (sans-IO);
//!   - [`video`]: GStreamer decoding, hardware decoders probed first;
//!   - [`audio`]: Opus decoding, level, playback;
//!   - [`input_map`]: window events to wire events through the pointer predictor;
//!   - [`gamepad`]: gamepads (gilrs) in the Standard Gamepad layout;
//!   - [`controller`]: the connect / play / node-lost / reconnect loop and its screens;
//!   - [`measure`]: glass-to-glass, input-to-photon and frame rate from presented pixels;
//!   - [`font`]: the bitmap font of the overlay and screens;
//!   - [`http`]: the two HTTP calls before the WebSocket.
//! - [`latency_code`]: reads the latency and frame-id codes from decoded pixels, which is how a
//!   receiver measures glass-to-glass latency and checks it shows the right frame.
#![deny(missing_docs)]

pub mod app;
pub mod audio;
pub mod controller;
pub mod depacketize;
mod draw;
pub mod font;
pub mod gamepad;
pub mod http;
pub mod input_map;
pub mod latency_code;
pub mod measure;
pub mod recovery;
pub mod session;
pub mod video;
