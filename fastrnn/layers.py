"""The layers around recurrent ones, with Keras names, arguments and mask semantics.

Dense heads, embeddings and masking in front, the inference-time identities (dropout and noise),
reshaping, and the merges of functional models. Each is small: weights in Keras layout, a
`call` in plain NumPy, and how it transforms shapes and masks.
"""
import numpy as np

from . import activations
from .base import Layer, flag, from_spec, plain_config, positive_int, scalar, wrapped_dtype

__all__ = [
    "Activation", "Add", "Any", "Average", "Concatenate", "Dense", "Dropout", "Embedding", "ExpandDims", "Flatten",
    "GaussianDropout", "GaussianNoise", "LogicalOr", "Masking", "Maximum", "Minimum", "Multiply", "NotEqual",
    "OnesLike", "RepeatVector", "Reshape", "SpatialDropout1D", "Subtract", "TimeDistributed", "ZerosLike",
    "add", "average", "concatenate", "maximum", "minimum", "multiply", "subtract",
]


def _numeric_input(layer, inputs):
    x = np.asarray(inputs)
    if x.dtype.kind not in "fiu":
        raise TypeError(f"input to layer {layer.name!r} must be a real numeric array, got dtype {x.dtype}")
    return x.astype(layer.dtype, copy=False)


