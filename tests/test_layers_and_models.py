"""The layers around RNNs and the models: semantics not covered by the Keras goldens, and errors."""
import numpy as np
import pytest

import fastrnn as fr
from fastrnn.io.native import from_bytes, to_bytes


def rng_inputs(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ------------------------------------------------------------------ small layers
def test_dense_on_any_rank_and_softmax():
    dense = fr.Dense(3, activation="softmax", seed=0)
    y = dense(rng_inputs(2, 4, 5))
    assert y.shape == (2, 4, 3)
    np.testing.assert_allclose(y.sum(axis=-1), 1, rtol=1e-6)
    np.testing.assert_allclose(dense(rng_inputs(6, 5)).sum(axis=-1), 1, rtol=1e-6)
    kernel, bias = dense.get_weights()
    x = rng_inputs(7, 5, seed=1)
    logits = x @ kernel + bias
    np.testing.assert_allclose(dense(x), np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), rtol=1e-5)


def test_softmax_is_not_a_recurrent_activation():
    with pytest.raises(ValueError, match="unknown activation 'softmax'"):
        fr.LSTM(3, activation="softmax")


def test_embedding_tokens_and_mask():
    embedding = fr.Embedding(5, 2, mask_zero=True, seed=0)
    tokens = np.array([[1, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(embedding(tokens), embedding.embeddings[tokens])
    np.testing.assert_array_equal(embedding.compute_mask(tokens), tokens != 0)
    np.testing.assert_array_equal(embedding(tokens.astype(float)), embedding(tokens))
    with pytest.raises(ValueError, match=r"vocabulary of 5 tokens \(0..4\), got token ids from 0 to 7"):
        embedding(np.array([[0, 7]]))
    with pytest.raises(ValueError, match="from -1"):
        embedding(np.array([[-1, 2]]))
    with pytest.raises(TypeError, match="integer token ids"):
        embedding(np.array([["a", "b"]]))


def test_embedding_truncates_float_tokens_like_keras():
    # Keras casts float tokens to int32, which truncates toward zero; the mask still reads the
    # floats (so 0.5 is token 0, but not masked), as in Keras.
    embedding = fr.Embedding(5, 2, mask_zero=True, seed=0)
    tokens = np.array([[0.5, 1.9, -0.7, 4.99]], "float32")
    np.testing.assert_array_equal(embedding(tokens), embedding.embeddings[np.array([[0, 1, 0, 4]])])
    np.testing.assert_array_equal(embedding.compute_mask(tokens), [[True, True, True, True]])
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="NaN or infinite"):
            embedding(np.array([[1.0, bad]]))
    with pytest.raises(ValueError, match=r"vocabulary of 5 tokens \(0..4\), got token ids from -1 to 5"):
        embedding(np.array([[-1.5, 5.0]]))
    with pytest.raises(ValueError, match="vocabulary of 5 tokens"):
        embedding(np.array([[1e30]]))      # refused before the cast, which would wrap around


def test_masking_zeroes_and_masks_only_all_equal_steps():
    x = rng_inputs(2, 4, 3)
    x[0, 1] = 0
    x[1, 2, 0] = 0              # one zero feature: not masked
    out = fr.Masking()(x)
    mask = fr.Masking().compute_mask(x)
    np.testing.assert_array_equal(mask, [[True, False, True, True], [True] * 4])
    np.testing.assert_array_equal(out, x)
    x[1, 3] = -1
    np.testing.assert_array_equal(fr.Masking(-1.0).compute_mask(x)[1], [True, True, True, False])


def test_identity_layers_flatten_reshape_repeat():
    x = rng_inputs(2, 3, 4)
    for layer in (fr.Dropout(0.5), fr.SpatialDropout1D(0.3), fr.GaussianNoise(1.0), fr.GaussianDropout(0.2)):
        np.testing.assert_array_equal(layer(x), x)
        assert layer.count_params() == 0
    np.testing.assert_array_equal(fr.Flatten()(x), x.reshape(2, 12))
    np.testing.assert_array_equal(fr.Reshape((4, -1))(x), x.reshape(2, 4, 3))
    np.testing.assert_array_equal(fr.RepeatVector(3)(x[:, 0]), np.stack([x[:, 0]] * 3, axis=1))
    with pytest.raises(ValueError, match=r"cannot reshape inputs of shape \(2, 3, 4\) to \(5, -1\)"):
        fr.Reshape((5, -1))(x)
    with pytest.raises(ValueError, match="one -1"):
        fr.Reshape((-1, -1))


def test_flatten_takes_an_empty_batch_and_refuses_a_scalar():
    # NumPy cannot infer reshape's -1 from an empty batch; Keras's Flatten gives (0, 12)
    assert fr.Flatten()(np.zeros((0, 3, 4), np.float32)).shape == (0, 12)
    model = fr.Sequential([fr.Input((4, 3)), fr.LSTM(3, return_sequences=True), fr.Flatten(), fr.Dense(1)])
    assert model(np.zeros((0, 4, 3), np.float32)).shape == (0, 1)
    with pytest.raises(ValueError, match="'flat' .* needs inputs with a batch axis"):
        fr.Flatten(name="flat")(3.0)


def test_time_distributed_refuses_a_layer_with_several_outputs():
    for call in (lambda td: td(rng_inputs(2, 4, 6, 5)), lambda td: td(fr.Input((4, 6, 5)))):
        with pytest.raises(ValueError, match="'td' .* wraps layers with one output; 'states' has 3"):
            call(fr.TimeDistributed(fr.LSTM(3, return_state=True, name="states"), name="td"))


def test_constructor_errors_name_the_layer():
    for make, message in [(lambda: fr.LSTM(0, name="encoder"), "units of layer 'encoder' must be a positive"),
                          (lambda: fr.LSTM(4, name="dec", proj_size=-1), "proj_size of LSTM 'dec'"),
                          (lambda: fr.Dense(-2, name="head"), "units of layer 'head'"),
                          (lambda: fr.Embedding(0, 8, name="emb"), "input_dim of layer 'emb'"),
                          (lambda: fr.RepeatVector(0, name="rep"), "n of layer 'rep'"),
                          (lambda: fr.SimpleRNN(3, name="rnn", activation="foo"), "unknown activation 'foo' of layer 'rnn'"),
                          (lambda: fr.Activation("foo", name="act"), "unknown activation 'foo' of layer 'act'")]:
        with pytest.raises(ValueError, match=message):
            make()
    with pytest.raises(MemoryError, match=r"layer 'rnn' \(SimpleRNN\): its weights"):   # not NumPy's "too big"
        fr.SimpleRNN(3, name="rnn", input_shape=(None, 2 ** 62))


def test_set_weights_that_is_refused_changes_nothing():
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True, seed=0), fr.GRU(2, seed=1)])
    x = rng_inputs(2, 5, 3)
    before, weights = model(x), model.get_weights()
    new = [w + 1 for w in weights]
    new[-1] = np.zeros((7, 7))          # the GRU's bias, of the wrong shape: refused after the LSTM's
    with pytest.raises(ValueError, match="bias of shape .* for layer 'gru"):
        model.set_weights(new)
    np.testing.assert_array_equal(model(x), before)
    # an unbuilt Bidirectional whose directions disagree stays unbuilt, and takes the right ones
    bidirectional = fr.Bidirectional(fr.LSTM(4, seed=0))
    good = [np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16)] * 2
    with pytest.raises(ValueError, match="disagree on input_dim: 2 and 3"):
        bidirectional.set_weights([np.zeros((2, 16))] + good[1:])
    assert not bidirectional.built
    bidirectional.set_weights(good)
    np.testing.assert_array_equal(bidirectional(x), np.zeros((2, 8)))
    with pytest.raises(ValueError, match="positive input_dim"):     # as build refuses it
        fr.LSTM(2).set_weights([np.zeros((0, 8)), np.zeros((2, 8)), np.zeros(8)])


