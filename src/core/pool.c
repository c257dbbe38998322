/* Pooling op definitions: max_pool1d/2d, avg_pool1d/2d and the adaptive
 * max / avg pools in 1-d and 2-d.
 * 1-d pooling runs the 2-d kernels with H = 1. Each has its own backward
 * kernel: max_pool2d_backward adds the output gradient at the saved argmax
 * positions, avg_pool2d_backward spreads it over the windows (both shared
 * by the adaptive forms). */
#include <string.h>

#include "core/autograd_impl.h"
#include "core/conv_impl.h"

typedef struct pool_params {
  int64_t k[2], s[2], p[2], d[2];
  bool ceil;
} pool_params;

/* PyTorch's pooling output size: floor (or ceil) of the window count, where
 * in ceil mode the last window must start inside the input or left padding. */
static int64_t pool_out(int64_t in, const pool_params *c, int j) {
  int64_t span = c->d[j] * (c->k[j] - 1) + 1, num = in + 2 * c->p[j] - span + (c->ceil ? c->s[j] - 1 : 0);
  if (num < 0) return 0;
  int64_t o = num / c->s[j] + 1;
  if (c->ceil && (o - 1) * c->s[j] >= in + c->p[j]) o--;
  return o;
}

static bool read_opts(const char *who, int dims, bool is_max, const int *k, const loom_pool_opts *o,
                      pool_params *c) {
  static const loom_pool_opts zero;
  if (!o) o = &zero;
  memset(c, 0, sizeof *c);
  c->k[0] = c->s[0] = c->d[0] = c->d[1] = 1;
  for (int i = 0; i < dims; i++) {
    int j = 2 - dims + i;
    if (k[i] <= 0 || o->stride[i] < 0 || o->padding[i] < 0 || o->dilation[i] < 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: kernel size must be positive and stride, padding, dilation not "
                     "negative (got kernel %d, stride %d, padding %d, dilation %d)", who, k[i], o->stride[i],
                     o->padding[i], o->dilation[i]);
      return false;
    }
    if (!is_max && o->dilation[i] > 1) {
      core_set_error(LOOM_ERR_INVALID, "%s: average pooling has no dilation", who);
      return false;
    }
    c->k[j] = k[i];
    c->s[j] = o->stride[i] ? o->stride[i] : k[i];
    c->p[j] = o->padding[i];
    c->d[j] = o->dilation[i] ? o->dilation[i] : 1;
    int64_t half = (c->d[j] * (c->k[j] - 1) + 1) / 2;
    if (c->p[j] > half) {
      core_set_error(LOOM_ERR_INVALID, "%s: padding %lld should be at most half of the kernel size %lld", who,
                     (long long)c->p[j], (long long)c->k[j]);
      return false;
    }
  }
  if (o->divisor_override && (is_max || dims != 2)) {
    core_set_error(LOOM_ERR_INVALID, "%s: divisor_override is an option of 2-d average pooling only (as in PyTorch)",
                   who);
    return false;
  }
  c->ceil = o->ceil_mode;
  return true;
}

bool core_pool_check_opts(const char *who, int dims, bool is_max, const int *k, const loom_pool_opts *opts) {
  pool_params c;
  return read_opts(who, dims, is_max, k, opts, &c);
}

/* x as a batched 4-d tensor (unsqueezed: *unbatched set, 1-d given H = 1). */
static loom_tensor *as_4d(const char *who, int dims, const loom_tensor *x, bool *unbatched) {
  static const char *const want[] = {"", "[N, C, L] or [C, L]", "[N, C, H, W] or [C, H, W]"};
  *unbatched = x->shape.ndim == dims + 1;
  if (x->shape.ndim != dims + 1 && x->shape.ndim != dims + 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input %s, got %s", who, want[dims], loom_shape_str(x->shape));
    return NULL;
  }
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating input, got %s", who, loom_dtype_name(x->dtype));
    return NULL;
  }
  loom_tensor *t = *unbatched ? loom_unsqueeze(x, 0) : (loom_tensor *)x;
  if (t && dims == 1) t = loom_unsqueeze(t, 2);
  return t ? loom_contiguous(t) : NULL;
}

/* Back from 4-d to the caller's rank. */
static loom_tensor *from_4d(loom_tensor *y, int dims, bool unbatched) {
  if (y && dims == 1) y = loom_squeeze(y, 2);
  if (y && unbatched) y = loom_squeeze(y, 0);
  return y;
}

static bool output_hw(const char *who, const loom_tensor *x, const pool_params *c, int64_t *Ho, int64_t *Wo) {
  *Ho = pool_out(x->shape.d[2], c, 0);
  *Wo = pool_out(x->shape.d[3], c, 1);
  if (*Ho < 1 || *Wo < 1) {
    core_set_error(LOOM_ERR_INVALID, "%s: output size %lldx%lld is too small for input %s (kernel %lldx%lld)", who,
                   (long long)*Ho, (long long)*Wo, loom_shape_str(x->shape), (long long)c->k[0], (long long)c->k[1]);
    return false;
  }
  return true;
}

