"""fastrnn: run trained Keras and PyTorch recurrent networks fast on the CPU, with only NumPy.

The public API: the layers (Keras names), the models, and the backend registry's `backend`,
`set_backend` and `show_config`.
"""
__version__ = "0.1.0"

from .backends import backend, num_threads, set_backend, set_num_threads, show_config
from .errors import ModelFileError
from .io import load
from .io.torch import from_torch
from .layers import (Activation, Add, Average, Concatenate, Dense, Dropout, Embedding, Flatten,
                     GaussianDropout, GaussianNoise, Masking, Maximum, Minimum, Multiply,
                     RepeatVector, Reshape, SpatialDropout1D, Subtract, TimeDistributed, add, average,
                     concatenate, maximum, minimum, multiply, subtract)
from .models import Input, InputLayer, Model, Sequential, TorchRNN
from .recurrent import GRU, LSTM, Bidirectional, SimpleRNN

__all__ = [
    # recurrent layers
    "GRU", "LSTM", "Bidirectional", "SimpleRNN",
    # the layers around them
    "Activation", "Add", "Average", "Concatenate", "Dense", "Dropout", "Embedding", "Flatten",
    "GaussianDropout", "GaussianNoise", "Masking", "Maximum", "Minimum", "Multiply", "RepeatVector",
    "Reshape", "SpatialDropout1D", "Subtract", "TimeDistributed",
    "add", "average", "concatenate", "maximum", "minimum", "multiply", "subtract",
    # models
    "Input", "InputLayer", "Model", "Sequential", "TorchRNN",
    # loading
    "ModelFileError", "from_torch", "load",
    # backends
    "backend", "set_backend", "show_config", "num_threads", "set_num_threads", "__version__",
]
