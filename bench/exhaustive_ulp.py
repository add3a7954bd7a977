"""Every float32 input (all 2**32 bit patterns) of the compiled activations against float64.

tests/test_fast_math.py checks every 251st pattern in CI; this is the full sweep behind the bounds
quoted in csrc/fast_math.h (about two minutes per activation on the development machine)::

    python bench/exhaustive_ulp.py sigmoid tanh
    python bench/exhaustive_ulp.py --numba sigmoid tanh     # the Numba kernels' own
"""
import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
from test_fast_math import float64_truth, ulp_error

from fastrnn import activations
from fastrnn._kernels import activation as compiled

CHUNK = 2 ** 25
BINS = [0, 0.5, 1, 1.5, 2, np.inf]


def sweep(name, compiled=compiled):
    """The largest ulp error of activation `name` as `compiled` computes it (in place), its input,
    and a histogram over BINS."""
    worst, worst_x, counts = 0.0, None, np.zeros(len(BINS) - 1, np.int64)
    code = activations.code(name)
    for start in range(0, 2 ** 32, CHUNK):
        x = np.arange(start, start + CHUNK, dtype=np.uint64).astype(np.uint32).view(np.float32)
        result = x.copy()
        compiled(result, code)
        truth = float64_truth(name, x)
        # NaN exactly where float64 gives NaN: a NaN input, or silu(-inf) = -inf * 0
        wrong = np.isnan(result) != np.isnan(truth)
        if wrong.any():
            raise AssertionError(f"{name}({x[wrong][0]!r}) = {result[wrong][0]!r}, "
                                 f"float64 gives {truth[wrong][0]!r}")
        errors = ulp_error(result, truth)
        i = int(np.argmax(errors))
        if errors[i] > worst:
            worst, worst_x = float(errors[i]), x[i]
        counts += np.histogram(errors, bins=BINS)[0]
    return worst, worst_x, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="activations: tanh, sigmoid, silu, exponential, elu, selu")
    parser.add_argument("--numba", action="store_true", help="the Numba backend's activations instead")
    args = parser.parse_args()
    if args.numba:
        from fastrnn._numba import activate as implementation
    else:
        implementation = compiled
    for name in args.names:
        worst, worst_x, counts = sweep(name, implementation)
        print(f"{name}: max {worst:.3f} ulp at {worst_x!r}; inputs with error "
              + ", ".join(f"[{lo}, {hi}): {n}" for lo, hi, n in zip(BINS, BINS[1:], counts)), flush=True)


if __name__ == "__main__":
    main()
