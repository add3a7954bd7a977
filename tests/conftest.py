"""Shared test fixtures: every test that takes `backend_name` runs once per backend.

Each backend is forced in turn, so a backend that silently failed to load cannot pass as green.
``FASTRNN_BACKEND=name pytest`` runs the whole suite on that one backend only.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

import fastrnn

ALL_BACKENDS = ("cython", "numba", "numpy")
BACKENDS = (os.environ["FASTRNN_BACKEND"],) if os.environ.get("FASTRNN_BACKEND") else ALL_BACKENDS

# float32 within 1e-5 absolute of the framework; float64 within 1e-12 of the reference.
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


@pytest.fixture(params=BACKENDS)
def backend_name(request):
    """Run the test with `request.param` as the active backend, then restore the previous one."""
    previous = fastrnn.backend()
    fastrnn.set_backend(request.param)
    yield request.param
    fastrnn.set_backend(previous)


@pytest.fixture
def tuned():
    """Set the compiled kernels' tuning for one test (the compiled backend active), then restore
    it; the threads' measured speeds forgotten before and after (equal slices and parts until
    measured)."""
    from fastrnn import _kernels

    previous_backend = fastrnn.backend()
    fastrnn.set_backend("cython")
    previous = _kernels.configure()
    _kernels.set_thread_speeds()
    yield _kernels.configure
    _kernels.set_thread_speeds()
    _kernels.configure(**previous)
    fastrnn.set_backend(previous_backend)


@pytest.fixture
def num_threads():
    """fastrnn.set_num_threads for one test, restored after it."""
    previous = fastrnn.num_threads()
    yield fastrnn.set_num_threads
    fastrnn.set_num_threads(previous)


def assert_close(actual, expected, dtype):
    """Compare outputs (or lists of outputs) within the tolerance of `dtype`; NaN equals NaN."""
    if isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_close(a, e, dtype)
        return
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE[np.dtype(dtype)], equal_nan=True)


def load_fixture(filename):
    """The cases (the JSON ``index``) and arrays of a generated fixture file in tests/data."""
    with np.load(Path(__file__).parent / "data" / filename, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("index"))), arrays


def on_reference(fn):
    """Run `fn` with the NumPy reference as the backend (the oracle of the backend tests)."""
    previous = fastrnn.backend()
    fastrnn.set_backend("numpy")
    try:
        return fn()
    finally:
        fastrnn.set_backend(previous)
