"""Code replaced in place: a kernel runs the Python its functions hold now.

A function's ``__code__``, ``__defaults__`` and ``__kwdefaults__`` can be assigned, and
IPython's ``%autoreload`` does exactly that when a module is edited: it reloads the
module, then brings the old module's functions and the methods of its old classes up to
date in place, so that objects created before the edit run the new code.  Before, asp
kept running the code it had compiled from the old text, with no warning (a stencil
instance, even a new instance of the same class, a helper imported from the edited
module, a default changed): the native entry now guards those three attributes of the
kernel's function and of every helper, as it guards the names the code reads.
"""
from __future__ import annotations

import importlib
import sys
import textwrap
import types

import numpy as np
import pytest

from asp.frontend.source import attach_source, get_source
from specializers.stencil import StencilKernel
from tests.test_helpers import onto_the_hot_path

_OLD: dict[tuple[str, str], list] = {}


def autoreload(module: types.ModuleType) -> None:
    """What ``%autoreload 2`` does to an edited module: reload it, then update every
    earlier version of its functions, and the functions of its earlier classes, in place
    from the new ones (it remembers them all, as IPython does)."""
    for name, obj in vars(module).items():
        if isinstance(obj, types.FunctionType | type):
            _OLD.setdefault((module.__name__, name), []).append(obj)
    importlib.reload(module)
    for (modname, name), olds in _OLD.items():
        now = vars(module).get(name) if modname == module.__name__ else None
        for was in olds:
            if isinstance(was, types.FunctionType) and isinstance(now, types.FunctionType):
                _update(was, now)
            elif isinstance(was, type) and isinstance(now, type) and was is not now:
                for key, attr in vars(was).items():
                    if isinstance(attr, types.FunctionType) \
                            and isinstance(vars(now).get(key), types.FunctionType):
                        _update(attr, vars(now)[key])


def _update(old, new) -> None:
    for attr in ("__code__", "__defaults__", "__kwdefaults__", "__doc__", "__dict__"):
        setattr(old, attr, getattr(new, attr))


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """``write(name, text)``: a module file in a directory on ``sys.path`` (no bytecode
    cache: a file edited within the second would load its old bytecode)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    written = []

    def write(name: str, text: str) -> None:
        if name not in written:  # (no module of another test by that name)
            sys.modules.pop(name, None)
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
        importlib.invalidate_caches()
        written.append(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)
    _OLD.clear()


HELPERS = """
    def scale(x, k={k}):
        return x * {factor}
"""
KERNELS = """
    from specializers.elementwise import elementwise
    from specializers.reduction import reduction
    from cr_scaling import scale

    @elementwise
    def shifted(x):
        return scale(x) + 1.0

    @reduction("+")
    def total(x):
        return scale(x)
"""


def test_an_edited_helper_module_autoreloaded_is_what_its_kernels_run(modules, rng):
    modules("cr_scaling", HELPERS.format(k=2.0, factor="k"))
    modules("cr_kernels", KERNELS)
    import cr_kernels as kernels
    import cr_scaling as scaling

    x = rng.standard_normal(4099)
    np.testing.assert_array_equal(onto_the_hot_path(kernels.shifted, x), x * 2.0 + 1.0)
    assert kernels.total(x) == pytest.approx(np.sum(x * 2.0), rel=1e-12)
    for k, factor, want in ((2.0, "x", x), (5.0, "k", 5.0 * x), (5.0, "k * k", x * 5.0 * 5.0)):
        modules("cr_scaling", HELPERS.format(k=k, factor=factor).replace("x * x", "x"))
        autoreload(scaling)
        assert kernels.scale is not scaling.scale  # the kernel's module holds the old one
        np.testing.assert_array_equal(kernels.shifted(x), want + 1.0)
        assert kernels.total(x) == pytest.approx(np.sum(want), rel=1e-12)


def test_a_reload_that_changed_nothing_keeps_the_compiled_code(modules, rng):
    modules("cr_scaling", HELPERS.format(k=2.0, factor="k"))
    modules("cr_kernels", KERNELS)
    import cr_kernels as kernels
    import cr_scaling as scaling

    x = rng.standard_normal(2051)
    onto_the_hot_path(kernels.shifted, x)
    built = kernels.shifted.jit.specialization(x, None)
    autoreload(scaling)  # new code and defaults objects, the same meaning
    np.testing.assert_array_equal(kernels.shifted(x), x * 2.0 + 1.0)
    assert kernels.shifted.jit.specialization(x, None) is built


STENCIL = """
    from specializers.stencil import StencilKernel

    class Heat(StencilKernel):
        boundary = "interior"

        def kernel(self, u, r, out):
            for p in out.interior_points():
                lap = -4.0 * u[p]
                for q in u.neighbors(p, 1):
                    lap += u[q]
                out[p] = u[p] + {coef} * r * lap
