"""fastrnn's own file format: a framework-free ``.npz`` that `fastrnn.load` reads back exactly.

Layout (a NumPy ``.npz``, read with ``allow_pickle=False``, so loading runs no code):

- ``__fastrnn__``: a 0-d unicode array holding JSON ``{"format": "fastrnn", "version": 3,
  "fastrnn_version": ..., "model": <config>}``, where ``<config>`` is a Keras 3 style model
  configuration (``{"class_name": "Sequential" | "Functional", "config": {...}}``, layers as
  ``{"class_name", "config"}`` with their `get_config`, functional ``inbound_nodes`` as Keras 3
  writes them, plus ``"passes_mask": true`` on a call loaded from Keras 2 that is given the mask
  flowing in where Keras 3 would not give it, ``"keras2_mask": true`` on a merge layer from
  Keras 2, and ``"operation"`` on each layer of a functional model, true where it stands for a
  Keras 3 operation (not one of ``model.layers``); version 1 files gave every call that mask,
  versions 1 and 2 merged masks as Keras 2)
  or ``{"class_name": "TorchRNN", "config": {mode, input_size, hidden_size, ...}}``;
- ``<layer name>/<i>``: the i-th weight of each layer, in Keras order and layout.

A deployment needs neither h5py nor torch to read it.
"""
import io
import json
import os
import zipfile

import numpy as np

from ..errors import ModelFileError
from ..layers import _Merge

__all__ = ["from_bytes", "load_native", "save", "to_bytes"]

FORMAT_KEY = "__fastrnn__"
VERSION = 3   # 2: functional calls follow Keras 3's masks (see Node.passes_mask); 3: so do merges


def _tensor_spec(tensor, node_index_of):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(tensor.shape), "dtype": tensor.dtype.name,
                       "keras_history": [tensor.node.layer.name, node_index_of[id(tensor.node)], tensor.index]}}


def _batch_shape(model, shape):
    """`shape` as saved: with the batch size the model's stateful layers were declared for, which
    may be an inner model's (the layers themselves are rebuilt from their weights, without it)."""
    return [model._required_batch if shape[0] is None else shape[0], *shape[1:]]


def _model_config(model):
    from ..base import Node
    from ..models import InputLayer, Model, Sequential, TorchRNN

    def layer_spec(layer):
        return {"class_name": type(layer).__name__, "config": layer.get_config()}

    if isinstance(model, TorchRNN):
        return {"class_name": "TorchRNN", "config": model.get_config()}
    if isinstance(model, Sequential):
        if model.input_shape is None:
            raise ValueError(f"model {model.name!r} is not built: call it once or give it an input shape before saving")
        layers = [{"class_name": "InputLayer", "config": {"batch_shape": _batch_shape(model, model.input_shape),
                                                          "name": None}}]
        return {"class_name": "Sequential", "config": {"name": model.name, "layers": layers + [layer_spec(l) for l in model.layers]}}
    if isinstance(model, Model):
        node_index_of, calls, specs = {}, {}, {}
        for layer in model._graph_layers:
            if isinstance(layer, InputLayer):
                node_index_of[id(layer.output.node)] = 0
                specs[layer.name] = {"class_name": "InputLayer", "name": layer.name, "inbound_nodes": [],
                                     "config": {"batch_shape": _batch_shape(model, layer.batch_shape),
                                                "dtype": layer.input_dtype.name, "name": layer.name}}
            else:
                specs[layer.name] = {**layer_spec(layer), "name": layer.name, "inbound_nodes": [],
                                     "operation": layer._operation}
        for node in model._nodes:
            node_index_of[id(node)] = calls.get(node.layer.name, 0)
            calls[node.layer.name] = node_index_of[id(node)] + 1

            def encode(value):
                if isinstance(value, (list, tuple)):
                    return [encode(v) for v in value]
                return _tensor_spec(value, node_index_of)

            specs[node.layer.name]["inbound_nodes"].append({
                "args": [encode(node.inputs)],
                "kwargs": {key: encode(value) for key, value in node.kwargs.items()},
                # a call that Keras 3 would not give the mask flowing in, given it (Keras 2's)
                **({"passes_mask": True}
                   if node.passes_mask and not Node.passes_mask_in_keras3(node.kwargs) else {}),
            })
        refs = lambda tensors: [[t.node.layer.name, node_index_of[id(t.node)], t.index] for t in tensors]  # noqa: E731
        inputs = refs(model.inputs)
        if model._input_keys:     # made from a dict: the keys, as Keras 3 writes them
            inputs = dict(zip(model._input_keys, inputs))
        return {"class_name": "Functional", "config": {
            "name": model.name, "layers": [specs[layer.name] for layer in model._graph_layers],
            "input_layers": inputs, "output_layers": refs(model.outputs)}}
    raise TypeError(f"cannot save a {type(model).__name__}; fastrnn saves Sequential, Model and TorchRNN models")


