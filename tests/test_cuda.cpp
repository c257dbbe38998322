// The CUDA backend against the CPU path: elementwise ops on odd views, casts
// between all dtypes, reductions over many shapes, bit-exact random numbers,
// indexing and matmul. Streams, transfers and huge tensors are in
// test_cuda_runtime.cpp. Every test skips itself when no GPU is visible.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "loom_test.h"

namespace {

const loom_device CPU = {LOOM_CPU, 0}, GPU = {LOOM_CUDA, 0};
const loom_dtype FLOATS[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16};
const loom_dtype ALL[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8, LOOM_BOOL};
const loom_dtype NUMERIC[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8};

// "add f16 [3, 8]"
std::string what(const std::string &op, loom_dtype dt, loom_shape s) {
  return op + " " + loom_dtype_name(dt) + " " + loom_shape_str(s);
}

// Elementwise tolerance on |gpu - cpu| / (1 + |cpu|) for one rounding of dt.
double tol_of(loom_dtype dt) {
  switch (dt) {
    case LOOM_F32: return 2e-5;
    case LOOM_F64: return 1e-12;
    case LOOM_F16: return 2e-3;
    case LOOM_BF16: return 1.6e-2;
    default: return 0;
  }
}

// The GPU result g against the CPU result c: g on cuda:0, c on the CPU, same
// dtype and shape, every |g - c| / (1 + |c|) <= tol, NaN exactly where c has NaN.
::testing::AssertionResult Close(const loom_tensor *g, const loom_tensor *c, double tol) {
  if (!g || !c)
    return ::testing::AssertionFailure() << (g ? "CPU" : "GPU") << " result is NULL: " << loom_last_error();
  if (!loom_device_equal(loom_device_of(g), GPU) || !loom_device_equal(loom_device_of(c), CPU))
    return ::testing::AssertionFailure() << "results on " << loom_device_name(loom_device_of(g)) << " and "
                                         << loom_device_name(loom_device_of(c)) << ", want cuda:0 and cpu";
  if (loom_dtype_of(g) != loom_dtype_of(c) || !loom_shape_equal(loom_shape_of(g), loom_shape_of(c)))
    return ::testing::AssertionFailure() << "GPU gives " << loom_dtype_name(loom_dtype_of(g)) << " "
                                         << loom_shape_str(loom_shape_of(g)) << ", CPU gives "
                                         << loom_dtype_name(loom_dtype_of(c)) << " " << loom_shape_str(loom_shape_of(c));
  std::vector<double> a = V(g), b = V(c);
  if (a.size() != (size_t)loom_numel(c) || b.size() != a.size())
    return ::testing::AssertionFailure() << "cannot read the results back: " << loom_last_error();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); i++) {
    double e = 0;
    if (std::isnan(a[i]) || std::isnan(b[i]))
      e = std::isnan(a[i]) == std::isnan(b[i]) ? 0 : INFINITY;
    else if (a[i] != b[i])
      e = std::fabs(a[i] - b[i]) / (1 + std::fabs(b[i]));
    if (!(e <= worst)) {
      worst = std::isnan(e) ? INFINITY : e;
      at = i;
    }
  }
  if (worst <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "max |gpu - cpu| / (1 + |cpu|) = " << worst << " > " << tol
                                       << " at flat index " << at << " (gpu " << a[at] << ", cpu " << b[at] << ")";
}

// Byte-for-byte equality of a GPU and a CPU result of the same dtype and shape.
::testing::AssertionResult SameBits(const loom_tensor *g, const loom_tensor *c) {
  if (!g || !c)
    return ::testing::AssertionFailure() << (g ? "CPU" : "GPU") << " result is NULL: " << loom_last_error();
  if (loom_dtype_of(g) != loom_dtype_of(c) || !loom_shape_equal(loom_shape_of(g), loom_shape_of(c)))
    return ::testing::AssertionFailure() << "dtypes or shapes differ";
  size_t es = loom_dtype_size(loom_dtype_of(c)), n = (size_t)loom_numel(c) * es;
  std::vector<unsigned char> a(n), b(n);
  if (loom_to_host(g, a.data(), n) || loom_to_host(c, b.data(), n))
    return ::testing::AssertionFailure() << "cannot read the results back: " << loom_last_error();
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i]) return ::testing::AssertionFailure() << "first differing element: " << i / es;
  return ::testing::AssertionSuccess();
}

