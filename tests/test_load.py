"""fastrnn.load on real files written by Keras 3, Keras 2 (tf_keras) and PyTorch.

The files and their frameworks' outputs are in tests/data/files/, written by the generator
scripts beside them (which need the frameworks; these tests do not).
"""
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastrnn
from conftest import assert_close, load_fixture

FILES = Path(__file__).parent / "data" / "files"
INDEXES = {name: load_fixture(f"files/expected_{name}.npz") for name in ("keras3", "keras2", "torch")
           if (FILES / f"expected_{name}.npz").exists()}


def test_every_framework_has_fixtures():
    assert sorted(INDEXES) == ["keras2", "keras3", "torch"]


def keras_cases(kind, unsupported=False):
    cases, _ = INDEXES.get(kind, ([], {}))
    return [(kind, case, f) for case in cases for f in case["files"]
            if bool(case.get("unsupported")) == unsupported and not _is_weights_only(case, f)]


def _is_weights_only(case, filename):
    return case["formats"][filename].startswith("h5_weights")


def keras_inputs(kind, case):
    arrays = INDEXES[kind][1]
    inputs = [arrays[f"{case['name']}.{key}"] for key in case["inputs"]]
    return inputs if len(inputs) > 1 else inputs[0]


def keras_expected(kind, case):
    arrays = INDEXES[kind][1]
    return [arrays[f"{case['name']}.out{i}"] for i in range(case["outputs"])]


def as_list(outputs):
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


KERAS = keras_cases("keras3") + keras_cases("keras2")


@pytest.mark.parametrize("kind, case, filename", KERAS, ids=[f for _, _, f in KERAS])
def test_keras_file_reproduces_keras(kind, case, filename, backend_name):
    model = fastrnn.load(FILES / filename)
    assert_close(as_list(model(keras_inputs(kind, case))), keras_expected(kind, case), case["dtype"])
    for name in case.get("layer_names", []):
        assert model.get_layer(name).name == name


with np.load(FILES / "expected_keras3_masks.npz", allow_pickle=False) as _masks:
    MASKED = {name: (_masks[f"{name}_x"], _masks[f"{name}_y"]) for name in json.loads(str(_masks["names"]))}
MASKED_FILES = [name + suffix for name in MASKED for suffix in (".keras", ".h5")]


@pytest.mark.parametrize("filename", MASKED_FILES)
def test_functional_masks_recorded_as_operations_reproduce_keras(filename, backend_name, tmp_path):
    """Keras 3 records the mask of Masking and Embedding(mask_zero) in a functional model as
    operations (NotEqual, Any) passed on as mask=: fastrnn runs them (tests/data/
    make_keras_functional_masks.py), and keeps them in its own format."""
    x, expected = MASKED[filename.rsplit(".", 1)[0]]
    model = fastrnn.load(FILES / filename)
    lines = []
    model.summary(print_fn=lines.append)
    assert any("(NotEqual)" in line for line in lines)   # shown, as Keras shows it, not a layer
    assert "NotEqual" not in {type(layer).__name__ for layer in model.layers}
    assert_close(model(x), expected, "float32")
    unmasked = x.copy()
    unmasked[unmasked == 0] = 1   # no step masked: a different answer, so the masks were applied
    assert np.abs(model(unmasked) - expected).max() > 1e-3
    model.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(fastrnn.load(tmp_path / "model.npz")(x), model(x))


KERAS3_LAYERS = json.loads((FILES / "keras3_layer_names.json").read_text())   # make_keras3_layer_names.py


@pytest.mark.parametrize("filename", [name for name in KERAS3_LAYERS if "unsupported" not in name and "refused" not in name])
def test_model_layers_are_those_keras3_lists(filename, tmp_path):
    """Keras 3's model.layers (and get_layer(index=)) skip the operations its functional models
    record for masks, though they run and summary shows them: fastrnn's list is Keras's, from
    the .keras archive, its .h5 twin where there is one, and fastrnn's own format."""
    paths = [FILES / filename] + [path for path in [FILES / filename.replace(".keras", ".h5")] if path.exists()]
    for path in paths:
        model = fastrnn.load(path)
        assert [layer.name for layer in model.layers] == KERAS3_LAYERS[filename], path.name
        assert [model.get_layer(index=i).name for i in range(len(model.layers))] == KERAS3_LAYERS[filename]
        model.save(tmp_path / "model.npz")
        assert [layer.name for layer in fastrnn.load(tmp_path / "model.npz").layers] == KERAS3_LAYERS[filename]


