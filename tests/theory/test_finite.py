"""rmtalign/theory/finite.py: the finite-width BFA of MLPs (Gaussian and orthogonal weights) and of
linear Gaussian ResNets.

Each ingredient separately: the 1/m constants against exact binomial sums, the chain's width
limit against theory.bfa, the resummation's first order against c1, the resummation against a
Monte Carlo of the chain itself (the oracle below), and the prediction against the exact sampler
at L/m = 1.5, where the width limit is far off. The BFK moments: their exact recursion against
the sampler's kernels, its width limit against theory.bfa and its first order against the
closed form of E M1 (``2 sigma^2 sum_{j<v} k_j / m``, ``sigma^2`` as in ``_FIRST_ORDER``)."""
import json
import math
import warnings

import numpy as np
import pytest
from scipy import stats

from rmtalign import theory as T
from rmtalign.families import MLP, ResNet
from rmtalign.sampling import sample_bfa, sample_bfk
from rmtalign.theory.finite import (_FIRST_ORDER, _first_order, _resnet_law, _resnet_limit,
                                    _resummed, _trained_counts)


def chain_oracle(family, n, seed):
    """Monte Carlo of the scalar chain (module docstring of rmtalign.theory.finite):
    ``Zp_v = (k_{v-1}^2 + beta_v Zp_{v-1}) Q_v / P_v`` (Gaussian weights) or
    ``(k_{v-1}^2 (1 - gamma_v) + beta_v Zp_{v-1}) / gamma_v`` (orthogonal), ``cos = k / sqrt(k^2 + Zp)``:
    ``n`` paths, (n, L-1)."""
    rng = np.random.default_rng(seed)
    m, relu = family.width, family.activation == "relu"
    k = _trained_counts(family)
    zp = np.zeros(n)
    cos = np.full((n, k.size), np.nan)
    for i, kv in enumerate(k):
        if i > 0:
            N = rng.binomial(m, 0.5, n) if relu else np.full(n, m)
            N = np.maximum(N, 2)  # N <= 1 has probability < 2^-m m; beta needs N >= 2
            beta = rng.beta((N - 1) / 2, np.maximum(m - N, 1e-9) / 2) if relu else 1.0
            K = k[i - 1] ** 2
            if family.weights == "gaussian":
                zp = (K + beta * zp) * rng.chisquare(m - 1, n) / rng.chisquare(N)
            else:
                gamma = rng.beta(N / 2, np.maximum(m - N, 1e-9) / 2) if relu else 1.0
                zp = (K * (1 - gamma) + beta * zp) / gamma
        if kv > 0:
            cos[:, i] = kv / np.sqrt(kv * kv + zp)
    return cos


def _uniform_coordinate(rng, dim, n):
    """One coordinate of ``n`` independent uniform unit vectors of ``R^dim``."""
    xi = rng.standard_normal(n)
    return xi / np.sqrt(xi * xi + rng.chisquare(dim - 1, n))


def resnet_chain_oracle(family, n, seed):
    """Monte Carlo of the linear ResNet chains (module docstring of rmtalign.theory.finite) with
    the exact laws of their scalars. Gaussian: ``g1 ~ N(0, s^2)``, ``Q' ~ s^2 chi2_{m-1}``, ``c`` a
    coordinate of a uniform unit vector of ``R^(m-1)``, ``Y = (a rho + beta s zeta)^2 +
    beta^2 s^2 chi2_{m-2}``; orthogonal: ``g1 / sigma``, ``c``, ``c'`` coordinates of uniform unit
    vectors of ``R^m``, ``R^(m-1)``, ``R^(m-1)``: (n, L-1)."""
    rng = np.random.default_rng(seed)
    m = family.width
    a, beta, sig2 = _resnet_law(family)
    k = _trained_counts(family)
    zp, kp = np.zeros(n), 0.0
    cos = np.full((n, k.size), np.nan)
    for i, kv in enumerate(k):
        if i > 0 and kp > 0:
            Z = kp * kp + zp
            c = _uniform_coordinate(rng, m - 1, n)
            if family.weights == "orthogonal":
                sig = math.sqrt(sig2[i])
                g1 = sig * _uniform_coordinate(rng, m, n)
                Qp = sig2[i] - g1 * g1
                H = (a + beta * g1) ** 2 + beta * beta * Qp
                ew = (kp * (a + beta * g1) + beta * np.sqrt(Qp * zp) * c) / H
                gw = (kp * (a * g1 + beta * sig2[i]) - a * np.sqrt(Qp * zp) * c) / (sig * H)
                pw2, qw2 = np.maximum(Z / H - ew * ew, 0), np.maximum(Z / H - gw * gw, 0)
                zp = (a * a * pw2 + 2 * a * beta * sig * np.sqrt(pw2 * qw2) * _uniform_coordinate(rng, m - 1, n)
                      + beta * beta * sig2[i] * qw2)
            else:
                s = math.sqrt(sig2[i] / m)
                e1 = a + beta * s * rng.standard_normal(n)
                Qp = s * s * rng.chisquare(m - 1, n)
                H = e1 * e1 + beta * beta * Qp
                T = kp * e1 + beta * np.sqrt(Qp * zp) * c
                rho = np.sqrt(np.clip(1 - T * T / (H * Z), 0, 1))
                Y = (a * rho + beta * s * rng.standard_normal(n)) ** 2 + beta ** 2 * s * s * rng.chisquare(m - 2, n)
                zp = Z * Y / H
        if kv > 0:
            cos[:, i] = kv / np.sqrt(kv * kv + zp)
        kp = kv
    return cos


