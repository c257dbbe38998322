// Robustness fuzz test of the public API (tensor.h, ops.h, autograd.h): seeded
// random calls, often with bad arguments, fed with earlier results. Each call
// must either succeed with a sane result and no recorded error, or fail with
// NULL / a non-zero status and a message; nothing may crash, and a seed ends
// with as many live tensors as it began with. Failures name the seed, step and
// call. Environment: LOOM_FUZZ_TRACE=1 prints every call, LOOM_FUZZ_SEED_BASE=N
// shifts the seeds, LOOM_FUZZ_CALLS=N sets the calls per seed (to bisect a leak).
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

namespace {

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

class Fuzzer {
 public:
  explicit Fuzzer(uint32_t seed) : seed_(seed), rng_(seed), trace_(getenv("LOOM_FUZZ_TRACE") != nullptr) {
    add_creation_ops();
    add_view_ops();
    add_math_ops();
    add_index_reduce_ops();
    add_autograd_ops();
  }

  void run(int calls) {
    int64_t live0 = loom_live_tensors();
    // Huge requests then fail in the pool (an OOM error) instead of paging in gigabytes.
    loom_set_memory_limit(loom_cpu(), (size_t)1 << 30);
    loom_scope_begin();
    depth_ = 1;
    for (step_ = 0; step_ < calls && failures_ < 25; step_++) ops_[irand(0, (int)ops_.size() - 1)]();
    while (depth_ > 0) close_scope();
    for (; no_grad_ > 0; no_grad_--) loom_no_grad_end();
    loom_set_memory_limit(loom_cpu(), 0);
    EXPECT_EQ(loom_live_tensors(), live0) << "seed " << seed_ << ": tensors leaked after " << calls
                                          << " calls (bisect with LOOM_FUZZ_CALLS)";
    EXPECT_TRUE(loom_grad_enabled()) << "seed " << seed_ << ": grad mode left off";
  }

 private:
  struct Entry { loom_tensor *t; int depth, id; };
  static constexpr unsigned kFinite = 1, kBool = 2, kI64 = 4, kView = 8, kSameShape = 16;  // res() checks

  uint32_t seed_;
  std::mt19937 rng_;
  bool trace_;
  std::vector<std::function<void()>> ops_;
  std::vector<Entry> pool_;  // tensors to feed back, with the scope depth that owns them
  int depth_ = 0, no_grad_ = 0, step_ = 0, next_id_ = 0, failures_ = 0;
  std::string op_, call_;
  std::set<std::string> reported_;

  // ---- random arguments (at most one draw per call's argument list: the order is fixed) ----
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

  // ---- tensors ----
  loom_tensor *pick(double fresh_p = 0.2) {  // NULL, a fresh tensor or a pooled result
    if (chance(0.03)) return nullptr;
    if (pool_.empty() || chance(fresh_p)) {
      loom_dtype dt = valid_dtype();
      return fresh(dt, small_shape());
    }
    return pool_[irand(0, (int)pool_.size() - 1)].t;
  }
  loom_tensor *partner(const loom_tensor *a, double same_dtype = 0.6) {  // shape related to a's
    if (!a || chance(0.15)) return pick();
    loom_dtype dt = dtype_like(a, same_dtype);
    return fresh(dt, related(loom_shape_of(a)));
  }
  // A new tensor of small valid shape s with random values, often non-contiguous (made
  // by transpose, a step-2 slice, expand or select), sometimes requiring grad.
  loom_tensor *fresh(loom_dtype dt, loom_shape s) {
    int nd = s.ndim, a = nd ? irand(0, nd - 1) : 0, c = nd ? irand(0, nd - 1) : 0, layout = irand(0, 6);
    loom_shape b = s;
    if (layout == 1 && nd >= 2) std::swap(b.d[a], b.d[c]);
    else if (layout == 2 && nd) b.d[a] = s.d[a] ? 2 * s.d[a] - irand(0, 1) : 0;
    else if (layout == 3 && nd)
      for (int i = 0; i < nd; i++) b.d[i] = chance(0.4) ? 1 : b.d[i];
    else if (layout == 4 && nd < LOOM_MAX_DIMS) b = insert_dim(s, a, irand(1, 3));
    else layout = 0;
    std::vector<double> vals((size_t)loom_shape_numel(b));
    bool special = chance(0.08);
    for (double &v : vals) {
      if (dt == LOOM_BOOL) v = irand(0, 1);
      else if (dt == LOOM_U8) v = irand(0, 6);
      else if (!loom_dtype_is_float(dt)) v = irand(-3, 6);
      else v = special && chance(0.2) ? one_of(kOddDouble) : normal();
    }
    say("T", b, dt);
    loom_tensor *base = res(T(vals, b, dt), 0, nullptr, false), *t = base;
    if (!base) return nullptr;
    if (layout == 1) {
      say("transpose", base, a, c);
      t = res(loom_transpose(base, a, c), kView, base, false);
    } else if (layout == 2) {
      say("slice", base, a, (int64_t)0, INT64_MAX, (int64_t)2);
      t = res(loom_slice(base, a, 0, INT64_MAX, 2), kView, base, false);
    } else if (layout == 3) {
      say("expand", base, s);
      t = res(loom_expand(base, s), kView, base, false);
    } else if (layout == 4) {
      int64_t i = irand(0, (int)b.d[a] - 1);
      say("select", base, a, i);
      t = res(loom_select(base, a, i), kView, base, false);
    }
    if (!t) return nullptr;
    if (!loom_shape_equal(loom_shape_of(t), s)) fail("layout", "made " + fmt(t) + ", want " + fmt(s));
    if (loom_dtype_is_float(dt) && chance(0.3)) {  // grow graphs for backward
      say("set_requires_grad", t, true);
      status(loom_set_requires_grad(t, true));
    }
    add(t);
    return t;
  }
  // An index tensor of shape s for a dim of the given size: mostly i64 and in range.
  loom_tensor *index(loom_shape s, int64_t size) {
    static const double bad[] = {-1, -100, 1e15};
    loom_dtype dt = chance(0.8) ? LOOM_I64 : chance(0.5) ? LOOM_I32 : valid_dtype();
    std::vector<double> vals((size_t)loom_shape_numel(s));
    bool wild = chance(0.1);
    for (double &v : vals)
      v = size > 0 && !(wild && chance(0.3)) ? irand(0, (int)std::min<int64_t>(size, 1000) - 1)
                                             : chance(0.5) ? (double)size : one_of(bad);
    say("T", s, dt);
    return res(T(vals, s, dt));
  }
  // Pools t for later calls, unless it is big (views can be) or has a huge (empty) dim.
  void add(loom_tensor *t) {
    if (loom_numel(t) > 4096) return;
    for (int i = 0; i < loom_ndim(t); i++)
      if (loom_size(t, i) > 64) return;
    pool_.push_back({t, depth_, next_id_++});
    if (pool_.size() > 96) pool_.erase(pool_.begin() + irand(0, 47));
  }
  void close_scope() {
    for (size_t i = pool_.size(); i-- > 0;)
      if (pool_[i].depth == depth_) pool_.erase(pool_.begin() + (long)i);
    loom_scope_end();
    depth_--;
  }

