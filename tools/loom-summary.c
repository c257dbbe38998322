/* loom-summary: the torchsummary-style table of a built-in model.
 *   loom-summary --model NAME [--input 1,28,28] [--batch N] [--device cpu|cuda[:N]] [--dtype f32]
 *   loom-summary --list
 * --input is one sample's shape (without the batch); each model has a default.
 * Counts (MACs, FLOPs, sizes) are for the whole batch.
 * Exit status: 0 on success, 1 when the model fails to build or run, 2 on bad
 * arguments (unknown model included). The model zoo (src/models) is a later
 * issue: until then the registry below builds the networks itself. */
#include <loom/loom.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct model_entry {
  const char *name;
  const char *description;
  const char *input;          /* default per-sample input shape */
  loom_module *(*build)(void);
} model_entry;

/* The seed network: Linear 3->3, Sigmoid, Linear 3->2, ReLU, Linear 2->2, Softmax(dim=1). */
static loom_module *build_seed(void) {
  return LOOM_SEQUENTIAL(loom_nn_linear(3, 3, NULL), loom_nn_sigmoid(), loom_nn_linear(3, 2, NULL), loom_nn_relu(),
                         loom_nn_linear(2, 2, NULL), loom_nn_softmax(1));
}

/* MLP 784-256-10 on 28x28 images. */
static loom_module *build_mlp(void) {
  return LOOM_SEQUENTIAL(loom_nn_flatten(1, -1), loom_nn_linear(784, 256, NULL), loom_nn_relu(),
                         loom_nn_linear(256, 10, NULL));
}

/* The seed CNN of SPEC section 4 for 1x28x28 input. */
static loom_module *build_seed_cnn(void) {
  return LOOM_SEQUENTIAL(loom_nn_conv2d(1, 32, 3, 3, NULL), loom_nn_relu(), loom_nn_max_pool2d(2, 2, NULL),
                         loom_nn_conv2d(32, 64, 3, 3, NULL), loom_nn_relu(), loom_nn_max_pool2d(2, 2, NULL),
                         loom_nn_flatten(1, -1), loom_nn_linear(64 * 5 * 5, 128, NULL), loom_nn_relu(),
                         loom_nn_linear(128, 10, NULL));
}

static const model_entry models[] = {
    {"seed", "Linear 3-3, Sigmoid, Linear 3-2, ReLU, Linear 2-2, Softmax", "3", build_seed},
    {"mlp", "Flatten, Linear 784-256, ReLU, Linear 256-10", "1,28,28", build_mlp},
    {"seed_cnn", "Conv 1-32 k3, ReLU, MaxPool 2, Conv 32-64 k3, ReLU, MaxPool 2, Flatten, Linear 1600-128, ReLU, "
                 "Linear 128-10",
     "1,28,28", build_seed_cnn},
};
#define N_MODELS (int)(sizeof models / sizeof models[0])

static void usage(FILE *f) {
  fprintf(f,
          "usage: loom-summary --model NAME [--input 1,28,28] [--batch N] [--device cpu|cuda[:N]] [--dtype f32]\n"
          "       loom-summary --list\n"
          "--input is one sample's shape (without the batch dimension); counts are for the whole batch.\n");
}

/* "1,28,28" -> dims after the batch; false on bad text. */
static bool parse_shape(const char *text, loom_shape *s, int64_t batch) {
  s->ndim = 1;
  s->d[0] = batch;
  const char *p = text;
  while (*p) {
    if (s->ndim == LOOM_MAX_DIMS) return false;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v <= 0) return false;
    s->d[s->ndim++] = v;
    p = end;
    if (*p == ',') {
      p++;
      if (!*p) return false;
    } else if (*p) {
      return false;
    }
  }
  return s->ndim > 1;
}

static bool parse_dtype(const char *text, loom_dtype *dt) {
  for (int i = 0; i < LOOM_DTYPE_COUNT; i++)
    if (!strcmp(text, loom_dtype_name((loom_dtype)i))) {
      *dt = (loom_dtype)i;
      return true;
    }
  return false;
}

int main(int argc, char **argv) {
  const char *model = NULL, *input = NULL, *device = "cpu", *dtype = "f32";
  long long batch = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (!strcmp(a, "--list")) {
      for (int k = 0; k < N_MODELS; k++)
        printf("%-10s input %-9s %s\n", models[k].name, models[k].input, models[k].description);
      return 0;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--model") && has_value) {
      model = argv[++i];
    } else if (!strcmp(a, "--input") && has_value) {
      input = argv[++i];
    } else if (!strcmp(a, "--device") && has_value) {
      device = argv[++i];
    } else if (!strcmp(a, "--dtype") && has_value) {
      dtype = argv[++i];
    } else if (!strcmp(a, "--batch") && has_value) {
      char *end;
      batch = strtoll(argv[++i], &end, 10);
      if (*end || batch < 1) {
        fprintf(stderr, "loom-summary: --batch needs a positive integer, got '%s'\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "loom-summary: unknown or incomplete argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!model) {
    fprintf(stderr, "loom-summary: --model is required (see --list)\n");
    usage(stderr);
    return 2;
  }
  const model_entry *e = NULL;
  for (int k = 0; k < N_MODELS; k++)
    if (!strcmp(models[k].name, model)) e = &models[k];
  if (!e) {
    fprintf(stderr, "loom-summary: unknown model '%s'; known models:", model);
    for (int k = 0; k < N_MODELS; k++) fprintf(stderr, " %s", models[k].name);
    fprintf(stderr, "\n");
    return 2;
  }
  loom_shape shape;
  if (!parse_shape(input ? input : e->input, &shape, batch)) {
    fprintf(stderr, "loom-summary: --input needs positive sizes separated by commas (at most %d), got '%s'\n",
            LOOM_MAX_DIMS - 1, input ? input : e->input);
    return 2;
  }
  loom_device dev;
  if (!loom_device_parse(device, &dev)) {
    fprintf(stderr, "loom-summary: bad --device '%s': %s\n", device, loom_last_error());
    return 2;
  }
  loom_dtype dt;
  if (!parse_dtype(dtype, &dt) || !loom_dtype_is_float(dt)) {
    fprintf(stderr, "loom-summary: --dtype must be f32, f64, f16 or bf16, got '%s'\n", dtype);
    return 2;
  }

  loom_module *m = e->build();
  int status = 1;
  if (!m) {
    fprintf(stderr, "loom-summary: cannot build %s: %s\n", e->name, loom_last_error());
  } else if (loom_module_to_device(m, dev) || loom_module_to_dtype(m, dt)) {
    fprintf(stderr, "loom-summary: cannot move %s to %s %s: %s\n", e->name, loom_device_name(dev),
            loom_dtype_name(dt), loom_last_error());
  } else if (loom_summary(m, shape, dt, dev, stdout)) {
    fprintf(stderr, "loom-summary: %s\n", loom_last_error());
  } else {
    status = 0;
  }
  loom_module_free(m);
  return status;
}
