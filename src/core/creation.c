/* Creation, host transfers, device / dtype moves and copies. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/autograd_impl.h"

static loom_tensor *fill_new(loom_shape s, double v, loom_dtype dt, loom_device dev) {
  loom_tensor *t = core_new(s, dt, dev);
  if (t && loom_fill_(t, v) != LOOM_OK) {
    core_untrack(t);
    loom_release(t);
    return NULL;
  }
  return t;
}

loom_tensor *loom_empty(loom_shape s, loom_dtype dt, loom_device dev) { return core_new(s, dt, dev); }
loom_tensor *loom_zeros(loom_shape s, loom_dtype dt, loom_device dev) { return fill_new(s, 0, dt, dev); }
loom_tensor *loom_ones(loom_shape s, loom_dtype dt, loom_device dev) { return fill_new(s, 1, dt, dev); }
loom_tensor *loom_full(loom_shape s, double v, loom_dtype dt, loom_device dev) { return fill_new(s, v, dt, dev); }

loom_tensor *loom_zeros_like(const loom_tensor *t) {
  CORE_CHECK_NULL1("zeros_like", t);
  return fill_new(t->shape, 0, t->dtype, t->storage->device);
}
loom_tensor *loom_ones_like(const loom_tensor *t) {
  CORE_CHECK_NULL1("ones_like", t);
  return fill_new(t->shape, 1, t->dtype, t->storage->device);
}
loom_tensor *loom_full_like(const loom_tensor *t, double v) {
  CORE_CHECK_NULL1("full_like", t);
  return fill_new(t->shape, v, t->dtype, t->storage->device);
}
loom_tensor *loom_scalar_like(const loom_tensor *like, double v) {
  CORE_CHECK_NULL1("scalar_like", like);
  return fill_new(LOOM_SHAPE(), v, like->dtype, like->storage->device);
}

static loom_tensor *arange_n(int64_t n, double start, double step, loom_dtype dt, loom_device dev) {
  loom_tensor *t = core_new(LOOM_SHAPE(n), dt, dev);
  if (!t) return NULL;
  core_kctx k = {CORE_OP_arange, 0, 1, {0}, {t}, {{0}, {start, step}}, NULL};
  if (core_launch(&k) != LOOM_OK) {
    core_untrack(t);
    loom_release(t);
    return NULL;
  }
  return t;
}

loom_tensor *loom_arange(double start, double end, double step, loom_dtype dt, loom_device dev) {
  if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step)) {
    core_set_error(LOOM_ERR_INVALID, "arange: need finite start, end and a non-zero step (got %g, %g, %g)",
                   start, end, step);
    return NULL;
  }
  if ((step > 0 && end < start) || (step < 0 && end > start)) {
    core_set_error(LOOM_ERR_INVALID, "arange: step %g has the wrong sign for the range [%g, %g)", step, start, end);
    return NULL;
  }
  double n = ceil((end - start) / step);
  if (n > 1e15) {
    core_set_error(LOOM_ERR_INVALID, "arange: %g elements is too many", n);
    return NULL;
  }
  return arange_n((int64_t)n, start, step, dt, dev);
}

loom_tensor *loom_linspace(double start, double end, int64_t steps, loom_dtype dt, loom_device dev) {
  if (steps < 0) {
    core_set_error(LOOM_ERR_INVALID, "linspace: steps must be non-negative, got %lld", (long long)steps);
    return NULL;
  }
  double step = steps > 1 ? (end - start) / (double)(steps - 1) : 0;
  return arange_n(steps, start, step, dt, dev);
}

loom_tensor *loom_eye(int64_t n, int64_t m, loom_dtype dt, loom_device dev) {
  if (m < 0) m = n;
  if (n < 0) {
    core_set_error(LOOM_ERR_INVALID, "eye: n must be non-negative, got %lld", (long long)n);
    return NULL;
  }
  loom_tensor *t = loom_zeros(LOOM_SHAPE(n, m), dt, dev);
  if (!t || n == 0 || m == 0) return t;
  int64_t st = m + 1;
  loom_tensor *diag = core_view(t, LOOM_SHAPE(n < m ? n : m), &st, 0);
  core_untrack(diag);
  int rc = diag ? loom_fill_(diag, 1) : (int)loom_last_status();
  loom_release(diag);
  if (rc == LOOM_OK) return t;
  core_untrack(t);
  loom_release(t);
  return NULL;
}

/* ---- random ---- */
void core_rng_next(loom_device dev, uint64_t blocks, uint64_t *seed, uint64_t *offset);

