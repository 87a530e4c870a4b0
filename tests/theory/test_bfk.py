"""rmtalign/theory/bfk.py: BFA curves, BFK and Jacobian moments, the exact-mask recursions, and the
densities' entry points, against exact small cases, direct evaluations and the samplers (fixed
seeds, tolerances from the standard error). The density solver itself is tested in test_chain.py.

Exact-mask BFA of ReLU ResNets: ``theory.bfa(family).cos = M1 / sqrt(M2b)`` (mask-correlated
backward vector) against the samplers, and its fast O(L log L) evaluation against a direct O(L^2)
evaluation of the same sums written from the definitions (module docstring of
``rmtalign/theory/bfk.py``).

Tolerances 1e-11 to 1e-15 are round-off: two evaluations of the same recursion of <= 50 steps
differ by ~ L eps (1e-14), and the margins allow for the constants. Statistical ones are derived
where they are used."""
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
    with pytest.raises(ValueError, match=r"^mode='exact' gives only M1, M2 \(order <= 2, exact=False\)"):
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
    # each message names the argument, the value and what is allowed
    f = MLP(6, 10)
    with pytest.raises(ValueError, match=r"^mode must be one of 'exact', 'free'; got 'nope'$"):
        T.bfa(f, mode="nope")
    with pytest.raises(ValueError, match=r"^layer must be in \[1, 5\] \(depth=6\), got 6$"):
        T.bfk_moments(f, 6, 2)
    with pytest.raises(ValueError, match=r"^order must be >= 1, got 0$"):
        T.bfk_moments(f, 3, 0)
    with pytest.raises(TypeError, match=r"^layer must be an integer, got 2\.5 \(float\)$"):
        T.bfk_moments(f, 2.5, 2)
    with pytest.raises(ValueError, match=r"^stop must be in \[4, 5\] \(depth=6\), got 3$"):
        T.jacobian_moments(f, 4, 3)
    with pytest.raises(ValueError, match=r"^K_1 = 0 \(no trained layer up to 1\): its law is delta_0$"):
        T.bfk_density(f, 1)  # K_1 = 0
    with pytest.raises(TypeError, match=r"^family must be an rmtalign MLP or ResNet, got 'MLP' \(str\)$"):
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
    # L <= 25 < 2048: the package sums these layers directly too (its FFT path is checked at
    # L = 10^6 below); round-off ~ L eps = 6e-15 (measured 2.2e-16)
    assert np.allclose(r.m2b[1:], ref[1:], rtol=1e-13, atol=0)
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
    # depth limit: the recursion converges as C/L (first-order in the depth step; measured
    # C = 1.013 here, see test_depth.py), so 2/L bounds it with a 2x margin
    assert T.depth_limit(0.5, 2.0).cos == pytest.approx(T.bfa(ResNet.scaled(20000, 100, 2.0)).cos[-1],
                                                        rel=0, abs=2 / 20000)
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


def test_large_depth_is_finite_and_matches_the_depth_limit():
    # L = 10^6 runs the FFT convolutions of the correction far beyond the 2048 directly summed
    # outputs (no timing here: costs live in scripts/bench.py).
    L = 10**6
    r = T.bfa(ResNet.scaled(L, 100, 2.0))
    assert np.all(np.isfinite(r.cos[1:])) and np.all((r.cos[1:] > 0) & (r.cos[1:] <= 1))
    # Inside the network, against the depth limit at the same depth fraction. The recursion is a
    # first-order (step 1/L) discretisation of the limit's depth integral: |error| = C(position)/L
    # + O(L^-2). C is not derived in closed form; measured C = 3.01, 2.08, 1.35, 1.02, 0.91, 1.01
    # at positions 0.1 .. 1 (cos; 2.73 .. 0.88 for cos_spectrum), identical to 3 digits at
    # L = 10^4, 2 10^4 and 10^6, so 4/L (4e-6) bounds it with a 1.3x margin. A wrong FFT
    # convolution or prefix sum would be off by far more.
    for pos in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
        lim = T.depth_limit(0.5, 2.0, position=pos)
        v = min(round(L * pos), L - 1)
        assert r.cos[v - 1] == pytest.approx(lim.cos, rel=0, abs=4 / L), pos
        assert r.cos_spectrum[v - 1] == pytest.approx(lim.cos_spectrum, rel=0, abs=4 / L), pos


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


