/* A character-level GPT (loom_model_gpt: Hugging Face GPT-2 names and
 * layouts) trained on a text file, then asked to continue it.
 *
 *   gpt_train [--text FILE] [--bytes] [--preset gpt2] [--layers N] [--heads N] [--embd N]
 *             [--seq-len N] [--dropout X] [--steps N] [--batch-size N] [--lr X] [--weight-decay X]
 *             [--warmup N] [--device cpu|cuda[:N]] [--dtype f32|bf16] [--checkpoint DIR]
 *             [--checkpoint-every N] [--resume] [--log-every N] [--eval-every N] [--sample N]
 *             [--prompt TEXT] [--temperature X] [--top-k N] [--seed N] [--threads N]
 *
 * Tokens are the text's characters (UTF-8 code points numbered by rank) or,
 * with --bytes, its bytes. Training windows are consecutive non-overlapping
 * runs of seq_len tokens (loom_dataset_text), the last 10 % held out for a
 * validation loss; each epoch shuffles them. AdamW (betas 0.9, 0.99), linear
 * warm-up then cosine decay, cross-entropy over every position. The loop runs
 * in loom_trainer (loom/train.h): NaN / Inf checks, checkpoints every N steps
 * and at the end (the last 3 kept), SIGINT / SIGTERM save and stop, --resume.
 * Progress lines give the loss and tokens/s; the run ends with a sampled
 * continuation (temperature, top-k). tools/bench_gpt_torch.py is the same
 * recipe in PyTorch, printing the same lines. */
#include "example_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <loom/models.h>
#include <loom/train.h>
#include <string.h>

#define PROG "gpt_train"
#define DEFAULT_TEXT "/usr/share/common-licenses/GPL-3"

typedef struct options {
  const char *text, *device, *dtype, *checkpoint, *prompt, *preset;
  long layers, heads, embd, seq_len, steps, batch_size, warmup, checkpoint_every, log_every, eval_every;
  long sample, top_k, seed, threads;
  double dropout, lr, weight_decay, temperature;
  int bytes, resume;
  int skip_corrupt, any_config; /* --resume-skip-corrupt, --resume-any-config */
} options;

/* What the loss function and the per-step callback share. */
typedef struct run_state {
  bool autocast;          /* bf16 autocast around forward and loss (CUDA) */
  loom_tensor *last;      /* the last training step's loss (detached, our reference) */
  loom_module *net;
  loom_optimizer *opt;
  loom_loader *val;
  int64_t seq_len, steps;
  long log_every, eval_every;
  double sum;             /* training losses since the last progress line */
  int64_t count;
  double val_loss;        /* the last validation loss (NAN before the first) */
  /* tokens/s: tokens of the steps after this run's first, over the time since
   * its end, validation excluded (checkpoints in between are included) */
  int64_t rows;           /* batch rows of the step in progress */
  int64_t timed_tokens;
  double t_first, t_last, eval_s;
} run_state;

