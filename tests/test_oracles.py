"""The oracles (tests/oracles): the plain numpy and torch references, identities to round-off on
the small families of the table in conftest.py.

These are the oracles the numba samplers are checked against, so they are checked here against
the paper's identities, against finite differences of the actual GD step, and against each other.

Round-off tolerances: the networks are small (m <= 24, L <= 7), so two evaluations of one
quantity along different paths agree to ~ L m eps = 4e-14 relative; 1e-12 (1e-13, 1e-14 for a
single product or a symmetric matrix) allows constants of order 10-100 over that, and 1e-10
covers quantities divided by a cosine or a norm that can be small. Finite differences: see there.
"""
import math

import numpy as np
import pytest

from conftest import FAMILIES

EPS = np.finfo(float).eps
from oracles import numpy_ref as ref
from rmtalign.families import MLP, ResNet

over_families = pytest.mark.parametrize("fam", list(FAMILIES.values()), ids=list(FAMILIES))


def _draw(fam, seed):
    rng = np.random.default_rng(seed)
    w = ref.draw_weights(fam, rng)
    x = fam.input_vector(rng.standard_normal)
    return w, x


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@over_families
@pytest.mark.parametrize("seed", [0, 1])
def test_feature_speed_formula(fam, seed):
    w, x = _draw(fam, seed)
    r = ref.bfa_exact(fam, w, x)
    lam = r["loss_decay"]
    moving = lam > 0
    # Thm 2.1: |fdot_v| = Lambda_v / (cos_v |b_v|), wherever anything upstream is trained ...
    speed = lam[moving] / (r["cos"][moving] * r["b_norm"][moving])
    np.testing.assert_allclose(r["fdot_norm"][moving], speed, rtol=1e-10, atol=0)
    # ... and fdot_v = 0 (cos undefined) where nothing upstream is.
    assert np.all(r["fdot_norm"][~moving] == 0)
    assert np.all(np.isnan(r["cos"][~moving]))
    assert np.all((r["cos"][moving] > 0) & (r["cos"][moving] <= 1 + 1e-12))
    # Sensitivity, Eq. (4): S_v = 1 / (cos_v m |b_v|_rms).
    m = fam.width
    np.testing.assert_allclose(
        r["sensitivity"][moving],
        1.0 / (r["cos"][moving] * m * r["b_norm"][moving] / math.sqrt(m)),
        rtol=1e-10,
    )
    # The learning-rate rule makes the total loss decay 1.
    assert math.isclose(np.sum(r["lr"] * r["grad_sq"]), 1.0, rel_tol=1e-12)


@over_families
def test_bfk_identities(fam):
    w, x = _draw(fam, 3)
    out = ref.bfk_termwise(fam, w, x)
    r = out["bfa"]
    for v, K in zip(out["layers"], out["K"]):
        b, fdot = r["b"][v - 1], r["fdot"][v - 1]
        scale = np.linalg.norm(K, 2) * np.linalg.norm(b)
        # fdot_v = -K_v b_v and b^T K b = Lambda_v (Def. 3.1, Thm 2.1), to round-off.
        assert np.max(np.abs(-K @ b - fdot)) <= 1e-12 * scale
        assert math.isclose(b @ K @ b, r["loss_decay"][v - 1], rel_tol=1e-10, abs_tol=1e-14)
        assert np.max(np.abs(K - K.T)) <= 1e-13 * np.max(np.abs(K))
        assert np.linalg.eigvalsh(K).min() >= -1e-12 * np.linalg.norm(K, 2)


@over_families
def test_bfk_recursion_matches_termwise(fam):
    # The recursion of DESIGN.md, K_v = c_v I + A_v K_{v-1} A_v^T, against the term-by-term sum.
    w, x = _draw(fam, 4)
    out = ref.bfk_termwise(fam, w, x)
    c, f = out["kernel_weights"], out["bfa"]["f"]
    K = c[0] * np.eye(fam.width)
    np.testing.assert_allclose(K, out["K"][0], rtol=0, atol=0)
    for v in range(2, fam.depth):
        A = ref.layer_jacobian(fam, w, f, v)
        K = c[v - 1] * np.eye(fam.width) + A @ K @ A.T
        tol = 1e-12 * np.max(np.abs(K))
        assert np.max(np.abs(K - out["K"][v - 1])) <= tol


