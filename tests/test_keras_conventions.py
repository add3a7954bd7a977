"""Keras's calling conventions and constructor arguments, as code ported from Keras uses them.

Each test is a Keras idiom that a Keras model runs as written: the expected results come from
fastrnn itself called in its plainest form (one array, explicit arguments), which the reference
and golden tests pin to Keras.
"""
import pickle

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
    with pytest.raises(TypeError, match="Sequential .* takes one array, not a dict"):
        fr.Sequential([fr.Input((None, 3)), fr.GRU(2)]).predict({"a": xa})


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
    with pytest.raises(ValueError, match="has stateful layers declared for batches of 1, got a batch of 5"):
        model(x)
    with pytest.raises(ValueError, match="predict runs them with batch_size=1, not 5"):
        model.predict(x, batch_size=5)
    with pytest.raises(ValueError, match="stateful layer 'lstm.*' was declared for batches of 1 .* got a batch of 5"):
        model.layers[0](x)
    two = fr.Sequential([fr.Input(batch_shape=(2, 3, 1)), fr.GRU(3, stateful=True, seed=0)])
    with pytest.raises(ValueError, match="a number of rows divisible by 2, got 5"):
        two.predict(x)
    # Not declared: the first call's batch, as before.
    free = fr.LSTM(4, stateful=True, seed=0)
    free(x)
    with pytest.raises(ValueError, match="carries states for a batch of 5, got a batch of 1"):
        free(x[:1])


# ------------------------------------------------------------------ constructor arguments
TRAINING_ONLY = {"trainable": False, "kernel_regularizer": "l2", "bias_constraint": "non_neg",
                 "activity_regularizer": "l1"}


@pytest.mark.parametrize("make", [
    lambda **kw: fr.SimpleRNN(3, **kw),
    lambda **kw: fr.LSTM(3, recurrent_regularizer="l2", recurrent_constraint=None, use_cudnn=False,
                         implementation=2, **kw),
    lambda **kw: fr.GRU(3, recurrent_regularizer="l2", use_cudnn="auto", **kw),
    lambda **kw: fr.Dense(3, **kw),
], ids=["SimpleRNN", "LSTM", "GRU", "Dense"])
def test_training_only_arguments_are_accepted_and_change_nothing(make):
    x = rng_inputs(2, 4, 5)
    np.testing.assert_array_equal(make(seed=3, **TRAINING_ONLY)(x), make(seed=3)(x))


def test_every_layer_takes_trainable_and_names_itself_in_errors():
    for layer in (fr.Embedding(4, 2, trainable=False), fr.Masking(trainable=False), fr.Dropout(0.5, trainable=False),
                  fr.Activation("tanh", trainable=False), fr.Add(trainable=False), fr.Concatenate(trainable=False),
                  fr.TimeDistributed(fr.Dense(2), trainable=False), fr.Bidirectional(fr.GRU(2), trainable=False),
                  fr.Reshape((4,), trainable=False), fr.RepeatVector(2, trainable=False)):
        assert layer.trainable is False
    with pytest.raises(TypeError, match=r"^LSTM \(layer 'typo'\) got an unexpected keyword argument 'kernel_initialiser'"):
        fr.LSTM(3, name="typo", kernel_initialiser="zeros")
    with pytest.raises(TypeError, match="Dense .* unexpected keyword argument 'recurrent_regularizer'"):
        fr.Dense(3, recurrent_regularizer="l2")     # Keras's Dense has none either


@pytest.mark.parametrize("cls", [fr.SimpleRNN, fr.LSTM, fr.GRU])
def test_initializers_by_name_and_callable(cls):
    layer = cls(3, kernel_initializer="ones", recurrent_initializer="identity", bias_initializer="Zeros",
                input_shape=(None, 2))
    kernel, recurrent_kernel, bias = layer.get_weights()[:3]
    gates = kernel.shape[1] // 3
    np.testing.assert_array_equal(kernel, np.ones((2, 3 * gates)))
    np.testing.assert_array_equal(recurrent_kernel, np.eye(3, 3 * gates))
    expected_bias = np.zeros(bias.shape)
    if cls is fr.LSTM:
        expected_bias[3:6] = 1      # unit_forget_bias, on top of the bias initializer as in Keras
    np.testing.assert_array_equal(bias, expected_bias)
    given = cls(3, kernel_initializer=lambda shape, dtype=None: np.full(shape, 0.5), input_shape=(None, 2))
    np.testing.assert_array_equal(given.get_weights()[0], np.full((2, 3 * gates), 0.5))
    with pytest.raises(ValueError, match=r"kernel_initializer of layer 'odd' made an array of shape \(1,\)"):
        cls(3, name="odd", kernel_initializer=lambda shape, dtype=None: np.zeros(1), input_shape=(None, 2))
    with pytest.raises(ValueError, match="recurrent_initializer of layer .*: unknown initializer 'glorot'"):
        cls(3, recurrent_initializer="glorot")
    # Keras 3's other class names (early Keras 3 configs say OrthogonalInitializer)
    for name, other in (("OrthogonalInitializer", "orthogonal"), ("IdentityInitializer", "identity")):
        np.testing.assert_array_equal(cls(3, recurrent_initializer=name, seed=1, input_shape=(None, 2)).get_weights()[1],
                                      cls(3, recurrent_initializer=other, seed=1, input_shape=(None, 2)).get_weights()[1])


