/* Convolution op definitions: conv1d, conv2d, conv_transpose1d/2d. One kernel
 * triple (conv2d, conv2d_backward_input, conv2d_backward_weight; see
 * src/core/ops_conv.def) serves them all: 1-d runs with H = 1, and the
 * transposed convolution is the convolution's input gradient (its backward
 * uses the forward conv and the weight gradient with roles swapped). The bias
 * is added with core ops, so autograd sums its gradient over N, H, W. */
#include <stdio.h>
#include <string.h>

#include "core/autocast.h"
#include "core/autograd_impl.h"
#include "core/conv_impl.h"

/* Conv attributes (ops_conv.def): stride, padding, dilation pairs and groups. */
typedef struct conv_params {
  int64_t s[2], p[2], d[2], op[2], g, size[2];
  bool same;
  const char *mode; /* padding_mode: "zeros" or an F.pad mode */
} conv_params;

const char *core_conv_padding_mode(const char *mode) {
  static const char *const names[] = {"zeros", "reflect", "replicate", "circular"};
  if (!mode) return names[0];
  for (int i = 0; i < 4; i++)
    if (strcmp(mode, names[i]) == 0) return names[i];
  return NULL;
}

static void to_attrs(const conv_params *c, core_attrs *a) {
  memset(a, 0, sizeof *a);
  a->i[0] = c->s[0], a->i[1] = c->s[1], a->i[2] = c->p[0], a->i[3] = c->p[1];
  a->i[4] = c->d[0], a->i[5] = c->d[1], a->i[6] = c->g;
}

/* A new contiguous tensor of shape s from one kernel launch over (a, b). */
static loom_tensor *launch(core_op op, const core_attrs *at, const loom_tensor *a, const loom_tensor *b,
                           loom_shape s) {
  loom_tensor *ca = loom_contiguous(a), *cb = loom_contiguous(b);
  if (!ca || !cb) return NULL;
  loom_tensor *out = core_new(s, a->dtype, a->storage->device);
  if (!out) return NULL;
  core_kctx k = {op, 2, 1, {ca, cb}, {out}, *at, NULL};
  return core_launch(&k) == LOOM_OK ? out : NULL;
}

static void conv_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *w = n->saved[1];
  if (core_needs(n, 0)) gin[0] = launch(CORE_OP_conv2d_backward_input, &n->a, g, w, x->shape);
  if (core_needs(n, 1)) gin[1] = launch(CORE_OP_conv2d_backward_weight, &n->a, g, x, w->shape);
}

/* y = conv_transpose(x, w) = conv2d_backward_input(x, w): dx = conv2d(g, w),
 * dw = conv2d_backward_weight(x as the output gradient, g as the input). */
static void conv_transpose_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *w = n->saved[1];
  if (core_needs(n, 0)) gin[0] = launch(CORE_OP_conv2d, &n->a, g, w, x->shape);
  if (core_needs(n, 1)) gin[1] = launch(CORE_OP_conv2d_backward_weight, &n->a, x, g, w->shape);
}

