/* Row-major float32 C = A @ B + beta * C (beta 0 or 1), or C = A @ B + a bias row, in Intel's
 * AMX tiles, for the products of calls with many rows (csrc/_kernels.pyx decides which).
 *
 * Why: AMX multiplies bfloat16 (8-bit significands) at 16 times the rate of AVX-512's float32
 * FMAs. Each float32 is split into three bfloat16 parts, x = x0 + x1 + x2 (24 bits in all, exact
 * for normal numbers), and the six products whose parts sum to at least 2^-16 of the whole,
 * a0 b0 + a0 b1 + a1 b0 + a0 b2 + a1 b1 + a2 b0, are summed in float32 tiles: the terms left
 * out are under 3 * 2^-24 of each product, float32's own rounding, and the tiles' float32 sums
 * stay as close as small_gemm.h's. Measured against float64 products (64x2048x512, values in
 * [-1, 1] and [-0.1, 0.1]): largest error 1.7e-6 here, 3.5e-6 in small_gemm.h. Six tile
 * products, the splitting of A included, still ran 1.07-1.85 times as fast as small_gemm.h's
 * AVX-512 kernel on one vCPU of an Intel Xeon of 2026 (Emerald Rapids) from 16 rows and 128
 * columns: 16x128x128 1.1x, 16x512x64 1.4x, 32x512x128 1.85x, 64x2048x512 1.5x; 0.6-0.9x while
 * the VM's host ran other work on the same core (csrc/_kernels.pyx has the bounds).
 *
 * B is packed once per call (fr_amx_pack_f32); A is split at each product, into scratch of the
 * calling thread's own. Every element of C is computed alike, its rows and columns padded with
 * zeros to whole tiles, so a value does not depend on how a call's rows or columns are split.
 * Only zeros and values from 2^-100 to 2^127 in magnitude split exactly into parts that the
 * tiles take: infinities and NaNs do not (inf - inf is NaN), a value from 2^127 on may round to
 * infinity, and the tiles read a subnormal part as zero (the third part of 2^-110 is one: a
 * kernel scaled by 1e-33 against inputs scaled by 1e33 lost 9e-5). A B with any other value is
 * not packed here (the caller checks), and a row of A with any runs in small_gemm.h.
 *
 * Needs x86-64 Linux, whose kernel grants the tiles' state to a process that asks
 * (fr_amx_request), and GCC 11 or Clang 12 for the intrinsics; elsewhere fr_amx_ready stays 0.
 */
#ifndef FASTRNN_AMX_GEMM_H
#define FASTRNN_AMX_GEMM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "small_gemm.h"

/* Whether the CPU has AMX-BF16 (fr_amx_init), and whether the kernel granted this process its
 * tiles (fr_amx_request). */
static int fr_amx_cpu = 0;
static int fr_amx_ready = 0;

/* A tile is 16 rows of 64 bytes: 16 float32, or 32 bfloat16 (16 pairs in B's layout). Blocks
 * of C are 32 by 32, or 16 by 64 for the last rows (four tiles of C in either, the other four
 * registers for A's and B's). */
#define FR_AMX_ROWS 16
#define FR_AMX_DEPTH 32
#define FR_AMX_BLOCK 32
#define FR_AMX_WIDE 64    /* columns of a block of 16 rows */

static inline Py_ssize_t fr_amx_round_up(Py_ssize_t n, Py_ssize_t to)
{
    return (n + to - 1) / to * to;
}

/* Bytes of a packed (k, n) B: three parts of k rounded up to FR_AMX_DEPTH by n rounded up to
 * FR_AMX_BLOCK bfloat16. */
static inline Py_ssize_t fr_amx_packed_bytes(Py_ssize_t n, Py_ssize_t k)
{
    return 3 * fr_amx_round_up(k, FR_AMX_DEPTH) * fr_amx_round_up(n, FR_AMX_BLOCK) * 2;
}

/* Float32 exponent fields from 2^-100 (127 - 100) to below 2^127: a normal x's third part is 0
 * or at least its last bit, 2^-123 or more, normal in bfloat16. */
