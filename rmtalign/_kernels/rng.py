"""Counter-based Gaussian generator: SplitMix64 streams + a 256-level ziggurat.

Every random matrix row has its own stream, keyed by ``(seed, sample, kind, layer, row)``: the
``c``-th 64-bit word of a row is ``mix64(row_key + (c + 1) * GOLDEN)`` (SplitMix64's output function on
a Weyl sequence). A row can therefore be regenerated anywhere, by any thread, in any order, which is
what lets the matrix-free passes recompute a layer's weights instead of storing them.

Normals come from the ziggurat of Marsaglia & Tsang (2000) in the 64-bit layout numpy uses
(8 index bits, 1 sign bit, 52 mantissa bits); 98.8% of draws take one word and a compare.

``_reference_*`` functions are the plain-Python/numpy oracle of the kernels (bit-identical).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import _config  # noqa: F401  (side effect: threading layer)

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


@njit(inline="always")
def normal(key, ctr):
    """The next standard normal of stream ``key`` at counter ``ctr``; returns (z, new ctr)."""
    while True:
        r = _word(key, ctr)
        ctr += 1
        idx = np.intp(r & _FF)
        r = r >> _B8
        neg = (r & _ONE) != 0
        rabs = (r >> _ONE) & _U52
        x = np.float64(rabs) * _WI[idx]
        if neg:
            x = -x
        if rabs < _KI[idx]:
            return x, ctr
        if idx == 0:
            while True:
                xx = -_ZIG_INV_R * math.log1p(-_next_double(key, ctr))
                yy = -math.log1p(-_next_double(key, ctr + 1))
                ctr += 2
                if yy + yy > xx * xx:
                    if ((rabs >> _B8) & _ONE) != 0:
                        return -(_ZIG_R + xx), ctr
                    return _ZIG_R + xx, ctr
        else:
            u = _next_double(key, ctr)
            ctr += 1
            if (_FI[idx - 1] - _FI[idx]) * u + _FI[idx] < math.exp(-0.5 * x * x):
                return x, ctr


@njit(inline="always")
def row_normals(k, words, out):
    """Fill ``out`` with the first ``len(out)`` normals of stream ``k``.

    The fast path reads words computed in one vectorised sweep (``words``, a scratch buffer of
    the same length); a rejected draw falls back to :func:`normal`, which continues the same
    stream, so the output is identical to calling :func:`normal` ``len(out)`` times."""
    n = out.shape[0]
    for c in range(n):
        words[c] = mix64(k + np.uint64(c + 1) * _G)
    j = 0
    ctr = 0
    while j < n:
        if ctr < n:
            w = words[ctr]
            idx = np.intp(w & _FF)
            w = w >> _B8
            rabs = (w >> _ONE) & _U52
            if rabs < _KI[idx]:
                x = np.float64(rabs) * _WI[idx]
                out[j] = -x if (w & _ONE) != 0 else x
                ctr += 1
                j += 1
                continue
        z, ctr = normal(k, ctr)
        out[j] = z
        j += 1


@njit(parallel=True, cache=True)
def _fill_rows(key, rows, out):
    cols = out.shape[1]
    for i in prange(rows.shape[0]):
        words = np.empty(cols, np.uint64)
        row_normals(row_key(key, rows[i]), words, out[i])


def fill_normal(key, out, rows=None):
    """``out[i, :]`` = the first ``out.shape[1]`` normals of row stream ``rows[i]`` of ``key``
    (``rows`` defaults to ``0 .. out.shape[0]-1``): any subset of a matrix's rows, exactly."""
    if rows is None:
        rows = np.arange(out.shape[0])
    _fill_rows(np.uint64(key), np.ascontiguousarray(rows, dtype=np.int64), out)


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


# -- reference (oracle) -------------------------------------------------------------------------
def _reference_normals(key: int, row: int, n: int) -> np.ndarray:
    """Plain-Python ziggurat over the same stream: the test oracle of :func:`fill_normal`."""
    k = _mix64_int((key + (row + 1) * GOLDEN) & MASK64)
    word = lambda c: _mix64_int((k + (c + 1) * GOLDEN) & MASK64)  # noqa: E731
    dbl = lambda c: (word(c) >> 11) * _TO_DOUBLE  # noqa: E731
    out, ctr = [], 0
    while len(out) < n:
        r = word(ctr)
        ctr += 1
        idx, r = r & 0xFF, r >> 8
        rabs = (r >> 1) & 0x000FFFFFFFFFFFFF
        x = float(rabs) * _WI[idx] * (-1.0 if r & 1 else 1.0)
        if rabs < int(_KI[idx]):
            out.append(x)
        elif idx == 0:
            while True:
                xx = -_ZIG_INV_R * math.log1p(-dbl(ctr))
                yy = -math.log1p(-dbl(ctr + 1))
                ctr += 2
                if yy + yy > xx * xx:
                    out.append(-(_ZIG_R + xx) if (rabs >> 8) & 1 else _ZIG_R + xx)
                    break
        else:
            u = dbl(ctr)
            ctr += 1
            if (_FI[idx - 1] - _FI[idx]) * u + _FI[idx] < math.exp(-0.5 * x * x):
                out.append(x)
    return np.array(out)
