"""The backend registry: which implementation of the kernels runs the layers.

Three backends offer the same kernel functions (the contract is documented in
fastrnn/reference.py): ``cython`` (the compiled extension built from csrc/), ``numba`` (the
JIT-compiled fallback, needs numba) and ``numpy`` (the reference itself). ``auto`` takes the first
of them that imports, in that order. The environment variable ``FASTRNN_BACKEND`` names the
default; `set_backend` overrides it at run time. This module is the only importer of the compiled
extension and of numba.
"""
import numbers
import os
import platform
import threading
import warnings

__all__ = ["available", "backend", "kernels", "num_threads", "set_backend", "set_num_threads", "show_config"]


def _import_cython():
    global _compiled
    from . import _kernels

    # One BLAS thread inside a kernel: fastrnn's own threads split the work (fastrnn/parallel.py
    # and the kernels' team).
    _kernels.use_blas_thread_control(_blas_set_threads_address())
    amx = os.environ.get("FASTRNN_AMX", "").strip()
    if _compiled is None and amx:
        # FASTRNN_AMX=1: float32 products of many rows in AMX tiles where the CPU has them (faster
        # on a core of one's own; csrc/_kernels.pyx says why they are off by default). Unset, it
        # leaves the kernels' setting as it is (a configure(amx=True) made before this load).
        _kernels.configure(amx=amx == "1")
    with _threads_lock:     # a set_num_threads meanwhile then either comes first or finds it
        _kernels.configure(threads=num_threads())
        _compiled = _kernels
    return _kernels


def compiled():
    """The compiled extension once it is loaded and set up, else None (nothing is imported).
    Not sys.modules's entry: while one thread imports it, another would find it there half made."""
    return _compiled


def _blas_set_threads_address():
    """The address of ``openblas_set_num_threads_local`` in SciPy's BLAS, or 0 where there is none
    (another BLAS, an older OpenBLAS): the compiled kernels set their BLAS thread count with it."""
    import ctypes

    from scipy.linalg import cython_blas

    try:
        function = ctypes.CDLL(cython_blas.__file__).openblas_set_num_threads_local
    except (OSError, AttributeError):
        return 0
    return ctypes.cast(function, ctypes.c_void_p).value or 0


def _import_numba():
    from . import _numba

    return _numba


def _import_numpy():
    from . import reference

    return reference


# Order matters: "auto" takes the first that imports.
_IMPORTERS = {"cython": _import_cython, "numba": _import_numba, "numpy": _import_numpy}

_active = None  # (name, kernels module, how it was chosen); resolved on first use
selections = 0  # counts the choices of _active: a stream's steps, bound to one backend, rebind
_threads = None  # set_num_threads's value; None until set or first read
_threads_lock = threading.RLock()   # _threads and the compiled extension's copy of it agree (re-entered: num_threads)
_compiled = None   # the compiled extension, once _import_cython has set it up


def _forget_threads_lock():
    # A child forked while another thread held the lock would wait for it forever.
    global _threads_lock
    _threads_lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_lock)


def _load(name):
    """Import backend `name`; raise ImportError saying why it is unavailable."""
    try:
        importer = _IMPORTERS[name]
    except KeyError:
        raise ValueError(
            f"unknown fastrnn backend {name!r}; choose one of 'auto', {', '.join(map(repr, _IMPORTERS))}"
        ) from None
    try:
        return importer()
    except ImportError as exc:
        hint = {
            "cython": "the compiled extension fastrnn._kernels is missing: reinstall fastrnn "
            "from source with a C compiler (pip install .)",
            "numba": "numba is not installed: pip install 'fastrnn[numba]'",
        }.get(name, "")
        if name == "cython" and _from_source_checkout():
            hint = (f"fastrnn was imported from the source checkout {os.path.dirname(__file__)}, which has no "
                    "built extension: run from another directory, or build in place with pip install -e .")
        raise ImportError(f"fastrnn backend {name!r} is unavailable: {hint} ({exc})") from exc


def _from_source_checkout():
    """Whether this fastrnn is a source checkout's (csrc/ beside it): the usual reason the
    compiled extension is missing is that Python found the checkout before the installed package."""
    return os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "csrc"))


def _select(name, how):
    global _active, selections
    if name == "auto":
        for candidate in _IMPORTERS:
            try:
                _active, selections = (candidate, _load(candidate), how), selections + 1
                return
            except ImportError as exc:
                if candidate == "cython" and _from_source_checkout():
                    # Tens of times slower without a word would look like a bug in fastrnn.
                    warnings.warn(f"{exc}; using the next backend instead", RuntimeWarning, stacklevel=4)
    _active, selections = (name, _load(name), how), selections + 1


