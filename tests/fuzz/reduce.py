"""Reductions in the fuzzer: every variant of a generated ``@reduction(op)`` kernel
against NumPy's reduction of the Python terms.

A reduction batch is an elementwise batch (:func:`tests.fuzz.gen.batches`) whose
kernels are reduced with the batch's ``op``.  The reference is the specializer's own
definition, ``np.sum`` (``prod``, ``max``, ``min``) of the function on every element,
over the elements whose Python does not raise (the compiled code cannot raise).  The
calls run on the inputs as drawn and tiled past the parallel threshold, so the
per-thread partials and their combination are compared too.

Integers compare exactly (they wrap as NumPy's do); ``max``/``min`` exactly, NaN
included; float sums and products within the rounding a reassociated reduction
allows (:func:`reduction_tolerance`), and not at all where the order of the terms
decides between a finite result and an overflow.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["agrees", "reduction_tolerance", "run_reduction"]

#: The tiled run reduces more terms than this, so the default threshold takes the
#: parallel branch (the reduction's SERIAL_ELEMENTS is 32768).
PARALLEL_TERMS = 40000
#: NumPy's reductions by op, for the tolerance of max and min.
OPS_NP = {"max": np.max, "min": np.min}


def reduction_tolerance(terms: np.ndarray, op: str, result: np.dtype,
                        term: tuple[int, float, bool] = (0, 0.0, True)) -> float | None:
    """How far a reassociated reduction of ``terms`` may be from NumPy's, as an absolute
    bound (0.0: exactly, NaN equal to NaN), or None when the order of the terms decides
    the result (partial sums or products that may overflow or underflow in one order
    and not in another).  ``term`` is how far each term may be from Python's, (ulps,
    relative, integers exact), as :func:`tests.fuzz.worker.tolerance` says: libm's results
    differ (an integer result from a NumPy libm function is not compared: F17)."""
    ulps, rel, exact = term
    if result.kind != "f":
        return 0.0 if exact else None
    info = np.finfo(result)
    eps = float(info.eps)
    if result == np.float32 and rel:
        rel = 2.0**-14
    per_term = ulps * eps + rel  # relative, of each term
    t = terms.astype(np.float64)
    fin = np.isfinite(t)
    n = t.size
    if op in ("max", "min"):  # one of the terms, each within its own tolerance
        with np.errstate(invalid="ignore"):
            e = abs(float(OPS_NP[op](t))) if n else 0.0
        return per_term * e if math.isfinite(e) else 0.0
    if op == "+":
        with np.errstate(over="ignore"):
            s = float(np.sum(np.abs(t[fin])))
        if not math.isfinite(s) or s > float(info.max) / 4:
            return None
        if not fin.all():  # NaN, or infinities: the result is one of inf, -inf, NaN
            return 0.0
        # The compiled sum: per-thread and per-lane partials, in double; NumPy's: pairwise,
        # in the result's type (float32 stays float32).
        rounding = 4 * n * 2.0**-52 + (2 * math.log2(n + 1) + 4) * eps
        return (rounding + per_term) * s + 4 * float(info.smallest_subnormal)
    with np.errstate(all="ignore"):
        lg = np.log2(np.abs(t[fin & (t != 0)]))
    # Every partial product, in any order, stays between these powers of two.
    if lg[lg > 0].sum() >= info.maxexp - 2 or lg[lg < 0].sum() <= info.minexp + 2:
        return None
    if not fin.all() or (t == 0).any():
        return 0.0
    return n * (4 * eps + per_term) * float(np.prod(np.abs(t)))


def agrees(expected, got, tol: float) -> bool:
    """Whether a reduction's result ``got`` is ``expected`` within ``tol`` (0.0: exactly)."""
    e, g = np.asarray(expected), np.asarray(got)
    if e.dtype.kind != "f":
        return bool(e == g)
    with np.errstate(all="ignore"):
        if np.isnan(e) or np.isnan(g):
            return bool(np.isnan(e) and np.isnan(g))
        if tol == 0.0 or not np.isfinite(e):
            return bool(e == g)
        return bool(abs(float(g) - float(e)) <= tol)


def _valid_elements(spec, k: int, inputs: tuple) -> np.ndarray:
    """The elements whose Python does not raise."""
    from asp.runtime.mapargs import map_python

    n = next(a.size for a in inputs if isinstance(a, np.ndarray))
    try:
        map_python(spec.fn, (k, *inputs))
        return np.ones(n, bool)
    except Exception:  # noqa: BLE001 - some element raised: find which
        pass
    valid = np.zeros(n, bool)
    for j in range(n):
        one = tuple(a[j:j + 1] if isinstance(a, np.ndarray) else a for a in inputs)
        try:
            map_python(spec.fn, (k, *one))
            valid[j] = True
        except Exception:  # noqa: BLE001
            pass
    return valid


