/* Scaled dot-product attention: checks, the fused kernel op (sdpa) with its
 * backward (sdpa_backward), and the composed path used for dropout. The ops'
 * tensor layouts are documented in src/core/ops_attention.def. */
#include <math.h>

#include "core/autocast.h"
#include "core/autograd_impl.h"
#include "loom/nn_attention.h"

#define OP "scaled_dot_product_attention"
#define SDPA_FLAG_CAUSAL 1
#define SDPA_FLAG_MASK 2
/* Head dims the CUDA kernels hold in registers (4 threads x 32 each). */
#define SDPA_CUDA_MAX_DIM 128

typedef struct geom {
  int64_t B, Hq, Hkv, L, S, E, Ev;
} geom;

static _Thread_local int fused_off; /* zero-initialised: fused on by default */
void loom_sdpa_set_fused(bool on) { fused_off = !on; }
bool loom_sdpa_fused_enabled(void) { return !fused_off; }

static loom_dtype acc_dtype(loom_dtype dt) { return dt == LOOM_F64 ? LOOM_F64 : LOOM_F32; }

static bool check_inputs(const loom_tensor *q, const loom_tensor *k, const loom_tensor *v, const loom_tensor *mask,
                         double dropout_p, geom *g) {
  int nd = q->shape.ndim;
  if (nd < 2 || k->shape.ndim != nd || v->shape.ndim != nd) {
    core_set_error(LOOM_ERR_INVALID, OP ": expected q, k, v of one rank >= 2 ([N..., H, L, E]), got q %s, k %s, v %s",
                   loom_shape_str(q->shape), loom_shape_str(k->shape), loom_shape_str(v->shape));
    return false;
  }
  if (!loom_dtype_is_float(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype) {
    core_set_error(LOOM_ERR_INVALID, OP ": q, k, v need one floating dtype, got %s, %s, %s", loom_dtype_name(q->dtype),
                   loom_dtype_name(k->dtype), loom_dtype_name(v->dtype));
    return false;
  }
  if (!core_check_same_device(OP, q, k) || !core_check_same_device(OP, q, v)) return false;
  g->B = 1;
  for (int i = 0; i < nd - 3; i++) {
    if (k->shape.d[i] != q->shape.d[i] || v->shape.d[i] != q->shape.d[i]) {
      core_set_error(LOOM_ERR_INVALID, OP ": batch dims differ: q %s, k %s, v %s", loom_shape_str(q->shape),
                     loom_shape_str(k->shape), loom_shape_str(v->shape));
      return false;
    }
    g->B *= q->shape.d[i];
  }
  g->Hq = nd >= 3 ? q->shape.d[nd - 3] : 1;
  g->Hkv = nd >= 3 ? k->shape.d[nd - 3] : 1;
  g->L = q->shape.d[nd - 2];
  g->S = k->shape.d[nd - 2];
  g->E = q->shape.d[nd - 1];
  g->Ev = v->shape.d[nd - 1];
  if (k->shape.d[nd - 1] != g->E || v->shape.d[nd - 2] != g->S || (nd >= 3 && v->shape.d[nd - 3] != g->Hkv)) {
    core_set_error(LOOM_ERR_INVALID,
                   OP ": expected k [..., Hkv, S, E] with q's E and v [..., Hkv, S, Ev] with k's Hkv and S; got "
                      "q %s, k %s, v %s",
                   loom_shape_str(q->shape), loom_shape_str(k->shape), loom_shape_str(v->shape));
    return false;
  }
  if (g->Hkv == 0 || g->Hq % g->Hkv != 0) {
    core_set_error(LOOM_ERR_INVALID, OP ": query heads (%lld) must be a multiple of key/value heads (%lld)",
                   (long long)g->Hq, (long long)g->Hkv);
    return false;
  }
  if (!(dropout_p >= 0 && dropout_p < 1)) {
    core_set_error(LOOM_ERR_INVALID, OP ": dropout_p must be in [0, 1), got %g", dropout_p);
    return false;
  }
  if (mask) {
    if (mask->dtype != LOOM_BOOL && !loom_dtype_is_float(mask->dtype)) {
      core_set_error(LOOM_ERR_INVALID, OP ": attn_mask must be bool or floating, got %s", loom_dtype_name(mask->dtype));
      return false;
    }
    if (!core_check_same_device(OP, q, mask)) return false;
    loom_shape full = q->shape, b;
    full.d[nd - 1] = g->S;
    if (!core_broadcast_shapes(OP " attn_mask", mask->shape, full, &b) || !loom_shape_equal(b, full)) {
      core_set_error(LOOM_ERR_INVALID, OP ": attn_mask %s does not broadcast to [N..., Hq, L, S] = %s",
                     loom_shape_str(mask->shape), loom_shape_str(full));
      return false;
    }
  }
  return true;
}

/* The mask as an additive tensor of dtype acc (bool true -> 0, false -> -inf). */
static loom_tensor *additive_mask(const loom_tensor *mask, loom_dtype acc) {
  if (mask->dtype != LOOM_BOOL) return loom_to_dtype(mask, acc);
  loom_tensor *z = loom_zeros(mask->shape, acc, mask->storage->device);
  return loom_masked_fill(z, loom_logical_not(mask), -INFINITY);
}

/* The kernel's mask input: a [B, Hq, L, S] view (stride 0 where broadcast),
 * or a 1-element dummy when there is none. */
static loom_tensor *kernel_mask(const loom_tensor *mask, const loom_tensor *q, const geom *g) {
  loom_dtype acc = acc_dtype(q->dtype);
  if (!mask) return loom_zeros(LOOM_SHAPE(1, 1, 1, 1), acc, q->storage->device);
  loom_shape full = q->shape;
  int nd = full.ndim;
  full.d[nd - 1] = g->S;
  loom_tensor *e = loom_expand(additive_mask(mask, acc), full);
  if (!e) return NULL;
  /* merge the batch dims into one; copy when their strides do not allow it */
  for (int i = 0; i + 1 < nd - 3; i++)
    if (e->shape.d[i + 1] != 1 && e->strides[i] != e->strides[i + 1] * e->shape.d[i + 1]) {
      e = loom_contiguous(e);
      break;
    }
  int64_t st[4] = {nd >= 4 ? e->strides[nd - 4] : 0, nd >= 3 ? e->strides[nd - 3] : 0, e->strides[nd - 2],
                   e->strides[nd - 1]};
  if (g->B == 1) st[0] = 0;
  return e ? core_view(e, LOOM_SHAPE(g->B, g->Hq, g->L, g->S), st, e->offset) : NULL;
}

static void set_attrs(core_attrs *a, const geom *g, int flags, double scale) {
  int64_t v[8] = {g->B, g->Hq, g->Hkv, g->L, g->S, g->E, g->Ev, flags};
  for (int i = 0; i < 8; i++) a->i[i] = v[i];
  a->f[0] = scale;
}

/* ---- backward ---- */
/* saved: q [B, Hq, L, E], kv [B, Hkv, S, E + Ev], olse [B, Hq, L, Ev + 1] (out | lse, acc dtype), mask */
static void sdpa_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *q = n->saved[0], *kv = n->saved[1], *olse = n->saved[2], *mask = n->saved[3];
  geom G = {n->a.i[0], n->a.i[1], n->a.i[2], n->a.i[3], n->a.i[4], n->a.i[5], n->a.i[6]};
  loom_dtype acc = acc_dtype(q->dtype);
  loom_device dev = q->storage->device;
  loom_tensor *dout = loom_contiguous(loom_to_dtype(loom_reshape(g, LOOM_SHAPE(G.B, G.Hq, G.L, G.Ev)), q->dtype));
  loom_tensor *o = loom_narrow(olse, 3, 0, G.Ev), *lse = loom_narrow(olse, 3, G.Ev, 1);
  static const int last[] = {-1};
  loom_tensor *D = loom_sum(loom_mul(loom_to_dtype(dout, acc), o), last, 1, true);
  loom_tensor *parts[2] = {lse, D}, *qparts[2] = {(loom_tensor *)q, dout};
  loom_tensor *stats = loom_contiguous(loom_cat(parts, 2, 3));
  loom_tensor *qdo = loom_contiguous(loom_cat(qparts, 2, 3));
  loom_tensor *dq = core_new(q->shape, q->dtype, dev), *dkv = core_new(kv->shape, q->dtype, dev);
  if (!stats || !qdo || !dq || !dkv) return;
  core_kctx k = {CORE_OP_sdpa_backward, 4, 2, {qdo, (loom_tensor *)kv, stats, (loom_tensor *)mask}, {dq, dkv},
                 n->a, NULL};
  if (core_launch(&k) != LOOM_OK) return;
  if (core_needs(n, 0)) gin[0] = loom_reshape(dq, n->in_shape[0]);
  if (core_needs(n, 1)) gin[1] = loom_reshape(loom_contiguous(loom_narrow(dkv, 3, 0, G.E)), n->in_shape[1]);
  if (core_needs(n, 2)) gin[2] = loom_reshape(loom_contiguous(loom_narrow(dkv, 3, G.E, G.Ev)), n->in_shape[2]);
}

