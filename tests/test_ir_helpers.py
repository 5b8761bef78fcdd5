"""Helper functions travel as IR (``Plan.helpers``), not as preamble text: the user's
scalar function of an elementwise map or a reduction, and the stencil's border slabs,
are :class:`~asp.ir.platform.Function` nodes that ``ASP_DUMP_IR=1`` (here the dump's
API, ``asp.passes.dump``) shows in the module it prints."""
from __future__ import annotations

import numpy as np
import pytest

from asp.codegen import function_to_cgen
from asp.ir import platform as ir
from asp.passes import dump
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel


@pytest.fixture
def stages(monkeypatch):
    """The dump's stages, collected (not printed) while the test runs."""
    monkeypatch.setenv("ASP_TIERED", "0")  # every variant in the one module dumped
    monkeypatch.delenv("ASP_DUMP_IR", raising=False)
    monkeypatch.setattr(dump, "stages", [])
    monkeypatch.setattr(dump, "enabled", True)
    return dump.stages


def module_stage(stages, kernel: str) -> str:
    (text,) = [t for title, t in stages if kernel in title and title.endswith(": module")]
    return text


def assert_helper_in_dump(plan, stages, kernel: str, name: str | None = None) -> ir.Function:
    (helper,) = [h for h in plan.helpers if name is None or h.name == name]
    assert isinstance(helper, ir.Function)
    assert helper.name not in plan.preamble  # not text the passes cannot see
    assert str(function_to_cgen(helper)) in module_stage(stages, kernel)
    return helper


@elementwise
def damped_cubic(x, k):
    return 3 * x**3 - k * x + 1


@reduction("+")
def weighted_square(x, w):
    return w * x * x


def test_elementwise_function_is_a_helper_in_the_dump(stages):
    x = np.linspace(-1, 1, 50)
    np.testing.assert_allclose(damped_cubic(x, 0.5), 3 * x**3 - 0.5 * x + 1, rtol=1e-12)
    s = damped_cubic.jit.specialization(x, 0.5, None)
    helper = assert_helper_in_dump(s.plan, stages, "damped_cubic")
    assert helper.static and helper.inline and helper.ret == "double"
    # every variant calls it
    for v in s.plan.variants:
        assert any(isinstance(n, ir.Call) and n.func == helper.name for n in v.function.walk())


def test_reduction_term_is_a_helper_in_the_dump(stages):
    x = np.linspace(-1, 1, 101)
    np.testing.assert_allclose(weighted_square(x, 2.0), np.sum(2.0 * x * x), rtol=1e-12)
    s = weighted_square.jit.specialization(x, 2.0, None)
    assert_helper_in_dump(s.plan, stages, "weighted_square")


class Blur(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.5 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += 0.125 * u[y]


def test_stencil_border_slabs_are_a_helper_in_the_dump(stages):
    u = np.random.default_rng(3).random((12, 10))
    k = Blur(boundary="reflect")
    s = k.specialization(u, np.zeros_like(u))
    helper = assert_helper_in_dump(s.plan, stages, "Blur", "stencil_border")
    assert helper.worksharing
    # its own stage too, before the module
    assert any(title.endswith("Blur.kernel border: input") for title, _ in stages)
    # and the boundary mode's index remapping it calls, the only one the module has
    assert_helper_in_dump(s.plan, stages, "Blur", "asp_reflect")
    # (the neighbour loop is unrolled: no offset table, no linear offsets to compute)
    assert [h.name for h in s.plan.helpers] == ["asp_reflect", "stencil_border",
                                                "stencil_serial"]
    # the serial loop the variants call below the threshold, which calls the slabs
    serial = assert_helper_in_dump(s.plan, stages, "Blur", "stencil_serial")
    assert any(title.endswith("Blur.kernel serial: input") for title, _ in stages)
    assert any(isinstance(n, ir.Call) and n.func == "stencil_border" for n in serial.walk())
    assert "asp_wrap" not in s.source and "asp_linear_offsets" not in s.source
