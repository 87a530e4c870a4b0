"""The exact reduction of a ResNet with its own ReLU masks (Gaussian or Haar weights), and its exact
mean map.

**The reduction** (``docs/finite_width.md``, *ReLU ResNets*). Condition each ``W_l`` on its
forward image ``y_l = W_l h_{l-1}`` (``h = phi(f)``): then ``W_l^T b_l`` and ``W_l x`` are the
rank-one forward terms plus fresh Gaussians, and the network is, exactly in law, ``m`` iid
neurons coupled only through averages ``<.>`` over neurons. Neuron ``i`` carries its
pre-activation path ``f`` (``f_0 ~ N(0, 1)``, ``f_l = a f_{l-1} + beta y_l``,
``y_l = sigma_l sqrt(<h_{l-1}^2>) z_l``), ``xi_l``, ``eta_l`` and ``b_{L-1}``, all standard normal,
and with ``D = 1{f > 0}``, for hidden layers ``l = 0 .. n-1`` (``n = L - 1``):

    b_{l-1} = a b_l + beta D_{l-1} (h_{l-1} <y_l b_l>/Q + sigma_l sqrt(<b_l^2>) (xi_l - h_{l-1} <h xi>/Q))
    u_l     = a u_{l-1} + beta (xh y_l + sigma_l (b_l (<xi x> - <h xi> xh)/sqrt(B)
                                  + sqrt(<x^2> - <x h> xh) (eta_l - b_l <b eta>/B))) + t_l b_l / B

(``Q = <h_{l-1}^2>``, ``B = <b_l^2>``, ``x = D_{l-1} u_{l-1}``, ``xh = <x h_{l-1}>/Q``). The ten
order parameters of a layer, ``Omega[k, l]`` in the order of :data:`ORDER`, are the averages that
appear; ``cos(theta_l) = <b u>/sqrt(<b^2> <u^2>)``.

*Haar weights* ``W = sigma O``: ``O h^ = y^`` with ``y^`` uniform, ``O = y^ h^T + O_1`` (``O_1`` a Haar
isometry of ``h^``'s complement onto ``y^``'s) and, given ``g = O_1^T P_y b``, ``O_1 = e' g^^T + O_2``
(``e' = P_y b / |P_y b|``). The fresh vectors are then unit vectors, normalised Gaussians, and
the norms exact:

    y_l     = sigma_l sqrt(Q / <zeta_l^2>) zeta_l
    W^T b   = h <y b>/Q + sigma sqrt(|P_y b|^2 / |P_h xi|^2) P_h xi
    W x     = xh y + sigma (e' <g^ x> + |P_{h,g} x| P_{y,b} eta / |P_{y,b} eta|)

(squared norms as averages over neurons), with four more order parameters a layer
(:data:`ORDER_HAAR`: ``<zeta^2>``, ``<xi^2>``, ``<eta^2>``, ``<y eta>``).

**The mean map.** ``_particle_map`` is one neuron's ``phi(z; Omega)`` (the integrands of the
order parameters at given ``Omega``; a plain numpy oracle); the same equations with each network's
own averages are the network at width ``m`` (:func:`simulate`). ``mean_map(Omega) = E phi(z; Omega)``
is exact: given the path, ``b`` and ``u`` are linear in ``b_{L-1}``, ``D_{j-1} xi_j``, ``eta_k``
(independent, centred) and in the path's ``h_j``, ``y_k`` with deterministic coefficients, so every
order parameter is a quadratic form in those coefficients with the Gaussian path's closed-form
moments: ``E[D D]`` (arcsine law), ``E[h h]`` (the arc-cosine kernel), ``E[h y]`` (Stein), and, for
``<x^2>`` alone, ``E[D_p h_q h_r]`` (Stein reduces it to orthant probabilities and conditional
bivariate moments). ``mean_map`` is smooth in ``Omega`` (the masks are integrated out), so its
derivatives need no jump terms. Cost O(n^3).

**The 1/m coefficient** (:func:`c1_expansion`): the order-parameter expansion of the reduction,
``c1 = grad G . A (SR + Phi''[C] / 2) + tr(G'' C) / 2``, with ``Omega*``, the Jacobian and the second
derivatives of the mean map exact, the neuron covariance exact in its forward block and, with the
self-response, otherwise averaged over probe neurons. Checked against the linear chains' exact
``c1`` (Gaussian and Haar, ``tests/theory/test_reduction.py``) and, for ReLU, against the reduction
simulated at widths up to 1024 (:func:`simulate`, itself checked against the sampler). Cost
O(n^4 + probes n^2).

**A family's c1** (:func:`family_c1`, behind ``theory.finite_width``): the expansion at the
family's depth up to 64; deeper, its Richardson extrapolation in ``1/L`` from the same network at
depths 32 and 64 (:func:`_depth_extrapolated`).

**The trace probe** (``Reduction.trace``): ``u``'s source ``t_l b_l / B`` replaced by
``t_l s_l / sqrt(B)``, ``s`` fresh standard normals independent of everything (atoms like
``eta``). Then ``w_v = A_v w_{v-1} + t_v s_v / |b_v|`` (up to the neuron normalisation) and
``E_s <b_v^2> <w_v^2> = sum_l t_l tr(J_{v,l} J_{v,l}^T) B_v / (m B_l)``, the BFK's ``M1`` in the
normalisation of ``theory.finite_width``, at every ``v`` at once: the same equations and the same
expansion, for ``G = <b^2> <w^2>`` (:func:`_m1_expansion`).

**The M2 probe** (``Reduction.probe``): ``tr K^2 = E_r |K r|^2`` with ``r`` a
standard normal vector at layer ``v``. Its backward field ``rho_l = J_{v,l}^T r`` meets ``W_l``
after ``y_l`` and ``W_l^T b_l`` are known, so ``W_l^T rho = h <y rho>/Q + sigma (<b rho>/sqrt(B)
P_h xi + sqrt(<rho^2> - <b rho>^2/B) P_h xi')`` with ``xi'`` fresh; ``u`` takes the source
``t_l rho_l / B`` (then ``K r = <b_v^2> u_v``), and ``W x`` gains a term along
``e2 = P_b rho / |P_b rho|``, its fresh part now off ``b`` and ``rho``. Six more order parameters a
layer (:data:`ORDER_PROBE`). *Haar weights*: given ``O_1 = e' g^^T + O_2``, ``O^T rho = h^ <y^ rho>
+ g^ <e' rho> + |P_{y,b} rho| g2^`` with ``g2^ = P_{h,g} xi' / |P_{h,g} xi'|``, ``xi'`` a fresh
normalised Gaussian, and ``O_2 = e2' g2^^T + O_3``; two more order parameters, ``<xi'^2>`` and
``<xi xi'>`` (:func:`_rho_parts`). ``rho`` is linear in ``r``, ``D xi``, ``D xi'`` and ``h`` with
deterministic coefficients, so the mean map stays exact. ``G = <b_v^2>^2 <u_v^2>``
(:func:`_m2_expansion`), one expansion a layer ``v`` (:func:`family_m2_c1`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace

import numpy as np

from .batch import _correlations, _relu_kernel, _relu_pairs

ORDER = ("Q", "Y", "B", "HX", "XH", "XI", "X2", "BE", "BU", "U2")
K = len(ORDER)
iQ, iY, iB, iHX, iXH, iXI, iX2, iBE, iBU, iU2 = range(K)
# Haar weights: the fresh vectors are normalised, so their squared norms (and <y eta>) are order
# parameters too (``docs/finite_width.md``, *ReLU ResNets*)
ORDER_HAAR = ORDER + ("ZZ", "XX", "EE", "YE")
iZZ, iXX, iEE, iYE = range(K, len(ORDER_HAAR))
# The M2 probe (``Reduction.probe``): a second backward field ``rho`` started at a layer ``v`` and the
# forward field it sources (in ``u``'s slots), with its own order parameters: ``<y rho>``,
# ``<b rho>``, ``<rho^2>``, ``<h xi'>``, ``<xi' x>``, ``<rho eta>``; Haar weights also ``<xi'^2>``,
# ``<xi xi'>`` (Gaussian weights leave these and the Haar slots unused)
ORDER_PROBE = ORDER_HAAR + ("YR", "BR", "RR", "HP", "XP", "RE", "PP", "XIP")
iYR, iBR, iRR, iHP, iXP, iRE, iPP, iXIP = range(len(ORDER_HAAR), len(ORDER_PROBE))
_SQ2PI = math.sqrt(2.0 * math.pi)
_CACHE_BYTES = 2e9          # the shifted path tables kept across batches (O(n^4) bytes) up to this


@dataclass(frozen=True)
class Reduction:
    """The scalars of a ResNet family that the reduction needs (hidden layers ``0 .. n-1``)."""
    a: float
    beta: float
    sigma: np.ndarray        # sigma_l = sqrt(m) * std_l
    trained: np.ndarray      # t_l in {0, 1}
    relu: bool
    orthogonal: bool = False
    trace: bool = False      # u's source t_l b_l / B replaced by t_l s_l / sqrt(B): the trace probe w
    probe: int | None = None  # the M2 probe at hidden layer ``probe`` (0-based: v = probe + 1)

    def __post_init__(self):
        if self.probe is not None and (self.trace or not 0 <= self.probe < self.sigma.size):
            raise ValueError(f"probe must be a hidden layer 0 .. {self.sigma.size - 1} of a reduction "
                             f"without the trace probe, got {self.probe!r}")

    @property
    def n(self):
        return self.sigma.size

    @property
    def K(self):
        """Order parameters a layer."""
        if self.probe is not None:
            return len(ORDER_PROBE)
        return len(ORDER_HAAR) if self.orthogonal else K

    @classmethod
    def of(cls, family):
        n = family.depth - 1
        return cls(float(family.skip), float(family.branch_scale),
                   np.asarray(family.stds[:n], float) * math.sqrt(family.width),
                   np.asarray(family.trained_mask[:n], float), family.activation == "relu",
                   family.weights == "orthogonal")

    def variances(self, Q):
        """``V_l = Var f_l`` from the forward order parameters ``Q_l = <h_l^2>``."""
        V = np.empty(self.n)
        V[0] = 1.0
        for i in range(1, self.n):
            V[i] = self.a ** 2 * V[i - 1] + self.beta ** 2 * self.sigma[i] ** 2 * Q[i - 1]
        return V


def _particle_map(red, f, xi, eta, b0, Om, D=None, z=None, s=None):
    """``phi`` of ``N`` neurons, (N, K, n), given their paths ``f`` (N, n), ``xi``, ``eta`` (N, n),
    ``b_{L-1} = b0`` (N,) and the order parameters ``Om``, (K, n) or one per neuron (N, K, n);
    masks ``D`` if given, else ``f > 0``; Haar weights: the paths' standard normals ``z``; the
    trace probe (``red.trace``): its sources ``s`` (N, n); the M2 probe: ``r`` in ``s[..., 0]``, the
    ``xi'`` in ``s[..., 1:]``. Entries that no layer uses (``HX``,
    ``Y``, ... at layer 0) are 0."""
    return _neurons(red, f, xi, eta, b0, lambda k, i, _: Om[..., k, i], D, z, s)


def _neurons(red, f, xi, eta, b0, order, D=None, z=None, s=None):
    """The reduction's neurons, ``phi`` (..., K, n), with each order parameter taken from
    ``order(k, i, integrand)`` when a layer needs it (the reduction is causal: the integrand is
    known by then): ``Omega[k, i]`` for the mean map's particles, the average over a network's
    neurons for :func:`simulate`. Arrays are (..., n) over layers, ``b0`` (...). Haar weights
    (``red.orthogonal``) need the paths' standard normals ``z`` (their squared norms are order
    parameters); the trace probe (``red.trace``) its standard normal sources ``s``, the M2 probe
    (``red.probe``) its ``r`` and ``xi'`` in ``s``."""
    a, beta, n, sig, haar = red.a, red.beta, red.n, red.sigma, red.orthogonal
    h = np.maximum(f, 0) if red.relu else f
    if D is None:
        D = (f > 0).astype(float) if red.relu else np.ones_like(f)
    y = np.zeros_like(f)
    y[..., 1:] = (f[..., 1:] - a * f[..., :-1]) / beta
    out = np.zeros(f.shape[:-1] + (red.K, n))
    out[..., iQ, :] = h * h
    if haar:
        out[..., iZZ, 1:], out[..., iXX, 1:] = z[..., 1:] ** 2, xi[..., 1:] ** 2
        out[..., iEE, 1:], out[..., iYE, 1:] = eta[..., 1:] ** 2, y[..., 1:] * eta[..., 1:]
    b = np.empty_like(f)
    b[..., n - 1] = b0
    for i in range(n - 1, 0, -1):
        out[..., iY, i], out[..., iB, i] = y[..., i] * b[..., i], b[..., i] ** 2
        out[..., iHX, i] = h[..., i - 1] * xi[..., i]
        Qm, Y, B, HX = (order(k, j, out[..., k, j]) for k, j in ((iQ, i - 1), (iY, i), (iB, i), (iHX, i)))
        if haar:      # |P_y b| times a unit vector of h's complement
            XX = order(iXX, i, out[..., iXX, i])
            scale = np.sqrt((B - Y * Y / (sig[i] ** 2 * Qm)) / (XX - HX * HX / Qm))
        else:
            scale = np.sqrt(B)
        Wtb = h[..., i - 1] * Y / Qm + sig[i] * scale * (xi[..., i] - h[..., i - 1] * HX / Qm)
        b[..., i - 1] = a * b[..., i] + beta * D[..., i - 1] * Wtb
    out[..., iY, 0], out[..., iB, 0] = y[..., 0] * b[..., 0], b[..., 0] ** 2
    probe = red.probe is not None
    if probe:
        rho = _probe_field(red, h, D, y, b, xi, s, out, order)
    u = np.zeros_like(b0)
    for i in range(n if not probe else red.probe + 1):
        B = order(iB, i, out[..., iB, i])
        if i > 0:
            x = D[..., i - 1] * u
            out[..., iXH, i], out[..., iXI, i] = x * h[..., i - 1], xi[..., i] * x
            out[..., iX2, i], out[..., iBE, i] = x * x, b[..., i] * eta[..., i]
            XH, X2, XI, BE, HX = (order(k, i, out[..., k, i]) for k in (iXH, iX2, iXI, iBE, iHX))
            Qm = order(iQ, i - 1, out[..., iQ, i - 1])
            xh = XH / Qm
            if probe:
                out[..., iXP, i], out[..., iRE, i] = s[..., i] * x, rho[..., i] * eta[..., i]
            if haar:  # W x = y <x h>/Q + sigma (e' <g x> + |P_{h,g} x| (unit vector off y and b))
                Y, XX, EE, YE = (order(k, i, out[..., k, i]) for k in (iY, iXX, iEE, iYE))
                s2q = sig[i] ** 2 * Qm
                pb = np.sqrt(B - Y * Y / s2q)
                e = (b[..., i] - y[..., i] * Y / s2q) / pb
                G = (XI - HX * xh) / np.sqrt(XX - HX * HX / Qm)
                E = (BE - Y * YE / s2q) / pb
                off, fresh = EE - YE * YE / s2q - E * E, eta[..., i] - y[..., i] * YE / s2q - e * E
            else:
                s2q, Y, YE, G, E = np.inf, 0.0, 0.0, (XI - HX * xh), BE / np.sqrt(B)
                e = b[..., i] / np.sqrt(B)
                off, fresh = 1.0, eta[..., i] - e * E
            res = X2 - XH * xh - (G * G if haar else 0.0)
            Wx = xh * y[..., i] + sig[i] * e * G
            if probe:   # and along rho's direction off e' (and y), e2; the fresh part off e2 too
                ks = (iYR, iBR, iRR, iHP, iXP, iRE, iPP, iXIP)
                YR, BR, RR, HP, XP, RE, PP, XIP = (order(k, i, out[..., k, i]) for k in ks)
                XX = order(iXX, i, out[..., iXX, i])
                cg, c2, gxp, n2, _ = _rho_parts(haar, s2q, Qm, B, Y, HX, XX, YR, BR, RR, HP, PP, XIP)
                e2 = (rho[..., i] - y[..., i] * YR / s2q - e * cg) / c2
                G2 = (XP - HP * xh - gxp * G) / n2
                E2 = (RE - YR * YE / s2q - cg * E) / c2
                Wx = Wx + sig[i] * e2 * G2
                fresh = fresh - e2 * E2
                off = off - E2 * E2 if haar else off
                res = res - (G2 * G2 if haar else 0.0)
            Wx = Wx + sig[i] * np.sqrt(np.maximum(res, 0.0) / off) * fresh
            u = a * u + beta * Wx
        if red.trained[i]:
            u = u + (s[..., i] / np.sqrt(B) if red.trace else (rho if probe else b)[..., i] / B)
        out[..., iBU, i], out[..., iU2, i] = b[..., i] * u, u * u
    return out


