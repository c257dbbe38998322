// Safetensors I/O: round trips, the on-disk layout, hand-written files and bad files.
#include "loom_test.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
}

// A safetensors file: 8-byte little-endian header length, header, data.
std::string st_bytes(const std::string &header, const std::string &data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; i++) out[i] = char((uint64_t)header.size() >> (8 * i) & 0xFF);
  return out + header + data;
}

template <typename T>
std::string raw(const std::vector<T> &v) {
  return std::string(reinterpret_cast<const char *>(v.data()), v.size() * sizeof(T));
}

// The bytes of t in row-major order, as loom_to_host gives them.
std::string host_bytes(const loom_tensor *t) {
  std::string out((size_t)loom_numel(t) * loom_dtype_size(loom_dtype_of(t)), '\0');
  EXPECT_EQ(loom_to_host(t, out.data(), out.size()), 0) << loom_last_error();
  return out;
}

bool contains(const char *text, const std::string &part) {
  return std::string(text).find(part) != std::string::npos;
}

// Parsing bytes must fail with LOOM_ERR_IO, a message holding `part`, and no leaked tensor.
void expect_bad(const std::string &bytes, const std::string &part) {
  SCOPED_TRACE("expecting \"" + part + "\"");
  int64_t live = loom_live_tensors();
  loom_clear_error();
  loom_tensor_map *m = loom_safetensors_parse(bytes.data(), bytes.size(), loom_cpu());
  EXPECT_EQ(m, nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
  EXPECT_TRUE(contains(loom_last_error(), part)) << loom_last_error();
  loom_map_free(m);
  EXPECT_EQ(loom_live_tensors(), live);
}

// One F32 entry of the header.
std::string f32_entry(const std::string &name, const std::string &shape, int begin, int end) {
  return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

// Offsets [begin, end] written for name in a header produced by our writer.
std::pair<long long, long long> offsets_of(const std::string &header, const std::string &name) {
  size_t at = header.find("\"" + name + "\":{");
  if (at == std::string::npos) return {-1, -1};
  at = header.find("\"data_offsets\":[", at);
  if (at == std::string::npos) return {-1, -1};
  long long b = -1, e = -1;
  sscanf(header.c_str() + at, "\"data_offsets\":[%lld,%lld]", &b, &e);
  return {b, e};
}

class Safetensors : public ::testing::Test {
 protected:
  std::string dir;
  int64_t live_at_start = 0;
  void SetUp() override {
    char tmpl[] = "/tmp/loom_st_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    live_at_start = loom_live_tensors();
  }
  void TearDown() override {
    std::filesystem::remove_all(dir);
    EXPECT_EQ(loom_live_tensors(), live_at_start) << "tensors leaked";
  }
  std::string path(const std::string &name) const { return dir + "/" + name; }
  // Files in the test folder (to see that no temp file is left behind).
  int file_count() const {
    int n = 0;
    for (auto &e : std::filesystem::directory_iterator(dir)) n += e.is_regular_file();
    return n;
  }
};

TEST_F(Safetensors, RoundTripEveryDtype) {
  const loom_dtype dtypes[] = {LOOM_F32, LOOM_F64, LOOM_F16, LOOM_BF16,
                               LOOM_I32, LOOM_I64, LOOM_U8,  LOOM_BOOL};
  ScopeGuard scope;
  loom_tensor_map *m = loom_map_new();
  std::vector<std::string> names;
  for (loom_dtype dt : dtypes) {
    std::vector<double> vals = {0, 1, -2.5, 3, 100, -0.125};
    if (!loom_dtype_is_float(dt)) vals = {0, 1, -2, 3, 100, -7};
    if (dt == LOOM_U8) vals = {0, 1, 2, 3, 200, 255};
    if (dt == LOOM_BOOL) vals = {0, 1, 1, 0, 1, 0};
    std::string name = std::string("t_") + loom_dtype_name(dt);
    ASSERT_EQ(loom_map_set(m, name.c_str(), T(vals, LOOM_SHAPE(2, 3), dt)), 0) << loom_last_error();
    names.push_back(name);
  }
  loom_tensor *base = T({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, LOOM_SHAPE(3, 4));
  loom_tensor *transposed = loom_transpose(base, 0, 1);
  ASSERT_FALSE(loom_is_contiguous(transposed));
  ASSERT_EQ(loom_map_set(m, "transposed", transposed), 0);
  ASSERT_EQ(loom_map_set(m, "scalar", T({3.5}, LOOM_SHAPE(), LOOM_F64)), 0);
  ASSERT_EQ(loom_map_set(m, "empty", loom_zeros(LOOM_SHAPE(0, 4), LOOM_F32, loom_cpu())), 0);
  ASSERT_EQ(loom_map_set(m, "empty_i64", loom_zeros(LOOM_SHAPE(5, 0, 2), LOOM_I64, loom_cpu())), 0);
  names.insert(names.end(), {"transposed", "scalar", "empty", "empty_i64"});

  const std::string file = path("all.safetensors");
  ASSERT_EQ(loom_safetensors_save(file.c_str(), m), 0) << loom_last_error();
  loom_tensor_map *back = loom_safetensors_load(file.c_str(), loom_cpu());
  ASSERT_NE(back, nullptr) << loom_last_error();
  ASSERT_EQ(loom_map_size(back), (int)names.size());
  for (const std::string &name : names) {
    SCOPED_TRACE(name);
    loom_tensor *a = loom_map_get(m, name.c_str()), *b = loom_map_get(back, name.c_str());
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(loom_dtype_of(b), loom_dtype_of(a));
    EXPECT_TRUE(loom_shape_equal(loom_shape_of(b), loom_shape_of(a)))
        << loom_shape_str(loom_shape_of(b)) << " vs " << loom_shape_str(loom_shape_of(a));
    EXPECT_TRUE(loom_is_contiguous(b));
    EXPECT_EQ(host_bytes(b), host_bytes(a));
    EXPECT_EQ(V(b), V(a));
  }
  EXPECT_EQ(loom_ndim(loom_map_get(back, "scalar")), 0);
  EXPECT_EQ(loom_item(loom_map_get(back, "scalar")), 3.5);
  EXPECT_EQ(V(loom_map_get(back, "transposed")), (std::vector<double>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11}));
  // The loaded map lists the tensors in file order, which the writer sorted.
  for (int i = 1; i < loom_map_size(back); i++)
    EXPECT_LT(strcmp(loom_map_name(back, i - 1), loom_map_name(back, i)), 0);
  loom_map_free(back);
  loom_map_free(m);
}

TEST_F(Safetensors, MetadataAndOddNamesRoundTrip) {
  ScopeGuard scope;
  loom_tensor_map *m = loom_map_new();
  const char *odd = "layer \"1\"\\w\xc3\xa9ights\n";   // quote, backslash, UTF-8, newline
  ASSERT_EQ(loom_map_set(m, odd, T({1, 2}, LOOM_SHAPE(2))), 0);
  ASSERT_EQ(loom_map_set_meta(m, "format", "pt"), 0);
  ASSERT_EQ(loom_map_set_meta(m, "note", "tab\there \"quoted\" \xe2\x82\xac"), 0);
  ASSERT_EQ(loom_map_set_meta(m, "format", "loom"), 0);   // replaces
  EXPECT_EQ(loom_map_meta_size(m), 2);
  const std::string file = path("meta.safetensors");
  ASSERT_EQ(loom_safetensors_save(file.c_str(), m), 0) << loom_last_error();
  loom_tensor_map *back = loom_safetensors_load(file.c_str(), loom_cpu());
  ASSERT_NE(back, nullptr) << loom_last_error();
  EXPECT_EQ(loom_map_meta_size(back), 2);
  EXPECT_STREQ(loom_map_get_meta(back, "format"), "loom");
  EXPECT_STREQ(loom_map_get_meta(back, "note"), "tab\there \"quoted\" \xe2\x82\xac");
  EXPECT_EQ(loom_map_get_meta(back, "missing"), nullptr);
  ASSERT_NE(loom_map_get(back, odd), nullptr);
  EXPECT_EQ(V(loom_map_get(back, odd)), (std::vector<double>{1, 2}));
  loom_map_free(back);
  loom_map_free(m);
}

// A file built byte by byte from the spec, not by our writer.
TEST_F(Safetensors, ReadsHandWrittenFile) {
  std::vector<float> a = {1.5f, -2.0f, 0.25f, 8.0f, -0.5f, 3.0f};
  std::vector<int32_t> b = {7, -9};
  std::vector<uint16_t> h = {0x3C00, 0xC000};   // f16: 1.0, -2.0
  // b's bytes first, then a's, then h's; header order b, __metadata__, a, h; 13 spaces of padding.
  std::string header = "{" + std::string("\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},") +
                       "\"__metadata__\":{\"format\":\"pt\",\"author\":\"me\"}, " +
                       f32_entry("a", "[2, 3]", 8, 32) + ",\n" +
                       "\"h\":{\"data_offsets\":[32,36],\"shape\":[2],\"dtype\":\"F16\"}}" +
                       std::string(13, ' ');
  const std::string file = path("hand.safetensors");
  write_file(file, st_bytes(header, raw(b) + raw(a) + raw(h)));
  loom_tensor_map *m = loom_safetensors_load(file.c_str(), loom_cpu());
  ASSERT_NE(m, nullptr) << loom_last_error();
  ASSERT_EQ(loom_map_size(m), 3);
  EXPECT_STREQ(loom_map_name(m, 0), "b");   // header order
  EXPECT_STREQ(loom_map_name(m, 1), "a");
  EXPECT_STREQ(loom_map_name(m, 2), "h");
  loom_tensor *ta = loom_map_get(m, "a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(loom_dtype_of(ta), LOOM_F32);
  EXPECT_TRUE(loom_shape_equal(loom_shape_of(ta), LOOM_SHAPE(2, 3)));
  EXPECT_EQ(V(ta), (std::vector<double>{1.5, -2, 0.25, 8, -0.5, 3}));
  EXPECT_EQ(loom_dtype_of(loom_map_get(m, "b")), LOOM_I32);
  EXPECT_EQ(V(loom_map_get(m, "b")), (std::vector<double>{7, -9}));
  EXPECT_EQ(loom_dtype_of(loom_map_get(m, "h")), LOOM_F16);
  EXPECT_EQ(V(loom_map_get(m, "h")), (std::vector<double>{1, -2}));
  EXPECT_EQ(loom_map_meta_size(m), 2);
  EXPECT_STREQ(loom_map_meta_key(m, 0), "format");
  EXPECT_STREQ(loom_map_get_meta(m, "author"), "me");
  loom_map_free(m);

  // An empty file in the format: no tensors at all.
  loom_tensor_map *empty = loom_safetensors_parse(st_bytes("{}      ", "").data(), 16, loom_cpu());
  ASSERT_NE(empty, nullptr) << loom_last_error();
  EXPECT_EQ(loom_map_size(empty), 0);
  loom_map_free(empty);
}

TEST_F(Safetensors, WriterSortsNamesPacksOffsetsAndAlignsHeader) {
  ScopeGuard scope;
  loom_tensor_map *m = loom_map_new();
  // Inserted out of order; byte-wise order is Beta < alpha < beta10 < beta2 < zeta.
  const char *names[] = {"zeta", "alpha", "beta2", "Beta", "beta10"};
  const int sizes[] = {3, 1, 4, 2, 5};
  for (int i = 0; i < 5; i++) {
    std::vector<double> vals;
    for (int k = 0; k < sizes[i]; k++) vals.push_back(10 * i + k);
    ASSERT_EQ(loom_map_set(m, names[i], T(vals, LOOM_SHAPE(sizes[i]), LOOM_F64)), 0);
  }
  EXPECT_STREQ(loom_map_name(m, 0), "zeta");   // the map keeps insertion order
  const std::string file = path("layout.safetensors");
  ASSERT_EQ(loom_safetensors_save(file.c_str(), m), 0) << loom_last_error();
  const std::string bytes = read_file(file);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)bytes[i];
  EXPECT_EQ((8 + n) % 8, 0u);
  ASSERT_LE(8 + n, bytes.size());
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header[0], '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);   // none set, none written

  const char *sorted[] = {"Beta", "alpha", "beta10", "beta2", "zeta"};
  long long expect_begin = 0;
  size_t last_pos = 0;
  for (const char *name : sorted) {
    SCOPED_TRACE(name);
    size_t pos = header.find(std::string("\"") + name + "\":{");
    ASSERT_NE(pos, std::string::npos);
    EXPECT_GT(pos, last_pos);
    last_pos = pos;
    auto [b, e] = offsets_of(header, name);
    const std::string want = host_bytes(loom_map_get(m, name));
    EXPECT_EQ(b, expect_begin);
    EXPECT_EQ(e - b, (long long)want.size());
    EXPECT_EQ(bytes.substr(8 + n + b, e - b), want);
    expect_begin = e;
  }
  EXPECT_EQ(bytes.size(), 8 + n + expect_begin);
  EXPECT_EQ(file_count(), 1);   // no temp file left
  loom_map_free(m);
}

TEST_F(Safetensors, MapOwnsReferences) {
  int64_t live = loom_live_tensors();
  loom_tensor_map *m = loom_map_new();
  loom_tensor *a = loom_zeros(LOOM_SHAPE(2), LOOM_F32, loom_cpu());
  loom_tensor *b = loom_ones(LOOM_SHAPE(3), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_map_set(m, "w", a), 0);
  ASSERT_EQ(loom_map_set(m, "v", b), 0);
  loom_release(a);   // the map's references keep them alive
  loom_release(b);
  EXPECT_EQ(loom_live_tensors(), live + 2);
  EXPECT_EQ(V(loom_map_get(m, "w")), (std::vector<double>{0, 0}));
  loom_tensor *c = loom_full(LOOM_SHAPE(1), 4, LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_map_set(m, "w", c), 0);   // replaces a, keeps its position
  loom_release(c);
  EXPECT_EQ(loom_live_tensors(), live + 2);
  EXPECT_EQ(loom_map_size(m), 2);
  EXPECT_STREQ(loom_map_name(m, 0), "w");
  EXPECT_EQ(loom_map_get(m, "w"), c);
  EXPECT_EQ(loom_map_get(m, "nope"), nullptr);
  EXPECT_EQ(loom_map_name(m, 2), nullptr);
  EXPECT_EQ(loom_map_set(m, "x", nullptr), LOOM_ERR_INVALID);
  EXPECT_TRUE(contains(loom_last_error(), "loom_map_set"));
  EXPECT_EQ(loom_map_set(nullptr, "x", c), LOOM_ERR_INVALID);
  EXPECT_EQ(loom_map_set_meta(m, "k", nullptr), LOOM_ERR_INVALID);
  // Many names: lookups still find every one.
  loom_tensor *s = loom_zeros(LOOM_SHAPE(), LOOM_I32, loom_cpu());
  for (int i = 0; i < 1000; i++) ASSERT_EQ(loom_map_set(m, ("p" + std::to_string(i)).c_str(), s), 0);
  loom_release(s);
  for (int i = 0; i < 1000; i += 37) EXPECT_EQ(loom_map_get(m, ("p" + std::to_string(i)).c_str()), s);
  EXPECT_EQ(loom_map_size(m), 1002);
  loom_map_free(m);
  EXPECT_EQ(loom_live_tensors(), live);

  // Loaded tensors belong to the map, not to the scope that was open during the load.
  loom_tensor_map *w = loom_map_new();
  loom_scope_begin();
  loom_map_set(w, "x", T({1, 2, 3}, LOOM_SHAPE(3)));
  loom_scope_end();
  ASSERT_EQ(loom_safetensors_save(path("x.safetensors").c_str(), w), 0) << loom_last_error();
  loom_map_free(w);
  loom_scope_begin();
  loom_tensor_map *r = loom_safetensors_load(path("x.safetensors").c_str(), loom_cpu());
  loom_scope_end();
  ASSERT_NE(r, nullptr) << loom_last_error();
  EXPECT_EQ(V(loom_map_get(r, "x")), (std::vector<double>{1, 2, 3}));
  loom_map_free(r);
  EXPECT_EQ(loom_live_tensors(), live);
}

TEST_F(Safetensors, RejectsTruncatedFiles) {
  std::vector<float> a = {1, 2, 3, 4};
  const std::string good = st_bytes("{" + f32_entry("a", "[4]", 0, 16) + "}", raw(a));
  expect_bad("", "shorter than the 8-byte");
  expect_bad(good.substr(0, 5), "shorter than the 8-byte");
  expect_bad(good.substr(0, 20), "runs past the end");                 // header cut
  expect_bad(good.substr(0, good.size() - 4), "run past the 12-byte data");   // data cut
  std::string huge = good;
  huge[5] = 1;   // 2^40 bytes of header
  expect_bad(huge, "absurd");
  std::string past = good;
  past[0] = char(good.size());   // header length past the end
  expect_bad(past, "runs past the end");
  // A file on disk names its path.
  const std::string file = path("cut.safetensors");
  write_file(file, good.substr(0, 20));
  EXPECT_EQ(loom_safetensors_load(file.c_str(), loom_cpu()), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
  EXPECT_TRUE(contains(loom_last_error(), file)) << loom_last_error();
}

TEST_F(Safetensors, RejectsBadHeaders) {
  const std::string d4(4, '\0'), d8(8, '\0'), d12(12, '\0');
  expect_bad(st_bytes("{\"a\":", ""), "not valid JSON");
  expect_bad(st_bytes("[1, 2]", ""), "not a JSON object");
  expect_bad(st_bytes("{} x", ""), "after its JSON object");
  expect_bad(st_bytes("{\"a\":\"\xff\"}", ""), "not valid UTF-8");
  expect_bad(st_bytes("{\"a\":5}", ""), "entry 'a' is a number, not an object");
  expect_bad(st_bytes("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", d4), "\"dtype\" is missing");
  expect_bad(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", d4),
             "\"shape\" is a string");
  expect_bad(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", d4), "\"data_offsets\" is missing");
  expect_bad(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", d8),
             "data_offsets");
  expect_bad(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", d4),
             "data_offsets[1] is a string");
  expect_bad(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,4]}}", d4),
             "data_offsets[0]");
  expect_bad(st_bytes("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", d4),
             "tensor 'a': unknown dtype \"F33\"");
  expect_bad(st_bytes("{\"q\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}", d4),
             "tensor 'q': dtype I16 is valid safetensors but not supported by Loom");
  expect_bad(st_bytes("{\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", d4),
             "F8_E4M3");
  expect_bad(st_bytes("{" + f32_entry("a", "[-2]", 0, 4) + "}", d4), "shape entry 0 is -2");
  expect_bad(st_bytes("{" + f32_entry("a", "[1.5]", 0, 4) + "}", d4), "not a non-negative integer");
  expect_bad(st_bytes("{" + f32_entry("a", "[1,1,1,1,1,1,1,1,1]", 0, 4) + "}", d4), "9 dims");
  expect_bad(st_bytes("{" + f32_entry("a", "[3]", 0, 8) + "}", d8),
             "shape [3] of F32 needs 12 bytes but data_offsets [0, 8] hold 8");
  expect_bad(st_bytes("{" + f32_entry("a", "[4294967296,4294967296]", 0, 8) + "}", d8),
             "needs more than 2^64 bytes");
  expect_bad(st_bytes("{" + f32_entry("a", "[1]", 8, 4) + "}", d8), "begin after end");
  expect_bad(st_bytes("{" + f32_entry("a", "[4]", 0, 16) + "}", d8), "run past the 8-byte data");
  expect_bad(st_bytes("{" + f32_entry("a", "[2]", 0, 8) + "," + f32_entry("b", "[2]", 4, 12) + "}", d12),
             "tensors 'a' [0, 8) and 'b' [4, 12) overlap");
  expect_bad(st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("b", "[1]", 8, 12) + "}", d12),
             "hole in the data: bytes [4, 8)");
  expect_bad(st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "}", d8), "hole in the data: bytes [4, 8)");
  expect_bad(st_bytes("{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("a", "[1]", 4, 8) + "}", d8),
             "tensor 'a' appears twice");
  expect_bad(st_bytes("{\"__metadata__\":{\"k\":1}," + f32_entry("a", "[1]", 0, 4) + "}", d4),
             "__metadata__ value of 'k' is a number");
  expect_bad(st_bytes("{\"__metadata__\":[]," + f32_entry("a", "[1]", 0, 4) + "}", d4),
             "__metadata__ is an array");
  // control characters in names and metadata, escaped or raw: "w\u0000a" would load as "w"
  expect_bad(st_bytes("{" + f32_entry("w\\u0000a", "[1]", 0, 4) + "}", d4),
             "header string \"w\\u0000a\" holds the control character U+0000");
  expect_bad(st_bytes("{\"__metadata__\":{\"k\":\"x\\u001fy\"}," + f32_entry("a", "[1]", 0, 4) + "}", d4),
             "U+001F");
  expect_bad(st_bytes("{" + f32_entry("w\tb", "[1]", 0, 4) + "}", d4), "U+0009");
  const std::string plain = st_bytes("{" + f32_entry("w\\\\u0000", "[1]", 0, 4) + "}", d4);
  loom_tensor_map *ok = loom_safetensors_parse(plain.data(), plain.size(), loom_cpu());
  ASSERT_NE(ok, nullptr) << loom_last_error();  // an escaped backslash then "u0000" is a plain name
  EXPECT_NE(loom_map_get(ok, "w\\u0000"), nullptr);
  loom_map_free(ok);
  std::string bools = "\x01\x02";
  expect_bad(st_bytes("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[0,2]}}", bools),
             "BOOL element 1 holds byte 2");
}

