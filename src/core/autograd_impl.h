/* Autograd internals shared by the op definitions in src/core. */
#ifndef LOOM_CORE_AUTOGRAD_IMPL_H
#define LOOM_CORE_AUTOGRAD_IMPL_H

#include "core/kernel.h"
#include "loom/ops.h"

typedef struct core_node core_node;
/* Computes gin[i] (a new tensor, or NULL for "no gradient") for every input i
 * with core_needs(n, i), given g, the gradient of the node's output. Runs in
 * a scope with recording off; returned tensors are kept by the engine. */
typedef void (*core_backward_fn)(core_node *n, const loom_tensor *g, loom_tensor **gin);

#define CORE_MAX_SAVED 4

struct core_node {
  const char *name;
  int refcount;
  core_backward_fn backward;
  int n_in;
  core_node **next;          /* [n_in] producer node of input i (owned ref) or NULL */
  loom_tensor **leaf;        /* [n_in] leaf input i needing grad (owned ref) or NULL */
  loom_shape *in_shape;      /* [n_in] */
  loom_dtype *in_dtype;      /* [n_in] */
  loom_device *in_device;    /* [n_in] */
  loom_tensor *saved[CORE_MAX_SAVED];
  int n_saved;
  bool freed;                /* saved tensors released by a backward walk */
  core_attrs a;              /* op-specific numbers */
  int dims[LOOM_MAX_DIMS];   /* op-specific dims */
  int n_dims;
  /* walk state */
  uint64_t walk;
  int deps;
  loom_tensor *grad;
};

/* Queues fn to run once when the loom_backward in progress on this thread
 * ends (after every leaf's gradient and hook), with the walk's status; its
 * return becomes the walk's status when that was OK. Data-parallel uses it to
 * wait for the last gradient buckets. Queuing the same fn and user twice runs it once. */
typedef loom_status (*core_backward_callback)(void *user, loom_status st);
int core_queue_backward_callback(core_backward_callback fn, void *user);

/* True when grad mode is on and some input requires grad. */
bool core_grad_needed(int n, const loom_tensor *const *ins);
/* Records a node producing out from ins; marks out as requiring grad. */
core_node *core_record(const char *name, core_backward_fn fn, loom_tensor *out, int n,
                       const loom_tensor *const *ins);
/* Saves an alias of t (no grad_fn, so saving an op's own output makes no cycle). */
void core_save(core_node *n, const loom_tensor *t);
bool core_needs(const core_node *n, int i);
void core_node_release(core_node *n);

/* Reduces g (broadcast result) back to shape s by summing. */
loom_tensor *core_sum_to(const loom_tensor *g, loom_shape s);

/* Helpers used across op files. */
int core_norm_dim(const char *op, const loom_tensor *t, int dim, bool allow_end);
loom_tensor *core_temp(loom_shape s, loom_dtype dt, loom_device dev); /* untracked, uninitialised */
bool core_check_same_device(const char *op, const loom_tensor *a, const loom_tensor *b);
loom_status core_check_indices(const char *op, const loom_tensor *idx, int64_t size);
loom_tensor *core_alias(const loom_tensor *t);                        /* view with t's geometry */
bool core_broadcast_shapes(const char *op, loom_shape a, loom_shape b, loom_shape *out);
loom_tensor *core_expand_to(const loom_tensor *t, loom_shape s);     /* stride-0 view, no grad */
/* relu's gradient g where y = relu(x) > 0, else 0: one kernel (activation.c). */
loom_tensor *core_relu_backward(const loom_tensor *y, const loom_tensor *g);

#define CORE_CHECK_NULL1(op, a)                                                         \
  do {                                                                                  \
    if (!(a)) { core_null_error("%s: input is NULL", op); return NULL; }                  \
    if (core_freed_handle(op, a)) return NULL;                                          \
  } while (0)

#endif
