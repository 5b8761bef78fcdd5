"""``@elementwise`` and ``@reduction`` kernels travel to other processes, as functions do:
a ``multiprocessing`` pool's ``map(kernel, chunks)``, a ``ProcessPoolExecutor``, Dask's
``map_blocks`` on a cluster.  Both failed to pickle (``Can't pickle <function poly>: it's
not the same object as kmod.poly`` with pickle, ``cannot pickle 'asp._native.Entry'
object`` with cloudpickle).  Now by name where their module holds them, else by value
(code, the module-level names they read, defaults, closure and source), compiled again
by the receiver, from the source it carries where the file is not there."""
from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from specializers.elementwise import elementwise
from specializers.reduction import reduction

ROOT = Path(__file__).resolve().parent.parent
SCALE = 2.5


@elementwise
def poly(x, a=1.0):
    return 3.0 * x * x + a * math.sqrt(abs(x)) + SCALE


@reduction("max")
def peak(x):
    return x * SCALE


def _made_in_a_function(c):
    @elementwise
    def shifted(x):
        return x * c + SCALE

    @reduction("+")
    def total(x, *, w=2.0):
        return w * x - c

    return shifted, total


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_module_level_kernels_travel_by_name(dumps, rng):
    x = rng.standard_normal(50_000)
    assert pickle.loads(dumps(poly)) is poly and pickle.loads(dumps(peak)) is peak
    np.testing.assert_array_equal(pickle.loads(dumps(poly))(x, a=2.0), poly(x, 2.0))


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_kernels_made_in_a_function_travel_by_value_and_compile(dumps, rng):
    x = rng.standard_normal(50_000)
    shifted, total = _made_in_a_function(-0.75)
    want = np.array([shifted.py_func(np.float64(v)) for v in x])
    np.testing.assert_array_equal(shifted(x), want)  # compiled here (no warning: errors)
    again, again_total = pickle.loads(dumps(shifted)), pickle.loads(dumps(total))
    assert again is not shifted
    np.testing.assert_array_equal(again(x), want)  # compiled there (no warning either)
    assert again.jit.chosen_variant(x, None) != "python"
    assert again_total(x, w=0.5) == pytest.approx(np.sum(0.5 * x + 0.75), rel=1e-12)


SCRIPT = """
import math, pickle, sys
import numpy as np
from specializers.elementwise import elementwise
from specializers.reduction import reduction

K = 2.0

def root(x):  # a helper of the script's own: compiled with f, here and where f is sent
    return math.sqrt(x * x + K)

@elementwise
def f(x, a=1.0):
    return root(x) + a

@reduction("max")
def g(x):
    return x * K

if __name__ == "__main__":
    import multiprocessing as mp
    chunks = [np.linspace(-i, i, 40_000) for i in range(1, 5)]
    with mp.get_context(sys.argv[1]).Pool(2) as pool:
        got_f, got_g = pool.map(f, chunks), pool.map(g, chunks)
    assert all(np.allclose(a, np.sqrt(c * c + K) + 1.0) for a, c in zip(got_f, chunks))
    assert got_g == [c.max() * K for c in chunks], got_g
    with open(sys.argv[2], "wb") as fh:  # sent to a process where this file is gone
        pickle.dump((f, g), fh)
    print("ok")
"""

RECEIVE = """
import pickle, sys, warnings
import numpy as np
warnings.simplefilter("error")  # a fallback to Python would be an error
with open(sys.argv[1], "rb") as fh:
    f, g = pickle.load(fh)
x = np.linspace(-3, 3, 40_000)
assert np.allclose(f(x, 0.5), np.sqrt(x * x + 2.0) + 0.5)
assert g(x) == 6.0
assert f.jit.chosen_variant(x, 0.5, None) != "python"
print("ok")
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_scripts_kernels_run_in_a_pool_and_compile_where_the_file_is_gone(method, tmp_path):
    script = tmp_path / "job.py"  # kernels need their source on disk
    script.write_text(textwrap.dedent(SCRIPT))
    sent = tmp_path / "sent.pickle"
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "ASP_PARALLEL_THRESHOLD": "0",
           "PATH": "/usr/bin:/bin", "ASP_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, str(script), method, str(sent)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]
    script.unlink()
    receiver = tmp_path / "receive.py"
    receiver.write_text(textwrap.dedent(RECEIVE))
    run = subprocess.run([sys.executable, str(receiver), str(sent)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def _table_lookup():
    @elementwise
    def lookup(i):
        return TABLE[i]  # indexing: runs as Python, on the table it travelled with

    return lookup


def test_kernels_sent_with_different_large_values_stay_apart():
    """The receiving process reuses the kernel it made from the same parts: the parts
    are compared whole (their reprs summarized two 5000-element tables as the same)."""
    global TABLE
    from asp.errors import AspFallbackWarning

    TABLE = np.zeros(5000)
    TABLE[3] = 1.0
    first = pickle.dumps(_table_lookup())
    TABLE = np.zeros(5000)
    TABLE[3] = 2.0
    second = pickle.dumps(_table_lookup())
    a, b = pickle.loads(first), pickle.loads(second)
    assert a is not b and pickle.loads(first) is a  # one made per distinct parts
    with pytest.warns(AspFallbackWarning):
        assert a(np.array([3]))[0] == 1.0 and b(np.array([3]))[0] == 2.0


TABLE = np.zeros(1)
