# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled recurrences of fastrnn: one function per cell, for float32 and float64.

Design:
- A kernel only computes. The layer (fastrnn/recurrent.py) validates, casts, lays the inputs
  out time-major, reverses time for ``go_backwards`` and allocates every output. A kernel reads
  its inputs, writes preallocated outputs and returns nothing. It starts with the hoisted
  input projection, ``x @ kernel + bias`` for all timesteps and gates in one GEMM. The array contract is the one documented in
  fastrnn/reference.py, the specification; fastrnn/_numba.py mirrors this file line for line.
- One source for both precisions: the ``floating`` fused type, with the float or double libm
  function chosen at compile time (``if floating is float``), never a silent promotion.
- Time-major: each step is one matrix product of the whole batch's states with the whole
  recurrent kernel (all gates fused), ``Z = inputs[t] + H @ W``, through the BLAS that SciPy
  ships (``scipy.linalg.cython_blas``): a tuned GEMM for large batches, a GEMV-sized call for
  batch 1. The gates are then elementwise, row by row; a masked row keeps its state.
- The GIL is released for the whole recurrence, so calls from several threads run in parallel.
  Nothing is shared between calls: scratch memory is allocated per call.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm
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

cdef extern from "fast_math.h":
    # Vectorised float32 activations, computed in double and rounded once (see the header).
    void fr_tanh_f32(float* v, Py_ssize_t n) noexcept nogil
    void fr_sigmoid_f32(float* v, Py_ssize_t n) noexcept nogil
    void fr_silu_f32(float* v, Py_ssize_t n) noexcept nogil
    void fr_exp_f32(float* v, Py_ssize_t n) noexcept nogil
    void fr_elu_f32(float* v, Py_ssize_t n, double alpha, double scale) noexcept nogil

cdef extern from "small_gemm.h":
    void fr_small_gemm_f32(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                           const float* b, Py_ssize_t ldb, float beta, float* c, Py_ssize_t ldc) noexcept nogil
    void fr_small_gemm_f64(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
                           const double* b, Py_ssize_t ldb, double beta, double* c, Py_ssize_t ldc) noexcept nogil

# Below this many multiply-adds a product runs in small_gemm.h: a BLAS call costs more than
# that (measured with bench/test_bench_gemm.py: at 2**22 multiply-adds they are about even).
cdef Py_ssize_t SMALL_GEMM = 1 << 22

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
    if floating is float:
        # The common float32 activations take the vectorised path of fast_math.h.
        if activation == TANH:
            fr_tanh_f32(v, n)
            return
        if activation == SIGMOID:
            fr_sigmoid_f32(v, n)
            return
        if activation == SILU:
            fr_silu_f32(v, n)
            return
        if activation == EXPONENTIAL:
            fr_exp_f32(v, n)
            return
        if activation == ELU:
            fr_elu_f32(v, n, 1.0, 1.0)
            return
        if activation == SELU:
            fr_elu_f32(v, n, SELU_ALPHA, SELU_SCALE)
            return
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


