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
cimport numpy as cnp
import numpy as np
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm
from libc.math cimport erf, erff, exp, expf, expm1, expm1f, log1p, log1pf, tanh, tanhf
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

cnp.import_array()

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
                           const float* b, Py_ssize_t ldb, const float* packed, float beta, float* c,
                           Py_ssize_t ldc) noexcept nogil
    void fr_small_gemm_f64(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
                           const double* b, Py_ssize_t ldb, const double* packed, double beta, double* c,
                           Py_ssize_t ldc) noexcept nogil
    void fr_pack_panels_f32(Py_ssize_t n, Py_ssize_t k, const float* b, Py_ssize_t ldb, float* packed) noexcept nogil
    void fr_pack_panels_f64(Py_ssize_t n, Py_ssize_t k, const double* b, Py_ssize_t ldb,
                            double* packed) noexcept nogil

# Below this many multiply-adds a product runs in small_gemm.h: a BLAS call costs more than that.
# Measured side by side on whole recurrences: unpacked, the two were even at 2**22 (the input
# projection stays in BLAS above 2**25: 0.90-0.96x in small_gemm.h). A recurrent kernel packed
# once per call (pack_recurrent_kernel) runs there up to 2**27, faster than a one-thread BLAS, which packs
# it again at every step (29% of an LSTM 32x100x256x512 in BLAS): 1.43-1.44x at 2**25
# (SimpleRNN 32x100x256x512, LSTM 32x100x256x512), 1.06-1.40x between 2**25 and 2**27,
# 0.95-1.10x between 2**27 and 2**28.
cdef Py_ssize_t SMALL_GEMM = 1 << 25
cdef Py_ssize_t SMALL_GEMM_PACKED = 1 << 27

# SciPy's OpenBLAS runs a product on several threads, whose workers then spin for a while
# waiting for the next one: inside a recurrence they take the core that the steps between
# products run on (measured: an LSTM 256x50x128x256 ran 4x slower). fastrnn splits a batch across
# threads itself (fastrnn/parallel.py), so the kernels call BLAS on one thread, set per call
# with OpenBLAS's openblas_set_num_threads_local when fastrnn/backends.py finds it (NULL
# otherwise: the BLAS's own setting applies).
ctypedef int (*set_threads_function)(int) noexcept nogil
cdef set_threads_function blas_set_threads = NULL


def use_blas_thread_control(size_t set_threads_address):
    """Run BLAS calls on one thread, set per call with the C function at `set_threads_address`
    (OpenBLAS's ``openblas_set_num_threads_local``); 0 leaves the BLAS's own setting."""
    global blas_set_threads
    blas_set_threads = <set_threads_function> set_threads_address


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
                      const floating* b, Py_ssize_t ldb, floating beta, floating* c, Py_ssize_t ldc,
                      const floating* packed=NULL) noexcept nogil:
    """Row-major ``C[m, n] = A[m, k] @ B[k, n] + beta * C`` with leading dimensions lda, ldb, ldc.

    Small products run in small_gemm.h, reading B from `packed` when given (see `pack_recurrent_kernel`),
    and with B packed the bound is SMALL_GEMM_PACKED. The others run in BLAS, which is
    column-major, where a row-major matrix reads as its transpose: so it computes
    ``C^T = B^T @ A^T``.
    """
    cdef char no = b"N"
    cdef int m_ = <int> m, n_ = <int> n, k_ = <int> k, lda_ = <int> lda, ldb_ = <int> ldb, ldc_ = <int> ldc
    cdef floating one = 1
    if m * n * k < (SMALL_GEMM if packed == NULL else SMALL_GEMM_PACKED):
        if floating is float:
            fr_small_gemm_f32(m, n, k, a, lda, b, ldb, packed, beta, c, ldc)
        else:
            fr_small_gemm_f64(m, n, k, a, lda, b, ldb, packed, beta, c, ldc)
        return
    cdef int previous = blas_set_threads(1) if blas_set_threads != NULL else 0
    if floating is float:
        sgemm(&no, &no, &n_, &m_, &k_, &one, <float*> b, &ldb_, <float*> a, &lda_, &beta, c, &ldc_)
    else:
        dgemm(&no, &no, &n_, &m_, &k_, &one, <double*> b, &ldb_, <double*> a, &lda_, &beta, c, &ldc_)
    if blas_set_threads != NULL:
        blas_set_threads(previous)


