/* Safetensors files: an 8-byte little-endian header length N, N bytes of
 * UTF-8 JSON (name -> {dtype, shape, data_offsets}, optional __metadata__),
 * then the tensors' bytes, little-endian and row-major, with no holes. */
#define _POSIX_C_SOURCE 200809L   /* fileno, fsync, mmap, O_CLOEXEC */
#include "loom/io.h"
#include "loom/runtime.h"
#include "core/tensor_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor bytes as they are: it needs a little-endian host"
#endif

#define MAX_HEADER_BYTES ((uint64_t)100 << 20)
#define MAX_JSON_INT 9007199254740992.0   /* 2^53: larger integers are not exact in cJSON */

/* Every dtype the format names; loom < 0 for those Loom does not support. */
static const struct { const char *name; int loom; } format_dtypes[] = {
    {"F64", LOOM_F64}, {"F32", LOOM_F32}, {"F16", LOOM_F16}, {"BF16", LOOM_BF16},
    {"I64", LOOM_I64}, {"I32", LOOM_I32}, {"U8", LOOM_U8},   {"BOOL", LOOM_BOOL},
    {"I16", -1},       {"I8", -1},        {"U16", -1},       {"U32", -1},
    {"U64", -1},       {"F8_E4M3", -1},   {"F8_E5M2", -1},   {"F8_E8M0", -1},
    {"F6_E2M3", -1},   {"F6_E3M2", -1},   {"F4", -1},        {"C64", -1},
};
#define FORMAT_DTYPE_COUNT ((int)(sizeof(format_dtypes) / sizeof(format_dtypes[0])))

/* One tensor of a header being read; name is borrowed from the cJSON tree. */
typedef struct st_entry {
  const char *name;
  loom_dtype dtype;
  loom_shape shape;
  uint64_t begin, end;
} st_entry;

/* Records "<src>: <message>" as an I/O error and returns LOOM_ERR_IO. */
static int bad(const char *src, const char *fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return core_set_error(LOOM_ERR_IO, "%s: %s", src, msg);
}

/* Index of the first byte that breaks UTF-8 (or is NUL); n when all is valid. */
static size_t utf8_error_at(const uint8_t *s, size_t n) {
  static const uint32_t min_code[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
               : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (c == 0 || len == 0 || n - i < len) return i;
    uint32_t code = len == 1 ? c : c & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      code = code << 6 | (s[i + k] & 0x3F);
    }
    if (code < min_code[len] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return i;
    i += len;
  }
  return n;
}

/* JSON strings of the header (tensor names, metadata) may not hold control
 * characters, raw or escaped: an escaped NUL would cut a name short, so
 * "w\u0000a" would load as "w". The string is quoted in the error. */
static int check_strings(const char *t, size_t n, const char *src) {
  bool in = false;
  size_t start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned c = (unsigned char)t[i], code = 0x20;
    if (!in) {
      if (c == '"') in = true, start = i;
      continue;
    }
    if (c == '"') {
      in = false;
      continue;
    }
    if (c < 0x20) {
      code = c;
    } else if (c == '\\' && i + 1 < n) {
      if (t[i + 1] == 'u' && i + 5 < n) {
        char hex[5] = {t[i + 2], t[i + 3], t[i + 4], t[i + 5], 0};
        char *end;
        unsigned long v = strtoul(hex, &end, 16);
        if (end == hex + 4) code = (unsigned)v;
      }
      i++; /* the escaped character */
    }
    if (code < 0x20) {
      size_t end = i + 1;
      while (end < n && t[end] != '"') end++;
      int len = (int)(end - start + 1 < 80 ? end - start + 1 : 80);
      return bad(src, "header string %.*s holds the control character U+%04X (tensor names and metadata may "
                 "not hold control characters)", len, t + start, code);
    }
  }
  return LOOM_OK;
}

/* ---------------------------------------------------------------- reading */

/* A JSON number that is a non-negative integer cJSON holds exactly. */
static bool json_uint(const cJSON *v, uint64_t *out) {
  if (!cJSON_IsNumber(v)) return false;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= MAX_JSON_INT) || d != floor(d)) return false;
  *out = (uint64_t)d;
  return true;
}

