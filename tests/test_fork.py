"""Kernels in children of ``fork()``: a ``multiprocessing`` pool (``fork`` is Linux's
default start method before Python 3.14) whose parent had run kernels.

Two ways a child hung at its first kernel: GCC's OpenMP runtime keeps the forking
thread's team for its next parallel region, and the child inherits the record of that
team but not its threads (:meth:`asp.runtime.abi.OpenMPTeam.before_fork`); and a build
of late variants still running on the parent's builder thread, which the child does not
have, was waited for (``K.iterate`` waits for every variant).  Each run is a process of
its own with a time limit: a hang fails the test instead of the suite.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    import multiprocessing as mp
    import os
    import sys

    import numpy as np

    from asp.runtime.specialization import wait_for_builds
    from specializers.elementwise import elementwise
    from specializers.reduction import reduction
    from specializers.stencil import StencilKernel


    class Heat(StencilKernel):
        def kernel(self, u, r, out):
            for x in out.interior_points():
                lap = -4.0 * u[x]
                for y in u.neighbors(x, 1):
                    lap += u[y]
                out[x] = u[x] + r * lap


    @elementwise
    def poly(x, a):
        return a * x * x + 3.0 * x - 1.0


    @reduction("+")
    def energy(u, v):
        return u * u + 0.5 * v * v


    K = Heat()


    def heat(u, steps):
        for _ in range(steps):
            o = np.zeros_like(u)
            o[1:-1, 1:-1] = u[1:-1, 1:-1] + 0.1 * ((((-4.0 * u[1:-1, 1:-1] + u[:-2, 1:-1])
                                                      + u[2:, 1:-1]) + u[1:-1, :-2])
                                                    + u[1:-1, 2:])
            u = o
        return u


    def work(seed):
        """Every kind of call, checked against NumPy; the number of wrong results."""
        g = np.random.default_rng(seed).random((300, 260))
        bad = 0
        for _ in range(25):  # through the tuning (the late variants join it)
            bad += not np.array_equal(K(g, 0.1), heat(g, 1))
        bad += not np.array_equal(K.iterate(g, 0.1, steps=7), heat(g, 7))
        bad += not np.allclose(poly(g, 0.5), 0.5 * g * g + 3.0 * g - 1.0, rtol=1e-15, atol=0)
        bad += not np.isclose(energy(g, g), np.sum(g * g + 0.5 * g * g), rtol=1e-12)
        return bad


    def child_that_forks(seed, results):
        # a child that forks in turn, after its own kernels ran
        bad = work(seed)
        with mp.get_context("fork").Pool(1) as p:
            results.put(bad + p.apply(work, (seed + 1,)))


    if __name__ == "__main__":
        g = np.random.default_rng(0).random((300, 260))
        # The parent's first calls: a team started (ASP_PARALLEL_THRESHOLD=0), and, when
        # tiered, the late variants still compiling in the background at the fork.
        assert np.array_equal(K(g, 0.1), heat(g, 1))
        poly(g, 0.5)
        energy(g, g)
        with mp.get_context("fork").Pool(2) as pool:
            bad = sum(pool.map(work, range(1, 5)))
        results = mp.get_context("fork").Queue()
        child = mp.get_context("fork").Process(target=child_that_forks, args=(10, results))
        child.start()
        bad += results.get(timeout=200)
        child.join()
        assert wait_for_builds(120)
        bad += work(20)  # and the parent still runs in parallel after
        print("wrong results:", bad)
        sys.exit(1 if bad else 0)
''')


@pytest.mark.parametrize("tiered", ["0", "1"])
def test_kernels_run_in_forked_children(tmp_path, tiered):
    script = tmp_path / "forked.py"  # kernels need their source on disk
    script.write_text(SCRIPT)
    env = dict(os.environ, ASP_CACHE_DIR=str(tmp_path / "cache"), ASP_TIERED=tiered,
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    assert int(env["OMP_NUM_THREADS"]) >= 2 and env["ASP_PARALLEL_THRESHOLD"] == "0"
    # A session of its own: a hung run's children are killed with it.
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"a forked child hung (ASP_TIERED={tiered}): {out}{err}")
    assert proc.returncode == 0, out + err
    assert "wrong results: 0" in out
