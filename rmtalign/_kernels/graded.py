"""Exact power-of-two rescalings of the row-graded triangular factor of :mod:`rmtalign._products`.

A long product is kept as ``diag(2**e) T``; after every QR the new triangular factor has to be
merged into it. These loops run once per QR on ``r x r`` matrices (r ~ 100s): in numpy they are a
dozen temporaries and dominate the accumulation's non-LAPACK time. ``ldexp`` makes every scaling
exact. The plain-numpy reference is ``tests/oracles/graded_ref.py``.
"""
import math

import numpy as np
from numba import njit

# Exponent of an exactly zero row; shared with rmtalign._products.
ZERO_EXP = -(2**40)
# Shifts below this only produce zeros (2**-1100 * 1 underflows); clipping keeps ints small.
# Shared with rmtalign._products.
SHIFT_MIN = -1100
# 2**-k for k = 0 .. -SHIFT_MIN (subnormal, then 0, at the end): x * _POW2_NEG[k] rounds exactly
# as ldexp(x, -k) does, and a table lookup is several times cheaper than an ldexp call.
_POW2_NEG = np.ldexp(1.0, -np.arange(-SHIFT_MIN + 1))


@njit(cache=True, nogil=True)
def row_graded(R, e, k):
    """``triu(R[:k]) diag(2**e) = diag(2**s) Rs`` with ``s_i = max_{j >= i} e_j``.

    ``R`` is ``>= k x r``, ``e`` has ``r`` entries (``ZERO_EXP`` marks zero rows of the factor
    ``diag(2**e)`` multiplies). Returns ``Rs`` (``k x r``, Fortran order, zero below the diagonal)
    and ``s`` (non-increasing; ``ZERO_EXP`` when every ``e_j, j >= i`` is). ``|Rs_ij| <= |R_ij|``:
    nothing overflows; contributions more than ~1074 bits below ``2**s_i`` underflow to zero.
    """
    r = R.shape[1]
    s = np.empty(k, np.int64)
    run = ZERO_EXP
    for j in range(r - 1, -1, -1):
        if e[j] > run:
            run = e[j]
        if j < k:
            s[j] = run
    Rs = np.zeros((r, k)).T
    for j in range(r):
        ej = e[j]
        if ej == ZERO_EXP:
            continue
        for i in range(min(j + 1, k)):
            si = s[i]
            if si == ZERO_EXP:
                break  # s is non-increasing: the rows below meet only zero rows too
            d = si - ej  # >= 0: e_j <= s_i on and above the diagonal
            if d <= -SHIFT_MIN:
                Rs[i, j] = R[i, j] * _POW2_NEG[d]
    return Rs, s


@njit(cache=True, nogil=True)
def normalise_rows(X):
    """Scale each row of ``X`` in place by a power of two to max-abs in ``[0.5, 1)``.

    Returns the exponents removed (``ZERO_EXP`` for zero rows). The scaling is exact unless a row
    had entries that were already subnormal (its maximum below ``2**-900`` is a sign that it
    lost precision to underflow or cancellation: callers recompute such rows).
    """
    k, n = X.shape
    amax = np.zeros(k)
    for j in range(n):  # column sweeps: X is Fortran-ordered
        for i in range(k):
            a = abs(X[i, j])
            if a > amax[i]:
                amax[i] = a
    ex = np.empty(k, np.int64)
    scale = np.empty(k)
    for i in range(k):
        if amax[i] == 0.0:
            ex[i] = ZERO_EXP
            scale[i] = 1.0
        else:
            ex[i] = math.frexp(amax[i])[1]
            scale[i] = math.ldexp(1.0, -ex[i]) if ex[i] > -1000 else 0.0
    for j in range(n):
        for i in range(k):
            if scale[i] != 0.0:
                X[i, j] *= scale[i]
            else:  # 2**-ex itself would overflow
                X[i, j] = math.ldexp(X[i, j], -ex[i])
    return ex
