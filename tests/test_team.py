"""The compiled kernels' own threads (csrc/team.h) and their chunked input projection.

A call whose steps are large enough runs on a team of threads, each owning a slice of every
gate's units, meeting after each step; the input projection runs a chunk of steps at a time.
The defaults reach neither with small inputs, so these tests lower the thresholds (the kernels'
`configure`) and check every cell, dtype and option against the NumPy reference, the team's
bookkeeping (which calls ran on several threads), and its safety: concurrent callers, fastrnn's
own row split, a forked child.
"""
import itertools
import multiprocessing
import os
import threading

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels, parallel
from conftest import assert_close, on_reference

DTYPES = ("float32", "float64")
CELLS = {
    "simple_rnn": (fastrnn.SimpleRNN, {}),
    "lstm": (fastrnn.LSTM, {}),
    "gru": (fastrnn.GRU, {"reset_after": True}),
    "gru_reset_before": (fastrnn.GRU, {"reset_after": False}),
    "lstm_projected": (fastrnn.LSTM, {"proj_size": 24}),
}
# Cells whose steps need every unit between two products: they run on one thread.
ONE_THREAD = {"gru_reset_before", "lstm_projected"}
INPUT_DIM, UNITS = 5, 72     # 72 units: slices of 16, 32 and 24 float32 units for three threads


@pytest.fixture
def parts_per_call(monkeypatch):
    """The number of parts of each `run_parts` call made during the test, in order."""
    sizes = []
    run_parts = _kernels.run_parts
    monkeypatch.setattr(_kernels, "run_parts", lambda parts: (sizes.append(len(parts)), run_parts(parts)))
    return sizes


def make_layer(cell, dtype, seed=0, units=UNITS, **kwargs):
    cls, options = CELLS[cell]
    layer = cls(units, **options, dtype=dtype, **kwargs)
    layer.build((None, None, INPUT_DIM))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.uniform(-0.3, 0.3, w.shape) for w in layer.get_weights()])
    return layer


def make_inputs(layer, batch, timesteps, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, timesteps, INPUT_DIM)).astype(layer.dtype)
    mask = rng.random((batch, timesteps)) < 0.7
    states = [rng.standard_normal((batch, size)).astype(layer.dtype) for size in layer._state_sizes()]
    return x, mask, states


TEAM = list(itertools.product(CELLS, DTYPES, [2, 3], [1, 4, 7], [False, True]))


@pytest.mark.parametrize("cell, dtype, threads, batch, options", TEAM,
                         ids=["%s-%s-t%d-b%d-opt%d" % c for c in TEAM])
def test_team_matches_reference(tuned, cell, dtype, threads, batch, options):
    """Every step split among 2 or 3 threads (unequal slices, a projection of one step at a time)
    gives the reference's outputs and states, with masks, initial states and go_backwards; the
    cells that need every unit between two products run on one thread."""
    tuned(threads=threads, min_step_work=0, projected_elements=1, projected_rows=1)
    layer = make_layer(cell, dtype, return_sequences=options, return_state=True, go_backwards=options)
    x, mask, states = make_inputs(layer, batch, timesteps=5)
    kwargs = {"mask": mask, "initial_state": states} if options else {}
    expected = on_reference(lambda: layer(x, **kwargs))
    before = _kernels.calls_on_several_threads()
    assert_close(layer(x, **kwargs), expected, dtype)
    assert _kernels.calls_on_several_threads() - before == (0 if cell in ONE_THREAD else 1)


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 5])
def test_slices_of_whole_panels_pack_straight_from_the_weights(tuned, cell, dtype, batch):
    """Slices whose width is whole panels pack each gate's columns of the kernels from the layer's
    own (no copy of them is made, and none may be read): two layers of one shape and other
    weights, called in turns on the same scratch, each give the reference's outputs."""
    tuned(threads=2, min_step_work=0, projected_elements=1, projected_rows=1)
    layers = [make_layer(cell, dtype, seed=seed, units=128, return_sequences=True) for seed in (0, 1)]
    x, _, _ = make_inputs(layers[0], batch, timesteps=4)
    expected = [on_reference(lambda: layer(x)) for layer in layers]
    packed, several = _kernels.kernels_packed(), _kernels.calls_on_several_threads()
    for _ in range(2):
        for layer, wanted in zip(layers, expected):
            assert_close(layer(x), wanted, dtype)
    assert _kernels.calls_on_several_threads() - several == 4
    assert _kernels.kernels_packed() - packed == 4 * 2 * 2    # both kernels, in both slices


SPEEDS = list(itertools.product(["simple_rnn", "lstm", "gru"], DTYPES, [(1, 2), (3, 1), (1, 2, 4)]))


@pytest.mark.parametrize("cell, dtype, speeds", SPEEDS, ids=["%s-%s-%s" % (c, d, s) for c, d, s in SPEEDS])
def test_slices_follow_the_threads_speeds(tuned, cell, dtype, speeds):
    """Each step's slices are sized by the threads' measured speeds (the faster thread's slice
    the wider, each on whole cache lines, none empty), and the outputs stay the reference's."""
    tuned(threads=len(speeds), min_step_work=0)
    _kernels.set_thread_speeds(speeds)
    try:
        align = 64 // np.dtype(dtype).itemsize
        starts = _kernels.slice_starts(UNITS, len(speeds), np.dtype(dtype).itemsize)
        widths = np.diff(starts)
        assert starts[0] == 0 and starts[-1] == UNITS and all(start % align == 0 for start in starts[:-1])
        assert widths.min() >= align and list(np.argsort(widths, kind="stable")) == list(np.argsort(speeds))
        layer = make_layer(cell, dtype, return_sequences=True, return_state=True)
        x, mask, states = make_inputs(layer, 5, 6)
        expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
        before = _kernels.calls_on_several_threads()
        assert_close(layer(x, mask=mask, initial_state=states), expected, dtype)
        assert _kernels.calls_on_several_threads() == before + 1
    finally:
        _kernels.set_thread_speeds()


