"""Property-based fuzzing of fastrnn.load: real files of every format, damaged (tests/fuzzing.py).

The property: `fastrnn.load` raises a `fastrnn.ModelFileError` that names the file, or returns a
model that runs on an input of the shape it declares; never another exception, a crash, a hang or
a huge allocation. The runs are derandomized (the same cases on every run) and bounded to a few
seconds each; tests/fuzz_campaign.py runs the same strategies for as long as you like, each case
in a subprocess. Below them, the bugs the fuzzers found, one example each.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
h5py = pytest.importorskip("h5py")
from hypothesis import HealthCheck, given, settings  # noqa: E402

import fastrnn  # noqa: E402
import fastrnn.io.native  # noqa: E402
import fuzzing  # noqa: E402
from fastrnn.io import keras as keras_io  # noqa: E402
from fuzzing import FILES, check  # noqa: E402

FUZZ = settings(max_examples=int(os.environ.get("FASTRNN_FUZZ_EXAMPLES", 200)), deadline=None, derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CASES = [(fmt, family) for fmt, families in fuzzing.FAMILIES.items() for family in families]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("fmt, family", CASES, ids=[f"{fmt}-{family}" for fmt, family in CASES])
@FUZZ
@given(data=hypothesis.strategies.data())
def test_damaged_files_fail_cleanly_or_load_and_run(workdir, fmt, family, data):
    if fmt == "pt":
        pytest.importorskip("torch")
    case = data.draw(fuzzing.cases(fmt, family), label="case")
    path = workdir / f"case{case.suffix}"
    path.write_bytes(case.data)
    check(path)


# ---------------------------------------------------------------------------------- helpers
def rewrite_zip(source, out, edit=None, extra=(), compression=zipfile.ZIP_STORED):
    """A copy of the zip `source` with `edit(name, data) -> data` applied and `extra` members added."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, edit(name, data) if edit else data)
        for name, data in extra:
            dst.writestr(name, data)
    return out


def edit_keras_config(tmp_path, edit, seed="k3_encoder_decoder.keras"):
    def change(name, data):
        return json.dumps(edit(json.loads(data))).encode() if name == "config.json" else data
    return rewrite_zip(FILES / seed, tmp_path / "model.keras", change)


def edit_h5(tmp_path, edit, seed="k3_encoder_decoder.h5"):
    path = tmp_path / "model.h5"
    path.write_bytes((FILES / seed).read_bytes())
    with h5py.File(path, "r+") as h5:
        edit(h5)
    return path


def layers(config):
    return config["config"]["layers"]


def refused(path, match=""):
    with pytest.raises(fastrnn.ModelFileError, match=match) as info:
        fastrnn.load(path)
    assert str(path) in str(info.value)


