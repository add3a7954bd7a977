"""Streaming inference: a model fed one timestep, or one chunk of timesteps, at a time.

A `Stream` keeps every recurrent layer's state between calls, so that feeding a sequence in
pieces gives exactly the outputs of the whole-sequence call for those steps. This is the
embedded use: a sensor reading, an audio frame or a token arrives, the model advances one step.
"""
import numpy as np

from . import backends
from . import layers as L
from . import recurrent as R
from .recurrent import _EMPTY_SEQUENCE

__all__ = ["Stream"]

# Layers that act on each timestep alone, so they stream as they are.
_PER_STEP = (L.Dense, L.Activation, L.Dropout, L.SpatialDropout1D, L.GaussianNoise, L.GaussianDropout,
             L.TimeDistributed)


def _why_not(layer):
    """Why `layer` cannot run in a stream, or None if it can."""
    if isinstance(layer, R.Bidirectional):
        return "its backward direction starts from the end of the sequence"
    if isinstance(layer, R._RNN):
        return "it runs backwards (go_backwards)" if layer.go_backwards else None
    if isinstance(layer, L.Embedding):
        return "its mask_zero padding mask needs the whole sequence" if layer.mask_zero else None
    if isinstance(layer, _PER_STEP):
        return None
    return "it mixes timesteps or masks them"


class Stream:
    """Run a Sequential model over sequences that arrive piece by piece.

    Parameters
    ----------
    model : Sequential
        Stacked SimpleRNN, LSTM and GRU layers (not ``go_backwards``) with per-step layers around
        them (Dense, TimeDistributed, Activation, Embedding without ``mask_zero``, dropouts).
    batch_size : int, default 1
        How many sequences advance together.

    Notes
    -----
    ``stream(chunk)`` for a chunk ``(batch, n, input_dim)`` returns what the whole-sequence call
    returns for those n steps: ``(batch, n, ...)`` where the model returns sequences, or the
    output after the chunk's last step where it returns the last step only. ``stream.step(x_t)``
    takes ``(batch, input_dim)`` and returns one step's output. ``reset()`` starts new sequences;
    ``states`` reads and sets the recurrent states (a list per recurrent layer). A stream holds
    state, so give each thread its own.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> model = fastrnn.Sequential([fastrnn.Input((None, 3)), fastrnn.LSTM(8, return_sequences=True),
    ...                             fastrnn.Dense(1)])
    >>> stream = model.stream()
    >>> outputs = [stream.step(np.ones((1, 3))) for _ in range(5)]
    >>> np.allclose(np.stack(outputs, axis=1), model(np.ones((1, 5, 3))))
    True
    """

    def __init__(self, model, batch_size=1):
        from .models import Sequential

        if not isinstance(model, Sequential):
            raise TypeError(f"a stream runs a Sequential model, got {type(model).__name__}")
        for layer in model.layers:
            reason = _why_not(layer)
            if reason is not None:
                raise ValueError(f"model {model.name!r} cannot stream: layer {layer.name!r} "
                                 f"({type(layer).__name__}) cannot, because {reason}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model = model
        self.batch_size = int(batch_size)
        self._recurrent = [layer for layer in model.layers if isinstance(layer, R._RNN)]
        # A model whose last recurrent layer returns sequences gives (batch, n, ...) per chunk.
        self._sequence_output = not self._recurrent or self._recurrent[-1].return_sequences
        self._fast_step = False
        self.reset()

    def reset(self):
        """Start new sequences: every recurrent state back to zeros."""
        self._states = [[np.zeros((self.batch_size, size), layer.dtype) for size in layer._sizes]
                        for layer in self._recurrent]

    @property
    def states(self):
        """Copies of the recurrent states: one list per recurrent layer (``[h]``, or ``[h, c]``)."""
        return [[state.copy() for state in layer_states] for layer_states in self._states]

    @states.setter
    def states(self, values):
        values = list(values)
        if len(values) != len(self._recurrent):
            raise ValueError(f"the stream has {len(self._recurrent)} recurrent layers, got states for {len(values)}")
        checked = []
        for layer, given in zip(self._recurrent, values):
            checked.append(layer._initial_states(given, self.batch_size))
        self._states = checked

    def __call__(self, chunk):
        """Advance every sequence by the steps of `chunk` ``(batch, n, ...)``; see the class notes."""
        x = np.asarray(chunk)
        if x.ndim < 2 or x.shape[0] != self.batch_size:
            raise ValueError(f"a stream of batch_size {self.batch_size} takes chunks of shape "
                             f"({self.batch_size}, steps, ...), got {x.shape}")
        recurrent = 0
        for layer in self.model.layers:
            if isinstance(layer, R._RNN):
                x, states = layer._forward(x, self._states[recurrent], None, layer.return_sequences)
                # The state stays the stream's own: never an array handed back to the caller.
                self._states[recurrent] = [s.copy() if s is x else s for s in states]
                recurrent += 1
            else:
                x = layer.call(x)
        return x

    def step(self, x_t):
        """Advance every sequence by one timestep `x_t` ``(batch, ...)``; return that step's output.

        The embedded hot path: after the first step's checks, each recurrent layer's kernel
        updates the stream's states in place, with no per-step validation or copies.
        """
        x = np.asarray(x_t)
        if self._fast_step and x.shape == self._step_shape and x.dtype == self._step_dtype:
            return self._step_in_place(x)
        output = self(x[:, None])
        self._fast_step = self._can_step_fast(x)
        return output[:, 0] if self._sequence_output else output

    def _can_step_fast(self, x):
        """Whether later steps shaped like `x` can skip the checks (the first layer is recurrent)."""
        self._step_shape, self._step_dtype = x.shape, x.dtype
        first = self.model.layers[0] if self.model.layers else None
        return (isinstance(first, R._RNN) and x.ndim == 2 and x.dtype == first.dtype
                and x.shape[1] == first.input_shape[-1])

    def _step_in_place(self, x):
        empty_mask = np.empty((0, 0), np.uint8)
        recurrent = 0
        x = np.ascontiguousarray(x)
        for layer in self.model.layers:
            if isinstance(layer, R._RNN):
                states = self._states[recurrent]
                # One timestep, time-major: (1, batch, features); the kernel updates the states.
                layer._run(backends.kernels_for(layer.dtype), x[None], empty_mask, states,
                           _EMPTY_SEQUENCE[layer.dtype])
                x = states[0]
                recurrent += 1
            else:
                x = layer.call(x)
        # The last state is the stream's own, updated in place by the next step: hand out a copy.
        return x.copy() if recurrent and x is self._states[recurrent - 1][0] else x
