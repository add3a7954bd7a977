"""Where small_gemm.h beats BLAS: the crossover behind SMALL_GEMM in csrc/_kernels.pyx.

One LSTM step at batch 1..64 and 16..256 units, float32: with the recurrent product in
small_gemm.h below 2**17 multiply-adds and in BLAS above. Compare the times on each side of the
threshold with ``pytest bench/test_bench_gemm.py --benchmark-group-by=param:units``.
"""
import numpy as np
import pytest

import fastrnn

BATCHES = [1, 4, 16, 64]
UNITS = [16, 64, 128, 256]


@pytest.mark.parametrize("units", UNITS)
@pytest.mark.parametrize("batch", BATCHES)
def test_lstm_step(benchmark, batch, units):
    layer = fastrnn.LSTM(units, seed=0)
    x = np.random.default_rng(0).standard_normal((batch, 1, units)).astype(np.float32)
    layer(x)
    benchmark.extra_info["multiply_adds"] = batch * units * 4 * units
    benchmark(layer, x)