// Sets a global mode for the life of the object, then restores it.
struct ModeGuard {
  void (*set)(bool);
  bool old;
  ModeGuard(bool (*get)(), void (*set_)(bool), bool on) : set(set_), old(get()) { set(on); }
  ~ModeGuard() { set(old); }
};

// Fails the test when it ends with more live tensors than it began with.
struct LeakCheck {
  int64_t before = loom_live_tensors();
  ~LeakCheck() { EXPECT_EQ(loom_live_tensors(), before) << "tensors leaked by this test"; }
};

// A CPU tensor of dtype dt with values in [1, 5) (no zeros), from seed.
loom_tensor *Data(loom_shape s, loom_dtype dt, uint64_t seed) {
  loom_manual_seed_device(CPU, seed);
  return loom_to_dtype(loom_add_scalar(loom_mul_scalar(loom_rand(s, LOOM_F64, CPU), 4.0), 1.0), dt);
}

TEST(Cuda, ElementwiseOnOddViewsMatchesCpu) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  for (loom_dtype dt : ALL) {
    for (int64_t n : {1, 7, 33, 1000, 100003}) {
      ScopeGuard scope;
      loom_shape s = LOOM_SHAPE(3, n + 3);
      loom_tensor *a = Data(s, dt, 1), *b = Data(LOOM_SHAPE(n + 1), dt, 2);
      ASSERT_TRUE(a && b) << loom_last_error();
      loom_tensor *ga = loom_to_device(a, GPU), *gb = loom_to_device(b, GPU);
      ASSERT_TRUE(ga && gb) << "to cuda:0 " << what("", dt, s) << ": " << loom_last_error();
      // Offsets 1 (unaligned for vector loads) and n + 4, a row stride of n + 3,
      // and b ([n]) broadcast against a ([3, n]).
      loom_tensor *av = loom_narrow(a, 1, 1, n), *bv = loom_narrow(b, 0, 1, n);
      loom_tensor *gav = loom_narrow(ga, 1, 1, n), *gbv = loom_narrow(gb, 0, 1, n);
      const std::string on = what("", dt, s) + " narrowed to n=" + std::to_string(n);
      const double tol = tol_of(dt);
      if (dt != LOOM_BOOL) {
        EXPECT_TRUE(Close(loom_add(gav, gbv), loom_add(av, bv), tol)) << "add" << on;
        EXPECT_TRUE(Close(loom_mul(gav, gbv), loom_mul(av, bv), tol)) << "mul" << on;
        EXPECT_TRUE(Close(loom_maximum(gav, gbv), loom_maximum(av, bv), tol)) << "maximum" << on;
        EXPECT_TRUE(Close(loom_lt(gav, gbv), loom_lt(av, bv), 0)) << "lt" << on;
        EXPECT_TRUE(Close(loom_gt(gav, loom_scalar_like(gav, 2.5)), loom_gt(av, loom_scalar_like(av, 2.5)), 0))
            << "gt with a 0-d 2.5" << on;
        loom_tensor *row = loom_select(a, 0, 1), *grow = loom_select(ga, 0, 1);
        EXPECT_TRUE(Close(loom_add(grow, grow), loom_add(row, row), tol)) << "add of row 1" << on;
      }
      EXPECT_TRUE(Close(loom_eq(gav, gbv), loom_eq(av, bv), 0)) << "eq" << on;
      EXPECT_TRUE(Close(loom_logical_not(gav), loom_logical_not(av), 0)) << "logical_not" << on;
      if (loom_dtype_is_float(dt)) {
        EXPECT_TRUE(Close(loom_div(gav, gbv), loom_div(av, bv), tol)) << "div" << on;
        EXPECT_TRUE(Close(loom_exp(gav), loom_exp(av), 4 * tol)) << "exp" << on;
        EXPECT_TRUE(Close(loom_sigmoid(loom_transpose(ga, 0, 1)), loom_sigmoid(loom_transpose(a, 0, 1)), 4 * tol))
            << "sigmoid of the transpose" << on;
        EXPECT_TRUE(Close(loom_clamp(gav, 2, 3), loom_clamp(av, 2, 3), tol)) << "clamp" << on;
      }
      loom_tensor *c = Data(LOOM_SHAPE(3, n), LOOM_F64, 3);
      loom_tensor *cond = loom_gt(c, loom_scalar_like(c, 2.5)), *gcond = loom_to_device(cond, GPU);
      EXPECT_TRUE(Close(loom_where(gcond, gav, gbv), loom_where(cond, av, bv), 0)) << "where" << on;
    }
  }
}

