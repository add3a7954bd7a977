"""Write Keras 3 functional models whose masks Keras records as operations, and their outputs.

In a functional model, Keras 3 saves the mask of ``Masking`` and of ``Embedding(mask_zero=True)``
as operations of the graph (``NotEqual``, then ``Any`` for ``Masking``) whose output is passed to
the next layer as ``mask=``; a ``Sequential`` model saves no such thing. This script builds three
such models with seeded random weights, saves each with Keras as ``NAME.keras`` and ``NAME.h5``
in ``tests/data/files/`` (Keras reads the ``.keras`` ones back and matches; it cannot read the
operations back from its own ``.h5``, fastrnn can) and writes their inputs and outputs (``model(x)``, inference) to
``tests/data/files/expected_keras3_masks.npz``: ``NAME_x`` and ``NAME_y`` for each name in the
JSON list ``names``. The fastrnn tests only read these files.

It also writes masked decoders given ``initial_state`` (``k3_decoder_*``), whose outputs go to
``tests/data/files/expected_keras3_decoders.npz`` (``NAME_encoder``, ``NAME_decoder``, ``NAME_y``):
Keras 3 gives a layer's call its inputs' mask only when the inputs are its one tensor argument
(``Layer.__call__``), so a decoder given initial_state tensors runs unmasked, while the layers
after it are masked; an explicit ``mask=`` still applies (Keras 2 masked such a decoder:
``k2_masked_decoder`` in make_keras2_files.py).

Last run with: Python 3.11.7, keras 3.15.1, jax 0.10.2, numpy 2.4.6, h5py, on CPU::

    pip install keras==3.15.1 jax numpy h5py
    KERAS_BACKEND=jax python tests/data/make_keras_functional_masks.py
"""
import json
import os

import keras
import numpy as np
from keras import layers

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "files")
SEED = 5


def padded_batch(rng, batch=4, timesteps=6, features=3):
    """Floats with zero-padded steps: row 1 padded at the end, row 2 at the start, row 3 in the
    middle, row 0 not at all."""
    x = rng.uniform(-1, 1, (batch, timesteps, features)).astype("float32")
    x[1, 4:] = 0.0
    x[2, :2] = 0.0
    x[3, 2:4] = 0.0
    return x


def masking_lstm(rng):
    inputs = keras.Input((6, 3), name="features")
    h = layers.Masking(0.0)(inputs)
    h = layers.LSTM(3, return_sequences=True)(h)
    outputs = layers.LSTM(2)(h)
    return keras.Model(inputs, outputs, name="masking_lstm"), padded_batch(rng)


def embedding_gru(rng):
    inputs = keras.Input((7,), dtype="int32", name="tokens")
    h = layers.Embedding(12, 4, mask_zero=True)(inputs)
    h = layers.GRU(3)(h)
    outputs = layers.Dense(1, activation="sigmoid")(h)
    tokens = rng.integers(1, 12, (5, 7)).astype("int32")
    tokens[1, 5:] = 0
    tokens[2, :3] = 0
    return keras.Model(inputs, outputs, name="embedding_gru"), tokens


def masking_bidirectional(rng):
    inputs = keras.Input((6, 3))
    h = layers.Masking(0.0)(inputs)
    h = layers.Bidirectional(layers.GRU(3, return_sequences=True))(h)
    outputs = layers.Dense(2)(h)
    return keras.Model(inputs, outputs, name="masking_bidirectional"), padded_batch(rng)


def embedding_concatenate(rng):
    """Two masked sequences joined: Keras records Concatenate's mask as ExpandDims, ZerosLike,
    LogicalOr, a concatenation and Any."""
    inputs = keras.Input((None,), dtype="int32", name="tokens")
    h = layers.Embedding(12, 4, mask_zero=True)(inputs)
    joined = layers.Concatenate()([layers.LSTM(3, return_sequences=True)(h),
                                   layers.GRU(2, return_sequences=True, go_backwards=True)(h)])
    outputs = layers.LSTM(2)(joined)
    tokens = rng.integers(1, 12, (4, 6)).astype("int32")
    tokens[1, 4:] = 0
    tokens[2, :2] = 0
    return keras.Model(inputs, outputs, name="embedding_concatenate"), tokens


