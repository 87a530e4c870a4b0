"""rmtalign/_kernels/matfree.py: matrix-free Gaussian products against dense products with the same
generated matrix (tiny sizes), on column subsets, and at any thread count."""
import numba
import numpy as np
import pytest

from rmtalign._kernels import matfree, rng

EPS = np.finfo(float).eps


def _normals(key, rows, cols):
    out = np.empty((rows, cols))
    rng.fill_normal(np.uint64(key), out)
    return out


@pytest.mark.parametrize("rows, cols, P", [(7, 5, 1), (33, 70, 3), (64, 1, 2), (1, 40, 1)])
def test_matrix_free_products_match_dense(rows, cols, P):
    gen = np.random.default_rng(rows * cols)
    key, std = np.uint64(77), 0.3
    W = std * _normals(77, rows, cols)
    V = gen.standard_normal((P, cols))
    U = gen.standard_normal((P, rows))
    every = np.arange(cols)
    out = np.empty((P, rows))
    matfree.gauss_matvecs(key, rows, every, std, V, out)
    # two summation orders of a dot product of length n are each within n u sum_j |v_j w_j| of
    # it (u = eps/2, the standard bound), and scaling by std before or after the sum adds u a
    # term on each side: (n + 2) eps sum|v w| (measured at most 1.1 eps sum|v w|)
    np.testing.assert_array_less(np.abs(out - V @ W.T), (cols + 2) * EPS * (np.abs(V) @ np.abs(W).T) + 1e-300)
    out2 = np.empty((P, cols))
    matfree.gauss_rmatvecs(key, every, std, U, out2)
    np.testing.assert_array_less(np.abs(out2 - U @ W), (rows + 2) * EPS * (np.abs(U) @ np.abs(W)) + 1e-300)


def test_matrix_free_products_on_a_column_subset():
    """The matrix-free products generate only the columns they are given, as the block of the
    whole matrix (test_rng.py): what lets the passes skip the columns a ReLU mask zeroes."""
    W = _normals(5, 40, 3000)
    cols = np.array([2999, 5, 6, 1000, 0])
    V = np.random.default_rng(0).standard_normal((2, 5))
    out = np.empty((2, 40))
    matfree.gauss_matvecs(np.uint64(5), 40, cols, 0.5, V, out)
    np.testing.assert_allclose(out, V @ (0.5 * W[:, cols]).T, rtol=1e-12)  # 5 terms: round-off
    out2 = np.empty((2, 5))
    U = np.random.default_rng(1).standard_normal((2, 40))
    matfree.gauss_rmatvecs(np.uint64(5), cols, 0.5, U, out2)
    np.testing.assert_allclose(out2, U @ (0.5 * W[:, cols]), rtol=1e-12)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_kernels_do_not_depend_on_thread_count():
    key = np.uint64(3)
    V = np.random.default_rng(1).standard_normal((2, 300))
    every = np.arange(300)
    outs = []
    for t in (1, 2):
        numba.set_num_threads(t)
        try:
            a, b, c = np.empty((2, 300)), np.empty((2, 300)), np.empty((50, 300))
            matfree.gauss_matvecs(key, 300, every, 0.1, V, a)
            matfree.gauss_rmatvecs(key, every, 0.1, V, b)
            rng.fill_normal(key, c)
            outs.append((a, b, c))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for x, y in zip(*outs):
        np.testing.assert_array_equal(x, y)
