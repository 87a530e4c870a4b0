"""Tests for rmtalign._products: singular values of long matrix products."""
import math

import numpy as np
import pytest

from rmtalign._products import (
    log_condition_number,
    product_log_singular_values,
    product_spectrum,
)

EPS = np.finfo(np.float64).eps


def _haar(rng, m):
    q, r = np.linalg.qr(rng.standard_normal((m, m)))
    return q * np.sign(np.diag(r))


def _explicit(factors, m):
    P = np.eye(m)
    for A in factors:
        P = A @ P
    return np.log(np.linalg.svd(P, compute_uv=False) ** 2)


def _perturbation_tol(factors):
    """First-order bound on |d log sigma^2| from eps-relative rounding of each factor.

    A_k -> A_k (I + E_k) with ||E_k|| <= eps cond(A_k) moves every singular value of the
    product by a relative sum_k eps cond(A_k); the factor 10 covers the rounding constants
    of one multiply and one QR per factor, the factor 2 the square.
    """
    return 2 * 10 * EPS * sum(np.linalg.cond(A) for A in factors)


@pytest.mark.parametrize("n", [1, 2, 3, 6])
def test_short_products_match_explicit_svd(n):
    rng = np.random.default_rng(n)
    m = 12
    As = [rng.standard_normal((m, m)) / np.sqrt(m) for _ in range(n)]
    got = product_log_singular_values(As, m)
    ref = _explicit(As, m)
    P = np.linalg.multi_dot(As[::-1]) if n > 1 else As[0]
    # np.linalg.svd itself is accurate to eps * cond(P) relative in sigma (the smallest one's
    # relative error is eps sigma_max / sigma_min); x2 for the square, x10 for LAPACK's constants.
    tol = 20 * EPS * np.linalg.cond(P)
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol)
    assert np.all(np.diff(got) <= 0)


def test_single_gaussian_is_not_lyapunov():
    # One Gaussian matrix: the answer is its singular values, not log|diag R|.
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 40))
    got = product_log_singular_values([A], 40)
    np.testing.assert_allclose(got, _explicit([A], 40), rtol=0, atol=20 * EPS * np.linalg.cond(A))
    diagR = np.sort(np.log(np.abs(np.diag(np.linalg.qr(A)[1])) ** 2))[::-1]
    assert np.abs(got - diagR).max() > 1.0


def test_rectangular_factors_and_structural_zeros():
    rng = np.random.default_rng(1)
    shapes = [(7, 5), (3, 7), (9, 3), (6, 9)]  # rank <= 3 while the product is 6 x 5
    As = [rng.standard_normal(s) for s in shapes]
    got = product_log_singular_values(As, 5)
    P = As[3] @ As[2] @ As[1] @ As[0]
    sv = np.linalg.svd(P, compute_uv=False)
    ref = np.log(sv**2)
    assert got.shape == (5,)
    # the reference's SVD error (relative eps sigma_1 / sigma_3 on the third value) plus the
    # product's rounding (_perturbation_tol; cond of a rectangular factor: its extreme singular
    # values' ratio)
    tol = 20 * EPS * sv[0] / sv[2] + _perturbation_tol(As)
    np.testing.assert_allclose(got[:3], ref[:3], rtol=0, atol=tol)
    assert np.all(got[3:] == -np.inf)
    spec = product_spectrum(As, 5)
    assert spec.log_cond == math.inf


def test_orthogonal_products_give_zero_logs():
    rng = np.random.default_rng(2)
    m, n = 32, 300
    Qs = [_haar(rng, m) for _ in range(n)]
    got = product_log_singular_values(Qs, m)
    # Each float64 "orthogonal" factor is orthogonal to ~m eps.
    np.testing.assert_allclose(got, 0.0, atol=2 * n * m * EPS)
    assert product_spectrum(Qs, m).n_qr < n  # well conditioned: blocks of many factors


def test_long_product_with_known_singular_values():
    """A_k = O_k diag(d) O_{k-1}^T: the product is O_n diag(d)^n O_0^T."""
    rng = np.random.default_rng(3)
    m, n = 48, 1000
    d = np.exp(np.linspace(-1.0, 1.0, m))
    O = [_haar(rng, m) for _ in range(n + 1)]
    As = (O[k + 1] @ (d[:, None] * O[k].T) for k in range(n))
    spec = product_spectrum(As, m)
    ref = np.sort(2 * n * np.log(d))[::-1]  # spans e^{+-2000}: far beyond float64
    tol = 2 * 10 * EPS * n * m * d.max() / d.min()
    np.testing.assert_allclose(spec.log_sv2, ref, rtol=0, atol=tol)
    np.testing.assert_allclose(spec.log_cond, 0.5 * (ref[0] - ref[-1]), atol=tol)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_long_gaussian_product_against_mpmath():
    import mpmath as mp  # declared in the test extra: a missing mpmath is an error, not a skip
    rng = np.random.default_rng(4)
    m, n = 6, 400
    As = [rng.standard_normal((m, m)) / np.sqrt(m) for _ in range(n)]
    got = product_log_singular_values(As, m)
    with mp.workdps(500):  # the product's singular values span e^{~600}
        P = mp.eye(m)
        for A in As:
            P = mp.matrix(A.tolist()) * P
        ref = np.sort([float(2 * mp.log(s)) for s in mp.svd_r(P, compute_uv=False)])[::-1]
    assert ref[0] - ref[-1] > 710  # sigma_max^2 / sigma_min^2 is not representable
    np.testing.assert_allclose(got, ref, rtol=0, atol=_perturbation_tol(As))
    # Forcing one QR per factor agrees too.
    got1 = product_log_singular_values(As, m, block_cond=1.0)
    np.testing.assert_allclose(got1, ref, rtol=0, atol=_perturbation_tol(As))


