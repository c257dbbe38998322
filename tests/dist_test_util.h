// Shared by the data-parallel suites (tests/test_dist.cpp in one process,
// tests/mpi/test_dist_mpi.cpp under mpirun): a small model, its data and one
// training step.
#pragma once
#include <loom/loom.h>
#include <loom/dist.h>

#include <vector>

// Linear(6, 16) -> ReLU -> Linear(16, 16) -> ReLU -> Linear(16, 3), seeded so every rank builds the same one.
inline loom_module *dist_mlp(uint64_t seed) {
  loom_manual_seed(seed);
  return LOOM_SEQUENTIAL(loom_nn_linear(6, 16, NULL), loom_nn_relu(), loom_nn_linear(16, 16, NULL), loom_nn_relu(),
                         loom_nn_linear(16, 3, NULL));
}

// Rows [first, first + n) of a fixed global batch: x [n, 6], y [n] class indices.
inline void dist_batch(int64_t first, int64_t n, loom_tensor **x, loom_tensor **y) {
  std::vector<float> xs;
  std::vector<int64_t> ys;
  for (int64_t r = first; r < first + n; r++) {
    for (int c = 0; c < 6; c++) xs.push_back((float)((r * 7 + c * 3) % 11) / 5.0f - 1.0f);
    ys.push_back((r * 5) % 3);
  }
  *x = loom_from_host(xs.data(), LOOM_SHAPE(n, 6), LOOM_F32, loom_cpu());
  *y = loom_from_host(ys.data(), LOOM_SHAPE(n), LOOM_I64, loom_cpu());
}

// Forward, cross-entropy (mean) and backward of rows [first, first + n); returns the status.
inline int dist_backward(loom_module *m, int64_t first, int64_t n) {
  loom_scope_begin();
  loom_tensor *x, *y;
  dist_batch(first, n, &x, &y);
  loom_tensor *loss = loom_cross_entropy(loom_forward(m, x), y, NULL);
  int st = loss ? loom_backward(loss, NULL, false) : (int)loom_last_status();
  loom_scope_end();
  return st;
}
