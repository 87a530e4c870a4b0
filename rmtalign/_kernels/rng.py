"""Counter-based Gaussian generator: SplitMix64 words + a 256-level ziggurat.

Every entry of a random matrix is a pure function of ``(key, row, column)``. Row ``r`` has the key
``row_key(key, r) = mix64(key + (r + 1) * GOLDEN)``; entry ``(r, j)`` starts from the word
``mix64(row_key + (j + 1) * GOLDEN)`` (SplitMix64's output function on a Weyl sequence). In 98.8% of
cases that word alone gives the normal (the ziggurat's rectangle test). Otherwise the attempt goes
on with uniforms from an overflow stream private to the entry, ``overflow_key(row_key, j)``, as
the sequential :func:`normal` does. Any entry, any subset of columns, can therefore be regenerated
anywhere, by any thread, in any order: the matrix-free passes recompute a layer's weights instead
of storing them, and skip the columns a ReLU mask zeroes.

Ziggurat of Marsaglia & Tsang (2000) in the 64-bit layout numpy uses (8 index bits, 1 sign bit,
52 mantissa bits). The plain-Python oracle, bit-identical, is ``tests/oracles/rng_ref.py``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._runtime import configure_numba

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_G = np.uint64(GOLDEN)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_ONE = np.uint64(1)


def _ziggurat_tables():
    r, v, m1 = 3.6541528853610088, 0.00492867323399, 2.0**52
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    ki = np.zeros(256, dtype=np.uint64)
    wi = np.zeros(256)
    fi = np.zeros(256)
    dn = tn = r
    q = v / f(dn)
    ki[0] = np.uint64(int(dn / q * m1))
    wi[0] = q / m1
    wi[255] = dn / m1
    fi[0] = 1.0
    fi[255] = f(dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + f(dn)))
        ki[i + 1] = np.uint64(int(dn / tn * m1))
        tn = dn
        fi[i] = f(dn)
        wi[i] = dn / m1
    return ki, wi, fi, r


_KI, _WI, _FI, _ZIG_R = _ziggurat_tables()
_ZIG_INV_R = 1.0 / _ZIG_R
_U52 = np.uint64(0x000FFFFFFFFFFFFF)
_B8, _B11, _FF = np.uint64(8), np.uint64(11), np.uint64(0xFF)
_TO_DOUBLE = 1.0 / 9007199254740992.0  # 2**-53


@njit(inline="always")
def mix64(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def row_key(key, row):
    return mix64(key + np.uint64(row + 1) * _G)


@njit(inline="always")
def _word(key, ctr):
    return mix64(key + np.uint64(ctr + 1) * _G)


@njit(inline="always")
def _next_double(key, ctr):
    return np.float64(_word(key, ctr) >> _B11) * _TO_DOUBLE


_SALT = np.uint64(0xD1B54A32D192ED03)


@njit(inline="always")
def overflow_key(k, j):
    """Key of entry ``j``'s private overflow stream (row key ``k``)."""
    return mix64((k ^ _SALT) + np.uint64(j + 1) * _G)


@njit(inline="always")
def _decode(w):
    """One ziggurat attempt from a 64-bit word: (layer index, signed x, rabs)."""
    idx = np.intp(w & _FF)
    w = w >> _B8
    rabs = (w >> _ONE) & _U52
    x = np.float64(rabs) * _WI[idx]
    if (w & _ONE) != 0:
        x = -x
    return idx, x, rabs


@njit(inline="always")
def _slow(key, ctr, idx, x, rabs):
    """Finish an attempt that failed the rectangle test, with uniforms from stream ``key`` at
    ``ctr``: returns (accepted, value, new ctr)."""
    if idx == 0:  # the base strip: Marsaglia's tail beyond r
        while True:
            xx = -_ZIG_INV_R * math.log1p(-_next_double(key, ctr))
            yy = -math.log1p(-_next_double(key, ctr + 1))
            ctr += 2
            if yy + yy > xx * xx:
                if ((rabs >> _B8) & _ONE) != 0:
                    return True, -(_ZIG_R + xx), ctr
                return True, _ZIG_R + xx, ctr
    u = _next_double(key, ctr)
    ctr += 1
    if (_FI[idx - 1] - _FI[idx]) * u + _FI[idx] < math.exp(-0.5 * x * x):
        return True, x, ctr
    return False, 0.0, ctr


@njit(inline="always")
def normal(key, ctr):
    """The next standard normal of the sequential stream ``key`` at ``ctr``: (z, new ctr)."""
    while True:
        idx, x, rabs = _decode(_word(key, ctr))
        ctr += 1
        if rabs < _KI[idx]:
            return x, ctr
        ok, z, ctr = _slow(key, ctr, idx, x, rabs)
        if ok:
            return z, ctr


@njit
def _entry_slow(k, j, idx, x, rabs):
    """Entry ``j`` of row key ``k`` after its word failed the rectangle test (rare, not inlined)."""
    ko = overflow_key(k, j)
    ok, z, ctr = _slow(ko, 0, idx, x, rabs)
    if ok:
        return z
    return normal(ko, ctr)[0]


@njit(inline="always")
def row_normals(k, cols, words, out):
    """``out[i]`` = entry ``cols[i]`` of the row with key ``k``. The words are computed in one
    vectorisable sweep; the rare rejected entries are finished one by one."""
    n = cols.shape[0]
    for i in range(n):
        words[i] = mix64(k + np.uint64(cols[i] + 1) * _G)
    for i in range(n):
        idx, x, rabs = _decode(words[i])
        if rabs < _KI[idx]:
            out[i] = x
        else:
            out[i] = _entry_slow(k, cols[i], idx, x, rabs)


@njit(parallel=True, cache=True, nogil=True)
def _fill(key, rows, cols, out):
    for i in prange(rows.shape[0]):
        words = np.empty(cols.shape[0], np.uint64)
        row_normals(row_key(key, rows[i]), cols, words, out[i])


def index_array(idx, n):
    """``idx`` as a contiguous int64 array; ``None`` means ``0 .. n-1``."""
    if idx is None:
        return np.arange(n, dtype=np.int64)
    return np.ascontiguousarray(idx, dtype=np.int64)


def fill_normal(key, out, rows=None, cols=None):
    """``out[i, k]`` = entry ``(rows[i], cols[k])`` of the standard-normal matrix ``key``
    (``rows``/``cols`` default to ``0 .. n-1``): any sub-block of a matrix, exactly."""
    configure_numba()
    _fill(np.uint64(key), index_array(rows, out.shape[0]), index_array(cols, out.shape[1]), out)


def derive_key(key: int, *path: int) -> int:
    """Child key: ``key`` hashed with each integer of ``path`` in turn (Python ints, mod 2**64)."""
    for v in path:
        key = _mix64_int((key + (int(v) + 1) * GOLDEN) & MASK64)
    return key


def _mix64_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def uniform_bits(key: int, n: int) -> np.ndarray:
    """``n`` 64-bit words of stream ``key`` (vectorised numpy; used for masks)."""
    z = np.uint64(key) + (np.arange(1, n + 1, dtype=np.uint64) * _G)
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)
