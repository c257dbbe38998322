/* The strided elementwise iterator (see iter.h). */
#include "cpu/iter.h"

typedef struct cpu_iter {
  int ndim, nops;                               /* dims are stored innermost first */
  int64_t numel;
  int64_t shape[LOOM_MAX_DIMS];
  int64_t stride[CPU_MAX_OPERANDS][LOOM_MAX_DIMS]; /* bytes */
  char *base[CPU_MAX_OPERANDS];
} cpu_iter;

/* Drops size-1 dims and merges a dim into its inner neighbour when every
 * operand steps over that neighbour contiguously. */
static void iter_build(cpu_iter *it, loom_tensor *const *t, int n) {
  loom_shape s = t[0]->shape;
  it->nops = n;
  it->ndim = 0;
  it->numel = 1;
  for (int j = 0; j < n; j++) it->base[j] = (char *)core_ptr(t[j]);
  for (int d = s.ndim - 1; d >= 0; d--) {
    int64_t size = s.d[d];
    it->numel *= size;
    if (size == 1) continue;
    int last = it->ndim - 1;
    bool merge = last >= 0;
    for (int j = 0; j < n && merge; j++) {
      int64_t st = t[j]->strides[d] * (int64_t)loom_dtype_size(t[j]->dtype);
      merge = st == it->stride[j][last] * it->shape[last];
    }
    if (merge) {
      it->shape[last] *= size;
      continue;
    }
    for (int j = 0; j < n; j++)
      it->stride[j][it->ndim] = t[j]->strides[d] * (int64_t)loom_dtype_size(t[j]->dtype);
    it->shape[it->ndim++] = size;
  }
  if (it->ndim == 0) { /* a single element */
    it->shape[0] = 1;
    for (int j = 0; j < n; j++) it->stride[j][0] = (int64_t)loom_dtype_size(t[j]->dtype);
    it->ndim = 1;
  }
}

/* Runs fn over the elements [begin, end) in row-major order. */
static void iter_range(const cpu_iter *it, int64_t begin, int64_t end, cpu_loop_fn fn, const void *ctx) {
  int64_t idx[LOOM_MAX_DIMS], inner[CPU_MAX_OPERANDS];
  char *p[CPU_MAX_OPERANDS];
  int64_t rest = begin;
  for (int d = 0; d < it->ndim; d++) {
    idx[d] = rest % it->shape[d];
    rest /= it->shape[d];
  }
  for (int j = 0; j < it->nops; j++) {
    p[j] = it->base[j];
    for (int d = 0; d < it->ndim; d++) p[j] += idx[d] * it->stride[j][d];
    inner[j] = it->stride[j][0];
  }
  for (int64_t pos = begin; pos < end;) {
    int64_t n = it->shape[0] - idx[0];
    if (n > end - pos) n = end - pos;
    fn(p, inner, n, ctx);
    pos += n;
    idx[0] += n;
    for (int j = 0; j < it->nops; j++) p[j] += n * inner[j];
    for (int d = 0; d + 1 < it->ndim && idx[d] == it->shape[d]; d++) {
      idx[d] = 0;
      idx[d + 1]++;
      for (int j = 0; j < it->nops; j++) p[j] += it->stride[j][d + 1] - it->shape[d] * it->stride[j][d];
    }
  }
}

loom_status cpu_foreach(const char *op, loom_tensor *const *t, int n, cpu_loop_fn fn, const void *ctx) {
  if (n < 1 || n > CPU_MAX_OPERANDS) return core_set_error(LOOM_ERR_INTERNAL, "%s: %d operands", op, n);
  for (int j = 1; j < n; j++)
    if (!loom_shape_equal(t[j]->shape, t[0]->shape))
      return core_set_error(LOOM_ERR_INVALID, "%s: operand %d has shape %s, expected %s", op, j,
                            loom_shape_str(t[j]->shape), loom_shape_str(t[0]->shape));
  cpu_iter it;
  iter_build(&it, t, n);
  if (it.numel == 0) return LOOM_OK;
  int nt = cpu_threads();
  int64_t chunks = it.numel > CPU_PARALLEL_MIN && nt > 1 ? nt : 1;
#pragma omp parallel for num_threads(nt) if (chunks > 1) schedule(static)
  for (int64_t c = 0; c < chunks; c++)
    iter_range(&it, it.numel * c / chunks, it.numel * (c + 1) / chunks, fn, ctx);
  return LOOM_OK;
}

loom_status cpu_elementwise(const core_kctx *k, cpu_loop_fn fn, loom_dtype in_dt, loom_dtype out_dt) {
  const char *name = core_ops[k->op].name;
  loom_tensor *t[CPU_MAX_OPERANDS] = {k->out[0]};
  if (k->out[0]->dtype != out_dt)
    return core_set_error(LOOM_ERR_INVALID, "%s: output dtype %s, expected %s", name,
                          loom_dtype_name(k->out[0]->dtype), loom_dtype_name(out_dt));
  for (int i = 0; i < k->n_in; i++) {
    loom_dtype want = k->op == CORE_OP_where && i == 2 ? LOOM_BOOL : in_dt;
    if (k->in[i]->dtype != want)
      return core_set_error(LOOM_ERR_INVALID, "%s: input %d has dtype %s, expected %s", name, i,
                            loom_dtype_name(k->in[i]->dtype), loom_dtype_name(want));
    t[i + 1] = k->in[i];
  }
  return cpu_foreach(name, t, k->n_in + 1, fn, k);
}