def test_operations_are_told_from_layers_where_files_do_not_mark_them(tmp_path):
    """Keras 3 records ops.concatenate under the class name Concatenate; its .h5 and fastrnn
    files before the "operation" mark do not say which is which: what a call joins does (a
    config without "trainable" was taken for an operation: a SpatialDropout1D's has none)."""
    expected = KERAS3_LAYERS["k3_decoder_concatenate_unmasked.keras"]
    import h5py
    h5 = tmp_path / "model.h5"
    h5.write_bytes((FILES / "k3_decoder_concatenate_unmasked.h5").read_bytes())
    with h5py.File(h5, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for spec in config["config"]["layers"]:
            spec["config"].pop("trainable", None)
        f.attrs["model_config"] = json.dumps(config)
    assert [layer.name for layer in fastrnn.load(h5).layers] == expected
    fastrnn.load(FILES / "k3_decoder_concatenate_unmasked.keras").save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(str(arrays["__fastrnn__"]))
    assert "concatenate_7" in [spec["name"] for spec in header["model"]["config"]["layers"] if spec.pop("operation", 0)]
    arrays["__fastrnn__"] = np.array(json.dumps(header))
    np.savez(tmp_path / "unmarked.npz", **arrays)
    assert [layer.name for layer in fastrnn.load(tmp_path / "unmarked.npz").layers] == expected


def test_a_file_that_marked_operations_only_lists_its_layers(tmp_path):
    # fastrnn's format first marked operations only ("operation": true): there an unmarked
    # Concatenate is a layer, even one joining only operations' outputs (real_concat).
    fastrnn.load(FILES / "k3_operations_in_graph.keras").save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    header = json.loads(str(arrays["__fastrnn__"]))
    for spec in header["model"]["config"]["layers"]:
        if spec.get("operation") is False:
            del spec["operation"]
    arrays["__fastrnn__"] = np.array(json.dumps(header))
    np.savez(tmp_path / "marked.npz", **arrays)
    names = [layer.name for layer in fastrnn.load(tmp_path / "marked.npz").layers]
    assert names == KERAS3_LAYERS["k3_operations_in_graph.keras"] and "real_concat" in names


def test_a_live_keras3_config_lists_keras_layers():
    """``Model.from_config(keras_model.get_config())``: the config names each operation's module."""
    with zipfile.ZipFile(FILES / "k3_decoder_concatenate_unmasked.keras") as archive:
        config = json.loads(archive.read("config.json"))["config"]
    model = fastrnn.Model.from_config(config)
    assert [layer.name for layer in model.layers] == KERAS3_LAYERS["k3_decoder_concatenate_unmasked.keras"]


with np.load(FILES / "expected_keras3_operations.npz", allow_pickle=False) as _operations:
    OPERATIONS = {name: (_operations[f"{name}_x"], _operations[f"{name}_y"])
                  for name in json.loads(str(_operations["names"]))}


@pytest.mark.parametrize("filename", [name + suffix for name in OPERATIONS for suffix in (".keras", ".h5")])
def test_a_users_operations_run_as_in_keras3(filename, backend_name, tmp_path):
    """``a + b``, ``ops.concatenate``, ``ops.maximum`` ... recorded as operations under the class
    names of layers (tests/data/make_keras3_operations.py): Keras's outputs, where masked
    sequences meet them too (an operation neither takes nor passes on a mask: the RNN after
    ``a + b`` ran masked, off by 0.125), and Keras's layers after a round trip through fastrnn's
    format (a Concatenate layer joining only operations' outputs stays one)."""
    name = filename.rsplit(".", 1)[0]
    x, y = OPERATIONS[name]
    model = fastrnn.load(FILES / filename)
    x = list(x) if len(model.inputs) > 1 else x   # (several inputs stacked)
    assert_close(model(x), y, "float32")
    model.save(tmp_path / "model.npz")
    again = fastrnn.load(tmp_path / "model.npz")
    assert [layer.name for layer in again.layers] == KERAS3_LAYERS[name + ".keras"]
    np.testing.assert_array_equal(again(x), model(x))


@pytest.mark.parametrize("filename, message", [
    ("k3_refused_operation_scalar.keras", r"operation 'multiply\w*' \(keras.ops Multiply\) has '2.0' as an operand; "
                                          "fastrnn runs operations between tensors only"),
    ("k3_refused_operation_average.keras", r"'average' is the Keras operation 'Average' \(keras.ops\), which shares "
                                           "a layer's name but not what it does"),
])
def test_operations_fastrnn_does_not_run_are_refused_by_name(filename, message):
    # Read as the layers of their names, they failed with "the file is damaged" or a missing
    # target_shape.
    with pytest.raises(fastrnn.ModelFileError, match=message):
        fastrnn.load(FILES / filename)


def test_an_operation_is_no_layer_but_runs_and_is_shown():
    # ops.concatenate of the masks, recorded under the class name Concatenate (concatenate_7),
    # beside the Concatenate layer of the values (concatenate_6).
    model = fastrnn.load(FILES / "k3_decoder_concatenate_unmasked.keras")
    with pytest.raises(ValueError, match="has no layer 'concatenate_7'"):
        model.get_layer("concatenate_7")
    assert model.get_layer("concatenate_6").name == "concatenate_6"
    lines = []
    model.summary(print_fn=lines.append)
    assert any("concatenate_7 (Concatenate)" in line for line in lines)
    assert len(model.get_weights()) == sum(len(layer.get_weights()) for layer in model.layers)


with np.load(FILES / "expected_keras3_decoders.npz", allow_pickle=False) as _decoders:
    DECODERS = {name: ([_decoders[f"{name}_encoder"], _decoders[f"{name}_decoder"]], _decoders[f"{name}_y"])
                for name in json.loads(str(_decoders["names"]))}


@pytest.mark.parametrize("filename", [name + suffix for name in DECODERS for suffix in (".keras", ".h5")])
def test_a_masked_decoder_given_initial_state_runs_as_in_keras3(filename, backend_name, tmp_path):
    """Keras 3 gives a call its inputs' mask only when they are its one tensor argument: a
    decoder given initial_state runs unmasked, the layers after it masked, and an explicit mask=
    applies (tests/data/make_keras_functional_masks.py; Keras 2 masked such a decoder, see
    test_keras2_masks_survive_fastrnns_format)."""
    x, expected = DECODERS[filename.rsplit(".", 1)[0]]
    model = fastrnn.load(FILES / filename)
    assert_close(model(x), expected, "float32")
    model.save(tmp_path / "model.npz")
    np.testing.assert_array_equal(fastrnn.load(tmp_path / "model.npz")(x), model(x))


def test_keras2_masks_survive_fastrnns_format(tmp_path):
    """A Keras 2 decoder given initial_state is masked (k2_masked_decoder.h5, against Keras 2);
    fastrnn's own format records that call as ``passes_mask``, and reads it back."""
    model = fastrnn.load(FILES / "k2_masked_decoder.h5")
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        header = json.loads(str(saved["__fastrnn__"]))
    nodes = {spec["name"]: spec["inbound_nodes"] for spec in header["model"]["config"]["layers"]}
    assert nodes["decoder"][0]["passes_mask"] is True and "passes_mask" not in nodes["summary"][0]
    case = next(c for c in keras_cases("keras2") if c[1]["name"] == "k2_masked_decoder")
    x = keras_inputs(*case[:2])
    for got, expected in zip(fastrnn.load(tmp_path / "model.npz")(x), model(x)):
        np.testing.assert_array_equal(got, expected)
    assert_close(as_list(model(x)), keras_expected(*case[:2]), "float32")


def test_a_version_1_file_gives_every_call_its_mask(tmp_path):
    """fastrnn files before version 2 (no ``passes_mask``) were written when every call got the
    mask flowing in: a Keras 2 decoder saved then still matches Keras 2."""
    model = fastrnn.load(FILES / "k2_masked_decoder.h5")
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        arrays = dict(saved)
    header = json.loads(str(arrays["__fastrnn__"]))
    for spec in header["model"]["config"]["layers"]:
        for node in spec["inbound_nodes"]:
            node.pop("passes_mask", None)
    for version, matches in [(1, True), (2, False), (3, False)]:   # 2 and 3 without the marker: Keras 3's masks
        header["version"] = version
        arrays["__fastrnn__"] = np.array(json.dumps(header))
        np.savez(tmp_path / "old.npz", **arrays)
        case = next(c for c in keras_cases("keras2") if c[1]["name"] == "k2_masked_decoder")
        got = fastrnn.load(tmp_path / "old.npz")(keras_inputs(*case[:2]))
        assert (max(np.abs(g - e).max() for g, e in zip(got, keras_expected(*case[:2]))) < 1e-5) == matches


def test_a_file_before_version_3_merges_masks_as_keras2(tmp_path):
    """Until version 3, fastrnn merged masks as Keras 2 did (a step kept where all inputs keep
    it): a Keras 3 model saved then, read now, still runs so; version 3 runs as Keras 3."""
    x, expected = DECODERS["k3_decoder_merges"]
    model = fastrnn.load(FILES / "k3_decoder_merges.keras")
    model.save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz", allow_pickle=False) as saved:
        arrays = dict(saved)
    header = json.loads(str(arrays["__fastrnn__"]))
    outputs = {}
    for version in (2, 3):
        header["version"] = version
        arrays["__fastrnn__"] = np.array(json.dumps(header))
        np.savez(tmp_path / "old.npz", **arrays)
        old = fastrnn.load(tmp_path / "old.npz")
        assert all(layer.keras2_mask == (version == 2) for layer in old.layers if hasattr(layer, "keras2_mask"))
        outputs[version] = old(x)
    np.testing.assert_array_equal(outputs[3], model(x))
    assert np.abs(outputs[2] - expected).max() > 1e-3


def _masks_file_with(tmp_path, cls, change):
    """k3_functional_masking_lstm.keras with `change(spec)` applied to its layer of class `cls`."""
    with zipfile.ZipFile(FILES / "k3_functional_masking_lstm.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(next(spec for spec in config["config"]["layers"] if spec["class_name"] == cls))
    members["config.json"] = json.dumps(config).encode()
    path = tmp_path / "changed.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _set_second_arg(value):
    return lambda spec: spec["inbound_nodes"][0]["args"].__setitem__(1, value)


@pytest.mark.parametrize("cls, change, message", [
    ("NotEqual", _set_second_arg("a"), "value of layer 'not_equal' must be a number"),
    ("NotEqual", _set_second_arg(None), "value of layer 'not_equal' must be a number"),
    ("NotEqual", _set_second_arg([1, 2]), "operation 'not_equal' (keras.ops NotEqual) has '[1, 2]' as an operand"),
    ("NotEqual", lambda spec: spec["inbound_nodes"][0].__setitem__("args", []), "is called on [], not on layer"),
    ("Any", lambda spec: spec["config"].__setitem__("axis", 0), "must be a non-batch axis"),
    ("Any", lambda spec: spec["config"].__setitem__("axis", 5), "reduces axis 5 of inputs of shape"),
    # Masking called on [inputs, [inputs]]: two arguments, one a list
    ("Masking", lambda spec: spec["inbound_nodes"][0]["args"].append([spec["inbound_nodes"][0]["args"][0]]),
     "layer 'masking' (Masking) is called on 2 arguments, not all of them tensors"),
], ids=["text", "none", "list", "no-args", "batch-axis", "axis-out-of-range", "nested-argument"])
def test_damaged_mask_operations_are_named(tmp_path, cls, change, message):
    with pytest.raises(fastrnn.ModelFileError, match=re.escape(message)):
        fastrnn.load(_masks_file_with(tmp_path, cls, change))


def test_the_mask_operations_check_their_shapes():
    from fastrnn.layers import ExpandDims, LogicalOr, OnesLike, ZerosLike

    x = fastrnn.Input((None, 3))
    assert ExpandDims(axis=-1)(x).shape == (None, None, 3, 1) and ExpandDims(axis=1)(x).shape == (None, 1, None, 3)
    with pytest.raises(ValueError, match="must be a non-batch axis"):
        ExpandDims(axis=0)
    with pytest.raises(ValueError, match="cannot add axis 4"):
        ExpandDims(axis=4)(x)
    with pytest.raises(ValueError, match=r"cannot broadcast shapes \[\(None, None, 3\), \(None, None, 2\)\]"):
        LogicalOr()([x, fastrnn.Input((None, 2))])
    assert LogicalOr()([ExpandDims()(fastrnn.Input((None,))), x]).shape == (None, None, 3)
    # NotEqual of two inputs checks them as LogicalOr does (it took any list, ignoring a third)
    from fastrnn.layers import NotEqual
    assert NotEqual()([fastrnn.Input((6, 1)), fastrnn.Input((6, 3))]).shape == (None, 6, 3)
    with pytest.raises(ValueError, match=r"'ne' \(NotEqual\) takes two inputs of one rank"):
        NotEqual(name="ne")([x, x, x])
    with pytest.raises(ValueError, match=r"'ne' \(NotEqual\) cannot broadcast shapes"):
        NotEqual(name="ne")([fastrnn.Input((6, 3)), fastrnn.Input((4, 3))])
    zeros = ZerosLike(dtype="bool")
    assert zeros(np.ones((2, 3), np.float32)).dtype == bool and zeros.get_config()["dtype"] == "bool"
    assert ZerosLike()(np.ones((2, 3))).dtype == np.float32 and not ZerosLike()(np.ones((2, 3))).any()
    assert OnesLike(dtype="bool")(np.zeros((2, 3))).all()


WEIGHTS = [(kind, case, f) for kind in ("keras3", "keras2") for case in INDEXES.get(kind, ([], {}))[0]
           for f in case["files"] if _is_weights_only(case, f)]


@pytest.mark.parametrize("kind, case, filename", WEIGHTS, ids=[f for _, _, f in WEIGHTS])
def test_weights_only_file_into_a_fastrnn_model(kind, case, filename):
    full = next(f for f in case["files"] if not _is_weights_only(case, f))
    model = fastrnn.load(FILES / full)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])   # forget them
    model.load_weights(FILES / filename)
    assert_close(as_list(model(keras_inputs(kind, case))), keras_expected(kind, case), case["dtype"])


