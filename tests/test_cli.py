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
                                  ["depth-curves", "--width", "0"]])
def test_bad_arguments_exit_with_a_message(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv + ["--out", str(tmp_path)])
    assert info.value.code == 2
    assert "rmtalign" in capsys.readouterr().err
