"""rmtalign.plotting at tiny sizes: what each function draws is the data it was given (checked
against plain numpy), legends name theory and samples, labels are mathtext, and no pyplot state
is touched."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import assert_error_names  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rmtalign import MLP, ResNet, plotting, sample_bfa, sample_bfk, sample_jacobian  # noqa: E402
from rmtalign import theory, width_limit  # noqa: E402

FAM = MLP(8, 16)
RES = ResNet.scaled(8, 16, 1.0)


@pytest.fixture(scope="module")
def bfa():
    return sample_bfa(FAM, samples=3, seed=11)


def _texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _all_labels(fig):
    out = []
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        if ax.get_legend() is not None:
            out += _texts(ax)
    return out


def _errorbars(ax):
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _no_doubled_brackets(fig):
    for s in _all_labels(fig):
        assert "((" not in s and "))" not in s, s


def test_alignment_curve_draws_sample_means_and_theory(bfa):
    n_before = len(plt.get_fignums())
    th = theory.bfa(FAM)
    fig, ax = plotting.alignment_curve({"mlp": bfa}, {"mlp": th})
    assert isinstance(fig, Figure) and len(plt.get_fignums()) == n_before  # no pyplot state
    (eb,) = _errorbars(ax)
    x, y = eb.lines[0].get_data()
    cos = np.asarray(bfa.cos, float)
    ok = ~np.all(np.isnan(cos), axis=0)
    np.testing.assert_array_equal(x, bfa.layers)
    np.testing.assert_allclose(y[ok], np.nanmean(cos[:, ok], axis=0), rtol=1e-14)
    # the error bar spans mean +- sem (sample standard deviation / sqrt(n))
    seg = [np.asarray(s) for s in eb.lines[2][0].get_segments()]
    half = np.array([abs(s[1, 1] - s[0, 1]) / 2 for s in seg
                     if s.ndim == 2 and np.isfinite(s).all()])
    sem = np.std(cos[:, ok], axis=0, ddof=1) / np.sqrt(cos.shape[0])
    np.testing.assert_allclose(np.sort(half), np.sort(sem), rtol=1e-12, atol=1e-15)
    (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    np.testing.assert_array_equal(line.get_ydata(), th.cos)
    labels = _texts(ax)
    assert any("samples" in t for t in labels) and any("theory" in t for t in labels)
    assert ax.get_ylabel() == r"$\cos\theta_v$" and "$v$" in ax.get_xlabel()
    # shared label -> shared colour
    assert line.get_color() == eb.lines[0].get_color()
    _no_doubled_brackets(fig)
    fig.savefig(__import__("io").BytesIO(), format="png", dpi=30)


def test_alignment_curve_in_degrees_on_given_axes(bfa):
    fig = Figure()
    ax0 = fig.add_subplot()
    fig2, ax = plotting.alignment_curve(bfa, theory.bfa(FAM), ax=ax0, quantity="angle_deg")
    assert fig2 is fig and ax is ax0
    (eb,) = _errorbars(ax)
    deg = np.degrees(np.arccos(np.clip(bfa.cos, -1, 1)))
    ok = ~np.all(np.isnan(deg), axis=0)
    np.testing.assert_allclose(eb.lines[0].get_ydata()[ok], np.mean(deg[:, ok], axis=0), rtol=1e-13)
    assert "theta_v" in ax.get_ylabel() and "degrees" in ax.get_ylabel()
    assert ax.get_ylim() == (0.0, 90.0)


def test_alignment_curve_bad_arguments(bfa):
    assert_error_names(ValueError, ["quantity", "'bogus'", "'cos'", "'angle_deg'"],
                       plotting.alignment_curve, bfa, quantity="bogus")
    assert_error_names(ValueError, ["sampled", "theory"], plotting.alignment_curve)


def test_output_curve_plots_one_layer_per_result():
    rs = [sample_bfa(MLP(L, 12), samples=2, seed=3) for L in (4, 6, 8)]
    th = [theory.bfa(r.family).angle_deg[-1] for r in rs]
    fig, ax = plotting.output_curve([4, 6, 8], rs, th, label="MLP", xlabel=r"depth $L$")
    (eb,) = _errorbars(ax)
    np.testing.assert_allclose(eb.lines[0].get_ydata(),
                               [np.nanmean(np.degrees(np.arccos(np.clip(r.cos[:, -1], -1, 1))))
                                for r in rs], rtol=1e-13)
    assert set(_texts(ax)) == {"MLP: samples", "MLP: theory"}
    assert ax.get_ylabel() == r"output BFA $\theta_{L-1}$ (degrees)"
    assert_error_names(ValueError, ["sampled", "3", "2"], plotting.output_curve, [4, 6, 8], rs[:2])
    assert_error_names(ValueError, ["theory", "3"], plotting.output_curve, [4, 6, 8], rs, th[:2])


def test_repeated_eigenvalues_mask():
    e = np.array([3.0, 1.0, 2.0, 5.0, 2.0 + 1e-12, 5.0, 4.0, 5.0])
    np.testing.assert_array_equal(plotting._repeated(e),
                                  [False, False, True, True, True, True, False, True])


def test_spectrum_histogram_is_the_continuous_part():
    k = sample_bfk(FAM, [7], samples=2, seed=5)
    d = theory.bfk_density(FAM, 7)
    ((loc, mass),) = d.atoms.items()
    fig, ax = plotting.spectrum(k, 7, d, log=False, bins=20)
    eig = k.eigenvalues[:, 0, :]
    # independent count of the atom: eigenvalues equal (to round-off) to another of the same draw
    n_rep = sum(int(np.sum(np.isclose(e[:, None], e[None, :], rtol=0,
                                      atol=1e-8 * e.max()).sum(1) > 1)) for e in eig)
    patches = ax.patches
    heights = np.array([p.get_height() for p in patches])
    widths = np.array([p.get_width() for p in patches])
    assert np.sum(heights * widths) == pytest.approx(1.0, rel=1e-12)
    # with density=True, each bar is count / (N width): recover N = number of non-atom eigenvalues
    counts = heights * widths
    nz = counts[counts > 0]
    N = round(1.0 / nz.min())
    assert N == eig.size - n_rep
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"][0]
    np.testing.assert_allclose(line.get_ydata(), d.density / (1 - mass), rtol=1e-14)
    labels = _texts(ax)
    assert any(t.startswith("samples") for t in labels)
    assert any("theory (width limit)" == t for t in labels)
    assert any("atom" in t and "0.5" in t for t in labels)
    assert ax.get_xlabel() == r"eigenvalue $\lambda$ of $K_{7}$"
    assert_error_names(ValueError, ["layer", "[7]", "3"], plotting.spectrum, k, 3)


def test_jacobian_spectrum_log_values_and_zeros():
    j = sample_jacobian(FAM, 1, 6, samples=2, seed=2)
    d = theory.jacobian_density(FAM, 1, 6)
    fig, ax = plotting.jacobian_spectrum(j, d, bins=15)
    s = j.log_sq_singular_values
    zeros = np.mean(np.isinf(s))
    labels = _texts(ax)
    assert any(f"{zeros:.2f} exact zeros" in t for t in labels)
    assert any("theory" in t for t in labels) and any("mass 0.5" in t for t in labels)
    # the histogram holds exactly the finite log10 values
    heights = np.array([p.get_height() for p in ax.patches])
    widths = np.array([p.get_width() for p in ax.patches])
    assert np.sum(heights * widths) == pytest.approx(1.0, rel=1e-12)
    lo = min(p.get_x() for p in ax.patches)
    assert lo == pytest.approx(np.min(s[np.isfinite(s)]) / np.log(10), rel=1e-12)
    assert "log_{10}" in ax.get_xlabel() and "f_{6}" in ax.get_xlabel()


def test_jacobian_spectrum_without_theory_resnet():
    j = sample_jacobian(RES, 1, 7, samples=2, seed=2)
    fig, ax = plotting.jacobian_spectrum(j)
    assert ax.get_ylabel() == "density"
    assert all("theory" not in t for t in _texts(ax))


def test_phase_diagram_lines_are_the_diagram():
    pd = theory.phase_diagram(np.linspace(0, 1, 5), depths=(10, 100))
    rs = [sample_bfa(ResNet.scaled(10, 12, 1.0, a), samples=2, seed=1) for a in (0.0, 1.0)]
    fig, ax = plotting.phase_diagram(pd, sampled={10: ([0.0, 1.0], rs)})
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    for ln, row in zip(lines, pd.cos):
        np.testing.assert_array_equal(ln.get_ydata(), row)
    lim = [ln for ln in ax.get_lines() if ln.get_marker() == "s"][0]
    np.testing.assert_array_equal(lim.get_ydata(), pd.limit)
    labels = _texts(ax)
    assert "theory, $L$ = 10" in labels and r"theory, $L\to\infty$" in labels
    assert any(t.startswith("samples, $L$ = 10") for t in labels)
    (eb,) = _errorbars(ax)
    assert eb.lines[0].get_color() == lines[0].get_color()  # samples take their depth's colour


def test_width_convergence_marks_the_limit():
    wl = width_limit(FAM, [12, 16, 24], samples=3, seed=0)
    th = theory.bfa(FAM).cos[-1]
    fig, ax = plotting.width_convergence(wl, th, label="MLP")
    ebs = _errorbars(ax)
    np.testing.assert_allclose(ebs[0].lines[0].get_xdata(), [1 / 12, 1 / 16, 1 / 24])
    np.testing.assert_array_equal(ebs[0].lines[0].get_ydata(), wl.means[:, -1])
    assert ebs[1].lines[0].get_ydata()[0] == wl.limit[-1]
    star = [ln for ln in ax.get_lines() if ln.get_marker() == "*"][0]
    assert star.get_ydata()[0] == th
    assert {"MLP: samples", "MLP: theory (width limit)"} <= set(_texts(ax))


def test_depth_curves_and_its_old_name():
    rs = [sample_bfa(MLP(L, 12), samples=2, seed=0) for L in (4, 8)]
    curves = {"MLP": {"depths": np.array([4, 8]), "results": rs,
                      "theory": [theory.bfa(r.family).cos for r in rs]}}
    fig, (ax0, ax1) = plotting.plot_depth_curves(curves, title="t")
    assert plotting.plot_depth_curves is plotting.depth_curves
    assert set(_texts(ax1)) == {"MLP: samples", "MLP: theory"}
    assert ax1.get_ylabel() == r"output BFA $\theta_{L-1}$ (degrees)"
    _no_doubled_brackets(fig)


def test_spectrum_normalised_by_each_draws_atom_or_mean():
    k = sample_bfk(FAM, [7], samples=2, seed=5)
    d = theory.bfk_density(FAM, 7)
    ((loc, mass),) = d.atoms.items()
    fig, ax = plotting.spectrum(k, 7, d, log=False, normalise="atom")
    (atom_line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert atom_line.get_xdata()[0] == pytest.approx(1.0, rel=1e-15)
    # every draw's continuous part lies above its own atom c_v (K_v >= c_v I)
    assert min(p.get_x() for p in ax.patches) >= 1.0 - 1e-12
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"][0]
    np.testing.assert_allclose(line.get_xdata(), d.x / loc, rtol=1e-15)
    assert "c_v" in ax.get_xlabel()
    fig, ax = plotting.spectrum(k, 7, d, normalise="mean", theory_mean=2.5)
    line = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"][0]
    np.testing.assert_allclose(line.get_xdata(), d.x / 2.5, rtol=1e-15)
    assert "M_1" in ax.get_xlabel()
    assert_error_names(ValueError, ["normalise", "'mean'", "'atom'", "'max'"], plotting.spectrum,
                       k, 7, normalise="max")
    kr = sample_bfk(RES, [6], samples=1, seed=5, mode="free")
    assert_error_names(ValueError, ["normalise='atom'", "repeated", "'mean'"], plotting.spectrum,
                       kr, 6, theory.bfk_density(RES, 6), normalise="atom")


def test_alignment_curve_names_finite_width_theory():
    fw = theory.finite_width(MLP(8, 16))
    fig, ax = plotting.alignment_curve(theory={"mlp": fw})
    assert _texts(ax) == ["mlp: theory (finite width)"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_ydata(), fw.cos)