def test_time_distributed_equals_per_step_application():
    dense = fr.Dense(2, seed=0)
    wrapped = fr.TimeDistributed(dense)
    x = rng_inputs(3, 4, 5)
    y = wrapped(x)
    for t in range(4):
        np.testing.assert_allclose(y[:, t], dense(x[:, t]), rtol=1e-6)
    assert wrapped.count_params() == 12 and len(wrapped.get_weights()) == 2


def test_merges_and_their_masks():
    a, b = rng_inputs(2, 3, 4), rng_inputs(2, 3, 4, seed=1)
    np.testing.assert_allclose(fr.Add()([a, b]), a + b)
    np.testing.assert_allclose(fr.Subtract()([a, b]), a - b)
    np.testing.assert_allclose(fr.Multiply()([a, b]), a * b)
    np.testing.assert_allclose(fr.Average()([a, b]), (a + b) / 2)
    np.testing.assert_allclose(fr.Maximum()([a, b]), np.maximum(a, b))
    np.testing.assert_allclose(fr.Concatenate(axis=1)([a, b]), np.concatenate([a, b], axis=1))
    m1 = np.array([[True, True, False], [True, False, True]])
    m2 = np.array([[True, False, False], [True, True, True]])
    # Keras 3: a step where any input keeps it, none if an input has no mask; Keras 2: where all do
    np.testing.assert_array_equal(fr.Add().compute_mask([a, b], [m1, m2]), m1 | m2)
    assert fr.Add().compute_mask([a, b], [m1, None]) is None
    np.testing.assert_array_equal(fr.Add(keras2_mask=True).compute_mask([a, b], [m1, m2]), m1 & m2)
    np.testing.assert_array_equal(fr.Add(keras2_mask=True).compute_mask([a, b], [m1, None]), m1)
    # Keras 3's Multiply counts a masked value as 1 (0 where all are masked); Maximum and
    # Minimum take the other input's value where one is masked
    both, only_a = np.where(m2[..., None], b, 1), np.where(m1[..., None], a, 1)
    np.testing.assert_allclose(fr.Multiply()([a, b], mask=[m1, m2]),
                               np.where((m1 | m2)[..., None], only_a * both, 0))
    np.testing.assert_allclose(fr.Multiply()([a, b], mask=[m1, None]), only_a * b)
    np.testing.assert_allclose(fr.Multiply(keras2_mask=True)([a, b], mask=[m1, m2]), a * b)
    second = np.where(m2[..., None], b, a)
    first = np.where(m1[..., None], a, second)
    np.testing.assert_allclose(fr.Maximum()([a, b], mask=[m1, m2]), np.maximum(first, second))
    np.testing.assert_allclose(fr.Minimum()([a, b], mask=[m1, None]), np.minimum(np.where(m1[..., None], a, b), b))
    # Keras 3 keeps a step where any joined input keeps it (an unmasked one keeps all), Keras 2 where all do
    np.testing.assert_array_equal(fr.Concatenate().compute_mask([a, b], [m1, None]), np.ones_like(m1))
    np.testing.assert_array_equal(fr.Concatenate().compute_mask([a, b], [m1, m2]), m1 | m2)
    np.testing.assert_array_equal(fr.Concatenate(keras2_mask=True).compute_mask([a, b], [m1, None]), m1)
    np.testing.assert_array_equal(fr.Concatenate(keras2_mask=True).compute_mask([a, b], [m1, m2]), m1 & m2)
    assert fr.Concatenate.from_config(fr.Concatenate(keras2_mask=True).get_config()).keras2_mask
    assert "keras2_mask" not in fr.Concatenate().get_config()
    np.testing.assert_array_equal(fr.Concatenate(axis=1).compute_mask([a, b], [m1, m2]), np.concatenate([m1, m2], 1))
    assert fr.Add().compute_mask([a, b], [None, None]) is None
    with pytest.raises(ValueError, match="needs inputs of one shape"):
        fr.Add()([a, b[:, :2]])
    with pytest.raises(ValueError, match="cannot join shapes"):
        fr.Concatenate()([a, b[:, :2]])


