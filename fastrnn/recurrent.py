"""Recurrent layers with Keras's names, arguments, weight layout and semantics.

`_RNN` owns everything around the recurrence: validation, the input projection, ``go_backwards``,
masks, initial states and the assembly of outputs. SimpleRNN, LSTM and GRU declare their gate
count, states and weights, and which kernel runs them. Kernels come from the backend registry
(fastrnn/backends.py) and only loop. `Bidirectional` composes two of them.
"""
import copy
import functools

import numpy as np

from . import activations, backends, parallel
from .base import Layer, Symbolic, as_numeric, build_lock, flag, from_spec, plain_config, positive_int, wrapped_dtype
from .initializers import glorot_uniform

__all__ = ["GRU", "LSTM", "Bidirectional", "SimpleRNN"]


_EMPTY_MASK = np.empty((0, 0), np.uint8)
_EMPTY_SEQUENCE = {np.dtype(t): np.empty((0, 0, 0), t) for t in (np.float32, np.float64)}
_EMPTY_PROJECTION = {np.dtype(t): np.empty((0, 0), t) for t in (np.float32, np.float64)}
weights_generation = 0   # counts the weight assignments of every recurrent layer (streams rebind)


def _run_calls(x, calls, step_work):
    """Run the kernels of calls prepared by `_prepare` on their input `x`, each call
    ``(layer, weights, kernel_mask, states, sequence)``: side by side and their rows split among the
    threads where that pays (`step_work`: multiply-adds per row and step of the smallest),
    else one after another."""
    batch, timesteps, _ = x.shape
    kernels = backends.kernels()
    work = len(calls) * batch * timesteps * step_work
    rows, team = (), False
    if ((work >= 2 * parallel.MIN_WORK_PER_TEAM_PART or work >= 2 * parallel.MIN_WORK_PER_PART)   # else no split
            and not _shares_steps(kernels, x, calls, step_work)):
        rows, team = parallel.batch_parts(batch, timesteps * step_work, kernels, len(calls),
                                          functools.partial(_splits_by_speed, kernels, x, calls),
                                          _part_rows(kernels, x, calls))
    if rows:
        _run_parts(kernels, x, [call + (part,) for call in calls for part in rows], team)
    elif batch:     # (the kernels may still share each step among their threads)
        for layer, weights, mask, states, sequence in calls:
            # The kernels read x as it lies (time reversed: a view).
            function, arguments = layer._kernel_call(kernels, weights, x[:, ::-1] if layer.go_backwards else x,
                                                     mask, states, sequence)
            function(*arguments)


def _ask_kernels(kernels, question, x, calls):
    """The compiled kernels' answer to `question` (the name of one of their functions of a kernel
    call) about the single call in `calls`; None for several calls, or kernels without it."""
    if len(calls) != 1 or not hasattr(kernels, question):
        return None
    layer, weights, mask, states, sequence = calls[0]
    return getattr(kernels, question)(*layer._kernel_call(kernels, weights, x, mask, states, sequence))


def _splits_by_speed(kernels, x, calls):
    """Whether a single call may be split into row parts sized by the threads' speeds: where the
    compiled kernels say its bits do not depend on the split (`splits_by_speed`)."""
    return bool(_ask_kernels(kernels, "splits_by_speed", x, calls))


def _part_rows(kernels, x, calls):
    """The fewest rows a row part of these calls should have: the compiled kernels' answer for the
    first (`part_rows`, more than 1 for products in AMX tiles) while they run any there, else 1
    (asked, the check of a call cost 1 us)."""
    if not (hasattr(kernels, "products_use_amx") and kernels.products_use_amx()):
        return 1
    return _ask_kernels(kernels, "part_rows", x, calls[:1]) or 1


def _shares_steps(kernels, x, calls, step_work):
    """Whether a single call with large weights (parallel.SLICES_FROM_WEIGHT_BYTES) runs on the
    compiled kernels' threads sharing each step, rather than split into row parts: where its
    kernel can share its steps (`threads_for_call`)."""
    return (step_work * x.itemsize > parallel.SLICES_FROM_WEIGHT_BYTES
            and (_ask_kernels(kernels, "threads_for_call", x, calls) or 0) > 1)


def _run_parts(kernels, x, parts, team):
    """Run independent kernel calls on `x` at once: each part ``(layer, weights, kernel_mask,
    states, sequence, rows)`` is `layer` on those rows (a slice) of a call prepared by its `_prepare`.
    They run on the threads of `fastrnn.set_num_threads`: those of the compiled kernels' `team`,
    else a Python pool.

    Rows are independent sequences, and so are the two directions of a Bidirectional layer, so
    each thread runs a whole recurrence, writing its slice of the states and the sequence: no
    step-by-step handshake.
    """
    if team:
        # The compiled kernels run the parts on their own threads, which wait for work spinning
        # for a while: handing a part to a Python thread cost 0.1-2 ms here (its core asleep).
        kernels.run_parts([layer._kernel_call(kernels, weights, x[rows, ::-1] if layer.go_backwards else x[rows],
                                              mask[rows], [state[rows] for state in states], sequence[rows])
                           for layer, weights, mask, states, sequence, rows in parts])
        return
    # Inside a part nothing is split again: each runs its call whole.
    parallel.run(*(functools.partial(_run_calls, x[rows], [(layer, weights, mask[rows],
                                                            [state[rows] for state in states], sequence[rows])],
                                     layer._step_work)
                   for layer, weights, mask, states, sequence, rows in parts))


