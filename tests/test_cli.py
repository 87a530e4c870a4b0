import csv

import matplotlib
import pytest

matplotlib.use("Agg")

from rmtalign.cli import main  # noqa: E402


def test_depth_curves_writes_csv_and_png(tmp_path, capsys):
    assert main(["depth-curves", "--depths", "4,8", "--width", "16", "--samples", "2",
                 "--out", str(tmp_path), "--quiet"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "depth_curves.csv")))
    # 3 families x (3 + 7 layers)
    assert len(rows) == 3 * (3 + 7)
    assert {r["family"] for r in rows} == {"mlp", "resnet-sqrt", "resnet-lin"}
    top = [r for r in rows if r["family"] == "mlp" and r["depth"] == "8" and r["layer"] == "7"][0]
    assert 0 < float(top["cos_mean"]) < 1 and 0 < float(top["cos_theory_width_limit"]) < 1
    assert (tmp_path / "depth_curves.png").stat().st_size > 10_000
    assert "output BFA" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["depth-curves", "--kinds", "cnn"], ["depth-curves", "--depths", "2,x"],
                                  ["depth-curves", "--width", "0"],
                                  ["depth-curves", "--seed", "-1"], ["depth-curves", "--depths", "2,4"],
                                  ["depth-curves", "--no-such-flag"]])
def test_bad_arguments_exit_with_a_message(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv + ["--out", str(tmp_path)])
    assert info.value.code == 2
    assert "rmtalign" in capsys.readouterr().err


def _rows(path):
    return {(r["family"], r["depth"], r["layer"]): r for r in csv.DictReader(open(path))}


def test_depth_curves_points_depend_on_content_not_order(tmp_path):
    """Reordering --kinds or extending --depths changes no point's numbers (content seeds), and
    the CSV is the API's result for the documented seeding, in full precision."""
    import numpy as np

    import rmtalign as ra
    from rmtalign.seeds import point_seed

    base = ["depth-curves", "--width", "12", "--samples", "2", "--seed", "4", "--quiet"]
    assert main(base + ["--kinds", "mlp,resnet-sqrt", "--depths", "4,6", "--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--kinds", "resnet-sqrt,mlp", "--depths", "8,6,4",
                        "--out", str(tmp_path / "b")]) == 0
    a, b = _rows(tmp_path / "a" / "depth_curves.csv"), _rows(tmp_path / "b" / "depth_curves.csv")
    assert len(a) == 2 * (3 + 5) and len(b) == 2 * (3 + 5 + 7) and set(a) <= set(b)
    for key, row in a.items():
        assert b[key] == row
    fam = ra.ResNet.scaled(6, 12, 1.0, 0.5)
    res = ra.sample_bfa(fam, samples=2, seed=point_seed(4, fam, "bfa-exact"))
    theory = ra.theory.bfa(fam).cos
    for v, mu, se, th in zip(res.layers, res.mean("cos"), res.sem("cos"), theory):
        row = a[("resnet-sqrt", "6", str(v))]
        if np.isnan(mu):
            assert row["cos_mean"] == "" and row["cos_sem"] == ""
        else:
            assert float(row["cos_mean"]) == mu and float(row["cos_sem"]) == se
        want = "" if np.isnan(th) else th
        assert (row["cos_theory_width_limit"] and float(row["cos_theory_width_limit"])) == want
    assert main(base + ["--kinds", "mlp", "--depths", "4", "--seed", "5", "--out", str(tmp_path / "c")]) == 0
    c = _rows(tmp_path / "c" / "depth_curves.csv")
    assert c[("mlp", "4", "3")]["cos_mean"] != a[("mlp", "4", "3")]["cos_mean"]
