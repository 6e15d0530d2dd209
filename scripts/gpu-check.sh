#!/usr/bin/env bash
# On a machine with a real GPU: the test suite on that adapter, `twa bench`, and the
# head preset's pipeline with its timings, ending with one summary (meant to take
# under 8 minutes on a GPU; on lavapipe it takes longer). Files go to $OUT
# (default runs/gpu-check). DATA: the full Fashion-MNIST if installed, else the
# shipped subset. Pick the adapter with TWA_ADAPTER (an index or name from `twa info`)
# and the backend with WGPU_BACKEND as usual.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu-check}
mkdir -p "$out"
data=${DATA:-/usr/share/datasets/fashion-mnist}
[ -d "$data" ] || data=assets/fashion-mnist-subset
adapter=()
[ -n "${TWA_ADAPTER:-}" ] && adapter=(--adapter "$TWA_ADAPTER")
seconds() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(seconds)" 'BEGIN { printf "%.0f", b - a }'; }

cargo build --release --quiet || exit 1
twa=target/release/twa
"$twa" info > "$out/info.txt" 2>&1

t=$(seconds)
if cargo test --release --quiet --workspace > "$out/tests.txt" 2>&1; then tests=passed; else tests=FAILED; fi
tests_s=$(elapsed "$t")

t=$(seconds)
"$twa" "${adapter[@]}" bench --json > "$out/bench.txt" 2>&1 && bench=ok || bench=FAILED
bench_s=$(elapsed "$t")
tail -n 1 "$out/bench.txt" > "$out/bench.json"

t=$(seconds)
"$twa" "${adapter[@]}" run --preset head --data "$data" --out "$out/head" --json > "$out/head.txt" 2>&1 && head=ok || head=FAILED
head_s=$(elapsed "$t")
tail -n 1 "$out/head.txt" > "$out/head.json"

echo "== gpu-check summary ($out)"
head -n 1 "$out/info.txt"
echo "tests: $tests in ${tests_s} s (log: $out/tests.txt)"
echo "bench: $bench in ${bench_s} s"
echo "head preset on $data: $head in ${head_s} s"
if command -v jq > /dev/null && [ "$bench" = ok ] && [ "$head" = ok ]; then
  jq -r '"  adapter used: \(.adapter)",
         "  GEMM 1024³: \(."gemm 1024 GFLOP/s" | floor) GFLOP/s",
         "  TWA projection: \(."twa projection".gbs * 10 | floor / 10) GB/s, \(."twa projection".ratio * 100 | floor / 100) × a copy",
         "  explicit 8-bit TWA step: \(."explicit twa step 8-bit".ms * 100 | floor / 100) ms",
         "  projected TWA step / SGD step: MLP \(."mlp twa step".ratio * 100 | floor / 100)×, cnn \(."cnn twa step".ratio * 100 | floor / 100)×",
         "  training: \(."training samples/s" | floor) samples/s"' "$out/bench.json"
  jq -r '.rows[] | "  \(.method): \(.test_acc * 10000 | floor / 100) % at \(.seconds * 10 | floor / 10) s"' "$out/head.json"
  jq -r '(.rows | map({(.method): .seconds}) | add) as $s
         | "  TWA / SGD (epoch 20) wall time: \(($s["TWA"] // $s["TWA-v"]) / $s["SGD (epoch 20)"] * 100 | floor) %"' "$out/head.json"
else
  echo "  (jq not found or a step failed: see the files above)"
fi
[ "$tests" = passed ] && [ "$bench" = ok ] && [ "$head" = ok ]
