/* oneDNN (built with CMake's LOOM_ONEDNN) for the CPU's f32 convolutions:
 * conv2d and its two gradients, where oneDNN measured faster than the
 * im2col + OpenBLAS kernels of src/cpu/conv.c, which stay the reference that
 * tests/test_onednn.cpp checks it against.
 *
 * Loom's tensors are NCHW; oneDNN's direct JIT kernels want channel-blocked
 * layouts, so each call reorders its operands into them and the result back
 * (measured end to end, reorders included, at 1 and 2 threads on AVX-512):
 * 3x3 convolutions run 1.2-1.6x faster from 8 channels per group up, depthwise
 * 3x3 2-3x. It is not used where it was not faster: 1x1 kernels (within 15%
 * either way), fewer than 3 channels per group (8 for the input gradient,
 * where small channel counts run several times slower), the weight gradient of
 * 1-d convolutions, and grouped shapes where oneDNN picks its own GEMM-based
 * kernel (1.1-3x slower). Mode 2 (loom_set_onednn) drops these rules.
 *
 * Primitives are cached by (op, geometry, threads): oneDNN's kernels are
 * built for a thread count. Their buffers (reordered operands, oneDNN's
 * scratchpad) come from Loom's host pool per call, so one cached primitive may
 * run on several threads at once. oneDNN built on OpenMP (Debian's) uses the
 * OpenMP pool Loom uses, sized here to loom_set_num_threads; inside a parallel
 * region it runs on the calling thread alone. */
#include "cpu/onednn.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu.h"

#ifndef LOOM_WITH_ONEDNN

bool cpu_onednn_conv(const core_kctx *k, loom_status *st) { return false; }

int cpu_onednn_versions(char *buf, size_t size) {
  if (!buf || size == 0) return 0;
  int n = snprintf(buf, size, "oneDNN: not built\n");
  return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

void loom_set_onednn(int mode) {}
int loom_onednn(void) { return -1; }

#else

#include <dnnl.h>
#include <dnnl_debug.h>
#include <omp.h>
#include <pthread.h>

/* The mode: 0 off, 1 where faster, 2 wherever implemented; -2 = not read yet. */
static atomic_int mode_now = -2;

static int mode_get(void) {
  int m = atomic_load(&mode_now);
  if (m == -2) {
    const char *e = getenv("LOOM_ONEDNN");
    int want = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "2") ? 2 : 1;
    atomic_compare_exchange_strong(&mode_now, &m, want);
    m = atomic_load(&mode_now);
  }
  return m;
}

void loom_set_onednn(int mode) {
  if (mode < 0 || mode > 2) {
    core_set_error(LOOM_ERR_INVALID, "loom_set_onednn: mode must be 0 (off), 1 (where faster) or 2 (everywhere), "
                   "got %d", mode);
    return;
  }
  atomic_store(&mode_now, mode);
}

int loom_onednn(void) { return mode_get(); }

int cpu_onednn_versions(char *buf, size_t size) {
  if (!buf || size == 0) return 0;
  const dnnl_version_t *v = dnnl_version();
  int m = mode_get();
  int n = snprintf(buf, size, "oneDNN: %d.%d.%d (CPU f32 convolutions: %s)\n", v->major, v->minor, v->patch,
                   m == 0 ? "off" : m == 2 ? "everywhere" : "where faster");
  return n < 0 ? 0 : (size_t)n < size ? n : (int)size - 1;
}

/* One call's geometry, as in src/cpu/conv.c: x [N, C, H, W], w [Co, Cg, kh, kw],
 * y [N, Co, Ho, Wo]; stride, padding, dilation (Loom's, 1 = none), groups. */
typedef struct cgeom { int64_t N, C, H, W, Co, Cg, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, G; } cgeom;

/* Operand slots: 0 = x (src / diff_src), 1 = w (weights / diff_weights), 2 = y (dst / diff_dst). */
enum { SLOT_X, SLOT_W, SLOT_Y };

static int out_slot(core_op op) {
  return op == CORE_OP_conv2d ? SLOT_Y : op == CORE_OP_conv2d_backward_input ? SLOT_X : SLOT_W;
}

/* Reads k's geometry and operand pointers; false for anything the reference
 * kernel should see (other dtypes, strided or empty tensors, bad geometry). */
