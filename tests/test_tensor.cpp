// Tensors: creation, random numbers, host round trips, casts, dtypes, devices, scopes.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>

#include "../src/core/philox.h"  // the documented CPU/CUDA random mapping, used as a reference
#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

void expect_shape(const loom_tensor *t, loom_shape s) {
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(t), s))
      << "got " << loom_shape_str(loom_shape_of(t)) << ", want " << loom_shape_str(s);
}

const loom_dtype kAllDtypes[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8, LOOM_BOOL};

double mean_of(const std::vector<double> &v) {
  double s = 0;
  for (double x : v) s += x;
  return s / (double)v.size();
}

double var_of(const std::vector<double> &v) {
  double m = mean_of(v), s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return s / (double)v.size();
}

}  // namespace

TEST(Creation, EmptyShapeStridesAndProperties) {
  ScopeGuard g;
  loom_tensor *e = loom_empty(LOOM_SHAPE(2, 3, 4), LOOM_F32, loom_cpu());
  ASSERT_T(e);
  expect_shape(e, LOOM_SHAPE(2, 3, 4));
  EXPECT_EQ(loom_ndim(e), 3);
  EXPECT_EQ(loom_numel(e), 24);
  EXPECT_EQ(loom_dtype_of(e), LOOM_F32);
  EXPECT_TRUE(loom_device_equal(loom_device_of(e), loom_cpu()));
  EXPECT_TRUE(loom_is_contiguous(e));
  EXPECT_EQ(loom_storage_offset(e), 0);
  EXPECT_EQ(loom_stride(e, 0), 12);
  EXPECT_EQ(loom_stride(e, 1), 4);
  EXPECT_EQ(loom_stride(e, 2), 1);
  EXPECT_EQ(loom_size(e, -1), 4);
  EXPECT_EQ(loom_size(e, -3), 2);
  EXPECT_NE(loom_data_ptr(e), nullptr);

  loom_tensor *s = loom_zeros(LOOM_SHAPE(), LOOM_F64, loom_cpu());
  ASSERT_T(s);
  EXPECT_EQ(loom_ndim(s), 0);
  EXPECT_EQ(loom_numel(s), 1);
  EXPECT_EQ(loom_item(s), 0.0);
}

TEST(Creation, ZerosOnesFullEveryDtype) {
  ScopeGuard g;
  for (loom_dtype dt : kAllDtypes) {
    SCOPED_TRACE(loom_dtype_name(dt));
    loom_tensor *z = loom_zeros(LOOM_SHAPE(3, 5), dt, loom_cpu());
    loom_tensor *o = loom_ones(LOOM_SHAPE(3, 5), dt, loom_cpu());
    double v = dt == LOOM_BOOL ? 1.0 : (loom_dtype_is_float(dt) ? -2.5 : 7.0);
    loom_tensor *f = loom_full(LOOM_SHAPE(4), v, dt, loom_cpu());
    ASSERT_T(z);
    ASSERT_T(o);
    ASSERT_T(f);
    EXPECT_EQ(loom_dtype_of(z), dt);
    for (double x : V(z)) EXPECT_EQ(x, 0.0);
    for (double x : V(o)) EXPECT_EQ(x, 1.0);
    for (double x : V(f)) EXPECT_EQ(x, v);
  }
}

TEST(Creation, LikeAndScalarLike) {
  ScopeGuard g;
  loom_tensor *base = loom_ones(LOOM_SHAPE(2, 3), LOOM_I64, loom_cpu());
  ASSERT_T(base);
  loom_tensor *z = loom_zeros_like(base), *o = loom_ones_like(base), *f = loom_full_like(base, 9);
  ASSERT_T(z);
  ASSERT_T(o);
  ASSERT_T(f);
  for (loom_tensor *t : {z, o, f}) {
    expect_shape(t, LOOM_SHAPE(2, 3));
    EXPECT_EQ(loom_dtype_of(t), LOOM_I64);
    EXPECT_FALSE(loom_shares_storage(t, base));
  }
  EXPECT_EQ(V(z), std::vector<double>(6, 0.0));
  EXPECT_EQ(V(o), std::vector<double>(6, 1.0));
  EXPECT_EQ(V(f), std::vector<double>(6, 9.0));

  loom_tensor *like = loom_zeros(LOOM_SHAPE(4, 4), LOOM_F64, loom_cpu());
  loom_tensor *s = loom_scalar_like(like, 0.125);
  ASSERT_T(s);
  EXPECT_EQ(loom_ndim(s), 0);
  EXPECT_EQ(loom_dtype_of(s), LOOM_F64);
  EXPECT_EQ(loom_item(s), 0.125);
}

