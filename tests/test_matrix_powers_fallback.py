"""Matrix powers, cg and ca_cg never leak a build, cache, render or planning failure.

Each failure becomes exactly one :class:`AspFallbackWarning` (the runtime's, shared by
every kernel of the package) naming the kernel and the stage, and the answer is
SciPy's (checked against SciPy, not against the references' own code);
``ASP_STRICT=1`` raises instead.  Tests run as root, where
``chmod`` does not stop writes, so an unwritable directory is simulated by
making the OS calls that write under it fail with ``EACCES`` (and it is also
made read-only, which is what a non-root user would hit).
"""
from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from asp.errors import AspFallbackWarning, CompileError, SpecializationError
from asp.runtime import build as building
from asp.tune import calls_to_decide
from specializers.matrix_powers import MatrixPowers, ca_cg, cg, kernels, partition
from specializers.matrix_powers.powers_kernel import TUNED_COUNT
from tests.test_matrix_powers import assert_close, poisson2d, reference, tuning_of

SOLVERS = {"cg": cg, "ca_cg": ca_cg}


@pytest.fixture
def isolated(fresh_cache):
    """No kernel built or failed before this test, and none left behind for later tests."""
    kernels.forget()
    yield fresh_cache
    kernels.forget()


def deny_writes(monkeypatch, root: Path) -> None:
    """Writes under ``root`` fail with EACCES, as they do for a user without permission."""
    root_s = os.path.realpath(root)

    def inside(path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.realpath(os.fspath(path))
        return p == root_s or p.startswith(root_s + os.sep)

    def deny(path):
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    real_mkdir, real_open, real_osopen = os.mkdir, builtins.open, os.open
    real_replace, real_rename = os.replace, os.rename

    def mkdir(path, *args, **kwargs):
        if inside(path):
            deny(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file):
            deny(file)
        return real_open(file, mode, *args, **kwargs)

    def osopen(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            deny(path)
        return real_osopen(path, flags, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if inside(src) or inside(dst):
            deny(dst)
        return real_replace(src, dst, *args, **kwargs)

    def rename(src, dst, *args, **kwargs):
        if inside(src) or inside(dst):
            deny(dst)
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", osopen)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)


def read_only_cache(monkeypatch, tmp_path) -> None:
    ro = tmp_path / "ro-cache"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("ASP_CACHE_DIR", str(ro))
    deny_writes(monkeypatch, ro)


def unwritable_home(monkeypatch, tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    monkeypatch.delenv("ASP_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    deny_writes(monkeypatch, home)


def full_disk(monkeypatch, tmp_path) -> None:
    from asp.jit import cache

    def compile_(*args, **kwargs):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    monkeypatch.setattr(cache, "_compile", compile_)


def failing_compiler(monkeypatch, tmp_path) -> None:
    cc = tmp_path / "cc"
    # answers --version like a compiler, then rejects every source
    cc.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "fakecc 1.0"; exit 0; }\n'
                  'echo "fakecc: internal compiler error" >&2\nexit 1\n')
    cc.chmod(0o755)
    monkeypatch.setenv("ASP_CC", str(cc))


# scenario -> (how to break the build, what the one warning must say)
BROKEN = {
    "read_only_cache": (read_only_cache, "Permission denied"),
    "unwritable_home": (unwritable_home, "Permission denied"),
    "full_disk": (full_disk, "File too large"),
    "failing_compiler": (failing_compiler, "compile"),
}


@pytest.fixture(params=sorted(BROKEN))
def broken(request, isolated, monkeypatch, tmp_path) -> str:
    breaker, says = BROKEN[request.param]
    breaker(monkeypatch, tmp_path)
    return says


def one_fallback(record, *words: str) -> str:
    msgs = [str(w.message) for w in record if issubclass(w.category, AspFallbackWarning)]
    assert len(msgs) == 1, msgs
    for word in words:
        assert word in msgs[0], (word, msgs[0])
    return msgs[0]


def test_matrix_powers_falls_back_to_scipy(broken, rng):
    A = poisson2d(12)
    x = rng.standard_normal(A.shape[0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        mp = MatrixPowers(A, 3, basis="newton", shifts=[1.0, 2.0, 3.0])
        V = mp(x)
        Y = np.zeros((7, A.shape[0]))
        Y[0], Y[4] = x, x[::-1]
        G = np.empty((7, 7))
        mp.sstep_basis(Y, G)
    one_fallback(record, broken, "matrix_powers:", "running it as plain Python")
    assert_close(V, reference(A, x, 3, [1.0, 2.0, 3.0]), 1e-12)
    assert_close(Y[:4], reference(A, x, 3, [1.0, 2.0, 3.0]), 1e-12)
    np.testing.assert_allclose(G, [[np.dot(a, b) for b in Y] for a in Y], rtol=1e-12)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_solver_falls_back_to_python(broken, solver, rng):
    A = poisson2d(12)
    b = rng.standard_normal(A.shape[0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x, info = SOLVERS[solver](A, b, rtol=1e-10)
    one_fallback(record, broken, "matrix_powers:cg_residual")
    x_ref, info_ref = spla.cg(A, b, rtol=1e-10)
    assert info == info_ref == 0
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_strict_mode_raises(broken, solver, monkeypatch, rng):
    monkeypatch.setenv("ASP_STRICT", "1")
    A = poisson2d(6)
    with pytest.raises(SpecializationError, match="compile of matrix_powers:cg_residual"):
        SOLVERS[solver](A, rng.standard_normal(36))
    with pytest.raises(SpecializationError, match="compile of matrix_powers:powers"):
        MatrixPowers(A, 2)(rng.standard_normal(36))


def test_sstep_kernels_alone_fail(isolated, monkeypatch, rng):
    """The s-step kernels fail to build, the others build: ca_cg and sstep_basis still
    give SciPy's answers, with one warning naming the first s-step kernel."""
    real = building.build

    def build(source, *, kernel, **kwargs):
        if kernel.startswith("matrix_powers:sstep"):
            raise CompileError("the C compiler rejected the generated code", kernel=kernel)
        return real(source, kernel=kernel, **kwargs)

    monkeypatch.setattr(building, "build", build)
    A = poisson2d(20)
    b = rng.standard_normal(A.shape[0])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        x, info = ca_cg(A, b, s=4, rtol=1e-10)
    one_fallback(record, "compile of matrix_powers:sstep_gram", "compile")
    assert info == 0 and np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    np.testing.assert_allclose(x, spla.spsolve(A.tocsc(), b), rtol=1e-6)

    # the same basis size (m = 9) in a new MatrixPowers: the failure was warned about once
    shifts, scales = np.array([1.0, 3.0, 5.0, 7.0]), np.full(4, 0.3)
    mp = MatrixPowers(A, 4, basis="newton", shifts=shifts, scales=scales, variant="window-7")
    Y = np.zeros((9, A.shape[0]))
    Y[0], Y[5] = b, b[::-1]
    G = np.full((9, 9), np.nan)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        mp.sstep_basis(Y, G)
    assert not [w for w in record if issubclass(w.category, AspFallbackWarning)]
    # the matrix kernel ran natively; only the Gram matrix is NumPy's
    assert mp._kernel(True, "window-7").last_error is None
    assert_close(Y[:5], reference(A, b, 4, shifts, scales), 1e-12)
    assert_close(Y[5:], reference(A, b[::-1], 3, shifts, scales), 1e-12)
    np.testing.assert_allclose(G, [[np.dot(a, c) for c in Y] for a in Y], rtol=1e-12)


def broken_templates(monkeypatch, tmp_path, change) -> None:
    """The package's templates, copied and changed by ``change(text) -> text`` (powers)."""
    import shutil

    copy = tmp_path / "templates"
    shutil.copytree(kernels.TEMPLATES, copy)
    path = copy / "powers.c.mako"
    path.write_text(change(path.read_text()))
    monkeypatch.setattr(kernels, "TEMPLATES", copy)


@pytest.mark.parametrize("how, says", [
    ("undefined", "NameError: 'no_such_name' is not defined"),
    ("syntax", "SyntaxException"),
])
def test_template_failure_names_kernel_and_stage(how, says, isolated, monkeypatch, tmp_path,
                                                 rng):
    if how == "undefined":
        broken_templates(monkeypatch, tmp_path,
                         lambda t: t.replace("${prologue()}", "${no_such_name}", 1))
    else:
        broken_templates(monkeypatch, tmp_path, lambda t: t.replace("</%def>", "", 1))
    A = poisson2d(8)
    x = rng.standard_normal(64)
    with pytest.warns(AspFallbackWarning) as record:
        V = MatrixPowers(A, 2)(x)
    one_fallback(record, "rendering of matrix_powers:powers", says)
    assert_close(V, reference(A, x, 2), 1e-12)


@pytest.mark.parametrize("variant", ["pa1-37", None])
def test_planning_failure_of_a_variant_falls_back(variant, isolated, monkeypatch, rng):
    """PA1's planning fails on the user's matrix (441 rows), not on the check's own
    (400 rows): the variants pass their check, then the call's plan fails."""
    real = partition.pa1_plan

    def pa1_plan(indptr, indices, n, *args):
        if n == 441:
            raise IndexError("index 9 is out of bounds")
        return real(indptr, indices, n, *args)

    monkeypatch.setattr(partition, "pa1_plan", pa1_plan)
    A = poisson2d(21)
    x = rng.standard_normal(A.shape[0])
    mp = MatrixPowers(A, 3, variant=variant)
    V = np.zeros((4, A.shape[0]))
    V[0] = x
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(1 if variant else calls_to_decide(TUNED_COUNT)):  # None: reaches pa1
            mp.powers(V)
            assert_close(V, reference(A, x, 3), 1e-12)
    one_fallback(record, "planning of matrix_powers:powers", "pa1-", "IndexError")
    monkeypatch.setenv("ASP_STRICT", "1")
    with pytest.raises(SpecializationError, match="planning"):
        MatrixPowers(A, 3, variant="pa1-37").powers(V)


@pytest.mark.parametrize("who", ["MatrixPowers", "cg", "ca_cg"])
def test_analysis_failure_falls_back(who, isolated, monkeypatch, rng):
    def diagonal_runs(*args):
        raise ValueError("negative dimensions are not allowed")

    monkeypatch.setattr(partition, "diagonal_runs", diagonal_runs)
    A = poisson2d(10)
    b = rng.standard_normal(100)
    with pytest.warns(AspFallbackWarning) as record:
        if who == "MatrixPowers":
            assert_close(MatrixPowers(A, 2)(b), reference(A, b, 2), 1e-12)
        else:
            x, info = SOLVERS[who](A, b, rtol=1e-10)
            assert info == 0 and np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    one_fallback(record, "analysing the matrix failed", "planning of matrix_powers:",
                 "ValueError")


@pytest.mark.parametrize("how", ["unwritable_home", "database_unreachable"])
def test_no_tuning_database_tunes_in_memory(how, isolated, monkeypatch, tmp_path, rng):
    """Kernels already built in this process, then the tuning database is out of reach:
    the native kernels still run and are tuned in memory (no warning: nothing falls
    back).  ``database_unreachable``: what the database does when it cannot be opened
    (a lookup finds nothing, a winner is not stored)."""
    from asp.tune import db

    A = poisson2d(16)
    x = rng.standard_normal(A.shape[0])
    tuning_of(MatrixPowers(A, 3), 3)  # builds and checks every variant in the test's cache
    if how == "unwritable_home":
        unwritable_home(monkeypatch, tmp_path)
    else:
        monkeypatch.setattr(db, "lookup", lambda *args: None)
        monkeypatch.setattr(db, "store", lambda *args: False)
    mp = MatrixPowers(A, 3)
    V = np.zeros((4, A.shape[0]))
    V[0] = x
    for _ in range(calls_to_decide(TUNED_COUNT) + 1):
        mp.powers(V)
        assert_close(V, reference(A, x, 3), 1e-12)
    assert tuning_of(mp, 3).done and mp.last_variant in mp.variants


def serial_check() -> None:
    """Run in a fresh process by the test below: no libgomp preloaded, strict mode (so
    any fallback raises: everything below ran natively)."""
    import scipy.sparse as sp

    A = poisson2d(20)
    x = np.random.default_rng(5).standard_normal(A.shape[0])
    mp = MatrixPowers(A, 3, basis="newton", shifts=[1.0, 2.0, 3.0])
    for v in [*mp.variants, "pa1-37", "window-7", None]:
        V = np.zeros((4, A.shape[0]))
        V[0] = x
        assert_close(mp.powers(V, variant=v), reference(A, x, 3, [1.0, 2.0, 3.0]), 1e-12)
    for fn in (cg, ca_cg):
        y, info = fn(A, x, rtol=1e-10)
        assert info == 0 and np.linalg.norm(x - A @ y) <= 1e-10 * np.linalg.norm(x)
    y, info = cg(sp.csr_matrix(A.toarray()[:7, :7]), x[:7], rtol=1e-12)  # CSR, not diagonals
    np.testing.assert_allclose(y, np.linalg.solve(A.toarray()[:7, :7], x[:7]), rtol=1e-9)
    with open("/proc/self/maps") as maps:
        assert "libgomp" not in maps.read()  # a serial build: no OpenMP runtime needed
    print("serial ok")


def test_serial_build_without_openmp(tmp_path):
    """ASP_CFLAGS without -fopenmp (the documented serial build) compiles, loads and is
    right.  In a fresh process: the suite's own process has libgomp loaded, which
    would hide kernels that still call the OpenMP runtime."""
    env = {**os.environ, "ASP_CFLAGS": "-O2", "ASP_STRICT": "1",
           "ASP_CACHE_DIR": str(tmp_path / "cache")}
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c",
         "from tests.test_matrix_powers_fallback import serial_check; serial_check()"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip().endswith("serial ok")