TEST(Cuda, CastsBetweenAllDtypesMatchCpu) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  // Every pair, from an odd view of values in [1, 5).
  for (loom_dtype from : ALL) {
    for (int64_t n : {33, 100003}) {
      ScopeGuard scope;
      loom_tensor *a = Data(LOOM_SHAPE(3, n + 3), from, 3);
      ASSERT_NE(a, nullptr) << loom_last_error();
      loom_tensor *av = loom_narrow(a, 1, 1, n), *gav = loom_narrow(loom_to_device(a, GPU), 1, 1, n);
      for (loom_dtype to : ALL)
        EXPECT_TRUE(Close(loom_to_dtype(gav, to), loom_to_dtype(av, to), 0))
            << "cast " << loom_dtype_name(from) << " -> " << loom_dtype_name(to) << " of a [3, " << n << "] view";
    }
  }
  // Fractions, negatives and values out of u8 range for every target; subnormals,
  // overflow, rounding ties of f16 and bf16, infinities and NaN for float and bool targets.
  const std::vector<double> finite = {-300.7, -200, -3.7, -1.5, -0.5, -0.0, 0.0, 0.5, 1, 2.5,
                                      7.99, 127.5, 255, 255.6, 256, 300, 1000, 65504, 2049, 4097};
  const std::vector<double> extreme = {1e-8, 6e-8, 1e-40, 65519, 65520, 1e5, 3.4e38, 1e39, -1e39,
                                       1.00048828125, 1.00390625, 1.0009765625, NAN, INFINITY, -INFINITY};
  std::vector<double> all = finite;
  all.insert(all.end(), extreme.begin(), extreme.end());
  for (loom_dtype from : ALL) {
    for (loom_dtype to : ALL) {
      ScopeGuard scope;
      bool wide = loom_dtype_is_float(from) && (loom_dtype_is_float(to) || to == LOOM_BOOL);
      const std::vector<double> &vals = wide ? all : finite;
      loom_shape s = LOOM_SHAPE((int64_t)vals.size());
      loom_tensor *x = T(vals, s, from, CPU);
      ASSERT_NE(x, nullptr) << loom_last_error();
      EXPECT_TRUE(Close(loom_to(x, GPU, to), loom_to_dtype(x, to), 0))
          << "to cuda:0 with cast " << loom_dtype_name(from) << " -> " << loom_dtype_name(to) << " of special values";
      EXPECT_TRUE(Close(loom_to_dtype(loom_to_device(x, GPU), to), loom_to_dtype(x, to), 0))
          << "cast on cuda:0 " << loom_dtype_name(from) << " -> " << loom_dtype_name(to) << " of special values";
    }
  }
  // fill converts its double like a cast does
  for (loom_dtype dt : ALL) {
    for (double v : {-1.5, -0.0, 2.7, 300.0, 1e39}) {
      if (!loom_dtype_is_float(dt) && std::fabs(v) > 1e9) continue;
      ScopeGuard scope;
      loom_shape s = LOOM_SHAPE(5, 3);
      EXPECT_TRUE(Close(loom_full(s, v, dt, GPU), loom_full(s, v, dt, CPU), 0)) << what("full", dt, s) << " with " << v;
    }
  }
}