@pytest.mark.parametrize("name", ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                                  "lecun_normal", "orthogonal", "random_uniform", "random_normal", "truncated_normal"])
def test_random_initializers_have_keras_scale(name):
    # Keras's variance scaling: glorot 1 / fan_avg, he 2 / fan_in, lecun 1 / fan_in; the
    # fixed ones 0.05 (stddev, or uniform limit); orthogonal 1 / rows (for rows >= columns).
    fan_in, fan_out = 400, 300
    variance = {"glorot": 2 / (fan_in + fan_out), "he": 2 / fan_in, "lecun": 1 / fan_in}.get(
        name.split("_")[0], {"orthogonal": 1 / fan_in, "random_uniform": 0.05 ** 2 / 3,
                             "truncated_normal": (0.05 * 0.8796) ** 2}.get(name, 0.05 ** 2))
    w = fr.Dense(fan_out, kernel_initializer=name, input_dim=fan_in, seed=0).get_weights()[0]
    assert abs(w.var() / variance - 1) < 0.05 and abs(w.mean()) < 0.01 * np.sqrt(variance) * 10
    if name.endswith("_normal") and name != "random_normal":
        assert np.abs(w).max() <= 2 * np.sqrt(w.var()) / 0.8796 * 1.001   # truncated at two stddevs


def test_embedding_initializer():
    np.testing.assert_array_equal(fr.Embedding(4, 2, embeddings_initializer="ones", input_length=3).embeddings,
                                  np.ones((4, 2)))


def test_wrappers_take_a_dtype_that_agrees():
    assert fr.Bidirectional(fr.LSTM(2), dtype="float32").dtype == np.float32
    with pytest.raises(ValueError, match=r"TimeDistributed of layer 'd' \(float32\) cannot compute in float64"):
        fr.TimeDistributed(fr.Dense(2, name="d"), dtype="float64")


# ------------------------------------------------------------------ InputLayer and nesting
@pytest.mark.parametrize("make", [
    lambda: fr.InputLayer((5, 3)),
    lambda: fr.InputLayer(shape=(5, 3)),
    lambda: fr.InputLayer(input_shape=(5, 3)),
    lambda: fr.InputLayer(batch_shape=(None, 5, 3)),
    lambda: fr.InputLayer(batch_input_shape=(None, 5, 3)),
])
def test_sequential_led_by_an_input_layer(make):
    model = fr.Sequential([make(), fr.GRU(4, seed=0)])
    assert model.input_shape == (None, 5, 3) and model.output_shape == (None, 4)
    x = rng_inputs(2, 5, 3)
    np.testing.assert_array_equal(model(x), fr.Sequential([fr.Input((5, 3)), model.layers[0]])(x))


def test_input_layer_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        fr.InputLayer((3,), sparse=True)
    with pytest.raises(ValueError, match="needs shape="):
        fr.InputLayer()


def test_models_nest():
    encoder = fr.Sequential([fr.Input((None, 3)), fr.LSTM(8, seed=0)])
    head = fr.Dense(1, seed=1)
    x = rng_inputs(4, 6, 3)
    expected = head(encoder(x))
    np.testing.assert_array_equal(fr.Sequential([encoder, head])(x), expected)
    inp = fr.Input((None, 3))
    np.testing.assert_array_equal(fr.Model(inp, head(encoder(inp)))(x), expected)
    functional = fr.Model(inp, head(encoder(inp)))
    outer_in = fr.Input((None, 3))
    outer = fr.Model(outer_in, fr.Activation("tanh")(functional(outer_in)))
    np.testing.assert_allclose(outer(x), np.tanh(expected), rtol=1e-6)
    with pytest.raises(ValueError, match="takes fastrnn.Input tensors of shapes .*got <Symbolic shape=\\(None, None, 2\\)"):
        functional(fr.Input((None, 2)))


# ------------------------------------------------------------------ model and layer attributes
def test_feature_extraction_through_input_and_output():
    # Keras's idiom: a model from one model's input to an inner layer's output.
    for functional in (False, True):
        encoder = fr.LSTM(8, return_sequences=True, name="encoder", seed=0)
        if functional:
            inp = fr.Input((None, 3))
            model = fr.Model(inp, fr.Dense(1, seed=1)(fr.GRU(4, seed=2)(encoder(inp))))
        else:
            model = fr.Sequential([fr.Input((None, 3)), encoder, fr.GRU(4, seed=2), fr.Dense(1, seed=1)])
        features = fr.Model(model.input, model.get_layer("encoder").output)
        x = rng_inputs(2, 5, 3)
        np.testing.assert_array_equal(features(x), encoder(x))
        assert model.inputs[0] is model.input and encoder.input is model.input
        assert model.output.shape == (None, 1)
    shared_twice = fr.Dense(2)
    a, b = fr.Input((3,)), fr.Input((3,))
    first, _ = shared_twice(a), shared_twice(b)
    assert shared_twice.output is first and shared_twice.input is a     # the first call's, as in Keras
    with pytest.raises(AttributeError, match="has not been called on fastrnn.Input tensors, nor is it in a built"):
        fr.Dense(2).input
    # A Sequential is a graph once built: its layers have outputs before its own input is asked for.
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True, seed=0), fr.GRU(2, seed=1)])
    inner = [layer.output for layer in model.layers]
    assert [t.shape for t in inner] == [(None, None, 4), (None, 2)]
    np.testing.assert_array_equal(fr.Model(model.input, inner[0])(rng_inputs(2, 5, 3)),
                                  model.layers[0](rng_inputs(2, 5, 3)))


