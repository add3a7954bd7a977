/* Vectorisable float32 activations for the recurrent kernels (csrc/_kernels.pyx).
 *
 * Why: libm's tanhf/expf are scalar calls (~20 ns each here), and an LSTM step evaluates five
 * activations per unit, so they cost more than the step's matrix product on large shapes.
 *
 * How: every float32 activation is computed in double precision from one branch-free range
 * reduction (Cody-Waite, 2^n built from the bits of a round-to-nearest shift) and a short Taylor
 * polynomial for e^r or e^r - 1 (relative error below 6e-9, a tenth of a float32 ulp), then
 * rounded once to float: within 0.61 ulp of the float64 function (tested over the whole float32
 * range in tests/test_fast_math.py, bound 2 ulp). Loops are plain so the compiler vectorises them; on x86-64
 * with GCC or Clang they are also compiled for AVX2+FMA and picked at run time.
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

/* sigmoid and tanh are the two activations of every LSTM and GRU step, so their arguments are
 * clamped where the float32 result is already exact, which removes the general exp's special
 * cases. The comparisons are written so that a NaN x stays NaN all the way through. */
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

FASTRNN_INLINE double fr_tanh(double x)
{
    double a = fabs(x);
    a = a > 10.0 ? 10.0 : a;                           /* tanh(10) rounds to 1 in float32; NaN stays */
    /* tanh a = -m / (2 + m) with m = expm1(-2a), which keeps full relative precision for small a,
     * where 1 - e^-2a would cancel. */
    double scale, r = fr_reduce(-2.0 * a, &scale);
    double m = scale * fr_expm1_reduced(r) + (scale - 1.0);
    double t = -m / (2.0 + m);
    return copysign(t, x);
}

FASTRNN_INLINE double fr_expm1(double x)               /* for x <= 0 (elu's negative side) */
{
    double scale, r = fr_reduce(x < -700.0 ? -700.0 : x, &scale);   /* expm1(-700) is -1 */
    return scale * fr_expm1_reduced(r) + (scale - 1.0);
}

FASTRNN_MULTIVERSION static void fr_tanh_f32(float *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) v[i] = (float)fr_tanh((double)v[i]);
}

FASTRNN_MULTIVERSION static void fr_sigmoid_f32(float *v, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) v[i] = (float)fr_sigmoid((double)v[i]);
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
