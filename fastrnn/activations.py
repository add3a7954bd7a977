"""Activation functions by Keras name, in NumPy, and their codes for the compiled kernels.

Formulas follow Keras 3 (and its TensorFlow backend) so that float32 results agree with Keras
to rounding. Keras 2's ``hard_sigmoid`` is a different function from Keras 3's and is kept under
its own name, ``hard_sigmoid_keras2``, for files written by Keras 2.

The integer codes are the contract with ``csrc/_kernels.pyx`` and ``fastrnn/_numba.py``: each
kernel switches on them, so they must never be renumbered.
"""
import math

import numpy as np

__all__ = ["CODES", "by_code", "code", "get"]

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def linear(x):
    return x


def tanh(x):
    return np.tanh(x)


def sigmoid(x):
    # exp(-|x|) never overflows, so sigmoid(-1000) is 0 without a warning.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def relu(x):
    return np.maximum(x, 0)


def hard_sigmoid(x):
    """Keras 3: ``relu6(x + 3) / 6``."""
    return np.clip(x + 3, 0, 6) / x.dtype.type(6)


def hard_sigmoid_keras2(x):
    """Keras 2: ``clip(0.2 x + 0.5, 0, 1)``."""
    t = x.dtype.type
    return np.clip(t(0.2) * x + t(0.5), 0, 1)


def elu(x):
    # expm1 only sees non-positive values: no overflow on the branch np.where discards.
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def selu(x):
    t = x.dtype.type
    return t(_SELU_SCALE) * np.where(x > 0, x, t(_SELU_ALPHA) * np.expm1(np.minimum(x, 0)))


def softsign(x):
    return x / (1 + np.abs(x))


def softplus(x):
    # log(1 + e^x) = log1p(e^-|x|) + max(x, 0), stable for large |x|.
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def silu(x):
    return x * sigmoid(x)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def gelu(x):
    """Exact GELU, Keras 3's default (``approximate=False``): ``x/2 (1 + erf(x/sqrt 2))``."""
    t = x.dtype.type
    return t(0.5) * x * (1 + _erf(x / t(math.sqrt(2))).astype(x.dtype))


def exponential(x):
    with np.errstate(over="ignore"):  # exp of a large input is inf, as in Keras
        return np.exp(x)


# name -> (code shared with the kernels, NumPy function)
CODES = {
    "linear": 0,
    "tanh": 1,
    "sigmoid": 2,
    "relu": 3,
    "hard_sigmoid": 4,
    "hard_sigmoid_keras2": 5,
    "elu": 6,
    "selu": 7,
    "softsign": 8,
    "softplus": 9,
    "silu": 10,
    "swish": 10,
    "gelu": 11,
    "exponential": 12,
}

_FUNCTIONS = {
    0: linear, 1: tanh, 2: sigmoid, 3: relu, 4: hard_sigmoid, 5: hard_sigmoid_keras2, 6: elu,
    7: selu, 8: softsign, 9: softplus, 10: silu, 11: gelu, 12: exponential,
}


def code(name, layer=None):
    """Return the kernel code of the activation called `name`.

    Parameters
    ----------
    name : str or None
        A Keras activation name; ``None`` means ``"linear"``, as in Keras.
    layer : str, optional
        The name of the layer it is for, which errors name.

    Returns
    -------
    int
        The code the compiled kernels switch on.

    Raises
    ------
    ValueError
        If `name` is not a supported activation (the message lists those that are).
    TypeError
        If `name` is neither a string nor None (callables cannot run inside the kernels).
    """
    if name is None:
        return CODES["linear"]
    of_layer = f" of layer {layer!r}" if layer else ""
    if not isinstance(name, str):
        raise TypeError(
            f"activation{of_layer} must be a name (one of {', '.join(sorted(CODES))}) or None, "
            f"got {type(name).__name__} {name!r}"
        )
    try:
        return CODES[name.lower()]
    except KeyError:
        layer_only = (f" ({name} is for Dense and Activation layers, not inside a recurrent cell)"
                      if name.lower() in _LAYER_ONLY else "")
        raise ValueError(
            f"unknown activation {name!r}{of_layer}; supported: {', '.join(sorted(CODES))}{layer_only}"
        ) from None


def by_code(activation):
    """Return the NumPy function for a kernel activation code (see `code`)."""
    return _FUNCTIONS[activation]


def softmax(x):
    """Softmax over the last axis (a layer activation: it is not elementwise)."""
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def log_softmax(x):
    """Log-softmax over the last axis (a layer activation: it is not elementwise)."""
    shifted = x - np.max(x, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


# Keras 3's other activations, for Dense and Activation layers only: the recurrent kernels have
# no code for them (softmax and log_softmax act on the last axis as a whole anyway).
_LAYER_ONLY = {
    "softmax": softmax,
    "log_softmax": log_softmax,
    "relu6": lambda x: np.clip(x, 0, 6),
    "leaky_relu": lambda x: np.where(x >= 0, x, x.dtype.type(0.2) * x),     # Keras 3's slope
    "mish": lambda x: x * np.tanh(softplus(x)),
    "log_sigmoid": lambda x: -softplus(-x),
    "hard_silu": lambda x: x * hard_sigmoid(x),
    "hard_swish": lambda x: x * hard_sigmoid(x),
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "celu": lambda x: np.maximum(x, 0) + np.minimum(np.expm1(np.minimum(x, 0)), 0),
    "soft_shrink": lambda x: (x - np.clip(x, -0.5, 0.5)).astype(x.dtype),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0).astype(x.dtype),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "squareplus": lambda x: (x + np.sqrt(x * x + x.dtype.type(4))) / 2,
    "sparse_plus": lambda x: np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)).astype(x.dtype),
}


def get(name, elementwise=True, layer=None):
    """Return the NumPy function of the activation called `name` (see `code`).

    Parameters
    ----------
    name : str or None
        A Keras activation name; ``None`` means ``"linear"``.
    elementwise : bool, default True
        False also accepts the activations of Dense and Activation layers that no recurrent
        kernel has: ``softmax`` and ``log_softmax`` (on the last axis as a whole), ``relu6``,
        ``leaky_relu``, ``mish``, ``log_sigmoid``, ``hard_silu``, ``hard_tanh``, ``celu``, ...
    layer : str, optional
        The name of the layer it is for, which errors name.

    Returns
    -------
    callable
        ``f(x) -> ndarray`` of the same dtype as `x`.

    Examples
    --------
    >>> import numpy as np
    >>> get("hard_sigmoid")(np.array([-3.0, 0.0, 3.0]))
    array([0. , 0.5, 1. ])
    """
    if not elementwise and isinstance(name, str) and name.lower() in _LAYER_ONLY:
        return _LAYER_ONLY[name.lower()]
    return _FUNCTIONS[code(name, layer)]
