"""Keras files to fastrnn models, with h5py only (never TensorFlow or Keras).

Three layouts are read:

- Keras 3 ``.keras`` archives: a zip of ``config.json`` (the model's configuration) and
  ``model.weights.h5``, whose groups are named after the layer *class* plus a counter
  (``layers/lstm``, ``layers/lstm_1``) with the layer's name in the ``name`` attribute of each
  ``vars`` group. An RNN's variables are under ``cell/vars/0..``; Bidirectional nests
  ``forward_layer`` and ``backward_layer``; TimeDistributed nests ``layer``. Weights-only
  ``.weights.h5`` files of Keras 3 have the same ``layers/`` tree.
- Legacy HDF5 (``.h5``) written by Keras 3 and by Keras 2 (``tf.keras``, ``tf_keras``): a
  ``model_config`` attribute, and ``model_weights/<layer name>`` groups whose ``weight_names``
  attribute lists the layer's datasets in Keras order. Keras 2 weights-only files have the same
  groups at the root.
- Configurations: Keras 3 (``inbound_nodes`` of ``{"args", "kwargs"}`` with ``__keras_tensor__``
  references) and Keras 2 (``[[layer, node, tensor, kwargs], ...]``, initial states passed as extra
  inputs, ``batch_input_shape``, ``hard_sigmoid`` meaning ``clip(0.2x + 0.5, 0, 1)``).

Every weight is checked against the shape its configuration implies before it is read, so a
malformed or hostile file fails with a `ModelFileError` that names the file, the layer and the
problem, before any large allocation. Optimizer state in a file is ignored.
"""
import contextlib
import io
import json
import mmap
import zipfile

import numpy as np

from .. import layers as L
from .. import recurrent as R
from ..base import Layer, Symbolic, snake_case
from ..errors import ModelFileError
from ..models import Input, InputLayer, Model, Sequential

__all__ = ["load_h5", "load_keras", "load_weights", "model_from_config", "SUPPORTED_LAYERS"]

MAX_WEIGHT_BYTES = 2 ** 31          # per weight array; a claim beyond it is refused before reading
MAX_ARCHIVE_MEMBER_BYTES = 2 ** 32  # uncompressed size of one member of a .keras archive
MAX_ARCHIVE_MEMBERS = 10000         # members of a zip archive (.keras, fastrnn .npz, PyTorch .pt)
MAX_CONFIG_BYTES = 64 * 2 ** 20
MAX_NESTING = 16                    # wrapper layers (Bidirectional, TimeDistributed) inside each other
MAX_REPEATS = 2 ** 20               # RepeatVector's n, which no weights bound
MAX_LAYERS = MAX_ARCHIVE_MEMBERS    # a TorchRNN's num_layers: no file can hold the weights of more

_RNN_KEYS = ("units", "activation", "use_bias", "return_sequences", "return_state", "go_backwards",
             "stateful", "zero_output_for_mask")
# Keras class name -> (fastrnn class, configuration keys it takes)
SUPPORTED_LAYERS = {
    "SimpleRNN": (R.SimpleRNN, _RNN_KEYS),
    "LSTM": (R.LSTM, _RNN_KEYS + ("recurrent_activation", "unit_forget_bias")),
    "GRU": (R.GRU, _RNN_KEYS + ("recurrent_activation", "reset_after")),
    "Bidirectional": (R.Bidirectional, ("merge_mode",)),
    "TimeDistributed": (L.TimeDistributed, ()),
    "Dense": (L.Dense, ("units", "activation", "use_bias")),
    "Embedding": (L.Embedding, ("input_dim", "output_dim", "mask_zero")),
    "Masking": (L.Masking, ("mask_value",)),
    # Operations a Keras 3 functional model records for the masks of Masking and Embedding, and
    # of merges of masked sequences
    "NotEqual": (L.NotEqual, ("value",)),
    "Any": (L.Any, ("axis", "keepdims")),
    "ExpandDims": (L.ExpandDims, ("axis",)),
    "ZerosLike": (L.ZerosLike, ()),
    "OnesLike": (L.OnesLike, ()),
    "LogicalOr": (L.LogicalOr, ()),
    "Dropout": (L.Dropout, ("rate",)),
    "SpatialDropout1D": (L.SpatialDropout1D, ("rate",)),
    "GaussianDropout": (L.GaussianDropout, ("rate",)),
    "GaussianNoise": (L.GaussianNoise, ("stddev",)),
    "Activation": (L.Activation, ("activation",)),
    "Flatten": (L.Flatten, ()),
    "Reshape": (L.Reshape, ("target_shape",)),
    "RepeatVector": (L.RepeatVector, ("n",)),
    "Concatenate": (L.Concatenate, ("axis",)),
    "Add": (L.Add, ()),
    "Subtract": (L.Subtract, ()),
    "Multiply": (L.Multiply, ()),
    "Average": (L.Average, ()),
    "Maximum": (L.Maximum, ()),
    "Minimum": (L.Minimum, ()),
}
# fastrnn's own extensions, in its files only
_NATIVE_ONLY_KEYS = {"LSTM": ("proj_size",), **{merge: ("keras2_mask",) for merge in (
    "Concatenate", "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")}}


