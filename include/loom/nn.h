/* Loom neural-network modules: the module interface, containers, state_dict.
 * The layers themselves are declared in the loom/nn_*.h headers included at
 * the end; losses in loom/losses.h, optimisers in loom/optim.h.
 *
 * Conventions shared by every layer:
 * - Constructors are loom_nn_<layer>(...) and return a new module (NULL +
 *   loom_last_error on bad arguments). Parameters are created on the CPU in
 *   f32 with PyTorch's default initialisation; move them with
 *   loom_module_to_device / loom_module_to_dtype.
 * - Layer options come in a struct whose all-zero value means PyTorch's
 *   defaults (stride 0 = 1, groups 0 = 1, ...); a boolean option is named so
 *   that false is the default (no_bias, ceil_mode). Pass NULL for defaults.
 *   Where 0 is itself a meaningful value (BatchNorm's momentum, cross-
 *   entropy's ignore_index), a zero field still means the default unless the
 *   flag set_<name> is true; any other value is always used as given.
 * - The functional form of each layer is loom_<op>(x, weight, ...) (ops.h style:
 *   new tensor or NULL, NULL in gives NULL out).
 * - Parameter and buffer names are PyTorch's: weight, bias, running_mean,
 *   weight_ih_l0, in_proj_weight, ... */
#ifndef LOOM_NN_H
#define LOOM_NN_H

#include "loom/tensor.h"
#include "loom/io.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct loom_module loom_module;

/* ---- writing a module kind (layers and user-defined modules alike) ----
 * forward receives the module and its inputs and returns a new tensor (or
 * NULL after recording an error that names the layer). */
typedef loom_tensor *(*loom_forward_fn)(loom_module *m, loom_tensor *const *in, int n_in);

typedef struct loom_module_kind {
  const char *type;                 /* "Linear", "Conv2d", "MyNet": summaries and errors */
  loom_forward_fn forward;          /* NULL for containers without forward (ModuleList) */
  void (*free_state)(void *state);  /* frees the kind's state; NULL = free() */
  /* Multiply-accumulates of one forward call, for summaries (NULL = 0). */
  int64_t (*macs)(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out);
  /* Re-initialises the module's own parameters as its constructor did (NULL = none). */
  void (*reset_parameters)(loom_module *m);
} loom_module_kind;

/* A module of the given kind owning `state` (may be NULL; freed with the
 * module by kind->free_state). kind must outlive the module (a static). */
loom_module *loom_module_new(const loom_module_kind *kind, void *state);
const char *loom_module_type(const loom_module *m);
void *loom_module_state(const loom_module *m);
const loom_module_kind *loom_module_kind_of(const loom_module *m);

/* Modules are refcounted. loom_module_free drops one reference and frees the
 * module and its children when the last one goes. Modules are not tracked by
 * scopes. */
loom_module *loom_module_retain(loom_module *m);
void loom_module_free(loom_module *m);

/* ---- building ----
 * loom_module_add takes over the caller's reference to child (also on
 * failure), so loom_module_add(net, "fc", loom_nn_linear(4, 2, NULL)) leaks
 * nothing; to share a child between two parents, loom_module_retain it first.
 * A NULL child (a failed constructor) fails with that constructor's error.
 * Names must be non-empty, without '.', and unique among m's children,
 * parameters and buffers. child may not be m or contain m (no cycles). */
int loom_module_add(loom_module *m, const char *name, loom_module *child);
/* Registers t as a parameter: the module holds its own reference (the
 * caller's, or its scope's, stays the caller's) and t is marked
 * requires_grad. Registering one tensor in two modules shares it. t must be a
 * floating leaf tensor. Returns t, or NULL on error. */
loom_tensor *loom_module_add_parameter(loom_module *m, const char *name, loom_tensor *t);
/* Registers a buffer (running statistics, constants). Persistent buffers go
 * into the state_dict; non-persistent ones do not. Returns t, or NULL. */
loom_tensor *loom_module_add_buffer(loom_module *m, const char *name, loom_tensor *t, bool persistent);
/* Replaces a registered parameter or buffer `name` (own, not a path) with t,
 * keeping its place in the order; used by layers that create their
 * parameters late (LazyLinear). Returns t, or NULL. */
loom_tensor *loom_module_replace_tensor(loom_module *m, const char *name, loom_tensor *t);

/* ---- looking inside ----
 * Paths are dotted PyTorch names relative to m: "features.0", "0.weight". */
