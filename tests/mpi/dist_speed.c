/* How fast the all-reduce is: f32 sums of 4 KiB to 25 MiB (a default DDP
 * bucket), after a warm-up, on whatever backend the launcher gives. Rank 0
 * prints the median time per call and the bus bandwidth of each size
 * (2 (N - 1) / N x bytes / time, the bytes each rank sends and receives in a
 * ring). Not a test: docs/distributed.md quotes its figures.
 * Usage: launch_tcp.sh N dist_speed | mpirun -np N dist_speed */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <loom/loom.h>
#include <loom/dist.h>

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double now(void) {
  struct timespec ts;
  timespec_get(&ts, TIME_UTC);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
  if (loom_dist_init(NULL)) {
    fprintf(stderr, "dist_speed: %s\n", loom_last_error());
    return 1;
  }
  int world = loom_dist_world_size();
  const int64_t sizes[] = {1024, 16384, 262144, 1048576, 6553600};   /* elements: 4 KiB ... 25 MiB */
  if (loom_dist_rank() == 0) printf("%10s %8s %12s %14s\n", "bytes", "calls", "median us", "bus GB/s");
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    loom_tensor *t = loom_ones(LOOM_SHAPE(sizes[s]), LOOM_F32, loom_cpu());
    int calls = sizes[s] >= 1048576 ? 20 : 200;
    double *dt = malloc((size_t)calls * sizeof *dt);
    for (int i = 0; i < 5; i++) loom_all_reduce(t, LOOM_REDUCE_SUM);
    for (int i = 0; i < calls; i++) {
      loom_barrier();
      double t0 = now();
      if (loom_all_reduce(t, LOOM_REDUCE_SUM)) return 1;
      dt[i] = now() - t0;
    }
    qsort(dt, (size_t)calls, sizeof *dt, cmp);
    double med = dt[calls / 2], bytes = 4.0 * (double)sizes[s];
    if (loom_dist_rank() == 0)
      printf("%10.0f %8d %12.1f %14.2f\n", bytes, calls, med * 1e6, 2.0 * (world - 1) / world * bytes / med / 1e9);
    free(dt);
    loom_release(t);
  }
  loom_dist_finalize();
  return 0;
}