#define FR_SPLIT_LEAST (27u << 23)
#define FR_SPLIT_END (254u << 23)

/* Whether all of the (rows, columns) matrix `b`, rows ldb apart, can be split: zeros, and
 * magnitudes from 2^-100 to below 2^127 (the caller packs only such a B). */
static int fr_all_splittable_f32(Py_ssize_t rows, Py_ssize_t columns, const float *b, Py_ssize_t ldb)
{
    for (Py_ssize_t p = 0; p < rows; p++) {
        uint32_t any = 0;
        for (Py_ssize_t j = 0; j < columns; j++) {
            uint32_t u;
            memcpy(&u, b + p * ldb + j, sizeof u);
            u &= 0x7fffffffu;
            any |= u != 0 && (u < FR_SPLIT_LEAST || u >= FR_SPLIT_END);
        }
        if (any)
            return 0;
    }
    return 1;
}

#if defined(__x86_64__) && defined(__linux__) && \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && __GNUC__ >= 11))
#define FR_HAVE_AMX 1
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FR_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw")))

/* Whether the CPU has the tiles (CPUID 7: AMX-BF16 is EDX bit 22, AMX-TILE bit 24). */
static void fr_amx_init(void)
{
    unsigned int a, b, c, d;
    fr_amx_cpu = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) && (d & (1u << 24));
}

/* Ask for the tiles where the CPU has them, once they are wanted: Linux grants them to the whole
 * process, from 5.16 (ARCH_REQ_XCOMP_PERM, XTILEDATA = 18), and from then on a signal frame
 * holds their 8 KB, and sigaltstack refuses smaller stacks. Returns fr_amx_ready. */
static int fr_amx_request(void)
{
    if (fr_amx_cpu && !fr_amx_ready)
        fr_amx_ready = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    return fr_amx_ready;
}

/* The three bfloat16 parts of 16 finite float32 (`x`), each in the top half of a 32-bit lane. */
FR_AMX_TARGET static inline void fr_split16(__m512 x, __m512i parts[3])
{
    const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i top = _mm512_set1_epi32((int)0xffff0000u);
    for (int q = 0; q < 3; q++) {
        __m512i u = _mm512_castps_si512(x);
        /* round to nearest, ties to even, on the top 16 bits */
        u = _mm512_add_epi32(u, _mm512_add_epi32(half, _mm512_and_si512(_mm512_srli_epi32(u, 16), one)));
        parts[q] = _mm512_and_si512(u, top);
        x = _mm512_sub_ps(x, _mm512_castsi512_ps(parts[q]));
    }
}

/* Lanes of `x` that can be split (see fr_all_splittable_f32). */
FR_AMX_TARGET static inline __mmask16 fr_splittable16(__m512 x)
{
    const __m512i u = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7fffffff));
    const __m512i least = _mm512_set1_epi32((int)FR_SPLIT_LEAST), end = _mm512_set1_epi32((int)FR_SPLIT_END);
    return _mm512_cmpeq_epi32_mask(u, _mm512_setzero_si512())
           | (_mm512_cmpge_epu32_mask(u, least) & _mm512_cmplt_epu32_mask(u, end));
}

/* The finite (k, n) B, rows ldb apart, in fr_amx_packed_bytes at `packed`: for each part, for
 * each 16 columns, k/2 rows of 16 pairs (the two rows of A's pair of columns side by side, the
 * layout the tile product reads), zeros past k and n. */
FR_AMX_TARGET static void fr_amx_pack_f32(Py_ssize_t n, Py_ssize_t k, const float *b, Py_ssize_t ldb,
                                          void *packed)
{
    const Py_ssize_t depth = fr_amx_round_up(k, FR_AMX_DEPTH), width = fr_amx_round_up(n, FR_AMX_BLOCK);
    const Py_ssize_t part = depth * width;
    uint16_t *out = packed;
    memset(out, 0, 3 * part * sizeof *out);
    for (Py_ssize_t j = 0; j < n; j += 16) {
        const __mmask16 lanes = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
        uint16_t *tile = out + j * depth;   /* (j / 16) * depth * 16 */
        for (Py_ssize_t p = 0; p < k; p += 2) {
            __m512i even[3], odd[3];
            fr_split16(_mm512_maskz_loadu_ps(lanes, b + p * ldb + j), even);
            fr_split16(p + 1 < k ? _mm512_maskz_loadu_ps(lanes, b + (p + 1) * ldb + j) : _mm512_setzero_ps(), odd);
            for (int q = 0; q < 3; q++)   /* row p's part in the low half, row p + 1's in the high */
                _mm512_storeu_si512(tile + q * part + p * 16,
                                    _mm512_or_si512(_mm512_srli_epi32(even[q], 16), odd[q]));
        }
    }
}