@pytest.mark.parametrize("make, message", [
    # an axis past the rank was taken modulo it: built, then NumPy's AxisError at predict
    (lambda: fr.Concatenate(axis=3), r"cannot join shapes \[\(None, 4\), \(None, 4\)\] on axis 3"),
    (lambda: fr.Concatenate(axis=-3), "on axis -3"),
])
def test_merges_refuse_at_build_what_cannot_run(make, message):
    a, b = fr.Input((None, 3)), fr.Input((None, 2))
    with pytest.raises(ValueError, match=message):
        make()([fr.LSTM(4)(a), fr.GRU(4)(b)])
    x = fr.Input((4,))
    with pytest.raises(ValueError, match=r"'subtract_three' \(Subtract\) takes exactly two inputs, got 3"):
        fr.Subtract(name="subtract_three")([fr.Dense(2)(x), fr.Dense(2)(x), fr.Dense(2)(x)])


def test_bidirectional_arguments_are_checked():
    with pytest.raises(TypeError, match="wraps a SimpleRNN, LSTM or GRU"):
        fr.Bidirectional(fr.Dense(3))
    with pytest.raises(ValueError, match="merge_mode must be one of"):
        fr.Bidirectional(fr.LSTM(3), merge_mode="max")
    with pytest.raises(ValueError, match="must agree on return_sequences"):
        fr.Bidirectional(fr.LSTM(3, return_sequences=True), backward_layer=fr.LSTM(3, go_backwards=True))
    with pytest.raises(ValueError, match="must differ in go_backwards"):
        fr.Bidirectional(fr.LSTM(3), backward_layer=fr.LSTM(3))
    with pytest.raises(ValueError, match="must agree on stateful"):     # as Keras
        fr.Bidirectional(fr.LSTM(3, stateful=True), backward_layer=fr.LSTM(3, go_backwards=True))
    for merge_mode in ("sum", "ave", "mul"):   # element by element: sizes must match, when built too
        with pytest.raises(ValueError, match=f"merge_mode '{merge_mode}' .* have sizes 3 and 5"):
            fr.Bidirectional(fr.GRU(3), backward_layer=fr.GRU(5, go_backwards=True), merge_mode=merge_mode)
        with pytest.raises(ValueError, match="have sizes 3 and 2"):
            fr.Bidirectional(fr.LSTM(3), backward_layer=fr.LSTM(4, proj_size=2, go_backwards=True), merge_mode=merge_mode)
    concatenated = fr.Bidirectional(fr.GRU(3), backward_layer=fr.GRU(5, go_backwards=True))
    assert concatenated(rng_inputs(2, 4, 3)).shape == (2, 8)
    layer = fr.Bidirectional(fr.LSTM(3), input_shape=(None, 2))
    with pytest.raises(ValueError, match="expects 6 weights .forward kernel, recurrent_kernel, bias, then backward"):
        layer.set_weights(layer.get_weights()[:3])
    with pytest.raises(ValueError, match="initial_state as a list of forward then backward"):
        layer(rng_inputs(2, 3, 2), initial_state=[np.zeros((2, 3))])


