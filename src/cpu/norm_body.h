/* CPU norm kernels for one dtype, included by src/cpu/norm.c with
 *   NT  the element type (float / double)    NS  the stats type (same here)
 *   NX(name) appends the dtype suffix; NV(name) the suffix of the lane
 *   reductions of src/cpu/vrow.h (f / d).
 * Statistics take two passes (mean, then squared deviations), so f32 input
 * loses nothing to cancellation. Sums run in NT lanes over blocks of NORM_BLOCK
 * elements (vectorised), the blocks' results added in double; elementwise
 * passes compute in NT. Layouts are documented in src/core/ops_norm.def. */
#ifndef NORM_BLOCK
#define NORM_BLOCK 1024
#endif

/* Sum of p[0..len), and of (p - m)^2: blocks of lane sums added in double. */
static double NX(sum_blocked)(const NT *p, int64_t len) {
  double s = 0;
  for (int64_t i = 0; i < len; i += NORM_BLOCK) s += NV(cpu_row_sum)(p + i, len - i < NORM_BLOCK ? len - i : NORM_BLOCK);
  return s;
}
static double NX(sq_dev_blocked)(const NT *p, int64_t len, NT m) {
  double s = 0;
  for (int64_t i = 0; i < len; i += NORM_BLOCK)
    s += NV(cpu_row_sq_dev)(p + i, len - i < NORM_BLOCK ? len - i : NORM_BLOCK, m);
  return s;
}

/* Mean and biased variance of nseg segments of len elements, seg_stride apart. */
static void NX(moments)(const NT *x, int64_t nseg, int64_t len, int64_t seg_stride, double *mean, double *var) {
  double s = 0;
  for (int64_t a = 0; a < nseg; a++) s += NX(sum_blocked)(x + a * seg_stride, len);
  double n = (double)(nseg * len), m = s / n, q = 0;
  for (int64_t a = 0; a < nseg; a++) q += NX(sq_dev_blocked)(x + a * seg_stride, len, (NT)m);
  *mean = m;
  *var = q / n;
}

/* q = p * scale + shift over n elements. */
CPU_CLONES static void NX(affine_run)(const NT *p, NT *q, int64_t n, NT scale, NT shift) {
  for (int64_t i = 0; i < n; i++) q[i] = p[i] * scale + shift;
}
/* Sums of g and of g * (p - m) over n elements (lanes). */
CPU_CLONES static void NX(grad_sums)(const NT *g, const NT *p, int64_t n, NT m, double *sg, double *sgx) {
  NT a[CPU_LANES] = {0}, c[CPU_LANES] = {0};
  int64_t i = 0;
  for (; i + CPU_LANES <= n; i += CPU_LANES)
    for (int j = 0; j < CPU_LANES; j++) a[j] += g[i + j], c[j] += g[i + j] * (p[i + j] - m);
  for (int j = 0; i + j < n; j++) a[j] += g[i + j], c[j] += g[i + j] * (p[i + j] - m);
  *sg += NV(cpu_lanes_sum)(a);
  *sgx += NV(cpu_lanes_sum)(c);
}
static void NX(grad_sums_blocked)(const NT *g, const NT *p, int64_t len, NT m, double *sg, double *sgx) {
  for (int64_t i = 0; i < len; i += NORM_BLOCK)
    NX(grad_sums)(g + i, p + i, len - i < NORM_BLOCK ? len - i : NORM_BLOCK, m, sg, sgx);
}

/* ---- batch norm: x [N, C, S], statistics per channel ---- */

static loom_status NX(batch_norm)(const core_kctx *k) {
  int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2];
  if (check_geom(k, N * C * S, C, C, C)) return loom_last_status();
  const NT *x = core_ptr(k->in[0]), *w = core_ptr(k->in[1]), *b = core_ptr(k->in[2]);
  NT *y = core_ptr(k->out[0]);
  NS *st = core_ptr(k->out[1]);
  double eps = k->a.f[0];
  _Pragma("omp parallel for num_threads(cpu_threads()) if (N * C * S > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t c = 0; c < C; c++) {
    double m, v;
    NX(moments)(x + c * S, N, S, C * S, &m, &v);
    double r = 1.0 / sqrt(v + eps), scale = r * (double)w[c], shift = (double)b[c] - m * scale;
    st[c] = (NS)m;
    st[C + c] = (NS)r;
    for (int64_t n = 0; n < N; n++) NX(affine_run)(x + (n * C + c) * S, y + (n * C + c) * S, S, (NT)scale, (NT)shift);
  }
  return LOOM_OK;
}