def test_a_weights_file_refused_part_way_leaves_the_weights_as_they_were():
    # The file's lstm and bidirectional layers fit; its dense_3 (one unit) does not fit two.
    layers = fastrnn.load(FILES / "k2_stacked_bidi.h5").layers
    model = fastrnn.Sequential([fastrnn.Input((5, 3))] + [layer.from_config(layer.get_config()) for layer in layers[:-1]]
                               + [fastrnn.Dense(2, name="dense_3")])
    before = model.get_weights()
    with pytest.raises(fastrnn.ModelFileError, match="dense_3"):
        model.load_weights(FILES / "k2_stacked_bidi.h5")
    after = model.get_weights()
    assert len(after) == len(before)
    for got, want in zip(after, before):
        np.testing.assert_array_equal(got, want)


UNSUPPORTED = keras_cases("keras3", True) + keras_cases("keras2", True)


@pytest.mark.parametrize("kind, case, filename", UNSUPPORTED, ids=[f for _, _, f in UNSUPPORTED])
def test_unsupported_layers_are_refused_by_name(kind, case, filename):
    with pytest.raises(fastrnn.ModelFileError, match=rf"{filename}: layer .* (is not supported|is a Lambda)"):
        fastrnn.load(FILES / filename)


TORCH = [(case, f) for case in INDEXES.get("torch", ([], {}))[0] for f in case["files"]
         if not case.get("unsupported")]


