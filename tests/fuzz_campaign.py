"""A long fuzzing campaign of fastrnn's loaders: the strategies of tests/fuzzing.py, each case run
in a worker subprocess with a timeout, so that segfaults, hangs and runaway allocations are caught.

Not collected by pytest (the name does not start with ``test_``). Run it from the repository root:

    python tests/fuzz_campaign.py --seconds 300                 # five minutes, every format
    python tests/fuzz_campaign.py --examples 20000 --formats h5 pt --jobs 2

Every case is written to a file and given to a worker process, which calls ``fastrnn.load`` and
runs the model (`fuzzing.check`, which lets a case allocate at most ``fuzzing.MAX_ALLOCATION``
bytes unless ``--no-guard``). A worker that dies (a signal: a crash) or does not answer in
``--timeout`` seconds (a hang; it is killed) is replaced. Workers also run under an address-space
limit (``--memory-gb``). At the end it prints the number of cases and their outcomes:
``ModelFileError``, ``loaded and ran``, and any other exception, crash or hang, each of which is a
bug; the inputs of the first ``--keep`` cases of each kind of bug are saved under ``--out``, each
with a ``.txt`` that describes it and how to reproduce it, and so are correct cases slower than
``--slow`` seconds. Exit status 1 if there was a bug.
"""
import argparse
import collections
import json
import os
import queue
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

OK_OUTCOMES = ("ModelFileError", "loaded and ran", "loaded (not run: input shape unknown or too large)")


# ---------------------------------------------------------------------------------- worker
def worker(memory_gb):
    """Read case paths from stdin, one a line; answer one JSON line each on stdout."""
    if memory_gb:
        limit = int(memory_gb * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import faulthandler

    faulthandler.enable()                     # a segfault's traceback goes to stderr
    import fuzzing                            # noqa: F401  (imports fastrnn, h5py, hypothesis)
    try:
        import torch                          # noqa: F401  (import now, not within a case's timeout)
    except ImportError:
        pass
    out = sys.stdout
    sys.stdout = sys.stderr                   # whatever a case prints must not reach the parent
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        path = line.strip()
        try:
            result = {"outcome": fuzzing.check(path)}
        except BaseException as exc:          # noqa: B902  (MemoryError, RecursionError: all bugs)
            frames = traceback.extract_tb(exc.__traceback__)
            where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)
                          if "fastrnn" in f.filename), f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"
                         if frames else "?")
            result = {"outcome": f"bug: {type(exc).__module__}.{type(exc).__name__}", "where": where,
                      "message": str(exc)[:500], "traceback": "".join(traceback.format_exception(exc))[-4000:]}
        out.write(json.dumps(result) + "\n")
        out.flush()