def test_sequential_graph_follows_its_layers():
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, seed=0), fr.Dense(2, seed=1)])
    assert model.output.shape == (None, 2)
    head = model.pop()
    assert head.name.startswith("dense") and model.output_shape == (None, 4) and model.output.shape == (None, 4)
    assert len(head._inbound_nodes) == 0 and len(model.layers[0]._inbound_nodes) == 1   # one graph's node each
    model.add(fr.Dense(5))
    assert model.output.shape == (None, 5) and len(model.layers[0]._inbound_nodes) == 1
    with pytest.raises(AttributeError, match="is not built"):
        fr.Sequential([fr.LSTM(2)]).input
    with pytest.raises(IndexError, match="no layers to pop"):
        fr.Sequential().pop()


def test_model_weights_and_methods_keras_code_uses():
    frozen = fr.Embedding(10, 3, trainable=False, seed=0)
    model = fr.Sequential([fr.Input((None,), dtype="int32"), frozen, fr.GRU(4, seed=1)], trainable=True)
    assert [w.shape for w in model.weights] == [w.shape for w in model.get_weights()]
    assert len(model.non_trainable_weights) == 1 and len(model.trainable_weights) == 3
    assert model.get_layer(index=1) is model.layers[1] and model.get_layer(index=-1) is model.layers[-1]
    with pytest.raises(ValueError, match="has 2 layers, no index 2"):
        model.get_layer(index=2)
    with pytest.raises(ValueError, match="a name or an index, one of them"):
        model.get_layer()
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(model.predict_on_batch(tokens), model(tokens))
    lines = []
    model.summary(line_length=80, expand_nested=True, show_trainable=True, print_fn=lines.append)
    assert any("gru" in line for line in lines)
    stateful = fr.Sequential([fr.LSTM(2, batch_input_shape=(1, 3, 1), stateful=True, seed=0)])
    x = rng_inputs(1, 3, 1)
    first = stateful(x)
    stateful.reset_state()
    np.testing.assert_array_equal(stateful(x), first)
    stateful.layers[0].reset_state()
    np.testing.assert_array_equal(stateful(x), first)


@pytest.mark.parametrize("make", [
    lambda: fr.Bidirectional(fr.LSTM(4, return_sequences=True), merge_mode="sum"),
    lambda: fr.Bidirectional(fr.GRU(3), backward_layer=fr.SimpleRNN(2, go_backwards=True)),
    lambda: fr.TimeDistributed(fr.Dense(2, activation="relu6")),
    lambda: fr.LSTM(3, kernel_initializer="zeros", trainable=False),
])
def test_from_config_round_trip(make):
    layer = make()
    again = type(layer).from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    x = rng_inputs(2, 5, 3)
    again.build(x.shape), layer.build(x.shape)
    again.set_weights(layer.get_weights())
    np.testing.assert_array_equal(again(x), layer(x))


def test_keras_3_layer_activations_in_dense_and_activation():
    x = np.linspace(-4, 4, 81).astype(np.float32)
    softplus = np.log1p(np.exp(x))
    expected = {
        "relu6": np.clip(x, 0, 6), "leaky_relu": np.where(x >= 0, x, 0.2 * x), "mish": x * np.tanh(softplus),
        "log_sigmoid": -np.log1p(np.exp(-x)), "hard_silu": x * np.clip(x + 3, 0, 6) / 6,
        "hard_tanh": np.clip(x, -1, 1), "celu": np.where(x > 0, x, np.expm1(x)),
        "soft_shrink": np.sign(x) * np.maximum(np.abs(x) - 0.5, 0), "hard_shrink": np.where(np.abs(x) > 0.5, x, 0),
        "tanh_shrink": x - np.tanh(x), "squareplus": (x + np.sqrt(x * x + 4)) / 2,
        "sparse_plus": np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    }
    for name, values in expected.items():
        result = fr.Activation(name)(x)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, values, rtol=1e-6, atol=1e-6, err_msg=name)
    dense = fr.Dense(3, activation="mish", seed=0)
    plain = fr.Dense(3, seed=0)
    np.testing.assert_allclose(dense(x.reshape(-1, 1)), expected["mish"][:0].sum() + fr.Activation("mish")(plain(x.reshape(-1, 1))),
                               rtol=1e-6)
    with pytest.raises(ValueError, match=r"relu6 is for Dense and Activation layers, not inside a recurrent cell"):
        fr.LSTM(2, activation="relu6")


def test_functional_merge_helpers_and_embedding_matrix():
    a, b = fr.Input((4,), name="a"), fr.Input((4,), name="b")
    x, y = rng_inputs(3, 4), rng_inputs(3, 4, seed=1)
    cases = {fr.add: x + y, fr.subtract: x - y, fr.multiply: x * y, fr.average: (x + y) / 2,
             fr.maximum: np.maximum(x, y), fr.minimum: np.minimum(x, y)}
    for merge, expected in cases.items():
        np.testing.assert_allclose(fr.Model([a, b], merge([a, b]))([x, y]), expected, rtol=1e-6)
        np.testing.assert_allclose(merge([x, y]), expected, rtol=1e-6)
    np.testing.assert_array_equal(fr.Model([a, b], fr.concatenate([a, b], axis=-1))([x, y]), np.concatenate([x, y], -1))
    matrix = rng_inputs(10, 3)
    np.testing.assert_array_equal(fr.Embedding(10, 3, weights=matrix).embeddings, matrix)   # Keras 3 takes it bare


