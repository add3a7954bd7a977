"""Generate golden LSTM, GRU, Bidirectional and model outputs with Keras 3.

This script builds ``keras.layers.LSTM``, ``keras.layers.GRU`` and
``keras.layers.Bidirectional`` layers, plus a few small Sequential and
functional models, gives them random (seeded) weights, calls them eagerly on
random inputs and stores inputs, weights and outputs in ``keras_models.npz``
next to this file.  The fastrnn test suite only reads that file; it does not
need Keras installed.

Last run with: Python 3.11.7, keras 3.15.1, tensorflow-cpu 2.21.0,
numpy 2.4.6, ``KERAS_BACKEND=tensorflow``, on CPU.

How to run (from the repository root, ideally in a separate virtualenv)::

    pip install tensorflow-cpu keras numpy
    python tests/data/make_keras_model_fixtures.py

File layout (``np.load(path, allow_pickle=False)``):

``index``
    0-d unicode array holding a JSON list of case dicts with keys

    ``name``
        Case name, the prefix of the case's array keys.
    ``kind``
        ``"layer"`` (one RNN / Bidirectional layer called directly) or
        ``"model"`` (a Sequential or functional model).
    ``dtype``
        ``"float32"`` or ``"float64"``.
    ``inputs``
        Array-key suffixes of the inputs, in call order.  Layer cases:
        ``"x"``, optionally ``"mask"`` (bool ``(batch, timesteps)``) and
        ``"initial_state0"``, ``"initial_state1"``, ...  Model cases:
        ``"in0"``, ``"in1"``, ... in the order of ``model.inputs``.
    ``outputs``
        Number of outputs, stored as ``out0``, ``out1``, ...
    ``weights``
        ``{layer_name: number_of_weight_arrays}`` for every layer with
        weights.
    ``config``
        Layer cases: the constructor arguments that matter (``class``,
        ``units``, activations, flags; for Bidirectional ``merge_mode`` and
        the configs of the forward and backward layers).  Model cases:
        ``description``, ``notes`` (Keras warnings / observations) and
        ``model_json`` (``model.to_json()``).
    ``output_shapes``
        Layer cases: Keras's symbolic output shapes (``null`` = unknown).
    ``summary``
        Model cases only: ``[layer_name, class_name, output_shape,
        param_count]`` for each entry of ``model.layers``; ``output_shape``
        is a list of shapes for layers with several outputs.
    ``count_params``, ``keras_version``

``{name}.x``, ``{name}.mask``, ``{name}.initial_state0``, ...
    Layer-case inputs.
``{name}.in0``, ``{name}.in1``, ...
    Model-case inputs (float, or int32 token ids with 0 = padding).
``{name}.out0``, ``{name}.out1``, ...
    Outputs in Keras order.  Layer with ``return_state=True``:
    ``[output, *states]`` (LSTM states are ``h, c``).  Bidirectional with
    ``return_state=True``: ``[merged_output, *forward_states,
    *backward_states]``; with ``merge_mode=None`` the merged output is two
    entries ``[forward_output, backward_output]``.
``{name}.w.{layer_name}.{i}``
    ``layer.get_weights()[i]``.  For Bidirectional this is the weights of
    the Bidirectional layer itself: forward weights, then backward weights.
"""

import json
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_PATH = os.path.join(HERE, "keras_models.npz")
SEED = 20240607

ACTIVATIONS = [
    "tanh", "relu", "sigmoid", "hard_sigmoid", "linear", "elu", "selu",
    "softsign", "softplus", "silu", "gelu", "exponential",
]
# Activations that are unbounded above get smaller weights so that values
# stay finite and moderate over several timesteps.
UNBOUNDED = {"relu", "linear", "elu", "selu", "softplus", "silu", "gelu",
             "exponential"}

