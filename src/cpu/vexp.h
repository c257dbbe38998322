/* cpu_expf: a branch-free f32 exp that GCC -O3 vectorises inside plain loops
 * (no calls, every step a packed float / int op; SSE2 is enough).
 *
 * x = n*ln2 + r with n = rint(x*log2(e)) (the 1.5*2^23 magic add rounds to
 * nearest and leaves n in the low mantissa bits) and |r| <= ln2/2, reduced in
 * two parts (Cody-Waite: n*LN2_HI is exact for |n| < 2^15). e^r is a degree-6
 * polynomial fitted by Remez for least relative error on [-ln2/2, ln2/2]
 * (1.9e-9, far below f32's 6e-8). 2^n is applied as two exact factors
 * 2^(n>>1) * 2^(n - (n>>1)), each a normal float for n in [-150, 128], so
 * overflow gives +inf and subnormal results are computed (rounded once by the
 * last multiply), not flushed. Error: at most 1 ulp against exp in double
 * rounded to float (tests/test_cpu_math.cpp measures it).
 * Edges: x is clamped to [-104, 89] first (beyond, e^x is 0 or +inf in f32, so
 * -inf -> 0 and +inf -> +inf), exp(+-0) == 1 exactly. A NaN passes the clamps
 * (its comparisons are false) and makes r, hence the result, NaN. */
#ifndef LOOM_CPU_VEXP_H
#define LOOM_CPU_VEXP_H

#include <stdint.h>
#include <string.h>

/* c ? a : b through bit masks. A plain `?:` on floats is a branch to GCC, which
 * then sinks the arithmetic on the result into one arm and, since float ops may
 * trap, no longer if-converts the loop: it would not vectorise. */
static inline float cpu_selectf(int c, float a, float b) {
  uint32_t m = 0u - (uint32_t)(c != 0), ab, bb;
  memcpy(&ab, &a, sizeof ab);
  memcpy(&bb, &b, sizeof bb);
  uint32_t rb = (ab & m) | (bb & ~m);
  float r;
  memcpy(&r, &rb, sizeof r);
  return r;
}

static inline float cpu_expf(float x) {
  const float log2e = 1.44269504f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  float xc = cpu_selectf(x < -104.0f, -104.0f, x);
  xc = cpu_selectf(xc > 89.0f, 89.0f, xc);
  float t = xc * log2e + magic;
  uint32_t tb;
  memcpy(&tb, &t, sizeof tb);
  int32_t n = (int32_t)(tb - 0x4B400000u); /* in [-150, 128]; junk for NaN, whose p is NaN */
  float nf = t - magic;
  float r = (xc - nf * ln2_hi) - nf * ln2_lo;
  float p = 1.38368446e-3f;
  p = p * r + 8.37481581e-3f;
  p = p * r + 4.16682251e-2f;
  p = p * r + 1.66664198e-1f;
  p = p * r + 4.99999911e-1f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t n1 = n >> 1, n2 = n - n1;
  uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
  float s1, s2;
  memcpy(&s1, &b1, sizeof s1);
  memcpy(&s2, &b2, sizeof s2);
  return p * s1 * s2;
}

#endif
