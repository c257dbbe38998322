/* Reverse-mode autograd: nodes, recording and the backward walk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd_impl.h"

static _Thread_local int no_grad_depth;
static uint64_t walk_counter;

void loom_no_grad_begin(void) { no_grad_depth++; }
void loom_no_grad_end(void) {
  if (no_grad_depth > 0) no_grad_depth--;
}
bool loom_grad_enabled(void) { return no_grad_depth == 0; }

bool core_grad_needed(int n, const loom_tensor *const *ins) {
  if (no_grad_depth) return false;
  for (int i = 0; i < n; i++)
    if (ins[i] && ins[i]->requires_grad) return true;
  return false;
}

bool core_needs(const core_node *n, int i) { return n->next[i] || n->leaf[i]; }

core_node *core_record(const char *name, core_backward_fn fn, loom_tensor *out, int n,
                       const loom_tensor *const *ins) {
  core_node *node = calloc(1, sizeof *node);
  void *arrays = node ? calloc((size_t)n, sizeof(core_node *) + sizeof(loom_tensor *) + sizeof(loom_shape) +
                                              sizeof(loom_dtype) + sizeof(loom_device))
                      : NULL;
  if (!arrays) {
    free(node);
    return NULL; /* out of host memory: the output simply carries no history */
  }
  node->name = name;
  node->refcount = 1;
  node->backward = fn;
  node->n_in = n;
  node->in_shape = arrays;
  node->in_device = (loom_device *)(node->in_shape + n);
  node->next = (core_node **)(node->in_device + n);
  node->leaf = (loom_tensor **)(node->next + n);
  node->in_dtype = (loom_dtype *)(node->leaf + n);
  for (int i = 0; i < n; i++) {
    const loom_tensor *t = ins[i];
    if (!t) continue;
    node->in_shape[i] = t->shape;
    node->in_dtype[i] = t->dtype;
    node->in_device[i] = t->storage->device;
    if (!t->requires_grad) continue;
    if (t->grad_fn) {
      node->next[i] = t->grad_fn;
      __atomic_add_fetch(&t->grad_fn->refcount, 1, __ATOMIC_RELAXED);
    } else {
      node->leaf[i] = loom_retain((loom_tensor *)t);
    }
  }
  if (out->grad_fn) core_node_release(out->grad_fn);
  out->grad_fn = node;
  out->requires_grad = true;
  return node;
}

void core_save(core_node *n, const loom_tensor *t) {
  if (!n || !t || n->n_saved >= CORE_MAX_SAVED) return;
  loom_tensor *a = core_alias(t);
  core_untrack(a);
  n->saved[n->n_saved++] = a;
}

static void free_saved(core_node *n) {
  for (int i = 0; i < n->n_saved; i++) {
    loom_release(n->saved[i]);
    n->saved[i] = NULL;
  }
  if (n->n_saved) n->freed = true; /* a node that saved nothing can run again */
}

/* Iterative, so that releasing a long chain cannot overflow the stack. */
void core_node_release(core_node *n) {
  core_node **stack = NULL;
  int sp = 0, cap = 0;
  while (n) {
    if (__atomic_sub_fetch(&n->refcount, 1, __ATOMIC_ACQ_REL) == 0) {
      for (int i = 0; i < n->n_in; i++) {
        loom_release(n->leaf[i]);
        if (!n->next[i]) continue;
        if (sp == cap) {
          cap = cap ? cap * 2 : 16;
          core_node **s2 = realloc(stack, (size_t)cap * sizeof *s2);
          if (!s2) break; /* cannot recurse further: leak rather than crash */
          stack = s2;
        }
        stack[sp++] = n->next[i];
      }
      free_saved(n);
      loom_release(n->grad);
      free(n->in_shape);
      free(n);
    }
    n = sp ? stack[--sp] : NULL;
  }
  free(stack);
}

