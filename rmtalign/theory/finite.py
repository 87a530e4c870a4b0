"""The BFA at finite width, exact in depth: MLPs (ReLU and linear, Gaussian and orthogonal weights)
and linear ResNets (Gaussian and orthogonal weights); the BFK's first two spectral moments at
finite width for the same families. ReLU ResNets, whose masks break the chains, go
through :mod:`rmtalign.theory._reduction` (:func:`finite_width`; first order, and ``M1`` only).

**Reduction to a scalar chain.** With the balanced learning rates of Eq. (8) the kernel weights
are ``c_l = eta_l |phi(f_{l-1})|^2 = 1 / (n B_l)``, ``B_l = |b_l|^2`` (random at finite width,
and correlated with the Jacobians). The feature velocity obeys ``u_v = A_v u_{v-1} + t_v b_v / B_v``
(``u = -n fdot``, ``t_v = 1`` if ``W_v`` is trained), and since ``A_v^T b_v = b_{v-1}``,
``<b_v, u_v> = k_v``, the number of trained layers up to ``v``, *exactly*. So

    cos(theta_v) = k_v / sqrt(Z_v),     Z_v = B_v |u_v|^2 = k_v^2 + Zp_v,

where ``Zp_v = B_v |u_v^perp|^2`` is the part of ``u_v`` orthogonal to ``b_v``. Split ``u_{v-1}``
along ``b_{v-1} = A_v^T b_v`` and write ``A_v = W D`` with ``N`` active columns. For Gaussian
``W`` and a mask law independent of the weights, ``e = b_v / |b_v|`` is independent of
``A_2 .. A_v``; ``Zp_{v-1}`` is independent of ``A_v`` (left rotation invariance of ``W_{v-1}``:
given ``b_{v-1}`` its law is invariant under all rotations, and it is scale free), and the
direction of ``u_{v-1}^perp`` is uniform on the sphere orthogonal to ``b_{v-1}``. Decomposing
``W = e g^T + W'`` (``g = W^T e``) gives one Gaussian vector of variance ``k^2 + beta Zp`` and

    Zp_v = (k_{v-1}^2 + beta_v Zp_{v-1}) Q_v / P_v,                                   (chain)

``Q_v ~ chi2_{m-1}``, ``P_v ~ chi2_{N_v}``, ``beta_v ~ Beta((N_v - 1)/2, (m - N_v)/2)`` (the squared
norm of a uniform unit vector's active part), independent given ``N_v``; ``Zp = 0`` until a
trained layer. ReLU: ``N_v ~ Bin(m, 1/2)`` iid across layers; linear: ``N = m``, ``beta = 1``.

*Orthogonal weights* (Haar, any scale). Now ``|A x|^2 ∝ |D x|^2`` and ``g = W^T e`` is a uniform
unit vector; with ``gamma = |D g|^2 ~ Beta(N/2, (m - N)/2)`` (so ``B_{v-1} ∝ gamma B_v``) the same
steps give

    Zp_v = (k_{v-1}^2 (1 - gamma_v) + beta_v Zp_{v-1}) / gamma_v,                    (orthogonal)

``beta_v`` as above, independent of ``gamma_v`` given ``N_v``. Linear orthogonal layers have
``gamma = beta = 1``: ``Zp = 0`` and ``cos = 1`` at every width.
The law of ``cos(theta_v)`` does not depend on ``L``, on the init scale or on the readout. The
network's own ReLU masks are functions of the weights; that the chains still hold for them (the
sign symmetry of Gaussian and Haar weights, as in Hanin & Nica, arXiv:1812.05994) is checked
against ``sample_bfa(mode="exact")``, not proven here (``docs/finite_width.md``).

**The 1/m coefficient** (``c1``). The chain's first two moments close exactly:
``E Zp' = k^2 r1 + e1 E Zp``, ``E Zp'^2 = k^4 r2 + e12 k^2 E Zp + e2 E Zp^2`` with
``r1 = E[Q] E[1/P]``, ``e1 = E[beta Q / P]`` etc. (averages over ``N``). To first order in
``1/m`` (``r1 = sigma^2 + a1/m``, ``e1 = 1 + b1/m``, ``r2 = sigma^4 + a2/m``,
``e12 = 2 sigma^2 + b12/m``, ``e2 = 1 + b2/m``; Gaussian ReLU ``sigma^2 = 2``,
``(a1, b1, a2, b12, b2) = (8, 2, 60, 48, 12)``; Gaussian linear ``sigma^2 = 1``,
``(1, 1, 6, 12, 6)``; orthogonal ReLU ``sigma^2 = 1``, ``(6, 1, 24, 22, 6)``; orthogonal linear all
0), with ``K = k_{v-1}^2``:

    mu0' = mu0 + sigma^2 K,        mu1' = mu1 + a1 K + b1 mu0,
    V1'  = V1 + (a2 - 2 sigma^2 a1) K^2 + (b12 - 2 a1 - 2 sigma^2 b1) K mu0 + (b2 - 2 b1) mu0^2,

(``E Zp = mu0 + mu1/m``, ``Var Zp = V1/m``) and the delta method, exact at this order:

    c1 = k mu^(-1/2) (-mu1 / (2 mu) + 3 V1 / (8 mu^2)),      mu = k^2 + mu0.

``mu0`` is the width limit (``k / sqrt(mu) = theory.bfa(family).cos``).

**Resummation** (``cos``). At ``L/m`` of order one the moments of ``Zp`` are useless (its
log-variance grows like ``(b2 - 2 b1) L / m``: log-normal tails, as in Hanin & Nica). The chain is
evaluated in log space instead, ``x = log Zp``:

    x_v = log(k^2 F_v + exp(x_{v-1} + log beta_v)) + G_v,

``F = 1``, ``G = log Q - log P`` (Gaussian weights) or ``F = 1 - gamma``, ``G = -log gamma``
(orthogonal), with ``log beta`` and ``log Q - log P`` Gaussian given ``N`` (exact means and
variances, digamma and trigamma), ``gamma`` on a Gauss-Jacobi quadrature of its exact Beta law,
``N`` on a Gauss quadrature of its exact law, and the law of ``x_v`` carried as a
``_NODES``-point Gauss quadrature rebuilt every layer from the pushed-forward points by the
Stieltjes procedure (it keeps the first ``2 _NODES - 1`` moments: no grid, no numerical
diffusion). ``E cos = sum_i p_i k / sqrt(k^2 + exp(x_i))``. Against a Monte Carlo of the chain
itself this is within 0.3% for ``m >= 32`` and ``L/m`` up to 16 (0.45% at ``m = 16``); its first
order in ``1/m`` is ``c1`` (tested). Cost O(L), about a millisecond a layer.

**ResNets** (model (12), ``A_v = a I + beta W_v D_{v-1}``). The reduction to ``Zp_v`` holds as
above (balanced rates make ``c_l = 1/(n B_l)`` here too). For *linear* activations and Gaussian
``W`` (entries ``N(0, s^2)``) the law of ``u_{v-1}`` given ``b_{v-1}`` is invariant under the
rotations fixing ``b_{v-1}`` (the Jacobians are conjugation invariant) and the chain closes again.
With ``e = b_v / |b_v|``, ``g = W^T e`` (so ``b_{v-1} = |b_v| h``, ``h = a e + beta g``),
``W' = (I - e e^T) W`` independent of ``g``, and ``y = |b_v| u_{v-1}^perp`` uniform on the sphere
of radius ``sqrt(Zp_{v-1}) / |h|`` orthogonal to ``h``, the part of ``|b_v| A_v u_{v-1}``
orthogonal to ``e`` is ``a P w + beta W' w`` with ``w = k h / |h|^2 + y``, ``|w|^2 = Z_{v-1}/|h|^2``.
In scalars (``k = k_{v-1}``, ``g1 = e.g ~ N(0, s^2)``, ``Q' = |g - g1 e|^2 ~ s^2 chi2_{m-1}``,
``c`` one coordinate of a uniform unit vector of ``R^(m-1)``, ``zeta ~ N(0, 1)``,
``X ~ chi2_{m-2}``, all independent):

    H = (a + beta g1)^2 + beta^2 Q'                     (= B_{v-1} / B_v)
    rho^2 = 1 - (k (a + beta g1) + beta sqrt(Q' Zp_{v-1}) c)^2 / (H Z_{v-1})
    Zp_v = (Z_{v-1} / H) ((a rho + beta s zeta)^2 + beta^2 s^2 X).              (ResNet)

``a = 0``, ``beta = 1`` is the linear MLP's chain; as ``m -> inf`` it is the deterministic
recursion ``Zp' = Z (a^2 rho^2 + beta^2 sigma^2) / (a^2 + beta^2 sigma^2)``, ``sigma^2 = m s^2``,
``rho^2 = 1 - a^2 k^2 / (H Z)``, which reproduces ``theory.bfa`` to round-off. It is evaluated
like the MLP chain: ``x = log Zp`` on ``_NODES`` Gauss nodes, and per layer ``g1`` (Hermite),
``log Q'`` (Gaussian with its exact mean and variance), ``c = xi / sqrt(m - 1)`` (``xi`` Hermite)
and ``log Y``, ``Y = (a rho + beta s zeta)^2 + beta^2 s^2 X`` log-normal with ``Y``'s exact mean
and variance given ``rho``, each on ``_RES_HERMITE`` nodes. These keep the first two moments of
every scalar to the order that matters at ``1/m``, so the first order of the quadrature is the
chain's: ``c1`` is obtained from the quadrature itself by Richardson extrapolation at
``m = 2^13, 2^14`` (at fixed ``sigma^2``; stable to 1e-8), and checked against the MLP's
hand-derived ``c1`` at ``a = 0`` (Gaussian). The log-normal ``Y`` costs accuracy where ``beta`` is large:
against a Monte Carlo of the chain, 0.15% at ``beta = 0.5`` and L/m = 0.5, 0.4% at ``a = 0``,
L/m = 1.25. With ``beta = c / sqrt(L)`` a layer adds ``O(beta^2 / m)`` to the log-variance of
``Zp``: the whole correction is ``O(c^2 / m)`` at every depth (``c1`` tends to a limit as
``L -> inf``: 0.22 for ``c = 1``, 0.49 for ``c = 2`` at the output), and ``cos_first_order`` is
within 2.5e-4 of ``cos`` at ``m = 16`` and 1e-5 at ``m = 64``, up to L/m = 16.

*Orthogonal* ResNet weights ``W = sigma O`` (``O`` Haar): now ``g = W^T e`` is uniform on the
sphere of radius ``sigma`` (``g1 = e.g``, ``Q' = sigma^2 - g1^2``, ``H`` as above), and ``W'`` maps
``g^perp`` isometrically (times ``sigma``) onto ``e^perp``, so no chi-square is left: with
``w_g`` the part of ``w`` orthogonal to ``g``,

    |P w|^2 = Z/H - (e.w)^2,            e.w = (k (a + beta g1) + beta sqrt(Q' Zp) c) / H,
    |w_g|^2 = Z/H - (g.w / sigma)^2,    g.w / sigma = (k (a g1 + beta sigma^2) - a sqrt(Q' Zp) c) / (sigma H),
    Zp_v = a^2 |P w|^2 + 2 a beta sigma |P w| |w_g| c' + beta^2 sigma^2 |w_g|^2,      (orthogonal ResNet)

``c, c'`` coordinates of independent uniform unit vectors of ``R^(m-1)``, ``g1 / sigma`` one of
``R^m`` (Hermite nodes with the exact variances). ``a = 0``: ``Zp`` stays 0 (``cos = 1``).

**BFK moments**. MLPs: with balanced rates the scale-free kernel is
``K_v = n B_v K_v^net = sum_l t_l J_{v,l} J_{v,l}^T B_v / B_l`` (``e^T K_v e = k_v``, ``e = b_v/|b_v|``),
and ``K_v = t_v I + W C W^T / |D g|^2`` with ``C = D K_{v-1} D``, ``g = W^T e``. With
``W^T W = g g^T + V``, ``V = W^T (I - e e^T) W ~ s^2 Wishart(m - 1)`` independent of ``g`` and of
``K_{v-1}`` (which depends on ``g`` only through ``e' = D g / |D g|``), and ``K_{v-1}`` invariant
in law under the rotations fixing ``e'`` (so its part off ``e'`` is Haar-averaged against the
``N - 1`` active directions orthogonal to ``e'``), the expectations of the five quantities
``1, tr K, tr K^2, (tr K)^2, |K e|^2`` map affinely onto themselves, layer by layer:

    tr K'   = m t + k + tr(C V) / |D g|^2,          (g^T C g = |D g|^2 k exactly)
    |K' e|^2 = t^2 + 2 t k + k^2 + x^T V x / |D g|^2,   x = D K e',

and likewise ``tr K'^2``, ``(tr K')^2`` from ``tr(C Y C Y)``, ``(tr C Y)^2`` (``Y = W^T W``), using
``E tr(C V) = s^2 n tr C``, ``E tr(C V C V) = s^4 (n (n + 1) tr C^2 + n (tr C)^2)``,
``E (tr C V)^2 = s^4 (n^2 (tr C)^2 + 2 n tr C^2)`` (``n = m - 1``), the orthogonal-group second
moments of the part off ``e'`` (two invariants, ``tr`` and ``tr^2``), and
``E |D g|^-2 = 1 / (s^2 (N - 2))``, ``E |D g|^-4 = 1 / (s^4 (N - 2)(N - 4))`` averaged over
``N`` (``_moment_constants``; ReLU conditioned on ``N >= 5``, without which ``E M2`` is
infinite: ``P(N <= 4) < 1e-5`` a layer for ``m >= 32``). *Orthogonal* weights ``W = s O``: ``V``
is replaced by ``W^T W = s^2 I`` (no Wishart fluctuation, no separate ``g g^T`` term) and
``|D g|^2 = s^2 gamma``, ``E[gamma^-1 | N] = (m - 2)/(N - 2)``,
``E[gamma^-2 | N] = (m - 2)(m - 4)/((N - 2)(N - 4))``; linear orthogonal layers conjugate ``K``
exactly. ``|K e|^2 = Z_v`` is the chain's, and its mean recursion is the chain's (a check);
``E (tr K)^2`` gives the exact standard deviation of ``M1``. The recursion is exact at every
width and depth (no resummation is needed for a mean), O(L). To first order
``E M1 = k_v + 2 sigma^2 sum_{j<v} k_j / m`` (``sigma^2`` of ``_FIRST_ORDER``): the means run far
above the width limit (+136% at m = 64, L = 32, v = 31, ReLU), because ``B_v / B_l`` is
log-normal with a variance growing like ``(v - l)/m``; the moments are heavy-tailed, their
medians stay much closer to the limit, and sample means of a few hundred networks reach the
exact means only while ``L/m`` is small (``docs/finite_width.md``).

**Typical moments** (``m1_typical = exp E log M1``, MLPs). The trace map above is exact in law
given ``C``: with ``chi2_N = |D g|^2 / s^2`` (independent of ``V`` and of ``K_{v-1}``) and
``tr C = k + (N - 1)/(m - 1) (tr K - k) (1 + delta)``,

    tr K' / m = t + k/m + (1 + eps) ((m - 1) k/m + (N - 1)(tr K - k)/m (1 + delta)) / chi2_N

(orthogonal: ``tr K'/m = t + tr C / (m gamma)``, no ``eps``). The factor ``1 / chi2_N`` carries
the log-normal spread of ``B_v / B_l`` (``O(1/m)`` a layer) and is kept exact; ``eps`` (the
Wishart trace given ``C``: ``Var eps = 2 tr C^2 / ((m - 1)(tr C)^2)``) and ``delta`` (the active
diagonal entries off ``e'``, a sample of ``N - 1`` of ``m - 1``, Haar spread
``2 (M2/M1^2 - 1)/(m + 1)``) are ``O(M2 / (M1^2 m^2))`` a layer, second order at fixed depth but
``O((L/m)^2)`` summed, so they need the spectral ratio ``R = M2/M1^2`` of a typical network. That
is closed with Thm 3.2's identity ``cos = M1 / sqrt(M2)`` at the finite width: ``R = 1 / cos^2``
with ``cos`` the resummed chain's (the width limit's ``R`` grows like ``v`` where the typical
network's saturates, and puts ``E log M1`` 1.0 too low at L/m = 4). ``log tr K`` is carried on
``_NODES`` Gauss nodes like ``log Zp``, ``1 / chi2_N`` (or ``1 / gamma``) on Gauss-Laguerre (Jacobi)
nodes of its exact law, ``eps + delta`` log-normal with mean 1. To first order in ``1/m`` the
closure does not enter: ``m (E log M1 - log k_v) -> m1_c1 / k_v - m Var M1 / (2 k_v^2)``, the
exact recursion's (tested). ResNets' moments are light-tailed: there ``m1_typical`` is the
log-normal value ``m1 / sqrt(1 + (m1_sd / m1)^2)``.

*Linear ResNets*: ``K_v = t_v I + A K_{v-1} A^T / H``, ``A = a I + beta W``,
``H = |A^T e|^2 = |a e + beta g|^2``. Write ``W = e g^T + R`` (``R = (I - e e^T) W``) and
``e' = h / |h|`` (the direction of ``b_{v-1}``); ``K_{v-1}`` is independent of ``R`` and its law
is invariant under the rotations fixing ``e'``, and ``e``, ``g`` lie in the plane of ``e'`` and
one direction ``f`` uniform off ``e'``. Every term of ``tr M``, ``tr M^2``, ``(tr M)^2``,
``|M e|^2`` is then a bilinear form of ``K`` or ``K^2`` in ``e', f`` or a product of two, whose
means are affine in the same five invariants. Gaussian ``W``: ``R`` is independent of ``g``
(``E R K R^T = s^2 tr K (I - e e^T)``, ``R^T R ~ s^2 Wishart(m - 1)``) and the scalars enter as
``E[u^q / H^p]``, ``u = beta^2 |g_perp|^2 / H``, one smooth integral each (:func:`_h_moments`).
Orthogonal ``W = sigma O``: ``R^T R = sigma^2 (I - g g^T / sigma^2)`` exactly and ``R`` is a Haar
isometry from ``g^perp`` onto ``e^perp`` (second moments ``1/(m - 1)``); ``g.e / sigma`` has
the density ``∝ (1 - x^2)^((m-3)/2)`` and ``H = a^2 + beta^2 sigma^2 + 2 a beta sigma x``
(Gauss-Jacobi). To first order ``E M1 = k_v + C sum_{j<v} k_j / m`` with ``C = m Var(H) / E[H]^2
= 2 b (2 a^2 + b) / H^2`` (Gaussian) or ``4 a^2 b / H^2`` (orthogonal), ``b = beta^2 sigma^2``,
``H = a^2 + b``: the relative variance of ``B_{v-1} / B_v``, as for MLPs.

*ReLU ResNets* have no chain: their masks break the rotation invariance, persist across depth
and depend on the weights they multiply. An exact reduction of the network to iid neurons coupled
through averages keeps that dependence, and its order-parameter expansion gives the network's
``c1`` (:mod:`rmtalign.theory._reduction`: the mean map and its derivatives exact, the neuron
covariances averaged over probe neurons), first order only; with a trace probe (a Hutchinson
field ``w``, ``E_s |b_v|^2 |w_v|^2 / m = M1``) the same expansion gives ``E M1`` to first order
and its spread to leading order. ``M2`` is not covered there (``docs/finite_width.md``).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, special, stats

from .._validate import check_family
from ..results import Result
from . import _reduction
from ._reduction import _trained_counts
from .bfk import bfa

__all__ = ["FiniteWidthBFA", "finite_width"]

_NODES = 12        # quadrature nodes carrying the law of log Zp
_N_NODES = 7       # nodes for the number of active neurons N (ReLU)
_HERMITE = 6       # Gauss-Hermite nodes for log beta and for log Q - log P
_MIN_WIDTH = 16    # below, N <= 2 (where beta and 1/P degenerate) has mass > 1e-3
_RES_HERMITE = 5   # ResNets: Gauss-Hermite nodes for each of the 4 scalars of a layer
_RICHARDSON = (2 ** 13, 2 ** 14)  # ResNets: widths of the Richardson extrapolation giving c1
_PROBE_BATCHES = 8  # ReLU ResNets: c1's standard error is the scatter of this many batches of probes

# First-order (1/m) coefficients of the chain's moment constants (module docstring), derived from
# E f(N) = f(m/2) + (m/8) f''(m/2) + O(m^-2 f) for N ~ Bin(m, 1/2); checked against exact binomial
# sums in tests/theory/test_finite.py.
_FIRST_ORDER = {("relu", "gaussian"): (2.0, 8.0, 2.0, 60.0, 48.0, 12.0),  # sigma^2, a1, b1, a2, b12, b2
                ("linear", "gaussian"): (1.0, 1.0, 1.0, 6.0, 12.0, 6.0),
                ("relu", "orthogonal"): (1.0, 6.0, 1.0, 24.0, 22.0, 6.0),
                ("linear", "orthogonal"): (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)}


@dataclass(frozen=True, repr=False)
class FiniteWidthBFA(Result):
    """Finite-width BFA of a family: ``cos[i]`` is the predicted mean of the sampled
    ``cos(theta_v)`` at ``v = layers[i]`` and the family's own width ``m``; ``cos_limit`` the
    width limit (:func:`rmtalign.theory.bfa`); ``c1`` the exact coefficient of ``1/m`` in
    ``E cos = cos_limit + c1/m + O(1/m^2)`` at fixed depth (``cos_first_order`` is that
    truncation, good only where ``v/m`` is small). NaN where the feature does not move.

    The same for the BFK's first two spectral moments ``M_p = tr(K^p) / m`` of the
    backward-normalised kernel ``K = n |b_v|^2 K_v`` (the normalisation of the balanced rates, in
    which ``b_v^T K b_v / |b_v|^2 = k_v``, the number of trained layers up to ``v``): ``m1, m2``
    are the exact expectations at width ``m``, ``m1_limit = k_v`` and ``m2_limit`` the width
    limits (``m2_limit / m1_limit^2 = TheoryBFA.m2 / TheoryBFA.m1^2``), ``m1_c1, m2_c1`` their
    ``1/m`` coefficients and ``m1_sd`` the exact standard deviation of ``M1`` over networks;
    ``m1_typical = exp E log M1`` is the value of a typical network (MLPs: a chain in log space,
    module docstring; ResNets: the log-normal ``m1 / sqrt(1 + (m1_sd / m1)^2)``).
    ReLU ResNets: ``m1 = m1_limit + m1_c1 / m`` and ``m2 = m2_limit + m2_c1 / m`` to first order
    (``m1_c1``, ``m2_c1`` from the expansion, with their standard errors ``m1_c1_se``,
    ``m2_c1_se``) and ``m1_sd`` to leading order.
    The moments of MLPs are heavy-tailed (those of ResNets with ``beta = c / sqrt(L)`` are not:
    their spread is ``O(c^2 / m)`` at every depth):
    where ``m1_sd`` is large against ``m1`` a sample mean of a few hundred networks falls short of
    the exact mean, and the median is far below it (``docs/finite_width.md``): compare a sample
    with ``m1_typical`` (its mean of ``log M1``) instead. From a sample:
    ``M_p(K) = k_v^p M_p(K_v) (|b_v|^2 / b_v^T K_v b_v)^p`` with ``b_v^T K_v b_v`` the
    ``loss_decay`` and ``|b_v|`` the ``b_norm`` of :func:`rmtalign.sample_bfa`, ``M_p(K_v)`` from
    :meth:`rmtalign.SampledBFK.moments`.

    ``c1_se``, ``m1_c1_se``, ``m2_c1_se``: the standard errors of ``c1``, ``m1_c1``, ``m2_c1``, 0
    where they are exact; for ReLU ResNets they are averages over probe neurons
    (:func:`finite_width`) and ``cos = cos_first_order``. ``finite_width(..., moments=False)``:
    every moment is NaN."""

    family: object
    layers: np.ndarray
    cos: np.ndarray
    cos_limit: np.ndarray
    c1: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    m1_limit: np.ndarray
    m2_limit: np.ndarray
    m1_c1: np.ndarray
    m2_c1: np.ndarray
    m1_sd: np.ndarray
    c1_se: np.ndarray
    m1_c1_se: np.ndarray
    m1_typical: np.ndarray
    m2_c1_se: np.ndarray

    @property
    def cos_first_order(self) -> np.ndarray:
        """``cos_limit + c1 / m``."""
        return self.cos_limit + self.c1 / self.family.width

    def _table(self):
        return {"layer": self.layers, "cos": self.cos, "cos_limit": self.cos_limit, "c1": self.c1,
                "cos_first_order": self.cos_first_order, "m1": self.m1, "m2": self.m2,
                "m1_limit": self.m1_limit, "m2_limit": self.m2_limit, "m1_c1": self.m1_c1,
                "m2_c1": self.m2_c1, "m1_sd": self.m1_sd, "m1_typical": self.m1_typical,
                "c1_se": self.c1_se, "m1_c1_se": self.m1_c1_se, "m2_c1_se": self.m2_c1_se}


def _check_supported(family):
    from ..families import MLP

    why = []
    if isinstance(family, MLP):
        if (family.activation, family.weights) not in _FIRST_ORDER:
            why.append(f"activation {family.activation!r} with {family.weights} weights is not "
                       "covered (relu and linear, Gaussian and orthogonal are)")
    elif family.activation == "relu" and family.depth > _reduction._DIRECT_DEPTH:
        why += _extrapolation_limits(family)
    if family.lr_rule != "balanced" or family.lr_values is not None:
        why.append("only lr_rule='balanced' without explicit lr_values is covered (it makes "
                   "c_l = 1/(n |b_l|^2) and b_v^T K_v b_v deterministic)")
    if why:
        raise NotImplementedError(f"finite_width({family.label}): " + "; ".join(why) +
                                  ". The width limit is theory.bfa(family).")
    if family.width < _MIN_WIDTH:
        raise ValueError(f"finite_width needs width >= {_MIN_WIDTH}, got {family.width} (below, "
                         "layers with N <= 2 active neurons are too frequent for the chain's "
                         "quadrature)")


def _extrapolation_limits(family):
    """Why a ReLU ResNet deeper than ``_reduction._DIRECT_DEPTH`` cannot be extrapolated in depth
    (its copies at depths 32 and 64, with ``beta^2 L`` kept, must exist)."""
    why = []
    if family.skip_scale is not None:
        why.append("a ReLU ResNet deeper than 64 needs the variance-preserving skip (skip_scale=None): "
                   "its 1/m coefficient is extrapolated from the same network at depths 32 and 64, "
                   f"with branch_scale^2 * depth kept; got skip_scale={family.skip_scale!r}")
    if not isinstance(family.trained, str):
        why.append("a ReLU ResNet deeper than 64 needs trained='all' or 'all-but-first' (its 1/m "
                   "coefficient is extrapolated from the same network at depths 32 and 64); got "
                   f"trained={family.trained!r}")
    c = family.branch_scale * math.sqrt(family.depth)
    if c > math.sqrt(_reduction._COARSE_DEPTHS[0]):
        why.append(f"a ReLU ResNet deeper than 64 needs branch_scale * sqrt(depth) <= "
                   f"{math.sqrt(_reduction._COARSE_DEPTHS[0]):.3g} (the same network at depth 32 has "
                   f"branch_scale <= 1); got {c:.4g}")
    return why


def _gauss_nodes(x, w, n):
    """An ``n``-point Gauss quadrature of the discrete measure ``(x, w)`` (Stieltjes procedure on
    the standardised points, then Golub-Welsch). Measures with at most ``n`` points, or whose
    orthogonal polynomials vanish early, keep fewer nodes."""
    w = w / w.sum()
    if x.size <= n:
        return x, w
    mu = w @ x
    sd = math.sqrt(max(w @ (x - mu) ** 2, 0.0))
    if sd == 0.0 or sd < 1e-14 * max(1.0, abs(mu)):
        return np.array([mu]), np.array([1.0])
    t = (x - mu) / sd
    a, b = np.zeros(n), np.zeros(n)
    p_prev, p, norm_prev = np.zeros_like(t), np.ones_like(t), 1.0
    size = n
    for j in range(n):
        norm = w @ (p * p)
        if j > 0 and norm < 1e-13 * norm_prev:  # the measure has (numerically) j points
            size = j
            break
        a[j] = w @ (t * p * p) / norm
        if j > 0:
            b[j] = norm / norm_prev
        p_prev, p = p, (t - a[j]) * p - (b[j] * p_prev if j > 0 else 0.0)
        norm_prev = norm
    off = np.sqrt(b[1:size])
    ev, vec = np.linalg.eigh(np.diag(a[:size]) + np.diag(off, 1) + np.diag(off, -1))
    return mu + sd * ev, vec[0] ** 2


def _active_law(m, relu):
    """Nodes and weights for ``N`` (ReLU: a Gauss quadrature of Bin(m, 1/2) restricted to
    ``N >= 3``; linear: ``N = m``)."""
    if not relu:
        return np.array([float(m)]), np.array([1.0])
    sd = math.sqrt(m) / 2
    lo, hi = max(3, int(m / 2 - 12 * sd)), min(m, int(m / 2 + 12 * sd) + 1)
    N = np.arange(lo, hi + 1, dtype=float)
    return _gauss_nodes(N, stats.binom.pmf(N, m, 0.5), _N_NODES)


def _beta_log_law(N, m):
    """Mean and variance of ``log beta``, ``beta ~ Beta((N - 1)/2, (m - N)/2)`` (digamma, trigamma)."""
    a, ab = (N - 1) / 2, (m - 1) / 2
    return (special.digamma(a) - special.digamma(ab),
            special.polygamma(1, a) - special.polygamma(1, ab))


def _layer_nodes(m, activation, weights):
    """One layer's randomness on quadrature nodes, per node of ``N`` (rows): ``wN``; ``logF``, ``G``
    and their weights ``pG`` (rows sum to 1) for ``k^2 F`` and the additive ``G`` of the log chain;
    ``U`` (``log beta``) with weights ``pU``. ``None`` for orthogonal linear layers (``Zp = 0``)."""
    relu = activation == "relu"
    if weights == "orthogonal" and not relu:
        return None
    N, wN = _active_law(m, relu)
    h, hw = np.polynomial.hermite_e.hermegauss(_HERMITE)
    hw = hw / hw.sum()
    eu, vu = _beta_log_law(N, m) if relu else (np.zeros_like(N), np.zeros_like(N))
    U = eu[:, None] + np.sqrt(vu)[:, None] * h[None, :]
    pU = np.broadcast_to(hw, U.shape)
    if weights == "gaussian":
        ew = special.digamma((m - 1) / 2) - special.digamma(N / 2)
        vw = special.polygamma(1, (m - 1) / 2) + special.polygamma(1, N / 2)
        G = ew[:, None] + np.sqrt(vw)[:, None] * h[None, :]
        return wN, np.zeros_like(G), G, np.broadcast_to(hw, G.shape), U, pU
    # gamma ~ Beta(N/2, (m-N)/2): Gauss-Jacobi nodes x for (1-x)^((m-N)/2-1) (1+x)^(N/2-1)
    gam, pG = np.empty((N.size, _HERMITE)), np.empty((N.size, _HERMITE))
    for i, n in enumerate(N):
        x, w = special.roots_jacobi(_HERMITE, (m - n) / 2 - 1, n / 2 - 1)
        gam[i], pG[i] = (1 + x) / 2, w / w.sum()
    return wN, np.log1p(-gam), -np.log(gam), pG, U, pU


def _resummed(k, m, activation, weights):
    """``E cos(theta_v)`` from the chain in log space (module docstring); ``k`` as from
    :func:`_trained_counts`."""
    cos = np.full(k.size, np.nan)
    nodes = _layer_nodes(m, activation, weights)
    if nodes is None:                                        # Zp = 0 exactly
        cos[k > 0] = 1.0
        return cos
    wN, logF, G, pG, U, pU = nodes
    pFirst = (wN[:, None] * pG).ravel()
    # joint weights of (N node, G node, U node); the pushed points are (x node, N, G, U)
    pStep = wN[:, None, None] * pG[:, :, None] * pU[:, None, :]
    x = p = None                                             # None: Zp = 0 exactly
    kprev = 0.0
    for i, kv in enumerate(k):
        if i > 0:                                            # layer v = i + 1 >= 2
            logK = 2 * math.log(kprev) if kprev > 0 else -math.inf
            if x is None:
                if kprev > 0:                                # Zp = k^2 F e^G
                    x, p = _gauss_nodes((logK + logF + G).ravel(), pFirst, _NODES)
            else:
                t = np.logaddexp(logK + logF[None, :, :, None],
                                 x[:, None, None, None] + U[None, :, None, :])
                y = t + G[None, :, :, None]
                q = p[:, None, None, None] * pStep[None]
                x, p = _gauss_nodes(y.ravel(), q.ravel(), _NODES)
        if kv > 0:
            cos[i] = 1.0 if x is None else p @ np.exp(-0.5 * np.logaddexp(0.0, x - 2 * math.log(kv)))
        kprev = kv
    return cos


def _inverse_norm_nodes(N, m, weights):
    """Per node of ``N`` (rows): nodes and weights of ``log(1 / |D g|^2)`` in units of ``s^2``
    (Gaussian: ``1 / chi2_N``, generalised Gauss-Laguerre, exact law) or of ``log(1 / gamma)``,
    ``gamma ~ Beta(N/2, (m - N)/2)`` (orthogonal, Gauss-Jacobi; ``gamma = 1`` at ``N = m``)."""
    x, p = np.empty((N.size, _HERMITE)), np.empty((N.size, _HERMITE))
    for i, n in enumerate(N):
        if weights == "gaussian":                                      # chi2_N = 2 y
            j = np.arange(_HERMITE)
            # Golub-Welsch: scipy's roots_genlaguerre weights overflow beyond N ~ 340
            off = np.sqrt(j[1:] * (j[1:] + n / 2 - 1))
            y, vec = np.linalg.eigh(np.diag(2 * j + n / 2) + np.diag(off, 1) + np.diag(off, -1))
            x[i], p[i] = -np.log(2 * y), vec[0] ** 2
        elif n < m:
            y, w = special.roots_jacobi(_HERMITE, (m - n) / 2 - 1, n / 2 - 1)
            x[i], p[i] = -np.log((1 + y) / 2), w / w.sum()
        else:
            x[i], p[i] = 0.0, 1.0 / _HERMITE
    return x, p


def _typical_m1(k, m, activation, weights, cos):
    """``E log M1`` of an MLP's BFK (module docstring, *Typical moments*): the trace recursion
    carried in log space on quadrature nodes, like :func:`_resummed`; ``cos`` its ``cos``, which
    closes the second-order noise (``M2 / M1^2 = 1 / cos^2``, Thm 3.2). ``-inf`` where ``k = 0``."""
    relu, orth = activation == "relu", weights == "orthogonal"
    out = np.full(k.size, -np.inf)
    N, wN = _active_law(m, relu)
    lr, pr = _inverse_norm_nodes(N, m, weights)
    h, hw = np.polynomial.hermite_e.hermegauss(_RES_HERMITE)
    hw = hw / hw.sum()
    f = (N - 1) / (m - 1)
    pStep = wN[:, None, None] * pr[:, :, None] * hw[None, None, :]
    x = p = None
    kprev = 0.0
    for i, kv in enumerate(k):
        t = kv - kprev
        if x is None:
            if kv > 0:                                   # the first trained layer: M1 = t exactly
                x, p = np.array([math.log(t)]), np.array([1.0])
        else:
            R = 1.0 / cos[i - 1] ** 2
            # relative variances: the trace of the new Wishart part given C (Gaussian weights) and
            # the N - 1 active diagonal entries off e' drawn from the rest (ReLU; Haar spread)
            var = np.zeros_like(N)
            if not orth:
                var = var + 2 * (1 + f * (R - 1)) / (N * (m - 1))
            if relu:
                var = var + (1 - f) / (N - 1) * 2 * max(R - 1, 0.0) / (m + 1)
            s2 = np.log1p(var)
            noise = np.sqrt(s2)[:, None] * h[None, :] - s2[:, None] / 2          # (N, hermite)
            T = np.exp(x)[:, None]
            if orth:      # tr M / m = (k + (N - 1)/(m - 1) (m T - k)) / (m gamma)
                add, base = t, (kprev + (N - 1) / (m - 1) * (m * T - kprev)) / m
            else:         # tr M / m = k/m + ((m - 1) k/m + (N - 1)(T - k/m)) / chi2_N
                add, base = t + kprev / m, (m - 1) * kprev / m + (N - 1) * (T - kprev / m)
            y = np.log(add + np.exp(lr[None, :, :, None] + noise[None, :, None, :])
                       * base[:, :, None, None])
            x, p = _gauss_nodes(y.ravel(), (p[:, None, None, None] * pStep[None]).ravel(), _NODES)
        if x is not None:
            out[i] = p @ x
        kprev = kv
    return out


def _first_order(k, activation, weights):
    """Width limit ``k / sqrt(mu)`` and the ``1/m`` coefficient ``c1`` (module docstring)."""
    s2, a1, b1, a2, b12, b2 = _FIRST_ORDER[activation, weights]
    mu0 = mu1 = V1 = 0.0
    lim, c1 = np.full(k.size, np.nan), np.full(k.size, np.nan)
    kprev = 0.0
    for i, kv in enumerate(k):
        if i > 0:
            K = kprev * kprev
            mu0, mu1, V1 = (mu0 + s2 * K, mu1 + a1 * K + b1 * mu0,
                            V1 + (a2 - 2 * s2 * a1) * K * K + (b12 - 2 * a1 - 2 * s2 * b1) * K * mu0
                            + (b2 - 2 * b1) * mu0 * mu0)
        if kv > 0:
            mu = kv * kv + mu0
            lim[i] = kv / math.sqrt(mu)
            c1[i] = lim[i] * (-mu1 / (2 * mu) + 3 * V1 / (8 * mu * mu))
        kprev = kv
    return lim, c1


def _resnet_law(family):
    """``(a, beta, sig2)`` of a linear ResNet: skip, branch scale and ``sig2[i] = m s^2`` of the
    weights ``W_{i+1}`` (``i = 0 .. L-2``; ``sig2[0]`` unused: the chain starts at ``v = 2``)."""
    s = np.asarray(family.stds[: family.depth - 1], dtype=float)
    return float(family.skip), float(family.branch_scale), family.width * s * s


def _resnet_limit(k, a, beta, sig2, orthogonal=False):
    """The linear ResNet chain as ``m -> inf`` (deterministic): with ``H = a^2 + beta^2 sigma^2``
    and ``Z = k^2 + Zp``, ``Zp' = Z (a^2 rho^2 + beta^2 sigma^2) / H``, ``rho^2 = 1 - a^2 k^2 / (H Z)``
    (Gaussian), ``Zp' = Z / H (a^2 + beta^2 sigma^2) - k^2 (a^4 + beta^4 sigma^4) / H^2``
    (orthogonal)."""
    cos = np.full(k.size, np.nan)
    zp, kprev = 0.0, 0.0
    for i, kv in enumerate(k):
        if i > 0 and kprev > 0:
            K, b2 = kprev * kprev, beta * beta * sig2[i]
            H = a * a + b2
            if orthogonal:
                Z = K + zp
                zp = a * a * (Z / H - K * a * a / (H * H)) + b2 * (Z / H - K * b2 / (H * H))
            else:
                zp = (K + zp) * (a * a * (1.0 - a * a * K / (H * (K + zp))) + b2) / H
        if kv > 0:
            cos[i] = kv / math.sqrt(kv * kv + zp)
        kprev = kv
    return cos


def _hermite_grid(dims):
    """Tensor Gauss-Hermite nodes (probabilists'), ``_RES_HERMITE`` per dimension: ``dims`` node
    arrays and the weights, all flat."""
    h, hw = np.polynomial.hermite_e.hermegauss(_RES_HERMITE)
    hw = hw / hw.sum()
    nodes = [a.ravel() for a in np.meshgrid(*([h] * dims), indexing="ij")]
    w = hw
    for _ in range(dims - 1):
        w = np.multiply.outer(w, hw)
    return nodes, w.ravel()


def _resnet_resummed(k, m, a, beta, sig2, orthogonal=False):
    """``E cos(theta_v)`` of a linear ResNet from its chain in log space (module docstring,
    ResNets): the law of ``x = log Zp`` on ``_NODES`` Gauss nodes, each layer's scalars on
    ``_RES_HERMITE`` Gauss-Hermite nodes each (Gaussian: ``g1``, ``log Q'``, ``c``, ``log Y``;
    orthogonal: ``g1``, ``c``, ``c'``)."""
    cos = np.full(k.size, np.nan)
    if orthogonal:
        (g, c, c2), pw = _hermite_grid(3)
        c2 = c2 / math.sqrt(m - 1)
    else:
        (g, q, c, y), pw = _hermite_grid(4)
        lq_mean = special.digamma((m - 1) / 2) + math.log(2.0)
        lq_sd = math.sqrt(special.polygamma(1, (m - 1) / 2))
    c = c / math.sqrt(m - 1)                  # E c^2 = 1/(m-1): a uniform direction's coordinate
    x = p = None                              # None: Zp = 0 exactly
    kprev = 0.0
    for i, kv in enumerate(k):
        if i > 0 and kprev > 0:
            K = kprev * kprev
            zp = np.zeros(1) if x is None else np.exp(x)
            Z = K + zp[:, None]
            if orthogonal:                    # W = sigma O: g = W^T e uniform on the sphere of radius sigma
                sig = math.sqrt(sig2[i])
                g1 = sig * g / math.sqrt(m)
                Qp = sig2[i] - g1 * g1
                e1 = a + beta * g1
                H = e1 * e1 + beta * beta * Qp
                r = np.sqrt(Qp * zp[:, None]) * c[None, :]
                ew = (kprev * e1[None, :] + beta * r) / H
                gw = (kprev * (a * g1 + beta * sig2[i])[None, :] - a * r) / (sig * H)
                pw2 = np.maximum(Z / H - ew * ew, 0.0)          # |P w|^2
                qw2 = np.maximum(Z / H - gw * gw, 0.0)          # |w - (w.g/|g|) g/|g||^2
                new = (a * a * pw2 + 2 * a * beta * sig * np.sqrt(pw2 * qw2) * c2[None, :]
                       + beta * beta * sig2[i] * qw2)
                pts = np.log(np.maximum(new, np.finfo(float).tiny))
            else:
                s2 = sig2[i] / m
                s = math.sqrt(s2)
                e1 = a + beta * s * g                               # e . h
                Qp = s2 * np.exp(lq_mean + lq_sd * q)               # |g_perp|^2 ~ s^2 chi2_{m-1}
                H = e1 * e1 + beta * beta * Qp                      # |h|^2 = B_{v-1} / B_v
                T = kprev * e1[None, :] + beta * np.sqrt(Qp * zp[:, None]) * c[None, :]
                rho2 = np.clip(1.0 - T * T / (H[None, :] * Z), 0.0, 1.0)
                mY = a * a * rho2 + beta * beta * s2 * (m - 1)
                vY = 4 * a * a * beta * beta * s2 * rho2 + 2 * beta ** 4 * s2 * s2 * (m - 1)
                sL2 = np.log1p(vY / (mY * mY))                      # log-normal, exact mean and variance
                logY = np.log(mY) - sL2 / 2 + np.sqrt(sL2) * y[None, :]
                pts = np.log(Z) + logY - np.log(H)[None, :]
            q0 = np.ones(1) if p is None else p
            x, p = _gauss_nodes(pts.ravel(), (q0[:, None] * pw[None, :]).ravel(), _NODES)
        if kv > 0:
            cos[i] = 1.0 if x is None else p @ np.exp(-0.5 * np.logaddexp(0.0, x - 2 * math.log(kv)))
        kprev = kv
    return cos


def _resnet(family):
    """``(cos, c1)`` of a linear ResNet: the resummed chain at the family's width, and the ``1/m``
    coefficient at fixed ``sigma^2 = m s^2`` by Richardson extrapolation of the same chain at
    ``m = 2^13, 2^14`` (its first order is exact: see the module docstring)."""
    k = _trained_counts(family)
    a, beta, sig2 = _resnet_law(family)
    orth = family.weights == "orthogonal"
    lim = _resnet_limit(k, a, beta, sig2, orth)
    d = {m: m * (_resnet_resummed(k, m, a, beta, sig2, orth) - lim) for m in _RICHARDSON}
    m1, m2 = _RICHARDSON
    return _resnet_resummed(k, family.width, a, beta, sig2, orth), 2 * d[m2] - d[m1]


def _moment_constants(m, relu, orthogonal):
    """The layer's random factors of the moment map averaged over the number ``N`` of active
    neurons (``r = N - 1``): ``(E w1, E w1 r)`` and ``(E w2, E w2 r, E w2 r^2)`` with
    ``w1 = E[s^2 (m - 1) / |D g|^2 | N] = (m - 1)/(N - 2)``, ``w2 = E[s^4 / |D g|^4 | N] =
    1/((N - 2)(N - 4))`` (Gaussian) or ``w1 = E[1/gamma | N] = (m - 2)/(N - 2)``,
    ``w2 = E[1/gamma^2 | N] = (m - 2)(m - 4)/((N - 2)(N - 4))`` (orthogonal); exact binomial sums
    conditioned on ``N >= 5`` (ReLU) or ``N = m`` (linear)."""
    if relu:
        N = np.arange(5, m + 1, dtype=float)
        p = stats.binom.pmf(N, m, 0.5)
        p = p / p.sum()
    else:
        N, p = np.array([float(m)]), np.array([1.0])
    r, a, b = N - 1, 1 / (N - 2), 1 / ((N - 2) * (N - 4))
    w1, w2 = ((m - 2) * a, (m - 2) * (m - 4) * b) if orthogonal else ((m - 1) * a, b)
    if not relu and orthogonal:                       # N = m: gamma = 1
        w1, w2 = np.ones(1), np.ones(1)
    return (p @ w1, p @ (w1 * r)), (p @ w2, p @ (w2 * r), p @ (w2 * r * r))


def _moment_recursion(t, m, layer):
    """``E M1, E M2, E M1^2`` of the backward-normalised kernel at width ``m`` (module docstring,
    *BFK moments*): the exact affine recursion of the means of ``tr K``, ``tr K^2``, ``(tr K)^2``
    and ``|K e|^2`` (``e = b_v / |b_v|``); ``t[i]`` is 1 if ``W_{i+1}`` is trained. ``K_v = t_v I + M``;
    ``layer(i, k, T1, T2, S, Z)`` gives the means of ``tr M, |M e|^2, tr M^2, (tr M)^2`` from those
    of ``K_{v-1}`` (``k = e'^T K_{v-1} e'``, exact). A mean beyond the floating-point range (an
    MLP's ``E M2`` at ``L/m`` of tens) is ``inf``: every invariant is the mean of a nonnegative
    quantity, so the ``nan`` of ``inf - inf`` can only come from one."""
    M1, M2, M1sq = np.zeros(t.size), np.zeros(t.size), np.zeros(t.size)
    T1, T2, S, Z = m * t[0], m * t[0] ** 2, (m * t[0]) ** 2, t[0] ** 2
    k = t[0]
    M1[0], M2[0], M1sq[0] = T1 / m, T2 / m, S / (m * m)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, t.size):
            tv = t[i]
            trM, Me2, trM2, trMsq = layer(i, k, T1, T2, S, Z)
            T1, T2 = m * tv + trM, m * tv * tv + 2 * tv * trM + trM2
            S, Z = (m * tv) ** 2 + 2 * m * tv * trM + trMsq, tv * tv + 2 * tv * k + Me2
            T1, T2, S, Z = (np.inf if np.isnan(x) else x for x in (T1, T2, S, Z))
            k += tv
            M1[i], M2[i], M1sq[i] = T1 / m, T2 / m, S / (m * m)
    return M1, M2, M1sq


def _mlp_moment_layer(m, relu, orthogonal):
    """The MLP layer of :func:`_moment_recursion`: ``M = W C W^T / |D g|^2``, ``C = D K D``."""
    (w1, w1r), (w2, w2r, w2rr) = _moment_constants(m, relu, orthogonal)
    n = d = m - 1

    def layer(i, k, T1, T2, S, Q2):
        K = k * k
        TA, SA = T2 + K - 2 * Q2, S - 2 * k * T1 + K        # tr^2, (tr)^2 of K's part off e
        beta = (d * TA - SA) / (d * (d - 1) * (d + 2))        # Haar second moments of that part
        alpha = (SA - 2 * beta * d) / (d * d)
        # E[w tr C], E[w |D K e'|^2], E[w (tr C)^2], E[w tr C^2] (C = D K D, w = w1 or w2)
        c1 = w1 * k + w1r / d * (T1 - k)
        c4 = w1 * K + w1r / d * (Q2 - K)
        c2 = w2 * K + 2 * k * w2r / d * (T1 - k) + alpha * w2rr + 2 * beta * w2r
        c3 = w2 * K + 2 * w2r / d * (Q2 - K) + alpha * w2r + beta * (w2rr + w2r)
        if orthogonal:        # W^T W = s^2 I
            return c1, c4, c3, c2
        # W^T W = g g^T + Wishart(m - 1)
        return (k + c1, K + c4, K + 2 * c4 + n * (n + 1) * c3 + n * c2,
                K + 2 * k * c1 + n * n * c2 + 2 * n * c3)
    return layer


@functools.lru_cache(maxsize=256)
def _h_moments(m, a, beta, s2):
    """``E[u^q / H^p]`` for ``(q, p) = (0, 1), (1, 1), (0, 2), (1, 2), (2, 2)`` (Gaussian linear
    ResNet layer): ``H = (a + beta g1)^2 + Y``, ``u = Y / H``, ``g1 ~ N(0, s2)``,
    ``Y = beta^2 s2 chi2_{m-1}``. With ``1/H^r = int lam^(r-1) e^(-lam H) dlam / Gamma(r)`` and the
    Laplace transforms of the noncentral ``chi2_1`` and the Gamma law,
    ``E[Y^q / H^r] = theta^(q-r) Gamma(k+q) / (Gamma(k) Gamma(r)) int_0^1 v^(r-1) (1-v)^(k+q-r-1/2)
    e^(-lam0 v) dv`` (``r = p + q``, ``theta = 2 beta^2 s2``, ``k = (m-1)/2``, ``lam0 = a^2/theta``):
    one smooth integral each (``scipy.special.hyp1f1`` is inaccurate at large ``m``)."""
    if beta == 0.0:
        return 1 / a ** 2, 0.0, 1 / a ** 4, 0.0, 0.0
    th, k = 2 * beta * beta * s2, (m - 1) / 2
    lam = a * a / th
    out = []
    for q, p in ((0, 1), (1, 1), (0, 2), (1, 2), (2, 2)):
        r, c = p + q, k - p - 0.5

        def f(v):
            return v ** (r - 1) * math.exp(c * math.log1p(-v) - lam * v) if v < 1 else 0.0
        peak = r / (lam + c + r)
        val = integrate.quad(f, 0, 1, epsabs=0, epsrel=1e-13, limit=400,
                             points=[peak, min(0.999, 40 * peak)])[0]
        out.append(val * math.exp((q - r) * math.log(th) + special.gammaln(k + q)
                                  - special.gammaln(k) - special.gammaln(r)))
    return tuple(out)


def _resnet_moment_layer(m, a, beta, sig2, orthogonal):
    """The linear ResNet layer of :func:`_moment_recursion`: ``M = A K A^T / H``,
    ``A = a I + beta W``, ``H = |A^T e|^2`` (module docstring, *BFK moments*)."""
    n = d = m - 1
    a2 = a * a
    if orthogonal:
        al = (m - 3) / 2                  # g.e / sigma has density ∝ (1 - x^2)^al; (1 + x)^2 is
        x, wx = special.roots_jacobi(64, al, al - 2)  # moved into the weight: H^-2 stays bounded
        wx = wx * (1 + x) ** 2            # where a = beta sigma (H ∝ 1 + x)
        wx, rx = wx / wx.sum(), np.sqrt(1 - x * x)

    def layer(i, k, T1, T2, S, Z):
        K2 = k * k
        if not orthogonal:
            J1, Js1, J2, Js2, Jss2 = _h_moments(m, a, beta, sig2[i] / m)
            b = beta * beta * sig2[i] / m
            A1, A2, A3 = (T1 - k) / d - k, (Z - K2) / d - K2, (T2 - Z) / d - Z
            A4 = (S - k * T1) / d - k * T1
            C5 = (2 * (T2 - 2 * Z + K2) + (S - 2 * k * T1 + K2)) / (d * (d + 2))
            B1 = -2 * K2 + 4 * (Z - K2) / d + 2 * k * (T1 - k) / d
            B2 = K2 - 4 * (Z - K2) / d - 2 * k * (T1 - k) / d + C5
            trM = k + (a2 * (T1 - k) + b * n * T1) * J1 - a2 * A1 * Js1
            Me2 = K2 + (a2 * (Z - K2) + b * n * Z) * J1 - a2 * A2 * Js1
            trMsq = (K2 + (2 * a2 * k * (T1 - k) + 2 * b * n * k * T1) * J1 - 2 * a2 * k * A1 * Js1
                     + (a2 * a2 * (S - 2 * k * T1 + K2) + 2 * b * n * a2 * (S - k * T1)
                        + 4 * b * a2 * (T2 - Z) + b * b * (n * n * S + 2 * n * T2)) * J2
                     + (a2 * a2 * (B1 - 2 * A4) - 2 * b * n * a2 * A4 - 4 * b * a2 * A3) * Js2
                     + a2 * a2 * B2 * Jss2)
            trM2 = (K2 + (2 * a2 * (Z - K2) + 2 * b * n * Z) * J1 - 2 * a2 * A2 * Js1
                    + (a2 * a2 * (T2 - 2 * Z + K2) + 2 * b * a2 * (1 + n) * (T2 - Z)
                       + 2 * b * a2 * (S - k * T1) + b * b * ((n * n + n) * T2 + n * S)) * J2
                    + (a2 * a2 * (B1 - 2 * A3) - 2 * b * a2 * (1 + n) * A3 - 2 * b * a2 * A4) * Js2
                    + a2 * a2 * B2 * Jss2)
            return trM, Me2, trM2, trMsq
        bs2 = beta * beta * sig2[i]
        bs = math.sqrt(bs2)
        H = a2 + bs2 + 2 * a * bs * x
        rH = np.sqrt(H)
        # e, g/sigma and e' = h/|h| as (e', f) coordinates, f the unit vector of span(e, g) off e'
        E, G, P = ((a + bs * x) / rH, bs * rx / rH), ((a * x + bs) / rH, -a * rx / rH), (1.0, 0.0)
        t1, t2 = (T1 - k) / d, (T2 - Z) / d
        t4 = (2 * (T2 - 2 * Z + K2) + (S - 2 * k * T1 + K2)) / (d * (d + 2))

        def q1(u, v):           # E x^T K y, x = u[0] e' + u[1] f (f uniform off e')
            return u[0] * v[0] * k + u[1] * v[1] * t1

        def q2(u, v):           # E x^T K^2 y
            return u[0] * v[0] * Z + u[1] * v[1] * t2

        def qq(u, v, uu, vv):   # E (x^T K y)(x'^T K y')
            return (u[0] * v[0] * uu[0] * vv[0] * K2
                    + (u[0] * v[0] * uu[1] * vv[1] + u[1] * v[1] * uu[0] * vv[0]) * k * t1
                    + (u[0] * v[1] + u[1] * v[0]) * (uu[0] * vv[1] + uu[1] * vv[0]) * (Z - K2) / d
                    + u[1] * v[1] * uu[1] * vv[1] * t4)

        def qT(u, v):           # E (x^T K y) tr K
            return u[0] * v[0] * k * T1 + u[1] * v[1] * (S - k * T1) / d
        eKe, gKg = q1(E, E), q1(G, G)
        Ke2, Kg2 = q2(E, E), q2(G, G)
        PgPe = T2 - Kg2 - Ke2 + qq(G, E, G, E)                          # tr(K P_g K P_e)
        PePg = S - qT(E, E) - qT(G, G) + qq(E, E, G, G)                 # tr(K P_e) tr(K P_g)
        Pg2 = S - 2 * qT(G, G) + qq(G, G, G, G)                         # tr(K P_g)^2
        trM = (a2 * (T1 - eKe) + H * k + bs2 * (T1 - gKg)) / H
        Me2 = (a2 * (Z - qq(E, P, E, P)) + H * K2 + bs2 * (Z - qq(G, P, G, P))) / H
        X0sq = (a2 * a2 * (S - 2 * qT(E, E) + qq(E, E, E, E)) + 2 * a2 * H * k * (T1 - eKe)
                + H * H * K2)
        X0Pg = a2 * PePg + H * k * (T1 - gKg)
        trMsq = (X0sq + 4 * bs2 * a2 * PgPe / n + bs2 * bs2 * Pg2 + 2 * bs2 * X0Pg) / (H * H)
        KNKN = (a2 * a2 * (T2 - 2 * Ke2 + qq(E, E, E, E)) + 2 * a2 * H * (Z - qq(E, P, E, P))
                + H * H * K2)
        KNKPg = a2 * PgPe + H * (Z - qq(G, P, G, P))
        trM2 = (KNKN + bs2 * (2 * a2 * PgPe / n + 2 * KNKPg + 2 * a2 * PePg / n)
                + bs2 * bs2 * (T2 - 2 * Kg2 + qq(G, G, G, G))) / (H * H)
        return tuple(wx @ np.broadcast_to(v, x.shape) for v in (trM, Me2, trM2, trMsq))
    return layer


def _moment_limits(family, lim):
    """``(m1_limit, m2_limit)``: ``k_v`` and ``k_v^2 m2 / m1^2`` of the width limit ``lim``."""
    k = _trained_counts(family)
    with np.errstate(invalid="ignore", divide="ignore"):
        return k, np.where(lim.m1 > 0, k * k * lim.m2 / (lim.m1 * lim.m1), 0.0)


def _moments(family, lim):
    """``(m1, m2, m1_limit, m2_limit, m1_c1, m2_c1, m1_sd)`` given the width limit ``lim``
    (``bfa(family)``) of a family :func:`_check_supported` accepts."""
    size = family.depth - 1
    from ..families import MLP

    orth = family.weights == "orthogonal"
    if isinstance(family, MLP):
        def layer(m):
            return _mlp_moment_layer(m, family.activation == "relu", orth)
    else:                           # linear ResNet
        a, beta, sig2 = _resnet_law(family)

        def layer(m):               # Richardson at fixed sigma^2 = m s^2, like the chain's c1
            return _resnet_moment_layer(m, a, beta, sig2, orth)
    t = np.asarray(family.trained_mask[:size], dtype=float)
    k, m2_lim = _moment_limits(family, lim)
    d = {m: [m * (e - l) for e, l in zip(_moment_recursion(t, m, layer(m)), (k, m2_lim))]
         for m in _RICHARDSON}
    m1, m2 = _RICHARDSON
    c1 = [2 * hi - lo for lo, hi in zip(d[m1], d[m2])]
    M1, M2, M1sq = _moment_recursion(t, family.width, layer(family.width))
    with np.errstate(invalid="ignore"):
        var = np.where(np.isinf(M1sq), np.inf, M1sq - M1 * M1)
    return M1, M2, k, m2_lim, *c1, np.sqrt(np.maximum(var, 0.0))


def finite_width(family, *, moments=True, probes=200_000, seed=0,
                 progress=None) -> FiniteWidthBFA:
    """The BFA at the family's own width ``m``, exact in depth, and its ``1/m`` coefficient.

    ``cos``: predicted mean of ``sample_bfa(family).cos`` at every ``v = 1 .. L-1`` (the
    resummed finite-width chain of :mod:`rmtalign.theory.finite`); ``cos_limit``:
    ``theory.bfa(family).cos``; ``c1``: the exact coefficient of ``1/m`` at fixed depth (for
    ResNets at fixed ``m s^2``). Also the exact means of the BFK's spectral moments at
    width ``m`` (``m1``, ``m2``, with their limits, ``1/m`` coefficients and ``m1_sd``) and the
    typical ``m1_typical = exp E log M1`` (see :class:`FiniteWidthBFA`); ``moments=False``
    leaves them out (NaN), which saves most of the cost for ReLU ResNets.
    Covered: MLPs with Gaussian or orthogonal weights, ReLU or linear, ResNets with linear
    activation (Gaussian or orthogonal weights) and ReLU ResNets (Gaussian or orthogonal); balanced
    learning rates, any init scale and any set of trained layers, ``width >= 16``. Other families
    (other learning-rate rules) raise ``NotImplementedError``. Accuracy against the exact
    sampler and where the chains were checked: ``docs/finite_width.md``; for orthogonal MLPs at
    ``L/m = 4`` the sampled output scatters more than its standard errors (pooled over 3672 draws
    the prediction is 1% high, z = +1.1). Cost O(L): about a millisecond a layer (MLPs), a few
    milliseconds a layer (ResNets: three evaluations of the chain, two of them for ``c1``).

    **ReLU ResNets** (the network's own masks depend on the weights they multiply, so no scalar
    chain holds): ``c1`` comes from the order-parameter expansion of an exact reduction of the
    network to iid neurons (:mod:`rmtalign.theory._reduction`), with ``probes`` probe neurons
    (``seed`` draws them; the result carries ``c1_se``), and ``cos = cos_limit + c1 / m`` (with
    ``beta = c / sqrt(L)`` the correction is ``O(c^2 / m)`` at every depth, and first order is
    within 1e-5 of the resummed chain for linear ResNets at ``m = 64``). Up to ``L = 64`` at the
    family's depth, deeper by Richardson extrapolation in ``1/L`` from the same network at
    ``L = 32`` and ``64`` (``beta^2 L`` kept; needs the variance-preserving skip, ``trained``
    ``'all'`` or ``'all-but-first'`` and ``beta sqrt(L) <= sqrt(32)``). ``m1`` is first order
    too: the same expansion for a trace probe, a Hutchinson field ``w_v = A_v w_{v-1} + t_v s_v /
    |b_v|`` (``E_s |b_v|^2 |w_v|^2 / m = M1`` for every ``v`` at once), ``m1_sd`` to leading
    order (the probe's spread less its own share, ``2 M2 / m``); ``m2`` from an M2 probe,
    ``tr K^2 = E_r |K r|^2`` with ``r`` started at layer ``v`` down a second backward field: one
    expansion a layer, run at four layers evenly spaced from the first trained one to the output
    and interpolated relative to the width limit (every layer if the trained layers have gaps),
    deeper than 64 extrapolated like ``c1``. Cost independent of ``L`` beyond 64: at the default
    ``probes``, on one core, for ``c1`` alone 24 s at ``L = 32``, 90 s at ``L = 64`` and about 2
    minutes deeper, 1.6 times that for orthogonal weights; ``moments`` doubles that and adds the
    four M2 expansions (measured on a loaded machine: about 2 minutes at ``L = 32``, 8 at
    ``L = 64`` and 10 deeper, up to 1.6 times that for orthogonal weights). The expansions are
    kept in memory, so a sweep over depth or width pays once.
    ``progress``: a bar on stderr (None: when on a terminal)."""
    from .._validate import check_int
    from ..families import ResNet

    check_family(family)
    check_int("probes", probes, 100 * _PROBE_BATCHES)
    check_int("seed", seed, 0)
    if not isinstance(moments, (bool, np.bool_)):
        raise TypeError(f"moments must be True or False, got {moments!r}")
    _check_supported(family)
    layers = np.arange(1, family.depth)
    lim = bfa(family)
    zero, nan = np.zeros(family.depth - 1), np.full(family.depth - 1, np.nan)
    if isinstance(family, ResNet) and family.activation == "relu":
        return _relu_resnet(family, lim, moments, probes, seed, progress)
    mom = dict(zip(("m1", "m2", "m1_limit", "m2_limit", "m1_c1", "m2_c1", "m1_sd"),
                   _moments(family, lim) if moments else [nan] * 7),
               m1_c1_se=zero if moments else nan, m2_c1_se=zero if moments else nan)
    if isinstance(family, ResNet):
        cos, c1 = _resnet(family)
        return FiniteWidthBFA(family, layers, cos, lim.cos, c1, **mom, c1_se=zero,
                              m1_typical=_lognormal_typical(mom["m1"], mom["m1_sd"]))
    k = _trained_counts(family)
    _, c1 = _first_order(k, family.activation, family.weights)
    cos = _resummed(k, family.width, family.activation, family.weights)
    typical = (np.exp(_typical_m1(k, family.width, family.activation, family.weights, cos))
               if moments else nan)
    return FiniteWidthBFA(family, layers, cos, lim.cos, c1, **mom, c1_se=zero, m1_typical=typical)


def _lognormal_typical(mean, sd):
    """``exp E log M1`` of a log-normal ``M1`` with this mean and standard deviation (ResNets,
    whose moments are light-tailed); 0 where the mean is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mean > 0, mean / np.sqrt(1 + (sd / mean) ** 2), np.where(mean == 0, 0.0, np.nan))


def _relu_resnet(family, lim, moments, probes, seed, progress):
    from .. import _runtime

    total = (_reduction.family_c1_batches(family, _PROBE_BATCHES) * (2 if moments else 1)
             + (_reduction.family_m2_c1_batches(family, _PROBE_BATCHES) if moments else 0))
    bar = _runtime.progress(total, progress, "finite_width: c1", work=1e9)
    nan = np.full(family.depth - 1, np.nan)
    try:
        c1, se = _reduction.family_c1(family, probes, _PROBE_BATCHES, seed, bar)
        m1_c1, m1_se, var = (_reduction.family_c1(family, probes, _PROBE_BATCHES, seed, bar, trace=True)
                             if moments else (nan, nan, nan))
        m2_rel, m2_rse = (_reduction.family_m2_c1(family, probes, _PROBE_BATCHES, seed, bar)
                          if moments else (nan, nan))
    finally:
        if bar is not None:
            bar.close()
    m = family.width
    m1_lim, m2_lim = _moment_limits(family, lim) if moments else (nan, nan)
    m2_c1, m2_se = m2_rel * m2_lim, m2_rse * m2_lim       # relative to the width limit (0 where it is)
    # the probe's own variance is 2 M2 / m: what is left is the networks' spread (leading order)
    m1_sd = np.sqrt(np.maximum(var - 2 * m2_lim, 0.0) / m)
    if moments:          # K = t I at the first trained layer: M1 = 1 in every network, not within MC
        first = _reduction._first_trained(family) - 1
        m1_c1[first] = m1_se[first] = m1_sd[first] = 0.0
    m1 = m1_lim + m1_c1 / m
    return FiniteWidthBFA(family, np.arange(1, family.depth), lim.cos + c1 / m, lim.cos, c1,
                          m1=m1, m2=m2_lim + m2_c1 / m, m1_limit=m1_lim, m2_limit=m2_lim, m1_c1=m1_c1,
                          m2_c1=m2_c1, m1_sd=m1_sd, c1_se=se, m1_c1_se=m1_se, m2_c1_se=m2_se,
                          m1_typical=_lognormal_typical(m1, m1_sd))
