"""Hardening: any input to a forward pass, threads, memory over many calls, extreme values."""
import os
import threading
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastrnn as fr
from conftest import on_reference

DTYPES = [np.int8, np.int64, np.uint8, np.bool_, np.float16, np.float32, np.float64, np.complex64,
          np.object_, np.str_]


def model(seed=0):
    return fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True, seed=seed),
                          fr.GRU(3, seed=seed + 1), fr.Dense(2, seed=seed + 2)])


MODEL = model()



@st.composite
def any_input(draw):
    """Arrays of any rank, size, dtype and layout, with NaN and inf sprinkled in."""
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    dtype = draw(st.sampled_from(DTYPES))
    values = np.random.default_rng(draw(st.integers(0, 2 ** 16))).standard_normal(shape) * 3
    if np.issubdtype(dtype, np.floating) and values.size and draw(st.booleans()):
        flat = values.reshape(-1)
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    x = np.array(values.astype(dtype))   # an array even for rank 0
    layout = draw(st.sampled_from(["c", "fortran", "reversed", "strided", "read_only"]))
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "reversed" and x.ndim:
        x = x[::-1]
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == "read_only":
        x.flags.writeable = False
    return x


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(any_input())
def test_any_input_gives_the_reference_or_a_clear_error(x):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", getattr(np, "exceptions", np).ComplexWarning)   # (NumPy < 1.25: np.)
            result = MODEL(x)
    except (TypeError, ValueError) as exc:
        assert str(exc)   # a message, never an empty error
        return
    expected = on_reference(lambda: MODEL(x))
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-5, equal_nan=True)


def test_zero_timesteps_and_zero_batch():
    with pytest.raises(ValueError, match="0 timesteps"):
        MODEL(np.zeros((2, 0, 3)))
    assert MODEL(np.zeros((0, 5, 3))).shape == (0, 2)


@pytest.mark.parametrize("call, layer", [
    (lambda: fr.LSTM(3, name="encoder")([[[1.0, 2.0]], [[1.0]]]), r"'encoder' \(LSTM\)"),   # ragged
    (lambda: fr.Dense(3, name="head")([[1.0, 2.0], [1.0]]), r"'head' \(Dense\)"),
    (lambda: fr.Multiply(name="gate")([np.ones((2, 3, 4)), np.ones((2, 3, 4))], mask=[np.ones((2, 4), bool), None]),
     r"'gate' \(Multiply\)"),
])
def test_numpy_errors_inside_a_layer_name_the_layer(call, layer):
    with pytest.raises(ValueError, match=f"^layer {layer}: "):
        call()


def _two_input_model():
    a, b = fr.Input((None, 3)), fr.Input((None, 3))
    return fr.Model([a, b], fr.Concatenate()([fr.LSTM(2)(a), fr.LSTM(2)(b)]))