class _RNN(Layer):
    """Weights, dtype and call orchestration shared by SimpleRNN, LSTM and GRU."""

    _gates = 1
    _n_states = 1
    _has_recurrent_activation = False
    _has_weights = True
    _config_keys = ("units", "activation", "use_bias", "return_sequences", "return_state",
                    "go_backwards", "stateful", "zero_output_for_mask")
    _initializers = {"kernel_initializer": "glorot_uniform", "recurrent_initializer": "orthogonal",
                     "bias_initializer": "zeros"}
    _training_options = ("use_cudnn", "implementation")

    def __init__(self, units, activation, use_bias, return_sequences, return_state, go_backwards,
                 dtype, seed, name, weights, input_shape, batch_input_shape, recurrent_activation=None,
                 zero_output_for_mask=False, stateful=False, dropout=0.0, recurrent_dropout=0.0, unroll=False,
                 input_dim=None, input_length=None, time_major=False, **keras_options):
        if time_major:   # (Keras 2's option; Keras 2 configs carry time_major=False)
            raise ValueError("time_major=True is not supported: fastrnn takes inputs (batch, timesteps, features)")
        if input_shape is None and (input_dim is not None or input_length is not None):
            input_shape = (input_length, input_dim)   # Keras 2's way of saying it
        super().__init__(name, dtype, input_shape, batch_input_shape, **keras_options)
        self.units = positive_int(units, f"units of layer {self.name!r}")
        self._sizes = tuple(self._state_sizes())
        self._no_sequence = _EMPTY_SEQUENCE[self.dtype]   # the kernels' "skip the sequence" output
        self._activation = activations.code(activation, self.name)
        self.activation = "linear" if activation is None else activation.lower()
        if self._has_recurrent_activation:
            self._recurrent_activation = activations.code(recurrent_activation, self.name)
            self.recurrent_activation = ("linear" if recurrent_activation is None
                                         else recurrent_activation.lower())
        self.use_bias = flag(use_bias, f"use_bias of layer {self.name!r}")
        self.return_sequences = flag(return_sequences, f"return_sequences of layer {self.name!r}")
        self.return_state = flag(return_state, f"return_state of layer {self.name!r}")
        self.go_backwards = flag(go_backwards, f"go_backwards of layer {self.name!r}")
        self.zero_output_for_mask = flag(zero_output_for_mask, f"zero_output_for_mask of layer {self.name!r}")
        # A stateful layer starts each call from the states its previous call ended with, as in
        # Keras; those states are shared by every caller, so such a layer is not for threads.
        self.stateful = flag(stateful, f"stateful of layer {self.name!r}")
        self._carried = None
        # Training-time options, accepted so Keras code runs as written; inference ignores them.
        self.dropout, self.recurrent_dropout, self.unroll = dropout, recurrent_dropout, unroll
        self.seed = seed
        if weights is not None:
            self.set_weights(weights)
        elif self.batch_input_shape is not None:
            self.build(self.batch_input_shape)

    # ----------------------------------------------------------------- weights
    def _weight_shapes(self, input_shape):
        width = self._gates * self.units
        shapes = {"kernel": (input_shape[-1], width), "recurrent_kernel": (self._state_sizes()[0], width)}
        if self.use_bias:
            shapes["bias"] = (width,)
        return shapes

    def _initial_weights(self, shapes, rng):
        weights = [self._initial("kernel_initializer", shapes["kernel"], rng),
                   self._initial("recurrent_initializer", shapes["recurrent_kernel"], rng)]
        if self.use_bias:
            weights.append(self._initial("bias_initializer", shapes["bias"], rng))
        return weights

    def _input_shape_from_weights(self, weights):
        if weights[0].ndim != 2:
            raise ValueError(f"expected a 2-D kernel for layer {self.name!r}, got shape {weights[0].shape}")
        return (None, None, weights[0].shape[0])

    def _check_build_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or not isinstance(input_shape[-1], (int, np.integer)) or input_shape[-1] < 1:
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) needs inputs of shape "
                f"(batch, timesteps, input_dim) with a positive input_dim, got {input_shape}"
            )
        return input_shape

    def _on_weights_set(self):
        # Laid out once for the kernels, in one attribute that a call reads once (`_prepare`) and
        # passes to each of its parts: a call running while set_weights replaces the weights
        # takes all the old ones or all the new.
        self._kernel_weights = self._laid_out()
        self._step_work = self.kernel.size + self.recurrent_kernel.size   # multiply-adds per row and step
        # Streams bind the weight arrays once (fastrnn/streaming.py); this tells them to rebind.
        global weights_generation
        weights_generation += 1

    def _laid_out(self):
        """The weights as the kernel takes them: ``(kernel, bias, recurrent_kernel)``, the bias
        zeros without one."""
        bias = self.bias if self.use_bias else np.zeros(self.kernel.shape[1], self.dtype)
        return self.kernel, bias, self.recurrent_kernel

    def _kernel_call(self, kernels, weights, x, mask, states, sequence):
        """The kernel and all its arguments, the inputs `x` (B, T, I) first, with `weights` (the
        layer's `_kernel_weights` when the call began): ``function(*arguments)`` runs it. (A
        prebuilt tuple passes faster than ``function(x, *rest)``: 0.37 against 0.51 us for a
        one-step call.)"""
        raise NotImplementedError

    # ----------------------------------------------------------------- shapes and masks
    def compute_output_shape(self, input_shape):
        """Return the output shape for inputs of shape ``(batch, timesteps, input_dim)``.

        Returns
        -------
        tuple or list of tuple
            ``(batch, units)``, or ``(batch, timesteps, units)`` with ``return_sequences``; with
            ``return_state``, a list of that and one ``(batch, units)`` per state.
        """
        batch, timesteps = tuple(input_shape)[:2]
        sizes = self._state_sizes()
        output = (batch, timesteps, sizes[0]) if self.return_sequences else (batch, sizes[0])
        if self.return_state:
            return [output] + [(batch, size) for size in sizes]
        return output

    def _state_sizes(self):
        """The size of each state; the first, h, is also the size of the output."""
        return [self.units] * self._n_states

    def compute_mask(self, inputs, mask=None):
        """The input mask when returning sequences, else None; None for each returned state."""
        output_mask = mask if self.return_sequences else None
        return [output_mask] + [None] * self._n_states if self.return_state else output_mask

    # ----------------------------------------------------------------- call
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
        declared = (self.input_shape or self.batch_input_shape or (None,))[0] if self.stateful else None
        if declared is not None and batch != declared:
            # Keras builds a stateful layer's states for its declared batch and refuses others.
            raise ValueError(
                f"stateful layer {self.name!r} was declared for batches of {declared} (batch_input_shape "
                f"or the Input's batch size), got a batch of {batch}: give it consecutive batches of "
                f"{declared} (a model's predict does)"
            )
        if initial_state is None:
            return [np.zeros((batch, size), self.dtype) for size in self._sizes]
        states = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(states) != self._n_states:
            raise ValueError(
                f"layer {self.name!r} expects {self._n_states} initial state array(s), got {len(states)}"
            )
        checked = []
        for state, size in zip(states, self._state_sizes()):
            state = as_numeric(state, f"initial_state of layer {self.name!r}", self.dtype)
            if state.shape != (batch, size):
                if initial_state is self._carried:
                    raise ValueError(
                        f"stateful layer {self.name!r} carries states for a batch of {state.shape[0]}, got a "
                        f"batch of {batch}: a stateful layer keeps its batch size from call to call "
                        "(reset_states() starts again with any)"
                    )
                raise ValueError(
                    f"expected initial_state of shape {(batch, size)} for layer {self.name!r}, "
                    f"got {state.shape}"
                )
            # The kernel overwrites the state in place: never the caller's array.
            checked.append(np.array(state, order="C"))
        return checked

    def call(self, inputs, initial_state=None, mask=None, training=None):
        """Run the layer on a batch of sequences.

        Parameters
        ----------
        inputs : array_like, shape (batch, timesteps, input_dim)
            Cast to the layer's dtype; any memory layout is accepted.
        initial_state : array_like or list of array_like, optional
            The states before the first step, shape ``(batch, units)`` each; zeros by default
            (a ``stateful`` layer starts from where its previous call ended).
        mask : array_like of bool, shape (batch, timesteps), optional
            False skips a step: the states are carried over and the previous output repeated
            (zeros before a sequence's first unmasked step), as in Keras.
        training : ignored
            Accepted for Keras compatibility; fastrnn only does inference.

        Returns
        -------
        ndarray or list of ndarray
            ``(batch, units)``, or ``(batch, timesteps, units)`` with ``return_sequences``
            (in processing order, i.e. reversed with ``go_backwards``); with ``return_state``,
            ``[output, *final_states]``.
        """
        if self.stateful and initial_state is None:
            initial_state = self._carried
        output, states = self._forward(inputs, initial_state, mask, self.return_sequences)
        return self._returned(output, states) if self.stateful or self.return_state else output

    def _returned(self, output, states):
        """What `call` returns for a call's output and final states (a stateful layer keeps them)."""
        if self.stateful:
            self._carried = [state.copy() for state in states]
        if self.return_state:
            # The output must not alias the state it is returned beside.
            return [output if self.return_sequences else output.copy(), *states]
        return output

    def reset_states(self):
        """Forget the states a ``stateful`` layer carries from call to call (zeros next time)."""
        self._carried = None

    def _forward(self, inputs, initial_state, mask, return_sequences):
        """The recurrence over `inputs`: ``(output, final_states)``; the output is the sequence or
        the last step's (which may be the final h itself, not a copy)."""
        x, mask, call = self._prepare(inputs, initial_state, mask, return_sequences)
        _run_calls(x, (call,), self._step_work)
        if mask is None:    # nothing to zero (inline: a one-step call)
            *_, states, sequence = call
            return (sequence if return_sequences else states[0]), states
        return self._finish(mask, call, return_sequences)

    def _prepare(self, inputs, initial_state, mask, return_sequences):
        """A call's checked inputs and allocated outputs: ``(x, mask, call)``, x of the layer's
        dtype (any strides) and in time order, the mask None or bool, in processing order
        (reversed with ``go_backwards``), and the call for `_run_calls`: ``(self, weights, kernel_mask,
        states, sequence)``, the mask's uint8 view (or the empty one) for the kernel."""
        # Written for the one-step embedded call, where these checks are a third of the cost: the
        # common case (an ndarray of a real dtype) takes no conversion and few attribute reads.
        x = inputs if type(inputs) is np.ndarray else np.asarray(inputs)
        if x.dtype is not self.dtype:
            if x.dtype.kind not in "fiu":
                raise TypeError(
                    f"input to layer {self.name!r} must be a real numeric array, got dtype {x.dtype}"
                )
            x = x.astype(self.dtype)
        if x.ndim != 3:
            raise ValueError(
                f"input to layer {self.name!r} must have shape (batch, timesteps, input_dim), "
                f"got shape {x.shape}"
            )
        batch, timesteps, features = x.shape
        if timesteps == 0:
            raise ValueError(f"input to layer {self.name!r} has 0 timesteps, shape {x.shape}")
        if self.input_shape is None:     # not built (the property, inline)
            self.build((None, None, features))
        if features != self.input_shape[-1]:
            raise ValueError(
                f"layer {self.name!r} expects input_dim {self.input_shape[-1]}, got input of shape {x.shape}"
            )
        if mask is not None:
            mask = self._check_mask(mask, (batch, timesteps))
            if self.go_backwards:
                mask = mask[:, ::-1]
        if initial_state is None and self._n_states == 1:   # inline: a tenth of a one-step call
            states = [np.zeros((batch, self._sizes[0]), self.dtype)]
        else:
            states = self._initial_states(initial_state, batch)
        sequence = (np.empty((batch, timesteps, self._sizes[0]), self.dtype) if return_sequences
                    else self._no_sequence)
        kernel_mask = _EMPTY_MASK if mask is None else np.ascontiguousarray(mask).view(np.uint8)
        return x, mask, (self, self._kernel_weights, kernel_mask, states, sequence)

    def _finish(self, mask, call, return_sequences):
        """``(output, final_states)`` of a call prepared by `_prepare` once its kernel has run."""
        *_, states, sequence = call
        output = sequence if return_sequences else states[0]
        if mask is not None:
            output = output.copy() if output is states[0] else output
            if self.zero_output_for_mask:
                # Every masked step's output is zeros, the last step's too (Keras returns it as
                # the last output: zeros for a row whose last step is masked).
                output[~(mask if return_sequences else mask[:, -1])] = 0
            else:
                # Keras's previous output starts at zeros: outputs before a row's first unmasked
                # step (all of them for a fully masked row) are zeros, whatever the initial state.
                started = np.logical_or.accumulate(mask, axis=1)
                output[~(started if return_sequences else started[:, -1])] = 0
        return output, states

    def _call_symbolic(self, inputs, initial_state=None, **kwargs):
        if initial_state is not None:
            states = initial_state if isinstance(initial_state, (list, tuple)) else [initial_state]
            sizes = self._state_sizes()
            bad = [s for s, size in zip(states, sizes) if not isinstance(s, Symbolic) or s.shape[1:] != (size,)]
            if len(states) != self._n_states or bad:
                raise ValueError(
                    f"layer {self.name!r} expects initial_state of {self._n_states} tensor(s) of shape "
                    f"{', '.join(f'(batch, {size})' for size in sizes)}, "
                    f"got {[getattr(s, 'shape', s) for s in states]}"
                )
            kwargs["initial_state"] = initial_state
        return super()._call_symbolic(inputs, **kwargs)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} units={self.units}>"


