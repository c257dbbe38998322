// Views, strides, storage sharing, joins/splits, broadcasting and gradients through views.
#include <cmath>
#include <random>
#include <string>

#include "loom_test.h"

#define ASSERT_T(t) ASSERT_NE((t), nullptr) << loom_last_error()

namespace {

void expect_shape(const loom_tensor *t, loom_shape s) {
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(t), s))
      << "got " << loom_shape_str(loom_shape_of(t)) << ", want " << loom_shape_str(s);
}

std::vector<double> iota(int64_t n, double from = 0) {
  std::vector<double> v((size_t)n);
  for (int64_t i = 0; i < n; i++) v[(size_t)i] = from + (double)i;
  return v;
}

// An f32 tensor 0, 1, ..., numel-1 of shape s.
loom_tensor *seq(loom_shape s, loom_dtype dt = LOOM_F32) { return T(iota(loom_shape_numel(s)), s, dt); }

// An f64 CPU leaf of shape s with values in [-1, 1] that requires grad.
loom_tensor *leaf(loom_shape s, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> v((size_t)loom_shape_numel(s));
  for (double &x : v) x = u(rng);
  loom_tensor *t = T(v, s, LOOM_F64);
  loom_set_requires_grad(t, true);
  return t;
}

std::vector<double> strides_of(const loom_tensor *t) {
  std::vector<double> s;
  for (int d = 0; d < loom_ndim(t); d++) s.push_back((double)loom_stride(t, d));
  return s;
}

}  // namespace

TEST(Views, ViewSharesStorageAndInfersMinusOne) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(24));
  loom_tensor *v = loom_view(x, LOOM_SHAPE(2, 3, 4));
  ASSERT_T(v);
  expect_shape(v, LOOM_SHAPE(2, 3, 4));
  EXPECT_TRUE(loom_shares_storage(x, v));
  EXPECT_EQ(strides_of(v), (std::vector<double>{12, 4, 1}));
  const int64_t idx[] = {1, 2, 3};
  EXPECT_EQ(loom_item_at(v, idx), 23.0);
  loom_tensor *w = loom_view(x, LOOM_SHAPE(4, -1));
  ASSERT_T(w);
  expect_shape(w, LOOM_SHAPE(4, 6));
  loom_tensor *r = loom_reshape(v, LOOM_SHAPE(-1, 2));
  ASSERT_T(r);
  expect_shape(r, LOOM_SHAPE(12, 2));
  EXPECT_TRUE(loom_shares_storage(x, r)) << "reshape of a contiguous tensor is a view";
}

