"""Samplers: against the numpy reference, identities to round-off, reproducibility, statistics."""
import json
import math

import numba
import numpy as np
import pytest

import rmtalign as ra
from rmtalign import MLP, ResNet
from oracles import numpy_ref as _reference
from rmtalign.sampling import sample_network
from conftest import assert_error_names

QUANTITIES = ("cos", "b_norm", "fdot_norm", "loss_decay", "sensitivity")


def test_exact_mode_matches_the_numpy_reference(family):
    res = ra.sample_bfa(family, samples=[3], seed=11, keep_vectors=True)
    x, weights = sample_network(family, seed=11, sample=3)
    ref = _reference.bfa_exact(family, weights, x)
    for q in QUANTITIES:
        np.testing.assert_allclose(getattr(res, q)[0], ref[q], rtol=1e-10, atol=1e-14, err_msg=q)
    np.testing.assert_allclose(res.lr[0], ref["lr"], rtol=1e-10)
    np.testing.assert_allclose(res.vectors["fdot"][0], np.array(ref["fdot"]), rtol=1e-9, atol=1e-13)


def test_total_loss_decay_is_normalised(family):
    res = ra.sample_bfa(family, samples=2, seed=1)
    total = np.sum(res.lr * res.grad_sq, axis=1)
    np.testing.assert_allclose(total, 1.0, rtol=1e-12)
    if family.lr_rule == "balanced":
        contrib = (res.lr * res.grad_sq)[:, family.trained_mask]
        np.testing.assert_allclose(contrib, 1 / family.trained_mask.sum(), rtol=1e-12)


def test_frozen_first_layer_leaves_f1_at_rest():
    res = ra.sample_bfa(MLP(6, 16), samples=2, seed=0)
    assert np.isnan(res.cos[:, 0]).all() and (res.fdot_norm[:, 0] == 0).all()
    np.testing.assert_allclose(res.cos[:, 1], 1.0, rtol=1e-12)  # fdot_2 = -c_2 b_2
    trained = ra.sample_bfa(MLP(6, 16, trained="all"), samples=2, seed=0)
    np.testing.assert_allclose(trained.cos[:, 0], 1.0, rtol=1e-12)


@pytest.mark.parametrize("mode", ["exact", "free"])
def test_bfk_identities_with_the_same_draw(family, mode):
    bfa = ra.sample_bfa(family, samples=[0, 4], seed=7, mode=mode, probes=1, keep_vectors=True)
    bfk = ra.sample_bfk(family, samples=[0, 4], seed=7, mode=mode, keep_kernels=True)
    assert bfk.layers.tolist() == list(range(1, family.depth))
    for v in bfk.layers:
        K = bfk.kernels[v]
        b = bfa.vectors["b"][:, v - 1].reshape(2, -1)
        fdot = bfa.vectors["fdot"][:, v - 1].reshape(2, -1)
        scale = np.abs(fdot).max() + 1e-300
        np.testing.assert_allclose(-np.einsum("sij,sj->si", K, b) / scale, fdot / scale, atol=1e-12)
        np.testing.assert_allclose(np.einsum("si,sij,sj->s", b, K, b), bfa.loss_decay[:, v - 1],
                                   rtol=1e-10, atol=1e-300)
    ok = np.isfinite(bfa.cos)
    np.testing.assert_allclose(bfk.cos_kernel[ok], bfa.cos[ok], rtol=1e-10)
    lam = bfk.eigenvalues
    assert (np.diff(lam, axis=-1) <= 1e-12 * np.abs(lam).max()).all()  # descending
    assert (bfk.lower_bound[ok] <= bfk.cos_kernel[ok] + 1e-12).all()
    assert (bfk.cos_kernel[ok] <= 1 + 1e-12).all()


