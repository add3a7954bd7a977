# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled recurrences of fastrnn: one function per cell, for float32 and float64.

Design:
- A kernel only computes. The layer (fastrnn/recurrent.py) validates, casts, reverses time for
  ``go_backwards`` (a view of its input) and allocates every output. A kernel reads its inputs,
  writes preallocated outputs and returns nothing. The array contract is the one documented in
  fastrnn/reference.py, the specification; fastrnn/_numba.py mirrors the cores.
- One source for both precisions: the ``floating`` fused type, with the float or double libm
  function chosen at compile time (``if floating is float``), never a silent promotion.
- Hoisted input projection: ``x @ kernel + bias`` for all gates and a chunk of timesteps in one
  GEMM, just before those steps, so that it is still in cache when they read it. It reads the
  caller's x in place where a chunk's rows are a matrix to GEMM (one row, one step or one
  sequence at a time, or a time-major layout), else a time-major copy of the chunk's rows made
  just before: never a transposed copy of the whole input (a memory pass and an allocation at
  every call).
- Steps: each step is one matrix product of the whole batch's states with the whole
  recurrent kernel (all gates fused), ``Z = inputs[t] + H @ W``: csrc/small_gemm.h below a
  measured size (a BLAS call costs more than a small product; the kernel packed once per call),
  else the BLAS that SciPy ships (``scipy.linalg.cython_blas``). The gates are then elementwise,
  row by row; a masked row keeps its state.
- Threads: a call with large enough steps splits every step's units among the threads of a
  team (csrc/team.h), which meet after each step; see "the team" below. fastrnn/parallel.py
  splits large batches by rows instead, and then each call runs alone.
- The GIL is released for the whole recurrence, so calls from several threads run in parallel.
  Nothing is shared between running calls but the team, which a call finding it busy does
  without: scratch memory is private to a call until it returns, then kept for later calls
  (csrc/scratch.h).
