"""Stencil kernel objects: compiled kernels are shared per class (a new instance plans
and tunes nothing), instances that differ in what ``kernel()`` reads of ``self`` get
their own code and their own results, and a kernel pickles as its class and state
into a working kernel in another process."""
from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from specializers.stencil import StencilKernel
from tests.conftest import until_decided

ROOT = Path(__file__).resolve().parent.parent


class Heat(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            out[x] = u[x]
            for y in u.neighbors(x, 1):
                out[x] += r * (u[y] - u[x])


class Pick(StencilKernel):
    """Calls a function its object holds: compiled, to different C for min and max."""

    def __init__(self, op, **options):
        super().__init__(**options)
        self.op = op

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x]
            for y in u.neighbors(x, 1):
                out[x] = self.op(out[x], u[y])


class Scale(StencilKernel):
    """Reads a number off its object: a constant of code shared by the objects that hold
    the same number."""

    def __init__(self, coef, **options):
        super().__init__(**options)
        self.coef = coef

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = self.coef * u[x]


class Weighted(StencilKernel):
    """Calls one of its own methods, which may read anything of the object."""

    def __init__(self, w, **options):
        super().__init__(**options)
        self.w = w

    def weight(self):
        return self.w

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = self.weight() * u[x]


class Sum2(StencilKernel):
    """Two fields into an output it assigns at every point it visits."""

    def kernel(self, a, b, out):
        for x in out.interior_points():
            out[x] = a[x] + b[x]


def pick_reference(u: np.ndarray, op) -> np.ndarray:
    """``Pick(op)`` in NumPy: the centre and its four neighbours, the border zero."""
    out = np.zeros_like(u)
    c = u[1:-1, 1:-1]
    for sh in (u[:-2, 1:-1], u[2:, 1:-1], u[1:-1, :-2], u[1:-1, 2:]):
        c = op(c, sh)
    out[1:-1, 1:-1] = c
    return out


# -- one specialization per class ------------------------------------------------------------
def test_instances_share_one_specialization_and_its_tuning(rng):
    u, out = rng.random((40, 40)), np.zeros((40, 40))
    first = Heat(boundary="wrap")
    jit = first.jit_for(u, 0.1, out)
    n = len(jit.specialization(u, 0.1, out).variant_names)
    until_decided(lambda: first.kernel(u, 0.1, out),
                  lambda: jit.chosen_variant(u, 0.1, out) is not None, n)
    winner = jit.chosen_variant(u, 0.1, out)
    assert winner is not None
    spec = jit.specialization(u, 0.1, out)
    for _ in range(200):
        k = Heat(boundary="wrap")
        assert k.jit_for(u, 0.1, out) is jit
    again = np.zeros_like(out)
    k.kernel(u, 0.1, again)
    np.testing.assert_array_equal(again, out)
    assert jit.specialization(u, 0.1, out) is spec  # not planned, not tuned again
    assert jit.chosen_variant(u, 0.1, out) == winner
    # Other options are other code.
    assert Heat(boundary="nearest").jit_for(u, 0.1, out) is not jit
    assert Heat(boundary="wrap", should_unroll=False).jit_for(u, 0.1, out) is not jit


def test_a_function_held_by_the_instance_is_part_of_the_key(rng):
    u = rng.random((12, 11))
    lo, hi, lo2 = Pick(min), Pick(max), Pick(min)
    np.testing.assert_array_equal(lo(u), pick_reference(u, np.minimum))
    np.testing.assert_array_equal(hi(u), pick_reference(u, np.maximum))
    out = np.zeros_like(u)
    assert lo.jit_for(u, out) is lo2.jit_for(u, out)
    assert lo.jit_for(u, out) is not hi.jit_for(u, out)
    assert lo.jit_for(u, out).chosen_variant(u, out) != "python"  # compiled, both
    assert hi.jit_for(u, out).chosen_variant(u, out) != "python"
    # Their records on disk differ too: a new process must not load min's code for max.
    assert lo.jit_for(u, out).specializer.code_digest() != \
        hi.jit_for(u, out).specializer.code_digest()


def test_an_attribute_changed_after_calls_is_seen(rng):
    u = rng.random((10, 10))
    k = Pick(min)
    for _ in range(30):  # on the hot path by now
        k(u)
    k.op = max
    np.testing.assert_array_equal(k(u), pick_reference(u, np.maximum))


