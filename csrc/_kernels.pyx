# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled recurrences of fastrnn: one function per cell, for float32 and float64.

Design:
- A kernel only loops. The layer (fastrnn/layers.py) validates, casts, projects the inputs
  (``x @ kernel + bias`` for all timesteps in one matrix multiply), reverses time for
  ``go_backwards`` and allocates every array. A kernel reads its inputs, writes preallocated
  outputs and returns nothing. The array contract is the one documented in
  fastrnn/reference.py, the specification; fastrnn/_numba.py mirrors this file line for line.
- One source for both precisions: the ``floating`` fused type, with the float or double libm
  function chosen at compile time (``if floating is float``), never a silent promotion.
- The GIL is released for the whole recurrence, so calls from several threads run in parallel.
  Nothing is shared between calls: the only scratch row is allocated per call.
- Batch rows are independent, so each row runs through all its timesteps before the next one:
  its state and its inputs stay in cache, and no step waits on another row.
"""
from cython cimport floating
from libc.math cimport erf, erff, exp, expf, expm1, expm1f, log1p, log1pf, tanh, tanhf
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cdef extern from *:
    """
    #ifndef FASTRNN_CFLAGS
    #define FASTRNN_CFLAGS "unknown"
    #endif
    #ifndef FASTRNN_CYTHON_VERSION
    #define FASTRNN_CYTHON_VERSION "unknown"
    #endif
    #if defined(__clang__)
    #define FASTRNN_COMPILER "clang " __clang_version__
    #elif defined(__GNUC__)
    #define FASTRNN_COMPILER "gcc " __VERSION__
    #elif defined(_MSC_VER)
    #define FASTRNN_COMPILER "msvc"
    #else
    #define FASTRNN_COMPILER "unknown"
    #endif
    """
    const char* FASTRNN_CFLAGS
    const char* FASTRNN_CYTHON_VERSION
    const char* FASTRNN_COMPILER

BUILD_INFO = {
    "compiler": FASTRNN_COMPILER.decode(),
    "cflags": FASTRNN_CFLAGS.decode(),
    "cython": FASTRNN_CYTHON_VERSION.decode(),
}

# Activation codes: the contract with fastrnn/activations.py CODES.
cdef enum:
    LINEAR = 0
    TANH = 1
    SIGMOID = 2
    RELU = 3
    HARD_SIGMOID = 4
    HARD_SIGMOID_KERAS2 = 5
    ELU = 6
    SELU = 7
    SOFTSIGN = 8
    SOFTPLUS = 9
    SILU = 10
    GELU = 11
    EXPONENTIAL = 12

cdef double SELU_ALPHA = 1.6732632423543772848170429916717
cdef double SELU_SCALE = 1.0507009873554804934193349852946
cdef double SQRT1_2 = 0.70710678118654752440084436210485


# libm in the precision of the data.
cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)

cdef inline floating _expm1(floating x) noexcept nogil:
    if floating is float:
        return expm1f(x)
    else:
        return expm1(x)

cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)

cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)

cdef inline floating _erf(floating x) noexcept nogil:
    if floating is float:
        return erff(x)
    else:
        return erf(x)


cdef inline floating _sigmoid(floating x) noexcept nogil:
    # exp(-|x|) never overflows; the branch keeps full precision on both tails.
    cdef floating z = _exp(-x if x >= 0 else x)
    return 1 / (1 + z) if x >= 0 else z / (1 + z)

cdef inline floating _clip(floating x, floating lo, floating hi) noexcept nogil:
    # Comparisons are false for NaN, so NaN passes through as in np.clip.
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


cdef void activate(floating* v, Py_ssize_t n, int activation) noexcept nogil:
    """Apply the activation with code `activation` to v[0:n] in place (one branch per row)."""
    cdef Py_ssize_t j
    cdef floating x
    if activation == TANH:
        for j in range(n):
            v[j] = _tanh(v[j])
    elif activation == SIGMOID:
        for j in range(n):
            v[j] = _sigmoid(v[j])
    elif activation == RELU:
        for j in range(n):
            v[j] = 0 if v[j] < 0 else v[j]
    elif activation == HARD_SIGMOID:
        for j in range(n):
            v[j] = _clip(v[j] + 3, <floating>0, <floating>6) / 6
    elif activation == HARD_SIGMOID_KERAS2:
        for j in range(n):
            v[j] = _clip(<floating>0.2 * v[j] + <floating>0.5, <floating>0, <floating>1)
    elif activation == ELU:
        for j in range(n):
            v[j] = v[j] if v[j] > 0 else _expm1(v[j])
    elif activation == SELU:
        for j in range(n):
            x = v[j]
            v[j] = <floating>SELU_SCALE * (x if x > 0 else <floating>SELU_ALPHA * _expm1(x))
    elif activation == SOFTSIGN:
        for j in range(n):
            v[j] = v[j] / (1 + (v[j] if v[j] >= 0 else -v[j]))
    elif activation == SOFTPLUS:
        for j in range(n):
            x = v[j]
            # log(1 + e^x) = log1p(e^-|x|) + max(x, 0), stable for large |x|.
            v[j] = _log1p(_exp(-x if x >= 0 else x)) + (x if x > 0 else 0)
    elif activation == SILU:
        for j in range(n):
            v[j] = v[j] * _sigmoid(v[j])
    elif activation == GELU:
        for j in range(n):
            x = v[j]
            v[j] = <floating>0.5 * x * (1 + _erf(x * <floating>SQRT1_2))
    elif activation == EXPONENTIAL:
        for j in range(n):
            v[j] = _exp(v[j])
    # LINEAR: nothing to do.


cdef inline void matvec_add(const floating* h, const floating* w, Py_ssize_t n_in,
                            Py_ssize_t n_out, Py_ssize_t w_stride, floating* out) noexcept nogil:
    """out[0:n_out] += h[0:n_in] @ w, w a (n_in, >= n_out) row-major block with rows `w_stride` apart.

    One kernel row at a time, so the inner loop runs over contiguous memory and vectorises.
    """
    cdef Py_ssize_t k, j
    cdef floating h_k
    cdef const floating* w_k
    for k in range(n_in):
        h_k = h[k]
        w_k = w + k * w_stride
        for j in range(n_out):
            out[j] += h_k * w_k[j]


cdef void* alloc_scratch(size_t nbytes) except NULL nogil:
    """Scratch memory private to one call, so that concurrent calls never share state."""
    cdef void* p = malloc(nbytes)
    if p == NULL:
        with gil:
            raise MemoryError(f"cannot allocate {nbytes} bytes of scratch")
    return p


def simple_rnn(const floating[:, :, ::1] inputs,            # IN  (B, T, U) x_t @ kernel + bias
               const floating[:, ::1] recurrent_kernel,     # IN  (U, U)
               const unsigned char[:, ::1] mask,            # IN  (B, T), or (0, 0) for no mask
               int activation,
               floating[:, ::1] h,                          # IN/OUT (B, U) initial -> final state
               floating[:, :, ::1] sequence):               # OUT (B, T, U), or (0, 0, 0) to skip
    """SimpleRNN: ``h_t = act(inputs[:, t] + h_{t-1} @ recurrent_kernel)``, in place.

    See fastrnn/reference.py for the contract; this is its compiled twin.
    """
    cdef Py_ssize_t batch = inputs.shape[0], timesteps = inputs.shape[1], units = inputs.shape[2]
    cdef bint use_mask = mask.shape[0] > 0
    cdef bint write_sequence = sequence.shape[0] > 0
    cdef size_t row_bytes = units * sizeof(floating)
    cdef Py_ssize_t b, t
    cdef floating* h_b
    cdef floating* row
    with nogil:
        row = <floating*> alloc_scratch(units * sizeof(floating))
        for b in range(batch):
            h_b = &h[b, 0]
            for t in range(timesteps):
                if not use_mask or mask[b, t]:
                    memcpy(row, &inputs[b, t, 0], row_bytes)
                    matvec_add(h_b, &recurrent_kernel[0, 0], units, units, units, row)
                    activate(row, units, activation)
                    memcpy(h_b, row, row_bytes)
                if write_sequence:
                    memcpy(&sequence[b, t, 0], h_b, row_bytes)
        free(row)


def lstm(const floating[:, :, ::1] inputs,                  # IN  (B, T, 4U) x_t @ kernel + bias
         const floating[:, ::1] recurrent_kernel,           # IN  (P, 4U), gates i, f, c, o
         const floating[:, ::1] projection,                 # IN  (U, P), or (0, 0): P = U
         const unsigned char[:, ::1] mask,                  # IN  (B, T), or (0, 0) for no mask
         int activation,
         int recurrent_activation,
         floating[:, ::1] h,                                # IN/OUT (B, P)
         floating[:, ::1] c,                                # IN/OUT (B, U)
         floating[:, :, ::1] sequence):                     # OUT (B, T, P), or (0, 0, 0) to skip
    """LSTM, gates fused: one product with the whole (P, 4U) recurrent kernel per step.

    ``z = inputs[:, t] + h_{t-1} @ recurrent_kernel``;
    ``i, f, o = rec_act(z_i), rec_act(z_f), rec_act(z_o)``;
    ``c_t = f * c_{t-1} + i * act(z_c)``; ``h_t = o * act(c_t)``, then ``h_t @ projection``
    when there is one (PyTorch's proj_size; P is its size).
    """
    cdef Py_ssize_t batch = inputs.shape[0], timesteps = inputs.shape[1]
    cdef Py_ssize_t units = c.shape[1], state = h.shape[1]
    cdef bint use_mask = mask.shape[0] > 0
    cdef bint use_projection = projection.shape[0] > 0
    cdef bint write_sequence = sequence.shape[0] > 0
    cdef Py_ssize_t b, t, j
    cdef floating* h_b
    cdef floating* c_b
    cdef floating* z
    with nogil:
        z = <floating*> alloc_scratch(4 * units * sizeof(floating))
        for b in range(batch):
            h_b = &h[b, 0]
            c_b = &c[b, 0]
            for t in range(timesteps):
                if not use_mask or mask[b, t]:
                    memcpy(z, &inputs[b, t, 0], 4 * units * sizeof(floating))
                    matvec_add(h_b, &recurrent_kernel[0, 0], state, 4 * units, 4 * units, z)
                    activate(z, 2 * units, recurrent_activation)             # i, f
                    activate(z + 2 * units, units, activation)               # candidate
                    activate(z + 3 * units, units, recurrent_activation)     # o
                    for j in range(units):
                        c_b[j] = z[units + j] * c_b[j] + z[j] * z[2 * units + j]
                        z[2 * units + j] = c_b[j]    # the candidate slot now holds act(c_t)
                    activate(z + 2 * units, units, activation)
                    for j in range(units):
                        z[2 * units + j] *= z[3 * units + j]                  # o * act(c_t)
                    if use_projection:
                        for j in range(state):
                            h_b[j] = 0
                        matvec_add(z + 2 * units, &projection[0, 0], units, state, state, h_b)
                    else:
                        memcpy(h_b, z + 2 * units, units * sizeof(floating))
                if write_sequence:
                    memcpy(&sequence[b, t, 0], h_b, state * sizeof(floating))
        free(z)


def gru(const floating[:, :, ::1] inputs,                   # IN  (B, T, 3U) x_t @ kernel + input bias
        const floating[:, ::1] recurrent_kernel,            # IN  (U, 3U), gates z, r, h
        const floating[::1] recurrent_bias,                 # IN  (3U,), zeros unless reset_after
        const unsigned char[:, ::1] mask,                   # IN  (B, T), or (0, 0) for no mask
        int activation,
        int recurrent_activation,
        bint reset_after,
        floating[:, ::1] h,                                 # IN/OUT (B, U)
        floating[:, :, ::1] sequence):                      # OUT (B, T, U), or (0, 0, 0) to skip
    """GRU in both Keras formulations.

    ``reset_after`` (Keras 3 and PyTorch): one product with the whole recurrent kernel per step,
    ``g = h_{t-1} @ recurrent_kernel + recurrent_bias``, ``z, r = rec_act(x_z + g_z), rec_act(x_r + g_r)``,
    ``hh = act(x_h + r * g_h)``. Otherwise the reset gate acts before the candidate's product:
    ``hh = act(x_h + (r * h_{t-1}) @ recurrent_kernel[:, 2U:])``. Both end with
    ``h_t = z * h_{t-1} + (1 - z) * hh``.
    """
    cdef Py_ssize_t batch = inputs.shape[0], timesteps = inputs.shape[1], units = h.shape[1]
    cdef bint use_mask = mask.shape[0] > 0
    cdef bint write_sequence = sequence.shape[0] > 0
    cdef Py_ssize_t b, t, j
    cdef floating* h_b
    cdef floating* x
    cdef floating* g
    with nogil:
        x = <floating*> alloc_scratch((6 * units) * sizeof(floating))
        g = x + 3 * units
        for b in range(batch):
            h_b = &h[b, 0]
            for t in range(timesteps):
                if not use_mask or mask[b, t]:
                    memcpy(x, &inputs[b, t, 0], 3 * units * sizeof(floating))
                    if reset_after:
                        memcpy(g, &recurrent_bias[0], 3 * units * sizeof(floating))
                        matvec_add(h_b, &recurrent_kernel[0, 0], units, 3 * units, 3 * units, g)
                        for j in range(2 * units):
                            x[j] += g[j]
                        activate(x, 2 * units, recurrent_activation)        # z, r
                        for j in range(units):
                            x[2 * units + j] += x[units + j] * g[2 * units + j]
                    else:
                        matvec_add(h_b, &recurrent_kernel[0, 0], units, 2 * units, 3 * units, x)
                        activate(x, 2 * units, recurrent_activation)        # z, r
                        for j in range(units):
                            g[j] = x[units + j] * h_b[j]                   # r * h_{t-1}
                        matvec_add(g, &recurrent_kernel[0, 2 * units], units, units, 3 * units,
                                   x + 2 * units)
                    activate(x + 2 * units, units, activation)
                    for j in range(units):
                        h_b[j] = x[j] * h_b[j] + (1 - x[j]) * x[2 * units + j]
                if write_sequence:
                    memcpy(&sequence[b, t, 0], h_b, units * sizeof(floating))
        free(x)
