"""The ``fastrnn`` command (also ``python -m fastrnn``): info, predict, bench, demo and config.

Every failure is reported as one line on stderr, ``fastrnn: error: ...``, with exit status 1;
usage errors exit with status 2 (argparse). ``fastrnn --debug COMMAND ...`` prints the traceback
too. Reading inputs and writing predictions chunk by chunk lives in `fastrnn._cli_io`.
"""
import argparse
import contextlib
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np

from ._cli_io import (CommandError, PredictionWriter, Progress, batch_axis, bench_inputs, check_inputs,
                      describe_format, format_seconds, format_shape, input_specs, is_torch, open_inputs,
                      output_names, output_path, take_rows, time_calls, torch_module)
from .models import Model

DATA = Path(__file__).parent / "data"


# ----------------------------------------------------------------------------- loading models
def _load(args):
    """Load ``args.model``, passing the PyTorch options that were given on the command line."""
    import fastrnn

    options = {"batch_first": args.batch_first or None, "prefix": args.prefix, "nonlinearity": args.nonlinearity}
    return fastrnn.load(args.model, **{key: value for key, value in options.items() if value is not None})


# ----------------------------------------------------------------------------- info
def _weights_dtype(model):
    dtypes = sorted({np.dtype(layer.dtype).name for layer in model.layers if layer.weights})
    return ", ".join(dtypes) or "float32"


def _output_specs(model):
    if is_torch(model):
        size = (model.proj_size or model.hidden_size) * (2 if model.bidirectional else 1)
        return [("output", (None, None, size))]
    if isinstance(model, Model):
        return [(t.name, t.shape) for t in model.outputs]
    return [(None, model.output_shape)]


def _print_torch_info(model):
    directions = "bidirectional" if model.bidirectional else "unidirectional"
    sizes = f"input_size {model.input_size}, hidden_size {model.hidden_size}"
    if model.proj_size:
        sizes += f", proj_size {model.proj_size}"
    layout = ("(batch, time, features)" if model.batch_first
              else "(time, batch, features); pass --batch-first for (batch, time, features)")
    print(f"mode:     {model.mode} (torch.nn.{model.mode}{', ' + model.nonlinearity if model.mode == 'RNN' else ''})")
    print(f"sizes:    {sizes}")
    print(f"layers:   {model.num_layers}, {directions}, {'with' if model.bias else 'without'} bias")
    print(f"batch_first: {model.batch_first} (inputs and outputs are {layout})")


def info(args):
    """``fastrnn info MODEL``: print what the model is, where it comes from and what runs it.

    Returns
    -------
    int
        The exit status, 0.
    """
    import fastrnn

    model = _load(args)
    if is_torch(model):
        _print_torch_info(model)
    else:
        model.summary(print_fn=print)
    print(f"format:   {describe_format(args.model)}")
    print(f"dtype:    {model.dtype.name if is_torch(model) else _weights_dtype(model)}")
    for spec in input_specs(model):
        name = f"{spec.name} " if spec.name else ""
        print(f"input:    {name}{format_shape(spec.shape)} {spec.dtype.name}")
    for name, shape in _output_specs(model):
        print(f"output:   {name + ' ' if name else ''}{format_shape(shape)}")
    print(f"params:   {model.count_params():,}")
    print(f"backend:  {fastrnn.backend()}")
    return 0


# ----------------------------------------------------------------------------- predict
@contextlib.contextmanager
def _threads(count):
    """Run the block with `fastrnn.set_num_threads(count)`, the previous count restored after."""
    import fastrnn

    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(count)
    try:
        yield
    finally:
        fastrnn.set_num_threads(previous)


@contextlib.contextmanager
def _backend(name):
    """Run the block on backend `name`, then go back to the previous one (main may be called in-process)."""
    import fastrnn

    previous = fastrnn.backend()
    fastrnn.set_backend(name)
    try:
        yield
    finally:
        fastrnn.set_backend(previous)


def _predict_chunk(model, chunk, batch_size):
    """The model's outputs for one chunk of inputs, as a list of arrays."""
    if is_torch(model):
        output, _ = model(chunk[0])     # torch's (output, h_n): the sequence output is the prediction
        return [output]
    outputs = model.predict(chunk if len(chunk) > 1 else chunk[0], batch_size=batch_size)
    return outputs if isinstance(outputs, list) else [outputs]


