"""rmtalign/alignment.py: the definitions and identities of the BFA, by hand on tiny arrays, and the
feature speed formula and sensitivity on the samplers' output (round-off, over the family table).

Tolerances: by-hand values are a few operations from exact, so 1e-15 (4.5 eps, or 1e-12 for
degrees) is their round-off; the samplers' identities compare two paths through networks of
m <= 24, L <= 7 (~ L m eps = 4e-14) and divide by a cosine and a norm: 1e-10."""
import math

import numpy as np
import pytest

import rmtalign as ra
from rmtalign import alignment



def test_cos_between_by_hand_and_nan_for_zero_vectors():
    u = np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    v = np.array([[1.0, 1.0], [-3.0, -4.0], [1.0, 2.0], [0.0, 0.0]])
    got = alignment.cos_between(u, v)
    np.testing.assert_allclose(got[:2], [1 / math.sqrt(2), -1.0], rtol=1e-15)
    assert np.isnan(got[2]) and np.isnan(got[3])
    # axis: the vectors on the first axis (columns)
    np.testing.assert_allclose(alignment.cos_between(u[:2].T, v[:2].T, axis=0), got[:2], rtol=1e-15)


def test_bfa_cos_is_the_cosine_with_minus_b():
    b = np.array([1.0, 0.0])
    assert alignment.bfa_cos(b, [-2.0, 0.0]) == pytest.approx(1.0, abs=1e-15)  # fdot = -2 b
    assert alignment.bfa_cos(b, [2.0, 0.0]) == pytest.approx(-1.0, abs=1e-15)
    assert alignment.bfa_cos(b, [-1.0, 1.0]) == pytest.approx(1 / math.sqrt(2), rel=1e-15)
    assert np.isnan(alignment.bfa_cos(b, [0.0, 0.0]))


def test_angle_deg():
    np.testing.assert_allclose(alignment.angle_deg([1.0, 0.5, 0.0, -1.0]), [0.0, 60.0, 90.0, 180.0],
                               atol=1e-12)
    # round-off beyond +-1 is clipped, not NaN
    np.testing.assert_array_equal(alignment.angle_deg([1 + 1e-15, -1 - 1e-15]), [0.0, 180.0])


def test_spectral_moments_and_cos_from_spectrum():
    lam = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(alignment.spectral_moments(lam, (1, 2, 3)),
                               [[2.0, 2.0], [14 / 3, 4.0], [12.0, 8.0]], rtol=1e-15)
    # M1 / sqrt(M2); 1 for a multiple of the identity
    np.testing.assert_allclose(alignment.cos_from_spectrum(lam), [2 / math.sqrt(14 / 3), 1.0], rtol=1e-15)
    np.testing.assert_allclose(alignment.cos_from_spectrum(lam.T, axis=0), [2 / math.sqrt(14 / 3), 1.0],
                               rtol=1e-15)


def test_cos_from_kernel_by_hand():
    K = np.array([[2.0, 1.0], [1.0, 3.0]])
    b = np.array([1.0, -1.0])
    # K b = (1, -2), b^T K b = 3, |K b| = sqrt 5, |b| = sqrt 2
    assert alignment.cos_from_kernel(K, b) == pytest.approx(3 / math.sqrt(10), rel=1e-15)
    # batched over a leading axis, and the definition b^T K b / (|K b| |b|) on a random SPD kernel
    A = np.random.default_rng(0).standard_normal((4, 5, 5))
    Ks = A @ A.transpose(0, 2, 1)
    bs = np.random.default_rng(1).standard_normal((4, 5))
    Kb = np.einsum("sij,sj->si", Ks, bs)
    ref = np.einsum("si,si->s", bs, Kb) / (np.linalg.norm(Kb, axis=1) * np.linalg.norm(bs, axis=1))
    np.testing.assert_allclose(alignment.cos_from_kernel(Ks, bs), ref, rtol=1e-13)
    np.testing.assert_allclose(alignment.cos_from_kernel(np.stack([K, 2 * K]), [b, b]),
                               [3 / math.sqrt(10)] * 2, rtol=1e-15)


def test_spectral_bounds():
    low, high = alignment.spectral_bounds([[1.0, 4.0, 2.0], [3.0, 3.0, 3.0]])
    np.testing.assert_allclose(low, [0.25, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(high, [1.0, 1.0])
    # the bounds hold for cos_from_kernel (Thm 3.2)
    K = np.diag([1.0, 4.0, 2.0])
    for b in np.random.default_rng(2).standard_normal((20, 3)):
        assert 0.25 - 1e-15 <= alignment.cos_from_kernel(K, b) <= 1 + 1e-15


def test_feature_speed_and_sensitivity_by_hand():
    # |fdot| = Lambda / (cos |b|) = 3 / (0.5 * 2) = 3
    assert alignment.feature_speed(3.0, 0.5, 2.0) == pytest.approx(3.0, rel=1e-15)
    np.testing.assert_allclose(alignment.feature_speed([3.0, 1.0], [0.5, 1.0], [2.0, 4.0]), [3.0, 0.25],
                               rtol=1e-15)
    # S = |fdot|_rms / Lambda = (6 / sqrt 4) / 3 = 1
    assert alignment.sensitivity(6.0, 3.0, 4) == pytest.approx(1.0, rel=1e-15)
    # ... = 1 / (cos m |b|_rms) = 1 / (cos sqrt(m) |b|) when |fdot| obeys the feature speed formula
    fdot = alignment.feature_speed(3.0, 0.5, 2.0)
    assert alignment.sensitivity(fdot, 3.0, 4) == pytest.approx(1 / (0.5 * math.sqrt(4) * 2.0), rel=1e-15)


def test_feature_speed_formula_holds_to_round_off(family):
    res = ra.sample_bfa(family, samples=3, seed=5)
    moving = np.isfinite(res.cos)
    assert moving[:, 1:].all()
    predicted = ra.feature_speed(res.loss_decay, res.cos, res.b_norm)
    np.testing.assert_allclose(res.fdot_norm[moving], predicted[moving], rtol=1e-10)
    # Sensitivity: |fdot|_rms / Lambda = 1 / (cos m |b|_rms)  (Eq. 4)
    m = family.width
    np.testing.assert_allclose(res.sensitivity[moving],
                               1 / (res.cos * math.sqrt(m) * res.b_norm)[moving], rtol=1e-10)
