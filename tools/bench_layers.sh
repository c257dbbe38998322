#!/usr/bin/env bash
# bench_layers.sh: loom-bench-layers against tools/bench_layers_torch.py, interleaved, and a
# Markdown table of the medians and the per-pair speed ratios.
#
#   bash tools/bench_layers.sh OUTDIR [REPEATS] [THREADS] [EXTRA ARGS...]
#
# REPEATS (default 3) repeats per thread count; THREADS (default "1 2") a space-separated list
# of thread counts. For each thread count, for each mode of MODES, for each repeat, it runs
# Loom and PyTorch one after the other, Loom first in odd repeats and PyTorch first in even
# ones, both with --threads N --json, OMP_NUM_THREADS=N and the EXTRA ARGS (--runs 3,
# --only relu,softmax, ...; not --mode: set MODES). Their JSON lines, each given the repeat's
# number ("repeat": r), go to OUTDIR/layers.jsonl (an older one is kept as layers.jsonl.old),
# stderr to OUTDIR/stderr.log, failed runs to OUTDIR/failed.txt. Then it writes and prints
# OUTDIR/report.md: a header (date, machine, CPU, load before and after, Loom's commit, torch's
# version) and one row per case, mode and thread count: the median over repeats of each
# framework's median ms per call, and PyTorch ms / Loom ms (> 1: Loom is faster) as the median
# of the repeats' pair ratios, with their min..max.
#
# Environment:
#   LOOM_BENCH_LAYERS  the tool (default build-cpu/loom-bench-layers)
#   PYTHON             Python with torch (default python3)
#   MODES              modes to run (default "train infer")
#   OMP_WAIT_POLICY    passed on (default passive, as tools/common.sh: spinning OpenMP workers
#                      on a busy machine stall small ops of both frameworks)
# Run from anywhere; paths are taken relative to the repository root.
set -u
cd "$(dirname "$0")/.." || exit 2

if [ $# -lt 1 ]; then
  echo "usage: bash tools/bench_layers.sh OUTDIR [REPEATS] [THREADS] [EXTRA ARGS...]" >&2
  exit 2
fi
OUT=$1
REPEATS=${2:-3}
THREADS=${3:-"1 2"}
shift $(($# < 3 ? $# : 3))
EXTRA=("$@")
LOOM_TOOL=${LOOM_BENCH_LAYERS:-build-cpu/loom-bench-layers}
PYTHON=${PYTHON:-python3}
MODES=${MODES:-"train infer"}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

case $REPEATS in '' | *[!0-9]* | 0) echo "bench_layers.sh: REPEATS must be a positive integer, got '$REPEATS'" >&2; exit 2 ;; esac
for t in $THREADS; do
  case $t in *[!0-9]* | 0) echo "bench_layers.sh: THREADS must list positive integers, got '$THREADS'" >&2; exit 2 ;; esac
done
[ -n "${THREADS// /}" ] || { echo "bench_layers.sh: THREADS is empty" >&2; exit 2; }
for m in $MODES; do
  case $m in train | infer) ;; *) echo "bench_layers.sh: MODES must list train and/or infer, got '$MODES'" >&2; exit 2 ;; esac
done
for a in "${EXTRA[@]}"; do
  [ "$a" = "--mode" ] && { echo "bench_layers.sh: set MODES=\"train infer\" instead of passing --mode" >&2; exit 2; }
done
[ -x "$LOOM_TOOL" ] || { echo "bench_layers.sh: no loom-bench-layers at $LOOM_TOOL (build it, or set LOOM_BENCH_LAYERS)" >&2; exit 2; }
TORCH_VERSION=$("$PYTHON" -c "import torch; print(torch.__version__)" 2> /dev/null) ||
  { echo "bench_layers.sh: $PYTHON has no torch (set PYTHON)" >&2; exit 2; }
mkdir -p "$OUT" || exit 2
JSONL=$OUT/layers.jsonl
[ -e "$JSONL" ] && mv "$JSONL" "$JSONL.old"
: > "$JSONL"
: > "$OUT/stderr.log"
rm -f "$OUT/failed.txt"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date '+%Y-%m-%d %H:%M:%S %Z')