TEST(Creation, ArangeFollowsPyTorchLengthRule) {
  ScopeGuard g;
  struct Case {
    double start, end, step;
    int64_t n;
  };
  const Case cases[] = {{0, 5, 1, 5},     {5, 0, -1.5, 4}, {0, 0.95, 0.3, 4}, {-2, 2, 0.5, 8},
                        {1, 2.5, 0.5, 3}, {0, 1, 0.1, 10}, {3, -3, -2, 3},    {0.5, 1.25, 0.25, 3}};
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message() << "arange(" << c.start << ", " << c.end << ", " << c.step << ")");
    int64_t rule = (int64_t)std::ceil((c.end - c.start) / c.step);
    ASSERT_EQ(rule, c.n);  // the hand-counted length agrees with ceil((end - start) / step)
    loom_tensor *t = loom_arange(c.start, c.end, c.step, LOOM_F64, loom_cpu());
    ASSERT_T(t);
    ASSERT_EQ(loom_ndim(t), 1);
    ASSERT_EQ(loom_numel(t), c.n);
    std::vector<double> v = V(t);
    for (int64_t k = 0; k < c.n; k++) EXPECT_NEAR(v[(size_t)k], c.start + (double)k * c.step, 1e-12);
  }
  loom_tensor *i = loom_arange(0, 10, 3, LOOM_I64, loom_cpu());
  ASSERT_T(i);
  EXPECT_EQ(loom_dtype_of(i), LOOM_I64);
  EXPECT_EQ(V(i), (std::vector<double>{0, 3, 6, 9}));
  loom_tensor *d = loom_arange(10, 0, -4, LOOM_I32, loom_cpu());
  ASSERT_T(d);
  EXPECT_EQ(V(d), (std::vector<double>{10, 6, 2}));
  loom_tensor *f = loom_arange(0, 1, 0.1, LOOM_F32, loom_cpu());
  ASSERT_T(f);
  ASSERT_EQ(loom_numel(f), 10);
  EXPECT_NEAR(V(f)[9], 0.9, 1e-6);
  loom_tensor *none = loom_arange(2, 2, 1, LOOM_F32, loom_cpu());
  ASSERT_T(none);
  EXPECT_EQ(loom_numel(none), 0);
}

TEST(Creation, ArangeRejectsZeroOrWrongSignStep) {
  ScopeGuard g;
  loom_clear_error();
  EXPECT_EQ(loom_arange(0, 5, 0, LOOM_F32, loom_cpu()), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("arange"), std::string::npos) << loom_last_error();
  loom_clear_error();
  EXPECT_EQ(loom_arange(0, 5, -1, LOOM_F32, loom_cpu()), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
}

TEST(Creation, Linspace) {
  ScopeGuard g;
  struct Case {
    double start, end;
    int64_t steps;
  };
  const Case cases[] = {{0, 1, 5}, {-1, 1, 4}, {2, -2, 3}, {3, 7, 1}, {-5, 5, 11}};
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message() << "linspace(" << c.start << ", " << c.end << ", " << c.steps << ")");
    loom_tensor *t = loom_linspace(c.start, c.end, c.steps, LOOM_F32, loom_cpu());
    ASSERT_T(t);
    ASSERT_EQ(loom_numel(t), c.steps);
    std::vector<double> v = V(t);
    for (int64_t k = 0; k < c.steps; k++) {
      double want = c.steps == 1 ? c.start : c.start + (c.end - c.start) * (double)k / (double)(c.steps - 1);
      EXPECT_NEAR(v[(size_t)k], want, 1e-6);
    }
    EXPECT_EQ(v.front(), c.start);
    if (c.steps > 1) {
      EXPECT_EQ(v.back(), c.end);
    }
  }
}

