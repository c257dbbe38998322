/* The per-layer forward profile (loom/profile.h). loom_forward_n brackets
 * each forward with nn_layer_profile_enter / _exit; while a profile runs on
 * the calling thread and the module belongs to the profiled tree, these time
 * it and read the memory pool of its input's device.
 *
 * Peaks of nested forwards: at a forward's start the pool's peak counter is
 * folded into the running peak of the enclosing forward on the same device,
 * then reset to the bytes allocated now; at its end its own peak is the
 * larger of its running peak and the pool's counter, and that is folded into
 * the enclosing forward. So every forward sees the highest allocation made
 * during it, however deep the calls it contains. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, strdup */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loom/profile.h"
#include "nn/module_impl.h"

typedef struct layer_entry {
  const loom_module *m;
  char *name, *type;
  int64_t calls, kept, peak;
  double total_ms, self_ms;
} layer_entry;

typedef struct frame {
  int entry;
  loom_device dev;
  double t0, child_ms;
  size_t start_alloc, peak;    /* bytes allocated at the start; highest seen so far */
} frame;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool running;           /* on any thread; under lock */
static _Thread_local bool mine; /* running, started by this thread */
static layer_entry *entries;   /* in walk order */
static int n_entries, cap_entries;
static int *by_module;         /* entry indices sorted by module address */
static frame *frames;          /* the owner thread's forwards in progress */
static int n_frames, cap_frames;


static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void clear_entries(void) {
  for (int i = 0; i < n_entries; i++) {
    free(entries[i].name);
    free(entries[i].type);
  }
  free(entries);
  free(by_module);
  entries = NULL;
  by_module = NULL;
  n_entries = cap_entries = 0;
}

typedef struct walk_state { bool oom; } walk_state;

static void add_entry(loom_module *m, const char *prefix, void *user) {
  walk_state *w = user;
  if (w->oom) return;
  if (n_entries == cap_entries) {
    int cap = cap_entries ? 2 * cap_entries : 32;
    layer_entry *e = realloc(entries, (size_t)cap * sizeof *e);
    if (!e) {
      w->oom = true;
      return;
    }
    entries = e;
    cap_entries = cap;
  }
  layer_entry *e = &entries[n_entries];
  *e = (layer_entry){.m = m, .name = strdup(prefix), .type = strdup(m->kind->type)};
  n_entries++;
  if (!e->name || !e->type) w->oom = true;
}

static int cmp_module(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)entries[*(const int *)a].m, y = (uintptr_t)entries[*(const int *)b].m;
  return x < y ? -1 : x > y;
}

