/* Training checkpoints: model, optimiser, schedule, loss scaler, RNG and
 * loader position in one safetensors file with a CRC-32 over its contents.
 * Loading checks every part before it changes anything. */
#define _POSIX_C_SOURCE 200809L
#include "loom/dist.h"
#include "loom/io.h"
#include "loom/data.h"
#include "loom/nn.h"
#include "loom/optim.h"
#include "loom/runtime.h"
#include "core/tensor_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define FORMAT_NAME "loom-checkpoint"

/* ---------------------------------------------------------------- checksum */

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* CRC-32 of every tensor (names sorted: name, then from format version 2 its
 * dtype and shape, then its bytes) and every metadata pair but "checksum"
 * (keys sorted). Version 1 files left the dtype and shape out, so a header
 * edit of a dtype of the same size loaded silently. Returns 0 or an error. */
static int map_checksum(const loom_tensor_map *m, int version, uLong *out) {
  int n = loom_map_size(m), nm = loom_map_meta_size(m);
  const char **names = malloc(sizeof(char *) * (size_t)(n + nm + 1));
  if (!names) return core_set_error(LOOM_ERR_OOM, "checkpoint checksum: out of host memory");
  for (int i = 0; i < n; i++) names[i] = loom_map_name(m, i);
  for (int i = 0; i < nm; i++) names[n + i] = loom_map_meta_key(m, i);
  qsort(names, (size_t)n, sizeof(char *), compare_strings);
  qsort(names + n, (size_t)nm, sizeof(char *), compare_strings);
  uLong crc = crc32(0L, Z_NULL, 0);
  int st = LOOM_OK;
  void *scratch = NULL;
  for (int i = 0; i < n && !st; i++) {
    const loom_tensor *t = loom_map_get(m, names[i]);
    size_t bytes = (size_t)loom_numel(t) * loom_dtype_size(loom_dtype_of(t));
    const unsigned char *p = loom_data_ptr(t);
    if (loom_device_of(t).type != LOOM_CPU || !loom_is_contiguous(t)) {
      free(scratch);
      scratch = malloc(bytes ? bytes : 1);
      if (!scratch) st = core_set_error(LOOM_ERR_OOM, "checkpoint checksum: out of host memory");
      else st = loom_to_host(t, scratch, bytes);
      p = scratch;
    }
    crc = crc32(crc, (const Bytef *)names[i], (uInt)strlen(names[i]) + 1);
    if (version >= 2) {
      char table[256];
      int len = snprintf(table, sizeof table, "%s %s", loom_dtype_name(loom_dtype_of(t)),
                         loom_shape_str(loom_shape_of(t)));
      crc = crc32(crc, (const Bytef *)table, (uInt)len + 1);
    }
    for (size_t off = 0; !st && off < bytes; off += 1u << 30) {
      size_t len = bytes - off < (1u << 30) ? bytes - off : (1u << 30);
      crc = crc32(crc, p + off, (uInt)len);
    }
  }
  for (int i = n; i < n + nm; i++) {
    if (strcmp(names[i], "checksum") == 0) continue;
    const char *v = loom_map_get_meta(m, names[i]);
    crc = crc32(crc, (const Bytef *)names[i], (uInt)strlen(names[i]) + 1);
    crc = crc32(crc, (const Bytef *)v, (uInt)strlen(v) + 1);
  }
  free(scratch);
  free(names);
  *out = crc;
  return st;
}

/* ---------------------------------------------------------------- saving */

/* Adds every tensor of part under prefix + its name. */
static int add_prefixed(loom_tensor_map *dst, const loom_tensor_map *part, const char *prefix) {
  for (int i = 0; i < loom_map_size(part); i++) {
    const char *name = loom_map_name(part, i);
    char key[512];
    if (snprintf(key, sizeof key, "%s%s", prefix, name) >= (int)sizeof key)
      return core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_save: name '%s' too long", name);
    int st = loom_map_set(dst, key, loom_map_get(part, name));
    if (st) return st;
  }
  return LOOM_OK;
}

static int add_pair(loom_tensor_map *m, const char *name, int64_t a, int64_t b) {
  int64_t v[2] = {a, b};
  loom_tensor *t = loom_from_host(v, LOOM_SHAPE(2), LOOM_I64, loom_cpu());
  return t ? loom_map_set(m, name, t) : (int)loom_last_status();
}

