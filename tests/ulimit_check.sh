#!/bin/sh
# The main job under an address-space limit (ulimit -v) too small for every
# thread's OpenBLAS buffer ends, with a result or with Loom's out-of-memory
# error naming the limit. It used to hang: OpenBLAS retries a failed
# per-thread buffer allocation for ever, and each thread of the CPU
# convolution calls it. The limit is this build's own virtual size while
# training on 2 threads, less 100 MiB (a CUDA build maps far more libraries):
# room for one thread's buffer, not for the second.
# Usage: ulimit_check.sh SEED_CNN DATA_DIR WORK_DIR
prog=$1
data=$2
work=$3
rm -rf "$work"
mkdir -p "$work"
OMP_NUM_THREADS=2 "$prog" --device cpu --limit 1000 --epochs 1 --data "$data" --checkpoint "$work/ckpt" \
  --log-every 1 > "$work/probe.txt" 2>&1 &
pid=$!
vm=0
for i in $(seq 1 300); do
  if grep -q "step 3/" "$work/probe.txt" 2>/dev/null; then
    vm=$(awk '/^VmPeak:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
    break
  fi
  sleep 0.1
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "${vm:-0}" -gt 300000 ] || { echo "FAIL: could not measure the virtual size of a training run"; cat "$work/probe.txt"; exit 1; }
limit=$((vm - 102400))
out=$( (ulimit -v "$limit" && timeout -s KILL 120 sh -c "OMP_NUM_THREADS=2 '$prog' --device cpu --limit 1000 --epochs 1 \
        --data '$data' --checkpoint '$work/ckpt2' --log-every 1000") 2>&1 )
rc=$?
echo "virtual size while training: $vm KiB; limit: $limit KiB"
echo "$out" | tail -6
[ $rc -ne 137 ] || { echo "FAIL: still running after 120 s under ulimit -v $limit"; exit 1; }
if echo "$out" | grep -q "test accuracy\|address-space limit .*(ulimit -v)"; then
  echo "PASS: ended (status $rc)"
else
  echo "FAIL: neither a result nor an out-of-memory error naming the limit (status $rc)"
  exit 1
fi
