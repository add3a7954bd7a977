"""fastrnn's own threads: independent work of one forward pass run at once.

Three kinds of work are independent: the rows of a batch (each row is its own sequence), the two
directions of a Bidirectional layer and the length groups of a ragged `predict`. They share one
thread pool of ``fastrnn.set_num_threads(n) - 1`` threads, the calling thread taking a part too;
with the compiled backend, the rows of a batch and the directions of a Bidirectional layer run on
the kernels' own threads instead (``run_parts``, see fastrnn/recurrent.py), which hand over work
faster.
Work is split only when each part pays for the hand-off (tens of microseconds), and never again
inside a part: a part waiting for parts queued behind it could wait for a pool thread that is
itself waiting. Nor do the compiled kernels share a part's steps among their own team of threads
(csrc/team.h): the parts hold the team while they run.
"""
import concurrent.futures
import itertools
import os
import threading

from . import backends

# A part needs at least this many multiply-adds, and a row part this many rows (the kernels'
# products work on blocks of 4 or 6 rows). Measured: smaller splits ran slower than one thread.
MIN_WORK_PER_PART = 1 << 23
MIN_ROWS_PER_PART = 4
# The same for row parts run by the compiled kernels' team (`run_parts`), handed over in
# microseconds while its threads spin; a part of one row runs its products one row at a time,
# with kernels made for that. Measured, 2 threads against the team's slices (or one thread):
# LSTM 8x50x32x64 (4.9M per part) 281 us against 369, 8x20x32x64 (2M) 157 against 172, GRU
# 16x20x16x32 (0.75M) 84 against 88, LSTM 4x2000x16x32 in parts of 2 rows 1991 against 2840,
# GRU 2x100x64x128 in parts of one row 388 against 680 (one thread); SimpleRNN 8x20x16x32
# (0.12M) 36 against 49, where one thread took 28.
MIN_WORK_PER_TEAM_PART = 1 << 20
MIN_ROWS_PER_TEAM_PART = 1
MAX_TEAM_PARTS = 64   # the team's largest size (FR_TEAM_MAX in csrc/team.h)
# A large batch goes to the team in up to this many parts per thread, each of at least this many
# rows: the team's threads claim parts as they come free, so a thread whose core is taken (by
# another process, or the VM's host) does less of the work instead of holding up the call with
# its half. Measured in turns against one part per thread, 2 threads, LSTM, GRU, SimpleRNN and
# Bidirectional LSTM 256x50x128x256, 1024x20x64x64 and 128x100x64x128: 0.92-1.24x as fast on a
# quiet machine (1.01x geometric mean), 1.00-1.24x (1.08x) with a busy process beside it; with
# parts of 8-16 rows (batch 32 or 64) no gain.
PARTS_PER_THREAD = 4
MIN_ROWS_PER_SPARE_PART = 32
# A layer whose weights take more than this many bytes is not split by rows on the team: its
# threads share each step instead (the kernels' slices), each reading its own columns of the
# weights at every step where a row part reads all of them, twice the traffic from beyond L2.
# Measured in turns, 2 threads, slices against row parts on a quiet machine: LSTM 64x100x256x512
# (6 MB of weights) 1.05-1.19x, GRU 64x100x256x512 1.07-1.40x, SimpleRNN 64x100x256x512 (1.5 MB)
# 1.15x, LSTM 128x50x256x512 1.15-1.16x, LSTM 256x50x128x256 (1.5 MB) 0.90-1.35x (three of four
# runs above 1.18x), GRU 256x50x128x256 1.11x; below the bound, mixed (LSTM 32x100x64x128,
# 384 KB, 0.94-1.08x). With a busy process beside them, row parts keep their lead (slices
# 0.81-0.85x): a thread whose core is taken holds up every step of its slice.
SLICES_FROM_WEIGHT_BYTES = 1 << 20

_pool = None
_pool_size = 0
_pool_lock = threading.Lock()
_part = threading.local()   # .active: this thread runs a part of a split


def _forget_pool():
    # A forked child has none of its parent's pool threads (a submit would wait forever), and the
    # lock may have been held by one of them.
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _executor():
    """The shared pool, made when first needed and remade larger when the thread count grows.

    A smaller pool is dropped, not shut down: another thread may be about to submit to it.
    """
    global _pool, _pool_size
    with _pool_lock:
        wanted = max(1, backends.num_threads() - 1)   # (set_num_threads(1) may come after a split)
        if _pool is None or _pool_size < wanted:
            _pool, _pool_size = concurrent.futures.ThreadPoolExecutor(wanted, "fastrnn"), wanted
        return _pool


def may_split(work_per_part, team=False):
    """Whether work can be split into parts of `work_per_part` multiply-adds: threads to spare,
    enough work in each part (less for row parts on the kernels' `team`), and not already inside
    a part."""
    return (work_per_part >= (MIN_WORK_PER_TEAM_PART if team else MIN_WORK_PER_PART)
            and backends.num_threads() > 1 and not getattr(_part, "active", False))


