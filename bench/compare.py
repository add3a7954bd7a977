"""Side-by-side speed comparison of fastrnn with PyTorch, ONNX Runtime and (optionally) Keras.

For every cell (SimpleRNN, LSTM, GRU), shape and output mode of the grid below, one torch module
is built with a fixed seed. fastrnn runs the same weights (converted with `fastrnn.from_torch`),
ONNX Runtime runs the module exported with `torch.onnx.export`, and Keras, when it is installed,
runs them in a Keras layer. Every engine's output is first checked against fastrnn's NumPy
reference backend; an engine that disagrees is reported as FAIL and not timed. The others are
timed in interleaved rounds and their medians compared.

The report (markdown on stdout, progress on stderr) gives the machine and versions, per row
fastrnn's time and GFLOP/s against the fastest peer, a summary with the matmul roofline, every
engine's time and the cost of a minimal call. Run from the repository root::

    pip install torch --index-url https://download.pytorch.org/whl/cpu   # Linux: else CUDA's, GBs
    pip install -e ".[bench]"
    python bench/compare.py --quick                # LSTM, three shapes: about a minute
    python bench/compare.py --markdown report.md   # the whole grid: several minutes

Engines whose package cannot be imported are skipped, and the report says so.
"""
import argparse
import contextlib
import datetime
import functools
import importlib
import io
import math
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

import fastrnn

# Cell name -> (torch.nn class, number of gates). GRU is reset_after=True, PyTorch's form.
CELLS = {"SimpleRNN": ("RNN", 1), "LSTM": ("LSTM", 4), "GRU": ("GRU", 3)}
# (batch, timesteps, input_dim, units)
SHAPES = [
    (1, 10, 8, 16),
    (1, 100, 32, 64),
    (8, 50, 32, 64),
    (32, 100, 64, 128),
    (256, 50, 128, 256),
    (1024, 20, 64, 64),
    (4, 2000, 16, 32),
    (64, 100, 256, 512),
]
MODES = ["sequence", "last"]  # return_sequences=True; the last step only
ENGINES = ["fastrnn", "torch", "onnxruntime", "keras"]
QUICK = {"cells": "LSTM", "shapes": "0,2,5", "budget": 1.5}
DEFAULT_BUDGET = 2.0    # seconds of timing rounds per row
TOLERANCE = 1e-4        # largest absolute difference from the NumPy reference
SEED = 0
WARMUP_CALLS = 3
SAMPLE_SECONDS = 0.05   # a timed sample repeats a call back to back until it lasts about this long
# Before each sample, a pause until the process's other threads (the previous engine's pools) have
# used under QUIET_SHARE of a core for QUIET_SECONDS, at least SETTLE_SECONDS and at most
# SETTLE_LIMIT. A fixed 50 ms was too short: ONNX Runtime's worker spins about 60 ms after a call.
SETTLE_SECONDS = 0.05
QUIET_SECONDS = 0.01
QUIET_SHARE = 0.05
SETTLE_LIMIT = 1.0
MIN_ROUNDS, MAX_ROUNDS = 5, 2000


class Engine:
    """One way of running a row: a name, a call to time and an untimed preparation.

    Parameters
    ----------
    name : str
        As shown in the report, e.g. ``"torch-2t"``.
    call : callable
        Runs the model once on the row's input (built beforehand) and returns the output.
    prepare : callable, optional
        Run before each timed sample, outside the timing (sets thread counts, backends).
    """

    def __init__(self, name, call, prepare=None):
        self.name, self.call, self.prepare = name, call, prepare or (lambda: None)
        self.repeats, self.times = 1, []


def optional_import(name):
    """Import module `name`; return ``(module, None)``, or ``(None, reason)`` if it cannot be."""
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken installation
        return None, f"{type(exc).__name__}: {exc}"


def flops(cell, shape):
    """Floating-point operations of one forward pass: 2·B·T·H·(I+H)·gates."""
    batch, timesteps, input_dim, units = shape
    return 2 * batch * timesteps * units * (input_dim + units) * CELLS[cell][1]


