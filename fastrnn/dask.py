"""Distributed batch inference with Dask: `predict` runs a model over the chunks of dask arrays.

Import it explicitly (``import fastrnn.dask``); ``import fastrnn`` never imports Dask. It needs
``pip install 'fastrnn[dask]'`` (``dask[array]`` and, for clusters, ``distributed``).

The model travels to each worker once, as a pickle of fastrnn's own format (`fastrnn.io.native`);
each worker then runs ``model.predict`` on whole chunks of rows.
"""
import math
import operator

import numpy as np

__all__ = ["predict"]


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError("fastrnn.dask needs Dask: pip install 'fastrnn[dask]'") from exc
    return dask, da


def _predict_block(*blocks, model, batch_size, several):
    """Run `model` on one chunk of rows of every input; return its outputs as a tuple."""
    out = model.predict(list(blocks) if several else blocks[0], batch_size=batch_size)
    return tuple(out) if isinstance(out, list) else (out,)


def _stateful_layers(model):
    """Names of the layers (wrapped ones included) that carry states from call to call."""
    from .models import _within

    return sorted({layer.name for layer in _within(getattr(model, "layers", [])) if getattr(layer, "stateful", False)})


def _same_chunks(a, b):
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b))


def predict(model, x, batch_size=None):
    """Run ``model.predict`` over dask arrays, chunk by chunk of rows, lazily.

    Parameters
    ----------
    model : Sequential or Model
        A fastrnn model (anything with fastrnn's ``predict``). It is shipped to the workers once,
        pickled through fastrnn's own format, and each worker runs it on whole chunks.
    x : dask.array.Array, list or dict of dask.array.Array
        The input(s), batch axis first and chunked along it; a list for a model with several
        inputs, in the model's input order, or a dict by input name. The other axes are
        rechunked to a single chunk, and
        every further input is rechunked to the first input's row chunks.
    batch_size : int, optional
        Rows per call inside a chunk, passed to ``model.predict`` (its default if None). The
        chunk size sets the parallelism; neither changes results beyond float rounding.

    Returns
    -------
    dask.array.Array or list of dask.array.Array
        Lazy; one array per model output, chunked along rows as the (first) input. Nothing runs
        until it is computed. For several outputs compute them together
        (``dask.compute(*outputs)``) so that the model runs once per chunk.

    Raises
    ------
    ImportError
        If Dask is not installed.
    TypeError
        If `x` is not a dask array (or a list of them), or `model` has no ``predict``.
    ValueError
        If the inputs differ in their number of rows or have unknown sizes, or the model has
        ``stateful`` layers (chunks run independently, in any order); the model's own
        errors for inputs that do not fit it (from a probe call on one row of zeros).

    Examples
    --------
    >>> import dask.array as da
    >>> from dask.distributed import Client
    >>> import fastrnn, fastrnn.dask
    >>> client = Client("scheduler-address:8786")   # or Client() for a local cluster  # doctest: +SKIP
    >>> model = fastrnn.load("forecaster.keras")                                  # doctest: +SKIP
    >>> x = da.from_zarr("series.zarr")          # (rows, 20, 1), on storage the workers share  # doctest: +SKIP
    >>> x = da.random.random((1_000_000, 20, 1), chunks=(10_000, -1, -1)).astype("float32")   # or this
    >>> y = fastrnn.dask.predict(model, x)   # lazy: (rows, 1), chunked as x      # doctest: +SKIP
    >>> forecasts = y.compute()              # runs on the cluster's workers     # doctest: +SKIP
    """
    dask, da = _import_dask()
    if not callable(getattr(model, "predict", None)):
        raise TypeError(f"fastrnn.dask.predict needs a model with predict (Sequential or Model), "
                        f"got a {type(model).__name__}")
    stateful = _stateful_layers(model)
    if stateful:
        raise ValueError(f"model {getattr(model, 'name', '')!r} has stateful layers {stateful}; fastrnn.dask.predict "
                         "runs chunks independently and in any order, so it cannot carry states between them")
    if isinstance(x, dict):    # inputs by name, in the model's order (its _input_list checks the names)
        from .models import Model

        if not isinstance(model, Model):
            raise TypeError("inputs by name (a dict) are for functional models; give a Sequential one dask array")
        x = model._input_list(x)
    inputs = list(x) if isinstance(x, (list, tuple)) else [x]
    if not inputs:
        raise ValueError("fastrnn.dask.predict needs at least one input array")
    # One input goes to predict as an array: a list would be read as ragged sequences.
    several = len(inputs) > 1
    for i, a in enumerate(inputs):
        name = f"input {i}" if several else "x"
        if not isinstance(a, da.Array):
            raise TypeError(f"{name} is a {type(a).__name__}, not a dask array; make one with "
                            f"dask.array.from_array(x, chunks=(rows_per_chunk, -1, ...))")
        if a.ndim < 1:
            raise ValueError(f"{name} has no batch axis (shape {a.shape})")
        if any(math.isnan(n) for n in a.shape[1:]):
            raise ValueError(f"{name} has unknown sizes {a.shape}; call compute_chunk_sizes() on it first")

    first = inputs[0]
    rows = first.chunks[0]
    aligned = []
    for i, a in enumerate(inputs):
        target = {axis: -1 for axis in range(1, a.ndim)}
        if i and not _same_chunks(a.chunks[0], rows):
            if any(math.isnan(n) for n in a.chunks[0] + rows):
                raise ValueError(f"inputs 0 and {i} have different row chunks, of unknown sizes; "
                                 "call compute_chunk_sizes() on them first")
            if a.shape[0] != first.shape[0]:
                raise ValueError(f"the inputs need one number of rows; input 0 has {first.shape[0]}, "
                                 f"input {i} has {a.shape[0]}")
            target[0] = rows
        if 0 in target or any(len(a.chunks[axis]) != 1 for axis in range(1, a.ndim)):
            a = a.rechunk(target)
        aligned.append(a)

    # Output shapes and dtypes: run the model once on one row of zeros (this also checks the inputs).
    probe = [np.zeros((1,) + a.shape[1:], dtype=a.dtype) for a in aligned]
    try:
        probed = model.predict(probe if several else probe[0], batch_size=batch_size)
    except (TypeError, ValueError) as exc:     # (its message shows the probe's one row)
        shapes = ", ".join(str(a.shape) for a in aligned)
        raise type(exc)(f"model {model.name!r} cannot take input(s) of shape {shapes}: {exc}") from exc
    probed = probed if isinstance(probed, list) else [probed]

    # The model is one task of the graph: pickled once with the graph, then copied at most once to
    # each worker that needs it, not once per chunk.
    model_task = dask.delayed(model, pure=False)
    args = []
    for i, a in enumerate(aligned):
        args += [a, ("rows",) + tuple(f"in{i}_axis{axis}" for axis in range(1, a.ndim))]
    results = da.blockwise(_predict_block, ("rows",), *args, concatenate=True, token="fastrnn-predict",
                           dtype=object, meta=np.empty((0,), dtype=object),
                           model=model_task, batch_size=batch_size, several=several)
    outputs = []
    for k, out in enumerate(probed):
        new_axes = {f"out{k}_axis{axis}": n for axis, n in enumerate(out.shape[1:], 1)}
        outputs.append(da.blockwise(operator.getitem, ("rows",) + tuple(new_axes), results, ("rows",),
                                    k, None, new_axes=new_axes, dtype=out.dtype,
                                    meta=np.empty((0,) * out.ndim, dtype=out.dtype)))
    return outputs if len(outputs) > 1 else outputs[0]
