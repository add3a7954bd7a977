"""Numba kernels: a line-for-line translation of ``csrc/_kernels.pyx``, used when it is not built.

Same names, argument order, array contract (see fastrnn/reference.py) and loop structure as the
Cython file, so that the two read side by side: each kernel hands its jitted core (`*_core`) a
time-major copy of x, as the Cython projection reads its chunks. Importing this module imports
numba; the backend registry treats an ImportError as "numba backend unavailable".
"""
import ctypes
import math
import os
import threading

import llvmlite.binding
import numba
import numpy as np
from scipy.linalg import cython_blas

from . import _numba_fast_math as fast_math
from .backends import _blas_set_threads_address

# Activation codes: the contract with fastrnn/activations.py CODES.
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

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SQRT1_2 = 0.70710678118654752440084436210485

jit = numba.njit(nogil=True, cache=True)


@jit
def _clip(x, lo, hi):
    # Comparisons are false for NaN, so NaN passes through as in np.clip.
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@jit
def activate(v, activation):
    """Apply the activation with code `activation` to `v` (a row, or a whole step flattened) in place."""
    n = v.shape[0]
    if activation == TANH:
        fast_math.tanh_row(v)
    elif activation == SIGMOID:
        fast_math.sigmoid_row(v)
    elif activation == RELU:
        for j in range(n):
            v[j] = 0 if v[j] < 0 else v[j]
    elif activation == HARD_SIGMOID:
        for j in range(n):
            v[j] = _clip(v[j] + 3, 0.0, 6.0) / 6
    elif activation == HARD_SIGMOID_KERAS2:
        for j in range(n):
            v[j] = _clip(0.2 * v[j] + 0.5, 0.0, 1.0)
    elif activation == ELU:
        for j in range(n):
            v[j] = v[j] if v[j] > 0 else math.expm1(v[j])
    elif activation == SELU:
        for j in range(n):
            x = v[j]
            v[j] = SELU_SCALE * (x if x > 0 else SELU_ALPHA * math.expm1(x))
    elif activation == SOFTSIGN:
        for j in range(n):
            v[j] = v[j] / (1 + (v[j] if v[j] >= 0 else -v[j]))
    elif activation == SOFTPLUS:
        for j in range(n):
            x = v[j]
            # log(1 + e^x) = log1p(e^-|x|) + max(x, 0), stable for large |x|.
            v[j] = math.log1p(math.exp(-x if x >= 0 else x)) + (x if x > 0 else 0)
    elif activation == SILU:
        for j in range(n):
            v[j] = v[j] * fast_math.sigmoid_libm(v[j])
    elif activation == GELU:
        for j in range(n):
            x = v[j]
            v[j] = 0.5 * x * (1 + math.erf(x * SQRT1_2))
    elif activation == EXPONENTIAL:
        for j in range(n):
            v[j] = math.exp(v[j])
    # LINEAR: nothing to do.


def _time_major(x):
    """The cores' input: `x` (B, T, I) of any layout as a time-major (T, B, I), C-contiguous,
    writable copy. Numba compiles a function once per type, layout and writability of its
    arguments: handed on as it lies, a reversed view or a read-only array compiled every kernel
    anew (3-4 s each); and the projection read batch-major (each step's rows a sequence apart)
    ran a 1024x20x64x64 GRU 2.4x slower."""
    return np.array(x.transpose(1, 0, 2), order="C")


# The cores' products run in SciPy's BLAS, which would start its own threads beside fastrnn's: parts
# of a batch on the Python pool, each with a BLAS of two threads, oversubscribed two cores (SimpleRNN
# 1024x20x64x64 on two threads: 8.3-11.1 ms, 6.0 with OPENBLAS_NUM_THREADS=1). As in the compiled
# kernels, BLAS runs on one thread while they run; fastrnn.set_num_threads governs the rest.
_address = _blas_set_threads_address()
_openblas_set_threads = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(_address) if _address else None
# The setting takes OpenBLAS's server lock, and a child forked while another thread holds it hangs
# in its first BLAS call: settings are made under this lock, which a fork takes first (as in
# csrc/blas_threads.h).
_blas_lock = threading.Lock()
_held_for_fork = False


