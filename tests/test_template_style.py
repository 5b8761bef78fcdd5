"""The template style of writing a specializer goes through the same runtime as the
tree style: build, C-side guards, checks against the Python, tuning, fallback."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asp.codegen.template import render, template_function
from asp.errors import AspFallbackWarning, SpecializationError
from asp.ir import platform as ir
from asp.passes import dump
from asp.runtime import ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant

BODY = """
    (void)w_n0;
    % if wrong:
    for (int64_t i = 0; i < x_n0; ++i) out[i] = 2 * x[i] + y[i];
    % else:
    #pragma omp parallel for ${schedule}
    for (int64_t i = 0; i < x_n0; ++i) { w[i] = x[i]; out[i] = axpy(a, w[i], y[i]); }
    % endif
    return 0;
"""
HELPER = "return a * x + y;"


class Axpy(Specializer):
    """out = a * x + y over float64 vectors, with a scratch vector w."""

    name = "test.axpy"

    def __init__(self, variants=("static", "dynamic"), wrong=(), body=BODY):
        self.variants, self.wrong, self.body = variants, wrong, body
        self.python_calls = 0
        # The record key: everything the C depends on besides the signature.
        self.digest = hashlib.sha256(repr((variants, wrong, body)).encode()).hexdigest()

    def prepare(self, args):
        a, x, y = args
        if not isinstance(x, np.ndarray) or x.dtype != np.float64 or x.ndim != 1:
            raise TypeError("x: expected a 1-D float64 array")
        out, w = np.empty_like(x), np.empty_like(x)
        return Prepared((float(a), x, y, w, out), "f64", finish=lambda r: out)

    def plan(self, prepared):
        f64 = np.dtype(np.float64)
        specs = (ArgSpec("float"), ArgSpec("array", f64, 1, group=0),
                 ArgSpec("array", f64, 1, group=0),
                 ArgSpec("array", f64, 1, write=True, scratch=True, group=0),
                 ArgSpec("array", f64, 1, write=True, group=0))
        names = ("a", "x", "y", "w", "out")
        variants = tuple(Variant(v, template_function(
            f"axpy_{v}", names, specs,
            render(self.body, kernel=self.name, wrong=v in self.wrong,
                   schedule=f"schedule({v})")))
            for v in self.variants)
        helper = ir.Function("axpy", (ir.Param("a", "double"), ir.Param("x", "double"),
                                      ir.Param("y", "double")),
                             ir.Block((ir.Verbatim(HELPER),)), ret="double", static=True,
                             inline=True)
        rng = np.random.default_rng(0)
        return Plan("f64", specs, variants, helpers=(helper,),
                    check_args=lambda: (1.5, rng.standard_normal(50), rng.standard_normal(50),
                                        np.zeros(50), np.zeros(50)))

    def run_python(self, args):
        self.python_calls += 1
        a, x, y = args[:3]
        out = a * x + y
        if len(args) == 5:  # the check's arguments: the kernel's own
            args[4][...] = out
            args[3][...] = -1.0  # scratch: whatever the Python leaves there is not compared
        return out


def test_template_variants_run_checked_and_tuned():
    k = JitKernel(Axpy())
    x, y = np.random.default_rng(1).standard_normal((2, 100_000))
    for _ in range(12):
        np.testing.assert_allclose(k(2.0, x, y), 2.0 * x + y, rtol=1e-15)
    s = k.specialization(2.0, x, y)
    assert set(s.entries) == {"static", "dynamic"} and not s.check_failures
    for v in ("static", "dynamic"):
        np.testing.assert_allclose(k.run_variant(v, 2.0, x, y), 2.0 * x + y, rtol=1e-15)
    with pytest.raises(TypeError, match="x:"):  # the specializer's validation
        k(2.0, x.astype(np.float32), y)


def test_a_wrong_template_variant_is_excluded_by_the_check():
    k = JitKernel(Axpy(wrong=("dynamic",)))
    x, y = np.ones(10), np.ones(10)
    np.testing.assert_array_equal(k(3.0, x, y), 4.0)
    s = k.specialization(3.0, x, y)
    assert set(s.check_failures) == {"dynamic"}
    assert "differ from the Python reference" in s.check_failures["dynamic"]


def test_a_template_bug_falls_back_naming_the_stage():
    spec = Axpy(body=BODY.replace("${schedule}", "${no_such_name}"))
    k = JitKernel(spec)
    with pytest.warns(AspFallbackWarning, match="rendering the template failed.*no_such_name"):
        out = k(2.0, np.ones(4), np.ones(4))
    np.testing.assert_array_equal(out, 3.0)
    assert spec.python_calls == 1
    assert isinstance(k.last_error, SpecializationError)


def test_helper_functions_are_ir_in_the_dump():
    dump.enabled, dump.stages[:] = True, []
    try:
        k = JitKernel(Axpy(variants=("static",)))
        k.specialization(1.0, np.ones(3), np.ones(3))
        k.clear()
    finally:
        dump.enabled = False
    module = [text for title, text in dump.stages if title.endswith("module")]
    assert module and "static inline double axpy(double a, double x, double y)" in module[-1]
    assert "return a * x + y;" in module[-1]


def test_mako_loads_without_pygments_and_leaves_its_plugin_importable():
    """Mako's import loaded Pygments (38 of the ~60 ms a cold first call spent on Mako)
    only to highlight HTML error pages asp never renders."""
    code = ("import sys\n"
            "from asp.codegen.entry import mako_template_class\n"
            "T = mako_template_class()\n"
            "assert T.__module__ == 'mako.template'\n"
            "assert not any(m.startswith('pygments') for m in sys.modules), 'pygments'\n"
            "import mako.ext.pygmentplugin\n"
            "assert 'pygments' in sys.modules\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent), timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
