/* loom_trainer: epochs of steps over a loader with progress lines, NaN / Inf
 * checks, checkpoints every N steps, and a clean stop on SIGINT / SIGTERM. */
#define _POSIX_C_SOURCE 200809L   /* sigaction, fileno, clock_gettime */
#include "loom/dist.h"
#include "loom/train.h"
#include "loom/autograd.h"
#include "loom/runtime.h"
#include "core/tensor_impl.h"
#include "train/train_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct loom_trainer {
  loom_module *model;
  loom_optimizer *opt;
  loom_scheduler *sched;
  loom_loader *loader;
  loom_trainer_opts o;          /* defaults filled in; strings point at the copies below */
  char *dir, *prefix, *config;
  int64_t step, epoch;          /* steps taken; epoch in progress */
  bool positioned;              /* the loader already stands where epoch continues */
  double loss_sum, correct;     /* this epoch's steps so far */
  int64_t seen, counted;
  double fit_start, timed_start;  /* clock at the fit's start and after its first step */
  double timed_end;             /* clock after the last step (evaluation and saving are not training) */
  int64_t fit_steps, timed_samples;
  int64_t saved_step;           /* step of the last checkpoint written (-1: none) */
  double eval_loss, eval_acc;
  char last_path[4096];
  bool handlers;                /* our SIGINT / SIGTERM handlers are installed */
  bool line_open;               /* a progress line rewritten in place waits for its newline */
  bool writer;                  /* rank 0 (or no process group): logs and writes checkpoints */
  struct sigaction old_int, old_term;
};

static volatile sig_atomic_t stop_signal = 0;