static loom_status NX(channel_affine)(const core_kctx *k) {
  int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2];
  if (check_affine(k, N, C, S)) return loom_last_status();
  const NT *x = core_ptr(k->in[0]), *sc = core_ptr(k->in[1]), *sh = core_ptr(k->in[2]);
  NT *y = core_ptr(k->out[0]);
  _Pragma("omp parallel for num_threads(cpu_threads()) if (N * C * S > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t r = 0; r < N * C; r++) NX(affine_run)(x + r * S, y + r * S, S, sc[r % C], sh[r % C]);
  return LOOM_OK;
}

/* dx = a (g - mdy - (p - m) r mdyx) over n elements. */
CPU_CLONES static void NX(bn_dx_run)(const NT *g, const NT *p, NT *q, int64_t n, NT a, NT mdy, NT m, NT rmdyx) {
  for (int64_t i = 0; i < n; i++) q[i] = a * (g[i] - mdy - (p[i] - m) * rmdyx);
}

static loom_status NX(batch_norm_backward)(const core_kctx *k) {
  int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2];
  if (check_bwd_geom(k, N * C * S, C, C)) return loom_last_status();
  const NT *dy = core_ptr(k->in[0]), *x = core_ptr(k->in[1]), *w = core_ptr(k->in[2]);
  const NS *st = core_ptr(k->in[3]);
  NT *dx = core_ptr(k->out[0]), *dwb = core_ptr(k->out[1]);
  double cnt = (double)(N * S);
  _Pragma("omp parallel for num_threads(cpu_threads()) if (N * C * S > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t c = 0; c < C; c++) {
    double m = st[c], r = st[C + c], sdy = 0, sdyx = 0;
    for (int64_t n = 0; n < N; n++)
      NX(grad_sums_blocked)(dy + (n * C + c) * S, x + (n * C + c) * S, S, (NT)m, &sdy, &sdyx);
    sdyx *= r; /* sum dy * xhat */
    dwb[c] = (NT)sdyx;
    dwb[C + c] = (NT)sdy;
    double a = (double)w[c] * r, mdy = sdy / cnt, mdyx = sdyx / cnt;
    for (int64_t n = 0; n < N; n++)
      NX(bn_dx_run)(dy + (n * C + c) * S, x + (n * C + c) * S, dx + (n * C + c) * S, S, (NT)a, (NT)mdy, (NT)m,
                    (NT)(r * mdyx));
  }
  return LOOM_OK;
}

/* ---- layer norm: x [M, K], statistics per row, affine per column ---- */

/* q = (p - mu) r w + b over a row of K. */
CPU_CLONES static void NX(ln_row)(const NT *p, NT *q, const NT *w, const NT *b, int64_t K, NT mu, NT r) {
  for (int64_t j = 0; j < K; j++) q[j] = (p[j] - mu) * r * w[j] + b[j];
}
/* One row of the layer-norm gradient: s1 = mean(g w), s2 = mean(g w xhat), then
 * dx = r (g w - s1 - xhat s2), xhat = (p - mu) r. */
CPU_CLONES static void NX(ln_bwd_row)(const NT *g, const NT *p, const NT *w, NT *q, int64_t K, NT mu, NT r) {
  enum { W = 32 / sizeof(NT) };
  NVT a = {0}, c = {0}, gv, pv, wv;
  int64_t j = 0;
  for (; j + W <= K; j += W) {
    memcpy(&gv, g + j, sizeof gv);
    memcpy(&pv, p + j, sizeof pv);
    memcpy(&wv, w + j, sizeof wv);
    NVT gh = gv * wv;
    a += gh;
    c += gh * (pv - mu);
  }
  double sa = 0, sc = 0;
  for (int l = 0; l < W; l++) sa += a[l], sc += c[l];
  for (; j < K; j++) sa += g[j] * w[j], sc += g[j] * w[j] * (p[j] - mu);
  NT s1 = (NT)(sa / (double)K), s2 = (NT)(sc * r / (double)K);
  for (j = 0; j < K; j++) q[j] = r * (g[j] * w[j] - s1 - (p[j] - mu) * r * s2);
}
/* Column sums of g (xhat) and g over rows [m0, m1) for columns [j0, j1) (at most
 * LN_COLS, so the partial sums stay in registers), added into sw / sb. */
