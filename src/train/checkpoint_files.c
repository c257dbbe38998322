/* Checkpoint files in a folder: DIR/PREFIX-<step>.safetensors naming, finding
 * the newest (valid) one, deleting all but the newest N, and preparing the
 * folder (created with its parents, checked writable, stale temporaries of
 * killed saves removed). */
#define _POSIX_C_SOURCE 200809L
#include "loom/io.h"
#include "loom/runtime.h"
#include "core/tensor_impl.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUFFIX ".safetensors"

int loom_checkpoint_path(const char *dir, const char *prefix, int64_t step, char *buf, size_t size) {
  if (!dir || !prefix || !buf || step < 0)
    return core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_path: NULL dir, prefix or buffer, or step < 0");
  int n = snprintf(buf, size, "%s/%s-%08" PRId64 SUFFIX, dir, prefix, step);
  if (n < 0 || (size_t)n >= size)
    return core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_path: '%s/%s-...' does not fit %zu bytes", dir,
                          prefix, size);
  return LOOM_OK;
}

/* The step of a file named PREFIX-<digits>.safetensors, or -1. */
static int64_t step_of(const char *name, const char *prefix) {
  size_t lp = strlen(prefix), ln = strlen(name), ls = strlen(SUFFIX);
  if (ln <= lp + 1 + ls || strncmp(name, prefix, lp) != 0 || name[lp] != '-' ||
      strcmp(name + ln - ls, SUFFIX) != 0)
    return -1;
  int64_t step = 0;
  for (const char *p = name + lp + 1; p < name + ln - ls; p++) {
    if (*p < '0' || *p > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (*p - '0');
  }
  return step;
}

typedef struct found { int64_t step; char *name; } found;

static int newest_first(const void *a, const void *b) {
  const found *x = a, *y = b;
  return x->step < y->step ? 1 : x->step > y->step ? -1 : strcmp(x->name, y->name);
}

/* The checkpoints in dir, newest first. *n = -1 when dir is missing. */
static int list(const char *dir, const char *prefix, found **out, int *n) {
  *out = NULL;
  *n = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return *n = -1, LOOM_OK;
    return core_set_error(LOOM_ERR_IO, "checkpoints: cannot open folder '%s': %s", dir, strerror(errno));
  }
  int cap = 0, st = LOOM_OK;
  found *items = NULL;
  for (struct dirent *e; (e = readdir(d)) && !st;) {
    int64_t step = step_of(e->d_name, prefix);
    if (step < 0) continue;
    if (*n == cap) {
      found *bigger = realloc(items, sizeof(found) * (size_t)(cap = cap ? cap * 2 : 16));
      if (!bigger) {
        st = core_set_error(LOOM_ERR_OOM, "checkpoints: out of host memory listing '%s'", dir);
        break;
      }
      items = bigger;
    }
    items[*n].step = step;
    items[*n].name = strdup(e->d_name);
    if (!items[*n].name) st = core_set_error(LOOM_ERR_OOM, "checkpoints: out of host memory listing '%s'", dir);
    else (*n)++;
  }
  closedir(d);
  if (*n > 0) qsort(items, (size_t)*n, sizeof(found), newest_first);
  *out = items;
  return st;
}

static void free_list(found *items, int n) {
  for (int i = 0; i < n; i++) free(items[i].name);
  free(items);
}

int loom_checkpoint_rotate(const char *dir, const char *prefix, int keep) {
  if (!dir || !prefix || keep < 0)
    return -core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_rotate: NULL dir or prefix, or keep < 0");
  found *items;
  int n, removed = 0;
  int st = list(dir, prefix, &items, &n);
  for (int i = keep; !st && i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, items[i].name);
    if (remove(path) != 0)
      st = core_set_error(LOOM_ERR_IO, "loom_checkpoint_rotate: cannot delete '%s': %s", path, strerror(errno));
    else removed++;
  }
  free_list(items, n > 0 ? n : 0);
  return st ? -st : removed;
}