def decoder_inputs(rng, batch=3):
    """(encoder inputs, decoder inputs): the decoder's rows 1 and 2 padded at the end.

    Not at the start: a masked step before any unmasked one outputs zeros with Keras's
    TensorFlow and torch backends (and Keras 2, and fastrnn) but the initial state with JAX's.
    """
    encoder = rng.uniform(-1, 1, (batch, 5, 3)).astype("float32")
    decoder = rng.uniform(-1, 1, (batch, 4, 3)).astype("float32")
    decoder[1, 2:] = 0.0
    decoder[2, 1:] = 0.0
    return encoder, decoder


def decoder_gru(rng):
    encoder_in, decoder_in = keras.Input((None, 3)), keras.Input((None, 3))
    _, h = layers.GRU(4, return_state=True)(encoder_in)
    decoded = layers.GRU(4, return_sequences=True)(layers.Masking(0.0)(decoder_in), initial_state=[h])
    outputs = layers.Dense(2)(decoded)
    return keras.Model([encoder_in, decoder_in], outputs, name="gru"), decoder_inputs(rng)


def decoder_lstm_backwards(rng):
    encoder_in, decoder_in = keras.Input((None, 3)), keras.Input((None, 3))
    _, h, c = layers.LSTM(4, return_state=True)(encoder_in)
    decoded = layers.LSTM(4, return_sequences=True, go_backwards=True)(layers.Masking(0.0)(decoder_in),
                                                                        initial_state=[h, c])
    outputs = layers.SimpleRNN(2, return_sequences=True)(decoded)   # masked: the mask flows on
    return keras.Model([encoder_in, decoder_in], outputs, name="lstm_backwards"), decoder_inputs(rng)


def decoder_bidirectional(rng):
    encoder_in, decoder_in = keras.Input((None, 3)), keras.Input((None, 3))
    _, forward, backward = layers.Bidirectional(layers.SimpleRNN(3, return_state=True))(encoder_in)
    decoded = layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True))(
        layers.Masking(0.0)(decoder_in), initial_state=[forward, backward])
    outputs = layers.GRU(2)(decoded)
    return keras.Model([encoder_in, decoder_in], outputs, name="bidirectional"), decoder_inputs(rng)


def decoder_explicit_mask(rng):
    """mask= given with initial_state: applied (Keras records it as NotEqual and Any operations)."""
    encoder_in, decoder_in = keras.Input((None, 3)), keras.Input((None, 3))
    _, h = layers.GRU(4, return_state=True)(encoder_in)
    mask = keras.ops.any(keras.ops.not_equal(decoder_in, 0.0), axis=-1)
    decoded = layers.GRU(4, return_sequences=True)(decoder_in, initial_state=[h], mask=mask)
    outputs = layers.Dense(2)(decoded)
    return keras.Model([encoder_in, decoder_in], outputs, name="explicit_mask"), decoder_inputs(rng)


def decoder_positional_state(rng):
    """initial_state given by position: Keras records the node's args as [sequences, [h]]."""
    encoder_in, decoder_in = keras.Input((None, 3)), keras.Input((None, 3))
    _, h = layers.GRU(4, return_state=True)(encoder_in)
    decoded = layers.GRU(4, return_sequences=True)(layers.Masking(0.0)(decoder_in), [h])
    outputs = layers.Dense(2)(decoded)
    return keras.Model([encoder_in, decoder_in], outputs, name="positional_state"), decoder_inputs(rng)