static void on_signal(int sig) { stop_signal = sig; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One message line (unless quiet), after ending an open progress line. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void say(loom_trainer *t, const char *fmt, ...) {
  if (t->o.quiet) return;
  if (t->line_open) fputc('\n', t->o.log);
  t->line_open = false;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(t->o.log, fmt, ap);
  va_end(ap);
  fputc('\n', t->o.log);
  fflush(t->o.log);
}

const char *loom_train_status_name(loom_train_status s) {
  static const char *names[] = {"done", "interrupted", "stopped", "non-finite", "failed"};
  return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "unknown";
}

static char *copy_text(const char *s, const char *fallback) {
  if (!s) s = fallback;
  if (!s) return NULL;
  char *c = malloc(strlen(s) + 1);
  if (c) strcpy(c, s);
  return c;
}

loom_trainer *loom_trainer_new(loom_module *model, loom_optimizer *opt, loom_scheduler *sched, loom_loader *loader,
                               const loom_trainer_opts *o) {
  if (!model || !opt || !loader)
    return core_set_error(LOOM_ERR_INVALID, "loom_trainer_new: NULL %s",
                          !model ? "model" : !opt ? "optimizer" : "loader"), NULL;
  loom_trainer *t = calloc(1, sizeof *t);
  if (!t) return core_set_error(LOOM_ERR_OOM, "loom_trainer_new: out of host memory"), NULL;
  *t = (loom_trainer){.model = model, .opt = opt, .sched = sched, .loader = loader, .saved_step = -1,
                      .eval_loss = NAN, .eval_acc = NAN};
  if (o) t->o = *o;
  if (t->o.epochs <= 0) t->o.epochs = 1;
  if (t->o.log_every == 0) t->o.log_every = 50;
  if (t->o.check_every == 0) t->o.check_every = 1;
  if (t->o.keep == 0) t->o.keep = 3;
  if (!t->o.loss) t->o.loss = loom_loss_cross_entropy;
  if (!t->o.log) t->o.log = stdout;
  /* Under a process group only rank 0 logs and writes checkpoints; every rank trains. */
  t->writer = loom_dist_rank() == 0;
  if (!t->writer) t->o.quiet = true;
  t->dir = copy_text(t->o.checkpoint_dir, NULL);
  t->prefix = copy_text(t->o.checkpoint_prefix, "ckpt");
  t->config = copy_text(t->o.config, "");
  if (!t->prefix || !t->config || (t->o.checkpoint_dir && !t->dir)) {
    loom_trainer_free(t);
    return core_set_error(LOOM_ERR_OOM, "loom_trainer_new: out of host memory"), NULL;
  }
  t->o.checkpoint_dir = t->dir;
  t->o.checkpoint_prefix = t->prefix;
  t->o.config = t->config;
  if (t->dir && t->writer) { /* before any training: a folder that cannot take a checkpoint is an error now */
    int removed = loom_checkpoint_prepare_dir(t->dir, t->prefix);
    if (removed < 0) {
      loom_trainer_free(t);
      return NULL;
    }
    if (removed > 0)
      say(t, "removed %d stale temporary checkpoint file%s in %s (left by saves that were killed)", removed,
          removed > 1 ? "s" : "", t->dir);
  }
  return t;
}

void loom_trainer_free(loom_trainer *t) {
  if (!t) return;
  free(t->dir);
  free(t->prefix);
  free(t->config);
  free(t);
}

const char *loom_trainer_last_checkpoint(const loom_trainer *t) { return t ? t->last_path : ""; }

loom_train_stats loom_trainer_stats(const loom_trainer *t) {
  loom_train_stats s = {0};
  if (!t) return s;
  double now = now_s();
  s.step = t->step;
  s.epoch = t->epoch;
  s.loss = t->seen ? t->loss_sum / (double)t->seen : NAN;
  s.accuracy = t->counted ? t->correct / (double)t->counted : NAN;
  s.seconds = t->fit_start > 0 ? now - t->fit_start : 0;
  s.samples_per_s = t->fit_steps > 1 && t->timed_end > t->timed_start
                        ? (double)t->timed_samples / (t->timed_end - t->timed_start) : NAN;
  s.eval_loss = t->eval_loss;
  s.eval_accuracy = t->eval_acc;
  return s;
}

/* ---------------------------------------------------------------- checkpoints */

int loom_trainer_save(loom_trainer *t, const char *path) {
  if (!t) return core_set_error(LOOM_ERR_INVALID, "loom_trainer_save: trainer is NULL");
  char own[4096];
  if (!path) {
    if (!t->dir) return core_set_error(LOOM_ERR_INVALID, "loom_trainer_save: no path and no checkpoint_dir");
    if (t->writer && mkdir(t->dir, 0777) != 0 && errno != EEXIST)
      return core_set_error(LOOM_ERR_IO, "loom_trainer_save: cannot create folder '%s': %s", t->dir, strerror(errno));
    int st = loom_checkpoint_path(t->dir, t->prefix, t->step, own, sizeof own);
    if (st) return st;
    path = own;
  }
  loom_loader_shape ws = loom_loader_work_shape(t->loader);
  loom_checkpoint_meta meta = {.step = t->step, .epoch = t->epoch, .batch_size = ws.batch_size,
                               .dataset_len = ws.dataset_len, .world_size = ws.world_size, .epochs = t->o.epochs};
  snprintf(meta.config, sizeof meta.config, "%s", t->config);
  int st = t->writer ? loom_checkpoint_save(path, t->model, t->opt, t->sched, t->o.scaler, t->loader, &meta) : 0;
  if (st) return st;
  snprintf(t->last_path, sizeof t->last_path, "%s", path);
  t->saved_step = t->step;
  say(t, "checkpoint saved: %s (step %" PRId64 ")", path, t->step);
  if (t->writer && t->dir && t->o.keep > 0 && loom_checkpoint_rotate(t->dir, t->prefix, t->o.keep) < 0)
    return loom_last_status();
  return LOOM_OK;
}

/* The value of --flag in a config text: the next word, "on" for a flag
 * followed by another flag or by nothing, "(unset)" when absent. */
static void flag_value(const char *text, const char *flag, char *out, size_t size) {
  size_t n = strlen(flag);
  snprintf(out, size, "(unset)");
  for (const char *p = strstr(text, flag); p; p = strstr(p + 1, flag)) {
    if ((p != text && p[-1] != ' ') || (p[n] != ' ' && p[n] != '\0')) continue;
    const char *v = p + n;
    while (*v == ' ') v++;
    if (!*v || strncmp(v, "--", 2) == 0) snprintf(out, size, "on");
    else snprintf(out, size, "%.*s", (int)strcspn(v, " "), v);
    return;
  }
}

/* The flags of a saved config whose values differ from the current config's,
 * appended to out ("--lr 0.01 (now 0.1)"), both ways. */
static void config_diff(const char *saved, const char *now, char *out, size_t size) {
  const char *texts[2] = {saved, now};
  for (int side = 0; side < 2; side++)
    for (const char *p = strstr(texts[side], "--"); p; p = strstr(p + 2, "--")) {
      if (p != texts[side] && p[-1] != ' ') continue;
      char flag[128], was[256], is[256];
      snprintf(flag, sizeof flag, "%.*s", (int)strcspn(p, " "), p);
      flag_value(saved, flag, was, sizeof was);
      flag_value(now, flag, is, sizeof is);
      if (strcmp(was, is) == 0 || (side == 1 && strcmp(was, "(unset)") != 0)) continue; /* once per flag */
      size_t len = strlen(out);
      snprintf(out + len, size - len, "%s%s %s (now %s)", len ? ", " : "", flag, was, is);
    }
}

/* Refuses a checkpoint of a run with another shape of work or settings,
 * naming each difference (unless resume_any_config). */
static int check_same_run(loom_trainer *t, const char *path) {
  loom_checkpoint_meta meta;
  if (t->o.resume_any_config || loom_checkpoint_check(path, &meta) < 0) return LOOM_OK; /* load reports a bad file */
  loom_loader_shape ws = loom_loader_work_shape(t->loader);
  const char *names[4] = {"batch size", "dataset length", "world size", "epochs"};
  const int64_t saved[4] = {meta.batch_size, meta.dataset_len, meta.world_size, meta.epochs},
                now[4] = {ws.batch_size, ws.dataset_len, ws.world_size, t->o.epochs};
  char diff[2048] = "";
  for (int k = 0; k < 4; k++)
    if (saved[k] > 0 && saved[k] != now[k]) {
      size_t len = strlen(diff);
      snprintf(diff + len, sizeof diff - len, "%s%s %" PRId64 " (now %" PRId64 ")", len ? ", " : "", names[k],
               saved[k], now[k]);
    }
  if (meta.config[0] && t->config[0]) config_diff(meta.config, t->config, diff, sizeof diff);
  if (!diff[0]) return LOOM_OK;
  return core_set_error(LOOM_ERR_INVALID, "checkpoint %s was written by a run with other settings: %s. Resume with "
                        "the same settings, or set resume_any_config (--resume-any-config) to carry on with the "
                        "new ones (the checkpoint's optimiser state, learning rate included, still wins)", path, diff);
}

int loom_trainer_resume(loom_trainer *t, const char *path) {
  if (!t || !path) return core_set_error(LOOM_ERR_INVALID, "loom_trainer_resume: NULL %s", !t ? "trainer" : "path");
  loom_checkpoint_meta meta;
  int st = check_same_run(t, path);
  if (!st) st = loom_checkpoint_load(path, t->model, t->opt, t->sched, t->o.scaler, t->loader, &meta);
  if (st) return st;
  t->step = t->saved_step = meta.step;
  t->epoch = loom_loader_position(t->loader).epoch;
  t->positioned = true;
  t->loss_sum = t->correct = 0;
  t->seen = t->counted = 0;
  snprintf(t->last_path, sizeof t->last_path, "%s", path);
  say(t, "resumed from %s: step %" PRId64 ", epoch %" PRId64, path, t->step, t->epoch + 1);
  return LOOM_OK;
}

int loom_trainer_resume_latest(loom_trainer *t) {
  if (!t || !t->dir) return -core_set_error(LOOM_ERR_INVALID, "loom_trainer_resume_latest: no checkpoint_dir");
  char path[4096], valid[4096];
  int found = loom_checkpoint_latest(t->dir, t->prefix, path, sizeof path);
  if (found <= 0) return found;
  if (loom_checkpoint_check(path, NULL) <= 0) { /* the newest is corrupt, truncated or empty */
    char why[1024];
    snprintf(why, sizeof why, "%s", loom_last_error());
    int ok = loom_checkpoint_latest_valid(t->dir, t->prefix, valid, sizeof valid);
    if (ok < 0) return ok;
    if (!ok)
      return -core_set_error(LOOM_ERR_IO, "the newest checkpoint %s cannot be loaded (%s), and no older one in %s "
                             "is valid", path, why, t->dir);
    if (!t->o.resume_skip_corrupt)
      return -core_set_error(LOOM_ERR_IO, "the newest checkpoint %s cannot be loaded (%s); the newest valid one is "
                             "%s: resume from it with resume_skip_corrupt (--resume-skip-corrupt) or "
                             "loom_trainer_resume", path, why, valid);
    say(t, "skipping the newest checkpoint %s: %s", path, why);
    snprintf(path, sizeof path, "%s", valid);
  }
  int st = loom_trainer_resume(t, path);
  return st ? -st : 1;
}

/* ---------------------------------------------------------------- progress */

static void print_progress(loom_trainer *t, bool final) {
  if (t->o.quiet || t->o.log_every < 0) return;
  int64_t nb = loom_loader_num_batches(t->loader);
  int64_t batch = loom_loader_position(t->loader).batch;
  int64_t total = (int64_t)t->o.epochs * nb;
  if (t->o.max_steps > 0 && t->o.max_steps < total) total = t->o.max_steps;
  loom_train_stats s = loom_trainer_stats(t);
  double per_step = t->fit_steps > 0 ? (now_s() - t->fit_start) / (double)t->fit_steps : 0;
  double eta = total > t->step ? per_step * (double)(total - t->step) : 0;
  char acc[32] = "", speed[64] = "";
  if (!isnan(s.accuracy)) snprintf(acc, sizeof acc, "  acc %.2f%%", 100 * s.accuracy);
  int world = loom_dist_world_size();   /* under a process group: all ranks' samples/s, then this rank's */
  if (!isnan(s.samples_per_s)) {
    int n = snprintf(speed, sizeof speed, "  %.0f samples/s", s.samples_per_s * world);
    if (world > 1) snprintf(speed + n, sizeof speed - (size_t)n, " (%.0f per rank)", s.samples_per_s);
  }
  bool tty = isatty(fileno(t->o.log));
  fprintf(t->o.log, "%sepoch %" PRId64 "/%d  step %" PRId64 "/%" PRId64 "  loss %.4f%s  lr %.3g%s  ETA %d:%02d%s",
          tty ? "\r" : "", t->epoch + 1, t->o.epochs, batch, nb, s.loss, acc, loom_optimizer_get_lr(t->opt, 0),
          speed, (int)(eta / 60), (int)fmod(eta, 60), tty ? "\033[K" : "\n");
  t->line_open = tty && !final;
  if (tty && final) fputc('\n', t->o.log);
  fflush(t->o.log);
}

/* ---------------------------------------------------------------- one step */

typedef enum { STEP_OK, STEP_END, STEP_FAIL, STEP_NONFINITE } step_result;

static step_result nonfinite_stop(loom_trainer *t, double loss) {
  char what[512] = "";
  /* A finite loss: are the gradients finite? (With a scaler, inf gradients
   * are expected: it skips the step.) A non-finite loss: is a parameter? */
  int r = train_first_nonfinite(t->model, !isfinite(loss), isfinite(loss) && !t->o.scaler, what, sizeof what);
  if (r < 0) return STEP_FAIL;
  if (r == 0 && isfinite(loss)) return STEP_OK;
  loom_optimizer_zero_grad(t->opt);
  core_set_error(LOOM_ERR_INVALID, "training stopped at epoch %" PRId64 ", step %" PRId64 " before the update: %s%s%s. "
                 "This usually means a learning rate too high for the model (try a smaller one), a loss scale "
                 "too large, or NaN / Inf in the data", t->epoch + 1, t->step + 1,
                 isfinite(loss) ? "" : isnan(loss) ? "loss is NaN" : "loss is Inf",
                 r && !isfinite(loss) ? "; " : r ? "" : " (the parameters are still finite)", r ? what : "");
  return STEP_NONFINITE;
}

static step_result one_step(loom_trainer *t) {
  loom_scope_begin();
  loom_tensor *x, *y, *logits = NULL;
  loom_clear_error();
  if (!loom_loader_next(t->loader, &x, &y)) {
    loom_scope_end();
    return loom_last_status() == LOOM_OK ? STEP_END : STEP_FAIL;
  }
  int64_t b = loom_size(x, 0);
  loom_tensor *loss = t->o.loss(t->model, x, y, &logits, t->o.loss_user);
  if (loss && loom_numel(loss) != 1)
    loss = NULL, core_set_error(LOOM_ERR_INVALID, "training step: the loss has shape %s, not one element",
                                loom_shape_str(loom_shape_of(loss)));
  loom_tensor *root = loss && t->o.scaler ? loom_grad_scaler_scale(t->o.scaler, loss) : loss;
  int st = root ? loom_backward(root, NULL, false) : (int)loom_last_status();
  double c = -1, lv = st ? NAN : train_read_loss(loss, logits, y, &c);
  if (!st && isnan(lv) && loom_last_status() != LOOM_OK) st = loom_last_status();   /* the read failed */
  step_result r = st ? STEP_FAIL : STEP_OK;
  bool check = t->o.check_every > 0 && (t->step + 1) % t->o.check_every == 0;
  if (!st && (check || !isfinite(lv))) r = nonfinite_stop(t, lv);
  if (r == STEP_OK) {
    bool skipped = false;
    st = t->o.scaler ? loom_grad_scaler_step(t->o.scaler, t->opt, &skipped) : loom_optimizer_step(t->opt);
    if (!st && t->o.scaler) st = loom_grad_scaler_update(t->o.scaler);
    loom_optimizer_zero_grad(t->opt);
    if (!st && t->sched && !t->o.sched_per_epoch) st = loom_scheduler_step(t->sched);
    if (st) r = STEP_FAIL;
  }
  loom_scope_end();
  if (r != STEP_OK) return r;
  t->step++;
  t->loss_sum += lv * (double)b;
  t->seen += b;
  if (c >= 0) t->correct += c, t->counted += b;
  if (++t->fit_steps == 1) t->timed_start = now_s();
  else t->timed_samples += b, t->timed_end = now_s();
  return STEP_OK;
}

/* ---------------------------------------------------------------- loops */

static bool install_handlers(loom_trainer *t) {
  if (t->handlers || t->o.no_signal_handlers) return false;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  stop_signal = 0;
  sigaction(SIGINT, &sa, &t->old_int);
  sigaction(SIGTERM, &sa, &t->old_term);
  return t->handlers = true;
}

static void restore_handlers(loom_trainer *t, bool mine) {
  if (!mine) return;
  sigaction(SIGINT, &t->old_int, NULL);
  sigaction(SIGTERM, &t->old_term, NULL);
  t->handlers = false;
}

/* Under a process group, a signal, an on_step stop or a NaN / Inf on any rank
 * stops every rank after the same step: the flags are all-reduced (max). */
static int agree_on_stop(int *stop, int *bad) {
  if (loom_dist_world_size() == 1) return LOOM_OK;
  int32_t flags[3] = {(int32_t)stop_signal, (int32_t)(*stop != 0), (int32_t)(*bad != 0)};
  loom_scope_begin();
  loom_tensor *f = loom_from_host(flags, LOOM_SHAPE(3), LOOM_I32, loom_dist_device());
  int st = f ? loom_all_reduce(f, LOOM_REDUCE_MAX) : (int)loom_last_status();
  if (!st) st = loom_to_host(f, flags, sizeof flags);   /* one copy back, also from a GPU */
  if (!st) {
    if (flags[0]) stop_signal = (sig_atomic_t)flags[0];
    *stop = flags[1];
    *bad = flags[2];
  }
  loom_scope_end();
  return st;
}

/* Under a process group each rank evaluates its shard: the means are averaged
 * (every rank has the same number of samples, DistributedSampler's padding). */
static int average_eval(double *loss, double *acc) {
  if (loom_dist_world_size() == 1) return LOOM_OK;
  double v[2] = {*loss, isnan(*acc) ? 0 : *acc};
  loom_scope_begin();
  loom_tensor *m = loom_from_host(v, LOOM_SHAPE(2), LOOM_F64, loom_dist_device());
  int st = m ? loom_all_reduce(m, LOOM_REDUCE_AVG) : (int)loom_last_status();
  if (!st) st = loom_to_host(m, v, sizeof v);
  if (!st) {
    *loss = v[0];
    if (!isnan(*acc)) *acc = v[1];
  }
  loom_scope_end();
  return st;
}

static bool max_reached(const loom_trainer *t) { return t->o.max_steps > 0 && t->step >= t->o.max_steps; }

/* After a signal: a checkpoint (when there is a folder) and INTERRUPTED. */
static loom_train_status interrupted(loom_trainer *t) {
  say(t, "%s received: stopping at step %" PRId64, stop_signal == SIGTERM ? "SIGTERM" : "SIGINT", t->step);
  if (t->dir && t->saved_step != t->step && loom_trainer_save(t, NULL) != 0) return LOOM_TRAIN_FAILED;
  return LOOM_TRAIN_INTERRUPTED;
}

static loom_train_status epoch_steps(loom_trainer *t) {
  while (!max_reached(t)) {
    step_result r = one_step(t);
    if (r == STEP_END) break;
    if (r == STEP_FAIL) return LOOM_TRAIN_FAILED;
    int bad = r == STEP_NONFINITE;
    int stop = !bad && t->o.on_step ? t->o.on_step(t, t->step, t->loss_sum / (double)t->seen, t->o.step_user) : 0;
    if (agree_on_stop(&stop, &bad)) return LOOM_TRAIN_FAILED;
    if (bad && r != STEP_NONFINITE)
      core_set_error(LOOM_ERR_INVALID, "training stopped at step %" PRId64 ": another rank found NaN / Inf (its "
                     "message is on its output)", t->step);
    if (bad) return LOOM_TRAIN_NONFINITE; /* the caller prints loom_last_error(): once */
    if (stop_signal) return interrupted(t);
    if (stop) return LOOM_TRAIN_STOPPED;
    if (t->dir && t->o.checkpoint_every > 0 && t->step % t->o.checkpoint_every == 0 && loom_trainer_save(t, NULL))
      return LOOM_TRAIN_FAILED;
    /* Counted within the epoch, so every epoch logs at the same steps. */
    if (t->o.log_every > 0 && loom_loader_position(t->loader).batch % t->o.log_every == 0) print_progress(t, false);
  }
  return LOOM_TRAIN_DONE;
}

loom_train_status loom_train_epoch(loom_trainer *t) {
  if (!t) return core_set_error(LOOM_ERR_INVALID, "loom_train_epoch: trainer is NULL"), LOOM_TRAIN_FAILED;
  bool mine = install_handlers(t);
  if (t->fit_start == 0) t->fit_start = now_s();
  loom_train_status s = LOOM_TRAIN_DONE;
  if (!t->positioned && loom_loader_start_epoch(t->loader, t->epoch) != 0) s = LOOM_TRAIN_FAILED;
  if (!t->positioned) t->loss_sum = t->correct = 0, t->seen = t->counted = 0;
  t->positioned = false;
  loom_module_train(t->model, true);
  if (s == LOOM_TRAIN_DONE) s = epoch_steps(t);
  bool finished = s == LOOM_TRAIN_DONE &&
                  loom_loader_position(t->loader).batch >= loom_loader_num_batches(t->loader);
  if (s == LOOM_TRAIN_DONE && !finished) t->positioned = true;   /* max_steps mid-epoch */
  if (finished) {
    bool tty = isatty(fileno(t->o.log));
    int64_t batch = loom_loader_position(t->loader).batch;
    if (tty || t->o.log_every <= 0 || batch % t->o.log_every != 0) print_progress(t, true);
    if (t->sched && t->o.sched_per_epoch && loom_scheduler_step(t->sched) != 0) s = LOOM_TRAIN_FAILED;
    t->epoch++;
    if (s == LOOM_TRAIN_DONE && t->o.eval_loader) {
      if (loom_evaluate_fn(t->model, t->o.eval_loader, t->o.loss, t->o.loss_user, &t->eval_loss, &t->eval_acc) ||
          average_eval(&t->eval_loss, &t->eval_acc))
        s = LOOM_TRAIN_FAILED;
      else
        say(t, "epoch %" PRId64 "/%d  eval loss %.4f  eval acc %.2f%%", t->epoch, t->o.epochs, t->eval_loss,
            100 * t->eval_acc);
    }
    int no_stop = 0, no_bad = 0;
    if (s == LOOM_TRAIN_DONE && agree_on_stop(&no_stop, &no_bad)) s = LOOM_TRAIN_FAILED;
    if (s == LOOM_TRAIN_DONE && stop_signal) s = interrupted(t);
    if (s == LOOM_TRAIN_DONE && t->dir && t->o.checkpoint_every == 0 && loom_trainer_save(t, NULL)) s = LOOM_TRAIN_FAILED;
  }
  restore_handlers(t, mine);
  return s;
}

loom_train_status loom_trainer_fit(loom_trainer *t) {
  if (!t) return core_set_error(LOOM_ERR_INVALID, "loom_trainer_fit: trainer is NULL"), LOOM_TRAIN_FAILED;
  bool mine = install_handlers(t);
  t->fit_start = now_s();
  t->fit_steps = t->timed_samples = 0;
  t->timed_end = 0;
  loom_train_status s = LOOM_TRAIN_DONE;
  while (s == LOOM_TRAIN_DONE && t->epoch < t->o.epochs && !max_reached(t)) s = loom_train_epoch(t);
  if (s == LOOM_TRAIN_DONE && t->dir && t->saved_step != t->step && loom_trainer_save(t, NULL)) s = LOOM_TRAIN_FAILED;
  restore_handlers(t, mine);
  return s;
}
