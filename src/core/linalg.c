/* Matrix products: matmul (batched, broadcast), bmm, addmm. */
#include "core/autocast.h"
#include "loom/optim.h"
#include "core/autograd_impl.h"

/* How one operand of shape [..., r, c] reaches the kernel: a tensor whose
 * matrices are row-major (trans = 0) or transposed row-major (trans = 1),
 * with a fixed batch stride (0 = one matrix for every batch). */
typedef struct operand { loom_tensor *t; int trans; int64_t bstride; } operand;

static bool plain_matrix(const loom_tensor *t, int *trans) {
  int nd = t->shape.ndim;
  int64_t r = t->shape.d[nd - 2], c = t->shape.d[nd - 1];
  int64_t sr = t->strides[nd - 2], sc = t->strides[nd - 1];
  if ((sc == 1 || c == 1) && (sr == c || r == 1)) { *trans = 0; return true; }
  if ((sr == 1 || r == 1) && (sc == r || c == 1)) { *trans = 1; return true; }
  return false;
}

/* t is [..., r, c] with batch dims broadcast to batch (nb dims, B matrices). */
static bool make_operand(const loom_tensor *t, loom_shape batch, int64_t B, operand *op) {
  int nd = t->shape.ndim, tb = nd - 2;
  int64_t tB = 1;
  for (int i = 0; i < tb; i++) tB *= t->shape.d[i];
  int trans;
  /* batch dims collapse to one regular stride when the tensor is "batch-contiguous" */
  bool regular = true;
  int64_t mat = t->shape.d[nd - 2] * t->shape.d[nd - 1];
  for (int i = tb - 1, expect = 1; i >= 0; i--) {
    if (t->shape.d[i] == 1) continue;
    if (t->strides[i] != mat * expect) regular = false;
    expect *= (int)t->shape.d[i];
  }
  if (plain_matrix(t, &trans) && regular && (tB == B || tB == 1)) {
    op->t = core_alias(t);
    op->trans = trans;
    op->bstride = tB == 1 ? 0 : mat;
    return op->t != NULL;
  }
  loom_shape full = batch;
  full.d[full.ndim++] = t->shape.d[nd - 2];
  full.d[full.ndim++] = t->shape.d[nd - 1];
  loom_tensor *e = core_expand_to(t, full);
  op->t = e ? loom_contiguous(e) : NULL;
  loom_release(e);
  op->trans = 0;
  op->bstride = mat;
  return op->t != NULL;
}

static void matmul_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *a = n->saved[0], *b = n->saved[1];
  if (core_needs(n, 0)) gin[0] = core_sum_to(loom_matmul(g, loom_transpose(b, -1, -2)), n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = core_sum_to(loom_matmul(loom_transpose(a, -1, -2), g), n->in_shape[1]);
}

/* a [..., M, K] @ b [..., K, N], both at least 2-d. */
static loom_tensor *matmul_nd(const loom_tensor *a, const loom_tensor *b) {
  int na = a->shape.ndim, nb = b->shape.ndim;
  int64_t M = a->shape.d[na - 2], K = a->shape.d[na - 1], N = b->shape.d[nb - 1];
  if (b->shape.d[nb - 2] != K) {
    core_set_error(LOOM_ERR_INVALID, "matmul: shapes %s and %s cannot be multiplied (%lld != %lld)",
                   loom_shape_str(a->shape), loom_shape_str(b->shape), (long long)K, (long long)b->shape.d[nb - 2]);
    return NULL;
  }
  loom_shape ba = {na - 2, {0}}, bb = {nb - 2, {0}}, batch;
  for (int i = 0; i < na - 2; i++) ba.d[i] = a->shape.d[i];
  for (int i = 0; i < nb - 2; i++) bb.d[i] = b->shape.d[i];
  if (!core_broadcast_shapes("matmul", ba, bb, &batch)) return NULL;
  if (batch.ndim + 2 > LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "matmul: result would have more than %d dims", LOOM_MAX_DIMS);
    return NULL;
  }
  int64_t B = loom_shape_numel(batch);
  loom_shape os = batch;
  os.d[os.ndim++] = M;
  os.d[os.ndim++] = N;
  loom_tensor *out = core_new(os, a->dtype, a->storage->device);
  if (!out) return NULL;
  operand oa = {0}, ob = {0};
  bool ok;
  if (K == 0) { /* an empty sum: zeros, still recorded for autograd */
    ok = loom_fill_(out, 0) == LOOM_OK;
  } else {
    loom_no_grad_begin();
    ok = make_operand(a, batch, B, &oa) && make_operand(b, batch, B, &ob);
    loom_no_grad_end();
    core_untrack(oa.t);
    core_untrack(ob.t);
  }
  if (ok && K > 0) {
    core_kctx k = {CORE_OP_matmul, 2, 1, {oa.t, ob.t}, {out},
                   {{oa.trans, ob.trans, B, M, N, K, oa.bstride, ob.bstride}, {0}}, NULL};
    ok = core_launch(&k) == LOOM_OK;
  }
  loom_release(oa.t);
  loom_release(ob.t);
  if (!ok) {
    core_untrack(out);
    loom_release(out);
    return NULL;
  }
  const loom_tensor *ins[2] = {a, b};
  if (core_grad_needed(2, ins)) {
    core_node *n = core_record("matmul", matmul_bw, out, 2, ins);
    core_save(n, a);
    core_save(n, b);
  }
  return out;
}

