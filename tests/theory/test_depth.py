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
    assert r.cos[-1] * math.sqrt(v) == pytest.approx(math.sqrt(1.5), rel=1e-4)


def test_depth_limit_matches_long_recursion():
    for masks in ("free", "exact"):
        for c in (0.5, 2.0):
            lim = T.depth_limit(0.5, c, mode=masks).cos
            r = T.bfa(ResNet.scaled(20000, 100, c), mode=masks).cos[-1]
            assert r == pytest.approx(lim, abs=5e-4)
    assert T.depth_limit(0.5, 1.0, mode="free").cos == pytest.approx(1 / math.sqrt(1 + 2 / 3), rel=1e-15)
    assert T.depth_limit(0.7, 1.0).cos == 1.0 and T.depth_limit(0.3, 1.0).cos == 0.0


def test_depth_limit_inside_the_network_is_the_bfa_not_the_spectrum():
    L = 20000
    for c in (0.5, 2.0):
        lim = T.depth_limit(0.5, c, position=0.5)
        r = T.bfa(ResNet.scaled(L, 100, c))
        v = L // 2  # f_v at depth fraction 1/2: index v - 1
        assert lim.cos == pytest.approx(r.cos[v - 1], abs=5e-4)
        assert lim.cos_spectrum == pytest.approx(r.cos_spectrum[v - 1], abs=5e-4)
        assert lim.cos < lim.cos_spectrum - 1e-3  # the mask-correlated b_v lowers it
        out = T.depth_limit(0.5, c)
        assert out.cos == out.cos_spectrum  # at the output the two agree
    free = T.depth_limit(0.5, 2.0, mode="free", position=0.5)
    assert free.cos == free.cos_spectrum == pytest.approx((1 + 2 * 4 * 0.5 / 3) ** -0.5, rel=1e-15)


def test_depth_limit_bad_input():
    with pytest.raises(ValueError):
        T.depth_limit(1.5, 1.0)
    with pytest.raises(ValueError):
        T.depth_limit(0.5, -1.0)
