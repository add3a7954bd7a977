"""Write small real Keras 3 model files and their golden outputs.

This script builds small Keras 3 models (SimpleRNN, LSTM, GRU,
Bidirectional, Masking, Embedding, TimeDistributed, Dropout, Dense, ...),
gives them random (seeded) weights, calls them eagerly on random inputs and
saves every model with Keras itself into ``tests/data/files/``:

``NAME.keras``
    The Keras 3 zip format (``model.save("NAME.keras")``): members
    ``metadata.json``, ``config.json`` and ``model.weights.h5``.
``NAME.h5``
    The legacy HDF5 full-model format, which Keras 3 still writes (with a
    warning) for ``model.save("NAME.h5")``.
``NAME.weights.h5``
    For a few models only: a weights-only file (``model.save_weights``).

Inputs and outputs (``model(x)`` in eager mode, inference mode) go to
``tests/data/files/expected_keras3.npz``.  Every saved file is loaded back
with Keras and checked against the recorded outputs.  The fastrnn test suite
only reads the files; it does not need Keras installed.

Last run with: Python 3.11.7, keras 3.15.1, tensorflow-cpu 2.21.0,
numpy 2.4.6, h5py 3.14.0, ``KERAS_BACKEND=tensorflow``, on CPU.

How to run (from the repository root, in a virtualenv with Keras 3)::

    pip install tensorflow-cpu==2.21.0 keras==3.15.1 numpy h5py
    KERAS_BACKEND=tensorflow python tests/data/make_keras_files.py

File layout of ``expected_keras3.npz`` (``np.load(path, allow_pickle=False)``):

``index``
    0-d unicode array holding a JSON list of case dicts with keys

    ``name``
        Case name: the stem of the model files and the prefix of the array
        keys.
    ``files``
        File names written for this case, relative to ``files/``.
    ``formats``
        ``{file_name: format}`` with format ``"keras_zip"`` (``.keras``),
        ``"h5_model"`` (legacy full-model HDF5) or ``"h5_weights"``
        (Keras 3 weights-only HDF5, no architecture inside).
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
        ``keras.__version__`` used to write the files.
    ``layer_names``
        ``[layer.name for layer in model.layers]`` (Sequential models do not
        list their ``InputLayer`` there; functional models do).
    ``notes``
        Observations: warnings Keras printed while saving, what the files
        contain (optimizer state, ...), how they reload in Keras.
    ``unsupported``
        ``true`` for models that fastrnn must refuse with a clear error
        (Conv1D, Lambda); ``false`` otherwise.
    ``has_optimizer``
        ``true`` if the files hold optimizer variables.
    ``model_json``
        ``model.to_json()``, so a test can rebuild the architecture for the
        weights-only files.

``{name}.in0``, ``{name}.in1``, ...
    Model inputs (float, or int32 token ids with 0 = padding).
``{name}.out0``, ``{name}.out1``, ...
    Model outputs in Keras order.
"""

import json
import logging
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "files")
EXPECTED_PATH = os.path.join(OUT_DIR, "expected_keras3.npz")
SEED = 20240612

rng = np.random.default_rng(SEED)


def uniform(shape, scale, dtype="float32"):
    """Return ``uniform(-scale, scale)`` samples of a shape and dtype."""
    return rng.uniform(-scale, scale, size=shape).astype(dtype)


def set_random_weights(model, scale):
    """Overwrite every weight of a built model with uniform random values.

    Parameters
    ----------
    model : keras.Model
        A built model.
    scale : float
        Half-width of the uniform distribution, or a dict
        ``{layer_name: scale}`` with a ``"default"`` entry.
    """
    for layer in model.layers:
        if isinstance(scale, dict):
            s = scale.get(layer.name, scale["default"])
        else:
            s = scale
        new = [uniform(w.shape, s, w.dtype) for w in layer.get_weights()]
        layer.set_weights(new)


def as_list(outputs):
    """Return model outputs as a flat list of NumPy arrays."""
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def feed(inputs):
    """Return a single array or a list, as ``model(...)`` expects."""
    return inputs[0] if len(inputs) == 1 else list(inputs)