/* Inside an autocast region: the operands cast to its dtype and *out the
 * product of those (true), or false when no operand needs a cast. */
static bool autocast_matmul(const loom_tensor *a, const loom_tensor *b, loom_tensor **out) {
  if (core_autocast_dtype(a->storage->device) == LOOM_DTYPE_COUNT) return false;
  loom_scope_begin();
  loom_tensor *ca = core_autocast_low(a), *cb = core_autocast_low(b);
  bool cast = ca != a || cb != b;
  *out = cast ? loom_keep(loom_matmul(ca, cb)) : NULL;
  loom_scope_end();
  return cast;
}

loom_tensor *loom_matmul(const loom_tensor *a, const loom_tensor *b) {
  if (!a || !b) {
    core_null_error("matmul: %s input is NULL", a ? "second" : "first");
    return NULL;
  }
  if (!core_check_same_device("matmul", a, b)) return NULL;
  loom_tensor *cast_out;
  if (autocast_matmul(a, b, &cast_out)) return cast_out;
  if (a->shape.ndim == 0 || b->shape.ndim == 0) {
    core_set_error(LOOM_ERR_INVALID, "matmul: both operands need at least 1 dim, got %s and %s",
                   loom_shape_str(a->shape), loom_shape_str(b->shape));
    return NULL;
  }
  if (a->dtype != b->dtype || !loom_dtype_is_float(a->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "matmul: needs two floating operands of one dtype, got %s and %s",
                   loom_dtype_name(a->dtype), loom_dtype_name(b->dtype));
    return NULL;
  }
  int na = a->shape.ndim, nb = b->shape.ndim;
  int64_t ka = a->shape.d[na - 1], kb = b->shape.d[nb == 1 ? 0 : nb - 2];
  if (ka != kb) {
    core_set_error(LOOM_ERR_INVALID, "matmul: shapes %s and %s cannot be multiplied (%lld != %lld)",
                   loom_shape_str(a->shape), loom_shape_str(b->shape), (long long)ka, (long long)kb);
    return NULL;
  }
  if (na > 2 && nb > 2) {
    loom_shape ba = {na - 2, {0}}, bb = {nb - 2, {0}}, batch;
    for (int i = 0; i < na - 2; i++) ba.d[i] = a->shape.d[i];
    for (int i = 0; i < nb - 2; i++) bb.d[i] = b->shape.d[i];
    if (!core_broadcast_shapes("matmul", ba, bb, &batch)) {
      core_set_error(LOOM_ERR_INVALID, "matmul: batch dims of %s and %s cannot be broadcast together",
                     loom_shape_str(a->shape), loom_shape_str(b->shape));
      return NULL;
    }
  }
  loom_scope_begin();
  if (a->storage->device.type == LOOM_CPU && (a->dtype == LOOM_F16 || a->dtype == LOOM_BF16)) {
    /* the CPU multiplies half precision in f32 (the operands' layouts carry no f32 copy),
     * with autocast off so that the f32 product is not cast back down */
    bool pushed = core_autocast_dtype(a->storage->device) != LOOM_DTYPE_COUNT &&
                  loom_autocast_begin(LOOM_CPU, LOOM_F32) == LOOM_OK;
    loom_tensor *p = loom_matmul(loom_to_dtype(a, LOOM_F32), loom_to_dtype(b, LOOM_F32));
    if (pushed) loom_autocast_end();
    loom_tensor *r = loom_to_dtype(p, a->dtype);
    loom_keep(r);
    loom_scope_end();
    return r;
  }
  const loom_tensor *a2 = a->shape.ndim == 1 ? loom_unsqueeze(a, 0) : a;
  const loom_tensor *b2 = b->shape.ndim == 1 ? loom_unsqueeze(b, -1) : b;
  loom_tensor *out = a2 && b2 ? matmul_nd(a2, b2) : NULL;
  if (out && b->shape.ndim == 1) out = loom_squeeze(out, -1);
  if (out && a->shape.ndim == 1) out = loom_squeeze(out, b->shape.ndim == 1 ? -1 : -2);
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_bmm(const loom_tensor *a, const loom_tensor *b) {
  if (!a || !b) {
    core_null_error("bmm: %s input is NULL", a ? "second" : "first");
    return NULL;
  }
  if (a->shape.ndim != 3 || b->shape.ndim != 3 || a->shape.d[0] != b->shape.d[0]) {
    core_set_error(LOOM_ERR_INVALID, "bmm: expected [B, n, m] and [B, m, p], got %s and %s",
                   loom_shape_str(a->shape), loom_shape_str(b->shape));
    return NULL;
  }
  return loom_matmul(a, b);
}

/* beta = 0: PyTorch ignores the input's values (NaN included) but still gives
 * it a gradient, g * 0; this stands in for beta * input in the graph. */
static void ignored_input_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  (void)n;
  gin[0] = loom_mul_scalar(g, 0);
}

