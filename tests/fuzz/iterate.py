"""Iterated stencils in the fuzzer: every variant of ``K.iterate`` of a generated kernel
(the blocked wavefronts, their jams, their vector and scalar sweeps) against the loop of
its compiled single step, bit for bit.

An iterate batch's kernels step a state: ``def kernel(self, u, a, s, out)`` in
``'interior'`` mode, each point of ``out`` written once from a local that sums a term
over the neighbours of ``u``, so that they can be blocked
(:func:`specializers.stencil.temporal.why_not_blocked`).  Half the batches are plain
arithmetic on the state's float type (the explicit-vector sweeps of
:mod:`specializers.stencil.vectors`); the others use the stencil generator's whole
grammar (the scalar sweeps).  Each kernel is a module of its own: the selector branch
that lets other kinds share a compilation would keep every kernel off the vector path.

The reference is ``u = K(u, a, s)`` ``steps`` times: the compiled single step, which the
stencil kind fuzzes against Python, each step on a grid of the state's geometry made by
the oracle.  The loop as users write it (``u = K(u, a, s)``, the geometry carried by
the :class:`~specializers.stencil.GridArray` each call returns) must give the same
bits too.  The blocked iteration computes every point by the
same expression in the same order (``-ffp-contract=off``), so it must give the same bits:
NaN where NaN, zeros of the same sign.  Grids are large enough for several tiles, and
the step counts are rarely a multiple of a depth.
"""
from __future__ import annotations

import ast
import itertools
import os

import numpy as np
from hypothesis import strategies as st

from tests.fuzz.gen import _NP_SCALARS, ST, Batch, Body, Ctx, E, bodies, edge_values, kind_of

__all__ = ["IT", "iterate_batches", "iterate_source", "run_iterate", "state"]

IT = "iterate"
_DTYPES = ("float64", "float64", "float32", "int64", "int32")
_CONSTS = ("0.5", "2.0", "-4.0", "0.25", "1.0", "3.0", "0.1")


@st.composite
def _arith(draw, leaves: tuple[str, ...], depth: int) -> E:
    """``+ - * /`` and negation over ``leaves`` and float constants: what the vector
    sweeps compute (a call or a comparison keeps a sweep scalar)."""
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        pool = leaves if draw(st.integers(0, 3)) else _CONSTS
        return E("leaf", draw(st.sampled_from(pool)), kind="f")
    if draw(st.integers(0, 6)) == 0:
        return E("un", "-", (draw(_arith(leaves, depth - 1)),), "f")
    op = draw(st.sampled_from("+-*/+*"))
    return E("bin", op, (draw(_arith(leaves, depth - 1)), draw(_arith(leaves, depth - 1))), "f")


def _grid(rng, dtype: str, shape: tuple, specials: bool) -> np.ndarray:
    if dtype.startswith("int"):
        a = rng.integers(-3, 4, size=shape).astype(dtype)
    else:
        a = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if specials:  # a few edge values (NaN and inf spread as the steps go)
        flat = a.reshape(-1)
        for v in rng.choice(np.array(edge_values(dtype), dtype=object), size=3):
            flat[rng.integers(flat.size)] = v
    return a