TEST(Cuda, ReductionsOverManyShapesMatchCpu) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  // [O, R, I] reduced over R: inner, outer, long, short, empty and odd extents.
  const int64_t shapes[][3] = {{1, 1, 1},      {5, 1, 1},      {3, 7, 1},      {1000, 600, 1}, {1, 1000003, 1},
                               {3, 100000, 1}, {200, 5000, 1}, {2, 5000, 7},   {1, 100000, 3}, {100, 3, 1000},
                               {7, 513, 1},    {1, 40000, 33}, {4, 0, 5},      {2, 77, 100000}, {1, 3000000, 2}};
  for (const auto &d : shapes) {
    for (loom_dtype dt : NUMERIC) {
      ScopeGuard scope;
      loom_shape s = LOOM_SHAPE(d[0], d[1], d[2]);
      loom_tensor *x = Data(s, dt, 4);
      ASSERT_NE(x, nullptr) << loom_last_error();
      loom_tensor *gx = loom_to_device(x, GPU);
      // Relative error of sums of positive numbers; halves are summed in f32.
      double tol = dt == LOOM_F32 ? 1e-4 : dt == LOOM_F64 ? 1e-10 : loom_dtype_is_float(dt) ? 2e-2 : 0;
      int dim = 1;
      EXPECT_TRUE(Close(loom_sum(gx, &dim, 1, false), loom_sum(x, &dim, 1, false), tol)) << what("sum dim 1", dt, s);
      EXPECT_TRUE(Close(loom_sum(gx, nullptr, 0, true), loom_sum(x, nullptr, 0, true), tol)) << what("sum all", dt, s);
      if (d[1] == 0) continue;
      loom_tensor *gi = nullptr, *ci = nullptr;
      loom_tensor *gm = loom_max(gx, 1, false, &gi), *cm = loom_max(x, 1, false, &ci);
      EXPECT_TRUE(Close(gm, cm, 0)) << what("max values", dt, s);
      EXPECT_TRUE(Close(gi, ci, 0)) << what("max indices", dt, s);
      gm = loom_min(gx, 1, true, &gi), cm = loom_min(x, 1, true, &ci);
      EXPECT_TRUE(Close(gm, cm, 0)) << what("min values", dt, s);
      EXPECT_TRUE(Close(gi, ci, 0)) << what("min indices", dt, s);
      // Values 0..2 only: many ties, the first index of the extreme wins.
      loom_tensor *tie = loom_to_dtype(loom_to_dtype(loom_mul_scalar(Data(s, LOOM_F64, 5), 0.6), LOOM_I64), dt);
      gm = loom_max(loom_to_device(tie, GPU), 1, false, &gi), cm = loom_max(tie, 1, false, &ci);
      EXPECT_TRUE(Close(gm, cm, 0)) << what("max values with ties", dt, s);
      EXPECT_TRUE(Close(gi, ci, 0)) << what("max indices with ties", dt, s);
    }
  }
  // NaN beats every number in max and min; the first NaN's index is reported.
  ScopeGuard scope;
  const loom_shape s = LOOM_SHAPE(300000);
  std::vector<double> v(300000, 1.0);
  v[5] = 7.0, v[123457] = NAN, v[200000] = NAN;
  for (loom_dtype dt : FLOATS) {
    loom_tensor *x = T(v, s, dt, CPU), *gx = loom_to_device(x, GPU);
    loom_tensor *gi = nullptr, *ci = nullptr;
    EXPECT_TRUE(Close(loom_max(gx, 0, false, &gi), loom_max(x, 0, false, &ci), 0)) << what("max with NaN", dt, s);
    EXPECT_TRUE(Close(gi, ci, 0)) << what("max index with NaN", dt, s);
    EXPECT_TRUE(Close(loom_min(gx, 0, false, &gi), loom_min(x, 0, false, &ci), 0)) << what("min with NaN", dt, s);
    EXPECT_TRUE(Close(gi, ci, 0)) << what("min index with NaN", dt, s);
  }
}