static bool read_geom(const core_kctx *k, cgeom *g, float *ptr[3]) {
  const loom_tensor *t[3];
  switch (k->op) {
    case CORE_OP_conv2d: t[SLOT_X] = k->in[0], t[SLOT_W] = k->in[1], t[SLOT_Y] = k->out[0]; break;
    case CORE_OP_conv2d_backward_input: t[SLOT_Y] = k->in[0], t[SLOT_W] = k->in[1], t[SLOT_X] = k->out[0]; break;
    case CORE_OP_conv2d_backward_weight: t[SLOT_Y] = k->in[0], t[SLOT_X] = k->in[1], t[SLOT_W] = k->out[0]; break;
    default: return false;
  }
  for (int i = 0; i < 3; i++) {
    if (!t[i] || t[i]->dtype != LOOM_F32 || t[i]->shape.ndim != 4 || core_numel(t[i]) == 0 ||
        !core_is_contiguous(t[i]))
      return false;
    ptr[i] = core_ptr(t[i]);
  }
  const int64_t *xs = t[SLOT_X]->shape.d, *ws = t[SLOT_W]->shape.d, *ys = t[SLOT_Y]->shape.d, *a = k->a.i;
  *g = (cgeom){xs[0], xs[1], xs[2], xs[3], ws[0], ws[1], ws[2], ws[3], ys[2], ys[3],
               a[0], a[1], a[2], a[3], a[4], a[5], a[6]};
  if (g->G <= 0 || g->sh <= 0 || g->sw <= 0 || g->ph < 0 || g->pw < 0 || g->dh <= 0 || g->dw <= 0 ||
      g->Co % g->G != 0 || g->C != g->Cg * g->G || ys[0] != g->N || ys[1] != g->Co)
    return false;
  int64_t eh = g->dh * (g->kh - 1) + 1, ew = g->dw * (g->kw - 1) + 1;
  return g->H + 2 * g->ph >= eh && g->W + 2 * g->pw >= ew && g->Ho == (g->H + 2 * g->ph - eh) / g->sh + 1 &&
         g->Wo == (g->W + 2 * g->pw - ew) / g->sw + 1;
}

/* Mode 1's rules, before a primitive is made (the GEMM rule comes after). */
static bool worth_trying(core_op op, const cgeom *g) {
  if (g->kh * g->kw == 1) return false;
  if (g->G > 1 && g->Cg == 1 && g->Co == g->G) return true;  /* depthwise */
  if (op == CORE_OP_conv2d_backward_input) return g->Cg >= 8;
  if (op == CORE_OP_conv2d_backward_weight && g->H == 1 && g->kh == 1) return false;  /* 1-d */
  return g->Cg >= 3;
}

/* ---- the primitive cache ---- */

#define KEY_LEN 19 /* op, threads, then cgeom's 17 fields */
#define CACHE_SLOTS 128

typedef struct entry {
  int64_t key[KEY_LEN];
  uint64_t used;        /* LRU tick */
  int refs;             /* calls running it */
  bool in_table;        /* false once evicted: the last call running it frees it */
  bool faster;          /* mode 1 uses it (not one of oneDNN's GEMM-based kernels) */
  dnnl_primitive_t conv;  /* NULL: oneDNN does not implement this shape */
  dnnl_primitive_t reorder[3]; /* per slot, NULL where Loom's layout is the primitive's */
  dnnl_memory_desc_t user[3], prim[3], scratch[4]; /* scratch[3]: the convolution's */
  size_t bytes[3], scratch_bytes;  /* reordered operands; the largest scratchpad */
} entry;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *cache[CACHE_SLOTS];
static uint64_t cache_tick;

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;
static dnnl_status_t engine_status;

static void engine_init(void) { engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0); }

static void entry_free(entry *e) {
  if (!e) return;
  if (e->conv) dnnl_primitive_destroy(e->conv);
  for (int i = 0; i < 3; i++)
    if (e->reorder[i]) dnnl_primitive_destroy(e->reorder[i]);
  free(e);
}

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