  // ---- describing calls ----
  std::string fmt(const loom_tensor *t) {
    if (!t) return "NULL";
    std::ostringstream o;
    int id = -1;
    for (const Entry &e : pool_)
      if (e.t == t) id = e.id;
    o << "#" << id << ":" << loom_dtype_name(loom_dtype_of(t)) << loom_shape_str(loom_shape_of(t));
    if (!loom_is_contiguous(t) || loom_storage_offset(t)) {
      o << "{strides";
      for (int i = 0; i < loom_ndim(t); i++) o << " " << loom_stride(t, i);
      o << " offset " << loom_storage_offset(t) << "}";
    }
    const char *fn = loom_grad_fn_name(t);
    if (loom_requires_grad(t)) o << (fn ? " fn=" : " leaf") << (fn ? fn : "");
    return o.str();
  }
  std::string fmt(loom_tensor *t) { return fmt((const loom_tensor *)t); }
  std::string fmt(int v) { return std::to_string(v); }
  std::string fmt(int64_t v) { return std::to_string(v) + "L"; }
  std::string fmt(bool v) { return v ? "true" : "false"; }
  std::string fmt(const char *s) { return s ? s : "NULL"; }
  std::string fmt(loom_dtype dt) { return std::string(loom_dtype_name(dt)) + "(" + std::to_string(dt) + ")"; }
  std::string fmt(loom_device d) { return "device{" + std::to_string(d.type) + ", " + std::to_string(d.index) + "}"; }
  std::string fmt(double v) {
    std::ostringstream o;
    o.precision(17);
    o << v;
    return o.str();
  }
  std::string fmt(loom_shape s) {
    std::string r = "shape{ndim " + std::to_string(s.ndim) + ": ";
    for (int i = 0; i < s.ndim && i < LOOM_MAX_DIMS; i++) r += (i ? ", " : "") + std::to_string(s.d[i]);
    return r + "}";
  }
  std::string fmt(const Dims &d) {
    std::string r = d.null ? "dims NULL" : "dims {";
    for (size_t i = 0; !d.null && i < d.v.size(); i++) r += (i ? ", " : "") + std::to_string(d.v[i]);
    return r + (d.null ? "" : "}") + ", ndims " + std::to_string(d.n);
  }
  std::string fmt(const std::vector<loom_tensor *> &ts) {
    std::string r = "{";
    for (size_t i = 0; i < ts.size(); i++) r += (i ? ", " : "") + fmt(ts[i]);
    return r + "}";
  }
  // Records the call about to be made, then clears the error state.
  template <class... A> void say(const char *op, const A &...args) {
    std::string r = std::string(op) + "(";
    int i = 0;
    ((r += (i++ ? ", " : "") + fmt(args)), ...);
    op_ = op;
    call_ = r + ")";
    if (trace_) fprintf(stderr, "[seed %u step %d] %s\n", seed_, step_, call_.c_str());
    loom_clear_error();
  }
  void fail(const std::string &kind, const std::string &what) {
    if (!reported_.insert(op_ + "/" + kind).second) return;  // one report per op and kind
    failures_++;
    ADD_FAILURE() << "seed " << seed_ << " step " << step_ << ": loom_" << call_ << ": " << what;
  }

