/* pad (PyTorch's F.pad): constant, reflect, replicate and circular padding of
 * the trailing dims. Composed from narrow and cat (constant) or one
 * index_select per padded dim (the other modes), so it runs on every device
 * and autograd follows those ops. */
#include <stdlib.h>
#include <string.h>

#include "core/autograd_impl.h"

typedef enum { PAD_CONSTANT, PAD_REFLECT, PAD_REPLICATE, PAD_CIRCULAR } pad_mode;

static int read_mode(const char *mode) {
  static const char *const names[] = {"constant", "reflect", "replicate", "circular"};
  if (!mode) return PAD_CONSTANT;
  for (int i = 0; i < 4; i++)
    if (strcmp(mode, names[i]) == 0) return i;
  core_set_error(LOOM_ERR_INVALID, "pad: unknown mode '%s' (expected constant, reflect, replicate or circular)", mode);
  return -1;
}

/* Constant padding of dim d by (l, r): negative amounts crop. */
static loom_tensor *pad_constant(loom_tensor *x, int d, int64_t l, int64_t r, double value) {
  int64_t n = x->shape.d[d], start = l < 0 ? -l : 0, end = n - (r < 0 ? -r : 0);
  if (start > n || end < start) {
    core_set_error(LOOM_ERR_INVALID, "pad: padding (%lld, %lld) crops more than the %lld elements of dim %d",
                   (long long)l, (long long)r, (long long)n, d);
    return NULL;
  }
  loom_tensor *parts[3];
  int k = 0;
  loom_shape s = x->shape;
  if (l > 0) s.d[d] = l, parts[k++] = loom_full(s, value, x->dtype, x->storage->device);
  parts[k++] = loom_narrow(x, d, start, end - start);
  if (r > 0) s.d[d] = r, parts[k++] = loom_full(s, value, x->dtype, x->storage->device);
  for (int i = 0; i < k; i++)
    if (!parts[i]) return NULL;
  return k == 1 ? parts[0] : loom_cat(parts, k, d);
}

/* The source index of each output element of dim d (size n) padded by (l, r). */
static loom_tensor *pad_index(const char *mname, pad_mode mode, const loom_tensor *x, int d, int64_t l, int64_t r) {
  int64_t n = x->shape.d[d], m = n + l + r;
  int64_t c0 = 0, c1 = n; /* circular: the range left after cropping */
  if (mode == PAD_CIRCULAR) {
    c0 = l < 0 ? -l : 0, c1 = n - (r < 0 ? -r : 0);
    int64_t kept = c1 - c0;
    if (kept < 1 || l > kept || r > kept) {
      core_set_error(LOOM_ERR_INVALID, "pad: circular padding (%lld, %lld) of dim %d (size %lld) %s", (long long)l,
                     (long long)r, d, (long long)n,
                     kept < 1 ? "leaves nothing to wrap" : "wraps around more than once");
      return NULL;
    }
  } else if (n < 1 || (mode == PAD_REFLECT && (l >= n || r >= n))) {
    core_set_error(LOOM_ERR_INVALID, "pad: %s padding (%lld, %lld) of dim %d needs %s (size %lld)", mname,
                   (long long)l, (long long)r, d, n < 1 ? "a non-empty dim" : "each pad smaller than the dim",
                   (long long)n);
    return NULL;
  }
  if (m < 1) {
    core_set_error(LOOM_ERR_INVALID, "pad: %s padding (%lld, %lld) of dim %d (size %lld) leaves no elements", mname,
                   (long long)l, (long long)r, d, (long long)n);
    return NULL;
  }
  int64_t *idx = malloc((size_t)m * sizeof *idx);
  if (!idx) {
    core_set_error(LOOM_ERR_OOM, "pad: out of host memory for %lld indices", (long long)m);
    return NULL;
  }
  for (int64_t i = 0; i < m; i++) {
    int64_t p = i - l;
    if (mode == PAD_REFLECT) p = p < 0 ? -p : p >= n ? 2 * (n - 1) - p : p;
    else if (mode == PAD_REPLICATE) p = p < 0 ? 0 : p >= n ? n - 1 : p;
    else p = c0 + (((p - c0) % (c1 - c0)) + (c1 - c0)) % (c1 - c0);
    idx[i] = p;
  }
  loom_tensor *t = loom_from_host(idx, LOOM_SHAPE(m), LOOM_I64, x->storage->device);
  free(idx);
  return t;
}

static loom_tensor *pad_body(const loom_tensor *x, const int64_t *pad, int npad, const char *mname, double value) {
  int mode = read_mode(mname);
  if (mode < 0) return NULL;
  if (npad < 0 || npad % 2 || (npad && !pad)) {
    core_set_error(LOOM_ERR_INVALID, "pad: the padding length must be even (pairs from the last dim), got %d%s", npad,
                   npad > 0 && !pad ? " with a NULL pad array" : "");
    return NULL;
  }
  int k = npad / 2, nd = x->shape.ndim;
  if (mode == PAD_CONSTANT && k > nd) {
    core_set_error(LOOM_ERR_INVALID, "pad: %d padding values for a %d-d tensor (at most two per dim)", npad, nd);
    return NULL;
  }
  if (mode != PAD_CONSTANT) {
    if (k < 1 || k > 3 || (nd != k + 1 && nd != k + 2)) {
      core_set_error(LOOM_ERR_INVALID, "pad: %s padding of %d trailing dims needs a %d-d or %d-d input, got %s "
                     "(1 to 3 dims are padded)", mname, k, k + 1, k + 2, loom_shape_str(x->shape));
      return NULL;
    }
    if (value != 0) {
      core_set_error(LOOM_ERR_INVALID, "pad: mode '%s' takes no value (got %g)", mname, value);
      return NULL;
    }
  }
  loom_tensor *y = (loom_tensor *)x;
  for (int i = 0; i < k && y; i++) {
    int d = nd - 1 - i;
    int64_t l = pad[2 * i], r = pad[2 * i + 1];
    if (y->shape.d[d] + l + r < 0) {
      core_set_error(LOOM_ERR_INVALID, "pad: padding (%lld, %lld) gives dim %d of %s a negative size", (long long)l,
                     (long long)r, d, loom_shape_str(x->shape));
      return NULL;
    }
    if (mode == PAD_CONSTANT) {
      y = pad_constant(y, d, l, r, value);
    } else if (l || r) {
      loom_tensor *idx = pad_index(mname, mode, y, d, l, r);
      y = idx ? loom_index_select(y, d, idx) : NULL;
    }
  }
  return y && loom_shares_storage(y, x) ? loom_clone(y) : y; /* always a new tensor */
}

loom_tensor *loom_pad(const loom_tensor *x, const int64_t *pad, int npad, const char *mode, double value) {
  CORE_CHECK_NULL1("pad", x);
  loom_scope_begin();
  loom_tensor *y = loom_keep(pad_body(x, pad, npad, mode, value));
  loom_scope_end();
  return y;
}
