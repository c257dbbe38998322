/* Joins and splits: cat, stack, split, chunk, with their gradients. */
#include <stdlib.h>

#include "core/autograd_impl.h"

static void cat_backward(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  int d = (int)n->a.i[0];
  int64_t start = 0;
  for (int i = 0; i < n->n_in; i++) {
    int64_t len = n->in_shape[i].d[d];
    if (core_needs(n, i)) gin[i] = loom_narrow(g, d, start, len);
    start += len;
  }
}

loom_tensor *loom_cat(loom_tensor *const *ts, int n, int dim) {
  if (!ts || n <= 0) {
    core_set_error(LOOM_ERR_INVALID, "cat: expected a non-empty list of tensors");
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (!ts[i]) {
      core_null_error("cat: tensor %d is NULL", i);
      return NULL;
    }
  const loom_tensor *t0 = ts[0];
  int d = core_norm_dim("cat", t0, dim, false);
  if (d < 0) return NULL;
  loom_shape s = t0->shape;
  loom_dtype dt = t0->dtype;
  s.d[d] = 0;
  for (int i = 0; i < n; i++) {
    const loom_tensor *t = ts[i];
    if (t->shape.ndim != t0->shape.ndim) {
      core_set_error(LOOM_ERR_INVALID, "cat: tensor %d has shape %s but tensor 0 has shape %s", i,
                     loom_shape_str(t->shape), loom_shape_str(t0->shape));
      return NULL;
    }
    for (int j = 0; j < s.ndim; j++)
      if (j != d && t->shape.d[j] != t0->shape.d[j]) {
        core_set_error(LOOM_ERR_INVALID, "cat: sizes must match except in dim %d; tensor %d has shape %s, tensor 0 %s",
                       d, i, loom_shape_str(t->shape), loom_shape_str(t0->shape));
        return NULL;
      }
    if (!core_check_same_device("cat", t0, t)) return NULL;
    dt = loom_promote_types(dt, t->dtype);
    s.d[d] += t->shape.d[d];
  }
  loom_tensor *out = core_new(s, dt, t0->storage->device);
  if (!out) return NULL;
  int64_t start = 0;
  for (int i = 0; i < n && out; i++) {
    loom_no_grad_begin();
    loom_tensor *v = loom_narrow(out, d, start, ts[i]->shape.d[d]);
    core_untrack(v);
    loom_no_grad_end();
    if (!v || loom_copy_(v, ts[i]) != LOOM_OK) {
      core_untrack(out);
      loom_release(out);
      out = NULL;
    }
    loom_release(v);
    start += ts[i]->shape.d[d];
  }
  if (out && core_grad_needed(n, (const loom_tensor *const *)ts)) {
    core_node *nd = core_record("cat", cat_backward, out, n, (const loom_tensor *const *)ts);
    if (nd) nd->a.i[0] = d;
  }
  return out;
}

loom_tensor *loom_stack(loom_tensor *const *ts, int n, int dim) {
  if (!ts || n <= 0 || !ts[0]) {
    core_set_error(LOOM_ERR_INVALID, "stack: expected a non-empty list of tensors");
    return NULL;
  }
  for (int i = 1; i < n; i++)
    if (!ts[i] || !loom_shape_equal(ts[i]->shape, ts[0]->shape)) {
      core_set_error(LOOM_ERR_INVALID, "stack: tensor %d has shape %s but tensor 0 has shape %s", i,
                     ts[i] ? loom_shape_str(ts[i]->shape) : "NULL", loom_shape_str(ts[0]->shape));
      return NULL;
    }
  if (ts[0]->shape.ndim >= LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "stack: inputs already have %d dims, the most a tensor can have", LOOM_MAX_DIMS);
    return NULL;
  }
  int d = core_norm_dim("stack", ts[0], dim, true);
  if (d < 0) return NULL;
  loom_scope_begin();
  loom_tensor *small[16], **us = n <= 16 ? small : malloc(sizeof(loom_tensor *) * (size_t)n);
  loom_tensor *out = NULL;
  if (us) {
    for (int i = 0; i < n; i++) us[i] = loom_unsqueeze(ts[i], d);
    out = loom_keep(loom_cat(us, n, d));
    if (us != small) free(us);
  }
  loom_scope_end();
  return out;
}

int loom_split(const loom_tensor *t, int64_t split_size, int dim, loom_tensor **out, int max_out) {
  if (!t) return core_null_error("split: input is NULL"), -1;
  int d = core_norm_dim("split", t, dim, false);
  if (d < 0) return -1;
  int64_t size = t->shape.d[d];
  if (split_size <= 0 && !(split_size == 0 && size == 0)) {
    core_set_error(LOOM_ERR_INVALID, "split: split_size must be positive, got %lld", (long long)split_size);
    return -1;
  }
  int64_t pieces = size == 0 ? 1 : 1 + (size - 1) / split_size;
  if (!out || pieces > max_out) {
    core_set_error(LOOM_ERR_INVALID, "split: %lld pieces do not fit the %d output slots", (long long)pieces, max_out);
    return -1;
  }
  for (int64_t i = 0; i < pieces; i++) {
    int64_t start = i * split_size, len = size - start < split_size ? size - start : split_size;
    out[i] = loom_narrow(t, d, start, len);
    if (!out[i]) return -1;
  }
  return (int)pieces;
}

int loom_chunk(const loom_tensor *t, int chunks, int dim, loom_tensor **out, int max_out) {
  if (!t) return core_null_error("chunk: input is NULL"), -1;
  if (chunks <= 0) {
    core_set_error(LOOM_ERR_INVALID, "chunk: chunks must be positive, got %d", chunks);
    return -1;
  }
  int d = core_norm_dim("chunk", t, dim, false);
  if (d < 0) return -1;
  int64_t size = t->shape.d[d];
  int64_t split = (size + chunks - 1) / chunks;
  return loom_split(t, split > 0 ? split : 1, d, out, max_out);
}
