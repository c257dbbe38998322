/* The checked root module of every zoo model, options and init helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/ops.h"
#include "models/models_impl.h"

loom_tensor *model_error(const char *model, const char *path) {
  char msg[3600];
  const char *old = loom_last_error();
  loom_status st = loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID;
  if (!strncmp(old, "at ", 3)) snprintf(msg, sizeof msg, "%s: at %s.%s", model, path, old + 3);
  else snprintf(msg, sizeof msg, "%s: at %s: %s", model, path, old);
  core_set_error(st, "%s", msg);
  return NULL;
}

loom_tensor *model_name_error(const char *fmt, ...) {
  char prefix[256], msg[3600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  const char *old = loom_last_error();
  size_t n = strlen(prefix);
  if (!strncmp(old, prefix, n) && old[n] == ':') return NULL; /* named already */
  snprintf(msg, sizeof msg, "%s: %s", prefix, old);
  core_set_error(loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID, "%s", msg);
  return NULL;
}

bool model_one_input(const char *model, int n_in) {
  if (n_in == 1) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: forward takes 1 input, got %d", model, n_in);
  return false;
}

/* Runs child `name` of m on x; a failure's error gets "at name: " in front. */
loom_tensor *model_run(loom_module *m, const char *name, loom_tensor *x) {
  if (!x) return NULL;
  loom_tensor *y = loom_forward(loom_module_child(m, name), x);
  if (!y) {
    char msg[3600];
    const char *old = loom_last_error();
    if (!strncmp(old, "at ", 3)) snprintf(msg, sizeof msg, "at %s.%s", name, old + 3);
    else snprintf(msg, sizeof msg, "at %s: %s", name, old);
    core_set_error(loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID, "%s", msg);
  }
  return y;
}

loom_module *model_done(loom_module *m, bool ok) {
  if (ok) return m;
  loom_module_free(m);
  return NULL;
}

loom_module *model_root_new(const loom_module_kind *kind, const model_root *cfg) {
  model_root *s = malloc(sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", cfg->name);
    return NULL;
  }
  *s = *cfg;
  loom_module *m = loom_module_new(kind, s);
  if (!m) free(s);
  return m;
}

static bool check_input(const model_root *s, const loom_tensor *x) {
  loom_shape sh = loom_shape_of(x);
  if (s->in_features > 0) {
    if (sh.ndim == 2 && sh.d[1] == s->in_features) return true;
    core_set_error(LOOM_ERR_INVALID, "%s: expected input [N, %lld], got %s", s->name, (long long)s->in_features,
                   loom_shape_str(sh));
    return false;
  }
  if (sh.ndim != 4 || sh.d[1] != s->in_channels) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected input [N, %lld, H, W], got %s", s->name,
                   (long long)s->in_channels, loom_shape_str(sh));
    return false;
  }
  if (s->exact_hw && (sh.d[2] != s->exact_hw || sh.d[3] != s->exact_hw)) {
    core_set_error(LOOM_ERR_INVALID, "%s: expected %lldx%lld images, got %s", s->name, (long long)s->exact_hw,
                   (long long)s->exact_hw, loom_shape_str(sh));
    return false;
  }
  if (sh.d[2] < s->min_hw || sh.d[3] < s->min_hw) {
    core_set_error(LOOM_ERR_INVALID, "%s: input %s is too small: its layers need H and W >= %lld%s", s->name,
                   loom_shape_str(sh), (long long)s->min_hw, s->size_hint ? s->size_hint : "");
    return false;
  }
  return true;
}

loom_tensor *model_root_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  const model_root *s = loom_module_state(m);
  if (!model_one_input(s->name, n_in) || !in[0]) return NULL;
  if (!check_input(s, in[0])) return NULL;
  int n = loom_module_num_children(m);
  loom_scope_begin();
  loom_tensor *x = in[0];
  for (int i = 0; i < n && x; i++) {
    const char *name;
    loom_module *c = loom_module_child_at(m, i, &name);
    if (i == n - 1 && s->head == HEAD_POOL_FLATTEN) x = loom_adaptive_avg_pool2d(x, 1, 1);
    if (i == n - 1 && s->head != HEAD_NONE) x = loom_flatten(x, 1, -1);
    if (x) x = loom_forward(c, x);
    if (!x) model_error(s->name, name);
  }
  loom_keep(x);
  loom_scope_end();
  return x;
}

loom_model_opts model_opts(const loom_model_opts *opts, int64_t num_classes, int64_t in_channels) {
  loom_model_opts o = opts ? *opts : (loom_model_opts){0};
  if (o.num_classes == 0) o.num_classes = num_classes;
  if (o.in_channels == 0) o.in_channels = in_channels;
  return o;
}

bool model_opts_ok(const char *model, const loom_model_opts *o) {
  if (o->num_classes < 1 || o->in_channels < 1 || o->hidden < 0 || o->groups < 0 || o->width_per_group < 0) {
    core_set_error(LOOM_ERR_INVALID,
                   "%s: num_classes (%lld) and in_channels (%lld) must be >= 1; hidden, groups, width_per_group >= 0",
                   model, (long long)o->num_classes, (long long)o->in_channels);
    return false;
  }
  if (o->stem != LOOM_STEM_IMAGENET && o->stem != LOOM_STEM_CIFAR) {
    core_set_error(LOOM_ERR_INVALID, "%s: unknown stem %d", model, (int)o->stem);
    return false;
  }
  if ((o->set_dropout || o->dropout) && !(o->dropout >= 0 && o->dropout <= 1)) {
    core_set_error(LOOM_ERR_INVALID, "%s: dropout %g is outside [0, 1]", model, o->dropout);
    return false;
  }
  return true;
}

loom_module *model_conv(int64_t in, int64_t out, int k, int stride, int pad, int groups, bool bias) {
  int p = pad >= 0 ? pad : k / 2;
  loom_conv_opts c = {.stride = {stride, stride}, .padding = {p, p}, .groups = groups, .no_bias = !bias};
  return loom_nn_conv2d(in, out, k, k, &c);
}

static void init_visit(loom_module *m, void *user) {
  double linear_std = *(const double *)user;
  const char *type = loom_module_type(m);
  if (!strcmp(type, "Conv2d")) {
    loom_init_kaiming_normal_(loom_module_param(m, "weight"), 0, LOOM_FAN_OUT, "relu");
    if (!((const loom_conv_config *)loom_module_state(m))->conv.no_bias) loom_init_zeros_(loom_module_param(m, "bias"));
  } else if (!strcmp(type, "BatchNorm2d") || !strcmp(type, "GroupNorm")) {
    if (((const loom_norm_config *)loom_module_state(m))->affine) {
      loom_init_ones_(loom_module_param(m, "weight"));
      loom_init_zeros_(loom_module_param(m, "bias"));
    }
  } else if (!strcmp(type, "Linear") && linear_std > 0) {
    loom_init_normal_(loom_module_param(m, "weight"), 0, linear_std);
    if (!((const loom_linear_config *)loom_module_state(m))->no_bias) loom_init_zeros_(loom_module_param(m, "bias"));
  }
}

void model_init_torchvision(loom_module *m, double linear_std) {
  loom_module_apply(m, init_visit, &linear_std);
}
