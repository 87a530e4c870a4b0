"""rmtalign/_weights.py: the weights operator (regenerated or kept blocks, read-only views)."""
import math

import numpy as np
import pytest
from scipy import stats

import rmtalign as ra
from rmtalign import MLP


def test_kept_weight_blocks_change_nothing_and_are_read_only():
    from rmtalign._weights import Weights

    fam = MLP(5, 24)
    kept, plain = Weights(fam, 11, keep_blocks=True), Weights(fam, 11)
    S = np.array([1, 4, 5, 9, 20])
    V = np.random.default_rng(0).standard_normal((2, S.size))
    U = np.random.default_rng(1).standard_normal((2, 24))
    np.testing.assert_allclose(kept.matvecs(3, V, cols=S), plain.matvecs(3, V, cols=S), rtol=1e-13)
    np.testing.assert_allclose(kept.rmatvecs(3, U, cols=S), plain.rmatvecs(3, U, cols=S), rtol=1e-13)
    block = kept.view(3, cols=S)
    np.testing.assert_array_equal(block, plain.view(3, cols=S))
    with pytest.raises(ValueError, match="read-only"):
        block *= 2.0
    # Other columns of a kept layer, or a budget too small, fall back to regeneration.
    np.testing.assert_array_equal(kept.view(3, cols=S[:3]), plain.view(3, cols=S[:3]))
    tiny = Weights(fam, 11, memory_budget=8, keep_blocks=True)
    assert tiny.copy(3, cols=S).flags.writeable
    # All columns (a linear network's mask keeps every one): cols=None and arange are one block.
    full = kept.matvecs(4, V[:, :1].repeat(24, axis=1))
    assert not kept.view(4, cols=np.arange(24)).flags.writeable
    np.testing.assert_allclose(full, plain.matvecs(4, V[:, :1].repeat(24, axis=1)), rtol=1e-13)


# -- Haar orthogonal weights ----------------------------------------------------------------------
def _hidden_q(fam, sample):
    W = ra.sample_network(fam, seed=3, sample=sample)[1][1]  # W_2, square m x m
    return W / (fam.stds[1] * math.sqrt(fam.width))


def test_orthogonal_weights_are_haar():
    """Q of a QR is orthogonal but not Haar unless the signs of diag(R) are fixed (Mezzadri 2007):
    LAPACK's Householder convention gives Q[0, 0] < 0 in every draw. A Haar Q has a symmetric
    entry with Q[0, 0]^2 ~ Beta(1/2, (m - 1)/2)."""
    fam = ra.MLP(4, 6, weights="orthogonal")
    q = np.array([_hidden_q(fam, i) for i in range(400)])
    np.testing.assert_allclose(q @ q.transpose(0, 2, 1), np.broadcast_to(np.eye(6), q.shape), atol=1e-14)
    first = q[:, 0, 0]
    # sign: binomial(400, 1/2); two-sided p-value of the count
    assert stats.binomtest(int(np.sum(first > 0)), first.size, 0.5).pvalue > 1e-3
    # law of one entry (and of a column's first entries, which are exchangeable under Haar)
    m = fam.width
    assert stats.kstest(first**2, stats.beta(0.5, (m - 1) / 2).cdf).pvalue > 1e-3
    assert stats.kstest(q[:, 3, 2] ** 2, stats.beta(0.5, (m - 1) / 2).cdf).pvalue > 1e-3
    assert stats.binomtest(int(np.sum(q[:, 3, 2] > 0)), first.size, 0.5).pvalue > 1e-3


def test_orthogonal_relu_mlp_matches_its_width_limit():
    """A sampled orthogonal ReLU MLP against theory.bfa (Var(A^T A) = 1 instead of the Gaussian
    2): one test over the compared layers at the 0.27% false-alarm rate of a single 3-SE test."""
    fam = ra.MLP(6, 64, weights="orthogonal")
    wl = ra.width_limit(fam, [64, 128, 256], samples=16, seed=11)
    th = ra.theory.bfa(fam).cos
    sl = slice(2, None)  # v = 3 .. 5 (v = 2 has cos = 1 exactly)
    z_max = stats.norm.isf(0.0027 / 2 / th[sl].size)
    assert np.all(np.abs(wl.limit[sl] - th[sl]) <= z_max * wl.limit_se[sl])
    gauss = ra.theory.bfa(fam.replace(weights="gaussian")).cos
    assert np.all(np.abs(gauss[sl] - th[sl]) > 6 * wl.limit_se[sl])  # the data tell the two apart