static void usage(FILE *to) {
  fprintf(to,
          "usage: " PROG " [--text FILE] [--bytes] [--preset gpt2] [--layers N] [--heads N] [--embd N]\n"
          "                 [--seq-len N] [--dropout X] [--steps N] [--batch-size N] [--lr X] [--weight-decay X]\n"
          "                 [--warmup N] [--device cpu|cuda[:N]] [--dtype f32|bf16] [--checkpoint DIR]\n"
          "                 [--checkpoint-every N] [--resume] [--log-every N] [--eval-every N] [--sample N]\n"
          "                 [--prompt TEXT] [--temperature X] [--top-k N] [--seed N] [--threads N]\n"
          "defaults: --text " DEFAULT_TEXT " (characters; --bytes: bytes, vocabulary 256)\n"
          "          --layers 4 --heads 4 --embd 128 --seq-len 64 --dropout 0 (--preset gpt2: the GPT-2 124M\n"
          "          shape, 12 layers, 12 heads, 768 wide, seq-len 1024, vocabulary 50257)\n"
          "          --steps 2000 --batch-size 32 --lr 1e-3 --weight-decay 0.1 --warmup 100 (then cosine to 0)\n"
          "          --device cuda when a GPU is visible, else cpu; --dtype f32 (bf16: autocast, CUDA only)\n"
          "          --checkpoint gpt_checkpoints --checkpoint-every 500 (0: only at the end) --log-every 50\n"
          "          --eval-every 250 (0: only at the end)\n"
          "          --sample 300 tokens after training from --prompt (default: the first 16 held-out tokens)\n"
          "          --temperature 0.8 --top-k 40 --seed 1 --threads 0 (the OpenMP default)\n"
          "--resume continues from the newest checkpoint in the --checkpoint folder (same flags);\n"
          "  --resume-skip-corrupt passes over a corrupt newest one, --resume-any-config other settings.\n"
          "SIGINT / SIGTERM save a checkpoint at the next step boundary and stop.\n");
}

static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    if (!strcmp(a, "--bytes")) { o->bytes = 1; continue; }
    if (!strcmp(a, "--resume")) { o->resume = 1; continue; }
    if (!strcmp(a, "--resume-skip-corrupt")) { o->resume = o->skip_corrupt = 1; continue; }
    if (!strcmp(a, "--resume-any-config")) { o->resume = o->any_config = 1; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, PROG ": unknown option or missing value: %s\n", a);
      return -1;
    }
    const char *v = argv[++i];
    struct { const char *flag; long *dst; long lo, hi; } ints[] = {
        {"--layers", &o->layers, 1, 1000},         {"--heads", &o->heads, 1, 1000},
        {"--embd", &o->embd, 1, 1 << 16},           {"--seq-len", &o->seq_len, 2, 1 << 20},
        {"--steps", &o->steps, 1, 100000000},       {"--batch-size", &o->batch_size, 1, 1 << 20},
        {"--warmup", &o->warmup, 0, 100000000},     {"--checkpoint-every", &o->checkpoint_every, 0, LONG_MAX},
        {"--log-every", &o->log_every, 1, LONG_MAX}, {"--eval-every", &o->eval_every, 0, LONG_MAX},
        {"--sample", &o->sample, 0, 1 << 20},       {"--top-k", &o->top_k, 0, INT_MAX},
        {"--seed", &o->seed, 0, LONG_MAX},          {"--threads", &o->threads, 0, 4096}};
    struct { const char *flag; double *dst; double lo; int strict; } reals[] = {
        {"--dropout", &o->dropout, 0, 0}, {"--lr", &o->lr, 0, 1},
        {"--weight-decay", &o->weight_decay, 0, 1}, {"--temperature", &o->temperature, 0, 1}};
    int done = 0;
    for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
      if (!strcmp(a, ints[k].flag)) {
        if (ex_parse_long(PROG, a, v, ints[k].lo, ints[k].hi, ints[k].dst)) return -1;
        done = 1;
      }
    for (size_t k = 0; k < sizeof reals / sizeof *reals && !done; k++)
      if (!strcmp(a, reals[k].flag)) {
        if (ex_parse_double(PROG, a, v, reals[k].lo, reals[k].strict, reals[k].dst)) return -1;
        done = 1;
      }
    if (done) continue;
    if (!strcmp(a, "--text")) o->text = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--checkpoint")) o->checkpoint = v;
    else if (!strcmp(a, "--prompt")) o->prompt = v;
    else if (!strcmp(a, "--dtype") && (!strcmp(v, "f32") || !strcmp(v, "bf16"))) o->dtype = v;
    else if (!strcmp(a, "--preset") && !strcmp(v, "gpt2")) o->preset = v;
    else if (!strcmp(a, "--dtype") || !strcmp(a, "--preset")) {
      fprintf(stderr, PROG ": %s is %s, got '%s'\n", a, !strcmp(a, "--dtype") ? "f32 or bf16" : "gpt2", v);
      return -1;
    } else {
      fprintf(stderr, PROG ": unknown option %s\n", a);
      return -1;
    }
  }
  if (o->dropout >= 1) {
    fprintf(stderr, PROG ": --dropout needs a number < 1, got %g\n", o->dropout);
    return -1;
  }
  return 0;
}