/* ---- public leaf API ---- */
int loom_set_requires_grad(loom_tensor *t, bool on) {
  if (!t) return core_null_error("set_requires_grad: tensor is NULL");
  if (on && !loom_dtype_is_float(t->dtype))
    return core_set_error(LOOM_ERR_INVALID, "set_requires_grad: only floating tensors can require grad, got %s",
                          loom_dtype_name(t->dtype));
  if (t->grad_fn && !on)
    return core_set_error(LOOM_ERR_INVALID,
                          "set_requires_grad: cannot turn off requires_grad of a non-leaf tensor (use loom_detach)");
  t->requires_grad = on;
  return LOOM_OK;
}
bool loom_requires_grad(const loom_tensor *t) { return t && t->requires_grad; }
bool loom_is_leaf(const loom_tensor *t) { return t && !t->grad_fn; }
loom_tensor *loom_grad(const loom_tensor *t) { return t ? t->grad : NULL; }
void loom_zero_grad(loom_tensor *t) {
  if (!t) return;
  loom_release(t->grad);
  t->grad = NULL;
}
int loom_set_grad(loom_tensor *t, loom_tensor *g) {
  if (!t) return core_null_error("set_grad: tensor is NULL");
  if (g == t) return core_set_error(LOOM_ERR_INVALID, "set_grad: a tensor cannot be its own gradient");
  if (g && (g->dtype != t->dtype || !loom_device_equal(g->storage->device, t->storage->device)))
    return core_set_error(LOOM_ERR_INVALID, "set_grad: gradient is %s on %s but the tensor is %s on %s",
                          loom_dtype_name(g->dtype), loom_device_name(g->storage->device),
                          loom_dtype_name(t->dtype), loom_device_name(t->storage->device));
  if (g && !loom_shape_equal(g->shape, t->shape))
    return core_set_error(LOOM_ERR_INVALID, "set_grad: gradient shape %s does not match tensor shape %s",
                          loom_shape_str(g->shape), loom_shape_str(t->shape));
  loom_retain(g);
  loom_release(t->grad);
  t->grad = g;
  return LOOM_OK;
}
loom_tensor *loom_detach(const loom_tensor *t) {
  CORE_CHECK_NULL1("detach", t);
  return core_alias(t);
}
const char *loom_grad_fn_name(const loom_tensor *t) { return t && t->grad_fn ? t->grad_fn->name : NULL; }
int loom_set_grad_hook(loom_tensor *leaf, loom_grad_hook fn, void *user) {
  if (!leaf) return core_null_error("set_grad_hook: tensor is NULL");
  leaf->hook = fn;
  leaf->hook_user = user;
  return LOOM_OK;
}

/* ---- the walk ---- */
typedef struct vec { void **p; int n, cap; } vec;
static bool vec_push(vec *v, void *x) {
  if (v->n == v->cap) {
    int cap = v->cap ? v->cap * 2 : 64;
    void **p = realloc(v->p, (size_t)cap * sizeof *p);
    if (!p) return false;
    v->p = p;
    v->cap = cap;
  }
  v->p[v->n++] = x;
  return true;
}

/* acc += g (both owned, g consumed); result owned, untracked. */
static loom_tensor *accumulate(loom_tensor *acc, loom_tensor *g) {
  if (!acc) return g;
  loom_tensor *sum = loom_add(acc, g);
  core_untrack(sum);
  loom_release(acc);
  loom_release(g);
  return sum;
}

/* A leaf's first gradient: kept as is when it is a contiguous tensor owning its
 * whole storage alone, else copied, so that .grad never aliases another tensor
 * (in-place updates of one gradient must not change another). Consumes g. */
static loom_tensor *own_grad(loom_tensor *g) {
  if (!g) return NULL;
  if (g->refcount == 1 && g->storage->refcount == 1 && g->offset == 0 && core_is_contiguous(g) &&
      (size_t)core_numel(g) * loom_dtype_size(g->dtype) == g->storage->nbytes)
    return g;
  loom_tensor *c = loom_clone(g);
  core_untrack(c);
  loom_release(g);
  return c;
}

