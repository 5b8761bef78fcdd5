"""GMM under faults: every way the kernels can fail to build ends in the core's one
:class:`AspFallbackWarning` and the kernels' NumPy reference's result (an error under
``ASP_STRICT=1``), never an exception or a crash.  Also: the serial build
(``ASP_CFLAGS`` without ``-fopenmp``) and tiny OpenMP thread stacks.

Oracles: scikit-learn's ``GaussianMixture`` started from the same parameters,
and the published API's ``train_using_python`` (the kernels' NumPy reference).
"""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from asp.errors import AspFallbackWarning, SpecializationError
from asp.jit import cache, compiler
from specializers.gmm import GMM, VARIANTS, GaussianMixture, source
from specializers.gmm import kernels as K

ROOT = Path(__file__).resolve().parents[1]
M, D = 3, 3


@pytest.fixture
def blobs():
    rng = np.random.default_rng(5)
    centers = np.array([[0.0, 0.0, 0.0], [8.0, 8.0, 0.0], [-8.0, 8.0, 4.0]])
    return np.vstack([c + rng.normal(size=(150, D)) for c in centers])[rng.permutation(450)]


@pytest.fixture
def unbuilt(monkeypatch, tmp_path):
    """As in a new process with an empty cache: the next call has to build."""
    monkeypatch.setattr(K, "_kernels", {})
    monkeypatch.setattr(K, "_groups", {})
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    saved = dict(cache._memory)
    cache._memory.clear()
    yield
    cache._memory.clear()
    cache._memory.update(saved)


def _deny_writes_under(root: Path, monkeypatch) -> None:
    """What a non-root user meets in a directory of mode 0500: creating a
    directory or opening a file for writing fails with EACCES.  Tests run as
    root, whom permission bits do not stop, so the kernel's answer is emulated."""
    root = root.resolve()

    def inside(path) -> bool:
        try:
            return Path(os.fspath(path)).resolve().is_relative_to(root)
        except TypeError:  # a file descriptor
            return False

    def denied(path):
        return PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    real_mkdir, real_os_open, real_open = os.mkdir, os.open, builtins.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def mkdir(path, *args, **kwargs):
        if inside(path) and not os.path.isdir(path):
            raise denied(path)
        return real_mkdir(path, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & writes and inside(path):
            raise denied(path)
        return real_os_open(path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and inside(file):
            raise denied(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)  # also what pathlib.Path.mkdir calls
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)  # what pathlib.Path.open calls


def _read_only(path: Path, monkeypatch) -> None:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o500)
    if os.geteuid() == 0:
        _deny_writes_under(path, monkeypatch)


