"""rmtalign.sweep: executors agree bit for bit, failures are recorded, outputs resume.

References are the package's own per-point calls (sample_bfa, sample_bfk, theory.bfa,
width_limit) seeded by hand with point_seed: a sweep must return exactly their tables.
"""
import concurrent.futures as cf
import csv
import json
import sys
import warnings

import numpy as np
import pytest

from conftest import assert_error_names
from rmtalign import MLP, ResNet, sample_bfa, sample_bfk, theory, width_limit
from rmtalign import sweep as S
from rmtalign.seeds import point_seed

# depth 3 has no layer 3: its bfk points fail (in the computation, not in the grid's validation)
GRID = {"family": ["MLP", "ResNet"], "depth": [3, 5], "width": [6], "c": [1.0]}
BFK = dict(seeds=[0, 3], samples=2, options={"layers": [3]})


def _same(a, b):
    """Tables equal bit for bit (floats by their bytes, NaN payloads included)."""
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        if x.dtype.kind in "fiu":
            assert x.tobytes() == y.tobytes(), k
        else:
            assert x.tolist() == y.tolist(), k


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return S.sweep(**kw)


@pytest.fixture(scope="module")
def reference():
    return _quiet(quantity="bfk", grid=GRID, executor="inline", **BFK)


@pytest.fixture(scope="module")
def dask_cluster():
    pytest.importorskip("distributed")
    with S.dask_client(workers=2) as client:
        yield client


# -- the same table from every executor --------------------------------------------------------
def test_reference_rows_are_the_point_calls(reference):
    t = reference.to_table()
    assert reference.stats["units"] == 8 and len(reference.failed) == 4
    for fam in (MLP(5, 6), ResNet.scaled(5, 6, 1.0)):
        for seed in (0, 3):
            want = sample_bfk(fam, [3], 2, point_seed(seed, fam, "bfa-exact")).to_table()
            rows = (t["family"] == type(fam).__name__) & (t["depth"] == 5) & (t["seed"] == seed)
            for k, v in want.items():
                assert np.asarray(v, dtype=float).tobytes() == t[k][rows].tobytes(), k
    bad = t["depth"] == 3
    assert (t["error"][bad] != "").all() and (t["error"][~bad] == "").all()
    assert all("layers" in f["error"] and f["depth"] == 3 for f in reference.failed)
    assert np.isnan(t["cos_kernel"][bad]).all()


def test_process_pool_is_bitwise_inline(reference):
    got = _quiet(quantity="bfk", grid=GRID, executor=None, workers=2, batch=1, **BFK)
    assert got.stats["executor"] == "processes" and got.stats["tasks"] == 8
    _same(reference.to_table(), got.to_table())
    assert got.failed == reference.failed


def test_thread_pool_is_bitwise_inline(reference):
    # numba's workqueue serves one thread per process: the sweep serialises tasks in-process
    with cf.ThreadPoolExecutor(2) as ex:
        got = _quiet(quantity="bfk", grid=GRID, executor=ex, batch=3, **BFK)
    _same(reference.to_table(), got.to_table())


def test_dask_local_cluster_is_bitwise_inline(reference, dask_cluster):
    got = _quiet(quantity="bfk", grid=GRID, executor=dask_cluster, batch=2, **BFK)
    assert got.stats["executor"] == "dask" and got.stats["tasks"] == 4
    _same(reference.to_table(), got.to_table())
    addrs = list(dask_cluster.scheduler_info()["workers"])
    assert all(a.startswith("tcp://127.0.0.1:") for a in addrs)


# -- quantities: each against its own direct call ----------------------------------------------
def test_bfa_theory_width_limit_rows_equal_direct_calls():
    grid = {"family": ["ResNet"], "depth": [4, 6], "width": [5], "branch_scale": [0.5]}
    r = S.sweep("bfa", grid, seeds=[7], samples=[1, 4], executor="inline",
                options={"mode": "free", "probes": 2})
    th = S.sweep("theory", grid, executor="inline")
    wl = S.sweep("width_limit", {"depth": [4]}, seeds=[2], samples=3, executor="inline",
                 options={"widths": [8, 4]})
    for i, L in enumerate((4, 6)):
        fam = ResNet(L, 5, 0.5)
        want = sample_bfa(fam, [1, 4], point_seed(7, fam, "bfa-free"), "free", probes=2).to_table()
        rows = r.columns["depth"] == L
        for k, v in want.items():
            assert np.asarray(v, dtype=np.result_type(v)).tobytes() == r.columns[k][rows].tobytes()
        tw = theory.bfa(fam).to_table()
        rows = th.columns["depth"] == L
        for k, v in tw.items():
            assert np.asarray(v).tobytes() == th.columns[k][rows].tobytes()
    assert "seed" not in th.columns and "sample" not in th.columns
    want = width_limit(MLP(4, 4), [4, 8], samples=3, seed=2).to_table()
    for k, v in want.items():
        assert np.asarray(v).tobytes() == wl.columns[k].tobytes()