# ---------------------------------------------------------------- the Kolmogorov distance helper
# Density.kolmogorov_distance evaluates |F_n - cdf| on the grid x only, with cdf() the quadrature
# of the density. Against the exact sup D = scipy.stats.kstest(samples, F).statistic:
#  * on the grid |F_n - F| <= D, and |cdf() - F| <= eps_q there, so  kd <= D + eps_q;
#  * in a cell [x_i, x_i+1), F_n - F <= F_n(x_i+1) - F(x_i+1) + dF_i and F - F_n <= F(x_i) -
#    F_n(x_i) + dF_i (F and F_n increase; no sample sits on a grid point, else add 1/n), with
#    dF_i = F(x_i+1) - F(x_i); the samples lie inside the grid, so  D <= kd + eps_q + max dF.
# Hence -eps_q <= D - kd <= max dF + eps_q. With D >> max dF + eps_q, a helper off by a factor
# (half the distance), by a side (one-sided sup) or by a normalisation fails.
def _check_against_kstest(kd, D, dF, eps_q):
    assert -eps_q <= D - kd <= dF + eps_q, (D, kd, dF, eps_q)
    assert D > 4 * (dF + eps_q)  # the bound is much tighter than the distance it checks


def test_kolmogorov_distance_against_kstest_uniform():
    n_grid = 10001
    x = np.linspace(0.0, 1.0, n_grid)
    h = 1.0 / (n_grid - 1)
    d = T.Density(x, np.ones(n_grid), {}, (0.0, 1.0), 0.0)  # uniform on [0, 1]: F(x) = x
    # cdf() on a uniform density: cell [0, h] by the linear rule (exact), cell [k h, (k+1) h] by
    # the trapezoid in log x, error h ((k + 1/2) log(1 + 1/k) - 1) <= h / (12 k^2); summed,
    # eps_q <= h pi^2 / 72.
    eps_q = np.max(np.abs(d.cdf() - x))
    assert eps_q <= h * math.pi**2 / 72
    rng = np.random.default_rng(20240612)
    # the law itself (D ~ 0.9/sqrt(n)), and two others whose distance has either sign
    for draw in (lambda n: rng.random(n), lambda n: rng.beta(2.0, 1.0, n), lambda n: rng.beta(1.0, 2.0, n)):
        smp = draw(2000)
        D = stats.kstest(smp, "uniform").statistic
        _check_against_kstest(d.kolmogorov_distance(smp), D, h, eps_q)


def test_kolmogorov_distance_of_atoms_is_exact():
    # samples on an atom count at the atom (F_n and cdf are both right-continuous): a law's own
    # atoms are at distance 0, and an atom's sampled mass off by k/n is at distance k/n
    x = np.array([0.0, 0.5, 1.0, 2.0, 3.0])
    d = T.Density(x, np.zeros(5), {0.0: 0.5, 2.0: 0.5}, (0.0, 2.0), 0.0)
    assert d.kolmogorov_distance([0.0, 2.0, 0.0, 2.0]) == 0.0
    assert d.kolmogorov_distance([0.0, 0.0, 0.0, 2.0]) == 0.25


def _free_poisson_continuous_cdf(ratio, scale):
    """Exact cdf of the continuous part of the free Poisson law (ratio < 1), normalised to 1:
    with x = c - r cos(t) (c, r the centre and half-width of the support) the density
    sqrt((hi - x)(x - lo)) / (2 pi scale x) dx is r^2 sin(t)^2 / (2 pi scale (c - r cos t)) dt, whose
    primitive is sin(t)/r + c t/r^2 - (2 / r^2) sqrt(hi lo) arctan(sqrt(hi/lo) tan(t/2))."""
    lo, hi = scale * (1 - math.sqrt(ratio)) ** 2, scale * (1 + math.sqrt(ratio)) ** 2
    c, r = (hi + lo) / 2, (hi - lo) / 2

    def F(x):
        t = np.arccos(np.clip(1 - 2 * (np.asarray(x, float) - lo) / (hi - lo), -1.0, 1.0))
        with np.errstate(over="ignore"):
            at = np.where(t < math.pi, np.arctan(math.sqrt(hi / lo) * np.tan(t / 2)), math.pi / 2)
        prim = np.sin(t) / r + c * t / r**2 - 2 / r**2 * math.sqrt(hi * lo) * at
        return r**2 / (2 * math.pi * scale) * prim / ratio

    return F, lo, hi


