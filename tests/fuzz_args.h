// Fuzz test helpers, part 1: odd-value tables, op tables and the random argument generators.
#pragma once
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "loom_test.h"

namespace fuzz {

constexpr int64_t kBig = int64_t(1) << 40;  // no tensor this large can be allocated
const int64_t kOddI64[] = {INT64_MIN, INT64_MIN + 1, -kBig, -1000, -2, -1, 1000, int64_t(1) << 31,
                           kBig, INT64_MAX / 2, INT64_MAX - 1, INT64_MAX};
const int64_t kOddSize[] = {-1, -2, -kBig, kBig, int64_t(1) << 50, INT64_MAX, INT64_MIN};
const int kOddDim[] = {INT_MIN, INT_MIN + 1, -100, -9, 8, 9, 100, INT_MAX};
const double kOddDouble[] = {0.0, -0.0, 1, -1, 0.5, 2, 3, NAN, INFINITY, -INFINITY, 1e300, -1e300, 1e-310, 65504, 1e18};
const loom_dtype kFloats[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16};

typedef loom_tensor *(*UnaryFn)(const loom_tensor *);
typedef loom_tensor *(*BinaryFn)(const loom_tensor *, const loom_tensor *);
struct Unary { const char *name; UnaryFn fn; bool bounded; };  // bounded: tame input gives finite output
struct Binary { const char *name; BinaryFn fn; int kind; };    // 0 arithmetic, 1 maximum/minimum, 2 bool result
const Unary kUnary[] = {{"neg", loom_neg, true},       {"abs", loom_abs, true},         {"sign", loom_sign, true},
                        {"exp", loom_exp, false},      {"log", loom_log, false},        {"sqrt", loom_sqrt, false},
                        {"rsqrt", loom_rsqrt, false},  {"sin", loom_sin, true},         {"cos", loom_cos, true},
                        {"relu", loom_relu, true},     {"sigmoid", loom_sigmoid, true}, {"tanh", loom_tanh, true},
                        {"square", loom_square, false}, {"logical_not", loom_logical_not, true}};
const Binary kBinary[] = {{"add", loom_add, 0}, {"sub", loom_sub, 0}, {"mul", loom_mul, 0}, {"div", loom_div, 0},
                          {"pow", loom_pow, 0}, {"maximum", loom_maximum, 1}, {"minimum", loom_minimum, 1},
                          {"eq", loom_eq, 2},   {"ne", loom_ne, 2},   {"lt", loom_lt, 2},   {"le", loom_le, 2},
                          {"gt", loom_gt, 2},   {"ge", loom_ge, 2},   {"logical_and", loom_logical_and, 2},
                          {"logical_or", loom_logical_or, 2}, {"logical_xor", loom_logical_xor, 2}};

// A dims argument as passed to a reduction: the array (or NULL) and its count.
struct Dims { std::vector<int> v; bool null; int n; };

// Draws random arguments from one seeded generator (at most one draw per call's argument
// list: the order is fixed, so a seed always makes the same calls).
class FuzzArgs {
 protected:
  explicit FuzzArgs(uint32_t seed) : rng_(seed) {}

  std::mt19937 rng_;

