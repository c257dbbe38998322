/* loom-info: prints Loom's build, library versions and the visible devices.
 *   loom-info */
#include <loom/loom.h>
#include <stdio.h>

int main(void) {
  loom_print_versions();
  int n = loom_cuda_device_count();
  printf("CUDA devices: %d\n", n);
  for (int i = 0; i < n; i++) {
    loom_device_info info;
    if (loom_cuda_device_info(i, &info) != LOOM_OK) {
      printf("  cuda:%d: %s\n", i, loom_last_error());
      continue;
    }
    printf("  cuda:%d: %s, compute capability %d.%d, %d SMs, %.1f GiB (%.1f GiB free)\n", i, info.name,
           info.major, info.minor, info.multiprocessors, info.total_memory / 1073741824.0,
           info.free_memory / 1073741824.0);
  }
  printf("CPU threads: %d\n", loom_num_threads());
  return 0;
}
