"""Errors and warnings of asp.

Every stage of the pipeline raises a subclass of :class:`SpecializationError`
that names the stage and, where it knows it, the kernel's ``file:line``.  The
runtime catches them, warns once with :class:`AspFallbackWarning` and runs the
plain Python; with ``ASP_STRICT=1`` it re-raises instead.
"""
from __future__ import annotations

__all__ = [
    "AspFallbackWarning",
    "CheckError",
    "CompileError",
    "FrontendError",
    "LoadError",
    "LoweringError",
    "PassError",
    "SpecializationError",
    "UnrepresentableValue",
    "where",
]


def where(filename: str | None, lineno: int | None) -> str | None:
    """Format a source location the way compilers and tracebacks do."""
    if not filename:
        return None
    return f"{filename}:{lineno}" if lineno else filename


class SpecializationError(Exception):
    """A kernel could not be specialized; it will run as plain Python."""

    stage = "specialize"

    def __init__(self, message: str, *, location: str | None = None, kernel: str | None = None,
                 stage: str | None = None):
        self.message = message
        self.location = location
        self.kernel = kernel
        if stage is not None:  # e.g. an internal error, named by the stage it escaped from
            self.stage = stage
        super().__init__(self._text())

    def _text(self) -> str:
        # One line a user can act on: where, what, and which stage gave up.
        head = f"{self.location}: " if self.location else ""
        who = f" of {self.kernel}" if self.kernel and not self.location else ""
        return f"{head}{self.message} [{self.stage}{who}]"

    def with_context(self, *, location: str | None = None, kernel: str | None = None):
        """Fill in a location or kernel name the raiser did not know."""
        self.location = self.location or location
        self.kernel = self.kernel or kernel
        self.args = (self._text(),)
        return self


class FrontendError(SpecializationError):
    """The Python source could not be read or holds a construct the specializer rejects."""

    stage = "front end"


class PassError(SpecializationError):
    """A transform pass failed."""

    stage = "passes"


class LoweringError(SpecializationError):
    """The domain IR could not be lowered to the platform IR."""

    stage = "lowering"


class CompileError(SpecializationError):
    """The C compiler failed or is missing."""

    stage = "compile"


class CheckError(SpecializationError):
    """The compiled variants could not be checked against the Python, or all disagree."""

    stage = "check"

    @classmethod
    def none_left(cls, kernel: str, excluded: dict[str, str]) -> CheckError:
        """A tuning's error when no variant is left to run (each failed to build or to
        run, or disagreed): the call falls back with one warning.  (It was a bare
        RuntimeError, which escaped into the user's program.)"""
        why = next(iter(excluded.items()), None)
        return cls("no compiled variant is left to run: every one failed or was excluded"
                   + (f" (variant {why[0]}: {why[1]})" if why else ""), kernel=kernel)


class LoadError(SpecializationError):
    """A compiled object could not be loaded or called."""

    stage = "load"


class AspFallbackWarning(RuntimeWarning):
    """A kernel runs as plain Python because specialization failed."""


class UnrepresentableValue(ArithmeticError):
    """A compiled entry met a value its C types cannot hold as Python would, or where
    Python raises: ``int()`` of a NaN, an infinity or a float beyond 64 bits (Python's
    int is unbounded, or it raises), a Python int that the NumPy integer type it meets
    does not hold (NumPy raises OverflowError, or Python keeps the int), a :mod:`math`
    function outside its domain or range (``math.log(0.0)``), a Python number divided by
    zero.  The runtime runs that call as Python, which gives Python's answer or error."""

    #: How the call's one warning says it (an entry's error 1 in every specializer).
    reason = ("a value only Python represents, or an error only Python raises: an int "
              "beyond 64 bits or beyond the NumPy integer type it meets (-1 for a uint64), "
              "int() of a NaN or an infinity, a math function outside its domain or range, "
              "or a Python number divided by zero")