/* Cross-entropy of the logits [B, L, V] against y [B, L] over every position. */
static loom_tensor *lm_loss(loom_module *net, loom_tensor *x, loom_tensor *y, bool autocast) {
  if (autocast && loom_autocast_begin(LOOM_CUDA, LOOM_BF16)) return NULL;
  loom_tensor *logits = loom_forward(net, x);
  loom_tensor *loss = NULL;
  if (logits) {
    int64_t v = loom_size(logits, 2);
    loss = loom_cross_entropy(loom_reshape(logits, LOOM_SHAPE(-1, v)), loom_reshape(y, LOOM_SHAPE(-1)), NULL);
  }
  if (autocast) loom_autocast_end();
  return loss;
}

static loom_tensor *train_loss(loom_module *net, loom_tensor *x, loom_tensor *y, loom_tensor **logits, void *user) {
  run_state *r = user;
  *logits = NULL; /* no accuracy to count */
  r->rows = loom_size(x, 0);
  loom_tensor *loss = lm_loss(net, x, y, r->autocast);
  loom_release(r->last);
  r->last = loss ? loom_retain(loom_detach(loss)) : NULL;
  return loss;
}

static loom_tensor *eval_loss(loom_module *net, loom_tensor *x, loom_tensor *y, loom_tensor **logits, void *user) {
  *logits = NULL;
  return lm_loss(net, x, y, ((run_state *)user)->autocast);
}

static int evaluate(run_state *r, int64_t step) {
  double t0 = ex_now();
  if (loom_evaluate_fn(r->net, r->val, eval_loss, r, &r->val_loss, NULL)) return -1;
  r->eval_s += ex_now() - t0;
  printf("step %lld: val loss %.4f\n", (long long)step, r->val_loss);
  fflush(stdout);
  return 0;
}

/* After every step: the progress line and the validation loss. */
static int on_step(loom_trainer *t, int64_t step, double epoch_loss, void *user) {
  (void)epoch_loss;
  (void)t;
  run_state *r = user;
  if (r->last) r->sum += loom_item(r->last), r->count++; /* reading the loss waits for the step */
  r->t_last = ex_now();
  if (r->t_first == 0) r->t_first = r->t_last;
  else r->timed_tokens += r->rows * r->seq_len;
  if (step % r->log_every == 0 || step == r->steps) {
    char speed[48] = "";
    if (r->timed_tokens)
      snprintf(speed, sizeof speed, "  %.0f tokens/s", (double)r->timed_tokens / (r->t_last - r->t_first - r->eval_s));
    printf("step %lld/%lld  loss %.4f  lr %.2e%s\n", (long long)step, (long long)r->steps,
           r->count ? r->sum / (double)r->count : NAN, loom_optimizer_get_lr(r->opt, 0), speed);
    fflush(stdout);
    r->sum = 0, r->count = 0;
  }
  if (r->eval_every > 0 && step % r->eval_every == 0 && step < r->steps && evaluate(r, step)) return -1;
  return 0;
}