/* Reads opts into c; false + error for bad values. */
static bool read_opts(const char *who, int dims, bool transpose, const loom_conv_opts *o, conv_params *c) {
  static const loom_conv_opts zero;
  if (!o) o = &zero;
  memset(c, 0, sizeof *c);
  c->s[0] = c->s[1] = c->d[0] = c->d[1] = 1;
  for (int i = 0; i < dims; i++) {
    int j = 2 - dims + i; /* 1-d fills the W slot */
    if (o->stride[i] < 0 || o->padding[i] < 0 || o->dilation[i] < 0 || o->output_padding[i] < 0 ||
        o->output_size[i] < 0) {
      core_set_error(LOOM_ERR_INVALID, "%s: stride, padding, dilation, output_padding and output_size must not be "
                     "negative (got stride %d, padding %d, dilation %d, output_padding %d, output_size %lld)", who,
                     o->stride[i], o->padding[i], o->dilation[i], o->output_padding[i], (long long)o->output_size[i]);
      return false;
    }
    c->s[j] = o->stride[i] ? o->stride[i] : 1;
    c->p[j] = o->padding[i];
    c->d[j] = o->dilation[i] ? o->dilation[i] : 1;
    c->op[j] = o->output_padding[i];
    c->size[j] = o->output_size[i];
    if (!transpose && (c->op[j] || c->size[j])) {
      core_set_error(LOOM_ERR_INVALID, "%s: output_padding and output_size are only for transposed convolutions", who);
      return false;
    }
    if (c->op[j] >= c->s[j] && c->op[j] >= c->d[j]) {
      core_set_error(LOOM_ERR_INVALID, "%s: output_padding (%lld) must be smaller than stride (%lld) or dilation "
                     "(%lld)", who, (long long)c->op[j], (long long)c->s[j], (long long)c->d[j]);
      return false;
    }
    if (o->same_padding && c->s[j] != 1) {
      core_set_error(LOOM_ERR_INVALID, "%s: padding='same' is not supported for strided convolutions (stride %lld)",
                     who, (long long)c->s[j]);
      return false;
    }
  }
  if (o->groups < 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: groups must be positive, got %d", who, o->groups);
    return false;
  }
  c->g = o->groups ? o->groups : 1;
  c->same = o->same_padding;
  if (c->same && transpose) {
    core_set_error(LOOM_ERR_INVALID, "%s: padding='same' is not supported for transposed convolutions", who);
    return false;
  }
  c->mode = core_conv_padding_mode(o->padding_mode);
  if (!c->mode) {
    core_set_error(LOOM_ERR_INVALID, "%s: unknown padding_mode '%s' (expected zeros, reflect, replicate or circular)",
                   who, o->padding_mode);
    return false;
  }
  if (transpose && strcmp(c->mode, "zeros") != 0) {
    core_set_error(LOOM_ERR_INVALID, "%s: only padding_mode 'zeros' is supported for transposed convolutions, got "
                   "'%s'", who, c->mode);
    return false;
  }
  return true;
}

bool core_conv_check_opts(const char *who, int dims, bool transpose, const loom_conv_opts *opts) {
  conv_params c;
  return read_opts(who, dims, transpose, opts, &c);
}

static bool check_tensors(const char *who, int dims, const loom_tensor *x, const loom_tensor *w,
                          const loom_tensor *b) {
  static const char *const want[] = {"", "[N, C, L] or [C, L]", "[N, C, H, W] or [C, H, W]"};
  if (x->shape.ndim != dims + 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input %s, got %s", who, want[dims], loom_shape_str(x->shape));
    return false;
  }
  if (w->shape.ndim != dims + 2) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected a %d-d weight, got %s", who, dims + 2, loom_shape_str(w->shape));
    return false;
  }
  if (!loom_dtype_is_float(x->dtype) || x->dtype != w->dtype || (b && b->dtype != x->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "%s: input, weight and bias must share one floating dtype, got %s, %s, %s", who,
                   loom_dtype_name(x->dtype), loom_dtype_name(w->dtype), b ? loom_dtype_name(b->dtype) : "none");
    return false;
  }
  loom_device dx = x->storage->device;
  if (!loom_device_equal(dx, w->storage->device) || (b && !loom_device_equal(dx, b->storage->device))) {
    core_set_error(LOOM_ERR_INVALID, "%s: input is on %s but weight is on %s%s%s", who, loom_device_name(dx),
                   loom_device_name(w->storage->device), b ? " and bias on " : "",
                   b ? loom_device_name(b->storage->device) : "");
    return false;
  }
  return true;
}

