/* loom-ckpt: look inside checkpoints and safetensors files.
 *   loom-ckpt list FILE      metadata, then each tensor: name, dtype, shape, bytes
 *   loom-ckpt verify FILE    format and checksum of a Loom checkpoint (any safetensors file: its format)
 *   loom-ckpt diff A B       per tensor: only in one file, dtype / shape changed, or the max |a - b|
 * Exit status: 0 success (diff: the files hold the same tensors and values), 1 a bad or
 * unreadable file (diff: the files differ), 2 bad arguments. */
#include <loom/loom.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
  fprintf(f, "usage: loom-ckpt list FILE\n"
             "       loom-ckpt verify FILE\n"
             "       loom-ckpt diff A B\n");
}

static loom_tensor_map *load(const char *path) {
  loom_tensor_map *m = loom_safetensors_load(path, loom_cpu());
  if (!m) fprintf(stderr, "loom-ckpt: %s\n", loom_last_error());
  return m;
}

static size_t nbytes(const loom_tensor *t) { return (size_t)loom_numel(t) * loom_dtype_size(loom_dtype_of(t)); }

static int list(const char *path) {
  loom_tensor_map *m = load(path);
  if (!m) return 1;
  printf("%s: %d tensors, %d metadata entries\n", path, loom_map_size(m), loom_map_meta_size(m));
  for (int i = 0; i < loom_map_meta_size(m); i++) {
    const char *k = loom_map_meta_key(m, i), *v = loom_map_get_meta(m, k);
    printf("  %-20s %.*s%s\n", k, 100, v, strlen(v) > 100 ? " ..." : "");
  }
  size_t total = 0;
  for (int i = 0; i < loom_map_size(m); i++) {
    const char *name = loom_map_name(m, i);
    loom_tensor *t = loom_map_get(m, name);
    printf("%-50s %-5s %-20s %12zu\n", name, loom_dtype_name(loom_dtype_of(t)), loom_shape_str(loom_shape_of(t)),
           nbytes(t));
    total += nbytes(t);
  }
  printf("total %zu bytes in %d tensors\n", total, loom_map_size(m));
  loom_map_free(m);
  return 0;
}

static int verify(const char *path) {
  loom_tensor_map *m = load(path);
  if (!m) return 1;
  const char *format = loom_map_get_meta(m, "format");
  bool ours = format && !strcmp(format, "loom-checkpoint");
  int n = loom_map_size(m);
  loom_map_free(m);
  if (!ours) {
    printf("%s: a valid safetensors file (%d tensors); not a Loom checkpoint, so no checksum to verify\n", path, n);
    return 0;
  }
  loom_checkpoint_meta meta;
  int r = loom_checkpoint_check(path, &meta);
  if (r < 0) {
    fprintf(stderr, "loom-ckpt: %s\n", loom_last_error());
    return 1;
  }
  printf("%s: OK, Loom checkpoint version %d, checksum matches; %d tensors, step %lld, epoch %lld, model %s%s%s\n",
         path, meta.version, r, (long long)meta.step, (long long)meta.epoch, meta.model_type,
         meta.optimizer[0] ? ", optimizer " : "", meta.optimizer);
  return 0;
}

/* Largest |a - b| over the elements (NaN when one of them is NaN and the other is not). */
static double max_abs_diff(const loom_tensor *a, const loom_tensor *b) {
  int64_t n = loom_numel(a);
  double *p = malloc((size_t)(n ? n : 1) * sizeof *p), *q = malloc((size_t)(n ? n : 1) * sizeof *q);
  loom_scope_begin();
  loom_tensor *x = loom_to_dtype(a, LOOM_F64), *y = loom_to_dtype(b, LOOM_F64);
  bool ok = p && q && x && y && !loom_to_host(x, p, (size_t)n * sizeof *p) && !loom_to_host(y, q, (size_t)n * sizeof *q);
  loom_scope_end();
  double worst = ok ? 0 : NAN;
  for (int64_t i = 0; ok && i < n; i++) {
    if (isnan(p[i]) != isnan(q[i])) {
      worst = NAN;
      break;
    }
    double d = isnan(p[i]) ? 0 : fabs(p[i] - q[i]);
    if (d > worst) worst = d;
  }
  free(p);
  free(q);
  return worst;
}

static int diff(const char *pa, const char *pb) {
  loom_tensor_map *a = load(pa), *b = a ? load(pb) : NULL;
  if (!b) {
    loom_map_free(a);
    return 1;
  }
  int differ = 0;
  for (int i = 0; i < loom_map_size(a); i++) {
    const char *name = loom_map_name(a, i);
    loom_tensor *x = loom_map_get(a, name), *y = loom_map_get(b, name);
    if (!y) {
      printf("only in %s: %s\n", pa, name);
      differ++;
    } else if (loom_dtype_of(x) != loom_dtype_of(y) || !loom_shape_equal(loom_shape_of(x), loom_shape_of(y))) {
      printf("%s: %s %s -> %s ", name, loom_dtype_name(loom_dtype_of(x)), loom_shape_str(loom_shape_of(x)),
             loom_dtype_name(loom_dtype_of(y)));
      printf("%s\n", loom_shape_str(loom_shape_of(y)));
      differ++;
    } else {
      double d = max_abs_diff(x, y);
      if (d != 0) {
        printf("%-50s max |a - b| %.6g\n", name, d);
        differ++;
      }
    }
  }
  for (int i = 0; i < loom_map_size(b); i++)
    if (!loom_map_get(a, loom_map_name(b, i))) {
      printf("only in %s: %s\n", pb, loom_map_name(b, i));
      differ++;
    }
  if (differ) printf("%d of the tensors differ\n", differ);
  else printf("same tensors, same values (%d tensors)\n", loom_map_size(a));
  loom_map_free(a);
  loom_map_free(b);
  return differ ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    usage(stdout);
    return 0;
  }
  if (argc == 3 && !strcmp(argv[1], "list")) return list(argv[2]);
  if (argc == 3 && !strcmp(argv[1], "verify")) return verify(argv[2]);
  if (argc == 4 && !strcmp(argv[1], "diff")) return diff(argv[2], argv[3]);
  fprintf(stderr, "loom-ckpt: %s\n", argc < 2 ? "no command" : "unknown command or wrong number of files");
  usage(stderr);
  return 2;
}