/* Each thread's scratch for A's parts, kept for its next product and freed when it exits. */
static pthread_key_t fr_amx_scratch_key;
static pthread_once_t fr_amx_scratch_once = PTHREAD_ONCE_INIT;

static void fr_amx_make_key(void)
{
    pthread_key_create(&fr_amx_scratch_key, free);
}

/* At least `bytes` of this thread's scratch, on a cache line, or NULL. Its first 64 bytes hold
 * its size. (A tile row that straddles two cache lines reads both: unaligned, the products ran
 * at 160 GFLOP/s where aligned ones ran at 280.) */
static void *fr_amx_scratch(size_t bytes)
{
    pthread_once(&fr_amx_scratch_once, fr_amx_make_key);
    char *held = pthread_getspecific(fr_amx_scratch_key), *grown;
    if (held != NULL && *(size_t *)held >= bytes)
        return held + 64;
    if (posix_memalign((void **)&grown, 64, bytes + 64) != 0)
        return NULL;    /* (the smaller block stays this thread's) */
    if (pthread_setspecific(fr_amx_scratch_key, grown) != 0) {
        free(grown);
        return NULL;
    }
    free(held);
    *(size_t *)grown = bytes;
    return grown + 64;
}

/* The tiles' shapes: all 16 rows of 64 bytes (fr_amx_tiles loads them). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} fr_tile_config;

/* The start of a block's tile t of C (rows r_t.. of it at `c`, rows ldc apart, columns from
 * 16 t): C itself (beta 1), the bias row read 16 times (stride 0), or 0. */
#define FR_AMX_START(t, c_t, bias_t)                                                            \
    if (bias) _tile_loadd(t, bias_t, 0);                                                        \
    else if (beta != 0) _tile_loadd(t, c_t, 4 * ldc);                                           \
    else _tile_zero(t);

/* Every tile of C adds its products in one order, whatever block it is in (a row's value must
 * not depend on the rows beside it): a0 b0, a0 b1, a0 b2, a1 b0, a1 b1, a2 b0, for each
 * FR_AMX_DEPTH of depth. A's parts are at `ap` (each `a_part` apart, rows `depth` apart), B's
 * at `b` for the block's first tile of columns (each part `b_part` apart, a tile of columns
 * depth * 16 values after the one before). */
#define FR_A(i, row) (ap + (i) * a_part + (r + (row)) * depth + p)
#define FR_B(j, tile) (b + (j) * b_part + (tile) * depth * 16 + p * 16)

