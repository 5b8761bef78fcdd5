"""The C toolchain: codepy's guessed toolchain, narrowed to plain C with asp's flags.

Generated kernels include no Python headers, so the toolchain drops Python's
include and library paths; that keeps a compile near 50 ms.  ``ASP_CC`` and
``ASP_CFLAGS`` override the compiler and the optimisation flags.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass

from asp import config
from asp.errors import CompileError

__all__ = ["DEFAULT_FLAGS", "Compiler", "compiler"]

DEFAULT_FLAGS = ("-O3", "-march=native", "-fopenmp")
_BASE_FLAGS = ("-fPIC", "-std=gnu11", "-fno-math-errno", "-Wno-unused-variable",
               "-Wno-unused-label", "-Wno-unknown-pragmas")


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
        return "\n".join([self.path, self.version, " ".join(self.flags)])

    def toolchain(self):
        """A codepy toolchain for this compiler, derived from the guessed one."""
        return _toolchain(self)


def _c_compiler_for(cc: str) -> str:
    """The C driver beside a C++ one (codepy guesses ``g++`` from Python's build)."""
    base = os.path.basename(cc)
    for cxx, c in (("g++", "gcc"), ("clang++", "clang"), ("c++", "cc")):
        if base.endswith(cxx):
            return os.path.join(os.path.dirname(cc), base[: -len(cxx)] + c)
    return cc


@functools.lru_cache(maxsize=8)
def _identify(cc: str, flags: tuple[str, ...], mtime: float) -> Compiler:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CompileError(f"C compiler {cc!r} cannot be run: {exc}") from None
    if out.returncode != 0:
        raise CompileError(f"C compiler {cc!r} --version failed: {out.stderr.strip()}")
    return Compiler(path=cc, version=out.stdout.strip().splitlines()[0], flags=flags)


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
    try:
        from codepy.toolchain import guess_toolchain

        return _c_compiler_for(guess_toolchain().cc)
    except Exception:  # codepy could not guess: fall back to the usual name
        return "cc"


@functools.lru_cache(maxsize=8)
def _toolchain(comp: Compiler):
    from codepy.toolchain import GCCToolchain, guess_toolchain

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

    try:
        guessed = guess_toolchain()
    except Exception:
        guessed = None
    ld_flags = ["-shared"] + (["-fopenmp"] if comp.openmp else [])
    fields = {
        "cc": comp.path,
        "ld": comp.path,
        "cflags": [*_BASE_FLAGS, *comp.flags],
        "ldflags": ld_flags,
        "include_dirs": [],
        "library_dirs": [],
        "libraries": ["m"],
        "defines": ["NDEBUG"],
        "undefines": [],
        "so_ext": ".so",
        "o_ext": ".o",
        "features": set(),
    }
    if guessed is not None and isinstance(guessed, GCCToolchain):
        base = dataclasses.replace(guessed, **fields)
        return QuietGCCToolchain(**{f.name: getattr(base, f.name)
                                    for f in dataclasses.fields(base)})
    return QuietGCCToolchain(**fields)
