"""The fuzzer's child process: specialize a batch, run every variant, compare with Python.

Compiled kernels run here, not in the process that generates them, so a SIGFPE
or a segfault is a finding rather than the end of the run: before each compiled
call the worker writes the kernel's index to a progress file, and the parent
(:mod:`tests.fuzz.driver`) reads it when the worker dies.

Protocol: the parent writes pickled requests (a :class:`~tests.fuzz.gen.Batch`, a
directory, a tag) to stdin, length-prefixed; the worker answers with a pickled
:class:`Reply`.  :func:`main` runs the loop (imported, so pickled classes keep their module).
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import struct
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from tests.fuzz.gen import EW, RD, ST, Batch, E
from tests.fuzz.iterate import IT, iterate_source, run_iterate
from tests.fuzz.reduce import run_reduction
from tests.fuzz.render import (
    elementwise_module,
    singles_module,
    stencil_module,
    stencil_solo_module,
)

__all__ = ["Outcome", "Reply", "compare", "run_batch", "tolerance"]

#: Elementwise calls over more elements than this run the parallel branch.
PARALLEL_ELEMENTS = 16384
# Calls whose result is not correctly rounded (glibc's scalar and vector libm, NumPy's own
# SIMD loops); fabs, floor, ceil, trunc, copysign, fmod, square, sign and the angle
# conversions (one product by NumPy's rounded factor) are exact and not listed.
_LIBM = {"sqrt", "exp", "log", "log10", "log2", "log1p", "expm1", "sin", "cos", "tan", "asin",
         "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc",
         "exp2", "cbrt", "gamma", "lgamma", "atan2", "hypot", "pow", "arcsin", "arccos",
         "arctan", "arctan2", "power", "arcsinh", "arccosh", "arctanh"}


@dataclass
class Outcome:
    """What happened to one generated kernel: ``status`` is 'ok', 'fallback' (the front
    end rejects a construct: by design), 'mismatch', 'error' (a specialization failure
    that is not a front-end rejection, in strict mode) or, set by the parent, 'crash'."""

    status: str = "ok"
    detail: str = ""
    cases: int = 0          # element results compared (every variant counts)
    skipped: int = 0        # elements where the Python raised (nothing to compare)
    bad: list = field(default_factory=list)   # (variant, index, inputs, expected, got)


@dataclass
class Reply:
    outcomes: dict[int, Outcome]
    compiles: int = 0


# -- comparison ----------------------------------------------------------------------------------

def _libm_calls(e: E) -> bool:
    if e.op == "call" and e.text.split(".")[-1] in _LIBM:
        return True
    if e.op == "bin" and e.text == "**" and e.args[1].kind == "f":
        return True
    return any(_libm_calls(a) for a in e.args)


def _float_power(e: E) -> bool:
    """A float raised to an integer: NumPy's float32 ``x ** 3`` is its ``power`` (an ulp
    from the correctly rounded cube at a near-tie), asp's the exact cube rounded once."""
    if e.op == "bin" and e.text == "**" and e.args[0].kind == "f":
        return True
    return any(_float_power(a) for a in e.args)


def _numpy_libm(e: E) -> bool:
    if e.op == "call" and e.text.startswith("np.") and e.text[3:] in _LIBM:
        return True
    return any(_numpy_libm(a) for a in e.args)


def tolerance(body, params=()) -> tuple[int, float, bool]:
    """(ulps, relative) a float result may differ by: 4 ulp when the kernel is
    arithmetic only, else also a relative 2**-30 of the larger magnitude (2**-14 for a
    float32 result), for libm differences grown by later arithmetic; 2**-20 when float32
    meets wider types (Python's type after ``a if c else b`` depends on the arm taken),
    or when a kernel with float32 arguments calls libm: a float32 NumPy function
    (NumPy's own SIMD code, an ulp or two from the correctly rounded value asp's double
    computation gives) whose result a ``math`` function or a wider operand makes a
    double (F14: ``math.copysign(np.exp(y - 1.5), x)``).  The third element: whether an
    integer or bool result is compared exactly; not where the kernel calls a NumPy libm
    function (NumPy's own code, an ulp from the correctly rounded value of asp's libm
    call, which a later ``math.ceil``, ``int`` or comparison turns into a different
    integer: F17, ``math.ceil(np.log10(x))`` with ``x`` int16, where NumPy's float32
    ``log10(100)`` is 2.0000002 and the ceiling 3, asp's 2.0 and 2).  A float32 power
    counts as a float32 libm call (seed 204: ``((x - 5) ** 2) ** 3`` at float32 0.1 is
    13841.288 in NumPy, 13841.287 compiled, the correctly rounded cube; a float64 from a
    called kernel made the result a double)."""
    parts = [e for _, e in body.lets] + list(body.branch or ()) + [body.result]
    if body.nbr is not None:
        parts.append(body.nbr)
    dts = {dt.removeprefix("np.") for _, dt in params}
    libm = any(_libm_calls(e) for e in parts)
    exact = not any(_numpy_libm(e) for e in parts)
    if "float32" in dts and (len(dts) > 1 or libm or any(_float_power(e) for e in parts)):
        return (4, 2.0**-20, exact)
    return (4, 2.0**-30, exact) if libm else (4, 0.0, exact)