def _binomial_constants(m):
    """Exact ``r1, e1, r2, e12, e2`` of the chain's moment recursion for ReLU (sums over
    ``N ~ Bin(m, 1/2)``, ``N >= 5`` where ``E[1/P^2]`` is finite; the rest has mass < 2^-m m^5)."""
    N = np.arange(5, m + 1, dtype=float)
    w = stats.binom.pmf(N, m, 0.5)
    i1, i2 = 1 / (N - 2), 1 / ((N - 2) * (N - 4))
    return np.array([(m - 1) * w @ i1, w @ ((N - 1) * i1), (m * m - 1) * w @ i2,
                     2 * (m + 1) * w @ ((N - 1) * i2), w @ ((N * N - 1) * i2)])


def _orthogonal_constants(m):
    """The same for orthogonal ReLU layers: ``1/gamma``, ``gamma ~ Beta(N/2, (m-N)/2)``, and
    ``beta`` have exact rational moments given ``N``."""
    N = np.arange(5, m + 1, dtype=float)
    w = stats.binom.pmf(N, m, 0.5)
    inv = (m - 2) / (N - 2)                          # E[1/gamma | N]
    inv2 = (m - 2) * (m - 4) / ((N - 2) * (N - 4))   # E[1/gamma^2 | N]
    b1, b2 = (N - 1) / (m - 1), (N - 1) * (N + 1) / ((m - 1) * (m + 1))  # E[beta], E[beta^2]
    return np.array([w @ (inv - 1), w @ (b1 * inv), w @ (inv2 - 2 * inv + 1),
                     2 * w @ (b1 * (inv2 - inv)), w @ (b2 * inv2)])


def _linear_constants(m):
    R = (m * m - 1) / ((m - 2) * (m - 4))
    return np.array([(m - 1) / (m - 2), (m - 1) / (m - 2), R, 2 * R, R])


@pytest.mark.parametrize("key,exact", [(("relu", "gaussian"), _binomial_constants),
                                       (("linear", "gaussian"), _linear_constants),
                                       (("relu", "orthogonal"), _orthogonal_constants)])
def test_first_order_constants(key, exact):
    s2, a1, b1, a2, b12, b2 = _FIRST_ORDER[key]
    lead = np.array([s2, 1.0, s2 * s2, 2 * s2, 1.0])
    m = 4096
    # g(m) = m (const(m) - lead) = first + d2/m + d3/m^2 + ...; the second-order constants are
    # large (|d3| ~ 1e4: moments of 1/((N-2)(N-4))), so Richardson over m, 2m, 4m removes both,
    # leaving O(m^-3): 3e-7 measured; 1e-3 still pins the integers.
    g = {j: j * (exact(j) - lead) for j in (m, 2 * m, 4 * m)}
    r1 = {j: 2 * g[2 * j] - g[j] for j in (m, 2 * m)}
    rich = (4 * r1[2 * m] - r1[m]) / 3
    assert rich == pytest.approx([a1, b1, a2, b12, b2], abs=1e-3)


@pytest.mark.parametrize("family", [MLP(40, 64), MLP(30, 32, activation="linear"),
                                    MLP(20, 64, trained="all"), MLP(20, 64, trained=[2, 3, 7, 8]),
                                    MLP(25, 48, hidden_std=0.3, out_dim=3),
                                    MLP(30, 32, weights="orthogonal"),
                                    MLP(10, 32, weights="orthogonal", activation="linear")])
