#!/bin/bash
# Data-parallel scaling on the CPU, 1 -> 2 ranks: examples/ddp_train (Loom, MPI) beside
# tools/bench_ddp_torch.py (PyTorch DDP, gloo), interleaved, REPEATS rounds.
# Usage: tools/bench_ddp.sh BUILD_DIR [REPEATS=3] [PYTHON=python3]   (torch must import in PYTHON)
set -u
build=${1:?usage: tools/bench_ddp.sh BUILD_DIR [REPEATS] [PYTHON]}
repeats=${2:-3}
py=${3:-python3}
torchrun=$(dirname "$py")/torchrun
here=$(cd "$(dirname "$0")" && pwd)
echo "== $(date -u '+%F %T') UTC, $(nproc --all) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), 1 thread per rank"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
for r in $(seq 1 "$repeats"); do
  for n in 1 2; do
    echo "-- round $r, $n rank(s)"
    mpiexec -np "$n" --allow-run-as-root --oversubscribe --bind-to none "$build/ddp_train" --limit 12000 \
      --log-every 100000 2>&1 | grep -E "throughput|all-reduce|test accuracy"
    "$torchrun" --nproc-per-node "$n" "$here/bench_ddp_torch.py" --steps 150 2>&1 | grep "pytorch ddp"
  done
done