def _ulp_keys(a: np.ndarray) -> np.ndarray:
    """Integers that count representable values: adjacent floats differ by one."""
    bits = np.int64 if a.dtype == np.float64 else np.int32
    i = a.view(bits).astype(np.int64)
    mag = i & (0x7FFFFFFFFFFFFFFF if bits is np.int64 else 0x7FFFFFFF)
    return np.where(i < 0, -mag, mag)


def _ulp_distance(e: np.ndarray, g: np.ndarray) -> np.ndarray:
    ke, kg = _ulp_keys(e), _ulp_keys(g)
    # Exact in int64 unless the signs differ far from zero (then far apart anyway).
    safe = ((ke >= 0) == (kg >= 0)) | ((np.abs(ke) < 2**62) & (np.abs(kg) < 2**62))
    return np.where(safe, np.abs(np.where(safe, ke - kg, 0)), np.iinfo(np.int64).max)


def compare(expected: np.ndarray, got: np.ndarray, valid: np.ndarray,
            tol: tuple[int, float, bool]) -> list[tuple[int, str]]:
    """The flat indices (with a reason) where ``got`` differs from ``expected``."""
    if got.dtype != expected.dtype:
        return [(-1, f"dtype {got.dtype}, expected {expected.dtype}")]
    if got.shape != expected.shape:
        return [(-1, f"shape {got.shape}, expected {expected.shape}")]
    e, g, v = expected.reshape(-1), got.reshape(-1), valid.reshape(-1)
    ulps, rel, exact = tol
    if e.dtype.kind != "f":
        bad = (e != g) & v if exact else np.zeros(e.shape, bool)
        return [(int(j), "differs") for j in np.flatnonzero(bad)]
    if e.dtype == np.float32:
        rel = 2.0**-14 if rel else 0.0
    with np.errstate(all="ignore"):
        en, gn = np.isnan(e), np.isnan(g)
        same = (e == g) | (en & gn)
        close = (~en & ~gn & np.isfinite(e) & np.isfinite(g)
                 & (_ulp_distance(e, g) <= ulps))
        if rel:
            big = np.maximum(np.abs(e), np.abs(g)).astype(np.float64)
            close |= np.isfinite(big) & (np.abs(e.astype(np.float64) - g) <= rel * big)
    bad = ~(same | close) & v
    return [(int(j), "differs") for j in np.flatnonzero(bad)]


# -- the reference -------------------------------------------------------------------------------

def _quiet():
    warnings.simplefilter("ignore")
    return np.errstate(all="ignore")


def numpy_dtype(fn, k: int, inputs: tuple) -> np.dtype | str | None:
    """The dtype NumPy itself gives the kernel's results, found without asp's typing:
    the type of the values Python computes element by element when they all have one
    (NumPy scalars and 0-d arrays: their dtype; Python bool or float: the dtype ``np.asarray`` gives
    them; Python ints: ``"int"``, any integer type), else None (values of several
    types: nothing to say)."""
    from asp.runtime.mapargs import map_python
    with _quiet():
        try:
            values, _ = map_python(fn, (k, *inputs))
        except Exception:  # noqa: BLE001 - some element raised: not this oracle's case
            return None
    kinds = {type(v) for v in values}
    if len(kinds) != 1 or not values:
        return None
    (kind,) = kinds
    if issubclass(kind, np.generic | np.ndarray):  # a 0-d array: np.where's
        return values[0].dtype
    if kind is int:  # weak: NumPy takes a Python int into any integer type it meets
        return "int"
    if kind in (bool, float):
        return np.asarray(values).dtype
    return None