int core_random_fill(loom_tensor *t, core_op op, double f0, double f1, int64_t lo, int64_t hi) {
  uint64_t per_block = op == CORE_OP_normal ? 2 : 4;
  uint64_t n = (uint64_t)core_numel(t), seed, offset;
  core_rng_next(t->storage->device, (n + per_block - 1) / per_block, &seed, &offset);
  core_kctx k = {op, 0, 1, {0}, {t}, {{(int64_t)seed, (int64_t)offset, lo, hi}, {f0, f1}}, NULL};
  return core_launch(&k);
}

static loom_tensor *random_new(core_op op, loom_shape s, loom_dtype dt, loom_device dev, double f0, double f1,
                               int64_t lo, int64_t hi) {
  loom_tensor *t = core_new(s, dt, dev);
  if (!t) return NULL;
  if (core_random_fill(t, op, f0, f1, lo, hi) != LOOM_OK) {
    core_untrack(t);
    loom_release(t);
    return NULL;
  }
  return t;
}

static bool need_float(const char *op, loom_dtype dt) {
  if (loom_dtype_is_float(dt)) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: dtype %s is not a floating dtype", op, loom_dtype_name(dt));
  return false;
}

loom_tensor *loom_rand(loom_shape s, loom_dtype dt, loom_device dev) {
  if (!need_float("rand", dt)) return NULL;
  return random_new(CORE_OP_uniform, s, dt, dev, 0, 1, 0, 0);
}
loom_tensor *loom_randn(loom_shape s, loom_dtype dt, loom_device dev) {
  if (!need_float("randn", dt)) return NULL;
  return random_new(CORE_OP_normal, s, dt, dev, 0, 1, 0, 0);
}
loom_tensor *loom_randint(int64_t low, int64_t high, loom_shape s, loom_dtype dt, loom_device dev) {
  if (dt != LOOM_I32 && dt != LOOM_I64 && dt != LOOM_U8) {
    core_set_error(LOOM_ERR_INVALID, "randint: dtype %s is not i32, i64 or u8", loom_dtype_name(dt));
    return NULL;
  }
  if (high <= low || (uint64_t)high - (uint64_t)low > 4294967296ULL) {
    core_set_error(LOOM_ERR_INVALID, "randint: need low < high with a range of at most 2^32 (got [%lld, %lld))",
                   (long long)low, (long long)high);
    return NULL;
  }
  return random_new(CORE_OP_randint, s, dt, dev, 0, 0, low, high);
}

/* ---- host transfers ---- */
loom_tensor *loom_from_host(const void *data, loom_shape s, loom_dtype dt, loom_device dev) {
  if (!data && loom_shape_numel(s) != 0) {
    core_set_error(LOOM_ERR_INVALID, "from_host: data is NULL");
    return NULL;
  }
  loom_tensor *t = core_new(s, dt, dev);
  if (!t) return NULL;
  if (t->storage->nbytes && core_memcpy(t->storage->data, dev, data, loom_cpu(), t->storage->nbytes) != LOOM_OK) {
    core_untrack(t);
    loom_release(t);
    return NULL;
  }
  return t;
}