def test_graded_diagonal_in_the_wrong_order():
    # diag(1/2, 1, 2)^n: QR without pivoting never reorders; the final sweeps must.
    n = 3000
    A = np.diag([0.5, 1.0, 2.0])
    got = product_log_singular_values([A] * n, 3)
    ref = 2 * n * np.log([2.0, 1.0, 0.5])
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=0)
    # Upper triangular factors with increasing diagonal keep the invariant flag e_1 first:
    # unpivoted QR iteration cannot sort it. Known limitation: the top value is right and
    # a RuntimeWarning says the small ones may not be.
    B = np.array([[0.5, 1e-3, 0.0], [0.0, 1.0, 1e-3], [0.0, 0.0, 2.0]])
    with pytest.warns(RuntimeWarning, match="invariant subspace ordering"):
        got = product_log_singular_values([B] * n, 3)
    # B = V diag(lam) V^-1: B^n = 2^n v u^T (1 + O(2^-n)) with v the eigenvector of 2 and u^T the
    # matching row of V^-1, so log sigma_1^2 = 2 n log 2 + 2 log(|v| |u|) (|v| |u| - 1 ~ 1e-6),
    # to the product's rounding
    lam, V = np.linalg.eig(B)
    i = int(np.argmax(lam))
    top = 2 * n * np.log(2.0) + 2 * np.log(np.linalg.norm(V[:, i]) * np.linalg.norm(np.linalg.inv(V)[i]))
    np.testing.assert_allclose(got[0], top, rtol=0, atol=_perturbation_tol([B] * n))


