"""rmtalign/theory/_chain.py: densities by inverse subordination (reached through bfk_density and
jacobian_density): the layer's S-transform, textbook laws, exactness checks (normalisation,
moments, atoms, the edge), agreement with the previous fixed-point implementation, deep layers."""
import numba
import numpy as np
import pytest

import rmtalign.theory as T
from conftest import FAMILIES_BY_DEPTH
from rmtalign import MLP, ResNet
from rmtalign.theory import _chain as C
from rmtalign.theory import free as fp


EPS = np.finfo(float).eps


def _quad_tol(d):
    """Tolerance for mass and moments of a density on its default grid (cdf(): trapezoid in log x).

    The dominant error is the trapezoid at the square-root edges, O(h^{3/2}) with h the grid's
    largest step relative to the support (1.1 edge / 400 on the uniform half: h = 2.75e-3,
    h^{3/2} = 1.4e-4); the bulk is O(h^2). The constant depends on the law: measured
    |error| / h^{3/2} <= 4.1 over the table at depths 8 to 201 (mass, M1, M2), so 20 h^{3/2}
    (2.9e-3) is a 5x margin. A judgement on the constant, a derivation of the order."""
    h = np.max(np.diff(d.x)) / (d.support[1] - d.support[0])
    return 20 * h**1.5


def _moments(d, k=2):
    """Mass and moments 1..k of a Density (atoms included), integrating x^j rho in log x."""
    out = []
    for j in range(k + 1):
        dj = T.Density(d.x, d.density * d.x**j, {}, d.support, 0.0)
        out.append(dj.cdf()[-1] + sum(m * loc**j for loc, m in d.atoms.items()))
    return out


# ------------------------------------------------------------------ S-transform of the layer law
@pytest.mark.parametrize("kind", list(FAMILIES_BY_DEPTH))
def test_layer_s_transform_matches_moments(kind):
    # S_Y(u) = sum_k s_k u^k from the exact moments of Y (free.s_transform), at small u
    # 12 terms: |s_k| <= 2^k over the table (the ReLU MLP's are 2^k), so the truncation,
    # ~(2|u|)^12 <= 7e-17 at |u| <= 0.0224, is below round-off. Round-off: S from a closed form,
    # a few eps; dS loses digits to a cancellation of order 1/|u|. x100 for the constants
    # (measured 3.6e-16 and 8e-14 relative at most).
    law = T.layer_law(FAMILIES_BY_DEPTH[kind](6))
    s = [float(v) for v in fp.s_transform(law.moments(12, exact=True))]
    a2, g2, p, k = C.layer_params(law)
    for u in (0.01, 0.02 + 0.01j, -0.015j):
        S, dS, _ = C._s_y(complex(u), a2, g2, p, k, complex(np.nan))
        ref = sum(c * u**i for i, c in enumerate(s))
        dref = sum(i * c * u ** (i - 1) for i, c in enumerate(s) if i)
        assert abs(S - ref) <= 100 * EPS * abs(ref)
        assert abs(dS - dref) <= 100 * EPS / abs(u) * abs(dref)


def test_resnet_layer_cauchy_matches_additive_subordination():
    # the closed-form S-transform gives the same G_Y as free.FreeSum (Haagerup–Larsen) directly
    law = T.layer_law(ResNet.scaled(6, 64, 1.0))
    params = C.layer_params(law)
    x = np.linspace(0.05, 2.2, 9)
    G, res, info = C.chain_cauchy(x, 1e-3, np.array([1.0, 0.0]), params)
    assert info["failures"] == 0
    # both solvers stop at a residual of 1e-13; the fixed points' conditioning near the axis is
    # at most ~1/Im z = 1e3: 1e-10 relative (measured 2e-12)
    np.testing.assert_allclose(G, law.law().cauchy(x + 1e-3j), rtol=1e-10, atol=0)


# ------------------------------------------------------------------ textbook laws
def test_marchenko_pastur_one_level():
    f = MLP(6, 64, activation="linear")  # Y = MP(1, 1)
    x = np.linspace(0.05, 3.9, 40)
    d = T.jacobian_density(f, 2, 3, x=x, eps=1e-10)
    # Poisson smoothing at height eps moves the density by at most eps max|G'| / pi, |G'(x)| ~
    # x^(-3/2) <= 90 at x >= 0.05: 3e-9 (measured 1.5e-14); the solver's residual 1e-13 adds less
    np.testing.assert_allclose(d.density, fp.marchenko_pastur_density(x, 1.0, 1.0), rtol=0, atol=1e-8)


