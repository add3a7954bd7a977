"""Print the largest difference of every backend from the frameworks' own outputs.

Runs every golden case in tests/data (Keras 3 layers and models, Keras 2 and Keras 3 files,
PyTorch modules and files) on each available backend, and every cell of the backend test grid
against the NumPy reference, and prints the largest absolute difference per group, backend and
dtype: the numbers quoted in closing notes. Run from the repository root:
``python bench/conformance.py``.
"""
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import fastrnn
from fastrnn import backends

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import test_keras_fixtures as simple  # noqa: E402
import test_keras_models as models  # noqa: E402
import test_load as files  # noqa: E402
import test_recurrent as grid  # noqa: E402
import test_torch as torch_cases  # noqa: E402


def largest(outputs, expected):
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return max(float(np.max(np.abs(np.asarray(o, np.float64) - e))) for o, e in zip(outputs, expected))


def keras_layer_group(case):
    config = case["config"]
    if config["class"] == "Bidirectional":
        return "Bidirectional(" + config["forward_layer"]["class"] + ")"
    if config["class"] == "GRU":
        return "GRU reset_after=" + str(config.get("reset_after", True))
    return config["class"]


def cases():
    """Yield (group, dtype, run) for every golden case; run() returns (outputs, expected)."""
    for case in simple.CASES:
        def run(case=case):
            name = case["name"]
            layer = simple._layer(case)
            kwargs = {k: simple.ARRAYS[f"{name}.{k}"] for k in case["inputs"] if k != "x"}
            expected = [simple.ARRAYS[f"{name}.out{i}"] for i in range(case["outputs"])]
            return layer(simple.ARRAYS[f"{name}.x"], **kwargs), expected
        yield "Keras SimpleRNN", case["config"]["dtype"], run
    for case in models.LAYER_CASES:
        def run(case=case):
            layer = models.layer_from_config(case["config"], case["dtype"])
            layer.set_weights(models.weights_of(case, case["config"]["name"]))
            name = case["name"]
            states = [models.ARRAYS[f"{name}.{k}"] for k in case["inputs"] if k.startswith("initial_state")]
            out = layer(models.ARRAYS[f"{name}.x"], initial_state=states or None, mask=models.ARRAYS.get(f"{name}.mask"))
            return out, models.expected_outputs(case)
        yield "Keras " + keras_layer_group(case), case["dtype"], run
    for case in models.MODEL_CASES:
        def run(case=case):
            model = models.built_model(case)
            inputs = [models.ARRAYS[f"{case['name']}.{k}"] for k in case["inputs"]]
            return model(inputs if len(inputs) > 1 else inputs[0]), models.expected_outputs(case)
        yield "Keras models", case["dtype"], run
    for kind, case, filename in files.KERAS:
        def run(kind=kind, case=case, filename=filename):
            model = fastrnn.load(files.FILES / filename)
            return model(files.keras_inputs(kind, case)), files.keras_expected(kind, case)
        yield f"{'Keras 2' if kind == 'keras2' else 'Keras 3'} files", case["dtype"], run
    for case in torch_cases.CASES:
        def run(case=case):
            kwargs = case["kwargs"]
            model = torch_cases.from_state_dict(torch_cases.state_dict(case),
                                                nonlinearity=kwargs.get("nonlinearity", "tanh"),
                                                batch_first=kwargs["batch_first"])
            return torch_cases.run(model, case), [torch_cases.ARRAYS[f"{case['name']}.{k}"] for k in case["outputs"]]
        yield f"torch nn.{case['module']}", case["dtype"], run


def reference_grid():
    """Yield (group, dtype, run) comparing a backend with the NumPy reference over the test grid."""
    for cell in grid.CELLS:
        for dtype in grid.DTYPES:
            for sequences, backwards, with_mask, with_state in np.ndindex(2, 2, 2, 2):
                def run(cell=cell, dtype=dtype, options=(sequences, backwards, with_mask, with_state)):
                    layer = grid.make_layer(dtype, cell=cell, return_sequences=bool(options[0]),
                                            go_backwards=bool(options[1]), return_state=True)
                    x, mask, h0 = grid.make_inputs(dtype, cell=cell)
                    kwargs = {"mask": mask if options[2] else None, "initial_state": h0 if options[3] else None}
                    return layer(x, **kwargs), grid.on_reference(lambda: layer(x, **kwargs))
                yield f"{cell} vs reference", dtype, run


def main():
    results = defaultdict(float)
    names = [name for name, reason in backends.available().items() if reason is None]
    previous = fastrnn.backend()
    try:
        for name in names:
            fastrnn.set_backend(name)
            for group, dtype, run in list(cases()) + list(reference_grid()):
                if name == "numpy" and group.endswith("vs reference"):
                    continue
                outputs, expected = run()
                key = (group, dtype, name)
                results[key] = max(results[key], largest(outputs, expected))
    finally:
        fastrnn.set_backend(previous)
    print(f"| group | dtype | {' | '.join(names)} |")
    print("|---|---|" + "---|" * len(names))
    for group, dtype in sorted({(g, d) for g, d, _ in results}):
        row = [f"{results[(group, dtype, n)]:.1e}" if (group, dtype, n) in results else "" for n in names]
        print(f"| {group} | {dtype} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
