/* Loom data pipeline: datasets (IDX / MNIST, CIFAR-10, text, synthetic, your
 * own), per-sample transforms and a batch loader with shuffling, sharding
 * across data-parallel ranks and background prefetch. */
#ifndef LOOM_DATA_H
#define LOOM_DATA_H

#include "loom/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- datasets ----
 * A dataset is a read-only list of (sample, label) pairs of fixed shapes and
 * dtypes, read into host buffers. Datasets are reference-counted: a subset and
 * a loader keep their own reference, so the creator may free its handle at
 * any time. Failing constructors return NULL with the error set (files:
 * LOOM_ERR_IO, naming the file and what is wrong). */
typedef struct loom_dataset loom_dataset;

/* Your own dataset: get() writes sample i (shape/dtype as declared, row-major)
 * to x and its label to y. It is called from the loader's worker thread, so it
 * must not touch tensors or scopes and must be safe to call concurrently with
 * itself (read-only state). Returns 0, or a status after core-style error
 * reporting (loom_last_error is forwarded to the consumer). */
typedef struct loom_dataset_kind {
  const char *name;                                                  /* "MNIST", ... */
  int (*get)(void *state, int64_t i, void *x, void *y);
  void (*free_state)(void *state);                                   /* may be NULL */
} loom_dataset_kind;
/* Takes ownership of state (freed with kind->free_state, also on failure). */
loom_dataset *loom_dataset_new(const loom_dataset_kind *kind, void *state, int64_t length, loom_shape sample_shape,
                               loom_dtype sample_dtype, loom_shape label_shape, loom_dtype label_dtype);

/* IDX files (MNIST, Fashion-MNIST), plain or .gz: images u8 [N, rows, cols]
 * (magic 0x00000803) and labels u8 [N] (magic 0x00000801). Samples are f32
 * [1, rows, cols] in [0, 1], labels i64 []. */
loom_dataset *loom_dataset_idx(const char *images_path, const char *labels_path);
/* DIR/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (the .gz is tried first).
 * Debian's dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist. */
loom_dataset *loom_dataset_mnist(const char *dir, bool train);
/* CIFAR-10 binary version: DIR/data_batch_1.bin .. data_batch_5.bin (train) or
 * DIR/test_batch.bin; DIR may also be the folder holding cifar-10-batches-bin/.
 * Records of 1 label byte + 3072 bytes CHW. Samples f32 [3, 32, 32] in [0, 1],
 * labels i64 [] in 0..9. */
loom_dataset *loom_dataset_cifar10(const char *dir, bool train);
/* The same from an explicit list of batch files (plain or .gz). */
loom_dataset *loom_dataset_cifar10_files(const char *const *paths, int n);
/* A text file (plain or .gz) as tokens: bytes (vocabulary 0..255) or, with
 * bytes = false, UTF-8 code points numbered by their rank in the sorted set of
 * code points seen. Item i is the non-overlapping window starting at token
 * i * seq_len: x = tokens[s, s + seq_len), y = tokens[s + 1, s + seq_len + 1),
 * both i64 [seq_len]. */
loom_dataset *loom_dataset_text(const char *path, int64_t seq_len, bool bytes);
/* Vocabulary size of a text dataset (256 in byte mode), -1 + error for other
 * datasets. When codepoints is not NULL, writes up to max entries: the code
 * point (or byte value) of each token id. */
int64_t loom_dataset_text_vocab(const loom_dataset *ds, uint32_t *codepoints, int64_t max);
/* Token ids -> UTF-8 text (NUL-terminated, truncated to size). Returns the
 * bytes needed (without the NUL), or -1 + error (token out of range). */
int64_t loom_dataset_text_decode(const loom_dataset *ds, const int64_t *tokens, int64_t n, char *buf, size_t size);
/* UTF-8 text -> token ids (up to max written). Returns the token count, or -1
 * + error for a character outside the vocabulary or invalid UTF-8. */
int64_t loom_dataset_text_encode(const loom_dataset *ds, const char *text, int64_t *tokens, int64_t max);
/* n deterministic samples of any shape for benchmarks: f32 uniform in [0, 1)
 * and i64 labels in [0, num_classes), both functions of (seed, index) only,
 * computed when read (no memory held). */
loom_dataset *loom_dataset_synthetic(int64_t n, loom_shape sample_shape, int64_t num_classes, uint64_t seed);
/* Items start .. start + count - 1 of ds (count is clamped to what remains:
 * a quick run's "limit"; count < 0 = all the rest). */
loom_dataset *loom_dataset_subset(loom_dataset *ds, int64_t start, int64_t count);