# Calls whose products all run in small_gemm.h, split among two threads by the threads' speeds:
# slices with edge columns (200 units), row parts, float32 and float64.
ALL_SMALL = [("lstm", "float32", (1, 20, 64, 200)), ("gru", "float64", (1, 20, 64, 200)),
             ("simple_rnn", "float32", (1, 30, 64, 328)), ("gru", "float32", (64, 20, 32, 72)),
             ("lstm", "float64", (48, 20, 32, 72)), ("gru_reset_before", "float32", (64, 20, 32, 72))]
# Calls with a product in BLAS, whose sums depend on the rows and columns it is given (float64
# projections in slices; see "routes" in csrc/_kernels.pyx): split by the threads' speeds, they
# gave other bits from one call to the next. And an LSTM whose slices' projections, routed each
# by its own size, went one to BLAS and one to small_gemm.h.
IN_BLAS = [("lstm", "float32", (1, 5, 512, 1024)), ("gru", "float64", (8, 3, 512, 162)),
           ("simple_rnn", "float64", (16, 2, 512, 300)), ("gru_reset_before", "float32", (64, 6, 256, 512))]


def routed_call(cell, dtype, shape):
    batch, timesteps, inputs, units = shape
    cls, options = CELLS[cell]
    layer = cls(units, **options, dtype=dtype, return_sequences=True)
    layer.build((None, timesteps, inputs))
    return layer, np.random.default_rng(0).standard_normal(shape[:3]).astype(dtype)


@pytest.mark.parametrize("cell, dtype, shape", ALL_SMALL, ids=["%s-%s-%s" % (c, d, "x".join(map(str, s)))
                                                              for c, d, s in ALL_SMALL])
def test_bits_do_not_depend_on_the_threads_in_small_gemm(tuned, num_threads, cell, dtype, shape):
    """A call whose products all run in small_gemm.h gives the same bits on one thread and on
    two, its slices or row parts equal or sized by skewed speeds."""
    layer, x = routed_call(cell, dtype, shape)
    num_threads(1)
    expected = layer(x)
    num_threads(2)
    for speeds in [None, (1.0, 1.6), (1.6, 1.0)]:
        _kernels.set_thread_speeds(speeds)
        before = _kernels.calls_on_several_threads()
        np.testing.assert_array_equal(layer(x), expected, err_msg=f"speeds {speeds}")
        assert _kernels.calls_on_several_threads() == before + 1


@pytest.mark.parametrize("cell, dtype, shape", IN_BLAS, ids=["%s-%s-%s" % (c, d, "x".join(map(str, s)))
                                                            for c, d, s in IN_BLAS])
def test_a_call_with_products_in_blas_gives_the_same_bits_at_every_call(tuned, num_threads, cell, dtype, shape):
    """A call with a product in BLAS is split equally, whatever the threads' speeds: on two
    threads it gives the same bits at every call."""
    layer, x = routed_call(cell, dtype, shape)
    num_threads(2)
    _kernels.set_thread_speeds()
    expected = layer(x)
    for speeds in [(10.0, 1.0), (1.0, 10.0), (1.0, 1.6)]:
        _kernels.set_thread_speeds(speeds)
        before = _kernels.calls_on_several_threads()
        np.testing.assert_array_equal(layer(x), expected, err_msg=f"speeds {speeds}")
        assert _kernels.calls_on_several_threads() == before + 1


@pytest.mark.parametrize("units, itemsize, speeds, starts", [(40, 4, (10, 1), [0, 16, 40]), (20, 8, (10, 1), [0, 8, 20]),
                                                              (40, 4, (1, 10), [0, 16, 40]), (72, 4, (1, 1), [0, 32, 72])])
def test_slices_start_on_cache_lines_whatever_the_speeds(units, itemsize, speeds, starts):
    """However skewed the speeds, every slice starts on a cache line (two threads never write
    one), and none is empty."""
    _kernels.set_thread_speeds(speeds)
    try:
        assert _kernels.slice_starts(units, len(speeds), itemsize) == starts
    finally:
        _kernels.set_thread_speeds()


@pytest.mark.parametrize("cell", ["simple_rnn", "lstm", "gru"])
@pytest.mark.parametrize("timesteps", [1, 2, 3, 8])
def test_team_runs_any_number_of_steps(tuned, cell, timesteps):
    """The two state buffers take turns; the last state reaches the caller for odd and even step
    counts; one step runs on the calling thread (a stream's step)."""
    tuned(threads=2, min_step_work=0)
    layer = make_layer(cell, "float64", return_sequences=True, return_state=True)
    x, mask, states = make_inputs(layer, 3, timesteps)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
    before = _kernels.calls_on_several_threads()
    assert_close(layer(x, mask=mask, initial_state=states), expected, "float64")
    assert _kernels.calls_on_several_threads() - before == (timesteps > 1)


CHUNKS = list(itertools.product(["simple_rnn", "lstm", "gru", "gru_reset_before", "lstm_projected"],
                                [(1, 1), (30, 1), (1, 6), (10**9, 1)]))


@pytest.mark.parametrize("cell, chunk", CHUNKS, ids=["%s-e%d-r%d" % (c, *k) for c, k in CHUNKS])
def test_chunked_input_projection_matches_reference(tuned, cell, chunk):
    """The input projection computed one step, a few steps (chunks that do not divide the 7
    steps) or every step at once."""
    elements, rows = chunk
    tuned(threads=1, projected_elements=elements, projected_rows=rows)
    layer = make_layer(cell, "float32", return_sequences=True, return_state=True)
    x, mask, states = make_inputs(layer, 3, timesteps=7)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
    assert_close(layer(x, mask=mask, initial_state=states), expected, "float32")