@st.composite
def iterate_batches(draw, size: int, depth: int = 3,
                    avoid: frozenset[str] = frozenset()) -> Batch:
    """``size`` kernels stepping one state (``u``) of one shape and dtype."""
    ndim = draw(st.sampled_from([1, 2, 2, 2, 3]))
    shape = {1: (draw(st.integers(8, 3000)),),
             2: (draw(st.integers(6, 90)), draw(st.integers(6, 90))),
             3: tuple(draw(st.integers(5, 22)) for _ in range(3))}[ndim]
    arith = draw(st.booleans())
    dt = draw(st.sampled_from(("float64", "float32") if arith else _DTYPES))
    da = dt if "mixed" in avoid else draw(st.sampled_from(_DTYPES))
    # A NumPy scalar (strong: typed as its dtype) a quarter of the time: in plain
    # arithmetic one of the state's float type or the other (a float64 scalar makes a
    # float32 state's sweep compute in double), else any but uint64.
    scalar = draw(st.sampled_from(["float", "float", "float", "np"] if arith else
                                  ["int", "float", "int", "float", "np"]))
    if scalar == "np":
        scalar = "np." + draw(st.sampled_from(("float32", "float64") if arith else _NP_SCALARS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    specials = draw(st.integers(0, 3)) == 0
    u, a = _grid(rng, dt, shape, specials), _grid(rng, da, shape, specials)
    floating = scalar == "float" or scalar[3:].startswith("float")
    unsigned = scalar.startswith("np.uint")  # NumPy 2 refuses np.uint16(-3)
    sval = draw(st.sampled_from([0.1, 0.25, -0.5, 2.0, 1e-3]) if floating
                else st.integers(0 if unsigned else -3, 5))
    sval = (np.dtype(scalar[3:]).type(sval) if scalar.startswith("np.") else
            float(sval) if scalar == "float" else int(sval))
    geometry = ""
    if draw(st.booleans()):  # a neighbourhood of its own: reach 1-2, asymmetric
        reach = draw(st.integers(1, 2))
        offsets = [o for o in itertools.product(range(-reach, reach + 1), repeat=ndim) if any(o)]
        geometry = repr((reach, tuple(sorted(draw(st.lists(
            st.sampled_from(offsets), min_size=1, max_size=8, unique=True))))))
    if arith:
        kernels = [Body((("$n", draw(_arith(("u[x]", "s"), depth))),), None,
                        E("leaf", "$n", kind="f"), "=",
                        draw(_arith(("u[y]", "u[y]", "u[x]", "s"), depth - 1)))
                   for _ in range(size)]
    else:
        leaves = (("u[x]", kind_of(dt)), ("a[x]", kind_of(da)), ("s", kind_of(scalar)),
                  ("(x[0] + 1)", "i"))
        kernels = [draw(bodies(Ctx(ST, leaves, avoid), depth, kind_of(dt)))
                   for _ in range(size)]
    return Batch(IT, (("u", dt), ("a", da), ("s", scalar), ("out", dt)), tuple(kernels),
                 (u, a, sval),
                 (("steps", str(draw(st.integers(1, 40)))), ("arith", "1" if arith else ""),
                  ("parallel", draw(st.sampled_from("01"))), ("geometry", geometry),
                  ("start", draw(st.sampled_from(("", "python"))))))


def state(batch: Batch):
    """The state as the kernel gets it: the array, or a grid of the batch's neighbourhood
    (``ghost_depth`` its reach: the border 'interior' mode leaves zero)."""
    u = batch.inputs[0]
    if not batch.option("geometry"):
        return u
    from specializers.stencil import StencilGrid

    reach, offsets = ast.literal_eval(batch.option("geometry"))
    g = StencilGrid.from_array(u.copy())
    g.ghost_depth = reach
    g.neighbor_definition = [[(0,) * u.ndim], list(offsets)]
    return g


def _lines(body: Body, p: str, float_state: bool, start: bool = False) -> list[str]:
    """A kernel's point: its locals, ``n`` (the result; a float for a float state, so
    the neighbours' terms keep its type), the neighbours' terms added to it, the store.
    A general body's neighbour term reads the state (``u[y]``), not ``a``.  ``start``
    (a float state): ``n`` starts as the Python float ``0.0`` and its first term is
    added to it, the same value, but a local whose type changes on the way (float32
    after a Python float: tags the domain passes must decide)."""
    out = body.lines(p, stencil=False)[:-1]  # without 'return result'
    result = body.result.src(p)
    if body.nbr is None:
        return [*out, f"out[x] = {result}"]
    if body.lets and body.lets[0][0] == "$n":  # an arithmetic body: n is its first local
        init = []
        if start and float_state:
            first = out[0].split(" = ", 1)[1]
            out = [f"{p}n = 0.0", f"{p}n += {first}", *out[1:]]
    elif start and float_state:
        init = [f"{p}n = 0.0", f"{p}n += {result}"]
    else:
        init = [f"{p}n = {'0.0 + ' if float_state else ''}{result}"]
    nbr = body.nbr.src(p).replace("a[y]", "u[y]")
    return [*out, *init, "for y in u.neighbors(x, 1):", f"    {p}n += {nbr}", f"out[x] = {p}n"]


def iterate_source(batch: Batch, i: int, name: str = "Fuzz") -> str:
    """Kernel ``i`` as a module (``class Fuzz``); with ``name='K'``, as a report shows it."""
    floats = dict(batch.params)["u"].startswith("float")
    body = [" " * 12 + ln for ln in _lines(batch.bodies[i], "" if name == "K" else "v_",
                                          floats, bool(batch.option("start")))]
    head = "import math\n\nimport numpy as np\n\nfrom specializers.stencil import StencilKernel\n\n"
    helpers = batch.bodies[i].helper_lines("" if name == "K" else "v_")
    return "\n".join([head if name != "K" else "", *helpers, f"class {name}(StencilKernel):",
                      "    def kernel(self, u, a, s, out):",
                      "        for x in out.interior_points():", *body]) + "\n"


def _regrid(like, data: np.ndarray):
    """``data`` as a grid of ``like``'s geometry (or the array, if ``like`` is one).  The
    oracle's own copy of what specializers.stencil.grid's ``like`` does: the iterate
    call under test returns its result through that one."""
    if isinstance(like, np.ndarray):
        return data
    g = type(like).from_array(data)
    g.ghost_depth, g.neighbor_definition = like.ghost_depth, like.neighbor_definition
    return g


def _array(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.data  # a StencilGrid's


def _differs(ref: np.ndarray, got) -> np.ndarray:
    """Flat indices where ``got`` is not ``ref``'s bits (NaN payloads aside)."""
    got = np.asarray(got)
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return np.array([-1])
    same = ref == got
    if ref.dtype.kind == "f":
        same = (same & (np.signbit(ref) == np.signbit(got))) | (np.isnan(ref) & np.isnan(got))
    return np.flatnonzero(~same)


def run_iterate(batch: Batch, i: int, kernel_cls, mark, quiet, outcome, classify):
    """Kernel ``i``: the step loop, ``K.iterate`` and every variant of its iteration."""
    from asp.errors import FrontendError, SpecializationError
    from specializers.stencil.iterate import iteration_jit

    _, a, s = batch.inputs
    u, steps = state(batch), int(batch.option("steps"))
    res = outcome()
    k = kernel_cls()
    mark(f"run {i} steps")
    try:
        with quiet():
            ref = u
            for _ in range(steps):  # each step on a grid of u's geometry, made here
                ref = _regrid(u, k(ref, a, s))
        ref = _array(ref)
    except (FrontendError, SpecializationError) as exc:
        if type(exc).__name__ == "UnrepresentableValue":  # runs as Python: by design
            res.skipped = batch.inputs[0].size
            return res
        return outcome(classify(exc) if type(exc).__name__ == "CheckError" else "fallback",
                       f"{type(exc).__name__}: {exc}")
    except Exception:  # noqa: BLE001 - the Python raises on this grid: nothing to compare
        res.skipped = batch.inputs[0].size
        return res
    mark(f"run {i} loop")
    try:  # the loop users write: K(g) carries g's geometry to the next step (a GridArray)
        with quiet():
            loop = u
            for _ in range(steps):
                loop = k(loop, a, s)
    except Exception as exc:  # noqa: BLE001 - the same steps ran above
        return outcome("error", f"loop: {type(exc).__name__}: {exc}")
    mark(f"run {i} iterate")
    tune = os.environ.get("ASP_TUNE")
    os.environ["ASP_TUNE"] = "exhaustive"  # every point of every space compiled (and run)
    try:
        with quiet():
            got = k.iterate(u, a, s, steps=steps)
        runs = [("K(u) loop", np.asarray(loop)), ("iterate", _array(got))]
        it = iteration_jit(k, u, a, s)
        u = _array(u)  # the iteration's entries take arrays
        bufs = (np.zeros_like(u), np.zeros_like(u))
        variants = [] if it is None else list(it.specialization(u, a, s, *bufs, steps).entries)
    except Exception as exc:  # noqa: BLE001 - uncheckable (the Python of the iteration's
        # check steps raised): a fallback by design, as for the other kinds
        return outcome(classify(exc) if type(exc).__name__ == "CheckError" else "error",
                       f"iterate: {type(exc).__name__}: {exc}")
    finally:
        if tune is None:
            del os.environ["ASP_TUNE"]
        else:
            os.environ["ASP_TUNE"] = tune
    if it is None:
        res.detail = "not blocked"
    for v in variants:
        mark(f"run {i} {v}")
        out, tmp = np.zeros_like(u), np.zeros_like(u)
        try:
            with quiet():
                it.run_variant(v, u, a, s, out, tmp, steps)
        except Exception as exc:  # noqa: BLE001
            return outcome("error", f"{v}: {type(exc).__name__}: {exc}")
        runs.append((v, out))
    for label, got in runs:
        bad = _differs(ref, got)
        for j in bad[:3]:
            jj = max(int(j), 0)
            res.bad.append((label, tuple(int(p) for p in np.unravel_index(jj, ref.shape)),
                            None, ref.reshape(-1)[jj], np.asarray(got).reshape(-1)[jj]
                            if j >= 0 else "shape/dtype"))
        res.cases += ref.size
    if res.bad:
        res.status = "mismatch"
    return res
