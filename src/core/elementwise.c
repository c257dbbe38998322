/* Elementwise ops: broadcasting, dtype promotion, kernels and gradients. */
#include <math.h>

#include "core/autograd_impl.h"

/* Launches an elementwise kernel: out of shape s and dtype out_dt, inputs
 * expanded (stride 0) to s. Inputs must already share dtype and device. */
static loom_tensor *launch_ew(core_op op, const core_attrs *a, loom_shape s, loom_dtype out_dt, int n,
                              const loom_tensor *const *ins) {
  loom_tensor *out = core_new(s, out_dt, ins[0]->storage->device);
  if (!out) return NULL;
  core_kctx k = {op, n, 1, {0}, {out}, {{0}, {0}}, NULL};
  if (a) k.a = *a;
  loom_status st = LOOM_OK;
  for (int i = 0; i < n && st == LOOM_OK; i++) {
    k.in[i] = core_expand_to(ins[i], s);
    if (!k.in[i]) st = loom_last_status();
  }
  if (st == LOOM_OK) st = core_launch(&k);
  for (int i = 0; i < n; i++) loom_release(k.in[i]);
  if (st != LOOM_OK) {
    core_untrack(out);
    loom_release(out);
    return NULL;
  }
  return out;
}

static bool is_cmp_or_logical(core_op op) {
  return (op >= CORE_OP_eq && op <= CORE_OP_logical_xor) || op == CORE_OP_logical_not;
}

/* ---- unary ---- */
static void neg_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { gin[0] = loom_neg(g); }
static void abs_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = loom_mul(g, loom_sign(n->saved[0]));
}
static void sign_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { gin[0] = loom_zeros_like(g); }
static void exp_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { gin[0] = loom_mul(g, n->saved[0]); }
static void log_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { gin[0] = loom_div(g, n->saved[0]); }
static void sqrt_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = loom_div(g, loom_mul_scalar(n->saved[0], 2));
}
static void rsqrt_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *y = n->saved[0];
  gin[0] = loom_mul(g, loom_mul_scalar(loom_mul(y, loom_mul(y, y)), -0.5));
}
static void sin_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { gin[0] = loom_mul(g, loom_cos(n->saved[0])); }
static void cos_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = loom_neg(loom_mul(g, loom_sin(n->saved[0])));
}
static void relu_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  gin[0] = core_relu_backward(n->saved[0], g);
}
static void sigmoid_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *y = n->saved[0];
  gin[0] = loom_mul(g, loom_mul(y, loom_add_scalar(loom_neg(y), 1)));
}
static void tanh_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *y = n->saved[0];
  gin[0] = loom_mul(g, loom_add_scalar(loom_neg(loom_mul(y, y)), 1));
}
/* PyTorch's clamp gradient: passes strictly inside the bounds (0 at a bound
 * and for NaN); an infinite bound is an open side, PyTorch's None. */
static void clamp_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0];
  double lo = n->a.f[0], hi = n->a.f[1];
  loom_tensor *in = NULL;
  if (lo != -INFINITY) in = loom_gt(x, loom_scalar_like(x, lo));
  if (hi != INFINITY) {
    loom_tensor *below = loom_lt(x, loom_scalar_like(x, hi));
    in = in ? loom_logical_and(in, below) : below;
  }
  gin[0] = in ? loom_mul(g, loom_to_dtype(in, g->dtype)) : core_alias(g);
}

typedef struct unary_def {
  core_op op;
  core_backward_fn bw;
  bool float_math;   /* integer inputs are promoted to f32 (exp, log, ...) */
  bool save_output;  /* else the input is saved */
} unary_def;

