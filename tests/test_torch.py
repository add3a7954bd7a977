"""The references against real PyTorch: torch.nn.RNN, LSTM (with proj_size) and GRU outputs on
converted weights (tests/data/torch_rnn.npz, written by tests/data/make_torch_fixtures.py with
torch 2.13; these tests do not need torch). They pin down the GRU formulation: Keras's
reset_after=True with gates reordered."""

import importlib.util
import json
import sys

import numpy as np
import pytest

import fastrnn
from fastrnn.io.torch import from_state_dict
from conftest import assert_close, load_fixture

CASES, ARRAYS = load_fixture("torch_rnn.npz")


def state_dict(case, prefix=""):
    start = f"{case['name']}.sd."
    return {prefix + key[len(start):]: value for key, value in ARRAYS.items() if key.startswith(start)}


def run(model, case):
    name = case["name"]
    hx = None
    if "h0" in case["inputs"]:
        hx = (ARRAYS[f"{name}.h0"], ARRAYS[f"{name}.c0"]) if case["module"] == "LSTM" else ARRAYS[f"{name}.h0"]
    output, state = model(ARRAYS[f"{name}.x"], hx)
    return [output, *(state if case["module"] == "LSTM" else [state])]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_torch(case, backend_name):
    kwargs = case["kwargs"]
    model = from_state_dict(state_dict(case), nonlinearity=kwargs.get("nonlinearity", "tanh"),
                            batch_first=kwargs["batch_first"])
    assert (model.mode, model.num_layers, model.bidirectional, model.proj_size) == (
        case["module"], kwargs["num_layers"], kwargs["bidirectional"], kwargs.get("proj_size", 0))
    expected = [ARRAYS[f"{case['name']}.{k}"] for k in case["outputs"]]
    assert_close(run(model, case), expected, case["dtype"])


def test_prefix_selects_one_module():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    mixed = {**state_dict(case, "encoder.rnn."), "decoder.weight": np.zeros(3)}
    model = from_state_dict(mixed, prefix="encoder.rnn.", batch_first=True)
    assert_close(run(model, case), [ARRAYS["gru_two_layers.output"], ARRAYS["gru_two_layers.h_n"]], "float32")


def test_unbatched_input_like_torch():
    case = next(c for c in CASES if c["name"] == "lstm_batch_first")
    model = from_state_dict(state_dict(case), batch_first=True)
    x = ARRAYS["lstm_batch_first.x"]
    output, (h_n, c_n) = model(x[0])
    batched, (bh, bc) = model(x[:1])
    np.testing.assert_array_equal(output, batched[0])
    np.testing.assert_array_equal(h_n, bh[:, 0])


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("weight_hh_l1"), "missing tensor 'weight_hh_l1'"),
    (lambda sd: sd.update(bias_hh_l0=np.zeros(11, np.float32)), r"'bias_hh_l0' has shape \(11,\), expected \(12,\)"),
    (lambda sd: sd.update(weight_hh_l0=np.zeros((12, 5), np.float32)), r"weight_ih_l0 of shape \(12, 3\) fits no"),
    (lambda sd: sd.update(weight_ih_l2=np.zeros((12, 4), np.float32)), "missing tensor 'weight_hh_l2'"),
    (lambda sd: sd.update(extra=np.zeros(3)), "unexpected tensor 'extra'"),
    (lambda sd: sd.update(bias_ih_l0=np.zeros(12, np.int64)), "dtype int64"),
    (lambda sd: sd.clear(), "no torch RNN/LSTM/GRU weights"),
])
def test_bad_state_dicts_are_named(damage, message):
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    sd = state_dict(case)
    damage(sd)
    with pytest.raises(fastrnn.ModelFileError, match=message):
        from_state_dict(sd, source="model.pt")


def test_a_projection_to_as_many_units_or_more_is_named():
    """torch's proj_size is smaller than hidden_size; a file that says otherwise is damaged."""
    case = next(c for c in CASES if c["name"] == "lstm_proj")
    sd = state_dict(case)
    hidden = sd["weight_hr_l0"].shape[1]      # weight_hr is (P, H): make P = H
    sd["weight_hr_l0"] = np.zeros((hidden, hidden), np.float32)
    with pytest.raises(fastrnn.ModelFileError, match=r"model.pt: weight_hr_l0 of shape .* torch's proj_size"):
        from_state_dict(sd, source="model.pt")


