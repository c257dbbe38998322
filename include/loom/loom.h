/* Loom: a deep learning framework in C. Umbrella header. */
#ifndef LOOM_LOOM_H
#define LOOM_LOOM_H

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 1
#define LOOM_VERSION_PATCH 0
#define LOOM_VERSION_STRING "0.1.0"

#include "loom/tensor.h"
#include "loom/runtime.h"
#include "loom/ops.h"
#include "loom/autograd.h"
#include "loom/io.h"
#include "loom/nn.h"
#include "loom/optim.h"
#include "loom/data.h"
#include "loom/train.h"
#include "loom/models.h"
#include "loom/dist.h"
#include "loom/profile.h"

#endif