"""


def test_an_edited_stencil_class_autoreloaded_runs_the_new_kernel(modules, rng):
    modules("cr_heat", STENCIL.format(coef="1.0"))
    import cr_heat as heat

    k = heat.Heat()
    u = rng.random((67, 131))
    first = k(u, 0.1)
    for _ in range(40):  # onto the hot path of the call and of iterate
        k(u, 0.1)
        k.iterate(u, 0.1, steps=3)
    modules("cr_heat", STENCIL.format(coef="0.5"))
    autoreload(heat)
    assert type(k) is not heat.Heat  # the instance's class is the old one, updated
    want = heat.Heat.kernel  # the loop of the new code, in Python
    ref = np.zeros_like(u)
    lap = -4.0 * u[1:-1, 1:-1] + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]
    ref[1:-1, 1:-1] = u[1:-1, 1:-1] + 0.5 * 0.1 * lap
    assert want.__code__ is type(k).kernel.__code__
    assert not np.allclose(first, ref)
    for kernel in (k, type(k)(), heat.Heat()):
        np.testing.assert_allclose(kernel(u, 0.1), ref, rtol=1e-13, atol=1e-15)
        steps = u
        for _ in range(3):
            steps = kernel(steps, 0.1)
        np.testing.assert_array_equal(kernel.iterate(u, 0.1, steps=3), steps)


def test_defaults_replaced_in_place_are_the_ones_bound(modules, rng):
    modules("cr_defaults", """
        from specializers.elementwise import elementwise
        from specializers.reduction import reduction

        def bump(x, b=1.0):
            return x + b

        @elementwise
        def f(x, k=2.0, *, c=0.0):
            return bump(x) * k + c

        @reduction("max")
        def g(x, k=2.0):
            return x * k
    """)
    import cr_defaults as d

    x = rng.standard_normal(1031)
    np.testing.assert_array_equal(onto_the_hot_path(d.f, x), (x + 1.0) * 2.0)
    assert d.g(x) == np.max(x * 2.0)
    d.f.py_func.__defaults__ = (3.0,)
    np.testing.assert_array_equal(d.f(x), (x + 1.0) * 3.0)
    d.f.py_func.__kwdefaults__ = {"c": 0.5}
    np.testing.assert_array_equal(d.f(x), (x + 1.0) * 3.0 + 0.5)
    d.bump.__defaults__ = (-1.0,)
    np.testing.assert_array_equal(d.f(x), (x - 1.0) * 3.0 + 0.5)
    d.g.py_func.__defaults__ = (-4.0,)
    assert d.g(x) == np.max(x * -4.0)


def test_a_kernel_given_a_new_signature_in_place_binds_it(modules, rng):
    modules("cr_signature", """
        from specializers.elementwise import elementwise

        @elementwise
        def f(x):
            return x * 2.0

        def g(x, k=3.0):
            return x * k
    """)
    import cr_signature as s

    x = rng.standard_normal(515)
    onto_the_hot_path(s.f, x)
    s.f.py_func.__code__, s.f.py_func.__defaults__ = s.g.__code__, s.g.__defaults__
    np.testing.assert_array_equal(s.f(x), x * 3.0)
    np.testing.assert_array_equal(s.f(x, 4.0), x * 4.0)


def test_source_attached_to_a_function_is_not_the_text_of_code_put_in_its_place(modules):
    modules("cr_attached", """
        def one(x):
            return x + 1

        def two(x):
            return x + 2
    """)
    import cr_attached as a

    attach_source(a.one)
    assert "x + 1" in get_source(a.one).text
    a.one.__code__ = a.two.__code__
    assert "x + 2" in get_source(a.one).text


def test_the_native_entry_refuses_a_malformed_function_guard(rng):
    from tests.test_helpers import blend

    x = rng.standard_normal(64)
    onto_the_hot_path(blend, x, x)
    entry = blend.jit.hot_entry
    with pytest.raises(TypeError, match="function, 0-2"):
        entry.assuming(((blend.py_func, 3, None),))
    with pytest.raises(TypeError, match="function, 0-2"):
        entry.assuming(((blend.py_func, "__code__", None),))


class Scaled(StencilKernel):
    boundary = "interior"

    def __init__(self, alpha: float):
        super().__init__()
        self.alpha = alpha

    def kernel(self, u, out):
        for p in out.interior_points():
            out[p] = u[p] * 2.0


class _ReadsAlpha(StencilKernel):
    def kernel(self, u, out):
        for p in out.interior_points():
            out[p] = u[p] * self.alpha


def test_a_kernel_method_replaced_to_read_an_attribute_reads_each_objects(rng):
    """Before the swap the kernel reads nothing of its object, so both objects share one
    runtime object (the class's); after it, each must get code for its own ``alpha``
    (before the fix the shared one was planned again from the first object's snapshot,
    and the second object got the first one's ``alpha``)."""
    u = rng.random((40, 37))
    k1, k2 = Scaled(3.0), Scaled(5.0)
    out = np.zeros_like(u)
    for _ in range(30):  # onto every remembered and hot path: K(u), K.kernel(u, out)
        k1(u), k2(u), k1.kernel(u, out), k2.kernel(u, out), k1.iterate(u, steps=2)
    saved = Scaled.kernel.__code__
    try:
        Scaled.kernel.__code__ = _ReadsAlpha.kernel.__code__
        for k, alpha in ((k1, 3.0), (k2, 5.0), (k1, 3.0), (k2, 5.0)):
            want = np.zeros_like(u)
            want[1:-1, 1:-1] = u[1:-1, 1:-1] * alpha
            np.testing.assert_array_equal(k(u), want)
            got = np.zeros_like(u)
            k.kernel(u, got)
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(k.iterate(u, steps=2), k(k(u)))
    finally:
        Scaled.kernel.__code__ = saved