def test_wrong_hx_shape_is_named():
    case = next(c for c in CASES if c["name"] == "lstm_h0_c0")
    model = from_state_dict(state_dict(case), batch_first=True)
    x = ARRAYS["lstm_h0_c0.x"]
    with pytest.raises(ValueError, match="tuple"):
        model(x, np.zeros((1, len(x), 4)))
    with pytest.raises(ValueError, match=r"expects h_0 of shape \(1, %d, 4\)" % len(x)):
        model(x, (np.zeros((2, len(x), 4)), np.zeros((1, len(x), 4))))


@pytest.mark.parametrize("num_layers", [0, -1, True, 2.5, "2", None, 10 ** 9])
def test_torch_rnn_refuses_absurd_layer_counts(num_layers):
    # 10**9 must fail at once, not build layers until memory runs out.
    with pytest.raises(ValueError, match="num_layers"):
        fastrnn.TorchRNN("GRU", 3, 4, num_layers=num_layers, initialize=False)


@pytest.mark.parametrize("argument", ["input_size", "hidden_size"])
@pytest.mark.parametrize("value", [0, True, 2.5])
def test_torch_rnn_refuses_sizes_that_are_not_positive_integers(argument, value):
    sizes = {"input_size": 3, "hidden_size": 4, argument: value}
    with pytest.raises(ValueError, match=argument):
        fastrnn.TorchRNN("GRU", **sizes)


def test_torch_rnn_takes_numpy_integers():
    model = fastrnn.TorchRNN("LSTM", np.int64(3), np.int32(4), num_layers=np.int64(2), proj_size=np.int64(2))
    assert (model.input_size, model.hidden_size, model.num_layers, model.proj_size) == (3, 4, 2, 2)
    with pytest.raises(ValueError, match="proj_size"):
        fastrnn.TorchRNN("LSTM", 3, 4, proj_size=-1)


