// The blocked CPU scaled-dot-product-attention kernels (src/cpu/attention_body.h)
// against a plain host reference in double, forward and all three gradients,
// on random shapes: L = 1, odd sizes, L != S, sizes on both sides of the query
// (64) and key (256) blocks, grouped heads, boolean and additive masks of
// several broadcast shapes and strides, fully masked rows, causal, 1 to 3
// threads (the split of a key/value head's queries over threads and its fixed
// order reduce), f32 and f64; plus the NaN rule and empty sizes.
#include "loom_test.h"

#include <cmath>
#include <functional>
#include <limits>
#include <random>

namespace {

const double kInf = std::numeric_limits<double>::infinity();

struct Geo {
  int64_t B, Hq, Hkv, L, S, E, Ev;
};

struct Ref {
  std::vector<double> out, dq, dk, dv;
};

using MaskFn = std::function<double(int64_t, int64_t, int64_t, int64_t)>;  // additive term (b, h, i, j)

// softmax(scale q k^T + mask) v, and the gradients of sum(out * w); a row with
// every key masked gives 0 and no gradient.
Ref ref_sdpa(const Geo &g, const std::vector<double> &q, const std::vector<double> &k, const std::vector<double> &v,
             const std::vector<double> &w, bool causal, double scale, const MaskFn &mask) {
  Ref r;
  r.out.assign((size_t)(g.B * g.Hq * g.L * g.Ev), 0);
  r.dq.assign(q.size(), 0);
  r.dk.assign(k.size(), 0);
  r.dv.assign(v.size(), 0);
  std::vector<double> s((size_t)g.S), p((size_t)g.S), dp((size_t)g.S);
  for (int64_t b = 0; b < g.B; b++)
    for (int64_t h = 0; h < g.Hq; h++) {
      int64_t bh = b * g.Hq + h, bk = b * g.Hkv + h / (g.Hq / g.Hkv);
      for (int64_t i = 0; i < g.L; i++) {
        const double *qi = &q[(size_t)((bh * g.L + i) * g.E)], *wi = &w[(size_t)((bh * g.L + i) * g.Ev)];
        double m = -kInf;
        for (int64_t j = 0; j < g.S; j++) {
          const double *kj = &k[(size_t)((bk * g.S + j) * g.E)];
          double d = 0;
          for (int64_t e = 0; e < g.E; e++) d += qi[e] * kj[e];
          s[(size_t)j] = causal && j > i ? -kInf : scale * d + (mask ? mask(b, h, i, j) : 0.0);
          m = std::max(m, s[(size_t)j]);
        }
        if (m == -kInf) continue;
        double l = 0;
        for (int64_t j = 0; j < g.S; j++) l += p[(size_t)j] = std::exp(s[(size_t)j] - m);
        double D = 0;
        for (int64_t j = 0; j < g.S; j++) {
          p[(size_t)j] /= l;
          const double *vj = &v[(size_t)((bk * g.S + j) * g.Ev)];
          double t = 0;
          for (int64_t e = 0; e < g.Ev; e++) {
            r.out[(size_t)((bh * g.L + i) * g.Ev + e)] += p[(size_t)j] * vj[e];
            t += wi[e] * vj[e];
          }
          dp[(size_t)j] = t;
          D += p[(size_t)j] * t;
        }
        for (int64_t j = 0; j < g.S; j++) {
          double ds = p[(size_t)j] * (dp[(size_t)j] - D) * scale;
          const double *kj = &k[(size_t)((bk * g.S + j) * g.E)];
          for (int64_t e = 0; e < g.E; e++) {
            r.dq[(size_t)((bh * g.L + i) * g.E + e)] += ds * kj[e];
            r.dk[(size_t)((bk * g.S + j) * g.E + e)] += ds * qi[e];
          }
          for (int64_t e = 0; e < g.Ev; e++) r.dv[(size_t)((bk * g.S + j) * g.Ev + e)] += p[(size_t)j] * wi[e];
        }
      }
    }
  return r;
}

std::vector<double> randv(std::mt19937 &rng, size_t n, bool f32) {
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<double> x(n);
  for (double &e : x) e = f32 ? (double)(float)u(rng) : u(rng);
  return x;
}

// max |a - b| <= tol * max(1, max |b|); NaN fails.
::testing::AssertionResult near(const char *what, const std::vector<double> &a, const std::vector<double> &b,
                                double tol) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << what << ": " << a.size() << " vs " << b.size();
  double big = 1;
  for (double x : b) big = std::max(big, std::fabs(x));
  for (size_t i = 0; i < a.size(); i++)
    if (!(std::fabs(a[i] - b[i]) <= tol * big))
      return ::testing::AssertionFailure() << what << "[" << i << "] = " << a[i] << ", want " << b[i] << " (tol "
                                           << tol * big << ")";
  return ::testing::AssertionSuccess();
}