@pytest.mark.parametrize("cell, gates", [("simple_rnn", 1), ("lstm", 4), ("gru", 3)])
def test_chunks_of_a_small_kernel_match_reference(tuned, cell, gates):
    """A kernel no larger than `projected_elements` values is projected in chunks of at most that
    many values, whatever `projected_rows` asks: here 3 steps of 7 (a chunk that does not divide
    them). The chunk size is not observable; this holds the outputs of that path to the
    reference's."""
    batch, columns = 3, gates * UNITS
    tuned(threads=1, projected_elements=3 * batch * columns, projected_rows=10**6)
    assert INPUT_DIM * columns <= 3 * batch * columns
    layer = make_layer(cell, "float32", return_sequences=True, return_state=True)
    x, mask, states = make_inputs(layer, batch, timesteps=7)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
    assert_close(layer(x, mask=mask, initial_state=states), expected, "float32")


def test_team_threshold_and_slices(tuned):
    """A call shares its steps only when each thread gets the measured minimum of work, and only
    with slices of at least a cache line of units (16 float32 units)."""
    def runs_on_team(units, batch, dtype="float32"):
        layer = fastrnn.LSTM(units, seed=0, dtype=dtype)
        before = _kernels.calls_on_several_threads()
        layer(np.ones((batch, 3, 2), dtype))
        return _kernels.calls_on_several_threads() > before

    tuned(threads=2)
    minimum = tuned()["min_step_work"]
    assert minimum >= 1024
    minimum *= 2 if _kernels.product_vector_bits() == 512 else 1    # AVX-512 steps take half the time
    # An LSTM step's work: batch * 4 * units * (units + 32), 32 for the activations; each of the
    # two threads needs `minimum` of it.
    smallest = -(-2 * minimum // (4 * 32 * (32 + 32)))
    assert smallest > 1
    assert runs_on_team(32, batch=smallest)
    assert not runs_on_team(32, batch=smallest - 1)
    tuned(min_step_work=0)
    assert runs_on_team(32, batch=1)                 # two slices of 16 float32 units
    assert not runs_on_team(16, batch=1)             # one slice
    assert not runs_on_team(8, batch=1, dtype="float64")
    tuned(threads=1)
    assert not runs_on_team(64, batch=64)


@pytest.mark.parametrize("row_parts", [False, True], ids=["slices", "row_parts"])
def test_concurrent_callers_share_the_team_without_waiting(tuned, monkeypatch, row_parts):
    """Calls from several threads at once, sharing their steps or split into row parts: one
    takes the team, the others run alone; each gets its own right answer and nothing hangs."""
    tuned(threads=2, min_step_work=0)
    if row_parts:
        monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        _concurrent_callers()
    finally:
        fastrnn.set_num_threads(previous)


def _concurrent_callers():
    layers = [make_layer(cell, "float32", seed=seed, return_sequences=True)
              for seed, cell in enumerate(["simple_rnn", "lstm", "gru"] * 2)]
    inputs = [make_inputs(layer, 3, 40, seed=seed)[0] for seed, layer in enumerate(layers)]
    expected = [on_reference(lambda: layer(x)) for layer, x in zip(layers, inputs)]
    before = _kernels.calls_on_several_threads()
    results, errors = [None] * len(layers), []

    def work(i):
        try:
            for _ in range(20):
                results[i] = layers[i](inputs[i])
                assert_close(results[i], expected[i], "float32")
        except BaseException as exc:   # reported below: an assertion in a thread is lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(layers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a concurrent call hung"
    assert not errors, errors
    assert _kernels.calls_on_several_threads() > before


def test_row_split_runs_its_parts_on_the_team(tuned, monkeypatch):
    """fastrnn's row split hands its parts to the kernels' team in one call (`run_parts`); the
    calls inside run alone (two parts each starting a team would ask for more threads than there
    are), and the team is free again afterwards."""
    tuned(threads=2, min_step_work=0)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_PART", 1)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        layer = make_layer("lstm", "float32", return_sequences=True, go_backwards=True)
        x, mask, _ = make_inputs(layer, 12, 5)
        assert len(parallel.row_parts(12, 1)) == 2
        expected = on_reference(lambda: layer(x, mask=mask))
        before = _kernels.calls_on_several_threads()
        assert_close(layer(x, mask=mask), expected, "float32")
        assert _kernels.calls_on_several_threads() == before + 1
        assert _kernels.hold_threads()           # and it was given back
        _kernels.release_threads()
    finally:
        fastrnn.set_num_threads(previous)


def test_row_parts_on_the_team_from_a_lower_threshold(tuned, parts_per_call):
    """With the compiled kernels, a batch splits into row parts from MIN_WORK_PER_TEAM_PART of
    work per part (their hand-over is cheap), not MIN_WORK_PER_PART as on the Python pool; a
    batch of one row shares its steps among the team's threads."""
    tuned(threads=2)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        layer = make_layer("lstm", "float32")
        per_part = lambda batch, timesteps: batch * timesteps * layer._step_work // 2
        timesteps = -(-parallel.MIN_WORK_PER_TEAM_PART // per_part(8, 1))     # just enough
        assert per_part(8, timesteps) < parallel.MIN_WORK_PER_PART
        for steps, parts in ((timesteps, [2]), (timesteps - 1, [])):
            parts_per_call.clear()
            x, _, _ = make_inputs(layer, 8, steps)
            expected = on_reference(lambda: layer(x))
            assert_close(layer(x), expected, "float32")
            assert parts_per_call == parts, steps
        # One row cannot be split: its steps are shared among the team's threads instead (however
        # little work they are).
        tuned(min_step_work=0)
        parts_per_call.clear()
        x, _, _ = make_inputs(layer, 1, 8 * timesteps)
        expected = on_reference(lambda: layer(x))
        before = _kernels.calls_on_several_threads()
        assert_close(layer(x), expected, "float32")
        assert parts_per_call == [] and _kernels.calls_on_several_threads() == before + 1
    finally:
        fastrnn.set_num_threads(previous)


LARGE_WEIGHTS = list(itertools.product(CELLS, DTYPES))


@pytest.mark.parametrize("cell, dtype", LARGE_WEIGHTS, ids=["%s-%s" % c for c in LARGE_WEIGHTS])
def test_large_weights_share_steps_instead_of_rows(tuned, num_threads, parts_per_call, monkeypatch, cell, dtype):
    """A layer with more than SLICES_FROM_WEIGHT_BYTES of weights shares each step among the
    team's threads rather than splitting its batch into row parts (unless its kernel cannot share
    a step: then the rows are split as before); at the bound it is split by rows."""
    tuned(threads=2, min_step_work=0)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    num_threads(2)
    layer = make_layer(cell, dtype, return_sequences=True)
    x, mask, _ = make_inputs(layer, 8, 6)
    expected = on_reference(lambda: layer(x, mask=mask))
    weight_bytes = layer._step_work * np.dtype(dtype).itemsize
    for bound, split in ((weight_bytes, True), (weight_bytes - 1, cell in ONE_THREAD)):
        monkeypatch.setattr(parallel, "SLICES_FROM_WEIGHT_BYTES", bound)
        parts_per_call.clear()
        before = _kernels.calls_on_several_threads()
        assert_close(layer(x, mask=mask), expected, dtype)
        assert parts_per_call == ([2] if split else []), bound
        assert _kernels.calls_on_several_threads() == before + 1    # on two threads either way


@pytest.mark.parametrize("units, timesteps", [(72, 1), (16, 6)], ids=["one-step", "16-units"])
def test_large_weights_split_by_rows_where_steps_cannot_be_shared(tuned, num_threads, parts_per_call, monkeypatch, units,
                                                                  timesteps):
    """Where the kernel would run a large-weight layer's steps on one thread (a single step, or a
    cache line of units or less), its batch is still split into row parts."""
    tuned(threads=2, min_step_work=0)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    monkeypatch.setattr(parallel, "SLICES_FROM_WEIGHT_BYTES", 0)
    num_threads(2)
    layer = make_layer("lstm", "float32", units=units, return_sequences=True)
    x, mask, _ = make_inputs(layer, 8, timesteps)
    expected = on_reference(lambda: layer(x, mask=mask))
    assert_close(layer(x, mask=mask), expected, "float32")
    assert parts_per_call == [2]


BIDIRECTIONAL = list(itertools.product(["lstm", "gru"], [2, 4], [1, 13]))


@pytest.mark.parametrize("cell, threads, batch", BIDIRECTIONAL, ids=["%s-t%d-b%d" % b for b in BIDIRECTIONAL])
def test_bidirectional_directions_run_on_the_team(tuned, monkeypatch, cell, threads, batch, parts_per_call):
    """A Bidirectional layer runs its two directions as parts of one team call, each direction's
    rows split again with threads to spare (4 threads, 13 rows: four parts), and gets the
    reference's outputs and states, masked, stateful across calls."""
    tuned(threads=threads)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(threads)
    try:
        layer, twin = (fastrnn.Bidirectional(make_layer(cell, "float32", return_sequences=True, return_state=True,
                                                        stateful=True))
                       for _ in range(2))
        layer.build((None, None, INPUT_DIM))
        rng = np.random.default_rng(3)
        layer.set_weights([rng.uniform(-0.3, 0.3, w.shape) for w in layer.get_weights()])
        twin.build((None, None, INPUT_DIM))
        twin.set_weights(layer.get_weights())
        x, mask, _ = make_inputs(layer.forward_layer, batch, 6)
        for _ in range(2):       # the second call starts from the states the first one left
            expected = on_reference(lambda: twin(x, mask=mask))
            assert_close(layer(x, mask=mask), expected, "float32")
        assert parts_per_call == [2 * min(threads // 2, batch)] * 2
    finally:
        fastrnn.set_num_threads(previous)


def test_row_parts_on_the_team_read_only_inputs_and_many_threads(tuned, monkeypatch):
    """A split batch reads read-only inputs as an unsplit one does, and more threads than the team
    can have (64) split into at most 64 parts, a Bidirectional layer's two directions included."""
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    try:
        layer = make_layer("gru", "float32")
        bidirectional = fastrnn.Bidirectional(make_layer("lstm", "float32"))
        for threads, batch in ((2, 8), (100, 130)):
            fastrnn.set_num_threads(threads)
            x, _, _ = make_inputs(layer, batch, 3)
            x.flags.writeable = False
            assert len(parallel.row_parts(batch, 1, team=True)) == min(threads, 64)
            rows, _ = parallel.batch_parts(batch, 1, _kernels, calls=2)
            assert 2 * len(rows) == min(threads, 64)
            for split in (layer, bidirectional):
                expected = on_reference(lambda: split(x))
                assert_close(split(x), expected, "float32")
    finally:
        fastrnn.set_num_threads(previous)


SPARE = list(itertools.product(CELLS, DTYPES, [False, True]))


@pytest.mark.parametrize("cell, dtype, go_backwards", SPARE, ids=["%s-%s-back%d" % o for o in SPARE])
def test_spare_parts_with_masks_and_states_match_reference(tuned, monkeypatch, parts_per_call, cell, dtype,
                                                           go_backwards):
    """With the thresholds lowered, 13 rows go to 2 threads in 6 spare parts (2-3 rows each),
    each reading its rows of the mask and the initial states and writing its rows of every
    output, time reversed too; a Bidirectional layer's two directions in 4 parts each."""
    tuned(threads=2)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    monkeypatch.setattr(parallel, "MIN_ROWS_PER_SPARE_PART", 2)
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(2)
    try:
        layer = make_layer(cell, dtype, return_sequences=True, return_state=True, go_backwards=go_backwards)
        x, mask, states = make_inputs(layer, 13, 5)
        expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
        assert_close(layer(x, mask=mask, initial_state=states), expected, dtype)
        bidirectional = fastrnn.Bidirectional(make_layer(cell, dtype, return_sequences=True))
        expected = on_reference(lambda: bidirectional(x, mask=mask))
        assert_close(bidirectional(x, mask=mask), expected, dtype)
        assert parts_per_call == [6, 2 * 4]    # 4 parts per thread in all: 4 for each direction
    finally:
        fastrnn.set_num_threads(previous)


# 21 units: every gate count's columns end in edges, float32 and float64 (24 and 72: float32 only).
NARROW = list(itertools.product(CELLS, DTYPES, [1, 3, 4, 6, 9, 13], [21, 24, 72]))
WIDTHS = [128, 256, 512]


def widest_vectors():
    """The widest of small_gemm.h's variants this CPU runs, in bits."""
    previous = _kernels.configure(vector_bits=512)
    try:
        return _kernels.product_vector_bits()
    finally:
        _kernels.configure(**previous)


def force_vectors(tuned, bits):
    """Run small_gemm.h's `bits`-wide variant; skip where this CPU lacks it."""
    if bits > widest_vectors():
        pytest.skip(f"this CPU has no {bits}-bit variant of small_gemm.h (widest: {widest_vectors()})")
    tuned(vector_bits=bits)
    assert _kernels.product_vector_bits() == bits


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("cell, dtype, batch, units", NARROW,
                         ids=["%s-%s-b%d-u%d" % n for n in NARROW])
def test_products_in_each_vector_width_match_reference(tuned, bits, cell, dtype, batch, units):
    """Each of small_gemm.h's variants that the CPU runs, forced here (the 128-bit one is what
    machines without AVX2 run, and ARM): blocks of 6 and 4 rows, lone rows, whole blocks, a panel
    left over (AVX-512's blocks are two panels wide) and edges, a recurrent kernel read in place
    (1 and 3 rows) and packed (4 rows or more), with a mask and initial states."""
    force_vectors(tuned, bits)
    layer = make_layer(cell, dtype, seed=batch * units, units=units, return_sequences=True, return_state=True)
    x, mask, h0 = make_inputs(layer, batch, 5)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=h0))
    assert_close(layer(x, mask=mask, initial_state=h0), expected, dtype)


COLUMN_PARTS = list(itertools.product(CELLS, DTYPES, [1, 7, 13], [21, 72], [1, 20000]))


@pytest.mark.parametrize("bits", WIDTHS)
@pytest.mark.parametrize("cell, dtype, batch, units, part_bytes", COLUMN_PARTS,
                         ids=["%s-%s-b%d-u%d-%d" % n for n in COLUMN_PARTS])
def test_products_read_in_parts_of_columns_match_reference(tuned, bits, cell, dtype, batch, units, part_bytes):
    """small_gemm.h reads a large B a part of its columns at a time (fr_gemm_part_bytes, 512 KB),
    in each vector width: parts of one block of columns (the fewest) and of several, the last
    one shorter and ending in edges, packed or read in place, match the reference."""
    force_vectors(tuned, bits)
    tuned(part_bytes=part_bytes)
    layer = make_layer(cell, dtype, seed=batch, units=units, return_sequences=True, return_state=True)
    x, mask, h0 = make_inputs(layer, batch, 5)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=h0))
    assert_close(layer(x, mask=mask, initial_state=h0), expected, dtype)


