"""Write small real PyTorch RNN weight files and their golden outputs.

This script builds ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` modules with random
(seeded) weights, runs them on random inputs and saves each module's state
dict twice into ``tests/data/files/``:

``NAME.pt``
    ``torch.save(module.state_dict(), path)``: the zip-based PyTorch format
    (a restricted pickle plus raw little-endian tensor storages); loads with
    ``torch.load(path, weights_only=True)``.
``NAME.safetensors``
    ``safetensors.torch.save_file(module.state_dict(), path)``.

Two special cases:

``full_model.pt``
    ``torch.save(module, path)``: a pickled ``nn.LSTM`` *object*.
    ``torch.load(path, weights_only=True)`` refuses it, and fastrnn must
    refuse it with a clear error too (it is marked ``"unsupported"``).
``prefixed.pt`` / ``prefixed.safetensors``
    The state dict of a small ``nn.Module`` with ``self.encoder =
    nn.LSTM(...)`` and ``self.head = nn.Linear(...)``: keys
    ``encoder.weight_ih_l0``, ..., ``head.weight``, ``head.bias``.  fastrnn
    loads the LSTM with ``prefix="encoder."``; the expected outputs are
    those of the encoder LSTM alone.

Inputs and outputs go to ``tests/data/files/expected_torch.npz``.  Every file
is loaded back (``torch.load(..., weights_only=True)`` /
``safetensors.torch.load_file``) into a fresh module and checked against the
recorded outputs.  The fastrnn test suite only reads the files; it does not
need PyTorch installed.

Last run with: Python 3.11.7, torch 2.13.0+cpu, safetensors 0.8.0,
numpy 2.4.6.

How to run (from the repository root, in a virtualenv with PyTorch; the CPU
wheel is enough)::

    pip install torch safetensors numpy
    python tests/data/make_torch_files.py

File layout of ``expected_torch.npz`` (``np.load(path, allow_pickle=False)``):

``index``
    0-d unicode array holding a JSON list of case dicts with keys

    ``name``
        Case name: the stem of the files and the prefix of the array keys.
    ``files``
        File names written for this case, relative to ``files/``.
    ``module``
        ``"RNN"``, ``"LSTM"`` or ``"GRU"``.
    ``kwargs``
        Constructor arguments: ``input_size``, ``hidden_size``,
        ``num_layers``, ``bias``, ``batch_first``, ``bidirectional``,
        ``dropout`` (always 0), plus ``nonlinearity`` (RNN only) and
        ``proj_size`` (LSTM only).
    ``prefix``
        State-dict key prefix of the RNN in the files (``""`` or
        ``"encoder."``).
    ``state_dict_keys``
        The keys of the saved state dict, in order.
    ``inputs``
        ``["x"]``, ``["x", "h0"]`` or ``["x", "h0", "c0"]``.
    ``outputs``
        ``["output", "h_n"]`` or ``["output", "h_n", "c_n"]``.
    ``dtype``
        ``"float32"`` or ``"float64"``.
    ``unsupported``
        ``true`` for ``full_model`` (a pickled module, not a state dict).
    ``notes``
        Observations (e.g. the error ``torch.load(weights_only=True)``
        gives for the full-model pickle).
    ``torch_version``, ``safetensors_version``

``{name}.x``
    Input in the module's layout: ``(batch, T, input_size)`` if
    ``batch_first`` else ``(T, batch, input_size)``.
``{name}.h0``, ``{name}.c0``
    Initial states, ``(num_layers * num_directions, batch, H)`` where ``H``
    is ``proj_size`` (if non-zero) for ``h0`` and ``hidden_size`` for
    ``c0``.
``{name}.output``, ``{name}.h_n``, ``{name}.c_n``
    Module outputs (``output`` in the same layout as ``x``).
"""

import json
import os
import re

import numpy as np
import safetensors
import safetensors.torch
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "files")
EXPECTED_PATH = os.path.join(OUT_DIR, "expected_torch.npz")
SEED = 20240614

MODULES = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class EncoderWithHead(torch.nn.Module):
    """A small model whose RNN sits under the ``encoder.`` prefix.

    Parameters
    ----------
    input_size, hidden_size : int
        Sizes of the LSTM encoder.
    out_features : int
        Output size of the linear head.
    """

    def __init__(self, input_size, hidden_size, out_features):
        super().__init__()
        self.encoder = torch.nn.LSTM(input_size, hidden_size,
                                     batch_first=True)
        self.head = torch.nn.Linear(hidden_size, out_features)

    def forward(self, x):
        """Return the head applied to the last encoder output."""
        output, _ = self.encoder(x)
        return self.head(output[:, -1])


def make_module(module, dtype, **kwargs):
    """Build a module in eval mode with uniform(-0.5, 0.5) parameters."""
    rnn = MODULES[module](**kwargs).to(DTYPES[dtype]).eval()
    with torch.no_grad():
        for param in rnn.parameters():
            param.uniform_(-0.5, 0.5)
    return rnn


