"""A small free-probability core: moment sequences, free cumulants, S-transforms, free
convolutions (exact on moment sequences, numerical on Cauchy transforms by subordination) and
density recovery.

Conventions (Nica & Speicher, *Lectures on the Combinatorics of Free Probability*; Mingo &
Speicher, *Free Probability and Random Matrices*; Belinschi & Bercovici 2007):

* A law ``mu`` is given by its moment sequence ``m = [m_1, m_2, ..., m_n]`` (``m_0 = 1`` implicit).
  Functions accept lists of ``fractions.Fraction`` (exact arithmetic) or of floats.
* Moment series ``M(z) = 1 + sum_n m_n z^n``; free cumulants ``kappa_n`` with
  ``C(w) = 1 + sum_n kappa_n w^n`` satisfy ``M(z) = C(z M(z))`` (moment-cumulant formula,
  sum over non-crossing partitions). ``mu ⊞ nu`` adds free cumulants.
* ``psi(z) = M(z) - 1``, ``chi = psi^{<-1>}``, S-transform ``S(z) = chi(z) (1 + z) / z``
  (needs ``m_1 != 0``). ``S_{mu ⊠ nu} = S_mu S_nu`` (Voiculescu).
* Cauchy transform ``G(z) = ∫ dmu(t) / (z - t)``, density ``-Im G(x + i0) / pi``,
  ``F = 1/G``; for laws on ``[0, ∞)``: ``psi(z) = G(1/z)/z - 1`` and
  ``eta(z) = psi / (1 + psi) = 1 - z / G(1/z)``.
* Subordination: ``G_{mu ⊞ nu}(z) = G_mu(w1)`` where ``w1`` is the attracting fixed point of
  ``w -> z + h_nu(z + h_mu(w))``, ``h = F - id``; ``eta_{mu ⊠ nu}(z) = eta_mu(w1)`` where ``w1``
  is the fixed point of ``w -> z h_nu(z h_mu(w))``, ``h(w) = eta(w)/w``.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = [
    "moments_to_free_cumulants",
    "free_cumulants_to_moments",
    "s_transform",
    "from_s_transform",
    "free_additive_moments",
    "free_multiplicative_moments",
    "shift_moments",
    "scale_moments",
    "symmetrize_moments",
    "marchenko_pastur_moments",
    "fuss_catalan_moments",
    "bernoulli_moments",
    "semicircle_moments",
    "marchenko_pastur_density",
    "fuss_catalan_density",
    "Law",
    "Atoms",
    "FreePoisson",
    "Semicircle",
    "FreeProduct",
    "FreeSum",
    "SymmetricSqrt",
    "Square",
    "Shift",
    "density_from_cauchy",
]


# --------------------------------------------------------------------------- power series
def _zero(x):
    return x * 0


def _one(x):
    return x * 0 + 1


def _mul(a, b, n):
    """Truncated product of series ``a[0..n]``, ``b[0..n]`` (lists, index = power)."""
    z = _zero(a[0])
    out = [z] * (n + 1)
    for i, ai in enumerate(a[: n + 1]):
        if ai == 0:
            continue
        for j in range(0, n + 1 - i):
            out[i + j] = out[i + j] + ai * b[j]
    return out


def _inverse(f, n):
    """Compositional inverse ``g`` of ``f`` (``f[0] = 0``, ``f[1] != 0``), up to order ``n``."""
    if f[1] == 0:
        raise ValueError("series has zero linear coefficient: no compositional inverse "
                         "(the law has mean 0; the S-transform needs m_1 != 0)")
    z = _zero(f[1])
    g = [z] * (n + 1)
    g[1] = _one(f[1]) / f[1]
    for k in range(2, n + 1):
        # coefficient of t^k in f(g(t)) with g known up to k-1 (g_k enters only through f_1 g_k)
        gp = list(g)
        power = list(gp)  # g^1
        total = z
        for j in range(2, k + 1):
            power = _mul(power, gp, k)
            total = total + f[j] * power[k]
        g[k] = -total / f[1]
    return g


def _as_series(moments):
    m = list(moments)
    if not m:
        raise ValueError("moment sequence must be non-empty")
    return [_one(m[0])] + m


def moments_to_free_cumulants(moments):
    """Free cumulants ``kappa_1..kappa_n`` from moments ``m_1..m_n`` (exact for Fractions).

    Uses ``m_n = sum_{s=1}^n kappa_s [z^{n-s}] M(z)^s`` (equivalent to the sum over
    non-crossing partitions)."""
    M = _as_series(moments)
    n = len(M) - 1
    z = _zero(M[1])
    kappa = [z] * (n + 1)
    powers = [None, M]  # M^s truncated at n
    for s in range(2, n + 1):
        powers.append(_mul(powers[-1], M, n))
    for k in range(1, n + 1):
        acc = M[k]
        for s in range(1, k):
            acc = acc - kappa[s] * powers[s][k - s]
        kappa[k] = acc
    return kappa[1:]


def free_cumulants_to_moments(cumulants):
    """Moments ``m_1..m_n`` from free cumulants ``kappa_1..kappa_n``."""
    kappa = [None] + list(cumulants)
    n = len(kappa) - 1
    if n < 1:
        raise ValueError("cumulant sequence must be non-empty")
    one = _one(kappa[1])
    M = [one] + [_zero(kappa[1])] * n
    for k in range(1, n + 1):
        # [z^{k-s}] M^s only uses M_0..M_{k-1}
        acc = _zero(one)
        power = [one] + [_zero(one)] * n  # M^0
        for s in range(1, k + 1):
            power = _mul(power, M, k)
            acc = acc + kappa[s] * power[k - s]
        M[k] = acc
    return M[1:]


def s_transform(moments):
    """Coefficients ``[s_0, .., s_{n-1}]`` of the S-transform ``S(z) = sum_k s_k z^k``."""
    psi = _as_series(moments)
    psi[0] = _zero(psi[0])
    n = len(psi) - 1
    chi = _inverse(psi, n)  # chi[1..n]
    # chi(z)/z = sum chi[k+1] z^k (k = 0..n-1); times (1 + z)
    q = [chi[k + 1] for k in range(n)]
    return [q[k] + (q[k - 1] if k else _zero(q[0])) for k in range(n)]


def from_s_transform(s):
    """Moments ``m_1..m_n`` from S-transform coefficients ``s_0..s_{n-1}``."""
    n = len(s)
    if s[0] == 0:
        raise ValueError("S(0) = 1/m_1 must be non-zero")
    z = _zero(s[0])
    # chi(z) = z S(z) / (1 + z) = z S(z) (1 - z + z^2 - ...)
    inv1pz = [(-1) ** k * _one(s[0]) for k in range(n)]
    q = _mul(list(s), inv1pz, n - 1)
    chi = [z] + q[:n]
    psi = _inverse(chi, n)
    return psi[1:]


def _check_moments(name, m):
    m = list(m)
    if len(m) == 0:
        raise ValueError(f"{name} must contain at least m_1")
    return m


def free_additive_moments(ma, mb):
    """Moments of ``mu ⊞ nu`` (free cumulants add). Truncated to the shorter input."""
    ma, mb = _check_moments("ma", ma), _check_moments("mb", mb)
    n = min(len(ma), len(mb))
    ka = moments_to_free_cumulants(ma[:n])
    kb = moments_to_free_cumulants(mb[:n])
    return free_cumulants_to_moments([x + y for x, y in zip(ka, kb)])


def free_multiplicative_moments(ma, mb):
    """Moments of ``mu ⊠ nu`` for laws on ``[0, ∞)`` via ``S_{mu⊠nu} = S_mu S_nu``.

    If either law is ``delta_0`` (``m_1 = 0``) the product is ``delta_0``."""
    ma, mb = _check_moments("ma", ma), _check_moments("mb", mb)
    n = min(len(ma), len(mb))
    ma, mb = ma[:n], mb[:n]
    if ma[0] == 0 or mb[0] == 0:
        return [_zero(ma[0] + mb[0])] * n
    sa, sb = s_transform(ma), s_transform(mb)
    return from_s_transform(_mul(sa, sb, n - 1))


def shift_moments(m, c):
    """Moments of ``X + c`` from those of ``X`` (binomial expansion)."""
    M = _as_series(m)
    n = len(M) - 1
    out = []
    for k in range(1, n + 1):
        acc = _zero(M[1] + c)
        for j in range(k + 1):
            acc = acc + math.comb(k, j) * M[j] * c ** (k - j)
        out.append(acc)
    return out


def scale_moments(m, c):
    """Moments of ``c X``."""
    return [mk * c ** (k + 1) for k, mk in enumerate(m)]


def symmetrize_moments(m):
    """Moments ``z_1..z_{2n}`` of the symmetric law of ``±sqrt(X)`` from moments of ``X >= 0``."""
    z = _zero(m[0])
    out = []
    for mk in m:
        out += [z, mk]
    return out


# --------------------------------------------------------------------------- textbook laws
def marchenko_pastur_moments(n, ratio=1, scale=1):
    """Moments of Marchenko–Pastur (free Poisson) with rate ``ratio`` and jump ``scale``:
    ``m_k = scale^k sum_{j=1}^k N(k, j) ratio^j`` with Narayana numbers
    ``N(k, j) = C(k, j) C(k, j-1) / k``. Exact for rational arguments.

    It is the law with free cumulants ``kappa_k = ratio scale^k``; ``ratio = 1, scale = 1`` is the
    limit law of ``W^T W`` for a square ``W`` with iid entries of variance ``1/m``.
