"""The compiled kernels' products in AMX tiles (csrc/amx_gemm.h).

Where the CPU has AMX-BF16, float32 calls of at least 16 rows, 128 columns (gates times units)
and 1024 rows times steps run their packed products in bfloat16 tiles: each value split into
three parts, six tile products summed in float32. These tests hold those calls to the NumPy
reference at float32's tolerance, with edges of every kind (rows, columns and depth that are not
whole tiles), check that a value does not depend on how the call is split among threads, that
infinities, NaNs and values too large to split take small_gemm.h's path, and that the switches
(`configure(amx=...)`, FASTRNN_AMX, AVX2 forced) turn the tiles on and off. They skip where the CPU
has no AMX; the thresholds and row parts are checked everywhere.
"""
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn import _kernels, parallel, reference
from conftest import assert_close, on_reference


def has_amx():
    """Whether the kernels run products in AMX tiles once turned on (CPU, kernel and build)."""
    previous = _kernels.configure(amx=True, vector_bits=512)
    try:
        return _kernels.products_use_amx()
    finally:
        _kernels.configure(**previous)


needs_amx = pytest.mark.skipif(not has_amx(), reason="this CPU (or its kernel) gives no AMX tiles")

# Units such that every cell has at least 128 columns, none of them a whole block of 32.
CELLS = {
    "simple_rnn": (fastrnn.SimpleRNN, {}, 130),
    "lstm": (fastrnn.LSTM, {}, 40),
    "gru": (fastrnn.GRU, {"reset_after": True}, 50),
    "gru_reset_before": (fastrnn.GRU, {"reset_after": False}, 50),
    "lstm_projected": (fastrnn.LSTM, {"proj_size": 24}, 40),
}


@pytest.fixture(autouse=True)
def amx_allowed(tuned):
    """The tiles turned on (they are off by default: FASTRNN_AMX=1)."""
    tuned(amx=True)


def make_layer(cell, inputs, seed=0, dtype="float32", **kwargs):
    cls, options, units = CELLS[cell]
    layer = cls(units, **options, dtype=dtype, return_sequences=True, return_state=True, **kwargs)
    layer.build((None, None, inputs))
    rng = np.random.default_rng(seed)
    # Small enough that the recurrence forgets (trained networks do): larger, 64 steps of 130
    # units amplified float32's rounding itself to 4.5e-4 (the reference against float64).
    layer.set_weights([rng.uniform(-0.1, 0.1, w.shape) for w in layer.get_weights()])
    return layer


def make_inputs(layer, batch, timesteps, inputs, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, timesteps, inputs)).astype(layer.dtype)
    mask = rng.random((batch, timesteps)) < 0.8
    states = [rng.standard_normal((batch, size)).astype(layer.dtype) for size in layer._state_sizes()]
    return x, mask, states


def runs_in_amx(fn):
    """fn()'s result, and whether its call ran its products in AMX tiles."""
    before = _kernels.calls_in_amx()
    result = fn()
    return result, _kernels.calls_in_amx() > before


# Rows: one tile of 16, a tile and one row, two blocks of 32 and a part of 16 left; inputs: less
# than one depth of 32, and one more than one.
SHAPES = list(itertools.product(CELLS, [16, 17, 48, 80], [5, 33]))


