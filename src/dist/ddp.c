/* Data parallel (PyTorch DistributedDataParallel semantics): a module that
 * shares the wrapped model's parameters, broadcasts them from rank 0 at
 * start and its buffers before each training forward, and all-reduces the
 * gradients in buckets that start from the "gradient ready" hook while the
 * rest of backward runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd_impl.h"
#include "dist/dist_impl.h"
#include "nn/module_impl.h"

typedef struct ddp_state ddp_state;

typedef struct ddp_param {
  ddp_state *d;
  loom_tensor *t;            /* borrowed: the module holds it */
  const char *name;          /* in d->names */
  int bucket;
  int64_t offset;            /* first element in the bucket's buffer */
  bool ready;                /* its gradient is in the bucket (this backward) */
  loom_grad_hook prev_hook;  /* the hook that was there, called first */
  void *prev_user;
} ddp_param;

typedef struct ddp_bucket {
  loom_tensor *flat;         /* owned: the gradients of its parameters, end to end */
  int n_params, n_ready;
  loom_dist_work *work;      /* in flight */
} ddp_bucket;

struct ddp_state {
  loom_module *inner;        /* owned reference */
  loom_named_tensors *names; /* the parameters that need gradients, model order */
  loom_named_tensors *buffers; /* broadcast from rank 0 before each training forward */
  ddp_param *p;              /* in bucket order (reverse model order) */
  int np;
  ddp_bucket *b;
  int nb;
  int next_launch;           /* the next bucket to start (buckets start in order on every rank) */
  bool sync, armed;
  loom_status hook_err;      /* the first failure inside a hook (hooks return nothing): reported by finish */
  char hook_msg[600];
  loom_ddp_opts o;
  loom_ddp_stats stats;
  double t_starts[2];
};

/* A view of the bucket's buffer where p's gradient goes (caller releases). */
static loom_tensor *slot(const ddp_param *p) {
  int64_t strides[LOOM_MAX_DIMS];
  core_contiguous_strides(p->t->shape, strides);
  const loom_tensor *flat = p->d->b[p->bucket].flat;
  loom_tensor *v = core_view(flat, p->t->shape, strides, flat->offset + p->offset);
  core_untrack(v);
  return v;
}

/* Keeps the first error of a hook for finish to report. */
static void hook_failed(ddp_state *d) {
  if (d->hook_err) return;
  d->hook_err = loom_last_status() ? loom_last_status() : LOOM_ERR_INTERNAL;
  snprintf(d->hook_msg, sizeof d->hook_msg, "%s", loom_last_error());
}

static loom_status launch_ready(ddp_state *d) {
  while (d->next_launch < d->nb && d->b[d->next_launch].n_ready == d->b[d->next_launch].n_params) {
    ddp_bucket *b = &d->b[d->next_launch];
    if (d->o.on_bucket) d->o.on_bucket(d->next_launch, d->o.on_bucket_user);
    b->work = loom_all_reduce_async(b->flat, LOOM_REDUCE_AVG);
    if (!b->work) return loom_last_status();
    d->next_launch++;
  }
  return LOOM_OK;
}

static void reset(ddp_state *d) {
  for (int i = 0; i < d->np; i++) d->p[i].ready = false;
  for (int i = 0; i < d->nb; i++) d->b[i].n_ready = 0;
  d->next_launch = 0;
  d->armed = false;
  d->hook_err = LOOM_OK;
}

/* Writes p's gradient (or zeros) into its slot and marks it ready. */
static int put(ddp_param *p) {
  loom_tensor *v = slot(p);
  loom_status st = loom_grad(p->t) ? loom_copy_(v, loom_grad(p->t)) : loom_fill_(v, 0.0);
  loom_release(v);
  p->ready = true;
  p->d->b[p->bucket].n_ready++;
  return st;
}