def _rho_parts(haar, s2q, Qm, B, Y, HX, XX, YR, BR, RR, HP, PP, XIP):
    """The M2 probe's ``rho`` at a layer in the directions ``W`` has been seen along: ``cg`` its
    component along ``e'`` (``b``'s unit direction; Haar: off ``y``, ``P_y b / |P_y b|``) and ``c2``
    its length off ``y`` (Haar) and ``b``; ``xi'`` (Haar: a normalised Gaussian like ``xi``)
    along ``g = P_h xi / |P_h xi|``, ``gxp``, and its length off ``h`` and ``g``, ``n2``, with
    ``ng = |P_h xi|`` (Gaussian: 0, 1, 1). Then ``W^T rho = h <y rho>/Q + sigma (cx P_h xi + cxp
    P_h xi')`` with ``cx = (cg - c2 gxp / n2) / ng``, ``cxp = c2 / n2``. Works on arrays."""
    if not haar:
        cg = BR / np.sqrt(B)
        one = np.ones_like(cg)
        return cg, np.sqrt(np.maximum(RR - cg * cg, 0.0)), 0.0 * one, one, one
    ng = np.sqrt(XX - HX * HX / Qm)
    cg = (BR - Y * YR / s2q) / np.sqrt(B - Y * Y / s2q)
    gxp = (XIP - HX * HP / Qm) / ng
    return (cg, np.sqrt(np.maximum(RR - YR * YR / s2q - cg * cg, 0.0)), gxp,
            np.sqrt(PP - HP * HP / Qm - gxp * gxp), ng)


