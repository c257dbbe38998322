/* Shared by the model zoo (src/models): the checked root module every model
 * is built on, and small layer helpers. Internal. */
#ifndef LOOM_MODELS_IMPL_H
#define LOOM_MODELS_IMPL_H

#include "core/tensor_impl.h"
#include "loom/models.h"

/* What a model's root does between its children: each child runs in
 * registration order on the previous output; before the last child the
 * output is flattened (HEAD_FLATTEN: ResNet's fc, VGG's classifier) or
 * globally average-pooled and flattened (HEAD_POOL_FLATTEN: MobileNetV2). */
typedef enum model_head { HEAD_NONE = 0, HEAD_FLATTEN, HEAD_POOL_FLATTEN } model_head;

typedef struct model_root {
  char name[40];          /* "ResNet-50": the first word of every error */
  int64_t in_features;    /* > 0: input [N, in_features] (no image) */
  int64_t in_channels;    /* image models: input [N, in_channels, H, W] */
  int64_t min_hw;         /* smallest H and W the layers allow (0 = any) */
  int64_t exact_hw;       /* H = W = exact_hw required (a fixed-size Linear head), 0 = any */
  const char *size_hint;  /* appended to a too-small error ("use the CIFAR stem ..."), may be "" */
  model_head head;
} model_root;

/* A new root of kind (forward = model_root_forward) with a copy of cfg. */
loom_module *model_root_new(const loom_module_kind *kind, const model_root *cfg);
loom_tensor *model_root_forward(loom_module *m, loom_tensor *const *in, int n_in);
/* Re-records the current error as "<model>: at <path>: <error>". Returns NULL. */
loom_tensor *model_error(const char *model, const char *path);
/* Puts the printf-formatted prefix (a model's name: "%s", s->name) and ": "
 * in front of the current error, unless it starts with them already.
 * Returns NULL. */
loom_tensor *model_name_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* n_in == 1; otherwise records "<model>: forward takes 1 input, got <n_in>". */
bool model_one_input(const char *model, int n_in);
/* Runs child `name` of m on x (NULL x gives NULL); a failure's error gets
 * "at name: " in front ("at name." before a nested path). */
loom_tensor *model_run(loom_module *m, const char *name, loom_tensor *x);
/* Frees m and returns NULL unless ok (a building chain's end). */
loom_module *model_done(loom_module *m, bool ok);

/* Options with the defaults filled in (opts may be NULL). */
loom_model_opts model_opts(const loom_model_opts *opts, int64_t num_classes, int64_t in_channels);
/* Checks num_classes and in_channels (> 0); records an error naming model. */
bool model_opts_ok(const char *model, const loom_model_opts *o);

/* Conv2d(in, out, k x k, stride, padding k / 2 unless pad >= 0, groups, bias). */
loom_module *model_conv(int64_t in, int64_t out, int k, int stride, int pad, int groups, bool bias);
/* torchvision's init walk: every Conv2d weight kaiming_normal(fan_out, relu)
 * and bias 0; BatchNorm weight 1, bias 0; Linear weight N(0, linear_std) and
 * bias 0 when linear_std > 0 (otherwise Linear keeps PyTorch's default). */
void model_init_torchvision(loom_module *m, double linear_std);

#endif
