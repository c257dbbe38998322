// sparse_mm on CUDA through cuSPARSE: the COO entries are sorted by row on the
// device (cub radix sort of (row, entry) pairs: stable, no float atomics),
// gathered into CSR (row pointer by binary search over the sorted rows,
// 64-bit indices) and multiplied with cusparseSpMM (CSR_ALG2: row-major B and
// C, deterministic). The core range-checks the indices; an entry outside the
// matrix is still never used to touch memory (its row sorts past the end and
// its column is clamped). One cuSPARSE handle per thread and device.
#include <limits.h>
#include <stdint.h>

#include <cub/cub.cuh>
#include <cusparse.h>

#include "cuda/kernels.cuh"

namespace {

thread_local cusparseHandle_t handles[CUDA_MAX_DEVICES];

loom_status sparse_check(cusparseStatus_t s, const char *call, int line) {
  if (s == CUSPARSE_STATUS_SUCCESS) return LOOM_OK;
  return core_set_error(LOOM_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, line, call, cusparseGetErrorString(s));
}
#define CUSPARSE_CHECK(call) sparse_check((call), #call, __LINE__)

loom_status get_handle(int dev, cusparseHandle_t *out) {
  if (!handles[dev]) {
    cusparseHandle_t h = nullptr;
    loom_status st = CUSPARSE_CHECK(cusparseCreate(&h));
    if (st) return st;
    handles[dev] = h;
  }
  *out = handles[dev];
  return LOOM_OK;
}

// keys[e] = row (rows for an index outside [0, rows): sorted last, never used), perm[e] = e.
__global__ void prepare_keys(uint64_t *keys, int64_t *perm, const int64_t *row, int64_t nnz, int64_t rows) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < nnz; e += step) {
    const int64_t r = row[e];
    keys[e] = (uint64_t)(r < 0 || r >= rows ? rows : r);
    perm[e] = e;
  }
}

// CSR columns and values in row order.
template <class T>
__global__ void gather_entries(int64_t *col_out, T *val_out, const int64_t *perm, const int64_t *col, const T *val,
                               int64_t nnz, int64_t cols) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < nnz; e += step) {
    const int64_t p = perm[e], c = col[p];
    col_out[e] = c < 0 ? 0 : c >= cols ? cols - 1 : c;
    val_out[e] = val[p];
  }
}

// rowptr[r] = first sorted position whose row is >= r, for r in [0, rows].
__global__ void row_pointers(int64_t *rowptr, const uint64_t *sorted, int64_t nnz, int64_t rows) {
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r <= rows; r += step) {
    int64_t lo = 0, hi = nnz;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (sorted[mid] < (uint64_t)r) lo = mid + 1;
      else hi = mid;
    }
    rowptr[r] = lo;
  }
}

int bits_for(int64_t v) {
  int b = 1;
  while (b < 63 && (v >> b) != 0) b++;
  return b;
}

// Device blocks from the pool, released in order at the end of a call (stream-ordered).
struct Blocks {
  int dev;
  void *p[8] = {nullptr};
  int n = 0;
  explicit Blocks(int d) : dev(d) {}
  ~Blocks() {
    for (int i = 0; i < n; i++) cuda_free(dev, p[i]);
  }
  void *get(size_t bytes) {
    void *b = cuda_alloc(dev, bytes ? bytes : 1);
    if (b) p[n++] = b;
    return b;
  }
};

