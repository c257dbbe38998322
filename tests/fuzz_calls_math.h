// Fuzz test calls, part 2: the math, indexing, reduction and autograd families.
#pragma once
#include "fuzz_calls.h"

namespace fuzz {

inline void FuzzCalls::add_math_ops() {
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
  ops_.push_back([this] {  // tensor bounds: either may be NULL, shapes often broadcast
    loom_tensor *t = pick(), *lo = chance(0.8) ? partner(t) : nullptr, *hi = chance(0.8) ? partner(t) : nullptr;
    say("clamp_tensor", t, lo, hi);
    res(loom_clamp_tensor(t, lo, hi), fin(t) && (!lo || fin(lo)) && (!hi || fin(hi)) ? kFinite : 0);
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

inline void FuzzCalls::add_index_reduce_ops() {
  ops_.push_back([this] {
    loom_tensor *x = pick();
    int d = dim(x);
    loom_shape s = chance(0.8) ? LOOM_SHAPE(irand(0, 4)) : chance(0.5) ? LOOM_SHAPE() : LOOM_SHAPE(2, 2);
    loom_tensor *idx = chance(0.9) ? index(s, size_of(x, d)) : pick();
    say("index_select", x, d, idx);
    res(loom_index_select(x, d, idx));
  });
  ops_.push_back([this] {  // gather / scatter_add / scatter: index fits x outside dim d (usually)
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
    bool put = chance(0.4);
    say(put ? "scatter" : "scatter_add", x, d, idx, src);
    res(put ? loom_scatter(x, d, idx, src) : loom_scatter_add(x, d, idx, src), kSameShape, x);
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

inline void FuzzCalls::add_autograd_ops() {
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

}  // namespace fuzz