@needs_amx
@pytest.mark.parametrize("cell, batch, inputs", SHAPES, ids=["%s-b%d-i%d" % s for s in SHAPES])
def test_products_in_amx_tiles_match_reference(tuned, num_threads, cell, batch, inputs):
    """Every cell, with a mask and initial states, on one thread (the whole batch in one product)
    and on two (row parts of 16 rows or more), runs in the tiles within float32's tolerance."""
    layer = make_layer(cell, inputs)
    x, mask, states = make_inputs(layer, batch, 1024 // 16, inputs)
    expected = on_reference(lambda: layer(x, mask=mask, initial_state=states))
    for threads in (1, 2):
        num_threads(threads)
        actual, in_amx = runs_in_amx(lambda: layer(x, mask=mask, initial_state=states))
        assert in_amx
        assert_close(actual, expected, "float32")


@needs_amx
def test_amx_products_are_closer_to_float64_than_the_float32_bound(tuned):
    """Six products of three parts lose less than float32's own rounding: an LSTM's outputs lie
    as close to float64's as small_gemm.h's do (within 2x), far inside the 1e-5 tolerance."""
    layer = make_layer("lstm", 64)
    x, _, states = make_inputs(layer, 32, 64, 64)
    wide = layer.__class__.from_config({**layer.get_config(), "dtype": "float64"})
    wide.build((None, None, 64))
    wide.set_weights([w.astype(np.float64) for w in layer.get_weights()])
    exact = on_reference(lambda: wide(x.astype(np.float64), initial_state=[s.astype(np.float64) for s in states]))
    errors = {}
    for amx in (True, False):
        tuned(amx=amx)
        actual, in_amx = runs_in_amx(lambda: layer(x, initial_state=states))
        assert in_amx == amx
        errors[amx] = max(float(np.abs(a - e).max()) for a, e in zip(actual, exact))
    assert errors[True] < 1e-6 and errors[True] <= 2 * errors[False], errors


BITS = list(itertools.product(CELLS, [(48, 22), (50, 64), (17, 61)]))


@needs_amx
@pytest.mark.parametrize("cell, shape", BITS, ids=["%s-%dx%d" % (c, *s) for c, s in BITS])
def test_amx_bits_do_not_depend_on_the_threads(tuned, num_threads, cell, shape):
    """A value does not depend on the rows beside it (padded edges run alike), nor on the part
    its row is in: every part packs for the tiles, however few its rows or steps (a part of 16
    rows of 22 steps did not pack its input kernel, and ran its projection in small_gemm.h).
    One thread, row parts of 2, 3 and 4 threads, equal or sized by skewed speeds, give the same
    bits."""
    batch, timesteps = shape
    layer = make_layer(cell, 33)
    x, mask, states = make_inputs(layer, batch, timesteps, 33)
    num_threads(1)
    expected, in_amx = runs_in_amx(lambda: layer(x, mask=mask, initial_state=states))
    assert in_amx
    for threads, speeds in [(2, None), (2, (1.0, 1.6)), (2, (1.6, 1.0)), (3, None), (3, (1.0, 2.0, 0.5)), (4, None)]:
        num_threads(threads)
        _kernels.set_thread_speeds(speeds)
        for a, e in zip(layer(x, mask=mask, initial_state=states), expected):
            np.testing.assert_array_equal(a, e, err_msg=f"{threads} threads, speeds {speeds}")


@needs_amx
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple_rnn"])
def test_amx_bits_do_not_depend_on_the_slices(tuned, cell):
    """Steps shared among the team's threads, each with a slice of every gate's units (columns
    of the products), give the bits of one thread."""
    layer = make_layer(cell, 33)
    x, _, _ = make_inputs(layer, 32, 64, 33)
    outputs = {}
    for threads in (1, 2):
        tuned(threads=threads, min_step_work=0)
        before = _kernels.calls_on_several_threads()
        outputs[threads], in_amx = runs_in_amx(lambda: direct_call(cell, layer, x))
        assert in_amx and _kernels.calls_on_several_threads() == before + (threads > 1)
    np.testing.assert_array_equal(outputs[1], outputs[2])


def direct_call(cell, layer, x):
    """The sequence of `layer` (weights: kernel, recurrent kernel, bias) on `x` from zero states,
    by its kernel called directly: on the team's threads where `configure` lets it."""
    from fastrnn import activations
    kernel, recurrent_kernel, bias = layer.get_weights()[:3]
    batch, timesteps, _ = x.shape
    units = recurrent_kernel.shape[0]
    tanh, sigmoid = activations.code("tanh"), activations.code("sigmoid")
    mask, sequence = np.zeros((0, 0), np.uint8), np.zeros((batch, timesteps, units), np.float32)
    h = np.zeros((batch, units), np.float32)
    if cell == "lstm":
        _kernels.lstm(x, kernel, bias, recurrent_kernel, np.zeros((0, 0), np.float32), mask, tanh, sigmoid, h,
                      np.zeros_like(h), sequence)
    elif cell == "gru":
        _kernels.gru(x, kernel, bias[0], recurrent_kernel, bias[1], mask, tanh, sigmoid, True, h, sequence)
    else:
        _kernels.simple_rnn(x, kernel, bias, recurrent_kernel, mask, tanh, h, sequence)
    return sequence


@needs_amx
@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan, 3e38, -2e38])
def test_rows_that_cannot_be_split_run_in_small_gemm(tuned, value):
    """A row of x (then of h) holding an infinity, a NaN, or a value of 2^127 or more (whose
    first part rounds to infinity) runs in small_gemm.h, the other rows in the tiles: every row
    as the reference gives it, infinities and NaNs where it has them."""
    layer = make_layer("simple_rnn", 33)
    x, mask, states = make_inputs(layer, 32, 64, 33)
    x[3, 5, 7] = value
    x[20, 0, 0] = value
    expected = on_reference(lambda: layer(x, initial_state=states))
    actual, in_amx = runs_in_amx(lambda: layer(x, initial_state=states))
    assert in_amx
    assert_close(actual, expected, "float32")
    assert np.isfinite(actual[0][[0, 1, 2, 4, 19, 21]]).all()


