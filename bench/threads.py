"""Do concurrent forward passes really run in parallel? Sequential vs. threaded, as a table.

For each workload, N independent calls on one shared layer run one after another, and the same
N calls split over T threads (``concurrent.futures.ThreadPoolExecutor``), alternately for a few
rounds; the table gives N, the best wall time of each, the speedup and the parallel efficiency
(speedup / T), and the CPUs that other processes kept busy meanwhile (from /proc/stat; a
loaded machine leaves the threads fewer cores, so trust rows where it is near 0). The
compiled kernel releases the GIL, so on T free cores the speedup should approach T.

Two controls show what the machine itself allows: ``np.sort`` and a float32 matmul, which
release the GIL too (the best fastrnn can hope for), and a pure-Python loop, which holds it
(speedup ~1: what a GIL-bound kernel would give). BLAS is limited to one thread with
threadpoolctl, when it is installed, so that the only parallelism is the threads'; without it
the table says so and BLAS may already use every core in the sequential run. On a virtual
machine whose vCPUs are hyperthreads of one core, even the controls scale poorly. Run from the
repository root::

    python bench/threads.py                 # 2 threads, about 15 seconds
    python bench/threads.py --threads 4 --seconds 1
"""
import argparse
import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import fastrnn

try:
    from threadpoolctl import threadpool_limits
except ImportError:       # the benchmark still runs, but BLAS threads may blur the result
    threadpool_limits = None


def lstm_call(units, batch, timesteps, input_dim):
    """A forward pass of one shared float32 LSTM layer (return_sequences) on fixed input."""
    layer = fastrnn.LSTM(units, return_sequences=True, dtype="float32", seed=0)
    x = np.random.default_rng(0).standard_normal((batch, timesteps, input_dim)).astype("float32")
    return lambda: layer(x)


def sort_call(n):
    """np.sort of n float64 values: releases the GIL."""
    values = np.random.default_rng(0).standard_normal(n)
    return lambda: np.sort(values)


def matmul_call(n):
    """An n x n float32 matmul: releases the GIL (one BLAS thread under threadpool_limits)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype("float32")
    return lambda: a @ a


def python_call(n):
    """A pure-Python loop of n additions: holds the GIL throughout."""
    return lambda: sum(range(n))


WORKLOADS = [
    ("fastrnn LSTM 64, batch 8, 100 steps, in 32", lambda: lstm_call(64, 8, 100, 32)),
    ("fastrnn LSTM 256, batch 32, 100 steps, in 128", lambda: lstm_call(256, 32, 100, 128)),
    ("control: np.sort 1e6 float64", lambda: sort_call(1_000_000)),
    ("control: matmul 512x512 float32", lambda: matmul_call(512)),
    ("control: Python loop (holds the GIL)", lambda: python_call(1_000_000)),
]


def busy_seconds():
    """CPU seconds the whole machine has spent busy since boot, or None off Linux."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]                                # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # without guest time (counted twice)


def own_seconds():
    """CPU seconds this process (every thread) has used."""
    times = os.times()
    return times.user + times.system


def timed(run):
    """Wall time of one `run()`, in seconds."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(call, threads, seconds, rounds):
    """Best wall times of the same calls of `call`, sequential and over `threads` threads.

    The number of calls is chosen so that the sequential run lasts about `seconds` (a multiple
    of `threads`, so that no thread idles at the end). The two modes alternate, round by round,
    so that a burst of load from another process does not favour one of them.
    """
    call()                                                     # warm up: first-call costs
    start, busy, own = time.perf_counter(), busy_seconds(), own_seconds()
    calls = max(2 * threads, round(seconds / timed(call) / threads) * threads)
    sequential, threaded = [], []
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: call(), range(threads)))      # start the workers
        for _ in range(rounds):
            sequential.append(timed(lambda: [call() for _ in range(calls)]))
            threaded.append(timed(lambda: list(pool.map(lambda _: call(), range(calls)))))
    # CPUs kept busy by other processes meanwhile: they leave the threads fewer cores.
    elsewhere = None if busy is None else max(
        0.0, (busy_seconds() - busy - (own_seconds() - own)) / (time.perf_counter() - start))
    return calls, min(sequential), min(threaded), elsewhere


def main(argv=None):
    """Print the table; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="worker threads (default 2)")
    parser.add_argument("--seconds", type=float, default=0.3,
                        help="length of one sequential run (default 0.3)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, best kept (default 5)")
    args = parser.parse_args(argv)

    # Load the kernels, and with them SciPy's BLAS, first: threadpoolctl limits only the
    # libraries already loaded, and an unlimited OpenBLAS's worker threads spin on the second
    # core between calls, which hides any parallelism (measured: 0.8x instead of 1.8x).
    backend = fastrnn.backend()
    # Each call on one thread: fastrnn would otherwise split a large call across the cores itself
    # (fastrnn.set_num_threads), and the sequential run would already use all of them.
    fastrnn.set_num_threads(1)
    limit = threadpool_limits(1) if threadpool_limits else contextlib.nullcontext()
    print(f"fastrnn {fastrnn.__version__}, backend {backend}, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, best of {args.rounds} rounds; fastrnn.set_num_threads(1); BLAS threads: "
          + ("1 (threadpoolctl)" if threadpool_limits else "not limited (no threadpoolctl)"))
    print()
    print(f"| {'workload':<46} | calls | sequential ms | threaded ms | speedup | efficiency "
          "| other load |")
    print(f"|{'-' * 48}|------:|--------------:|------------:|--------:|-----------:|-----------:|")
    with limit:
        for name, make in WORKLOADS:
            calls, sequential, threaded, elsewhere = measure(make(), args.threads, args.seconds,
                                                             args.rounds)
            speedup = sequential / threaded
            other = "n/a" if elsewhere is None else f"{elsewhere:.2f} CPUs"
            print(f"| {name:<46} | {calls:5d} | {sequential * 1e3:13.1f} | {threaded * 1e3:11.1f} "
                  f"| {speedup:6.2f}x | {speedup / args.threads:10.0%} | {other:>10} |", flush=True)


if __name__ == "__main__":
    main()