def test_bfk_layer_selection():
    fam = ResNet(7, 8, 0.6)
    w, x = _draw(fam, 5)
    full = ref.bfk_termwise(fam, w, x)
    some = ref.bfk_termwise(fam, w, x, layers=[5, 2])
    np.testing.assert_array_equal(some["layers"], [5, 2])
    np.testing.assert_allclose(some["K"], full["K"][[4, 1]], rtol=1e-14, atol=1e-16)
    with pytest.raises(ValueError, match="layers"):
        ref.bfk_termwise(fam, w, x, layers=[0])


@over_families
def test_fdot_matches_finite_difference_of_gd_step(fam):
    # The tangent pass is the exact first-order change of the features under W - t eta grad.
    w, x = _draw(fam, 6)
    r = ref.bfa_exact(fam, w, x)
    L = fam.depth
    grads = [fam.branch_scales[l] * np.outer(r["b"][l], x if l == 0 else
             ref._act(fam.activation if l < L - 1 else fam.readout, r["f"][l - 1]))
             for l in range(L)]
    np.testing.assert_allclose([np.sum(g * g) for g in grads], r["grad_sq"], rtol=1e-12)
    t = 1e-6  # the features are piecewise linear in t: central differences are exact off kinks
    plus = ref.forward(fam, [wl - t * e * g for wl, e, g in zip(w, r["lr"], grads)], x)
    minus = ref.forward(fam, [wl + t * e * g for wl, e, g in zip(w, r["lr"], grads)], x)
    for v in range(1, L):
        fd = (plus[v - 1] - minus[v - 1]) / (2 * t)
        # so the only error is rounding: f_v(+-t) (and the perturbed weights) carry eps |f_v|
        # each, divided by 2t; x10 for the accumulation over layers (measured at most 1.2x
        # eps |f_v| / t over the table). A crossed kink would be off by O(|fdot|).
        tol = 10 * EPS * max(np.linalg.norm(plus[v - 1]), np.linalg.norm(minus[v - 1])) / t
        assert np.linalg.norm(fd - r["fdot"][v - 1]) <= tol


@over_families
def test_jacobian_product(fam):
    w, x = _draw(fam, 7)
    L = fam.depth
    f = ref.forward(fam, w, x)
    J = ref.jacobian_product(fam, w, x, 1, L - 1)
    # Chain rule: J_{L-1,1} = J_{L-1,2} J_{2,1}, and J_{vv} = I.
    np.testing.assert_allclose(J, ref.jacobian_product(fam, w, x, 2, L - 1) @
                               ref.jacobian_product(fam, w, x, 1, 2), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ref.jacobian_product(fam, w, x, 3, 3), np.eye(fam.width))
    # The renormalised product is the same matrix.
    Jh, log_s = ref.jacobian_product(fam, w, x, 1, L - 1, return_log_scale=True)
    np.testing.assert_allclose(math.exp(log_s) * Jh, J, rtol=1e-12, atol=1e-14)
    # Against a finite difference of the forward map f_1 -> f_{L-1} (exact off ReLU kinks).
    a, beta = fam.skip, fam.branch_scale

    def propagate(f1):
        h = f1
        for l in range(2, L):
            h = a * h + beta * (w[l - 1] @ ref._act(fam.activation, h))
        return h

    t = 1e-7
    for j in range(3):
        e = np.zeros(fam.width)
        e[j] = t
        hp, hm = propagate(f[0] + e), propagate(f[0] - e)
        col = (hp - hm) / (2 * t)
        # rounding only (as above): eps |h| / t from the two evaluations, and the step f_1j +- t
        # rounded by eps |f_1j|, a relative error eps |f_1j| / t in the column; x10 (measured
        # 0.8x the first term at most)
        tol = 10 * EPS / t * (max(np.abs(hp).max(), np.abs(hm).max()) + abs(f[0][j]) * np.abs(J[:, j]))
        np.testing.assert_array_less(np.abs(col - J[:, j]), tol + 1e-300)
    with pytest.raises(ValueError, match="start"):
        ref.jacobian_product(fam, w, x, 3, 2)


