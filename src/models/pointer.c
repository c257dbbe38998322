/* Pointer network (Vinyals, Fortunato & Jaitly 2015): an encoder LSTM, a
 * decoder LSTMCell started from the encoder's final state and fed the input
 * it pointed at last (a learned start vector first), and additive attention
 * whose raw scores u_j = w_v^T tanh(W_q h + W_k e_j) are the pointer logits.
 * Positions already pointed at are masked with -inf. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "models/sequence_impl.h"

#define PTR_NAME "PointerNet"

typedef struct ptr_cfg {
  int64_t in_channels, hidden;
} ptr_cfg;

static loom_tensor *ptr_forward(loom_module *m, loom_tensor *const *in, int n_in);
static const loom_module_kind ptr_kind = {.type = "PointerNet", .forward = ptr_forward};

/* targets [N, L], each row a permutation of 0..L-1; returns them on host. */
static int64_t *check_targets(const loom_tensor *targets, int64_t n, int64_t l) {
  loom_shape sh = loom_shape_of(targets);
  if (sh.ndim != 2 || sh.d[0] != n || sh.d[1] != l) {
    core_set_error(LOOM_ERR_INVALID, PTR_NAME ": expected targets [%lld, %lld] (the input's N and L), got %s",
                   (long long)n, (long long)l, loom_shape_str(sh));
    return NULL;
  }
  int64_t *t = seq_host_ids(PTR_NAME, "targets", targets);
  bool *seen = t ? calloc((size_t)l, sizeof *seen) : NULL;
  if (t && !seen) core_set_error(LOOM_ERR_OOM, PTR_NAME ": out of host memory");
  bool ok = seen != NULL;
  for (int64_t r = 0; ok && r < n; r++) {
    memset(seen, 0, (size_t)l * sizeof *seen);
    for (int64_t i = 0; ok && i < l; i++) {
      int64_t v = t[r * l + i];
      if (v < 0 || v >= l) {
        core_set_error(LOOM_ERR_INVALID, PTR_NAME ": target %lld at [%lld, %lld] is outside the positions [0, %lld)",
                       (long long)v, (long long)r, (long long)i, (long long)l);
        ok = false;
      } else if (seen[v]) {
        core_set_error(LOOM_ERR_INVALID,
                       PTR_NAME ": targets row %lld is not a permutation of 0..%lld: position %lld repeats at step %lld",
                       (long long)r, (long long)(l - 1), (long long)v, (long long)i);
        ok = false;
      } else {
        seen[v] = true;
      }
    }
  }
  free(seen);
  if (!ok) {
    free(t);
    return NULL;
  }
  return t;
}

/* Index of the largest score of each row of u [N, L] (host floats) among the
 * positions not yet chosen. */
static bool greedy_picks(const loom_tensor *u, const bool *chosen, int64_t n, int64_t l, int64_t *pick) {
  float *v = malloc((size_t)(n * l) * sizeof *v);
  if (!v) {
    core_set_error(LOOM_ERR_OOM, PTR_NAME ": out of host memory");
    return false;
  }
  loom_scope_begin();
  loom_tensor *f = loom_to_dtype(u, LOOM_F32);
  int rc = f ? loom_to_host(f, v, (size_t)(n * l) * sizeof *v) : -1;
  loom_scope_end();
  for (int64_t r = 0; !rc && r < n; r++) {
    int64_t best = -1;
    for (int64_t j = 0; j < l; j++)
      if (!chosen[r * l + j] && (best < 0 || v[r * l + j] > v[r * l + best])) best = j;
    pick[r] = best;
  }
  free(v);
  return rc == 0;
}

/* x[r, pick[r], :] for every row: [N, F]. */
static loom_tensor *pointed(const loom_tensor *x, const int64_t *pick, int64_t n, int64_t f, int64_t *buf) {
  for (int64_t r = 0; r < n; r++)
    for (int64_t k = 0; k < f; k++) buf[r * f + k] = pick[r];
  loom_tensor *idx = loom_from_host(buf, LOOM_SHAPE(n, 1, f), LOOM_I64, loom_device_of(x));
  return loom_reshape(loom_gather(x, 1, idx), LOOM_SHAPE(n, f));
}

