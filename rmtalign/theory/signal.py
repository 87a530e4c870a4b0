"""Signal propagation in the width limit: forward and backward squared norms, gradient norms,
learning rates and the BFK weights ``c_l``.

As ``m -> infinity`` the squared norms concentrate (law of large numbers), with the recursions

    F_1 = m s_1^2 |x|^2,          F_l = a^2 F_{l-1} + beta^2 m s_l^2 h F_{l-1}     (l = 2..L-1)
    B_L = |b_L|^2 = 1/k,          B_{L-1} = alpha^2 m s_L^2 h_psi B_L,
    B_{l-1} = a^2 B_l + beta^2 m s_l^2 h B_l                                       (l = L-1..2)

where ``h = E[phi(z)^2]/E[z^2] = E[phi'(z)^2]`` is the activation's ``gain``
(:mod:`rmtalign.rules`: 1/2 for ReLU, 1 for linear). With
``G_l = |phi(f_{l-1})|^2 = h F_{l-1}`` the squared gradient norms are
``Gamma_1 = B_1 |x|^2``, ``Gamma_l = beta^2 B_l G_l``, ``Gamma_L = alpha^2 B_L h_psi F_{L-1}``
(``alpha`` the family's output multiplier), the learning rates follow the family's rule (or its
explicit rates), and the BFK recursion ``K_v = c_v I + A_v K_{v-1} A_v^T`` has weights
``c_l = eta_l beta_l^2 G_l`` (``c_1 = eta_1 |x|^2``; zero for frozen layers).

The same learning rates (:meth:`rmtalign.families.Family.rates`) are applied to measured norms
by the samplers, so the sampled network and its width limit use one definition.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_family
from ..results import Result

__all__ = ["MeanField", "mean_field"]


@dataclass(frozen=True, repr=False)
class MeanField(Result):
    """Width-limit signal propagation of a family: arrays over the weight layers
    ``l = layers = 1..L`` (``forward_sq`` over the features ``1..L-1``)."""

    forward_sq: np.ndarray   # |f_l|^2, l = 1..L-1
    backward_sq: np.ndarray  # |b_l|^2, l = 1..L
    grad_sq: np.ndarray      # |grad_l L|^2, l = 1..L
    lr: np.ndarray           # eta_l, l = 1..L
    kernel_weights: np.ndarray  # c_l, l = 1..L

    @property
    def layers(self) -> np.ndarray:
        return np.arange(1, self.backward_sq.size + 1)

    def _table(self):
        return {"layer": self.layers, "forward_sq": np.append(self.forward_sq, np.nan),
                "backward_sq": self.backward_sq, "grad_sq": self.grad_sq, "lr": self.lr,
                "kernel_weights": self.kernel_weights}


def mean_field(family) -> MeanField:
    """Width-limit squared norms, learning rates and BFK weights of ``family``."""
    check_family(family)
    L, m, d, k = family.depth, family.width, family.in_dim, family.out_dim
    s = family.stds
    a, beta = family.skip, family.branch_scale
    h = float(family.phi.gain)
    h_out = float(family.psi.gain)
    x_sq = float(d)  # both input choices have norm sqrt(d)

    # Same sequential products as the loop F[l-1] = factor_l * F[l-2] (cumprod multiplies in
    # order, so results are bitwise identical), vectorised for very deep networks.
    F = np.empty(L - 1)
    F[0] = m * s[0] ** 2 * x_sq
    F[1:] = a * a + beta * beta * m * s[1 : L - 1] ** 2 * h
    F = np.cumprod(F)

    B = np.empty(L)
    B[L - 1] = 1.0 / k
    B[L - 2] = m * s[L - 1] ** 2 * h_out * B[L - 1]
    if family.output_multiplier != 1.0:  # f_L = alpha W_L psi(f_{L-1}): b_{L-1} scales by alpha
        B[L - 2] *= family.output_multiplier ** 2
    # B_{l-1} = factor_l B_l for l = L-1 .. 2, as a reversed cumprod (same order of products)
    rev = np.empty(L - 1)
    rev[0] = B[L - 2]
    rev[1:] = (a * a + beta * beta * m * s[1 : L - 1] ** 2 * h)[::-1]
    B[: L - 1] = np.cumprod(rev)[::-1]

    # |phi(f_{l-1})|^2 feeding W_l (the input for l = 1, the readout for l = L).
    G = np.empty(L)
    G[0] = x_sq
    G[1:L - 1] = h * F[: L - 2]
    G[L - 1] = h_out * F[L - 2]
    betas = family.branch_scales
    grad_sq = betas**2 * B * G
    eta = family.rates(grad_sq)
    return MeanField(F, B, grad_sq, eta, eta * betas**2 * G)