def _is_number(value):
    """Whether `value` is an int or a float (a bool is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Dense(Layer):
    """Densely-connected layer on the last axis, as ``keras.layers.Dense``: ``act(x @ kernel + bias)``.

    Parameters
    ----------
    units : int
    activation : str or None, default None
        A Keras activation name, ``softmax`` and ``log_softmax`` included.
    use_bias : bool, default True
    dtype, name, weights, input_shape, batch_input_shape, seed
        As for the recurrent layers; weights are ``[kernel (input_dim, units), bias (units,)]``.

    Examples
    --------
    >>> import numpy as np, fastrnn
    >>> fastrnn.Dense(2, seed=0)(np.ones((4, 7, 3))).shape   # works on sequences too
    (4, 7, 2)
    """

    _has_weights = True
    _config_keys = ("units", "activation", "use_bias")
    _initializers = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}
    _training_options = ("lora_rank",)

    def __init__(self, units, activation=None, use_bias=True, dtype="float32", name=None,
                 weights=None, input_shape=None, batch_input_shape=None, seed=None, input_dim=None,
                 **keras_options):
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        super().__init__(name, dtype, input_shape, batch_input_shape, **keras_options)
        self.units = positive_int(units, f"units of layer {self.name!r}")
        self._act = activations.get(activation, elementwise=False, layer=self.name)
        self.activation = "linear" if activation is None else activation.lower()
        self.use_bias = flag(use_bias, f"use_bias of layer {self.name!r}")
        self.seed = seed
        if weights is not None:
            self.set_weights(weights)
        elif self.batch_input_shape is not None:
            self.build(self.batch_input_shape)

    def _check_build_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or not isinstance(input_shape[-1], (int, np.integer)) or input_shape[-1] < 1:
            raise ValueError(f"layer {self.name!r} (Dense) needs inputs with a known last axis, got shape {input_shape}")
        return input_shape

    def _weight_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def _initial_weights(self, shapes, rng):
        kernel = self._initial("kernel_initializer", shapes["kernel"], rng)
        return [kernel] + ([self._initial("bias_initializer", shapes["bias"], rng)] if self.use_bias else [])

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.units,)

    def _shapes_fit(self, shapes):
        # Like Keras's InputSpec(min_ndim=2, axes={-1: input_dim}): any rank, same last axis.
        return not isinstance(shapes, list) and len(shapes) >= 2 and shapes[-1] in (None, self.input_shape[-1])

    def _on_weights_set(self):
        # One attribute, read once by a call: a call running while set_weights replaces the
        # weights takes both old ones or both new.
        self._dense_weights = (self.kernel, self.bias if self.use_bias else None)

    def call(self, inputs, mask=None):
        """``act(inputs @ kernel + bias)`` on the last axis of `inputs` ``(..., input_dim)``."""
        x = _numeric_input(self, inputs)
        if not self.built:
            self.build((None,) + x.shape[1:])
        kernel, bias = self._dense_weights
        if x.ndim < 2 or x.shape[-1] != kernel.shape[0]:
            raise ValueError(
                f"layer {self.name!r} expects inputs of shape (..., {kernel.shape[0]}), got {x.shape}"
            )
        y = x @ kernel
        if bias is not None:
            y += bias
        return self._act(y)


class Activation(Layer):
    """Apply an activation function by Keras name, as ``keras.layers.Activation``."""

    _config_keys = ("activation",)

    def __init__(self, activation, name=None, dtype="float32", input_shape=None, **keras_options):
        super().__init__(name, dtype, input_shape, **keras_options)
        self._act = activations.get(activation, elementwise=False, layer=self.name)
        self.activation = "linear" if activation is None else activation.lower()

    def call(self, inputs, mask=None):
        """The activation of `inputs`, elementwise (softmax: over the last axis)."""
        return self._act(_numeric_input(self, inputs))


class Embedding(Layer):
    """Look up a vector per integer token, as ``keras.layers.Embedding``.

    Parameters
    ----------
    input_dim : int
        Vocabulary size: tokens are ``0 .. input_dim - 1``.
    output_dim : int
    mask_zero : bool, default False
        Token 0 is padding: the output mask is ``tokens != 0``.
    input_length : int, optional
        Keras 2's fixed sequence length; declares the input shape ``(input_length,)``.
    dtype, name, weights, input_shape, batch_input_shape, seed
        As for any layer; weights are ``[embeddings (input_dim, output_dim)]``.
    """

    _has_weights = True
    _config_keys = ("input_dim", "output_dim", "mask_zero")
    _initializers = {"embeddings_initializer": "uniform"}
    _training_options = ("lora_rank",)

    def __init__(self, input_dim, output_dim, mask_zero=False, input_length=None, dtype="float32",
                 name=None, weights=None, input_shape=None, batch_input_shape=None, seed=None,
                 **keras_options):
        if input_length is not None and input_shape is None and batch_input_shape is None:
            input_shape = (input_length,)
        super().__init__(name, dtype, input_shape, batch_input_shape, **keras_options)
        self.input_dim = positive_int(input_dim, f"input_dim of layer {self.name!r}")
        self.output_dim = positive_int(output_dim, f"output_dim of layer {self.name!r}")
        self.mask_zero = flag(mask_zero, f"mask_zero of layer {self.name!r}")
        self.seed = seed
        if isinstance(weights, np.ndarray):
            weights = [weights]      # Keras 3 takes the embedding matrix itself too
        if weights is not None:
            self.set_weights(weights)
        elif self.batch_input_shape is not None:
            self.build(self.batch_input_shape)

    def _weight_shapes(self, input_shape):
        return {"embeddings": (self.input_dim, self.output_dim)}

    def _input_shape_from_weights(self, weights):
        return (None, None)

    def _initial_weights(self, shapes, rng):
        return [self._initial("embeddings_initializer", shapes["embeddings"], rng)]

    def _shapes_fit(self, shapes):
        return not isinstance(shapes, list)   # any shape of tokens

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _tokens(self, inputs):
        tokens = np.asarray(inputs)
        if tokens.dtype.kind == "f":
            # Keras casts float tokens to int32, which truncates toward zero: 1.9 is token 1.
            if not np.all(np.isfinite(tokens)):
                raise ValueError(f"input to layer {self.name!r} must be token ids, got NaN or infinite values")
            tokens = np.trunc(tokens)     # still floats: checked below before the cast, which could wrap
        elif tokens.dtype.kind not in "iub":
            raise TypeError(f"input to layer {self.name!r} must be integer token ids, got dtype {tokens.dtype}")
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.input_dim):
            low, high = int(tokens.min()), int(tokens.max())
            raise ValueError(
                f"layer {self.name!r} has a vocabulary of {self.input_dim} tokens (0..{self.input_dim - 1}), "
                f"got token ids from {low} to {high}"
            )
        return tokens.astype(np.intp)

    def call(self, inputs, mask=None):
        """The embedding of each token: ``(...,)`` integers to ``(..., output_dim)``."""
        tokens = self._tokens(inputs)
        if not self.built:
            self.build((None,) + tokens.shape[1:])
        return self.embeddings[tokens]

    def compute_mask(self, inputs, mask=None):
        return np.asarray(inputs) != 0 if self.mask_zero else None


class Masking(Layer):
    """Mask timesteps whose features all equal `mask_value`, as ``keras.layers.Masking``.

    Masked timesteps are zeroed in the output, and the mask ``(batch, timesteps)`` flows to the
    following layers.
    """

    _config_keys = ("mask_value",)

    def __init__(self, mask_value=0.0, name=None, dtype="float32", input_shape=None, batch_input_shape=None,
                 **keras_options):
        super().__init__(name, dtype, input_shape, batch_input_shape, **keras_options)
        mask_value = scalar(mask_value)
        if not _is_number(mask_value):
            raise TypeError(f"mask_value of layer {self.name!r} must be a number, got {mask_value!r:.100}")
        self.mask_value = mask_value

    def call(self, inputs, mask=None):
        """`inputs` with masked timesteps zeroed."""
        x = _numeric_input(self, inputs)
        return x * self.compute_mask(x)[..., None]

    def compute_mask(self, inputs, mask=None):
        return np.any(np.asarray(inputs) != self.mask_value, axis=-1)


class _MaskOperation(Layer):
    """A Keras operation that a Keras 3 functional model records to compute a mask, run as a
    layer of the graph; its outputs carry no mask of their own."""

    _operation = True

    def compute_mask(self, inputs, mask=None):
        return None

    def _check_axis(self, axis):
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"axis of layer {self.name!r} must be a non-batch axis, got {axis!r:.100}")

    def _broadcast_shape(self, input_shape):
        """The shape two inputs of one rank broadcast to (None for an unknown size)."""
        if not isinstance(input_shape, list) or len(input_shape) != 2 or len(input_shape[0]) != len(input_shape[1]):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) takes two inputs of one rank, got "
                             f"{input_shape}")
        shape = []
        for a, b in zip(*input_shape):
            if a is not None and b is not None and a != b and 1 not in (a, b):
                raise ValueError(f"layer {self.name!r} ({type(self).__name__}) cannot broadcast shapes {input_shape}")
            shape.append(b if a == 1 else a if b == 1 else a if a is not None else b)
        return tuple(shape)


class NotEqual(_MaskOperation):
    """Where `inputs` differ from `value` (of two inputs, where they differ), as Keras's
    ``ops.not_equal``: a Keras 3 functional model records the mask of ``Masking`` and of
    ``Embedding(mask_zero=True)`` as this operation (then ``Any``), passed as ``mask=``."""

    _config_keys = ("value",)

    def __init__(self, value=0.0, name=None, dtype="float32", **keras_options):
        super().__init__(name, dtype, **keras_options)
        if not _is_number(value):
            raise TypeError(f"value of layer {self.name!r} must be a number, got {value!r:.100}")
        self.value = value

    def _check_build_shape(self, input_shape):   # (of two inputs: a list of shapes, as merges keep)
        if isinstance(input_shape, list):
            self._broadcast_shape(input_shape)
            return [tuple(s) for s in input_shape]
        return tuple(input_shape)

    def compute_output_shape(self, input_shape):
        return self._broadcast_shape(input_shape) if isinstance(input_shape, list) else tuple(input_shape)

    def call(self, inputs, mask=None):
        """A boolean array: ``inputs != value``, or ``inputs[0] != inputs[1]``."""
        if isinstance(inputs, (list, tuple)):
            return np.not_equal(np.asarray(inputs[0]), np.asarray(inputs[1]))
        return np.asarray(inputs) != self.value


class Any(_MaskOperation):
    """Whether any value along `axis` is true, as Keras's ``ops.any`` (see `NotEqual`)."""

    _config_keys = ("axis", "keepdims")

    def __init__(self, axis=-1, keepdims=False, name=None, dtype="float32", **keras_options):
        super().__init__(name, dtype, **keras_options)
        self._check_axis(axis)
        self.axis, self.keepdims = axis, flag(keepdims, f"keepdims of layer {self.name!r}")

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if not -len(shape) <= self.axis < len(shape) or self.axis % len(shape) == 0:
            raise ValueError(f"layer {self.name!r} reduces axis {self.axis} of inputs of shape {tuple(shape)}")
        axis = self.axis % len(shape)
        return tuple(shape[:axis] + ([1] if self.keepdims else []) + shape[axis + 1:])

    def call(self, inputs, mask=None):
        """A boolean array: ``inputs`` reduced by logical or along `axis`."""
        return np.any(np.asarray(inputs), axis=self.axis, keepdims=self.keepdims)