TEST(Views, ViewOfNonContiguousFailsReshapeCopies) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(4, 6));
  loom_tensor *t = loom_transpose(x, 0, 1);  // [6, 4], strides [1, 6]
  ASSERT_T(t);
  EXPECT_FALSE(loom_is_contiguous(t));
  loom_clear_error();
  EXPECT_EQ(loom_view(t, LOOM_SHAPE(24)), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("view"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[6, 4]"), std::string::npos) << msg;

  loom_tensor *r = loom_reshape(t, LOOM_SHAPE(24));
  ASSERT_T(r);
  EXPECT_FALSE(loom_shares_storage(x, r));
  std::vector<double> want;
  for (int j = 0; j < 6; j++)
    for (int i = 0; i < 4; i++) want.push_back(i * 6 + j);
  EXPECT_EQ(V(r), want);

  // splitting a dim of a transposed tensor is stride-compatible: PyTorch allows this view
  loom_tensor *s = loom_view(t, LOOM_SHAPE(6, 2, 2));
  ASSERT_T(s);
  EXPECT_TRUE(loom_shares_storage(x, s));
  EXPECT_EQ(V(s), want);
}

TEST(Views, FlattenSqueezeUnsqueeze) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(2, 3, 4));
  loom_tensor *f = loom_flatten(x, 1, 2);
  ASSERT_T(f);
  expect_shape(f, LOOM_SHAPE(2, 12));
  expect_shape(loom_flatten(x, 0, -1), LOOM_SHAPE(24));
  expect_shape(loom_flatten(x, 0, 1), LOOM_SHAPE(6, 4));
  loom_tensor *s0 = loom_zeros(LOOM_SHAPE(), LOOM_F32, loom_cpu());
  expect_shape(loom_flatten(s0, 0, -1), LOOM_SHAPE(1));

  loom_tensor *y = seq(LOOM_SHAPE(1, 3, 1));
  expect_shape(loom_squeeze(y, 0), LOOM_SHAPE(3, 1));
  expect_shape(loom_squeeze(y, 1), LOOM_SHAPE(1, 3, 1));
  expect_shape(loom_squeeze(y, -1), LOOM_SHAPE(1, 3));
  loom_tensor *sq = loom_squeeze_all(y);
  ASSERT_T(sq);
  expect_shape(sq, LOOM_SHAPE(3));
  EXPECT_TRUE(loom_shares_storage(sq, y));
  expect_shape(loom_squeeze_all(loom_ones(LOOM_SHAPE(1, 1), LOOM_F32, loom_cpu())), LOOM_SHAPE());

  loom_tensor *z = seq(LOOM_SHAPE(2, 3));
  expect_shape(loom_unsqueeze(z, 0), LOOM_SHAPE(1, 2, 3));
  expect_shape(loom_unsqueeze(z, 1), LOOM_SHAPE(2, 1, 3));
  expect_shape(loom_unsqueeze(z, 2), LOOM_SHAPE(2, 3, 1));
  expect_shape(loom_unsqueeze(z, -1), LOOM_SHAPE(2, 3, 1));
  expect_shape(loom_unsqueeze(z, -3), LOOM_SHAPE(1, 2, 3));
  loom_tensor *u = loom_unsqueeze(z, 1);
  ASSERT_T(u);
  EXPECT_TRUE(loom_shares_storage(u, z));
  EXPECT_EQ(V(u), V(z));
}

TEST(Views, PermuteAndTranspose) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(2, 3, 4));
  const int dims[] = {2, 0, 1};
  loom_tensor *p = loom_permute(x, dims, 3);
  ASSERT_T(p);
  expect_shape(p, LOOM_SHAPE(4, 2, 3));
  EXPECT_EQ(strides_of(p), (std::vector<double>{1, 12, 4}));
  EXPECT_TRUE(loom_shares_storage(p, x));
  std::vector<double> pv = V(p);
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 3; j++) EXPECT_EQ(pv[(size_t)(k * 6 + i * 3 + j)], i * 12 + j * 4 + k);
  const int neg[] = {-1, -3, -2};
  loom_tensor *pn = loom_permute(x, neg, 3);
  ASSERT_T(pn);
  EXPECT_EQ(V(pn), pv);

  loom_tensor *t = loom_transpose(x, 0, 2);
  ASSERT_T(t);
  expect_shape(t, LOOM_SHAPE(4, 3, 2));
  EXPECT_EQ(strides_of(t), (std::vector<double>{1, 4, 12}));
  loom_tensor *tn = loom_transpose(x, -1, -3);
  ASSERT_T(tn);
  EXPECT_EQ(V(tn), V(t));
  EXPECT_EQ(V(loom_transpose(x, 1, 1)), V(x));
}

TEST(Views, ExpandUsesStrideZero) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(3, 1));
  loom_tensor *e = loom_expand(x, LOOM_SHAPE(3, 4));
  ASSERT_T(e);
  EXPECT_EQ(loom_stride(e, 1), 0);
  EXPECT_TRUE(loom_shares_storage(e, x));
  EXPECT_EQ(V(e), (std::vector<double>{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}));
  loom_tensor *m = loom_expand(x, LOOM_SHAPE(-1, 4));
  ASSERT_T(m);
  EXPECT_EQ(V(m), V(e));
  loom_tensor *lead = loom_expand(x, LOOM_SHAPE(2, 3, 5));
  ASSERT_T(lead);
  expect_shape(lead, LOOM_SHAPE(2, 3, 5));
  EXPECT_EQ(loom_stride(lead, 0), 0);
  EXPECT_EQ(loom_stride(lead, 2), 0);
  const int64_t idx[] = {1, 2, 4};
  EXPECT_EQ(loom_item_at(lead, idx), 2.0);
  loom_tensor *s = loom_expand(loom_scalar_like(x, 7), LOOM_SHAPE(2, 2));
  ASSERT_T(s);
  EXPECT_EQ(V(s), std::vector<double>(4, 7.0));
}

