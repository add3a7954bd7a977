"""Distributed batch inference (`fastrnn.dask.predict`) and pickling of models through their saved form."""
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

import fastrnn
import fastrnn.dask  # imports without dask; predict needs it
from conftest import assert_close
from fastrnn.io.native import _model_config, from_bytes, to_bytes

try:
    import dask
    import dask.array as da
except ImportError:
    dask = da = None

needs_dask = pytest.mark.skipif(dask is None, reason="needs dask: pip install 'fastrnn[dask]'")
FILES = Path(__file__).parent / "data" / "files"
MODEL_CLASSES = (fastrnn.Sequential, fastrnn.Model, fastrnn.TorchRNN)


def _reduce(self):
    return from_bytes, (to_bytes(self),)


def _defines_reduce(cls):
    return any("__reduce__" in vars(base) for base in cls.__mro__ if base is not object)


@pytest.fixture(scope="module", autouse=True)
def model_pickling():
    """Give the model classes ``__reduce__`` (pickling through `to_bytes`) where they lack it; undo after."""
    added = [cls for cls in MODEL_CLASSES if not _defines_reduce(cls)]
    for cls in added:
        cls.__reduce__ = _reduce
    yield
    for cls in added:
        del cls.__reduce__


def _install_reduce_on_worker():
    """What `model_pickling` does, for a worker process (a local function: it travels by value)."""
    def install():
        import fastrnn
        from fastrnn.io.native import from_bytes, to_bytes

        def reduce(self):
            return from_bytes, (to_bytes(self),)

        for cls in (fastrnn.Sequential, fastrnn.Model, fastrnn.TorchRNN):
            if not any("__reduce__" in vars(base) for base in cls.__mro__ if base is not object):
                cls.__reduce__ = reduce
    return install


def sequential_model():
    return fastrnn.Sequential([
        fastrnn.Input((7, 3)),
        fastrnn.LSTM(8, return_sequences=True, seed=1),
        fastrnn.GRU(5, seed=2),
        fastrnn.Dense(2, activation="tanh", seed=3),
    ])


def inputs(rows=103, timesteps=7, features=3, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, timesteps, features)).astype(np.float32)


def assert_same_model(a, b):
    assert type(a) is type(b)
    assert _model_config(a) == _model_config(b)
    weights_a = [w for layer in a.layers for w in layer.weights]
    weights_b = [w for layer in b.layers for w in layer.weights]
    assert len(weights_a) == len(weights_b)
    for wa, wb in zip(weights_a, weights_b):
        assert wa.dtype == wb.dtype and wa.shape == wb.shape
        np.testing.assert_array_equal(wa, wb)


def assert_matches_predict(result, model, x, chunks, batch_size=None):
    """`result` equals ``model.predict(x)`` within float32 tolerance, and exactly ``model.predict``
    run chunk by chunk (a BLAS product's rounding can depend on the number of rows)."""
    expected = model.predict(x)
    several = isinstance(x, list)
    pieces, start = [], 0
    for rows in chunks:
        part = [a[start:start + rows] for a in x] if several else x[start:start + rows]
        out = model.predict(part, batch_size=batch_size)
        pieces.append(out if isinstance(out, list) else [out])
        start += rows
    by_chunk = [np.concatenate(parts) for parts in zip(*pieces)]
    by_chunk = by_chunk if isinstance(expected, list) else by_chunk[0]
    assert_close(result, expected, np.float32)
    if isinstance(result, list):
        for r, e in zip(result, by_chunk):
            np.testing.assert_array_equal(r, e)
    else:
        np.testing.assert_array_equal(result, by_chunk)


# --- bytes and pickling ----------------------------------------------------------------------


def test_to_bytes_is_the_saved_file(tmp_path):
    model = sequential_model()
    model.save(tmp_path / "m.npz")
    from_file = from_bytes((tmp_path / "m.npz").read_bytes())
    round_trip = from_bytes(to_bytes(model))
    x = inputs()
    for other in (from_file, round_trip, fastrnn.load(tmp_path / "m.npz")):
        assert_same_model(model, other)
        np.testing.assert_array_equal(other.predict(x), model.predict(x))


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04truncated"])
def test_from_bytes_refuses_damaged_data(data):
    with pytest.raises(fastrnn.ModelFileError, match="^model.bin: "):
        from_bytes(data, source="model.bin")