@pytest.mark.parametrize("s", [3, 10])
def test_fuss_catalan_products(s):
    f = MLP(s + 3, 64, activation="linear")
    xr, dr = fp.fuss_catalan_density(s, 20001)
    keep = (xr > 0.02 * xr[-1]) & (xr < 0.98 * xr[-1])
    xr, dr = xr[keep][::500], dr[keep][::500]
    d = T.jacobian_density(f, 1, 1 + s, x=xr, eps=1e-11)
    # smoothing at eps = 1e-11 inside [0.02, 0.98] of the support: eps |G'| / (pi rho) < 1e-8
    # relative (measured 7e-11); rtol 1e-6 also covers the reference's float parametrisation
    np.testing.assert_allclose(d.density, dr, rtol=1e-6)
    # the edge is bisected to 1e-15 relative (theory/_chain.py), x100
    assert d.support[1] == pytest.approx((s + 1) ** (s + 1) / s**s, rel=1e-13)


def test_jacobian_density_is_fuss_catalan_for_linear_mlp():
    f = MLP(6, 100, activation="linear")
    x = np.linspace(0.05, 6.5, 7)
    d = T.jacobian_density(f, 2, 4, x=x, eps=1e-6)
    xr, dr = fp.fuss_catalan_density(2, 20001)
    # Poisson smoothing at eps = 1e-6: rho ~ x^(-2/3), |G'| ~ x^(-5/3) near 0, so the relative
    # error eps |G'| / (pi rho) ~ eps / (pi x) <= 1e-5 at x = 0.05 (measured 9.3e-6 against the
    # exact parametrisation); linear interpolation of the 20001-point reference adds 1.5e-7
    np.testing.assert_allclose(d.density, np.interp(x, xr, dr), rtol=1e-4)


def test_relu_mlp_jacobian_atom_is_exact():
    d = T.jacobian_density(MLP(12, 64), 1, 10)
    assert d.atoms == {0.0: 0.5}


# ------------------------------------------------------------------ agreement with the old solver
def test_matches_previous_fixed_point_solver():
    # values of the previous implementation (Anderson-accelerated joint fixed point, tol 1e-10)
    # at eps = 2e-3 * its support bound, MLP L=6 layer 5 and ReLU ResNet L=6 layer 5 (beta=1/sqrt 6)
    ref = {
        "mlp": (MLP(6, 100), 5, 2e-3 * 12.0322827041613,
                [(0.5, 0.064654401379323), (1.0, 0.20823068690122), (3.0, 0.055048612727706),
                 (8.0, 0.012410651980995)]),
        "res": (ResNet.scaled(6, 100, 1.0), 5, 2e-3 * 2.2363946211582615,
                [(0.3, 0.98637725295228), (0.8, 0.75026876680943), (1.5, 0.22498211238664),
                 (2.1, 0.069517036308208)]),
    }
    for fam, v, eps, pts in ref.values():
        x = np.array([p[0] for p in pts])
        d = T.bfk_density(fam, v, x=x, eps=eps)
        # the reference stopped at 1e-10 on its fixed point, an error in the density up to
        # ~tol / eps (4e-9 for the MLP's eps = 0.024); measured 1.2e-9 (MLP), 1.3e-13 (ResNet)
        np.testing.assert_allclose(d.density, [p[1] for p in pts], rtol=0, atol=1e-8)


# ------------------------------------------------------------------ exactness checks
@pytest.mark.parametrize("kind", list(FAMILIES_BY_DEPTH))
def test_normalisation_and_moments(kind):
    f = FAMILIES_BY_DEPTH[kind](8)
    d = T.bfk_density(f, 7)
    mass, m1, m2 = _moments(d)
    M1, M2 = T.bfk_moments(f, 7, 2)
    assert np.all(np.isfinite(d.density)) and d.residual < 1e-7
    tol = _quad_tol(d)
    assert mass == pytest.approx(1.0, abs=tol)
    assert m1 == pytest.approx(M1, rel=tol) and m2 == pytest.approx(M2, rel=tol)
    # Poisson tails at eps = 1e-3 dx beyond the edge: ~ eps / sqrt(distance) of a square-root
    # edge, a judgement bound (measured at most 3.1e-5 of the peak over the table)
    beyond = d.x > d.support[1] * (1 + 1e-6)
    assert np.all(d.density[beyond] < 1e-4 * d.density.max())


