"""The reference, and every backend, against outputs of real Keras 3 (tests/data/keras_simple_rnn.npz).

The fixture file is written by tests/data/make_keras_fixtures.py, which needs Keras and TensorFlow;
these tests only read it.
"""

import pytest

import fastrnn
from conftest import assert_close, load_fixture

CASES, ARRAYS = load_fixture("keras_simple_rnn.npz")


def _layer(case):
    name, config = case["name"], case["config"]
    weights = [ARRAYS[f"{name}.kernel"], ARRAYS[f"{name}.recurrent_kernel"]]
    if config["use_bias"]:
        weights.append(ARRAYS[f"{name}.bias"])
    return fastrnn.SimpleRNN(weights=weights, **config)


def test_fixtures_cover_the_semantics():
    names = {case["name"] for case in CASES}
    inputs = {i for case in CASES for i in case["inputs"]}
    activations = {case["config"]["activation"] for case in CASES}
    assert {"mask", "initial_state"} <= inputs
    assert {"tutorial_last", "tutorial_sequences"} <= names
    assert len(activations) == 13
    assert any(case["config"]["go_backwards"] for case in CASES)
    assert any(case["config"]["dtype"] == "float64" for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_matches_keras(case, backend_name):
    name = case["name"]
    layer = _layer(case)
    kwargs = {key: ARRAYS[f"{name}.{key}"] for key in case["inputs"] if key != "x"}
    outputs = layer(ARRAYS[f"{name}.x"], **kwargs)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    expected = [ARRAYS[f"{name}.out{i}"] for i in range(case["outputs"])]
    assert_close(outputs, expected, case["config"]["dtype"])


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_shapes_and_params_match_keras(case):
    layer = _layer(case)
    assert layer.count_params() == case["count_params"]
    batch = case["output_shape"][0]
    timesteps, input_dim = ARRAYS[f"{case['name']}.x"].shape[1:]
    shape = layer.compute_output_shape((batch, timesteps, input_dim))
    first = shape[0] if case["config"]["return_state"] else shape
    assert list(first) == case["output_shape"]


def test_tutorial_examples_as_written():
    x = ARRAYS["tutorial_last.x"]  # (8, 2, 10)
    layer = fastrnn.SimpleRNN(3, input_shape=(2, 10))
    assert layer.count_params() == 42
    assert layer.output_shape == (None, 3)
    assert layer(x).shape == (8, 3)

    layer = fastrnn.SimpleRNN(3, batch_input_shape=(8, 2, 10), return_sequences=True)
    assert layer.count_params() == 42
    assert layer.output_shape == (8, 2, 3)
    assert layer(x).shape == (8, 2, 3)