TEST(Views, NarrowSliceSelect) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(4, 6));
  loom_tensor *n = loom_narrow(x, 1, 2, 3);
  ASSERT_T(n);
  expect_shape(n, LOOM_SHAPE(4, 3));
  EXPECT_EQ(loom_storage_offset(n), 2);
  EXPECT_TRUE(loom_shares_storage(n, x));
  EXPECT_EQ(V(n), (std::vector<double>{2, 3, 4, 8, 9, 10, 14, 15, 16, 20, 21, 22}));
  EXPECT_EQ(V(loom_narrow(x, 0, -1, 1)), (std::vector<double>{18, 19, 20, 21, 22, 23}));

  loom_tensor *v = seq(LOOM_SHAPE(10));
  loom_tensor *s = loom_slice(v, 0, 1, 8, 3);
  ASSERT_T(s);
  EXPECT_EQ(V(s), (std::vector<double>{1, 4, 7}));
  EXPECT_EQ(loom_stride(s, 0), 3);
  EXPECT_EQ(V(loom_slice(v, 0, 2, 100, 4)), (std::vector<double>{2, 6}));
  EXPECT_EQ(V(loom_slice(v, 0, -3, 10, 1)), (std::vector<double>{7, 8, 9}));
  EXPECT_EQ(V(loom_slice(v, 0, 0, -8, 1)), (std::vector<double>{0, 1}));
  EXPECT_EQ(loom_numel(loom_slice(v, 0, 6, 3, 1)), 0);
  loom_tensor *s2 = loom_slice(x, 1, 1, 6, 2);
  ASSERT_T(s2);
  EXPECT_EQ(V(s2), (std::vector<double>{1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));

  loom_tensor *row = loom_select(x, 0, 2);
  ASSERT_T(row);
  expect_shape(row, LOOM_SHAPE(6));
  EXPECT_EQ(V(row), iota(6, 12));
  loom_tensor *col = loom_select(x, 1, -1);
  ASSERT_T(col);
  EXPECT_EQ(loom_stride(col, 0), 6);
  EXPECT_EQ(V(col), (std::vector<double>{5, 11, 17, 23}));
  loom_tensor *el = loom_select(row, 0, 3);
  ASSERT_T(el);
  EXPECT_EQ(loom_ndim(el), 0);
  EXPECT_EQ(loom_item(el), 15.0);
}

TEST(Views, ContiguousCopiesOnlyWhenNeeded) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(3, 4));
  loom_tensor *c = loom_contiguous(x);
  ASSERT_T(c);
  EXPECT_TRUE(loom_shares_storage(c, x));
  loom_tensor *t = loom_transpose(x, 0, 1);
  loom_tensor *tc = loom_contiguous(t);
  ASSERT_T(tc);
  EXPECT_TRUE(loom_is_contiguous(tc));
  EXPECT_FALSE(loom_shares_storage(tc, x));
  EXPECT_EQ(strides_of(tc), (std::vector<double>{3, 1}));
  EXPECT_EQ(V(tc), V(t));
  std::vector<double> host(12, -1.0);
  loom_tensor *t64 = loom_to_dtype(t, LOOM_F64);
  ASSERT_T(t64);
  ASSERT_EQ(loom_to_host(t64, host.data(), host.size() * sizeof(double)), 0) << loom_last_error();
  EXPECT_EQ(host, (std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
}

TEST(Views, WritesThroughViewsReachTheBase) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(3, 4));
  ASSERT_EQ(loom_fill_(loom_narrow(x, 1, 1, 2), -1), 0) << loom_last_error();
  EXPECT_EQ(V(x), (std::vector<double>{0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11}));
  ASSERT_EQ(loom_copy_(loom_select(x, 0, 2), T({10, 20, 30, 40}, LOOM_SHAPE(4))), 0) << loom_last_error();
  EXPECT_EQ(V(x), (std::vector<double>{0, -1, -1, 3, 4, -1, -1, 7, 10, 20, 30, 40}));
  // through a transposed view, with a broadcast source
  ASSERT_EQ(loom_copy_(loom_select(loom_transpose(x, 0, 1), 0, 3), T({5}, LOOM_SHAPE(1))), 0) << loom_last_error();
  EXPECT_EQ(V(x), (std::vector<double>{0, -1, -1, 5, 4, -1, -1, 5, 10, 20, 30, 5}));
  ASSERT_EQ(loom_fill_(loom_slice(loom_view(x, LOOM_SHAPE(12)), 0, 0, 12, 5), 9), 0);
  EXPECT_EQ(V(x), (std::vector<double>{9, -1, -1, 5, 4, 9, -1, 5, 10, 20, 9, 5}));
}

