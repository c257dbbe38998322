/* embedding: rows of weight picked by integer indices. The forward is
 * index_select; the backward is its own node so that the padding row gets no
 * gradient: gw = scatter_add of g's rows, the padding ones zeroed first. */
#include "core/autograd_impl.h"
#include "loom/nn_layers.h"

static void embedding_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *idx = n->saved[0]; /* I64 [rows] */
  loom_shape ws = n->in_shape[0];
  int64_t rows = core_numel(idx), dim = ws.d[1], pad = n->a.i[0];
  loom_scope_begin();
  loom_tensor *g2 = loom_reshape(g, LOOM_SHAPE(rows, dim));
  if (pad != LOOM_NO_PADDING_IDX && g2) {
    loom_tensor *keep = loom_ne(idx, loom_scalar_like(idx, (double)pad));
    g2 = loom_mul(g2, loom_reshape(loom_to_dtype(keep, g2->dtype), LOOM_SHAPE(rows, 1)));
  }
  loom_tensor *where = loom_expand(loom_reshape(idx, LOOM_SHAPE(rows, 1)), LOOM_SHAPE(rows, dim));
  loom_tensor *zeros = g2 ? loom_zeros(ws, g2->dtype, g2->storage->device) : NULL;
  gin[0] = loom_keep(loom_scatter_add(zeros, 0, where ? loom_contiguous(where) : NULL, g2));
  loom_scope_end();
}

loom_tensor *loom_embedding(const loom_tensor *indices, const loom_tensor *weight, int64_t padding_idx) {
  if (!indices || !weight) {
    core_null_error("embedding: %s is NULL", !indices ? "indices" : "weight");
    return NULL;
  }
  if (weight->shape.ndim != 2 || !loom_dtype_is_float(weight->dtype)) {
    core_set_error(LOOM_ERR_INVALID, "embedding: expected a floating weight [num_embeddings, embedding_dim], got %s %s",
                   loom_dtype_name(weight->dtype), loom_shape_str(weight->shape));
    return NULL;
  }
  if (indices->dtype != LOOM_I64 && indices->dtype != LOOM_I32) {
    core_set_error(LOOM_ERR_INVALID, "embedding: expected i64 or i32 indices, got %s %s",
                   loom_dtype_name(indices->dtype), loom_shape_str(indices->shape));
    return NULL;
  }
  if (!core_check_same_device("embedding", indices, weight)) return NULL;
  int64_t num = weight->shape.d[0], dim = weight->shape.d[1];
  if (padding_idx != LOOM_NO_PADDING_IDX) {
    if (padding_idx < -num || padding_idx >= num) {
      core_set_error(LOOM_ERR_INVALID, "embedding: padding_idx %lld is out of range for %lld embeddings",
                     (long long)padding_idx, (long long)num);
      return NULL;
    }
    if (padding_idx < 0) padding_idx += num;
  }
  if (indices->shape.ndim + 1 > LOOM_MAX_DIMS) {
    core_set_error(LOOM_ERR_INVALID, "embedding: indices %s have too many dims", loom_shape_str(indices->shape));
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *out = NULL;
  loom_no_grad_begin();
  loom_tensor *flat = loom_contiguous(loom_reshape(loom_to_dtype(indices, LOOM_I64), LOOM_SHAPE(-1)));
  if (flat && core_check_indices("embedding", flat, num) == LOOM_OK) {
    loom_shape s = indices->shape;
    s.d[s.ndim++] = dim;
    out = loom_reshape(loom_index_select(weight, 0, flat), s);
  }
  loom_no_grad_end();
  if (out && core_grad_needed(1, &weight)) {
    core_node *n = core_record("embedding", embedding_bw, out, 1, &weight);
    if (n) {
      core_save(n, flat);
      n->a.i[0] = padding_idx;
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}