/* Writes the averaged slot back into p's gradient (creating it only when the slot is not all zero). */
static int take(ddp_param *p) {
  loom_tensor *v = slot(p);
  loom_status st = LOOM_OK;
  if (!loom_grad(p->t)) {
    loom_tensor *a = loom_abs(v), *mx = loom_max_all(a);
    bool any = mx && loom_item(mx) != 0;
    loom_release(a);
    loom_release(mx);
    if (any) {
      loom_tensor *g = loom_clone(v);
      core_untrack(g);
      st = g ? (loom_status)loom_set_grad(p->t, g) : loom_last_status();
      loom_release(g);
    }
  } else {
    st = loom_copy_(loom_grad(p->t), v);
  }
  loom_release(v);
  return st;
}

static loom_status finish(void *user, loom_status st) {
  ddp_state *d = user;
  double walk_end = dist_now();
  if (st == LOOM_OK && d->hook_err) st = core_set_error(d->hook_err, "DDP: %s", d->hook_msg);
  if (st == LOOM_OK) {
    for (int i = 0; i < d->np && st == LOOM_OK; i++) {
      ddp_param *p = &d->p[i];
      if (p->ready) continue;
      if (!d->o.find_unused_parameters)
        st = core_set_error(LOOM_ERR_INVALID,
                            "DDP: parameter '%s' received no gradient in this backward (not used by the loss); "
                            "pass find_unused_parameters, or drop it from the model",
                            p->name);
      else
        st = put(p);
    }
    if (st == LOOM_OK) st = launch_ready(d);
  }
  /* every started bucket is waited for, also on failure, so no work outlives its step */
  double comm = 0, last_end = walk_end;
  for (int i = 0; i < d->nb; i++) {
    ddp_bucket *b = &d->b[i];
    if (!b->work) continue;
    double t0 = 0, t1 = 0;
    int r = dist_wait_timed(b->work, &t0, &t1);
    b->work = NULL;
    if (st == LOOM_OK) st = r;
    comm += t1 - t0;
    if (t1 > last_end) last_end = t1;
  }
  for (int i = 0; i < d->np && st == LOOM_OK; i++)
    if (d->p[i].ready) st = take(&d->p[i]);
  reset(d);
  if (st == LOOM_OK) {
    d->stats.steps++;
    d->stats.comm_s = comm;
    d->stats.exposed_s = last_end - walk_end;
    double h = comm > 0 ? 1.0 - d->stats.exposed_s / comm : 1.0;
    d->stats.hidden_fraction = h < 0 ? 0 : h > 1 ? 1 : h;
  }
  return st;
}

static void on_grad(loom_tensor *leaf, void *user) {
  ddp_param *p = user;
  ddp_state *d = p->d;
  if (p->prev_hook) p->prev_hook(leaf, p->prev_user);
  if (!d->sync || p->ready) return;
  if (!d->armed) {
    if (core_queue_backward_callback(finish, d)) { /* no finish to report it: the gradients stay local */
      fprintf(stderr, "loom DDP: %s\n", loom_last_error());
      return;
    }
    d->armed = true;
  }
  if (d->hook_err) return;
  if (put(p) || launch_ready(d)) hook_failed(d);
}

/* ---- the module ---- */
static loom_tensor *ddp_forward(loom_module *m, loom_tensor *const *in, int n_in) {
  ddp_state *d = m->state;
  if (loom_module_training(d->inner) != m->training) loom_module_train(d->inner, m->training);
  if (m->training && !d->o.no_broadcast_buffers && loom_dist_world_size() > 1)
    for (int i = 0; i < d->buffers->n; i++)
      if (loom_broadcast(d->buffers->tensors[i], 0)) return NULL;
  return loom_forward_n(d->inner, in, n_in);
}