# Mask of shape (6, 7): True = step is used, False = step is masked.
MASK = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],  # nothing masked
        [0, 0, 1, 1, 1, 1, 1],  # leading steps masked
        [1, 1, 0, 0, 1, 1, 1],  # gap in the middle
        [1, 1, 1, 1, 0, 0, 0],  # trailing steps masked
        [0, 0, 0, 0, 0, 0, 0],  # fully masked row
        [0, 1, 0, 1, 1, 0, 1],  # scattered
    ],
    dtype=bool,
)
MASK_SHAPE = {"batch": 6, "timesteps": 7, "mask": MASK}

rng = np.random.default_rng(SEED)


def uniform(shape, scale, dtype):
    """Return ``uniform(-scale, scale)`` samples of a shape and dtype."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def set_random_weights(layer, scale):
    """Overwrite every weight of a built layer with uniform random values.

    Parameters
    ----------
    layer : keras.layers.Layer
        A built layer.
    scale : float
        Half-width of the uniform distribution.
    """
    new = [uniform(w.shape, scale, w.dtype) for w in layer.get_weights()]
    layer.set_weights(new)


def as_list(outputs):
    """Return layer or model outputs as a flat list of NumPy arrays."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def shape_to_list(shape):
    """Convert a Keras shape tuple to a JSON-friendly list."""
    return [None if d is None else int(d) for d in shape]


def symbolic_shapes(outputs):
    """Return the shape of a symbolic tensor, or a list of shapes."""
    if isinstance(outputs, (list, tuple)):
        return [shape_to_list(o.shape) for o in outputs]
    return shape_to_list(outputs.shape)


def weight_arrays(name, layer_list):
    """Return ``({key: array}, {layer_name: count})`` for weighted layers."""
    arrays, counts = {}, {}
    for layer in layer_list:
        weights = layer.get_weights()
        if not weights:
            continue
        counts[layer.name] = len(weights)
        for i, w in enumerate(weights):
            arrays[f"{name}.w.{layer.name}.{i}"] = w
    return arrays, counts


def rnn_config(layer):
    """Return the constructor arguments of an RNN layer that matter."""
    cfg = layer.get_config()
    keys = ["name", "units", "activation", "recurrent_activation", "use_bias",
            "return_sequences", "return_state", "go_backwards",
            "reset_after", "zero_output_for_mask"]
    out = {"class": layer.__class__.__name__}
    out.update({k: cfg[k] for k in keys if k in cfg})
    return out


def layer_config(layer):
    """Return the stored config of an RNN or Bidirectional layer."""
    if isinstance(layer, layers.Bidirectional):
        return {
            "class": "Bidirectional",
            "name": layer.name,
            "merge_mode": layer.merge_mode,
            "return_sequences": layer.return_sequences,
            "return_state": layer.return_state,
            "forward_layer": rnn_config(layer.forward_layer),
            "backward_layer": rnn_config(layer.backward_layer),
        }
    return rnn_config(layer)


