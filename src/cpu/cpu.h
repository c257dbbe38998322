/* Shared pieces of the CPU backend: per-dtype C types, the family registration
 * functions called by cpu_register_kernels, and small element helpers. */
#ifndef LOOM_CPU_CPU_H
#define LOOM_CPU_CPU_H

#include <math.h>
#include <stdint.h>

#include "core/kernel.h"

/* C type and dtype of each kernel-name suffix (`boolean` is one byte holding 0 / 1,
 * f16 / bf16 are raw 16-bit patterns). */
#define CPU_T_f32 float
#define CPU_T_f64 double
#define CPU_T_f16 uint16_t
#define CPU_T_bf16 uint16_t
#define CPU_T_i32 int32_t
#define CPU_T_i64 int64_t
#define CPU_T_u8 uint8_t
#define CPU_T_boolean uint8_t
#define CPU_DT_f32 LOOM_F32
#define CPU_DT_f64 LOOM_F64
#define CPU_DT_f16 LOOM_F16
#define CPU_DT_bf16 LOOM_BF16
#define CPU_DT_i32 LOOM_I32
#define CPU_DT_i64 LOOM_I64
#define CPU_DT_u8 LOOM_U8
#define CPU_DT_boolean LOOM_BOOL

/* Loops of more than this many elements run on several OpenMP threads. */
#define CPU_PARALLEL_MIN 32768

/* Put before a hot loop function: GCC compiles it twice, for x86-64-v3 (AVX2,
 * FMA) and for the baseline, and the loader picks the one the CPU runs (ifunc).
 * Worth it for loops that vectorise and compute (cpu_expf: 3x with AVX2 + FMA). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CPU_CLONES
#endif

static inline int cpu_threads(void) {
  int n = core_num_threads();
  return n > 0 ? n : 1;
}
/* The threads (<= want, >= 1) a parallel region of BLAS calls may use: those
 * whose OpenBLAS buffers fit the address-space limit (src/cpu/blas_room.c). */
int cpu_blas_threads(int want);
/* Multiply-adds below which one GEMM or convolution runs on the calling
 * thread alone: waking a sleeping worker (OMP_WAIT_POLICY=passive) costs about
 * what it saves (a 2.2M-MAC sgemm took 50 us on one thread and on two, a 9.4M
 * one 195 and 143 us; 2-core AVX-512 VM). Batch-1 inference stays on one thread. */
#define CPU_GEMM_PARALLEL_MIN 4e6
/* Sizes the team of the OpenBLAS calls that follow (OpenBLAS's OpenMP build
 * reads omp_get_max_threads() at each call): 1 for work of fewer than
 * CPU_GEMM_PARALLEL_MIN multiply-adds, else cpu_threads() (so OpenBLAS follows
 * loom_set_num_threads too). Returns the previous setting for cpu_blas_end. */
int cpu_blas_begin(double macs);
void cpu_blas_end(int saved);
/* Fails with LOOM_ERR_OOM, naming op, when the calling thread has made no BLAS
 * call yet and the address-space limit leaves no room for its buffer
 * (OpenBLAS would retry that allocation for ever). */
loom_status cpu_blas_room(const char *op);

/* Stores element i of a contiguous buffer of dtype dt, converting from double / int64. */
void cpu_put_f64(void *base, loom_dtype dt, int64_t i, double v);
void cpu_put_i64(void *base, loom_dtype dt, int64_t i, int64_t v);

/* Fails unless every tensor in ts[0..n) is contiguous. */
loom_status cpu_need_contiguous(const char *op, loom_tensor *const *ts, int n);

void cpu_register_copy(void);
void cpu_register_random(void);
void cpu_register_unary(void);
void cpu_register_binary(void);
void cpu_register_reduce(void);
void cpu_register_index(void);
void cpu_register_matmul(void);
void cpu_register_conv(void);
void cpu_register_pool(void);
void cpu_register_norm(void);
void cpu_register_act(void);
void cpu_register_rnn(void);
void cpu_register_attention(void);
void cpu_register_loss(void);
void cpu_register_optim(void);
void cpu_register_sparse(void);

#endif