class ExpandDims(_MaskOperation):
    """`inputs` with a new axis of size 1 at `axis`, as Keras's ``ops.expand_dims``: with
    `ZerosLike`, `OnesLike` and `LogicalOr`, how a Keras 3 functional model records the mask of
    a merge of masked sequences (each mask broadcast to its input's shape)."""

    _config_keys = ("axis",)

    def __init__(self, axis=-1, name=None, dtype="float32", **keras_options):
        super().__init__(name, dtype, **keras_options)
        self._check_axis(axis)
        self.axis = axis

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if not -len(shape) - 1 <= self.axis <= len(shape) or self.axis % (len(shape) + 1) == 0:
            raise ValueError(f"layer {self.name!r} cannot add axis {self.axis} to inputs of shape {tuple(shape)}")
        axis = self.axis % (len(shape) + 1)
        return tuple(shape[:axis] + [1] + shape[axis:])

    def call(self, inputs, mask=None):
        """`inputs` with a new axis of size 1 at `axis`."""
        return np.expand_dims(np.asarray(inputs), self.axis)


class ZerosLike(_MaskOperation):
    """Zeros of the shape of `inputs`, as Keras's ``ops.zeros_like``, in `dtype` (which may be
    ``"bool"``, as in the masks Keras 3 records; see `ExpandDims`)."""

    _fill = 0

    def __init__(self, name=None, dtype="float32", **keras_options):
        filled = np.dtype(dtype)
        super().__init__(name, "float32" if filled == np.bool_ else filled, **keras_options)
        self.filled_dtype = filled

    def get_config(self):
        return {**super().get_config(), "dtype": self.filled_dtype.name}

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, inputs, mask=None):
        """An array like `inputs`, of `dtype`, filled."""
        return np.full(np.shape(inputs), self._fill, self.filled_dtype)