static int find_entry(const loom_module *m) {
  int lo = 0, hi = n_entries - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    uintptr_t x = (uintptr_t)entries[by_module[mid]].m;
    if (x == (uintptr_t)m) return by_module[mid];
    if (x < (uintptr_t)m) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

int loom_layer_profile_start(loom_module *root) {
  if (!root) return core_set_error(LOOM_ERR_INVALID, "loom_layer_profile_start: root is NULL");
  pthread_mutex_lock(&lock);
  if (running) {
    pthread_mutex_unlock(&lock);
    return core_set_error(LOOM_ERR_INVALID, "loom_layer_profile_start: a layer profile is already running "
                                            "(call loom_layer_profile_stop first)");
  }
  clear_entries();
  walk_state w = {false};
  nn_seen seen = {0};
  nn_walk(root, "", add_entry, &w, &seen);
  nn_seen_free(&seen);
  if (!w.oom && !(by_module = malloc(sizeof(int) * (size_t)n_entries))) w.oom = true;
  if (w.oom) {
    clear_entries();
    pthread_mutex_unlock(&lock);
    return core_set_error(LOOM_ERR_OOM, "loom_layer_profile_start: out of host memory");
  }
  for (int i = 0; i < n_entries; i++) by_module[i] = i;
  qsort(by_module, (size_t)n_entries, sizeof(int), cmp_module);
  n_frames = 0;
  running = mine = true;
  pthread_mutex_unlock(&lock);
  return LOOM_OK;
}

int loom_layer_profile_stop(void) {
  pthread_mutex_lock(&lock);
  loom_status st = LOOM_OK;
  if (!running)
    st = core_set_error(LOOM_ERR_INVALID, "loom_layer_profile_stop: no layer profile is running "
                                          "(call loom_layer_profile_start first)");
  else if (!mine)
    st = core_set_error(LOOM_ERR_INVALID, "loom_layer_profile_stop: the layer profile was started on "
                                          "another thread; stop it there");
  if (st == LOOM_OK) {
    running = mine = false;
    free(frames);
    frames = NULL;
    n_frames = cap_frames = 0;
  }
  pthread_mutex_unlock(&lock);
  return st;
}

/* The innermost forward in progress on dev, or NULL. */
static frame *enclosing(loom_device dev) {
  for (int i = n_frames - 1; i >= 0; i--)
    if (loom_device_equal(frames[i].dev, dev)) return &frames[i];
  return NULL;
}

/* Returns a token for nn_layer_profile_exit: 0 when this forward is not profiled. */
int nn_layer_profile_enter(loom_module *m, loom_tensor *const *in, int n_in) {
  if (!mine) return 0;
  int e = find_entry(m);
  if (e < 0) return 0;
  if (n_frames == cap_frames) {
    int cap = cap_frames ? 2 * cap_frames : 16;
    frame *f = realloc(frames, (size_t)cap * sizeof *f);
    if (!f) return 0;
    frames = f;
    cap_frames = cap;
  }
  loom_device dev = n_in > 0 ? loom_device_of(in[0]) : loom_cpu();
  if (dev.type == LOOM_CUDA) loom_synchronize(dev);
  loom_memory_stats s;
  loom_memory_stats_get(dev, &s);
  frame *outer = enclosing(dev);
  if (outer && s.peak_allocated > outer->peak) outer->peak = s.peak_allocated;
  loom_memory_reset_peak(dev);
  frames[n_frames++] = (frame){e, dev, 0.0, 0.0, s.allocated, s.allocated};
  frames[n_frames - 1].t0 = now_ms();
  return n_frames;
}

void nn_layer_profile_exit(int token, bool ok) {
  /* a profile stopped or restarted inside this forward: nothing to close */
  if (!mine || token <= 0 || token != n_frames) return;
  frame f = frames[--n_frames];
  if (ok && f.dev.type == LOOM_CUDA) loom_synchronize(f.dev);
  double ms = now_ms() - f.t0;
  loom_memory_stats s;
  loom_memory_stats_get(f.dev, &s);
  size_t peak = s.peak_allocated > f.peak ? s.peak_allocated : f.peak;
  frame *outer = enclosing(f.dev);
  if (outer && peak > outer->peak) outer->peak = peak;
  if (!ok) return;
  if (n_frames > 0) frames[n_frames - 1].child_ms += ms;
  int64_t kept = (int64_t)s.allocated - (int64_t)f.start_alloc, high = (int64_t)(peak - f.start_alloc);
  pthread_mutex_lock(&lock);
  layer_entry *e = &entries[f.entry];
  if (e->calls == 0 || kept > e->kept) e->kept = kept;
  if (e->calls == 0 || high > e->peak) e->peak = high;
  e->calls++;
  e->total_ms += ms;
  e->self_ms += ms - f.child_ms;
  pthread_mutex_unlock(&lock);
}

int loom_layer_profile_stats(loom_layer_stat *out, int cap) {
  if (cap < 0 || (cap > 0 && !out)) {
    core_set_error(LOOM_ERR_INVALID, "loom_layer_profile_stats: out is NULL or cap (%d) is negative", cap);
    return -1;
  }
  pthread_mutex_lock(&lock);
  for (int i = 0; i < n_entries && i < cap; i++) {
    const layer_entry *e = &entries[i];
    out[i] = (loom_layer_stat){e->name, e->type, e->calls, e->total_ms, e->self_ms, e->kept, e->peak};
  }
  int n = n_entries;
  pthread_mutex_unlock(&lock);
  return n;
}

static void format_bytes(char *buf, size_t size, int64_t b) {
  double a = (double)(b < 0 ? -b : b);
  const char *sign = b < 0 ? "-" : "";
  if (a < 1024) snprintf(buf, size, "%s%.0f B", sign, a);
  else if (a < 1024.0 * 1024) snprintf(buf, size, "%s%.1f KiB", sign, a / 1024);
  else if (a < 1024.0 * 1024 * 1024) snprintf(buf, size, "%s%.1f MiB", sign, a / (1024.0 * 1024));
  else snprintf(buf, size, "%s%.2f GiB", sign, a / (1024.0 * 1024 * 1024));
}

int loom_layer_profile_print(FILE *f) {
  if (!f) f = stdout;
  pthread_mutex_lock(&lock);
  int width = 6; /* "(root)" */
  for (int i = 1; i < n_entries; i++) {
    int len = (int)strlen(entries[i].name);
    if (len > width) width = len;
  }
  fprintf(f, "Layer profile: %d modules%s\n", n_entries, running ? " (running)" : "");
  fprintf(f, "%-*s  %-20s %8s %12s %12s %12s %12s\n", width, "module", "type", "calls", "total ms", "self ms",
          "kept", "peak");
  for (int i = 0; i < n_entries; i++) {
    const layer_entry *e = &entries[i];
    char kept[32], peak[32];
    format_bytes(kept, sizeof kept, e->kept);
    format_bytes(peak, sizeof peak, e->peak);
    fprintf(f, "%-*s  %-20s %8lld %12.3f %12.3f %12s %12s\n", width, i == 0 ? "(root)" : e->name, e->type,
            (long long)e->calls, e->total_ms, e->self_ms, kept, peak);
  }
  pthread_mutex_unlock(&lock);
  return LOOM_OK;
}
