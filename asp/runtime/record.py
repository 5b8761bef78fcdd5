"""Specialization records: what a warm process needs to skip the whole pipeline.

After a signature is built, its record is written to ``specs/<key>.json`` in
the cache: for each variant the library key and entry symbol, the argument
guards, the error table, and which variants failed their correctness check.
The key hashes the kernel's code digest, the signature, the compiler identity,
asp's version and a fingerprint of the code generator's own source, so a
changed kernel, compiler, flag or specializer never reuses one.  A
new process with a warm cache then goes from call to result with no parsing,
no code generation and no template engine: it reads one small JSON file and
loads one shared object.  A record that is unreadable or whose library is gone
is ignored (the caller rebuilds and rewrites it).
"""
from __future__ import annotations

import builtins
import hashlib
import json
from pathlib import Path

import numpy as np

from asp import config
from asp.errors import SpecializationError
from asp.jit.cache import load_library
from asp.jit.toolchain import compiler
from asp.jit.trust import cache_subdir, write_atomic
from asp.runtime.abi import ArgSpec
from asp.runtime.fingerprint import source_fingerprint

__all__ = ["generator_fingerprint", "load_record", "record_key", "save_record"]


def generator_fingerprint(module: str) -> str:
    """sha256 of the code that generates C: the asp core and the package of ``module``,
    and the settings that change the generated source (:func:`asp.config.codegen_settings`).

    A record made by other code-generating sources must never be reused, even
    under the same version number (an editable install, a patched specializer).
    """
    settings = config.codegen_settings()
    source = source_fingerprint(module)
    return hashlib.sha256(f"{source}|{settings}".encode()).hexdigest() if settings else source


def record_key(kernel: str, digest: str, signature: str, generator: str = "") -> str:
    from asp import __version__

    h = hashlib.sha256()
    for part in (kernel, digest, signature, compiler().identity(), __version__, generator):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path:
    # CompileError if the cache is not safely this user's: the caller falls back
    return cache_subdir("specs") / f"{key}.json"


def _spec_to_json(s: ArgSpec) -> dict:
    return {"kind": s.kind, "dtype": None if s.dtype is None else np.dtype(s.dtype).str,
            "ndim": s.ndim, "write": s.write, "alloc": s.alloc, "noalias": s.noalias,
            "group": s.group, "shape": None if s.shape is None else list(s.shape),
            "scalar": s.scalar, "scratch": s.scratch}


def _spec_from_json(d: dict) -> ArgSpec:
    return ArgSpec(kind=d["kind"], dtype=None if d["dtype"] is None else np.dtype(d["dtype"]),
                   ndim=d["ndim"], write=d["write"], alloc=d["alloc"], noalias=d["noalias"],
                   group=d["group"], shape=None if d["shape"] is None else tuple(d["shape"]),
                   scalar=d["scalar"], scratch=d.get("scratch", False))


def save_record(key: str, *, variants: dict[str, tuple[str, str]], specs, ret: int,
                errors, excluded: dict[str, str], repeatable: bool = False) -> None:
    """Write the record; ``variants`` maps name -> (library key, entry symbol);
    ``repeatable``: the plan's (:attr:`asp.runtime.Plan.repeatable`)."""
    errs = [[e.__name__, msg] for e, msg in errors]
    try:
        for name, _ in errs:  # only builtin and asp.errors types can be named in a record
            _exception_type(name)
    except ValueError:
        return
    data = {"variants": variants, "specs": [_spec_to_json(s) for s in specs], "ret": ret,
            "errors": errs, "excluded": excluded, "repeatable": bool(repeatable)}
    try:
        write_atomic(_path(key), json.dumps(data).encode())
    except (OSError, SpecializationError):
        pass  # a read-only cache only costs the next process a rebuild


def _exception_type(name: str) -> type[Exception]:
    """A kernel error's exception type by name: a builtin one, or one of asp.errors
    (``UnrepresentableValue``: a record of a stencil or a reduction names it)."""
    import asp.errors

    found = getattr(builtins, name, None) or getattr(asp.errors, name, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        raise ValueError(f"unknown kernel error type {name!r}")
    return found


def load_record(key: str):
    """``(variants, specs, ret, errors, excluded, libraries, repeatable)`` or None."""
    try:
        data = json.loads(_path(key).read_text())
        specs = tuple(_spec_from_json(d) for d in data["specs"])
        errors = tuple((_exception_type(name), msg) for name, msg in data["errors"])
        variants = {name: (lib, sym) for name, (lib, sym) in data["variants"].items()}
        ret, excluded = int(data["ret"]), dict(data["excluded"])
        repeatable = data.get("repeatable") is True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    libs = {}
    for lib_key, _ in variants.values():
        if lib_key not in libs:
            lib = load_library(lib_key)
            if lib is None:
                return None
            libs[lib_key] = lib
    return variants, specs, ret, errors, excluded, libs, repeatable