class _Collect(logging.Handler):
    """A logging handler that keeps the messages it receives."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage().strip())


def save_with_warnings(save):
    """Call ``save()`` (or a load) and return the warnings it raised or logged.

    Keras logs some of its warnings (e.g. the legacy HDF5 one) through the
    ``absl`` logger instead of the ``warnings`` module; both are collected.
    """
    handler = _Collect()
    logger = logging.getLogger("absl")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            save()
    finally:
        logger.removeHandler(handler)
    # NumPy 2 DeprecationWarnings from TensorFlow internals are noise here.
    return [str(w.message).strip() for w in caught
            if not issubclass(w.category, DeprecationWarning)
            ] + handler.messages


def check_reload(path, fmt, model, inputs, expected, safe_mode=True):
    """Load a saved file back with Keras and compare its outputs.

    Parameters
    ----------
    path : str
        The file that was written.
    fmt : str
        ``"keras_zip"``, ``"h5_model"`` or ``"h5_weights"``.
    model : keras.Model
        The model that was saved (its architecture is cloned for weights-only
        files).
    inputs : list of numpy.ndarray
        Model inputs.
    expected : list of numpy.ndarray
        Outputs of the original model.
    safe_mode : bool
        Passed to ``keras.saving.load_model`` (``False`` is needed for
        Lambda layers).

    Returns
    -------
    list of str
        Notes saying how the file reloaded (a failed reload with
        ``compile=True`` is recorded, then retried with ``compile=False``).
        Raises if the reloaded model gives different outputs.
    """
    name = os.path.basename(path)
    notes = []
    if fmt == "h5_weights":
        loaded = keras.models.clone_model(model)
        caught = save_with_warnings(lambda: loaded.load_weights(path))
        notes += [f"{name}: Keras warning at load_weights into "
                  f"clone_model(model): {msg}" for msg in caught]
    else:
        try:
            loaded = keras.saving.load_model(path, safe_mode=safe_mode)
        except Exception as exc:  # record, then retry without compiling
            notes.append(f"{name}: keras.saving.load_model failed: {exc!r}")
            loaded = keras.saving.load_model(path, safe_mode=safe_mode,
                                             compile=False)
            notes.append(f"{name}: loads with compile=False")
    got = as_list(loaded(feed(inputs)))
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    notes.append(f"{name}: reloaded by Keras, same outputs")
    return notes


def record(name, model, inputs, description, *, notes=(), scale=0.5,
           dtype="float32", weights_only=False, unsupported=False,
           randomize=True, safe_mode=True):
    """Randomise weights, run the model, save its files and return the case.

    Parameters
    ----------
    name : str
        Case name; the stem of the files and the prefix of the array keys.
    model : keras.Model
        A built model.
    inputs : list of numpy.ndarray
        Model inputs in the order of ``model.inputs``.
    description : str
        Short human description.
    notes : sequence of str
        Extra observations.
    scale : float or dict
        Weight scale, see :func:`set_random_weights`.
    dtype : str
        Float dtype of the model.
    weights_only : bool
        Also write ``NAME.weights.h5`` with ``model.save_weights``.
    unsupported : bool
        Mark the case as one that fastrnn must refuse.
    randomize : bool
        Overwrite the weights first (``False`` for the trained model, whose
        weights were randomised before training).
    safe_mode : bool
        Passed on to the ``.keras`` reload check.

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
    formats = {f"{name}.keras": "keras_zip", f"{name}.h5": "h5_model"}
    if weights_only:
        formats[f"{name}.weights.h5"] = "h5_weights"
    for file_name, fmt in formats.items():
        path = os.path.join(OUT_DIR, file_name)
        if os.path.exists(path):
            os.remove(path)
        if fmt == "h5_weights":
            caught = save_with_warnings(lambda: model.save_weights(path))
        else:
            caught = save_with_warnings(lambda: model.save(path))
        notes += [f"{file_name}: Keras warning at save: {msg}"
                  for msg in caught]
        notes += check_reload(path, fmt, model, inputs, outputs,
                              safe_mode=safe_mode)

    arrays = {}
    input_keys = []
    for i, x in enumerate(inputs):
        arrays[f"{name}.in{i}"] = x
        input_keys.append(f"in{i}")
    for i, out in enumerate(outputs):
        assert np.all(np.isfinite(out)), (name, i)
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
        "unsupported": unsupported,
        "has_optimizer": getattr(model, "optimizer", None) is not None,
        "model_json": model.to_json(),
    }
    return case, arrays


