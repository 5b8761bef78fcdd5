"""What NumPy refuses on its scalars, a kernel refuses too.

The Python reference runs a kernel on NumPy scalars and, where NumPy raises TypeError,
redoes the element with Python numbers (``asp.runtime.mapargs``).  A construct NumPy
refuses but C computes would then be compared with Python's double-precision, unbounded
answer instead of NumPy's: a silent gap (``math.trunc`` of a float32 was one, F12 in
tests/test_fuzz.py).  This test walks the operators and functions the front end accepts,
on NumPy scalars of every kind, finds each combination NumPy alone refuses, and checks
that the front end refuses it (``ASP_STRICT``: an error, not a number)."""
from __future__ import annotations

import importlib.util
import itertools
import math
import operator
import sys

import numpy as np
import pytest

from asp.errors import FrontendError

DTYPES = ("bool", "int8", "int16", "int64", "uint8", "uint64", "float32", "float64")
UNARY = ("math.trunc(x)", "math.floor(x)", "math.ceil(x)", "+x", "-x", "~x", "abs(x)",
         "int(x)", "float(x)", "math.sqrt(x)", "math.isnan(x)", "np.sqrt(x)", "np.floor(x)",
         "np.trunc(x)", "np.abs(x)", "np.isnan(x)", "not x")
BINARY = ("x + y", "x - y", "x * y", "x / y", "x // y", "x % y", "x ** y", "x & y",
          "x | y", "x ^ y", "x << y", "x >> y", "x < y", "x == y", "min(x, y)", "max(x, y)",
          "math.atan2(x, y)", "np.arctan2(x, y)", "np.power(x, y)", "math.hypot(x, y)")
_ENV = {"math": math, "np": np, "operator": operator}


def _raises_type_error(expr: str, x, y) -> bool:
    try:
        with np.errstate(all="ignore"):
            eval(expr, _ENV, {"x": x, "y": y})  # noqa: S307 - the test's own expressions
    except TypeError:
        return True
    except Exception:  # noqa: BLE001 - a value error is not a refusal of the type
        return False
    return False


def numpy_only_refusals() -> list[tuple[str, str, str]]:
    """(expression, dtype of x, dtype of y) where NumPy's scalars raise TypeError and the
    same values as Python numbers do not."""
    out = []
    for expr in UNARY + BINARY:
        pairs = itertools.product(DTYPES, DTYPES if "y" in expr else ("int64",))
        for dx, dy in pairs:
            x, y = np.dtype(dx).type(3), np.dtype(dy).type(2)
            if _raises_type_error(expr, x, y) and not _raises_type_error(expr, x.item(),
                                                                        y.item()):
                out.append((expr, dx, dy))
    return out


REFUSED = numpy_only_refusals()


def test_the_walk_finds_the_known_refusals():
    found = {e for e, _, _ in REFUSED}
    assert {"math.trunc(x)", "+x", "-x", "x - y", "x & y", "x << y"} <= found, found


@pytest.mark.parametrize("expr,dx,dy", REFUSED, ids=[f"{e}-{a}-{b}" for e, a, b in REFUSED])
def test_a_kernel_refuses_what_numpy_refuses(expr, dx, dy, tmp_path, monkeypatch):
    monkeypatch.setenv("ASP_STRICT", "1")
    name = f"refusal_{abs(hash((expr, dx, dy)))}"
    path = tmp_path / f"{name}.py"
    path.write_text("import math\nimport numpy as np\n"
                    "from specializers.elementwise import elementwise\n\n"
                    f"@elementwise\ndef f(x, y):\n    return {expr}\n")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    x, y = np.full(8, 3, dtype=dx), np.full(8, 2, dtype=dy)
    with pytest.raises(FrontendError):  # refused by the front end, before any C
        module.f(x, y)
