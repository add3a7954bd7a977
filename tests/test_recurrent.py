"""Recurrent layers: every cell x option x backend x dtype against the NumPy reference,
invariants, input handling, initialisation and errors."""
import itertools
import os
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import activations, backends, parallel
from conftest import assert_close, on_reference

DTYPES = ("float32", "float64")
BATCH, TIMESTEPS, INPUT_DIM, UNITS = 5, 7, 4, 6
CELLS = {
    "simple_rnn": (fastrnn.SimpleRNN, {}),
    "lstm": (fastrnn.LSTM, {}),
    "gru": (fastrnn.GRU, {"reset_after": True}),
    "gru_reset_before": (fastrnn.GRU, {"reset_after": False}),
    "lstm_projected": (fastrnn.LSTM, {"proj_size": 4}),   # PyTorch's proj_size
}
GATED = [name for name in CELLS if name != "simple_rnn"]


def make_layer(dtype="float32", seed=0, scale=0.5, cell="simple_rnn", **kwargs):
    """A built layer with random weights, bias included, that keep activations in range."""
    cls, options = CELLS[cell]
    layer = cls(UNITS, dtype=dtype, **options, **kwargs)
    layer.build((None, None, INPUT_DIM))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-scale, scale, w.shape) for w in layer.get_weights()])
    return layer


