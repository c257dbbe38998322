/* What loom-bench measures besides time: the device's name, its peak for MFU,
 * and an energy counter. Included by tools/loom-bench.c only. */
#ifndef LOOM_TOOLS_BENCH_METRICS_H
#define LOOM_TOOLS_BENCH_METRICS_H

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "loom/loom.h"
#include "bench_time.h"
#include "gpu_peaks.h"

/* The q-quantile (0..1) of n sorted values, nearest rank. */
static double quantile(const double *v, long n, double q) {
  long i = (long)ceil(q * (double)n) - 1;
  return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* The CPU's model name from /proc/cpuinfo, or the GPU's name. */
static void device_name(loom_device dev, char *out, size_t size) {
  snprintf(out, size, "%s", dev.type == LOOM_CUDA ? "unknown GPU" : "unknown CPU");
  if (dev.type == LOOM_CUDA) {
    loom_device_info di;
    if (loom_cuda_device_info(dev.index, &di) == 0) snprintf(out, size, "%s", di.name);
    return;
  }
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  while (f && fgets(line, sizeof line, f)) {
    char *colon = strchr(line, ':');
    if (strncmp(line, "model name", 10) || !colon) continue;
    colon += strspn(colon + 1, " \t") + 1;
    colon[strcspn(colon, "\n")] = 0;
    snprintf(out, size, "%s", colon);
    break;
  }
  if (f) fclose(f);
}

static const char *dtype_flag(loom_dtype dt, bool tf32) {
  return tf32 ? "tf32" : dt == LOOM_BF16 ? "bf16" : dt == LOOM_F16 ? "f16" : "f32";
}

/* The dense peak of the device for the run's dtype, in TFLOP/s; 0 when
 * unknown (why says so). GPUs: the datasheet table; the CPU: the best of 10
 * 1024^3 GEMMs in that dtype on the run's threads, labelled as measured. */
static double device_peak(loom_device dev, loom_dtype dt, bool tf32, char *source, size_t size) {
  const char *flag = dtype_flag(dt, tf32);
  if (dev.type == LOOM_CUDA) {
    char name[256];
    device_name(dev, name, sizeof name);
    for (size_t i = 0; i < sizeof gpu_peaks / sizeof gpu_peaks[0]; i++) {
      const gpu_peak *p = &gpu_peaks[i];
      if (!strstr(name, p->pattern)) continue;
      snprintf(source, size, "datasheet: %s, dense %s", p->label, flag);
      return tf32 ? p->tf32 : dt == LOOM_BF16 ? p->bf16 : dt == LOOM_F16 ? p->f16 : p->f32;
    }
    snprintf(source, size, "no peak known for %s; --peak-tflops X sets one", name);
    return 0;
  }
  const int64_t n = 1024;
  double best = INFINITY;
  loom_scope_begin();
  loom_tensor *a = loom_rand(LOOM_SHAPE(n, n), LOOM_F32, dev), *b = loom_rand(LOOM_SHAPE(n, n), LOOM_F32, dev);
  if (a && b && dt != LOOM_F32) {
    a = loom_to_dtype(a, dt);
    b = loom_to_dtype(b, dt);
  }
  for (int i = 0; a && b && i < 12; i++) {
    double t0 = now_s();
    loom_scope_begin();
    loom_tensor *c = loom_matmul(a, b);
    loom_scope_end();
    if (!c) break;
    if (i >= 2 && now_s() - t0 < best) best = now_s() - t0;
  }
  loom_scope_end();
  if (!isfinite(best)) {
    snprintf(source, size, "the GEMM that measures the CPU's peak failed: %s", loom_last_error());
    return 0;
  }
  snprintf(source, size, "measured: best of 10 GEMMs %lldx%lldx%lld %s, %d threads (loom_matmul)", (long long)n,
           (long long)n, (long long)n, flag, loom_num_threads());
  return 2.0 * (double)(n * n * n) / best / 1e12;
}

/* An energy counter: NVML's board energy on NVIDIA GPUs (libnvidia-ml loaded
 * at run time, so a machine without the driver still runs), RAPL's package 0
 * on the CPU. read() gives joules since an arbitrary origin, < 0 on failure. */
typedef struct energy_meter {
  const char *source;         /* NULL when unavailable (why says so) */
  char why[256];
  void *lib, *nvml_dev;
  int (*nvml_energy)(void *dev, unsigned long long *mj);
  double rapl_range_j, last_j, wraps_j;
} energy_meter;

static double rapl_read_file(const char *path) {
  FILE *f = fopen(path, "r");
  unsigned long long v = 0;
  int ok = f && fscanf(f, "%llu", &v) == 1;
  if (f) fclose(f);
  return ok ? (double)v * 1e-6 : -1;
}

static double energy_read(energy_meter *e) {
  if (!e->source) return -1;
  if (e->nvml_energy) {
    unsigned long long mj = 0;
    return e->nvml_energy(e->nvml_dev, &mj) == 0 ? (double)mj * 1e-3 : -1;
  }
  double j = rapl_read_file("/sys/class/powercap/intel-rapl:0/energy_uj");
  if (j < 0) return -1;
  if (j < e->last_j) e->wraps_j += e->rapl_range_j;   /* the counter wrapped once */
  e->last_j = j;
  return j + e->wraps_j;
}

static void energy_open(energy_meter *e, loom_device dev) {
  memset(e, 0, sizeof *e);
  if (dev.type == LOOM_CPU) {
    const char *path = "/sys/class/powercap/intel-rapl:0/energy_uj";
    e->rapl_range_j = rapl_read_file("/sys/class/powercap/intel-rapl:0/max_energy_range_uj");
    e->last_j = rapl_read_file(path);
    if (e->last_j < 0 || e->rapl_range_j <= 0) {
      snprintf(e->why, sizeof e->why, "no RAPL counter readable at %s", path);
      return;
    }
    e->source = "rapl: package 0";
    return;
  }
  loom_device_info di;
  e->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!e->lib) {
    snprintf(e->why, sizeof e->why, "libnvidia-ml.so.1 (NVML) could not be loaded");
    return;
  }
  int (*init)(void) = (int (*)(void))dlsym(e->lib, "nvmlInit_v2");
  int (*by_bus)(const char *, void **) = (int (*)(const char *, void **))dlsym(e->lib, "nvmlDeviceGetHandleByPciBusId_v2");
  e->nvml_energy = (int (*)(void *, unsigned long long *))dlsym(e->lib, "nvmlDeviceGetTotalEnergyConsumption");
  unsigned long long mj;
  if (!init || !by_bus || !e->nvml_energy || init() != 0 || loom_cuda_device_info(dev.index, &di) ||
      by_bus(di.pci_bus_id, &e->nvml_dev) != 0 || e->nvml_energy(e->nvml_dev, &mj) != 0) {
    snprintf(e->why, sizeof e->why, "NVML gives no energy counter for %s (needs a Volta or newer GPU and its driver)",
             loom_device_name(dev));
    e->nvml_energy = NULL;
    return;
  }
  e->source = "nvml: board energy counter";
}

static void energy_close(energy_meter *e) {
  if (!e->lib) return;
  int (*shutdown)(void) = (int (*)(void))dlsym(e->lib, "nvmlShutdown");
  if (e->source && shutdown) shutdown();
  dlclose(e->lib);
}

#endif
