/* The module interface: a kind (forward, macs, reset) plus named parameters,
 * buffers and children, refcounted. Walks, forward and device moves here;
 * state_dict in state_dict.c; containers in containers.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/module_impl.h"

loom_module *loom_module_new(const loom_module_kind *kind, void *state) {
  if (!kind || !kind->type) {
    core_set_error(LOOM_ERR_INVALID, "module_new: kind and kind->type are required");
    return NULL;
  }
  loom_module *m = calloc(1, sizeof *m);
  if (!m) {
    core_set_error(LOOM_ERR_OOM, "module_new: out of host memory");
    return NULL;
  }
  m->kind = kind;
  m->state = state;
  m->refcount = 1;
  m->training = true;
  return m;
}

const char *loom_module_type(const loom_module *m) { return m ? m->kind->type : NULL; }
void *loom_module_state(const loom_module *m) { return m ? m->state : NULL; }
const loom_module_kind *loom_module_kind_of(const loom_module *m) { return m ? m->kind : NULL; }

loom_module *loom_module_retain(loom_module *m) {
  if (m) m->refcount++;
  return m;
}

static void free_entries(nn_entry *e, int n) {
  for (int i = 0; i < n; i++) {
    free(e[i].name);
    loom_release(e[i].t);
  }
  free(e);
}

void loom_module_free(loom_module *m) {
  if (!m || --m->refcount > 0) return;
  for (int i = 0; i < m->n_children; i++) {
    free(m->children[i].name);
    loom_module_free(m->children[i].m);
  }
  free(m->children);
  free_entries(m->params, m->n_params);
  free_entries(m->buffers, m->n_buffers);
  if (m->state) {
    if (m->kind->free_state) m->kind->free_state(m->state);
    else free(m->state);
  }
  free(m);
}

/* ---- building ---- */

static bool name_taken(const loom_module *m, const char *name) {
  for (int i = 0; i < m->n_children; i++)
    if (!strcmp(m->children[i].name, name)) return true;
  for (int i = 0; i < m->n_params; i++)
    if (!strcmp(m->params[i].name, name)) return true;
  for (int i = 0; i < m->n_buffers; i++)
    if (!strcmp(m->buffers[i].name, name)) return true;
  return false;
}

static loom_status check_name(const char *what, const loom_module *m, const char *name) {
  if (!m) return core_null_error("%s: module is NULL", what);
  if (!name || !*name || strchr(name, '.'))
    return core_set_error(LOOM_ERR_INVALID, "%s: name '%s' must be non-empty and without '.'", what,
                          name ? name : "(null)");
  if (name_taken(m, name))
    return core_set_error(LOOM_ERR_INVALID, "%s: %s already has a member named '%s'", what, m->kind->type, name);
  return LOOM_OK;
}

/* Grows *arr (of elem-size items) to hold one more; false on OOM. */
static bool grow(void **arr, int n, int *cap, size_t elem) {
  if (n < *cap) return true;
  int nc = *cap ? *cap * 2 : 4;
  void *p = realloc(*arr, (size_t)nc * elem);
  if (!p) return false;
  *arr = p;
  *cap = nc;
  return true;
}

/* True when target is m or one of its descendants. */
static bool reaches(const loom_module *m, const loom_module *target) {
  if (m == target) return true;
  for (int i = 0; i < m->n_children; i++)
    if (reaches(m->children[i].m, target)) return true;
  return false;
}

int loom_module_add(loom_module *m, const char *name, loom_module *child) {
  if (!child) {
    loom_status st = core_null_error("module_add: child '%s' is NULL", name ? name : "(null)");
    return st;
  }
  loom_status st = check_name("module_add", m, name);
  /* a cycle would make every recursive walk (train, free, state_dict) loop */
  if (!st && reaches(child, m))
    st = core_set_error(LOOM_ERR_INVALID, "module_add: adding %s '%s' to %s would make a cycle (a module cannot be "
                        "its own descendant)", child->kind->type, name, m->kind->type);
  if (!st && !grow((void **)&m->children, m->n_children, &m->cap_children, sizeof(nn_child)))
    st = core_set_error(LOOM_ERR_OOM, "module_add: out of host memory");
  char *copy = st ? NULL : strdup(name);
  if (!st && !copy) st = core_set_error(LOOM_ERR_OOM, "module_add: out of host memory");
  if (st) {
    loom_module_free(child);
    return st;
  }
  m->children[m->n_children++] = (nn_child){copy, child};
  return LOOM_OK;
}

int loom_module_append(loom_module *m, loom_module *child) {
  if (!m) {
    loom_module_free(child);
    return core_null_error("module_append: module is NULL");
  }
  char name[24];
  int i = m->n_children;
  do snprintf(name, sizeof name, "%d", i++);
  while (name_taken(m, name));
  return loom_module_add(m, name, child);
}