TEST(Joins, CatAndStack) {
  ScopeGuard g;
  loom_tensor *a = seq(LOOM_SHAPE(2, 3));
  loom_tensor *b = T({6, 7, 8}, LOOM_SHAPE(1, 3));
  loom_tensor *ab[] = {a, b};
  loom_tensor *c0 = loom_cat(ab, 2, 0);
  ASSERT_T(c0);
  expect_shape(c0, LOOM_SHAPE(3, 3));
  EXPECT_EQ(V(c0), iota(9));
  loom_tensor *d = T({10, 11, 12, 13}, LOOM_SHAPE(2, 2));
  loom_tensor *ad[] = {a, d};
  loom_tensor *c1 = loom_cat(ad, 2, -1);
  ASSERT_T(c1);
  expect_shape(c1, LOOM_SHAPE(2, 5));
  EXPECT_EQ(V(c1), (std::vector<double>{0, 1, 2, 10, 11, 3, 4, 5, 12, 13}));
  loom_tensor *mixed[] = {a, loom_transpose(seq(LOOM_SHAPE(3, 2)), 0, 1)};  // non-contiguous input
  loom_tensor *c2 = loom_cat(mixed, 2, 0);
  ASSERT_T(c2);
  EXPECT_EQ(V(c2), (std::vector<double>{0, 1, 2, 3, 4, 5, 0, 2, 4, 1, 3, 5}));

  loom_tensor *e = T({6, 7, 8, 9, 10, 11}, LOOM_SHAPE(2, 3));
  loom_tensor *ae[] = {a, e};
  loom_tensor *s0 = loom_stack(ae, 2, 0);
  ASSERT_T(s0);
  expect_shape(s0, LOOM_SHAPE(2, 2, 3));
  EXPECT_EQ(V(s0), iota(12));
  loom_tensor *s2 = loom_stack(ae, 2, -1);
  ASSERT_T(s2);
  expect_shape(s2, LOOM_SHAPE(2, 3, 2));
  EXPECT_EQ(V(s2), (std::vector<double>{0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11}));
  loom_tensor *s1 = loom_stack(ae, 2, 1);
  ASSERT_T(s1);
  expect_shape(s1, LOOM_SHAPE(2, 2, 3));
  EXPECT_EQ(V(s1), (std::vector<double>{0, 1, 2, 6, 7, 8, 3, 4, 5, 9, 10, 11}));
}

TEST(Joins, SplitAndChunkLikePyTorch) {
  ScopeGuard g;
  loom_tensor *x = seq(LOOM_SHAPE(10));
  loom_tensor *out[8] = {};
  ASSERT_EQ(loom_split(x, 4, 0, out, 8), 3) << loom_last_error();
  EXPECT_EQ(V(out[0]), iota(4, 0));
  EXPECT_EQ(V(out[1]), iota(4, 4));
  EXPECT_EQ(V(out[2]), iota(2, 8));
  EXPECT_TRUE(loom_shares_storage(out[2], x));

  struct Case {
    int64_t n;
    int chunks;
    std::vector<int64_t> sizes;
  };
  const Case cases[] = {
      {10, 4, {3, 3, 3, 1}}, {10, 3, {4, 4, 2}}, {5, 4, {2, 2, 1}}, {6, 3, {2, 2, 2}}, {2, 5, {1, 1}}};
  for (const Case &c : cases) {
    SCOPED_TRACE(testing::Message() << "chunk(" << c.n << ", " << c.chunks << ")");
    loom_tensor *y = seq(LOOM_SHAPE(c.n));
    int k = loom_chunk(y, c.chunks, 0, out, 8);
    ASSERT_EQ(k, (int)c.sizes.size()) << loom_last_error();
    int64_t start = 0;
    for (int i = 0; i < k; i++) {
      EXPECT_EQ(loom_numel(out[i]), c.sizes[(size_t)i]);
      EXPECT_EQ(V(out[i]), iota(c.sizes[(size_t)i], (double)start));
      start += c.sizes[(size_t)i];
    }
  }
  loom_tensor *m = seq(LOOM_SHAPE(2, 5));
  ASSERT_EQ(loom_chunk(m, 2, 1, out, 8), 2);
  expect_shape(out[0], LOOM_SHAPE(2, 3));
  expect_shape(out[1], LOOM_SHAPE(2, 2));
  EXPECT_EQ(V(out[1]), (std::vector<double>{3, 4, 8, 9}));
  loom_clear_error();
  EXPECT_EQ(loom_split(x, 1, 0, out, 8), -1) << "10 pieces do not fit in 8 slots";
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
}

