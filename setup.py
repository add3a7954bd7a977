"""Build the one compiled extension, ``fastrnn._kernels``, from ``csrc/``.

Everything else (metadata, dependencies, extras) lives in pyproject.toml.
"""
import Cython
from Cython.Build import cythonize
from setuptools import Extension, setup

CFLAGS = ["-O3"]

kernels = Extension(
    "fastrnn._kernels",
    ["csrc/_kernels.pyx"],
    extra_compile_args=CFLAGS,
    # Recorded in the extension so that fastrnn.show_config() can say how it was built.
    define_macros=[
        ("FASTRNN_CYTHON_VERSION", '"%s"' % Cython.__version__),
        ("FASTRNN_CFLAGS", '"%s"' % " ".join(CFLAGS)),
    ],
)

setup(ext_modules=cythonize([kernels], language_level=3))