def _probe_field(red, h, D, y, b, xi, s, out, order):
    """The M2 probe's backward field ``rho_l = J_{v,l}^T r`` (``v`` = ``red.probe``, ``r = s[..., 0]``),
    layers ``0 .. v``, its order parameters written to ``out``. ``W_l^T rho`` given ``W_l h = y``
    and ``W_l^T b`` (:func:`_rho_parts`), with ``xi' = s[..., l]`` fresh: ``W``'s part off ``h``
    seen along ``b`` is ``xi``; along the rest of ``rho`` it is independent of it (Gaussian), or a
    unit vector off ``h`` and ``g`` (Haar)."""
    a, beta, sig, haar = red.a, red.beta, red.sigma, red.orthogonal
    rho = np.zeros_like(b)
    rho[..., red.probe] = s[..., 0]
    for i in range(red.probe, 0, -1):
        out[..., iYR, i], out[..., iBR, i] = y[..., i] * rho[..., i], b[..., i] * rho[..., i]
        out[..., iRR, i], out[..., iHP, i] = rho[..., i] ** 2, h[..., i - 1] * s[..., i]
        if haar:
            out[..., iPP, i], out[..., iXIP, i] = s[..., i] ** 2, xi[..., i] * s[..., i]
        ks = (iB, iY, iHX, iXX, iYR, iBR, iRR, iHP, iPP, iXIP)
        Qm = order(iQ, i - 1, out[..., iQ, i - 1])
        B, Y, HX, XX, YR, BR, RR, HP, PP, XIP = (order(k, i, out[..., k, i]) for k in ks)
        cg, c2, gxp, n2, ng = _rho_parts(haar, sig[i] ** 2 * Qm, Qm, B, Y, HX, XX, YR, BR, RR, HP, PP,
                                         XIP)
        hm = h[..., i - 1]
        Wtr = hm * YR / Qm + sig[i] * ((cg - c2 * gxp / n2) / ng * (xi[..., i] - hm * HX / Qm)
                                       + c2 / n2 * (s[..., i] - hm * HP / Qm))
        rho[..., i - 1] = a * rho[..., i] + beta * D[..., i - 1] * Wtr
    out[..., iYR, 0], out[..., iBR, 0] = y[..., 0] * rho[..., 0], b[..., 0] * rho[..., 0]
    out[..., iRR, 0] = rho[..., 0] ** 2
    return rho


def _paths(red, Q, z):
    """Pre-activation paths from standard normals ``z`` (..., n) at forward order parameters ``Q``
    (Haar weights: ``Q_{i-1} / <z_i^2>``, :func:`_forward_q`); ``Q=None``: each network's own, ``z``
    (..., m, n) holding networks of ``m`` neurons."""
    f = np.empty_like(z)
    f[..., 0] = z[..., 0]
    for i in range(1, red.n):
        if Q is None:
            h = np.maximum(f[..., i - 1], 0) if red.relu else f[..., i - 1]
            q = np.mean(h * h, axis=-1, keepdims=True)
            if red.orthogonal:      # y = sigma |h| z / |z|: exactly sigma |h| in norm
                q = q / np.mean(z[..., i] ** 2, axis=-1, keepdims=True)
        else:
            q = Q[i - 1]
        f[..., i] = red.a * f[..., i - 1] + red.beta * red.sigma[i] * np.sqrt(q) * z[..., i]
    return f


def simulate(red, z, xi, eta, b0, s=None):
    """``cos(theta_l)`` of networks of width ``m``, exactly in law (the reduction with each
    network's own averages; O(m n) a network, no matrix drawn), (networks, n): standard normals
    ``z``, ``xi``, ``eta`` (networks, m, n) and ``b0`` (networks, m), ``z[..., 0]`` the input layer's
    pre-activations. Layers where every unit is off have nothing to condition on: the terms along
    ``h`` vanish there. The trace probe (``red.trace``, sources ``s`` like ``xi``): ``<b^2> <w^2>``,
    an unbiased estimate of the BFK's ``M1``; the M2 probe (``red.probe``, ``s`` likewise):
    ``<b_v^2>^2 <u_v^2>`` (networks,), of ``M2`` at ``v``."""
    def order(k, i, integrand):
        avg = np.mean(integrand, axis=-1, keepdims=True)
        return np.where(avg > 0, avg, np.inf) if k == iQ else avg
    out = _neurons(red, _paths(red, None, z), xi, eta, b0, order, z=z, s=s).mean(axis=-3)
    if red.trace:
        return out[:, iB] * out[:, iU2]
    if red.probe is not None:
        return out[:, iB, red.probe] ** 2 * out[:, iU2, red.probe]
    with np.errstate(invalid="ignore", divide="ignore"):
        return out[:, iBU] / np.sqrt(out[:, iB] * out[:, iU2])


# ----------------------------------------------------------------- Gaussian moments (closed forms)
def _asin(r):
    return np.arcsin(np.clip(r, -1.0, 1.0))


def _e_dh(s11, s12, s22):
    """``E[1{X1 > 0} relu(X2)]`` for a centred pair (Stein)."""
    return (s12 / np.sqrt(s11) + np.sqrt(s22)) / (2.0 * _SQ2PI)


def _path_moments(red, Q):
    """The Gaussian path's covariance ``S[i, j] = Cov(f_i, f_j)``, ``Cy[k, j] = Cov(y_k, f_j)`` and
    ``Var y_k`` at forward order parameters ``Q``."""
    n, a = red.n, red.a
    V = red.variances(Q)
    i = np.arange(n)
    lo = np.minimum.outer(i, i)
    S = a ** np.abs(i[:, None] - i[None, :]) * V[lo]
    vy = np.zeros(n)
    vy[1:] = red.sigma[1:] ** 2 * Q[:-1]
    gap = i[None, :] - i[:, None]                       # j - k
    Cy = np.where(gap >= 0, red.beta * a ** np.maximum(gap, 0) * vy[:, None], 0.0)
    return S, Cy, vy


def _pair_tables(S):
    """``E[D_i D_j]``, ``E[h_i h_j]`` (the batch theory's arcsine law and arc-cosine kernel) and
    ``E[delta(f_i) h_j]`` (ReLU)."""
    s = np.sqrt(np.diag(S))
    DD, hh = _relu_pairs(S), _relu_kernel(S)
    cond = np.maximum(np.diag(S)[None, :] - S * S / np.diag(S)[:, None], 0.0)    # Var(f_j | f_i = 0)
    dh = np.sqrt(cond) / (_SQ2PI * _SQ2PI * s[:, None])
    return DD, hh, dh


