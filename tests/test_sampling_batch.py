"""Samplers on a batch of inputs (issue 13): against the autograd oracle on the same weights,
identities to round-off, the drawn inputs' Gram, reproducibility, errors.

Round-off tolerances as in test_sampling.py: tiny networks (m <= 24, L <= 7, n <= 3), so two
paths to one quantity agree to ~ L n m eps ~ 1e-13 relative; 1e-10 allows for quantities divided
by a small cosine or norm.
"""
import math

import numba
import numpy as np
import pytest

import rmtalign as ra
from rmtalign import MLP, ResNet
from conftest import FAMILIES, assert_error_names
from oracles import batch_ref

QUANTITIES = ("cos", "b_norm", "fdot_norm", "loss_decay", "sensitivity", "lr", "grad_sq")
ORACLE_FAMILIES = ("mlp-relu", "mlp-linear", "resnet-relu", "resnet-skip", "mlp-orth-relu",
                   "tiny-mlp-all-uniform")


def _against_oracle(res, ref, j=0):
    for q in QUANTITIES:
        np.testing.assert_allclose(getattr(res, q)[j], ref[q], rtol=1e-10, atol=1e-14, err_msg=q)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("name", ORACLE_FAMILIES)
def test_batch_matches_the_autograd_oracle(name, n):
    fam = FAMILIES[name]
    res = ra.sample_bfa(fam, samples=[0, 2], seed=5, inputs=n, input_correlation=0.3,
                        keep_vectors=True)
    assert res.inputs == n and res.input_gram.shape == (n, n)
    X, W = ra.sample_network(fam, seed=5, sample=2, inputs=n, input_correlation=0.3)
    ref = batch_ref.bfa_batch_torch(fam, W, X)
    _against_oracle(res, ref, j=1)
    fdot = np.stack(ref["fdot"])  # (L-1, n, m)
    got = res.vectors["fdot"][1]
    np.testing.assert_allclose(got, fdot[:, 0] if n == 1 else fdot, rtol=1e-9,
                               atol=1e-13 * np.abs(fdot).max())
    b = np.stack(ref["b"][:-1])
    np.testing.assert_allclose(res.vectors["b"][1], b[:, 0] if n == 1 else b, rtol=1e-9,
                               atol=1e-13 * np.abs(b).max())
    f = np.stack(ref["f"][:-1])
    np.testing.assert_allclose(res.vectors["f"][1], f[:, 0] if n == 1 else f, rtol=1e-9,
                               atol=1e-13 * np.abs(f).max())


def test_explicit_inputs_match_the_oracle():
    fam = ResNet(6, 16, 0.6, out_dim=2, output_multiplier=0.5, trained="all")
    X = np.random.default_rng(0).standard_normal((2, fam.in_dim)) * [[1.0], [3.0]]
    res = ra.sample_bfa(fam, samples=[1], seed=2, inputs=X)
    _, W = ra.sample_network(fam, seed=2, sample=1)
    _against_oracle(res, batch_ref.bfa_batch_torch(fam, W, X))
    np.testing.assert_allclose(res.input_gram, X @ X.T / fam.in_dim, rtol=1e-15)
    # the same X for every draw, returned by sample_network too
    np.testing.assert_array_equal(ra.sample_network(fam, seed=2, sample=4, inputs=X)[0], X)


