"""Load models from files: Keras (.keras, .h5), PyTorch (.pt, .safetensors) and fastrnn's own.

Each reader converts its format to fastrnn's layers in Keras layout, once; `load` recognises the
format from the file's first bytes, not from its name.
"""
import os

from ..errors import ModelFileError

__all__ = ["load", "load_weights"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_TORCH_OPTIONS = ("prefix", "nonlinearity", "batch_first", "dtype")


def _format(path):
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(_HDF5_MAGIC):
        return "keras_h5"
    if head.startswith(b"PK\x03\x04"):
        from .keras import open_archive

        with open_archive(path, path, "zip archive") as archive:
            names = set(archive.namelist())
        if "__fastrnn__.npy" in names:
            return "native"
        if "config.json" in names:
            return "keras"
        if any(name.endswith("data.pkl") for name in names):
            return "torch"
        raise ModelFileError(f"{path}: a zip archive that is neither a .keras model, a PyTorch file nor a "
                             f"fastrnn file (members: {sorted(names)[:10]})")
    from .torch import _is_safetensors

    # safetensors, or a legacy torch pickle (its protocol's opcode first: torch writes 2 by default)
    if _is_safetensors(head) or head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"
    raise ModelFileError(f"{path}: not a model file fastrnn reads (Keras .keras or .h5, PyTorch .pt or "
                         f".safetensors, fastrnn .npz); it starts with {head[:8]!r}")


def load(path, **options):
    """Load a trained model from a file, whatever framework wrote it.

    Parameters
    ----------
    path : str or os.PathLike
        A Keras 3 ``.keras`` archive; a Keras 3 or Keras 2 full-model ``.h5``; a PyTorch
        ``nn.RNN``/``nn.LSTM``/``nn.GRU`` state dict in ``.safetensors`` or ``.pt``/``.pth``; or a
        file written by ``model.save``. The format is read from the file's first bytes.
    **options
        For PyTorch files, what a state dict cannot tell: ``prefix`` (select one module's
        tensors, e.g. ``"encoder.rnn."``), ``nonlinearity`` (``"tanh"`` or ``"relu"`` for
        ``nn.RNN``), ``batch_first``, ``dtype``.

    Returns
    -------
    Sequential, Model or TorchRNN
        Keras files give Keras-like models (``model(x)``, ``predict``, ``summary``); PyTorch files
        give a `TorchRNN`, called as the torch module: ``output, h_n = model(x, hx)``.

    Raises
    ------
    ModelFileError
        (a ValueError) for a damaged, truncated or unsupported file, naming the file and the problem.
    FileNotFoundError
        If there is no such file.

    Examples
    --------
    >>> import fastrnn
    >>> model = fastrnn.load("forecaster.keras")            # doctest: +SKIP
    >>> rnn = fastrnn.load("encoder.safetensors", prefix="encoder.", batch_first=True)  # doctest: +SKIP
    """
    path = os.fsdecode(path)   # (a bytes path too)
    kind = _format(path)
    if kind == "torch":
        unknown = set(options) - set(_TORCH_OPTIONS)
        if unknown:
            raise TypeError(f"unknown option(s) {sorted(unknown)} for a PyTorch file; known: {list(_TORCH_OPTIONS)}")
        from .torch import load_torch

        return load_torch(path, **options)
    if options:
        raise TypeError(f"option(s) {sorted(options)} apply to PyTorch files; {path} is a {kind} file")
    if kind == "native":
        from .native import load_native

        return load_native(path)
    from .keras import load_h5, load_keras

    return load_keras(path) if kind == "keras" else load_h5(path)


def load_weights(model, path):
    """Read a Keras weights file (or the weights of a full-model file) into `model`; see `fastrnn.io.keras.load_weights`."""
    from .keras import load_weights as load_keras_weights

    load_keras_weights(model, path)