def format_time(seconds):
    """A duration with three significant figures and a unit (µs, ms or s)."""
    for unit, scale in (("µs", 1e-6), ("ms", 1e-3)):
        if seconds < 1000 * scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def fastrnn_run(cell, torch_rnn, mode):
    """fastrnn's ``run(x)``: the converted `torch_rnn` for the sequence, a Keras-style layer for the last step."""
    if mode == "sequence":
        return lambda x: torch_rnn(x)[0]
    source = torch_rnn.layers[0]
    return getattr(fastrnn, cell)(source.units, return_sequences=False, weights=source.get_weights())


def reference_output(run, x):
    """`run(x)` on fastrnn's NumPy reference backend, as float64."""
    previous = fastrnn.backend()
    fastrnn.set_backend("numpy")
    try:
        return np.asarray(run(x), dtype=np.float64)
    finally:
        fastrnn.set_backend(previous)


def torch_engine(torch, module, x, mode, threads):
    """Time ``module(x)`` under ``torch.inference_mode()`` with `threads` intra-op threads."""
    inputs = torch.from_numpy(x)

    def call():
        with torch.inference_mode():
            output = module(inputs)[0]
        return output[:, -1] if mode == "last" else output

    return Engine(f"torch-{threads}t", call, lambda: torch.set_num_threads(threads))


def export_onnx(torch, module, x):
    """The torch module exported to ONNX (bytes) for inputs of `x`'s shape, batch first."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about batch sizes and deprecation
        torch.onnx.export(module, (torch.from_numpy(x),), buffer, input_names=["x"],
                          output_names=["y"], dynamo=False)
    return buffer.getvalue()


def ort_engine(ort, model, x, mode, threads):
    """Time an ONNX Runtime CPU session of `model` with `threads` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {"x": x}

    def call():
        output = session.run(["y"], feed)[0]
        return output[:, -1] if mode == "last" else output

    return Engine(f"onnxruntime-{threads}t", call)


def keras_engine(keras, cell, source, x, mode):
    """Time ``model.predict_on_batch(x)`` of a Keras model compiled with ``jit_compile=True``.

    `source` is the converted fastrnn layer, whose weights are in Keras layout already.
    """
    batch, timesteps, input_dim = x.shape
    options = {"reset_after": True} if cell == "GRU" else {}
    layer = getattr(keras.layers, cell)(source.units, return_sequences=mode == "sequence", **options)
    model = keras.Sequential([keras.Input(shape=(timesteps, input_dim), batch_size=batch), layer])
    layer.set_weights(source.get_weights())
    model.compile(jit_compile=True)
    return Engine("keras", lambda: model.predict_on_batch(x))


def build_engines(cell, shape, mode, x, args, packages):
    """Every engine for one row, fastrnn's first.

    Returns
    -------
    engines : list of Engine
    failures : dict
        Engine name -> why it could not be built.
    run : callable
        fastrnn's call, for the NumPy reference.
    """
    torch, ort, keras = packages.get("torch"), packages.get("onnxruntime"), packages.get("keras")
    input_dim, units = shape[2:]
    torch.manual_seed(SEED)
    module = getattr(torch.nn, CELLS[cell][0])(input_dim, units, batch_first=True).eval()
    torch_rnn = fastrnn.from_torch(module)
    run = fastrnn_run(cell, torch_rnn, mode)
    engines, failures = [], {}
    for backend in dict.fromkeys([args.default_backend, *args.fastrnn_backends]):
        name = "fastrnn" if backend == args.default_backend else f"fastrnn[{backend}]"
        engines.append(Engine(name, lambda: run(x), functools.partial(select_backend, backend, args.default_amx)))
    if "torch" in args.engines:
        engines += [torch_engine(torch, module, x, mode, n) for n in args.threads]
    if ort is not None:
        try:
            model = export_onnx(torch, module, x)
            engines += [ort_engine(ort, model, x, mode, n) for n in args.threads]
        except Exception as exc:  # noqa: BLE001 - reported as a FAIL
            failures.update({f"onnxruntime-{n}t": f"export failed: {exc}" for n in args.threads})
    if keras is not None:
        try:
            engines.append(keras_engine(keras, cell, torch_rnn.layers[0], x, mode))
        except Exception as exc:  # noqa: BLE001 - reported as a FAIL
            failures["keras"] = f"{type(exc).__name__}: {exc}"
    return engines, failures, run