TEST(Broadcast, BinaryOpShapesAndValues) {
  ScopeGuard g;
  loom_tensor *a = seq(LOOM_SHAPE(3, 1, 4));
  loom_tensor *b = T(iota(20, 100), LOOM_SHAPE(5, 4));
  loom_tensor *c = loom_add(a, b);
  ASSERT_T(c);
  expect_shape(c, LOOM_SHAPE(3, 5, 4));
  std::vector<double> cv = V(c);
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 5; j++)
      for (int k = 0; k < 4; k++) EXPECT_EQ(cv[(size_t)(i * 20 + j * 4 + k)], (i * 4 + k) + (100 + j * 4 + k));
  loom_tensor *c2 = loom_mul(b, a);
  ASSERT_T(c2);
  expect_shape(c2, LOOM_SHAPE(3, 5, 4));

  loom_tensor *s = T({2}, LOOM_SHAPE());
  loom_tensor *m = seq(LOOM_SHAPE(2, 3));
  loom_tensor *ms = loom_sub(m, s);
  ASSERT_T(ms);
  expect_shape(ms, LOOM_SHAPE(2, 3));
  EXPECT_EQ(V(ms), iota(6, -2));
  loom_tensor *sm = loom_sub(s, m);
  ASSERT_T(sm);
  EXPECT_EQ(V(sm), (std::vector<double>{2, 1, 0, -1, -2, -3}));
  loom_tensor *ss = loom_add(s, s);
  ASSERT_T(ss);
  EXPECT_EQ(loom_ndim(ss), 0);
  loom_tensor *col = T({10, 20}, LOOM_SHAPE(2, 1));
  loom_tensor *row = T({1, 2, 3}, LOOM_SHAPE(3));
  EXPECT_EQ(V(loom_add(col, row)), (std::vector<double>{11, 12, 13, 21, 22, 23}));
  loom_tensor *i32 = T({1, 2, 3}, LOOM_SHAPE(3), LOOM_I32);
  loom_tensor *pr = loom_add(i32, T({0.5}, LOOM_SHAPE(1)));
  ASSERT_T(pr);
  EXPECT_EQ(loom_dtype_of(pr), LOOM_F32);
  EXPECT_EQ(V(pr), (std::vector<double>{1.5, 2.5, 3.5}));
}

TEST(Broadcast, IncompatibleShapesNameBoth) {
  ScopeGuard g;
  loom_tensor *a = seq(LOOM_SHAPE(3, 4));
  loom_tensor *b = seq(LOOM_SHAPE(2, 4));
  loom_clear_error();
  EXPECT_EQ(loom_mul(a, b), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("mul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 4]"), std::string::npos) << msg;
}