#ifndef LN_COLS
#define LN_COLS 32
#endif
CPU_CLONES static void NX(ln_col_sums)(const NT *dy, const NT *x, const NS *st, int64_t M, int64_t K, int64_t m0,
                                       int64_t m1, int64_t j0, int64_t j1, double *sw, double *sb) {
  NT aw[LN_COLS] = {0}, ab[LN_COLS] = {0};
  for (int64_t m = m0; m < m1; m++) {
    NT mu = (NT)st[m], r = (NT)st[M + m];
    const NT *g = dy + m * K + j0, *p = x + m * K + j0;
    for (int64_t j = 0; j < j1 - j0; j++) {
      aw[j] += g[j] * ((p[j] - mu) * r);
      ab[j] += g[j];
    }
  }
  for (int64_t j = 0; j < j1 - j0; j++) sw[j] += aw[j], sb[j] += ab[j];
}

static loom_status NX(layer_norm)(const core_kctx *k) {
  int64_t M = k->a.i[0], K = k->a.i[1];
  if (check_geom(k, M * K, K, K, M)) return loom_last_status();
  const NT *x = core_ptr(k->in[0]), *w = core_ptr(k->in[1]), *b = core_ptr(k->in[2]);
  NT *y = core_ptr(k->out[0]);
  NS *st = core_ptr(k->out[1]);
  double eps = k->a.f[0];
  _Pragma("omp parallel for num_threads(cpu_threads()) if (M * K > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t m = 0; m < M; m++) {
    double mu, v;
    NX(moments)(x + m * K, 1, K, 0, &mu, &v);
    double r = 1.0 / sqrt(v + eps);
    st[m] = (NS)mu;
    st[M + m] = (NS)r;
    NX(ln_row)(x + m * K, y + m * K, w, b, K, (NT)mu, (NT)r);
  }
  return LOOM_OK;
}

static loom_status NX(layer_norm_backward)(const core_kctx *k) {
  int64_t M = k->a.i[0], K = k->a.i[1];
  if (check_bwd_geom(k, M * K, K, M)) return loom_last_status();
  const NT *dy = core_ptr(k->in[0]), *x = core_ptr(k->in[1]), *w = core_ptr(k->in[2]);
  const NS *st = core_ptr(k->in[3]);
  NT *dx = core_ptr(k->out[0]), *dwb = core_ptr(k->out[1]);
  _Pragma("omp parallel for num_threads(cpu_threads()) if (M * K > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t m = 0; m < M; m++) {
    NX(ln_bwd_row)(dy + m * K, x + m * K, w, dx + m * K, K, (NT)st[m], (NT)st[M + m]);
  }
  /* column sums, a block of columns per task so rows are read contiguously */
  int64_t nblk = (K + LN_COLS - 1) / LN_COLS;
  _Pragma("omp parallel for num_threads(cpu_threads()) if (M * K > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t bk = 0; bk < nblk; bk++) {
    int64_t j0 = bk * LN_COLS, j1 = j0 + LN_COLS < K ? j0 + LN_COLS : K;
    double sw[LN_COLS] = {0}, sb[LN_COLS] = {0};
    for (int64_t m = 0; m < M; m += 256) NX(ln_col_sums)(dy, x, st, M, K, m, m + 256 < M ? m + 256 : M, j0, j1, sw, sb);
    for (int64_t j = j0; j < j1; j++) {
      dwb[j] = (NT)sw[j - j0];
      dwb[K + j] = (NT)sb[j - j0];
    }
  }
  return LOOM_OK;
}

/* ---- group norm: x [N, C, S], statistics per (n, group), affine per channel ---- */

