/* The op profiler (loom/profile.h): core_launch calls core_profile_launch for
 * each leaf kernel while core_profile_on is set. CPU kernels are timed on the
 * wall clock; CUDA kernels between two events on the launch's stream, read
 * back when the profiler stops. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kernel.h"
#include "loom/profile.h"

/* Pending CUDA launches are folded (a wait for the GPU) when this many pile up. */
#define FOLD_AT 4096

atomic_int core_profile_on;

typedef struct op_total {
  int64_t calls;
  double ms;
} op_total;

/* A pair of events of one CUDA device; pending ones also know their op. */
typedef struct event_pair {
  loom_event *start, *end;
  int device;
  core_op op;
} event_pair;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool running;
static op_total table[CORE_OP_COUNT][LOOM_DEVICE_TYPE_COUNT];
/* pairs[0, n_pending) wait to be read; pairs[n_pending, n_pairs) are free. */
static event_pair *pairs;
static int n_pairs, n_pending, cap_pairs;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Waits for the pending CUDA launches and adds their times. Under lock. */
static void fold_pending(void) {
  for (int i = 0; i < n_pending; i++) {
    event_pair *p = &pairs[i];
    float ms = NAN;
    if (loom_event_synchronize(p->end) == LOOM_OK) ms = loom_event_elapsed_ms(p->start, p->end);
    /* NaN: the launch failed before its end was recorded; its call still counts */
    if (ms == ms) table[p->op][LOOM_CUDA].ms += ms;
  }
  n_pending = 0;
}

/* A free pair of events for device `index`, marked pending for op; copies of
 * its events in *start / *end (the array may move once the lock is dropped).
 * Under lock. Returns false (error recorded) when events cannot be made. */
static bool take_pair(int index, core_op op, loom_event **start, loom_event **end) {
  if (n_pending >= FOLD_AT) fold_pending();
  int i = n_pending;
  while (i < n_pairs && pairs[i].device != index) i++;
  if (i == n_pairs) {
    if (n_pairs == cap_pairs) {
      int cap = cap_pairs ? 2 * cap_pairs : 64;
      event_pair *p = realloc(pairs, (size_t)cap * sizeof *p);
      if (!p) {
        core_set_error(LOOM_ERR_OOM, "profiler: out of host memory");
        return false;
      }
      pairs = p;
      cap_pairs = cap;
    }
    loom_event *s = loom_event_create(loom_cuda(index)), *e = s ? loom_event_create(loom_cuda(index)) : NULL;
    if (!e) {
      loom_event_destroy(s);
      return false;
    }
    pairs[n_pairs++] = (event_pair){s, e, index, op};
  }
  event_pair tmp = pairs[i];
  pairs[i] = pairs[n_pending];
  pairs[n_pending] = tmp;
  pairs[n_pending].op = op;
  *start = tmp.start;
  *end = tmp.end;
  n_pending++;
  return true;
}

loom_status core_profile_launch(core_kernel fn, core_kctx *k, loom_device dev) {
  if (dev.type == LOOM_CUDA) {
    loom_event *start = NULL, *end = NULL;
    pthread_mutex_lock(&lock);
    bool timed = running && take_pair(dev.index, k->op, &start, &end);
    if (running) table[k->op][LOOM_CUDA].calls++;
    pthread_mutex_unlock(&lock);
    /* events on the current stream of dev, which is k->stream */
    if (timed && loom_event_record(start, NULL) != LOOM_OK) timed = false;
    loom_status st = fn(k);
    if (timed) loom_event_record(end, NULL);
    return st;
  }
  double t0 = now_ms();
  loom_status st = fn(k);
  double ms = now_ms() - t0;
  pthread_mutex_lock(&lock);
  if (running) {
    table[k->op][dev.type].calls++;
    table[k->op][dev.type].ms += ms;
  }
  pthread_mutex_unlock(&lock);
  return st;
}

