/* CPU kernels of the norm family: batch, layer and group norm, forward and
 * backward (layouts in src/core/ops_norm.def; bodies in src/cpu/norm_body.h,
 * compiled once for f32 and once for f64; f16 / bf16 go through f32 in the
 * dispatcher). */
#include "cpu/vrow.h"

static loom_status bad_numel(const core_kctx *k, const char *what, const loom_tensor *t, int64_t want) {
  return core_set_error(LOOM_ERR_INVALID, "%s: %s has shape %s, expected %lld elements", core_ops[k->op].name, what,
                        loom_shape_str(t->shape), (long long)want);
}

/* Checks counts, dtypes and contiguity of a stats tensor of 2 * G elements. */
static loom_status check_stats(const core_kctx *k, const loom_tensor *st, int64_t G, loom_dtype sdt) {
  if (core_numel(st) != 2 * G) return bad_numel(k, "stats", st, 2 * G);
  if (st->dtype != sdt)
    return core_set_error(LOOM_ERR_INVALID, "%s: stats are %s, expected %s", core_ops[k->op].name,
                          loom_dtype_name(st->dtype), loom_dtype_name(sdt));
  return LOOM_OK;
}

/* Forward: in = (x, weight [P], bias [P]) -> (y, stats [2, G]). */
static loom_status check_fwd(const core_kctx *k, int64_t n, int64_t P, int64_t G, loom_dtype sdt) {
  const char *name = core_ops[k->op].name;
  if (n < 0 || P < 0 || G < 0) return core_set_error(LOOM_ERR_INVALID, "%s: negative sizes", name);
  if (core_numel(k->in[0]) != n) return bad_numel(k, "x", k->in[0], n);
  if (core_numel(k->out[0]) != n) return bad_numel(k, "y", k->out[0], n);
  if (core_numel(k->in[1]) != P) return bad_numel(k, "weight", k->in[1], P);
  if (core_numel(k->in[2]) != P) return bad_numel(k, "bias", k->in[2], P);
  for (int i = 1; i < 3; i++)
    if (k->in[i]->dtype != k->in[0]->dtype || k->out[0]->dtype != k->in[0]->dtype)
      return core_set_error(LOOM_ERR_INVALID, "%s: x, weight, bias and y must share one dtype", name);
  if (check_stats(k, k->out[1], G, sdt)) return loom_last_status();
  if (cpu_need_contiguous(name, k->in, 3) || cpu_need_contiguous(name, k->out, 2)) return loom_last_status();
  return LOOM_OK;
}

/* channel_affine: in = (x [N, C, S], scale [C], shift [C]) -> y, one dtype, contiguous. */
static loom_status check_affine(const core_kctx *k, int64_t N, int64_t C, int64_t S) {
  const char *name = core_ops[k->op].name;
  if (N < 0 || C < 0 || S < 0) return core_set_error(LOOM_ERR_INVALID, "%s: negative sizes", name);
  if (core_numel(k->in[0]) != N * C * S) return bad_numel(k, "x", k->in[0], N * C * S);
  if (core_numel(k->out[0]) != N * C * S) return bad_numel(k, "y", k->out[0], N * C * S);
  if (core_numel(k->in[1]) != C) return bad_numel(k, "scale", k->in[1], C);
  if (core_numel(k->in[2]) != C) return bad_numel(k, "shift", k->in[2], C);
  for (int i = 1; i < 3; i++)
    if (k->in[i]->dtype != k->in[0]->dtype || k->out[0]->dtype != k->in[0]->dtype)
      return core_set_error(LOOM_ERR_INVALID, "%s: x, scale, shift and y must share one dtype", name);
  if (cpu_need_contiguous(name, k->in, 3) || cpu_need_contiguous(name, k->out, 1)) return loom_last_status();
  return LOOM_OK;
}

/* Backward: in = (dy, x, weight [P], stats [2, G]) -> (dx, dwb [2, P]). */
static loom_status check_bwd(const core_kctx *k, int64_t n, int64_t P, int64_t G, loom_dtype sdt) {
  const char *name = core_ops[k->op].name;
  if (n < 0 || P < 0 || G < 0) return core_set_error(LOOM_ERR_INVALID, "%s: negative sizes", name);
  if (core_numel(k->in[0]) != n) return bad_numel(k, "dy", k->in[0], n);
  if (core_numel(k->in[1]) != n) return bad_numel(k, "x", k->in[1], n);
  if (core_numel(k->out[0]) != n) return bad_numel(k, "dx", k->out[0], n);
  if (core_numel(k->in[2]) != P) return bad_numel(k, "weight", k->in[2], P);
  if (core_numel(k->out[1]) != 2 * P) return bad_numel(k, "dwb", k->out[1], 2 * P);
  loom_dtype dt = k->in[0]->dtype;
  if (k->in[1]->dtype != dt || k->in[2]->dtype != dt || k->out[0]->dtype != dt || k->out[1]->dtype != dt)
    return core_set_error(LOOM_ERR_INVALID, "%s: dy, x, weight, dx and dwb must share one dtype", name);
  if (check_stats(k, k->in[3], G, sdt)) return loom_last_status();
  if (cpu_need_contiguous(name, k->in, 4) || cpu_need_contiguous(name, k->out, 2)) return loom_last_status();
  return LOOM_OK;
}

#define NT float
#define NS float
#define NX(name) name##_f32
#define NV(name) name##_f
#define NVT cpu_vf
#define check_geom(k, n, P, P2, G) check_fwd(k, n, P, G, LOOM_F32)
#define check_bwd_geom(k, n, P, G) check_bwd(k, n, P, G, LOOM_F32)
#include "cpu/norm_body.h"
#undef NT
#undef NS
#undef NX
#undef NV
#undef NVT
#undef check_geom
#undef check_bwd_geom

#define NT double
#define NS double
#define NX(name) name##_f64
#define NV(name) name##_d
#define NVT cpu_vd
#define check_geom(k, n, P, P2, G) check_fwd(k, n, P, G, LOOM_F64)
#define check_bwd_geom(k, n, P, G) check_bwd(k, n, P, G, LOOM_F64)
#include "cpu/norm_body.h"
#undef NT
#undef NS
#undef NX
#undef NV
#undef NVT
#undef check_geom
#undef check_bwd_geom

#define REG(op)                                           \
  core_register(LOOM_CPU, CORE_OP_##op, LOOM_F32, op##_f32); \
  core_register(LOOM_CPU, CORE_OP_##op, LOOM_F64, op##_f64);

void cpu_register_norm(void) {
  REG(batch_norm)
  REG(batch_norm_backward)
  REG(layer_norm)
  REG(layer_norm_backward)
  REG(group_norm)
  REG(group_norm_backward)
  REG(channel_affine)
}
