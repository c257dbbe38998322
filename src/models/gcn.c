/* GCN (Kipf & Welling 2017) as PyTorch Geometric's GCNConv stack: each conv
 * is H' = A_hat (H W^T) + b with "lin" a bias-free Linear [out, in] (glorot
 * uniform) and "bias" [out] (zeros), A_hat given dense [V, V] or sparse
 * (COO indices [2, nnz] + values [nnz], through loom_sparse_mm). The model is
 * conv1, ReLU, dropout, conv2. loom_gcn_adjacency builds A_hat =
 * D^-1/2 (A + I) D^-1/2 of an undirected edge list on the host. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "models/models_impl.h"

typedef struct gcn_conv {
  int64_t in, out;
} gcn_conv;

typedef struct gcn_state {
  int64_t in_channels, hidden, num_classes;
  double dropout;
} gcn_state;

/* Checks the graph inputs of a forward: x [V, F] floating (F = in_features
 * when > 0), then a dense [V, V] adjacency or COO indices + values. */
static bool check_graph(const char *who, loom_tensor *const *in, int n_in, int64_t in_features) {
  if (n_in != 2 && n_in != 3) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: forward takes {x [V, F], adjacency [V, V]} or {x [V, F], indices [2, nnz], values [nnz]}, "
                   "got %d inputs", who, n_in);
    return false;
  }
  for (int i = 0; i < n_in; i++)
    if (!in[i]) {
      core_null_error("%s: input %d is NULL", who, i);
      return false;
    }
  loom_shape xs = loom_shape_of(in[0]);
  if (xs.ndim != 2 || !loom_dtype_is_float(loom_dtype_of(in[0])) || (in_features > 0 && xs.d[1] != in_features)) {
    char want[32] = "F";
    if (in_features > 0) snprintf(want, sizeof want, "%lld", (long long)in_features);
    core_set_error(LOOM_ERR_INVALID, "%s: expected node features x [V, %s] (floating), got %s %s", who, want,
                   loom_dtype_name(loom_dtype_of(in[0])), loom_shape_str(xs));
    return false;
  }
  if (n_in == 2) {
    loom_shape as = loom_shape_of(in[1]);
    if (as.ndim != 2 || as.d[0] != xs.d[0] || as.d[1] != xs.d[0]) {
      core_set_error(LOOM_ERR_INVALID, "%s: expected a dense adjacency [V, V] = [%lld, %lld] for x %s, got %s", who,
                     (long long)xs.d[0], (long long)xs.d[0], loom_shape_str(xs), loom_shape_str(as));
      return false;
    }
  }
  return true;
}

/* A_hat @ h: dense matmul or sparse_mm over V nodes. */
static loom_tensor *propagate(loom_tensor *const *in, int n_in, const loom_tensor *h) {
  int64_t v = loom_shape_of(in[0]).d[0];
  return n_in == 2 ? loom_matmul(in[1], h) : loom_sparse_mm(in[1], in[2], v, v, h);
}

static loom_tensor *conv_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gcn_conv *s = loom_module_state(m);
  if (!check_graph("GCNConv", in, n_in, s->in)) return NULL;
  loom_scope_begin();
  loom_tensor *h = model_run(m, "lin", in[0]);
  loom_tensor *y = h ? propagate(in, n_in, h) : NULL;
  if (h && !y) model_name_error("GCNConv: propagate");
  if (y) y = loom_add(y, loom_module_param(m, "bias"));
  loom_keep(y);
  loom_scope_end();
  return y;
}

static void conv_reset(loom_module *m) {
  loom_init_xavier_uniform_(loom_module_param(m, "lin.weight"), 1.0);
  loom_init_zeros_(loom_module_param(m, "bias"));
}

/* The propagation A_hat @ h only: the lin child's row counts X W. */
static int64_t conv_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  const gcn_conv *s = loom_module_state(m);
  int64_t v = loom_shape_of(in[0]).d[0];
  int64_t spread = n_in == 2 ? v * v : loom_shape_of(in[1]).d[1];
  return spread * s->out;
}

static const loom_module_kind conv_kind = {
    .type = "GCNConv", .forward = conv_forward, .macs = conv_macs, .reset_parameters = conv_reset};

static loom_module *gcn_conv_new(int64_t in, int64_t out) {
  gcn_conv *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "GCNConv: out of host memory");
    return NULL;
  }
  *s = (gcn_conv){in, out};
  loom_module *m = loom_module_new(&conv_kind, s);
  if (!m) {
    free(s);
    return NULL;
  }
  /* PyG's order: the conv's own bias, then lin.weight */
  loom_scope_begin();
  bool ok = loom_module_add_parameter(m, "bias", loom_zeros(LOOM_SHAPE(out), LOOM_F32, loom_cpu())) != NULL;
  loom_linear_opts lo = {.no_bias = true};
  ok = ok && !loom_module_add(m, "lin", loom_nn_linear(in, out, &lo));
  loom_scope_end();
  if (ok) conv_reset(m);
  return model_done(m, ok);
}

