//! The Stratus latency lab: the `stratus-bench` harness and the pieces end-to-end tests share.
//!
//! - [`chromium`]: Debian's headless Chromium driven over the DevTools protocol.
//! - [`stats`]: percentiles and the table/JSON report every bench prints.
//! - [`lab`]: signaling and a node with the demo title, in process, on loopback.
//! - [`capture`]: the capture layer in a Vulkan title: present overhead, GPU conversion.
//! - [`pipeline`]: the in-process render → I420 → encode benchmark.
//! - [`predict`]: the pointer predictor against its baselines on motion traces.
//! - [`encode`]: our ROI encoder element against stock x264enc.
//! - [`e2e`]: glass-to-glass and input-to-photon latency through a real client.
//! - [`rtc_peer`]: a headless webrtc-rs player that counts frames without decoding them.
//! - [`impair`]: the impairment lab: a relay that delays, jitters, loses, caps and blacks out
//!   each direction, the scenarios R1–R10 and `stratus-bench impair`.
//! - [`viewer`]: the native client's session and decoder, headless.
//! - [`node`]: one node's capture→packet latency and how many 720p30 sessions it sustains.
//!
//! Boundary: nothing depends on this crate.
#![deny(missing_docs)]

pub mod capture;
pub mod chromium;
pub mod cpu;
pub mod e2e;
pub mod encode;
pub mod impair;
pub mod lab;
pub mod labbench;
pub mod native;
pub mod node;
pub mod pipeline;
pub mod predict;
pub mod reference;
pub mod rtc_peer;
pub mod signaling;
pub mod stats;
pub mod viewer;
