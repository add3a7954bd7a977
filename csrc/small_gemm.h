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

/* Register-blocked micro-kernels: a block of 6 (or 4) rows by 2 vectors of C stays in 12 (or 8)
 * vector accumulators while p runs over k, so each step loads two vectors of B and six values of
 * A for twelve vector multiply-adds. Twelve independent sums keep both FMA units busy through
 * their latency with room to spare, where eight just cover it (BLIS's float kernel for these
 * cores is 6x16 too). Measured in turns against 4-row blocks alone, whole calls on two threads:
 * 1.07-1.13x on LSTM, GRU and SimpleRNN 32x100x64x128 and 64x100x256x512, LSTM 256x50x128x256
 * 1.12x, 1.04x over the grid (batches under 6 rows unchanged); float64 1.02-1.17x. GCC/Clang
 * vector extensions: 256-bit vectors are AVX registers in the AVX2 clone. Edges fall back to a
 * plain loop. */
/* Rows m_main .. m-1 of C, W vectors of L columns at a time from column n_wide on; moves
 * n_wide past the columns it covered. A part of FASTRNN_SMALL_GEMM. With `packed`, vector q
 * of a block is read from its panel (W / 2 panels, each a sequential stream): a lone row is a
 * matrix-vector product that streams all of B per step, and B's rows read in place, a
 * power-of-two stride apart, came 1.26-1.42x slower from L2 (k=64, n=256 and k=128, n=512). */