def test_declared_stateful_batch_survives_saving_and_loading(tmp_path):
    model = fr.Sequential([fr.LSTM(4, batch_input_shape=(2, 3, 2), stateful=True, seed=0), fr.Dense(1, seed=1)])
    x = rng_inputs(6, 3, 2)
    expected = model.predict(x)                  # in batches of 2, chained
    model.save(tmp_path / "stateful.npz")
    for loaded in (fr.load(tmp_path / "stateful.npz"), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(loaded.predict(x), expected)
        with pytest.raises(ValueError, match="declared for batches of 2, got a batch of 6"):
            loaded(x)


def test_a_keras_file_stateful_model_runs_in_its_declared_batches():
    from pathlib import Path

    model = fr.load(Path(__file__).parent / "data" / "files" / "stateful_lstm.keras")
    batch = model.input_shape[0]
    x = rng_inputs(3 * batch, *model.input_shape[1:])
    chained = model.predict(x, batch_size=batch)
    model.reset_states()
    np.testing.assert_array_equal(model.predict(x), chained)


def test_ragged_lists_of_one_sequence():
    # Unbuilt Sequential: (T, F) sequences are ragged, a (B, T, F) batch is an input list.
    model = fr.Sequential([fr.LSTM(4, seed=0)])
    seq7, seq5 = rng_inputs(7, 3), rng_inputs(5, 3, seed=1)
    np.testing.assert_allclose(model.predict([seq7]), model(seq7[None]), atol=1e-6)
    fresh = fr.Sequential([fr.LSTM(4, seed=0)])
    both = fresh.predict([seq7, seq5])           # built for any length, not the first group's
    np.testing.assert_allclose(both[1], fresh(seq5[None])[0], atol=1e-6)
    # Univariate: a 1-D sequence may leave out its feature axis of 1, as a batch may.
    uni = fr.Sequential([fr.Input((None, 1)), fr.GRU(3, seed=0)])
    s = rng_inputs(7)
    np.testing.assert_allclose(uni.predict([s]), uni(s[None, :, None]), atol=1e-6)


def test_input_layer_config_and_keras_arguments():
    layer = fr.InputLayer(shape=(3,), batch_size=2, dtype="int32", ragged=False, name="tokens")
    again = fr.InputLayer.from_config(layer.get_config())
    assert (again.batch_shape, again.input_dtype, again.name) == ((2, 3), np.dtype("int32"), "tokens")
    assert fr.Input((2,), dtype=None).dtype == np.float32            # Keras's default
    with pytest.raises(ValueError, match="takes batch_shape= or shape= .*not both"):
        fr.Input((2,), batch_shape=(None, 2))
    with pytest.raises(ValueError, match="ragged=True is not supported"):
        fr.Input((2,), ragged=True)


def test_inputs_by_name_follow_keras_order_and_keys():
    # Keras flattens a dict of inputs in the order of its keys, and matches given arrays by key.
    first, second = fr.Input((None, 3), name="feature_1"), fr.Input((None, 2), name="feature_2")
    model = fr.Model({"z": first, "a": second},
                     fr.Concatenate()([fr.GRU(2, seed=0)(first), fr.GRU(2, seed=1)(second)]))
    x1, x2 = rng_inputs(4, 5, 3), rng_inputs(4, 5, 2, seed=1)
    assert model.inputs == [second, first] and model.input == {"a": second, "z": first}
    expected = model({"z": x1, "a": x2})
    np.testing.assert_array_equal(model([x2, x1]), expected)
    np.testing.assert_array_equal(model.predict({"z": x1, "a": x2}), expected)


def test_single_input_mask_as_a_list():
    inp = fr.Input((None, 3))
    lstm = fr.LSTM(4, seed=0)
    model = fr.Model(inp, lstm(inp))
    x = rng_inputs(2, 4, 3)
    mask = [[True, True, False, False], [True, True, True, True]]    # a nested list is one mask
    np.testing.assert_array_equal(model(x, mask=mask), lstm(x, mask=np.array(mask)))


def test_trainable_false_in_weights_and_summary():
    model = fr.Sequential([fr.Input((None,), dtype="int32"), fr.Embedding(10, 3, trainable=False), fr.GRU(4)])
    lines = []
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 30 (120.00 B)" in lines and "Trainable params: 108 (432.00 B)" in lines
    frozen = fr.Sequential([fr.Input((None, 2)), fr.GRU(4)], trainable=False)
    assert frozen.trainable_weights == [] and len(frozen.non_trainable_weights) == 3


def test_empty_predict_on_a_stateful_model_leaves_its_states():
    model = fr.Sequential([fr.LSTM(3, batch_input_shape=(2, 4, 1), stateful=True, seed=0)])
    x = rng_inputs(2, 4, 1)
    model(x)
    empty = model.predict(np.zeros((0, 4, 1), np.float32))
    assert empty.shape == (0, 3)
    after_empty = model(x)
    model.reset_states()
    model(x)
    np.testing.assert_array_equal(model(x), after_empty)     # the empty predict moved nothing


def test_keras_2_shape_arguments_of_recurrent_layers():
    assert fr.LSTM(4, input_dim=3, input_length=5).batch_input_shape == (None, 5, 3)
    assert fr.GRU(4, input_dim=3).batch_input_shape == (None, None, 3)
    assert fr.LSTM(4, batch_size=1, input_shape=(3, 1), stateful=True).batch_input_shape == (1, 3, 1)


# ------------------------------------------------------------------ where these meet the rest
def test_nested_stateful_batch_and_dict_keys_and_trainable_survive_saving(tmp_path):
    inner = fr.Sequential([fr.Input(batch_shape=(2, None, 3)), fr.GRU(4, stateful=True, seed=0)])
    outer = fr.Sequential([fr.Input((None, 3)), fr.Dense(3, seed=1, trainable=False), inner])
    x = rng_inputs(6, 5, 3)
    expected = outer.predict(x)
    outer.save(tmp_path / "nested.npz")
    loaded = fr.load(tmp_path / "nested.npz")
    np.testing.assert_array_equal(loaded.predict(x), expected)
    assert len(loaded.trainable_weights) == 3 and len(loaded.non_trainable_weights) == 2
    a, b = fr.Input((None, 3), name="a_in"), fr.Input((None, 2), name="b_in")
    by_key = fr.Model({"second": a, "first": b}, fr.Concatenate()([fr.GRU(2, seed=0)(a), fr.GRU(2, seed=1)(b)]))
    by_key.save(tmp_path / "keys.npz")
    again = fr.load(tmp_path / "keys.npz")
    xa, xb = rng_inputs(2, 4, 3), rng_inputs(2, 4, 2, seed=1)
    assert list(again.input) == ["first", "second"]
    np.testing.assert_array_equal(again({"second": xa, "first": xb}), by_key({"second": xa, "first": xb}))


def test_layer_names_are_unique_in_a_model():
    with pytest.raises(ValueError, match="already has a layer called 'enc': layer names must be unique"):
        fr.Sequential([fr.LSTM(2, name="enc", return_sequences=True), fr.LSTM(2, name="enc")])
    inp = fr.Input((None, 3))
    with pytest.raises(ValueError, match=r"several layers called \['enc'\]"):
        fr.Model(inp, fr.GRU(2, name="enc")(fr.GRU(3, name="enc", return_sequences=True)(inp)))


def test_a_frozen_model_freezes_its_layers():
    inner = fr.Sequential([fr.Input((None, 3)), fr.GRU(4)], trainable=False)
    outer = fr.Sequential([inner, fr.Dense(1)])
    assert len(outer.trainable_weights) == 2 and len(outer.non_trainable_weights) == 3


def test_first_calls_from_many_threads_make_one_graph():
    import threading

    model = fr.Sequential([fr.LSTM(4, return_sequences=True, seed=0), fr.GRU(2, seed=1)])
    x, barrier = rng_inputs(3, 5, 2), threading.Barrier(8)
    results = [None] * 8

    def first_call(i):
        barrier.wait()
        results[i] = model(x)

    threads = [threading.Thread(target=first_call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, results[0]) for r in results)
    assert [len(layer._inbound_nodes) for layer in model.layers] == [1, 1]
    np.testing.assert_array_equal(fr.Model(model.input, model.layers[0].output)(x), model.layers[0](x))


def test_streams_of_univariate_and_stateful_models():
    model = fr.Sequential([fr.Input((None, 1)), fr.LSTM(3, return_sequences=True, seed=0)])
    x = rng_inputs(2, 6)                              # (batch, timesteps): the feature axis left out
    stream = model.stream(2)
    np.testing.assert_array_equal(np.stack([stream.step(x[:, t]) for t in range(6)], axis=1), model(x))
    stream.reset()
    np.testing.assert_array_equal(stream(x), model(x))
    stateful = fr.Sequential([fr.LSTM(3, batch_input_shape=(2, None, 1), stateful=True)])
    with pytest.raises(ValueError, match="declared for batches of 2: a stream of it takes batch_size=2, not 1"):
        stateful.stream(1)


def test_a_univariate_batch_in_a_list():
    model = fr.Sequential([fr.Input((None, 1)), fr.GRU(3, seed=0)])
    x = rng_inputs(4, 7)                              # (rows, timesteps): its last axis cannot be features
    np.testing.assert_array_equal(model.predict([x]), model.predict(x))


def test_functional_layers_and_weights_in_keras_order():
    # Keras 3.15 orders this model's layers (and get_weights) by depth from the outputs:
    # ['a', 'b', 'enc_a1', 'enc_b1', 'enc_a2', 'enc_b2', 'subtract'], not branch by branch.
    a, b = fr.Input((None, 3), name="a"), fr.Input((None, 3), name="b")
    a2 = fr.LSTM(2, name="enc_a2", seed=2)(fr.LSTM(2, return_sequences=True, name="enc_a1", seed=1)(a))
    b2 = fr.LSTM(2, name="enc_b2", seed=4)(fr.LSTM(2, return_sequences=True, name="enc_b1", seed=3)(b))
    model = fr.Model([a, b], fr.Subtract(name="subtract")([a2, b2]))
    assert [layer.name for layer in model.layers] == ["a", "b", "enc_a1", "enc_b1", "enc_a2", "enc_b2", "subtract"]
    weights = model.get_weights()
    np.testing.assert_array_equal(weights[3], model.get_layer("enc_b1").get_weights()[0])
    assert model.get_layer(index=3).name == "enc_b1"


def test_predict_refuses_an_out_that_cannot_hold_the_outputs():
    model = fr.Sequential([fr.Input((4, 3)), fr.GRU(3, return_sequences=True, seed=0)])
    x = rng_inputs(10, 4, 3)
    for bad in (np.zeros((10, 4, 3), np.int32), np.zeros((10, 3), np.float32), np.zeros((10, 4, 3), np.float16)):
        with pytest.raises(ValueError, match=r"out= array 0 of model .* must have shape \(10, 4, 3\) and a dtype "
                                             "that holds float32 exactly"):
            model.predict(x, out=bad)
        assert not bad.any()                                    # refused before anything was written
    wider = np.zeros((10, 4, 3), np.float64)
    np.testing.assert_array_equal(model.predict(x, out=wider), model(x))


def test_save_refuses_another_frameworks_file_name(tmp_path):
    model = fr.Sequential([fr.Input((4, 3)), fr.GRU(3)])
    for name in ("m.keras", "m.h5", "m.pt"):
        with pytest.raises(ValueError, match="writes fastrnn's own format, not .*name the file .npz"):
            model.save(tmp_path / name)
        assert not (tmp_path / name).exists()


def test_a_refused_save_leaves_the_file_there_as_it_was(tmp_path):
    path = tmp_path / "model.npz"
    fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, seed=0)]).save(path)
    saved = path.read_bytes()
    with pytest.raises(ValueError, match="is not built"):
        fr.Sequential([fr.LSTM(4)]).save(path)
    assert path.read_bytes() == saved


