"""rmtalign/theory/_reduction.py: the exact reduction of a Gaussian ReLU ResNet and the 1/m expansion
built on it.

The exact mean map against the plain per-neuron map averaged over particles (at order parameters
off the fixed point, so that every term is exercised), its fixed point against theory.bfa, and the
expansion's c1 against the linear chain's exact c1 (theory.finite_width), where the two routes are
independent."""
import math
from dataclasses import replace

import numpy as np
import pytest

from rmtalign import theory as T
from rmtalign.families import ResNet
from rmtalign.sampling import sample_bfa, sample_bfk
from rmtalign.theory import _reduction as R
from rmtalign.theory.finite import _moment_limits


def _particle_mean(red, Om, n_particles, chunks, seed):
    """Mean and standard error of ``_particle_map`` over independent neurons at ``Om``."""
    rng = np.random.default_rng(seed)
    n, means = red.n, []
    for _ in range(chunks):
        z = rng.standard_normal((n_particles, n))
        f = R._paths(red, R._forward_q(red, Om), z)
        xi, eta = rng.standard_normal((n_particles, n)), rng.standard_normal((n_particles, n))
        s = rng.standard_normal((n_particles, n)) if red.trace or red.probe is not None else None
        b0 = rng.standard_normal(n_particles)
        means.append(R._particle_map(red, f, xi, eta, b0, Om, z=z, s=s).mean(0))
    means = np.array(means)
    return means.mean(0), means.std(0, ddof=1) / math.sqrt(chunks)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_mean_field_is_the_width_limit(activation, weights):
    for fam in (ResNet.scaled(12, 64, 2.0, activation=activation, weights=weights),
                ResNet(10, 64, 0.4, skip_scale=0.8, hidden_std=1.3 / math.sqrt(64), activation=activation,
                       trained=(3, 5, 6, 9), weights=weights)):
        Om = R.mean_field(R.Reduction.of(fam))
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = Om[R.iBU] / np.sqrt(Om[R.iB] * Om[R.iU2])
        lim = T.bfa(fam).cos
        ok = np.isfinite(lim)
        assert np.array_equal(np.isfinite(cos), ok)
        np.testing.assert_allclose(cos[ok], lim[ok], rtol=1e-12)
        # the trace probe: <b^2> <w^2> = M1's width limit k_v; the rest of the network unchanged
        tr = R.mean_field(replace(R.Reduction.of(fam), trace=True))
        np.testing.assert_allclose(tr[R.iB] * tr[R.iU2], np.cumsum(fam.trained_mask[:-1]), rtol=1e-12)
        np.testing.assert_array_equal(tr[[R.iQ, R.iY, R.iB, R.iHX]], Om[[R.iQ, R.iY, R.iB, R.iHX]])


@pytest.mark.parametrize("activation,weights,trace,probe", [
    ("relu", "gaussian", False, None), ("linear", "gaussian", False, None),
    ("relu", "orthogonal", False, None), ("linear", "orthogonal", False, None),
    ("relu", "gaussian", True, None), ("relu", "orthogonal", True, None),
    ("relu", "gaussian", False, 2), ("relu", "gaussian", False, 5), ("linear", "gaussian", False, 4),
    ("relu", "orthogonal", False, 2), ("relu", "orthogonal", False, 5), ("linear", "orthogonal", False, 4)])