def check(engine, expected):
    """Run `engine` once; return None if it matches `expected` to TOLERANCE, else the reason."""
    try:
        engine.prepare()
        output = np.asarray(engine.call(), dtype=np.float64)  # torch tensors convert too
    except Exception as exc:  # noqa: BLE001 - any error is reported as a FAIL
        return f"{type(exc).__name__}: {exc}"
    if output.shape != expected.shape:
        return f"output shape {output.shape}, expected {expected.shape}"
    difference = float(np.max(np.abs(output - expected)))
    if not difference <= TOLERANCE:  # also catches NaN
        return f"max |difference| {difference:.2e} > {TOLERANCE:g}"
    return None


def other_threads_cpu():
    """Seconds of CPU used so far by the threads of this process other than the calling one."""
    return time.process_time() - time.thread_time()


def settle():
    """Wait until the other threads of the process are quiet (see SETTLE_SECONDS); return the
    seconds waited. The wait is busy: the other engines' threads park, this core stays awake (a
    sleep let the VM's core idle, and the first milliseconds after it ran a small call up to 1.5x
    slower)."""
    start = window = time.perf_counter()
    used = other_threads_cpu()
    while True:
        now = time.perf_counter()
        if now - window >= QUIET_SECONDS:
            quiet = other_threads_cpu() - used < QUIET_SHARE * (now - window)
            if (quiet and now - start >= SETTLE_SECONDS) or now - start >= SETTLE_LIMIT:
                return now - start
            window, used = now, other_threads_cpu()


def take_sample(engine):
    """Time `engine.repeats` back-to-back calls and record the time per call."""
    call = engine.call
    start = time.perf_counter()
    for _ in range(engine.repeats):
        call()
    engine.times.append((time.perf_counter() - start) / engine.repeats)


def time_engines(engines, budget):
    """Median seconds per call of each engine, from interleaved rounds of warm blocks.

    Each engine is warmed up and given a number of calls per sample that makes a sample last
    about SAMPLE_SECONDS. Then every round takes one sample of each engine, starting with a
    different engine each round, until `budget` seconds have passed (at least MIN_ROUNDS
    rounds). A sample is a block of back-to-back calls after a pause until the other threads of
    the process are quiet (`settle`): the thread pools of ONNX Runtime, PyTorch and OpenBLAS keep
    spinning after a call and take the cores of whatever runs next (measured: fastrnn 9.4 ms
    alone, 13-16 ms when interleaved call by call with ONNX Runtime on an LSTM 32x100x64x128;
    ONNX Runtime's worker spins about 60 ms after its last call), which no user who runs one
    engine sees.
    """
    for engine in engines:
        engine.times = []
        engine.prepare()
        for _ in range(WARMUP_CALLS):
            take_sample(engine)
        engine.repeats = max(1, int(SAMPLE_SECONDS / statistics.median(engine.times)))
        engine.times = []
    deadline = time.perf_counter() + budget
    rounds = 0
    while rounds < MIN_ROUNDS or (time.perf_counter() < deadline and rounds < MAX_ROUNDS):
        for i in range(len(engines)):
            engine = engines[(rounds + i) % len(engines)]
            engine.prepare()
            settle()
            take_sample(engine)
        rounds += 1
    return {engine.name: statistics.median(engine.times) for engine in engines}


