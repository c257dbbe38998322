/* torch.nn.init: in-place initialisers. Random values come from the tensor's
 * device generator (loom_rand / loom_randn), are drawn in f32 (f64 for f64
 * tensors, so CPU and CUDA draw the same numbers for f32/f16/bf16) and cast
 * into the tensor by loom_copy_, which writes through views and records no
 * autograd. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/nn_init.h"
#include "loom/ops.h"
#include "loom/autograd.h"
#include "core/kernel.h"
#include "core/tensor_impl.h"

/* Common checks: non-NULL, floating dtype (random fills need one). */
static int check_tensor(const char *op, const loom_tensor *t, bool need_float) {
  if (!t) return core_null_error("init.%s: tensor is NULL", op);
  if (need_float && !loom_dtype_is_float(t->dtype))
    return core_set_error(LOOM_ERR_INVALID, "init.%s: expected a floating tensor (f32, f64, f16, bf16), got %s", op,
                          loom_dtype_name(t->dtype));
  return LOOM_OK;
}

static loom_dtype work_dtype(const loom_tensor *t) { return t->dtype == LOOM_F64 ? LOOM_F64 : LOOM_F32; }

/* t = lo + u * (hi - lo) (uniform) or t = lo + z * hi (normal; lo = mean, hi = std).
 * A contiguous tensor of the working dtype is drawn into directly; others
 * through a temporary. */
static int draw(loom_tensor *t, bool normal, double lo, double hi) {
  if (core_numel(t) == 0) return LOOM_OK;
  core_op op = normal ? CORE_OP_normal : CORE_OP_uniform;
  if (core_is_contiguous(t) && t->dtype == work_dtype(t)) return core_random_fill(t, op, lo, hi, 0, 0);
  loom_no_grad_begin();
  loom_scope_begin();
  loom_tensor *r = core_new(t->shape, work_dtype(t), t->storage->device);
  int st = r ? core_random_fill(r, op, lo, hi, 0, 0) : (int)loom_last_status();
  if (st == LOOM_OK) st = loom_copy_(t, r);
  loom_scope_end();
  loom_no_grad_end();
  return st;
}

int loom_init_uniform_(loom_tensor *t, double a, double b) {
  int st = check_tensor("uniform_", t, true);
  if (st) return st;
  if (!(a <= b) || !isfinite(a) || !isfinite(b))
    return core_set_error(LOOM_ERR_INVALID, "init.uniform_: expected finite a <= b, got a = %g, b = %g", a, b);
  return draw(t, false, a, b);
}

int loom_init_normal_(loom_tensor *t, double mean, double std) {
  int st = check_tensor("normal_", t, true);
  if (st) return st;
  if (!(std >= 0) || !isfinite(std) || !isfinite(mean))
    return core_set_error(LOOM_ERR_INVALID, "init.normal_: expected finite mean and std >= 0, got mean = %g, std = %g",
                          mean, std);
  return draw(t, true, mean, std);
}

/* Like torch.nn.init.constant_, integer and bool tensors are allowed. */
int loom_init_constant_(loom_tensor *t, double value) {
  int st = check_tensor("constant_", t, false);
  if (st) return st;
  if (core_numel(t) == 0) return LOOM_OK;
  return loom_fill_(t, value);
}
int loom_init_zeros_(loom_tensor *t) {
  int st = check_tensor("zeros_", t, false);
  return st ? st : loom_init_constant_(t, 0.0);
}
int loom_init_ones_(loom_tensor *t) {
  int st = check_tensor("ones_", t, false);
  return st ? st : loom_init_constant_(t, 1.0);
}

static int fans(const char *op, const loom_tensor *t, int64_t *fan_in, int64_t *fan_out) {
  if (!t) return core_null_error("init.%s: tensor is NULL", op);
  if (t->shape.ndim < 2)
    return core_set_error(LOOM_ERR_INVALID,
                          "init.%s: fan in and fan out need a tensor with at least 2 dimensions, got shape %s", op,
                          loom_shape_str(t->shape));
  int64_t receptive = 1;
  for (int i = 2; i < t->shape.ndim; i++) receptive *= t->shape.d[i];
  if (fan_in) *fan_in = t->shape.d[1] * receptive;
  if (fan_out) *fan_out = t->shape.d[0] * receptive;
  return LOOM_OK;
}

int loom_init_fans(const loom_tensor *t, int64_t *fan_in, int64_t *fan_out) {
  return fans("fans", t, fan_in, fan_out);
}