def padded_float_batch(batch=4, timesteps=6, features=3):
    """Return a float batch with zero-padded steps for ``Masking(0.0)``.

    Rows: full length; post-padded (length 4); pre-padded (2 zero steps);
    a step with a single zero feature only (NOT masked, ``Masking`` needs
    every feature of a step to equal the mask value).
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
    """a. Sequential SimpleRNN(4, relu) -> Dense(2), default names."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.SimpleRNN(4, activation="relu"),
        layers.Dense(2),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k3_simple_rnn_relu", model, [x],
        "Sequential: SimpleRNN(4, activation='relu') -> Dense(2); default "
        "layer names", scale=0.3, weights_only=True)


def case_lstm_backwards_gru():
    """b. LSTM(go_backwards, return_sequences) -> GRU -> Dense, custom names."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3), name="series"),
        layers.LSTM(3, return_sequences=True, go_backwards=True,
                    name="my_encoder"),
        layers.GRU(3, name="my_gru"),
        layers.Dense(1, name="my_head"),
    ], name="backwards_stack")
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k3_lstm_backwards_gru", model, [x],
        "Sequential: LSTM(3, return_sequences=True, go_backwards=True) -> "
        "GRU(3) (reset_after=True) -> Dense(1); custom layer names. The "
        "backwards LSTM's output sequence is in reversed time order (Keras "
        "does not flip it back).", weights_only=True)


def case_gru_reset_before():
    """c. GRU(reset_after=False, hard_sigmoid) -> Dense(2)."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.GRU(3, reset_after=False, recurrent_activation="hard_sigmoid"),
        layers.Dense(2),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k3_gru_reset_before", model, [x],
        "Sequential: GRU(3, reset_after=False, "
        "recurrent_activation='hard_sigmoid') -> Dense(2); Keras 3's "
        "hard_sigmoid is relu6(x + 3) / 6; the bias has shape (9,) (one "
        "bias), not (2, 9)")


def case_bidi(merge_mode):
    """d. Bidirectional(LSTM, seq) -> Bidirectional(GRU) -> Dense(1)."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True),
                             merge_mode=merge_mode),
        layers.Bidirectional(layers.GRU(2), merge_mode=merge_mode),
        layers.Dense(1),
    ])
    x = uniform((3, 5, 3), 1.0)
    return record(
        f"k3_bidi_{merge_mode}", model, [x],
        f"Sequential: Bidirectional(LSTM(3, return_sequences=True), "
        f"merge_mode={merge_mode!r}) -> Bidirectional(GRU(2), "
        f"merge_mode={merge_mode!r}) -> Dense(1)",
        weights_only=merge_mode == "concat")


def case_bidi_none():
    """d. Functional Bidirectional(merge_mode=None): two outputs."""
    x_in = keras.Input(shape=(5, 3), name="x")
    fwd, bwd = layers.Bidirectional(
        layers.GRU(2, return_sequences=True), merge_mode=None,
        name="my_bidi")(x_in)
    model = keras.Model(x_in, [fwd, bwd], name="bidi_none")
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k3_bidi_none", model, [x],
        "Functional: Bidirectional(GRU(2, return_sequences=True), "
        "merge_mode=None, name='my_bidi'); outputs [forward_sequence, "
        "backward_sequence] (the backward sequence is flipped back to "
        "input time order by Bidirectional)")


def case_masking_lstm():
    """e. Masking(0.0) -> LSTM(seq) -> TimeDistributed(Dense(2))."""
    model = keras.Sequential([
        keras.Input(shape=(6, 3)),
        layers.Masking(mask_value=0.0),
        layers.LSTM(3, return_sequences=True),
        layers.TimeDistributed(layers.Dense(2)),
    ])
    x = padded_float_batch()
    return record(
        "k3_masking_lstm", model, [x],
        "Sequential: Masking(0.0) -> LSTM(3, return_sequences=True) -> "
        "TimeDistributed(Dense(2)) on a zero-padded float batch (row 1 "
        "post-padded, row 2 pre-padded, row 3 has one zero feature only "
        "and is not masked). At masked steps the LSTM repeats its last "
        "output (zero_output_for_mask=False), so TimeDistributed sees "
        "those values.", weights_only=True)


def case_embedding_gru():
    """e. Embedding(mask_zero) -> GRU -> Dropout -> Dense(sigmoid)."""
    model = keras.Sequential([
        keras.Input(shape=(6,), dtype="int32", name="tokens"),
        layers.Embedding(12, 4, mask_zero=True, name="my_embedding"),
        layers.GRU(3, name="my_gru"),
        layers.Dropout(0.3, name="my_dropout"),
        layers.Dense(1, activation="sigmoid", name="my_output"),
    ], name="embedding_gru")
    tokens = token_batch()
    return record(
        "k3_embedding_gru", model, [tokens],
        "Sequential: Embedding(12, 4, mask_zero=True) -> GRU(3) -> "
        "Dropout(0.3) -> Dense(1, sigmoid) on zero-padded int32 token ids; "
        "custom layer names")


def case_lstm_state():
    """f. Functional LSTM(return_state) -> [out, h, c]."""
    x_in = keras.Input(shape=(5, 3))
    out, h, c = layers.LSTM(3, return_state=True)(x_in)
    model = keras.Model(x_in, [out, h, c])
    x = uniform((3, 5, 3), 1.0)
    return record(
        "k3_lstm_state", model, [x],
        "Functional: Input((5, 3)) -> LSTM(3, return_state=True); outputs "
        "[out, h, c] (out equals h); default names")


def case_encoder_decoder():
    """g. Encoder-decoder: decoder LSTM gets the encoder's [h, c]."""
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
        "k3_encoder_decoder", model, [enc, dec],
        "Functional: encoder LSTM(4, return_state=True) on Input((5, 3)); "
        "decoder LSTM(4, return_sequences=True) on Input((None, 2)) with "
        "initial_state=[h, c] -> Dense(3, softmax). The decoder input has "
        "an unknown time dimension; the test batch uses 4 steps.",
        weights_only=True)