@needs_amx
@pytest.mark.parametrize("value", [np.inf, np.nan, 2.0 ** 127, 2.0 ** -101, 1e-40])
def test_weights_that_cannot_be_split_keep_the_call_out_of_the_tiles(tuned, value):
    """A kernel holding an infinity, a NaN, a value of 2^127 or more, or a nonzero one under
    2^-100 (the tiles read a subnormal part as zero) is not packed in parts: the whole call runs
    in small_gemm.h, as the reference gives it."""
    layer = make_layer("lstm", 33)
    weights = layer.get_weights()
    weights[1][3, 17] = value
    layer.set_weights(weights)
    x, mask, states = make_inputs(layer, 32, 64, 33)
    expected = on_reference(lambda: layer(x, initial_state=states))
    actual, in_amx = runs_in_amx(lambda: layer(x, initial_state=states))
    assert not in_amx
    assert_close(actual, expected, "float32")


@needs_amx
@pytest.mark.parametrize("scale", [1e-33, 1e-37])
def test_tiny_weights_against_huge_inputs_match_reference(tuned, scale):
    """A kernel scaled down to 1e-33 against inputs scaled up to 1e33: in the tiles, the parts of
    its values under 2^-100 would be read as zero (an error of 9e-5, 1.04 at 1e-37)."""
    layer = make_layer("simple_rnn", 33)
    weights = layer.get_weights()
    weights[0] = (weights[0] * scale).astype(np.float32)
    layer.set_weights(weights)
    x, _, states = make_inputs(layer, 32, 40, 33)
    x = (x / scale).astype(np.float32)
    expected = on_reference(lambda: layer(x, initial_state=states))
    assert_close(layer(x, initial_state=states), expected, "float32")


@needs_amx
def test_parts_of_one_weights_in_and_out_of_the_tiles_do_not_share_their_packing(tuned):
    """Parts of run_parts with the same weights but not the same steps: one runs in the tiles,
    the other (2 steps) does not, and neither reads the other's packed kernel (it read small_gemm.h's
    panels as bfloat16 parts: NaN, or a read far past the buffer)."""
    from fastrnn import activations
    rng = np.random.default_rng(0)
    inputs, units = 500, 128
    kernel = rng.uniform(-0.03, 0.03, (inputs, units)).astype(np.float32)
    recurrent_kernel = rng.uniform(-0.1, 0.1, (units, units)).astype(np.float32)
    bias = rng.uniform(-0.1, 0.1, units).astype(np.float32)
    tanh = activations.code("tanh")

    def part(batch, timesteps, seed):
        x = np.random.default_rng(seed).standard_normal((batch, timesteps, inputs)).astype(np.float32)
        return (x, kernel, bias, recurrent_kernel, np.zeros((0, 0), np.uint8), tanh, np.zeros((batch, units), np.float32),
                np.zeros((batch, timesteps, units), np.float32))

    short, long = part(300, 2, 1), part(16, 64, 2)
    before = _kernels.calls_in_amx()
    _kernels.run_parts([(_kernels.simple_rnn, short), (_kernels.simple_rnn, long)])
    assert _kernels.calls_in_amx() == before + 1
    for x, *_, h, sequence in (short, long):
        expected = np.zeros_like(h)
        reference.simple_rnn(x, kernel, bias, recurrent_kernel, np.zeros((0, 0), np.uint8), tanh, expected,
                             np.zeros_like(sequence))
        assert_close(h, expected, "float32")


@needs_amx
@pytest.mark.parametrize("cell, batch, timesteps, dtype, why", [
    ("lstm", 15, 100, "float32", "fewer rows than a tile"),
    ("lstm", 16, 63, "float32", "fewer than 1024 rows times steps"),
    ("simple_rnn", 64, 64, "float32", "fewer than 128 columns"),
    ("lstm", 64, 64, "float64", "float64"),
])
def test_calls_below_the_thresholds_stay_out_of_the_tiles(tuned, cell, batch, timesteps, dtype, why):
    units = 100 if cell == "simple_rnn" else CELLS[cell][2]
    cls, options, _ = CELLS[cell]
    layer = cls(units, **options, dtype=dtype, return_sequences=True)
    x = np.random.default_rng(0).standard_normal((batch, timesteps, 8)).astype(dtype)
    expected = on_reference(lambda: layer(x))
    actual, in_amx = runs_in_amx(lambda: layer(x))
    assert not in_amx, why
    assert_close(actual, expected, dtype)


