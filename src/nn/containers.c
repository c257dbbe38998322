/* Sequential and ModuleList. */
#include <stdio.h>
#include <string.h>

#include "nn/module_impl.h"

/* Re-records the error of child `name` with its path: "at features.0: ...". */
static void prefix_error(const char *name) {
  char msg[3800];
  const char *old = loom_last_error();
  if (!strncmp(old, "at ", 3)) snprintf(msg, sizeof msg, "at %s.%s", name, old + 3);
  else snprintf(msg, sizeof msg, "at %s: %s", name, old);
  core_set_error(loom_last_status() ? loom_last_status() : LOOM_ERR_INVALID, "%s", msg);
}

static loom_tensor *sequential_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1) {
    core_set_error(LOOM_ERR_INVALID, "Sequential: forward takes 1 input, got %d", n_in);
    return NULL;
  }
  if (m->n_children == 0) return loom_reshape(in[0], loom_shape_of(in[0])); /* identity, still on the graph */
  loom_scope_begin();
  loom_tensor *x = in[0];
  for (int i = 0; i < m->n_children && x; i++) {
    x = loom_forward(m->children[i].m, x);
    if (!x) prefix_error(m->children[i].name);
  }
  loom_keep(x);
  loom_scope_end();
  return x;
}

static const loom_module_kind sequential_kind = {.type = "Sequential", .forward = sequential_forward};
static const loom_module_kind module_list_kind = {.type = "ModuleList"};

loom_module *loom_nn_sequential(int n, loom_module *const *mods) {
  loom_module *seq = n >= 0 && (n == 0 || mods) ? loom_module_new(&sequential_kind, NULL) : NULL;
  if (!seq && n < 0) core_set_error(LOOM_ERR_INVALID, "Sequential: negative module count %d", n);
  else if (!seq && n > 0 && !mods) core_set_error(LOOM_ERR_INVALID, "Sequential: %d modules and no array", n);
  int failed = -1;
  loom_status st = LOOM_OK;
  for (int i = 0; i < n && mods; i++) {
    if (!mods[i] && failed < 0) {
      failed = i;
      st = core_null_error("Sequential: module %d is NULL", i);
    }
    if (failed >= 0 || !seq) {
      loom_module_free(mods[i]);
      continue;
    }
    if (loom_module_append(seq, mods[i])) {
      failed = i;
      st = loom_last_status();
    }
  }
  if (failed >= 0) {
    char msg[3800];
    snprintf(msg, sizeof msg, "%s", loom_last_error());
    core_set_error(st, "Sequential: module %d: %s", failed, msg);
    loom_module_free(seq);
    return NULL;
  }
  return seq;
}

loom_module *loom_nn_module_list(void) { return loom_module_new(&module_list_kind, NULL); }
