#!/usr/bin/env bash
# The main job: installs what is missing, builds Release in build/ and trains
# the seed CNN on Fashion-MNIST (examples/seed_cnn.c). Extra arguments go to it,
# e.g. bash tools/main.sh --epochs 10 --batch-size 64 --device cpu --data DIR.
# LOOM_BUILD_DIR overrides build/.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/common.sh

build=${LOOM_BUILD_DIR:-build}

loom_install_deps
loom_cuda_args
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${LOOM_CUDA_ARGS[@]}"
cmake --build "$build" -j"$(nproc)" --target seed_cnn
echo "== $build/seed_cnn --checkpoint $build/checkpoints $*"
"$build/seed_cnn" --checkpoint "$build/checkpoints" "$@"
