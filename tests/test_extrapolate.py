"""Tests for rmtalign._extrapolate.fit_width_limit."""
import numpy as np
import pytest
from scipy import stats

from rmtalign._extrapolate import fit_width_limit

WIDTHS = np.array([32.0, 64.0, 128.0, 256.0, 512.0, 1024.0])


def _synthetic(coef, widths, sems, reps, seed):
    rng = np.random.default_rng(seed)
    x = 1.0 / widths
    truth = sum(c * x**k for k, c in enumerate(coef))
    noise = rng.standard_normal((widths.size, reps)) * sems[:, None]
    return truth[:, None] + noise


@pytest.mark.parametrize("order", [1, 2])
def test_exact_data_recovered(order):
    coef = [0.7, -3.0, 40.0][: order + 1]
    x = 1.0 / WIDTHS
    y = sum(c * x**k for k, c in enumerate(coef))
    fit = fit_width_limit(WIDTHS, y[:, None] * np.ones((1, 3)), np.full((WIDTHS.size, 3), 1e-3), order)
    # zero-residual least squares: coefficients to eps cond(design) |coef| (cond 95 / 1.2e4 for
    # order 1 / 2, equal weights), x10 for the solver's constants; chi2 ~ W (that / sem)^2 <= 1e-13
    X = np.stack([x**k for k in range(order + 1)], axis=1)
    tol = 10 * np.finfo(float).eps * np.linalg.cond(X) * max(map(abs, coef))
    np.testing.assert_allclose(fit.coef, np.tile(coef, (3, 1)), rtol=0, atol=tol)
    np.testing.assert_allclose(fit.chi2, 0.0, atol=1e-12)
    assert fit.c0.shape == (3,) and fit.dof.tolist() == [WIDTHS.size - order - 1] * 3


@pytest.mark.parametrize("order", [1, 2])
def test_unbiased_and_calibrated(order):
    """z = (c0_hat - c0) / se over R replicates: mean 0 and std 1 within sampling error."""
    reps = 4000
    coef = [0.45, 2.0, -30.0][: order + 1]
    sems = 0.01 * np.sqrt(64.0 / WIDTHS) + 0.002  # heteroscedastic, as from Monte Carlo
    y = _synthetic(coef, WIDTHS, sems, reps, seed=1 + order)
    fit = fit_width_limit(WIDTHS, y, np.repeat(sems[:, None], reps, axis=1), order)
    z = (fit.c0 - coef[0]) / fit.c0_se
    # Four checks, each at 4 SE (two-sided false alarm 6.3e-5 each, 2.5e-4 together).
    # mean of R standard normals has sd 1/sqrt(R); the sample sd has sd ~ 1/sqrt(2R).
    assert abs(z.mean()) < 4.0 / np.sqrt(reps)
    assert abs(z.std(ddof=1) - 1.0) < 4.0 / np.sqrt(2 * reps)
    # chi2 / dof has mean 1 and sd sqrt(2 / dof) / sqrt(R) over the replicates.
    dof = WIDTHS.size - order - 1
    assert abs((fit.chi2 / dof).mean() - 1.0) < 4.0 * np.sqrt(2.0 / dof / reps)
    # p-values are uniform under a correct model.
    assert abs(fit.pvalue.mean() - 0.5) < 4.0 * np.sqrt(1 / 12 / reps)


def test_unweighted_uses_residual_scale():
    reps = 4000
    sems = np.full(WIDTHS.size, 0.01)
    y = _synthetic([1.0, 5.0], WIDTHS, sems, reps, seed=7)
    fit = fit_width_limit(WIDTHS, y, order=1)
    z = (fit.c0 - 1.0) / fit.c0_se
    # With the scale estimated from the residuals z is Student-t with dof = W - 2 = 4. Its fourth
    # moment is infinite, so its sample SD has no usable standard error; test statistics that
    # have one. E|t_4| = 1 and Var|t_4| = E t^2 - 1 = 1: the mean of R values has SE 1/sqrt(R).
    # The fraction beyond t_4's 97.5% quantile is 5%, binomial SE. 4 SE each (false alarm
    # 1.3e-4 together). A normal z (scale taken as known) would give E|z| = 0.80: 13 SE away.
    dof = WIDTHS.size - 2
    t = stats.t(dof)
    assert t.expect(abs) == pytest.approx(1.0, rel=1e-12)
    assert abs(np.abs(z).mean() - 1.0) < 4 / np.sqrt(reps)
    assert abs(np.mean(np.abs(z) > t.ppf(0.975)) - 0.05) < 4 * np.sqrt(0.05 * 0.95 / reps)
    assert np.isnan(fit.pvalue).all()


