"""fastrnn: run trained Keras and PyTorch recurrent networks fast on the CPU, with only NumPy.

The public API: the layers (`SimpleRNN`), and the backend registry's `backend`, `set_backend`
and `show_config`.
"""
__version__ = "0.1.0"

from .backends import backend, set_backend, show_config
from .layers import SimpleRNN

__all__ = ["SimpleRNN", "backend", "set_backend", "show_config", "__version__"]
