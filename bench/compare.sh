#!/usr/bin/env bash
# twa against PyTorch on this machine's CPU, one after the other, ratios from the same
# run: seconds per epoch (training + test evaluation) of the MLP (the fashion-mnist
# preset) and, with --cnn, of the `cnn` preset; GEMM 1024³ against numpy's sgemm.
# PyTorch runs with THREADS threads (default: all cores, as lavapipe uses them).
# Needs `pip install torch numpy`; not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA:-/usr/share/datasets/fashion-mnist}
threads=${THREADS:-$(nproc)}
out=${OUT:-runs/compare}
mkdir -p "$out"
cargo build --release --quiet
twa=target/release/twa
models=(mlp)
[ "${1:-}" = --cnn ] && models+=(cnn)
printf '%-6s %12s %12s %8s\n' model "twa s/epoch" "torch s/epoch" ratio
for m in "${models[@]}"; do
  if [ "$m" = mlp ]; then preset=fashion-mnist; epochs=2; else preset=cnn; epochs=1; fi
  "$twa" train --preset "$preset" --data "$data" --epochs "$epochs" --out "$out/$m" > /dev/null 2>&1
  ours=$(jq -s 'map(select(.seconds != null)) | last | .seconds' "$out/$m/metrics.jsonl")
  theirs=$(python3 bench/pytorch_reference.py --data "$data" --model "$m" --epochs "$epochs" \
    --threads "$threads" | tee "$out/$m-torch.json" | jq '.epochs | last | .seconds')
  printf '%-6s %12.2f %12.2f %8.2f\n' "$m" "$ours" "$theirs" "$(echo "$ours / $theirs" | bc -l)"
done
"$twa" bench --json | tail -n 1 > "$out/bench.json"
jq -r '"GEMM 1024³: twa \(."gemm 1024 GFLOP/s" | floor) GFLOP/s, numpy \(."numpy sgemm 1024 GFLOP/s" // "–" | if type == "number" then floor else . end) GFLOP/s"' "$out/bench.json"
