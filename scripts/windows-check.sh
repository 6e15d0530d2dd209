#!/usr/bin/env bash
# The Windows check: build the engine and CLI for x86_64-pc-windows-gnu, type-check
# the app for it, then run the Windows twa.exe under Wine on Mesa's lavapipe and
# compare its accuracies with the Linux build's for the same seed (the same shaders
# on the same driver: identical results are expected, 0.1 point is the limit).
#
# Debian 12 only: Debian's rustc-web (Rust 1.96 with its std source, from
# bookworm-security) builds std for the target (-Zbuild-std); rustup's toolchains
# cannot build that std source. As root the script installs what it needs.
# Usage: scripts/windows-check.sh [--no-app]   (--no-app: skip the app's type check)
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
work=target/windows-check
check_app=1
for arg in "$@"; do
  case "$arg" in
    --no-app) check_app=0 ;;
    *) echo "windows-check: unknown argument $arg (usage: $0 [--no-app])" >&2; exit 2 ;;
  esac
done
log() { printf '\n== windows-check: %s\n' "$*"; }

if [ -z "${TWA_WINDOWS_CHECK_UNDER_X:-}" ]; then
  packages=(gcc-mingw-w64-x86-64 wine wine64 libwine xvfb xauth mesa-vulkan-drivers
    rustc-web cargo-web rust-web-src rust-web-llvm jq)
  missing=()
  for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
      echo "windows-check: missing packages, install them as root: apt-get install --no-install-recommends ${missing[*]}" >&2
      exit 2
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # Wine's Vulkan needs an X display; a private Xvfb keeps the run headless.
  TWA_WINDOWS_CHECK_UNDER_X=1 exec xvfb-run -a -s "-screen 0 1024x768x24" "$0" "$@"
fi

started=$SECONDS
# Debian's toolchain first: its rustc matches the std source that -Zbuild-std
# compiles. A separate target directory keeps it apart from rustup's builds.
debian_cargo=(env PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/windows
  /usr/bin/cargo)
build_std=(--release --locked --target "$target" -Zbuild-std=std,panic_abort)

log "building twa.exe ($(/usr/bin/rustc --version))"
"${debian_cargo[@]}" build "${build_std[@]}" --bin twa
if ((check_app)); then
  log "type-checking the app for $target"
  "${debian_cargo[@]}" check "${build_std[@]}" -p twa-app
fi
log "building the Linux twa"
cargo build --release --locked --bin twa
built=$SECONDS

rm -rf "$work"
mkdir -p "$work/bin" "$work/linux" "$work/windows"
cp "target/windows/$target/release/twa.exe" "$work/bin/"
# Wine 8.0 lacks ProcessPrng, which Rust's std calls: a shim next to the .exe.
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bin/bcryptprimitives.dll" \
  scripts/windows/processprng.c -ladvapi32

# Both builds on lavapipe, whatever else the machine has (Mesa 22.3 names its
# manifest lvp_icd.x86_64.json, Mesa 25 lvp_icd.json).
lavapipe=$(ls /usr/share/vulkan/icd.d/lvp_icd*.json | head -n 1)
export VK_DRIVER_FILES=$lavapipe VK_ICD_FILENAMES=$lavapipe WGPU_BACKEND=vulkan
export WINEPREFIX="$PWD/$work/prefix" WINEARCH=win64 WINEDEBUG=-all
# No Mono or Gecko prompts; the shim before Wine's own bcryptprimitives.
export WINEDLLOVERRIDES="mscoree,mshtml=;bcryptprimitives=n,b"
log "creating a fresh Wine prefix"
wine wineboot -i >/dev/null 2>&1
linux=target/release/twa
windows=(wine "$work/bin/twa.exe")

log "twa.exe info"
"${windows[@]}" info | tee "$work/windows/info.txt"
grep -q "Vulkan" "$work/windows/info.txt" || {
  echo "windows-check: twa.exe found no Vulkan adapter under Wine" >&2
  exit 1
}

# Run one command on both builds; the last stdout line is the --json summary.
both() {
  local name=$1
  shift
  log "$name: twa $*"
  "$linux" "$@" --json --out "$work/linux/$name" | tail -n 1 >"$work/linux/$name.json"
  "${windows[@]}" "$@" --json --out "$work/windows/$name" | tr -d '\r' | tail -n 1 \
    >"$work/windows/$name.json"
}
both train train
both spirals run --preset spirals

