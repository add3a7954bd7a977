"""The backend registry, and the guard against a silently missing compiled extension."""
import itertools
import mmap
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import fastrnn
from fastrnn import backends


def run_python(code, **env):
    """Run `code` in a fresh interpreter with extra environment variables; return its stdout."""
    environ = {k: v for k, v in os.environ.items() if k != "FASTRNN_BACKEND"}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_compiled_extension_is_built():
    # Fails when the Cython build was skipped or broken, so CI cannot go green on the fallbacks.
    from fastrnn import _kernels

    assert backends.available()["cython"] is None
    assert _kernels.BUILD_INFO["cflags"] != "unknown"


def test_numba_fallback_is_installed_with_the_test_extras():
    assert backends.available()["numba"] is None


def test_auto_prefers_cython():
    assert run_python("import fastrnn; print(fastrnn.backend())") == "cython"


@pytest.mark.parametrize("name", ["cython", "numba", "numpy"])
def test_environment_variable_selects_backend(name):
    assert run_python("import fastrnn; print(fastrnn.backend())", FASTRNN_BACKEND=name) == name


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown fastrnn backend 'cuda'; choose one of 'auto'"):
        fastrnn.set_backend("cuda")
    out = run_python(
        "import fastrnn\ntry:\n    fastrnn.backend()\nexcept ValueError as e:\n    print(e)",
        FASTRNN_BACKEND="fortran",
    )
    assert "unknown fastrnn backend 'fortran'" in out


def test_unavailable_backend_raises_and_auto_falls_back(monkeypatch):
    previous = fastrnn.backend()

    def missing():
        raise ImportError("No module named 'numba'")

    monkeypatch.setitem(backends._IMPORTERS, "numba", missing)
    with pytest.raises(ImportError, match="backend 'numba' is unavailable: numba is not installed"):
        fastrnn.set_backend("numba")
    assert fastrnn.backend() == previous  # a failed switch changes nothing

    monkeypatch.setitem(backends._IMPORTERS, "cython", missing)
    fastrnn.set_backend("auto")
    try:
        assert fastrnn.backend() == "numpy"
        assert "unavailable" in backends.available()["cython"]
    finally:
        monkeypatch.undo()
        fastrnn.set_backend(previous)


def test_set_backend_switches_the_kernels(backend_name):
    assert fastrnn.backend() == backend_name
    assert backends.kernels() is backends._load(backend_name)
    layer = fastrnn.SimpleRNN(2, input_shape=(3, 2), seed=0)
    assert layer(np.ones((1, 3, 2))).shape == (1, 2)


def test_show_config_reports_the_choice(capsys):
    fastrnn.show_config()
    out = capsys.readouterr().out
    assert out.startswith(f"fastrnn {fastrnn.__version__}\nbackend: {fastrnn.backend()}")
    assert "gcc" in out or "clang" in out
    # the width of the products that run, so that a slow machine can be told from a slow build
    assert f"products in {fastrnn._kernels.product_vector_bits()}-bit vectors" in out
    assert f"numpy {np.__version__}, BLAS:" in out


def _lstm_arguments(dtype=np.float32, T=3, B=2, I=5, U=4):
    """Valid arguments of the compiled LSTM kernel, as a dict in signature order."""
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((B, T, I)).astype(dtype), kernel=np.zeros((I, 4 * U), dtype),
                bias=np.zeros(4 * U, dtype), recurrent_kernel=np.zeros((U, 4 * U), dtype),
                projection=np.empty((0, 0), dtype), mask=np.empty((0, 0), np.uint8), activation=1,
                recurrent_activation=2, h=np.zeros((B, U), dtype), c=np.zeros((B, U), dtype),
                sequence=np.empty((0, 0, 0), dtype))


