/* Data-parallel training on Fashion-MNIST: one process per GPU (NCCL) or per
 * CPU slot (MPI, or TCP outside an MPI job), any image model of the zoo (the
 * seed CNN by default).
 *
 *   mpirun -np 2 ddp_train [--model NAME] [--epochs N] [--batch-size N] ...
 *   torchrun --nproc-per-node 2 --no-python ddp_train ...   (GPUs: NCCL; CPU: TCP)
 *   srun -n 2 --mpi=pmix ddp_train ...    (or without PMI: export MASTER_ADDR, MASTER_PORT)
 *
 * --batch-size is the global batch: each of the N ranks takes batch / N
 * samples a step, so N processes train like one with the same global batch.
 * The same program without a launcher is one process. What changes against
 * a single-process trainer is three calls: loom_dist_init, loom_ddp_new and
 * (for the output) loom_dist_rank; the loader shards itself and the trainer
 * lets rank 0 alone log and write checkpoints. */
#include "fashion_common.h" /* first: it sets _POSIX_C_SOURCE */

#include <loom/dist.h>
#include <loom/train.h>

#define PROG "ddp_train"

typedef struct options {
  const char *model, *data, *device, *checkpoint;
  long epochs, batch, limit, log_every;
  double lr, momentum, bucket_mb;
  int resume;
} options;

static void usage(FILE *to) {
  fprintf(to, "usage: [mpirun -np N | torchrun --nproc-per-node N --no-python | srun -n N] ddp_train\n"
              "       [--model NAME] [--epochs N] [--batch-size N] [--lr X] [--momentum X] [--data DIR]\n"
              "       [--limit N] [--device cpu|cuda] [--checkpoint DIR] [--resume] [--bucket-mb X] [--log-every N]\n"
              "defaults: --model seed_cnn --epochs 1 --batch-size 64 (global) --lr 0.01 --momentum 0.9\n"
              "          --data /usr/share/datasets/fashion-mnist --bucket-mb 25 (under 1, the first bucket too);\n"
              "          no checkpoints;\n"
              "          the device is cuda:LOCAL_RANK when GPUs are visible, else cpu\n");
}

static int parse_args(int argc, char **argv, options *o) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    if (!strcmp(a, "--resume")) { o->resume = 1; continue; }
    if (i + 1 >= argc) {
      fprintf(stderr, PROG ": unknown option or missing value: %s\n", a);
      return -1;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--data")) o->data = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--checkpoint")) o->checkpoint = v;
    else if (!strcmp(a, "--epochs")) { if (ex_parse_long(PROG, a, v, 1, 100000, &o->epochs)) return -1; }
    else if (!strcmp(a, "--batch-size")) { if (ex_parse_long(PROG, a, v, 1, 1 << 24, &o->batch)) return -1; }
    else if (!strcmp(a, "--limit")) { if (ex_parse_long(PROG, a, v, 1, LONG_MAX, &o->limit)) return -1; }
    else if (!strcmp(a, "--log-every")) { if (ex_parse_long(PROG, a, v, 1, INT_MAX, &o->log_every)) return -1; }
    else if (!strcmp(a, "--lr")) { if (ex_parse_double(PROG, a, v, 0, 1, &o->lr)) return -1; }
    else if (!strcmp(a, "--momentum")) { if (ex_parse_double(PROG, a, v, 0, 0, &o->momentum)) return -1; }
    else if (!strcmp(a, "--bucket-mb")) { if (ex_parse_double(PROG, a, v, 0, 1, &o->bucket_mb)) return -1; }
    else {
      fprintf(stderr, PROG ": unknown option %s\n", a);
      return -1;
    }
  }
  return 0;
}

/* Per-step DDP figures, added up over the run (rank 0 prints them). */
typedef struct timeline {
  loom_module *ddp;
  double comm_s, exposed_s;
  int64_t steps;
} timeline;

static int on_step(loom_trainer *t, int64_t step, double loss, void *user) {
  timeline *tl = user;
  loom_ddp_stats s;
  if (loom_ddp_get_stats(tl->ddp, &s) == 0 && step > 1) { /* the first step warms the caches up */
    tl->comm_s += s.comm_s;
    tl->exposed_s += s.exposed_s;
    tl->steps++;
  }
  return 0;
}

/* The Fashion-MNIST loader (sharded over the ranks by the process group), padded to side x side. */
static loom_loader *loader(const options *o, bool train, int side, long batch, loom_device dev) {
  loom_dataset *ds = fashion_dataset(o->data, train, o->limit);
  if (!ds) return NULL;
  loom_loader_opts lo = {.batch_size = batch, .shuffle = train, .seed = 1, .device = dev};
  lo.transform = (loom_transform_opts){.norm_channels = 1, .mean = &FASHION_MEAN, .std = &FASHION_STD};
  if (side > 28) lo.transform.crop_size = side, lo.transform.crop_padding = (side - 28) / 2;
  loom_loader *l = loom_loader_new(ds, &lo);
  loom_dataset_free(ds);
  return l;
}