def record_layer_case(name, layer, *, batch, timesteps, input_dim,
                      state_shapes=(), mask=None, scale=0.5, dtype="float32"):
    """Build, run and record one layer case.

    Parameters
    ----------
    name : str
        Case name; used as the prefix of the array keys.
    layer : keras.layers.Layer
        An unbuilt RNN or Bidirectional layer.
    batch, timesteps, input_dim : int
        Input shape.
    state_shapes : sequence of tuple
        Shapes ``(units,)`` of the initial states to pass; empty for none.
    mask : numpy.ndarray of bool, optional
        Mask of shape ``(batch, timesteps)``.
    scale : float
        Half-width of the uniform distribution used for the weights.
    dtype : str
        Layer and input dtype.

    Returns
    -------
    case : dict
        Index entry for this case.
    arrays : dict
        Arrays to store, keyed ``"{name}.{suffix}"``.
    """
    # A symbolic call builds the layer and gives Keras's output shapes.
    symbolic = layer(keras.Input(shape=(timesteps, input_dim), dtype=dtype))
    set_random_weights(layer, scale)

    x = uniform((batch, timesteps, input_dim), 1.0, dtype)
    arrays = {f"{name}.x": x}
    inputs = ["x"]
    kwargs = {}
    if mask is not None:
        assert mask.shape == (batch, timesteps)
        arrays[f"{name}.mask"] = mask
        inputs.append("mask")
        kwargs["mask"] = mask
    if state_shapes:
        states = [uniform((batch,) + tuple(s), 1.0, dtype)
                  for s in state_shapes]
        for i, s in enumerate(states):
            arrays[f"{name}.initial_state{i}"] = s
            inputs.append(f"initial_state{i}")
        kwargs["initial_state"] = states

    outputs = as_list(layer(x, **kwargs))
    for i, out in enumerate(outputs):
        arrays[f"{name}.out{i}"] = out
    w_arrays, w_counts = weight_arrays(name, [layer])
    arrays.update(w_arrays)

    case = {
        "name": name,
        "kind": "layer",
        "dtype": dtype,
        "inputs": inputs,
        "outputs": len(outputs),
        "weights": w_counts,
        "config": layer_config(layer),
        "output_shapes": symbolic_shapes(symbolic),
        "count_params": int(layer.count_params()),
        "keras_version": keras.__version__,
    }
    return case, arrays


def rnn_case(name, cls, *, batch=3, timesteps=5, input_dim=3, units=3,
             dtype="float32", mask=None, initial_state=False, scale=None,
             **layer_kwargs):
    """Record one plain LSTM / GRU case.

    Parameters
    ----------
    name : str
        Case name.
    cls : type
        ``keras.layers.LSTM`` or ``keras.layers.GRU``.
    batch, timesteps, input_dim, units : int
        Shapes.
    dtype : str
        Layer and input dtype.
    mask : numpy.ndarray of bool, optional
        Mask of shape ``(batch, timesteps)``.
    initial_state : bool
        Pass random initial states (``[h, c]`` for LSTM, ``[h]`` for GRU).
    scale : float, optional
        Weight scale; default 0.2 if an activation is unbounded, else 0.5.
    **layer_kwargs
        Passed to the layer constructor.

    Returns
    -------
    case, arrays
        See :func:`record_layer_case`.
    """
    if scale is None:
        acts = {layer_kwargs.get("activation"),
                layer_kwargs.get("recurrent_activation")}
        scale = 0.2 if acts & UNBOUNDED else 0.5
    layer = cls(units, dtype=dtype, name=cls.__name__.lower(), **layer_kwargs)
    n_states = 2 if cls is layers.LSTM else 1
    state_shapes = [(units,)] * n_states if initial_state else ()
    return record_layer_case(name, layer, batch=batch, timesteps=timesteps,
                             input_dim=input_dim, state_shapes=state_shapes,
                             mask=mask, scale=scale, dtype=dtype)


