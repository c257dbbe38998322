/* loom_tensor_map: named tensors in insertion order (with a hash index for
 * lookups) plus string metadata, as held in a safetensors file. */
#include "loom/io.h"
#include "core/tensor_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct map_entry {
  char *name;                /* owned */
  loom_tensor *tensor;       /* one owned reference */
} map_entry;

typedef struct meta_entry { char *key, *value; } meta_entry;   /* both owned */

struct loom_tensor_map {
  int count, cap;
  map_entry *entries;        /* insertion order */
  int *index;                /* open addressing: position + 1, 0 = empty */
  int index_cap;             /* power of two, > 2 * count */
  int meta_count, meta_cap;
  meta_entry *meta;
};

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;   /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The index slot holding name, or the empty slot where it would go. */
static int find_slot(const loom_tensor_map *m, const char *name) {
  int mask = m->index_cap - 1;
  int slot = (int)(hash_name(name) & (uint64_t)mask);
  while (m->index[slot] != 0 && strcmp(m->entries[m->index[slot] - 1].name, name) != 0)
    slot = (slot + 1) & mask;
  return slot;
}

static int grow_index(loom_tensor_map *m, int new_cap) {
  int *index = calloc((size_t)new_cap, sizeof(int));
  if (!index) return core_set_error(LOOM_ERR_OOM, "loom_map_set: out of host memory");
  free(m->index);
  m->index = index;
  m->index_cap = new_cap;
  for (int i = 0; i < m->count; i++) m->index[find_slot(m, m->entries[i].name)] = i + 1;
  return LOOM_OK;
}

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

/* Reallocates a full array of *cap elements to twice the room (updating *cap);
 * NULL, with *cap and the array unchanged, on failure. */
static void *grow_array(void *array, int *cap, size_t elem) {
  if (*cap > (1 << 28)) return NULL;
  int new_cap = *cap ? *cap * 2 : 16;
  void *grown = realloc(array, (size_t)new_cap * elem);
  if (grown) *cap = new_cap;
  return grown;
}

loom_tensor_map *loom_map_new(void) {
  loom_tensor_map *m = calloc(1, sizeof(*m));
  if (!m) core_set_error(LOOM_ERR_OOM, "loom_map_new: out of host memory");
  return m;
}

void loom_map_free(loom_tensor_map *m) {
  if (!m) return;
  for (int i = 0; i < m->count; i++) {
    free(m->entries[i].name);
    loom_release(m->entries[i].tensor);
  }
  for (int i = 0; i < m->meta_count; i++) {
    free(m->meta[i].key);
    free(m->meta[i].value);
  }
  free(m->entries);
  free(m->index);
  free(m->meta);
  free(m);
}

int loom_map_set(loom_tensor_map *m, const char *name, loom_tensor *t) {
  if (!m || !name || !t)
    return core_set_error(LOOM_ERR_INVALID, "loom_map_set: NULL %s",
                          !m ? "map" : !name ? "name" : "tensor");
  if (m->index_cap <= 2 * (m->count + 1)) {
    int st = grow_index(m, m->index_cap ? m->index_cap * 2 : 64);
    if (st) return st;
  }
  int slot = find_slot(m, name);
  if (m->index[slot] != 0) {   /* replace, keeping the original position */
    map_entry *e = &m->entries[m->index[slot] - 1];
    loom_retain(t);
    loom_release(e->tensor);
    e->tensor = t;
    return LOOM_OK;
  }
  if (m->count == m->cap) {
    map_entry *grown = grow_array(m->entries, &m->cap, sizeof(*grown));
    if (!grown) return core_set_error(LOOM_ERR_OOM, "loom_map_set: out of host memory");
    m->entries = grown;
  }
  char *copy = copy_string(name);
  if (!copy) return core_set_error(LOOM_ERR_OOM, "loom_map_set: out of host memory");
  m->entries[m->count] = (map_entry){copy, loom_retain(t)};
  m->count++;
  m->index[slot] = m->count;
  return LOOM_OK;
}

loom_tensor *loom_map_get(const loom_tensor_map *m, const char *name) {
  if (!m || !name || m->count == 0) return NULL;
  int slot = find_slot(m, name);
  return m->index[slot] ? m->entries[m->index[slot] - 1].tensor : NULL;
}

int loom_map_size(const loom_tensor_map *m) { return m ? m->count : 0; }

const char *loom_map_name(const loom_tensor_map *m, int i) {
  return m && i >= 0 && i < m->count ? m->entries[i].name : NULL;
}

static int meta_find(const loom_tensor_map *m, const char *key) {
  for (int i = 0; i < m->meta_count; i++)
    if (strcmp(m->meta[i].key, key) == 0) return i;
  return -1;
}

int loom_map_set_meta(loom_tensor_map *m, const char *key, const char *value) {
  if (!m || !key || !value)
    return core_set_error(LOOM_ERR_INVALID, "loom_map_set_meta: NULL %s",
                          !m ? "map" : !key ? "key" : "value");
  char *v = copy_string(value);
  if (!v) return core_set_error(LOOM_ERR_OOM, "loom_map_set_meta: out of host memory");
  int i = meta_find(m, key);
  if (i >= 0) {
    free(m->meta[i].value);
    m->meta[i].value = v;
    return LOOM_OK;
  }
  meta_entry *grown = m->meta_count == m->meta_cap
                         ? grow_array(m->meta, &m->meta_cap, sizeof(*grown)) : m->meta;
  if (grown) m->meta = grown;
  char *k = grown ? copy_string(key) : NULL;
  if (!k) {
    free(v);
    return core_set_error(LOOM_ERR_OOM, "loom_map_set_meta: out of host memory");
  }
  m->meta[m->meta_count++] = (meta_entry){k, v};
  return LOOM_OK;
}

const char *loom_map_get_meta(const loom_tensor_map *m, const char *key) {
  if (!m || !key) return NULL;
  int i = meta_find(m, key);
  return i >= 0 ? m->meta[i].value : NULL;
}

int loom_map_meta_size(const loom_tensor_map *m) { return m ? m->meta_count : 0; }

const char *loom_map_meta_key(const loom_tensor_map *m, int i) {
  return m && i >= 0 && i < m->meta_count ? m->meta[i].key : NULL;
}
