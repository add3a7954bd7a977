"""Streaming, stateful layers, and large and ragged batch inference."""
import numpy as np
import pytest

import fastrnn
import fastrnn as fr
from conftest import load_fixture

CELLS = {"simple_rnn": fr.SimpleRNN, "lstm": fr.LSTM, "gru": fr.GRU}


def stacked(cell, last_only=False, seed=0):
    layer = CELLS[cell]
    return fr.Sequential([
        fr.Input((None, 3)),
        layer(6, return_sequences=True, seed=seed),
        layer(5, return_sequences=not last_only, seed=seed + 1),
        fr.Dense(2, activation="tanh", seed=seed + 2),
    ])


def inputs(batch=3, timesteps=11, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, timesteps, 3)).astype(np.float32)


# ------------------------------------------------------------------ streaming
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_in_random_chunks_equals_whole_sequence(backend_name, cell, seed):
    model, x = stacked(cell), inputs(seed=seed)
    expected = model(x)
    stream = model.stream(batch_size=3)
    cuts = np.sort(np.random.default_rng(seed).choice(np.arange(1, 11), size=3, replace=False))
    pieces = [stream(chunk) for chunk in np.split(x, cuts, axis=1)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), expected, rtol=0, atol=1e-6)


def test_a_step_of_the_wrong_batch_size_is_named_as_given():
    stream = stacked("gru").stream(2)
    with pytest.raises(ValueError, match=r"batch_size 2 takes steps of shape \(2, 3\), got \(1, 3\)"):
        stream.step(np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"got \(\)"):
        stream.step(np.float32(1))
    assert stream.step(np.ones((2, 3), np.float32)).shape == (2, 2)


