/* oneDNN for the CPU's f32 convolutions (src/cpu/onednn.c), tried by the
 * conv2d kernels of src/cpu/conv.c before their own im2col + OpenBLAS path. */
#ifndef LOOM_CPU_ONEDNN_H
#define LOOM_CPU_ONEDNN_H

#include <stddef.h>

#include "core/kernel.h"

/* Runs k (conv2d, conv2d_backward_input or conv2d_backward_weight, f32) on
 * oneDNN and returns true with *st its status, or returns false when oneDNN is
 * not built, turned off (loom_set_onednn, LOOM_ONEDNN=0), slower for this
 * shape or does not implement it: the caller then runs its own kernel (which
 * also reports bad operands, left to it here). */
bool cpu_onednn_conv(const core_kctx *k, loom_status *st);

/* The "oneDNN: ..." line of loom_versions. */
int cpu_onednn_versions(char *buf, size_t size);

#endif