/* ---- fused path ---- */
static loom_tensor *sdpa_fused(const loom_tensor *q, const loom_tensor *k, const loom_tensor *v,
                               const loom_tensor *mask, bool causal, double scale, const geom *g) {
  const loom_tensor *ins[3] = {q, k, v};
  bool grad = core_grad_needed(3, ins);
  loom_device dev = q->storage->device;
  loom_dtype acc = acc_dtype(q->dtype);
  loom_no_grad_begin();
  loom_tensor *qc = loom_contiguous(loom_reshape(q, LOOM_SHAPE(g->B, g->Hq, g->L, g->E)));
  loom_tensor *kc = loom_contiguous(loom_reshape(k, LOOM_SHAPE(g->B, g->Hkv, g->S, g->E)));
  loom_tensor *vc = loom_contiguous(loom_reshape(v, LOOM_SHAPE(g->B, g->Hkv, g->S, g->Ev)));
  loom_tensor *m4 = kernel_mask(mask, q, g);
  loom_tensor *out = core_new(LOOM_SHAPE(g->B, g->Hq, g->L, g->Ev), q->dtype, dev);
  loom_tensor *lse = core_new(LOOM_SHAPE(g->B, g->Hq, g->L, 1), acc, dev);
  loom_tensor *res = NULL, *kv = NULL, *olse = NULL;
  if (qc && kc && vc && m4 && out && lse) {
    core_kctx kc_ = {CORE_OP_sdpa, 4, 2, {qc, kc, vc, m4}, {out, lse}, {{0}, {0}}, NULL};
    set_attrs(&kc_.a, g, (causal ? SDPA_FLAG_CAUSAL : 0) | (mask ? SDPA_FLAG_MASK : 0), scale);
    if (core_launch(&kc_) == LOOM_OK) {
      loom_shape os = q->shape;
      os.d[os.ndim - 1] = g->Ev;
      res = loom_reshape(out, os);
      if (grad) {
        loom_tensor *kvp[2] = {kc, vc}, *op[2] = {loom_to_dtype(out, acc), lse};
        kv = loom_cat(kvp, 2, 3);
        olse = loom_cat(op, 2, 3);
        if (!kv || !olse) res = NULL;
      }
    }
  }
  loom_no_grad_end();
  if (res && grad) {
    core_node *n = core_record("scaled_dot_product_attention", sdpa_bw, res, 3, ins);
    if (n) {
      core_save(n, qc);
      core_save(n, kv);
      core_save(n, olse);
      core_save(n, m4);
      set_attrs(&n->a, g, (causal ? SDPA_FLAG_CAUSAL : 0) | (mask ? SDPA_FLAG_MASK : 0), scale);
    }
  }
  return res;
}

