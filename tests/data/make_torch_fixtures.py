"""Generate golden ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` outputs for fastrnn.

This script builds PyTorch recurrent modules with random (seeded) weights,
runs them on random inputs and stores inputs, state dicts and outputs in
``torch_rnn.npz`` next to this file.  The fastrnn test suite only reads that
file; it does not need PyTorch installed.

Last run with: Python 3.11.7, torch 2.13.0+cpu, numpy 2.4.6.

How to run (from the repository root, ideally in a separate virtualenv; the
CPU wheel is enough)::

    pip install torch numpy
    python tests/data/make_torch_fixtures.py

File layout (``np.load(path, allow_pickle=False)``):

``index``
    0-d unicode array holding a JSON list of case dicts with keys

    ``name``
        Case name, the prefix of the case's array keys.
    ``module``
        ``"RNN"``, ``"LSTM"`` or ``"GRU"``.
    ``kwargs``
        Constructor arguments: ``input_size``, ``hidden_size``,
        ``num_layers``, ``bias``, ``batch_first``, ``bidirectional``,
        ``dropout`` (always 0), plus ``nonlinearity`` (RNN only) and
        ``proj_size`` (LSTM only).
    ``inputs``
        ``["x"]``, ``["x", "h0"]`` or ``["x", "h0", "c0"]``.
    ``outputs``
        ``["output", "h_n"]`` or ``["output", "h_n", "c_n"]``.
    ``dtype``
        ``"float32"`` or ``"float64"``.
    ``torch_version``

``{name}.x``
    Input in the module's layout: ``(batch, T, input_size)`` if
    ``batch_first`` else ``(T, batch, input_size)``.
``{name}.h0``, ``{name}.c0``
    Initial states, ``(num_layers * num_directions, batch, H)`` where ``H``
    is ``proj_size`` (if non-zero) for ``h0`` and ``hidden_size`` for
    ``c0``.
``{name}.output``, ``{name}.h_n``, ``{name}.c_n``
    Module outputs (``output`` in the same layout as ``x``).
``{name}.sd.{key}``
    Every tensor of ``module.state_dict()``, e.g. ``weight_ih_l0``,
    ``bias_hh_l1_reverse``, ``weight_hr_l0`` (``proj_size`` only).
"""

import json
import os

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_PATH = os.path.join(HERE, "torch_rnn.npz")
SEED = 20240611