# ---------------------------------------------------------------------------------- configs
def _dtype_name(dtype):
    """A dtype in a Keras config: a name, or a DTypePolicy ``{"config": {"name": ...}}``."""
    if isinstance(dtype, dict):
        policy = dtype.get("config") or {}
        return policy.get("name", "float32") if isinstance(policy, dict) else policy
    return dtype


def _dtype(config, source, name, allowed=("float32", "float64")):
    """The layer dtype of a Keras config: a name or a DTypePolicy, one of `allowed`."""
    dtype = _dtype_name(config.get("dtype", "float32") or "float32")
    if dtype not in allowed:
        raise ModelFileError(f"{source}: layer {name!r} uses dtype policy {dtype!r}; fastrnn runs "
                             "float32 or float64 models")
    return dtype


def _activation(value, keras2):
    """An activation from a config: a name, or Keras 3's serialized function; Keras 2 names mapped."""
    if isinstance(value, dict):
        value = value.get("config", value.get("class_name"))
    if not isinstance(value, str) and value is not None:
        raise ValueError(f"activation {value!r} is not a Keras activation name")
    if keras2 and value == "hard_sigmoid":
        return "hard_sigmoid_keras2"   # Keras 2's hard_sigmoid is clip(0.2x + 0.5, 0, 1)
    return value