def test_finite_width_rows_and_uncovered_families():
    grid = {"depth": [5], "width": [16], "lr_rule": ["balanced", "uniform"]}
    with pytest.warns(UserWarning, match="1 of 2 sweep points failed"):
        r = S.sweep("finite_width", grid, executor="inline")
    want = theory.finite_width(MLP(5, 16)).to_table()
    rows = r.columns["lr_rule"] == "balanced"
    for k, v in want.items():
        assert np.asarray(v, dtype=float).tobytes() == r.columns[k][rows].tobytes()
    assert r.failed[0]["lr_rule"] == "uniform" and "NotImplementedError" in r.failed[0]["error"]


def test_options_defaults_key_the_same_points_and_input_batches_pass_through():
    g = {"depth": [4], "width": [6], "in_dim": [4]}
    a = S.sweep("bfa", g, executor="inline")
    b = S.sweep("bfa", g, executor="inline", options={"mode": "exact", "probes": 8,
                                                        "dtype": np.float64, "inputs": 1})
    _same(a.to_table(), b.to_table())
    c = S.sweep("bfa", g, executor="inline", options={"inputs": 3, "input_correlation": 0.25})
    assert c.columns["point_key"][0] != a.columns["point_key"][0]
    fam = MLP(4, 6, in_dim=4)
    want = sample_bfa(fam, 1, point_seed(0, fam, "bfa-exact"), inputs=3, input_correlation=0.25)
    assert want.cos.tobytes() == c.columns["cos"].tobytes()


def test_bfk_and_bfa_sweeps_sample_the_same_networks():
    grid = {"depth": [5], "width": [7], "activation": ["relu", "linear"]}
    a = S.sweep("bfa", grid, seeds=[1], samples=2, executor="inline")
    k = S.sweep("bfk", grid, seeds=[1], samples=2, executor="inline")
    keep = np.isfinite(a.columns["cos"])
    np.testing.assert_allclose(k.columns["cos_kernel"][keep], a.columns["cos"][keep], rtol=1e-10)
    j = S.sweep("jacobian", grid, seeds=[1], executor="inline", options={"start": 2})
    fam = MLP(5, 7, activation="linear")
    from rmtalign import sample_jacobian
    want = sample_jacobian(fam, 2, 4, 1, point_seed(1, fam, "bfa-exact")).log_sq_singular_values
    assert want.tobytes() == j.columns["log_sq_singular_value"][j.columns["activation"] == "linear"].tobytes()


# -- failures, invalid combinations, resuming ---------------------------------------------------
def test_invalid_combination_is_a_failed_point_and_a_bad_value_an_error():
    grid = {"family": ["MLP", "ResNet"], "depth": [4, 16], "width": [4], "c": [1.0, 3.0]}
    with pytest.warns(UserWarning, match="invalid combinations"):
        r = S.sweep("theory", grid, executor="inline")
    # MLP points appear once (c does not apply), ResNet c=3 at depth 4 has beta = 1.5 > 1
    assert r.stats["points"] == 2 + 4 and len(r.failed) == 1
    f = r.failed[0]
    assert (f["family"], f["depth"], f["c"]) == ("ResNet", 4, 3.0) and "exceeds 1" in f["error"]
    assert np.isnan(r.columns["c"][r.columns["family"] == "MLP"]).all()
    assert_error_names(ValueError, ["grid['depth']", "2", ">= 3"], S.sweep, "theory",
                       {"depth": [2, 2], "width": [4]})
    assert_error_names(ValueError, ["grid['c']", "5", "exceeds"], S.sweep, "theory",
                       {"family": ["ResNet"], "depth": [4], "width": [4], "c": [1, 5], "alpha": [0]})