/* ---- max pooling ---- */
static void max_pool_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  loom_tensor *cg = loom_contiguous(g);
  loom_tensor *gx = cg ? core_new(n->in_shape[0], g->dtype, g->storage->device) : NULL;
  if (!gx) return;
  core_kctx k = {CORE_OP_max_pool2d_backward, 2, 1, {cg, n->saved[0]}, {gx}, n->a, NULL};
  gin[0] = core_launch(&k) == LOOM_OK ? gx : NULL;
}

/* Runs max_pool2d on 4-d contiguous x with attributes a into [N, C, Ho, Wo],
 * back at the caller's rank; the indices go to *indices (may be NULL). */
static loom_tensor *max_run(loom_tensor *x, const core_attrs *a, int64_t Ho, int64_t Wo, int dims, bool unbatched,
                            loom_tensor **indices) {
  loom_shape ys = LOOM_SHAPE(x->shape.d[0], x->shape.d[1], Ho, Wo);
  loom_tensor *y = core_new(ys, x->dtype, x->storage->device);
  loom_tensor *idx = y ? core_new(ys, LOOM_I64, x->storage->device) : NULL;
  if (!idx) return NULL;
  core_kctx kc = {CORE_OP_max_pool2d, 1, 2, {x}, {y, idx}, *a, NULL};
  if (core_launch(&kc) != LOOM_OK) return NULL;
  if (core_grad_needed(1, (const loom_tensor *const *)&x)) {
    core_node *n = core_record("max_pool2d", max_pool_bw, y, 1, (const loom_tensor *const *)&x);
    if (n) {
      core_save(n, idx);
      n->a = *a;
    }
  }
  loom_tensor *yy = from_4d(y, dims, unbatched), *ii = from_4d(idx, dims, unbatched);
  if (!yy || !ii) return NULL;
  if (indices) *indices = loom_keep(ii); /* into the caller's scope */
  return yy;
}

static loom_tensor *max_body(const char *who, int dims, const loom_tensor *x0, const int *k,
                             const loom_pool_opts *opts, loom_tensor **indices) {
  pool_params c;
  bool unbatched;
  if (!read_opts(who, dims, true, k, opts, &c)) return NULL;
  loom_tensor *x = as_4d(who, dims, x0, &unbatched);
  int64_t Ho, Wo;
  if (!x || !output_hw(who, x, &c, &Ho, &Wo)) return NULL;
  core_attrs a = {{c.k[0], c.k[1], c.s[0], c.s[1], c.p[0], c.p[1], c.d[0], c.d[1]}, {0}};
  return max_run(x, &a, Ho, Wo, dims, unbatched, indices);
}

loom_tensor *core_max_pool(const char *who, int dims, const loom_tensor *x, const int *k,
                           const loom_pool_opts *opts, loom_tensor **indices) {
  if (indices) *indices = NULL;
  CORE_CHECK_NULL1(who, x);
  loom_scope_begin();
  loom_tensor *y = loom_keep(max_body(who, dims, x, k, opts, indices));
  loom_scope_end();
  return y;
}

/* ---- average pooling (plain and adaptive) ---- */
static void avg_pool_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  loom_tensor *cg = loom_contiguous(g);
  loom_tensor *gx = cg ? core_new(n->in_shape[0], g->dtype, g->storage->device) : NULL;
  if (!gx) return;
  core_kctx k = {CORE_OP_avg_pool2d_backward, 1, 1, {cg}, {gx}, n->a, NULL};
  gin[0] = core_launch(&k) == LOOM_OK ? gx : NULL;
}

/* Runs avg_pool2d on 4-d contiguous x with attributes a into [N, C, Ho, Wo]. */
static loom_tensor *avg_run(loom_tensor *x, const core_attrs *a, int64_t Ho, int64_t Wo) {
  loom_tensor *y = core_new(LOOM_SHAPE(x->shape.d[0], x->shape.d[1], Ho, Wo), x->dtype, x->storage->device);
  if (!y) return NULL;
  core_kctx kc = {CORE_OP_avg_pool2d, 1, 1, {x}, {y}, *a, NULL};
  if (core_launch(&kc) != LOOM_OK) return NULL;
  if (core_grad_needed(1, (const loom_tensor *const *)&x)) {
    core_node *n = core_record("avg_pool2d", avg_pool_bw, y, 1, (const loom_tensor *const *)&x);
    if (n) n->a = *a;
  }
  return y;
}

static loom_tensor *avg_body(const char *who, int dims, const loom_tensor *x0, const int *k,
                             const loom_pool_opts *opts) {
  pool_params c;
  bool unbatched;
  if (!read_opts(who, dims, false, k, opts, &c)) return NULL;
  loom_tensor *x = as_4d(who, dims, x0, &unbatched);
  int64_t Ho, Wo;
  if (!x || !output_hw(who, x, &c, &Ho, &Wo)) return NULL;
  core_attrs a = {{c.k[0], c.k[1], c.s[0], c.s[1], c.p[0], c.p[1], opts && opts->exclude_pad, 0},
                  {opts ? opts->divisor_override : 0}};
  return from_4d(avg_run(x, &a, Ho, Wo), dims, unbatched);
}