TEST(Cuda, RandomNumbersMatchCpuBits) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  for (int64_t n : {1, 3, 4, 5, 1001, 1000003}) {
    loom_shape s = LOOM_SHAPE(n);
    for (loom_dtype dt : FLOATS) {
      ScopeGuard scope;
      loom_manual_seed(77);
      loom_tensor *g = loom_rand(s, dt, GPU);
      loom_manual_seed(77);
      EXPECT_TRUE(SameBits(g, loom_rand(s, dt, CPU))) << what("rand", dt, s);
      loom_manual_seed(77);
      g = loom_randn(s, dt, GPU);
      loom_manual_seed(77);
      EXPECT_TRUE(Close(g, loom_randn(s, dt, CPU), 10 * tol_of(dt))) << what("randn", dt, s);
    }
    for (loom_dtype dt : {LOOM_I32, LOOM_I64, LOOM_U8}) {
      ScopeGuard scope;
      loom_manual_seed(78);
      loom_tensor *g = loom_randint(-1000, 100000, s, dt, GPU);
      loom_manual_seed(78);
      EXPECT_TRUE(SameBits(g, loom_randint(-1000, 100000, s, dt, CPU))) << what("randint [-1000, 100000)", dt, s);
    }
  }
  // Both generators advance alike: a second draw matches too, and so do the states.
  ScopeGuard scope;
  loom_manual_seed(5);
  loom_rand(LOOM_SHAPE(13), LOOM_F32, GPU);
  loom_tensor *g = loom_rand(LOOM_SHAPE(9), LOOM_F32, GPU);
  loom_manual_seed(5);
  loom_rand(LOOM_SHAPE(13), LOOM_F32, CPU);
  EXPECT_TRUE(SameBits(g, loom_rand(LOOM_SHAPE(9), LOOM_F32, CPU))) << "rand f32 [9] after rand f32 [13]";
  uint64_t gs = 0, go = 0, cs = 1, co = 1;
  loom_rng_get_state(GPU, &gs, &go);
  loom_rng_get_state(CPU, &cs, &co);
  EXPECT_EQ(gs, cs) << "generator seeds of cuda:0 and cpu after the same draws";
  EXPECT_EQ(go, co) << "generator offsets of cuda:0 and cpu after the same draws";
}