/* Makes e's primitives; *call names the oneDNN call that failed. */
static dnnl_status_t build(entry *e, core_op op, const cgeom *g, const char **call) {
  dnnl_status_t s;
#define TRY(f)                  \
  do {                          \
    *call = #f;                 \
    if ((s = (f)) != dnnl_success) goto done; \
  } while (0)
  dnnl_primitive_attr_t attr = NULL;
  dnnl_primitive_desc_t fwd_pd = NULL, pd = NULL, rpd = NULL;
  dnnl_memory_desc_t any[3];
  dnnl_dims_t xd = {g->N, g->C, g->H, g->W}, yd = {g->N, g->Co, g->Ho, g->Wo};
  dnnl_dims_t wd = {g->G, g->Co / g->G, g->Cg, g->kh, g->kw}, wd1 = {g->Co, g->Cg, g->kh, g->kw};
  bool grouped = g->G > 1; /* Loom's [Co, Cg, kh, kw] is goihw's [G, Co / G, Cg, kh, kw] */
  TRY(dnnl_memory_desc_init_by_tag(&e->user[SLOT_X], 4, xd, dnnl_f32, dnnl_nchw));
  TRY(dnnl_memory_desc_init_by_tag(&e->user[SLOT_W], grouped ? 5 : 4, grouped ? wd : wd1, dnnl_f32,
                                   grouped ? dnnl_goihw : dnnl_oihw));
  TRY(dnnl_memory_desc_init_by_tag(&e->user[SLOT_Y], 4, yd, dnnl_f32, dnnl_nchw));
  TRY(dnnl_memory_desc_init_by_tag(&any[SLOT_X], 4, xd, dnnl_f32, dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&any[SLOT_W], grouped ? 5 : 4, grouped ? wd : wd1, dnnl_f32,
                                   dnnl_format_tag_any));
  TRY(dnnl_memory_desc_init_by_tag(&any[SLOT_Y], 4, yd, dnnl_f32, dnnl_format_tag_any));
  dnnl_dims_t st = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1}, pad = {g->ph, g->pw};
  TRY(dnnl_primitive_attr_create(&attr));
  TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
  dnnl_convolution_desc_t fd, bd;
  TRY(dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &any[SLOT_X],
                                                 &any[SLOT_W], NULL, &any[SLOT_Y], st, dil, pad, pad));
  TRY(dnnl_primitive_desc_create(&fwd_pd, &fd, attr, engine, NULL));
  if (op == CORE_OP_conv2d) {
    pd = fwd_pd, fwd_pd = NULL;
  } else {
    if (op == CORE_OP_conv2d_backward_input)
      TRY(dnnl_dilated_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &any[SLOT_X], &any[SLOT_W],
                                                           &any[SLOT_Y], st, dil, pad, pad));
    else
      TRY(dnnl_dilated_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &any[SLOT_X],
                                                              &any[SLOT_W], NULL, &any[SLOT_Y], st, dil, pad, pad));
    TRY(dnnl_primitive_desc_create(&pd, &bd, attr, engine, fwd_pd));
  }
  const char *impl = "";
  TRY(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
  e->faster = !strstr(impl, "gemm");
  dnnl_query_t q[3] = {op == CORE_OP_conv2d_backward_input ? dnnl_query_diff_src_md : dnnl_query_src_md,
                       op == CORE_OP_conv2d_backward_weight ? dnnl_query_diff_weights_md : dnnl_query_weights_md,
                       op == CORE_OP_conv2d ? dnnl_query_dst_md : dnnl_query_diff_dst_md};
  for (int i = 0; i < 3; i++) e->prim[i] = *dnnl_primitive_desc_query_md(pd, q[i], 0);
  e->scratch[3] = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
  e->scratch_bytes = dnnl_memory_desc_get_size(&e->scratch[3]);
  TRY(dnnl_primitive_create(&e->conv, pd));
  for (int i = 0; i < 3; i++) {
    if (dnnl_memory_desc_equal(&e->user[i], &e->prim[i])) continue;
    bool out = i == out_slot(op);
    TRY(dnnl_reorder_primitive_desc_create(&rpd, out ? &e->prim[i] : &e->user[i], engine,
                                           out ? &e->user[i] : &e->prim[i], engine, attr));
    e->scratch[i] = *dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
    size_t n = dnnl_memory_desc_get_size(&e->scratch[i]);
    if (n > e->scratch_bytes) e->scratch_bytes = n;
    e->bytes[i] = dnnl_memory_desc_get_size(&e->prim[i]);
    TRY(dnnl_primitive_create(&e->reorder[i], rpd));
    dnnl_primitive_desc_destroy(rpd);
    rpd = NULL;
  }
done:
#undef TRY
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (fwd_pd) dnnl_primitive_desc_destroy(fwd_pd);
  if (attr) dnnl_primitive_attr_destroy(attr);
  return s;
}