struct Case {
  Geo g;
  bool causal;
  double scale;  // NaN: 1 / sqrt(E)
  int mask_kind;
  int threads;
};

// A mask of kind 0 (none) .. 5 as a tensor and as the reference's additive term:
//   1 bool [L, S] (a fully masked row at L / 2), 2 float [B, 1, L, S] with -inf entries and a fully masked row,
//   3 bool key padding [B, 1, 1, S] (the last keys of batch 0 masked, all of batch 1's when B > 1),
//   4 float [L, 1] (one term per query: element stride 0), 5 float [L, S] given as the transpose of [S, L].
loom_tensor *make_mask(const Case &c, std::mt19937 &rng, loom_dtype dt, MaskFn &fn) {
  const Geo &g = c.g;
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> m;
  loom_dtype fdt = dt == LOOM_F64 ? LOOM_F64 : LOOM_F32;
  auto cast = [&](double x) { return dt == LOOM_F64 ? x : (double)(float)x; };
  switch (c.mask_kind) {
    case 1: {
      for (int64_t i = 0; i < g.L; i++)
        for (int64_t j = 0; j < g.S; j++) m.push_back(i == g.L / 2 ? 0 : u(rng) < 0.7);
      fn = [m, g](int64_t, int64_t, int64_t i, int64_t j) { return m[(size_t)(i * g.S + j)] != 0 ? 0 : -kInf; };
      return T(m, LOOM_SHAPE(g.L, g.S), LOOM_BOOL);
    }
    case 2: {
      for (int64_t b = 0; b < g.B; b++)
        for (int64_t i = 0; i < g.L; i++)
          for (int64_t j = 0; j < g.S; j++)
            m.push_back(b == 0 && i == g.L - 1 ? -kInf : u(rng) < 0.2 ? -kInf : cast(-2 * u(rng)));
      fn = [m, g](int64_t b, int64_t, int64_t i, int64_t j) { return m[(size_t)((b * g.L + i) * g.S + j)]; };
      return T(m, LOOM_SHAPE(g.B, 1, g.L, g.S), fdt);
    }
    case 3: {
      for (int64_t b = 0; b < g.B; b++)
        for (int64_t j = 0; j < g.S; j++) m.push_back(b == 1 ? 0 : j < (g.S + 1) / 2 || j == 0);
      fn = [m, g](int64_t b, int64_t, int64_t, int64_t j) { return m[(size_t)(b * g.S + j)] != 0 ? 0 : -kInf; };
      return T(m, LOOM_SHAPE(g.B, 1, 1, g.S), LOOM_BOOL);
    }
    case 4: {
      for (int64_t i = 0; i < g.L; i++) m.push_back(cast(3 * u(rng) - 1));
      fn = [m](int64_t, int64_t, int64_t i, int64_t) { return m[(size_t)i]; };
      return T(m, LOOM_SHAPE(g.L, 1), fdt);
    }
    case 5: {
      for (int64_t j = 0; j < g.S; j++)
        for (int64_t i = 0; i < g.L; i++) m.push_back(u(rng) < 0.1 ? -kInf : cast(u(rng) - 0.5));
      fn = [m, g](int64_t, int64_t, int64_t i, int64_t j) { return m[(size_t)(j * g.L + i)]; };
      return loom_transpose(T(m, LOOM_SHAPE(g.S, g.L), fdt), 0, 1);
    }
    default:
      fn = nullptr;
      return nullptr;
  }
}