TEST(Creation, EyeRectangular) {
  ScopeGuard g;
  const int64_t dims[][2] = {{3, 3}, {2, 4}, {4, 2}, {1, 1}};
  for (const auto &nm : dims) {
    loom_tensor *e = loom_eye(nm[0], nm[1], LOOM_F32, loom_cpu());
    ASSERT_T(e);
    expect_shape(e, LOOM_SHAPE(nm[0], nm[1]));
    std::vector<double> v = V(e);
    for (int64_t i = 0; i < nm[0]; i++)
      for (int64_t j = 0; j < nm[1]; j++) EXPECT_EQ(v[(size_t)(i * nm[1] + j)], i == j ? 1.0 : 0.0);
  }
}

TEST(Random, RandIsUniformOnHalfOpenInterval) {
  ScopeGuard g;
  loom_manual_seed(1234);
  loom_tensor *r = loom_rand(LOOM_SHAPE(100000), LOOM_F32, loom_cpu());
  ASSERT_T(r);
  std::vector<double> v = V(r);
  double lo = 1, hi = 0;
  for (double x : v) lo = std::min(lo, x), hi = std::max(hi, x);
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  EXPECT_NEAR(mean_of(v), 0.5, 0.01);
  EXPECT_NEAR(var_of(v), 1.0 / 12.0, 0.003);
  int below_quarter = 0;
  for (double x : v) below_quarter += x < 0.25;
  EXPECT_NEAR(below_quarter / 100000.0, 0.25, 0.01);
}

TEST(Random, RandnIsStandardNormal) {
  ScopeGuard g;
  loom_manual_seed(99);
  for (loom_dtype dt : {LOOM_F32, LOOM_F64}) {
    loom_tensor *r = loom_randn(LOOM_SHAPE(100000), dt, loom_cpu());
    ASSERT_T(r);
    std::vector<double> v = V(r);
    EXPECT_NEAR(mean_of(v), 0.0, 0.02);
    EXPECT_NEAR(std::sqrt(var_of(v)), 1.0, 0.02);
    int within = 0;
    for (double x : v) within += std::fabs(x) < 1.0;
    EXPECT_NEAR(within / 100000.0, 0.6827, 0.01);
  }
}

TEST(Random, RandintStaysInRangeAndCoversIt) {
  ScopeGuard g;
  loom_manual_seed(5);
  for (loom_dtype dt : {LOOM_I64, LOOM_I32}) {
    loom_tensor *r = loom_randint(-3, 7, LOOM_SHAPE(100, 100), dt, loom_cpu());
    ASSERT_T(r);
    EXPECT_EQ(loom_dtype_of(r), dt);
    std::vector<int> count(10, 0);
    for (double x : V(r)) {
      ASSERT_EQ(x, std::floor(x));
      ASSERT_GE(x, -3);
      ASSERT_LT(x, 7);
      count[(size_t)(x + 3)]++;
    }
    for (int c : count) EXPECT_NEAR(c, 1000, 200);
  }
}

TEST(Random, ManualSeedReproducesAndSeedsDiffer) {
  ScopeGuard g;
  loom_manual_seed(42);
  std::vector<double> a = V(loom_rand(LOOM_SHAPE(64), LOOM_F32, loom_cpu()));
  std::vector<double> b = V(loom_randn(LOOM_SHAPE(64), LOOM_F32, loom_cpu()));
  std::vector<double> a_next = V(loom_rand(LOOM_SHAPE(64), LOOM_F32, loom_cpu()));
  EXPECT_NE(a, a_next) << "two draws after one seed must differ";
  loom_manual_seed(42);
  EXPECT_EQ(V(loom_rand(LOOM_SHAPE(64), LOOM_F32, loom_cpu())), a);
  EXPECT_EQ(V(loom_randn(LOOM_SHAPE(64), LOOM_F32, loom_cpu())), b);
  loom_manual_seed(43);
  EXPECT_NE(V(loom_rand(LOOM_SHAPE(64), LOOM_F32, loom_cpu())), a);
  loom_manual_seed_device(loom_cpu(), 42);
  EXPECT_EQ(V(loom_rand(LOOM_SHAPE(64), LOOM_F32, loom_cpu())), a);
}