/* A block of 32 rows (from r) by 32 columns at `c`: tiles 0-3 of C, 4-5 of A, 6-7 of B. */
FR_AMX_TARGET static void fr_amx_block32(const uint16_t *ap, Py_ssize_t a_part, const uint16_t *b,
                                         Py_ssize_t b_part, Py_ssize_t depth, Py_ssize_t r, float beta,
                                         const float *bias, float *c, Py_ssize_t ldc)
{
    FR_AMX_START(0, c, bias)
    FR_AMX_START(1, c + 16, bias + 16)
    FR_AMX_START(2, c + 16 * ldc, bias)
    FR_AMX_START(3, c + 16 * ldc + 16, bias + 16)
    for (Py_ssize_t p = 0; p < depth; p += FR_AMX_DEPTH)
        for (int i = 0; i < 3; i++) {
            _tile_loadd(4, FR_A(i, 0), 2 * depth);
            _tile_loadd(5, FR_A(i, 16), 2 * depth);
            for (int j = 0; j < 3 - i; j++) {
                _tile_loadd(6, FR_B(j, 0), 64);
                _tile_loadd(7, FR_B(j, 1), 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
        }
    _tile_stored(0, c, 4 * ldc);
    _tile_stored(1, c + 16, 4 * ldc);
    _tile_stored(2, c + 16 * ldc, 4 * ldc);
    _tile_stored(3, c + 16 * ldc + 16, 4 * ldc);
}

/* A block of 16 rows (from r) by 64 columns (32 where not `wide`) at `c`: tiles 0-3 (0-1) of C,
 * 4 of A, 5-7 of B. Four sums in turn, not two of two rows of tiles: a tile product waits for
 * the one before it on the same tile of C (16x512x64: 0.48 times small_gemm.h's speed with two
 * tiles of C, 1.40 with four). */
FR_AMX_TARGET static void fr_amx_block16(const uint16_t *ap, Py_ssize_t a_part, const uint16_t *b,
                                         Py_ssize_t b_part, Py_ssize_t depth, Py_ssize_t r, int wide,
                                         float beta, const float *bias, float *c, Py_ssize_t ldc)
{
    FR_AMX_START(0, c, bias)
    FR_AMX_START(1, c + 16, bias + 16)
    if (wide) {
        FR_AMX_START(2, c + 32, bias + 32)
        FR_AMX_START(3, c + 48, bias + 48)
    }
    for (Py_ssize_t p = 0; p < depth; p += FR_AMX_DEPTH)
        for (int i = 0; i < 3; i++) {
            _tile_loadd(4, FR_A(i, 0), 2 * depth);
            for (int j = 0; j < 3 - i; j++) {
                _tile_loadd(5, FR_B(j, 0), 64);
                _tile_dpbf16ps(0, 4, 5);
                _tile_loadd(6, FR_B(j, 1), 64);
                _tile_dpbf16ps(1, 4, 6);
                if (wide) {
                    _tile_loadd(7, FR_B(j, 2), 64);
                    _tile_dpbf16ps(2, 4, 7);
                    _tile_loadd(5, FR_B(j, 3), 64);
                    _tile_dpbf16ps(3, 4, 5);
                }
            }
        }
    _tile_stored(0, c, 4 * ldc);
    _tile_stored(1, c + 16, 4 * ldc);
    if (wide) {
        _tile_stored(2, c + 32, 4 * ldc);
        _tile_stored(3, c + 48, 4 * ldc);
    }
}
#undef FR_A
#undef FR_B

/* A block of `rows` by `columns` of C at `c` (rows ldc apart), run as fr_amx_block32 (`tall`)
 * or fr_amx_block16 (wide where `columns` is over 32) on a copy padded with zeros: alike. */
FR_AMX_TARGET static void fr_amx_edge(const uint16_t *ap, Py_ssize_t a_part, const uint16_t *b,
                                      Py_ssize_t b_part, Py_ssize_t depth, Py_ssize_t r, int tall,
                                      Py_ssize_t rows, Py_ssize_t columns, float beta, const float *bias,
                                      float *c, Py_ssize_t ldc)
{
    float edge[FR_AMX_BLOCK * FR_AMX_WIDE] __attribute__((aligned(64)));
    float edge_bias[FR_AMX_WIDE] __attribute__((aligned(64)));
    memset(edge, 0, sizeof edge);
    if (bias) {
        memset(edge_bias, 0, sizeof edge_bias);
        memcpy(edge_bias, bias, columns * sizeof *bias);
    } else if (beta != 0) {
        for (Py_ssize_t i = 0; i < rows; i++)
            memcpy(edge + i * FR_AMX_WIDE, c + i * ldc, columns * sizeof *c);
    }
    if (tall)
        fr_amx_block32(ap, a_part, b, b_part, depth, r, beta, bias ? edge_bias : NULL, edge, FR_AMX_WIDE);
    else
        fr_amx_block16(ap, a_part, b, b_part, depth, r, columns > FR_AMX_BLOCK, beta, bias ? edge_bias : NULL,
                       edge, FR_AMX_WIDE);
    for (Py_ssize_t i = 0; i < rows; i++)
        memcpy(c + i * ldc, edge + i * FR_AMX_WIDE, columns * sizeof *c);
}

/* C (m by n, rows ldc apart) from A's parts (`ap`, rows padded to 16) and B's (`bp`, columns
 * padded to 32), starting from C, the bias or 0 (see FR_AMX_START): blocks of 32 rows by 32
 * columns (a last 17-31 rows padded to 32), then a last 16 rows or fewer in blocks of 16 by 64. */
FR_AMX_TARGET static void fr_amx_tiles(Py_ssize_t m, Py_ssize_t n, const uint16_t *ap, Py_ssize_t a_part,
                                       const uint16_t *bp, Py_ssize_t b_part, Py_ssize_t depth,
                                       float beta, const float *bias, float *c, Py_ssize_t ldc)
{
    const Py_ssize_t tall = m % FR_AMX_BLOCK > 16 ? m : m - m % FR_AMX_BLOCK;   /* rows in blocks of 32 */
    fr_tile_config config, now;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.rows[t] = FR_AMX_ROWS;
        config.bytes_per_row[t] = 64;
    }
    /* Loaded only where this thread's tiles are not so already (another library's code on it
     * may have loaded its own): loading them took 1-2 us, as long as a product of 16x128x64. */
    _tile_storeconfig(&now);
    if (memcmp(&now, &config, sizeof config) != 0)
        _tile_loadconfig(&config);
    /* Columns outside: each block of B's columns is read by every block of rows in turn, from L1
     * and L2 after the first (rows outside read all of B once per block of rows: 64x2048x512
     * 1.3 times as long). */
    for (Py_ssize_t j = 0; j < n; j += FR_AMX_BLOCK) {
        const Py_ssize_t columns = n - j < FR_AMX_BLOCK ? n - j : FR_AMX_BLOCK;
        const uint16_t *b = bp + j * depth;    /* (j / 16 tiles of depth * 16) */
        const float *bias_j = bias ? bias + j : NULL;
        for (Py_ssize_t i = 0; i < tall; i += FR_AMX_BLOCK) {
            const Py_ssize_t rows = m - i < FR_AMX_BLOCK ? m - i : FR_AMX_BLOCK;
            if (rows == FR_AMX_BLOCK && columns == FR_AMX_BLOCK)
                fr_amx_block32(ap, a_part, b, b_part, depth, i, beta, bias_j, c + i * ldc + j, ldc);
            else
                fr_amx_edge(ap, a_part, b, b_part, depth, i, 1, rows, columns, beta, bias_j, c + i * ldc + j, ldc);
        }
    }
    for (Py_ssize_t j = 0; tall < m && j < n; j += FR_AMX_WIDE) {
        const Py_ssize_t columns = n - j < FR_AMX_WIDE ? n - j : FR_AMX_WIDE;
        const uint16_t *b = bp + j * depth;
        const float *bias_j = bias ? bias + j : NULL;
        if (m - tall == FR_AMX_ROWS && columns == FR_AMX_WIDE)
            fr_amx_block16(ap, a_part, b, b_part, depth, tall, 1, beta, bias_j, c + tall * ldc + j, ldc);
        else
            fr_amx_edge(ap, a_part, b, b_part, depth, tall, 0, m - tall, columns, beta, bias_j, c + tall * ldc + j, ldc);
    }
    /* No _tile_release: in this VM, a thread's first tile instruction after one cost as much
     * as the product (64x2048x512: 90-190 GFLOP/s with it, 227 without). */
}

#define FR_AMX_AHEAD 4   /* rows */

/* The three parts of A's m rows (k values, lda apart) at `ap` (each part `a_part` apart, rows
 * `depth` apart, zeros past k); skip[i] set, and the row all zeros, where a value of it cannot be
 * split (fr_splittable16). */
FR_AMX_TARGET static void fr_amx_split_rows(Py_ssize_t m, Py_ssize_t k, const float *a, Py_ssize_t lda,
                                            uint16_t *ap, Py_ssize_t a_part, Py_ssize_t depth,
                                            unsigned char *skip)
{
    for (Py_ssize_t i = 0; i < m; i++) {
        uint16_t *row = ap + i * depth;
        __mmask16 finite = 0xffff;
        for (Py_ssize_t p = 0; p < k; p += 16) {
            const __mmask16 lanes = k - p >= 16 ? 0xffff : (__mmask16)((1u << (k - p)) - 1);
            const __m512 x = _mm512_maskz_loadu_ps(lanes, a + i * lda + p);
            __m512i parts[3];
            /* Rows of x read in place lie a whole sequence apart, where the hardware does not
             * fetch ahead (GRU 1024x20x64x64: the split took a fifth of the call). */
            if (i + FR_AMX_AHEAD < m)
                _mm_prefetch((const char *)(a + (i + FR_AMX_AHEAD) * lda + p), _MM_HINT_T0);
            finite &= fr_splittable16(x);
            fr_split16(x, parts);
            for (int q = 0; q < 3; q++)
                _mm256_storeu_si256((__m256i *)(row + q * a_part + p),
                                    _mm512_cvtepi32_epi16(_mm512_srli_epi32(parts[q], 16)));
        }
        skip[i] = finite != 0xffff;
        const Py_ssize_t zeros_from = skip[i] ? 0 : k;
        for (int q = 0; q < 3; q++)
            memset(row + q * a_part + zeros_from, 0, (depth - zeros_from) * sizeof *row);
    }
}

/* C = A @ B + beta * C (beta 0 or 1) or A @ B + bias, as fr_small_gemm_f32 computes it, B given
 * both as it lies (b, ldb) and packed by fr_amx_pack_f32. A row of A holding a value that cannot
 * be split, and every row where this thread's scratch cannot be had, runs in small_gemm.h from b. */
static void fr_amx_gemm_f32(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *a, Py_ssize_t lda,
                            const float *b, Py_ssize_t ldb, const void *packed, float beta,
                            const float *bias, float *c, Py_ssize_t ldc)
{
    const Py_ssize_t depth = fr_amx_round_up(k, FR_AMX_DEPTH), rows = fr_amx_round_up(m, FR_AMX_ROWS);
    const Py_ssize_t a_part = rows * depth, b_part = depth * fr_amx_round_up(n, FR_AMX_BLOCK);
    unsigned char *skip = fr_amx_scratch(3 * a_part * sizeof(uint16_t) + fr_amx_round_up(m, 64));
    if (skip == NULL) {
        fr_small_gemm_f32(m, n, k, a, lda, b, ldb, NULL, beta, bias, c, ldc);
        return;
    }
    uint16_t *ap = (uint16_t *)(skip + fr_amx_round_up(m, 64));   /* (after m flags, on a line) */
    for (int q = 0; q < 3; q++)     /* the rows padding the tiles */
        memset(ap + q * a_part + m * depth, 0, (rows - m) * depth * sizeof *ap);
    fr_amx_split_rows(m, k, a, lda, ap, a_part, depth, skip);
    /* A row skipped is all zeros here: its C is left as it was, or set to the bias or 0. */
    fr_amx_tiles(m, n, ap, a_part, packed, b_part, depth, beta, bias, c, ldc);
    for (Py_ssize_t i = 0; i < m; i++)
        if (skip[i])
            fr_small_gemm_f32(1, n, k, a + i * lda, lda, b, ldb, NULL, beta, bias, c + i * ldc, ldc);
}
#else
static void fr_amx_init(void)
{
}

static int fr_amx_request(void)
{
    return 0;
}

static void fr_amx_pack_f32(Py_ssize_t n, Py_ssize_t k, const float *b, Py_ssize_t ldb, void *packed)
{
    (void)n, (void)k, (void)b, (void)ldb, (void)packed;   /* never called: fr_amx_ready is 0 */
}

static void fr_amx_gemm_f32(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float *a, Py_ssize_t lda,
                            const float *b, Py_ssize_t ldb, const void *packed, float beta,
                            const float *bias, float *c, Py_ssize_t ldc)
{
    (void)packed;   /* never packed here: fr_amx_ready is 0 */
    fr_small_gemm_f32(m, n, k, a, lda, b, ldb, NULL, beta, bias, c, ldc);
}
#endif

#endif
