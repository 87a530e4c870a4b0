"""Theory engine: textbook free-probability laws to round-off, exact small cases computed
independently, and width-limit predictions against the samplers (fixed seeds, 3-SE tolerances)."""
import math
from fractions import Fraction as Fr

import numpy as np
import pytest

from rmtalign.families import MLP, ResNet
from rmtalign import theory as T
from rmtalign.theory import free as fp
from rmtalign.theory.layer import LayerLaw, layer_law


# ---------------------------------------------------------------- free-probability core
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


# ---------------------------------------------------------------- layer laws
def test_layer_law_closed_forms():
    for w in ("gaussian", "orthogonal"):
        for p in (Fr(1, 2), Fr(1)):
            law = LayerLaw(Fr(3, 4), Fr(1, 4) / p, p, w)
            m = law.moments(2)
            assert m[0] == law.a2 + law.g2 * p
            assert float(m[1] - m[0] ** 2) == pytest.approx(law.variance, rel=1e-15)


def test_orthogonal_linear_layer_is_shifted_arcsine():
    # Y = |a + g U|^2 has eigenvalues a^2 + g^2 + 2 a g cos(theta), theta uniform
    a2, g2 = Fr(9, 16), Fr(1, 4)
    law = LayerLaw(a2, g2, Fr(1), "orthogonal")
    a, g = 0.75, 0.5
    th = np.linspace(0, 2 * np.pi, 200001)[:-1]
    ev = a * a + g * g + 2 * a * g * np.cos(th)
    ref = [np.mean(ev**k) for k in range(1, 7)]
    assert np.allclose([float(x) for x in law.moments(6)], ref, rtol=1e-12)


def test_gaussian_relu_layer_moments_monte_carlo():
    # Y = A^T A, A = a I + beta W D; dense Monte Carlo, tolerance from the standard error
    rng = np.random.default_rng(12345)
    m, beta = 600, 0.6
    a = math.sqrt(1 - beta**2)
    law = layer_law(ResNet(10, m, beta))
    exact = [float(x) for x in law.moments(3)]
    est = []
    for _ in range(6):
        W = rng.standard_normal((m, m)) * math.sqrt(2 / m)
        D = (rng.random(m) < 0.5).astype(float)
        A = a * np.eye(m) + beta * W * D
        Y = A.T @ A
        Y2 = Y @ Y
        est.append([np.trace(Y) / m, np.trace(Y2) / m, np.sum(Y2 * Y) / m])
    est = np.array(est)
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(len(est))
    # finite-m bias is O(1/m); allow 3 SE + 3/m relative
    assert np.all(np.abs(mean - exact) <= 3 * se + 3.0 / m * np.abs(exact))


# ---------------------------------------------------------------- BFA / BFK
@pytest.mark.parametrize("act,weights,var", [("relu", "gaussian", 2), ("relu", "orthogonal", 1),
                                             ("linear", "gaussian", 1), ("linear", "orthogonal", 0)])
def test_mlp_bfa_closed_form(act, weights, var):
    f = MLP(40, 100, activation=act, weights=weights)
    r = T.bfa(f)
    assert np.array_equal(r.layers, np.arange(1, 40))
    assert np.isnan(r.cos[0])
    assert np.allclose(r.cos[1:], T.mlp_bfa_exact(r.layers[1:], var), rtol=1e-13)
    assert np.allclose(T.bfa(f, mode="free").cos[1:], r.cos[1:], rtol=1e-13)


def test_mlp_asymptote_constant():
    r = T.bfa(MLP(10**5, 100))
    v = r.layers[-1]
    assert r.cos[-1] * math.sqrt(v) == pytest.approx(math.sqrt(1.5), rel=1e-4)