static loom_status NX(group_norm)(const core_kctx *k) {
  int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2], G = k->a.i[3];
  if (G <= 0 || C % G) return core_set_error(LOOM_ERR_INVALID, "group_norm: %lld groups do not divide %lld channels",
                                             (long long)G, (long long)C);
  if (check_geom(k, N * C * S, C, C, N * G)) return loom_last_status();
  const NT *x = core_ptr(k->in[0]), *w = core_ptr(k->in[1]), *b = core_ptr(k->in[2]);
  NT *y = core_ptr(k->out[0]);
  NS *st = core_ptr(k->out[1]);
  int64_t cg = C / G, L = cg * S;
  double eps = k->a.f[0];
  _Pragma("omp parallel for num_threads(cpu_threads()) if (N * C * S > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t ng = 0; ng < N * G; ng++) {
    double mu, v;
    NX(moments)(x + ng * L, 1, L, 0, &mu, &v);
    double r = 1.0 / sqrt(v + eps);
    st[ng] = (NS)mu;
    st[N * G + ng] = (NS)r;
    int64_t c0 = ng % G * cg;
    for (int64_t c = 0; c < cg; c++) {
      double scale = r * (double)w[c0 + c], shift = (double)b[c0 + c] - mu * scale;
      const NT *p = x + ng * L + c * S;
      NT *q = y + ng * L + c * S;
      for (int64_t s = 0; s < S; s++) q[s] = (NT)(p[s] * scale + shift);
    }
  }
  return LOOM_OK;
}

static loom_status NX(group_norm_backward)(const core_kctx *k) {
  int64_t N = k->a.i[0], C = k->a.i[1], S = k->a.i[2], G = k->a.i[3];
  if (G <= 0 || C % G) return core_set_error(LOOM_ERR_INVALID, "group_norm_backward: %lld groups do not divide %lld channels",
                                             (long long)G, (long long)C);
  if (check_bwd_geom(k, N * C * S, C, N * G)) return loom_last_status();
  const NT *dy = core_ptr(k->in[0]), *x = core_ptr(k->in[1]), *w = core_ptr(k->in[2]);
  const NS *st = core_ptr(k->in[3]);
  NT *dx = core_ptr(k->out[0]), *dwb = core_ptr(k->out[1]);
  int64_t cg = C / G, L = cg * S;
  _Pragma("omp parallel for num_threads(cpu_threads()) if (N * C * S > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t ng = 0; ng < N * G; ng++) {
    double mu = st[ng], r = st[N * G + ng], s1 = 0, s2 = 0;
    int64_t c0 = ng % G * cg;
    for (int64_t c = 0; c < cg; c++) {
      const NT *g = dy + ng * L + c * S, *p = x + ng * L + c * S;
      double wc = (double)w[c0 + c];
      for (int64_t s = 0; s < S; s++) {
        double gh = (double)g[s] * wc;
        s1 += gh;
        s2 += gh * ((double)p[s] - mu) * r;
      }
    }
    s1 /= (double)L;
    s2 /= (double)L;
    for (int64_t c = 0; c < cg; c++) {
      const NT *g = dy + ng * L + c * S, *p = x + ng * L + c * S;
      NT *q = dx + ng * L + c * S;
      double wc = (double)w[c0 + c];
      for (int64_t s = 0; s < S; s++) q[s] = (NT)(r * ((double)g[s] * wc - s1 - ((double)p[s] - mu) * r * s2));
    }
  }
  _Pragma("omp parallel for num_threads(cpu_threads()) if (N * C * S > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t c = 0; c < C; c++) {
    double sw = 0, sb = 0;
    for (int64_t n = 0; n < N; n++) {
      int64_t ng = n * G + c / cg;
      double mu = st[ng], r = st[N * G + ng];
      const NT *g = dy + (n * C + c) * S, *p = x + (n * C + c) * S;
      for (int64_t s = 0; s < S; s++) {
        sw += (double)g[s] * ((double)p[s] - mu) * r;
        sb += (double)g[s];
      }
    }
    dwb[c] = (NT)sw;
    dwb[C + c] = (NT)sb;
  }
  return LOOM_OK;
}
