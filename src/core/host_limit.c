#include "host_limit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One number from a cgroup file; false for "max", a missing file or junk. */
static bool read_number(const char *dir, const char *sub, const char *file, uint64_t *out) {
  char path[2048];
  snprintf(path, sizeof path, "%s%s/%s", dir, sub, file);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  char buf[64] = "";
  bool ok = fgets(buf, sizeof buf, f) != NULL;
  fclose(f);
  if (!ok) return false;
  char *end;
  unsigned long long v = strtoull(buf, &end, 10);
  if (end == buf || (*end && *end != '\n')) return false;
  *out = v;
  return true;
}

/* v1 reports "no limit" as a huge page-rounded number near 2^63. */
static bool is_limit(uint64_t v) { return v > 0 && v < (UINT64_C(1) << 62); }

/* The smallest limit on path and its ancestors (a limit set on a parent holds
 * for its children too), with the usage of the cgroup that sets it. */
static bool try_dir(const char *base, const char *path, const char *limit_file, const char *usage_file,
                    uint64_t *limit, uint64_t *usage) {
  char p[1024];
  snprintf(p, sizeof p, "%s", path);
  bool found = false;
  for (;;) {
    uint64_t l, u;
    if (read_number(base, p, limit_file, &l) && is_limit(l) && (!found || l < *limit)) {
      *limit = l;
      *usage = read_number(base, p, usage_file, &u) ? u : 0;
      found = true;
    }
    char *slash = strrchr(p, '/');
    if (!slash || !p[0]) break;
    *slash = 0; /* the parent; "" is the mount's root */
  }
  return found;
}

bool core_cgroup_memory_limit(const char *sysfs, const char *proc_cgroup, uint64_t *limit, uint64_t *usage) {
  FILE *f = fopen(proc_cgroup, "r");
  if (!f) return false;
  char line[1024], v2[1024] = "", v1[1024] = ""; /* the paths; empty when absent */
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    /* hierarchy-ID:controllers:path */
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c1 = *c2 = 0;
    const char *controllers = c1 + 1, *path = c2 + 1;
    if (!strcmp(line, "0") && !controllers[0]) snprintf(v2, sizeof v2, "%s", path);
    for (const char *p = controllers; *p;) {
      size_t n = strcspn(p, ",");
      if (n == 6 && !strncmp(p, "memory", 6)) snprintf(v1, sizeof v1, "%s", path);
      p += n + (p[n] == ',');
    }
  }
  fclose(f);
  char base[1024];
  snprintf(base, sizeof base, "%s/memory", sysfs);
  if (v1[0] && try_dir(base, v1, "memory.limit_in_bytes", "memory.usage_in_bytes", limit, usage)) return true;
  return v2[0] && try_dir(sysfs, v2, "memory.max", "memory.current", limit, usage);
}