_RNN_PARAMETERS = """
    use_bias : bool, default True
    return_sequences : bool, default False
        Return every step's output ``(batch, timesteps, units)`` instead of the last ``(batch, units)``.
    return_state : bool, default False
        Also return the final state(s), after the output.
    go_backwards : bool, default False
        Process time in reverse; the returned sequence is in processing order, as in Keras.
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
        Seed of the Keras-style initialisation used when no weights are given.
    name : str, optional
        Defaults to the snake-case class name, numbered as in Keras.
    weights : list of array_like, optional
        The weights in Keras layout (see `set_weights`).
    input_shape, batch_input_shape : tuple, optional
        ``(timesteps, input_dim)`` or ``(batch, timesteps, input_dim)``; builds the layer at once.
    zero_output_for_mask : bool, default False
        Output zeros at masked steps instead of repeating the previous output.
    stateful : bool, default False
        Start each call from the final states of the previous one (``reset_states()`` forgets
        them), as Keras's stateful layers; such a layer must not be shared between threads.
    dropout, recurrent_dropout, unroll
        Training options, accepted for compatibility and ignored."""


class SimpleRNN(_RNN):
    __doc__ = f"""Fully-connected RNN whose output is fed back as the next input, as ``keras.layers.SimpleRNN``.

    Parameters
    ----------
    units : int
        Size of the state and of the output.
    activation : str or None, default "tanh"
        Keras activation name (see `fastrnn.activations.CODES`); None is linear.{_RNN_PARAMETERS}

    Notes
    -----
    .. math:: h_t = \\mathrm{{act}}(x_t W_x + h_{{t-1}} W_h + b)

    with ``W_x = kernel (input_dim, units)``, ``W_h = recurrent_kernel (units, units)``,
    ``b = bias (units,)`` and ``h_0 = initial_state`` (zeros by default). The output is ``h_t``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> layer = fastrnn.SimpleRNN(3, input_shape=(2, 10), seed=0)
    >>> layer.count_params()
    42
    >>> layer(np.ones((8, 2, 10))).shape
    (8, 3)
    """

    def __init__(self, units, activation="tanh", use_bias=True, return_sequences=False,
                 return_state=False, go_backwards=False, dtype="float32", seed=None, name=None,
                 weights=None, input_shape=None, batch_input_shape=None, **options):
        super().__init__(units, activation, use_bias, return_sequences, return_state, go_backwards,
                         dtype, seed, name, weights, input_shape, batch_input_shape, **options)

    def _kernel_call(self, kernels, weights, x, mask, states, sequence):
        kernel, bias, recurrent_kernel = weights
        return kernels.simple_rnn, (x, kernel, bias, recurrent_kernel, mask, self._activation, states[0], sequence)


