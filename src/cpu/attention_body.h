/* Body of the CPU attention kernels, included by src/cpu/attention.c once per
 * float type. Defined there: T (float / double), SFX (f32 / f64), SDPA_GEMM
 * (cblas_sgemm / cblas_dgemm), SDPA_EXP (cpu_expf / exp), SDPA_LANES and
 * SDPA_ROW_MAX (the lane sum and NaN-propagating row max of cpu/vrow.h).
 * The layouts are documented in src/core/ops_attention.def.
 *
 * Work unit: one (batch, query head) and a block of up to SDPA_BQ queries,
 * against blocks of up to SDPA_BK keys (only those a causal mask leaves).
 *   scores  S = scale Q K^T (GEMM) + mask, -inf where causal masks
 *   forward online softmax over the key blocks: per row a running max m and
 *           sum l, P = exp(S - m) in place, O = O * exp(m_old - m) + P V (GEMM);
 *           at the end O /= l and lse = m + log l. A row with l == 0 (every key
 *           masked) or l NaN (a NaN score) gives O = 0 and lse = -inf, as the
 *           CUDA kernel does.
 *   backward P = exp(S - lse) (0 on a row with lse = -inf), dP = dO V^T (GEMM),
 *           dS = scale P (dP - D), dQ = dS K, dK += dS^T Q, dV += P^T dO (GEMMs).
 * Each GEMM runs single-threaded inside the OpenMP region (OpenBLAS's OpenMP
 * build does so in an active parallel region). */
#define SDPA_CAT2(a, b) a##_##b
#define SDPA_CAT(a, b) SDPA_CAT2(a, b)
#define FN(name) SDPA_CAT(name, SFX)

/* s[j] += mask element j (element stride st: 1, 0 = broadcast, or any). */
CPU_CLONES static void FN(add_mask)(T *s, const T *m, int64_t st, int64_t n) {
  if (st == 1) {
    for (int64_t j = 0; j < n; j++) s[j] += m[j];
  } else if (st == 0) {
    T c = m[0];
    for (int64_t j = 0; j < n; j++) s[j] += c;
  } else {
    for (int64_t j = 0; j < n; j++) s[j] += m[j * st];
  }
}

/* s[j] = exp(s[j] - m) in place; returns their sum (lanes added pairwise). */
CPU_CLONES static T FN(exp_sum)(T *s, int64_t n, T m) {
  T l[CPU_LANES] = {0};
  int64_t i = 0;
  for (; i + CPU_LANES <= n; i += CPU_LANES)
    for (int j = 0; j < CPU_LANES; j++) {
      T e = SDPA_EXP(s[i + j] - m);
      s[i + j] = e;
      l[j] += e;
    }
  for (int j = 0; i + j < n; j++) {
    T e = SDPA_EXP(s[i + j] - m);
    s[i + j] = e;
    l[j] += e;
  }
  return SDPA_LANES(l);
}

/* One backward row: p[j] = exp(p[j] - lse), dp[j] = scale p[j] (dp[j] - D). */
CPU_CLONES static void FN(grad_row)(T *p, T *dp, int64_t n, T lse, T D, T scale) {
  for (int64_t j = 0; j < n; j++) {
    T e = SDPA_EXP(p[j] - lse);
    p[j] = e;
    dp[j] = e * (dp[j] - D) * scale;
  }
}

/* Scores of queries i0.. (nq rows of qb, row stride ldq) against keys j0..
 * (nk rows of kb, stride ldk) into s [nq, nk]; mbh: the mask of this (batch,
 * head) or NULL. */