TEST(Cuda, IndexingMatchesCpu) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  for (bool det : {false, true}) {
    ModeGuard mode(loom_deterministic, loom_set_deterministic, det);
    for (loom_dtype dt : NUMERIC) {
      ScopeGuard scope;
      const std::string on = std::string(" ") + loom_dtype_name(dt) + " [6, 50, 7] dim 1, deterministic " +
                             (det ? "on" : "off");
      loom_tensor *x = Data(LOOM_SHAPE(6, 50, 7), dt, 6), *gx = loom_to_device(x, GPU);
      loom_tensor *idx = loom_randint(0, 50, LOOM_SHAPE(31), LOOM_I64, CPU), *gidx = loom_to_device(idx, GPU);
      ASSERT_TRUE(gx && gidx) << loom_last_error();
      EXPECT_TRUE(Close(loom_index_select(gx, 1, gidx), loom_index_select(x, 1, idx), 0)) << "index_select" << on;
      loom_tensor *gi = loom_randint(0, 50, LOOM_SHAPE(6, 80, 7), LOOM_I64, CPU), *ggi = loom_to_device(gi, GPU);
      EXPECT_TRUE(Close(loom_gather(gx, 1, ggi), loom_gather(x, 1, gi), 0)) << "gather" << on;
      // gather from a transposed view: [7, 50, 6] indexed along dim 1
      loom_tensor *gt = loom_randint(0, 50, LOOM_SHAPE(7, 20, 6), LOOM_I64, CPU);
      EXPECT_TRUE(Close(loom_gather(loom_transpose(gx, 0, 2), 1, loom_to_device(gt, GPU)),
                        loom_gather(loom_transpose(x, 0, 2), 1, gt), 0))
          << "gather from a transposed view" << on;
      loom_tensor *src = Data(LOOM_SHAPE(6, 80, 7), dt, 7), *gsrc = loom_to_device(src, GPU);
      double tol = dt == LOOM_F16 ? 2e-2 : dt == LOOM_BF16 ? 5e-2 : dt == LOOM_F32 ? 1e-5 : tol_of(dt);
      loom_tensor *gsa = loom_scatter_add(gx, 1, ggi, gsrc);
      EXPECT_TRUE(Close(gsa, loom_scatter_add(x, 1, gi, src), tol)) << "scatter_add" << on;
      if (det && loom_dtype_is_float(dt)) {
        EXPECT_TRUE(SameBits(loom_scatter_add(gx, 1, ggi, gsrc), loom_to_device(gsa, CPU)))
            << "scatter_add run twice gives different bits" << on;
      }
      // scatter: 80 sources per column into 50 rows repeat indices; the last
      // one wins only under deterministic mode, so otherwise one source per row.
      loom_tensor *pi = det ? gi : loom_narrow(gi, 1, 0, 1), *gpi = loom_to_device(pi, GPU);
      EXPECT_TRUE(Close(loom_scatter(gx, 1, gpi, gsrc), loom_scatter(x, 1, pi, src), 0)) << "scatter" << on;
      loom_tensor *mask = loom_gt(x, loom_scalar_like(x, 3.0));
      EXPECT_TRUE(Close(loom_masked_fill(gx, loom_to_device(mask, GPU), -2.0), loom_masked_fill(x, mask, -2.0), 0))
          << "masked_fill" << on;
    }
  }
  ScopeGuard scope;
  loom_tensor *idx = loom_randint(0, 10, LOOM_SHAPE(3, 5), LOOM_I64, CPU);
  EXPECT_TRUE(Close(loom_one_hot(loom_to_device(idx, GPU), 10), loom_one_hot(idx, 10), 0)) << "one_hot i64 [3, 5], 10";
}

double matmul_tol(loom_dtype dt) {
  return dt == LOOM_F32 ? 1e-5 : dt == LOOM_F64 ? 1e-12 : dt == LOOM_F16 ? 3e-3 : 2e-2;
}