def test_bidirectional_is_forward_plus_reversed_backward():
    forward = fr.GRU(3, return_sequences=True, seed=0, input_shape=(None, 2))
    backward = fr.GRU(3, return_sequences=True, go_backwards=True, seed=1, input_shape=(None, 2))
    layer = fr.Bidirectional(forward, merge_mode=None, backward_layer=backward)
    x = rng_inputs(2, 5, 2)
    f, b = layer(x)
    np.testing.assert_array_equal(f, forward(x))
    np.testing.assert_array_equal(b, forward.__class__(3, return_sequences=True, weights=backward.get_weights())(x[:, ::-1])[:, ::-1])


# ------------------------------------------------------------------ models
def test_tutorial_examples_as_written():
    lines = []
    fr.Sequential([fr.SimpleRNN(3, input_shape=(2, 10))]).summary(print_fn=lines.append)
    row = next(line for line in lines if "(SimpleRNN)" in line)
    assert "(None, 3)" in row and row.rstrip().endswith("42")
    lines = []
    model = fr.Sequential([fr.SimpleRNN(3, batch_input_shape=(8, 2, 10), return_sequences=True)])
    model.summary(print_fn=lines.append)
    assert "(8, 2, 3)" in next(line for line in lines if "(SimpleRNN)" in line)
    assert model(rng_inputs(8, 2, 10)).shape == (8, 2, 3)