loom_module *loom_module_child(const loom_module *m, const char *path);      /* NULL + error */
int loom_module_num_children(const loom_module *m);
loom_module *loom_module_child_at(const loom_module *m, int i, const char **name);
/* Borrowed parameter / buffer by path; NULL + error when absent. */
loom_tensor *loom_module_param(const loom_module *m, const char *path);
loom_tensor *loom_module_buffer(const loom_module *m, const char *path);

/* A list of named tensors (borrowed references; free the list itself). */
typedef struct loom_named_tensors {
  int n;
  char **names;
  loom_tensor **tensors;
} loom_named_tensors;
/* Parameters of m and its descendants in PyTorch's order (own, then each
 * child's); a tensor shared by several modules appears once, under its first
 * name. */
loom_named_tensors *loom_module_named_parameters(const loom_module *m);
loom_named_tensors *loom_module_named_buffers(const loom_module *m);
void loom_named_tensors_free(loom_named_tensors *l);
/* Element counts of the unique parameters: total and with requires_grad. */
int64_t loom_module_num_params(const loom_module *m, bool trainable_only);

/* ---- running ---- */
loom_tensor *loom_forward(loom_module *m, const loom_tensor *x);
loom_tensor *loom_forward_n(loom_module *m, loom_tensor *const *in, int n_in);
/* Called after every module's forward on this thread (summaries, profiling);
 * NULL removes it. */
typedef void (*loom_forward_hook)(loom_module *m, loom_tensor *const *in, int n_in,
                                  const loom_tensor *out, void *user);
void loom_set_forward_hook(loom_forward_hook fn, void *user);
/* The hook set on this thread (NULLs when none), to restore after a temporary one. */
void loom_get_forward_hook(loom_forward_hook *fn, void **user);

/* train(true) / eval (train(false)) for m and all descendants. */
void loom_module_train(loom_module *m, bool on);
bool loom_module_training(const loom_module *m);
/* Moves every parameter and buffer in place (the tensor handles stay the
 * same, so optimisers keep working); gradients move with them. to_dtype
 * converts floating tensors only. Returns 0 or an error status. */
int loom_module_to_device(loom_module *m, loom_device dev);
int loom_module_to_dtype(loom_module *m, loom_dtype dt);
/* Sets requires_grad on every parameter of m and its descendants (freezing). */
void loom_module_requires_grad(loom_module *m, bool on);
/* Drops the gradients of every parameter (set_to_none). */
void loom_module_zero_grad(loom_module *m);
/* Calls fn on every descendant, children before their parent, then m
 * (PyTorch's Module.apply). */
void loom_module_apply(loom_module *m, void (*fn)(loom_module *m, void *user), void *user);

/* ---- state_dict ----
 * Parameters and persistent buffers under their dotted names (shared tensors
 * under every name), referencing the live tensors. */
loom_tensor_map *loom_module_state_dict(const loom_module *m);
/* Copies values into m (dtype and device converted). Shapes must match. With
 * strict, missing and unexpected keys are errors too. Nothing is changed
 * unless every check passes; the error lists every missing, unexpected and
 * mis-shaped key. */
int loom_module_load_state_dict(loom_module *m, const loom_tensor_map *sd, bool strict);
int loom_module_save(const loom_module *m, const char *path);
int loom_module_load(loom_module *m, const char *path, bool strict);

/* ---- containers ---- */
/* Children named "0", "1", ...; forward feeds each output to the next.
 * Takes over the references to mods[0..n) (also on failure); a NULL entry
 * fails with the error of the constructor that returned it. */
loom_module *loom_nn_sequential(int n, loom_module *const *mods);
#ifdef __cplusplus
#define LOOM_SEQUENTIAL(...)                                                             \
  ([](std::initializer_list<loom_module *> l) {                                          \
    return loom_nn_sequential((int)l.size(), l.begin());                                 \
  }({__VA_ARGS__}))
#else
#define LOOM_SEQUENTIAL(...)                                                             \
  loom_nn_sequential((int)(sizeof((loom_module *[]){__VA_ARGS__}) / sizeof(loom_module *)), \
                     (loom_module *[]){__VA_ARGS__})
#endif
/* Adds child under the next free index name ("3" after "0".."2"), taking
 * over the reference like loom_module_add: grows a Sequential or ModuleList. */
int loom_module_append(loom_module *m, loom_module *child);
/* A list of children named "0", "1", ... with no forward of its own. */
loom_module *loom_nn_module_list(void);

#ifdef __cplusplus
}
#endif

#include "loom/nn_layers.h"
#include "loom/nn_conv.h"
#include "loom/nn_norm.h"
#include "loom/nn_rnn.h"
#include "loom/nn_attention.h"
#include "loom/nn_init.h"
#include "loom/nn_summary.h"
#include "loom/losses.h"

#endif