@needs_amx
def test_switches_turn_the_tiles_off(tuned):
    """configure(amx=False) and AVX2 forced (a machine without AVX-512 has no AMX) both run the
    products in small_gemm.h; products_use_amx and show_config say so."""
    layer = make_layer("gru", 33)
    x, _, _ = make_inputs(layer, 32, 64, 33)
    for setting in ({"amx": False}, {"vector_bits": 256}):
        tuned(amx=True, vector_bits=512)
        tuned(**setting)
        assert not _kernels.products_use_amx()
        _, in_amx = runs_in_amx(lambda: layer(x))
        assert not in_amx, setting
    tuned(amx=True, vector_bits=512)
    assert _kernels.products_use_amx()


def test_configure_refuses_an_amx_setting_that_is_not_a_bool(tuned):
    before = _kernels.configure()
    with pytest.raises(TypeError, match="amx must be True or False, got 'yes'"):
        tuned(amx="yes")
    assert _kernels.configure() == before


@pytest.mark.parametrize("amx", [True, False])
def test_show_config_says_whether_products_run_in_amx_tiles(tuned, capsys, amx):
    tuned(amx=amx)
    fastrnn.show_config()
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("cython"))
    assert ("in AMX tiles" in line) == _kernels.products_use_amx() == (amx and has_amx()), line
    assert ("AMX tiles off (FASTRNN_AMX=1)" in line) == (has_amx() and not amx), line


@pytest.mark.parametrize("setting, expected", [(None, False), ("0", False), ("1", has_amx())])
def test_fastrnn_amx_1_turns_the_tiles_on(setting, expected):
    """The compiled backend loads with the tiles off, on where FASTRNN_AMX=1 (and the CPU has
    them)."""
    code = "import fastrnn; fastrnn.backends.kernels(); from fastrnn import _kernels; print(_kernels.products_use_amx())"
    env = {key: value for key, value in os.environ.items() if key != "FASTRNN_AMX"}
    env.update({"FASTRNN_BACKEND": "cython"}, **({"FASTRNN_AMX": setting} if setting else {}))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(expected)


def test_a_setting_made_before_the_backend_loads_stays():
    """`configure(amx=True)` made on the extension before the backend registry first loaded it was
    undone by that load (FASTRNN_AMX unset read as "off"), while its other settings stayed."""
    code = ("from fastrnn import _kernels; _kernels.configure(amx=True, min_step_work=7); import fastrnn; "
            "fastrnn.backends.kernels(); print(_kernels.configure()['amx'], _kernels.configure()['min_step_work'])")
    env = {key: value for key, value in os.environ.items() if key != "FASTRNN_AMX"}
    env.update({"FASTRNN_BACKEND": "cython"})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "7"]


GRANTED = """
import ctypes, fastrnn
fastrnn.backends.kernels()
features = ctypes.c_uint64()
ctypes.CDLL(None, use_errno=True).syscall(158, 0x1022, ctypes.byref(features))   # ARCH_GET_XCOMP_PERM
print(bool(features.value >> 18 & 1))                                            # XTILEDATA
"""


@pytest.mark.skipif(not (sys.platform == "linux" and os.uname().machine == "x86_64"), reason="x86-64 Linux only")
@pytest.mark.parametrize("setting", [None, "1"])
def test_the_tiles_are_asked_for_only_when_turned_on(setting):
    """Importing fastrnn does not ask Linux for the tiles' state (once granted, every signal frame
    of the process holds 8 KB more, and sigaltstack refuses smaller stacks); FASTRNN_AMX=1 does,
    where the CPU has them."""
    env = {key: value for key, value in os.environ.items() if key != "FASTRNN_AMX"}
    env.update({"FASTRNN_BACKEND": "cython"}, **({"FASTRNN_AMX": setting} if setting else {}))
    out = subprocess.run([sys.executable, "-c", GRANTED], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(bool(setting) and _kernels.cpu_has_amx())


@pytest.mark.parametrize("batch, threads, shares, sizes", [
    (40, 4, None, [16, 24]),          # at most batch // 16 parts, boundaries on whole tiles
    (64, 4, None, [16, 16, 16, 16]),
    (64, 2, (0.7, 0.3), [48, 16]),    # by speed, each part 16 rows or more, on whole tiles
    (20, 2, None, [20]),              # too few rows for two parts of a tile
])
def test_row_parts_keep_whole_tiles_of_rows(batch, threads, shares, sizes):
    parts = parallel.row_parts(batch, 1 << 24, team=True, threads=threads, shares=shares, min_rows=16)
    assert [part.indices(batch)[1] - part.indices(batch)[0] for part in parts] == sizes
