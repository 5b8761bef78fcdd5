"""The C toolchain: codepy's guessed toolchain, narrowed to plain C with asp's flags.

Generated kernels include no Python headers, so the toolchain drops Python's
include and library paths; that keeps a compile near 50 ms.  ``ASP_CC`` and
``ASP_CFLAGS`` override the compiler and the optimisation flags.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from asp import config
from asp.errors import CompileError

__all__ = ["DEFAULT_FLAGS", "Compiler", "compiler", "cpu_features", "cpu_flags"]

DEFAULT_FLAGS = ("-O3", "-march=native", "-fopenmp")
# A kernel's Python is its specification:
# -fwrapv: NumPy's integer arrays wrap on overflow; C's signed overflow is undefined, and
#   gcc optimizes as if it never happened (abs(2 * (x + x)) at INT64_MAX came out as -4,
#   NumPy gives 4).
# -ffp-contract=off: Python rounds a * b and then a * b - c; gcc (GNU C mode, FMA
#   hardware) fused them into one rounding (x * y - z at 1/3, 3, 1 gave -5.6e-17, Python
#   0.0).  Vectorization is unaffected.
# -frounding-math: gcc 12 folds 0.0 - X into -X when X "cannot be -0.0" (a conversion
#   from an integer, fabs, X + 0.0), which gives -0.0 where IEEE and Python give +0.0 for
#   X = 0: 1.0 // (0.0 - x) at x = 0 came out -inf, NumPy gives inf (the fuzzer's seed
#   120403).  The folds that depend on the sign of zero are off when the rounding mode may
#   change.  The price: constant expressions that round are computed at run time (write
#   them as literals; asp's own passes fold Python's constants before C sees them).
_BASE_FLAGS = ("-fPIC", "-std=gnu11", "-fno-math-errno", "-fwrapv", "-ffp-contract=off",
               "-frounding-math",
               "-Wno-unused-variable", "-Wno-unused-label", "-Wno-unknown-pragmas")


@dataclass(frozen=True)
class Compiler:
    """What identifies a build: the compiler's path, its version text and the flags."""

    path: str
    version: str
    flags: tuple[str, ...]

    @property
    def openmp(self) -> bool:
        return any(f in ("-fopenmp", "-qopenmp", "-fiopenmp") for f in self.flags)

    def identity(self) -> str:
        # The fixed flags change the meaning of the code too (-fwrapv): part of every key.
        # With -march=native (the default) the code is this processor's: a cache shared
        # with another kind (a home directory on a cluster's mixed nodes, a machine whose
        # processor changed) must not hand it an AVX-512 library it cannot run (SIGILL).
        parts = [self.path, self.version, " ".join((*_BASE_FLAGS, *self.flags))]
        if any(f.endswith("=native") for f in self.flags):
            parts.append(f"cpu {cpu_features()}")
        return "\n".join(parts)

    def toolchain(self):
        """A codepy toolchain for this compiler, derived from the guessed one."""
        return _toolchain(self)


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This processor's instruction-set features: the ``flags`` (``Features`` on ARM) of
    ``/proc/cpuinfo``; empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            line = next((x for x in f if x.startswith(("flags", "Features"))), "")
    except OSError:
        line = ""
    return frozenset(line.split(":", 1)[-1].split())


@functools.cache
def cpu_features() -> str:
    """A digest of :func:`cpu_flags` (the machine's architecture name where there are
    none): what ``-march=native`` compiles for.  The model name does not tell (this VM's
    says "AMD EPYC" on Zen 3 and on Zen 4, with and without AVX-512)."""
    import hashlib
    import platform

    text = " ".join(sorted(cpu_flags())) or platform.machine()
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _c_compiler_for(cc: str) -> str:
    """The C driver beside a C++ one (codepy guesses ``g++`` from Python's build)."""
    base = os.path.basename(cc)
    for cxx, c in (("g++", "gcc"), ("clang++", "clang"), ("c++", "cc")):
        if base.endswith(cxx):
            return os.path.join(os.path.dirname(cc), base[: -len(cxx)] + c)
    return cc


