"""rmtalign/theory/signal.py: width-limit signal propagation (mean_field) by hand for He-initialised
families, and against the numpy oracle where the norms are exact at any width (orthogonal linear
MLPs). rtol 1e-12: round-off of products and sums over <= 7 layers (~ L m eps for the oracle's
norms, 1e-13), with margin."""
import numpy as np
import pytest

from oracles import numpy_ref as ref
from rmtalign import MLP, ResNet
from rmtalign.theory import mean_field


def test_relu_mlp_by_hand():
    # He init, fixed input (|x|^2 = d, s_1^2 = 1/d): |f_l|^2 = m at every layer; ReLU readout
    # (h = 1/2) with s_L^2 = 1/m: |b_l|^2 = 1/2 below the output, 1 at it.
    L, m, d = 7, 32, 10
    mf = mean_field(MLP(L, m))
    np.testing.assert_allclose(mf.forward_sq, np.full(L - 1, m), rtol=1e-12)
    np.testing.assert_allclose(mf.backward_sq, [0.5] * (L - 1) + [1.0], rtol=1e-12)
    # |grad_1|^2 = B_1 |x|^2, |grad_l|^2 = B_l |phi(f_{l-1})|^2 = (1/2)(m/2), |grad_L|^2 = m/2
    np.testing.assert_allclose(mf.grad_sq, [d / 2] + [m / 4] * (L - 2) + [m / 2], rtol=1e-12)
    # balanced rates over the L - 1 trained layers (W_1 frozen): eta_l |grad_l|^2 = 1/(L-1)
    np.testing.assert_allclose(mf.lr, [0.0] + [4 / (m * (L - 1))] * (L - 2) + [2 / (m * (L - 1))],
                               rtol=1e-12)
    # c_l = eta_l |phi(f_{l-1})|^2 = eta_l m/2
    np.testing.assert_allclose(mf.kernel_weights, [0.0] + [2 / (L - 1)] * (L - 2) + [1 / (L - 1)],
                               rtol=1e-12)
    np.testing.assert_array_equal(mf.layers, np.arange(1, L + 1))


def test_variance_preserving_resnet_by_hand():
    # a^2 + beta^2 m s^2 h = (1 - beta^2) + beta^2 = 1: |f_l|^2 = m and, with the linear readout,
    # |b_l|^2 = m s_L^2 = 1 at every layer.
    L, m, d, beta = 7, 24, 10, 0.4
    mf = mean_field(ResNet(L, m, beta))
    np.testing.assert_allclose(mf.forward_sq, np.full(L - 1, m), rtol=1e-12)
    np.testing.assert_allclose(mf.backward_sq, np.ones(L), rtol=1e-12)
    np.testing.assert_allclose(mf.grad_sq, [d] + [beta**2 * m / 2] * (L - 2) + [m], rtol=1e-12)
    # c_l = eta_l beta_l^2 |phi(f_{l-1})|^2 = eta_l |grad_l|^2 (B_l = 1) = 1/(L-1) for l >= 2
    np.testing.assert_allclose(mf.kernel_weights, [0.0] + [1 / (L - 1)] * (L - 1), rtol=1e-12)
    uniform = mean_field(ResNet(L, m, beta, trained="all", lr_rule="uniform"))
    np.testing.assert_allclose(uniform.lr, np.full(L, 1 / (d + (L - 2) * beta**2 * m / 2 + m)), rtol=1e-12)


@pytest.mark.parametrize("family", [
    MLP(6, 16, activation="linear", weights="orthogonal"),
    MLP(5, 12, in_dim=7, out_dim=3, activation="linear", weights="orthogonal", trained="all",
        lr_rule="uniform"),
    MLP(6, 16, activation="linear", weights="orthogonal", hidden_std=0.3, output_std=0.5),
], ids=["mlp-lin-orth", "mlp-lin-orth-out3-all-uniform", "mlp-lin-orth-off-critical"])
def test_orthogonal_linear_mlp_matches_the_oracle_at_any_width(family):
    # Orthogonal linear layers scale every vector's norm exactly (W^T W = s^2 m I): the width
    # limit holds at width m, to round-off.
    r = ref.bfa_exact(family, ref.haar_weights(family, 0))
    mf = mean_field(family)
    L = family.depth
    sq = lambda vs: np.array([v @ v for v in vs])  # noqa: E731
    np.testing.assert_allclose(mf.forward_sq, sq(r["f"][: L - 1]), rtol=1e-12)
    np.testing.assert_allclose(mf.backward_sq, sq(r["b"]), rtol=1e-12)
    np.testing.assert_allclose(mf.grad_sq, r["grad_sq"], rtol=1e-12)
    np.testing.assert_allclose(mf.lr, r["lr"], rtol=1e-12)
    inputs = sq([r["x"]] + list(r["f"][: L - 1]))  # |phi(f_{l-1})|^2 (phi linear), |x|^2 for l = 1
    np.testing.assert_allclose(mf.kernel_weights, r["lr"] * family.branch_scales**2 * inputs, rtol=1e-12)