// Runs one case through loom_scaled_dot_product_attention (the fused path) and the reference.
void check_case(const Case &c, loom_dtype dt, std::mt19937 &rng) {
  const Geo &g = c.g;
  bool f32 = dt == LOOM_F32;
  SCOPED_TRACE(testing::Message() << (f32 ? "f32" : "f64") << " B " << g.B << " Hq " << g.Hq << " Hkv " << g.Hkv
                                  << " L " << g.L << " S " << g.S << " E " << g.E << " Ev " << g.Ev
                                  << (c.causal ? " causal" : "") << " mask " << c.mask_kind << " scale " << c.scale
                                  << " threads " << c.threads);
  ScopeGuard scope;
  std::vector<double> qv = randv(rng, (size_t)(g.B * g.Hq * g.L * g.E), f32),
                      kv = randv(rng, (size_t)(g.B * g.Hkv * g.S * g.E), f32),
                      vv = randv(rng, (size_t)(g.B * g.Hkv * g.S * g.Ev), f32),
                      wv = randv(rng, (size_t)(g.B * g.Hq * g.L * g.Ev), f32);
  MaskFn fn;
  loom_tensor *mask = make_mask(c, rng, dt, fn);
  double scale = std::isnan(c.scale) ? 1 / std::sqrt((double)std::max<int64_t>(g.E, 1)) : c.scale;
  Ref r = ref_sdpa(g, qv, kv, vv, wv, c.causal, f32 ? (double)(float)scale : scale, fn);
  loom_tensor *q = T(qv, LOOM_SHAPE(g.B, g.Hq, g.L, g.E), dt), *k = T(kv, LOOM_SHAPE(g.B, g.Hkv, g.S, g.E), dt),
              *v = T(vv, LOOM_SHAPE(g.B, g.Hkv, g.S, g.Ev), dt);
  for (loom_tensor *t : {q, k, v}) ASSERT_EQ(loom_set_requires_grad(t, true), 0);
  loom_set_num_threads(c.threads);
  loom_tensor *o = loom_scaled_dot_product_attention(q, k, v, mask, 0, c.causal, c.scale);
  int rc = o ? loom_backward(o, T(wv, LOOM_SHAPE(g.B, g.Hq, g.L, g.Ev), dt), false) : -1;
  loom_set_num_threads(0);
  ASSERT_NE(o, nullptr) << loom_last_error();
  ASSERT_EQ(rc, 0) << loom_last_error();
  double tol = f32 ? 1e-5 : 1e-11;
  EXPECT_TRUE(near("out", V(o), r.out, tol));
  EXPECT_TRUE(near("dq", V(loom_grad(q)), r.dq, 3 * tol));
  EXPECT_TRUE(near("dk", V(loom_grad(k)), r.dk, 3 * tol));
  EXPECT_TRUE(near("dv", V(loom_grad(v)), r.dv, 3 * tol));
}

TEST(CpuAttention, BlockedKernelsMatchDoubleReferenceOnRandomShapes) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> pick(0, 1 << 30);
  const int64_t Ls[] = {1, 2, 7, 33, 63, 64, 65, 129, 150}, Ss[] = {1, 3, 17, 64, 100, 255, 256, 257, 300};
  const int64_t Es[] = {1, 3, 8, 17, 32, 33}, Evs[] = {1, 5, 16, 31};
  for (int trial = 0; trial < 48; trial++) {
    Case c;
    int64_t Hkv = 1 + pick(rng) % 2;
    c.g = {1 + pick(rng) % 2, Hkv * (1 + pick(rng) % 2), Hkv, Ls[pick(rng) % 9], Ss[pick(rng) % 9],
           Es[pick(rng) % 6], Evs[pick(rng) % 4]};
    if (trial % 8 == 3) c.g.S = c.g.L;  // self-attention lengths: causal is a triangle
    c.causal = pick(rng) % 3 == 0;
    c.scale = trial % 4 == 0 ? 0.5 + 2.5 * (pick(rng) % 100) / 100.0 : std::numeric_limits<double>::quiet_NaN();
    c.mask_kind = trial % 6;
    c.threads = 1 + trial % 3;
    check_case(c, trial % 4 == 1 ? LOOM_F64 : LOOM_F32, rng);
    if (HasFatalFailure()) return;
  }
}

// One key/value head (fewer than two per thread): its queries are split over
// the threads and the parts' dk / dv added in a fixed order, so a thread count
// gives the same bits every run.
TEST(CpuAttention, SplitBackwardIsDeterministic) {
  std::mt19937 rng(5);
  Case c{{1, 4, 1, 200, 180, 24, 24}, true, std::numeric_limits<double>::quiet_NaN(), 2, 3};
  check_case(c, LOOM_F32, rng);
  ScopeGuard scope;
  std::vector<loom_tensor *> in;
  for (loom_shape s : {LOOM_SHAPE(1, 4, 200, 24), LOOM_SHAPE(1, 1, 180, 24), LOOM_SHAPE(1, 1, 180, 24)}) {
    in.push_back(T(randv(rng, (size_t)loom_shape_numel(s), true), s));
    ASSERT_EQ(loom_set_requires_grad(in.back(), true), 0);
  }
  std::vector<std::vector<double>> first;
  loom_set_num_threads(3);
  for (int run = 0; run < 3; run++) {
    for (loom_tensor *t : in) loom_zero_grad(t);
    loom_tensor *o = loom_scaled_dot_product_attention(in[0], in[1], in[2], nullptr, 0, true, 0.3);
    ASSERT_NE(o, nullptr) << loom_last_error();
    ASSERT_EQ(loom_backward(o, loom_ones_like(o), false), 0) << loom_last_error();
    for (size_t i = 0; i < in.size(); i++) {
      std::vector<double> gv = V(loom_grad(in[i]));
      if (run == 0) first.push_back(gv);
      else EXPECT_EQ(gv, first[i]) << "input " << i << " run " << run;
    }
  }
  loom_set_num_threads(0);
}

