#!/usr/bin/env bash
# Build the app for the web: a static site (index.html, twa_app.js, twa_app_bg.wasm,
# and data/fashion-mnist-subset for the Fashion-MNIST presets) in web/dist that any
# static file server can host.
#
# Needs (Debian 12): apt-get install --no-install-recommends rustc-web cargo-web
#   rust-web-src rust-web-llvm lld-22
# and wasm-bindgen-cli at the locked wasm-bindgen version (the script says which).
# Debian's rustc-web builds the standard library for wasm32 from its source
# (-Zbuild-std); rustup's toolchains are not used for this.
set -euo pipefail
cd "$(dirname "$0")/.."

out=web/dist
wanted=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if ! command -v wasm-bindgen >/dev/null || [ "$(wasm-bindgen --version | cut -d' ' -f2)" != "$wanted" ]; then
  echo "web/build.sh: needs wasm-bindgen $wanted: cargo install wasm-bindgen-cli --version $wanted" >&2
  exit 2
fi
for tool in /usr/bin/cargo /usr/bin/rustc; do
  [ -x "$tool" ] || { echo "web/build.sh: needs Debian's rustc-web and cargo-web ($tool)" >&2; exit 2; }
done

PATH=/usr/bin:$PATH RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/web \
  /usr/bin/cargo build --release --locked -p twa-app --lib \
  --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort

rm -rf "$out"
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-dir "$out" \
  target/web/wasm32-unknown-unknown/release/twa_app.wasm
cp web/index.html "$out/"
# The Fashion-MNIST presets fetch the shipped subset from beside the page.
mkdir -p "$out/data/fashion-mnist-subset"
cp assets/fashion-mnist-subset/*.gz assets/fashion-mnist-subset/LICENSE "$out/data/fashion-mnist-subset/"
echo "web/build.sh: $out: $(du -h "$out/twa_app_bg.wasm" | cut -f1) of WebAssembly; serve it, e.g. python3 -m http.server -d $out -b 127.0.0.1 8000"