def run_row(cell, shape, mode, args, packages):
    """Check and time every engine on one row; return ``{engine: seconds or "FAIL: reason"}``."""
    x = np.random.default_rng(SEED).standard_normal(shape[:3]).astype(np.float32)
    engines, results, run = build_engines(cell, shape, mode, x, args, packages)
    results = {name: f"FAIL: {reason}" for name, reason in results.items()}
    expected = reference_output(run, x)
    passed = []
    for engine in engines:
        reason = check(engine, expected)
        if reason is None:
            passed.append(engine)
        else:
            results[engine.name] = f"FAIL: {reason}"
    results.update(time_engines(passed, args.budget))
    select_backend(args.default_backend, args.default_amx)
    return results


def select_backend(name, default_amx):
    """Make `name` fastrnn's backend: a registered one, or ``cython+amx``, the compiled kernels
    with their float32 products in AMX tiles (FASTRNN_AMX=1); the compiled one otherwise with
    the tiles as the environment set them (`default_amx`)."""
    fastrnn.set_backend("cython" if name == "cython+amx" else name)
    if fastrnn.backend() == "cython":
        fastrnn.backends.kernels().configure(amx=name == "cython+amx" or default_amx)


def roofline():
    """GFLOP/s of a NumPy float32 2048×2048 matmul with 1 and 2 BLAS threads (default threads without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    a, b = (np.random.default_rng(seed).standard_normal((2048, 2048), dtype=np.float32) for seed in (1, 2))
    figures = {}
    for threads in (1, 2) if threadpool_limits else (None,):
        limits = threadpool_limits(limits=threads, user_api="blas") if threads else contextlib.nullcontext()
        times = []
        with limits:
            for _ in range(6):
                start = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - start)
        label = f"{threads} thread{'s' * (threads > 1)}" if threads else "default threads"
        figures[label] = 2 * 2048 ** 3 / statistics.median(times[1:]) / 1e9  # the first run warms up
    return figures


@functools.cache
def floor_calls():
    """The calls `floor_rates` times, built once: a SimpleRNN with a linear activation on the
    largest shape, where its products are nearly all the work, and the compiled float32 sigmoid
    and tanh on 16K values in cache."""
    from fastrnn import _kernels, activations
    batch, timesteps, input_dim, units = SHAPES[-1]
    layer = fastrnn.SimpleRNN(units, activation="linear", seed=SEED)
    x = np.random.default_rng(SEED).standard_normal((batch, timesteps, input_dim), dtype=np.float32)
    values = np.linspace(-4, 4, 1 << 14, dtype=np.float32)   # (their code has no branches)
    return functools.partial(layer, x), [functools.partial(_kernels.activation, values, activations.CODES[name])
                                         for name in ("sigmoid", "tanh")]


def floor_rates():
    """fastrnn's own limits on this machine, measured on one thread (`floor_calls`): ``(GFLOP/s
    of its products, seconds per activation value, the mean of sigmoid's and tanh's)``."""
    product, activations = floor_calls()
    previous = fastrnn.num_threads()
    fastrnn.set_num_threads(1)
    try:
        seconds = min(timed(product) for _ in range(5))
        costs = [min(timed(activation, 100) for _ in range(5)) / 2 ** 14 for activation in activations]
    finally:
        fastrnn.set_num_threads(previous)
    return flops("SimpleRNN", SHAPES[-1]) / seconds / 1e9, statistics.fmean(costs)


def timed(call, repeats=1):
    """Seconds per call of `call`, over `repeats` calls back to back."""
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def floor(cell, shape, rates, threads):
    """The least time fastrnn could take on a row at `rates` (see `floor_rates`): its flops at
    that rate and its activations (one per gate value and one more per LSTM unit), both shared
    perfectly among `threads`, with nothing else (no memory traffic, overhead or waiting)."""
    batch, timesteps, _, units = shape
    per_unit = CELLS[cell][1] + (cell == "LSTM")     # a gate value each, and an LSTM's act(c_t)
    gflops, activation = rates
    return (flops(cell, shape) / (gflops * 1e9) + batch * timesteps * units * per_unit * activation) / threads


def cpu_model():
    """The CPU's model name from /proc/cpuinfo, or platform's guess elsewhere."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average():
    """The 1-minute load average as text: above the core count, other processes disturb the timings."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def header(packages, skipped, roof, args):
    """The report's first lines: date, machine, load, versions, backend, roofline, skipped engines."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = load_average()
    machine = f"{cpu_model()}, {cores} cores available ({os.cpu_count()} in all), {platform.machine()}"
    versions = [f"fastrnn {fastrnn.__version__} (backend {args.default_backend})", f"numpy {np.__version__}"]
    versions += [f"{name} {module.__version__}" for name, module in packages.items()]
    matmul = ", ".join(f"{label} {value:.1f} GFLOP/s" for label, value in roof.items())
    threads = ", ".join(map(str, args.threads))
    lines = ["# fastrnn speed comparison", "",
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
             f"- machine: {machine}; load average at start {load}",
             f"- versions: Python {platform.python_version()}, {', '.join(versions)}",
             f"- roofline, NumPy float32 matmul 2048×2048: {matmul}",
             f"- peers run with {threads} intra-op thread(s); budget {args.budget:g} s per row",
             f"- every output checked against fastrnn's NumPy reference to {TOLERANCE:g} before timing"]
    return lines + [f"- skipped {name}: {reason}" for name, reason in skipped.items()]