def test_nan_layers_and_points():
    y = np.tile((1.0 + 2.0 / WIDTHS)[:, None], (1, 4))
    s = np.full_like(y, 0.01)
    y[:, 1] = np.nan  # a whole layer missing
    y[2, 2] = np.nan  # one point missing: still fitted from the rest
    y[:-1, 3] = np.nan  # a single width left: too few for order 1
    fit = fit_width_limit(WIDTHS, y, s)
    assert np.isnan(fit.c0[1]) and np.isnan(fit.c0_se[1]) and np.isnan(fit.c0[3])
    np.testing.assert_allclose(fit.c0[[0, 2]], 1.0, rtol=1e-10)
    assert fit.dof.tolist() == [4, 0, 3, 0]
    # nan sems drop the point too
    s2 = s.copy()
    s2[0, 0] = np.nan
    assert fit_width_limit(WIDTHS, y, s2).dof[0] == 3


def test_single_layer_and_multi_axis_shapes():
    y = 1.0 + 2.0 / WIDTHS
    fit = fit_width_limit(WIDTHS, y, np.full(WIDTHS.size, 0.1))
    assert fit.c0.shape == () and fit.coef.shape == (2,) and fit.cov.shape == (2, 2)
    y3 = np.broadcast_to(y[:, None, None], (WIDTHS.size, 2, 5))
    fit3 = fit_width_limit(WIDTHS, y3, np.full(y3.shape, 0.1), order=2)
    assert fit3.c0.shape == (2, 5) and fit3.coef.shape == (2, 5, 3)
    np.testing.assert_allclose(fit3.c0, 1.0, rtol=1e-10)
    d = fit3.to_dict()
    assert d["order"] == 2 and len(d["c0"]) == 2


def test_known_standard_error():
    # Two widths, order 1: c0 = (m2 y2 - m1 y1) / (m2 - m1) exactly.
    w = np.array([100.0, 400.0])
    fit = fit_width_limit(w, [1.2, 1.05], [0.03, 0.04])
    se = np.sqrt((400 * 0.04) ** 2 + (100 * 0.03) ** 2) / 300
    np.testing.assert_allclose(fit.c0, (400 * 1.05 - 100 * 1.2) / 300, rtol=1e-12)
    np.testing.assert_allclose(fit.c0_se, se, rtol=1e-12)
    assert fit.dof == 0 and np.isnan(fit.pvalue)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(widths=[64, 128], means=[1, 2], sems=[1, 1], order=2), "at least 3 distinct widths"),
        (dict(widths=[64, 64, 64], means=[1, 2, 3], sems=[1, 1, 1]), "at least 2 distinct"),
        (dict(widths=[64, 0], means=[1, 2], sems=[1, 1]), "finite and positive"),
        (dict(widths=[64, -1], means=[1, 2], sems=[1, 1]), "finite and positive"),
        (dict(widths=[64, np.nan], means=[1, 2], sems=[1, 1]), "finite and positive"),
        (dict(widths=[[64, 128]], means=[1, 2], sems=[1, 1]), "1-D"),
        (dict(widths=[64, 128, 256], means=[1, 2], sems=[1, 1]), "means must have shape"),
        (dict(widths=[64, 128], means=[1, 2], sems=[1, 1, 1]), "sems must have the shape"),
        (dict(widths=[64, 128], means=[1, 2], sems=[1, 0]), "sems must be positive"),
        (dict(widths=[64, 128], means=[1, 2], sems=[1, np.inf]), "sems must be positive"),
        (dict(widths=[64, 128], means=[1, 2], sems=[1, 1], order=3), "order must be 1 or 2"),
        (dict(widths=[64, 128], means=[1, 2], sems=[1, 1], order=True), "order must be 1 or 2"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_width_limit(**kwargs)