static void FN(block_scores)(const sdpa_geom *g, const T *mbh, const T *qb, int64_t ldq, const T *kb, int64_t ldk,
                             int64_t i0, int64_t nq, int64_t j0, int64_t nk, T *s) {
  if (g->E > 0)
    SDPA_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)g->E, (T)g->scale, qb, (int)ldq, kb,
              (int)ldk, 0, s, (int)nk);
  else
    memset(s, 0, sizeof(T) * (size_t)(nq * nk));
  for (int64_t r = 0; r < nq; r++) {
    T *sr = s + r * nk;
    if (mbh) FN(add_mask)(sr, mbh + (i0 + r) * g->mst[2] + j0 * g->mst[3], g->mst[3], nk);
    if (g->causal)
      for (int64_t c = i0 + r + 1 - j0 > 0 ? i0 + r + 1 - j0 : 0; c < nk; c++) sr[c] = -INFINITY;
  }
}

/* The keys a block of queries i0 .. i0 + nq - 1 sees: 0 .. jend - 1. */
static inline int64_t FN(key_end)(const sdpa_geom *g, int64_t i0, int64_t nq) {
  return g->causal && i0 + nq < g->S ? i0 + nq : g->S;
}

/* Forward of one block of queries. s: [SDPA_BQ * SDPA_BK] scores, m, l: [SDPA_BQ]. */
static void FN(fwd_block)(const sdpa_geom *g, const T *q, const T *kk, const T *v, const T *mask, T *out, T *lse,
                          int64_t bh, int64_t i0, T *s, T *m, T *l) {
  int64_t b = bh / g->Hq, h = bh % g->Hq, kvh = b * g->Hkv + h / (g->Hq / g->Hkv);
  int64_t nq = g->L - i0 < SDPA_BQ ? g->L - i0 : SDPA_BQ, jend = FN(key_end)(g, i0, nq);
  const T *qb = q + (bh * g->L + i0) * g->E, *mbh = mask ? mask + b * g->mst[0] + h * g->mst[1] : NULL;
  T *ob = out + (bh * g->L + i0) * g->Ev;
  for (int64_t r = 0; r < nq; r++) m[r] = -INFINITY, l[r] = 0;
  for (int64_t j0 = 0; j0 < jend; j0 += SDPA_BK) {
    int64_t nk = jend - j0 < SDPA_BK ? jend - j0 : SDPA_BK;
    FN(block_scores)(g, mbh, qb, g->E, kk + (kvh * g->S + j0) * g->E, g->E, i0, nq, j0, nk, s);
    for (int64_t r = 0; r < nq; r++) {
      T *sr = s + r * nk, bm = SDPA_ROW_MAX(sr, nk), mo = m[r];
      T mn = bm > mo || bm != bm ? bm : mo; /* NaN sticks */
      if (mn == -INFINITY) { /* every key so far masked: P = 0, O stays 0 */
        memset(sr, 0, sizeof(T) * (size_t)nk);
        continue;
      }
      T corr = mo == -INFINITY ? 0 : SDPA_EXP(mo - mn);
      l[r] = l[r] * corr + FN(exp_sum)(sr, nk, mn);
      m[r] = mn;
      if (j0 > 0 && corr != 1)
        for (int64_t e = 0; e < g->Ev; e++) ob[r * g->Ev + e] *= corr;
    }
    if (g->Ev > 0)
      SDPA_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)g->Ev, (int)nk, 1, s, (int)nk,
                v + (kvh * g->S + j0) * g->Ev, (int)g->Ev, j0 > 0 ? 1 : 0, ob, (int)g->Ev);
  }
  for (int64_t r = 0; r < nq; r++) {
    T *orow = ob + r * g->Ev;
    if (l[r] > 0) {
      for (int64_t e = 0; e < g->Ev; e++) orow[e] /= l[r];
      lse[bh * g->L + i0 + r] = m[r] + (T)log(l[r]);
    } else {
      for (int64_t e = 0; e < g->Ev; e++) orow[e] = 0;
      lse[bh * g->L + i0 + r] = -INFINITY;
    }
  }
}

