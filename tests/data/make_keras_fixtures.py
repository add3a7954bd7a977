"""Generate golden SimpleRNN outputs with real Keras 3 for the fastrnn tests.

This script builds ``keras.layers.SimpleRNN`` layers with random (seeded)
weights, calls them eagerly on random inputs, and stores inputs, weights and
outputs in ``keras_simple_rnn.npz`` next to this file.  The fastrnn test suite
only reads that file; it does not need Keras installed.

Last run with: Python 3.11.7, keras 3.15.1, tensorflow-cpu 2.21.0,
numpy 2.4.6, ``KERAS_BACKEND=tensorflow``.

How to run (from the repository root, ideally in a separate virtualenv)::

    pip install tensorflow-cpu keras numpy
    python tests/data/make_keras_fixtures.py

File layout (``np.load(path, allow_pickle=False)``):

``index``
    0-d unicode array holding a JSON list of case dicts with keys
    ``name``, ``config`` (units, activation, use_bias, return_sequences,
    return_state, go_backwards, dtype), ``inputs`` (array-key suffixes that
    are present: ``"x"``, ``"mask"``, ``"initial_state"``), ``outputs``
    (number of outputs), ``count_params``, ``output_shape`` (Keras's
    symbolic shape of the first output, ``null`` for unknown dimensions) and
    ``keras_version``.
``{name}.x``, ``{name}.mask``, ``{name}.initial_state``
    Layer inputs.  ``mask`` is bool with shape ``(batch, timesteps)``.
``{name}.kernel``, ``{name}.recurrent_kernel``, ``{name}.bias``
    Layer weights (``bias`` is absent when ``use_bias=False``).
``{name}.out0``, ``{name}.out1``, ...
    Outputs of the layer call in Keras order; with ``return_state=True``
    this is ``[output, final_state]``.
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_PATH = os.path.join(HERE, "keras_simple_rnn.npz")
SEED = 20240521

ACTIVATIONS = [
    "tanh", "relu", "sigmoid", "hard_sigmoid", "linear", "elu", "selu",
    "softsign", "softplus", "swish", "silu", "gelu", "exponential",
]
# Activations that are unbounded above get smaller weights so that values
# stay finite and moderate over several timesteps.
SMALL_WEIGHT_ACTIVATIONS = {"relu", "linear", "exponential"}

# Mask of shape (6, 7): True = step is used, False = step is masked.
MASK = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],  # nothing masked
        [0, 0, 1, 1, 1, 1, 1],  # first steps masked
        [1, 1, 0, 0, 1, 1, 1],  # middle masked
        [1, 1, 1, 1, 0, 0, 0],  # end masked
        [0, 0, 0, 0, 0, 0, 0],  # fully masked row
        [0, 1, 0, 1, 1, 0, 1],  # scattered
    ],
    dtype=bool,
)

rng = np.random.default_rng(SEED)


def uniform(shape, scale, dtype):
    """Return ``uniform(-scale, scale)`` samples of the given shape and dtype."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def set_random_weights(layer, scale, dtype):
    """Overwrite the weights of a built SimpleRNN layer with random values.

    Parameters
    ----------
    layer : keras.layers.SimpleRNN
        A built layer.
    scale : float
        Half-width of the uniform distribution for all weights.
    dtype : str
        NumPy dtype of the new weights.
    """
    new = [uniform(w.shape, scale, dtype) for w in layer.get_weights()]
    layer.set_weights(new)


def weight_arrays(name, layer):
    """Return the layer weights as a dict of fixture arrays."""
    cell = layer.cell
    arrays = {
        f"{name}.kernel": keras.ops.convert_to_numpy(cell.kernel),
        f"{name}.recurrent_kernel": keras.ops.convert_to_numpy(
            cell.recurrent_kernel
        ),
    }
    if cell.use_bias:
        arrays[f"{name}.bias"] = keras.ops.convert_to_numpy(cell.bias)
    return arrays


def layer_config(layer, activation):
    """Return the subset of the layer config that is stored in the index.

    ``activation`` is the name that was passed to the layer; it is stored
    as given because ``get_config`` reports ``"swish"`` as ``"silu"``.
    """
    cfg = layer.get_config()
    return {
        "units": cfg["units"],
        "activation": activation,
        "use_bias": cfg["use_bias"],
        "return_sequences": cfg["return_sequences"],
        "return_state": cfg["return_state"],
        "go_backwards": cfg["go_backwards"],
        "dtype": layer.dtype,
    }


