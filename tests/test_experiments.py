"""rmtalign.experiments: the tiny grid end to end (tables' columns and shapes, resume, seeded
reproducibility), the transfer analysis on known curves, the CLI's errors."""
import csv
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from rmtalign.experiments import suite, transfer  # noqa: E402
from rmtalign.experiments.__main__ import main  # noqa: E402
from rmtalign.experiments.train import point_key, read_records, train_point  # noqa: E402


def _read(path):
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    return rows


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("mup")
    out = tmp_path_factory.mktemp("exp")
    assert main(["--out", str(out), "--tiny", "--workers", "1", "--quiet"]) == 0
    return out


def test_tiny_outputs(tiny_run):
    out = tiny_run
    n = {name: len(suite.points(name, suite.TINY)) for name in suite.EXPERIMENTS}
    final = _read(out / "deep_mlp" / "final.csv")
    assert len(final) == n["deep_mlp"] == 2 * 4  # depths x schemes (one rate, one optimizer)
    assert {"scheme", "depth", "log2_lr", "train_loss", "test_loss", "best", "trained"} <= set(final[0])
    curves = _read(out / "deep_mlp" / "curves.csv")
    p0 = suite.points("deep_mlp", suite.TINY)[0]
    evals = {round(i * p0["steps"] / p0["evals"]) for i in range(p0["evals"] + 1)}
    assert len(curves) == 8 * len(evals)  # best runs x evaluated steps
    bfa = _read(out / "deep_mlp" / "bfa.csv")
    # measured at steps 0, 3, 6 on every layer v = 1..L of each best run
    assert len(bfa) == 4 * 3 * (3 + 6)
    init = [r for r in bfa if r["step"] == "0"]
    cos = np.array([float(r["cos"]) for r in init])
    assert np.all((cos > 0) & (cos <= 1 + 1e-6))
    theory = [r["theory_cos"] for r in init]
    assert all(t == "" for t, r in zip(theory, init) if int(r["layer"]) == int(r["depth"]))
    res = _read(out / "resnet" / "final.csv")
    assert len(res) == n["resnet"] == 2
    assert {r["beta_rule"] for r in res} == {"1/sqrt(L)"}
    final_t = _read(out / "transfer" / "final.csv")
    assert len(final_t) == n["transfer"] == (2 + 2 + 1) * 4 * 3
    drift = _read(out / "transfer" / "drift.csv")
    # (width, mlp), (depth, mlp) x 4 schemes; the ResNet sweep has one depth: drift 0 by definition
    assert len(drift) == 3 * 4
    assert {"drift_octaves", "drift_min", "drift_max", "seeds", "censored", "trained"} <= set(drift[0])
    opt = _read(out / "transfer" / "optima.csv")
    assert len(opt) == 5 * 4
    for name in ("transfer_loss.png", "transfer_optima.png"):
        assert (out / "transfer" / name).stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == set(suite.EXPERIMENTS)


def test_resume_skips_finished_points(tiny_run):
    path = tiny_run / "resnet" / "points.jsonl"
    before = path.read_text()
    assert main(["--out", str(tiny_run), "--tiny", "--only", "resnet", "--workers", "1",
                 "--quiet"]) == 0
    assert path.read_text() == before  # nothing retrained, nothing appended
    assert len(read_records(path)) == 2


def test_training_is_reproducible_and_keyed_by_content(tmp_path):
    p = suite.points("deep_mlp", suite.TINY)[-1]
    a, b = train_point(p, tmp_path), train_point(dict(reversed(list(p.items()))), tmp_path)
    assert a["key"] == b["key"] == point_key(p)
    same = json.dumps  # NaN-safe equality (test_acc is NaN on the regression task)
    assert same(a["curve"]) == same(b["curve"]) and same(a["bfa"]) == same(b["bfa"])
    other = train_point({**p, "seed": 1}, tmp_path)
    assert same(other["curve"]) != same(a["curve"])


