// Helpers for the data pipeline suites: temporary files, a tiny gzip writer
// (stored deflate blocks, so the tests need no zlib of their own), IDX and
// CIFAR-10 file builders.
#pragma once
#include <gtest/gtest.h>
#include <loom/data.h>
#include <loom/runtime.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <sys/stat.h>
#include <vector>

using Bytes = std::vector<uint8_t>;

inline std::string tmp_path(const std::string &name) {
  std::string dir = ::testing::TempDir();
  if (!dir.empty() && dir.back() != '/') dir += '/';
  return dir + "loom_data_" + std::to_string(::getpid()) + "_" + name;
}

inline std::string tmp_dir(const std::string &name) {
  std::string d = tmp_path(name);
  mkdir(d.c_str(), 0755);
  return d;
}

inline void write_bytes(const std::string &path, const Bytes &b) {
  FILE *f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!b.empty()) fwrite(b.data(), 1, b.size(), f);
  fclose(f);
}

inline uint32_t crc32_of(const Bytes &b) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t v : b) {
    c ^= v;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// A valid gzip member holding b in stored (uncompressed) deflate blocks.
inline Bytes gzip_bytes(const Bytes &b) {
  Bytes out = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
  size_t at = 0;
  do {
    size_t n = b.size() - at > 65535 ? 65535 : b.size() - at;
    bool last = at + n == b.size();
    out.push_back(last ? 1 : 0);
    out.push_back(n & 0xff), out.push_back(n >> 8);
    out.push_back(~n & 0xff), out.push_back((~n >> 8) & 0xff);
    out.insert(out.end(), b.begin() + at, b.begin() + at + n);
    at += n;
  } while (at < b.size());
  uint32_t crc = crc32_of(b), size = (uint32_t)b.size();
  for (int k = 0; k < 4; k++) out.push_back((crc >> (8 * k)) & 0xff);
  for (int k = 0; k < 4; k++) out.push_back((size >> (8 * k)) & 0xff);
  return out;
}

inline void put_be32(Bytes &b, uint32_t v) {
  for (int k = 3; k >= 0; k--) b.push_back((v >> (8 * k)) & 0xff);
}

// Image i, pixel p holds (i * 7 + p * 3) % 256.
inline uint8_t idx_pixel(int i, int p) { return (uint8_t)((i * 7 + p * 3) % 256); }
inline uint8_t idx_label(int i) { return (uint8_t)((i * 3 + 1) % 10); }

inline Bytes idx_images(int n, int rows, int cols, uint32_t magic = 0x00000803) {
  Bytes b;
  put_be32(b, magic), put_be32(b, n), put_be32(b, rows), put_be32(b, cols);
  for (int i = 0; i < n; i++)
    for (int p = 0; p < rows * cols; p++) b.push_back(idx_pixel(i, p));
  return b;
}

inline Bytes idx_labels(int n, uint32_t magic = 0x00000801) {
  Bytes b;
  put_be32(b, magic), put_be32(b, n);
  for (int i = 0; i < n; i++) b.push_back(idx_label(i));
  return b;
}

// n CIFAR-10 records; record i of file f: label (f + i) % 10, pixel p = (f * 31 + i * 5 + p) % 256.
inline Bytes cifar_records(int f, int n) {
  Bytes b;
  for (int i = 0; i < n; i++) {
    b.push_back((uint8_t)((f + i) % 10));
    for (int p = 0; p < 3072; p++) b.push_back((uint8_t)((f * 31 + i * 5 + p) % 256));
  }
  return b;
}

inline bool error_has(const char *text) { return std::string(loom_last_error()).find(text) != std::string::npos; }