TEST(Random, StateGetSetReplays) {
  ScopeGuard g;
  loom_manual_seed(7);
  ASSERT_T(loom_rand(LOOM_SHAPE(10), LOOM_F32, loom_cpu()));
  uint64_t seed = 0, offset = 0;
  loom_rng_get_state(loom_cpu(), &seed, &offset);
  EXPECT_EQ(seed, 7u);
  std::vector<double> a = V(loom_randn(LOOM_SHAPE(33), LOOM_F64, loom_cpu()));
  std::vector<double> b = V(loom_rand(LOOM_SHAPE(5), LOOM_F32, loom_cpu()));
  uint64_t seed2 = 0, offset2 = 0;
  loom_rng_get_state(loom_cpu(), &seed2, &offset2);
  EXPECT_EQ(seed2, seed);
  EXPECT_GT(offset2, offset) << "drawing numbers must advance the counter";
  loom_rng_set_state(loom_cpu(), seed, offset);
  EXPECT_EQ(V(loom_randn(LOOM_SHAPE(33), LOOM_F64, loom_cpu())), a);
  EXPECT_EQ(V(loom_rand(LOOM_SHAPE(5), LOOM_F32, loom_cpu())), b);
}

// rand follows the Philox mapping documented in src/core/philox.h, which CUDA shares.
TEST(Random, RandMatchesDocumentedPhiloxMapping) {
  ScopeGuard g;
  loom_manual_seed(123);
  ASSERT_T(loom_rand(LOOM_SHAPE(3), LOOM_F32, loom_cpu()));
  uint64_t seed = 0, offset = 0;
  loom_rng_get_state(loom_cpu(), &seed, &offset);
  std::vector<double> v = V(loom_rand(LOOM_SHAPE(10), LOOM_F32, loom_cpu()));
  ASSERT_EQ(v.size(), 10u);
  for (uint64_t k = 0; k < 10; k++) {
    core_u32x4 r = core_philox(seed, offset + k / 4);
    EXPECT_EQ(v[k], (double)core_u01(r.v[k % 4])) << "element " << k;
  }
}

TEST(HostCopy, RoundTripEveryDtype) {
  ScopeGuard g;
  const float f32[] = {1.5f, -2.25f, 3e-8f, 1e30f, 0.0f, -0.0f};
  const double f64[] = {1.0 / 3.0, -1e300, 5e-324, 0.0, 42.0, -7.75};
  const uint16_t f16[] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8000};   // 1, -2, 65504, subnormal
  const uint16_t bf16[] = {0x3F80, 0xC040, 0x7F7F, 0x0001, 0x3EAB, 0x8000};  // 1, -3, max, subnormal
  const int32_t i32[] = {INT32_MIN, -1, 0, 1, 123456, INT32_MAX};
  const int64_t i64[] = {INT64_MIN, -1, 0, (1LL << 53) + 1, 1LL << 40, INT64_MAX};
  const uint8_t u8[] = {0, 1, 127, 128, 200, 255};
  const bool b[] = {false, true, true, false, true, false};
  const void *data[] = {f32, f64, f16, bf16, i32, i64, u8, b};
  for (int k = 0; k < 8; k++) {
    loom_dtype dt = kAllDtypes[k];
    SCOPED_TRACE(loom_dtype_name(dt));
    size_t nbytes = 6 * loom_dtype_size(dt);
    loom_tensor *t = loom_from_host(data[k], LOOM_SHAPE(2, 3), dt, loom_cpu());
    ASSERT_T(t);
    EXPECT_EQ(loom_dtype_of(t), dt);
    expect_shape(t, LOOM_SHAPE(2, 3));
    std::vector<unsigned char> back(nbytes, 0xAB);
    ASSERT_EQ(loom_to_host(t, back.data(), back.size()), 0) << loom_last_error();
    EXPECT_EQ(std::memcmp(back.data(), data[k], nbytes), 0);
  }
  loom_tensor *h = loom_from_host(f16, LOOM_SHAPE(6), LOOM_F16, loom_cpu());
  loom_tensor *bf = loom_from_host(bf16, LOOM_SHAPE(6), LOOM_BF16, loom_cpu());
  ASSERT_T(h);
  ASSERT_T(bf);
  int64_t i0 = 0, i1 = 1, i2 = 2, i3 = 3;
  EXPECT_EQ(loom_item_at(h, &i0), 1.0);
  EXPECT_EQ(loom_item_at(h, &i1), -2.0);
  EXPECT_EQ(loom_item_at(h, &i2), 65504.0);
  EXPECT_EQ(loom_item_at(h, &i3), std::ldexp(1.0, -24));
  EXPECT_EQ(loom_item_at(bf, &i1), -3.0);
  EXPECT_EQ(loom_item_at(bf, &i3), std::ldexp(1.0, -133));
}