static const char *json_kind(const cJSON *v) {
  return !v ? "missing" : cJSON_IsNumber(v) ? "a number" : cJSON_IsString(v) ? "a string"
       : cJSON_IsArray(v) ? "an array" : cJSON_IsObject(v) ? "an object"
       : cJSON_IsBool(v) ? "a boolean" : "null";
}

/* Reads one tensor's entry, checking it against a data buffer of data_size bytes. */
static int parse_entry(const cJSON *item, uint64_t data_size, st_entry *e, const char *src) {
  const char *name = item->string;
  if (!cJSON_IsObject(item)) return bad(src, "entry '%s' is %s, not an object", name, json_kind(item));
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
  const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
  if (!cJSON_IsString(dtype))
    return bad(src, "tensor '%s': \"dtype\" is %s, not a string", name, json_kind(dtype));
  if (!cJSON_IsArray(shape))
    return bad(src, "tensor '%s': \"shape\" is %s, not an array", name, json_kind(shape));
  if (!cJSON_IsArray(offsets))
    return bad(src, "tensor '%s': \"data_offsets\" is %s, not an array", name, json_kind(offsets));
  if (cJSON_GetArraySize(offsets) != 2)
    return bad(src, "tensor '%s': \"data_offsets\" has %d entries, not 2 (begin, end)", name,
               cJSON_GetArraySize(offsets));

  int k = 0;
  while (k < FORMAT_DTYPE_COUNT && strcmp(format_dtypes[k].name, dtype->valuestring) != 0) k++;
  if (k == FORMAT_DTYPE_COUNT)
    return bad(src, "tensor '%s': unknown dtype \"%s\"", name, dtype->valuestring);
  if (format_dtypes[k].loom < 0)
    return bad(src, "tensor '%s': dtype %s is valid safetensors but not supported by Loom "
               "(supported: F32 F64 F16 BF16 I32 I64 U8 BOOL)", name, dtype->valuestring);
  e->name = name;
  e->dtype = (loom_dtype)format_dtypes[k].loom;

  int ndim = cJSON_GetArraySize(shape);
  if (ndim > LOOM_MAX_DIMS)
    return bad(src, "tensor '%s': shape has %d dims, more than Loom's %d", name, ndim, LOOM_MAX_DIMS);
  e->shape.ndim = ndim;
  uint64_t numel = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; d++) {
    const cJSON *v = cJSON_GetArrayItem(shape, d);
    uint64_t size;
    if (!json_uint(v, &size)) {
      if (cJSON_IsNumber(v))
        return bad(src, "tensor '%s': shape entry %d is %g, not a non-negative integer", name, d,
                   v->valuedouble);
      return bad(src, "tensor '%s': shape entry %d is %s, not an integer", name, d, json_kind(v));
    }
    e->shape.d[d] = (int64_t)size;
    if (size != 0 && numel > UINT64_MAX / size) overflow = true;
    else numel *= size;
  }
  for (int d = 0; d < ndim; d++)
    if (e->shape.d[d] == 0) overflow = false, numel = 0;

  for (int j = 0; j < 2; j++) {
    const cJSON *v = cJSON_GetArrayItem(offsets, j);
    if (!json_uint(v, j ? &e->end : &e->begin))
      return bad(src, "tensor '%s': data_offsets[%d] is %s, not a non-negative integer", name, j,
                 cJSON_IsNumber(v) ? "negative or fractional" : json_kind(v));
  }
  if (e->begin > e->end)
    return bad(src, "tensor '%s': data_offsets [%llu, %llu] begin after end", name,
               (unsigned long long)e->begin, (unsigned long long)e->end);
  if (e->end > data_size)
    return bad(src, "tensor '%s': data_offsets [%llu, %llu] run past the %llu-byte data buffer "
               "(file truncated?)", name, (unsigned long long)e->begin,
               (unsigned long long)e->end, (unsigned long long)data_size);
  size_t elem = loom_dtype_size(e->dtype);
  overflow = overflow || numel > UINT64_MAX / elem;
  if (overflow || numel * elem != e->end - e->begin) {
    char need[32] = "more than 2^64";
    if (!overflow) snprintf(need, sizeof(need), "%llu", (unsigned long long)(numel * elem));
    return bad(src, "tensor '%s': shape %s of %s needs %s bytes but data_offsets [%llu, %llu] "
               "hold %llu", name, loom_shape_str(e->shape), dtype->valuestring, need,
               (unsigned long long)e->begin, (unsigned long long)e->end,
               (unsigned long long)(e->end - e->begin));
  }
  return LOOM_OK;
}

