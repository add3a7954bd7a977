/* One float32 timestep of an LSTM, GRU or SimpleRNN with the gates fused into the product.
 *
 * Why: the general kernels in _kernels.pyx compute a step as a matrix product into the gate
 * buffer z, then make several passes over z for the activations and the state update. At the
 * sizes RNNs are run at, each pass is short and the step is bound by latency and memory traffic
 * rather than arithmetic. Here the product is computed a block at a time, 2 batch rows by 8
 * units with every gate of those units, in vector registers, and the block is finished at once
 * (activations, cell and hidden state) while it is still in registers.
 *
 * Layout: `w` is the recurrent kernel packed by fr_pack_gates_f32: for each block of 8 units,
 * its rows p = 0 .. U-1 in turn, each the 8 units of gate 0, then of gate 1, ... So a block is
 * one contiguous stream; read in place, the kernel's (U, G*U) rows are a power-of-two stride
 * apart and keep evicting each other from the same few cache sets. `z` holds the step's
 * hoisted input projection (B, G*U). The new hidden state goes to `h_next`, never to `h`: other
 * unit blocks still read the old one. A row whose `active` flag is 0 (masked) keeps its state.
 *
 * These are the common cases only (float32, tanh and sigmoid, units a multiple of 8); the
 * kernels fall back to the general path for everything else.
 */
#ifndef FASTRNN_FUSED_STEPS_H
#define FASTRNN_FUSED_STEPS_H

#include "fast_math.h"

#if defined(__GNUC__) && !defined(__clang__)
/* The vectors never cross a non-inlined call, so the ABI note about them does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float fr_v8 __attribute__((vector_size(32)));

FASTRNN_INLINE fr_v8 fr_load8(const float *p) { fr_v8 v; memcpy(&v, p, sizeof v); return v; }
FASTRNN_INLINE void fr_store8(float *p, fr_v8 v) { memcpy(p, &v, sizeof v); }

/* Elementwise on 8 lanes, through the double-precision functions of fast_math.h. */
FASTRNN_INLINE fr_v8 fr_sigmoid8(fr_v8 v)
{
    for (int q = 0; q < 8; q++) v[q] = (float)fr_sigmoid((double)v[q]);
    return v;
}

FASTRNN_INLINE fr_v8 fr_tanh8(fr_v8 v)
{
    for (int q = 0; q < 8; q++) v[q] = (float)fr_tanh((double)v[q]);
    return v;
}

/* The layout above, from the recurrent kernel (U, G*U) as stored. */
static void fr_pack_gates_f32(Py_ssize_t units, int gates, const float *w, float *packed)
{
    for (Py_ssize_t j = 0; j < units; j += 8)
        for (Py_ssize_t p = 0; p < units; p++)
            for (int g = 0; g < gates; g++, packed += 8)
                memcpy(packed, w + p * gates * units + g * units + j, 8 * sizeof(float));
}

/* acc[r][g] += h[r, :] @ (gate g of units j .. j+7) for R rows (R = 1 or 2), G gates. */
#define FR_ACCUMULATE(R, G)                                                                     \
    for (Py_ssize_t p = 0; p < units_in; p++) {                                                 \
        const float *w_p = w + (j * units_in + p * 8) * G;                                      \
        fr_v8 w_g[G];                                                                           \
        for (int g = 0; g < G; g++) w_g[g] = fr_load8(w_p + g * 8);                             \
        for (int r = 0; r < R; r++) {                                                           \
            const float h_rp = h[(b + r) * units_in + p];                                       \
            for (int g = 0; g < G; g++) acc[r][g] += h_rp * w_g[g];                              \
        }                                                                                       \
    }

