"""Two builds of the compiled kernels, side by side on one recurrence, in one process.

This VM's timings drift by up to 30% from run to run, so a kernel change is judged against the
build before it, interleaved in rounds: copy the extension aside, rebuild, and compare::

    cp fastrnn/_kernels*.so /tmp/before.so
    python setup.py build_ext --inplace -q
    python bench/ab_kernels.py /tmp/before.so fastrnn/_kernels*.so --cell LSTM --shape 32,100,64,128

Each build is loaded under its own module name and called directly (no layer overhead,
batch-major float32 or float64 inputs, no mask, last state only; builds from before the kernels
took batch-major inputs, 2026-11-29, refuse them, or misread them where batch equals timesteps). A path may end in ``@N`` to let
that build's calls run on N threads of its team (one by default), and in ``:amx`` to run its
products in AMX tiles where the CPU has them (FASTRNN_AMX=1; builds from before them,
2026-11-29, have none); the same build may be listed twice, as ``fastrnn/_kernels*.so@1
fastrnn/_kernels*.so@2`` or ``fastrnn/_kernels*.so fastrnn/_kernels*.so:amx``. Both outputs are
compared before timing. Prints each build's median time, GFLOP/s and the ratio to the first.
"""
import argparse
import importlib.util
import time

import numpy as np

from fastrnn import activations, backends

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


class Build:
    """The extension at `path` (``PATH@THREADS:amx``) as module ``build<n>._kernels``, its BLAS
    held to one thread; its calls run on THREADS threads (builds without a team run on one), in
    AMX tiles with ``:amx`` where the build and the CPU have them."""

    def __init__(self, path, n):
        path, _, amx = path.partition(":")
        path, _, threads = path.partition("@")
        spec = importlib.util.spec_from_file_location(f"build{n}._kernels", path)
        self.module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.module)
        self.module.use_blas_thread_control(backends._blas_set_threads_address())
        self.threads = int(threads or 1)
        self.settings = {"threads": self.threads}
        if hasattr(self.module, "configure") and "amx" in self.module.configure():
            self.settings["amx"] = amx == "amx"

    def __getattr__(self, name):
        # A team is one per process: each build sets its thread count (and AMX) before each of
        # its calls.
        if hasattr(self.module, "configure"):
            self.module.configure(**self.settings)
        return getattr(self.module, name)


def recurrence(module, cell, x, kernel, recurrent_kernel):
    """Run `cell` over `x` (B, T, I) with `module`'s kernel; return the final h."""
    dtype, batch, units = x.dtype, x.shape[0], recurrent_kernel.shape[0]
    bias, mask, sequence = np.zeros(kernel.shape[1], dtype), np.zeros((0, 0), np.uint8), np.zeros((0, 0, 0), dtype)
    tanh, sigmoid = activations.code("tanh"), activations.code("sigmoid")
    h = np.zeros((batch, units), dtype)
    if cell == "SimpleRNN":
        module.simple_rnn(x, kernel, bias, recurrent_kernel, mask, tanh, h, sequence)
    elif cell == "LSTM":
        c = np.zeros((batch, units), dtype)
        module.lstm(x, kernel, bias, recurrent_kernel, np.zeros((0, 0), dtype), mask, tanh, sigmoid, h, c, sequence)
    else:
        module.gru(x, kernel, bias, recurrent_kernel, bias, mask, tanh, sigmoid, True, h, sequence)
    return h


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("builds", nargs="+", help="paths of _kernels extension files; the first is the baseline")
    parser.add_argument("--cell", choices=GATES, default="LSTM")
    parser.add_argument("--shape", default="32,100,64,128", help="batch,timesteps,inputs,units")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing in all")
    args = parser.parse_args()
    batch, timesteps, inputs, units = map(int, args.shape.split(","))
    rng = np.random.default_rng(0)
    dtype, gates = np.dtype(args.dtype), GATES[args.cell]
    x = rng.standard_normal((batch, timesteps, inputs)).astype(dtype)
    kernel = (0.1 * rng.standard_normal((inputs, gates * units))).astype(dtype)
    recurrent_kernel = (0.1 * rng.standard_normal((units, gates * units))).astype(dtype)
    modules = [Build(path, n) for n, path in enumerate(args.builds)]

    def run(module):
        return recurrence(module, args.cell, x, kernel, recurrent_kernel)

    first = run(modules[0])
    for path, module in zip(args.builds[1:], modules[1:]):
        difference = float(np.abs(run(module) - first).max())
        print(f"{path}: max difference from {args.builds[0]}: {difference:.3g}")
    start = time.perf_counter()
    run(modules[0])
    repeats = max(1, int(0.05 / (time.perf_counter() - start)))   # rounds of about 50 ms per build
    times = [[] for _ in modules]
    end = time.perf_counter() + args.budget
    while time.perf_counter() < end:
        for module, samples in zip(modules, times):
            start = time.perf_counter()
            for _ in range(repeats):
                run(module)
            samples.append((time.perf_counter() - start) / repeats)
    flops = 2 * batch * timesteps * units * (inputs + units) * gates
    medians = [float(np.median(samples)) for samples in times]
    print(f"{args.cell} {batch}x{timesteps}x{inputs}x{units} {args.dtype}, {len(times[0])} rounds:")
    for path, median in zip(args.builds, medians):
        print(f"  {path}: {median * 1e3:.3f} ms, {flops / median / 1e9:.1f} GFLOP/s, "
              f"{medians[0] / median:.2f}x the first")


if __name__ == "__main__":
    main()