cdef inline void gemm(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const floating* a, Py_ssize_t lda,
                      const floating* b, Py_ssize_t ldb, floating beta, floating* c, Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C[m, n] = A[m, k] @ B[k, n] + beta * C`` with leading dimensions lda, ldb, ldc.

    Small products run in small_gemm.h; the others in BLAS, which is column-major, where a
    row-major matrix reads as its transpose: so it computes ``C^T = B^T @ A^T``.
    """
    cdef char no = b"N"
    cdef int m_ = <int> m, n_ = <int> n, k_ = <int> k, lda_ = <int> lda, ldb_ = <int> ldb, ldc_ = <int> ldc
    cdef floating one = 1
    if m * n * k < SMALL_GEMM:
        if floating is float:
            fr_small_gemm_f32(m, n, k, a, lda, b, ldb, beta, c, ldc)
        else:
            fr_small_gemm_f64(m, n, k, a, lda, b, ldb, beta, c, ldc)
    elif floating is float:
        sgemm(&no, &no, &n_, &m_, &k_, &one, <float*> b, &ldb_, <float*> a, &lda_, &beta, c, &ldc_)
    else:
        dgemm(&no, &no, &n_, &m_, &k_, &one, <double*> b, &ldb_, <double*> a, &lda_, &beta, c, &ldc_)


cdef void* alloc_scratch(size_t nbytes) except NULL nogil:
    """Scratch memory private to one call, so that concurrent calls never share state."""
    cdef void* p = malloc(nbytes if nbytes else 1)
    if p == NULL:
        with gil:
            raise MemoryError(f"cannot allocate {nbytes} bytes of scratch")
    return p


cdef inline bint skipped(const unsigned char[:, ::1] mask, Py_ssize_t b, Py_ssize_t t) noexcept nogil:
    return mask.shape[0] > 0 and not mask[b, t]


cdef floating* project(const floating[:, :, ::1] x, const floating[:, ::1] kernel,
                       const floating[::1] bias) except NULL nogil:
    """The hoisted input projection, ``x @ kernel + bias`` for every step and row: one GEMM.

    Returns (T * B, width) scratch that the caller frees; step t's rows start at t * B * width.
    """
    cdef Py_ssize_t rows = x.shape[0] * x.shape[1], width = kernel.shape[1], r
    cdef floating* projected = <floating*> alloc_scratch(rows * width * sizeof(floating))
    for r in range(rows):
        memcpy(projected + r * width, &bias[0], width * sizeof(floating))
    gemm(rows, width, x.shape[2], &x[0, 0, 0], x.shape[2], &kernel[0, 0], width, 1, projected, width)
    return projected


def simple_rnn(const floating[:, :, ::1] x,                 # IN  (T, B, I) time-major inputs
               const floating[:, ::1] kernel,               # IN  (I, U)
               const floating[::1] bias,                    # IN  (U,), zeros without a bias
               const floating[:, ::1] recurrent_kernel,     # IN  (U, U)
               const unsigned char[:, ::1] mask,            # IN  (B, T), or (0, 0) for no mask
               int activation,
               floating[:, ::1] h,                          # IN/OUT (B, U) initial -> final state
               floating[:, :, ::1] sequence):               # OUT (B, T, U), or (0, 0, 0) to skip
    """SimpleRNN: ``h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``, in place.

    See fastrnn/reference.py for the contract; this is its compiled twin.
    """
    cdef Py_ssize_t timesteps = x.shape[0], batch = x.shape[1], units = h.shape[1]
    cdef bint write_sequence = sequence.shape[0] > 0
    cdef size_t row_bytes = units * sizeof(floating)
    cdef Py_ssize_t b, t
    cdef floating* projected
    cdef floating* z
    with nogil:
        projected = project(x, kernel, bias)
        for t in range(timesteps):
            z = projected + t * batch * units
            gemm(batch, units, units, &h[0, 0], units, &recurrent_kernel[0, 0], units, 1, z, units)
            for b in range(batch):
                if not skipped(mask, b, t):
                    activate(z + b * units, units, activation)
                    memcpy(&h[b, 0], z + b * units, row_bytes)
                if write_sequence:
                    memcpy(&sequence[b, t, 0], &h[b, 0], row_bytes)
        free(projected)


def lstm(const floating[:, :, ::1] x,                       # IN  (T, B, I) time-major inputs
         const floating[:, ::1] kernel,                     # IN  (I, 4U)
         const floating[::1] bias,                          # IN  (4U,), zeros without a bias
         const floating[:, ::1] recurrent_kernel,           # IN  (P, 4U), gates i, f, c, o
         const floating[:, ::1] projection,                 # IN  (U, P), or (0, 0): P = U
         const unsigned char[:, ::1] mask,                  # IN  (B, T), or (0, 0) for no mask
         int activation,
         int recurrent_activation,
         floating[:, ::1] h,                                # IN/OUT (B, P)
         floating[:, ::1] c,                                # IN/OUT (B, U)
         floating[:, :, ::1] sequence):                     # OUT (B, T, P), or (0, 0, 0) to skip
    """LSTM, gates fused: one product with the whole (P, 4U) recurrent kernel per step.

    ``z = x_t @ kernel + bias + h_{t-1} @ recurrent_kernel``;
    ``i, f, o = rec_act(z_i), rec_act(z_f), rec_act(z_o)``;
    ``c_t = f * c_{t-1} + i * act(z_c)``; ``h_t = o * act(c_t)``, then ``h_t @ projection``
    when there is one (PyTorch's proj_size; P is its size).
    """
    cdef Py_ssize_t timesteps = x.shape[0], batch = x.shape[1]
    cdef Py_ssize_t units = c.shape[1], state = h.shape[1], width = 4 * units
    cdef bint use_projection = projection.shape[0] > 0
    cdef bint write_sequence = sequence.shape[0] > 0
    cdef Py_ssize_t b, t, j
    cdef floating* projected
    cdef floating* z
    cdef floating* z_b
    cdef floating* c_b
    cdef floating* out
    with nogil:
        projected = project(x, kernel, bias)
        out = <floating*> alloc_scratch(batch * state * sizeof(floating))   # o * act(c) @ projection
        for t in range(timesteps):
            z = projected + t * batch * width
            gemm(batch, width, state, &h[0, 0], state, &recurrent_kernel[0, 0], width, 1, z, width)
            for b in range(batch):
                z_b = z + b * width
                c_b = &c[b, 0]
                if skipped(mask, b, t):
                    continue
                activate(z_b, 2 * units, recurrent_activation)             # i, f
                activate(z_b + 2 * units, units, activation)               # candidate
                activate(z_b + 3 * units, units, recurrent_activation)     # o
                for j in range(units):
                    c_b[j] = z_b[units + j] * c_b[j] + z_b[j] * z_b[2 * units + j]
                    z_b[2 * units + j] = c_b[j]    # the candidate slot now holds act(c_t)
                activate(z_b + 2 * units, units, activation)
                for j in range(units):
                    z_b[2 * units + j] *= z_b[3 * units + j]                # o * act(c_t)
                if not use_projection:
                    memcpy(&h[b, 0], z_b + 2 * units, units * sizeof(floating))
            if use_projection:
                gemm(batch, state, units, z + 2 * units, width, &projection[0, 0], state, 0, out, state)
                for b in range(batch):
                    if not skipped(mask, b, t):
                        memcpy(&h[b, 0], out + b * state, state * sizeof(floating))
            if write_sequence:
                for b in range(batch):
                    memcpy(&sequence[b, t, 0], &h[b, 0], state * sizeof(floating))
        free(out)
        free(projected)


def gru(const floating[:, :, ::1] x,                        # IN  (T, B, I) time-major inputs
        const floating[:, ::1] kernel,                      # IN  (I, 3U)
        const floating[::1] input_bias,                     # IN  (3U,), zeros without a bias
        const floating[:, ::1] recurrent_kernel,            # IN  (U, 3U), gates z, r, h
        const floating[::1] recurrent_bias,                 # IN  (3U,), zeros unless reset_after
        const unsigned char[:, ::1] mask,                   # IN  (B, T), or (0, 0) for no mask
        int activation,
        int recurrent_activation,
        bint reset_after,
        floating[:, ::1] h,                                 # IN/OUT (B, U)
        floating[:, :, ::1] sequence):                      # OUT (B, T, U), or (0, 0, 0) to skip
    """GRU in both Keras formulations, with ``x = x_t @ kernel + input_bias``.

    ``reset_after`` (Keras 3 and PyTorch): one product with the whole recurrent kernel per step,
    ``g = h_{t-1} @ recurrent_kernel + recurrent_bias``, ``z, r = rec_act(x_z + g_z), rec_act(x_r + g_r)``,
    ``hh = act(x_h + r * g_h)``. Otherwise the reset gate acts before the candidate's product:
    ``hh = act(x_h + (r * h_{t-1}) @ recurrent_kernel[:, 2U:])``. Both end with
    ``h_t = z * h_{t-1} + (1 - z) * hh``.
    """
    cdef Py_ssize_t timesteps = x.shape[0], batch = x.shape[1], units = h.shape[1]
    cdef Py_ssize_t width = 3 * units
    cdef bint write_sequence = sequence.shape[0] > 0
    cdef Py_ssize_t b, t, j
    cdef floating* projected
    cdef floating* z
    cdef floating* g
    cdef floating* z_b
    cdef floating* g_b
    cdef floating* h_b
    with nogil:
        projected = project(x, kernel, input_bias)
        # g: the recurrent side of the gates (reset_after), or r * h (before).
        g = <floating*> alloc_scratch(batch * width * sizeof(floating))
        for t in range(timesteps):
            z = projected + t * batch * width
            if reset_after:
                for b in range(batch):
                    memcpy(g + b * width, &recurrent_bias[0], width * sizeof(floating))
                gemm(batch, width, units, &h[0, 0], units, &recurrent_kernel[0, 0], width, 1, g, width)
                for b in range(batch):
                    z_b, g_b = z + b * width, g + b * width
                    for j in range(2 * units):
                        z_b[j] += g_b[j]
                    activate(z_b, 2 * units, recurrent_activation)          # z, r
                    for j in range(units):
                        z_b[2 * units + j] += z_b[units + j] * g_b[2 * units + j]
            else:
                gemm(batch, 2 * units, units, &h[0, 0], units, &recurrent_kernel[0, 0], width, 1, z, width)
                for b in range(batch):
                    z_b, g_b, h_b = z + b * width, g + b * units, &h[b, 0]
                    activate(z_b, 2 * units, recurrent_activation)          # z, r
                    for j in range(units):
                        g_b[j] = z_b[units + j] * h_b[j]                   # r * h_{t-1}
                gemm(batch, units, units, g, units, &recurrent_kernel[0, 2 * units], width, 1,
                     z + 2 * units, width)
            for b in range(batch):
                z_b, h_b = z + b * width, &h[b, 0]
                if not skipped(mask, b, t):
                    activate(z_b + 2 * units, units, activation)
                    for j in range(units):
                        h_b[j] = z_b[j] * h_b[j] + (1 - z_b[j]) * z_b[2 * units + j]
                if write_sequence:
                    memcpy(&sequence[b, t, 0], h_b, units * sizeof(floating))
        free(g)
        free(projected)


def activation(floating[::1] values, int activation):                 # IN/OUT (n,)
    """Apply the activation with code `activation` to `values` in place, as the kernels do.

    Exposed so that tests can hold the compiled activations to their accuracy bounds.
    """
    with nogil:
        activate(&values[0], values.shape[0], activation)
