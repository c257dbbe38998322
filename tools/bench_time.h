/* The clock and the sorting that the benchmark tools share (loom-bench,
 * loom-bench-core, loom-bench-layers). Header-only: each tool is one program. */
#ifndef LOOM_TOOLS_BENCH_TIME_H
#define LOOM_TOOLS_BENCH_TIME_H

#include <time.h>

/* Seconds on the monotonic clock. */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* qsort comparator for doubles, ascending. */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#endif
