/* Text as byte or character (UTF-8 code point) tokens, in next-token windows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_impl.h"

typedef struct text_state {
  bool bytes;
  unsigned char *raw;    /* byte mode: the file */
  uint32_t *ids;         /* character mode: token ids */
  uint32_t *vocab;       /* character mode: sorted code points */
  int64_t vocab_size, seq_len;
} text_state;

static int text_get(void *state, int64_t i, void *x, void *y) {
  text_state *s = state;
  int64_t *xi = x, *yi = y, start = i * s->seq_len;
  for (int64_t k = 0; k < s->seq_len; k++) {
    int64_t a = start + k;
    xi[k] = s->bytes ? s->raw[a] : s->ids[a];
    yi[k] = s->bytes ? s->raw[a + 1] : s->ids[a + 1];
  }
  return LOOM_OK;
}

static void text_free(void *state) {
  text_state *s = state;
  free(s->raw);
  free(s->ids);
  free(s->vocab);
  free(s);
}

static const loom_dataset_kind text_kind = {"Text", text_get, text_free};

/* One UTF-8 code point at p (n bytes left); returns its length, 0 when invalid
 * (bad lead or continuation byte, overlong form, surrogate, > U+10FFFF). */
static int utf8_decode(const unsigned char *p, size_t n, uint32_t *cp) {
  int len = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 : (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
  if (!len || (size_t)len > n) return 0;
  uint32_t c = len == 1 ? p[0] : p[0] & (0x7F >> len);
  for (int k = 1; k < len; k++) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    c = c << 6 | (p[k] & 0x3F);
  }
  static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (c < min_for_len[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
  *cp = c;
  return len;
}

static int utf8_encode(uint32_t c, char *out) {
  if (c < 0x80) return out[0] = (char)c, 1;
  if (c < 0x800) return out[0] = (char)(0xC0 | c >> 6), out[1] = (char)(0x80 | (c & 0x3F)), 2;
  if (c < 0x10000)
    return out[0] = (char)(0xE0 | c >> 12), out[1] = (char)(0x80 | (c >> 6 & 0x3F)), out[2] = (char)(0x80 | (c & 0x3F)), 3;
  out[0] = (char)(0xF0 | c >> 18), out[1] = (char)(0x80 | (c >> 12 & 0x3F));
  out[2] = (char)(0x80 | (c >> 6 & 0x3F)), out[3] = (char)(0x80 | (c & 0x3F));
  return 4;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Token id of code point c, or -1. */
static int64_t vocab_find(const text_state *s, uint32_t c) {
  if (s->bytes) return c < 256 ? (int64_t)c : -1;
  int64_t lo = 0, hi = s->vocab_size;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (s->vocab[mid] < c) lo = mid + 1;
    else hi = mid;
  }
  return lo < s->vocab_size && s->vocab[lo] == c ? lo : -1;
}

/* Character mode: decodes raw into s->ids and builds s->vocab. */
static loom_status build_chars(text_state *s, const char *path, size_t size, int64_t *count) {
  uint32_t *cps = malloc((size ? size : 1) * sizeof *cps);
  if (!cps) return core_set_error(LOOM_ERR_OOM, "Text: out of host memory for %zu bytes of %s", size, path);
  int64_t n = 0;
  for (size_t at = 0; at < size;) {
    int len = utf8_decode(s->raw + at, size - at, &cps[n]);
    if (!len) {
      free(cps);
      return core_set_error(LOOM_ERR_IO, "%s: invalid UTF-8 at byte %zu (0x%02x); use byte tokens for binary text",
                            path, at, s->raw[at]);
    }
    at += (size_t)len;
    n++;
  }
  uint32_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
  if (!sorted) {
    free(cps);
    return core_set_error(LOOM_ERR_OOM, "Text: out of host memory");
  }
  memcpy(sorted, cps, n * sizeof *cps);
  qsort(sorted, n, sizeof *sorted, cmp_u32);
  int64_t v = 0;
  for (int64_t k = 0; k < n; k++)
    if (v == 0 || sorted[v - 1] != sorted[k]) sorted[v++] = sorted[k];
  s->vocab = sorted;
  s->vocab_size = v;
  for (int64_t k = 0; k < n; k++) cps[k] = (uint32_t)vocab_find(s, cps[k]);
  s->ids = cps;
  free(s->raw);
  s->raw = NULL;
  *count = n;
  return LOOM_OK;
}

loom_dataset *loom_dataset_text(const char *path, int64_t seq_len, bool bytes) {
  if (!path || seq_len < 1) {
    core_set_error(LOOM_ERR_INVALID, "loom_dataset_text: %s", !path ? "path is NULL" : "seq_len must be >= 1");
    return NULL;
  }
  text_state *s = calloc(1, sizeof *s);
  if (!s) {
    core_set_error(LOOM_ERR_OOM, "Text: out of host memory");
    return NULL;
  }
  s->bytes = bytes;
  s->seq_len = seq_len;
  s->vocab_size = 256;
  size_t size;
  int64_t count = 0;
  loom_status st = data_read_file(path, &s->raw, &size);
  if (!st) {
    count = (int64_t)size;
    if (!bytes) st = build_chars(s, path, size, &count);
  }
  if (!st && count < seq_len + 1)
    st = core_set_error(LOOM_ERR_IO, "%s: %lld %s, too short for one window of seq_len %lld (needs seq_len + 1)", path,
                        (long long)count, bytes ? "bytes" : "characters", (long long)seq_len);
  if (st) {
    text_free(s);
    return NULL;
  }
  return loom_dataset_new(&text_kind, s, (count - 1) / seq_len, LOOM_SHAPE(seq_len), LOOM_I64, LOOM_SHAPE(seq_len),
                          LOOM_I64);
}

static text_state *text_of(const loom_dataset *ds, const char *fn) {
  if (ds && ds->kind == &text_kind) return ds->state;
  core_set_error(LOOM_ERR_INVALID, "%s: %s is not a text dataset", fn, ds ? ds->kind->name : "NULL");
  return NULL;
}

int64_t loom_dataset_text_vocab(const loom_dataset *ds, uint32_t *codepoints, int64_t max) {
  text_state *s = text_of(ds, "loom_dataset_text_vocab");
  if (!s) return -1;
  for (int64_t k = 0; codepoints && k < max && k < s->vocab_size; k++)
    codepoints[k] = s->bytes ? (uint32_t)k : s->vocab[k];
  return s->vocab_size;
}

int64_t loom_dataset_text_decode(const loom_dataset *ds, const int64_t *tokens, int64_t n, char *buf, size_t size) {
  text_state *s = text_of(ds, "loom_dataset_text_decode");
  if (!s) return -1;
  int64_t need = 0;
  for (int64_t k = 0; k < n; k++) {
    if (tokens[k] < 0 || tokens[k] >= s->vocab_size) {
      core_set_error(LOOM_ERR_INVALID, "loom_dataset_text_decode: token %lld at %lld outside the vocabulary 0..%lld",
                     (long long)tokens[k], (long long)k, (long long)s->vocab_size - 1);
      return -1;
    }
    char enc[4];
    int len = s->bytes ? (enc[0] = (char)tokens[k], 1) : utf8_encode(s->vocab[tokens[k]], enc);
    for (int b = 0; b < len; b++, need++)
      if (buf && (size_t)need + 1 < size) buf[need] = enc[b];
  }
  if (buf && size) buf[(size_t)need < size ? (size_t)need : size - 1] = '\0';
  return need;
}

int64_t loom_dataset_text_encode(const loom_dataset *ds, const char *text, int64_t *tokens, int64_t max) {
  text_state *s = text_of(ds, "loom_dataset_text_encode");
  if (!s) return -1;
  if (!text) return core_set_error(LOOM_ERR_INVALID, "loom_dataset_text_encode: text is NULL"), -1;
  const unsigned char *p = (const unsigned char *)text;
  size_t n = strlen(text);
  int64_t count = 0;
  for (size_t at = 0; at < n; count++) {
    uint32_t c = p[at];
    int len = s->bytes ? 1 : utf8_decode(p + at, n - at, &c);
    int64_t id = len ? vocab_find(s, c) : -1;
    if (id < 0) {
      core_set_error(LOOM_ERR_INVALID, "loom_dataset_text_encode: %s at byte %zu", len ? "character not in the "
                     "vocabulary" : "invalid UTF-8", at);
      return -1;
    }
    if (tokens && count < max) tokens[count] = id;
    at += (size_t)len;
  }
  return count;
}