def test_clear_errors_for_ragged_and_stream_mistakes():
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(2, seed=0)])
    with pytest.raises(ValueError, match=r"sequence 1 has steps of shape \(2,\), sequence 0 of shape \(3,\)"):
        model.predict([rng_inputs(5, 3), rng_inputs(4, 2)])
    with pytest.raises(ValueError, match=r"takes one input; got a list of 2 arrays of shape \(2, 5, 3\)"):
        model.predict([rng_inputs(2, 5, 3), rng_inputs(2, 5, 3)])
    with pytest.raises(ValueError, match=r"takes steps of shape \(1, 3\), got \(1, 1, 3\)"):
        model.stream(1).step(rng_inputs(1, 1, 3))


def test_a_keras_layer_config_builds_the_layer():
    # What keras.layers.SimpleRNN(3).get_config() returns in Keras 3.15.
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}

    def initializer(name, **config):
        return {"module": "keras.initializers", "class_name": name, "config": {"seed": None, **config},
                "registered_name": None}

    config = {"name": "simple_rnn", "trainable": True, "dtype": policy, "return_sequences": False,
              "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
              "zero_output_for_mask": False, "units": 3, "activation": "tanh", "use_bias": True,
              "kernel_initializer": initializer("GlorotUniform"), "recurrent_initializer": initializer("Orthogonal", gain=1.0),
              "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {},
                                   "registered_name": None},
              "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
              "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
              "bias_constraint": None, "dropout": 0.0, "recurrent_dropout": 0.0, "seed": None}
    layer = fr.SimpleRNN.from_config(config)
    assert (layer.units, layer.dtype, layer.get_config()["recurrent_initializer"]) == (3, np.float32, "Orthogonal")
    config["kernel_initializer"] = initializer("Constant", value=2.0)
    with pytest.raises(ValueError, match=r"Constant with settings \{'value': 2.0\} is not supported"):
        fr.SimpleRNN.from_config(config)