MODULES = {"RNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def run_case(name, module, *, input_size=3, hidden_size=4, num_layers=1,
             bias=True, batch_first=True, bidirectional=False,
             nonlinearity="tanh", proj_size=0, batch=3, timesteps=5,
             initial_state=False, dtype="float32"):
    """Build, run and record one PyTorch RNN case.

    Parameters
    ----------
    name : str
        Case name; used as the prefix of the array keys.
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
        Index entry for this case.
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
    rnn = MODULES[module](**kwargs).to(torch_dtype).eval()
    with torch.no_grad():
        for param in rnn.parameters():
            param.uniform_(-0.5, 0.5)

    x_shape = ((batch, timesteps, input_size) if batch_first
               else (timesteps, batch, input_size))
    x = torch.empty(x_shape, dtype=torch_dtype).uniform_(-1.0, 1.0)
    arrays = {f"{name}.x": x}
    inputs = ["x"]
    call_args = [x]
    if initial_state:
        n_dirs = 2 if bidirectional else 1
        h_size = proj_size if proj_size else hidden_size
        h0 = torch.empty((num_layers * n_dirs, batch, h_size),
                         dtype=torch_dtype).uniform_(-1.0, 1.0)
        arrays[f"{name}.h0"] = h0
        inputs.append("h0")
        state = h0
        if module == "LSTM":
            c0 = torch.empty((num_layers * n_dirs, batch, hidden_size),
                             dtype=torch_dtype).uniform_(-1.0, 1.0)
            arrays[f"{name}.c0"] = c0
            inputs.append("c0")
            state = (h0, c0)
        call_args.append(state)

    with torch.inference_mode():
        output, final = rnn(*call_args)
    arrays[f"{name}.output"] = output
    if module == "LSTM":
        arrays[f"{name}.h_n"], arrays[f"{name}.c_n"] = final
        outputs = ["output", "h_n", "c_n"]
    else:
        arrays[f"{name}.h_n"] = final
        outputs = ["output", "h_n"]
    for key, tensor in rnn.state_dict().items():
        arrays[f"{name}.sd.{key}"] = tensor
    arrays = {k: v.detach().numpy().copy() for k, v in arrays.items()}

    case = {
        "name": name,
        "module": module,
        "kwargs": kwargs,
        "inputs": inputs,
        "outputs": outputs,
        "dtype": dtype,
        "torch_version": torch.__version__,
    }
    return case, arrays


def all_cases():
    """Yield ``(case, arrays)`` for every fixture case."""
    # RNN (Elman) with both nonlinearities and both layouts.
    for act in ("tanh", "relu"):
        yield run_case(f"rnn_{act}_batch_first", "RNN", nonlinearity=act)
        yield run_case(f"rnn_{act}_time_first", "RNN", nonlinearity=act,
                       batch_first=False)
    yield run_case("rnn_two_layers", "RNN", num_layers=2, input_size=5,
                   hidden_size=3)
    yield run_case("rnn_bidirectional_h0", "RNN", bidirectional=True,
                   initial_state=True)
    yield run_case("rnn_no_bias", "RNN", bias=False, nonlinearity="relu")
    yield run_case("rnn_float64_two_layers_bidirectional", "RNN",
                   num_layers=2, bidirectional=True, initial_state=True,
                   batch_first=False, dtype="float64")
    # LSTM.
    yield run_case("lstm_batch_first", "LSTM")
    yield run_case("lstm_time_first", "LSTM", batch_first=False,
                   input_size=4, hidden_size=3, batch=2, timesteps=6)
    yield run_case("lstm_two_layers", "LSTM", num_layers=2)
    yield run_case("lstm_bidirectional", "LSTM", bidirectional=True)
    yield run_case("lstm_no_bias", "LSTM", bias=False)
    yield run_case("lstm_h0_c0", "LSTM", initial_state=True)
    yield run_case("lstm_proj", "LSTM", proj_size=2)
    yield run_case("lstm_proj_two_layers_bidirectional_h0_c0", "LSTM",
                   proj_size=3, hidden_size=5, num_layers=2,
                   bidirectional=True, initial_state=True, batch_first=False)
    yield run_case("lstm_float64_two_layers_bidirectional", "LSTM",
                   num_layers=2, bidirectional=True, initial_state=True,
                   dtype="float64")
    # GRU.
    yield run_case("gru_batch_first", "GRU")
    yield run_case("gru_time_first", "GRU", batch_first=False,
                   input_size=4, hidden_size=3, batch=2, timesteps=6)
    yield run_case("gru_two_layers", "GRU", num_layers=2)
    yield run_case("gru_bidirectional", "GRU", bidirectional=True)
    yield run_case("gru_no_bias", "GRU", bias=False)
    yield run_case("gru_h0", "GRU", initial_state=True)
    yield run_case("gru_float64_two_layers_bidirectional", "GRU",
                   num_layers=2, bidirectional=True, initial_state=True,
                   batch_first=False, dtype="float64")


def main():
    """Generate all cases, write the fixture file and check that it loads."""
    torch.manual_seed(SEED)
    index = []
    arrays = {}
    for case, case_arrays in all_cases():
        assert not set(case_arrays) & set(arrays), case["name"]
        for key, value in case_arrays.items():
            assert np.all(np.isfinite(value)), key
        index.append(case)
        arrays.update(case_arrays)

    arrays["index"] = np.array(json.dumps(index))
    np.savez_compressed(OUT_PATH, **arrays)

    with np.load(OUT_PATH, allow_pickle=False) as data:
        loaded = json.loads(str(data["index"]))
        assert len(loaded) == len(index)
        assert set(data.files) == set(arrays)
    size_kb = os.path.getsize(OUT_PATH) / 1024
    print(f"Wrote {len(index)} cases, {len(arrays)} arrays, "
          f"{size_kb:.1f} KB to {OUT_PATH}")


if __name__ == "__main__":
    main()
