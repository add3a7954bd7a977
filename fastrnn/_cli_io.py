"""The ``fastrnn`` command's dealings with files and models (the commands are in `fastrnn.cli`).

- Describing a model and its file: its inputs (names, shapes, dtypes, batch axis) in one form
  for Keras-like models and `TorchRNN` alike, and the file's format and origin.
- ``predict``'s inputs and outputs: a memory-mapped ``.npy`` (or the arrays of a ``.npz``) in,
  each chunk of predictions written into a ``.npy`` memory map as soon as it is computed, so that
  neither the inputs nor the outputs have to fit in memory; a progress bar.
- ``bench``'s random inputs and timing, and the torch module equivalent to a `TorchRNN`.
"""
import errno
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from .models import Model, _adjust_rank

__all__ = ["CommandError", "InputSpec", "PredictionWriter", "Progress", "batch_axis", "bench_inputs",
           "check_inputs", "describe_format", "format_seconds", "format_shape", "input_specs", "is_torch",
           "open_inputs", "output_names", "output_path", "take_rows", "time_calls", "torch_module"]


class CommandError(Exception):
    """A failure the command reports as one line on stderr, with exit status 1."""


# ----------------------------------------------------------------------------- describing models and files
class InputSpec:
    """One model input: its name (None if the model names none), declared shape and dtype."""

    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, shape, np.dtype(dtype)


def format_shape(shape):
    """``(None, 5, 3)`` for a declared shape, ``(8, 5, 3)`` for an array's."""
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def is_torch(model):
    """Whether `model` is a `TorchRNN` (torch's call convention, no summary)."""
    from .models import TorchRNN

    return isinstance(model, TorchRNN)


def batch_axis(model):
    """The axis of a model's inputs and outputs that holds the sequences: 1 for a time-first TorchRNN."""
    return 1 if is_torch(model) and not model.batch_first else 0


def _sequential_input_dtype(model):
    """Token ids for a model that starts with an Embedding, else the first layer's dtype."""
    from .layers import Embedding

    first = model.layers[0] if model.layers else None
    if first is None:
        return np.float32
    return np.int32 if isinstance(first, Embedding) else first.dtype


def input_specs(model):
    """Describe the inputs of `model` (Sequential, Model or TorchRNN).

    Returns
    -------
    list of InputSpec
        In the order the model takes them; a TorchRNN's shape is in its own layout
        (``(time, batch, features)`` unless ``batch_first``), with None for free sizes.
    """
    if is_torch(model):
        return [InputSpec("input", (None, None, model.input_size), model.dtype)]
    if isinstance(model, Model):
        names = model._input_keys or [t.name for t in model.inputs]   # a model built from a dict: its keys
        return [InputSpec(name, t.shape, t.dtype) for name, t in zip(names, model.inputs)]
    shape = model.input_shape
    return [InputSpec(None, tuple(shape) if shape is not None else None, _sequential_input_dtype(model))]


def output_names(model, count):
    """Names for `count` outputs in a ``.npz``: a functional model's output names if they are
    distinct, else ``output`` (one) or ``output_0``, ``output_1``, ... (several)."""
    names = [t.name for t in model.outputs] if isinstance(model, Model) else []
    if len(names) == count and all(names) and len(set(names)) == count:
        return names
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


def _keras_version_in_zip(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("metadata.json")).get("keras_version")
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def _h5_attribute(path, name):
    import h5py

    with h5py.File(path, "r") as h5:
        value = h5.attrs.get(name, b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _torch_container(path):
    # The loader's own test, so that info and load never disagree about a file.
    from .io.torch import _is_safetensors

    with open(path, "rb") as f:
        head = f.read(9)
    if _is_safetensors(head):
        return ".safetensors"
    return "torch.save .pt (zip)" if head.startswith(b"PK") else "legacy torch.save .pt"


def _native_origin(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["__fastrnn__"]))
        return f", fastrnn {header['fastrnn_version']}, a {header['model']['class_name']}"
    except (KeyError, ValueError, TypeError, OSError):
        return ""


