/* Loom training loop helper: a trainer that runs epochs of a model over a
 * loader with an optimiser (and optionally a schedule and a loss scaler),
 * prints a progress line, evaluates, stops cleanly on NaN / Inf, saves
 * checkpoints (loom_checkpoint_save in loom/io.h) every N steps and when
 * SIGINT / SIGTERM arrives, and resumes from them bit for bit. */
#ifndef LOOM_TRAIN_H
#define LOOM_TRAIN_H

#include <stdio.h>

#include "loom/data.h"
#include "loom/io.h"
#include "loom/nn.h"
#include "loom/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The loss of one batch. Returns a one-element tensor (or NULL after setting
 * the error); *logits (may be left NULL) receives [B, C] scores so the
 * trainer can count correct predictions against integer labels y [B]. Tensors
 * belong to the caller's scope (the trainer opens one per step). */
typedef loom_tensor *(*loom_loss_fn)(loom_module *model, loom_tensor *x, loom_tensor *y, loom_tensor **logits,
                                     void *user);
/* The default: cross-entropy of loom_forward(model, x) against class indices y. */
loom_tensor *loom_loss_cross_entropy(loom_module *model, loom_tensor *x, loom_tensor *y, loom_tensor **logits,
                                     void *user);

typedef struct loom_trainer loom_trainer;

/* Called after every optimiser step (outside the step's scope). Returning
 * non-zero stops training (status LOOM_TRAIN_STOPPED). */
typedef int (*loom_step_fn)(loom_trainer *t, int64_t step, double loss, void *user);

typedef struct loom_trainer_opts {
  int epochs;                    /* 0 = 1 */
  int64_t max_steps;             /* > 0: stop after this many steps in all (resumed steps count) */
  int log_every;                 /* progress line every N steps of an epoch; 0 = 50; < 0 = never */
  FILE *log;                     /* NULL = stdout; '\r' in place on a terminal, lines otherwise */
  bool quiet;                    /* no progress output at all */
  int check_every;               /* NaN / Inf check of loss and gradients every N steps; 0 = 1, < 0 = never */
  bool sched_per_epoch;          /* step the schedule at epoch ends instead of after every step */
  loom_grad_scaler *scaler;      /* dynamic loss scaling (may be NULL) */
  loom_loader *eval_loader;      /* evaluated after each epoch when not NULL */
  loom_loss_fn loss;             /* NULL = loom_loss_cross_entropy */
  void *loss_user;
  loom_step_fn on_step;          /* may be NULL */
  void *step_user;
  /* Checkpoints: DIR/PREFIX-<step, 8 digits>.safetensors. */
  const char *checkpoint_dir;    /* NULL = none (SIGINT / SIGTERM then just stop) */
  const char *checkpoint_prefix; /* NULL = "ckpt" */
  int64_t checkpoint_every;      /* steps; 0 = at the end of every epoch only */
  int keep;                      /* checkpoints kept in DIR with PREFIX; 0 = 3, < 0 = all */
  const char *config;            /* free text stored in each checkpoint's metadata (may be NULL) */
  bool resume_skip_corrupt;      /* loom_trainer_resume_latest: a corrupt newest checkpoint is skipped for the
                                    newest valid one (otherwise refused, naming that one) */
  bool resume_any_config;        /* resume even when the checkpoint's run had another batch size, dataset length,
                                    world size, epochs or config flags (otherwise refused, naming each) */
  bool no_signal_handlers;       /* do not catch SIGINT / SIGTERM */
} loom_trainer_opts;

typedef enum loom_train_status {
  LOOM_TRAIN_DONE = 0,           /* all epochs (or max_steps) ran */
  LOOM_TRAIN_INTERRUPTED,        /* SIGINT / SIGTERM: checkpoint saved (with a dir) at a step boundary */
  LOOM_TRAIN_STOPPED,            /* on_step returned non-zero */
  LOOM_TRAIN_NONFINITE,          /* NaN / Inf found before the step was applied; loom_last_error names it */
  LOOM_TRAIN_FAILED              /* an error (loom_last_error) */
} loom_train_status;
const char *loom_train_status_name(loom_train_status s);

/* Borrows model, opt, sched (may be NULL) and loader: they must outlive the
 * trainer. Options are copied (strings too). NULL + error on bad arguments.
 * With a checkpoint_dir the folder is prepared at once
 * (loom_checkpoint_prepare_dir: created with its parents, checked writable,
 * stale temporaries removed), so an unusable folder fails before training. */
loom_trainer *loom_trainer_new(loom_module *model, loom_optimizer *opt, loom_scheduler *sched, loom_loader *loader,
                               const loom_trainer_opts *o);
void loom_trainer_free(loom_trainer *t);

/* Trains from the current position to the end (epochs / max_steps), or until
 * interrupted, stopped, a NaN / Inf or an error. Installs SIGINT / SIGTERM
 * handlers for the run and restores the previous ones before returning. */
loom_train_status loom_trainer_fit(loom_trainer *t);
/* One epoch (the rest of the current one after a resume). */
loom_train_status loom_train_epoch(loom_trainer *t);

/* Loads a checkpoint into model, optimiser, schedule, scaler, RNG and loader
 * position, and continues from its step and epoch. Nothing changes on error. */
int loom_trainer_resume(loom_trainer *t, const char *path);
/* Resumes from the newest checkpoint in the checkpoint dir; returns 1 when
 * one was loaded, 0 when there is none, or a negative status on error. */
int loom_trainer_resume_latest(loom_trainer *t);
/* Saves a checkpoint now (to path, or DIR/PREFIX-<step>.safetensors when path
 * is NULL) and rotates. Returns 0 or an error status. */
int loom_trainer_save(loom_trainer *t, const char *path);
/* Path of the last checkpoint written or loaded ("" when none). */
const char *loom_trainer_last_checkpoint(const loom_trainer *t);

typedef struct loom_train_stats {
  int64_t step;                  /* optimiser steps taken */
  int64_t epoch;                 /* epoch in progress or next (0-based) */
  double loss, accuracy;         /* mean over the last epoch's steps so far (accuracy NAN without logits) */
  double samples_per_s;          /* training throughput of the last fit, after its first step, to its last
                                    (this rank's; x loom_dist_world_size() for all ranks) */
  double seconds;                /* training wall time of the last fit */
  double eval_loss, eval_accuracy; /* last evaluation (NAN when none) */
} loom_train_stats;
loom_train_stats loom_trainer_stats(const loom_trainer *t);

/* Mean loss and accuracy of model over one pass of loader (epoch 0), with
 * autograd off and the model in eval mode (its mode is restored after).
 * loss / acc may be NULL. Returns 0 or an error status. */
int loom_evaluate(loom_module *model, loom_loader *loader, double *loss, double *acc);
/* The same with a loss function (NULL = cross-entropy). */
int loom_evaluate_fn(loom_module *model, loom_loader *loader, loom_loss_fn fn, void *user, double *loss,
                     double *acc);

/* The first non-finite tensor among model's parameters (gradients too when
 * grads): writes "parameter 'fc.weight' holds NaN" / "gradient of 'fc.bias'
 * holds Inf" into msg and returns 1; 0 when all are finite; negative status
 * on error. */
int loom_check_finite(const loom_module *model, bool grads, char *msg, size_t size);

#ifdef __cplusplus
}
#endif
#endif