def rnn_cases(prefix, cls, **common):
    """Yield the common list of LSTM / GRU layer cases.

    Parameters
    ----------
    prefix : str
        Prefix of the case names, e.g. ``"lstm_"``.
    cls : type
        ``keras.layers.LSTM`` or ``keras.layers.GRU``.
    **common
        Extra constructor arguments for every case (``reset_after``).
    """
    def case(suffix, **kwargs):
        return rnn_case(prefix + suffix, cls, **common, **kwargs)

    yield case("default")
    yield case("sequences", return_sequences=True, batch=4, timesteps=6,
               input_dim=5, units=4)
    yield case("state_last", return_state=True)
    yield case("state_sequences", return_sequences=True, return_state=True)
    yield case("backwards_last", go_backwards=True, timesteps=6)
    yield case("backwards_sequences", go_backwards=True,
               return_sequences=True, timesteps=6)
    yield case("no_bias", use_bias=False, return_sequences=True, batch=3,
               input_dim=5)
    yield case("mask_sequences", return_sequences=True, **MASK_SHAPE)
    yield case("mask_last", **MASK_SHAPE)
    yield case("mask_backwards_sequences", go_backwards=True,
               return_sequences=True, **MASK_SHAPE)
    yield case("mask_backwards_last", go_backwards=True, **MASK_SHAPE)
    yield case("mask_state_sequences", return_sequences=True,
               return_state=True, **MASK_SHAPE)
    yield case("mask_state_last", return_state=True, **MASK_SHAPE)
    yield case("init_state", initial_state=True, return_sequences=True,
               return_state=True)
    yield case("init_state_mask", initial_state=True, return_sequences=True,
               return_state=True, **MASK_SHAPE)
    yield case("init_state_backwards", initial_state=True, go_backwards=True,
               return_sequences=True, return_state=True)
    yield case("float64_sequences", dtype="float64", return_sequences=True,
               batch=3, timesteps=5, input_dim=4, units=4)
    yield case("float64_mask_state", dtype="float64", return_sequences=True,
               return_state=True, initial_state=True, **MASK_SHAPE)
    # Every activation once as `activation` and once as
    # `recurrent_activation` (the recurrent list is shifted by 5).
    n = len(ACTIVATIONS)
    for i, act in enumerate(ACTIVATIONS):
        rec = ACTIVATIONS[(i + 5) % n]
        yield case(f"act_{act}_rec_{rec}", activation=act,
                   recurrent_activation=rec, return_sequences=True,
                   batch=2, timesteps=4, input_dim=3, units=3)


def bidi_case(name, inner, *, merge_mode="concat", return_sequences=True,
              return_state=False, mask=None, initial_state=False,
              backward_layer=None, batch=3, timesteps=5, input_dim=3,
              units=3, dtype="float32"):
    """Record one Bidirectional layer case.

    Parameters
    ----------
    name : str
        Case name.
    inner : str
        ``"LSTM"``, ``"GRU"`` or ``"SimpleRNN"``: class of the wrapped layer.
    merge_mode : str or None
        Passed to ``keras.layers.Bidirectional``.
    return_sequences, return_state : bool
        Passed to the wrapped layer.
    mask : numpy.ndarray of bool, optional
        Mask of shape ``(batch, timesteps)``.
    initial_state : bool
        Pass random initial states (forward states, then backward states).
    backward_layer : keras.layers.Layer, optional
        Explicit backward layer.
    batch, timesteps, input_dim, units : int
        Shapes.
    dtype : str
        Layer and input dtype.

    Returns
    -------
    case, arrays
        See :func:`record_layer_case`.
    """
    forward = getattr(layers, inner)(
        units, return_sequences=return_sequences, return_state=return_state,
        name=inner.lower(), dtype=dtype)
    bidi = layers.Bidirectional(forward, merge_mode=merge_mode,
                                backward_layer=backward_layer, name="bidi",
                                dtype=dtype)
    n_states = 2 if inner == "LSTM" else 1
    state_shapes = [(units,)] * (2 * n_states) if initial_state else ()
    return record_layer_case(name, bidi, batch=batch, timesteps=timesteps,
                             input_dim=input_dim, state_shapes=state_shapes,
                             mask=mask, dtype=dtype)


