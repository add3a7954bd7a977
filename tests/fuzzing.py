"""Hypothesis strategies that damage real model files, and the property every loader must keep.

Shared by tests/test_fuzz_loaders.py (a short, derandomized run in CI) and tests/fuzz_campaign.py
(a long campaign, each case in a subprocess). Not a test module itself.

`cases(fmt)` draws a `Case`: a real file from tests/data/files (or, for fastrnn's own format, one
written by ``model.save``) in one of the supported formats, damaged by one mutation:

- bytes: flipped at random positions, overwritten with boundary integers (sizes, offsets),
  truncated, spliced; of the whole file or of one member of a zip (so that a zip's CRC check does
  not hide the damage from the parser behind it);
- zip: members removed, renamed, duplicated, replaced; sizes and offsets in the central directory
  changed (claims of huge uncompressed sizes);
- JSON (``config.json``, ``model_config``, fastrnn's header): any field, or a field Keras gives a
  meaning (``units``, ``class_name``, ``keras_history``...), replaced by a wrong type, a huge,
  negative, zero or fractional number, null; a layer nested thousands deep; unknown classes;
- HDF5: datasets replaced by ones of the wrong shape or dtype (int, bool, complex, strings,
  object references, compound), empty, huge claimed (unallocated) sizes, groups, soft, dangling
  or external links; attributes (``weight_names``, ``name``, ``keras_version``,
  ``model_config``) of the wrong type;
- safetensors: header entries with wrong dtypes, shapes, offsets, names, a wrong header length;
- PyTorch: state dicts with missing, renamed, misshapen or mistyped tensors, non-tensor values,
  non-string keys, stride-0 views claiming huge sizes; integers in ``data.pkl`` replaced.

`check(path)` is the property: ``fastrnn.load`` raises `fastrnn.ModelFileError` naming the file,
or returns a model that runs on an input of the shape it declares.
"""
import contextlib
import io
import json
import math
import os
import pickletools
import struct
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np
from hypothesis import strategies as st

import fastrnn

FILES = Path(__file__).parent / "data" / "files"

SEEDS = {
    "keras": ("k3_lstm_backwards_gru.keras", "k3_encoder_decoder.keras", "k3_bidi_concat.keras",
              "k3_embedding_gru.keras", "stateful_lstm.keras"),
    "h5": ("k3_bidi_concat.h5", "k3_encoder_decoder.h5", "k2_stacked_bidi.h5", "k2_encoder_decoder.h5",
           "k2_embedding_gru.h5"),
    "safetensors": ("t_lstm_two_layers_bidirectional.safetensors", "t_lstm_proj_h0_c0.safetensors",
                    "t_gru_bidirectional_no_bias_h0.safetensors", "t_rnn_tanh.safetensors"),
    "pt": ("t_lstm.pt", "t_lstm_two_layers_bidirectional.pt", "t_gru_float64.pt"),
    # fastrnn's own format: these files loaded, then written with model.save
    "native": ("k3_encoder_decoder.keras", "k2_stacked_bidi.h5", "k3_embedding_gru.keras",
               "t_lstm_proj_h0_c0.safetensors"),
}
FORMATS = tuple(SEEDS)
SUFFIX = {"keras": ".keras", "h5": ".h5", "safetensors": ".safetensors", "pt": ".pt", "native": ".npz"}
MAX_INPUT_VALUES = 10 ** 6       # a loaded model declaring larger inputs is not run
MAX_OUTPUT_VALUES = 10 ** 8      # a layer output larger than this for a small input is a loader bug
MAX_ALLOCATION = 2 ** 30         # bytes a check may allocate (Linux): more fails at once

# Values of the wrong type or absurd size, for any JSON field.
JSON_VALUES = (None, True, False, 0, -1, 1, 2.5, -0.5, 1e308, float("nan"), float("inf"), 10 ** 12, -10 ** 12,
               2 ** 63, 10 ** 100, "", "x", "3", "lstm", "float16", "mixed_float16", [], [None], [1, 2, 3],
               [[[]]], [-1, 0], {}, {"a": 1}, {"class_name": "LSTM"}, {"class_name": "LSTM", "config": {}},
               {"class_name": "__keras_tensor__", "config": {"keras_history": ["x", 0, 0]}}, "a" * 5000)
SIZE_VALUES = (0, -1, -10 ** 12, 1, 2, 10 ** 4, 10 ** 6, 10 ** 9, 10 ** 12, 2 ** 31, 2 ** 63, 2 ** 64,
               1.5, 3.0, "4", None, [4], True)
SIZE_KEYS = ("units", "output_dim", "input_dim", "n", "target_shape", "batch_shape", "batch_input_shape",
             "build_input_shape", "axis", "input_size", "hidden_size", "num_layers", "proj_size",
             "keras_history", "shape", "version")
