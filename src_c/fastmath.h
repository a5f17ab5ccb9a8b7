/* exp and expm1 of non-positive arguments (all the kernels need), and log, written so that GCC
 * vectorises loops calling them (no libm calls, no branches).
 *
 * Range reduction x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite, two-part ln2), a polynomial for
 * exp(r) or expm1(r), and 2^n rebuilt from bits so that results in the subnormal range come out as IEEE
 * arithmetic gives them. NaN propagates.
 *
 * Accuracy, measured by tests/test_extremes.py against float64 / long double references:
 * float: max relative error below 4e-7 (about 3 ulp); double: below 1e-14.
 */
#ifndef FASTNN_FASTMATH_H
#define FASTNN_FASTMATH_H

#include <stdint.h>
#include <string.h>

#define FNN_INLINE static inline __attribute__((always_inline))

/* ---- float ---- */

FNN_INLINE float fnn_bits_to_float(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
FNN_INLINE uint32_t fnn_float_to_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }

/* expm1(r) for |r| <= ln2/2: Taylor to degree 7, truncation below 1.3e-8 relative. */
FNN_INLINE float fnn_expm1_reduced_f(float r)
{
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    return p * r;
}

#define FNN_MAGIC_F 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer in the low bits */
#define FNN_LOG2E_F 1.44269504088896341f
#define FNN_LN2_HI_F 0.693359375f /* few mantissa bits: n * LN2_HI is exact */
#define FNN_LN2_LO_F -2.12194440e-4f

/* exp(r) * 2^-64 for |r| <= ln2/2. The polynomial is the degree-6 Chebyshev interpolant of exp on
 * that interval in monomial form, coefficients rounded to float (relative error 2e-8, below half
 * an ulp); the 2^-64 rides on the coefficients, exactly, so that exp_neg needs one multiply. */
FNN_INLINE float fnn_exp_reduced_scaled_f(float r)
{
    float p = 0x1p-64f * 1.394858118e-3f;
    p = p * r + 0x1p-64f * 8.375128731e-3f;
    p = p * r + 0x1p-64f * 4.166621715e-2f;
    p = p * r + 0x1p-64f * 1.666641533e-1f;
    p = p * r + 0x1p-64f * 0.5f;
    p = p * r + 0x1p-64f;
    return p * r + 0x1p-64f;
}

/* exp(x) for x <= 0 or NaN, the only arguments the kernels pass (sigmoid of -|v|, softmax of
 * x - max). 2^n (n in [-150, 0]) is built as 2^(n+64), a normal number, and the 2^-64 comes with
 * the polynomial: results in the subnormal range get the one rounding IEEE arithmetic gives. */
FNN_INLINE float fnn_exp_neg_f(float x)
{
    x = x < -104.0f ? -104.0f : x; /* below: exp underflows to 0 anyway */
    float t = x * FNN_LOG2E_F + FNN_MAGIC_F;
    float n = t - FNN_MAGIC_F;
    float r = x - n * FNN_LN2_HI_F;
    r = r - n * FNN_LN2_LO_F;
    uint32_t biased = fnn_float_to_bits(t) + (64u + 127u - fnn_float_to_bits(FNN_MAGIC_F));
    return fnn_exp_reduced_scaled_f(r) * fnn_bits_to_float(biased << 23);
}

/* expm1(x) for x <= 0 (all the kernels need): exact near 0 in relative terms. */
FNN_INLINE float fnn_expm1_neg_f(float x)
{
    x = x < -20.0f ? -20.0f : x; /* expm1(-20) rounds to -1 in float */
    float t = x * FNN_LOG2E_F + FNN_MAGIC_F;
    float n = t - FNN_MAGIC_F;
    float r = x - n * FNN_LN2_HI_F;
    r = r - n * FNN_LN2_LO_F;
    uint32_t e = fnn_float_to_bits(t) - fnn_float_to_bits(FNN_MAGIC_F) + 127u;
    float s = fnn_bits_to_float(e << 23);
    /* s*(1+p) - 1 written so that n == 0 gives p exactly. */
    return s * fnn_expm1_reduced_f(r) + (s - 1.0f);
}

/* ---- double ---- */

