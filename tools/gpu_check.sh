#!/usr/bin/env bash
# The checks that need a GPU, in one run: the CUDA tests, compute-sanitizer's
# memcheck over the CUDA op tests, and the seed CNN and ResNet-18 (batch 256,
# f32 and bf16 autocast) trained on the GPU beside their PyTorch twins.
#   tools/gpu_check.sh [BUILD_DIR] [LOG_DIR]
# BUILD_DIR (default build-test) is a Release build with CUDA; LOG_DIR (default
# gpu-check-logs) gets log.txt, ctest_gpu.txt and sanitizer.txt. Each step has
# its own time limit so that one hang cannot eat the rest. Needs the
# Fashion-MNIST files in /usr/share/datasets/fashion-mnist and python3 with torch.
set -u
cd "$(dirname "$0")/.."
source tools/common.sh
build=$(realpath "${1:-build-test}")
logs=${2:-gpu-check-logs}
mkdir -p "$logs" && logs=$(realpath "$logs")
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} PYTHONUNBUFFERED=1
exec > >(tee -a "$logs/log.txt") 2>&1
date; nvidia-smi -L || { echo "gpu_check: no GPU visible (nvidia-smi -L failed)"; exit 1; }
echo "== libraries not found:"; ldd "$build/libloom.so" | grep "not found"
"$build/loom-info"
echo "== CUDA tests"
(cd "$build" && timeout 170 ctest -j12 --timeout 100 -R "[Cc][Uu][Dd][Aa]|GPU|Gpu" --output-on-failure \
  > "$logs/ctest_gpu.txt" 2>&1); echo "ctest rc=$?"
grep -E "tests passed|Failed|\*\*\*|Timeout" "$logs/ctest_gpu.txt" | head -80
ck=$(mktemp -d)
echo "== seed_cnn, 1 epoch on cuda"
timeout 50 "$build/seed_cnn" --epochs 1 --device cuda --checkpoint "$ck/seed" 2>&1 | tail -6
echo "== PyTorch seed CNN, 1 epoch on cuda"
timeout 50 python3 tools/bench_seed_cnn_torch.py --device cuda --epochs 1 2>&1 | tail -5
for dt in f32 bf16; do
  common=(--device cuda --dtype "$dt" --batch-size 256 --limit 12800 --test-limit 2000 --epochs 1 --log-every 10)
  echo "== Loom resnet18, batch 256, $dt"
  timeout 45 "$build/resnet_train" "${common[@]}" --checkpoint "$ck/r$dt" 2>&1 | tail -6
  echo "== PyTorch resnet18, batch 256, $dt"
  timeout 45 python3 tools/bench_resnet_torch.py "${common[@]}" 2>&1 | tail -6
done
echo "== compute-sanitizer memcheck: test_cuda"
timeout 60 compute-sanitizer --tool memcheck --print-limit 20 "$build/tests/test_cuda" > "$logs/sanitizer.txt" 2>&1
echo "sanitizer rc=$?"; tail -15 "$logs/sanitizer.txt"
rm -rf "$ck"; date