@pytest.mark.parametrize("name", ["mlp-relu", "resnet-skip", "tiny-resnet-linear-all"])
def test_batch_bfk_matches_the_oracle_and_the_sampled_angle(name):
    fam = FAMILIES[name]
    n, L, m = 3, fam.depth, fam.width
    layers = [2, L // 2, L - 1]
    kw = dict(samples=[1], seed=8, inputs=n, input_correlation=-0.2)
    bfk = ra.sample_bfk(fam, layers=layers, keep_kernels=True, **kw)
    bfa = ra.sample_bfa(fam, keep_vectors=True, **kw)
    X, W = ra.sample_network(fam, seed=8, sample=1, inputs=n, input_correlation=-0.2)
    ref = batch_ref.bfk_batch_torch(fam, W, X, layers=layers)
    assert bfk.eigenvalues.shape == (1, 3, n * m) and bfk.inputs == n
    for j, v in enumerate(layers):
        K = bfk.kernels[v][0]
        np.testing.assert_allclose(K, ref["K"][j], rtol=1e-10, atol=1e-13 * np.abs(ref["K"][j]).max())
        np.testing.assert_allclose(np.linalg.eigvalsh(ref["K"][j])[::-1], bfk.eigenvalues[0, j],
                                   rtol=1e-9, atol=1e-12 * np.abs(ref["K"][j]).max())
        b = bfa.vectors["b"][0, v - 1].reshape(-1)
        fdot = bfa.vectors["fdot"][0, v - 1].reshape(-1)
        np.testing.assert_allclose(-K @ b, fdot, rtol=1e-10, atol=1e-12 * np.abs(fdot).max())
        assert b @ K @ b == pytest.approx(bfa.loss_decay[0, v - 1], rel=1e-10)
        assert bfk.cos_kernel[0, j] == pytest.approx(bfa.cos[0, v - 1], rel=1e-10)
    lam = np.clip(bfk.eigenvalues, 0, None)
    np.testing.assert_allclose(bfk.cos_spectrum, lam.mean(-1) / np.sqrt((lam**2).mean(-1)), rtol=1e-12)


@pytest.mark.parametrize("family", [MLP(7, 20), ResNet(7, 20, 0.5, trained="all")], ids=["mlp", "resnet"])
def test_feature_speed_formula_for_batches(family):
    """Thm 2.1 for the flattened features of a batch: |fdot_v| = Lambda_v / (cos_v |b_v|); and
    Eq. 4 with the feature size n m; Eq. 8 on the batch gradients."""
    for rho in (0.0, 0.9):
        res = ra.sample_bfa(family, samples=3, seed=1, inputs=4, input_correlation=rho)
        ok = res.loss_decay > 0
        speed = res.loss_decay / (res.cos * res.b_norm)
        np.testing.assert_allclose(res.fdot_norm[ok], speed[ok], rtol=1e-10)
        sens = 1.0 / (res.cos * 4 * family.width * res.b_norm / math.sqrt(4 * family.width))
        np.testing.assert_allclose(res.sensitivity[ok], sens[ok], rtol=1e-10)
        contrib = (res.lr * res.grad_sq)[:, family.trained_mask]
        np.testing.assert_allclose(contrib, 1 / family.trained_mask.sum(), rtol=1e-12)


def test_repeated_input_gives_the_single_input_angle():
    """Two copies of one input: b^i = b/2 and fdot^i = fdot (the GD step is the single input's),
    so the flattened angle is the single input's; norms scale by 1/sqrt2 and sqrt2."""
    fam = ResNet(6, 24, 0.5)
    one = ra.sample_bfa(fam, samples=2, seed=3)
    x = ra.sample_network(fam, seed=3)[0]
    two = ra.sample_bfa(fam, samples=2, seed=3, inputs=np.stack([x, x]))
    np.testing.assert_allclose(two.cos, one.cos, rtol=1e-12)
    np.testing.assert_allclose(two.b_norm, one.b_norm / math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(two.fdot_norm, one.fdot_norm * math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(two.lr, one.lr, rtol=1e-12)


def test_one_input_is_the_single_input_sampler_bit_for_bit():
    for name in ("mlp-random-input", "resnet-skip"):
        fam = FAMILIES[name]
        base = ra.sample_bfa(fam, samples=2, seed=4, keep_vectors=True)
        for inputs in (1, ra.sample_network(fam, seed=4, sample=0)[0][None]):
            same = ra.sample_bfa(fam, samples=[0], seed=4, inputs=inputs, keep_vectors=True)
            for q in QUANTITIES:
                np.testing.assert_array_equal(getattr(same, q)[0], getattr(base, q)[0], err_msg=q)
            np.testing.assert_array_equal(same.vectors["fdot"][0], base.vectors["fdot"][0])
        k1 = ra.sample_bfk(fam, samples=[0], seed=4, inputs=1)
        np.testing.assert_array_equal(k1.eigenvalues, ra.sample_bfk(fam, samples=[0], seed=4).eigenvalues)
        assert base.inputs == 1 and base.input_gram.tolist() == [[1.0]]


@pytest.mark.parametrize("rho", [0.0, 0.5, -0.3, 0.95])
def test_drawn_inputs_realise_the_correlation(rho):
    fam = MLP(4, 8, in_dim=6)
    n, d = 4, 6
    target = (1 - rho) * np.eye(n) + rho * np.ones((n, n))
    frames = []
    for sample in (0, 1):
        X, _ = ra.sample_network(fam, seed=2, sample=sample, inputs=n, input_correlation=rho)
        assert X.shape == (n, d)
        np.testing.assert_allclose(X @ X.T, d * target, rtol=0, atol=1e-13 * d)
        frames.append(X)
    assert not np.allclose(frames[0], frames[1])  # each draw has its own inputs
    res = ra.sample_bfa(fam, seed=2, inputs=n, input_correlation=rho)
    np.testing.assert_array_equal(res.input_gram, target)


@pytest.mark.parametrize("mode", ["exact", "free"])
def test_batch_does_not_depend_on_how_samples_are_split(mode):
    fam = ResNet(6, 20, 0.5)
    kw = dict(seed=123, inputs=3, input_correlation=0.5, mode=mode, probes=2)
    whole = ra.sample_bfa(fam, samples=3, **kw)
    parts = [ra.sample_bfa(fam, samples=[i], **kw) for i in range(3)]
    for q in QUANTITIES:
        np.testing.assert_array_equal(getattr(whole, q), np.concatenate([getattr(p, q) for p in parts]))
    other = ra.sample_bfa(fam, samples=3, **{**kw, "seed": 124})
    assert not np.array_equal(whole.cos[:, 1:], other.cos[:, 1:])


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_batch_does_not_depend_on_thread_count():
    fam = MLP(6, 70)
    out = []
    for t in (1, 2):
        numba.set_num_threads(t)
        try:
            out.append((ra.sample_bfa(fam, samples=2, seed=9, inputs=3).cos,
                        ra.sample_bfa(fam, samples=2, seed=9, inputs=3, mode="free").cos,
                        ra.sample_bfa(fam, samples=2, seed=9, inputs=3, keep_vectors=True).vectors["fdot"],
                        ra.sample_bfk(fam, layers=[5], seed=9, inputs=2).eigenvalues))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for x, y in zip(*out):
        np.testing.assert_array_equal(x, y)


# -- free mode ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mlp-relu", "resnet-skip", "mlp-linear"])
def test_free_batch_bfk_identities_with_the_same_draw(name):
    fam = FAMILIES[name]
    kw = dict(samples=[0, 3], seed=6, mode="free", inputs=3, input_correlation=0.4)
    bfa = ra.sample_bfa(fam, probes=1, keep_vectors=True, **kw)
    bfk = ra.sample_bfk(fam, keep_kernels=True, **kw)
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
    ok = bfa.loss_decay > 0
    speed = bfa.loss_decay / (bfa.cos * bfa.b_norm)
    np.testing.assert_allclose(bfa.fdot_norm[ok], speed[ok], rtol=1e-10)


def test_free_batch_limits_reduce_to_the_single_input_mean_field():
    # the free-mode batch sampler's width limits are theory's (rmtalign.theory.batch, one home)
    from rmtalign.theory.batch import batch_limits

    def free_batch_limits(fam, X):
        return batch_limits(fam, X @ X.T)

    for fam in (MLP(8, 64), ResNet(8, 64, 0.5, out_dim=3, output_multiplier=0.7),
                MLP(6, 32, activation="linear", trained="all")):
        mf = ra.theory.mean_field(fam)
        x = np.ones(fam.in_dim)
        one = free_batch_limits(fam, x[None])
        np.testing.assert_allclose(one.kernel_weights[:, 0, 0], mf.kernel_weights, rtol=1e-13)
        np.testing.assert_allclose(one.grad_sq, mf.grad_sq, rtol=1e-13)
        np.testing.assert_allclose(one.lr, mf.lr, rtol=1e-13)
        np.testing.assert_allclose(one.backward_gram[:, 0, 0], mf.backward_sq, rtol=1e-13)
        # three copies of one input: every block is the single input's (b^i = b / 3)
        three = free_batch_limits(fam, np.stack([x, x, x]))
        np.testing.assert_allclose(three.corr, 1.0, rtol=1e-13)
        np.testing.assert_allclose(three.kernel_weights, np.broadcast_to(one.kernel_weights, (fam.depth, 3, 3)),
                                   rtol=1e-13)
        np.testing.assert_allclose(three.backward_gram, np.broadcast_to(one.backward_gram / 9, (fam.depth, 3, 3)),
                                   rtol=1e-13)
        np.testing.assert_allclose(three.lr, one.lr, rtol=1e-13)


def test_relu_dual_kernels_against_monte_carlo():
    """E[relu(u) relu(v)] and P(u > 0, v > 0) of the free model's limits against a direct
    Monte Carlo average (5 standard errors, one draw of 400000 pairs)."""
    from rmtalign.theory.batch import _maps

    Q = np.array([[1.5, -0.4, 0.9], [-0.4, 0.8, 0.3], [0.9, 0.3, 1.0]])
    E, D = _maps(ra.rules.activation("relu"), Q)
    u = np.random.default_rng(0).multivariate_normal(np.zeros(3), Q, size=400_000)
    r = np.maximum(u, 0)
    for got, sample in ((E, r[:, :, None] * r[:, None, :]),
                        (D, (u[:, :, None] > 0) & (u[:, None, :] > 0))):
        mean, se = sample.mean(0), sample.std(0) / math.sqrt(len(u))
        assert np.all(np.abs(got - mean) < 5 * se), (got, mean, se)
    np.testing.assert_allclose(np.diag(E), np.diag(Q) / 2, rtol=1e-15)
    np.testing.assert_allclose(np.diag(D), 0.5, rtol=1e-15)


def test_free_batch_masks_overlap_as_the_width_limit_says():
    """P(mask_i = mask_j = 1) = 1/4 + arcsin(rho_ij) / (2 pi) at each layer's width-limit feature
    correlation (3 standard errors over m units and the layers, Bonferroni over the pairs)."""
    from scipy import stats

    from rmtalign._passes import free_batch_masks, input_batch
    from rmtalign.theory.batch import batch_limits

    fam = MLP(5, 4096, in_dim=4)
    X = input_batch(fam, 4, -0.25).matrix(fam, 1)  # no weights: the inputs of the draw keyed 1
    corr = batch_limits(fam, X @ X.T).corr
    masks = free_batch_masks(fam, 77, corr)
    assert masks.shape == (4, 4, 4096) and set(np.unique(masks)) == {0.0, 1.0}
    z = stats.norm.isf(0.0027 / 2 / (4 * 10))
    for l in range(4):
        both = (masks[l][:, None] * masks[l][None]).mean(-1)
        p = 0.25 + np.arcsin(np.clip(corr[l], -1, 1)) / (2 * np.pi)
        assert np.all(np.abs(both - p) < z * np.sqrt(p * (1 - p) / fam.width)), (l, both, p)
    np.testing.assert_allclose(corr[0], (X @ X.T) / fam.in_dim, rtol=1e-12, atol=1e-14)


def test_free_batch_agrees_with_the_exact_network():
    """Lemma A.1 for a batch: at moderate width the free model's mean angle matches the real
    network's on the same kind of batch (one aggregate statistic over layers 3..9, 3 SE)."""
    fam = MLP(10, 128)
    kw = dict(inputs=3, input_correlation=0.5)
    ex = ra.sample_bfa(fam, samples=16, seed=1, **kw)
    fr = ra.sample_bfa(fam, samples=16, seed=2, mode="free", probes=4, **kw)
    a, b = np.nanmean(ex.cos[:, 2:], axis=1), np.nanmean(fr.cos[:, 2:], axis=1)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert abs(a.mean() - b.mean()) < 3 * se, (a.mean(), b.mean(), se)
    # and a batch aligns less than one input (issue 13's table), in both models
    single = ra.sample_bfa(fam, samples=16, seed=2, mode="free", probes=4)
    assert np.nanmean(single.cos[:, 2:]) > b.mean() + 3 * se


def test_width_limit_of_a_batch():
    fam = MLP(5, 16, in_dim=12)
    lim = ra.width_limit(fam, widths=[16, 32], samples=3, seed=0, inputs=3, input_correlation=0.5)
    assert lim.inputs == 3 and lim.input_gram.shape == (3, 3)
    # each width is sample_bfa with the width's content seed, on the same batch
    fam32 = fam.replace(width=32)
    r = ra.sample_bfa(fam32, 3, ra.point_seed(np.random.SeedSequence(0), fam32, "bfa-exact"),
                      inputs=3, input_correlation=0.5)
    np.testing.assert_array_equal(lim.means[1], r.mean("cos"))
    single = ra.width_limit(fam, widths=[16, 32], samples=3, seed=0)
    assert single.inputs == 1 and not np.array_equal(single.means[:, 2:], lim.means[:, 2:])


def test_batch_results_export(tmp_path):
    import json

    res = ra.sample_bfa(ResNet(5, 8, 0.5), samples=2, seed=0, inputs=3, input_correlation=0.2)
    d = res.to_dict()
    assert d["inputs"] == 3 and np.allclose(d["input_gram"], res.input_gram)
    json.dumps(d)
    res.to_csv(tmp_path / "bfa.csv")
    assert len((tmp_path / "bfa.csv").read_text().splitlines()) == 1 + 2 * 4
    assert "inputs" in repr(res)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(inputs=0), ValueError, ["inputs", "0", ">= 1"]),
        (dict(inputs=True), TypeError, ["inputs", "True", "count"]),
        (dict(inputs="four"), TypeError, ["inputs", "four", "count"]),
        (dict(inputs=3, input_correlation=1.0), ValueError, ["input_correlation", "1.0", "(-0.5, 1)"]),
        (dict(inputs=3, input_correlation=-0.5), ValueError, ["input_correlation", "-0.5", "(-0.5, 1)"]),
        (dict(inputs=3, input_correlation=float("nan")), ValueError, ["input_correlation", "nan", "finite"]),
        (dict(inputs=3, input_correlation="high"), TypeError, ["input_correlation", "high", "real"]),
        (dict(inputs=11), ValueError, ["inputs=11", "in_dim = 10"]),
        (dict(inputs=np.ones((2, 9))), ValueError, ["inputs", "(n, 10)", "(2, 9)"]),
        (dict(inputs=np.ones(10)), ValueError, ["inputs", "(n, 10)", "(10,)"]),
        (dict(inputs=np.ones((0, 10))), ValueError, ["inputs", "(n, 10)", "(0, 10)"]),
        (dict(inputs=np.array([[1.0] * 9 + [np.inf]])), ValueError, ["inputs", "finite", "[0]"]),
        (dict(inputs=np.ones((2, 10)), input_correlation=0.5), ValueError, ["input_correlation", "0.5"]),
    ],
)
def test_batch_errors_name_the_argument(kwargs, exc, words):
    assert_error_names(exc, words, ra.sample_bfa, MLP(4, 4), **kwargs)
    assert_error_names(exc, words, ra.sample_bfk, MLP(4, 4), **kwargs)


