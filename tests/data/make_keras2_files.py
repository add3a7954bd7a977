"""Write small real Keras 2 (``tf_keras``) model files and golden outputs.

This script builds small Keras 2 models with ``tf_keras`` (the Keras 2 code
that TensorFlow 2.16+ keeps as a separate package), gives them random
(seeded) weights, calls them eagerly on random inputs and saves them with
``tf_keras`` itself into ``tests/data/files/``:

``NAME.h5``
    The legacy HDF5 full-model format (``model.save("NAME.h5")``): a
    ``model_config`` JSON attribute and a ``model_weights`` group.
``NAME.weights.h5``
    For a few models: ``model.save_weights("NAME.weights.h5")``.  The
    ``.weights.h5`` suffix makes ``tf_keras`` write the *new* (Keras 3 style)
    weights layout: ``layers/<snake_class>/.../vars/<i>``.
``NAME_weights.h5``
    For the same models: ``model.save_weights("NAME_weights.h5")``, the
    legacy Keras 2 weights layout (one group per layer at the file root,
    ``layer_names`` / ``weight_names`` attributes).

Inputs and outputs (``model(x)`` in eager mode, inference mode) go to
``tests/data/files/expected_keras2.npz``.  Every saved file is loaded back
with ``tf_keras`` and checked against the recorded outputs.  The fastrnn test
suite only reads the files; it does not need TensorFlow installed.

Why Keras 2 files matter: Keras 2's ``hard_sigmoid`` is
``clip(0.2 * x + 0.5, 0, 1)`` while Keras 3's is ``relu6(x + 3) / 6``
(``clip(x / 6 + 0.5, 0, 1)``); the config only says ``"hard_sigmoid"``, so a
loader must pick the formula from the file's ``keras_version``.  Keras 2
configs also differ in shape (``batch_input_shape``, ``time_major``,
``implementation``, ``dtype`` as a plain string, ``inbound_nodes`` as nested
lists).

Last run with: Python 3.11.7, tf_keras 2.21.0, tensorflow-cpu 2.21.0,
numpy 2.4.6, h5py 3.14.0, on CPU.

How to run (from the repository root, in a virtualenv with tf_keras)::

    pip install tensorflow-cpu==2.21.0 tf_keras==2.21.0 numpy h5py
    python tests/data/make_keras2_files.py

File layout of ``expected_keras2.npz`` (``np.load(path, allow_pickle=False)``):

``index``
    0-d unicode array holding a JSON list of case dicts with keys

    ``name``
        Case name: the stem of the model files and the prefix of the array
        keys.
    ``files``
        File names written for this case, relative to ``files/``.
    ``formats``
        ``{file_name: format}`` with format ``"h5_model"`` (legacy
        full-model HDF5), ``"h5_weights_v3"`` (``NAME.weights.h5``, Keras 3
        style layout) or ``"h5_weights_legacy"`` (``NAME_weights.h5``,
        Keras 2 layout).  The weights files hold no architecture.
    ``inputs``
        Array-key suffixes of the inputs in the order of ``model.inputs``:
        ``"in0"``, ``"in1"``, ...
    ``outputs``
        Number of outputs, stored as ``out0``, ``out1``, ...
    ``dtype``
        Float dtype of the model's weights, ``"float32"`` or ``"float64"``.
    ``description``
        What the model is.
    ``keras_version``
        ``tf_keras.__version__`` used to write the files.
    ``layer_names``
        ``[layer.name for layer in model.layers]``.
    ``notes``
        Observations: warnings while saving, how the files reload.
    ``unsupported``
        Always ``false`` here.
    ``has_optimizer``
        ``true`` if the files hold optimizer variables.
    ``model_json``
        ``model.to_json()`` (Keras 2 JSON), to rebuild the architecture for
        the weights-only files.

``{name}.in0``, ``{name}.in1``, ...
    Model inputs (float, or int32 token ids with 0 = padding).
``{name}.out0``, ``{name}.out1``, ...
    Model outputs in Keras order.
"""