def set_backend(name="auto"):
    """Choose the implementation that runs every layer from now on.

    Parameters
    ----------
    name : {"auto", "cython", "numba", "numpy"}
        ``"auto"`` takes the first available of cython, numba, numpy (ignoring ``FASTRNN_BACKEND``).

    Raises
    ------
    ValueError
        If `name` is not a backend.
    ImportError
        If the named backend cannot be loaded here (the message says why and how to fix it).

    Examples
    --------
    >>> import fastrnn
    >>> fastrnn.set_backend("numpy")
    >>> fastrnn.backend()
    'numpy'
    >>> fastrnn.set_backend("auto")
    """
    _select(name, "set_backend" if name != "auto" else "auto")


def _threads_from_environment():
    """``OMP_NUM_THREADS`` where it is a positive integer, else the CPUs this process may use."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if value.isascii() and value.isdigit() and int(value) > 0:   # (isdigit alone takes "²", which int refuses)
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def num_threads():
    """Return the number of threads a forward pass may use (see `set_num_threads`).

    Examples
    --------
    >>> import fastrnn
    >>> fastrnn.num_threads() >= 1
    True
    """
    global _threads
    if _threads is None:
        with _threads_lock:     # (not over a set_num_threads that came first)
            if _threads is None:
                _threads = _threads_from_environment()
    return _threads


def set_num_threads(n):
    """Let a forward pass run on up to `n` threads.

    The rows of a batch are independent sequences, so a batch is split into parts, each thread
    running the whole recurrence for its rows: with the compiled backend from one row and about
    1M multiply-adds per part, with the others from 4 rows and 8M. With the compiled backend, a
    call that cannot be split (one row) shares each step's units among threads that meet after
    every step, when a step is large enough to pay for that meeting. The default is
    ``OMP_NUM_THREADS`` where it is set, else the number of CPUs this process may use. Calls
    from several threads of your own run in parallel whatever this is.

    Parameters
    ----------
    n : int
        A positive number of threads; 1 runs every call on the calling thread.

    Examples
    --------
    >>> import fastrnn
    >>> previous = fastrnn.num_threads()
    >>> fastrnn.set_num_threads(1)
    >>> fastrnn.num_threads()
    1
    >>> fastrnn.set_num_threads(previous)
    """
    global _threads
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:   # (NumPy's integers too)
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    n = int(n)
    with _threads_lock:
        _threads = n
        if _compiled is not None:
            _compiled.configure(threads=n)


def kernels():
    """Return the module whose kernel functions run the layers (resolving the default once)."""
    if _active is None:
        env = os.environ.get("FASTRNN_BACKEND", "").strip().lower()
        _select(env or "auto", "FASTRNN_BACKEND" if env and env != "auto" else "auto")
    return _active[1]


def backend():
    """Return the name of the backend in use: ``"cython"``, ``"numba"`` or ``"numpy"``.

    Examples
    --------
    >>> import fastrnn
    >>> fastrnn.backend() in ("cython", "numba", "numpy")
    True
    """
    kernels()
    return _active[0]


def available():
    """Report which backends can be loaded here.

    Returns
    -------
    dict
        ``{name: None}`` for a loadable backend, ``{name: "reason"}`` for one that is not, in the
        order ``auto`` tries them.
    """
    report = {}
    for name in _IMPORTERS:
        try:
            _load(name)
            report[name] = None
        except ImportError as exc:
            report[name] = str(exc)
    return report


def _numpy_blas():
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # numpy < 1.25 has no dict mode; the BLAS line is a nicety
        return "unknown"


def show_config():
    """Print the fastrnn version, the backend in use and why, every backend's status, and how the
    compiled extension, NumPy and its BLAS were built.

    Examples
    --------
    >>> import fastrnn
    >>> fastrnn.show_config()  # doctest: +SKIP
    fastrnn 0.1.0
    backend: cython (chosen by auto)
    ...
    """
    import numpy as np

    from . import __version__

    name = backend()
    lines = [f"fastrnn {__version__}", f"backend: {name} (chosen by {_active[2]})", "backends:"]
    for candidate, reason in available().items():
        if reason is not None:
            detail = reason
        elif candidate == "cython":
            kernels = _load("cython")
            info = kernels.BUILD_INFO
            detail = (f"built with {info['compiler']}, flags {info['cflags']}, Cython {info['cython']}; "
                      f"products in {kernels.product_vector_bits()}-bit vectors"
                      + (", float32 ones of 16 rows or more in AMX tiles" if kernels.products_use_amx()
                         else ", AMX tiles off (FASTRNN_AMX=1)" if kernels.cpu_has_amx() else ""))
        elif candidate == "numba":
            import numba

            detail = f"numba {numba.__version__}"
        else:
            detail = "NumPy reference"
        lines.append(f"  {candidate:6s} {'ok' if reason is None else '--'}  {detail}")
    lines.append(f"numpy {np.__version__}, BLAS: {_numpy_blas()}")
    lines.append(f"python {platform.python_version()} on {platform.machine()} {platform.system()}")
    print("\n".join(lines))