def test_bfk_against_term_by_term_sum():
    fam = ResNet(6, 16, 0.5, trained="all")
    x, weights = sample_network(fam, seed=2)
    ref = _reference.bfk_termwise(fam, weights, x, layers=[1, 3, 5])
    got = ra.sample_bfk(fam, layers=[1, 3, 5], seed=2, keep_kernels=True)
    for v in (1, 3, 5):
        K = ref["K"][ref["layers"].tolist().index(v)]
        np.testing.assert_allclose(got.kernels[v][0], K, rtol=1e-10, atol=1e-14 * np.abs(K).max())


def test_bfk_keeps_every_kernel_on_request():
    fam = MLP(7, 16)
    some = ra.sample_bfk(fam, layers=[2, 5], seed=4, keep_kernels=True)
    every = ra.sample_bfk(fam, layers=[2, 5], seed=4, keep_kernels="all")
    assert sorted(some.kernels) == [2, 5] and sorted(every.kernels) == [1, 2, 3, 4, 5]
    for v in (2, 5):
        np.testing.assert_array_equal(every.kernels[v], some.kernels[v])
    np.testing.assert_array_equal(every.eigenvalues, some.eigenvalues)
    full = ra.sample_bfk(fam, layers=[3], seed=4, keep_kernels=True)
    np.testing.assert_allclose(every.kernels[3], full.kernels[3], rtol=1e-13,
                               atol=1e-15 * np.abs(full.kernels[3]).max())
    with pytest.raises(ValueError, match="keep_kernels"):
        ra.sample_bfk(fam, keep_kernels="some")


def test_orthogonal_linear_mlp_is_perfectly_aligned():
    for trained in ("all", "all-but-first"):
        fam = MLP(8, 32, activation="linear", weights="orthogonal", trained=trained)
        for mode in ("exact", "free"):
            res = ra.sample_bfa(fam, samples=2, seed=3, mode=mode)
            start = 0 if trained == "all" else 1
            np.testing.assert_allclose(res.cos[:, start:], 1.0, rtol=1e-12)
        spec = ra.sample_bfk(fam, layers=[7], seed=3)
        np.testing.assert_allclose(spec.cos_spectrum, 1.0, rtol=1e-12)
        np.testing.assert_allclose(spec.lower_bound, 1.0, rtol=1e-10)


# -- reproducibility ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "free"])
def test_samples_do_not_depend_on_batching(mode):
    fam = ResNet(6, 20, 0.5)
    whole = ra.sample_bfa(fam, samples=4, seed=123, mode=mode)
    parts = [ra.sample_bfa(fam, samples=[i], seed=123, mode=mode) for i in range(4)]
    for q in QUANTITIES:
        np.testing.assert_array_equal(getattr(whole, q), np.concatenate([getattr(p, q) for p in parts]))
    ss = np.random.SeedSequence(123)
    again = ra.sample_bfa(fam, samples=4, seed=ss, mode=mode)
    np.testing.assert_array_equal(whole.cos, again.cos)
    other = ra.sample_bfa(fam, samples=4, seed=124, mode=mode)
    assert not np.array_equal(whole.cos[:, 1:], other.cos[:, 1:])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_samples_do_not_depend_on_thread_count():
    fam = MLP(6, 70)
    out = []
    for t in (1, 2):
        numba.set_num_threads(t)
        try:
            out.append((ra.sample_bfa(fam, samples=2, seed=9).cos,
                        ra.sample_bfa(fam, samples=2, seed=9, mode="free").cos,
                        ra.sample_bfk(fam, layers=[5], seed=9).eigenvalues))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)


def test_dead_relu_layer_gets_no_learning_rate():
    """At tiny width a ReLU layer can be dead (all f_l <= 0): its gradient is exactly zero, it
    cannot contribute at any rate, and the features above it do not move (NaN angles)."""
    fam = MLP(6, 2)
    res = ra.sample_bfa(fam, samples=64, seed=0)
    dead = res.grad_sq[:, 1:-1] == 0
    assert dead.any()
    assert (res.lr[:, 1:-1][dead] == 0).all() and np.isfinite(res.lr).all()
    np.testing.assert_allclose(np.sum(res.lr * res.grad_sq, axis=1)[res.grad_sq.sum(1) > 0], 1.0)