int loom_to_host(const loom_tensor *t, void *dst, size_t nbytes) {
  if (!t || (!dst && nbytes))
    return core_null_error("to_host: %s is NULL", t ? "destination" : "tensor");
  size_t need = (size_t)core_numel(t) * loom_dtype_size(t->dtype);
  if (nbytes < need)
    return core_set_error(LOOM_ERR_INVALID, "to_host: buffer of %zu bytes is too small for %s %s (%zu bytes)", nbytes,
                          loom_dtype_name(t->dtype), loom_shape_str(t->shape), need);
  if (need == 0) return LOOM_OK;
  loom_tensor *c = (loom_tensor *)t;
  if (!core_is_contiguous(t)) {
    c = core_temp(t->shape, t->dtype, t->storage->device);
    if (!c || loom_copy_(c, t) != LOOM_OK) {
      loom_release(c);
      return loom_last_status();
    }
  }
  loom_status st = core_memcpy(dst, loom_cpu(), core_ptr(c), c->storage->device, need);
  if (c != t) loom_release(c);
  return st;
}

static double to_double(const void *p, loom_dtype dt) {
  switch (dt) {
    case LOOM_F32: return *(const float *)p;
    case LOOM_F64: return *(const double *)p;
    case LOOM_F16: return core_half_to_float(*(const uint16_t *)p);
    case LOOM_BF16: return core_bf16_to_float(*(const uint16_t *)p);
    case LOOM_I32: return *(const int32_t *)p;
    case LOOM_I64: return (double)*(const int64_t *)p;
    case LOOM_U8: return *(const uint8_t *)p;
    case LOOM_BOOL: return *(const uint8_t *)p ? 1 : 0;
    default: return NAN;
  }
}

double loom_item_at(const loom_tensor *t, const int64_t *index) {
  if (!t || (!index && t->shape.ndim)) {
    core_set_error(LOOM_ERR_INVALID, "item_at: NULL argument");
    return NAN;
  }
  int64_t off = t->offset;
  for (int i = 0; i < t->shape.ndim; i++) {
    if (index[i] < 0 || index[i] >= t->shape.d[i]) {
      core_set_error(LOOM_ERR_INVALID, "item_at: index %lld out of range for dim %d of shape %s",
                     (long long)index[i], i, loom_shape_str(t->shape));
      return NAN;
    }
    off += index[i] * t->strides[i];
  }
  unsigned char buf[8];
  size_t es = loom_dtype_size(t->dtype);
  const char *src = (const char *)t->storage->data + (size_t)off * es;
  if (core_memcpy(buf, loom_cpu(), src, t->storage->device, es) != LOOM_OK) return NAN;
  return to_double(buf, t->dtype);
}

double loom_item(const loom_tensor *t) {
  if (!t || core_numel(t) != 1) {
    core_set_error(LOOM_ERR_INVALID, "item: need a one-element tensor, got %s",
                   t ? loom_shape_str(t->shape) : "NULL");
    return NAN;
  }
  int64_t idx[LOOM_MAX_DIMS] = {0};
  return loom_item_at(t, idx);
}

/* ---- copies ---- */
int loom_fill_(loom_tensor *dst, double v) {
  if (!dst) return core_null_error("fill_: tensor is NULL");
  core_kctx k = {CORE_OP_fill, 0, 1, {0}, {dst}, {{0}, {v}}, NULL};
  return core_launch(&k);
}

