/* A user-defined module: a gated residual block with two Linear children and
 * a parameter and a buffer of its own, then everything a model gets for free:
 * parameter access by name, re-initialisation with loom_init_*, a few
 * training steps, save and load of its state_dict (strict and non-strict).
 *
 *   custom_module [--device cpu|cuda[:N]] [--out FILE]
 *
 * GatedResidual(dim, hidden):  y = x + gate * fc2(relu(fc1(x)))
 *   fc1: Linear(dim, hidden), fc2: Linear(hidden, dim), gate: parameter [dim],
 *   calls: a persistent buffer counting training forwards. */
#include <loom/loom.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIM 8
#define HIDDEN 32

typedef struct gated_state { int64_t dim; } gated_state;

static loom_tensor *gated_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  if (n_in != 1) {
    fprintf(stderr, "GatedResidual takes one input, got %d\n", n_in);
    return NULL;
  }
  loom_tensor *x = in[0];
  loom_scope_begin(); /* intermediates die here; only the output is kept */
  loom_tensor *h = loom_relu(loom_forward(loom_module_child(m, "fc1"), x));
  loom_tensor *y = loom_add(x, loom_mul(loom_module_param(m, "gate"), loom_forward(loom_module_child(m, "fc2"), h)));
  if (y && loom_module_training(m)) { /* buffers change in place, outside autograd */
    loom_tensor *calls = loom_module_buffer(m, "calls");
    loom_no_grad_begin();
    loom_copy_(calls, loom_add_scalar(calls, 1));
    loom_no_grad_end();
  }
  loom_keep(y);
  loom_scope_end();
  return y;
}

/* Multiply-accumulates of this module's own work per forward (the gate), for
 * loom_summary; the children report theirs. */
static int64_t gated_macs(const loom_module *m, loom_tensor *const *in, int n_in, const loom_tensor *out) {
  (void)n_in, (void)out;
  const gated_state *s = loom_module_state(m);
  int64_t rows = loom_numel(in[0]) / s->dim;
  return rows * s->dim;
}

static const loom_module_kind gated_kind = {.type = "GatedResidual", .forward = gated_forward, .macs = gated_macs};

static loom_module *gated_residual(int64_t dim, int64_t hidden) {
  gated_state *s = malloc(sizeof *s);
  if (!s) return NULL;
  s->dim = dim;
  loom_module *m = loom_module_new(&gated_kind, s); /* frees s with the module (free_state NULL = free) */
  loom_scope_begin();
  bool ok = m && !loom_module_add(m, "fc1", loom_nn_linear(dim, hidden, NULL)) &&
            !loom_module_add(m, "fc2", loom_nn_linear(hidden, dim, NULL)) &&
            loom_module_add_parameter(m, "gate", loom_full(LOOM_SHAPE(dim), 0.5, LOOM_F32, loom_cpu())) &&
            loom_module_add_buffer(m, "calls", loom_zeros(LOOM_SHAPE(), LOOM_F32, loom_cpu()), true);
  loom_scope_end(); /* the module holds its own references */
  if (!ok) {
    loom_module_free(m);
    return NULL;
  }
  return m;
}

/* Re-initialisation walk: Kaiming-normal weights and zero biases for every Linear. */
static void init_linear(loom_module *m, void *user) {
  int *count = user;
  if (strcmp(loom_module_type(m), "Linear")) return;
  if (!loom_init_kaiming_normal_(loom_module_param(m, "weight"), 0, LOOM_FAN_IN, "relu") &&
      !loom_init_zeros_(loom_module_param(m, "bias")))
    ++*count;
}

static int fail(const char *what) {
  fprintf(stderr, "custom_module: %s: %s\n", what, loom_last_error());
  return 1;
}