def as_list(outputs):
    """Return layer outputs as a list of NumPy arrays."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def shape_to_list(shape):
    """Convert a Keras shape tuple to a JSON-friendly list."""
    return [None if d is None else int(d) for d in shape]


def layer_case(name, batch=4, timesteps=5, input_dim=3, units=4,
               activation="tanh", use_bias=True, return_sequences=True,
               return_state=False, go_backwards=False, dtype="float32",
               mask=None, initial_state=False, scale=0.5):
    """Build, run and record one SimpleRNN layer case.

    Parameters
    ----------
    name : str
        Case name; used as the prefix of the array keys.
    batch, timesteps, input_dim, units : int
        Shapes of the input and of the layer.
    activation, use_bias, return_sequences, return_state, go_backwards, dtype
        Passed to ``keras.layers.SimpleRNN``.
    mask : numpy.ndarray of bool, optional
        Mask of shape ``(batch, timesteps)``.
    initial_state : bool
        If True, pass a random initial state of shape ``(batch, units)``.
    scale : float
        Half-width of the uniform distribution used for the weights.

    Returns
    -------
    case : dict
        Index entry for this case.
    arrays : dict
        Arrays to store, keyed ``"{name}.{suffix}"``.
    """
    layer = keras.layers.SimpleRNN(
        units,
        activation=activation,
        use_bias=use_bias,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        dtype=dtype,
    )
    # A symbolic call builds the layer and gives Keras's output shape.
    symbolic = layer(keras.Input(shape=(timesteps, input_dim), dtype=dtype))
    symbolic = symbolic if isinstance(symbolic, (list, tuple)) else [symbolic]
    set_random_weights(layer, scale, dtype)

    x = uniform((batch, timesteps, input_dim), 1.0, dtype)
    arrays = {f"{name}.x": x}
    inputs = ["x"]
    kwargs = {}
    if mask is not None:
        assert mask.shape == (batch, timesteps)
        arrays[f"{name}.mask"] = mask
        inputs.append("mask")
        kwargs["mask"] = mask
    if initial_state:
        h0 = uniform((batch, units), 1.0, dtype)
        arrays[f"{name}.initial_state"] = h0
        inputs.append("initial_state")
        kwargs["initial_state"] = h0

    outputs = as_list(layer(x, **kwargs))
    for i, out in enumerate(outputs):
        arrays[f"{name}.out{i}"] = out
    arrays.update(weight_arrays(name, layer))

    case = {
        "name": name,
        "config": layer_config(layer, activation),
        "inputs": inputs,
        "outputs": len(outputs),
        "count_params": int(layer.count_params()),
        "output_shape": shape_to_list(symbolic[0].shape),
        "keras_version": keras.__version__,
    }
    return case, arrays


def build_tutorial_model(return_sequences):
    """Build the tutorial's one-layer Sequential model.

    Tries the Keras 2 style first (``input_shape=`` /
    ``batch_input_shape=`` on the layer) and falls back to an explicit
    ``keras.Input`` when Keras 3 rejects it.

    Parameters
    ----------
    return_sequences : bool
        False: ``SimpleRNN(3)`` on input shape ``(2, 10)``.
        True: ``SimpleRNN(3, return_sequences=True)`` with fixed batch
        shape ``(8, 2, 10)``.

    Returns
    -------
    model : keras.Sequential
    """
    SimpleRNN = keras.layers.SimpleRNN
    try:
        if return_sequences:
            layer = SimpleRNN(3, batch_input_shape=(8, 2, 10),
                              return_sequences=True)
        else:
            layer = SimpleRNN(3, input_shape=(2, 10))
        model = keras.Sequential([layer])
        print(f"  Keras 2 style accepted (return_sequences={return_sequences})")
    except (TypeError, ValueError) as err:
        print(f"  Keras 2 style rejected (return_sequences={return_sequences})"
              f": {err}")
        if return_sequences:
            model = keras.Sequential([keras.Input(batch_shape=(8, 2, 10)),
                                      SimpleRNN(3, return_sequences=True)])
        else:
            model = keras.Sequential([keras.Input(shape=(2, 10)),
                                      SimpleRNN(3)])
    return model


def tutorial_case(name, return_sequences):
    """Record one of the tutorial's design examples (input batch (8, 2, 10))."""
    model = build_tutorial_model(return_sequences)
    layer = model.layers[-1]
    set_random_weights(layer, 0.5, "float32")
    x = uniform((8, 2, 10), 1.0, "float32")
    outputs = as_list(model(x))
    arrays = {f"{name}.x": x, f"{name}.out0": outputs[0]}
    arrays.update(weight_arrays(name, layer))
    case = {
        "name": name,
        "config": layer_config(layer, "tanh"),
        "inputs": ["x"],
        "outputs": 1,
        "count_params": int(model.count_params()),
        "output_shape": shape_to_list(model.output_shape),
        "keras_version": keras.__version__,
    }
    return case, arrays