  // ---- checking results ----
  bool values(const loom_tensor *t, std::vector<double> *v, bool report = true) {
    v->assign((size_t)loom_numel(t), 0);
    loom_no_grad_begin();
    loom_scope_begin();
    loom_tensor *h = loom_to(t, loom_cpu(), LOOM_F64);
    int rc = h ? loom_to_host(h, v->data(), v->size() * sizeof(double)) : -1;
    std::string err = loom_last_error();
    loom_scope_end();
    loom_no_grad_end();
    if (rc && report) fail("read", "its result cannot be read back: " + err);
    return rc == 0;
  }
  bool tame(const loom_tensor *t) {  // finite and within every float dtype's range (f16: 65504)
    std::vector<double> v;
    if (!t || loom_numel(t) > 100000 || !values(t, &v, false)) return false;
    return std::all_of(v.begin(), v.end(), [](double x) { return std::fabs(x) < 60000; });
  }
  unsigned fin(const loom_tensor *a, const loom_tensor *b = nullptr) {  // kFinite when the inputs are tame
    return tame(a) && (!b || tame(b)) ? kFinite : 0;
  }
  static void extent(const loom_tensor *t, uint64_t *lo, uint64_t *hi) {  // bytes a non-empty tensor spans
    uint64_t last = 0, es = loom_dtype_size(loom_dtype_of(t));
    for (int i = 0; i < loom_ndim(t); i++) last += (uint64_t)(loom_size(t, i) - 1) * (uint64_t)loom_stride(t, i);
    *lo = (uint64_t)(uintptr_t)loom_data_ptr(t);
    *hi = *lo + (last + 1) * es;
  }
  // Checks a tensor result against the contract and `flags`; returns it (pooled when
  // `pool`), or NULL when it failed or is unusable.
  loom_tensor *res(loom_tensor *r, unsigned flags = 0, const loom_tensor *ref = nullptr, bool pool = true) {
    loom_status st = loom_last_status();
    std::string msg = loom_last_error();
    if (!r) {
      if (st == LOOM_OK || msg.empty())
        fail("null-without-error", std::string("returned NULL but recorded no error (status ") +
                                       loom_status_name(st) + ", message \"" + msg + "\")");
      return nullptr;
    }
    if (st != LOOM_OK) fail("result-with-error", "returned a tensor but recorded the error \"" + msg + "\"");
    for (const Entry &e : pool_)
      if (e.t == r) {
        fail("old-handle", "returned a handle it was given instead of a new one");
        return nullptr;
      }
    loom_shape s = loom_shape_of(r);
    bool sane = s.ndim >= 0 && s.ndim <= LOOM_MAX_DIMS && (unsigned)loom_dtype_of(r) < LOOM_DTYPE_COUNT &&
                loom_device_equal(loom_device_of(r), loom_cpu()) && loom_storage_offset(r) >= 0;
    int64_t n = 1;  // the element count, without overflow
    for (int i = 0; sane && i < s.ndim; i++) {
      sane = s.d[i] >= 0 && loom_stride(r, i) >= 0;
      n = n < 0 || (s.d[i] && n > INT64_MAX / s.d[i]) ? -1 : n * s.d[i];
    }
    if (!sane || n < 0 || n != loom_numel(r)) {
      fail("insane", "returned an invalid tensor " + fmt(r));
      return nullptr;
    }
    if ((flags & kBool) && loom_dtype_of(r) != LOOM_BOOL) fail("dtype", "result " + fmt(r) + " should be bool");
    if ((flags & kI64) && loom_dtype_of(r) != LOOM_I64) fail("dtype", "result " + fmt(r) + " should be i64");
    if ((flags & kSameShape) && ref && !loom_shape_equal(s, loom_shape_of(ref)))
      fail("shape", "result " + fmt(r) + " should have the shape of " + fmt(ref));
    if ((flags & kView) && ref) {
      uint64_t lo, hi, rlo, rhi;
      if (!loom_shares_storage(r, ref)) fail("view", "result " + fmt(r) + " does not share storage with its input");
      else if (n > 0 && loom_numel(ref) == 0) fail("view-extent", "non-empty view " + fmt(r) + " of an empty tensor");
      else if (n > 0) {
        extent(r, &lo, &hi);
        extent(ref, &rlo, &rhi);
        if (lo < rlo || hi > rhi) fail("view-extent", "view " + fmt(r) + " reaches outside its input's elements");
      }
    }
    std::vector<double> v;  // reading back walks every element through the strides
    if (n <= 100000 && values(r, &v) && (flags & kFinite) &&
        !std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); }))
      fail("non-finite", "tame inputs gave a non-finite value in " + fmt(r));
    if (pool) add(r);
    return r;
  }
  void status(int rc) {  // a status return: non-zero exactly when an error was recorded
    loom_status st = loom_last_status();
    std::string msg = loom_last_error();
    if (rc != 0 && (st == LOOM_OK || msg.empty()))
      fail("status-without-error", "returned " + std::to_string(rc) + " but recorded no error");
    else if (rc != 0 && rc != (int)st)
      fail("status-mismatch", "returned " + std::to_string(rc) + " but recorded status " + std::to_string(st));
    if (rc == 0 && st != LOOM_OK) fail("ok-with-error", "returned 0 but recorded the error \"" + msg + "\"");
  }
  void outcome(bool failed) {  // an error must be recorded exactly when the call failed
    bool err = loom_last_status() != LOOM_OK;
    if (failed && (!err || !*loom_last_error())) fail("fail-without-error", "failed but recorded no error");
    if (!failed && err) fail("ok-with-error", std::string("succeeded but recorded \"") + loom_last_error() + "\"");
  }
  static void hook(loom_tensor *leaf, void *user) {
    if (!leaf || !loom_grad(leaf)) ((Fuzzer *)user)->fail("grad-hook", "hook fired for a leaf without a gradient");
  }

  void add_creation_ops();
  void add_view_ops();
  void add_math_ops();
  void add_index_reduce_ops();
  void add_autograd_ops();
};

