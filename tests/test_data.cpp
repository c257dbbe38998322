// Datasets: IDX / MNIST, CIFAR-10, text, synthetic, subsets, custom kinds.
#include <gmock/gmock.h>

#include <cmath>
#include <set>

#include "data_test_util.h"
#include "loom_test.h"

using ::testing::HasSubstr;

namespace {

struct DsPtr {   // frees the dataset at the end of a test
  loom_dataset *p;
  DsPtr(loom_dataset *d) : p(d) {}
  ~DsPtr() { loom_dataset_free(p); }
  operator loom_dataset *() const { return p; }
};

std::vector<float> sample(loom_dataset *ds, int64_t i, int64_t *label) {
  std::vector<float> x(loom_shape_numel(loom_dataset_sample_shape(ds)));
  EXPECT_EQ(loom_dataset_get(ds, i, x.data(), label), 0) << loom_last_error();
  return x;
}

void write_idx_pair(const std::string &ipath, const std::string &lpath, int n, bool gz) {
  Bytes im = idx_images(n, 4, 3), lb = idx_labels(n);
  write_bytes(ipath, gz ? gzip_bytes(im) : im);
  write_bytes(lpath, gz ? gzip_bytes(lb) : lb);
}

}  // namespace

TEST(DataIdx, ReadsPlainAndGzip) {
  for (bool gz : {false, true}) {
    std::string ip = tmp_path(gz ? "im.gz" : "im"), lp = tmp_path(gz ? "lb.gz" : "lb");
    write_idx_pair(ip, lp, 5, gz);
    DsPtr ds(loom_dataset_idx(ip.c_str(), lp.c_str()));
    ASSERT_NE(ds.p, nullptr) << loom_last_error();
    EXPECT_EQ(loom_dataset_len(ds), 5);
    EXPECT_TRUE(loom_shape_equal(loom_dataset_sample_shape(ds), LOOM_SHAPE(1, 4, 3)));
    EXPECT_EQ(loom_dataset_sample_dtype(ds), LOOM_F32);
    EXPECT_EQ(loom_dataset_label_shape(ds).ndim, 0);
    EXPECT_EQ(loom_dataset_label_dtype(ds), LOOM_I64);
    for (int i = 0; i < 5; i++) {
      int64_t label = -1;
      std::vector<float> x = sample(ds, i, &label);
      EXPECT_EQ(label, idx_label(i));
      for (int p = 0; p < 12; p++) EXPECT_FLOAT_EQ(x[p], idx_pixel(i, p) / 255.0f);
    }
    std::vector<float> x(12);
    EXPECT_NE(loom_dataset_get(ds, 5, x.data(), nullptr), 0);
    EXPECT_TRUE(error_has("out of range"));
  }
}

