"""fastrnn: run trained Keras and PyTorch recurrent networks fast on the CPU, with only NumPy.

The public API: the layers (Keras names), the models, and the backend registry's `backend`,
`set_backend` and `show_config`.
"""
__version__ = "0.1.0"

from .backends import backend, set_backend, show_config
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = ["GRU", "LSTM", "Bidirectional", "SimpleRNN", "backend", "set_backend", "show_config",
           "__version__"]