static loom_status FN(sdpa_fwd)(const core_kctx *k) {
  sdpa_geom g;
  if (sdpa_check(k, &g, true) || cpu_blas_room("scaled_dot_product_attention")) return loom_last_status();
  const T *q = core_ptr(k->in[0]), *kk = core_ptr(k->in[1]), *v = core_ptr(k->in[2]);
  const T *mask = g.has_mask ? (const T *)core_ptr(k->in[3]) : NULL;
  T *out = core_ptr(k->out[0]), *lse = core_ptr(k->out[1]);
  int64_t nqb = (g.L + SDPA_BQ - 1) / SDPA_BQ, tasks = g.B * g.Hq * nqb;
  if (tasks == 0) return LOOM_OK;
  int nth = cpu_threads();
  if (nth > tasks) nth = (int)tasks;
  nth = g.B * g.Hq * g.L * g.S * (g.E + g.Ev) > CPU_PARALLEL_MIN ? cpu_blas_threads(nth) : 1;
  int oom = 0, team = cpu_blas_begin(0); /* the block GEMMs run on their own thread, never OpenBLAS's team */
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    T *s = malloc(sizeof(T) * (SDPA_BQ * SDPA_BK + 2 * SDPA_BQ));
    if (!s) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++)
      if (s) FN(fwd_block)(&g, q, kk, v, mask, out, lse, t / nqb, t % nqb * SDPA_BQ, s, s + SDPA_BQ * SDPA_BK,
                           s + SDPA_BQ * SDPA_BK + SDPA_BQ);
    free(s);
  }
  cpu_blas_end(team);
  if (oom) return core_set_error(LOOM_ERR_OOM, "sdpa: out of host memory for a block of scores");
  return LOOM_OK;
}

/* Backward of one block of queries of head h against key/value head bk; dkb:
 * where this task adds its dk | dv rows ([S, E + Ev]). s, dp: [SDPA_BQ * SDPA_BK]. */
static void FN(bwd_block)(const sdpa_geom *g, const T *qdo, const T *kv, const T *st, const T *mask, T *dq, T *dkb,
                          int64_t bk, int64_t h, int64_t i0, T *s, T *dp) {
  int64_t W = g->E + g->Ev, b = bk / g->Hkv, bh = b * g->Hq + h;
  int64_t nq = g->L - i0 < SDPA_BQ ? g->L - i0 : SDPA_BQ, jend = FN(key_end)(g, i0, nq);
  const T *qb = qdo + (bh * g->L + i0) * W, *dob = qb + g->E, *kvb = kv + bk * g->S * W;
  const T *mbh = mask ? mask + b * g->mst[0] + h * g->mst[1] : NULL, *stb = st + (bh * g->L + i0) * 2;
  T *dqb = dq + (bh * g->L + i0) * g->E;
  if (jend == 0) memset(dqb, 0, sizeof(T) * (size_t)(nq * g->E));
  for (int64_t j0 = 0; j0 < jend; j0 += SDPA_BK) {
    int64_t nk = jend - j0 < SDPA_BK ? jend - j0 : SDPA_BK;
    const T *kb = kvb + j0 * W, *vb = kb + g->E;
    FN(block_scores)(g, mbh, qb, W, kb, W, i0, nq, j0, nk, s);
    if (g->Ev > 0)
      SDPA_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)g->Ev, 1, dob, (int)W, vb, (int)W, 0,
                dp, (int)nk);
    else
      memset(dp, 0, sizeof(T) * (size_t)(nq * nk));
    for (int64_t r = 0; r < nq; r++) {
      T l = stb[2 * r], D = stb[2 * r + 1];
      if (l == -INFINITY) { /* every key masked: no gradient */
        memset(s + r * nk, 0, sizeof(T) * (size_t)nk);
        memset(dp + r * nk, 0, sizeof(T) * (size_t)nk);
      } else {
        FN(grad_row)(s + r * nk, dp + r * nk, nk, l, D, (T)g->scale);
      }
    }
    if (g->E > 0) {
      SDPA_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)g->E, (int)nk, 1, dp, (int)nk, kb, (int)W,
                j0 > 0 ? 1 : 0, dqb, (int)g->E);
      SDPA_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)g->E, (int)nq, 1, dp, (int)nk, qb, (int)W, 1,
                dkb + j0 * W, (int)W);
    }
    if (g->Ev > 0)
      SDPA_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)g->Ev, (int)nq, 1, s, (int)nk, dob, (int)W, 1,
                dkb + j0 * W + g->E, (int)W);
  }
}