class Worker:
    """A worker subprocess: `run(path, timeout)` returns its result, or a crash or hang."""

    def __init__(self, memory_gb, timeout):
        self.memory_gb, self.timeout = memory_gb, timeout
        self.process = None

    def start(self):
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", "--memory-gb", str(self.memory_gb)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                        text=True, bufsize=1, start_new_session=True)
        ready = self._answer(120)
        if not ready or not ready.get("ready"):
            raise RuntimeError(f"a worker did not start: {self._stderr_tail()}")

    def _answer(self, timeout):
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        return json.loads(line) if line else {}

    def _stderr_tail(self):
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-3000:]

    def run(self, path):
        if self.process is None or self.process.poll() is not None:
            self.start()
        self.stderr.seek(0)
        self.stderr.truncate()
        started = time.monotonic()
        try:
            self.process.stdin.write(path + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass
        result = self._answer(self.timeout)
        seconds = time.monotonic() - started
        if result is None:                    # no answer in time: a hang
            self.stop()
            return {"outcome": "hang", "where": f"> {self.timeout} s", "message": "killed after the timeout",
                    "seconds": seconds}
        if not result:                        # no answer at all: the worker died
            code = self.process.wait()
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            result = {"outcome": f"crash ({name})", "where": name, "message": self._stderr_tail()}
            self.process = None
        result["seconds"] = seconds
        return result

    def stop(self):
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None


# ---------------------------------------------------------------------------------- campaign
class Campaign:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.work = Path(tempfile.mkdtemp(prefix="fastrnn-fuzz-"))
        self.outcomes = collections.Counter()
        self.by_format = collections.defaultdict(collections.Counter)
        self.bugs = {}                        # (outcome, where) -> first case
        self.slowest = (0.0, None)
        self.slow = []                        # (seconds, outcome, case, saved path): correct but slow
        self.cases = 0
        self.lock = threading.Lock()
        self.queue = queue.Queue(maxsize=2 * args.jobs)
        self.threads = [threading.Thread(target=self._consume, daemon=True) for _ in range(args.jobs)]
        self.started = time.monotonic()

    def _consume(self):
        runner = Worker(self.args.memory_gb, self.args.timeout)
        while True:
            item = self.queue.get()
            if item is None:
                runner.stop()
                return
            number, case = item
            path = self.work / f"case-{number}{case.suffix}"
            path.write_bytes(case.data)
            result = runner.run(str(path))
            with self.lock:
                self._record(number, case, path, result)
            path.unlink()

    def _record(self, number, case, path, result):
        outcome = result["outcome"]
        self.outcomes[outcome] += 1
        self.by_format[case.fmt][outcome] += 1
        if result["seconds"] > self.slowest[0]:
            self.slowest = (result["seconds"], case)
        if outcome in OK_OUTCOMES:
            if result["seconds"] > self.args.slow and len(self.slow) < 20:
                self.out.mkdir(parents=True, exist_ok=True)
                saved = self.out / f"slow-{len(self.slow)}-{case.fmt}{case.suffix}"
                shutil.copyfile(path, saved)
                self.slow.append((result["seconds"], outcome, case, saved))
            return
        key = (outcome, result.get("where"))
        bug = self.bugs.setdefault(key, {"count": 0, "number": len(self.bugs)})
        bug["count"] += 1
        if bug["count"] > self.args.keep:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        saved = self.out / f"bug-{bug['number']}-{bug['count']}-{case.fmt}{case.suffix}"
        shutil.copyfile(path, saved)
        description = (f"{outcome} at {result.get('where')}\ncase: {case!r}\nseed file: {case.seed}\n"
                       f"mutation: {case.mutation}\nreproduce: python -c \"import sys; sys.path.insert(0, 'tests'); "
                       f"import fuzzing; print(fuzzing.check('{saved}'))\"\n\n{result.get('message', '')}\n\n"
                       f"{result.get('traceback', '')}")
        saved.with_suffix(saved.suffix + ".txt").write_text(description)
        if bug["count"] == 1:
            bug.update(file=str(saved), case=repr(case), message=result.get("message", "")[:300])
            print(f"  BUG #{len(self.bugs)}: {outcome} at {result.get('where')}: {case!r} -> {saved}", flush=True)

    def time_left(self):
        return time.monotonic() - self.started < self.args.seconds and self.cases < self.args.examples

    def run(self):
        from hypothesis import HealthCheck, Phase, given, seed, settings

        import fuzzing

        for thread in self.threads:
            thread.start()
        strategy = (fuzzing.cases() if not self.args.formats else
                    fuzzing.st.sampled_from(self.args.formats).flatmap(fuzzing.cases))
        batch = 0
        while self.time_left():
            @seed(self.args.seed * 100003 + batch)
            @settings(max_examples=200, database=None, deadline=None, phases=[Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def generate(case):
                if not self.time_left():
                    return
                self.cases += 1
                self.queue.put((self.cases, case))
                if self.cases % 500 == 0:
                    self.progress()

            generate()
            batch += 1
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        shutil.rmtree(self.work, ignore_errors=True)

    def progress(self):
        elapsed = time.monotonic() - self.started
        print(f"  {self.cases} cases in {elapsed:.0f} s: {dict(self.outcomes)}", flush=True)

    def summary(self):
        elapsed = time.monotonic() - self.started
        done = sum(self.outcomes.values())
        print(f"\n{done} cases in {elapsed:.0f} s ({done / max(elapsed, 1e-9):.1f}/s), {self.args.jobs} worker(s)")
        print("outcomes:")
        for outcome, count in self.outcomes.most_common():
            print(f"  {count:8d}  {outcome}")
        print("by format:")
        for fmt, counter in sorted(self.by_format.items()):
            print(f"  {fmt:12s} {sum(counter.values()):7d}  " + ", ".join(f"{k}: {v}" for k, v in counter.most_common()))
        print(f"slowest case: {self.slowest[0]:.2f} s {self.slowest[1]!r}")
        for seconds, outcome, case, saved in self.slow:
            print(f"  slow: {seconds:.1f} s, {outcome}: {case!r} -> {saved}")
        if self.bugs:
            print(f"{len(self.bugs)} kind(s) of bug (inputs saved under {self.out}):")
            for (outcome, where), bug in self.bugs.items():
                print(f"  {bug['count']:6d}  {outcome} at {where}: {bug['case']}\n          {bug['message'][:200]!r}\n"
                      f"          -> {bug['file']}")
        else:
            print("no bugs: no other exception, crash or hang")
        return 1 if self.bugs else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=10 ** 9, help="stop after this many cases")
    parser.add_argument("--seconds", type=float, default=300, help="stop after this long (default 300)")
    parser.add_argument("--formats", nargs="*", choices=("keras", "h5", "safetensors", "pt", "native"),
                        help="only these formats (default: all)")
    parser.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 1) - 1), help="worker processes")
    parser.add_argument("--timeout", type=float, default=30, help="seconds a case may take (default 30)")
    parser.add_argument("--memory-gb", type=float, default=16, help="address-space limit of a worker (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="the campaign's random seed")
    parser.add_argument("--out", default="fuzz-results", help="where bug inputs are saved")
    parser.add_argument("--no-guard", action="store_true",
                        help="do not limit each case's allocations to fuzzing.MAX_ALLOCATION (see slow cases)")
    parser.add_argument("--slow", type=float, default=5, help="save correct cases slower than this (seconds)")
    parser.add_argument("--keep", type=int, default=3, help="inputs saved for each kind of bug (default 3)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.no_guard:
        os.environ["FASTRNN_FUZZ_NO_GUARD"] = "1"     # inherited by the workers
    if args.worker:
        return worker(args.memory_gb)
    print(f"fuzzing fastrnn's loaders for {args.seconds:.0f} s or {args.examples} cases, formats "
          f"{args.formats or 'all'}, {args.jobs} worker(s), timeout {args.timeout} s", flush=True)
    campaign = Campaign(args)
    try:
        campaign.run()
    except KeyboardInterrupt:
        print("interrupted")
    return campaign.summary()


if __name__ == "__main__":
    sys.exit(main())