/* --sample tokens after the prompt, printed as text. */
static int sample(loom_module *net, const loom_dataset *ds, const options *o, const int64_t *fallback, int64_t nfb,
                  int64_t n_ctx, loom_device dev) {
  int64_t *ids = malloc(sizeof *ids * (size_t)(n_ctx + 1));
  char *text = NULL;
  int rc = -1;
  if (!ids) return -1;
  int64_t n = nfb < n_ctx ? nfb : n_ctx;
  if (o->prompt) n = loom_dataset_text_encode(ds, o->prompt, ids, n_ctx);
  else memcpy(ids, fallback, (size_t)n * sizeof *ids);
  if (n == 0) fprintf(stderr, PROG ": --prompt is empty\n");
  if (n <= 0) goto out;
  loom_scope_begin();
  loom_tensor *prompt = loom_from_host(ids, LOOM_SHAPE(1, n), LOOM_I64, dev);
  loom_sample_opts so = {.temperature = o->temperature, .top_k = (int)o->top_k, .seed = (uint64_t)o->seed};
  loom_tensor *out = prompt ? loom_gpt_generate(net, prompt, o->sample, &so) : NULL;
  int64_t total = n + o->sample, *all = out ? malloc(sizeof *all * (size_t)total) : NULL;
  if (all && !loom_to_host(out, all, sizeof *all * (size_t)total)) {
    int64_t need = loom_dataset_text_decode(ds, all, total, NULL, 0);
    text = need >= 0 ? malloc((size_t)need + 1) : NULL;
    if (text && loom_dataset_text_decode(ds, all, total, text, (size_t)need + 1) >= 0) {
      printf("sample (temperature %g, top-k %ld, %ld tokens after a prompt of %lld):\n%s\n", o->temperature,
             o->top_k, o->sample, (long long)n, text);
      rc = 0;
    }
  }
  free(all);
  loom_scope_end();
out:
  if (rc && n > 0) fprintf(stderr, PROG ": sampling: %s\n", loom_last_error());
  free(text);
  free(ids);
  return rc;
}