def test_mean_map_against_particles(activation, weights, trace, probe):
    red = R.Reduction.of(ResNet.scaled(7, 64, 2.0, activation=activation, weights=weights))
    red = replace(red, trace=trace, probe=probe)
    rng = np.random.default_rng(0)
    Om = R.mean_field(red) * (1 + 0.2 * rng.standard_normal((red.K, red.n)))
    # the terms that vanish at the fixed point (rank-one forward terms, their cross moments)
    Om[[R.iY, R.iHX, R.iBE]] = 0.3 * rng.standard_normal((3, red.n))
    if probe is not None:   # and the M2 probe's (<b rho> too: r is independent of b)
        Om[[R.iYR, R.iBR, R.iHP, R.iXP, R.iRE]] = 0.1 * rng.standard_normal((5, red.n))
    Om[R.iXH] = 0.3 * np.sqrt(Om[R.iQ]) * rng.standard_normal(red.n)
    if red.orthogonal:      # Haar: the normalisations (1 at the fixed point) and <y eta> (0)
        Om[[R.iZZ, R.iXX, R.iEE], 1:] = 1 + 0.2 * rng.standard_normal((3, red.n - 1))
        Om[R.iYE, 1:] = 0.3 * rng.standard_normal(red.n - 1)
        if probe is not None:   # <xi'^2> (1), <xi xi'> (0)
            Om[R.iPP, 1:] = 1 + 0.2 * rng.standard_normal(red.n - 1)
            Om[R.iXIP, 1:] = 0.2 * rng.standard_normal(red.n - 1)
    exact = R.mean_map(red, Om)
    mc, se = _particle_mean(red, Om, 100_000, 12, seed=1)
    used = se > 0
    z = (exact - mc)[used] / se[used]
    assert np.abs(z).max() < 5.0, np.abs(z).max()
    assert np.array_equal(exact[~used], mc[~used])      # unused entries: 0 in both


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_m2_probe_fixed_point_is_the_width_limit(activation, weights):
    """The M2 probe's ``<b_v^2>^2 <u_v^2>`` at the fixed point is the width limit's ``M2`` at every
    ``v``; the rest of the network is unchanged."""
    fam = ResNet(9, 64, 0.4, skip_scale=0.8, hidden_std=1.3 / math.sqrt(64), activation=activation,
                 trained=(3, 5, 6), weights=weights)
    want = _moment_limits(fam, T.bfa(fam))[1]
    Om = R.mean_field(R.Reduction.of(fam))
    for v in range(fam.depth - 1):
        pr = R.mean_field(replace(R.Reduction.of(fam), probe=v))
        assert pr[R.iB, v] ** 2 * pr[R.iU2, v] == pytest.approx(want[v], rel=1e-12, abs=1e-300)
        np.testing.assert_array_equal(pr[[R.iQ, R.iY, R.iB, R.iHX]], Om[[R.iQ, R.iY, R.iB, R.iHX]])
    with pytest.raises(ValueError, match="probe must be a hidden layer 0 .. 7 of a reduction without"):
        replace(R.Reduction.of(fam), probe=3, trace=True)
    with pytest.raises(ValueError, match="got 8"):
        replace(R.Reduction.of(fam), probe=8)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_m2_c1_against_the_linear_recursion(weights):
    """The M2 probe's expansion (one per layer ``v``) against the exact moment recursion's
    ``m2_c1`` (linear ResNets)."""
    fam = ResNet.scaled(8, 64, 2.0, activation="linear", weights=weights)
    exact = T.finite_width(fam).m2_c1
    for v in (2, 4, 6):
        c1, se = R.c1_expansion(replace(R.Reduction.of(fam), probe=v), probes=100_000, batches=8, seed=3)
        assert abs(c1[0] - exact[v]) < 4.5 * se[0], (v, c1, se, exact[v])
        assert exact[v] > 20 * se[0]


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_c1_against_the_linear_chain(weights):
    """Two independent routes to the linear ResNet's c1 (Haar: negative, unlike the Gaussian's)."""
    fam = ResNet.scaled(8, 64, 2.0, activation="linear", weights=weights)
    c1, se = R.c1_expansion(R.Reduction.of(fam), probes=200_000, batches=8, seed=3)
    exact = T.finite_width(fam).c1
    ok = np.isfinite(exact)
    assert np.array_equal(np.isfinite(c1), ok)
    z = (c1[ok] - exact[ok]) / np.maximum(se[ok], 1e-4)
    assert np.abs(z).max() < 4.5, z            # 8 batches: t with 7 degrees of freedom
    assert np.ptp(exact[ok]) > 10 * se[ok].max()          # the check resolves its shape


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_m1_c1_against_the_linear_recursion(weights):
    """The trace probe's expansion against the exact moment recursion's ``m1_c1`` (linear ResNets)."""
    fam = ResNet.scaled(8, 64, 2.0, activation="linear", weights=weights)
    (c1, var), (se, var_se) = R.c1_expansion(replace(R.Reduction.of(fam), trace=True), probes=100_000,
                                             batches=8, seed=3)
    exact = T.finite_width(fam)
    assert c1[0] == exact.m1_c1[0] == 0.0                # nothing trained yet: M1 = 0
    z = (c1[1:] - exact.m1_c1[1:]) / np.maximum(se[1:], 1e-4)
    assert np.abs(z).max() < 4.5, z
    assert exact.m1_c1[-1] > 20 * se[-1]
    # the estimate's variance less the probe's own (2 M2) is the networks' spread of M1, whose
    # leading order m Var M1 the recursion gives exactly (at a large width)
    wide = T.finite_width(fam.replace(width=2 ** 14))
    z = (var - 2 * wide.m2_limit - 2 ** 14 * wide.m1_sd ** 2)[1:] / var_se[1:]
    assert np.abs(z).max() < 4.5, z


