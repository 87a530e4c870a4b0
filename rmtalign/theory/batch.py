"""The width-limit BFA of one GD step on a batch of ``n`` inputs, exact in depth.

Convention (the batch samplers' and ``tests/oracles/batch_ref.py``'s): the ``n`` inputs go through
the same weights, the loss is ``mean(F_L)`` over the ``n k`` output entries, the learning rates are
the family's rule applied to the batch's squared gradient norms, and the BFA at layer ``v`` is the
cosine between ``-b_v`` and ``fdot_v`` flattened to vectors of ``n m`` entries. The batch's BFK
obeys the single-input recursion with ``n x n`` blocks,

    K_v = C_v (x) I_m + A_v K_{v-1} A_v^T,     A_v = a I + beta (I_n (x) W_v) D_{v-1},
    C_v = eta_v beta_v^2 G_{v-1},              G_{v-1} = Gram of the inputs phi(f_{v-1}^a) of W_v,

with ``D_{v-1} = diag(D_{v-1}^1, .., D_{v-1}^n)`` the masks of the ``n`` inputs.

**Method: free probability with amalgamation over M_n.** Let ``E = id_n (x) tr_m`` (the ``n x n``
matrix of normalised block traces). ``I_n (x) W`` is an M_n-valued circular element (Haar unitary
for orthogonal weights) with covariance ``E(X B X^T) = B``, free over M_n from everything built
from earlier weights. In the width limit the mask pattern ``(D^1(i), .., D^n(i))`` of each neuron
is the sign pattern of a centred Gaussian vector with the forward covariance ``Q_{v-1}`` (iid over
neurons), and it is free over M_n from ``K_{v-1}`` (flipping the sign of a row of ``W`` flips the
neuron's whole pattern and conjugates ``K`` by a diagonal sign, as for one input), so with

    P_ab = E[D^a D^b] = 1/4 + arcsin(r_ab) / (2 pi),
    P3_acb = E[D^a D^c D^b] = 1/8 + (arcsin r_ac + arcsin r_cb + arcsin r_ab) / (4 pi)

(``r`` the correlations of ``Q``; all ones for a linear activation) the two M_n-valued moments
``E1 = E(K)``, ``E2 = E(K^2)`` close (``'`` marks layer ``v-1``, ``o`` the Hadamard product,
``p = P_aa``, ``a2 = a^2``, ``g2 = beta^2 m s^2``):

    EY  = P o E1',           EY2 = T3(E1', E1') + p P o (E2' - E1' E1'),
    T3(A, B)_ab = sum_c A_ac B_cb P3_acb,
    E1  = C + a2 E1' + g2 EY,
    E2  = C C + C S + S C + a2^2 E2' + a2 g2 (E1' EY + EY E1' + P o E2' + p E2')
          + g2^2 (EY EY + EY2),      S = a2 E1' + g2 EY,

the ``EY EY`` term absent for orthogonal weights. For ``n = 1`` these are the single-input
``M1' = c + t1 M1``, ``M2' = c^2 + 2 c t1 M1 + t1^2 M2 + Var(Y) M1^2`` (tested).

**Signal propagation.** Per-neuron forward covariances ``Q_1 = s_1^2 X X^T``,
``Q_l = a^2 Q_{l-1} + beta^2 m s^2 kappa(Q_{l-1})`` with ``kappa`` the ReLU arc-cosine kernel
(Cho & Saul) ``kappa_ab = sqrt(Q_aa Q_bb) (sin t + (pi - t) cos t) / (2 pi)``, ``cos t = r_ab``
(``kappa(Q) = Q`` for linear). Backward: every input has ``b_L = 1/(n k)``, so ``z_{L-1} =
alpha W_L^T b_L`` is one vector for all inputs, and the per-neuron backward covariances are
``Bn_{L-1} = P_psi o (alpha^2 s_L^2 <b_L^a, b_L^b>)``, ``Bn_{l-1} = a^2 Bn_l + g2 P_{l-1} o Bn_l``.
Gradient norms ``Gamma_l = beta_l^2 sum_ab <b_l^a, b_l^b> <g_{l-1}^a, g_{l-1}^b>`` give the rates.

**The angle.** Given the later layers, ``b_v`` has iid rows (over neurons) with covariance
``Bn_v``, free over M_n from ``K_v`` (the MLP's ``b_v = D_v W_{v+1}^T b_{v+1}``: ``D_v`` free from
``K_v`` as above; free masks in ResNets; no masks in linear networks), so by the law of large
numbers (Thm 3.2 with amalgamation)

    cos(theta_v) = <Bn_v, E1_v> / sqrt(<Bn_v, E2_v> tr Bn_v),     <A, B> = sum_ab A_ab B_ab.

**Exact masks (ReLU ResNets, ``mode="exact"``).** A neuron's pre-activations form one Gaussian
family over layers and inputs, ``Cov(f_j^a(i), f_l^c(i)) = a^(j-l) Q_l^ac`` (``j >= l``), so its
masks are correlated across depth, inside ``K_v`` and with ``b_v``. ``E1`` is unchanged (the
diagonal blocks ``K^ab_ii`` concentrate). The off-diagonal entries carry a profile over the two
neurons' mask histories, affine in them (i != j; ``[a, c, b]`` arrays, rows ``l < v``):

    m E[K^ac_ij K^cb_ji | masks] = alpha + sum_l Gj_l D_l^a(j) D_l^b(j) + Hi_l D_l^c(i),

with ``Gj_{v,v-1} = Hi_{v,v-1} = a2 g2 E1'^ac E1'^cb``, ``Gj_{v,l} = (a2^2 + a2 g2 P_{v-1}^ab)
Gj_{v-1,l}``, ``Hi_{v,l} = (a2^2 + a2 g2 p) Hi_{v-1,l}`` and

    alpha_v = a2^2 alpha + a2 g2 (P' alpha + p alpha + sum_l Hi_l U1_{v-1,l} + Gj_l U2_{v-1,l})
              + g2^2 (P3' E1'E1' - e P'P' E1'E1' + p P' alpha + P' sum_l Gj_l U2 + p sum_l Hi_l U1),

``U1_{j,l} = E[D_j^a D_j^b D_l^c]``, ``U2_{j,l} = E[D_j^c D_l^a D_l^b]`` (three-variable orthant
probabilities of one neuron across two layers), ``e = 1`` for orthogonal weights; ``E2 = E1 E1 +
sum_c (alpha + sum_l Gj_l P_l + p Hi_l)``. Given the masks, the rows of ``b_v`` have covariance
``S_v(i) = a^(2(L-1-v)) Bn_{L-1} + sum_{j=v}^{L-2} a^(2(j-v)) beta^2 m s_{j+1}^2 Bn_{j+1} o
D_j(i) D_j(i)^T``, so ``<Bn_v, E2_v>`` gains ``sum_l sum_acb Hi_l (E[S_v^ab D_l^c] - p Bn_v^ab)``
(``m2b``; zero at ``v = L-1``). Replacing ``U1``, ``U2`` by products of their factors gives the
free-mask recursion above, and one input gives ``rmtalign.theory.bfk``'s exact-mask moments
(both tested to round-off). Cost for an explicit Gram: O(L^2 n^3) for the kernel, O(L^2 n^3 + L^3)
for the correction (the scalars ``tau[j, l]``; L = 100, n = 32: 8 s). For an **equicorrelated
batch** every ``[a, c, b]`` tensor has 5 values, one per index pattern (``a = c = b``; ``a = b !=
c``; ``a = c != b``; ``c = b != a``; all distinct), and every ``n x n`` matrix 2: the pattern
values of ``alpha``, ``Gj``, ``Hi``, ``U1``, ``U2``, ``P3`` do not depend on ``n``, which enters
through the sums over ``c`` (``sum_c T`` is ``t0 + (n-1) t1`` on the diagonal, ``t2 + t3 + (n-2)
t4`` off it) and the rates. That form (:func:`_exact_masks_exchangeable`) costs O(L^2) for any
``n`` (L = 100: 0.05 s at n = 1024 and at ``n = inf``, which is evaluated at ``n = 2^40`` as for
the exchangeable path below); it equals the explicit recursion to round-off (tests).
Validation against the batch sampler: ``docs/theory.md``, Batches.

**Exchangeable batches** (``inputs=n, input_correlation=rho``): every matrix stays of the form
``omega J + (delta - omega) I`` (Hadamard products act on ``(delta, omega)``, matrix products and
``T3`` through ``n``), so the recursion is O(L) for any ``n`` (``E2`` is carried divided by ``n``;
the coefficients are polynomials in ``1/n``). ``n = inf`` is evaluated at ``n = 2^40``: the angle's
``1/n`` corrections are ~1e-12 there, while ``cos_spectrum``, which decays like ``n^(-1/2)`` when
the inputs correlate, is ~1e-6 rather than its limit 0. The general path (``gram=G``) costs
O(L n^3).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numba
import numpy as np

from .._validate import check_real
from .bfk import TheoryBFA, _uses_exact_masks
from .layer import layer_law

__all__ = ["BatchTheoryBFA", "BatchLimits", "batch_limits"]


@dataclass(frozen=True, repr=False)
class BatchTheoryBFA(TheoryBFA):
    """Width-limit BFA of one GD step on a batch of inputs (see :mod:`rmtalign.theory.batch`).

    Fields of :class:`~rmtalign.theory.TheoryBFA`, with ``cos`` the angle of the flattened
    ``(n m)`` vectors; ``m1 = b^T K b / (n |b|^2)`` and ``m2b = |K b|^2 / (n^2 |b|^2)`` (per
    input, so that a batch of equal inputs has the single-input values up to a common factor),
    ``m2`` the same for a ``b`` independent of the masks (``= m2b`` except for ReLU ResNets with
    their own masks, as for one input), and ``cos_spectrum = M1 / sqrt(M2)`` of the ``(n m) x (n m)`` kernel itself (Thm 3.2
    with an isotropic probe; what ``sample_bfk(...).cos_spectrum`` measures). The batch: ``inputs``
    (``n``, an int or ``inf``), ``input_correlation`` (``rho``, or None when ``gram`` was given)
    and ``gram`` (the ``n x n`` input Gram matrix, or None for an exchangeable batch)."""

    inputs: object
    input_correlation: object
    gram: object


# --------------------------------------------------------------------------- correlation maps
_SNAP = 8 * np.finfo(float).eps


def _snap(r):
    """Correlations within round-off of +-1 set to +-1: the mask overlaps have a square-root
    singularity there (``arcsin(1 - e) = pi/2 - sqrt(2 e)``), so 1 ulp of ``r`` would cost 1e-8."""
    return np.where(np.abs(r) > 1 - _SNAP, np.sign(r), np.clip(r, -1.0, 1.0))


def _correlations(Q):
    """Correlation matrix of the covariance ``Q`` (0 where an input's variance is 0: an explicit
    zero input of the samplers)."""
    sd = np.sqrt(np.diag(Q))
    norms = np.outer(sd, sd)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _snap(np.where(norms > 0, Q / np.where(norms > 0, norms, 1.0), 0.0))


def _relu_kernel(Q):
    """Arc-cosine kernel ``E[relu(u) relu(u)^T]`` for ``u ~ N(0, Q)`` (Cho & Saul, degree 1)."""
    r = _correlations(Q)
    t = np.arccos(r)
    sd = np.sqrt(np.diag(Q))
    out = np.outer(sd, sd) * (np.sqrt(1.0 - r * r) + (np.pi - t) * r) / (2 * np.pi)
    np.fill_diagonal(out, np.diag(Q) / 2)  # exact on the diagonal (arccos(1) round-off)
    return out


def _relu_pairs(Q):
    """``P_ab = P(u_a > 0, u_b > 0)`` for ``u ~ N(0, Q)``."""
    out = 0.25 + np.arcsin(_correlations(Q)) / (2 * np.pi)
    np.fill_diagonal(out, 0.5)
    return out


def _relu_triples(Q):
    """``P3_abc = P(u_a, u_b, u_c > 0)`` (the orthant formula; it covers repeated indices)."""
    s = np.arcsin(_correlations(Q))
    np.fill_diagonal(s, np.pi / 2)
    return 0.125 + (s[:, :, None] + s[None, :, :] + s[:, None, :]) / (4 * np.pi)


def _maps(activation, Q):
    """``(kappa(Q), P)`` of an activation record for the covariance ``Q``: ``E[phi phi^T]`` and
    ``E[phi' phi'^T]`` for ``u ~ N(0, Q)``."""
    n = Q.shape[0]
    if not activation.has_masks:
        return Q.copy(), np.ones((n, n))
    if activation.name != "relu":  # pragma: no cover - no such activation today
        raise NotImplementedError(f"batch theory knows the ReLU and linear maps, not {activation.name!r}")
    return _relu_kernel(Q), _relu_pairs(Q)


def _triples(activation, Q):
    """``P3_abc = E[phi'_a phi'_b phi'_c]`` for ``u ~ N(0, Q)``."""
    n = Q.shape[0]
    return _relu_triples(Q) if activation.has_masks else np.ones((n, n, n))


# --------------------------------------------------------------------------- signal propagation
@dataclass(frozen=True)
class BatchLimits:
    """Width-limit signal propagation of a batch (arrays over layers; index 0 = layer 1): the
    free-mode batch samplers' kernel weights and mask law, and the general path's inputs.

    ``Q``, ``corr``, ``kappa``, ``P`` ``(L-1, n, n)``: per-neuron covariance of ``f_l`` across the
    inputs, its correlations (the masks' law), ``E[phi(f_l) phi(f_l)^T]`` and ``E[phi'(f_l)
    phi'(f_l)^T]`` per neuron; ``Bn`` ``(L-1, n, n)``: per-neuron covariance of ``b_l``;
    ``forward_gram`` ``(L, n, n)``: ``G_{l-1} G_{l-1}^T``, the Gram of the inputs of ``W_l``;
    ``backward_gram`` ``(L, n, n)``: ``b_l^a . b_l^b``; ``grad_sq``, ``lr`` ``(L,)``;
    ``kernel_weights`` ``(L, n, n)``: ``C_l = eta_l beta_l^2 G_{l-1} G_{l-1}^T``.
    """

    Q: np.ndarray
    corr: np.ndarray
    kappa: np.ndarray
    P: np.ndarray
    Bn: np.ndarray
    forward_gram: np.ndarray
    backward_gram: np.ndarray
    grad_sq: np.ndarray
    lr: np.ndarray
    kernel_weights: np.ndarray


def batch_limits(family, gram) -> BatchLimits:
    """Width-limit covariances, Grams, gradient norms, learning rates and BFK weights of a batch
    with input Gram ``gram`` (``X X^T``, ``n x n``; module docstring, *Signal propagation*). One
    input of norm ``sqrt(d)`` gives :func:`rmtalign.theory.mean_field`'s numbers (to round-off).
    The free-mode batch samplers read their kernel weights and mask law here.

    Non-finite values are returned, not raised: the theory checks them, the samplers report them
    in their passes."""
    L, m = family.depth, family.width
    Gx = np.asarray(gram, dtype=float)
    n = Gx.shape[0]
    s = family.stds
    a = family.skip
    beta = family.branch_scale
    betas = family.branch_scales
    phi, psi = family.phi, family.psi

    Q = np.empty((L - 1, n, n))
    kap = np.empty((L - 1, n, n))
    P = np.empty((L - 1, n, n))
    Q[0] = s[0] ** 2 * Gx
    with np.errstate(over="ignore", invalid="ignore"):
        for l in range(1, L - 1):
            kap[l - 1], P[l - 1] = _maps(phi, Q[l - 1])
            Q[l] = a * a * Q[l - 1] + beta * beta * m * s[l] ** 2 * kap[l - 1]
        kap[L - 2], P[L - 2] = _maps(phi, Q[L - 2])
        kap_out, P_out = _maps(psi, Q[L - 2])

        # backward: full Gram of b_L, per-neuron covariances of b_{L-1} .. b_1
        B_L = np.full((n, n), 1.0 / (n * n * family.out_dim))
        Bn = np.empty((L - 1, n, n))
        Bn[L - 2] = P_out * (family.output_multiplier ** 2 * s[L - 1] ** 2 * B_L)
        for l in range(L - 1, 1, -1):  # b_{l-1} = a b_l + beta D_{l-1} W_l^T b_l
            Bn[l - 2] = a * a * Bn[l - 1] + beta * beta * m * s[l - 1] ** 2 * P[l - 2] * Bn[l - 1]

        # Grams of the inputs of W_l (l = 1..L), gradient norms, rates, kernel weights
        G = np.empty((L, n, n))
        G[0] = Gx
        G[1:L - 1] = m * kap[: L - 2]
        G[L - 1] = m * kap_out
        Bfull = np.concatenate([m * Bn, B_L[None]])
        grad_sq = betas ** 2 * np.einsum("lab,lab->l", Bfull, G)
    eta = family.rates(grad_sq)
    C = (eta * betas ** 2)[:, None, None] * G
    return BatchLimits(Q, np.stack([_correlations(q) for q in Q]), kap, P, Bn, G, Bfull,
                       grad_sq, eta, C)


# --------------------------------------------------------------------------- general path
def _general(family, Gx):
    """Per-layer ``(cos, cos_spectrum, m1, m2)`` for the input Gram ``Gx`` (n x n), O(L n^3).

    One computation for both modes: the families it is called for have masks free from their
    kernel (MLPs, linear networks) or made so (ReLU ResNets in ``mode="free"``)."""
    L, n = family.depth, Gx.shape[0]
    phi = family.phi
    lim, C, a2, g2 = _checked_limits(family, Gx)
    Q, P, Bn = lim.Q, lim.P, lim.Bn

    p = float(phi.mask_probability)
    gauss = family.weights == "gaussian"
    E1 = np.empty((L - 1, n, n))
    E2 = np.empty((L - 1, n, n))
    E1[0] = C[0]
    E2[0] = C[0] @ C[0]
    for v in range(1, L - 1):  # layer v+1 from layer v (0-based rows)
        e1, e2, Pm = E1[v - 1], E2[v - 1], P[v - 1]
        EY = Pm * e1
        EY2 = (np.einsum("ac,cb,acb->ab", e1, e1, _triples(phi, Q[v - 1]))
               + p * Pm * (e2 - e1 @ e1))
        S = a2 * e1 + g2 * EY
        XX = g2 * g2 * (EY2 + (EY @ EY if gauss else 0.0))
        E1[v] = C[v] + S
        E2[v] = (C[v] @ C[v] + C[v] @ S + S @ C[v] + a2 * a2 * e2
                 + a2 * g2 * (e1 @ EY + EY @ e1 + Pm * e2 + p * e2) + XX)
    return _angles(Bn, E1, E2)[:4]


def _checked_limits(family, Gx):
    """:func:`batch_limits` of the Gram ``Gx``, checked finite, and the normalised kernel
    weights with the layer law's ``a^2 / t1``, ``g^2 / t1`` (:func:`_normalised`)."""
    L = family.depth
    lim = batch_limits(family, Gx)
    if not (np.all(np.isfinite(lim.Q)) and np.all(np.isfinite(lim.forward_gram[L - 1]))):
        raise ValueError("the forward covariances over/underflow for depth="
                         f"{L}; use a variance-preserving init")
    if not np.all(np.isfinite(lim.grad_sq)):
        raise ValueError(f"the gradient norms over/underflow for depth={L}; use a "
                         "variance-preserving init")
    C, a2, g2 = _normalised(family, lim.kernel_weights[: L - 1])
    return lim, C, a2, g2


def _angles(Bn, E1, E2, extra=0.0):
    """``(cos, cos_spectrum, m1, m2, m2b)`` from the per-neuron backward covariances ``Bn`` and
    the M_n-valued moments ``E1``, ``E2`` (rows = layers); ``extra`` is added to ``<Bn, E2>``
    for the angle (the exact masks' backward correction)."""
    n = E1.shape[-1]
    num = np.einsum("lab,lab->l", Bn, E1)
    sq = np.einsum("lab,lab->l", Bn, E2)
    sqb = sq + extra
    trB = np.einsum("laa->l", Bn)
    trE1 = np.einsum("laa->l", E1) / n
    trE2 = np.einsum("laa->l", E2) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(trE1 > 0, num / np.sqrt(sqb * trB), np.nan)
        spec = np.where(trE1 > 0, trE1 / np.sqrt(trE2), np.nan)
    return cos, spec, num / (n * trB), sq / (n * n * trB), sqb / (n * n * trB)


def _normalised(family, C):
    """Kernel weights ``C_v / t1^v`` and the layer law's ``a^2 / t1``, ``g^2 / t1`` (``t1 =
    tau(A^T A)``): the recursion runs on the scale-free ``Y / t1``, as the single-input one,
    and a common factor (on the log scale) keeps the weights in range."""
    law = layer_law(family)
    t1 = law.mean
    if t1 <= 0:
        raise ValueError("tau(A^T A) = 0: the Jacobians vanish (branch_scale = skip = 0)")
    top = np.max(np.abs(C), axis=tuple(range(1, C.ndim)))
    v = np.arange(1, C.shape[0] + 1)
    with np.errstate(divide="ignore"):
        logc = np.where(top > 0, np.log(np.where(top > 0, top, 1.0)) - v * math.log(t1), -np.inf)
    shift = np.max(logc) if np.any(top > 0) else 0.0
    factor = np.where(top > 0, np.exp(logc - shift) / np.where(top > 0, top, 1.0), 0.0)
    C = C * factor.reshape((-1,) + (1,) * (C.ndim - 1))
    return C, float(law.a2) / t1, float(law.g2) / t1


# --------------------------------------------------------------------------- exact masks
def _exact_masks(family, Gx, free=False):
    """Per-layer ``(cos, cos_spectrum, m1, m2, m2b)`` of a ReLU ResNet with its own masks for the
    input Gram ``Gx`` (module docstring, *Exact masks*): O(L^2 n^3) for the kernel, O(L^2 n^3 +
    L^3) for the backward correction (equicorrelated batches take
    :func:`_exact_masks_exchangeable`, O(L^2)). ``free=True`` replaces every joint mask
    probability across layers by the product of its factors: the free-mask model, which must
    reproduce :func:`_general` (a test of the algebra)."""
    L, n = family.depth, Gx.shape[0]
    lim, C, a2, g2 = _checked_limits(family, Gx)
    Q, P, Bn = lim.Q, lim.P, lim.Bn
    a = family.skip
    p = float(family.phi.mask_probability)
    e = 0.0 if family.weights == "gaussian" else 1.0
    R = L - 1  # rows: row r is layer r + 1
    four_pi = 4 * np.pi
    zero = np.zeros((n, n, n))

    # asin of one neuron's pre-activation correlations: A[r] across the inputs at row r, and
    # cross(j, l)[x, y] = corr(f_j^x, f_l^y) = a^(j-l) Q_l^xy / sqrt(Q_j^xx Q_l^yy), j > l
    A = np.arcsin(np.stack([_correlations(q) for q in Q]))
    for r in range(R):
        np.fill_diagonal(A[r], np.pi / 2)
    sd = np.sqrt(np.einsum("raa->ra", Q))

    def cross(j, l):
        return np.arcsin(_snap(a ** (j - l) * Q[l] / np.outer(sd[j], sd[l])))

    def U1(j, l):  # j > l: E[D_j^a D_j^b D_l^c] on [a, c, b]
        if free:
            return P[j][:, None, :] * p
        X = cross(j, l)
        return 0.125 + (A[j][:, None, :] + X[:, :, None] + X.T[None, :, :]) / four_pi

    def U2(j, l):  # j > l: E[D_j^c D_l^a D_l^b] on [a, c, b]
        if free:
            return p * P[l][:, None, :]
        X = cross(j, l)
        return 0.125 + (A[l][:, None, :] + X.T[:, :, None] + X[None, :, :]) / four_pi

    # backward: S_r(i) = a^(2(R-1-r)) Bn[R-1] + sum_{j=r}^{R-2} a^(2(j-r)) gb_j Bn[j+1] o D_j(i)
    # (the per-neuron covariance of b given its masks), gb_j = beta^2 m s_{j+2}^2
    gb = family.branch_scale ** 2 * family.width * family.stds[1:R] ** 2  # gb[j], j = 0..R-2

    E1 = np.empty((R, n, n))
    E2 = np.empty((R, n, n))
    corr = np.zeros(R)
    E1[0] = C[0]
    E2[0] = C[0] @ C[0]
    # off-diagonal profile: m E[K^ac_ij K^cb_ji | masks] = alpha + sum_l Gj[l] D_l^a(j) D_l^b(j)
    # + Hi[l] D_l^c(i), i != j, on [a, c, b], rows l < r. Every coefficient is a multiple of
    # base(l) = a2 g2 E1_l^ac E1_l^cb: Gj[l] = F[l]^ab base(l), Hi[l] = h^(r-1-l) base(l), so
    # only n x n factors are kept (memory O(L n^2 + n^3)).
    h = a2 * a2 + a2 * g2 * p

    def base(l):
        return a2 * g2 * E1[l][:, :, None] * E1[l][None, :, :]

    alpha = zero
    F = np.ones((R, n, n))
    for r in range(1, R):
        e1 = E1[r - 1]
        Pm = P[r - 1][:, None, :]
        ee = e1[:, :, None] * e1[None, :, :]
        sH1, sG2 = zero, zero
        for l in range(r - 1):
            b = base(l)
            sH1 = sH1 + h ** (r - 2 - l) * b * U1(r - 1, l)
            sG2 = sG2 + F[l][:, None, :] * b * U2(r - 1, l)
        Ar = A[r - 1]
        P3 = 0.125 + (Ar[:, None, :] + Ar[:, :, None] + Ar.T[None, :, :]) / four_pi
        YY = P[r - 1][:, :, None] * P[r - 1][None, :, :] * ee
        alpha = (a2 * a2 * alpha + a2 * g2 * (Pm * alpha + sH1 + p * alpha + sG2)
                 + g2 * g2 * (P3 * ee - e * YY + p * Pm * alpha + Pm * sG2 + p * sH1))
        F[: r - 1] *= a2 * a2 + a2 * g2 * P[r - 1]
        E1[r] = C[r] + a2 * e1 + g2 * P[r - 1] * e1
        V = alpha.sum(axis=1)
        for l in range(r):
            V = V + np.einsum("acb,ab->ab", base(l), F[l] * P[l] + p * h ** (r - 1 - l))
        E2[r] = E1[r] @ E1[r] + V
    # E_i[S_r^ab(i) (K^2)^ab_ii] - <Bn_r, E2_r> = sum_{l<r} <Hi_r[l], E[S_r^ab D_l^c] - p Bn_r^ab>,
    # with Hi_r[l] = h^(r-1-l) base_l (h = a2^2 + a2 g2 p, base_l = a2 g2 E1_l^ac E1_l^cb) and
    # E[S_r^ab D_l^c] - p Bn_r^ab = sum_{j=r}^{R-2} a^(2(j-r)) gb_j Bn_{j+1}^ab (U1(j, l) - p P_j^ab):
    # the scalars tau[j, l] = <base_l, Bn_{j+1} o (U1(j, l) - p P_j)> carry it (O(L^2) memory)
    tau = np.zeros((R, R))
    for l in range(R):
        b = base(l)
        for j in range(l + 1, R - 1):
            tau[j, l] = np.sum(b * Bn[j + 1][:, None, :] * (U1(j, l) - p * P[j][:, None, :]))
    for r in range(1, R - 1):
        j = np.arange(r, R - 1)
        inner = (a ** (2 * (j - r)) * gb[j]) @ tau[r: R - 1, :r]      # over j, for each l < r
        corr[r] = np.sum(h ** (r - 1 - np.arange(r)) * inner)
    return _angles(Bn, E1, E2, corr)


# --------------------------------------------------------------------------- exact masks, patterns
# An [a, c, b] tensor of an equicorrelated batch has 5 values, one per index pattern:
# 0: a = c = b, 1: a = b != c, 2: a = c != b, 3: c = b != a, 4: all distinct. An n x n matrix
# (diagonal, off-diagonal) enters it as M[a, c], M[c, b] or M[a, b]:
_AC = np.array([0, 1, 0, 1, 1])
_CB = np.array([0, 1, 1, 0, 1])
_AB = np.array([0, 0, 1, 1, 1])


def _sum_c(T, eps):
    """``(1/n) sum_c T[a, c, b]`` of pattern tensors (last axis 5) as (diagonal, off-diagonal)."""
    d = eps * T[..., 0] + (1 - eps) * T[..., 1]
    o = eps * (T[..., 2] + T[..., 3]) + (1 - 2 * eps) * T[..., 4]
    return np.stack([d, o], axis=-1)


def _matmul_n(A, B, eps):
    """``(A B) / n`` of two (diagonal, off-diagonal) matrices."""
    d = eps * A[0] * B[0] + (1 - eps) * A[1] * B[1]
    o = eps * (A[0] * B[1] + A[1] * B[0]) + (1 - 2 * eps) * A[1] * B[1]
    return np.array([d, o])


def _exact_masks_exchangeable(family, n, rho, free=False):
    """:func:`_exact_masks` for ``n`` inputs of Gram ``d ((1 - rho) I + rho J)``, every ``[a, c,
    b]`` tensor carried on its 5 index patterns and every ``n x n`` matrix on (diagonal,
    off-diagonal): the pattern values do not depend on ``n``, which enters only through the sums
    over ``c`` (and the rates), so ``n`` is a parameter. ``E2``, ``V`` are carried divided by ``n``,
    ``<., .>`` by ``n^2``, the backward correction by ``n^3``. Cost O(L^2) for any ``n``: the
    cross-layer probabilities ``U1(j, l)``, ``U2(j, l)`` of all pairs ``l < j``, the backward
    scalars ``tau[j, l]`` summed by a backward recursion over ``j``."""
    eps, Q, P, _, Bn, C, a2, g2 = _exchangeable_limits(family, n, rho)
    L = family.depth
    a = family.skip
    p = float(family.phi.mask_probability)
    e = 0.0 if family.weights == "gaussian" else 1.0
    R = L - 1
    four_pi = 4 * np.pi
    gb = family.branch_scale ** 2 * family.width * family.stds[1:R] ** 2  # gb[j], j = 0..R-2

    sd = np.sqrt(Q[:, 0])
    A = np.empty((R, 2))
    A[:, 0] = np.pi / 2
    A[:, 1] = np.arcsin(_snap(Q[:, 1] / Q[:, 0]))
    P3 = 0.125 + (A[:, _AB] + A[:, _AC] + A[:, _CB]) / four_pi          # (R, 5)

    def cross(j):  # asin corr(f_j^x, f_l^y), l = 0..j-1, as (j, 2)
        ls = np.arange(j)
        return np.arcsin(_snap((a ** (j - ls) / (sd[j] * sd[:j]))[:, None] * Q[:j]))

    def U1(j):  # E[D_j^a D_j^b D_l^c], l < j, (j, 5)
        if free:
            return np.broadcast_to(p * P[j, _AB], (j, 5))
        X = cross(j)
        return 0.125 + (A[j, _AB] + X[:, _AC] + X[:, _CB]) / four_pi

    def U2(j):  # E[D_j^c D_l^a D_l^b], l < j, (j, 5)
        if free:
            return p * P[:j, _AB]
        X = cross(j)
        return 0.125 + (A[:j, _AB] + X[:, _AC] + X[:, _CB]) / four_pi

    h = a2 * a2 + a2 * g2 * p
    E1 = np.empty((R, 2))
    E2 = np.empty((R, 2))            # E2 / n
    E1[0] = C[0]
    E2[0] = _matmul_n(C[0], C[0], eps)
    base = np.zeros((R, 5))          # a2 g2 E1_l^ac E1_l^cb
    base[0] = a2 * g2 * E1[0, _AC] * E1[0, _CB]
    F = np.ones((R, 2))
    alpha = np.zeros(5)
    tau = np.zeros((R, R))           # tau[j, l] / n^3
    for r in range(1, R):
        j = r - 1
        e1 = E1[j]
        Pm = P[j, _AB]
        ee = e1[_AC] * e1[_CB]
        if j > 0:
            u1 = U1(j)
            hp = h ** np.arange(j - 1, -1, -1)                        # h^(r-2-l), l < j
            sH1 = (hp[:, None] * base[:j] * u1).sum(axis=0)
            sG2 = (F[:j, _AB] * base[:j] * U2(j)).sum(axis=0)
            if j < R - 1:  # tau[j, l] = <base_l, Bn_{j+1} o (U1(j, l) - p P_j)> / n^3
                t = _sum_c(base[:j] * Bn[j + 1, _AB] * (u1 - p * Pm), eps)
                tau[j, :j] = _inner(eps, np.ones(2), t)
        else:
            sH1 = sG2 = np.zeros(5)
        YY = P[j, _AC] * P[j, _CB] * ee
        alpha = (a2 * a2 * alpha + a2 * g2 * (Pm * alpha + sH1 + p * alpha + sG2)
                 + g2 * g2 * (P3[j] * ee - e * YY + p * Pm * alpha + Pm * sG2 + p * sH1))
        F[:j] *= a2 * a2 + a2 * g2 * P[j]
        E1[r] = C[r] + a2 * e1 + g2 * P[j] * e1
        base[r] = a2 * g2 * E1[r, _AC] * E1[r, _CB]
        w = F[:r] * P[:r] + p * h ** np.arange(r - 1, -1, -1)[:, None]  # (r, 2), l < r
        V = _sum_c(alpha, eps) + _sum_c(base[:r] * w[:, _AB], eps).sum(axis=0)
        E2[r] = _matmul_n(E1[r], E1[r], eps) + V
    # corr[r] = sum_{l<r} h^(r-1-l) W_r[l], W_r[l] = sum_{j=r}^{R-2} a^(2(j-r)) gb_j tau[j, l]
    # = gb_r tau[r, l] + a^2 W_{r+1}[l]
    corr = np.zeros(R)
    W = np.zeros(R)
    for r in range(R - 2, 0, -1):
        W = gb[r] * tau[r] + a * a * W
        corr[r] = np.sum(h ** np.arange(r - 1, -1, -1) * W[:r])
    return _exchangeable_angles(eps, Bn, E1, E2, corr)


# --------------------------------------------------------------------------- exchangeable path
def _exchangeable(family, n, rho):
    """As :func:`_general` for ``n`` inputs of Gram ``d ((1 - rho) I + rho J)``, carrying each
    ``n x n`` matrix as ``(diagonal, off-diagonal)``: O(L) for any ``n`` (``inf`` included)."""
    eps, Q, P, P3, Bn, C, a2, g2 = _exchangeable_limits(family, n, rho)
    phi = family.phi
    E1, E2 = _exchangeable_loop(C, P, P3, eps, a2, g2, float(phi.mask_probability),
                                family.weights == "gaussian")
    return _exchangeable_angles(eps, Bn, E1, E2)[:4]


def _inner(eps, A, B):
    """``<A, B> / n^2`` of two ``(diagonal, off-diagonal)`` matrices (rows broadcast)."""
    return eps * A[..., 0] * B[..., 0] + (1 - eps) * A[..., 1] * B[..., 1]


def _exchangeable_angles(eps, Bn, E1, E2, extra=0.0):
    """``(cos, cos_spectrum, m1, m2, m2b)`` as :func:`_angles`, from ``(diagonal, off-diagonal)``
    rows of ``Bn``, ``E1`` and ``E2 / n``; ``extra`` (the exact masks' backward correction,
    divided by ``n^3``) is added to ``<Bn, E2> / n^3`` for the angle."""
    num = _inner(eps, Bn, E1)    # <Bn, E1> / n^2
    sq = _inner(eps, Bn, E2)     # <Bn, E2> / n^3
    sqb = sq + extra
    trB = Bn[:, 0]               # tr Bn / n
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(E1[:, 0] > 0, num / np.sqrt(sqb * trB), np.nan)
        spec = np.where(E1[:, 0] > 0, E1[:, 0] * math.sqrt(eps) / np.sqrt(E2[:, 0]), np.nan)
    return cos, spec, num / trB, sq / trB, sqb / trB


def _exchangeable_limits(family, n, rho):
    """Signal propagation of :func:`batch_limits` for an equicorrelated batch, every ``n x n``
    matrix a ``(diagonal, off-diagonal)`` pair: ``(1/n, Q, P, P3, Bn, C, a2, g2)`` with ``C``,
    ``a2``, ``g2`` normalised (:func:`_normalised`) and ``Bn`` up to a common factor."""
    eps = 1.0 / n
    L, m = family.depth, family.width
    s = family.stds
    a = family.skip
    beta = family.branch_scale
    betas = family.branch_scales
    phi, psi = family.phi, family.psi
    d = float(family.in_dim)

    Q, kap, P, P3 = _exchangeable_forward(s[0] ** 2 * d, rho, a * a,
                                          beta * beta * m * s[1: L - 1] ** 2, phi.has_masks)
    if psi.has_masks:
        kap_out, P_out = kap[L - 2], P[L - 2]
    else:
        kap_out, P_out = Q[L - 2], np.ones(2)
    if not (np.all(np.isfinite(Q)) and np.all(np.isfinite(kap_out))):
        raise ValueError("the forward covariances over/underflow for depth="
                         f"{L}; use a variance-preserving init")

    # b_L: every entry 1/(n k); its Gram's common factor 1/n^2 (as that of every gradient norm)
    # is dropped: the rates are scale-free in it.
    B_L = np.array([1.0, 1.0]) / family.out_dim
    # Bn_{l-1} = (a^2 + g2 P_{l-1}) o Bn_l: a reversed cumulative product, entry by entry
    factors = np.empty((L - 1, 2))
    factors[0] = P_out * family.output_multiplier ** 2 * s[L - 1] ** 2 * B_L
    factors[1:] = (a * a + (beta * beta * m * s[1: L - 1] ** 2)[:, None] * P[: L - 2])[::-1]
    Bn = np.cumprod(factors, axis=0)[::-1]
    G = np.empty((L, 2))
    G[0] = d * np.array([1.0, rho])
    G[1:L - 1] = m * kap[: L - 2]
    G[L - 1] = m * kap_out
    Bfull = np.concatenate([m * Bn, B_L[None]])

    grad_sq = betas ** 2 * _inner(eps, Bfull, G)
    if not np.all(np.isfinite(grad_sq)):
        raise ValueError(f"the gradient norms over/underflow for depth={L}; use a "
                         "variance-preserving init")
    eta = family.rates(grad_sq)
    C = (eta * betas ** 2)[: L - 1, None] * G[: L - 1]
    C, a2, g2 = _normalised(family, C)
    return eps, Q, P, P3, Bn, C, a2, g2


@numba.njit(cache=True)
def _exchangeable_forward(q0, rho, a2, gains, relu):  # pragma: no cover - compiled
    """Forward covariances ``Q_l`` (diagonal, off-diagonal), ReLU kernels, mask overlaps ``P``
    (diagonal, off-diagonal) and triple overlaps ``P3`` (distinct indices), ``l = 1 .. L-1``,
    for ``Q_1 = q0 [1, rho]`` and ``Q_{l+1} = a2 Q_l + gains[l-1] kappa(Q_l)``."""
    n = gains.size + 1
    Q = np.empty((n, 2))
    kap = np.empty((n, 2))
    P = np.empty((n, 2))
    P3 = np.empty(n)
    Q[0, 0], Q[0, 1] = q0, q0 * rho
    snap = 8 * 2.220446049250313e-16
    for l in range(n):
        q, o = Q[l, 0], Q[l, 1]
        if relu:
            r = o / q
            if abs(r) > 1 - snap:  # as _snap: round-off of +-1 is +-1
                r = 1.0 if r > 0 else -1.0
            t = math.acos(r)
            asr = math.asin(r)
            kap[l, 0] = q / 2
            kap[l, 1] = q * (math.sqrt(1 - r * r) + (math.pi - t) * r) / (2 * math.pi)
            P[l, 0], P[l, 1] = 0.5, 0.25 + asr / (2 * math.pi)
            P3[l] = 0.125 + 3 * asr / (4 * math.pi)
        else:
            kap[l, 0], kap[l, 1] = q, o
            P[l, 0], P[l, 1] = 1.0, 1.0
            P3[l] = 1.0
        if l + 1 < n:
            Q[l + 1, 0] = a2 * q + gains[l] * kap[l, 0]
            Q[l + 1, 1] = a2 * o + gains[l] * kap[l, 1]
    return Q, kap, P, P3


@numba.njit(cache=True)
def _exchangeable_loop(C, P, P3, eps, a2, g2, p, gauss):  # pragma: no cover - compiled
    """``E1`` and ``E2 / n`` as ``(diagonal, off-diagonal)`` rows (the recursion of the module
    docstring with ``n x n`` matrices ``delta I + omega (J - I)``; ``(A B) / n`` and ``T3 / n``
    written out for that form)."""
    L1 = C.shape[0]
    E1 = np.empty((L1, 2))
    E2 = np.empty((L1, 2))
    q = 1.0 - eps
    r = 1.0 - 2.0 * eps
    c0, c1 = C[0, 0], C[0, 1]
    E1[0, 0], E1[0, 1] = c0, c1
    E2[0, 0] = eps * c0 * c0 + q * c1 * c1
    E2[0, 1] = eps * 2.0 * c0 * c1 + r * c1 * c1
    for v in range(1, L1):
        x0, x1 = E1[v - 1, 0], E1[v - 1, 1]          # E1'
        y0, y1 = E2[v - 1, 0], E2[v - 1, 1]          # E2' / n
        pd, po, p3 = P[v - 1, 0], P[v - 1, 1], P3[v - 1]
        ey0, ey1 = pd * x0, po * x1                  # EY = P o E1'
        # (E1' E1') / n and T3(E1', E1') / n
        m0 = eps * x0 * x0 + q * x1 * x1
        m1 = eps * 2.0 * x0 * x1 + r * x1 * x1
        t0 = eps * x0 * x0 * pd + q * x1 * x1 * po
        t1 = eps * 2.0 * x0 * x1 * po + r * x1 * x1 * p3
        ey20 = t0 + p * pd * (y0 - m0)               # EY2 / n
        ey21 = t1 + p * po * (y1 - m1)
        s0, s1 = a2 * x0 + g2 * ey0, a2 * x1 + g2 * ey1
        xx0, xx1 = ey20, ey21
        if gauss:                                    # + (EY EY) / n
            xx0 += eps * ey0 * ey0 + q * ey1 * ey1
            xx1 += eps * 2.0 * ey0 * ey1 + r * ey1 * ey1
        c0, c1 = C[v, 0], C[v, 1]
        E1[v, 0], E1[v, 1] = c0 + s0, c1 + s1
        # (C C + C S + S C) / n, with (A B + B A) / n symmetric in the two
        cc0 = eps * c0 * c0 + q * c1 * c1
        cc1 = eps * 2.0 * c0 * c1 + r * c1 * c1
        cs0 = 2.0 * (eps * c0 * s0 + q * c1 * s1)
        cs1 = 2.0 * eps * (c0 * s1 + c1 * s0) + 2.0 * r * c1 * s1
        xe0 = 2.0 * (eps * x0 * ey0 + q * x1 * ey1)  # (E1' EY + EY E1') / n
        xe1 = 2.0 * eps * (x0 * ey1 + x1 * ey0) + 2.0 * r * x1 * ey1
        E2[v, 0] = (cc0 + cs0 + a2 * a2 * y0 + a2 * g2 * (xe0 + pd * y0 + p * y0)
                    + g2 * g2 * xx0)
        E2[v, 1] = (cc1 + cs1 + a2 * a2 * y1 + a2 * g2 * (xe1 + po * y1 + p * y1)
                    + g2 * g2 * xx1)
    return E1, E2


# --------------------------------------------------------------------------- entry point
# n = inf is evaluated at this n. Not at 1/n = 0: a layer whose gradient norm grows like n, not
# n^2 (W_1 on uncorrelated inputs), still contributes to the kernel's leading order through its
# balanced rate, and the angle of networks whose inputs never correlate (linear, rho = 0) is a
# ratio of two O(1/n) terms. The angle's corrections are O(1/n) = 1e-12 here.
_LARGE = 2.0 ** 40


def _batch_size(inputs):
    if isinstance(inputs, bool) or not isinstance(inputs, numbers.Real):
        raise TypeError(f"inputs must be a positive integer or math.inf, got {inputs!r} "
                        f"({type(inputs).__name__})")
    if isinstance(inputs, numbers.Integral) or (isinstance(inputs, float) and inputs.is_integer()):
        if inputs < 1:
            raise ValueError(f"inputs must be >= 1 (the batch size), got {inputs!r}")
        return int(inputs)
    if math.isinf(inputs) and inputs > 0:
        return math.inf
    raise ValueError(f"inputs must be a positive integer or math.inf, got {inputs!r}")


def _check_gram(gram):
    G = np.asarray(gram, dtype=float) if not isinstance(gram, np.ndarray) else gram.astype(float)
    if G.ndim != 2 or G.shape[0] != G.shape[1] or G.shape[0] < 1:
        raise ValueError(f"gram must be a square (n, n) matrix, got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ValueError("gram must be finite, got non-finite entries")
    if not np.allclose(G, G.T, rtol=1e-12, atol=0.0):
        raise ValueError("gram must be symmetric (an input Gram matrix X X^T)")
    if np.any(np.diag(G) <= 0):
        raise ValueError(f"gram must have a positive diagonal (|x_a|^2 > 0), got {np.diag(G)!r}")
    lo = np.linalg.eigvalsh(G)[0]
    if lo < -1e-10 * np.max(np.diag(G)):
        raise ValueError(f"gram must be positive semi-definite, its smallest eigenvalue is {lo!r}")
    return 0.5 * (G + G.T)


def _batch_bfa(family, mode, inputs, input_correlation, gram):
    """The batch BFA, or None when the request is one input with no Gram (then the caller's
    single-input theory applies, bit for bit)."""
    if gram is not None:
        if inputs is not None or input_correlation != 0.0:
            raise ValueError("give either gram=G or inputs=n with input_correlation=rho, not both")
        G = _check_gram(gram)
        n, rho = G.shape[0], None
    else:
        n = 1 if inputs is None else _batch_size(inputs)
        if inputs is None and input_correlation != 0.0:
            raise ValueError("input_correlation needs a batch: give inputs=n (n >= 2), got "
                             f"input_correlation={input_correlation!r} with inputs=None")
        low = 0.0 if math.isinf(n) else (-1.0 / (n - 1) if n > 1 else -1.0)
        rho = check_real("input_correlation", input_correlation, low=low, high=1.0)
        if n == 1:
            return None
    if _uses_exact_masks(family, mode):
        if not family.psi.is_identity:  # pragma: no cover - no such family today
            raise NotImplementedError("exact masks with a skip and a ReLU readout: b_{L-1} would "
                                      "carry the mask D_{L-1}; not implemented")
        if rho is not None:
            cos, spec, m1, m2, m2b = _exact_masks_exchangeable(
                family, _LARGE if math.isinf(n) else n, rho)
        else:
            cos, spec, m1, m2, m2b = _exact_masks(family, G)
    elif rho is None:
        cos, spec, m1, m2 = _general(family, G)
        m2b = m2
    else:
        cos, spec, m1, m2 = _exchangeable(family, _LARGE if math.isinf(n) else n, rho)
        m2b = m2
    return BatchTheoryBFA(family, mode, np.arange(1, family.depth), cos, spec, m1, m2, m2b,
                          n, rho, None if rho is not None else G)