import json
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "files")
EXPECTED_PATH = os.path.join(OUT_DIR, "expected_keras2.npz")
SEED = 20240613

rng = np.random.default_rng(SEED)


def uniform(shape, scale, dtype="float32"):
    """Return ``uniform(-scale, scale)`` samples of a shape and dtype."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def set_random_weights(model, scale):
    """Overwrite every weight of a built model with uniform random values.

    Parameters
    ----------
    model : tf_keras.Model
        A built model.
    scale : float
        Half-width of the uniform distribution.
    """
    for layer in model.layers:
        new = [uniform(w.shape, scale, w.dtype) for w in layer.get_weights()]
        layer.set_weights(new)


def as_list(outputs):
    """Return model outputs as a flat list of NumPy arrays."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [np.asarray(o) for o in outputs]


def feed(inputs):
    """Return a single tensor or a list of tensors for ``model(...)``."""
    tensors = [tf.convert_to_tensor(x) for x in inputs]
    return tensors[0] if len(tensors) == 1 else tensors


def with_warnings(action):
    """Call ``action()`` and return the messages of the warnings it raised.

    NumPy 2 DeprecationWarnings from TensorFlow internals are dropped.
    (``tf_keras`` also logs a few messages through the ``tensorflow``
    logger, e.g. "No training configuration found in the save file"; that
    logger is silenced in :func:`main`.)
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [str(w.message).strip() for w in caught
            if not issubclass(w.category, DeprecationWarning)]


def check_reload(path, fmt, model, inputs, expected):
    """Load a saved file back with ``tf_keras`` and compare its outputs.

    Parameters
    ----------
    path : str
        The file that was written.
    fmt : str
        ``"h5_model"``, ``"h5_weights_v3"`` or ``"h5_weights_legacy"``.
    model : tf_keras.Model
        The model that was saved (cloned for the weights-only files).
    inputs : list of numpy.ndarray
        Model inputs.
    expected : list of numpy.ndarray
        Outputs of the original model.

    Returns
    -------
    list of str
        Notes on the reload.  Raises if the outputs differ.
    """
    name = os.path.basename(path)
    notes = []
    holder = {}
    if fmt == "h5_model":
        def load():
            holder["model"] = keras.models.load_model(path)
    else:
        def load():
            clone = keras.models.clone_model(model)
            clone.load_weights(path)
            holder["model"] = clone
    notes += [f"{name}: warning at reload: {msg}"
              for msg in with_warnings(load)]
    got = as_list(holder["model"](feed(inputs)))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    notes.append(f"{name}: reloaded by tf_keras, same outputs")
    return notes


def record(name, model, inputs, description, *, notes=(), scale=0.5,
           dtype="float32", weights_only=False, randomize=True):
    """Randomise weights, run the model, save its files and return the case.

    Parameters
    ----------
    name : str
        Case name; the stem of the files and the prefix of the array keys.
    model : tf_keras.Model
        A built model.
    inputs : list of numpy.ndarray
        Model inputs in the order of ``model.inputs``.
    description : str
        Short human description.
    notes : sequence of str
        Extra observations.
    scale : float
        Half-width of the uniform distribution used for the weights.
    dtype : str
        Float dtype of the model.
    weights_only : bool
        Also write ``NAME.weights.h5`` and ``NAME_weights.h5``.
    randomize : bool
        Overwrite the weights first (``False`` for the trained model).

    Returns
    -------
    case : dict
        Index entry.
    arrays : dict
        Arrays to store, keyed ``"{name}.{suffix}"``.
    """
    if randomize:
        set_random_weights(model, scale)
    outputs = as_list(model(feed(inputs)))
    again = as_list(model(feed(inputs), training=False))
    for a, b in zip(outputs, again):
        np.testing.assert_array_equal(a, b)

    notes = list(notes)
    formats = {f"{name}.h5": "h5_model"}
    if weights_only:
        formats[f"{name}.weights.h5"] = "h5_weights_v3"
        formats[f"{name}_weights.h5"] = "h5_weights_legacy"
    for file_name, fmt in formats.items():
        path = os.path.join(OUT_DIR, file_name)
        if os.path.exists(path):
            os.remove(path)
        if fmt == "h5_model":
            caught = with_warnings(lambda: model.save(path))
        else:
            caught = with_warnings(lambda: model.save_weights(path))
        notes += [f"{file_name}: warning at save: {msg}" for msg in caught]
        notes += check_reload(path, fmt, model, inputs, outputs)

    arrays = {}
    input_keys = []
    for i, x in enumerate(inputs):
        arrays[f"{name}.in{i}"] = x
        input_keys.append(f"in{i}")
    for i, out in enumerate(outputs):
        assert np.all(np.isfinite(out)), (name, i)
        assert out.dtype == np.dtype(dtype), (name, out.dtype)
        arrays[f"{name}.out{i}"] = out
    case = {
        "name": name,
        "files": list(formats),
        "formats": formats,
        "inputs": input_keys,
        "outputs": len(outputs),
        "dtype": dtype,
        "description": description,
        "keras_version": keras.__version__,
        "layer_names": [layer.name for layer in model.layers],
        "notes": notes,
        "unsupported": False,
        "has_optimizer": model.optimizer is not None,
        "model_json": model.to_json(),
    }
    return case, arrays


def padded_float_batch(batch=4, timesteps=6, features=3):
    """Return a float batch with zero-padded steps for ``Masking(0.0)``.

    Rows: full length; post-padded (length 4); pre-padded (2 zero steps);
    a step with a single zero feature only (not masked).
    """
    x = uniform((batch, timesteps, features), 1.0)
    x[1, 4:] = 0.0
    x[2, :2] = 0.0
    x[3, 3, 1] = 0.0
    return x


def token_batch(batch=5, timesteps=6, vocab=12):
    """Return zero-padded int32 token ids (0 = padding).

    Rows: full length; post-padded (length 3); pre-padded (length 2); a 0
    token in the middle; length 1.
    """
    tokens = rng.integers(1, vocab, size=(batch, timesteps)).astype("int32")
    tokens[1, 3:] = 0
    tokens[2, :4] = 0
    tokens[3, 2] = 0
    tokens[4, 1:] = 0
    return tokens


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def case_simple_rnn_relu():
    """SimpleRNN(relu) -> Dense, Keras 2 ``input_shape`` style."""
    model = keras.Sequential([
        layers.SimpleRNN(4, activation="relu", input_shape=(5, 3)),
        layers.Dense(2),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_simple_rnn_relu", model, [x],
        "Sequential([SimpleRNN(4, activation='relu', input_shape=(5, 3)), "
        "Dense(2)]); default names; the config has an InputLayer entry "
        "with batch_input_shape [null, 5, 3] and the SimpleRNN config "
        "repeats batch_input_shape", scale=0.3, weights_only=True)


def case_lstm_hard_sigmoid():
    """LSTM(recurrent_activation='hard_sigmoid') -> Dense."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3), name="series"),
        layers.LSTM(3, recurrent_activation="hard_sigmoid",
                    name="my_encoder"),
        layers.Dense(1, name="my_head"),
    ], name="lstm_hard_sigmoid")
    x = uniform((3, 5, 3), 1.0)
    # Large weights push the gate pre-activations outside [-2.5, 2.5] where
    # the two hard_sigmoid formulas differ most.
    return record(
        "k2_lstm_hard_sigmoid", model, [x],
        "Sequential: LSTM(3, recurrent_activation='hard_sigmoid') -> "
        "Dense(1); custom names. Keras 2 hard_sigmoid = clip(0.2 * x + "
        "0.5, 0, 1), unlike Keras 3's relu6(x + 3) / 6.", scale=1.5,
        weights_only=True)