class OnesLike(ZerosLike):
    """Ones of the shape of `inputs`, as Keras's ``ops.ones_like`` (the mask Keras 3 records for
    an unmasked input of a ``Concatenate``, as ``"bool"``)."""

    _fill = 1


class LogicalOr(_MaskOperation):
    """Where either of two inputs is true, broadcast, as Keras's ``ops.logical_or`` (see
    `ExpandDims`)."""

    def _shapes_fit(self, shapes):
        return isinstance(shapes, list) and len(shapes) == 2

    def compute_output_shape(self, input_shape):
        return self._broadcast_shape(input_shape)

    def call(self, inputs, mask=None):
        """A boolean array: ``inputs[0] or inputs[1]``, broadcast."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"layer {self.name!r} (LogicalOr) takes a list of two arrays")
        return np.logical_or(np.asarray(inputs[0]), np.asarray(inputs[1]))


class _Identity(Layer):
    """A training-time layer that is the identity at inference (mask passed through)."""

    _config_keys = ("rate",)
    _rate_name, _rate_max = "stddev", float("inf")   # Keras refuses a dropout rate outside 0-1

    def __init__(self, rate=0.0, name=None, dtype="float32", input_shape=None, seed=None, noise_shape=None,
                 **keras_options):
        super().__init__(name, dtype, input_shape, **keras_options)
        rate = scalar(rate)
        if not (_is_number(rate) and 0 <= rate <= self._rate_max):
            raise ValueError(f"{self._rate_name} of layer {self.name!r} must be a number from 0 to "
                             f"{self._rate_max:g}, got {rate!r:.100}")
        self.rate = rate

    def call(self, inputs, mask=None, training=None):
        """`inputs`, unchanged: fastrnn runs inference only."""
        return np.asarray(inputs)


class Dropout(_Identity):
    """``keras.layers.Dropout``: the identity at inference."""

    _rate_name, _rate_max = "rate", 1


class SpatialDropout1D(_Identity):
    """``keras.layers.SpatialDropout1D``: the identity at inference."""

    _rate_name, _rate_max = "rate", 1


class GaussianDropout(_Identity):
    """``keras.layers.GaussianDropout``: the identity at inference."""

    _rate_name, _rate_max = "rate", 1


class GaussianNoise(_Identity):
    """``keras.layers.GaussianNoise``: the identity at inference."""

    _config_keys = ("stddev",)

    def __init__(self, stddev=0.0, name=None, dtype="float32", input_shape=None, seed=None, **keras_options):
        super().__init__(stddev, name, dtype, input_shape, seed, **keras_options)
        self.stddev = self.rate


class Flatten(Layer):
    """Flatten all but the batch axis, as ``keras.layers.Flatten`` (the mask stops here)."""

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        size = None if None in rest else int(np.prod(rest))
        return (input_shape[0], size)

    def call(self, inputs, mask=None):
        """`inputs` reshaped to ``(batch, -1)``."""
        x = np.asarray(inputs)
        if x.ndim == 0:
            raise ValueError(f"layer {self.name!r} (Flatten) needs inputs with a batch axis, got a scalar")
        # (the size, not -1: NumPy cannot infer -1 from an empty batch)
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))

    def compute_mask(self, inputs, mask=None):
        return None


class Reshape(Layer):
    """Reshape all but the batch axis to `target_shape` (one entry may be -1), as ``keras.layers.Reshape``."""

    _config_keys = ("target_shape",)

    def __init__(self, target_shape, name=None, dtype="float32", input_shape=None, **keras_options):
        super().__init__(name, dtype, input_shape, **keras_options)
        dims = (tuple(target_shape.tolist()) if isinstance(target_shape, np.ndarray) and target_shape.ndim == 1
                else tuple(target_shape) if isinstance(target_shape, (list, tuple)) else None)
        if (dims is None or any(isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) for d in dims)
                or sum(d == -1 for d in dims) > 1 or any(d < -1 or d == 0 for d in dims)):
            raise ValueError(f"target_shape of layer {self.name!r} must be a tuple of positive integers and at most "
                             f"one -1, got {target_shape!r:.100}")
        self.target_shape = tuple(int(d) for d in dims)

    def compute_output_shape(self, input_shape):
        rest = tuple(input_shape)[1:]
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if None in rest:
            return (input_shape[0],) + tuple(None if d == -1 else d for d in self.target_shape)
        size = int(np.prod(rest))
        if (-1 in self.target_shape and size % known) or (-1 not in self.target_shape and size != known):
            raise ValueError(f"layer {self.name!r} cannot reshape inputs of shape {tuple(input_shape)} "
                             f"to {self.target_shape}")
        return (input_shape[0],) + tuple(size // known if d == -1 else d for d in self.target_shape)

    def call(self, inputs, mask=None):
        """`inputs` reshaped to ``(batch, *target_shape)``."""
        x = np.asarray(inputs)
        return x.reshape((x.shape[0],) + self.compute_output_shape(x.shape)[1:])

    def compute_mask(self, inputs, mask=None):
        return None


class RepeatVector(Layer):
    """Repeat a ``(batch, features)`` input `n` times: ``(batch, n, features)``, as ``keras.layers.RepeatVector``."""

    _config_keys = ("n",)

    def __init__(self, n, name=None, dtype="float32", input_shape=None, **keras_options):
        super().__init__(name, dtype, input_shape, **keras_options)
        self.n = positive_int(n, f"n of layer {self.name!r}")

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"layer {self.name!r} (RepeatVector) takes inputs of shape (batch, features), got "
                             f"{tuple(input_shape)}")
        batch, features = tuple(input_shape)
        return (batch, self.n, features)

    def call(self, inputs, mask=None):
        """`inputs` ``(batch, features)`` repeated along a new time axis."""
        x = np.asarray(inputs)
        if x.ndim != 2:
            raise ValueError(f"layer {self.name!r} expects inputs of shape (batch, features), got {x.shape}")
        return np.repeat(x[:, None, :], self.n, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None


class TimeDistributed(Layer):
    """Apply a layer to every timestep, as ``keras.layers.TimeDistributed``.

    The wrapped layer sees ``(batch * timesteps, ...)``; its weights are the wrapper's weights.
    The mask passes through unchanged.
    """

    def __init__(self, layer, name=None, input_shape=None, batch_input_shape=None, dtype=None, **keras_options):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed wraps a fastrnn layer, got {type(layer).__name__}")
        super().__init__(name, wrapped_dtype(layer, dtype, "TimeDistributed"), input_shape, batch_input_shape,
                         **keras_options)
        self.layer = layer
        self._has_weights = layer._has_weights
        if self.batch_input_shape is not None:
            self.build(self.batch_input_shape)

    @property
    def built(self):
        return self.input_shape is not None and (self.layer.built or not self._has_weights)

    def build(self, input_shape):
        """Build the wrapped layer for one timestep of `input_shape` ``(batch, timesteps, ...)``."""
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"layer {self.name!r} (TimeDistributed) needs inputs of shape "
                             f"(batch, timesteps, ...), got {input_shape}")
        self.layer.build((None,) + input_shape[2:])
        self.input_shape = input_shape

    @property
    def weights(self):
        return self.layer.weights

    def _checked_weights(self, weights):
        """The wrapped layer's weights, checked by it."""
        return self.layer._checked_weights(weights)

    def _set_checked_weights(self, checked):
        self.layer._set_checked_weights(checked)
        if self.input_shape is None and self.layer.built:
            self.input_shape = (None, None) + tuple(self.layer.input_shape[1:])

    def count_params(self):
        return self.layer.count_params()

    def get_config(self):
        """Keras's TimeDistributed config: name and the wrapped layer's config."""
        return {"name": self.name, "trainable": self.trainable,
                "layer": {"class_name": type(self.layer).__name__, "config": self.layer.get_config()}}

    @classmethod
    def from_config(cls, config):
        """The TimeDistributed layer that `config` (from `get_config`) describes, unbuilt."""
        return cls(**{**plain_config(config), "layer": from_spec(config["layer"])})

    def compute_output_shape(self, input_shape):
        batch, timesteps = tuple(input_shape)[:2]
        inner = self._one_output(self.layer.compute_output_shape((None,) + tuple(input_shape)[2:]))
        return (batch, timesteps) + tuple(inner)[1:]

    def _one_output(self, output):
        """`output` (a shape or an array) of the wrapped layer, which must have one output."""
        if isinstance(output, list):
            raise ValueError(f"layer {self.name!r} (TimeDistributed) wraps layers with one output; "
                             f"{self.layer.name!r} has {len(output)} (return_state)")
        return output

    def call(self, inputs, mask=None):
        """The wrapped layer's output for each timestep, ``(batch, timesteps, ...)``."""
        x = np.asarray(inputs)
        if x.ndim < 3:
            raise ValueError(f"layer {self.name!r} (TimeDistributed) expects inputs of shape "
                             f"(batch, timesteps, ...), got {x.shape}")
        y = self._one_output(self.layer.call(x.reshape((-1,) + x.shape[2:])))
        return y.reshape(x.shape[:2] + y.shape[1:])