static loom_tensor *add_entry(const char *what, loom_module *m, const char *name, loom_tensor *t,
                              bool param, bool persistent) {
  if (!t) {
    core_null_error("%s: tensor '%s' is NULL", what, name ? name : "(null)");
    return NULL;
  }
  if (check_name(what, m, name)) return NULL;
  if (param && (!loom_dtype_is_float(t->dtype) || t->grad_fn)) {
    core_set_error(LOOM_ERR_INVALID, "%s: '%s' must be a floating leaf tensor, got %s%s", what, name,
                   loom_dtype_name(t->dtype), t->grad_fn ? " produced by an op" : "");
    return NULL;
  }
  nn_entry **arr = param ? &m->params : &m->buffers;
  int *n = param ? &m->n_params : &m->n_buffers, *cap = param ? &m->cap_params : &m->cap_buffers;
  char *copy = strdup(name);
  if (!copy || !grow((void **)arr, *n, cap, sizeof(nn_entry))) {
    free(copy);
    core_set_error(LOOM_ERR_OOM, "%s: out of host memory", what);
    return NULL;
  }
  if (param && loom_set_requires_grad(t, true)) {
    free(copy);
    return NULL;
  }
  (*arr)[(*n)++] = (nn_entry){copy, loom_retain(t), persistent};
  return t;
}

loom_tensor *loom_module_add_parameter(loom_module *m, const char *name, loom_tensor *t) {
  return add_entry("module_add_parameter", m, name, t, true, true);
}

loom_tensor *loom_module_add_buffer(loom_module *m, const char *name, loom_tensor *t, bool persistent) {
  return add_entry("module_add_buffer", m, name, t, false, persistent);
}

loom_tensor *loom_module_replace_tensor(loom_module *m, const char *name, loom_tensor *t) {
  if (!m || !t) {
    core_null_error("module_replace_tensor: module or tensor is NULL");
    return NULL;
  }
  if (!name) {
    core_set_error(LOOM_ERR_INVALID, "module_replace_tensor: name is NULL");
    return NULL;
  }
  for (int k = 0; k < 2; k++) {
    nn_entry *e = k ? m->buffers : m->params;
    int n = k ? m->n_buffers : m->n_params;
    for (int i = 0; i < n; i++) {
      if (strcmp(e[i].name, name)) continue;
      if (!k && (!loom_dtype_is_float(t->dtype) || t->grad_fn || loom_set_requires_grad(t, true))) {
        core_set_error(LOOM_ERR_INVALID, "module_replace_tensor: '%s' must be a floating leaf tensor", name);
        return NULL;
      }
      loom_retain(t);
      loom_release(e[i].t);
      e[i].t = t;
      return t;
    }
  }
  core_set_error(LOOM_ERR_INVALID, "module_replace_tensor: %s has no parameter or buffer '%s'", m->kind->type, name);
  return NULL;
}

/* ---- looking inside ---- */

loom_module *loom_module_child(const loom_module *m, const char *path) {
  if (!m || !path) {
    core_null_error("module_child: module or path is NULL");
    return NULL;
  }
  const loom_module *cur = m;
  const char *p = path;
  while (*p) {
    size_t len = strcspn(p, ".");
    const loom_module *next = NULL;
    for (int i = 0; i < cur->n_children && !next; i++)
      if (strlen(cur->children[i].name) == len && !strncmp(cur->children[i].name, p, len))
        next = cur->children[i].m;
    if (!next) {
      core_set_error(LOOM_ERR_INVALID, "module_child: %s has no submodule '%.*s' (path '%s')", cur->kind->type,
                     (int)len, p, path);
      return NULL;
    }
    cur = next;
    p += len;
    if (*p == '.') p++;
  }
  return (loom_module *)cur;
}

int loom_module_num_children(const loom_module *m) { return m ? m->n_children : 0; }

loom_module *loom_module_child_at(const loom_module *m, int i, const char **name) {
  if (!m || i < 0 || i >= m->n_children) {
    core_set_error(LOOM_ERR_INVALID, "module_child_at: index %d out of range [0, %d)", i, m ? m->n_children : 0);
    return NULL;
  }
  if (name) *name = m->children[i].name;
  return m->children[i].m;
}

static loom_tensor *find_tensor(const char *what, const loom_module *m, const char *path, bool param) {
  if (!m || !path) {
    core_null_error("%s: module or path is NULL", what);
    return NULL;
  }
  const char *dot = strrchr(path, '.');
  const loom_module *owner = m;
  if (dot) {
    char *prefix = strndup(path, (size_t)(dot - path));
    owner = prefix ? loom_module_child(m, prefix) : NULL;
    free(prefix);
    if (!owner) return NULL;
  }
  const char *leaf = dot ? dot + 1 : path;
  const nn_entry *e = param ? owner->params : owner->buffers;
  int n = param ? owner->n_params : owner->n_buffers;
  for (int i = 0; i < n; i++)
    if (!strcmp(e[i].name, leaf)) return e[i].t;
  core_set_error(LOOM_ERR_INVALID, "%s: %s has no %s '%s'", what, owner->kind->type, param ? "parameter" : "buffer",
                 path);
  return NULL;
}