def test_bfk_density_mass_and_mean():
    f = MLP(6, 100)
    d = T.bfk_density(f, 5)
    c5 = T.mean_field(f).kernel_weights[4]
    (loc, mass), = d.atoms.items()
    # the atom's mass is read at heights 1e-9 and 1e-11 edge (theory/_chain.py); measured 8e-9
    assert loc == pytest.approx(c5) and mass == pytest.approx(0.5, abs=1e-6)
    m1, m2 = T.bfk_moments(f, 5, 2)
    tot = np.trapezoid(d.density, d.x) + mass
    mean = np.trapezoid(d.density * d.x, d.x) + mass * loc
    # the trapezoid in x on the default grid: as _quad_tol (measured 1.6e-5, 1.5e-5)
    tol = _quad_tol(d)
    assert tot == pytest.approx(1, abs=tol) and mean == pytest.approx(m1, rel=tol)


def test_relu_mlp_atom():
    f = MLP(8, 64)
    d = T.bfk_density(f, 7)
    (loc, mass), = d.atoms.items()
    # atom read at heights 1e-9, 1e-11 edge: measured 6e-12
    assert loc == pytest.approx(T.mean_field(f).kernel_weights[6]) and mass == pytest.approx(0.5, abs=1e-7)
    assert not T.bfk_density(MLP(8, 64, activation="linear"), 7).atoms  # (x - c)^(-1/2), no atom


def test_edge_is_the_end_of_the_support():
    f = MLP(8, 64)
    d = T.bfk_density(f, 7)
    e = d.support[1]
    inside = T.bfk_density(f, 7, x=np.array([e * (1 - 1e-4)]), eps=1e-10 * e).density[0]
    outside = T.bfk_density(f, 7, x=np.array([e * (1 + 1e-4)]), eps=1e-10 * e).density[0]
    # square-root edge: ~ sqrt(1e-4) times the edge's amplitude inside (measured 4.3e-5, the peak
    # is 0.39); outside only the Poisson tail of height 1e-10 e, ~ eps / sqrt(distance)
    # (measured 2.3e-11). Both thresholds sit between the two by a factor >= 40.
    assert inside > 1e-6 and outside < 1e-9


def test_unsorted_x_and_scalar_eps():
    f = MLP(6, 64)
    x = np.array([3.0, 0.7, 5.0, 1.2, 0.7])
    a = T.bfk_density(f, 5, x=x, eps=0.01).density
    b = T.bfk_density(f, 5, x=np.sort(x), eps=0.01).density
    # each point's Newton solve stops at residual 1e-13 (warm starts may differ with the order),
    # conditioning <= 1/eps = 100 at this height: 1e-11 (measured: bit-identical)
    np.testing.assert_allclose(a, b[np.argsort(np.argsort(x, kind="stable"), kind="stable")], rtol=1e-10)


# ------------------------------------------------------------------ deep layers
@pytest.mark.parametrize("kind,depth", [("mlp", 101), ("res", 101), ("res_orth", 101), ("mlp_orth", 201)])
def test_deep_layers(kind, depth):
    f = FAMILIES_BY_DEPTH[kind](depth)
    v = depth - 1
    d = T.bfk_density(f, v)
    mass, m1, m2 = _moments(d)
    M1, M2 = T.bfk_moments(f, v, 2)
    assert np.all(np.isfinite(d.density)) and d.residual < 1e-7
    tol = _quad_tol(d)
    assert mass == pytest.approx(1.0, abs=tol)
    assert m1 == pytest.approx(M1, rel=tol) and m2 == pytest.approx(M2, rel=tol)


def test_deep_resnet_jacobian_is_normalised():
    d = T.jacobian_density(ResNet.scaled(102, 64, 1.0), 1, 101)
    mass, m1, _ = _moments(d)
    # below _quad_tol's 20 h^{3/2} = 2.9e-3 (measured 6.6e-5 and 1.8e-5)
    assert mass == pytest.approx(1.0, abs=1e-3)
    assert m1 == pytest.approx(T.jacobian_moments(ResNet.scaled(102, 64, 1.0), 1, 101, 1)[0], rel=1e-3)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_density_does_not_depend_on_the_thread_count():
    fam = FAMILIES_BY_DEPTH["res"](8)
    out = []
    for t in (1, 2):
        numba.set_num_threads(t)
        try:
            out.append(T.bfk_density(fam, 6).density)
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(out[0], out[1])