int loom_profiler_start(void) {
  pthread_mutex_lock(&lock);
  if (running) {
    pthread_mutex_unlock(&lock);
    return core_set_error(LOOM_ERR_INVALID, "loom_profiler_start: the profiler is already running "
                                            "(call loom_profiler_stop first)");
  }
  memset(table, 0, sizeof table);
  n_pending = 0;
  running = true;
  atomic_store(&core_profile_on, 1);
  pthread_mutex_unlock(&lock);
  return LOOM_OK;
}

int loom_profiler_stop(void) {
  pthread_mutex_lock(&lock);
  if (!running) {
    pthread_mutex_unlock(&lock);
    return core_set_error(LOOM_ERR_INVALID, "loom_profiler_stop: the profiler is not running "
                                            "(call loom_profiler_start first)");
  }
  atomic_store(&core_profile_on, 0);
  running = false;
  fold_pending();
  pthread_mutex_unlock(&lock);
  return LOOM_OK;
}

static int by_time(const void *a, const void *b) {
  const loom_op_stat *x = a, *y = b;
  if (x->total_ms != y->total_ms) return x->total_ms < y->total_ms ? 1 : -1;
  if (x->calls != y->calls) return x->calls < y->calls ? 1 : -1;
  int c = strcmp(x->op, y->op);
  return c ? c : (int)x->device - (int)y->device;
}

/* Every recorded (op, device), sorted; n set to the count. */
static loom_op_stat *snapshot(int *n) {
  loom_op_stat *all = malloc(sizeof(loom_op_stat) * CORE_OP_COUNT * LOOM_DEVICE_TYPE_COUNT);
  if (!all) {
    core_set_error(LOOM_ERR_OOM, "profiler: out of host memory");
    return NULL;
  }
  *n = 0;
  pthread_mutex_lock(&lock);
  for (int op = 0; op < CORE_OP_COUNT; op++)
    for (int d = 0; d < LOOM_DEVICE_TYPE_COUNT; d++)
      if (table[op][d].calls)
        all[(*n)++] = (loom_op_stat){core_ops[op].name, (loom_device_type)d, table[op][d].calls, table[op][d].ms};
  pthread_mutex_unlock(&lock);
  qsort(all, (size_t)*n, sizeof *all, by_time);
  return all;
}

int loom_profiler_ops(loom_op_stat *out, int cap) {
  if (cap < 0 || (cap > 0 && !out)) {
    core_set_error(LOOM_ERR_INVALID, "loom_profiler_ops: out is NULL or cap (%d) is negative", cap);
    return -1;
  }
  int n;
  loom_op_stat *all = snapshot(&n);
  if (!all) return -1;
  if (out) memcpy(out, all, sizeof *all * (size_t)(n < cap ? n : cap));
  free(all);
  return n;
}

int loom_profiler_print(FILE *f, int top) {
  if (!f) f = stdout;
  int n;
  loom_op_stat *all = snapshot(&n);
  if (!all) return LOOM_ERR_OOM;
  double total = 0;
  int64_t calls = 0;
  for (int i = 0; i < n; i++) {
    total += all[i].total_ms;
    calls += all[i].calls;
  }
  int shown = top > 0 && top < n ? top : n;
  fprintf(f, "Op profile: %d ops, %lld calls, %.3f ms recorded\n", n, (long long)calls, total);
  fprintf(f, "%4s  %-22s %-6s %10s %12s %12s %7s\n", "#", "op", "device", "calls", "total ms", "mean us", "%");
  for (int i = 0; i < shown; i++) {
    const loom_op_stat *s = &all[i];
    fprintf(f, "%4d  %-22s %-6s %10lld %12.3f %12.2f %6.1f%%\n", i + 1, s->op,
            s->device == LOOM_CUDA ? "cuda" : "cpu", (long long)s->calls, s->total_ms,
            1e3 * s->total_ms / (double)s->calls, total > 0 ? 100.0 * s->total_ms / total : 0.0);
  }
  if (shown < n) fprintf(f, "(%d more ops not shown)\n", n - shown);
  free(all);
  return LOOM_OK;
}
