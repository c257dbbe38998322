/* torchsummary-style model summaries: one forward with a hook that records a
 * row per module call, then a table or a stats struct (see loom/nn_summary.h). */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "loom/nn.h"
#include "loom/autograd.h"
#include "nn/module_impl.h"

#define MB (1024.0 * 1024.0)

typedef struct collector {
  loom_module *root;
  loom_summary_row *rows;
  int n, cap;
  bool oom;
} collector;

static bool skipped(const collector *c, const loom_module *m) {
  /* torchsummary leaves out Sequential, ModuleList and the model itself */
  const char *type = m->kind->type ? m->kind->type : "";
  if (!strcmp(type, "Sequential") || !strcmp(type, "ModuleList")) return true;
  return m == c->root && m->n_children > 0;
}

static void hook(loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out, void *user) {
  collector *c = user;
  if (c->oom || skipped(c, m)) return;
  if (c->n == c->cap) {
    int cap = c->cap ? 2 * c->cap : 16;
    loom_summary_row *rows = realloc(c->rows, (size_t)cap * sizeof *rows);
    if (!rows) {
      c->oom = true;
      return;
    }
    c->rows = rows;
    c->cap = cap;
  }
  loom_summary_row *r = &c->rows[c->n++];
  memset(r, 0, sizeof *r);
  r->type = m->kind->type ? m->kind->type : "Module";
  snprintf(r->name, sizeof r->name, "%s-%d", r->type, c->n);
  r->output = loom_shape_of(out);
  for (int i = 0; i < m->n_params; i++) {
    int64_t k = loom_numel(m->params[i].t);
    r->params += k;
    if (loom_requires_grad(m->params[i].t)) r->trainable += k;
  }
  r->macs = m->kind->macs ? m->kind->macs(m, in, n_in, out) : 0;
}

/* Each module's training flag, saved and restored around the eval-mode run. */
typedef struct flags {
  bool *v;
  int n, cap, saved;
  bool oom;
} flags;

static void save_flag(loom_module *m, void *user) {
  flags *f = user;
  if (f->n == f->cap) {
    int cap = f->cap ? 2 * f->cap : 32;
    bool *v = realloc(f->v, (size_t)cap * sizeof *v);
    if (!v) {
      f->oom = true;
      return;
    }
    f->v = v;
    f->cap = cap;
  }
  f->v[f->n++] = m->training;
}

static void restore_flag(loom_module *m, void *user) {
  flags *f = user;
  if (f->n < f->saved) m->training = f->v[f->n++];
}

static loom_tensor *random_input(loom_shape s, loom_dtype dt, loom_device dev) {
  if (loom_dtype_is_float(dt)) return loom_rand(s, dt, dev);
  if (dt == LOOM_BOOL) return loom_zeros(s, dt, dev);
  return loom_randint(0, 2, s, dt, dev); /* valid ids for any Embedding */
}

/* Runs m once on in[0..n_in) in eval mode under no_grad with the recording
 * hook, then restores the training flags and the generator of in[0]'s device. */
static int collect(loom_module *m, loom_tensor *const *in, int n_in, loom_summary_stats *out) {
  flags fl = {0};
  loom_module_apply(m, save_flag, &fl);
  if (fl.oom) {
    free(fl.v);
    return core_set_error(LOOM_ERR_OOM, "summary: out of host memory");
  }
  loom_device dev = loom_device_of(in[0]);
  uint64_t seed, offset;
  loom_rng_get_state(dev, &seed, &offset);
  loom_module_train(m, false);

  collector c = {.root = m};
  loom_forward_hook user_hook;
  void *user_data;
  loom_get_forward_hook(&user_hook, &user_data);
  loom_set_forward_hook(hook, &c);
  loom_no_grad_begin();
  loom_scope_begin();
  bool ok = loom_forward_n(m, in, n_in) != NULL;
  loom_scope_end();
  loom_no_grad_end();
  loom_set_forward_hook(user_hook, user_data);

  loom_rng_set_state(dev, seed, offset);
  fl.saved = fl.n;
  fl.n = 0;
  loom_module_apply(m, restore_flag, &fl);
  free(fl.v);

  if (!ok || c.oom) {
    free(c.rows);
    if (c.oom) return core_set_error(LOOM_ERR_OOM, "summary: out of host memory");
    char msg[512];
    snprintf(msg, sizeof msg, "%s", loom_last_error()); /* the error buffer is rewritten below */
    char shapes[256] = "";
    for (int i = 0, len = 0; i < n_in && len < (int)sizeof shapes; i++)
      len += snprintf(shapes + len, sizeof shapes - (size_t)len, "%s%s", i ? " + " : "",
                      loom_shape_str(loom_shape_of(in[i])));
    return core_set_error(loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID,
                          "summary: forward of %s on input %s (%s, %s) failed: %s", loom_module_type(m), shapes,
                          loom_dtype_name(loom_dtype_of(in[0])), loom_device_name(dev), msg);
  }
  out->rows = c.rows;
  out->n_rows = c.n;
  int64_t input_elements = 0;
  for (int i = 0; i < n_in; i++) input_elements += loom_numel(in[i]);
  for (int i = 0; i < c.n; i++) {
    out->macs += c.rows[i].macs;
    out->output_elements += loom_shape_numel(c.rows[i].output);
  }
  out->flops = 2 * out->macs;
  out->total_params = loom_module_num_params(m, false);
  out->trainable_params = loom_module_num_params(m, true);
  out->non_trainable_params = out->total_params - out->trainable_params;
  out->input_mb = (double)input_elements * 4.0 / MB;
  out->forward_backward_mb = 2.0 * (double)out->output_elements * 4.0 / MB;
  out->params_mb = (double)out->total_params * 4.0 / MB;
  out->total_mb = out->input_mb + out->forward_backward_mb + out->params_mb;
  return LOOM_OK;
}

