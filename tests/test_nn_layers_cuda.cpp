// The act-family layers on CUDA against the CPU (forward, gradients, f16 /
// bf16), dropout's mask across devices, and device mismatches. Every test
// skips itself, saying why, when no GPU is visible.
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

std::string err() { return loom_last_error(); }
#define EXPECT_ERROR_HAS(text) EXPECT_NE(err().find(text), std::string::npos) << "error: " << err()
#define EXPECT_FAILS_WITH(call, text) \
  do {                                \
    EXPECT_EQ((call), nullptr);       \
    EXPECT_ERROR_HAS(text);           \
  } while (0)

loom_tensor *leaf(loom_tensor *t) {
  loom_tensor *c = loom_clone(t);
  EXPECT_EQ(loom_set_requires_grad(c, true), 0);
  return c;
}

struct Mod {
  explicit Mod(loom_module *mod) : m(mod) {}
  ~Mod() { loom_module_free(m); }
  loom_module *m;
};

}  // namespace

TEST(LayersErrors, DeviceMismatch) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  Mod lin(loom_nn_linear(4, 3, nullptr));
  EXPECT_FAILS_WITH(loom_forward(lin.m, loom_zeros(LOOM_SHAPE(2, 4), LOOM_F32, loom_cuda(0))), "Linear");
  EXPECT_ERROR_HAS("cuda:0");
  Mod emb(loom_nn_embedding(10, 3, nullptr));
  EXPECT_FAILS_WITH(loom_forward(emb.m, loom_zeros(LOOM_SHAPE(2), LOOM_I64, loom_cuda(0))), "Embedding");
}

// ---- CUDA against the CPU ----

namespace {

struct Run {
  loom_tensor *out;
  std::vector<loom_tensor *> grads;  // input first, then each parameter
};

// Forward of m on x (a fresh leaf when floating), backward of sum(out * w).
Run run_module(loom_module *m, loom_tensor *x, loom_tensor *w) {
  Run r{nullptr, {}};
  loom_tensor *in = x;
  bool fl = loom_dtype_is_float(loom_dtype_of(x));
  if (fl) in = leaf(x);
  loom_module_zero_grad(m);
  r.out = loom_forward(m, in);
  if (!r.out) return r;
  loom_tensor *loss = loom_sum(loom_mul(r.out, loom_to(w, loom_device_of(r.out), loom_dtype_of(r.out))), nullptr, 0,
                               false);
  if (loom_backward(loss, nullptr, false)) return r;
  if (fl) r.grads.push_back(loom_clone(loom_grad(in)));
  loom_named_tensors *ps = loom_module_named_parameters(m);
  for (int i = 0; i < ps->n; i++) r.grads.push_back(loom_clone(loom_grad(ps->tensors[i])));
  loom_named_tensors_free(ps);
  return r;
}

void expect_cuda_matches_cpu(loom_module *m, loom_tensor *x, double tol, const char *what) {
  SCOPED_TRACE(what);
  loom_tensor *w = loom_randn(loom_shape_of(loom_forward(m, x)), LOOM_F32, loom_cpu());
  Run cpu = run_module(m, x, w);
  ASSERT_NE(cpu.out, nullptr) << err();
  ASSERT_EQ(loom_module_to_device(m, loom_cuda(0)), 0) << err();
  Run gpu = run_module(m, loom_to_device(x, loom_cuda(0)), w);
  ASSERT_NE(gpu.out, nullptr) << err();
  EXPECT_EQ(loom_device_of(gpu.out).type, LOOM_CUDA);
  EXPECT_LE(rel_err(gpu.out, cpu.out), tol) << "output";
  ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
  for (size_t i = 0; i < cpu.grads.size(); i++) EXPECT_LE(rel_err(gpu.grads[i], cpu.grads[i]), tol) << "grad " << i;
  // half precision forward on CUDA against the f32 CPU result
  for (loom_dtype half : {LOOM_F16, LOOM_BF16}) {
    if (!loom_dtype_is_float(loom_dtype_of(x))) {
      ASSERT_EQ(loom_module_to_dtype(m, half), 0) << err();
      EXPECT_LE(rel_err(loom_forward(m, loom_to_device(x, loom_cuda(0))), cpu.out), 2e-2) << loom_dtype_name(half);
      ASSERT_EQ(loom_module_to_dtype(m, LOOM_F32), 0);
      continue;
    }
    loom_tensor *xh = loom_to(x, loom_cuda(0), half);
    ASSERT_EQ(loom_module_to_dtype(m, half), 0) << err();
    loom_tensor *yh = loom_forward(m, xh);
    ASSERT_NE(yh, nullptr) << loom_dtype_name(half) << ": " << err();
    EXPECT_EQ(loom_dtype_of(yh), half);
    EXPECT_LE(rel_err(yh, cpu.out), 2e-2) << loom_dtype_name(half);
    ASSERT_EQ(loom_module_to_dtype(m, LOOM_F32), 0);
  }
}

}  // namespace