FNN_INLINE double fnn_bits_to_double(uint64_t u) { double d; memcpy(&d, &u, sizeof d); return d; }
FNN_INLINE uint64_t fnn_double_to_bits(double d) { uint64_t u; memcpy(&u, &d, sizeof u); return u; }

/* expm1(r) for |r| <= ln2/2: Taylor to degree 13, truncation below 1e-17 relative. */
FNN_INLINE double fnn_expm1_reduced_d(double r)
{
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r;
}

#define FNN_MAGIC_D 6755399441055744.0 /* 1.5 * 2^52 */
#define FNN_LOG2E_D 1.4426950408889634074
#define FNN_LN2_HI_D 6.93147180369123816490e-01 /* trailing zero bits: n * LN2_HI is exact */
#define FNN_LN2_LO_D 1.90821492927058770002e-10

/* exp(r) * 2^-128 for |r| <= ln2/2, from the expm1 polynomial above (exact scaling). */
FNN_INLINE double fnn_exp_reduced_scaled_d(double r) { return (1.0 + fnn_expm1_reduced_d(r)) * 0x1p-128; }

/* exp(x) for x <= 0 or NaN; 2^n (n in [-1076, 0]) as 2^(n+128) times the scaled polynomial. */
FNN_INLINE double fnn_exp_neg_d(double x)
{
    x = x < -746.0 ? -746.0 : x;
    double t = x * FNN_LOG2E_D + FNN_MAGIC_D;
    double n = t - FNN_MAGIC_D;
    double r = x - n * FNN_LN2_HI_D;
    r = r - n * FNN_LN2_LO_D;
    uint64_t biased = fnn_double_to_bits(t) + (128u + 1023u - fnn_double_to_bits(FNN_MAGIC_D));
    return fnn_exp_reduced_scaled_d(r) * fnn_bits_to_double(biased << 52);
}

FNN_INLINE double fnn_expm1_neg_d(double x)
{
    x = x < -40.0 ? -40.0 : x; /* expm1(-40) rounds to -1 in double */
    double t = x * FNN_LOG2E_D + FNN_MAGIC_D;
    double n = t - FNN_MAGIC_D;
    double r = x - n * FNN_LN2_HI_D;
    r = r - n * FNN_LN2_LO_D;
    uint64_t e = fnn_double_to_bits(t) - fnn_double_to_bits(FNN_MAGIC_D) + 1023u;
    double s = fnn_bits_to_double(e << 52);
    return s * fnn_expm1_reduced_d(r) + (s - 1.0);
}

/* log(x) for positive normal x (the softmax sums are in [1, K]); NaN and inf pass through.
 * x = 2^e * m with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(f), f = (m - 1)/(m + 1), |f| < 0.172,
 * as an odd series in f to f^21 (truncation below 3e-17 relative). */
FNN_INLINE double fnn_log_d(double x)
{
    const uint64_t bits = fnn_double_to_bits(x);
    const uint64_t mantissa_one = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
    double m = fnn_bits_to_double(mantissa_one); /* [1, 2) */
    /* The biased exponent as a double without an int64 -> double conversion (AVX2 has none). */
    double e = fnn_bits_to_double(0x4330000000000000ULL | (bits >> 52 & 0x7ff)) - 4503599627370496.0 - 1023.0;
    const int big = m > 1.4142135623730951;
    m = big ? 0.5 * m : m;
    e = big ? e + 1.0 : e;
    const double f = (m - 1.0) / (m + 1.0);
    const double f2 = f * f;
    double p = 1.0 / 21.0;
    p = p * f2 + 1.0 / 19.0;
    p = p * f2 + 1.0 / 17.0;
    p = p * f2 + 1.0 / 15.0;
    p = p * f2 + 1.0 / 13.0;
    p = p * f2 + 1.0 / 11.0;
    p = p * f2 + 1.0 / 9.0;
    p = p * f2 + 1.0 / 7.0;
    p = p * f2 + 1.0 / 5.0;
    p = p * f2 + 1.0 / 3.0;
    p = p * f2 + 1.0;
    const double result = e * 0.6931471805599453 + 2.0 * f * p;
    return (x == x && x < 1.0 / 0.0) ? result : x;
}

#endif