def run_reduction(i: int, fn, variants: list[str], batch, mark, quiet, outcome_cls,
                  term: tuple[int, float]):
    """One kernel of a reduction batch: the call and every variant, on the valid
    elements as drawn and tiled past the parallel threshold; ``term``: how far each
    term may be from Python's (:func:`reduction_tolerance`)."""
    from specializers.reduction import OPS

    spec = fn.jit.specializer
    op = batch.option("op")
    res = outcome_cls()
    with quiet():
        valid = _valid_elements(spec, i, batch.inputs)
        inputs = tuple(a[valid] if isinstance(a, np.ndarray) else a for a in batch.inputs)
        terms = spec.terms((i, *inputs))
    res.skipped = int((~valid).sum())
    from tests.fuzz.worker import holds, numpy_dtype  # the worker imports this module
    own = numpy_dtype(spec.fn, i, inputs) if terms.size else None
    if not holds(own, terms.dtype):
        res.bad.append(("dtype", None, None, f"terms of {own} (NumPy's)",
                        f"terms of {terms.dtype} (asp's)"))
        res.status = "mismatch"
        return res
    reps = PARALLEL_TERMS // max(terms.size, 1) + 1
    big = tuple(np.tile(a, reps) if isinstance(a, np.ndarray) else a for a in inputs)
    empty = OPS[op][1] is None and terms.size == 0   # max/min of nothing: ValueError
    runs = []
    for data, ts in ((inputs, terms), (big, np.tile(terms, reps))):
        with quiet():
            expected = None if empty else OPS[op][0](ts)
        tol = None if empty else reduction_tolerance(ts, op, np.asarray(expected).dtype,
                                                     term)
        if not empty and tol is None:
            res.skipped += 1  # the order of the terms decides: not compared
            continue
        suffix = "" if data is inputs else f"@{ts.size}"
        runs += [(f"{v}{suffix}", data, expected, tol) for v in ["call", *variants]]
    for label, data, expected, tol in runs:
        mark(f"run {i} {label}")
        name = label.split("@")[0]
        try:
            with quiet():
                got = fn(i, *data) if name == "call" else \
                    fn.jit.run_variant(name, i, *data, None)
        except ValueError as exc:
            if empty:
                res.cases += 1
                continue
            return outcome_cls("error", f"{label}: ValueError: {exc}")
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ == "UnrepresentableValue":
                res.skipped += 1  # Python's own answer (see run_ew): not compared
                continue
            return outcome_cls("error", f"{label}: {type(exc).__name__}: {exc}")
        if empty:
            res.bad.append((label, None, None, "ValueError", got))
            continue
        g = np.asarray(got).reshape(-1)
        if g.size != 1 or g.dtype != np.asarray(expected).dtype:
            res.bad.append((label, None, None, f"{np.asarray(expected).dtype} scalar",
                            f"{g.dtype} {g.shape}"))
        elif not agrees(expected, g[0], tol):
            res.bad.append((label, None, None, expected, g[0]))
        res.cases += 1
    _python_raised(i, fn, variants, batch, valid, res, mark, quiet)
    if res.bad:
        res.status = "mismatch"
    return res


#: Elements where the Python raised that are reduced alone through every variant.
PYTHON_RAISED = 3


def _python_raised(i: int, fn, variants: list[str], batch, valid, res, mark, quiet) -> None:
    """Where the Python raised, no variant may give a number: each reports the element
    (UnrepresentableValue: the call then runs as Python, which raises).  The first few
    such elements, each reduced alone."""
    for j in np.flatnonzero(~valid)[:PYTHON_RAISED]:
        one = tuple(a[j:j + 1] if isinstance(a, np.ndarray) else a for a in batch.inputs)
        point = tuple(a[0] if isinstance(a, np.ndarray) else a for a in one)
        for v in variants:
            mark(f"run {i} {v} where the Python raised")
            try:
                with quiet():
                    got = fn.jit.run_variant(v, i, *one, None)
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ != "UnrepresentableValue":
                    res.bad.append((v, int(j), point, "UnrepresentableValue",
                                    f"{type(exc).__name__}: {exc}"))
                continue
            res.bad.append((v, int(j), point, "the Python raises",
                            np.asarray(got).reshape(-1)[0]))
            break