def test_layers_that_do_not_fit_fail_when_the_model_is_built():
    with pytest.raises(ValueError, match=r"layer 'late' \(Dense\) of .* cannot take inputs of shape \(None, 4\): it was built for \(None, 7\)"):
        fr.Sequential([fr.Input((5, 3)), fr.LSTM(4), fr.Dense(2, name="late", input_shape=(7,))])
    with pytest.raises(ValueError, match="needs inputs of shape \\(batch, timesteps, input_dim\\)"):
        fr.Sequential([fr.Input((5, 3)), fr.LSTM(4), fr.GRU(2)])
    with pytest.raises(ValueError, match="returns 3 outputs"):
        fr.Sequential([fr.Input((5, 3)), fr.LSTM(4, return_state=True)])
    x = fr.Input((5, 3))
    with pytest.raises(ValueError, match="expects initial_state of 2 tensor\\(s\\) of shape \\(batch, 4\\)"):
        fr.LSTM(4)(x, initial_state=[fr.LSTM(3, return_state=True)(x)[1]] * 2)
    with pytest.raises(ValueError, match="needs inputs of one shape"):
        fr.Add()([fr.LSTM(4)(x), fr.LSTM(3)(x)])


def test_unbuilt_sequential_checks_shapes_before_computing():
    model = fr.Sequential([fr.LSTM(4, return_sequences=True), fr.Flatten(), fr.Dense(2)])
    assert model(rng_inputs(3, 5, 2)).shape == (3, 2)
    assert model.output_shape == (None, 2)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(None, 5, 2\), got \(3, 6, 2\)"):
        model(rng_inputs(3, 6, 2))


def test_input_that_does_not_match_names_both_shapes():
    model = fr.Sequential([fr.Input((5, 3)), fr.GRU(2)])
    with pytest.raises(ValueError, match=r"expects inputs of shape \(None, 5, 3\), got \(2, 5, 4\)"):
        model(rng_inputs(2, 5, 4))
    x = fr.Input((None, 3), name="tokens")
    functional = fr.Model(x, fr.GRU(2)(x))
    with pytest.raises(ValueError, match=r"input 'tokens' of model .* expects shape \(None, None, 3\), got \(2, 5\)"):
        functional(rng_inputs(2, 5))
    with pytest.raises(ValueError, match="takes 1 inputs, got 2"):
        functional([rng_inputs(2, 5, 3)] * 2)


def test_functional_graph_errors():
    x, other = fr.Input((4, 3)), fr.Input((4, 3))
    y = fr.Add()([fr.LSTM(2)(x), fr.LSTM(2)(other)])
    with pytest.raises(ValueError, match="depends on input .* not among the model's inputs"):
        fr.Model(x, y)
    with pytest.raises(TypeError, match="must come from fastrnn.Input"):
        fr.Model(x, np.zeros(3))
    with pytest.raises(ValueError, match="at least one input and one output, got 1 and 0"):
        fr.Model(x, [])
    # a repeated input would take one of the two arrays given for it and silently drop the other
    with pytest.raises(ValueError, match="is given input .* twice"):
        fr.Model([x, x], fr.LSTM(2)(x))


@pytest.mark.parametrize("shape", [(True, 3), (None, False), (2.0, 3), ("4", 3), (-1, 3), (0, 3), 3])
def test_input_refuses_dimensions_that_are_not_integers(shape):
    with pytest.raises(ValueError, match="shape"):
        fr.Input(shape)


@pytest.mark.parametrize("shape", [(True, 3), (None, False), (2.0, 3), ("4", 3), (-1, 3), (0, 3), 3])
@pytest.mark.parametrize("keyword", ["input_shape", "batch_input_shape"])
def test_layers_refuse_input_shapes_that_are_not_integers(shape, keyword):
    given = shape if keyword == "input_shape" or not isinstance(shape, tuple) else (8, *shape)
    with pytest.raises(ValueError, match=f"{keyword} of layer 'bad' must be a tuple of positive integers"):
        fr.SimpleRNN(3, name="bad", **{keyword: given})
    with pytest.raises(ValueError, match=f"{keyword} of layer 'bad_dense'"):
        fr.Dense(3, name="bad_dense", **{keyword: given})