def describe_format(path):
    """Say which file format `path` is in and which framework wrote it.

    Parameters
    ----------
    path : str

    Returns
    -------
    str
        e.g. ``"Keras 3 .keras archive (Keras 3.15.1)"`` or ``"PyTorch state dict (.safetensors)"``.
    """
    from .io import _format

    kind = _format(path)
    if kind == "keras":
        return f"Keras 3 .keras archive (Keras {_keras_version_in_zip(path) or 'version not recorded'})"
    if kind == "keras_h5":
        version, backend = _h5_attribute(path, "keras_version"), _h5_attribute(path, "backend")
        major = {"2": "Keras 2", "3": "Keras 3"}.get(version[:1], "Keras")
        saved_by = f"Keras {version}" if version else "keras_version not recorded"
        return f"{major} HDF5 .h5 ({saved_by}{', ' + backend + ' backend' if backend else ''})"
    if kind == "torch":
        return f"PyTorch state dict ({_torch_container(path)})"
    return f"fastrnn .npz (model.save{_native_origin(path)})"


# ----------------------------------------------------------------------------- predict: inputs and outputs
def _from_npz(path, specs, chosen):
    """The arrays of a ``.npz`` for the model's inputs, chosen by `chosen` names or by default."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile):
        raise CommandError(f"{path}: not a valid .npz file (a zip of .npy arrays)") from None
    with archive:
        available = list(archive.files)
        model_names = [s.name for s in specs]
        if chosen:
            names = list(chosen)
        elif all(name in available for name in model_names):
            names = model_names
        elif len(available) == len(specs) and (len(specs) == 1 or available == [f"arr_{i}" for i in range(len(specs))]):
            names = available    # one array, or np.savez's positional arr_0, arr_1, ...: in that order
        else:
            wanted = f" ({', '.join(model_names)})" if all(model_names) else ""
            raise CommandError(f"{path}: holds arrays {available}; the model takes {len(specs)} input(s)"
                               f"{wanted}: choose them with --input-name")
        if len(names) != len(specs):
            raise CommandError(f"the model takes {len(specs)} input(s), --input-name gave {len(names)}")
        missing = [name for name in names if name not in available]
        if missing:
            raise CommandError(f"{path}: no array {missing[0]!r}; it holds {available}")
        # Members of a .npz cannot be memory-mapped by NumPy: they are read into memory here.
        return [_read_member(path, archive, name) for name in names]


def _read_member(path, archive, name):
    try:
        return archive[name]
    except (ValueError, OSError, zipfile.BadZipFile):   # an object (ragged) array, a damaged member
        raise CommandError(f"{path}: array {name!r} is not a numeric array fastrnn can read (an object or "
                           "ragged array, or a damaged member): save numeric arrays with numpy.savez") from None


def open_inputs(path, model, chosen=None):
    """Open the input file of ``fastrnn predict`` without reading a ``.npy`` into memory.

    Parameters
    ----------
    path : str
        A ``.npy`` (memory-mapped) or a ``.npz`` (its arrays are read).
    model : Sequential, Model or TorchRNN
    chosen : list of str, optional
        The ``.npz`` arrays to use, in the model's input order (``--input-name``).

    Returns
    -------
    list of ndarray
        One array per model input.

    Raises
    ------
    CommandError
        For another file type, or arrays that do not match the model's inputs.
    """
    specs = input_specs(model)
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return _from_npz(path, specs, chosen)
    if suffix != ".npy":
        raise CommandError(f"{path}: INPUT must be a .npy or .npz file")
    if chosen:
        raise CommandError("--input-name chooses arrays of a .npz input; the input is a .npy")
    if len(specs) > 1:
        names = ", ".join(str(s.name) for s in specs)
        raise CommandError(f"the model takes {len(specs)} inputs ({names}): give them as arrays of a .npz")
    try:
        return [np.load(path, mmap_mode="r", allow_pickle=False)]
    except ValueError:   # an object array, or no .npy header at all (NumPy then speaks of pickles)
        raise CommandError(f"{path}: not a numeric .npy array fastrnn can read (an object or ragged array, or "
                           "not a .npy file): save a numeric array with numpy.save") from None


def _fits(shape, declared):
    return len(shape) == len(declared) and all(d is None or d == g for g, d in zip(shape, declared))


def check_inputs(path, arrays, model):
    """Check every input array's shape against the model before anything is computed.

    Returns
    -------
    int
        The number of sequences (rows along the batch axis).

    Raises
    ------
    CommandError
        Naming the input, the expected shape and the given one.
    """
    specs, axis = input_specs(model), batch_axis(model)
    for spec, array in zip(specs, arrays):
        # The batch size is free: the declared shape only pins the other axes.
        declared = spec.shape
        if declared is not None and not is_torch(model):
            array = _adjust_rank(array, declared)     # (rows, timesteps) for a univariate model, as predict
        if declared is not None and not _fits(array.shape[:axis] + array.shape[axis + 1:],
                                              declared[:axis] + declared[axis + 1:]):
            which = f"input {spec.name!r}" if len(specs) > 1 else "the model"
            raise CommandError(f"{path}: {which} expects shape {format_shape(declared)}, "
                               f"given {format_shape(array.shape)}")
    rows = {array.shape[axis] for array in arrays}
    if len(rows) != 1:
        raise CommandError(f"{path}: the inputs have different numbers of sequences {sorted(rows)}")
    return rows.pop()


def take_rows(array, axis, start, stop):
    """``array[start:stop]`` along `axis`."""
    return array[(slice(None),) * axis + (slice(start, stop),)]


def output_path(input_path, output, several, model_path):
    """The output file: `output` if given, else INPUT's stem + ``.pred.npy`` (``.pred.npz`` for
    several); never INPUT or MODEL."""
    if output is None:
        return str(Path(input_path).with_suffix(".pred.npz" if several else ".pred.npy"))
    suffix = Path(output).suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise CommandError(f"{output}: OUTPUT must end in .npy or .npz")
    if suffix == ".npy" and several:
        raise CommandError(f"{output}: the model has several outputs; write them to a .npz")
    if os.path.exists(output):
        for name, path in (("INPUT", input_path), ("MODEL", model_path)):
            if os.path.exists(path) and os.path.samefile(output, path):
                raise CommandError(f"{output}: OUTPUT would overwrite {name}")
    return output


class PredictionWriter:
    """Writes predictions chunk by chunk into ``.npy`` memory maps, then (for ``.npz``) zips them.

    The files are created at the first chunk, whose shapes and dtypes they take, with `rows`
    sequences along `axis`.

    Parameters
    ----------
    path : str
        ``.npy`` (one output) or ``.npz``.
    names : list of str
        The array names inside a ``.npz``.
    rows : int
        The total number of sequences.
    axis : int
        The batch axis of the outputs.
    """

    def __init__(self, path, names, rows, axis):
        self.path, self.names, self.rows, self.axis = path, names, rows, axis
        self.to_npz = Path(path).suffix.lower() == ".npz"
        self._maps = None
        self._tmpdir = None
        self._created = False    # whether self.path is ours to remove on failure

    def _open(self, outputs):
        if self.to_npz:
            # Beside the output, so that large temporaries stay on the same (roomy) file system.
            directory = Path(self.path).resolve().parent
            if not directory.is_dir():     # (else the error would name the temporary folder)
                raise FileNotFoundError(errno.ENOENT, f"no directory {directory} to write it in", str(self.path))
            self._tmpdir = tempfile.mkdtemp(prefix=".fastrnn-", dir=directory)
            files = [os.path.join(self._tmpdir, f"{name}.npy") for name in self.names]
        else:
            files = [self.path]
        self._maps, self._files = [], files
        for file, out in zip(files, outputs):
            shape = out.shape[:self.axis] + (self.rows,) + out.shape[self.axis + 1:]
            self._maps.append(np.lib.format.open_memmap(file, mode="w+", dtype=out.dtype, shape=shape))
        self._created = not self.to_npz

    def write(self, start, outputs):
        """Store `outputs` (one array per output) as the sequences from `start` on."""
        if self._maps is None:
            self._open(outputs)
        for target, out in zip(self._maps, outputs):
            target[(slice(None),) * self.axis + (slice(start, start + out.shape[self.axis]),)] = out

    def finish(self):
        """Flush the memory maps and, for a ``.npz``, store them in the archive."""
        for target in self._maps:
            target.flush()
        self._maps = None
        if self.to_npz:
            self._created = True   # opening the archive replaces any earlier file of that name
            # Stored, not compressed: np.load reads the members back as they are.
            with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, file in zip(self.names, self._files):
                    archive.write(file, arcname=f"{name}.npy")
            shutil.rmtree(self._tmpdir)

    def abort(self):
        """Remove what was written: an incomplete output is worse than none."""
        self._maps = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        if self._created and os.path.exists(self.path):
            os.remove(self.path)


class Progress:
    """A progress bar on stderr: tqdm if installed, else a ``\\r`` counter; nothing when disabled.

    Parameters
    ----------
    total : int
        The number of sequences.
    enabled : bool
        Whether to show anything (the command passes "stderr is a terminal and not --quiet").
    """

    def __init__(self, total, enabled):
        self.total, self.done, self.enabled = total, 0, enabled
        self._bar, self._shown = None, 0.0
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit="seq", file=sys.stderr, leave=False)

    def update(self, count):
        """Record `count` more sequences done."""
        self.done += count
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        # Redrawing a few times a second is enough and keeps tiny chunks cheap.
        if now - self._shown > 0.1 or self.done >= self.total:
            self._shown = now
            print(f"\r{self.done}/{self.total} sequences", end="", file=sys.stderr, flush=True)

    def close(self):
        """Take the bar off the terminal."""
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            print(file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- bench
def _vocabulary(model):
    """The smallest Embedding vocabulary in the model: random tokens must fit every one."""
    from .layers import Embedding

    sizes = [layer.input_dim for layer in model.layers if isinstance(layer, Embedding)]
    return min(sizes) if sizes else 2


def bench_inputs(model, batch, timesteps, seed=0):
    """Random inputs of the model's input shapes: free sizes filled from `batch` and `timesteps`.

    Integer inputs (token ids for an Embedding) are drawn within the vocabulary.

    Returns
    -------
    list of ndarray
        One per model input.
    """
    rng, axis, arrays = np.random.default_rng(seed), batch_axis(model), []
    batch = getattr(model, "_required_batch", None) or batch     # a stateful model takes only its own
    for spec in input_specs(model):
        if spec.shape is None:
            raise CommandError("the model does not declare its input shape")
        shape = tuple(batch if i == axis else (timesteps if d is None else d) for i, d in enumerate(spec.shape))
        if spec.dtype.kind in "iu":
            arrays.append(rng.integers(0, _vocabulary(model), size=shape).astype(spec.dtype))
        else:
            arrays.append(rng.standard_normal(shape).astype(spec.dtype))
    return arrays


def time_calls(call, seconds):
    """Per-call times of `call` over about `seconds`, after one untimed call (JIT, caches)."""
    call()
    times, end = [], time.perf_counter() + seconds
    while not times or time.perf_counter() < end:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return np.array(times)


def format_seconds(seconds):
    """A duration with the unit that suits it: ``"12.3 us"``, ``"4.5 ms"``, ``"1.2 s"``."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            return f"{seconds / scale:.1f} {unit}"