def batch_parts(batch, work_per_row, kernels, calls=1, by_speed=None, min_rows=1):
    """How to split `calls` independent calls on one batch of `batch` rows, `work_per_row`
    multiply-adds each, among the threads: ``(rows, team)``, the row slices that each call is
    cut into (on the team, a large batch into more parts than threads: PARTS_PER_THREAD, claimed
    as threads come free; else one part per thread, sized by the threads' speeds in their recent
    parts, `part_shares`, where `by_speed`, a function of no argument asked only then, says so:
    else equal; each of at least `min_rows` rows) and whether the parts run on the team of the
    compiled `kernels` (`run_parts`).
    ``rows`` is empty when splitting does not pay: the calls then run whole, one after another.
    (`may_split` is false for less than twice the smallest part: callers on a hot path check
    that first, without a call.)
    """
    work = calls * batch * work_per_row
    team = hasattr(kernels, "run_parts")
    if not may_split(work // 2, team):
        return (), False
    threads = min(backends.num_threads(), MAX_TEAM_PARTS) if team else backends.num_threads()
    share = max(1, threads // calls)
    if team and threads > 1:
        spare = min(threads * PARTS_PER_THREAD, MAX_TEAM_PARTS) // calls
        share = max(share, min(spare, batch // MIN_ROWS_PER_SPARE_PART))
    shares = None
    if team and calls == 1 and 1 < share == threads and by_speed is not None and by_speed():
        # One part per thread, none spare to even out unequal threads: sized by their speeds.
        # This VM's two vCPUs often ran at different speeds (two equal parts took 4.6 and 3.4 ms,
        # and the call waited for the slower). Measured in turns against equal parts, 2 threads:
        # GRU 32x100x64x128 1.15-1.16x, SimpleRNN 32x100x64x128 1.08-1.13x, LSTM 32x100x64x128
        # 0.98-1.17x (1.05x median of four runs), 16x100x64x128 1.09x, GRU 64x100x64x128 1.10x.
        shares = kernels.part_shares(threads)
    rows = row_parts(batch, work_per_row, team, share, shares, min_rows)
    return (rows if calls * len(rows) > 1 else ()), team


def row_parts(batch, work_per_row, team=False, threads=None, shares=None, min_rows=1):
    """Slices of a batch of `batch` rows for `threads` threads (by default all of them; one
    slice when splitting does not pay), with boundaries on multiples of 4 rows, or for parts
    on the kernels' `team`, of one; equal, or in proportion to `shares` (one per part, summing
    to 1, or None) where there are as many parts and at least 4 rows for each: then parts of
    an even number of rows, 4 or more (small_gemm.h's blocks are of 6 and 4 rows: an odd part
    ends in a lone row, run a row at a time); parts of `min_rows` rows or more where that is more
    (the kernels' AMX tiles are 16 rows: a part of fewer is padded)."""
    if team:
        min_work, rows, most = MIN_WORK_PER_TEAM_PART, MIN_ROWS_PER_TEAM_PART, MAX_TEAM_PARTS
    else:
        min_work, rows, most = MIN_WORK_PER_PART, MIN_ROWS_PER_PART, batch
    rows = max(rows, min_rows)
    threads = backends.num_threads() if threads is None else threads
    n = min(threads, batch // rows, batch * work_per_row // min_work, most)
    if n <= 1:
        return [slice(None)]
    ends, align, least = [i / n for i in range(1, n)], rows, rows
    if shares is not None and len(shares) == n and batch >= max(4, rows) * n:
        ends, align, least = itertools.accumulate(shares[:-1]), 2 if rows < 16 else 16, max(4, rows)
    bounds = [0] + [round(batch * end / align) * align for end in ends] + [batch]
    for i in range(1, n):       # each part keeps at least `least` rows
        bounds[i] = min(max(bounds[i], bounds[i - 1] + least), batch - (n - i) * least)
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


def run(*calls):
    """Run the `calls` (functions of no argument) at once, the first on this thread, and return
    their results in order; inside them, `may_split` is false. A single call runs as it is (its
    kernels may then use several threads themselves)."""
    if len(calls) == 1:
        return [calls[0]()]
    def part(call):
        outer = getattr(_part, "active", False)
        _part.active = True
        try:
            return call()
        finally:
            _part.active = outer
    # The parts take the compiled kernels' team, so that no call inside them starts more threads.
    compiled = backends.compiled()
    held = compiled is not None and compiled.hold_threads()
    try:
        others = []
        try:
            for call in calls[1:]:
                others.append(_executor().submit(part, call))
        except RuntimeError:   # the interpreter is shutting down: no new threads, the rest run here
            pass
        return ([part(calls[0])] + [future.result() for future in others]
                + [part(call) for call in calls[1 + len(others):]])
    finally:
        if held:
            compiled.release_threads()