def _mask_like(mask, array):
    """A (batch, timesteps) `mask` broadcast over the trailing axes of `array`."""
    return np.broadcast_to(np.asarray(mask, bool).reshape(np.shape(mask) + (1,) * (array.ndim - np.ndim(mask))),
                           array.shape)


class _Merge(Layer):
    """Combine a list of same-shaped inputs. Masks as in Keras 3: the output's keeps a step where
    any input's does, and there is none if an input has none; with ``keras2_mask=True`` (Keras 2
    files, which fastrnn loads as Keras 2 ran them) where every input's mask that there is does."""

    def __init__(self, name=None, dtype="float32", keras2_mask=False, **keras_options):
        super().__init__(name, dtype, **keras_options)
        self.keras2_mask = bool(keras2_mask)

    def get_config(self):
        config = super().get_config()
        return {**config, "keras2_mask": True} if self.keras2_mask else config

    def _shapes_fit(self, shapes):
        return isinstance(shapes, list) and len(shapes) == len(self.input_shape)

    def _check_build_shape(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) merges a list of at least two inputs, "
                             f"got {input_shape}")
        shapes = [tuple(s) for s in input_shape]
        self._check_shapes(shapes)
        return shapes

    def _check_shapes(self, shapes):
        def same(a, b):
            return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a[1:], b[1:]))
        if not all(same(shapes[0], s) for s in shapes[1:]):
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) needs inputs of one shape, got {shapes}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def _arrays(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) merges a list of at least two arrays")
        arrays = [np.asarray(a) for a in inputs]
        self._check_shapes([a.shape for a in arrays])
        if len({a.shape[:1] for a in arrays}) > 1:   # (the shape checks leave the batch axis open)
            raise ValueError(f"layer {self.name!r} ({type(self).__name__}) merges arrays of one number of rows, got "
                             f"shapes {[a.shape for a in arrays]}")
        return arrays

    def call(self, inputs, mask=None):
        """The merge of the arrays in the list `inputs`."""
        return self._merge(self._arrays(inputs))

    def compute_mask(self, inputs, mask=None):
        if self.keras2_mask:
            masks = [m for m in (mask or []) if m is not None]
            return np.logical_and.reduce(masks) if masks else None
        if not mask or any(m is None for m in mask):
            return None
        return np.logical_or.reduce([np.asarray(m, bool) for m in mask])

    def _step_masks(self, arrays, mask):
        """Each input's mask broadcast to its shape (None where it has none), for the Keras 3
        merges whose values depend on the masks; all None with keras2_mask or no masks."""
        if self.keras2_mask or mask is None:
            return [None] * len(arrays)
        return [None if m is None else _mask_like(m, a) for a, m in zip(arrays, mask)]