/* ---- composed path (dropout, head dims beyond the CUDA kernels) ---- */
static loom_tensor *repeat_heads(const loom_tensor *t, const geom *g) {
  if (g->Hq == g->Hkv) return (loom_tensor *)t;
  int nd = t->shape.ndim; /* >= 3 here */
  loom_shape s = t->shape, r = t->shape;
  for (int i = nd; i > nd - 3; i--) s.d[i] = s.d[i - 1];
  s.ndim = nd + 1;
  s.d[nd - 2] = g->Hq / g->Hkv;
  r.d[nd - 3] = g->Hq;
  return loom_reshape(loom_expand(loom_unsqueeze(t, nd - 2), s), r);
}

static loom_tensor *sdpa_composed(const loom_tensor *q, const loom_tensor *k, const loom_tensor *v,
                                  const loom_tensor *mask, bool causal, double scale, double dropout_p,
                                  const geom *g) {
  loom_dtype acc = acc_dtype(q->dtype);
  loom_device dev = q->storage->device;
  loom_tensor *kr = repeat_heads(k, g), *vr = repeat_heads(v, g);
  int nd = q->shape.ndim;
  loom_tensor *s = loom_to_dtype(loom_mul_scalar(loom_matmul(q, loom_transpose(kr, nd - 2, nd - 1)), scale), acc);
  if (mask) s = loom_add(s, additive_mask(mask, acc));
  if (causal) {
    loom_tensor *i = loom_reshape(loom_arange(0, (double)g->L, 1, LOOM_I64, dev), LOOM_SHAPE(g->L, 1));
    loom_tensor *j = loom_arange(0, (double)g->S, 1, LOOM_I64, dev);
    s = loom_masked_fill(s, loom_gt(j, i), -INFINITY);
  }
  static const int last[] = {-1};
  /* rows with every key masked give zeros: they are set to 0 before the
   * softmax (so no NaN reaches the values or the gradients) and zeroed after */
  loom_tensor *dead = loom_eq(loom_max(loom_detach(s), -1, true, NULL), loom_scalar_like(s, -INFINITY));
  s = loom_masked_fill(s, dead, 0);
  loom_tensor *p = loom_masked_fill(loom_exp(loom_sub(s, loom_logsumexp(s, last, 1, true))), dead, 0);
  if (dropout_p > 0) {
    loom_tensor *r = loom_rand(p ? p->shape : LOOM_SHAPE(), acc, dev);
    p = loom_mul_scalar(loom_masked_fill(p, loom_lt(r, loom_scalar_like(r, dropout_p)), 0), 1 / (1 - dropout_p));
  }
  return loom_matmul(loom_to_dtype(p, q->dtype), vr);
}

