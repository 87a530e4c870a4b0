"""Products along the depth of one draw: the layer Jacobians ``A_l``, their chain
``df_stop/df_start`` (as factors for :mod:`rmtalign._products`) and the dense BFK recursion.

``A_l = df_l/df_{l-1} = a I + beta W_l D_{l-1}`` with ``D_{l-1}`` the mask of ``f_{l-1}``. The
kernel recursion is Lemma A.1 of the paper written layer by layer (DESIGN.md):

    K_1 = c_1 I,     K_v = c_v I + A_v K_{v-1} A_v^T,

two GEMMs a layer, never the sum of Jacobian products term by term. Both use only the active
columns ``S`` of ``W_l`` (the mask keeps about half of them for ReLU).
"""
from __future__ import annotations

import numpy as np

from ._passes import exact_masks, forward, free_masks, network_input, rescale_pow2
from ._weights import Weights


def layer_jacobian(family, weights: Weights, masks: np.ndarray, l: int) -> np.ndarray:
    """Dense ``A_l = a I + beta W_l diag(mask_{l-1})`` for ``l = 2 .. L-1`` (a new array)."""
    A = weights.view(l) * (family.branch_scale * masks[l - 2])[None, :]
    if family.skip:
        A[np.diag_indices_from(A)] += family.skip
    return A


def bfk_step(family, weights: Weights, masks: np.ndarray, K: np.ndarray, l: int) -> np.ndarray:
    """``A_l K A_l^T`` for ``A_l = a I + beta W_l D_{l-1}``, using only the active columns of ``W_l``.

    With ``S`` the active set of the mask and ``T = beta W_S K_{S,:}``::

        A K A^T = beta^2 W_S K_SS W_S^T + a (T + T^T) + a^2 K

    which is ``4 m^2 |S|`` flops (``1.5 m^3`` for an MLP, where only ``T_{:,S}`` is needed) instead
    of the ``4 m^3`` of two dense GEMMs: ReLU masks keep about half the columns.
    """
    a, beta = family.skip, family.branch_scale
    S = np.flatnonzero(masks[l - 2])
    Ws = weights.view(l, cols=S)
    if not a:
        K_SS = K.take(S, axis=0).take(S, axis=1)  # twice as fast as K[np.ix_(S, S)]
        K_SS *= beta * beta
        return (Ws @ K_SS) @ Ws.T
    T = Ws @ K[S, :]
    T *= beta
    out = T[:, S] @ Ws.T
    out *= beta
    out += a * (T + T.T)
    out += (a * a) * K
    return out


def _bfk_step_batch(family, weights: Weights, mask: np.ndarray, K: np.ndarray, l: int) -> np.ndarray:
    """``A_l K A_l^T`` for a batch: ``K`` is ``(n, m, n, m)`` (block ``(i, j)`` couples inputs ``i``
    and ``j``), ``A_l = blockdiag(a I + beta W_l D_i)`` with ``mask`` ``(n, m)``. As in
    :func:`bfk_step`, with ``T_ij = beta W_S (D_i K_ij)_S``::

        (A K A^T)_ij = beta (T_ij D_j)_S W_S^T + a (T_ij + T_ji^T) + a^2 K_ij

    Each side is one GEMM of ``W_S`` with all ``n^2`` blocks at once; ``S`` is the union of the
    inputs' active columns."""
    a, beta = family.skip, family.branch_scale
    n, m = mask.shape
    S = np.flatnonzero(mask.any(axis=0))
    Ws = weights.view(l, cols=S)
    s = S.size

    def left(B):  # (n, s, n, p) -> W_S B over axis 1: (n, m, n, p)
        p = B.shape[-1]
        Y = Ws @ B.transpose(1, 0, 2, 3).reshape(s, n * n * p)
        return Y.reshape(m, n, n, p).transpose(1, 0, 2, 3)

    DK = (K * mask[:, :, None, None]).take(S, axis=1)  # D_i K_ij, rows S
    if not a:
        DKD = (DK * mask[None, None]).take(S, axis=3)  # D_i K_ij D_j
        DKD *= beta * beta
        out = left(DKD).reshape(n * m * n, s) @ Ws.T
        return out.reshape(n, m, n, m)
    T = left(DK)
    T *= beta
    out = ((T * mask[None, None]).take(S, axis=3).reshape(n * m * n, s) @ Ws.T).reshape(n, m, n, m)
    out *= beta
    out += a * (T + T.transpose(2, 3, 0, 1))
    out += (a * a) * K
    return out