def bidi_cases():
    """Yield the Bidirectional layer cases."""
    for inner in ("LSTM", "GRU", "SimpleRNN"):
        p = f"bidi_{inner.lower()}_"
        # Merging does not depend on the inner class; SimpleRNN skips
        # "ave" and "mul" to keep the file small.
        merges = ("concat", "sum", None) if inner == "SimpleRNN" else (
            "concat", "sum", "ave", "mul", None)
        for merge in merges:
            yield bidi_case(f"{p}{merge}_sequences".lower(), inner,
                            merge_mode=merge)
        yield bidi_case(f"{p}concat_last", inner, return_sequences=False)
        yield bidi_case(f"{p}none_last", inner, merge_mode=None,
                        return_sequences=False)
        yield bidi_case(f"{p}concat_mask_sequences", inner, **MASK_SHAPE)
        yield bidi_case(f"{p}concat_mask_last", inner,
                        return_sequences=False, **MASK_SHAPE)
        yield bidi_case(f"{p}none_mask_sequences", inner, merge_mode=None,
                        **MASK_SHAPE)
    for inner in ("LSTM", "GRU"):
        p = f"bidi_{inner.lower()}_"
        yield bidi_case(f"{p}state_sequences", inner, return_state=True)
        yield bidi_case(f"{p}state_last", inner, return_sequences=False,
                        return_state=True)
        yield bidi_case(f"{p}state_mask_sequences", inner, return_state=True,
                        **MASK_SHAPE)
        yield bidi_case(f"{p}state_mask_last", inner, return_sequences=False,
                        return_state=True, **MASK_SHAPE)
        yield bidi_case(f"{p}init_state", inner, return_state=True,
                        initial_state=True)
    yield bidi_case("bidi_lstm_state_none_sequences", "LSTM", merge_mode=None,
                    return_state=True)
    # Explicit backward layer of a different class (GRU backwards under an
    # LSTM forward layer); Keras only requires matching go_backwards (must
    # differ), return_sequences, return_state and stateful.
    backward = layers.GRU(3, go_backwards=True, return_sequences=True,
                          name="backward_gru")
    yield bidi_case("bidi_lstm_gru_backward_layer", "LSTM",
                    backward_layer=backward)
    backward = layers.GRU(3, go_backwards=True, return_sequences=True,
                          name="backward_gru")
    yield bidi_case("bidi_lstm_gru_backward_layer_mask", "LSTM",
                    backward_layer=backward, **MASK_SHAPE)
    yield bidi_case("bidi_lstm_float64_mask", "LSTM", dtype="float64",
                    **MASK_SHAPE)
    yield bidi_case("bidi_gru_float64_state", "GRU", dtype="float64",
                    return_state=True, merge_mode="ave")


# ---------------------------------------------------------------------------
# Model cases
# ---------------------------------------------------------------------------

def layer_summary(model):
    """Return ``[name, class, output_shape, params]`` for ``model.layers``."""
    rows = []
    for layer in model.layers:
        rows.append([layer.name, layer.__class__.__name__,
                     symbolic_shapes(layer.output),
                     int(layer.count_params())])
    return rows