def layer_from_config(spec, source, keras2=False, native=False, _depth=0):
    """Build an unbuilt fastrnn layer from a Keras layer spec ``{"class_name", "config"}``.

    Parameters
    ----------
    spec : dict
    source : str
        The file, for error messages.
    keras2 : bool
        The spec comes from a Keras 2 file (its ``hard_sigmoid`` differs).
    native : bool
        The spec comes from a fastrnn file (which may use fastrnn's extensions).

    Raises
    ------
    ModelFileError
        For a layer fastrnn does not support (naming its class and name and listing those it
        supports), or a configuration it cannot honour.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise ModelFileError(f"{source}: a layer entry is not a {{'class_name', 'config'}} object: {str(spec)[:200]}")
    if _depth > MAX_NESTING:
        raise ModelFileError(f"{source}: layers nested more than {MAX_NESTING} deep in wrappers")
    class_name, config = spec.get("class_name"), spec["config"]
    if not isinstance(class_name, str):
        raise ModelFileError(f"{source}: a layer's class_name is {str(class_name)[:100]}, not a string")
    name = config.get("name")
    if not isinstance(name, str) or not name:
        raise ModelFileError(f"{source}: a {class_name} layer has no name")
    if class_name == "Lambda":
        raise ModelFileError(f"{source}: layer {name!r} is a Lambda layer, which holds Python code; "
                             "fastrnn never runs code from a file. Replace it with supported layers.")
    if class_name in ("Sequential", "Functional", "Model"):
        raise ModelFileError(f"{source}: layer {name!r} is a whole {class_name} model nested in this one; fastrnn "
                             "reads models made of layers, not of models (in Keras, build the outer model from "
                             "the inner one's layers, or save and load the inner model on its own)")
    if class_name not in SUPPORTED_LAYERS:
        raise ModelFileError(
            f"{source}: layer {name!r} of class {class_name!r} is not supported by fastrnn; "
            f"supported: {', '.join(sorted(n for n, (c, _) in SUPPORTED_LAYERS.items() if not c._operation))}"
        )
    cls, keys = SUPPORTED_LAYERS[class_name]
    keys = keys + (_NATIVE_ONLY_KEYS.get(class_name, ()) if native else ())
    if config.get("time_major"):
        raise ModelFileError(f"{source}: layer {name!r} is time_major; fastrnn takes (batch, time, features)")
    kwargs = {key: config[key] for key in keys if key in config}
    if keras2 and issubclass(cls, L._Merge):
        kwargs["keras2_mask"] = True    # Keras 2 merged masks otherwise (see _Merge)
    if isinstance(config.get("trainable"), bool):
        kwargs["trainable"] = config["trainable"]
    if isinstance(kwargs.get("n"), int) and kwargs["n"] > MAX_REPEATS:
        raise ModelFileError(f"{source}: layer {name!r} repeats its input n={kwargs['n']} times, more than the "
                             f"{MAX_REPEATS} fastrnn accepts from a file")
    try:
        for key in ("activation", "recurrent_activation"):
            if key in kwargs:
                kwargs[key] = _activation(kwargs[key], keras2)
        if class_name == "Bidirectional":
            forward = layer_from_config(config.get("layer"), source, keras2, native, _depth + 1)
            backward = config.get("backward_layer")
            backward = None if backward is None else layer_from_config(backward, source, keras2, native, _depth + 1)
            return cls(forward, backward_layer=backward, name=name, **kwargs)
        if class_name == "TimeDistributed":
            return cls(layer_from_config(config.get("layer"), source, keras2, native, _depth + 1), name=name)
        floats = ("float32", "float64")
        allowed = floats + ("bool",) if class_name in ("ZerosLike", "OnesLike") else floats   # (mask operations)
        return cls(name=name, dtype=_dtype(config, source, name, allowed), **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{source}: cannot build layer {name!r} ({class_name}): {exc}") from exc


def _input_layer(spec, source):
    config = spec.get("config")
    if not isinstance(config, dict):
        raise ModelFileError(f"{source}: an input layer has no config")
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if not isinstance(shape, list) or not all(d is None or (type(d) is int and d > 0) for d in shape):
        raise ModelFileError(f"{source}: input layer {config.get('name')!r} has an invalid shape {str(shape)[:100]}")
    try:
        dtype = np.dtype(_dtype_name(config.get("dtype") or "float32"))
        if dtype.kind not in "biuf":
            raise TypeError(f"dtype {dtype} is not a number type")
        return Input(batch_shape=shape, dtype=dtype, name=config.get("name"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: input layer {config.get('name')!r}: {exc}") from exc


def model_from_config(config, source, read_weights=None, keras2=False, native=False):
    """Build a Sequential or functional fastrnn model from a Keras model configuration.

    Parameters
    ----------
    config : dict
        ``{"class_name": "Sequential" | "Functional" | "Model", "config": {...}}``.
    source : str
        The file, for error messages.
    read_weights : callable, optional
        ``read_weights(layer)`` sets a layer's weights; it is called for every layer before the
        model is wired, so nothing is initialised at random. Without it, layers are initialised
        as Keras does.
    keras2, native : bool
        As for `layer_from_config`.

    Returns
    -------
    Sequential or Model

    Raises
    ------
    ModelFileError
        If the configuration is malformed, names an unsupported layer, or its layers do not fit.
    """
    read_weights = read_weights or (lambda layer: None)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise ModelFileError(f"{source}: the model configuration is not a Keras model config")
    class_name, body = config.get("class_name"), config["config"]
    layer_specs = body.get("layers")
    if not isinstance(layer_specs, list):
        raise ModelFileError(f"{source}: the model configuration has no list of layers")
    if class_name == "Sequential":
        return _sequential(body, layer_specs, source, read_weights, keras2, native)
    if class_name in ("Functional", "Model"):
        return _functional(body, layer_specs, source, read_weights, keras2, native)
    raise ModelFileError(f"{source}: model class {class_name!r} is not supported (Sequential or functional models)")


def _sequential(body, layer_specs, source, read_weights, keras2, native):
    model_layers, input_shape, by_name = [], None, {}
    for spec in layer_specs:
        if isinstance(spec, dict) and spec.get("class_name") == "InputLayer":
            input_shape = _input_layer(spec, source)
            continue
        config = spec.get("config") if isinstance(spec, dict) else None
        name = config.get("name") if isinstance(config, dict) else None
        repeated = by_name.get(name) if isinstance(name, str) else None
        if repeated is not None and repeated[0] == spec:   # one layer used twice: the same object again
            model_layers.append(repeated[1])
            continue
        layer = layer_from_config(spec, source, keras2, native)
        by_name[layer.name] = (spec, layer)
        declared = spec["config"].get("batch_input_shape") or spec["config"].get("batch_shape")
        if input_shape is None and not model_layers and declared:
            input_shape = _input_layer({"config": {"batch_shape": declared, "name": None}}, source)
        model_layers.append(layer)
    if input_shape is None and isinstance(body.get("build_input_shape"), list):
        input_shape = _input_layer({"config": {"batch_shape": body["build_input_shape"], "name": None}}, source)
    for layer in dict.fromkeys(model_layers):
        read_weights(layer)
    try:
        return Sequential(([input_shape] if input_shape is not None else []) + model_layers, name=body.get("name"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: the layers do not fit together: {exc}") from exc


def _functional(body, layer_specs, source, read_weights, keras2, native):
    specs, layers_by_name, undecided = [], {}, []
    marked = native and any(isinstance(spec, dict) and "operation" in spec for spec in layer_specs)
    for spec in layer_specs:
        if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
            raise ModelFileError(f"{source}: a layer entry is not a Keras layer spec: {str(spec)[:200]}")
        name = spec.get("name", spec["config"].get("name"))
        if not isinstance(name, str):
            raise ModelFileError(f"{source}: a layer's name is {str(name)[:100]}, not a string")
        if name in layers_by_name:
            raise ModelFileError(f"{source}: two layers are called {name!r}")
        if spec.get("class_name") == "InputLayer":
            layers_by_name[name] = _input_layer(spec, source)
        else:
            operation = _is_operation(spec, keras2, native, marked)
            if operation:
                _check_runs(spec, name, source)
            layer = layers_by_name[name] = layer_from_config(spec, source, keras2, native)
            if operation:
                layer._operation = True
            elif operation is None:
                undecided.append(layer)
            read_weights(layer)
        specs.append((name, spec))
    return _wire_functional(body, specs, layers_by_name, source, undecided)


# The Keras 3 operations fastrnn runs, as the layers of these names: those it records for masks,
# and a user's arithmetic between tensors of one shape. (ops.average and ops.reshape, recorded as
# Average and Reshape, do what those layers do not.)
_OPERATIONS = {"NotEqual", "Any", "ExpandDims", "ZerosLike", "OnesLike", "LogicalOr", "Concatenate", "Add",
               "Subtract", "Multiply", "Maximum", "Minimum"}
# Keras 3 operations named like layers fastrnn has.
_LAYER_NAMED_OPERATIONS = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Concatenate", "Average", "Reshape"}


def _check_runs(spec, name, source):
    """Refuse an operation fastrnn does not run, before it is read as the layer of its name."""
    kind = spec.get("class_name")
    if isinstance(kind, str) and kind not in _OPERATIONS:
        why = "shares a layer's name but not what it does" if kind in _LAYER_NAMED_OPERATIONS else "is not supported"
        raise ModelFileError(f"{source}: {name!r} is the Keras operation {kind!r} (keras.ops), which {why}; "
                             f"fastrnn runs the operations {', '.join(sorted(_OPERATIONS))}")


def _is_operation(spec, keras2, native, marked=False):
    """Whether a functional model's layer `spec` stands for a Keras 3 operation, which runs in the
    graph but is not one of ``model.layers``: True, False, or None where the spec cannot tell.
    Keras 3 records some operations under the class names of layers (``ops.concatenate`` in a
    merge's mask as Concatenate, ``a + b`` as Add). fastrnn's format marks each call, a .keras
    archive and a live config name the operation's module, and in Keras 3's .h5 every layer's
    config has a dtype and no operation's has (the mask operations' classes are operations
    whatever their configs). fastrnn files before the mark cannot tell a Concatenate apart
    (`_wire_functional` then looks at what the call joins); in a file that `marked` some of its
    layers, an unmarked one is a layer."""
    if keras2:
        return False
    if isinstance(spec.get("operation"), bool) or marked:
        return spec.get("operation") is True
    module = spec.get("module")
    if module is not None:
        return str(module).startswith("keras.src.ops.")
    if native:
        return None if spec.get("class_name") == "Concatenate" else False
    return str(spec.get("class_name")) in _LAYER_NAMED_OPERATIONS and "dtype" not in spec["config"]


def _tensor_ref(value, source):
    """(layer name, node index, tensor index) of a Keras 3 ``__keras_tensor__`` or a Keras 2 list."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        config = value.get("config")
        history = config.get("keras_history") if isinstance(config, dict) else None
    else:
        history = value
    if (not isinstance(history, (list, tuple)) or len(history) < 3 or not isinstance(history[0], str)
            or not all(isinstance(i, int) and i >= 0 for i in history[1:3])):
        raise ModelFileError(f"{source}: a layer input refers to {str(value)[:120]!r}, not to a layer output")
    return tuple(history[:3])


