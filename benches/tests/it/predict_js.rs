//! The JavaScript predictor matches the Rust one on the golden vectors (being written).
