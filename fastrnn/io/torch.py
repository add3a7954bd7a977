"""PyTorch ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` weights to fastrnn layers in Keras layout.

The conversion, once, at load time (verified against torch 2.13 outputs in tests/data):

- torch stores ``weight_ih (G*H, I)`` and ``weight_hh (G*H, H)``: Keras's kernel and
  recurrent_kernel are their transposes.
- RNN and LSTM: Keras's single bias is ``bias_ih + bias_hh``. LSTM gates i, f, g, o are Keras's
  i, f, c, o; ``weight_hr (P, H)`` (``proj_size``) becomes ``projection = weight_hr.T``.
- GRU is Keras's ``reset_after=True`` form with gates reordered from torch's r, z, n to Keras's
  z, r, h; the bias is ``(2, 3H)``: input bias, recurrent bias.

Nothing here imports torch but `from_torch`, which reads a live module.
"""
import os
import re
import zipfile

import numpy as np

from ..errors import ModelFileError

__all__ = ["from_state_dict", "from_torch"]

_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
_GATES = {1: "RNN", 3: "GRU", 4: "LSTM"}


def _to_keras_gate_order(matrix, hidden):
    """torch's GRU gate blocks r, z, n (along axis 0) in Keras's order z, r, h."""
    return np.concatenate([matrix[hidden:2 * hidden], matrix[:hidden], matrix[2 * hidden:]])