TEST(DataIdx, CorruptFilesAreClearErrors) {
  std::string ip = tmp_path("c_im"), lp = tmp_path("c_lb");
  auto expect_fail = [&](const char *what, std::vector<const char *> parts) {
    loom_clear_error();
    loom_dataset *ds = loom_dataset_idx(ip.c_str(), lp.c_str());
    EXPECT_EQ(ds, nullptr) << what;
    loom_dataset_free(ds);
    EXPECT_EQ(loom_last_status(), LOOM_ERR_IO) << what;
    for (const char *p : parts) EXPECT_THAT(loom_last_error(), HasSubstr(p)) << what;
  };
  // Missing file.
  std::string missing = tmp_path("no_such_file.gz");
  loom_dataset *ds = loom_dataset_idx(missing.c_str(), lp.c_str());
  EXPECT_EQ(ds, nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("cannot open " + missing));
  // Wrong magic numbers (labels file given as images and the reverse).
  write_bytes(ip, idx_images(3, 2, 2, 0x00000801)), write_bytes(lp, idx_labels(3));
  expect_fail("image magic", {ip.c_str(), "magic", "0x00000801", "0x00000803"});
  write_bytes(ip, idx_images(3, 2, 2)), write_bytes(lp, idx_labels(3, 0x00000803));
  expect_fail("label magic", {lp.c_str(), "magic"});
  // Truncated data, plain and gzip (the gzip stream cut short).
  Bytes im = idx_images(3, 2, 2);
  im.resize(im.size() - 1);
  write_bytes(ip, im), write_bytes(lp, idx_labels(3));
  expect_fail("truncated images", {ip.c_str(), "truncated"});
  Bytes gz = gzip_bytes(idx_images(3, 2, 2));
  gz.resize(gz.size() - 12);
  write_bytes(ip, gz);
  expect_fail("truncated gzip", {ip.c_str(), "truncated"});
  write_bytes(ip, Bytes{0, 0, 8});
  expect_fail("short header", {ip.c_str(), "header"});
  // Image and label counts differ.
  write_bytes(ip, idx_images(3, 2, 2)), write_bytes(lp, idx_labels(4));
  expect_fail("count mismatch", {"3 images", "4 labels"});
  // Extra bytes after the data.
  Bytes lb = idx_labels(3);
  lb.push_back(0);
  write_bytes(lp, lb);
  expect_fail("trailing bytes", {lp.c_str(), "after"});
  write_bytes(lp, gzip_bytes(lb));  // the same found while inflating
  expect_fail("trailing bytes in gzip", {lp.c_str(), "after"});
  // Dimensions whose byte count wraps to 0 in 64 bits (2^16 x 2^24 x 2^24):
  // refused before anything is read or allocated.
  write_bytes(lp, idx_labels(3));
  Bytes wrap = {0, 0, 8, 3, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
  write_bytes(ip, wrap);
  expect_fail("overflowing dims", {ip.c_str(), "implausible dimensions"});
  write_bytes(ip, gzip_bytes(wrap));
  expect_fail("overflowing dims, gzip", {ip.c_str(), "implausible dimensions"});
}

// Where the number of classes is known (MNIST-style: 10), a label outside
// them is refused when the dataset opens, naming the file and the item; the
// generic IDX reader keeps any byte.
TEST(DataIdx, MnistLabelsOutsideTheClasses) {
  std::string dir = tmp_dir("mnist_bad_label");
  Bytes lb = idx_labels(4);
  lb[8 + 2] = 255;
  write_bytes(dir + "/train-images-idx3-ubyte", idx_images(4, 2, 2));
  write_bytes(dir + "/train-labels-idx1-ubyte", lb);
  EXPECT_EQ(loom_dataset_mnist(dir.c_str(), true), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
  EXPECT_THAT(loom_last_error(), HasSubstr(dir + "/train-labels-idx1-ubyte: label 255 of item 2 is outside the 10 classes"));
  DsPtr any(loom_dataset_idx((dir + "/train-images-idx3-ubyte").c_str(), (dir + "/train-labels-idx1-ubyte").c_str()));
  ASSERT_NE(any.p, nullptr) << loom_last_error();
  int64_t label = 0;
  sample(any, 2, &label);
  EXPECT_EQ(label, 255);
}

TEST(DataIdx, MnistHelperFindsStandardNames) {
  std::string dir = tmp_dir("mnist");
  write_idx_pair(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz", 6, true);
  write_idx_pair(dir + "/t10k-images-idx3-ubyte", dir + "/t10k-labels-idx1-ubyte", 2, false);   // plain
  DsPtr train(loom_dataset_mnist(dir.c_str(), true)), test(loom_dataset_mnist(dir.c_str(), false));
  ASSERT_NE(train.p, nullptr) << loom_last_error();
  ASSERT_NE(test.p, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dataset_len(train), 6);
  EXPECT_EQ(loom_dataset_len(test), 2);
  EXPECT_STREQ(loom_dataset_name(train), "MNIST");
  std::string none = tmp_path("no-such-dir");
  EXPECT_EQ(loom_dataset_mnist(none.c_str(), true), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("cannot open " + none + "/train-images-idx3-ubyte.gz"));
}

TEST(DataIdx, InstalledFashionMnist) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  struct stat st;
  if (stat((std::string(dir) + "/train-images-idx3-ubyte.gz").c_str(), &st) != 0)
    GTEST_SKIP() << dir << "/train-images-idx3-ubyte.gz not found (Debian package dataset-fashion-mnist)";
  DsPtr train(loom_dataset_mnist(dir, true)), test(loom_dataset_mnist(dir, false));
  ASSERT_NE(train.p, nullptr) << loom_last_error();
  ASSERT_NE(test.p, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dataset_len(train), 60000);
  EXPECT_EQ(loom_dataset_len(test), 10000);
  EXPECT_TRUE(loom_shape_equal(loom_dataset_sample_shape(train), LOOM_SHAPE(1, 28, 28)));
  int64_t label = -1;
  std::vector<float> x = sample(train, 0, &label);
  EXPECT_EQ(label, 9);   // the first training image is an ankle boot
  double sum = 0;
  for (float v : x) sum += v;
  EXPECT_NEAR(sum, 76247.0 / 255.0, 1e-3);   // its pixel bytes add up to 76247
  sample(test, 0, &label);
  EXPECT_EQ(label, 9);
}

TEST(DataCifar, ReadsBatchesAndFolderLayouts) {
  std::string dir = tmp_dir("cifar"), sub = dir + "/cifar-10-batches-bin";
  mkdir(sub.c_str(), 0755);
  for (int f = 1; f <= 5; f++) write_bytes(sub + "/data_batch_" + std::to_string(f) + ".bin", cifar_records(f, 3));
  write_bytes(sub + "/test_batch.bin", gzip_bytes(cifar_records(9, 2)));   // .gz content under the usual name
  for (const std::string &d : {dir, sub}) {
    DsPtr train(loom_dataset_cifar10(d.c_str(), true)), test(loom_dataset_cifar10(d.c_str(), false));
    ASSERT_NE(train.p, nullptr) << loom_last_error();
    ASSERT_NE(test.p, nullptr) << loom_last_error();
    EXPECT_EQ(loom_dataset_len(train), 15);
    EXPECT_EQ(loom_dataset_len(test), 2);
    EXPECT_TRUE(loom_shape_equal(loom_dataset_sample_shape(train), LOOM_SHAPE(3, 32, 32)));
    // Item 7 = file 3, record 1.
    int64_t label = -1;
    std::vector<float> x = sample(train, 7, &label);
    EXPECT_EQ(label, (3 + 1) % 10);
    for (int p : {0, 1, 1023, 1024, 3071}) EXPECT_FLOAT_EQ(x[p], ((3 * 31 + 5 + p) % 256) / 255.0f) << p;
    sample(test, 1, &label);
    EXPECT_EQ(label, 0);
  }
}

TEST(DataCifar, CorruptFilesAreClearErrors) {
  std::string dir = tmp_dir("cifar_bad");
  std::string p = dir + "/test_batch.bin";
  Bytes b = cifar_records(0, 2);
  b.resize(b.size() - 100);
  write_bytes(p, b);
  EXPECT_EQ(loom_dataset_cifar10(dir.c_str(), false), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
  EXPECT_THAT(loom_last_error(), HasSubstr(p));
  EXPECT_THAT(loom_last_error(), HasSubstr("3073"));
  b = cifar_records(0, 2);
  b[3073] = 12;   // record 1's label
  write_bytes(p, b);
  EXPECT_EQ(loom_dataset_cifar10(dir.c_str(), false), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("record 1 has label 12"));
  EXPECT_EQ(loom_dataset_cifar10(dir.c_str(), true), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("cannot open " + dir + "/data_batch_1.bin"));
  write_bytes(p, Bytes{});
  EXPECT_EQ(loom_dataset_cifar10(dir.c_str(), false), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("0 bytes"));
}

TEST(DataText, ByteTokensInShiftedWindows) {
  std::string p = tmp_path("text.txt.gz");
  std::string s = "hello world\n";
  write_bytes(p, gzip_bytes(Bytes(s.begin(), s.end())));
  DsPtr ds(loom_dataset_text(p.c_str(), 4, true));
  ASSERT_NE(ds.p, nullptr) << loom_last_error();
  EXPECT_EQ(loom_dataset_len(ds), (12 - 1) / 4);
  EXPECT_EQ(loom_dataset_text_vocab(ds, nullptr, 0), 256);
  int64_t x[4], y[4];
  ASSERT_EQ(loom_dataset_get(ds, 1, x, y), 0);
  for (int k = 0; k < 4; k++) {
    EXPECT_EQ(x[k], (uint8_t)s[4 + k]);
    EXPECT_EQ(y[k], (uint8_t)s[5 + k]);
  }
}

TEST(DataText, CharacterVocabularyIsSortedCodePoints) {
  std::string p = tmp_path("chars.txt");
  std::string s = "b\xc3\xa9" "a\xe2\x82\xac" "ba\xf0\x9f\x98\x80" "ab";   // b é a € b a 😀 a b
  write_bytes(p, Bytes(s.begin(), s.end()));
  DsPtr ds(loom_dataset_text(p.c_str(), 3, false));
  ASSERT_NE(ds.p, nullptr) << loom_last_error();
  uint32_t vocab[8];
  ASSERT_EQ(loom_dataset_text_vocab(ds, vocab, 8), 5);
  EXPECT_EQ(vocab[0], (uint32_t)'a');
  EXPECT_EQ(vocab[1], (uint32_t)'b');
  EXPECT_EQ(vocab[2], 0xE9u);
  EXPECT_EQ(vocab[3], 0x20ACu);
  EXPECT_EQ(vocab[4], 0x1F600u);
  EXPECT_EQ(loom_dataset_len(ds), (9 - 1) / 3);
  int64_t x[3], y[3];
  ASSERT_EQ(loom_dataset_get(ds, 0, x, y), 0);
  EXPECT_EQ(std::vector<int64_t>(x, x + 3), (std::vector<int64_t>{1, 2, 0}));
  EXPECT_EQ(std::vector<int64_t>(y, y + 3), (std::vector<int64_t>{2, 0, 3}));
  int64_t tok[16];
  int64_t n = loom_dataset_text_encode(ds, s.c_str(), tok, 16);
  ASSERT_EQ(n, 9);
  char buf[64];
  EXPECT_EQ(loom_dataset_text_decode(ds, tok, n, buf, sizeof buf), (int64_t)s.size());
  EXPECT_EQ(std::string(buf), s);
  EXPECT_EQ(loom_dataset_text_encode(ds, "abz", tok, 16), -1);
  EXPECT_TRUE(error_has("not in the vocabulary"));
  int64_t bad = 5;
  EXPECT_EQ(loom_dataset_text_decode(ds, &bad, 1, buf, sizeof buf), -1);
}

TEST(DataText, Errors) {
  std::string p = tmp_path("bad_utf8.txt");
  write_bytes(p, Bytes{'a', 'b', 0xC3, 'c', 'd', 'e'});
  EXPECT_EQ(loom_dataset_text(p.c_str(), 2, false), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("invalid UTF-8 at byte 2"));
  DsPtr bytes(loom_dataset_text(p.c_str(), 2, true));   // bytes mode takes anything
  EXPECT_NE(bytes.p, nullptr);
  EXPECT_EQ(loom_dataset_text(p.c_str(), 6, true), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("too short"));
  EXPECT_EQ(loom_dataset_text(p.c_str(), 0, true), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
  DsPtr syn(loom_dataset_synthetic(4, LOOM_SHAPE(2), 3, 1));
  EXPECT_EQ(loom_dataset_text_vocab(syn, nullptr, 0), -1);
  EXPECT_TRUE(error_has("not a text dataset"));
}

TEST(DataSynthetic, DeterministicAndInRange) {
  DsPtr a(loom_dataset_synthetic(50, LOOM_SHAPE(3, 5), 7, 42)), b(loom_dataset_synthetic(50, LOOM_SHAPE(3, 5), 7, 42));
  DsPtr c(loom_dataset_synthetic(50, LOOM_SHAPE(3, 5), 7, 43));
  ASSERT_TRUE(a.p && b.p && c.p);
  std::set<int64_t> labels;
  for (int i = 0; i < 50; i++) {
    int64_t la, lb, lc;
    std::vector<float> xa = sample(a, i, &la), xb = sample(b, i, &lb), xc = sample(c, i, &lc);
    EXPECT_EQ(xa, xb);
    EXPECT_EQ(la, lb);
    EXPECT_NE(xa, xc);
    for (float v : xa) EXPECT_TRUE(v >= 0.0f && v < 1.0f);
    EXPECT_TRUE(la >= 0 && la < 7);
    labels.insert(la);
  }
  EXPECT_GE(labels.size(), 5u);   // 50 draws from 7 classes
  EXPECT_NE(sample(a, 0, nullptr), sample(a, 1, nullptr));
  EXPECT_EQ(loom_dataset_synthetic(5, LOOM_SHAPE(2), 0, 1), nullptr);
}

TEST(DataSubset, ViewsItsParentAndOutlivesIt) {
  loom_dataset *parent = loom_dataset_synthetic(20, LOOM_SHAPE(4), 3, 9);
  std::vector<float> want = sample(parent, 12, nullptr);
  loom_dataset *sub = loom_dataset_subset(parent, 10, 5);
  ASSERT_NE(sub, nullptr);
  loom_dataset_free(parent);   // the subset keeps it alive
  EXPECT_EQ(loom_dataset_len(sub), 5);
  EXPECT_EQ(sample(sub, 2, nullptr), want);
  loom_dataset *clamped = loom_dataset_subset(sub, 3, 100);
  EXPECT_EQ(loom_dataset_len(clamped), 2);
  EXPECT_EQ(loom_dataset_subset(sub, 6, 1), nullptr);
  EXPECT_THAT(loom_last_error(), HasSubstr("start 6"));
  loom_dataset_free(clamped);
  loom_dataset_free(sub);
}

TEST(DataDataset, BatchTensorsAndCustomKinds) {
  ScopeGuard scope;
  struct St { float scale; };
  static const loom_dataset_kind kind = {
      "Squares",
      [](void *s, int64_t i, void *x, void *y) {
        ((float *)x)[0] = ((St *)s)->scale * i * i;
        ((float *)x)[1] = -1.0f;
        *(int64_t *)y = i % 2;
        return 0;
      },
      [](void *s) { delete (St *)s; }};
  DsPtr ds(loom_dataset_new(&kind, new St{0.5f}, 6, LOOM_SHAPE(2), LOOM_F32, LOOM_SHAPE(), LOOM_I64));
  ASSERT_NE(ds.p, nullptr);
  EXPECT_STREQ(loom_dataset_name(ds), "Squares");
  int64_t idx[3] = {5, 0, 3};
  loom_tensor *x, *y;
  ASSERT_EQ(loom_dataset_batch(ds, idx, 3, &x, &y), 0) << loom_last_error();
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(x), LOOM_SHAPE(3, 2)));
  EXPECT_EQ(V(x), (std::vector<double>{12.5, -1, 0, -1, 4.5, -1}));
  EXPECT_EQ(V(y), (std::vector<double>{1, 0, 1}));
  int64_t bad[1] = {6};
  EXPECT_NE(loom_dataset_batch(ds, bad, 1, &x, &y), 0);
  EXPECT_EQ(x, nullptr);
  EXPECT_EQ(loom_dataset_new(&kind, new St{1}, -1, LOOM_SHAPE(2), LOOM_F32, LOOM_SHAPE(), LOOM_I64), nullptr);
}