int main(int argc, char **argv) {
  options o = {"seed_cnn", "/usr/share/datasets/fashion-mnist", NULL, NULL, 1, 64, 0, 100, 0.01, 0.9, 0, 0};
  if (parse_args(argc, argv, &o)) { usage(stderr); return 2; }
  if (loom_dist_init(&(loom_dist_opts){.device = o.device})) {
    fprintf(stderr, PROG ": %s\n", loom_last_error());
    return 1;
  }
  int rank = loom_dist_rank(), world = loom_dist_world_size();
  loom_device dev = loom_dist_device();
  if (o.batch % world) {
    fprintf(stderr, PROG ": --batch-size %ld (the global batch) must be a multiple of the world size %d\n", o.batch,
            world);
    loom_dist_finalize();
    return 2;
  }
  const loom_model_info *info = loom_model_find(o.model);
  if (info && (info->kind != LOOM_INPUT_TENSOR || info->input[1] == 0)) {
    fprintf(stderr, PROG ": model '%s' does not take images\n", o.model);
    loom_dist_finalize();
    return 2;
  }
  int side = info && info->input[1] == 28 ? 28 : 32; /* ResNet & co: zero-padded to 32x32, CIFAR stem */
  loom_manual_seed(1);
  loom_module *net = info ? loom_model_create(o.model, &(loom_model_opts){.num_classes = 10, .in_channels = 1,
                                                                             .stem = LOOM_STEM_CIFAR})
                          : NULL;
  loom_module *ddp = NULL;
  loom_optimizer *opt = NULL;
  loom_loader *train = NULL, *test = NULL;
  loom_trainer *trainer = NULL;
  timeline tl = {0};
  int rc = 1;
  if (!net || loom_module_to_device(net, dev)) goto fail;
  /* a cap below the 1 MiB first bucket applies to the first one too (to split small models) */
  ddp = loom_ddp_new(net, &(loom_ddp_opts){.bucket_cap_mb = o.bucket_mb,
                                           .first_bucket_mb = o.bucket_mb > 0 && o.bucket_mb < 1 ? o.bucket_mb : 0});
  if (!ddp) goto fail;
  opt = loom_sgd_module(ddp, &(loom_sgd_opts){.lr = o.lr, .momentum = o.momentum});
  train = loader(&o, true, side, o.batch / world, dev);
  test = train ? loader(&o, false, side, 1000, dev) : NULL;
  if (!opt || !test) goto fail;
  if (rank == 0)
    printf("%s (%lld parameters) on %d rank(s), global batch %ld (%ld per rank), %lld training images, SGD lr %g "
           "momentum %g, %ld epoch(s)\n",
           o.model, (long long)loom_module_num_params(net, false), world, o.batch, o.batch / world,
           (long long)(loom_loader_num_samples(train) * world), o.lr, o.momentum, o.epochs);
  char config[512];
  snprintf(config, sizeof config, "ddp_train --model %s --epochs %ld --batch-size %ld --lr %g --momentum %g --limit %ld",
           o.model, o.epochs, o.batch, o.lr, o.momentum, o.limit);
  tl.ddp = ddp;
  trainer = loom_trainer_new(ddp, opt, NULL, train,
                             &(loom_trainer_opts){.epochs = (int)o.epochs, .log_every = (int)o.log_every,
                                                  .eval_loader = test, .checkpoint_dir = o.checkpoint,
                                                  .checkpoint_prefix = "ddp_train", .config = config,
                                                  .on_step = on_step, .step_user = &tl});
  if (!trainer) goto fail;
  if (o.resume && loom_trainer_resume_latest(trainer) < 0) goto fail;
  loom_train_status st = loom_trainer_fit(trainer);
  if (st == LOOM_TRAIN_INTERRUPTED) {
    if (rank == 0) printf("stopped; continue with the same flags and --resume\n");
    rc = 130;
    goto done;
  }
  if (st != LOOM_TRAIN_DONE) goto fail;
  loom_train_stats s = loom_trainer_stats(trainer);
  if (rank == 0) {
    printf("test accuracy %.2f%% (loss %.4f)\n", 100 * s.eval_accuracy, s.eval_loss);
    printf("throughput: %.0f samples/s in all, %.0f per rank (%d rank(s), after the first step)\n",
           s.samples_per_s * world, s.samples_per_s, world);
    if (world > 1 && tl.steps > 0 && tl.comm_s > 0)
      printf("all-reduce: %.2f ms a step, %.2f ms of it after backward ended: %.0f%% hidden behind backward\n",
             1e3 * tl.comm_s / (double)tl.steps, 1e3 * tl.exposed_s / (double)tl.steps,
             100 * (1 - tl.exposed_s / tl.comm_s));
  }
  rc = 0;
  goto done;
fail:
  fprintf(stderr, PROG ": rank %d: %s\n", rank, loom_last_error());
done:
  loom_trainer_free(trainer);
  loom_loader_free(train);
  loom_loader_free(test);
  loom_optimizer_free(opt);
  loom_module_free(ddp);
  loom_module_free(net);
  loom_dist_finalize();
  return rc;
}