def _swap_first_gates(matrix, hidden):
    """Swap the first two gate blocks along axis 0: Keras's GRU z, r, h <-> torch's r, z, n."""
    return np.concatenate([matrix[hidden:2 * hidden], matrix[:hidden], matrix[2 * hidden:]])


def _torch_tensors(model, weights, suffix):
    """One direction's Keras-layout weights as torch tensors (the inverse of `fastrnn.io.torch`)."""
    kernel, recurrent, rest, hidden = weights[0], weights[1], weights[2:], model.hidden_size
    if model.mode == "GRU":
        tensors = {"weight_ih": _swap_first_gates(kernel.T, hidden),
                   "weight_hh": _swap_first_gates(recurrent.T, hidden)}
        if model.bias:
            tensors.update(bias_ih=_swap_first_gates(rest[0][0], hidden),
                           bias_hh=_swap_first_gates(rest[0][1], hidden))
    else:
        tensors = {"weight_ih": kernel.T, "weight_hh": recurrent.T}
        if model.bias:
            # fastrnn keeps only bias_ih + bias_hh; all of it in bias_ih gives the same sums.
            tensors.update(bias_ih=rest[0], bias_hh=np.zeros_like(rest[0]))
        if model.proj_size:
            tensors["weight_hr"] = rest[-1].T
    return {f"{name}{suffix}": np.ascontiguousarray(value) for name, value in tensors.items()}


def torch_module(model):
    """The ``torch.nn.RNN``/``LSTM``/``GRU`` equivalent to a `TorchRNN`, with the same weights.

    Parameters
    ----------
    model : TorchRNN

    Returns
    -------
    torch.nn.Module
        In eval mode.
    """
    import torch

    options = {"num_layers": model.num_layers, "bias": model.bias, "batch_first": model.batch_first,
               "bidirectional": model.bidirectional, "dtype": getattr(torch, model.dtype.name)}
    if model.mode == "RNN":
        options["nonlinearity"] = model.nonlinearity
    if model.proj_size:
        options["proj_size"] = model.proj_size
    module = getattr(torch.nn, model.mode)(model.input_size, model.hidden_size, **options)
    state = {}
    for index, layer in enumerate(model.layers):
        cells = [layer.forward_layer, layer.backward_layer] if model.bidirectional else [layer]
        for cell, suffix in zip(cells, (f"_l{index}", f"_l{index}_reverse")):
            state.update(_torch_tensors(model, cell.get_weights(), suffix))
    module.load_state_dict({key: torch.from_numpy(value) for key, value in state.items()})
    return module.eval()