static void ddp_free_state(void *state) {
  ddp_state *d = state;
  if (!d) return;
  for (int i = 0; i < d->np; i++) loom_set_grad_hook(d->p[i].t, d->p[i].prev_hook, d->p[i].prev_user);
  for (int i = 0; i < d->nb; i++) {
    if (d->b[i].work) loom_dist_wait(d->b[i].work);
    loom_release(d->b[i].flat);
  }
  free(d->b);
  free(d->p);
  loom_named_tensors_free(d->names);
  loom_named_tensors_free(d->buffers);
  loom_module_free(d->inner);
  free(d);
}

static const loom_module_kind DDP_KIND = {.type = "DistributedDataParallel", .forward = ddp_forward,
                                          .free_state = ddp_free_state};

/* Puts the trainable parameters into buckets, last parameters first. */
static int build_buckets(ddp_state *d, loom_named_tensors *params) {
  d->p = calloc((size_t)params->n + 1, sizeof *d->p);
  d->b = calloc((size_t)params->n + 1, sizeof *d->b);
  if (!d->p || !d->b) return core_set_error(LOOM_ERR_OOM, "DDP: out of host memory");
  double cap_mb = d->o.bucket_cap_mb > 0 ? d->o.bucket_cap_mb : 25;
  double first_mb = d->o.first_bucket_mb > 0 ? d->o.first_bucket_mb : 1;
  size_t bytes = 0;
  int64_t elems = 0;
  for (int i = params->n - 1; i >= 0; i--) {
    loom_tensor *t = params->tensors[i];
    if (!loom_requires_grad(t)) continue;
    size_t tb = (size_t)core_numel(t) * loom_dtype_size(t->dtype);
    double cap = (d->nb == 0 ? first_mb : cap_mb) * 1024 * 1024;
    ddp_param *prev = d->np ? &d->p[d->np - 1] : NULL;
    bool fresh = !prev || prev->t->dtype != t->dtype || (bytes > 0 && (double)(bytes + tb) > cap);
    if (fresh && prev) {
      d->b[d->nb].flat = loom_empty(LOOM_SHAPE(elems), prev->t->dtype, prev->t->storage->device);
      core_untrack(d->b[d->nb].flat);
      if (!d->b[d->nb].flat) return loom_last_status();
      d->nb++;
      bytes = 0;
      elems = 0;
    }
    d->p[d->np] = (ddp_param){d, t, params->names[i], d->nb, elems, false, t->hook, t->hook_user};
    d->b[d->nb].n_params++;
    d->np++;
    bytes += tb;
    elems += core_numel(t);
  }
  if (d->np) {
    ddp_param *last = &d->p[d->np - 1];
    d->b[d->nb].flat = loom_empty(LOOM_SHAPE(elems), last->t->dtype, last->t->storage->device);
    core_untrack(d->b[d->nb].flat);
    if (!d->b[d->nb].flat) return loom_last_status();
    d->nb++;
  }
  d->stats.buckets = d->nb;
  return LOOM_OK;
}

/* Broadcasts every parameter and buffer of m from rank 0. */
static int broadcast_all(loom_module *m) {
  loom_status st = LOOM_OK;
  for (int pass = 0; pass < 2 && st == LOOM_OK; pass++) {
    loom_named_tensors *l = pass ? loom_module_named_buffers(m) : loom_module_named_parameters(m);
    if (!l) return loom_last_status();
    for (int i = 0; i < l->n && st == LOOM_OK; i++) {
      st = loom_broadcast(l->tensors[i], 0);
      if (st) {
        char why[600];
        snprintf(why, sizeof why, "%s", loom_last_error());
        st = core_set_error(loom_last_status(), "DDP: broadcasting '%s' from rank 0 failed: %s", l->names[i], why);
      }
    }
    loom_named_tensors_free(l);
  }
  return st;
}