static loom_status dnnl_error(const char *op, const char *call, dnnl_status_t s, const cgeom *g) {
  return core_set_error(s == dnnl_out_of_memory ? LOOM_ERR_OOM : LOOM_ERR_INTERNAL,
                        "%s: oneDNN failed (%s: %s) for x [%lld, %lld, %lld, %lld], w [%lld, %lld, %lld, %lld], "
                        "groups %lld", op, call, dnnl_status2str(s), (long long)g->N, (long long)g->C,
                        (long long)g->H, (long long)g->W, (long long)g->Co, (long long)g->Cg, (long long)g->kh,
                        (long long)g->kw, (long long)g->G);
}

/* The cached entry for key (made on a miss), with a reference the caller
 * drops with release(); NULL with *st set when making it failed. */
static entry *acquire(const int64_t *key, core_op op, const cgeom *g, loom_status *st) {
  pthread_mutex_lock(&cache_lock);
  int slot = -1;
  for (int i = 0; i < CACHE_SLOTS; i++) {
    if (cache[i] && !memcmp(cache[i]->key, key, sizeof cache[i]->key)) {
      entry *e = cache[i];
      e->used = ++cache_tick;
      e->refs++;
      pthread_mutex_unlock(&cache_lock);
      return e;
    }
    /* where a new entry goes: the first free slot, else the least recently used */
    if (slot < 0 || (cache[slot] && (!cache[i] || cache[i]->used < cache[slot]->used))) slot = i;
  }
  entry *e = calloc(1, sizeof *e);
  if (!e) {
    pthread_mutex_unlock(&cache_lock);
    *st = core_set_error(LOOM_ERR_OOM, "%s: out of host memory for a oneDNN primitive", core_ops[op].name);
    return NULL;
  }
  memcpy(e->key, key, sizeof e->key);
  const char *call = "";
  dnnl_status_t s = build(e, op, g, &call);
  if (s != dnnl_success) {
    if (e->conv) dnnl_primitive_destroy(e->conv);
    for (int i = 0; i < 3; i++)
      if (e->reorder[i]) dnnl_primitive_destroy(e->reorder[i]);
    memset(e->reorder, 0, sizeof e->reorder);
    e->conv = NULL;
    if (s != dnnl_unimplemented) {
      pthread_mutex_unlock(&cache_lock);
      free(e);
      *st = dnnl_error(core_ops[op].name, call, s, g);
      return NULL;
    }
  }
  entry *old = cache[slot];
  if (old) {
    old->in_table = false;
    if (old->refs == 0) entry_free(old);
  }
  cache[slot] = e;
  e->in_table = true;
  e->used = ++cache_tick;
  e->refs = 1;
  pthread_mutex_unlock(&cache_lock);
  return e;
}

static void release(entry *e) {
  pthread_mutex_lock(&cache_lock);
  if (--e->refs == 0 && !e->in_table) entry_free(e);
  pthread_mutex_unlock(&cache_lock);
}

