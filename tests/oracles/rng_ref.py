"""Plain-Python oracle of :mod:`rmtalign._kernels.rng`: the same streams and the same ziggurat,
written the obvious way (Python ints for the 64-bit words). Only the ziggurat tables, which are
data, come from the package."""
import math

import numpy as np

from rmtalign._kernels.rng import _FI, _KI, _TO_DOUBLE, _WI, _ZIG_INV_R, _ZIG_R

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z: int) -> int:
    """SplitMix64's output function."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def normals(key: int, row: int, n: int) -> np.ndarray:
    """Entries ``0 .. n-1`` of row ``row`` of the standard-normal matrix ``key``: the oracle of
    :func:`rmtalign._kernels.rng.fill_normal`."""
    k = mix64((key + (row + 1) * GOLDEN) & MASK64)
    word = lambda kk, c: mix64((kk + (c + 1) * GOLDEN) & MASK64)  # noqa: E731
    dbl = lambda kk, c: (word(kk, c) >> 11) * _TO_DOUBLE  # noqa: E731

    def attempt(w):
        idx, w = w & 0xFF, w >> 8
        rabs = (w >> 1) & 0x000FFFFFFFFFFFFF
        return idx, float(rabs) * _WI[idx] * (-1.0 if w & 1 else 1.0), rabs

    def finish(kk, ctr, idx, x, rabs):  # -> (accepted, value, ctr)
        if idx == 0:
            while True:
                xx = -_ZIG_INV_R * math.log1p(-dbl(kk, ctr))
                yy = -math.log1p(-dbl(kk, ctr + 1))
                ctr += 2
                if yy + yy > xx * xx:
                    return True, (-(_ZIG_R + xx) if (rabs >> 8) & 1 else _ZIG_R + xx), ctr
        u = dbl(kk, ctr)
        ok = (_FI[idx - 1] - _FI[idx]) * u + _FI[idx] < math.exp(-0.5 * x * x)
        return ok, x, ctr + 1

    out = []
    for j in range(n):
        idx, x, rabs = attempt(word(k, j))
        if rabs < int(_KI[idx]):
            out.append(x)
            continue
        ko = mix64(((k ^ 0xD1B54A32D192ED03) + (j + 1) * GOLDEN) & MASK64)
        ok, z, ctr = finish(ko, 0, idx, x, rabs)
        while not ok:
            idx, x, rabs = attempt(word(ko, ctr))
            ctr += 1
            if rabs < int(_KI[idx]):
                ok, z = True, x
            else:
                ok, z, ctr = finish(ko, ctr, idx, x, rabs)
        out.append(z)
    return np.array(out)
