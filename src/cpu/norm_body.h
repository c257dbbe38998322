/* CPU norm kernels for one dtype, included by src/cpu/norm.c with
 *   NT  the element type (float / double)    NS  the stats type (same here)
 *   NX(name) appends the dtype suffix.
 * Statistics and gradient sums are accumulated in double, two passes (mean,
 * then squared deviations), so f32 input loses nothing to cancellation.
 * Layouts are documented in src/core/ops_norm.def. */

/* Mean and biased variance of nseg segments of len elements, seg_stride apart. */
static void NX(moments)(const NT *x, int64_t nseg, int64_t len, int64_t seg_stride, double *mean, double *var) {
  double s = 0;
  for (int64_t a = 0; a < nseg; a++) {
    const NT *p = x + a * seg_stride;
    for (int64_t i = 0; i < len; i++) s += p[i];
  }
  double n = (double)(nseg * len), m = s / n, q = 0;
  for (int64_t a = 0; a < nseg; a++) {
    const NT *p = x + a * seg_stride;
    for (int64_t i = 0; i < len; i++) q += ((double)p[i] - m) * ((double)p[i] - m);
  }
  *mean = m;
  *var = q / n;
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
    for (int64_t n = 0; n < N; n++) {
      const NT *p = x + (n * C + c) * S;
      NT *q = y + (n * C + c) * S;
      for (int64_t s = 0; s < S; s++) q[s] = (NT)(p[s] * scale + shift);
    }
  }
  return LOOM_OK;
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
    for (int64_t n = 0; n < N; n++) {
      const NT *g = dy + (n * C + c) * S, *p = x + (n * C + c) * S;
      for (int64_t s = 0; s < S; s++) {
        sdy += g[s];
        sdyx += (double)g[s] * ((double)p[s] - m);
      }
    }
    sdyx *= r; /* sum dy * xhat */
    dwb[c] = (NT)sdyx;
    dwb[C + c] = (NT)sdy;
    double a = (double)w[c] * r, mdy = sdy / cnt, mdyx = sdyx / cnt;
    for (int64_t n = 0; n < N; n++) {
      const NT *g = dy + (n * C + c) * S, *p = x + (n * C + c) * S;
      NT *q = dx + (n * C + c) * S;
      for (int64_t s = 0; s < S; s++) q[s] = (NT)(a * ((double)g[s] - mdy - ((double)p[s] - m) * r * mdyx));
    }
  }
  return LOOM_OK;
}

/* ---- layer norm: x [M, K], statistics per row, affine per column ---- */

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
    const NT *p = x + m * K;
    NT *q = y + m * K;
    for (int64_t j = 0; j < K; j++) q[j] = (NT)(((double)p[j] - mu) * r * (double)w[j] + (double)b[j]);
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
    const NT *g = dy + m * K, *p = x + m * K;
    double mu = st[m], r = st[M + m], s1 = 0, s2 = 0; /* sums of dxhat and dxhat * xhat */
    for (int64_t j = 0; j < K; j++) {
      double gh = (double)g[j] * (double)w[j];
      s1 += gh;
      s2 += gh * ((double)p[j] - mu) * r;
    }
    s1 /= (double)K;
    s2 /= (double)K;
    NT *q = dx + m * K;
    for (int64_t j = 0; j < K; j++)
      q[j] = (NT)(r * ((double)g[j] * (double)w[j] - s1 - ((double)p[j] - mu) * r * s2));
  }
  /* column sums, a block of columns per task so rows are read contiguously */
  int64_t nblk = (K + 63) / 64;
  _Pragma("omp parallel for num_threads(cpu_threads()) if (M * K > CPU_PARALLEL_MIN) schedule(static)")
  for (int64_t bk = 0; bk < nblk; bk++) {
    int64_t j0 = bk * 64, j1 = j0 + 64 < K ? j0 + 64 : K;
    double sw[64] = {0}, sb[64] = {0};
    for (int64_t m = 0; m < M; m++) {
      double mu = st[m], r = st[M + m];
      const NT *g = dy + m * K, *p = x + m * K;
      for (int64_t j = j0; j < j1; j++) {
        sw[j - j0] += (double)g[j] * ((double)p[j] - mu) * r;
        sb[j - j0] += (double)g[j];
      }
    }
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
