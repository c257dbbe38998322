/* A model of the zoo (loom/models.h) trained on Fashion-MNIST with the usual
 * CIFAR ResNet recipe: ResNet-18 by default, with the CIFAR stem (3x3 stride-1
 * conv1, no max pool), one input channel and 10 classes, on the images
 * zero-padded from 28x28 to 32x32; SGD lr 0.1, momentum 0.9, weight decay
 * 5e-4, batch 128, cosine annealing over all steps (or one-cycle), random
 * crop with padding 4 and horizontal flips, cross-entropy, 10 epochs.
 *
 *   resnet_train [--model NAME] [--epochs N] [--batch-size N] [--lr X] [--momentum X]
 *                [--weight-decay X] [--nesterov] [--schedule cosine|onecycle] [--no-augment]
 *                [--device cpu|cuda[:N]] [--dtype f32|bf16] [--tf32] [--data DIR] [--limit N]
 *                [--test-limit N] [--seed N] [--checkpoint DIR] [--resume] [--log-every N]
 *                [--threads N]
 *
 * Models whose default input is 28x28 (mlp, seed_cnn, lenet5) get the images
 * as they are; every other image model gets them padded to 32x32. Training
 * runs in the loom_trainer helper (loom/train.h): progress lines, NaN / Inf
 * checks, a checkpoint at the end of every epoch (the last 3 kept), SIGINT /
 * SIGTERM saving at the next step and --resume. Then prints the test accuracy,
 * the training time and throughput, the time per epoch and, after a --limit
 * run, the time 10 epochs on all the training images would take, extrapolated.
 * tools/bench_resnet_torch.py runs the same recipe in PyTorch and prints the
 * same lines. */
#include "example_util.h" /* first: it sets _POSIX_C_SOURCE */

#include <loom/models.h>
#include <loom/train.h>
#include <string.h>

#define PROG "resnet_train"
#define CLASSES 10
#define FULL_EPOCHS 10 /* the extrapolation: 10 epochs on all the training images */
static const float PIXEL_MEAN = 0.2860f, PIXEL_STD = 0.3530f; /* Fashion-MNIST training set */

typedef struct options {
  const char *model, *data, *device, *checkpoint, *schedule, *dtype;
  int epochs, log_every, resume, nesterov, no_augment, threads, tf32;
  long batch_size, limit, test_limit;
  double lr, momentum, weight_decay;
  unsigned long seed;
  int skip_corrupt, any_config; /* --resume-skip-corrupt, --resume-any-config */
} options;

/* What the loss function and the per-step callback share. */
typedef struct run_state {
  bool autocast;             /* bf16 autocast region around forward and loss (CUDA) */
  loom_loader *loader;
  double t_mark;             /* clock at the end of the last epoch's last step (or the fit's start) */
  double *epoch_s;           /* wall time of each epoch of this run (index = epoch, 0-based) */
  bool *partial;             /* the epoch was resumed part-way: its time covers only the rest */
  int64_t start_batch;       /* loader batch at the fit's start (> 0 after a resume mid-epoch) */
  int64_t start_epoch;
  int64_t epochs;            /* entries of epoch_s and partial */
  int64_t steps;             /* steps run in this fit */
} run_state;

static void usage(FILE *to) {
  fprintf(to,
          "usage: " PROG " [--model NAME] [--epochs N] [--batch-size N] [--lr X] [--momentum X]\n"
          "                    [--weight-decay X] [--nesterov] [--schedule cosine|onecycle] [--no-augment]\n"
          "                    [--device cpu|cuda[:N]] [--dtype f32|bf16] [--tf32] [--data DIR] [--limit N]\n"
          "                    [--test-limit N] [--seed N] [--checkpoint DIR] [--resume] [--log-every N]\n"
          "                    [--threads N]\n"
          "defaults: --model resnet18 (CIFAR stem, 1 input channel, 10 classes) --epochs 10 --batch-size 128\n"
          "          --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --schedule cosine (over all steps)\n"
          "          --device cuda when a GPU is visible, else cpu; --dtype f32 (bf16: autocast, CUDA only)\n"
          "          TF32 off (--tf32: TF32 tensor cores for f32 matmuls and convs on CUDA)\n"
          "          --data /usr/share/datasets/fashion-mnist --limit 0 (all 60000 training images)\n"
          "          --test-limit 0 (all 10000 test images) --seed 1 --checkpoint checkpoints --log-every 50\n"
          "          --threads 0 (the OpenMP default)\n"
          "Images are zero-padded to 32x32 unless the model takes 28x28 (mlp, seed_cnn, lenet5); training\n"
          "uses a random crop with padding 4 and horizontal flips unless --no-augment.\n"
          "--resume continues from the newest checkpoint in the --checkpoint folder (same flags);\n"
          "  --resume-skip-corrupt passes over a corrupt newest one, --resume-any-config other settings.\n"
          "SIGINT / SIGTERM save a checkpoint at the next step boundary and stop.\n");
}