def test_c1_relu_first_trained_layer_and_sign():
    """``cos = 1`` at the first trained layer at every width, so ``c1 = 0`` there; deeper, the
    network is more aligned than its width limit (``c1 > 0``)."""
    red = R.Reduction.of(ResNet.scaled(8, 64, 2.0))
    c1, se = R.c1_expansion(red, probes=100_000, batches=8, seed=4)
    assert abs(c1[1]) < 1e-3
    assert np.all(c1[3:] - 3 * se[3:] > 0), (c1, se)


@pytest.mark.parametrize("activation", ["relu", "linear"])
def test_forward_covariance(activation):
    red = R.Reduction.of(ResNet.scaled(6, 64, 2.0, activation=activation))
    Om = R.mean_field(red)
    exact = R._forward_cov(red, Om[R.iQ])
    f = R._paths(red, Om[R.iQ], np.random.default_rng(2).standard_normal((1_000_000, red.n)))
    h = np.maximum(f, 0) if red.relu else f
    np.testing.assert_allclose(np.cov((h * h).T), exact, rtol=0, atol=0.03 * np.abs(exact).max())


@pytest.mark.parametrize("c,trained,weights,tol", [(2.0, "all-but-first", "gaussian", 0.011),
                                                   (1.0, "all", "gaussian", 0.0015),
                                                   (2.0, "all-but-first", "orthogonal", 0.027)])
def test_depth_extrapolation_on_the_linear_chain(c, trained, weights, tol):
    """Richardson in 1/L from L = 32, 64 against the linear chain's c1, exact at every depth."""
    fam = ResNet.scaled(512, 64, c, activation="linear", trained=trained, weights=weights)
    exact = T.finite_width(fam).c1
    c1, se = R._depth_extrapolated(fam, lambda f: (T.finite_width(f).c1, np.full(f.depth - 1, 0.01)))
    ok = np.isfinite(exact)
    assert np.array_equal(np.isfinite(c1), ok)
    err = np.abs(c1[ok] - exact[ok])
    assert err.max() < tol and err.max() < 0.06 * np.abs(exact[ok]).max(), err.max()
    # the extrapolation's weights amplify the coarse standard errors: 15/8 and 7/8 at L = 512
    np.testing.assert_allclose(se[ok], 0.01 * math.hypot(15 / 8, 7 / 8))


