#!/bin/sh
# Prints a TCP port P such that P and P + 1 are free on this host (Loom's
# rendezvous listens on MASTER_PORT + 1, torchrun's store on MASTER_PORT).
# It starts from a number derived from the caller's pid, below Linux's
# ephemeral range (32768 up), and skips every port /proc/net/tcp{,6} lists.
used=$(cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk 'NR > 1 { split($2, a, ":"); print a[2] }')
p=$(( 20000 + ($$ % 6000) * 2 ))
tries=0
while [ $tries -lt 6000 ]; do
  h1=$(printf '%04X' $p)
  h2=$(printf '%04X' $((p + 1)))
  if ! echo "$used" | grep -qx -e "$h1" -e "$h2"; then
    echo $p
    exit 0
  fi
  p=$(( p + 2 ))
  [ $p -lt 32000 ] || p=20000
  tries=$((tries + 1))
done
echo "free_port.sh: no free pair of ports between 20000 and 32000" >&2
exit 1
