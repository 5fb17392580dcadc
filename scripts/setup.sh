#!/usr/bin/env bash
# Installs every Debian package Stratus needs to build, run and test, idempotently and
# non-interactively. Safe to run again on a machine where everything is already present.
set -euo pipefail

PACKAGES=(
  # build
  pkg-config build-essential clang libclang-dev
  # GStreamer 1.22 (encode, decode, test sources) and libx264
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libx264-dev
  # the latency lab's reference sender: webrtcbin's ICE (libnice's GStreamer elements)
  gstreamer1.0-nice
  # Vulkan: the loader, Mesa's lavapipe CPU driver, vulkaninfo and vkcube
  libvulkan-dev mesa-vulkan-drivers vulkan-tools
  # windows and browsers for tests
  xvfb xauth chromium chromium-driver
  # tools the tests and scripts use
  curl ca-certificates procps iproute2
  # the signaling service's shared store and TURN relay, started by the tests
  redis-server coturn
  # session audio: a PulseAudio server per node, pulsesrc, libopus
  pulseaudio pulseaudio-utils gstreamer1.0-pulseaudio libopus-dev
  # the native client's window (winit on X11, loaded at run time) and gamepads (gilrs, udev)
  libx11-dev libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 libudev-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages already installed"
else
  echo "setup: installing ${#missing[@]} packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# cargo-nextest is optional; the test command falls back to cargo test when it is absent.
if ! command -v rustc >/dev/null; then
  echo "setup: no Rust toolchain found; install one with rustup (https://rustup.rs) first" >&2
  exit 1
fi
