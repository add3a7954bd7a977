"""Damaged and hostile model files: each ends in a ModelFileError naming the file and the problem,
before any large allocation; never a crash, a hang or a silently wrong model."""
import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastrnn
from fastrnn.io import keras as keras_io

FILES = Path(__file__).parent / "data" / "files"
KERAS_FILE = FILES / "k3_lstm_backwards_gru.keras"
H5_FILE = FILES / "k3_lstm_backwards_gru.h5"


def rewrite_keras(tmp_path, config=None, weights=None, drop=(), extra=None, source=KERAS_FILE):
    """A copy of `source` with config.json or model.weights.h5 replaced or members dropped."""
    out = tmp_path / "model.keras"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name in drop:
                continue
            data = src.read(name)
            if name == "config.json" and config is not None:
                data = config(json.loads(data)) if callable(config) else config
                data = data if isinstance(data, bytes) else json.dumps(data).encode()
            if name == "model.weights.h5" and weights is not None:
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as h5:
                    weights(h5)
                data = buffer.getvalue()
            dst.writestr(name, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return out


def layer_config(config, class_name):
    return next(l for l in config["config"]["layers"] if l["class_name"] == class_name)["config"]


def set_units(config, units):
    layer_config(config, "LSTM")["units"] = units
    return config


@pytest.mark.parametrize("edit, message", [
    (lambda c: set_units(c, 10 ** 9), r"kernel of layer 'my_encoder' has shape \(3, 12\), expected \(3, 4000000000\)"),
    (lambda c: set_units(c, -3), "units of layer .* must be a positive integer"),
    (lambda c: set_units(c, "three"), "units of layer .* must be a positive integer"),
    (lambda c: {**c, "class_name": "Sequentially"}, "model class 'Sequentially' is not supported"),
    (lambda c: {"config": []}, "not a Keras model config"),
    (b"{not json", "config.json is not valid JSON"),
    (b"[" * 100000 + b"]" * 100000, "config.json is not valid JSON"),
])
def test_bad_configs(tmp_path, edit, message):
    with pytest.raises(fastrnn.ModelFileError, match=message):
        fastrnn.load(rewrite_keras(tmp_path, config=edit))


@pytest.mark.parametrize("axis", [1.5, "1", True, None])
def test_concatenate_axis_that_is_not_an_integer_is_refused(tmp_path, axis):
    # int() read 1.5 and "1" as 1: the model joined its sequences on the time axis instead.
    def edit(c):
        layer_config(c, "Concatenate")["axis"] = axis
        return c
    with pytest.raises(fastrnn.ModelFileError, match=r"layer 'concatenate_3' \(Concatenate\).* must be an integer"):
        fastrnn.load(rewrite_keras(tmp_path, config=edit, source=FILES / "k3_decoder_merges.keras"))


def test_mask_operation_that_cannot_broadcast_names_its_layer(tmp_path):
    # An ExpandDims on the wrong axis of a mask of unknown length: the shapes fit while the model
    # is built (None, 1, None) and cannot broadcast once the length is known.
    def edit(c):
        layer_config(c, "ExpandDims")["axis"] = 1
        return c
    model = fastrnn.load(rewrite_keras(tmp_path, config=edit, source=FILES / "k3_decoder_concatenate_unmasked.keras"))
    tokens, features = np.ones((2, 5), np.int32), np.ones((2, 5, 3), np.float32)
    with pytest.raises(ValueError, match=r"^layer 'logical_or_16' \(LogicalOr\): operands could not be broadcast"):
        model.predict([tokens, features])


def test_unknown_layer_names_class_and_lists_supported(tmp_path):
    def conv(c):
        spec = next(l for l in c["config"]["layers"] if l["class_name"] == "GRU")
        spec["class_name"] = "Conv1D"
        return c
    with pytest.raises(fastrnn.ModelFileError, match=r"layer 'my_gru' of class 'Conv1D' is not supported by fastrnn; supported: .*LSTM") as error:
        fastrnn.load(rewrite_keras(tmp_path, config=conv))
    assert "NotEqual" not in str(error.value)   # the mask operations are not layers to offer


def test_mixed_precision_policy_is_refused(tmp_path):
    def mixed(c):
        layer_config(c, "GRU")["dtype"] = {"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}
        return c
    with pytest.raises(fastrnn.ModelFileError, match="layer 'my_gru' uses dtype policy 'mixed_float16'"):
        fastrnn.load(rewrite_keras(tmp_path, config=mixed))


def gru_vars(h5):
    return h5["layers/gru/cell/vars"]


@pytest.mark.parametrize("edit, message", [
    (lambda h5: gru_vars(h5).__delitem__("1"), "layer 'my_gru' .* expects 3 weights"),
    (lambda h5: gru_vars(h5).create_dataset("3", data=np.zeros(3, np.float32)), "expects 3 weights"),
    (lambda h5: (gru_vars(h5).__delitem__("2"), gru_vars(h5).create_dataset("2", data=np.zeros((2, 5), np.float32))),
     r"bias of layer 'my_gru' has shape \(2, 5\), expected \(2, 9\)"),
    (lambda h5: (gru_vars(h5).__delitem__("2"), gru_vars(h5).create_dataset("2", data=np.zeros((2, 9), np.int32))),
     "bias of layer 'my_gru' has dtype int32, expected floating point"),
    (lambda h5: h5["layers"].__delitem__("gru"), "no weights for layer 'my_gru'"),
])
def test_bad_weights(tmp_path, edit, message):
    with pytest.raises(fastrnn.ModelFileError, match=message):
        fastrnn.load(rewrite_keras(tmp_path, weights=edit))


def test_huge_claimed_weight_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(keras_io, "MAX_WEIGHT_BYTES", 100)
    with pytest.raises(fastrnn.ModelFileError, match="claims .* more than fastrnn reads"):
        fastrnn.load(KERAS_FILE)


def test_missing_archive_member(tmp_path):
    with pytest.raises(fastrnn.ModelFileError, match="the archive has no 'model.weights.h5'"):
        fastrnn.load(rewrite_keras(tmp_path, drop=("model.weights.h5",)))


def test_h5_weights_listed_but_missing(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(H5_FILE.read_bytes())
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights/my_gru"]
        first = group.attrs["weight_names"][0]
        del group[first]
    with pytest.raises(fastrnn.ModelFileError, match="weight .* of layer 'my_gru' is listed but missing"):
        fastrnn.load(path)


def test_h5_config_with_bad_layer_reference(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes((FILES / "k3_encoder_decoder.h5").read_bytes())
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        for layer in config["config"]["layers"]:
            for node in layer.get("inbound_nodes", []):
                for arg in node["args"]:
                    if isinstance(arg, dict):
                        arg["config"]["keras_history"] = ["nowhere", 0, 0]
        h5.attrs["model_config"] = json.dumps(config)
    with pytest.raises(fastrnn.ModelFileError, match="refers to output 0 of call 0 of layer 'nowhere'"):
        fastrnn.load(path)


def test_flipped_bytes_never_crash(tmp_path):
    data = bytearray(KERAS_FILE.read_bytes())
    rng = np.random.default_rng(0)
    for trial in range(40):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), size=8):
            damaged[position] ^= 0xFF
        path = tmp_path / f"flip_{trial}.keras"
        path.write_bytes(bytes(damaged))
        try:
            model = fastrnn.load(path)
        except fastrnn.ModelFileError:
            continue
        # Loaded anyway (the flips hit unused bytes): then it must still work.
        assert model(np.zeros((1, 5, 3), np.float32)).shape[0] == 1
