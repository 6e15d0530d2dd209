#!/usr/bin/env bash
# TWA variants side by side, as in the tables of docs/variants.md: for each run directory of
# `twa run` (its history.safetensors and results.json), every variant below through
# `twa average --method twa`, then one Markdown table of test accuracies per run with
# their mean, beside the run's own SGD, SWA and TWA rows.
#
# Usage: scripts/twa-variants.sh [--variants FILE] [--twa BIN] RUN_DIR...
#   FILE: lines `name | twa average options` (default: scripts/variants/head.txt; the
#   tail and TWA-v tables of docs/variants.md come from tail.txt and head-val.txt there).
# Each variant's average.json stays in RUN_DIR/variants/NAME; a variant already
# measured there is read back, not run again.
set -euo pipefail
cd "$(dirname "$0")/.."

twa=target/release/twa
variants_file=scripts/variants/head.txt
runs=()
while (($#)); do
  case "$1" in
    --twa) twa=$2; shift 2 ;;
    --variants) variants_file=$2; shift 2 ;;
    -*) echo "twa-variants: unknown option $1" >&2; exit 2 ;;
    *) runs+=("$1"); shift ;;
  esac
done
if ((${#runs[@]} == 0)); then
  echo "usage: $0 [--variants FILE] [--twa BIN] RUN_DIR..." >&2
  exit 2
fi
command -v jq >/dev/null || { echo "twa-variants: needs jq (apt-get install jq)" >&2; exit 2; }
[ -x "$twa" ] || cargo build --release --locked --bin twa

variants=$(cat "$variants_file")

# Percent with two decimals, or a dash.
pct() { jq -rn --argjson v "${1:-null}" 'if $v == null then "–" else ($v * 10000 | round / 100 | tostring) + " %" end'; }

header="| variant |"
rule="| --- |"
for run in "${runs[@]}"; do
  header+=" $(basename "$run") |"
  rule+=" --- |"
done
header+=" mean |"
rule+=" --- |"
echo "$header"
echo "$rule"

row() {
  local label=$1
  shift
  local line="| $label |" sum=0 n=0 v
  for v in "$@"; do
    line+=" $(pct "$v") |"
    if [ "$v" != null ]; then sum=$(jq -n "$sum + $v"); n=$((n + 1)); fi
  done
  if ((n > 0)); then line+=" $(pct "$(jq -n "$sum / $n")") |"; else line+=" – |"; fi
  echo "$line"
}

# The run's own rows from results.json.
while IFS= read -r method; do
  values=()
  for run in "${runs[@]}"; do
    values+=("$(jq --arg m "$method" '[.[] | select(.method == $m) | .test_acc][0]' "$run/results.json")")
  done
  row "$method (twa run)" "${values[@]}"
done < <(jq -r '.[].method' "${runs[0]}/results.json")

while IFS='|' read -r name options; do
  name=$(echo "$name" | sed 's/ *$//')
  [ -n "$name" ] || continue
  slug=$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | tr -s '-')
  values=()
  for run in "${runs[@]}"; do
    out="$run/variants/$slug"
    if [ ! -f "$out/average.json" ]; then
      mkdir -p "$run/variants"
      # shellcheck disable=SC2086 # the options are words
      "$twa" average --history "$run/history.safetensors" --method twa $options --out "$out" \
        >"$out.log" 2>&1 || echo "twa-variants: $name on $run failed, see $out.log" >&2
    fi
    values+=("$(jq '.results[0].test_acc' "$out/average.json" 2>/dev/null || echo null)")
  done
  row "$name" "${values[@]}"
done <<<"$variants"
