"""The backward-to-feature kernel (BFK) and the BFA in the width limit.

Recursion (Lemma A.1 of the paper rewritten layer by layer; ``c_v`` from
:func:`rmtalign.theory.signal.mean_field`):

    K_1 = c_1 I,        K_v = c_v I + A_v K_{v-1} A_v^T,       A_v = a I + beta W_v D_{v-1}.

**Free model.** With ``Y = A^T A`` free from ``K_{v-1}``: ``law(K_v) = c_v + law(K_{v-1}) ⊠ law(Y)``.
The first two moments need only ``t1 = tau(Y)``, ``t2 = tau(Y^2)``:

    M1(K_v) = c_v + t1 M1
    M2(K_v) = c_v^2 + 2 c_v t1 M1 + t1^2 M2 + (t2 - t1^2) M1^2      (M = moments of K_{v-1})

and ``cos(theta_v) = M1 / sqrt(M2)`` (Thm 3.2). This is exact in the width limit for MLPs (the
mask ``D_{v-1}`` is asymptotically free from the unitarily invariant ``K_{v-1}``, Hanin & Nica),
for linear networks, and for ReLU ResNets whose masks are redrawn independently at every layer.

**Exact masks (ReLU ResNets).** With a skip connection the true masks of consecutive layers are
correlated (each neuron's pre-activation is a Gaussian AR(1) process across depth, correlation
``rho^j``, ``rho = a / sqrt(t1)``), so ``K_{v-1}`` is *not* free from ``D_{v-1}``. Tracking the
variance profile ``m E[K_ij^2] = alpha + sum_l g_l (D_l(i) + D_l(j))`` over neuron types gives the
exact width limit of ``M1, M2`` (see ``docs/theory.md``):

    M1_v = c_v + t1 M1,                            (delta = M1 of K_{v-1})
    g_{v,v-1} = a^2 g^2 delta^2,  g_{v,l} = (a^4 + a^2 g^2 p) g_{v-1,l},
    S = sum_l g_{v-1,l} P(v-1-l),   P(j) = E[D_l D_{l+j}] = 1/4 + arcsin(rho^j) / (2 pi),
    alpha_v = a^4 alpha + a^2 g^2 (2 p alpha + 2 S) + g^4 (p delta^2 + p^2 alpha + 2 p S - e p^2 delta^2),
    M2_v = M1_v^2 + alpha_v + 2 p sum_l g_{v,l},

with ``g^2 = beta^2 m s^2``, ``p = 1/2``, ``e = 0`` (Gaussian) or ``1`` (orthogonal). Replacing
``P(j)`` by ``p^2`` gives back the free model. ``cos_spectrum = M1 / sqrt(M2)``.

**The BFA with exact masks** (``TheoryBFA.cos``). Thm 3.2 needs ``b_v`` independent of ``K_v``.
At pre-activations ``b_v = a b_{v+1} + beta D_v W_{v+1}^T b_{v+1}``: in the width limit, given
the mask histories of all neurons, ``b_v`` is a centred Gaussian vector with independent entries
of variance ``s_i`` (``W_{l}^T b_l``, ``l > v``, are fresh Gaussians: the readout is linear and
independent of the forward pass), independent of ``K_v`` (built from ``W_2 .. W_v``). But
``s_i`` depends on neuron ``i``'s masks ``D_v(i) .. D_{L-2}(i)``, which are correlated with the
masks ``D_1(i) .. D_{v-1}(i)`` that set the row profile of ``K_v``. Hence, by the law of large
numbers over neurons (``K_ii = M1`` for every ``i``, ``(K^2)_ii = M1^2 + alpha_v +
sum_l g_{v,l} (D_l(i) + p)``),

    cos(theta_v) = E_i[s_i K_ii] / sqrt(E_i[s_i (K^2)_ii] E_i[s_i]) = M1_v / sqrt(M2b_v),
    M2b_v = M2_v + C_v,        C_v = sum_{l<v} g_{v,l} (E[s D_l] / E[s] - p).

With ``s`` normalised to mean 1 (``tau(Y) = 1``): ``s^(L-1) = 1`` (``b_{L-1} = W_L^T b_L``
carries no mask) and ``s^(v) = a^2 s^(v+1) + g^2 D_v``, so ``s^(v) = a^(2(L-1-v)) +
g^2 sum_{j=v}^{L-2} a^(2(j-v)) D_j``. Since ``g_{v,l} = a^(2(v-1-l)) gamma_l`` (``r = a^2``
when ``tau(Y) = 1``), ``gamma_l = a^2 g^2 M1(K_l)^2``, every term depends on ``j - l`` only:

    C_v = g^2 sum_{l<v} gamma_l sum_{k=v-l}^{L-2-l} R(k),     R(k) = a^(2(k-1)) (P(k) - p^2)
        = g^2 sum_{l<v} gamma_l [U(v-l) - U(L-1-l)],          U(k) = sum_{k'=k}^{L-2} R(k'),

a causal convolution of ``M1^2`` with the decaying kernel ``U`` (FFT, sharing the transform of
``M1^2`` with the ``S`` convolution above; the first 2048 outputs are summed directly so that the
FFT's absolute round-off does not swamp the small early-layer values) minus a prefix sum:
O(L log L) overall. ``C_{L-1} = 0``: at the output layer Thm 3.2 holds and the angle is
``cos_spectrum``. MLPs (``a = 0``: masks independent across depth), linear networks and free
masks have ``C = 0``. ``C_v >= 0`` (``P(k) >= p^2``), so the network's BFA at inner layers is
below the spectral prediction.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numba
import numpy as np

from .._validate import (check_family, check_int, check_layer, check_mode,
                         renamed_keyword)
from ..alignment import angle_deg
from ..results import Result
from .free import Atoms, free_multiplicative_moments, shift_moments
from .layer import LayerLaw, layer_law, rational
from .signal import mean_field
from ._chain import chain_density

__all__ = ["TheoryBFA", "Density", "bfa", "bfk_moments", "bfk_density", "jacobian_moments",
           "jacobian_density", "moment_recursion"]


# --------------------------------------------------------------------------- helpers
def _weights_normalised(family):
    """``c_v / t1^v`` for v = 1..L-1 (the recursion is run on ``Y / t1``, scale-free), and t1."""
    law = layer_law(family)
    t1 = law.mean
    c = np.asarray(mean_field(family).kernel_weights[: family.depth - 1], dtype=float)
    if not np.all(np.isfinite(c)):
        raise ValueError("mean_field produced non-finite kernel weights (forward/backward norms "
                         f"over/underflow for depth={family.depth}); use a variance-preserving init")
    if t1 <= 0:
        raise ValueError("tau(A^T A) = 0: the Jacobians vanish (branch_scale = skip = 0)")
    v = np.arange(1, family.depth)
    with np.errstate(divide="ignore"):
        logc = np.where(c > 0, np.log(np.where(c > 0, c, 1.0)) - v * math.log(t1), -np.inf)
    top = np.max(logc) if np.any(c > 0) else 0.0
    return np.where(c > 0, np.exp(logc - top), 0.0), law


def moment_recursion(c, t1, t2):
    """Free-model ``M1, M2`` of ``K_v`` for weights ``c[0..n-1]`` (layer 1..n), ``tau(Y) = t1``,
    ``tau(Y^2) = t2``; an O(n) loop compiled by numba."""
    c = np.asarray(c, dtype=float)
    n = c.size
    return _recursion(c, float(t1), float(t2 - t1 * t1), np.empty(n), np.empty(n))


@numba.njit(cache=True)
def _recursion(c, t1, var, M1, M2):  # pragma: no cover - compiled
    m1 = 0.0
    m2 = 0.0
    for v in range(c.size):
        cv = c[v]
        new1 = cv + t1 * m1
        new2 = cv * cv + 2.0 * cv * t1 * m1 + t1 * t1 * m2 + var * m1 * m1
        m1, m2 = new1, new2
        M1[v] = m1
        M2[v] = m2
    return M1, M2


@numba.njit(cache=True)
def _alpha_loop(M1, conv, c0, a2, g2, p, e, r):  # pragma: no cover - compiled
    n = M1.size
    M2 = np.empty(n)
    M2[0] = c0 * c0
    alpha = 0.0
    gsum = 0.0
    for i in range(1, n):
        delta = M1[i - 1]
        S = a2 * g2 * conv[i - 2] if i >= 2 else 0.0
        alpha = (a2 * a2 * alpha + a2 * g2 * (2 * p * alpha + 2 * S)
                 + g2 * g2 * (p * delta * delta + p * p * alpha + 2 * p * S - e * p * p * delta * delta))
        gsum = r * gsum + a2 * g2 * delta * delta
        M2[i] = M1[i] ** 2 + alpha + 2 * p * gsum
    return M2


def _causal_convs(x, kernels, head=2048):
    """``y[t] = sum_{s <= t} x[s] k[t - s]`` (``t < n = x.size``) for each kernel ``k``.

    One real FFT of ``x`` is shared by all kernels. The FFT's round-off is absolute (relative to
    the largest products), while ``x`` here grows like ``t^2``: the first ``head`` outputs, where
    the exact values are smallest, are recomputed by direct sums (O(head^2))."""
    from scipy import fft as sfft

    n = x.size
    if n == 0:
        return [np.zeros(0) for _ in kernels]
    N = sfft.next_fast_len(2 * n - 1, real=True)
    X = sfft.rfft(x, N)
    out = []
    h = min(n, head)
    for k in kernels:
        k = np.asarray(k, float)[:n]
        y = sfft.irfft(X * sfft.rfft(k, N), N)[:n]
        for t in range(h):
            y[t] = np.dot(x[: t + 1], k[t::-1])
        out.append(y)
    return out


def _exact_mask_moments(c, law: LayerLaw, P, backward=True):
    """``M1, M2`` of ``K_v`` with correlated masks and, if ``backward``, the backward-weighted
    second moment ``M2b_v = E_i[s_i (K_v^2)_ii] / E_i[s_i]`` (module docstring; ``M2b = M2``
    where the correction vanishes). ``P[j] = E[D_l D_{l+j}]``; ``law`` normalised to
    ``tau(Y) = 1``. Cost O(L log L): two FFT convolutions sharing one transform."""
    a2, g2, p = float(law.a2), float(law.g2), float(law.p)
    e = 1.0 if law.weights == "orthogonal" else 0.0
    n = c.size
    M1, _ = _recursion(c, a2 + g2 * p, 0.0, np.empty(n), np.empty(n))  # delta_v
    r = a2 * a2 + a2 * g2 * p
    d2 = M1**2
    j = np.arange(1, n + 1)
    with np.errstate(under="ignore", divide="ignore"):
        ker = np.exp((j - 1) * math.log(r)) * P[1 : n + 1] if r > 0 else np.where(j == 1, P[1 : n + 1], 0.0)
        # R(k) = a2^(k-1) (P(k) - p^2), k = 1 .. n-1;  U(k) = sum_{k' = k}^{n-1} R(k')
        k = np.arange(1, n)
        R = np.exp((k - 1) * math.log(a2)) * (P[1:n] - p * p) if a2 > 0 else np.zeros(n - 1)
    U = np.zeros(n + 1)
    U[1:n] = np.cumsum(R[::-1])[::-1]
    kernels = [ker, U[1:n]] if backward else [ker]
    convs = _causal_convs(d2[: max(n - 1, 0)], kernels)
    # conv[k] = sum_{j>=1} d2[k - (j-1)] ker[j-1]  -> S for new layer i uses d2 up to i-2: conv[i-2]
    conv = np.zeros(n)
    conv[: n - 1] = convs[0]
    M2 = _alpha_loop(M1, conv, float(c[0]), a2, g2, p, e, r)
    if not backward:
        return M1, M2, M2
    # C_v = g2 sum_{l<v} gamma_l [U(v-l) - U(n-l)],  gamma_l = a2 g2 delta_l^2
    C = np.zeros(n)
    if n >= 2:
        X = convs[1]
        Y = np.cumsum(d2[: n - 1] * U[n - 1 : 0 : -1])
        C[1:] = a2 * g2 * g2 * (X - Y)
    C[-1] = 0.0  # v = L-1: b_{L-1} = W_L^T b_L carries no mask (linear readout)
    return M1, M2, M2 + C


def _exact_mask_recursion(c, law: LayerLaw, P):
    """Mask-correlated M1, M2 of ``K_v`` (module docstring) for weights ``c`` and
    ``P[j] = E[D_l D_{l+j}]`` (``P[0]`` unused). Assumes ``law`` normalised so that ``tau(Y) = 1``."""
    M1, M2, _ = _exact_mask_moments(c, law, P, backward=False)
    return M1, M2


def _mask_correlation(law: LayerLaw, n):
    """``P[j] = E[D_l D_{l+j}]`` for ReLU masks of an AR(1) pre-activation with lag-1 correlation
    ``rho = a / sqrt(tau(Y))``."""
    rho = math.sqrt(float(law.a2) / law.mean)
    j = np.arange(n + 2)
    with np.errstate(under="ignore"):
        corr = np.exp(j * math.log(rho)) if rho > 0 else (j == 0).astype(float)
    return 0.25 + np.arcsin(np.clip(corr, -1, 1)) / (2 * np.pi)


def _uses_exact_masks(family, mode):
    return mode == "exact" and family.phi.has_masks and family.skip != 0.0


# --------------------------------------------------------------------------- BFA
@dataclass(frozen=True, repr=False)
class TheoryBFA(Result):
    """Width-limit BFA of a family: ``cos[i]`` is ``cos(theta_v)`` at ``v = layers[i]``.

    ``cos`` is the angle the network has, ``M1 / sqrt(M2b)``; ``cos_spectrum = M1 / sqrt(M2)``
    is Thm 3.2's spectral quantity (a backward vector independent of ``K_v``). They coincide
    except for ReLU ResNets with the network's own masks (``mode="exact"``, ``v < L-1``).
    ``m1, m2`` are the first two spectral moments of ``K_v`` and ``m2b`` the backward-weighted
    ``E_i[s_i (K_v^2)_ii] / E_i[s_i]``, all up to a common factor (``M_p = m_p scale^p`` in the
    units of ``mean_field``). The sampled counterpart is :class:`rmtalign.SampledBFA`."""

    family: object
    mode: str
    layers: np.ndarray
    cos: np.ndarray
    cos_spectrum: np.ndarray
    m1: np.ndarray
    m2: np.ndarray
    m2b: np.ndarray

    @property
    def angle_deg(self) -> np.ndarray:
        """``theta_v`` in degrees."""
        return angle_deg(self.cos)

    @property
    def angle(self) -> np.ndarray:
        """Deprecated: ``theta_v`` in radians; use :attr:`angle_deg`."""
        warnings.warn("TheoryBFA.angle (radians) is deprecated: use angle_deg", DeprecationWarning,
                      stacklevel=2)
        return np.radians(self.angle_deg)

    def _table(self):
        return {"layer": self.layers, "cos": self.cos, "angle_deg": self.angle_deg,
                "cos_spectrum": self.cos_spectrum, "m1": self.m1, "m2": self.m2, "m2b": self.m2b}


def bfa(family, mode="exact", *, masks=None, inputs=None, input_correlation=0.0,
        gram=None) -> TheoryBFA:
    """Width-limit ``cos(theta_v)`` at ``v = 1 .. L-1``: ``M1 / sqrt(M2b)`` (``.cos``) and the
    spectral ``M1 / sqrt(M2)`` of Thm 3.2 (``.cos_spectrum``).

    ``mode="exact"``: the network's own ReLU masks. For ReLU ResNets the masks of one neuron are
    correlated across depth, both inside ``K_v`` and between ``K_v`` and ``b_v``, and ``.cos`` is

        cos(theta_v) = E_i[s_i K_ii] / sqrt(E_i[s_i (K^2)_ii] E_i[s_i]) = M1 / sqrt(M2 + C_v)

    (module docstring), which is what ``sample_bfa(mode="exact")`` measures as ``m -> inf``;
    ``C_{L-1} = 0`` (linear readout), so the output angle is the spectral one. For MLPs and
    linear networks both are the free model. ``mode="free"``: ReLU masks replaced by free
    Bernoulli(1/2) projections, independent across layers (``sample_bfa(mode="free")``), and
    ``cos = cos_spectrum``. Layers with ``K_v = 0`` (``v = 1`` when ``W_1`` is frozen) get
    ``NaN``. Cost O(L) (O(L log L) for exact masks); ``L = 10^6`` takes well under a second.
    (``masks=`` is the deprecated old name of ``mode=``.)

    A batch: ``inputs=n`` with ``input_correlation=rho`` (Gram ``d ((1 - rho) I + rho J)``,
    ``n`` an int or ``math.inf``), or ``gram=G`` (the ``n x n`` input Gram, ``|x|^2 = d`` as in
    the engine) gives the BFA of one step on the batch (:mod:`rmtalign.theory.batch`) as a
    :class:`~rmtalign.theory.batch.BatchTheoryBFA`; one input is the computation above."""
    check_family(family)
    mode = check_mode(renamed_keyword("masks", masks, "mode", mode, "exact"))
    if inputs is not None or gram is not None or input_correlation != 0.0:
        from .batch import _batch_bfa

        batch = _batch_bfa(family, mode, inputs, input_correlation, gram)
        if batch is not None:
            return batch
    c, law = _weights_normalised(family)
    norm = LayerLaw(law.a2 / rational(law.mean), law.g2 / rational(law.mean), law.p, law.weights)
    if _uses_exact_masks(family, mode):
        if not family.psi.is_identity:  # pragma: no cover - no such family today
            raise NotImplementedError("exact masks with a skip and a ReLU readout: b_{L-1} would "
                                      "carry the mask D_{L-1}; not implemented")
        M1, M2, M2b = _exact_mask_moments(c, norm, _mask_correlation(norm, c.size))
    else:
        t1 = 1.0
        t2 = 1.0 + norm.variance
        M1, M2 = moment_recursion(c, t1, t2)
        M2b = M2
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_spec = np.where(M1 > 0, M1 / np.sqrt(M2), np.nan)
        cos = np.where(M1 > 0, M1 / np.sqrt(M2b), np.nan) if M2b is not M2 else cos_spec
    return TheoryBFA(family, mode, np.arange(1, family.depth), cos, cos_spec, M1, M2, M2b)


# --------------------------------------------------------------------------- moments
def bfk_moments(family, layer, order=4, exact=False, mode="free", *, masks=None):
    """Spectral moments ``M_1 .. M_order`` of ``K_layer`` (units of ``mean_field``'s ``c_v``).

    Free model: ``law(K_v) = c_v + law(K_{v-1}) ⊠ law(A^T A)`` on moment sequences through
    S-transforms. ``exact=True`` returns ``fractions.Fraction`` computed in exact arithmetic from
    the rationalised inputs (see :func:`rmtalign.theory.layer.rational`). ``mode="exact"`` is
    available for ``order <= 2`` (mask-correlated recursion for ReLU ResNets)."""
    check_family(family)
    v = check_layer("layer", layer, 1, family.depth - 1, family.depth)
    order = check_int("order", order, 1)
    mode = check_mode(renamed_keyword("masks", masks, "mode", mode, "free"))
    c_float = mean_field(family).kernel_weights
    if _uses_exact_masks(family, mode):
        if order > 2 or exact:
            raise ValueError("mode='exact' gives only M1, M2 (order <= 2, exact=False) for ReLU "
                             "ResNets; higher moments are available in the free model (mode='free')")
        law = layer_law(family)
        t1 = law.mean
        norm = LayerLaw(law.a2 / rational(t1), law.g2 / rational(t1), law.p, law.weights)
        cn = np.array([c_float[i] / t1 ** (i + 1) for i in range(v)])
        M1, M2 = _exact_mask_recursion(cn, norm, _mask_correlation(norm, v))
        return [M1[-1] * t1**v, M2[-1] * t1 ** (2 * v)][:order]
    law = layer_law(family)
    ym = law.moments(order, exact=exact)
    conv = rational if exact else float
    cs = [conv(float(x)) for x in c_float[:v]]
    m = [cs[0] ** k for k in range(1, order + 1)]
    for i in range(1, v):
        m = shift_moments(free_multiplicative_moments(m, ym), cs[i])
    return m


def jacobian_moments(family, start, stop, order=4, exact=False):
    """Moments of the squared singular values of ``J = df_stop / df_start`` (free model):
    ``law(J J^T) = law(A^T A)^{⊠ (stop - start)}``. Exact in the width limit for MLPs and linear
    networks; for ReLU ResNets with the network's own masks it is the free-mask approximation."""
    check_family(family)
    L = family.depth
    start = check_layer("start", start, 1, L - 1, L)
    stop = check_layer("stop", stop, start, L - 1, L)
    order = check_int("order", order, 1)
    law = layer_law(family)
    ym = law.moments(order, exact=exact)
    one = rational(1) if exact else 1.0
    m = [one] * order
    for _ in range(stop - start):
        m = free_multiplicative_moments(m, ym)
    return m


# --------------------------------------------------------------------------- densities
@dataclass(frozen=True, repr=False)
class Density(Result):
    """A limiting spectral law: density on ``x`` (absolutely continuous part), atoms
    ``{location: mass}``, and an interval ``support`` containing the support; ``residual`` is the
    largest Newton residual of the solver."""

    x: np.ndarray
    density: np.ndarray
    atoms: dict
    support: tuple
    residual: float

    def cdf(self) -> np.ndarray:
        """Cumulative mass on ``x`` (sorted): atoms plus the density integrated by the trapezoidal
        rule in ``log x`` on cells with ``x > 0`` (exact for a density ``~ 1/x``, and second-order
        in the log-spacing for power laws ``x^a``, so geometric grids resolve singularities at 0),
        in ``x`` otherwise. Mass below ``x[0]`` is not counted."""
        x = np.asarray(self.x, float)
        d = np.asarray(self.density, float)
        x0, x1, d0, d1 = x[:-1], x[1:], d[:-1], d[1:]
        lin = 0.5 * (d0 + d1) * (x1 - x0)
        pos = x0 > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            lg = 0.5 * (x0 * d0 + x1 * d1) * np.log(np.where(pos, x1 / np.where(pos, x0, 1.0), 1.0))
        out = np.concatenate([[0.0], np.cumsum(np.where(pos, lg, lin))])
        for loc, mass in self.atoms.items():
            out = out + mass * (x >= loc)
        return out

    def kolmogorov_distance(self, samples, continuous=False) -> float:
        """``max |F_empirical - cdf|`` over the grid ``x`` for sampled eigenvalues.

        ``continuous=True`` compares the absolutely continuous parts only: the atom at 0 and the
        exact zeros among ``samples`` are removed and both sides renormalised (an atom's sampled
        mass, e.g. a ReLU mask's rank, has fluctuations of its own)."""
        s = np.sort(np.ravel(np.asarray(samples, dtype=float)))
        x, cdf = np.asarray(self.x, float), self.cdf()
        if continuous:
            atom = self.atoms.get(0.0, 0.0)
            keep = x > 0
            x, cdf = x[keep], (cdf[keep] - atom) / (1.0 - atom)
            s = s[s > 0]
        emp = np.searchsorted(s, x, side="right") / s.size
        return float(np.max(np.abs(emp - cdf)))

    def _table(self):
        return {"x": self.x, "density": self.density, "cdf": self.cdf()}


def _density(cs, law: LayerLaw, x, eps, atom_candidates):
    x, dens, atoms, support, resid = chain_density(cs, law, x, eps, atom_candidates)
    return Density(x, dens, atoms, support, resid)


def bfk_density(family, layer, x=None, eps=None) -> Density:
    """Limiting spectral density of ``K_layer`` (free model), in the units of ``mean_field``'s
    ``c_v`` (normalise by ``M1`` from :func:`bfk_moments` if you want a scale-free law).

    Computed by inverse multiplicative subordination through the chain
    ``K_v = c_v + K_{v-1} ⊠ Y`` (one Newton solve per point, O(v) a step, about two steps a
    point; see :mod:`rmtalign.theory._chain`), evaluated at ``x + i eps``. ``support`` is
    ``(c_v, edge)`` with the exact upper edge. Default ``x``: 801 points on ``(c_v, 1.1 edge]``,
    half uniform, half geometric in ``x - c_v`` (deep layers are heavy-tailed); default ``eps``:
    ``1e-3`` times the local grid spacing, i.e. the density itself rather than a smoothed one
    (pass a scalar ``eps`` for a Poisson-smoothed density). Atoms are reported separately (ReLU
    MLPs have an atom of mass 1/2 at ``c_v``: ``W D K D W^T`` has rank ``m/2``) and their
    Poisson kernels removed from ``density``; ``residual`` is the largest Newton residual
    ``|log(zeta_v w)|``. Cost O(v len(x))."""
    check_family(family)
    v = check_layer("layer", layer, 1, family.depth - 1, family.depth)
    c = [float(t) for t in mean_field(family).kernel_weights[:v]]
    first = next((i for i, t in enumerate(c) if t > 0), None)
    if first is None:
        raise ValueError(f"K_{v} = 0 (no trained layer up to {v}): its law is delta_0")
    cs = c[first:]
    law = layer_law(family)
    if len(cs) == 1:
        return Density(np.asarray(x if x is not None else [cs[0]], float), np.zeros(1 if x is None else len(x)),
                       {cs[0]: 1.0}, (cs[0], cs[0]), 0.0)
    return _density(cs, law, x, eps, atom_candidates=[cs[-1]])


def jacobian_density(family, start, stop, x=None, eps=None) -> Density:
    """Limiting density of the squared singular values of ``df_stop/df_start`` (free model):
    ``law(A^T A)^{⊠ (stop-start)}`` via the same subordination chain (bottom law ``delta_1``,
    ``c_k = 0``); conventions as in :func:`bfk_density`."""
    check_family(family)
    L = family.depth
    start = check_layer("start", start, 1, L - 1, L)
    stop = check_layer("stop", stop, start + 1, L - 1, L)
    law = layer_law(family)
    single = law.law()
    if isinstance(single, Atoms) and len(single.values) == 1:
        # A^T A = y I in the limit (orthogonal linear layers, or no branch): J^T J = y^n I exactly.
        y = float(single.values[0]) ** (stop - start)
        xs = np.asarray([y] if x is None else x, float)
        return Density(xs, np.zeros(xs.shape), {y: 1.0}, (y, y), 0.0)
    cs = [1.0] + [0.0] * (stop - start)
    cand = [0.0] if (family.phi.has_masks and family.skip == 0.0) else []
    return _density(cs, law, x, eps, atom_candidates=cand)
