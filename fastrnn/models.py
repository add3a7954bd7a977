"""Models: a `Sequential` stack and a functional `Model` (a graph of layers), as in Keras.

Both check every shape when they are built, before any computation, and then run their layers
in order, passing masks along as Keras does. `predict` runs large inputs in batches; `summary`
prints a Keras-like table.
"""
import functools
import sys
import threading

import numpy as np

from . import parallel
from .backends import num_threads
from .base import (Layer, ModelCall, Node, Symbolic, as_numeric, build_lock, checked_shape, flag, positive_int,
                   raise_naming, unique_name)
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = ["Input", "InputLayer", "Model", "Sequential", "TorchRNN"]

_TORCH_CELLS = {"RNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}


class InputLayer(Layer):
    """The source of a model's input, as ``keras.layers.InputLayer``; `Input` makes one.

    Parameters
    ----------
    shape : tuple, optional
        One sample's shape, without the batch axis (Keras 2's ``input_shape=`` too).
    batch_size : int, optional
    dtype : str, default "float32"
    batch_shape : tuple, optional
        The full shape, batch axis first, instead of `shape` and `batch_size` (Keras 2's
        ``batch_input_shape=`` too).
    name : str, optional
    sparse, input_tensor, optional, ragged
        Keras's; only their defaults are supported.
    """

    def __init__(self, shape=None, batch_size=None, dtype="float32", sparse=None, batch_shape=None,
                 input_tensor=None, optional=False, name=None, input_shape=None, batch_input_shape=None,
                 ragged=None, **keras_options):
        super().__init__(name or unique_name("input_layer"), "float32", **keras_options)
        for argument, value in (("sparse", sparse), ("input_tensor", input_tensor), ("optional", optional),
                                ("ragged", ragged)):
            if value:
                raise ValueError(f"InputLayer {self.name!r}: {argument}={value!r} is not supported")
        shape = input_shape if shape is None else shape
        batch_shape = batch_input_shape if batch_shape is None else batch_shape
        if batch_shape is None:
            if shape is None:
                raise ValueError(f"InputLayer {self.name!r} needs shape= (one sample's shape) or batch_shape=")
            batch_shape = checked_shape([batch_size], "Input batch_size") + checked_shape(shape, "Input shape")
        elif shape is not None or batch_size is not None:
            raise ValueError(f"InputLayer {self.name!r} takes batch_shape= or shape= (and batch_size=), not both")
        self.input_dtype = np.dtype("float32" if dtype is None else dtype)
        self.batch_shape = checked_shape(batch_shape, "Input batch_shape")
        self.input_shape = self.batch_shape
        node = Node(self, [], {})
        node.outputs.append(Symbolic(self.batch_shape, self.input_dtype, node, 0, self.name))
        self._inbound_nodes.append(node)

    def compute_output_shape(self, input_shape):
        return self.batch_shape

    def get_config(self):
        """Keras's InputLayer config: ``batch_shape``, ``dtype`` (of the input) and ``name``."""
        return {"batch_shape": list(self.batch_shape), "dtype": self.input_dtype.name, "name": self.name}


def _within(layers):
    """`layers` and every layer they wrap (a Bidirectional's two directions, a TimeDistributed's
    layer), at any depth."""
    found, stack = [], list(layers)
    while stack:
        layer = stack.pop()
        found.append(layer)
        wrapped = (getattr(layer, attribute, None) for attribute in ("layer", "forward_layer", "backward_layer"))
        stack += [inner for inner in wrapped if isinstance(inner, Layer)]
    return found


def Input(shape=None, batch_size=None, dtype="float32", sparse=None, batch_shape=None, name=None, tensor=None,
          optional=False, ragged=None):
    """A placeholder for a model input, as ``keras.Input``.

    Parameters
    ----------
    shape : tuple
        The shape of one sample, without the batch axis; None for a size that may vary.
    batch_size : int, optional
    dtype : str, default "float32"
        ``"int32"`` (or any integer type) for token ids feeding an Embedding.
    name : str, optional
    batch_shape : tuple, optional
        The full shape, batch axis included (instead of `shape` and `batch_size`).
    sparse, tensor, optional, ragged
        Keras's; only their defaults are supported.

    Returns
    -------
    Symbolic
        Call layers on it to build a graph, then pass it to `Model`.

    Raises
    ------
    ValueError
        If a dimension is neither a positive integer nor None (``True`` and ``2.0`` are refused).

    Examples
    --------
    >>> import fastrnn
    >>> inputs = fastrnn.Input((None, 3))
    >>> outputs = fastrnn.Dense(1)(fastrnn.LSTM(4)(inputs))
    >>> fastrnn.Model(inputs, outputs).output_shape
    (None, 1)
    """
    if batch_shape is None and shape is None:
        raise ValueError("Input needs shape= (one sample's shape) or batch_shape=")
    return InputLayer(shape, batch_size, dtype, sparse, batch_shape, tensor, optional, name, ragged=ragged).output


def _fits(given, declared):
    return len(given) == len(declared) and all(d is None or g == d for g, d in zip(given[1:], declared[1:]))


def _adjust_rank(array, declared):
    """`array` with a trailing axis of size 1 added or dropped where that makes it fit `declared`,
    as Keras 3 does for model inputs (a univariate series given as ``(batch, timesteps)``)."""
    if array.ndim == len(declared) - 1 and declared[-1] == 1:
        return array[..., None]
    if array.ndim == len(declared) + 1 and array.shape[-1] == 1:
        return array[..., 0]
    return array


def _format_shape(shape):
    if isinstance(shape, list):
        return ", ".join(_format_shape(s) for s in shape)
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _format_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024


def _length_groups(lengths, batch_size, similar):
    """Indices of sequences to run together: equal lengths, or with `similar`, lengths within
    a quarter of the group's shortest (so padding costs at most about a fifth of the work)."""
    order = np.argsort(lengths, kind="stable")
    groups, start = [], 0
    while start < len(order):
        shortest = lengths[order[start]]
        limit = shortest + (shortest // 4 if similar else 0)
        stop = start
        while stop < len(order) and stop - start < batch_size and lengths[order[stop]] <= limit:
            stop += 1
        groups.append(order[start:stop])
        start = stop
    return groups


def _lanes(groups, lengths, count):
    """`groups` dealt into at most `count` lists of about equal work (rows x longest length), the
    largest first; one list when `count` is 1 or there is too little work to share."""
    cost = [len(rows) * int(lengths[rows].max()) for rows in groups]
    if count < 2 or len(groups) < 2 or sum(cost) < 1 << 12:
        return [groups]
    lanes, loads = [[] for _ in range(count)], [0] * count
    for g in sorted(range(len(groups)), key=cost.__getitem__, reverse=True):
        lightest = loads.index(min(loads))
        lanes[lightest].append(groups[g])
        loads[lightest] += cost[g]
    return [lane for lane in lanes if lane]


def _as_array(x, what):
    """`x` as an array (a memory map or other array as it is), refusing a ragged list by `what`."""
    if hasattr(x, "shape"):
        return x
    try:
        return np.asarray(x)
    except ValueError as error:   # NumPy's "inhomogeneous shape"
        raise ValueError(f"{what} is not one array ({error}); a list of sequences of different lengths goes "
                         "to predict of a single-input model, without lengths=") from None


def _unpad(x, lengths):
    """The rows of a padded (batch, timesteps, ...) array, cut to their lengths."""
    x = _as_array(x, "x given with lengths=")
    if x.ndim < 2:
        raise ValueError(f"lengths= takes a padded x of shape (batch, timesteps, ...), got shape {x.shape}")
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.dtype.kind not in "iu" or len(lengths) != len(x):
        raise ValueError(f"lengths must be one integer per row of x ({len(x)} rows), got {lengths!r}")
    if np.any(lengths < 1) or np.any(lengths > np.shape(x)[1]):
        raise ValueError(f"lengths must be between 1 and the padded length {np.shape(x)[1]}, "
                         f"got {lengths.min()} to {lengths.max()}")
    return [x[i, :length] for i, length in enumerate(lengths)]


class _progress:
    """A progress bar on stderr for `total` items when `verbose`; tqdm's if installed."""

    def __init__(self, total, verbose):
        self.total, self.verbose, self.done, self.bar = total, verbose, 0, None

    def __enter__(self):
        if self.verbose:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, unit="seq", file=sys.stderr)
            except ImportError:
                pass
        return self.advance

    def advance(self, count):
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
        elif self.verbose:
            print(f"\r{self.done}/{self.total} sequences", end="", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        elif self.verbose:
            print(file=sys.stderr)


class _Model:
    """What Sequential and Model share: weights over all layers, predict and summary."""

    def get_layer(self, name=None, index=None):
        """Return the layer called `name`, or the one at position `index` of `layers`.

        Raises
        ------
        ValueError
            If no layer has that name or index (the message lists those that exist).
        """
        if (name is None) == (index is None):
            raise ValueError(f"get_layer of model {self.name!r} takes a name or an index, one of them")
        if index is not None:
            if not isinstance(index, (int, np.integer)) or not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"model {self.name!r} has {len(self.layers)} layers, no index {index!r}")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"model {self.name!r} has no layer {name!r}; it has {[l.name for l in self.layers]}")

    @property
    def trainable(self):
        """Whether the model's layers are trainable; setting it sets every layer's, as in Keras
        (``model.trainable = False`` freezes them all)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        self._trainable = bool(value)
        for layer in getattr(self, "layers", []):
            layer.trainable = self._trainable

    @property
    def weights(self):
        """All layers' weights, read-only, in `get_weights` order (not copies)."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self):
        """The weights of layers made with ``trainable=True`` (Keras's split; a model made with
        ``trainable=False`` freezes its layers, as in Keras)."""
        return [w for layer in self.layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        """The weights that `trainable_weights` leaves out."""
        trainable = {id(w) for w in self.trainable_weights}
        return [w for w in self.weights if id(w) not in trainable]

    @property
    def input(self):
        """The model's input tensor (a list for several, a dict if it was made from one): Keras's
        ``model.input``."""
        if getattr(self, "_input_keys", None):
            return dict(zip(self._input_keys, self.inputs))
        return self.inputs[0] if len(self.inputs) == 1 else self.inputs

    @property
    def output(self):
        """The model's output tensor (a list for several): Keras's ``model.output``."""
        return self.outputs[0] if len(self.outputs) == 1 else self.outputs

    def get_config(self):
        """The model's configuration in Keras's form (its layers and, for a functional model, how
        they connect), without weights: `from_config` rebuilds it."""
        from .io.native import _model_config

        return _model_config(self)["config"]

    @classmethod
    def from_config(cls, config):
        """A model of `config`, from `get_config` (fastrnn's or a Keras model's), its layers
        initialised as Keras does (``set_weights`` gives it trained ones).

        Raises
        ------
        fastrnn.ModelFileError
            For a configuration fastrnn cannot build (naming the layer at fault).
        """
        from .io.keras import model_from_config

        kind = "Sequential" if issubclass(cls, Sequential) else "Functional"
        return model_from_config({"class_name": kind, "config": _as_lists(config)}, "the configuration",
                                 native=True)

    def predict_on_batch(self, x):
        """Run the model on one batch `x`, as Keras's ``predict_on_batch``: ``model(x)``."""
        return self(x)

    def __reduce__(self):
        # Models pickle through fastrnn's own format (weights and configuration, no code), so
        # they ship to other processes such as dask workers.
        from .io.native import from_bytes, to_bytes

        return from_bytes, (to_bytes(self),)

    def reset_states(self):
        """Forget the states carried by stateful layers (Keras's ``model.reset_states()``)."""
        for layer in _within(self.layers):    # (wrapped ones too)
            layer.reset_states()

    def reset_state(self):
        """Keras 3's name for `reset_states`."""
        self.reset_states()

    def stream(self, batch_size=1):
        """A `fastrnn.streaming.Stream` over this model: feed it one step or chunk at a time.

        Sequential models only (see `fastrnn.streaming.Stream` for the layers a stream takes).

        Parameters
        ----------
        batch_size : int, default 1
            The number of sequences advanced together.

        Returns
        -------
        fastrnn.streaming.Stream
        """
        from .streaming import Stream

        return Stream(self, batch_size)

    def count_params(self):
        """Return the number of weights of all layers."""
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self):
        """Return copies of all weights, layer by layer in `layers` order, each in Keras order."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Set all weights from a flat list in the order `get_weights` returns them.

        Raises
        ------
        ValueError
            If the count or a shape is wrong (the message names the layer).
        """
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"model {self.name!r} has {expected} weight arrays, got {len(weights)}")
        checked = []    # every layer's, before any is set: a refused list changes nothing
        for layer in self.layers:
            n = len(layer.weights)
            if n:
                checked.append((layer, layer._checked_weights(weights[:n])))
                weights = weights[n:]
        for layer, arrays in checked:
            layer._set_checked_weights(arrays)

    def save(self, path):
        """Write the model in fastrnn's own format, which `fastrnn.load` reads back exactly.

        See `fastrnn.io.native` for the layout: a NumPy ``.npz`` with a JSON configuration and
        the weights in Keras layout; reading it needs only NumPy.
        """
        from .io.native import save

        save(self, path)

    def load_weights(self, path):
        """Read Keras weights (``.weights.h5``, Keras 3 or Keras 2, or a full-model file) into this model."""
        from .io.keras import load_weights

        load_weights(self, path)

    def predict(self, x, batch_size=None, verbose=0, lengths=None, out=None):
        """Run the model on `x` in batches and return what Keras's ``predict`` returns.

        Parameters
        ----------
        x : array_like, list or dict of array_like, or list of sequences
            The input (batch axis first; ``np.memmap`` works, read chunk by chunk), a list with
            one array per model input (or a dict by input name), or, for a single-input model, a
            list of sequences of different lengths (each ``(timesteps_i, ...)``, one axis short
            of a batch): see Notes.
        batch_size : int, optional
            Rows per batch (default 1024, or the batch size that the model's stateful layers
            were declared for). Results depend on it only by float rounding (the matrix products
            sum in a different order for different row counts).
        verbose : int, default 0
            1 draws a progress bar on stderr (tqdm when installed).
        lengths : array_like of int, optional
            The true length of each row of a padded `x`: rows are run unpadded, as a ragged list.
        out : ndarray or list of ndarray, optional
            Where to write the outputs (for example ``np.lib.format.open_memmap`` arrays, for
            outputs larger than memory); they are returned.

        Returns
        -------
        ndarray or list of ndarray
            One array per model output, all rows; for ragged input, one entry per sequence (an
            array when every sequence's output has the same shape, else a list).

        Notes
        -----
        Memory: besides the outputs (allocated once, or `out`), a call holds one batch's inputs
        and intermediate activations, about ``batch_size * timesteps * width * 4`` bytes for the
        widest layer (times its gate count), never a copy of the whole input.

        Ragged input is grouped by length internally, so a mixed batch costs about what its
        real steps cost, and the results come back in the original order, equal to running
        each sequence alone.
        """
        required = self._required_batch
        batch_size = (required or 1024) if batch_size is None else batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if required is not None and batch_size != required:
            raise ValueError(f"model {self.name!r} has stateful layers declared for batches of {required}; "
                             f"predict runs them with batch_size={required}, not {batch_size}")
        outputs = None if out is None else (list(out) if isinstance(out, (list, tuple)) else [out])
        for i, target in enumerate(outputs or []):
            if not getattr(getattr(target, "flags", None), "writeable", True):
                raise ValueError(f"out= array {i} of model {self.name!r} is read-only (a memory map opened "
                                 "with mode 'r'?)")
        # A refused out= (checked on the first batch's results) or a probe must not move these.
        stateful = [layer for layer in _within(self.layers) if getattr(layer, "stateful", False)]
        carried = [layer._carried for layer in stateful]
        single = self._n_inputs() == 1
        if lengths is not None:
            if not single:
                raise ValueError(f"lengths= applies to single-input models; {self.name!r} has {self._n_inputs()} inputs")
            x = _unpad(x, lengths)
        if single and isinstance(x, (list, tuple)):
            if not self._one_input_array(x):
                result = self._predict_ragged(list(x), batch_size, verbose)
                if outputs is None:
                    return result
                try:
                    return self._write_ragged(outputs, result)
                except ValueError:
                    for layer, states in zip(stateful, carried):
                        layer._carried = states
                    raise
            x = x[0]
        if isinstance(x, dict) and not isinstance(self, Model):
            raise TypeError(f"Sequential {self.name!r} takes one array, not a dict (inputs by name are for "
                            "functional models)")
        if x is None:
            raise TypeError(f"predict of model {self.name!r} needs inputs x, got None")
        inputs = self._input_list(x) if isinstance(self, Model) else [x]
        given = inputs
        inputs = [_as_array(a, f"input {i} of model {self.name!r}") for i, a in enumerate(inputs)]
        for i, a in enumerate(inputs):
            if np.ndim(a) == 0:   # (a scalar, a string, a generator: no rows to count)
                raise ValueError(f"predict of model {self.name!r} takes arrays of shape (batch, ...): "
                                 f"input {i} is a {type(given[i]).__name__} without axes")
        rows = {len(a) for a in inputs}
        if len(rows) != 1:
            raise ValueError(f"model {self.name!r} needs inputs with one number of rows, got {sorted(rows)}")
        n = rows.pop()
        if required is not None and n % required:
            raise ValueError(f"model {self.name!r} has stateful layers declared for batches of {required}: "
                             f"predict needs a number of rows divisible by {required}, got {n}")
        with _progress(n, verbose) as advance:
            for start in range(0, n, batch_size):
                chunk = [np.asarray(a[start:start + batch_size]) for a in inputs]
                result = self(chunk if len(chunk) > 1 else chunk[0])
                result = result if isinstance(result, list) else [result]
                if outputs is None:
                    outputs = [np.empty((n,) + r.shape[1:], r.dtype) for r in result]
                elif start == 0:
                    try:
                        self._check_out(outputs, result, n)
                    except ValueError:
                        for layer, states in zip(stateful, carried):
                            layer._carried = states
                        raise
                for target, r in zip(outputs, result):
                    target[start:start + len(r)] = r
                advance(len(chunk[0]))
        if n == 0:   # no rows at all: the outputs' shapes from a probe of zeros
            rows = required or 1
            probes = [np.zeros((rows,) + tuple(np.shape(a))[1:], np.asarray(a).dtype) for a in inputs]
            try:
                probe = self(probes if len(probes) > 1 else probes[0])
            except ValueError as error:   # (it would give the probe's shape as the input's)
                raise ValueError(f"{error} (predict's probe of {rows} row(s) of zeros for its input of 0 rows, "
                                 f"shape {' and '.join(str(np.shape(a)) for a in inputs)})") from None
            finally:
                for layer, states in zip(stateful, carried):
                    layer._carried = states
            probe = probe if isinstance(probe, list) else [probe]
            if outputs is not None:
                self._check_out(outputs, probe, 0)
            else:
                outputs = [np.empty((0,) + p.shape[1:], p.dtype) for p in probe]
        return outputs if len(outputs) > 1 else outputs[0]

    def _write_ragged(self, targets, result):
        """The outputs of a ragged `predict` (`result`) written into the `out=` arrays `targets`,
        which are returned; refused where an output is a list (its sequences' outputs differ in
        shape) or does not fit."""
        per_output = result if isinstance(self, Model) and len(self.outputs) > 1 else [result]
        if any(isinstance(r, list) for r in per_output):
            raise ValueError(f"out= cannot take the outputs of model {self.name!r} for these sequences: they "
                             "differ in shape (their lengths), so predict returns them as a list")
        self._check_out(targets, per_output, len(per_output[0]))
        for target, r in zip(targets, per_output):
            target[...] = r
        return targets if len(targets) > 1 else targets[0]

    def _check_out(self, targets, first, rows):
        """Refuse `out` arrays that cannot hold the outputs whose first batch is `first`, before
        anything is written: another shape, too few of them, or a dtype that would lose values."""
        if len(targets) != len(first):
            raise ValueError(f"model {self.name!r} has {len(first)} output(s); out= gave {len(targets)} array(s)")
        for i, (target, r) in enumerate(zip(targets, first)):
            expected = (rows,) + r.shape[1:]
            shape, dtype = getattr(target, "shape", None), getattr(target, "dtype", None)
            if shape != expected or dtype is None or not np.can_cast(r.dtype, dtype, casting="safe"):
                raise ValueError(f"out= array {i} of model {self.name!r} must have shape {expected} and a dtype "
                                 f"that holds {r.dtype} exactly, got shape {shape} and dtype {dtype}")

    def _stateful_batch(self):
        """The batch size the model's stateful layers were declared for (Keras builds their
        states for it and refuses others), from the model's input or a layer's own; else None."""
        stateful = [layer for layer in _within(self.layers) if getattr(layer, "stateful", False)]
        if not stateful:
            return None
        inputs = [t.shape for t in self.inputs] if isinstance(self, Model) else [self.input_shape or (None,)]
        layers = [layer.input_shape or layer.batch_input_shape or (None,) for layer in stateful]
        declared = {shape[0] for shape in inputs + layers} - {None}
        if len(declared) > 1:
            raise ValueError(f"model {self.name!r} has stateful layers declared for different batch sizes "
                             f"{sorted(declared)}: their states must all be for one")
        return declared.pop() if declared else None

    def _check_stateful_batch(self, batch):
        required = self._required_batch
        if required is not None and batch != required:
            raise ValueError(f"model {self.name!r} has stateful layers declared for batches of {required}, "
                             f"got a batch of {batch}; predict(x) runs more rows in such batches")

    def _n_inputs(self):
        return len(self.inputs) if isinstance(self, Model) else 1

    def _declared_input_shape(self):
        """The (first) input's declared shape, batch axis included; None for an unbuilt Sequential."""
        return self.inputs[0].shape if isinstance(self, Model) else self.input_shape

    def _one_input_array(self, x):
        """Whether list `x`, given to a single-input model, is Keras's list of that one input's
        array rather than a list of sequences (each one axis short of a batch, or two where the
        last axis of 1 may be left out)."""
        if len(x) != 1 or not hasattr(x[0], "ndim"):
            return False
        declared = self._declared_input_shape()
        if declared is None:   # an unbuilt Sequential: a batch of tokens, or of sequences
            from .layers import Embedding

            return x[0].ndim == (2 if isinstance(self.layers[0], Embedding) else 3)
        rank, last = len(declared), declared[-1]
        one_sequence = ((x[0].ndim == rank - 1 and last in (None, x[0].shape[-1]))
                        or (last == 1 and x[0].ndim == rank - 2))
        return not one_sequence

    def _predict_ragged(self, sequences, batch_size, verbose):
        """Run sequences of different lengths in groups; results in the original order.

        A model whose layers all honour masks (recurrent layers first, per-step layers after)
        runs groups of similar lengths padded and masked, which Keras's mask semantics make
        equal to running each sequence alone; any other model runs groups of equal lengths.
        """
        sequences = [np.asarray(s) for s in sequences]
        ranks = {s.ndim for s in sequences}
        if len(ranks) > 1 or not sequences or sequences[0].ndim < 1:
            raise ValueError(f"ragged input to model {self.name!r} must be sequences of one rank, "
                             f"(timesteps_i, ...) each; got shapes {[s.shape for s in sequences[:5]]}")
        declared = self._declared_input_shape()
        if declared is not None and sequences[0].ndim == len(declared):
            raise ValueError(f"model {self.name!r} takes one input; got a list of {len(sequences)} arrays of shape "
                             f"{sequences[0].shape}... (a list is read as sequences of different lengths, each "
                             f"one axis short of {declared})")
        tails = [s.shape[1:] for s in sequences]
        odd = next((i for i, tail in enumerate(tails) if tail != tails[0]), None)
        if odd is not None:
            raise ValueError(f"ragged input to model {self.name!r}: sequence {odd} has steps of shape {tails[odd]}, "
                             f"sequence 0 of shape {tails[0]}; sequences may differ in length only")
        lengths = np.array([len(s) for s in sequences])
        if isinstance(self, Sequential) and self.input_shape is None:
            # Unbuilt: built for any length, not the first group's (where the layers allow it).
            try:
                self.build((None, None) + sequences[0].shape[1:])
            except ValueError:
                pass   # a layer needs the length (Flatten ...): the first call builds for its own
        faithful = self._masks_faithfully()
        # A model declared for a number of steps takes sequences of that length, or shorter ones
        # padded to it where padding plus a mask is exact: the same rule for every group.
        steps = declared[1] if declared is not None else None
        if steps is not None:
            wrong = next((i for i, n in enumerate(lengths) if n > steps or (n < steps and not faithful)), None)
            if wrong is not None:
                raise ValueError(f"ragged input to model {self.name!r}: sequence {wrong} has {lengths[wrong]} steps; "
                                 f"the model is declared for {steps}" + ("" if faithful else
                                 " (it cannot pad shorter ones exactly: not all its layers honour masks)"))
        results = [None] * len(sequences)
        groups = _length_groups(lengths, batch_size, similar=faithful)
        lock = threading.Lock()

        def run(lane):
            for rows in lane:
                longest = steps or lengths[rows].max()
                if lengths[rows].min() == longest:
                    out = self(np.stack([sequences[i] for i in rows]))
                else:
                    x = np.zeros((len(rows), longest) + sequences[rows[0]].shape[1:],
                                 np.result_type(*[sequences[i] for i in rows]))
                    for k, i in enumerate(rows):
                        x[k, :lengths[i]] = sequences[i]
                    out = self(x, mask=np.arange(longest) < lengths[rows][:, None])
                out = out if isinstance(out, list) else [out]
                for k, i in enumerate(rows):
                    # A (batch, time, ...) output is cut back to the sequence's own length.
                    results[i] = [o[k, :lengths[i]] if o.ndim >= 3 else o[k] for o in out]
                with lock:
                    advance(len(rows))

        with _progress(len(sequences), verbose) as advance:
            # Groups are independent, and each is too small to split its batch: they share the
            # threads instead, in lanes of about equal work. Stateful layers carry state from one
            # group to the next, so such models run the groups in order on one thread.
            stateful = any(getattr(layer, "stateful", False) for layer in _within(self.layers))
            lanes = _lanes(groups, lengths, 1 if stateful else num_threads())
            if len(lanes) > 1:
                parallel.run(*(functools.partial(run, lane) for lane in lanes))
            else:
                run(groups)
        per_output = [[r[j] for r in results] for j in range(len(results[0]))]
        stacked = [np.stack(o) if len({a.shape for a in o}) == 1 else o for o in per_output]
        return stacked if len(stacked) > 1 else stacked[0]

    def _masks_faithfully(self):
        """Whether padding plus a mask gives exactly the unpadded results for this model."""
        from .layers import Activation, Dense, Dropout, GaussianDropout, GaussianNoise, SpatialDropout1D, TimeDistributed
        from .recurrent import _RNN

        per_step = (Dense, TimeDistributed, Activation, Dropout, SpatialDropout1D, GaussianNoise, GaussianDropout)
        layers = self.layers if isinstance(self, Sequential) else []
        # go_backwards returns its sequence reversed while its mask passes on unreversed (as in
        # Keras), so what follows it would see a shifted mask: a Bidirectional flips its backward
        # direction back, not a forward direction that runs backwards.
        return (bool(layers) and isinstance(layers[0], (_RNN, Bidirectional))
                and all(isinstance(l, (_RNN, Bidirectional) + per_step) for l in layers)
                and not any(getattr(l, "stateful", False) for l in _within(layers))
                # (a last output zeroed where the last step is masked: padding would zero it)
                and not any(getattr(l, "zero_output_for_mask", False) and not l.return_sequences for l in layers)
                and not any(getattr(getattr(l, "forward_layer", l), "go_backwards", False) for l in layers))

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                layer_range=None):
        """Print a Keras-like table of layers, output shapes and parameter counts.

        Parameters
        ----------
        print_fn : callable, optional
            Called with each line; `print` by default.
        line_length, positions, expand_nested, show_trainable, layer_range
            Keras's layout options, accepted so that Keras code runs; the table sizes itself.
        """
        print_fn = print_fn or print
        rows = [(f"{layer.name} ({type(layer).__name__})", shape, "?" if count is None else f"{count:,}")
                for layer, shape, count in self._summary_rows()]
        widths = [max(len(header), *(len(r[i]) for r in rows)) + 2 if rows else len(header) + 2
                  for i, header in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        total_width = sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn("_" * total_width)
        print_fn("Layer (type)".ljust(widths[0]) + "Output Shape".ljust(widths[1]) + "Param #".rjust(widths[2]))
        print_fn("=" * total_width)
        for i, (name, shape, count) in enumerate(rows):
            print_fn(name.ljust(widths[0]) + shape.ljust(widths[1]) + count.rjust(widths[2]))
            print_fn(("=" if i == len(rows) - 1 else "_") * total_width)
        if all(layer.built or not layer._has_weights for layer in self.layers):
            for label, weights in (("Total", self.weights), ("Trainable", self.trainable_weights),
                                   ("Non-trainable", self.non_trainable_weights)):
                count = sum(w.size for w in weights)
                print_fn(f"{label} params: {count:,} ({_format_bytes(sum(w.nbytes for w in weights))})")
        else:
            print_fn("Total params: ? (the model is not built: give its first layer input_shape=)")


def _as_lists(value):
    """`value` with its tuples made lists: a live Keras config holds tuples (shapes, a node's
    arguments) where the JSON of a saved one has the lists that the loaders read."""
    if isinstance(value, dict):
        return {key: _as_lists(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    return value


class Sequential(_Model):
    """A linear stack of layers, as ``keras.Sequential``.

    Parameters
    ----------
    layers : list, optional
        Layers, optionally led by a `fastrnn.Input` or `InputLayer`; the first layer may declare
        ``input_shape=`` / ``batch_input_shape=`` instead. A Sequential among them adds its
        layers.
    name : str, optional

    Notes
    -----
    With a known input shape the model is built at once, so a layer that does not fit the one
    before it is reported when it is added. Otherwise it is built on the first call, from the
    input's shape, before anything is computed. Masks produced by Embedding(mask_zero=True) or
    Masking flow to the layers after them.

    Examples
    --------
    >>> import fastrnn
    >>> model = fastrnn.Sequential([fastrnn.SimpleRNN(3, input_shape=(2, 10))])
    >>> model.output_shape, model.count_params()
    ((None, 3), 42)
    """

    def __init__(self, layers=None, name=None, trainable=True):
        self.name = name or unique_name("sequential")
        self.trainable = bool(trainable)
        self.layers = []
        self._input_shape = None
        self._output_shapes = None
        self._graph = None
        self._required_batch = None
        self._build_lock = build_lock(self)
        for layer in layers or []:
            self.add(layer)

    def pop(self):
        """Remove the last layer and return it (Keras's ``Sequential.pop``).

        Raises
        ------
        IndexError
            If there are no layers.
        """
        if not self.layers:
            raise IndexError(f"Sequential {self.name!r} has no layers to pop")
        layer = self.layers.pop()
        self._output_shapes = None
        if self._input_shape is not None:
            self.build(self._input_shape)
        return layer

    @property
    def built(self):
        """Whether the input shape, and so every layer's weights, are known."""
        return self._output_shapes is not None

    @property
    def inputs(self):
        """The one input tensor of the functional graph this model is (Keras builds one too)."""
        return [self._symbolic()[0]]

    @property
    def outputs(self):
        """The output tensor of that graph: ``Model(seq.input, seq.get_layer(name).output)``
        extracts a layer's features."""
        return [self._symbolic()[1]]

    def _symbolic(self):
        """The layers called in turn on an `Input` of the model's input shape, made when it is
        built for the current layers (the nodes of an earlier graph are removed from the layers)."""
        key = (tuple(map(id, self.layers)), self._input_shape)
        if self._graph is None or self._graph[0] != key:
            if not self.built:
                raise AttributeError(f"Sequential {self.name!r} is not built: its input shape is unknown")
            if self._graph is not None:
                for layer, node in self._graph[2]:
                    if node in layer._inbound_nodes:
                        layer._inbound_nodes.remove(node)
            counts = [len(layer._inbound_nodes) for layer in self.layers]
            tensor = Input(batch_shape=self._input_shape, name=f"{self.name}_input")
            output = self(tensor)
            made = [(layer, node) for layer, n in zip(self.layers, counts) for node in layer._inbound_nodes[n:]]
            self._graph = (key, (tensor, output), made)
        return self._graph[1]

    def add(self, layer):
        """Append a layer (or, first, an `Input`) and check that it fits the stack.

        Raises
        ------
        ValueError
            If its input shape does not fit the output of the layer before it.
        TypeError
            If `layer` is not a fastrnn layer.
        """
        if isinstance(layer, InputLayer):
            layer = layer.output
        if isinstance(layer, Symbolic):
            if self.layers or self._input_shape is not None:
                raise ValueError(f"an Input can only be the first entry of Sequential {self.name!r}")
            self._input_shape = layer.shape
            return
        if isinstance(layer, Sequential):
            # A nested Sequential computes exactly what its layers do in its place.
            if not self.layers and self._input_shape is None and layer.input_shape is not None:
                self._input_shape = layer.input_shape
            for inner in layer.layers:
                self.add(inner)
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential {self.name!r} takes fastrnn layers (or a Sequential, whose layers "
                            f"it adds), got {type(layer).__name__}")
        if any(other.name == layer.name and other is not layer for other in self.layers):
            # Keras refuses it too; weights are saved by layer name.
            raise ValueError(f"Sequential {self.name!r} already has a layer called {layer.name!r}: layer names "
                             "must be unique in a model (give one another name=)")
        if not self._trainable:
            layer.trainable = False
        if not self.layers and self._input_shape is None and layer.batch_input_shape is not None:
            self._input_shape = layer.batch_input_shape
        self.layers.append(layer)
        self._output_shapes = None
        if self._input_shape is not None:
            self.build(self._input_shape)

    @property
    def input_shape(self):
        """The declared input shape, batch axis first (None for any size)."""
        return self._input_shape

    @property
    def output_shape(self):
        """The output shape for the input shape (known once built)."""
        if self._output_shapes is None:
            raise AttributeError(f"Sequential {self.name!r} is not built: its input shape is unknown")
        return self._output_shapes[-1] if self._output_shapes else self._input_shape

    def build(self, input_shape):
        """Build every layer in turn for `input_shape`, checking that each fits the one before.

        Raises
        ------
        ValueError
            Naming the first layer that does not fit, with the shapes involved.
        """
        with self._build_lock:   # threads making the first calls at once build one graph, not several
            self._build(input_shape)

    def _build(self, input_shape):
        shape, shapes = tuple(input_shape), []
        for layer in self.layers:
            layer.build(shape)
            if not layer._shapes_fit(shape):
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) of {self.name!r} cannot take inputs of "
                    f"shape {shape}: it was built for {layer.input_shape}"
                )
            shape = layer.compute_output_shape(shape)
            if isinstance(shape, list):
                raise ValueError(
                    f"layer {layer.name!r} of Sequential {self.name!r} returns {len(shape)} outputs; "
                    "a Sequential layer must return one (use the functional Model for return_state)"
                )
            shapes.append(shape)
        if self._input_shape is None:
            self._input_shape = (None,) + tuple(input_shape)[1:]
        self._output_shapes = shapes
        self._required_batch = self._stateful_batch()
        self._symbolic()   # as Keras: a built Sequential is a graph, so its layers have .output

    def __call__(self, inputs, training=None, mask=None):
        """Run the stack on `inputs` (batch axis first) and return the last layer's output.

        Raises
        ------
        ValueError
            If `inputs` does not fit the declared input shape (the message gives both).
        """
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1 and hasattr(inputs[0], "ndim"):
            inputs = inputs[0]   # Keras's list of one input array
        if isinstance(inputs, Symbolic):   # nested in a functional model: its layers, in turn
            with ModelCall(self, [inputs]):
                for layer in self.layers:
                    inputs = layer(inputs)
            return inputs
        x = np.asarray(inputs)
        if self._input_shape is not None:
            if not _fits(x.shape, self._input_shape):
                x = _adjust_rank(x, self._input_shape)
            if not _fits(x.shape, self._input_shape):
                raise ValueError(
                    f"model {self.name!r} expects inputs of shape {self._input_shape}, got {x.shape}"
                )
        else:
            self.build((None,) + x.shape[1:])
        if self._output_shapes is None:
            self.build(self._input_shape)
        self._check_stateful_batch(len(x))
        for layer in self.layers:
            try:
                x, mask = layer.call(x, mask=mask), layer.compute_mask(x, mask)
            except (ValueError, TypeError, MemoryError) as error:
                raise_naming(layer, error)
        return x

    @property
    def _graph_layers(self):
        return self.layers   # (a Sequential records no operations)

    def _summary_rows(self):
        shapes = self._output_shapes or ["?"] * len(self.layers)
        return [(layer, _format_shape(shape) if shape != "?" else "?",
                 layer.count_params() if layer.built or not layer._has_weights else None)
                for layer, shape in zip(self.layers, shapes)]


class Model(_Model):
    """A functional model: a graph of layers from `Input` tensors to outputs, as ``keras.Model``.

    Parameters
    ----------
    inputs : Symbolic or list of Symbolic
        Made by `fastrnn.Input`.
    outputs : Symbolic or list of Symbolic
        Made by calling layers on the inputs (several outputs, shared layers, merges, RNN
        ``initial_state`` from another layer and ``return_state`` outputs all work). Masks
        flow as in Keras 3: a layer's call is given its inputs' mask only when they are its
        one tensor argument, so an RNN given ``initial_state`` tensors runs unmasked unless it
        is given ``mask=``.
    name : str, optional

    Examples
    --------
    An encoder–decoder whose decoder starts from the encoder's states:

    >>> import fastrnn
    >>> encoder_in, decoder_in = fastrnn.Input((None, 3)), fastrnn.Input((None, 2))
    >>> _, h, c = fastrnn.LSTM(8, return_state=True)(encoder_in)
    >>> decoded = fastrnn.LSTM(8, return_sequences=True)(decoder_in, initial_state=[h, c])
    >>> model = fastrnn.Model([encoder_in, decoder_in], fastrnn.Dense(2)(decoded))
    >>> model.output_shape
    (None, None, 2)
    """

    def __init__(self, inputs, outputs, name=None, trainable=True):
        self.name = name or unique_name("functional")
        self.trainable = bool(trainable)
        # Inputs given by name are taken in the order of their names, as Keras flattens a dict.
        self._input_keys = sorted(inputs) if isinstance(inputs, dict) else None
        if isinstance(inputs, dict):
            inputs = [inputs[key] for key in self._input_keys]
        self.inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        self.outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        for tensor in self.inputs + self.outputs:
            if not isinstance(tensor, Symbolic):
                raise TypeError(f"Model inputs and outputs must come from fastrnn.Input and layer calls, got {tensor!r}")
        if not self.inputs or not self.outputs:
            raise ValueError(f"model {self.name!r} needs at least one input and one output, got "
                             f"{len(self.inputs)} and {len(self.outputs)}")
        for i, tensor in enumerate(self.inputs):
            if not isinstance(tensor.node.layer, InputLayer):
                raise ValueError(f"model input {tensor!r} is not made by fastrnn.Input")
            if any(tensor is earlier for earlier in self.inputs[:i]):
                # each input takes its own array: a repeated one would silently drop one of them
                raise ValueError(f"model {self.name!r} is given input {tensor!r} twice")
        self._nodes = self._sorted_nodes()
        layers = self._keras_order()
        names = [layer.name for layer in layers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"model {self.name!r} has several layers called {repeated}: layer names must be "
                             "unique in a model (give them other name=)")
        self._set_layers(layers)
        if not self._trainable:
            self.trainable = False
        self._required_batch = self._stateful_batch()

    def _set_layers(self, layers):
        """Every layer of the graph in Keras's order (`_graph_layers`: what `summary` shows and
        fastrnn's format saves) and `layers`, those that are not Keras 3 operations, as Keras
        lists them."""
        self._graph_layers = layers
        self.layers = [layer for layer in layers if not layer._operation]

    def _sorted_nodes(self):
        """The nodes between inputs and outputs, each after every node it reads from."""
        order, seen, sources = [], set(), {id(t) for t in self.inputs}

        def visit(tensor, path):
            node = tensor.node
            if id(tensor) in sources or id(node) in seen:
                return
            if isinstance(node.layer, InputLayer):
                raise ValueError(f"an output of model {self.name!r} depends on input {node.layer.name!r}, "
                                 "which is not among the model's inputs")
            if id(node) in path:
                raise ValueError(f"model {self.name!r} has a cycle through layer {node.layer.name!r}")
            for t in node.tensors():
                visit(t, path | {id(node)})
            seen.add(id(node))
            order.append(node)

        for tensor in self.outputs:
            visit(tensor, frozenset())
        return order

    def _keras_order(self):
        """The model's layers in Keras's order, that of its ``model.layers`` and so of its
        ``get_weights()``: farthest from the outputs first (an operation's depth is its longest
        path to an output), then in the order the search from the outputs first met them. A
        whole model called inside this one is one operation, as in Keras, and brings all its
        layers in its own order."""
        def unit(node):    # a node made during a nested model's call counts as that call
            return node.within or node

        def parents(call):
            tensors = call.args if isinstance(call, ModelCall) else call.tensors()
            return [unit(tensor.node) for tensor in tensors]

        def operation(call):
            return call.model if isinstance(call, ModelCall) else call.layer

        first_visit, post_order = {}, []

        def visit(call):     # Keras's search: from the outputs, inputs in argument order
            if id(call) in first_visit:
                return
            first_visit[id(call)] = len(first_visit)
            for parent in parents(call):
                visit(parent)
            post_order.append(call)

        for tensor in self.outputs:
            visit(unit(tensor.node))
        call_depth, depth, first_seen, operations = {}, {}, {}, {}
        for call in reversed(post_order):            # from the outputs back
            op = operation(call)
            d = max(call_depth.get(id(call), 0), depth.get(id(op), 0))
            call_depth[id(call)] = depth[id(op)] = d
            first_seen[id(op)] = min(first_seen.get(id(op), first_visit[id(call)]), first_visit[id(call)])
            operations[id(op)] = op
            for parent in parents(call):
                call_depth[id(parent)] = max(d + 1, call_depth.get(id(parent), 0))
        for tensor in self.inputs:                   # an input no output reads: depth 0, first
            layer = tensor.node.layer
            if id(layer) not in operations:
                depth[id(layer)], first_seen[id(layer)], operations[id(layer)] = 0, -1, layer
        layers = []
        for op in sorted(operations.values(), key=lambda op: (-depth[id(op)], first_seen[id(op)])):
            inner = ([layer for layer in op._graph_layers if not isinstance(layer, InputLayer)]
                     if isinstance(op, _Model) else [op])
            layers += [layer for layer in inner if layer not in layers]
        return layers

    @property
    def input_shape(self):
        """The declared input shape(s)."""
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        """The output shape(s)."""
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def _input_list(self, inputs, what="inputs"):
        """`inputs` as one entry per model input, in order: from one array (a single-input
        model), a list or tuple, or a dict keyed by input name, as Keras takes them."""
        if isinstance(inputs, dict):
            names = self._input_keys or [t.name for t in self.inputs]
            unknown = sorted(set(inputs) - set(names), key=str)
            missing = [n for n in names if n not in inputs]
            if unknown or missing:
                raise ValueError(f"model {self.name!r} has inputs {names}; {what} given by name lack "
                                 f"{missing} and have unknown {unknown}")
            return [inputs[n] for n in names]
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != len(self.inputs):
                raise ValueError(f"model {self.name!r} takes {len(self.inputs)} {what}, got {len(inputs)}")
            return list(inputs)
        if len(self.inputs) != 1:
            raise ValueError(f"model {self.name!r} takes {len(self.inputs)} {what} (a list, or a dict by "
                             f"name), got one {type(inputs).__name__}")
        return [inputs]

    def __call__(self, inputs, training=None, mask=None):
        """Run the graph on arrays: one per model input (a list, or a dict by input name, for several).

        Parameters
        ----------
        inputs : array_like, list or dict of array_like
        training : ignored
        mask : array_like of bool or list of them, optional
            A mask for each input, ``(batch, timesteps)``, as if a Masking layer made it.

        Returns
        -------
        ndarray or list of ndarray
            One array per model output (a single output unwrapped, as in Keras 3).

        Raises
        ------
        ValueError
            If the number of inputs is wrong, or one does not fit its declared shape.
        """
        arrays = self._input_list(inputs)

        def resolve(value, table):
            if isinstance(value, (list, tuple)):
                return [resolve(v, table) for v in value]
            return table[id(value)] if isinstance(value, Symbolic) else value

        if any(isinstance(a, Symbolic) for a in arrays):
            return self._call_symbolic(arrays, resolve)
        if mask is None:
            masks_given = [None] * len(arrays)
        elif len(self.inputs) == 1 and not isinstance(mask, dict):   # the mask, or a list of that one array
            single = isinstance(mask, (list, tuple)) and len(mask) == 1 and hasattr(mask[0], "ndim")
            masks_given = [mask[0] if single else mask]
        else:
            masks_given = self._input_list(mask, "masks")
        values, masks = {}, {}
        for tensor, array, given_mask in zip(self.inputs, arrays, masks_given):
            array = np.asarray(_as_array(array, f"input {tensor.name!r} of model {self.name!r}"))
            if not _fits(array.shape, tensor.shape):
                array = _adjust_rank(array, tensor.shape)
            if not _fits(array.shape, tensor.shape):
                raise ValueError(
                    f"input {tensor.name!r} of model {self.name!r} expects shape {tensor.shape}, got {array.shape}"
                )
            values[id(tensor)], masks[id(tensor)] = array, given_mask
        self._check_stateful_batch(len(values[id(self.inputs[0])]))
        for node in self._nodes:
            args = resolve(node.inputs, values)
            in_mask = resolve(node.inputs, masks)
            kwargs = {key: resolve(value, values) for key, value in node.kwargs.items()}
            # An explicit mask= replaces the one flowing in, for the call and its outputs' mask
            # (Keras 3 and 2 alike). Without it the outputs' mask derives from the one flowing
            # in, which the call itself is given only where node.passes_mask. A Keras 3
            # operation (``a + b``, ``ops.concatenate``) neither takes a mask nor gives one.
            explicit = kwargs.pop("mask", None)
            mask = explicit if explicit is not None else in_mask
            if node.layer._operation:
                mask = None
            try:
                out = node.layer.call(args, mask=mask if explicit is not None or node.passes_mask else None,
                                      **kwargs)
                out_mask = node.layer.compute_mask(args, mask)
            except (ValueError, TypeError, MemoryError) as error:
                raise_naming(node.layer, error)
            several = len(node.outputs) > 1
            for i, tensor in enumerate(node.outputs):
                values[id(tensor)] = out[i] if several else out
                masks[id(tensor)] = out_mask[i] if several and isinstance(out_mask, list) else (
                    None if several else out_mask)
        results = [values[id(t)] for t in self.outputs]
        return results[0] if len(results) == 1 else results

    def _call_symbolic(self, tensors, resolve):
        """This model nested in another functional model: its graph's layer calls repeated on
        `tensors` (the same layers, so the same weights)."""
        values = {}
        for tensor, given in zip(self.inputs, tensors):
            if not isinstance(given, Symbolic) or not _fits(given.shape, tensor.shape):
                raise ValueError(f"model {self.name!r} takes fastrnn.Input tensors of shapes "
                                 f"{[t.shape for t in self.inputs]}, got {given!r}")
            values[id(tensor)] = given
        with ModelCall(self, tensors):
            for node in self._nodes:
                kwargs = {key: resolve(value, values) for key, value in node.kwargs.items()}
                out = node.layer(resolve(node.inputs, values), **kwargs)
                node.layer._inbound_nodes[-1].passes_mask = node.passes_mask
                for tensor, made in zip(node.outputs, out if len(node.outputs) > 1 else [out]):
                    values[id(tensor)] = made
        results = [values[id(t)] for t in self.outputs]
        return results[0] if len(results) == 1 else results

    def _summary_rows(self):
        rows = []
        for layer in self._graph_layers:
            shapes = [t.shape for node in self._nodes if node.layer is layer for t in node.outputs]
            if isinstance(layer, InputLayer):
                shapes = [layer.batch_shape]
            shape = shapes[0] if len(shapes) == 1 else shapes
            rows.append((layer, _format_shape(shape), layer.count_params()))
        return rows


def _stack(arrays):
    # One layer's state is a fresh array: a view with the new axis is enough (np.stack: 3 us).
    return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)