def test_instances_reading_different_numbers_give_their_own_results(rng):
    u = rng.random((90, 80))
    out = np.zeros_like(u)
    two, three = Scale(2.0), Scale(3.0)
    np.testing.assert_array_equal(two(u), Scale(2.0, pure_python=True)(u))
    np.testing.assert_array_equal(three(u), Scale(3.0, pure_python=True)(u))
    assert two.jit_for(u, out) is not three.jit_for(u, out)
    assert Scale(2.0).jit_for(u, out) is two.jit_for(u, out)  # equal numbers share code
    for k in (two, three):  # compiled: the number is a constant of each one's code
        assert k.jit_for(u, out).chosen_variant(u, out) != "python"
    k = Scale(7)
    for _ in range(30):  # the shared code for 7 is made by this instance, used hot ...
        k(u)
    k.coef = np.float32(0.5)  # ... which then changes: it gets other code, typed as
    np.testing.assert_array_equal(k(u), Scale(np.float32(0.5), pure_python=True)(u))
    np.testing.assert_array_equal(Scale(7)(u), Scale(7, pure_python=True)(u))
    Scale.coef = 4.0  # the class's number, where an instance has none
    plain = Scale.__new__(Scale)
    StencilKernel.__init__(plain)
    np.testing.assert_array_equal(plain(u), 4.0 * u * (np.pad(np.ones((88, 78)), 1) > 0))
    del Scale.coef


def test_numbers_equal_in_python_but_not_in_the_code_get_their_own_code(rng):
    """0.0 == -0.0, but 1 / c is inf for one and -inf for the other; a NaN equals no NaN,
    but all of them make the same code."""
    u = rng.random((40, 30)) + 0.5
    out = np.zeros_like(u)
    plus, minus = Scale(0.0), Scale(-0.0)
    assert plus.jit_for(u, out) is not minus.jit_for(u, out)
    for k in (plus, minus, plus):
        got = k(u)
        want = Scale(k.coef, pure_python=True)(u)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
    assert np.signbit(minus(u)[1:-1, 1:-1]).all() and not np.signbit(plus(u)).any()
    assert Scale(float("nan")).jit_for(u, out) is Scale(float("nan")).jit_for(u, out)
    assert np.isnan(Scale(float("nan"))(u)[1:-1, 1:-1]).all()


class Forgetful(StencilKernel):
    """An __init__ that does not call super().__init__()."""

    def __init__(self, coef):
        self.coef = coef

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = self.coef * u[x]


def test_a_kernel_whose_init_skips_the_base_class_works(rng):
    u = rng.random((50, 40))
    k = Forgetful(3.0)  # failed: 'Forgetful' object has no attribute 'pure_kernel'
    want = np.zeros_like(u)
    want[1:-1, 1:-1] = 3.0 * u[1:-1, 1:-1]
    np.testing.assert_array_equal(k(u), want)
    assert k.jit_for(u, np.zeros_like(u)).chosen_variant(u, np.zeros_like(u)) != "python"
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(k))(u), want)
    np.testing.assert_array_equal(copy.deepcopy(k).iterate(u, steps=1), want)


def test_a_number_that_is_not_real_runs_as_python(rng):
    u = rng.random((9, 8))  # Python stores a complex into a float grid: its TypeError
    with pytest.warns(AspFallbackWarning, match="self.coef"), \
            pytest.raises(TypeError, match="complex"):
        Scale(2 + 1j)(u)


def test_a_kernel_calling_its_own_methods_runs_on_its_own_instance(rng):
    u = rng.random((7, 9))
    a, b = Weighted(1.5), Weighted(-2.0)
    with pytest.warns(AspFallbackWarning):
        ra, rb = a(u), b(u)
    assert np.allclose(ra[1:-1, 1:-1], 1.5 * u[1:-1, 1:-1])
    assert np.allclose(rb[1:-1, 1:-1], -2.0 * u[1:-1, 1:-1])
    b.w = 4.0  # the method reads the instance as it is now
    assert np.allclose(b(u)[1:-1, 1:-1], 4.0 * u[1:-1, 1:-1])


def test_a_large_call_asks_once_whether_the_kernel_writes_every_point(rng, monkeypatch):
    """A large output comes unzeroed from the reusing allocator, and what to zero
    depends on whether the kernel assigns every point: asking prepares the call (the
    domain passes, in 'interior' mode), so the answer is remembered, but only once a
    call has shown its arguments valid (an invalid call answers 'no')."""
    from specializers.stencil.specializer import StencilSpecializer

    asked = []
    real = StencilSpecializer.writes_every_point

    def counting(self, args):
        asked.append(args)
        return real(self, args)

    monkeypatch.setattr(StencilSpecializer, "writes_every_point", counting)
    a = rng.random((600, 600))  # 2.9 MB: from the reusing allocator
    k = Sum2()
    with pytest.raises(ValueError, match="has shape"):
        k(a, rng.random((600, 601)))
    assert len(asked) == 1
    for _ in range(3):
        got = Sum2()(a, a)
        np.testing.assert_array_equal(got[1:-1, 1:-1], 2 * a[1:-1, 1:-1])
        assert not got[0].any() and not got[:, -1].any()  # the border, zeroed
    assert len(asked) == 2