@pytest.mark.parametrize("cell, dtype, batch, units", NARROW[::5], ids=["%s-%s-b%d-u%d" % n for n in NARROW[::5]])
def test_avx2_and_avx512_products_give_the_same_bits(tuned, cell, dtype, batch, units):
    """Both variants add each output's terms in the same order with fused multiply-adds, so a
    model gives the same bits on a machine with AVX-512 as on one with AVX2 only."""
    force_vectors(tuned, 512)
    layer = make_layer(cell, dtype, seed=units, units=units, return_sequences=True, return_state=True)
    x, mask, h0 = make_inputs(layer, batch, 5)
    wide = layer(x, mask=mask, initial_state=h0)
    tuned(vector_bits=256)
    for a, b in zip(wide, layer(x, mask=mask, initial_state=h0)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype, more", [("float32", 1), ("float64", 0)])
def test_avx512_products_take_larger_products_than_avx2(tuned, num_threads, dtype, more):
    """A float32 recurrent product of 2**27 multiply-adds (batch 128, LSTM(512)) runs in
    small_gemm.h with its kernel packed where the products are AVX-512 (`runs_packed`), in BLAS
    where they are AVX2 (one packing fewer: the input kernel's, packed in both); float64 runs in
    BLAS in both. All match the reference."""
    force_vectors(tuned, 512)
    tuned(threads=1)
    num_threads(1)
    layer = make_layer("lstm", dtype, units=512, return_sequences=True)
    x, _, _ = make_inputs(layer, 128, 2)
    expected = on_reference(lambda: layer(x))
    packings = {}
    for bits in (512, 256):
        tuned(vector_bits=bits)
        before = _kernels.kernels_packed()
        assert_close(layer(x), expected, dtype)
        packings[bits] = _kernels.kernels_packed() - before
    assert packings[512] == packings[256] + more, packings


def test_configure_refuses_a_bad_setting_and_changes_nothing(tuned):
    before = _kernels.configure()
    with pytest.raises(ValueError, match="vector_bits must be 128, 256 or 512, got 384"):
        tuned(vector_bits=384)
    with pytest.raises(TypeError, match="part_bytes must be an integer"):
        tuned(vector_bits=256, part_bytes=2.5e5)
    with pytest.raises(ValueError, match="part_bytes must be from 1"):
        tuned(vector_bits=256, part_bytes=2 ** 70)
    assert _kernels.configure() == before


SHARED_ROWS = [(32, (0.57, 0.43), [18, 14]), (33, (0.57, 0.43), [18, 15]), (16, (0.6, 0.4), [10, 6]),
               (8, (0.6, 0.4), [4, 4]), (7, (0.6, 0.4), [4, 3]), (12, (0.1, 0.1, 0.8), [4, 4, 4]),
               (32, None, [16, 16])]


@pytest.mark.parametrize("batch, shares, sizes", SHARED_ROWS)
def test_row_parts_follow_the_threads_shares(batch, shares, sizes):
    """Row parts sized by the threads' shares have an even number of rows, 4 or more (no lone
    row for small_gemm.h), where the batch allows it; else, and without shares, they are equal."""
    parts = parallel.row_parts(batch, 1 << 40, team=True, threads=len(sizes), shares=shares)
    assert [part.stop - part.start for part in parts] == sizes
    assert parts[0].start == 0 and parts[-1].stop == batch


def test_part_shares_follow_the_measured_speeds(tuned, num_threads, parts_per_call, monkeypatch):
    """The team times each row part (`part_shares`: None until every thread has run one, then
    shares of speeds counted within 2/3 and 3/2 of their mean), and a batch in one part per
    thread is split by those shares, its outputs those of the reference."""
    tuned(threads=2)
    num_threads(2)
    _kernels.set_thread_speeds()
    assert _kernels.part_shares(2) is None
    layer = make_layer("lstm", "float32", units=64, return_sequences=True)
    x, mask, _ = make_inputs(layer, 32, 400)     # parts of ~1 ms: long enough to be timed
    expected = on_reference(lambda: layer(x, mask=mask))
    for _ in range(200):    # until the worker has run a part too (the caller takes both while it is late)
        assert_close(layer(x, mask=mask), expected, "float32")
        if _kernels.part_shares(2) is not None:
            break
    shares = _kernels.part_shares(2)
    assert shares is not None and sum(shares) == pytest.approx(1)
    assert max(shares) <= 2.25 * min(shares) + 1e-9
    # A split by given shares: 22 and 10 rows, each part's rows still the reference's.
    monkeypatch.setattr(_kernels, "part_shares", lambda n: [0.7, 0.3])
    assert parallel.batch_parts(32, 1 << 40, _kernels, by_speed=lambda: True) == ([slice(0, 22), slice(22, 32)],
                                                                                 True)
    assert parallel.batch_parts(32, 1 << 40, _kernels, by_speed=lambda: False) == ([slice(0, 16), slice(16, 32)],
                                                                                  True)
    assert _kernels.splits_by_speed(*layer._kernel_call(_kernels, layer._kernel_weights, x, np.empty((0, 0), np.uint8),
                                                        [np.zeros((32, 64), np.float32)] * 2,
                                                        np.empty((0, 0, 0), np.float32)))
    parts_per_call.clear()
    assert_close(layer(x, mask=mask), expected, "float32")
    assert parts_per_call == [2]


def test_a_large_batch_goes_to_the_team_in_spare_parts(tuned, monkeypatch, parts_per_call):
    """A batch with MIN_ROWS_PER_SPARE_PART rows to spare goes to the team in up to
    PARTS_PER_THREAD parts per thread (claimed as threads come free), none smaller than that,
    the two directions of a Bidirectional layer sharing them and the team's 64 the limit; the
    outputs match the reference."""
    tuned(threads=2)
    monkeypatch.setattr(parallel, "MIN_WORK_PER_TEAM_PART", 1)
    previous = fastrnn.num_threads()
    rows = parallel.MIN_ROWS_PER_SPARE_PART
    sizes = lambda parts: [part.stop - part.start if part.stop else None for part in parts]
    try:
        fastrnn.set_num_threads(2)
        for batch, calls_per_batch, expected in ((2 * rows - 1, 1, 2), (3 * rows, 1, 3), (100 * rows, 1, 8),
                                                 (100 * rows, 2, 4), (rows, 2, 1)):
            parts, team = parallel.batch_parts(batch, 1, _kernels, calls=calls_per_batch)
            assert team and len(parts or [None]) == expected, (batch, calls_per_batch)
            if expected > 2:
                assert min(sizes(parts)) >= rows and sum(sizes(parts)) == batch
        fastrnn.set_num_threads(100)
        assert len(parallel.batch_parts(100 * rows, 1, _kernels)[0]) == 64
        assert len(parallel.batch_parts(100 * rows, 1, _kernels, calls=2)[0]) == 32
        fastrnn.set_num_threads(2)
        gru = make_layer("gru", "float32", return_sequences=True)
        x, _, _ = make_inputs(gru, 3 * rows, 2)
        for layer, parts in ((gru, 3), (fastrnn.Bidirectional(make_layer("lstm", "float32")), 2 * 3)):
            parts_per_call.clear()
            expected = on_reference(lambda: layer(x))
            assert_close(layer(x), expected, "float32")
            assert parts_per_call == [parts]
    finally:
        fastrnn.set_num_threads(previous)


def _parts(layer, x, mask, states, bounds, sequence, backwards=False):
    """run_parts's parts for `layer` on rows split at `bounds` of `x` (read in reverse time
    order when `backwards`)."""
    kernel_mask = np.ascontiguousarray(mask).view(np.uint8)
    calls = []
    for start, stop in zip(bounds, bounds[1:]):
        rows = slice(start, stop)
        calls.append(layer._kernel_call(_kernels, layer._kernel_weights, x[rows, ::-1] if backwards else x[rows],
                                        kernel_mask[rows], [s[rows] for s in states], sequence[rows]))
    return calls


PARTS = list(itertools.product(CELLS, DTYPES, [1, 2, 3], [[0, 9], [0, 4, 9], [0, 1, 5, 9], [0, 2, 3, 6, 7, 9]]))


@pytest.mark.parametrize("cell, dtype, threads, bounds", PARTS,
                         ids=["%s-%s-t%d-%s" % (c, d, t, "_".join(map(str, b))) for c, d, t, b in PARTS])
def test_run_parts_matches_whole_batch_calls(tuned, cell, dtype, threads, bounds):
    """Parts of unequal rows (more parts than threads, or fewer) write the same states and
    sequence rows as one call on the whole batch, with a mask and initial states."""
    tuned(threads=threads)
    layer = make_layer(cell, dtype)
    x, mask, states = make_inputs(layer, 9, 6)
    whole = [s.copy() for s in states]
    whole_sequence = np.zeros((9, 6, layer._sizes[0]), dtype)
    function, arguments = layer._kernel_call(_kernels, layer._kernel_weights, x,
                                             np.ascontiguousarray(mask).view(np.uint8), whole, whole_sequence)
    function(*arguments)
    sequence = np.zeros_like(whole_sequence)
    calls = _parts(layer, x, mask, states, bounds, sequence)
    before = _kernels.calls_on_several_threads()
    _kernels.run_parts(calls)
    tolerance = {"float32": 1e-6, "float64": 1e-12}[dtype]
    for got, want in zip(states + [sequence], whole + [whole_sequence]):
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)
    several = threads > 1 and len(bounds) > 2
    assert _kernels.calls_on_several_threads() - before == several


