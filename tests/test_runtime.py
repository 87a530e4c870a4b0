"""Runtime settings (rmtalign._runtime): nothing configured at import, workqueue when a kernel
first runs unless the user chose a layer, and the background helper of the Jacobian chain."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rmtalign._kernels import rng


def _run(code, **env):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_import_leaves_numba_alone_until_a_kernel_runs():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    code = """
        import numba
        import rmtalign, rmtalign.theory, rmtalign.sampling
        from rmtalign import theory
        print(numba.config.THREADING_LAYER)
        rmtalign.sample_bfa(rmtalign.MLP(4, 8), seed=0)
        print(numba.config.THREADING_LAYER, numba.threading_layer())
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["default", "workqueue", "workqueue"]


def test_the_users_threading_layer_wins():
    # chosen in the environment: not overridden
    assert _run("""
        import numba, rmtalign
        rmtalign.sample_bfa(rmtalign.MLP(4, 8), seed=0)
        print(numba.config.THREADING_LAYER)
    """, NUMBA_THREADING_LAYER="omp") == ["omp"]
    # chosen in numba.config before the first kernel: not overridden either
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import numba, rmtalign
        numba.config.THREADING_LAYER = "omp"
        rmtalign.theory.bfk_density(rmtalign.MLP(6, 8), 4)
        print(numba.config.THREADING_LAYER)
    """)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["omp"]


def test_in_background_yields_everything_in_order_and_generates_off_thread():
    import threading

    from rmtalign._runtime import in_background

    where = []

    def blocks():
        for i in range(7):
            where.append(threading.current_thread().name)
            out = np.empty((4, 5))
            rng.fill_normal(np.uint64(i), out)
            yield out

    got = list(in_background(blocks(), depth=2))
    want = list(blocks())
    assert len(got) == 7
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)
    assert set(where[:7]) == {"rmtalign-prefetch"}
    assert not any(t.name == "rmtalign-prefetch" for t in threading.enumerate())


def test_in_background_reraises_and_stops_when_closed():
    import threading

    from rmtalign._runtime import in_background

    def failing():
        yield 1
        raise FloatingPointError("stage 2 overflowed")

    with pytest.raises(FloatingPointError, match="stage 2"):
        list(in_background(failing()))

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = in_background(endless(), depth=3)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    it.close()  # the caller gives up (e.g. its own error): the helper must end, not spin
    n = len(produced)
    assert not any(t.name == "rmtalign-prefetch" for t in threading.enumerate())
    assert len(produced) == n and n <= 5 + 3 + 2
