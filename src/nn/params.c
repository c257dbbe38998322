/* Parameter and buffer lists, counts, device and dtype moves, freezing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/module_impl.h"

typedef struct list_ctx {
  loom_named_tensors *l;
  int cap;
  bool params;
  nn_seen tensors;
  bool oom;
} list_ctx;

static void push(list_ctx *c, const char *prefix, const char *name, loom_tensor *t) {
  if (c->oom || !nn_seen_add(&c->tensors, t)) return;
  if (c->l->n == c->cap) {
    int nc = c->cap ? c->cap * 2 : 16;
    char **nn = realloc(c->l->names, (size_t)nc * sizeof *nn);
    if (nn) c->l->names = nn;
    loom_tensor **nt = realloc(c->l->tensors, (size_t)nc * sizeof *nt);
    if (nt) c->l->tensors = nt;
    if (!nn || !nt) {
      c->oom = true;
      return;
    }
    c->cap = nc;
  }
  size_t len = strlen(prefix) + strlen(name) + 2;
  char *full = malloc(len);
  if (!full) {
    c->oom = true;
    return;
  }
  snprintf(full, len, "%s%s%s", prefix, *prefix ? "." : "", name);
  c->l->names[c->l->n] = full;
  c->l->tensors[c->l->n++] = t;
}

static void visit(loom_module *m, const char *prefix, void *user) {
  list_ctx *c = user;
  nn_entry *e = c->params ? m->params : m->buffers;
  int n = c->params ? m->n_params : m->n_buffers;
  for (int i = 0; i < n; i++) push(c, prefix, e[i].name, e[i].t);
}

static loom_named_tensors *named(const char *what, const loom_module *m, bool params) {
  if (!m) {
    core_null_error("%s: module is NULL", what);
    return NULL;
  }
  list_ctx c = {.l = calloc(1, sizeof(loom_named_tensors)), .params = params};
  if (!c.l) {
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", what);
    return NULL;
  }
  nn_seen mods = {0};
  nn_walk((loom_module *)m, "", visit, &c, &mods);
  nn_seen_free(&mods);
  nn_seen_free(&c.tensors);
  if (c.oom) {
    loom_named_tensors_free(c.l);
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", what);
    return NULL;
  }
  return c.l;
}

loom_named_tensors *loom_module_named_parameters(const loom_module *m) {
  return named("named_parameters", m, true);
}

loom_named_tensors *loom_module_named_buffers(const loom_module *m) { return named("named_buffers", m, false); }

void loom_named_tensors_free(loom_named_tensors *l) {
  if (!l) return;
  for (int i = 0; i < l->n; i++) free(l->names[i]);
  free(l->names);
  free(l->tensors);
  free(l);
}

int64_t loom_module_num_params(const loom_module *m, bool trainable_only) {
  loom_named_tensors *l = loom_module_named_parameters(m);
  if (!l) return -1;
  int64_t n = 0;
  for (int i = 0; i < l->n; i++)
    if (!trainable_only || l->tensors[i]->requires_grad) n += core_numel(l->tensors[i]);
  loom_named_tensors_free(l);
  return n;
}

/* ---- moves ---- */

/* Replaces t's data with fn(t) (and its gradient's likewise). */
static loom_status move_one(loom_tensor *t, loom_device dev, loom_dtype dt) {
  loom_status st = LOOM_OK;
  loom_scope_begin();
  for (int k = 0; k < 2 && !st; k++) {
    loom_tensor *x = k ? t->grad : t;
    if (!x) continue;
    loom_dtype to = loom_dtype_is_float(x->dtype) && dt != LOOM_DTYPE_COUNT ? dt : x->dtype;
    if (loom_device_equal(x->storage->device, dev) && to == x->dtype) continue;
    loom_tensor *moved = loom_to(x, dev, to);
    st = moved ? (loom_status)loom_set_data(x, moved) : loom_last_status();
  }
  loom_scope_end();
  return st;
}

static int move_all(const char *what, loom_module *m, const loom_device *dev, loom_dtype dt) {
  if (!m) return core_null_error("%s: module is NULL", what);
  if (dt != LOOM_DTYPE_COUNT && !loom_dtype_is_float(dt))
    return core_set_error(LOOM_ERR_INVALID, "%s: needs a floating dtype, got %s", what, loom_dtype_name(dt));
  loom_named_tensors *lists[2] = {loom_module_named_parameters(m), loom_module_named_buffers(m)};
  loom_status st = lists[0] && lists[1] ? (loom_status)LOOM_OK : loom_last_status();
  for (int k = 0; k < 2 && !st; k++)
    for (int i = 0; i < lists[k]->n && !st; i++) {
      loom_tensor *t = lists[k]->tensors[i];
      st = move_one(t, dev ? *dev : t->storage->device, dt);
      if (st) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", loom_last_error());
        core_set_error(st, "%s: moving '%s': %s", what, lists[k]->names[i], msg);
      }
    }
  loom_named_tensors_free(lists[0]);
  loom_named_tensors_free(lists[1]);
  return st;
}

int loom_module_to_device(loom_module *m, loom_device dev) {
  return move_all("module_to_device", m, &dev, LOOM_DTYPE_COUNT);
}

int loom_module_to_dtype(loom_module *m, loom_dtype dt) { return move_all("module_to_dtype", m, NULL, dt); }

void loom_module_requires_grad(loom_module *m, bool on) {
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; l && i < l->n; i++) loom_set_requires_grad(l->tensors[i], on);
  loom_named_tensors_free(l);
}

void loom_module_zero_grad(loom_module *m) {
  loom_named_tensors *l = loom_module_named_parameters(m);
  for (int i = 0; l && i < l->n; i++) loom_zero_grad(l->tensors[i]);
  loom_named_tensors_free(l);
}
