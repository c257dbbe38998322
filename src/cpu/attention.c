/* CPU kernels of the attention family: fused scaled dot-product attention,
 * blocked (flash-style): per (batch, head) and block of queries, the scores
 * against a block of keys are one GEMM, the softmax runs over the block's
 * rows in vectorised lanes, and the products with V (forward) or the
 * gradients (backward, scores recomputed from the saved logsumexp) are GEMMs
 * too. Layouts in src/core/ops_attention.def; bodies in
 * src/cpu/attention_body.h, compiled for f32 and f64 (f16 / bf16 go through
 * f32 in the dispatcher). */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"
#include "cpu/vrow.h"

/* Queries and keys per block: a block's scores (SDPA_BQ x SDPA_BK) stay in L2. */
#define SDPA_BQ 64
#define SDPA_BK 256

typedef struct sdpa_geom {
  int64_t B, Hq, Hkv, L, S, E, Ev;
  bool causal, has_mask;
  double scale;
  int64_t mst[4]; /* mask strides */
} sdpa_geom;

static loom_status bad(const core_kctx *k, const char *what, const loom_tensor *t, int64_t want) {
  return core_set_error(LOOM_ERR_INVALID, "%s: %s has shape %s, expected %lld elements", core_ops[k->op].name, what,
                        loom_shape_str(t->shape), (long long)want);
}

/* Reads the attributes and checks sizes, dtypes and contiguity. */
static loom_status sdpa_check(const core_kctx *k, sdpa_geom *g, bool fwd) {
  const char *name = core_ops[k->op].name;
  *g = (sdpa_geom){k->a.i[0], k->a.i[1], k->a.i[2], k->a.i[3], k->a.i[4], k->a.i[5], k->a.i[6],
                   (k->a.i[7] & 1) != 0, (k->a.i[7] & 2) != 0, k->a.f[0], {0}};
  if (g->B < 0 || g->Hq < 0 || g->Hkv <= 0 || g->L < 0 || g->S < 0 || g->E < 0 || g->Ev < 0 || g->Hq % g->Hkv)
    return core_set_error(LOOM_ERR_INVALID, "%s: bad sizes", name);
  int64_t W = g->E + g->Ev;
  if (W > INT_MAX) /* BLAS takes int sizes and leading dimensions */
    return core_set_error(LOOM_ERR_INVALID, "%s: head dims E = %lld, Ev = %lld too large", name, (long long)g->E,
                          (long long)g->Ev);
  loom_dtype dt = k->in[0]->dtype;
  if (fwd) {
    if (core_numel(k->in[0]) != g->B * g->Hq * g->L * g->E) return bad(k, "q", k->in[0], g->B * g->Hq * g->L * g->E);
    if (core_numel(k->in[1]) != g->B * g->Hkv * g->S * g->E) return bad(k, "k", k->in[1], g->B * g->Hkv * g->S * g->E);
    if (core_numel(k->in[2]) != g->B * g->Hkv * g->S * g->Ev) return bad(k, "v", k->in[2], g->B * g->Hkv * g->S * g->Ev);
    if (core_numel(k->out[0]) != g->B * g->Hq * g->L * g->Ev) return bad(k, "out", k->out[0], g->B * g->Hq * g->L * g->Ev);
    if (core_numel(k->out[1]) != g->B * g->Hq * g->L) return bad(k, "lse", k->out[1], g->B * g->Hq * g->L);
  } else {
    if (core_numel(k->in[0]) != g->B * g->Hq * g->L * W) return bad(k, "qdo", k->in[0], g->B * g->Hq * g->L * W);
    if (core_numel(k->in[1]) != g->B * g->Hkv * g->S * W) return bad(k, "kv", k->in[1], g->B * g->Hkv * g->S * W);
    if (core_numel(k->in[2]) != g->B * g->Hq * g->L * 2) return bad(k, "stats", k->in[2], g->B * g->Hq * g->L * 2);
    if (core_numel(k->out[0]) != g->B * g->Hq * g->L * g->E) return bad(k, "dq", k->out[0], g->B * g->Hq * g->L * g->E);
    if (core_numel(k->out[1]) != g->B * g->Hkv * g->S * W) return bad(k, "dkv", k->out[1], g->B * g->Hkv * g->S * W);
  }
  for (int i = 0; i < 3; i++)
    if (k->in[i]->dtype != dt) return core_set_error(LOOM_ERR_INVALID, "%s: inputs must share one dtype", name);
  for (int i = 0; i < 2; i++)
    if (k->out[i]->dtype != dt) return core_set_error(LOOM_ERR_INVALID, "%s: outputs must be %s", name, loom_dtype_name(dt));
  if (k->in[3]->dtype != dt) return core_set_error(LOOM_ERR_INVALID, "%s: mask must be %s", name, loom_dtype_name(dt));
  if (cpu_need_contiguous(name, k->in, 3) || cpu_need_contiguous(name, k->out, 2)) return loom_last_status();
  if (g->has_mask) {
    const loom_tensor *m = k->in[3];
    if (m->shape.ndim != 4 || m->shape.d[0] != g->B || m->shape.d[1] != g->Hq || m->shape.d[2] != g->L ||
        m->shape.d[3] != g->S)
      return core_set_error(LOOM_ERR_INVALID, "%s: mask has shape %s, expected [%lld, %lld, %lld, %lld]", name,
                            loom_shape_str(m->shape), (long long)g->B, (long long)g->Hq, (long long)g->L,
                            (long long)g->S);
    for (int i = 0; i < 4; i++) g->mst[i] = m->strides[i];
  }
  return LOOM_OK;
}

/* Per type: T, the kernel suffix, the GEMM, a vectorising exp, and cpu/vrow.h's lane sum and row max. */
#define T float
#define SFX f32
#define SDPA_GEMM cblas_sgemm
#define SDPA_EXP cpu_expf
#define SDPA_LANES cpu_lanes_sum_f
#define SDPA_ROW_MAX cpu_row_max_f
#include "cpu/attention_body.h"
#undef T
#undef SFX
#undef SDPA_GEMM
#undef SDPA_EXP
#undef SDPA_LANES
#undef SDPA_ROW_MAX
#define T double
#define SFX f64
#define SDPA_GEMM cblas_dgemm
#define SDPA_EXP exp
#define SDPA_LANES cpu_lanes_sum_d
#define SDPA_ROW_MAX cpu_row_max_d
#include "cpu/attention_body.h"
#undef T
#undef SFX
#undef SDPA_GEMM
#undef SDPA_EXP
#undef SDPA_LANES
#undef SDPA_ROW_MAX

void cpu_register_attention(void) {
  core_register(LOOM_CPU, CORE_OP_sdpa, LOOM_F32, sdpa_fwd_f32);
  core_register(LOOM_CPU, CORE_OP_sdpa, LOOM_F64, sdpa_fwd_f64);
  core_register(LOOM_CPU, CORE_OP_sdpa_backward, LOOM_F32, sdpa_bwd_f32);
  core_register(LOOM_CPU, CORE_OP_sdpa_backward, LOOM_F64, sdpa_bwd_f64);
}