def bfk_kernels(family, weights: Weights, masks: np.ndarray, c: np.ndarray, last: int, bar=None):
    """Yield ``(v, K_v)`` for ``v = 1..last`` with kernel weights ``c`` (over layers ``1..L``).

    One input: ``masks`` is ``(L-1, m)`` and ``c`` holds scalars ``c_l``; ``K_v`` is ``m x m``.
    A batch of ``n``: ``masks`` is ``(L-1, n, m)`` and ``c`` holds the ``n x n`` matrices ``C_l``;
    ``K_v = C_v (x) I + A_v K_{v-1} A_v^T`` is ``(n m) x (n m)``, input-major (entry ``i m + j``
    is unit ``j`` of input ``i``). Each ``K_v`` is a new array, symmetric up to round-off, that
    the recursion does not touch again."""
    m = family.width
    if masks.ndim == 3 and masks.shape[1] == 1:  # one input: the single-input arithmetic
        masks, c = masks[:, 0], c[:, 0, 0]
    if masks.ndim == 2:
        K = np.zeros((m, m))
        K[np.diag_indices(m)] = c[0]
        for v in range(1, last + 1):
            if v > 1:
                K = bfk_step(family, weights, masks, K, v)
                K[np.diag_indices(m)] += c[v - 1]
            yield v, K
            if bar is not None:
                bar.update()
        return
    n = masks.shape[1]
    diag = np.arange(m)
    K = np.zeros((n, m, n, m))
    K[:, diag, :, diag] = c[0]  # C_1 (x) I: block (i, j) is C_1[i, j] I
    for v in range(1, last + 1):
        if v > 1:
            K = _bfk_step_batch(family, weights, masks[v - 2], K, v)
            K[:, diag, :, diag] += c[v - 1]
        yield v, K.reshape(n * m, n * m)
        if bar is not None:
            bar.update()


def jacobian_factors(family, weights: Weights, key: int, mode: str, start: int, stop: int):
    """The factors ``A_{start+1}, .., A_stop`` of ``df_stop/df_start`` (a generator, in order) and
    the width of the first one.

    Networks without a skip and with masks (ReLU MLPs) give only the active blocks
    ``beta W_l[S_l, S_{l-1}]``: the mask's exact zero singular values stay exactly zero (-inf on
    the log scale) and each factor costs half. In exact mode the masks of the layers inside the
    chain come from a forward pass fused into the factors (``W_l[:, S_{l-1}]`` is generated once,
    gives ``f_l`` and, sliced to the rows ``S_l``, the factor). Features are rescaled by powers of
    two: only their signs matter, and nothing overflows.
    """
    m = family.width
    if family.skip == 0 and family.phi.has_masks:
        if mode == "exact":
            f = forward(family, weights, network_input(family, key), rescale=True, stop=start)[-1]
            return _fused_active_factors(family, weights, f, start, stop), int(np.count_nonzero(f > 0))
        masks = free_masks(family, key)
        active = {l: np.flatnonzero(masks[l - 1]) for l in range(start, stop)}
        active[stop] = np.arange(m)
        factors = (family.branch_scale * weights.view(l, rows=active[l], cols=active[l - 1])
                   for l in range(start + 1, stop + 1))
        return factors, len(active[start])
    if mode == "exact":
        f = forward(family, weights, network_input(family, key), rescale=True)
        masks = exact_masks(family, f)
    else:
        masks = free_masks(family, key)
    return (layer_jacobian(family, weights, masks, l) for l in range(start + 1, stop + 1)), m


def _fused_active_factors(family, weights, f, start, stop):
    beta = family.branch_scale
    S_prev = np.flatnonzero(f > 0)
    for l in range(start + 1, stop + 1):
        Wl = weights.copy(l, cols=S_prev)
        if beta != 1.0:
            Wl *= beta
        if l == stop:
            yield Wl
            return
        f = rescale_pow2(Wl @ f[S_prev])
        S_prev = np.flatnonzero(f > 0)
        yield Wl[S_prev]