def test_exact_mask_recursion_reduces_to_free_with_independent_masks():
    from rmtalign.theory.bfk import _exact_mask_recursion, _weights_normalised
    for w in ("gaussian", "orthogonal"):
        f = ResNet.scaled(50, 100, 1.5, weights=w)
        c, law = _weights_normalised(f)
        P = np.full(c.size + 2, 0.25)
        M1, M2 = _exact_mask_recursion(c, law, P)
        free = T.bfa(f, mode="free")
        assert np.allclose(M1, free.m1, rtol=1e-12) and np.allclose(M2, free.m2, rtol=1e-12)


def test_bfk_moments_exact_small_case():
    # MLP K_3 = c_3 + c_2 Y with Y = 2 * FreePoisson(1/2): moments by the binomial theorem
    f = MLP(5, 50)
    c = T.mean_field(f).kernel_weights
    got = T.bfk_moments(f, 3, 4, exact=True)
    c2, c3 = T.layer.rational(c[1]), T.layer.rational(c[2])
    y = fp.marchenko_pastur_moments(4, Fr(1, 2), Fr(2))
    ym = [Fr(1)] + y
    ref = [sum(math.comb(k, j) * c3 ** (k - j) * c2**j * ym[j] for j in range(k + 1)) for k in range(1, 5)]
    assert got == ref
    # consistency with the M1/M2 recursion
    r = T.bfa(f)
    s = [float(x) for x in T.bfk_moments(f, 4, 2)]
    assert s[0] / math.sqrt(s[1]) == pytest.approx(r.cos[3], rel=1e-13)


def test_bfk_moments_exact_masks_match_bfa():
    f = ResNet.scaled(20, 100, 2.0)
    s = T.bfk_moments(f, 15, 2, mode="exact")
    assert s[0] / math.sqrt(s[1]) == pytest.approx(T.bfa(f).cos_spectrum[14], rel=1e-12)
    with pytest.raises(ValueError, match="order <= 2"):
        T.bfk_moments(f, 15, 3, mode="exact")


def test_jacobian_moments():
    f = MLP(8, 50)
    # 3 factors of 2*FreePoisson(1/2): S = prod 1/(2(1/2+z))
    s = [Fr(1)] + [Fr(0)] * 4
    sy = fp.s_transform(fp.marchenko_pastur_moments(5, Fr(1, 2), Fr(2)))
    for _ in range(3):
        s = fp._mul(s, sy, 4)
    assert T.jacobian_moments(f, 2, 5, 5, exact=True) == fp.from_s_transform(s)
    assert T.jacobian_moments(f, 3, 3, 3) == [1.0, 1.0, 1.0]


def test_depth_limit_matches_long_recursion():
    for masks in ("free", "exact"):
        for c in (0.5, 2.0):
            lim = T.depth_limit(0.5, c, mode=masks).cos
            r = T.bfa(ResNet.scaled(20000, 100, c), mode=masks).cos[-1]
            assert r == pytest.approx(lim, abs=5e-4)
    assert T.depth_limit(0.5, 1.0, mode="free").cos == pytest.approx(1 / math.sqrt(1 + 2 / 3), rel=1e-15)
    assert T.depth_limit(0.7, 1.0).cos == 1.0 and T.depth_limit(0.3, 1.0).cos == 0.0


def test_bad_input():
    f = MLP(6, 10)
    with pytest.raises(ValueError):
        T.bfa(f, mode="nope")
    with pytest.raises(ValueError):
        T.bfk_moments(f, 6, 2)
    with pytest.raises(ValueError):
        T.bfk_moments(f, 3, 0)
    with pytest.raises(TypeError):
        T.bfk_moments(f, 2.5, 2)
    with pytest.raises(ValueError):
        T.jacobian_moments(f, 4, 3)
    with pytest.raises(ValueError):
        T.depth_limit(1.5, 1.0)
    with pytest.raises(ValueError):
        T.depth_limit(0.5, -1.0)
    with pytest.raises(ValueError):
        T.bfk_density(f, 1)  # K_1 = 0
    with pytest.raises(TypeError):
        T.bfa("MLP")