def test_huge_and_tiny_scales_within_blocks():
    rng = np.random.default_rng(5)
    m, n = 16, 200
    for scale in (1e100, 1e-100):
        Qs = [scale * _haar(rng, m) for _ in range(n)]
        got = product_log_singular_values(Qs, m)
        # summing n logs, each eps-relative: n eps = 4.4e-14 relative (the factors' departure
        # from orthogonality, 2 n m eps absolute, is far smaller than that times |2 n log(scale)|)
        np.testing.assert_allclose(got, 2 * n * np.log(scale), rtol=1e-13)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_gaussian_depth_1000_is_finite_and_sane():
    """iid Gaussian linear chain, m = 64, depth 1000: finite, and the law of its spectrum.

    Real Ginibre factors (entries N(0, 1/m)). QR iteration of the product (A_k Q_{k-1} = Q_k R_k)
    gives R_k with independent diagonals, |r_ii|^2 ~ chi^2_{m-i+1} / m (Bartlett, by orthogonal
    invariance), so S_k = sum_{i<=k} sum_factors log r_ii^2 has mean n sum_{i<=k} mu_i,
    mu_i = log(2/m) + digamma((m-i+1)/2), and variance n sum_{i<=k} trigamma((m-i+1)/2), exactly.
    The product P = U Sigma V^T: prod_{i<=k} r_ii^2 = det(P_k^T P_k) (P_k its first k columns)
    = prod_{i<=k} sigma_i^2 det(V[:k, :k])^2 up to e^-(gap) (Cauchy-Binet; the log-spectrum's
    gaps are ~ n / (m - k) >> 1). So C_k = sum_{i<=k} log sigma_i^2 = S_k + T_k with T_k =
    -log det(V[:k, :k])^2, V Haar and independent of Sigma (the first factor is right-invariant):
    det(V[:k, :k])^2 ~ prod_{j<=k} Beta((k-j+1)/2, (m-k)/2), so E T_k = sum_j digamma(a_j + b) -
    digamma(a_j), Var T_k = sum_j trigamma(a_j) - trigamma(a_j + b), and, C_k and T_k being
    independent, E C_k = E S_k + E T_k and Var C_k = Var S_k - Var T_k. (T_k is the O(1) offset
    between the Lyapunov sums and the singular values: about 5.4 for k = 1.)
    """
    from scipy.special import digamma, polygamma
    from scipy import stats

    rng = np.random.default_rng(6)
    m, n = 64, 1000
    logdet, conds = [], []

    def factors():
        for _ in range(n):
            A = rng.standard_normal((m, m)) / np.sqrt(m)
            logdet.append(np.linalg.slogdet(A)[1])
            conds.append(np.linalg.cond(A))
            yield A

    spec = product_spectrum(factors(), m)
    assert np.isfinite(spec.log_sv2).all() and spec.n_factors == n
    # all m together: log det(P^T P) = sum_k log det(A_k)^2, each value within _perturbation_tol
    total = 2 * math.fsum(logdet)
    assert abs(math.fsum(spec.log_sv2) - total) <= m * 2 * 10 * EPS * sum(conds)
    # partial sums C_k, k = 1 .. m, against their mean and SD (normal approximation: S_k sums n
    # terms; T_k's tail is exponential, rate 1/2), 64 tests at a family-wise 0.27% (Bonferroni)
    kk = np.arange(1, m + 1)
    i_shape = (m - np.arange(m)) / 2.0  # (m - i + 1)/2, i = 1 .. m
    mean_s = n * np.cumsum(np.log(2.0 / m) + digamma(i_shape))
    var_s = n * np.cumsum(polygamma(1, i_shape))
    mean_t, var_t = np.zeros(m), np.zeros(m)
    for k in kk[:-1]:  # T_m = 0: det V = +-1
        a, b = (k - np.arange(1, k + 1) + 1) / 2.0, (m - k) / 2.0
        mean_t[k - 1] = np.sum(digamma(a + b) - digamma(a))
        var_t[k - 1] = np.sum(polygamma(1, a) - polygamma(1, a + b))
    z = (np.cumsum(spec.log_sv2) - mean_s - mean_t) / np.sqrt(var_s - var_t)
    assert np.all(np.abs(z) <= stats.norm.isf(0.0027 / 2 / m)), z


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_depth_1000_width_256_finite():
    rng = np.random.default_rng(7)
    m, n = 256, 1000
    beta = 1 / np.sqrt(n)
    a = np.sqrt(1 - beta**2)

    def layers():
        for _ in range(n):
            W = rng.standard_normal((m, m)) * np.sqrt(2.0 / m)
            mask = rng.random(m) < 0.5
            yield a * np.eye(m) + beta * W * mask

    spec = product_spectrum(layers(), m)
    assert np.isfinite(spec.log_sv2).all() and np.isfinite(spec.log_cond)
    assert spec.n_qr < n / 4  # well-conditioned residual layers share QRs


def test_empty_generator_and_array_inputs():
    np.testing.assert_array_equal(product_log_singular_values([], 4), np.zeros(4))
    rng = np.random.default_rng(8)
    stack = rng.standard_normal((5, 6, 6))
    a = product_log_singular_values(stack, 6)
    b = product_log_singular_values((x for x in stack), 6)
    np.testing.assert_array_equal(a, b)
    # Lists of lists and integer matrices are converted.
    np.testing.assert_allclose(product_log_singular_values([[[2, 0], [0, 1]]], 2), [np.log(4), 0.0])
    assert product_spectrum([], 3).to_dict()["n_factors"] == 0


def test_exact_zero_singular_value():
    A = np.diag([3.0, 0.0, 1.0])
    got = product_log_singular_values([A, A], 3)
    np.testing.assert_allclose(got[:2], [2 * np.log(9.0), 0.0])
    assert got[2] == -np.inf


def test_log_condition_number():
    assert log_condition_number([]) == 0.0
    assert log_condition_number([4.0, 0.0]) == 2.0
    assert log_condition_number([1.0, -np.inf]) == math.inf


@pytest.mark.parametrize(
    "factors, m, kwargs, exc, match",
    [
        ([np.eye(3)], 0, {}, ValueError, "m must be >= 1, got 0"),
        ([np.eye(3)], 3.0, {}, TypeError, "m must be an integer"),
        ([np.eye(3)], 4, {}, ValueError, r"factors\[0\] has shape \(3, 3\): expected 4"),
        ([np.eye(3), np.ones((2, 2))], 3, {}, ValueError, r"factors\[1\] has shape"),
        ([np.ones(3)], 3, {}, ValueError, "2-D matrix"),
        ([np.array([[1.0, np.nan], [0, 1]])], 2, {}, ValueError, r"factors\[0\] produced a non-finite"),
        ([np.eye(2)] * 3 + [np.array([[np.inf, 0], [0, 1]])], 2, {}, ValueError, "non-finite"),
        ([np.eye(2)], 2, dict(block_cond=0.5), ValueError, "block_cond"),
        ([np.eye(2)], 2, dict(block_cond=np.inf), ValueError, "block_cond"),
        ([np.eye(2)], 2, dict(max_block=0), ValueError, "max_block"),
    ],
)
def test_validation(factors, m, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        product_spectrum(factors, m, **kwargs)