/* Drops this reference (the dataset lives on while a subset or loader uses it). */
void loom_dataset_free(loom_dataset *ds);
const char *loom_dataset_name(const loom_dataset *ds);
int64_t loom_dataset_len(const loom_dataset *ds);
loom_shape loom_dataset_sample_shape(const loom_dataset *ds);
loom_dtype loom_dataset_sample_dtype(const loom_dataset *ds);
loom_shape loom_dataset_label_shape(const loom_dataset *ds);
loom_dtype loom_dataset_label_dtype(const loom_dataset *ds);
/* Item i into host buffers sized for one sample / one label (y may be NULL). */
int loom_dataset_get(const loom_dataset *ds, int64_t i, void *x, void *y);
/* Items idx[0..n) as CPU tensors [n, sample shape...] and [n, label shape...]
 * (no transforms), registered in the caller's scope. */
int loom_dataset_batch(const loom_dataset *ds, const int64_t *idx, int64_t n, loom_tensor **x, loom_tensor **y);

/* ---- transforms (f32 samples [C, H, W], on the host, per sample) ----
 * Applied in torchvision's order: random crop, horizontal flip, normalise.
 * Random choices are a function of (loader seed, epoch, dataset index) only,
 * so runs repeat exactly whatever the thread timing. */
typedef struct loom_transform_opts {
  int crop_size;        /* > 0: random crop_size x crop_size window ... */
  int crop_padding;     /* ... of the sample zero-padded by this on every side */
  bool hflip;           /* mirror left-right with probability 0.5 */
  int norm_channels;    /* > 0: (x - mean[c]) / std[c]; must equal C */
  const float *mean;    /* norm_channels values (copied by loom_loader_new) */
  const float *std;
} loom_transform_opts;
/* Applies t to one sample x of shape [C, H, W] (f32, in place when the crop
 * keeps the size; out must hold C * crop * crop floats otherwise; out may equal
 * x when sizes match). Exposed for tests and custom pipelines. */
int loom_transform_apply(const loom_transform_opts *t, uint64_t seed, int64_t epoch, int64_t index, const float *x,
                         loom_shape shape, float *out);

/* ---- loader ---- */
typedef struct loom_loader loom_loader;
typedef struct loom_loader_opts {
  int64_t batch_size;       /* > 0 (NULL opts: 1, PyTorch's default) */
  bool shuffle;             /* a new permutation every epoch, from seed + epoch */
  uint64_t seed;
  bool drop_last;           /* drop the last incomplete batch */
  int rank, world_size;     /* sharding (PyTorch DistributedSampler): world_size 0 = the
                               process group's rank and world size (loom/dist.h; 0 of 1 without one);
                               every rank gets ceil(n / world_size) samples,
                               padded by wrapping around, same permutation everywhere */
  int prefetch;             /* batches prepared ahead on a worker thread; 0 = 2 */
  bool no_prefetch;         /* prepare each batch in loom_loader_next instead */
  int workers;              /* threads sharing the samples of a batch (0 = 1); the
                               dataset's get() must then be safe to run concurrently */
  loom_device device;       /* where batches go (zero = cpu); CUDA: pinned staging
                               buffers and an asynchronous copy on the copy stream */
  loom_transform_opts transform;
} loom_loader_opts;

/* Keeps a reference to ds. Starts at epoch 0, batch 0. */
loom_loader *loom_loader_new(loom_dataset *ds, const loom_loader_opts *o);
/* Joins the worker (also mid-epoch) and frees everything. */
void loom_loader_free(loom_loader *l);
/* Rewinds to batch 0 of epoch (its own shuffle and transforms). */
int loom_loader_start_epoch(loom_loader *l, int64_t epoch);
/* The next batch of the epoch: x [B, sample shape...] and y [B, label
 * shape...] on the loader's device, new references registered in the caller's
 * scope. Returns false at the end of the epoch (no error set) or on failure
 * (loom_last_status() != LOOM_OK, also for errors met by the worker thread). */
bool loom_loader_next(loom_loader *l, loom_tensor **x, loom_tensor **y);
/* Batches per epoch on this rank, and samples per epoch on this rank. */
int64_t loom_loader_num_batches(const loom_loader *l);
int64_t loom_loader_num_samples(const loom_loader *l);
/* The run's shape of work as the loader sees it (checkpoints record it):
 * batch size, the whole dataset's length and the world size. */
typedef struct loom_loader_shape { int64_t batch_size, dataset_len, world_size; } loom_loader_shape;
loom_loader_shape loom_loader_work_shape(const loom_loader *l);

/* Where the loader stands, for checkpoints: the batch that next() returns next. */
typedef struct loom_loader_pos { int64_t epoch, batch; } loom_loader_pos;
loom_loader_pos loom_loader_position(const loom_loader *l);
/* Resumes at pos: the following batches are those an uninterrupted run gets. */
int loom_loader_seek(loom_loader *l, loom_loader_pos pos);

#ifdef __cplusplus
}
#endif
#endif