class TorchRNN:
    """A stack of recurrent layers that runs like ``torch.nn.RNN``, ``nn.LSTM`` or ``nn.GRU``.

    Made by `fastrnn.from_torch` and the PyTorch loaders, or directly with torch's constructor
    arguments (then initialised at random, Keras-style). It holds one fastrnn layer per torch
    layer (a ``Bidirectional`` with ``merge_mode="concat"`` when bidirectional), weights in Keras
    layout, and is called as the torch module is.

    Parameters
    ----------
    mode : {"RNN", "LSTM", "GRU"}
    input_size, hidden_size, num_layers, bias, batch_first, bidirectional, proj_size, nonlinearity
        As for the torch module (``nonlinearity`` for RNN, ``proj_size`` for LSTM). Sizes must be
        positive integers (not bools), and ``num_layers`` at most 10,000
        (``fastrnn.io.keras.MAX_LAYERS``); anything else is a ValueError naming the argument.
    dtype : {"float32", "float64"}, default "float32"
    seed : int, optional
    initialize : bool, default True
        Give the layers Keras-style random weights now; False leaves them for `set_weights`
        (what the loaders do, so a file's claimed sizes are checked before anything is allocated).

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> rnn = fastrnn.TorchRNN("GRU", 3, 4, num_layers=2, batch_first=True)
    >>> output, h_n = rnn(np.ones((2, 5, 3)))
    >>> output.shape, h_n.shape
    ((2, 5, 4), (2, 2, 4))
    """

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 bidirectional=False, proj_size=0, nonlinearity="tanh", dtype="float32", seed=None,
                 initialize=True):
        from .io.keras import MAX_LAYERS

        if mode not in _TORCH_CELLS:
            raise ValueError(f"mode must be 'RNN', 'LSTM' or 'GRU', got {mode!r}")
        if proj_size and mode != "LSTM":
            raise ValueError(f"proj_size is an LSTM option, got it for {mode}")
        if nonlinearity not in ("tanh", "relu"):     # as torch.nn.RNN
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        # Checked before the layers are made: a huge num_layers would otherwise build layers
        # until memory runs out, and int() would quietly accept True, 2.5 or "2".
        num_layers = positive_int(num_layers, "num_layers")
        if num_layers > MAX_LAYERS:
            raise ValueError(f"num_layers must be at most {MAX_LAYERS}, got {num_layers}")
        self.mode, self.num_layers = mode, num_layers
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.proj_size = 0 if proj_size is None or proj_size == 0 else positive_int(proj_size, "proj_size")
        if self.proj_size >= self.hidden_size:       # as torch.nn.LSTM
            raise ValueError(f"proj_size must be smaller than hidden_size {self.hidden_size}, got {self.proj_size}")
        self.bias, self.batch_first = flag(bias, "bias"), flag(batch_first, "batch_first")
        self.bidirectional, self.nonlinearity = flag(bidirectional, "bidirectional"), nonlinearity
        self.dtype = np.dtype(dtype)
        directions = 2 if bidirectional else 1
        self.layers = []
        for index in range(self.num_layers):
            size = self.input_size if index == 0 else directions * (self.proj_size or self.hidden_size)
            options = dict(return_sequences=True, return_state=True, use_bias=bias, dtype=dtype,
                           input_shape=(None, size) if initialize else None,
                           seed=None if seed is None else seed + index)
            options.update({"RNN": {"activation": nonlinearity}, "GRU": {"reset_after": True},
                            "LSTM": {"proj_size": self.proj_size or None}}[mode])
            cell = _TORCH_CELLS[mode](self.hidden_size, name=f"{mode.lower()}_l{index}", **options)
            self.layers.append(Bidirectional(cell, name=f"{mode.lower()}_l{index}_bidirectional")
                               if bidirectional else cell)

    def __reduce__(self):
        from .io.native import from_bytes, to_bytes

        return from_bytes, (to_bytes(self),)

    def get_config(self):
        """The constructor arguments, as a dict."""
        return {"mode": self.mode, "input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first,
                "bidirectional": self.bidirectional, "proj_size": self.proj_size,
                "nonlinearity": self.nonlinearity, "dtype": self.dtype.name}

    def count_params(self):
        """Return the number of weights (torch's count, less one bias vector per summed pair)."""
        return sum(layer.count_params() for layer in self.layers)

    def save(self, path):
        """Write the model in fastrnn's own format (see `fastrnn.io.native`)."""
        from .io.native import save

        save(self, path)
    def __call__(self, x, hx=None):
        """Run the stack like the torch module's forward.

        Parameters
        ----------
        x : array_like
            ``(batch, time, input_size)`` if ``batch_first`` else ``(time, batch, input_size)``;
            or unbatched ``(time, input_size)``.
        hx : array_like or tuple of array_like, optional
            ``h_0`` ``(num_layers * directions, batch, out_size)`` (without the batch axis for
            unbatched input), and for an LSTM the tuple ``(h_0, c_0)``. Zeros by default.

        Returns
        -------
        tuple
            ``(output, h_n)``, or ``(output, (h_n, c_n))`` for an LSTM, in torch's layouts.
        """
        if type(x).__name__ == "PackedSequence":
            raise TypeError(f"torch {self.mode}: a PackedSequence is not supported; pass the padded batch "
                            "(torch.nn.utils.rnn.pad_packed_sequence) and, for predict-style use, "
                            "fastrnn's masks or ragged lists")
        x = np.asarray(x)
        if x.ndim not in (2, 3):
            raise ValueError(f"torch {self.mode} expects input of rank 2 (unbatched) or 3, got shape {x.shape}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"torch {self.mode} expects input_size {self.input_size} (the last axis), "
                             f"got input of shape {x.shape}")
        time_axis = 1 if self.batch_first and x.ndim == 3 else 0
        if x.shape[time_axis] == 0:
            raise ValueError(f"torch {self.mode} expects at least one timestep, got input of shape {x.shape} "
                             f"(time on axis {time_axis})")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None]
        elif not self.batch_first:
            x = x.transpose(1, 0, 2)
        directions = 2 if self.bidirectional else 1
        states = self._initial_states(hx, x.shape[0], unbatched, directions)
        h_n, c_n, sequence = [], [], x
        for index, layer in enumerate(self.layers):
            initial = None
            if states is not None:
                rows = slice(index * directions, (index + 1) * directions)
                initial = [s for d in range(directions) for s in (state[rows][d] for state in states)]
            # Without initial states, no keyword: checking one costs more than this layer's call
            # on a short sequence.
            output, *final = layer(sequence) if initial is None else layer(sequence, initial_state=initial)
            sequence = output
            per_direction = len(final) // directions
            for d in range(directions):
                h_n.append(final[d * per_direction])
                if self.mode == "LSTM":
                    c_n.append(final[d * per_direction + 1])
        h_n, c_n = _stack(h_n), _stack(c_n) if c_n else None
        if unbatched:
            sequence, h_n = sequence[0], h_n[:, 0]
            c_n = None if c_n is None else c_n[:, 0]
        elif not self.batch_first:
            sequence = sequence.transpose(1, 0, 2)
        return (sequence, (h_n, c_n)) if self.mode == "LSTM" else (sequence, h_n)

    def _initial_states(self, hx, batch, unbatched, directions):
        if hx is None:
            return None
        given = list(hx) if self.mode == "LSTM" else [hx]
        if self.mode == "LSTM" and (not isinstance(hx, (list, tuple)) or len(hx) != 2):
            raise ValueError("torch LSTM expects hx as a tuple (h_0, c_0)")
        sizes = [self.proj_size or self.hidden_size, self.hidden_size][:len(given)]
        states = []
        for name, state, size in zip(("h_0", "c_0"), given, sizes):
            state = as_numeric(state, f"{name} of torch {self.mode}", self.dtype)
            expected = (self.num_layers * directions,) + (() if unbatched else (batch,)) + (size,)
            if state.shape != expected:
                raise ValueError(f"torch {self.mode} expects {name} of shape {expected}"
                                 f"{' for unbatched input' if unbatched else ''}, got {state.shape}")
            states.append(state[:, None] if unbatched else state)
        return states