def _count_outputs(model):
    return len(model.outputs) if isinstance(model, Model) else 1


def _run_chunks(model, arrays, rows, writer, progress, batch_size):
    axis = batch_axis(model)
    # A stateful model runs in the batch it was declared for, chunks being whole batches of it.
    required = getattr(model, "_required_batch", None)
    if required and rows % required:
        raise CommandError(f"the model's stateful layers take batches of {required}: the input's {rows} "
                           f"sequences are not a multiple of {required}")
    chunk_rows = max(required, batch_size // required * required) if required else batch_size
    # One chunk even for zero rows: the output file then still gets its shape and dtype.
    for start in range(0, max(rows, 1), chunk_rows):
        chunk = [take_rows(array, axis, start, start + chunk_rows) for array in arrays]
        outputs = _predict_chunk(model, chunk, required or batch_size)
        writer.write(start, outputs)
        progress.update(outputs[0].shape[axis])


def predict(args):
    """``fastrnn predict MODEL INPUT``: run the model over a file of inputs, chunk by chunk.

    Returns
    -------
    int
        The exit status, 0.
    """
    import fastrnn

    model = _load(args)
    arrays = open_inputs(args.input, model, args.input_name)
    rows = check_inputs(args.input, arrays, model)
    count = _count_outputs(model)
    path = output_path(args.input, args.output, several=count > 1, model_path=args.model)
    writer = PredictionWriter(path, output_names(model, count), rows, batch_axis(model))
    with contextlib.ExitStack() as stack:
        if args.backend:
            stack.enter_context(_backend(args.backend))
        fastrnn.backend()   # import the kernels now (a third of a second), before the clock starts
        if args.threads:
            stack.enter_context(_threads(args.threads))
        progress = Progress(rows, enabled=sys.stderr.isatty() and not args.quiet)
        start = time.perf_counter()
        try:
            _run_chunks(model, arrays, rows, writer, progress, args.batch_size or 1024)
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        finally:
            progress.close()
        elapsed = time.perf_counter() - start
    print(f"{rows} sequences in {elapsed:.2f} s ({rows / max(elapsed, 1e-9):,.0f} sequences/s) -> {path}")
    return 0


# ----------------------------------------------------------------------------- bench
def _bench_torch(model, x, seconds, notes):
    """Time the torch module equivalent to `model` on `x`; add to `notes` how it compares."""
    try:
        import torch
    except ImportError:
        notes.append("torch: not installed, not timed")
        return None
    module, tensor = torch_module(model), torch.from_numpy(x)
    with torch.inference_mode(), warnings.catch_warnings():
        # torch notes on stderr that oneDNN lacks LSTM projections: not the user's concern here.
        warnings.filterwarnings("ignore", "LSTM with projections is not supported with oneDNN")
        difference = np.abs(module(tensor)[0].numpy() - model(x)[0]).max()
        times = time_calls(lambda: module(tensor), seconds)
    notes.append(f"torch {torch.__version__}: same weights, largest difference from fastrnn {difference:.1e}")
    return times


def bench(args):
    """``fastrnn bench MODEL``: time the model on random inputs on every available backend.

    Returns
    -------
    int
        The exit status, 0.
    """
    from fastrnn.backends import available

    model = _load(args)
    inputs = bench_inputs(model, args.batch, args.timesteps)
    x = inputs if len(inputs) > 1 else inputs[0]

    def call():
        return model(x)

    results, notes = {}, []
    for name, reason in available().items():
        if reason is not None:
            notes.append(f"{name}: unavailable, not timed ({reason})")
            continue
        with _backend(name):
            results[name] = time_calls(call, args.seconds)
    if is_torch(model):
        times = _bench_torch(model, inputs[0], args.seconds, notes)
        if times is not None:
            results["torch"] = times
    notes.append("onnxruntime: not timed (fastrnn does not export models to ONNX)")
    steps = {x.shape[1 - batch_axis(model)] for x in inputs if x.ndim >= 3 or x.dtype.kind in "iu"}  # sequences
    if steps and args.timesteps not in steps:
        notes.append(f"timesteps: the model fixes them at {min(steps)}; --timesteps {args.timesteps} is not used")
    shapes = ", ".join(f"{format_shape(x.shape)} {x.dtype.name}" for x in inputs)
    if batch_axis(model) == 1:
        shapes += " (time, batch, features)"
    print(f"{args.model}: inputs {shapes}, about {args.seconds:g} s per engine")
    print(f"{'engine':<10}{'p50':>12}{'p99':>12}{'sequences/s':>16}")
    for name, times in results.items():
        rate = inputs[0].shape[batch_axis(model)] * len(times) / times.sum()
        print(f"{name:<10}{format_seconds(np.percentile(times, 50)):>12}"
              f"{format_seconds(np.percentile(times, 99)):>12}{rate:>16,.0f}")
    for note in notes:
        print(note)
    return 0


# ----------------------------------------------------------------------------- demo
def _plot_forecasts(path, series, starts, window, y_true, y_keras, y):
    """Draw the test series and the three sets of next-value forecasts into `path`."""
    # A bare Figure, not pyplot: no GUI backend and no global state.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots()
    targets = np.asarray(starts) + window
    axes.plot(series, color="0.75", linewidth=1, label="test series")
    axes.plot(targets, y_true.ravel(), "o", markerfacecolor="none", color="black", label="truth")
    axes.plot(targets, y_keras.ravel(), "x", color="tab:blue", label="Keras")
    axes.plot(targets, y.ravel(), "+", markersize=10, color="tab:orange", label="fastrnn")
    axes.set(xlabel="step", ylabel="value",
             title=f"Next-value forecasts after windows of {window} steps: the bundled forecaster")
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))   # beside the axes: it hides no forecast
    figure.savefig(path)


