"""Streaming inference: a model fed one timestep, or one chunk of timesteps, at a time.

A `Stream` keeps every recurrent layer's state between calls, so that feeding a sequence in
pieces gives exactly the outputs of the whole-sequence call for those steps. This is the
embedded use: a sensor reading, an audio frame or a token arrives, the model advances one step.
"""
import numpy as np

from . import backends
from . import layers as L
from . import recurrent as R
from .models import _adjust_rank
from .recurrent import _EMPTY_MASK as _NO_MASK

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
    if isinstance(layer, L.TimeDistributed):
        from .models import _within

        if any(getattr(inner, "stateful", False) for inner in _within([layer.layer])):
            return "it wraps a stateful layer, whose state would move on at every step"
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
        required = model._required_batch
        if required is not None and batch_size != required:
            raise ValueError(f"model {model.name!r} has stateful layers declared for batches of {required}: "
                             f"a stream of it takes batch_size={required}, not {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self._recurrent = [layer for layer in model.layers if isinstance(layer, R._RNN)]
        # A model whose last recurrent layer returns sequences gives (batch, n, ...) per chunk.
        self._sequence_output = not self._recurrent or self._recurrent[-1].return_sequences
        self._first_step = None
        self.reset()

    def reset(self):
        """Start new sequences: every recurrent state back to zeros."""
        self._states = [[np.zeros((self.batch_size, size), layer.dtype) for size in layer._sizes]
                        for layer in self._recurrent]
        self._first_step = None   # it was bound to the old state arrays

    @property
    def states(self):
        """Copies of the recurrent states: one list per recurrent layer (``[h]``, or ``[h, c]``)."""
        return [[state.copy() for state in layer_states] for layer_states in self._states]

    @states.setter
    def states(self, values):
        try:
            values = list(values)
        except TypeError:
            raise TypeError(f"stream states are a list of one list of states per recurrent layer, got "
                            f"{type(values).__name__}") from None
        if len(values) != len(self._recurrent):
            raise ValueError(f"the stream has {len(self._recurrent)} recurrent layers, got states for {len(values)}")
        checked = []
        for layer, given in zip(self._recurrent, values):
            checked.append(layer._initial_states(given, self.batch_size))
        self._states = checked
        self._first_step = None

    def __call__(self, chunk):
        """Advance every sequence by the steps of `chunk` ``(batch, n, ...)``; see the class notes."""
        x = np.asarray(chunk)
        declared = self.model.input_shape
        if declared is not None:   # a univariate model's feature axis of 1 may be left out, as in its call
            x = _adjust_rank(x, declared)
        if x.ndim < 2 or x.shape[0] != self.batch_size:
            raise ValueError(f"a stream of batch_size {self.batch_size} takes chunks of shape "
                             f"({self.batch_size}, steps, ...), got {x.shape}")
        recurrent = 0
        for layer in self.model.layers:
            if isinstance(layer, R._RNN):
                x, states = layer._forward(x, self._states[recurrent], None, layer.return_sequences)
                # Copied into the stream's own arrays: never one handed back to the caller, and
                # the prepared steps stay bound to them.
                for own, new in zip(self._states[recurrent], states):
                    own[...] = new
                recurrent += 1
            else:
                x = layer.call(x)
        return x

    def step(self, x_t):
        """Advance every sequence by one timestep `x_t` ``(batch, ...)``; return that step's output.

        The embedded hot path: once a step of this shape has passed the checks, each layer is a
        prepared call and each recurrent kernel updates the stream's states in place, with no
        validation, allocation or copy but the returned output's.
        """
        first = self._first_step
        if (first is not None and self._weights_generation == R.weights_generation
                and self._selection == backends.selections):
            if self._checked_in_c:
                # The compiled step checks its input (shape, dtype, layout) before it touches a
                # state; what it refuses takes the general path below, which converts or explains.
                try:
                    x = first(x_t)
                except (TypeError, ValueError):
                    x = None
            else:
                x = x_t if type(x_t) is np.ndarray else np.asarray(x_t)
                fits = x.shape == self._step_shape and x.dtype is self._step_dtype
                x = first(x) if fits else None
            if x is not None:
                for run in self._next_steps:
                    x = run(x)
                # A last state is the stream's own, updated in place next step: hand out a copy.
                return x.copy() if self._copy_last else x
        x = np.asarray(x_t)
        declared = self.model.input_shape
        if declared is not None:   # a step is the input without its time axis
            x = _adjust_rank(x, declared[:1] + declared[2:])
        if (x.ndim < 1 or x.shape[0] != self.batch_size
                or (declared is not None and x.ndim != len(declared) - 1)):   # (named as given, not as a chunk)
            step = (self.batch_size,) + tuple(declared[2:]) if declared else f"({self.batch_size}, ...)"
            raise ValueError(f"a stream of batch_size {self.batch_size} takes steps of shape {step}, got {x.shape}")
        output = self(x[:, None])
        self._prepare_steps(x)
        return output[:, 0] if self._sequence_output else output

    def _prepare_steps(self, x):
        """Bind each layer's step to the stream's current states and weights, when the fast path
        applies (the first layer recurrent, `x` of its dtype)."""
        self._first_step, self._step_shape, self._step_dtype = None, x.shape, x.dtype
        first = self.model.layers[0] if self.model.layers else None
        if not (isinstance(first, R._RNN) and x.ndim == 2 and x.dtype == first.dtype
                and x.shape[1] == first.input_shape[-1]):
            return
        # Read before binding: weights set (or a backend chosen) while the steps bind make the
        # next step bind again.
        generation, selection = R.weights_generation, backends.selections
        steps, recurrent = [], iter(self._states)
        for layer in self.model.layers:
            if isinstance(layer, R._RNN):
                steps.append(_recurrent_step(layer, next(recurrent)))
            elif isinstance(layer, L.TimeDistributed):     # it takes (batch, timesteps, ...)
                steps.append(lambda x, layer=layer: layer.call(x[:, None])[:, 0])
            else:
                steps.append(layer.call)
        self._first_step, self._next_steps = steps[0], steps[1:]
        self._weights_generation, self._selection = generation, selection
        # With the compiled backend every recurrent step is a Step, which returns a copy of h.
        self._checked_in_c = isinstance(steps[0], getattr(backends.kernels(), "Step", ()))
        self._copy_last = isinstance(self.model.layers[-1], R._RNN) and not self._checked_in_c


def _recurrent_step(layer, states):
    """One timestep of `layer` on (batch, features), updating `states` in place; returns h (the
    compiled backend's Step returns a copy of it, the others the state itself)."""
    kernels = backends.kernels()
    function, arguments = layer._kernel_call(kernels, layer._kernel_weights, None, _NO_MASK, states,
                                             layer._no_sequence)
    if hasattr(kernels, "Step"):
        return kernels.Step(function, arguments)   # binds the weights and states in C, once
    h, rest = states[0], arguments[1:]

    def run(x):
        function(x[:, None], *rest)   # (batch, 1 step, features)
        return h
    return run