void Fuzzer::add_creation_ops() {
  ops_.push_back([this] {
    static const char *names[] = {"empty", "zeros", "ones", "full"};
    loom_shape s = shape();
    loom_dtype dt = dtype();
    loom_device dev = device();
    double v = dbl();
    int k = irand(0, 3);
    say(names[k], s, v, dt, dev);
    loom_tensor *r = k == 0 ? loom_empty(s, dt, dev) : k == 1 ? loom_zeros(s, dt, dev)
                   : k == 2 ? loom_ones(s, dt, dev) : loom_full(s, v, dt, dev);
    if (res(r, k == 1 || k == 2 ? kFinite : 0) && !loom_shape_equal(loom_shape_of(r), s))
      fail("shape", "made " + fmt(r));
  });
  ops_.push_back([this] {
    static const char *names[] = {"zeros_like", "ones_like", "full_like", "scalar_like"};
    loom_tensor *t = pick();
    double v = dbl();
    int k = irand(0, 3);
    say(names[k], t, v);
    loom_tensor *r = k == 0 ? loom_zeros_like(t) : k == 1 ? loom_ones_like(t) : k == 2 ? loom_full_like(t, v)
                                                                                        : loom_scalar_like(t, v);
    res(r, (k < 2 ? kFinite : 0) | (k < 3 ? kSameShape : 0), t);
  });
  ops_.push_back([this] {
    static const double steps[] = {1, 0.5, 2, -1, 0, 3, -0.25};
    bool odd = chance(0.3);
    double a = odd ? dbl() : irand(-3, 3), b = odd ? dbl() : irand(-3, 6), st = odd ? dbl() : one_of(steps);
    loom_dtype dt = dtype();
    loom_device dev = device();
    say("arange", a, b, st, dt, dev);
    res(loom_arange(a, b, st, dt, dev));
  });
  ops_.push_back([this] {
    double a = dbl(), b = dbl();
    int64_t n = size_arg();
    loom_dtype dt = dtype();
    loom_device dev = device();
    say("linspace", a, b, n, dt, dev);
    loom_tensor *r = res(loom_linspace(a, b, n, dt, dev));
    if (r && loom_numel(r) != n) fail("shape", "made " + fmt(r));
  });
  ops_.push_back([this] {
    int64_t n = chance(0.8) ? irand(-1, 5) : size_arg(), m = chance(0.8) ? irand(-1, 5) : size_arg();
    loom_dtype dt = dtype();
    loom_device dev = device();
    say("eye", n, m, dt, dev);
    res(loom_eye(n, m, dt, dev), kFinite);
  });
  ops_.push_back([this] {
    loom_shape s = shape();
    loom_dtype dt = chance(0.7) ? one_of(kFloats) : dtype();
    loom_device dev = device();
    bool normal = chance(0.5);
    say(normal ? "randn" : "rand", s, dt, dev);
    res(normal ? loom_randn(s, dt, dev) : loom_rand(s, dt, dev), kFinite);
  });
  ops_.push_back([this] {
    static const loom_dtype dts[] = {LOOM_I32, LOOM_I64, LOOM_U8};
    bool odd = chance(0.3);
    int64_t lo = odd ? i64() : irand(0, 3), hi = odd ? i64() : irand(-3, 8);
    loom_shape s = shape();
    loom_dtype dt = chance(0.8) ? one_of(dts) : dtype();
    loom_device dev = device();
    say("randint", lo, hi, s, dt, dev);
    loom_tensor *r = res(loom_randint(lo, hi, s, dt, dev));
    std::vector<double> v;
    if (r && !odd && loom_numel(r) <= 4096 && values(r, &v) &&
        !std::all_of(v.begin(), v.end(), [&](double x) { return x >= (double)lo && x < (double)hi; }))
      fail("range", "made values outside [low, high)");
  });
  ops_.push_back([this] {
    loom_shape s = shape();
    loom_dtype dt = dtype();
    loom_device dev = device();
    std::vector<double> buf(4096);  // enough for any small shape; odd shapes must fail before reading
    for (double &x : buf) x = irand(0, 3);
    const void *data = chance(0.2) ? nullptr : buf.data();
    say("from_host", data ? "data" : nullptr, s, dt, dev);
    res(loom_from_host(data, s, dt, dev));
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    loom_dtype dt = dtype();
    loom_device dev = device();
    int k = irand(0, 2);
    say(k == 0 ? "to" : k == 1 ? "to_device" : "to_dtype", t, dev, dt);
    res(k == 0 ? loom_to(t, dev, dt) : k == 1 ? loom_to_device(t, dev) : loom_to_dtype(t, dt), kSameShape, t);
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    bool clone = chance(0.5);
    unsigned f = fin(t) | kSameShape;
    say(clone ? "clone" : "contiguous", t);
    loom_tensor *r = res(clone ? loom_clone(t) : loom_contiguous(t), f, t);
    if (r && !loom_is_contiguous(r)) fail("layout", "result " + fmt(r) + " is not contiguous");
  });
  ops_.push_back([this] {
    loom_tensor *dst = pick(), *src = chance(0.7) ? partner(dst) : pick();
    say("copy_", dst, src);
    status(loom_copy_(dst, src));
  });
  ops_.push_back([this] {
    loom_tensor *dst = pick();
    double v = dbl();
    say("fill_", dst, v);
    status(loom_fill_(dst, v));
  });
  ops_.push_back([this] {
    static const int64_t deltas[] = {0, 0, -1, 8, -100000};
    loom_tensor *t = pick();
    int64_t n = (t ? loom_numel(t) * (int64_t)loom_dtype_size(loom_dtype_of(t)) : 8) + one_of(deltas);
    n = std::max<int64_t>(n, 0);
    std::vector<unsigned char> buf((size_t)n + 1);
    void *dst = chance(0.1) ? nullptr : buf.data();
    say("to_host", t, dst ? "buffer" : nullptr, n);
    status(loom_to_host(t, dst, (size_t)n));
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    if (chance(0.4)) {
      say("item", t);
      double v = loom_item(t);
      bool one = t && loom_numel(t) == 1;
      outcome(!one);
      if (!one && !std::isnan(v)) fail("value", "returned " + fmt(v) + " for a tensor that is not one element");
      return;
    }
    int64_t idx[LOOM_MAX_DIMS + 1];
    bool in = t != nullptr;
    for (int i = 0; i < LOOM_MAX_DIMS + 1; i++) {
      idx[i] = pos(size_of(t, i));
      if (i < loom_ndim(t)) in = in && idx[i] >= 0 && idx[i] < loom_shape_of(t).d[i];
    }
    int64_t *ip = chance(0.05) ? nullptr : idx;
    in = in && (ip || loom_ndim(t) == 0);
    say("item_at", t, ip ? "index" : nullptr, idx[0], idx[1], idx[2], idx[3]);
    double v = loom_item_at(t, ip);
    outcome(!in);
    if (!in && !std::isnan(v)) fail("value", "returned " + fmt(v) + " for a bad index");
  });
  ops_.push_back([this] {
    loom_tensor *t = pick(0);
    int d = dim(t), nd = t ? loom_ndim(t) : 0;
    bool stride = chance(0.5), ok = t && d >= -nd && d < nd;
    say(stride ? "stride" : "size", t, d);
    int64_t v = stride ? loom_stride(t, d) : loom_size(t, d);
    if (t) outcome(!ok);
    if (ok && !stride && v != loom_shape_of(t).d[d < 0 ? d + nd : d]) fail("value", "size " + std::to_string(v));
    if (!ok && v != -1) fail("value", "returned " + std::to_string(v) + " for a bad dim");
  });
  ops_.push_back([this] {
    static const char *texts[] = {"cpu", "cuda", "cuda:1", "cuda:-1", "cuda:99999999999999999999", "", "gpu",
                                  "cpu:0", "cuda:", "cuda:1x", "CUDA", nullptr};
    const char *text = one_of(texts);
    loom_device d;
    loom_device *out = chance(0.05) ? nullptr : &d;
    say("device_parse", text);
    outcome(!loom_device_parse(text, out));
  });
  ops_.push_back([this] {  // pure helpers must cope with odd enums
    loom_dtype a = dtype(), b = dtype();
    loom_shape s = shape();
    int op = irand(-2, loom_op_count() + 1);
    loom_device_type dev = (loom_device_type)irand(0, 3);
    say("dtype_helpers", a, b, s, op);
    loom_dtype p = loom_promote_types(a, b);
    bool valid = (unsigned)a < LOOM_DTYPE_COUNT && (unsigned)b < LOOM_DTYPE_COUNT;
    bool sane = loom_dtype_name(a) && (loom_dtype_size(a) > 0) == ((unsigned)a < LOOM_DTYPE_COUNT) &&
                loom_shape_str(s) && (loom_op_name(op) != nullptr) == (op >= 0 && op < loom_op_count()) &&
                loom_op_find(nullptr) == -1 && loom_op_find("no_such_op") == -1 &&
                (!valid || (unsigned)p < LOOM_DTYPE_COUNT);
    loom_supports_op(dev, op, a);
    if (!sane) fail("helpers", "a dtype, shape or op-table helper returned nonsense");
  });
}