def case_float64():
    """h. A float64 model: SimpleRNN -> Dense with dtype='float64'."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3), dtype="float64"),
        layers.SimpleRNN(3, dtype="float64", name="rnn64"),
        layers.Dense(2, dtype="float64", name="dense64"),
    ], name="float64_model")
    x = uniform((3, 5, 3), 1.0, "float64")
    return record(
        "k3_float64", model, [x],
        "Sequential: SimpleRNN(3) -> Dense(2), both with dtype='float64' "
        "(a DTypePolicy 'float64' in the config; float64 datasets in the "
        "files)", dtype="float64")


def case_trained():
    """i. A trained model that holds Adam optimizer state."""
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
        "k3_trained_adam", model, [x],
        "Sequential: LSTM(3) -> Dense(1), compiled with Adam(0.01) and MSE, "
        "fit 2 epochs on random data; the files hold the optimizer state "
        "(.keras: optimizer/vars/N in model.weights.h5; .h5: "
        "optimizer_weights group and a training_config attribute; "
        ".weights.h5: optimizer/vars/N too)",
        weights_only=True, randomize=False)


def case_unsupported_conv1d():
    """j. Conv1D -> LSTM: fastrnn must refuse it."""
    model = keras.Sequential([
        keras.Input(shape=(6, 3)),
        layers.Conv1D(4, 3),
        layers.LSTM(2),
    ])
    x = uniform((2, 6, 3), 1.0)
    return record(
        "k3_unsupported_conv1d", model, [x],
        "Sequential: Conv1D(4, 3) -> LSTM(2); Conv1D is not a fastrnn "
        "layer, so fastrnn.load must refuse it with a clear error",
        unsupported=True)


def case_unsupported_lambda():
    """j. A Lambda layer: fastrnn must refuse it."""
    model = keras.Sequential([
        keras.Input(shape=(5, 3)),
        layers.Lambda(lambda t: t * 2),
        layers.GRU(2),
    ])
    x = uniform((2, 5, 3), 1.0)
    return record(
        "k3_unsupported_lambda", model, [x],
        "Sequential: Lambda(lambda t: t * 2) -> GRU(2); the Lambda holds "
        "marshalled Python bytecode (base64) in its config, which fastrnn "
        "must never execute; fastrnn.load must refuse it with a clear "
        "error. Keras itself only loads these files with "
        "safe_mode=False.",
        unsupported=True, safe_mode=False)


CASES = [
    case_simple_rnn_relu,
    case_lstm_backwards_gru,
    case_gru_reset_before,
    lambda: case_bidi("concat"),
    lambda: case_bidi("sum"),
    lambda: case_bidi("ave"),
    lambda: case_bidi("mul"),
    case_bidi_none,
    case_masking_lstm,
    case_embedding_gru,
    case_lstm_state,
    case_encoder_decoder,
    case_float64,
    case_trained,
    case_unsupported_conv1d,
    case_unsupported_lambda,
]


def main():
    """Write all model files and ``expected_keras3.npz``; check it loads."""
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