cdef void* alloc_scratch(size_t nbytes) except NULL nogil:
    """Scratch memory private to one call, so that concurrent calls never share state."""
    cdef void* p = malloc(nbytes if nbytes else 1)
    if p == NULL:
        with gil:
            raise MemoryError(f"cannot allocate {nbytes} bytes of scratch")
    return p


# ------------------------------------------------------------------------------- the array contract
# The entry points take ndarrays and check them with NumPy's C API (type, rank, contiguity, shapes):
# a few integer comparisons, where typed memoryviews cost ~0.25 us each to acquire, which was
# most of a one-step call. The cores below them see only pointers and sizes.

cdef inline cnp.npy_intp* shape_of(object array, const char* name, int typenum, int ndim,
                                 bint writable) except NULL:
    """The dimensions of `array` after checking its type, rank, C order and, for outputs, writability."""
    if not cnp.PyArray_Check(array):
        raise TypeError(f"kernel argument {name.decode()}: expected a NumPy array, got {type(array).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray> array
    if (cnp.PyArray_TYPE(a) != typenum or cnp.PyArray_NDIM(a) != ndim or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or (writable and not cnp.PyArray_ISWRITEABLE(a))):
        raise ValueError(
            f"kernel argument {name.decode()}: expected a C-contiguous{' writable' if writable else ''} "
            f"{ndim}-d {cnp.PyArray_DescrFromType(typenum)} array, got a {a.ndim}-d {a.dtype} array"
            f"{'' if a.flags.c_contiguous else ' (not C-contiguous)'}"
            f"{'' if a.flags.writeable or not writable else ' (read-only)'}")
    return cnp.PyArray_DIMS(a)


cdef inline void* data(object array) noexcept:
    return cnp.PyArray_DATA(<cnp.ndarray> array)


cdef int check_shape(const char* name, cnp.npy_intp* shape, int ndim,
                     Py_ssize_t d0, Py_ssize_t d1=0, Py_ssize_t d2=0) except -1:
    """Raise ValueError unless the first `ndim` of `shape` are (d0, d1, d2)."""
    cdef Py_ssize_t expected[3]
    expected[:] = [d0, d1, d2]
    cdef int i
    for i in range(ndim):
        if shape[i] != expected[i]:
            raise ValueError(f"kernel argument {name.decode()}: expected shape "
                             f"{tuple(expected[j] for j in range(ndim))}, got {tuple(shape[j] for j in range(ndim))}")
    return 0


cdef inline int typenum_of(object state) except -1:
    """The precision of a call, taken from its state ``h``: float32 or float64."""
    if cnp.PyArray_Check(state):
        typenum = cnp.PyArray_TYPE(<cnp.ndarray> state)
        if typenum == cnp.NPY_FLOAT32 or typenum == cnp.NPY_FLOAT64:
            return typenum
    raise TypeError(f"kernel state h: expected a float32 or float64 array, got {getattr(state, 'dtype', type(state))}")


cdef inline const unsigned char* mask_data(object mask, Py_ssize_t batch, Py_ssize_t timesteps) except? NULL:
    """The mask's rows, or NULL for the empty (0, 0) mask that means every step is processed."""
    cdef cnp.npy_intp* shape = shape_of(mask, b"mask", cnp.NPY_UINT8, 2, False)
    if shape[0] == 0 and shape[1] == 0:
        return NULL
    check_shape(b"mask", shape, 2, batch, timesteps)
    return <const unsigned char*> data(mask)


cdef inline void* sequence_data(object sequence, int typenum, Py_ssize_t batch, Py_ssize_t timesteps,
                                Py_ssize_t width) except? NULL:
    """The sequence output's data, or NULL for the empty (0, 0, 0) array that skips it."""
    cdef cnp.npy_intp* shape = shape_of(sequence, b"sequence", typenum, 3, True)
    if shape[0] == 0 and shape[1] == 0 and shape[2] == 0:
        return NULL
    check_shape(b"sequence", shape, 3, batch, timesteps, width)
    return data(sequence)


# ------------------------------------------------------------------------------------- the cores

cdef inline bint skipped(const unsigned char* mask, Py_ssize_t timesteps, Py_ssize_t b,
                         Py_ssize_t t) noexcept nogil:
    return mask != NULL and not mask[b * timesteps + t]


cdef floating* project(Py_ssize_t rows, Py_ssize_t inputs, Py_ssize_t width, const floating* x,
                       const floating* kernel, const floating* bias) except NULL nogil:
    """The hoisted input projection, ``x @ kernel + bias`` for every step and row: one GEMM.

    Returns (rows, width) scratch that the caller frees; step t's rows start at t * B * width.
    """
    cdef floating* projected = <floating*> alloc_scratch(rows * width * sizeof(floating))
    cdef Py_ssize_t r
    for r in range(rows):
        memcpy(projected + r * width, bias, width * sizeof(floating))
    gemm(rows, width, inputs, x, inputs, kernel, width, 1, projected, width)
    return projected


cdef int simple_rnn_core(Py_ssize_t timesteps, Py_ssize_t batch, Py_ssize_t inputs, Py_ssize_t units,
                         const floating* x, const floating* kernel, const floating* bias,
                         const floating* recurrent_kernel, const floating* packed, const unsigned char* mask,
                         int activation, floating* h, floating* sequence) except -1 nogil:
    cdef size_t row_bytes = units * sizeof(floating)
    cdef Py_ssize_t b, t
    cdef floating* z
    cdef floating* projected = project(timesteps * batch, inputs, units, x, kernel, bias)
    for t in range(timesteps):
        z = projected + t * batch * units
        gemm(batch, units, units, h, units, recurrent_kernel, units, 1, z, units, packed)
        for b in range(batch):
            if not skipped(mask, timesteps, b, t):
                activate(z + b * units, units, activation)
                memcpy(h + b * units, z + b * units, row_bytes)
            if sequence != NULL:
                memcpy(sequence + (b * timesteps + t) * units, h + b * units, row_bytes)
    free(projected)
    return 0


cdef int lstm_core(Py_ssize_t timesteps, Py_ssize_t batch, Py_ssize_t inputs, Py_ssize_t units,
                   Py_ssize_t state, const floating* x, const floating* kernel, const floating* bias,
                   const floating* recurrent_kernel, const floating* packed, const floating* projection,
                   const unsigned char* mask, int activation, int recurrent_activation,
                   floating* h, floating* c, floating* sequence) except -1 nogil:
    cdef Py_ssize_t width = 4 * units, b, t, j
    cdef floating* z
    cdef floating* z_b
    cdef floating* c_b
    cdef floating* projected = project(timesteps * batch, inputs, width, x, kernel, bias)
    cdef floating* out = NULL   # o * act(c) @ projection, when there is one
    if projection != NULL:
        out = <floating*> alloc_scratch(batch * state * sizeof(floating))
    for t in range(timesteps):
        z = projected + t * batch * width
        gemm(batch, width, state, h, state, recurrent_kernel, width, 1, z, width, packed)
        for b in range(batch):
            if skipped(mask, timesteps, b, t):
                continue
            z_b, c_b = z + b * width, c + b * units
            activate(z_b, 2 * units, recurrent_activation)             # i, f
            activate(z_b + 2 * units, units, activation)               # candidate
            activate(z_b + 3 * units, units, recurrent_activation)     # o
            for j in range(units):
                c_b[j] = z_b[units + j] * c_b[j] + z_b[j] * z_b[2 * units + j]
                z_b[2 * units + j] = c_b[j]    # the candidate slot now holds act(c_t)
            activate(z_b + 2 * units, units, activation)
            for j in range(units):
                z_b[2 * units + j] *= z_b[3 * units + j]                # o * act(c_t)
            if projection == NULL:
                memcpy(h + b * state, z_b + 2 * units, units * sizeof(floating))
        if projection != NULL:
            gemm(batch, state, units, z + 2 * units, width, projection, state, 0, out, state)
            for b in range(batch):
                if not skipped(mask, timesteps, b, t):
                    memcpy(h + b * state, out + b * state, state * sizeof(floating))
        if sequence != NULL:
            for b in range(batch):
                memcpy(sequence + (b * timesteps + t) * state, h + b * state, state * sizeof(floating))
    free(out)
    free(projected)
    return 0


cdef int gru_core(Py_ssize_t timesteps, Py_ssize_t batch, Py_ssize_t inputs, Py_ssize_t units,
                  const floating* x, const floating* kernel, const floating* input_bias,
                  const floating* recurrent_kernel, const floating* packed, const floating* recurrent_bias,
                  const unsigned char* mask, int activation, int recurrent_activation, bint reset_after,
                  floating* h, floating* sequence) except -1 nogil:
    cdef Py_ssize_t width = 3 * units, b, t, j
    cdef floating* z
    cdef floating* z_b
    cdef floating* g_b
    cdef floating* h_b
    cdef floating* projected = project(timesteps * batch, inputs, width, x, kernel, input_bias)
    # g: the recurrent side of the gates (reset_after), or r * h (before).
    cdef floating* g = <floating*> alloc_scratch(batch * width * sizeof(floating))
    for t in range(timesteps):
        z = projected + t * batch * width
        if reset_after:
            for b in range(batch):
                memcpy(g + b * width, recurrent_bias, width * sizeof(floating))
            gemm(batch, width, units, h, units, recurrent_kernel, width, 1, g, width, packed)
            for b in range(batch):
                z_b, g_b = z + b * width, g + b * width
                for j in range(2 * units):
                    z_b[j] += g_b[j]
                activate(z_b, 2 * units, recurrent_activation)          # z, r
                for j in range(units):
                    z_b[2 * units + j] += z_b[units + j] * g_b[2 * units + j]
        else:
            gemm(batch, 2 * units, units, h, units, recurrent_kernel, width, 1, z, width)
            for b in range(batch):
                z_b, g_b, h_b = z + b * width, g + b * units, h + b * units
                activate(z_b, 2 * units, recurrent_activation)          # z, r
                for j in range(units):
                    g_b[j] = z_b[units + j] * h_b[j]                   # r * h_{t-1}
            gemm(batch, units, units, g, units, recurrent_kernel + 2 * units, width, 1, z + 2 * units, width)
        for b in range(batch):
            z_b, h_b = z + b * width, h + b * units
            if not skipped(mask, timesteps, b, t):
                activate(z_b + 2 * units, units, activation)
                for j in range(units):
                    h_b[j] = z_b[j] * h_b[j] + (1 - z_b[j]) * z_b[2 * units + j]
            if sequence != NULL:
                memcpy(sequence + (b * timesteps + t) * units, h_b, units * sizeof(floating))
    free(g)
    free(projected)
    return 0


# ------------------------------------------------------------------------------- the entry points
# An entry point checks its arguments into a Call (pointers and sizes), then runs it without the
# GIL. A Step keeps a Call for one timestep, so that a stream step checks only its new input.

cdef enum Cell:
    SIMPLE_RNN_CELL, LSTM_CELL, GRU_CELL

cdef struct Call:
    Cell cell
    int typenum
    Py_ssize_t timesteps, batch, inputs, units, state
    void* x
    void* kernel
    void* bias
    void* recurrent_kernel
    void* packed                # the recurrent kernel already packed (a Step's), or NULL
    void* extra                 # LSTM: projection or NULL; GRU: recurrent bias
    const unsigned char* mask
    int activation, recurrent_activation
    bint reset_after
    void* h
    void* c
    void* sequence


cdef int run_as(const Call* k, const floating* precision) except -1 nogil:
    """Run `k` with its arrays read as `floating` (`precision` is only a type tag, NULL)."""
    if k.cell == SIMPLE_RNN_CELL:
        simple_rnn_core(k.timesteps, k.batch, k.inputs, k.units, <floating*> k.x, <floating*> k.kernel,
                        <floating*> k.bias, <floating*> k.recurrent_kernel, <floating*> k.packed, k.mask,
                        k.activation, <floating*> k.h, <floating*> k.sequence)
    elif k.cell == LSTM_CELL:
        lstm_core(k.timesteps, k.batch, k.inputs, k.units, k.state, <floating*> k.x, <floating*> k.kernel,
                  <floating*> k.bias, <floating*> k.recurrent_kernel, <floating*> k.packed, <floating*> k.extra,
                  k.mask, k.activation, k.recurrent_activation, <floating*> k.h, <floating*> k.c,
                  <floating*> k.sequence)
    else:
        gru_core(k.timesteps, k.batch, k.inputs, k.units, <floating*> k.x, <floating*> k.kernel,
                 <floating*> k.bias, <floating*> k.recurrent_kernel, <floating*> k.packed, <floating*> k.extra,
                 k.mask, k.activation, k.recurrent_activation, k.reset_after, <floating*> k.h,
                 <floating*> k.sequence)
    return 0


cdef void* pack_recurrent_kernel(const Call* k, Py_ssize_t timesteps) except? NULL nogil:
    """`k`'s recurrent kernel (state, G * units) packed in small_gemm.h's column panels for a run of
    `timesteps` steps (the caller frees it), or NULL where packing does not pay: one step (the
    copy would cost as much), a product large enough for BLAS, a GRU resetting before its product
    (two unpacked parts), or fewer than 4 rows (only lone rows read it) with a kernel under 16 KB,
    which they read from L1 in place as fast (packed, a 1x20x16x32 GRU ran 8% slower; a
    1x100x32x64 LSTM, 64 KB, 1.16x faster)."""
    cdef Py_ssize_t gates = 0
    if k.cell == SIMPLE_RNN_CELL:
        gates = 1
    elif k.cell == LSTM_CELL:
        gates = 4
    elif k.reset_after:
        gates = 3
    cdef Py_ssize_t n = gates * k.units
    cdef size_t size = sizeof(float) if k.typenum == cnp.NPY_FLOAT32 else sizeof(double)
    if (gates == 0 or timesteps < 2 or k.batch * n * k.state >= SMALL_GEMM_PACKED
            or (k.batch < 4 and n * k.state * size < 16384)):
        return NULL
    cdef void* packed = alloc_scratch(n * k.state * size)
    if k.typenum == cnp.NPY_FLOAT32:
        fr_pack_panels_f32(n, k.state, <const float*> k.recurrent_kernel, n, <float*> packed)
    else:
        fr_pack_panels_f64(n, k.state, <const double*> k.recurrent_kernel, n, <double*> packed)
    return packed


cdef int run(Call* k) except -1 nogil:
    """Run `k`, its recurrent kernel packed for this call unless it comes packed (a Step's)."""
    cdef void* packed = NULL
    if k.packed == NULL:
        packed = k.packed = pack_recurrent_kernel(k, k.timesteps)
    try:
        if k.typenum == cnp.NPY_FLOAT32:
            run_as(k, <const float*> NULL)
        else:
            run_as(k, <const double*> NULL)
    finally:
        if packed != NULL:
            free(packed)
            k.packed = NULL
    return 0


cdef int check_inputs(Call* k, object x, object kernel, object bias, object recurrent_kernel,
                      int gates) except -1:
    """Fill the sizes and input pointers of `k` from x (T, B, I) and the weights (k.units and
    k.state set, k.typenum too)."""
    cdef cnp.npy_intp* xs = shape_of(x, b"x", k.typenum, 3, False)
    k.timesteps, k.batch, k.inputs = xs[0], xs[1], xs[2]
    check_shape(b"kernel", shape_of(kernel, b"kernel", k.typenum, 2, False), 2, k.inputs, gates * k.units)
    check_shape(b"bias", shape_of(bias, b"bias", k.typenum, 1, False), 1, gates * k.units)
    check_shape(b"recurrent_kernel", shape_of(recurrent_kernel, b"recurrent_kernel", k.typenum, 2, False), 2,
                k.state, gates * k.units)
    k.x, k.kernel, k.bias, k.recurrent_kernel = data(x), data(kernel), data(bias), data(recurrent_kernel)
    k.packed = NULL
    return 0


cdef int check_simple_rnn(Call* k, x, kernel, bias, recurrent_kernel, mask, int activation, h,
                          sequence) except -1:
    k.cell, k.typenum = SIMPLE_RNN_CELL, typenum_of(h)
    k.units = k.state = shape_of(h, b"h", k.typenum, 2, True)[1]
    check_inputs(k, x, kernel, bias, recurrent_kernel, 1)
    check_shape(b"h", cnp.PyArray_DIMS(<cnp.ndarray> h), 2, k.batch, k.units)
    k.mask = mask_data(mask, k.batch, k.timesteps)
    k.sequence = sequence_data(sequence, k.typenum, k.batch, k.timesteps, k.units)
    k.activation, k.h, k.c, k.extra = activation, data(h), NULL, NULL
    return 0


cdef int check_lstm(Call* k, x, kernel, bias, recurrent_kernel, projection, mask, int activation,
                    int recurrent_activation, h, c, sequence) except -1:
    k.cell, k.typenum = LSTM_CELL, typenum_of(h)
    k.units = shape_of(c, b"c", k.typenum, 2, True)[1]
    k.state = shape_of(h, b"h", k.typenum, 2, True)[1]
    check_inputs(k, x, kernel, bias, recurrent_kernel, 4)
    check_shape(b"c", cnp.PyArray_DIMS(<cnp.ndarray> c), 2, k.batch, k.units)
    check_shape(b"h", cnp.PyArray_DIMS(<cnp.ndarray> h), 2, k.batch, k.state)
    cdef cnp.npy_intp* ps = shape_of(projection, b"projection", k.typenum, 2, False)
    if ps[0] != 0 or ps[1] != 0:
        check_shape(b"projection", ps, 2, k.units, k.state)
        k.extra = data(projection)
    elif k.state != k.units:
        raise ValueError(f"kernel argument h: expected shape {(k.batch, k.units)} without a projection, "
                         f"got {(k.batch, k.state)}")
    else:
        k.extra = NULL
    k.mask = mask_data(mask, k.batch, k.timesteps)
    k.sequence = sequence_data(sequence, k.typenum, k.batch, k.timesteps, k.state)
    k.activation, k.recurrent_activation, k.h, k.c = activation, recurrent_activation, data(h), data(c)
    return 0


cdef int check_gru(Call* k, x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, int activation,
                   int recurrent_activation, bint reset_after, h, sequence) except -1:
    k.cell, k.typenum = GRU_CELL, typenum_of(h)
    k.units = k.state = shape_of(h, b"h", k.typenum, 2, True)[1]
    check_inputs(k, x, kernel, input_bias, recurrent_kernel, 3)
    check_shape(b"h", cnp.PyArray_DIMS(<cnp.ndarray> h), 2, k.batch, k.units)
    check_shape(b"recurrent_bias", shape_of(recurrent_bias, b"recurrent_bias", k.typenum, 1, False), 1,
                3 * k.units)
    k.extra = data(recurrent_bias)
    k.mask = mask_data(mask, k.batch, k.timesteps)
    k.sequence = sequence_data(sequence, k.typenum, k.batch, k.timesteps, k.units)
    k.activation, k.recurrent_activation, k.reset_after = activation, recurrent_activation, reset_after
    k.h, k.c = data(h), NULL
    return 0


def simple_rnn(x,                   # IN  (T, B, I) time-major inputs
               kernel,              # IN  (I, U)
               bias,                # IN  (U,), zeros without a bias
               recurrent_kernel,    # IN  (U, U)
               mask,                # IN  (B, T) uint8, or (0, 0) for no mask
               int activation,
               h,                   # IN/OUT (B, U) initial -> final state
               sequence):           # OUT (B, T, U), or (0, 0, 0) to skip
    """SimpleRNN: ``h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``, in place.

    See fastrnn/reference.py for the contract; this is its compiled twin. Every array is
    float32, or every one float64 (the mask is uint8), C-contiguous.
    """
    cdef Call k
    check_simple_rnn(&k, x, kernel, bias, recurrent_kernel, mask, activation, h, sequence)
    with nogil:
        run(&k)


def lstm(x,                         # IN  (T, B, I) time-major inputs
         kernel,                    # IN  (I, 4U)
         bias,                      # IN  (4U,), zeros without a bias
         recurrent_kernel,          # IN  (P, 4U), gates i, f, c, o
         projection,                # IN  (U, P), or (0, 0): P = U
         mask,                      # IN  (B, T) uint8, or (0, 0) for no mask
         int activation,
         int recurrent_activation,
         h,                         # IN/OUT (B, P)
         c,                         # IN/OUT (B, U)
         sequence):                 # OUT (B, T, P), or (0, 0, 0) to skip
    """LSTM, gates fused: one product with the whole (P, 4U) recurrent kernel per step.

    ``z = x_t @ kernel + bias + h_{t-1} @ recurrent_kernel``;
    ``i, f, o = rec_act(z_i), rec_act(z_f), rec_act(z_o)``;
    ``c_t = f * c_{t-1} + i * act(z_c)``; ``h_t = o * act(c_t)``, then ``h_t @ projection``
    when there is one (PyTorch's proj_size; P is its size).
    """
    cdef Call k
    check_lstm(&k, x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c,
               sequence)
    with nogil:
        run(&k)


def gru(x,                          # IN  (T, B, I) time-major inputs
        kernel,                     # IN  (I, 3U)
        input_bias,                 # IN  (3U,), zeros without a bias
        recurrent_kernel,           # IN  (U, 3U), gates z, r, h
        recurrent_bias,             # IN  (3U,), zeros unless reset_after
        mask,                       # IN  (B, T) uint8, or (0, 0) for no mask
        int activation,
        int recurrent_activation,
        bint reset_after,
        h,                          # IN/OUT (B, U)
        sequence):                  # OUT (B, T, U), or (0, 0, 0) to skip
    """GRU in both Keras formulations, with ``x = x_t @ kernel + input_bias``.

    ``reset_after`` (Keras 3 and PyTorch): one product with the whole recurrent kernel per step,
    ``g = h_{t-1} @ recurrent_kernel + recurrent_bias``, ``z, r = rec_act(x_z + g_z), rec_act(x_r + g_r)``,
    ``hh = act(x_h + r * g_h)``. Otherwise the reset gate acts before the candidate's product:
    ``hh = act(x_h + (r * h_{t-1}) @ recurrent_kernel[:, 2U:])``. Both end with
    ``h_t = z * h_{t-1} + (1 - z) * hh``.
    """
    cdef Call k
    check_gru(&k, x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, activation,
              recurrent_activation, reset_after, h, sequence)
    with nogil:
        run(&k)


cdef class Step:
    """One timestep of a kernel with everything but the input bound: the embedded hot path.

    ``Step(function, arguments)`` takes one of this module's kernels and the arguments it takes
    after ``x``, with the empty mask and sequence; they are checked once, and kept alive.
    ``step(x_t)`` for ``x_t`` of shape (batch, input_dim) advances the bound states in place and
    returns a copy of h, the step's output. Weights and states must not be replaced afterwards
    (fastrnn/streaming.py binds a new Step when they are).
    """
    cdef Call call
    cdef tuple arguments
    cdef object h

    def __init__(self, function, tuple arguments):
        cdef Py_ssize_t n = len(arguments)
        free(self.call.packed)
        self.call.packed = NULL
        # A stand-in input of one step: the kernel's own checks then bind everything else.
        if function is simple_rnn and n == 7:
            kernel, bias, recurrent_kernel, mask, activation, h, sequence = arguments
            x = np.zeros((1, len(h), len(kernel)), h.dtype)
            check_simple_rnn(&self.call, x, kernel, bias, recurrent_kernel, mask, activation, h, sequence)
        elif function is lstm and n == 10:
            kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c, sequence = arguments
            x = np.zeros((1, len(h), len(kernel)), h.dtype)
            check_lstm(&self.call, x, kernel, bias, recurrent_kernel, projection, mask, activation,
                       recurrent_activation, h, c, sequence)
        elif function is gru and n == 10:
            kernel, bias, recurrent_kernel, recurrent_bias, mask, activation, recurrent_activation, reset_after, h, \
                sequence = arguments
            x = np.zeros((1, len(h), len(kernel)), h.dtype)
            check_gru(&self.call, x, kernel, bias, recurrent_kernel, recurrent_bias, mask, activation,
                      recurrent_activation, reset_after, h, sequence)
        else:
            raise TypeError(f"Step binds one of fastrnn._kernels' kernels and its arguments after x, "
                            f"got {function!r} with {n}")
        if self.call.mask != NULL or self.call.sequence != NULL:
            raise ValueError("Step binds the empty mask and sequence: one step needs neither")
        self.arguments, self.h = arguments, h
        # A one-step call never packs the recurrent kernel; a stream runs many steps, so it is
        # packed here once, on the terms of a call of many.
        self.call.packed = pack_recurrent_kernel(&self.call, 2)

    def __dealloc__(self):
        free(self.call.packed)

    def __call__(self, x_t):
        """Advance the bound states by `x_t` (batch, input_dim); return a copy of h."""
        cdef cnp.npy_intp* shape = shape_of(x_t, b"x_t", self.call.typenum, 2, False)
        check_shape(b"x_t", shape, 2, self.call.batch, self.call.inputs)
        self.call.x = data(x_t)
        with nogil:
            run(&self.call)
        return cnp.PyArray_NewCopy(<cnp.ndarray> self.h, cnp.NPY_CORDER)


def activation(values, int activation):     # IN/OUT (n,) float32 or float64
    """Apply the activation with code `activation` to `values` in place, as the kernels do.

    Exposed so that tests can hold the compiled activations to their accuracy bounds.
    """
    cdef int typenum = typenum_of(values)
    cdef Py_ssize_t n = shape_of(values, b"values", typenum, 1, True)[0]
    cdef void* p = data(values)
    if typenum == cnp.NPY_FLOAT32:
        with nogil:
            activate(<float*> p, n, activation)
    else:
        with nogil:
            activate(<double*> p, n, activation)