static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    if (!strcmp(a, "--resume")) { o->resume = 1; continue; }
    if (!strcmp(a, "--resume-skip-corrupt")) { o->resume = o->skip_corrupt = 1; continue; }
    if (!strcmp(a, "--resume-any-config")) { o->resume = o->any_config = 1; continue; }
    if (!strcmp(a, "--nesterov")) { o->nesterov = 1; continue; }
    if (!strcmp(a, "--no-augment")) { o->no_augment = 1; continue; }
    if (!strcmp(a, "--tf32")) { o->tf32 = 1; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, PROG ": unknown option or missing value: %s\n", a);
      return -1;
    }
    const char *v = argv[++i];
    long n;
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--checkpoint")) o->checkpoint = v;
    else if (!strcmp(a, "--schedule")) {
      if (strcmp(v, "cosine") && strcmp(v, "onecycle")) {
        fprintf(stderr, PROG ": --schedule is cosine or onecycle, got '%s'\n", v);
        return -1;
      }
      o->schedule = v;
    } else if (!strcmp(a, "--dtype")) {
      if (strcmp(v, "f32") && strcmp(v, "bf16")) {
        fprintf(stderr, PROG ": --dtype is f32 or bf16, got '%s'\n", v);
        return -1;
      }
      o->dtype = v;
    }
    else if (!strcmp(a, "--epochs")) { if (ex_parse_long(PROG, a, v, 1, INT_MAX, &n)) return -1; o->epochs = (int)n; }
    else if (!strcmp(a, "--log-every")) { if (ex_parse_long(PROG, a, v, 1, INT_MAX, &n)) return -1; o->log_every = (int)n; }
    else if (!strcmp(a, "--threads")) { if (ex_parse_long(PROG, a, v, 0, INT_MAX, &n)) return -1; o->threads = (int)n; }
    else if (!strcmp(a, "--batch-size")) { if (ex_parse_long(PROG, a, v, 1, LONG_MAX, &o->batch_size)) return -1; }
    else if (!strcmp(a, "--limit")) { if (ex_parse_long(PROG, a, v, 1, LONG_MAX, &o->limit)) return -1; }
    else if (!strcmp(a, "--test-limit")) { if (ex_parse_long(PROG, a, v, 1, LONG_MAX, &o->test_limit)) return -1; }
    else if (!strcmp(a, "--seed")) { if (ex_parse_long(PROG, a, v, 0, LONG_MAX, &n)) return -1; o->seed = (unsigned long)n; }
    else if (!strcmp(a, "--lr")) { if (ex_parse_double(PROG, a, v, 0, 1, &o->lr)) return -1; }
    else if (!strcmp(a, "--momentum")) { if (ex_parse_double(PROG, a, v, 0, 0, &o->momentum)) return -1; }
    else if (!strcmp(a, "--weight-decay")) { if (ex_parse_double(PROG, a, v, 0, 0, &o->weight_decay)) return -1; }
    else {
      fprintf(stderr, PROG ": unknown option %s\n", a);
      return -1;
    }
    if (o->epochs > 100000 || o->threads > 4096) {
      fprintf(stderr, PROG ": %s %s is out of range\n", a, v);
      return -1;
    }
  }
  if (o->nesterov && o->momentum == 0) {
    fprintf(stderr, PROG ": --nesterov needs --momentum > 0\n");
    return -1;
  }
  return 0;
}

/* Cross-entropy of the model's scores; forward and loss inside a bf16
 * autocast region when asked (matmuls and convs in bf16, the loss in f32). */
static loom_tensor *loss_fn(loom_module *model, loom_tensor *x, loom_tensor *y, loom_tensor **logits, void *user) {
  const run_state *r = user;
  if (r->autocast && loom_autocast_begin(LOOM_CUDA, LOOM_BF16)) return NULL;
  loom_tensor *out = loom_forward(model, x);
  loom_tensor *loss = loom_cross_entropy(out, y, NULL);
  if (r->autocast) loom_autocast_end();
  *logits = out;
  return loss;
}