static loom_tensor *gcn_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const gcn_state *s = loom_module_state(m);
  if (!check_graph("GCN", in, n_in, s->in_channels)) return NULL;
  loom_scope_begin();
  loom_tensor *args[3] = {in[0], in[1], n_in == 3 ? in[2] : NULL};
  loom_tensor *h = loom_forward_n(loom_module_child(m, "conv1"), args, n_in);
  if (!h) model_error("GCN", "conv1");
  h = loom_dropout(loom_relu(h), s->dropout, loom_module_training(m));
  loom_tensor *y = NULL;
  if (h) {
    args[0] = h;
    y = loom_forward_n(loom_module_child(m, "conv2"), args, n_in);
    if (!y) model_error("GCN", "conv2");
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

static const loom_module_kind gcn_kind = {.type = "GCN", .forward = gcn_forward};

loom_module *loom_model_gcn(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 4, 34);
  if (!model_opts_ok("GCN", &o)) return NULL;
  gcn_state *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "GCN: out of host memory");
    return NULL;
  }
  *s = (gcn_state){o.in_channels, o.hidden ? o.hidden : 16, o.num_classes,
                   o.set_dropout || o.dropout ? o.dropout : 0.5};
  loom_module *m = loom_module_new(&gcn_kind, s);
  if (!m) {
    free(s);
    return NULL;
  }
  bool ok = !loom_module_add(m, "conv1", gcn_conv_new(s->in_channels, s->hidden));
  ok = ok && !loom_module_add(m, "conv2", gcn_conv_new(s->hidden, s->num_classes));
  return model_done(m, ok);
}

/* ---- A_hat ---- */

static int cmp_pair(const void *a, const void *b) {
  const int64_t *x = a, *y = b;
  return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : x[1] != y[1] ? (x[1] < y[1] ? -1 : 1) : 0;
}

int loom_gcn_adjacency(const loom_tensor *edge_index, int64_t num_nodes, loom_tensor **indices, loom_tensor **values) {
  const char *who = "gcn_adjacency";
  if (!indices || !values) return core_null_error("%s: indices and values outputs are required", who);
  *indices = *values = NULL;
  if (!edge_index) return core_null_error("%s: edge_index is NULL", who);
  loom_shape es = loom_shape_of(edge_index);
  if (loom_dtype_of(edge_index) != LOOM_I64 || es.ndim != 2 || es.d[0] != 2)
    return core_set_error(LOOM_ERR_INVALID, "%s: edge_index must be i64 [2, E], got %s %s", who,
                          loom_dtype_name(loom_dtype_of(edge_index)), loom_shape_str(es));
  if (num_nodes < 1) return core_set_error(LOOM_ERR_INVALID, "%s: num_nodes %lld must be >= 1", who, (long long)num_nodes);
  int64_t E = es.d[1], cap = 2 * E + num_nodes;
  int64_t *edges = malloc((size_t)E * 2 * sizeof(int64_t) + 1);
  int64_t *pairs = malloc((size_t)cap * 2 * sizeof(int64_t));
  int64_t *deg = calloc((size_t)num_nodes, sizeof(int64_t));
  float *vals = malloc((size_t)cap * sizeof(float));
  int64_t *flat = malloc((size_t)cap * 2 * sizeof(int64_t));
  loom_status st = LOOM_OK;
  if (!edges || !pairs || !deg || !vals || !flat)
    st = core_set_error(LOOM_ERR_OOM, "%s: out of host memory for %lld edges", who, (long long)E);
  if (!st && E > 0 && loom_to_host(edge_index, edges, (size_t)E * 2 * sizeof(int64_t))) st = loom_last_status();
  int64_t n = 0;
  for (int64_t e = 0; e < E && !st; e++) {
    int64_t a = edges[e], b = edges[E + e];
    if (a < 0 || a >= num_nodes || b < 0 || b >= num_nodes) {
      st = core_set_error(LOOM_ERR_INVALID, "%s: edge %lld (%lld, %lld) has an endpoint outside [0, %lld)", who,
                          (long long)e, (long long)a, (long long)b, (long long)num_nodes);
      break;
    }
    if (a == b) continue; /* self loops come once, below */
    pairs[2 * n] = a, pairs[2 * n + 1] = b, n++;
    pairs[2 * n] = b, pairs[2 * n + 1] = a, n++;
  }
  for (int64_t i = 0; i < num_nodes && !st; i++) pairs[2 * n] = pairs[2 * n + 1] = i, n++;
  int64_t nnz = 0;
  if (!st) {
    qsort(pairs, (size_t)n, 2 * sizeof(int64_t), cmp_pair);
    for (int64_t p = 0; p < n; p++)
      if (p == 0 || cmp_pair(pairs + 2 * p, pairs + 2 * (p - 1)) != 0) {
        pairs[2 * nnz] = pairs[2 * p], pairs[2 * nnz + 1] = pairs[2 * p + 1];
        deg[pairs[2 * nnz]]++;
        nnz++;
      }
    for (int64_t p = 0; p < nnz; p++) {
      int64_t r = pairs[2 * p], c = pairs[2 * p + 1];
      vals[p] = (float)(1.0 / sqrt((double)deg[r] * (double)deg[c]));
      flat[p] = r, flat[nnz + p] = c;
    }
    loom_device dev = loom_device_of(edge_index);
    loom_scope_begin();
    loom_tensor *ti = loom_from_host(flat, LOOM_SHAPE(2, nnz), LOOM_I64, dev);
    loom_tensor *tv = ti ? loom_from_host(vals, LOOM_SHAPE(nnz), LOOM_F32, dev) : NULL;
    if (tv) *indices = loom_keep(ti), *values = loom_keep(tv);
    else st = loom_last_status() ? loom_last_status() : LOOM_ERR_OOM;
    loom_scope_end();
  }
  free(edges);
  free(pairs);
  free(deg);
  free(vals);
  free(flat);
  return st;
}
