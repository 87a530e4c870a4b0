"""rmtalign/theory/bfk.py: BFA curves, BFK and Jacobian moments, the exact-mask recursions, and the
densities' entry points, against exact small cases, direct evaluations and the samplers (fixed
seeds, tolerances from the standard error). The density solver itself is tested in test_chain.py.

Exact-mask BFA of ReLU ResNets: ``theory.bfa(family).cos = M1 / sqrt(M2b)`` (mask-correlated
backward vector) against the samplers, and its fast O(L log L) evaluation against a direct O(L^2)
evaluation of the same sums written from the definitions (module docstring of
``rmtalign/theory/bfk.py``)."""
import math
from fractions import Fraction as Fr

import numpy as np
from scipy import stats
import pytest

from conftest import FAMILIES_BY_DEPTH
from rmtalign import theory as T
from rmtalign.families import MLP, ResNet
from rmtalign.sampling import width_limit
from rmtalign.theory import free as fp


# ---------------------------------------------------------------- BFA / BFK moments
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
        T.bfk_density(f, 1)  # K_1 = 0
    with pytest.raises(TypeError):
        T.bfa("MLP")


# ---------------------------------------------------------------- exact masks: the correction M2b
def _direct_m2b(family):
    """``E_i[s_i (K_v^2)_ii] / E_i[s_i]`` by explicit double sums over mask layers (O(L^2)):

    * normalised backward variance ``s^(L-1) = 1``, ``s^(v) = a2 s^(v+1) + g2 D_v`` (weights
      ``w[v][j]`` on the masks ``D_j``, ``j = v .. L-2``, plus a constant);
    * variance profile of ``K_v``: ``(K_v^2)_ii = M1^2 + alpha_v + sum_l g_{v,l} (D_l(i) + p)``,
      ``g_{l+1,l} = a2 g2 M1(K_l)^2``, ``g_{v,l} = (a2^2 + a2 g2 p) g_{v-1,l}``;
    * ``E[D_l D_j] = 1/4 + arcsin(rho^|j-l|) / (2 pi)``, ``rho = sqrt(a2)`` (tau(Y) = 1).
    """
    r = T.bfa(family)
    law = T.layer_law(family)
    a2, g2, p = (float(law.a2 / law.mean), float(law.g2 / law.mean), float(law.p))
    L = family.depth
    n = L - 1
    rho = math.sqrt(a2)
    P = lambda j: 0.25 + math.asin(rho ** abs(j)) / (2 * math.pi)  # noqa: E731
    out = np.array(r.m2, dtype=float)
    for v in range(2, n):
        # backward weights on D_j (j = v .. L-2) and the constant part
        w, const = {}, 1.0
        for j in range(n - 1, v - 1, -1):  # s^(j) = a2 s^(j+1) + g2 D_j
            w = {k: a2 * x for k, x in w.items()}
            const *= a2
            w[j] = g2
        g = {}
        for u in range(2, v + 1):  # build g_{u,l} up to u = v
            g = {l: (a2 * a2 + a2 * g2 * p) * x for l, x in g.items()}
            g[u - 1] = a2 * g2 * r.m1[u - 2] ** 2
        Es = const + p * sum(w.values())
        extra = 0.0
        for l, gl in g.items():
            EsD = const * p + sum(x * P(j - l) for j, x in w.items())
            extra += gl * (EsD / Es - p)
        out[v - 1] = r.m2[v - 1] + extra
    return out


@pytest.mark.parametrize("family", [
    ResNet.scaled(22, 100, 2.0),
    ResNet.scaled(25, 100, 0.7, weights="orthogonal"),
    ResNet.scaled(20, 100, 1.0, alpha=0.25, lr_rule="uniform"),
    ResNet.scaled(20, 100, 3.0, alpha=1.0, trained="all"),
    ResNet(24, 100, 0.5, skip_scale=0.8),
], ids=["gauss", "orth", "alpha0.25-uniform", "alpha1-all", "skip0.8"])
def test_fast_correction_matches_direct_sums(family):
    r = T.bfa(family)
    ref = _direct_m2b(family)
    assert np.allclose(r.m2b[1:], ref[1:], rtol=1e-11, atol=0)
    assert r.mode == "exact"