def _layer_outputs(value):
    """Whether a resolved call argument is a layer output or a non-empty list of them."""
    if isinstance(value, list):
        return bool(value) and all(isinstance(v, Symbolic) for v in value)
    return isinstance(value, Symbolic)


class _NotYet(Exception):
    """A node's input comes from a call that has not been made yet (deferred, as Keras does)."""


def _wire_functional(body, specs, layers_by_name, source, undecided=()):
    """Call each layer on its inputs' Symbolic tensors, then make the Model. Calls are made in
    file order, a call whose inputs are not made yet waiting for a later pass (a shared layer's
    second call may read a layer listed after it). The `undecided` layers are operations where
    all they join are operations' outputs (see `_is_operation`)."""
    outputs = {}   # (layer name, node index) -> list of Symbolic

    def tensor(ref):
        name, node, index = ref
        if (name, node) not in outputs:
            raise _NotYet(ref)
        try:
            return outputs[(name, node)][index]
        except IndexError:
            raise ModelFileError(f"{source}: a layer input refers to output {index} of call {node} of "
                                 f"layer {name!r}, which does not exist") from None

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return tensor(_tensor_ref(value, source))
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    def call(name, layer, node_index, node):
        if isinstance(node, dict):   # Keras 3
            args, kwargs = node.get("args", []), node.get("kwargs") or {}
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ModelFileError(f"{source}: layer {name!r} has a malformed inbound node")
            args = [resolve(a) for a in args]
            if isinstance(layer, L.NotEqual) and len(args) == 2 and not isinstance(args[0], (Symbolic, list)):
                args = args[::-1]   # ops.not_equal(0.0, x): symmetric, the constant second
            if isinstance(layer, L.NotEqual) and len(args) == 2 and not isinstance(args[1], (Symbolic, list)):
                try:   # Keras: a constant operand
                    layer.value, args = L.NotEqual(args[1], name=name).value, args[:1]
                except TypeError as exc:
                    raise ModelFileError(f"{source}: {exc}") from exc
            plain = [a for a in args if not _layer_outputs(a)]
            if args and plain and layer._operation:   # a user's a * 2.0
                raise ModelFileError(f"{source}: operation {name!r} (keras.ops {type(layer).__name__}) has "
                                     f"{str(plain[0])[:40]!r} as an operand; fastrnn runs operations between "
                                     "tensors only")
            if not args or plain:
                raise ModelFileError(f"{source}: layer {name!r} is called on {str(node.get('args'))[:120]}, "
                                     "not on layer outputs: the file is damaged; save the model again with Keras")
            kwargs = {k: resolve(v) for k, v in kwargs.items() if k in ("initial_state", "mask") and v is not None}
            if isinstance(layer, (R._RNN, R.Bidirectional)) and 1 < len(args) <= 3:
                # call(sequences, initial_state=None, mask=None), arguments given by position
                kwargs.update((key, value) for key, value in zip(("initial_state", "mask"), args[1:])
                              if value is not None)
                args = args[:1]
            if "initial_state" in kwargs and not isinstance(layer, (R._RNN, R.Bidirectional)):
                raise ModelFileError(f"{source}: layer {name!r} ({type(layer).__name__}) is given an "
                                     "initial_state, which only recurrent layers take")
            if len(args) > 1 and not all(isinstance(a, Symbolic) for a in args):
                raise ModelFileError(f"{source}: layer {name!r} ({type(layer).__name__}) is called on "
                                     f"{len(args)} arguments, not all of them tensors: it takes one")
            inputs = args[0] if len(args) == 1 else args
        elif isinstance(node, list):  # Keras 2: a list of [layer, node, tensor, kwargs]
            refs = [tensor(_tensor_ref(entry, source)) for entry in node]
            # The call's own keyword arguments sit in the first input's entry: mask= a tensor
            given = node[0][3] if node and isinstance(node[0], list) and len(node[0]) > 3 else None
            mask = given.get("mask") if isinstance(given, dict) else None
            kwargs = {} if mask is None else {"mask": tensor(_tensor_ref(mask, source))}
            if isinstance(layer, (R._RNN, R.Bidirectional)) and len(refs) > 1:
                inputs, kwargs["initial_state"] = refs[0], refs[1:]   # states as extra inputs
            else:
                inputs = refs[0] if len(refs) == 1 else refs
        else:
            raise ModelFileError(f"{source}: layer {name!r} has a malformed inbound node")
        try:
            result = layer(inputs, **kwargs)
        except ModelFileError:
            raise
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"{source}: layer {name!r} does not fit its inputs: {exc}") from exc
        if isinstance(node, list) or node.get("passes_mask") is True:   # Keras 2's masks, kept in fastrnn's files
            layer._inbound_nodes[-1].passes_mask = True
        outputs[(name, node_index)] = result if isinstance(result, list) else [result]

    pending = []
    for name, spec in specs:
        layer = layers_by_name[name]
        if not isinstance(layer, Layer):           # an Input: its output is the tensor
            outputs[(name, 0)] = [layer]
            continue
        nodes = spec.get("inbound_nodes") or []
        if not isinstance(nodes, list):
            raise ModelFileError(f"{source}: layer {name!r} has malformed inbound_nodes")
        pending += [(name, layer, node_index, node) for node_index, node in enumerate(nodes)]
    while pending:
        waiting = []
        for name, layer, node_index, node in pending:
            try:
                if node_index and (name, node_index - 1) not in outputs:   # a layer's calls in order
                    raise _NotYet((name, node_index - 1, 0))
                call(name, layer, node_index, node)
            except _NotYet as missing:
                waiting.append(((name, layer, node_index, node), missing.args[0]))
        if len(waiting) == len(pending):           # nothing could be made: a missing call or a cycle
            waited_for = {(name, node_index) for name, _, node_index, _ in pending}
            absent = [ref for _, ref in waiting if (ref[0], ref[1]) not in waited_for]
            if absent:
                name, node, index = absent[0]
                raise ModelFileError(f"{source}: a layer input refers to output {index} of call {node} of "
                                     f"layer {name!r}, which does not exist")
            raise ModelFileError(f"{source}: the calls of layers {sorted({name for name, *_ in pending})} "
                                 "depend on each other in a cycle")
        pending = [item for item, _ in waiting]

    def refs(key):
        value = body.get(key)
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
            value = [value]     # Keras 3 writes a single input/output unwrapped
        if not (isinstance(value, (list, dict)) and value):
            raise ModelFileError(f"{source}: the model configuration has no {key}")
        try:
            if isinstance(value, dict):     # inputs by name (Keras 3)
                return {str(k): tensor(_tensor_ref(v, source)) for k, v in value.items()}
            return [tensor(_tensor_ref(v, source)) for v in value]
        except _NotYet as missing:
            name, node, index = missing.args[0]
            raise ModelFileError(f"{source}: the model's {key} refer to output {index} of call {node} of "
                                 f"layer {name!r}, which does not exist") from None

    inputs, outs = refs("input_layers"), refs("output_layers")
    try:
        model = Model(inputs if isinstance(inputs, dict) or len(inputs) > 1 else inputs[0],
                      outs if len(outs) > 1 else outs[0], name=body.get("name"))
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{source}: {exc}") from exc
    for layer in undecided:   # Keras's ops.concatenate of masks joins what its other operations made
        layer._operation = all(t.node.layer._operation for node in layer._inbound_nodes for t in node.tensors())
    # The file lists the layers in the order their writer kept them (Keras's, or a fastrnn
    # model's, where a model nested in it grouped its layers): keep it, and so get_weights'.
    position = {name: i for i, (name, _) in enumerate(specs)}
    model._set_layers(sorted(model._graph_layers, key=lambda layer: position.get(layer.name, len(position))))
    return model


