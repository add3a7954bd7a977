"""Build the one compiled extension, ``fastrnn._kernels``, from ``csrc/``.

Everything else (metadata, dependencies, extras) lives in pyproject.toml.
"""
import Cython
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# -fno-trapping-math lets the compiler vectorise the branch-free activations of fast_math.h;
# fastrnn never reads floating-point exception flags.
CFLAGS = ["-O3", "-fno-trapping-math"]

kernels = Extension(
    "fastrnn._kernels",
    ["csrc/_kernels.pyx"],
    include_dirs=["csrc", numpy.get_include()],
    depends=["csrc/amx_gemm.h", "csrc/blas_threads.h", "csrc/fast_math.h", "csrc/scratch.h", "csrc/small_gemm.h", "csrc/team.h"],
    extra_compile_args=CFLAGS,
    # Recorded in the extension so that fastrnn.show_config() can say how it was built.
    define_macros=[
        ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
        ("FASTRNN_CYTHON_VERSION", '"%s"' % Cython.__version__),
        ("FASTRNN_CFLAGS", '"%s"' % " ".join(CFLAGS)),
    ],
)

setup(ext_modules=cythonize([kernels], language_level=3))