@pytest.mark.parametrize("dtype", DTYPES)
def test_parts_of_one_layer_share_its_packed_kernels(tuned, dtype):
    """run_parts packs each layer's kernel and recurrent kernel once for all the parts that read
    them (8 parts that each packed their own copies kept 8 at once), two layers' parts each their
    own; the results are those of one call on the whole batch."""
    tuned(threads=2, projected_elements=2 * 4 * 4 * UNITS)   # chunks of 2 of the 6 steps: both pack
    layers = [make_layer("lstm", dtype, seed=seed) for seed in (0, 1)]
    x, mask, states = make_inputs(layers[0], 32, 6)
    kernel_mask = np.ascontiguousarray(mask).view(np.uint8)
    tolerance = {"float32": 1e-6, "float64": 1e-12}[dtype]

    def packings_of_parts(layers):
        outputs, calls = [], []
        for layer in layers:
            outputs.append([s.copy() for s in states] + [np.zeros((32, 6, UNITS), dtype)])
            calls += _parts(layer, x, mask, outputs[-1][:-1], list(range(0, 33, 4)), outputs[-1][-1])
        before = _kernels.kernels_packed()
        _kernels.run_parts(calls)
        packings = _kernels.kernels_packed() - before
        for layer, got in zip(layers, outputs):
            want = [s.copy() for s in states] + [np.zeros((32, 6, UNITS), dtype)]
            function, arguments = layer._kernel_call(_kernels, layer._kernel_weights, x, kernel_mask, want[:-1],
                                                     want[-1])
            function(*arguments)
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=0, atol=tolerance)
        return packings

    assert packings_of_parts(layers[:1]) == 2
    assert packings_of_parts(layers) == 4


