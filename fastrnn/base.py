"""What every layer shares, and the symbolic tensors that functional models are built from.

`Layer` holds a name, a dtype, an optional declared input shape and weights in Keras order
(read-only, contiguous, validated against the shapes the layer declares). Calling a layer on
arrays runs it; calling it on `Symbolic` tensors (from `fastrnn.Input`) records a `Node` of the
graph that `fastrnn.Model` runs, and checks the shapes then, so a chain of layers that does not fit
fails while the model is being built, not in the middle of a forward pass.
"""
import inspect
import itertools
import os
import re
import threading
import weakref

import numpy as np

from . import initializers

__all__ = ["Layer", "Node", "Symbolic"]

_DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}
_NAME_COUNTERS = {}
_NAME_LOCK = threading.Lock()
_LOCK_OWNERS = weakref.WeakSet()   # the layers and models holding a build lock (see build_lock)
_CALL_PARAMETERS = {}   # layer class -> names of its call's arguments after inputs, or None for any


def _forget_locks():
    # A child forked while another thread held a lock would wait for it forever.
    global _NAME_LOCK
    _NAME_LOCK = threading.Lock()
    for owner in list(_LOCK_OWNERS):
        owner._build_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks)


def build_lock(owner):
    """A lock for `owner`'s first build and weight settings (threads calling an unbuilt layer at
    once must agree on its weights), one per layer or model so that unrelated builds do not wait
    for each other; a forked child gets fresh ones (one held by another thread at the fork stayed
    held in the child, whose first call of that layer then waited for ever)."""
    _LOCK_OWNERS.add(owner)
    return threading.RLock()


def unique_name(base):
    """``base``, then ``base_1``, ``base_2``, ...: Keras's automatic layer names."""
    with _NAME_LOCK:
        n = next(_NAME_COUNTERS.setdefault(base, itertools.count()))
    return base if n == 0 else f"{base}_{n}"


def snake_case(name):
    """Keras's class-name-to-layer-name rule: SimpleRNN -> simple_rnn, TimeDistributed -> time_distributed."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def float_dtype(dtype):
    """The layer dtype named by `dtype`: float32 or float64, anything else is a TypeError."""
    try:
        return _DTYPES[np.dtype(dtype).name]
    except (TypeError, KeyError):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None


def as_numeric(value, what, dtype):
    """`value` as an array of `dtype`, refusing what cannot be a real number without loss."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} must be a real numeric array, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def checked_shape(shape, what):
    """`shape` as a tuple of positive ints and None; anything else is a ValueError naming `what`."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"{what} must be a tuple of positive integers or None, got {shape!r}") from None
    for d in dims:
        # bool is an int to Python, but Input((True, 3)) is a mistake, not a shape (Keras refuses it too).
        if d is not None and (isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1):
            raise ValueError(f"{what} must be a tuple of positive integers or None, got {shape!r}")
    return tuple(None if d is None else int(d) for d in dims)


def wrapped_dtype(layer, dtype, wrapper):
    """The dtype of a wrapper around `layer`: the layer's; a `dtype` given to the wrapper must agree."""
    if dtype is not None and float_dtype(dtype) != layer.dtype:
        raise ValueError(f"{wrapper} of layer {layer.name!r} ({layer.dtype.name}) cannot compute in {dtype}")
    return layer.dtype


def plain_config(config):
    """A copy of a layer's `config` whose dtype is a name: Keras 3 writes a DTypePolicy there."""
    if not isinstance(config, dict):
        raise TypeError(f"a layer's config is a dict (from get_config), got {type(config).__name__}")
    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = (config["dtype"].get("config") or {}).get("name", "float32")
    return config


def from_spec(spec):
    """The fastrnn layer that a Keras-style ``{"class_name", "config"}`` spec describes."""
    import fastrnn

    cls = getattr(fastrnn, spec["class_name"], None)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"no fastrnn layer class {spec['class_name']!r}")
    return cls.from_config(spec["config"])


def raise_naming(layer, error):
    """Raise `error`, raised inside `layer`'s call, with the layer named in front of its message
    where it is a plain ValueError or TypeError, or a MemoryError, that does not name it (NumPy's
    name no layer: "operands could not be broadcast together", "inhomogeneous shape", "Unable to
    allocate 14.6 MiB for an array with shape (64, 40, 1500)")."""
    if repr(layer.name) not in str(error):
        named = f"layer {layer.name!r} ({type(layer).__name__}): {error}"
        if type(error) in (ValueError, TypeError):
            raise type(error)(named) from error
        if isinstance(error, MemoryError):   # (NumPy's own subclass takes other arguments)
            raise MemoryError(named) from error
    raise error


