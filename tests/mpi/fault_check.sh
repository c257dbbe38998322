#!/bin/sh
# A rank that sleeps past the timeout, or dies, makes the job end non-zero
# within the timeout (plus start-up), with the timeout message for `sleep`.
# Usage: fault_check.sh MPIEXEC|launch_tcp.sh DIST_FAULT sleep|kill|mismatch (mismatch: TCP only)
# (MPIEXEC: the MPI backend under mpirun -np 2; launch_tcp.sh: the TCP backend)
launcher=$1
prog=$2
mode=$3
start=$(date +%s)
case "$launcher" in
  *launch_tcp.sh)
    out=$(LOOM_DIST_TIMEOUT=3 timeout -s KILL 120 sh "$launcher" 2 "$prog" "$mode" 2>&1) ;;
  *)
    out=$(LOOM_DIST_TIMEOUT=3 timeout -s KILL 120 "$launcher" -np 2 --allow-run-as-root --oversubscribe "$prog" "$mode" 2>&1) ;;
esac
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
case "$launcher:$mode" in
  *launch_tcp.sh:kill)   # the survivor says who went away (at once: not the timeout's message)
    echo "$out" | grep -q "rank 0/2: all_reduce #2 (4000 bytes): rank 1 closed its connection" ||
      { echo "FAIL: no message naming the dead rank"; exit 1; }
    if echo "$out" | grep -q "did not finish within"; then echo "FAIL: the survivor waited for the timeout"; exit 1; fi
    ;;
  *launch_tcp.sh:mismatch)   # both ranks name what the other called
    echo "$out" | grep -q "rank 0/2: all_reduce #2 (4000 bytes, f32) does not match rank 1's broadcast #2 (4000 bytes, f32)" ||
      { echo "FAIL: no message naming the mismatch"; exit 1; }
    ;;
esac
echo "PASS"