int main(int argc, char **argv) {
  options o = {.text = DEFAULT_TEXT, .dtype = "f32", .checkpoint = "gpt_checkpoints", .layers = 4, .heads = 4,
               .embd = 128, .seq_len = 64, .steps = 2000, .batch_size = 32, .warmup = 100,
               .checkpoint_every = 500, .log_every = 50, .eval_every = 250, .sample = 300, .top_k = 40,
               .seed = 1, .lr = 1e-3, .weight_decay = 0.1, .temperature = 0.8};
  /* The preset first, so that flags after it can still change a part of it. */
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--preset") && !strcmp(argv[i + 1], "gpt2"))
      o.layers = 12, o.heads = 12, o.embd = 768, o.seq_len = 1024;
  if (parse_args(argc, argv, &o)) { usage(stderr); return 2; }
  if (o.embd % o.heads) {
    fprintf(stderr, PROG ": --embd %ld is not a multiple of --heads %ld\n", o.embd, o.heads);
    return 2;
  }
  const bool bf16 = !strcmp(o.dtype, "bf16");
  loom_device dev;
  int drc = ex_device(PROG, o.device, bf16, &dev);
  if (drc) return drc;
  if (o.threads > 0) loom_set_num_threads((int)o.threads);

  loom_dataset *ds = loom_dataset_text(o.text, o.seq_len, o.bytes);
  if (!ds) {
    fprintf(stderr, PROG ": %s\n", loom_last_error());
    return 1;
  }
  const int64_t windows = loom_dataset_len(ds), text_vocab = loom_dataset_text_vocab(ds, NULL, 0);
  const int64_t n_val = windows / 10 > 0 ? windows / 10 : 1;
  if (windows < 2) {
    fprintf(stderr, PROG ": %s has %lld window(s) of %ld tokens: at least 2 are needed (one held out); "
                    "use a longer text or a smaller --seq-len\n", o.text, (long long)windows, o.seq_len);
    loom_dataset_free(ds);
    return 1;
  }
  const int64_t vocab = o.preset ? 50257 : text_vocab;
  if (vocab < text_vocab) {
    fprintf(stderr, PROG ": the text has %lld distinct characters, more than GPT-2's vocabulary of %lld: use --bytes\n",
            (long long)text_vocab, (long long)vocab);
    loom_dataset_free(ds);
    return 2;
  }
  loom_dataset *train_ds = loom_dataset_subset(ds, 0, windows - n_val);
  loom_dataset *val_ds = train_ds ? loom_dataset_subset(ds, windows - n_val, n_val) : NULL;
  int64_t prompt_ids[16] = {0}, n_prompt = o.seq_len < 16 ? o.seq_len : 16;

  loom_manual_seed((uint64_t)o.seed);
  loom_model_opts mo = {.vocab_size = vocab, .max_len = o.seq_len, .embed_dim = o.embd, .num_layers = (int)o.layers,
                        .num_heads = (int)o.heads, .dropout = o.dropout, .set_dropout = true};
  run_state rs = {.autocast = bf16, .seq_len = o.seq_len, .steps = o.steps, .log_every = o.log_every,
                  .eval_every = o.eval_every, .val_loss = NAN};
  loom_module *net = NULL;
  loom_optimizer *opt = NULL;
  loom_scheduler *sched = NULL;
  loom_loader *loader = NULL;
  loom_trainer *trainer = NULL;
  int rc = 1;
  if (!val_ds) goto fail;
  {
    /* The default prompt: the start of the held-out text. */
    int64_t *xy = malloc(2 * sizeof *xy * (size_t)o.seq_len);
    if (!xy || loom_dataset_get(val_ds, 0, xy, xy + o.seq_len)) {
      free(xy);
      goto fail;
    }
    memcpy(prompt_ids, xy, sizeof *xy * (size_t)n_prompt);
    free(xy);
  }
  net = loom_model_gpt(&mo);
  if (!net || loom_module_to_device(net, dev)) goto fail;
  rs.net = net;
  opt = loom_adamw_module(net, &(loom_adam_opts){.lr = o.lr, .beta1 = 0.9, .beta2 = 0.99,
                                                   .weight_decay = o.weight_decay});
  rs.opt = opt;
  loom_loader_opts lo = {.batch_size = o.batch_size, .shuffle = true, .seed = (uint64_t)o.seed, .device = dev};
  loader = opt ? loom_loader_new(train_ds, &lo) : NULL;
  lo = (loom_loader_opts){.batch_size = o.batch_size, .device = dev};
  rs.val = loader ? loom_loader_new(val_ds, &lo) : NULL;
  if (!rs.val) goto fail;
  const int warmup = (int)(o.warmup < o.steps ? o.warmup : o.steps - 1);
  loom_scheduler *cosine = loom_cosine_annealing_lr(opt, (int)(o.steps - warmup), 0);
  if (warmup > 0 && cosine) {
    loom_scheduler *parts[2] = {loom_linear_lr(opt, 0.01, 1.0, warmup), cosine};
    sched = parts[0] ? loom_sequential_lr(opt, parts, 2, &warmup) : NULL;
    if (!sched) loom_scheduler_free(parts[0]), loom_scheduler_free(cosine);
  } else {
    sched = cosine;
  }
  if (!sched) goto fail;

  const int64_t per_epoch = loom_loader_num_batches(loader);
  char where[288]; /* a device name is up to 256 bytes */
  if (dev.type == LOOM_CPU) snprintf(where, sizeof where, "%d threads", loom_num_threads());
  else {
    loom_device_info di;
    snprintf(where, sizeof where, "%s", loom_cuda_device_info(dev.index, &di) ? "?" : di.name);
  }
  printf("text: %s, %lld tokens (vocab %lld %s), %lld training windows, %lld held out, seq_len %ld\n", o.text,
         (long long)(windows * o.seq_len + 1), (long long)text_vocab, o.bytes ? "bytes" : "characters",
         (long long)(windows - n_val), (long long)n_val, o.seq_len);
  printf("model: gpt2 (n_layer %ld, n_head %ld, n_embd %ld, n_ctx %ld, vocab %lld): %lld parameters "
         "(tied lm_head counted once)\n", o.layers, o.heads, o.embd, o.seq_len, (long long)vocab,
         (long long)loom_module_num_params(net, false));
  printf("AdamW lr %g betas (0.9, 0.99) weight decay %g, warmup %d then cosine over %ld steps, batch size %ld, "
         "device %s, %s, %s\n", o.lr, o.weight_decay, warmup, o.steps, o.batch_size, loom_device_name(dev), where,
         bf16 ? "bf16 autocast" : "f32");
  fflush(stdout);

  char config[1024];
  snprintf(config, sizeof config,
           PROG " --text %s%s --layers %ld --heads %ld --embd %ld --seq-len %ld --dropout %g --steps %ld "
           "--batch-size %ld --lr %g --weight-decay %g --warmup %ld --dtype %s --seed %ld",
           o.text, o.bytes ? " --bytes" : "", o.layers, o.heads, o.embd, o.seq_len, o.dropout, o.steps, o.batch_size,
           o.lr, o.weight_decay, o.warmup, o.dtype, o.seed);
  loom_trainer_opts to = {.epochs = (int)((o.steps + per_epoch - 1) / per_epoch), .max_steps = o.steps,
                          .log_every = -1, .check_every = 100, .loss = train_loss, .loss_user = &rs,
                          .on_step = on_step, .step_user = &rs, .checkpoint_dir = o.checkpoint,
                          .checkpoint_prefix = "gpt", .config = config,
                          .resume_skip_corrupt = o.skip_corrupt, .resume_any_config = o.any_config,
                          /* 0: only at the end (the trainer's 0 would mean every epoch) */
                          .checkpoint_every = o.checkpoint_every > 0 ? o.checkpoint_every : o.steps};
  trainer = loom_trainer_new(net, opt, sched, loader, &to);
  if (!trainer) goto fail;
  if (o.resume) {
    int found = loom_trainer_resume_latest(trainer);
    if (found < 0) goto fail;
    if (found == 0) printf("no checkpoint in %s: starting from the beginning\n", o.checkpoint);
  }
  loom_train_status st = loom_trainer_fit(trainer);
  loom_train_stats ts = loom_trainer_stats(trainer);
  if (st == LOOM_TRAIN_INTERRUPTED) {
    printf("stopped; checkpoint %s; continue with the same flags and --resume\n", loom_trainer_last_checkpoint(trainer));
    rc = 130;
    goto done;
  }
  if (st != LOOM_TRAIN_DONE) {
    fprintf(stderr, PROG ": training %s: %s\n", loom_train_status_name(st), loom_last_error());
    goto done;
  }
  if (evaluate(&rs, ts.step)) goto fail;
  if (!rs.timed_tokens)
    printf("training: %.1f s, no tokens/s (fewer than two steps in this run)\n", ts.seconds);
  else
    printf("training: %.1f s, %.0f tokens/s (after the first step, validation excluded)\n", ts.seconds,
           (double)rs.timed_tokens / (rs.t_last - rs.t_first - rs.eval_s));
  loom_memory_stats ms;
  if (dev.type == LOOM_CUDA && !loom_memory_stats_get(dev, &ms))
    printf("peak memory: %.0f MiB\n", (double)ms.peak_allocated / (1024.0 * 1024.0));
  if (o.sample > 0 && sample(net, ds, &o, prompt_ids, n_prompt, o.seq_len, dev)) goto done;
  rc = 0;
  goto done;
fail:
  fprintf(stderr, PROG ": %s\n", loom_last_error());
done:
  loom_release(rs.last);
  loom_trainer_free(trainer);
  loom_scheduler_free(sched);
  loom_loader_free(rs.val);
  loom_loader_free(loader);
  loom_optimizer_free(opt);
  loom_module_free(net);
  loom_dataset_free(train_ds);
  loom_dataset_free(val_ds);
  loom_dataset_free(ds);
  return rc;
}