/* LSTM, gates i, f, c, o (Keras order); c is updated in place. */
FASTRNN_MULTIVERSION static void fr_lstm_step_f32(
    Py_ssize_t batch, Py_ssize_t units, const float *h, const float *w, const float *z,
    float *c, float *h_next, const unsigned char *active, Py_ssize_t active_stride)
{
    const Py_ssize_t units_in = units, width = 4 * units;
    for (Py_ssize_t j = 0; j < units; j += 8) {
        Py_ssize_t b = 0;
        for (; b < batch; b += 2) {
            const int rows = batch - b >= 2 ? 2 : 1;
            fr_v8 acc[2][4];
            for (int r = 0; r < 2; r++)
                for (int g = 0; g < 4; g++)
                    acc[r][g] = fr_load8(z + (b + (r < rows ? r : 0)) * width + g * units + j);
            if (rows == 2) { FR_ACCUMULATE(2, 4) } else { FR_ACCUMULATE(1, 4) }
            for (int r = 0; r < rows; r++) {
                float *c_r = c + (b + r) * units + j, *h_r = h_next + (b + r) * units + j;
                if (active && !active[(b + r) * active_stride]) {
                    memcpy(h_r, h + (b + r) * units + j, 8 * sizeof(float));
                    continue;
                }
                fr_v8 i = fr_sigmoid8(acc[r][0]), f = fr_sigmoid8(acc[r][1]);
                fr_v8 g = fr_tanh8(acc[r][2]), o = fr_sigmoid8(acc[r][3]);
                fr_v8 c_t = f * fr_load8(c_r) + i * g;
                fr_store8(c_r, c_t);
                fr_store8(h_r, o * fr_tanh8(c_t));
            }
        }
    }
}

/* GRU with reset_after (Keras 3, PyTorch), gates z, r, h; `rb` is the recurrent bias (3U). */
FASTRNN_MULTIVERSION static void fr_gru_step_f32(
    Py_ssize_t batch, Py_ssize_t units, const float *h, const float *w, const float *rb,
    const float *z, float *h_next, const unsigned char *active, Py_ssize_t active_stride)
{
    const Py_ssize_t units_in = units, width = 3 * units;
    for (Py_ssize_t j = 0; j < units; j += 8) {
        Py_ssize_t b = 0;
        for (; b < batch; b += 2) {
            const int rows = batch - b >= 2 ? 2 : 1;
            fr_v8 acc[2][3];
            for (int r = 0; r < 2; r++)
                for (int g = 0; g < 3; g++)
                    acc[r][g] = fr_load8(rb + g * units + j);   /* the recurrent side alone */
            if (rows == 2) { FR_ACCUMULATE(2, 3) } else { FR_ACCUMULATE(1, 3) }
            for (int r = 0; r < rows; r++) {
                const float *z_r = z + (b + r) * width + j, *h_old = h + (b + r) * units + j;
                float *h_r = h_next + (b + r) * units + j;
                if (active && !active[(b + r) * active_stride]) {
                    memcpy(h_r, h_old, 8 * sizeof(float));
                    continue;
                }
                fr_v8 update = fr_sigmoid8(fr_load8(z_r) + acc[r][0]);
                fr_v8 reset = fr_sigmoid8(fr_load8(z_r + units) + acc[r][1]);
                fr_v8 candidate = fr_tanh8(fr_load8(z_r + 2 * units) + reset * acc[r][2]);
                fr_store8(h_r, update * fr_load8(h_old) + (1.0f - update) * candidate);
            }
        }
    }
}

/* SimpleRNN with tanh. */
FASTRNN_MULTIVERSION static void fr_simple_rnn_step_f32(
    Py_ssize_t batch, Py_ssize_t units, const float *h, const float *w, const float *z,
    float *h_next, const unsigned char *active, Py_ssize_t active_stride)
{
    const Py_ssize_t units_in = units, width = units;
    for (Py_ssize_t j = 0; j < units; j += 8) {
        Py_ssize_t b = 0;
        for (; b < batch; b += 2) {
            const int rows = batch - b >= 2 ? 2 : 1;
            fr_v8 acc[2][1];
            for (int r = 0; r < 2; r++)
                acc[r][0] = fr_load8(z + (b + (r < rows ? r : 0)) * width + j);
            if (rows == 2) { FR_ACCUMULATE(2, 1) } else { FR_ACCUMULATE(1, 1) }
            for (int r = 0; r < rows; r++) {
                float *h_r = h_next + (b + r) * units + j;
                if (active && !active[(b + r) * active_stride])
                    memcpy(h_r, h + (b + r) * units + j, 8 * sizeof(float));
                else
                    fr_store8(h_r, fr_tanh8(acc[r][0]));
            }
        }
    }
}

#undef FR_ACCUMULATE
#endif