def scalar(value):
    """`value`, or the Python number a NumPy scalar or 0-d array holds (a configuration must be
    plain JSON)."""
    return value.item() if isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0 else value


def flag(value, what):
    """`value` as a bool where it is one (or a number 0 or 1, or None, as Keras takes them); anything
    else, such as the string "False", which ``bool()`` reads as True, is a TypeError naming `what`."""
    value = scalar(value)
    if value is None or isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, float)) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{what} must be True or False, got {value!r:.100}")


def positive_int(value, what):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


class Symbolic:
    """A placeholder for an array in a functional model: its shape (None for any size) and dtype.

    Made by `fastrnn.Input`, and by calling a layer on other placeholders.
    """

    def __init__(self, shape, dtype, node=None, index=0, name=None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node          # the Node that produces it; None for a model input
        self.index = index        # which output of that node
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<Symbolic shape={self.shape} dtype={self.dtype.name} name={self.name!r}>"


class ModelCall:
    """One call of a whole model on `Input` tensors: the nodes its layers make during it are
    marked with it, so that a model built around it lists that model's layers together, in the
    model's own order, as Keras lists a nested model as one layer."""

    _stack = threading.local()    # the model calls in progress in this thread, outermost first

    def __init__(self, model, args):
        self.model = model
        self.args = list(args)        # the tensors it was called on, in order

    def __enter__(self):
        self._calls().append(self)
        return self

    def __exit__(self, *exc):
        self._calls().pop()

    @classmethod
    def _calls(cls):
        if not hasattr(cls._stack, "calls"):
            cls._stack.calls = []
        return cls._stack.calls

    @classmethod
    def outermost(cls):
        """The outermost model call in progress in this thread, or None."""
        calls = cls._calls()
        return calls[0] if calls else None


class Node:
    """One call of a layer in a functional model: its tensor arguments and its outputs."""

    def __init__(self, layer, inputs, kwargs):
        self.layer = layer
        self.inputs = inputs      # a Symbolic or a list of them, as the layer was called
        self.kwargs = kwargs      # keyword arguments, possibly holding Symbolic (initial_state)
        self.outputs = []
        self.within = ModelCall.outermost()   # the whole model's call it is part of, if any
        # Whether the call is given the mask flowing in with its inputs, when it has no mask=.
        # Keras 3 gives it only to a call whose inputs are its one tensor argument: a recurrent
        # layer given initial_state tensors runs unmasked. (Keras 2 gave it to every call: the
        # loader sets this for Keras 2 files.)
        self.passes_mask = self.passes_mask_in_keras3(kwargs)

    @staticmethod
    def passes_mask_in_keras3(kwargs):
        """Whether Keras 3 gives a call with keyword arguments `kwargs` its inputs' mask."""
        return not any(is_symbolic(value) for key, value in kwargs.items() if key != "mask")

    def tensors(self):
        """Every Symbolic this node reads, positional first, then keywords by name (as Keras
        flattens a call's arguments)."""
        found = []
        for value in [self.inputs, *(self.kwargs[key] for key in sorted(self.kwargs))]:
            found.extend(v for v in (value if isinstance(value, (list, tuple)) else [value])
                         if isinstance(v, Symbolic))
        return found


def is_symbolic(value):
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Symbolic) for v in value)
    return isinstance(value, Symbolic)