/* Output size along one dim, or -1 + error when the kernel does not fit. */
static int64_t out_size(const char *who, bool transpose, int64_t in, int64_t k, const conv_params *c, int j) {
  int64_t span = c->d[j] * (k - 1) + 1;
  if (transpose) {
    int64_t o = (in - 1) * c->s[j] - 2 * c->p[j] + span;
    if (c->size[j] && (c->size[j] < o || c->size[j] >= o + c->s[j])) {
      core_set_error(LOOM_ERR_INVALID, "%s: requested output_size %lld, but valid sizes for input size %lld range "
                     "from %lld to %lld", who, (long long)c->size[j], (long long)in, (long long)o,
                     (long long)(o + c->s[j] - 1));
      return -1;
    }
    o = c->size[j] ? c->size[j] : o + c->op[j];
    if (o <= 0) core_set_error(LOOM_ERR_INVALID, "%s: output size %lld is too small (input %lld)", who, (long long)o,
                               (long long)in);
    return o > 0 ? o : -1;
  }
  if (in + 2 * c->p[j] < span) {
    core_set_error(LOOM_ERR_INVALID, "%s: kernel size %lld (dilated %lld) is larger than the padded input size %lld",
                   who, (long long)k, (long long)span, (long long)(in + 2 * c->p[j]));
    return -1;
  }
  return (in + 2 * c->p[j] - span) / c->s[j] + 1;
}

/* padding='same': symmetric padding total / 2; an odd total gets one more
 * zero row/column at the end, added to x here (recorded, so differentiable). */
static loom_tensor *pad_same(loom_tensor *x, const loom_tensor *w, conv_params *c) {
  for (int j = 0; j < 2 && x; j++) {
    int64_t total = c->d[j] * (w->shape.d[2 + j] - 1);
    c->p[j] = total / 2;
    if (total % 2) {
      loom_shape zs = x->shape;
      zs.d[2 + j] = 1;
      loom_tensor *parts[2] = {x, loom_zeros(zs, x->dtype, x->storage->device)};
      x = parts[1] ? loom_cat(parts, 2, 2 + j) : NULL;
    }
  }
  return x;
}

/* padding_mode reflect / replicate / circular: x padded by F.pad (padding on
 * both sides; 'same' puts an odd extra at the end), then a conv without padding. */
static loom_tensor *pad_mode(const char *who, loom_shape in, loom_tensor *x, const loom_tensor *w, conv_params *c) {
  int64_t pad[4];
  for (int j = 1, k = 0; j >= 0; j--, k += 2) { /* x [N, C, H, W]: W first */
    int64_t total = c->same ? c->d[j] * (w->shape.d[2 + j] - 1) : 2 * c->p[j];
    pad[k] = total / 2, pad[k + 1] = total - total / 2;
    c->p[j] = 0;
  }
  c->same = false;
  loom_tensor *y = loom_pad(x, pad, 4, c->mode, 0);
  if (!y) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", loom_last_error());
    core_set_error(loom_last_status(), "%s: padding_mode '%s' with input %s: %s", who, c->mode,
                   loom_shape_str(in), msg);
  }
  return y;
}