@pytest.mark.parametrize("name, value, error, message", [
    ("x", np.zeros((2, 3, 6), np.float32), ValueError, r"kernel argument kernel: expected shape \(6, 16\)"),
    ("x", np.zeros((2, 3, 5), np.float64), ValueError, "kernel argument x: expected a 3-d float32"),
    ("x", np.zeros((3, 5), np.float32), ValueError, "kernel argument x: expected a 3-d float32 array, got a 2-d"),
    ("x", [[[0.0] * 5] * 3] * 2, TypeError, "expected a NumPy array, got list"),
    ("x", np.zeros((2, 3, 5), ">f4"), ValueError, "kernel argument x: .* in native byte order, got a 3-d >f4"),
    ("kernel", np.zeros((5, 16), ">f4"), ValueError, "kernel argument kernel: .* native byte order"),
    ("h", np.zeros((2, 4), ">f4"), ValueError, "kernel argument h: .* native byte order"),
    ("h", np.zeros((2, 4), np.float16), TypeError, "float32 or float64"),
    ("c", np.zeros((2, 5), np.float32), ValueError, "kernel argument kernel: expected shape"),
    ("mask", np.ones((3, 2), np.uint8), ValueError, r"kernel argument mask: expected shape \(2, 3\)"),
    ("mask", np.ones((2, 3), bool), ValueError, "kernel argument mask"),
    ("sequence", np.zeros((2, 3, 5), np.float32), ValueError, r"kernel argument sequence: expected shape \(2, 3, 4\)"),
    ("projection", np.zeros((4, 3), np.float32), ValueError, r"kernel argument projection: expected shape \(4, 4\)"),
])
def test_compiled_kernel_checks_its_arguments(name, value, error, message):
    """The compiled kernels trust no caller: a wrong array is an exception, never a bad read."""
    _kernels = pytest.importorskip("fastrnn._kernels")
    arguments = _lstm_arguments()
    arguments[name] = value
    with pytest.raises(error, match=message):
        _kernels.lstm(*arguments.values())


def _views(x):
    """Arrays of the shape of `x` (B, T, I) in other layouts, by name: views the kernels read in
    place where their rows are a matrix to GEMM, else copy a chunk of (see csrc/_kernels.pyx)."""
    batch, steps, inputs = x.shape

    def inside(shape, index):
        whole = np.zeros(shape, x.dtype)
        whole[index] = x
        return whole[index]
    unaligned = np.zeros(x.nbytes + 1, np.uint8)[1:].view(x.dtype).reshape(x.shape)
    unaligned[...] = x
    return {
        "time-major": np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2),
        "reversed": x[:, ::-1],
        "padded rows": inside((batch, steps, inputs + 3), np.s_[..., :inputs]),
        "every other row": inside((2 * batch, steps, inputs), np.s_[::2]),
        "every other input": inside((batch, steps, 2 * inputs), np.s_[..., ::2]),
        "Fortran order": np.asfortranarray(x),
        "unaligned": unaligned,
        "one row broadcast": np.broadcast_to(x[:1], x.shape),
        "one step broadcast": np.broadcast_to(x[:, :1], x.shape),
    }


VIEW_CASES = list(itertools.product(["simple_rnn", "lstm", "gru"], [np.float32, np.float64],
                                    [(1, 7, 5), (4, 1, 5), (3, 6, 5), (6, 40, 8)], [None, 64]))


@pytest.mark.parametrize("cell, dtype, shape, projected_elements", VIEW_CASES)
def test_compiled_kernel_reads_x_of_any_layout(cell, dtype, shape, projected_elements):
    """The kernels take x as it lies (the layer passes a reversed view for go_backwards, and the
    caller's array as it is): every layout gives exactly the states and sequence of a contiguous
    copy, the projection run in one chunk or in several (`projected_elements`)."""
    _kernels = pytest.importorskip("fastrnn._kernels")
    batch, steps, inputs = shape
    layer = {"simple_rnn": fastrnn.SimpleRNN, "lstm": fastrnn.LSTM, "gru": fastrnn.GRU}[cell](6, dtype=dtype)
    layer.build((None, None, inputs))
    rng = np.random.default_rng(0)
    layer.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in layer.get_weights()])
    x = rng.standard_normal(shape).astype(dtype)
    previous = _kernels.configure(projected_elements=projected_elements)
    try:
        initial = [rng.standard_normal((batch, size)).astype(dtype) for size in layer._sizes]
        for name, view in _views(x).items():
            results = []
            for array in (view, np.ascontiguousarray(view)):
                states, sequence = [s.copy() for s in initial], np.zeros((batch, steps, layer._sizes[0]), dtype)
                function, arguments = layer._kernel_call(_kernels, layer._kernel_weights, array,
                                                         np.empty((0, 0), np.uint8), states, sequence)
                function(*arguments)
                results.append(states + [sequence])
            for got, expected in zip(*results):
                np.testing.assert_array_equal(got, expected, err_msg=name)
    finally:
        _kernels.configure(**previous)