# -- state, copies and pickles ---------------------------------------------------------------
def test_with_options_and_copies_make_fresh_kernels(rng):
    u = rng.random((10, 10))
    k = Pick(max, boundary="nearest")
    want = k(u)
    inner = k.with_options(boundary="interior")
    assert type(inner) is Pick and inner.boundary == "interior" and inner.op is max
    assert k.boundary == "nearest"
    np.testing.assert_array_equal(inner(u), pick_reference(u, np.maximum))
    for other in (copy.copy(k), copy.deepcopy(k), Pick.from_state(k.__getstate__())):
        assert other is not k and other.op is max
        np.testing.assert_array_equal(other(u), want)
    with pytest.raises(ValueError, match="boundary='wrapped' is not a boundary mode"):
        k.with_options(boundary="wrapped")
    assert set(k.__getstate__()) == {"boundary", "op"}


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_used_kernel_pickles_as_class_and_state(protocol, rng):
    u = rng.random((10, 10))
    k = Pick(max, boundary="reflect")
    want = k(u)  # it now holds native entries (ctypes), which cannot be pickled
    data = pickle.dumps(k, protocol=protocol)
    assert b"ctypes" not in data and b"asp.runtime" not in data
    back = pickle.loads(data)
    assert type(back) is Pick and back.boundary == "reflect" and back.op is max
    np.testing.assert_array_equal(back(u), want)


_KERNEL_MODULE = '''
from specializers.stencil import StencilKernel


class Pick(StencilKernel):
    def __init__(self, op, **options):
        super().__init__(**options)
        self.op = op

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x]
            for y in u.neighbors(x, 1):
                out[x] = self.op(out[x], u[y])
'''

_PRODUCE = '''
import pickle, sys
import cloudpickle
import numpy as np
import kmod

k = kmod.Pick(max, boundary="wrap")
u = np.random.default_rng(3).random((16, 13))
np.save("u.npy", u)
np.save("want.npy", k(u))  # compiled here first: the kernel holds native entries now
with open("k5.pickle", "wb") as f:
    pickle.dump(k, f, protocol=5)
cloudpickle.register_pickle_by_value(kmod)
with open("kcloud.pickle", "wb") as f:
    cloudpickle.dump(k, f)
'''

_CONSUME = '''
import json, pickle, sys, warnings
import numpy as np
from asp.errors import AspFallbackWarning

warnings.simplefilter("error", AspFallbackWarning)  # compiled, or this fails


class Recording(pickle.Unpickler):
    seen = []

    def find_class(self, module, name):
        self.seen.append(f"{module}.{name}")
        return super().find_class(module, name)


with open(sys.argv[1], "rb") as f:
    k = Recording(f).load()
u, want = np.load("u.npy"), np.load("want.npy")
out = np.zeros_like(u)
for _ in range(3):
    k.kernel(u, out)
print(json.dumps({"globals": Recording.seen, "equal": bool(np.array_equal(out, want)),
                  "cls": type(k).__name__, "module": type(k).__module__,
                  "variant": k.jit_for(u, out).chosen_variant(u, out)}))
'''


def _run(script: str, cwd: Path, path: list[Path], *args: str) -> str:
    """Run ``script`` with ``python -c`` in ``cwd`` with only ``path`` importable (its
    kernels live in files there); its standard output."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in path))
    done = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("which", ["k5.pickle", "kcloud.pickle"])
def test_a_kernel_unpickles_into_a_working_kernel_in_another_process(which, tmp_path):
    """Pickled after it ran (protocol 5 by reference; cloudpickle by value, as Dask ships
    a class from a test module or notebook), it loads in a process where its module
    cannot be imported (cloudpickle) and runs compiled there."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "kmod.py").write_text(textwrap.dedent(_KERNEL_MODULE))
    work = tmp_path / "work"
    work.mkdir()
    _run(_PRODUCE, work, [ROOT, src])
    path = [ROOT, src] if which == "k5.pickle" else [ROOT]  # by value: no kmod there
    got = json.loads(_run(_CONSUME, work, path, which).strip().splitlines()[-1])
    assert got["equal"] and got["cls"] == "Pick"
    assert got["variant"] != "python"
    assert not [g for g in got["globals"]
                if g.startswith(("ctypes", "asp.runtime", "asp.jit", "asp._native"))]
    if which == "kcloud.pickle":
        assert "kmod.Pick" not in got["globals"]  # the class came whole