static int add_rng(loom_tensor_map *m) {
  uint64_t seed, offset;
  loom_rng_get_state(loom_cpu(), &seed, &offset);
  int st = add_pair(m, "rng.cpu", (int64_t)seed, (int64_t)offset);
  for (int i = 0; !st && i < loom_cuda_device_count(); i++) {
    char name[32];
    snprintf(name, sizeof name, "rng.cuda.%d", i);
    loom_rng_get_state(loom_cuda(i), &seed, &offset);
    st = add_pair(m, name, (int64_t)seed, (int64_t)offset);
  }
  return st;
}

static int add_meta_i64(loom_tensor_map *m, const char *key, int64_t v) {
  char text[32];
  snprintf(text, sizeof text, "%" PRId64, v);
  return loom_map_set_meta(m, key, text);
}

static int build_checkpoint(loom_tensor_map *m, const loom_module *model, const loom_optimizer *opt,
                            const loom_scheduler *sched, const loom_grad_scaler *scaler,
                            const loom_loader *loader, const loom_checkpoint_meta *meta) {
  loom_tensor_map *sd = loom_module_state_dict(model);
  if (!sd) return loom_last_status();
  int st = add_prefixed(m, sd, "model.");
  loom_map_free(sd);
  if (!st && opt) st = loom_optimizer_state_dict(opt, m, "optim.");
  if (!st && sched) st = loom_scheduler_state_dict(sched, m, "sched.");
  if (!st && scaler) st = loom_grad_scaler_state_dict(scaler, m, "scaler.");
  if (!st && loader) {
    loom_loader_pos pos = loom_loader_position(loader);
    if (pos.batch >= loom_loader_num_batches(loader)) pos.epoch++, pos.batch = 0;   /* epoch finished */
    st = add_pair(m, "data.position", pos.epoch, pos.batch);
  }
  if (!st) st = add_rng(m);
  if (!st) st = loom_map_set_meta(m, "format", FORMAT_NAME);
  if (!st) st = add_meta_i64(m, "format_version", LOOM_CHECKPOINT_VERSION);
  if (!st) st = add_meta_i64(m, "step", meta ? meta->step : 0);
  if (!st) st = add_meta_i64(m, "epoch", meta ? meta->epoch : 0);
  /* a data-parallel wrapper's checkpoint is its model's (same names, same tensors) */
  const loom_module *inner = loom_ddp_module((loom_module *)model);
  if (!st) st = loom_map_set_meta(m, "model_type", loom_module_type(inner ? inner : model));
  if (!st && opt) st = loom_map_set_meta(m, "optimizer", loom_optimizer_name(opt));
  if (!st) st = loom_map_set_meta(m, "config", meta ? meta->config : "");
  const char *run_keys[4] = {"run_batch_size", "run_dataset_len", "run_world_size", "run_epochs"};
  const int64_t run_vals[4] = {meta ? meta->batch_size : 0, meta ? meta->dataset_len : 0,
                               meta ? meta->world_size : 0, meta ? meta->epochs : 0};
  for (int k = 0; k < 4 && !st; k++)
    if (run_vals[k] > 0) st = add_meta_i64(m, run_keys[k], run_vals[k]);
  uLong crc = 0;
  if (!st) st = map_checksum(m, LOOM_CHECKPOINT_VERSION, &crc);
  if (!st) {
    char text[16];
    snprintf(text, sizeof text, "%08lx", (unsigned long)crc);
    st = loom_map_set_meta(m, "checksum", text);
  }
  return st;
}

int loom_checkpoint_save(const char *path, const loom_module *model, const loom_optimizer *optimizer,
                         const loom_scheduler *scheduler, const loom_grad_scaler *scaler,
                         const loom_loader *loader, const loom_checkpoint_meta *meta) {
  if (!path || !model)
    return core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_save: NULL %s", !path ? "path" : "model");
  loom_tensor_map *m = loom_map_new();
  if (!m) return core_set_error(LOOM_ERR_OOM, "loom_checkpoint_save: out of host memory");
  loom_scope_begin();
  int st = build_checkpoint(m, model, optimizer, scheduler, scaler, loader, meta);
  if (st) {
    char why[1024];
    snprintf(why, sizeof why, "%s", loom_last_error());
    core_set_error(st, "loom_checkpoint_save: '%s': %s (nothing written)", path, why);
  } else {
    st = loom_safetensors_save(path, m);
  }
  loom_scope_end();
  loom_map_free(m);
  return st;
}

