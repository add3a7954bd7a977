/* Row-major C = A @ B + beta * C, beta 0 or 1, or C = A @ B + a bias row, for the small products
 * of the recurrent kernels.
 *
 * Why: a BLAS call has a fixed cost of several microseconds (argument checks, buffer
 * allocation, thread decisions), more than the whole product when the batch is a few rows,
 * which is the embedded, one-sequence-at-a-time use. Blocks of C stay in vector registers while
 * the loop runs along contiguous rows of B; on x86-64 Linux with GCC or Clang the products are
 * also compiled for AVX-512 and for AVX2+FMA, and the widest the CPU has is picked at run time.
 * csrc/_kernels.pyx chooses them below a size measured in bench/.
 *
 * Vectors are the width the target has: 512 bits in the AVX-512 variant, 256 in the AVX2 one,
 * 128 bits otherwise (SSE2, NEON). A vector type wider than the target's lives in memory, not in
 * registers: built for plain x86-64, 256-bit accumulators ran these products at 1.9 GFLOP/s, 50
 * times slower than the AVX2 variant. On a CPU with AVX-512 (an Intel Xeon of 2026, one thread),
 * its variant ran LSTM recurrences 1.25-1.84x as fast as the AVX2 one (32x100x64x128 1.54x,
 * 64x100x256x512 1.84x with the parts below, 1x100x32x64 1.25x).
 */
#ifndef FASTRNN_SMALL_GEMM_H
#define FASTRNN_SMALL_GEMM_H

#include "fast_math.h"   /* FASTRNN_MULTIVERSION */

/* B is packed in panels of 64 bytes of columns (16 floats, 8 doubles), whatever the vector
 * width: NV vectors of L lanes each. */
#define FR_PANEL_BYTES 64

/* Stores the vector `sum` of products at c_j, column j of C: plus the bias row's columns there
 * when there is one, else plus beta times what c_j holds (beta 0 or 1). */
#define FR_STORE(c_j, sum, j, bias, beta, V)                                                    \
    {                                                                                           \
        V total = (sum), add;                                                                   \
        if (bias) {                                                                             \
            memcpy(&add, bias + (j), sizeof add);                                               \
            total += add;                                                                       \
        } else if (beta != 0) {                                                                 \
            memcpy(&add, (c_j), sizeof add);                                                    \
            total += add;                                                                       \
        }                                                                                       \
        memcpy((c_j), &total, sizeof total);                                                    \
    }

/* Register-blocked micro-kernels: a block of 6 (or 4) rows by one panel of C (two with AVX-512,
 * whose vector is a whole panel) stays in vector accumulators while p runs over k, so each step
 * loads a row of the block's panels of B and six values of A for 6 NV (AVX-512: 12) vector
 * multiply-adds. Twelve independent sums (AVX2, AVX-512) keep both FMA units busy through
 * their latency with room to spare, where eight just cover it (BLIS's float kernel for these
 * cores is 6x16 too). Measured in turns against 4-row blocks alone, whole calls on two threads:
 * 1.07-1.13x on LSTM, GRU and SimpleRNN 32x100x64x128 and 64x100x256x512, LSTM 256x50x128x256
 * 1.12x, 1.04x over the grid (batches under 6 rows unchanged); float64 1.02-1.17x. With 128-bit
 * vectors a panel is four, and blocks are of 4 rows only (16 accumulators). Edges fall back to
 * a plain loop. */
/* Rows m_main .. m-1 of C, W vectors of L columns at a time from column n_wide on; moves
 * n_wide past the columns it covered (W a multiple of NV: whole panels). A part of
 * FASTRNN_SMALL_GEMM. With `packed`, vector q of a block is read from its panel (W / NV panels,
 * each a sequential stream): a lone row is a matrix-vector product that streams all of B per
 * step, and B's rows read in place, a power-of-two stride apart, came 1.26-1.42x slower from L2
 * (k=64, n=256 and k=128, n=512). */