MEANINGFUL_KEYS = SIZE_KEYS + (
    "class_name", "config", "name", "layers", "layer", "backward_layer", "inbound_nodes", "args", "kwargs",
    "initial_state", "input_layers", "output_layers", "activation", "recurrent_activation", "merge_mode",
    "dtype", "use_bias", "return_sequences", "return_state", "go_backwards", "stateful", "reset_after",
    "mask_zero", "mask_value", "rate", "time_major", "mode", "bias", "bidirectional", "batch_first",
    "nonlinearity", "format", "model", "module")
CLASS_NAMES = ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed", "Dense", "Embedding",
               "RepeatVector", "Reshape", "Flatten", "Concatenate", "Add", "Masking", "InputLayer",
               "Sequential", "Functional", "Model", "TorchRNN", "Lambda", "Conv1D", "Attention", "", None, 7)
BOUNDARY_INTS = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                 2 ** 40, 2 ** 63 - 1, 2 ** 64 - 1)


@dataclass
class Case:
    """One damaged file: its format, the seed it came from, what was done, and its bytes."""

    fmt: str
    seed: str
    mutation: str
    data: bytes

    def __repr__(self):
        return f"Case({self.fmt!r}, {self.seed!r}, {self.mutation!r}, <{len(self.data)} bytes>)"

    @property
    def suffix(self):
        return SUFFIX[self.fmt]


