"""The NumPy reference recurrences: the specification, the test oracle, the "numpy" backend.

Each function is one cell's recurrence over time, written for clarity rather than speed, in
Keras's math and names. It has exactly the signature of the compiled kernels
(``csrc/_kernels.pyx``, ``fastrnn/_numba.py``), so the three are interchangeable behind the backend
registry: the layer projects the inputs (``x @ kernel + bias``, one matrix multiply over all
timesteps), reverses time for ``go_backwards`` and allocates every array; a kernel only loops.

Array contract, shared by every backend (B batch, T timesteps, U units):

- ``inputs``: (B, T, U), the projected inputs, read only.
- ``recurrent_kernel``: (U, U), read only.
- ``mask``: (B, T) uint8, nonzero where the step is processed; shape (0, 0) for no mask.
- ``activation``: an integer code from `fastrnn.activations.CODES`.
- ``h``: (B, U), the initial state on entry and the final state on return.
- ``sequence``: (B, T, U), receives the state after every step; shape (0, 0, 0) to skip.

A masked step leaves the state unchanged and writes it to ``sequence`` again (Keras repeats the
previous output); the layer zeroes the outputs before a row's first unmasked step.
"""
import numpy as np

from . import activations

__all__ = ["simple_rnn"]


def simple_rnn(inputs, recurrent_kernel, mask, activation, h, sequence):
    """Run the SimpleRNN recurrence in place, in NumPy.

    Parameters
    ----------
    inputs : ndarray, shape (batch, timesteps, units)
        ``x_t @ kernel + bias`` for every step.
    recurrent_kernel : ndarray, shape (units, units)
    mask : ndarray of uint8, shape (batch, timesteps), or shape (0, 0) for no mask
    activation : int
        Activation code, see `fastrnn.activations.code`.
    h : ndarray, shape (batch, units)
        Initial state; overwritten with the final state.
    sequence : ndarray, shape (batch, timesteps, units), or shape (0, 0, 0)
        Receives the state after each step, unless empty.

    Notes
    -----
    .. math:: h_t = \\mathrm{act}(x_t W_x + b + h_{t-1} W_h)
    """
    act = activations.by_code(activation)
    for t in range(inputs.shape[1]):
        h_new = act(inputs[:, t] + h @ recurrent_kernel)
        if mask.size:
            keep = mask[:, t, None] != 0
            h_new = np.where(keep, h_new, h)
        h[...] = h_new
        if sequence.size:
            sequence[:, t] = h