loom_tensor *core_avg_pool(const char *who, int dims, const loom_tensor *x, const int *k,
                           const loom_pool_opts *opts) {
  CORE_CHECK_NULL1(who, x);
  loom_scope_begin();
  loom_tensor *y = loom_keep(avg_body(who, dims, x, k, opts));
  loom_scope_end();
  return y;
}

bool core_adaptive_check_size(const char *who, int dims, int64_t oh, int64_t ow) {
  if ((dims == 2 && (oh == 0 || oh < -1)) || ow == 0 || ow < -1) {
    if (dims == 2)
      core_set_error(LOOM_ERR_INVALID, "%s: output size must be positive (or -1 to keep the input's), got %lldx%lld",
                     who, (long long)oh, (long long)ow);
    else
      core_set_error(LOOM_ERR_INVALID, "%s: output size must be positive (or -1 to keep the input's), got %lld", who,
                     (long long)ow);
    return false;
  }
  return true;
}

/* Adaptive pooling to out[0] x out[1] (1-d: out[1] only; -1 keeps the input's size). */
static loom_tensor *adaptive_body(const char *who, int dims, bool is_max, const loom_tensor *x0, const int64_t *out,
                                  loom_tensor **indices) {
  bool unbatched;
  int64_t oh = dims == 2 ? out[0] : 1, ow = out[1];
  if (!core_adaptive_check_size(who, dims, oh, ow)) return NULL;
  loom_tensor *x = as_4d(who, dims, x0, &unbatched);
  if (!x) return NULL;
  if (x->shape.d[2] == 0 || x->shape.d[3] == 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: input %s has an empty %s", who, loom_shape_str(x0->shape),
                   dims == 2 ? "plane" : "length");
    return NULL;
  }
  int64_t Ho = oh < 0 ? x->shape.d[2] : oh, Wo = ow < 0 ? x->shape.d[3] : ow;
  if (is_max) {
    core_attrs a = {{1, 1, 1, 1, 0, 0, 1, 1}, {1}}; /* f[0] = 1: adaptive windows */
    return max_run(x, &a, Ho, Wo, dims, unbatched, indices);
  }
  core_attrs a = {{0, 0, 0, 0, 0, 0, 0, 1}, {0}};
  return from_4d(avg_run(x, &a, Ho, Wo), dims, unbatched);
}

loom_tensor *core_adaptive_pool(const char *who, int dims, bool is_max, const loom_tensor *x, const int64_t *out,
                                loom_tensor **indices) {
  if (indices) *indices = NULL;
  CORE_CHECK_NULL1(who, x);
  loom_scope_begin();
  loom_tensor *y = loom_keep(adaptive_body(who, dims, is_max, x, out, indices));
  loom_scope_end();
  return y;
}

/* ---- public functional forms ---- */
loom_tensor *loom_max_pool2d(const loom_tensor *x, int kernel_h, int kernel_w, const loom_pool_opts *opts,
                             loom_tensor **indices) {
  int k[2] = {kernel_h, kernel_w};
  return core_max_pool("max_pool2d", 2, x, k, opts, indices);
}

loom_tensor *loom_max_pool1d(const loom_tensor *x, int kernel_size, const loom_pool_opts *opts,
                             loom_tensor **indices) {
  return core_max_pool("max_pool1d", 1, x, &kernel_size, opts, indices);
}

loom_tensor *loom_avg_pool2d(const loom_tensor *x, int kernel_h, int kernel_w, const loom_pool_opts *opts) {
  int k[2] = {kernel_h, kernel_w};
  return core_avg_pool("avg_pool2d", 2, x, k, opts);
}

loom_tensor *loom_avg_pool1d(const loom_tensor *x, int kernel_size, const loom_pool_opts *opts) {
  return core_avg_pool("avg_pool1d", 1, x, &kernel_size, opts);
}

loom_tensor *loom_adaptive_avg_pool2d(const loom_tensor *x, int64_t out_h, int64_t out_w) {
  int64_t o[2] = {out_h, out_w};
  return core_adaptive_pool("adaptive_avg_pool2d", 2, false, x, o, NULL);
}

loom_tensor *loom_adaptive_avg_pool1d(const loom_tensor *x, int64_t out_l) {
  int64_t o[2] = {1, out_l};
  return core_adaptive_pool("adaptive_avg_pool1d", 1, false, x, o, NULL);
}

loom_tensor *loom_adaptive_max_pool2d(const loom_tensor *x, int64_t out_h, int64_t out_w, loom_tensor **indices) {
  int64_t o[2] = {out_h, out_w};
  return core_adaptive_pool("adaptive_max_pool2d", 2, true, x, o, indices);
}

loom_tensor *loom_adaptive_max_pool1d(const loom_tensor *x, int64_t out_l, loom_tensor **indices) {
  int64_t o[2] = {1, out_l};
  return core_adaptive_pool("adaptive_max_pool1d", 1, true, x, o, indices);
}
