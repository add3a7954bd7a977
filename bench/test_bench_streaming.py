"""Embedded and ragged use: one streaming step, and ragged batches against padded ones.

``pytest bench/test_bench_streaming.py --benchmark-columns=median,ops``
- step: ``stream.step(x_t)`` at batch 1, 32 inputs, 64 units, for each cell;
- ragged: 256 sequences of lengths 10..200 through ``predict(list)`` (grouped by length) against
  the same sequences zero-padded to 200 steps (the cost of padding).
"""
import numpy as np
import pytest

import fastrnn

CELLS = {"simple_rnn": fastrnn.SimpleRNN, "lstm": fastrnn.LSTM, "gru": fastrnn.GRU}


@pytest.mark.parametrize("cell", CELLS)
def test_stream_step(benchmark, cell):
    model = fastrnn.Sequential([fastrnn.Input((None, 32)), CELLS[cell](64, seed=0)])
    stream = model.stream(batch_size=1)
    x_t = np.random.default_rng(0).standard_normal((1, 32)).astype(np.float32)
    stream.step(x_t)
    # Rounds of many calls: a round of a few microseconds would time the timer as much as the step.
    # A long warm-up: for a few hundred ms after a model is made, the BLAS threads that its
    # initialisation woke keep spinning.
    benchmark.pedantic(stream.step, args=(x_t,), iterations=2000, rounds=100, warmup_rounds=100)


RNG = np.random.default_rng(0)
LENGTHS = RNG.integers(10, 201, size=256)
SEQUENCES = [RNG.standard_normal((n, 16)).astype(np.float32) for n in LENGTHS]
PADDED = np.zeros((256, 200, 16), np.float32)
for i, sequence in enumerate(SEQUENCES):
    PADDED[i, :len(sequence)] = sequence
MODEL = fastrnn.Sequential([fastrnn.Input((None, 16)), fastrnn.GRU(64, seed=0), fastrnn.Dense(1, seed=1)])


@pytest.mark.parametrize("layout", ["ragged", "padded"])
def test_ragged_against_padded(benchmark, layout):
    run = (lambda: MODEL.predict(SEQUENCES)) if layout == "ragged" else (lambda: MODEL.predict(PADDED))
    benchmark.extra_info["real_steps"] = int(LENGTHS.sum())
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