def run(rnn, module, x, state):
    """Run ``rnn`` and return ``{"output": ..., "h_n": ..., ...}``."""
    with torch.inference_mode():
        if state is None:
            output, final = rnn(x)
        else:
            output, final = rnn(x, state)
    if module == "LSTM":
        return {"output": output, "h_n": final[0], "c_n": final[1]}
    return {"output": output, "h_n": final}


def check_outputs(got, expected):
    """Assert that two output dicts are equal."""
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)


def case(name, module, *, input_size=3, hidden_size=4, num_layers=1,
         bias=True, batch_first=True, bidirectional=False,
         nonlinearity="tanh", proj_size=0, batch=3, timesteps=5,
         initial_state=False, dtype="float32"):
    """Build, run, save and record one RNN module.

    Parameters
    ----------
    name : str
        Case name; the stem of the files and the prefix of the array keys.
    module : str
        ``"RNN"``, ``"LSTM"`` or ``"GRU"``.
    input_size, hidden_size, num_layers, bias, batch_first, bidirectional
        Passed to the module constructor.
    nonlinearity : str
        ``"tanh"`` or ``"relu"``; RNN only.
    proj_size : int
        LSTM only; 0 means no projection.
    batch, timesteps : int
        Input shape.
    initial_state : bool
        If True, pass random ``h0`` (and ``c0`` for LSTM).
    dtype : str
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    case : dict
        Index entry.
    arrays : dict
        Arrays to store, keyed ``"{name}.{suffix}"``.
    """
    kwargs = {
        "input_size": input_size,
        "hidden_size": hidden_size,
        "num_layers": num_layers,
        "bias": bias,
        "batch_first": batch_first,
        "bidirectional": bidirectional,
        "dropout": 0.0,
    }
    if module == "RNN":
        kwargs["nonlinearity"] = nonlinearity
    if module == "LSTM":
        kwargs["proj_size"] = proj_size
    torch_dtype = DTYPES[dtype]
    rnn = make_module(module, dtype, **kwargs)

    x_shape = ((batch, timesteps, input_size) if batch_first
               else (timesteps, batch, input_size))
    x = torch.empty(x_shape, dtype=torch_dtype).uniform_(-1.0, 1.0)
    arrays = {"x": x}
    inputs = ["x"]
    state = None
    if initial_state:
        n_dirs = 2 if bidirectional else 1
        h_size = proj_size if proj_size else hidden_size
        h0 = torch.empty((num_layers * n_dirs, batch, h_size),
                         dtype=torch_dtype).uniform_(-1.0, 1.0)
        arrays["h0"] = h0
        inputs.append("h0")
        state = h0
        if module == "LSTM":
            c0 = torch.empty((num_layers * n_dirs, batch, hidden_size),
                             dtype=torch_dtype).uniform_(-1.0, 1.0)
            arrays["c0"] = c0
            inputs.append("c0")
            state = (h0, c0)
    outputs = run(rnn, module, x, state)
    arrays.update(outputs)

    state_dict = rnn.state_dict()
    files = save_state_dict(name, state_dict)
    for file_name in files:
        fresh = MODULES[module](**kwargs).to(torch_dtype).eval()
        fresh.load_state_dict(load_state_dict(file_name))
        check_outputs(run(fresh, module, x, state), outputs)

    entry = {
        "name": name,
        "files": files,
        "module": module,
        "kwargs": kwargs,
        "prefix": "",
        "state_dict_keys": list(state_dict),
        "inputs": inputs,
        "outputs": list(outputs),
        "dtype": dtype,
        "unsupported": False,
        "notes": [f"{f}: reloaded into a fresh module, same outputs"
                  for f in files],
        "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
    }
    return entry, prefixed_arrays(name, arrays)


def save_state_dict(name, state_dict):
    """Save a state dict as ``NAME.pt`` and ``NAME.safetensors``.

    Returns
    -------
    list of str
        The two file names.
    """
    pt_name, st_name = f"{name}.pt", f"{name}.safetensors"
    torch.save(state_dict, os.path.join(OUT_DIR, pt_name))
    safetensors.torch.save_file(state_dict, os.path.join(OUT_DIR, st_name))
    return [pt_name, st_name]


def load_state_dict(file_name):
    """Load a state dict the safe way (no arbitrary unpickling)."""
    path = os.path.join(OUT_DIR, file_name)
    if file_name.endswith(".safetensors"):
        return safetensors.torch.load_file(path)
    return torch.load(path, weights_only=True)


def prefixed_arrays(name, arrays):
    """Return ``{f"{name}.{key}": numpy_array}`` for a dict of tensors."""
    return {f"{name}.{k}": v.detach().numpy().copy()
            for k, v in arrays.items()}


