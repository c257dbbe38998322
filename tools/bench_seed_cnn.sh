#!/usr/bin/env bash
# bench_seed_cnn.sh: the main job (seed CNN training, then single-image inference) with Loom
# and with PyTorch, interleaved, and a Markdown table of medians and per-pair ratios.
#
#   bash tools/bench_seed_cnn.sh OUTDIR [REPEATS] [THREADS]
#
# For each thread count of THREADS (default "1 2") and each repeat (default 3) it runs
# build-cpu/seed_cnn (300 steps: --limit 19200 --epochs 1, Loom's loader feeding the batches)
# and tools/bench_seed_cnn_torch.py (300 steps after 20 warm-up ones, its data already in one
# tensor: PyTorch's fast path), Loom first in odd repeats, PyTorch first in even ones, both with
# OMP_NUM_THREADS=N. Their outputs go to OUTDIR/runs.log; OUTDIR/report.md gets a header
# (date, CPU, load before and after, commit, torch version) and, per thread count, the median
# training samples/s and single-image latency (mean over 200 calls) of each, with the median
# of the pair ratios (> 1: Loom is better) and their min..max.
#
# Environment: SEED_CNN (default build-cpu/seed_cnn), PYTHON (Python with torch, default
# python3), OMP_WAIT_POLICY (default passive, as tools/common.sh; "default" leaves it unset,
# libgomp's own policy, which PyTorch prefers at 2 threads).
set -u
cd "$(dirname "$0")/.." || exit 2
if [ $# -lt 1 ]; then
  echo "usage: bash tools/bench_seed_cnn.sh OUTDIR [REPEATS] [THREADS]" >&2
  exit 2
fi
OUT=$1
REPEATS=${2:-3}
THREADS=${3:-"1 2"}
PROG=${SEED_CNN:-build-cpu/seed_cnn}
PYTHON=${PYTHON:-python3}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ "$OMP_WAIT_POLICY" != default ] || unset OMP_WAIT_POLICY  # libgomp's own: spin a while, then sleep
[ -x "$PROG" ] || { echo "bench_seed_cnn: $PROG not built (cmake --build build-cpu)" >&2; exit 2; }
mkdir -p "$OUT"
LOG=$OUT/runs.log
: > "$LOG"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# run_one FRAMEWORK THREADS REPEAT COMMAND...: the run's output to runs.log, and its
# training samples/s and mean single-image latency to results.txt.
run_one() {
  local fw=$1 t=$2 r=$3 o sps lat
  shift 3
  o=$(OMP_NUM_THREADS=$t "$@" 2>&1)
  printf '== %s threads %s repeat %s\n%s\n' "$fw" "$t" "$r" "$o" >> "$LOG"
  sps=$(echo "$o" | sed -n 's/^\(seed CNN \)\{0,1\}training: .* \([0-9.]*\) samples\/s.*/\2/p')
  lat=$(echo "$o" | sed -n 's/.*mean \([0-9.]*\) ms, p50.*/\1/p')
  echo "$fw $t $r ${sps:-nan} ${lat:-nan}" >> "$OUT/results.txt"
}
loom_run() { run_one loom "$1" "$2" "$PROG" --device cpu --limit 19200 --epochs 1 --log-every 1000 --checkpoint "$OUT/ckpt"; }
torch_run() { run_one torch "$1" "$2" "$PYTHON" tools/bench_seed_cnn_torch.py --steps 300 --warmup 20 --threads "$1"; }

: > "$OUT/results.txt"
for t in $THREADS; do
  for r in $(seq 1 "$REPEATS"); do
    echo "bench_seed_cnn: threads $t, repeat $r/$REPEATS" >&2
    if [ $((r % 2)) -eq 1 ]; then loom_run "$t" "$r"; torch_run "$t" "$r"
    else torch_run "$t" "$r"; loom_run "$t" "$r"; fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

"$PYTHON" - "$OUT" "$load_before" "$load_after" <<'EOF'
import math, os, platform, statistics, subprocess, sys, time
out, before, after = sys.argv[1:4]
rows = [l.split() for l in open(f"{out}/results.txt")]
res = {}
for fw, t, r, sps, lat in rows:
    res[(fw, int(t), int(r))] = (float(sps), float(lat))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
try:
    import torch
    tv = torch.__version__
except ImportError:
    tv = "?"
def med(v):
    v = [x for x in v if not math.isnan(x)]
    return statistics.median(v) if v else math.nan
policy = os.environ.get("OMP_WAIT_POLICY", "unset (libgomp's default)")
lines = [f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, {platform.node()}, "
         f"load before {before}, after {after}, Loom {commit}, torch {tv}, OMP_WAIT_POLICY {policy}", "",
         "| threads | Loom samples/s | PyTorch samples/s | Loom / PyTorch (min..max) | Loom 1-image ms | "
         "PyTorch 1-image ms | PyTorch ms / Loom ms (min..max) |",
         "|---|---|---|---|---|---|---|"]
for t in sorted({k[1] for k in res}):
    reps = sorted({k[2] for k in res if k[1] == t})
    pairs = [(res[("loom", t, r)], res[("torch", t, r)]) for r in reps
             if ("loom", t, r) in res and ("torch", t, r) in res]
    tr = [l[0] / p[0] for l, p in pairs]
    lr = [p[1] / l[1] for l, p in pairs]
    rng = lambda v: f"{med(v):.2f} ({min(v):.2f}..{max(v):.2f})" if v and not any(map(math.isnan, v)) else "n/a"
    lines.append(f"| {t} | {med([l[0] for l, _ in pairs]):.0f} | {med([p[0] for _, p in pairs]):.0f} | {rng(tr)} | "
                 f"{med([l[1] for l, _ in pairs]):.3f} | {med([p[1] for _, p in pairs]):.3f} | {rng(lr)} |")
open(f"{out}/report.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