def test_kolmogorov_distance_continuous_part_against_kstest():
    # free Poisson of rate 1/2: an atom 1/2 at 0 plus a continuous part of mass 1/2
    ratio, scale = 0.5, 2.0
    F, lo, hi = _free_poisson_continuous_cdf(ratio, scale)
    assert F(lo) == 0.0 and F(hi) == pytest.approx(1.0, abs=1e-14)
    t = np.linspace(0.0, math.pi, 20001)
    xc = (hi + lo) / 2 - (hi - lo) / 2 * np.cos(t)  # fine near the square-root edges
    x = np.concatenate([[0.0], xc])
    d = T.Density(x, fp.marchenko_pastur_density(x, ratio, scale), {0.0: 1 - ratio}, (0.0, hi), 0.0)
    Fx = F(xc)
    dF = np.max(np.diff(Fx))
    # the trapezoid's error (O(h^2) a cell, on a smooth integrand in t) is of higher order than
    # the grid's cdf step dF = O(h); measured 3e-9 against dF = 1e-4
    eps_q = np.max(np.abs((d.cdf()[1:] - (1 - ratio)) / ratio - Fx))
    assert eps_q < dF / 100
    # samples: exact zeros (the atom, binomial count) and the continuous part by inversion
    rng = np.random.default_rng(7)
    n = 2000
    n0 = rng.binomial(n, 1 - ratio)
    tt = np.linspace(0.0, math.pi, 200001)
    xt = (hi + lo) / 2 - (hi - lo) / 2 * np.cos(tt)
    cont = np.interp(rng.random(n - n0), F(xt), xt)
    smp = rng.permutation(np.concatenate([np.zeros(n0), cont]))
    D = stats.kstest(cont, F).statistic
    _check_against_kstest(d.kolmogorov_distance(smp, continuous=True), D, dF, eps_q)


# ---------------------------------------------------------------- against the samplers
def _critical(widths, sems, samples, alpha=0.0027):
    """Two-sided critical values for ``(c0_hat - c0) / c0_se`` of an order-1 width fit, one per
    layer (column of ``sems``), at the family-wise false-alarm rate ``alpha`` over the layers
    (Bonferroni; the rate of a single 3-SE normal test by default).

    ``c0_hat = sum_i w_i ybar_i`` is linear in the per-width means (weighted least squares in
    ``1/m``), and ``c0_se^2 = sum_i v_i``, ``v_i = (w_i s_i)^2``, is built from sample SEMs with
    ``samples - 1`` dof each: the ratio is Student-t with the Welch–Satterthwaite dof
    ``(sum v_i)^2 / sum(v_i^2 / (samples - 1))`` (6 samples a width give ~10 dof, where 3 SE
    would be a 1.3% test, not 0.27%)."""
    sems = np.asarray(sems, float).reshape(len(widths), -1)
    X = np.stack([np.ones(len(widths)), 1.0 / np.asarray(widths, float)], axis=1)
    dof = []
    for s in sems.T:
        wt = 1.0 / s**2
        w0 = np.linalg.solve(X.T @ (wt[:, None] * X), X.T * wt)[0]  # c0_hat = w0 @ ybar
        v = (w0 * s) ** 2
        dof.append(v.sum() ** 2 / np.sum(v**2) * (samples - 1))
    return stats.t.isf(alpha / 2 / sems.shape[1], np.array(dof))


