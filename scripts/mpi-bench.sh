#!/usr/bin/env bash
# What distribution costs on this machine: `twa bench --collective` in one process and
# under `mpirun -np R` for each R given (default 2), one after the other. Needs a build
# with `--features mpi` (OpenMPI: apt-get install libopenmpi-dev openmpi-bin).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --features mpi --quiet
twa=target/release/twa
mpirun_flags=(--oversubscribe)
[ "$(id -u)" = 0 ] && mpirun_flags+=(--allow-run-as-root)
"$twa" bench --collective "$@"
for ranks in ${RANKS:-2}; do
  echo
  mpirun "${mpirun_flags[@]}" -np "$ranks" "$twa" bench --collective "$@"
done