TEST(NonContiguous, OpsMatchContiguousCopies) {
  ScopeGuard g;
  loom_tensor *x = T(iota(12, -5.5), LOOM_SHAPE(3, 4));
  loom_tensor *views[] = {loom_transpose(x, 0, 1), loom_slice(seq(LOOM_SHAPE(4, 6)), 1, 0, 6, 2),
                          loom_expand(T({1, -2, 3, 0.5}, LOOM_SHAPE(4, 1)), LOOM_SHAPE(4, 3))};
  for (loom_tensor *v : views) {
    ASSERT_T(v);
    loom_tensor *c = loom_contiguous(v);
    ASSERT_T(c);
    ASSERT_TRUE(loom_is_contiguous(c));
    EXPECT_EQ(V(loom_exp(v)), V(loom_exp(c)));
    EXPECT_EQ(V(loom_mul(v, v)), V(loom_mul(c, c)));
    EXPECT_EQ(V(loom_add(v, c)), V(loom_mul_scalar(c, 2)));
    const int d0[] = {0}, d1[] = {1};
    EXPECT_EQ(V(loom_sum(v, d0, 1, false)), V(loom_sum(c, d0, 1, false)));
    EXPECT_EQ(V(loom_sum(v, d1, 1, true)), V(loom_sum(c, d1, 1, true)));
    loom_tensor *w = seq(LOOM_SHAPE(3, 2));
    EXPECT_LT(rel_err(loom_matmul(v, w), loom_matmul(c, w)), 1e-6);
    EXPECT_LT(rel_err(loom_matmul(loom_transpose(w, 0, 1), loom_transpose(v, 0, 1)),
                      loom_matmul(loom_transpose(w, 0, 1), loom_transpose(c, 0, 1))),
              1e-6);
    loom_tensor *iv = nullptr, *ic = nullptr;
    EXPECT_EQ(V(loom_max(v, 1, false, &iv)), V(loom_max(c, 1, false, &ic)));
    EXPECT_EQ(V(iv), V(ic));
    loom_tensor *idx = T({2, 0}, LOOM_SHAPE(2), LOOM_I64);
    EXPECT_EQ(V(loom_index_select(v, 1, idx)), V(loom_index_select(c, 1, idx)));
    loom_tensor *zero = loom_scalar_like(v, 0);
    EXPECT_EQ(V(loom_where(loom_gt(v, zero), v, loom_neg(v))), V(loom_abs(c)));
    EXPECT_EQ(V(loom_where(loom_gt(c, zero), c, loom_neg(c))), V(loom_abs(c)));
  }
  // copy into a non-contiguous destination
  loom_tensor *dst = loom_zeros(LOOM_SHAPE(4, 3), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_copy_(loom_transpose(dst, 0, 1), x), 0) << loom_last_error();
  EXPECT_EQ(V(dst), V(loom_transpose(x, 0, 1)));
}

TEST(ViewGrad, GradientsFlowThroughViews) {
  ScopeGuard g;
  loom_tensor *x = leaf(LOOM_SHAPE(3, 4), 1);
  loom_tensor *y = leaf(LOOM_SHAPE(2, 4), 2);
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_narrow(in[0], 1, 1, 2); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_select(in[0], 0, -1); }, {x}));
  EXPECT_TRUE(gradcheck([](const std::vector<loom_tensor *> &in) { return loom_slice(in[0], 1, 0, 4, 3); }, {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        const int d[] = {1, 0};
        return loom_mul(loom_permute(in[0], d, 2), loom_transpose(in[0], 0, 1));
      },
      {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        return loom_mul(loom_expand(loom_unsqueeze(in[0], 0), LOOM_SHAPE(2, 3, 4)), in[0]);
      },
      {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        return loom_view(loom_transpose(loom_reshape(in[0], LOOM_SHAPE(4, 3)), 0, 1), LOOM_SHAPE(3, 2, 2));
      },
      {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        loom_tensor *ts[] = {in[0], in[1], in[0]};
        return loom_cat(ts, 3, 0);
      },
      {x, y}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        loom_tensor *ts[] = {loom_narrow(in[0], 0, 0, 2), in[1]};
        return loom_stack(ts, 2, 1);
      },
      {x, y}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        loom_tensor *p[4] = {};
        if (loom_split(in[0], 2, 1, p, 4) != 2) return (loom_tensor *)nullptr;
        return loom_add(loom_mul(p[0], p[1]), p[1]);
      },
      {x}));
  EXPECT_TRUE(gradcheck(
      [](const std::vector<loom_tensor *> &in) {
        loom_tensor *p[4] = {};
        if (loom_chunk(in[0], 3, 0, p, 4) != 3) return (loom_tensor *)nullptr;
        return loom_sub(p[2], p[0]);
      },
      {x}));
}