MIXED = list(itertools.product(DTYPES, [1, 2, 3]))


@pytest.mark.parametrize("dtype, threads", MIXED, ids=["%s-t%d" % m for m in MIXED])
def test_run_parts_runs_other_kernels_and_time_backwards(tuned, dtype, threads):
    """Parts of different kernels, some running time backwards (a Bidirectional layer's two
    directions, rows split), each write what a whole call on their own inputs writes: a
    backward part reads its rows of x in reverse time order (a view), the whole call a copy."""
    tuned(threads=threads)
    forward, backward = make_layer("lstm", dtype), make_layer("gru", dtype, seed=1)
    x, mask, _ = make_inputs(forward, 9, 6)
    expected, got, calls = [], [], []
    for layer, backwards, bounds in ((forward, False, [0, 9]), (backward, True, [0, 5, 9])):
        _, _, states = make_inputs(layer, 9, 6, seed=2)
        whole, sequence = [s.copy() for s in states], np.zeros((9, 6, UNITS), dtype)
        x_whole = np.ascontiguousarray(x[:, ::-1] if backwards else x)
        function, arguments = layer._kernel_call(_kernels, layer._kernel_weights, x_whole,
                                                 np.ascontiguousarray(mask).view(np.uint8), whole, sequence)
        function(*arguments)
        expected += whole + [sequence]
        sequence = np.zeros_like(sequence)
        calls += _parts(layer, x, mask, states, bounds, sequence, backwards)
        got += states + [sequence]
    _kernels.run_parts(calls)
    tolerance = {"float32": 1e-6, "float64": 1e-12}[dtype]
    for actual, want in zip(got, expected):
        np.testing.assert_allclose(actual, want, rtol=0, atol=tolerance)