/* Tasks: each key/value head's query blocks (of all the query heads sharing
 * it) in ns consecutive parts. Part 0 adds into dkv itself, part p > 0 into
 * its own buffer, added to dkv afterwards in the order of p; every dq block
 * belongs to one task. ns > 1 only when there are fewer heads than 2 per
 * thread, so results depend on the thread count only then. */
static loom_status FN(sdpa_bwd)(const core_kctx *k) {
  sdpa_geom g;
  if (sdpa_check(k, &g, false) || cpu_blas_room("scaled_dot_product_attention_backward")) return loom_last_status();
  int64_t W = g.E + g.Ev, grp = g.Hq / g.Hkv, heads = g.B * g.Hkv, S = g.S;
  const T *qdo = core_ptr(k->in[0]), *kv = core_ptr(k->in[1]), *st = core_ptr(k->in[2]);
  const T *mask = g.has_mask ? (const T *)core_ptr(k->in[3]) : NULL;
  T *dq = core_ptr(k->out[0]), *dkv = core_ptr(k->out[1]);
  int64_t nqb = (g.L + SDPA_BQ - 1) / SDPA_BQ, units = grp * nqb;
  if (heads == 0) return LOOM_OK;
  int nth = g.B * g.Hq * g.L * S * W > CPU_PARALLEL_MIN ? cpu_blas_threads(cpu_threads()) : 1;
  int64_t ns = 1;
  if (nth > 1 && heads < 2 * (int64_t)nth) {
    ns = (2 * nth + heads - 1) / heads;
    if (ns > units) ns = units > 0 ? units : 1;
  }
  T *part = NULL;
  if (ns > 1 && !(part = malloc(sizeof(T) * (size_t)((ns - 1) * heads * S * W))))
    return core_set_error(LOOM_ERR_OOM, "sdpa_backward: out of host memory for %lld partial dk/dv sums",
                          (long long)(ns - 1));
  int64_t tasks = heads * ns;
  if (nth > tasks) nth = (int)tasks;
  int oom = 0, team = cpu_blas_begin(0); /* the block GEMMs run on their own thread, never OpenBLAS's team */
#pragma omp parallel num_threads(nth) if (nth > 1)
  {
    T *s = malloc(sizeof(T) * 2 * SDPA_BQ * SDPA_BK);
    if (!s) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) {
      if (!s) continue;
      int64_t bk = t / ns, p = t % ns, hk = bk % g.Hkv;
      T *dkb = p == 0 ? dkv + bk * S * W : part + ((p - 1) * heads + bk) * S * W;
      memset(dkb, 0, sizeof(T) * (size_t)(S * W));
      for (int64_t u = units * p / ns; u < units * (p + 1) / ns; u++)
        FN(bwd_block)(&g, qdo, kv, st, mask, dq, dkb, bk, hk * grp + u / nqb, u % nqb * SDPA_BQ, s,
                      s + SDPA_BQ * SDPA_BK);
    }
    free(s);
    if (part) {
#pragma omp for schedule(static)
      for (int64_t r = 0; r < heads * S * W; r++)
        for (int64_t p = 1; p < ns; p++) dkv[r] += part[(p - 1) * heads * S * W + r];
    }
  }
  cpu_blas_end(team);
  free(part);
  if (oom) return core_set_error(LOOM_ERR_OOM, "sdpa_backward: out of host memory for a block of scores");
  return LOOM_OK;
}

#undef FN
#undef SDPA_CAT
#undef SDPA_CAT2