def all_cases():
    """Yield ``(case, arrays)`` for every fixture case."""
    # 1. Every activation, with return_sequences=True.
    for act in ACTIVATIONS:
        scale = 0.15 if act in SMALL_WEIGHT_ACTIVATIONS else 0.5
        yield layer_case(f"act_{act}", activation=act, scale=scale)
    # Large weights so that hard_sigmoid hits its clipped regions (|z| > 3).
    yield layer_case("act_hard_sigmoid_saturated", activation="hard_sigmoid",
                     input_dim=8, scale=2.0)
    # 2. No bias.
    yield layer_case("no_bias", use_bias=False, batch=3, input_dim=5)
    # 3. return_sequences False / True.
    yield layer_case("last_output", return_sequences=False, batch=5,
                     timesteps=6, input_dim=6, units=5)
    yield layer_case("sequences", return_sequences=True, batch=5,
                     timesteps=6, input_dim=6, units=5)
    # 4. return_state.
    yield layer_case("state_last", return_sequences=False, return_state=True)
    yield layer_case("state_sequences", return_sequences=True,
                     return_state=True)
    # 5. go_backwards.
    yield layer_case("backwards_last", go_backwards=True,
                     return_sequences=False, timesteps=6)
    yield layer_case("backwards_sequences", go_backwards=True,
                     return_sequences=True, timesteps=6)
    # 6. Masks (batch 6, timesteps 7; see MASK).
    mask_shape = {"batch": 6, "timesteps": 7, "mask": MASK}
    yield layer_case("mask_sequences", return_sequences=True, **mask_shape)
    yield layer_case("mask_last", return_sequences=False, **mask_shape)
    yield layer_case("mask_backwards_sequences", go_backwards=True,
                     return_sequences=True, **mask_shape)
    yield layer_case("mask_backwards_last", go_backwards=True,
                     return_sequences=False, **mask_shape)
    yield layer_case("mask_state_sequences", return_state=True,
                     return_sequences=True, **mask_shape)
    yield layer_case("mask_state_last", return_state=True,
                     return_sequences=False, **mask_shape)
    # 7. Initial state.
    yield layer_case("init_state_sequences", initial_state=True,
                     return_sequences=True, return_state=True)
    yield layer_case("init_state_last", initial_state=True,
                     return_sequences=False)
    yield layer_case("init_state_backwards", initial_state=True,
                     go_backwards=True, return_sequences=True)
    yield layer_case("init_state_mask", initial_state=True,
                     return_sequences=True, return_state=True, **mask_shape)
    yield layer_case("init_state_mask_last", initial_state=True,
                     return_sequences=False, return_state=True, **mask_shape)
    yield layer_case("init_state_mask_backwards", initial_state=True,
                     go_backwards=True, return_sequences=True,
                     return_state=True, **mask_shape)
    # 8. float64.
    yield layer_case("float64_sequences", dtype="float64", batch=8,
                     timesteps=7, input_dim=10, units=6)
    yield layer_case("float64_mask_state", dtype="float64",
                     return_sequences=True, return_state=True,
                     initial_state=True, **mask_shape)
    yield layer_case("float64_relu_backwards", dtype="float64",
                     activation="relu", go_backwards=True, scale=0.15)
    # 9. The tutorial's design examples.
    yield tutorial_case("tutorial_last", return_sequences=False)
    yield tutorial_case("tutorial_sequences", return_sequences=True)


def main():
    """Generate all cases, write the fixture file and check that it loads."""
    keras.utils.set_random_seed(SEED)
    index = []
    arrays = {}
    for case, case_arrays in all_cases():
        assert not set(case_arrays) & set(arrays), case["name"]
        for key, value in case_arrays.items():
            assert np.all(np.isfinite(value)), key
        index.append(case)
        arrays.update(case_arrays)

    arrays["index"] = np.array(json.dumps(index))
    np.savez_compressed(OUT_PATH, **arrays)

    with np.load(OUT_PATH, allow_pickle=False) as data:
        loaded = json.loads(str(data["index"]))
        assert len(loaded) == len(index)
        assert set(data.files) == set(arrays)
    size_kb = os.path.getsize(OUT_PATH) / 1024
    print(f"Wrote {len(index)} cases, {len(arrays)} arrays, "
          f"{size_kb:.1f} KB to {OUT_PATH}")


if __name__ == "__main__":
    main()