#define FR_ROW_BLOCKS(W, T, V, L, NV)                                                           \
    {                                                                                           \
        const Py_ssize_t n_end = n_wide + (n - n_wide) / ((W) * L) * ((W) * L);                 \
        for (Py_ssize_t i = m_main; i < m; i++) {                                               \
            for (Py_ssize_t j = n_wide; j < n_end; j += (W) * L) {                              \
                V acc[W] = {{0}};                                                               \
                for (Py_ssize_t p = 0; p < k; p++) {                                            \
                    const T a_ip = a[i * lda + p];                                              \
                    for (int q = 0; q < (W); q++) {                                             \
                        V b_q;                                                                  \
                        memcpy(&b_q, packed ? packed + (j + q / (NV) * panel) * k + p * panel   \
                                                  + q % (NV) * L                                \
                                            : b + p * ldb + j + q * L, sizeof b_q);             \
                        acc[q] += a_ip * b_q;                                                   \
                    }                                                                           \
                }                                                                               \
                for (int q = 0; q < (W); q++)                                                   \
                    FR_STORE(c + i * ldc + j + q * L, acc[q], j + q * L, bias, beta, V)         \
            }                                                                                   \
        }                                                                                       \
        n_wide = n_end;                                                                         \
    }

/* Rows i_start .. i_end - 1 of C (a multiple of R), columns j_start .. j_end - 1 (whole blocks),
 * in blocks of R rows by W vectors (W / NV panels side by side): R W vector accumulators stay in
 * registers while p runs over k (but 6 of the 16 of the 128-bit variant on x86-64, which has 16
 * vector registers: blocks of 2 rows, which fit, measured no faster there, 18-29 against 19-32
 * GFLOP/s). `offset[q]` is where vector q of a block's row p lies from the row's start. */
#define FR_ROW_BLOCK(R, i_start, i_end, j_start, j_end, W, T, V, L, NV)                         \
    for (Py_ssize_t i = (i_start); i < (i_end); i += (R)) {                                     \
        for (Py_ssize_t j = (j_start); j < (j_end); j += (W) * L) {                             \
            V acc[R][W] = {{{0}}};                                                              \
            const T *b_j = packed ? packed + j * k : b + j;                                     \
            const Py_ssize_t step = packed ? panel : ldb;                                       \
            Py_ssize_t offset[W];                                                               \
            for (int q = 0; q < (W); q++)                                                       \
                offset[q] = packed ? q / (NV) * panel * k + q % (NV) * L : q * L;               \
            for (Py_ssize_t p = 0; p < k; p++) {                                                \
                V b_p[W];                                                                       \
                for (int q = 0; q < (W); q++)                                                   \
                    memcpy(&b_p[q], b_j + p * step + offset[q], sizeof b_p[q]);                 \
                for (int r = 0; r < (R); r++) {                                                 \
                    const T a_rp = a[(i + r) * lda + p];                                        \
                    for (int q = 0; q < (W); q++)                                               \
                        acc[r][q] += a_rp * b_p[q];                                             \
                }                                                                               \
            }                                                                                   \
            for (int r = 0; r < (R); r++)                                                       \
                for (int q = 0; q < (W); q++)                                                   \
                    FR_STORE(c + (i + r) * ldc + j + q * L, acc[r][q], j + q * L, bias, beta, V) \
        }                                                                                       \
    }

/* B's columns in panels of FR_PANEL_BYTES, each panel's k rows one after another: the layout the
 * row blocks read, `packed` holding k * (n - n % panel) values. A recurrent kernel is packed once
 * per call and read every step; read in place, its rows are a power-of-two stride apart and a
 * panel's rows crowd into a few cache sets, evicting each other before the next block. */
#define FASTRNN_PACK_PANELS(PACK, T)                                                            \
static void PACK(Py_ssize_t n, Py_ssize_t k, const T *b, Py_ssize_t ldb, T *packed)             \
{                                                                                               \
    const Py_ssize_t panel = FR_PANEL_BYTES / sizeof(T);                                        \
    for (Py_ssize_t j = 0; j + panel <= n; j += panel)                                          \
        for (Py_ssize_t p = 0; p < k; p++, packed += panel)                                     \
            memcpy(packed, b + p * ldb + j, panel * sizeof(T));                                 \
}

/* NAME: C = A @ B + beta * C (beta 0 or 1), or with `bias` (n values) C = A @ B + bias in every
 * row, with vectors V of L lanes of T, NV to a panel, blocks
 * of PANELS panels side by side, of 6 rows where ROWS6; ATTRIBUTES (a target) before it. `packed`
 * is B as the PACK of FASTRNN_PACK_PANELS lays it out, or NULL to read B in place. */
