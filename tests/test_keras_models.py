"""LSTM, GRU, Bidirectional, the small layers and whole models against real Keras 3 outputs.

Fixtures: tests/data/keras_models.npz, written by tests/data/make_keras_model_fixtures.py (which
needs Keras and TensorFlow; these tests only read it). Layer cases are rebuilt from their stored
configuration; each model case is rebuilt by hand below with fastrnn's API, layer names as in
the Keras model, and gets the Keras weights by layer name.
"""
import json

import numpy as np
import pytest

import fastrnn as fr
from conftest import assert_close, load_fixture

CASES, ARRAYS = load_fixture("keras_models.npz")
LAYER_CASES = [c for c in CASES if c["kind"] == "layer"]
MODEL_CASES = [c for c in CASES if c["kind"] == "model"]


def layer_from_config(config, dtype):
    """A fastrnn layer from the fixture's Keras layer configuration."""
    config = dict(config)
    cls = getattr(fr, config.pop("class"))
    if cls is fr.Bidirectional:
        forward = layer_from_config(config.pop("forward_layer"), dtype)
        backward = layer_from_config(config.pop("backward_layer"), dtype)
        config.pop("return_sequences"), config.pop("return_state")
        return fr.Bidirectional(forward, backward_layer=backward, **config)
    return cls(dtype=dtype, **config)


def weights_of(case, layer_name):
    n = case["weights"][layer_name]
    return [ARRAYS[f"{case['name']}.w.{layer_name}.{i}"] for i in range(n)]


def expected_outputs(case):
    return [ARRAYS[f"{case['name']}.out{i}"] for i in range(case["outputs"])]


def as_list(outputs):
    return outputs if isinstance(outputs, list) else [outputs]


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c["name"] for c in LAYER_CASES])
def test_layer_matches_keras(case, backend_name):
    name = case["name"]
    layer = layer_from_config(case["config"], case["dtype"])
    layer.set_weights(weights_of(case, case["config"]["name"]))
    states = [ARRAYS[f"{name}.{k}"] for k in case["inputs"] if k.startswith("initial_state")]
    mask = ARRAYS.get(f"{name}.mask")
    outputs = layer(ARRAYS[f"{name}.x"], initial_state=states or None, mask=mask)
    assert_close(as_list(outputs), expected_outputs(case), case["dtype"])
    assert layer.count_params() == case["count_params"]
    shapes = layer.compute_output_shape((None,) + ARRAYS[f"{name}.x"].shape[1:])
    assert json.loads(json.dumps(shapes)) == case["output_shapes"]


# ------------------------------------------------------------------ the models, rebuilt by hand
def model_stacked():
    return fr.Sequential([
        fr.Input((5, 3)),
        fr.LSTM(4, return_sequences=True, name="lstm"),
        fr.GRU(3, return_sequences=True, name="gru"),
        fr.SimpleRNN(4, name="simple_rnn"),
        fr.Dense(2, name="dense"),
    ])


def model_embedding_lstm():
    return fr.Sequential([
        fr.Input((7,), dtype="int32"),
        fr.Embedding(10, 4, mask_zero=True, name="embedding"),
        fr.LSTM(3, name="lstm"),
        fr.Dense(1, activation="sigmoid", name="dense"),
    ])


def model_masking_gru():
    return fr.Sequential([
        fr.Input((6, 3)),
        fr.Masking(0.0, name="masking"),
        fr.GRU(4, return_sequences=True, name="gru"),
        fr.TimeDistributed(fr.Dense(3), name="time_distributed"),
    ])


def model_embedding_bidi():
    return fr.Sequential([
        fr.Input((7,), dtype="int32"),
        fr.Embedding(10, 4, mask_zero=True, name="embedding"),
        fr.Bidirectional(fr.LSTM(3, return_sequences=True), name="bidi_lstm"),
        fr.Bidirectional(fr.GRU(3), name="bidi_gru"),
        fr.Dense(2, name="dense"),
    ])


