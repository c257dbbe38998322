#!/bin/sh
# A rank that sleeps past the timeout, or dies, makes the job end non-zero
# within the timeout (plus start-up), with the timeout message for `sleep`.
# Usage: fault_check.sh MPIEXEC DIST_FAULT sleep|kill
mpiexec=$1
prog=$2
mode=$3
start=$(date +%s)
out=$(LOOM_DIST_TIMEOUT=3 timeout -s KILL 120 "$mpiexec" -np 2 --allow-run-as-root --oversubscribe "$prog" "$mode" 2>&1)
rc=$?
took=$(( $(date +%s) - start ))
echo "$out"
echo "== exit status $rc after $took s"
[ "$rc" -ne 0 ] || { echo "FAIL: the job exited 0"; exit 1; }
[ "$took" -le 40 ] || { echo "FAIL: took $took s (timeout 3 s)"; exit 1; }
if echo "$out" | grep -q "finished its all-reduce"; then echo "FAIL: an all-reduce finished without its peer"; exit 1; fi
if [ "$mode" = sleep ]; then
  echo "$out" | grep -q "rank 0/2: all_reduce #2 (4000 bytes) did not finish within 3 s (LOOM_DIST_TIMEOUT); last completed: all_reduce #1" ||
    { echo "FAIL: no timeout message"; exit 1; }
fi
echo "PASS"
