"""The law's rules (rmtalign.rules): each activation's constants against their definitions by
quadrature, and the learning-rate rules against Eq. (8) written out here, not imported."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

import rmtalign as ra
from rmtalign import rules


@pytest.mark.parametrize("name", sorted(rules.ACTIVATIONS))
def test_activation_constants_match_their_definitions(name):
    act = rules.activation(name)
    assert act.name == name and rules.activation(act) is act
    z = np.array([-2.0, -0.5, 0.0, 0.5, 3.0])
    gauss = lambda f: integrate.quad(lambda t: f(t) * stats.norm.pdf(t), -np.inf, np.inf)[0]  # noqa: E731
    phi = lambda t: float(act.phi(np.array([t]))[0])  # noqa: E731
    dphi = lambda t: float(act.phi_prime(np.array([t]))[0])  # noqa: E731
    # gain = E[phi(z)^2] / E[z^2] = E[phi'(z)^2] for z ~ N(0, 1)
    assert gauss(lambda t: phi(t) ** 2) == pytest.approx(float(act.gain), rel=1e-9)
    assert gauss(lambda t: dphi(t) ** 2) == pytest.approx(float(act.gain), rel=1e-9)
    assert act.he_gain * act.gain == 1
    # mask probability P(phi'(z) != 0), and phi' is the derivative of phi away from 0
    assert gauss(lambda t: float(dphi(t) != 0)) == pytest.approx(float(act.mask_probability), rel=1e-9)
    h = 1e-6
    away = z[z != 0]
    np.testing.assert_allclose(act.phi_prime(away), (act.phi(away + h) - act.phi(away - h)) / (2 * h),
                               atol=1e-8)
    assert act.has_masks == (act.mask_probability < 1)
    S = act.support(z)
    assert (S is None) == (not act.has_masks)
    if S is not None:
        keep = np.zeros(z.size, bool)
        keep[S] = True
        assert np.all(act.phi(z)[~keep] == 0) and np.all(act.phi_prime(z)[keep] == 1)


def test_relu_and_linear_records():
    relu, lin = rules.activation("relu"), rules.activation("linear")
    np.testing.assert_array_equal(relu.phi(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(relu.phi_prime(np.array([-1.0, 0.0, 2.0])), [0.0, 0.0, 1.0])
    assert relu.torch_name == "relu" and lin.is_identity and not relu.is_identity
    assert ra.MLP(5, 8).phi is relu and ra.ResNet(5, 8, 0.5).psi is lin and ra.MLP(5, 8).psi is relu
    assert ra.MLP(5, 50).stds[1] == math.sqrt(2 / 50) and ra.MLP(5, 50, activation="linear").stds[1] == math.sqrt(1 / 50)
    with pytest.raises(ValueError, match="activation must be one of 'relu', 'linear'; got 'tanh'"):
        rules.activation("tanh")


def _eq8(grad_sq, trained):
    """Eq. (8) by hand: eta_l = 1 / (n |grad_l|^2) over the n trained layers with a gradient."""
    live = [l for l in range(len(grad_sq)) if trained[l] and grad_sq[l] > 0]
    return [1.0 / (len(live) * grad_sq[l]) if l in live else 0.0 for l in range(len(grad_sq))]


def _uniform(grad_sq, trained):
    """One rate on every trained layer, with unit total loss decay."""
    live = [l for l in range(len(grad_sq)) if trained[l] and grad_sq[l] > 0]
    total = sum(grad_sq[l] for l in live)
    return [1.0 / total if l in live else 0.0 for l in range(len(grad_sq))]


@pytest.mark.parametrize("trained", [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 0, 1, 1]])
def test_learning_rate_rules_against_their_definitions(trained):
    g = np.array([[3.0, 0.5, 2.0, 0.0, 7.0], [1.0, 4.0, 0.25, 9.0, 2.0]])  # one dead layer in row 0
    mask = np.array(trained, bool)
    bal = rules.learning_rates(g, mask, "balanced")
    uni = rules.learning_rates(g, mask, "uniform")
    for row in range(2):
        np.testing.assert_allclose(bal[row], _eq8(g[row], mask), rtol=1e-15)
        np.testing.assert_allclose(uni[row], _uniform(g[row], mask), rtol=1e-15)
        rates = uni[row][mask & (g[row] > 0)]
        assert np.all(rates == rates[0])  # uniform: one common rate
        np.testing.assert_allclose(np.sum(bal[row] * g[row]), 1.0, rtol=1e-15)
        np.testing.assert_allclose(np.sum(uni[row] * g[row]), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(rules.learning_rates(np.zeros(5), mask, "balanced"), 0.0)
    with pytest.raises(ValueError, match="lr_rule must be one of 'balanced', 'uniform'; got 'adam'"):
        rules.learning_rates(g, mask, "adam")


@pytest.mark.parametrize("rule", rules.LR_RULES)
def test_samplers_and_theory_apply_the_rule(rule):
    fam = ra.MLP(6, 24, trained="all", lr_rule=rule)
    res = ra.sample_bfa(fam, samples=2, seed=1)
    want = _eq8 if rule == "balanced" else _uniform
    for lr, g in zip(res.lr, res.grad_sq):
        np.testing.assert_allclose(lr, want(g, fam.trained_mask), rtol=1e-14)
    mf = ra.theory.mean_field(fam)
    np.testing.assert_allclose(mf.lr, want(mf.grad_sq, fam.trained_mask), rtol=1e-14)