static int compare_offsets(const void *a, const void *b) {
  const st_entry *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks names are unique and the byte ranges tile the data buffer exactly. */
static int check_layout(const st_entry *entries, int n, uint64_t data_size, const char *src) {
  st_entry *sorted = malloc((size_t)(n ? n : 1) * sizeof(*sorted));
  const char **names = malloc((size_t)(n ? n : 1) * sizeof(*names));
  int st = sorted && names ? LOOM_OK : core_set_error(LOOM_ERR_OOM, "%s: out of host memory", src);
  if (!st) {
    memcpy(sorted, entries, (size_t)n * sizeof(*sorted));
    for (int i = 0; i < n; i++) names[i] = entries[i].name;
    qsort(names, (size_t)n, sizeof(*names), compare_names);
    for (int i = 1; i < n && !st; i++)
      if (strcmp(names[i - 1], names[i]) == 0) st = bad(src, "tensor '%s' appears twice", names[i]);
    qsort(sorted, (size_t)n, sizeof(*sorted), compare_offsets);
  }
  uint64_t pos = 0;
  const st_entry *prev = NULL;   /* the tensor whose bytes end at pos */
  for (int i = 0; i < n && !st; i++) {
    const st_entry *e = &sorted[i];
    if (e->begin < pos)
      st = bad(src, "tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", prev->name,
               (unsigned long long)prev->begin, (unsigned long long)prev->end, e->name,
               (unsigned long long)e->begin, (unsigned long long)e->end);
    else if (e->begin > pos)
      st = bad(src, "hole in the data: bytes [%llu, %llu) belong to no tensor",
               (unsigned long long)pos, (unsigned long long)e->begin);
    else if (e->end > pos)
      pos = e->end, prev = e;
  }
  if (!st && pos != data_size)
    st = bad(src, "hole in the data: bytes [%llu, %llu) at the end belong to no tensor",
             (unsigned long long)pos, (unsigned long long)data_size);
  free(sorted);
  free(names);
  return st;
}

static int read_metadata(const cJSON *meta, loom_tensor_map *m, const char *src) {
  if (!cJSON_IsObject(meta)) return bad(src, "__metadata__ is %s, not an object", json_kind(meta));
  for (const cJSON *kv = meta->child; kv; kv = kv->next) {
    if (!cJSON_IsString(kv))
      return bad(src, "__metadata__ value of '%s' is %s, not a string", kv->string, json_kind(kv));
    if (loom_map_get_meta(m, kv->string)) return bad(src, "__metadata__ key '%s' appears twice", kv->string);
    int st = loom_map_set_meta(m, kv->string, kv->valuestring);
    if (st) return st;
  }
  return LOOM_OK;
}

/* Creates the tensors of a validated header on dev; the map holds the only reference. */
static int create_tensors(const st_entry *entries, int n, const uint8_t *data, loom_device dev,
                          loom_tensor_map *m, const char *src) {
  for (int i = 0; i < n; i++) {
    const st_entry *e = &entries[i];
    if (e->dtype == LOOM_BOOL)
      for (uint64_t b = e->begin; b < e->end; b++)
        if (data[b] > 1)
          return bad(src, "tensor '%s': BOOL element %llu holds byte %u, not 0 or 1", e->name,
                     (unsigned long long)(b - e->begin), data[b]);
    loom_tensor *t = loom_from_host(data + e->begin, e->shape, e->dtype, dev);
    if (!t) return loom_last_status();
    core_untrack(t);
    int st = loom_map_set(m, e->name, t);
    loom_release(t);
    if (st) return st;
  }
  return LOOM_OK;
}

static loom_tensor_map *parse(const uint8_t *buf, size_t size, loom_device dev, const char *src) {
  if (size < 8)
    return bad(src, "%zu bytes, shorter than the 8-byte header length (truncated?)", size), NULL;
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
  if (n > MAX_HEADER_BYTES)
    return bad(src, "header length %llu is absurd (more than 100 MB)", (unsigned long long)n), NULL;
  if (n > size - 8)
    return bad(src, "header length %llu runs past the end of the file (%zu bytes follow it; "
               "truncated?)", (unsigned long long)n, size - 8), NULL;
  size_t bad_byte = utf8_error_at(buf + 8, n);
  if (bad_byte != n)
    return bad(src, "header is not valid UTF-8 (byte %zu of the header)", bad_byte), NULL;

  char *text = malloc(n + 1);
  if (!text) return core_set_error(LOOM_ERR_OOM, "%s: out of host memory", src), NULL;
  memcpy(text, buf + 8, n);
  text[n] = '\0';
  const char *end = NULL;
  int st = check_strings(text, n, src);
  cJSON *root = st ? NULL : cJSON_ParseWithLengthOpts(text, n, &end, false);
  if (!st && !root) st = bad(src, "header is not valid JSON (error near byte %td)", end ? end - text : 0);
  else if (!st && !cJSON_IsObject(root)) st = bad(src, "header is %s, not a JSON object", json_kind(root));
  for (; !st && end && end < text + n; end++)
    if (!strchr(" \t\r\n", *end))
      st = bad(src, "header has bytes after its JSON object (at byte %td)", end - text);

  int count = 0;
  for (const cJSON *c = root ? root->child : NULL; c; c = c->next) count++;
  st_entry *entries = st ? NULL : malloc((size_t)(count ? count : 1) * sizeof(*entries));
  loom_tensor_map *m = st ? NULL : loom_map_new();
  if (!st && (!entries || !m)) st = core_set_error(LOOM_ERR_OOM, "%s: out of host memory", src);

  uint64_t data_size = size - 8 - n;
  int ntensors = 0;
  const cJSON *meta = NULL;
  for (const cJSON *c = root ? root->child : NULL; c && !st; c = c->next) {
    if (strcmp(c->string, "__metadata__") != 0)
      st = parse_entry(c, data_size, &entries[ntensors++], src);
    else if (meta)
      st = bad(src, "__metadata__ appears twice");
    else {
      meta = c;
      st = read_metadata(meta, m, src);
    }
  }
  if (!st) st = check_layout(entries, ntensors, data_size, src);
  if (!st) st = create_tensors(entries, ntensors, buf + 8 + n, dev, m, src);
  free(entries);
  cJSON_Delete(root);
  free(text);
  if (st) {
    loom_map_free(m);
    return NULL;
  }
  return m;
}

loom_tensor_map *loom_safetensors_parse(const void *buf, size_t size, loom_device dev) {
  if (!buf && size)
    return core_set_error(LOOM_ERR_INVALID, "loom_safetensors_parse: NULL buffer of %zu bytes", size), NULL;
  return parse(buf, size, dev, "loom_safetensors_parse: buffer");
}

loom_tensor_map *loom_safetensors_load(const char *path, loom_device dev) {
  if (!path) return core_set_error(LOOM_ERR_INVALID, "loom_safetensors_load: NULL path"), NULL;
  char src[1024];
  snprintf(src, sizeof(src), "loom_safetensors_load: '%s'", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return bad(src, "cannot open: %s", strerror(errno)), NULL;
  struct stat info;
  const char *problem = fstat(fd, &info) != 0 ? strerror(errno)
                      : S_ISDIR(info.st_mode) ? "is a directory"
                      : !S_ISREG(info.st_mode) ? "not a regular file" : NULL;
  if (problem) {
    close(fd);
    return bad(src, "cannot read: %s", problem), NULL;
  }
  size_t size = (size_t)info.st_size;
  void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
  int err = errno;
  close(fd);
  if (map == MAP_FAILED) return bad(src, "cannot map %zu bytes: %s", size, strerror(err)), NULL;
  loom_tensor_map *m = parse(size ? map : "", size, dev, src);
  if (size) munmap(map, size);
  return m;
}

/* ---------------------------------------------------------------- writing */

typedef struct save_item {
  const char *name;
  const loom_tensor *t;
  uint64_t nbytes;
} save_item;

static int compare_items(const void *a, const void *b) {
  return strcmp(((const save_item *)a)->name, ((const save_item *)b)->name);
}

/* A JSON array of exact integers (raw text, so no large value turns into 1e+15). */
static cJSON *int_array(const int64_t *v, int n) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) {
    char text[24];
    snprintf(text, sizeof(text), "%lld", (long long)v[i]);
    if (!cJSON_AddItemToArray(a, cJSON_CreateRaw(text))) {
      cJSON_Delete(a);
      return NULL;
    }
  }
  return a;
}