/* ---------------------------------------------------------------- loading */

static int64_t meta_i64(const loom_tensor_map *m, const char *key, bool *ok) {
  const char *v = loom_map_get_meta(m, key);
  char *end = NULL;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || end == v || *end || errno) *ok = false;
  return (int64_t)x;
}

/* Format, version and checksum; fills meta_out. LOOM_ERR_IO when wrong. */
static int verify(const loom_tensor_map *m, const char *path, loom_checkpoint_meta *meta_out) {
  const char *format = loom_map_get_meta(m, "format");
  if (!format || strcmp(format, FORMAT_NAME) != 0)
    return core_set_error(LOOM_ERR_IO, "checkpoint '%s': not a Loom checkpoint (metadata format is %s%s%s)",
                          path, format ? "'" : "missing", format ? format : "", format ? "'" : "");
  bool ok = true;
  loom_checkpoint_meta meta = {0};
  meta.version = (int)meta_i64(m, "format_version", &ok);
  meta.step = meta_i64(m, "step", &ok);
  meta.epoch = meta_i64(m, "epoch", &ok);
  const char *sum = loom_map_get_meta(m, "checksum");
  if (!ok || !sum)
    return core_set_error(LOOM_ERR_IO, "checkpoint '%s': metadata format_version, step, epoch or checksum "
                          "missing or not a number (corrupt)", path);
  if (meta.version < 1 || meta.version > LOOM_CHECKPOINT_VERSION)
    return core_set_error(LOOM_ERR_IO, "checkpoint '%s': format_version %d, this Loom reads 1..%d", path,
                          meta.version, LOOM_CHECKPOINT_VERSION);
  uLong crc = 0;
  int st = map_checksum(m, meta.version, &crc);
  if (st) return st;
  char text[16];
  snprintf(text, sizeof text, "%08lx", (unsigned long)crc);
  if (strcmp(text, sum) != 0)
    return core_set_error(LOOM_ERR_IO, "checkpoint '%s': checksum mismatch (stored %s, contents give %s): "
                          "the file is corrupt", path, sum, text);
  const char *run_keys[4] = {"run_batch_size", "run_dataset_len", "run_world_size", "run_epochs"};
  int64_t *run_vals[4] = {&meta.batch_size, &meta.dataset_len, &meta.world_size, &meta.epochs};
  for (int k = 0; k < 4; k++) {
    if (!loom_map_get_meta(m, run_keys[k])) continue; /* older files did not record it */
    bool good = true;
    *run_vals[k] = meta_i64(m, run_keys[k], &good);
    if (!good || *run_vals[k] < 1)
      return core_set_error(LOOM_ERR_IO, "checkpoint '%s': metadata %s is not a positive number (corrupt)", path,
                            run_keys[k]);
  }
  const char *s;
  if ((s = loom_map_get_meta(m, "config"))) snprintf(meta.config, sizeof meta.config, "%s", s);
  if ((s = loom_map_get_meta(m, "model_type"))) snprintf(meta.model_type, sizeof meta.model_type, "%s", s);
  if ((s = loom_map_get_meta(m, "optimizer"))) snprintf(meta.optimizer, sizeof meta.optimizer, "%s", s);
  if (meta_out) *meta_out = meta;
  return LOOM_OK;
}

static void append(char *buf, size_t size, const char *text) {
  size_t len = strlen(buf);
  if (len + 8 >= size) return;
  if (strstr(buf, " ...")) return;
  if (len + strlen(text) + 8 >= size) snprintf(buf + len, size - len, " ...");
  else snprintf(buf + len, size - len, "%s%s", len ? ", " : "", text);
}

/* The tensors under "model." with the prefix stripped (references), after
 * checking they match model's state_dict key for key and shape for shape. */