static loom_tensor *unary(const unary_def *u, const loom_tensor *x, const core_attrs *a) {
  const char *name = core_ops[u->op].name;
  CORE_CHECK_NULL1(name, x);
  loom_scope_begin();
  const loom_tensor *in = x;
  if (u->op == CORE_OP_logical_not) {
    if (x->dtype != LOOM_BOOL) in = loom_to_dtype(x, LOOM_BOOL);
  } else if (u->float_math && !loom_dtype_is_float(x->dtype)) {
    in = loom_to_dtype(x, LOOM_F32);
  } else if (x->dtype == LOOM_BOOL) {
    core_set_error(LOOM_ERR_INVALID, "%s: not defined for bool tensors", name);
    in = NULL;
  }
  loom_tensor *out = NULL;
  if (in) out = launch_ew(u->op, a, in->shape, is_cmp_or_logical(u->op) ? LOOM_BOOL : in->dtype, 1, &in);
  if (out && u->bw && loom_dtype_is_float(out->dtype) && core_grad_needed(1, &in)) {
    core_node *n = core_record(name, u->bw, out, 1, &in);
    core_save(n, u->save_output ? out : in);
    if (n && a) n->a = *a;
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

#define UNARY(fn, bwfn, floatmath, saveout)                                   \
  loom_tensor *loom_##fn(const loom_tensor *x) {                              \
    static const unary_def d = {CORE_OP_##fn, bwfn, floatmath, saveout};      \
    return unary(&d, x, NULL);                                                \
  }
UNARY(neg, neg_bw, false, false)
UNARY(abs, abs_bw, false, false)
UNARY(sign, sign_bw, false, false)
UNARY(exp, exp_bw, true, true)
UNARY(log, log_bw, true, false)
UNARY(sqrt, sqrt_bw, true, true)
UNARY(rsqrt, rsqrt_bw, true, true)
UNARY(sin, sin_bw, true, false)
UNARY(cos, cos_bw, true, false)
UNARY(relu, relu_bw, false, true)
UNARY(sigmoid, sigmoid_bw, true, true)
UNARY(tanh, tanh_bw, true, true)
UNARY(logical_not, NULL, false, false)

loom_tensor *loom_clamp(const loom_tensor *x, double lo, double hi) {
  static const unary_def d = {CORE_OP_clamp, clamp_bw, false, false};
  if (lo > hi) lo = hi; /* PyTorch's min(max(x, lo), hi): hi everywhere */
  if (isnan(lo) || isnan(hi)) {
    if (x && !loom_dtype_is_float(x->dtype)) {
      core_set_error(LOOM_ERR_INVALID, "clamp: a NaN bound on a %s tensor (PyTorch's result is a float NaN; "
                     "convert x to a float dtype first)", loom_dtype_name(x->dtype));
      return NULL;
    }
    lo = hi = NAN; /* NaN everywhere, gradient 0 */
  }
  core_attrs a = {{0}, {lo, hi}};
  return unary(&d, x, &a);
}

static int category(loom_dtype dt) { return dt == LOOM_BOOL ? 0 : loom_dtype_is_float(dt) ? 2 : 1; }

/* PyTorch's result type of two operands: a 0-d tensor decides the dtype only
 * when its category (bool < integer < float) is higher than the other's. */
static loom_dtype result_type(const loom_tensor *a, const loom_tensor *b) {
  bool a0 = a->shape.ndim == 0, b0 = b->shape.ndim == 0;
  if (a0 == b0) return loom_promote_types(a->dtype, b->dtype);
  const loom_tensor *dim = a0 ? b : a, *zero = a0 ? a : b;
  return category(zero->dtype) > category(dim->dtype) ? zero->dtype : dim->dtype;
}

/* PyTorch's gradient of clamp(x, lo, hi) with tensor bounds (saved x, lo, hi).
 * Where lo < hi: x gets it strictly inside, lo below, hi above, and a tie at
 * a bound is split between x and that bound. Where lo == hi, x gets it at the
 * bound. Where lo > hi (the result is hi), hi gets it. x keeps it where a
 * comparison with a bound is NaN; lo and hi get nothing there. */
static void clamp_tensor_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *x = n->saved[0], *lo = n->saved[1], *hi = n->saved[2];
  loom_tensor *ordered = loom_lt(lo, hi), *at_lo = loom_logical_and(loom_eq(x, lo), ordered);
  loom_tensor *at_hi = loom_logical_and(loom_eq(x, hi), ordered);
  loom_tensor *half = loom_scalar_like(g, 0.5), *one = loom_scalar_like(g, 1), *zero = loom_scalar_like(g, 0);
  if (core_needs(n, 0)) {
    loom_tensor *inside = loom_logical_not(loom_logical_or(loom_lt(x, lo), loom_gt(x, hi)));
    loom_tensor *w = loom_where(inside, loom_where(loom_logical_or(at_lo, at_hi), half, one), zero);
    gin[0] = core_sum_to(loom_mul(g, w), n->in_shape[0]);
  }
  loom_tensor *not_after = loom_le(lo, hi);
  if (core_needs(n, 1)) {
    loom_tensor *below = loom_logical_and(loom_lt(x, lo), not_after);
    loom_tensor *w = loom_where(below, one, loom_where(at_lo, half, zero));
    gin[1] = core_sum_to(loom_mul(g, w), n->in_shape[1]);
  }
  if (core_needs(n, 2)) {
    loom_tensor *above = loom_logical_or(loom_gt(lo, hi), loom_logical_and(loom_gt(x, hi), not_after));
    loom_tensor *w = loom_where(above, one, loom_where(at_hi, half, zero));
    gin[2] = core_sum_to(loom_mul(g, w), n->in_shape[2]);
  }
}

/* PyTorch's result type of x, lo and hi (the 0-d rule of result_type over three). */
static loom_dtype result_type3(const loom_tensor *const t[3]) {
  loom_dtype dims = LOOM_DTYPE_COUNT, zeros = LOOM_DTYPE_COUNT;
  for (int i = 0; i < 3; i++) {
    loom_dtype *acc = t[i]->shape.ndim == 0 ? &zeros : &dims;
    *acc = *acc == LOOM_DTYPE_COUNT ? t[i]->dtype : loom_promote_types(*acc, t[i]->dtype);
  }
  if (dims == LOOM_DTYPE_COUNT) return zeros;
  if (zeros == LOOM_DTYPE_COUNT) return dims;
  return category(zeros) > category(dims) ? zeros : dims;
}

loom_tensor *loom_clamp_tensor(const loom_tensor *x, const loom_tensor *lo, const loom_tensor *hi) {
  CORE_CHECK_NULL1("clamp", x);
  if (!lo && !hi) {
    core_set_error(LOOM_ERR_INVALID, "clamp: at least one of lo and hi must be a tensor (both are NULL)");
    return NULL;
  }
  const loom_tensor *all[3] = {x, lo ? lo : hi, hi ? hi : lo};
  loom_shape s1, s;
  if (!core_check_same_device("clamp", x, all[1]) || !core_check_same_device("clamp", x, all[2]) ||
      !core_broadcast_shapes("clamp", x->shape, all[1]->shape, &s1) ||
      !core_broadcast_shapes("clamp", s1, all[2]->shape, &s))
    return NULL;
  for (int i = 0; i < 3; i++)
    if (all[i]->dtype == LOOM_BOOL) {
      core_set_error(LOOM_ERR_INVALID, "clamp: not defined for bool tensors (%s)", i == 0 ? "x" : lo && i == 1 ? "lo" : "hi");
      return NULL;
    }
  if (!lo) return loom_minimum(x, hi);  /* one side: PyTorch's clamp_max / clamp_min, maximum's rule */
  if (!hi) return loom_maximum(x, lo);
  loom_dtype dt = result_type3(all);
  loom_scope_begin();
  const loom_tensor *ins[3];
  for (int i = 0; i < 3; i++) ins[i] = all[i]->dtype == dt ? all[i] : loom_to_dtype(all[i], dt);
  loom_tensor *out = NULL;
  if (ins[0] && ins[1] && ins[2]) {
    loom_no_grad_begin();
    out = loom_minimum(loom_maximum(ins[0], ins[1]), ins[2]);  /* NaN anywhere gives NaN; lo > hi gives hi */
    loom_no_grad_end();
  }
  if (out && !loom_shape_equal(out->shape, s)) out = loom_contiguous(loom_expand(out, s));
  if (out && loom_dtype_is_float(dt) && core_grad_needed(3, ins)) {
    core_node *n = core_record("clamp", clamp_tensor_bw, out, 3, ins);
    for (int i = 0; i < 3; i++) core_save(n, ins[i]);
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_square(const loom_tensor *x) { return loom_mul(x, x); }

/* ---- binary ---- */
static void add_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  if (core_needs(n, 0)) gin[0] = core_sum_to(g, n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = core_sum_to(g, n->in_shape[1]);
}
static void sub_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  if (core_needs(n, 0)) gin[0] = core_sum_to(g, n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = core_sum_to(loom_neg(g), n->in_shape[1]);
}
static void mul_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  if (core_needs(n, 0)) gin[0] = core_sum_to(loom_mul(g, n->saved[1]), n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = core_sum_to(loom_mul(g, n->saved[0]), n->in_shape[1]);
}
static void div_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *a = n->saved[0], *b = n->saved[1];
  loom_tensor *gb = loom_div(g, b);
  if (core_needs(n, 0)) gin[0] = core_sum_to(gb, n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = core_sum_to(loom_neg(loom_mul(gb, loom_div(a, b))), n->in_shape[1]);
}
static void pow_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *a = n->saved[0], *b = n->saved[1], *y = n->saved[2];
  if (core_needs(n, 0)) { /* b * a^(b-1), and 0 where b == 0 (PyTorch) */
    loom_tensor *zero = loom_scalar_like(b, 0);
    loom_tensor *d = loom_mul(b, loom_pow(a, loom_add_scalar(b, -1)));
    gin[0] = core_sum_to(loom_mul(g, loom_where(loom_eq(b, zero), zero, d)), n->in_shape[0]);
  }
  if (core_needs(n, 1)) { /* y * log(a), taken as 0 where a == 0 (PyTorch) */
    loom_tensor *zero = loom_scalar_like(a, 0);
    loom_tensor *lg = loom_where(loom_eq(a, zero), zero, loom_log(a));
    gin[1] = core_sum_to(loom_mul(g, loom_mul(y, lg)), n->in_shape[1]);
  }
}
/* maximum / minimum: the gradient goes to the winner, split evenly on ties;
 * where either is NaN both get all of it (PyTorch's rule: each side loses
 * only where the other strictly wins). */
static void extreme_bw(core_node *n, const loom_tensor *g, loom_tensor **gin, bool is_max) {
  const loom_tensor *a = n->saved[0], *b = n->saved[1];
  loom_tensor *half = loom_mul_scalar(loom_to_dtype(loom_eq(a, b), g->dtype), -0.5);
  for (int i = 0; i < 2; i++) {
    if (!core_needs(n, i)) continue;
    const loom_tensor *me = i ? b : a, *other = i ? a : b;
    loom_tensor *lose = loom_to_dtype(is_max ? loom_lt(me, other) : loom_gt(me, other), g->dtype);
    loom_tensor *w = loom_add_scalar(loom_sub(half, lose), 1);
    gin[i] = core_sum_to(loom_mul(g, w), n->in_shape[i]);
  }
}
static void maximum_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { extreme_bw(n, g, gin, true); }
static void minimum_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) { extreme_bw(n, g, gin, false); }

static loom_tensor *binary(core_op op, core_backward_fn bw, int n_save, const loom_tensor *a, const loom_tensor *b) {
  const char *name = core_ops[op].name;
  if (!a || !b) {
    core_null_error("%s: %s input is NULL", name, a ? "second" : "first");
    return NULL;
  }
  if (core_freed_handle(name, a) || core_freed_handle(name, b)) return NULL;
  if (!core_check_same_device(name, a, b)) return NULL;
  loom_shape s;
  if (!core_broadcast_shapes(name, a->shape, b->shape, &s)) return NULL;
  bool logical = op >= CORE_OP_logical_and && op <= CORE_OP_logical_xor;
  loom_dtype dt = logical ? LOOM_BOOL : result_type(a, b);
  if ((op == CORE_OP_div || op == CORE_OP_pow) && !loom_dtype_is_float(dt)) dt = LOOM_F32;
  loom_scope_begin();
  const loom_tensor *ins[2] = {a->dtype == dt ? a : loom_to_dtype(a, dt), b->dtype == dt ? b : loom_to_dtype(b, dt)};
  loom_tensor *out = NULL;
  if (ins[0] && ins[1]) out = launch_ew(op, NULL, s, is_cmp_or_logical(op) ? LOOM_BOOL : dt, 2, ins);
  if (out && bw && loom_dtype_is_float(dt) && core_grad_needed(2, ins)) {
    core_node *n = core_record(name, bw, out, 2, ins);
    for (int i = 0; i < n_save && i < 2; i++) core_save(n, ins[i]);
    if (n_save == 3) core_save(n, out);
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_add(const loom_tensor *a, const loom_tensor *b) { return binary(CORE_OP_add, add_bw, 0, a, b); }
loom_tensor *loom_sub(const loom_tensor *a, const loom_tensor *b) { return binary(CORE_OP_sub, sub_bw, 0, a, b); }
loom_tensor *loom_mul(const loom_tensor *a, const loom_tensor *b) { return binary(CORE_OP_mul, mul_bw, 2, a, b); }
loom_tensor *loom_div(const loom_tensor *a, const loom_tensor *b) { return binary(CORE_OP_div, div_bw, 2, a, b); }
loom_tensor *loom_pow(const loom_tensor *a, const loom_tensor *b) { return binary(CORE_OP_pow, pow_bw, 3, a, b); }
loom_tensor *loom_maximum(const loom_tensor *a, const loom_tensor *b) {
  return binary(CORE_OP_maximum, maximum_bw, 2, a, b);
}
loom_tensor *loom_minimum(const loom_tensor *a, const loom_tensor *b) {
  return binary(CORE_OP_minimum, minimum_bw, 2, a, b);
}
#define COMPARE(fn)                                                          \
  loom_tensor *loom_##fn(const loom_tensor *a, const loom_tensor *b) {       \
    return binary(CORE_OP_##fn, NULL, 0, a, b);                              \
  }
COMPARE(eq)
COMPARE(ne)
COMPARE(lt)
COMPARE(le)
COMPARE(gt)
COMPARE(ge)
COMPARE(logical_and)
COMPARE(logical_or)
COMPARE(logical_xor)

/* Scalar operands take the tensor's dtype (a float scalar with an integer
 * tensor promotes to f32, any number with a bool tensor to i64 / f32), as
 * PyTorch's wrapped numbers do. */
static loom_tensor *with_scalar(loom_tensor *(*fn)(const loom_tensor *, const loom_tensor *), const char *name,
                                const loom_tensor *a, double s) {
  if (!a) {
    core_null_error("%s: input is NULL", name);
    return NULL;
  }
  if (core_freed_handle(name, a)) return NULL;
  bool integral = isfinite(s) && s == floor(s);
  loom_dtype dt = a->dtype;
  if (dt == LOOM_BOOL) dt = integral ? LOOM_I64 : LOOM_F32;
  else if (!loom_dtype_is_float(dt) && !integral) dt = LOOM_F32;
  loom_scope_begin();
  loom_tensor *out = loom_keep(fn(a, loom_full(LOOM_SHAPE(), s, dt, a->storage->device)));
  loom_scope_end();
  return out;
}
loom_tensor *loom_add_scalar(const loom_tensor *a, double s) { return with_scalar(loom_add, "add_scalar", a, s); }
loom_tensor *loom_mul_scalar(const loom_tensor *a, double s) { return with_scalar(loom_mul, "mul_scalar", a, s); }
loom_tensor *loom_pow_scalar(const loom_tensor *a, double e) { return with_scalar(loom_pow, "pow_scalar", a, e); }

/* ---- where / masked_fill ---- */
static void where_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *c = n->saved[0];
  loom_tensor *z = loom_scalar_like(g, 0);
  if (core_needs(n, 0)) gin[0] = core_sum_to(loom_where(c, g, z), n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = core_sum_to(loom_where(c, z, g), n->in_shape[1]);
}

loom_tensor *loom_where(const loom_tensor *cond, const loom_tensor *a, const loom_tensor *b) {
  if (!cond || !a || !b) {
    core_null_error("where: %s is NULL", !cond ? "cond" : !a ? "first input" : "second input");
    return NULL;
  }
  if (cond->dtype != LOOM_BOOL) {
    core_set_error(LOOM_ERR_INVALID, "where: condition must be a bool tensor, got %s", loom_dtype_name(cond->dtype));
    return NULL;
  }
  if (!core_check_same_device("where", cond, a) || !core_check_same_device("where", a, b)) return NULL;
  loom_shape s1, s;
  if (!core_broadcast_shapes("where", a->shape, b->shape, &s1) || !core_broadcast_shapes("where", cond->shape, s1, &s))
    return NULL;
  loom_dtype dt = result_type(a, b);
  loom_scope_begin();
  const loom_tensor *ins[3] = {a->dtype == dt ? a : loom_to_dtype(a, dt), b->dtype == dt ? b : loom_to_dtype(b, dt),
                               cond};
  loom_tensor *out = NULL;
  if (ins[0] && ins[1] && ins[2]) out = launch_ew(CORE_OP_where, NULL, s, dt, 3, ins);
  if (out && loom_dtype_is_float(dt) && core_grad_needed(2, ins)) {
    core_node *n = core_record("where", where_bw, out, 2, ins);
    core_save(n, ins[2]);
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_masked_fill(const loom_tensor *x, const loom_tensor *mask, double value) {
  if (!x || !mask) {
    core_null_error("masked_fill: %s is NULL", x ? "mask" : "input");
    return NULL;
  }
  if (mask->dtype != LOOM_BOOL) {
    core_set_error(LOOM_ERR_INVALID, "masked_fill: mask must be bool, got %s", loom_dtype_name(mask->dtype));
    return NULL;
  }
  loom_shape s;
  if (!core_broadcast_shapes("masked_fill", x->shape, mask->shape, &s)) return NULL;
  if (!loom_shape_equal(s, x->shape)) {
    core_set_error(LOOM_ERR_INVALID, "masked_fill: mask of shape %s does not broadcast to input shape %s",
                   loom_shape_str(mask->shape), loom_shape_str(x->shape));
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *out = loom_keep(loom_where(mask, loom_scalar_like(x, value), x));
  loom_scope_end();
  return out;
}
