"""Recurrent layers with Keras's names, arguments, weight layout and semantics.

One private base, `_RNN`, owns everything around the recurrence: weights and their
initialisation, dtype, input validation, the input projection, ``go_backwards``, masks and
output assembly. A cell class declares its gate count and which kernel runs it. Kernels come from
the backend registry (fastrnn/backends.py) and only loop.
"""
import itertools
import threading

import numpy as np

from . import activations, backends

__all__ = ["SimpleRNN"]

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_NAME_COUNTERS = {}
_NAME_LOCK = threading.Lock()


def _unique_name(base):
    # Keras numbers layers of the same class: simple_rnn, simple_rnn_1, ...
    with _NAME_LOCK:
        n = next(_NAME_COUNTERS.setdefault(base, itertools.count()))
    return base if n == 0 else f"{base}_{n}"


def _layer_dtype(dtype):
    try:
        return _DTYPES[np.dtype(dtype).name]
    except (TypeError, KeyError):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None


def _as_numeric(value, what, dtype):
    """`value` as an array of `dtype`, refusing what cannot be a number without loss."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def glorot_uniform(shape, rng, dtype):
    """Keras's ``glorot_uniform``: U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def orthogonal(shape, rng, dtype):
    """Keras's ``orthogonal``: orthonormal rows or columns from the QR of a normal matrix."""
    rows, cols = shape
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q *= np.sign(np.diag(r))  # makes the decomposition unique, hence uniformly distributed
    return (q.T if rows < cols else q).astype(dtype)