log "bad input exits 1 with a message on Windows too"
set +e
"${windows[@]}" eval --model "$work/windows/no-such-model.safetensors" 2>"$work/windows/bad.txt"
code=$?
set -e
cat "$work/windows/bad.txt"
if [ "$code" != 1 ] || ! grep -q "no-such-model.safetensors" "$work/windows/bad.txt"; then
  echo "windows-check: a missing model file gave exit code $code (expected 1 and its name)" >&2
  exit 1
fi

# Without WGPU_BACKEND, as a user starts it: Wine 8.0's DX12 (vkd3d over lavapipe)
# ranks first and fails to open a device, so twa must fall back to Vulkan.
log "twa.exe eval of its own model, default adapter choice"
env -u WGPU_BACKEND "${windows[@]}" eval --model "$work/windows/train/model.safetensors" --json \
  --out "$work/windows/eval" | tr -d '\r' | tail -n 1 >"$work/windows/eval.json"

# Ctrl-C on Windows (Wine turns SIGINT into a console Ctrl-C event): the main job
# stopped after its second epoch exits 130 with a checkpoint; resumed, it must end
# with the same model as the Linux run that was never stopped.
log "Ctrl-C and --resume under Wine"
stopped=$work/windows/stopped
"${windows[@]}" train --out "$stopped" >"$work/windows/stopped.txt" 2>&1 &
runner=$!
until [ "$(wc -l <"$stopped/metrics.jsonl" 2>/dev/null || echo 0)" -ge 2 ]; do
  kill -0 "$runner" 2>/dev/null || break
  sleep 0.2
done
pkill -INT -f "^$work/bin/twa.exe train --out $stopped" || true
code=0
wait "$runner" || code=$?
tail -n 3 "$work/windows/stopped.txt"
if [ "$code" != 130 ] || [ ! -f "$stopped/checkpoint.safetensors" ]; then
  echo "windows-check: Ctrl-C gave exit code $code (expected 130 and a checkpoint in $stopped)" >&2
  exit 1
fi
"${windows[@]}" train --resume "$stopped" | tail -n 1

# Accuracy rows side by side; any difference above 0.1 point fails the check.
compare() {
  local name=$1 rows=$2
  jq -rn --slurpfile l "$work/linux/$name.json" --slurpfile w "$work/windows/$name.json" "
    def pct: . * 10000 | round / 100 | tostring + \" %\";
    [\$l[0] | $rows] as \$a | [\$w[0] | $rows] as \$b
    | range(0; \$a | length) as \$i
    | [\"$name\", \$a[\$i].label, (\$a[\$i].acc | pct), (\$b[\$i].acc | pct),
       (if ((\$a[\$i].acc - \$b[\$i].acc) | fabs) <= 0.001 then \"ok\" else \"DIFFERENT\" end)]
    | @tsv"
}
{
  printf 'job\trow\tlinux\twine\t\n'
  compare train '{label: "test acc", acc: .test_acc}'
  compare spirals '.rows[] | {label: .method, acc: .test_acc}'
  jq -rn --slurpfile t "$work/windows/train.json" --slurpfile e "$work/windows/eval.json" '
    def pct: . * 10000 | round / 100 | tostring + " %";
    ["eval", "twa.exe eval of its model (vs its training)", ($t[0].test_acc | pct),
     ($e[0].test_acc | pct),
     (if $t[0].test_acc == $e[0].test_acc then "ok" else "DIFFERENT" end)] | @tsv'
} | column -t -s $'\t' | tee "$work/summary.txt"
same() {
  local what=$1 linux_file=$2 windows_file=$3
  if cmp -s "$linux_file" "$windows_file"; then
    echo "$what: identical bytes on Linux and under Wine"
  else
    echo "$what: different bytes on Linux and under Wine"
  fi
}
{
  same "train model" "$work/linux/train/model.safetensors" "$work/windows/train/model.safetensors"
  same "spirals SWA" "$work/linux/spirals/swa.safetensors" "$work/windows/spirals/swa.safetensors"
  same "spirals TWA" "$work/linux/spirals/twa.safetensors" "$work/windows/spirals/twa.safetensors"
  same "train model, stopped by Ctrl-C and resumed under Wine" \
    "$work/linux/train/model.safetensors" "$stopped/model.safetensors" | sed 's/different/DIFFERENT/'
  echo "builds $((built - started)) s, runs $((SECONDS - built)) s"
} | tee -a "$work/summary.txt"
wineserver -k 2>/dev/null || true
if grep -q DIFFERENT "$work/summary.txt"; then
  echo "windows-check: FAILED (see the rows marked DIFFERENT above)" >&2
  exit 1
fi
log "passed"
