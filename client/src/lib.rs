//! Stratus thin clients.
//!
//! - The browser client: a static page (`client/web/`) that the signaling service embeds and
//!   serves.
//! - [`latency_code`]: reads the latency and frame-id codes from decoded pixels, which is how a
//!   receiver measures glass-to-glass latency and checks it shows the right frame.
//!
//! The native winit client builds on these.
#![deny(missing_docs)]

pub mod latency_code;