@pytest.mark.parametrize("options, message", [
    ({"mode": "LSTM", "proj_size": 4}, "proj_size must be smaller than hidden_size 4, got 4"),
    ({"mode": "LSTM", "proj_size": 9}, "proj_size must be smaller than hidden_size 4, got 9"),
    ({"mode": "RNN", "nonlinearity": "sigmoid"}, "nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
])
def test_torch_rnn_refuses_what_torch_refuses(options, message):
    mode = options.pop("mode")
    with pytest.raises(ValueError, match=message):
        fastrnn.TorchRNN(mode, 3, 4, **options)


class FakeTorchGRU:
    """What from_torch reads of a torch module (torch itself is not a test dependency)."""

    mode, batch_first, num_layers, bidirectional = "GRU", True, 2, False

    def __init__(self, tensors):
        self.tensors = tensors

    def state_dict(self):
        return self.tensors


def test_from_torch_reads_the_module_settings():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    model = fastrnn.from_torch(FakeTorchGRU(state_dict(case)))
    assert model.batch_first and model.mode == "GRU"
    assert_close(run(model, case), [ARRAYS["gru_two_layers.output"], ARRAYS["gru_two_layers.h_n"]], "float32")
    with pytest.raises(TypeError, match="converts torch.nn.RNN, LSTM or GRU modules, got dict"):
        fastrnn.from_torch({})


class LSTM(FakeTorchGRU):
    """Stands for torch.nn.LSTM: the class name and module from_torch recognises it by."""

    __module__ = "torch.nn.modules.rnn"
    mode = "LSTM"

    def forward(self, x, hx=None):
        raise NotImplementedError


def test_from_torch_refuses_a_forward_it_would_not_run():
    # fastrnn runs torch's own forward: a subclass's or a hook's changes would silently be lost.
    case = next(c for c in CASES if c["name"] == "gru_two_layers")

    class Scaled(LSTM):
        def forward(self, x, hx=None):
            return 2 * super().forward(x, hx)

    class Plain(LSTM):
        pass

    with pytest.raises(TypeError, match="torch module Scaled overrides the forward of torch.nn.LSTM"):
        fastrnn.from_torch(Scaled(state_dict(case)))
    hooked = FakeTorchGRU(state_dict(case))
    hooked._forward_hooks = {0: print}
    with pytest.raises(TypeError, match="torch module FakeTorchGRU has forward hooks"):
        fastrnn.from_torch(hooked)
    assert isinstance(fastrnn.from_torch(Plain(state_dict(case))), fastrnn.TorchRNN)   # forward not overridden


def test_checkpoint_with_tensor_metadata_is_unwrapped():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    from fastrnn.io.torch import _unwrap_checkpoint

    checkpoint = {"state_dict": state_dict(case), "best_loss": np.float32(0.5), "step": np.arange(3)}
    assert _unwrap_checkpoint(checkpoint, "ckpt") is checkpoint["state_dict"]


def test_torch_call_errors_name_the_shapes_given():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    model = from_state_dict(state_dict(case))          # time first
    features = model.input_size
    with pytest.raises(ValueError, match=rf"input_size {features} \(the last axis\), got input of shape \(5, 3, {features + 1}\)"):
        model(np.zeros((5, 3, features + 1), np.float32))
    with pytest.raises(ValueError, match=rf"at least one timestep, got input of shape \(0, 3, {features}\) \(time on axis 0\)"):
        model(np.zeros((0, 3, features), np.float32))
    layers = model.num_layers
    with pytest.raises(ValueError, match=rf"h_0 of shape \({layers}, {model.hidden_size}\) for unbatched input, "
                                         rf"got \({layers}, 1, {model.hidden_size}\)"):
        model(np.zeros((5, features), np.float32), np.zeros((layers, 1, model.hidden_size)))
    for bad in (np.zeros((layers, 3, model.hidden_size), bool), np.full((layers, 3, model.hidden_size), "0.5"),
                np.zeros((layers, 3, model.hidden_size), complex)):
        with pytest.raises(TypeError, match="h_0 of torch GRU must be a real numeric array"):
            model(np.zeros((5, 3, features), np.float32), bad)


class PackedSequence(tuple):
    """Stands in for torch.nn.utils.rnn.PackedSequence (a named tuple of that name)."""


def test_packed_sequence_is_refused_by_name():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    with pytest.raises(TypeError, match="a PackedSequence is not supported; pass the padded batch"):
        from_state_dict(state_dict(case))(PackedSequence((np.zeros((6, 4)), np.array([3, 2, 1]))))


def test_torch_options_in_torch_terms():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    assert from_state_dict(state_dict(case), prefix=None).mode == "GRU"
    with pytest.raises(TypeError, match="prefix must be a string"):
        from_state_dict(state_dict(case), prefix=1)
    with pytest.raises(ValueError, match="nonlinearity='relu' applies to nn.RNN; these are GRU weights"):
        from_state_dict(state_dict(case), nonlinearity="relu")
    torch = pytest.importorskip("torch")
    assert from_state_dict(state_dict(case), dtype=torch.float64).dtype == np.float64


def test_a_whole_networks_state_dict_names_its_rnns_prefix():
    case = next(c for c in CASES if c["name"] == "gru_two_layers")
    network = {**state_dict(case, "rnn."), "head.weight": np.zeros((1, 4)), "head.bias": np.zeros(1)}
    with pytest.raises(fastrnn.ModelFileError, match="its RNN weights are under prefix 'rnn.': pass prefix='rnn.'"):
        from_state_dict(network)


def test_bfloat16_safetensors_are_read_exactly_or_refused_by_name(tmp_path, monkeypatch):
    # Written by hand (no torch needed): a GRU's state dict in bfloat16, whose values are float32's
    # top 16 bits, so that float32 holds them exactly.
    rng = np.random.default_rng(0)
    shapes = {"weight_ih_l0": (12, 3), "weight_hh_l0": (12, 4), "bias_ih_l0": (12,), "bias_hh_l0": (12,)}
    weights = {key: (rng.standard_normal(shape).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)
               for key, shape in shapes.items()}
    header, body = {}, b""
    for key, value in weights.items():
        raw = (value.view(np.uint32) >> 16).astype("<u2").tobytes()
        header[key] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [len(body), len(body) + len(raw)]}
        body += raw
    text = json.dumps(header).encode()
    path = tmp_path / "gru.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + body)
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "safetensors.torch", None)    # as where torch is not installed
        with pytest.raises(fastrnn.ModelFileError, match="gru.safetensors: holds bfloat16 tensors.*install torch"):
            fastrnn.load(path)
    if importlib.util.find_spec("torch") is None:
        return      # (safetensors reads bfloat16 through torch)
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    expected = from_state_dict(weights)(x)
    for got, want in zip(fastrnn.load(path)(x), expected):
        np.testing.assert_array_equal(got, want)