static int model_part(const loom_tensor_map *m, const loom_module *model, const char *path,
                      const char *saved_type, loom_tensor_map *part) {
  loom_tensor_map *own = loom_module_state_dict(model);
  if (!own) return loom_last_status();
  char missing[1024] = "", unexpected[1024] = "", shapes[1024] = "", dtypes[1024] = "";
  int st = LOOM_OK;
  for (int i = 0; i < loom_map_size(m) && !st; i++) {
    const char *name = loom_map_name(m, i);
    if (strncmp(name, "model.", 6) != 0) continue;
    loom_tensor *src = loom_map_get(m, name), *dst = loom_map_get(own, name + 6);
    if (!dst) append(unexpected, sizeof unexpected, name + 6);
    else if (!loom_shape_equal(loom_shape_of(src), loom_shape_of(dst))) {
      char line[256];
      snprintf(line, sizeof line, "%s (checkpoint %s, model %s)", name + 6, loom_shape_str(loom_shape_of(src)),
               loom_shape_str(loom_shape_of(dst)));
      append(shapes, sizeof shapes, line);
    } else if (loom_dtype_of(src) != loom_dtype_of(dst)) { /* a Loom checkpoint round-trips exactly: no cast */
      char line[256];
      snprintf(line, sizeof line, "%s (checkpoint %s, model %s)", name + 6, loom_dtype_name(loom_dtype_of(src)),
               loom_dtype_name(loom_dtype_of(dst)));
      append(dtypes, sizeof dtypes, line);
    }
    if (!st) st = loom_map_set(part, name + 6, src);
  }
  for (int i = 0; i < loom_map_size(own) && !st; i++)
    if (!loom_map_get(part, loom_map_name(own, i))) append(missing, sizeof missing, loom_map_name(own, i));
  if (!st && (missing[0] || unexpected[0] || shapes[0])) {
    char why[3200] = "";
    const char *labels[3] = {"missing keys: ", "unexpected keys: ", "mismatched shapes: "}, *lists[3] = {missing, unexpected, shapes};
    for (int k = 0; k < 3; k++)
      if (lists[k][0])
        snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s%s", why[0] ? "; " : "", labels[k], lists[k]);
    st = core_set_error(LOOM_ERR_INVALID, "checkpoint '%s' does not fit the model (saved %s, loading into %s); "
                        "nothing loaded: %s", path, saved_type, loom_module_type(model), why);
  }
  if (!st && dtypes[0])
    st = core_set_error(LOOM_ERR_INVALID,
                        "checkpoint '%s': tensors of another dtype than the model's (a checkpoint loads without "
                        "casts: convert the model with loom_module_to_dtype first); nothing loaded: %s", path, dtypes);
  loom_map_free(own);
  return st;
}

static bool has_prefix(const loom_tensor_map *m, const char *prefix) {
  for (int i = 0; i < loom_map_size(m); i++)
    if (strncmp(loom_map_name(m, i), prefix, strlen(prefix)) == 0) return true;
  return false;
}

/* An i64 [2] tensor's values; false when absent or of another shape. */
static bool get_pair(const loom_tensor_map *m, const char *name, int64_t v[2]) {
  loom_tensor *t = loom_map_get(m, name);
  if (!t || loom_dtype_of(t) != LOOM_I64 || loom_numel(t) != 2 || loom_ndim(t) != 1) return false;
  memcpy(v, loom_data_ptr(t), 2 * sizeof(int64_t));
  return true;
}

