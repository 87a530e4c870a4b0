"""Plain numpy oracle of :mod:`rmtalign._kernels.graded` (the exact power-of-two rescalings of the
long products' row-graded triangular factor), written the obvious way with ``ldexp``. Only the
zero-row exponent, which is a convention, comes from the package."""
import numpy as np

from rmtalign._kernels.graded import ZERO_EXP as Z


def row_graded(R, e, k):
    """Oracle of :func:`rmtalign._kernels.graded.row_graded`: ``Rs_ij = R_ij 2**(e_j - s_i)`` on and
    above the diagonal, ``s_i = max_{j>=i} e_j``."""
    r = R.shape[1]
    live = np.where(e == Z, np.iinfo(np.int64).min // 4, e)
    s = np.maximum.accumulate(live[::-1])[::-1][:k]
    s = np.where(s < Z, Z, s)
    shift = np.clip(e[None, :] - s[:, None], -1100, 0)
    Rs = np.triu(np.ldexp(R[:k], shift))
    Rs[(s == Z)[:, None] | (e == Z)[None, :]] = 0.0
    return Rs, s


def normalise_rows(X):
    """Oracle of :func:`rmtalign._kernels.graded.normalise_rows` (which scales ``X`` in place):
    ``(X 2**-ex, ex)`` with ``ex`` the binary exponent of each row's largest ``|entry|``
    (``ZERO_EXP`` for a zero row)."""
    amax = np.abs(X).max(axis=1)
    ex = np.frexp(amax)[1].astype(np.int64)
    return np.ldexp(X, -ex[:, None]), np.where(amax == 0.0, Z, ex)