int loom_summary_stats_get(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev,
                           loom_summary_stats *out) {
  if (!out) return core_set_error(LOOM_ERR_INVALID, "summary: output struct is NULL");
  memset(out, 0, sizeof *out);
  if (!m) return core_null_error("summary: module is NULL");
  if (input.ndim < 1 || input.ndim > LOOM_MAX_DIMS)
    return core_set_error(LOOM_ERR_INVALID, "summary: input shape needs 1 to %d dims (batch first), got %d",
                          LOOM_MAX_DIMS, input.ndim);
  for (int i = 0; i < input.ndim; i++)
    if (input.d[i] <= 0)
      return core_set_error(LOOM_ERR_INVALID, "summary: input shape %s has a size < 1", loom_shape_str(input));
  /* the random input leaves the device's generator as it was */
  uint64_t seed, offset;
  loom_rng_get_state(dev, &seed, &offset);
  loom_scope_begin();
  loom_tensor *x = random_input(input, dt, dev);
  int st = x ? collect(m, &x, 1, out) : (int)loom_last_status(); /* loom_rand set the error */
  loom_scope_end();
  loom_rng_set_state(dev, seed, offset);
  return st;
}

int loom_summary_stats_get_n(loom_module *m, loom_tensor *const *inputs, int n_in, loom_summary_stats *out) {
  if (!out) return core_set_error(LOOM_ERR_INVALID, "summary: output struct is NULL");
  memset(out, 0, sizeof *out);
  if (!m) return core_null_error("summary: module is NULL");
  if (!inputs || n_in < 1) return core_set_error(LOOM_ERR_INVALID, "summary: needs at least one input, got %d", n_in);
  for (int i = 0; i < n_in; i++)
    if (!inputs[i]) return core_null_error("summary: input %d is NULL", i);
  return collect(m, inputs, n_in, out);
}

void loom_summary_stats_free(loom_summary_stats *s) {
  if (!s) return;
  free(s->rows);
  memset(s, 0, sizeof *s);
}

int64_t loom_module_macs(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev) {
  loom_summary_stats s;
  if (loom_summary_stats_get(m, input, dt, dev, &s)) return -1;
  int64_t macs = s.macs;
  loom_summary_stats_free(&s);
  return macs;
}

/* ---- the table ---- */

typedef struct text {
  char *s;
  size_t n, cap;
  bool oom;
} text;

static void put(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(text *t, const char *fmt, ...) {
  if (t->oom) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if (t->n + (size_t)k + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->n + (size_t)k + 1) cap *= 2;
    char *s = realloc(t->s, cap);
    if (!s) {
      t->oom = true;
      return;
    }
    t->s = s;
    t->cap = cap;
  }
  va_start(ap, fmt);
  vsnprintf(t->s + t->n, t->cap - t->n, fmt, ap);
  va_end(ap);
  t->n += (size_t)k;
}

