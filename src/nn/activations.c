/* Parameter-free activation modules: ReLU, ReLU6, LeakyReLU, ELU, GELU, SiLU,
 * Sigmoid, Tanh, Softmax, LogSoftmax. Each forward calls its functional op;
 * MACs are 0 (elementwise). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "loom/ops.h"
#include "nn/layers_impl.h"

bool nn_one_input(const loom_module *m, int n_in) {
  if (n_in == 1) return true;
  core_set_error(LOOM_ERR_INVALID, "%s: forward takes 1 input, got %d", loom_module_type(m), n_in);
  return false;
}

loom_tensor *nn_layer_error(const loom_module *m) {
  char msg[768];
  snprintf(msg, sizeof msg, "%s", loom_last_error());
  loom_status st = loom_last_status();
  const char *type = loom_module_type(m), *rest = msg;
  size_t n = strlen(type), k = 0;
  while (k < n && msg[k] && tolower((unsigned char)msg[k]) == tolower((unsigned char)type[k])) k++;
  /* "linear: ..." from the functional form becomes "Linear: ...", not "Linear: linear: ..." */
  if (k == n && msg[n] == ':') rest = msg[n + 1] == ' ' ? msg + n + 2 : msg + n + 1;
  core_set_error(st ? st : LOOM_ERR_INVALID, "%s: %s", type, rest);
  return NULL;
}

loom_module *nn_new_with_config(const loom_module_kind *kind, const void *config, size_t size) {
  void *state = NULL;
  if (size) {
    state = malloc(size);
    if (!state) {
      core_set_error(LOOM_ERR_OOM, "%s: out of host memory", kind->type);
      return NULL;
    }
    memcpy(state, config, size);
  }
  loom_module *m = loom_module_new(kind, state);
  if (!m) free(state);
  return m;
}

/* Forward of a layer that applies f(x) (with its config). */
#define SIMPLE_FORWARD(fname, EXPR)                                                   \
  static loom_tensor *fname(loom_module *m, loom_tensor *const *in, int n_in) {       \
    if (!nn_one_input(m, n_in)) return NULL;                                          \
    const loom_tensor *x = in[0];                                                     \
    const void *cfg = loom_module_state(m);                                           \
    (void)cfg;                                                                        \
    loom_tensor *y = EXPR;                                                            \
    return y ? y : nn_layer_error(m);                                                 \
  }

SIMPLE_FORWARD(relu_forward, loom_relu(x))
SIMPLE_FORWARD(relu6_forward, loom_clamp(x, 0, 6))
SIMPLE_FORWARD(sigmoid_forward, loom_sigmoid(x))
SIMPLE_FORWARD(tanh_forward, loom_tanh(x))
SIMPLE_FORWARD(silu_forward, loom_silu(x))
SIMPLE_FORWARD(leaky_relu_forward, loom_leaky_relu(x, ((const loom_leaky_relu_config *)cfg)->negative_slope))
SIMPLE_FORWARD(elu_forward, loom_elu(x, ((const loom_elu_config *)cfg)->alpha))
SIMPLE_FORWARD(gelu_forward, loom_gelu(x, ((const loom_gelu_config *)cfg)->tanh_approx))
SIMPLE_FORWARD(softmax_forward, loom_softmax(x, ((const loom_softmax_config *)cfg)->dim))
SIMPLE_FORWARD(log_softmax_forward, loom_log_softmax(x, ((const loom_softmax_config *)cfg)->dim))

#define KIND(var, type_name, fwd) static const loom_module_kind var = {type_name, fwd, NULL, NULL, NULL};
KIND(relu_kind, "ReLU", relu_forward)
KIND(relu6_kind, "ReLU6", relu6_forward)
KIND(sigmoid_kind, "Sigmoid", sigmoid_forward)
KIND(tanh_kind, "Tanh", tanh_forward)
KIND(silu_kind, "SiLU", silu_forward)
KIND(leaky_relu_kind, "LeakyReLU", leaky_relu_forward)
KIND(elu_kind, "ELU", elu_forward)
KIND(gelu_kind, "GELU", gelu_forward)
KIND(softmax_kind, "Softmax", softmax_forward)
KIND(log_softmax_kind, "LogSoftmax", log_softmax_forward)

loom_module *loom_nn_relu(void) { return nn_new_with_config(&relu_kind, NULL, 0); }
loom_module *loom_nn_relu6(void) { return nn_new_with_config(&relu6_kind, NULL, 0); }
loom_module *loom_nn_sigmoid(void) { return nn_new_with_config(&sigmoid_kind, NULL, 0); }
loom_module *loom_nn_tanh(void) { return nn_new_with_config(&tanh_kind, NULL, 0); }
loom_module *loom_nn_silu(void) { return nn_new_with_config(&silu_kind, NULL, 0); }

loom_module *loom_nn_leaky_relu(double negative_slope) {
  if (isnan(negative_slope)) {
    core_set_error(LOOM_ERR_INVALID, "LeakyReLU: negative_slope is NaN");
    return NULL;
  }
  loom_leaky_relu_config c = {negative_slope};
  return nn_new_with_config(&leaky_relu_kind, &c, sizeof c);
}

loom_module *loom_nn_elu(double alpha) {
  if (isnan(alpha)) {
    core_set_error(LOOM_ERR_INVALID, "ELU: alpha is NaN");
    return NULL;
  }
  loom_elu_config c = {alpha};
  return nn_new_with_config(&elu_kind, &c, sizeof c);
}

loom_module *loom_nn_gelu(bool tanh_approx) {
  loom_gelu_config c = {tanh_approx};
  return nn_new_with_config(&gelu_kind, &c, sizeof c);
}

loom_module *loom_nn_softmax(int dim) {
  loom_softmax_config c = {dim};
  return nn_new_with_config(&softmax_kind, &c, sizeof c);
}

loom_module *loom_nn_log_softmax(int dim) {
  loom_softmax_config c = {dim};
  return nn_new_with_config(&log_softmax_kind, &c, sizeof c);
}