def test_compiled_kernel_copies_x_whose_stride_blas_cannot_take():
    """Steps 2**31 elements apart: an int leading dimension cannot say so, so the projection's
    BLAS product (from 2**22 multiply-adds) reads a copy, not the wrong rows."""
    _kernels = pytest.importorskip("fastrnn._kernels")
    steps, inputs, stride = 3, 2048, 2 ** 31 * 4
    try:    # 16 GB of address space, of which the kernel touches the rows' few pages
        memory = mmap.mmap(-1, (steps - 1) * stride + inputs * 4,
                           flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0x4000))
    except (OSError, OverflowError) as error:
        pytest.skip(f"cannot reserve 16 GB of address space here: {error}")
    x = np.ndarray((1, steps, inputs), np.float32, buffer=memory, strides=(steps * stride, stride, 4))
    x[...] = np.random.default_rng(0).standard_normal(x.shape)
    layer = fastrnn.LSTM(256, seed=0, return_sequences=True)     # 3 x 2048 x 1024 multiply-adds
    layer.build(x.shape)
    results = []
    for array in (x, np.ascontiguousarray(x)):     # (slices sized by the threads' speeds: same bits)
        h, c = np.zeros((1, 256), np.float32), np.zeros((1, 256), np.float32)
        sequence = np.zeros((1, 3, 256), np.float32)
        function, arguments = layer._kernel_call(_kernels, layer._kernel_weights, array, np.empty((0, 0), np.uint8),
                                                 [h, c], sequence)
        function(*arguments)
        results.append(sequence)
    np.testing.assert_array_equal(*results)
    del x, array
    memory.close()


def test_numba_cores_compile_once_per_dtype():
    """Numba compiles a function anew for each layout and writability of its arguments (3-4 s):
    the kernels hand their cores a C-contiguous, writable, time-major copy whatever x is."""
    _numba = pytest.importorskip("fastrnn._numba")
    x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    read_only = x.copy()
    read_only.flags.writeable = False
    previous = fastrnn.backend()
    fastrnn.set_backend("numba")
    try:
        for layer in (fastrnn.LSTM(4, seed=0), fastrnn.GRU(4, seed=0, go_backwards=True),
                      fastrnn.SimpleRNN(4, seed=0)):
            for view in (x, read_only, x[:, ::-1], np.asfortranarray(x), x[:, ::2]):
                layer(view)
    finally:
        fastrnn.set_backend(previous)
    for core in (_numba.simple_rnn_core, _numba.lstm_core, _numba.gru_core):
        inputs = [signature[0] for signature in core.signatures]
        assert inputs and all(t.layout == "C" and t.mutable for t in inputs), (core, inputs)


def _blas_threads_setter():
    """SciPy's openblas_set_num_threads_local as a Python function (it returns the previous
    count), or skip where SciPy's BLAS has none."""
    import ctypes
    address = backends._blas_set_threads_address()
    if not address:
        pytest.skip("SciPy's BLAS has no openblas_set_num_threads_local here")
    return ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(address)