def _fit_falls_back_to_sklearn(X, monkeypatch, match: str | None = None) -> None:
    """fit, fit_predict and the published train together warn once (the kernels of one
    mixture shape fail together), give the reference result, and raise under
    ASP_STRICT=1."""
    kw = dict(covariance_type="full", max_iter=4, tol=0.0, random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ours = GaussianMixture(M, **kw).fit(X)
        labels = GaussianMixture(M, **kw).fit_predict(X)
        g = GMM(M, D, cvtype="full")
        ll = g.train(X, max_iters=4)
    falls = [str(w.message) for w in record if issubclass(w.category, AspFallbackWarning)]
    assert len(falls) == 1, falls
    assert "gmm." in falls[0] and "[full,M=3,D=3]" in falls[0], falls[0]
    if match:
        assert match in falls[0], falls[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(M, **kw).fit(X)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-12)
    np.testing.assert_allclose(ours.covariances_, sk.covariances_, rtol=1e-12)
    np.testing.assert_array_equal(labels, sk.predict(X))
    assert g.last_variant == "python"
    assert ll == GMM(M, D, cvtype="full").train_using_python(X, max_iters=4)
    monkeypatch.setenv("ASP_STRICT", "1")
    with pytest.raises(SpecializationError):
        GaussianMixture(M, **kw).fit(X)
    with pytest.raises(SpecializationError):
        GMM(M, D, cvtype="full").train(X, max_iters=2)


def test_read_only_cache_dir_falls_back(blobs, tmp_path, monkeypatch, unbuilt):
    cache_dir = tmp_path / "ro-cache"
    _read_only(cache_dir, monkeypatch)
    monkeypatch.setenv("ASP_CACHE_DIR", str(cache_dir))
    _fit_falls_back_to_sklearn(blobs, monkeypatch, match="Permission denied")


def test_unwritable_home_without_cache_dir_falls_back(blobs, tmp_path, monkeypatch, unbuilt):
    home = tmp_path / "home"
    _read_only(home, monkeypatch)
    monkeypatch.delenv("ASP_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    _fit_falls_back_to_sklearn(blobs, monkeypatch)


def _disk_full(monkeypatch) -> None:
    """Every write of a compiled object fails as on a full disk (or a file size limit)."""
    def build(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(cache, "_build", build)


def test_full_disk_falls_back(blobs, monkeypatch, unbuilt):
    _disk_full(monkeypatch)
    _fit_falls_back_to_sklearn(blobs, monkeypatch, match="File too large")


def test_compiler_error_falls_back(blobs, tmp_path, monkeypatch, unbuilt):
    cc = tmp_path / "broken-cc"
    cc.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "broken-cc 1.0"; exit 0; }\n'
                  'echo "broken-cc: internal compiler error" >&2\nexit 1\n')
    cc.chmod(0o700)
    monkeypatch.setenv("ASP_CC", str(cc))
    _fit_falls_back_to_sklearn(blobs, monkeypatch, match="compile")


def test_a_bug_while_planning_falls_back_naming_kernel_and_stage(blobs, monkeypatch, unbuilt):
    def bug(*args, **kwargs):
        raise TypeError("not an expression")

    for family in K.FAMILIES.values():
        monkeypatch.setattr(family, "plan", bug)
    _fit_falls_back_to_sklearn(blobs, monkeypatch, match="internal error: TypeError: not an "
                                                         "expression [planning")


def test_a_template_bug_falls_back_naming_the_stage(blobs, monkeypatch, tmp_path, unbuilt):
    broken = tmp_path / "em.c.mako"
    text = source.TEMPLATE.read_text()
    assert "typedef ${ctype} real_t;" in text
    broken.write_text(text.replace("typedef ${ctype} real_t;", "typedef ${c_type} real_t;"))
    monkeypatch.setattr(source, "TEMPLATE", broken)
    _fit_falls_back_to_sklearn(blobs, monkeypatch, match="rendering the template failed: "
                                                         "NameError")


def test_a_missing_template_falls_back(blobs, monkeypatch, tmp_path, unbuilt):
    monkeypatch.setattr(source, "TEMPLATE", tmp_path / "nowhere.c.mako")
    _fit_falls_back_to_sklearn(blobs, monkeypatch, match="rendering the template failed")


def test_an_unreadable_tuning_database_still_runs_the_kernels(blobs, monkeypatch):
    """Built kernels keep running (tuned in this process only) when the tuning
    database cannot be opened."""
    from asp.tune import db

    def broken(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "tuning.sqlite")

    monkeypatch.setattr(db, "_connect", broken)
    monkeypatch.setattr(K, "_kernels", {})
    g = GMM(M, D, cvtype="full")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        ll = g.train(blobs, max_iters=40, min_iters=40)
    assert g.last_variant in (None, *VARIANTS)
    assert ll == pytest.approx(GMM(M, D, cvtype="full").train_using_python(
        blobs, max_iters=40, min_iters=40), rel=1e-9)


def test_dask_chunks_fall_back_on_a_full_disk(blobs, monkeypatch, unbuilt):
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    from specializers.gmm import dask as gd

    _disk_full(monkeypatch)
    X = da.from_array(blobs, chunks=(150, D))
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        g = GMM(M, D, cvtype="full")
        ll = gd.train(g, X, max_iters=3)
    falls = [str(w.message) for w in rec if issubclass(w.category, AspFallbackWarning)]
    assert len(falls) == 1 and "File too large" in falls[0], falls
    ref = GMM(M, D, cvtype="full")
    ll_ref = ref.train_using_python(blobs, max_iters=3)
    assert ll == pytest.approx(ll_ref, rel=1e-9)
    np.testing.assert_allclose(g.components.means, ref.components.means, rtol=1e-9)


def test_serial_build_without_openmp(blobs, monkeypatch, tmp_path, unbuilt):
    """ASP_CFLAGS without -fopenmp: the kernels build, load and agree with sklearn,
    on the threaded code path too (it then runs on one thread)."""
    monkeypatch.setenv("ASP_CFLAGS", "-O2")
    assert K.threads_for(len(blobs), M, D) >= 2
    start = SkGaussianMixture(M, covariance_type="full", max_iter=0,
                              init_params="random_from_data", random_state=1).fit(blobs)
    kw = dict(covariance_type="full", max_iter=5, tol=0.0, means_init=start.means_,
              precisions_init=start.precisions_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(M, **kw).fit(blobs)
        for variant in VARIANTS:
            warnings.simplefilter("error", AspFallbackWarning)
            ours = GaussianMixture(M, **kw)
            ours._asp_variant = variant
            ours.fit(blobs)
            for name in ("weights_", "means_", "covariances_"):
                np.testing.assert_allclose(getattr(ours, name), getattr(sk, name), rtol=1e-6,
                                           err_msg=f"{variant} {name}")
            np.testing.assert_array_equal(ours.predict(blobs), sk.predict(blobs))
    assert compiler().flags == ("-O2",)
    # Loadable in any process: a process that has loaded no OpenMP runtime yet
    # cannot resolve omp_* calls (in this one, other kernels may have loaded it).
    libs = list((tmp_path / "cache").glob("**/*.so"))
    assert len(libs) >= 3  # the EM variants, the E-step, the M-step statistics
    for lib in libs:
        undefined = subprocess.run(["nm", "-D", "--undefined-only", str(lib)],
                                   capture_output=True, text=True, check=True).stdout
        assert "omp_" not in undefined and "GOMP" not in undefined


_SMALL_STACK_SCRIPT = r"""
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as Sk
from asp.errors import AspFallbackWarning
from specializers.gmm import VARIANTS, GaussianMixture
from specializers.gmm import kernels as K

assert K.threads_for(1, 1, 1) == 2  # every call on the OpenMP threads, whose stacks are small
warnings.simplefilter("error", AspFallbackWarning)
warnings.simplefilter("ignore", ConvergenceWarning)
M, D = 3, 128
rng = np.random.default_rng(0)
X = np.vstack([rng.normal(loc=4.0 * k, size=(700, D)) for k in range(M)])
# random_from_data: scikit-learn's k-means runs OpenMP threads of its own,
# which a 16k stack kills whatever asp does
start = Sk(M, covariance_type="full", max_iter=0, init_params="random_from_data",
           random_state=0).fit(X)
kw = dict(covariance_type="full", max_iter=2, tol=0.0, init_params="random_from_data",
          weights_init=np.full(M, 1.0 / M), means_init=start.means_,
          precisions_init=start.precisions_)
sk = Sk(M, **kw).fit(X)
worst = {}
for variant in VARIANTS:
    ours = GaussianMixture(M, **kw)
    ours._asp_variant = variant
    ours.fit(X)
    worst[variant] = max(
        float(np.max(np.abs(getattr(ours, a) - getattr(sk, a))) / np.max(np.abs(getattr(sk, a))))
        for a in ("weights_", "means_", "covariances_"))
    worst[variant + " labels"] = int((ours.predict(X) != sk.predict(X)).sum())
print(json.dumps(worst))
"""


def test_full_d128_with_a_16k_openmp_stack(tmp_path):
    """Per-thread buffers of up to hundreds of KiB once lived on the stack:
    OMP_STACKSIZE=16k then killed the process with SIGSEGV."""
    script = tmp_path / "small_stack.py"
    script.write_text(_SMALL_STACK_SCRIPT)
    env = dict(os.environ, OMP_STACKSIZE="16k", OMP_NUM_THREADS="2",
               ASP_PARALLEL_THRESHOLD="0")
    out = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True,
                         text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    worst = json.loads(out.stdout.strip().splitlines()[-1])
    for variant in VARIANTS:
        assert worst[variant] <= 1e-6, worst
        assert worst[variant + " labels"] == 0, worst