class _RNN:
    """Weights, dtype and call orchestration shared by SimpleRNN, LSTM and GRU."""

    _gates = 1
    _base_name = "rnn"

    def __init__(self, units, activation, use_bias, return_sequences, return_state,
                 go_backwards, dtype, seed, name, weights, input_shape, batch_input_shape):
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units = int(units)
        self._activation = activations.code(activation)
        self.activation = "linear" if activation is None else activation.lower()
        self.use_bias = bool(use_bias)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.dtype = _layer_dtype(dtype)
        self.seed = seed
        self.name = name or _unique_name(self._base_name)
        if batch_input_shape is not None:
            self.batch_input_shape = tuple(batch_input_shape)
        elif input_shape is not None:
            self.batch_input_shape = (None, *input_shape)
        else:
            self.batch_input_shape = None
        self.kernel = self.recurrent_kernel = self.bias = None
        self._build_lock = threading.Lock()
        if weights is not None:
            self.set_weights(weights)
        elif self.batch_input_shape is not None:
            self.build(self.batch_input_shape)

    # ----------------------------------------------------------------- weights
    @property
    def built(self):
        """Whether the layer has weights."""
        return self.kernel is not None

    @property
    def input_dim(self):
        """The size of the last input axis, or None before the layer is built."""
        return None if self.kernel is None else self.kernel.shape[0]

    def _weight_shapes(self, input_dim):
        width = self._gates * self.units
        shapes = {"kernel": (input_dim, width), "recurrent_kernel": (self.units, width)}
        if self.use_bias:
            shapes["bias"] = (width,)
        return shapes

    def build(self, input_shape):
        """Create Keras-initialised weights for inputs whose last axis is ``input_shape[-1]``.

        The kernel is glorot_uniform, the recurrent kernel orthogonal and the bias zero, drawn
        from ``numpy.random.default_rng(seed)``. A layer that already has weights is unchanged.

        Parameters
        ----------
        input_shape : tuple of int or None
            ``(batch, timesteps, input_dim)``; only ``input_dim`` is used.
        """
        input_dim = input_shape[-1]
        if isinstance(input_dim, bool) or not isinstance(input_dim, (int, np.integer)) or input_dim < 1:
            raise ValueError(
                f"layer {self.name!r} needs a positive input_dim (last axis of the input shape), "
                f"got input shape {tuple(input_shape)}"
            )
        with self._build_lock:  # two threads calling an unbuilt layer must agree on its weights
            if self.built:
                return
            rng = np.random.default_rng(self.seed)
            shapes = self._weight_shapes(int(input_dim))
            weights = [glorot_uniform(shapes["kernel"], rng, self.dtype),
                       orthogonal(shapes["recurrent_kernel"], rng, self.dtype)]
            if self.use_bias:
                weights.append(np.zeros(shapes["bias"], self.dtype))
            self._assign(weights)

    def get_weights(self):
        """Return copies of the weights in Keras order: kernel, recurrent_kernel[, bias].

        Returns
        -------
        list of ndarray
            ``kernel (input_dim, G*units)``, ``recurrent_kernel (units, G*units)``, and
            ``bias (G*units,)`` when ``use_bias``; G is 1 for SimpleRNN. Empty before build.
        """
        if not self.built:
            return []
        weights = [self.kernel, self.recurrent_kernel] + ([self.bias] if self.use_bias else [])
        return [w.copy() for w in weights]

    def set_weights(self, weights):
        """Set the weights from arrays in Keras layout (as `get_weights` returns them).

        Parameters
        ----------
        weights : sequence of array_like
            ``[kernel (input_dim, G*units), recurrent_kernel (units, G*units), bias (G*units,)]``,
            without the bias when ``use_bias=False``. They are cast to the layer's dtype.

        Raises
        ------
        ValueError
            If the count or a shape is wrong, or `input_dim` differs from the built layer's.
        TypeError
            If a weight is not a real numeric array.
        """
        if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__"):
            raise TypeError(f"layer {self.name!r} expects a list of weight arrays, got {type(weights).__name__}")
        names = list(self._weight_shapes(0))
        if len(weights) != len(names):
            raise ValueError(
                f"layer {self.name!r} expects {len(names)} weights ({', '.join(names)}), got {len(weights)}"
            )
        arrays = [_as_numeric(w, f"{n} of layer {self.name!r}", self.dtype) for n, w in zip(names, weights)]
        if arrays[0].ndim != 2:
            raise ValueError(
                f"expected a 2-D kernel for layer {self.name!r}, got shape {arrays[0].shape}"
            )
        input_dim = arrays[0].shape[0] if self.input_dim is None else self.input_dim
        for n, array in zip(names, arrays):
            expected = self._weight_shapes(input_dim)[n]
            if array.shape != expected:
                raise ValueError(
                    f"expected {n} of shape {expected} for layer {self.name!r}, got {array.shape}"
                )
        self._assign(arrays)

    def _assign(self, arrays):
        # Contiguous, private, read-only copies: the kernels read them without copying, and
        # callers holding the arrays they passed in cannot change the layer behind its back.
        arrays = [np.array(a, dtype=self.dtype, order="C") for a in arrays]
        for a in arrays:
            a.flags.writeable = False
        self.kernel, self.recurrent_kernel = arrays[:2]
        self.bias = arrays[2] if self.use_bias else None

    @property
    def weights(self):
        """The weights as read-only arrays, in Keras order (no copies)."""
        return [w for w in (self.kernel, self.recurrent_kernel, self.bias) if w is not None]

    def count_params(self):
        """Return the number of weights, as Keras counts them.

        Raises
        ------
        ValueError
            If the layer is not built yet (its input size is unknown).
        """
        if not self.built:
            raise ValueError(
                f"layer {self.name!r} is not built: give it input_shape= or call it on data first"
            )
        return sum(w.size for w in self.weights)

    # ----------------------------------------------------------------- shapes
    def compute_output_shape(self, input_shape):
        """Return the output shape for inputs of shape ``(batch, timesteps, input_dim)``.

        Returns
        -------
        tuple or list of tuple
            ``(batch, units)``, or ``(batch, timesteps, units)`` with ``return_sequences``; with
            ``return_state``, a list of that and one ``(batch, units)`` per state.
        """
        batch, timesteps = tuple(input_shape)[:2]
        output = (batch, timesteps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output] + [(batch, self.units)] * self._n_states
        return output

    _n_states = 1

    @property
    def output_shape(self):
        """The output shape for the declared ``input_shape`` / ``batch_input_shape``."""
        if self.batch_input_shape is None:
            raise AttributeError(f"layer {self.name!r} has no declared input shape")
        return self.compute_output_shape(self.batch_input_shape)

    # ----------------------------------------------------------------- call
    def _check_inputs(self, inputs):
        x = np.asarray(inputs)
        if x.dtype.kind not in "fiu":
            raise TypeError(
                f"input to layer {self.name!r} must be a real numeric array, got dtype {x.dtype}"
            )
        if x.ndim != 3:
            raise ValueError(
                f"input to layer {self.name!r} must have shape (batch, timesteps, input_dim), "
                f"got shape {x.shape}"
            )
        if x.shape[1] == 0:
            raise ValueError(f"input to layer {self.name!r} has 0 timesteps, shape {x.shape}")
        if not self.built:
            self.build(x.shape)
        if x.shape[2] != self.input_dim:
            raise ValueError(
                f"layer {self.name!r} expects input_dim {self.input_dim}, got input of shape {x.shape}"
            )
        return x

    def _check_mask(self, mask, shape):
        mask = np.asarray(mask)
        if mask.dtype.kind not in "biu":
            raise TypeError(f"mask for layer {self.name!r} must be boolean, got dtype {mask.dtype}")
        if mask.shape != shape:
            raise ValueError(
                f"mask for layer {self.name!r} must have shape (batch, timesteps) = {shape}, "
                f"got {mask.shape}"
            )
        return mask.astype(bool, copy=False)

    def _initial_states(self, initial_state, batch):
        if initial_state is None:
            return [np.zeros((batch, self.units), self.dtype) for _ in range(self._n_states)]
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != self._n_states:
            raise ValueError(
                f"layer {self.name!r} expects {self._n_states} initial state array(s), got {len(states)}"
            )
        checked = []
        for state in states:
            state = _as_numeric(state, f"initial_state of layer {self.name!r}", self.dtype)
            if state.shape != (batch, self.units):
                raise ValueError(
                    f"expected initial_state of shape {(batch, self.units)} for layer {self.name!r}, "
                    f"got {state.shape}"
                )
            # The kernel overwrites the state in place: never the caller's array.
            checked.append(np.array(state, order="C"))
        return checked

    def __call__(self, inputs, initial_state=None, mask=None):
        """Run the layer on a batch of sequences.

        Parameters
        ----------
        inputs : array_like, shape (batch, timesteps, input_dim)
            Cast to the layer's dtype; any memory layout is accepted.
        initial_state : array_like or list of array_like, optional
            The state before the first step, shape ``(batch, units)`` each; zeros by default.
        mask : array_like of bool, shape (batch, timesteps), optional
            False skips a step: the state is carried over and the previous output repeated
            (zeros before a sequence's first unmasked step), as in Keras.

        Returns
        -------
        ndarray or list of ndarray
            ``(batch, units)``, or ``(batch, timesteps, units)`` with ``return_sequences``
            (in processing order, i.e. reversed with ``go_backwards``); with ``return_state``,
            ``[output, *final_states]``.
        """
        x = self._check_inputs(inputs)
        batch, timesteps, input_dim = x.shape
        if mask is not None:
            mask = self._check_mask(mask, (batch, timesteps))
        states = self._initial_states(initial_state, batch)
        if self.go_backwards:
            x = x[:, ::-1]
            mask = None if mask is None else mask[:, ::-1]

        # The input projection for every timestep at once: one (B*T, I) x (I, G*U) matmul.
        x = np.ascontiguousarray(x, dtype=self.dtype).reshape(batch * timesteps, input_dim)
        projected = x @ self.kernel
        if self.use_bias:
            projected += self.bias
        projected = projected.reshape(batch, timesteps, self.kernel.shape[1])

        sequence = np.empty((batch, timesteps, self.units) if self.return_sequences else (0, 0, 0),
                            self.dtype)
        kernel_mask = (np.empty((0, 0), np.uint8) if mask is None
                       else np.ascontiguousarray(mask).view(np.uint8))
        self._run(backends.kernels(), projected, kernel_mask, states, sequence)

        if self.return_sequences:
            output = sequence
        else:
            output = states[0].copy()
        if mask is not None:
            # Keras's previous output starts at zeros: outputs before a row's first unmasked step
            # (all of them for a fully masked row) are zeros, whatever the initial state.
            started = np.logical_or.accumulate(mask, axis=1)
            if self.return_sequences:
                output[~started] = 0
            else:
                output[~started[:, -1]] = 0
        return [output, *states] if self.return_state else output

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} units={self.units}>"