TEST(HostCopy, ItemAndItemAt) {
  ScopeGuard g;
  loom_tensor *one = T({-4.5}, LOOM_SHAPE(1, 1));
  ASSERT_T(one);
  EXPECT_EQ(loom_item(one), -4.5);
  loom_tensor *m = T({0, 1, 2, 3, 4, 5}, LOOM_SHAPE(2, 3), LOOM_I64);
  ASSERT_T(m);
  const int64_t idx[] = {1, 2};
  EXPECT_EQ(loom_item_at(m, idx), 5.0);
  loom_tensor *mt = loom_transpose(m, 0, 1);  // [3, 2], non-contiguous
  ASSERT_T(mt);
  const int64_t idx_t[] = {2, 0};
  EXPECT_EQ(loom_item_at(mt, idx_t), 2.0);
  loom_clear_error();
  EXPECT_TRUE(std::isnan(loom_item(m)));
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  EXPECT_NE(std::string(loom_last_error()).find("item"), std::string::npos) << loom_last_error();
}

TEST(Casts, FloatToIntTruncatesTowardZero) {
  ScopeGuard g;
  loom_tensor *x = T({1.7, -1.7, 2.5, -0.2, 0.0, 99.9}, LOOM_SHAPE(6));
  ASSERT_T(x);
  for (loom_dtype dt : {LOOM_I32, LOOM_I64}) {
    loom_tensor *y = loom_to_dtype(x, dt);
    ASSERT_T(y);
    EXPECT_EQ(loom_dtype_of(y), dt);
    EXPECT_EQ(V(y), (std::vector<double>{1, -1, 2, 0, 0, 99}));
  }
  loom_tensor *u = loom_to(T({0, 200.7, 255}, LOOM_SHAPE(3)), loom_cpu(), LOOM_U8);
  ASSERT_T(u);
  EXPECT_EQ(V(u), (std::vector<double>{0, 200, 255}));
  loom_tensor *big = loom_to_dtype(T({1099511627777.0}, LOOM_SHAPE(1), LOOM_I64), LOOM_F64);
  ASSERT_T(big);
  EXPECT_EQ(loom_item(big), 1099511627777.0);
}

TEST(Casts, ToBoolAndBack) {
  ScopeGuard g;
  loom_tensor *x = T({0, 0.5, -2, 0, NAN}, LOOM_SHAPE(5));
  loom_tensor *b = loom_to_dtype(x, LOOM_BOOL);
  ASSERT_T(b);
  EXPECT_EQ(loom_dtype_of(b), LOOM_BOOL);
  EXPECT_EQ(V(b), (std::vector<double>{0, 1, 1, 0, 1}));
  loom_tensor *bi = loom_to_dtype(T({-3, 0, 7}, LOOM_SHAPE(3), LOOM_I32), LOOM_BOOL);
  ASSERT_T(bi);
  EXPECT_EQ(V(bi), (std::vector<double>{1, 0, 1}));
  loom_tensor *bf = loom_to_dtype(bi, LOOM_F32);
  ASSERT_T(bf);
  EXPECT_EQ(V(bf), (std::vector<double>{1, 0, 1}));
}