double loom_init_gain(const char *nonlinearity, double param) {
  if (!nonlinearity) {
    core_set_error(LOOM_ERR_INVALID, "init.calculate_gain: nonlinearity is NULL");
    return NAN;
  }
  static const char *const unit[] = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                                     "conv_transpose2d", "conv_transpose3d", "sigmoid"};
  for (size_t i = 0; i < sizeof unit / sizeof unit[0]; i++)
    if (!strcmp(nonlinearity, unit[i])) return 1.0;
  if (!strcmp(nonlinearity, "tanh")) return 5.0 / 3.0;
  if (!strcmp(nonlinearity, "relu")) return sqrt(2.0);
  if (!strcmp(nonlinearity, "selu")) return 3.0 / 4.0; /* PyTorch's choice for self-normalising nets */
  if (!strcmp(nonlinearity, "leaky_relu")) {
    double slope = isnan(param) ? 0.01 : param;
    if (!isfinite(slope)) {
      core_set_error(LOOM_ERR_INVALID, "init.calculate_gain: negative_slope %g is not a valid number", slope);
      return NAN;
    }
    return sqrt(2.0 / (1.0 + slope * slope));
  }
  core_set_error(LOOM_ERR_INVALID,
                 "init.calculate_gain: unsupported nonlinearity \"%s\" (expected linear, conv1d, conv2d, conv3d, "
                 "conv_transpose1d/2d/3d, sigmoid, tanh, relu, leaky_relu or selu)",
                 nonlinearity);
  return NAN;
}

static int check_gain(const char *op, double gain) {
  if (!isfinite(gain)) return core_set_error(LOOM_ERR_INVALID, "init.%s: gain %g is not finite", op, gain);
  return LOOM_OK;
}

int loom_init_xavier_uniform_(loom_tensor *t, double gain) {
  int64_t fi = 0, fo = 0;
  int st = fans("xavier_uniform_", t, &fi, &fo);
  if (!st) st = check_tensor("xavier_uniform_", t, true);
  if (!st) st = check_gain("xavier_uniform_", gain);
  if (st) return st;
  if (fi + fo == 0) return LOOM_OK; /* zero-element tensor: nothing to fill */
  double bound = sqrt(3.0) * gain * sqrt(2.0 / (double)(fi + fo));
  return draw(t, false, -bound, bound);
}

int loom_init_xavier_normal_(loom_tensor *t, double gain) {
  int64_t fi = 0, fo = 0;
  int st = fans("xavier_normal_", t, &fi, &fo);
  if (!st) st = check_tensor("xavier_normal_", t, true);
  if (!st) st = check_gain("xavier_normal_", gain);
  if (st) return st;
  if (fi + fo == 0) return LOOM_OK;
  return draw(t, true, 0.0, gain * sqrt(2.0 / (double)(fi + fo)));
}

/* std = gain(nonlinearity, a) / sqrt(fan); NULL nonlinearity = "leaky_relu"
 * (PyTorch's default). Returns NAN after recording an error. */
static double kaiming_std(const char *op, const loom_tensor *t, double a, loom_fan_mode mode, const char *nl) {
  int64_t fi = 0, fo = 0;
  if (fans(op, t, &fi, &fo) || check_tensor(op, t, true)) return NAN;
  if (mode != LOOM_FAN_IN && mode != LOOM_FAN_OUT) {
    core_set_error(LOOM_ERR_INVALID, "init.%s: mode must be LOOM_FAN_IN or LOOM_FAN_OUT, got %d", op, (int)mode);
    return NAN;
  }
  double gain = loom_init_gain(nl ? nl : "leaky_relu", a);
  if (isnan(gain)) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", loom_last_error()); /* the error buffer is rewritten below */
    core_set_error(loom_last_status(), "init.%s: %s", op, msg);
    return NAN;
  }
  int64_t fan = mode == LOOM_FAN_IN ? fi : fo;
  if (core_numel(t) == 0) return 0.0; /* nothing to fill; PyTorch skips too */
  return gain / sqrt((double)fan);
}

int loom_init_kaiming_uniform_(loom_tensor *t, double a, loom_fan_mode mode, const char *nonlinearity) {
  double std = kaiming_std("kaiming_uniform_", t, a, mode, nonlinearity);
  if (isnan(std)) return loom_last_status();
  double bound = sqrt(3.0) * std;
  return draw(t, false, -bound, bound);
}

int loom_init_kaiming_normal_(loom_tensor *t, double a, loom_fan_mode mode, const char *nonlinearity) {
  double std = kaiming_std("kaiming_normal_", t, a, mode, nonlinearity);
  if (isnan(std)) return loom_last_status();
  return draw(t, true, 0.0, std);
}

/* ---- orthogonal ----
 * Householder QR of the column-major m x n matrix a (m >= n), in place: on
 * return the reduced Q (m x n) is in q and the signs of diag(R) in sign[n]; beta[n] is workspace.
 * Done on the host in double: init runs once, and QR is not a Loom op. */
