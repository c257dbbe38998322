/* Shared by the model tools (loom-summary, loom-bench): the --input shape and
 * a model's default per-sample input. Header-only: each tool is one program. */
#ifndef LOOM_TOOLS_TOOL_ARGS_H
#define LOOM_TOOLS_TOOL_ARGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <loom/loom.h>

/* "1,28,28" -> dims after the batch; false on bad text. */
static inline bool parse_shape(const char *text, loom_shape *s, int64_t batch) {
  s->ndim = 1;
  s->d[0] = batch;
  const char *p = text;
  while (*p) {
    if (s->ndim == LOOM_MAX_DIMS) return false;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    if (end == p || errno || v <= 0) return false;
    s->d[s->ndim++] = v;
    p = end;
    if (*p == ',') {
      p++;
      if (!*p) return false;
    } else if (*p) {
      return false;
    }
  }
  return s->ndim > 1;
}

/* The model's default per-sample input as "3,224,224". */
static inline void default_input(const loom_model_info *info, char *buf, size_t size) {
  size_t len = 0;
  for (int i = 0; i < 3 && info->input[i] && len < size; i++)
    len += (size_t)snprintf(buf + len, size - len, "%s%lld", i ? "," : "", (long long)info->input[i]);
}

#endif