int loom_checkpoint_latest(const char *dir, const char *prefix, char *buf, size_t size) {
  if (!dir || !prefix || !buf || !size)
    return -core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_latest: NULL dir, prefix or buffer");
  found *items;
  int n;
  buf[0] = '\0';
  int st = list(dir, prefix, &items, &n);
  if (!st && n > 0 && snprintf(buf, size, "%s/%s", dir, items[0].name) >= (int)size)
    st = core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_latest: path in '%s' does not fit %zu bytes", dir, size);
  free_list(items, n > 0 ? n : 0);
  if (st) return -st;
  return n > 0 ? 1 : 0;
}

int loom_checkpoint_latest_valid(const char *dir, const char *prefix, char *buf, size_t size) {
  if (!dir || !prefix || !buf || !size)
    return -core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_latest_valid: NULL dir, prefix or buffer");
  found *items;
  int n, hit = 0;
  buf[0] = '\0';
  int st = list(dir, prefix, &items, &n);
  for (int i = 0; !st && !hit && i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, items[i].name);
    if (loom_checkpoint_check(path, NULL) > 0) {
      hit = 1;
      if (snprintf(buf, size, "%s", path) >= (int)size)
        st = core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_latest_valid: '%s' does not fit %zu bytes", path, size);
    }
  }
  loom_clear_error(); /* the refusals of the invalid ones are not this call's error */
  free_list(items, n > 0 ? n : 0);
  return st ? -st : hit;
}

/* mkdir -p: dir and its missing parents. */
static int make_dirs(const char *dir) {
  char path[4096];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
    return core_set_error(LOOM_ERR_INVALID, "checkpoint folder '%s': path too long", dir);
  for (char *p = path + 1; ; p++) {
    bool end = *p == '\0';
    if (*p == '/' || end) {
      *p = '\0';
      if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return core_set_error(LOOM_ERR_IO, "cannot create the checkpoint folder '%s' ('%s': %s)", dir, path,
                              strerror(errno));
      if (end) break;
      *p = '/';
    }
  }
  return LOOM_OK;
}

/* The pid of a temporary file PREFIX-<step>.safetensors.tmp.<pid>, or -1. */
static long tmp_pid(const char *name, const char *prefix) {
  const char *tag = strstr(name, SUFFIX ".tmp.");
  size_t lp = strlen(prefix);
  if (!tag || strncmp(name, prefix, lp) != 0 || name[lp] != '-') return -1;
  const char *digits = tag + strlen(SUFFIX ".tmp.");
  char *end;
  long pid = strtol(digits, &end, 10);
  return *digits && !*end && pid > 0 ? pid : -1;
}

int loom_checkpoint_prepare_dir(const char *dir, const char *prefix) {
  if (!dir || !prefix) return -core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_prepare_dir: NULL dir or prefix");
  int st = make_dirs(dir);
  if (st) return -st;
  char probe[4096];
  snprintf(probe, sizeof probe, "%s/.loom-write-test.%ld", dir, (long)getpid());
  FILE *f = fopen(probe, "wb");
  if (!f || fclose(f) != 0 || remove(probe) != 0)
    return -core_set_error(LOOM_ERR_IO, "checkpoint folder '%s' is not writable (%s); checked before training, so "
                           "nothing ran: pick another folder", dir, strerror(errno));
  DIR *d = opendir(dir);
  if (!d) return -core_set_error(LOOM_ERR_IO, "checkpoint folder '%s': %s", dir, strerror(errno));
  int removed = 0;
  for (struct dirent *e; (e = readdir(d));) {
    long pid = tmp_pid(e->d_name, prefix);
    if (pid < 0 || (kill((pid_t)pid, 0) != 0 ? errno != ESRCH : true)) continue; /* its save may still run */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (remove(path) == 0) removed++;
  }
  closedir(d);
  return removed;
}