def full_model_case():
    """Pickle a whole ``nn.LSTM`` object: fastrnn must refuse it."""
    name = "full_model"
    kwargs = {"input_size": 3, "hidden_size": 3, "num_layers": 1,
              "bias": True, "batch_first": True, "bidirectional": False,
              "dropout": 0.0, "proj_size": 0}
    rnn = make_module("LSTM", "float32", **kwargs)
    x = torch.empty((2, 4, 3)).uniform_(-1.0, 1.0)
    outputs = run(rnn, "LSTM", x, None)
    path = os.path.join(OUT_DIR, f"{name}.pt")
    torch.save(rnn, path)
    notes = []
    try:
        torch.load(path, weights_only=True)
    except Exception as exc:  # the expected refusal
        # Drop the ANSI bold codes PyTorch puts into the message.
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        first_line = message.strip().splitlines()[0]
        notes.append("torch.load(weights_only=True) refuses it: "
                     f"{type(exc).__name__}: {first_line}")
    else:
        raise AssertionError("weights_only=True loaded a full model")
    loaded = torch.load(path, weights_only=False).eval()
    check_outputs(run(loaded, "LSTM", x, None), outputs)
    notes.append("torch.load(weights_only=False) (unsafe: runs pickle) "
                 "gives back the module, same outputs")
    entry = {
        "name": name,
        "files": [f"{name}.pt"],
        "module": "LSTM",
        "kwargs": kwargs,
        "prefix": "",
        "state_dict_keys": list(rnn.state_dict()),
        "inputs": ["x"],
        "outputs": list(outputs),
        "dtype": "float32",
        "unsupported": True,
        "notes": notes,
        "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
    }
    return entry, prefixed_arrays(name, {"x": x, **outputs})


def prefixed_case():
    """State dict of a model holding the LSTM under ``encoder.``."""
    name = "prefixed"
    model = EncoderWithHead(3, 4, 2).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.5, 0.5)
    x = torch.empty((3, 5, 3)).uniform_(-1.0, 1.0)
    outputs = run(model.encoder, "LSTM", x, None)
    state_dict = model.state_dict()
    files = save_state_dict(name, state_dict)
    for file_name in files:
        fresh = EncoderWithHead(3, 4, 2).eval()
        fresh.load_state_dict(load_state_dict(file_name))
        check_outputs(run(fresh.encoder, "LSTM", x, None), outputs)
    kwargs = {"input_size": 3, "hidden_size": 4, "num_layers": 1,
              "bias": True, "batch_first": True, "bidirectional": False,
              "dropout": 0.0, "proj_size": 0}
    entry = {
        "name": name,
        "files": files,
        "module": "LSTM",
        "kwargs": kwargs,
        "prefix": "encoder.",
        "state_dict_keys": list(state_dict),
        "inputs": ["x"],
        "outputs": list(outputs),
        "dtype": "float32",
        "unsupported": False,
        "notes": ["The files also hold head.weight (2, 4) and head.bias (2,) "
                  "of an nn.Linear head, which a prefix='encoder.' load "
                  "must ignore; the outputs are those of model.encoder"],
        "torch_version": torch.__version__,
        "safetensors_version": safetensors.__version__,
    }
    return entry, prefixed_arrays(name, {"x": x, **outputs})


def all_cases():
    """Yield ``(case, arrays)`` for every file case."""
    yield case("t_rnn_tanh", "RNN", nonlinearity="tanh")
    yield case("t_rnn_relu_time_first_h0", "RNN", nonlinearity="relu",
               batch_first=False, initial_state=True)
    yield case("t_lstm", "LSTM", input_size=3, hidden_size=3)
    yield case("t_lstm_proj_h0_c0", "LSTM", hidden_size=4, proj_size=2,
               initial_state=True)
    yield case("t_lstm_two_layers_bidirectional", "LSTM", num_layers=2,
               bidirectional=True, batch_first=False, hidden_size=3)
    yield case("t_gru_two_layers_time_first", "GRU", num_layers=2,
               batch_first=False, hidden_size=3)
    yield case("t_gru_bidirectional_no_bias_h0", "GRU", bidirectional=True,
               bias=False, batch_first=True, initial_state=True)
    yield case("t_gru_float64", "GRU", num_layers=2, bidirectional=True,
               dtype="float64", hidden_size=3, initial_state=True)
    yield full_model_case()
    yield prefixed_case()


def main():
    """Write all files and ``expected_torch.npz``; check that it loads."""
    torch.manual_seed(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)
    index = []
    arrays = {}
    for entry, case_arrays in all_cases():
        assert not set(case_arrays) & set(arrays), entry["name"]
        for key, value in case_arrays.items():
            assert np.all(np.isfinite(value)), key
        index.append(entry)
        arrays.update(case_arrays)
        sizes = ", ".join(
            f"{f} {os.path.getsize(os.path.join(OUT_DIR, f))} B"
            for f in entry["files"])
        print(f"  {entry['name']}: {sizes}")

    arrays["index"] = np.array(json.dumps(index))
    np.savez_compressed(EXPECTED_PATH, **arrays)

    with np.load(EXPECTED_PATH, allow_pickle=False) as data:
        loaded = json.loads(str(data["index"]))
        assert len(loaded) == len(index)
        assert set(data.files) == set(arrays)
    size_kb = os.path.getsize(EXPECTED_PATH) / 1024
    print(f"Wrote {len(index)} cases, {len(arrays)} arrays, "
          f"{size_kb:.1f} KB to {EXPECTED_PATH}")


if __name__ == "__main__":
    main()
