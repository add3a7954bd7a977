/* Vectorisable float32 activations for the recurrent kernels (csrc/_kernels.pyx).
 *
 * Why: libm's tanhf/expf are scalar calls (~20 ns each here), and an LSTM step evaluates five
 * activations per unit, so they cost more than the step's matrix product on large shapes.
 *
 * How: one branch-free range reduction (Cody-Waite, 2^n built from the bits of a round-to-nearest
 * shift) and a short polynomial for e^r or e^r - 1. sigmoid and tanh, the activations of every
 * LSTM and GRU step, run in float32 lanes (eight per AVX2 instruction) and carry the rounding
 * error of e^r along (Fast2Sum) to correct their one division: within 1.45 ulp of the float64
 * function over all 2^32 float32 inputs (checked once exhaustively, bench/exhaustive_ulp.py;
 * 1.50 ulp when compiled without FMA, -mno-fma, checked the same way).
 * silu, exp, elu and selu are computed in double precision and rounded once: within 0.61 ulp.
 * tests/test_fast_math.py holds all six to 2 ulp on every 251st float32. Loops are plain so the
 * compiler vectorises them; on x86-64 with GCC or Clang they are also compiled for AVX2+FMA and
 * picked at run time.
 *
 * NaN propagates, +-inf saturate, -0.0 keeps its sign where the function does.
 */
#ifndef FASTRNN_FAST_MATH_H
#define FASTRNN_FAST_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#define FASTRNN_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FASTRNN_MULTIVERSION
#endif
#if defined(__GNUC__) || defined(__clang__)
#define FASTRNN_INLINE static inline __attribute__((always_inline))  /* into each clone */
#else
#define FASTRNN_INLINE static inline
#endif