def test_finite_width_of_relu_resnets(monkeypatch):
    """``finite_width`` runs the expansion at the family's depth up to 64 (seeded by the seed and
    the depth), deeper at depths 32 and 64 with ``beta^2 L`` kept; the width only scales ``c1``."""
    fam = ResNet.scaled(8, 64, 2.0)
    r = T.finite_width(fam, probes=16_000, seed=5)
    c1, se = R.c1_expansion(R.Reduction.of(fam), 16_000, 8, np.random.SeedSequence([5, 8]))
    assert np.array_equal(r.c1, c1, equal_nan=True) and np.array_equal(r.c1_se, se, equal_nan=True)
    (m1c, var), (m1s, _) = R.c1_expansion(replace(R.Reduction.of(fam), trace=True), 16_000, 8,
                                          np.random.SeedSequence([5, 8]))
    # K = t I at the first trained layer (v = 2): M1 = 1 exactly, not an estimate
    first = 1
    assert r.m1_c1[first] == r.m1_c1_se[first] == r.m1_sd[first] == 0.0 and r.m1[first] == 1.0
    m1c[first] = m1s[first] = 0.0
    assert np.array_equal(r.m1_c1, m1c) and np.array_equal(r.m1_c1_se, m1s)
    np.testing.assert_allclose(r.m1, r.m1_limit + m1c / 64)
    sd = np.sqrt(np.maximum(var - 2 * r.m2_limit, 0) / 64)
    sd[first] = 0.0
    np.testing.assert_allclose(r.m1_sd, sd)
    assert m1c[-1] > 10 * m1s[-1]               # E M1 above its width limit, like linear ResNets'
    assert 0 < r.m1_sd[-1] < 0.5 * r.m1[-1]
    # M2: the probe's expansion at four layers (v = 3, 4, 6, 7), relative to the width limit
    rel, rse = R.family_m2_c1(fam, 16_000, 8, 5)
    np.testing.assert_array_equal(r.m2_c1, rel * r.m2_limit)
    np.testing.assert_array_equal(r.m2_c1_se, rse * r.m2_limit)
    np.testing.assert_allclose(r.m2, r.m2_limit + r.m2_c1 / 64)
    c6, s6 = R.c1_expansion(replace(R.Reduction.of(fam), probe=5), 16_000, 8, np.random.SeedSequence([5, 8]))
    assert r.m2_c1[5] == pytest.approx(c6[0], rel=1e-12) and r.m2_c1_se[5] == pytest.approx(s6[0], rel=1e-12)
    assert r.m2_c1[1] == 0.0 and r.m2[1] == 1.0 and r.m2_c1[-1] > 10 * r.m2_c1_se[-1]
    lean = T.finite_width(fam, probes=16_000, seed=5, moments=False)
    assert np.array_equal(lean.c1, c1, equal_nan=True) and np.all(np.isnan(lean.m1))
    monkeypatch.setattr(R, "c1_expansion", None)           # the width only scales c1: from the memo
    wide = T.finite_width(fam.replace(width=256), probes=16_000, seed=5)
    monkeypatch.undo()
    assert np.array_equal(wide.c1, c1, equal_nan=True)
    haar = T.finite_width(fam.replace(weights="orthogonal"), probes=16_000, seed=5)    # not the memo's
    assert haar.c1[-1] < 0 < c1[-1]
    assert haar.m2_c1[-1] > 10 * haar.m2_c1_se[-1] and haar.m2[1] == 1.0
    assert np.allclose(wide.cos - wide.cos_limit, c1 / 256, equal_nan=True)
    lim = T.bfa(fam)
    assert np.array_equal(r.cos_limit, lim.cos, equal_nan=True)
    assert np.array_equal(r.cos, r.cos_first_order, equal_nan=True)
    assert np.array_equal(r.m1_limit, np.arange(7.0))
    seen = []

    def fake(red, probes, batches, seed, on_batch=None):
        seen.append((red.n, red.beta, red.trace))
        s = (np.arange(red.n) - 1) / (red.n - 2)       # c1 = s on the coarse layer coordinate
        return np.where(s >= 0, s, np.nan), np.zeros(red.n)
    monkeypatch.setattr(R, "c1_expansion", fake)
    monkeypatch.setattr(R, "_MEMO", {})
    deep = ResNet.scaled(256, 64, 2.0)
    r = T.finite_width(deep, moments=False)
    assert seen == [(31, pytest.approx(2.0 / math.sqrt(32)), False),
                    (63, pytest.approx(2.0 / math.sqrt(64)), False)]
    np.testing.assert_allclose(r.c1[1:], np.arange(254) / 253, atol=1e-12)
    np.testing.assert_allclose(r.cos, r.cos_limit + r.c1 / 64, equal_nan=True)