def demo(plot=None):
    """Run the README's main job: load the bundled Keras-trained forecaster and check it.

    Loads ``fastrnn/data/forecaster.keras`` (an LSTM -> GRU -> Dense model trained by
    ``examples/train_forecaster.py`` to predict the next value of a noisy sine wave), prints its
    summary, runs a batch of held-out windows, compares the forecasts with the truth and with
    Keras's own predictions stored beside the model, and times the call against the NumPy
    reference.

    Parameters
    ----------
    plot : str, optional
        Also draw the test series, the truth and both sets of forecasts into this image file
        (needs matplotlib).

    Returns
    -------
    float
        The largest absolute difference between fastrnn's and Keras's predictions.

    Raises
    ------
    CommandError
        If `plot` is given and matplotlib is not installed (checked before anything runs).
    """
    import fastrnn

    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("--plot needs matplotlib: pip install matplotlib") from None
    model = fastrnn.load(DATA / "forecaster.keras")
    with np.load(DATA / "forecaster_expected.npz", allow_pickle=False) as expected:
        x, y_true, y_keras = expected["x"], expected["y_true"], expected["y_keras"]
        series, starts = expected["series"], expected["starts"]
    name = fastrnn.backend()
    print(f"fastrnn {fastrnn.__version__}, backend: {name}")
    print(f"bundled model: {DATA / 'forecaster.keras'} (trained with Keras by examples/train_forecaster.py)")
    model.summary()

    y = model.predict(x)
    error = float(np.abs(y - y_keras).max())
    print(f"\nnext-value forecasts for {len(x)} held-out windows of {x.shape[1]} steps:")
    print(f"{'truth':>10} {'keras':>10} {'fastrnn':>10}")
    for t, k, f in zip(y_true.ravel(), y_keras.ravel(), y.ravel()):
        print(f"{t:10.4f} {k:10.4f} {f:10.4f}")
    print(f"largest difference from Keras: {error:.2e}; mean squared error against the truth: "
          f"{float(np.mean((y.ravel() - y_true.ravel()) ** 2)):.4f}")

    times = {name: _time_per_call(model, x)}
    with _backend("numpy"):
        times["numpy reference"] = _time_per_call(model, x)
    print("time per batch: " + ", ".join(f"{k} {t * 1e6:.1f} us" for k, t in times.items())
          + f" ({times['numpy reference'] / times[name]:.1f}x)")
    if plot is not None:
        _plot_forecasts(plot, series, starts, x.shape[1], y_true, y_keras, y)
        print(f"plot written to {plot}")
    return error


