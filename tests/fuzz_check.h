// Fuzz test helpers, part 2: the tensor pool, random tensors, call tracing and the checks on results.
#pragma once
#include "fuzz_args.h"

namespace fuzz {

// The state of one seed's run: pooled results to feed back, the call being made, the
// failures reported so far, and the contract checks every result goes through.
class FuzzState : public FuzzArgs {
 protected:
  explicit FuzzState(uint32_t seed)
      : FuzzArgs(seed), seed_(seed), trace_(getenv("LOOM_FUZZ_TRACE") != nullptr) {}

  struct Entry { loom_tensor *t; int depth, id; };
  static constexpr unsigned kFinite = 1, kBool = 2, kI64 = 4, kView = 8, kSameShape = 16;  // res() checks

  uint32_t seed_;
  bool trace_;
  std::vector<Entry> pool_;  // tensors to feed back, with the scope depth that owns them
  int depth_ = 0, step_ = 0, next_id_ = 0, failures_ = 0;
  std::string op_, call_;
  std::set<std::string> reported_;

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
};

}  // namespace fuzz
