#!/usr/bin/env bash
# On a machine with a GPU: runs the capture, pipeline, node and lab benchmarks on the GPU paths
# and prints one JSON summary (one key per bench: its own JSON, or why it did not run). On a
# machine without one it says so in that JSON and exits 0.
#
#   cargo build --release -p benches -p capture-layer -p capture-testapp -p client -p server
#   bash scripts/gpu-check.sh            # STRATUS_BENCH=path overrides target/release/stratus-bench
#
# A bare machine (the device machine lent to some sessions has CUDA and a Vulkan driver but no
# loader, GStreamer, Xvfb or Chromium): Debian packages placed in .gpu/ (ignored by git) are
# unpacked into / first — `bash scripts/gpu-check.sh --pack` downloads them here. Chromium does
# not fit a device call's 64 MiB, so there the lab runs its native-client case only.
set -uo pipefail
cd "$(dirname "$0")/.."

PACK=(libvulkan1 libx264-164 libgstreamer1.0-0 libgstreamer-plugins-base1.0-0
  libgstreamer-plugins-bad1.0-0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly gstreamer1.0-libav libnice10 gstreamer1.0-nice xvfb
  libxcb-xkb1 libxkbcommon-x11-0 libopus0 liborc-0.4-0)

if [ "${1:-}" = "--pack" ]; then
  mkdir -p .gpu
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
  (cd .gpu && apt-get download "${PACK[@]}")
  du -sh .gpu
  exit 0
fi

if compgen -G ".gpu/*.deb" >/dev/null; then
  for f in .gpu/*.deb; do dpkg -x "$f" / 2>/dev/null; done
  ldconfig 2>/dev/null || true
fi
# NVIDIA's driver in a container often lives outside the loader's search path.
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json; do
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; fi
done

gpu=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=$(nvidia-smi -L | head -1)
fi
if [ -z "$gpu" ] && command -v vulkaninfo >/dev/null 2>&1; then
  gpu=$(vulkaninfo --summary 2>/dev/null |
    grep -A3 -E "deviceType += PHYSICAL_DEVICE_TYPE_(DISCRETE|INTEGRATED|VIRTUAL)_GPU" |
    grep -m1 deviceName | sed 's/.*= //')
fi
if [ -z "$gpu" ]; then
  echo '{"gpu": null, "reason": "no GPU here: nvidia-smi lists none and Vulkan offers only CPU devices (lavapipe); the GPU paths were not run"}'
  exit 0
fi

bin=${STRATUS_BENCH:-target/release/stratus-bench}
if [ ! -x "$bin" ]; then
  echo "{\"gpu\": \"$gpu\", \"reason\": \"$bin is not built (cargo build --release -p benches -p capture-layer -p capture-testapp -p client -p server)\"}"
  exit 1
fi

# Each bench's JSON (and its stderr) is kept where the device machine sends files back ($OUT)
# when there is one, and printed as one line the moment it is done, so a run cut short still
# reports what it finished. The limits add up to under ten minutes, one device call.
if [ -n "${OUT:-}" ]; then
  out=$OUT
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
run() { # name, seconds, args...
  local name=$1 limit=$2
  shift 2
  if timeout "$limit" "$bin" "$@" --json >"$out/$name.json" 2>"$out/$name.err"; then
    echo "gpu-check: $name: $(tr -d '\n' <"$out/$name.json")" >&2
  else
    echo "gpu-check: $name failed: $(tail -n 3 "$out/$name.err" | tr '\n' ' ')" >&2
  fi
}
run capture 100 capture
run pipeline 60 pipeline --frames 300
run pipeline_1080p 60 pipeline --frames 300 --width 1920 --height 1080
run node 120 node --title vkcube --max-sessions 4
if command -v "${STRATUS_CHROMIUM:-chromium}" >/dev/null 2>&1; then
  run lab 220 lab --runs 2 --seconds 15
else
  run lab 220 lab --runs 3 --seconds 15 --cases stratus-native
fi

python3 - "$out" "$gpu" <<'EOF'
import json, os, sys
out, gpu = sys.argv[1], sys.argv[2]
summary = {"gpu": gpu}
failed = False
for name in ["capture", "pipeline", "pipeline_1080p", "node", "lab"]:
    try:
        with open(os.path.join(out, name + ".json")) as f:
            summary[name] = json.loads(f.read())
    except (OSError, ValueError):
        failed = True
        try:
            with open(os.path.join(out, name + ".err")) as f:
                err = f.read().strip().splitlines()[-5:]
        except OSError:
            err = []
        summary[name] = {"error": " / ".join(err) or "no output"}
print(json.dumps(summary))
sys.exit(1 if failed else 0)
EOF