# ---------------------------------------------------------------- densities
def test_bfk_density_mass_and_mean():
    f = MLP(6, 100)
    d = T.bfk_density(f, 5)
    c5 = T.mean_field(f).kernel_weights[4]
    (loc, mass), = d.atoms.items()
    assert loc == pytest.approx(c5) and mass == pytest.approx(0.5, abs=1e-6)
    m1, m2 = T.bfk_moments(f, 5, 2)
    tot = np.trapezoid(d.density, d.x) + mass
    mean = np.trapezoid(d.density * d.x, d.x) + mass * loc
    assert tot == pytest.approx(1, abs=1e-2) and mean == pytest.approx(m1, rel=1e-2)


def test_jacobian_density_is_fuss_catalan_for_linear_mlp():
    f = MLP(6, 100, activation="linear")
    x = np.linspace(0.05, 6.5, 7)
    d = T.jacobian_density(f, 2, 4, x=x, eps=1e-6)
    xr, dr = fp.fuss_catalan_density(2, 20001)
    assert np.allclose(d.density, np.interp(x, xr, dr), rtol=1e-3)


# ---------------------------------------------------------------- against the samplers
def test_bfa_against_width_limit_mlp():
    from rmtalign.sampling import width_limit
    f = MLP(6, 64)
    wl = width_limit(f, [64, 128, 256], samples=16, seed=2)
    th = T.bfa(f)
    ok = ~np.isnan(wl.limit) & (wl.limit_se > 1e-12)
    assert np.all(np.abs(wl.limit[ok] - th.cos[ok]) <= 3 * wl.limit_se[ok])


@pytest.mark.parametrize("mode,masks", [("exact", "exact"), ("free", "free")])
def test_bfa_against_width_limit_resnet(mode, masks):
    # per-width sample_bfa + the package's width-limit fit, layers 3..L-1 (layer 2 has cos = 1
    # exactly, zero SE, which width_limit's fit rejects in free mode)
    from rmtalign.sampling import sample_bfa
    from rmtalign._extrapolate import fit_width_limit
    # bfa() is M1/sqrt(M2) of K_v (Thm 3.2). For ReLU ResNets with the network's own masks the
    # measured cos differs from it (b_v is mask-correlated with K_v; see docs/theory.md), so in
    # exact mode we compare with the sampled spectra's M1/sqrt(M2) (sample_bfk.cos_spectrum).
    from rmtalign.sampling import sample_bfk
    f = ResNet.scaled(8, 64, 2.0)
    widths = np.array([64, 128, 256])
    ss = np.random.SeedSequence(3).spawn(3)
    if mode == "exact":
        widths = np.array([48, 96, 160])
        lay = list(range(3, 8))
        res = [sample_bfk(f.replace(width=int(w)), lay, 6, s, mode=mode).cos_spectrum for w, s in zip(widths, ss)]
        means = np.array([r.mean(0) for r in res])
        sems = np.array([r.std(0, ddof=1) / np.sqrt(r.shape[0]) for r in res])
    else:
        res = [sample_bfa(f.replace(width=int(w)), 12, s, mode=mode) for w, s in zip(widths, ss)]
        means = np.array([r.mean("cos")[2:] for r in res])
        sems = np.array([r.sem("cos")[2:] for r in res])
    fit = fit_width_limit(widths, means, sems, order=1)
    th = T.bfa(f, mode=masks).cos_spectrum[2:]
    assert np.all(np.abs(fit.c0 - th) <= 3 * fit.c0_se)


def test_bfk_density_against_sampled_spectrum():
    from rmtalign.sampling import sample_bfk
    f = MLP(5, 100)
    d = T.bfk_density(f, 4, x=np.linspace(0, 12, 1500))
    dists = [d.kolmogorov_distance(sample_bfk(f.replace(width=m), [4], samples=2, seed=5,
                                              mode="free").eigenvalues)
             for m in (100, 400)]
    assert dists[1] < dists[0] and dists[1] < 0.05