def test_structure_of_the_correction():
    f = ResNet.scaled(40, 100, 2.0)
    r = T.bfa(f)
    inner = slice(2, -1)  # v = 3 .. L-2
    # correlated masks raise the backward-weighted second moment strictly below the output layer
    assert np.all(r.m2b[inner] > r.m2[inner])
    assert np.all(r.cos[inner] < r.cos_spectrum[inner])
    # v = L-1: b_{L-1} = W_L^T b_L has no mask (linear readout), Thm 3.2 holds, phi(c) unchanged
    assert r.cos[-1] == r.cos_spectrum[-1]
    assert T.depth_limit(0.5, 2.0).cos == pytest.approx(T.bfa(ResNet.scaled(20000, 100, 2.0)).cos[-1], abs=5e-4)
    # spectral part is the previous exact-mask recursion
    m = T.bfk_moments(f, 20, 2, mode="exact")
    assert m[0] / math.sqrt(m[1]) == pytest.approx(r.cos_spectrum[19], rel=1e-12)


@pytest.mark.parametrize("family", [MLP(10, 100), MLP(10, 100, weights="orthogonal"),
                                    ResNet.scaled(10, 100, 2.0, activation="linear")])
def test_no_correction_without_correlated_masks(family):
    r = T.bfa(family)
    assert np.array_equal(r.cos, r.cos_spectrum, equal_nan=True)
    assert np.array_equal(r.m2b, r.m2)


def test_free_masks_have_no_correction():
    f = ResNet.scaled(12, 100, 2.0)
    r = T.bfa(f, mode="free")
    assert r.mode == "free" and np.array_equal(r.cos, r.cos_spectrum, equal_nan=True)


def test_large_depth_cost_and_finiteness():
    import time

    f = ResNet.scaled(10**6, 100, 2.0)
    T.bfa(ResNet.scaled(100, 100, 2.0))  # warm numba
    t = time.perf_counter()
    r = T.bfa(f)
    elapsed = time.perf_counter() - t
    assert np.all(np.isfinite(r.cos[1:])) and np.all((r.cos[1:] > 0) & (r.cos[1:] <= 1))
    assert elapsed < 5.0  # ~0.3-0.5 s on 2 cores; loose bound (an O(L^2) slip would take hours)


# ---------------------------------------------------------------- densities (solver: test_chain.py)
def test_orthogonal_linear_jacobian_is_an_exact_atom():
    from rmtalign.sampling import sample_jacobian

    fam = MLP(10, 32, activation="linear", weights="orthogonal", hidden_std=0.5 / math.sqrt(32))
    d = T.jacobian_density(fam, 2, 8, x=[0.1, 1.0])
    y = 0.25**6  # A^T A = (m s^2) I at every layer
    (loc, mass), = d.atoms.items()
    assert loc == pytest.approx(y, rel=1e-15) and mass == 1.0 and not d.density.any()
    np.testing.assert_allclose(d.cdf(), [1.0, 1.0])
    got = sample_jacobian(fam, 2, 8, seed=0).log_sq_singular_values
    np.testing.assert_allclose(got, math.log(y), atol=1e-12)


# ---------------------------------------------------------------- against the samplers
def test_bfa_against_width_limit_mlp():
    from rmtalign.sampling import width_limit
    f = FAMILIES_BY_DEPTH["mlp"](6)
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
    f = FAMILIES_BY_DEPTH["res_c2"](8)
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