def _triple_slice(S, p, DD, hh, dh):
    """``T[q, r] = E[D_p h_q h_r]`` for all ``q, r`` (Stein on ``h_q``, then orthant probabilities and
    conditional pairs)."""
    n = S.shape[0]
    d = np.diag(S)
    sp = math.sqrt(d[p])
    # conditional covariance given f_p = 0
    Sc = S - np.outer(S[:, p], S[p, :]) / d[p]
    # E[delta_p D_q h_r] = phi_p(0) E[D_q h_r | f_p = 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        cq = np.diag(Sc)
        e1 = _e_dh(cq[:, None], Sc, cq[None, :]) / (_SQ2PI * sp)
        # E[D_p delta_q h_r] = phi_q(0) E[D_p h_r | f_q = 0]: conditional on f_q, for each q
        Spp_q = d[p] - S[p, :] ** 2 / d                                  # Var(f_p | f_q), (q,)
        Spr_q = S[p, None, :] - S[:, p, None] * S / d[:, None]            # Cov(f_p, f_r | f_q), (q, r)
        Srr_q = d[None, :] - S * S / d[:, None]                           # Var(f_r | f_q), (q, r)
        e2 = _e_dh(Spp_q[:, None], Spr_q, Srr_q) / (_SQ2PI * np.sqrt(d)[:, None])
        s = np.sqrt(d)
        r = S / np.outer(s, s)
        e3 = 0.125 + (_asin(r[p, :, None]) + _asin(r[p, None, :]) + _asin(r)) / (4 * np.pi)
    T = S[:, p, None] * e1 + d[:, None] * e2 + S * e3
    # degenerate index patterns
    qq = np.arange(n)
    T[qq, qq] = S[qq, p] * dh[p, qq] + d * DD[p, qq]                      # E[D_p h_q^2]
    T[p, :] = hh[p, :]                                                  # D_p h_p = h_p
    T[:, p] = hh[:, p]
    return T


# -------------------------------------------------------------------------------- the mean map
@dataclass(frozen=True)
class _PathTables:
    """The Gaussian path's moments at forward order parameters ``Q`` (all that ``Q`` sets)."""
    S: np.ndarray        # Cov(f_i, f_j)
    Cy: np.ndarray       # Cov(y_k, f_j)
    vy: np.ndarray       # Var y_k
    pD: float            # E[D]
    DD: np.ndarray       # E[D_i D_j]
    Ghh: np.ndarray      # E[h_{j-1} h_{j'-1}] (index j = 1 .. n-1 of the b-coefficients; row/col 0 unused)
    Ghy: np.ndarray      # E[h_{j-1} y_k]
    T: np.ndarray        # T[p, j, j'] = E[D_p h_{j-1} h_{j'-1}], p = 0 .. n-2
    Thy: np.ndarray      # Thy[p, j, k] = E[D_p h_{j-1} y_k]


def _path_tables(red, Q):
    n = red.n
    S, Cy, vy = _path_moments(red, Q)
    if red.relu:
        pD = 0.5
        DD, hh, dh = _pair_tables(S)
    else:                      # linear: D = 1, h = f (a check of the bookkeeping)
        pD, DD, hh, dh = 1.0, np.ones((n, n)), S, np.zeros((n, n))
    Ghh = np.zeros((n, n))
    Ghh[1:, 1:] = hh[:-1, :-1]
    Ghy = np.zeros((n, n))
    Ghy[1:, :] = Cy.T[:-1, :] * pD
    T = np.zeros((n - 1, n, n))
    Thy = np.zeros((n - 1, n, n))
    for p in range(n - 1):
        T[p, 1:, 1:] = (_triple_slice(S, p, DD, hh, dh) if red.relu else S)[:-1, :-1]
        # Stein on y_k: E[D_p h_q y_k] = Cov(y_k, f_p) E[delta_p h_q] + Cov(y_k, f_q) E[D_p D_q]
        Thy[p, 1:, :] = Cy[:, p][None, :] * dh[p, :-1, None] + Cy.T[:-1, :] * DD[p, :-1, None]
    return _PathTables(S, Cy, vy, pD, DD, Ghh, Ghy, T, Thy)


def _forward_q(red, Om):
    """The forward order parameters the path sees: ``Q_{l-1}`` at layer ``l``, divided by
    ``<zeta_l^2>`` for Haar weights (``y = sigma |h| zeta / |zeta|``)."""
    if not red.orthogonal:
        return Om[iQ]
    q = Om[iQ].copy()
    q[:-1] /= Om[iZZ, 1:]
    return q