/* Brings a gradient to its input's shape, dtype and device; consumes g. */
static loom_tensor *conform(loom_tensor *g, loom_shape s, loom_dtype dt, loom_device dev) {
  if (!g) return NULL;
  if (loom_shape_numel(g->shape) != loom_shape_numel(s)) {
    core_set_error(LOOM_ERR_INTERNAL, "backward: gradient of shape %s for an input of shape %s",
                   loom_shape_str(g->shape), loom_shape_str(s));
    loom_release(g);
    return NULL;
  }
  loom_scope_begin();
  loom_tensor *r = loom_shape_equal(g->shape, s) ? g : loom_reshape(g, s);
  if (r && (r->dtype != dt || !loom_device_equal(r->storage->device, dev))) r = loom_to(r, dev, dt);
  if (r != g) {
    loom_keep(r);
    loom_scope_end();
    core_untrack(r);
    loom_release(g);
  } else {
    loom_scope_end();
  }
  return r;
}

/* Callbacks queued during a walk (core_queue_backward_callback), run at its end. */
#define MAX_BACKWARD_CALLBACKS 8
static _Thread_local struct {
  core_backward_callback fn;
  void *user;
} callbacks[MAX_BACKWARD_CALLBACKS];
static _Thread_local int n_callbacks;

int core_queue_backward_callback(core_backward_callback fn, void *user) {
  for (int i = 0; i < n_callbacks; i++)
    if (callbacks[i].fn == fn && callbacks[i].user == user) return LOOM_OK;
  if (n_callbacks == MAX_BACKWARD_CALLBACKS)
    return core_set_error(LOOM_ERR_INVALID, "backward: more than %d end-of-backward callbacks queued",
                          MAX_BACKWARD_CALLBACKS);
  callbacks[n_callbacks].fn = fn;
  callbacks[n_callbacks].user = user;
  n_callbacks++;
  return LOOM_OK;
}

/* Ends a walk: frees its lists and runs the queued callbacks (the first error wins). */
static loom_status fail(vec *a, vec *b, loom_status st) {
  free(a->p);
  free(b->p);
  for (int i = 0; i < n_callbacks; i++) {
    loom_status r = callbacks[i].fn(callbacks[i].user, st);
    if (st == LOOM_OK) st = r;
  }
  n_callbacks = 0;
  return st;
}