def best_peer(results):
    """(name, seconds) of the fastest timed engine that is not fastrnn, or (None, None)."""
    peers = {name: t for name, t in results.items() if not name.startswith("fastrnn") and not isinstance(t, str)}
    if not peers:
        return None, None
    name = min(peers, key=peers.get)
    return name, peers[name]


def main_table(rows, args):
    """The main table's lines and the ratios of the default-backend fastrnn rows."""
    lines = ["| cell | B×T×I×H | mode | engine | time | GFLOP/s | best peer | peer time | peer / fastrnn |",
             "|---|---|---|---|---:|---:|---|---:|---:|"]
    ratios = []
    for (cell, shape, mode), results in rows:
        peer, peer_time = best_peer(results)
        for name, value in results.items():
            if not name.startswith("fastrnn"):
                continue
            engine = f"{name} ({args.default_backend})" if name == "fastrnn" else name
            cells = [cell, "×".join(map(str, shape)), mode, engine]
            if isinstance(value, str):
                cells += ["FAIL", "", peer or "", format_time(peer_time) if peer else "", ""]
            else:
                ratio = peer_time / value if peer else None
                if ratio is not None and name == "fastrnn":
                    ratios.append(ratio)
                cells += [format_time(value), f"{flops(cell, shape) / value / 1e9:.2f}", peer or "",
                          format_time(peer_time) if peer else "", f"{ratio:.2f}" if ratio else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return lines, ratios


def summary(rows, ratios, roof):
    """Counts and geometric mean of the ratios, and the roofline fractions on the largest shapes."""
    at_least = {limit: sum(ratio >= limit for ratio in ratios) for limit in (1.0, 1.2)}
    lines = [f"- rows where fastrnn is at least as fast as the best peer (ratio ≥ 1.0): {at_least[1.0]} of {len(ratios)}",
             f"- rows with ratio ≥ 1.2: {at_least[1.2]} of {len(ratios)}"]
    if ratios:
        mean = math.exp(statistics.fmean(math.log(ratio) for ratio in ratios))
        lines.append(f"- geometric mean of the ratios: {mean:.3f}")
    shapes = sorted({shape for (_, shape, _), _ in rows}, key=lambda s: flops("SimpleRNN", s))[-3:]
    lines += ["", "Fraction of the matmul roofline reached by fastrnn on the three largest shapes:", "",
              "| cell | B×T×I×H | mode | GFLOP/s | " + " | ".join(f"of {label}" for label in roof) + " |",
              "|---|---|---|---:|" + "---:|" * len(roof)]
    for (cell, shape, mode), results in rows:
        seconds = results.get("fastrnn")
        if shape in shapes and not isinstance(seconds, str):
            rate = flops(cell, shape) / seconds / 1e9
            fractions = " | ".join(f"{rate / value:.1%}" for value in roof.values())
            lines.append(f"| {cell} | {'×'.join(map(str, shape))} | {mode} | {rate:.2f} | {fractions} |")
    return lines


def floor_section(rows, rates):
    """Where fastrnn is under 1.2× the best peer: its time against its floor (see `floor`) and
    the time 1.2× would need; "below the floor" where that is less than the floor."""
    threads = fastrnn.num_threads()
    gflops, activation = rates
    lines = [(f"fastrnn's floor on {threads} thread{'s' * (threads > 1)}: its products at {gflops:.1f} GFLOP/s "
              f"per thread and its activations at {activation * 1e9:.2f} ns per value (the best of this run's "
              "measurements, one after each row), shared perfectly, nothing else. Rows under 1.2× the best peer:"), "",
             "| cell | B×T×I×H | mode | fastrnn | floor | fastrnn / floor | best peer / 1.2 | 1.2× possible |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    below = 0
    for (cell, shape, mode), results in rows:
        seconds, (_, peer_time) = results.get("fastrnn"), best_peer(results)
        if isinstance(seconds, str) or seconds is None or peer_time is None or peer_time / seconds >= 1.2:
            continue
        least, needed = floor(cell, shape, rates, threads), peer_time / 1.2
        below += needed < least
        lines.append(f"| {cell} | {'×'.join(map(str, shape))} | {mode} | {format_time(seconds)} | "
                     f"{format_time(least)} | {seconds / least:.2f} | {format_time(needed)} | "
                     f"{'no: below the floor' if needed < least else 'yes'} |")
    return lines + ["", f"- rows where 1.2× the best peer is below fastrnn's floor: {below}"]


def engine_table(rows):
    """Every engine's median time (or FAIL) per row, and the reasons for the failures."""
    names = list(dict.fromkeys(name for _, results in rows for name in results))
    lines = ["| cell | B×T×I×H | mode | " + " | ".join(names) + " |", "|---|---|---|" + "---:|" * len(names)]
    failures = []
    for (cell, shape, mode), results in rows:
        label = f"{cell} | {'×'.join(map(str, shape))} | {mode}"
        values = []
        for name in names:
            value = results.get(name, "-")
            if isinstance(value, str) and value.startswith("FAIL"):
                failures.append(f"- {label.replace(' | ', ' ')} {name}: {value[6:]}")
                value = "FAIL"
            values.append(value if isinstance(value, str) else format_time(value))
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return lines + ([""] + failures if failures else [])


def minimal_call(args, packages):
    """One line: the median latency of the smallest call (SimpleRNN, 1×1×4×4, last step) per engine."""
    results = run_row("SimpleRNN", (1, 1, 4, 4), "last", args, packages)
    times = ", ".join(f"{name} {value if isinstance(value, str) else format_time(value)}"
                      for name, value in results.items())
    return f"Minimal call (`layer(x)`, SimpleRNN, batch 1, 1 timestep, 4 inputs, 4 units): {times}"


def parse_args(argv=None):
    """The command line, with --quick's choices filled in where not given explicitly."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", help=f"comma-separated, from {', '.join(CELLS)} (default all)")
    parser.add_argument("--shapes", help=f"comma-separated indices into SHAPES, 0-{len(SHAPES) - 1} (default all)")
    parser.add_argument("--modes", default=",".join(MODES), help="sequence, last or both (default both)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="peers to run; fastrnn always runs")
    parser.add_argument("--threads", default="1,2", help="intra-op thread counts of the peers (default 1,2)")
    parser.add_argument("--fastrnn-backends", default="",
                        help="extra fastrnn rows, e.g. cython,numba,numpy, or cython+amx (products in AMX tiles)")
    parser.add_argument("--budget", type=float, help=f"seconds of timing per row (default {DEFAULT_BUDGET})")
    parser.add_argument("--quick", action="store_true", help="LSTM, shapes 0,2,5, short budget: about a minute")
    parser.add_argument("--markdown", metavar="FILE", help="also write the report to FILE")
    parser.add_argument("--floor", action="store_true",
                        help="also measure fastrnn's floor and show it on the rows under 1.2x the best peer")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else {}).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.budget = DEFAULT_BUDGET if args.budget is None else args.budget
    spelled = {name.lower(): name for name in CELLS}     # --cells lstm means LSTM
    args.cells = [spelled.get(name.lower(), name) for name in (args.cells or ",".join(CELLS)).split(",")]
    indices = (args.shapes or ",".join(map(str, range(len(SHAPES))))).split(",")
    if not all(i.strip().isdigit() and int(i) < len(SHAPES) for i in indices):
        parser.error(f"--shapes {args.shapes!r}: expected indices from 0 to {len(SHAPES) - 1}, comma-separated")
    args.shapes = [SHAPES[int(i)] for i in indices]
    args.modes, args.engines = args.modes.split(","), args.engines.split(",")
    args.threads = [int(n) for n in args.threads.split(",")]
    args.fastrnn_backends = [name for name in args.fastrnn_backends.split(",") if name]
    args.default_backend = fastrnn.backend()
    args.default_amx = args.default_backend == "cython" and fastrnn.backends.kernels().configure()["amx"]
    if "cython+amx" in args.fastrnn_backends and not (
            fastrnn.backends.available()["cython"] is None and fastrnn.backends._load("cython").cpu_has_amx()):
        parser.error("--fastrnn-backends cython+amx: this machine's compiled kernels have no AMX tiles")
    for option, chosen, allowed in (("cell", args.cells, CELLS), ("mode", args.modes, MODES),
                                    ("engine", args.engines, ENGINES)):
        for name in chosen:
            if name not in allowed:
                parser.error(f"unknown {option} {name!r}; choose from {', '.join(allowed)}")
    return args


def load_packages(engines):
    """Import torch (it builds the weights) and the peers asked for.

    Returns
    -------
    packages : dict
        Module by name, for those that imported.
    skipped : dict
        Why, by name, for the peers that did not.
    """
    torch, reason = optional_import("torch")
    if torch is None:
        sys.exit(f"compare.py needs torch, which builds the weights of every model: {reason}")
    packages, skipped = {"torch": torch}, {}
    for name in ("onnxruntime", "keras"):
        if name not in engines:
            continue
        module, reason = optional_import(name)
        if module is not None and name == "keras" and module.backend.backend() not in ("jax", "tensorflow"):
            module, reason = None, f"Keras backend {module.backend.backend()!r}: only jax and tensorflow are timed"
        if module is None:
            skipped[name] = reason
        else:
            packages[name] = module
    return packages, skipped


def main(argv=None):
    """Run the comparison and print the report (and write it with --markdown)."""
    args = parse_args(argv)
    packages, skipped = load_packages(args.engines)
    roof = roofline()
    report = header(packages, skipped, roof, args)
    grid = [(cell, shape, mode) for cell in args.cells for shape in args.shapes for mode in args.modes]
    rows, rates = [], None
    for index, (cell, shape, mode) in enumerate(grid, 1):
        print(f"[{index}/{len(grid)}] {cell} {'×'.join(map(str, shape))} {mode}", file=sys.stderr, flush=True)
        rows.append(((cell, shape, mode), run_row(cell, shape, mode, args, packages)))
        if args.floor:   # after every row, the best: the VM's speed drifts, and a floor must not be high
            measured = floor_rates()
            rates = measured if rates is None else (max(rates[0], measured[0]), min(rates[1], measured[1]))
    table, ratios = main_table(rows, args)
    report += ["", *table, "", "## Summary", ""]
    report += summary(rows, ratios, roof)
    if args.floor:
        report += ["", "## Floor", "", *floor_section(rows, rates)]
    report += ["", "## Every engine (median time per call)", "", *engine_table(rows), ""]
    report += [minimal_call(args, packages), "", f"Load average at the end: {load_average()}"]
    text = "\n".join(report)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
