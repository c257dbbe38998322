// Shared helpers for the GoogleTest suites (implemented in loom_test_util.cpp).
#pragma once
#include <gtest/gtest.h>
#include <loom/loom.h>

#include <functional>
#include <string>
#include <vector>

// Opens a Loom scope for the lifetime of the object.
struct ScopeGuard {
  ScopeGuard() { loom_scope_begin(); }
  ~ScopeGuard() { loom_scope_end(); }
};

// A tensor holding vals (row-major) converted to dt, on dev. Registered with the current scope.
loom_tensor *T(const std::vector<double> &vals, loom_shape s, loom_dtype dt = LOOM_F32,
               loom_device dev = loom_cpu());
// Every element of t (any dtype, any device) as doubles, in row-major order.
std::vector<double> V(const loom_tensor *t);
// ||out - ref|| / ||ref|| over all elements (any dtypes and devices; shapes must match,
// otherwise returns +inf). NaN anywhere gives +inf.
double rel_err(const loom_tensor *out, const loom_tensor *ref);
// Runs a shell command; its exit status (-1 when it did not exit) and its stdout + stderr.
struct ToolRun {
  int status;
  std::string text;
};
ToolRun run_tool(const std::string &command);
// True when a CUDA device is visible.
bool has_gpu();
// Skips the current test, printing why, when no GPU is visible.
#define LOOM_REQUIRE_GPU()                                                                 \
  do {                                                                                     \
    if (!has_gpu()) GTEST_SKIP() << "no CUDA device visible (built with CUDA: "            \
                                 << (loom_cuda_is_built() ? "yes" : "no") << ")";          \
  } while (0)

// Owns a module (a zoo model, a layer) and frees it with loom_module_free.
struct Model {
  explicit Model(loom_module *m) : m(m) {}
  ~Model() { loom_module_free(m); }
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;
  loom_module *m;
};

// Finite-difference gradient check in f64 on the CPU. `inputs` must be f64 CPU
// leaf tensors; the ones with requires_grad are checked. f builds the output from
// them (any shape); the check uses loss = sum(f(x) * w) for a fixed random w.
// Central differences with step eps; passes when every |analytic - numeric| <=
// atol + rtol * |numeric|.
::testing::AssertionResult gradcheck(
    const std::function<loom_tensor *(const std::vector<loom_tensor *> &)> &f,
    const std::vector<loom_tensor *> &inputs, double eps = 1e-6, double atol = 1e-6,
    double rtol = 1e-4);

// ---- PyTorch fixtures (tests/fixtures/<name>.safetensors, made by tools/fixtures/*.py) ----
// A fixture file loaded onto the CPU, owned by the returned object.
struct Fixture {
  explicit Fixture(const char *name);
  ~Fixture();
  Fixture(const Fixture &) = delete;
  Fixture &operator=(const Fixture &) = delete;
  bool ok() const { return map != nullptr; }
  // The tensor stored under key (borrowed; nullptr + a test failure when absent).
  loom_tensor *operator[](const std::string &key) const;
  // A metadata string (empty when absent).
  std::string meta(const std::string &key) const;
  loom_tensor_map *map = nullptr;
  std::string name;
};
// The names of m's parameters, in order.
std::vector<std::string> param_names(loom_module *m);
// Relative error of out against the fixture tensor, as a gtest assertion
// that names the fixture key: EXPECT_TRUE(close(out, fx["y"], 1e-5)).
::testing::AssertionResult close(const loom_tensor *out, const loom_tensor *ref, double tol);
