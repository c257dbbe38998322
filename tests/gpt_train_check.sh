#!/bin/sh
# gpt_train learns and resumes bit for bit: a small char-level GPT trained for
# 150 steps on GPL-3 must reach a validation loss below 3.5 (uniform over its 76
# characters: ln 76 = 4.33); with its last checkpoint removed, --resume from
# step 100 must end at the same validation loss and sample the same text.
# Usage: gpt_train_check.sh GPT_TRAIN WORK_DIR
set -eu
prog=$1
work=$2
rm -rf "$work"
mkdir -p "$work"
run() {
  "$prog" --device cpu --threads 2 --steps 150 --warmup 10 --lr 3e-3 --layers 2 --heads 2 --embd 64 \
    --seq-len 32 --batch-size 16 --log-every 50 --eval-every 0 --checkpoint-every 50 --sample 40 \
    --checkpoint "$work/ckpt" "$@"
}
run > "$work/first.txt"
cat "$work/first.txt"
val=$(sed -n 's/^step 150: val loss //p' "$work/first.txt")
[ -n "$val" ] || { echo "FAIL: no 'step 150: val loss' line"; exit 1; }
awk -v v="$val" 'BEGIN { exit !(v < 3.5) }' || { echo "FAIL: val loss $val is not below 3.5"; exit 1; }
grep -q ' tokens/s (after the first step, validation excluded)$' "$work/first.txt" || { echo "FAIL: no tokens/s line"; exit 1; }
[ -f "$work/ckpt/gpt-00000150.safetensors" ] || { echo "FAIL: no checkpoint at step 150"; exit 1; }
rm "$work/ckpt/gpt-00000150.safetensors"
run --resume > "$work/resumed.txt"
cat "$work/resumed.txt"
grep -q 'resumed from .*gpt-00000100.safetensors' "$work/resumed.txt" || { echo "FAIL: did not resume from step 100"; exit 1; }
# Everything after training but the timing (the validation loss and the sample) must be identical.
sed -n '/^step 150: val loss/,$p' "$work/first.txt" | grep -v '^training: ' > "$work/first.tail"
sed -n '/^step 150: val loss/,$p' "$work/resumed.txt" | grep -v '^training: ' > "$work/resumed.tail"
if ! cmp -s "$work/first.tail" "$work/resumed.tail"; then
  echo "FAIL: the resumed run ends differently:"
  diff "$work/first.tail" "$work/resumed.tail" || true
  exit 1
fi
echo "PASS: val loss $val; the resumed run ends identically"
