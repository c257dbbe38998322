/* embedding: rows of weight picked by integer indices. The forward is
 * index_select (after PyTorch's max_norm renormalisation of the rows it picks,
 * in place); the backward is its own node so that the padding row gets no
 * gradient: gw = scatter_add of g's rows, the padding ones zeroed first and,
 * with scale_grad_by_freq, each divided by its index's count in the batch. */
#include <math.h>

#include "core/autograd_impl.h"
#include "loom/nn_layers.h"

static void embedding_bw(core_node *n, const loom_tensor *g, loom_tensor **gin) {
  const loom_tensor *idx = n->saved[0]; /* I64 [rows] */
  loom_shape ws = n->in_shape[0];
  int64_t rows = core_numel(idx), dim = ws.d[1], pad = n->a.i[0];
  loom_scope_begin();
  loom_tensor *g2 = loom_reshape(g, LOOM_SHAPE(rows, dim));
  if (n->a.i[1] && g2) { /* scale_grad_by_freq: each row's gradient over its index's count */
    loom_tensor *cnt = loom_scatter_add(loom_zeros(LOOM_SHAPE(ws.d[0]), g2->dtype, g2->storage->device), 0, idx,
                                        loom_ones(LOOM_SHAPE(rows), g2->dtype, g2->storage->device));
    g2 = loom_div(g2, loom_reshape(loom_index_select(cnt, 0, idx), LOOM_SHAPE(rows, 1)));
  }
  if (pad != LOOM_NO_PADDING_IDX && g2) {
    loom_tensor *keep = loom_ne(idx, loom_scalar_like(idx, (double)pad));
    g2 = loom_mul(g2, loom_reshape(loom_to_dtype(keep, g2->dtype), LOOM_SHAPE(rows, 1)));
  }
  loom_tensor *where = loom_expand(loom_reshape(idx, LOOM_SHAPE(rows, 1)), LOOM_SHAPE(rows, dim));
  loom_tensor *zeros = g2 ? loom_zeros(ws, g2->dtype, g2->storage->device) : NULL;
  gin[0] = loom_keep(loom_scatter_add(zeros, 0, where ? loom_contiguous(where) : NULL, g2));
  loom_scope_end();
}

/* PyTorch's embedding_renorm_: each row of w that flat names whose p-norm
 * exceeds max_norm is scaled in place by max_norm / (norm + 1e-7), outside
 * autograd. Writes the whole weight back (one copy of it per call). */
static loom_status renorm_(loom_tensor *w, const loom_tensor *flat, double max_norm, double p) {
  int64_t rows = core_numel(flat), dim = w->shape.d[1];
  if (rows == 0) return LOOM_OK;
  loom_scope_begin();
  loom_no_grad_begin();
  const int d1[] = {1};
  loom_tensor *r = loom_index_select(w, 0, flat);
  loom_tensor *nrm = loom_norm(r, p, d1, 1, true);
  loom_tensor *lim = nrm ? loom_scalar_like(nrm, max_norm) : NULL;
  loom_tensor *scale = loom_where(loom_gt(nrm, lim), loom_div(lim, loom_add_scalar(nrm, 1e-7)), loom_ones_like(nrm));
  loom_tensor *where = loom_contiguous(loom_expand(loom_reshape(flat, LOOM_SHAPE(rows, 1)), LOOM_SHAPE(rows, dim)));
  loom_tensor *w2 = loom_scatter(w, 0, where, loom_mul(r, scale));
  loom_status st = w2 ? (loom_status)loom_copy_(w, w2) : loom_last_status();
  loom_no_grad_end();
  loom_scope_end();
  return st;
}

static loom_tensor *embed(const loom_tensor *indices, loom_tensor *weight, int64_t padding_idx, double max_norm,
                          double norm_type, bool freq) {
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
  if (!(max_norm >= 0) || isnan(norm_type)) {
    core_set_error(LOOM_ERR_INVALID, "embedding: max_norm must be >= 0 (0 = none) and norm_type a number "
                   "(0 = 2), got %g and %g", max_norm, norm_type);
    return NULL;
  }
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
  if (flat && core_check_indices("embedding", flat, num) == LOOM_OK &&
      (max_norm == 0 || renorm_(weight, flat, max_norm, norm_type == 0 ? 2 : norm_type) == LOOM_OK)) {
    loom_shape s = indices->shape;
    s.d[s.ndim++] = dim;
    out = loom_reshape(loom_index_select(weight, 0, flat), s);
  }
  loom_no_grad_end();
  const loom_tensor *w = weight;
  if (out && core_grad_needed(1, &w)) {
    core_node *n = core_record("embedding", embedding_bw, out, 1, &w);
    if (n) {
      core_save(n, flat);
      n->a.i[0] = padding_idx;
      n->a.i[1] = freq;
    }
  }
  loom_keep(out);
  loom_scope_end();
  return out;
}

loom_tensor *loom_embedding(const loom_tensor *indices, const loom_tensor *weight, int64_t padding_idx) {
  return embed(indices, (loom_tensor *)weight, padding_idx, 0, 2, false); /* no max_norm: weight is not written */
}

loom_tensor *loom_embedding_ex(const loom_tensor *indices, loom_tensor *weight, const loom_embedding_opts *opts) {
  static const loom_embedding_opts none;
  if (!opts) opts = &none;
  return embed(indices, weight, opts->has_padding_idx ? opts->padding_idx : LOOM_NO_PADDING_IDX, opts->max_norm,
               opts->norm_type, opts->scale_grad_by_freq);
}