def test_input_takes_numpy_integer_dimensions():
    assert fr.Input((np.int64(4), None)).shape == (None, 4, None)
    assert fr.Input(batch_shape=(np.int32(2), 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="batch_size"):
        fr.Input((3,), batch_size=True)


def test_call_arguments_a_layer_does_not_take_fail_when_the_graph_is_built():
    x = fr.Input((4, 3))
    h = fr.Input((2,))
    with pytest.raises(TypeError, match=r"layer 'flat' \(Flatten\) does not take initial_state="):
        fr.Flatten(name="flat")(x, initial_state=[h])
    with pytest.raises(TypeError, match="does not take initial_state="):
        fr.Flatten()(rng_inputs(2, 4, 3), initial_state=[np.zeros((2, 2))])
    with pytest.raises(TypeError, match=r"does not take masks=; it takes mask="):
        fr.Dense(2)(x, masks=None)
    with pytest.raises(TypeError, match=r"takes 1 argument after its inputs \(mask\), got 2"):
        fr.Dense(2)(x, None, None)
    with pytest.raises(TypeError, match="initial_state given twice"):
        fr.LSTM(2)(x, [h, h], initial_state=[h, h])


def test_training_is_accepted_and_ignored_by_every_layer_as_in_keras():
    x = fr.Input((4, 3))
    y = fr.Dense(2, seed=0)(fr.Flatten()(x, training=False), training=True)
    model = fr.Model(x, fr.Dropout(0.5)(y, training=True))
    data = rng_inputs(2, 4, 3)
    np.testing.assert_array_equal(model(data), model.layers[-2](model.layers[1](data)))
    np.testing.assert_array_equal(from_bytes(to_bytes(model))(data), model(data))   # nothing to save


def test_explicit_mask_in_a_functional_model_replaces_the_one_flowing_in():
    x, keep = fr.Input((4, 3)), fr.Input((4,), dtype="bool")
    lstm = fr.LSTM(2, seed=0)
    model = fr.Model([x, keep], lstm(x, mask=keep))
    data, mask = rng_inputs(2, 4, 3), np.array([[True, True, False, False], [True] * 4])
    np.testing.assert_array_equal(model([data, mask]), lstm(data, mask=mask))
    saved_and_loaded = from_bytes(to_bytes(model))
    np.testing.assert_array_equal(saved_and_loaded([data, mask]), lstm(data, mask=mask))


def test_shared_layer_and_weights_round_trip():
    x1, x2 = fr.Input((4, 3)), fr.Input((4, 3))
    shared = fr.LSTM(2, seed=0)
    model = fr.Model([x1, x2], fr.Concatenate()([shared(x1), shared(x2)]))
    a, b = rng_inputs(2, 4, 3), rng_inputs(2, 4, 3, seed=1)
    np.testing.assert_array_equal(model([a, b]), np.concatenate([shared(a), shared(b)], -1))
    weights = model.get_weights()
    assert len(weights) == 3 and model.count_params() == shared.count_params()
    model.set_weights([w + 1 for w in weights])
    np.testing.assert_array_equal(shared.get_weights()[0], weights[0] + 1)
    with pytest.raises(ValueError, match="has 3 weight arrays, got 2"):
        model.set_weights(weights[:2])
    with pytest.raises(ValueError, match="has no layer 'nope'"):
        model.get_layer("nope")


def test_predict_batches_and_rows():
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True), fr.Dense(1)])
    x = rng_inputs(10, 6, 3)
    np.testing.assert_allclose(model.predict(x, batch_size=3), model(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.predict(x, batch_size=0)
    x1, x2 = fr.Input((3,)), fr.Input((3,))
    two = fr.Model([x1, x2], [fr.Add()([x1, x2]), fr.Multiply()([x1, x2])])
    with pytest.raises(ValueError, match="one number of rows"):
        two.predict([np.ones((2, 3)), np.ones((3, 3))])
    out = two.predict([np.ones((5, 3)), np.full((5, 3), 2.0)], batch_size=2)
    assert isinstance(out, list) and out[1].shape == (5, 3) and (out[1] == 2).all()


def test_masks_flow_through_sequential():
    # Embedding(mask_zero) then an RNN: padded steps must not change the state.
    model = fr.Sequential([fr.Input((None,), dtype="int32"), fr.Embedding(6, 3, mask_zero=True, seed=0),
                           fr.GRU(4, seed=0)])
    padded = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]])
    unpadded = model(np.array([[1, 2, 3]]))
    np.testing.assert_allclose(model(padded)[0], unpadded[0], rtol=1e-6)
