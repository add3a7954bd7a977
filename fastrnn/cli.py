"""The ``fastrnn`` command (also ``python -m fastrnn``)."""
import argparse
import sys
import time
from pathlib import Path

import numpy as np


DATA = Path(__file__).parent / "data"


def demo():
    """Run the README's main job: load the bundled Keras-trained forecaster and check it.

    Loads ``fastrnn/data/forecaster.keras`` (an LSTM -> GRU -> Dense model trained by
    ``examples/train_forecaster.py`` to predict the next value of a noisy sine wave), prints its
    summary, runs a batch of held-out windows, compares the forecasts with the truth and with
    Keras's own predictions stored beside the model, and times the call against the NumPy
    reference.

    Returns
    -------
    float
        The largest absolute difference between fastrnn's and Keras's predictions.
    """
    import fastrnn

    model = fastrnn.load(DATA / "forecaster.keras")
    with np.load(DATA / "forecaster_expected.npz", allow_pickle=False) as expected:
        x, y_true, y_keras = expected["x"], expected["y_true"], expected["y_keras"]
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
    fastrnn.set_backend("numpy")
    try:
        times["numpy reference"] = _time_per_call(model, x)
    finally:
        fastrnn.set_backend(name)
    print("time per batch: " + ", ".join(f"{k} {t * 1e6:.1f} us" for k, t in times.items())
          + f" ({times['numpy reference'] / times[name]:.1f}x)")
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
    commands.add_parser("demo", help="run the bundled Keras-trained example model and check it")
    commands.add_parser("config", help="print version, backend and build information")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return 0 if demo() <= 1e-5 else 1
    import fastrnn

    fastrnn.show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
