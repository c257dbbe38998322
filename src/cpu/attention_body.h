/* Body of the CPU attention kernels, included by src/cpu/attention.c once per
 * float type: T (float / double) and SFX (f32 / f64) are defined there. The
 * layouts are documented in src/core/ops_attention.def. */
#define SDPA_CAT2(a, b) a##_##b
#define SDPA_CAT(a, b) SDPA_CAT2(a, b)
#define FN(name) SDPA_CAT(name, SFX)

static T FN(dot)(const T *a, const T *b, int64_t n) {
  T s = 0;
  for (int64_t e = 0; e < n; e++) s += a[e] * b[e];
  return s;
}

/* Score of query i against key j: scale * dot + mask, -inf when masked. */
static inline T FN(score)(const sdpa_geom *g, const T *qi, const T *kj, const T *mrow, int64_t i, int64_t j) {
  if (g->causal && j > i) return -INFINITY;
  T s = (T)g->scale * FN(dot)(qi, kj, g->E);
  return mrow ? s + mrow[j * g->mst[3]] : s;
}

/* Keys in blocks of SDPA_BLOCK with a running max and sum (online softmax),
 * so a row never needs more than one block of scores. */
static loom_status FN(sdpa_fwd)(const core_kctx *k) {
  sdpa_geom g;
  if (sdpa_check(k, &g, true)) return loom_last_status();
  const T *q = core_ptr(k->in[0]), *kk = core_ptr(k->in[1]), *v = core_ptr(k->in[2]);
  const T *mask = g.has_mask ? (const T *)core_ptr(k->in[3]) : NULL;
  T *out = core_ptr(k->out[0]), *lse = core_ptr(k->out[1]);
  int64_t heads = g.B * g.Hq, grp = g.Hq / g.Hkv;
  int oom = 0;
#pragma omp parallel num_threads(cpu_threads()) if (heads * g.L * g.S * (g.E + g.Ev) > CPU_PARALLEL_MIN)
  {
    T s[SDPA_BLOCK];
    T *acc = malloc(sizeof(T) * (size_t)(g.Ev > 0 ? g.Ev : 1));
    if (!acc) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < heads; bh++) {
      int64_t b = bh / g.Hq, h = bh % g.Hq, kvh = b * g.Hkv + h / grp;
      const T *kb = kk + kvh * g.S * g.E, *vb = v + kvh * g.S * g.Ev;
      for (int64_t i = 0; i < g.L && acc; i++) {
        const T *qi = q + (bh * g.L + i) * g.E;
        const T *mrow = mask ? mask + b * g.mst[0] + h * g.mst[1] + i * g.mst[2] : NULL;
        T m = -INFINITY, l = 0;
        for (int64_t e = 0; e < g.Ev; e++) acc[e] = 0;
        int64_t jend = g.causal && i + 1 < g.S ? i + 1 : g.S;
        for (int64_t j0 = 0; j0 < jend; j0 += SDPA_BLOCK) {
          int64_t n = jend - j0 < SDPA_BLOCK ? jend - j0 : SDPA_BLOCK;
          T bm = -INFINITY;
          for (int64_t jj = 0; jj < n; jj++) {
            s[jj] = FN(score)(&g, qi, kb + (j0 + jj) * g.E, mrow, i, j0 + jj);
            if (s[jj] > bm) bm = s[jj];
          }
          if (bm == -INFINITY) continue; /* the whole block masked */
          if (bm > m) {
            T corr = m == -INFINITY ? 0 : exp(m - bm);
            l *= corr;
            for (int64_t e = 0; e < g.Ev; e++) acc[e] *= corr;
            m = bm;
          }
          for (int64_t jj = 0; jj < n; jj++) {
            T p = exp(s[jj] - m);
            if (p == 0) continue;
            l += p;
            const T *vj = vb + (j0 + jj) * g.Ev;
            for (int64_t e = 0; e < g.Ev; e++) acc[e] += p * vj[e];
          }
        }
        T *oi = out + (bh * g.L + i) * g.Ev;
        for (int64_t e = 0; e < g.Ev; e++) oi[e] = l > 0 ? acc[e] / l : 0;
        lse[bh * g.L + i] = l > 0 ? m + log(l) : -INFINITY;
      }
    }
    free(acc);
  }
  if (oom) return core_set_error(LOOM_ERR_OOM, "sdpa: out of host memory for a row accumulator");
  return LOOM_OK;
}

/* One task per key/value head: it owns its dk, dv rows and the dq rows of the
 * query heads that share it, so no two threads write one element. */
static loom_status FN(sdpa_bwd)(const core_kctx *k) {
  sdpa_geom g;
  if (sdpa_check(k, &g, false)) return loom_last_status();
  int64_t W = g.E + g.Ev, grp = g.Hq / g.Hkv;
  const T *qdo = core_ptr(k->in[0]), *kv = core_ptr(k->in[1]), *st = core_ptr(k->in[2]);
  const T *mask = g.has_mask ? (const T *)core_ptr(k->in[3]) : NULL;
  T *dq = core_ptr(k->out[0]), *dkv = core_ptr(k->out[1]);
#pragma omp parallel for num_threads(cpu_threads()) schedule(dynamic, 1) \
    if (g.B * g.Hq * g.L * g.S * W > CPU_PARALLEL_MIN)
  for (int64_t bk = 0; bk < g.B * g.Hkv; bk++) {
    int64_t b = bk / g.Hkv, hk = bk % g.Hkv;
    const T *kvb = kv + bk * g.S * W;
    T *dkvb = dkv + bk * g.S * W;
    for (int64_t r = 0; r < g.S * W; r++) dkvb[r] = 0;
    for (int64_t h = hk * grp; h < (hk + 1) * grp; h++) {
      int64_t bh = b * g.Hq + h;
      for (int64_t i = 0; i < g.L; i++) {
        const T *qi = qdo + (bh * g.L + i) * W, *doi = qi + g.E;
        T lse = st[(bh * g.L + i) * 2], D = st[(bh * g.L + i) * 2 + 1];
        T *dqi = dq + (bh * g.L + i) * g.E;
        for (int64_t e = 0; e < g.E; e++) dqi[e] = 0;
        if (lse == -INFINITY) continue; /* every key masked: no gradient */
        const T *mrow = mask ? mask + b * g.mst[0] + h * g.mst[1] + i * g.mst[2] : NULL;
        int64_t jend = g.causal && i + 1 < g.S ? i + 1 : g.S;
        for (int64_t j = 0; j < jend; j++) {
          const T *kj = kvb + j * W, *vj = kj + g.E;
          T p = exp(FN(score)(&g, qi, kj, mrow, i, j) - lse);
          if (p == 0) continue;
          T ds = p * (FN(dot)(doi, vj, g.Ev) - D), dss = ds * (T)g.scale;
          T *dkj = dkvb + j * W, *dvj = dkj + g.E;
          for (int64_t e = 0; e < g.E; e++) {
            dqi[e] += dss * kj[e];
            dkj[e] += dss * qi[e];
          }
          for (int64_t e = 0; e < g.Ev; e++) dvj[e] += p * doi[e];
        }
      }
    }
  }
  return LOOM_OK;
}

#undef FN
#undef SDPA_CAT
#undef SDPA_CAT2
