"""The ``rmtalign`` command: every subcommand at tiny sizes, in-process (``main([...])``), its
numbers against the library called directly; --json parses; every bad input exits 2 with one
line naming the flag; an interrupted run leaves no partial file. Two real runs of the console
script (tests/test_cli_script.py)."""
import csv
import json
import math

import numpy as np
import pytest

import rmtalign as ra
from rmtalign import theory
from rmtalign.cli import SUBCOMMANDS, main
from rmtalign.seeds import point_seed


def _rows(path):
    return list(csv.DictReader(open(path)))


def _float(cell):
    return math.nan if cell == "" else float(cell)


def _json_out(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- curve ----------------------------------------------------------------------------------------
def test_curve_matches_the_library_and_json(tmp_path, capsys):
    data = _json_out(capsys, ["curve", "--depths", "6,4", "--width", "16", "--samples", "2",
                              "--seed", "3", "--out", str(tmp_path)])
    rows = _rows(tmp_path / "curve.csv")
    assert len(rows) == 3 + 5 and {r["depth"] for r in rows} == {"4", "6"}
    assert data["command"] == "curve" and str(tmp_path / "curve.csv") in data["files"]
    assert (tmp_path / "curve.png").stat().st_size > 5000
    fam = ra.MLP(6, 16)
    want = ra.sample_bfa(fam, 2, point_seed(3, fam, "bfa-exact"))
    th = theory.bfa(fam)
    fw = theory.finite_width(fam)
    got = [r for r in rows if r["depth"] == "6"]
    for r, v, mu, se, c, cf in zip(got, want.layers, want.mean("cos"), want.sem("cos"), th.cos, fw.cos):
        assert int(r["layer"]) == v and r["samples"] == "2"
        for cell, ref in ((r["cos_mean"], mu), (r["cos_sem"], se), (r["cos_theory"], c),
                          (r["cos_theory_finite_width"], cf)):
            assert (math.isnan(ref) and cell == "") or _float(cell) == ref
    # the JSON holds the same results in full
    sampled = data["result"]["sampled"][1]
    assert sampled["cos"][1][-1] == want.cos[1, -1]
    assert data["result"]["theory"][1]["cos"][-1] == th.cos[-1]


def test_curve_theory_only_resnet_and_same_points_as_depth_curves(tmp_path):
    assert main(["curve", "--family", "resnet", "--c", "2", "--alpha", "0.5", "--depths", "16",
                 "--samples", "0", "--quiet", "--out", str(tmp_path / "t")]) == 0
    rows = _rows(tmp_path / "t" / "curve.csv")
    ref = theory.bfa(ra.ResNet.scaled(16, 128, 2.0, 0.5)).cos
    assert [_float(r["cos_theory"]) for r in rows][1:] == list(ref[1:])
    assert all(r["cos_mean"] == "" and r["samples"] == "0" for r in rows)
    assert all(r["cos_theory_finite_width"] == "" for r in rows)  # ReLU ResNets: minutes, left out
    # curve's seeds are depth-curves' (point_seed(seed, family, "bfa-exact")): same numbers
    assert main(["curve", "--depths", "5", "--width", "10", "--samples", "2", "--no-theory",
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["depth-curves", "--kinds", "mlp", "--depths", "5", "--width", "10", "--samples",
                 "2", "--out", str(tmp_path / "b")]) == 0
    a, b = _rows(tmp_path / "a" / "curve.csv"), _rows(tmp_path / "b" / "depth_curves.csv")
    assert [r["cos_mean"] for r in a] == [r["cos_mean"] for r in b] and a[-1]["cos_theory"] == ""


def test_results_print_one_short_line():
    from rmtalign.cli import build_parser, curve, spectrum

    parser = build_parser()
    res = curve.compute(parser.parse_args(["curve", "--depths", "4,5", "--samples", "1", "--width", "8"]))
    assert repr(res) == ("AlignmentCurves(MLP relu, mode='exact', depths=[4, 5], theory=True, "
                         "samples=1)")
    res = spectrum.compute(parser.parse_args(["spectrum", "--depth", "5", "--width", "8", "--samples",
                                              "1", "--layers", "4"]))
    assert repr(res).startswith("SpectrumComparison(MLP relu L=5 m=8, mode='free', normalise=None, "
                                "layers=[4], samples=1, ks_distance=[")
    assert len(repr(res)) < 200


def test_curve_free_mode_and_resnet_flags(tmp_path, capsys):
    data = _json_out(capsys, ["curve", "--family", "resnet", "--branch-scale", "0.3", "--depths", "5",
                              "--width", "8", "--samples", "1", "--mode", "free",
                              "--activation", "linear", "--weights", "orthogonal", "--trained", "all",
                              "--lr-rule", "uniform", "--out", str(tmp_path)])
    fam = data["result"]["families"][0]
    assert fam["branch_scale"] == 0.3 and fam["activation"] == "linear" and fam["trained"] == "all"
    assert fam["weights"] == "orthogonal" and fam["lr_rule"] == "uniform"
    family = ra.Family.from_dict(fam)
    want = ra.sample_bfa(family, 1, point_seed(0, family, "bfa-free"), mode="free")
    assert data["result"]["sampled"][0]["cos"][0][1:] == list(want.cos[0, 1:])
    assert data["result"]["theory"][0]["cos"] == list(theory.bfa(family, mode="free").cos)


# -- spectrum, jacobian -----------------------------------------------------------------------------
def test_spectrum_against_the_library(tmp_path, capsys):
    data = _json_out(capsys, ["spectrum", "--depth", "6", "--width", "16", "--layers", "5,3",
                              "--samples", "2", "--seed", "1", "--out", str(tmp_path)])
    fam = ra.MLP(6, 16)
    want = ra.sample_bfk(fam, [3, 5], 2, point_seed(1, fam, "bfa-free"), mode="free")
    ev = _rows(tmp_path / "spectrum_samples.csv")
    assert len(ev) == 2 * 2 * 16
    got = np.array([float(r["eigenvalue"]) for r in ev]).reshape(2, 2, 16)
    assert np.array_equal(got, want.eigenvalues)
    summary = _rows(tmp_path / "spectrum.csv")
    law = _rows(tmp_path / "spectrum_theory.csv")
    for j, v in enumerate((3, 5)):
        # the Kolmogorov distance, recomputed from the two CSVs: sup |F_samples - F_law| on the grid
        grid = [r for r in law if r["layer"] == str(v) and r["atom_mass"] == ""]
        x = np.array([float(r["x"]) for r in grid])
        cdf = np.array([float(r["cdf"]) for r in grid])
        s = np.sort(want.eigenvalues[:, j].ravel())
        ks = np.max(np.abs(np.searchsorted(s, x, side="right") / s.size - cdf))
        assert float(summary[j]["ks_distance"]) == pytest.approx(ks, abs=1e-15)
        atoms = [r for r in law if r["layer"] == str(v) and r["atom_mass"] != ""]
        assert len(atoms) == 1 and float(atoms[0]["atom_mass"]) == pytest.approx(0.5, abs=1e-6)
        assert float(atoms[0]["x"]) == pytest.approx(theory.mean_field(fam).kernel_weights[v - 1])
        assert float(summary[j]["cos_spectrum"]) == theory.bfa(fam, mode="free").cos_spectrum[v - 1]
    assert data["result"]["layers"] == [3, 5]
    assert (tmp_path / "spectrum.png").stat().st_size > 5000


def test_spectrum_exact_mode_compares_shapes(tmp_path, capsys):
    """In exact mode each draw measures its own learning rates, hence its own scale: by default
    a ReLU MLP's draws are divided by their smallest eigenvalue (their c_v, the law's atom)."""
    data = _json_out(capsys, ["spectrum", "--depth", "6", "--width", "16", "--layers", "4",
                              "--samples", "2", "--mode", "exact", "--out", str(tmp_path)])
    assert data["result"]["normalise"] == "atom"
    fam = ra.MLP(6, 16)
    ev = ra.sample_bfk(fam, [4], 2, point_seed(0, fam, "bfa-exact")).eigenvalues[:, 0]
    rows = _rows(tmp_path / "spectrum_samples.csv")
    got = np.array([float(r["eigenvalue_normalised"]) for r in rows]).reshape(2, 16)
    assert np.array_equal(got, ev / ev.min(axis=1, keepdims=True))
    law = theory.bfk_density(fam, 4)
    (c, w), = law.atoms.items()
    grid = [r for r in _rows(tmp_path / "spectrum_theory.csv") if r["atom_mass"] == ""]
    assert np.allclose([float(r["x"]) for r in grid], law.x / c, rtol=1e-15, atol=0)
    atom = [r for r in _rows(tmp_path / "spectrum_theory.csv") if r["atom_mass"] != ""]
    assert float(atom[0]["x"]) == 1.0 and float(atom[0]["atom_mass"]) == w
    # the draws' own c_v sit on the atom: exactly the fraction m - rank of each kernel
    frac = np.mean(np.abs(got - 1.0) <= 1e-9)
    assert data["result"]["atom_mass_sampled"] == [frac] and 0 < frac < 1


def test_jacobian_against_the_library(tmp_path, capsys):
    data = _json_out(capsys, ["jacobian", "--family", "resnet", "--depth", "8", "--width", "12",
                              "--start", "2", "--stop", "6", "--samples", "2", "--out", str(tmp_path)])
    fam = ra.ResNet.scaled(8, 12, 1.0)
    want = ra.sample_jacobian(fam, 2, 6, 2, point_seed(0, fam, "bfa-exact"))
    rows = _rows(tmp_path / "jacobian.csv")
    got = np.array([float(r["log_sq_singular_value"]) for r in rows]).reshape(2, 12)
    assert np.array_equal(got, want.log_sq_singular_values)
    s = data["summary"]
    sq = np.exp(got)
    assert s["m1_sampled"] == pytest.approx(sq.mean(), rel=1e-12)
    assert s["m2_sampled"] == pytest.approx((sq**2).mean(), rel=1e-12)
    m1, m2 = theory.jacobian_moments(fam, 2, 6, order=2)
    assert (s["m1_theory"], s["m2_theory"]) == (m1, m2)
    assert (s["start"], s["stop"]) == (2, 6)
    assert s["log_condition"] == list(want.log_condition)
    assert (tmp_path / "jacobian.png").stat().st_size > 5000


# -- limit, prescribe -------------------------------------------------------------------------------
def test_limit_closed_forms_and_phase_diagram(tmp_path, capsys):
    data = _json_out(capsys, ["limit", "--c", "1.5", "--alphas", "0.75,0.25,0.5", "--mode", "free",
                              "--depths", "50", "--out", str(tmp_path)])
    rows = {r["alpha"]: r for r in _rows(tmp_path / "limit.csv")}
    # the critical limit of the free model, (1 + 2 c^2 / 3)^(-1/2), and the two trivial regimes
    assert float(rows["0.5"]["cos"]) == pytest.approx((1 + 2 * 1.5**2 / 3) ** -0.5, rel=1e-14)
    assert rows["0.5"]["regime"] == "critical" and rows["0.5"]["rate"] == ""
    assert (float(rows["0.75"]["cos"]), float(rows["0.25"]["cos"])) == (1.0, 0.0)
    pd = {(r["alpha"], r["depth"]): r["cos"] for r in _rows(tmp_path / "phase_diagram.csv")}
    for a in (0.25, 0.5, 0.75):
        fam = ra.ResNet(50, 1000, 1.5 * 50 ** -a)
        assert float(pd[(str(a), "50.0")]) == theory.bfa(fam, mode="free").cos[-1]
    assert [d["alpha"] for d in data["limits"]] == [0.25, 0.5, 0.75]
    assert (tmp_path / "phase_diagram.png").stat().st_size > 5000


def test_limit_alpha_c_plane(tmp_path, capsys):
    data = _json_out(capsys, ["limit", "--alphas", "0:1:5", "--c", "2,0.5", "--depths", "20",
                              "--mode", "free", "--out", str(tmp_path)])
    assert [d["alphas"] for d in data["phase_diagrams"]] == [[0.0, 0.25, 0.5, 0.75, 1.0]] * 2
    assert [d["c"] for d in data["phase_diagrams"]] == [0.5, 2.0]
    crit = {d["c"]: d["cos"] for d in data["limits"] if d["alpha"] == 0.5}
    assert crit == pytest.approx({c: (1 + 2 * c * c / 3) ** -0.5 for c in (0.5, 2.0)}, rel=1e-14)
    rows = _rows(tmp_path / "phase_diagram.csv")
    assert len(rows) == 2 * 5 * 2 and {r["c"] for r in rows} == {"0.5", "2.0"}


def test_prescribe_json_reads_back(tmp_path, capsys):
    out = _json_out(capsys, ["prescribe", "--family", "resnet", "--depth", "12", "--width", "64",
                             "--scheme", "mfmup", "--feature-speed", "2", "--out", str(tmp_path)])
    got = ra.Prescription.from_json(json.dumps(out))
    assert got == ra.prescribe(ra.ResNet.scaled(12, 64, 1.0), "mfmup", feature_speed=2.0)
    assert ra.Prescription.from_json((tmp_path / "prescription.json").read_text()) == got
    assert len(_rows(tmp_path / "prescription.csv")) == 12


# -- sweep, figures -----------------------------------------------------------------------------------
def test_sweep_inline_from_flags_and_spec(tmp_path, capsys):
    spec = tmp_path / "grid.toml"
    spec.write_text('quantity = "bfa"\nseeds = [5]\nsamples = 1\n[grid]\ndepth = [4, 9]\nwidth = [8]\n')
    data = _json_out(capsys, ["sweep", "--spec", str(spec), "--grid", "depth=5", "--grid",
                              "family=mlp,resnet", "--grid", "c=1", "--samples", "2", "--inline",
                              "--out", str(tmp_path / "s")])
    rows = _rows(tmp_path / "s" / "sweep.csv")
    assert data["result"]["grid"]["depth"] == [5] and data["result"]["seeds"] == [5]
    for kind, fam in (("MLP", ra.MLP(5, 8)), ("ResNet", ra.ResNet.scaled(5, 8, 1.0))):
        want = ra.sample_bfa(fam, 2, point_seed(5, fam, "bfa-exact"))
        got = [r for r in rows if r["family"] == kind and r["sample"] == "1"]
        assert [_float(r["cos"]) for r in got][1:] == list(want.cos[1, 1:])
    # a rerun resumes: every unit is already in the CSV
    data = _json_out(capsys, ["sweep", "--spec", str(spec), "--grid", "depth=5", "--grid",
                              "family=mlp,resnet", "--grid", "c=1", "--samples", "2", "--inline",
                              "--out", str(tmp_path / "s")])
    assert data["result"]["stats"]["computed"] == 0 and data["result"]["stats"]["resumed"] == 2


def test_sweep_on_dask_uses_the_client(tmp_path, capsys, monkeypatch):
    """--scheduler/--dask-workers open rmtalign.sweep.dask_client and run on its executor (a
    thread pool stands in for the cluster here; the sweep's own tests use a LocalCluster)."""
    import concurrent.futures
    import contextlib

    import rmtalign.sweep

    calls = []

    @contextlib.contextmanager
    def fake_client(address=None, workers=None):
        calls.append((address, workers))
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            yield ex

    monkeypatch.setattr(rmtalign.sweep, "dask_client", fake_client)
    data = _json_out(capsys, ["sweep", "--quantity", "theory", "--grid", "depth=4,5", "--grid",
                              "width=8", "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path)])
    assert calls == [("tcp://127.0.0.1:1", None)]
    assert data["result"]["stats"]["units"] == 2
    assert main(["sweep", "--quantity", "theory", "--grid", "depth=4", "--grid", "width=8",
                 "--dask-workers", "3", "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert calls[-1] == (None, 3)


def test_figures_wiring(tmp_path, capsys, monkeypatch):
    import rmtalign.figures

    calls = []

    def fake(out_dir, *, paper=False, only=None, progress=None, seed=0):
        calls.append((str(out_dir), paper, only, progress, seed))
        p = out_dir / "phase_diagram.png"
        p.write_bytes(b"png")
        return [p]

    monkeypatch.setattr(rmtalign.figures, "make_figures", fake)
    data = _json_out(capsys, ["figures", "--paper", "--only", "phase_diagram,fig1a_bfa_layer",
                              "--seed", "4", "--quiet", "--out", str(tmp_path)])
    assert calls == [(str(tmp_path), True, ["phase_diagram", "fig1a_bfa_layer"], False, 4)]
    assert data["files"] == [str(tmp_path / "phase_diagram.png")]
    with pytest.raises(SystemExit):
        main(["figures", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in rmtalign.figures.FIGURES)  # --only lists every figure


# -- depth-curves (the README's job) ------------------------------------------------------------------
def test_depth_curves_writes_csv_and_png(tmp_path, capsys):
    assert main(["depth-curves", "--depths", "4,8", "--width", "16", "--samples", "2",
                 "--out", str(tmp_path), "--quiet"]) == 0
    rows = _rows(tmp_path / "depth_curves.csv")
    # 3 families x (3 + 7 layers)
    assert len(rows) == 3 * (3 + 7)
    assert {r["family"] for r in rows} == {"mlp", "resnet-sqrt", "resnet-lin"}
    top = [r for r in rows if r["family"] == "mlp" and r["depth"] == "8" and r["layer"] == "7"][0]
    assert 0 < float(top["cos_mean"]) < 1 and 0 < float(top["cos_theory_width_limit"]) < 1
    assert (tmp_path / "depth_curves.png").stat().st_size > 10_000
    captured = capsys.readouterr()
    assert "output BFA" in captured.out and captured.err == ""  # no bar off a terminal


def _by_key(path):
    return {(r["family"], r["depth"], r["layer"]): r for r in _rows(path)}


def test_depth_curves_points_depend_on_content_not_order(tmp_path):
    """Reordering --kinds or extending --depths changes no point's numbers (content seeds), and
    the CSV is the API's result for the documented seeding, in full precision."""
    base = ["depth-curves", "--width", "12", "--samples", "2", "--seed", "4", "--quiet"]
    assert main(base + ["--kinds", "mlp,resnet-sqrt", "--depths", "4,6", "--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--kinds", "resnet-sqrt,mlp", "--depths", "8,6,4",
                        "--out", str(tmp_path / "b")]) == 0
    a, b = _by_key(tmp_path / "a" / "depth_curves.csv"), _by_key(tmp_path / "b" / "depth_curves.csv")
    assert len(a) == 2 * (3 + 5) and len(b) == 2 * (3 + 5 + 7) and set(a) <= set(b)
    for key, row in a.items():
        assert b[key] == row
    fam = ra.ResNet.scaled(6, 12, 1.0, 0.5)
    res = ra.sample_bfa(fam, samples=2, seed=point_seed(4, fam, "bfa-exact"))
    th = theory.bfa(fam).cos
    for v, mu, se, t in zip(res.layers, res.mean("cos"), res.sem("cos"), th):
        row = a[("resnet-sqrt", "6", str(v))]
        if np.isnan(mu):
            assert row["cos_mean"] == "" and row["cos_sem"] == ""
        else:
            assert float(row["cos_mean"]) == mu and float(row["cos_sem"]) == se
        want = "" if np.isnan(t) else t
        assert (row["cos_theory_width_limit"] and float(row["cos_theory_width_limit"])) == want
    assert main(base + ["--kinds", "mlp", "--depths", "4", "--seed", "5", "--out", str(tmp_path / "c")]) == 0
    c = _by_key(tmp_path / "c" / "depth_curves.csv")
    assert c[("mlp", "4", "3")]["cos_mean"] != a[("mlp", "4", "3")]["cos_mean"]


# -- help, bad input, interruption --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_explains_itself_with_an_example(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert f"rmtalign {name} " in text.split("example", 1)[1] and "--out" in text and "--json" in text


BAD = [
    # (argv, words the one line must hold)
    (["curve", "--out", "{file}"], ["--out", "folder"]),
    (["curve", "--out", "/proc/x"], ["--out", "/proc/x"]),
    (["curve", "--out", "/dev/null/x"], ["--out", "/dev/null/x"]),
    (["curve", "--seed", "-1"], ["--seed", "integer >= 0", "-1"]),
    (["curve", "--width", "-3"], ["--width", "integer >= 1", "-3"]),
    (["curve", "--depths", "2"], ["--depths", ">= 3", "2"]),
    (["curve", "--depths", "4,,8"], ["--depths", "empty", "4,,8"]),
    (["curve", "--depths", "3"], ["--depths", "depth 3", "0 by construction"]),
    (["curve", "--depths", "x"], ["--depths", "'x'"]),
    (["curve", "--family", "cnn"], ["--family", "mlp", "resnet"]),
    (["curve", "--family", "mlp", "--c", "2"], ["--c", "resnet"]),
    (["curve", "--family", "resnet", "--branch-scale", "0.5", "--c", "2"], ["--branch-scale", "--c"]),
    (["curve", "--family", "resnet", "--c", "3", "--depths", "4"], ["--c", "<= 1", "1.5"]),
    (["curve", "--family", "resnet", "--branch-scale", "1.5"], ["--branch-scale", "<= 1", "1.5"]),
    (["curve", "--family", "resnet", "--trained", "40", "--depths", "8"], ["--trained", "40", "[1, 8]"]),
    (["curve", "--trained", "0"], ["--trained", "'0'"]),
    (["curve", "--samples", "0", "--no-theory"], ["--samples", "--no-theory"]),
    (["curve", "--samples", "-2"], ["--samples", "-2"]),
    (["curve", "--width", "1e3"], ["--width", "1e3"]),
    (["curve", "--no-such-flag"], ["rmtalign curve: error", "--no-such-flag", "rmtalign curve --help"]),
    (["limit", "extra"], ["rmtalign limit: error", "extra"]),
    (["--no-such-flag"], ["--no-such-flag", "subcommand"]),
    ([], ["subcommand"]),
    (["spectrum", "--layers", "1"], ["--layers", "K_1 = 0", ">= 2"]),
    (["spectrum", "--depth", "8", "--layers", "9"], ["--layers", "1..7", "9"]),
    (["spectrum", "--layers", "2,"], ["--layers", "2,"]),
    (["jacobian", "--depth", "8", "--start", "5", "--stop", "3"], ["--start", "--stop", "7"]),
    (["jacobian", "--depth", "8", "--stop", "9"], ["--stop", "7", "9"]),
    (["limit", "--alphas", "1.5"], ["--alphas", "[0.0, 1.0]", "1.5"]),
    (["limit", "--alphas", "0:1:x"], ["--alphas", "0:1:x"]),
    (["limit", "--c", "0"], ["--c", "> 0", "'0'"]),
    (["limit", "--c", "1,-1"], ["--c", "> 0", "'-1'"]),
    (["limit", "--position", "0"], ["--position", "'0'"]),
    (["prescribe", "--scheme", "mup"], ["--scheme", "fsc", "mup"]),
    (["prescribe", "--loss-decay", "nan"], ["--loss-decay", "nan"]),
    (["sweep", "--quantity", "bfa"], ["--grid"]),
    (["sweep", "--quantity", "bfx", "--grid", "depth=4", "--grid", "width=8"], ["--quantity", "bfx"]),
    (["sweep", "--quantity", "bfa", "--grid", "depth"], ["--grid", "FIELD=V1,V2", "depth"]),
    (["sweep", "--quantity", "bfa", "--grid", "depth=4", "--grid", "width=8", "--scheduler", "x",
      "--dask-workers", "2"], ["--scheduler", "--dask-workers"]),
    (["sweep", "--spec", "/no/such/file.toml"], ["/no/such/file.toml"]),
    (["figures", "--only", "fig9"], ["--only", "fig9", "fig1a_bfa_layer"]),
    (["depth-curves", "--kinds", "cnn"], ["--kinds", "cnn", "resnet-sqrt"]),
    (["depth-curves", "--depths", "3"], ["--depths", ">= 4", "3"]),
    (["depth-curves", "--depths", "2,x"], ["--depths", "2,x"]),
]


@pytest.mark.parametrize("argv, words", BAD, ids=[" ".join(a) or "nothing" for a, _ in BAD])
def test_bad_input_exits_2_with_one_line(argv, words, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    argv = [a.replace("{file}", str(a_file)) for a in argv]
    if argv and argv[0] in SUBCOMMANDS and "--out" not in argv:
        argv = argv + ["--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err
    assert captured.out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("rmtalign") and "error:" in err
    for w in words:
        assert w in err, (w, err)


def test_interrupted_run_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the PNG is being written (after the CSV and JSON): exit 130, one line; the
    finished files are complete, the PNG absent, and no temporary file is left behind."""
    from matplotlib.figure import Figure

    def interrupted(self, fh, **kwargs):
        fh.write(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(SystemExit) as info:
        main(["curve", "--depths", "4", "--width", "8", "--samples", "1", "--out", str(tmp_path)])
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.csv", "curve.json"]
    json.loads((tmp_path / "curve.json").read_text())
    assert len(_rows(tmp_path / "curve.csv")) == 3


def test_interrupted_computation_writes_nothing(tmp_path, capsys, monkeypatch):
    import rmtalign.sampling

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rmtalign.sampling, "sample_bfa", interrupted)
    with pytest.raises(SystemExit) as info:
        main(["depth-curves", "--depths", "4", "--width", "8", "--samples", "1", "--out", str(tmp_path)])
    assert info.value.code == 130
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_only_on_a_terminal(tmp_path, capsys, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    argv = ["curve", "--depths", "4,5", "--samples", "0", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""  # stderr is not a terminal here: no bar
    for quiet, shown in (([], True), (["--quiet"], False)):
        term = Terminal()
        monkeypatch.setattr(sys, "stderr", term)
        assert main(argv + quiet) == 0
        monkeypatch.undo()
        assert ("curve" in term.getvalue() and "|" in term.getvalue()) == shown, term.getvalue()


def test_library_error_keeps_its_traceback_with_rmtalign_debug(tmp_path, monkeypatch):
    monkeypatch.setenv("RMTALIGN_DEBUG", "1")
    with pytest.raises(ValueError, match="must be <= 1"):
        main(["curve", "--family", "resnet", "--branch-scale", "1.5", "--out", str(tmp_path)])