def test_a_nested_model_in_a_keras_file_is_named():
    from fastrnn.errors import ModelFileError
    from fastrnn.io.keras import layer_from_config

    with pytest.raises(ModelFileError, match="layer 'encoder' is a whole Sequential model nested in this one"):
        layer_from_config({"class_name": "Sequential", "config": {"name": "encoder", "layers": []}}, "m.keras",
                          False, False)


def test_model_config_round_trip():
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True, seed=0), fr.GRU(2, seed=1),
                           fr.Dense(1, activation="mish")])
    again = fr.Sequential.from_config(model.get_config())
    assert [type(l).__name__ for l in again.layers] == ["LSTM", "GRU", "Dense"] and again.input_shape == (None, None, 3)
    again.set_weights(model.get_weights())
    x = rng_inputs(2, 5, 3)
    np.testing.assert_array_equal(again(x), model(x))
    a, b = fr.Input((None, 3), name="a"), fr.Input((None, 2), name="b")
    functional = fr.Model({"a": a, "b": b}, fr.Concatenate()([fr.GRU(2, seed=0)(a), fr.GRU(2, seed=1)(b)]))
    copy = fr.Model.from_config(functional.get_config())
    copy.set_weights(functional.get_weights())
    xa, xb = rng_inputs(2, 4, 3), rng_inputs(2, 4, 2, seed=1)
    np.testing.assert_array_equal(copy({"a": xa, "b": xb}), functional({"a": xa, "b": xb}))


def _as_tuples(value):
    """A saved config's lists as tuples: a live Keras config holds tuples (shapes, a node's args)."""
    if isinstance(value, dict):
        return {key: _as_tuples(v) for key, v in value.items()}
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    return value


