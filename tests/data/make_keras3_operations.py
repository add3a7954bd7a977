"""Keras 3 functional models with operations in their graphs, and what Keras lists as their layers.

A Keras 3 functional model records some computations as operations of the graph: the masks of
``Masking``, ``Embedding(mask_zero=True)`` and merges (``NotEqual``, ``Any``, ``ExpandDims``,
``LogicalOr``, ``ops.concatenate`` ...) and a user's own ``keras.ops`` calls (``a + b`` is
recorded as ``Add``, ``ops.concatenate`` as ``Concatenate``: the class names of layers). They run,
and ``summary()`` shows them, but ``model.layers`` and ``get_layer`` skip them.

This script writes ``k3_operations_in_graph.keras`` and ``.h5`` to ``tests/data/files/``: a user's
``a + b`` and ``ops.concatenate`` beside a ``Concatenate`` layer that joins only operations'
outputs (``zeros_like``, ``ones_like``), with its input and output in
``expected_keras3_operations.npz`` (``x``, ``y``). Then it loads every ``k3_*.keras`` archive among
the fixtures with Keras and writes the names of its ``model.layers``, in order, to
``keras3_layer_names.json`` (file name -> list of names). The fastrnn tests only read these files.

Last run with: Python 3.11.7, keras 3.15.1, jax 0.10.2, numpy 2.4.6, h5py, on CPU::

    pip install keras==3.15.1 jax numpy h5py
    KERAS_BACKEND=jax python tests/data/make_keras3_operations.py
"""
import json
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

FILES = Path(__file__).parent / "files"


def operations_in_graph():
    """LSTM and GRU outputs added and concatenated by keras.ops, a Concatenate layer of two
    operations' outputs, and a Dense head; saved as .keras and .h5 with its outputs."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((5, 3))
    a = layers.LSTM(4, return_sequences=True)(inputs)
    b = layers.GRU(4, return_sequences=True)(inputs)
    c = ops.concatenate([a, a + b], axis=-1)
    d = layers.Concatenate(name="real_concat")([ops.zeros_like(a), ops.ones_like(b)])
    model = keras.Model(inputs, layers.Dense(2)(layers.Concatenate()([c, d])), name="operations")
    x = np.random.default_rng(3).uniform(-1, 1, (2, 5, 3)).astype("float32")
    model.save(FILES / "k3_operations_in_graph.keras")
    model.save(FILES / "k3_operations_in_graph.h5")
    np.savez(FILES / "expected_keras3_operations.npz", x=x, y=np.asarray(model(x)))


def layer_names():
    names = {}
    for path in sorted(FILES.glob("k3_*.keras")):
        try:
            model = keras.saving.load_model(path, compile=False)
        except ValueError as error:   # a Lambda layer: Keras refuses it in safe mode, as fastrnn does
            print(f"skipped {path.name}: {str(error)[:80]}")
            continue
        names[path.name] = [layer.name for layer in model.layers]
    (FILES / "keras3_layer_names.json").write_text(json.dumps(names, indent=1) + "\n")
    print(f"wrote the layers of {len(names)} models")


if __name__ == "__main__":
    operations_in_graph()
    layer_names()
