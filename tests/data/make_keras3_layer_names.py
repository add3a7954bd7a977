"""Record what Keras 3 lists as ``model.layers`` for every Keras 3 archive among the fixtures.

A Keras 3 functional model records some of its mask computations as operations of the graph
(``NotEqual``, ``Any``, ``ExpandDims``, ``LogicalOr``, ``ops.concatenate`` ...): they run, and
``summary()`` shows them, but ``model.layers`` and ``get_layer(index=...)`` skip them. This
script loads each ``tests/data/files/k3_*.keras`` with Keras and writes the layer names, in
order, to ``tests/data/files/keras3_layer_names.json`` (file name -> list of names), which the
fastrnn tests compare with fastrnn's ``model.layers``.

Last run with: Python 3.11.7, keras 3.15.1, jax 0.10.2, numpy 2.4.6, on CPU::

    pip install keras==3.15.1 jax numpy h5py
    KERAS_BACKEND=jax python tests/data/make_keras3_layer_names.py
"""
import json
from pathlib import Path

import keras

FILES = Path(__file__).parent / "files"


def main():
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
    main()