template <loom_dtype DT> loom_status sparse_mm_kernel(const core_kctx *k) {
  using T = typename dt<DT>::S;
  const int64_t rows = k->a.i[0], cols = k->a.i[1], K = k->a.i[2], nnz = k->a.i[3];
  const loom_tensor *val = k->in[0], *idx = k->in[1], *dense = k->in[2], *out = k->out[0];
  if (idx->dtype != LOOM_I64 || core_numel(idx) != 2 * nnz || core_numel(val) != nnz ||
      core_numel(dense) != cols * K || core_numel(out) != rows * K)
    return core_set_error(LOOM_ERR_INVALID, "sparse_mm: operands %s, %s, %s, %s do not fit rows, cols, K, nnz = %lld, %lld, %lld, %lld",
                          loom_shape_str(val->shape), loom_shape_str(idx->shape), loom_shape_str(dense->shape),
                          loom_shape_str(out->shape), (long long)rows, (long long)cols, (long long)K, (long long)nnz);
  if (val->dtype != dense->dtype || val->dtype != out->dtype)
    return core_set_error(LOOM_ERR_INVALID, "sparse_mm: values %s, dense %s and output %s must share a dtype",
                          loom_dtype_name(val->dtype), loom_dtype_name(dense->dtype), loom_dtype_name(out->dtype));
  if (!core_is_contiguous(val) || !core_is_contiguous(idx) || !core_is_contiguous(dense) || !core_is_contiguous(out))
    return core_set_error(LOOM_ERR_INVALID, "sparse_mm: operands must be contiguous");
  if (nnz > INT_MAX)
    return core_set_error(LOOM_ERR_UNSUPPORTED, "sparse_mm: %lld entries exceed what the CUDA sort takes (%d)",
                          (long long)nnz, INT_MAX);
  const int dev = kernel_device(k);
  loom_status st = cuda_set_device(dev);
  if (st) return st;
  cudaStream_t stream = (cudaStream_t)k->stream;
  if (nnz == 0 || cols == 0 || K == 0)
    return CUDA_CHECK(cudaMemsetAsync(core_ptr(out), 0, (size_t)(rows * K) * sizeof(T), stream));

  Blocks mem(dev);
  const int64_t *row = static_cast<const int64_t *>(core_ptr(idx)), *col = row + nnz;
  uint64_t *keys = static_cast<uint64_t *>(mem.get((size_t)nnz * 8));
  int64_t *perm = static_cast<int64_t *>(mem.get((size_t)nnz * 8));
  uint64_t *sorted = static_cast<uint64_t *>(mem.get((size_t)nnz * 8));
  int64_t *order = static_cast<int64_t *>(mem.get((size_t)nnz * 8));
  int64_t *csr_col = static_cast<int64_t *>(mem.get((size_t)nnz * 8));
  T *csr_val = static_cast<T *>(mem.get((size_t)nnz * sizeof(T)));
  int64_t *rowptr = static_cast<int64_t *>(mem.get((size_t)(rows + 1) * 8));
  if (mem.n != 7) return loom_last_status();

  const unsigned g = grid_for(nnz, dev);
  prepare_keys<<<g, kThreads, 0, stream>>>(keys, perm, row, nnz, rows);
  if ((st = CUDA_CHECK_LAUNCH("sparse_mm"))) return st;
  size_t temp_bytes = 0;
  const int end_bit = bits_for(rows);
  if ((st = CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, sorted, perm, order, (int)nnz, 0,
                                                       end_bit, stream))))
    return st;
  void *temp = mem.get(temp_bytes);
  if (!temp) return loom_last_status();
  if ((st = CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, keys, sorted, perm, order, (int)nnz, 0,
                                                       end_bit, stream))))
    return st;
  gather_entries<T><<<g, kThreads, 0, stream>>>(csr_col, csr_val, order, col, static_cast<const T *>(core_ptr(val)),
                                                nnz, cols);
  if ((st = CUDA_CHECK_LAUNCH("sparse_mm"))) return st;
  row_pointers<<<grid_for(rows + 1, dev), kThreads, 0, stream>>>(rowptr, sorted, nnz, rows);
  if ((st = CUDA_CHECK_LAUNCH("sparse_mm"))) return st;

  cusparseHandle_t h;
  if ((st = get_handle(dev, &h)) || (st = CUSPARSE_CHECK(cusparseSetStream(h, stream)))) return st;
  const cudaDataType type = DT == LOOM_F64 ? CUDA_R_64F : CUDA_R_32F;
  cusparseSpMatDescr_t a = nullptr;
  cusparseDnMatDescr_t b = nullptr, c = nullptr;
  st = CUSPARSE_CHECK(cusparseCreateCsr(&a, rows, cols, nnz, rowptr, csr_col, csr_val, CUSPARSE_INDEX_64I,
                                        CUSPARSE_INDEX_64I, CUSPARSE_INDEX_BASE_ZERO, type));
  if (!st) st = CUSPARSE_CHECK(cusparseCreateDnMat(&b, cols, K, K, core_ptr(dense), type, CUSPARSE_ORDER_ROW));
  if (!st) st = CUSPARSE_CHECK(cusparseCreateDnMat(&c, rows, K, K, core_ptr(out), type, CUSPARSE_ORDER_ROW));
  const T one = 1, zero = 0;
  size_t work_bytes = 0;
  if (!st)
    st = CUSPARSE_CHECK(cusparseSpMM_bufferSize(h, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                                &one, a, b, &zero, c, type, CUSPARSE_SPMM_CSR_ALG2, &work_bytes));
  void *work = st ? nullptr : mem.get(work_bytes);
  if (!st && !work) st = loom_last_status();
  if (!st)
    st = CUSPARSE_CHECK(cusparseSpMM(h, CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE, &one, a,
                                     b, &zero, c, type, CUSPARSE_SPMM_CSR_ALG2, work));
  if (a) cusparseDestroySpMat(a);
  if (b) cusparseDestroyDnMat(b);
  if (c) cusparseDestroyDnMat(c);
  return st;
}

}  // namespace

void cuda_register_sparse(void) {
  core_register(LOOM_CUDA, CORE_OP_sparse_mm, LOOM_F32, sparse_mm_kernel<LOOM_F32>);
  core_register(LOOM_CUDA, CORE_OP_sparse_mm, LOOM_F64, sparse_mm_kernel<LOOM_F64>);
}
