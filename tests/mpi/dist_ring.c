/* The collectives in a world of any size (ctest runs 3 ranks over TCP, where
 * the ring splits tensors unevenly, forwards broadcasts and needs more than
 * one round for a barrier): every dtype and op against the known answer,
 * broadcast from every root, gather, scatter, and the same bits on every
 * rank. Prints "dist_ring: rank R: PASS" or the first failures; exit 0 when
 * all passed. Usage: launch_tcp.sh N dist_ring (or mpirun -np N dist_ring). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <loom/loom.h>
#include <loom/dist.h>

static int failures, rank, world;

static void check(int ok, const char *what, long long i, double got, double want) {
  if (ok) return;
  if (failures++ < 10)
    fprintf(stderr, "dist_ring: rank %d: %s: element %lld is %g, want %g\n", rank, what, i, got, want);
}

/* A tensor of dtype dt holding f(i) for i < n. */
static loom_tensor *make(int64_t n, loom_dtype dt, double (*f)(int64_t, int)) {
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  for (int64_t i = 0; i < n; i++) v[i] = f(i, rank);
  loom_tensor *d = loom_from_host(v, LOOM_SHAPE(n), LOOM_F64, loom_cpu());
  loom_tensor *t = loom_to_dtype(d, dt);
  loom_release(d);
  free(v);
  return t;
}

static double *values(const loom_tensor *t) {
  int64_t n = loom_numel(t);
  loom_tensor *d = loom_to_dtype(t, LOOM_F64);
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  loom_to_host(d, v, (size_t)n * sizeof *v);
  loom_release(d);
  return v;
}

static double small(int64_t i, int r) { return (double)(i % 5 + r); }
static double flag(int64_t i, int r) { return (i + r) % 3 == 0; }
static double ident(int64_t i, int r) { return (double)(1000 * r) + (double)(i % 1000); }

static void all_reduce_every_dtype(int64_t n) {
  const loom_dtype dts[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16, LOOM_I32, LOOM_I64, LOOM_U8};
  const loom_reduce_op ops[] = {LOOM_REDUCE_SUM, LOOM_REDUCE_AVG, LOOM_REDUCE_MAX, LOOM_REDUCE_MIN};
  for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
    for (size_t o = 0; o < 4; o++) {
      if (ops[o] == LOOM_REDUCE_AVG && !loom_dtype_is_float(dts[d])) continue;
      loom_tensor *t = make(n, dts[d], small);
      if (loom_all_reduce(t, ops[o])) {
        fprintf(stderr, "dist_ring: %s\n", loom_last_error());
        failures++;
      }
      double *v = values(t);
      char what[64];
      snprintf(what, sizeof what, "all_reduce %s %s of %lld", loom_dtype_name(dts[d]), loom_reduce_op_name(ops[o]),
               (long long)n);
      for (int64_t i = 0; i < n; i++) {
        double base = (double)(i % 5), sum = world * base + world * (world - 1) / 2.0;
        double want = ops[o] == LOOM_REDUCE_SUM ? sum : ops[o] == LOOM_REDUCE_AVG ? sum / world
                      : ops[o] == LOOM_REDUCE_MAX ? base + world - 1 : base;
        check(v[i] == want, what, (long long)i, v[i], want);
      }
      free(v);
      loom_release(t);
    }
  }
  for (int o = 0; o < 3; o++) {   /* bool: sum and max are or, min is and */
    loom_reduce_op op = o == 0 ? LOOM_REDUCE_SUM : o == 1 ? LOOM_REDUCE_MAX : LOOM_REDUCE_MIN;
    loom_tensor *t = make(n, LOOM_BOOL, flag);
    loom_all_reduce(t, op);
    double *v = values(t);
    for (int64_t i = 0; i < n; i++) {
      int any = 0, all = 1;
      for (int r = 0; r < world; r++) any |= (int)flag(i, r), all &= (int)flag(i, r);
      double want = op == LOOM_REDUCE_MIN ? all : any;
      check(v[i] == want, "all_reduce bool", (long long)i, v[i], want);
    }
    free(v);
    loom_release(t);
  }
}

static void broadcast_gather_scatter(int64_t n) {
  for (int root = 0; root < world; root++) {
    loom_tensor *t = make(n, LOOM_I32, ident);
    loom_broadcast(t, root);
    double *v = values(t);
    for (int64_t i = 0; i < n; i++) check(v[i] == 1000.0 * root + (double)(i % 1000), "broadcast", (long long)i, v[i], 1000.0 * root + (double)(i % 1000));
    free(v);
    loom_release(t);
  }
  loom_tensor *in = make(n, LOOM_BF16, small), *all = loom_zeros(LOOM_SHAPE(n * world), LOOM_BF16, loom_cpu());
  loom_all_gather(all, in);
  double *v = values(all);
  for (int r = 0; r < world; r++)
    for (int64_t i = 0; i < n; i++) check(v[r * n + i] == small(i, r), "all_gather", (long long)(r * n + i), v[r * n + i], small(i, r));
  free(v);
  loom_release(in);
  loom_release(all);
  loom_tensor *big = make(n * world, LOOM_I64, small), *part = loom_zeros(LOOM_SHAPE(n), LOOM_I64, loom_cpu());
  loom_reduce_scatter(part, big, LOOM_REDUCE_SUM);
  v = values(part);
  for (int64_t i = 0; i < n; i++) {
    int64_t g = rank * n + i;
    double want = world * (double)(g % 5) + world * (world - 1) / 2.0;
    check(v[i] == want, "reduce_scatter", (long long)i, v[i], want);
  }
  free(v);
  loom_release(big);
  loom_release(part);
}

/* Random floats (another seed on each rank) sum to the same bits on every rank. */
static void same_bits(int64_t n) {
  loom_manual_seed(7 + (uint64_t)rank);
  loom_tensor *t = loom_randn(LOOM_SHAPE(n), LOOM_F32, loom_cpu());
  loom_all_reduce(t, LOOM_REDUCE_SUM);
  loom_tensor *all = loom_zeros(LOOM_SHAPE(n * world), LOOM_F32, loom_cpu());
  loom_all_gather(all, t);
  float *v = malloc((size_t)(n * world) * sizeof *v);
  loom_to_host(all, v, (size_t)(n * world) * sizeof *v);
  for (int r = 1; r < world; r++)
    if (memcmp(v, v + r * n, (size_t)n * sizeof *v)) {
      fprintf(stderr, "dist_ring: rank %d: rank %d's sum of %lld floats differs from rank 0's\n", rank, r, (long long)n);
      failures++;
    }
  free(v);
  loom_release(t);
  loom_release(all);
}

int main(void) {
  if (loom_dist_init(NULL)) {
    fprintf(stderr, "dist_ring: %s\n", loom_last_error());
    return 1;
  }
  rank = loom_dist_rank();
  world = loom_dist_world_size();
  const int64_t sizes[] = {0, 1, 2, 7, 100, 300001};   /* fewer elements than ranks, uneven chunks, many segments */
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    all_reduce_every_dtype(sizes[s]);
    broadcast_gather_scatter(sizes[s]);
  }
  same_bits(1000);
  same_bits(1234567);
  for (int i = 0; i < 5; i++)
    if (loom_barrier()) failures++;
  printf("dist_ring: rank %d of %d: %s\n", rank, world, failures ? "FAIL" : "PASS");
  loom_dist_finalize();
  return failures ? 1 : 0;
}