void Fuzzer::add_view_ops() {
  ops_.push_back([this] {
    loom_tensor *t = pick();
    loom_shape s;
    if (!t || chance(0.2)) {
      s = shape();
    } else {  // factor numel into up to 4 dims, sometimes with -1 or a bad size
      int64_t rem = loom_numel(t);
      s.ndim = irand(0, 4);
      for (int i = 0; i < s.ndim; i++) {
        int64_t f = rem;
        if (i < s.ndim - 1) {
          f = irand(1, 5);
          if (rem == 0) f = chance(0.5) ? 0 : f;
          else if (rem % f) f = 1;
        }
        s.d[i] = f;
        rem = f ? rem / f : rem;
      }
      if (s.ndim && chance(0.3)) s.d[irand(0, s.ndim - 1)] = -1;
      if (s.ndim && chance(0.05)) s.d[irand(0, s.ndim - 1)] = chance(0.5) ? -1 : one_of(kOddSize);
    }
    bool view = chance(0.4);
    unsigned f = fin(t);
    say(view ? "view" : "reshape", t, s);
    loom_tensor *r = res(view ? loom_view(t, s) : loom_reshape(t, s), f | (view ? kView : 0), t);
    if (r && loom_numel(r) != loom_numel(t)) fail("shape", "changed the element count: " + fmt(r));
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    int a = dim(t), b = dim(t), u = dim(t, 1), k = irand(0, 3);
    unsigned f = fin(t);
    if (k == 0) {
      say("flatten", t, a, b);
      res(loom_flatten(t, a, b), f);
    } else if (k == 1) {
      say("squeeze", t, a);
      res(loom_squeeze(t, a), f | kView, t);
    } else if (k == 2) {
      say("squeeze_all", t);
      res(loom_squeeze_all(t), f | kView, t);
    } else {
      say("unsqueeze", t, u);
      res(loom_unsqueeze(t, u), f | kView, t);
    }
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    int nd = t ? loom_ndim(t) : 0, n = nd;
    std::vector<int> p(LOOM_MAX_DIMS + 2);
    if (chance(0.7)) {  // a permutation, some dims negative
      for (int i = 0; i < nd; i++) p[i] = i - (chance(0.3) ? nd : 0);
      std::shuffle(p.begin(), p.begin() + nd, rng_);
    } else {
      n = chance(0.7) ? nd : irand(-1, LOOM_MAX_DIMS + 1);
      for (int &d : p) d = dim(t);
    }
    const int *dp = chance(0.05) ? nullptr : p.data();
    unsigned f = fin(t);
    say("permute", t, Dims{std::vector<int>(p.begin(), p.begin() + std::max(n, 0)), !dp, n});
    res(loom_permute(t, dp, n), f | kView, t);
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    int a = dim(t), b = dim(t);
    unsigned f = fin(t);
    say("transpose", t, a, b);
    res(loom_transpose(t, a, b), f | kView, t);
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    loom_shape s = t && chance(0.8) ? loom_shape_of(t) : shape();
    if (s.ndim >= 0 && s.ndim < LOOM_MAX_DIMS && chance(0.4)) s = insert_dim(s, 0, irand(0, 3));
    for (int i = 0; i < s.ndim && i < LOOM_MAX_DIMS; i++) {
      if (s.d[i] == 1 && chance(0.5)) s.d[i] = irand(0, 4);
      if (chance(0.15)) s.d[i] = -1;
      if (chance(0.02)) s.d[i] = one_of(kOddSize);
    }
    unsigned f = fin(t);
    say("expand", t, s);
    res(loom_expand(t, s), f | kView, t);
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    int d = dim(t), k = irand(0, 2);
    int64_t n = std::min<int64_t>(size_of(t, d), 1000), a = pos(n);
    int64_t b = a >= 0 && a <= n && chance(0.5) ? irand(0, (int)(n - a)) : pos(n);  // often in range
    int64_t step = chance(0.8) ? irand(-1, 3) : i64();
    unsigned f = fin(t);
    if (k == 0) {
      say("narrow", t, d, a, b);
      res(loom_narrow(t, d, a, b), f | kView, t);
    } else if (k == 1) {
      say("slice", t, d, a, b, step);
      res(loom_slice(t, d, a, b, step), f | kView, t);
    } else {
      say("select", t, d, a);
      res(loom_select(t, d, a), f | kView, t);
    }
  });
  ops_.push_back([this] {
    bool stack = chance(0.4);
    loom_tensor *first = pick();
    int d = dim(first, stack ? 1 : 0), n = chance(0.95) ? irand(1, 4) : irand(-1, 0);
    std::vector<loom_tensor *> ts;
    bool tame_all = true;
    for (int i = 0; i < std::max(n, 1); i++) {
      loom_tensor *t = first;
      if (i > 0 && first && chance(0.75)) {  // first's shape, another size along d for cat
        loom_shape s = loom_shape_of(first);
        if (!stack && s.ndim && d >= -s.ndim && d < s.ndim) s.d[d < 0 ? d + s.ndim : d] = irand(0, 3);
        loom_dtype dt = dtype_like(first, 0.8);
        t = fresh(dt, s);
      } else if (i > 0) {
        t = pick();
      }
      tame_all = tame_all && tame(t);
      ts.push_back(t);
    }
    loom_tensor *const *tp = chance(0.03) ? nullptr : ts.data();
    say(stack ? "stack" : "cat", ts, n, d);
    res(stack ? loom_stack(tp, n, d) : loom_cat(tp, n, d), tame_all ? kFinite : 0);
  });
  ops_.push_back([this] {
    loom_tensor *t = pick();
    int d = dim(t), max_out = irand(-1, 8), chunks = chance(0.8) ? irand(-1, 6) : one_of(kOddDim);
    bool chunk = chance(0.4);
    int64_t split = chance(0.8) ? irand(-1, 4) : i64();
    loom_tensor *out[8] = {0};
    loom_tensor **op = chance(0.05) ? nullptr : out;
    if (chunk) say("chunk", t, chunks, d, op ? "out" : nullptr, max_out);
    else say("split", t, split, d, op ? "out" : nullptr, max_out);
    int n = chunk ? loom_chunk(t, chunks, d, op, max_out) : loom_split(t, split, d, op, max_out);
    outcome(n < 0);
    if (n < -1 || n > max_out || (n >= 0 && !op)) {
      fail("count", "returned " + std::to_string(n) + " pieces");
      return;
    }
    int64_t total = 0;
    for (int i = 0; i < n; i++)
      if (!out[i]) fail("null-piece", "piece " + std::to_string(i) + " is NULL");
      else if (res(out[i], kView, t)) total += loom_numel(out[i]);
    if (n > 0 && total != loom_numel(t)) fail("count", "pieces hold " + std::to_string(total) + " elements");
  });
}

