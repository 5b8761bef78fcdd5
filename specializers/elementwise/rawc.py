"""The raw-C form: a C snippet over the rows of numpy arrays, on one or many threads.

::

    f = make_c_function("return 3*x*x*x + 2*x*x + x + 1;", [("double", "x")], "double")
    call_c_function(f, (x, y), 0, len(x))                 # y[r] = f(x[r]) for rows [0, n)
    h = call_c_function_parallel(f, (x, y), 0, len(x), 2, 2)  # two threads, half each
    wait_for_parallel_finish(h)

``arrays`` holds one array per input, in order, then the output; rows are
the first axis and every element of a row is computed.  Access mode 1
stripes rows over threads (thread t takes rows t, t+T, ...), mode 2 gives
each thread one contiguous chunk.  Unlike the module it is modelled on, every
type, shape, name and row range is checked before native code runs.

C has no Python twin of its own: give one as ``python=`` (a function of the
same scalar inputs) and a C function that cannot be built (no compiler, a
read-only or untrusted cache, a full disk, C that does not compile) runs as that
Python, with one :class:`~asp.errors.AspFallbackWarning`; ``ASP_STRICT=1``
raises instead.  Without a twin the :class:`~asp.errors.CompileError` is raised.
"""
from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from asp import config
from asp.errors import AspFallbackWarning, SpecializationError
from asp.jit import build
from asp.runtime import ArgSpec, as_native, make_entry
from asp.runtime.abi import MISS

__all__ = ["CFunction", "call_c_function", "call_c_function_parallel", "make_c_function",
           "wait_for_parallel_finish"]

