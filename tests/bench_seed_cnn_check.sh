#!/bin/sh
# tools/bench_seed_cnn.sh's parsing and table, with stand-ins for the two programs: a
# "seed_cnn" and a "python" that print the lines the real ones print (the real pair needs
# torch, which CI does not install). Loom 4000 samples/s and 0.100 ms against PyTorch 2000 and
# 0.250 ms must give the ratios 2.00 and 2.50; no arguments must give the usage and status 2.
# Usage: bench_seed_cnn_check.sh REPO_ROOT WORK_DIR
root=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
bash "$root/tools/bench_seed_cnn.sh" > "$work/usage.txt" 2>&1
[ $? -eq 2 ] && grep -q "usage: bash tools/bench_seed_cnn.sh" "$work/usage.txt" || { echo "FAIL: no usage"; exit 1; }
cat > "$work/seed_cnn" <<'EOS'
#!/bin/sh
echo "training: 4.8 s, 4000 samples/s (after the first step)"
echo "inference latency, 1 image: first 200.0 ms from program start (forward 1.00 ms), mean 0.100 ms, p50 0.099 ms, p99 0.120 ms over 200"
EOS
cat > "$work/python" <<'EOS'
#!/bin/sh
case "$1" in
  tools/bench_seed_cnn_torch.py)
    echo "seed CNN training: 300 steps after 20 warm-up, 2000 samples/s (32.00 ms/step)"
    echo "inference latency, 1 image: mean 0.250 ms, p50 0.240 ms, p99 0.300 ms over 200" ;;
  *) exec python3 "$@" ;;
esac
EOS
chmod +x "$work/seed_cnn" "$work/python"
SEED_CNN="$work/seed_cnn" PYTHON="$work/python" bash "$root/tools/bench_seed_cnn.sh" "$work/out" 2 "1 2" > "$work/log.txt" 2>&1 \
  || { echo "FAIL: bench_seed_cnn.sh failed"; cat "$work/log.txt"; exit 1; }
cat "$work/out/report.md"
for t in 1 2; do
  grep -q "^| $t | 4000 | 2000 | 2.00 (2.00..2.00) | 0.100 | 0.250 | 2.50 (2.50..2.50) |$" "$work/out/report.md" \
    || { echo "FAIL: row for $t threads"; exit 1; }
done
[ "$(grep -c '^== ' "$work/out/runs.log")" -eq 8 ] || { echo "FAIL: runs.log should hold 8 runs"; exit 1; }
echo "PASS"
