"""Keras 3 functional models with operations in their graphs, and what Keras lists as their layers.

A Keras 3 functional model records some computations as operations of the graph: the masks of
``Masking``, ``Embedding(mask_zero=True)`` and merges (``NotEqual``, ``Any``, ``ExpandDims``,
``LogicalOr``, ``ops.concatenate`` ...) and a user's own ``keras.ops`` calls (``a + b`` is
recorded as ``Add``, ``ops.concatenate`` as ``Concatenate``: the class names of layers). They run,
and ``summary()`` shows them, but ``model.layers`` and ``get_layer`` skip them.

This script writes ``k3_operations_*.keras`` and ``.h5`` to ``tests/data/files/``: a user's
``a + b`` and ``ops.concatenate`` beside a ``Concatenate`` layer that joins only operations'
outputs (``zeros_like``, ``ones_like``); operations joining masked sequences (they neither take
nor pass on a mask); masks from ``ops.not_equal`` of two inputs and of a constant and an input;
and their inputs (stacked where
there are two) and Keras's outputs in ``expected_keras3_operations.npz`` (``NAME_x``, ``NAME_y``
for each name in the JSON list ``names``). Two models with operations fastrnn refuses by name go
to ``k3_refused_operation_{scalar,average}.keras``. Then it loads every ``k3_*.keras`` archive among
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


def save(model, name, x, expected):
    """`model` as NAME.keras and NAME.h5, its input (a list of several inputs is stacked) and
    Keras's output in `expected`."""
    model.save(FILES / f"{name}.keras")
    model.save(FILES / f"{name}.h5")
    expected[f"{name}_x"], expected[f"{name}_y"] = x, np.asarray(model(x))


def operations_in_graph():
    """Models whose graphs hold a user's operations, saved with their outputs."""
    expected = {}
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    # a + b and ops.concatenate, and a Concatenate layer of two operations' outputs
    inputs = keras.Input((5, 3))
    a = layers.LSTM(4, return_sequences=True)(inputs)
    b = layers.GRU(4, return_sequences=True)(inputs)
    c = ops.concatenate([a, a + b], axis=-1)
    d = layers.Concatenate(name="real_concat")([ops.zeros_like(a), ops.ones_like(b)])
    model = keras.Model(inputs, layers.Dense(2)(layers.Concatenate()([c, d])), name="operations")
    save(model, "k3_operations_in_graph", rng.uniform(-1, 1, (2, 5, 3)).astype("float32"), expected)
    # Masked sequences joined by operations, which neither take nor pass on a mask: the LSTM
    # after a + b runs unmasked, and ops.maximum, minimum and * have no mask rules
    inputs = keras.Input((6, 3))
    masked = layers.Masking()(inputs)
    a = layers.LSTM(4, return_sequences=True)(masked)
    b = layers.GRU(4, return_sequences=True)(masked)
    model = keras.Model(inputs, layers.Dense(2)(layers.LSTM(3)(a + b)), name="masked_add")
    x = rng.uniform(-1, 1, (3, 6, 3)).astype("float32")
    x[0, -2:], x[1, -4:] = 0, 0
    save(model, "k3_operations_masked", x, expected)
    tokens = keras.Input((6,), dtype="int32")
    embedded = layers.Embedding(10, 4, mask_zero=True)(tokens)
    a = layers.LSTM(4, return_sequences=True)(embedded)
    b = layers.GRU(4, return_sequences=True)(embedded)
    joined = ops.concatenate([ops.maximum(a, b), ops.minimum(a, b), a * b, a - b], axis=-1)
    merged = layers.Concatenate()([joined, layers.Concatenate()([a, b]), layers.Add()([a, b])])
    model = keras.Model(tokens, layers.Dense(2)(layers.GRU(3)(merged)), name="embedding_operations")
    x = rng.integers(1, 10, (3, 6)).astype("int32")
    x[0, -2:], x[1, -4:] = 0, 0
    save(model, "k3_operations_embedding", x, expected)
    # A mask of where two inputs differ: ops.not_equal of two tensors
    first, second = keras.Input((6, 3)), keras.Input((6, 3))
    differ = ops.any(ops.not_equal(first, second), axis=-1)
    model = keras.Model([first, second], layers.GRU(3, return_sequences=True)(first, mask=differ),
                        name="not_equal_tensors")
    x = rng.uniform(-1, 1, (3, 6, 3)).astype("float32")
    y = x.copy()
    y[0, 1:3] += 1.0
    y[2] += 1.0
    save(model, "k3_operations_not_equal_tensors", [x, y], expected)
    # The constant first: ops.not_equal(0.0, x)
    inputs = keras.Input((6, 3))
    keep = ops.any(ops.not_equal(0.0, inputs), axis=-1)
    model = keras.Model(inputs, layers.LSTM(3)(inputs, mask=keep), name="constant_first")
    x = rng.uniform(-1, 1, (3, 6, 3)).astype("float32")
    x[0, -2:], x[1, -3:] = 0, 0
    save(model, "k3_operations_constant_first", x, expected)
    np.savez(FILES / "expected_keras3_operations.npz", names=json.dumps(sorted({k[:-2] for k in expected})),
             **{key: np.stack(value) if isinstance(value, list) else value for key, value in expected.items()})
    # Operations fastrnn refuses by name: a plain number as an operand, ops.average along an axis
    # (recorded as Average, which is not the layer's merge)
    inputs = keras.Input((6, 3))
    sequence = layers.LSTM(3, return_sequences=True)(inputs)
    keras.Model(inputs, layers.GRU(2)(sequence * 2.0)).save(FILES / "k3_refused_operation_scalar.keras")
    average = ops.expand_dims(ops.average(sequence, axis=-1), -1)
    keras.Model(inputs, layers.GRU(2)(average)).save(FILES / "k3_refused_operation_average.keras")


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
