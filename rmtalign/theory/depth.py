"""Depth limits of the output BFA for ``beta = c L^-alpha`` and closed forms for MLPs.

Free model (and exact for linear ResNets; ReLU ResNets with independent masks), variance-preserving
skip ``a^2 = 1 - beta^2``, balanced or uniform learning rates, ``W_1`` frozen: with ``n = v - 1``
trained layers up to ``v`` and ``sigma^2 = Var(A^T A / tau(A^T A))``,

    cos(theta_v) = n / sqrt(n^2 + sigma^2 n (n-1)(2n-1) / 6)                          (exact, any L)

(the same formula for MLPs, where ``sigma^2 = 2`` for Gaussian ReLU, 1 for orthogonal ReLU or
Gaussian linear, 0 for orthogonal linear). For ``beta = c L^-alpha``, ``sigma^2 = kappa beta^2 +
O(beta^4)`` with ``kappa = 2 m s^2 p`` (= 2 for He/LeCun init in all four weight/activation cases),
so at depth fraction ``s = v/L``:

    alpha > 1/2:  cos -> 1;      alpha < 1/2:  cos -> 0  (~ sqrt(3 / (kappa c^2 s)) L^(alpha - 1/2));
    alpha = 1/2:  cos -> (1 + kappa c^2 s / 3)^(-1/2).

Exact ReLU masks (ResNet): the masks of a neuron are correlated across depth (AR(1) pre-activation,
``corr = exp(-c^2 Delta / 2)`` over a depth fraction ``Delta``) and at ``alpha = 1/2``

    M2(s) = s^2 + 2 c^2 s^3 / 3 + (4 c^2 / pi) ∫_0^s u^2 Phi(c^2 (s - u)) du,   M1(s) = s,
    Phi(T) = ∫_0^T e^-t arcsin(e^(-t/2)) dt = pi/4 - 2 F(e^(-T/2)),
    F(y) = (y^2/2 - 1/4) arcsin(y) + y sqrt(1 - y^2) / 4,

so the spectral prediction is ``s / sqrt(M2(s))``; for large ``c``, ``~ 1/(c sqrt s)`` (free model:
``sqrt(3/2)/(c sqrt s)``). The network's own BFA at ``s < 1`` is lower, because ``b_v`` carries
the masks of the layers above ``v``: ``cos -> s / sqrt(M2b(s))`` with ``Phi(c^2 (s - u)) +
Phi(c^2 (1 - u))`` in place of ``2 Phi(c^2 (s - u))`` (equal at the output, ``s = 1``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .. import rules
from .._validate import check_choice, check_mode, check_real, renamed_keyword
from ..alignment import angle_deg
from ..results import Result

__all__ = ["DepthLimit", "PhaseDiagram", "depth_limit", "phase_diagram", "mlp_bfa_exact"]


def mlp_bfa_exact(v, variance=2.0, first_trained=2):
    """Closed-form width-limit ``cos(theta_v)`` for constant weights ``c_v`` and ``tau(Y) = 1``:
    ``n / sqrt(n^2 + variance n (n-1)(2n-1)/6)`` with ``n = v - first_trained + 1``
    (``NaN`` where ``n <= 0``). ``variance = Var(A^T A)`` (2 for the He-initialised Gaussian
    ReLU MLP, whose large-``v`` asymptote is ``sqrt(3/2) v^(-1/2)``)."""
    v = np.asarray(v, dtype=float)
    n = v - first_trained + 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = n / np.sqrt(n * n + variance * n * (n - 1) * (2 * n - 1) / 6)
    return np.where(n > 0, out, np.nan)


def _F(y):
    return (y * y / 2 - 0.25) * np.arcsin(y) + y * np.sqrt(np.clip(1 - y * y, 0, None)) / 4


def _Phi(T):
    return np.pi / 4 - 2 * _F(np.exp(-np.asarray(T, float) / 2))


def _exact_mask_m2(c, s, backward=False):
    """``M2(s)`` of the kernel spectrum, or with ``backward=True`` the ``M2b(s)`` that sets the
    network's BFA: ``b_v`` carries the masks of layers ``v..L-1``, so one of the two
    ``Phi(c^2 (s - u))`` becomes ``Phi(c^2 (1 - u))`` (the two agree at ``s = 1``)."""
    from scipy.integrate import quad

    if backward:
        f = lambda u: u * u * (_Phi(c * c * (s - u)) + _Phi(c * c * (1.0 - u)))  # noqa: E731
    else:
        f = lambda u: 2.0 * u * u * _Phi(c * c * (s - u))  # noqa: E731
    extra, _ = quad(f, 0.0, s, limit=200, epsabs=1e-13, epsrel=1e-12)
    return s * s + 2 * c * c * s**3 / 3 + 2 * c * c / np.pi * extra


@dataclass(frozen=True, repr=False)
class DepthLimit(Result):
    """``L -> infinity`` limit of ``cos(theta)`` at depth fraction ``position`` for
    ``beta = c L^-alpha``. ``cos`` is the limit, ``regime`` one of ``"trivial"`` (cos -> 1),
    ``"degenerate"`` (cos -> 0) or ``"critical"``; ``rate`` is the exponent ``r`` with
    ``|cos - limit| ~ L^-r`` (``None`` at criticality); ``formula`` names the closed form."""

    alpha: float
    c: float
    cos: float
    regime: str
    rate: float | None
    formula: str
    cos_spectrum: float | None = None  # M1/sqrt(M2) of the kernel; differs from cos only for
    # exact ReLU masks inside the network (position < 1), where b_v is mask-correlated
    position: float = 1.0

    @property
    def angle_deg(self) -> float:
        """The limiting angle in degrees."""
        return float(angle_deg(self.cos))

    @property
    def angle(self) -> float:
        """Deprecated: the limiting angle in radians; use :attr:`angle_deg`."""
        warnings.warn("DepthLimit.angle (radians) is deprecated: use angle_deg", DeprecationWarning,
                      stacklevel=2)
        return math.radians(self.angle_deg)

    def _table(self):
        return {k: [v] for k, v in self.to_dict().items()} | {"angle_deg": [self.angle_deg]}


def _position(position):
    position = check_real("position", position)
    if not 0 < position <= 1:
        raise ValueError(f"position must be in (0, 1], got {position!r}")
    return position


def depth_limit(alpha, c, activation="relu", weights="gaussian", mode="exact", position=1.0, *,
                masks=None):
    """Limit of the BFA at layer ``v = position * L`` of a variance-preserving ResNet with
    ``beta = c L^-alpha`` (He/LeCun hidden init, ``W_1`` frozen, balanced or uniform LRs).

    Closed forms in the module docstring; the exact-mask ReLU case at ``alpha = 1/2`` uses one
    1-d quadrature of an explicit integrand. (``masks=`` is the deprecated old name of
    ``mode=``.)"""
    alpha = check_real("alpha", alpha, low=0.0, high=1.0)
    c = check_real("c", c, low=0.0, low_open=True)
    position = _position(position)
    phi = rules.activation(activation)
    check_choice("weights", weights, ("gaussian", "orthogonal"))
    mode = check_mode(renamed_keyword("masks", masks, "mode", mode, "exact"))
    kappa = 2.0
    s = position
    if alpha > 0.5:
        return DepthLimit(alpha, c, 1.0, "trivial", 2 * alpha - 1,
                          "1 - cos ~ kappa c^2 s L^(1-2 alpha) / 6", position=s)
    if alpha < 0.5:
        return DepthLimit(alpha, c, 0.0, "degenerate", 0.5 - alpha,
                          "cos ~ C / (c sqrt(s)) L^(alpha - 1/2), C = sqrt(3/2) (free) or 1 (exact ReLU masks)"
                          if alpha > 0 else "cos = Theta(L^-1/2) (fixed beta: MLP-like)", position=s)
    if mode == "exact" and phi.has_masks:
        spectral = s / math.sqrt(_exact_mask_m2(c, s))
        cos = spectral if s == 1.0 else s / math.sqrt(_exact_mask_m2(c, s, backward=True))
        return DepthLimit(alpha, c, cos, "critical", None,
                          "s / sqrt(s^2 + 2c^2 s^3/3 + (2c^2/pi) int_0^s u^2 [Phi(c^2(s-u)) + "
                          "Phi(c^2(1-u))] du)", spectral, position=s)
    cos = 1.0 / math.sqrt(1 + kappa * c * c * s / 3)
    return DepthLimit(alpha, c, cos, "critical", None, "(1 + 2 c^2 s / 3)^(-1/2)", cos, position=s)


@dataclass(frozen=True, repr=False)
class PhaseDiagram(Result):
    """Output BFA ``cos(theta_{L-1})`` of ResNets with ``beta = c L^-alpha``: ``cos`` is
    ``(len(depths), len(alphas))`` (width limit at finite ``L``; NaN where ``beta > 1``) and
    ``limit`` the ``L -> infinity`` value per ``alpha``."""

    alphas: np.ndarray
    depths: np.ndarray
    cos: np.ndarray
    limit: np.ndarray
    c: float
    activation: str
    weights: str
    mode: str

    def _table(self):
        """Rows ``(alpha, depth, cos)``; the limit comes as rows with ``depth = inf``."""
        na = self.alphas.size
        depths = np.append(np.asarray(self.depths, dtype=float), np.inf)
        return {"alpha": np.tile(self.alphas, depths.size), "depth": np.repeat(depths, na),
                "cos": np.concatenate([self.cos.reshape(-1), self.limit])}

    def __getitem__(self, key):
        warnings.warn("phase_diagram returns a PhaseDiagram: use attributes (result.cos), not "
                      "keys", DeprecationWarning, stacklevel=2)
        return getattr(self, key)


def phase_diagram(alphas=None, c=1.0, depths=(10**2, 10**3, 10**4, 10**5), activation="relu",
                  weights="gaussian", mode="exact", *, masks=None) -> PhaseDiagram:
    """Output BFA ``cos(theta_{L-1})`` over a grid of ``alpha`` in ``[0, 1]`` and depths, from
    :func:`rmtalign.theory.bfa` at finite ``L`` (width limit), plus the ``L -> infinity`` limit.
    (``masks=`` is the deprecated old name of ``mode=``.)"""
    from rmtalign.families import ResNet
    from .bfk import bfa

    mode = check_mode(renamed_keyword("masks", masks, "mode", mode, "exact"))
    alphas = np.linspace(0, 1, 21) if alphas is None else np.asarray(alphas, float)
    depths = [int(L) for L in depths]
    cos = np.full((len(depths), alphas.size), np.nan)
    for i, L in enumerate(depths):
        for j, al in enumerate(alphas):
            beta = c * L ** (-al)
            if beta > 1:
                continue
            fam = ResNet(L, 1000, beta, activation=activation, weights=weights)
            cos[i, j] = bfa(fam, mode=mode).cos[-1]
    limit = np.array([depth_limit(al, c, activation, weights, mode).cos for al in alphas])
    return PhaseDiagram(alphas, np.array(depths), cos, limit, float(c), activation, weights, mode)