void Fuzzer::add_math_ops() {
  ops_.push_back([this] {
    const Unary &u = one_of(kUnary);
    loom_tensor *t = pick();
    unsigned f = u.bounded ? fin(t) : 0;
    say(u.name, t);
    res(u.fn(t), f | kSameShape | (u.fn == loom_logical_not ? kBool : 0), t);
  });
  ops_.push_back([this] {
    static const double bounds[] = {-1, 0, 0.5, 2, -INFINITY, INFINITY, NAN};
    loom_tensor *t = pick();
    double lo = chance(0.7) ? one_of(bounds) : dbl(), hi = chance(0.7) ? one_of(bounds) : dbl();
    auto low_ok = [](double v) { return v == -INFINITY || std::fabs(v) < 60000; };  // finite results follow
    unsigned f = low_ok(lo) && low_ok(-hi) ? fin(t) : 0;
    say("clamp", t, lo, hi);
    res(loom_clamp(t, lo, hi), f | kSameShape, t);
  });
  ops_.push_back([this] {
    const Binary &b = one_of(kBinary);
    loom_tensor *x = pick(), *y = partner(x);
    unsigned f = b.kind == 1 ? fin(x, y) : 0;
    say(b.name, x, y);
    res(b.fn(x, y), f | (b.kind == 2 ? kBool : 0));
  });
  ops_.push_back([this] {
    static const char *names[] = {"add_scalar", "mul_scalar", "pow_scalar"};
    loom_tensor *t = pick();
    double s = dbl();
    int k = irand(0, 2);
    say(names[k], t, s);
    res(k == 0 ? loom_add_scalar(t, s) : k == 1 ? loom_mul_scalar(t, s) : loom_pow_scalar(t, s), kSameShape, t);
  });
  ops_.push_back([this] {
    bool fill = chance(0.4);
    loom_tensor *a = pick(), *b = fill ? nullptr : partner(a), *c = nullptr;
    if (a && chance(0.7)) {  // a bool condition / mask that often broadcasts
      loom_shape s = related(loom_shape_of(a));
      c = fresh(LOOM_BOOL, s);
    } else {
      c = pick();
    }
    double v = dbl();
    if (fill) {
      unsigned f = std::fabs(v) < 1000 ? fin(a) : 0;
      say("masked_fill", a, c, v);
      res(loom_masked_fill(a, c, v), f | kSameShape, a);
    } else {
      unsigned f = fin(a, b);
      say("where", c, a, b);
      res(loom_where(c, a, b), f);
    }
  });
  ops_.push_back([this] {
    int k = irand(0, 2);
    loom_dtype dt = chance(0.9) ? one_of(kFloats) : dtype();
    if (k == 0) {  // matmul: b's contraction dim usually matches a's last
      loom_tensor *a = chance(0.7) ? fresh(dt, small_shape()) : pick();
      loom_shape s = small_shape();
      if (a && loom_ndim(a) > 0 && s.ndim > 0 && chance(0.8)) s.d[s.ndim >= 2 ? s.ndim - 2 : 0] = loom_size(a, -1);
      loom_dtype bt = dtype_like(a, 0.9);
      loom_tensor *b = chance(0.85) ? fresh(bt, s) : pick();
      say("matmul", a, b);
      res(loom_matmul(a, b));
      return;
    }
    int64_t B = irand(0, 3), n = irand(0, 4), m = irand(0, 4), p = irand(0, 4);
    loom_tensor *a = chance(0.9) ? fresh(dt, k == 1 ? LOOM_SHAPE(B, n, m) : LOOM_SHAPE(n, m)) : pick();
    loom_shape sb = k == 1 ? LOOM_SHAPE(B, m, p) : LOOM_SHAPE(m, p);
    if (chance(0.1)) sb = related(sb);
    loom_dtype bt = chance(0.9) ? dt : valid_dtype();
    loom_tensor *b = chance(0.9) ? fresh(bt, sb) : pick();
    if (k == 1) {
      say("bmm", a, b);
      res(loom_bmm(a, b));
      return;
    }
    loom_shape sc = related(LOOM_SHAPE(n, p));
    loom_dtype ct = chance(0.9) ? dt : valid_dtype();
    loom_tensor *c = chance(0.9) ? fresh(ct, sc) : pick();
    double beta = chance(0.5) ? 1 : dbl(), alpha = chance(0.5) ? 1 : dbl();
    say("addmm", c, a, b, beta, alpha);
    res(loom_addmm(c, a, b, beta, alpha));
  });
}

