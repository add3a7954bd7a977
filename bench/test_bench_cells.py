"""pytest-benchmark: SimpleRNN, LSTM and GRU forward passes on every backend, over the grid of
bench/compare.py, with the NumPy reference as the baseline of each group.

``pytest bench/test_bench_cells.py --benchmark-group-by=param:shape,param:cell``
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import backends

# (batch, timesteps, input_dim, units), from one embedded sequence to large batches.
SHAPES = [(1, 10, 8, 16), (1, 100, 32, 64), (8, 50, 32, 64), (32, 100, 64, 128), (256, 50, 128, 256),
          (1024, 20, 64, 64), (4, 2000, 16, 32), (64, 100, 256, 512)]
CELLS = {"simple_rnn": fastrnn.SimpleRNN, "lstm": fastrnn.LSTM, "gru": fastrnn.GRU}
BACKENDS = [name for name, reason in backends.available().items() if reason is None]


@pytest.fixture
def use_backend():
    previous = fastrnn.backend()
    yield fastrnn.set_backend
    fastrnn.set_backend(previous)


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_forward(benchmark, use_backend, shape, cell, backend_name):
    batch, timesteps, input_dim, units = shape
    layer = CELLS[cell](units, return_sequences=True, seed=0)
    x = np.random.default_rng(0).standard_normal(shape[:3]).astype(np.float32)
    use_backend(backend_name)
    layer(x)  # build, and compile under numba
    gates = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
    benchmark.extra_info["gflop"] = 2 * batch * timesteps * units * (input_dim + units) * gates / 1e9
    benchmark(layer, x)
