/* The GPT-2 model's configuration, shared by gpt.c and gpt_sample.c. Internal. */
#ifndef LOOM_GPT_IMPL_H
#define LOOM_GPT_IMPL_H

#include "models/models_impl.h"

typedef struct gpt_config {
  int64_t vocab, n_ctx, n_embd;
  int n_layer, n_head;
  double dropout, eps;
} gpt_config;

/* The configuration of a loom_model_gpt module, or NULL + error for any other module. */
const gpt_config *gpt_config_of(const loom_module *m);

#endif
