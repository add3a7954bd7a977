"""The compiled float32 activations against float64 NumPy, over the whole float32 range.

csrc/fast_math.h computes sigmoid and tanh in float32 lanes, and silu, exp, elu and selu in double
precision rounded once; all must stay within 2 ulp of the float64 function everywhere: every
251st float32 bit pattern (positives and negatives, subnormals included) plus the special values
(bench/exhaustive_ulp.py sweeps all of them). The Numba kernels' float32 sigmoid and tanh
(fastrnn/_numba_fast_math.py, the same formulas) are held to the same bound.
"""
import numpy as np
import pytest

from fastrnn import _numba, activations
from fastrnn._kernels import activation as compiled

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38,
                     -3.4028235e38, 1e-5, -1e-5, 9.99e-6, 88.72, -88.72, 103.9, -103.9, 700.0, -700.0,
                     709.0, -745.0], np.float32)


def float32_grid():
    bits = np.arange(0, 2 ** 32, 251, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    return np.concatenate([values[np.isfinite(values)], SPECIALS])


def float64_truth(name, x):
    x = x.astype(np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return {
            "tanh": np.tanh,
            "sigmoid": lambda v: np.where(v >= 0, 1 / (1 + np.exp(-np.abs(v))), np.exp(v) / (1 + np.exp(v))),
            "silu": lambda v: v * np.where(v >= 0, 1 / (1 + np.exp(-np.abs(v))), np.exp(v) / (1 + np.exp(v))),
            "exponential": np.exp,
            "elu": lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))),
            "selu": lambda v: activations._SELU_SCALE * np.where(v > 0, v, activations._SELU_ALPHA * np.expm1(np.minimum(v, 0))),
        }[name](x)


def ulp_error(result, truth):
    """|result - truth| in units of the float32 spacing at truth (subnormal spacing near 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        truth32 = truth.astype(np.float32)
        spacing = np.spacing(np.abs(truth32)).astype(np.float64)
        error = np.abs(result.astype(np.float64) - truth) / spacing
    same_special = (np.isnan(result) & np.isnan(truth)) | (np.isinf(truth32) & (result == truth32))
    return np.where(same_special, 0.0, error)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "silu", "exponential", "elu", "selu"])
def test_float32_activation_within_2_ulp(name):
    x = float32_grid()
    result = x.copy()
    compiled(result, activations.code(name))
    errors = ulp_error(result, float64_truth(name, x))
    worst = int(np.argmax(errors))
    assert errors[worst] <= 2, f"{name}({x[worst]!r}) = {result[worst]!r}, {errors[worst]:.2f} ulp off"


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_numba_float32_activation_within_2_ulp(name):
    x = float32_grid()
    result = x.copy()
    _numba.activate(result, activations.code(name))
    errors = ulp_error(result, float64_truth(name, x))
    worst = int(np.argmax(errors))
    assert errors[worst] <= 2, f"{name}({x[worst]!r}) = {result[worst]!r}, {errors[worst]:.2f} ulp off"
    assert np.array_equal(np.isnan(result), np.isnan(x))


@pytest.mark.parametrize("activate", [compiled, _numba.activate], ids=["cython", "numba"])
def test_special_values(activate):
    x = np.array([np.nan, -0.0, np.inf, -np.inf, -1000.0, 1000.0], np.float32)
    t = x.copy()
    activate(t, activations.code("tanh"))
    assert np.isnan(t[0]) and np.signbit(t[1]) and list(t[2:]) == [1, -1, -1, 1]
    s = x.copy()
    activate(s, activations.code("sigmoid"))
    assert np.isnan(s[0]) and list(s[2:]) == [1, 0, 0, 1]
