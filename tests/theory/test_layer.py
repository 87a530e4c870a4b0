"""rmtalign/theory/layer.py: the width-limit law of one layer Jacobian ``A = a + g X D``: closed
forms, an exact orthogonal case, and Monte Carlo of dense Gaussian ReLU layers (fixed seed,
tolerance from the standard error)."""
import math
from fractions import Fraction as Fr

import numpy as np
import pytest
from scipy import stats

from rmtalign.families import ResNet
from rmtalign.theory.layer import LayerLaw, layer_law


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
    m, beta, n = 600, 0.6, 24
    a = math.sqrt(1 - beta**2)
    p = 0.5
    law = layer_law(ResNet(10, m, beta))
    exact = np.array([float(x) for x in law.moments(3)])
    # Finite-m expectations. tau(Y): exact at any m. tau(Y^2): by Wick's theorem (W_ij ~ N(0, 2/m),
    # D_j ~ Bernoulli(p)), E tr(Y^2)/m = limit + (4 a^2 beta^2 p + 4 beta^4 p (2 - p)) / m.
    # tau(Y^3): no closed form here; its bias is a judgement, measured (m = 10 .. 40, 10^5 draws)
    # at 1.47 exact/m, so 3 exact/m is a 2x margin.
    expected = exact + np.array([0.0, (4 * a * a * beta**2 * p + 4 * beta**4 * p * (2 - p)) / m, 0.0])
    bias = np.array([0.0, 0.0, 3.0 * exact[2] / m])
    est = []
    for _ in range(n):
        W = rng.standard_normal((m, m)) * math.sqrt(2 / m)
        D = (rng.random(m) < p).astype(float)
        A = a * np.eye(m) + beta * W * D
        Y = A.T @ A
        Y2 = Y @ Y
        est.append([np.trace(Y) / m, np.trace(Y2) / m, np.sum(Y2 * Y) / m])
    est = np.array(est)
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(n)
    # SEs from n draws: Student-t with n - 1 dof; three moments at a family-wise 0.27%
    # (Bonferroni): t_23 = 3.9
    crit = stats.t.isf(0.0027 / 2 / 3, n - 1)
    assert np.all(np.abs(mean - expected) <= crit * se + bias), (mean - expected) / se
