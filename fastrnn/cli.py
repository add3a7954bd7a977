"""The ``fastrnn`` command (also ``python -m fastrnn``)."""
import argparse
import sys
import time

import numpy as np


def demo(batch=8, seed=0):
    """Run the README's main job: the tutorial's 42-parameter SimpleRNN on a batch, checked.

    Builds ``SimpleRNN(3, input_shape=(2, 10))`` with Keras's initialisation, runs a batch of
    ``(batch, 2, 10)`` inputs through the active backend, compares with the NumPy reference
    and prints the outputs, the backend in use and the time per call of each.

    Parameters
    ----------
    batch : int
        Number of sequences in the batch.
    seed : int
        Seed of the weights and of the inputs.

    Returns
    -------
    float
        The largest absolute difference between the active backend and the reference.
    """
    import fastrnn

    layer = fastrnn.SimpleRNN(3, input_shape=(2, 10), return_sequences=True, seed=seed)
    x = np.random.default_rng(seed).standard_normal((batch, 2, 10)).astype(np.float32)
    name = fastrnn.backend()
    print(f"fastrnn {fastrnn.__version__}, backend: {name}")
    print(f"layer {layer.name}: SimpleRNN(3) on input (None, 2, 10), "
          f"{layer.count_params()} params, output (batch, timesteps, units) = {layer.output_shape}")

    outputs = layer(x)
    print(f"outputs for a batch of {batch}, shape {outputs.shape}:")
    with np.printoptions(precision=4, suppress=True):
        print(outputs)

    times = {name: _time_per_call(layer, x)}
    fastrnn.set_backend("numpy")
    try:
        expected = layer(x)
        times["numpy reference"] = _time_per_call(layer, x)
    finally:
        fastrnn.set_backend(name)
    error = float(np.abs(outputs - expected).max())
    print(f"largest difference from the NumPy reference: {error:.2e}")
    print("time per call: " + ", ".join(f"{k} {t * 1e6:.1f} us" for k, t in times.items()))
    return error


def _time_per_call(layer, x, seconds=0.2):
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        layer(x)
        calls += 1
    return (time.perf_counter() - start) / calls


def main(argv=None):
    """Entry point of the ``fastrnn`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.
    """
    parser = argparse.ArgumentParser(prog="fastrnn", description="Fast CPU inference for trained RNNs.")
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run the bundled example model and check it")
    run_demo.add_argument("--batch", type=int, default=8, help="sequences in the batch (default 8)")
    run_demo.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    commands.add_parser("config", help="print version, backend and build information")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.batch < 1:
            parser.error(f"--batch must be at least 1, got {args.batch}")
        error = demo(args.batch, args.seed)
        return 0 if error <= 1e-5 else 1
    import fastrnn

    fastrnn.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
