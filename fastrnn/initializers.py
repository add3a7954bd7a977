"""Keras's weight initialisers by name, for layers built without trained weights.

Each is ``initializer(shape, rng, dtype) -> ndarray`` with Keras 3's distribution and defaults
(the random draws are NumPy's, so the values differ from Keras's; the deterministic ones are
equal). `get` resolves a layer's ``kernel_initializer=`` and the like.
"""
import numpy as np

__all__ = ["get", "glorot_uniform", "orthogonal"]

# The standard deviation of a unit normal truncated at two standard deviations (Keras's divisor).
_TRUNCATED_STDDEV = 0.87962566103423978


def _fans(shape):
    """Keras's fan_in and fan_out: a vector's length for both, a matrix's rows and columns."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2], dtype=np.int64))
    return shape[-2] * receptive, shape[-1] * receptive


def _truncated_normal(rng, stddev, shape):
    """Normal draws with `stddev`, those beyond two standard deviations drawn again."""
    values = rng.standard_normal(shape)
    while True:
        outside = np.abs(values) > 2
        if not outside.any():
            return values * stddev
        values[outside] = rng.standard_normal(int(outside.sum()))


def _variance_scaling(scale, mode, distribution):
    def initializer(shape, rng, dtype):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(1.0, fan)
        if distribution == "uniform":
            limit = np.sqrt(3 * variance)
            return rng.uniform(-limit, limit, size=shape).astype(dtype)
        return _truncated_normal(rng, np.sqrt(variance) / _TRUNCATED_STDDEV, shape).astype(dtype)
    return initializer


glorot_uniform = _variance_scaling(1.0, "fan_avg", "uniform")
glorot_uniform.__doc__ = """Keras's ``glorot_uniform``: U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``.

Parameters
----------
shape : tuple of int
rng : numpy.random.Generator
dtype : numpy.dtype
"""


def orthogonal(shape, rng, dtype):
    """Keras's ``orthogonal``: orthonormal rows or columns from the QR of a normal matrix.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)``.
    rng : numpy.random.Generator
    dtype : numpy.dtype
    """
    rows, cols = shape
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q *= np.sign(np.diag(r))  # makes the decomposition unique, hence uniformly distributed
    return (q.T if rows < cols else q).astype(dtype)


def _identity(shape, rng, dtype):
    if len(shape) != 2:
        raise ValueError(f"the identity initializer makes matrices, not shape {shape}")
    return np.eye(*shape, dtype=dtype)


_BY_NAME = {
    "zeros": lambda shape, rng, dtype: np.zeros(shape, dtype),
    "ones": lambda shape, rng, dtype: np.ones(shape, dtype),
    "constant": lambda shape, rng, dtype: np.zeros(shape, dtype),   # Keras's default value is 0
    "identity": _identity,
    "orthogonal": orthogonal,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": _variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "he_uniform": _variance_scaling(2.0, "fan_in", "uniform"),
    "he_normal": _variance_scaling(2.0, "fan_in", "truncated_normal"),
    "lecun_uniform": _variance_scaling(1.0, "fan_in", "uniform"),
    "lecun_normal": _variance_scaling(1.0, "fan_in", "truncated_normal"),
    "random_uniform": lambda shape, rng, dtype: rng.uniform(-0.05, 0.05, size=shape).astype(dtype),
    "uniform": lambda shape, rng, dtype: rng.uniform(-0.05, 0.05, size=shape).astype(dtype),
    "random_normal": lambda shape, rng, dtype: (0.05 * rng.standard_normal(shape)).astype(dtype),
    "normal": lambda shape, rng, dtype: (0.05 * rng.standard_normal(shape)).astype(dtype),
    "truncated_normal": lambda shape, rng, dtype: _truncated_normal(rng, 0.05, shape).astype(dtype),
}
# Keras's class names name them too: GlorotUniform, RandomNormal, Zeros ...
_BY_NAME.update({name.title().replace("_", ""): function for name, function in list(_BY_NAME.items())})
_BY_NAME.update({"Identity": _identity, "HeUniform": _BY_NAME["he_uniform"], "HeNormal": _BY_NAME["he_normal"]})
# Keras 3's other names for two of them (early Keras 3 releases wrote OrthogonalInitializer in configs)
_BY_NAME.update({"OrthogonalInitializer": _BY_NAME["Orthogonal"], "IdentityInitializer": _identity})


# The settings of Keras's initializers that a name alone means (Orthogonal's gain, Constant's
# value, RandomUniform's bounds, RandomNormal's and TruncatedNormal's mean and stddev).
_KERAS_DEFAULTS = {"gain": 1.0, "value": 0.0, "minval": -0.05, "maxval": 0.05, "mean": 0.0, "stddev": 0.05,
                   "input_axes": None, "output_axes": None}


def get(identifier, what):
    """The initializer that `identifier` names: a Keras name or class name, or a callable.

    Parameters
    ----------
    identifier : str, dict or callable
        ``"glorot_uniform"``, ``"GlorotUniform"``, ``"orthogonal"``, ``"zeros"`` ..., or Keras's
        serialized form of one with its defaults; a callable is called as Keras calls one,
        ``identifier(shape, dtype=dtype)``.
    what : str
        What is being initialised, for error messages (``"kernel_initializer of layer 'lstm'"``).

    Returns
    -------
    callable
        ``initializer(shape, rng, dtype) -> ndarray``.

    Raises
    ------
    ValueError
        If `identifier` is not a known name nor callable.
    """
    if isinstance(identifier, dict) and identifier.get("class_name") in _BY_NAME:
        # Keras's serialized form ({"class_name": "GlorotUniform", "config": {"seed": None}}), as a
        # layer's get_config gives it: only defaults, as the name alone would mean.
        settings = {k: v for k, v in (identifier.get("config") or {}).items()
                    if k != "seed" and _KERAS_DEFAULTS.get(k, object()) != v}
        if settings:
            raise ValueError(f"{what}: {identifier['class_name']} with settings {settings} is not supported; "
                             "fastrnn takes initializers with their Keras defaults, or a callable")
        identifier = identifier["class_name"]
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]
    if callable(identifier):
        return lambda shape, rng, dtype: np.array(identifier(shape, dtype=np.dtype(dtype).name), dtype)
    known = ", ".join(sorted(name for name in _BY_NAME if name.islower()))
    raise ValueError(f"{what}: unknown initializer {identifier!r}; fastrnn knows {known}, or a callable")