/* After every step: the wall time of each epoch, taken when its last batch is done. */
static int on_step(loom_trainer *t, int64_t step, double loss, void *user) {
  (void)t, (void)step, (void)loss;
  run_state *r = user;
  r->steps++;
  loom_loader_pos p = loom_loader_position(r->loader);
  if (p.batch < loom_loader_num_batches(r->loader) || p.epoch < 0 || p.epoch >= r->epochs) return 0;
  double now = ex_now();
  r->epoch_s[p.epoch] = now - r->t_mark;
  r->partial[p.epoch] = p.epoch == r->start_epoch && r->start_batch > 0;
  r->t_mark = now;
  return 0;
}

/* One batch of zeros through the model (eval mode, no autograd): a model that
 * cannot take [N, 1, side, side] images says so here, before any training. */
static int probe(loom_module *net, int side, loom_device dev, bool autocast) {
  loom_module_train(net, false);
  loom_no_grad_begin();
  loom_scope_begin();
  if (autocast) loom_autocast_begin(LOOM_CUDA, LOOM_BF16);
  loom_tensor *out = loom_forward(net, loom_zeros(LOOM_SHAPE(2, 1, side, side), LOOM_F32, dev));
  if (autocast) loom_autocast_end();
  int rc = 0;
  if (!out) rc = -1;
  else if (loom_ndim(out) != 2 || loom_size(out, 1) != CLASSES) {
    fprintf(stderr, PROG ": the model gives scores of shape %s, expected [N, %d]\n",
            loom_shape_str(loom_shape_of(out)), CLASSES);
    rc = -2;
  }
  loom_scope_end();
  loom_no_grad_end();
  loom_module_train(net, true);
  return rc;
}