  int irand(int lo, int hi) { return hi > lo ? std::uniform_int_distribution<int>(lo, hi)(rng_) : lo; }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  template <class T, size_t N> T one_of(const T (&a)[N]) { return a[irand(0, (int)N - 1)]; }
  double normal() { return std::normal_distribution<double>(0, 1.5)(rng_); }
  int64_t i64() { return chance(0.8) ? irand(-6, 8) : one_of(kOddI64); }
  int64_t size_arg() { return chance(0.88) ? irand(0, 5) : one_of(kOddSize); }
  double dbl() { return chance(0.75) ? normal() : one_of(kOddDouble); }
  int dim(const loom_tensor *t, int extra = 0) {
    int nd = (t ? loom_ndim(t) : 0) + extra;
    return chance(0.9) ? irand(-nd - 1, nd) : one_of(kOddDim);
  }
  int64_t pos(int64_t n) {  // a start / end / index for a dim of size n
    int m = (int)std::min<int64_t>(n, 1000);
    return chance(0.8) ? irand(-m - 1, m + 1) : i64();
  }
  // Odd enum values stay within the enum's range (0..15), as C++ requires.
  loom_dtype dtype() {
    static const int odd[] = {LOOM_DTYPE_COUNT, 9, 15};
    return (loom_dtype)(chance(0.96) ? irand(0, LOOM_DTYPE_COUNT - 1) : one_of(odd));
  }
  loom_dtype valid_dtype() { return (loom_dtype)irand(0, LOOM_DTYPE_COUNT - 1); }
  loom_dtype dtype_like(const loom_tensor *t, double p) { return t && chance(p) ? loom_dtype_of(t) : valid_dtype(); }
  loom_device device() {
    static const loom_device odd[] = {{LOOM_CUDA, 0}, {LOOM_CUDA, -1}, {LOOM_CPU, 1}, {LOOM_DEVICE_TYPE_COUNT, 0},
                                      {(loom_device_type)3, 0}};
    return chance(0.93) ? loom_cpu() : one_of(odd);
  }
  loom_shape small_shape(int max_nd = 4) {
    loom_shape s = {irand(0, max_nd), {0}};
    for (int i = 0; i < s.ndim; i++) s.d[i] = chance(0.1) ? 0 : irand(1, 5);
    return s;
  }
  loom_shape shape() {  // mostly small and valid; else a bad ndim, a bad or huge size, or 8 dims
    if (chance(0.85)) return small_shape();
    static const int odd_nd[] = {-1, -100, 9, 100};
    loom_shape s = small_shape();
    switch (irand(0, 3)) {
      case 0:
        if (s.ndim == 0) s = LOOM_SHAPE(1);
        s.d[irand(0, s.ndim - 1)] = one_of(kOddSize);
        return s;
      case 1: return {one_of(odd_nd), {1, 1, 1, 1, 1, 1, 1, 1}};
      case 2:
        s.ndim = LOOM_MAX_DIMS;
        for (int i = 0; i < s.ndim; i++) s.d[i] = irand(1, 2);
        return s;
      default: return chance(0.5) ? LOOM_SHAPE(kBig, kBig) : LOOM_SHAPE(INT64_MAX, 2);
    }
  }
  // A shape that often broadcasts with s: s, some dims 1, a suffix, one more dim, one size changed.
  loom_shape related(loom_shape s) {
    switch (irand(0, 5)) {
      case 0: return s;
      case 1:
        for (int i = 0; i < s.ndim; i++)
          if (chance(0.4)) s.d[i] = 1;
        return s;
      case 2: {
        int drop = irand(0, s.ndim);
        loom_shape r = {s.ndim - drop, {0}};
        for (int i = 0; i < r.ndim; i++) r.d[i] = s.d[i + drop];
        return r;
      }
      case 3: return s.ndim < LOOM_MAX_DIMS ? insert_dim(s, 0, irand(1, 3)) : s;
      case 4:
        if (s.ndim) s.d[irand(0, s.ndim - 1)] = irand(0, 5);
        return s;
      default: return small_shape();
    }
  }
  static loom_shape insert_dim(loom_shape s, int at, int64_t size) {
    for (int i = s.ndim; i > at; i--) s.d[i] = s.d[i - 1];
    s.d[at] = size;
    s.ndim++;
    return s;
  }
  Dims dims_arg(const loom_tensor *t) {
    Dims d = {{}, chance(0.15), 0};
    d.n = d.null ? irand(0, 2) : irand(0, 3);
    for (int i = 0; !d.null && i < d.n; i++) d.v.push_back(dim(t));
    if (!d.null && chance(0.03)) d.n = -1;
    return d;
  }
  static int64_t size_of(const loom_tensor *t, int d) {  // size of dim d, 1 for 0-d, 3 for a bad dim
    int nd = t ? loom_ndim(t) : 0;
    if (nd == 0) return 1;
    return d >= -nd && d < nd ? loom_shape_of(t).d[d < 0 ? d + nd : d] : 3;
  }
};

}  // namespace fuzz