loom_tensor *loom_module_param(const loom_module *m, const char *path) {
  return find_tensor("module_param", m, path, true);
}

loom_tensor *loom_module_buffer(const loom_module *m, const char *path) {
  return find_tensor("module_buffer", m, path, false);
}

/* ---- forward ---- */


static _Thread_local loom_forward_hook fwd_hook;
static _Thread_local void *fwd_hook_user;

void loom_set_forward_hook(loom_forward_hook fn, void *user) {
  fwd_hook = fn;
  fwd_hook_user = user;
}

void loom_get_forward_hook(loom_forward_hook *fn, void **user) {
  if (fn) *fn = fwd_hook;
  if (user) *user = fwd_hook_user;
}

loom_tensor *loom_forward_n(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!m) {
    core_null_error("forward: module is NULL");
    return NULL;
  }
  if (n_in < 0 || (n_in > 0 && !in)) {
    core_set_error(LOOM_ERR_INVALID, "%s: forward got %d inputs and no array", m->kind->type, n_in);
    return NULL;
  }
  for (int i = 0; i < n_in; i++)
    if (!in[i]) {
      core_null_error("%s: input %d is NULL", m->kind->type, i);
      return NULL;
    }
  if (!m->kind->forward) {
    core_set_error(LOOM_ERR_INVALID, "%s has no forward of its own (call its children)", m->kind->type);
    return NULL;
  }
  int token = nn_forward_enter(m, in, n_in);
  return nn_forward_exit(token, m, in, n_in, m->kind->forward(m, in, n_in));
}

int nn_forward_enter(loom_module *m, loom_tensor *const *in, int n_in) {
  return nn_layer_profile_enter(m, in, n_in);
}

loom_tensor *nn_forward_exit(int token, loom_module *m, loom_tensor *const *in, int n_in, loom_tensor *out) {
  if (token) nn_layer_profile_exit(token, out != NULL);
  if (out && fwd_hook) fwd_hook(m, in, n_in, out, fwd_hook_user);
  return out;
}

loom_tensor *loom_forward(loom_module *m, const loom_tensor *x) {
  loom_tensor *in[1] = {(loom_tensor *)x};
  return loom_forward_n(m, in, 1);
}

/* ---- walks ---- */

void nn_walk(loom_module *m, const char *prefix, nn_visit_fn fn, void *user, nn_seen *seen) {
  if (nn_seen_add(seen, m)) fn(m, prefix, user);
  for (int i = 0; i < m->n_children; i++) {
    loom_module *c = m->children[i].m;
    if (nn_seen_has(seen, c)) continue;
    size_t len = strlen(prefix) + strlen(m->children[i].name) + 2;
    char *p = malloc(len);
    if (!p) continue;
    snprintf(p, len, "%s%s%s", prefix, *prefix ? "." : "", m->children[i].name);
    nn_walk(c, p, fn, user, seen);
    free(p);
  }
}

bool nn_seen_has(const nn_seen *s, const void *p) {
  for (int i = 0; i < s->n; i++)
    if (s->items[i] == p) return true;
  return false;
}

/* Adds p unless present; true when added. */
bool nn_seen_add(nn_seen *s, const void *p) {
  if (nn_seen_has(s, p)) return false;
  if (!grow((void **)&s->items, s->n, &s->cap, sizeof(void *))) return false;
  s->items[s->n++] = p;
  return true;
}

void nn_seen_free(nn_seen *s) {
  free(s->items);
  *s = (nn_seen){0};
}

void loom_module_train(loom_module *m, bool on) {
  if (!m) return;
  m->training = on;
  for (int i = 0; i < m->n_children; i++) loom_module_train(m->children[i].m, on);
}

bool loom_module_training(const loom_module *m) { return m && m->training; }

static void apply_rec(loom_module *m, void (*fn)(loom_module *, void *), void *user, nn_seen *seen) {
  if (!nn_seen_add(seen, m)) return;
  for (int i = 0; i < m->n_children; i++) apply_rec(m->children[i].m, fn, user, seen);
  fn(m, user);
}

void loom_module_apply(loom_module *m, void (*fn)(loom_module *m, void *user), void *user) {
  if (!m || !fn) return;
  nn_seen seen = {0};
  apply_rec(m, fn, user, &seen);
  nn_seen_free(&seen);
}
