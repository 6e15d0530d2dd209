#!/usr/bin/env bash
# The web check: build the app for the browser (web/build.sh: WebAssembly with Debian's
# rustc-web, then wasm-bindgen), serve it on 127.0.0.1 and run the spirals demo in
# headless Chromium (WebGPU on SwiftShader) with Playwright: the run must finish with
# its accuracies above 90 % and within 0.5 points of the same demo run natively, and a
# finite 33² landscape. Prints the browser's summary (accuracies, frame times).
#
# Debian 12 only (rustc-web is in bookworm-security). As root the script installs what
# it needs: the packages below, wasm-bindgen-cli at the locked wasm-bindgen version
# (≈ 5 minutes, once) and Playwright's driver (playwright-core, no browser download).
# Usage: scripts/web-check.sh [--screenshot FILE]
set -euo pipefail
cd "$(dirname "$0")/.."

screenshot=target/web-check/web.png
case "${1:-}" in
  --screenshot) screenshot=$2 ;;
  "") ;;
  *) echo "web-check: usage: $0 [--screenshot FILE]" >&2; exit 2 ;;
esac
log() { printf '\n== web-check: %s\n' "$*"; }

packages=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 chromium mesa-vulkan-drivers)
# A Node.js of the machine's own will do; else Debian's.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "web-check: missing packages, install them as root: apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 2
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

wanted=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | cut -d' ' -f2)" != "$wanted" ]; then
  log "installing wasm-bindgen-cli $wanted"
  cargo install wasm-bindgen-cli --version "$wanted"
fi

log "building the site"
started=$(date +%s)
bash web/build.sh
echo "web-check: built in $(($(date +%s) - started)) s; $(stat -c %s web/dist/twa_app_bg.wasm) bytes of WebAssembly after wasm-bindgen"

log "the spirals demo natively (the reference)"
mkdir -p target/web-check "$(dirname "$screenshot")"
WGPU_BACKEND=vulkan cargo run --release --locked --bin twa -- run --preset spirals \
  --out target/web-check/native --json > target/web-check/native.json

log "the spirals demo in headless Chromium"
(cd web/test && npm ci --no-audit --no-fund)
node web/test/browser-test.mjs --dist web/dist --native target/web-check/native.json \
  --screenshot "$screenshot" --json target/web-check/browser.json --timeout 1200