#define FASTRNN_SMALL_GEMM(NAME, T, V, L, NV, PANELS, ROWS6, ATTRIBUTES)                        \
ATTRIBUTES static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,                           \
                            const T *a, Py_ssize_t lda, const T *b, Py_ssize_t ldb,             \
                            const T *packed, T beta, const T *bias, T *c, Py_ssize_t ldc)       \
{                                                                                               \
    const Py_ssize_t panel = (NV) * L;                                                          \
    /* Blocks of 6 rows, then of 4; of 4 rather than 6 where that leaves no 2 or 3 rows over. */ \
    Py_ssize_t m6 = (ROWS6) ? m / 6 : 0;                                                        \
    if (m6 > 0 && (m % 6 == 2 || m % 6 == 3))                                                   \
        m6--;                                                                                   \
    const Py_ssize_t m_main = 6 * m6 + (m - 6 * m6) / 4 * 4, n_main = n - n % panel;            \
    const Py_ssize_t n_blocks = n_main - n_main % ((PANELS) * panel);                           \
    FR_ROW_BLOCK(6, 0, 6 * m6, 0, n_blocks, (PANELS) * (NV), T, V, L, NV)                       \
    FR_ROW_BLOCK(4, 6 * m6, m_main, 0, n_blocks, (PANELS) * (NV), T, V, L, NV)                  \
    if ((PANELS) > 1) {   /* the panels left over, one at a time */                             \
        FR_ROW_BLOCK(6, 0, 6 * m6, n_blocks, n_main, NV, T, V, L, NV)                           \
        FR_ROW_BLOCK(4, 6 * m6, m_main, n_blocks, n_main, NV, T, V, L, NV)                      \
    }                                                                                           \
    /* The 0-3 rows left (batch 1 is all of it): one row, eight vectors of columns at a time,
     * then four, then two and one while they are whole panels. Eight independent sums keep
     * both FMA units busy through the multiply-add latency, where four leave half of them idle
     * (a step at batch 1 is that latency); the smaller blocks spare the edge loop below a
     * panel's columns. */                                                                      \
    Py_ssize_t n_wide = 0;                                                                      \
    FR_ROW_BLOCKS(8, T, V, L, NV)                                                               \
    FR_ROW_BLOCKS(4, T, V, L, NV)                                                               \
    if (2 % (NV) == 0)                                                                          \
        FR_ROW_BLOCKS(2, T, V, L, NV)                                                           \
    if ((NV) == 1)                                                                              \
        FR_ROW_BLOCKS(1, T, V, L, NV)                                                           \
    /* Edges: the columns the blocks above left, row by row. */                                \
    for (Py_ssize_t i = 0; i < m; i++) {                                                        \
        const Py_ssize_t j0 = i < m_main ? n_main : n_wide;                                     \
        T *c_i = c + i * ldc;                                                                   \
        for (Py_ssize_t j = j0; j < n; j++)                                                     \
            c_i[j] = bias ? bias[j] : beta == 0 ? 0 : c_i[j];                                   \
        for (Py_ssize_t p = 0; p < k; p++) {                                                    \
            const T a_ip = a[i * lda + p];                                                      \
            const T *b_p = b + p * ldb;                                                         \
            for (Py_ssize_t j = j0; j < n; j++) c_i[j] += a_ip * b_p[j];                        \
        }                                                                                       \
    }                                                                                           \
}

typedef float fr_v4f __attribute__((vector_size(16)));
typedef double fr_v2d __attribute__((vector_size(16)));
FASTRNN_PACK_PANELS(fr_pack_panels_f32, float)
FASTRNN_PACK_PANELS(fr_pack_panels_f64, double)

/* The widest vectors the products may use, in bits: 512, 256 or 128 (csrc/_kernels.pyx's
 * `configure`, so that the tests reach every variant the CPU can run). */
static int fr_gemm_vector_bits = 512;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__linux__)
/* AVX-512, AVX2+FMA and 128-bit variants, picked at each call (a few flag tests). With AVX-512 a
 * vector is a whole panel, and a block is two panels wide, so that a 6-row block keeps 12
 * accumulators as in AVX2. */