def test_resume_skips_finished_points_and_survives_an_interrupt(tmp_path, monkeypatch):
    grid = {"depth": [4, 5, 6], "width": [4, 5]}
    full = S.sweep("bfa", grid, seeds=[0, 1], executor="inline")
    calls = []
    real = S._compute

    def counting(q, fam, samples, seed, opts):
        calls.append((fam.depth, fam.width, seed))
        if len(calls) == 5 and interrupt:
            raise KeyboardInterrupt
        return real(q, fam, samples, seed, opts)

    monkeypatch.setattr(S, "_compute", counting)
    out = tmp_path / "bfa.csv"
    interrupt = True
    with pytest.raises(KeyboardInterrupt):
        S.sweep("bfa", grid, seeds=[0, 1], executor="inline", out=out, batch=1)
    # what an interrupted run leaves: a whole file of the 4 finished units, plus a stray
    # temporary file of a write that never completed
    (tmp_path / ".bfa.csv.x.tmp").write_text("depth,wid")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len({r["point_key"] for r in rows}) == 4 and all(r["error"] == "" for r in rows)
    interrupt, calls[:] = False, []
    again = S.sweep("bfa", grid, seeds=[0, 1], executor="inline", out=out)
    assert len(calls) == 12 - 4 and again.stats["resumed"] == 4 and again.stats["computed"] == 8
    _same_nan(full.to_table(), again.to_table())
    calls[:] = []
    S.sweep("bfa", grid, seeds=[0, 1], executor="inline", out=out)
    assert calls == []
    # a file from another sweep is not mixed in
    assert_error_names(ValueError, ["out=", "another sweep"], S.sweep, "bfa", {"depth": [7],
                       "width": [4]}, executor="inline", out=out)
    assert_error_names(ValueError, ["out=", "'bfk'", "'cos_spectrum'"], S.sweep, "bfk", grid,
                       executor="inline", out=out)
    assert_error_names(ValueError, ["out=", "'point_key'"], S.sweep, "bfa", grid,
                       executor="inline", out=tmp_path / ".bfa.csv.x.tmp")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00binary")
    assert_error_names(ValueError, ["out=", "not a CSV file"], S.sweep, "bfa", grid,
                       executor="inline", out=tmp_path / "bin.csv")


def _same_nan(a, b):
    """Equal tables, NaN where NaN (a CSV round trip keeps every finite float's bits)."""
    assert list(a) == list(b)
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.dtype.kind == "f":
            np.testing.assert_array_equal(x, y)
            assert x.dtype == y.dtype
        else:
            assert x.tolist() == y.tolist(), k


def test_failed_points_are_written_and_retried(tmp_path, reference):
    out = tmp_path / "bfk.csv"
    _quiet(quantity="bfk", grid=GRID, executor="inline", out=out, **BFK)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    err = [r for r in rows if r["error"]]
    assert len(err) == 4 and {r["depth"] for r in err} == {"3"} and all(r["cos_kernel"] == "" for r in err)
    again = _quiet(quantity="bfk", grid=GRID, executor="inline", out=out, **BFK)
    assert again.stats["resumed"] == 4 and again.stats["computed"] == 0 and len(again.failed) == 4
    _same_nan(reference.to_table(), again.to_table())


class _FlakyExecutor(cf.Executor):
    """Runs tasks in-process, except that its first task is lost (like a worker that died)."""

    def __init__(self):
        self.n = 0

    def submit(self, fn, *args, **kwargs):
        f = cf.Future()
        self.n += 1
        if self.n == 1:
            f.set_exception(RuntimeError("worker died"))
        else:
            f.set_result(fn(*args, **kwargs))
        return f


def test_a_lost_task_fails_its_points_only():
    grid = {"depth": [4, 5, 6], "width": [4]}
    with pytest.warns(UserWarning, match="1 of 3 sweep points failed"):
        r = S.sweep("theory", grid, executor=_FlakyExecutor(), batch=1)
    assert [f["depth"] for f in r.failed] == [6]  # tasks are submitted longest first
    assert r.failed[0]["error"] == "task failed: RuntimeError: worker died"
    ok = S.sweep("theory", grid, executor="inline")
    rows = r.columns["error"] == ""
    for k in ("cos", "layer", "depth"):
        np.testing.assert_array_equal(r.columns[k][rows], ok.columns[k][ok.columns["depth"] < 6])


