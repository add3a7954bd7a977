"""The ``fastrnn`` command: the README's demo and the config report."""
import subprocess
import sys

import pytest

import fastrnn
from fastrnn.cli import main


def test_demo_runs_the_bundled_keras_model(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "forecaster.keras" in out and "Total params" in out
    assert "largest difference from Keras" in out


def test_module_entry_point_runs_demo():
    done = subprocess.run([sys.executable, "-m", "fastrnn", "demo"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"backend: {fastrnn.backend()}" in done.stdout


def test_config_command(capsys):
    assert main(["config"]) == 0
    assert capsys.readouterr().out.startswith("fastrnn ")


@pytest.mark.parametrize("argv", [[], ["demo", "--batch", "0"], ["nonsense"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