static loom_tensor *ignored_input(const loom_tensor *input) {
  loom_no_grad_begin();
  loom_tensor *z = loom_zeros(input->shape, input->dtype, input->storage->device);
  loom_no_grad_end();
  if (z) core_record("addmm_input", ignored_input_bw, z, 1, &input);
  return z;
}

loom_tensor *loom_addmm(const loom_tensor *input, const loom_tensor *m1, const loom_tensor *m2, double beta,
                        double alpha) {
  if (!input || !m1 || !m2) {
    core_null_error("addmm: %s is NULL", !input ? "input" : !m1 ? "mat1" : "mat2");
    return NULL;
  }
  if (m1->shape.ndim != 2 || m2->shape.ndim != 2) {
    core_set_error(LOOM_ERR_INVALID, "addmm: mat1 and mat2 must be 2-d, got %s and %s", loom_shape_str(m1->shape),
                   loom_shape_str(m2->shape));
    return NULL;
  }
  loom_shape ps = LOOM_SHAPE(m1->shape.d[0], m2->shape.d[1]), bs;
  if (m1->shape.d[1] != m2->shape.d[0]) {
    core_set_error(LOOM_ERR_INVALID, "addmm: mat1 %s and mat2 %s cannot be multiplied", loom_shape_str(m1->shape),
                   loom_shape_str(m2->shape));
    return NULL;
  }
  if (!core_broadcast_shapes("addmm", input->shape, ps, &bs) || !loom_shape_equal(bs, ps)) {
    core_set_error(LOOM_ERR_INVALID, "addmm: input of shape %s does not broadcast to the product's shape %s",
                   loom_shape_str(input->shape), loom_shape_str(ps));
    return NULL;
  }
  loom_scope_begin();
  /* autocast: the added input takes the product's dtype too, as in PyTorch */
  if (core_autocast_dtype(m1->storage->device) != LOOM_DTYPE_COUNT) input = core_autocast_low(input);
  loom_tensor *p = loom_matmul(m1, m2);
  if (alpha != 1) p = loom_mul_scalar(p, alpha);
  loom_tensor *out;
  if (beta != 0) out = loom_add(beta == 1 ? input : loom_mul_scalar(input, beta), p);
  else out = core_grad_needed(1, &input) ? loom_add(p, ignored_input(input)) : p;
  loom_keep(out);
  loom_scope_end();
  return out;
}