def test_chain_width_limit_is_bfa(family):
    lim, c1 = _first_order(_trained_counts(family), family.activation, family.weights)
    ref = T.bfa(family).cos
    assert np.array_equal(np.isnan(lim), np.isnan(ref))
    assert np.allclose(lim[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-12, atol=0)
    assert np.array_equal(np.isnan(c1), np.isnan(ref))


@pytest.mark.parametrize("activation,weights", [("relu", "gaussian"), ("linear", "gaussian"),
                                                ("relu", "orthogonal")])
def test_resummation_first_order_is_c1(activation, weights):
    f = MLP(12, 64, activation=activation, weights=weights)
    k = _trained_counts(f)
    lim, c1 = _first_order(k, activation, weights)
    d = {m: m * (_resummed(k, m, activation, weights) - lim) for m in (4000, 8000)}
    # Two independent routes to the 1/m term (rational moments expanded by hand; digamma
    # log-moments through the quadrature); Richardson leaves O(1/m^2) ~ 1e-6 relative, measured
    # agreement 1e-5 absolute. |c1| is 0.01 .. 0.3 here: 1e-3 would catch any wrong constant.
    rich = 2 * d[8000] - d[4000]
    assert rich[2:] == pytest.approx(c1[2:], abs=1e-3)
    assert np.isnan(rich[0]) and rich[1] == pytest.approx(0, abs=1e-9)  # cos = 1 at v = 2


@pytest.mark.parametrize("family", [MLP(64, 16), MLP(96, 32, activation="linear", trained="all"),
                                    MLP(128, 32, weights="orthogonal")])
def test_resummation_against_the_chain(family):
    n = 40000
    c = chain_oracle(family, n, seed=11)
    pred = T.finite_width(family).cos
    v = np.array([family.depth // 4, family.depth // 2, family.depth - 1])
    mean, se = c[:, v - 1].mean(axis=0), c[:, v - 1].std(axis=0) / math.sqrt(n)
    # Statistical part: Bonferroni over the 3 layers at family-wise 1e-3. Plus the resummation's
    # own error (Gaussian log-factors given N), documented as <= 0.5% at m = 16, 0.25% above.
    z = stats.norm.isf(1e-3 / 2 / v.size)
    bias = (0.005 if family.width < 32 else 0.0025) * pred[v - 1]
    assert np.all(np.abs(pred[v - 1] - mean) <= z * se + bias)


@pytest.mark.parametrize("family,seed,gap_layer", [(MLP(24, 16), 20260, 23),
                                                  (MLP(24, 16, weights="orthogonal"), 20261, 6)])
def test_prediction_against_the_exact_sampler(family, seed, gap_layer):
    """L/m = 1.5 at m = 16, where the width limit is far off: Gaussian weights at the output
    (theory: 0.298 vs 0.261 in the limit, the standard error is ~0.004), orthogonal weights at
    v = 6 (0.633 vs 0.674)."""
    n = 800
    r = sample_bfa(family, n, seed=seed)
    fw = T.finite_width(family)
    v = np.array([6, 12, 18, 23])
    mean, se = r.mean()[v - 1], r.sem()[v - 1]
    z = stats.norm.isf(1e-3 / 2 / v.size)  # Bonferroni over the 4 layers, family-wise 1e-3
    assert np.all(np.abs(fw.cos[v - 1] - mean) <= z * se)
    # power: the same data reject the width limit where the theory puts the largest gap
    j = gap_layer - 1
    assert abs(fw.cos_limit[j] - r.mean()[j]) > z * r.sem()[j]


@pytest.mark.parametrize("family", [ResNet.scaled(40, 32, 2.0, activation="linear"),
                                    ResNet.scaled(30, 16, 1.0, activation="linear", trained="all"),
                                    ResNet(20, 32, 0.6, activation="linear", skip_scale=0.9,
                                           hidden_std=0.2),
                                    ResNet.scaled(30, 32, 2.0, activation="linear", weights="orthogonal"),
                                    ResNet(20, 32, 0.6, activation="linear", skip_scale=0.9,
                                           hidden_std=0.2, weights="orthogonal")])
def test_resnet_chain_width_limit_is_bfa(family):
    lim = _resnet_limit(_trained_counts(family), *_resnet_law(family), family.weights == "orthogonal")
    ref = T.bfa(family).cos
    assert np.array_equal(np.isnan(lim), np.isnan(ref))
    assert np.allclose(lim[~np.isnan(ref)], ref[~np.isnan(ref)], rtol=1e-12, atol=0)


@pytest.mark.parametrize("family", [ResNet.scaled(48, 16, 2.0, activation="linear"),
                                    ResNet.scaled(128, 32, 1.0, activation="linear"),
                                    ResNet(24, 32, 0.6, activation="linear", skip_scale=0.9,
                                           trained="all"),
                                    ResNet.scaled(64, 16, 2.0, activation="linear", weights="orthogonal")])
def test_resnet_resummation_against_the_chain(family):
    n = 40000
    c = resnet_chain_oracle(family, n, seed=12)
    pred = T.finite_width(family).cos
    v = np.array([family.depth // 4, family.depth // 2, family.depth - 1])
    mean, se = c[:, v - 1].mean(axis=0), c[:, v - 1].std(axis=0) / math.sqrt(n)
    # Bonferroni over the 3 layers at family-wise 1e-3, plus the quadrature's own error (log-normal
    # Y and Hermite nodes), measured <= 0.15% at branch scales up to 0.5
    z = stats.norm.isf(1e-3 / 2 / v.size)
    assert np.all(np.abs(pred[v - 1] - mean) <= z * se + 0.002 * pred[v - 1])
    # power: the finite-width shift itself is many standard errors here
    r = T.finite_width(family)
    assert np.all(np.abs(r.cos_limit[v[1:] - 1] - mean[1:]) > 3 * z * se[1:])


def test_resnet_without_skip_is_the_linear_mlp():
    """``a = 0``, ``beta = 1``: the ResNet chain is the linear MLP's. Two independent routes to
    ``c1`` (the MLP's moment recursion by hand; Richardson on the ResNet quadrature) and two
    quadratures of ``cos`` (exact log-chi2 ratios; a log-normal ``Y``, whose error grows with
    ``beta^2 L / m``: 0.1% here at L/m = 1/2, 0.4% at L/m = 1.25)."""
    res = T.finite_width(ResNet(16, 32, 1.0, activation="linear"))
    mlp = T.finite_width(MLP(16, 32, activation="linear"))
    ok = ~np.isnan(mlp.cos)
    assert np.array_equal(np.isnan(res.cos), ~ok)
    assert np.allclose(res.cos_limit[ok], mlp.cos_limit[ok], rtol=1e-12)
    assert np.allclose(res.c1[ok], mlp.c1[ok], rtol=0, atol=2e-3 * np.max(np.abs(mlp.c1[ok])))
    assert np.allclose(res.cos[ok], mlp.cos[ok], rtol=1.5e-3)


@pytest.mark.parametrize("family,n,seed", [
    (ResNet.scaled(32, 16, 2.0, activation="linear"), 600, 20262),
    (ResNet.scaled(128, 16, 3.0, activation="linear", weights="orthogonal"), 300, 20263)])
def test_resnet_prediction_against_the_exact_sampler(family, n, seed):
    """Linear ResNets at m = 16 where the width limit is off by ~5-6 SE at the output (theory:
    0.578 vs 0.557, Gaussian, c = 2; 0.430 vs 0.394, orthogonal, c = 3)."""
    r = sample_bfa(family, n, seed=seed)
    fw = T.finite_width(family)
    L = family.depth
    v = np.array([L // 4, L // 2, 3 * L // 4, L - 1])
    mean, se = r.mean()[v - 1], r.sem()[v - 1]
    z = stats.norm.isf(1e-3 / 2 / v.size)
    assert np.all(np.abs(fw.cos[v - 1] - mean) <= z * se)
    assert abs(fw.cos_limit[L - 2] - mean[-1]) > z * se[-1]


def test_orthogonal_resnet_without_skip_is_exactly_aligned():
    r = T.finite_width(ResNet(20, 16, 1.0, activation="linear", weights="orthogonal"))
    assert np.allclose(r.cos[1:], 1.0, rtol=0, atol=1e-12) and np.allclose(r.c1[1:], 0.0, atol=1e-6)


@pytest.mark.parametrize("family,what", [
    (ResNet.scaled(128, 32, 2.0, trained=[1, 100]), "trained='all' or 'all-but-first'"),
    (ResNet(128, 32, 0.5, skip_scale=1.0), "variance-preserving skip"),
    (ResNet.scaled(128, 32, 6.0), r"branch_scale \* sqrt\(depth\) <= 5.66"),
    (MLP(12, 32, lr_rule="uniform"), "balanced"),
    (ResNet(12, 32, 0.5, activation="linear", lr_rule="uniform"), "balanced"),
])
def test_uncovered_families_raise(family, what):
    with pytest.raises(NotImplementedError, match=what):
        T.finite_width(family)


def test_orthogonal_linear_is_exactly_aligned():
    r = T.finite_width(MLP(20, 16, weights="orthogonal", activation="linear"))
    assert np.all(r.cos[1:] == 1.0) and np.all(r.c1[1:] == 0.0) and np.allclose(r.cos_limit[1:], 1.0)


def test_small_width_refused():
    with pytest.raises(ValueError, match="width >= 16"):
        T.finite_width(MLP(8, 12))


@pytest.mark.parametrize("kwargs,err,what", [({"probes": 10}, ValueError, "probes must be >= 800"),
                                             ({"probes": 1e5}, TypeError, "probes must be an integer"),
                                             ({"seed": -1}, ValueError, "seed must be >= 0")])
def test_bad_probes_and_seed_refused_for_every_family(kwargs, err, what):
    with pytest.raises(err, match=what):
        T.finite_width(MLP(8, 16), **kwargs)


def test_result_protocol():
    r = T.finite_width(MLP(10, 32))
    assert np.array_equal(r.layers, np.arange(1, 10))
    assert np.isnan(r.cos[0]) and r.cos[1] == 1.0
    assert np.allclose(r.cos_first_order, r.cos_limit + r.c1 / 32, equal_nan=True)
    json.dumps(r.to_dict())
    t = r.to_table()
    assert set(t) == {"layer", "cos", "cos_limit", "c1", "cos_first_order", "m1", "m2", "m1_limit",
                      "m2_limit", "m1_c1", "m2_c1", "m1_sd", "m1_typical", "c1_se", "m1_c1_se",
                      "m2_c1_se"}
    assert len({len(c) for c in t.values()}) == 1
    assert np.all(r.m1_c1_se == 0.0) and np.all(r.m2_c1_se == 0.0)       # exact recursion
    lean = T.finite_width(MLP(10, 32), moments=False)
    assert np.array_equal(lean.cos, r.cos, equal_nan=True) and all(np.all(np.isnan(x)) for x in
                                                  (lean.m1, lean.m2, lean.m1_sd, lean.m1_c1_se,
                                                   lean.m2_c1_se, lean.m1_typical))
    with pytest.raises(TypeError, match="moments must be True or False, got 1"):
        T.finite_width(MLP(10, 32), moments=1)
    assert "\n" not in repr(r)
    assert isinstance(r, T.FiniteWidthBFA)


# --------------------------------------------------------------------------- BFK moments
def sampled_normalised_moments(family, n, seed, layers):
    """``M1, M2`` of ``k_v K_v / (e^T K_v e)`` (the backward-normalised kernel) from the dense
    sampler: (n, len(layers)) each."""
    a = sample_bfa(family, n, seed=seed, probes=1)
    b = sample_bfk(family, layers=layers, samples=n, seed=seed)
    mom = b.moments(2)
    v = np.asarray(layers)
    g = a.b_norm[:, v - 1] ** 2 / a.loss_decay[:, v - 1] * _trained_counts(family)[v - 1]
    return mom[0] * g, mom[1] * g * g


@pytest.mark.parametrize("family,seed", [(MLP(6, 32), 31),
                                         (MLP(6, 32, activation="linear", trained="all"), 32),
                                         (MLP(6, 32, weights="orthogonal"), 33),
                                         (ResNet(6, 32, 0.7, activation="linear"), 41),
                                         (ResNet(6, 32, 0.7, activation="linear", weights="orthogonal"), 42)])
def test_moments_against_the_exact_sampler(family, seed):
    """L/m = 3/16, where the means are already 10-40% above the width limit (M2: up to 2 times)."""
    n, v = 1200, [3, 5]
    M1, M2 = sampled_normalised_moments(family, n, seed, v)
    fw = T.finite_width(family)
    z = stats.norm.isf(1e-3 / 2 / 4)  # Bonferroni over 2 moments x 2 layers, family-wise 1e-3
    j = np.asarray(v) - 1
    for x, pred, lim in ((M1, fw.m1, fw.m1_limit), (M2, fw.m2, fw.m2_limit)):
        mean, se = x.mean(axis=0), x.std(axis=0) / math.sqrt(n)
        assert np.all(np.abs(pred[j] - mean) <= z * se)
    # the typical trace (MLPs: the log-space chain; ResNets: log-normal) against the mean of log M1
    mean, se = np.log(M1).mean(axis=0), np.log(M1).std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(np.log(fw.m1_typical[j]) - mean) <= z * se)
    # power: the width limit is rejected at the output
    mean, se = M1[:, 1].mean(), M1[:, 1].std() / math.sqrt(n)
    assert abs(fw.m1_limit[4] - mean) > z * se


@pytest.mark.parametrize("family", [MLP(12, 32), MLP(40, 64, activation="linear"),
                                    MLP(30, 32, trained=[1, 3, 4, 9, 20]),
                                    MLP(20, 32, weights="orthogonal", trained="all")])
def test_moments_first_order_and_width_limit(family):
    """``m1_c1`` against its closed form ``2 sigma^2 sum_{j<v} k_j`` (module docstring); the exact
    recursion at m = 4096 against the width limit plus ``c1 / m`` (whose ``m2_limit`` comes from
    theory.bfa, an independent engine): the remainder must be O(1/m^2)."""
    r = T.finite_width(family)
    k = _trained_counts(family)
    s2 = _FIRST_ORDER[family.activation, family.weights][0]
    closed = 2 * s2 * np.concatenate([[0.0], np.cumsum(k)[:-1]])
    assert np.allclose(r.m1_c1, closed, rtol=1e-5, atol=1e-5)
    assert np.array_equal(r.m1_limit, k)
    big = T.finite_width(family.replace(width=4096))
    for got, lim, c1 in ((big.m1, big.m1_limit, big.m1_c1), (big.m2, big.m2_limit, big.m2_c1)):
        ok = lim > 0
        rel = np.abs(got[ok] - lim[ok] - c1[ok] / 4096) / lim[ok]
        assert np.all(rel < 0.05 * np.abs(c1[ok] / 4096 / lim[ok]) + 1e-12)


@pytest.mark.parametrize("family", [ResNet(12, 32, 0.5, activation="linear"),
                                    ResNet(30, 32, 0.3, activation="linear", trained=[1, 3, 4, 9, 20]),
                                    ResNet(20, 32, 0.7071, activation="linear", weights="orthogonal",
                                           trained="all"),
                                    ResNet(16, 32, 0.6, activation="linear", weights="orthogonal",
                                           skip_scale=1.1, hidden_std=0.3)])
def test_resnet_moments_width_limit(family):
    """``m1_c1`` against its closed form ``C sum_{j<v} k_j``, ``C = Var(H) m / E[H]^2`` the
    relative variance of a layer's ``H = B_{v-1}/B_v`` (``2 b (2 a^2 + b) / H^2`` Gaussian,
    ``4 a^2 b / H^2`` orthogonal, ``b = beta^2 sigma^2``, ``H = a^2 + b``); the recursion at
    m = 4096 against ``theory.bfa`` (an independent engine) plus ``c1 / m``: the remainder must be
    O(1/m^2). ``a = beta sigma`` (third family) puts the pole of ``1/H`` on the edge of the
    orthogonal quadrature."""
    a, beta, sig2 = _resnet_law(family)
    b = beta * beta * sig2[1]
    C = (4 * a * a * b if family.weights == "orthogonal" else 2 * b * (2 * a * a + b)) / (a * a + b) ** 2
    k = _trained_counts(family)
    closed = C * np.concatenate([[0.0], np.cumsum(k)[:-1]])
    r = T.finite_width(family)
    assert np.allclose(r.m1_c1, closed, rtol=1e-5, atol=1e-5)
    big = T.finite_width(family.replace(width=4096))
    assert np.array_equal(big.m1_limit, _trained_counts(family))
    for got, lim, c1 in ((big.m1, big.m1_limit, big.m1_c1), (big.m2, big.m2_limit, big.m2_c1)):
        ok = lim > 0
        rel = np.abs(got[ok] - lim[ok] - c1[ok] / 4096) / lim[ok]
        assert np.all(rel < 0.05 * np.abs(c1[ok] / 4096 / lim[ok]) + 1e-12)


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_resnet_moments_without_skip_are_the_mlp(weights):
    """``a = 0``, ``beta = 1``: the ResNet layer is a linear MLP's; two independent derivations
    (the ResNet's through ``H = |a e + beta g|^2``, the MLP's through ``|D g|^2``) agree to
    round-off (orthogonal: both the width limit exactly)."""
    res = T.finite_width(ResNet(14, 24, 1.0, activation="linear", weights=weights,
                                trained=[1, 2, 4, 5, 6, 9, 13]))
    mlp = T.finite_width(MLP(14, 24, activation="linear", weights=weights,
                             trained=[1, 2, 4, 5, 6, 9, 13]))
    for f in ("m1", "m2", "m1_sd", "m1_limit"):
        assert np.allclose(getattr(res, f), getattr(mlp, f), rtol=1e-12, atol=1e-12), f


def test_orthogonal_linear_moments_are_the_limit():
    """Orthogonal linear layers conjugate the kernel exactly: ``K_v = t_v I + O K_{v-1} O^T``."""
    r = T.finite_width(MLP(16, 32, weights="orthogonal", activation="linear"))
    assert np.allclose(r.m1, r.m1_limit, rtol=1e-13) and np.allclose(r.m2, r.m2_limit, rtol=1e-13)
    assert np.all(r.m1_c1 == 0) and np.allclose(r.m2_c1, 0, atol=1e-6)
    assert np.allclose(r.m1_typical, r.m1_limit, rtol=1e-13)


@pytest.mark.parametrize("family", [MLP(12, 64), MLP(12, 64, activation="linear", trained="all"),
                                    MLP(12, 64, weights="orthogonal", trained=[1, 2, 5, 6, 9])])
def test_typical_m1_first_order(family):
    """To first order the typical chain is exact (its closure enters at ``1/m^2`` a layer):
    ``m (E log M1 - log k_v) -> m1_c1 / k_v - m Var M1 / (2 k_v^2)``, the right side from the
    exact recursion (an independent route); Richardson in ``m`` on both sides."""
    def coefficients(m):
        r = T.finite_width(family.replace(width=m))
        k = r.m1_limit
        with np.errstate(divide="ignore", invalid="ignore"):
            return m * (np.log(r.m1_typical) - np.log(k)), r.m1_c1 / k - m * r.m1_sd ** 2 / (2 * k * k)
    (a1, b1), (a2, b2) = coefficients(4000), coefficients(8000)
    ok = family.trained_mask[:family.depth - 1].cumsum() > 0
    got, want = (2 * a2 - a1)[ok], (2 * b2 - b1)[ok]
    assert np.max(np.abs(got - want)) < 2e-4 * np.max(np.abs(want))  # measured 3e-5
    assert np.max(np.abs(want)) > 1.0                  # the coefficient is not trivially 0


@pytest.mark.parametrize("family,seed", [(MLP(24, 24), 61), (MLP(24, 24, weights="orthogonal"), 62)])
def test_typical_m1_against_the_exact_sampler(family, seed):
    """L/m = 1: the typical ``exp E log M1`` against the sampled mean of ``log M1``, where the
    exact mean and the width limit are both rejected."""
    n, v = 800, [12, 23]
    M1, _ = sampled_normalised_moments(family, n, seed, v)
    fw = T.finite_width(family)
    z = stats.norm.isf(1e-3 / 2 / 2)
    x, j = np.log(M1), np.asarray(v) - 1
    mean, se = x.mean(axis=0), x.std(axis=0) / math.sqrt(n)
    assert np.all(np.abs(np.log(fw.m1_typical[j]) - mean) <= z * se)
    for other in (fw.m1, fw.m1_limit):
        assert np.all(np.abs(np.log(other[j]) - mean) > z * se)


def test_moments_beyond_floating_point_range_are_inf():
    """At L/m = 64 an MLP's E M2 exceeds 1e308: inf, without a RuntimeWarning (not nan); M1 and
    the typical trace stay finite."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = T.finite_width(MLP(1024, 16))
    assert np.isposinf(r.m2[-1]) and np.isposinf(r.m1_sd[-1]) and not np.isnan(r.m2).any()
    assert np.all(np.isfinite(r.m1)) and np.all(np.isfinite(r.m1_typical))
    out = np.argmin(np.isfinite(r.m2))                 # grows until it leaves the range, for good
    assert out > 500 and np.all(np.isposinf(r.m2[out:])) and np.all(np.diff(r.m2[1:out]) > 0)
