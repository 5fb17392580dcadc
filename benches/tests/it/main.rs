//! End-to-end tests of the whole product with real parts: the signaling service, a node with
//! the demo title on lavapipe, and Debian's headless Chromium, all on loopback.

mod browser_client;
mod cc_interop;
mod drain;
mod errors;
mod first_light;
mod impair;
mod input_demo;
mod keyframe;
mod lab_bench;
mod ladder;
mod loopback;
mod native_client;
mod node_sessions;
mod predict_js;
mod relay;
mod support;
mod title_picker;
mod title_sizes;