class LSTM(_RNN):
    __doc__ = f"""Long short-term memory layer, as ``keras.layers.LSTM``.

    Parameters
    ----------
    units : int
        Size of the states and of the output.
    activation : str or None, default "tanh"
        Activation of the candidate and of the cell state on output.
    recurrent_activation : str, default "sigmoid"
        Activation of the input, forget and output gates.{_RNN_PARAMETERS}
    unit_forget_bias : bool, default True
        Initialise the forget gate's bias to one (only used when no weights are given).
    proj_size : int, optional
        Project h to this size after each step, as PyTorch's ``nn.LSTM(proj_size=...)``.

    Notes
    -----
    Weights: ``kernel (input_dim, 4 units)``, ``recurrent_kernel (units, 4 units)``,
    ``bias (4 units,)``, gates in Keras order i, f, c, o. With ``z = x_t W_x + h_{{t-1}} W_h + b``:

    .. math::
        c_t = \\sigma(z_f) c_{{t-1}} + \\sigma(z_i) \\mathrm{{act}}(z_c), \\quad
        h_t = \\sigma(z_o) \\mathrm{{act}}(c_t)

    ``return_state`` returns ``[output, h, c]``; ``initial_state`` is ``[h, c]``.

    ``proj_size`` (PyTorch's LSTM with projections, not a Keras option) adds a weight
    ``projection (units, proj_size)``: ``h_t = (\\sigma(z_o) \\mathrm{{act}}(c_t)) W_{{hr}}``, and
    ``h``, the output and the rows of ``recurrent_kernel`` have size ``proj_size``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> output, h, c = fastrnn.LSTM(4, return_state=True, seed=0)(np.ones((2, 5, 3)))
    >>> output.shape, h.shape, c.shape
    ((2, 4), (2, 4), (2, 4))
    """

    _gates = 4
    _n_states = 2
    _has_recurrent_activation = True
    _config_keys = _RNN._config_keys + ("recurrent_activation", "unit_forget_bias", "proj_size")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, return_state=False, go_backwards=False, dtype="float32",
                 seed=None, name=None, weights=None, input_shape=None, batch_input_shape=None,
                 unit_forget_bias=True, proj_size=None, **options):
        self.unit_forget_bias = flag(unit_forget_bias,
                                     f"unit_forget_bias of LSTM {name!r}" if name else "unit_forget_bias")
        self.proj_size = None if not proj_size else positive_int(proj_size, f"proj_size of LSTM {name!r}" if name
                                                                 else "proj_size")
        super().__init__(units, activation, use_bias, return_sequences, return_state, go_backwards,
                         dtype, seed, name, weights, input_shape, batch_input_shape,
                         recurrent_activation=recurrent_activation, **options)

    def _state_sizes(self):
        return [self.proj_size or self.units, self.units]

    def _weight_shapes(self, input_shape):
        shapes = super()._weight_shapes(input_shape)
        if self.proj_size:
            shapes["projection"] = (self.units, self.proj_size)
        return shapes

    def _initial_weights(self, shapes, rng):
        weights = super()._initial_weights(shapes, rng)
        if self.use_bias and self.unit_forget_bias:
            weights[2][self.units:2 * self.units] = 1
        if self.proj_size:
            weights.append(glorot_uniform(shapes["projection"], rng, self.dtype))
        return weights

    def _laid_out(self):
        # ... and the projection, or the empty one that means none.
        return super()._laid_out() + (self.projection if self.proj_size else _EMPTY_PROJECTION[self.dtype],)

    def _kernel_call(self, kernels, weights, x, mask, states, sequence):
        kernel, bias, recurrent_kernel, projection = weights
        return kernels.lstm, (x, kernel, bias, recurrent_kernel, projection, mask, self._activation,
                              self._recurrent_activation, states[0], states[1], sequence)