/* The decoding loop; t = host targets or NULL (greedy). Returns [N, L, L]. */
static loom_tensor *decode(loom_module *m, const loom_tensor *x, const int64_t *t, int64_t n, int64_t l,
                           int64_t f) {
  loom_tensor *h = NULL, *c = NULL;
  loom_tensor *enc = loom_rnn_forward(loom_module_child(m, "encoder"), x, NULL, NULL, &h, &c);
  if (!enc) return model_error(PTR_NAME, "encoder");
  h = loom_select(h, 0, 0);
  c = loom_select(c, 0, 0);
  loom_tensor *keys = model_run(m, "attention.W_k", enc); /* [N, L, H] */
  loom_tensor *start = loom_module_param(m, "decoder_start");
  loom_tensor *inp = loom_expand(loom_unsqueeze(start, 0), LOOM_SHAPE(n, f));
  loom_tensor **steps = calloc((size_t)l, sizeof *steps);
  bool *chosen = calloc((size_t)(n * l), sizeof *chosen);
  int64_t *pick = malloc((size_t)n * sizeof *pick), *buf = malloc((size_t)(n * f) * sizeof *buf);
  bool ok = keys && inp && steps && chosen && pick && buf;
  if (!steps || !chosen || !pick || !buf) core_set_error(LOOM_ERR_OOM, PTR_NAME ": out of host memory");
  else if (!ok) model_name_error(PTR_NAME);
  loom_module *cell = loom_module_child(m, "decoder");
  for (int64_t i = 0; ok && i < l; i++) {
    if (loom_lstm_cell_forward(cell, inp, h, c, &h, &c)) {
      model_error(PTR_NAME, "decoder");
      ok = false;
      break;
    }
    loom_tensor *q = model_run(m, "attention.W_q", h);
    loom_tensor *u = q ? model_run(m, "attention.w_v", loom_tanh(loom_add(keys, loom_unsqueeze(q, 1)))) : NULL;
    u = u ? loom_reshape(u, LOOM_SHAPE(n, l)) : NULL;
    if (u && i > 0) u = loom_masked_fill(u, loom_from_host(chosen, LOOM_SHAPE(n, l), LOOM_BOOL, loom_device_of(x)),
                                         -INFINITY);
    if (!u) {
      model_name_error(PTR_NAME);
      ok = false;
      break;
    }
    steps[i] = u;
    if (t) {
      for (int64_t r = 0; r < n; r++) pick[r] = t[r * l + i];
    } else if (!greedy_picks(u, chosen, n, l, pick)) {
      model_name_error(PTR_NAME);
      ok = false;
      break;
    }
    for (int64_t r = 0; r < n; r++) chosen[r * l + pick[r]] = true;
    if (i + 1 < l) {
      inp = pointed(x, pick, n, f, buf);
      ok = inp != NULL;
      if (!ok) model_name_error(PTR_NAME);
    }
  }
  loom_tensor *y = ok ? loom_stack(steps, (int)l, 1) : NULL;
  if (ok && !y) model_name_error(PTR_NAME);
  free(steps);
  free(chosen);
  free(pick);
  free(buf);
  return y;
}

loom_tensor *loom_pointer_net_forward(loom_module *m, const loom_tensor *x, const loom_tensor *targets) {
  if (!m || loom_module_kind_of(m) != &ptr_kind) {
    core_set_error(LOOM_ERR_INVALID, "loom_pointer_net_forward: expected a PointerNet, got %s",
                   m ? loom_module_type(m) : "NULL");
    return NULL;
  }
  if (!x) return NULL;
  const ptr_cfg *s = loom_module_state(m);
  if (!seq_check_sequence(PTR_NAME, x, s->in_channels)) return NULL;
  int64_t n = loom_size(x, 0), l = loom_size(x, 1);
  int64_t *t = NULL;
  if (targets && !(t = check_targets(targets, n, l))) return NULL;
  loom_scope_begin();
  loom_tensor *y = loom_keep(decode(m, x, t, n, l, s->in_channels));
  loom_scope_end();
  free(t);
  return y;
}

static loom_tensor *ptr_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1 && n_in != 2) {
    core_set_error(LOOM_ERR_INVALID, PTR_NAME ": forward takes (x) or (x, targets), got %d inputs", n_in);
    return NULL;
  }
  if (n_in == 2 && !in[1]) return NULL;
  return loom_pointer_net_forward(m, in[0], n_in == 2 ? in[1] : NULL);
}

loom_module *loom_model_pointer_net(const loom_model_opts *opts) {
  loom_model_opts o = model_opts(opts, 1, 1);
  if (!model_opts_ok(PTR_NAME, &o)) return NULL;
  ptr_cfg *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, PTR_NAME ": out of host memory");
    return NULL;
  }
  *s = (ptr_cfg){o.in_channels, o.hidden ? o.hidden : 128};
  loom_module *m = loom_module_new(&ptr_kind, s);
  if (!m) {
    free(s);
    return NULL;
  }
  /* The start vector: U(-1/sqrt(hidden), 1/sqrt(hidden)), as the LSTM weights. */
  double a = 1.0 / sqrt((double)s->hidden);
  loom_scope_begin();
  loom_tensor *start = loom_empty(LOOM_SHAPE(s->in_channels), LOOM_F32, loom_cpu());
  bool ok = start && !loom_init_uniform_(start, -a, a) && loom_module_add_parameter(m, "decoder_start", start);
  loom_scope_end();
  loom_rnn_options ro = {.batch_first = true};
  ok = ok && !loom_module_add(m, "encoder", loom_nn_lstm(s->in_channels, s->hidden, &ro));
  ok = ok && !loom_module_add(m, "decoder", loom_nn_lstm_cell(s->in_channels, s->hidden, NULL));
  ok = ok && !loom_module_add(m, "attention", loom_nn_additive_attention(s->hidden, s->hidden, s->hidden, 0));
  if (!ok) model_name_error(PTR_NAME);
  return model_done(m, ok);
}