"""
cimport numpy as cnp
import numpy as np
from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm
from libc.limits cimport INT_MAX
from libc.math cimport erf, erff, exp, expf, expm1, expm1f, log1p, log1pf, tanh, tanhf
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

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
                           const float* b, Py_ssize_t ldb, const float* packed, float beta,
                           const float* bias, float* c, Py_ssize_t ldc) noexcept nogil
    void fr_small_gemm_f64(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const double* a, Py_ssize_t lda,
                           const double* b, Py_ssize_t ldb, const double* packed, double beta,
                           const double* bias, double* c, Py_ssize_t ldc) noexcept nogil
    int fr_gemm_vector_bits
    Py_ssize_t fr_gemm_part_bytes
    int fr_gemm_bits() noexcept nogil
    void fr_pack_panels_f32(Py_ssize_t n, Py_ssize_t k, const float* b, Py_ssize_t ldb, float* packed) noexcept nogil
    void fr_pack_panels_f64(Py_ssize_t n, Py_ssize_t k, const double* b, Py_ssize_t ldb,
                            double* packed) noexcept nogil
    enum: FR_PANEL_BYTES

# Below this many multiply-adds a product runs in small_gemm.h: a BLAS call costs more than that
# (the products of a whole call, see "routes").
# Measured side by side on whole recurrences: unpacked, the two were even at 2**22 (the input
# projection stays in BLAS above 2**25: 0.90-0.96x in small_gemm.h). A recurrent kernel packed
# once per call (pack_recurrent_kernel) runs there up to 2**27, faster than a one-thread BLAS, which packs
# it again at every step (29% of an LSTM 32x100x256x512 in BLAS): 1.43-1.44x at 2**25
# (SimpleRNN 32x100x256x512, LSTM 32x100x256x512), 1.06-1.40x between 2**25 and 2**27,
# 0.95-1.10x between 2**27 and 2**28 (measured with the AVX2 products; on the AVX-512 machine
# the AVX2 ones ran 0.64-0.70x there).
cdef Py_ssize_t SMALL_GEMM = 1 << 25
cdef Py_ssize_t SMALL_GEMM_PACKED = 1 << 27
# The float32 AVX-512 products, reading B in parts that stay in L2, outrun a one-thread BLAS on
# larger products too, as long as the packed copy takes at most PACKED_MAX_BYTES. Side by side
# against the bound above, one thread: LSTM 128x50x256x512 (recurrent product 2**27) 1.34x, GRU
# 256x20x256x512 1.21x, LSTM 512x10x256x512 (2**29) 1.12x; two threads (each step's slices, the
# projection's chunks): LSTM 64x100x256x512 1.04-1.08x, 128x50x256x512 1.06x, 512x10x256x512
# 1.10x. Float64 gained nothing (0.98x) and keeps the bound above.
cdef Py_ssize_t SMALL_GEMM_PACKED_AVX512 = 1 << 30
cdef Py_ssize_t PACKED_MAX_BYTES = 1 << 26

# Intel's AMX tiles (csrc/amx_gemm.h) run a call's packed float32 products where they are turned
# on (`configure(amx=True)`: fastrnn does where FASTRNN_AMX=1) and the CPU has them (and the
# AVX-512 products, which every such CPU has, are not turned off by `configure`), on calls of at
# least AMX_MIN_ROWS rows, AMX_MIN_COLUMNS columns (gates times units) and
# AMX_MIN_WORK rows times steps. Measured product by product against small_gemm.h's AVX-512
# kernel, one quiet vCPU: 1.07-1.85x from 16 rows and 128 columns (16x128x128 1.07-1.13x,
# 16x512x64 1.40x, 32x512x128 1.85x, 48x512x128 1.65x, 128x256x128 1.41x, 64x1024x512 1.42x,
# 512x192x64 1.30x); 64 columns 0.81x.
# Kernels are split into their parts at every call, about 1 ns per weight where packing them for
# small_gemm.h takes 0.1. Off by default: on this 2-vCPU VM the host's other work slowed one
# core's tiles 2-3 times for minutes at a time (its FMAs 1.3 times), and whole calls on two
# threads, which wait for the slower, ran 0.85 times as fast with the tiles (geometric mean of
# 24 large rows, interleaved; 0.55-1.04); on one quiet core an LSTM 64x100x256x512 ran 1.5 times
# as fast.
cdef extern from "amx_gemm.h":
    int fr_amx_cpu, fr_amx_ready
    void fr_amx_init() noexcept nogil
    int fr_amx_request() noexcept nogil
    Py_ssize_t fr_amx_packed_bytes(Py_ssize_t n, Py_ssize_t k) noexcept nogil
    bint fr_all_splittable_f32(Py_ssize_t rows, Py_ssize_t columns, const float* b, Py_ssize_t ldb) noexcept nogil
    void fr_amx_pack_f32(Py_ssize_t n, Py_ssize_t k, const float* b, Py_ssize_t ldb, void* packed) noexcept nogil
    void fr_amx_gemm_f32(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, const float* a, Py_ssize_t lda,
                         const float* b, Py_ssize_t ldb, const void* packed, float beta, const float* bias,
                         float* c, Py_ssize_t ldc) noexcept nogil

fr_amx_init()
cdef bint amx_enabled = False       # configure(amx=...)
cdef Py_ssize_t AMX_MIN_ROWS = 16
cdef Py_ssize_t AMX_MIN_COLUMNS = 128
cdef Py_ssize_t AMX_MIN_WORK = 1024
cdef Py_ssize_t amx_calls = 0       # calls planned with their products in AMX tiles, for the tests


cdef inline bint runs_packed(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, size_t size) noexcept nogil:
    """Whether an (m, k) by (k, n) product of `size`-byte elements, B packed, runs in
    small_gemm.h rather than BLAS."""
    return m * n * k < SMALL_GEMM_PACKED or (
        size == 4 and m * n * k < SMALL_GEMM_PACKED_AVX512 and n * k * 4 <= PACKED_MAX_BYTES
        and fr_gemm_bits() == 512)

# The input projection runs a chunk of steps at a time, just before they are needed, so that its
# output is read from cache: enough steps for PROJECTED_ELEMENTS values and PROJECTED_ROWS rows
# (fewer rows, and BLAS's copy of the kernel at each chunk costs more than it saves), in BLAS from
# SMALL_PROJECTION multiply-adds. Measured on one thread against a projection of every step at
# once: LSTM 512x20x64x64 1.08-1.15x, 64x100x256x512 1.11x, GRU 512x20x64x64 1.10x, the other
# shapes 0.97-1.05x; in small_gemm.h up to 2**25, a chunk of one step ran 0.70x (LSTM 128x50x128x256).
# A kernel of at most PROJECTED_ELEMENTS values is cheap to copy, and its chunks stay within that
# many values (half of L2 in float32), however few rows: 512 rows of 384-512 columns (0.8-1 MB) had
# the sequence output evict them. Side by side, sequence output: GRU 32x100x64x128 1.20x on one
# thread, 1.13x on two, LSTM 32x100x64x128 1.14x and 1.28x; last step only and larger kernels
# unchanged (LSTM 64x100x256x512 ran 0.90x with chunks of 128 rows).
cdef Py_ssize_t PROJECTED_ELEMENTS = 1 << 16
cdef Py_ssize_t PROJECTED_ROWS = 512
cdef Py_ssize_t SMALL_PROJECTION = 1 << 22

# SciPy's OpenBLAS runs a product on several threads, whose workers then spin for a while
# waiting for the next one: inside a recurrence they take the core that the steps between
# products run on (measured: an LSTM 256x50x128x256 ran 4x slower). fastrnn splits a batch across
# threads itself (fastrnn/parallel.py), so the kernels run each BLAS product on one thread, set
# around it (csrc/blas_threads.h, which also keeps that setting safe across fork()).
cdef extern from "blas_threads.h":
    ctypedef int (*fr_set_threads_function)(int) noexcept nogil
    fr_set_threads_function fr_blas_set_threads
    void fr_blas_threads_init() noexcept nogil
    void fr_blas_enter() noexcept nogil
    void fr_blas_leave() noexcept nogil

fr_blas_threads_init()


def use_blas_thread_control(size_t set_threads_address):
    """Run BLAS calls on one thread, set per call with the C function at `set_threads_address`
    (OpenBLAS's ``openblas_set_num_threads_local``); 0 leaves the BLAS's own setting."""
    global fr_blas_set_threads
    fr_blas_set_threads = <fr_set_threads_function> set_threads_address


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
                      bint small, const floating* packed=NULL, const floating* bias=NULL,
                      bint amx=False) noexcept nogil:
    """Row-major ``C[m, n] = A[m, k] @ B[k, n] + beta * C``, beta 0 or 1 (small_gemm.h takes no other),
    with leading dimensions lda, ldb, ldc; with `bias` (n values), ``A @ B + bias`` in every row
    (beta unused). small_gemm.h adds the bias as it stores C: copied into C first, it took 6% of an
    LSTM 256x50x128x256 on one thread.

    Runs in small_gemm.h where `small` (the caller's route, see "routes" below), reading B from
    `packed` when given (see `packs`), or in AMX tiles where `amx` (float32, `packed` in their
    layout: see `uses_amx`); else in BLAS, which is column-major, where a row-major
    matrix reads as its transpose: so it computes ``C^T = B^T @ A^T``.
    """
    cdef char no = b"N"
    cdef int m_ = <int> m, n_ = <int> n, k_ = <int> k, lda_ = <int> lda, ldb_ = <int> ldb, ldc_ = <int> ldc
    cdef floating one = 1
    cdef Py_ssize_t r
    if small:
        if floating is float and amx and packed != NULL:
            fr_amx_gemm_f32(m, n, k, a, lda, b, ldb, packed, beta, bias, c, ldc)
        elif floating is float:
            fr_small_gemm_f32(m, n, k, a, lda, b, ldb, packed, beta, bias, c, ldc)
        else:
            fr_small_gemm_f64(m, n, k, a, lda, b, ldb, packed, beta, bias, c, ldc)
        return
    if bias != NULL:
        for r in range(m):
            memcpy(c + r * ldc, bias, n * sizeof(floating))
        beta = 1
    fr_blas_enter()
    if floating is float:
        sgemm(&no, &no, &n_, &m_, &k_, &one, <float*> b, &ldb_, <float*> a, &lda_, &beta, c, &ldc_)
    else:
        dgemm(&no, &no, &n_, &m_, &k_, &one, <double*> b, &ldb_, <double*> a, &lda_, &beta, c, &ldc_)
    fr_blas_leave()


cdef inline char* cache_line(void* p) noexcept nogil:
    """The first 64-byte boundary at or after `p` (scratch is allocated 64 bytes longer)."""
    return <char*> p + (64 - <size_t> p % 64) % 64


cdef extern from "scratch.h":
    void fr_scratch_init() noexcept nogil
    void* fr_scratch_take(size_t size) noexcept nogil
    void fr_scratch_give(void* memory) noexcept nogil
    size_t fr_scratch_kept() noexcept nogil

fr_scratch_init()


cdef void* alloc_scratch(size_t nbytes) except NULL nogil:
    """Scratch memory private to one call, so that concurrent calls never share state."""
    cdef void* p = malloc(nbytes if nbytes else 1)
    if p == NULL:
        with gil:
            raise MemoryError(f"cannot allocate {nbytes} bytes of scratch")
    return p


cdef void* take_scratch(size_t nbytes) except NULL nogil:
    """Like alloc_scratch, for a plan's large block: one kept from an earlier call where one fits
    (csrc/scratch.h), so that its pages are not mapped, faulted in and unmapped at every call.
    Give it back with fr_scratch_give."""
    cdef void* p = fr_scratch_take(nbytes)
    if p == NULL:
        with gil:
            raise MemoryError(f"cannot allocate {nbytes} bytes of scratch")
    return p


# ------------------------------------------------------------------------------- the array contract
# The entry points take ndarrays and check them with NumPy's C API (type, rank, contiguity, shapes):
# a few integer comparisons, where typed memoryviews cost ~0.25 us each to acquire, which was
# most of a one-step call. The cores below them see only pointers and sizes.

cdef inline cnp.npy_intp* shape_of(object array, const char* name, int typenum, int ndim,
                                 bint writable, bint contiguous=True) except NULL:
    """The dimensions of `array` after checking its type, rank and, unless told otherwise, C order,
    and for outputs, writability."""
    if not cnp.PyArray_Check(array):
        raise TypeError(f"kernel argument {name.decode()}: expected a NumPy array, got {type(array).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray> array
    # (A byte-swapped array has the type number of its native twin: its values would be misread.)
    if (cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_ISNOTSWAPPED(a) or cnp.PyArray_NDIM(a) != ndim
            or (contiguous and not cnp.PyArray_IS_C_CONTIGUOUS(a))
            or (writable and not cnp.PyArray_ISWRITEABLE(a))):
        raise ValueError(
            f"kernel argument {name.decode()}: expected a {'C-contiguous ' if contiguous else ''}"
            f"{'writable ' if writable else ''}{ndim}-d {cnp.PyArray_DescrFromType(typenum)} array"
            f"{'' if cnp.PyArray_ISNOTSWAPPED(a) else ' in native byte order'}, got a {a.ndim}-d "
            f"{a.dtype if cnp.PyArray_ISNOTSWAPPED(a) else a.dtype.str} array"
            f"{'' if a.flags.c_contiguous or not contiguous else ' (not C-contiguous)'}"
            f"{'' if a.flags.writeable or not writable else ' (read-only)'}")
    return cnp.PyArray_DIMS(a)


cdef inline void* data(object array) noexcept:
    return cnp.PyArray_DATA(<cnp.ndarray> array)


cdef int check_shape(const char* name, cnp.npy_intp* shape, int ndim,
                     Py_ssize_t d0, Py_ssize_t d1=0, Py_ssize_t d2=0) except -1:
    """Raise ValueError unless the first `ndim` of `shape` are (d0, d1, d2)."""
    if shape[0] != d0 or (ndim > 1 and shape[1] != d1) or (ndim > 2 and shape[2] != d2):
        # Apart: its generator expressions would allocate a closure at every call of this one.
        raise_shape_error(name, shape, ndim, (d0, d1, d2)[:ndim])
    return 0


cdef int raise_shape_error(const char* name, cnp.npy_intp* shape, int ndim, tuple expected) except -1:
    """Raise check_shape's ValueError: argument `name` has `shape` (its first `ndim`), not `expected`."""
    raise ValueError(f"kernel argument {name.decode()}: expected shape {expected}, "
                     f"got {tuple(shape[j] for j in range(ndim))}")


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


# ------------------------------------------------------------------------------------- the calls
# An entry point checks its arguments into a Call (pointers and sizes), then runs it without the
# GIL. A Step keeps a Call for one timestep, so that a stream step checks only its new input.

cdef enum Cell:
    SIMPLE_RNN_CELL, LSTM_CELL, GRU_CELL

cdef struct Call:
    Cell cell
    int typenum
    Py_ssize_t timesteps, batch, inputs, units, state
    Py_ssize_t whole_batch      # the batch before run_parts split it into row parts: see "routes"
    const char* x               # x[b, t, i] at x + b * x_row + t * x_step + i * x_item (bytes)
    Py_ssize_t x_row, x_step, x_item
    bint x_aligned
    void* kernel
    void* bias
    void* recurrent_kernel
    void* packed                # the recurrent kernel already packed (a Step's, run_parts's), or NULL
    void* packed_kernel         # the kernel already packed (run_parts's), or NULL
    bint amx                    # its packed products run in AMX tiles (`uses_amx`), packed for them
    void* extra                 # LSTM: projection or NULL; GRU: recurrent bias
    const unsigned char* mask
    int activation, recurrent_activation
    bint reset_after
    void* h
    void* c
    void* sequence


cdef inline Py_ssize_t gates_of(const Call* k) noexcept nogil:
    return 1 if k.cell == SIMPLE_RNN_CELL else 4 if k.cell == LSTM_CELL else 3


cdef inline size_t itemsize(const Call* k) noexcept nogil:
    return sizeof(float) if k.typenum == cnp.NPY_FLOAT32 else sizeof(double)


# Routes: which of small_gemm.h and BLAS runs each product of a call is decided on the whole
# call, its rows before run_parts split them into row parts (k.whole_batch) and all its columns
# before any slicing, never on one part or slice, which splits sized by the threads' measured
# speeds change from one call to the next: routed by the part, an LSTM 1x5x512x1024's slices'
# projections went one to BLAS and one to small_gemm.h, which round differently. small_gemm.h's
# values do not depend on a split (each sums its products in order, from 0 in the blocks, from
# the bias or C in the edge columns, which are the last (G * units) % panel columns, a panel 16
# float32 or 8 float64, whatever the split: slices start on cache lines); BLAS's do (OpenBLAS's kernel for products of up to 1M
# multiply-adds rounds as its other does not, and its float64 kernel rounds a block of rows or
# columns otherwise than the whole). So only a call whose products all run in small_gemm.h
# (`all_small`) is split by the threads' speeds; the others are split equally, and give the
# same bits at every call on as many threads.

cdef inline bint runs_small(const Call* k, Py_ssize_t n, Py_ssize_t depth) noexcept nogil:
    """Whether the call's products of (depth, n) weights, read in place, run in small_gemm.h."""
    return k.whole_batch * n * depth < SMALL_GEMM


cdef inline Py_ssize_t routed_steps(const Call* k) noexcept nogil:
    """The steps the call's recurrent products are routed as: a Step's kernel is packed for a
    stream of steps (see `Step`), so its one step rounds as a call of many."""
    return k.timesteps if k.packed == NULL else 2


cdef bint recurrent_in_small(const Call* k, Py_ssize_t timesteps) noexcept nogil:
    """Whether the recurrent products (all gates fused) of `timesteps` steps of the call run in
    small_gemm.h: steps of many up to the bounds of a packed kernel, even where a part does not
    pack it (see `packs`); a lone step's under SMALL_GEMM, as it reads the kernel in place (an
    LSTM 512x1x256x512 ran 0.52x as fast in small_gemm.h as in BLAS)."""
    if timesteps < 2:
        return runs_small(k, gates_of(k) * k.units, k.state)
    return runs_packed(k.whole_batch, gates_of(k) * k.units, k.state, itemsize(k))


cdef bint uses_amx(const Call* k) noexcept nogil:
    """Whether the call's packed products run in AMX tiles (see AMX_MIN_ROWS): float32, many
    rows and steps, and kernels that can be split (csrc/amx_gemm.h). Decided on the whole call,
    as its routes are, and every part packs for them (`packs`, `packs_kernel`): the tiles round
    otherwise than small_gemm.h, and a value must not depend on the part its row is in."""
    cdef Py_ssize_t columns = gates_of(k) * k.units
    return (fr_amx_ready and amx_enabled and fr_gemm_bits() == 512 and k.typenum == cnp.NPY_FLOAT32
            and k.timesteps >= 2 and k.whole_batch >= AMX_MIN_ROWS and columns >= AMX_MIN_COLUMNS
            and k.whole_batch * k.timesteps >= AMX_MIN_WORK
            and fr_all_splittable_f32(k.inputs, columns, <const float*> k.kernel, columns)
            and fr_all_splittable_f32(k.state, columns, <const float*> k.recurrent_kernel, columns))


cdef bint projection_in_small(const Call* k) noexcept nogil:
    """Whether the call's input projection runs in small_gemm.h: its chunks up to the bounds of
    a packed kernel where they are more than one, else under SMALL_PROJECTION."""
    cdef Py_ssize_t columns = gates_of(k) * k.units, chunk = chunk_steps(k, k.whole_batch, columns)
    cdef Py_ssize_t rows = chunk * k.whole_batch
    return ((chunk < k.timesteps and runs_packed(rows, columns, k.inputs, itemsize(k)))
            or rows * columns * k.inputs < SMALL_PROJECTION)


cdef bint all_small(const Call* k) noexcept nogil:
    """Whether every product of the call runs in small_gemm.h (see "routes"): then its slices
    and row parts may be sized by the threads' speeds."""
    if k.cell == LSTM_CELL and k.extra != NULL and not runs_small(k, k.state, k.units):
        return False
    if k.cell == GRU_CELL and not k.reset_after:
        return runs_small(k, 2 * k.units, k.units) and projection_in_small(k)
    return recurrent_in_small(k, routed_steps(k)) and projection_in_small(k)


def part_rows(function, arguments):
    """The fewest rows a row part of a call of `function`, one of this module's kernels, on
    `arguments` should have: AMX_MIN_ROWS where the call's products run in AMX tiles (see
    `uses_amx`: a tile's rows, which a part of fewer pads), else 1."""
    cdef Call call
    check_call(&call, function, tuple(arguments))
    return AMX_MIN_ROWS if call.amx else 1


def splits_by_speed(function, arguments):
    """Whether a call of `function`, one of this module's kernels, on `arguments` may be split
    into row parts sized by the threads' speeds (`part_shares`): where all its products run in
    small_gemm.h (see "routes"), else equal parts give the same bits at every call."""
    cdef Call call
    check_call(&call, function, tuple(arguments))
    return all_small(&call)


cdef bint packs(const Call* k, Py_ssize_t columns, Py_ssize_t timesteps) noexcept nogil:
    """Whether `timesteps` steps of `k` read a recurrent kernel of `columns` columns packed in
    small_gemm.h's panels: not for one step (the copy would cost as much), products in BLAS
    (`recurrent_in_small`), a GRU resetting before its product (two unpacked parts), or fewer
    than 4 rows (only lone rows read it) with a kernel under 16 KB, which they read from L1 in
    place as fast (packed, a 1x20x16x32 GRU ran 8% slower; a 1x100x32x64 LSTM, 64 KB, 1.16x
    faster). A call in AMX tiles packs for them in every part, however few its rows: only
    packed products run there, and a part's rows must not choose (see `uses_amx`)."""
    return not (timesteps < 2 or (k.cell == GRU_CELL and not k.reset_after) or not recurrent_in_small(k, timesteps)
                or (not k.amx and k.batch < 4 and columns * k.state * itemsize(k) < 16384))


cdef inline void pack_panels(Py_ssize_t columns, Py_ssize_t rows, const floating* b, Py_ssize_t ldb,
                             floating* packed) noexcept nogil:
    """The (rows, columns) matrix `b`, its rows `ldb` apart, in small_gemm.h's panels."""
    if floating is float:
        fr_pack_panels_f32(columns, rows, b, ldb, packed)
    else:
        fr_pack_panels_f64(columns, rows, b, ldb, packed)


cdef Py_ssize_t packed_values(const Call* k, Py_ssize_t rows, Py_ssize_t columns) noexcept nogil:
    """Values of `k`'s dtype that a (rows, columns) matrix takes packed by `pack_matrix`."""
    cdef Py_ssize_t size = itemsize(k)
    if k.amx:
        return (fr_amx_packed_bytes(columns, rows) + size - 1) // size
    return rows * columns


cdef void* pack_matrix(const Call* k, const void* matrix, Py_ssize_t rows, Py_ssize_t columns,
                       void* packed) noexcept nogil:
    """The contiguous (rows, columns) `matrix` of `k`'s dtype in small_gemm.h's panels, or for
    AMX tiles where `k.amx`, in `packed` (`packed_values`), which is returned. (The caller counts
    it in `packings`.)"""
    if k.amx:
        fr_amx_pack_f32(columns, rows, <const float*> matrix, columns, packed)
    elif k.typenum == cnp.NPY_FLOAT32:
        pack_panels(columns, rows, <const float*> matrix, columns, <float*> packed)
    else:
        pack_panels(columns, rows, <const double*> matrix, columns, <double*> packed)
    return packed


cdef void* pack_recurrent_kernel(const Call* k) except? NULL nogil:
    """`k`'s recurrent kernel packed for a stream of steps (the caller frees it), or NULL where
    packing does not pay."""
    global packings
    cdef Py_ssize_t n = gates_of(k) * k.units
    if not packs(k, n, 2):
        return NULL
    packings += 1
    return pack_matrix(k, k.recurrent_kernel, k.state, n, alloc_scratch(packed_values(k, k.state, n) * itemsize(k)))


# -------------------------------------------------------------------------------------- the team
# A call runs on several threads (csrc/team.h) when its steps are large enough. Its units are cut
# into slices, one per thread, each slice owning units [start, start + width) of every gate: its
# columns of the kernels (copied side by side, packed when that pays), of the input projection
# and of the states. Each slice is a lane of items, its weights then its part of each step, done
# in rounds (round t + 1 is step t, which reads all of h_{t-1}, so it waits for round t whole):
# a thread claims its own lane's item, then any item of the round that no thread has claimed.
# h is double-buffered (a step reads all of h_{t-1} while its slices write their parts of h_t).
# One thread is the same code with one slice of all the units.

cdef extern from "team.h":
    enum: FR_TEAM_MAX
    ctypedef void (*fr_task)(void* arg, int id, int n) noexcept nogil
    ctypedef struct fr_lane:
        pass
    ctypedef struct fr_queue:
        fr_lane lanes[FR_TEAM_MAX]
    void fr_team_init() noexcept nogil
    int fr_team_acquire(int wanted) noexcept nogil
    int fr_team_try_hold() noexcept nogil
    void fr_team_release() noexcept nogil
    void fr_team_run(fr_task task, void* arg, int n) noexcept nogil
    bint fr_queue_claim(fr_queue* queue, int lane, long long item) noexcept nogil
    void fr_queue_wait(fr_queue* queue, long long count) noexcept nogil
    void fr_queue_done(fr_queue* queue) noexcept nogil
    int64_t fr_now_ns() noexcept nogil

fr_team_init()

# A thread takes a share of a call only when a step gives it this much work: multiply-adds, plus
# ACTIVATION_WORK for each of its gate values (an activation costs ~1 ns, 32 multiply-adds).
# Each step's hand-over costs both threads ~0.15 us, and on this 2-vCPU VM a second thread
# sometimes brings nothing (the host shares one core between them). Measured 1t / 2t in paired
# runs, by work per thread: 4-6K 0.85-0.91x (SimpleRNN 2x200x32x64, 4x2000x16x32); 8-12K
# 1.17-1.67x (LSTM 2x200x16x32 1.33x, 1x100x32x64 1.40x, GRU 1x100x32x64 1.17x, 4x2000x16x32
# 1.29x, SimpleRNN 1x100x64x128 1.67x); above, 1.6-1.8x (LSTM 8x50x32x64 1.64x, 2x100x32x64 1.82x,
# GRU 2x100x64x128 1.73x). With AVX-512 products a step's work takes about half the time, so a
# thread needs twice as much: measured on an Intel Xeon with AVX-512 (2026), 12K per thread
# 0.66-0.97x (LSTM 1x100x32x64), 18K 1.01-1.16x (LSTM 1x100x32x80, GRU 2x100x32x64,
# 1x100x64x96), 25K 1.12-1.59x (LSTM 1x100x32x96, 2x100x32x64).
cdef Py_ssize_t TEAM_MIN_STEP_WORK = 1 << 13
cdef Py_ssize_t ACTIVATION_WORK = 32
cdef int team_size = 1              # fastrnn.set_num_threads
cdef Py_ssize_t team_calls = 0      # calls run on more than one thread, for the tests
cdef Py_ssize_t packings = 0        # kernels packed, for the tests


def configure(threads=None, min_step_work=None, projected_elements=None, projected_rows=None,
              vector_bits=None, part_bytes=None, amx=None):
    """Set the kernels' tuning, each setting that is given, and return all of them as they were.

    `threads` is the most threads a call may run on (fastrnn.set_num_threads sets it). The
    others are measured defaults that tests change to reach every path with small inputs:
    `min_step_work` (TEAM_MIN_STEP_WORK), `projected_elements` and `projected_rows`
    (PROJECTED_ELEMENTS, PROJECTED_ROWS), `vector_bits`, the widest vectors of small_gemm.h's
    products (512, 256 or 128: its AVX-512, AVX2 or 128-bit variant where the CPU has it, as
    machines without the wider ones run them; `product_vector_bits` says which runs), and
    `part_bytes`, how much of B small_gemm.h's products read at a time (parts of its columns),
    and `amx`, whether calls may run their products in AMX tiles where the CPU has them
    (`products_use_amx` says whether they do).
    The settings are the process's, read by calls without a lock: change them while no call runs.
    A bad setting raises before any is changed.
    """
    global team_size, TEAM_MIN_STEP_WORK, PROJECTED_ELEMENTS, PROJECTED_ROWS, fr_gemm_vector_bits
    global fr_gemm_part_bytes, amx_enabled
    previous = {"threads": team_size, "min_step_work": TEAM_MIN_STEP_WORK,
                "projected_elements": PROJECTED_ELEMENTS, "projected_rows": PROJECTED_ROWS,
                "vector_bits": fr_gemm_vector_bits, "part_bytes": fr_gemm_part_bytes, "amx": amx_enabled}
    cdef Py_ssize_t n_threads = team_size, min_work = TEAM_MIN_STEP_WORK, elements = PROJECTED_ELEMENTS
    cdef Py_ssize_t rows = PROJECTED_ROWS, part = fr_gemm_part_bytes
    if vector_bits is not None and vector_bits not in (128, 256, 512):
        raise ValueError(f"vector_bits must be 128, 256 or 512, got {vector_bits!r}")
    if amx is not None and not isinstance(amx, (bool, np.bool_)):
        raise TypeError(f"amx must be True or False, got {amx!r}")
    if part_bytes is not None:
        if not isinstance(part_bytes, (int, np.integer)):
            raise TypeError(f"part_bytes must be an integer, got {part_bytes!r}")
        if not 1 <= part_bytes <= 1 << 62:
            raise ValueError(f"part_bytes must be from 1 to 2**62, got {part_bytes!r}")
        part = part_bytes
    if threads is not None:
        n_threads = max(1, min(threads, FR_TEAM_MAX))
    if min_step_work is not None:
        min_work = min_step_work
    if projected_elements is not None:
        elements = max(1, projected_elements)
    if projected_rows is not None:
        rows = max(1, projected_rows)
    if vector_bits is not None:
        fr_gemm_vector_bits = vector_bits
    team_size, TEAM_MIN_STEP_WORK, PROJECTED_ELEMENTS, PROJECTED_ROWS = n_threads, min_work, elements, rows
    fr_gemm_part_bytes = part
    if amx is not None:
        amx_enabled = amx
        if amx:
            fr_amx_request()    # (asked only by those who want the tiles: see amx_gemm.h)
    return previous


def product_vector_bits():
    """The vector width of small_gemm.h's variant that the products run now, in bits: 512, 256 or
    128 (the widest the CPU has, within configure's `vector_bits`)."""
    return fr_gemm_bits()


def cpu_has_amx():
    """Whether this CPU has AMX tiles for bfloat16 (then `configure(amx=True)` asks the kernel
    for them, and runs float32 products in them once granted)."""
    return bool(fr_amx_cpu)


def products_use_amx():
    """Whether calls with many rows run their float32 products in AMX tiles now: the CPU has
    them, the kernel granted them, and neither `configure`'s `amx` nor its `vector_bits` turns
    them off."""
    return bool(fr_amx_ready and amx_enabled and fr_gemm_bits() == 512)


def calls_in_amx():
    """How many calls (or row parts) have run their products in AMX tiles, for the tests."""
    return amx_calls


def calls_on_several_threads():
    """How many calls have run on more than one thread, for the tests."""
    return team_calls


def kernels_packed():
    """How many kernels and recurrent kernels calls have packed in small_gemm.h's panels, for
    the tests."""
    return packings


def hold_threads():
    """Take the team while fastrnn's own threads run parts of a pass, so that their calls run
    alone; True if taken (then `release_threads`), False if a call holds it now."""
    return bool(fr_team_try_hold())


def release_threads():
    """Give back the team taken by `hold_threads`."""
    fr_team_release()


cdef int threads_for(const Call* k) noexcept nogil:
    """How many threads `k` should run on: one for a single step (a stream's), an LSTM with a
    projection or a GRU resetting before its product (both need all units between two products
    of a step); else up to team_size, each with a slice of at least a cache line of units and
    TEAM_MIN_STEP_WORK of work per step (twice that where the products run in AVX-512)."""
    if (team_size < 2 or k.timesteps < 2 or k.packed != NULL or (k.cell == LSTM_CELL and k.extra != NULL)
            or (k.cell == GRU_CELL and not k.reset_after)):
        return 1
    cdef Py_ssize_t step_work = k.batch * gates_of(k) * k.units * (k.state + ACTIVATION_WORK)
    cdef Py_ssize_t n = min(<Py_ssize_t> team_size, k.units * <Py_ssize_t> itemsize(k) // 64)
    cdef Py_ssize_t min_work = TEAM_MIN_STEP_WORK * (2 if fr_gemm_bits() == 512 else 1)
    while n > 1 and step_work < n * min_work:
        n -= 1
    return <int> max(n, 1)


# Each team thread's speed in the work it did lately (its row parts, or its slices of a call's
# steps), multiply-adds per nanosecond, 0 while unknown: a batch's parts, one per thread
# (fastrnn/parallel.py), and a call's slices are sized by these. This VM's two vCPUs were not
# equally fast from one minute to the next: two equal parts of an LSTM 32x100x64x128 took 4.6
# and 3.4 ms, and the call waited for the slower. Written without a lock (by the team's thread
# id, or by a caller running alone while another holds the team): a race can only mix two
# measured speeds, and a speed only sizes work.
cdef double thread_speed[FR_TEAM_MAX]
cdef int64_t TIMED_NS = 100000      # less work is not timed: too noisy


cdef inline double call_work(const Call* k) noexcept nogil:
    """The multiply-adds of a whole call (input projection and recurrent products)."""
    return <double> k.batch * k.timesteps * gates_of(k) * k.units * (k.inputs + k.state)


cdef inline void note_speed(int id, double work, int64_t elapsed) noexcept nogil:
    """Fold `work` done in `elapsed` ns into thread id's speed (a moving average: work preempted
    by the host moves it a quarter of the way)."""
    if elapsed < TIMED_NS:
        return
    cdef double speed = work / elapsed
    thread_speed[id] = speed if thread_speed[id] == 0 else 0.75 * thread_speed[id] + 0.25 * speed


cdef bint thread_shares(int n, double* shares) noexcept nogil:
    """shares[i], i < n: thread i's share of work split among threads 0 to n - 1, in proportion to
    their speeds, each counted within 2/3 and 3/2 of their mean; false (shares untouched) while
    one is unknown."""
    cdef double total = 0, mean
    cdef int i
    for i in range(n):
        if thread_speed[i] <= 0:
            return False
        total += thread_speed[i]
    mean, total = total / n, 0
    for i in range(n):
        shares[i] = min(max(thread_speed[i], mean * 2 / 3), mean * 1.5)
        total += shares[i]
    for i in range(n):
        shares[i] /= total
    return True


def part_shares(int n):
    """The shares of a batch's rows for the team's threads 0 to n - 1 (the caller first), one part
    each (`run_parts` gives part i to thread i unless it is late): `thread_shares`, or None while
    a thread's speed is unknown."""
    if not 1 <= n <= FR_TEAM_MAX:
        raise ValueError(f"part_shares takes 1 to {FR_TEAM_MAX} threads, got {n}")
    cdef double shares[FR_TEAM_MAX]
    return [shares[i] for i in range(n)] if thread_shares(n, shares) else None


def set_thread_speeds(speeds=None):
    """Set the threads' speeds (the first ones, multiply-adds per ns), or forget them all: for the
    tests (forgotten, the next splits are equal)."""
    memset(thread_speed, 0, sizeof(thread_speed))
    for i, speed in enumerate(speeds or ()):
        thread_speed[i] = speed


def slice_starts(Py_ssize_t units, int n, int itemsize=4):
    """Where each of n slices of `units` units starts, and `units` (see `slice_bounds`): for the
    tests."""
    cdef Py_ssize_t starts[FR_TEAM_MAX + 1]
    slice_bounds(units, n, 64 // itemsize, True, starts)
    return [starts[i] for i in range(n + 1)]


cdef struct Slice:
    Py_ssize_t start, width     # the slice's units, the same in every gate
    void* projected             # (chunk * B, G * width): x_t @ kernel + bias, the slice's columns
    Py_ssize_t chunk            # steps projected at once
    void* kernel                # (I, G * width): the slice's columns (the kernel itself if whole)
    void* bias                  # (G * width,): the same of the bias
    void* recurrent_bias        # GRU: (G * width,): the same of the recurrent bias
    void* recurrent_kernel      # (state, G * width): the same of the recurrent kernel
    void* packed                # the same in small_gemm.h's panels, or NULL
    bint pack                   # packed is to be filled (not a Step's, packed already)
    void* gates                 # GRU: (B, G * width), the recurrent side of the gates or r * h
    void* c                     # LSTM: (B, width), the slice's cell state
    void* packed_kernel         # the kernel in small_gemm.h's panels (see packs_kernel), or NULL
    bint pack_kernel            # packed_kernel is to be filled (not run_parts's, packed already)
    bint by_gate                # packed gate by gate from the layer's kernels, never copied (fill_slice)
    Py_ssize_t x_lda            # GEMM reads a chunk's rows of x in place, this many elements apart
    void* x_copy                # (chunk * B, I): else a chunk's rows of x, copied time-major

cdef struct Plan:
    const Call* k
    void* memory                # the one allocation behind every pointer below
    void* h[2]                  # (B, ldh) each: h_{t-1} and h_t of a step, in turn
    Py_ssize_t ldh              # state rounded up to whole cache lines
    int n                       # slices
    bint small_recurrent        # the call's routes: recurrent_in_small, projection_in_small
    bint small_projection
    fr_queue queue              # lanes of items: each slice's weights, then its part of each step
    Slice slices[FR_TEAM_MAX]


cdef void slice_bounds(Py_ssize_t units, int n, Py_ssize_t align, bint by_speed, Py_ssize_t* starts) noexcept nogil:
    """starts[id]: where slice id of n starts, on a cache line (`align` units; units >= n * align),
    sized by the threads' speeds (`thread_shares`) where `by_speed` (see "routes"), else equal;
    starts[n] = units. Each step waits for its slowest slice: in turns against equal slices, two
    threads, LSTM 64x100x256x512 1.15-1.26x, GRU 64x100x256x512 0.99-1.05x, LSTM 256x50x128x256
    0.99-1.07x, SimpleRNN 64x100x256x512 1.00x."""
    cdef double shares[FR_TEAM_MAX]
    cdef double end = 0
    cdef bint weighted = by_speed and n > 1 and thread_shares(n, shares)
    cdef int id
    starts[0], starts[n] = 0, units
    for id in range(1, n):
        if weighted:
            end += shares[id - 1]
            starts[id] = <Py_ssize_t> (units * end / align + 0.5) * align
        else:
            starts[id] = units * id // n // align * align
        # at least a cache line of units for each slice, every start on a cache line
        starts[id] = min(max(starts[id], starts[id - 1] + align), (units // align - (n - id)) * align)


cdef inline Py_ssize_t take(Py_ssize_t* total, Py_ssize_t count, Py_ssize_t align) noexcept nogil:
    """The offset of a new block of `count` elements in scratch of `total` so far, on a cache line."""
    cdef Py_ssize_t offset = total[0]
    total[0] += (count + align - 1) // align * align
    return offset


cdef inline Py_ssize_t chunk_steps(const Call* k, Py_ssize_t batch, Py_ssize_t columns) noexcept nogil:
    """The steps whose input projection is computed at once, for `batch` rows and `columns`
    columns (see PROJECTED_ELEMENTS)."""
    if k.inputs * columns <= PROJECTED_ELEMENTS:     # a small kernel: BLAS's copy of it is cheap
        return min(k.timesteps, max(1, PROJECTED_ELEMENTS // max(1, batch * columns)))
    return min(k.timesteps, max(PROJECTED_ELEMENTS // max(1, batch * columns),
                                (PROJECTED_ROWS + batch - 1) // max(1, batch)))


cdef inline bint packs_kernel(const Call* k, Py_ssize_t chunk, Py_ssize_t columns) noexcept nogil:
    """Whether the slice's input projection, in chunks of `chunk` steps, reads its kernel packed in
    small_gemm.h's panels: when the call's projection runs there (`projection_in_small`) in more
    than one chunk, or in one as large as SMALL_PROJECTION (a slice or row part of a call whose
    chunks are fewer steps). BLAS copies the kernel
    and the chunk's rows at every call (a fifth of its time on a 128x64 by 64x512 chunk), the
    panels are copied once. Side by side on one thread: LSTM 32x100x64x128 1.06x (two threads
    1.03x), 1024x20x64x64 1.05x, 256x50x128x256 1.03x, GRU 32x100x64x128 1.05x, SimpleRNN
    32x100x64x128 1.03x, 4x2000x16x32 0.99-1.02x. A call in AMX tiles packs it wherever its
    projection runs in small_gemm.h (see `packs`)."""
    return projection_in_small(k) and (k.amx or chunk < k.timesteps
                                       or chunk * k.batch * columns * k.inputs >= SMALL_PROJECTION)


cdef Py_ssize_t x_lda(const Call* k, Py_ssize_t steps) noexcept nogil:
    """The leading dimension at which GEMM reads `steps` steps of x in place, all rows in
    time-major order; 0 where those rows are not aligned, contiguous rows a whole number of
    elements apart in that order (a batch-major chunk of several rows and steps, a reversed
    sequence), which `copy_steps` then copies."""
    cdef Py_ssize_t size = itemsize(k), lda
    if not k.x_aligned or k.x_item != size:
        return 0
    if steps * k.batch == 1:
        return k.inputs
    lda = k.x_step if k.batch == 1 else k.x_row
    if (lda % size or lda < k.inputs * size or lda // size > INT_MAX     # (BLAS takes an int)
            or (steps > 1 and k.batch > 1 and k.x_step != k.batch * lda)):
        return 0
    return lda // size


cdef void copy_steps(const Call* k, Py_ssize_t t, Py_ssize_t steps, char* destination) noexcept nogil:
    """Steps t to t + steps of x, all rows, time-major into the contiguous `destination`."""
    cdef size_t size = itemsize(k), row = k.inputs * size
    cdef Py_ssize_t s, b, i
    cdef const char* source
    for s in range(steps):
        for b in range(k.batch):
            source = k.x + b * k.x_row + (t + s) * k.x_step
            if k.x_item == <Py_ssize_t> size:
                memcpy(destination, source, row)
            else:
                for i in range(k.inputs):
                    memcpy(destination + i * size, source + i * k.x_item, size)
            destination += row


cdef int plan_call(Plan* p, const Call* k, int n) except -1 nogil:
    """Lay out the scratch of `k` cut into `n` slices in one block (p.memory, given back by the
    caller).

    Whatever a slice writes at each step in scratch (its part of the states, its columns of the
    gates) lies on cache lines of its own: a line that two threads write in turn travels between
    their cores (this cost 0.5-0.9 us per step when the caller's h and c were written in place;
    the sequence output still is, once per row and step)."""
    global packings, amx_calls
    cdef size_t size = itemsize(k)
    cdef Py_ssize_t align = 64 // size      # elements per cache line
    cdef Py_ssize_t gates = gates_of(k), columns, id, total = 0
    cdef Py_ssize_t offsets[FR_TEAM_MAX][10]  # each slice's blocks, in Slice's order
    cdef Py_ssize_t starts[FR_TEAM_MAX + 1]    # each slice's first unit
    cdef bint kernel_packed[FR_TEAM_MAX]       # packs_kernel, decided once per slice
    cdef Slice* sl
    # Only what n slices use is set: the Plan is 9 KB, and zeroing it took 5% of a one-step call.
    memset(&p.queue, 0, sizeof(fr_queue) - (FR_TEAM_MAX - n) * sizeof(fr_lane))
    p.k, p.n = k, n
    amx_calls += k.amx
    p.small_recurrent = recurrent_in_small(k, routed_steps(k))
    p.small_projection = projection_in_small(k)
    p.ldh = (k.state + align - 1) // align * align
    cdef Py_ssize_t h_offsets[2]
    h_offsets[0], h_offsets[1] = take(&total, k.batch * p.ldh, align), take(&total, k.batch * p.ldh, align)
    slice_bounds(k.units, n, align, all_small(k), starts)
    for id in range(n):
        sl = &p.slices[id]
        sl.start, sl.width = starts[id], starts[id + 1] - starts[id]
        columns = gates * sl.width
        sl.pack = k.packed == NULL and packs(k, columns, k.timesteps)
        sl.chunk = chunk_steps(k, k.batch, columns)
        kernel_packed[id] = packs_kernel(k, sl.chunk, columns)
        sl.pack_kernel = kernel_packed[id] and k.packed_kernel == NULL
        packings += sl.pack + sl.pack_kernel
        sl.by_gate = n > 1 and not k.amx and sl.width % (FR_PANEL_BYTES // size) == 0   # (fill_slice)
        offsets[id][0] = take(&total, sl.chunk * k.batch * columns, align)
        offsets[id][1] = take(&total, k.inputs * columns if copies_columns(sl, sl.pack_kernel, n) else 0, align)
        offsets[id][2] = take(&total, columns if n > 1 else 0, align)
        offsets[id][3] = take(&total, columns if n > 1 and k.cell == GRU_CELL else 0, align)
        offsets[id][4] = take(&total, k.state * columns if copies_columns(sl, sl.pack, n) else 0, align)
        offsets[id][5] = take(&total, packed_values(k, k.state, columns) if sl.pack else 0, align)
        offsets[id][6] = take(&total, k.batch * columns if k.cell == GRU_CELL else 0, align)
        offsets[id][7] = take(&total, k.batch * sl.width if k.cell == LSTM_CELL else 0, align)
        offsets[id][8] = take(&total, packed_values(k, k.inputs, columns) if sl.pack_kernel else 0, align)
        sl.x_lda = x_lda(k, sl.chunk)   # (a shorter last chunk reads in place too if this one does)
        offsets[id][9] = take(&total, 0 if sl.x_lda else sl.chunk * k.batch * k.inputs, align)
    p.memory = take_scratch(total * size + 64)
    cdef char* base = cache_line(p.memory)
    p.h[0], p.h[1] = base + h_offsets[0] * size, base + h_offsets[1] * size
    for id in range(n):
        sl = &p.slices[id]
        sl.projected = base + offsets[id][0] * size
        sl.kernel = base + offsets[id][1] * size if n > 1 else k.kernel
        sl.bias = base + offsets[id][2] * size if n > 1 else k.bias
        sl.recurrent_bias = base + offsets[id][3] * size if n > 1 else k.extra   # GRU's; unused by the others
        sl.recurrent_kernel = base + offsets[id][4] * size if n > 1 else k.recurrent_kernel
        sl.packed = base + offsets[id][5] * size if sl.pack else k.packed
        sl.gates = base + offsets[id][6] * size if k.cell == GRU_CELL else NULL
        sl.c = base + offsets[id][7] * size if k.cell == LSTM_CELL else NULL
        sl.packed_kernel = (NULL if not kernel_packed[id] else base + offsets[id][8] * size if sl.pack_kernel
                            else k.packed_kernel)
        sl.x_copy = NULL if sl.x_lda else base + offsets[id][9] * size
    return 0


cdef inline bint copies_columns(const Slice* sl, bint packed, int n) noexcept nogil:
    """Whether a slice of n (its kernel `packed` or not) copies its columns of a kernel side by
    side: when the call has several slices, unless it packs that kernel gate by gate (fill_slice)."""
    return n > 1 and not (sl.by_gate and packed)


cdef inline void copy_gates(floating* destination, const floating* source, Py_ssize_t units, Py_ssize_t gates,
                            Py_ssize_t start, Py_ssize_t width) noexcept nogil:
    """The slice's columns of each gate from a row of G * units, side by side in `destination`."""
    cdef Py_ssize_t g
    if width == units:
        memcpy(destination, source, gates * units * sizeof(floating))
    else:
        for g in range(gates):
            memcpy(destination + g * width, source + g * units + start, width * sizeof(floating))


cdef void fill_slice(const Call* k, const Slice* sl, const floating* precision) noexcept nogil:
    """The slice's weights: its columns of the kernel, bias and recurrent kernel side by side
    (and for a GRU its recurrent bias, when it is not the whole layer), then the recurrent kernel
    packed when planned.

    A slice of whole panels packs its kernels gate by gate from the layer's own, without copying
    their columns first: each gate's columns are then whole panels of the packed matrix, and no
    edge column of the products reads the copy (AMX tiles, whose blocks span gates, excepted).
    The copy was most of the weights' cost in short calls: in alternating processes, two threads,
    LSTM 1x10x32x256 ran 1.30-1.35x as fast, 1x10x64x512 1.24-1.27x, 8x50x32x64 unchanged."""
    cdef Py_ssize_t gates = gates_of(k), units = k.units, s = sl.width, columns = gates * s, r
    cdef floating* recurrent_kernel = <floating*> sl.recurrent_kernel
    cdef int n = 2 if sl.kernel != k.kernel else 1      # (one slice reads the kernels in place)
    if copies_columns(sl, sl.pack_kernel, n):
        for r in range(k.inputs):
            copy_gates(<floating*> sl.kernel + r * columns, <const floating*> k.kernel + r * gates * units,
                       units, gates, sl.start, s)
    if n > 1:
        copy_gates(<floating*> sl.bias, <const floating*> k.bias, units, gates, sl.start, s)
        if k.cell == GRU_CELL:
            copy_gates(<floating*> sl.recurrent_bias, <const floating*> k.extra, units, gates, sl.start, s)
    if copies_columns(sl, sl.pack, n):
        for r in range(k.state):
            copy_gates(recurrent_kernel + r * columns, <const floating*> k.recurrent_kernel + r * gates * units,
                       units, gates, sl.start, s)
    if sl.pack and sl.by_gate:
        pack_gates(<const floating*> k.recurrent_kernel, k.state, units, gates, sl, <floating*> sl.packed)
    elif sl.pack:
        pack_matrix(k, recurrent_kernel, k.state, columns, sl.packed)
    if sl.pack_kernel and sl.by_gate:
        pack_gates(<const floating*> k.kernel, k.inputs, units, gates, sl, <floating*> sl.packed_kernel)
    elif sl.pack_kernel:
        pack_matrix(k, sl.kernel, k.inputs, columns, sl.packed_kernel)


cdef inline void pack_gates(const floating* matrix, Py_ssize_t rows, Py_ssize_t units, Py_ssize_t gates,
                            const Slice* sl, floating* packed) noexcept nogil:
    """The slice's columns of each gate of the (rows, G * units) `matrix`, packed in panels side
    by side, as pack_matrix packs their copy (the slice's width whole panels)."""
    cdef Py_ssize_t g
    for g in range(gates):
        pack_panels(sl.width, rows, matrix + g * units + sl.start, gates * units, packed + g * sl.width * rows)


cdef floating* projected_step(const Plan* p, const Slice* sl, Py_ssize_t t, const floating* precision) noexcept nogil:
    """The hoisted input projection of step t, ``x_t @ kernel + bias`` (B, G * width) for the
    slice's columns, computed for sl.chunk steps at once (one GEMM) when t starts a chunk.
    `precision` is only a type tag."""
    cdef const Call* k = p.k
    cdef Py_ssize_t columns = gates_of(k) * sl.width, lda = sl.x_lda
    cdef Py_ssize_t steps = min(sl.chunk, k.timesteps - t), rows = steps * k.batch
    cdef floating* projected = <floating*> sl.projected
    cdef const floating* x = <const floating*> (k.x + t * k.x_step)
    if t % sl.chunk:
        return projected + t % sl.chunk * k.batch * columns
    if not lda:
        copy_steps(k, t, steps, <char*> sl.x_copy)
        x, lda = <const floating*> sl.x_copy, k.inputs
    gemm(rows, columns, k.inputs, x, lda, <const floating*> sl.kernel, columns, 0, projected, columns,
         p.small_projection, <const floating*> sl.packed_kernel, <const floating*> sl.bias, k.amx)
    return projected


# ------------------------------------------------------------------------------------- the cores
# A core computes one slice of one step: step t reads h_tm1 (all units) and writes the slice's
# units of h_t, the plan's two state buffers in turn.

cdef inline bint skipped(const unsigned char* mask, Py_ssize_t timesteps, Py_ssize_t b,
                         Py_ssize_t t) noexcept nogil:
    return mask != NULL and not mask[b * timesteps + t]


cdef inline void copy_columns(floating* destination, Py_ssize_t ld_destination, const floating* source,
                              Py_ssize_t ld_source, Py_ssize_t rows, Py_ssize_t count) noexcept nogil:
    """`count` elements of each of `rows` rows, from rows `ld_source` apart to rows `ld_destination` apart."""
    cdef Py_ssize_t r
    for r in range(rows):
        memcpy(destination + r * ld_destination, source + r * ld_source, count * sizeof(floating))


cdef void simple_rnn_core(const Plan* p, const Slice* sl, Py_ssize_t t, floating* h_tm1,
                          floating* h_t) noexcept nogil:
    cdef const Call* k = p.k
    cdef Py_ssize_t batch = k.batch, units = k.units, ldh = p.ldh, s = sl.width, u0 = sl.start, b
    cdef floating* sequence = <floating*> k.sequence
    cdef floating* z = projected_step(p, sl, t, h_t)
    gemm(batch, s, units, h_tm1, ldh, <floating*> sl.recurrent_kernel, s, 1, z, s, p.small_recurrent,
         <floating*> sl.packed, NULL, k.amx)
    for b in range(batch):
        if skipped(k.mask, k.timesteps, b, t):
            memcpy(h_t + b * ldh + u0, h_tm1 + b * ldh + u0, s * sizeof(floating))
        else:
            activate(z + b * s, s, k.activation)
            memcpy(h_t + b * ldh + u0, z + b * s, s * sizeof(floating))
        if sequence != NULL:
            memcpy(sequence + (b * k.timesteps + t) * units + u0, h_t + b * ldh + u0, s * sizeof(floating))


cdef void lstm_core(const Plan* p, const Slice* sl, Py_ssize_t t, floating* h_tm1, floating* h_t) noexcept nogil:
    cdef const Call* k = p.k
    cdef Py_ssize_t batch = k.batch, units = k.units, state = k.state, ldh = p.ldh, s = sl.width, u0 = sl.start
    cdef Py_ssize_t width = 4 * s, b, j
    cdef const floating* projection = <const floating*> k.extra     # with it, one whole slice (n = 1)
    cdef Py_ssize_t written = state if projection != NULL else s    # columns of h_t from u0 on
    cdef floating* sequence = <floating*> k.sequence
    cdef floating* z = projected_step(p, sl, t, h_t)
    cdef floating* z_b
    cdef floating* c_b
    cdef floating* out_b
    gemm(batch, width, state, h_tm1, ldh, <floating*> sl.recurrent_kernel, width, 1, z, width,
         p.small_recurrent, <floating*> sl.packed, NULL, k.amx)
    for b in range(batch):
        if skipped(k.mask, k.timesteps, b, t):
            memcpy(h_t + b * ldh + u0, h_tm1 + b * ldh + u0, written * sizeof(floating))
            continue
        z_b, c_b = z + b * width, <floating*> sl.c + b * s
        activate(z_b, 2 * s, k.recurrent_activation)             # i, f
        activate(z_b + 2 * s, s, k.activation)                   # candidate
        activate(z_b + 3 * s, s, k.recurrent_activation)         # o
        for j in range(s):
            c_b[j] = z_b[s + j] * c_b[j] + z_b[j] * z_b[2 * s + j]
            z_b[2 * s + j] = c_b[j]      # the candidate slot now holds act(c_t)
        activate(z_b + 2 * s, s, k.activation)
        # o * act(c_t): h_t, or the projection's input, kept in the candidate slot
        out_b = z_b + 2 * s if projection != NULL else h_t + b * ldh + u0
        for j in range(s):
            out_b[j] = z_b[2 * s + j] * z_b[3 * s + j]
    if projection != NULL:
        gemm(batch, state, units, z + 2 * units, width, projection, state, 0, h_t, ldh,
             runs_small(k, state, units))
        for b in range(batch):
            if skipped(k.mask, k.timesteps, b, t):
                memcpy(h_t + b * ldh, h_tm1 + b * ldh, state * sizeof(floating))
    if sequence != NULL:
        for b in range(batch):
            memcpy(sequence + (b * k.timesteps + t) * state + u0, h_t + b * ldh + u0,
                   written * sizeof(floating))


cdef void gru_core(const Plan* p, const Slice* sl, Py_ssize_t t, floating* h_tm1, floating* h_t) noexcept nogil:
    cdef const Call* k = p.k
    cdef Py_ssize_t batch = k.batch, units = k.units, ldh = p.ldh, s = sl.width, u0 = sl.start
    cdef Py_ssize_t width = 3 * s, b, j
    cdef const floating* recurrent_kernel = <floating*> sl.recurrent_kernel
    cdef floating* sequence = <floating*> k.sequence
    cdef floating* g = <floating*> sl.gates     # the recurrent side of the gates (reset_after), or r * h
    cdef floating* z = projected_step(p, sl, t, h_t)
    cdef floating* z_b
    cdef floating* g_b
    cdef floating* h_b
    cdef floating* h_tm1_b
    if k.reset_after:
        gemm(batch, width, units, h_tm1, ldh, recurrent_kernel, width, 0, g, width, p.small_recurrent,
             <floating*> sl.packed, <const floating*> sl.recurrent_bias, k.amx)
        for b in range(batch):
            z_b, g_b = z + b * width, g + b * width
            for j in range(2 * s):
                z_b[j] += g_b[j]
            activate(z_b, 2 * s, k.recurrent_activation)          # z, r
            for j in range(s):
                z_b[2 * s + j] += z_b[s + j] * g_b[2 * s + j]
    else:   # one whole slice (n = 1): r * h_{t-1} needs every unit's r
        gemm(batch, 2 * units, units, h_tm1, ldh, recurrent_kernel, width, 1, z, width,
             runs_small(k, 2 * units, units))
        for b in range(batch):
            z_b, g_b, h_tm1_b = z + b * width, g + b * units, h_tm1 + b * ldh
            activate(z_b, 2 * units, k.recurrent_activation)      # z, r
            for j in range(units):
                g_b[j] = z_b[units + j] * h_tm1_b[j]
        gemm(batch, units, units, g, units, recurrent_kernel + 2 * units, width, 1, z + 2 * units, width,
             runs_small(k, units, units))
    for b in range(batch):
        z_b, h_b, h_tm1_b = z + b * width, h_t + b * ldh + u0, h_tm1 + b * ldh + u0
        if skipped(k.mask, k.timesteps, b, t):
            memcpy(h_b, h_tm1_b, s * sizeof(floating))
        else:
            activate(z_b + 2 * s, s, k.activation)
            for j in range(s):
                h_b[j] = z_b[j] * h_tm1_b[j] + (1 - z_b[j]) * z_b[2 * s + j]
        if sequence != NULL:
            memcpy(sequence + (b * k.timesteps + t) * units + u0, h_b, s * sizeof(floating))


cdef void work_as(Plan* p, int id, const floating* precision) noexcept nogil:
    """Thread `id`'s share of `p`, in rounds: round 0 fills each slice's weights (and cell state),
    round t + 1 runs each slice of step t once round t is complete. In each round the thread does
    its own slice, then any slice no thread has claimed (its thread is late). The caller (id 0)
    then waits for the last items and copies the final states out. `precision` is a type tag."""
    cdef const Call* k = p.k
    cdef Py_ssize_t n = p.n, t, i, j
    cdef const Slice* sl
    cdef int64_t start, busy = 0
    cdef double done = 0        # multiply-adds of the steps' slices this thread ran, in `busy` ns
    for t in range(-1, k.timesteps):
        fr_queue_wait(&p.queue, (t + 1) * n)
        for i in range(n):
            j = (id + i) % n
            if not fr_queue_claim(&p.queue, <int> j, t + 1):
                continue
            sl = &p.slices[j]
            start = fr_now_ns() if n > 1 and t >= 0 else 0
            if t < 0:
                fill_slice(k, sl, precision)
                if k.cell == LSTM_CELL:
                    copy_columns(<floating*> sl.c, sl.width, <const floating*> k.c + sl.start, k.units, k.batch,
                                 sl.width)
            elif k.cell == SIMPLE_RNN_CELL:
                simple_rnn_core(p, sl, t, <floating*> p.h[t % 2], <floating*> p.h[(t + 1) % 2])
            elif k.cell == LSTM_CELL:
                lstm_core(p, sl, t, <floating*> p.h[t % 2], <floating*> p.h[(t + 1) % 2])
            else:
                gru_core(p, sl, t, <floating*> p.h[t % 2], <floating*> p.h[(t + 1) % 2])
            if start:
                busy += fr_now_ns() - start
                done += <double> k.batch * gates_of(k) * sl.width * (k.inputs + k.state)
            fr_queue_done(&p.queue)
    if n > 1:
        note_speed(id, done, busy)
    if id != 0:
        return
    fr_queue_wait(&p.queue, (k.timesteps + 1) * n)
    copy_columns(<floating*> k.h, k.state, <const floating*> p.h[k.timesteps % 2], p.ldh, k.batch, k.state)
    if k.cell == LSTM_CELL:
        for j in range(n):
            sl = &p.slices[j]
            copy_columns(<floating*> k.c + sl.start, k.units, <const floating*> sl.c, sl.width, k.batch, sl.width)


cdef void work(void* plan, int id, int n) noexcept nogil:
    if (<Plan*> plan).k.typenum == cnp.NPY_FLOAT32:
        work_as(<Plan*> plan, id, <const float*> NULL)
    else:
        work_as(<Plan*> plan, id, <const double*> NULL)


cdef inline void start_plan(Plan* p) noexcept nogil:
    """h_0 into the plan's first state buffer, read whole by every slice's first step."""
    cdef const Call* k = p.k
    cdef size_t size = itemsize(k)
    cdef Py_ssize_t b
    for b in range(k.batch):
        memcpy(<char*> p.h[0] + b * p.ldh * size, <char*> k.h + b * k.state * size, k.state * size)


cdef int run(Call* k) except -1 nogil:
    """Run `k` cut into as many slices as threads pay (see threads_for), on the team's threads."""
    global team_calls
    cdef Plan plan
    plan.memory = NULL
    cdef int n = threads_for(k)
    if n > 1:
        n = fr_team_acquire(n)
    try:
        plan_call(&plan, k, n)
        start_plan(&plan)
        if n > 1:
            team_calls += 1
            fr_team_run(work, &plan, n)
        else:
            work(&plan, 0, 1)
    finally:
        fr_scratch_give(plan.memory)
        if n > 1:
            fr_team_release()
    return 0


# Independent calls (fastrnn/recurrent.py): a batch split by rows, the two directions of a
# Bidirectional layer, or both. Each part is a call of its own over some rows, run whole by one
# thread of the team, its products routed as those of the whole call it is rows of ("routes").
# Parts are claimed like a call's slices (a lane of one item each), so that a part whose thread
# is late is run by another.
cdef struct Parts:
    Plan* plans
    int count
    fr_queue queue


cdef void work_parts(void* arg, int id, int n) noexcept nogil:
    cdef Parts* parts = <Parts*> arg
    cdef int i, j
    cdef int64_t start
    for i in range(parts.count):
        j = (id + i) % parts.count
        if not fr_queue_claim(&parts.queue, j, 0):
            continue
        start = fr_now_ns()
        start_plan(&parts.plans[j])
        work(&parts.plans[j], 0, 1)
        note_speed(id, call_work(parts.plans[j].k), fr_now_ns() - start)


cdef inline bint same_weights(const Call* a, const Call* b) noexcept nogil:
    """Whether two parts of run_parts are parts of one call (rows of it): the same weights, x
    read in the same direction (the two directions of a Bidirectional layer may share weights)."""
    return (a.cell == b.cell and a.kernel == b.kernel and a.recurrent_kernel == b.recurrent_kernel
            and a.inputs == b.inputs and a.state == b.state and a.units == b.units and a.x_step == b.x_step)


cdef void set_whole_batch(Call* calls, int count, int j) noexcept nogil:
    """Part j's whole_batch: the rows of every part of run_parts with its weights, the call that
    the parts are rows of, on which its products are routed (see "routes")."""
    cdef int i
    calls[j].whole_batch = 0
    for i in range(count):
        if same_weights(&calls[i], &calls[j]):
            calls[j].whole_batch += calls[i].batch
    if calls[j].whole_batch != calls[j].batch:   # (check_inputs decided on its own rows)
        calls[j].amx = uses_amx(&calls[j])


cdef int share_packing(Call* calls, int j, void** owned, int* n_owned) except -1 nogil:
    """Give part j of run_parts the kernels packed for an earlier part of the same weights, or
    pack them here where part j's plan would (`owned` then holds them, for the caller to give
    back with fr_scratch_give: kept scratch, whose pages are not faulted in again at each call):
    parts that each packed their own copies kept 8 of an LSTM(512)'s recurrent kernel at once
    (63 MB of float64 scratch for 8 parts of 32 rows, 7 MB for 2)."""
    global packings
    cdef Call* k = &calls[j]
    cdef Call* other
    cdef Py_ssize_t columns = gates_of(k) * k.units
    cdef bint recurrent = packs(k, columns, k.timesteps)
    cdef bint kernel = packs_kernel(k, chunk_steps(k, k.batch, columns), columns)
    cdef int i
    for i in range(j):
        other = &calls[i]
        if same_weights(other, k) and other.amx == k.amx:   # (packed alike)
            if recurrent and other.packed != NULL:
                k.packed, recurrent = other.packed, False
            if kernel and other.packed_kernel != NULL:
                k.packed_kernel, kernel = other.packed_kernel, False
    packings += recurrent + kernel
    if recurrent:
        k.packed = owned[n_owned[0]] = pack_matrix(k, k.recurrent_kernel, k.state, columns,
                                                   take_scratch(packed_values(k, k.state, columns) * itemsize(k)))
        n_owned[0] += 1
    if kernel:
        k.packed_kernel = owned[n_owned[0]] = pack_matrix(k, k.kernel, k.inputs, columns,
                                                          take_scratch(packed_values(k, k.inputs, columns) * itemsize(k)))
        n_owned[0] += 1
    return 0


# ------------------------------------------------------------------------------- the entry points

cdef int check_inputs(Call* k, object x, object kernel, object bias, object recurrent_kernel,
                      int gates) except -1:
    """Fill the sizes and input pointers of `k` from x (B, T, I), of any strides, and the
    weights (k.units and k.state set, k.typenum too)."""
    cdef cnp.npy_intp* xs = shape_of(x, b"x", k.typenum, 3, False, False)
    cdef cnp.npy_intp* strides = cnp.PyArray_STRIDES(<cnp.ndarray> x)
    k.batch, k.timesteps, k.inputs = xs[0], xs[1], xs[2]
    k.x, k.x_row, k.x_step, k.x_item = <const char*> data(x), strides[0], strides[1], strides[2]
    k.x_aligned = cnp.PyArray_ISALIGNED(<cnp.ndarray> x)
    check_shape(b"kernel", shape_of(kernel, b"kernel", k.typenum, 2, False), 2, k.inputs, gates * k.units)
    check_shape(b"bias", shape_of(bias, b"bias", k.typenum, 1, False), 1, gates * k.units)
    check_shape(b"recurrent_kernel", shape_of(recurrent_kernel, b"recurrent_kernel", k.typenum, 2, False), 2,
                k.state, gates * k.units)
    k.kernel, k.bias, k.recurrent_kernel = data(kernel), data(bias), data(recurrent_kernel)
    k.packed = k.packed_kernel = NULL
    k.whole_batch = k.batch
    k.amx = uses_amx(k)
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


def simple_rnn(x,                   # IN  (B, T, I) inputs, any strides
               kernel,              # IN  (I, U)
               bias,                # IN  (U,), zeros without a bias
               recurrent_kernel,    # IN  (U, U)
               mask,                # IN  (B, T) uint8, or (0, 0) for no mask
               int activation,
               h,                   # IN/OUT (B, U) initial -> final state
               sequence):           # OUT (B, T, U), or (0, 0, 0) to skip
    """SimpleRNN: ``h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``, in place.

    See fastrnn/reference.py for the contract; this is its compiled twin. Every array is
    float32, or every one float64 (the mask is uint8), C-contiguous but x, which may be any view
    (a reversed one for ``go_backwards``).
    """
    cdef Call k
    check_simple_rnn(&k, x, kernel, bias, recurrent_kernel, mask, activation, h, sequence)
    with nogil:
        run(&k)


def lstm(x,                         # IN  (B, T, I) inputs, any strides
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


def gru(x,                          # IN  (B, T, I) inputs, any strides
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


cdef object check_call(Call* k, function, tuple arguments, bint step=False):
    """Fill `k` for `function`, one of this module's kernels, and all the arguments it takes, x
    first. For a `step`, x None stands for one step (k.x is left NULL: a Step sets it at each
    step); elsewhere x must be an array. Returns the arguments' h."""
    cdef Py_ssize_t n = len(arguments)
    if function is simple_rnn and n == 8:
        x, kernel, bias, recurrent_kernel, mask, activation, h, sequence = arguments
        x = np.zeros((len(h), 1, len(kernel)), h.dtype) if step and x is None else x
        check_simple_rnn(k, x, kernel, bias, recurrent_kernel, mask, activation, h, sequence)
    elif function is lstm and n == 11:
        x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c, \
            sequence = arguments
        x = np.zeros((len(h), 1, len(kernel)), h.dtype) if step and x is None else x
        check_lstm(k, x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c,
                   sequence)
    elif function is gru and n == 11:
        x, kernel, bias, recurrent_kernel, recurrent_bias, mask, activation, recurrent_activation, reset_after, \
            h, sequence = arguments
        x = np.zeros((len(h), 1, len(kernel)), h.dtype) if step and x is None else x
        check_gru(k, x, kernel, bias, recurrent_kernel, recurrent_bias, mask, activation, recurrent_activation,
                  reset_after, h, sequence)
    else:
        raise TypeError(f"expected one of fastrnn._kernels' kernels and all the arguments it takes, "
                        f"got {function!r} with {n}")
    k.packed = k.packed_kernel = NULL
    if step:
        k.x = NULL      # the stand-in dies here
    return h


def threads_for_call(function, arguments):
    """How many threads a call of `function`, one of this module's kernels, on `arguments` would
    share each of its steps among (one where its steps cannot be shared or are too small to pay):
    fastrnn/recurrent.py splits the batch of a layer with large weights into row parts only where
    this is one."""
    cdef Call call
    check_call(&call, function, tuple(arguments))
    return threads_for(&call)


def run_parts(parts):
    """Run independent kernel calls at once, each part on a thread of the team.

    Each part is ``(function, arguments)``: one of this module's kernels and all the arguments
    it takes, its outputs written in place (no part's outputs may overlap another part's inputs
    or outputs: the parts run at once, reading their x in place). Rows of a
    batch are independent sequences, and so are the directions of a Bidirectional layer: a part
    runs its whole recurrence without meeting the others. With the team busy, or one thread, the
    parts run one after another on this thread.
    """
    global team_calls
    parts = tuple(parts)        # held here (parts are tuples): the arrays must outlive the threads
    cdef int count = len(parts), j
    if not 1 <= count <= FR_TEAM_MAX:
        raise ValueError(f"run_parts takes 1 to {FR_TEAM_MAX} parts, got {count}")
    cdef Parts p
    cdef Call* calls = <Call*> alloc_scratch(count * sizeof(Call))
    cdef void* plans = NULL     # the plans hold a 64-byte aligned queue: aligned by hand
    cdef int planned = 0, n = 1, n_owned = 0
    cdef void* owned[2 * FR_TEAM_MAX]      # kernels packed once for all parts that read them
    try:
        plans = alloc_scratch(count * sizeof(Plan) + 64)
        p.plans = <Plan*> cache_line(plans)
        for j in range(count):
            # Exact tuples: a subclass could unpack to arrays that nothing here holds.
            if not (type(parts[j]) is tuple and len(parts[j]) == 2 and type(parts[j][1]) is tuple):
                raise TypeError(f"run_parts: part {j} must be a tuple (function, arguments), arguments a "
                                f"tuple; got {parts[j]!r:.200}")
            check_call(&calls[j], parts[j][0], parts[j][1])
            if j and calls[j].typenum != calls[0].typenum:
                raise TypeError(f"run_parts: part {j} is of another dtype than part 0")
        for j in range(count):
            set_whole_batch(calls, count, j)
        p.count = count
        memset(&p.queue, 0, sizeof(fr_queue))
        with nogil:
            for j in range(count):
                p.plans[j].memory = NULL
            for j in range(count):
                share_packing(calls, j, owned, &n_owned)
            for j in range(count):
                plan_call(&p.plans[j], &calls[j], 1)
                planned += 1
            n = fr_team_acquire(min(count, team_size))
            if n > 1:
                team_calls += 1
                fr_team_run(work_parts, &p, n)
                fr_team_release()
            else:
                work_parts(&p, 0, 1)
    finally:
        for j in range(planned):
            fr_scratch_give(p.plans[j].memory)
        for j in range(n_owned):
            fr_scratch_give(owned[j])
        free(calls)
        free(plans)


def scratch_kept():
    """Bytes of scratch kept for later calls (csrc/scratch.h), for the tests."""
    return fr_scratch_kept()


cdef class Step:
    """One timestep of a kernel with everything but the input bound: the embedded hot path.

    ``Step(function, arguments)`` takes one of this module's kernels and all the arguments it
    takes, x None (it comes at each step), with the empty mask and sequence; they are checked
    once, and kept alive.
    ``step(x_t)`` for ``x_t`` of shape (batch, input_dim), any strides, advances the bound states
    in place and returns a copy of h, the step's output. Weights and states must not be replaced afterwards
    (fastrnn/streaming.py binds a new Step when they are).
    """
    cdef Call call
    cdef tuple arguments
    cdef object h

    def __init__(self, function, tuple arguments):
        cdef Call call      # all checked before anything bound is replaced
        cdef void* packed
        if not arguments or arguments[0] is not None:
            raise TypeError("Step takes a kernel's arguments with x None: the input comes at each step")
        # A stand-in input of one step: the kernel's own checks then bind everything else.
        h = check_call(&call, function, arguments, True)
        if call.mask != NULL or call.sequence != NULL:
            raise ValueError("Step binds the empty mask and sequence: one step needs neither")
        # A one-step call never packs the recurrent kernel; a stream runs many steps, so it is
        # packed here once, on the terms of a call of many.
        packed = pack_recurrent_kernel(&call)
        free(self.call.packed)
        self.call, self.call.packed = call, packed
        self.arguments, self.h = arguments, h

    def __dealloc__(self):
        free(self.call.packed)

    def __call__(self, x_t):
        """Advance the bound states by `x_t` (batch, input_dim); return a copy of h."""
        if self.h is None:
            raise TypeError("Step is not bound to a kernel: construct it with Step(function, arguments)")
        cdef cnp.npy_intp* shape = shape_of(x_t, b"x_t", self.call.typenum, 2, False, False)
        check_shape(b"x_t", shape, 2, self.call.batch, self.call.inputs)
        # One step of B rows, any strides (any x_step: there is no second step).
        cdef cnp.npy_intp* strides = cnp.PyArray_STRIDES(<cnp.ndarray> x_t)
        self.call.x, self.call.x_row, self.call.x_item = <const char*> data(x_t), strides[0], strides[1]
        self.call.x_aligned = cnp.PyArray_ISALIGNED(<cnp.ndarray> x_t)
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