def test_fsc_point_measures_theory_at_init(tmp_path):
    # the FSC MLP at init: the measured BFA of one input follows the width-limit theory's trend
    p = {**suite.points("deep_mlp", suite.TINY)[0], "scheme": "fsc", "depth": 6, "width": 64}
    rec = train_point(p, tmp_path)
    init = [r for r in rec["bfa"] if r["step"] == 0 and not math.isnan(r["theory_cos"])]
    assert len(init) == 5
    err = [abs(r["cos"] - r["theory_cos"]) for r in init]
    assert max(err) < 0.25, err


def test_optimal_log2_lr():
    g = np.arange(-5, 4)
    loss = (g - 0.3) ** 2 + 1.0
    opt, cens = transfer.optimal_log2_lr(g, loss)
    assert not cens and opt == pytest.approx(0.3, abs=1e-12)
    opt, cens = transfer.optimal_log2_lr(g, -g.astype(float))  # best at the largest rate
    assert cens and opt == 3
    loss[g > 1] = np.nan  # diverged points count as worst
    opt, cens = transfer.optimal_log2_lr(g, loss)
    assert not cens and opt == pytest.approx(0.3, abs=1e-12)
    opt, cens = transfer.optimal_log2_lr(g, np.full(g.size, np.nan))
    assert cens and math.isnan(opt)


def test_drift_per_seed():
    rows = {"sweep": [], "arch": [], "scheme": [], "optimizer": [], "seed": [], "size": [],
            "opt_log2_lr": [], "censored": [], "trained": []}
    for seed, (a, b) in enumerate([(-3.0, -5.0), (-2.0, -5.0)]):
        for size, v in ((32, a), (512, b)):
            for k, x in zip(rows, ("width", "mlp", "sp", "adam", seed, size, v, False,
                                   seed == 0 or size == 32)):
                rows[k].append(x)
    d = transfer.drifts(rows)
    assert d["drift_octaves"] == [-2.5] and d["drift_min"] == [-3.0] and d["drift_max"] == [-2.0]
    assert d["seeds"] == [2] and d["censored"] == [False]
    assert d["trained"] == [False]  # seed 1 did not train at width 512


def test_plot_optima_draws_censored_optima_hollow(tmp_path, monkeypatch):
    import matplotlib.figure
    rows = {"sweep": [], "arch": [], "scheme": [], "optimizer": [], "seed": [], "size": [],
            "opt_log2_lr": [], "censored": [], "trained": []}
    for size, v, cens in ((4, -1.0, False), (64, 2.0, True)):
        for k, x in zip(rows, ("depth", "resnet", "mfmup", "adam", 0, size, v, cens, True)):
            rows[k].append(x)
    figs = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: figs.append(fig))
    transfer.plot_optima(rows, tmp_path / "o.png")
    # the artist drawn last at a point (highest zorder, then latest) decides how it looks:
    # hollow at the censored size only
    faces = {}
    for line in sorted(figs[0].axes[0].get_lines(), key=lambda line: line.get_zorder()):
        if line.get_marker() == "o":
            for x in line.get_xdata():
                faces[float(x)] = line.get_markerfacecolor()
    assert faces[6.0] == "white" and faces[2.0] != "white"


@pytest.mark.parametrize("argv, words", [
    (["--out", "x", "--only", "nope"], ["--only", "nope", "transfer"]),
    (["--out", "x", "--workers", "0"], ["--workers", "0"]),
    (["--only", "resnet"], ["--out"]),
    (["--out", "x", "--full", "--tiny"], ["--tiny", "--full"]),
])
def test_cli_errors_one_line_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words), err


def test_real_tasks_load_offline():
    pytest.importorskip("sklearn")
    from rmtalign.experiments.data import load_task

    t = load_task("digits")
    assert t.x.shape == (1437, 64) and t.x_test.shape == (360, 64) and t.out_dim == 10
    assert abs(float(t.x.mean())) < 1e-5 and t.x.dtype == np.float32
    with pytest.raises(ValueError, match="task must be one of"):
        load_task("cifar")