int loom_copy_(loom_tensor *dst, const loom_tensor *src) {
  if (!dst || !src) return core_null_error("copy_: %s is NULL", dst ? "source" : "destination");
  loom_shape bs;
  if (!core_broadcast_shapes("copy_", dst->shape, src->shape, &bs)) return loom_last_status();
  if (!loom_shape_equal(bs, dst->shape))
    return core_set_error(LOOM_ERR_INVALID, "copy_: source of shape %s does not broadcast to destination shape %s",
                          loom_shape_str(src->shape), loom_shape_str(dst->shape));
  loom_tensor *moved = NULL;
  if (!loom_device_equal(src->storage->device, dst->storage->device)) {
    /* contiguous on the source side, then one transfer */
    loom_tensor *c = core_temp(src->shape, src->dtype, src->storage->device);
    if (!c) return loom_last_status();
    core_kctx k1 = {CORE_OP_copy, 1, 1, {(loom_tensor *)src}, {c}, {{0}, {0}}, NULL};
    loom_status st = core_launch(&k1);
    if (st == LOOM_OK) moved = core_temp(src->shape, src->dtype, dst->storage->device);
    if (st == LOOM_OK && !moved) st = loom_last_status();
    if (st == LOOM_OK && c->storage->nbytes)
      st = core_memcpy(moved->storage->data, dst->storage->device, c->storage->data, c->storage->device,
                       c->storage->nbytes);
    loom_release(c);
    if (st != LOOM_OK) {
      loom_release(moved);
      return st;
    }
    src = moved;
  }
  loom_tensor *e = core_expand_to(src, dst->shape);
  loom_status st = LOOM_ERR_INTERNAL;
  if (e) {
    core_kctx k = {CORE_OP_copy, 1, 1, {e}, {dst}, {{0}, {0}}, NULL};
    st = core_launch(&k);
    loom_release(e);
  } else {
    st = loom_last_status();
  }
  loom_release(moved);
  return st;
}

/* ---- moves (differentiable) ---- */
static void to_backward(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = loom_to(g, n->in_device[0], n->in_dtype[0]);
}

static loom_tensor *record_copy(const char *name, const loom_tensor *src, loom_tensor *out) {
  if (out && core_grad_needed(1, &src)) core_record(name, to_backward, out, 1, &src);
  return out;
}

loom_tensor *loom_to(const loom_tensor *t, loom_device dev, loom_dtype dt) {
  CORE_CHECK_NULL1("to", t);
  loom_tensor *out;
  if (loom_device_equal(dev, t->storage->device) && dt == t->dtype) {
    out = core_alias(t);
  } else {
    out = core_new(t->shape, dt, dev);
    if (out && loom_copy_(out, t) != LOOM_OK) {
      core_untrack(out);
      loom_release(out);
      out = NULL;
    }
  }
  return record_copy("to", t, out);
}

loom_tensor *loom_to_device(const loom_tensor *t, loom_device dev) {
  CORE_CHECK_NULL1("to_device", t);
  return loom_to(t, dev, t->dtype);
}
loom_tensor *loom_to_dtype(const loom_tensor *t, loom_dtype dt) {
  CORE_CHECK_NULL1("to_dtype", t);
  return loom_to(t, t->storage->device, dt);
}

loom_tensor *loom_clone(const loom_tensor *t) {
  CORE_CHECK_NULL1("clone", t);
  loom_tensor *out = core_new(t->shape, t->dtype, t->storage->device);
  if (out && loom_copy_(out, t) != LOOM_OK) {
    core_untrack(out);
    loom_release(out);
    return NULL;
  }
  return record_copy("clone", t, out);
}

loom_tensor *loom_contiguous(const loom_tensor *t) {
  CORE_CHECK_NULL1("contiguous", t);
  if (!core_is_contiguous(t)) return loom_clone(t);
  return record_copy("contiguous", t, core_alias(t));
}

void loom_print(const loom_tensor *t, const char *label) {
  if (!t) {
    printf("%s: NULL\n", label ? label : "tensor");
    return;
  }
  printf("%s: %s %s on %s", label ? label : "tensor", loom_dtype_name(t->dtype), loom_shape_str(t->shape),
         loom_device_name(t->storage->device));
  int64_t n = core_numel(t), shown = n < 16 ? n : 16;
  int64_t idx[LOOM_MAX_DIMS] = {0};
  printf(" [");
  for (int64_t i = 0; i < shown; i++) {
    int64_t rem = i;
    for (int d = t->shape.ndim - 1; d >= 0; d--) {
      idx[d] = rem % t->shape.d[d];
      rem /= t->shape.d[d];
    }
    printf(i ? ", %g" : "%g", loom_item_at(t, idx));
  }
  printf("%s]\n", shown < n ? ", ..." : "");
}