def test_progress_counts_points_and_advances_by_cost(monkeypatch):
    import rmtalign._runtime as rt

    bars = []

    class Bar:
        def __init__(self, total):
            self.total, self.done, self.postfix, self.closed = total, 0.0, None, False

        def update(self, n):
            self.done += n

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def close(self):
            self.closed = True

    monkeypatch.setattr(rt, "progress", lambda total, enabled, desc, work:
                        bars.append(Bar(total)) or bars[-1])
    S.sweep("bfa", {"depth": [4, 40], "width": [4]}, seeds=[0, 1], executor="inline", batch=1,
            progress=True)
    (bar,) = bars
    assert bar.closed and bar.postfix == "4/4 points"
    assert bar.done == pytest.approx(bar.total, rel=1e-12)
    plan = S._plan("bfa", {"depth": [4, 40], "width": [4]}, (0, 1), 1, None)
    assert bar.total == pytest.approx(sum(u.cost for u in plan.units), rel=1e-12)
    assert plan.units[2].cost > plan.units[0].cost  # depth 40 costs more than depth 4


# -- batching -----------------------------------------------------------------------------------
def test_batching_by_cost():
    plan = S._plan("bfa", {"depth": list(range(3, 53)), "width": list(range(4, 54))}, (0, 1, 2, 3),
                   1, None)
    units = plan.units
    assert len(units) == 10**4
    tasks = S._batches(units, 2, None)
    costs = [sum(u.cost for u in t) for t in tasks]
    total = sum(u.cost for u in units)
    target = min(max(total / (S._TASKS_PER_WORKER * 2), S._MIN_TASK_S), S._MAX_TASK_S)
    assert [u for t in tasks for u in t] == units  # consecutive, nothing lost or repeated
    assert all(c >= target for c in costs[:-1]) and max(costs) < target + max(u.cost for u in units)
    assert len(tasks) <= total / target + 1 and len(tasks) >= 2 * 8
    assert [len(t) for t in S._batches(units[:10], 2, 4)] == [4, 4, 2]
    # cost ~ L m^2 a sample
    big, small = S._estimate("bfa", MLP(100, 400), 2, {}), S._estimate("bfa", MLP(100, 200), 2, {})
    assert 3 < big / small < 4


def test_single_task_runs_in_process():
    r = S.sweep("theory", {"depth": [4, 5], "width": [4]})
    assert r.stats["executor"] == "inline" and r.stats["tasks"] == 1