def test_seed_none_records_entropy():
    res = ra.sample_bfa(MLP(4, 8), seed=None)
    again = ra.sample_bfa(MLP(4, 8), seed=np.random.SeedSequence(res.seed["entropy"]))
    np.testing.assert_array_equal(res.cos, again.cos)


def test_float32_is_close_to_float64():
    fam = MLP(10, 64)
    r64 = ra.sample_bfa(fam, samples=2, seed=4)
    r32 = ra.sample_bfa(fam, samples=2, seed=4, dtype=np.float32)
    np.testing.assert_allclose(r32.cos[:, 1:], r64.cos[:, 1:], rtol=1e-4)
    assert not np.array_equal(r32.cos[:, 2:], r64.cos[:, 2:])


# -- statistics ---------------------------------------------------------------------------------
def test_free_model_agrees_with_the_exact_network():
    """Lemma A.1: at moderate width the free model's mean angle matches the real network's."""
    fam = MLP(10, 256)
    ex = ra.sample_bfa(fam, samples=24, seed=1)
    fr = ra.sample_bfa(fam, samples=24, seed=2, mode="free", probes=4)
    # One aggregate statistic (layers 3..9), so a single 3-SE comparison.
    a, b = np.nanmean(ex.cos[:, 2:], axis=1), np.nanmean(fr.cos[:, 2:], axis=1)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) < 3 * se, (a.mean(), b.mean(), se)


def _exact_m2_of_gaussian_product(n, m):
    """E[(1/m) tr (J J^T)^2] for J a product of n iid m x m Gaussian matrices of variance 1/m,
    exactly at finite m (Wick calculus: with s1 = tr S/m, s2 = tr S^2/m for S = J J^T,
    E s2' = E s1^2 + (1 + 1/m) E s2 and E s1'^2 = E s1^2 + 2 E s2 / m^2)."""
    s1sq, s2 = 1.0, 1.0
    for _ in range(n):
        s1sq, s2 = s1sq + 2 * s2 / m**2, s1sq + (1 + 1 / m) * s2
    return s2


@pytest.mark.parametrize("n", [1, 3])
def test_linear_jacobian_moments_marchenko_pastur_and_fuss_catalan(n):
    """One linear layer: Marchenko-Pastur (M1 = 1, M2 -> 2); n layers: Fuss-Catalan (M2 -> n+1).
    The test compares with the exact finite-width expectation, within 3 standard errors."""
    m, samples = 96, 12
    fam = MLP(n + 2, m, activation="linear")
    jac = ra.sample_jacobian(fam, 1, n + 1, samples=samples, seed=n)
    s = jac.sq_singular_values()
    for p, expected in ((1, 1.0), (2, _exact_m2_of_gaussian_product(n, m))):
        mom = np.mean(s**p, axis=1)
        se = mom.std(ddof=1) / math.sqrt(samples)
        assert abs(mom.mean() - expected) < 3 * se, (p, mom.mean(), expected, se)
    assert _exact_m2_of_gaussian_product(n, 10**9) == pytest.approx(n + 1)


def test_jacobian_matches_the_explicit_product():
    fam = ResNet(8, 24, 0.6)
    x, weights = sample_network(fam, seed=4)
    J = _reference.jacobian_product(fam, weights, x, start=2, stop=6)
    got = ra.sample_jacobian(fam, 2, 6, seed=4)
    ref = np.sort(np.linalg.svd(J, compute_uv=False) ** 2)[::-1]
    np.testing.assert_allclose(got.sq_singular_values()[0], ref, rtol=1e-9)
    assert got.condition[0] == pytest.approx(math.sqrt(ref[0] / ref[-1]), rel=1e-8)


