# Shared by tools/main.sh and tools/test.sh (sourced, not run).

# libgomp's worker threads spin between parallel regions by default; on an
# oversubscribed machine (2 cores running ctest -j2) they steal the cores that
# do the work. Sleep instead.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# Debian packages the build, the tests and the main job need.
LOOM_PACKAGES=(cmake build-essential libopenblas-dev libopenblas-openmp-dev libcjson-dev zlib1g-dev libgtest-dev
               openmpi-bin libopenmpi-dev libdnnl-dev dataset-fashion-mnist wamerican wngerman witalian)

# Installs the packages of LOOM_PACKAGES that are missing (apt-get update first).
loom_install_deps() {
  local missing=() p
  if ! command -v dpkg-query > /dev/null || ! command -v apt-get > /dev/null; then
    echo "== packages: not a Debian or Ubuntu system (no dpkg-query / apt-get): install by hand CMake, a C11 and"
    echo "   C++17 compiler, OpenBLAS (its OpenMP build), cJSON, zlib, GoogleTest, Open MPI, oneDNN (optional), and for the"
    echo "   main job the Fashion-MNIST IDX files in /usr/share/datasets/fashion-mnist (or pass --data DIR); carrying on"
    return 0
  fi
  for p in "${LOOM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "== packages: all present"
    return 0
  fi
  echo "== packages: installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# Sets LOOM_CUDA_ARGS: the CMake flags for the CUDA backend. nvcc is looked for
# in PATH, then in /usr/local/cuda/bin. One architecture (90) in CI or when no
# GPU is visible, else the visible GPU's own (native).
loom_cuda_args() {
  LOOM_CUDA_ARGS=()
  local nvcc
  nvcc=$(command -v nvcc || true)
  [ -n "$nvcc" ] || [ ! -x /usr/local/cuda/bin/nvcc ] || nvcc=/usr/local/cuda/bin/nvcc
  if [ -z "$nvcc" ]; then
    echo "== CUDA: nvcc not found, building the CPU backend only"
    LOOM_CUDA_ARGS=(-DLOOM_CUDA=OFF)
    return 0
  fi
  local arch=90
  if [ -z "${CI:-}" ] && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then arch=native; fi
  echo "== CUDA: $nvcc, architectures $arch"
  LOOM_CUDA_ARGS=(-DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES="$arch")
}
