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


def bfk_kernels(family, weights: Weights, masks: np.ndarray, c: np.ndarray, last: int, bar=None):
    """Yield ``(v, K_v)`` for ``v = 1..last`` with kernel weights ``c`` (over layers ``1..L``).

    Each ``K_v`` is a new array, symmetric up to round-off, that the recursion does not touch
    again."""
    m = family.width
    K = np.zeros((m, m))
    K[np.diag_indices(m)] = c[0]
    for v in range(1, last + 1):
        if v > 1:
            K = bfk_step(family, weights, masks, K, v)
            K[np.diag_indices(m)] += c[v - 1]
        yield v, K
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