def holds(own: np.dtype | str | None, typed: np.dtype) -> bool:
    """Whether asp's result dtype ``typed`` may hold values NumPy gives as ``own`` (None:
    not known).  Not equality: a kernel returns the common type of every value it may
    return, paths not taken on these inputs included (docs/specializers/elementwise.rst),
    so its dtype may be wider than the values', or narrower within a kind (a Python
    float beside a float32 is a float32); it may not change their kind (float values
    in an integer dtype, negative ones in an unsigned one), which the comparison of
    values cannot see, the reference being cast to ``typed``.  Python ints are weak:
    beside a ``uint64`` their common type is ``uint64``."""
    if typed.kind == "O":  # Python's own numbers (an int beyond 64 bits): not asp's typing
        return True
    if isinstance(own, str):  # Python ints: an integer dtype, signed or not, or a float
        return typed.kind in "iuf"
    return own is None or bool(np.can_cast(own, typed, casting="same_kind"))


def ew_reference(spec, k: int, inputs: tuple) -> tuple[np.ndarray | None, np.ndarray]:
    """``run_python`` on the arrays; where it raises, element by element (an element
    whose Python raises is not compared: the compiled code cannot raise).  The
    reference's dtype is asp's typing of the kernel; :func:`numpy_dtype` checks it."""
    n = next(a.size for a in inputs if isinstance(a, np.ndarray))
    with _quiet():
        try:
            return spec.run_python((k, *inputs, None)), np.ones(n, bool)
        except Exception:  # noqa: BLE001 - some element raised: find which
            pass
        vals, valid = [], np.zeros(n, bool)
        for j in range(n):
            one = tuple(a[j:j + 1] if isinstance(a, np.ndarray) else a for a in inputs)
            try:
                vals.append(spec.run_python((k, *one, None))[0])
                valid[j] = True
            except Exception:  # noqa: BLE001
                vals.append(None)
    good = [v for v in vals if v is not None]
    if not good:
        return None, valid
    fill = np.zeros((), np.asarray(good[0]).dtype)
    return np.array([fill if v is None else v for v in vals], dtype=fill.dtype), valid


#: Elements of a kernel where the Python raised that are run alone through every variant.
PYTHON_RAISED = 3


def _point(one: tuple) -> tuple:
    return tuple(a[0] if isinstance(a, np.ndarray) else a for a in one)


# -- running ---------------------------------------------------------------------------------------