TEST(LayersCuda, ModulesMatchCpu) {
  LOOM_REQUIRE_GPU();
  loom_set_tf32(false);
  ScopeGuard scope;
  loom_tensor *x = loom_mul_scalar(loom_randn(LOOM_SHAPE(6, 7, 40), LOOM_F32, loom_cpu()), 3);
  struct M { const char *name; loom_module *m; } mods[] = {
      {"Linear", loom_nn_linear(40, 9, nullptr)}, {"ReLU", loom_nn_relu()},
      {"LeakyReLU", loom_nn_leaky_relu(0.1)},     {"ELU", loom_nn_elu(0.7)},
      {"GELU", loom_nn_gelu(false)},              {"GELU tanh", loom_nn_gelu(true)},
      {"SiLU", loom_nn_silu()},                   {"Sigmoid", loom_nn_sigmoid()},
      {"Tanh", loom_nn_tanh()},                   {"Softmax(1)", loom_nn_softmax(1)},
      {"Softmax(-1)", loom_nn_softmax(-1)},       {"LogSoftmax(0)", loom_nn_log_softmax(0)},
      {"LogSoftmax(-1)", loom_nn_log_softmax(-1)}, {"Flatten", loom_nn_flatten(1, -1)},
      {"Identity", loom_nn_identity()}};
  for (M &mm : mods) {
    Mod m(mm.m);
    expect_cuda_matches_cpu(m.m, x, 1e-5, mm.name);
  }
  // long rows: the block-per-row softmax kernels
  loom_tensor *wide = loom_mul_scalar(loom_randn(LOOM_SHAPE(5, 5000), LOOM_F32, loom_cpu()), 4);
  Mod sm(loom_nn_softmax(-1)), lsm(loom_nn_log_softmax(-1));
  expect_cuda_matches_cpu(sm.m, wide, 1e-5, "Softmax long rows");
  expect_cuda_matches_cpu(lsm.m, wide, 1e-5, "LogSoftmax long rows");
  loom_embedding_opts o = {true, 2};
  Mod emb(loom_nn_embedding(10, 6, &o));
  expect_cuda_matches_cpu(emb.m, T({1, 2, 9, 2, 0, 5, 5, 3}, LOOM_SHAPE(2, 4), LOOM_I64), 1e-6, "Embedding");
  // max_norm renormalises in place (once: a renormalised row stays within the
  // bound, so the repeated forwards agree), scale_grad_by_freq
  loom_embedding_opts mo{};
  mo.max_norm = 1.5, mo.norm_type = 3, mo.scale_grad_by_freq = true;
  Mod embn(loom_nn_embedding(10, 6, &mo));
  expect_cuda_matches_cpu(embn.m, T({1, 2, 9, 2, 0, 5, 5, 5}, LOOM_SHAPE(2, 4), LOOM_I64), 1e-6,
                          "Embedding max_norm scale_grad_by_freq");
}

TEST(LayersCuda, DropoutSameMaskAsCpu) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *x = loom_randn(LOOM_SHAPE(1000, 33), LOOM_F32, loom_cpu());
  loom_manual_seed(9);
  loom_tensor *cpu = loom_dropout(x, 0.25, true);
  loom_manual_seed(9);
  loom_tensor *gpu = loom_dropout(loom_to_device(x, loom_cuda(0)), 0.25, true);
  ASSERT_NE(gpu, nullptr) << err();
  EXPECT_LE(rel_err(gpu, cpu), 1e-7);
  loom_manual_seed(9);
  std::vector<double> h = V(loom_dropout(loom_to(x, loom_cuda(0), LOOM_BF16), 0.25, true)), c = V(cpu);
  for (size_t i = 0; i < c.size(); i++) ASSERT_EQ(h[i] == 0, c[i] == 0) << "element " << i;
}

// (On the CPU, matmul in a bf16 region recurses without end at the time of
// writing: core linalg.c casts half operands to f32 and calls loom_matmul, which
// autocasts them back. Reported; this test runs where bf16 matmul is native.)
TEST(LayersCuda, LinearAutocastRunsInLowPrecision) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  Mod m(loom_nn_linear(16, 3, nullptr));
  ASSERT_EQ(loom_module_to_device(m.m, loom_cuda(0)), 0) << err();
  loom_tensor *x = loom_randn(LOOM_SHAPE(4, 16), LOOM_F32, loom_cuda(0)), *x1 = loom_select(x, 0, 1);
  loom_tensor *ref = loom_forward(m.m, x), *ref1 = loom_forward(m.m, x1);
  ASSERT_EQ(loom_autocast_begin(LOOM_CUDA, LOOM_BF16), 0) << err();
  loom_tensor *y = loom_forward(m.m, x), *y1 = loom_forward(m.m, x1);
  loom_autocast_end();
  ASSERT_NE(y, nullptr) << err();
  ASSERT_NE(y1, nullptr) << err();
  EXPECT_EQ(loom_dtype_of(y), LOOM_BF16);
  EXPECT_EQ(loom_dtype_of(y1), LOOM_BF16);
  EXPECT_LE(rel_err(y, ref), 2e-2);
  EXPECT_LE(rel_err(y1, ref1), 2e-2);
}