TEST(Cuda, MatmulTransposesAndBroadcastsMatchCpu) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  ModeGuard tf32(loom_tf32, loom_set_tf32, false);
  const int64_t B = 3, M = 37, K = 19, N = 45;
  for (loom_dtype dt : FLOATS) {
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++)
        for (int bcast = 0; bcast < 3; bcast++) {
          ScopeGuard scope;
          loom_tensor *a = Data(ta ? LOOM_SHAPE(B, K, M) : LOOM_SHAPE(B, M, K), dt, 8);
          loom_tensor *b = Data(tb ? LOOM_SHAPE(B, N, K) : LOOM_SHAPE(B, K, N), dt, 9);
          loom_tensor *ga = loom_to_device(a, GPU), *gb = loom_to_device(b, GPU);
          ASSERT_TRUE(ga && gb) << loom_last_error();
          if (ta) a = loom_transpose(a, 1, 2), ga = loom_transpose(ga, 1, 2);
          if (tb) b = loom_transpose(b, 1, 2), gb = loom_transpose(gb, 1, 2);
          if (bcast == 1) a = loom_select(a, 0, 1), ga = loom_select(ga, 0, 1);  // [M, K] @ [B, K, N]
          if (bcast == 2) b = loom_select(b, 0, 2), gb = loom_select(gb, 0, 2);  // [B, M, K] @ [K, N]
          EXPECT_TRUE(Close(loom_matmul(ga, gb), loom_matmul(a, b), matmul_tol(dt)))
              << "matmul " << loom_dtype_name(dt) << " " << loom_shape_str(loom_shape_of(a)) << " @ "
              << loom_shape_str(loom_shape_of(b)) << (ta ? ", a transposed" : "") << (tb ? ", b transposed" : "");
        }
  }
  for (loom_dtype dt : FLOATS) {
    ScopeGuard scope;
    const std::string on = std::string(" ") + loom_dtype_name(dt);
    loom_tensor *a = Data(LOOM_SHAPE(4, 33, 17), dt, 10), *b = Data(LOOM_SHAPE(4, 29, 33), dt, 11);
    loom_tensor *ga = loom_to_device(a, GPU), *gb = loom_to_device(b, GPU);
    ASSERT_TRUE(ga && gb) << loom_last_error();
    EXPECT_TRUE(Close(loom_matmul(loom_transpose(ga, 1, 2), loom_transpose(gb, 1, 2)),
                      loom_matmul(loom_transpose(a, 1, 2), loom_transpose(b, 1, 2)), matmul_tol(dt)))
        << "matmul of transposed views [4, 17, 33] @ [4, 33, 29]" << on;
    // 2-d transposed operands at storage offsets
    loom_tensor *a1 = loom_transpose(loom_select(a, 0, 1), 0, 1), *b1 = loom_select(loom_transpose(b, 1, 2), 0, 3);
    loom_tensor *ga1 = loom_transpose(loom_select(ga, 0, 1), 0, 1), *gb1 = loom_select(loom_transpose(gb, 1, 2), 0, 3);
    EXPECT_TRUE(Close(loom_matmul(ga1, gb1), loom_matmul(a1, b1), matmul_tol(dt)))
        << "matmul of transposed offset views [17, 33] @ [33, 29]" << on;
    EXPECT_TRUE(Close(loom_bmm(gb, ga), loom_bmm(b, a), matmul_tol(dt))) << "bmm [4, 29, 33] @ [4, 33, 17]" << on;
    loom_tensor *bias = Data(LOOM_SHAPE(29), dt, 12);
    EXPECT_TRUE(Close(loom_addmm(loom_to_device(bias, GPU), ga1, gb1, 0.5, 2.0), loom_addmm(bias, a1, b1, 0.5, 2.0),
                      2 * matmul_tol(dt)))
        << "addmm [29] + [17, 33] @ [33, 29]" << on;
    // matrix @ vector and vector @ matrix
    loom_tensor *v = loom_select(a1, 0, 2), *gv = loom_select(ga1, 0, 2);
    EXPECT_TRUE(Close(loom_matmul(gv, gb1), loom_matmul(v, b1), matmul_tol(dt))) << "matmul [33] @ [33, 29]" << on;
    EXPECT_TRUE(Close(loom_matmul(ga1, gv), loom_matmul(a1, v), matmul_tol(dt))) << "matmul [17, 33] @ [33]" << on;
  }
}

TEST(Cuda, MatmulTf32StaysClose) {
  LOOM_REQUIRE_GPU();
  LeakCheck leaks;
  ScopeGuard scope;
  loom_tensor *a = Data(LOOM_SHAPE(256, 1024), LOOM_F32, 13), *b = Data(LOOM_SHAPE(1024, 256), LOOM_F32, 14);
  loom_tensor *ga = loom_to_device(a, GPU), *gb = loom_to_device(b, GPU), *c = loom_matmul(a, b);
  ASSERT_TRUE(ga && gb && c) << loom_last_error();
  loom_tensor *off, *on;
  {
    ModeGuard tf32(loom_tf32, loom_set_tf32, false);
    off = loom_matmul(ga, gb);
  }
  {
    ModeGuard tf32(loom_tf32, loom_set_tf32, true);
    on = loom_matmul(ga, gb);
  }
  EXPECT_TRUE(Close(off, c, 1e-5)) << "matmul f32 [256, 1024] @ [1024, 256], TF32 off";
  EXPECT_TRUE(Close(on, c, 5e-3)) << "matmul f32 [256, 1024] @ [1024, 256], TF32 on";
}

}  // namespace