def _take_for_fork():
    global _held_for_fork
    _held_for_fork = _blas_lock.acquire()    # (a signal may interrupt it: then not held)


def _give_after_fork():
    global _held_for_fork
    if _held_for_fork:
        _held_for_fork = False
        _blas_lock.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_take_for_fork, after_in_parent=_give_after_fork, after_in_child=_give_after_fork)


# Cores running now: while any runs, BLAS runs on one thread, and the last one out restores the
# count the first one in found (the setting is process-wide in SciPy's OpenBLAS, as in
# csrc/blas_threads.h).
_cores_running = 0
_saved_blas_threads = 0


def _enter_blas():
    """Before a core: BLAS on one thread (where SciPy's BLAS can be set)."""
    global _cores_running, _saved_blas_threads
    if _openblas_set_threads is None:
        return
    with _blas_lock:
        previous = _openblas_set_threads(1)
        _cores_running += 1
        if _cores_running == 1:
            _saved_blas_threads = previous


def _leave_blas():
    """After it: the BLAS threads before the first of the cores running, once none is."""
    global _cores_running
    if _openblas_set_threads is None:
        return
    with _blas_lock:
        _cores_running -= 1
        if _cores_running == 0 and _saved_blas_threads > 0:
            _openblas_set_threads(_saved_blas_threads)


# The cores add each step's recurrent product to its projected inputs in place, as the compiled
# kernels do, with SciPy's BLAS gemm and beta = 1: np.dot has no "+=", and its product (into a
# zeroed output) and then a pass adding the projection ran a 1024x20x64x64 LSTM's recurrent
# products 1.8x slower (12.4 against 7.0 ms on one thread). The functions are bound by symbol
# name, so that Numba's cache keeps working (a ctypes function is a dynamic global it cannot cache).
_capsule_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
_capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))
for _name in ("sgemm", "dgemm"):
    _capsule = cython_blas.__pyx_capi__[_name]
    llvmlite.binding.add_symbol(f"fastrnn_{_name}", _capsule_pointer(_capsule, _capsule_name(_capsule)))
# Fortran's ?gemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc): all by pointer.
_sgemm = numba.types.ExternalFunction("fastrnn_sgemm", numba.types.void(*[numba.types.voidptr] * 13))
_dgemm = numba.types.ExternalFunction("fastrnn_dgemm", numba.types.void(*[numba.types.voidptr] * 13))


@jit
def blas_scratch(dtype):
    """What `gemm_add` hands BLAS by pointer besides the matrices: its sizes, alpha and beta (1) in
    `dtype`, and "N" (no transpose). Made once per call: made at each step, they cost a small
    step 8% (SimpleRNN 4x2000x16x32)."""
    return np.empty(6, np.int32), np.ones(2, dtype), np.full(1, ord("N"), np.uint8)