@pytest.mark.parametrize("live", [False, True], ids=["saved", "live"])
@pytest.mark.parametrize("name", ["k3_embedding_gru.keras", "k3_encoder_decoder.keras", "k3_bidi_concat.keras"])
def test_a_keras_models_config_builds_the_model(name, live):
    import json
    import zipfile
    from pathlib import Path

    path = Path(__file__).parent / "data" / "files" / name
    with zipfile.ZipFile(path) as archive:
        keras_config = json.loads(archive.read("config.json"))     # what Keras's model.get_config() gave
    loaded = fr.load(path)
    config = _as_tuples(keras_config["config"]) if live else keras_config["config"]
    built = type(loaded).from_config(config)
    assert [type(l).__name__ for l in built.layers] == [type(l).__name__ for l in loaded.layers]
    built.set_weights(loaded.get_weights())
    shapes = loaded.input_shape if isinstance(loaded.input_shape, list) else [loaded.input_shape]
    x = [np.random.default_rng(0).integers(1, 10, size=(2, 6)) if len(shape) == 2     # token ids
         else rng_inputs(2, *[5 if d is None else d for d in shape[1:]]) for shape in shapes]
    given = x if len(x) > 1 else x[0]
    np.testing.assert_array_equal(built(given), loaded(given))


def test_a_nested_model_is_one_operation_in_keras_order():
    # Keras lists [x, C, inner]: inner and C are both outputs, C met first; so weights C, A, B.
    x = fr.Input((4,), name="x")
    inner = fr.Sequential([fr.Input((4,)), fr.Dense(4, name="A"), fr.Dense(4, name="B")], name="inner")
    model = fr.Model(x, [fr.Dense(4, name="C")(x), inner(x)])
    assert [layer.name for layer in model.layers] == ["x", "C", "A", "B"]


def test_keyword_tensors_count_in_name_order():
    # Keras flattens a call's keyword arguments by name: initial_state before mask, whatever
    # order they were written in (Keras 3.15's order for this model).
    x, v, mk = fr.Input((3, 4), name="x"), fr.Input((4,), name="v"), fr.Input((3,), name="mk")
    h, m = fr.Dense(4, name="h_dense")(v), fr.Dense(3, name="m_dense")(mk)
    model = fr.Model([x, v, mk], fr.LSTM(4, name="lstm")(x, mask=m, initial_state=[h, h]))
    assert [layer.name for layer in model.layers] == ["v", "mk", "x", "h_dense", "m_dense", "lstm"]


def test_a_recurrent_call_given_initial_state_tensors_gets_no_implicit_mask():
    # Keras 3 gives a call its inputs' mask only when they are its one tensor argument
    # (Layer.__call__); the output's mask still derives from the inputs'. mask= applies.
    encoder_in, decoder_in = fr.Input((None, 3)), fr.Input((None, 3))
    _, h = fr.GRU(4, return_state=True, seed=0)(encoder_in)
    masked = fr.Masking(0.0)(decoder_in)
    decoder, after = fr.GRU(4, return_sequences=True, seed=1), fr.SimpleRNN(2, return_sequences=True, seed=2)
    decoded = decoder(masked, initial_state=[h])
    model = fr.Model([encoder_in, decoder_in], [decoded, after(decoded)])
    encoder, x = rng_inputs(3, 5, 3), rng_inputs(3, 4, 3, seed=1)
    x[1, 2:] = 0.0
    mask = np.any(x != 0, axis=-1)
    got_decoded, got_after = model([encoder, x])
    state = fr.Model(encoder_in, h)(encoder)
    np.testing.assert_array_equal(got_decoded, decoder(x, initial_state=[state]))
    np.testing.assert_array_equal(got_after, after(got_decoded, mask=mask))
    # mask= given: applied, and the outputs' mask derives from it (Keras 3.15 and tf_keras 2.21)
    mask_in = fr.Input((None,), dtype="bool")
    decoded = decoder(masked, initial_state=[h], mask=mask_in)
    explicit = fr.Model([encoder_in, decoder_in, mask_in], [decoded, after(decoded)])
    other = np.ones_like(mask)
    other[0, 1:] = False
    got_decoded, got_after = explicit([encoder, x, other])
    np.testing.assert_array_equal(got_decoded, decoder(x, initial_state=[state], mask=other))
    np.testing.assert_array_equal(got_after, after(got_decoded, mask=other))
    assert np.abs(got_after - after(got_decoded, mask=mask)).max() > 1e-3


def test_a_nested_keras2_model_keeps_its_masks():
    from pathlib import Path

    keras2 = fr.load(Path(__file__).parent / "data" / "files" / "k2_masked_decoder.h5")   # masks its decoder
    encoder_in, decoder_in = fr.Input((5, 3)), fr.Input((None, 3))
    outer = fr.Model([encoder_in, decoder_in], keras2([encoder_in, decoder_in]))
    x = [rng_inputs(3, 5, 3), rng_inputs(3, 4, 3, seed=1)]
    x[1][1, :2] = 0.0
    for got, expected in zip(outer(x), keras2(x)):
        np.testing.assert_array_equal(got, expected)


def test_the_same_layer_twice_in_a_sequential(tmp_path):
    dense = fr.Dense(4, seed=0)
    model = fr.Sequential([fr.Input((4,)), dense, dense])
    x = rng_inputs(3, 4)
    model.save(tmp_path / "twice.npz")
    np.testing.assert_array_equal(fr.load(tmp_path / "twice.npz")(x), dense(dense(x)))


def test_setting_trainable_freezes_every_layer():
    model = fr.Sequential([fr.Input((None, 3)), fr.GRU(4), fr.Dense(1)])
    model.trainable = False
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 5
    model.trainable = True
    assert len(model.trainable_weights) == 5