def record_model_case(name, model, inputs, description, notes=(),
                      scale=0.5, dtype="float32"):
    """Randomise the weights of a model, run it and record the case.

    Parameters
    ----------
    name : str
        Case name.
    model : keras.Model
        A built model.
    inputs : list of numpy.ndarray
        Model inputs in the order of ``model.inputs``.
    description : str
        Short human description stored in the config.
    notes : sequence of str
        Observations stored in the config (Keras warnings are added).
    scale : float
        Half-width of the uniform distribution used for the weights.
    dtype : str
        Float dtype of the model.

    Returns
    -------
    case, arrays
        Index entry and arrays, as for the layer cases.
    """
    for layer in model.layers:
        set_random_weights(layer, scale)
    arrays = {}
    input_keys = []
    for i, x in enumerate(inputs):
        arrays[f"{name}.in{i}"] = x
        input_keys.append(f"in{i}")
    feed = inputs[0] if len(inputs) == 1 else list(inputs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outputs = as_list(model(feed))
        # The noise / dropout layers must be identities at inference.
        again = as_list(model(feed, training=False))
    for a, b in zip(outputs, again):
        np.testing.assert_array_equal(a, b)
    notes = list(notes) + [f"Keras warning during call: {w.message}"
                           for w in caught]
    for i, out in enumerate(outputs):
        arrays[f"{name}.out{i}"] = out
    w_arrays, w_counts = weight_arrays(name, model.layers)
    arrays.update(w_arrays)
    case = {
        "name": name,
        "kind": "model",
        "dtype": dtype,
        "inputs": input_keys,
        "outputs": len(outputs),
        "weights": w_counts,
        "config": {
            "description": description,
            "notes": notes,
            "model_json": model.to_json(),
        },
        "summary": layer_summary(model),
        "count_params": int(model.count_params()),
        "keras_version": keras.__version__,
    }
    return case, arrays


def build_with_warnings(build):
    """Call ``build()`` and return ``(model, notes)`` with Keras warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build()
    notes = [f"Keras warning at build: {w.message}" for w in caught]
    return model, notes


def token_batch():
    """Return zero-padded int32 token ids of shape (6, 7), vocabulary 10.

    Rows: full length; post-padded (length 4); pre-padded (length 3, the
    default of ``keras.utils.pad_sequences``); a 0 token in the middle;
    length 1; fully padded (all zeros).
    """
    tokens = rng.integers(1, 10, size=(6, 7)).astype("int32")
    tokens[1, 4:] = 0
    tokens[2, :4] = 0
    tokens[3, 3] = 0
    tokens[4, 1:] = 0
    tokens[5, :] = 0
    return tokens


def model_stacked():
    """a. LSTM -> GRU -> SimpleRNN -> Dense, Sequential."""
    def build():
        return keras.Sequential([
            keras.Input(shape=(5, 3), name="x"),
            layers.LSTM(4, return_sequences=True, name="lstm"),
            layers.GRU(3, return_sequences=True, name="gru"),
            layers.SimpleRNN(4, name="simple_rnn"),
            layers.Dense(2, name="dense"),
        ], name="stacked")
    model, notes = build_with_warnings(build)
    x = uniform((4, 5, 3), 1.0, "float32")
    return record_model_case(
        "model_stacked", model, [x],
        "Sequential: LSTM(4, return_sequences) -> GRU(3, return_sequences)"
        " -> SimpleRNN(4) -> Dense(2)", notes)


def model_embedding_lstm():
    """b. Embedding(mask_zero) -> LSTM -> Dense(sigmoid)."""
    def build():
        return keras.Sequential([
            keras.Input(shape=(7,), dtype="int32", name="tokens"),
            layers.Embedding(10, 4, mask_zero=True, name="embedding"),
            layers.LSTM(3, name="lstm"),
            layers.Dense(1, activation="sigmoid", name="dense"),
        ], name="embedding_lstm")
    model, notes = build_with_warnings(build)
    tokens = token_batch()
    notes.append(
        "Row 5 is fully padded (all zeros): Keras gives the LSTM's initial "
        "state (zeros) as its output, so the model output is "
        "sigmoid(dense bias); no NaN, no error.")
    return record_model_case(
        "model_embedding_lstm", model, [tokens],
        "Sequential: Embedding(10, 4, mask_zero=True) -> LSTM(3) -> "
        "Dense(1, sigmoid) on zero-padded token ids (post-, pre-, "
        "middle-zero, length-1 and fully padded rows)", notes)


def model_masking_gru():
    """c. Masking -> GRU(return_sequences) -> TimeDistributed(Dense)."""
    def build():
        return keras.Sequential([
            keras.Input(shape=(6, 3), name="x"),
            layers.Masking(mask_value=0.0, name="masking"),
            layers.GRU(4, return_sequences=True, name="gru"),
            layers.TimeDistributed(layers.Dense(3, name="dense"),
                                   name="time_distributed"),
        ], name="masking_gru")
    model, notes = build_with_warnings(build)
    x = uniform((5, 6, 3), 1.0, "float32")
    x[1, 4:] = 0.0          # post-padded, length 4
    x[2, :2] = 0.0          # pre-padded
    x[3, 2] = 0.0           # a zero step in the middle
    x[3, 4, 1] = 0.0        # one zero feature only: this step is NOT masked
    x[4, 1:] = 0.0          # length 1
    return record_model_case(
        "model_masking_gru", model, [x],
        "Sequential: Masking(0.0) -> GRU(4, return_sequences) -> "
        "TimeDistributed(Dense(3)) on a zero-padded float batch", notes)


def model_embedding_bidi():
    """d. Embedding(mask_zero) -> Bidirectional(LSTM) -> Bidirectional(GRU)."""
    def build():
        return keras.Sequential([
            keras.Input(shape=(7,), dtype="int32", name="tokens"),
            layers.Embedding(10, 4, mask_zero=True, name="embedding"),
            layers.Bidirectional(
                layers.LSTM(3, return_sequences=True, name="lstm"),
                merge_mode="concat", name="bidi_lstm"),
            layers.Bidirectional(layers.GRU(3, name="gru"),
                                 name="bidi_gru"),
            layers.Dense(2, name="dense"),
        ], name="embedding_bidi")
    model, notes = build_with_warnings(build)
    tokens = token_batch()
    return record_model_case(
        "model_embedding_bidi", model, [tokens],
        "Sequential: Embedding(10, 4, mask_zero=True) -> "
        "Bidirectional(LSTM(3, return_sequences), concat) -> "
        "Bidirectional(GRU(3)) -> Dense(2); the mask flows through both "
        "Bidirectional layers", notes)


def model_encoder_decoder():
    """e. Functional encoder-decoder with LSTM states as initial state."""
    def build():
        enc_in = keras.Input(shape=(5, 3), name="encoder_inputs")
        _, h, c = layers.LSTM(4, return_state=True, name="encoder")(enc_in)
        dec_in = keras.Input(shape=(4, 2), name="decoder_inputs")
        seq = layers.LSTM(4, return_sequences=True, name="decoder")(
            dec_in, initial_state=[h, c])
        out = layers.Dense(3, name="dense")(seq)
        out = layers.Activation("sigmoid", name="sigmoid")(out)
        return keras.Model([enc_in, dec_in], out, name="encoder_decoder")
    model, notes = build_with_warnings(build)
    enc = uniform((3, 5, 3), 1.0, "float32")
    dec = uniform((3, 4, 2), 1.0, "float32")
    return record_model_case(
        "model_encoder_decoder", model, [enc, dec],
        "Functional: encoder LSTM(4, return_state) on Input((5, 3)); "
        "decoder LSTM(4, return_sequences) on Input((4, 2)) with "
        "initial_state=[h, c] -> Dense(3) -> Activation(sigmoid)", notes)


def model_gru_state_outputs():
    """f1. Functional GRU model returning ``[sequence, state]``."""
    def build():
        x = keras.Input(shape=(5, 3), name="x")
        seq, state = layers.GRU(4, return_sequences=True, return_state=True,
                                name="gru")(x)
        return keras.Model(x, [seq, state], name="gru_state")
    model, notes = build_with_warnings(build)
    x = uniform((3, 5, 3), 1.0, "float32")
    return record_model_case(
        "model_gru_state_outputs", model, [x],
        "Functional: GRU(4, return_sequences, return_state); outputs "
        "[sequence, final state]", notes)


def model_lstm_state_outputs():
    """f2. Functional LSTM model returning ``[out, h, c]``."""
    def build():
        x = keras.Input(shape=(5, 3), name="x")
        out, h, c = layers.LSTM(4, return_state=True, name="lstm")(x)
        return keras.Model(x, [out, h, c], name="lstm_state")
    model, notes = build_with_warnings(build)
    x = uniform((3, 5, 3), 1.0, "float32")
    return record_model_case(
        "model_lstm_state_outputs", model, [x],
        "Functional: LSTM(4, return_state); outputs [out, h, c]", notes)


def model_small_layers():
    """g. Dropout / noise / Flatten / Reshape / RepeatVector / Activation."""
    T = 5

    def build():
        return keras.Sequential([
            keras.Input(shape=(T, 3), name="x"),
            layers.Dropout(0.3, name="dropout"),
            layers.SpatialDropout1D(0.3, name="spatial_dropout"),
            layers.GaussianNoise(0.5, name="gaussian_noise"),
            layers.GaussianDropout(0.3, name="gaussian_dropout"),
            layers.LSTM(4, return_sequences=True, name="lstm"),
            layers.Flatten(name="flatten"),
            layers.Dense(T * 2, name="dense"),
            layers.Reshape((T, 2), name="reshape"),
            layers.GRU(3, name="gru"),
            layers.RepeatVector(3, name="repeat"),
            layers.SimpleRNN(2, return_sequences=True, name="simple_rnn"),
            layers.Activation("tanh", name="tanh"),
        ], name="small_layers")
    model, notes = build_with_warnings(build)
    x = uniform((4, T, 3), 1.0, "float32")
    return record_model_case(
        "model_small_layers", model, [x],
        "Sequential: Dropout -> SpatialDropout1D -> GaussianNoise -> "
        "GaussianDropout (identities at inference) -> LSTM(4, "
        "return_sequences) -> Flatten -> Dense(10) -> Reshape((5, 2)) -> "
        "GRU(3) -> RepeatVector(3) -> SimpleRNN(2, return_sequences) -> "
        "Activation(tanh)", notes)


def model_merges():
    """h. Functional model with Concatenate / Add / Multiply / Average."""
    def build():
        a_in = keras.Input(shape=(5, 3), name="a_in")
        b_in = keras.Input(shape=(5, 3), name="b_in")
        a = layers.LSTM(3, return_sequences=True, name="lstm_a")(a_in)
        b = layers.LSTM(3, return_sequences=True, name="lstm_b")(b_in)
        concat = layers.Concatenate(name="concat")([a, b])
        s = layers.Add(name="add")([a, b])
        m = layers.Multiply(name="multiply")([a, b])
        v = layers.Average(name="average")([a, b])
        merged = layers.Concatenate(name="concat_all")([concat, s, m, v])
        out = layers.Dense(2, name="dense")(merged)
        return keras.Model([a_in, b_in], out, name="merges")
    model, notes = build_with_warnings(build)
    a = uniform((3, 5, 3), 1.0, "float32")
    b = uniform((3, 5, 3), 1.0, "float32")
    return record_model_case(
        "model_merges", model, [a, b],
        "Functional: two inputs -> LSTM(3, return_sequences) each -> "
        "Concatenate, Add, Multiply, Average -> Concatenate -> Dense(2)",
        notes)


def model_tutorial():
    """i. The tutorial: ``Sequential([SimpleRNN(3, input_shape=(2, 10))])``."""
    def build():
        return keras.Sequential(
            [layers.SimpleRNN(3, input_shape=(2, 10), name="simple_rnn")],
            name="tutorial")
    model, notes = build_with_warnings(build)
    x = uniform((8, 2, 10), 1.0, "float32")
    return record_model_case(
        "model_tutorial", model, [x],
        "Sequential([SimpleRNN(3, input_shape=(2, 10))]), the Keras 2 "
        "tutorial style (42 params, output (None, 3))", notes)


MODEL_CASES = [
    model_stacked, model_embedding_lstm, model_masking_gru,
    model_embedding_bidi, model_encoder_decoder, model_gru_state_outputs,
    model_lstm_state_outputs, model_small_layers, model_merges,
    model_tutorial,
]


def all_cases():
    """Yield ``(case, arrays)`` for every fixture case."""
    yield from rnn_cases("lstm_", layers.LSTM)
    yield from rnn_cases("gru_after_", layers.GRU, reset_after=True)
    yield from rnn_cases("gru_before_", layers.GRU, reset_after=False)
    yield from bidi_cases()
    for make in MODEL_CASES:
        yield make()


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
        print(f"  {case['name']}")

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
