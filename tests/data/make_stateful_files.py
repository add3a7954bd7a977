"""Write Keras 3 stateful models and the outputs of consecutive calls, for fastrnn's tests.

A stateful Keras RNN starts each call from the states its previous call ended with, until
``reset_states()``. This script saves such models (``.keras`` and legacy ``.h5``) and what Keras
returns for call 1, call 2 (continuing), and call 3 after ``reset_states()``, to
``files/expected_stateful.npz`` (same index layout as ``files/expected_keras3.npz``, outputs named
``{name}.call{k}``).

Last run with: Python 3.11.7, keras 3.15.1, tensorflow-cpu 2.21.0, numpy 2.4.6.
How to run: ``pip install tensorflow-cpu keras && python tests/data/make_stateful_files.py``.
"""
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
rng = np.random.default_rng(7)


def randomize(model):
    """Give every weight uniform(-0.5, 0.5) values, so that biases matter."""
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])


def stateful_models():
    """Yield (name, model) for each stateful model; the batch size is part of a stateful model."""
    L = keras.layers
    yield "stateful_lstm", keras.Sequential([
        keras.Input(batch_shape=(2, 3, 2)), L.LSTM(4, stateful=True, return_sequences=True), L.Dense(1)])
    yield "stateful_gru_stack", keras.Sequential([
        keras.Input(batch_shape=(3, 4, 2)), L.GRU(3, stateful=True, return_sequences=True),
        L.SimpleRNN(2, stateful=True), L.Dense(2)])


def reset_states(model):
    """Keras 3 resets per layer: ``layer.reset_states()`` on each stateful RNN."""
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()


def main():
    index, arrays = [], {}
    for name, model in stateful_models():
        randomize(model)
        batch, timesteps, features = model.input_shape
        inputs = [rng.uniform(-1, 1, (batch, timesteps, features)).astype("float32") for _ in range(3)]
        reset_states(model)
        outputs = [keras.ops.convert_to_numpy(model(inputs[0])), keras.ops.convert_to_numpy(model(inputs[1]))]
        reset_states(model)
        outputs.append(keras.ops.convert_to_numpy(model(inputs[2])))
        files = [f"{name}.keras", f"{name}.h5"]
        model.save(os.path.join(HERE, files[0]))
        model.save(os.path.join(HERE, files[1]))
        for k in range(3):
            arrays[f"{name}.in{k}"] = inputs[k]
            arrays[f"{name}.call{k}"] = outputs[k]
        index.append({"name": name, "files": files, "dtype": "float32", "keras_version": keras.__version__,
                      "description": "calls 0 and 1 continue; every layer's reset_states() before call 2"})
    arrays["index"] = np.array(json.dumps(index))
    np.savez_compressed(os.path.join(HERE, "expected_stateful.npz"), **arrays)
    print(f"wrote {len(index)} stateful models")


if __name__ == "__main__":
    main()
