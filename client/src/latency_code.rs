//! The latency and frame-id codes, read from decoded pixels: [`stream_formats::latency_code`],
//! re-exported so the client's code keeps its paths.
pub use stream_formats::latency_code::*;
