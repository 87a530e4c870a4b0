"""Matrix-free products with Gaussian matrices regenerated from their counter-based streams.

``W = std * Z`` where row ``r`` of ``Z`` is stream ``row_key(key, r)`` (see :mod:`.rng`). Vectors are
stored as rows (``P x n``, C order) so that each dot product and axpy runs over contiguous memory.
Rows are split into fixed chunks of ``_CHUNK``: the transpose product sums the chunks' partial
results in chunk order, so the result does not depend on the number of threads.
"""
import numpy as np
from numba import njit, prange

from .rng import row_key, row_normals

_CHUNK = 32
_FASTMATH = {"contract", "reassoc"}  # vectorised dot products; no nnan/ninf assumptions


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def gauss_matvecs(key, rows, std, V, out):
    """``out[p, r] = std * sum_j W[r, j] V[p, j]`` for ``W`` of shape ``(rows, V.shape[1])``."""
    P, cols = V.shape
    nchunks = (rows + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        z = np.empty(cols)
        words = np.empty(cols, np.uint64)
        for r in range(c * _CHUNK, min(rows, (c + 1) * _CHUNK)):
            row_normals(row_key(key, r), words, z)
            for p in range(P):
                acc = 0.0
                for j in range(cols):
                    acc += z[j] * V[p, j]
                out[p, r] = std * acc


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def gauss_rmatvecs(key, cols, std, U, out):
    """``out[p, j] = std * sum_r W[r, j] U[p, r]`` for ``W`` of shape ``(U.shape[1], cols)``."""
    P, rows = U.shape
    nchunks = (rows + _CHUNK - 1) // _CHUNK
    partial = np.zeros((nchunks, P, cols))
    for c in prange(nchunks):
        z = np.empty(cols)
        words = np.empty(cols, np.uint64)
        acc = partial[c]
        for r in range(c * _CHUNK, min(rows, (c + 1) * _CHUNK)):
            row_normals(row_key(key, r), words, z)
            for p in range(P):
                u = U[p, r]
                for j in range(cols):
                    acc[p, j] += u * z[j]
    for p in range(P):
        for j in range(cols):
            s = 0.0
            for c in range(nchunks):
                s += partial[c, p, j]
            out[p, j] = std * s
