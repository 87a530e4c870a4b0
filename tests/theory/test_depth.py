"""rmtalign/theory/depth.py: closed forms for MLPs and the depth limits of the BFA, against long
recursions of theory.bfa."""
import math

import numpy as np
import pytest

from rmtalign import theory as T
from rmtalign.families import MLP, ResNet


@pytest.mark.parametrize("act,weights,var", [("relu", "gaussian", 2), ("relu", "orthogonal", 1),
                                             ("linear", "gaussian", 1), ("linear", "orthogonal", 0)])
def test_mlp_bfa_closed_form(act, weights, var):
    f = MLP(40, 100, activation=act, weights=weights)
    r = T.bfa(f)
    assert np.array_equal(r.layers, np.arange(1, 40))
    assert np.isnan(r.cos[0])
    assert np.allclose(r.cos[1:], T.mlp_bfa_exact(r.layers[1:], var), rtol=1e-13)
    assert np.allclose(T.bfa(f, mode="free").cos[1:], r.cos[1:], rtol=1e-13)


def test_mlp_asymptote_constant():
    r = T.bfa(MLP(10**5, 100))
    v = r.layers[-1]
    # From the closed form (n = v - 1): cos^2 v / (3/2) = 1 + (v - 3/2) / ((v - 1)^2 + 1/2), so
    # cos sqrt(v) = sqrt(3/2) (1 + 1/(2v) + O(v^-2)); rel = 1/v bounds that (round-off of the
    # 10^5-step recursion, ~1e5 eps, is far below).
    assert r.cos[-1] * math.sqrt(v) == pytest.approx(math.sqrt(1.5), rel=1 / v)


# The depth-L recursion is a first-order discretisation (step 1/L) of the depth limit's integral:
# cos_L - cos_inf = C/L + O(L^-2). C is not derived in closed form here; measured C = 0.23 / 0.67
# (free, c = 0.5 / 2), 0.26 / 1.01 (exact), and 0.21 / 1.35 at position 1/2 (exact), constant from
# L = 2500 to 10^6. The tolerance 2/L (1e-4 at L = 20000) bounds that with a >= 1.5x margin.
L_LONG = 20000
TOL_LONG = 2 / L_LONG


def test_depth_limit_matches_long_recursion():
    for masks in ("free", "exact"):
        for c in (0.5, 2.0):
            lim = T.depth_limit(0.5, c, mode=masks).cos
            r = T.bfa(ResNet.scaled(L_LONG, 100, c), mode=masks).cos[-1]
            assert r == pytest.approx(lim, rel=0, abs=TOL_LONG)
    assert T.depth_limit(0.5, 1.0, mode="free").cos == pytest.approx(1 / math.sqrt(1 + 2 / 3), rel=1e-15)
    assert T.depth_limit(0.7, 1.0).cos == 1.0 and T.depth_limit(0.3, 1.0).cos == 0.0


def test_depth_limit_inside_the_network_is_the_bfa_not_the_spectrum():
    L = L_LONG
    for c in (0.5, 2.0):
        lim = T.depth_limit(0.5, c, position=0.5)
        r = T.bfa(ResNet.scaled(L, 100, c))
        v = L // 2  # f_v at depth fraction 1/2: index v - 1
        assert lim.cos == pytest.approx(r.cos[v - 1], rel=0, abs=TOL_LONG)
        assert lim.cos_spectrum == pytest.approx(r.cos_spectrum[v - 1], rel=0, abs=TOL_LONG)
        # the mask-correlated b_v lowers it: gap 1.7e-3 (c = 0.5), 1.8e-2 (c = 2); 1e-3 > 2 TOL_LONG,
        # so the two comparisons above could not both pass with cos and cos_spectrum swapped
        assert lim.cos < lim.cos_spectrum - 1e-3
        out = T.depth_limit(0.5, c)
        assert out.cos == out.cos_spectrum  # at the output the two agree
    free = T.depth_limit(0.5, 2.0, mode="free", position=0.5)
    assert free.cos == free.cos_spectrum == pytest.approx((1 + 2 * 4 * 0.5 / 3) ** -0.5, rel=1e-15)


def test_depth_limit_bad_input():
    with pytest.raises(ValueError, match=r"^alpha must be <= 1\.0, got 1\.5$"):
        T.depth_limit(1.5, 1.0)
    with pytest.raises(ValueError, match=r"^c must be > 0\.0, got -1\.0$"):
        T.depth_limit(0.5, -1.0)


@pytest.mark.parametrize("alpha", [0.2, 0.35, 0.65, 0.8, 1.0])
def test_depth_limit_rate_is_the_slope_of_the_finite_depth_bfa(alpha):
    """``rate`` r: |cos(L) - limit| ~ L^-r. The local slope of the finite-L width-limit BFA between
    L = 1e4 and 1e5 (output layer) approaches r with corrections of relative order L^-r'
    (measured within 0.003 of r for these alphas); 0.02 is a judgement that still separates every
    pair of the candidate exponents (2 alpha - 1, 1/2 - alpha, 1 - alpha, ...)."""
    lim = T.depth_limit(alpha, 1.0)
    assert lim.regime == ("trivial" if alpha > 0.5 else "degenerate")
    assert lim.rate == pytest.approx(2 * alpha - 1 if alpha > 0.5 else 0.5 - alpha, rel=1e-15)
    gap = [abs(T.bfa(ResNet.scaled(L, 100, 1.0, alpha=alpha)).cos[-1] - lim.cos) for L in (10**4, 10**5)]
    assert -math.log10(gap[1] / gap[0]) == pytest.approx(lim.rate, abs=0.02)
    assert T.depth_limit(0.5, 1.0).rate is None and T.depth_limit(0.5, 1.0).regime == "critical"
