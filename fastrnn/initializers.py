"""Keras's default initialisers, for layers built without trained weights."""
import numpy as np

__all__ = ["glorot_uniform", "orthogonal"]


def glorot_uniform(shape, rng, dtype):
    """Keras's ``glorot_uniform``: U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``.

    Parameters
    ----------
    shape : tuple of int
        ``(fan_in, fan_out)``.
    rng : numpy.random.Generator
    dtype : numpy.dtype
    """
    fan_in, fan_out = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


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