@pytest.mark.parametrize("call, error, message", [
    # each gave Python's or NumPy's own message, naming nothing of the user's
    (lambda: fr.Sequential([fr.Input((4, 3)), fr.RepeatVector(2, name="rep")]), ValueError,
     r"'rep' \(RepeatVector\) takes inputs of shape \(batch, features\), got \(None, 4, 3\)"),
    (lambda: fr.Reshape(12, name="r"), ValueError, "target_shape of layer 'r' must be a tuple of positive integers and at most one -1"),
    (lambda: fr.Reshape("ab", name="r"), ValueError, "target_shape of layer 'r' must be"),
    (lambda: fr.Reshape((2.5, 6), name="r"), ValueError, "target_shape of layer 'r' must be"),   # was read as (2, 6)
    (lambda: MODEL.predict(None), TypeError, "predict of model .* needs inputs x, got None"),
    (lambda: MODEL.predict(np.zeros((0, 0, 3))), ValueError,
     r"0 timesteps, .*\(predict's probe of 1 row\(s\) of zeros for its input of 0 rows, shape \(0, 0, 3\)\)"),
    (lambda: MODEL.predict(5.0), ValueError, r"predict of model .* takes arrays of shape \(batch, \.\.\.\): input 0 is a float"),
    (lambda: MODEL.predict(np.float32(1)), ValueError, "input 0 is a float32 without axes"),
    (lambda: MODEL.predict(iter([np.zeros((5, 3))])), ValueError, "input 0 is a list_iterator without axes"),
    (lambda: _two_input_model().predict([np.zeros((2, 4, 3)), 1.0]), ValueError, "input 1 is a float without axes"),
    (lambda: MODEL.predict(np.zeros(3), lengths=[1, 1, 1]), ValueError, r"lengths= takes a padded x .* got shape \(3,\)"),
    (lambda: setattr(MODEL.stream(), "states", None), TypeError, "stream states are a list .* got NoneType"),
    (lambda: fr.LSTM.from_config(None), TypeError, r"a layer's config is a dict \(from get_config\), got NoneType"),
    (lambda: fr.Bidirectional.from_config(None), TypeError, r"a layer's config is a dict"),
    (lambda: fr.TimeDistributed.from_config(None), TypeError, r"a layer's config is a dict"),
    (lambda: _two_input_model().predict([[np.zeros((5, 3)), np.zeros((2, 3))]] * 2), ValueError,
     "input 0 of model .* is not one array"),
    (lambda: _two_input_model()([[np.zeros((5, 3)), np.zeros((2, 3))]] * 2), ValueError, "input .* is not one array"),
    (lambda: fr.Multiply(name="m")([np.ones((2, 3)), np.ones((3, 3))]), ValueError,
     r"'m' \(Multiply\) merges arrays of one number of rows, got shapes \[\(2, 3\), \(3, 3\)\]"),
])
def test_bad_arguments_get_errors_that_say_what_is_wrong(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("make, message", [
    # bool("False") is True: these ran backwards, returned states, reset before the product ...
    (lambda: fr.LSTM(2, go_backwards="False", name="enc"), "go_backwards of layer 'enc' must be True or False"),
    (lambda: fr.GRU(2, return_state="no", name="g"), "return_state of layer 'g' must be True or False"),
    (lambda: fr.GRU(2, reset_after="False", name="g"), "reset_after of GRU 'g' must be True or False"),
    (lambda: fr.LSTM(2, unit_forget_bias=[]), "^unit_forget_bias must be True or False"),
    (lambda: fr.Dense(2, use_bias="True", name="d"), "use_bias of layer 'd' must be True or False"),
    (lambda: fr.Embedding(5, 2, mask_zero=2, name="e"), "mask_zero of layer 'e' must be True or False"),
    (lambda: fr.TorchRNN("GRU", 3, 4, batch_first="True"), "batch_first must be True or False"),
])
def test_flags_must_be_booleans(make, message):
    with pytest.raises(TypeError, match=message):
        make()
    layer = fr.LSTM(2, go_backwards=np.bool_(True), return_sequences=1, return_state=None, use_bias=np.array(0),
                    stateful=0.0, unit_forget_bias=np.float32(1))
    assert (layer.go_backwards, layer.return_sequences, layer.return_state, layer.use_bias, layer.stateful,
            layer.unit_forget_bias) == (True, True, False, False, False, True)
    with pytest.raises(TypeError, match="go_backwards .* must be True or False, got 0.5"):
        fr.LSTM(2, go_backwards=0.5)


def test_impossible_sizes_and_values_are_named():
    with pytest.raises(MemoryError, match=r"layer 'huge' \(LSTM\): its weights .* need .* GiB"):
        fr.LSTM(10 ** 12, name="huge")(np.ones((1, 2, 3), np.float32))
    with pytest.raises(TypeError, match="mask_value of layer 'm' must be a number, got 'a'"):
        fr.Masking("a", name="m")   # it masked nothing
    for rate in (2.0, -0.1, "0.5"):
        with pytest.raises(ValueError, match="rate of layer 'd' must be a number from 0 to 1"):
            fr.Dropout(rate, name="d")
    with pytest.raises(ValueError, match="stddev of layer 'n' must be a number from 0"):
        fr.GaussianNoise(np.array([0.1]), name="n")
    # what Keras takes stays taken: NumPy scalars and arrays, as plain numbers (a model holding
    # np.float32(0.2) could not be saved or pickled: not JSON)
    assert fr.Dropout(np.array(0.5)).rate == 0.5 and fr.GaussianNoise(5.0).stddev == 5.0
    assert type(fr.Dropout(np.float32(0.25)).get_config()["rate"]) is float
    assert type(fr.Masking(np.int64(0)).get_config()["mask_value"]) is int
    assert fr.Masking(np.array(-1)).mask_value == -1
    assert fr.Reshape(np.array([2, 3])).target_shape == (2, 3)


def test_predict_with_lengths_takes_a_list_of_equal_rows():
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(MODEL.predict(list(x), lengths=[5, 3]), MODEL.predict(x, lengths=[5, 3]))


def test_load_takes_a_bytes_path():
    path = os.path.join(os.path.dirname(__file__), "data", "files", "k3_decoder_merges.keras")
    assert [l.name for l in fr.load(os.fsencode(path)).layers] == [l.name for l in fr.load(path).layers]


class _Broken(fr.Activation):
    """A layer whose call fails as NumPy does: a message that names no layer."""

    def call(self, inputs, mask=None):
        raise ValueError("operands could not be broadcast together")


def test_models_name_the_layer_whose_call_failed():
    sequential = fr.Sequential([fr.Input((None, 3)), fr.GRU(2, return_sequences=True), _Broken("linear", name="bad")])
    inputs = fr.Input((None, 3))
    functional = fr.Model(inputs, _Broken("linear", name="worse")(fr.GRU(2)(inputs)))
    with pytest.raises(ValueError, match=r"^layer 'bad' \(_Broken\): operands could not"):
        sequential.predict(np.ones((1, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"^layer 'worse' \(_Broken\): operands could not"):
        functional.predict(np.ones((1, 2, 3), np.float32))
    # A message that names its layer already is left as it is.
    with pytest.raises(TypeError, match=r"^mask for layer 'lstm_named' must be boolean"):
        fr.LSTM(3, name="lstm_named")(np.ones((2, 3, 4)), mask=np.ones((2, 3)))


# ------------------------------------------------------------------ threads
def test_one_model_from_eight_threads_equals_sequential_calls(backend_name):
    inputs = [np.random.default_rng(i).standard_normal((3, 20, 3)).astype(np.float32) for i in range(8)]
    expected = [MODEL(x) for x in inputs]
    results, errors = [None] * 8, []
    start = threading.Barrier(8)

    def work(i):
        try:
            start.wait()
            for _ in range(25):
                results[i] = MODEL(inputs[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r, e in zip(results, expected):
        np.testing.assert_array_equal(r, e)


LAYERS = [lambda: fr.SimpleRNN(4, seed=0), lambda: fr.SimpleRNN(4, use_bias=False, seed=0),
          lambda: fr.LSTM(4, seed=0), lambda: fr.LSTM(4, proj_size=2, seed=0),
          lambda: fr.GRU(4, seed=0), lambda: fr.GRU(4, reset_after=False, seed=0), lambda: fr.Dense(4, seed=0)]


@pytest.mark.parametrize("make", LAYERS)
def test_a_layer_looks_built_only_once_all_of_it_is_there(make, monkeypatch):
    """Threads calling a layer that is not built yet: the first builds it, the others wait unless
    it looks built, so it must look built only when everything a call reads is there (a GRU
    called from eight threads at once raised AttributeError for its recurrent bias)."""
    layer = make()
    seen = []
    set_weights = type(layer)._on_weights_set
    monkeypatch.setattr(type(layer), "_on_weights_set", lambda self: (seen.append(self.built), set_weights(self)))
    layer(np.ones((2, 3, 5), np.float32))
    assert seen == [False]


@pytest.mark.parametrize("make", LAYERS)
def test_a_call_during_set_weights_takes_all_old_or_all_new_weights(make, monkeypatch):
    """A call that runs while another thread's set_weights replaces the weights one by one uses
    the old weights or the new, never some of each: here it runs at the worst moment, when every
    new array is in place and nothing laid out for the kernels yet."""
    layer = make()
    x = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    old = layer(x)
    new_weights = [w * 0.5 + 0.1 for w in layer.get_weights()]
    during = []
    set_weights = type(layer)._on_weights_set
    monkeypatch.setattr(type(layer), "_on_weights_set", lambda self: (during.append(self(x)), set_weights(self)))
    layer.set_weights(new_weights)
    monkeypatch.undo()
    new = layer(x)
    assert not np.allclose(new, old)
    np.testing.assert_array_equal(during[0], old)


def test_a_call_split_into_row_parts_takes_one_set_of_weights(backend_name, monkeypatch):
    """The parts of one call all run with the weights the call began with: here another thread's
    set_weights lands just after the first part has read them (before, later parts read the new
    weights, and rows of one output came from two sets of weights)."""
    layer = fr.LSTM(128, seed=0, return_sequences=True)
    x = np.random.default_rng(0).standard_normal((64, 20, 64)).astype(np.float32)
    threads = fr.num_threads()
    fr.set_num_threads(2)
    try:
        old = layer(x)
        new_weights = [w * 0.5 + 0.1 for w in layer.get_weights()]
        kernel_call, parts = type(layer)._kernel_call, []

        def part(self, *arguments):
            if arguments[2].shape[0] < 64:   # a part's rows of x (the compiled kernels are also asked about all)
                parts.append(arguments[2].shape[0])
                if len(parts) == 1:
                    self.set_weights(new_weights)
            return kernel_call(self, *arguments)

        monkeypatch.setattr(type(layer), "_kernel_call", part)
        during = layer(x)
        monkeypatch.undo()
    finally:
        fr.set_num_threads(threads)
    assert len(parts) > 1 and sum(parts) == 64, parts    # split into row parts
    np.testing.assert_array_equal(during, old)
    assert not np.allclose(layer(x), old)


def test_weights_set_while_a_stream_binds_its_steps_are_taken_at_its_next_step(monkeypatch):
    """Before, a set_weights landing while a stream bound its steps went unnoticed for good."""
    from fastrnn import streaming

    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True, seed=0), fr.Dense(1, seed=1)])
    lstm, dense = model.layers
    x = np.random.default_rng(0).standard_normal((1, 6, 3)).astype(np.float32)
    old_weights = lstm.get_weights()
    new_weights = [w * 0.5 + 0.1 for w in old_weights]
    recurrent_step, landed = streaming._recurrent_step, []

    def bind(layer, states):     # another thread's set_weights, just after the layer is bound
        step = recurrent_step(layer, states)
        if not landed:
            landed.append(layer.set_weights(new_weights))
        return step

    monkeypatch.setattr(streaming, "_recurrent_step", bind)
    stream = model.stream(1)
    stream.step(x[:, 0])                     # its steps bound with the old weights
    outputs = np.stack([stream.step(x[:, t]) for t in range(1, 6)], axis=1)
    # Step 0 ran with the old weights; the next steps must run with the new, from its states.
    old = fr.LSTM(4, return_state=True, weights=old_weights)
    _, h, c = old(x[:, :1])
    new = fr.LSTM(4, return_sequences=True, weights=new_weights)
    np.testing.assert_allclose(outputs, dense(new(x[:, 1:], initial_state=[h, c])), rtol=0, atol=1e-6)


def test_each_thread_with_its_own_stream():
    x = np.random.default_rng(0).standard_normal((2, 30, 3)).astype(np.float32)
    streamable = fr.Sequential([fr.Input((None, 3)), fr.GRU(5, return_sequences=True, seed=0), fr.Dense(1, seed=1)])
    expected = streamable(x)
    results = [None] * 6

    def work(i):
        stream = streamable.stream(2)
        results[i] = np.stack([stream.step(x[:, t]) for t in range(30)], axis=1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_allclose(r, expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ memory
def resident_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
def test_many_small_calls_do_not_grow_memory():
    layer = fr.LSTM(8, return_sequences=True, seed=0)
    x = np.ones((1, 3, 4), np.float32)
    stream = fr.Sequential([fr.Input((None, 4)), fr.GRU(8, seed=0)]).stream()
    for _ in range(2000):   # warm up allocators and caches
        layer(x)
        stream.step(x[:, 0])
    before = resident_bytes()
    for _ in range(50_000):
        layer(x)
        stream.step(x[:, 0])
    assert resident_bytes() - before < 16 * 2 ** 20


# ------------------------------------------------------------------ numerical robustness
@pytest.mark.parametrize("cell", [fr.SimpleRNN, fr.LSTM, fr.GRU])
def test_extreme_inputs_saturate_without_warnings_or_nan(backend_name, cell):
    layer = cell(4, return_sequences=True, seed=0)
    # Huge but representable after the input projection (|kernel| < 1, 3 inputs): the gates and
    # the candidate saturate at 0, 1 or +-1.
    x = np.array([[[1e30, -1e30, 1000.0], [-1000.0, 1e35, -1e35], [0.0, 1e-45, -1e-45]]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            y = layer(x)
    assert np.isfinite(y).all() and np.abs(y).max() <= 1


@pytest.mark.parametrize("cell", [fr.SimpleRNN, fr.LSTM, fr.GRU])
def test_float32_drift_over_10000_steps_is_bounded(cell):
    # The README states the bound: float32 stays within 1e-5 of float64 over 10 000 steps for
    # these Keras-initialised layers (the recurrence contracts, so rounding does not compound).
    x = np.random.default_rng(0).standard_normal((2, 10_000, 3))
    f64 = cell(8, return_sequences=True, seed=0, dtype="float64", input_shape=(None, 3))
    f32 = cell(8, return_sequences=True, seed=0, dtype="float32", weights=f64.get_weights())
    drift = np.abs(f32(x).astype(np.float64) - f64(x)).max()
    assert drift < 1e-5


@pytest.mark.parametrize("within", ["nothing", "Sequential", "Model"])
def test_an_allocation_that_fails_inside_a_call_names_the_layer(within):
    """NumPy's MemoryError names only the array's shape; the call's names the layer that asked for
    it (128 PiB: more than any address space, so it fails at once everywhere)."""
    layer = fr.RepeatVector(2 ** 53, name="huge")
    inputs = fr.Input((4,))
    call = {"nothing": layer, "Sequential": fr.Sequential([inputs, layer]),
            "Model": fr.Model(inputs, layer(inputs))}[within]
    with pytest.raises(MemoryError, match=r"layer 'huge' \(RepeatVector\): Unable to allocate"):
        call(np.ones((1, 4), np.float32))