static bool add_entry(cJSON *root, const save_item *item, uint64_t offset) {
  const char *dtype = NULL;
  for (int k = 0; k < FORMAT_DTYPE_COUNT; k++)
    if (format_dtypes[k].loom == (int)loom_dtype_of(item->t)) dtype = format_dtypes[k].name;
  loom_shape s = loom_shape_of(item->t);
  int64_t range[2] = {(int64_t)offset, (int64_t)(offset + item->nbytes)};
  cJSON *e = cJSON_AddObjectToObject(root, item->name);
  cJSON *shape = int_array(s.d, s.ndim), *offsets = int_array(range, 2);
  bool ok = e && cJSON_AddStringToObject(e, "dtype", dtype) && cJSON_AddItemToObject(e, "shape", shape);
  if (!ok) cJSON_Delete(shape);
  ok = ok && cJSON_AddItemToObject(e, "data_offsets", offsets);
  if (!ok) cJSON_Delete(offsets);
  return ok;
}

/* The header text padded with spaces to a multiple of 8 bytes (*len); NULL when out of memory. */
static char *build_header(const save_item *items, int n, const loom_tensor_map *m, size_t *len) {
  cJSON *root = cJSON_CreateObject();
  bool ok = root != NULL;
  if (ok && loom_map_meta_size(m) > 0) {
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    ok = meta != NULL;
    for (int i = 0; ok && i < loom_map_meta_size(m); i++) {
      const char *key = loom_map_meta_key(m, i);
      ok = cJSON_AddStringToObject(meta, key, loom_map_get_meta(m, key)) != NULL;
    }
  }
  uint64_t offset = 0;
  for (int i = 0; ok && i < n; i++) {
    ok = add_entry(root, &items[i], offset);
    offset += items[i].nbytes;
  }
  char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (!json) return NULL;
  size_t used = strlen(json);
  *len = (used + 7) & ~(size_t)7;
  char *padded = malloc(*len);
  if (padded) {
    memcpy(padded, json, used);
    memset(padded + used, ' ', *len - used);
  }
  cJSON_free(json);
  return padded;
}

