/* Row-major C = A @ B + beta * C for the small products of the recurrent kernels.
 *
 * Why: a BLAS call has a fixed cost of several microseconds (argument checks, buffer
 * allocation, thread decisions), more than the whole product when the batch is a few rows,
 * which is the embedded, one-sequence-at-a-time use. This loop nest (i, k, j) runs along
 * contiguous rows of B and C, so the compiler vectorises the inner loop; on x86-64 it is also
 * compiled for AVX2+FMA and picked at run time. csrc/_kernels.pyx chooses it below a size
 * measured in bench/.
 */
#ifndef FASTRNN_SMALL_GEMM_H
#define FASTRNN_SMALL_GEMM_H

#include "fast_math.h"   /* FASTRNN_MULTIVERSION */

/* Four rows of C at a time: each row of B is loaded once for four rows (a register block),
 * which quarters the traffic from B, the large operand (the recurrent kernel). */
#define FASTRNN_SMALL_GEMM(NAME, T)                                                            \
FASTRNN_MULTIVERSION static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,                 \
                                      const T *a, Py_ssize_t lda, const T *b, Py_ssize_t ldb,   \
                                      T beta, T *c, Py_ssize_t ldc)                             \
{                                                                                               \
    if (beta == 0)                                                                              \
        for (Py_ssize_t i = 0; i < m; i++)                                                      \
            for (Py_ssize_t j = 0; j < n; j++) c[i * ldc + j] = 0;                              \
    Py_ssize_t i = 0;                                                                           \
    for (; i + 4 <= m; i += 4) {                                                                \
        T *restrict c0 = c + i * ldc, *restrict c1 = c0 + ldc;                                  \
        T *restrict c2 = c1 + ldc, *restrict c3 = c2 + ldc;                                     \
        for (Py_ssize_t p = 0; p < k; p++) {                                                    \
            const T a0 = a[i * lda + p], a1 = a[(i + 1) * lda + p];                             \
            const T a2 = a[(i + 2) * lda + p], a3 = a[(i + 3) * lda + p];                       \
            const T *restrict b_p = b + p * ldb;                                                \
            for (Py_ssize_t j = 0; j < n; j++) {                                                \
                const T b_pj = b_p[j];                                                          \
                c0[j] += a0 * b_pj; c1[j] += a1 * b_pj; c2[j] += a2 * b_pj; c3[j] += a3 * b_pj; \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    for (; i < m; i++) {                                                                        \
        T *restrict c_i = c + i * ldc;                                                          \
        for (Py_ssize_t p = 0; p < k; p++) {                                                    \
            const T a_ip = a[i * lda + p];                                                      \
            const T *restrict b_p = b + p * ldb;                                                \
            for (Py_ssize_t j = 0; j < n; j++) c_i[j] += a_ip * b_p[j];                         \
        }                                                                                       \
    }                                                                                           \
}

FASTRNN_SMALL_GEMM(fr_small_gemm_f32, float)
FASTRNN_SMALL_GEMM(fr_small_gemm_f64, double)

#endif