@pytest.mark.parametrize("case, filename", TORCH, ids=[f for _, f in TORCH])
def test_torch_file_reproduces_torch(case, filename, backend_name):
    arrays = INDEXES["torch"][1]
    kwargs = case["kwargs"]
    options = {"batch_first": kwargs.get("batch_first", False), "prefix": case.get("prefix", "")}
    if case["module"] == "RNN":
        options["nonlinearity"] = kwargs.get("nonlinearity", "tanh")
    if filename.endswith(".pt") and not _have_torch():
        # Without torch a .pt file cannot be read safely; the error must say what to do.
        with pytest.raises(ImportError, match="needs torch .* or save the state dict with safetensors"):
            fastrnn.load(FILES / filename, **options)
        return
    model = fastrnn.load(FILES / filename, **options)
    name = case["name"]
    hx = None
    if "h0" in case["inputs"]:
        hx = (arrays[f"{name}.h0"], arrays[f"{name}.c0"]) if case["module"] == "LSTM" else arrays[f"{name}.h0"]
    output, state = model(arrays[f"{name}.x"], hx)
    got = [output, *(state if case["module"] == "LSTM" else [state])]
    assert_close(got, [arrays[f"{name}.{k}"] for k in case["outputs"]], case["dtype"])


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_options(path):
    case = next(c for c, f in TORCH if FILES / f == path)
    return {"batch_first": case["kwargs"].get("batch_first", False), "prefix": case.get("prefix", "")}