def in_subprocess(code, timeout=60):
    """Run `code` in a fresh interpreter: a crash or a hang fails the test instead of ending pytest."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


# ---------------------------------------------------------------------------------- archives
def test_too_many_archive_members_are_refused(tmp_path):
    extra = [(f"x/{i}", b"") for i in range(keras_io.MAX_ARCHIVE_MEMBERS)]
    refused(rewrite_zip(FILES / "k3_lstm_backwards_gru.keras", tmp_path / "many.keras", extra=extra),
            "more than 10000")


@pytest.mark.parametrize("member, limit", [("model.weights.h5", "MAX_ARCHIVE_MEMBER_BYTES"),
                                           ("config.json", "MAX_CONFIG_BYTES")])
def test_zip_bomb_is_refused_before_decompression(tmp_path, monkeypatch, member, limit):
    bomb = b"\0" * (8 * 2 ** 20)          # 8 MiB of zeros: 8 KiB deflated

    def change(name, data):
        return bomb if name == member else data
    path = rewrite_zip(FILES / "k3_lstm_backwards_gru.keras", tmp_path / "bomb.keras", change, compression=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 2 ** 20
    monkeypatch.setattr(keras_io, limit, 2 ** 20)
    opened = []
    original = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or original(self, name, *a, **k))
    refused(path, f"{member!r} claims {len(bomb)} bytes uncompressed, more than {2 ** 20}; refused")
    assert member not in opened


def test_huge_size_claimed_by_the_central_directory_is_refused(tmp_path, monkeypatch):
    data = bytearray((FILES / "k3_lstm_backwards_gru.keras").read_bytes())
    entry = data.find(b"PK\x01\x02")
    while not data[entry + 46:].startswith(b"model.weights.h5"):
        entry = data.find(b"PK\x01\x02", entry + 4)
    data[entry + 24:entry + 28] = (2 ** 30).to_bytes(4, "little")      # uncompressed size: 1 GiB
    path = tmp_path / "claims.keras"
    path.write_bytes(bytes(data))
    monkeypatch.setattr(keras_io, "MAX_ARCHIVE_MEMBER_BYTES", 2 ** 20)
    refused(path, "'model.weights.h5' claims 1073741824 bytes")


def test_nothing_is_extracted_to_disk(tmp_path, monkeypatch):
    def extract(*args, **kwargs):
        raise AssertionError("a model file was extracted")
    monkeypatch.setattr(zipfile.ZipFile, "extract", extract)
    monkeypatch.setattr(zipfile.ZipFile, "extractall", extract)
    native = tmp_path / "model.npz"
    fastrnn.load(FILES / "k3_encoder_decoder.keras").save(native)
    files = [FILES / "k3_encoder_decoder.keras", FILES / "t_lstm.safetensors", native]
    if fuzzing.torch_available():
        files.append(FILES / "t_lstm.pt")
    before = set(os.listdir(tempfile.gettempdir())), set(os.listdir(tmp_path))
    for path in files:
        fastrnn.load(path)
    assert (set(os.listdir(tempfile.gettempdir())), set(os.listdir(tmp_path))) == before


# ---------------------------------------------------------------------------------- configurations
def wrapped(depth):
    spec = {"class_name": "LSTM", "config": {"name": "inner", "units": 4}}
    for i in range(depth):
        spec = {"class_name": "Bidirectional" if i == 0 else "TimeDistributed", "config": {"name": f"w{i}", "layer": spec}}
    return spec


@pytest.mark.parametrize("depth", [17, 400, 5000])
def test_deeply_nested_layers_are_refused(tmp_path, depth):
    path = tmp_path / "deep.keras"

    def change(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        placeholder = {"class_name": "Deep", "config": {}}
        layers(config)[2] = placeholder
        text = json.dumps(config)
        spec = json.dumps(wrapped(min(depth, 20)))
        if depth > 20:                    # too deep for json.dumps: built as text
            head = '{"class_name": "TimeDistributed", "config": {"name": "t%d", "layer": '
            spec = "".join(head % i for i in range(depth - 20)) + spec + "}}" * (depth - 20)
        return text.replace(json.dumps(placeholder), spec).encode()
    rewrite_zip(FILES / "k3_encoder_decoder.keras", path, change)
    refused(path, "nested more than 16 deep|not valid JSON")


def test_repeat_vector_of_a_huge_n_is_refused(tmp_path):
    def insert(config):
        layers(config).insert(3, {"class_name": "RepeatVector", "config": {"name": "repeat", "n": 10 ** 9}})
        return config
    refused(edit_keras_config(tmp_path, insert, "k3_lstm_backwards_gru.keras"), "repeats its input n=1000000000 times")


def set_in(path, value):
    def edit(config):
        target = config
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return config
    return edit


# Found by the fuzzers: each raised TypeError, AttributeError or ValueError instead.
@pytest.mark.parametrize("path, value, message", [
    (["config", "layers", 2, "config", "activation"], 7, "activation 7 is not a Keras activation name"),
    (["config", "layers", 2, "class_name"], {"class_name": "LSTM"}, "class_name is .* not a string"),
    (["config", "layers", 2, "name"], [1, 2, 3], r"a layer's name is \[1, 2, 3\], not a string"),
    (["config", "layers", 0, "config", "batch_shape"], [None, True, 3], "invalid shape"),
    (["config", "layers", 0, "config", "dtype"], "str", "not a number type"),
    (["config", "layers", 2, "config", "dtype", "config"], [[[]]], r"uses dtype policy \[\[\[\]\]\]"),
    (["config", "layers", 2, "inbound_nodes", 0, "args"], float("nan"), "malformed inbound node"),
    (["config", "layers", 2, "inbound_nodes", 0, "args", 0, "config"], True, "not to a layer output"),
    (["config", "layers", 3, "class_name"], "Flatten", r"layer 'decoder' \(Flatten\) is given an initial_state"),
])
def test_config_fields_of_the_wrong_type(tmp_path, path, value, message):
    refused(edit_keras_config(tmp_path, set_in(path, value)), message)


def test_masking_value_of_the_wrong_type(tmp_path):
    def insert(config):
        layers(config).insert(1, {"class_name": "Masking", "config": {"name": "mask", "mask_value": [1, 2]}})
        return config
    refused(edit_keras_config(tmp_path, insert, "k3_lstm_backwards_gru.keras"), "mask_value of layer .mask. must be a number")


def test_sequential_input_layer_without_config(tmp_path):
    refused(edit_keras_config(tmp_path, set_in(["config", "layers", 0, "config"], None), "k3_embedding_gru.keras"),
            "an input layer has no config|not a {'class_name', 'config'} object")


# ---------------------------------------------------------------------------------- HDF5
KERNEL = "model_weights/encoder/encoder/lstm_cell/kernel"


def replace(path, make):
    def edit(h5):
        parent, name = h5[path].parent, path.rsplit("/", 1)[1]
        del parent[name]
        make(parent, name)
    return edit


@pytest.mark.parametrize("make", [
    lambda g, n: g.create_dataset(n, data=h5py.Empty("f4")),
    lambda g, n: g.__setitem__(n, h5py.SoftLink(f"{g.name}/{n}")),          # a cycle
    lambda g, n: g.__setitem__(n, h5py.SoftLink("/nowhere")),               # dangling
    lambda g, n: g.__setitem__(n, h5py.ExternalLink("/nonexistent.h5", "/x")),
    lambda g, n: g.create_group(n),
    lambda g, n: g.create_dataset(n, (3, 16), dtype=h5py.ref_dtype),
    lambda g, n: g.create_dataset(n, (3, 16), dtype=h5py.vlen_dtype(np.float32)),
    lambda g, n: g.create_dataset(n, (3, 16), dtype=np.dtype([("a", "f4"), ("b", "i4")])),
    lambda g, n: g.create_dataset(n, (2 ** 20, 2 ** 20), dtype="f8", chunks=(1, 1)),
], ids=["empty", "link-cycle", "dangling-link", "external-link", "group", "references", "vlen", "compound", "huge"])
def test_h5_weights_that_are_not_arrays_of_floats(tmp_path, make):
    refused(edit_h5(tmp_path, replace(KERNEL, make)), "encoder")


@pytest.mark.parametrize("target, key, value", [
    ("model_weights/encoder", "weight_names", b"\xff\xfe"),
    ("model_weights/encoder", "weight_names", np.array([b"\xff", b"x"])),
    ("model_weights/encoder", "weight_names", np.float64(np.nan)),
    ("model_weights/encoder", "weight_names", np.array([[b"a"]])),
    ("/", "model_config", np.int64(3)),
    ("/", "model_config", b"\xff{"),
    ("/", "keras_version", np.array([1, 2])),
])
def test_h5_attributes_of_the_wrong_type(tmp_path, target, key, value):
    path = edit_h5(tmp_path, lambda h5: h5[target].attrs.__setitem__(key, value))
    try:
        check(path)
    except fastrnn.ModelFileError:
        pass


@pytest.mark.parametrize("value", [np.array([[b"a"]]), np.array(["a", "b"], dtype=h5py.string_dtype()), np.int64(3)])
def test_keras3_vars_name_of_the_wrong_type(tmp_path, value):
    def edit(name, data):
        if name != "model.weights.h5":
            return data
        buffer = io.BytesIO(data)
        with h5py.File(buffer, "r+") as h5:
            h5["layers/lstm/vars"].attrs["name"] = value
        return buffer.getvalue()
    check(rewrite_zip(FILES / "k3_lstm_backwards_gru.keras", tmp_path / "model.keras", edit))


def test_h5_global_heap_that_hangs_libhdf5_is_refused(tmp_path):
    """libhdf5 loops forever (holding the GIL) on a global heap collection that claims more bytes
    than its objects fill: found by the campaign as a hang."""
    data = bytearray((FILES / "k2_stacked_bidi.h5").read_bytes())
    heap = data.find(b"GCOL\x01")
    data[heap + 9] = 0x75                 # the collection's size: 0x2000 -> 0x7500 bytes
    path = tmp_path / "heap.h5"
    path.write_bytes(bytes(data))
    out = in_subprocess(f"import fastrnn\ntry:\n    fastrnn.load({str(path)!r})\nexcept fastrnn.ModelFileError as e:\n"
                        "    print(e)")
    assert "a damaged HDF5 global heap" in out


def test_h5_attribute_type_that_crashes_libhdf5_is_refused(tmp_path):
    """Reading a variable-length *sequence* where Keras writes a string segfaults libhdf5: found by
    the campaign as a crash (SIGSEGV)."""
    data = bytearray((FILES / "k2_embedding_gru.h5").read_bytes())
    data[data.find(b"keras_version\x00") + 17] = 0xA6      # the datatype's class bits
    path = tmp_path / "type.h5"
    path.write_bytes(bytes(data))
    out = in_subprocess(f"import fastrnn\ntry:\n    fastrnn.load({str(path)!r})\nexcept fastrnn.ModelFileError as e:\n"
                        "    print(e)")
    assert "attribute 'keras_version' of / is of HDF5 type class 9, not text or numbers" in out


def test_unknown_zip_version_is_refused(tmp_path):
    data = bytearray((FILES / "k3_lstm_backwards_gru.keras").read_bytes())
    entry = data.find(b"PK\x01\x02")
    data[entry + 6] = 0xFD                # "version needed to extract": 25.3 (NotImplementedError)
    path = tmp_path / "version.keras"
    path.write_bytes(bytes(data))
    refused(path, "zip file version")


# ---------------------------------------------------------------------------------- PyTorch
def torch_file(tmp_path, state):
    torch = pytest.importorskip("torch")
    path = tmp_path / "state.pt"
    torch.save(state, path)
    return path


def lstm_state():
    torch = pytest.importorskip("torch")
    return {k: v for k, v in torch.load(FILES / "t_lstm.pt", weights_only=True).items()}


@pytest.mark.parametrize("edit, message", [
    (lambda s, t: {**s, 0: s["weight_ih_l0"]}, "a tensor is named 0, not a string"),
    (lambda s, t: {**s, b"weight_ih_l0": s["weight_ih_l0"]}, "not a string"),
    (lambda s, t: {**s, "weight_hh_l0": s["weight_hh_l0"].to(t.float8_e4m3fn)}, "cannot be read as a NumPy array"),
    (lambda s, t: {**s, "weight_hh_l0": s["weight_hh_l0"].to("meta")}, "cannot be read as a NumPy array"),
    (lambda s, t: {**s, "weight_hh_l0": s["weight_hh_l0"].to_sparse()}, "cannot be read as a NumPy array"),
    (lambda s, t: {**s, "weight_ih_l0": s["weight_ih_l0"].flatten()}, "expected 2 non-empty dimensions"),
    (lambda s, t: {k: v[:0] for k, v in s.items()}, "expected . non-empty dimensions"),
    (lambda s, t: {**s, "weight_ih_l0": t.zeros(1).expand(10 ** 6, 10 ** 6)}, "more than fastrnn reads"),
    (lambda s, t: {**s, "bias_ih_l99999999999": s["bias_ih_l0"]}, r"tensors for layers \[0, 99999999999\]"),
], ids=["int-key", "bytes-key", "float8", "meta", "sparse", "rank", "empty", "stride-0-huge", "huge-layer-index"])
def test_torch_state_dicts_found_by_fuzzing(tmp_path, edit, message):
    torch = pytest.importorskip("torch")
    refused(torch_file(tmp_path, edit(lstm_state(), torch)), message)


def test_safetensors_with_zero_hidden_size(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "zero.safetensors"
    save_file({"weight_ih_l0": np.zeros((0, 3), np.float32), "weight_hh_l0": np.zeros((0, 0), np.float32)}, path)
    refused(path, "non-empty dimensions")


# ---------------------------------------------------------------------------------- fastrnn files
def native_file(tmp_path, seed="t_lstm_proj_h0_c0.safetensors"):
    path = tmp_path / "model.npz"
    fastrnn.load(FILES / seed).save(path)
    return path


def test_npy_header_claiming_a_huge_array_is_refused_before_reading(tmp_path):
    def claim(name, data):
        if name != "lstm_l0/0.npy":
            return data
        stream = io.BytesIO(data)
        np.lib.format.read_magic(stream)
        np.lib.format.read_array_header_1_0(stream)
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"shape": (2 ** 40,), "fortran_order": False, "descr": "<f8"})
        return header.getvalue() + data[stream.tell():]
    path = rewrite_zip(native_file(tmp_path), tmp_path / "claims.npz", claim)
    refused(path, r"header claims \(1099511627776,\) values")


def test_native_weights_that_do_not_fit_the_torch_config(tmp_path):
    def swap(name, data):               # the recurrent kernel where the kernel should be
        return {"lstm_l0/0.npy": "lstm_l0/1.npy"}.get(name, name), data
    src = native_file(tmp_path)
    out = tmp_path / "swapped.npz"
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(out, "w") as b, pytest.warns(UserWarning, match="Duplicate"):
        for name in a.namelist():
            new, data = swap(name, a.read(name))
            b.writestr(new, data)
    try:
        check(out)
    except fastrnn.ModelFileError:
        pass


def test_native_torch_config_with_a_huge_number_of_layers(tmp_path):
    def edit(name, data):
        if name != "__fastrnn__.npy":
            return data
        header = json.loads(str(np.load(io.BytesIO(data))))
        header["model"]["config"]["num_layers"] = 10 ** 12
        out = io.BytesIO()
        np.save(out, np.array(json.dumps(header)))
        return out.getvalue()
    refused(rewrite_zip(native_file(tmp_path), tmp_path / "layers.npz", edit), "num_layers 1000000000000")


def test_from_bytes_of_a_single_npy_array():
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    with pytest.raises(fastrnn.ModelFileError, match="a single NumPy array"):
        fastrnn.io.native.from_bytes(buffer.getvalue())