# ---------------------------------------------------------------------------------- weights
# What h5py raises on a damaged or hostile file: objects that cannot be opened or read, dangling
# links (KeyError, OSError), link cycles and corrupt B-trees (RuntimeError), unknown string
# encodings and types (TypeError), names that are not UTF-8 (UnicodeError, a ValueError).
_H5_ERRORS = (OSError, KeyError, RuntimeError, TypeError, ValueError)


@contextlib.contextmanager
def _reading(source, what):
    """Report what h5py raises while reading `what` from `source` as a ModelFileError."""
    try:
        yield
    except ModelFileError:
        raise
    except _H5_ERRORS as exc:
        raise ModelFileError(f"{source}: cannot read {what} ({type(exc).__name__}: {exc})") from exc


def _attribute(obj, name, default=None):
    """Attribute `name` of an HDF5 object (`default` if it has none), read only if it holds text or
    numbers: libhdf5 can crash converting a damaged variable-length sequence or other exotic type."""
    if name not in obj.attrs:
        return default
    h5py = _h5py()
    kind = h5py.h5a.open(obj.id, name.encode()).get_type()
    if not isinstance(kind, (h5py.h5t.TypeStringID, h5py.h5t.TypeIntegerID, h5py.h5t.TypeFloatID)):
        raise TypeError(f"attribute {name!r} of {obj.name} is of HDF5 type class {kind.get_class()}, "
                        "not text or numbers")
    return obj.attrs[name]


