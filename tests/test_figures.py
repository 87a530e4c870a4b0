"""rmtalign.figures at a test-only tiny size: every figure is written as a PNG with the CSV behind
it; the CSV holds what the samplers and the theory give (recomputed here independently of the
figure code); points are seeded by content; bad arguments name what is allowed."""
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import assert_error_names  # noqa: E402

from rmtalign import MLP, ResNet, prescribe, sample_bfa, theory  # noqa: E402
from rmtalign.figures import FIGURES, estimated_cost, make_figures  # noqa: E402
from rmtalign.seeds import point_seed  # noqa: E402

TINY = dict(width=16, depth_layer=10, depths=(4, 8), depth_scale=16, scales=(0.5, 2.0), samples=2,
            width_sens=16, depths_sens=(4, 8), samples_sens=2, spectrum_width=16,
            spectrum_depth=8, spectrum_samples=2, phase_depths=(10,), phase_alphas=3,
            phase_map_depth=20, phase_map_points=3, phase_sampled_depth=6, phase_width=12,
            phase_points=2, phase_samples=2, widths=(16, 20), width_depths=(5,), width_samples=2)
COLUMNS = ["panel", "series", "source", "x_name", "x", "y_name", "y", "sem", "samples", "width",
           "depth"]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    return out, make_figures(out, seed=7, dpi=20, progress=False, _sizes=TINY)


def _rows(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_every_figure_written_as_png_and_csv(written):
    out, paths = written
    assert [p.name for p in paths] == [f"{n}.{e}" for n in FIGURES for e in ("png", "csv")]
    for p in paths:
        assert p.parent == out and p.stat().st_size > 0
    for name in FIGURES:
        img = matplotlib.image.imread(out / f"{name}.png")
        assert img.ndim == 3 and min(img.shape[:2]) > 20
        sources = {r["source"] for r in _rows(out / f"{name}.csv")}
        # theory overlaid on samples, in every figure
        assert "samples" in sources and sources - {"samples"}, (name, sources)
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary file


def test_fig1a_rows_are_the_sampler_and_the_theory(written):
    out, _ = written
    rows = _rows(out / "fig1a_bfa_layer.csv")
    fam = MLP(10, 16)
    ref = sample_bfa(fam, 2, point_seed(np.random.SeedSequence(7), fam, "bfa-exact"))
    deg = np.degrees(np.arccos(np.clip(ref.cos, -1, 1)))
    got = [r for r in rows if r["series"] == "mlp" and r["source"] == "samples"]
    assert [int(float(r["x"])) for r in got] == list(range(1, 10))
    y = np.array([float(r["y"]) if r["y"] else np.nan for r in got])
    ok = np.isfinite(deg).all(axis=0)
    np.testing.assert_array_equal(np.isfinite(y), ok)
    np.testing.assert_allclose(y[ok], deg[:, ok].mean(axis=0), rtol=1e-13)
    th = [float(r["y"] or "nan") for r in rows
          if r["series"] == "resnet-lin" and r["source"] == "width limit"]
    np.testing.assert_allclose(th, theory.bfa(ResNet(10, 16, 0.1)).angle_deg, rtol=1e-12)
    assert {r["series"] for r in rows} == {"mlp", "resnet-0.5", "resnet-sqrt", "resnet-lin"}
    assert any(r["source"] == "finite width" for r in rows)


def test_fig2a_sensitivity_is_eq4_of_the_prescribed_network(written):
    out, _ = written
    rows = _rows(out / "fig2a_sensitivity_mlp.csv")
    assert {r["series"] for r in rows} == {"ntk", "mfmup", "fsc"}
    for scheme in ("ntk", "mfmup", "fsc"):
        p = prescribe(MLP(8, 16), scheme)
        # the prescription's own prediction: |fdot_{L-1}|_rms over the upstream loss decay
        # (balanced shares: n - 1 of the n trained layers lie below L)
        n = int(p.made_for.trained_mask.sum())
        s_ref = p.predicted_feature_speed / (p.predicted_loss_decay * (n - 1) / n)
        th = [float(r["y"]) for r in rows
              if r["series"] == scheme and r["source"] == "width limit" and r["x"] == "8.0"]
        assert th == [pytest.approx(s_ref, rel=1e-12)]
        fam = p.family()
        ref = sample_bfa(fam, 2, point_seed(np.random.SeedSequence(7), fam, "bfa-exact"))
        smp = [r for r in rows if r["series"] == scheme and r["source"] == "samples"
               and r["x"] == "8.0"]
        assert float(smp[0]["y"]) == pytest.approx(np.mean(ref.fdot_norm[:, -1] / 4.0
                                                           / ref.loss_decay[:, -1]), rel=1e-12)


def test_points_do_not_depend_on_the_selection(written, tmp_path):
    out, _ = written
    paths = make_figures(tmp_path, seed=7, dpi=20, only="fig1c_output_scale", progress=False,
                         _sizes=TINY)
    assert [p.name for p in paths] == ["fig1c_output_scale.png", "fig1c_output_scale.csv"]
    assert (tmp_path / "fig1c_output_scale.csv").read_bytes() == \
        (out / "fig1c_output_scale.csv").read_bytes()


def test_bad_arguments_name_what_is_allowed(tmp_path):
    assert_error_names(ValueError, ["only", "'fig3'", "fig1a_bfa_layer", "width_convergence"],
                       make_figures, tmp_path, only=["fig3"])
    assert_error_names(ValueError, ["only", "fig1a_bfa_layer"], make_figures, tmp_path, only=[])
    assert_error_names(ValueError, ["_sizes", "bogus", "width"], make_figures, tmp_path,
                       _sizes={"bogus": 1})
    f = tmp_path / "file"
    f.write_text("x")
    assert_error_names(ValueError, ["out_dir", "folder", "file"], make_figures, f,
                       only="fig1a_bfa_layer")
    assert_error_names(TypeError, ["paper", "'yes'"], make_figures, tmp_path, paper="yes")
    assert_error_names(TypeError, ["progress", "2"], make_figures, tmp_path, progress=2)
    assert not any(tmp_path.glob("*.png"))


def test_estimated_cost_follows_samples_depth_width_squared():
    cost = estimated_cost(only="fig1a_bfa_layer", _sizes=TINY)
    assert cost == {"fig1a_bfa_layer": 4 * 2 * 10 * 16 ** 2}
    paper = estimated_cost(paper=True)
    default = estimated_cost()
    assert set(paper) == set(default) == set(FIGURES)
    assert all(paper[k] >= default[k] for k in FIGURES)


def test_progress_bar_on_stderr(tmp_path, capsys):
    make_figures(tmp_path, dpi=20, only="fig1c_output_scale", progress=True, _sizes=TINY)
    captured = capsys.readouterr()
    assert "figures" in captured.err and captured.out == ""
