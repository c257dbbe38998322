/* Loom initialisers (torch.nn.init): each fills a tensor in place (views
 * too), without recording autograd, from the tensor's device generator, and
 * returns 0 or an error status. Values are drawn in f32 (f64 for f64 tensors)
 * and cast, so a seed gives the same numbers on the CPU and on CUDA. Random
 * fills need a floating tensor; constant_/zeros_/ones_ also take integer ones
 * (as PyTorch). Zero-element tensors are a no-op. Fans follow PyTorch: for a
 * weight [out, in, k...] fan_in = in * prod(k), fan_out = out * prod(k). */
#ifndef LOOM_NN_INIT_H
#define LOOM_NN_INIT_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum loom_fan_mode { LOOM_FAN_IN = 0, LOOM_FAN_OUT = 1 } loom_fan_mode;

int loom_init_uniform_(loom_tensor *t, double a, double b);
int loom_init_normal_(loom_tensor *t, double mean, double std);
int loom_init_constant_(loom_tensor *t, double value);
int loom_init_zeros_(loom_tensor *t);
int loom_init_ones_(loom_tensor *t);
/* fan_in and fan_out of t (needs at least 2 dims); returns 0 or an error status. */
int loom_init_fans(const loom_tensor *t, int64_t *fan_in, int64_t *fan_out);
/* torch.nn.init.calculate_gain: "linear", "conv1d", "conv2d", "sigmoid",
 * "tanh", "relu", "leaky_relu" (param = negative slope; NAN = 0.01), "selu".
 * NAN + error for an unknown name. */
double loom_init_gain(const char *nonlinearity, double param);
int loom_init_xavier_uniform_(loom_tensor *t, double gain);
int loom_init_xavier_normal_(loom_tensor *t, double gain);
/* a: negative slope for leaky_relu (PyTorch's default a = 0; Linear and Conv
 * layers use a = sqrt(5) with "leaky_relu"). nonlinearity NULL = "leaky_relu"
 * (PyTorch's default). std = gain / sqrt(fan); the uniform bound is sqrt(3) std. */
int loom_init_kaiming_uniform_(loom_tensor *t, double a, loom_fan_mode mode, const char *nonlinearity);
int loom_init_kaiming_normal_(loom_tensor *t, double a, loom_fan_mode mode, const char *nonlinearity);
/* (Semi-)orthogonal matrix from the QR decomposition of a normal matrix,
 * t viewed as [size(0), numel / size(0)]; then scaled by gain. */
int loom_init_orthogonal_(loom_tensor *t, double gain);

#ifdef __cplusplus
}
#endif
#endif