// A NaN score makes its row's output 0 (and gives it no gradient), as the CUDA
// kernel does; the other rows are unaffected. A NaN in a key row reaches every query.
TEST(CpuAttention, NanScoreRowIsZero) {
  std::mt19937 rng(3);
  ScopeGuard scope;
  const int64_t L = 70, S = 300, E = 8;
  std::vector<double> qv = randv(rng, (size_t)(L * E), true), kv = randv(rng, (size_t)(S * E), true),
                      vv = randv(rng, (size_t)(S * E), true);
  qv[5 * E + 2] = NAN;  // query 5
  loom_tensor *q = T(qv, LOOM_SHAPE(1, 1, L, E)), *k = T(kv, LOOM_SHAPE(1, 1, S, E)), *v = T(vv, LOOM_SHAPE(1, 1, S, E));
  ASSERT_EQ(loom_set_requires_grad(q, true), 0);
  loom_tensor *o = loom_scaled_dot_product_attention(q, k, v, nullptr, 0, false, NAN);
  ASSERT_NE(o, nullptr) << loom_last_error();
  std::vector<double> ov = V(o);
  Ref r = ref_sdpa({1, 1, 1, L, S, E, E}, qv, kv, vv, std::vector<double>((size_t)(L * E), 1.0), false,
                   (double)(float)(1 / std::sqrt(8.0)), nullptr);
  for (int64_t i = 0; i < L; i++)
    for (int64_t e = 0; e < E; e++) {
      double got = ov[(size_t)(i * E + e)];
      if (i == 5) EXPECT_EQ(got, 0.0) << "e " << e;
      else EXPECT_NEAR(got, r.out[(size_t)(i * E + e)], 1e-5) << "i " << i << " e " << e;
    }
  ASSERT_EQ(loom_backward(o, loom_ones_like(o), false), 0) << loom_last_error();
  std::vector<double> gq = V(loom_grad(q));
  for (int64_t e = 0; e < E; e++) EXPECT_EQ(gq[(size_t)(5 * E + e)], 0.0);
}

// Empty sizes: shapes kept, every output written (no keys: zeros, no gradient).
void check_empty(int64_t L, int64_t S, int64_t E, int64_t Ev) {
  SCOPED_TRACE(testing::Message() << "L " << L << " S " << S << " E " << E << " Ev " << Ev);
  ScopeGuard scope;
  std::mt19937 rng(1);
  loom_tensor *q = T(randv(rng, (size_t)(2 * L * E), true), LOOM_SHAPE(2, L, E));
  loom_tensor *k = T(randv(rng, (size_t)(2 * S * E), true), LOOM_SHAPE(2, S, E));
  loom_tensor *v = T(randv(rng, (size_t)(2 * S * Ev), true), LOOM_SHAPE(2, S, Ev));
  for (loom_tensor *t : {q, k, v}) ASSERT_EQ(loom_set_requires_grad(t, true), 0);
  loom_tensor *o = loom_scaled_dot_product_attention(q, k, v, nullptr, 0, false, NAN);
  ASSERT_NE(o, nullptr) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(o), LOOM_SHAPE(2, L, Ev)));
  std::vector<double> w((size_t)(2 * L * Ev), 1.0);
  Ref r = ref_sdpa({2, 1, 1, L, S, E, Ev}, V(q), V(k), V(v), w, false,
                   (double)(float)(1 / std::sqrt((double)std::max<int64_t>(E, 1))), nullptr);
  EXPECT_TRUE(near("out", V(o), r.out, 1e-5));
  ASSERT_EQ(loom_backward(o, loom_ones_like(o), false), 0) << loom_last_error();
  EXPECT_TRUE(near("dq", V(loom_grad(q)), r.dq, 1e-5));
  EXPECT_TRUE(near("dk", V(loom_grad(k)), r.dk, 1e-5));
  EXPECT_TRUE(near("dv", V(loom_grad(v)), r.dv, 1e-5));
}

TEST(CpuAttention, NoKeys) { check_empty(4, 0, 4, 3); }

// Disabled: the dispatcher (src/core/dispatch.c) skips a kernel whose first
// output is empty, so with L = 0 or E = 0 (dq empty) sdpa_backward never runs
// and dk / dv are left unwritten, and with Ev = 0 (out empty) the forward never
// writes the logsumexp the backward reads. Needs a fix in core.
TEST(CpuAttention, DISABLED_EmptyQueriesOrHeadDims) {
  check_empty(0, 5, 4, 3);
  check_empty(4, 5, 0, 3);
  check_empty(4, 5, 4, 0);
}

}  // namespace
