#!/usr/bin/env bash
# Installs what is missing, builds from scratch (build-test/, with CUDA when nvcc
# is found) and runs ctest; then builds and runs the suite again under
# AddressSanitizer, LeakSanitizer and UBSan (build-asan/, CPU only).
# Stops at the first failure with a non-zero status. LOOM_BUILD_DIR and
# LOOM_ASAN_BUILD_DIR override the two build folders.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/common.sh
jobs=$(nproc)
build=${LOOM_BUILD_DIR:-build-test}
asan=${LOOM_ASAN_BUILD_DIR:-build-asan}

loom_install_deps
loom_cuda_args

echo "== $build: Release"
rm -rf "$build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${LOOM_CUDA_ARGS[@]}"
cmake --build "$build" -j"$jobs"
# Debug handles: a tensor handle used after it was freed is an error however
# long ago that was (loom_set_debug_handles; the ASan pass below catches it too).
(cd "$build" && LOOM_DEBUG_HANDLES=1 ctest --output-on-failure -j"$jobs")

echo "== $asan: AddressSanitizer + UBSan, CPU only"
# Also set while building: gtest_discover_tests runs each test binary.
# allocator_may_return_null: the out-of-memory tests ask for impossible sizes
# and expect an error, not an ASan abort. No LeakSanitizer suppressions are
# needed: OpenBLAS and libgomp keep their buffers reachable until exit.
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
rm -rf "$asan"
cmake -S . -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_SANITIZE=ON -DLOOM_CUDA=OFF
cmake --build "$asan" -j"$jobs"
# The large zoo variants run the same code as their small siblings (vgg11_bn at
# 32x32, resnet18, resnext50, mobilenet_v2 stay in) and cost minutes under the
# sanitizer; the Release pass above runs them all.
large='/(vgg11|vgg11_bn|vgg13|vgg13_bn|vgg16|vgg16_bn|vgg19|vgg19_bn|alexnet|wide_resnet50_2|wide_resnet101_2|resnext101_32x8d|resnet34|resnet50|resnet101|resnet152)( |$)|LargeVariantsBuild'
echo "== $asan: leaving out the large zoo variants (ctest -E '$large')"
(cd "$asan" && ctest --output-on-failure -j"$jobs" -E "$large")