#define FR_ROW_BLOCKS(W, T, V, L)                                                               \
    {                                                                                           \
        const Py_ssize_t n_end = n_wide + (n - n_wide) / ((W) * L) * ((W) * L);                 \
        for (Py_ssize_t i = m_main; i < m; i++) {                                               \
            for (Py_ssize_t j = n_wide; j < n_end; j += (W) * L) {                              \
                V acc[W] = {{0}};                                                               \
                for (Py_ssize_t p = 0; p < k; p++) {                                            \
                    const T a_ip = a[i * lda + p];                                              \
                    for (int q = 0; q < (W); q++) {                                             \
                        V b_q;                                                                  \
                        memcpy(&b_q, packed ? packed + (j + q / 2 * 2 * L) * k + p * 2 * L     \
                                                  + q % 2 * L                                   \
                                            : b + p * ldb + j + q * L, sizeof b_q);             \
                        acc[q] += a_ip * b_q;                                                   \
                    }                                                                           \
                }                                                                               \
                for (int q = 0; q < (W); q++) {                                                 \
                    T *c_q = c + i * ldc + j + q * L;                                           \
                    V old;                                                                      \
                    memcpy(&old, c_q, sizeof old);                                              \
                    V sum = beta == 0 ? acc[q] : acc[q] + old;                                  \
                    memcpy(c_q, &sum, sizeof sum);                                              \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        n_wide = n_end;                                                                         \
    }

/* Rows i_start .. i_end - 1 of C (a multiple of R), in blocks of R rows by 2 vectors: 2R vector
 * accumulators stay in registers while p runs over k. */
#define FR_ROW_BLOCK(R, i_start, i_end, T, V, L)                                                \
    for (Py_ssize_t i = (i_start); i < (i_end); i += (R)) {                                     \
        for (Py_ssize_t j = 0; j < n_main; j += 2 * L) {                                        \
            V acc[R][2] = {{{0}}};                                                              \
            const T *b_j = packed ? packed + j * k : b + j;                                     \
            const Py_ssize_t step = packed ? 2 * L : ldb;                                       \
            for (Py_ssize_t p = 0; p < k; p++) {                                                \
                V b0, b1;                                                                       \
                memcpy(&b0, b_j + p * step, sizeof b0);                                         \
                memcpy(&b1, b_j + p * step + L, sizeof b1);                                     \
                for (int r = 0; r < (R); r++) {                                                 \
                    const T a_rp = a[(i + r) * lda + p];                                        \
                    acc[r][0] += a_rp * b0;                                                     \
                    acc[r][1] += a_rp * b1;                                                     \
                }                                                                               \
            }                                                                                   \
            for (int r = 0; r < (R); r++) {                                                     \
                T *c_r = c + (i + r) * ldc + j;                                                 \
                for (int q = 0; q < 2; q++) {                                                   \
                    V old;                                                                      \
                    memcpy(&old, c_r + q * L, sizeof old);                                      \
                    V sum = beta == 0 ? acc[r][q] : acc[r][q] + old;                            \
                    memcpy(c_r + q * L, &sum, sizeof sum);                                      \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }

#define FASTRNN_SMALL_GEMM(NAME, PACK, T, V, L)                                                \
typedef T V __attribute__((vector_size(32)));                                                  \
/* B's columns in panels of 2L, each panel's k rows one after another: the layout the row       \
 * blocks read, `packed` holding k * (n - n % 2L) values. A recurrent kernel is packed once per  \
 * call and read every step; read in place, its rows are a power-of-two stride apart and a      \
 * panel's rows crowd into a few cache sets, evicting each other before the next block. */      \
static void PACK(Py_ssize_t n, Py_ssize_t k, const T *b, Py_ssize_t ldb, T *packed)             \
{                                                                                               \
    for (Py_ssize_t j = 0; j + 2 * L <= n; j += 2 * L)                                          \
        for (Py_ssize_t p = 0; p < k; p++, packed += 2 * L)                                     \
            memcpy(packed, b + p * ldb + j, 2 * L * sizeof(T));                                 \
}                                                                                               \
/* `packed` is B as PACK lays it out, or NULL to read B in place. */                            \
FASTRNN_MULTIVERSION static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,                 \
                                      const T *a, Py_ssize_t lda, const T *b, Py_ssize_t ldb,   \
                                      const T *packed, T beta, T *c, Py_ssize_t ldc)            \
{                                                                                               \
    /* Blocks of 6 rows, then of 4; of 4 rather than 6 where that leaves no 2 or 3 rows over. */ \
    Py_ssize_t m6 = m / 6;                                                                      \
    if (m6 > 0 && (m % 6 == 2 || m % 6 == 3))                                                   \
        m6--;                                                                                   \
    const Py_ssize_t m_main = 6 * m6 + (m - 6 * m6) / 4 * 4, n_main = n - n % (2 * L);          \
    FR_ROW_BLOCK(6, 0, 6 * m6, T, V, L)                                                         \
    FR_ROW_BLOCK(4, 6 * m6, m_main, T, V, L)                                                    \
    /* The 0-3 rows left (batch 1 is all of it): one row, eight vectors of columns at a time,
     * then four, then two (one panel). Eight independent sums keep both FMA units busy through
     * the multiply-add latency, where four leave half of them idle (a step at batch 1 is that
     * latency); the two-vector blocks spare the edge loop below a panel's columns. */         \
    Py_ssize_t n_wide = 0;                                                                      \
    FR_ROW_BLOCKS(8, T, V, L)                                                                   \
    FR_ROW_BLOCKS(4, T, V, L)                                                                   \
    FR_ROW_BLOCKS(2, T, V, L)                                                                   \
    /* Edges: the columns the blocks above left, row by row. */                                \
    for (Py_ssize_t i = 0; i < m; i++) {                                                        \
        const Py_ssize_t j0 = i < m_main ? n_main : n_wide;                                     \
        T *c_i = c + i * ldc;                                                                   \
        if (beta == 0) for (Py_ssize_t j = j0; j < n; j++) c_i[j] = 0;                          \
        for (Py_ssize_t p = 0; p < k; p++) {                                                    \
            const T a_ip = a[i * lda + p];                                                      \
            const T *b_p = b + p * ldb;                                                         \
            for (Py_ssize_t j = j0; j < n; j++) c_i[j] += a_ip * b_p[j];                        \
        }                                                                                       \
    }                                                                                           \
}

FASTRNN_SMALL_GEMM(fr_small_gemm_f32, fr_pack_panels_f32, float, fr_v8f, 8)
FASTRNN_SMALL_GEMM(fr_small_gemm_f64, fr_pack_panels_f64, double, fr_v4d, 4)

#endif