def _time_per_call(layer, x, seconds=0.2):
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        layer(x)
        calls += 1
    return (time.perf_counter() - start) / calls


# ----------------------------------------------------------------------------- command line
def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):    # (NaN fails too; inf seconds would never end)
            raise argparse.ArgumentTypeError(f"expected a positive finite {kind.__name__}, got {text!r}")
        return value

    return parse


def _model_options():
    """The MODEL argument and what a PyTorch state dict cannot tell, shared by info, predict and bench."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("model", metavar="MODEL", help="a .keras, .h5, .safetensors, .pt or fastrnn .npz file")
    torch = parent.add_argument_group("PyTorch files")
    torch.add_argument("--batch-first", action="store_true", help="inputs are (batch, time, features)")
    torch.add_argument("--prefix", help="select one module's tensors, e.g. encoder.rnn.")
    torch.add_argument("--nonlinearity", choices=("tanh", "relu"), help="the activation of an nn.RNN")
    return parent


def build_parser():
    """The ``fastrnn`` argument parser, one subcommand per job."""
    parser = argparse.ArgumentParser(prog="fastrnn", description="Fast CPU inference for trained RNNs.")
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model = _model_options()

    info_parser = commands.add_parser("info", parents=[model], help="describe a model file")
    info_parser.set_defaults(run=info)

    run = commands.add_parser("predict", parents=[model], help="run a model over a .npy or .npz of inputs")
    run.add_argument("input", metavar="INPUT", help=".npy (memory-mapped) or .npz (one array per model input)")
    run.add_argument("-o", "--output", metavar="OUTPUT", help=".npy, or .npz for several outputs "
                     "(default: INPUT's stem + .pred.npy or .pred.npz)")
    run.add_argument("--batch-size", type=_positive(int), default=None, metavar="N",
                     help="rows per chunk (1024; a stateful model runs in the batch it was declared for)")
    run.add_argument("--threads", type=_positive(int), metavar="N", help="threads a forward pass may use (fastrnn.set_num_threads; default: the CPUs)")
    run.add_argument("--backend", choices=("cython", "numba", "numpy"), metavar="NAME",
                     help="cython, numba or numpy (default: fastrnn's choice)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--input-name", action="extend", nargs="+", metavar="NAME",
                     help="the .npz arrays for the model's inputs, in order")
    run.set_defaults(run=predict)

    timing = commands.add_parser("bench", parents=[model], help="time a model on every available backend")
    timing.add_argument("--batch", type=_positive(int), default=1, metavar="N", help="sequences per call (1)")
    timing.add_argument("--timesteps", type=_positive(int), default=32, metavar="N",
                        help="timesteps where the model leaves them free (32)")
    timing.add_argument("--seconds", type=_positive(float), default=1.0, metavar="S",
                        help="time spent per engine (1)")
    timing.set_defaults(run=bench)

    example = commands.add_parser("demo", help="run the bundled Keras-trained example model and check it")
    example.add_argument("--plot", metavar="FILE.png", help="draw the forecasts (needs matplotlib)")
    example.set_defaults(run=_demo)

    config = commands.add_parser("config", help="print version, backend and build information")
    config.set_defaults(run=_config)
    return parser


def _demo(args):
    return 0 if demo(args.plot) <= 1e-5 else 1


def _config(args):
    import fastrnn

    fastrnn.show_config()
    return 0


def _one_line(exc):
    """The error message of `exc` on one line."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror or exc}"
    elif isinstance(exc, (CommandError, ValueError, TypeError, ImportError, OSError)):
        text = str(exc)
    else:
        # Not an error fastrnn expects: its type helps whoever reads the report.
        text = f"{type(exc).__name__}: {exc}"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or type(exc).__name__


def _silence_stdout():
    """After a broken pipe: send stdout to /dev/null, so that Python's final flush cannot fail too."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass  # not a real file (e.g. captured by a test): nothing will be flushed to a pipe


def main(argv=None):
    """Entry point of the ``fastrnn`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        0 on success, 1 on a failure (reported as one line on stderr). Usage errors raise
        ``SystemExit(2)``, as argparse does.
    """
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        # Flushed here, so that a closed pipe (``fastrnn info m.keras | head -1``) is caught below.
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        print("fastrnn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"fastrnn: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