def make_inputs(dtype="float32", seed=1, batch=BATCH, timesteps=TIMESTEPS, cell="simple_rnn"):
    """Inputs, a mask with every kind of row, and initial state(s) for `cell`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, timesteps, INPUT_DIM)).astype(dtype)
    # Every kind of row: unmasked, leading, middle and trailing gaps, fully masked.
    mask = np.ones((batch, timesteps), bool)
    mask[1, :2] = mask[2, 3:5] = mask[3, -2:] = mask[4, :] = False
    cls, options = CELLS[cell]
    sizes = cls(UNITS, **options)._state_sizes()
    states = [rng.standard_normal((batch, size)).astype(dtype) for size in sizes]
    return x, mask, states if len(states) > 1 else states[0]



OPTIONS = list(itertools.product([False, True], repeat=6))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "return_sequences, return_state, go_backwards, use_bias, with_mask, with_state", OPTIONS,
    ids=["seq%d-state%d-back%d-bias%d-mask%d-h0%d" % o for o in OPTIONS],
)
@pytest.mark.parametrize("cell", CELLS)
def test_backend_matches_reference(backend_name, cell, dtype, return_sequences, return_state,
                                   go_backwards, use_bias, with_mask, with_state):
    layer = make_layer(dtype, cell=cell, return_sequences=return_sequences, return_state=return_state,
                       go_backwards=go_backwards, use_bias=use_bias)
    x, mask, h0 = make_inputs(dtype, cell=cell)
    kwargs = {"mask": mask if with_mask else None, "initial_state": h0 if with_state else None}
    expected = on_reference(lambda: layer(x, **kwargs))
    assert_close(layer(x, **kwargs), expected, dtype)


BLOCKS = list(itertools.product(["simple_rnn", "lstm", "gru"], [1, 2, 3, 5], [8, 24], [False, True],
                                [False, True]))


@pytest.mark.parametrize("cell, batch, units, with_mask, go_backwards", BLOCKS,
                         ids=["%s-b%d-u%d-mask%d-back%d" % f for f in BLOCKS])
def test_float32_vector_blocks_match_reference(backend_name, cell, batch, units, with_mask, go_backwards):
    """float32 with the default activations and units a multiple of 8: the shapes where the
    compiled kernels run whole vectors (csrc/small_gemm.h, csrc/fast_math.h) and their edges, with
    masks and initial states, for one and several timesteps."""
    cls, options = CELLS[cell]
    layer = cls(units, **options, return_sequences=True, return_state=True, go_backwards=go_backwards)
    layer.build((None, None, INPUT_DIM))
    rng = np.random.default_rng(units + batch)
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in layer.get_weights()])
    for timesteps in (1, 4, 7):
        x = rng.standard_normal((batch, timesteps, INPUT_DIM)).astype(np.float32)
        mask = rng.random((batch, timesteps)) < 0.7 if with_mask else None
        h0 = [rng.standard_normal((batch, units)).astype(np.float32) for _ in layer._state_sizes()]
        expected = on_reference(lambda: layer(x, mask=mask, initial_state=h0))
        assert_close(layer(x, mask=mask, initial_state=h0), expected, np.float32)


ROW_BLOCKS = list(itertools.product(["simple_rnn", "lstm", "gru"], DTYPES, [6, 8, 9, 10, 11, 12, 17, 20], [24, 72]))


@pytest.mark.parametrize("cell, dtype, batch, units", ROW_BLOCKS,
                         ids=["%s-%s-b%d-u%d" % (c, np.dtype(d).name, b, u) for c, d, b, u in ROW_BLOCKS])
def test_six_and_four_row_blocks_match_reference(backend_name, cell, dtype, batch, units):
    """The compiled products take rows in blocks of 6, then of 4 (two of 4 where one of 6 would
    leave 2 or 3 rows over: 8, 9, 20 rows), then one at a time; over one panel and edges (24
    units) and several panels (72). On one thread, so that the batch is not split into parts."""
    cls, options = CELLS[cell]
    layer = cls(units, **options, return_sequences=True, return_state=True, dtype=dtype)
    layer.build((None, None, INPUT_DIM))
    rng = np.random.default_rng(batch * units)
    layer.set_weights([rng.uniform(-0.3, 0.3, w.shape) for w in layer.get_weights()])
    x = rng.standard_normal((batch, 5, INPUT_DIM)).astype(dtype)
    h0 = [rng.standard_normal((batch, units)).astype(dtype) for _ in layer._state_sizes()]
    expected = on_reference(lambda: layer(x, initial_state=h0))
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(1)
    try:
        assert_close(layer(x, initial_state=h0), expected, dtype)
    finally:
        fastrnn.set_num_threads(previous)


LONE_ROWS = list(itertools.product(["simple_rnn", "lstm", "gru"], DTYPES, [1, 2, 3, 5, 7], [False, True]))


@pytest.mark.parametrize("cell, dtype, batch, with_mask", LONE_ROWS,
                         ids=["%s-%s-b%d-mask%d" % (c, np.dtype(d).name, b, m) for c, d, b, m in LONE_ROWS])
def test_lone_rows_reading_packed_kernels_match_reference(backend_name, cell, dtype, batch, with_mask):
    """Rows outside the row blocks read a packed recurrent kernel once it is 16 KB or more (72
    units: blocks of 8 and 4 vectors, then edges read in place), for one row alone and the
    rows after a block (5 rows: one after a block of 4; 7: one after a block of 6)."""
    cls, options = CELLS[cell]
    layer = cls(72, **options, return_sequences=True, return_state=True, dtype=dtype)
    layer.build((None, None, INPUT_DIM))
    rng = np.random.default_rng(batch)
    layer.set_weights([rng.uniform(-0.3, 0.3, w.shape) for w in layer.get_weights()])
    x = rng.standard_normal((batch, 5, INPUT_DIM)).astype(dtype)
    mask = rng.random((batch, 5)) < 0.7 if with_mask else None
    expected = on_reference(lambda: layer(x, mask=mask))
    assert_close(layer(x, mask=mask), expected, dtype)


SPLIT = list(itertools.product(CELLS, DTYPES, [False, True], [False, True]))


@pytest.mark.parametrize("cell, dtype, with_mask, go_backwards", SPLIT,
                         ids=["%s-%s-mask%d-back%d" % o for o in SPLIT])
def test_batch_split_across_threads_matches_reference(backend_name, monkeypatch, cell, dtype, with_mask,
                                                      go_backwards):
    """With the thresholds lowered, even this small batch is split across 3 threads (rows 0-4,
    4-8, 8-13 on the Python pool, 0-4, 4-9, 9-13 on the compiled kernels' team): each part
    writes its rows of the states and the sequence."""
    monkeypatch.setattr(parallel, "MIN_WORK_PER_PART", 1)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(3)
    try:
        assert parallel.row_parts(13, 1) == [slice(0, 4), slice(4, 8), slice(8, 13)]
        assert parallel.row_parts(13, 1, team=True) == [slice(0, 4), slice(4, 9), slice(9, 13)]
        team = backend_name == "cython"
        if team:
            backends.kernels().set_thread_speeds()     # (else the parts follow the threads' speeds)
        assert parallel.batch_parts(13, 1, backends.kernels()) == (parallel.row_parts(13, 1, team), team)
        layer = make_layer(dtype, cell=cell, return_sequences=True, return_state=True,
                           go_backwards=go_backwards)
        x, mask, h0 = make_inputs(dtype, batch=13, cell=cell)
        kwargs = {"mask": mask if with_mask else None, "initial_state": h0}
        expected = on_reference(lambda: layer(x, **kwargs))
        assert_close(layer(x, **kwargs), expected, dtype)
    finally:
        fastrnn.set_num_threads(previous)


def test_batch_parts_only_where_a_part_pays(backend_name, monkeypatch):
    """No parts below either threshold (a small call decides at once); the pool's own threshold
    alone, lowered, splits a batch for the backends without a team."""
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        kernels = backends.kernels()
        assert parallel.batch_parts(1, 16, kernels) == ((), False)
        monkeypatch.setattr(parallel, "MIN_WORK_PER_PART", 1)
        expected = ((), False) if backend_name == "cython" else ([slice(0, 4), slice(4, 8)], False)
        assert parallel.batch_parts(8, 16, kernels) == expected
    finally:
        fastrnn.set_num_threads(previous)


def _split_call_in_child(queue):
    parallel.MIN_WORK_PER_PART = parallel.MIN_WORK_PER_TEAM_PART = 1
    layer = fastrnn.LSTM(8, seed=0)
    queue.put(layer(np.ones((12, 3, 2), np.float32)).sum())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_splits_calls_without_hanging(monkeypatch):
    """The parent's thread pool does not survive a fork: the child must make its own."""
    import multiprocessing

    monkeypatch.setattr(parallel, "MIN_WORK_PER_PART", 1)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        layer = fastrnn.LSTM(8, seed=0)
        expected = layer(np.ones((12, 3, 2), np.float32)).sum()   # the pool now exists
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_split_call_in_child, args=(queue,))
        child.start()
        child.join(timeout=60)
        assert not child.is_alive(), "the forked child hung on a split call"
        child.kill() if child.is_alive() else None
        assert child.exitcode == 0
        assert queue.get(timeout=5) == pytest.approx(expected, abs=1e-5)
    finally:
        fastrnn.set_num_threads(previous)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("merge_mode", ["concat", "sum", None])
