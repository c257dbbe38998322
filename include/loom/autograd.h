/* Loom reverse-mode autograd: a define-by-run tape. */
#ifndef LOOM_AUTOGRAD_H
#define LOOM_AUTOGRAD_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks a leaf tensor as needing a gradient (floating dtypes only). Returns 0 or an error. */
int loom_set_requires_grad(loom_tensor *t, bool on);
bool loom_requires_grad(const loom_tensor *t);
/* True for tensors created by the user rather than by a recorded op. */
bool loom_is_leaf(const loom_tensor *t);
/* The accumulated gradient of a leaf (borrowed: owned by t), or NULL. */
loom_tensor *loom_grad(const loom_tensor *t);
/* Drops t's gradient (set_to_none semantics). */
void loom_zero_grad(loom_tensor *t);
/* Replaces t's gradient with a copy-free reference to g (or none for NULL). */
int loom_set_grad(loom_tensor *t, loom_tensor *g);
/* A new tensor sharing t's storage, cut from the graph. */
loom_tensor *loom_detach(const loom_tensor *t);
/* Name of the op that produced t ("add", "matmul", ...) or NULL for leaves. */
const char *loom_grad_fn_name(const loom_tensor *t);

/* Back-propagates from root: a one-element tensor, or any tensor with
 * grad_output of its shape (NULL = ones). Saved tensors are freed as the walk
 * goes unless retain_graph. Returns 0 or an error status. */
int loom_backward(loom_tensor *root, const loom_tensor *grad_output, bool retain_graph);

/* Gradient recording switch (thread-local). loom_no_grad_begin/end nest. */
void loom_no_grad_begin(void);
void loom_no_grad_end(void);
bool loom_grad_enabled(void);

/* Called once per leaf each time its .grad has received its final
 * contribution from a backward walk ("gradient ready"). */
typedef void (*loom_grad_hook)(loom_tensor *leaf, void *user);
int loom_set_grad_hook(loom_tensor *leaf, loom_grad_hook fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