def mean_map(red, Om, tables=None):
    """``E phi(z; Om)``, exactly (module docstring), (K, n). ``tables``: the path's moments at
    :func:`_forward_q` if already computed (they cost O(n^3); the rest O(n^3) in matrix
    products)."""
    a, beta, n, sig = red.a, red.beta, red.n, red.sigma
    Q = Om[iQ]
    t = _path_tables(red, _forward_q(red, Om)) if tables is None else tables
    pD = t.pD
    out = np.zeros((red.K, n))
    out[iQ] = np.diag(t.S) * pD
    # atoms: b0 (1), xi-atoms D_{j-1} xi_j (j = 1..n-1), eta_k (k = 1..n-1), g-atoms h_{j-1} then y_k
    i = np.arange(n)
    gap = i[None, :] - i[:, None]
    pw = np.where(gap > 0, a ** np.maximum(gap - 1, 0), 0.0)                # a^{j-1-i}, j > i
    s2q = np.ones(n)
    s2q[1:] = sig[1:] ** 2 * Q[:-1]                                        # <y_l^2>
    scale = np.sqrt(Om[iB])
    if red.orthogonal:          # W^T b: |P_y b| times a unit vector of h's complement (_neurons)
        scale[1:] = np.sqrt((Om[iB, 1:] - Om[iY, 1:] ** 2 / s2q[1:])
                            / (Om[iXX, 1:] - Om[iHX, 1:] ** 2 / Q[:-1]))
    kappa = np.zeros(n)
    kappa[1:] = (Om[iY, 1:] - sig[1:] * scale[1:] * Om[iHX, 1:]) / Q[:-1]
    b_b0 = a ** (n - 1 - i)
    b_xi = pw * beta * sig * scale                                       # column j: atom D_{j-1} xi_j
    b_h = pw * beta * kappa                                              # column j: atom h_{j-1}
    # tangent coefficients: W x = cy y + cb b + cr rho + ce eta (per unit beta; rho: the M2 probe)
    xh = np.zeros(n)
    xh[1:] = Om[iXH, 1:] / Q[:-1]
    haar, probe = red.orthogonal, red.probe is not None
    cb = np.zeros(n) if red.trace or probe else red.trained / Om[iB]
    cy, ce, cr = beta * xh, np.zeros(n), np.zeros(n)
    Y, B, HX, XI, BE, X2 = (Om[k, 1:] for k in (iY, iB, iHX, iXI, iBE, iX2))
    x1 = xh[1:]
    if haar:      # W x = xh y + sigma (e' <g x> + |P_{h,g} x| (unit vector off y and b)) (_neurons)
        s2, YE = s2q[1:], Om[iYE, 1:]
        pb = np.sqrt(B - Y * Y / s2)
        G = (XI - HX * x1) / np.sqrt(Om[iXX, 1:] - HX * HX / Q[:-1])
        E = (BE - Y * YE / s2) / pb
        off, res = Om[iEE, 1:] - YE * YE / s2 - E * E, X2 - Om[iXH, 1:] * x1 - G * G
        out[[iZZ, iXX, iEE], 1:] = 1.0                  # E zeta^2, E xi^2, E eta^2; E[y eta] = 0
    else:         # the same with e' = b / |b|, nothing taken off y, and eta unnormalised
        s2, YE, pb, G = np.inf, 0.0, scale[1:], XI - HX * x1
        E, off, res = BE / pb, 1.0, X2 - Om[iXH, 1:] * x1
    # the M2 probe's layers above v are 0 / 0 (unused, zeroed below)
    with np.errstate(invalid="ignore", divide="ignore") if probe else contextlib.nullcontext():
        if probe:     # W x also along e2 (rho off y, e'), its fresh part off e2 too
            v = red.probe
            YR, BR, RR, HP, XP, RE, PP, XIP = (Om[k, 1:] for k in (iYR, iBR, iRR, iHP, iXP, iRE, iPP, iXIP))
            cg, c2, gxp, n2, ng = _rho_parts(haar, s2, Q[:-1], B, Y, HX, Om[iXX, 1:], YR, BR, RR, HP, PP,
                                             XIP)
            G2, E2 = (XP - HP * x1 - gxp * G) / n2, (RE - YR * YE / s2 - cg * E) / c2
            if haar:
                off, res = off - E2 * E2, res - G2 * G2
        rr = np.sqrt(np.maximum(res, 0.0) / off)        # |x off h, g (, g2)| / |eta's fresh part|
        cep = beta * sig[1:] * (G - rr * E)               # along e'
        if probe:
            cr[1:] = beta * sig[1:] * (G2 - rr * E2) / c2
            cep = cep - cr[1:] * cg
            cy[1:] -= cr[1:] * YR / s2
        cb[1:] += cep / pb
        cy[1:] -= (cep * Y / pb + beta * sig[1:] * rr * YE) / s2
        ce[1:] = beta * sig[1:] * rr
    if probe:     # u lives on layers 0 .. v, sourced by t_l rho_l / B_l
        cr += red.trained / Om[iB]
        cb[i > v] = cr[i > v] = cy[i > v] = ce[i > v] = 0.0
    ce[0] = cy[0] = 0.0
    Tl = np.where(gap <= 0, a ** np.maximum(-gap, 0), 0.0)                  # a^{i-k}, k <= i
    TC = Tl * cb[None, :]
    u_b0 = TC @ b_b0
    u_xi = TC @ b_xi
    u_h = TC @ b_h
    u_y = Tl * cy[None, :]
    u_e = Tl * ce[None, :]
    if red.trace:               # the sources s_k: atoms like eta_k, independent of everything
        u_e = np.hstack([u_e, Tl * (red.trained / np.sqrt(Om[iB]))[None, :]])
    Ghh, Ghy = t.Ghh, t.Ghy

    def gram(xh_, zh_, zy_=None):            # E[X Z], X = xh_ . h, Z = zh_ . h + zy_ . y
        g = ((xh_ @ Ghh) * zh_).sum(1)
        return g if zy_ is None else g + ((xh_ @ Ghy) * zy_).sum(1)

    u_xp = np.zeros((n, 0))     # the M2 probe's D xi' atoms (weighted like D xi)
    if probe:                   # rho's atoms: r, D xi, D xi', h
        cx, cxp, kr = np.zeros(n), np.zeros(n), np.zeros(n)
        with np.errstate(invalid="ignore", divide="ignore"):
            cx[1:], cxp[1:] = (cg - c2 * gxp / n2) / ng, c2 / n2
            kr[1:] = (YR - sig[1:] * (cx[1:] * HX + cxp[1:] * HP)) / Q[:-1]
        cx[v + 1:] = cxp[v + 1:] = kr[v + 1:] = 0.0
        pr = np.where(i[None, :] <= v, pw, 0.0)
        r_r = np.where(i <= v, a ** np.abs(v - i), 0.0)
        r_xi, r_xp, r_h = pr * beta * sig * cx, pr * beta * sig * cxp, pr * beta * kr
        if haar:
            out[iPP, 1:v + 1] = 1.0                             # E xi'^2; E[xi xi'] = 0
        TR = Tl * cr[None, :]
        u_xi, u_h = u_xi + TR @ r_xi, u_h + TR @ r_h
        u_e, u_xp = np.hstack([u_e, (TR @ r_r)[:, None]]), TR @ r_xp
        out[iYR] = np.einsum("ij,ji->i", r_h, Ghy)
        out[iBR] = pD * (b_xi * r_xi).sum(1) + gram(b_h, r_h)
        out[iRR] = r_r ** 2 + pD * (r_xi ** 2 + r_xp ** 2).sum(1) + gram(r_h, r_h)

    out[iY] = np.einsum("ij,ji->i", b_h, Ghy)                           # E[y_i b_i]: h atoms only
    out[iB] = b_b0 ** 2 + pD * (b_xi ** 2).sum(1) + gram(b_h, b_h)
    out[iBU] = b_b0 * u_b0 + pD * (b_xi * u_xi).sum(1) + gram(b_h, u_h, u_y)
    out[iU2] = (u_b0 ** 2 + pD * (u_xi ** 2).sum(1) + pD * (u_xp ** 2).sum(1) + (u_e ** 2).sum(1)
                + gram(u_h, u_h, 2 * u_y) + (u_y ** 2 * t.vy).sum(1))
    # x = D_{l-1} u_{l-1}, l = 1 .. n-1 (p = l - 1)
    ch, cyv, l = u_h[:-1], u_y[:-1], np.arange(1, n)
    out[iXH, 1:] = (ch * Ghh[:, 1:].T).sum(1) + (cyv * Ghy[1:, :]).sum(1)       # E[u_p h_p]
    out[iXI, 1:] = pD * u_xi[l - 1, l]                                           # E[xi_l D_p u_p]
    DDj = np.zeros((n - 1, n))
    DDj[:, 1:] = t.DD[:-1, :-1]                                                  # E[D_p D_{j-1}]
    out[iX2, 1:] = (pD * u_b0[:-1] ** 2 + (u_xi[:-1] ** 2 * DDj).sum(1) + pD * (u_e[:-1] ** 2).sum(1)
                    + (np.matmul(ch[:, None, :], t.T)[:, 0] * ch).sum(1)
                    + 2 * (np.matmul(ch[:, None, :], t.Thy)[:, 0] * cyv).sum(1)
                    + pD * (cyv ** 2 * t.vy).sum(1))
    if red.probe is not None:
        out[iXP, 1:] = pD * u_xp[l - 1, l]                                       # E[xi'_l D_p u_p]
        out[iX2, 1:] += (u_xp[:-1] ** 2 * DDj).sum(1)
        out[[iBU, iU2], v + 1:] = out[[iXH, iXI, iX2, iXP], v + 1:] = 0.0
    return out


# ------------------------------------------------------------------------ the 1/m expansion
def _used(red):
    """Order parameters that some layer reads (the rest are kept at 0 and out of the expansion)."""
    n = red.n
    used = np.ones((red.K, n), bool)
    used[iQ, n - 1] = False
    used[[iY, iHX, iXH, iXI, iX2, iBE], 0] = False
    if red.orthogonal:
        used[[iZZ, iXX, iEE, iYE], 0] = False
    if red.probe is not None:   # rho and u below v; G reads <u^2> at v only
        v = red.probe
        used[iBU] = False
        if not red.orthogonal:
            used[[iZZ, iXX, iEE, iYE, iPP, iXIP]] = False
        used[[iEE, iYE], v + 1:] = False
        used[[iYR, iBR, iRR, iHP, iXP, iRE, iPP, iXIP], 0] = False
        used[[iYR, iBR, iRR, iHP, iXP, iRE, iPP, iXIP, iXH, iXI, iX2, iBE], v + 1:] = False
        used[iU2, :v] = used[iU2, v + 1:] = False
    return used


def mean_field(red):
    """The width limit's order parameters ``Omega*``: the fixed point of :func:`mean_map`. The
    forward ones first (``Q_l = E[h_l^2]`` needs ``Q_{<l}`` only), so that the path's tables are
    computed once; the rest is causal, so the iteration stops after at most ``3 n`` sweeps."""
    n = red.n
    Q = np.ones(n)
    for _ in range(n):
        Q = red.variances(Q) * (0.5 if red.relu else 1.0)
    tables = _path_tables(red, Q)
    Om = np.ones((red.K, n))
    Om[[iY, iHX, iXH, iXI, iBE]] = 0.0
    if red.orthogonal:      # the normalisations are 1 (and the forward Q unchanged) at the fixed point
        Om[[iZZ, iXX, iEE], 0] = Om[iYE] = 0.0
    if red.probe is not None:
        Om[[iYR, iBR, iHP, iXP, iRE, iXIP]] = 0.0
        if not red.orthogonal:
            Om[[iZZ, iXX, iEE, iYE, iPP]] = 0.0
    Om[iQ] = Q
    for _ in range(3 * n + 3):      # b down, rho down (the M2 probe), u up
        new = mean_map(red, Om, tables)
        if np.array_equal(new, Om):
            break
        Om = new
    return new


