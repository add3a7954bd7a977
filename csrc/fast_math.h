/* Vectorisable float32 activations for the recurrent kernels (csrc/_kernels.pyx).
 *
 * Why: libm's tanhf/expf are scalar calls (~20 ns each here), and an LSTM step evaluates five
 * activations per unit, so they cost more than the step's matrix product on large shapes.
 *
 * How: one branch-free range reduction (Cody-Waite, 2^n built from the bits of a round-to-nearest
 * shift) and a short polynomial for e^r or e^r - 1. sigmoid and tanh, the activations of every
 * LSTM and GRU step, run in float32 lanes (eight per AVX2 instruction) and carry the rounding
 * errors of e^r along (Fast2Sum) to correct their one division: sigmoid within 1.52 ulp and tanh
 * within 1.42 ulp of the float64 function over all 2^32 float32 inputs (checked exhaustively,
 * bench/exhaustive_ulp.py, and with and without FMA).
 * silu, exp, elu and selu are computed in double precision and rounded once: within 0.61 ulp.
 * tests/test_fast_math.py holds all six to 2 ulp on every 251st float32. Loops are plain so the
 * compiler vectorises them; on x86-64 Linux with GCC or Clang they are also compiled for AVX-512
 * and for AVX2+FMA, and the widest the CPU has is picked at load (AVX-512: sigmoid and tanh 1.5x
 * as fast as in AVX2 on an Intel Xeon of 2026; the bounds above hold in every variant).
 *
 * NaN propagates, +-inf saturate, -0.0 keeps its sign where the function does.
 */
#ifndef FASTRNN_FAST_MATH_H
#define FASTRNN_FAST_MATH_H

#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
#define FASTRNN_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
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
 * elements per vector instruction and no conversions. Both are one e^y - 1 and one division, built
 * so that the rounding errors that matter are carried along as the unevaluated low parts of
 * two-term sums (Fast2Sum) and corrected for once, after the division. Measured per element, side
 * by side: an earlier float32 sigmoid 1.74x faster than the double-precision one above, this one
 * 1.05-1.15x faster again (a polynomial of one degree less); this tanh 1.36-1.43x faster than one
 * that evaluated a series near 0 and a ratio above it for every lane. */

/* y = n ln 2 + r with |r| <= ln(2) / 2, for -104 <= y <= 0 (NaN propagates); returns r, n in *n. */
FASTRNN_INLINE float fr_reduce_f(float y, int32_t *n)
{
    const float shift = 12582912.0f;                   /* 1.5 * 2^23: rounds to an integer */
    float shifted = y * 1.44269504f + shift;
    float n_float = shifted - shift;
    int32_t bits;                                      /* n sits in the low bits of `shifted` */
    memcpy(&bits, &shifted, sizeof bits);
    *n = bits - 0x4B400000;
    /* ln 2 = 0.693359375 - 2.12194440e-4: n times the first part is exact (n has 8 bits). */
    return (y - n_float * 0.693359375f) + n_float * 2.12194440e-4f;
}

/* e^r - 1 - r for |r| <= ln(2) / 2, as r^2 q(r): a least-squares fit of degree 4 for q, within
 * 0.29 ulp of e^r - 1 (degree 5 bought nothing the bounds below need). */
FASTRNN_INLINE float fr_expm1_tail_f(float r)
{
    float q = 1.38824899e-3f;
    q = q * r + 8.36654939e-3f;
    q = q * r + 4.16672006e-2f;
    q = q * r + 1.66665435e-1f;
    q = q * r + 4.99999970e-1f;
    return r * r * q;
}

/* 2^n for -126 <= n <= 127 (a NaN's n is far outside: unsigned, so that its shift is defined). */
FASTRNN_INLINE float fr_pow2_f(int32_t n)
{
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return scale;
}

/* num / (base + e) for base + e in [1, 2] with |e_hi| <= base, num = num_hi + num_lo and
 * e = e_hi + e_lo: one rounded division, then the first-order correction for the roundings of the
 * inputs and of base + e_hi (Fast2Sum). The correction is under an ulp, so 1 / d to 6% (the linear
 * start of Newton's reciprocal on [1, 2]) is precise enough for it. (Newton's reciprocal in place
 * of the division measured 1.3x slower per element.) */
FASTRNN_INLINE float fr_ratio_f(float num_hi, float num_lo, float base, float e_hi, float e_lo)
{
    float d = base + e_hi;
    float d_lo = ((base - d) + e_hi) + e_lo;
    float s = num_hi / d;
    return s + (num_lo - s * d_lo) * (1.41176471f - 0.470588235f * d);
}

/* 1 / (1 + e) for x >= 0, e / (1 + e) below, with e = e^-|x| = 2^n (1 + t) carried as e_hi + e_lo.
 * Within 1.52 ulp of the float64 function over all 2^32 float32 inputs (1.52 without FMA). */
FASTRNN_INLINE float fr_sigmoid_f(float x)
{
    float a = -fabsf(x);
    a = a < -104.0f ? -104.0f : a;                     /* sigmoid(-104) rounds to 0 */
    int32_t n;
    float r = fr_reduce_f(a, &n);
    float t = r + fr_expm1_tail_f(r);
    float e_hi = 1.0f + t;
    float e_lo = (1.0f - e_hi) + t;
    /* 2^n as 2^(n + 64) 2^-64, exact down to 2^-149: the products below then round once where e
     * is subnormal. (At n = -150 it is 0, where e < 1.02e-45 rounds to 0 or 2^-149: 0.73 ulp.) */
    float scale = fr_pow2_f(n + 64) * 5.42101086e-20f;
    e_hi *= scale;
    e_lo *= scale;
    return fr_ratio_f(x >= 0 ? 1.0f : e_hi, x >= 0 ? 0.0f : e_lo, 1.0f, e_hi, e_lo);
}

/* -m / (2 + m) with m = e^-2|x| - 1 = 2^n (1 + t) - 1, which keeps its full relative precision
 * near 0 (n = 0: m = t, its own rounding error carried along), so no separate series is needed
 * there. Within 1.42 ulp of the float64 function over all 2^32 float32 inputs (1.42 without FMA). */
FASTRNN_INLINE float fr_tanh_f(float x)
{
    float a = fabsf(x);
    a = a > 9.5f ? 9.5f : a;                           /* tanh(9.5) rounds to 1 */
    int32_t n;
    float r = fr_reduce_f(-2.0f * a, &n);
    float tail = fr_expm1_tail_f(r);
    float t = r + tail;
    float t_lo = (r - t) + tail;
    /* 2^n t + (2^n - 1), n >= -28: the first term is exact and the smaller (Fast2Sum). */
    float scale = fr_pow2_f(n);
    float big = scale - 1.0f, small = scale * t;
    float m_hi = big + small;
    float m_lo = ((big - m_hi) + small) + scale * t_lo;
    return copysignf(fr_ratio_f(-m_hi, -m_lo, 2.0f, m_hi, m_lo), x);   /* NaN stays NaN */
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