/* The same children, parameters and buffers (names and order) as inner. */
static int mirror(loom_module *m, loom_module *inner) {
  for (int i = 0; i < inner->n_params; i++)
    if (!loom_module_add_parameter(m, inner->params[i].name, inner->params[i].t)) return loom_last_status();
  for (int i = 0; i < inner->n_buffers; i++)
    if (!loom_module_add_buffer(m, inner->buffers[i].name, inner->buffers[i].t, inner->buffers[i].persistent))
      return loom_last_status();
  for (int i = 0; i < inner->n_children; i++)
    if (loom_module_add(m, inner->children[i].name, loom_module_retain(inner->children[i].m))) return loom_last_status();
  return LOOM_OK;
}

loom_module *loom_ddp_new(loom_module *model, const loom_ddp_opts *o) {
  if (!model) {
    core_null_error("DDP: model is NULL");
    return NULL;
  }
  if (o && (o->bucket_cap_mb < 0 || o->first_bucket_mb < 0)) {
    core_set_error(LOOM_ERR_INVALID, "DDP: bucket sizes must be positive (0 = default), got %g and %g MiB",
                   o->bucket_cap_mb, o->first_bucket_mb);
    return NULL;
  }
  loom_named_tensors *params = loom_module_named_parameters(model);
  if (!params) return NULL;
  loom_device dev = loom_dist_device();
  for (int i = 0; i < params->n; i++) {
    loom_tensor *t = params->tensors[i];
    if (loom_dist_is_initialized() && !loom_device_equal(t->storage->device, dev)) {
      core_set_error(LOOM_ERR_DEVICE, "DDP: parameter '%s' is on %s but this rank's device is %s (move the model first)",
                     params->names[i], loom_device_name(t->storage->device), loom_device_name(dev));
      loom_named_tensors_free(params);
      return NULL;
    }
    if (t->hook == on_grad) {
      core_set_error(LOOM_ERR_INVALID, "DDP: parameter '%s' already belongs to a DDP module", params->names[i]);
      loom_named_tensors_free(params);
      return NULL;
    }
  }
  ddp_state *d = calloc(1, sizeof *d);
  if (!d) {
    loom_named_tensors_free(params);
    core_set_error(LOOM_ERR_OOM, "DDP: out of host memory");
    return NULL;
  }
  d->names = params;
  d->buffers = loom_module_named_buffers(model);
  d->inner = loom_module_retain(model);
  d->sync = true;
  if (o) d->o = *o;
  loom_module *m = loom_module_new(&DDP_KIND, d);
  if (!m) {
    ddp_free_state(d);
    return NULL;
  }
  m->training = model->training;
  if (!d->buffers || mirror(m, model) || broadcast_all(model) || build_buckets(d, params)) {
    for (int i = 0; i < d->np; i++) d->p[i].prev_hook = d->p[i].t->hook, d->p[i].prev_user = d->p[i].t->hook_user;
    loom_module_free(m);
    return NULL;
  }
  for (int i = 0; i < d->np; i++) loom_set_grad_hook(d->p[i].t, on_grad, &d->p[i]);
  return m;
}

loom_module *loom_ddp_module(loom_module *m) {
  return m && m->kind == &DDP_KIND ? ((ddp_state *)m->state)->inner : NULL;
}

static ddp_state *state_of(loom_module *m, const char *fn) {
  if (m && m->kind == &DDP_KIND) return m->state;
  core_set_error(LOOM_ERR_INVALID, "%s: the module is %s, not a DDP module (loom_ddp_new)", fn,
                 m ? loom_module_type(m) : "NULL");
  return NULL;
}

int loom_ddp_set_sync(loom_module *m, bool on) {
  ddp_state *d = state_of(m, "ddp_set_sync");
  if (!d) return loom_last_status();
  d->sync = on;
  return LOOM_OK;
}

int loom_ddp_get_stats(loom_module *m, loom_ddp_stats *out) {
  ddp_state *d = state_of(m, "ddp_get_stats");
  if (!d) return loom_last_status();
  if (!out) return core_null_error("ddp_get_stats: out is NULL");
  *out = d->stats;
  return LOOM_OK;
}
