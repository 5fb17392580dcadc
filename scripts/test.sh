#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, then every unit and integration test of
# the workspace (real Vulkan on lavapipe, real GStreamer, real WebRTC to headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --workspace --all-targets "$@"