@pytest.mark.parametrize("trained", ["all-but-first", "all"])
@pytest.mark.parametrize("rule", ["balanced", "uniform"])
def test_orthogonal_linear_mlp_is_aligned(trained, rule):
    # Orthogonal linear layers make every Jacobian an isometry, so K_v is a multiple of I: cos = 1.
    fam = MLP(8, 24, activation="linear", weights="orthogonal", trained=trained, lr_rule=rule)
    w = ref.draw_weights(fam, np.random.default_rng(8))
    for W in w[1:-1]:
        np.testing.assert_allclose(W @ W.T, np.eye(fam.width), atol=1e-13)
    r = ref.bfa_exact(fam, w)
    defined = ~np.isnan(r["cos"])
    assert defined.sum() == fam.depth - (2 if trained == "all-but-first" else 1)
    np.testing.assert_allclose(r["cos"][defined], 1.0, rtol=0, atol=1e-12)


def test_weight_draws():
    fam = MLP(4, 300, in_dim=50, out_dim=5, weights="orthogonal", hidden_std=0.3)
    w = ref.haar_weights(fam, 0)
    assert [W.shape for W in w] == fam.shapes
    for W, std in zip(w, fam.stds):
        rows, cols = W.shape
        G = W.T @ W if rows >= cols else W @ W.T
        np.testing.assert_allclose(G, std**2 * max(rows, cols) * np.eye(min(rows, cols)), atol=1e-12)
    g = ref.gaussian_weights(fam.replace(weights="gaussian"), np.random.default_rng(0))
    assert [W.shape for W in g] == fam.shapes
    # Entry std within 5 standard errors of the target (sd of a sample variance is s^2 sqrt(2/n));
    # 4 matrices at 5 SE: two-sided false alarm 2.3e-6 together.
    for W, std in zip(g, fam.stds):
        n = W.size
        assert abs(np.var(W) / std**2 - 1) < 5 * math.sqrt(2 / n)
    np.testing.assert_array_equal(ref.gaussian_weights(fam, 1)[1], ref.gaussian_weights(fam, 1)[1])


def test_bad_weights_rejected():
    fam = MLP(4, 6)
    w = ref.gaussian_weights(fam, 0)
    with pytest.raises(ValueError, match="4 matrices"):
        ref.bfa_exact(fam, w[:-1])
    with pytest.raises(ValueError, match=r"W_2"):
        ref.bfa_exact(fam, [w[0], w[1][:, :5], w[2], w[3]])
    with pytest.raises(ValueError, match="x must have shape"):
        ref.bfa_exact(fam, w, np.ones(3))


# -- torch peer ----------------------------------------------------------------------------------
@over_families
def test_torch_peer_matches_numpy(fam):
    pytest.importorskip("torch")
    from oracles.torch_ref import bfa_exact_torch

    w, x = _draw(fam, 9)
    r_np = ref.bfa_exact(fam, w, x)
    r_t = bfa_exact_torch(fam, w, x)
    for key in ("b_norm", "fdot_norm", "loss_decay", "lr", "grad_sq"):
        np.testing.assert_allclose(r_t[key], r_np[key], rtol=1e-12, atol=0, err_msg=key)
    np.testing.assert_array_equal(np.isnan(r_t["cos"]), np.isnan(r_np["cos"]))
    ok = ~np.isnan(r_np["cos"])
    np.testing.assert_allclose(r_t["cos"][ok], r_np["cos"][ok], rtol=1e-12, atol=0)
    for key in ("f", "b", "fdot"):
        for v, (u_t, u_np) in enumerate(zip(r_t[key], r_np[key]), start=1):
            assert _rel(u_t, u_np) <= 1e-12 if np.any(u_np) else not np.any(u_t), (key, v)


def test_torch_weights():
    torch = pytest.importorskip("torch")
    from oracles.torch_ref import bfa_exact_torch, torch_weights

    fam = ResNet(5, 200, 0.5, in_dim=100, out_dim=50)
    w = torch_weights(fam, seed=3)
    assert [tuple(W.shape) for W in w] == fam.shapes
    assert all(W.dtype == torch.float64 for W in w)
    for W, std in zip(w, fam.stds):  # 5 SE of a sample variance, as in test_weight_draws
        assert abs(float(W.var()) / std**2 - 1) < 5 * math.sqrt(2 / W.numel())
    # Drawing inside the peer with the same seed gives the same network as drawing outside.
    np.testing.assert_array_equal(bfa_exact_torch(fam, seed=3)["cos"], bfa_exact_torch(fam, w)["cos"])
    np.testing.assert_array_equal(torch_weights(fam, 3)[2].numpy(), w[2].numpy())
