"""Law of one layer Jacobian ``A_l = df_l/df_{l-1} = a I + beta W_l D_{l-1}`` in the width limit.

Write ``W_l = s sqrt(m) X`` with ``X`` circular (Gaussian weights) or Haar unitary (orthogonal
weights), ``D = diag(phi'(f))`` a projection of trace ``p`` (``p = 1/2`` for ReLU, after
Hanin & Nica; ``D = I``, ``p = 1`` for linear), and ``g^2 = beta^2 m s^2``. Then

    A = a + T,      T = g X D,

and ``T`` is R-diagonal (a Haar unitary or circular element times a free element), determined by

    T^T T  ~  g^2 D X^T X D  =  FreePoisson(rate p, jump g^2)    (Gaussian: MP ⊠ Bernoulli(p))
    T^T T  ~  g^2 D          =  (1-p) delta_0 + p delta_{g^2}    (orthogonal)

For ``a = 0`` (MLP) ``Y = A^T A = T^T T``. For ``a != 0`` we use that ``a u + T`` (``u`` a free
Haar unitary) has the same singular values as ``a + T`` and that singular values of sums of free
R-diagonal elements add in the symmetrised sense (Haagerup & Larsen 2000):

    sym(sqrt(Y)) = sym(±a) ⊞ sym(|T|),      sym(±a) = (delta_a + delta_{-a}) / 2.

Moments of ``Y`` are then polynomials in ``a^2, g^2, p`` (exact rationals for rational inputs).
Useful closed forms (``q = g^2 p = tau(T^T T)``):

    tau(Y)   = a^2 + q
    Var(Y)   = 2 a^2 q + q^2 / p           (Gaussian)
    Var(Y)   = 2 a^2 q + q^2 (1/p - 1)     (orthogonal)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .._validate import check_family, check_layer
from .free import (Atoms, FreePoisson, FreeSum, Law, Square, SymmetricSqrt,
                   free_additive_moments, marchenko_pastur_moments, symmetrize_moments)

__all__ = ["LayerLaw", "layer_law", "rational"]


def rational(x, max_den=10**9):
    """Exact ``Fraction`` for a float input: the simplest rational with denominator ``<= max_den``
    that lies within 4 ulp of ``x`` (so ``2/m * m -> 2``, ``1 - 0.25 -> 3/4``), else the exact
    binary value of ``x``."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cannot convert non-finite {x!r} to a rational")
    f = Fraction(x).limit_denominator(max_den)
    if abs(float(f) - x) <= 4 * math.ulp(x):
        return f
    return Fraction(x)


@dataclass(frozen=True)
class LayerLaw:
    """Width-limit law of ``A = a + g X D`` (see module docstring).

    ``a2 = a^2``, ``g2 = g^2 = beta^2 m s^2``, ``p = tau(D)``; values are ``Fraction`` so that
    moments can be exact; ``weights`` is ``"gaussian"`` or ``"orthogonal"``."""

    a2: Fraction
    g2: Fraction
    p: Fraction
    weights: str

    # -- moments -----------------------------------------------------------------------------
    def tt_moments(self, n, exact=True):
        """Moments of ``T^T T``."""
        if self.weights == "gaussian":
            m = marchenko_pastur_moments(n, self.p, self.g2)
        else:
            m = [self.p * self.g2**k for k in range(1, n + 1)]
        return m if exact else [float(x) for x in m]

    def moments(self, n, exact=True):
        """Moments ``tau(Y^k)``, ``k = 1..n`` of ``Y = A^T A``."""
        if n < 1:
            raise ValueError(f"order must be >= 1, got {n!r}")
        tt = self.tt_moments(n, exact=True)
        if self.a2 == 0:
            out = tt
        else:
            atoms = symmetrize_moments([self.a2**k for k in range(1, n + 1)])
            z = free_additive_moments(atoms, symmetrize_moments(tt))
            out = z[1::2]
        return out if exact else [float(x) for x in out]

    @property
    def mean(self) -> float:
        return float(self.a2 + self.g2 * self.p)

    @property
    def variance(self) -> float:
        q = self.g2 * self.p
        extra = q * q / self.p if self.weights == "gaussian" else q * q * (1 / self.p - 1)
        return float(2 * self.a2 * q + extra)

    # -- analytic law ------------------------------------------------------------------------
    def tt_law(self) -> Law:
        if self.g2 == 0:
            return Atoms([0.0], [1.0])
        if self.weights == "gaussian":
            return FreePoisson(float(self.p), float(self.g2))
        if self.p == 1:
            return Atoms([float(self.g2)], [1.0])
        return Atoms([0.0, float(self.g2)], [1 - float(self.p), float(self.p)])

    def law(self) -> Law:
        """The law of ``Y = A^T A`` as a :class:`~rmtalign.theory.free.Law` (Cauchy transform)."""
        tt = self.tt_law()
        if self.a2 == 0:
            return tt
        a = math.sqrt(float(self.a2))
        if self.g2 == 0:
            return Atoms([a * a], [1.0])
        return Square(FreeSum(Atoms([a, -a], [0.5, 0.5]), SymmetricSqrt(tt)))

    @property
    def support(self) -> tuple[float, float]:
        """An interval containing the support of ``Y``."""
        hi_t = float(self.g2) * ((1 + math.sqrt(float(self.p))) ** 2 if self.weights == "gaussian" else 1.0)
        a = math.sqrt(float(self.a2))
        lo = 0.0
        if self.weights == "orthogonal" and self.p == 1:
            lo = (a - math.sqrt(hi_t)) ** 2
        return (lo, (a + math.sqrt(hi_t)) ** 2)


def layer_law(family, layer=None) -> LayerLaw:
    """Law of ``A_l^T A_l`` for a hidden layer ``l`` (``2 <= l <= L-1``) of ``family``.

    All hidden layers of the families share one law; ``layer`` is validated if given.
    Rational inputs: ``a^2 = 1 - beta^2`` exactly for the default skip, ``m s^2`` the activation's
    exact ``he_gain`` for the default hidden std, other floats via :func:`rational`; ``p`` is the
    activation's ``mask_probability`` (:mod:`rmtalign.rules`)."""
    check_family(family)
    L = family.depth
    if layer is not None:
        check_layer("layer", layer, 2, L - 1, L)
    p = family.phi.mask_probability
    if family.hidden_std is None:
        gain = family.phi.he_gain
    else:
        gain = rational(family.width * family.hidden_std**2)
    beta = rational(family.branch_scale)
    skip_scale = getattr(family, "skip_scale", None)
    if family.skip == 0.0:
        a2 = Fraction(0)
    elif skip_scale is None:
        a2 = 1 - beta * beta
    else:
        a2 = rational(skip_scale) ** 2
    return LayerLaw(a2=a2, g2=beta * beta * gain, p=p, weights=family.weights)