def case_gru_reset_after():
    """GRU(reset_after=True) -> Dense (the tf_keras default)."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.GRU(3),
        layers.Dense(2),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_gru_reset_after", model, [x],
        "Sequential: GRU(3) (tf_keras default reset_after=True, "
        "recurrent_activation='sigmoid'; bias shape (2, 9)) -> Dense(2)")


def case_gru_reset_before():
    """GRU(reset_after=False, hard_sigmoid) -> Dense (Keras 2.2 style)."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.GRU(3, reset_after=False, recurrent_activation="hard_sigmoid"),
        layers.Dense(2),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_gru_reset_before", model, [x],
        "Sequential: GRU(3, reset_after=False, "
        "recurrent_activation='hard_sigmoid') -> Dense(2); bias shape (9,); "
        "Keras 2 hard_sigmoid", scale=1.0, weights_only=True)


def case_stacked_bidi():
    """Stacked LSTM -> Bidirectional(GRU, concat) -> Bidirectional(sum)."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.LSTM(3, return_sequences=True),
        layers.Bidirectional(layers.GRU(2, return_sequences=True),
                             merge_mode="concat"),
        layers.Bidirectional(layers.LSTM(2), merge_mode="sum"),
        layers.Dense(1),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_stacked_bidi", model, [x],
        "Sequential: LSTM(3, return_sequences) -> Bidirectional(GRU(2, "
        "return_sequences), merge_mode='concat') -> Bidirectional(LSTM(2), "
        "merge_mode='sum') -> Dense(1)", weights_only=True)


def case_masking_lstm():
    """Masking(0.0) -> LSTM(seq) -> TimeDistributed(Dense(2))."""
    model = keras.Sequential([
        keras.Input(shape=(6, 3)),
        layers.Masking(mask_value=0.0),
        layers.LSTM(3, return_sequences=True),
        layers.TimeDistributed(layers.Dense(2)),
    ])
    x = padded_float_batch()
    return record(
        "k2_masking_lstm", model, [x],
        "Sequential: Masking(0.0) -> LSTM(3, return_sequences=True) -> "
        "TimeDistributed(Dense(2)) on a zero-padded float batch. In the "
        "legacy h5 the TimeDistributed weights are "
        "time_distributed/kernel:0 (no inner Dense name).")


def case_embedding_gru():
    """Embedding(mask_zero) -> GRU -> Dropout -> Dense(sigmoid)."""
    model = keras.Sequential([
        keras.Input(shape=(6,), dtype="int32", name="tokens"),
        layers.Embedding(12, 4, mask_zero=True, name="my_embedding"),
        layers.GRU(3, name="my_gru"),
        layers.Dropout(0.3, name="my_dropout"),
        layers.Dense(1, activation="sigmoid", name="my_output"),
    ], name="embedding_gru")
    tokens = token_batch()
    return record(
        "k2_embedding_gru", model, [tokens],
        "Sequential: Embedding(12, 4, mask_zero=True) -> GRU(3) -> "
        "Dropout(0.3) -> Dense(1, sigmoid) on zero-padded int32 token ids")


def case_lstm_state():
    """Functional LSTM(return_state) -> [out, h, c]."""
    x_in = keras.Input(shape=(5, 3))
    out, h, c = layers.LSTM(3, return_state=True)(x_in)
    model = keras.Model(x_in, [out, h, c])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_lstm_state", model, [x],
        "Functional: Input((5, 3)) -> LSTM(3, return_state=True); outputs "
        "[out, h, c]")


def case_encoder_decoder():
    """Encoder-decoder: decoder LSTM gets the encoder's [h, c]."""
    enc_in = keras.Input(shape=(5, 3), name="encoder_inputs")
    _, h, c = layers.LSTM(4, return_state=True, name="encoder")(enc_in)
    dec_in = keras.Input(shape=(None, 2), name="decoder_inputs")
    seq = layers.LSTM(4, return_sequences=True, name="decoder")(
        dec_in, initial_state=[h, c])
    out = layers.Dense(3, activation="softmax", name="probs")(seq)
    model = keras.Model([enc_in, dec_in], out, name="encoder_decoder")
    enc = uniform((3, 5, 3), 1.0)
    dec = uniform((3, 4, 2), 1.0)
    return record(
        "k2_encoder_decoder", model, [enc, dec],
        "Functional: encoder LSTM(4, return_state=True) on Input((5, 3)); "
        "decoder LSTM(4, return_sequences=True) on Input((None, 2)) with "
        "initial_state=[h, c] -> Dense(3, softmax). In Keras 2 JSON the "
        "decoder's inbound node lists the initial states as extra inputs: "
        "[[dec_in,0,0,{}], [encoder,0,1,{}], [encoder,0,2,{}]].",
        weights_only=True)