def test_numba_kernels_run_blas_on_one_thread(monkeypatch):
    """np.dot in the Numba cores would start BLAS threads beside fastrnn's own (oversubscribed
    parts on two cores ran 1.3-1.6x slower): a kernel sets SciPy's BLAS to one thread and
    restores the setting after."""
    _numba = pytest.importorskip("fastrnn._numba")
    set_threads = _blas_threads_setter()
    seen = []
    monkeypatch.setattr(_numba, "lstm_core", lambda *arguments: seen.append(set_threads(1)))
    previous = fastrnn.backend()
    fastrnn.set_backend("numba")
    original = set_threads(2)
    stored = set_threads(2)    # (what OpenBLAS keeps of 2 here: fewer on one core)
    try:
        fastrnn.LSTM(4, seed=0)(np.ones((2, 3, 5), np.float32))
        assert set_threads(2) == stored      # restored
    finally:
        set_threads(original)
        fastrnn.set_backend(previous)
    assert seen == [1]


@pytest.mark.parametrize("backend_name", ["cython", "numba"])
def test_products_in_blas_on_several_threads_at_once_restore_its_setting(backend_name):
    # The setting is process-wide in SciPy's OpenBLAS: each product saving and restoring it, two
    # at once left SciPy's BLAS on one thread for good.
    pytest.importorskip({"cython": "fastrnn._kernels", "numba": "fastrnn._numba"}[backend_name])
    set_threads = _blas_threads_setter()
    original = set_threads(2)
    stored = set_threads(2)
    previous, threads = fastrnn.backend(), fastrnn.num_threads()
    # one row of 1024 units: its products run in BLAS, its steps shared on the compiled team
    layer = fastrnn.LSTM(1024, seed=0, input_shape=(None, 512))
    x = np.random.default_rng(0).standard_normal((1, 5, 512)).astype(np.float32)
    try:
        fastrnn.set_backend(backend_name)
        fastrnn.set_num_threads(2)
        expected = layer(x)
        outputs = []
        callers = [threading.Thread(target=lambda: outputs.extend(layer(x) for _ in range(5))) for _ in range(3)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert set_threads(2) == stored
        assert len(outputs) == 15 and all(np.allclose(output, expected, rtol=0, atol=1e-6) for output in outputs)
    finally:
        set_threads(original)
        fastrnn.set_backend(previous)
        fastrnn.set_num_threads(threads)


def test_layers_take_views_on_every_backend(backend_name):
    """What a user passes as it is, views included, gives what its contiguous copy gives."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    for layer in (fastrnn.LSTM(4, seed=0, return_sequences=True), fastrnn.GRU(4, seed=0, go_backwards=True),
                  fastrnn.SimpleRNN(4, seed=0, dtype="float64", return_sequences=True)):
        for name, view in _views(x).items():
            if backend_name == "numpy":
                # NumPy < 2 multiplies some strided operands without BLAS, summing in another order.
                np.testing.assert_allclose(layer(view), layer(np.ascontiguousarray(view)), rtol=1e-6, atol=1e-7,
                                           err_msg=name)
            else:
                np.testing.assert_array_equal(layer(view), layer(np.ascontiguousarray(view)), err_msg=name)


def test_compiled_kernel_refuses_read_only_outputs():
    _kernels = pytest.importorskip("fastrnn._kernels")
    arguments = _lstm_arguments(np.float64)
    arguments["h"].flags.writeable = False
    with pytest.raises(ValueError, match="kernel argument h: .*read-only"):
        _kernels.lstm(*arguments.values())
    arguments = _lstm_arguments(np.float64)
    _kernels.lstm(*arguments.values())   # and the valid call runs


def test_num_threads_defaults_to_omp_num_threads_else_the_cpus():
    code = "import fastrnn; print(fastrnn.num_threads())"
    cpus = str(len(os.sched_getaffinity(0)))
    for value, expected in (("3", "3"), ("", cpus), ("junk", cpus), ("2,1", "2"), ("\u00b2", cpus)):   # (² is a digit to isdigit)
        env = dict(os.environ, OMP_NUM_THREADS=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected, (value, out.stdout, out.stderr)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_refuses_non_positive_integers(bad):
    with pytest.raises(ValueError, match="positive integer"):
        fastrnn.set_num_threads(bad)


def test_set_num_threads_takes_numpy_integers():
    previous = fastrnn.num_threads()
    try:
        fastrnn.set_num_threads(np.int64(1))
        assert fastrnn.num_threads() == 1 and type(fastrnn.num_threads()) is int
    finally:
        fastrnn.set_num_threads(previous)


def test_set_num_threads_while_another_thread_imports_the_kernels():
    # The first call imports the compiled extension; meanwhile sys.modules holds it half made,
    # and set_num_threads once called its configure there (AttributeError in 10 of 10 runs).
    code = """
import threading, numpy as np, fastrnn
errors, stop = [], threading.Event()
def toggle():
    while not stop.is_set():
        try:
            fastrnn.set_num_threads(3)
        except Exception as exc:
            errors.append(repr(exc))
            return
toggler = threading.Thread(target=toggle)
toggler.start()
fastrnn.LSTM(8, seed=0)(np.ones((2, 5, 3), "float32"))
stop.set()
toggler.join()
from fastrnn import _kernels
print(errors, _kernels.configure()["threads"])
"""
    assert run_python(code, FASTRNN_BACKEND="cython") == "[] 3"


def test_a_split_call_at_interpreter_exit_runs_on_the_calling_thread():
    # No new threads once the interpreter shuts down: fastrnn's pool, made at the first split,
    # raised RuntimeError there (an atexit handler, a thread outliving the main one).
    code = """
import atexit, numpy as np, fastrnn
fastrnn.set_backend("numpy")
fastrnn.set_num_threads(2)
layer = fastrnn.LSTM(64, seed=0)
x = np.random.default_rng(0).standard_normal((512, 20, 8)).astype("float32")
def at_exit():
    got = layer(x)    # two parts of 256 rows
    print(np.abs(got[256:] - layer(x[256:])).max() < 1e-6)
atexit.register(at_exit)
"""
    assert run_python(code) == "True"


def test_results_do_not_depend_on_the_thread_count(backend_name):
    """Large enough for BLAS (the threaded path) in both the projection and the steps."""
    layer = fastrnn.LSTM(256, seed=0, return_sequences=True)
    x = np.random.default_rng(0).standard_normal((64, 6, 96)).astype(np.float32)
    previous = fastrnn.num_threads()
    try:
        fastrnn.set_num_threads(1)
        one = layer(x)
        fastrnn.set_num_threads(2)
        two = layer(x)
    finally:
        fastrnn.set_num_threads(previous)
    assert fastrnn.num_threads() == previous
    np.testing.assert_allclose(one, two, rtol=0, atol=1e-6)


@pytest.mark.parametrize("batch, units", [(2, 4), (1, 72), (5, 40)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_step_matches_the_kernel_call(dtype, batch, units):
    """Step binds a kernel's weights and states once; each call equals a one-step kernel call,
    whatever the layout of its input. From 16 KB of recurrent kernel, or 4 rows, the Step packs
    it and the one-step call does not."""
    _kernels = pytest.importorskip("fastrnn._kernels")
    arguments = _lstm_arguments(dtype, T=1, B=batch, U=units)
    twin = {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in arguments.items()}
    rng = np.random.default_rng(1)
    for name in ("kernel", "recurrent_kernel", "bias"):
        arguments[name][...] = twin[name][...] = rng.uniform(-0.5, 0.5, arguments[name].shape)
    step = _kernels.Step(_kernels.lstm, (None,) + tuple(list(arguments.values())[1:]))
    for layout in (np.ascontiguousarray, np.asfortranarray, lambda a: np.repeat(a, 2, axis=1)[:, ::2]):
        x_t = rng.standard_normal((batch, arguments["x"].shape[2])).astype(dtype)
        output = step(layout(x_t))
        _kernels.lstm(x_t[:, None], *list(twin.values())[1:])
        np.testing.assert_array_equal(output, twin["h"])
        np.testing.assert_array_equal(arguments["c"], twin["c"])
        assert output is not arguments["h"]


def test_compiled_step_checks_its_input():
    _kernels = pytest.importorskip("fastrnn._kernels")
    arguments = _lstm_arguments(np.float32, T=1)
    step = _kernels.Step(_kernels.lstm, (None,) + tuple(list(arguments.values())[1:]))
    for bad, message in ((np.zeros((2, 6), np.float32), r"x_t: expected shape \(2, 5\)"),
                         (np.zeros((2, 5), np.float64), "x_t: expected .*float32"),
                         ([[0.0] * 5] * 2, "expected a NumPy array")):
        with pytest.raises((ValueError, TypeError), match=message):
            step(bad)
    with pytest.raises(TypeError, match="one of fastrnn._kernels. kernels"):
        _kernels.Step(len, (None,) + tuple(list(arguments.values())[1:]))
    arguments["mask"] = np.ones((2, 1), np.uint8)
    with pytest.raises(ValueError, match="empty mask and sequence"):
        _kernels.Step(_kernels.lstm, (None,) + tuple(list(arguments.values())[1:]))


def test_compiled_step_binds_only_what_it_checked():
    """A Step takes x None (an array's timesteps would be read at every step: a long x overran the
    step's input); an unbound Step refuses to run; a Step bound again with bad arguments keeps
    its earlier binding whole."""
    _kernels = pytest.importorskip("fastrnn._kernels")
    arguments = _lstm_arguments(np.float32, T=1)
    rng = np.random.default_rng(2)
    for name in ("kernel", "recurrent_kernel", "bias"):
        arguments[name][...] = rng.uniform(-0.5, 0.5, arguments[name].shape)
    rest = tuple(list(arguments.values())[1:])
    with pytest.raises(TypeError, match="x None"):
        _kernels.Step(_kernels.lstm, (np.zeros((1000, 2, 5), np.float32),) + rest)
    with pytest.raises(TypeError, match="not bound"):
        _kernels.Step.__new__(_kernels.Step)(np.zeros((2, 5), np.float32))
    step = _kernels.Step(_kernels.lstm, (None,) + rest)
    x_t = np.ones((2, 5), np.float32)
    twin = {name: value.copy() if isinstance(value, np.ndarray) else value for name, value in arguments.items()}
    bad = (None,) + rest[:7] + (np.zeros((3, 3), np.float32),) + rest[8:]     # h of another batch
    with pytest.raises(ValueError, match="expected shape"):
        step.__init__(_kernels.lstm, bad)
    output = step(x_t)
    _kernels.lstm(x_t[:, None], *list(twin.values())[1:])
    np.testing.assert_array_equal(output, twin["h"])
    assert np.abs(output).max() > 0.01


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_during_blas_products_does_not_hang():
    """The kernels set SciPy's BLAS to one thread around each product, which takes OpenBLAS's
    server lock: a fork while another thread held it left the child's BLAS locked for good
    (11 of 60 children hung here). A fork now waits for a setting in progress."""
    pytest.importorskip("fastrnn._kernels")
    previous = fastrnn.backend()
    fastrnn.set_backend("cython")
    layer = fastrnn.LSTM(256, seed=0)      # products large enough for BLAS
    x = np.random.default_rng(0).random((64, 16, 128), dtype=np.float32)
    expected, stop = layer(x), threading.Event()

    def serve():
        while not stop.is_set():
            layer(x)

    threads = [threading.Thread(target=serve) for _ in range(3)]
    for thread in threads:
        thread.start()
    hung = wrong = 0
    try:
        for _ in range(40):
            time.sleep(0.01)
            pid = os.fork()
            if pid == 0:     # the child: killed by the alarm if it hangs
                signal.alarm(20)
                os._exit(0 if np.array_equal(layer(x), expected) else 3)
            status = os.waitpid(pid, 0)[1]
            hung += os.WIFSIGNALED(status)
            wrong += os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        fastrnn.set_backend(previous)
    assert (hung, wrong) == (0, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("lock", ["name", "threads", "layer build", "model build"])
def test_a_child_forked_while_another_thread_holds_a_lock_of_fastrnn_does_not_hang(lock):
    """The locks around layer names, the thread count and builds: a child forked while another
    thread held one waited for ever on its first layer, thread count or call of an unbuilt
    layer."""
    from fastrnn import base

    unbuilt = fastrnn.Sequential([fastrnn.LSTM(2)])
    held = {"name": base._NAME_LOCK, "threads": backends._threads_lock, "layer build": unbuilt.layers[0]._build_lock,
            "model build": unbuilt._build_lock}[lock]
    taken, forked = threading.Event(), threading.Event()
    holder = threading.Thread(target=lambda: (held.acquire(), taken.set(), forked.wait(), held.release()))
    holder.start()
    taken.wait()
    pid = os.fork()
    if pid == 0:
        signal.alarm(10)
        code = 1
        try:
            if lock.endswith("build"):
                code = 0 if unbuilt(np.ones((1, 3, 2), np.float32)).shape == (1, 2) else 1
            else:
                fastrnn.set_num_threads(1) if lock == "threads" else fastrnn.LSTM(2)
                code = 0
        finally:
            os._exit(code)
    forked.set()
    holder.join()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_unrelated_builds_do_not_wait_for_each_other():
    """Each layer and model has its own build lock: a new layer's first call went on while
    another thread built an unrelated large one (with one lock for all, it waited 3.9 s for an
    LSTM(2048)'s initialisation)."""
    busy = fastrnn.Sequential([fastrnn.LSTM(2)])
    done = threading.Event()
    with busy._build_lock, busy.layers[0]._build_lock:    # as while they build
        thread = threading.Thread(target=lambda: (fastrnn.Sequential([fastrnn.GRU(3)])(np.ones((1, 2, 4))),
                                                  done.set()))
        thread.start()
        finished = done.wait(30)
    thread.join()
    assert finished


def test_a_fork_waits_for_the_numba_kernels_blas_setting():
    """The Numba kernels make the same setting through ctypes, under a lock a fork takes first."""
    _numba = pytest.importorskip("fastrnn._numba")
    holder = threading.Thread(target=lambda: (_numba._blas_lock.acquire(), time.sleep(0.5),
                                              _numba._blas_lock.release()))
    holder.start()
    time.sleep(0.1)
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if _numba._blas_lock.acquire(timeout=5) else 1)    # released in the child
    waited = time.perf_counter() - start
    holder.join()
    assert os.waitpid(pid, 0)[1] == 0
    assert waited >= 0.3


def test_an_interrupted_fork_handler_releases_nothing_it_did_not_take(monkeypatch):
    """A signal can interrupt the Numba kernels' fork handler while it waits for the lock: the
    fork then goes ahead, and the handlers after it must not release another thread's lock."""
    _numba = pytest.importorskip("fastrnn._numba")

    class Interrupted:
        released = 0

        def acquire(self):
            raise KeyboardInterrupt

        def release(self):
            self.released += 1

    lock = Interrupted()
    monkeypatch.setattr(_numba, "_blas_lock", lock)
    with pytest.raises(KeyboardInterrupt):
        _numba._take_for_fork()
    _numba._give_after_fork()
    assert lock.released == 0


def test_auto_warns_when_a_source_checkout_shadows_the_build(monkeypatch):
    # Run from a clone without `pip install -e .`, Python finds ./fastrnn, which has no extension:
    # auto must say so rather than run tens of times slower without a word.
    def missing():
        raise ImportError("No module named 'fastrnn._kernels'")

    monkeypatch.setitem(backends._IMPORTERS, "cython", missing)
    monkeypatch.setattr(backends, "_active", None)
    with pytest.warns(RuntimeWarning, match="imported from the source checkout .* using the next backend instead"):
        backends._select("auto", "test")
    assert backends._active[0] in ("numba", "numpy")
