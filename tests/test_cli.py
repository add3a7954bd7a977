"""The ``fastrnn`` command: every subcommand on real model files, its messages and exit statuses."""
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import fastrnn
from fastrnn import cli
from fastrnn.cli import main

FILES = Path(__file__).parent / "data" / "files"
KERAS = FILES / "k3_lstm_backwards_gru.keras"       # (None, 5, 3) -> (None, 1)
SEQ2SEQ = FILES / "k3_encoder_decoder.keras"        # encoder_inputs (None, 5, 3), decoder_inputs (None, None, 2)
STATES = FILES / "k3_lstm_state.keras"              # three outputs: [output, h, c]
TORCH = FILES / "t_lstm.safetensors"                # nn.LSTM(3, 3), time first


def run(capsys, *argv):
    """``main(argv)``'s exit status, stdout and stderr."""
    status = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err, *fragments):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastrnn: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def random_inputs(path, shape, seed=0):
    np.save(path, np.random.default_rng(seed).standard_normal(shape).astype("float32"))
    return np.load(path)


# ----------------------------------------------------------------------------- demo and config
def test_demo_runs_the_bundled_keras_model(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "forecaster.keras" in out and "Total params" in out
    assert "largest difference from Keras" in out


def test_demo_plot_draws_the_forecasts_or_says_matplotlib_is_missing(capsys, tmp_path, monkeypatch):
    quick = cli._time_per_call
    monkeypatch.setattr(cli, "_time_per_call", lambda layer, x: quick(layer, x, seconds=0.01))
    image = tmp_path / "forecasts.png"
    status, out, err = run(capsys, "demo", "--plot", image)
    if importlib.util.find_spec("matplotlib") is None:
        assert status == 1 and not image.exists()
        assert err.strip() == "fastrnn: error: --plot needs matplotlib: pip install matplotlib"
    else:
        assert status == 0, err
        assert image.read_bytes().startswith(b"\x89PNG") and f"plot written to {image}" in out


def test_config_command(capsys):
    assert main(["config"]) == 0
    assert capsys.readouterr().out.startswith("fastrnn ")


# ----------------------------------------------------------------------------- info
@pytest.mark.parametrize("filename, expected", [
    ("k3_lstm_backwards_gru.keras", ["Total params: 160", "format:   Keras 3 .keras archive (Keras 3.",
                                     "input:    (None, 5, 3) float32", "output:   (None, 1)", "params:   160"]),
    ("k3_lstm_backwards_gru.h5", ["format:   Keras 3 HDF5 .h5 (Keras 3."]),
    ("k2_embedding_gru.h5", ["format:   Keras 2 HDF5 .h5 (Keras 2.", "input:    (None, 6) int32"]),
    ("k3_float64.keras", ["dtype:    float64"]),
    ("k3_encoder_decoder.keras", ["input:    encoder_inputs (None, 5, 3) float32",
                                  "input:    decoder_inputs (None, None, 2) float32",
                                  "output:   probs (None, None, 3)"]),
    ("t_lstm.safetensors", ["mode:     LSTM (torch.nn.LSTM)", "sizes:    input_size 3, hidden_size 3",
                            "layers:   1, unidirectional, with bias", "batch_first: False",
                            "format:   PyTorch state dict (.safetensors)", "params:   84"]),
])
def test_info(capsys, filename, expected):
    status, out, err = run(capsys, "info", FILES / filename)
    assert status == 0, err
    for line in expected + [f"backend:  {fastrnn.backend()}"]:
        assert line in out


def test_info_on_fastrnn_file_and_torch_options(capsys, tmp_path):
    fastrnn.load(FILES / "t_rnn_tanh.safetensors").save(tmp_path / "rnn.npz")
    status, out, _ = run(capsys, "info", tmp_path / "rnn.npz")
    assert status == 0 and "format:   fastrnn .npz (model.save, fastrnn" in out and "TorchRNN" in out
    status, out, _ = run(capsys, "info", FILES / "t_rnn_tanh.safetensors", "--batch-first", "--nonlinearity", "relu")
    assert status == 0 and "torch.nn.RNN, relu" in out and "batch_first: True" in out


# ----------------------------------------------------------------------------- predict
SUMMARY = re.compile(r"^(\d+) sequences in [\d.]+ s \([\d,]+ sequences/s\) -> (.+)$")


def test_predict_npy_in_several_chunks(capsys, tmp_path):
    x = random_inputs(tmp_path / "x.npy", (50, 5, 3))
    status, out, err = run(capsys, "predict", KERAS, tmp_path / "x.npy", "--batch-size", "16")
    assert status == 0 and err == ""
    rows, written = SUMMARY.match(out.strip()).groups()
    assert rows == "50" and written == str(tmp_path / "x.pred.npy")
    np.testing.assert_allclose(np.load(written), fastrnn.load(KERAS).predict(x), rtol=0, atol=1e-6)


def test_predict_of_an_object_npy_names_the_file(capsys, tmp_path):
    np.save(tmp_path / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    status, _, err = run(capsys, "predict", KERAS, tmp_path / "objects.npy")
    assert status == 1
    assert_one_line_error(err, f"{tmp_path / 'objects.npy'}: ", "not a numeric .npy array", "object or ragged")


@pytest.mark.parametrize("name, content, message", [
    # NumPy's own words: "contains pickled (object) data ... load it unsafely", "File is not a zip file"
    ("garbage.npy", b"garbage", "not a numeric .npy array fastrnn can read"),
    ("garbage.npz", b"PK\x03\x04garbage", "not a valid .npz file"),
])
def test_predict_of_a_file_that_is_no_array_names_it(capsys, tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    status, _, err = run(capsys, "predict", KERAS, tmp_path / name)
    assert status == 1
    assert_one_line_error(err, f"{tmp_path / name}: ", message)
    assert "unsafely" not in err


def test_predict_of_an_object_array_in_an_npz_names_file_and_array(capsys, tmp_path):
    np.savez(tmp_path / "ragged.npz", a=np.array([np.zeros((5, 3)), np.zeros((2, 3))], dtype=object))
    status, _, err = run(capsys, "predict", KERAS, tmp_path / "ragged.npz")
    assert status == 1
    assert_one_line_error(err, f"{tmp_path / 'ragged.npz'}: array 'a' is not a numeric array")


def test_predict_npz_with_two_inputs_found_by_name(capsys, tmp_path):
    rng = np.random.default_rng(1)
    encoder, decoder = rng.random((20, 5, 3), "float32"), rng.random((20, 7, 2), "float32")
    # Stored in the other order: the model's input names decide.
    np.savez(tmp_path / "pairs.npz", decoder_inputs=decoder, encoder_inputs=encoder)
    status, _, err = run(capsys, "predict", SEQ2SEQ, tmp_path / "pairs.npz", "--batch-size", "8")
    assert status == 0, err
    expected = fastrnn.load(SEQ2SEQ).predict([encoder, decoder])
    np.testing.assert_allclose(np.load(tmp_path / "pairs.pred.npy"), expected, rtol=0, atol=1e-6)


def test_predict_npz_input_names_chosen(capsys, tmp_path):
    rng = np.random.default_rng(2)
    encoder, decoder = rng.random((4, 5, 3), "float32"), rng.random((4, 6, 2), "float32")
    np.savez(tmp_path / "in.npz", extra=encoder[:1], d=decoder, e=encoder)
    status, _, err = run(capsys, "predict", SEQ2SEQ, tmp_path / "in.npz")
    assert status == 1
    assert_one_line_error(err, "holds arrays ['extra', 'd', 'e']", "--input-name")
    status, _, err = run(capsys, "predict", SEQ2SEQ, tmp_path / "in.npz", "--input-name", "e", "d",
                         "-o", tmp_path / "out.npy")
    assert status == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), fastrnn.load(SEQ2SEQ).predict([encoder, decoder]),
                               rtol=0, atol=1e-6)


def test_predict_to_npz(capsys, tmp_path):
    x = random_inputs(tmp_path / "x.npy", (10, 5, 3))
    status, out, _ = run(capsys, "predict", KERAS, tmp_path / "x.npy", "-o", tmp_path / "y.npz", "--quiet")
    assert status == 0 and out.strip().endswith(f"-> {tmp_path / 'y.npz'}")
    with np.load(tmp_path / "y.npz") as y:
        assert y.files == ["output"]
        np.testing.assert_allclose(y["output"], fastrnn.load(KERAS).predict(x), rtol=0, atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npz"]   # no temporaries left
    status, _, err = run(capsys, "predict", KERAS, tmp_path / "x.npy", "-o", tmp_path / "none" / "y.npz")
    assert status == 1
    assert_one_line_error(err, str(tmp_path / "none" / "y.npz"), "no directory")


def test_predict_several_outputs_go_to_npz(capsys, tmp_path):
    x = random_inputs(tmp_path / "x.npy", (30, 5, 3))
    status, _, err = run(capsys, "predict", STATES, tmp_path / "x.npy", "--batch-size", "7")
    assert status == 0, err
    expected = fastrnn.load(STATES).predict(x)
    with np.load(tmp_path / "x.pred.npz") as y:
        assert y.files == ["output_0", "output_1", "output_2"]
        for name, array in zip(y.files, expected):
            np.testing.assert_allclose(y[name], array, rtol=0, atol=1e-6)
    status, _, err = run(capsys, "predict", STATES, tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert status == 1
    assert_one_line_error(err, "several outputs", ".npz")


def test_predict_torch_time_first_chunks_the_batch_axis(capsys, tmp_path):
    x = random_inputs(tmp_path / "t.npy", (6, 40, 3))     # (time, batch, features)
    status, _, err = run(capsys, "predict", TORCH, tmp_path / "t.npy", "--batch-size", "16")
    assert status == 0, err
    output, _ = fastrnn.load(TORCH)(x)
    np.testing.assert_allclose(np.load(tmp_path / "t.pred.npy"), output, rtol=0, atol=1e-6)


def test_predict_backend_and_threads(capsys, tmp_path):
    x = random_inputs(tmp_path / "x.npy", (5, 5, 3))
    before, threads = fastrnn.backend(), fastrnn.num_threads()
    seen = []
    real = fastrnn.set_num_threads
    with mock.patch.object(fastrnn, "set_num_threads", side_effect=lambda n: (seen.append(n), real(n))):
        status, _, err = run(capsys, "predict", KERAS, tmp_path / "x.npy", "--backend", "numpy", "--threads", "3")
    assert status == 0 and err == ""
    assert seen == [3, threads]   # set for the run, then restored
    assert fastrnn.backend() == before and fastrnn.num_threads() == threads
    np.testing.assert_allclose(np.load(tmp_path / "x.pred.npy"), fastrnn.load(KERAS).predict(x), rtol=0, atol=1e-5)


def test_predict_progress_counter_on_a_terminal(capsys, tmp_path, monkeypatch):
    random_inputs(tmp_path / "x.npy", (50, 5, 3))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setitem(sys.modules, "tqdm", None)         # the fallback counter, tqdm or not
    status, _, err = run(capsys, "predict", KERAS, tmp_path / "x.npy", "--batch-size", "20")
    assert status == 0 and "\r50/50 sequences" in err
    status, _, err = run(capsys, "predict", KERAS, tmp_path / "x.npy", "--quiet")
    assert status == 0 and err == ""


def test_predict_wrong_shape(capsys, tmp_path):
    random_inputs(tmp_path / "bad.npy", (10, 4, 3))
    status, out, err = run(capsys, "predict", KERAS, tmp_path / "bad.npy")
    assert status == 1 and out == ""
    assert_one_line_error(err, "expects shape (None, 5, 3), given (10, 4, 3)")
    assert not (tmp_path / "bad.pred.npy").exists()


# ----------------------------------------------------------------------------- errors
def test_predict_never_writes_over_its_input_or_model(capsys, tmp_path):
    model = tmp_path / "model.npz"
    fastrnn.Sequential([fastrnn.Input((None, 3)), fastrnn.LSTM(4, seed=0)]).save(model)
    random_inputs(tmp_path / "x.npy", (5, 6, 3))
    saved = model.read_bytes(), (tmp_path / "x.npy").read_bytes()
    for output, name in ((tmp_path / "x.npy", "INPUT"), (model, "MODEL")):
        status, _, err = run(capsys, "predict", model, tmp_path / "x.npy", "-o", output)
        assert status == 1
        assert_one_line_error(err, f"{output}: OUTPUT would overwrite {name}")
    assert (model.read_bytes(), (tmp_path / "x.npy").read_bytes()) == saved


def test_missing_files(capsys, tmp_path):
    status, _, err = run(capsys, "info", tmp_path / "missing.keras")
    assert status == 1
    assert_one_line_error(err, f"{tmp_path / 'missing.keras'}: No such file or directory")
    status, _, err = run(capsys, "predict", KERAS, tmp_path / "missing.npy")
    assert status == 1
    assert_one_line_error(err, "missing.npy: No such file or directory")


def test_unsupported_layer(capsys):
    status, _, err = run(capsys, "info", FILES / "k3_unsupported_conv1d.keras")
    assert status == 1
    assert_one_line_error(err, "k3_unsupported_conv1d.keras", "'Conv1D'", "not supported")


def test_unknown_backend_is_a_usage_error(capsys, tmp_path):
    random_inputs(tmp_path / "x.npy", (2, 5, 3))
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(KERAS), str(tmp_path / "x.npy"), "--backend", "fortran"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fortran' (choose from 'cython', 'numba', 'numpy')" in capsys.readouterr().err
    assert not (tmp_path / "x.pred.npy").exists()


def test_debug_prints_the_traceback(capsys, tmp_path):
    status, _, err = run(capsys, "--debug", "info", tmp_path / "missing.keras")
    assert status == 1
    assert err.startswith("Traceback (most recent call last):") and "FileNotFoundError" in err
    assert err.strip().splitlines()[-1].startswith("fastrnn: error: ")


def test_broken_pipe_is_quiet(capsys, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["info", str(KERAS)]) == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("argv", [
    [], ["demo", "--batch", "0"], ["nonsense"], ["predict", str(KERAS)],
    ["predict", str(KERAS), "x.npy", "--batch-size", "0"], ["bench", str(KERAS), "--seconds", "-1"],
    ["bench", str(KERAS), "--seconds", "inf"], ["bench", str(KERAS), "--seconds", "nan"],
])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


# ----------------------------------------------------------------------------- bench
@pytest.mark.parametrize("path", [KERAS, SEQ2SEQ, FILES / "k3_embedding_gru.keras"])
def test_bench_times_every_available_backend(capsys, path):
    status, out, err = run(capsys, "bench", path, "--seconds", "0.01", "--batch", "2", "--timesteps", "4")
    assert status == 0, err
    for name, reason in fastrnn.backends.available().items():
        if reason is None:
            assert re.search(rf"^{name} +[\d.]+ [mu]?s +[\d.]+ [mu]?s +[\d,]+$", out, re.MULTILINE)
        else:
            assert f"{name}: unavailable" in out
    assert "onnxruntime: not timed" in out


def test_bench_torch_model_against_torch(capsys):
    status, out, err = run(capsys, "bench", TORCH, "--seconds", "0.01", "--batch", "3")
    assert status == 0, err
    assert "inputs (32, 3, 3) float32 (time, batch, features)" in out
    if importlib.util.find_spec("torch") is None:
        assert "torch: not installed" in out
    else:
        assert re.search(r"^torch +[\d.]+ [mu]?s", out, re.MULTILINE)
        difference = float(re.search(r"largest difference from fastrnn (\S+)", out).group(1))
        assert difference < 1e-5


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("filename", ["t_lstm_proj_h0_c0.safetensors", "t_gru_bidirectional_no_bias_h0.safetensors",
                                      "t_lstm_two_layers_bidirectional.safetensors", "t_gru_float64.safetensors"])
def test_torch_module_has_the_same_weights(filename):
    torch = pytest.importorskip("torch")
    from fastrnn._cli_io import torch_module

    model = fastrnn.load(FILES / filename)
    x = np.random.default_rng(3).standard_normal((4, 2, model.input_size)).astype(model.dtype)
    with torch.no_grad():
        expected = torch_module(model)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(model(x)[0], expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- the real entry point
def test_python_dash_m_fastrnn(tmp_path):
    done = subprocess.run([sys.executable, "-m", "fastrnn", "info", str(KERAS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Total params: 160" in done.stdout and f"backend:  {fastrnn.backend()}" in done.stdout
    done = subprocess.run([sys.executable, "-m", "fastrnn", "info", str(tmp_path / "missing.keras")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert_one_line_error(done.stderr, "No such file or directory")


def test_closed_stdout_pipe_prints_no_traceback():
    # As in `fastrnn info model.keras | head -0`: the reader is gone before anything is written.
    process = subprocess.Popen([sys.executable, "-m", "fastrnn", "info", str(KERAS)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait() == 1
    assert err == ""


# ----------------------------------------------------------------------------- models built in code
def test_predict_matches_inputs_by_the_models_dict_keys_or_refuses(capsys, tmp_path):
    a, b = fastrnn.Input((None, 3), name="a_in"), fastrnn.Input((None, 2), name="b_in")
    model = fastrnn.Model({"second": a, "first": b},
                          fastrnn.Concatenate()([fastrnn.GRU(2, seed=0)(a), fastrnn.GRU(2, seed=1)(b)]))
    model.save(tmp_path / "m.npz")
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((4, 5, 3)).astype("float32"), rng.standard_normal((4, 5, 2)).astype("float32")
    expected = model({"second": xa, "first": xb})
    np.savez(tmp_path / "keys.npz", second=xa, first=xb)        # the model's keys, in another order
    assert run(capsys, "predict", tmp_path / "m.npz", tmp_path / "keys.npz", "-o", tmp_path / "o.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "o.npy"), expected, atol=1e-6)
    np.savez(tmp_path / "positional.npz", xb, xa)                # arr_0, arr_1: the model's order (first, second)
    assert run(capsys, "predict", tmp_path / "m.npz", tmp_path / "positional.npz", "-o", tmp_path / "p.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-6)
    np.savez(tmp_path / "other.npz", x=xa, y=xb)                 # neither: refused, not guessed
    status, _, err = run(capsys, "predict", tmp_path / "m.npz", tmp_path / "other.npz")
    assert status == 1
    assert_one_line_error(err, "holds arrays ['x', 'y']", "(first, second)", "--input-name")


def test_predict_and_bench_run_a_stateful_model_in_its_declared_batch(capsys, tmp_path):
    model = fastrnn.Sequential([fastrnn.LSTM(3, batch_input_shape=(2, 4, 1), stateful=True, seed=0)])
    model.save(tmp_path / "s.npz")
    x = random_inputs(tmp_path / "x.npy", (6, 4))                # (rows, timesteps): a univariate model's
    assert run(capsys, "predict", tmp_path / "s.npz", tmp_path / "x.npy", "-o", tmp_path / "y.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x[..., None]), atol=1e-6)
    status, out, err = run(capsys, "bench", tmp_path / "s.npz", "--batch", "5", "--seconds", "0.05")
    assert status == 0, err
    assert "inputs (2, 4, 1) float32" in out


def test_bench_says_when_the_model_fixes_the_timesteps(capsys):
    status, out, err = run(capsys, "bench", KERAS, "--timesteps", "9", "--seconds", "0.05")
    assert status == 0, err
    assert "the model fixes them at 5; --timesteps 9 is not used" in out


def test_predict_chunks_a_stateful_model_in_whole_declared_batches(capsys, tmp_path):
    model = fastrnn.Sequential([fastrnn.GRU(3, batch_input_shape=(4, 5, 2), stateful=True, seed=0)])
    model.save(tmp_path / "s.npz")
    x = random_inputs(tmp_path / "x8.npy", (8, 5, 2))
    assert run(capsys, "predict", tmp_path / "s.npz", tmp_path / "x8.npy", "--batch-size", "8",
               "-o", tmp_path / "y.npy")[0] == 0
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x), atol=1e-6)
    random_inputs(tmp_path / "x10.npy", (10, 5, 2))
    status, _, err = run(capsys, "predict", tmp_path / "s.npz", tmp_path / "x10.npy")
    assert status == 1
    assert_one_line_error(err, "take batches of 4: the input's 10 sequences are not a multiple of 4")