int loom_backward(loom_tensor *root, const loom_tensor *grad_output, bool retain_graph) {
  if (!root) return core_null_error("backward: root tensor is NULL");
  if (!root->requires_grad)
    return core_set_error(LOOM_ERR_INVALID, "backward: tensor does not require grad and has no grad_fn");
  loom_tensor *g0;
  loom_no_grad_begin();
  loom_scope_begin();
  if (grad_output) {
    if (!loom_shape_equal(grad_output->shape, root->shape)) {
      loom_scope_end();
      loom_no_grad_end();
      return core_set_error(LOOM_ERR_INVALID, "backward: grad_output shape %s does not match output shape %s",
                            loom_shape_str(grad_output->shape), loom_shape_str(root->shape));
    }
    g0 = loom_to(grad_output, root->storage->device, root->dtype);
  } else {
    if (core_numel(root) != 1) {
      loom_scope_end();
      loom_no_grad_end();
      return core_set_error(LOOM_ERR_INVALID,
                            "backward: grad can be implicitly created only for one-element outputs, got shape %s",
                            loom_shape_str(root->shape));
    }
    g0 = loom_ones_like(root);
  }
  loom_keep(g0);
  loom_scope_end();
  core_untrack(g0);
  vec nodes = {0}, leaves = {0};
  loom_status st = LOOM_OK;
  if (!g0) st = loom_last_status();
  else if (!root->grad_fn) { /* a leaf */
    root->grad = root->grad ? accumulate(root->grad, g0) : own_grad(g0);
    if (root->hook) root->hook(root, root->hook_user);
  } else {
    /* discover the graph and count dependencies */
    uint64_t walk = __atomic_add_fetch(&walk_counter, 1, __ATOMIC_RELAXED);
    core_node *start = root->grad_fn;
    start->walk = walk;
    start->deps = 0;
    if (!vec_push(&nodes, start)) st = core_set_error(LOOM_ERR_OOM, "backward: out of host memory");
    for (int i = 0; st == LOOM_OK && i < nodes.n; i++) {
      core_node *n = nodes.p[i];
      for (int j = 0; j < n->n_in; j++) {
        loom_tensor *lf = n->leaf[j];
        if (lf) {
          if (lf->pending++ == 0 && !vec_push(&leaves, lf))
            st = core_set_error(LOOM_ERR_OOM, "backward: out of host memory");
          continue;
        }
        core_node *m = n->next[j];
        if (!m) continue;
        if (m->walk != walk) {
          m->walk = walk;
          m->deps = 0;
          if (!vec_push(&nodes, m)) st = core_set_error(LOOM_ERR_OOM, "backward: out of host memory");
        }
        m->deps++;
      }
    }
    if (st != LOOM_OK) {
      loom_release(g0);
      loom_no_grad_end();
      return fail(&nodes, &leaves, st);
    }
    /* process in dependency order */
    start->grad = g0;
    vec ready = {0};
    vec_push(&ready, start);
    while (ready.n && st == LOOM_OK) {
      core_node *n = ready.p[--ready.n];
      loom_tensor *g = n->grad;
      n->grad = NULL;
      loom_tensor *gin[64] = {0};
      loom_tensor **gins = n->n_in <= 64 ? gin : calloc((size_t)n->n_in, sizeof *gins);
      if (n->freed) {
        st = core_set_error(LOOM_ERR_INVALID,
                            "backward: trying to go through the graph of '%s' a second time; its saved tensors "
                            "were freed (pass retain_graph=true the first time)",
                            n->name);
      } else if (!gins) {
        st = core_set_error(LOOM_ERR_OOM, "backward: out of host memory");
      } else if (g) {
        loom_clear_error();
        loom_scope_begin();
        n->backward(n, g, gins);
        for (int j = 0; j < n->n_in; j++) {
          if (!core_needs(n, j)) gins[j] = NULL;
          loom_keep(gins[j]);
        }
        loom_scope_end();
        for (int j = 0; j < n->n_in; j++) {
          core_untrack(gins[j]);
          gins[j] = conform(gins[j], n->in_shape[j], n->in_dtype[j], n->in_device[j]);
        }
        if (loom_last_status() != LOOM_OK) {
          char why[768];
          snprintf(why, sizeof why, "%s", loom_last_error());
          st = core_set_error(loom_last_status(), "backward of '%s' failed: %s", n->name, why);
        }
      }
      loom_release(g);
      for (int j = 0; j < n->n_in; j++) {
        loom_tensor *gj = gins ? gins[j] : NULL;
        if (st != LOOM_OK) {
          loom_release(gj);
          continue;
        }
        if (n->leaf[j]) {
          loom_tensor *lf = n->leaf[j];
          if (gj) lf->grad = lf->grad ? accumulate(lf->grad, gj) : own_grad(gj);
          if (--lf->pending == 0 && lf->hook && lf->grad) lf->hook(lf, lf->hook_user);
        } else if (n->next[j]) {
          core_node *m = n->next[j];
          if (gj) m->grad = accumulate(m->grad, gj);
          if (--m->deps == 0) vec_push(&ready, m);
        } else {
          loom_release(gj);
        }
      }
      if (gins != gin) free(gins);
      if (!retain_graph && st == LOOM_OK) free_saved(n);
    }
    /* on failure, drop partial gradients still held by nodes */
    for (int i = 0; i < nodes.n; i++) {
      core_node *n = nodes.p[i];
      loom_release(n->grad);
      n->grad = NULL;
    }
    for (int i = 0; i < leaves.n; i++) ((loom_tensor *)leaves.p[i])->pending = 0;
    free(ready.p);
  }
  loom_no_grad_end();
  return fail(&nodes, &leaves, st);
}
