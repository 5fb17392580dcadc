#!/usr/bin/env bash
# The one-command demo: installs what is missing, builds, and starts a signaling service and a
# node with the built-in demo title on loopback. Open the printed URL in a browser.
# Extra arguments go to stratus-node (e.g. --fps 30, or --demo 0.0.0.0:8080 to listen wider).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
if [ ${#args[@]} -eq 0 ]; then args=(--demo); fi
exec cargo run --release --bin stratus-node -- "${args[@]}"