def test_long_jacobian_products_stay_finite():
    # Twice the He std: sigma^2 grows ~4x a layer, e^1400 after 1000 layers.
    jac = ra.sample_jacobian(MLP(1002, 32, hidden_std=2 * math.sqrt(2 / 32)), 1, 1001, seed=0)
    s = jac.log_sq_singular_values[0]
    # ReLU masks make J exactly rank-deficient: those singular values are exactly zero (-inf).
    finite = s[np.isfinite(s)]
    assert np.all(s[finite.size:] == -np.inf) and 1 <= finite.size < 32  # rank = least mask size
    assert finite[0] > 1000 and np.isfinite(finite).all()  # far beyond float64 (e^709)
    with pytest.raises(OverflowError, match="log_sq_singular_values"):
        jac.sq_singular_values()
    assert (jac.log_condition == np.inf).all()
    res = ra.sample_jacobian(ResNet(1002, 32, 0.5), 1, 1001, seed=0)
    assert np.isfinite(res.log_sq_singular_values).all() and np.isfinite(res.log_condition).all()


# -- results and errors -------------------------------------------------------------------------
def test_result_exports(tmp_path):
    res = ra.sample_bfa(ResNet(5, 8, 0.5), samples=3, seed=0)
    table = res.to_table()
    assert set(table) >= {"sample", "layer", "cos", "angle_deg"} and len(table["layer"]) == 12
    res.to_csv(tmp_path / "bfa.csv")
    lines = (tmp_path / "bfa.csv").read_text().splitlines()
    assert len(lines) == 13 and lines[0].startswith("sample,layer,cos")
    json.dumps(res.to_dict())
    np.testing.assert_allclose(np.cos(np.radians(res.angle_deg)), res.cos, rtol=1e-12)
    assert res.mean("cos").shape == res.sem("cos").shape == (4,)
    with pytest.raises(ValueError, match="quantity must be one of"):
        res.mean("speed")
    bfk = ra.sample_bfk(ResNet(5, 8, 0.5), layers=[2, 4], samples=2, seed=0)
    assert bfk.moments(3).shape == (3, 2, 2)
    json.dumps(bfk.to_dict())


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda: ra.sample_bfa("mlp"), TypeError, ["family", "str"]),
        (lambda: ra.sample_bfa(MLP(4, 4), mode="fast"), ValueError, ["mode", "fast", "exact"]),
        (lambda: ra.sample_bfa(MLP(4, 4), samples=0), ValueError, ["samples", "0"]),
        (lambda: ra.sample_bfa(MLP(4, 4), samples=[-1]), ValueError, ["samples", "-1"]),
        (lambda: ra.sample_bfa(MLP(4, 4), seed=-3), ValueError, ["seed", "-3"]),
        (lambda: ra.sample_bfa(MLP(4, 4), seed="abc"), TypeError, ["seed", "abc"]),
        (lambda: ra.sample_bfa(MLP(4, 4), dtype=np.int32), ValueError, ["dtype", "int32"]),
        (lambda: ra.sample_bfa(MLP(4, 4), mode="free", probes=0), ValueError, ["probes", "0"]),
        (lambda: ra.sample_bfk(MLP(4, 4), layers=[4]), ValueError, ["layers", "[1, 3]"]),
        (lambda: ra.sample_jacobian(MLP(6, 4), 3, 3), ValueError, ["start", "stop", "3"]),
        (lambda: ra.sample_jacobian(MLP(6, 4), 1, 6), ValueError, ["stop", "6", "5"]),
        (lambda: ra.width_limit(MLP(6, 4), [0, 8]), ValueError, ["widths"]),
    ],
)
def test_errors_name_the_argument(call, exc, words):
    assert_error_names(exc, words, call)