@pytest.mark.parametrize("family,samples,seed", [
    (FAMILIES_BY_DEPTH["res_c2"](8), 48, 7),
    (FAMILIES_BY_DEPTH["res_alpha0.25_uniform"](8), 32, 8),
    (FAMILIES_BY_DEPTH["mlp"](8), 24, 9),
], ids=["resnet-c2", "resnet-alpha0.25-uniform", "mlp"])
def test_bfa_exact_masks_against_width_limit(family, samples, seed):
    wl = width_limit(family, [128, 256, 512], samples=samples, seed=seed, mode="exact")
    th = T.bfa(family)
    sl = slice(2, None)  # layers 3 .. L-1 (layer 2 has cos = 1 exactly, SE 0)
    est, se = wl.limit[sl], wl.limit_se[sl]
    assert np.all(se > 0)
    # One test over all compared layers at the false-alarm rate of a single 3-SE test (0.27%):
    # Bonferroni over the layers, z = 3.46 for 5 of them. (Checked calibrated: over 12 seeds the
    # MLP's z-scores have mean 0.03 and SD 0.9 per layer.)
    z_max = stats.norm.isf(0.0027 / 2 / est.size)
    assert np.all(np.abs(est - th.cos[sl]) <= z_max * se)
    if family.skip != 0:
        # power: the mask correction exceeds 4 SE at some layer, and the data resolve it (the
        # spectral M1/sqrt(M2), i.e. b independent of K_v, is rejected at 3 SE somewhere)
        assert np.max((th.cos_spectrum[sl] - th.cos[sl]) / se) > 4
        assert np.any(np.abs(est - th.cos_spectrum[sl]) > 3 * se)


def test_bfk_density_against_sampled_spectrum():
    from rmtalign.sampling import sample_bfk
    # the table's law at width 100, as before (its c_v differ from m = 64's at round-off)
    f = FAMILIES_BY_DEPTH["mlp"](5).replace(width=100)
    d = T.bfk_density(f, 4, x=np.linspace(0, 12, 1500))
    dists = [d.kolmogorov_distance(sample_bfk(f.replace(width=m), [4], samples=2, seed=5,
                                              mode="free").eigenvalues)
             for m in (100, 400)]
    assert dists[1] < dists[0] and dists[1] < 0.05


def test_against_sampled_spectrum_resnet():
    from rmtalign.sampling import sample_bfk
    f = FAMILIES_BY_DEPTH["res"](6)
    d = T.bfk_density(f, 5)
    dists = [d.kolmogorov_distance(sample_bfk(f.replace(width=m), [5], samples=2, seed=11,
                                              mode="free").eigenvalues)
             for m in (64, 256)]
    assert dists[1] < dists[0] and dists[1] < 0.05


@pytest.mark.parametrize("family, mode, stop, sizes", [
    (FAMILIES_BY_DEPTH["res"](10), "free", 9, ((64, 8), (1024, 2))),
    # ReLU MLP, own masks: the worst point sits near x -> 0, where the product's rank (the least
    # of the masks' ranks) converges slowly; m = 128 / 512 / 2048 gives 0.061 / 0.035 / 0.027.
    (FAMILIES_BY_DEPTH["mlp"](10), "exact", 5, ((128, 8), (2048, 1))),
])
def test_jacobian_density_against_sampled_singular_values(family, mode, stop, sizes):
    """Squared singular values of df_stop/df_1: the Kolmogorov distance between the limiting law
    and the sampled spectrum shrinks as the width grows. (For ReLU ResNets the law is the free
    model's; their own masks are correlated across depth, see docs/theory.md.)"""
    from rmtalign.sampling import sample_jacobian

    d = T.jacobian_density(family, 1, stop)
    # Compare the continuous parts: the mass of the atom at 0 (ReLU MLP: the mask's rank) has
    # its own O(m^-1/2) fluctuation that would dominate the distance.
    dists = [d.kolmogorov_distance(sample_jacobian(family.replace(width=m), 1, stop, samples=n, seed=1,
                                                   mode=mode).sq_singular_values(), continuous=True)
             for m, n in sizes]
    # The masks' ranks fluctuate by O(m^-1/2) (a product's rank is the least of them): the
    # distance shrinks slowly, so the bound is loose.
    assert dists[1] < 0.8 * dists[0] and dists[1] < 0.05, dists
