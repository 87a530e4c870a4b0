"""Matrix-free products with Gaussian matrices regenerated from their counter-based streams.

``W = std * Z`` where entry ``(r, j)`` of ``Z`` is a pure function of ``(key, r, j)`` (see
:mod:`.rng`). Only the columns ``cols`` of ``W`` take part: a ReLU mask zeroes the others in all
three passes (forward ``W phi(f)``, backward ``D W^T b``, tangent ``W D fdot``), so they are never
generated. Vectors are stored as rows (``P x n``, C order) so that each dot product and axpy runs
over contiguous memory. Rows are split into fixed chunks of ``_CHUNK``: the transpose product sums
the chunks' partial results in chunk order, so the result does not depend on the thread count.
"""
import numpy as np
from numba import njit, prange

from .._runtime import configure_numba
from .rng import row_key, row_normals

_CHUNK = 32
_FASTMATH = {"contract", "reassoc"}  # vectorised dot products; no nnan/ninf assumptions


def gauss_matvecs(key, rows, cols, std, V, out):
    """``out[p, r] = std * sum_k W[r, cols[k]] V[p, k]`` for ``r < rows``."""
    configure_numba()
    _gauss_matvecs(key, rows, cols, std, V, out)


def gauss_rmatvecs(key, cols, std, U, out):
    """``out[p, k] = std * sum_r W[r, cols[k]] U[p, r]`` for ``r < U.shape[1]``."""
    configure_numba()
    _gauss_rmatvecs(key, cols, std, U, out)


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _gauss_matvecs(key, rows, cols, std, V, out):
    """``out[p, r] = std * sum_k W[r, cols[k]] V[p, k]`` for ``r < rows``."""
    P, n = V.shape
    nchunks = (rows + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        z = np.empty(n)
        words = np.empty(n, np.uint64)
        for r in range(c * _CHUNK, min(rows, (c + 1) * _CHUNK)):
            row_normals(row_key(key, r), cols, words, z)
            for p in range(P):
                acc = 0.0
                for k in range(n):
                    acc += z[k] * V[p, k]
                out[p, r] = std * acc


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _gauss_rmatvecs(key, cols, std, U, out):
    """``out[p, k] = std * sum_r W[r, cols[k]] U[p, r]`` for ``r < U.shape[1]``."""
    P, rows = U.shape
    n = cols.shape[0]
    nchunks = (rows + _CHUNK - 1) // _CHUNK
    partial = np.zeros((nchunks, P, n))
    for c in prange(nchunks):
        z = np.empty(n)
        words = np.empty(n, np.uint64)
        acc = partial[c]
        for r in range(c * _CHUNK, min(rows, (c + 1) * _CHUNK)):
            row_normals(row_key(key, r), cols, words, z)
            for p in range(P):
                u = U[p, r]
                for k in range(n):
                    acc[p, k] += u * z[k]
    for p in range(P):
        for k in range(n):
            s = 0.0
            for c in range(nchunks):
                s += partial[c, p, k]
            out[p, k] = std * s
