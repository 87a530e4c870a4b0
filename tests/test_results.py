"""The result protocol (rmtalign.results) on every result type: JSON-ready to_dict, tidy
to_table, atomic CSV that reads back bit for bit (NaN as an empty cell), one-line repr."""
import csv
import json
import math
import os

import numpy as np
import pytest

import rmtalign as ra
from rmtalign import theory as T
from rmtalign.results import write_csv


def _results():
    mlp = ra.MLP(5, 12)
    res = ra.ResNet(6, 12, 0.5)
    return {
        "SampledBFA": ra.sample_bfa(mlp, samples=2, seed=0),
        "SampledBFK": ra.sample_bfk(res, layers=[2, 4], samples=2, seed=0),
        "SampledJacobian": ra.sample_jacobian(mlp, 1, 4, samples=2, seed=0),  # exact zeros: -inf
        "WidthLimit": ra.width_limit(mlp, [8, 16], samples=3, seed=0),
        "TheoryBFA": T.bfa(res),
        "Density": T.bfk_density(mlp, 3, x=np.linspace(0.05, 3.0, 7)),
        "DepthLimit": T.depth_limit(0.5, 1.0),
        "PhaseDiagram": T.phase_diagram(alphas=[0.0, 0.5, 1.0], c=2.0, depths=(3, 10)),
        "MeanField": T.mean_field(res),
    }


RESULTS = _results()


@pytest.mark.parametrize("name", list(RESULTS))
def test_to_dict_is_strict_json(name):
    r = RESULTS[name]
    assert type(r).__name__ == name
    d = r.to_dict()
    back = json.loads(json.dumps(d, allow_nan=False))  # NaN/inf would raise here
    assert back == json.loads(json.dumps(d))
    for key, value in vars(r).items():  # every array survives: NaN as null, inf as a string
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and key in back:
            flat = np.ravel(np.asarray(back[key], dtype=object))
            want = [None if np.isnan(v) else ("-inf" if v == -np.inf else ("inf" if v == np.inf else v))
                    for v in value.ravel()]
            assert flat.tolist() == want


@pytest.mark.parametrize("name", list(RESULTS))
def test_to_table_columns_have_equal_length(name):
    table = RESULTS[name].to_table()
    assert table and len({len(v) for v in table.values()}) == 1 and len(next(iter(table.values()))) > 0


@pytest.mark.parametrize("name", list(RESULTS))
def test_csv_reads_back_bit_for_bit(name, tmp_path):
    r = RESULTS[name]
    path = r.to_csv(tmp_path / f"{name}.csv")
    rows = list(csv.reader(open(path)))
    table = r.to_table()
    assert rows[0] == list(table)
    assert len(rows) == 1 + len(next(iter(table.values())))
    for j, (col, values) in enumerate(table.items()):
        got = [row[j] for row in rows[1:]]
        if values.dtype.kind == "f":
            for cell, v in zip(got, values):
                if math.isnan(v):
                    assert cell == ""
                else:
                    assert float(cell) == v  # full precision, inf as "inf"/"-inf"
        elif values.dtype.kind in "iu":
            assert [int(c) for c in got] == values.tolist()
    assert os.listdir(tmp_path) == [f"{name}.csv"]  # no temporary file left behind


@pytest.mark.parametrize("name", list(RESULTS))
def test_repr_is_one_short_line(name):
    text = repr(RESULTS[name])
    assert text.startswith(name + "(") and "\n" not in text and len(text) < 400


def test_sampled_tables_are_sample_by_layer():
    r = RESULTS["SampledBFA"]
    t = r.to_table()
    assert t["sample"].tolist() == [0] * 4 + [1] * 4 and t["layer"].tolist() == [1, 2, 3, 4] * 2
    np.testing.assert_array_equal(t["cos"], r.cos.reshape(-1))
    np.testing.assert_array_equal(t["angle_deg"], r.angle_deg.reshape(-1))
    assert r.angle_deg.shape == (2, 4) and r.weight_layers.tolist() == [1, 2, 3, 4, 5]


def test_limit_rows_of_width_and_phase_tables():
    wl = RESULTS["WidthLimit"]
    t = wl.to_table()
    lim = np.isinf(t["width"])
    np.testing.assert_array_equal(t["mean"][lim], wl.limit)
    np.testing.assert_array_equal(t["sem"][lim], wl.limit_se)
    np.testing.assert_array_equal(t["mean"][t["width"] == 16], wl.means[1])
    assert not hasattr(wl, "mean")  # not a sample x layer result: no per-layer average
    pd = RESULTS["PhaseDiagram"]
    t = pd.to_table()
    np.testing.assert_array_equal(t["cos"][np.isinf(t["depth"])], pd.limit)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(pd["cos"], pd.cos)


def test_theory_and_sampled_bfa_share_names_and_units():
    th, sa = RESULTS["TheoryBFA"], RESULTS["SampledBFA"]
    for q in ("layers", "cos", "angle_deg"):
        assert hasattr(th, q) and hasattr(sa, q)
    np.testing.assert_allclose(th.angle_deg[1:], np.degrees(np.arccos(th.cos[1:])), rtol=1e-12)
    assert T.depth_limit(0.5, 1.0).angle_deg == pytest.approx(math.degrees(math.acos(T.depth_limit(0.5, 1.0).cos)))


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "t.csv"
    write_csv(path, {"a": [1, 2]})
    before = path.read_text()
    with pytest.raises(ValueError, match="equal lengths"):
        write_csv(path, {"a": [1, 2], "b": [1.0]})

    class Boom:
        def item(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_csv(path, {"a": np.array([Boom(), Boom()], dtype=object)})
    assert path.read_text() == before and os.listdir(tmp_path) == ["t.csv"]


def test_old_names_still_work_with_a_warning():
    with pytest.warns(DeprecationWarning, match="SampledBFA"):
        assert ra.BFAResult is ra.SampledBFA
    with pytest.warns(DeprecationWarning, match="TheoryBFA"):
        assert T.BFAResult is T.TheoryBFA
    with pytest.warns(DeprecationWarning, match="mode"):
        np.testing.assert_array_equal(T.bfa(ra.ResNet(6, 12, 0.5), masks="free").cos,
                                      T.bfa(ra.ResNet(6, 12, 0.5), mode="free").cos)
    with pytest.raises(TypeError, match="mode only"), pytest.warns(DeprecationWarning):
        T.bfa(ra.ResNet(6, 12, 0.5), mode="free", masks="free")
    with pytest.warns(DeprecationWarning, match="lr_rule"):
        fam = ra.MLP(5, 8, lr="uniform")
    assert fam.lr_rule == "uniform" and fam == ra.MLP(5, 8, lr_rule="uniform")
    with pytest.warns(DeprecationWarning, match="lr_rule"):
        assert fam.lr == "uniform"
    with pytest.warns(DeprecationWarning, match="lr_rule"):
        assert ra.ResNet(5, 8, 0.5).replace(lr="uniform").lr_rule == "uniform"
