/* GPT-2's language-model loss and sampling (temperature, top-k, greedy). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "loom/autograd.h"
#include "loom/losses.h"
#include "loom/ops.h"
#include "models/gpt_impl.h"

loom_tensor *loom_gpt_loss(loom_module *gpt, const loom_tensor *ids) {
  if (!gpt_config_of(gpt) || !ids) return NULL;
  if (loom_ndim(ids) != 2 || loom_size(ids, 1) < 2) {
    core_set_error(LOOM_ERR_INVALID, "GPT-2 loss: expected token ids [N, L] with L >= 2, got %s",
                   loom_shape_str(loom_shape_of(ids)));
    return NULL;
  }
  loom_scope_begin();
  int64_t n = loom_size(ids, 0), l = loom_size(ids, 1);
  loom_tensor *logits = loom_forward(gpt, ids), *loss = NULL;
  if (logits) {
    int64_t v = loom_size(logits, 2);
    loom_tensor *pred = loom_reshape(loom_narrow(logits, 1, 0, l - 1), LOOM_SHAPE(n * (l - 1), v));
    loom_tensor *target = loom_reshape(loom_to_dtype(loom_narrow(ids, 1, 1, l - 1), LOOM_I64), LOOM_SHAPE(n * (l - 1)));
    loss = loom_cross_entropy(pred, target, NULL);
  }
  loom_keep(loss);
  loom_scope_end();
  return loss;
}

/* splitmix64: the draws of one generation call. */
static double uniform(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1.0p-53;
}

static int desc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x < y) - (x > y);
}

/* One token from logits row [v] (scratch: v floats). */
static int64_t pick(const float *row, int64_t v, const loom_sample_opts *o, float *scratch, uint64_t *rng) {
  int64_t best = 0;
  for (int64_t i = 1; i < v; i++)
    if (row[i] > row[best]) best = i;
  if (o->greedy) return best;
  float cut = -INFINITY;
  if (o->top_k > 0 && o->top_k < v) {
    memcpy(scratch, row, (size_t)v * sizeof *scratch);
    qsort(scratch, (size_t)v, sizeof *scratch, desc);
    cut = scratch[o->top_k - 1]; /* ties with the k-th are kept, as Hugging Face's top-k filter does */
  }
  double t = o->temperature > 0 ? o->temperature : 1.0, total = 0;
  for (int64_t i = 0; i < v; i++) {
    double p = row[i] >= cut ? exp(((double)row[i] - row[best]) / t) : 0;
    scratch[i] = (float)p;
    total += p;
  }
  double u = uniform(rng) * total;
  for (int64_t i = 0; i < v; i++) {
    u -= scratch[i];
    if (u < 0 && scratch[i] > 0) return i;
  }
  return best;
}

/* Appends one sampled token to every row of seq; returns the longer sequence. */
static loom_tensor *step(loom_module *gpt, const gpt_config *c, loom_tensor *seq, const loom_sample_opts *o,
                         float *host, float *scratch, int64_t *next, uint64_t *rng) {
  int64_t n = loom_size(seq, 0), l = loom_size(seq, 1);
  loom_tensor *ctx = l > c->n_ctx ? loom_narrow(seq, 1, l - c->n_ctx, c->n_ctx) : seq;
  loom_tensor *logits = loom_forward(gpt, ctx);
  if (!logits) return NULL;
  loom_tensor *last = loom_to_dtype(loom_select(logits, 1, loom_size(logits, 1) - 1), LOOM_F32);
  if (!last || loom_to_host(last, host, (size_t)(n * c->vocab) * sizeof *host)) return NULL;
  for (int64_t i = 0; i < n; i++) next[i] = pick(host + i * c->vocab, c->vocab, o, scratch, rng);
  loom_tensor *col = loom_from_host(next, LOOM_SHAPE(n, 1), LOOM_I64, loom_device_of(seq));
  loom_tensor *parts[2] = {seq, col};
  return col ? loom_cat(parts, 2, 1) : NULL;
}

loom_tensor *loom_gpt_generate(loom_module *gpt, const loom_tensor *prompt, int64_t max_new,
                               const loom_sample_opts *opts) {
  const gpt_config *c = gpt_config_of(gpt);
  if (!c || !prompt) return NULL;
  loom_sample_opts o = opts ? *opts : (loom_sample_opts){0};
  if (loom_ndim(prompt) != 2 || loom_size(prompt, 1) < 1 || loom_dtype_of(prompt) != LOOM_I64 || max_new < 0 ||
      o.top_k < 0 || !(o.temperature >= 0) || isinf(o.temperature)) {
    core_set_error(LOOM_ERR_INVALID,
                   "GPT-2 generate: expected a prompt [N, L >= 1] of i64 ids, max_new >= 0, top_k >= 0 and a "
                   "finite temperature >= 0; got %s %s, max_new %lld, top_k %d, temperature %g",
                   loom_dtype_name(loom_dtype_of(prompt)), loom_shape_str(loom_shape_of(prompt)),
                   (long long)max_new, o.top_k, o.temperature);
    return NULL;
  }
  int64_t n = loom_size(prompt, 0);
  float *host = malloc((size_t)(n * c->vocab) * sizeof *host), *scratch = malloc((size_t)c->vocab * sizeof *scratch);
  int64_t *next = malloc((size_t)n * sizeof *next);
  if (!host || !scratch || !next) {
    free(host), free(scratch), free(next);
    core_set_error(LOOM_ERR_OOM, "GPT-2 generate: out of host memory");
    return NULL;
  }
  bool was_training = loom_module_training(gpt);
  loom_module_train(gpt, false);
  loom_no_grad_begin();
  uint64_t rng = o.seed;
  /* Each step's logits go with its own scope; the (small) sequences stay in the outer one. */
  loom_scope_begin();
  loom_tensor *seq = loom_clone(prompt);
  for (int64_t i = 0; i < max_new && seq; i++) {
    loom_scope_begin();
    seq = loom_keep(step(gpt, c, seq, &o, host, scratch, next, &rng));
    loom_scope_end();
  }
  loom_keep(seq);
  loom_scope_end();
  loom_no_grad_end();
  loom_module_train(gpt, was_training);
  free(host), free(scratch), free(next);
  return seq;
}