class Add(_Merge):
    """Sum of the inputs, as ``keras.layers.Add``."""

    def _merge(self, arrays):
        return sum(arrays[1:], arrays[0])


class Subtract(_Merge):
    """First input minus the second, as ``keras.layers.Subtract``."""

    def _check_shapes(self, shapes):
        if len(shapes) != 2:
            raise ValueError(f"layer {self.name!r} (Subtract) takes exactly two inputs, got {len(shapes)}")
        super()._check_shapes(shapes)

    def _merge(self, arrays):
        return arrays[0] - arrays[1]


class Multiply(_Merge):
    """Elementwise product of the inputs, as ``keras.layers.Multiply``: as in Keras 3, a masked
    value counts as 1, and where every input is masked the product is 0."""

    def _merge(self, arrays):
        return np.prod(arrays, axis=0)

    def call(self, inputs, mask=None):
        """The product of the arrays in the list `inputs`, their `mask` (a list) applied."""
        arrays = self._arrays(inputs)
        masks = self._step_masks(arrays, mask)
        if all(m is None for m in masks):
            return self._merge(arrays)
        product = np.prod([a if m is None else np.where(m, a, 1) for a, m in zip(arrays, masks)], axis=0)
        return product if any(m is None for m in masks) else np.where(np.logical_or.reduce(masks), product, 0)


