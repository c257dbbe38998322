/* Max unpooling (F.max_unpool1d / 2d): the inverse of max pooling with
 * indices. The output is zeros with x's values at the flat positions in each
 * plane that indices names: a scatter along the flattened spatial dims, so it
 * runs and differentiates on every device (x's gradient is the gather of the
 * output's at the indices). */
#include "core/autograd_impl.h"
#include "core/conv_impl.h"

/* Kernel, stride (0 = the kernel) and padding of a 1-d or 2-d unpool; the
 * other pooling options do not apply. */
static bool read_unpool(const char *who, int dims, const int *k, const loom_pool_opts *o, int64_t *kk, int64_t *s,
                        int64_t *p) {
  static const loom_pool_opts zero;
  if (!o) o = &zero;
  for (int i = 0; i < dims; i++) {
    if (k[i] <= 0 || o->stride[i] < 0 || o->padding[i] < 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: kernel size must be positive and stride, padding not negative "
                     "(got kernel %d, stride %d, padding %d)", who, k[i], o->stride[i], o->padding[i]);
      return false;
    }
    if (o->dilation[i] > 1) {
      core_set_error(LOOM_ERR_INVALID, "%s: max unpooling has no dilation (as in PyTorch)", who);
      return false;
    }
    kk[i] = k[i], s[i] = o->stride[i] ? o->stride[i] : k[i], p[i] = o->padding[i];
  }
  if (o->ceil_mode || o->exclude_pad || o->divisor_override) {
    core_set_error(LOOM_ERR_INVALID, "%s: max unpooling takes kernel, stride and padding only (ceil_mode, "
                   "exclude_pad and divisor_override are options of pooling)", who);
    return false;
  }
  return true;
}

bool core_unpool_check_opts(const char *who, int dims, const int *k, const loom_pool_opts *opts) {
  int64_t kk[2], s[2], p[2];
  return read_unpool(who, dims, k, opts, kk, s, p);
}

/* The output's spatial sizes: PyTorch's default (in - 1) * stride - 2 * padding
 * + kernel, or out[i], which must lie strictly within stride of the default. */
static bool unpool_sizes(const char *who, int dims, const int64_t *in, const int64_t *k, const int64_t *s,
                         const int64_t *p, const int64_t *out, int64_t *o) {
  for (int i = 0; i < dims; i++) {
    int64_t def = (in[i] - 1) * s[i] - 2 * p[i] + k[i];
    o[i] = out ? out[i] : def;
    if (out && !(o[i] > def - s[i] && o[i] < def + s[i])) {
      core_set_error(LOOM_ERR_INVALID, "%s: output size %lld in spatial dim %d must lie between %lld and %lld "
                     "(exclusive) for input size %lld", who, (long long)o[i], i, (long long)(def - s[i]),
                     (long long)(def + s[i]), (long long)in[i]);
      return false;
    }
    if (o[i] <= 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: output size %lld in spatial dim %d is not positive (input size %lld, "
                     "kernel %lld, stride %lld, padding %lld)", who, (long long)o[i], i, (long long)in[i],
                     (long long)k[i], (long long)s[i], (long long)p[i]);
      return false;
    }
  }
  return true;
}

static loom_tensor *unpool_body(const char *who, int dims, const loom_tensor *x, const loom_tensor *idx,
                                const int *k, const loom_pool_opts *opts, const int64_t *out) {
  static const char *const want[] = {"", "[N, C, L] or [C, L]", "[N, C, H, W] or [C, H, W]"};
  int64_t kk[2], s[2], p[2], o[2];
  if (!read_unpool(who, dims, k, opts, kk, s, p) || !core_check_same_device(who, x, idx)) return NULL;
  int nd = x->shape.ndim;
  if (nd != dims + 1 && nd != dims + 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input %s, got %s", who, want[dims], loom_shape_str(x->shape));
    return NULL;
  }
  if (!loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating input, got %s", who, loom_dtype_name(x->dtype));
    return NULL;
  }
  if (idx->dtype != LOOM_I64 && idx->dtype != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "%s: indices must be i64 (or i32), got %s", who, loom_dtype_name(idx->dtype));
    return NULL;
  }
  if (!loom_shape_equal(idx->shape, x->shape)) {
    core_set_error(LOOM_ERR_INVALID, "%s: indices shape %s does not match input shape %s", who,
                   loom_shape_str(idx->shape), loom_shape_str(x->shape));
    return NULL;
  }
  if (!unpool_sizes(who, dims, x->shape.d + nd - dims, kk, s, p, out, o)) return NULL;
  int64_t plane = dims == 2 ? o[0] * o[1] : o[0];
  if (core_check_indices(who, idx, plane) != LOOM_OK) return NULL;
  int64_t N = nd == dims + 2 ? x->shape.d[0] : 1, C = x->shape.d[nd - dims - 1];
  loom_shape ys = x->shape;
  int64_t L = 1;
  for (int i = 0; i < dims; i++) L *= x->shape.d[nd - dims + i], ys.d[nd - dims + i] = o[i];
  loom_tensor *z = loom_zeros(LOOM_SHAPE(N, C, plane), x->dtype, x->storage->device);
  loom_tensor *y = loom_scatter(z, 2, loom_reshape(idx, LOOM_SHAPE(N, C, L)), loom_reshape(x, LOOM_SHAPE(N, C, L)));
  return loom_reshape(y, ys);
}

loom_tensor *core_max_unpool(const char *who, int dims, const loom_tensor *x, const loom_tensor *indices,
                             const int *k, const loom_pool_opts *opts, const int64_t *out) {
  if (!x || !indices) {
    core_null_error("%s: %s is NULL", who, x ? "indices" : "input");
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *y = loom_keep(unpool_body(who, dims, x, indices, k, opts, out));
  loom_scope_end();
  return y;
}

loom_tensor *loom_max_unpool2d(const loom_tensor *x, const loom_tensor *indices, int kernel_h, int kernel_w,
                               const loom_pool_opts *opts, const int64_t *output_size) {
  int k[2] = {kernel_h, kernel_w};
  return core_max_unpool("max_unpool2d", 2, x, indices, k, opts, output_size);
}

loom_tensor *loom_max_unpool1d(const loom_tensor *x, const loom_tensor *indices, int kernel_size,
                               const loom_pool_opts *opts, const int64_t *output_size) {
  return core_max_unpool("max_unpool1d", 1, x, indices, &kernel_size, opts, output_size);
}
