/* Small helpers shared by the examples: a monotonic clock, h:mm:ss, flag
 * values with range checks and the --device choice. Header-only, because each
 * file in examples/ is its own program; every message starts with the
 * program's name. Include it first: it sets _POSIX_C_SOURCE for the system
 * headers that follow. */
#ifndef LOOM_EXAMPLES_EXAMPLE_UTIL_H
#define LOOM_EXAMPLES_EXAMPLE_UTIL_H

#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <errno.h>
#include <limits.h>
#include <loom/loom.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double ex_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "1:02:03" or "2:03" */
static inline const char *ex_hms(double s, char *buf, size_t size) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(buf, size, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

/* An integer in [lo, hi]; 0, or -1 after a message naming the flag. */
static inline int ex_parse_long(const char *prog, const char *flag, const char *text, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno || end == text || *end || v < lo || v > hi) {
    fprintf(stderr, "%s: %s needs an integer >= %ld", prog, flag, lo);
    if (hi < LONG_MAX) fprintf(stderr, " and <= %ld", hi);
    fprintf(stderr, ", got '%s'\n", text);
    return -1;
  }
  *out = v;
  return 0;
}

/* A finite number >= lo (> lo when strict); 0, or -1 after a message. */
static inline int ex_parse_double(const char *prog, const char *flag, const char *text, double lo, int strict,
                                  double *out) {
  char *end;
  double v = strtod(text, &end);
  if (end == text || *end || !isfinite(v) || v < lo || (strict && v == lo)) {
    fprintf(stderr, "%s: %s needs a number %s %g, got '%s'\n", prog, flag, strict ? ">" : ">=", lo, text);
    return -1;
  }
  *out = v;
  return 0;
}

/* The device of --device (NULL: cuda:0 when a GPU is visible, else cpu) and
 * the check that bf16 autocast has a CUDA device. Returns the exit status:
 * 0 = go on, 2 = a usage error, 1 = the device is not there. */
static inline int ex_device(const char *prog, const char *flag_value, int bf16, loom_device *dev) {
  *dev = loom_cuda_device_count() > 0 ? loom_cuda(0) : loom_cpu();
  if (flag_value && !loom_device_parse(flag_value, dev)) {
    fprintf(stderr, "%s: --device: %s\n", prog, loom_last_error());
    return 2;
  }
  if (bf16 && dev->type != LOOM_CUDA) {
    fprintf(stderr, "%s: --dtype bf16 needs a CUDA device (a bf16 autocast region on the GPU); "
                    "on the CPU use --dtype f32\n", prog);
    return 2;
  }
  if (dev->type == LOOM_CUDA && dev->index >= loom_cuda_device_count()) {
    fprintf(stderr, "%s: --device %s: %d CUDA devices visible (CUDA built: %s)\n", prog, loom_device_name(*dev),
            loom_cuda_device_count(), loom_cuda_is_built() ? "yes" : "no");
    return 1;
  }
  return 0;
}

#endif