/* Checks the parts that load cannot check on their own before anything changes. */
static int check_parts(const loom_tensor_map *m, const char *path, const loom_checkpoint_meta *meta,
                       loom_optimizer *opt, loom_scheduler *sched, loom_grad_scaler *scaler,
                       loom_loader *loader, int64_t pos[2]) {
  if (opt && (!has_prefix(m, "optim.") || strcmp(meta->optimizer, loom_optimizer_name(opt)) != 0))
    return core_set_error(LOOM_ERR_INVALID, "checkpoint '%s': holds %s optimiser state, loading into %s",
                          path, meta->optimizer[0] ? meta->optimizer : "no", loom_optimizer_name(opt));
  if (sched && !has_prefix(m, "sched."))
    return core_set_error(LOOM_ERR_INVALID, "checkpoint '%s': holds no schedule state (sched.*)", path);
  if (scaler && !has_prefix(m, "scaler."))
    return core_set_error(LOOM_ERR_INVALID, "checkpoint '%s': holds no loss scaler state (scaler.*)", path);
  int64_t rng[2];
  if (!get_pair(m, "rng.cpu", rng))
    return core_set_error(LOOM_ERR_IO, "checkpoint '%s': rng.cpu missing or not i64 [2]", path);
  if (loader) {
    if (!get_pair(m, "data.position", pos))
      return core_set_error(LOOM_ERR_INVALID, "checkpoint '%s': holds no loader position (data.position)", path);
    if (pos[0] < 0 || pos[1] < 0 || pos[1] >= loom_loader_num_batches(loader))
      return core_set_error(LOOM_ERR_INVALID, "checkpoint '%s': loader position epoch %" PRId64 " batch %" PRId64
                            " does not fit a loader of %" PRId64 " batches per epoch", path, pos[0], pos[1],
                            loom_loader_num_batches(loader));
  }
  return LOOM_OK;
}

/* Applies a checked checkpoint. Only the optimiser's load can still refuse
 * (it checks its own state); it runs first, so a refusal changes nothing. */
static int apply(const loom_tensor_map *m, const loom_tensor_map *model_sd, loom_module *model,
                 loom_optimizer *opt, loom_scheduler *sched, loom_grad_scaler *scaler, loom_loader *loader,
                 const int64_t pos[2]) {
  int st = opt ? loom_optimizer_load_state_dict(opt, m, "optim.") : LOOM_OK;
  if (!st && sched) st = loom_scheduler_load_state_dict(sched, m, "sched.");
  if (!st && scaler) st = loom_grad_scaler_load_state_dict(scaler, m, "scaler.");
  if (!st) st = loom_module_load_state_dict(model, model_sd, true);
  if (!st && loader) st = loom_loader_seek(loader, (loom_loader_pos){pos[0], pos[1]});
  int64_t rng[2];
  if (!st && get_pair(m, "rng.cpu", rng)) loom_rng_set_state(loom_cpu(), (uint64_t)rng[0], (uint64_t)rng[1]);
  for (int i = 0; !st && i < loom_cuda_device_count(); i++) {
    char name[32];
    snprintf(name, sizeof name, "rng.cuda.%d", i);
    if (get_pair(m, name, rng)) loom_rng_set_state(loom_cuda(i), (uint64_t)rng[0], (uint64_t)rng[1]);
  }
  return st;
}

int loom_checkpoint_check(const char *path, loom_checkpoint_meta *meta_out) {
  if (!path) return -core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_check: NULL path");
  loom_tensor_map *m = loom_safetensors_load(path, loom_cpu());
  if (!m) return -(int)loom_last_status();
  int st = verify(m, path, meta_out);
  int n = loom_map_size(m);
  loom_map_free(m);
  return st ? -st : n;
}

int loom_checkpoint_load(const char *path, loom_module *model, loom_optimizer *optimizer,
                         loom_scheduler *scheduler, loom_grad_scaler *scaler, loom_loader *loader,
                         loom_checkpoint_meta *meta_out) {
  if (!path || !model)
    return core_set_error(LOOM_ERR_INVALID, "loom_checkpoint_load: NULL %s", !path ? "path" : "model");
  loom_tensor_map *m = loom_safetensors_load(path, loom_cpu());
  if (!m) return loom_last_status();
  loom_tensor_map *model_sd = loom_map_new();
  loom_checkpoint_meta meta;
  int64_t pos[2] = {0, 0};
  int st = model_sd ? verify(m, path, &meta) : (int)core_set_error(LOOM_ERR_OOM, "loom_checkpoint_load: out of memory");
  if (!st) st = model_part(m, model, path, meta.model_type, model_sd);
  if (!st) st = check_parts(m, path, &meta, optimizer, scheduler, scaler, loader, pos);
  if (!st) {
    st = apply(m, model_sd, model, optimizer, scheduler, scaler, loader, pos);
    if (st) {
      char why[1024];
      snprintf(why, sizeof why, "%s", loom_last_error());
      core_set_error(st, "loom_checkpoint_load: '%s': %s", path, why);
    }
  }
  if (!st && meta_out) *meta_out = meta;
  loom_map_free(model_sd);
  loom_map_free(m);
  return st;
}