class Average(_Merge):
    """Mean of the inputs, as ``keras.layers.Average``."""

    def _merge(self, arrays):
        return sum(arrays[1:], arrays[0]) / len(arrays)


class _Extremum(_Merge):
    """Maximum or Minimum: as in Keras 3, where an input is masked the others decide."""

    def call(self, inputs, mask=None):
        """The merge of the arrays in the list `inputs`, their `mask` (a list) applied."""
        arrays = self._arrays(inputs)
        masks = self._step_masks(arrays, mask)
        if all(m is None for m in masks):
            return self._merge(arrays)
        output, output_mask = arrays[0], masks[0]
        for x, m in zip(arrays[1:], masks[1:]):
            if m is not None:
                x = np.where(m, x, output)
            if output_mask is not None:
                output = np.where(output_mask, output, x)
            output_mask = None if m is None or output_mask is None else output_mask | m
            output = self._merge([output, x])
        return output


class Maximum(_Extremum):
    """Elementwise maximum of the inputs, as ``keras.layers.Maximum``."""

    def _merge(self, arrays):
        return np.maximum.reduce(arrays)


class Minimum(_Extremum):
    """Elementwise minimum of the inputs, as ``keras.layers.Minimum``."""

    def _merge(self, arrays):
        return np.minimum.reduce(arrays)