class GRU(_RNN):
    __doc__ = f"""Gated recurrent unit layer, as ``keras.layers.GRU``, in both formulations.

    Parameters
    ----------
    units : int
        Size of the state and of the output.
    activation : str or None, default "tanh"
        Activation of the candidate state.
    recurrent_activation : str, default "sigmoid"
        Activation of the update and reset gates.{_RNN_PARAMETERS}
    reset_after : bool, default True
        Apply the reset gate after the recurrent product (Keras 3's default and PyTorch's form;
        ``bias`` is then ``(2, 3 units)``: input bias and recurrent bias). False applies it
        before (``bias`` is ``(3 units,)``).

    Notes
    -----
    Weights: ``kernel (input_dim, 3 units)``, ``recurrent_kernel (units, 3 units)``, gates in
    Keras order z, r, h. With ``x = x_t W_x + b_x``:

    .. math::
        z = \\sigma(x_z + h_{{t-1}} U_z + b'_z), \\quad r = \\sigma(x_r + h_{{t-1}} U_r + b'_r) \\\\
        \\tilde h = \\mathrm{{act}}(x_h + r \\odot (h_{{t-1}} U_h + b'_h)) \\text{{ (reset_after), or }}
        \\mathrm{{act}}(x_h + (r \\odot h_{{t-1}}) U_h) \\\\
        h_t = z \\odot h_{{t-1}} + (1 - z) \\odot \\tilde h

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> fastrnn.GRU(4, return_sequences=True, seed=0)(np.ones((2, 5, 3))).shape
    (2, 5, 4)
    """

    _gates = 3
    _n_states = 1
    _has_recurrent_activation = True
    _config_keys = _RNN._config_keys + ("recurrent_activation", "reset_after")

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, return_state=False, go_backwards=False, dtype="float32",
                 seed=None, name=None, weights=None, input_shape=None, batch_input_shape=None,
                 reset_after=True, **options):
        self.reset_after = flag(reset_after, f"reset_after of GRU {name!r}" if name else "reset_after")
        super().__init__(units, activation, use_bias, return_sequences, return_state, go_backwards,
                         dtype, seed, name, weights, input_shape, batch_input_shape,
                         recurrent_activation=recurrent_activation, **options)

    def _weight_shapes(self, input_shape):
        shapes = super()._weight_shapes(input_shape)
        if self.use_bias and self.reset_after:
            shapes["bias"] = (2, 3 * self.units)
        return shapes

    def _laid_out(self):
        # The input bias joins the projection, the recurrent bias (zeros when there is none) is
        # added to h @ recurrent_kernel: (kernel, input_bias, recurrent_kernel, recurrent_bias).
        zeros = np.zeros(3 * self.units, self.dtype)
        if self.use_bias and self.reset_after:
            input_bias, recurrent_bias = self.bias
        else:
            input_bias, recurrent_bias = (self.bias if self.use_bias else zeros), zeros
        return self.kernel, input_bias, self.recurrent_kernel, recurrent_bias

    def _kernel_call(self, kernels, weights, x, mask, states, sequence):
        kernel, input_bias, recurrent_kernel, recurrent_bias = weights
        return kernels.gru, (x, kernel, input_bias, recurrent_kernel, recurrent_bias, mask, self._activation,
                             self._recurrent_activation, self.reset_after, states[0], sequence)


