/* 3-d convolution (F.conv3d), composed from the 2-d one: the input is padded
 * once with loom_pad (zeros or the padding_mode, 'same' included), then for
 * each depth tap kd the depth slices it reads (a strided view, every output
 * depth at once) are stacked into the batch and convolved with weight[:, :,
 * kd]; the kd results add up. So it runs, and differentiates, wherever conv2d
 * does (OpenBLAS im2col on the CPU, cuDNN on CUDA), with kd 2-d calls and one
 * copy of the input per tap. */
#include <string.h>

#include "core/autograd_impl.h"
#include "core/conv_impl.h"

typedef struct conv3d_params {
  int64_t k[3], s[3], d[3], lo[3], hi[3]; /* {d, h, w}; pads before and after */
  int groups;
  const char *mode;
} conv3d_params;

static bool read_opts(const char *who, const int64_t *k, const loom_conv3d_opts *o, conv3d_params *c) {
  static const loom_conv3d_opts zero;
  if (!o) o = &zero;
  c->mode = core_conv_padding_mode(o->padding_mode);
  if (!c->mode) {
    core_set_error(LOOM_ERR_INVALID, "%s: unknown padding_mode '%s' (expected zeros, reflect, replicate or circular)",
                   who, o->padding_mode);
    return false;
  }
  c->groups = o->groups ? o->groups : 1;
  for (int i = 0; i < 3; i++) {
    if (o->stride[i] < 0 || o->padding[i] < 0 || o->dilation[i] < 0 || o->groups < 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: stride, padding, dilation and groups must not be negative "
                     "(got stride %d, padding %d, dilation %d, groups %d in spatial dim %d)", who, o->stride[i],
                     o->padding[i], o->dilation[i], o->groups, i);
      return false;
    }
    c->k[i] = k[i], c->s[i] = o->stride[i] ? o->stride[i] : 1, c->d[i] = o->dilation[i] ? o->dilation[i] : 1;
    if (o->same_padding) {
      if (c->s[i] != 1) {
        core_set_error(LOOM_ERR_INVALID, "%s: padding='same' needs stride 1 (got %lld)", who, (long long)c->s[i]);
        return false;
      }
      int64_t total = c->d[i] * (k[i] - 1);
      c->lo[i] = total / 2, c->hi[i] = total - total / 2; /* an odd total puts the extra one at the end */
    } else {
      c->lo[i] = c->hi[i] = o->padding[i];
    }
  }
  return true;
}

bool core_conv3d_check_opts(const char *who, const loom_conv3d_opts *opts) {
  const int64_t k[3] = {1, 1, 1};
  conv3d_params c;
  return read_opts(who, k, opts, &c);
}

static bool check_tensors(const char *who, const loom_tensor *x, const loom_tensor *w, const loom_tensor *b,
                          int groups) {
  int nd = x->shape.ndim;
  if ((nd != 4 && nd != 5) || !loom_dtype_is_float(x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a floating input [N, C, D, H, W] or [C, D, H, W], got %s %s", who,
                   loom_dtype_name(x->dtype), loom_shape_str(x->shape));
    return false;
  }
  int64_t C = x->shape.d[nd - 4], Cout = w->shape.d[0];
  if (w->shape.ndim != 5 || w->dtype != x->dtype || w->shape.d[1] * groups != C || Cout % groups) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected weight [Cout, C / groups = %lld, kd, kh, kw] of %s with Cout "
                   "divisible by groups %d, got %s %s", who, (long long)(C / groups), loom_dtype_name(x->dtype),
                   groups, loom_dtype_name(w->dtype), loom_shape_str(w->shape));
    return false;
  }
  if (C % groups) {
    core_set_error(LOOM_ERR_INVALID, "%s: %lld input channels are not divisible by groups %d", who, (long long)C,
                   groups);
    return false;
  }
  if (b && (b->shape.ndim != 1 || b->shape.d[0] != Cout || b->dtype != x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected bias [%lld] of %s, got %s %s", who, (long long)Cout,
                   loom_dtype_name(x->dtype), loom_dtype_name(b->dtype), loom_shape_str(b->shape));
    return false;
  }
  return core_check_same_device(who, x, w) && (!b || core_check_same_device(who, x, b));
}

