/* Helpers shared by the act-family modules (src/nn/layers.c, activations.c). Internal. */
#ifndef LOOM_NN_LAYERS_IMPL_H
#define LOOM_NN_LAYERS_IMPL_H

#include "core/tensor_impl.h"
#include "loom/nn.h"

/* Fails (NULL + error naming the layer) unless forward got exactly one input. */
bool nn_one_input(const loom_module *m, int n_in);
/* For a functional op's NULL result: prefixes the recorded error with the
 * layer's type ("Softmax: softmax: dim 3 out of range ..."). Returns NULL. */
loom_tensor *nn_layer_error(const loom_module *m);
/* A module of kind with a copy of the config (size bytes); NULL on error. */
loom_module *nn_new_with_config(const loom_module_kind *kind, const void *config, size_t size);

#endif
