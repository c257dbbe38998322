/* The module struct and the walk helpers shared by src/nn. Internal. */
#ifndef LOOM_NN_MODULE_IMPL_H
#define LOOM_NN_MODULE_IMPL_H

#include "core/tensor_impl.h"
#include "loom/nn.h"

typedef struct nn_entry {
  char *name;
  loom_tensor *t;    /* owned reference */
  bool persistent;   /* buffers: saved in the state_dict */
} nn_entry;

typedef struct nn_child {
  char *name;
  loom_module *m;    /* owned reference */
} nn_child;

struct loom_module {
  const loom_module_kind *kind;
  void *state;
  int refcount;
  bool training;
  nn_entry *params, *buffers;
  int n_params, cap_params, n_buffers, cap_buffers;
  nn_child *children;
  int n_children, cap_children;
};

/* A set of pointers already visited (modules or tensors). */
typedef struct nn_seen {
  const void **items;
  int n, cap;
} nn_seen;
bool nn_seen_has(const nn_seen *s, const void *p);
bool nn_seen_add(nn_seen *s, const void *p);
void nn_seen_free(nn_seen *s);

/* Calls fn(module, dotted prefix) for m and each descendant once, parents
 * before children, in registration order (PyTorch's named_modules). */
typedef void (*nn_visit_fn)(loom_module *m, const char *prefix, void *user);
void nn_walk(loom_module *m, const char *prefix, nn_visit_fn fn, void *user, nn_seen *seen);

/* The layer profile (src/nn/profile.c): a token from enter (0 = not profiled) for exit. */
int nn_layer_profile_enter(loom_module *m, loom_tensor *const *in, int n_in);
void nn_layer_profile_exit(int token, bool ok);

/* Around a module's forward that has its own entry point instead of
 * loom_forward_n (attention with masks): the layer profile and the forward
 * hook (summaries: MACs) see it like any other. exit returns out. */
int nn_forward_enter(loom_module *m, loom_tensor *const *in, int n_in);
loom_tensor *nn_forward_exit(int token, loom_module *m, loom_tensor *const *in, int n_in, loom_tensor *out);

#endif