def _text(value):
    """An HDF5 attribute as a str (from str or UTF-8 bytes, possibly in a 0-d array), else None."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value if isinstance(value, str) else None


def _is_group(obj):
    return obj is not None and hasattr(obj, "keys")


def _assign_weights(layer, datasets, source):
    """Check `datasets` (h5py datasets, in Keras order) against `layer`, then read and set them."""
    if isinstance(layer, R.Bidirectional):
        n = len(layer.forward_layer._weight_shapes((None, None, 1)))
        # Keras lists trainable weights first: with only the forward direction frozen, the
        # backward one's come first. A legacy file's names say which is which.
        parts = [getattr(dataset, "name", "").split("/") for dataset in datasets]
        forward = [layer.forward_layer.name in p for p in parts]
        if sum(forward) == n and all(f or layer.backward_layer.name in p for f, p in zip(forward, parts)):
            datasets = [d for d, f in zip(datasets, forward) if f] + [d for d, f in zip(datasets, forward) if not f]
        _assign_weights(layer.forward_layer, datasets[:n], source)
        _assign_weights(layer.backward_layer, datasets[n:], source)
        return
    if isinstance(layer, L.TimeDistributed):
        return layer.set_weights(_checked_arrays(layer.layer, datasets, source))
    if not layer._has_weights:
        if datasets:
            raise ModelFileError(f"{source}: layer {layer.name!r} ({type(layer).__name__}) has no weights, "
                                 f"but the file holds {len(datasets)}")
        return
    layer.set_weights(_checked_arrays(layer, datasets, source))


def _checked_arrays(layer, datasets, source):
    if not datasets:
        raise ModelFileError(f"{source}: no weights for layer {layer.name!r} ({type(layer).__name__})")
    if any(not isinstance(getattr(d, "shape", None), tuple) for d in datasets):   # a group, an empty dataset
        raise ModelFileError(f"{source}: a weight of layer {layer.name!r} ({type(layer).__name__}) is not an array")
    try:
        input_shape = layer._input_shape_from_weights(datasets) if not layer.built else layer.input_shape
    except (ValueError, IndexError) as exc:
        raise ModelFileError(f"{source}: weights of layer {layer.name!r}: {exc}") from exc
    expected = layer._weight_shapes(input_shape)
    if len(datasets) != len(expected):
        raise ModelFileError(f"{source}: layer {layer.name!r} ({type(layer).__name__}) expects {len(expected)} "
                             f"weights ({', '.join(expected)}), the file holds {len(datasets)}")
    arrays = []
    for (weight, shape), dataset in zip(expected.items(), datasets):
        if tuple(dataset.shape) != tuple(shape):
            raise ModelFileError(f"{source}: {weight} of layer {layer.name!r} has shape {tuple(dataset.shape)}, "
                                 f"expected {tuple(shape)}")
        if dataset.dtype.kind != "f":
            raise ModelFileError(f"{source}: {weight} of layer {layer.name!r} has dtype {dataset.dtype}, "
                                 "expected floating point")
        if dataset.dtype.itemsize * int(np.prod(shape, dtype=np.int64)) > MAX_WEIGHT_BYTES:
            raise ModelFileError(f"{source}: {weight} of layer {layer.name!r} claims {tuple(shape)} values, "
                                 "more than fastrnn reads from a file")
        try:
            arrays.append(np.asarray(dataset[()]))
        except Exception as exc:  # h5py raises OSError and others on corrupt data
            raise ModelFileError(f"{source}: cannot read {weight} of layer {layer.name!r}: {exc}") from exc
    return arrays


class _Keras3Groups:
    """Finds each layer's group in a Keras 3 weights file: ``layers/<class>[_k]``.

    Groups are matched by the ``name`` attribute Keras writes on each ``vars`` group; without it
    (older Keras 3), by the snake_case class name plus a counter, in the order the model tracks
    its layers (the order layers are asked for).
    """

    def __init__(self, weights_file, source):
        with _reading(source, "the 'layers' group of the weights"):
            self.root = weights_file.get("layers")
            if not _is_group(self.root):
                raise ModelFileError(f"{source}: no 'layers' group in the weights (not a Keras 3 weights file)")
            self.by_name, self.counters = {}, {}
            for key in self.root.keys():
                group = self.root[key]
                vars_group = group.get("vars") if _is_group(group) else None
                name = _text(_attribute(vars_group, "name")) if _is_group(vars_group) else None
                if name:
                    self.by_name[name] = group

    def __getitem__(self, layer):
        base = snake_case(type(layer).__name__)
        n = self.counters.get(base, 0)
        self.counters[base] = n + 1
        return self.by_name.get(layer.name, self.root.get(base if n == 0 else f"{base}_{n}"))


def _keras3_read(groups, layer, source):
    """Set `layer`'s weights from its group in a Keras 3 weights file (`groups`: a `_Keras3Groups`)."""
    with _reading(source, f"the weights of layer {layer.name!r}"):
        _assign_weights(layer, _keras3_datasets(layer, groups[layer], source), source)