/* x = n ln 2 + r with |r| <= ln(2) / 2 (Cody-Waite), for |x| <= 700; *scale = 2^n. */
FASTRNN_INLINE double fr_reduce(double x, double *scale)
{
    const double shift = 6755399441055744.0;          /* 1.5 * 2^52: rounds to an integer */
    double shifted = x * 1.4426950408889634 + shift;
    double n = shifted - shift;
    int64_t bits;                                      /* 2^n: n's bits sit in the shifted value */
    memcpy(&bits, &shifted, sizeof bits);
    int64_t exponent = (bits - (int64_t)0x4338000000000000LL + 1023) << 52;
    memcpy(scale, &exponent, sizeof *scale);
    return (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
}

/* e^r for |r| <= ln(2) / 2: Taylor to degree 7, relative error below 6e-9 (a tenth of a float32
 * ulp; the float32 results are rounded from double once). */
FASTRNN_INLINE double fr_exp_reduced(double r)
{
    double p = 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r + 1.0;
}

/* e^r - 1 for |r| <= ln(2) / 2, to degree 8: full relative precision near 0, where e^r - 1 would
 * cancel. With r from fr_reduce, e^x - 1 = 2^n (e^r - 1) + (2^n - 1). */
FASTRNN_INLINE double fr_expm1_reduced(double r)
{
    double q = 1.0 / 40320.0;
    q = q * r + 1.0 / 5040.0;
    q = q * r + 1.0 / 720.0;
    q = q * r + 1.0 / 120.0;
    q = q * r + 1.0 / 24.0;
    q = q * r + 1.0 / 6.0;
    q = q * r + 0.5;
    q = q * r + 1.0;
    return q * r;
}

/* e^x in double: 0 and inf beyond +-700 (as in float32). */
FASTRNN_INLINE double fr_exp(double x)
{
    double xc = x != x ? 0.0 : x;                      /* NaN handled at the end */
    xc = xc > 700.0 ? 700.0 : xc;
    xc = xc < -700.0 ? -700.0 : xc;
    double scale, r = fr_reduce(xc, &scale);
    double result = fr_exp_reduced(r) * scale;
    result = x < -700.0 ? 0.0 : result;                /* exact limits, so that 0 * inf stays NaN */
    result = x > 700.0 ? INFINITY : result;
    return x != x ? x : result;
}

/* sigmoid in double, for silu: the argument is clamped where the float32 result is already exact,
 * which removes the general exp's special cases; the comparisons let a NaN x stay NaN. */
FASTRNN_INLINE double fr_sigmoid(double x)
{
    double a = -fabs(x);
    a = a < -110.0 ? -110.0 : a;                       /* sigmoid(-110) rounds to 0 in float32 */
    double scale, r = fr_reduce(a, &scale);
    /* e^-|x|; exactly 0 beyond the clamp, so that silu(-inf) = -inf * 0 is NaN, as in float64 */
    double e = fabs(x) >= 110.0 ? 0.0 : fr_exp_reduced(r) * scale;
    double s = 1.0 / (1.0 + e);
    return x >= 0 ? s : e * s;
}

FASTRNN_INLINE double fr_expm1(double x)               /* for x <= 0 (elu's negative side) */
{
    double scale, r = fr_reduce(x < -700.0 ? -700.0 : x, &scale);   /* expm1(-700) is -1 */
    return scale * fr_expm1_reduced(r) + (scale - 1.0);
}

/* sigmoid and tanh, the activations of every LSTM and GRU step, in float32 lanes: twice the
 * elements per vector instruction and no conversions. Each is built so that rounding errors land
 * where they are small against the result: e^r = 1 + (r + r^2 q(r)) rounds mostly in the last
 * addition; tanh near 0 is a + a^3 P(a^2). Measured against the double-precision versions above,
 * side by side: sigmoid 1.74x and tanh 1.34x faster per element, LSTM steps 1.09-1.12x.
 * Coefficients: least-squares fits of the relative error (0.002 and 0.05 ulp). */

/* e^y for -104 <= y <= 0 (NaN propagates), as the unevaluated sum *hi + *lo: e^y = 2^n e^r with
 * |r| <= ln(2) / 2, and e^r = 1 + t split exactly into its rounded value and the rounding error
 * (Fast2Sum, |t| < 1), so that a caller can keep the error out of its own roundings. */
FASTRNN_INLINE void fr_exp_nonpositive_f(float y, float *hi, float *lo)
{
    const float shift = 12582912.0f;                   /* 1.5 * 2^23: rounds to an integer */
    float shifted = y * 1.44269504f + shift;
    float n = shifted - shift;
    /* ln 2 = 0.693359375 - 2.12194440e-4: n times the first part is exact (n has 8 bits). */
    float r = (y - n * 0.693359375f) + n * 2.12194440e-4f;
    float q = 1.98176919e-4f;
    q = q * r + 1.39432338e-3f;
    q = q * r + 8.33343600e-3f;
    q = q * r + 4.16663103e-2f;
    q = q * r + 1.66666662e-1f;
    q = q * r + 5.00000006e-1f;
    float t = r + r * r * q;                           /* e^r - 1 */
    float e_hi = 1.0f + t;
    float e_lo = (1.0f - e_hi) + t;
    /* 2^n as 2^(n + 64) 2^-64: the first factor is normal down to n = -151, and the product
     * rounds once where the result is subnormal. */
    int32_t n_bits;
    memcpy(&n_bits, &shifted, sizeof n_bits);
    int32_t scale_bits = (n_bits - 0x4B400000 + 64 + 127) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    *hi = e_hi * scale * 5.42101086e-20f;             /* 2^-64 */
    *lo = e_lo * scale * 5.42101086e-20f;
}

/* num / (1 + e) for e = e_hi + e_lo in [0, 1] and num = num_hi + num_lo: one rounded division,
 * then the first-order correction for the roundings of the inputs and of 1 + e_hi (Fast2Sum).
 * The correction is under an ulp, so 1 / d to 6% (the linear start of Newton's reciprocal on
 * [1, 2]) is precise enough for it, and a second division (the slowest instruction here) is saved. */
FASTRNN_INLINE float fr_ratio_f(float num_hi, float num_lo, float e_hi, float e_lo)
{
    float d = 1.0f + e_hi;
    float d_lo = ((1.0f - d) + e_hi) + e_lo;
    float s = num_hi / d;
    return s + (num_lo - s * d_lo) * (1.41176471f - 0.470588235f * d);
}

FASTRNN_INLINE float fr_sigmoid_f(float x)
{
    float a = -fabsf(x);
    a = a < -104.0f ? -104.0f : a;                     /* sigmoid(-104) rounds to 0 */
    float e_hi, e_lo;
    fr_exp_nonpositive_f(a, &e_hi, &e_lo);             /* e^-|x|, in (0, 1] */
    /* 1 / (1 + e) for x >= 0, e / (1 + e) below */
    return fr_ratio_f(x >= 0 ? 1.0f : e_hi, x >= 0 ? 0.0f : e_lo, e_hi, e_lo);
}

FASTRNN_INLINE float fr_tanh_f(float x)
{
    float a = fabsf(x);
    /* Below atanh(1/2): the odd series, a + a^3 P(a^2), rounded once at the end. */
    float s = a * a;
    float p = -6.35765353e-3f;
    p = p * s + 2.11279783e-2f;
    p = p * s + -5.38652390e-2f;
    p = p * s + 1.33327007e-1f;
    p = p * s + -3.33333194e-1f;
    float small = a + a * s * p;
    /* Above: 1 - 2 e / (1 + e) with e = e^-2a, the subtracted part below 1/2 so that its error
     * shrinks in the result. tanh(10) rounds to 1. */
    float e_hi, e_lo;
    fr_exp_nonpositive_f(-2.0f * (a > 10.0f ? 10.0f : a), &e_hi, &e_lo);
    float large = 1.0f - 2.0f * fr_ratio_f(e_hi, e_lo, e_hi, e_lo);
    float t = a < 0.549306144f ? small : large;        /* NaN takes `large`, which is NaN */
    return copysignf(t, x);
}

FASTRNN_MULTIVERSION static void fr_tanh_f32(float *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) v[i] = fr_tanh_f(v[i]);
}

FASTRNN_MULTIVERSION static void fr_sigmoid_f32(float *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) v[i] = fr_sigmoid_f(v[i]);
}

FASTRNN_MULTIVERSION static void fr_silu_f32(float *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = (double)v[i];
        v[i] = (float)(x * fr_sigmoid(x));
    }
}

FASTRNN_MULTIVERSION static void fr_exp_f32(float *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) v[i] = (float)fr_exp((double)v[i]);
}

/* scale * (x if x > 0 else alpha * expm1(x)): elu (1, 1) and selu. */
FASTRNN_MULTIVERSION static void fr_elu_f32(float *v, Py_ssize_t n, double alpha, double scale)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        double x = (double)v[i];
        double negative = alpha * fr_expm1(x > 0 ? 0.0 : x);
        v[i] = (float)(scale * (x > 0 ? x : negative));
    }
}

#endif