def decoder_merges(rng):
    """Merges of differently masked sequences, and of a masked with an unmasked one: Keras 3
    ORs the masks (none if one is missing), Multiply counts masked values as 1, Maximum and
    Minimum let the other input decide."""
    first_in, second_in = keras.Input((None, 3)), keras.Input((None, 3))
    first = layers.LSTM(3, return_sequences=True)(layers.Masking(0.0)(first_in))
    second = layers.GRU(3, return_sequences=True)(layers.Masking(0.0)(second_in))
    plain = layers.SimpleRNN(3, return_sequences=True)(second_in)            # no mask
    merged = [layers.Add()([first, second]), layers.Multiply()([first, second]),
              layers.Maximum()([first, second]), layers.Minimum()([first, plain]),
              layers.Multiply()([first, plain]), layers.Average()([first, plain])]
    outputs = layers.Concatenate()([layers.SimpleRNN(2, return_sequences=True)(m) for m in merged])
    first_x, second_x = decoder_inputs(rng)
    second_x = np.ascontiguousarray(second_x[:, :4])
    second_x[0, 1:3] = 0.0
    return keras.Model([first_in, second_in], outputs, name="merges"), (second_x, first_x[:, :4].copy())


def decoder_concatenate_unmasked(rng):
    """A masked and an unmasked sequence joined: Keras records the unmasked one's mask as OnesLike."""
    tokens_in, features_in = keras.Input((None,), dtype="int32"), keras.Input((None, 3))
    joined = layers.Concatenate()([layers.Embedding(12, 4, mask_zero=True)(tokens_in), features_in])
    outputs = layers.LSTM(2, return_sequences=True)(joined)
    tokens = rng.integers(1, 12, (3, 4)).astype("int32")
    tokens[1, 2:] = 0
    tokens[2, :2] = 0
    features = rng.uniform(-1, 1, (3, 4, 3)).astype("float32")
    return keras.Model([tokens_in, features_in], outputs, name="concatenate_unmasked"), (tokens, features)


def save_and_check(model, name, x, y):
    """`model` saved as NAME.keras and NAME.h5; the .keras read back by Keras gives `y`."""
    for suffix in (".keras", ".h5"):
        path = os.path.join(OUT_DIR, name + suffix)
        model.save(path)
        if suffix == ".keras":   # Keras 3.15 cannot read these operations back from its .h5
            again = keras.saving.load_model(path)
            np.testing.assert_allclose(np.asarray(again(x, training=False)), y, atol=1e-6)


def random_weights(model, rng):
    for weight in model.weights:
        weight.assign(rng.uniform(-0.5, 0.5, weight.shape).astype(weight.dtype))


def main():
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    os.makedirs(OUT_DIR, exist_ok=True)
    masks, mask_names = {}, []

    def record_masked(make):
        model, x = make(rng)
        random_weights(model, rng)
        y = np.asarray(model(x, training=False))
        name = f"k3_functional_{model.name}"
        save_and_check(model, name, x, y)
        masks[f"{name}_x"], masks[f"{name}_y"] = x, y
        mask_names.append(name)
        print(f"  {name}: output {y.shape}")

    decoders, decoder_names = {}, []

    def record_decoder(make):
        model, (encoder, decoder) = make(rng)
        random_weights(model, rng)
        y = np.asarray(model([encoder, decoder], training=False))
        name = f"k3_decoder_{model.name}"
        save_and_check(model, name, [encoder, decoder], y)
        decoders[f"{name}_encoder"], decoders[f"{name}_decoder"], decoders[f"{name}_y"] = encoder, decoder, y
        decoder_names.append(name)
        print(f"  {name}: output {y.shape}")

    # In the order they were added, so that each model's random draws stay as they were.
    for make in (masking_lstm, embedding_gru, masking_bidirectional):
        record_masked(make)
    for make in (decoder_gru, decoder_lstm_backwards, decoder_bidirectional, decoder_explicit_mask,
                 decoder_positional_state):
        record_decoder(make)
    record_masked(embedding_concatenate)
    for make in (decoder_merges, decoder_concatenate_unmasked):
        record_decoder(make)
    decoders["names"] = np.array(json.dumps(decoder_names))
    np.savez_compressed(os.path.join(OUT_DIR, "expected_keras3_decoders.npz"), **decoders)
    masks["names"] = np.array(json.dumps(mask_names))
    np.savez_compressed(os.path.join(OUT_DIR, "expected_keras3_masks.npz"), **masks)


if __name__ == "__main__":
    main()