def from_state_dict(state_dict, prefix="", nonlinearity="tanh", batch_first=False, dtype=None,
                    source="state dict"):
    """Build a `fastrnn.models.TorchRNN` from the state dict of an ``nn.RNN``/``nn.LSTM``/``nn.GRU``.

    The cell type, sizes, number of layers, directions, bias and ``proj_size`` are read from the
    tensor names and shapes; what a state dict cannot tell is an argument.

    Parameters
    ----------
    state_dict : mapping of str to array_like
        Tensor names to arrays (NumPy arrays or CPU torch tensors).
    prefix : str, optional
        Only tensors whose names start with it, e.g. ``"encoder.rnn."`` in a larger model.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation of an ``nn.RNN``.
    batch_first : bool, default False
        The layout of inputs and outputs, as the torch module's argument.
    dtype : {"float32", "float64"}, optional
        Defaults to float64 for float64 tensors, float32 otherwise.
    source : str
        How to name the origin in error messages (a file path).

    Returns
    -------
    fastrnn.models.TorchRNN

    Raises
    ------
    fastrnn.errors.ModelFileError
        If a tensor is missing, unexpected or of the wrong shape (named in the message).
    """
    from ..models import TorchRNN

    prefix = "" if prefix is None else prefix
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string such as 'encoder.rnn.', got {prefix!r}")
    if dtype is not None and type(dtype).__module__ == "torch":
        dtype = str(dtype).replace("torch.", "")     # torch.float64 -> "float64"
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise ModelFileError(f"{source}: a tensor is named {key!r}, not a string")
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        match = _KEY.match(name)
        if match is None:
            # A whole network's state dict: say where its RNN's tensors are.
            prefixes = sorted({str(k)[:-len("weight_ih_l0")] for k in state_dict
                               if str(k).endswith("weight_ih_l0") and str(k).startswith(prefix)} - {prefix})
            hint = f"; its RNN weights are under prefix {prefixes[0]!r}: pass prefix={prefixes[0]!r}" if prefixes else ""
            raise ModelFileError(f"{source}: unexpected tensor {key!r} for a torch RNN/LSTM/GRU"
                                 f"{' under prefix ' + repr(prefix) if prefix else ''}{hint}")
        tensors[name] = _array(value, key, 2 if name.startswith("weight") else 1, source)
    if "weight_ih_l0" not in tensors:
        raise ModelFileError(f"{source}: no torch RNN/LSTM/GRU weights (weight_ih_l0) "
                             f"{'under prefix ' + repr(prefix) if prefix else 'found'}; "
                             f"tensors: {sorted(map(str, state_dict))[:10]}")
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")

    layer_indexes = sorted({int(_KEY.match(k).group(2)) for k in tensors})
    if layer_indexes != list(range(len(layer_indexes))):
        raise ModelFileError(f"{source}: tensors for layers {layer_indexes[:10]}"
                             f"{'...' if len(layer_indexes) > 10 else ''}; expected layers 0 to {len(layer_indexes) - 1}")
    num_layers = len(layer_indexes)
    bidirectional = any(k.endswith("_reverse") for k in tensors)
    bias = "bias_ih_l0" in tensors
    proj_size = tensors["weight_hr_l0"].shape[0] if "weight_hr_l0" in tensors else 0
    hidden = tensors["weight_hr_l0"].shape[1] if proj_size else _shape(tensors, "weight_hh_l0", source, 2).shape[1]
    gates, remainder = divmod(tensors["weight_ih_l0"].shape[0], hidden)
    if remainder or gates not in _GATES or (proj_size and gates != 4):
        raise ModelFileError(f"{source}: weight_ih_l0 of shape {tensors['weight_ih_l0'].shape} fits no torch "
                             f"RNN (H rows), GRU (3H) or LSTM (4H) with hidden size {hidden}")
    if proj_size >= hidden:
        raise ModelFileError(f"{source}: weight_hr_l0 of shape {tensors['weight_hr_l0'].shape} projects "
                             f"{hidden} units to {proj_size}; torch's proj_size is smaller than hidden_size")
    mode = _GATES[gates]
    if mode != "RNN" and nonlinearity != "tanh":
        raise ValueError(f"{source}: nonlinearity={nonlinearity!r} applies to nn.RNN; these are {mode} weights")
    input_size = tensors["weight_ih_l0"].shape[1]
    if dtype is None:
        dtype = "float64" if tensors["weight_ih_l0"].dtype == np.float64 else "float32"

    model = TorchRNN(mode, input_size, hidden, num_layers, bias, batch_first, bidirectional, proj_size,
                     nonlinearity, dtype, initialize=False)
    directions = ("", "_reverse") if bidirectional else ("",)
    out_size = proj_size or hidden
    expected = set()
    for index, layer in enumerate(model.layers):
        size = input_size if index == 0 else len(directions) * out_size
        weights = []
        for suffix in directions:
            names = {part: f"{part}_l{index}{suffix}" for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}
            shapes = {"weight_ih": (gates * hidden, size), "weight_hh": (gates * hidden, out_size)}
            if bias:
                shapes.update(bias_ih=(gates * hidden,), bias_hh=(gates * hidden,))
            if proj_size:
                shapes["weight_hr"] = (proj_size, hidden)
            w = {part: _shape(tensors, names[part], source, shape) for part, shape in shapes.items()}
            expected.update(names[part] for part in shapes)
            weights += _keras_weights(mode, w, hidden, bias, proj_size)
        layer.set_weights(weights)
    extra = sorted(set(tensors) - expected)
    if extra:
        raise ModelFileError(f"{source}: unexpected tensor(s) {[prefix + k for k in extra]} for a "
                             f"{num_layers}-layer {'bidirectional ' if bidirectional else ''}{mode}")
    return model


def _array(value, key, rank, source):
    """A state dict entry as a NumPy array: floating point, of `rank` dimensions, none empty, and
    at most MAX_WEIGHT_BYTES (a stride-0 view can claim any size)."""
    from .keras import MAX_WEIGHT_BYTES

    try:
        if hasattr(value, "detach"):
            value = value.detach().cpu()
            if str(value.dtype) == "torch.bfloat16":   # no NumPy type; float32 holds each value exactly
                value = value.float()
            array = value.numpy()
        else:
            array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as exc:   # bfloat16, sparse, meta tensors
        raise ModelFileError(f"{source}: tensor {key!r} cannot be read as a NumPy array ({exc})") from exc
    if array.dtype.kind != "f":
        raise ModelFileError(f"{source}: tensor {key!r} has dtype {array.dtype}, expected floating point")
    if array.ndim != rank or 0 in array.shape:
        raise ModelFileError(f"{source}: tensor {key!r} has shape {array.shape}, expected {rank} non-empty dimensions")
    if array.nbytes > MAX_WEIGHT_BYTES:
        raise ModelFileError(f"{source}: tensor {key!r} claims shape {array.shape}, more than fastrnn reads")
    return array


