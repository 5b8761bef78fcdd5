"""How matrix powers gives up native code: one warning, then SciPy; ``ASP_STRICT=1`` raises.

Every way native code can fail -- rendering the C, building it (a compiler
error, a read-only or full cache, an unwritable ``HOME``), loading it, or a
variant's plan -- reaches the caller as one :class:`SpecializationError` that
names the kernel and the stage.  :func:`native` turns a failed build into one
:class:`AspFallbackWarning` and ``None``, and remembers the failure for the same
build settings, so a solver that asks again for the same kernels neither
rebuilds nor warns twice.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import TypeVar

from asp import config
from asp.errors import AspFallbackWarning, CompileError, SpecializationError

__all__ = ["PlanningError", "RenderError", "forget_failures", "give_up", "native", "stage"]

T = TypeVar("T")


class RenderError(SpecializationError):
    """The Mako template of a kernel could not be rendered."""

    stage = "render"


class PlanningError(SpecializationError):
    """The structural analysis of the matrix or a variant's plan failed."""

    stage = "planning"


# failures already warned about, keyed by what was built and the settings that decide
# whether building can work (the compiler, its flags, where the cache lives)
_failed: dict[tuple, SpecializationError] = {}
_SETTINGS = ("ASP_CC", "ASP_CFLAGS", "ASP_CACHE_DIR", "HOME", "XDG_CACHE_HOME")


def stage(error: type[SpecializationError], kernel: str, fn: Callable[[], T]) -> T:
    """``fn()``, with any exception it raises turned into ``error`` naming ``kernel``.

    An ``OSError`` (a read-only cache, a full disk) becomes a :class:`CompileError`
    whatever ``error`` is: it comes from building, never from rendering.
    """
    try:
        return fn()
    except SpecializationError as exc:
        raise exc.with_context(kernel=kernel) from None
    except Exception as exc:
        cls = CompileError if isinstance(exc, OSError) else error
        raise cls(f"{type(exc).__name__}: {exc}", kernel=kernel) from exc


def give_up(exc: SpecializationError, *, warn: bool = True, stacklevel: int = 3) -> None:
    """Raise ``exc`` under ``ASP_STRICT=1``; otherwise warn (if ``warn``) and return."""
    if config.strict():
        raise exc
    if warn:
        warnings.warn(f"matrix powers: {exc}; running with SciPy instead", AspFallbackWarning,
                      stacklevel=stacklevel + 1)


def native(factory: Callable[..., T], *args, stacklevel: int = 3) -> T | None:
    """``factory(*args)`` (a cached kernel builder), or None after one fallback warning.

    ``ASP_DISABLE_JIT=1`` gives None silently.  A failure is remembered for these
    arguments and build settings: asking again gives None without rebuilding or
    warning again (under ``ASP_STRICT=1`` it is tried and raised every time).
    """
    if config.jit_disabled():
        return None
    key = (getattr(factory, "__qualname__", repr(factory)), *args,
           *(os.environ.get(name) for name in _SETTINGS))
    known = _failed.get(key)
    if known is not None and not config.strict():
        return None
    try:
        # the factory names its kernel and stage; anything it lets through is still caught
        return stage(CompileError, "matrix_powers", lambda: factory(*args))
    except SpecializationError as exc:
        _failed[key] = exc
        give_up(exc, stacklevel=stacklevel + 1)
        return None


def forget_failures() -> None:
    """Forget remembered build failures (tests that change the environment use this)."""
    _failed.clear()