def _forward(red):
    """The order parameters the path's tables depend on (``Q``; Haar weights: and ``<zeta^2>``)."""
    out = np.zeros((red.K, red.n), bool)
    out[iQ] = True
    if red.orthogonal:
        out[iZZ] = True
    return out


def _jacobian(red, Om, used, rel=1e-5):
    """``d mean_map / d Omega`` at ``Om`` on the used entries (central differences of a smooth map;
    the path's tables are shared by every column but the forward ones)."""
    n, uf = red.n, used.ravel()
    d = red.K * n
    base = _path_tables(red, _forward_q(red, Om))
    forward = _forward(red).ravel()
    J = np.zeros((d, d))
    for k in np.flatnonzero(uf):
        e = np.zeros(d)
        e[k] = rel * max(abs(Om.ravel()[k]), 1e-2)
        e = e.reshape(red.K, n)
        tp, tm = (None, None) if forward[k] else (base, base)
        J[:, k] = (mean_map(red, Om + e, tp) - mean_map(red, Om - e, tm)).ravel() / (2 * e.ravel()[k])
    J[~uf] = 0.0
    return J


def _second_along(red, Om, u, base, tables=None):
    """``d^2/dt^2 mean_map(Om + t u)`` at 0 (steps ``u`` and ``2 u``, Richardson-combined)."""
    def at(x):
        return mean_map(red, Om + x, tables)
    h1 = at(u) + at(-u) - 2 * base
    h2 = at(2 * u) + at(-2 * u) - 2 * base
    return (16 * h1 - h2) / 12


def _second(red, Om, C, rel=1e-2, cache=None):
    """``Phi''[C] = sum_ab C_ab d^2 mean_map / dOmega_a dOmega_b``, by second differences (steps
    ``rel`` and ``2 rel`` of each entry's size, Richardson-combined: ``mean_map`` spans orders of
    magnitude, so small steps drown in round-off and large ones carry an ``O(step^2)`` error of a
    few percent). ``C`` is split into blocks so that the path's tables (the O(n^3) part) are
    recomputed only along the forward directions: the non-forward block along its eigenvectors
    (tables fixed), the forward block along its own, and each forward ``Q_q`` against the
    non-forward direction ``rho_q = C[q, R]`` by a mixed central difference (forward:
    :func:`_forward`). ``cache`` (a dict, reused across calls with the same ``Om`` and forward block
    ``C[Q, Q]``) keeps the shifted tables and the forward block's contribution."""
    cache = {} if cache is None else cache
    n, Kr = red.n, red.K
    d = Kr * n
    # Steps relative to each entry's value (a positive order parameter must not be pushed towards
    # 0: its fluctuation can exceed its mean by orders of magnitude), to its fluctuation where the
    # value is 0. Eigenvectors are taken in units of the fluctuations (the correlation matrix):
    # in raw units entries span many orders of magnitude and the eigenvectors of the small
    # eigenvalues leak into entries that do not fluctuate, which then set the step.
    sd = np.sqrt(np.maximum(np.diag(C), 0.0))
    om = np.abs(Om.ravel())
    scale = np.where(om > 0, om, sd)
    inv = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
    active = sd > 0
    isQ = _forward(red).ravel()
    if "base" not in cache:
        cache["base"] = _path_tables(red, _forward_q(red, Om))
    base_t = cache["base"]
    base = mean_map(red, Om, base_t)
    H = np.zeros_like(Om)

    def eig_block(mask, tables):
        nonlocal H
        idx = np.flatnonzero(mask & active)
        if idx.size == 0:
            return
        s = sd[idx]
        lam, U = np.linalg.eigh(C[np.ix_(idx, idx)] / np.outer(s, s))
        for k in np.flatnonzero(np.abs(lam) > 1e-12 * np.abs(lam).max()):
            w = np.zeros(d)
            w[idx] = s * U[:, k]
            t = rel / np.abs(w * inv).max()
            H += lam[k] * _second_along(red, Om, (t * w).reshape(Kr, n), base, tables) / t ** 2

    eig_block(~isQ, base_t)
    if "QQ" not in cache:
        H0 = H.copy()
        eig_block(isQ, None)
        cache["QQ"] = H - H0
    else:
        H += cache["QQ"]
    for q in np.flatnonzero(isQ):
        rho = np.where(isQ, 0.0, C[q])
        if not rho.any():
            continue
        sr = rel / np.abs(rho * inv).max()                      # a step along rho of size rel
        r = (rho * sr).reshape(Kr, n)
        mixed = []
        for j in (1, 2):                                        # Richardson in the two steps
            eq = np.zeros(d)
            eq[q] = j * rel * scale[q]
            eq = eq.reshape(Kr, n)
            tp, tm = cache.get((q, j)) or (_path_tables(red, _forward_q(red, Om + eq)),
                                           _path_tables(red, _forward_q(red, Om - eq)))
            if 8 * (base_t.T.nbytes + base_t.Thy.nbytes) * isQ.sum() < _CACHE_BYTES:   # all shifts kept
                cache[q, j] = tp, tm
            mixed.append((mean_map(red, Om + eq + j * r, tp) - mean_map(red, Om + eq - j * r, tp)
                          - mean_map(red, Om - eq + j * r, tm) + mean_map(red, Om - eq - j * r, tm))
                         / (4 * eq.ravel()[q] * j * sr))
        H += 2 * (4 * mixed[0] - mixed[1]) / 3                   # C[q, R] and C[R, q]
    return H


def _cos_expansion(Om, bias, C):
    """``grad G . bias + tr(G'' C) / 2`` per layer for ``G = <b u> / sqrt(<b^2> <u^2>)``."""
    n = Om.shape[1]
    BU, B, U2 = Om[iBU], Om[iB], Om[iU2]
    out = np.full(n, np.nan)
    for i in np.flatnonzero(U2 > 0):
        ks = [iBU * n + i, iB * n + i, iU2 * n + i]
        g0 = BU[i] / math.sqrt(B[i] * U2[i])
        grad = np.array([1 / math.sqrt(B[i] * U2[i]), -0.5 * g0 / B[i], -0.5 * g0 / U2[i]])
        b, rx, rz = BU[i], 1 / math.sqrt(B[i]), 1 / math.sqrt(U2[i])
        hess = np.array([[0.0, -0.5 * rx ** 3 * rz, -0.5 * rx * rz ** 3],
                         [-0.5 * rx ** 3 * rz, 0.75 * b * rx ** 5 * rz, 0.25 * b * rx ** 3 * rz ** 3],
                         [-0.5 * rx * rz ** 3, 0.25 * b * rx ** 3 * rz ** 3, 0.75 * b * rx * rz ** 5]])
        out[i] = grad @ bias[ks] + 0.5 * np.sum(hess * C[np.ix_(ks, ks)])
    return out


def _m1_expansion(Om, bias, C):
    """The same for the trace probe's ``G = <b^2> <w^2>`` (``E G = M1``), (2, n): ``grad G . bias +
    Cov(<b^2>, <w^2>)`` and ``m Var G = grad G^T C grad G`` to leading order (the network's spread
    of ``M1`` plus the probe's own, ``2 M2``)."""
    i, n = np.arange(Om.shape[1]), Om.shape[1]
    B, U2, kb, ku = Om[iB], Om[iU2], iB * n + i, iU2 * n + i
    return np.stack([U2 * bias[kb] + B * bias[ku] + C[kb, ku],
                     U2 * U2 * C[kb, kb] + 2 * B * U2 * C[kb, ku] + B * B * C[ku, ku]])


def _m2_expansion(Om, bias, C, v):
    """The same for the M2 probe's ``G = <b_v^2>^2 <u_v^2>`` (``E G = M2`` at layer ``v``), (1,):
    ``grad G . bias + tr(G'' C) / 2``."""
    n = Om.shape[1]
    B, U2, kb, ku = Om[iB, v], Om[iU2, v], iB * n + v, iU2 * n + v
    return np.array([2 * B * U2 * bias[kb] + B * B * bias[ku] + U2 * C[kb, kb] + 2 * B * C[kb, ku]])


def _forward_cov(red, Q):
    """``Cov(h_i^2, h_j^2)`` of one neuron, exactly: ``E[relu(X)^2 relu(Y)^2] = s_x^2 s_y^2 (3 sin t
    cos t + (pi - t)(1 + 2 cos^2 t)) / (2 pi)``, ``cos t`` the correlation (arc-cosine kernel of
    degree 2); linear: ``2 Cov(f_i, f_j)^2``."""
    S = _path_moments(red, Q)[0]
    if not red.relu:
        return 2 * S * S
    s = np.sqrt(np.diag(S))
    r = _correlations(S)
    t = np.arccos(r)
    e4 = np.outer(s, s) ** 2 * (3 * np.sin(t) * r + (np.pi - t) * (1 + 2 * r * r)) / (2 * np.pi)
    return e4 - np.outer(np.diag(S), np.diag(S)) / 4


