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
    assert np.allclose(mf, [float(x) for x in me], rtol=1e-13)


def test_subordination_density_matches_fuss_catalan():
    x, d = fp.fuss_catalan_density(2, 4001)
    assert abs(np.trapezoid(d, x) - 1) < 1e-3
    assert abs(np.trapezoid(d * x, x) - 1) < 1e-6
    law = fp.FreeProduct(fp.FreePoisson(), fp.FreePoisson())
    xs = np.linspace(0.05, 6.5, 9)
    assert np.allclose(law.density(xs, 1e-9), np.interp(xs, x, d), rtol=2e-4)


def test_free_poisson_density_and_cauchy():
    law = fp.FreePoisson(0.5, 2.0)
    x = np.linspace(0.05, law.support[1], 20001)
    d = law.density(x, 1e-12)
    assert np.allclose(d, fp.marchenko_pastur_density(x, 0.5, 2.0), atol=1e-6)
    assert abs(np.trapezoid(d, x) - 0.5) < 2e-3  # plus an atom 1/2 at 0
    z = np.array([3 + 1j, -1 + 0.5j, 10 - 2j])
    sample = np.concatenate([np.zeros(1)])  # atom at 0 weight 1/2 -> G includes 0.5/z
    xx = np.linspace(law.support[0], law.support[1], 200001)
    dd = fp.marchenko_pastur_density(xx, 0.5, 2.0)
    ref = np.array([np.trapezoid(dd / (zz - xx), xx) + 0.5 / zz for zz in z])
    assert np.allclose(law.cauchy(z), ref, atol=1e-4)
    del sample