"""
    out = []
    for k in range(1, n + 1):
        acc = 0
        for j in range(1, k + 1):
            acc += Fraction(math.comb(k, j) * math.comb(k, j - 1), k) * _pow(ratio, j)
        out.append(acc * _pow(scale, k))
    return out


def _pow(x, k):
    return x**k


def fuss_catalan_moments(n, s):
    """Moments of the Fuss–Catalan law ``MP^{⊠ s}``: ``m_k = binom((s+1)k, k) / (s k + 1)``."""
    return [Fraction(math.comb((s + 1) * k, k), s * k + 1) for k in range(1, n + 1)]


def bernoulli_moments(n, p):
    """Moments of ``(1-p) delta_0 + p delta_1`` (a projection of trace ``p``)."""
    return [p for _ in range(n)]


def semicircle_moments(n, variance=1):
    """Moments of the centred semicircle: ``m_{2k} = Catalan_k variance^k``, odd ones 0."""
    out = []
    for k in range(1, n + 1):
        if k % 2:
            out.append(0 * variance)
        else:
            j = k // 2
            out.append(Fraction(math.comb(2 * j, j), j + 1) * _pow(variance, j))
    return out


def marchenko_pastur_density(x, ratio=1.0, scale=1.0):
    """Absolutely continuous part of the free Poisson law (rate ``ratio``, jump ``scale``):
    ``sqrt((x_+ - x)(x - x_-)) / (2 pi scale x)`` on ``[x_-, x_+]``,
    ``x_± = scale (1 ± sqrt(ratio))^2``; an atom ``1 - ratio`` at 0 when ``ratio < 1``."""
    x = np.asarray(x, dtype=float)
    lo, hi = scale * (1 - math.sqrt(ratio)) ** 2, scale * (1 + math.sqrt(ratio)) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.sqrt(np.clip((hi - x) * (x - lo), 0, None)) / (2 * np.pi * scale * x)
    return np.where((x > lo) & (x < hi), d, 0.0)


def fuss_catalan_density(s, num=2001):
    """Fuss–Catalan density (law of ``MP^{⊠ s}``) by the parametrisation of Haagerup & Möller
    (2012) / Neuschel: for ``phi in (0, pi/(s+1))``,
    ``x(phi) = sin((s+1)phi)^(s+1) / (sin(phi) sin(s phi)^s)`` and
    ``density = sin(phi)^2 sin(s phi)^(s-1) / (pi sin((s+1)phi)^s)``.
    Returns ``(x, density)`` sorted by ``x`` on ``(0, (s+1)^(s+1)/s^s)``."""
    phi = np.linspace(0, np.pi / (s + 1), num + 2)[1:-1]
    x = np.sin((s + 1) * phi) ** (s + 1) / (np.sin(phi) * np.sin(s * phi) ** s)
    d = np.sin(phi) ** 2 * np.sin(s * phi) ** (s - 1) / (np.pi * np.sin((s + 1) * phi) ** s)
    order = np.argsort(x)
    return x[order], d[order]


# --------------------------------------------------------------------------- analytic transforms
def _c(z):
    return np.asarray(z, dtype=complex)


class Law:
    """A probability law on the real line known through its Cauchy transform.

    Subclasses implement :meth:`cauchy` (vectorised, any ``z`` off the support) and
    :meth:`moments`; ``support`` is an interval containing the support."""

    support: tuple[float, float]

    def cauchy(self, z):  # pragma: no cover - abstract
        raise NotImplementedError

    def moments(self, n, exact=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def eta(self, z):
        """``eta(z) = 1 - z / G(1/z)`` (laws on ``[0, ∞)``); ``eta(0) = 0``."""
        z = _c(z)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = 1.0 - z / self.cauchy(1.0 / z)
        return np.where(z == 0, 0.0, out)

    def density(self, x, eps=1e-9):
        """``-Im G(x + i eps) / pi``."""
        return density_from_cauchy(self.cauchy, x, eps)


def density_from_cauchy(cauchy, x, eps=1e-9):
    """Density recovered from a Cauchy transform by Stieltjes inversion at height ``eps``."""
    x = np.asarray(x, dtype=float)
    return np.maximum(-np.imag(cauchy(x + 1j * eps)) / np.pi, 0.0)


def _nevanlinna_pick(z, r1, r2):
    """Choose, pointwise, the root with ``Im G * Im z <= 0`` (ties: the one ~ 1/z)."""
    s = np.sign(np.imag(z))
    bad1 = np.imag(r1) * s > np.imag(r2) * s
    pick = np.where(bad1, r2, r1)
    # on the real axis (outside the support) take the root closer to 1/z
    real = s == 0
    if np.any(real):
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / z
        closer = np.abs(r1 - inv) <= np.abs(r2 - inv)
        pick = np.where(real, np.where(closer, r1, r2), pick)
    return pick


class Atoms(Law):
    """Finite sum of point masses ``sum_i w_i delta_{x_i}``."""

    def __init__(self, values, weights):
        self.values = [v for v in values]
        self.weights = [w for w in weights]
        if len(self.values) != len(self.weights) or not self.values:
            raise ValueError("values and weights must be non-empty and of equal length")
        if abs(float(sum(self.weights)) - 1.0) > 1e-12 or min(map(float, self.weights)) < 0:
            raise ValueError(f"weights must be >= 0 and sum to 1, got {self.weights!r}")
        v = [float(x) for x in self.values]
        self.support = (min(v), max(v))

    def cauchy(self, z):
        z = _c(z)
        out = np.zeros_like(z)
        for x, w in zip(self.values, self.weights):
            out = out + float(w) / (z - float(x))
        return out

    def moments(self, n, exact=False):
        vals = self.values if exact else [float(x) for x in self.values]
        wts = self.weights if exact else [float(x) for x in self.weights]
        return [sum(w * x**k for x, w in zip(vals, wts)) for k in range(1, n + 1)]


class FreePoisson(Law):
    """Free Poisson (Marchenko–Pastur) law with rate ``ratio`` and jump ``scale``: free cumulants
    ``kappa_k = ratio scale^k``. ``ratio = 1/2`` is the law of ``D W^T W D`` (``D`` a
    projection of trace 1/2, ``W`` Gaussian with ``τ(W^T W) = scale``). S-transform
    ``1 / (scale (ratio + z))``."""

    def __init__(self, ratio=1.0, scale=1.0):
        if not ratio > 0 or not scale > 0:
            raise ValueError(f"ratio and scale must be > 0, got {ratio!r}, {scale!r}")
        self.ratio, self.scale = ratio, scale
        lam, s = float(ratio), float(scale)
        self.support = (0.0 if lam < 1 else s * (1 - math.sqrt(lam)) ** 2, s * (1 + math.sqrt(lam)) ** 2)

    def cauchy(self, z):
        z = _c(z) / float(self.scale)
        lam = float(self.ratio)
        # z G^2 + (lam - 1 - z) G + 1 = 0
        b = lam - 1 - z
        disc = np.sqrt(b * b - 4 * z)
        with np.errstate(divide="ignore", invalid="ignore"):
            r1 = (-b - disc) / (2 * z)
            r2 = (-b + disc) / (2 * z)
        return _nevanlinna_pick(z, r1, r2) / float(self.scale)

    def moments(self, n, exact=False):
        if exact:
            return marchenko_pastur_moments(n, self.ratio, self.scale)
        return [float(x) for x in marchenko_pastur_moments(n, Fraction(self.ratio), Fraction(self.scale))]


class Semicircle(Law):
    """Centred semicircle of the given variance."""

    def __init__(self, variance=1.0):
        self.variance = variance
        r = 2 * math.sqrt(float(variance))
        self.support = (-r, r)

    def cauchy(self, z):
        z = _c(z)
        v = float(self.variance)
        disc = np.sqrt(z * z - 4 * v)
        r1, r2 = (z - disc) / (2 * v), (z + disc) / (2 * v)
        return _nevanlinna_pick(z, r1, r2)

    def moments(self, n, exact=False):
        m = semicircle_moments(n, self.variance)
        return m if exact else [float(x) for x in m]


def _fixed_point(update, w0, tol=1e-13, maxiter=20000):
    w = w0
    for it in range(maxiter):
        w_new = update(w)
        err = np.max(np.abs(w_new - w) / (1 + np.abs(w_new))) if np.size(w_new) else 0.0
        w = w_new
        if err < tol:
            return w, it + 1, err
    return w, maxiter, err


class FreeSum(Law):
    """``mu ⊞ nu`` through additive subordination (Belinschi–Bercovici)."""

    def __init__(self, mu, nu):
        self.mu, self.nu = mu, nu
        self.support = (mu.support[0] + nu.support[0], mu.support[1] + nu.support[1])

    def cauchy(self, z):
        z = _c(z)
        flip = np.imag(z) < 0
        zz = np.where(flip, np.conj(z), z) + 0j
        zz = np.where(np.imag(zz) == 0, zz + 1e-300j, zz)
        h_mu = lambda w: 1.0 / self.mu.cauchy(w) - w  # noqa: E731
        h_nu = lambda w: 1.0 / self.nu.cauchy(w) - w  # noqa: E731
        w, _, _ = _fixed_point(lambda w: zz + h_nu(zz + h_mu(w)), zz + 1j)
        g = self.mu.cauchy(w)
        return np.where(flip, np.conj(g), g)

    def moments(self, n, exact=False):
        return free_additive_moments(self.mu.moments(n, exact), self.nu.moments(n, exact))


class FreeProduct(Law):
    """``mu ⊠ nu`` for laws on ``[0, ∞)`` through multiplicative subordination."""

    def __init__(self, mu, nu):
        self.mu, self.nu = mu, nu
        self.support = (0.0, mu.support[1] * nu.support[1])

    def eta(self, z):
        z = _c(z)
        flip = np.imag(z) < 0
        zz = np.where(flip, np.conj(z), z) + 0j
        h_mu = lambda w: self.mu.eta(w) / w  # noqa: E731
        h_nu = lambda w: self.nu.eta(w) / w  # noqa: E731
        w, _, _ = _fixed_point(lambda w: zz * h_nu(zz * h_mu(w)), zz)
        e = self.mu.eta(w)
        return np.where(flip, np.conj(e), e)

    def cauchy(self, z):
        z = _c(z)
        zeta = 1.0 / z
        return zeta / (1.0 - self.eta(zeta))

    def moments(self, n, exact=False):
        return free_multiplicative_moments(self.mu.moments(n, exact), self.nu.moments(n, exact))


class Shift(Law):
    """Law of ``X + c``."""

    def __init__(self, mu, c):
        self.mu, self.c = mu, c
        self.support = (mu.support[0] + float(c), mu.support[1] + float(c))

    def cauchy(self, z):
        return self.mu.cauchy(_c(z) - float(self.c))

    def moments(self, n, exact=False):
        c = self.c if exact else float(self.c)
        return shift_moments(self.mu.moments(n, exact), c)


class SymmetricSqrt(Law):
    """Symmetric law of ``±sqrt(X)`` for ``X >= 0``: ``G(z) = z G_X(z^2)``."""

    def __init__(self, mu):
        self.mu = mu
        r = math.sqrt(max(mu.support[1], 0.0))
        self.support = (-r, r)

    def cauchy(self, z):
        z = _c(z)
        return z * self.mu.cauchy(z * z)

    def moments(self, n, exact=False):
        return symmetrize_moments(self.mu.moments((n + 1) // 2, exact))[:n]


class Square(Law):
    """Law of ``X^2`` for a symmetric ``X``: ``G(z) = G_X(sqrt z)/sqrt z`` (branch Im sqrt > 0)."""

    def __init__(self, mu):
        self.mu = mu
        self.support = (0.0, max(abs(mu.support[0]), abs(mu.support[1])) ** 2)

    def cauchy(self, z):
        z = _c(z)
        flip = np.imag(z) < 0
        zz = np.where(flip, np.conj(z), z)
        r = np.sqrt(zz)
        r = np.where(np.imag(r) < 0, -r, r)
        neg_axis = (np.imag(r) == 0) & (np.real(zz) < 0)
        r = np.where(neg_axis, 1j * np.sqrt(np.abs(np.real(zz))), r)
        g = self.mu.cauchy(r) / r
        return np.where(flip, np.conj(g), g)

    def moments(self, n, exact=False):
        return self.mu.moments(2 * n, exact)[1::2]
