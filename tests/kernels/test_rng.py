"""rmtalign/_kernels/rng.py: the counter-based Gaussian generator against its plain-Python oracle
(tests/oracles/rng_ref.py), bit for bit, and its statistics at fixed keys."""
import numpy as np
import pytest
from scipy import stats

from rmtalign._kernels import rng
from oracles import rng_ref


def _normals(key, rows, cols):
    out = np.empty((rows, cols))
    rng.fill_normal(np.uint64(key), out)
    return out


@pytest.mark.parametrize("key", [0, 1, 2**63 + 12345, 2**64 - 1])
def test_fill_normal_is_bit_identical_to_the_reference(key):
    out = _normals(key, 4, 700)  # 2800 draws: ~35 take the slow (rejection) paths
    for r in range(4):
        np.testing.assert_array_equal(out[r], rng_ref.normals(key, r, 700))


def test_tail_path_is_exercised_and_matches():
    # ~0.1% of draws come from the Marsaglia tail (|z| > 3.654); find some and compare them.
    out = _normals(99, 64, 4096)
    rows = np.flatnonzero((np.abs(out) > rng._ZIG_R).any(axis=1))
    assert rows.size > 3
    for r in rows[:3]:
        np.testing.assert_array_equal(out[r], rng_ref.normals(99, int(r), 4096))


def test_normals_are_standard_gaussian():
    z = _normals(2026, 500, 2000).ravel()  # 1e6 draws
    n = z.size
    # Five checks of a correct generator at one fixed key: mean, variance (SE sqrt(2/n)), excess
    # kurtosis (SE sqrt(24/n)) at 4 SE (two-sided false alarm 6.3e-5 each); KS at p > 1e-3; the
    # tail count (binomial, SE ~ sqrt(p/n)) at 5 SE (5.7e-7). Together: 1.2e-3.
    se = 1 / np.sqrt(n)
    assert abs(z.mean()) < 4 * se
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    assert abs(stats.kurtosis(z)) < 4 * np.sqrt(24 / n)
    # Kolmogorov-Smirnov at a fixed seed; the tail mass beyond the ziggurat base is right too.
    assert stats.kstest(z, "norm").pvalue > 1e-3
    p_tail = 2 * stats.norm.sf(rng._ZIG_R)
    assert abs(np.mean(np.abs(z) > rng._ZIG_R) - p_tail) < 5 * np.sqrt(p_tail / n)


def test_rows_and_keys_are_independent_streams():
    z = _normals(5, 2, 20000)
    w = _normals(6, 1, 20000)
    for u, v in ((z[0], z[1]), (z[0], w[0])):  # SE of a null correlation 1/sqrt(n); 4 SE
        assert abs(np.corrcoef(u, v)[0, 1]) < 4 / np.sqrt(20000)


def test_derive_key_and_uniform_bits_reference():
    k = rng.derive_key(123, 4, 5)
    assert k == rng.derive_key(rng.derive_key(123, 4), 5) and 0 <= k < 2**64
    bits = rng.uniform_bits(k, 5)
    ref = [rng_ref.mix64((k + (c + 1) * rng.GOLDEN) & rng.MASK64) for c in range(5)]
    assert bits.tolist() == ref
    halves = rng.uniform_bits(k, 100000) >> np.uint64(63)
    assert abs(halves.mean() - 0.5) < 4 * 0.5 / np.sqrt(100000)  # binomial SE, 4 SE


def test_entries_are_addressable_by_row_and_column():
    """Any block of the matrix, generated alone, equals that block of the whole matrix: what lets
    the passes skip the columns a ReLU mask zeroes."""
    W = _normals(5, 40, 3000)
    rows = np.array([39, 0, 17])
    cols = np.array([2999, 5, 6, 1000, 0])
    block = np.empty((3, 5))
    rng.fill_normal(5, block, rows, cols)
    np.testing.assert_array_equal(block, W[np.ix_(rows, cols)])
    # rejected entries (their words fail the rectangle test) are found the same way
    k = [rng_ref.mix64((5 + (r + 1) * rng.GOLDEN) & rng.MASK64) for r in range(40)]
    bad = [(r, j) for r in range(40) for j in range(3000)
           if (((w := rng_ref.mix64((k[r] + (j + 1) * rng.GOLDEN) & rng.MASK64)) >> 9) & 0x000FFFFFFFFFFFFF)
           >= int(rng._KI[w & 0xFF])][:20]
    assert len(bad) == 20
    one = np.empty((1, 1))
    for r, j in bad:
        rng.fill_normal(5, one, [r], [j])
        assert one[0, 0] == W[r, j]