class Concatenate(_Merge):
    """Join the inputs along `axis` (the last by default), as ``keras.layers.Concatenate``.

    Its output mask keeps a step where any joined input keeps it, as in Keras 3; with
    ``keras2_mask=True`` (Keras 2 files) only where all of them do, as in Keras 2.
    """

    _config_keys = ("axis",)

    def __init__(self, axis=-1, name=None, dtype="float32", keras2_mask=False, **keras_options):
        super().__init__(name, dtype, keras2_mask, **keras_options)
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"axis of layer {self.name!r} (Concatenate) must be an integer, got {axis!r:.100}")
        self.axis = int(axis)

    def _check_shapes(self, shapes):
        rank = len(shapes[0])
        axis = self.axis % rank if -rank <= self.axis < rank else 0   # (0: refused below)
        if axis == 0 or any(len(s) != rank for s in shapes) or not all(
                a is None or b is None or a == b
                for s in shapes[1:] for i, (a, b) in enumerate(zip(shapes[0], s)) if i not in (0, axis)):
            raise ValueError(f"layer {self.name!r} (Concatenate) cannot join shapes {shapes} on axis {self.axis}")

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        axis = self.axis % len(shapes[0])
        sizes = [s[axis] for s in shapes]
        out = list(shapes[0])
        out[axis] = None if None in sizes else sum(sizes)
        return tuple(out)

    def _merge(self, arrays):
        return np.concatenate(arrays, axis=self.axis)

    def compute_mask(self, inputs, mask=None):
        # Keras: expand each mask to its input's shape (all True where absent), join along the
        # axis, and keep a step where any joined position is unmasked (Keras 2: every one).
        if mask is None or all(m is None for m in mask):
            return None
        arrays = [np.asarray(a) for a in inputs]
        full = [np.ones(a.shape, bool) if m is None else _mask_like(m, a) for a, m in zip(arrays, mask)]
        return (np.all if self.keras2_mask else np.any)(np.concatenate(full, axis=self.axis), axis=-1)


# Keras's functional forms of the merge layers: ``concatenate([a, b])`` is ``Concatenate()([a, b])``.
def add(inputs, **kwargs):
    """Sum of `inputs` (arrays or Input tensors), as ``keras.layers.add``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """First of two `inputs` minus the second, as ``keras.layers.subtract``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Elementwise product of `inputs`, as ``keras.layers.multiply``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Mean of `inputs`, as ``keras.layers.average``."""
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Elementwise maximum of `inputs`, as ``keras.layers.maximum``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Elementwise minimum of `inputs`, as ``keras.layers.minimum``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    """`inputs` joined along `axis`, as ``keras.layers.concatenate``."""
    return Concatenate(axis=axis, **kwargs)(inputs)