void Fuzzer::add_index_reduce_ops() {
  ops_.push_back([this] {
    loom_tensor *x = pick();
    int d = dim(x);
    loom_shape s = chance(0.8) ? LOOM_SHAPE(irand(0, 4)) : chance(0.5) ? LOOM_SHAPE() : LOOM_SHAPE(2, 2);
    loom_tensor *idx = chance(0.9) ? index(s, size_of(x, d)) : pick();
    say("index_select", x, d, idx);
    res(loom_index_select(x, d, idx));
  });
  ops_.push_back([this] {  // gather / scatter_add: index fits x outside dim d (usually)
    bool scatter = chance(0.5);
    loom_tensor *x = pick();
    int d = dim(x), nd = x ? loom_ndim(x) : 0;
    loom_shape s = x ? loom_shape_of(x) : small_shape();
    for (int i = 0; i < nd; i++) s.d[i] = chance(0.9) ? irand(0, (int)std::min<int64_t>(s.d[i], 5)) : irand(0, 5);
    if (nd && d >= -nd && d < nd) s.d[d < 0 ? d + nd : d] = irand(0, 4);
    if (chance(0.1)) s = related(s);
    loom_tensor *idx = chance(0.9) ? index(s, size_of(x, d)) : pick();
    if (!scatter) {
      unsigned f = fin(x);
      say("gather", x, d, idx);
      res(loom_gather(x, d, idx), f);
      return;
    }
    for (int i = 0; i < s.ndim; i++) s.d[i] += irand(0, 1);  // src may be larger than the index
    loom_dtype dt = dtype_like(x, 0.85);
    loom_tensor *src = chance(0.9) ? fresh(dt, s) : pick();
    say("scatter_add", x, d, idx, src);
    res(loom_scatter_add(x, d, idx, src), kSameShape, x);
  });
  ops_.push_back([this] {
    loom_shape s = small_shape(3);
    loom_tensor *idx = chance(0.9) ? index(s, irand(0, 6)) : pick();
    int64_t n = chance(0.7) ? irand(-1, 7) : size_arg();
    say("one_hot", idx, n);
    loom_tensor *r = res(loom_one_hot(idx, n), kI64);
    if (r && n >= 0 && (loom_ndim(r) != loom_ndim(idx) + 1 || loom_size(r, -1) != n)) fail("shape", "made " + fmt(r));
  });
  ops_.push_back([this] {
    static const char *names[] = {"sum", "mean", "var", "std", "logsumexp", "norm"};
    static const double ps[] = {1, 2, 3, 0.5, INFINITY, 0, -1, NAN, -INFINITY};
    loom_tensor *x = pick();
    Dims d = dims_arg(x);
    bool keep = chance(0.5);
    int k = irand(0, 5), corr = chance(0.9) ? irand(-1, 2) : one_of(kOddDim);
    double p = one_of(ps);
    const int *dp = d.null ? nullptr : d.v.data();
    if (k == 2 || k == 3) say(names[k], x, d, corr, keep);
    else if (k == 5) say(names[k], x, p, d, keep);
    else say(names[k], x, d, keep);
    res(k == 0 ? loom_sum(x, dp, d.n, keep) : k == 1 ? loom_mean(x, dp, d.n, keep)
        : k == 2 ? loom_var(x, dp, d.n, corr, keep) : k == 3 ? loom_std(x, dp, d.n, corr, keep)
        : k == 4 ? loom_logsumexp(x, dp, d.n, keep) : loom_norm(x, p, dp, d.n, keep));
  });
  ops_.push_back([this] {
    static const char *names[] = {"max", "min", "argmax", "argmin", "max_all", "min_all"};
    loom_tensor *x = pick();
    int d = dim(x), k = irand(0, 5);
    bool keep = chance(0.5), want_idx = chance(0.6);
    unsigned f = fin(x);
    if (k >= 4) {
      say(names[k], x);
      loom_tensor *r = res(k == 4 ? loom_max_all(x) : loom_min_all(x), f);
      if (r && loom_ndim(r) != 0) fail("shape", "made " + fmt(r));
      return;
    }
    if (k >= 2) {
      say(names[k], x, d, keep);
      res(k == 2 ? loom_argmax(x, d, keep) : loom_argmin(x, d, keep), kI64);
      return;
    }
    loom_tensor *idx = nullptr, **ip = want_idx ? &idx : nullptr;
    say(names[k], x, d, keep, want_idx ? "indices" : nullptr);
    loom_tensor *v = res(k == 0 ? loom_max(x, d, keep, ip) : loom_min(x, d, keep, ip), f);
    if (!want_idx) return;
    if (!v != !idx) fail("indices", v ? "returned values but no indices" : "failed but set *indices");
    if (v && idx && res(idx, kI64 | kSameShape, v) && loom_numel(idx) > 0 &&
        (loom_item(loom_min_all(idx)) < 0 || loom_item(loom_max_all(idx)) >= (double)size_of(x, d)))
      fail("indices", "indices out of range in " + fmt(idx));
  });
}