def torch_available():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------- seeds
def _fixed_zip(entries, compression=zipfile.ZIP_STORED):
    """A zip of (name, bytes) entries, duplicates allowed, with fixed timestamps (reproducible)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # "Duplicate name"
        with zipfile.ZipFile(buffer, "w", compression) as archive:
            for name, data in entries:
                archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


@lru_cache(maxsize=None)
def seed_bytes(fmt, name):
    """The bytes of seed `name` for `fmt` (fastrnn files: the model of `name`, saved by fastrnn)."""
    if fmt != "native":
        return (FILES / name).read_bytes()
    from fastrnn.io.native import to_bytes

    with zipfile.ZipFile(io.BytesIO(to_bytes(fastrnn.load(FILES / name)))) as archive:
        return _fixed_zip([(info.filename, archive.read(info)) for info in archive.infolist()])


def _zip_entries(data):
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


# ---------------------------------------------------------------------------------- bytes
def mutate_bytes(draw, data, what="file"):
    """Flip, overwrite with boundary integers, truncate or splice `data`."""
    data = bytearray(data)
    kind = draw(st.sampled_from(("flip", "ints", "truncate", "splice")))
    if not data:
        return bytes(draw(st.binary(max_size=64))), f"{what}: replaced by random bytes"
    position = st.integers(0, len(data) - 1)
    if kind == "flip":
        flips = draw(st.lists(st.tuples(position, st.integers(1, 255)), min_size=1, max_size=16))
        for at, mask in flips:
            data[at] ^= mask
        return bytes(data), f"{what}: {len(flips)} byte(s) flipped at {sorted(at for at, _ in flips)[:8]}"
    if kind == "ints":
        writes = draw(st.lists(st.tuples(position, st.sampled_from(BOUNDARY_INTS), st.sampled_from((1, 2, 4, 8)),
                                         st.sampled_from(("<", ">"))), min_size=1, max_size=4))
        for at, value, width, order in writes:
            value &= (1 << (8 * width)) - 1
            data[at:at + width] = value.to_bytes(width, "little" if order == "<" else "big")
        return bytes(data), f"{what}: integers written at {[w[:3] for w in writes]}"
    if kind == "truncate":
        length = draw(st.integers(0, len(data) - 1))
        return bytes(data[:length]), f"{what}: truncated to {length} of {len(data)} bytes"
    start = draw(position)
    end = draw(st.integers(start, min(len(data), start + 256)))
    how = draw(st.sampled_from(("delete", "duplicate", "insert")))
    if how == "delete":
        del data[start:end]
    elif how == "duplicate":
        data[start:start] = data[start:end]
    else:
        data[start:start] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data), f"{what}: {how} bytes {start}:{end}"


# ---------------------------------------------------------------------------------- zip
def mutate_zip(draw, data):
    """Remove, rename, duplicate or replace members, add many, or change the sizes and offsets the
    central directory claims."""
    entries = _zip_entries(data)
    names = [name for name, _ in entries]
    kind = draw(st.sampled_from(("remove", "rename", "duplicate", "replace", "extra", "claims", "claims", "deflate")))
    index = draw(st.integers(0, len(entries) - 1))
    name, content = entries[index]
    if kind == "remove":
        del entries[index]
        return _fixed_zip(entries), f"member {name!r} removed"
    if kind == "rename":
        new = draw(st.sampled_from(names + ["", "x", "../../evil", "/abs/path", name.upper(), name + "/",
                                            "data.pkl", "config.json", "__fastrnn__.npy", "a" * 300]))
        entries[index] = (new, content)
        return _fixed_zip(entries), f"member {name!r} renamed {new!r}"
    if kind == "duplicate":
        other = draw(st.sampled_from([content, b"", b"{}", draw(st.binary(max_size=64))]))
        entries.insert(draw(st.integers(0, len(entries))), (name, other))
        return _fixed_zip(entries), f"member {name!r} duplicated ({len(other)} bytes)"
    if kind == "replace":
        other = draw(st.sampled_from([b"", b"null", b"[]", b"{}", b"\x89HDF\r\n\x1a\n", entries[0][1],
                                      draw(st.binary(max_size=256))]))
        entries[index] = (name, other)
        return _fixed_zip(entries), f"member {name!r} replaced by {other[:16]!r}"
    if kind == "extra":
        extra = [(f"extra/{i}", b"x" * i) for i in range(draw(st.integers(1, 50)))]
        return _fixed_zip(entries + extra), f"{len(extra)} extra members"
    if kind == "deflate":
        return _fixed_zip(entries, zipfile.ZIP_DEFLATED), "members deflated (a valid file)"
    return _zip_claims(draw, data)


def _zip_claims(draw, data):
    """Change a size, offset, count or method that the central directory or EOCD claims."""
    data = bytearray(data)
    central = [i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i)]
    eocd = data.rfind(b"PK\x05\x06")
    fields = [(at, offset, width) for at in central
              for offset, width in ((10, 2), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4))]
    fields += [(eocd, offset, width) for offset, width in ((8, 2), (10, 2), (12, 4), (16, 4))]
    at, offset, width = draw(st.sampled_from(fields))
    value = draw(st.sampled_from(BOUNDARY_INTS + (8, 12, 14, 99))) & ((1 << (8 * width)) - 1)
    data[at + offset:at + offset + width] = value.to_bytes(width, "little")
    return bytes(data), f"zip field at {at}+{offset} set to {value}"


# ---------------------------------------------------------------------------------- JSON
class _Raw:
    """JSON text spliced in as it is (nesting too deep for json.dumps)."""

    def __init__(self, text):
        self.text = text


def deep_layer(depth, wrapper):
    """A layer spec nested `depth` deep in TimeDistributed/Bidirectional wrappers, as JSON text."""
    head = '{"class_name": "%s", "config": {"name": "w%%d", "layer": ' % wrapper
    inner = '{"class_name": "LSTM", "config": {"name": "inner", "units": 2}}'
    return _Raw("".join(head % i for i in range(depth)) + inner + "}}" * depth)


def _inserted_layer(draw):
    """A layer spec to insert into a model: weightless layers with fuzzed sizes, or a Dense without weights."""
    size = st.sampled_from(SIZE_VALUES)
    value = st.sampled_from(JSON_VALUES)
    class_name, config = draw(st.sampled_from((
        ("RepeatVector", {"n": draw(size)}),
        ("Reshape", {"target_shape": draw(st.sampled_from(([-1], [draw(size), -1], [draw(size)], [-1, -1], [], None)))}),
        ("Flatten", {}), ("Masking", {"mask_value": draw(value)}), ("Dropout", {"rate": draw(value)}),
        ("Activation", {"activation": draw(st.sampled_from(("softmax", "relu", "nope", None, 3, {"config": 5})))}),
        ("GaussianNoise", {"stddev": draw(value)}), ("Dense", {"units": draw(size)}),
        ("TimeDistributed", {"layer": {"class_name": "Dropout", "config": {"name": "td_inner", "rate": 0.5}}}),
        ("Concatenate", {"axis": draw(size)}), ("Add", {}), ("Lambda", {"function": "os.system('x')"}))))
    return {"class_name": class_name, "config": {"name": "fuzz_inserted", **config}}


def _insert_layer(draw, doc):
    """Insert a layer into the first list of layers of a model config (wired in, if functional)."""
    lists = [p for p in _paths(doc) if p and p[-1] == "layers"]
    if not lists:
        return None
    parent = doc
    for key in lists[0][:-1]:
        parent = parent[key]
    layers, spec = parent["layers"], _inserted_layer(draw)
    named = [l.get("name") or l.get("config", {}).get("name") for l in layers if isinstance(l, dict)]
    if "inbound_nodes" in json.dumps(layers) and named:          # functional: call it on some layer's output
        source = draw(st.sampled_from(named))
        spec.update(name="fuzz_inserted", inbound_nodes=[{"args": [{"class_name": "__keras_tensor__", "config": {
            "keras_history": [source, 0, 0]}}], "kwargs": {}}])
        layers.append(spec)
        if draw(st.booleans()):
            parent["output_layers"] = [["fuzz_inserted", 0, 0]]
    else:                 # after any Embedding: fastrnn's Embedding takes integers only
        first = 1 + max((i for i, l in enumerate(layers) if isinstance(l, dict) and l.get("class_name") == "Embedding"),
                        default=-1)
        layers.insert(draw(st.integers(first, len(layers))), spec)
    return spec


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, path + (i,))


def _dumps(value):
    raws = []

    def default(obj):
        raws.append(obj.text)
        return f"__raw_{len(raws) - 1}__"

    text = json.dumps(value, default=default)
    for i, raw in enumerate(raws):
        text = text.replace(f'"__raw_{i}__"', raw)
    return text


def mutate_json(draw, text):
    """A field of the JSON document `text` replaced, removed or nested deep; returns new text."""
    try:
        doc = json.loads(text)
    except ValueError:
        return mutate_bytes(draw, text.encode() if isinstance(text, str) else text, "JSON")[0].decode(
            "utf-8", "replace"), "JSON (not JSON already): bytes"
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return _dumps(draw(st.sampled_from(JSON_VALUES))), "JSON document replaced"
    meaningful = [p for p in paths if p[-1] in MEANINGFUL_KEYS]
    path = draw(st.sampled_from(meaningful if meaningful and draw(st.booleans()) else paths))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    kind = draw(st.sampled_from(("value", "value", "size", "class", "delete", "deep", "swap", "insert")))
    if kind == "insert":
        spec = _insert_layer(draw, doc)
        if spec is not None:
            return _dumps(doc), f"JSON layer inserted: {json.dumps(spec)[:120]}"
        kind = "value"
    if kind == "value" or (kind == "size" and key not in SIZE_KEYS):
        value = draw(st.sampled_from(JSON_VALUES))
    elif kind == "size":
        value = draw(st.sampled_from(SIZE_VALUES))
        old = parent[key]
        if isinstance(old, list) and old and draw(st.booleans()):   # one entry of a shape
            value, index = list(old), draw(st.integers(0, len(old) - 1))
            value[index] = draw(st.sampled_from(SIZE_VALUES))
    elif kind == "class":
        value = draw(st.sampled_from(CLASS_NAMES))
        key, parent = ("class_name", parent[key]) if isinstance(parent[key], dict) else (key, parent)
    elif kind == "delete":
        del parent[key]
        return _dumps(doc), f"JSON {list(path)} deleted"
    elif kind == "deep":
        value = deep_layer(draw(st.sampled_from((2, 17, 300, 600, 900, 3000, 30000))),
                           draw(st.sampled_from(("TimeDistributed", "Bidirectional"))))
    else:                                        # swap with another field's value
        other = draw(st.sampled_from(paths))
        value = doc
        for k in other:
            value = value[k]
        value = json.loads(json.dumps(value))
    parent[key] = value
    shown = value.text[:40] + "..." if isinstance(value, _Raw) else repr(value)[:60]
    return _dumps(doc), f"JSON {list(path)} ({kind}) = {shown}"


# ---------------------------------------------------------------------------------- HDF5
def _bad_dataset(draw, group, name, old_shape):
    """Create `group[name]` as a dataset (or other object) that does not fit."""
    kind = draw(st.sampled_from(("shape", "dtype", "dtype", "empty", "scalar", "huge", "group", "soft", "dangling",
                                 "external", "hard", "nan")))
    if kind == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 6), max_size=3)))
        group.create_dataset(name, data=np.ones(shape, np.float32))
    elif kind == "dtype":
        dtype = draw(st.sampled_from(("i4", "i8", "u1", "?", "c8", "c16", "f2", "S7", "str", "ref", "regionref",
                                      "compound", "enum", "vlen")))
        shape = old_shape if draw(st.booleans()) else (2,)
        count = int(np.prod(shape))
        if dtype == "str":
            group.create_dataset(name, data=np.array(["x"] * count, dtype=object).reshape(shape),
                                 dtype=h5py.string_dtype())
        elif dtype == "ref":
            refs = np.array([group.file.ref] * count, dtype=h5py.ref_dtype).reshape(shape)
            group.create_dataset(name, data=refs, dtype=h5py.ref_dtype)
        elif dtype == "regionref":
            group.create_dataset(name, shape, dtype=h5py.regionref_dtype)
        elif dtype == "compound":
            group.create_dataset(name, shape, dtype=np.dtype([("a", "f4"), ("b", "i4")]))
        elif dtype == "enum":
            group.create_dataset(name, shape, dtype=h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1"))
        elif dtype == "vlen":
            group.create_dataset(name, shape, dtype=h5py.vlen_dtype(np.float32))
        else:
            group.create_dataset(name, data=np.ones(shape, dtype))
    elif kind == "empty":
        group.create_dataset(name, data=h5py.Empty("f4"))
    elif kind == "scalar":
        group.create_dataset(name, data=np.float32(1))
    elif kind == "huge":           # claimed, never written: HDF5 allocates nothing
        shape = draw(st.sampled_from(((2 ** 40,), (10 ** 6, 10 ** 6), tuple(10 ** 5 * d for d in old_shape) or (10 ** 9,),
                                      old_shape[:1] + (2 ** 31,))))
        group.create_dataset(name, shape, dtype="f8", chunks=(1,) * len(shape))
    elif kind == "group":
        group.create_group(name)
    elif kind == "soft":           # a link to itself: a cycle
        group[name] = h5py.SoftLink(f"{group.name}/{name}")
    elif kind == "dangling":
        group[name] = h5py.SoftLink("/nowhere/at/all")
    elif kind == "external":
        group[name] = h5py.ExternalLink("/nonexistent/fastrnn_fuzz.h5", "/x")
    elif kind == "hard":           # another object of the file
        group[name] = group.file["/"]
    else:                          # fits, but NaN: a valid file
        group.create_dataset(name, data=np.full(old_shape, np.nan, np.float32))
    return kind


def _bad_attribute(draw, obj, key):
    value = draw(st.sampled_from((np.int64(3), np.array([1, 2]), np.array([], "f8"), b"\xff\xfe", "",
                                  np.array([b"\xff", b"x"]), np.array([[b"a"]]), "not json {", "null", "[]", "5",
                                  np.float64(np.nan), np.array(["a", "b"], dtype=h5py.string_dtype()))))
    obj.attrs[key] = value
    return f"attribute {obj.name}@{key} = {value!r:.40}"


def mutate_h5(draw, data, what="h5"):
    """Replace a dataset, an attribute, or delete an object of the HDF5 file `data`."""
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5:
        datasets, groups, attributes = [], [], []

        def visit(name, obj):
            (datasets if isinstance(obj, h5py.Dataset) else groups).append(name)
            attributes.extend((name, key) for key in obj.attrs)

        h5.visititems(visit)
        attributes += [("/", key) for key in h5.attrs]
        kind = draw(st.sampled_from(("dataset", "dataset", "dataset", "attribute", "delete")))
        if kind == "dataset" and datasets:
            path = draw(st.sampled_from(sorted(datasets)))
            parent, name = h5[path].parent, path.rsplit("/", 1)[-1]
            old_shape = h5[path].shape
            del parent[name]
            description = f"{what}: dataset {path} {old_shape} -> {_bad_dataset(draw, parent, name, old_shape)}"
        elif kind == "attribute" and attributes:
            name, key = draw(st.sampled_from(sorted(attributes)))
            obj = h5[name]
            if key == "model_config" and draw(st.booleans()):
                new, description = mutate_json(draw, obj.attrs[key])
                obj.attrs[key] = new
                description = f"{what}: model_config {description}"
            else:
                description = f"{what}: {_bad_attribute(draw, obj, key)}"
        else:
            path = draw(st.sampled_from(sorted(datasets + groups)))
            del h5[path]
            description = f"{what}: {path} deleted"
    return buffer.getvalue(), description


# ---------------------------------------------------------------------------------- safetensors
def _split_safetensors(data):
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


def mutate_safetensors(draw, data):
    """Damage the header: a tensor's dtype, shape, offsets or name, the metadata, or its length."""
    header, body = _split_safetensors(data)
    names = sorted(k for k in header if k != "__metadata__")
    name = draw(st.sampled_from(names))
    entry = header[name]
    kind = draw(st.sampled_from(("dtype", "shape", "offsets", "rename", "delete", "metadata", "length", "json")))
    if kind == "dtype":
        entry["dtype"] = draw(st.sampled_from(("F16", "BF16", "F64", "F32", "I64", "I32", "I8", "U8", "BOOL",
                                               "F8_E4M3", "F8_E5M2", "C64", "XYZ", 5, None)))
        detail = entry["dtype"]
    elif kind == "shape":
        shape = entry["shape"]
        entry["shape"] = draw(st.sampled_from((shape[::-1], shape[:-1], shape + [1], [], [0], [0, 0], [-1],
                                               [2 ** 40], [10 ** 6, 10 ** 6], [2 ** 64], [1.5], ["3"], None, [[2]])))
        detail = entry["shape"]
    elif kind == "offsets":
        begin, end = entry["data_offsets"]
        entry["data_offsets"] = draw(st.sampled_from(([end, begin], [begin, begin], [0, len(body) + 1],
                                                      [begin, 2 ** 40], [-1, end], [begin + 1, end + 1],
                                                      [0, end - begin], [begin], [1.5, end], None)))
        detail = entry["data_offsets"]
    elif kind == "rename":
        new = draw(st.sampled_from((name + "_reverse", name.replace("l0", "l1"), name.replace("l0", "l99999999999"),
                                    name.replace("l0", "l-1"), "x", "", "weight_ih_l0", "module." + name)))
        header[new] = header.pop(name)
        detail = new
    elif kind == "delete":
        del header[name]
        detail = ""
    elif kind == "metadata":
        header["__metadata__"] = draw(st.sampled_from(({"format": 5}, [], None, "x", {"a": {"b": 1}})))
        detail = header["__metadata__"]
    text = json.dumps(header).encode()
    if kind == "json":
        text, _ = mutate_bytes(draw, text, "header")
        detail = ""
    length = len(text)
    if kind == "length":
        length = draw(st.sampled_from((0, 1, 7, length - 1, length + 1, length + 8, len(text) + len(body) + 1,
                                       2 ** 32, 2 ** 40 - 1, 2 ** 63)))
        detail = length
    return length.to_bytes(8, "little") + text + body, f"safetensors header: {kind} of {name!r} = {detail!r:.60}"


