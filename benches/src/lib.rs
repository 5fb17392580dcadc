//! The Stratus latency lab: the `stratus-bench` harness and the pieces end-to-end tests share.
//!
//! - [`chromium`]: Debian's headless Chromium driven over the DevTools protocol.
//! - [`stats`]: percentiles and the table/JSON report every bench prints.
//! - [`pipeline`]: the in-process render → I420 → encode benchmark.
//!
//! Boundary: nothing depends on this crate.
#![deny(missing_docs)]

pub mod chromium;
pub mod pipeline;
pub mod stats;
