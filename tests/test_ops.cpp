// The table-driven ops suite: walks the kernel-level ops table (src/core/ops.def)
// and runs every op's case (tests/op_cases.h) on the CPU against a host
// reference, through finite-difference gradient checks, and on CUDA against the CPU.
#include "op_cases.h"

#include <iostream>
#include <set>
#include <sstream>

using namespace opcases;

namespace {

const std::vector<OpCase> &cases() {
  static const std::vector<OpCase> all = all_op_cases();
  return all;
}

const OpCase *find_case(const std::string &op) {
  for (const OpCase &c : cases())
    if (c.op == op) return &c;
  return nullptr;
}

std::string join(const std::vector<std::string> &items) {
  std::string s;
  for (const std::string &i : items) s += (s.empty() ? "" : ", ") + i;
  return s;
}

// Runs the case; records a failure naming the output and the library error when one is NULL.
Tensors run_case(const OpCase &c, const Tensors &in, loom_device dev, loom_dtype dt) {
  Tensors out = c.run({in, dev, dt});
  for (size_t i = 0; i < out.size(); i++)
    if (!out[i]) {
      ADD_FAILURE() << c.op << " on " << loom_device_name(dev) << " " << loom_dtype_name(dt) << ": output " << i
                    << " is NULL: " << loom_last_error();
      return {};
    }
  return out;
}

Tensors to_device(const Tensors &in, loom_device dev) {
  Tensors out;
  for (loom_tensor *t : in) out.push_back(loom_to_device(t, dev));
  return out;
}

// Element tolerance of the host reference check, relative to 1 + |ref|.
double ref_tol(loom_dtype dt) {
  switch (dt) {
    case LOOM_F32: return 1e-5;
    case LOOM_F64: return 1e-12;
    case LOOM_F16: return 1e-2;
    case LOOM_BF16: return 2e-2;
    default: return 0;
  }
}

// rel_err bound of CUDA against the CPU for an output of dtype out_dt from a case run in dt.
double cuda_bound(const OpCase &c, loom_dtype dt, loom_dtype out_dt) {
  if (!loom_dtype_is_float(out_dt)) return 0;
  return dt == LOOM_F32 ? c.cuda_f32_bound : ref_tol(dt);
}

// The dtypes whose CUDA kernels the case requires: its own but f64, plus f16/bf16 for float math.
std::vector<loom_dtype> cuda_required(const OpCase &c) {
  std::vector<loom_dtype> dts;
  for (loom_dtype dt : c.dtypes)
    if (dt != LOOM_F64) dts.push_back(dt);
  if (c.half) dts.insert(dts.end(), {LOOM_F16, LOOM_BF16});
  return dts;
}

void set_requires_grad(const Tensors &in) {
  for (loom_tensor *t : in)
    if (loom_dtype_is_float(loom_dtype_of(t))) {
      ASSERT_EQ(loom_set_requires_grad(t, true), 0) << loom_last_error();
    }
}

class OpTest : public ::testing::TestWithParam<OpCase> {};

}  // namespace

namespace opcases {
void PrintTo(const OpCase &c, std::ostream *os) { *os << c.op; }
}  // namespace opcases

// ---- the table itself ----

TEST(OpsTable, EveryOpHasACase) {
  std::vector<std::string> missing;
  std::set<std::string> names;
  for (int op = 0; op < loom_op_count(); op++) {
    names.insert(loom_op_name(op));
    if (!find_case(loom_op_name(op))) missing.push_back(loom_op_name(op));
  }
  EXPECT_TRUE(missing.empty()) << "ops without a test case: " << join(missing);
  std::vector<std::string> stale;
  for (const OpCase &c : cases())
    if (!names.count(c.op)) stale.push_back(c.op);
  EXPECT_TRUE(stale.empty()) << "cases for ops not in the table: " << join(stale);
  EXPECT_EQ(loom_op_name(loom_op_count()), nullptr);
}

TEST(OpsTable, CpuKernels) {
  std::vector<std::string> missing;
  for (const OpCase &c : cases())
    for (loom_dtype dt : c.dtypes)
      if (!loom_supports_op(LOOM_CPU, loom_op_find(c.op.c_str()), dt))
        missing.push_back(c.op + "/" + loom_dtype_name(dt));
  EXPECT_TRUE(missing.empty()) << "missing CPU kernels: " << join(missing);
}

TEST(OpsTable, CudaKernels) {
  if (!loom_cuda_is_built()) {
    std::cout << "[ NOTE     ] CUDA kernel table checks did not run: Loom was built without CUDA\n";
    GTEST_SKIP() << "Loom was built without CUDA (LOOM_CUDA=OFF or no nvcc): CUDA kernel table not checked";
  }
  std::vector<std::string> missing;
  for (const OpCase &c : cases())
    for (loom_dtype dt : cuda_required(c))
      if (!loom_supports_op(LOOM_CUDA, loom_op_find(c.op.c_str()), dt))
        missing.push_back(c.op + "/" + loom_dtype_name(dt));
  EXPECT_TRUE(missing.empty()) << "missing CUDA kernels: " << join(missing);
}