static loom_tensor *conv_body(const char *who, int dims, bool transpose, const loom_tensor *x0,
                              const loom_tensor *w0, const loom_tensor *b0, const loom_conv_opts *opts) {
  conv_params c;
  if (!read_opts(who, dims, transpose, opts, &c)) return NULL;
  loom_tensor *x = core_autocast_low(x0), *w = core_autocast_low(w0), *b = b0 ? core_autocast_low(b0) : NULL;
  if (!x || !w || (b0 && !b)) return NULL;
  bool unbatched = x->shape.ndim == dims + 1;
  if (unbatched) x = loom_unsqueeze(x, 0);
  if (!x || !check_tensors(who, dims, x, w, b)) return NULL;
  if (dims == 1) { /* [N, C, L] -> [N, C, 1, L] */
    x = loom_unsqueeze(x, 2);
    w = loom_unsqueeze(w, 2);
    if (!x || !w) return NULL;
  }
  const int64_t N = x->shape.d[0], C = x->shape.d[1];
  const int64_t wo = w->shape.d[0], wi = w->shape.d[1], kh = w->shape.d[2], kw = w->shape.d[3];
  int64_t Cout = transpose ? wi * c.g : wo;
  if (C != (transpose ? wo : wi * c.g) || (transpose ? C : wo) % c.g != 0 || kh < 1 || kw < 1) {
    if (transpose)
      core_set_error(LOOM_ERR_INVALID, "%s: expected input with C = %lld (weight %s, groups %lld), got %s", who,
                     (long long)wo, loom_shape_str(w0->shape), (long long)c.g, loom_shape_str(x0->shape));
    else
      core_set_error(LOOM_ERR_INVALID, "%s: expected input with C = %lld (weight %s, groups %lld), got %s%s", who,
                     (long long)(wi * c.g), loom_shape_str(w0->shape), (long long)c.g, loom_shape_str(x0->shape),
                     wo % c.g ? "; out channels must divide by groups" : "");
    return NULL;
  }
  if (b && (b->shape.ndim != 1 || b->shape.d[0] != Cout)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected bias [%lld], got %s", who, (long long)Cout, loom_shape_str(b->shape));
    return NULL;
  }
  if (strcmp(c.mode, "zeros") != 0 && !(x = pad_mode(who, x0->shape, x, w, &c))) return NULL;
  if (c.same && !(x = pad_same(x, w, &c))) return NULL;
  int64_t Ho = out_size(who, transpose, x->shape.d[2], kh, &c, 0);
  int64_t Wo = Ho < 0 ? -1 : out_size(who, transpose, x->shape.d[3], kw, &c, 1);
  if (Wo < 0) return NULL;
  /* output_padding >= stride (allowed below the dilation) makes a size no
   * convolution maps onto x: run the unpadded transposed conv, whose size
   * always fits, then crop the padding and zero-fill the rows past its end. */
  int64_t crop[4] = {0, 0, 0, 0}, out[2] = {Ho, Wo};
  if (transpose && (c.op[0] >= c.s[0] || c.op[1] >= c.s[1])) {
    for (int j = 0; j < 2; j++) {
      int64_t full = (x->shape.d[2 + j] - 1) * c.s[j] + c.d[j] * (w->shape.d[2 + j] - 1) + 1;
      crop[2 - 2 * j] = -c.p[j], crop[3 - 2 * j] = out[j] - (full - c.p[j]); /* W pads first */
      out[j] = full, c.p[j] = 0;
    }
  }
  core_attrs at;
  to_attrs(&c, &at);
  loom_shape ys = LOOM_SHAPE(N, Cout, out[0], out[1]);
  loom_tensor *y = launch(transpose ? CORE_OP_conv2d_backward_input : CORE_OP_conv2d, &at, x, w, ys);
  if (!y) return NULL;
  const loom_tensor *ins[2] = {x, w};
  if (core_grad_needed(2, ins)) {
    core_node *n = core_record(transpose ? "conv_transpose2d" : "conv2d", transpose ? conv_transpose_bw : conv_bw,
                               y, 2, ins);
    if (n) { /* NULL: out of host memory, y simply carries no history */
      n->a = at;
      core_save(n, x);
      core_save(n, w);
    }
  }
  if ((out[0] != Ho || out[1] != Wo) && !(y = loom_pad(y, crop, 4, NULL, 0))) return NULL;
  if (b) y = loom_add(y, loom_reshape(b, LOOM_SHAPE(1, Cout, 1, 1)));
  if (dims == 1) y = loom_squeeze(y, 2);
  if (unbatched) y = loom_squeeze(y, 0);
  return y;
}

loom_tensor *core_conv(const char *who, int dims, bool transpose, const loom_tensor *x, const loom_tensor *w,
                       const loom_tensor *b, const loom_conv_opts *opts) {
  CORE_CHECK_NULL1(who, x);
  CORE_CHECK_NULL1(who, w);
  loom_scope_begin();
  loom_tensor *y = loom_keep(conv_body(who, dims, transpose, x, w, b, opts));
  loom_scope_end();
  return y;
}

loom_tensor *loom_conv2d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                         const loom_conv_opts *opts) {
  return core_conv("conv2d", 2, false, x, weight, bias, opts);
}

loom_tensor *loom_conv1d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                         const loom_conv_opts *opts) {
  return core_conv("conv1d", 1, false, x, weight, bias, opts);
}

loom_tensor *loom_conv_transpose2d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                                   const loom_conv_opts *opts) {
  return core_conv("conv_transpose2d", 2, true, x, weight, bias, opts);
}

loom_tensor *loom_conv_transpose1d(const loom_tensor *x, const loom_tensor *weight, const loom_tensor *bias,
                                   const loom_conv_opts *opts) {
  return core_conv("conv_transpose1d", 1, true, x, weight, bias, opts);
}