static void householder_qr(double *a, int64_t m, int64_t n, double *q, double *sign, double *beta) {
  double *v = a; /* column k of a below the diagonal becomes the reflector v_k */
  for (int64_t k = 0; k < n; k++) {
    double *x = a + k * m + k;
    int64_t len = m - k;
    double norm = 0;
    for (int64_t i = 0; i < len; i++) norm += x[i] * x[i];
    norm = sqrt(norm);
    if (norm == 0) { /* a zero column (probability 0): identity reflector */
      beta[k] = 0;
      sign[k] = 1;
      continue;
    }
    double alpha = x[0] > 0 ? -norm : norm; /* R[k][k]; this sign avoids cancellation */
    sign[k] = alpha > 0 ? 1 : -1;
    x[0] -= alpha;                        /* v = x - alpha e1 */
    double vv = 0;
    for (int64_t i = 0; i < len; i++) vv += x[i] * x[i];
    beta[k] = 2.0 / vv;                   /* H = I - beta v v^T */
    for (int64_t j = k + 1; j < n; j++) { /* apply H to the remaining columns */
      double *c = a + j * m + k, dot = 0;
      for (int64_t i = 0; i < len; i++) dot += x[i] * c[i];
      dot *= beta[k];
      for (int64_t i = 0; i < len; i++) c[i] -= dot * x[i];
    }
  }
  /* Q = H_0 ... H_{n-1} I[:, :n], applied right to left. */
  memset(q, 0, (size_t)(m * n) * sizeof *q);
  for (int64_t j = 0; j < n; j++) q[j * m + j] = 1;
  for (int64_t k = n - 1; k >= 0; k--) {
    if (beta[k] == 0) continue;
    const double *x = v + k * m + k;
    int64_t len = m - k;
    for (int64_t j = 0; j < n; j++) {
      double *c = q + j * m + k, dot = 0;
      for (int64_t i = 0; i < len; i++) dot += x[i] * c[i];
      dot *= beta[k];
      for (int64_t i = 0; i < len; i++) c[i] -= dot * x[i];
    }
  }
}

int loom_init_orthogonal_(loom_tensor *t, double gain) {
  int st = check_tensor("orthogonal_", t, true);
  if (st) return st;
  if (t->shape.ndim < 2)
    return core_set_error(LOOM_ERR_INVALID, "init.orthogonal_: expected a tensor with at least 2 dimensions, got shape %s",
                          loom_shape_str(t->shape));
  if ((st = check_gain("orthogonal_", gain))) return st;
  int64_t numel = core_numel(t);
  if (numel == 0) return LOOM_OK;
  int64_t rows = t->shape.d[0], cols = numel / rows;
  bool wide = rows < cols; /* PyTorch factors the transpose of a wide matrix */
  int64_t m = wide ? cols : rows, n = wide ? rows : cols;
  size_t bytes = (size_t)numel * sizeof(double);
  double *g = malloc(bytes), *a = malloc(bytes), *q = malloc(bytes), *sign = malloc(2 * (size_t)n * sizeof(double));
  if (!g || !a || !q || !sign) {
    free(g), free(a), free(q), free(sign);
    return core_set_error(LOOM_ERR_OOM, "init.orthogonal_: cannot allocate %zu bytes of host memory", 3 * bytes);
  }
  loom_no_grad_begin();
  loom_scope_begin();
  /* the normal matrix [rows, cols] from t's device generator */
  loom_tensor *z = loom_randn(LOOM_SHAPE(rows, cols), work_dtype(t), t->storage->device);
  if (z) z = loom_to(z, loom_cpu(), LOOM_F64);
  st = z ? loom_to_host(z, g, bytes) : (int)loom_last_status();
  if (!st) {
    /* a (column-major m x n) = G, or G^T when wide: both are G's row-major
     * buffer read the right way round */
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) {
        if (wide) a[c + r * m] = g[r * cols + c]; /* a[i = c][j = r] */
        else a[r + c * m] = g[r * cols + c];      /* a[i = r][j = c] */
      }
    householder_qr(a, m, n, q, sign, sign + n);
    /* W = Q diag(sign) (or its transpose), times gain, row-major [rows, cols] */
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++)
        g[r * cols + c] = gain * (wide ? q[c + r * m] * sign[r] : q[r + c * m] * sign[c]);
    loom_tensor *w = loom_from_host(g, LOOM_SHAPE(rows, cols), LOOM_F64, loom_cpu());
    if (w) w = loom_reshape(w, t->shape);
    st = w ? loom_copy_(t, w) : (int)loom_last_status();
  }
  loom_scope_end();
  loom_no_grad_end();
  free(g), free(a), free(q), free(sign);
  return st;
}