/* 1234567 -> "1,234,567" (Python's "{:,}") into buf. */
static const char *commas(int64_t v, char *buf) {
  char digits[32];
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)u);
  char *p = buf;
  if (v < 0) *p++ = '-';
  for (int i = 0; i < n; i++) {
    if (i > 0 && (n - i) % 3 == 0) *p++ = ',';
    *p++ = digits[i];
  }
  *p = '\0';
  return buf;
}

/* "[-1, 32, 26, 26]": the batch dimension shown as -1. */
static const char *batchless(loom_shape s, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < s.ndim && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", i == 0 ? -1LL : (long long)s.d[i]);
  if (n < size) snprintf(buf + n, size - n, "]");
  return buf;
}

#define RULE_WIDTH 96

static void rule(text *t, char ch) {
  char line[RULE_WIDTH + 2];
  memset(line, ch, RULE_WIDTH);
  line[RULE_WIDTH] = '\n';
  line[RULE_WIDTH + 1] = '\0';
  put(t, "%s", line);
}

/* The table of s, then the line saying what it was measured on (`input`). */
static char *table(loom_summary_stats *s, const char *input) {
  text t = {0};
  char a[32], b[32], c[32], shape[160];
  rule(&t, '-');
  put(&t, "%20s  %25s %15s %15s %15s\n", "Layer (type)", "Output Shape", "Param #", "MACs", "FLOPs");
  rule(&t, '=');
  for (int i = 0; i < s->n_rows; i++) {
    const loom_summary_row *r = &s->rows[i];
    put(&t, "%20s  %25s %15s %15s %15s\n", r->name, batchless(r->output, shape, sizeof shape), commas(r->params, a),
        commas(r->macs, b), commas(2 * r->macs, c));
  }
  rule(&t, '=');
  put(&t, "Total params: %s\n", commas(s->total_params, a));
  put(&t, "Trainable params: %s\n", commas(s->trainable_params, a));
  put(&t, "Non-trainable params: %s\n", commas(s->non_trainable_params, a));
  put(&t, "Total MACs: %s\n", commas(s->macs, a));
  put(&t, "Total FLOPs: %s\n", commas(s->flops, a));
  rule(&t, '-');
  put(&t, "Input size (MB): %.2f\n", s->input_mb);
  put(&t, "Forward/backward pass size (MB): %.2f\n", s->forward_backward_mb);
  put(&t, "Params size (MB): %.2f\n", s->params_mb);
  put(&t, "Estimated Total Size (MB): %.2f\n", s->total_mb);
  rule(&t, '-');
  put(&t, "%s\n", input);
  loom_summary_stats_free(s);
  if (t.oom) {
    free(t.s);
    core_set_error(LOOM_ERR_OOM, "summary: out of host memory");
    return NULL;
  }
  return t.s;
}

char *loom_summary_string(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev) {
  loom_summary_stats s;
  if (loom_summary_stats_get(m, input, dt, dev, &s)) return NULL;
  char line[256];
  snprintf(line, sizeof line, "Input %s (%s, %s): MACs, FLOPs and sizes are for the whole batch of %lld",
           loom_shape_str(input), loom_dtype_name(dt), loom_device_name(dev), (long long)input.d[0]);
  return table(&s, line);
}

static int print(char *s, FILE *out) {
  if (!s) return loom_last_status() ? loom_last_status() : LOOM_ERR_INTERNAL;
  int st = fputs(s, out ? out : stdout) < 0 ? LOOM_ERR_IO : LOOM_OK;
  free(s);
  if (st) core_set_error(LOOM_ERR_IO, "summary: cannot write the table");
  return st;
}

int loom_summary(loom_module *m, loom_shape input, loom_dtype dt, loom_device dev, FILE *out) {
  return print(loom_summary_string(m, input, dt, dev), out);
}

int loom_summary_n(loom_module *m, loom_tensor *const *inputs, int n_in, FILE *out) {
  loom_summary_stats s;
  if (loom_summary_stats_get_n(m, inputs, n_in, &s)) return loom_last_status();
  char line[512];
  int len = snprintf(line, sizeof line, "Inputs");
  for (int i = 0; i < n_in && len < (int)sizeof line; i++)
    len += snprintf(line + len, sizeof line - (size_t)len, "%s %s %s", i ? "," : "",
                    loom_shape_str(loom_shape_of(inputs[i])), loom_dtype_name(loom_dtype_of(inputs[i])));
  if (len < (int)sizeof line)
    snprintf(line + len, sizeof line - (size_t)len, " (%s): MACs, FLOPs and sizes are for these inputs",
             loom_device_name(loom_device_of(inputs[0])));
  return print(table(&s, line), out);
}