@functools.lru_cache(maxsize=8)
def _identify(cc: str, flags: tuple[str, ...], mtime: float) -> Compiler:
    version = _remembered_version(cc, mtime)
    if version is not None:
        return Compiler(path=cc, version=version, flags=flags)
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompileError(f"C compiler {cc!r} cannot be run: {exc}") from None
    if out.returncode != 0:
        raise CompileError(f"C compiler {cc!r} --version failed: {out.stderr.strip()}")
    version = (out.stdout.strip().splitlines() or ["unknown"])[0]
    _remember_version(cc, mtime, version)
    return Compiler(path=cc, version=version, flags=flags)


def _versions_file():
    """``compilers.json`` in the cache, or None when the cache is not safely ours (then
    the version is asked of the compiler each time: nothing is read from or written to
    a directory another user could write)."""
    from asp.errors import SpecializationError
    from asp.jit.trust import cache_root

    try:
        return cache_root() / "compilers.json"
    except SpecializationError:
        return None


def _remembered_version(cc: str, mtime: float) -> str | None:
    """A compiler's version text, remembered per (path, mtime): saves a subprocess per start."""
    import json

    from asp.jit.trust import read_nofollow

    path = _versions_file()
    if path is None:
        return None
    try:
        known = json.loads(read_nofollow(path))
        entry = known.get(cc)
        if entry and entry["mtime"] == mtime:
            return entry["version"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def _remember_version(cc: str, mtime: float, version: str) -> None:
    import json

    from asp.jit.trust import read_nofollow, write_atomic

    path = _versions_file()
    if path is None:
        return
    try:
        try:
            known = json.loads(read_nofollow(path))
            if not isinstance(known, dict):
                known = {}
        except (OSError, ValueError):
            known = {}
        known[cc] = {"mtime": mtime, "version": version}
        # A fresh, exclusively created temporary: a link planted at a predictable
        # name (.compilers.<pid>.tmp) made this write through it.
        write_atomic(path, json.dumps(known).encode())
    except OSError:
        pass


def compiler() -> Compiler:
    """The compiler asp uses now (from ``ASP_CC``/``ASP_CFLAGS`` or the guess)."""
    cc = config.compiler_override() or _guessed_cc()
    path = shutil.which(cc)
    if path is None:
        raise CompileError(f"no C compiler found (looked for {cc!r}; set ASP_CC to choose one)")
    flags = config.cflags_override()
    flags = tuple(DEFAULT_FLAGS if flags is None else flags)
    return _identify(path, flags, os.stat(path).st_mtime)


@functools.lru_cache(maxsize=1)
def _guessed_cc() -> str:
    # The compiler Python was built with, as codepy's guess_toolchain() reads it,
    # without importing codepy: this runs on every warm start.
    import sysconfig

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return _c_compiler_for(cc)


@functools.lru_cache(maxsize=8)
def _toolchain(comp: Compiler):
    from codepy.toolchain import GCCToolchain

    @dataclass(frozen=True)
    class QuietGCCToolchain(GCCToolchain):
        """codepy's GCC toolchain, but compiler output is captured, not printed."""

        def get_version(self) -> str:
            return comp.version

        def build_extension(self, ext_file, source_files, debug=False):
            cmd = [*self._cmdline(source_files, is_object=False), "-o", ext_file]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                from codepy import CompileError as CodepyCompileError

                raise CodepyCompileError(
                    "compilation failed: " + " ".join(cmd) + "\n" + out.stderr.strip())

    # Every field is asp's own: codepy's guess_toolchain() would only add a
    # ``g++ --version`` subprocess to each process's first build.
    fields = {
        "cc": comp.path,
        "ld": comp.path,
        "cflags": [*_BASE_FLAGS, *comp.flags],
        "ldflags": ["-shared"] + (["-fopenmp"] if comp.openmp else []),
        "include_dirs": [],
        "library_dirs": [],
        "libraries": ["m"],
        "defines": ["NDEBUG"],
        "undefines": [],
        "so_ext": ".so",
        "o_ext": ".o",
        "features": set(),
    }
    return QuietGCCToolchain(**fields)