def test_predict_of_no_rows_checks_out_too():
    model = fr.Sequential([fr.Input((4, 3)), fr.GRU(2, seed=0)])
    with pytest.raises(ValueError, match=r"out= array 0 .* must have shape \(0, 2\)"):
        model.predict(rng_inputs(0, 4, 3), out=np.empty((3, 9), np.int8))


def test_stateful_layers_of_different_declared_batches_are_refused():
    with pytest.raises(ValueError, match=r"declared for different batch sizes \[2, 4\]"):
        fr.Sequential([fr.LSTM(3, batch_input_shape=(4, 5, 1), stateful=True, return_sequences=True),
                       fr.GRU(2, batch_input_shape=(2, 5, 3), stateful=True)])


@pytest.mark.parametrize("name", ["k3_bidi_concat.keras", "k3_masking_lstm.keras", "k3_embedding_gru.keras",
                                  "k2_stacked_bidi.h5", "k2_embedding_gru.h5", "k2_gru_reset_before.h5"])
def test_every_layer_config_in_a_keras_file_builds_the_layer(name):
    # A layer's get_config in Keras 3 (DTypePolicy, initializers with input_axes, quantization_config)
    # or Keras 2 (time_major=False) gives the layer through from_config.
    import json
    import zipfile
    from pathlib import Path

    import h5py

    path = Path(__file__).parent / "data" / "files" / name
    if name.endswith(".keras"):
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    else:
        with h5py.File(path, "r") as h5:
            config = json.loads(h5.attrs["model_config"])
    for spec in config["config"]["layers"]:
        layer = getattr(fr, spec["class_name"]).from_config(spec["config"])
        assert layer.name == spec["config"]["name"]


def test_a_shared_layer_whose_later_call_reads_a_later_layer_saves_and_loads():
    # S(D1(S(x))): in Keras's order S comes before D1, so S's second call waits for D1 on load.
    x = fr.Input((4,), name="x")
    shared, d1, d2 = fr.Dense(4, activation="tanh", name="S", seed=0), fr.Dense(4, name="D1", seed=1), \
        fr.Dense(4, name="D2", seed=2)
    model = fr.Model(x, d2(shared(d1(shared(x)))))
    assert [layer.name for layer in model.layers] == ["x", "S", "D1", "D2"]
    y = rng_inputs(3, 4)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model))(y), model(y))
    again = fr.Model.from_config(model.get_config())
    again.set_weights(model.get_weights())
    np.testing.assert_array_equal(again(y), model(y))


def _dense(name, seed):
    return fr.Dense(4, name=name, seed=seed)


def test_nested_models_keep_keras_order_through_saving(tmp_path):
    # Keras (map_graph, a nested model one operation): [x, D, inner (A, B), C, cat].
    i = fr.Input((4,), name="i")
    inner = fr.Model(i, _dense("B", 1)(_dense("A", 0)(i)), name="inner")
    x = fr.Input((4,), name="x")
    model = fr.Model(x, fr.Concatenate(name="cat")([inner(x), _dense("C", 2)(_dense("D", 3)(x))]))
    order = ["x", "D", "A", "B", "C", "cat"]
    assert [layer.name for layer in model.layers] == order
    model.save(tmp_path / "nested.npz")
    y = rng_inputs(2, 4)
    for copy in (fr.load(tmp_path / "nested.npz"), pickle.loads(pickle.dumps(model)),
                 fr.Model.from_config(model.get_config())):
        assert [layer.name for layer in copy.layers] == order
        copy.set_weights(model.get_weights())
        np.testing.assert_array_equal(copy(y), model(y))


def test_a_nested_model_counts_where_its_outputs_are_used_and_with_all_its_layers():
    # Keras 3.15's orders: the call ranks by its deepest-used output; all its layers count,
    # also those behind an output or an input the outer model does not use.
    i = fr.Input((4,), name="i")
    a = _dense("A", 0)(i)
    two = fr.Model(i, [a, _dense("B", 1)(a)], name="two")
    x = fr.Input((4,), name="x")
    first, second = two(x)
    model = fr.Model(x, _dense("E", 2)(fr.Add(name="Fo")([_dense("D", 3)(first), second])))
    assert [layer.name for layer in model.layers] == ["x", "A", "B", "D", "Fo", "E"]
    only_first = fr.Model(x, _dense("P2", 4)(two(x)[0]))
    assert [layer.name for layer in only_first.layers] == ["x", "A", "B", "P2"]


def test_a_missing_layer_is_named_when_loading():
    from fastrnn.errors import ModelFileError
    from fastrnn.io.keras import model_from_config

    def node(name):
        return [{"args": [{"class_name": "__keras_tensor__",
                           "config": {"shape": [None, 4], "dtype": "float32", "keras_history": [name, 0, 0]}}],
                 "kwargs": {}}]

    def dense(name, reads):
        return {"class_name": "Dense", "name": name, "inbound_nodes": node(reads),
                "config": {"name": name, "units": 4, "dtype": "float32"}}

    config = {"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
         "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "x"}},
        dense("c", "b"), dense("b", "a"), dense("a", "typo_x")],
        "input_layers": [["x", 0, 0]], "output_layers": [["c", 0, 0]]}}
    with pytest.raises(ModelFileError, match="output 0 of call 0 of layer 'typo_x', which does not exist"):
        model_from_config(config, "m.keras", native=True)