def case_float64():
    """A float64 model built under ``set_floatx('float64')``."""
    old = keras.backend.floatx()
    keras.backend.set_floatx("float64")
    try:
        model = keras.Sequential([
            keras.Input(shape=(5, 3)),
            layers.SimpleRNN(3, name="rnn64"),
            layers.Dense(2, name="dense64"),
        ], name="float64_model")
        x = uniform((3, 5, 3), 1.0, "float64")
        return record(
            "k2_float64", model, [x],
            "Sequential: SimpleRNN(3) -> Dense(2) built under "
            "tf_keras.backend.set_floatx('float64'); config dtype "
            "'float64'; float64 datasets", dtype="float64")
    finally:
        keras.backend.set_floatx(old)


def case_trained():
    """A trained model that holds Adam optimizer state."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.LSTM(3, name="lstm_trained"),
        layers.Dense(1, name="dense_trained"),
    ], name="trained")
    set_random_weights(model, 0.5)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01),
                  loss="mse")
    x_train = uniform((32, 5, 3), 1.0)
    y_train = uniform((32, 1), 1.0)
    model.fit(x_train, y_train, epochs=2, batch_size=8, verbose=0)
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_trained_adam", model, [x],
        "Sequential: LSTM(3) -> Dense(1), compiled with Adam(0.01) and MSE, "
        "fit 2 epochs on random data. NAME.h5 has a training_config "
        "attribute and an optimizer_weights group (Adam/m/..., Adam/v/..., "
        "iteration:0); NAME.weights.h5 has optimizer/vars/N and "
        "metrics/...; NAME_weights.h5 has no optimizer state.",
        weights_only=True, randomize=False)


def case_batch_input_shape():
    """A first layer with ``batch_input_shape`` (fixed batch size)."""
    model = keras.Sequential([
        layers.GRU(3, batch_input_shape=(3, 5, 3), go_backwards=True,
                   return_sequences=True, name="gru_fixed_batch"),
        layers.SimpleRNN(2, name="simple_rnn"),
    ], name="fixed_batch")
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k2_batch_input_shape", model, [x],
        "Sequential: GRU(3, batch_input_shape=(3, 5, 3), go_backwards=True, "
        "return_sequences=True) -> SimpleRNN(2); the config has "
        "batch_input_shape [3, 5, 3] (a fixed batch size of 3) in the "
        "InputLayer and in the GRU config. The backwards GRU's sequence "
        "output is in reversed time order.")


def case_masked_decoder():
    """A masked decoder given initial_state: Keras 2 masks it, Keras 3 does not."""
    enc_in = keras.Input(shape=(5, 3), name="encoder_inputs")
    _, h = layers.GRU(4, return_state=True, name="encoder")(enc_in)
    dec_in = keras.Input(shape=(None, 3), name="decoder_inputs")
    masked = layers.Masking(0.0, name="padding")(dec_in)
    seq = layers.GRU(4, return_sequences=True, name="decoder")(
        masked, initial_state=[h])
    steps = layers.Dense(2, name="steps")(seq)
    summary = layers.LSTM(2, name="summary")(seq)
    model = keras.Model([enc_in, dec_in], [steps, summary], name="masked_decoder")
    enc = uniform((3, 5, 3), 1.0)
    dec = uniform((3, 4, 3), 1.0)
    dec[1, 2:] = 0.0   # padded at the end
    dec[2, :2] = 0.0   # at the start
    return record(
        "k2_masked_decoder", model, [enc, dec],
        "Functional: encoder GRU(4, return_state=True); Masking(0.0) -> "
        "decoder GRU(4, return_sequences=True) with initial_state=[h] -> "
        "[Dense(2), LSTM(2)]. Keras 2 gives the decoder the mask (its call's "
        "first input's); Keras 3 gives a call with initial_state tensors none.")


def case_explicit_mask():
    """An explicit mask= input: Keras 2 records it in the node's kwargs."""
    seq_in = keras.Input(shape=(4, 3), name="sequences")
    mask_in = keras.Input(shape=(4,), dtype="bool", name="mask")
    seq = layers.GRU(4, return_sequences=True, name="masked_gru")(
        seq_in, mask=mask_in)
    steps = layers.Dense(2, name="steps")(seq)
    summary = layers.LSTM(2, name="summary")(seq)   # masked by mask_in too
    model = keras.Model([seq_in, mask_in], [steps, summary],
                        name="explicit_mask")
    x = uniform((3, 4, 3), 1.0)
    mask = np.ones((3, 4), bool)
    mask[1, 2:] = False
    mask[2, :2] = False
    return record(
        "k2_explicit_mask", model, [x, mask],
        "Functional: GRU(4, return_sequences=True)(sequences, mask=mask) "
        "with a boolean mask input -> [Dense(2), LSTM(2)]; the node lists "
        "[[sequences, 0, 0, {'mask': ['mask', 0, 0]}]]. The LSTM after it "
        "is masked by the same mask.")