def test_bfa_against_width_limit_mlp():
    from rmtalign.sampling import width_limit
    f = FAMILIES_BY_DEPTH["mlp"](6)
    wl = width_limit(f, [64, 128, 256], samples=16, seed=2)
    th = T.bfa(f)
    ok = ~np.isnan(wl.limit) & (wl.limit_se > 1e-12)
    crit = _critical(wl.widths, wl.sems[:, ok], 16)  # ~26 dof, 3 layers: 3.7 (z: 3.2)
    assert np.all(np.abs(wl.limit[ok] - th.cos[ok]) <= crit * wl.limit_se[ok])


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
    # 24 samples a width (~45 dof for the fit's t ratio: critical value 3.7 over 5 layers); with 6
    # (exact) or 12 (free) the SEs themselves were too noisy for a z test (see _critical)
    samples = 24
    if mode == "exact":
        widths = np.array([48, 96, 160])
        lay = list(range(3, 8))
        res = [sample_bfk(f.replace(width=int(w)), lay, samples, s, mode=mode).cos_spectrum
               for w, s in zip(widths, ss)]
        means = np.array([r.mean(0) for r in res])
        sems = np.array([r.std(0, ddof=1) / np.sqrt(r.shape[0]) for r in res])
    else:
        res = [sample_bfa(f.replace(width=int(w)), samples, s, mode=mode) for w, s in zip(widths, ss)]
        means = np.array([r.mean("cos")[2:] for r in res])
        sems = np.array([r.sem("cos")[2:] for r in res])
    fit = fit_width_limit(widths, means, sems, order=1)
    th = T.bfa(f, mode=masks).cos_spectrum[2:]
    assert np.all(np.abs(fit.c0 - th) <= _critical(widths, sems, samples) * fit.c0_se)


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
    # Bonferroni over the layers, Student-t with the fit's Welch–Satterthwaite dof (_critical:
    # 3.6-3.76 for 5 layers here, z = 3.46). (Checked calibrated: over 12 seeds the MLP's z-scores
    # have mean 0.03 and SD 0.9 per layer.)
    crit = _critical(wl.widths, wl.sems[:, sl], samples)
    assert np.all(np.abs(est - th.cos[sl]) <= crit * se)
    if family.skip != 0:
        # power: the mask correction exceeds 4 SE at some layer, and the data resolve it (the
        # spectral M1/sqrt(M2), i.e. b independent of K_v, is rejected at 3 SE somewhere)
        assert np.max((th.cos_spectrum[sl] - th.cos[sl]) / se) > 4
        assert np.any(np.abs(est - th.cos_spectrum[sl]) > 3 * se)


# The Kolmogorov distance between a limiting law and a sampled spectrum (pooled eigenvalues of a
# few matrices) is not a KS test of iid draws: the eigenvalues of one matrix repel, and the
# empirical cdf of one draw fluctuates by O(log(m)/m) (rigidity), not O(N^-1/2), so the
# 1.36/sqrt(N) critical value says nothing here. The distance is mostly the finite-width bias of
# the spectrum, for which these chains have no closed form (measured decay ~ m^-0.7), plus that
# fluctuation; the ruler itself reads at most its grid's largest cdf step below the true sup
# (test_kolmogorov_distance_against_kstest_*). An atom's sampled mass (a mask's rank) is the
# exception: it fluctuates by O(m^-1/2), so it is left out of the distance (continuous=True) and,
# where its law is known (free masks: binomial), tested on its own against its exact SE. So the
# thresholds below are judgements: about four seed-to-seed SDs above the mean distance measured
# over seeds 0..15 (0..7 for the costly Jacobians) at the tested width and sample count;
# "shrinks" compares two widths whose distances never crossed over those seeds.
def test_bfk_density_against_sampled_spectrum():
    from rmtalign.sampling import sample_bfk
    # the table's law at width 100, as before (its c_v differ from m = 64's at round-off)
    f = FAMILIES_BY_DEPTH["mlp"](5).replace(width=100)
    d = T.bfk_density(f, 4, x=np.linspace(0, 12, 1500))
    # ReLU MLP: an atom 1/2 at c_4 (K_4 = c_4 I + W_4 D_3 K_3 D_3 W_4^T, D_3 of trace 1/2). Its
    # sampled mass is the fraction of zeros of the free masks D_3, Binomial(m, 1/2) per sample,
    # which dominated the whole distance (at m = 400 the distance exceeded m = 100's for 6 of 16
    # seeds). Test it against its exact SE, and the continuous part with the atom removed.
    (c, w), = d.atoms.items()
    assert c == pytest.approx(T.mean_field(f).kernel_weights[3], rel=1e-14)
    assert w == pytest.approx(0.5, abs=1e-6)  # the solver's atom (test_chain.py)
    shifted = T.Density(d.x - c, d.density, {0.0: w}, (0.0, d.support[1] - c), 0.0)
    widths = (100, 400)
    z = stats.norm.isf(0.0027 / 2 / len(widths))  # family-wise 0.27% over the two widths
    cont = []
    for m in widths:
        ev = np.ravel(sample_bfk(f.replace(width=m), [4], samples=2, seed=5, mode="free").eigenvalues) - c
        # the atom's eigenvalues equal c_4 to round-off (measured 5e-15); the continuous part
        # starts at least 0.08 above it
        at = np.abs(ev) <= 1e-9 * c
        assert abs(at.mean() - 0.5) <= z * 0.5 / math.sqrt(ev.size)
        ev[at] = 0.0
        cont.append(shifted.kolmogorov_distance(ev, continuous=True))
    # continuous part over seeds 0..15: m = 100 mean 0.040 (SD 0.012); m = 400 mean 0.017 (SD
    # 0.0055, max 0.026), ratio 400/100 at most 0.72; this seed 0.056, 0.0098
    assert cont[1] < cont[0] and cont[1] < 0.04, cont


