/* Room in the address space for OpenBLAS's per-thread buffers.
 *
 * Every thread that calls OpenBLAS gets a GEMM buffer of about 128 MiB of
 * address space (plus a malloc arena for a new thread), and when that
 * allocation fails OpenBLAS retries for ever: under a small `ulimit -v` a
 * parallel region of BLAS calls hung inside malloc -> mmap. So such regions
 * take only the threads the limit leaves room for (the caller's own thread
 * always: it holds its buffer from earlier calls or gets it first), with a
 * warning on stderr the first time; and a thread's first BLAS call checks
 * that its own buffer fits (cpu_blas_room), failing with Loom's error. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdbool.h>
#include <omp.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cpu/cpu.h"

/* Address space a new thread's BLAS buffer (OpenBLAS's BUFFER_SIZE, 128 MiB
 * on x86-64) and malloc arena (64 MiB) take, with margin; and the buffer
 * alone with a little margin, for a thread that has its arena already. */
#define BLAS_THREAD_BYTES ((size_t)256 << 20)
#define BLAS_BUFFER_BYTES ((size_t)136 << 20)

/* The process's virtual size now (0 when unknown). */
static size_t vm_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  long page = sysconf(_SC_PAGESIZE);
  return page > 0 ? (size_t)pages * (size_t)page : 0;
}

int cpu_blas_threads(int want) {
  struct rlimit r;
  if (want <= 1 || getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return want;
  size_t vm = vm_bytes(), limit = (size_t)r.rlim_cur;
  size_t room = limit > vm ? (limit - vm) / BLAS_THREAD_BYTES : 0;
  int fit = room + 1 < (size_t)want ? (int)room + 1 : want;
  static atomic_bool warned;
  if (fit < want && !atomic_exchange(&warned, true))
    fprintf(stderr, "loom: warning: the address-space limit (ulimit -v, %.0f MiB, %.0f MiB in use) leaves room for "
            "the BLAS buffers of %d of %d threads: convolutions on the CPU run on %d\n",
            (double)limit / (1 << 20), (double)vm / (1 << 20), fit, want, fit);
  return fit;
}

loom_status cpu_blas_room(const char *op) {
  static _Thread_local bool ready;
  if (ready) return LOOM_OK;
  struct rlimit r;
  if (getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY) {
    size_t vm = vm_bytes(), limit = (size_t)r.rlim_cur;
    if (vm && (limit < vm || limit - vm < BLAS_BUFFER_BYTES))
      return core_set_error(LOOM_ERR_OOM,
                            "%s: out of memory: the address-space limit %.0f MiB (ulimit -v), %.0f MiB in use, leaves "
                            "no room for OpenBLAS's %.0f MiB buffer for this thread",
                            op, (double)limit / (1 << 20), (double)vm / (1 << 20),
                            (double)BLAS_BUFFER_BYTES / (1 << 20));
  }
  ready = true;
  return LOOM_OK;
}

int cpu_blas_begin(double macs) {
  int saved = omp_get_max_threads(), want = macs < CPU_GEMM_PARALLEL_MIN ? 1 : cpu_threads();
  if (want != saved) omp_set_num_threads(want);
  return saved;
}

void cpu_blas_end(int saved) {
  if (omp_get_max_threads() != saved) omp_set_num_threads(saved);
}