def model_encoder_decoder():
    encoder_inputs = fr.Input((5, 3), name="encoder_inputs")
    decoder_inputs = fr.Input((4, 2), name="decoder_inputs")
    _, h, c = fr.LSTM(4, return_state=True, name="encoder")(encoder_inputs)
    decoded = fr.LSTM(4, return_sequences=True, name="decoder")(decoder_inputs, initial_state=[h, c])
    outputs = fr.Activation("sigmoid", name="sigmoid")(fr.Dense(3, name="dense")(decoded))
    return fr.Model([encoder_inputs, decoder_inputs], outputs)


def model_gru_state_outputs():
    x = fr.Input((5, 3), name="x")
    sequence, state = fr.GRU(4, return_sequences=True, return_state=True, name="gru")(x)
    return fr.Model(x, [sequence, state])


def model_lstm_state_outputs():
    x = fr.Input((5, 3), name="x")
    return fr.Model(x, fr.LSTM(4, return_state=True, name="lstm")(x))


def model_small_layers():
    return fr.Sequential([
        fr.Input((5, 3)),
        fr.Dropout(0.5, name="dropout"),
        fr.SpatialDropout1D(0.5, name="spatial_dropout"),
        fr.GaussianNoise(0.1, name="gaussian_noise"),
        fr.GaussianDropout(0.1, name="gaussian_dropout"),
        fr.LSTM(4, return_sequences=True, name="lstm"),
        fr.Flatten(name="flatten"),
        fr.Dense(10, name="dense"),
        fr.Reshape((5, 2), name="reshape"),
        fr.GRU(3, name="gru"),
        fr.RepeatVector(3, name="repeat"),
        fr.SimpleRNN(2, return_sequences=True, name="simple_rnn"),
        fr.Activation("tanh", name="tanh"),
    ])


def model_merges():
    a_in, b_in = fr.Input((5, 3), name="a_in"), fr.Input((5, 3), name="b_in")
    a = fr.LSTM(3, return_sequences=True, name="lstm_a")(a_in)
    b = fr.LSTM(3, return_sequences=True, name="lstm_b")(b_in)
    merged = fr.Concatenate(name="concat_all")([
        fr.Concatenate(name="concat")([a, b]), fr.Add(name="add")([a, b]),
        fr.Multiply(name="multiply")([a, b]), fr.Average(name="average")([a, b]),
    ])
    return fr.Model([a_in, b_in], fr.Dense(2, name="dense")(merged))


def model_tutorial():
    return fr.Sequential([fr.SimpleRNN(3, input_shape=(2, 10), name="simple_rnn")])


MODELS = {name: fn for name, fn in globals().items() if name.startswith("model_")}


def built_model(case):
    model = MODELS[case["name"]]()
    for layer_name in case["weights"]:
        model.get_layer(layer_name).set_weights(weights_of(case, layer_name))
    return model


def test_every_model_case_has_a_builder():
    assert sorted(MODELS) == sorted(c["name"] for c in MODEL_CASES)


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c["name"] for c in MODEL_CASES])
def test_model_matches_keras(case, backend_name):
    model = built_model(case)
    inputs = [ARRAYS[f"{case['name']}.{k}"] for k in case["inputs"]]
    outputs = model(inputs if len(inputs) > 1 else inputs[0])
    assert_close(as_list(outputs), expected_outputs(case), case["dtype"])
    # predict in small batches gives the same answer as one call
    predicted = model.predict(inputs if len(inputs) > 1 else inputs[0], batch_size=2)
    for p, o in zip(as_list(predicted), as_list(outputs)):
        np.testing.assert_allclose(p, o, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", MODEL_CASES, ids=[c["name"] for c in MODEL_CASES])
def test_model_summary_matches_keras(case):
    model = built_model(case)
    assert model.count_params() == case["count_params"]
    rows = [(layer.name, type(layer).__name__, shape, count)
            for layer, shape, count in model._summary_rows()]
    expected = [(name, cls, _format(shape), count) for name, cls, shape, count in case["summary"]]
    assert rows == expected
    lines = []
    model.summary(print_fn=lines.append)
    assert f"Total params: {case['count_params']:,}" in "\n".join(lines)


def _format(shape):
    from fastrnn.models import _format_shape

    return _format_shape([tuple(s) for s in shape] if shape and isinstance(shape[0], list) else tuple(shape))