def _shape(tensors, name, source, expected):
    """The tensor `name`, checked to be present with `expected` shape (or rank, if an int)."""
    if name not in tensors:
        raise ModelFileError(f"{source}: missing tensor {name!r}")
    array = tensors[name]
    if (array.ndim != expected) if isinstance(expected, int) else (array.shape != tuple(expected)):
        raise ModelFileError(f"{source}: tensor {name!r} has shape {array.shape}, expected {expected}")
    return array


def _keras_weights(mode, w, hidden, bias, proj_size):
    """One direction's torch tensors as Keras weights: kernel, recurrent_kernel[, bias][, projection]."""
    if mode == "GRU":
        weights = [_to_keras_gate_order(w["weight_ih"], hidden).T, _to_keras_gate_order(w["weight_hh"], hidden).T]
        if bias:
            weights.append(np.stack([_to_keras_gate_order(w["bias_ih"], hidden),
                                     _to_keras_gate_order(w["bias_hh"], hidden)]))
        return weights
    weights = [w["weight_ih"].T, w["weight_hh"].T]
    if bias:
        weights.append(w["bias_ih"] + w["bias_hh"])
    if proj_size:
        weights.append(w["weight_hr"].T)
    return weights


def _check_stock_forward(module):
    """Refuse a module whose forward is not torch's own RNN, LSTM or GRU forward (a subclass that
    overrides it, forward hooks): fastrnn runs torch's, so its outputs would silently differ."""
    name = type(module).__name__
    stock = next((cls for cls in type(module).__mro__
                  if cls.__module__ == "torch.nn.modules.rnn" and cls.__name__ in ("RNN", "LSTM", "GRU")), None)
    if stock is not None and type(module).forward is not stock.forward:
        raise TypeError(f"torch module {name} overrides the forward of torch.nn.{stock.__name__}; fastrnn runs "
                        "torch's own forward only, so its outputs would differ: convert the plain torch.nn "
                        "module that holds the weights")
    if getattr(module, "_forward_hooks", None) or getattr(module, "_forward_pre_hooks", None):
        raise TypeError(f"torch module {name} has forward hooks, which fastrnn does not run: its outputs would "
                        "differ (remove the hooks, or convert a module without them)")


def from_torch(module, dtype=None):
    """Convert a live ``torch.nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (torch needed only here).

    Parameters
    ----------
    module : torch.nn.RNNBase
    dtype : {"float32", "float64"}, optional
        Defaults to the module's parameter dtype (float64 stays float64).

    Returns
    -------
    fastrnn.models.TorchRNN
        Called as the module is: ``model(x, hx)`` gives ``(output, h_n)`` (``(h_n, c_n)`` for an LSTM).

    Examples
    --------
    >>> import torch, fastrnn                                # doctest: +SKIP
    >>> rnn = fastrnn.from_torch(torch.nn.GRU(3, 4, batch_first=True))  # doctest: +SKIP
    """
    mode = getattr(module, "mode", None)
    if mode not in ("RNN_TANH", "RNN_RELU", "LSTM", "GRU"):
        raise TypeError(f"from_torch converts torch.nn.RNN, LSTM or GRU modules, got {type(module).__name__}")
    _check_stock_forward(module)
    model = from_state_dict(module.state_dict(), nonlinearity="relu" if mode == "RNN_RELU" else "tanh",
                            batch_first=module.batch_first, dtype=dtype, source=f"torch module {type(module).__name__}")
    if model.num_layers != module.num_layers or model.bidirectional != module.bidirectional:
        raise ModelFileError(f"torch module {type(module).__name__}: its state dict does not match its settings")
    return model