def _path_response(red, Om, V, z, dev):
    """The self-response through the neuron's own path, summed over neurons: its influence ``V``
    (N, K, n) on the forward order parameters moves its path, whose law is Gaussian, so by
    integration by parts it is ``E[(phi - Omega*) w]`` with the score weight
    ``w = sum_j v_j (z_{j+1}^2 - 1) / (2 q_j)`` (``q_j`` the path's ``Q_j``, ``v_j`` the neuron's
    influence on it, a function of the path up to ``j``). Haar weights: ``q_j = Q_j / <zeta_{j+1}^2>``,
    and the influence on ``<zeta_{j+1}^2>`` is the neuron's own ``zeta_{j+1}^2 - 1`` (its row of
    ``A`` is a unit row: the mean map is 1 there), so ``v_j = v_{Q_j} - Q_j (z_{j+1}^2 - 1)``
    depends on ``z_{j+1}`` too; its derivative adds ``z_{j+1}^2`` to the weight, and the direct
    term ``zeta^2`` of ``phi`` (not moved by the path) takes back ``v_j z_{j+1}^2 / Q_j``."""
    n = red.n
    Q = Om[iQ, :n - 1]
    z2 = z[:, 1:] ** 2
    if not red.orthogonal:
        w = (V[:, iQ, :n - 1] * (z2 - 1) / (2 * Q)).sum(1)
        return (dev * w[:, None]).sum(0)
    v = V[:, iQ, :n - 1] - Q * V[:, iZZ, 1:]                  # at the fixed point <zeta^2> = 1
    w = (v * (z2 - 1) / (2 * Q) + z2).sum(1)
    out = (dev * w[:, None]).sum(0).reshape(red.K, n)
    out[iZZ, 1:] -= (v * z2 / Q).sum(0)
    return out.ravel()


def c1_expansion(red, probes=200_000, batches=8, seed=0, chunk=20_000, on_batch=None):
    """The ``1/m`` coefficient of ``E cos(theta_l)`` of the reduced network, (mean, se) per layer;
    the trace probe (``red.trace``): of ``E M1``, and ``m Var`` of its estimate
    (:func:`_m1_expansion`), (mean, se) each (2, n).

    With ``Phi = mean_map``, ``J = Phi'(Omega*)``, ``A = (I - J)^-1`` and ``v(z) = A (phi(z) -
    Omega*)`` a neuron's influence on the order parameters, the empirical order parameters are
    ``Omega* + delta`` with ``m E delta = A (SR + Phi''[C] / 2)``, ``m Cov delta = C = A Sigma A^T``
    (``Sigma = Cov phi``), ``SR = d/dt E_z phi(z; Omega* + t v(z))``, and

        c1 = grad G . A (SR + Phi''[C] / 2) + tr(G'' C) / 2.

    ``Omega*``, ``J``, ``Phi''`` and the forward block of ``Sigma`` are exact (``mean_map``,
    :func:`_forward_cov`). The rest of ``Sigma`` and ``SR`` are averages over probe neurons. In
    ``SR`` the neuron's own forward influence moves its own path: by Gaussian integration by parts
    that is the weight ``sum_j v_{Q_j}(z) (z_{j+1}^2 - 1) / (2 Q_j)`` (the score of the path's
    law; ``v_{Q_j}`` depends on the path up to layer ``j`` only), so no mask jump is
    differentiated. The probes come in ``batches``; the scatter of the batches' ``c1``
    gives the standard error. ``on_batch()`` is called after each batch (a progress bar)."""
    n = red.n
    used = _used(red)
    uf = used.ravel()
    Kr = red.K
    d = Kr * n
    Om = mean_field(red)
    J = _jacobian(red, Om, used)
    A = np.linalg.inv(np.eye(d) - J)
    scale = np.maximum(np.abs(Om.ravel()), 1e-2)
    rng = np.random.default_rng(seed)
    SQQ = _forward_cov(red, Om[iQ]) * np.outer(uf[:n], uf[:n])
    cache = {}
    per = probes // batches
    out = []
    for _ in range(batches):
        S2, SR, got = np.zeros((d, d)), np.zeros(d), 0
        while got < per:
            N = min(chunk, per - got)
            z = rng.standard_normal((N, n))
            xi, eta, b0 = rng.standard_normal((N, n)), rng.standard_normal((N, n)), rng.standard_normal(N)
            s = rng.standard_normal((N, n)) if red.trace or red.probe is not None else None
            f = _paths(red, _forward_q(red, Om), z)
            D = (f > 0).astype(float) if red.relu else np.ones_like(f)
            dev = _particle_map(red, f, xi, eta, b0, Om, D, z, s).reshape(N, d) - Om.ravel()
            dev[:, ~uf] = 0.0
            S2 += dev.T @ dev
            v = dev @ A.T
            st = 1e-4 / max(np.abs(v / scale).max(), 1e-300)
            V = v.reshape(N, Kr, n)
            up = _particle_map(red, f, xi, eta, b0, Om + st * V, D, z, s)
            dn = _particle_map(red, f, xi, eta, b0, Om - st * V, D, z, s)
            SR += ((up - dn) / (2 * st)).reshape(N, d).sum(0)
            SR += _path_response(red, Om, V, z, dev)

            got += N
        Sig = S2 / per
        Sig[:n, :n] = SQQ                                    # the forward block, exactly
        C = A @ Sig @ A.T
        SRb = SR / per * uf
        H = _second(red, Om, C * np.outer(uf, uf), cache=cache)
        bias = A @ (SRb + 0.5 * H.ravel() * uf)
        if red.probe is not None:
            out.append(_m2_expansion(Om, bias, C, red.probe))
        else:
            out.append((_m1_expansion if red.trace else _cos_expansion)(Om, bias, C))
        if on_batch is not None:
            on_batch()
    out = np.array(out)
    return out.mean(0), out.std(0, ddof=1) / math.sqrt(batches)


# ------------------------------------------------------------------ a family's c1, any depth
_DIRECT_DEPTH = 64           # deeper networks: c1 extrapolated in depth from these two depths
_COARSE_DEPTHS = (32, 64)


def _coarse(family, depth):
    """The family at another depth with ``beta^2 L`` kept (the same network of the depth
    continuum: with ``beta = c / sqrt(L)``, the same ``c``)."""
    return family.replace(depth=depth, branch_scale=family.branch_scale * math.sqrt(family.depth / depth))


def _first_trained(family):
    """The first layer ``v`` (1-based) whose ``cos`` is defined: ``W_v`` trained."""
    return int(np.flatnonzero(family.trained_mask)[0]) + 1


def _depth_extrapolated(family, c1_of):
    """``(c1, se)`` of a deep ``family`` from ``c1_of(coarse)`` (``(c1, se)``) at the depths
    :data:`_COARSE_DEPTHS`, on the layer coordinate ``s = (v - v0) / (L - 1 - v0)`` (``v0`` the
    first trained layer, where ``c1 = 0``; ``s = 1`` the output), by Richardson in ``1/L``:
    ``c1(s; L) = c_inf(s) + alpha(s) / L`` (the weak order of the depth discretisation of the
    ``beta = c / sqrt(L)`` continuum). Checked on the linear chain, whose ``c1`` is exact at every
    depth: from ``L = 32, 64`` it gives ``L = 128 .. 1024`` within 0.010 at ``c = 2`` (c1 up to
    0.49) and 0.0012 at ``c = 1`` (``tests/theory/test_reduction.py``)."""
    L, v0 = family.depth, _first_trained(family)
    (L1, L2), curves = _COARSE_DEPTHS, []
    s = (np.arange(1, L) - v0) / (L - 1 - v0)
    for Lc in _COARSE_DEPTHS:
        c1, se = c1_of(_coarse(family, Lc))
        v = np.arange(v0, Lc)
        sc = (v - v0) / (Lc - 1 - v0)
        curves.append((np.interp(s, sc, c1[v - 1]), np.interp(s, sc, se[v - 1])))
    (lo, se_lo), (hi, se_hi) = curves
    w_hi = (L2 / (L2 - L1)) * (1 - L1 / L)           # c(L) = w_hi c(L2) + w_lo c(L1)
    w_lo = 1 - w_hi
    c1 = np.where(s >= 0, w_hi * hi + w_lo * lo, np.nan)
    return c1, np.where(s >= 0, np.hypot(w_hi * se_hi, w_lo * se_lo), np.nan)


