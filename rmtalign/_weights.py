"""The weights of one draw as linear operators: ``W_1 .. W_L``, regenerated or kept.

Gaussian weights are never stored by default: every product regenerates the entries it needs
from the counter-based streams (:mod:`rmtalign._kernels.rng`), and only the columns a ReLU mask
keeps. Orthogonal (Haar) weights need a QR factorisation, so they are kept while they fit.

Dense blocks come in two kinds, and the method says which:

* :meth:`Weights.view` returns a **read-only** array that may be shared (a kept block, a cached
  orthogonal matrix): multiply it out of place.
* :meth:`Weights.copy` returns a new writable array that belongs to the caller.
"""
from __future__ import annotations

import math

import numpy as np

from . import seeds
from ._kernels import matfree, rng

DEFAULT_MEMORY_BUDGET = 1 << 30  # bytes of dense weights a draw may keep


class Weights:
    """``W_1 .. W_L`` of the draw keyed by ``key`` (layers are 1-based).

    ``keep_blocks``: the first column block ``W_l[:, cols]`` each layer is asked for is generated
    once and kept (read-only) for the later products with the same columns, while the kept blocks
    fit ``memory_budget``; the dense kernel recursion reuses the forward pass's blocks this way.
    """

    def __init__(self, family, key: int, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 keep_blocks: bool = False):
        self.family = family
        self.shapes = family.shapes
        self.stds = family.stds
        self.keys = [seeds.stream_key(key, seeds.WEIGHT, l) for l in range(1, family.depth + 1)]
        self.orthogonal = family.weights == "orthogonal"
        total = sum(r * c for r, c in self.shapes) * 8
        self._keep = self.orthogonal and total <= memory_budget
        self._cache = {}
        self._room = memory_budget if keep_blocks and not self.orthogonal else 0
        self._blocks = {}  # l -> (column indices, read-only W_l[:, cols])

    # -- dense blocks ------------------------------------------------------------------------
    def view(self, l: int, rows=None, cols=None) -> np.ndarray:
        """``W_l[rows][:, cols]`` (``None``: all), read-only: it may be shared with later calls."""
        W, _ = self._block(l, rows, cols)
        if W.flags.writeable:
            W.flags.writeable = False
        return W

    def copy(self, l: int, rows=None, cols=None) -> np.ndarray:
        """``W_l[rows][:, cols]`` (``None``: all) as a new array the caller owns."""
        W, fresh = self._block(l, rows, cols)
        return W if fresh else W.copy()

    def _block(self, l, rows, cols):
        """``(block, fresh)``: ``fresh`` when nothing else holds the returned array."""
        if l not in self._cache and not self.orthogonal:
            kept = self._kept_block(l, cols) if rows is None else None
            if kept is not None:
                return kept, False
            return self._generate(l, rows, cols), True
        W = self._cache[l] if l in self._cache else self._haar(l)
        shared = l in self._cache
        if rows is not None:
            W, shared = W[rows], False  # fancy indexing copies
        if cols is not None:
            W, shared = W[:, cols], False
        return W, not shared

    def _generate(self, l, rows, cols):
        n_rows, n_cols = self.shapes[l - 1]
        W = np.empty((n_rows if rows is None else len(rows), n_cols if cols is None else len(cols)))
        rng.fill_normal(self.keys[l - 1], W, rows, cols)
        W *= self.stds[l - 1]
        return W

    def _kept_block(self, l, cols):
        """``W_l[:, cols]`` if it is, or can now be, kept; None otherwise."""
        if not (self._room or self._blocks):
            return None
        n_rows, n_cols = self.shapes[l - 1]
        idx = rng.index_array(cols, n_cols)  # all columns: None and arange(n) are the same block
        hit = self._blocks.get(l)
        if hit is not None:
            return hit[1] if np.array_equal(hit[0], idx) else None
        size = n_rows * idx.size * 8
        if size > self._room:
            return None
        self._room -= size
        W = self._generate(l, None, idx)
        W.flags.writeable = False
        self._blocks[l] = (idx, W)
        return W

    def _haar(self, l: int) -> np.ndarray:
        n_rows, cols = self.shapes[l - 1]
        tall = n_rows >= cols
        G = np.empty((n_rows, cols) if tall else (cols, n_rows))
        rng.fill_normal(self.keys[l - 1], G)
        Q, R = np.linalg.qr(G)
        Q *= np.sign(np.diag(R))  # Haar, not just orthogonal (Mezzadri 2007)
        W = Q if tall else Q.T
        W *= self.stds[l - 1] * math.sqrt(max(n_rows, cols))
        if self._keep:
            W.flags.writeable = False
            self._cache[l] = W
        return W

    # -- products ----------------------------------------------------------------------------
    def matvecs(self, l: int, V: np.ndarray, cols=None) -> np.ndarray:
        """Rows of ``V @ W_l[:, cols].T`` (``V`` is ``P x len(cols)``; ``cols`` default all)."""
        rows, n_cols = self.shapes[l - 1]
        kept = self._kept_block(l, cols)
        if kept is not None:
            return V @ kept.T
        if self.orthogonal:
            return V @ self.view(l, cols=cols).T
        out = np.empty((V.shape[0], rows))
        matfree.gauss_matvecs(self.keys[l - 1], rows, rng.index_array(cols, n_cols), self.stds[l - 1],
                              np.ascontiguousarray(V), out)
        return out

    def rmatvecs(self, l: int, U: np.ndarray, cols=None) -> np.ndarray:
        """Rows of ``U @ W_l[:, cols]`` (``U`` is ``P x rows``; ``cols`` default all)."""
        rows, n_cols = self.shapes[l - 1]
        kept = self._kept_block(l, cols)
        if kept is not None:
            return U @ kept
        if self.orthogonal:
            return U @ self.view(l, cols=cols)
        cols = rng.index_array(cols, n_cols)
        out = np.empty((U.shape[0], cols.size))
        matfree.gauss_rmatvecs(self.keys[l - 1], cols, self.stds[l - 1], np.ascontiguousarray(U), out)
        return out