def test_exploding_network_is_reported_not_silent():
    fam = MLP(1002, 16, hidden_std=2 * math.sqrt(2 / 16))
    with pytest.raises(FloatingPointError, match="left float64's range"):
        ra.sample_bfa(fam, seed=0)
    # sample_jacobian needs only the masks, from a rescaled forward pass: check it against the
    # explicit product where that is still representable.
    small = fam.replace(depth=12)
    x, weights = sample_network(small, seed=3)
    J = _reference.jacobian_product(small, weights, x, start=1, stop=11)
    ref = np.sort(np.linalg.svd(J, compute_uv=False) ** 2)[::-1]
    got = ra.sample_jacobian(small, 1, 11, seed=3).log_sq_singular_values[0]
    rank = int(np.isfinite(got).sum())
    np.testing.assert_allclose(got[:rank], np.log(ref[:rank]), rtol=1e-9)
    assert ref[rank:].max(initial=0) < 1e-12 * ref[0]  # the exact zeros are zeros
    assert np.isfinite(ra.sample_jacobian(fam, 1, 1001, seed=0).log_sq_singular_values[0, 0])


@pytest.mark.parametrize("mode", ["exact", "free"])
def test_width_limit_runs_and_handles_deterministic_layers(mode):
    lim = ra.width_limit(MLP(5, 16), widths=[16, 32, 64], samples=6, seed=0, mode=mode)
    assert lim.means.shape == lim.sems.shape == (3, 4) and lim.layers.tolist() == [1, 2, 3, 4]
    assert np.isnan(lim.limit[0])  # f_1 does not move
    assert lim.limit[1] == pytest.approx(1.0, abs=1e-14) and lim.limit_se[1] == 0.0  # cos = 1 at v = 2
    assert np.isfinite(lim.limit[2:]).all() and (lim.limit_se[2:] > 0).all()
    # the extrapolation is a weighted fit of the per-width means: c0 + c1/m reproduces them
    pred = lim.coef[2:, 0][None] + lim.coef[2:, 1][None] / lim.widths[:, None]
    assert np.all(np.abs(pred - lim.means[:, 2:]) < 4 * lim.sems[:, 2:] + 4 * lim.limit_se[2:])


def test_free_mode_relu_mlp_jacobian_against_its_theory():
    """sample_jacobian of a ReLU MLP in free mode (independent Bernoulli masks, only the active
    blocks multiplied) against theory.jacobian_moments. The mean squared singular value is
    exact at any width (E|W D x|^2 = m s^2 p |x|^2, layer by layer); the second moment has an
    O(1/m) bias, so it is extrapolated in 1/m. The masks' zeros are exactly zero singular values:
    the rank is the smallest active set along the chain."""
    from scipy import stats

    from rmtalign._extrapolate import fit_width_limit
    from rmtalign._passes import free_masks
    from rmtalign.seeds import sample_keys

    start, stop, widths, n = 2, 6, (64, 128, 256), 24
    theory = ra.theory.jacobian_moments(MLP(8, 64), start, stop, order=2)
    z_max = stats.norm.isf(0.0027 / 2 / (len(widths) + 1))  # 4 comparisons, 0.27% in all
    m2, m2_se = [], []
    for m in widths:
        fam = MLP(8, m)
        res = ra.sample_jacobian(fam, start, stop, samples=n, seed=m, mode="free")
        _, _, keys = sample_keys(m, n)
        for logs, key in zip(res.log_sq_singular_values, keys):
            masks = free_masks(fam, key)
            rank = min(np.count_nonzero(masks[l - 1]) for l in range(start, stop))
            assert np.count_nonzero(np.isfinite(logs)) == rank < m
        s2 = np.exp(res.log_sq_singular_values)
        t1, t2 = s2.mean(axis=1), (s2**2).mean(axis=1)
        assert abs(t1.mean() - theory[0]) <= z_max * t1.std(ddof=1) / math.sqrt(n)
        m2.append(t2.mean())
        m2_se.append(t2.std(ddof=1) / math.sqrt(n))
    fit = fit_width_limit(np.array(widths), np.array(m2), np.array(m2_se))
    assert abs(fit.c0 - theory[1]) <= z_max * fit.c0_se
