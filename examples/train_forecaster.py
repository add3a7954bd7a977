"""Train a small Keras 3 LSTM/GRU model that forecasts a noisy sine wave.

The script makes a noisy sine-wave series, cuts it into windows of 20 steps
(one feature) whose target is the next value, trains

    Input((20, 1)) -> LSTM(16, return_sequences=True) -> GRU(8) -> Dense(1)

for a few epochs with Adam, and writes two files into ``fastrnn/data/`` (bundled with the
package; ``fastrnn demo`` runs them):

``forecaster.keras``
    The trained model (``model.save``; it includes the Adam optimizer
    state).  fastrnn loads it with ``fastrnn.load("forecaster.keras")``.
``forecaster_expected.npz``
    A fixed batch of 8 test windows and what Keras predicts for them, so
    fastrnn's output can be checked without Keras
    (``np.load(path, allow_pickle=False)``):

    ``x``
        float32 ``(8, 20, 1)``: the test windows.
    ``y_true``
        float32 ``(8, 1)``: the true next value of each window.
    ``y_keras``
        float32 ``(8, 1)``: ``model(x)`` in eager mode.
    ``series``
        float32 ``(n,)``: the test part of the series the windows were cut
        from (handy for plotting).
    ``starts``
        int64 ``(8,)``: start index of each window in ``series``;
        ``x[i, :, 0] == series[starts[i]:starts[i] + 20]`` and
        ``y_true[i, 0] == series[starts[i] + 20]``.
    ``val_mse``
        float64 scalar: the final validation MSE.
    ``keras_version``
        0-d unicode array.

Runs in well under a minute on 2 CPU cores.

Last run with: Python 3.11.7, keras 3.15.1, tensorflow-cpu 2.21.0,
numpy 2.4.6, ``KERAS_BACKEND=tensorflow``, on CPU.

How to run (from the repository root, in a virtualenv with Keras 3)::

    pip install tensorflow-cpu==2.21.0 keras==3.15.1 numpy
    KERAS_BACKEND=tensorflow python examples/train_forecaster.py
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

# Bundled with the package: `fastrnn demo` and the README load them from fastrnn/data/.
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fastrnn", "data")
MODEL_PATH = os.path.join(HERE, "forecaster.keras")
EXPECTED_PATH = os.path.join(HERE, "forecaster_expected.npz")
SEED = 7
WINDOW = 20          # input steps per window
PERIOD = 25.0        # sine period, in steps
NOISE = 0.1          # standard deviation of the Gaussian noise
N_STEPS = 3000       # length of the whole series


def make_series(rng):
    """Return a noisy sine wave of ``N_STEPS`` float32 values."""
    t = np.arange(N_STEPS)
    clean = np.sin(2 * np.pi * t / PERIOD)
    return (clean + rng.normal(0.0, NOISE, size=N_STEPS)).astype("float32")


def make_windows(series):
    """Cut a series into ``(windows, next values)``.

    Returns
    -------
    x : numpy.ndarray
        ``(n, WINDOW, 1)`` input windows.
    y : numpy.ndarray
        ``(n, 1)`` value that follows each window.
    """
    n = len(series) - WINDOW
    x = np.stack([series[i:i + WINDOW] for i in range(n)])
    y = series[WINDOW:WINDOW + n]
    return x[..., None], y[:, None]


def build_model():
    """Return the (uncompiled) forecasting model."""
    return keras.Sequential([
        keras.Input(shape=(WINDOW, 1), name="window"),
        layers.LSTM(16, return_sequences=True, name="lstm"),
        layers.GRU(8, name="gru"),
        layers.Dense(1, name="next_value"),
    ], name="forecaster")


def main():
    """Train the model, save it and save a batch of Keras predictions."""
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    series = make_series(rng)

    # Train / validation / test are consecutive, non-overlapping stretches.
    train_series = series[:2000]
    val_series = series[2000:2500]
    test_series = series[2500:]
    x_train, y_train = make_windows(train_series)
    x_val, y_val = make_windows(val_series)

    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005),
                  loss="mse")
    history = model.fit(x_train, y_train, validation_data=(x_val, y_val),
                        epochs=8, batch_size=32, verbose=2)
    val_mse = float(history.history["val_loss"][-1])
    print(f"final validation MSE: {val_mse:.5f} "
          f"(noise variance {NOISE ** 2:.5f})")

    model.save(MODEL_PATH)

    # A fixed batch of 8 test windows spread over the test stretch.
    starts = np.linspace(0, len(test_series) - WINDOW - 1, 8).astype("int64")
    x = np.stack([test_series[s:s + WINDOW] for s in starts])[..., None]
    y_true = test_series[starts + WINDOW][:, None]
    y_keras = keras.ops.convert_to_numpy(model(x))
    np.savez_compressed(
        EXPECTED_PATH, x=x, y_true=y_true, y_keras=y_keras,
        series=test_series, starts=starts, val_mse=np.float64(val_mse),
        keras_version=np.array(keras.__version__))

    # The saved model must give the same predictions.
    reloaded = keras.saving.load_model(MODEL_PATH)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(x)), y_keras, rtol=1e-6,
        atol=1e-6)
    test_mse = float(np.mean((y_keras - y_true) ** 2))
    print(f"MSE on the 8 saved test windows: {test_mse:.5f}")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH) // 1024} KB) "
          f"and {EXPECTED_PATH}")


if __name__ == "__main__":
    main()
