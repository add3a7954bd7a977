"""bench/compare.py's command line: names as users type them, clear errors for the rest.

Only the option parsing, the floor's arithmetic and the pause before each sample run here (no
peers): they need nothing but fastrnn.
"""
import importlib.util
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "bench" / "compare.py"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_in_any_case(compare):
    assert compare.parse_args(["--cells", "lstm,GRU,simplernn"]).cells == ["LSTM", "GRU", "SimpleRNN"]


def test_quick_and_defaults(compare):
    quick = compare.parse_args(["--quick"])
    assert quick.cells == ["LSTM"] and quick.shapes == [compare.SHAPES[i] for i in (0, 2, 5)]
    everything = compare.parse_args([])
    assert everything.cells == list(compare.CELLS) and everything.shapes == compare.SHAPES


@pytest.mark.parametrize("argv, message", [
    (["--cells", "lstn"], "unknown cell 'lstn'"),
    (["--shapes", "8"], "expected indices from 0 to 7"),
    (["--shapes", "1,x"], "expected indices from 0 to 7"),
    (["--modes", "all"], "unknown mode 'all'"),
])
def test_bad_options_are_named(compare, argv, message, capsys):
    with pytest.raises(SystemExit):
        compare.parse_args(argv)
    assert message in capsys.readouterr().err


def test_floor_names_the_rows_that_1_2x_cannot_reach(compare):
    shape = compare.SHAPES[3]                           # LSTM 32x100x64x128: 629 MFLOP, 2.0M activations
    rates = (100.0, 1e-9)                               # GFLOP/s per thread, seconds per activation
    least = (compare.flops("LSTM", shape) / 100e9 + 32 * 100 * 128 * 5 * 1e-9) / 2
    assert compare.floor("LSTM", shape, rates, 2) == pytest.approx(least)
    rows = [(("LSTM", shape, "last"), {"fastrnn": 2 * least, "onnxruntime-2t": 1.1 * least}),    # below
            (("LSTM", shape, "sequence"), {"fastrnn": 2 * least, "onnxruntime-2t": 1.5 * least}),  # reachable
            (("GRU", shape, "last"), {"fastrnn": least, "onnxruntime-2t": 2 * least})]             # 1.2x already
    previous = compare.fastrnn.num_threads()
    compare.fastrnn.set_num_threads(2)
    try:
        lines = compare.floor_section(rows, rates)
    finally:
        compare.fastrnn.set_num_threads(previous)
    table = [line for line in lines if line.startswith(("| LSTM", "| GRU"))]
    assert len(table) == 2 and "below the floor" in table[0] and table[1].endswith("| yes |")
    assert lines[-1].endswith("below fastrnn's floor: 1")


def test_settle_waits_for_the_other_threads_to_go_quiet(compare, monkeypatch):
    """A sample starts once the previous engine's threads stop spinning, not after a fixed pause:
    here threads that use a whole core for 0.3 s (as ONNX Runtime's worker does for about 60 ms).
    Their CPU time is simulated: a real spinning thread shares the GIL with settle's loop, and
    on a loaded machine loses its core for whole windows, which settle rightly calls quiet."""
    assert compare.SETTLE_SECONDS <= compare.settle() < compare.SETTLE_LIMIT
    end = time.perf_counter() + 0.3
    monkeypatch.setattr(compare, "other_threads_cpu", lambda: min(time.perf_counter(), end))
    waited = compare.settle()
    assert 0.3 <= waited < compare.SETTLE_LIMIT