def test_m1_depth_extrapolation_is_relative(monkeypatch):
    """Deep ReLU ResNets' ``m1_c1`` is extrapolated in depth relative to ``k_v`` (it grows like
    ``L``): on the linear recursion's exact ``m1_c1`` (fed in place of the expansion) within 0.3%
    at L = 512 from L = 32, 64."""
    m = 2 ** 14

    def rows(fam):              # m1_c1 and the leading m Var M1 (the probe's part left out)
        r = T.finite_width(fam.replace(width=m))
        return np.stack([r.m1_c1, m * r.m1_sd ** 2])

    def exact(red, probes, batches, seed, on_batch=None):
        fam = ResNet.scaled(red.n + 1, 64, 2.0, activation="linear")
        assert red.trace and red.beta == pytest.approx(fam.branch_scale)
        return rows(fam), np.full((2, red.n), 0.01)
    monkeypatch.setattr(R, "c1_expansion", exact)
    monkeypatch.setattr(R, "_MEMO", {})
    fam = ResNet.scaled(512, 64, 2.0)
    c1, se, var = R.family_c1(fam, trace=True)
    want = rows(ResNet.scaled(512, 64, 2.0, activation="linear"))
    assert c1[0] == se[0] == var[0] == 0.0              # nothing trained yet: M1 = 0
    np.testing.assert_allclose(c1[1:], want[0, 1:], rtol=3e-3)
    np.testing.assert_allclose(var[1:], want[1, 1:], rtol=3e-3)
    assert want[0, -1] > 3000