CTYPES = {
    "int": np.dtype(np.intc), "long": np.dtype(np.int_), "float": np.dtype(np.float32),
    "double": np.dtype(np.float64), "int32_t": np.dtype(np.int32),
    "int64_t": np.dtype(np.int64), "unsigned char": np.dtype(np.uint8),
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # used with fullmatch: "x\n" is no name
_C_KEYWORDS = frozenset("""
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
    _Imaginary _Noreturn _Static_assert _Thread_local asm typeof __asm__ __typeof__
    """.split())
# Macros and type names of the headers the generated code includes (<stdint.h>, <math.h>):
# as a parameter name they would be replaced by the preprocessor or parse as a type.
_C_HEADER_NAMES = frozenset("""
    NAN INFINITY HUGE_VAL HUGE_VALF HUGE_VALL FP_NAN FP_INFINITE FP_ZERO FP_SUBNORMAL FP_NORMAL
    FP_ILOGB0 FP_ILOGBNAN FP_FAST_FMA FP_FAST_FMAF FP_FAST_FMAL MATH_ERRNO MATH_ERREXCEPT
    math_errhandling errno NULL M_E M_LOG2E M_LOG10E M_LN2 M_LN10 M_PI M_PI_2 M_PI_4 M_1_PI
    M_2_PI M_2_SQRTPI M_SQRT2 M_SQRT1_2 isnan isinf isfinite isnormal signbit fpclassify
    isgreater isgreaterequal isless islessequal islessgreater isunordered SIZE_MAX
    PTRDIFF_MIN PTRDIFF_MAX SIG_ATOMIC_MIN SIG_ATOMIC_MAX WCHAR_MIN WCHAR_MAX WINT_MIN
    WINT_MAX INTMAX_MIN INTMAX_MAX UINTMAX_MAX INTPTR_MIN INTPTR_MAX UINTPTR_MAX INTMAX_C
    UINTMAX_C
    """.split())
_C_HEADER_PATTERN = re.compile(r"U?INT(_LEAST|_FAST)?(8|16|32|64)_(MIN|MAX|C)")
# Names of the generated module itself (its function, its loop's variables).
_ASP_NAMES = frozenset({"out", "r", "c"})


def _name_problem(name) -> str | None:
    """Why ``name`` cannot be a parameter of the generated C function, or None."""
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        return "is not a C identifier (letters, digits and underscores, not starting with a digit)"
    if name in _C_KEYWORDS:
        return "is a C keyword"
    if name in _C_HEADER_NAMES or _C_HEADER_PATTERN.fullmatch(name):
        return "is a macro or name of the C library headers (<math.h>, <stdint.h>)"
    if name.startswith("__") or re.match(r"_[A-Z]", name):
        return "is reserved for the C implementation (it starts with '__' or '_' and a capital)"
    if name.endswith("_t"):
        return "is reserved for type names (names ending in '_t', e.g. int64_t)"
    if name in _ASP_NAMES or name.startswith("asp_"):
        return "is used by the generated code itself"
    return None
_TEMPLATE = """#include <stdint.h>
#include <math.h>

static inline {out} asp_user_fn({params})
{{
{body}
}}

int asp_rows(void **ptrs, const int64_t *dims, const double *f, const int64_t *i)
{{
    (void)f;
    const int64_t start = i[0], end = i[1], step = i[2], row = i[3];
{unpack}
    for (int64_t r = start; r < end; r += step) {{
        const int64_t base = r * row;
        for (int64_t c = 0; c < row; ++c)
            out[base + c] = asp_user_fn({call});
    }}
    return 0;
}}
"""


@dataclass
class CFunction:
    """A compiled C snippet: its inputs' C types and names and its output C type."""

    inputs: tuple[tuple[str, str], ...]
    out_ctype: str
    source: str
    _entries: dict = field(default_factory=dict, repr=False)
    _lib: object = field(default=None, repr=False)
    python: Callable | None = field(default=None, repr=False)

    @property
    def compiled(self) -> bool:
        """False when the C could not be built and the Python twin runs instead."""
        return self._lib is not None

    def entry(self, ndim: int):
        """The guarded entry for arrays of ``ndim`` dimensions (made once per ndim)."""
        e = self._entries.get(ndim)
        if e is None:
            dts = [CTYPES[c] for c, _ in self.inputs] + [CTYPES[self.out_ctype]]
            specs = tuple(ArgSpec("array", dt, ndim, write=(k == len(dts) - 1), group=0)
                          for k, dt in enumerate(dts)) + (ArgSpec("int"),) * 4
            e = make_entry(self._lib.address("asp_rows"), specs, keepalive=self._lib)
            self._entries[ndim] = e
        return e


def make_c_function(c_code: str, inputs, out_ctype: str, *,
                    python: Callable | None = None) -> CFunction:
    """Compile ``c_code``, the body of a C function of ``inputs`` that returns the output.

    ``inputs`` is a list of ``(ctype, name)``; C types: int, long, float, double,
    int32_t, int64_t, unsigned char; names must be C identifiers that are not C
    keywords, header macros (``NAN``, ``INFINITY``...) or reserved names.
    ``python``, a function of the same inputs (NumPy scalars) returning the
    output, runs instead if the C cannot be built, with one
    :class:`~asp.errors.AspFallbackWarning` (``ASP_STRICT=1`` raises).  Without
    it, raises :class:`asp.CompileError` (with the compiler's message if the code
    does not compile).
    """
    if not isinstance(c_code, str) or "return" not in c_code:
        raise ValueError("c_code must be a string: the body of a C function that returns "
                         "the output value (e.g. 'return x + 1;')")
    try:
        c_code.encode()
    except UnicodeEncodeError:
        raise ValueError("c_code holds characters that cannot be encoded as UTF-8") from None
    if python is not None and not callable(python):
        raise TypeError(f"python must be a function of the inputs, not {type(python).__name__}")
    if out_ctype not in CTYPES:
        raise TypeError(f"out_ctype {out_ctype!r} is not supported; expected one of "
                        f"{', '.join(CTYPES)}")
    if not isinstance(inputs, list | tuple) or not inputs:
        raise TypeError("inputs must be a non-empty list of (ctype, name) pairs")
    checked = []
    for k, pair in enumerate(inputs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(f"inputs[{k}] must be a (ctype, name) pair, got {pair!r}")
        ctype, name = pair
        if ctype not in CTYPES:
            raise TypeError(f"inputs[{k}]: C type {ctype!r} is not supported; expected one of "
                            f"{', '.join(CTYPES)}")
        problem = _name_problem(name)
        if problem is not None:
            raise ValueError(f"inputs[{k}]: {name!r} is not a usable C parameter name: it "
                             f"{problem}")
        checked.append((ctype, name))
    if len({n for _, n in checked}) != len(checked):
        raise ValueError("input names must be distinct")
    n = len(checked)
    unpack = [f"    const {c} *restrict in{k} = (const {c} *)ptrs[{k}];"
              for k, (c, _) in enumerate(checked)]
    unpack.append(f"    {out_ctype} *restrict out = ({out_ctype} *)ptrs[{n}];")
    source = _TEMPLATE.format(
        out=out_ctype, params=", ".join(f"{c} {nm}" for c, nm in checked), body=c_code,
        unpack="\n".join(unpack), call=", ".join(f"in{k}[base + c]" for k in range(n)))
    if python is not None and config.jit_disabled():
        return CFunction(inputs=tuple(checked), out_ctype=out_ctype, source=source,
                         python=python)
    kernel = "rawc:" + (c_code.strip().splitlines() or ["?"])[0][:40]
    try:
        lib = build(source, kernel=kernel)
    except SpecializationError as exc:
        if python is None or config.strict():
            raise
        warnings.warn(f"{exc}; running {getattr(python, '__qualname__', 'python')} as "
                      "plain Python instead", AspFallbackWarning, stacklevel=2)
        lib = None
    return CFunction(inputs=tuple(checked), out_ctype=out_ctype, source=source, _lib=lib,
                     python=python)


def _check(f, arrays, start_row, end_row) -> tuple[tuple, int, int]:
    if not isinstance(f, CFunction):
        raise TypeError(f"f must come from make_c_function, not {type(f).__name__}")
    if not isinstance(arrays, tuple | list):
        raise TypeError("arrays must be a tuple of numpy arrays: the inputs, then the output")
    want = len(f.inputs) + 1
    if len(arrays) != want:
        raise ValueError(f"arrays holds {len(arrays)} arrays; this function needs {want} "
                         f"({len(f.inputs)} input(s) and the output)")
    ctypes_ = [c for c, _ in f.inputs] + [f.out_ctype]
    names = [n for _, n in f.inputs] + ["output"]
    out = []
    shape = None
    for k, (a, ct, nm) in enumerate(zip(arrays, ctypes_, names)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"arrays[{k}] ({nm}) must be a numpy array, not {type(a).__name__}")
        if a.dtype != CTYPES[ct]:
            raise TypeError(f"arrays[{k}] ({nm}) has dtype {a.dtype}; the C type {ct} needs "
                            f"{CTYPES[ct]}")
        if a.ndim == 0:
            raise ValueError(f"arrays[{k}] ({nm}) must have at least one dimension (rows)")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(f"arrays[{k}] ({nm}) has shape {a.shape}; expected {shape}")
        if k == want - 1:
            if not a.flags.writeable:
                raise ValueError("the output array is read-only")
            if not (a.flags.c_contiguous and a.flags.aligned):
                raise ValueError("the output array must be C-contiguous and aligned")
            if any(np.may_share_memory(a, b) for b in arrays[:-1]):
                if not any(b is a for b in arrays[:-1]):
                    raise ValueError("the output array overlaps an input array")
        else:
            a = as_native(a)
        out.append(a)
    for nm, v in (("start_row", start_row), ("end_row", end_row)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{nm} must be an integer, not {type(v).__name__}")
    start_row, end_row = int(start_row), int(end_row)
    if not 0 <= start_row <= end_row <= shape[0]:
        raise ValueError(f"rows [{start_row}, {end_row}) are not within [0, {shape[0]}]")
    return tuple(out), start_row, end_row


def _run_python(f: CFunction, arrays: tuple, start: int, end: int, step: int) -> None:
    """What the C loop does, with the Python twin on NumPy scalars for each element."""
    *inputs, out = arrays
    n = out.shape[0]
    if start >= end:
        return
    flat_out = out.reshape(n, -1)  # C-contiguous (checked): a view
    flat_in = [a.reshape(n, -1) for a in inputs]
    with np.errstate(all="ignore"):  # C computes on silently, as the compiled form would
        for r in range(start, end, step):
            for c in range(flat_out.shape[1]):
                flat_out[r, c] = f.python(*(a[r, c] for a in flat_in))


def _run(f: CFunction, arrays: tuple, start: int, end: int, step: int) -> None:
    if f._lib is None:
        _run_python(f, arrays, start, end, step)
        return
    row = int(np.prod(arrays[0].shape[1:], dtype=np.int64))
    r = f.entry(arrays[0].ndim)(*arrays, start, end, step, row)
    if r is MISS:  # every guard was checked above; a miss here is a bug, not bad input
        raise SpecializationError("internal error: the raw C entry rejected checked arguments")


def call_c_function(f: CFunction, arrays, start_row: int, end_row: int) -> None:
    """Compute rows ``[start_row, end_row)`` of the output on the calling thread."""
    arrays, start, end = _check(f, arrays, start_row, end_row)
    _run(f, arrays, start, end, 1)


@dataclass
class ParallelHandle:
    """What :func:`wait_for_parallel_finish` waits for."""

    threads: list[threading.Thread]
    errors: list[BaseException]
    arrays: tuple  # kept alive until the threads finish
    finished: bool = False


def call_c_function_parallel(f: CFunction, arrays, start_row: int, end_row: int,
                             num_threads: int, access_mode: int) -> ParallelHandle:
    """Start ``num_threads`` threads over rows ``[start_row, end_row)``; returns a handle.

    ``access_mode`` 1 stripes rows across threads, 2 gives each a contiguous chunk.
    The native code runs without the GIL, so the threads run in parallel.
    """
    arrays, start, end = _check(f, arrays, start_row, end_row)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int | np.integer) \
            or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    if access_mode not in (1, 2):
        raise ValueError(f"access_mode must be 1 (stride rows) or 2 (chunk rows), "
                         f"got {access_mode!r}")
    num_threads = int(num_threads)
    errors: list[BaseException] = []
    ranges = []
    if access_mode == 1:
        ranges = [(start + t, end, num_threads) for t in range(num_threads)]
    else:
        n = end - start
        for t in range(num_threads):
            lo = start + n * t // num_threads
            hi = start + n * (t + 1) // num_threads
            ranges.append((lo, hi, 1))

    def work(lo, hi, step):
        try:
            _run(f, arrays, lo, hi, step)
        except BaseException as exc:  # reported by wait_for_parallel_finish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=rg, daemon=True) for rg in ranges]
    for t in threads:
        t.start()
    return ParallelHandle(threads=threads, errors=errors, arrays=arrays)


def wait_for_parallel_finish(handle: ParallelHandle) -> None:
    """Wait for every thread of ``handle``; re-raise the first error any of them hit."""
    if not isinstance(handle, ParallelHandle):
        raise TypeError("handle must come from call_c_function_parallel")
    for t in handle.threads:
        t.join()
    handle.finished = True
    if handle.errors:
        raise handle.errors[0]