def family_c1(family, probes=200_000, batches=8, seed=0, progress=None, trace=False):
    """``(c1, se)`` at ``v = 1 .. L-1`` of a ReLU ResNet (Gaussian or Haar weights)
    (``trace``: ``(c1, se, var)``, ``var`` the leading ``m Var`` of :func:`_m1_expansion`):
    :func:`c1_expansion` at the family's depth up to ``L = 64``; deeper,
    :func:`_depth_extrapolated` from ``L = 32, 64`` (the family with ``beta^2 L``, skip rule, init
    and trained rule kept), ``probes`` probe neurons at each depth. ``trace``: the ``1/m``
    coefficient of the BFK's ``E M1`` instead of ``E cos``, extrapolated in depth relative to its
    growth (:func:`_m1_scales`), and ``var`` likewise. The probes of a depth are drawn from
    ``SeedSequence([seed, depth])``, and each expansion is kept (:data:`_MEMO`): a family at depth
    32 or 64 gives the very numbers its deeper copies are extrapolated from, and a sweep over depth
    or width computes them once.
    ``progress``: a tqdm-like bar (``update()`` per batch) or None."""
    tick = None if progress is None else progress.update

    def c1_of(fam):
        return _kept_expansion(replace(Reduction.of(fam), trace=trace), fam.depth, probes, batches,
                               seed, tick)

    if not trace:
        return c1_of(family) if family.depth <= _DIRECT_DEPTH else _depth_extrapolated(family, c1_of)
    if family.depth <= _DIRECT_DEPTH:
        (c1, var), (se, _) = c1_of(family)
        return c1, se, var

    def relative(p):                    # row p of the expansion over its growth: O(1) in depth
        def of(fam):
            scale = _m1_scales(fam)[p]
            with np.errstate(invalid="ignore", divide="ignore"):
                out = tuple(x[p] / scale for x in c1_of(fam))
            if p == 1:                  # var at k_v = 1 is 0 / 0: the ratio's limit, a layer up
                j = np.flatnonzero(scale == 0)[-1]
                for r in out:
                    r[j] = r[j + 1]
            return out
        return of
    (c1, se), (var, _) = (_depth_extrapolated(family, relative(p)) for p in (0, 1))
    k, sq = _m1_scales(family)
    return np.where(k > 0, c1 * k, 0.0), np.where(k > 0, se * k, 0.0), np.where(sq > 0, var * sq, 0.0)


def _kept_expansion(red, depth, probes, batches, seed, tick):
    """:func:`c1_expansion` of ``red`` (a network of ``depth`` layers), seeded by
    ``SeedSequence([seed, depth])`` and kept in :data:`_MEMO`."""
    # rounded: a coarse copy's beta = beta sqrt(L / L') may differ from the direct one in the last
    # bit; sigma_0 (the input layer's, which depends on the width) is not used
    key = (tuple(np.round(np.r_[red.a, red.beta, red.sigma[1:], red.trained], 12)), red.relu,
           red.orthogonal, red.trace, red.probe, probes, batches, seed)
    if key not in _MEMO:
        if len(_MEMO) >= 64:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = c1_expansion(red, probes, batches, np.random.SeedSequence([seed, depth]),
                                  on_batch=tick)
    return tuple(x.copy() for x in _MEMO[key])      # results may be written to


# -------------------------------------------------------------------- a family's M2, any depth
_M2_NODES = 4     # layers an M2 expansion runs at, evenly on the layer coordinate


def _m2_nodes(family):
    """The layers ``v`` (1-based) where :func:`family_m2_c1` runs the M2 probe: :data:`_M2_NODES`
    evenly spaced on ``s = (v - v0) / (L - 1 - v0)`` up to the output; every layer past ``v0``
    when the trained layers are not contiguous (the curve kinks at each) or few."""
    L, v0 = family.depth, _first_trained(family)
    if not family.trained_mask[v0 - 1:L - 1].all() or L - 1 - v0 <= _M2_NODES:
        return np.arange(v0 + 1, L)
    return v0 + np.round(np.arange(1, _M2_NODES + 1) * (L - 1 - v0) / _M2_NODES).astype(int)


def family_m2_c1(family, probes=200_000, batches=8, seed=0, progress=None):
    """``(c1, se)`` of the BFK's ``E M2`` at ``v = 1 .. L-1`` of a ReLU ResNet (Gaussian or Haar
    weights), relative to its width limit (``c1 / M2_limit``; 0 up to the first trained layer, where
    ``M2 = 1`` or 0 in every network). One expansion of the M2 probe (:attr:`Reduction.probe`) a
    layer, at the layers :func:`_m2_nodes` and interpolated between on the layer coordinate (a
    cubic spline through ``s = 0``, where it is 0: within 0.25% of the largest value on the linear
    chain's exact ``m2_c1`` at L = 12 .. 64, ``tests/theory/test_reduction.py``); at the family's
    depth up to 64, deeper by :func:`_depth_extrapolated` from 32 and 64 (the relative ``c1`` is
    ``O(1)`` on the depth continuum). ``progress``: as :func:`family_c1`."""
    from scipy.interpolate import CubicSpline

    tick = None if progress is None else progress.update

    def at(fam, v):             # (c1, se) / M2_limit at layer v
        red = replace(Reduction.of(fam), probe=int(v) - 1)
        Om = mean_field(red)
        lim = Om[iB, v - 1] ** 2 * Om[iU2, v - 1]
        return np.array(_kept_expansion(red, fam.depth, probes, batches, seed, tick))[:, 0] / lim

    def curve(fam):
        L, v0, nodes = fam.depth, _first_trained(fam), _m2_nodes(fam)
        vals = np.array([at(fam, v) for v in nodes]).reshape(-1, 2)
        rel, se = np.zeros(L - 1), np.zeros(L - 1)
        if nodes.size == L - 1 - v0:
            rel[nodes - 1], se[nodes - 1] = vals.T
        elif nodes.size:
            s = (np.arange(v0 + 1, L) - v0) / (L - 1 - v0)
            sn = np.r_[0.0, (nodes - v0) / (L - 1 - v0)]
            rel[v0:] = CubicSpline(sn, np.r_[0.0, vals[:, 0]])(s)
            se[v0:] = np.interp(s, sn, np.r_[0.0, vals[:, 1]])
        return rel, se

    if family.depth <= _DIRECT_DEPTH:
        return curve(family)
    rel, se = _depth_extrapolated(family, curve)
    return np.nan_to_num(rel), np.nan_to_num(se)


def family_m2_c1_batches(family, batches=8):
    """How many batches :func:`family_m2_c1` runs."""
    if family.depth <= _DIRECT_DEPTH:
        return batches * _m2_nodes(family).size
    return batches * sum(_m2_nodes(_coarse(family, L)).size for L in _COARSE_DEPTHS)


def _m1_scales(family):
    """What ``M1``'s ``c1`` and ``m Var`` grow like in depth: each trained layer ``j`` below ``v``
    adds a fluctuation ``O(beta^2) = O(1 / L)`` of the backward norms weighted by the ``k_j``
    trained layers below it, so ``c1 ~ sum_j k_j / L`` and ``m Var ~ sum_j k_j^2 / L``; divided
    by ``k_v`` and ``sum_{j<k_v} j^2 / L`` both are ``O(1)`` on the depth continuum (exactly
    constant for the linear chain's leading terms)."""
    k = _trained_counts(family)
    return k, (k - 1) * k * (2 * k - 1) / (6 * family.depth)


def _trained_counts(family):
    """``k_v``, ``v = 1 .. L-1``: trained layers among ``W_1 .. W_v``."""
    return np.cumsum(family.trained_mask[:family.depth - 1]).astype(float)


_MEMO = {}                   # family_c1's expansions, by reduction, probes, batches and seed


def family_c1_batches(family, batches=8):
    """How many batches :func:`family_c1` runs (a progress bar's total)."""
    return batches * (1 if family.depth <= _DIRECT_DEPTH else len(_COARSE_DEPTHS))