TEST(Casts, HalfAndBfloat16RoundTrips) {
  ScopeGuard g;
  struct Fmt {
    loom_dtype dt;
    int mant;
    double big;
  };
  for (Fmt f : {Fmt{LOOM_F16, 10, 65000.0}, Fmt{LOOM_BF16, 7, 1e20}}) {
    SCOPED_TRACE(loom_dtype_name(f.dt));
    const double ulp_half = std::ldexp(1.0, -(f.mant + 1));
    std::vector<double> vals = {0.1, -3.14159, 1000.5, 1e-3, f.big, 12345.6};
    loom_tensor *r = loom_to_dtype(loom_to_dtype(T(vals, LOOM_SHAPE(6)), f.dt), LOOM_F32);
    ASSERT_T(r);
    std::vector<double> back = V(r);
    for (size_t i = 0; i < vals.size(); i++)
      EXPECT_LE(std::fabs(back[i] - vals[i]), std::fabs(vals[i]) * ulp_half * 1.0001) << vals[i];
    // exactly representable values survive; ties round to even
    const double one_ulp = std::ldexp(1.0, -f.mant);
    std::vector<double> exact = {1.5, -2, 0.25, 256, 1 + one_ulp / 2, 1 + 3 * one_ulp / 2};
    std::vector<double> want = {1.5, -2, 0.25, 256, 1, 1 + 2 * one_ulp};
    loom_tensor *e = loom_to_dtype(T(exact, LOOM_SHAPE(6), LOOM_F64), f.dt);
    ASSERT_T(e);
    EXPECT_EQ(V(e), want);
  }
  loom_tensor *inf = loom_to_dtype(T({1e5, -1e5}, LOOM_SHAPE(2)), LOOM_F16);
  ASSERT_T(inf);
  EXPECT_EQ(V(inf), (std::vector<double>{INFINITY, -INFINITY}));
}

TEST(Casts, ToSameDeviceAndCopyCasts) {
  ScopeGuard g;
  loom_tensor *x = T({1.25, -2.75, 3.5}, LOOM_SHAPE(3), LOOM_F64);
  loom_tensor *y = loom_to_device(x, loom_cpu());
  ASSERT_T(y);
  EXPECT_EQ(V(y), V(x));
  loom_tensor *z = loom_to(x, loom_cpu(), LOOM_F32);
  ASSERT_T(z);
  EXPECT_EQ(loom_dtype_of(z), LOOM_F32);
  EXPECT_EQ(V(z), V(x));
  loom_tensor *dst = loom_zeros(LOOM_SHAPE(2, 3), LOOM_I32, loom_cpu());
  ASSERT_T(dst);
  ASSERT_EQ(loom_copy_(dst, x), 0) << loom_last_error();  // broadcast [3] -> [2, 3], cast to i32
  EXPECT_EQ(V(dst), (std::vector<double>{1, -2, 3, 1, -2, 3}));
  ASSERT_EQ(loom_fill_(dst, -8), 0) << loom_last_error();
  EXPECT_EQ(V(dst), std::vector<double>(6, -8.0));
}

TEST(Clone, IsIndependent) {
  ScopeGuard g;
  loom_tensor *x = T({1, 2, 3, 4}, LOOM_SHAPE(2, 2));
  loom_tensor *c = loom_clone(x);
  ASSERT_T(c);
  EXPECT_FALSE(loom_shares_storage(x, c));
  EXPECT_EQ(V(c), V(x));
  EXPECT_EQ(loom_dtype_of(c), LOOM_F32);
  ASSERT_EQ(loom_fill_(c, 0), 0);
  EXPECT_EQ(V(x), (std::vector<double>{1, 2, 3, 4}));
  loom_tensor *ct = loom_clone(loom_transpose(x, 0, 1));
  ASSERT_T(ct);
  EXPECT_EQ(V(ct), (std::vector<double>{1, 3, 2, 4}));
}

TEST(Dtypes, NamesSizesAndKinds) {
  const char *names[] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8", "bool"};
  const size_t sizes[] = {4, 8, 2, 2, 4, 8, 1, 1};
  for (int k = 0; k < 8; k++) {
    EXPECT_STREQ(loom_dtype_name(kAllDtypes[k]), names[k]);
    EXPECT_EQ(loom_dtype_size(kAllDtypes[k]), sizes[k]);
    EXPECT_EQ(loom_dtype_is_float(kAllDtypes[k]), k < 4) << names[k];
  }
}

TEST(Dtypes, PromotionFollowsPyTorch) {
  struct Case {
    loom_dtype a, b, want;
  };
  const Case cases[] = {
      {LOOM_I32, LOOM_F32, LOOM_F32},    {LOOM_I64, LOOM_I32, LOOM_I64}, {LOOM_BOOL, LOOM_U8, LOOM_U8},
      {LOOM_F16, LOOM_F32, LOOM_F32},    {LOOM_F32, LOOM_F64, LOOM_F64}, {LOOM_F16, LOOM_BF16, LOOM_F32},
      {LOOM_I64, LOOM_F16, LOOM_F16},    {LOOM_U8, LOOM_I32, LOOM_I32},  {LOOM_BOOL, LOOM_BOOL, LOOM_BOOL},
      {LOOM_BOOL, LOOM_BF16, LOOM_BF16}, {LOOM_I32, LOOM_I32, LOOM_I32}, {LOOM_BOOL, LOOM_I64, LOOM_I64}};
  for (const Case &c : cases) {
    EXPECT_EQ(loom_promote_types(c.a, c.b), c.want) << loom_dtype_name(c.a) << " + " << loom_dtype_name(c.b);
    EXPECT_EQ(loom_promote_types(c.b, c.a), c.want) << loom_dtype_name(c.b) << " + " << loom_dtype_name(c.a);
  }
}