# -- spec files, results, bad inputs ------------------------------------------------------------
def test_spec_files(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('quantity = "bfa"\nseeds = [0, 2]\nsamples = 2\n[grid]\nfamily = ["MLP"]\n'
                    'depth = [4]\nwidth = [5, 6]\ntrained = [[2, 3]]\n[options]\nmode = "free"\n')
    spec = S.load_spec(toml)
    assert spec == {"quantity": "bfa", "grid": {"family": ["MLP"], "depth": [4], "width": [5, 6],
                    "trained": [[2, 3]]}, "seeds": [0, 2], "samples": 2, "options": {"mode": "free"}}
    js = tmp_path / "s.json"
    js.write_text(json.dumps(spec))
    assert S.load_spec(js) == spec
    a = S.sweep(**spec, executor="inline")
    fam = MLP(4, 6, trained=(2, 3))
    want = sample_bfa(fam, 2, point_seed(2, fam, "bfa-free"), "free").cos
    rows = (a.columns["width"] == 6) & (a.columns["seed"] == 2)
    assert want.reshape(-1).tobytes() == a.columns["cos"][rows].tobytes()
    assert set(a.columns["trained"]) == {"[2, 3]"}
    bad = {"x.toml": 'quantity = "bfa"\ngrid = 3\n', "y.toml": "quantity = [\n",
           "z.json": '{"quantity": "bfa", "grid": {"depth": [4], "width": [4]}, "sead": 1}',
           "w.json": '{"grid": {"depth": [4], "width": [4]}}',
           "v.json": '{"quantity": "bfa", "grid": {"depth": [4], "width": [4], "widht": [3]}}'}
    words = {"x.toml": ["x.toml", "grid must be a dict"], "y.toml": ["y.toml", "not valid TOML"],
             "z.json": ["z.json", "'sead'", "allowed"], "w.json": ["w.json", "'quantity'"],
             "v.json": ["v.json", "'widht'", "allowed keys"]}
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        assert_error_names(ValueError, words[name], S.load_spec, tmp_path / name)
    assert_error_names(ValueError, ["path", ".toml or .json"], S.load_spec, tmp_path / "s.yaml")
    assert_error_names(ValueError, ["cannot be read"], S.load_spec, tmp_path / "none.json")


def test_result_protocol(tmp_path, reference):
    d = reference.to_dict()
    json.dumps(d)
    assert d["quantity"] == "bfk" and d["failed"][0]["depth"] == 3
    assert repr(reference) == "SweepResult(quantity='bfk', units=8, rows=12, failed=4)"
    path = reference.to_csv(tmp_path / "t.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and float(rows[-1]["cos_kernel"]) == reference.columns["cos_kernel"][-1]
    pd = pytest.importorskip("pandas")
    df = reference.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 12 and list(df.columns) == list(reference.columns)


def test_to_pandas_without_pandas(monkeypatch, reference):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="needs pandas"):
        reference.to_pandas()


def test_bad_inputs_name_the_argument(tmp_path):
    g = {"depth": [4], "width": [4]}
    cases = [
        (ValueError, ["quantity", "'bfa'", "'nope'"], ("nope", g), {}),
        (TypeError, ["grid", "dict"], ("bfa", [4]), {}),
        (ValueError, ["'depht'", "allowed keys"], ("bfa", {"depht": [4], "width": [4]}), {}),
        (ValueError, ["grid['width']", "empty"], ("bfa", {"depth": [4], "width": []}), {}),
        (TypeError, ["grid['width']", "list of values"], ("bfa", {"depth": [4], "width": {4}}), {}),
        (ValueError, ["'depth'"], ("bfa", {"width": [4]}), {}),
        (ValueError, ["grid['family']", "'CNN'"], ("bfa", {**g, "family": ["CNN"]}), {}),
        (ValueError, ["branch_scale", "'c'"], ("bfa", {**g, "family": "ResNet"}), {}),
        (ValueError, ["'alpha'", "'c'"], ("bfa", {**g, "family": "ResNet", "alpha": 1}), {}),
        (ValueError, ["'c'", "no 'ResNet'"], ("bfa", {**g, "c": [1.0]}), {}),
        (ValueError, ["'width'", "options['widths']"], ("width_limit", g), {"options": {"widths": [4]}}),
        (ValueError, ["options['widths']"], ("width_limit", {"depth": [4]}), {}),
        (ValueError, ["'probs'", "'bfa'", "probes"], ("bfa", g), {"options": {"probs": 2}}),
        (ValueError, ["options['mode']", "'exact'", "'fre'"], ("bfa", g), {"options": {"mode": "fre"}}),
        (ValueError, ["options['probes']", ">= 1"], ("bfa", g), {"options": {"probes": 0}}),
        (TypeError, ["options", "dict"], ("bfa", g), {"options": 3}),
        (ValueError, ["seeds", ">= 0", "-1"], ("bfa", g), {"seeds": [-1]}),
        (TypeError, ["seeds", "True"], ("bfa", g), {"seeds": True}),
        (ValueError, ["seeds", "repeat"], ("bfa", g), {"seeds": [1, 1]}),
        (ValueError, ["samples", ">= 1"], ("bfa", g), {"samples": 0}),
        (ValueError, ["executor", "'inline'", "'local'"], ("bfa", g), {"executor": "local"}),
        (TypeError, ["executor", "Executor", "3"], ("bfa", g), {"executor": 3}),
        (ValueError, ["workers", ">= 1"], ("bfa", g), {"workers": 0}),
        (ValueError, ["workers", "inline"], ("bfa", g), {"executor": "inline", "workers": 2}),
        (ValueError, ["batch", ">= 1"], ("bfa", g), {"batch": 0}),
        (TypeError, ["progress", "'yes'"], ("bfa", g), {"progress": "yes"}),
        (ValueError, ["out=", "does not exist"], ("bfa", g), {"out": tmp_path / "no" / "x.csv"}),
        (ValueError, ["out", "folder"], ("bfa", g), {"out": tmp_path}),
        (TypeError, ["out", "path"], ("bfa", g), {"out": 3}),
    ]
    for exc, words, args, kw in cases:
        assert_error_names(exc, words, S.sweep, *args, **kw)


def test_dask_client_arguments(monkeypatch):
    assert_error_names(ValueError, ["address or workers"], lambda: S.dask_client("tcp://x:1", 2).__enter__())
    assert_error_names(ValueError, ["workers", ">= 1"], lambda: S.dask_client(workers=0).__enter__())
    assert_error_names(TypeError, ["address", "8786"], lambda: S.dask_client(8786).__enter__())
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert_error_names(ImportError, ["rmtalign[dask]"], lambda: S.dask_client().__enter__())
