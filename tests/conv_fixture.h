// The conv family's fixture check (tests/test_nn_conv*.cpp; fixtures from
// tools/fixtures/gen_conv.py): x, the parameters, out, out_weight and the
// gradients of sum(out * out_weight).
#ifndef LOOM_TESTS_CONV_FIXTURE_H
#define LOOM_TESTS_CONV_FIXTURE_H

#include <string>

#include "loom_test.h"

// Runs module m (made f64, parameters from the fixture) on the fixture's x and
// compares out and every gradient with PyTorch's; with unbatched, also the
// first sample alone. Frees m.
inline void check_fixture(const char *name, loom_module *m, double tol = 1e-10, bool unbatched = false) {
  SCOPED_TRACE(name);
  ScopeGuard scope;
  Fixture fx(name);
  ASSERT_TRUE(fx.ok());
  ASSERT_NE(m, nullptr) << loom_last_error();
  ASSERT_EQ(loom_module_to_dtype(m, LOOM_F64), 0) << loom_last_error();
  loom_named_tensors *ps = loom_module_named_parameters(m);
  for (int i = 0; i < ps->n; i++) ASSERT_EQ(loom_copy_(ps->tensors[i], fx[ps->names[i]]), 0) << loom_last_error();
  loom_tensor *x = loom_clone(fx["x"]);
  ASSERT_EQ(loom_set_requires_grad(x, true), 0);
  loom_tensor *out = loom_forward(m, x);
  ASSERT_NE(out, nullptr) << loom_last_error();
  EXPECT_TRUE(close(out, fx["out"], tol));
  ASSERT_EQ(loom_backward(loom_sum(loom_mul(out, fx["out_weight"]), nullptr, 0, false), nullptr, false), 0)
      << loom_last_error();
  EXPECT_TRUE(close(loom_grad(x), fx["grad_x"], tol)) << "grad_x";
  for (int i = 0; i < ps->n; i++)
    EXPECT_TRUE(close(loom_grad(ps->tensors[i]), fx[std::string("grad_") + ps->names[i]], tol)) << ps->names[i];
  if (unbatched) {
    loom_tensor *u = loom_forward(m, loom_select(fx["x"], 0, 0));
    ASSERT_NE(u, nullptr) << loom_last_error();
    EXPECT_TRUE(close(u, loom_select(fx["out"], 0, 0), tol)) << "unbatched";
  }
  loom_named_tensors_free(ps);
  loom_module_free(m);
}

#endif