static loom_tensor *conv3d_body(const char *who, const loom_tensor *x0, const loom_tensor *w, const loom_tensor *b,
                                const loom_conv3d_opts *opts) {
  conv3d_params c;
  const int64_t k[3] = {w->shape.ndim == 5 ? w->shape.d[2] : 1, w->shape.ndim == 5 ? w->shape.d[3] : 1,
                        w->shape.ndim == 5 ? w->shape.d[4] : 1};
  if (!read_opts(who, k, opts, &c) || !check_tensors(who, x0, w, b, c.groups)) return NULL;
  bool unbatched = x0->shape.ndim == 4;
  loom_tensor *x = unbatched ? loom_unsqueeze(x0, 0) : (loom_tensor *)x0;
  const int64_t pad[6] = {c.lo[2], c.hi[2], c.lo[1], c.hi[1], c.lo[0], c.hi[0]};
  bool padded = false;
  for (int i = 0; i < 6; i++) padded = padded || pad[i];
  if (padded) x = loom_pad(x, pad, 6, strcmp(c.mode, "zeros") == 0 ? "constant" : c.mode, 0);
  if (!x) return NULL;
  int64_t N = x->shape.d[0], C = x->shape.d[1], o[3];
  for (int i = 0; i < 3; i++) {
    int64_t span = c.d[i] * (c.k[i] - 1) + 1;
    o[i] = x->shape.d[2 + i] >= span ? (x->shape.d[2 + i] - span) / c.s[i] + 1 : 0;
    if (o[i] < 1) {
      core_set_error(LOOM_ERR_INVALID, "%s: input %s is too small for kernel %lldx%lldx%lld (dilation %lld, %lld, "
                     "%lld) after padding", who, loom_shape_str(x0->shape), (long long)c.k[0], (long long)c.k[1],
                     (long long)c.k[2], (long long)c.d[0], (long long)c.d[1], (long long)c.d[2]);
      return NULL;
    }
  }
  loom_conv_opts o2 = {.stride = {(int)c.s[1], (int)c.s[2]}, .dilation = {(int)c.d[1], (int)c.d[2]},
                       .groups = c.groups};
  static const int to_depth_major[] = {0, 2, 1, 3, 4};
  loom_tensor *acc = NULL;
  for (int64_t kd = 0; kd < c.k[0]; kd++) {
    int64_t start = kd * c.d[0];
    loom_tensor *xs = loom_slice(x, 2, start, start + (o[0] - 1) * c.s[0] + 1, c.s[0]); /* [N, C, Do, Hp, Wp] */
    xs = loom_reshape(loom_contiguous(loom_permute(xs, to_depth_major, 5)),
                      LOOM_SHAPE(N * o[0], C, x->shape.d[3], x->shape.d[4]));
    loom_tensor *y = loom_conv2d(xs, loom_select(w, 2, kd), kd == 0 ? b : NULL, &o2); /* [N Do, Cout, Ho, Wo] */
    acc = acc ? loom_add(acc, y) : y;
    if (!acc) return NULL;
  }
  int64_t Cout = w->shape.d[0];
  loom_tensor *y = loom_contiguous(loom_permute(loom_reshape(acc, LOOM_SHAPE(N, o[0], Cout, o[1], o[2])),
                                                to_depth_major, 5));
  return unbatched ? loom_squeeze(y, 0) : y;
}

loom_tensor *core_conv3d(const char *who, const loom_tensor *x, const loom_tensor *w, const loom_tensor *b,
                         const loom_conv3d_opts *opts) {
  if (!x || !w) {
    core_null_error("%s: %s is NULL", who, x ? "weight" : "input");
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *y = loom_keep(conv3d_body(who, x, w, b, opts));
  loom_scope_end();
  return y;
}

loom_tensor *loom_conv3d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                         const loom_conv3d_opts *opts) {
  return core_conv3d("conv3d", x, weight, bias, opts);
}