def test_against_sampled_spectrum_resnet():
    from rmtalign.sampling import sample_bfk
    f = FAMILIES_BY_DEPTH["res"](6)
    d = T.bfk_density(f, 5)  # no atom
    dists = [d.kolmogorov_distance(sample_bfk(f.replace(width=m), [5], samples=2, seed=11,
                                              mode="free").eigenvalues)
             for m in (64, 256)]
    # over seeds 0..15: m = 64 mean 0.027 (SD 0.0047); m = 256 mean 0.0115 (SD 0.0039, max 0.018),
    # ratio 256/64 at most 0.80; this seed 0.027, 0.0098
    assert dists[1] < dists[0] and dists[1] < 0.03, dists


@pytest.mark.parametrize("family, mode, stop, sizes, bound", [
    # over seeds 0..7: m = 64 x 8 mean 0.015 (SD 0.003); m = 1024 x 2 mean 0.0029 (SD 0.0009, max
    # 0.0049), ratio at most 0.37; this seed 0.014, 0.0019. Mean + 4 SD = 0.0065, rounded up to
    # 0.01, about the ruler's resolution here (its grid's largest cdf step, 0.0105).
    (FAMILIES_BY_DEPTH["res"](10), "free", 9, ((64, 8), (1024, 2)), 0.01),
    # ReLU MLP, own masks: the worst point sits near x -> 0, where the product's rank (the least
    # of the masks' ranks) converges slowly; m = 128 / 512 / 2048 gives 0.061 / 0.035 / 0.027.
    # Over seeds 0..7: m = 128 x 8 mean 0.070 (SD 0.015); m = 2048 x 1 mean 0.024 (SD 0.0064,
    # max 0.034), ratio at most 0.55; this seed 0.061, 0.027. Mean + 4 SD = 0.050.
    (FAMILIES_BY_DEPTH["mlp"](10), "exact", 5, ((128, 8), (2048, 1)), 0.05),
], ids=["resnet-free", "mlp-exact"])
def test_jacobian_density_against_sampled_singular_values(family, mode, stop, sizes, bound):
    """Squared singular values of df_stop/df_1: the Kolmogorov distance between the limiting law
    and the sampled spectrum shrinks as the width grows. (For ReLU ResNets the law is the free
    model's; their own masks are correlated across depth, see docs/theory.md.) Thresholds: see
    the comment above test_bfk_density_against_sampled_spectrum."""
    from rmtalign.sampling import sample_jacobian

    d = T.jacobian_density(family, 1, stop)
    # Compare the continuous parts: the mass of the atom at 0 (ReLU MLP: the mask's rank) has
    # its own O(m^-1/2) fluctuation that would dominate the distance.
    dists = [d.kolmogorov_distance(sample_jacobian(family.replace(width=m), 1, stop, samples=n, seed=1,
                                                   mode=mode).sq_singular_values(), continuous=True)
             for m, n in sizes]
    assert dists[1] < 0.8 * dists[0] and dists[1] < bound, dists