def test_stream_steps_through_time_distributed(backend_name):
    """A TimeDistributed layer takes (batch, timesteps, ...): a step hands it one timestep (it
    failed from the second step, after the recurrent states had moved on)."""
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, return_sequences=True, seed=0),
                           fr.TimeDistributed(fr.Dense(2, seed=1)), fr.GRU(3, return_sequences=True, seed=2)])
    x = inputs()
    stream = model.stream(3)
    steps = np.stack([stream.step(x[:, t]) for t in range(x.shape[1])], axis=1)
    np.testing.assert_allclose(steps, model(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_stream_steps_of_a_last_step_model(cell):
    model, x = stacked(cell, last_only=True), inputs()
    stream = model.stream(3)
    for t in range(x.shape[1]):
        output = stream.step(x[:, t])
        np.testing.assert_allclose(output, model(x[:, :t + 1]), rtol=0, atol=1e-6)
    stream.reset()
    np.testing.assert_allclose(stream(x), model(x), rtol=0, atol=1e-6)


def test_stream_state_can_be_read_and_set():
    model, x = stacked("lstm"), inputs()
    stream = model.stream(3)
    stream(x[:, :4])
    saved = stream.states
    assert [len(s) for s in saved] == [2, 2] and saved[0][0].shape == (3, 6)
    after = stream(x[:, 4:])
    stream.states = saved
    np.testing.assert_array_equal(stream(x[:, 4:]), after)
    with pytest.raises(ValueError, match="expected initial_state of shape \\(3, 6\\)"):
        stream.states = [[np.zeros((2, 6))] * 2, saved[1]]


def test_models_that_cannot_stream_say_why():
    with pytest.raises(ValueError, match="layer 'bi' .* because its backward direction starts from the end"):
        fr.Sequential([fr.Input((None, 3)), fr.Bidirectional(fr.GRU(2), name="bi")]).stream()
    with pytest.raises(ValueError, match="because it runs backwards"):
        fr.Sequential([fr.Input((None, 3)), fr.GRU(2, go_backwards=True)]).stream()
    with pytest.raises(ValueError, match="mixes timesteps"):
        fr.Sequential([fr.Input((4, 3)), fr.Flatten(), fr.Dense(1)]).stream()
    with pytest.raises(ValueError, match=r"takes chunks of shape \(2, steps, ...\), got \(3, 11, 3\)"):
        stacked("gru").stream(2)(inputs())


@pytest.mark.parametrize("cell", CELLS)
def test_steps_mixed_with_chunks_and_dtypes(backend_name, cell):
    model, x = stacked(cell), inputs(batch=2)
    stream = model.stream(2)
    outputs = [stream.step(x[:, 0]), stream.step(x[:, 1]), stream.step(x[:, 2].astype(np.float64))]
    outputs += list(np.moveaxis(stream(x[:, 3:6]), 1, 0))
    outputs += [stream.step(x[:, t]) for t in range(6, 11)]
    np.testing.assert_allclose(np.stack(outputs, axis=1), model(x), rtol=0, atol=1e-6)
    kept = outputs[-1].copy()
    stream.step(x[:, 0])
    np.testing.assert_array_equal(outputs[-1], kept)   # a returned step is never overwritten


def test_each_stream_keeps_its_own_state():
    model, x = stacked("gru"), inputs()
    a, b = model.stream(3), model.stream(3)
    a(x[:, :5])
    np.testing.assert_allclose(b(x[:, :5]), model(x[:, :5]), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ stateful Keras layers
STATEFUL, STATEFUL_ARRAYS = load_fixture("files/expected_stateful.npz")
FILES = [(case, f) for case in STATEFUL for f in case["files"]]


@pytest.mark.parametrize("case, filename", FILES, ids=[f for _, f in FILES])
def test_stateful_keras_model_carries_state_until_reset(case, filename):
    from test_load import FILES as FOLDER

    model = fr.load(FOLDER / filename)
    name = case["name"]
    for k in range(3):
        if k == 2:
            model.reset_states()
        np.testing.assert_allclose(model(STATEFUL_ARRAYS[f"{name}.in{k}"]), STATEFUL_ARRAYS[f"{name}.call{k}"],
                                   rtol=0, atol=1e-5)


def test_stateful_layer_round_trips_through_native_format(tmp_path):
    layer = fr.LSTM(3, stateful=True, return_sequences=True, seed=0)
    model = fr.Sequential([fr.Input((4, 2)), layer])
    model.save(tmp_path / "m.npz")
    again = fr.load(tmp_path / "m.npz")
    x = inputs(batch=2, timesteps=4)[..., :2]
    first, second = again(x), again(x)
    assert not np.allclose(first, second)
    continuous = fr.LSTM(3, return_sequences=True, weights=layer.get_weights())
    np.testing.assert_allclose(second, continuous(np.concatenate([x, x], axis=1))[:, 4:], rtol=0, atol=1e-6)


# ------------------------------------------------------------------ large and ragged batches
def test_predict_memmap_larger_than_a_batch_into_a_memmap(tmp_path):
    model = stacked("lstm")
    x = inputs(batch=50, timesteps=6)
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    out = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float32, shape=(50, 6, 2))
    result = model.predict(mapped, batch_size=7, out=out)
    assert result is out
    out.flush()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model(x), rtol=0, atol=1e-6)


def test_predict_into_a_read_only_array_is_refused_first(tmp_path):
    out = np.zeros((5, 11, 2), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out= array 0 of model .* is read-only"):
        stacked("lstm").predict(inputs(batch=5), out=out)


def test_a_refused_out_leaves_stateful_layers_where_they_were():
    def model():
        return fr.Sequential([fr.Input(batch_shape=(2, 4, 3)), fr.LSTM(5, stateful=True, seed=0)])
    x = inputs(batch=4, timesteps=4)
    refused = model()
    with pytest.raises(ValueError, match="must have shape"):
        refused.predict(x, batch_size=2, out=np.empty((4, 9), np.float32))   # checked on the first batch
    np.testing.assert_array_equal(refused.predict(x, batch_size=2), model().predict(x, batch_size=2))


def test_ragged_predict_writes_into_out_or_refuses_it():
    # out= was ignored for ragged lists and lengths=: a memory map stayed uninitialised.
    model = stacked("gru", last_only=True)
    x = inputs(batch=3, timesteps=6)
    out = np.full((3, 2), -7, np.float32)
    assert model.predict(x, lengths=[6, 3, 1], out=out) is out
    np.testing.assert_allclose(out, model.predict(x, lengths=[6, 3, 1]), rtol=0, atol=0)
    np.testing.assert_allclose(out[1], model(x[1:2, :3])[0], rtol=0, atol=1e-6)
    sequences = [x[0], x[1, :2]]
    out = np.full((2, 2), -7, np.float32)
    assert model.predict(sequences, out=out) is out and not (out == -7).any()
    with pytest.raises(ValueError, match=r"must have shape \(2, 2\)"):
        model.predict(sequences, out=np.empty((9, 9), np.float32))
    read_only = np.zeros((2, 2), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="is read-only"):
        model.predict(sequences, out=read_only)
    with pytest.raises(ValueError, match="differ in shape .* as a list"):   # sequence outputs of 6 and 2 steps
        stacked("gru").predict(sequences, out=np.empty((2, 6, 2), np.float32))


def test_ragged_predict_on_a_model_declared_for_its_steps():
    # One rule for every sequence: shorter ones are padded to the declared steps and masked where
    # that is exact. Before, a short sequence passed or failed by the group it fell in.
    model = fr.Sequential([fr.Input((5, 3)), fr.LSTM(2, seed=0)])
    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((n, 3)).astype(np.float32) for n in (4, 4, 3, 5)]
    result = model.predict(sequences)
    for sequence, got in zip(sequences, result):
        padded = np.zeros((1, 5, 3), np.float32)
        padded[0, :len(sequence)] = sequence
        np.testing.assert_allclose(got, model(padded, mask=np.arange(5)[None] < len(sequence))[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sequence 1 has 7 steps; the model is declared for 5"):
        model.predict([sequences[0], np.zeros((7, 3), np.float32)])
    inputs = fr.Input((5, 3))
    functional = fr.Model(inputs, fr.LSTM(2, seed=0)(inputs))   # masks are not known to be exact here
    with pytest.raises(ValueError, match="sequence 0 has 4 steps; .* cannot pad shorter ones exactly"):
        functional.predict(sequences)


def test_predict_empty_input_keeps_output_shape():
    assert stacked("gru").predict(np.zeros((0, 4, 3), np.float32)).shape == (0, 4, 2)


@pytest.mark.parametrize("last_only", [False, True])
def test_ragged_predict_equals_each_sequence_alone(backend_name, last_only):
    model = stacked("gru", last_only=last_only)
    rng = np.random.default_rng(3)
    sequences = [rng.standard_normal((length, 3)).astype(np.float32) for length in [5, 2, 9, 2, 5, 1, 7]]
    result = model.predict(sequences, batch_size=2)
    assert len(result) == len(sequences)
    for sequence, got in zip(sequences, result):
        np.testing.assert_allclose(got, model(sequence[None])[0], rtol=0, atol=1e-6)
    if last_only:
        assert isinstance(result, np.ndarray) and result.shape == (7, 2)


@pytest.mark.parametrize("kind", ["forward", "backwards", "bidirectional", "bidirectional_backwards",
                                  "masking", "zero_output"])  # backwards, zero_output: equal lengths
def test_ragged_groups_of_similar_lengths_run_padded_and_masked(backend_name, kind):
    # Lengths within a quarter of each other share a padded, masked batch: Keras's mask
    # semantics make that equal to each sequence alone, forwards and backwards. A Bidirectional
    # whose forward direction runs backwards returns it reversed: equal lengths only.
    inner = {"forward": fr.LSTM(4, return_sequences=True, seed=0),
             "backwards": fr.GRU(4, return_sequences=True, go_backwards=True, seed=0),
             "bidirectional": fr.Bidirectional(fr.GRU(3, return_sequences=True, seed=0), merge_mode="sum"),
             "bidirectional_backwards": fr.Bidirectional(fr.GRU(3, return_sequences=True, go_backwards=True, seed=0)),
             "masking": fr.Masking(),
             "zero_output": fr.GRU(4, zero_output_for_mask=True, seed=0)}[kind]
    # (That one last, its sequence the output: cut to each length, padded steps came first.)
    rest = ([] if kind == "bidirectional_backwards" else [fr.Dense(2, seed=2)] if kind == "zero_output"
            else [fr.GRU(3, seed=1), fr.Dense(2, seed=2)])
    layers = [fr.Input((None, 3)), inner, *rest]
    model = fr.Sequential(layers)
    rng = np.random.default_rng(5)
    sequences = [rng.standard_normal((length, 3)).astype(np.float32) for length in [20, 24, 22, 25, 21]]
    result = model.predict(sequences)
    for sequence, got in zip(sequences, result):
        np.testing.assert_allclose(got, model(sequence[None])[0], rtol=0, atol=1e-6)


def test_lengths_argument_unpads(backend_name):
    model = stacked("lstm", last_only=True)
    x = inputs(batch=4, timesteps=8)
    lengths = np.array([8, 3, 5, 1])
    result = model.predict(x, lengths=lengths)
    for i, length in enumerate(lengths):
        np.testing.assert_allclose(result[i], model(x[i:i + 1, :length])[0], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="between 1 and the padded length 8"):
        model.predict(x, lengths=[8, 9, 1, 1])


def test_predict_progress_bar(capsys):
    model = stacked("gru")
    model.predict(inputs(batch=5), batch_size=2, verbose=1)
    assert "5" in capsys.readouterr().err


@pytest.mark.parametrize("units", [8, 72])    # 72: the compiled step packs the recurrent kernel
@pytest.mark.parametrize("cell", [fastrnn.SimpleRNN, fastrnn.LSTM, fastrnn.GRU])
def test_stream_step_sees_weights_set_between_steps(cell, units):
    """The prepared step binds the weight arrays; a set_weights between steps must rebind them."""
    model = fastrnn.Sequential([fastrnn.Input((None, 3)), cell(units, seed=0)])
    stream = model.stream()
    x = np.random.default_rng(0).standard_normal((1, 3)).astype(np.float32)
    stream.step(x)
    np.testing.assert_allclose(stream.step(x), model(np.stack([x, x], axis=1)), rtol=0, atol=1e-6)
    layer = model.layers[0]
    layer.set_weights([w * 0.5 for w in layer.get_weights()])
    for _ in range(2):   # the general path, then the step bound to the new weights
        expected = layer(x[:, None], initial_state=stream.states[0])
        np.testing.assert_allclose(stream.step(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", [fastrnn.SimpleRNN, fastrnn.LSTM, fastrnn.GRU])
def test_stream_step_input_the_fast_path_refuses_takes_the_general_path(backend_name, cell):
    """After the fast path is bound: another dtype (or byte order), a non-contiguous or a list
    input is converted; a wrong shape is a ValueError that leaves the states as they were. (A
    big-endian step was read by the compiled step as if native: a silently wrong output.)"""
    model = fastrnn.Sequential([fastrnn.Input((None, 3)), cell(8, seed=0, return_sequences=True)])
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((2, 6, 3)).astype(np.float32)
    expected = model(xs)
    stream = model.stream(batch_size=2)
    outputs = [stream.step(xs[:, 0]), stream.step(xs[:, 1].astype(">f4")),
               stream.step(xs[:, 2].astype(np.float64)), stream.step(np.asfortranarray(xs[:, 3])),
               stream.step(xs[:, 4].tolist())]
    before = stream.states
    with pytest.raises(ValueError):
        stream.step(np.zeros((2, 4), np.float32))
    for old, new in zip(before[0], stream.states[0]):
        np.testing.assert_array_equal(old, new)
    outputs.append(stream.step(xs[:, 5]))
    np.testing.assert_allclose(np.stack(outputs, axis=1), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("first, then", [("cython", "numpy"), ("numpy", "cython"), ("numba", "cython")])
def test_a_stream_steps_on_the_backend_chosen_since(first, then):
    """A stream's steps are bound to the backend of its first step: a set_backend after it went
    unheard (the compiled steps ran on), now the next step binds again. The backends round
    differently, so the bits say which ran: those of a stream started on `then` from the same
    states."""
    for name in (first, then):
        pytest.importorskip({"cython": "fastrnn._kernels", "numba": "numba", "numpy": "numpy"}[name])
    model = fastrnn.Sequential([fastrnn.Input((None, 3)), fastrnn.LSTM(24, seed=0, return_sequences=True)])
    xs = inputs(batch=4, timesteps=3)
    previous = fastrnn.backend()
    try:
        fastrnn.set_backend(first)
        stream = model.stream(batch_size=4)
        stream.step(xs[:, 0])
        states = stream.states
        fastrnn.set_backend(then)
        got = [stream.step(xs[:, 1]), stream.step(xs[:, 2])]
        alone = model.stream(batch_size=4)
        alone.states = states
        expected = [alone.step(xs[:, 1]), alone.step(xs[:, 2])]
    finally:
        fastrnn.set_backend(previous)
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))


@pytest.mark.parametrize("cell", [fastrnn.SimpleRNN, fastrnn.LSTM, fastrnn.GRU])
def test_stream_step_takes_inputs_of_any_layout_on_the_fast_path(backend_name, cell):
    """The kernels read x_t as it lies: a Fortran-order or strided step keeps the bound steps
    (no rebinding, which repacks the recurrent kernel) and gives what a contiguous one gives."""
    model = fastrnn.Sequential([fastrnn.Input((None, 3)), cell(8, seed=0, return_sequences=True)])
    xs = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    expected = model(xs)
    stream = model.stream(batch_size=2)
    outputs = [stream.step(xs[:, 0])]
    bound = stream._first_step
    outputs.append(stream.step(np.asfortranarray(xs[:, 1])))
    outputs.append(stream.step(np.repeat(xs[:, 2], 2, axis=1)[:, ::2]))
    outputs.append(stream.step(xs[:, 3]))      # (a column of the batch: strided too)
    assert stream._first_step is bound
    np.testing.assert_allclose(np.stack(outputs, axis=1), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("threads", [1, 3])
def test_ragged_groups_share_the_threads(backend_name, monkeypatch, threads):
    """Groups run in lanes on fastrnn's threads (any lane count, results in the original order,
    progress counted once per sequence); a stateful model keeps them in order on one thread."""
    from fastrnn import models

    lanes = []
    real = models._lanes
    monkeypatch.setattr(models, "_lanes", lambda *args: lanes.append(real(*args)) or lanes[-1])
    previous = fr.num_threads()
    fr.set_num_threads(threads)
    try:
        model = stacked("gru")
        rng = np.random.default_rng(4)
        sequences = [rng.standard_normal((length, 3)).astype(np.float32) for length in rng.integers(1, 300, 60)]
        result = model.predict(sequences, batch_size=4, verbose=1)
        for sequence, got in zip(sequences, result):
            np.testing.assert_allclose(got, model(sequence[None])[0], rtol=0, atol=1e-6)
        assert len(lanes[-1]) == threads
        assert sorted(i for lane in lanes[-1] for rows in lane for i in rows) == list(range(60))
    finally:
        fr.set_num_threads(previous)
    # A stateful layer, alone or inside a Bidirectional (whose groups, run side by side, shared
    # and raced on the carried state).
    for stateful in (fr.GRU(2, stateful=True, seed=0), fr.Bidirectional(fr.GRU(2, stateful=True, seed=0))):
        model = fr.Sequential([fr.Input((None, 3)), stateful])
        fr.set_num_threads(3)
        try:
            model.predict([rng.standard_normal((50, 3)).astype(np.float32) for _ in range(8)], batch_size=2)
            assert len(lanes[-1]) == 1
        finally:
            fr.set_num_threads(previous)


def test_a_stateful_layer_inside_time_distributed_resets_and_does_not_stream():
    wrapped = fr.TimeDistributed(fr.Bidirectional(fr.LSTM(4, stateful=True, seed=0)))
    model = fr.Sequential([fr.Input((None, 5, 3)), wrapped])
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 3)).astype(np.float32)
    first = model(x)
    assert not np.allclose(model(x), first)      # carried on
    model.reset_states()                         # reaches the wrapped layers
    np.testing.assert_array_equal(model(x), first)
    model.reset_states()
    assert model(x[:1]).shape == (1, 3, 8)       # and lets the batch size change
    with pytest.raises(ValueError, match="wraps a stateful layer"):
        model.stream(2)


def test_a_stateful_layer_names_a_change_of_batch_size():
    model = fr.Sequential([fr.Input((None, 3)), fr.LSTM(4, stateful=True, seed=0)])
    with pytest.raises(ValueError, match=r"stateful layer 'lstm\w*' carries states for a batch of 4, got a batch of 2"):
        model.predict(inputs(batch=10, timesteps=5), batch_size=4)
    model.reset_states()
    assert model(inputs(batch=2)).shape == (2, 4)     # reset: any batch size again