def _removeprefix(text, prefix):
    return text[len(prefix):] if text.startswith(prefix) else text


_MERGES = {
    "concat": lambda f, b: np.concatenate([f, b], axis=-1),
    "sum": lambda f, b: f + b,
    "ave": lambda f, b: (f + b) / 2,
    "mul": lambda f, b: f * b,
}


class Bidirectional(Layer):
    """Run a recurrent layer forwards and a copy of it backwards, as ``keras.layers.Bidirectional``.

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
        The forward layer's configuration; the wrapper makes its own forward copy.
    merge_mode : {"concat", "sum", "ave", "mul", None}, default "concat"
        How the two directions' outputs are combined; None returns them as a list.
    backward_layer : SimpleRNN, LSTM or GRU, optional
        The backward layer; by default a copy of `layer` with ``go_backwards`` flipped.
    weights : list of array_like, optional
        Forward weights then backward weights, in Keras order.
    name, input_shape, batch_input_shape
        As for any layer.

    Notes
    -----
    The backward layer sees time reversed (with the mask reversed too, so it starts at each
    sequence's last valid step); its sequence output is flipped back into time order before the
    merge. With ``return_sequences`` and a mask, outputs at masked steps are zeros. With
    ``return_state`` the result is ``[output, *forward_states, *backward_states]``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> layer = fastrnn.Bidirectional(fastrnn.LSTM(4, return_sequences=True, seed=0))
    >>> layer(np.ones((2, 5, 3))).shape
    (2, 5, 8)
    """

    _has_weights = True

    def __init__(self, layer, merge_mode="concat", backward_layer=None, weights=None, name=None,
                 input_shape=None, batch_input_shape=None, dtype=None, **keras_options):
        if not isinstance(layer, _RNN):
            raise TypeError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got {type(layer).__name__}")
        if merge_mode not in _MERGES and merge_mode is not None:
            raise ValueError(f"merge_mode must be one of 'concat', 'sum', 'ave', 'mul' or None, got {merge_mode!r}")
        super().__init__(name, wrapped_dtype(layer, dtype, "Bidirectional"), input_shape,
                         batch_input_shape or layer.batch_input_shape, **keras_options)
        self.merge_mode = merge_mode
        # Keras's names: forward_<name> and backward_<name>, never prefixed twice.
        base_name = _removeprefix(layer.name, "forward_")
        self.forward_layer = self._copy(layer, f"forward_{base_name}", layer.go_backwards, True)
        if backward_layer is None:
            self.backward_layer = self._copy(layer, f"backward_{base_name}", not layer.go_backwards, False)
        else:
            if not isinstance(backward_layer, _RNN):
                raise TypeError(f"backward_layer must be a SimpleRNN, LSTM or GRU, got {type(backward_layer).__name__}")
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError(
                    f"forward and backward layers of {self.name!r} must differ in go_backwards, "
                    f"both have {layer.go_backwards}"
                )
            for attribute in ("return_sequences", "return_state", "stateful"):
                if getattr(backward_layer, attribute) != getattr(layer, attribute):
                    raise ValueError(
                        f"forward and backward layers of {self.name!r} must agree on {attribute}: "
                        f"{getattr(layer, attribute)} and {getattr(backward_layer, attribute)}"
                    )
            if backward_layer.dtype != layer.dtype:
                raise ValueError(f"forward and backward layers of {self.name!r} have dtypes "
                                 f"{layer.dtype} and {backward_layer.dtype}")
            if merge_mode in ("sum", "ave", "mul") and backward_layer._sizes[0] != layer._sizes[0]:
                raise ValueError(f"merge_mode {merge_mode!r} of {self.name!r} combines the two directions' "
                                 f"outputs element by element, but they have sizes {layer._sizes[0]} and "
                                 f"{backward_layer._sizes[0]} ('concat' or None takes different sizes)")
            self.backward_layer = self._copy(backward_layer, "backward_" + _removeprefix(backward_layer.name, "backward_"),
                                             backward_layer.go_backwards, True)
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        for inner in (self.forward_layer, self.backward_layer):
            inner.zero_output_for_mask = self.return_sequences  # as Keras does
        if weights is not None:
            self.set_weights(weights)
        elif self.batch_input_shape is not None:
            self.build(self.batch_input_shape)

    @staticmethod
    def _copy(layer, name, go_backwards, keep_weights):
        """A private copy of `layer`: the given weights (read-only, so shared safely) or none."""
        inner = copy.copy(layer)
        inner.name, inner.go_backwards = name, go_backwards
        inner._build_lock, inner._inbound_nodes = build_lock(inner), []
        if not keep_weights:
            # A fresh backward layer, as in Keras; its own seed so it differs from the forward one.
            inner.input_shape, inner._weight_names = None, []
            inner.seed = None if layer.seed is None else layer.seed + 1
        return inner

    # ----------------------------------------------------------------- weights
    @property
    def built(self):
        return self.forward_layer.built and self.backward_layer.built

    @property
    def input_shape(self):
        return self.forward_layer.input_shape if self.built else None

    @input_shape.setter
    def input_shape(self, value):
        pass  # the inner layers hold it

    def build(self, input_shape):
        """Build both directions for inputs of `input_shape` ``(batch, timesteps, input_dim)``."""
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    def _checked_weights(self, weights):
        """Forward then backward weights, in Keras order, each checked by its layer; both are
        checked before `set_weights` sets either."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
            raise TypeError(f"layer {self.name!r} expects a list of weight arrays, got {type(weights).__name__}")
        names = [list(inner._weight_shapes((None, None, 1))) for inner in (self.forward_layer, self.backward_layer)]
        n_forward, n_expected = len(names[0]), len(names[0]) + len(names[1])
        if len(weights) != n_expected:
            raise ValueError(
                f"layer {self.name!r} expects {n_expected} weights (forward {', '.join(names[0])}, "
                f"then backward {', '.join(names[1])}), got {len(weights)}"
            )
        forward = self.forward_layer._checked_weights(list(weights[:n_forward]))
        backward = self.backward_layer._checked_weights(list(weights[n_forward:]))
        (forward_shape, _), (backward_shape, _) = forward, backward
        if forward_shape[-1] != backward_shape[-1]:
            raise ValueError(f"forward and backward kernels of {self.name!r} disagree on input_dim: "
                             f"{forward_shape[-1]} and {backward_shape[-1]}")
        return forward, backward

    def _set_checked_weights(self, checked):
        self.forward_layer._set_checked_weights(checked[0])
        self.backward_layer._set_checked_weights(checked[1])

    # ----------------------------------------------------------------- shapes and masks
    def compute_output_shape(self, input_shape):
        """Merged output shape (a list with return_state or merge_mode=None)."""
        forward = self.forward_layer.compute_output_shape(input_shape)
        backward = self.backward_layer.compute_output_shape(input_shape)
        f_out, f_states = (forward[0], forward[1:]) if self.return_state else (forward, [])
        b_out, b_states = (backward[0], backward[1:]) if self.return_state else (backward, [])
        if self.merge_mode is None:
            outputs = [f_out, b_out]
        elif self.merge_mode == "concat":
            outputs = [f_out[:-1] + (f_out[-1] + b_out[-1],)]
        else:
            outputs = [f_out]
        shapes = outputs + list(f_states) + list(b_states)
        return shapes if len(shapes) > 1 else shapes[0]

    def compute_mask(self, inputs, mask=None):
        output_mask = mask if self.return_sequences else None
        masks = [output_mask] * (2 if self.merge_mode is None else 1)
        if self.return_state:
            masks += [None] * (self.forward_layer._n_states + self.backward_layer._n_states)
        return masks if len(masks) > 1 else masks[0]

    # ----------------------------------------------------------------- call
    def call(self, inputs, initial_state=None, mask=None, training=None):
        """Run both directions and merge them.

        Parameters
        ----------
        inputs : array_like, shape (batch, timesteps, input_dim)
        initial_state : list of array_like, optional
            Forward states then backward states.
        mask : array_like of bool, shape (batch, timesteps), optional
        training : ignored

        Returns
        -------
        ndarray or list of ndarray
            The merged output; a list ``[forward, backward]`` when ``merge_mode`` is None; with
            ``return_state``, followed by the forward then the backward final states.
        """
        forward_state = backward_state = None
        if initial_state is not None:
            n = self.forward_layer._n_states
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) != n + self.backward_layer._n_states:
                raise ValueError(
                    f"layer {self.name!r} expects initial_state as a list of forward then backward "
                    f"states ({n} + {self.backward_layer._n_states} arrays)"
                )
            forward_state, backward_state = list(initial_state[:n]), list(initial_state[n:])
        forward, backward = self._run_directions(inputs, [forward_state, backward_state], mask)
        f_out, f_states = (forward[0], forward[1:]) if self.return_state else (forward, [])
        b_out, b_states = (backward[0], backward[1:]) if self.return_state else (backward, [])
        if self.return_sequences:
            b_out = b_out[:, ::-1]   # back into time order
        outputs = [f_out, b_out] if self.merge_mode is None else [_MERGES[self.merge_mode](f_out, b_out)]
        results = outputs + list(f_states) + list(b_states)
        return results if len(results) > 1 else results[0]

    def _run_directions(self, inputs, initial_states, mask):
        """What each direction's `call` returns, their kernels run side by side on the threads
        where that pays (their rows split too, with threads to spare)."""
        layers, prepared = (self.forward_layer, self.backward_layer), []
        for layer, state in zip(layers, initial_states):
            # The second direction takes the first's checked x: a list or another dtype converts once.
            prepared.append(layer._prepare(prepared[0][0] if prepared else inputs,
                                           layer._carried if layer.stateful and state is None else state, mask,
                                           layer.return_sequences))
        _run_calls(prepared[0][0], [call for _, _, call in prepared], min(layer._step_work for layer in layers))
        return [layer._returned(*layer._finish(direction_mask, call, layer.return_sequences))
                for layer, (_, direction_mask, call) in zip(layers, prepared)]

    def _call_symbolic(self, inputs, initial_state=None, **kwargs):
        if initial_state is not None:
            kwargs["initial_state"] = initial_state
        return super()._call_symbolic(inputs, **kwargs)

    def count_params(self):
        return self.forward_layer.count_params() + self.backward_layer.count_params()

    def reset_states(self):
        """Forget the states that stateful inner layers carry."""
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    @classmethod
    def from_config(cls, config):
        """The Bidirectional layer that `config` (from `get_config`) describes, unbuilt."""
        config = plain_config(config)
        config["layer"] = from_spec(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = from_spec(config["backward_layer"])
        return cls(**config)

    def get_config(self):
        """Keras's Bidirectional config: name, merge_mode and both inner layers' configs."""
        return {"name": self.name, "merge_mode": self.merge_mode, "trainable": self.trainable,
                "layer": {"class_name": type(self.forward_layer).__name__, "config": self.forward_layer.get_config()},
                "backward_layer": {"class_name": type(self.backward_layer).__name__,
                                   "config": self.backward_layer.get_config()}}
