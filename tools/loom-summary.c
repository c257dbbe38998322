/* loom-summary: the torchsummary-style table of a built-in model.
 *   loom-summary --model NAME [--input 1,28,28] [--batch N] [--device cpu|cuda[:N]] [--dtype f32]
 *                [--classes N] [--stem imagenet|cifar] [--width-mult X]
 *   loom-summary --list
 * Any model of the zoo (loom/models.h); --input is one sample's shape (without
 * the batch), defaulting to the model's. Counts (MACs, FLOPs, sizes) are for the
 * whole batch. A graph model (gcn) takes --input NODES,FEATURES (default 34,34)
 * and runs on a ring graph of that many nodes.
 * Exit status: 0 on success, 1 when the model fails to build or run, 2 on bad
 * arguments (unknown model included). */
#include <loom/loom.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_args.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: loom-summary --model NAME [--input 1,28,28] [--batch N] [--device cpu|cuda[:N]] [--dtype f32]\n"
          "                    [--classes N] [--stem imagenet|cifar] [--width-mult X]\n"
          "       loom-summary --list\n"
          "--input is one sample's shape (without the batch dimension); counts are for the whole batch.\n");
}

static bool parse_dtype(const char *text, loom_dtype *dt) {
  for (int i = 0; i < LOOM_DTYPE_COUNT; i++)
    if (!strcmp(text, loom_dtype_name((loom_dtype)i))) {
      *dt = (loom_dtype)i;
      return true;
    }
  return false;
}

/* A graph model (GCN) on random features [nodes, features] over a ring graph
 * (node i joined to i + 1, the last to the first), its A_hat sparse; m is
 * already on dev in dt. The scope holds every tensor made here, those of
 * loom_gcn_adjacency included. Returns the exit status. */
static int graph_summary(loom_module *m, int64_t nodes, int64_t features, loom_dtype dt, loom_device dev) {
  int64_t *ring = malloc(2 * (size_t)nodes * sizeof *ring);
  if (!ring) {
    fprintf(stderr, "loom-summary: out of host memory for a ring of %lld nodes\n", (long long)nodes);
    return 1;
  }
  for (int64_t i = 0; i < nodes; i++) {
    ring[i] = i;
    ring[nodes + i] = (i + 1) % nodes;
  }
  int status = 1;
  loom_scope_begin();
  loom_tensor *edges = loom_from_host(ring, LOOM_SHAPE(2, nodes), LOOM_I64, loom_cpu());
  loom_tensor *idx = NULL, *val = NULL;
  if (!edges || loom_gcn_adjacency(edges, nodes, &idx, &val)) {
    fprintf(stderr, "loom-summary: cannot build the ring graph: %s\n", loom_last_error());
  } else {
    loom_tensor *in[3] = {loom_rand(LOOM_SHAPE(nodes, features), dt, dev), loom_to(idx, dev, LOOM_I64),
                          loom_to(val, dev, dt)};
    printf("%lld nodes in a ring (%lld non-zeros in A_hat with the self loops), %lld random features each\n",
           (long long)nodes, (long long)loom_numel(val), (long long)features);
    if (!in[0] || !in[1] || !in[2] || loom_summary_n(m, in, 3, stdout))
      fprintf(stderr, "loom-summary: %s\n", loom_last_error());
    else
      status = 0;
  }
  loom_scope_end();
  free(ring);
  return status;
}

int main(int argc, char **argv) {
  const char *model = NULL, *input = NULL, *device = "cpu", *dtype = "f32";
  long long batch = 1;
  loom_model_opts opts = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (!strcmp(a, "--list")) {
      for (const char *const *n = loom_model_names(); *n; n++) {
        const loom_model_info *info = loom_model_find(*n);
        char in[64];
        default_input(info, in, sizeof in);
        printf("%-18s input %-9s %s\n", info->name, in, info->description);
      }
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
    } else if (!strcmp(a, "--stem") && has_value) {
      const char *v = argv[++i];
      if (!strcmp(v, "imagenet")) opts.stem = LOOM_STEM_IMAGENET;
      else if (!strcmp(v, "cifar")) opts.stem = LOOM_STEM_CIFAR;
      else {
        fprintf(stderr, "loom-summary: --stem must be imagenet or cifar, got '%s'\n", v);
        return 2;
      }
    } else if (!strcmp(a, "--classes") && has_value) {
      char *end;
      opts.num_classes = strtoll(argv[++i], &end, 10);
      if (*end || opts.num_classes < 1) {
        fprintf(stderr, "loom-summary: --classes needs a positive integer, got '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(a, "--width-mult") && has_value) {
      char *end;
      opts.width_mult = strtod(argv[++i], &end);
      if (*end || !(opts.width_mult > 0)) {
        fprintf(stderr, "loom-summary: --width-mult needs a positive number, got '%s'\n", argv[i]);
        return 2;
      }
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
  const loom_model_info *e = loom_model_find(model);
  if (!e) {
    fprintf(stderr, "loom-summary: %s\n", loom_last_error());
    return 2;
  }
  char dflt[64];
  default_input(e, dflt, sizeof dflt);
  loom_shape shape;
  if (!parse_shape(input ? input : dflt, &shape, batch)) {
    fprintf(stderr, "loom-summary: --input needs positive sizes separated by commas (at most %d), got '%s'\n",
            LOOM_MAX_DIMS - 1, input ? input : dflt);
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

  if (e->kind == LOOM_INPUT_TENSOR && e->input[1] && shape.ndim == 4)
    opts.in_channels = shape.d[1]; /* image models take --input's channels */
  if (e->kind == LOOM_INPUT_GRAPH) {
    if (shape.ndim != 3 || batch != 1) {
      fprintf(stderr, "loom-summary: %s takes --input NODES,FEATURES (one graph, no --batch)\n", e->name);
      return 2;
    }
    opts.in_channels = shape.d[2];
  }
  loom_module *m = loom_model_create(e->name, &opts);
  int status = 1;
  if (!m) {
    fprintf(stderr, "loom-summary: cannot build %s: %s\n", e->name, loom_last_error());
  } else if (loom_module_to_device(m, dev) || loom_module_to_dtype(m, dt)) {
    fprintf(stderr, "loom-summary: cannot move %s to %s %s: %s\n", e->name, loom_device_name(dev),
            loom_dtype_name(dt), loom_last_error());
  } else if (e->kind == LOOM_INPUT_GRAPH) {
    status = graph_summary(m, shape.d[1], shape.d[2], dt, dev);
  } else if (loom_summary(m, shape, e->kind == LOOM_INPUT_TOKENS ? LOOM_I64 : dt, dev, stdout)) {
    fprintf(stderr, "loom-summary: %s\n", loom_last_error());
  } else {
    status = 0;
  }
  loom_module_free(m);
  return status;
}