/* Checks the map's names and metadata, and sorts its tensors by name into items. */
static int collect(const loom_tensor_map *m, save_item *items, uint64_t *max_copy, const char *src) {
  *max_copy = 0;
  for (int i = 0; i < loom_map_size(m); i++) {
    const char *name = loom_map_name(m, i);
    const loom_tensor *t = loom_map_get(m, name);
    if (strcmp(name, "__metadata__") == 0)
      return core_set_error(LOOM_ERR_INVALID, "%s: the tensor name __metadata__ is reserved", src);
    if (utf8_error_at((const uint8_t *)name, strlen(name)) != strlen(name))
      return core_set_error(LOOM_ERR_INVALID, "%s: tensor name '%s' is not valid UTF-8", src, name);
    items[i] = (save_item){name, t, (uint64_t)loom_numel(t) * loom_dtype_size(loom_dtype_of(t))};
    bool direct = loom_device_of(t).type == LOOM_CPU && loom_is_contiguous(t);
    if (!direct && items[i].nbytes > *max_copy) *max_copy = items[i].nbytes;
  }
  for (int i = 0; i < loom_map_meta_size(m); i++) {
    const char *key = loom_map_meta_key(m, i), *value = loom_map_get_meta(m, key);
    if (utf8_error_at((const uint8_t *)key, strlen(key)) != strlen(key) ||
        utf8_error_at((const uint8_t *)value, strlen(value)) != strlen(value))
      return core_set_error(LOOM_ERR_INVALID, "%s: metadata '%s' is not valid UTF-8", src, key);
  }
  qsort(items, (size_t)loom_map_size(m), sizeof(*items), compare_items);
  return LOOM_OK;
}