def _keras3_datasets(layer, group, source):
    """The datasets of `layer` under its Keras 3 group, in Keras order."""
    def numbered(vars_group):
        if not _is_group(vars_group):
            return []
        keys = sorted(vars_group.keys(), key=lambda k: int(k) if str(k).isdigit() else -1)
        return [vars_group[k] for k in keys]

    if not _is_group(group):
        if layer._has_weights:
            raise ModelFileError(f"{source}: no weights for layer {layer.name!r} ({type(layer).__name__})")
        return []
    if isinstance(layer, R.Bidirectional):
        return (_keras3_datasets(layer.forward_layer, group.get("forward_layer"), source)
                + _keras3_datasets(layer.backward_layer, group.get("backward_layer"), source))
    if isinstance(layer, L.TimeDistributed):
        return _keras3_datasets(layer.layer, group.get("layer"), source)
    if isinstance(layer, R._RNN):
        return numbered(group.get("cell/vars"))
    return numbered(group.get("vars"))


def _legacy_read(root, layer, source):
    """Set `layer`'s weights from its group under `root` in a legacy HDF5 file (Keras 2 or 3)."""
    with _reading(source, f"the weights of layer {layer.name!r}"):
        group = root.get(layer.name)
        if not _is_group(group):
            if layer._has_weights:
                raise ModelFileError(f"{source}: no weights for layer {layer.name!r} in the file "
                                     f"(it has {list(root.keys())[:20]})")
            return
        _assign_weights(layer, _legacy_datasets(group, source, layer.name), source)


def _legacy_datasets(group, source, layer_name):
    """The datasets of one layer of a legacy HDF5 file, in ``weight_names`` order."""
    names = _attribute(group, "weight_names", [])
    if not isinstance(names, (list, np.ndarray)) or np.ndim(names) != 1:
        raise ModelFileError(f"{source}: the weight_names of layer {layer_name!r} are not a list of names")
    datasets = []
    for name in names:
        name = _text(name)
        if name is None:
            raise ModelFileError(f"{source}: the weight_names of layer {layer_name!r} are not a list of names")
        if name not in group:
            raise ModelFileError(f"{source}: weight {name!r} of layer {layer_name!r} is listed but missing")
        datasets.append(group[name])
    return datasets


# ---------------------------------------------------------------------------------- files
def _h5py():
    try:
        import h5py
    except ImportError as exc:   # h5py is a dependency; this is a broken install
        raise ImportError("reading Keras files needs h5py: pip install h5py") from exc
    return h5py