loom_tensor *loom_scaled_dot_product_attention(const loom_tensor *q, const loom_tensor *k, const loom_tensor *v,
                                               const loom_tensor *attn_mask, double dropout_p, bool is_causal,
                                               double scale) {
  CORE_CHECK_NULL1(OP, q);
  CORE_CHECK_NULL1(OP, k);
  CORE_CHECK_NULL1(OP, v);
  loom_scope_begin();
  const loom_tensor *ql = core_autocast_low(q), *kl = core_autocast_low(k), *vl = core_autocast_low(v);
  geom g;
  loom_tensor *out = NULL;
  if (ql && kl && vl && check_inputs(ql, kl, vl, attn_mask, dropout_p, &g)) {
    if (isnan(scale)) scale = 1.0 / sqrt((double)(g.E > 0 ? g.E : 1));
    bool cuda_ok = ql->storage->device.type != LOOM_CUDA ||
                   (ql->dtype != LOOM_F64 && g.E <= SDPA_CUDA_MAX_DIM && g.Ev <= SDPA_CUDA_MAX_DIM);
    /* the fused kernel treats the mask as a constant: a float mask that needs
     * a gradient takes the composed path, which differentiates through it */
    bool mask_grad = attn_mask && loom_dtype_is_float(attn_mask->dtype) && core_grad_needed(1, &attn_mask);
    if (dropout_p == 0 && cuda_ok && !fused_off && !mask_grad)
      out = sdpa_fused(ql, kl, vl, attn_mask, is_causal, scale, &g);
    else
      out = sdpa_composed(ql, kl, vl, attn_mask, is_causal, scale, dropout_p, &g);
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}