class Layer:
    """Base of every fastrnn layer: name, dtype, declared input shape and weights in Keras order.

    A subclass declares its weights with `_weight_shapes` (ordered name -> shape for a given
    input shape) and `_initial_weights`, and computes in `call`. Everything about storing,
    validating, counting and exchanging weights lives here.
    """

    _has_weights = False
    # A Keras 3 operation that a functional model records in its graph (mask computations): it
    # runs there, and `summary` shows it, but it is not one of ``model.layers``, as in Keras.
    _operation = False
    _config_keys = ()   # constructor arguments that get_config reports, besides name and dtype
    _initializers = {}  # Keras's initializer arguments for the layer's weights -> their defaults
    _training_options = ()   # Keras arguments of the layer besides those that affect training only

    def __init__(self, name=None, dtype="float32", input_shape=None, batch_input_shape=None,
                 batch_size=None, **keras_options):
        self.dtype = float_dtype(dtype)
        self.name = name or unique_name(snake_case(type(self).__name__))
        self._take_keras_options(keras_options)
        if batch_input_shape is not None:
            self.batch_input_shape = checked_shape(batch_input_shape, f"batch_input_shape of layer {self.name!r}")
        elif input_shape is not None:
            self.batch_input_shape = (checked_shape([batch_size], f"batch_size of layer {self.name!r}")
                                      + checked_shape(input_shape, f"input_shape of layer {self.name!r}"))
        else:
            self.batch_input_shape = None
        self.input_shape = None        # known once built
        self._build_lock = build_lock(self)
        self._inbound_nodes = []       # its calls in functional models

    def _take_keras_options(self, options):
        """Take Keras constructor arguments that fastrnn's forward pass does without: the
        initializers (used when the layer is built without weights), and those that only
        training uses (regularizers, constraints, ``trainable``...), accepted so that Keras code
        runs as written. Anything else is a TypeError naming the layer and the argument."""
        given = {key: options.pop(key, default) for key, default in self._initializers.items()}
        self._initializer_functions = {key: initializers.get(value, f"{key} of layer {self.name!r}")
                                       for key, value in given.items()}
        # (Keras's serialized form is named by its class)
        self._initializer_names = {key: value["class_name"] if isinstance(value, dict) else value
                                   for key, value in given.items()}
        self.trainable = bool(options.pop("trainable", True))
        if options.pop("quantization_config", None) is not None:   # (Keras 3 writes None for a float layer)
            raise TypeError(f"{type(self).__name__} (layer {self.name!r}): quantized layers are not supported")
        weights = [key[:-len("_initializer")] for key in self._initializers]
        training_only = {"activity_regularizer", "autocast", *self._training_options,
                         *(f"{w}_{kind}" for w in weights for kind in ("regularizer", "constraint"))}
        for key in options:
            if key not in training_only:
                raise TypeError(f"{type(self).__name__} (layer {self.name!r}) got an unexpected "
                                f"keyword argument {key!r}")

    def _initial(self, key, shape, rng):
        """The initial value of one weight, from the initializer argument `key`."""
        value = self._initializer_functions[key](tuple(shape), rng, self.dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"{key} of layer {self.name!r} made an array of shape {value.shape} "
                             f"for a weight of shape {tuple(shape)}")
        return value

    # ----------------------------------------------------------------- weights
    def _weight_shapes(self, input_shape):
        """Ordered ``{weight name: shape}`` for inputs of `input_shape`; none by default."""
        return {}

    def _initial_weights(self, shapes, rng):
        """Keras-style initial values for the weights of `shapes` (a dict as above)."""
        return [np.zeros(shape, self.dtype) for shape in shapes.values()]

    def _input_shape_from_weights(self, weights):
        """The input shape implied by weights given before the layer was built."""
        return (None, weights[0].shape[0])

    @property
    def built(self):
        """Whether the layer knows its input shape (and so has its weights)."""
        return self.input_shape is not None

    def build(self, input_shape):
        """Fix the input shape and create Keras-initialised weights (once; later calls are no-ops).

        Parameters
        ----------
        input_shape : tuple
            Shape of the inputs, None for unknown sizes (usually the batch).
        """
        with self._build_lock:
            if self.built:
                return
            input_shape = self._check_build_shape(input_shape)
            shapes = self._weight_shapes(input_shape)
            rng = np.random.default_rng(getattr(self, "seed", None))
            size = sum(float(np.prod(s, dtype=np.float64)) for s in shapes.values()) * self.dtype.itemsize
            try:
                if size > np.iinfo(np.intp).max:   # (NumPy would say only "array is too big")
                    raise MemoryError
                self._assign(input_shape, self._initial_weights(shapes, rng))
            except MemoryError:
                raise MemoryError(f"layer {self.name!r} ({type(self).__name__}): its weights {list(shapes.values())} "
                                  f"need {size / 2 ** 30:.3g} GiB, more than can be allocated") from None

    def _check_build_shape(self, input_shape):
        return tuple(input_shape)

    def _assign(self, input_shape, arrays):
        # Contiguous, private, read-only copies: kernels read them without copying, and callers
        # holding the arrays they passed in cannot change the layer behind its back.
        names = list(self._weight_shapes(input_shape))
        for name, array in zip(names, arrays):
            array = np.array(array, dtype=self.dtype, order="C")
            array.flags.writeable = False
            setattr(self, name, array)
        self._weight_names = names
        self._on_weights_set()
        # Last: a thread that finds the layer built (calling it while another builds it) must
        # find all of it.
        self.input_shape = input_shape

    def _on_weights_set(self):
        """Hook for layers that lay weights out once for their kernel (the weights are set, the
        input shape not yet)."""

    @property
    def weights(self):
        """The weights as read-only arrays, in Keras order (not copies)."""
        return [getattr(self, n) for n in getattr(self, "_weight_names", [])] if self.built else []

    def get_weights(self):
        """Return copies of the weights, in Keras order (empty before the layer is built).

        Returns
        -------
        list of ndarray
        """
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set the weights from arrays in Keras layout and order (as `get_weights` returns them).

        An unbuilt layer takes its input size from the weights. Arrays are cast to the layer's
        dtype and copied.

        Parameters
        ----------
        weights : sequence of array_like

        Raises
        ------
        ValueError
            If the number of arrays or a shape is wrong (the message names the layer, the weight,
            the expected and the given shape).
        TypeError
            If `weights` is not a list of real numeric arrays.
        """
        self._set_checked_weights(self._checked_weights(weights))

    def _checked_weights(self, weights):
        """`weights` converted and checked as `set_weights` does, nothing assigned yet: what
        `_set_checked_weights` takes. A model checks every layer's weights before it sets any."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
            raise TypeError(f"layer {self.name!r} expects a list of weight arrays, got {type(weights).__name__}")
        arrays = [as_numeric(w, f"weight {i} of layer {self.name!r}", self.dtype) for i, w in enumerate(weights)]
        if self.built:
            input_shape = self.input_shape
        else:
            input_shape = self._check_build_shape(self._infer_input_shape(arrays))
        shapes = self._weight_shapes(input_shape)
        if len(arrays) != len(shapes):
            raise ValueError(
                f"layer {self.name!r} expects {len(shapes)} weights ({', '.join(shapes) or 'none'}), "
                f"got {len(arrays)}"
            )
        for (name, expected), array in zip(shapes.items(), arrays):
            if array.shape != tuple(expected):
                raise ValueError(
                    f"expected {name} of shape {tuple(expected)} for layer {self.name!r}, got {array.shape}"
                )
        return input_shape, arrays

    def _set_checked_weights(self, checked):
        """Set weights that `_checked_weights` returned."""
        with self._build_lock:
            self._assign(*checked)

    def _infer_input_shape(self, arrays):
        if self.batch_input_shape is not None:
            return self.batch_input_shape
        if not arrays or arrays[0].ndim < 1:
            raise ValueError(f"layer {self.name!r} cannot infer its input size from weights {[a.shape for a in arrays]}")
        return self._input_shape_from_weights(arrays)

    def count_params(self):
        """Return the number of weights, as Keras counts them.

        Raises
        ------
        ValueError
            If the layer is not built yet (its input size is unknown).
        """
        if not self._has_weights:
            return 0
        if not self.built:
            raise ValueError(
                f"layer {self.name!r} is not built: give it input_shape= or call it on data first"
            )
        return int(sum(w.size for w in self.weights))

    @property
    def trainable_weights(self):
        """`weights` unless the layer was made with ``trainable=False`` (Keras's split)."""
        return self.weights if self.trainable else []

    @property
    def non_trainable_weights(self):
        """`weights` if the layer was made with ``trainable=False``, else none."""
        return [] if self.trainable else self.weights

    def reset_states(self):
        """Forget carried states (only stateful recurrent layers have any)."""

    def reset_state(self):
        """Keras 3's name for `reset_states`."""
        self.reset_states()

    def get_config(self):
        """The constructor arguments of this layer, without weights, under Keras's names.

        ``type(layer).from_config(layer.get_config())`` makes an equivalent, unbuilt layer.
        """
        config = {"name": self.name, "dtype": self.dtype.name, "trainable": self.trainable}
        config.update({key: getattr(self, key) for key in self._config_keys})
        # Initializers given by name (a callable cannot be written down).
        config.update({key: value for key, value in self._initializer_names.items() if isinstance(value, str)})
        return config

    @classmethod
    def from_config(cls, config):
        """The layer that `config` (from `get_config`, fastrnn's or a Keras layer's) describes, unbuilt."""
        return cls(**plain_config(config))

    # ----------------------------------------------------------------- functional graphs
    @property
    def input(self):
        """The input tensor(s) of this layer's first call on `fastrnn.Input` tensors (Keras's
        ``layer.input``; a layer of a built Sequential has one from the model's graph)."""
        return self._first_node("input").inputs

    @property
    def output(self):
        """The output tensor(s) of this layer's first call on `fastrnn.Input` tensors (Keras's
        ``layer.output``): ``Model(model.input, model.get_layer(name).output)`` extracts features."""
        outputs = self._first_node("output").outputs
        return outputs[0] if len(outputs) == 1 else outputs

    def _first_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"layer {self.name!r} has no {what}: it has not been called on fastrnn.Input "
                                 "tensors, nor is it in a built Sequential")
        return self._inbound_nodes[0]

    # ----------------------------------------------------------------- shapes and masks
    def compute_output_shape(self, input_shape):
        """Return the output shape for inputs of `input_shape` (the same shape by default)."""
        return tuple(input_shape)

    @property
    def output_shape(self):
        """The output shape for the declared or built input shape."""
        shape = self.input_shape or self.batch_input_shape
        if shape is None:
            raise AttributeError(f"layer {self.name!r} has no known input shape yet")
        return self.compute_output_shape(shape)

    def compute_mask(self, inputs, mask=None):
        """Return the mask of the outputs: the input mask, passed through, by default."""
        return mask

    # ----------------------------------------------------------------- calls
    def call(self, inputs, mask=None):
        """Compute the outputs for arrays `inputs`; subclasses implement it."""
        raise NotImplementedError

    def __call__(self, inputs, *args, **kwargs):
        """Run the layer on arrays, or record it in a functional model when given `Input` tensors.

        Arguments after `inputs` are those of the layer's `call` (``initial_state``, ``mask``),
        checked here, so that a functional model refuses a wrong one while it is being built.
        ``training`` is accepted by every layer and ignored where `call` has none, as in Keras.

        Raises
        ------
        TypeError
            If `call` takes no such argument (the message names the layer, the argument and
            what `call` takes), or gets one twice.
        """
        if args or kwargs:
            kwargs = self._call_arguments(args, kwargs)
        if type(inputs) is not np.ndarray and is_symbolic(inputs):
            return self._call_symbolic(inputs, **kwargs)
        try:
            return self.call(inputs, **kwargs) if kwargs else self.call(inputs)   # the plain call is faster
        except (ValueError, TypeError, MemoryError) as error:
            raise_naming(self, error)

    def _call_arguments(self, args, kwargs):
        """`args` and `kwargs` of a call as keyword arguments of `call`, checked against its signature."""
        cls = type(self)
        if cls not in _CALL_PARAMETERS:
            parameters = list(inspect.signature(cls.call).parameters.values())[2:]   # after self, inputs
            _CALL_PARAMETERS[cls] = None if any(p.kind is p.VAR_KEYWORD for p in parameters) else tuple(
                p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        names = _CALL_PARAMETERS[cls]
        if names is None:
            return kwargs
        # The messages are formatted only when raised: this runs on every call with arguments.
        def what():
            return f"layer {self.name!r} ({cls.__name__})"
        if len(args) > len(names):
            raise TypeError(f"{what()} takes {len(names)} argument{'s' * (len(names) != 1)} after its inputs "
                            f"({', '.join(names)}), got {len(args)}")
        merged = dict(zip(names, args))
        for name, value in kwargs.items():
            if name in merged:
                raise TypeError(f"{what()}: {name} given twice, by position and by name")
            if name not in names:
                if name == "training":   # Keras drops it for layers whose call has none
                    continue
                raise TypeError(f"{what()} does not take {name}=; it takes {', '.join(f'{n}=' for n in names)}")
            merged[name] = value
        return merged

    def _call_symbolic(self, inputs, **kwargs):
        shapes = [t.shape for t in inputs] if isinstance(inputs, (list, tuple)) else inputs.shape
        self.build(shapes)
        if not self._shapes_fit(shapes):
            raise ValueError(
                f"layer {self.name!r} ({type(self).__name__}) cannot take inputs of shape {shapes}: "
                f"it was built for {self.input_shape}"
            )
        # The graph keeps only arguments that matter at inference (and that a saved model can
        # record): training never does, and None is every argument's default.
        kwargs = {key: value for key, value in kwargs.items() if key != "training" and value is not None}
        node = Node(self, inputs, kwargs)
        self._inbound_nodes.append(node)
        out_shapes = self.compute_output_shape(shapes)
        several = isinstance(out_shapes, list)
        for i, shape in enumerate(out_shapes if several else [out_shapes]):
            node.outputs.append(Symbolic(shape, self.dtype, node, i, name=self.name))
        return node.outputs if several else node.outputs[0]

    def _shapes_fit(self, shapes):
        """Whether inputs of `shapes` fit the shape the layer was built for (None fits anything)."""
        def fits(given, built):
            if isinstance(built, list):
                return isinstance(given, list) and len(given) == len(built) and all(map(fits, given, built))
            return (not isinstance(given, list) and len(given) == len(built)
                    and all(g is None or b is None or g == b for g, b in zip(given[1:], built[1:])))
        return fits(shapes, self.input_shape)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"