def _check_global_heaps(data, source):
    """Refuse an HDF5 file with a global heap collection that would hang libhdf5.

    libhdf5 (2.0 and earlier) decodes a global heap collection (where variable-length strings such
    as Keras's ``model_config`` live) by stepping from object to object by the size each claims;
    in a damaged collection, a free-space object of size 0, or a size that wraps the pointer, makes
    it loop forever, holding the GIL. Every collection starts with ``GCOL`` and version 1, and
    libhdf5 reads none past the end of the file, so each one in `data` (bytes or an mmap) is walked
    here as libhdf5 would walk it.
    """
    sizes = {0: 14, 1: 14, 2: 10, 3: 10}                 # superblock version -> offset of "size of lengths"
    version = data[8] if len(data) > 16 else None
    width = data[sizes[version]] if version in sizes else 8
    width = width if width in (2, 4, 8) else 8
    header, steps, wrap = 8 + width, 0, 2 ** 64
    at = data.find(b"GCOL\x01")
    while at >= 0:
        end = at + int.from_bytes(data[at + 8:at + header], "little")
        position = at + header
        while end <= len(data) and position + header <= end:
            index = int.from_bytes(data[position:position + 2], "little")
            size = int.from_bytes(data[position + 8:position + header], "little")
            step = (header + (size + 7) % wrap // 8 * 8) % wrap if index else size
            steps += 1
            if step == 0 or step >= 2 ** 63 or steps > 10 ** 6:
                raise ModelFileError(f"{source}: a damaged HDF5 global heap (at byte {at}); refused")
            position += step
        at = data.find(b"GCOL\x01", at + 4)


def _open_h5(data_or_path, source):
    h5py = _h5py()
    try:
        if isinstance(data_or_path, bytes):
            _check_global_heaps(data_or_path, source)
            handle = io.BytesIO(data_or_path)
        else:
            with open(data_or_path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                _check_global_heaps(data, source)
            handle = data_or_path
        return h5py.File(handle, "r")
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{source}: not a readable HDF5 file ({exc})") from exc


def _json(text, source, what):
    if len(text) > MAX_CONFIG_BYTES:
        raise ModelFileError(f"{source}: {what} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{source}: {what} is not valid JSON ({exc})") from exc


# What zipfile raises for a damaged archive (NotImplementedError: an unknown zip version).
ZIP_ERRORS = (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError)


def open_archive(path, source, kind=".keras archive"):
    """A zip archive, open, with at most MAX_ARCHIVE_MEMBERS members (nothing is extracted);
    anything else is a ModelFileError naming `source` and what it should have been, `kind`."""
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise ModelFileError(f"{source}: not a readable {kind} ({exc})") from exc
    if len(archive.infolist()) > MAX_ARCHIVE_MEMBERS:
        archive.close()
        raise ModelFileError(f"{source}: the archive has more than {MAX_ARCHIVE_MEMBERS} members; refused")
    return archive


def _read_member(archive, name, source, limit=None):
    """The bytes of member `name`, refused before decompression if it claims more than `limit`
    (default MAX_ARCHIVE_MEMBER_BYTES)."""
    limit = MAX_ARCHIVE_MEMBER_BYTES if limit is None else limit
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{source}: the archive has no {name!r} (members: {archive.namelist()[:10]})") from None
    if info.file_size > limit:
        raise ModelFileError(f"{source}: {name!r} claims {info.file_size} bytes uncompressed, more than {limit}; "
                             "refused")
    try:
        return archive.read(name)
    except Exception as exc:
        raise ModelFileError(f"{source}: cannot read {name!r} from the archive ({exc})") from exc


def load_keras(path):
    """Load a ``.keras`` archive of Keras 3 or tf_keras (read in memory, nothing extracted to disk).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Sequential or Model

    Raises
    ------
    ModelFileError
        For a damaged archive, an unsupported layer, or weights that do not fit the configuration.
    """
    source = str(path)
    with open_archive(path, source) as archive:
        config = _json(_read_member(archive, "config.json", source, MAX_CONFIG_BYTES), source, "config.json")
        weights = _read_member(archive, "model.weights.h5", source)
        metadata = (_json(_read_member(archive, "metadata.json", source, MAX_CONFIG_BYTES), source, "metadata.json")
                    if "metadata.json" in archive.namelist() else {})
    # tf_keras (Keras 2) writes these archives too, and its hard_sigmoid is another function.
    keras2 = isinstance(metadata, dict) and str(metadata.get("keras_version", "")).startswith("2.")
    with _open_h5(weights, source) as h5:
        groups = _Keras3Groups(h5, source)
        return model_from_config(config, source, lambda layer: _keras3_read(groups, layer, source), keras2)


def _is_keras2(version, config):
    """Whether a legacy file was written by Keras 2, from its ``keras_version`` attribute (text or None)."""
    version = version or ""
    return version.startswith("2.") or (version == "" and isinstance(config, dict) and "module" not in config)


def load_h5(path):
    """Load a legacy HDF5 full-model file written by Keras 3 or Keras 2 (tf.keras, tf_keras).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Sequential or Model

    Raises
    ------
    ModelFileError
        If the file is not a full Keras model (a weights-only file says so), has an unsupported
        layer, or weights that do not fit the configuration.
    """
    source = str(path)
    with _open_h5(path, source) as h5:
        with _reading(source, "the file's attributes"):
            raw = _attribute(h5, "model_config")
            if raw is None:
                hint = (" It holds weights only: build the model with fastrnn and call model.load_weights(path)."
                        if "layer_names" in h5.attrs or "layers" in h5 else "")
                raise ModelFileError(f"{source}: no model_config attribute, so not a Keras full-model file.{hint}")
            text, version = _text(raw), _text(_attribute(h5, "keras_version"))
            weights = h5.get("model_weights")
        if text is None:
            raise ModelFileError(f"{source}: the model_config attribute is not text but {type(raw).__name__}")
        config = _json(text, source, "model_config")
        if not _is_group(weights):
            raise ModelFileError(f"{source}: no model_weights group")
        return model_from_config(config, source, lambda layer: _legacy_read(weights, layer, source),
                                 keras2=_is_keras2(version, config))


def load_weights(model, path):
    """Read a Keras weights file into a fastrnn model built with the same layers, as Keras's ``load_weights``.

    Reads Keras 3 ``.weights.h5`` (layers matched by name, else by class and order) and Keras 2
    weights files (layers matched by name), and the weights of full-model ``.h5`` and ``.keras``
    files.

    Parameters
    ----------
    model : Sequential or Model
    path : str or os.PathLike

    Raises
    ------
    ModelFileError
        If a layer's weights are missing or do not fit.
    """
    # A file refused part-way must not leave the model with some of its layers' weights.
    before = [(layer, layer.get_weights()) for layer in model.layers if layer.weights]
    try:
        _load_weights(model, str(path))
    except BaseException:
        for layer, weights in before:
            layer.set_weights(weights)
        raise


def _load_weights(model, source):
    with open(source, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        with open_archive(source, source) as archive:
            data = _read_member(archive, "model.weights.h5", source)
        h5_context = _open_h5(data, source)
    else:
        h5_context = _open_h5(source, source)
    with h5_context as h5:
        model_layers = [layer for layer in model.layers if not isinstance(layer, InputLayer)]
        with _reading(source, "the weights file's groups"):
            keras3 = "layers" in h5
            root = h5 if keras3 or "model_weights" not in h5 else h5["model_weights"]
        if keras3:
            groups = _Keras3Groups(h5, source)
            for layer in model_layers:
                _keras3_read(groups, layer, source)
            return
        if not _is_group(root):
            raise ModelFileError(f"{source}: model_weights is not a group")
        for layer in model_layers:
            _legacy_read(root, layer, source)