// An op whose outputs take part in autograd must be gradient-checked by its case.
TEST(OpsTable, DifferentiableOpsAreGradchecked) {
  std::vector<std::string> unchecked;
  for (const OpCase &c : cases()) {
    ScopeGuard scope;
    loom_dtype dt = c.dtypes[0] == LOOM_F32 ? LOOM_F64 : c.dtypes[0];
    Tensors in = c.make(dt, 11);
    set_requires_grad(in);
    Tensors out = run_case(c, in, loom_cpu(), dt);
    bool records = false;
    for (loom_tensor *t : out) records = records || loom_requires_grad(t);
    if (records && !c.differentiable) unchecked.push_back(c.op);
    if (!records && c.differentiable) ADD_FAILURE() << c.op << ": marked differentiable but no output needs a grad";
  }
  EXPECT_TRUE(unchecked.empty()) << "differentiable ops without a gradient check: " << join(unchecked);
}

// ---- per op ----

TEST_P(OpTest, CpuForward) {
  const OpCase &c = GetParam();
  for (loom_dtype dt : c.dtypes) {
    SCOPED_TRACE(std::string(c.op) + " " + loom_dtype_name(dt));
    ScopeGuard scope;
    Tensors in = c.make(dt, 1);
    std::vector<HT> hin;
    for (loom_tensor *t : in) {
      hin.push_back(ht_of(t));
      ASSERT_TRUE(std::any_of(hin.back().v.begin(), hin.back().v.end(), [](double x) { return x != 0; }));
    }
    Tensors out = run_case(c, in, loom_cpu(), dt);
    ASSERT_FALSE(out.empty());
    std::vector<HT> hout;
    for (size_t i = 0; i < out.size(); i++) {
      hout.push_back(ht_of(out[i]));
      EXPECT_EQ(loom_device_of(out[i]).type, LOOM_CPU) << "output " << i;
      for (double x : hout[i].v) ASSERT_TRUE(std::isfinite(x)) << "output " << i << " has " << x;
    }
    if (c.stats) {
      EXPECT_EQ(c.stats(hout), "");
    }
    if (!c.ref) continue;
    std::vector<HT> want = c.ref(hin, dt);
    ASSERT_EQ(want.size(), out.size());
    for (size_t i = 0; i < out.size(); i++) {
      EXPECT_EQ(loom_dtype_name(hout[i].dt), std::string(loom_dtype_name(want[i].dt))) << "output " << i;
      ASSERT_TRUE(loom_shape_equal(hout[i].s, want[i].s))
          << "output " << i << " shape " << loom_shape_str(hout[i].s) << ", want " << loom_shape_str(want[i].s);
      double tol = ref_tol(hout[i].dt);
      size_t bad = 0, worst = 0;
      double worst_excess = 0;
      for (size_t e = 0; e < want[i].v.size(); e++) {
        double excess = std::fabs(hout[i].v[e] - want[i].v[e]) - tol * (1 + std::fabs(want[i].v[e]));
        if (excess > 0) bad++;
        if (excess > worst_excess) worst_excess = excess, worst = e;
      }
      EXPECT_EQ(bad, 0u) << "output " << i << ": " << bad << " of " << want[i].v.size()
                         << " elements differ from the host reference; worst element " << worst << " got "
                         << hout[i].v[worst] << " want " << want[i].v[worst];
    }
  }
}

TEST_P(OpTest, Gradcheck) {
  const OpCase &c = GetParam();
  if (!c.differentiable) GTEST_SKIP() << c.op << " is not differentiable";
  ScopeGuard scope;
  Tensors in = c.make(LOOM_F64, 2);
  set_requires_grad(in);
  size_t n_out;
  std::vector<bool> is_float;
  {
    ScopeGuard probe_scope;
    Tensors probe = run_case(c, in, loom_cpu(), LOOM_F64);
    ASSERT_FALSE(probe.empty());
    n_out = probe.size();
    for (loom_tensor *t : probe) is_float.push_back(loom_dtype_is_float(loom_dtype_of(t)));
  }
  for (size_t i = 0; i < n_out; i++) {
    if (!is_float[i]) continue;
    auto f = [&c, i](const std::vector<loom_tensor *> &xs) -> loom_tensor * {
      Tensors out = c.run({xs, loom_cpu(), LOOM_F64});
      return i < out.size() ? out[i] : nullptr;
    };
    EXPECT_TRUE(gradcheck(f, in, c.eps)) << c.op << " output " << i;
  }
}

