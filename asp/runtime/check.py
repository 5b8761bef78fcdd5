"""Every compiled variant is checked against the Python before it is trusted.

:func:`check_variants` runs the user's Python on small arguments the
specializer makes (``Plan.check_args``: random values of the right kinds and
shapes), runs every variant on copies of the same arguments, and excludes the
variants that disagree.  When the Python itself raises on those arguments (a
kernel whose valid inputs random values do not hit, e.g. a lookup-table index),
it tries small arguments cut from the user's own call (``Plan.check_args_from``);
if the Python raises on those too, nothing could be checked and the
specialization fails with a message that says so: a variant is never trusted
unchecked.  The inputs that worked and the Python's results on them are kept on the
specialization (``Specialization.reference``): every later variant is checked on them.
"""
from __future__ import annotations

import numpy as np

from asp.errors import CheckError, UnrepresentableValue
from asp.runtime.abi import MISS

__all__ = ["agree", "check_variants", "copy_args"]


def copy_args(args: tuple) -> tuple:
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def agree(expected, got, rtol: float, atol: float) -> str | None:
    """None if the results agree, else a short reason."""
    if isinstance(expected, int) and not isinstance(expected, bool) and np.ndim(got) == 0:
        # A Python int (a reduction whose terms do not fit the compiled type: Python's
        # values): equal by value, never modulo the compiled type (F16: max of the
        # Python int -3 over uint64 terms came back as 2**64 - 3 and agreed).
        g = np.asarray(got)
        if g.dtype.kind in "iub":
            return None if int(g) == expected else f"{int(g)} != {expected} (a Python int)"
    if isinstance(expected, tuple | list):
        for e, g in zip(expected, got, strict=True):
            why = agree(e, g, rtol, atol)
            if why:
                return why
        return None
    e, g = np.asarray(expected), np.asarray(got)
    if e.shape != g.shape:
        return f"shape {g.shape} != {e.shape}"
    if e.dtype.kind in "fc" or g.dtype.kind in "fc":
        ok = np.isclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol,
                        equal_nan=True)
    elif g.dtype.kind in "iu" and e.dtype.kind in "biu" and e.dtype != g.dtype:
        # The Python computes with unbounded ints; the kernel in its output's integer type
        # (NumPy's rules, e.g. -uint8(1) == 255): compare modulo that type.
        ok = g == e.astype(g.dtype)
    else:
        ok = g == e
    if not np.all(ok):
        bad = int(np.size(ok) - np.count_nonzero(ok))
        return f"{bad} of {np.size(ok)} values differ from the Python reference"
    return None


def _reference(spec, make) -> tuple[tuple, tuple, object] | Exception:
    """(arguments, the Python's arguments after the call, its result), or what it raised."""
    try:
        args = make()
        expected_args = copy_args(args)
        with np.errstate(all="ignore"):  # random inputs may overflow: not the user's data
            expected = spec.run_python(expected_args)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's Python
        return exc
    return args, expected_args, expected


def check_variants(s, spec, call_args: tuple | None = None, names=None) -> None:
    """Run every variant of specialization ``s`` (or those in ``names``) on small inputs
    and exclude those that disagree with ``spec.run_python``; raise :class:`CheckError`
    when no input could be made on which the Python runs, or when no variant of ``s``
    is left."""
    plan = s.plan
    ref = s.reference
    if ref is None:
        ref = _reference(spec, plan.check_args)
        if isinstance(ref, Exception) and plan.check_args_from is not None \
                and call_args is not None:
            first = ref
            ref = _reference(spec, lambda: plan.check_args_from(call_args))
            if isinstance(ref, Exception):
                ref = first
        if isinstance(ref, Exception):
            raise CheckError(
                "the compiled code could not be checked: the Python raised "
                f"{type(ref).__name__}: {ref} on the check inputs", kernel=s.kernel)
        # Kept: the late variants are checked on the same inputs, also when no call's
        # arguments are at hand (absorbed at exit, or by ``specialization()``); without
        # it, a kernel whose Python raises on the random inputs had its rebuilt first
        # variant excluded as unchecked, and its record, saved so, crashed later processes.
        s.reference = ref
    args, expected_args, expected = ref
    for name, entry in s.entries.items():
        if names is not None and name not in names:
            continue
        got_args = copy_args(args)
        try:
            got = entry(*got_args)
        except UnrepresentableValue as exc:  # not the variant's fault: Python must run these
            raise CheckError(f"the compiled code could not be checked: {exc} on the check "
                             "inputs", kernel=s.kernel) from None
        except Exception as exc:  # noqa: BLE001 - a variant that fails is excluded
            s.tuning.exclude(name, f"{type(exc).__name__}: {exc}")
            s.check_failures[name] = str(exc)
            continue
        if got is MISS:
            s.tuning.exclude(name, "guard miss on check inputs")
            s.check_failures[name] = "guard miss"
            continue
        # Compare whatever the kernel writes: its result and its writable arguments.
        exp_parts = [expected] if plan.ret >= 0 else []
        got_parts = [got] if plan.ret >= 0 else []
        for i, sp in enumerate(plan.specs):
            if (sp.kind == "array" and sp.write and not sp.scratch and i != plan.ret
                    and got_args[i] is not None):
                exp_parts.append(expected_args[i])
                got_parts.append(got_args[i])
        why = agree(tuple(exp_parts), tuple(got_parts), plan.rtol, plan.atol)
        if why:
            s.tuning.exclude(name, why)
            s.check_failures[name] = why
    if all(name in s.check_failures for name in s.entries):
        first = next(iter(s.check_failures.items()))
        raise CheckError("every compiled variant disagrees with the Python reference "
                         f"(variant {first[0]}: {first[1]})", kernel=s.kernel)