int main(int argc, char **argv) {
  options o = {"resnet18", "/usr/share/datasets/fashion-mnist", NULL, "checkpoints", "cosine", "f32",
               10, 50, 0, 0, 0, 0, 0, 128, 0, 0, 0.1, 0.9, 5e-4, 1};
  if (parse_args(argc, argv, &o)) { usage(stderr); return 2; }

  /* The model first: an unknown name or a model that takes no images is a usage error. */
  const loom_model_info *info = loom_model_find(o.model);
  if (!info) {
    fprintf(stderr, PROG ": --model: %s\n", loom_last_error());
    return 2;
  }
  if (info->input[1] == 0) {
    fprintf(stderr, PROG ": model '%s' takes [N, %lld] vectors, not images: it cannot run on Fashion-MNIST\n",
            info->name, (long long)info->input[0]);
    return 2;
  }
  const int side = info->input[1] == 28 && info->input[2] == 28 ? 28 : 32; /* ResNet & co: padded to 32x32 */

  const bool bf16 = !strcmp(o.dtype, "bf16");
  loom_device dev;
  int dev_status = ex_device(PROG, o.device, bf16, &dev);
  if (dev_status) return dev_status;
  if (o.threads > 0) loom_set_num_threads(o.threads);
  if (o.tf32) loom_set_tf32(true);

  loom_dataset *train_ds = loom_dataset_mnist(o.data, true);
  loom_dataset *test_ds = train_ds ? loom_dataset_mnist(o.data, false) : NULL;
  if (!test_ds) {
    fprintf(stderr, PROG ": %s\n", loom_last_error());
    loom_dataset_free(train_ds);
    return 1;
  }
  const int64_t full_train = loom_dataset_len(train_ds), full_test = loom_dataset_len(test_ds);
  if (o.limit > 0) {
    loom_dataset *sub = loom_dataset_subset(train_ds, 0, o.limit);
    loom_dataset_free(train_ds);
    train_ds = sub;
  }
  if (o.test_limit > 0) {
    loom_dataset *sub = loom_dataset_subset(test_ds, 0, o.test_limit);
    loom_dataset_free(test_ds);
    test_ds = sub;
  }

  loom_manual_seed(o.seed);
  loom_model_opts mo = {.num_classes = CLASSES, .in_channels = 1, .stem = LOOM_STEM_CIFAR};
  loom_module *net = NULL;
  loom_optimizer *opt = NULL;
  loom_scheduler *sched = NULL;
  loom_loader *loader = NULL, *test_loader = NULL;
  loom_trainer *trainer = NULL;
  run_state rs = {.autocast = bf16};
  int rc = 1;
  if (!train_ds || !test_ds) goto fail;
  net = loom_model_create(o.model, &mo);
  if (!net || loom_module_to_device(net, dev)) goto fail;
  int pr = probe(net, side, dev, bf16);
  if (pr) {
    if (pr == -1)
      fprintf(stderr, PROG ": model '%s' cannot run on %dx%d Fashion-MNIST images: %s\n", o.model, side, side,
              loom_last_error());
    rc = 2;
    goto done;
  }
  opt = loom_sgd_module(net, &(loom_sgd_opts){.lr = o.lr, .momentum = o.momentum,
                                                .weight_decay = o.weight_decay, .nesterov = o.nesterov});

  /* Zero-pad 28 -> 32 with a crop of 32 from the image padded by 2 (one
   * window: exactly the padded image); augmenting pads by 4 more and takes a
   * random 32x32 window, as torchvision's RandomCrop(32, padding=4) on the
   * padded image would. Normalised after (padding is black, as in torchvision). */
  const int pad = (side - 28) / 2;
  loom_transform_opts train_tf = {.norm_channels = 1, .mean = &PIXEL_MEAN, .std = &PIXEL_STD};
  loom_transform_opts test_tf = train_tf;
  if (pad > 0) test_tf.crop_size = side, test_tf.crop_padding = pad;
  train_tf.crop_size = test_tf.crop_size, train_tf.crop_padding = test_tf.crop_padding;
  if (!o.no_augment) train_tf.crop_size = side, train_tf.crop_padding = pad + 4, train_tf.hflip = true;
  loom_loader_opts lo = {.batch_size = o.batch_size, .shuffle = true, .seed = o.seed, .device = dev,
                         .transform = train_tf};
  loader = opt ? loom_loader_new(train_ds, &lo) : NULL;
  lo = (loom_loader_opts){.batch_size = 500, .device = dev, .transform = test_tf};
  test_loader = loader ? loom_loader_new(test_ds, &lo) : NULL;
  if (!test_loader) goto fail;

  const int64_t per_epoch = loom_loader_num_batches(loader);
  if ((int64_t)o.epochs * per_epoch > 2147483647) {
    fprintf(stderr, PROG ": %d epochs of %lld steps are too many for the schedule\n", o.epochs,
            (long long)per_epoch);
    rc = 2;
    goto done;
  }
  const int total_steps = (int)(o.epochs * per_epoch);
  const bool onecycle = !strcmp(o.schedule, "onecycle");
  sched = onecycle ? loom_onecycle_lr(opt, o.lr, total_steps, NULL) : loom_cosine_annealing_lr(opt, total_steps, 0);
  rs.loader = loader;
  rs.epochs = o.epochs;
  rs.epoch_s = calloc((size_t)o.epochs, sizeof *rs.epoch_s);
  rs.partial = calloc((size_t)o.epochs, sizeof *rs.partial);
  if (!sched) goto fail;
  if (!rs.epoch_s || !rs.partial) {
    fprintf(stderr, PROG ": out of host memory\n");
    goto done;
  }

  char threads[32] = "";
  if (dev.type == LOOM_CPU) snprintf(threads, sizeof threads, ", %d threads", loom_num_threads());
  else if (o.tf32) snprintf(threads, sizeof threads, ", TF32 on");
  printf("Fashion-MNIST: %lld training images, %lld test images, %dx%d%s, device %s%s\n",
         (long long)loom_dataset_len(train_ds), (long long)loom_dataset_len(test_ds), side, side,
         pad ? " (zero-padded from 28x28)" : "", loom_device_name(dev), threads);
  printf("%s (%lld parameters%s), SGD lr %g momentum %g%s weight decay %g, %s schedule over %d steps, "
         "batch size %ld, cross-entropy, %d epochs, %s\n",
         o.model, (long long)loom_module_num_params(net, false), pad ? ", CIFAR stem" : "", o.lr, o.momentum, o.nesterov ? " (Nesterov)" : "",
         o.weight_decay, onecycle ? "one-cycle" : "cosine", total_steps, o.batch_size, o.epochs,
         bf16 ? "bf16 autocast" : "f32");
  if (o.no_augment) printf("augmentation: none\n");
  else printf("augmentation: random crop %d with padding 4, horizontal flip\n", side);
  fflush(stdout);

  char config[1024];
  snprintf(config, sizeof config,
           PROG " --model %s --epochs %d --batch-size %ld --lr %g --momentum %g --weight-decay %g%s --schedule %s%s "
           "--dtype %s --limit %ld --seed %lu --data %s",
           o.model, o.epochs, o.batch_size, o.lr, o.momentum, o.weight_decay, o.nesterov ? " --nesterov" : "",
           o.schedule, o.no_augment ? " --no-augment" : "", o.dtype, o.limit, o.seed, o.data);
  loom_trainer_opts to = {.epochs = o.epochs, .log_every = o.log_every, .check_every = 100,
                          .loss = loss_fn, .loss_user = &rs, .on_step = on_step, .step_user = &rs,
                          .checkpoint_dir = o.checkpoint, .checkpoint_prefix = o.model, .config = config,
                          .resume_skip_corrupt = o.skip_corrupt, .resume_any_config = o.any_config};
  trainer = loom_trainer_new(net, opt, sched, loader, &to);
  if (!trainer) goto fail;
  if (o.resume) {
    int found = loom_trainer_resume_latest(trainer);
    if (found < 0) goto fail;
    if (found == 0) printf("no checkpoint in %s: starting from the beginning\n", o.checkpoint);
  }
  rs.start_epoch = loom_loader_position(loader).epoch;
  rs.start_batch = loom_loader_position(loader).batch;
  rs.t_mark = ex_now();
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

  double acc;
  if (loom_evaluate_fn(net, test_loader, loss_fn, &rs, NULL, &acc)) goto fail;
  printf("test accuracy %.2f%% (%lld images)\n", 100 * acc, (long long)loom_dataset_len(test_ds));
  if (rs.steps == 0) {
    printf("training: no steps were left to run\n");
  } else if (isnan(ts.samples_per_s)) {
    printf("training: %.1f s, one step only: no samples/s after the first step\n", ts.seconds);
  } else {
    const int rate_digits = ts.samples_per_s < 100 ? 1 : 0; /* "8.4 samples/s" on a CPU, "4312" on a GPU */
    printf("training: %.1f s, %.*f samples/s (after the first step)\n", ts.seconds, rate_digits, ts.samples_per_s);
    double sum = 0;
    int full = 0;
    char list[512] = "";
    size_t len = 0;
    for (int e = 0; e < o.epochs; e++) {
      if (rs.epoch_s[e] <= 0) continue;
      if (!rs.partial[e]) sum += rs.epoch_s[e], full++;
      if (len < sizeof list - 64)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%d: %.1f s%s", len ? ", " : "", e + 1,
                                rs.epoch_s[e], rs.partial[e] ? " (resumed part-way)" : "");
    }
    if (full) printf("time per epoch: %.1f s (mean of %d; epoch %s)\n", sum / full, full, list);
    else if (len) printf("time per epoch: no whole epoch in this run (epoch %s)\n", list);
    if (o.limit > 0 && loom_dataset_len(train_ds) < full_train) {
      char b1[32], b2[32];
      double epoch_full = (double)full_train / ts.samples_per_s;
      printf("extrapolated to all %lld training images from %.*f samples/s (not measured): %s per epoch, "
             "%s for %d epochs\n", (long long)full_train, rate_digits, ts.samples_per_s, ex_hms(epoch_full, b1, sizeof b1),
             ex_hms(FULL_EPOCHS * epoch_full, b2, sizeof b2), FULL_EPOCHS);
    }
  }
  if (o.test_limit > 0 && loom_dataset_len(test_ds) < full_test)
    printf("(test accuracy on the first %lld of %lld test images: --test-limit)\n",
           (long long)loom_dataset_len(test_ds), (long long)full_test);
  printf("checkpoint saved: %s\n", loom_trainer_last_checkpoint(trainer));
  rc = 0;
  goto done;
fail:
  fprintf(stderr, PROG ": %s\n", loom_last_error());
done:
  free(rs.epoch_s);
  free(rs.partial);
  loom_trainer_free(trainer);
  loom_scheduler_free(sched);
  loom_loader_free(test_loader);
  loom_loader_free(loader);
  loom_optimizer_free(opt);
  loom_module_free(net);
  loom_dataset_free(train_ds);
  loom_dataset_free(test_ds);
  return rc;
}