def case_joined_masks():
    """Two differently masked sequences joined: Keras 2 keeps a step where all inputs do."""
    a_in = keras.Input(shape=(4, 3), name="a")
    b_in = keras.Input(shape=(4, 3), name="b")
    a = layers.LSTM(2, return_sequences=True, name="lstm_a")(
        layers.Masking(0.0, name="mask_a")(a_in))
    b = layers.GRU(2, return_sequences=True, name="gru_b")(
        layers.Masking(0.0, name="mask_b")(b_in))
    joined = layers.Concatenate(name="joined")([a, b])
    out = layers.SimpleRNN(2, name="after")(joined)
    model = keras.Model([a_in, b_in], out, name="joined_masks")
    xa, xb = uniform((2, 4, 3), 1.0), uniform((2, 4, 3), 1.0)
    xa[0, 2:] = 0.0
    xb[1, :2] = 0.0
    return record(
        "k2_joined_masks", model, [xa, xb],
        "Functional: Masking -> LSTM and Masking -> GRU on two inputs, "
        "padded differently, -> Concatenate -> SimpleRNN(2). Keras 2's "
        "Concatenate keeps a step where every joined mask does (all); "
        "Keras 3's where any does.")


CASES = [
    case_simple_rnn_relu,
    case_lstm_hard_sigmoid,
    case_gru_reset_after,
    case_gru_reset_before,
    case_stacked_bidi,
    case_masking_lstm,
    case_embedding_gru,
    case_lstm_state,
    case_encoder_decoder,
    case_float64,
    case_trained,
    case_batch_input_shape,
    case_masked_decoder,
    case_explicit_mask,
    case_joined_masks,
]


def main():
    """Write all model files and ``expected_keras2.npz``; check it loads."""
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)
    index = []
    arrays = {}
    for make in CASES:
        case, case_arrays = make()
        assert not set(case_arrays) & set(arrays), case["name"]
        index.append(case)
        arrays.update(case_arrays)
        sizes = ", ".join(
            f"{f} {os.path.getsize(os.path.join(OUT_DIR, f)) // 1024} KB"
            for f in case["files"])
        print(f"  {case['name']}: {sizes}")
        for note in case["notes"]:
            print(f"      {note}")

    arrays["index"] = np.array(json.dumps(index))
    np.savez_compressed(EXPECTED_PATH, **arrays)

    with np.load(EXPECTED_PATH, allow_pickle=False) as data:
        loaded = json.loads(str(data["index"]))
        assert len(loaded) == len(index)
        assert set(data.files) == set(arrays)
    size_kb = os.path.getsize(EXPECTED_PATH) / 1024
    print(f"Wrote {len(index)} cases, {len(arrays)} arrays, "
          f"{size_kb:.1f} KB to {EXPECTED_PATH}")


if __name__ == "__main__":
    main()