# ---------------------------------------------------------------------------------- state dicts
def _state_dict(fmt, seed):
    if fmt == "safetensors":
        from safetensors.numpy import load

        return dict(load(seed_bytes(fmt, seed)))
    import torch

    return {k: v.numpy() for k, v in torch.load(io.BytesIO(seed_bytes(fmt, seed)), weights_only=True).items()}


def mutate_state_dict(draw, fmt, seed):
    """A state dict with a tensor missing, renamed, reshaped, retyped, or (.pt) worse, saved again."""
    tensors = _state_dict(fmt, seed)
    names = sorted(tensors)
    name = draw(st.sampled_from(names))
    array = tensors[name]
    kinds = ["delete", "rename", "shape", "dtype", "extra", "zero"]
    if fmt == "pt":
        kinds += ["key", "value", "wrap", "huge", "exotic", "strided"]
    kind = draw(st.sampled_from(kinds))
    detail = ""
    if kind == "delete":
        del tensors[name]
    elif kind == "rename":
        new = draw(st.sampled_from((name + "_reverse", name.replace("l0", "l1"), name.replace("_l", "_l9"),
                                    name.replace("l0", "l99999999999"), name.replace("weight", "bias"),
                                    name.replace("ih", "hr"), "weight_hr_l0", "module." + name, "x")))
        tensors[new] = tensors.pop(name)
        detail = new
    elif kind == "shape":
        shape = draw(st.sampled_from((array.shape[::-1], array.shape[:-1], array.shape + (1,), (), (0,), (0, 0),
                                      (array.shape[0], 0), (1,) * 5, (array.shape[0] * 2,) + array.shape[1:],
                                      (array.shape[0] // 2,) + array.shape[1:])))
        tensors[name] = np.ones(shape, array.dtype)
        detail = shape
    elif kind == "dtype":
        dtype = draw(st.sampled_from(("f2", "f8", "i4", "i8", "u1", "?") + (("c8",) if fmt == "pt" else ())))
        tensors[name] = array.astype(dtype)
        detail = dtype
    elif kind == "extra":
        tensors[draw(st.sampled_from(("extra", "weight_ih_l7", "bias_hh_l0_reverse", "weight_hr_l0")))] = array
    elif kind == "zero":
        hidden0 = {k: np.zeros((0,) + v.shape[1:], v.dtype) for k, v in tensors.items()}
        tensors = hidden0 if draw(st.booleans()) else {k: np.zeros(v.shape[:1] + (0,) * (v.ndim - 1), v.dtype)
                                                       for k, v in tensors.items()}
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save({k: np.ascontiguousarray(v) for k, v in tensors.items()}), f"state dict: {kind} {name!r} {detail!r:.60}"

    import torch

    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    if kind == "key":
        state[draw(st.sampled_from((0, None, 1.5, ("weight_ih_l0",), b"weight_ih_l0")))] = state.pop(name)
    elif kind == "value":
        state[name] = draw(st.sampled_from((1, 2.5, "x", None, [1.0, 2.0], {"a": torch.ones(2)}, (torch.ones(2),),
                                            True, b"bytes")))
        detail = repr(state[name])[:40]
    elif kind == "wrap":
        state = draw(st.sampled_from(({"state_dict": state}, {"model": state, "epoch": 3}, [state], (state,),
                                      {"state_dict": 5}, torch.ones(3), {"model_state_dict": {"a": state}}, 7, None)))
    elif kind == "huge":          # stride-0 views: a huge shape over a tiny storage
        shape = draw(st.sampled_from(((10 ** 6, 10 ** 6), (2 ** 31, 4), (10 ** 5, array.shape[-1]))))
        state[name] = torch.zeros(1, dtype=torch.float32).expand(*shape)
        detail = shape
    elif kind == "exotic":
        value = torch.from_numpy(np.ascontiguousarray(array, np.float32))
        value = draw(st.sampled_from(("bf16", "sparse", "complex", "meta", "param", "f16", "uint16")))
        detail = value
        base = state[name]
        state[name] = {"bf16": lambda: base.to(torch.bfloat16), "sparse": lambda: base.float().to_sparse(),
                       "complex": lambda: base.to(torch.complex64), "meta": lambda: base.to("meta"),
                       "param": lambda: torch.nn.Parameter(base.float()), "f16": lambda: base.half(),
                       "uint16": lambda: base.to(torch.uint16)}[value]()
    elif kind == "strided":      # a non-contiguous view
        state[name] = torch.stack([state[name], state[name]], -1)[..., 0]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue(), f"state dict: {kind} {name!r} {detail!r:.60}"


def mutate_pickle_int(draw, data):
    """Replace one integer of a pickle (a storage size, offset, shape or stride in data.pkl)."""
    ops = list(pickletools.genops(data))
    ints = [i for i, (op, _, _) in enumerate(ops) if op.name in ("BININT", "BININT1", "BININT2", "LONG1", "INT")]
    if not ints:
        return mutate_bytes(draw, data, "data.pkl")
    index = draw(st.sampled_from(ints))
    start = ops[index][2]
    end = ops[index + 1][2]
    value = draw(st.sampled_from((0, -1, 1, 2 ** 31 - 1, 2 ** 31, -2 ** 31, 2 ** 40, 2 ** 62, 2 ** 63, 2 ** 64, 10 ** 30)))
    if -2 ** 31 <= value < 2 ** 31:
        encoded = b"J" + struct.pack("<i", value)
    else:
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        encoded = b"\x8a" + bytes([len(raw)]) + raw
    return data[:start] + encoded + data[end:], f"data.pkl: integer {ops[index][1]} at {start} -> {value}"


# ---------------------------------------------------------------------------------- strategies
def mutate_member(draw, data, match, mutate):
    """Apply `mutate(draw, content)` to one member of the zip `data` whose name `match`es."""
    entries = _zip_entries(data)
    index = draw(st.sampled_from([i for i, (name, _) in enumerate(entries) if match(name)]))
    name, content = entries[index]
    content, what = mutate(draw, content)
    entries[index] = (name, content)
    return _fixed_zip(entries), f"{name}: {what}"


def _json_bytes(draw, content):
    text, what = mutate_json(draw, content.decode("utf-8", "replace"))
    return text.encode(), what


def mutate_model_config(draw, data):
    """The ``model_config`` attribute of a legacy HDF5 file, mutated as JSON."""
    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5:
        text, what = mutate_json(draw, h5.attrs["model_config"])
        h5.attrs["model_config"] = text
    return buffer.getvalue(), f"model_config {what}"


def _native_header(draw, content):
    text, what = mutate_json(draw, str(np.load(io.BytesIO(content), allow_pickle=False)))
    out = io.BytesIO()
    np.save(out, np.array(text))
    return out.getvalue(), what


def mutate_npy(draw, content):
    """A ``.npy`` member whose header claims another shape or dtype than the data it holds."""
    stream = io.BytesIO(content)
    version = np.lib.format.read_magic(stream)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    body = content[stream.tell():]
    shape = draw(st.sampled_from((shape, shape[::-1], (2 ** 40,), (10 ** 6, 10 ** 6), (0,), (), shape + (2,),
                                  (2 ** 62, 4))))
    dtype = draw(st.sampled_from((dtype, np.dtype("<f8"), np.dtype("<f2"), np.dtype("<i4"), np.dtype("|b1"),
                                  np.dtype("<c8"), np.dtype("<U3"), np.dtype("|V4"), np.dtype([("a", "<f4")]))))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"shape": shape, "fortran_order": fortran, "descr":
                                                  np.lib.format.dtype_to_descr(dtype)})
    return header.getvalue() + body, f".npy header claims {shape} of {dtype}"


FAMILIES = {
    "keras": ("bytes", "zip", "json", "h5"),
    "h5": ("bytes", "h5", "json"),
    "native": ("bytes", "zip", "json", "npy"),
    "pt": ("bytes", "zip", "pickle", "state"),
    "safetensors": ("bytes", "header", "state"),
}


@st.composite
def cases(draw, fmt=None, family=None):
    """A damaged file of format `fmt` (any if None), by a mutation of `family` (any of the
    format's `FAMILIES` if None)."""
    fmt = fmt or draw(st.sampled_from(FORMATS))
    family = family or draw(st.sampled_from(FAMILIES[fmt]))
    seed = draw(st.sampled_from(SEEDS[fmt]))
    data = seed_bytes(fmt, seed)
    if family == "bytes":                      # the whole file, or (zip formats) one member
        if fmt in ("keras", "native", "pt") and draw(st.booleans()):
            data, what = mutate_member(draw, data, lambda name: True, mutate_bytes)
        else:
            data, what = mutate_bytes(draw, data)
    elif family == "zip":
        data, what = mutate_zip(draw, data)
    elif family == "json" and fmt == "keras":
        data, what = mutate_member(draw, data, lambda name: name == "config.json", _json_bytes)
    elif family == "json" and fmt == "native":
        data, what = mutate_member(draw, data, lambda name: name == "__fastrnn__.npy", _native_header)
    elif family == "json":
        data, what = mutate_model_config(draw, data)
    elif family == "h5" and fmt == "keras":
        data, what = mutate_member(draw, data, lambda name: name.endswith(".h5"), mutate_h5)
    elif family == "h5":
        data, what = mutate_h5(draw, data)
    elif family == "npy":
        data, what = mutate_member(draw, data, lambda name: name != "__fastrnn__.npy", mutate_npy)
    elif family == "pickle":
        data, what = mutate_member(draw, data, lambda name: name.endswith("data.pkl"), mutate_pickle_int)
    elif family == "header":
        data, what = mutate_safetensors(draw, data)
    else:
        data, what = mutate_state_dict(draw, fmt, seed)
    return Case(fmt, seed, what, data)


# ---------------------------------------------------------------------------------- property
def _fill(shape, consumers):
    """`shape` with its unknown sizes (but the batch's) taken from the input shapes the layers
    that read it were built with (from their weights)."""
    shape = list(shape)
    for layer in consumers:
        built = getattr(layer, "input_shape", None)
        if isinstance(built, tuple) and len(built) == len(shape):
            shape = [d if d is not None or i == 0 else b for i, (d, b) in enumerate(zip(shape, built))]
    return tuple(shape)


def _flat(value):
    return [v for item in value for v in _flat(item)] if isinstance(value, (list, tuple)) else [value]


def sample_inputs(model):
    """Inputs of the shapes `model` declares (unknown sizes taken from the layers that read them,
    else the batch size another input declares or 2, and 3 elsewhere), or None if unknown, too
    large, or not one a fixed Reshape of a variable size could take."""
    from fastrnn.models import TorchRNN

    declared = [model.input_shape] if isinstance(model, fastrnn.Sequential) else [
        t.shape for t in getattr(model, "inputs", [])]
    batch = next((shape[0] for shape in declared if shape and shape[0] is not None), 2)   # one batch size for all

    def make(shape, dtype):
        if any(isinstance(layer, fastrnn.Reshape) for layer in model.layers) and None in shape[1:]:
            return None
        shape = tuple(batch if i == 0 and d is None else (3 if d is None else d) for i, d in enumerate(shape))
        if math.prod(shape) > MAX_INPUT_VALUES:
            return None
        return np.zeros(shape, dtype) if dtype.kind in "iu" else np.full(shape, 0.5, dtype)

    if isinstance(model, TorchRNN):
        return make((3, 2, model.input_size), model.dtype)
    if isinstance(model, fastrnn.Sequential):
        if model.input_shape is None:
            return None
        integer = any(isinstance(layer, fastrnn.Embedding) for layer in model.layers)   # token ids
        return make(_fill(model.input_shape, model.layers[:1]), np.dtype("int32" if integer else "float32"))
    arrays = [make(_fill(t.shape, [node.layer for node in model._nodes if any(x is t for x in _flat(node.inputs))]),
                   t.dtype) for t in model.inputs]
    if any(a is None for a in arrays):
        return None
    return arrays if len(arrays) > 1 else arrays[0]


def _concrete(shape, dims=3):
    return math.prod(2 if i == 0 and d is None else (dims if d is None else d) for i, d in enumerate(shape))


def largest_output(model):
    """The most values any layer of `model` outputs for the inputs of `sample_inputs` (as declared)."""
    if isinstance(model, fastrnn.Sequential):
        shapes = model._output_shapes or []
    elif isinstance(model, fastrnn.Model):
        shapes = [t.shape for node in model._nodes for t in node.outputs]
    else:
        return 0
    return max((_concrete(shape) for shape in shapes if isinstance(shape, tuple)), default=0)


@contextlib.contextmanager
def memory_guard(headroom=MAX_ALLOCATION):
    """Let the process map at most `headroom` more bytes (Linux; elsewhere, or with the environment
    variable FASTRNN_FUZZ_NO_GUARD set, nothing), so a runaway allocation fails at once (a
    MemoryError in Python, an error in libhdf5) instead of swapping."""
    if os.environ.get("FASTRNN_FUZZ_NO_GUARD"):
        yield
        return
    try:
        import resource

        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = size + headroom
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY:
        limit = min(limit, soft)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check(path):
    """The property: a ModelFileError naming `path`, or a model that runs. Returns the outcome.

    Any other exception propagates (a loader bug), MemoryError included: loading and running
    may allocate at most MAX_ALLOCATION bytes.
    """
    with memory_guard():
        return _check(path)


def _check(path):
    try:
        model = fastrnn.load(path)
    except fastrnn.ModelFileError as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
        return "ModelFileError"
    inputs = sample_inputs(model)
    if inputs is None:
        return "loaded (not run: input shape unknown or too large)"
    largest = largest_output(model)
    assert largest <= MAX_OUTPUT_VALUES, f"a layer outputs {largest} values for a small input"
    with np.errstate(all="ignore"):
        model(inputs)
    return "loaded and ran"