/* Writes one tensor's bytes: straight from CPU memory, else through scratch. */
static int write_tensor(FILE *f, const save_item *item, void *scratch, const char *tmp,
                        const char *src) {
  if (item->nbytes == 0) return LOOM_OK;
  const void *bytes = loom_data_ptr(item->t);
  if (loom_device_of(item->t).type != LOOM_CPU || !loom_is_contiguous(item->t)) {
    if (loom_to_host(item->t, scratch, item->nbytes) != 0) {
      char why[512];
      snprintf(why, sizeof(why), "%s", loom_last_error());
      return core_set_error(loom_last_status(), "%s: tensor '%s': cannot copy to the host: %s",
                            src, item->name, why);
    }
    bytes = scratch;
  }
  if (fwrite(bytes, 1, item->nbytes, f) != item->nbytes)
    return bad(src, "cannot write '%s': %s", tmp, strerror(errno));
  return LOOM_OK;
}

static int write_file(FILE *f, const save_item *items, int n, const char *header, size_t len,
                      void *scratch, const char *tmp, const char *src) {
  uint8_t prefix[8];
  for (int i = 0; i < 8; i++) prefix[i] = (uint8_t)((uint64_t)len >> (8 * i));
  if (fwrite(prefix, 1, 8, f) != 8 || fwrite(header, 1, len, f) != len)
    return bad(src, "cannot write '%s': %s", tmp, strerror(errno));
  for (int i = 0; i < n; i++) {
    int st = write_tensor(f, &items[i], scratch, tmp, src);
    if (st) return st;
  }
  if (fflush(f) != 0 || fsync(fileno(f)) != 0)
    return bad(src, "cannot flush '%s': %s", tmp, strerror(errno));
  return LOOM_OK;
}

int loom_safetensors_save(const char *path, const loom_tensor_map *m) {
  if (!path || !m)
    return core_set_error(LOOM_ERR_INVALID, "loom_safetensors_save: NULL %s", !path ? "path" : "map");
  char src[1024];
  snprintf(src, sizeof(src), "loom_safetensors_save: '%s'", path);
  int n = loom_map_size(m);
  uint64_t max_copy = 0;
  size_t header_len = 0;
  char *tmp = malloc(strlen(path) + 32);
  save_item *items = malloc((size_t)(n ? n : 1) * sizeof(*items));
  int st = tmp && items ? collect(m, items, &max_copy, src)
                        : (int)core_set_error(LOOM_ERR_OOM, "%s: out of host memory", src);
  char *header = st ? NULL : build_header(items, n, m, &header_len);
  void *scratch = st || !max_copy ? NULL : malloc(max_copy);
  if (!st && (!header || (max_copy && !scratch)))
    st = core_set_error(LOOM_ERR_OOM, "%s: out of host memory for the header or a %llu-byte "
                        "copy buffer", src, (unsigned long long)max_copy);
  FILE *f = NULL;
  if (!st) {
    snprintf(tmp, strlen(path) + 32, "%s.tmp.%ld", path, (long)getpid());
    f = fopen(tmp, "wb");
    if (!f) st = bad(src, "cannot create '%s': %s", tmp, strerror(errno));
  }
  if (!st) st = write_file(f, items, n, header, header_len, scratch, tmp, src);
  if (f && fclose(f) != 0 && !st) st = bad(src, "cannot close '%s': %s", tmp, strerror(errno));
  if (!st && rename(tmp, path) != 0)
    st = bad(src, "cannot rename '%s' to it: %s", tmp, strerror(errno));
  if (st && f) remove(tmp);
  free(scratch);
  free(header);
  free(items);
  free(tmp);
  return st;
}