def test_run_parts_with_the_team_busy_runs_them_in_turn(tuned):
    """A caller that finds the team held runs every part itself and does not wait."""
    tuned(threads=2)
    layer = make_layer("gru", "float32")
    x, mask, states = make_inputs(layer, 8, 4)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
    sequence = np.zeros((0, 0, 0), np.float32)
    calls = _parts(layer, x, mask, states, [0, 4, 8], sequence)
    assert _kernels.hold_threads()
    try:
        before = _kernels.calls_on_several_threads()
        _kernels.run_parts(calls)
        assert _kernels.calls_on_several_threads() == before
    finally:
        _kernels.release_threads()
    assert_close(states[0], expected, "float32")


def test_run_parts_rejects_what_does_not_fit(tuned):
    tuned(threads=2)
    layer = make_layer("simple_rnn", "float32")
    x, mask, states = make_inputs(layer, 8, 4)
    sequence = np.zeros((0, 0, 0), np.float32)
    calls = _parts(layer, x, mask, states, [0, 4, 8], sequence)
    with pytest.raises(ValueError, match="kernel argument x: expected a 3-d float32"):
        _kernels.run_parts([calls[0], (calls[1][0], (x[0],) + calls[1][1][1:])])
    with pytest.raises(ValueError, match=r"kernel argument h: expected shape \(5, 72\)"):   # x of 5 rows
        _kernels.run_parts([calls[0], (calls[1][0], (x[:5],) + calls[1][1][1:])])
    read_only = states[0][4:].copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="kernel argument h.*read-only"):
        _kernels.run_parts([calls[0], (calls[1][0], calls[1][1][:6] + (read_only,) + calls[1][1][7:])])
    with pytest.raises(TypeError, match="kernel argument x: expected a NumPy array, got NoneType"):
        _kernels.run_parts([(calls[0][0], (None,) + calls[0][1][1:])])    # (a Step's stand-in)
    with pytest.raises(ValueError, match="run_parts takes 1 to"):
        _kernels.run_parts([])
    with pytest.raises(TypeError, match="kernels"):
        _kernels.run_parts([(print, calls[0][1])])
    # A list could be changed by another thread while the kernels run, a tuple subclass unpack to
    # arrays that nothing holds: parts are exact tuples.
    subclass = type("Part", (tuple,), {})
    for bad in (list(calls[0]), calls[0][:1], calls[0] + (None,), (calls[0][0], list(calls[0][1])),
                subclass(calls[0]), (calls[0][0], subclass(calls[0][1]))):
        with pytest.raises(TypeError, match="part 0 must be a tuple"):
            _kernels.run_parts([bad])
    with pytest.raises(TypeError, match="another dtype"):
        other = make_layer("simple_rnn", "float64")
        other_calls = _parts(other, x.astype(np.float64), mask, [s.astype(np.float64) for s in states],
                             [4, 8], np.zeros((0, 0, 0)))
        _kernels.run_parts(calls[:1] + other_calls)
    assert _kernels.hold_threads()           # the team is free after every error
    _kernels.release_threads()


