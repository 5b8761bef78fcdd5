"""Configuration from the environment, read at each use so tests can change it.

Every ``ASP_*`` variable is documented in docs/configuration.rst.  Values are
validated: an unknown tuning mode is an error, not a silent default.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = [
    "FALLBACK_CACHES",
    "TUNE_MODES",
    "cache_dir",
    "cache_sizes",
    "cflags_override",
    "codegen_settings",
    "compiler_override",
    "dump_ir",
    "jit_disabled",
    "num_threads",
    "parallel_threshold",
    "strict",
    "tiered",
    "tune_mode",
]

TUNE_MODES = ("off", "online", "exhaustive")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={os.environ[name]!r}: expected one of 1/0, true/false, "
                     "yes/no, on/off")


def strict() -> bool:
    """``ASP_STRICT=1``: raise specialization errors instead of falling back to Python."""
    return _flag("ASP_STRICT")


def jit_disabled() -> bool:
    """``ASP_DISABLE_JIT=1``: always run the plain Python."""
    return _flag("ASP_DISABLE_JIT")


def tiered() -> bool:
    """``ASP_TIERED`` (default on): a new signature's first call compiles one variant and
    returns its result; the others compile in the background and join the tuning when
    ready.  ``ASP_TIERED=0`` compiles every variant before the first result."""
    return "ASP_TIERED" not in os.environ or _flag("ASP_TIERED")


def dump_ir() -> bool:
    """``ASP_DUMP_IR=1``: print every intermediate IR to stderr."""
    return _flag("ASP_DUMP_IR")


def tune_mode() -> str:
    """``ASP_TUNE``: ``off`` (first variant), ``online`` (default) or ``exhaustive``."""
    mode = os.environ.get("ASP_TUNE", "online").strip().lower() or "online"
    if mode not in TUNE_MODES:
        raise ValueError(f"ASP_TUNE={mode!r}: expected one of {', '.join(TUNE_MODES)}")
    return mode


def cache_dir() -> Path:
    """``ASP_CACHE_DIR`` or the per-user cache directory; created with mode 0700."""
    env = os.environ.get("ASP_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("asp-sejits", appauthor=False))
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        pass  # asp.jit.trust.cache_root() reports it (clearly) where the directory is needed
    return path


def compiler_override() -> str | None:
    """``ASP_CC``: the C compiler to use instead of the guessed one."""
    return os.environ.get("ASP_CC") or None


def cflags_override() -> list[str] | None:
    """``ASP_CFLAGS``: replaces asp's optimisation flags (``-O3 -march=native -fopenmp``)."""
    value = os.environ.get("ASP_CFLAGS")
    return value.split() if value is not None else None


def parallel_threshold(default: int) -> int:
    """``ASP_PARALLEL_THRESHOLD``: run a generated loop on an OpenMP team only above this
    much work (points of a stencil, elements of an elementwise kernel); ``default``, each
    specializer's measured value, when unset.  ``0`` runs every call's parallel branch
    (the test suite does).  The value is baked into the generated C, so it is part of
    the code's cache keys (see :func:`codegen_settings`)."""
    value = os.environ.get("ASP_PARALLEL_THRESHOLD", "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"ASP_PARALLEL_THRESHOLD={value!r}: expected a non-negative integer")
    return n


def codegen_settings() -> str:
    """The settings that change generated source without being in a kernel's own digest;
    keys warm-start records and tuning results, so code made under one is never reused
    under another."""
    n = parallel_threshold(-1)
    return f"parallel_threshold={n}" if n >= 0 else ""


def num_threads() -> int:
    """``OMP_NUM_THREADS`` if set, else the number of usable cores."""
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS={env!r}: expected a positive integer") from None
        if n > 0:
            return n
    return usable_cpus()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


#: Cache sizes when the system does not say (bytes): L1 data, L2, L3 (none).
FALLBACK_CACHES = (32 << 10, 512 << 10, 0)


@functools.cache
def cache_sizes() -> tuple[int, int, int]:
    """This machine's (L1 data, L2, L3) bytes (the L2 of one core, the L3 shared): from
    sysfs, else ``os.sysconf``, else :data:`FALLBACK_CACHES`.  Code planned from them
    is this machine's: its cache and tuning keys carry the processor's identity."""
    found: dict[int, int] = {}
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(root.glob("index*")) if root.is_dir() else ():
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        if kind in ("Data", "Unified") and size.rstrip("KMG").isdigit():
            found.setdefault(level, int(size.rstrip("KMG")) * scale)
    for level, name in ((1, "SC_LEVEL1_DCACHE_SIZE"), (2, "SC_LEVEL2_CACHE_SIZE"),
                        (3, "SC_LEVEL3_CACHE_SIZE")):
        if level not in found:
            try:
                value = os.sysconf(name)
            except (ValueError, OSError):
                value = 0
            if value > 0:
                found[level] = value
    return tuple(found.get(level, FALLBACK_CACHES[level - 1]) for level in (1, 2, 3))


#: At most this many times its L2 is one CPU's share of the L3 taken to be (see
#: :func:`l3_share`).  The parts asp has run on pair a core with 1-8 times its L2:
#: Zen 2 and Zen 3 4 MiB of L3 a core at 512 KiB of L2, Zen 4 4 MiB at 1 MiB,
#: Sapphire and Emerald Rapids 1.9-5 MiB at 2 MiB.
L3_PER_L2 = 8


def l3_share(l2: int, l3: int) -> int:
    """The part of an L3 of ``l3`` bytes (:func:`cache_sizes`) that this process's CPUs
    can count on: at most :data:`L3_PER_L2` times ``l2`` per CPU it may run on.  sysfs
    reports the whole cache, and in a VM that is the host's socket: 300 MiB on a 2-vCPU
    Intel Xeon VM, where 4096^2 float64 grids (128 MiB) did not stay in cache from one
    step to the next (a ``K.kernel(u, r, out)`` ping-pong loop: ``static`` 10.9-11.3 ms a
    step, ``stream_jam4`` 6.7-6.9; 2048^2, 32 MiB: 1.72 both)."""
    return min(l3, L3_PER_L2 * l2 * usable_cpus())
