// CUDA kernels of the rnn family: the fused LSTM cell pointwise op and its
// backward (see src/core/ops_rnn.def). One thread per (row, hidden unit);
// arithmetic in f32 (f64 for f64), storage in the tensor's dtype.
#include "cuda/kernels.cuh"

namespace {

template <class A> __device__ __forceinline__ A sig(A x) { return A(1) / (A(1) + m_exp(-x)); }

template <loom_dtype DT, class A>
__global__ void lstm_fw(const typename dt<DT>::S *gates, const typename dt<DT>::S *c, typename dt<DT>::S *out,
                        int64_t N, int64_t H) {
  using S = typename dt<DT>::S;
  const int64_t step = (int64_t)gridDim.x * blockDim.x, total = N * H;
  S *h1 = out, *c1 = out + total;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t n = e / H, j = e - n * H;
    const S *a = gates + n * 4 * H;
    A i = sig((A)dt<DT>::load(a[j])), f = sig((A)dt<DT>::load(a[H + j]));
    A g = m_tanh((A)dt<DT>::load(a[2 * H + j])), o = sig((A)dt<DT>::load(a[3 * H + j]));
    A cn = f * (A)dt<DT>::load(c[e]) + i * g;
    c1[e] = dt<DT>::store((typename dt<DT>::C)cn);
    h1[e] = dt<DT>::store((typename dt<DT>::C)(o * m_tanh(cn)));
  }
}

template <loom_dtype DT, class A>
__global__ void lstm_bw(const typename dt<DT>::S *gates, const typename dt<DT>::S *c, const typename dt<DT>::S *grad,
                        typename dt<DT>::S *dgates, typename dt<DT>::S *dc, int64_t N, int64_t H) {
  using S = typename dt<DT>::S;
  using C = typename dt<DT>::C;
  const int64_t step = (int64_t)gridDim.x * blockDim.x, total = N * H;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t n = e / H, j = e - n * H;
    const S *a = gates + n * 4 * H;
    S *da = dgates + n * 4 * H;
    A i = sig((A)dt<DT>::load(a[j])), f = sig((A)dt<DT>::load(a[H + j]));
    A g = m_tanh((A)dt<DT>::load(a[2 * H + j])), o = sig((A)dt<DT>::load(a[3 * H + j]));
    A cv = (A)dt<DT>::load(c[e]), cn = f * cv + i * g, tc = m_tanh(cn);
    A gh = (A)dt<DT>::load(grad[e]), gc = (A)dt<DT>::load(grad[total + e]);
    A dcn = gc + gh * o * (A(1) - tc * tc);
    da[j] = dt<DT>::store((C)(dcn * g * i * (A(1) - i)));
    da[H + j] = dt<DT>::store((C)(dcn * cv * f * (A(1) - f)));
    da[2 * H + j] = dt<DT>::store((C)(dcn * i * (A(1) - g * g)));
    da[3 * H + j] = dt<DT>::store((C)(gh * tc * o * (A(1) - o)));
    dc[e] = dt<DT>::store((C)(dcn * f));
  }
}

// Operands in order in..., out...: each contiguous, of dtype DT, holding
// mult[t] * N * H elements.
bool check(const core_kctx *k, const char *op, loom_dtype DT, const int *mult) {
  const int64_t N = k->a.i[0], H = k->a.i[1];
  for (int t = 0; t < k->n_in + k->n_out; t++) {
    const loom_tensor *x = t < k->n_in ? k->in[t] : k->out[t - k->n_in];
    const int64_t want = mult[t] * N * H;
    if (!core_is_contiguous(x) || x->dtype != DT || core_numel(x) != want) {
      core_set_error(LOOM_ERR_INVALID, "%s: operand %d (%s %s) is not a contiguous %s tensor of %lld elements", op, t,
                     loom_dtype_name(x->dtype), loom_shape_str(x->shape), loom_dtype_name(DT), (long long)want);
      return false;
    }
  }
  return true;
}

const int kFwSizes[] = {4, 1, 2};        // gates, c -> (h', c')
const int kBwSizes[] = {4, 1, 2, 4, 1};  // gates, c, grad -> d gates, d c

template <loom_dtype DT> loom_status lstm_fw_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  if (!check(k, "lstm_pointwise", DT, kFwSizes)) return loom_last_status();
  const int64_t N = k->a.i[0], H = k->a.i[1];
  if (N * H == 0) return LOOM_OK;
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;  // tensors may live on another GPU
  lstm_fw<DT, A><<<grid_for(N * H, kernel_device(k)), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(k->in[0])), static_cast<const S *>(core_ptr(k->in[1])),
      static_cast<S *>(core_ptr(k->out[0])), N, H);
  return CUDA_CHECK_LAUNCH("lstm_pointwise");
}

template <loom_dtype DT> loom_status lstm_bw_kernel(const core_kctx *k) {
  using S = typename dt<DT>::S;
  using A = typename std::conditional<DT == LOOM_F64, double, float>::type;
  if (!check(k, "lstm_pointwise_backward", DT, kBwSizes)) return loom_last_status();
  const int64_t N = k->a.i[0], H = k->a.i[1];
  if (N * H == 0) return LOOM_OK;
  if (loom_status st = cuda_set_device(kernel_device(k))) return st;  // tensors may live on another GPU
  lstm_bw<DT, A><<<grid_for(N * H, kernel_device(k)), kThreads, 0, (cudaStream_t)k->stream>>>(
      static_cast<const S *>(core_ptr(k->in[0])), static_cast<const S *>(core_ptr(k->in[1])),
      static_cast<const S *>(core_ptr(k->in[2])), static_cast<S *>(core_ptr(k->out[0])),
      static_cast<S *>(core_ptr(k->out[1])), N, H);
  return CUDA_CHECK_LAUNCH("lstm_pointwise_backward");
}

}  // namespace

#define LOOM_RNN_REG(DT)                                                              \
  core_register(LOOM_CUDA, CORE_OP_lstm_pointwise, DT, lstm_fw_kernel<DT>);          \
  core_register(LOOM_CUDA, CORE_OP_lstm_pointwise_backward, DT, lstm_bw_kernel<DT>);

void cuda_register_rnn(void) {
  LOOM_RNN_REG(LOOM_F32)
  LOOM_RNN_REG(LOOM_F64)
  LOOM_RNN_REG(LOOM_F16)
  LOOM_RNN_REG(LOOM_BF16)
}