def _team_call_in_child(queue):
    _kernels.configure(threads=2, min_step_work=0)
    before = _kernels.calls_on_several_threads()
    layer = fastrnn.GRU(32, seed=0)
    output = layer(np.ones((2, 6, 3), np.float32)).sum()
    queue.put((float(output), _kernels.calls_on_several_threads() - before))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_team(tuned):
    """The parent's team threads do not survive a fork: the child starts its own and does not
    wait for threads that are not there."""
    tuned(threads=2, min_step_work=0)
    layer = fastrnn.GRU(32, seed=0)
    expected = float(layer(np.ones((2, 6, 3), np.float32)).sum())   # the parent's team now exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_team_call_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung on a call that uses the team")
    assert child.exitcode == 0
    output, team_calls = queue.get(timeout=5)
    assert output == pytest.approx(expected, abs=1e-5)
    assert team_calls == 1


def test_set_num_threads_reaches_the_kernels(tuned):
    """fastrnn.set_num_threads is the team's size too."""
    previous = fastrnn.num_threads()
    try:
        fastrnn.set_num_threads(3)
        assert _kernels.configure()["threads"] == 3
        fastrnn.set_num_threads(1)
        assert _kernels.configure()["threads"] == 1
    finally:
        fastrnn.set_num_threads(previous)


def test_scratch_is_kept_for_the_next_call_and_its_old_contents_never_read(tuned):
    """A call's scratch block is kept (csrc/scratch.h) and taken again by the next call of the
    same size, not a second one; a smaller call (119 KB against 362 KB, within the 4x a kept
    block serves) then reuses a kept block, full of an earlier call's values, and still gets the
    reference's answer. (With FASTRNN_KEEP_SCRATCH=0, as under bench/asan.sh, nothing is kept.)"""
    tuned(threads=1)
    keeps = os.environ.get("FASTRNN_KEEP_SCRATCH") != "0"
    large, small = make_layer("lstm", "float32"), make_layer("gru", "float32", seed=1)
    x_large, _, _ = make_inputs(large, 16, 40)
    x_small, mask, states = make_inputs(small, 3, 20)
    large(x_large)
    kept = _kernels.scratch_kept()
    assert (kept > 0) == keeps
    large(x_large)
    assert _kernels.scratch_kept() == kept
    expected = on_reference(lambda: small(x_small, mask=mask, initial_state=states))
    for _ in range(2):
        assert_close(small(x_small, mask=mask, initial_state=states), expected, "float32")
        assert _kernels.scratch_kept() == kept      # a kept block taken and given back, no new one
        large(x_large)
    assert (0 < _kernels.scratch_kept() <= 64 << 20) == keeps