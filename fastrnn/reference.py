"""The NumPy reference recurrences: the specification, the test oracle, the "numpy" backend.

Each function is one cell over a whole sequence, written for clarity rather than speed, in
Keras's math and names. It has exactly the signature of the compiled kernels
(``csrc/_kernels.pyx``, ``fastrnn/_numba.py``), so the three are interchangeable behind the backend
registry: the layer validates, reverses time for ``go_backwards`` (a view of its input) and
allocates every output; a kernel computes.

Array contract, shared by every backend (T timesteps, B batch, I inputs, U units, G gates):

- ``x``: (B, T, I), the inputs, read only; any strides (a view).
- ``kernel``: (I, G*U); ``bias``: (G*U,), zeros for a layer without bias; read only.
- ``recurrent_kernel``: (U, G*U), read only, gates in Keras order.
- ``mask``: (B, T) uint8, nonzero where the step is processed; shape (0, 0) for no mask.
- ``activation``, ``recurrent_activation``: integer codes from `fastrnn.activations.CODES`.
- ``h`` (and ``c`` for the LSTM): (B, U), the initial state on entry, the final one on return.
- ``sequence``: (B, T, U), receives the state after every step; shape (0, 0, 0) to skip.

A masked step leaves the state unchanged and writes it to ``sequence`` again (Keras repeats the
previous output); the layer zeroes the outputs before a row's first unmasked step.
"""
import numpy as np

from . import activations

__all__ = ["gru", "lstm", "simple_rnn"]


def simple_rnn(x, kernel, bias, recurrent_kernel, mask, activation, h, sequence):
    r"""Run a SimpleRNN over a sequence, in place, in NumPy.

    Parameters
    ----------
    x : ndarray, shape (batch, timesteps, input_dim)
    kernel : ndarray, shape (input_dim, units)
    bias : ndarray, shape (units,)
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
    .. math:: h_t = \mathrm{act}(x_t W_x + b + h_{t-1} W_h)
    """
    act = activations.by_code(activation)
    for t in range(x.shape[1]):
        h_new = act(x[:, t] @ kernel + bias + h @ recurrent_kernel)
        _update(t, mask, (h,), (h_new,), sequence)


def lstm(x, kernel, bias, recurrent_kernel, projection, mask, activation, recurrent_activation, h, c,
         sequence):
    r"""Run an LSTM over a sequence, in place, in NumPy (Keras gate order i, f, c, o).

    Parameters
    ----------
    x : ndarray, shape (batch, timesteps, input_dim)
    kernel : ndarray, shape (input_dim, 4 * units)
    bias : ndarray, shape (4 * units,)
    recurrent_kernel : ndarray, shape (state, 4 * units)
    projection : ndarray, shape (units, state), or (0, 0) for none (then state = units)
        PyTorch's ``proj_size``: ``h_t`` is projected after each step.
    mask, activation, sequence
        As in `simple_rnn`.
    recurrent_activation : int
        Activation code of the gates.
    h : ndarray, shape (batch, state)
    c : ndarray, shape (batch, units)
        Initial hidden and carry states; overwritten with the final ones.

    Notes
    -----
    .. math::
        z &= x_t W_x + b + h_{t-1} W_h = [z_i, z_f, z_c, z_o] \\
        c_t &= \sigma(z_f) c_{t-1} + \sigma(z_i) \mathrm{act}(z_c) \\
        h_t &= \sigma(z_o) \mathrm{act}(c_t) \quad [\,\cdot\, W_{hr} \text{ with a projection}]

    with :math:`\sigma` the recurrent activation.
    """
    act = activations.by_code(activation)
    rec_act = activations.by_code(recurrent_activation)
    for t in range(x.shape[1]):
        z_i, z_f, z_c, z_o = np.split(x[:, t] @ kernel + bias + h @ recurrent_kernel, 4, axis=1)
        c_new = rec_act(z_f) * c + rec_act(z_i) * act(z_c)
        h_new = rec_act(z_o) * act(c_new)
        if projection.size:
            h_new = h_new @ projection
        _update(t, mask, (h, c), (h_new, c_new), sequence)


def gru(x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, activation,
        recurrent_activation, reset_after, h, sequence):
    r"""Run a GRU over a sequence, in place, in NumPy (Keras gate order z, r, h).

    Parameters
    ----------
    x : ndarray, shape (batch, timesteps, input_dim)
    kernel : ndarray, shape (input_dim, 3 * units)
    input_bias : ndarray, shape (3 * units,)
    recurrent_kernel : ndarray, shape (units, 3 * units)
    recurrent_bias : ndarray, shape (3 * units,)
        Added to ``h @ recurrent_kernel`` with ``reset_after``; zeros otherwise.
    reset_after : bool
        Apply the reset gate after the recurrent product (Keras 3's default, PyTorch's form).
    mask, activation, recurrent_activation, h, sequence
        As in `lstm`.

    Notes
    -----
    With :math:`x = x_t W_x + b_x`:

    .. math::
        z &= \sigma(x_z + h_{t-1} U_z [+ b_z']), \quad r = \sigma(x_r + h_{t-1} U_r [+ b_r']) \\
        \tilde h &= \mathrm{act}(x_h + r \odot (h_{t-1} U_h + b_h'))
            \text{ (reset\_after) or } \mathrm{act}(x_h + (r \odot h_{t-1}) U_h) \\
        h_t &= z \odot h_{t-1} + (1 - z) \odot \tilde h
    """
    act = activations.by_code(activation)
    rec_act = activations.by_code(recurrent_activation)
    units = h.shape[1]
    for t in range(x.shape[1]):
        x_zr, x_h = np.split(x[:, t] @ kernel + input_bias, [2 * units], axis=1)
        if reset_after:
            g_zr, g_h = np.split(h @ recurrent_kernel + recurrent_bias, [2 * units], axis=1)
            z, r = np.split(rec_act(x_zr + g_zr), 2, axis=1)
            candidate = act(x_h + r * g_h)
        else:
            z, r = np.split(rec_act(x_zr + h @ recurrent_kernel[:, :2 * units]), 2, axis=1)
            candidate = act(x_h + (r * h) @ recurrent_kernel[:, 2 * units:])
        h_new = z * h + (1 - z) * candidate
        _update(t, mask, (h,), (h_new,), sequence)


def _update(t, mask, states, new_states, sequence):
    """Store step t's states, keeping the old ones where the step is masked."""
    keep = mask[:, t, None] != 0 if mask.size else True
    for state, new in zip(states, new_states):
        state[...] = np.where(keep, new, state)
    if sequence.size:
        sequence[:, t] = states[0]