# ------------------------------------------------------------------ fastrnn's own format
@pytest.mark.parametrize("kind, case, filename", KERAS[::3], ids=[f for _, _, f in KERAS[::3]])
def test_native_format_round_trip(kind, case, filename, tmp_path):
    model = fastrnn.load(FILES / filename)
    model.save(tmp_path / "model.npz")
    again = fastrnn.load(tmp_path / "model.npz")
    x = keras_inputs(kind, case)
    for a, b in zip(as_list(again(x)), as_list(model(x))):
        np.testing.assert_array_equal(a, b)
    assert [w.dtype for w in again.get_weights()] == [w.dtype for w in model.get_weights()]


def test_native_format_round_trip_torch(tmp_path):
    case, filename = next((c, f) for c, f in TORCH if f.endswith(".safetensors") and c["kwargs"].get("bidirectional"))
    model = fastrnn.load(FILES / filename, **_torch_options(FILES / filename))
    model.save(tmp_path / "rnn.npz")
    again = fastrnn.load(tmp_path / "rnn.npz")
    x = INDEXES["torch"][1][f"{case['name']}.x"]
    np.testing.assert_array_equal(again(x)[0], model(x)[0])
    assert again.get_config() == model.get_config()


def test_built_in_model_round_trip(tmp_path):
    x_in = fastrnn.Input((None, 3))
    _, h, c = fastrnn.LSTM(4, return_state=True, seed=0)(x_in)
    h2 = fastrnn.Dense(2, seed=2)(h)
    y = fastrnn.Bidirectional(fastrnn.GRU(2, return_sequences=True, seed=1))(x_in, initial_state=[h2, h2])
    model = fastrnn.Model(x_in, [fastrnn.TimeDistributed(fastrnn.Dense(1, seed=3))(y), c])
    model.save(tmp_path / "m.npz")
    again = fastrnn.load(tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    for a, b in zip(again(x), model(x)):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ bad files
def test_options_for_the_wrong_format_are_refused():
    keras_file = next(FILES / f for _, _, f in KERAS if f.endswith(".keras"))
    with pytest.raises(TypeError, match="apply to PyTorch files"):
        fastrnn.load(keras_file, batch_first=True)


@pytest.mark.parametrize("content, message", [
    (b"", "not a model file fastrnn reads"),
    (b"hello world, not a model", "not a model file fastrnn reads"),
    (b"PK\x03\x04 truncated zip", "not a readable zip archive"),
    (b"\x89HDF\r\n\x1a\n truncated", "not a readable HDF5 file"),
])
def test_garbage_files_are_named(tmp_path, content, message):
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    with pytest.raises(fastrnn.ModelFileError, match=f"{path}.*{message}"):
        fastrnn.load(path)


def test_weights_only_file_to_load_says_how(tmp_path):
    weights = next(FILES / f for _, _, f in WEIGHTS)
    with pytest.raises(fastrnn.ModelFileError, match="load_weights"):
        fastrnn.load(weights)


def test_truncated_files_never_crash(tmp_path):
    # Every prefix length class of each format: a clean ModelFileError, never another error.
    for filename in {f for _, _, f in KERAS[:6]} | {f for _, f in TORCH[:4] if f.endswith(".safetensors")}:
        data = (FILES / filename).read_bytes()
        for cut in (9, 100, len(data) // 3, len(data) // 2, len(data) - 10):
            path = tmp_path / f"cut_{cut}_{filename}"
            path.write_bytes(data[:cut])
            with pytest.raises(fastrnn.ModelFileError):
                fastrnn.load(path)


def test_pickled_module_is_never_unpickled():
    path = FILES / "full_model.pt"
    if _have_torch():
        with pytest.raises(fastrnn.ModelFileError, match="weights_only=True.*save module.state_dict"):
            fastrnn.load(path)
    else:
        with pytest.raises(ImportError, match="needs torch"):
            fastrnn.load(path)


@pytest.mark.parametrize("version, expected", [("2.15.0", "hard_sigmoid_keras2"), ("3.15.1", "hard_sigmoid")])
def test_a_tf_keras_archive_gets_keras_2s_hard_sigmoid(tmp_path, version, expected):
    """tf_keras writes .keras archives too; its hard_sigmoid is clip(0.2x + 0.5, 0, 1), Keras
    3's relu6(x + 3) / 6: the archive's metadata says which wrote it."""
    def edit(name, data):
        if name == "metadata.json":
            return json.dumps({"keras_version": version}).encode()
        if name == "config.json":
            return data.replace(b'"recurrent_activation": "sigmoid"', b'"recurrent_activation": "hard_sigmoid"')
        return data

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(FILES / "k3_lstm_state.keras") as source, zipfile.ZipFile(path, "w") as copy:
        for name in source.namelist():
            copy.writestr(name, edit(name, source.read(name)))
    lstm = next(layer for layer in fastrnn.load(path).layers if isinstance(layer, fastrnn.LSTM))
    assert lstm.recurrent_activation == expected


def test_bidirectional_weights_listed_backward_first_in_a_legacy_file(tmp_path):
    """Keras lists a layer's trainable weights first, so a file whose forward direction alone
    was frozen lists the backward direction's first: the names say which is which."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "frozen_forward.h5"
    path.write_bytes((FILES / "k3_bidi_concat.h5").read_bytes())
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights"]["bidirectional"]
        names = list(group.attrs["weight_names"])
        group.attrs["weight_names"] = names[3:] + names[:3]
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    original = fastrnn.load(FILES / "k3_bidi_concat.h5")
    np.testing.assert_array_equal(fastrnn.load(path)(x), original(x))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo ran > ran.txt",))


def test_a_pickle_that_runs_code_is_refused_by_name(tmp_path, monkeypatch):
    """The message names what was refused and never repeats torch's advice to load with
    weights_only=False (torch 2.13 writes "unsupported GLOBAL posix.system" for this file)."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"weight_ih_l0": _RunsCode()}, protocol=2))
    with pytest.raises(fastrnn.ModelFileError, match="evil.pt") as refused:
        fastrnn.load(path)
    message = str(refused.value)
    assert "system" in message and "set to `False`" not in message and "weights_only=False" not in message
    assert not (tmp_path / "ran.txt").exists()


def test_unknown_torch_option_is_refused():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['hidden'\] for a PyTorch file"):
        fastrnn.load(FILES / "t_lstm.safetensors", hidden=3)


def test_a_pt_archive_that_expands_far_beyond_its_size_is_refused_before_reading(tmp_path):
    # torch stores tensors uncompressed; a deflated member of 256 MB of zeros is a few hundred KB.
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("bomb/data.pkl", pickle.dumps({}, protocol=2))
        with archive.open("bomb/data/0", "w", force_zip64=True) as member:
            for _ in range(16):
                member.write(bytes(2 ** 24))
    assert path.stat().st_size < 2 ** 21
    with pytest.raises(fastrnn.ModelFileError, match=r"its members expand to 26843\d+ bytes from a file of \d+; "
                                                      "refused before reading"):
        fastrnn.load(path)


def test_a_pt_archive_of_many_deflated_members_is_refused_before_reading(tmp_path):
    # Each member under any one limit, together 16 times the file: refused by their sum.
    path = tmp_path / "many.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("many/data.pkl", pickle.dumps({}, protocol=2))
        for i in range(16):
            archive.writestr(f"many/data/{i}", bytes(2 ** 23))
    with pytest.raises(fastrnn.ModelFileError, match=r"its members expand to \d+ bytes .*refused before reading"):
        fastrnn.load(path)


@pytest.mark.parametrize("protocol", [2, 3])
def test_legacy_torch_files_of_either_pickle_protocol(tmp_path, protocol):
    torch = pytest.importorskip("torch")
    module = torch.nn.GRU(3, 4)
    path = tmp_path / "legacy.pt"
    torch.save(module.state_dict(), path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(fastrnn.load(path)(x)[0], expected, atol=1e-5)
