#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, builds every test, then runs every unit
# and integration test of the workspace (real Vulkan on lavapipe, real GStreamer, real WebRTC
# to headless Chromium) inside a network namespace that holds only `lo`, so no test packet —
# WebRTC, mDNS, TURN — can leave the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets --no-run "$@"

# The tests see only loopback; they run offline (everything is built above).
run='ip link set lo up && exec env STRATUS_TEST_NETNS=1 cargo test --offline --workspace --all-targets "$@"'
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  exec unshare -n -- bash -c "$run" test.sh "$@"
elif unshare -rn true 2>/dev/null; then
  exec unshare -rn -- bash -c "$run" test.sh "$@"
else
  echo "test.sh: cannot make a network namespace (unshare -n needs root, unshare -rn user" >&2
  echo "namespaces); the tests run in this one and still talk to loopback only" >&2
  exec cargo test --workspace --all-targets "$@"
fi