TEST_P(OpTest, CudaMatchesCpu) {
  LOOM_REQUIRE_GPU();
  const OpCase &c = GetParam();
  std::vector<loom_dtype> dts = c.dtypes;
  if (c.half) dts.insert(dts.end(), {LOOM_F16, LOOM_BF16});
  loom_set_tf32(false);
  for (loom_dtype dt : dts) {
    if (!loom_supports_op(LOOM_CUDA, loom_op_find(c.op.c_str()), dt)) continue;  // OpsTable reports it
    SCOPED_TRACE(std::string(c.op) + " " + loom_dtype_name(dt));
    ScopeGuard scope;
    Tensors in = c.make(dt, 3);
    Tensors ref = run_case(c, in, loom_cpu(), dt);
    ASSERT_FALSE(ref.empty());
    Tensors gin = to_device(in, loom_cuda(0));
    loom_set_poison(true);
    Tensors out = run_case(c, gin, loom_cuda(0), dt);
    loom_set_poison(false);
    ASSERT_FALSE(out.empty());
    ASSERT_EQ(loom_synchronize(loom_cuda(0)), 0) << loom_last_error();
    for (size_t i = 0; i < out.size(); i++) {
      EXPECT_EQ(loom_device_of(out[i]).type, LOOM_CUDA) << "output " << i;
      EXPECT_EQ(loom_dtype_of(out[i]), loom_dtype_of(ref[i])) << "output " << i;
      double bound = cuda_bound(c, dt, loom_dtype_of(ref[i]));
      EXPECT_LE(rel_err(out[i], ref[i]), bound) << "output " << i;
    }
  }
}

TEST_P(OpTest, CudaBackwardMatchesCpu) {
  LOOM_REQUIRE_GPU();
  const OpCase &c = GetParam();
  if (!c.differentiable) GTEST_SKIP() << c.op << " is not differentiable";
  loom_set_tf32(false);
  ScopeGuard scope;
  Tensors in = c.make(LOOM_F32, 4), gin = to_device(in, loom_cuda(0));
  set_requires_grad(in);
  set_requires_grad(gin);
  for (const Tensors *xs : {&in, &gin}) {
    loom_device dev = loom_device_of((*xs)[0]);
    Tensors out = run_case(c, *xs, dev, LOOM_F32);
    ASSERT_FALSE(out.empty());
    loom_tensor *loss = nullptr;
    for (size_t i = 0; i < out.size(); i++) {
      if (!loom_requires_grad(out[i])) continue;
      loom_tensor *w = make_inputs({data(loom_shape_of(out[i]))}, loom_dtype_of(out[i]), 100 + i)[0];
      loom_tensor *term = loom_sum(loom_mul(out[i], loom_to_device(w, dev)), nullptr, 0, false);
      loss = loss ? loom_add(loss, term) : term;
    }
    ASSERT_NE(loss, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(loss, nullptr, false), 0) << loom_last_error();
  }
  for (size_t k = 0; k < in.size(); k++) {
    if (!loom_requires_grad(in[k])) continue;
    loom_tensor *g = loom_grad(in[k]), *gg = loom_grad(gin[k]);
    ASSERT_NE(g, nullptr) << "input " << k << " got no grad on the CPU";
    ASSERT_NE(gg, nullptr) << "input " << k << " got no grad on CUDA";
    EXPECT_EQ(loom_device_of(gg).type, LOOM_CUDA);
    EXPECT_LE(rel_err(gg, g), c.cuda_f32_bound) << "grad of input " << k;
  }
}

// ---- half precision on the CPU: f16/bf16 go through the dispatcher's f32 conversion ----

// Every float case run in f16 / bf16 against the same (rounded) inputs in f32. copy is
// left out: its cast target depends on the dtype, and every conversion here exercises it.
TEST_P(OpTest, CpuHalfMatchesF32) {
  const OpCase &c = GetParam();
  if (c.op == "copy" || std::find(c.dtypes.begin(), c.dtypes.end(), LOOM_F32) == c.dtypes.end())
    GTEST_SKIP() << c.op << " has no float dtype to run in half precision";
  for (loom_dtype half : {LOOM_F16, LOOM_BF16}) {
    SCOPED_TRACE(c.op + " " + loom_dtype_name(half));
    ScopeGuard scope;
    Tensors in32 = c.make(LOOM_F32, 5), inh, inh32;
    for (loom_tensor *t : in32) {
      bool f = loom_dtype_is_float(loom_dtype_of(t));
      inh.push_back(f ? loom_to_dtype(t, half) : t);
      inh32.push_back(f ? loom_to_dtype(inh.back(), LOOM_F32) : t);
    }
    Tensors ref = run_case(c, inh32, loom_cpu(), LOOM_F32), out = run_case(c, inh, loom_cpu(), half);
    ASSERT_FALSE(ref.empty());
    ASSERT_FALSE(out.empty());
    for (size_t i = 0; i < out.size(); i++) {
      loom_dtype want = loom_dtype_of(ref[i]) == LOOM_F32 ? half : loom_dtype_of(ref[i]);
      EXPECT_EQ(loom_dtype_of(out[i]), want) << "output " << i;
      EXPECT_LE(rel_err(out[i], ref[i]), loom_dtype_is_float(want) ? ref_tol(half) : 0) << "output " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Ops, OpTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<OpCase> &info) { return info.param.op; });