class _Progress:
    """Where the worker is, for the parent to read if it dies.  ``ASP_FUZZ_CRASH_AT``
    (a progress text such as 'run 2 call') makes the worker kill itself there with
    SIGSEGV: the test of the parent's crash handling."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.crash_at = os.environ.get("ASP_FUZZ_CRASH_AT")

    def mark(self, what: str) -> None:
        data = f"{what}\n".encode()
        os.pwrite(self.fd, data.ljust(64), 0)
        if what == self.crash_at:
            import signal

            os.kill(os.getpid(), signal.SIGSEGV)


def _import(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _write(directory: str, name: str, text: str):
    path = os.path.join(directory, f"{name}.py")
    with open(path, "w") as f:
        f.write(text)
    return _import(path, name)


def _classify(exc: Exception) -> str:
    """A specialization failure of one kernel: 'mismatch' when every variant disagreed
    with the Python on the runtime's own check, 'fallback' when the Python raised on
    every check input (asp refuses to trust unchecked code: by design), else 'error'."""
    text = str(exc)
    if "disagree" in text:
        return "mismatch"
    if type(exc).__name__ == "CheckError" and "could not be checked" in text:
        return "fallback"
    return "error"


def _error_line(exc) -> int | None:
    loc = getattr(exc, "location", None) or ""
    tail = loc.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _team(b: Batch) -> None:
    """Batches alternate: every call on the OpenMP team, or the defaults."""
    if b.option("parallel") == "1":
        os.environ["ASP_PARALLEL_THRESHOLD"] = "0"
    else:
        os.environ.pop("ASP_PARALLEL_THRESHOLD", None)


class Runner:
    """Runs one batch: types and groups kernels, builds, runs, compares."""

    def __init__(self, batch: Batch, directory: str, tag: str, progress: _Progress,
                 skip: frozenset[int] = frozenset()):
        self.batch, self.dir, self.tag, self.progress = batch, directory, tag, progress
        self.skip = skip
        self.out: dict[int, Outcome] = {}
        self.compiles = 0
        self.modules = 0

    def name(self) -> str:
        self.modules += 1
        return f"{self.tag}_{self.modules}"

    def run(self) -> Reply:
        which = [i for i in range(len(self.batch.bodies)) if i not in self.skip]
        if self.batch.specializer == IT:  # a module per kernel (see tests.fuzz.iterate)
            _team(self.batch)
            for i in which:
                mod = _write(self.dir, self.name(), iterate_source(self.batch, i))
                self.compiles += 1
                self.out[i] = run_iterate(self.batch, i, mod.Fuzz, self.progress.mark, _quiet,
                                          Outcome, _classify)
        elif self.batch.specializer in (EW, RD):
            for group in self.ew_groups(which):
                self.build_and_run(group)
        else:
            self.build_and_run(which)
            self.alone(which)
        return Reply(self.out, self.compiles)

    def alone(self, which: list[int]) -> None:
        """The first stencil kernel that ran ok without an ``if``, built again on its own
        (:func:`stencil_solo_module`): its variants besides ``static``, which the batch's
        branches leave out, against the same Python."""
        b = self.batch
        ok = [i for i in which if self.out.get(i) is not None and self.out[i].status == "ok"
              and b.bodies[i].branch is None]
        if not ok:
            return
        i = ok[0]
        mod = _write(self.dir, self.name(), stencil_solo_module(b, i))
        kernel = mod.Fuzz(boundary=b.option("boundary", "interior"))
        args = (i, *b.inputs[:-1], b.inputs[-1].copy())
        self.progress.mark(f"build alone {i}")
        try:
            spec = kernel.jit_for(*args).specialization(*args)
        except Exception as exc:  # noqa: BLE001 - it compiled in the batch: a finding
            self.out[i] = Outcome(_classify(exc), f"alone: {type(exc).__name__}: {exc}")
            return
        self.compiles += 1
        got = self.run_st(i, kernel, [v for v in spec.entries if v != "static"])
        res = self.out[i]
        res.cases += got.cases
        if got.status != "ok":
            res.status, res.detail = got.status, f"alone: {got.detail}"
            res.bad += [(f"alone:{label}", *rest) for label, *rest in got.bad]

    # typing: elementwise kernels sharing a compilation must return one type, else the
    # joined return type would round an int64 result through a double
    def ew_groups(self, which: list[int]) -> list[list[int]]:
        from asp.errors import FrontendError
        from asp.frontend import get_source
        from specializers.elementwise.frontend import FLOAT, INT, T, translate
        from specializers.elementwise.specializer import _ctype

        mod = _write(self.dir, self.name(), singles_module(self.batch, which))
        types = {}
        for (name, dt), a in zip(self.batch.params, self.batch.inputs):
            types[name] = INT if dt == "int" else FLOAT if dt == "float" else \
                T("bool", True) if dt == "pybool" else T(_ctype(a.dtype))
        groups: dict[str, list[int]] = {}
        for i in which:
            fn = getattr(mod, f"s_{i}")
            try:
                ret = translate(get_source(fn), fn, dict(types)).ret.ctype
            except FrontendError as exc:
                self.out[i] = Outcome("fallback", exc.message)
                continue
            except Exception as exc:  # noqa: BLE001 - a front-end crash is a finding
                self.out[i] = Outcome("error", f"front end: {type(exc).__name__}: {exc}")
                continue
            groups.setdefault(ret, []).append(i)
        return list(groups.values())

    def build_and_run(self, which: list[int]) -> None:
        from asp.errors import FrontendError

        while which:
            b = self.batch
            _team(b)
            if b.specializer in (EW, RD):
                text, owner = elementwise_module(b, which)
                mod = _write(self.dir, self.name(), text)
                kernel, jit = mod.fuzz, mod.fuzz.jit
                args = (which[0], *b.inputs, None)
            else:
                text, owner = stencil_module(b, which)
                mod = _write(self.dir, self.name(), text)
                kernel = mod.Fuzz(boundary=b.option("boundary", "interior"))
                args = (which[0], *b.inputs[:-1], b.inputs[-1].copy())
                jit = kernel.jit_for(*args)
            self.progress.mark(f"build {which}")
            try:
                spec = jit.specialization(*args)
            except FrontendError as exc:
                i = owner.get(_error_line(exc))
                if i is not None:
                    which = [j for j in which if j != i]
                    if b.specializer != ST and which:
                        # Elementwise kernels were accepted one by one, but a call of a
                        # helper is judged in its caller, here the batch's one function
                        # (its paths of other kernels' types): kernel i alone, as written.
                        self.build_and_run([i])
                        continue
                    # Rejected alone, where it was accepted: not by design.
                    status = "fallback" if b.specializer == ST else "error"
                    self.out[i] = Outcome(status, exc.message)
                    continue
                if len(which) == 1:
                    self.out[which[0]] = Outcome("error", f"{type(exc).__name__}: {exc}")
                    return
                half = len(which) // 2
                self.build_and_run(which[:half])
                self.build_and_run(which[half:])
                return
            except Exception as exc:  # noqa: BLE001 - isolate the kernel(s) that cause it
                if type(exc).__name__ == "CheckError" and len(which) > 1:
                    # The runtime's check ran the first kernel only (k == which[0]).
                    self.out[which[0]] = Outcome(_classify(exc), f"{type(exc).__name__}: {exc}")
                    which = which[1:]
                    continue
                if len(which) > 1:
                    half = len(which) // 2
                    self.build_and_run(which[:half])
                    self.build_and_run(which[half:])
                    return
                self.out[which[0]] = Outcome(_classify(exc), f"{type(exc).__name__}: {exc}")
                return
            self.compiles += 1
            for i in which:
                if b.specializer == RD:
                    self.out[i] = run_reduction(i, kernel, list(spec.entries), b,
                                                self.progress.mark, _quiet, Outcome,
                                                tolerance(b.bodies[i], b.params))
                    continue
                self.out[i] = (self.run_ew if b.specializer == EW else self.run_st)(
                    i, kernel, list(spec.entries))
            return

    def run_ew(self, i: int, fn, variants: list[str]) -> Outcome:
        b = self.batch
        res = Outcome()
        expected, valid = ew_reference(fn.specializer, i, b.inputs)
        if expected is None:
            res.skipped = int(valid.size)
            return res
        own = numpy_dtype(fn.specializer.fn, i, b.inputs)
        if not holds(own, expected.dtype):
            res.bad.append(("dtype", 0, None, f"{own} (NumPy's)", f"{expected.dtype} (asp's)"))
            res.status = "mismatch"
            return res
        tol = tolerance(b.bodies[i], b.params)
        n = expected.size
        reps = PARALLEL_ELEMENTS // n + 1
        big = tuple(np.tile(a, reps) if isinstance(a, np.ndarray) else a for a in b.inputs)
        runs = [("call", b.inputs, expected, valid)]
        runs += [(v, b.inputs, expected, valid) for v in variants]
        runs += [(f"{v}@{n * reps}", big, np.tile(expected, reps), np.tile(valid, reps))
                 for v in variants]
        for label, inputs, exp, ok in runs:
            self.progress.mark(f"run {i} {label}")
            try:
                with _quiet():
                    if label == "call":
                        got = fn(i, *inputs)
                    else:
                        got = fn.jit.run_variant(label.split("@")[0], i, *inputs, None)
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ == "UnrepresentableValue":
                    # A value only Python represents (int() of NaN, beyond 64 bits): by
                    # design the call runs as Python (ASP_STRICT: raises), so it is
                    # Python's own answer, not compared.
                    res.skipped += int(ok.size)
                    continue
                return Outcome("error", f"{label}: {type(exc).__name__}: {exc}")
            for j, why in compare(exp, np.asarray(got), ok, tol)[:3]:
                jj = j % n if j >= 0 else 0
                point = tuple(a[jj] if isinstance(a, np.ndarray) else a for a in b.inputs)
                res.bad.append((label, jj, point, exp.reshape(-1)[jj] if j >= 0 else why,
                                np.asarray(got).reshape(-1)[j] if j >= 0 else why))
            res.cases += int(ok.sum())
        res.skipped = int((~valid).sum())
        self.python_raised(i, fn, variants, valid, res)
        if res.bad:
            res.status = "mismatch"
        return res

    def python_raised(self, i: int, fn, variants: list[str], valid, res: Outcome) -> None:
        """Where the Python raised, the compiled code must not give a number: every variant
        reports the element (UnrepresentableValue: the call then runs as Python, which
        raises).  The first few such elements, alone."""
        b = self.batch
        for j in np.flatnonzero(~valid.reshape(-1))[:PYTHON_RAISED]:
            one = tuple(a.reshape(-1)[j:j + 1] if isinstance(a, np.ndarray) else a
                        for a in b.inputs)
            try:
                with _quiet():
                    fn.specializer.run_python((i, *one, None))
            except Exception:  # noqa: BLE001 - the error this element raised before
                pass
            for v in variants:
                self.progress.mark(f"run {i} {v} where the Python raised")
                try:
                    with _quiet():
                        got = fn.jit.run_variant(v, i, *one, None)
                except Exception as exc:  # noqa: BLE001
                    if type(exc).__name__ != "UnrepresentableValue":
                        res.bad.append((v, int(j), _point(one), "UnrepresentableValue",
                                        f"{type(exc).__name__}: {exc}"))
                    continue
                res.bad.append((v, int(j), _point(one), "the Python raises",
                                np.asarray(got).reshape(-1)[0]))
                break

    def run_st(self, i: int, kernel, variants: list[str]) -> Outcome:
        b = self.batch
        s, a, bb, out = b.inputs
        res = Outcome()
        ref = out.copy()
        jit = kernel.jit_for(i, s, a, bb, ref)
        try:
            with _quiet():
                jit.specializer.run_python((i, s, a, bb, ref))
        except Exception:  # noqa: BLE001 - the Python raises somewhere on the grid
            return self.st_python_raised(i, kernel, variants, res)
        valid = np.ones(out.shape, bool)
        tol = tolerance(b.bodies[i], b.params)
        for label in ["call", *variants]:
            self.progress.mark(f"run {i} {label}")
            try:
                got = _run_st(kernel, label, i, s, a, bb, out)
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ == "UnrepresentableValue":
                    # As for elementwise kernels: by design such a call runs as Python
                    # (ASP_STRICT, which the fuzzer sets, raises instead): Python's own
                    # answer, not compared.
                    res.skipped += out.size
                    continue
                return Outcome("error", f"{label}: {type(exc).__name__}: {exc}")
            for j, _why in compare(ref, np.asarray(got), valid, tol)[:3]:
                point = np.unravel_index(max(j, 0), out.shape)
                res.bad.append((label, tuple(int(p) for p in point), None,
                                ref.reshape(-1)[max(j, 0)], np.asarray(got).reshape(-1)[max(j, 0)]))
            res.cases += out.size
        if res.bad:
            res.status = "mismatch"
        return res

    def st_python_raised(self, i: int, kernel, variants: list[str], res: Outcome) -> Outcome:
        """Where the Python raises somewhere on the grid, the compiled code must not give
        numbers: the call and every variant report a value only Python represents
        (UnrepresentableValue: the call then runs as Python, which raises; ASP_STRICT,
        which the fuzzer sets, raises it instead).  (Such kernels were skipped whole: a
        variant that computed on where the Python raises went unseen.)"""
        s, a, bb, out = self.batch.inputs
        for label in ["call", *variants]:
            self.progress.mark(f"run {i} {label} where the Python raised")
            try:
                _run_st(kernel, label, i, s, a, bb, out)
            except Exception as exc:  # noqa: BLE001
                if type(exc).__name__ != "UnrepresentableValue":
                    res.bad.append((label, None, None, "UnrepresentableValue",
                                    f"{type(exc).__name__}: {exc}"))
                continue
            res.bad.append((label, None, None, "the Python raises", "numbers on every point"))
        res.skipped = out.size
        if res.bad:
            res.status = "mismatch"
        return res


def _run_st(kernel, label: str, i: int, s, a, bb, out: np.ndarray) -> np.ndarray:
    """Stencil kernel ``i`` on the batch's grids into a copy of ``out``: the call users
    make (``label`` 'call'), or one compiled variant."""
    got = out.copy()
    with _quiet():
        if label == "call":
            kernel.kernel(i, s, a, bb, got)
            return got
        return kernel.run_variant(label, i, s, a, bb, got)


def run_batch(batch: Batch, directory: str, tag: str, progress_path: str,
              skip: frozenset[int] = frozenset()) -> Reply:
    """Run ``batch`` (but the kernels in ``skip``), writing modules into ``directory``."""
    return Runner(batch, directory, tag, _Progress(progress_path), skip).run()


def main() -> None:
    """Serve requests from stdin until it closes."""
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by asp or gcc must not corrupt the replies
    inp = sys.stdin.buffer
    warnings.simplefilter("ignore")
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        req = pickle.loads(inp.read(struct.unpack("<Q", head)[0]))
        try:
            reply = run_batch(**req)
        except Exception as exc:  # noqa: BLE001 - report (where it was raised), keep serving
            import traceback

            f = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{os.path.relpath(f.filename)}:{f.lineno}"
            reply = Reply({i: Outcome("error", f"worker: {type(exc).__name__}: {exc} ({where})")
                           for i in range(len(req["batch"].bodies))})
        data = pickle.dumps(reply)
        proto.write(struct.pack("<Q", len(data)) + data)
        proto.flush()


if __name__ == "__main__":
    main()