int main(int argc, char **argv) {
  const char *device = NULL, *out = "custom_module.safetensors";
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && !strcmp(argv[i], "--device")) device = argv[++i];
    else if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
    else {
      fprintf(stderr, "usage: custom_module [--device cpu|cuda[:N]] [--out FILE]\n");
      return 2;
    }
  }
  loom_device dev = loom_cuda_device_count() > 0 ? loom_cuda(0) : loom_cpu();
  if (device && !loom_device_parse(device, &dev)) return fail("--device");
  loom_manual_seed(7);
  /* A model: two of our blocks in a Sequential, then a Linear head. */
  loom_module *net = LOOM_SEQUENTIAL(gated_residual(DIM, HIDDEN), gated_residual(DIM, HIDDEN),
                                     loom_nn_linear(DIM, 1, NULL));
  if (!net || loom_module_to_device(net, dev)) return fail("building the model");

  /* Parameter access: named_parameters, one by path, counts. */
  loom_named_tensors *params = loom_module_named_parameters(net);
  for (int i = 0; params && i < params->n; i++)
    printf("  %-14s %s\n", params->names[i], loom_shape_str(loom_shape_of(params->tensors[i])));
  loom_named_tensors_free(params);
  printf("parameters: %lld; 0.gate[0] = %.2f\n", (long long)loom_module_num_params(net, false),
         loom_item_at(loom_module_param(net, "0.gate"), (const int64_t[]){0}));
  int inited = 0;
  loom_module_apply(net, init_linear, &inited);
  loom_init_constant_(loom_module_param(net, "1.gate"), 0.1);
  printf("re-initialised %d Linear layers (Kaiming normal), 1.gate = 0.1\n", inited);
  loom_summary(net, LOOM_SHAPE(16, DIM), LOOM_F32, dev, stdout);

  /* Train it to regress y = sum(sin(x)) for a few steps. */
  loom_optimizer *opt = loom_adam_module(net, &(loom_adam_opts){.lr = 1e-2});
  if (!opt) return fail("optimiser");
  double first = NAN, last = NAN;
  for (int step = 0; step < 200; step++) {
    loom_scope_begin();
    loom_tensor *x = loom_randn(LOOM_SHAPE(64, DIM), LOOM_F32, dev);
    const int d1 = 1;
    loom_tensor *target = loom_sum(loom_sin(x), &d1, 1, true);
    loom_tensor *loss = loom_mse_loss(loom_forward(net, x), target, LOOM_REDUCTION_MEAN);
    loom_optimizer_zero_grad(opt);
    if (!loss || loom_backward(loss, NULL, false) || loom_optimizer_step(opt)) {
      loom_scope_end();
      return fail("training step");
    }
    last = loom_item(loss);
    if (step == 0) first = last;
    loom_scope_end();
  }
  printf("training: mse %.4f -> %.4f in 200 steps; 0.calls = %.0f\n", first, last,
         loom_item(loom_module_buffer(net, "0.calls")));
  loom_optimizer_free(opt);

  /* Save, then load into a fresh model and check that it computes the same. */
  if (loom_module_save(net, out)) return fail("save");
  loom_module *copy = LOOM_SEQUENTIAL(gated_residual(DIM, HIDDEN), gated_residual(DIM, HIDDEN),
                                      loom_nn_linear(DIM, 1, NULL));
  if (!copy || loom_module_to_device(copy, dev) || loom_module_load(copy, out, true)) return fail("load");
  loom_module_train(net, false);
  loom_module_train(copy, false);
  loom_scope_begin();
  loom_tensor *x = loom_randn(LOOM_SHAPE(5, DIM), LOOM_F32, dev);
  double diff = loom_item(loom_sum(loom_abs(loom_sub(loom_forward(net, x), loom_forward(copy, x))), NULL, 0, false));
  loom_scope_end();
  printf("saved %s; loaded model matches: sum |difference| %g\n", out, diff);

  /* A model of another shape: strict load refuses and names the keys; nothing changes. */
  loom_module *other = LOOM_SEQUENTIAL(gated_residual(DIM, HIDDEN), loom_nn_linear(DIM, 1, NULL));
  if (other && loom_module_load(other, out, true)) printf("loading into a different model: %s\n", loom_last_error());
  loom_clear_error();
  loom_module_free(other);
  loom_module_free(copy);
  loom_module_free(net);
  return diff == 0 ? 0 : 1;
}