_OTHER_FORMATS = {".keras": "a Keras archive", ".h5": "Keras HDF5", ".hdf5": "Keras HDF5", ".pt": "a PyTorch file",
                  ".pth": "a PyTorch file", ".safetensors": "safetensors"}


def save(model, path):
    """Write `model` to `path` in fastrnn's own format (see the module docstring).

    Parameters
    ----------
    model : Sequential, Model or TorchRNN
    path : str or os.PathLike
        Written as given; ``.npz`` is the usual name.

    Raises
    ------
    ValueError
        For a name another framework's format uses (``.keras``, ``.h5``, ``.pt`` ...): the file
        would not be one, and that framework could not read it.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in _OTHER_FORMATS:
        raise ValueError(f"{os.fspath(path)}: model.save writes fastrnn's own format, not {_OTHER_FORMATS[suffix]}; "
                         "name the file .npz (fastrnn.load reads it back)")
    data = to_bytes(model)   # every check first: a refused model leaves the file as it was
    with open(path, "wb") as f:
        f.write(data)


def to_bytes(model):
    """Return `model` in fastrnn's own format, as the bytes `save` would write to a file.

    `from_bytes` reads them back exactly; this is how models pickle (``__reduce__``).

    Parameters
    ----------
    model : Sequential, Model or TorchRNN

    Returns
    -------
    bytes
    """
    buffer = io.BytesIO()
    _write(model, buffer)
    return buffer.getvalue()


def _write(model, f):
    from .. import __version__

    header = {"format": "fastrnn", "version": VERSION, "fastrnn_version": __version__, "model": _model_config(model)}
    arrays = {FORMAT_KEY: np.array(json.dumps(header))}
    for layer in model.layers:
        for i, weight in enumerate(layer.weights):
            arrays[f"{layer.name}/{i}"] = weight
    np.savez(f, **arrays)


def is_native(path):
    """Whether `path` is a zip holding fastrnn's header member."""
    try:
        with zipfile.ZipFile(path) as archive:
            return f"{FORMAT_KEY}.npy" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def load_native(path):
    """Read a model written by `save`.

    Raises
    ------
    ModelFileError
        If the file is damaged, from a newer fastrnn, or its weights do not fit its configuration.
    """
    return _read(path, str(path))


def from_bytes(data, source="bytes"):
    """Read a model from the bytes `to_bytes` returned (or the contents of a file `save` wrote).

    As safe as `load_native`: NumPy reads the arrays with ``allow_pickle=False``, so no code runs.

    Parameters
    ----------
    data : bytes-like
    source : str, default "bytes"
        What error messages call the data.

    Returns
    -------
    Sequential, Model or TorchRNN

    Raises
    ------
    ModelFileError
        If the data are damaged, from a newer fastrnn, or the weights do not fit the configuration.
    """
    return _read(io.BytesIO(data), source)


def _member(archive, key, limit, source):
    """The array `key` of the open ``.npz`` `archive`, refused before it is read if its zip entry or
    its ``.npy`` header claims more than `limit` bytes, or more data than the entry holds."""
    try:
        info = archive.zip.getinfo(key + ".npy")
    except KeyError:
        raise ModelFileError(f"{source}: {key!r} is not a NumPy array (.npy) member") from None
    if info.file_size > limit:
        raise ModelFileError(f"{source}: {key!r} claims {info.file_size} bytes; refused")
    try:
        with archive.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f".npy format version {version}")
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = read_header[version](member)
        claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if claimed > info.file_size:
            raise ValueError(f"its header claims {shape} values of {dtype}, more than the {info.file_size} "
                             "bytes stored")
        return archive[key]
    except Exception as exc:
        raise ModelFileError(f"{source}: cannot read {key!r} ({exc})") from exc


