"""rmtalign/_kernels/graded.py: the graded-rescaling kernels of the long products against plain numpy
(tests/oracles/graded_ref.py); power-of-two scalings are exact, so the comparisons are too."""
import numpy as np
import pytest

from oracles import graded_ref
from rmtalign._kernels import graded

Z = graded.ZERO_EXP


@pytest.mark.parametrize("k, r", [(6, 6), (4, 7), (1, 3), (9, 9)])
def test_row_graded_kernel_matches_numpy(k, r):
    rng = np.random.default_rng(k * 10 + r)
    R = np.asfortranarray(rng.standard_normal((r, r)))
    e = rng.integers(-1500, 1500, size=r).astype(np.int64)  # spans far beyond float64's range
    e[rng.random(r) < 0.25] = Z
    e[-1] = Z if k == 1 else e[-1]  # a zero row at the end (its suffix maximum is empty)
    got, s = graded.row_graded(R[:k], e, k)
    want, s_ref = graded_ref.row_graded(R, e, k)
    np.testing.assert_array_equal(s, s_ref)
    np.testing.assert_array_equal(got, want)  # power-of-two scalings are exact
    assert got.flags.f_contiguous


def test_normalise_rows_kernel_matches_numpy():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((7, 5)) * np.ldexp(1.0, rng.integers(-1070, 1000, size=7))[:, None]
    X[2] = 0.0
    X[4] = np.ldexp(rng.standard_normal(5), -1060)  # subnormal row: 2**-ex alone overflows
    want, ex_ref = graded_ref.normalise_rows(X)
    want[2] = 0.0
    for layout in (np.asfortranarray, np.ascontiguousarray):
        Y = layout(X.copy())
        ex = graded.normalise_rows(Y)
        np.testing.assert_array_equal(ex, ex_ref)
        np.testing.assert_array_equal(Y, want)
        live = np.abs(Y).max(axis=1)[ex != Z]
        assert ((live >= 0.5) & (live < 1.0)).all()