class SimpleRNN(_RNN):
    """Fully-connected RNN whose output is fed back as the next input, as ``keras.layers.SimpleRNN``.

    Parameters
    ----------
    units : int
        Size of the state and of the output.
    activation : str or None, default "tanh"
        Keras activation name (see `fastrnn.activations.CODES`); None is linear.
    use_bias : bool, default True
    return_sequences : bool, default False
        Return every step's output ``(batch, timesteps, units)`` instead of the last ``(batch, units)``.
    return_state : bool, default False
        Also return the final state: ``[output, h]``.
    go_backwards : bool, default False
        Process time in reverse; the returned sequence is in processing order, as in Keras.
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
        Seed of the Keras-style initialisation used when no weights are given.
    name : str, optional
        Defaults to ``simple_rnn``, ``simple_rnn_1``, ...
    weights : list of array_like, optional
        ``[kernel (input_dim, units), recurrent_kernel (units, units), bias (units,)]``.
    input_shape : tuple, optional
        ``(timesteps, input_dim)``; builds the layer at once (Keras 2 style).
    batch_input_shape : tuple, optional
        ``(batch, timesteps, input_dim)``; builds the layer at once (Keras 2 style).

    Notes
    -----
    .. math:: h_t = \\mathrm{act}(x_t W_x + h_{t-1} W_h + b)

    with ``W_x = kernel``, ``W_h = recurrent_kernel``, ``b = bias`` and ``h_0 = initial_state``
    (zeros by default). The output at step t is ``h_t``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> layer = fastrnn.SimpleRNN(3, input_shape=(2, 10), seed=0)
    >>> layer.count_params()
    42
    >>> layer(np.ones((8, 2, 10))).shape
    (8, 3)
    """

    _gates = 1
    _base_name = "simple_rnn"

    def __init__(self, units, activation="tanh", use_bias=True, return_sequences=False,
                 return_state=False, go_backwards=False, dtype="float32", seed=None, name=None,
                 weights=None, input_shape=None, batch_input_shape=None):
        super().__init__(units, activation, use_bias, return_sequences, return_state, go_backwards,
                         dtype, seed, name, weights, input_shape, batch_input_shape)

    def _run(self, kernels, projected, mask, states, sequence):
        kernels.simple_rnn(projected, self.recurrent_kernel, mask, self._activation, states[0], sequence)
