/* state_dict: parameters and persistent buffers under dotted names, saved
 * and loaded through safetensors. Loading checks everything before it copies
 * anything, so a bad checkpoint leaves the model as it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/io.h"
#include "nn/module_impl.h"

typedef struct sd_ctx {
  loom_tensor_map *map;
  loom_status st;
} sd_ctx;

static void put(sd_ctx *c, const char *prefix, const char *name, loom_tensor *t) {
  if (c->st) return;
  size_t len = strlen(prefix) + strlen(name) + 2;
  char *full = malloc(len);
  if (!full) {
    c->st = core_set_error(LOOM_ERR_OOM, "state_dict: out of host memory");
    return;
  }
  snprintf(full, len, "%s%s%s", prefix, *prefix ? "." : "", name);
  c->st = loom_map_set(c->map, full, t);
  free(full);
}

/* Unlike the parameter lists, a module shared by two parents (and a tensor
 * shared by two modules) appears under every name, as in PyTorch. */
static void collect(loom_module *m, const char *prefix, sd_ctx *c, int depth) {
  if (depth > 64) {
    c->st = core_set_error(LOOM_ERR_INVALID, "state_dict: modules nested deeper than 64 (a cycle?)");
    return;
  }
  for (int i = 0; i < m->n_params; i++) put(c, prefix, m->params[i].name, m->params[i].t);
  for (int i = 0; i < m->n_buffers; i++)
    if (m->buffers[i].persistent) put(c, prefix, m->buffers[i].name, m->buffers[i].t);
  for (int i = 0; i < m->n_children && !c->st; i++) {
    size_t len = strlen(prefix) + strlen(m->children[i].name) + 2;
    char *p = malloc(len);
    if (!p) {
      c->st = core_set_error(LOOM_ERR_OOM, "state_dict: out of host memory");
      return;
    }
    snprintf(p, len, "%s%s%s", prefix, *prefix ? "." : "", m->children[i].name);
    collect(m->children[i].m, p, c, depth + 1);
    free(p);
  }
}

loom_tensor_map *loom_module_state_dict(const loom_module *m) {
  if (!m) {
    core_null_error("state_dict: module is NULL");
    return NULL;
  }
  sd_ctx c = {loom_map_new(), LOOM_OK};
  if (!c.map) return NULL;
  collect((loom_module *)m, "", &c, 0);
  if (c.st) {
    loom_map_free(c.map);
    return NULL;
  }
  return c.map;
}

/* Appends ", name" (or "name") to buf of size cap, marking truncation. */
static void append(char *buf, size_t cap, const char *text) {
  size_t len = strlen(buf);
  if (len + 8 >= cap) return;
  int w = snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", text);
  if (w < 0 || (size_t)w >= cap - len) strcpy(buf + cap - 5, "...");
}

int loom_module_load_state_dict(loom_module *m, const loom_tensor_map *sd, bool strict) {
  if (!m || !sd) return core_null_error("load_state_dict: module or state dict is NULL");
  loom_tensor_map *own = loom_module_state_dict(m);
  if (!own) return loom_last_status();
  char missing[1024] = "", unexpected[1024] = "", shapes[1536] = "";
  int n_missing = 0, n_unexpected = 0, n_shapes = 0;
  for (int i = 0; i < loom_map_size(own); i++) {
    const char *name = loom_map_name(own, i);
    loom_tensor *src = loom_map_get(sd, name);
    if (!src) {
      n_missing++;
      append(missing, sizeof missing, name);
      continue;
    }
    loom_tensor *dst = loom_map_get(own, name);
    if (!loom_shape_equal(src->shape, dst->shape)) {
      char line[256];
      snprintf(line, sizeof line, "%s: checkpoint %s, model %s", name, loom_shape_str(src->shape),
               loom_shape_str(dst->shape));
      n_shapes++;
      append(shapes, sizeof shapes, line);
    }
  }
  for (int i = 0; i < loom_map_size(sd); i++) {
    const char *name = loom_map_name(sd, i);
    if (!loom_map_get(own, name)) {
      n_unexpected++;
      append(unexpected, sizeof unexpected, name);
    }
  }
  loom_status st = LOOM_OK;
  if (n_shapes || (strict && (n_missing || n_unexpected))) {
    char msg[3600] = "";
    size_t len = 0;
    if (strict && n_missing)
      len += (size_t)snprintf(msg + len, sizeof msg - len, "; %d missing keys: %s", n_missing, missing);
    if (strict && n_unexpected && len < sizeof msg)
      len += (size_t)snprintf(msg + len, sizeof msg - len, "; %d unexpected keys: %s", n_unexpected, unexpected);
    if (n_shapes && len < sizeof msg)
      snprintf(msg + len, sizeof msg - len, "; %d keys with mismatched shapes: %s", n_shapes, shapes);
    st = core_set_error(LOOM_ERR_INVALID, "load_state_dict into %s: nothing loaded%s", m->kind->type, msg);
  }
  for (int i = 0; i < loom_map_size(own) && !st; i++) {
    const char *name = loom_map_name(own, i);
    loom_tensor *src = loom_map_get(sd, name);
    if (!src) continue;
    st = loom_copy_(loom_map_get(own, name), src);
    if (st) {
      char err[512];
      snprintf(err, sizeof err, "%s", loom_last_error());
      core_set_error(st, "load_state_dict: copying '%s': %s", name, err);
    }
  }
  loom_map_free(own);
  return st;
}

int loom_module_save(const loom_module *m, const char *path) {
  loom_tensor_map *sd = loom_module_state_dict(m);
  if (!sd) return loom_last_status();
  int st = loom_safetensors_save(path, sd);
  loom_map_free(sd);
  return st;
}

/* A training checkpoint's model part (its "model." tensors, the prefix
 * stripped), after the checkpoint's own checks; NULL + error otherwise. */
static loom_tensor_map *checkpoint_model_part(const char *path, const loom_tensor_map *all) {
  if (loom_checkpoint_check(path, NULL) < 0) return NULL;
  loom_tensor_map *part = loom_map_new();
  for (int i = 0; part && i < loom_map_size(all); i++) {
    const char *name = loom_map_name(all, i);
    if (strncmp(name, "model.", 6) == 0 && loom_map_set(part, name + 6, loom_map_get(all, name)) != LOOM_OK) {
      loom_map_free(part);
      return NULL;
    }
  }
  if (!part) core_set_error(LOOM_ERR_OOM, "module_load: out of host memory");
  return part;
}

int loom_module_load(loom_module *m, const char *path, bool strict) {
  if (!m || !path) return core_null_error("module_load: module or path is NULL");
  loom_tensor_map *sd = loom_safetensors_load(path, loom_cpu());
  if (!sd) return loom_last_status();
  const char *format = loom_map_get_meta(sd, "format");
  if (format && strcmp(format, "loom-checkpoint") == 0) { /* a training checkpoint: its model part */
    loom_tensor_map *part = checkpoint_model_part(path, sd);
    loom_map_free(sd);
    if (!part) return loom_last_status();
    sd = part;
  }
  int st = loom_module_load_state_dict(m, sd, strict);
  loom_map_free(sd);
  return st;
}
