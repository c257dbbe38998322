/* CPU kernels of the rnn family: the fused LSTM cell pointwise op and its
 * backward (see src/core/ops_rnn.def). Arithmetic in the element type. */
#include "cpu/cpu.h"

#define LSTM_KERNELS(d, EXP, TANH)                                                                \
  static inline CPU_T_##d sig_##d(CPU_T_##d x) { return 1 / (1 + EXP(-x)); }                     \
  static loom_status lstm_fw_##d(const core_kctx *k) {                                            \
    loom_tensor *ts[3] = {k->in[0], k->in[1], k->out[0]};                                         \
    if (cpu_need_contiguous("lstm_pointwise", ts, 3)) return loom_last_status();                 \
    const int64_t N = k->a.i[0], H = k->a.i[1];                                                   \
    const CPU_T_##d *gates = core_ptr(k->in[0]), *c = core_ptr(k->in[1]);                        \
    CPU_T_##d *h1 = core_ptr(k->out[0]), *c1 = h1 + N * H;                                         \
    _Pragma("omp parallel for num_threads(cpu_threads()) if (N * H > CPU_PARALLEL_MIN / 8)") \
    for (int64_t n = 0; n < N; n++) {                                                             \
      const CPU_T_##d *a = gates + n * 4 * H;                                                     \
      for (int64_t j = 0; j < H; j++) {                                                           \
        CPU_T_##d i = sig_##d(a[j]), f = sig_##d(a[H + j]), g = TANH(a[2 * H + j]);               \
        CPU_T_##d o = sig_##d(a[3 * H + j]);                                                      \
        CPU_T_##d cn = f * c[n * H + j] + i * g;                                                  \
        c1[n * H + j] = cn;                                                                       \
        h1[n * H + j] = o * TANH(cn);                                                             \
      }                                                                                           \
    }                                                                                             \
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
    for (int64_t n = 0; n < N; n++) {                                                             \
      const CPU_T_##d *a = gates + n * 4 * H;                                                     \
      CPU_T_##d *da = dgates + n * 4 * H;                                                         \
      for (int64_t j = 0; j < H; j++) {                                                           \
        const int64_t e = n * H + j;                                                              \
        CPU_T_##d i = sig_##d(a[j]), f = sig_##d(a[H + j]), g = TANH(a[2 * H + j]);               \
        CPU_T_##d o = sig_##d(a[3 * H + j]);                                                      \
        CPU_T_##d cn = f * c[e] + i * g, tc = TANH(cn);                                           \
        CPU_T_##d dcn = gc[e] + gh[e] * o * (1 - tc * tc);                                        \
        da[j] = dcn * g * i * (1 - i);                                                            \
        da[H + j] = dcn * c[e] * f * (1 - f);                                                     \
        da[2 * H + j] = dcn * i * (1 - g * g);                                                    \
        da[3 * H + j] = gh[e] * tc * o * (1 - o);                                                 \
        dc[e] = dcn * f;                                                                          \
      }                                                                                           \
    }                                                                                             \
    return LOOM_OK;                                                                               \
  }
LSTM_KERNELS(f32, expf, tanhf)
LSTM_KERNELS(f64, exp, tanh)

void cpu_register_rnn(void) {
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise, LOOM_F32, lstm_fw_f32);
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise, LOOM_F64, lstm_fw_f64);
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise_backward, LOOM_F32, lstm_bw_f32);
  core_register(LOOM_CPU, CORE_OP_lstm_pointwise_backward, LOOM_F64, lstm_bw_f64);
}
