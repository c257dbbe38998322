#!/usr/bin/env bash
# bench_sweep.sh: Loom's loom-bench against PyTorch's tools/bench_torch.py over a list of zoo
# configurations, then the Markdown table and the throughput plot of tools/bench_report.py.
#
#   bash tools/bench_sweep.sh OUTDIR [REPEATS]
#
# For every configuration (model, mode, batch, steps, warm-up, extra flags; see CONFIGS below) it
# runs loom-bench and bench_torch.py interleaved, loom, torch, loom, torch ... REPEATS times
# (default 3), with the same flags and --threads, appending the --json lines of the runs that
# succeed to OUTDIR/loom.jsonl and OUTDIR/torch.jsonl (stderr to OUTDIR/stderr.log, failures
# to OUTDIR/failed.txt), then writes OUTDIR/report.md (bench_report.py table) and
# OUTDIR/throughput.png (bench_report.py plot: the batch sweeps of seed_cnn and mlp).
#
# Environment:
#   LOOM_BENCH      loom-bench to run (default build-cpu/loom-bench)
#   PYTHON          Python with torch, torchvision, matplotlib (default /tmp/tv/bin/python)
#   THREADS         --threads for both (default nproc --all)
#   BENCH_MODELS    only these models, space-separated (default: every model of CONFIGS)
#   OMP_WAIT_POLICY passed on (default passive, as tools/common.sh: spinning OpenMP workers on a
#                   busy machine with few cores stall small ops of both frameworks by milliseconds)
# Run from the repository root. The whole default sweep takes about 15 minutes on 2 cores with
# REPEATS 3 (about 5 with REPEATS 1); ImageNet models run at 3x32x32 with few steps.
set -u
cd "$(dirname "$0")/.." || exit 2

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: bash tools/bench_sweep.sh OUTDIR [REPEATS]" >&2
  exit 2
fi
OUT=$1
REPEATS=${2:-3}
case $REPEATS in '' | *[!0-9]* | 0) echo "bench_sweep.sh: REPEATS must be a positive integer, got '$REPEATS'" >&2; exit 2 ;; esac
LOOM_BENCH=${LOOM_BENCH:-build-cpu/loom-bench}
PYTHON=${PYTHON:-/tmp/tv/bin/python}
THREADS=${THREADS:-$(nproc --all)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x "$LOOM_BENCH" ] || { echo "bench_sweep.sh: no loom-bench at $LOOM_BENCH (build it, or set LOOM_BENCH)" >&2; exit 2; }
"$PYTHON" -c "import torch, torchvision" 2> /dev/null ||
  { echo "bench_sweep.sh: $PYTHON has no torch / torchvision (set PYTHON)" >&2; exit 2; }
mkdir -p "$OUT" || exit 2

# One configuration a line: model mode batch steps warmup [extra flags for both tools].
# batch "-" = the model's own (gcn: one graph). Infer runs also get --latency-steps LAT.
CONFIGS=()
add() {  # add MODEL "MODES" "BATCHES" STEPS WARMUP [EXTRA...]
  local model=$1 modes=$2 batches=$3 steps=$4 warmup=$5 mode batch
  shift 5
  for mode in $modes; do
    for batch in $batches; do CONFIGS+=("$model $mode $batch $steps $warmup $*"); done
  done
}
# the batch sweeps for the plot
add seed_cnn "train infer" "1 8 32 128" 20 5
add mlp "train infer" "1 8 32 128" 20 5
# batch 1 and a training batch
add lenet5 "train infer" "1 32" 20 5
add resnet18 "train infer" "1 32" 6 2 --input 3,32,32
add mobilenet_v2 "train infer" "1 32" 6 2 --input 3,32,32
add lstm_classifier "train infer" "1 32" 12 3
add transformer_classifier "train infer" "1 32" 8 2
add vae "train infer" "1 32" 20 5
add dcgan "train infer" "1 32" 8 2
add gpt2 "infer" "1" 4 1 --input 32
add gpt2 "train" "2" 4 1 --input 32
add gcn "train infer" "-" 20 5
LAT=20              # batch-1 forwards timed in infer runs
LAT_SLOW=4          # ... for gpt2, whose forward takes a second here

selected() {  # is model $1 in BENCH_MODELS (or BENCH_MODELS unset)?
  [ -z "${BENCH_MODELS:-}" ] && return 0
  case " $BENCH_MODELS " in *" $1 "*) return 0 ;; esac
  return 1
}

todo=()
for c in "${CONFIGS[@]}"; do
  read -r model _ <<< "$c"
  selected "$model" && todo+=("$c")
done
if [ ${#todo[@]} -eq 0 ]; then
  echo "bench_sweep.sh: BENCH_MODELS='${BENCH_MODELS:-}' selects none of the configurations" >&2
  exit 2
fi

rate() { grep -o '"samples_per_s": [0-9.e+-]*' "$1" | tail -1 | cut -d' ' -f2; }

echo "bench_sweep: ${#todo[@]} configurations x $REPEATS repeats, loom-bench $LOOM_BENCH and $PYTHON" \
     "tools/bench_torch.py, $THREADS threads, OMP_WAIT_POLICY=$OMP_WAIT_POLICY -> $OUT"
start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0 i=0
for c in "${todo[@]}"; do
  i=$((i + 1))
  read -r model mode batch steps warmup extra <<< "$c"
  flags=(--model "$model" --mode "$mode" --steps "$steps" --warmup "$warmup" --threads "$THREADS" --json)
  [ "$batch" != "-" ] && flags+=(--batch "$batch")
  # shellcheck disable=SC2206  # the extra flags are words
  [ -n "$extra" ] && flags+=($extra)
  if [ "$mode" = infer ]; then
    if [ "$model" = gpt2 ]; then flags+=(--latency-steps "$LAT_SLOW"); else flags+=(--latency-steps "$LAT"); fi
  fi
  for r in $(seq 1 "$REPEATS"); do
    line="[$i/${#todo[@]}] $model $mode batch $batch ${extra:+($extra) }run $r/$REPEATS:"
    for fw in loom torch; do
      if [ $fw = loom ]; then cmd=("$LOOM_BENCH" "${flags[@]}"); else cmd=("$PYTHON" tools/bench_torch.py "${flags[@]}"); fi
      echo "== ${cmd[*]}" >> "$OUT/stderr.log"
      if "${cmd[@]}" > "$tmp/out" 2>> "$OUT/stderr.log"; then
        cat "$tmp/out" >> "$OUT/$fw.jsonl"
        line+=" $fw $(rate "$tmp/out") samples/s"
      else
        echo "${cmd[*]}" >> "$OUT/failed.txt"
        line+=" $fw FAILED (see $OUT/stderr.log)"
        failed=$((failed + 1))
      fi
    done
    echo "$line ($((SECONDS - start)) s)"
  done
done

echo "bench_sweep: runs done in $((SECONDS - start)) s, $failed failed"
"$PYTHON" tools/bench_report.py table "$OUT/loom.jsonl" "$OUT/torch.jsonl" > "$OUT/report.md" &&
  echo "bench_sweep: wrote $OUT/report.md" && cat "$OUT/report.md"
"$PYTHON" tools/bench_report.py plot "$OUT/throughput.png" "$OUT/loom.jsonl" "$OUT/torch.jsonl"
[ $failed -eq 0 ]