def test_from_bytes_refuses_a_pickle_inside():
    buffer = io.BytesIO()
    np.savez(buffer, __fastrnn__=np.array([{"format": "fastrnn"}], dtype=object))
    with pytest.raises(fastrnn.ModelFileError, match="^bytes: "):
        from_bytes(buffer.getvalue())


def test_pickle_round_trips_sequential():
    model = sequential_model()
    copy = pickle.loads(pickle.dumps(model))
    assert_same_model(model, copy)
    x = inputs()
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))


def test_pickle_round_trips_functional_model():
    model = fastrnn.load(FILES / "k3_encoder_decoder.keras")
    copy = pickle.loads(pickle.dumps(model))
    assert isinstance(copy, fastrnn.Model)
    assert_same_model(model, copy)
    rng = np.random.default_rng(1)
    x = [rng.standard_normal((6, 5, 3)).astype(np.float32), rng.standard_normal((6, 4, 2)).astype(np.float32)]
    np.testing.assert_array_equal(copy.predict(x), model.predict(x))


def test_pickle_round_trips_torch_rnn():
    model = fastrnn.TorchRNN("GRU", 3, 4, num_layers=2, bidirectional=True, seed=0)
    copy = pickle.loads(pickle.dumps(model))
    assert_same_model(model, copy)
    assert copy.get_config() == model.get_config()
    x = inputs(rows=5, timesteps=6)
    (out_a, h_a), (out_b, h_b) = model(x), copy(x)
    np.testing.assert_array_equal(out_b, out_a)
    np.testing.assert_array_equal(h_b, h_a)


# --- fastrnn.dask.predict --------------------------------------------------------------------

@needs_dask
def test_sequential_on_chunked_array():
    model = sequential_model()
    x = inputs()
    dx = da.from_array(x, chunks=(20, 4, 2))          # the time and feature axes are chunked too
    y = fastrnn.dask.predict(model, dx, batch_size=7)
    assert isinstance(y, da.Array)
    assert y.shape == (103, 2) and y.dtype == np.float32 and y.chunks == ((20, 20, 20, 20, 20, 3), (2,))
    assert_matches_predict(y.compute(scheduler="threads"), model, x, y.chunks[0], batch_size=7)
    assert_matches_predict(y.compute(scheduler="sync"), model, x, y.chunks[0], batch_size=7)


def encoder_decoder(rows):
    """The two-input Keras model and random inputs for it: encoder (rows, 5, 3), decoder (rows, 6, 2)."""
    rng = np.random.default_rng(2)
    return (fastrnn.load(FILES / "k3_encoder_decoder.keras"), rng.standard_normal((rows, 5, 3)).astype(np.float32),
            rng.standard_normal((rows, 6, 2)).astype(np.float32))


@needs_dask
def test_two_input_functional_model():
    model, encoder_in, decoder_in = encoder_decoder(50)
    y = fastrnn.dask.predict(model, [da.from_array(encoder_in, chunks=(12, 5, 3)),
                                     da.from_array(decoder_in, chunks=(7, 4, 2))])   # rechunked to (12, ...)
    assert y.shape == (50, 6, 3) and y.chunks[0] == (12, 12, 12, 12, 2)
    assert_matches_predict(y.compute(), model, [encoder_in, decoder_in], y.chunks[0])


@needs_dask
def test_inputs_by_name():
    model, encoder_in, decoder_in = encoder_decoder(20)
    names = [t.name for t in model.inputs]
    y = fastrnn.dask.predict(model, {names[1]: da.from_array(decoder_in, chunks=8),
                                     names[0]: da.from_array(encoder_in, chunks=8)})
    assert_matches_predict(y.compute(), model, [encoder_in, decoder_in], y.chunks[0])