def _unwrap_checkpoint(obj, source):
    """The state dict in what torch.load returned: itself, or a checkpoint's ``state_dict``."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):   # (a state dict's own values are all tensors)
                return obj[key]
        return obj
    raise ModelFileError(f"{source}: holds a {type(obj).__name__}, not a state dict; save module.state_dict()")


def load_torch(path, prefix="", nonlinearity="tanh", batch_first=False, dtype=None):
    """Load the state dict of a torch RNN/LSTM/GRU from ``.safetensors`` or ``.pt``/``.pth``.

    ``.safetensors`` is read with the safetensors package's NumPy API (no torch needed).
    ``.pt``/``.pth`` is read with ``torch.load(..., weights_only=True)``, which never unpickles
    arbitrary objects; it needs torch.

    Parameters
    ----------
    path : str or os.PathLike
    prefix, nonlinearity, batch_first, dtype
        As for `from_state_dict`.

    Returns
    -------
    fastrnn.models.TorchRNN

    Raises
    ------
    ModelFileError
        For a damaged file, a pickled module (not a state dict), or tensors that do not make a
        torch RNN.
    ImportError
        For a ``.pt`` file when torch is not installed (use safetensors then).
    """
    source = str(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if _is_safetensors(head):
        try:
            from safetensors.numpy import load_file
        except ImportError as exc:
            raise ImportError("reading .safetensors needs the safetensors package: pip install safetensors") from exc
        try:
            tensors = load_file(source)
        except Exception as exc:
            if "bfloat16" not in str(exc):
                raise ModelFileError(f"{source}: not a readable safetensors file ({exc})") from exc
            tensors = _bfloat16_tensors(source)
    else:
        _check_torch_archive(source)
        try:
            import torch
        except ImportError as exc:
            raise ImportError(f"{source} is a PyTorch pickle file: reading it needs torch (pip install torch), "
                              "or save the state dict with safetensors instead") from exc
        try:
            loaded = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:
            # torch's message is long and suggests weights_only=False, which fastrnn never does:
            # keep the line that names what was refused (torch writes "Unsupported global" or
            # "unsupported GLOBAL"), else the first sentence.
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            reason = next((line for line in lines if "unsupported global" in line.lower()), lines[0].split(". ")[0])
            raise ModelFileError(f"{source}: torch.load(weights_only=True) refused or failed ({reason}); "
                                 "fastrnn loads state dicts only: save module.state_dict()") from exc
        tensors = _unwrap_checkpoint(loaded, source)
    return from_state_dict(tensors, prefix, nonlinearity, batch_first, dtype, source)


def _bfloat16_tensors(source):
    """The tensors of a safetensors file holding bfloat16 ones, which NumPy has no type for: read
    by torch (then widened to float32 by `_array`, exactly)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelFileError(f"{source}: holds bfloat16 tensors, which NumPy cannot read: install torch to read "
                             "them, or save the state dict as float32") from None
    try:
        return load_file(source)
    except Exception as exc:
        raise ModelFileError(f"{source}: not a readable safetensors file ({exc})") from exc


def _check_torch_archive(source):
    """Refuse a zip-format .pt file that would expand far beyond its own size, before
    torch.load allocates its members: torch writes tensors uncompressed, so only a damaged or
    hostile file holds much more than it stores."""
    from .keras import MAX_WEIGHT_BYTES, open_archive

    if not zipfile.is_zipfile(source):
        return   # the legacy pickle format: its tensors are stored in the file at their size
    with open_archive(source, source, "PyTorch zip archive") as archive:
        members = archive.infolist()
    largest = max(members, key=lambda info: info.file_size, default=None)
    total = sum(info.file_size for info in members)
    if largest is not None and largest.file_size > MAX_WEIGHT_BYTES:
        raise ModelFileError(f"{source}: member {largest.filename!r} expands to {largest.file_size} bytes; "
                             "refused before reading")
    if total > max(64 * 2 ** 20, 4 * os.path.getsize(source)):
        raise ModelFileError(f"{source}: its members expand to {total} bytes from a file of "
                             f"{os.path.getsize(source)}; refused before reading")


def _is_safetensors(head):
    """A safetensors file starts with a little-endian u64 header length, then a JSON object."""
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2 ** 40
