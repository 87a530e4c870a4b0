"""rmtalign/theory/free.py: the free-probability core against textbook laws, exactly (rational
moments, cumulants, S-transforms) and in floating point (subordination densities, Cauchy
transforms)."""
import math
from fractions import Fraction as Fr

import numpy as np

from rmtalign.theory import free as fp


def test_marchenko_pastur_cumulants_are_all_one():
    assert fp.moments_to_free_cumulants(fp.marchenko_pastur_moments(8)) == [Fr(1)] * 8
    assert fp.free_cumulants_to_moments([Fr(1)] * 8) == fp.marchenko_pastur_moments(8)


def test_fuss_catalan_from_s_transforms():
    mp = fp.marchenko_pastur_moments(7)
    m = mp
    for s in range(2, 5):
        m = fp.free_multiplicative_moments(m, mp)
        assert m == fp.fuss_catalan_moments(7, s)


def test_bernoulli_times_mp_is_free_poisson():
    half = Fr(1, 2)
    m = fp.free_multiplicative_moments(fp.marchenko_pastur_moments(7), fp.bernoulli_moments(7, half))
    assert m == fp.marchenko_pastur_moments(7, half)
    # free Poisson of rate 1/2 has free cumulants 1/2
    assert fp.moments_to_free_cumulants(m) == [half] * 7


def test_bernoulli_sum_is_arcsine():
    half = Fr(1, 2)
    b = fp.bernoulli_moments(8, half)
    m = fp.free_additive_moments(b, b)  # arcsine on [0, 2]: binom(2k, k) / 2^k
    assert m == [Fr(math.comb(2 * k, k), 2**k) for k in range(1, 9)]


def test_projection_products():
    # two free projections of trace 1/2: tau((PQ)^k) = binom(2k,k)/4^k (arcsine on [0,1])
    half = Fr(1, 2)
    b = fp.bernoulli_moments(6, half)
    m = fp.free_multiplicative_moments(b, b)
    assert m == [Fr(math.comb(2 * k, k), 2 * 4**k) for k in range(1, 7)]


def test_s_transform_roundtrip_and_shift():
    m = [Fr(3, 2), Fr(7, 3), Fr(5), Fr(11), Fr(27)]
    assert fp.from_s_transform(fp.s_transform(m)) == m
    vals, wts = [Fr(1), Fr(3), Fr(7, 2)], [Fr(1, 6), Fr(1, 2), Fr(1, 3)]
    mom = lambda s: [sum(w * (x + s) ** k for x, w in zip(vals, wts)) for k in range(1, 6)]  # noqa: E731
    assert fp.shift_moments(mom(0), Fr(2, 3)) == mom(Fr(2, 3))


def test_float_and_exact_agree():
    mf = fp.free_multiplicative_moments([1.0, 2.0, 5.0, 14.0], [0.5, 0.5, 0.5, 0.5])
    me = fp.free_multiplicative_moments(fp.marchenko_pastur_moments(4), fp.bernoulli_moments(4, Fr(1, 2)))
    assert np.allclose(mf, [float(x) for x in me], rtol=1e-13)  # float recursions of 4 terms: round-off


def test_subordination_density_matches_fuss_catalan():
    x, d = fp.fuss_catalan_density(2, 4001)
    # mass: rho ~ x^(-2/3) at 0, so the trapezoid's error is set by the first cells, of the order
    # of the mass below x[0], 3 x[0] rho(x[0]) = 7.5e-4 (measured -9.2e-5, the trapezoid's
    # overshoot on the first cells compensating part of it)
    assert 3 * x[0] * d[0] < 1e-3
    assert abs(np.trapezoid(d, x) - 1) < 1e-3
    # first moment: x rho is integrable at 0; the bulk's O(h^2) error, h_max^2 / 12 = 7e-7
    # (measured 9.2e-8)
    assert abs(np.trapezoid(d * x, x) - 1) < np.max(np.diff(x)) ** 2 / 12
    law = fp.FreeProduct(fp.FreePoisson(), fp.FreePoisson())
    xs = np.linspace(0.05, 6.5, 9)
    # linear interpolation of the 4001-point reference: error h^2 |rho''| / 8, measured 5e-6
    # relative (the solver agrees with a 200001-point reference to 7e-9), x10
    np.testing.assert_allclose(law.density(xs, 1e-9), np.interp(xs, x, d), rtol=5e-5)


def test_free_poisson_density_and_cauchy():
    law = fp.FreePoisson(0.5, 2.0)
    x = np.linspace(0.05, law.support[1], 20001)
    d = law.density(x, 1e-12)
    # the closed-form G loses half its digits at the square-root edges (sqrt of b^2 - 4z -> 0):
    # sqrt(eps) = 1.5e-8 times |G| ~ 1 there (measured 2.3e-8 at most), x10
    np.testing.assert_allclose(d, fp.marchenko_pastur_density(x, 0.5, 2.0), rtol=0, atol=1.5e-7)
    # plus an atom 1/2 at 0. Trapezoid with h = 2.9e-4: each square-root edge c sqrt(t) costs
    # at most ~c h^(3/2) (h^(3/2)/6 on the cell holding it, the curvature of the next ones); c =
    # sqrt(hi - lo) / (2 pi scale edge) = 1.1 (lower edge), 0.03 (upper): 5.5e-6 (measured 4.3e-7)
    h = x[1] - x[0]
    assert abs(np.trapezoid(d, x) - 0.5) < 1.2 * h**1.5
    z = np.array([3 + 1j, -1 + 0.5j, 10 - 2j])
    xx = np.linspace(law.support[0], law.support[1], 200001)
    dd = fp.marchenko_pastur_density(xx, 0.5, 2.0)
    ref = np.array([np.trapezoid(dd / (zz - xx), xx) + 0.5 / zz for zz in z])  # the atom: 0.5/z
    # the reference's trapezoid: the edges' c h^(3/2) / dist(z, edge) with h = 2.9e-5 and
    # dist >= 1.1: 2e-7 (measured 5.9e-9 against adaptive quadrature)
    np.testing.assert_allclose(law.cauchy(z), ref, rtol=0, atol=1e-6)