typedef float fr_v16f __attribute__((vector_size(64)));
typedef double fr_v8d __attribute__((vector_size(64)));
typedef float fr_v8f __attribute__((vector_size(32)));
typedef double fr_v4d __attribute__((vector_size(32)));
#define FR_AVX512 __attribute__((target("avx512f,avx2,fma")))
FASTRNN_SMALL_GEMM(fr_small_gemm_f32_avx512, float, fr_v16f, 16, 1, 2, 1, FR_AVX512)
FASTRNN_SMALL_GEMM(fr_small_gemm_f64_avx512, double, fr_v8d, 8, 1, 2, 1, FR_AVX512)
FASTRNN_SMALL_GEMM(fr_small_gemm_f32_avx2, float, fr_v8f, 8, 2, 1, 1, __attribute__((target("avx2,fma"))))
FASTRNN_SMALL_GEMM(fr_small_gemm_f64_avx2, double, fr_v4d, 4, 2, 1, 1, __attribute__((target("avx2,fma"))))
FASTRNN_SMALL_GEMM(fr_small_gemm_f32_sse, float, fr_v4f, 4, 4, 1, 0, )
FASTRNN_SMALL_GEMM(fr_small_gemm_f64_sse, double, fr_v2d, 2, 4, 1, 0, )

/* 512, 256 or 128: the widest variant this CPU runs, within fr_gemm_vector_bits. */
static int fr_gemm_bits(void)
{
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (fr_gemm_vector_bits >= 512 && avx2 && __builtin_cpu_supports("avx512f"))
        return 512;
    return fr_gemm_vector_bits >= 256 && avx2 ? 256 : 128;
}

/* The variant of type T for `bits` from fr_gemm_bits. */
#define FR_VARIANT(T, bits) ((bits) == 512 ? fr_small_gemm_##T##_avx512 : (bits) == 256 \
                             ? fr_small_gemm_##T##_avx2 : fr_small_gemm_##T##_sse)
#else
static int fr_gemm_bits(void)
{
    return 128;
}

FASTRNN_SMALL_GEMM(fr_small_gemm_f32_sse, float, fr_v4f, 4, 4, 1, 0, )
FASTRNN_SMALL_GEMM(fr_small_gemm_f64_sse, double, fr_v2d, 2, 4, 1, 0, )
#define FR_VARIANT(T, bits) fr_small_gemm_##T##_sse
#endif

/* B is read this many bytes of it at a time (a part of its columns, whole blocks of 2 panels), so
 * that the part stays in L2 while every block of rows of A reads it: whole, a B larger than L2
 * came from memory for each block of rows. Measured with AVX-512 on a 64x2048x512 product (an
 * LSTM(512)'s recurrent kernel, 4 MB): 62 GFLOP/s whole, 92 in parts of 512 KB; whole
 * recurrences on one thread, LSTM and GRU 64x100x256x512 1.35-1.38x, parts of 256 KB and 1 MB
 * alike, smaller kernels unchanged (`configure` changes it, for the tests). */
static Py_ssize_t fr_gemm_part_bytes = 512 * 1024;

/* NAME: the product in parts, each by the variant of type suffix S the CPU runs (picked once). */
#define FASTRNN_SMALL_GEMM_IN_PARTS(NAME, T, S)                                                 \
static void NAME(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const T *a, Py_ssize_t lda,          \
                 const T *b, Py_ssize_t ldb, const T *packed, T beta, const T *bias, T *c,      \
                 Py_ssize_t ldc)                                                                \
{                                                                                               \
    const int bits = fr_gemm_bits();                                                            \
    void (*variant)(Py_ssize_t, Py_ssize_t, Py_ssize_t, const T *, Py_ssize_t, const T *,       \
                    Py_ssize_t, const T *, T, const T *, T *, Py_ssize_t) = FR_VARIANT(S, bits); \
    (void)bits;   /* (one variant only off x86-64 Linux) */                                     \
    const Py_ssize_t block = 2 * FR_PANEL_BYTES / sizeof(T);                                    \
    Py_ssize_t width = fr_gemm_part_bytes / (Py_ssize_t)sizeof(T) / (k > 0 ? k : 1) / block * block; \
    width = width < block ? block : width;                                                      \
    for (Py_ssize_t j = 0; j < n; j += width)                                                   \
        variant(m, n - j < width ? n - j : width, k, a, lda, b + j, ldb,                        \
                packed ? packed + j * k : NULL, beta, bias ? bias + j : NULL, c + j, ldc);      \
}
FASTRNN_SMALL_GEMM_IN_PARTS(fr_small_gemm_f32, float, f32)
FASTRNN_SMALL_GEMM_IN_PARTS(fr_small_gemm_f64, double, f64)

#endif