def test_bidirectional_directions_in_parallel_match_reference(backend_name, monkeypatch, cell, merge_mode):
    """With the thresholds lowered, the two directions run on two threads, and neither splits its
    batch again (a pool thread waiting for work queued behind itself would never return)."""
    monkeypatch.setattr(parallel, "MIN_WORK_PER_PART", 1)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        layer = fastrnn.Bidirectional(make_layer("float32", cell=cell, return_sequences=True, return_state=True),
                                      merge_mode=merge_mode)
        x, mask, _ = make_inputs("float32", batch=13, cell=cell)
        rows, _ = parallel.batch_parts(13, 5 * layer.forward_layer._step_work, backends.kernels(), calls=2)
        assert rows == [slice(None)]       # one part for each direction
        expected = on_reference(lambda: layer(x, mask=mask))
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(layer(x, mask=mask)))
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the parallel directions deadlocked"
        assert_close(outcome[0], expected, "float32")
    finally:
        fastrnn.set_num_threads(previous)


ROLES = [("simple_rnn", "activation")] + [(cell, role) for cell in GATED
                                          for role in ("activation", "recurrent_activation")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(activations.CODES))
@pytest.mark.parametrize("cell, role", ROLES, ids=["-".join(r) for r in ROLES])
def test_each_activation_matches_reference(backend_name, cell, role, activation, dtype):
    # Weights large enough to saturate the bounded activations; the unbounded ones (and any gate
    # outside [0, 1], which lets the state grow) get smaller weights so that values stay moderate
    # over the sequence: the tolerances are absolute.
    bounded = ("tanh", "sigmoid", "hard_sigmoid", "hard_sigmoid_keras2", "softsign")
    gate_like = ("sigmoid", "hard_sigmoid", "hard_sigmoid_keras2")
    if role == "activation":
        wide = 1.5 if activation in bounded else 0.5
    else:
        wide = 0.5 if activation in gate_like else 0.3
    scale = {"exponential": 0.1, "linear": 0.3, "relu": 0.3}.get(activation, wide)
    layer = make_layer(dtype, cell=cell, scale=scale, return_sequences=True, **{role: activation})
    x, mask, _ = make_inputs(dtype)
    expected = on_reference(lambda: layer(x, mask=mask))
    assert np.all(np.isfinite(expected))
    assert_close(layer(x, mask=mask), expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_functions_are_keras_formulas(dtype):
    x = np.linspace(-8, 8, 161).astype(dtype)
    f = activations.get
    np.testing.assert_allclose(f("hard_sigmoid")(x), np.clip(x / 6 + 0.5, 0, 1), atol=1e-7)
    np.testing.assert_allclose(f("hard_sigmoid_keras2")(x), np.clip(0.2 * x + 0.5, 0, 1), atol=1e-7)
    np.testing.assert_allclose(f("sigmoid")(x), 1 / (1 + np.exp(-x.astype(float))), rtol=1e-6)
    np.testing.assert_allclose(f("softplus")(x), np.log1p(np.exp(x.astype(float))), rtol=1e-6)
    assert f("swish") is f("silu")
    assert f(None) is f("linear")
    for name in activations.CODES:
        assert f(name)(x).dtype == x.dtype, name


def test_activations_saturate_without_warnings():
    x = np.array([-1e30, -1000.0, 1000.0, 1e30, np.inf, -np.inf])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        assert list(activations.get("sigmoid")(x)) == [0, 0, 1, 1, 1, 0]
        assert list(activations.get("softplus")(x[:4])) == [0, 0, 1000, 1e30]
        assert list(activations.get("elu")(x[:2])) == [-1, -1]


@pytest.mark.parametrize("cell", CELLS)
def test_last_step_of_sequence_is_output_and_state(backend_name, cell):
    x, mask, h0 = make_inputs(cell=cell)
    sequence = make_layer(cell=cell, return_sequences=True)(x, initial_state=h0, mask=mask)
    output, state, *_ = make_layer(cell=cell, return_state=True)(x, initial_state=h0, mask=mask)
    np.testing.assert_array_equal(output, sequence[:, -1])
    # The output is the state h; but a fully masked row keeps its initial state while its
    # output is zeros (Keras).
    h0 = h0[0] if isinstance(h0, list) else h0
    np.testing.assert_array_equal(state[:4], output[:4])
    np.testing.assert_array_equal(state[4], h0[4])
    assert not output[4].any()


@pytest.mark.parametrize("cell", CELLS)
def test_batch_equals_sequences_run_alone(backend_name, cell):
    layer = make_layer(cell=cell, return_sequences=True, return_state=True)
    x, mask, h0 = make_inputs(cell=cell)
    h0 = h0 if isinstance(h0, list) else [h0]
    batched = layer(x, initial_state=h0, mask=mask)
    for b in range(BATCH):
        alone = layer(x[b:b + 1], initial_state=[h[b:b + 1] for h in h0], mask=mask[b:b + 1])
        for together, single in zip(batched, alone):
            np.testing.assert_allclose(together[b:b + 1], single, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_go_backwards_equals_reversed_input(backend_name, cell):
    x, mask, h0 = make_inputs(cell=cell)
    backwards = make_layer(cell=cell, return_sequences=True, go_backwards=True)
    forwards = make_layer(cell=cell, return_sequences=True)
    np.testing.assert_array_equal(
        backwards(x, initial_state=h0, mask=mask),
        forwards(x[:, ::-1], initial_state=h0, mask=mask[:, ::-1]),
    )


def test_masked_steps_repeat_previous_output():
    x, mask, _ = make_inputs()
    sequence = make_layer(return_sequences=True)(x, mask=mask)
    assert not sequence[1, :2].any()                                  # before the first step
    np.testing.assert_array_equal(sequence[2, 3], sequence[2, 2])     # a gap repeats
    np.testing.assert_array_equal(sequence[3, -1], sequence[3, -3])   # trailing gap
    assert not sequence[4].any()                                      # fully masked


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_zero_output_for_mask_zeroes_the_last_output_too(backend_name, cell, go_backwards):
    """With zero_output_for_mask, Keras's last output is the last step's output, zeros where that
    step is masked (rows 3 and 4 here, or 1 and 4 backwards), the final state left as it is."""
    x, mask, _ = make_inputs(cell=cell)
    options = {"cell": cell, "zero_output_for_mask": True, "go_backwards": go_backwards}
    sequence = make_layer(return_sequences=True, **options)(x, mask=mask)
    last, *states = make_layer(return_state=True, **options)(x, mask=mask)
    np.testing.assert_array_equal(last, sequence[:, -1])
    last_step = mask[:, 0] if go_backwards else mask[:, -1]
    assert not last[~last_step].any() and last[last_step].all()
    assert states[0][~last_step].any()      # (the rows with steps before the masked ones)


def test_integer_mask_equals_boolean_mask(backend_name):
    layer = make_layer(return_sequences=True)
    x, mask, _ = make_inputs()
    np.testing.assert_array_equal(layer(x, mask=mask.astype(np.int8)), layer(x, mask=mask))


@pytest.mark.parametrize("cell", CELLS)
def test_results_do_not_depend_on_thread_count(backend_name, cell):
    layer = make_layer(cell=cell, return_sequences=True)
    inputs = [make_inputs(seed=s)[0] for s in range(8)]
    expected = [layer(x) for x in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(20):
            results[i] = layer(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


@pytest.mark.parametrize(
    "layout",
    ["fortran", "strided", "negative_strides", "read_only", "int64", "float16", "float64_into_float32", "memmap"],
)
def test_any_input_layout_and_dtype(backend_name, layout, tmp_path):
    layer = make_layer(return_sequences=True)
    x, _, _ = make_inputs()
    if layout == "fortran":
        given, expected_input = np.asfortranarray(x), x
    elif layout == "strided":
        wide = np.repeat(x, 2, axis=2)
        given, expected_input = wide[:, :, ::2], x
    elif layout == "negative_strides":
        given, expected_input = x[::-1], x[::-1].copy()
    elif layout == "read_only":
        given = x.copy()
        given.flags.writeable = False
        expected_input = x
    elif layout == "int64":
        given = np.round(x * 3).astype(np.int64)
        expected_input = given.astype(np.float32)
    elif layout == "float16":
        given = x.astype(np.float16)
        expected_input = given.astype(np.float32)
    elif layout == "float64_into_float32":
        given, expected_input = x.astype(np.float64), x
    else:
        np.save(tmp_path / "x.npy", x)
        given, expected_input = np.load(tmp_path / "x.npy", mmap_mode="r"), x
    output = layer(given)
    assert output.dtype == np.float32
    np.testing.assert_allclose(output, layer(expected_input), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_inputs_and_initial_state_are_not_modified(backend_name, cell):
    layer = make_layer(cell=cell, return_state=True, go_backwards=True)
    x, mask, h0 = make_inputs(cell=cell)
    h0 = h0 if isinstance(h0, list) else [h0]
    originals = [x, mask, *h0]
    copies = [a.copy() for a in originals]
    layer(x, initial_state=h0, mask=mask)
    for original, copy in zip(originals, copies):
        np.testing.assert_array_equal(original, copy)


def test_return_state_arrays_are_independent():
    output, state = make_layer(return_state=True)(make_inputs()[0])
    output[...] = 0
    assert state.any()


@pytest.mark.parametrize("cell", CELLS)
def test_nan_and_inf_stay_in_their_row(backend_name, cell):
    layer = make_layer(cell=cell, return_sequences=True)
    x, _, _ = make_inputs()
    x[0, 3, 0] = np.nan
    x[1, 0, 0] = np.inf
    output = layer(x)
    assert np.isnan(output[0, 3:]).all() and not np.isnan(output[0, :3]).any()
    assert np.isfinite(output[2:]).all()
    assert_close(output, on_reference(lambda: layer(x)), "float32")


@pytest.mark.parametrize("cell", CELLS)
def test_batch_zero_returns_empty(backend_name, cell):
    x = np.zeros((0, TIMESTEPS, INPUT_DIM), np.float32)
    layer = make_layer(cell=cell, return_sequences=True, return_state=True)
    sizes = layer._state_sizes()
    assert make_layer(cell=cell)(x).shape == (0, sizes[0])
    output, *states = layer(x)
    assert output.shape == (0, TIMESTEPS, sizes[0])
    assert [s.shape for s in states] == [(0, size) for size in sizes]


@pytest.mark.parametrize("cell", CELLS)
def test_float64_end_to_end(backend_name, cell):
    layer = make_layer("float64", cell=cell, return_sequences=True, return_state=True)
    assert all(w.dtype == np.float64 for w in layer.get_weights())
    outputs = layer(make_inputs("float32")[0])
    assert all(o.dtype == np.float64 for o in outputs)


# ------------------------------------------------------------------ weights and initialisation
def test_get_weights_round_trip():
    layer = make_layer()
    other = fastrnn.SimpleRNN(UNITS)
    other.set_weights(layer.get_weights())
    x = make_inputs()[0]
    np.testing.assert_array_equal(other(x), layer(x))
    assert [w.shape for w in layer.get_weights()] == [(INPUT_DIM, UNITS), (UNITS, UNITS), (UNITS,)]


def test_weights_are_private_copies():
    kernel = np.ones((INPUT_DIM, UNITS), np.float32)
    layer = fastrnn.SimpleRNN(UNITS, weights=[kernel, np.eye(UNITS), np.zeros(UNITS)])
    kernel[...] = 5
    layer.get_weights()[0][...] = 7
    assert (layer.kernel == 1).all()


def test_keras_initialisation():
    layer = fastrnn.SimpleRNN(8, seed=3)
    layer(np.zeros((2, 4, 5)))
    kernel, recurrent_kernel, bias = layer.get_weights()
    assert np.abs(kernel).max() <= np.sqrt(6 / (5 + 8))
    assert kernel.std() > 0.1
    np.testing.assert_allclose(recurrent_kernel @ recurrent_kernel.T, np.eye(8), atol=1e-5)
    assert not bias.any()
    again = fastrnn.SimpleRNN(8, seed=3, input_shape=(4, 5)).get_weights()
    np.testing.assert_array_equal(again[0], kernel)
    assert not np.array_equal(fastrnn.SimpleRNN(8, seed=4, input_shape=(4, 5)).get_weights()[0], kernel)


def test_names_count_up_like_keras():
    first, second = fastrnn.SimpleRNN(2), fastrnn.SimpleRNN(2)
    assert first.name.startswith("simple_rnn") and first.name != second.name
    assert fastrnn.SimpleRNN(2, name="encoder").name == "encoder"


def test_count_params_and_output_shape():
    layer = fastrnn.SimpleRNN(3, input_shape=(2, 10), return_state=True)
    assert layer.count_params() == 42
    assert layer.output_shape == [(None, 3), (None, 3)]
    assert fastrnn.SimpleRNN(3, use_bias=False, input_shape=(2, 10)).count_params() == 39


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (np.zeros((2, 3)), ValueError, r"shape \(batch, timesteps, input_dim\), got shape \(2, 3\)"),
        (np.zeros((2, 3, 5, 1)), ValueError, "got shape"),
        (np.zeros((2, 3, 5)), ValueError, r"expects input_dim 4, got input of shape \(2, 3, 5\)"),
        (np.zeros((2, 0, 4)), ValueError, "0 timesteps"),
        (np.array([[["a"] * 4]]), TypeError, "real numeric array, got dtype <U1"),
        (np.zeros((2, 3, 4), complex), TypeError, "complex128"),
        (np.zeros((2, 3, 4), bool), TypeError, "bool"),
        (np.empty((2, 3, 4), object), TypeError, "object"),
    ],
)
def test_bad_inputs_are_named(inputs, error, message):
    with pytest.raises(error, match=message):
        make_layer()(inputs)


def test_bad_mask_and_state_are_named():
    layer = make_layer()
    x = np.zeros((2, 3, INPUT_DIM))
    with pytest.raises(ValueError, match=r"mask .* must have shape \(batch, timesteps\) = \(2, 3\), got \(3, 2\)"):
        layer(x, mask=np.ones((3, 2), bool))
    with pytest.raises(TypeError, match="mask .* must be boolean, got dtype float64"):
        layer(x, mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"expected initial_state of shape \(2, 6\) .* got \(6,\)"):
        layer(x, initial_state=np.zeros(UNITS))
    with pytest.raises(ValueError, match="expects 1 initial state array"):
        layer(x, initial_state=[np.zeros((2, UNITS))] * 2)


def test_bad_weights_are_named():
    layer = fastrnn.SimpleRNN(3, name="simple_rnn")
    with pytest.raises(ValueError, match=r"expected recurrent_kernel of shape \(3, 3\) for layer 'simple_rnn', got \(3, 4\)"):
        layer.set_weights([np.zeros((10, 3)), np.zeros((3, 4)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"expects 3 weights \(kernel, recurrent_kernel, bias\), got 2"):
        layer.set_weights([np.zeros((10, 3)), np.zeros((3, 3))])
    with pytest.raises(ValueError, match="2-D kernel"):
        layer.set_weights([np.zeros(3), np.zeros((3, 3)), np.zeros(3)])
    with pytest.raises(TypeError, match="list of weight arrays"):
        layer.set_weights(np.zeros((10, 3)))
    with pytest.raises(TypeError, match="real numeric"):
        layer.set_weights([np.zeros((10, 3)), np.zeros((3, 3)), np.array(["a"] * 3)])
    layer.set_weights([np.zeros((10, 3)), np.zeros((3, 3)), np.zeros(3)])
    with pytest.raises(ValueError, match=r"expected kernel of shape \(10, 3\) for layer 'simple_rnn', got \(3, 10\)"):
        layer.set_weights([np.zeros((3, 10)), np.zeros((3, 3)), np.zeros(3)])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"units": 0}, ValueError, "units of layer .* must be a positive integer, got 0"),
        ({"units": 2.5}, ValueError, "units of layer .* must be a positive integer"),
        ({"units": 2, "activation": "tanhh"}, ValueError, "unknown activation 'tanhh' of layer .*; supported: .*tanh"),
        ({"units": 2, "activation": np.tanh}, TypeError, "activation of layer .* must be a name"),
        ({"units": 2, "dtype": "float16"}, TypeError, "dtype must be 'float32' or 'float64', got 'float16'"),
        ({"units": 2, "input_shape": (3, 0)}, ValueError, "input_shape of layer .* positive integers"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        fastrnn.SimpleRNN(**kwargs)


def test_unbuilt_layer_has_no_param_count():
    with pytest.raises(ValueError, match="not built"):
        fastrnn.SimpleRNN(3).count_params()


# ------------------------------------------------------------------ LSTM and GRU specifics
def test_gated_weight_layouts_and_param_counts():
    lstm = fastrnn.LSTM(5, input_shape=(None, 3), seed=0)
    assert [w.shape for w in lstm.get_weights()] == [(3, 20), (5, 20), (20,)]
    assert lstm.count_params() == 4 * (5 * (3 + 5) + 5)
    bias = lstm.get_weights()[2]
    assert (bias[5:10] == 1).all() and not bias[:5].any() and not bias[10:].any()   # unit_forget_bias
    gru = fastrnn.GRU(5, input_shape=(None, 3))
    assert [w.shape for w in gru.get_weights()] == [(3, 15), (5, 15), (2, 15)]
    assert gru.count_params() == 3 * (5 * (3 + 5) + 2 * 5)
    before = fastrnn.GRU(5, reset_after=False, input_shape=(None, 3))
    assert [w.shape for w in before.get_weights()] == [(3, 15), (5, 15), (15,)]


def test_gru_recurrent_bias_matters_only_after_reset():
    x = make_inputs()[0]
    layer = make_layer(cell="gru", return_sequences=True)
    kernel, recurrent_kernel, bias = layer.get_weights()
    moved = bias.copy()
    moved[1] += 0.5
    other = fastrnn.GRU(UNITS, return_sequences=True, weights=[kernel, recurrent_kernel, moved])
    assert np.abs(other(x) - layer(x)).max() > 1e-3


def test_lstm_state_errors_name_the_layer():
    layer = make_layer(cell="lstm")
    x = np.zeros((2, 3, INPUT_DIM))
    with pytest.raises(ValueError, match="expects 2 initial state array"):
        layer(x, initial_state=np.zeros((2, UNITS)))
    with pytest.raises(ValueError, match=r"expected bias of shape \(2, 18\) for layer 'g', got \(18,\)"):
        fastrnn.GRU(UNITS, name="g", weights=[np.zeros((4, 18)), np.zeros((6, 18)), np.zeros(18)])