def test_free_batch_sampler_reads_theorys_batch_limits():
    """One home: the free-mode batch passes take their kernel weights, rates and gradient norms
    from rmtalign.theory.batch.batch_limits of the draw's inputs, bit for bit."""
    from rmtalign._passes import input_batch, run_passes
    from rmtalign.theory.batch import batch_limits

    for fam, (n, rho) in ((MLP(6, 32, in_dim=8), (3, 0.5)),
                          (ResNet(6, 32, 0.5, out_dim=2, output_multiplier=0.7, in_dim=8), (4, 0.0))):
        batch = input_batch(fam, n, rho)
        p = run_passes(fam, 5, mode="free", probes=2, inputs=batch)
        X = batch.matrix(fam, 5)
        lim = batch_limits(fam, X @ X.T)
        np.testing.assert_array_equal(p.weights_c, np.broadcast_to(lim.kernel_weights, p.weights_c.shape))
        np.testing.assert_array_equal(p.lr, np.broadcast_to(lim.lr, p.lr.shape))
        np.testing.assert_array_equal(p.grad_sq, np.broadcast_to(lim.grad_sq, p.grad_sq.shape))


def test_free_batch_masks_do_not_depend_on_round_off_of_their_law():
    """An exchangeable batch's correlation has a degenerate eigenspace: the masks must follow the
    law, not the basis eigh happens to pick in it (a relative change of 1e-15 flips < 1e-4)."""
    from rmtalign._passes import free_batch_masks

    fam = MLP(4, 2048)
    n = 6
    for rho in (0.0, 0.5):
        corr = np.broadcast_to((1 - rho) * np.eye(n) + rho * np.ones((n, n)), (3, n, n)).copy()
        noise = np.random.default_rng(1).standard_normal(corr.shape) * 1e-15
        moved = corr + (noise + np.swapaxes(noise, 1, 2)) / 2
        moved[:, np.arange(n), np.arange(n)] = 1.0
        a, b = free_batch_masks(fam, 3, corr), free_batch_masks(fam, 3, moved)
        assert np.mean(a != b) < 1e-4, (rho, np.mean(a != b))
