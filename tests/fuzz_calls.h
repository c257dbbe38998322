// Fuzz test calls, part 1: the call list and the creation, copy, read-back and view families.
#pragma once
#include "fuzz_check.h"

namespace fuzz {

// The op families as a list of calls; each makes one random call and checks its result.
class FuzzCalls : public FuzzState {
 protected:
  explicit FuzzCalls(uint32_t seed) : FuzzState(seed) {
    add_creation_ops();
    add_view_ops();
    add_math_ops();
    add_index_reduce_ops();
    add_autograd_ops();
  }

  std::vector<std::function<void()>> ops_;
  int no_grad_ = 0;

  static void hook(loom_tensor *leaf, void *user) {
    if (!leaf || !loom_grad(leaf)) ((FuzzCalls *)user)->fail("grad-hook", "hook fired for a leaf without a gradient");
  }

  void add_creation_ops();
  void add_view_ops();
  void add_math_ops();
  void add_index_reduce_ops();
  void add_autograd_ops();
};

inline void FuzzCalls::add_creation_ops() {
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

inline void FuzzCalls::add_view_ops() {
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

}  // namespace fuzz
