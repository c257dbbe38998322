/* Dense peak TFLOP/s of known GPUs, for MFU (loom-bench and tools/bench_torch.py,
 * which reads the rows below with a regular expression: keep one row per line).
 * Figures are the vendors' datasheet numbers without structured sparsity.
 * A device matches the first row whose pattern is a substring of its name
 * (cudaGetDeviceProperties' name, e.g. "NVIDIA H100 80GB HBM3").
 * Columns: pattern, label, f32 (CUDA cores), tf32, bf16, f16 (tensor cores). */
#ifndef LOOM_TOOLS_GPU_PEAKS_H
#define LOOM_TOOLS_GPU_PEAKS_H

typedef struct gpu_peak {
  const char *pattern, *label;
  double f32, tf32, bf16, f16;
} gpu_peak;

static const gpu_peak gpu_peaks[] = {
    {"H200 NVL", "NVIDIA H200 NVL", 60.0, 417.5, 835.5, 835.5},
    {"H200", "NVIDIA H200 SXM", 67.0, 494.7, 989.4, 989.4},
    {"H100 NVL", "NVIDIA H100 NVL", 60.0, 417.5, 835.5, 835.5},
    {"H100 PCIe", "NVIDIA H100 PCIe", 51.0, 378.0, 756.0, 756.0},
    {"H100", "NVIDIA H100 SXM", 67.0, 494.7, 989.4, 989.4},
    {"A100", "NVIDIA A100", 19.5, 156.0, 312.0, 312.0},
};

#endif
