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

#define FASTRNN_SMALL_GEMM(NAME, T)                                                            \
FASTRNN_MULTIVERSION static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,                 \
                                      const T *a, Py_ssize_t lda, const T *b, Py_ssize_t ldb,   \
                                      T beta, T *c, Py_ssize_t ldc)                             \
{                                                                                               \
    for (Py_ssize_t i = 0; i < m; i++) {                                                        \
        T *c_i = c + i * ldc;                                                                   \
        if (beta == 0) { for (Py_ssize_t j = 0; j < n; j++) c_i[j] = 0; }                       \
        for (Py_ssize_t p = 0; p < k; p++) {                                                    \
            const T a_ip = a[i * lda + p];                                                      \
            const T *b_p = b + p * ldb;                                                         \
            for (Py_ssize_t j = 0; j < n; j++) c_i[j] += a_ip * b_p[j];                         \
        }                                                                                       \
    }                                                                                           \
}

FASTRNN_SMALL_GEMM(fr_small_gemm_f32, float)
FASTRNN_SMALL_GEMM(fr_small_gemm_f64, double)

#endif
