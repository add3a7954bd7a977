"""Run every compiled kernel on awkward shapes, for a memory checker.

``bash bench/memcheck.sh`` runs this under valgrind's memcheck and fails on any invalid read or
write, use of uninitialised memory, or invalid free in fastrnn's extension. Shapes cover batch 1
to 9 (the micro-kernel's row blocks and remainders), units 1 to 33 (vector widths and their
edges), a timestep or several, masks, projections, both GRU forms, float32 and float64; stream
steps (the bound one-step `Step`), inputs of other layouts and batches split across threads.
"""
import itertools

import numpy as np

import fastrnn

fastrnn.set_backend("cython")
rng = np.random.default_rng(0)
cases = 0
for dtype, batch, units, timesteps in itertools.product(("float32", "float64"), (1, 4, 9), (1, 5, 8, 33), (1, 3)):
    x = rng.standard_normal((batch, timesteps, 3)).astype(dtype)
    mask = rng.random((batch, timesteps)) > 0.3
    layers = [fastrnn.SimpleRNN(units, return_sequences=True, dtype=dtype, seed=0),
              fastrnn.LSTM(units, return_sequences=True, return_state=True, dtype=dtype, seed=0),
              fastrnn.LSTM(units, proj_size=max(1, units // 2), return_sequences=True, dtype=dtype, seed=0),
              fastrnn.GRU(units, return_sequences=True, dtype=dtype, seed=0),
              fastrnn.GRU(units, reset_after=False, go_backwards=True, dtype=dtype, seed=0)]
    for layer in layers:
        layer(x)
        layer(x, mask=mask)
        cases += 2
    streamed = [fastrnn.SimpleRNN(units, dtype=dtype, seed=0), fastrnn.LSTM(units, dtype=dtype, seed=0),
                fastrnn.LSTM(units, proj_size=max(1, units // 2), dtype=dtype, seed=0),
                fastrnn.GRU(units, dtype=dtype, seed=0), fastrnn.GRU(units, reset_after=False, dtype=dtype, seed=0)]
    for layer in streamed:
        stream = fastrnn.Sequential([fastrnn.Input((None, 3)), layer]).stream(batch_size=batch)
        for t in range(timesteps):
            stream.step(x[:, t])
            cases += 1
    activations = rng.standard_normal(units * 7).astype(dtype)
    for code in sorted(set(fastrnn.activations.CODES.values())):
        fastrnn._kernels.activation(activations.copy(), code)
        cases += 1
# Inputs as they lie, read in place or copied a chunk at a time (the projection in chunks of a
# step or two here): reversed, rows padded, every other input, unaligned, broadcast.
previous = fastrnn._kernels.configure(projected_elements=16)
x = rng.standard_normal((5, 4, 6)).astype("float32")
unaligned = np.zeros(x.nbytes + 1, np.uint8)[1:].view(np.float32).reshape(x.shape)
unaligned[...] = x
for view in (x[:, ::-1], x[:1, ::-1], x[..., :3], x[:, :1, :3], x[..., ::2], unaligned, np.broadcast_to(x[:1], x.shape)):
    fastrnn.LSTM(7, return_sequences=True, seed=0)(view)
    cases += 1
fastrnn._kernels.configure(**previous)
# A batch split across threads (fastrnn/parallel.py): each part writes its own rows.
fastrnn.set_num_threads(3)
fastrnn.parallel.MIN_WORK_PER_PART = fastrnn.parallel.MIN_WORK_PER_TEAM_PART = 1
for layer in (fastrnn.LSTM(8, return_sequences=True, seed=0), fastrnn.GRU(9, seed=0)):
    layer(rng.standard_normal((13, 4, 3)).astype("float32"))
    cases += 1
print(f"memcheck: ran {cases} kernel calls")