def test_m2_nodes_and_depth_extrapolation(monkeypatch):
    """``family_m2_c1`` runs the M2 probe at four layers, interpolates relative to the width limit
    and extrapolates in depth beyond 64: on the linear recursion's exact ``m2_c1`` (fed in place of
    the expansion) within 0.5% of its largest value at L = 40 (interpolated) and L = 512 (from
    L = 32, 64); a network with few trained layers or a gap runs at every layer past the first."""
    seen = []

    def exact(red, probes, batches, seed, on_batch=None):
        seen.append((red.n + 1, red.probe))
        fam = ResNet.scaled(red.n + 1, 2 ** 14, 2.0, activation="linear")
        assert red.beta == pytest.approx(fam.branch_scale) and not red.relu
        return T.finite_width(fam).m2_c1[[red.probe]], np.array([0.01])
    monkeypatch.setattr(R, "c1_expansion", exact)
    monkeypatch.setattr(R, "_MEMO", {})
    for L, runs in ((40, [(40, v) for v in (10, 19, 29, 38)]),
                    (512, [(32, v) for v in (8, 15, 23, 30)] + [(64, v) for v in (16, 31, 47, 62)])):
        seen.clear()
        fam = ResNet.scaled(L, 2 ** 14, 2.0, activation="linear")
        rel, se = R.family_m2_c1(fam)
        assert seen == runs
        r = T.finite_width(fam)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.where(r.m2_limit > 0, r.m2_c1 / r.m2_limit, 0.0)
        assert rel[0] == rel[1] == se[1] == 0.0               # M2 = 0, then 1 in every network
        assert np.abs(rel - want).max() < 5e-3 * want.max(), np.abs(rel - want).max() / want.max()
        assert want.max() > 20
    seen.clear()
    fam = ResNet(9, 64, 0.4, trained=(3, 5, 6), activation="linear")
    assert R._m2_nodes(fam).tolist() == list(range(4, 9))
    assert R._m2_nodes(ResNet.scaled(6, 64, 2.0)).tolist() == [3, 4, 5]


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_simulated_trace_probe_is_the_bfk(weights):
    """The trace probe in the simulated reduction estimates the BFK's ``M1`` without bias: against
    the dense sampler's kernels (normalised as ``FiniteWidthBFA`` says) at m = 16, where ``E M1``
    is a third above its width limit."""
    fam = ResNet.scaled(8, 16, 2.0, weights=weights)
    v = np.array([4, 7])
    a = sample_bfa(fam, 600, seed=2, probes=1)
    k = np.cumsum(fam.trained_mask)[v - 1]
    M1 = sample_bfk(fam, layers=v, samples=600, seed=2).moments(1)[0] * k \
        * a.b_norm[:, v - 1] ** 2 / a.loss_decay[:, v - 1]
    rng = np.random.default_rng(3)
    z, xi, eta, src = (rng.standard_normal((8000, 16, 7)) for _ in range(4))
    est = R.simulate(replace(R.Reduction.of(fam), trace=True), z, xi, eta,
                     rng.standard_normal((8000, 16)), src)[:, v - 1]
    se = np.hypot(M1.std(0) / math.sqrt(600), est.std(0) / math.sqrt(8000))
    assert np.abs((M1.mean(0) - est.mean(0)) / se).max() < 4.0
    assert est.mean(0)[-1] - k[-1] > 6 * se[-1]         # the finite-width excess is resolved


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_simulated_m2_probe_is_the_bfk(weights):
    """The M2 probe in the simulated reduction estimates the BFK's ``M2`` without bias: against the
    dense sampler's kernels at m = 16, where ``E M2`` is 1.2 to 3.5 times its width limit."""
    fam = ResNet.scaled(8, 16, 2.0, weights=weights)
    v = np.array([3, 7])
    a = sample_bfa(fam, 600, seed=2, probes=1)
    k = np.cumsum(fam.trained_mask)[v - 1]
    M2 = sample_bfk(fam, layers=v, samples=600, seed=2).moments(2)[1] \
        * (k * a.b_norm[:, v - 1] ** 2 / a.loss_decay[:, v - 1]) ** 2
    rng = np.random.default_rng(3)
    lim = _moment_limits(fam, T.bfa(fam))[1][v - 1]
    for j, vv in enumerate(v):
        z, xi, eta, src = (rng.standard_normal((8000, 16, 7)) for _ in range(4))
        est = R.simulate(replace(R.Reduction.of(fam), probe=int(vv - 1)), z, xi, eta,
                         rng.standard_normal((8000, 16)), src)
        se = np.hypot(M2[:, j].std() / math.sqrt(600), est.std() / math.sqrt(8000))
        assert abs(M2[:, j].mean() - est.mean()) < 4.0 * se
        assert est.mean() - lim[j] > 10 * est.std() / math.sqrt(8000)      # the excess is resolved


def _simulated(fam, n, seed):
    rng = np.random.default_rng(seed)
    m, L = fam.width, fam.depth
    z, xi, eta = (rng.standard_normal((n, m, L - 1)) for _ in range(3))
    c = R.simulate(R.Reduction.of(fam), z, xi, eta, rng.standard_normal((n, m)))
    return c.mean(0), c.std(0, ddof=1) / math.sqrt(n)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_simulated_reduction_is_the_network(weights):
    """The reduction with each network's own averages is the network (its own masks), exactly in
    law: against the sampler at m = 16, where the finite-width gap is 20 (Gaussian) and 6.5
    (Haar) standard errors; Haar weights condition on the forward image with normalised fresh
    vectors."""
    fam = ResNet.scaled(10, 16, 2.0, weights=weights)
    mean, se = _simulated(fam, 8000, 1)
    s = sample_bfa(fam, 1500, seed=2).cos
    z = (mean - s.mean(0))[1:] / np.hypot(se, s.std(0, ddof=1) / math.sqrt(1500))[1:]
    assert np.abs(z).max() < 4.0, z
    assert (mean - T.bfa(fam).cos)[-1] > 5 * se[-1]             # the finite-width gap is resolved