TEST_F(Safetensors, MissingFileOrDirectory) {
  const std::string missing = path("nope.safetensors");
  EXPECT_EQ(loom_safetensors_load(missing.c_str(), loom_cpu()), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
  EXPECT_TRUE(contains(loom_last_error(), missing)) << loom_last_error();
  EXPECT_TRUE(contains(loom_last_error(), "No such file")) << loom_last_error();
  EXPECT_EQ(loom_safetensors_load(dir.c_str(), loom_cpu()), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_IO);
  EXPECT_TRUE(contains(loom_last_error(), "is a directory")) << loom_last_error();
  EXPECT_EQ(loom_safetensors_load(nullptr, loom_cpu()), nullptr);
  EXPECT_EQ(loom_last_status(), LOOM_ERR_INVALID);
}

class SafetensorsSave : public Safetensors {
 protected:
  std::string target, original;
  loom_tensor_map *m = nullptr;
  void SetUp() override {
    Safetensors::SetUp();
    m = loom_map_new();
    loom_tensor *t = loom_arange(0, 16384, 1, LOOM_F32, loom_cpu());   // 64 KiB of data
    ASSERT_EQ(loom_map_set(m, "w", t), 0) << loom_last_error();
    loom_release(t);
    target = path("good.safetensors");
    ASSERT_EQ(loom_safetensors_save(target.c_str(), m), 0) << loom_last_error();
    original = read_file(target);
  }
  void TearDown() override {
    loom_map_free(m);
    Safetensors::TearDown();
  }
  // The save failed cleanly: I/O-or-invalid status, message part, old file intact, no temp file.
  void expect_failed_cleanly(int status, loom_status want, const std::string &part) {
    EXPECT_EQ(status, want);
    EXPECT_EQ(loom_last_status(), want);
    EXPECT_TRUE(contains(loom_last_error(), part)) << loom_last_error();
    EXPECT_EQ(read_file(target), original);
    EXPECT_EQ(file_count(), 1);
  }
};

TEST_F(SafetensorsSave, MissingDirectoryFailsCleanly) {
  const std::string bad = path("no/such/dir/x.safetensors");
  EXPECT_EQ(loom_safetensors_save(bad.c_str(), m), LOOM_ERR_IO);
  EXPECT_TRUE(contains(loom_last_error(), bad)) << loom_last_error();
  EXPECT_TRUE(contains(loom_last_error(), "No such file or directory")) << loom_last_error();
  EXPECT_EQ(loom_safetensors_save(nullptr, m), LOOM_ERR_INVALID);
  EXPECT_EQ(loom_safetensors_save(target.c_str(), nullptr), LOOM_ERR_INVALID);
}

TEST_F(SafetensorsSave, InvalidMapLeavesExistingFile) {
  loom_tensor *t = loom_zeros(LOOM_SHAPE(1), LOOM_F32, loom_cpu());
  ASSERT_EQ(loom_map_set(m, "__metadata__", t), 0);
  loom_release(t);
  expect_failed_cleanly(loom_safetensors_save(target.c_str(), m), LOOM_ERR_INVALID, "reserved");
}

TEST_F(SafetensorsSave, BlockedTempFileLeavesExistingFile) {
  const std::string tmp = target + ".tmp." + std::to_string(getpid());
  ASSERT_TRUE(std::filesystem::create_directory(tmp));
  expect_failed_cleanly(loom_safetensors_save(target.c_str(), m), LOOM_ERR_IO, "cannot create");
  EXPECT_TRUE(contains(loom_last_error(), tmp)) << loom_last_error();
}

// A short write (here: the file size limit, as when the disk is full) must not touch the target.
TEST_F(SafetensorsSave, ShortWriteLeavesExistingFile) {
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  int status = loom_safetensors_save(target.c_str(), m);
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  expect_failed_cleanly(status, LOOM_ERR_IO, "cannot write");
  EXPECT_TRUE(contains(loom_last_error(), strerror(EFBIG))) << loom_last_error();
}

TEST_F(Safetensors, CudaRoundTrip) {
  LOOM_REQUIRE_GPU();
  ScopeGuard scope;
  loom_tensor *host = T({1, 2, 3, 4, 5, 6}, LOOM_SHAPE(2, 3), LOOM_BF16);
  loom_tensor *dev = loom_transpose(loom_to_device(host, loom_cuda(0)), 0, 1);
  loom_tensor_map *m = loom_map_new();
  ASSERT_EQ(loom_map_set(m, "g", dev), 0);
  const std::string file = path("cuda.safetensors");
  ASSERT_EQ(loom_safetensors_save(file.c_str(), m), 0) << loom_last_error();
  loom_tensor_map *back = loom_safetensors_load(file.c_str(), loom_cuda(0));
  ASSERT_NE(back, nullptr) << loom_last_error();
  loom_tensor *g = loom_map_get(back, "g");
  EXPECT_EQ(loom_device_of(g).type, LOOM_CUDA);
  EXPECT_EQ(loom_dtype_of(g), LOOM_BF16);
  EXPECT_EQ(V(g), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  loom_map_free(back);
  loom_map_free(m);
}

}  // namespace
