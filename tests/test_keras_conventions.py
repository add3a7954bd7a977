"""Keras's calling conventions and constructor arguments, as code ported from Keras uses them.

Each test is a Keras idiom that a Keras model runs as written: the expected results come from
fastrnn itself called in its plainest form (one array, explicit arguments), which the reference
and golden tests pin to Keras.
"""
import numpy as np
import pytest

import fastrnn as fr


def rng_inputs(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def lstm_model(inputs_as_list, outputs_as_list):
    inp = fr.Input((None, 3), name="x")
    out = fr.Dense(1, seed=1)(fr.LSTM(8, seed=0)(inp))
    return fr.Model([inp] if inputs_as_list else inp, [out] if outputs_as_list else out)


# ------------------------------------------------------------------ model inputs and outputs
@pytest.mark.parametrize("inputs_as_list", [False, True])
@pytest.mark.parametrize("outputs_as_list", [False, True])
def test_one_input_one_output_in_any_wrapping(inputs_as_list, outputs_as_list):
    # Keras 3 takes [x] or {name: x} for a one-input model, whether it was built from [inp] or
    # inp, and unwraps a single output (model(x) and predict alike).
    model = lstm_model(inputs_as_list, outputs_as_list)
    x = rng_inputs(5, 4, 3)
    expected = lstm_model(False, False)(x)
    model.set_weights(lstm_model(False, False).get_weights())   # (same seeds: same weights anyway)
    for given in (x, [x], (x,), {"x": x}):
        np.testing.assert_array_equal(model(given), expected)
        np.testing.assert_array_equal(model.predict(given), expected)
    assert model.output_shape == (None, 1) and model.input_shape == (None, None, 3)


def test_ragged_list_is_still_sequences_one_axis_short():
    model = lstm_model(True, True)
    sequences = [rng_inputs(n, 3, seed=n) for n in (4, 7)]
    ragged = model.predict(sequences)
    assert ragged.shape == (2, 1)
    np.testing.assert_allclose(ragged[1], model(sequences[1][None])[0], atol=1e-6)
    # A list of one sequence is a ragged list too: (4, 3) is one axis short of (None, None, 3).
    np.testing.assert_allclose(model.predict(sequences[:1]), model(sequences[0][None]), atol=1e-6)


def test_inputs_by_name_and_their_errors():
    a, b = fr.Input((None, 3), name="a"), fr.Input((None, 2), name="b")
    model = fr.Model({"a": a, "b": b}, fr.Concatenate()([fr.GRU(4, seed=0)(a), fr.GRU(2, seed=1)(b)]))
    xa, xb = rng_inputs(3, 5, 3), rng_inputs(3, 5, 2, seed=1)
    np.testing.assert_array_equal(model({"b": xb, "a": xa}), model([xa, xb]))
    np.testing.assert_array_equal(model.predict({"b": xb, "a": xa}), model([xa, xb]))
    with pytest.raises(ValueError, match=r"lack \['b'\] and have unknown \['c'\]"):
        model({"a": xa, "c": xb})
    with pytest.raises(ValueError, match="takes 2 inputs, got 3"):
        model([xa, xb, xb])
    with pytest.raises(ValueError, match="takes 2 inputs .* got one ndarray"):
        model(xa)


def test_functional_model_applies_a_call_time_mask():
    # Keras 3 attaches mask= to the inputs: the layers see it as a Masking layer's.
    inp = fr.Input((None, 3))
    lstm = fr.LSTM(4, seed=0)
    model = fr.Model(inp, lstm(inp))
    x = rng_inputs(2, 6, 3)
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    expected = lstm(x, mask=mask)
    np.testing.assert_array_equal(model(x, mask=mask), expected)
    np.testing.assert_array_equal(model(x, mask=[mask]), expected)
    np.testing.assert_array_equal(fr.Sequential([inp, lstm])(x, mask=mask), expected)
    assert not np.allclose(model(x), expected)


@pytest.mark.parametrize("functional", [False, True])
def test_a_univariate_series_without_its_feature_axis(functional):
    # Keras 3 adds (or drops) a trailing axis of size 1 to fit the declared input.
    layers = [fr.LSTM(4, seed=0), fr.Dense(1, seed=1)]
    if functional:
        inp = fr.Input((20, 1))
        model = fr.Model(inp, layers[1](layers[0](inp)))
    else:
        model = fr.Sequential([fr.Input((20, 1))] + layers)
    series = rng_inputs(4, 20)
    expected = model(series[..., None])
    np.testing.assert_array_equal(model(series), expected)
    np.testing.assert_array_equal(model.predict(series), expected)
    np.testing.assert_array_equal(model(series[..., None, None]), expected)
    with pytest.raises(ValueError, match=r"expects .*shape \(None, 20, 1\), got \(4, 20, 2\)"):
        model(rng_inputs(4, 20, 2))


def test_stateful_layer_keeps_its_declared_batch():
    # Keras 2's stateful forecaster: one series, fed step by step in order.
    model = fr.Sequential([fr.LSTM(4, batch_input_shape=(1, 3, 1), stateful=True, seed=0), fr.Dense(1, seed=1)])
    x = rng_inputs(5, 3, 1)
    chained = np.concatenate([model(x[i:i + 1]) for i in range(5)])
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x), chained)      # in batches of the declared 1
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x, batch_size=1), chained)
    model.reset_states()
    with pytest.raises(ValueError, match="stateful layer 'lstm.*' was declared for batches of 1 .* got a batch of 5"):
        model(x)
    with pytest.raises(ValueError, match="declared for batches of 1"):
        model.predict(x, batch_size=5)
    # Not declared: the first call's batch, as before.
    free = fr.LSTM(4, stateful=True, seed=0)
    free(x)
    with pytest.raises(ValueError, match="carries states for a batch of 5, got a batch of 1"):
        free(x[:1])
