//! The capture layer in real Vulkan programs on lavapipe under Xvfb: Debian's `vkcube` and our
//! own test title `stratus-vk-testapp` (package `capture-testapp`, found next to these test
//! programs), with the node's end (`RingSource`) in this process.
//!
//! Tests skip (printing why) only when `Xvfb` or `vkcube` is not installed.

mod harness;

mod resize;
mod vkcube;
