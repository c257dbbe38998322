#!/bin/sh
# Starts N processes of PROGRAM on this host the way torchrun does (RANK,
# WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or srun does with
# --slurm (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_STEP_ID), waits
# for all, and exits with the first non-zero status (124 past the time
# limit). After a failure or the limit it ends the others (TERM, then KILL),
# so nothing is left behind: each rank runs in its own session (setsid), and
# the signal goes to its whole process group.
# Usage: launch_tcp.sh [--slurm] N PROGRAM ARGS...
# MASTER_ADDR (default 127.0.0.1) and MASTER_PORT (default: a free one, from
# free_port.sh) are kept when set; LAUNCH_TCP_LIMIT is the limit in seconds
# (default 240).
slurm=0
if [ "$1" = --slurm ]; then slurm=1; shift; fi
n=$1
shift
case "$n" in ''|*[!0-9]*) echo "usage: launch_tcp.sh [--slurm] N PROGRAM ARGS..." >&2; exit 2 ;; esac
[ $# -ge 1 ] || { echo "usage: launch_tcp.sh [--slurm] N PROGRAM ARGS..." >&2; exit 2; }
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
if [ -z "$MASTER_PORT" ]; then
  MASTER_PORT=$(sh "$(dirname "$0")/free_port.sh") || exit 1
fi
export MASTER_ADDR MASTER_PORT
limit=${LAUNCH_TCP_LIMIT:-240}

session=""
command -v setsid >/dev/null 2>&1 && session="setsid -w"
pids=""
i=0
while [ $i -lt "$n" ]; do
  if [ $slurm = 1 ]; then
    SLURM_PROCID=$i SLURM_NTASKS=$n SLURM_LOCALID=$i SLURM_STEP_ID=0 $session "$@" &
  else
    RANK=$i WORLD_SIZE=$n LOCAL_RANK=$i LOCAL_WORLD_SIZE=$n $session "$@" &
  fi
  pids="$pids $!"
  i=$((i + 1))
done

signal() {   # signal SIG: to each rank's process group, or the rank alone
  for p in $pids; do kill -"$1" -"$p" 2>/dev/null || kill -"$1" "$p" 2>/dev/null; done
}
stop_all() {   # TERM to those still running, KILL after 3 s
  signal TERM
  t=0
  while [ $t -lt 30 ]; do
    alive=0
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || return
    sleep 0.1
    t=$((t + 1))
  done
  signal KILL
}
trap 'stop_all; exit 130' INT TERM

start=$(date +%s)
rc=0
left="$pids"
while [ -n "$left" ]; do
  still=""
  for p in $left; do
    if kill -0 "$p" 2>/dev/null; then
      still="$still $p"
    else
      wait "$p"
      st=$?
      if [ $st -ne 0 ] && [ $rc -eq 0 ]; then
        rc=$st
        echo "launch_tcp.sh: a rank (pid $p) exited with status $st; ending the others" >&2
        stop_all
      fi
    fi
  done
  left="$still"
  [ -n "$left" ] || break
  if [ $(( $(date +%s) - start )) -ge "$limit" ]; then
    echo "launch_tcp.sh: past the limit of $limit s (LAUNCH_TCP_LIMIT); ending every rank" >&2
    stop_all
    rc=124
    for p in $left; do wait "$p" 2>/dev/null; done
    break
  fi
  sleep 0.1
done
exit $rc