@needs_dask
def test_several_outputs_run_the_model_once_per_chunk(monkeypatch):
    encoder_in = fastrnn.Input((None, 3))
    sequence, h, c = fastrnn.LSTM(4, return_sequences=True, return_state=True, seed=0)(encoder_in)
    model = fastrnn.Model(encoder_in, [sequence, fastrnn.Dense(2, seed=1)(h), c])
    x = inputs(rows=40, timesteps=9)
    calls = []
    run = fastrnn.dask._predict_block
    monkeypatch.setattr(fastrnn.dask, "_predict_block", lambda *a, **k: calls.append(1) or run(*a, **k))
    outputs = fastrnn.dask.predict(model, da.from_array(x, chunks=10))
    assert [o.shape for o in outputs] == [(40, 9, 4), (40, 2), (40, 4)]
    results = dask.compute(*outputs)
    assert len(calls) == 4
    assert_matches_predict(list(results), model, x, outputs[0].chunks[0])


@needs_dask
def test_one_input_given_as_a_list():
    encoder_in = fastrnn.Input((None, 3))
    model = fastrnn.Model(encoder_in, fastrnn.GRU(4, seed=0)(encoder_in))   # a list would be ragged input
    x = inputs(rows=30)
    y = fastrnn.dask.predict(model, [da.from_array(x, chunks=8)])
    assert isinstance(y, da.Array) and y.shape == (30, 4)
    assert_matches_predict(y.compute(), model, x, y.chunks[0])


@needs_dask
def test_integer_inputs_and_masking():
    model = fastrnn.Sequential([
        fastrnn.Input((None,), dtype="int32"),
        fastrnn.Embedding(50, 4, mask_zero=True, seed=0),
        fastrnn.GRU(3, seed=1),
    ])
    tokens = np.random.default_rng(3).integers(0, 50, size=(30, 8)).astype(np.int32)
    y = fastrnn.dask.predict(model, da.from_array(tokens, chunks=(8, 3)))
    assert_matches_predict(y.compute(), model, tokens, y.chunks[0])


@needs_dask
def test_bad_inputs():
    model = sequential_model()
    with pytest.raises(TypeError, match="not a dask array"):
        fastrnn.dask.predict(model, inputs())
    with pytest.raises(TypeError, match="predict"):
        fastrnn.dask.predict(fastrnn.TorchRNN("GRU", 3, 4), da.zeros((4, 5, 3), chunks=2))
    with pytest.raises(ValueError):                   # the model's own error, from the probe
        fastrnn.dask.predict(model, da.zeros((4, 7, 5), chunks=2))
    stateful = fastrnn.Sequential([fastrnn.Input((7, 3), batch_size=4),
                                   fastrnn.Bidirectional(fastrnn.GRU(2, stateful=True, seed=0))])
    with pytest.raises(ValueError, match="stateful"):
        fastrnn.dask.predict(stateful, da.zeros((4, 7, 3), chunks=2))
    two = fastrnn.load(FILES / "k3_encoder_decoder.keras")
    with pytest.raises(ValueError, match="number of rows"):
        fastrnn.dask.predict(two, [da.zeros((4, 5, 3), chunks=2), da.zeros((6, 4, 2), chunks=3)])


def test_missing_dask_says_how_to_install(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name == "dask" or name.startswith("dask."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    with pytest.raises(ImportError, match=r"pip install 'fastrnn\[dask\]'"):
        fastrnn.dask.predict(sequential_model(), None)


@needs_dask
def test_local_cluster_with_worker_processes():
    """Two worker processes: the model reaches them (and moves between them) only by pickling."""
    distributed = pytest.importorskip("distributed")
    model = sequential_model()
    x = inputs(rows=64)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(2)
        client.run(_install_reduce_on_worker())
        pids = client.run(lambda: __import__("os").getpid())
        assert len(set(pids.values())) == 2 and __import__("os").getpid() not in pids.values()
        y = fastrnn.dask.predict(model, da.from_array(x, chunks=(16, 7, 3)))
        result = client.compute(y).result()
    assert_matches_predict(result, model, x, y.chunks[0])