void Fuzzer::add_autograd_ops() {
  ops_.push_back([this] {
    loom_tensor *t = pick();
    bool on = chance(0.8);
    say("set_requires_grad", t, on);
    int rc = loom_set_requires_grad(t, on);
    status(rc);
    if (rc == 0 && loom_requires_grad(t) != on) fail("flag", "requires_grad did not change");
  });
  std::function<void()> backward = [this] {
    std::vector<loom_tensor *> cands;
    for (const Entry &e : pool_)
      if (loom_requires_grad(e.t)) cands.push_back(e.t);
    loom_tensor *root = !cands.empty() && chance(0.85) ? cands[irand(0, (int)cands.size() - 1)] : pick();
    if (root && chance(0.5)) {
      say("sum", root, Dims{{}, true, 0}, false);
      root = res(loom_sum(root, nullptr, 0, false));
    }
    loom_tensor *go = nullptr;
    if (chance(0.5)) {
      loom_dtype dt = dtype_like(root, 0.8);
      go = root && chance(0.8) ? fresh(dt, loom_shape_of(root)) : pick();
    }
    bool retain = chance(0.5);
    say("backward", root, go, retain);
    status(loom_backward(root, go, retain));
    for (const Entry &e : pool_) {
      loom_tensor *g = loom_grad(e.t);
      if (g && !loom_shape_equal(loom_shape_of(g), loom_shape_of(e.t)))
        fail("grad-shape", "left " + fmt(e.t) + " with a gradient of shape " + loom_shape_str(loom_shape_of(g)));
    }
  };
  ops_.push_back(backward);
  ops_.push_back(backward);  // twice as often as the others: graphs need exercise
  ops_.push_back([this] {
    loom_tensor *t = pick(0.05);
    int k = irand(0, 3);
    if (k == 0) {
      say("grad", t);
      loom_tensor *g = loom_grad(t);  // borrowed: pool a detached handle instead
      if (!g) return;
      if (!loom_shape_equal(loom_shape_of(g), loom_shape_of(t))) fail("grad-shape", "gradient " + fmt(g));
      say("detach", g);
      res(loom_detach(g), kView | kSameShape, g);
    } else if (k == 1) {
      say("zero_grad", t);
      loom_zero_grad(t);
      if (loom_grad(t)) fail("grad", "gradient still set");
    } else if (k == 2) {  // NULL, t itself, or a fresh tensor (usually of t's shape)
      loom_tensor *g = nullptr;
      if (chance(0.05)) {
        g = t;
      } else if (t && chance(0.85)) {
        loom_dtype dt = dtype_like(t, 0.8);
        loom_shape s = chance(0.8) ? loom_shape_of(t) : related(loom_shape_of(t));
        g = fresh(dt, s);
      }
      say("set_grad", t, g);
      int rc = loom_set_grad(t, g);
      status(rc);
      if (rc == 0 && loom_grad(t) != g) fail("grad", "gradient not set");
    } else {
      unsigned f = fin(t);
      say("detach", t);
      loom_tensor *r = res(loom_detach(t), f | kView | kSameShape, t);
      if (r && (loom_requires_grad(r) || !loom_is_leaf(r))) fail("graph", "detached tensor is still in the graph");
    }
  });
  ops_.push_back([this] {
    loom_tensor *t = pick(0);
    bool set_hook = chance(0.3), with_fn = chance(0.8);
    say("grad_fn_name", t);
    if (loom_grad_fn_name(t) && (loom_is_leaf(t) || !loom_requires_grad(t))) fail("graph", "grad_fn on a leaf");
    if (!set_hook) return;
    say("set_grad_hook", t, with_fn ? "hook" : nullptr);
    status(loom_set_grad_hook(t, with_fn ? hook : nullptr, this));
  });
  ops_.push_back([this] {  // no_grad nesting, with extra ends that must be harmless
    op_ = "no_grad";
    if (no_grad_ < 3 && chance(0.5)) {
      loom_no_grad_begin();
      no_grad_++;
    } else {
      loom_no_grad_end();
      no_grad_ = std::max(no_grad_ - 1, 0);
    }
    call_ = "no_grad_begin/end (depth now " + std::to_string(no_grad_) + ")";
    if (loom_grad_enabled() != (no_grad_ == 0)) fail("mode", "grad_enabled disagrees with the nesting");
  });
  ops_.push_back([this] {  // scopes: open, close, or keep a tensor of the innermost one
    int k = irand(0, 2);
    op_ = "scope";
    call_ = "scope op " + std::to_string(k) + " at depth " + std::to_string(depth_);
    if (k == 0 && depth_ < 4) {
      loom_scope_begin();
      depth_++;
    } else if (k == 1 && depth_ > 1) {
      close_scope();
    } else if (depth_ > 1 && !pool_.empty()) {
      Entry &e = pool_[irand(0, (int)pool_.size() - 1)];
      if (loom_keep(e.t) != e.t) fail("keep", "returned another tensor");
      if (e.depth == depth_) e.depth--;
    }
  });
}

class Fuzz : public testing::TestWithParam<uint32_t> {};

TEST_P(Fuzz, RandomCallsNeverCrashOrLeak) {
  const char *base = getenv("LOOM_FUZZ_SEED_BASE"), *calls = getenv("LOOM_FUZZ_CALLS");
  Fuzzer f(GetParam() + (base ? (uint32_t)strtoul(base, nullptr, 10) : 0));
  f.run(calls ? atoi(calls) : 5000);
}

INSTANTIATE_TEST_SUITE_P(Seeds, Fuzz, testing::Values(1u, 2u, 3u, 4u, 5u, 6u, 7u, 8u));

}  // namespace
