#!/usr/bin/env bash
# The main job: installs what is missing, builds Release in build/ and trains
# the Fashion-MNIST MLP (examples/fashion_mlp.c). Extra arguments go to it,
# e.g. bash tools/main.sh --epochs 10 --device cpu. LOOM_BUILD_DIR overrides build/.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/common.sh

build=${LOOM_BUILD_DIR:-build}

loom_install_deps
loom_cuda_args
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${LOOM_CUDA_ARGS[@]}"
cmake --build "$build" -j"$(nproc)" --target fashion_mlp
echo "== $build/fashion_mlp $*"
"$build/fashion_mlp" "$@"