# run FRAMEWORK THREADS MODE REPEAT: one run, its JSON lines tagged with the repeat.
run() {
  local fw=$1 n=$2 mode=$3 r=$4 cmd rc lines
  if [ "$fw" = loom ]; then
    cmd=("$LOOM_TOOL")
  else
    cmd=("$PYTHON" tools/bench_layers_torch.py)
  fi
  cmd+=(--threads "$n" --mode "$mode" --json "${EXTRA[@]}")
  echo "== $fw, $n thread(s), $mode, repeat $r: ${cmd[*]}" >&2
  lines=$(OMP_NUM_THREADS=$n "${cmd[@]}" 2>> "$OUT/stderr.log")
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "$fw threads=$n mode=$mode repeat=$r: exit status $rc (see stderr.log)" | tee -a "$OUT/failed.txt" >&2
  fi
  printf '%s\n' "$lines" | sed -n "s/^{/{\"repeat\": $r, /p" >> "$JSONL"
}

for n in $THREADS; do
  for mode in $MODES; do
    for r in $(seq 1 "$REPEATS"); do
      if [ $((r % 2)) -eq 1 ]; then
        run loom "$n" "$mode" "$r"
        run torch "$n" "$mode" "$r"
      else
        run torch "$n" "$mode" "$r"
        run loom "$n" "$mode" "$r"
      fi
    done
  done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(lscpu 2> /dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
COMMIT=$(git describe --always --dirty 2> /dev/null || echo unknown)

{
  echo "# Layer benchmarks: Loom vs PyTorch"
  echo
  echo "- date: $START"
  echo "- machine: $(uname -m), ${CPU:-unknown CPU}, nproc $(nproc)"
  echo "- load average (1, 5, 15 min): before $LOAD_BEFORE, after $LOAD_AFTER"
  echo "- Loom: $COMMIT ($LOOM_TOOL); torch $TORCH_VERSION ($PYTHON)"
  echo "- repeats $REPEATS, threads $THREADS, modes $MODES, OMP_WAIT_POLICY=$OMP_WAIT_POLICY, extra args: ${EXTRA[*]:-none}"
  echo
  python3 - "$JSONL" << 'EOF'
import json
import statistics
import sys

rows = {}    # (threads, mode, bench) -> {"shape", "loom": {repeat: ms}, "torch": {repeat: ms}}
order = []
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        try:
            d = json.loads(line)
        except ValueError:
            print(f"(skipped a line that is not JSON: {line[:80]})", file=sys.stderr)
            continue
        key = (d["threads"], d["mode"], d["bench"])
        if key not in rows:
            rows[key] = {"shape": d["shape"], "loom": {}, "torch": {}}
            order.append(key)
        rows[key][d["framework"]][d["repeat"]] = d["median_ms"]

def ms(v):
    return f"{statistics.median(v):.3f}" if v else "-"

print("| case | shape | mode | threads | Loom ms | PyTorch ms | PyTorch/Loom (>1: Loom faster) | pair min..max |")
print("|---|---|---|---:|---:|---:|---:|---|")
for key in sorted(order, key=lambda k: (k[0], k[1] != "train", order.index(k))):
    r = rows[key]
    pairs = [r["torch"][i] / r["loom"][i] for i in r["loom"] if i in r["torch"] and r["loom"][i] > 0]
    ratio = f"{statistics.median(pairs):.2f}" if pairs else "-"
    span = f"{min(pairs):.2f}..{max(pairs):.2f}" if pairs else "-"
    print(f"| {key[2]} | {r['shape']} | {key[1]} | {key[0]} | {ms(list(r['loom'].values()))} | "
          f"{ms(list(r['torch'].values()))} | {ratio} | {span} |")
if not order:
    print("| (no results) | | | | | | | |")
EOF
} > "$OUT/report.md"
cat "$OUT/report.md"
[ ! -e "$OUT/failed.txt" ]