/* Runs e on the operands ptr[3]: input reorders, the convolution, the output reorder. */
static loom_status run(const entry *e, core_op op, float *ptr[3], const cgeom *g) {
  const char *name = core_ops[op].name, *call = "";
  size_t off[3] = {0}, total = 0;
  for (int i = 0; i < 3; i++)
    if (e->reorder[i]) off[i] = total, total += round64(e->bytes[i]);
  size_t scratch_off = total;
  total += round64(e->scratch_bytes);
  char *buf = NULL;
  if (total && !(buf = core_alloc(loom_cpu(), total)))
    return core_set_error(LOOM_ERR_OOM, "%s: out of host memory for oneDNN's buffers (%zu bytes)", name, total);
  dnnl_stream_t stream = NULL;
  dnnl_memory_t user[3] = {0}, prim[3] = {0}, scratch[4] = {0};
  dnnl_status_t s;
#define TRY(f)                  \
  do {                          \
    call = #f;                  \
    if ((s = (f)) != dnnl_success) goto done; \
  } while (0)
  TRY(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
  for (int i = 0; i < 3; i++) {
    TRY(dnnl_memory_create(&user[i], &e->user[i], engine, ptr[i]));
    if (e->reorder[i]) TRY(dnnl_memory_create(&prim[i], &e->prim[i], engine, buf + off[i]));
  }
  for (int i = 0; i < 4; i++)
    if ((i == 3 || e->reorder[i]) && dnnl_memory_desc_get_size(&e->scratch[i]) > 0)
      TRY(dnnl_memory_create(&scratch[i], &e->scratch[i], engine, buf + scratch_off));
  int out = out_slot(op);
  for (int i = 0; i < 3; i++) {
    if (!e->reorder[i] || i == out) continue;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, user[i]}, {DNNL_ARG_TO, prim[i]}, {DNNL_ARG_SCRATCHPAD, scratch[i]}};
    TRY(dnnl_primitive_execute(e->reorder[i], stream, scratch[i] ? 3 : 2, args));
  }
  dnnl_memory_t m[3];
  for (int i = 0; i < 3; i++) m[i] = e->reorder[i] ? prim[i] : user[i];
  int ax = op == CORE_OP_conv2d_backward_input ? DNNL_ARG_DIFF_SRC : DNNL_ARG_SRC;
  int aw = op == CORE_OP_conv2d_backward_weight ? DNNL_ARG_DIFF_WEIGHTS : DNNL_ARG_WEIGHTS;
  int ay = op == CORE_OP_conv2d ? DNNL_ARG_DST : DNNL_ARG_DIFF_DST;
  dnnl_exec_arg_t args[4] = {{ax, m[SLOT_X]}, {aw, m[SLOT_W]}, {ay, m[SLOT_Y]}, {DNNL_ARG_SCRATCHPAD, scratch[3]}};
  TRY(dnnl_primitive_execute(e->conv, stream, scratch[3] ? 4 : 3, args));
  if (e->reorder[out]) {
    dnnl_exec_arg_t rargs[3] = {{DNNL_ARG_FROM, prim[out]}, {DNNL_ARG_TO, user[out]},
                                {DNNL_ARG_SCRATCHPAD, scratch[out]}};
    TRY(dnnl_primitive_execute(e->reorder[out], stream, scratch[out] ? 3 : 2, rargs));
  }
  TRY(dnnl_stream_wait(stream));
done:
#undef TRY
  for (int i = 0; i < 4; i++) {
    if (i < 3 && user[i]) dnnl_memory_destroy(user[i]);
    if (i < 3 && prim[i]) dnnl_memory_destroy(prim[i]);
    if (scratch[i]) dnnl_memory_destroy(scratch[i]);
  }
  if (stream) dnnl_stream_destroy(stream);
  core_free(loom_cpu(), buf);
  return s == dnnl_success ? LOOM_OK : dnnl_error(name, call, s, g);
}

bool cpu_onednn_conv(const core_kctx *k, loom_status *st) {
  int mode = mode_get();
  cgeom g;
  float *ptr[3];
  /* oneDNN splits its work for the team it asks for: a smaller one (OMP_DYNAMIC) would drop some. */
  if (mode == 0 || omp_get_dynamic() || !read_geom(k, &g, ptr) || (mode == 1 && !worth_trying(k->op, &g)))
    return false;
  pthread_once(&engine_once, engine_init);
  if (engine_status != dnnl_success) {
    if (engine_status == dnnl_unimplemented) return false;
    *st = dnnl_error(core_ops[k->op].name, "dnnl_engine_create", engine_status, &g);
    return true;
  }
  double macs = (double)g.N * g.Co * g.Ho * g.Wo * g.Cg * g.kh * g.kw;
  int nth = omp_in_parallel() || macs < CPU_GEMM_PARALLEL_MIN ? 1 : cpu_threads();
  if (nth > omp_get_thread_limit()) nth = omp_get_thread_limit();
  int64_t key[KEY_LEN] = {k->op, nth};
  memcpy(key + 2, &g, sizeof g);
  int saved = omp_get_max_threads();
  if (saved != nth) omp_set_num_threads(nth);
  bool handled = true;
  entry *e = acquire(key, k->op, &g, st);
  if (e) {
    if (e->conv && (mode == 2 || e->faster))
      *st = run(e, k->op, ptr, &g);
    else
      handled = false;
    release(e);
  }
  if (saved != nth) omp_set_num_threads(saved);
  return handled;
}

#endif