@jit
def gemm_add(a, b, c, scratch):
    """``c += a @ b`` for row-major matrices whose rows are contiguous, any distance apart (a
    gate's columns of a kernel, say), `scratch` from `blas_scratch`. BLAS is column-major, where
    a row-major matrix reads as its transpose: it computes ``c^T += b^T @ a^T``."""
    ints, scalars, no = scratch
    m, k = a.shape
    n = b.shape[1]
    size = c.itemsize
    ints[0], ints[1], ints[2] = n, m, k      # BLAS's m, n and k, then its leading dimensions
    ints[3] = max(b.strides[0] // size, n, 1)     # (a lone row's stride is anything)
    ints[4] = max(a.strides[0] // size, k, 1)
    ints[5] = max(c.strides[0] // size, n, 1)
    arguments = (no.ctypes, no.ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes, scalars.ctypes, b.ctypes,
                 ints[3:].ctypes, a.ctypes, ints[4:].ctypes, scalars[1:].ctypes, c.ctypes, ints[5:].ctypes)
    if size == 4:
        _sgemm(*arguments)
    else:
        _dgemm(*arguments)


def _run(core, x, *arguments):
    """`core` on a time-major copy of `x`, with BLAS on one thread."""
    x = _time_major(x)
    _enter_blas()
    try:
        core(x, *arguments)
    finally:
        _leave_blas()


def simple_rnn(x, kernel, bias, recurrent_kernel, mask, activation, h, sequence):
    """SimpleRNN over `x` (B, T, I) of any layout, in place: `simple_rnn_core` on a time-major copy."""
    _run(simple_rnn_core, x, kernel, bias, recurrent_kernel, mask, activation, h, sequence)


def lstm(x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c,
         sequence):
    """LSTM over `x` (B, T, I) of any layout, in place: `lstm_core` on a time-major copy."""
    _run(lstm_core, x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c,
         sequence)


def gru(x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, activation,
        recurrent_activation, reset_after, h, sequence):
    """GRU over `x` (B, T, I) of any layout, in place: `gru_core` on a time-major copy."""
    _run(gru_core, x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, activation, recurrent_activation,
         reset_after, h, sequence)


@jit
def project(x, kernel, bias):
    """The hoisted input projection, ``x @ kernel + bias`` for every step and row of the
    time-major `x`: one GEMM."""
    timesteps, batch, inputs = x.shape
    projected = np.empty((timesteps * batch, kernel.shape[1]), x.dtype)
    fill_rows(projected, bias)
    gemm_add(x.reshape(timesteps * batch, inputs), kernel, projected, blas_scratch(x.dtype))
    return projected.reshape(timesteps, batch, kernel.shape[1])


@jit
def copy_row(destination, source):
    """``destination[:] = source`` for two rows of the same length, as a loop: Numba's slice
    assignment ran 1.5x slower (SimpleRNN 1024x20x64x64 with its sequence: 16.2 ms, 11.1 with
    the loop)."""
    for j in range(source.shape[0]):
        destination[j] = source[j]


@jit
def fill_rows(matrix, row):
    """Every row of `matrix` set to `row`, row by row: Numba's broadcast ``matrix[:] = row`` ran
    a GRU 1x100x32x64 1.2x slower."""
    for b in range(matrix.shape[0]):
        copy_row(matrix[b], row)


@jit
def skipped(mask, b, t):
    return mask.shape[0] > 0 and not mask[b, t]


@jit
def simple_rnn_core(x, kernel, bias, recurrent_kernel, mask, activation, h, sequence):
    """SimpleRNN: ``h_t = act(x_t @ kernel + bias + h_{t-1} @ recurrent_kernel)``, in place.

    See fastrnn/reference.py for the contract, but for x: time-major (T, B, I) and C-contiguous
    here; this mirrors csrc/_kernels.pyx.
    """
    timesteps, batch = x.shape[:2]
    write_sequence = sequence.shape[0] > 0
    projected = project(x, kernel, bias)
    scratch = blas_scratch(x.dtype)
    for t in range(timesteps):
        z = projected[t]
        gemm_add(h, recurrent_kernel, z, scratch)
        # The whole step at once, masked rows too (unused): a call per row of 64 units made the
        # activations 1.3x slower per element. The sequence in a loop of its own: copied in the
        # loop above, it cost twice as much (SimpleRNN 1024x20x64x64 on one thread: 8.0 ms, 6.1
        # with both).
        activate(z.reshape(-1), activation)
        for b in range(batch):
            if not skipped(mask, b, t):
                copy_row(h[b], z[b])
        if write_sequence:
            for b in range(batch):
                copy_row(sequence[b, t], h[b])


@jit
def lstm_core(x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c,
              sequence):
    """LSTM, gates fused: one product with the whole (P, 4U) recurrent kernel per step.

    ``z = x_t @ kernel + bias + h_{t-1} @ recurrent_kernel``;
    ``i, f, o = rec_act(z_i), rec_act(z_f), rec_act(z_o)``;
    ``c_t = f * c_{t-1} + i * act(z_c)``; ``h_t = o * act(c_t)``, then ``h_t @ projection``
    when there is one (PyTorch's proj_size; P is its size). x is time-major, as in `simple_rnn_core`.
    """
    timesteps, batch = x.shape[:2]
    units = c.shape[1]
    use_projection = projection.shape[0] > 0
    write_sequence = sequence.shape[0] > 0
    projected_inputs = project(x, kernel, bias)
    candidates = np.empty((batch, units), x.dtype)
    projected = np.empty(h.shape, x.dtype)
    scratch = blas_scratch(x.dtype)
    for t in range(timesteps):
        z = projected_inputs[t]
        gemm_add(h, recurrent_kernel, z, scratch)
        for b in range(batch):
            z_b = z[b]
            c_b = c[b]
            if skipped(mask, b, t):
                continue
            activate(z_b[:2 * units], recurrent_activation)          # i, f
            activate(z_b[2 * units:3 * units], activation)           # candidate
            activate(z_b[3 * units:], recurrent_activation)          # o
            for j in range(units):
                c_b[j] = z_b[units + j] * c_b[j] + z_b[j] * z_b[2 * units + j]
                z_b[2 * units + j] = c_b[j]    # the candidate slot now holds act(c_t)
            activate(z_b[2 * units:3 * units], activation)
            for j in range(units):
                candidates[b, j] = z_b[2 * units + j] * z_b[3 * units + j]   # o * act(c_t)
            if not use_projection:
                copy_row(h[b], candidates[b])
        if use_projection:
            np.dot(candidates, projection, out=projected)
            for b in range(batch):
                if not skipped(mask, b, t):
                    copy_row(h[b], projected[b])
        if write_sequence:
            for b in range(batch):
                copy_row(sequence[b, t], h[b])


@jit
def gru_core(x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, activation,
             recurrent_activation, reset_after, h, sequence):
    """GRU in both Keras formulations (see csrc/_kernels.pyx for the equations), x time-major."""
    timesteps, batch = x.shape[:2]
    units = h.shape[1]
    write_sequence = sequence.shape[0] > 0
    projected = project(x, kernel, input_bias)
    g = np.empty(projected.shape[1:], x.dtype)
    reset_h = np.empty((batch, units), x.dtype)
    scratch = blas_scratch(x.dtype)
    for t in range(timesteps):
        z = projected[t]
        if reset_after:
            fill_rows(g, recurrent_bias)
            gemm_add(h, recurrent_kernel, g, scratch)
            for b in range(batch):
                z_b, g_b = z[b], g[b]
                for j in range(2 * units):
                    z_b[j] += g_b[j]
                activate(z_b[:2 * units], recurrent_activation)      # z, r
                for j in range(units):
                    z_b[2 * units + j] += z_b[units + j] * g_b[2 * units + j]
        else:
            gemm_add(h, recurrent_kernel[:, :2 * units], z[:, :2 * units], scratch)
            for b in range(batch):
                z_b = z[b]
                activate(z_b[:2 * units], recurrent_activation)      # z, r
                for j in range(units):
                    reset_h[b, j] = z_b[units + j] * h[b, j]         # r * h_{t-1}
            gemm_add(reset_h, recurrent_kernel[:, 2 * units:], z[:, 2 * units:], scratch)
        for b in range(batch):
            z_b, h_b = z[b], h[b]
            if not skipped(mask, b, t):
                activate(z_b[2 * units:], activation)
                for j in range(units):
                    h_b[j] = z_b[j] * h_b[j] + (1 - z_b[j]) * z_b[2 * units + j]
            if write_sequence:
                copy_row(sequence[b, t], h_b)