TEST(Devices, ParseAndName) {
  loom_device d{LOOM_CUDA, 5};
  ASSERT_TRUE(loom_device_parse("cpu", &d)) << loom_last_error();
  EXPECT_TRUE(loom_device_equal(d, loom_cpu()));
  ASSERT_TRUE(loom_device_parse("cuda", &d)) << loom_last_error();
  EXPECT_TRUE(loom_device_equal(d, loom_cuda(0)));
  ASSERT_TRUE(loom_device_parse("cuda:1", &d)) << loom_last_error();
  EXPECT_EQ(d.type, LOOM_CUDA);
  EXPECT_EQ(d.index, 1);
  ASSERT_TRUE(loom_device_parse("cuda:12", &d));
  EXPECT_EQ(d.index, 12);
  EXPECT_FALSE(loom_device_equal(loom_cuda(0), loom_cuda(1)));
  EXPECT_FALSE(loom_device_equal(loom_cpu(), loom_cuda(0)));
  EXPECT_STREQ(loom_device_name(loom_cpu()), "cpu");
  EXPECT_STREQ(loom_device_name(loom_cuda(0)), "cuda:0");
  EXPECT_STREQ(loom_device_name(loom_cuda(3)), "cuda:3");

  for (const char *bad : {"gpu", "", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CPU0", "cuda 1"}) {
    loom_clear_error();
    EXPECT_FALSE(loom_device_parse(bad, &d)) << "'" << bad << "'";
    EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID) << "'" << bad << "'";
    if (bad[0]) {
      EXPECT_NE(std::string(loom_last_error()).find(bad), std::string::npos) << loom_last_error();
    }
  }
  loom_clear_error();
  EXPECT_FALSE(loom_device_parse(nullptr, &d));
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
}

TEST(Shapes, Helpers) {
  EXPECT_EQ(loom_shape_numel(LOOM_SHAPE(2, 3, 4)), 24);
  EXPECT_EQ(loom_shape_numel(LOOM_SHAPE()), 1);
  EXPECT_EQ(loom_shape_numel(LOOM_SHAPE(5, 0)), 0);
  EXPECT_TRUE(loom_shape_equal(LOOM_SHAPE(2, 3), LOOM_SHAPE(2, 3)));
  EXPECT_FALSE(loom_shape_equal(LOOM_SHAPE(2, 3), LOOM_SHAPE(3, 2)));
  EXPECT_FALSE(loom_shape_equal(LOOM_SHAPE(6), LOOM_SHAPE(6, 1)));
  EXPECT_STREQ(loom_shape_str(LOOM_SHAPE(2, 3)), "[2, 3]");
  EXPECT_STREQ(loom_shape_str(LOOM_SHAPE(7)), "[7]");
}

TEST(Scopes, ReleaseKeepNestAndRetain) {
  const int64_t start = loom_live_tensors();
  loom_tensor *kept = nullptr, *extra = nullptr, *view = nullptr;
  loom_scope_begin();
  {
    loom_tensor *a = loom_ones(LOOM_SHAPE(4), LOOM_F32, loom_cpu());
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(loom_live_tensors(), start + 1);
    loom_scope_begin();
    kept = loom_keep(loom_full(LOOM_SHAPE(3), 2.0, LOOM_F32, loom_cpu()));
    extra = loom_retain(loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu()));
    loom_tensor *base = loom_arange(0, 6, 1, LOOM_F32, loom_cpu());
    view = loom_keep(loom_narrow(base, 0, 2, 3));
    ASSERT_NE(loom_add(a, a), nullptr);
    loom_scope_end();
    // kept and view moved to the outer scope; extra lives on through its own reference
    EXPECT_EQ(loom_live_tensors(), start + 4);
    EXPECT_EQ(V(view), (std::vector<double>{2, 3, 4})) << "a view keeps its storage alive";
    EXPECT_EQ(V(kept), (std::vector<double>{2, 2, 2}));
  }
  loom_scope_end();
  EXPECT_EQ(loom_live_tensors(), start + 1);
  EXPECT_EQ(V(extra), (std::vector<double>{0, 0}));
  loom_release(extra);
  EXPECT_EQ(loom_live_tensors(), start);

  // keep in the outermost scope hands the tensor to the caller
  loom_scope_begin();
  loom_tensor *mine = loom_keep(loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu()));
  loom_scope_end();
  EXPECT_EQ(loom_live_tensors(), start + 1);
  loom_release(mine);
  EXPECT_EQ(loom_live_tensors(), start);
}

