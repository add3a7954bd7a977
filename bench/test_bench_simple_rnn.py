"""pytest-benchmark suite: the SimpleRNN forward pass on every backend over a grid of shapes.

Run with ``pip install ".[bench]" && pytest bench/ --benchmark-group-by=param:shape``; the NumPy
reference is the baseline of each group. ``--benchmark-only -k "cython"`` narrows it down.
Inputs and layers are built outside the timed call; each backend runs once before timing, so
Numba's compilation is not measured.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import backends

# (batch, timesteps, input_dim, units): from one-sequence embedded calls to large batches.
SHAPES = [
    (1, 10, 8, 16),
    (1, 100, 32, 64),
    (8, 50, 32, 64),
    (32, 100, 64, 128),
    (256, 50, 128, 256),
    (1024, 20, 64, 64),
    (4, 2000, 16, 32),
    (64, 100, 256, 512),
]
BACKENDS = [name for name, reason in backends.available().items() if reason is None]


@pytest.fixture
def use_backend(request):
    previous = fastrnn.backend()
    yield fastrnn.set_backend
    fastrnn.set_backend(previous)


@pytest.mark.parametrize("return_sequences", [False, True], ids=["last", "sequences"])
@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_simple_rnn_forward(benchmark, use_backend, shape, backend_name, return_sequences):
    batch, timesteps, input_dim, units = shape
    layer = fastrnn.SimpleRNN(units, return_sequences=return_sequences, seed=0)
    x = np.random.default_rng(0).standard_normal(shape[:3]).astype(np.float32)
    use_backend(backend_name)
    layer(x)  # build, and compile under numba
    benchmark.extra_info["gflops"] = 2 * batch * timesteps * units * (input_dim + units) / 1e9
    output = benchmark(layer, x)
    assert output.shape[-1] == units