def _torch_rnn(config, n_arrays, source):
    """A TorchRNN from its saved configuration, its number of layers checked against the file."""
    from ..models import TorchRNN

    if not isinstance(config, dict):
        raise ModelFileError(f"{source}: bad TorchRNN configuration {str(config)[:100]}")
    num_layers = config.get("num_layers", 1)
    if not isinstance(num_layers, int) or not 0 < num_layers <= n_arrays:
        raise ModelFileError(f"{source}: bad TorchRNN configuration (num_layers {num_layers!r}, "
                             f"for {n_arrays} weight arrays)")
    try:
        return TorchRNN(**config, initialize=False)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{source}: bad TorchRNN configuration ({exc})") from exc


def _read(file, source):
    """Read a model from `file` (a path or a binary file object); `source` names it in errors."""
    from .keras import MAX_ARCHIVE_MEMBERS, MAX_CONFIG_BYTES, MAX_WEIGHT_BYTES, model_from_config

    try:
        archive = np.load(file, allow_pickle=False)
    except Exception as exc:
        raise ModelFileError(f"{source}: not a readable fastrnn file ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):      # a single .npy array
        raise ModelFileError(f"{source}: not a fastrnn file (a single NumPy array)")
    with archive:
        if len(archive.zip.infolist()) > MAX_ARCHIVE_MEMBERS:
            raise ModelFileError(f"{source}: the archive has more than {MAX_ARCHIVE_MEMBERS} members; refused")
        if FORMAT_KEY not in archive.files:
            raise ModelFileError(f"{source}: not a fastrnn file (no {FORMAT_KEY!r})")
        text = _member(archive, FORMAT_KEY, 4 * MAX_CONFIG_BYTES, source)   # 4 bytes a character
        try:
            if text.dtype.kind != "U" or text.ndim != 0:
                raise ValueError(f"an array of {text.dtype}, shape {text.shape}")
            header = json.loads(str(text))
        except Exception as exc:
            raise ModelFileError(f"{source}: damaged fastrnn header ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != "fastrnn":
            raise ModelFileError(f"{source}: not a fastrnn file")
        if header.get("version") not in range(1, VERSION + 1):
            raise ModelFileError(f"{source}: fastrnn file version {header.get('version')!r}; this fastrnn reads "
                                 f"versions 1 to {VERSION}")

        def read_weights(layer):
            keys = sorted((k for k in archive.files if k.startswith(layer.name + "/")
                           and k[len(layer.name) + 1:].isdecimal()), key=lambda k: int(k.rsplit("/", 1)[1]))
            arrays = [_member(archive, key, MAX_WEIGHT_BYTES, source) for key in keys]
            for key, array in zip(keys, arrays):
                if array.dtype.kind != "f":
                    raise ModelFileError(f"{source}: weight {key!r} has dtype {array.dtype}, expected floating point")
            if arrays or layer._has_weights:
                try:
                    layer.set_weights(arrays)
                except (TypeError, ValueError) as exc:
                    raise ModelFileError(f"{source}: {exc}") from exc

        model = header.get("model")
        if isinstance(model, dict) and model.get("class_name") == "TorchRNN":
            rnn = _torch_rnn(model.get("config") or {}, len(archive.files) - 1, source)
            size = rnn.input_size
            for layer in rnn.layers:
                read_weights(layer)
                if not layer.built or layer.input_shape[-1] != size:
                    raise ModelFileError(f"{source}: the weights of layer {layer.name!r} do not fit inputs of "
                                         f"size {size}")
                size = (2 if rnn.bidirectional else 1) * (rnn.proj_size or rnn.hidden_size)
            return rnn
        built = model_from_config(model, source, read_weights, native=True)
        if header["version"] == 1:   # written when every call got the mask flowing in (see Node.passes_mask)
            for node in getattr(built, "_nodes", ()):
                node.passes_mask = True
        if header["version"] < 3:    # written when merges masked as in Keras 2 (see layers._Merge)
            for layer in built.layers:
                if isinstance(layer, _Merge):
                    layer.keras2_mask = True
        return built
