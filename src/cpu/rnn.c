/* CPU kernels of the rnn family: the fused LSTM cell pointwise op and its
 * backward (see src/core/ops_rnn.def). Arithmetic in the element type; f32
 * rows vectorise (AVX2 clones). */
#include "cpu/cpu.h"
#include "cpu/vexp.h"

/* f32 sigmoid and tanh without calls, so that the row loops vectorise: the
 * sigmoid on cpu_expf (1 ulp); tanh as x P(x^2) (its Taylor series to x^13,
 * 0.6 ulp) for |x| < 0.3, else sign(x) (1 - e) / (1 + e), e = exp(-2|x|)
 * (no cancellation: 1 - e is exact for e >= 1/2; about 3 ulp). NaN gives NaN. */
static inline float sig_f32(float x) { return 1 / (1 + cpu_expf(-x)); }
static inline float tanh_f32(float x) {
  float x2 = x * x, p = 21844.0f / 6081075;
  p = p * x2 - 1382.0f / 155925;
  p = p * x2 + 62.0f / 2835;
  p = p * x2 - 17.0f / 315;
  p = p * x2 + 2.0f / 15;
  p = p * x2 - 1.0f / 3;
  p = x + x * x2 * p;
  float e = cpu_expf(-2 * fabsf(x)), big = copysignf((1 - e) / (1 + e), x);
  return cpu_selectf(fabsf(x) < 0.3f, p, big);
}
static inline double sig_f64(double x) { return 1 / (1 + exp(-x)); }
static inline double tanh_f64(double x) { return tanh(x); }

/* One row n of each kernel (H units), a plain loop for the vectoriser. */
#define LSTM_ROWS(d)                                                                              \
  CPU_CLONES static void lstm_fw_row_##d(const CPU_T_##d *restrict a, const CPU_T_##d *restrict c, \
                                         CPU_T_##d *restrict h1, CPU_T_##d *restrict c1, int64_t H) { \
    for (int64_t j = 0; j < H; j++) {                                                             \
      CPU_T_##d i = sig_##d(a[j]), f = sig_##d(a[H + j]), g = tanh_##d(a[2 * H + j]);             \
      CPU_T_##d o = sig_##d(a[3 * H + j]);                                                        \
      CPU_T_##d cn = f * c[j] + i * g;                                                            \
      c1[j] = cn;                                                                                 \
      h1[j] = o * tanh_##d(cn);                                                                   \
    }                                                                                             \
  }                                                                                               \
  CPU_CLONES static void lstm_bw_row_##d(const CPU_T_##d *restrict a, const CPU_T_##d *restrict c, \
                                         const CPU_T_##d *restrict gh, const CPU_T_##d *restrict gc, \
                                         CPU_T_##d *restrict da, CPU_T_##d *restrict dc, int64_t H) { \
    for (int64_t j = 0; j < H; j++) {                                                             \
      CPU_T_##d i = sig_##d(a[j]), f = sig_##d(a[H + j]), g = tanh_##d(a[2 * H + j]);             \
      CPU_T_##d o = sig_##d(a[3 * H + j]);                                                        \
      CPU_T_##d cn = f * c[j] + i * g, tc = tanh_##d(cn);                                         \
      CPU_T_##d dcn = gc[j] + gh[j] * o * (1 - tc * tc);                                          \
      da[j] = dcn * g * i * (1 - i);                                                              \
      da[H + j] = dcn * c[j] * f * (1 - f);                                                       \
      da[2 * H + j] = dcn * i * (1 - g * g);                                                      \
      da[3 * H + j] = gh[j] * tc * o * (1 - o);                                                   \
      dc[j] = dcn * f;                                                                            \
    }                                                                                             \
  }

#define LSTM_KERNELS(d)                                                                           \
  LSTM_ROWS(d)                                                                                    \
  static loom_status lstm_fw_##d(const core_kctx *k) {                                            \
    loom_tensor *ts[3] = {k->in[0], k->in[1], k->out[0]};                                         \
    if (cpu_need_contiguous("lstm_pointwise", ts, 3)) return loom_last_status();                 \
    const int64_t N = k->a.i[0], H = k->a.i[1];                                                   \
    const CPU_T_##d *gates = core_ptr(k->in[0]), *c = core_ptr(k->in[1]);                        \
    CPU_T_##d *h1 = core_ptr(k->out[0]), *c1 = h1 + N * H;                                         \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (N * H > CPU_PARALLEL_MIN / 8)") \
    for (int64_t n = 0; n < N; n++)                                                               \
      lstm_fw_row_##d(gates + n * 4 * H, c + n * H, h1 + n * H, c1 + n * H, H);                   \
    return LOOM_OK;                                                                               \
  }                                                                                               \
  static loom_status lstm_bw_##d(const core_kctx *k) {                                            \
    loom_tensor *ts[5] = {k->in[0], k->in[1], k->in[2], k->out[0], k->out[1]};                    \
    if (cpu_need_contiguous("lstm_pointwise_backward", ts, 5)) return loom_last_status();        \
    const int64_t N = k->a.i[0], H = k->a.i[1];                                                   \
    const CPU_T_##d *gates = core_ptr(k->in[0]), *c = core_ptr(k->in[1]);                        \
    const CPU_T_##d *gh = core_ptr(k->in[2]), *gc = gh + N * H;                                   \
    CPU_T_##d *dgates = core_ptr(k->out[0]), *dc = core_ptr(k->out[1]);                           \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (N * H > CPU_PARALLEL_MIN / 8)") \
    for (int64_t n = 0; n < N; n++)                                                               \
      lstm_bw_row_##d(gates + n * 4 * H, c + n * H, gh + n * H, gc + n * H, dgates + n * 4 * H,     \
                      dc + n * H, H);                                                             \
    return LOOM_OK;                                                                               \
  }
LSTM_KERNELS(f32)
LSTM_KERNELS(f64)

void cpu_register_rnn(void) {
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise, LOOM_F32, lstm_fw_f32);
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise, LOOM_F64, lstm_fw_f64);
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise_backward, LOOM_F32, lstm_bw_f32);
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise_backward, LOOM_F64, lstm_bw_f64);
}