TEST(Print, DoesNotCrash) {
  ScopeGuard g;
  testing::internal::CaptureStdout();
  loom_print(T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3)), "small_matrix");
  loom_print(loom_arange(0, 100, 1, LOOM_F64, loom_cpu()), "long_vector");
  loom_print(loom_reshape(loom_arange(0, 1000, 1, LOOM_I64, loom_cpu()), LOOM_SHAPE(10, 10, 10)), "cube");
  loom_print(loom_transpose(T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3)), 0, 1), nullptr);
  loom_print(loom_scalar_like(loom_ones(LOOM_SHAPE(1), LOOM_F16, loom_cpu()), 3), "scalar");
  loom_print(loom_ones(LOOM_SHAPE(3), LOOM_BOOL, loom_cpu()), "flags");
  loom_print(loom_zeros(LOOM_SHAPE(0, 3), LOOM_F32, loom_cpu()), "empty");
  loom_print(nullptr, "null");
  std::string out = testing::internal::GetCapturedStdout();
  for (const char *label : {"small_matrix", "long_vector", "cube", "scalar", "flags", "empty"})
    EXPECT_NE(out.find(label), std::string::npos) << label;
}

// A handle released twice, or used after the scope that owned it ended, meets
// a clear error (it was a heap use-after-free, silent outside ASan).
TEST(TensorLifetime, FreedHandlesAreRefused) {
  loom_scope_begin();
  loom_tensor *gone = loom_ones(LOOM_SHAPE(2, 2), LOOM_F32, loom_cpu());
  loom_scope_end();  // gone is freed here
  loom_clear_error();
  EXPECT_EQ(loom_add(gone, gone), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("was already freed"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_add_scalar(gone, 1), nullptr);
  EXPECT_EQ(loom_transpose(gone, 0, 1), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("transpose"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_sum(gone, nullptr, 0, false), nullptr);
  loom_clear_error();
  loom_release(gone);  // a second release: refused, nothing freed twice
  EXPECT_NE(std::string(loom_last_error()).find("loom_release"), std::string::npos) << loom_last_error();
  int64_t live = loom_live_tensors();
  loom_tensor *t = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());  // outside any scope: the caller owns it
  loom_release(t);
  EXPECT_EQ(loom_live_tensors(), live);
  loom_clear_error();
  loom_release(t);
  EXPECT_NE(std::string(loom_last_error()).find("already freed"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_live_tensors(), live);
}

// With debug handles a freed handle stays recognised however many frees come
// after it (past the 4,096 of the default window).
TEST(TensorLifetime, DebugHandlesKeepEveryFreedHandle) {
  loom_set_debug_handles(true);
  loom_tensor *old = loom_ones(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  loom_release(old);
  for (int i = 0; i < 3 * 4096; i++) loom_release(loom_zeros(LOOM_SHAPE(1), LOOM_F32, loom_cpu()));
  loom_clear_error();
  EXPECT_EQ(loom_mul_scalar(old, 2), nullptr);
  EXPECT_NE(std::string(loom_last_error()).find("was already freed"), std::string::npos) << loom_last_error();
  loom_clear_error();
  loom_release(old);
  EXPECT_NE(std::string(loom_last_error()).find("loom_release"), std::string::npos) << loom_last_error();
  const char *env = getenv("LOOM_DEBUG_HANDLES");
  loom_set_debug_handles(env && *env && strcmp(env, "0") != 0);
}
