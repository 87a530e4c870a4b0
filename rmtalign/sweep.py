"""Sweeps: a grid of families x seeds x samples, one quantity, on any executor.

:func:`sweep` computes a quantity (``"bfa"``, ``"bfk"``, ``"jacobian"``, ``"width_limit"``,
``"theory"``, ``"finite_width"``) at every point of a grid of family fields, and returns one tidy table
(:class:`SweepResult`, the package's result protocol). Every point is computed on its own and
seeded by its content (:func:`rmtalign.seeds.point_seed`), so the numbers of a point never depend
on the rest of the grid, on the batching, nor on the executor that ran it: in-process, a local
process pool (the default) or a Dask cluster (:func:`dask_client`) give bitwise identical tables.

The unit of work is a *point and a seed*; small units are batched into tasks of a fraction of a
second or more (by an estimate of their cost, ``~ L m^2`` a sample for the matrix-free samplers),
so that scheduling costs stay a few percent of the compute (``scripts/_bench_sweep.py``
measures it). Each unit has a content key (``point_key``: a hash of the family's canonical
fields, the quantity, its options, the samples and the seed); the output CSV is rewritten
atomically as units finish, and a rerun with the same output skips the units it already holds.

Processes, not threads: numba's ``workqueue`` threading layer (DESIGN.md) cannot serve two Python
threads at once, so parallel sweeps run in processes. An executor that runs several tasks in the
threads of one process (a ``ThreadPoolExecutor``, a Dask worker with ``nthreads > 1``) is safe,
because a process computes one task at a time, but gains nothing.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import hashlib
import itertools
import json
import logging
import math
import numbers
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import seeds as _seeds
from ._validate import check_choice, check_int, check_real
from .results import Result, json_ready, write_csv

__all__ = ["sweep", "SweepResult", "load_spec", "dask_client", "QUANTITIES", "GRID_KEYS"]

QUANTITIES = ("bfa", "bfk", "jacobian", "width_limit", "theory", "finite_width")

# Grid keys that only a ResNet has: an MLP point ignores them (its coordinate reads empty) and
# the points that differ only in them collapse into one.
_RESNET_KEYS = ("branch_scale", "skip_scale", "c", "alpha")
_FAMILY_KEYS = ("depth", "width", "in_dim", "out_dim", "activation", "weights", "hidden_std",
                "input_std", "output_std", "trained", "lr_rule", "input", "output_multiplier",
                "lr_values")
GRID_KEYS = ("family",) + _FAMILY_KEYS + _RESNET_KEYS

# Options each quantity accepts, with their defaults (filled in, so that a default given
# explicitly keys the same point as one left out; keys hold only the options that differ from
# these, so that an option added later leaves the keys of existing outputs alone). ``None``
# defaults mean "per point" (stop) or "the function's own default".
_BATCH_OPTIONS = ("inputs", "input_correlation")  # passed only when given (batches of inputs)
_REQUIRED = object()
_OPTIONS = {
    "bfa": {"mode": "exact", "probes": 8, "dtype": "float64", "inputs": 1,
            "input_correlation": None},
    "bfk": {"mode": "exact", "layers": None, "inputs": 1, "input_correlation": None},
    "jacobian": {"mode": "exact", "start": 1, "stop": None},
    "width_limit": {"widths": _REQUIRED, "quantity": "cos", "mode": "exact", "order": 1},
    "theory": {"mode": "exact"},
    "finite_width": {},
}
# The tidy columns of each quantity's result table: name -> "i" (integer) or "f" (float).
_COLUMNS = {
    "bfa": {"sample": "i", "layer": "i", "cos": "f", "angle_deg": "f", "b_norm": "f",
            "fdot_norm": "f", "loss_decay": "f", "sensitivity": "f"},
    "bfk": {"sample": "i", "layer": "i", "cos_spectrum": "f", "cos_kernel": "f",
            "lower_bound": "f"},
    "jacobian": {"sample": "i", "index": "i", "log_sq_singular_value": "f"},
    "width_limit": {"layer": "i", "width": "f", "mean": "f", "sem": "f"},
    "theory": {"layer": "i", "cos": "f", "angle_deg": "f", "cos_spectrum": "f", "m1": "f",
               "m2": "f", "m2b": "f"},
    "finite_width": {"layer": "i", "cos": "f", "cos_limit": "f", "c1": "f",
                     "cos_first_order": "f", "m1": "f", "m2": "f", "m1_limit": "f",
                     "m2_limit": "f", "m1_c1": "f", "m2_c1": "f", "m1_sd": "f", "m1_typical": "f",
                     "c1_se": "f", "m1_c1_se": "f", "m2_c1_se": "f"},
}
_INVALID = "ValueError: invalid combination: "  # the error of a point whose family is invalid
_UNSEEDED = ("theory", "finite_width")  # deterministic: one unit per point, no seed or sample

# Task sizes, in estimated seconds of compute: at least _MIN_TASK_S so that the per-task cost
# of an executor (0.1-1 ms for a process pool, a few ms for Dask) stays well under 1%; about
# 1/_TASKS_PER_WORKER of a worker's share so that the last tasks balance the load.
_MIN_TASK_S = 0.3
_MAX_TASK_S = 5.0
_TASKS_PER_WORKER = 16
# The output is rewritten at most once per this many seconds, and never more often than 50x its
# own writing time (a 10^5-row table takes about a second to write).
_WRITE_EVERY_S = 1.0
_WRITE_SHARE = 50.0


# -- the plan: points, units, keys ----------------------------------------------------------------
@dataclass
class _Unit:
    """One point and one seed: what a task computes, keyed by its content."""

    point: int                 # index into _Plan.coords
    seed: int | None
    key: str
    family: object             # a Family, or None for an invalid combination
    error: str | None = None   # why the combination is invalid
    cost: float = 0.0          # estimated seconds


@dataclass
class _Plan:
    quantity: str
    grid: dict
    seeds: tuple
    samples: list
    options: dict
    coords: list               # one dict per point (ResNet-only keys None on MLP points)
    coord_columns: tuple
    units: list


def _values(key, values):
    """The list of values of ``grid[key]`` (a scalar stands for a one-value list)."""
    if isinstance(values, (list, tuple)):
        if not values:
            raise ValueError(f"grid[{key!r}] must hold at least one value, got an empty list")
        return list(values)
    if isinstance(values, np.ndarray):
        return _values(key, values.tolist())
    if values is None or isinstance(values, (str, numbers.Number)):
        return [values]
    raise TypeError(f"grid[{key!r}] must be a list of values (or one value), got {values!r} "
                    f"({type(values).__name__})")


def _check_grid(grid, quantity):
    if not isinstance(grid, dict):
        raise TypeError(f"grid must be a dict of family fields -> lists of values, got {grid!r} "
                        f"({type(grid).__name__})")
    unknown = [k for k in grid if k not in GRID_KEYS]
    if unknown:
        raise ValueError(f"grid has unknown key {unknown[0]!r}; allowed keys: "
                         f"{', '.join(GRID_KEYS)}")
    vals = {k: _values(k, v) for k, v in grid.items()}
    kinds = vals.setdefault("family", ["MLP"])
    for k in kinds:
        if k not in ("MLP", "ResNet"):
            raise ValueError(f"grid['family'] values must be 'MLP' or 'ResNet'; got {k!r}")
    needed = ("depth",) if quantity == "width_limit" else ("depth", "width")
    for k in needed:
        if k not in vals:
            raise ValueError(f"grid needs the key {k!r} (a list of values)")
    if quantity == "width_limit" and "width" in vals:
        raise ValueError("grid must not hold 'width' for quantity='width_limit': its widths are "
                         "options['widths']")
    if "ResNet" in kinds:
        if "branch_scale" in vals and ("c" in vals or "alpha" in vals):
            raise ValueError("grid gives a ResNet's branch scale twice: use either 'branch_scale' "
                             "or 'c' (and 'alpha', beta = c depth^-alpha), not both")
        if "alpha" in vals and "c" not in vals:
            raise ValueError("grid has 'alpha' without 'c': beta = c depth^-alpha needs both "
                             "('alpha' defaults to 0.5)")
        if "branch_scale" not in vals and "c" not in vals:
            raise ValueError("grid has ResNet points but neither 'branch_scale' nor 'c' "
                             "(beta = c depth^-alpha) for them")
    elif any(k in vals for k in _RESNET_KEYS):
        k = next(k for k in _RESNET_KEYS if k in vals)
        raise ValueError(f"grid has the ResNet key {k!r} but grid['family'] has no 'ResNet'")
    return vals


def _check_options(quantity, options):
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict of keyword arguments, got {options!r} "
                        f"({type(options).__name__})")
    allowed = _OPTIONS[quantity]
    for k in options:
        if k not in allowed:
            raise ValueError(f"options has {k!r}, which quantity={quantity!r} does not take; "
                             f"allowed: {', '.join(allowed) or 'none'}")
    opts = {}
    for k, default in allowed.items():
        v = options.get(k, default)
        if v is _REQUIRED:
            raise ValueError(f"quantity={quantity!r} needs options[{k!r}]")
        opts[k] = _canonical_option(k, v)
    return opts


def _canonical_option(name, v):
    """The option in a JSON-stable form (it is part of every point's key)."""
    label = f"options[{name!r}]"
    if name == "mode":
        return check_choice(label, v, ("exact", "free"))
    if name == "quantity":
        return check_choice(label, v, ("cos", "angle_deg", "b_norm", "fdot_norm", "loss_decay",
                                       "sensitivity"))
    if name == "dtype":
        try:
            dt = np.dtype(v).name
        except TypeError:
            dt = None
        if dt not in ("float64", "float32"):
            raise ValueError(f"{label} must be float64 or float32, got {v!r}")
        return dt
    if name == "input_correlation":
        return check_real(label, v, low=-1.0, high=1.0, allow_none=True)
    if name in ("probes", "start", "inputs"):
        return check_int(label, v, 1)
    if name == "order":
        return check_int(label, v, 1, 2)
    if name == "stop":
        return None if v is None else check_int(label, v, 2)
    if name in ("layers", "widths"):
        if v is None and name == "layers":
            return None
        seq = [v] if isinstance(v, numbers.Integral) else v
        if not isinstance(seq, (list, tuple, np.ndarray)) or len(seq) == 0:
            raise ValueError(f"{label} must be a non-empty list of integers, got {v!r}")
        out = sorted({check_int(f"{label} entry", x, 1) for x in seq})
        return out
    raise AssertionError(name)  # pragma: no cover - every option of _OPTIONS is handled


def _check_seeds(seeds):
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, (list, tuple, range, np.ndarray)) or len(seeds) == 0:
        raise TypeError(f"seeds must be a non-empty list of non-negative integers, got {seeds!r}")
    out = [check_int("seeds entry", s, 0) for s in seeds]
    if len(set(out)) != len(out):
        raise ValueError(f"seeds must not repeat a seed, got {list(seeds)!r}")
    return tuple(out)


def _check_samples(samples):
    try:
        return [int(i) for i in _seeds.resolve_samples(samples)]
    except (TypeError, ValueError) as err:
        raise type(err)(f"{err} (the sweep's samples)") from None


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _build_family(coord, width):
    """The family at one point's coordinates (raises the family's own error when invalid)."""
    from .families import MLP, ResNet

    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in coord.items()
          if k in _FAMILY_KEYS}
    if width is not None:
        kw["width"] = width
    if coord["family"] == "MLP":
        return MLP(**kw)
    depth, w = kw.pop("depth"), kw.pop("width")
    if coord.get("c") is not None:
        alpha = coord.get("alpha")
        return ResNet.scaled(depth, w, coord["c"], 0.5 if alpha is None else alpha,
                             skip_scale=coord.get("skip_scale"), **kw)
    return ResNet(depth, w, coord["branch_scale"], skip_scale=coord.get("skip_scale"), **kw)


def _estimate(quantity, family, n, opts) -> float:
    """Rough seconds of compute of one unit (a few ms of Python a sample, plus the flops)."""
    from .families import ResNet

    L, m = family.depth, family.width
    if quantity == "theory":
        return 1e-3 + 2e-6 * L
    if quantity == "finite_width":
        if isinstance(family, ResNet) and family.activation == "relu":   # probe neurons (cos, M1, M2)
            return 600.0 if family.weights == "orthogonal" else 400.0
        return 1e-3 * L
    if quantity == "bfa":
        return n * (3e-3 + 5e-9 * L * m * m)
    if quantity == "bfk":
        return n * (3e-3 + 1e-10 * L * m**3 + 2e-9 * m**3)
    if quantity == "jacobian":
        return n * (3e-3 + 3e-10 * L * m**3)
    return sum(n * (3e-3 + 5e-9 * L * w * w) for w in opts["widths"])


def _plan(quantity, grid, seeds, samples, options) -> _Plan:
    """Validate a sweep's arguments and lay out its units (no computing)."""
    check_choice("quantity", quantity, QUANTITIES)
    vals = _check_grid(grid, quantity)
    opts = _check_options(quantity, options)
    seeds = _check_seeds(seeds)
    samples = _check_samples(samples)
    order = ["family"] + [k for k in vals if k != "family"]
    width = opts["widths"][0] if quantity == "width_limit" else None

    coords, fams, seen = [], [], set()
    for combo in itertools.product(*(vals[k] for k in order)):
        coord = dict(zip(order, combo))
        if coord["family"] == "MLP":
            coord.update({k: None for k in _RESNET_KEYS if k in coord})
        ident = repr(tuple(coord.values()))  # the keys are in `order`
        if ident in seen:  # an MLP point repeated along ResNet-only keys
            continue
        seen.add(ident)
        try:
            fam, err = _build_family(coord, width), None
        except (TypeError, ValueError) as e:
            fam, err = None, str(e)
        coords.append(coord)
        fams.append((fam, err))
    _check_invalid(order, coords, fams)

    cols = tuple(order)
    if "c" in vals and "branch_scale" not in vals:
        cols += ("branch_scale",)  # derived: beta = c depth^-alpha, what a plot needs
        for coord, (fam, _) in zip(coords, fams):
            coord["branch_scale"] = None if fam is None else fam.branch_scale
    unit_seeds = (None,) if quantity in _UNSEEDED else seeds
    n = len(samples)
    key_opts = {k: v for k, v in opts.items() if v != _OPTIONS[quantity][k]}
    units = []
    for i, (coord, (fam, err)) in enumerate(zip(coords, fams)):
        for s in unit_seeds:
            content = fam.to_dict() if fam is not None else {"invalid": coord}
            key = _digest([content, quantity, key_opts, None if s is None else samples, s])
            units.append(_Unit(i, s, key, fam, err,
                               0.0 if fam is None else _estimate(quantity, fam, n, opts)))
    return _Plan(quantity, {k: vals[k] for k in order}, seeds, samples, opts, coords, cols, units)


def _check_invalid(order, coords, fams):
    """A value that makes every point holding it invalid is a bad value (ValueError naming it);
    the remaining invalid points are combinations, recorded as failed (with a warning)."""
    bad = [i for i, (f, _) in enumerate(fams) if f is None]
    if not bad:
        return
    # "family" last: a ResNet invalid at every point is the fault of its c or branch_scale.
    for k in [k for k in order if k != "family"] + ["family"]:
        by_value = {}
        for coord, (f, err) in zip(coords, fams):
            v = json.dumps(coord.get(k), default=str)
            if coord.get(k) is not None or k == "family":
                ok, first = by_value.get(v, (False, None))
                by_value[v] = (ok or f is not None, first or err)
        for v, (ok, err) in by_value.items():
            if not ok:
                raise ValueError(f"grid[{k!r}] value {json.loads(v)!r} is invalid at every point: "
                                 f"{err}")
    c = coords[bad[0]]
    warnings.warn(f"{len(bad)} of {len(coords)} grid points are invalid combinations, recorded as "
                  f"failed (SweepResult.failed): e.g. {c}: {fams[bad[0]][1]}", UserWarning,
                  stacklevel=4)


# -- the work: one task computes a batch of units ----------------------------------------------
_COMPUTE = threading.Lock()  # numba's workqueue serves one launching thread per process
_PINNED = {"threads": None}


def _pin(threads):
    """numba and BLAS on ``threads`` threads in this process (None: leave them)."""
    if isinstance(threads, dict):  # Dask: per worker address
        try:
            from distributed import get_worker

            threads = threads.get(get_worker().address)
        except (ImportError, ValueError):
            threads = None
    if threads is None:
        return
    import numba

    from ._runtime import configure_numba

    configure_numba()  # before set_num_threads launches numba's pool with some other layer
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    if _PINNED["threads"] != threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
        _PINNED["threads"] = threads


def _pin_process(threads):
    """Process-pool initializer: this worker's numba and BLAS thread counts.

    Not through NUMBA_NUM_THREADS: numba is imported by then (unpickling this function imports
    rmtalign), and once its pool runs, a compilation that rereads a changed variable raises."""
    _pin(threads)


def _compute(quantity, family, samples, seed, opts):
    """The result of one unit (the quantity's own result object)."""
    if quantity == "theory":
        from .theory import bfa

        return bfa(family, opts["mode"])
    if quantity == "finite_width":
        from .theory import finite_width

        return finite_width(family, progress=False)
    from . import sampling

    if quantity == "width_limit":
        # width_limit seeds each width by its content itself (the same seeds as a "bfa" sweep).
        return sampling.width_limit(family, opts["widths"], opts["quantity"], samples, seed,
                                    opts["mode"], opts["order"], progress=False)
    # bfa, bfk and jacobian sample the same draws of a point (same family, mode, seed, sample):
    # a bfk sweep's cos_kernel is the bfa sweep's cos.
    seed = _seeds.point_seed(seed, family, f"bfa-{opts['mode']}")
    batch = {k: opts[k] for k in _BATCH_OPTIONS if k in opts and opts[k] != _OPTIONS[quantity][k]}
    if quantity == "bfa":
        return sampling.sample_bfa(family, samples, seed, opts["mode"], opts["dtype"],
                                   probes=opts["probes"], progress=False, **batch)
    if quantity == "bfk":
        return sampling.sample_bfk(family, opts["layers"], samples, seed, opts["mode"],
                                   progress=False, **batch)
    stop = family.depth - 1 if opts["stop"] is None else opts["stop"]
    return sampling.sample_jacobian(family, opts["start"], stop, samples, seed, opts["mode"],
                                    progress=False)


def _error_text(err) -> str:
    return f"{type(err).__name__}: {err}".replace("\n", " ")


def _run_task(task):
    """Compute a batch of units: ``task = (quantity, samples, options, threads, units)`` with
    units ``(key, family, seed)``. Returns each unit's table or error, and timings."""
    quantity, samples, opts, threads, units = task
    with _COMPUTE:
        cpu0, t_task = time.process_time(), time.perf_counter()
        _pin(threads)
        tables, rows, errors, compute_s, compute_cpu = [], [], [], 0.0, 0.0
        for _, family, seed in units:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                table, err = _compute(quantity, family, samples, seed, opts).to_table(), None
                tables.append(table)
            except Exception as e:  # noqa: BLE001 - a failed point is recorded, not raised
                table, err = None, _error_text(e)
            compute_s += time.perf_counter() - t0
            compute_cpu += time.process_time() - c0
            rows.append(0 if table is None else len(next(iter(table.values()))))
            errors.append(err)
        # one array a column for the whole task: a few large pickles instead of many small ones
        columns = {c: np.concatenate([t[c] for t in tables]) for c in tables[0]} if tables else {}
        return {"keys": [u[0] for u in units], "rows": rows, "errors": errors, "columns": columns,
                "pid": os.getpid(), "cpu_start": cpu0, "cpu_end": time.process_time(),
                "task_s": time.perf_counter() - t_task, "compute_s": compute_s,
                "compute_cpu_s": compute_cpu}


def _unpack(res):
    """``(key, table or error)`` of each unit of a task's result (tables are views)."""
    at = 0
    for key, n, err in zip(res["keys"], res["rows"], res["errors"]):
        if err is not None:
            yield key, err
        else:
            yield key, {c: v[at:at + n] for c, v in res["columns"].items()}
            at += n


# -- executors ----------------------------------------------------------------------------------
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _is_dask_client(obj) -> bool:
    mod = sys.modules.get("distributed")
    return mod is not None and isinstance(obj, mod.Client)


def _dask_threads(client) -> dict:
    """Threads per task on each Dask worker: the cores of its host shared by the host's worker
    threads (one numba/BLAS thread unless the host has cores to spare)."""
    try:
        info = client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:  # distributed < 2025: every worker is listed by default
        info = client.scheduler_info()["workers"]
    cores = client.run(_cores)
    per_host = {}
    for w in info.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + w["nthreads"]
    return {a: max(1, cores.get(a, 1) // max(1, per_host[w["host"]])) for a, w in info.items()}


@contextlib.contextmanager
def _open_executor(executor, workers, count_tasks):
    """``(executor or None for in-process, parallelism, threads for tasks, kind)``;
    ``count_tasks(parallelism)`` is the number of tasks the sweep would run."""
    if executor is None:
        n = _cores() if workers is None else workers
        if count_tasks(n) <= 1:  # not worth starting processes
            yield None, 1, None, "inline"
            return
        threads = max(1, _cores() // n)
        import multiprocessing

        # spawn: a fresh interpreter per worker (forking a process whose numba/OpenMP/BLAS
        # pools are running can deadlock the child).
        pool = cf.ProcessPoolExecutor(max_workers=n,
                                      mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_pin_process, initargs=(threads,))
        try:
            yield pool, n, None, "processes"
        except BaseException:
            # Ctrl-C or an error in the parent: stop now, not when the running tasks end (what
            # finished is already recorded).
            procs = list((getattr(pool, "_processes", None) or {}).values())  # gone on shutdown
            for proc in procs:
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return
    if isinstance(executor, str):
        check_choice("executor", executor, ("inline",))
        yield None, 1, None, "inline"
        return
    if _is_dask_client(executor):
        n = workers or max(1, sum(executor.nthreads().values()))
        yield executor.get_executor(pure=False), n, _dask_threads(executor), "dask"
        return
    if isinstance(executor, cf.Executor):
        n = workers or getattr(executor, "_max_workers", None) or _cores()
        # a process pool's workers are ours to pin; a thread pool's threads share the caller's
        # process, whose settings are the user's
        threads = max(1, _cores() // n) if isinstance(executor, cf.ProcessPoolExecutor) else None
        yield executor, n, threads, type(executor).__name__
        return
    raise TypeError(f"executor must be None (a local process pool), 'inline', a "
                    f"concurrent.futures.Executor or a distributed.Client; got {executor!r} "
                    f"({type(executor).__name__})")


def _batches(units, parallel, batch):
    """Consecutive units grouped into tasks (by count ``batch``, or by estimated cost)."""
    if batch is not None:
        return [units[i:i + batch] for i in range(0, len(units), batch)]
    total = sum(u.cost for u in units)
    target = min(max(total / (_TASKS_PER_WORKER * parallel), _MIN_TASK_S), _MAX_TASK_S)
    out, cur, acc = [], [], 0.0
    for u in units:
        cur.append(u)
        acc += u.cost
        if acc >= target:
            out.append(cur)
            cur, acc = [], 0.0
    if cur:
        out.append(cur)
    return out


def _completed(ex, tasks):
    """Yield ``(task units, result or None, error or None)`` as tasks finish."""
    if ex is None:
        for units, payload in tasks:
            try:
                yield units, _run_task(payload), None
            except Exception as err:  # noqa: BLE001 - e.g. a payload that does not run at all
                yield units, None, err
        return
    futures = {}
    try:
        for units, payload in tasks:
            futures[ex.submit(_run_task, payload)] = units
        for fut in cf.as_completed(futures):
            units = futures.pop(fut)
            try:
                yield units, fut.result(), None
            except Exception as err:  # noqa: BLE001 - a dead worker fails its tasks only
                yield units, None, err
    finally:
        for fut in futures:
            fut.cancel()


# -- the result -------------------------------------------------------------------------------
@dataclass(repr=False)
class SweepResult(Result):
    """The table of a :func:`sweep`: one row per (point, seed, sample, layer).

    ``columns`` holds the tidy table (:meth:`to_table`): the grid's coordinates (``family``, then
    the grid's keys in order; ResNet-only keys are empty on MLP points; ``branch_scale`` is added
    when the grid gives ``c``), ``seed`` (not for ``"theory"``), the quantity's own columns (e.g.
    ``sample, layer, cos, ...`` for ``"bfa"``; ``sample, index, log_sq_singular_value`` for
    ``"jacobian"``), ``error`` (empty, or the error of a failed point, on one row of its own) and
    ``point_key`` (the unit's content key, by which a rerun resumes). When some points failed,
    the integer columns of the quantity are floats, NaN on the failed rows.

    ``failed`` lists the failed units (their coordinates, seed, key and error); ``stats`` counts
    units, tasks, resumed and computed units, and times (``compute_s``, ``wall_s``, CPU seconds
    of the parent and the workers).
    """

    quantity: str
    grid: dict
    seeds: tuple
    samples: list
    options: dict
    columns: dict
    failed: list
    stats: dict = field(default_factory=dict)

    def _table(self):
        return self.columns

    def to_pandas(self):
        """The table as a ``pandas.DataFrame`` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("SweepResult.to_pandas needs pandas, which is not installed "
                              "(pip install pandas)") from None
        return pd.DataFrame(self.to_table())

    def __repr__(self) -> str:
        rows = len(next(iter(self.columns.values()))) if self.columns else 0
        return (f"SweepResult(quantity={self.quantity!r}, units={self.stats.get('units')}, "
                f"rows={rows}, failed={len(self.failed)})")


def _coord_column(values):
    """A coordinate column: ints, floats (NaN where not applicable), strings ('' where not
    applicable) or JSON text (sequences, mixed types)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                       for v in present):
        if len(present) == len(values):
            return np.asarray(values, dtype=np.int64)
        return np.asarray([np.nan if v is None else v for v in values], dtype=float)
    if present and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        return np.asarray([np.nan if v is None else v for v in values], dtype=float)
    if all(isinstance(v, str) for v in present):
        return np.asarray(["" if v is None else v for v in values], dtype=str)
    return np.asarray([v if isinstance(v, str) else ("" if v is None else json.dumps(v))
                       for v in values], dtype=str)


def _assemble(plan, store):
    """The table of the finished units (plan order: independent of who finished first) and the
    list of failed ones."""
    qcols = _COLUMNS[plan.quantity]
    seeded = plan.quantity not in _UNSEEDED
    counts, pieces, failed, rows_units = [], {c: [] for c in qcols}, [], []
    for u in plan.units:
        got = store.get(u.key)
        if got is None:
            continue
        rows_units.append(u)
        if isinstance(got, str):
            counts.append(1)
            failed.append(u)
            for c in qcols:
                pieces[c].append(None)
        else:
            n = len(next(iter(got.values())))
            counts.append(n)
            for c in qcols:
                pieces[c].append(got[c])
    counts = np.asarray(counts, dtype=np.int64)
    cols = {}
    for name in plan.coord_columns:
        cols[name] = np.repeat(_coord_column([plan.coords[u.point].get(name) for u in rows_units]),
                               counts)
    if seeded:
        cols["seed"] = np.repeat(np.asarray([u.seed for u in rows_units], dtype=np.int64), counts)
    for c, kind in qcols.items():
        parts = pieces[c]
        if failed:
            parts = [np.full(1, np.nan) if p is None else np.asarray(p, dtype=float) for p in parts]
        cols[c] = (np.concatenate(parts) if parts
                   else np.empty(0, dtype=np.int64 if kind == "i" else float))
    errors = [store[u.key] if isinstance(store[u.key], str) else "" for u in rows_units]
    cols["error"] = np.repeat(np.asarray(errors, dtype=str), counts) if errors else np.empty(0, str)
    cols["point_key"] = (np.repeat(np.asarray([u.key for u in rows_units], dtype=str), counts)
                         if rows_units else np.empty(0, str))
    fails = []
    for u in failed:
        rec = {k: plan.coords[u.point].get(k) for k in plan.coord_columns}
        if seeded:
            rec["seed"] = u.seed
        rec.update(point_key=u.key, error=store[u.key])
        fails.append(rec)
    return cols, fails


# -- the output file ----------------------------------------------------------------------------
def _check_out(out):
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path (str or os.PathLike) or None, got {out!r}")
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"out must be a CSV file path, got the folder {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"out={str(path)!r}: its folder {str(path.parent)!r} does not exist")
    return path


def _read_out(path, plan) -> dict:
    """The finished units of an earlier run of the same sweep in ``path`` (failed ones are
    computed again). Raises ValueError when the file holds another sweep."""
    qcols = _COLUMNS[plan.quantity]
    known = {u.key for u in plan.units}
    store = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return store
        missing = [c for c in ("point_key", "error", *qcols) if c not in header]
        if missing:
            raise ValueError(f"out={str(path)!r} exists and is not the output of a "
                             f"{plan.quantity!r} sweep (no column {missing[0]!r}): choose another "
                             "path or remove the file")
        at = {c: header.index(c) for c in ("point_key", "error", *qcols)}
        rows, done = {}, set()
        prev = None
        for row in reader:
            if len(row) != len(header):
                raise ValueError(f"out={str(path)!r}: a row has {len(row)} cells, the header "
                                 f"{len(header)}: not a file this sweep wrote")
            key = row[at["point_key"]]
            if key not in known:
                raise ValueError(f"out={str(path)!r} holds points of another sweep (point_key "
                                 f"{key!r} is not a point of this grid, quantity, options, "
                                 "samples and seeds): choose another path or remove the file")
            if key != prev and key in rows:
                done.add(key)  # a point listed twice (same content at two coordinates)
            prev = key
            if row[at["error"]] or key in done:
                continue
            rows.setdefault(key, []).append(row)
    for key, rs in rows.items():
        table = {}
        for c, kind in qcols.items():
            cells = [r[at[c]] for r in rs]
            if kind == "i":
                table[c] = np.asarray([int(float(x)) for x in cells], dtype=np.int64)
            else:
                table[c] = np.asarray([float(x) if x else np.nan for x in cells], dtype=float)
        store[key] = table
    return store


# -- the sweep ----------------------------------------------------------------------------------
def sweep(quantity, grid, *, seeds=(0,), samples=1, options=None, executor=None, workers=None,
          out=None, progress=None, batch=None) -> SweepResult:
    """Compute ``quantity`` at every point of ``grid`` x ``seeds``; one tidy table.

    Parameters
    ----------
    quantity : {"bfa", "bfk", "jacobian", "width_limit", "theory", "finite_width"}
        :func:`rmtalign.sample_bfa`, :func:`rmtalign.sample_bfk`, :func:`rmtalign.sample_jacobian`
        (``df_stop/df_start``, by default ``start = 1, stop = L-1``), :func:`rmtalign.width_limit`,
        the width-limit curve :func:`rmtalign.theory.bfa` or the finite-width one
        :func:`rmtalign.theory.finite_width` (these two are deterministic: no seeds, no samples;
        a family finite_width does not cover is a failed point).
    grid : dict
        Family fields -> lists of values; the sweep runs their Cartesian product (a single value
        stands for a one-value list; a sequence-valued field such as ``trained`` is given as a
        list of lists). Keys: ``"family"`` (``"MLP"``, ``"ResNet"``; default ``["MLP"]``), the
        fields of :class:`rmtalign.Family` (``depth`` and ``width`` required; no ``width`` for
        ``"width_limit"``, whose widths are ``options["widths"]``), and for ResNets
        ``branch_scale`` or ``c`` and ``alpha`` (``beta = c depth^-alpha``,
        :meth:`rmtalign.ResNet.scaled`; ``alpha`` defaults to 0.5), and ``skip_scale``.
        ResNet-only keys do not apply to MLP points, which appear once with those coordinates
        empty. A value invalid at every point (``depth=2``) is a ValueError; a combination that
        is invalid (``c`` too large for one depth) is recorded as a failed point, with a warning.
    seeds : int or sequence of int
        User seeds; each point is computed once per seed, seeded by
        :func:`rmtalign.seeds.point_seed` of the seed and its family (tag ``f"bfa-{mode}"``: the
        ``bfa``, ``bfk`` and ``jacobian`` sweeps of a point sample the same networks).
    samples : int or sequence of int
        Samples per point and seed (count or indices), as in the samplers (for ``"width_limit"``:
        per width).
    options : dict, optional
        Keyword arguments of the quantity: ``mode`` (all), ``probes``, ``dtype`` (``"bfa"``),
        ``layers`` (``"bfk"``), ``inputs`` (a count) and ``input_correlation`` (both),
        ``start``, ``stop`` (``"jacobian"``), ``widths`` (required), ``quantity``, ``order``
        (``"width_limit"``).
    executor : None, "inline", concurrent.futures.Executor or distributed.Client
        None: a local process pool of ``workers`` processes (default: the usable cores), each
        pinned to ``cores // workers`` numba and BLAS threads; a sweep of one task runs
        in-process. ``"inline"``: in this process. An Executor or a Dask client (its executor;
        see :func:`dask_client`) is used as given and not shut down.
    workers : int, optional
        Size of the local pool; with a given executor, the parallelism the batching plans for
        (default: what the executor reports).
    out : path, optional
        A CSV file, rewritten atomically (never half-written) as units finish and at the end. If
        it exists, a rerun resumes from it: units it holds are not computed again (failed ones
        are). A file of another sweep is a ValueError.
    progress : bool or None
        A progress bar on stderr, counting points, its ETA by estimated cost (``~ L m^2`` a
        sample for ``"bfa"``). None: for long sweeps on a terminal.
    batch : int, optional
        Units (point x seed) per task; default: by estimated cost, tasks of at least 0.3 s and
        about 1/16 of a worker's share, so that scheduling stays a few percent of the compute.

    Returns
    -------
    SweepResult
        Rows in grid order (the product in the order of ``grid``'s keys, then seeds), whatever
        order the points finished in: any executor gives the same table, bit for bit.

    Notes
    -----
    The process pool starts workers with ``spawn``: a script that calls :func:`sweep` at top level
    needs the usual ``if __name__ == "__main__":`` guard. A failed point (an exception in its
    computation, or a worker that died) is recorded with its error and does not stop the others.
    """
    from ._runtime import progress as _progress

    t_wall, cpu_parent = time.perf_counter(), time.process_time()  # planning is overhead too
    plan = _plan(quantity, grid, seeds, samples, options)
    if workers is not None:
        workers = check_int("workers", workers, 1)
    if batch is not None:
        batch = check_int("batch", batch, 1)
    if progress not in (None, True, False):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if isinstance(executor, str):
        check_choice("executor", executor, ("inline",))
        if workers not in (None, 1):
            raise ValueError(f"workers must be 1 (or None) with executor='inline', got {workers!r}")
    path = _check_out(out)

    try:
        store = _read_out(path, plan) if path is not None and path.exists() else {}
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"out={str(path)!r} exists and is not a CSV file this sweep wrote "
                         f"({err}): choose another path or remove the file") from None
    resumed = len(store)
    todo, queued = [], set()
    for u in plan.units:
        if u.key in store or u.key in queued:
            continue
        if u.family is None:
            store[u.key] = f"{_INVALID}{u.error}"
            continue
        queued.add(u.key)
        todo.append(u)

    stats = {"points": len(plan.coords), "units": len(plan.units), "resumed": resumed,
             "computed": 0, "tasks": 0, "compute_s": 0.0, "compute_cpu_s": 0.0, "task_s": 0.0}
    units_per_key = {}
    for u in plan.units:
        units_per_key[u.key] = units_per_key.get(u.key, 0) + 1
    total_cost = sum(u.cost for u in todo) or 1.0
    bar = _progress(total_cost, progress, "sweep", total_cost * 1e9)
    if bar is not None:
        bar.bar_format = "{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]"
    npoints_done = sum(1 for u in plan.units if u.key in store)
    last_write, write_s = time.perf_counter(), 0.0
    cpu_spans = {}

    def write(final=False):
        nonlocal last_write, write_s
        if path is None:
            return
        now = time.perf_counter()
        if not final and now - last_write < max(_WRITE_EVERY_S, _WRITE_SHARE * write_s):
            return
        write_csv(path, _assemble(plan, store)[0])
        last_write = time.perf_counter()
        write_s = last_write - now

    try:
        count = lambda n: len(_batches(todo, n, batch))  # noqa: E731
        with _open_executor(executor, workers, count) as (ex, parallel, threads, kind):
            stats.update(executor=kind, parallel=parallel)
            tasks = _batches(todo, parallel, batch)
            tasks.sort(key=lambda t: -sum(u.cost for u in t))  # longest first: balanced tail
            stats["tasks"] = len(tasks)
            payloads = [(t, (plan.quantity, plan.samples, plan.options, threads,
                             [(u.key, u.family, u.seed) for u in t])) for t in tasks]
            for units, res, err in _completed(ex, payloads):
                if err is not None:
                    for u in units:
                        store[u.key] = f"task failed: {_error_text(err)}"
                else:
                    for key, got in _unpack(res):
                        store[key] = got
                        stats["computed"] += not isinstance(got, str)
                    for k in ("compute_s", "compute_cpu_s", "task_s"):
                        stats[k] += res[k]
                    lo, hi = cpu_spans.get(res["pid"], (math.inf, 0.0))
                    cpu_spans[res["pid"]] = (min(lo, res["cpu_start"]), max(hi, res["cpu_end"]))
                npoints_done += sum(units_per_key[u.key] for u in units)
                if bar is not None:
                    bar.set_postfix_str(f"{npoints_done}/{len(plan.units)} points", refresh=False)
                    bar.update(sum(u.cost for u in units))
                write()
    finally:
        if bar is not None:
            bar.close()
        write(final=True)  # whatever finished, also on Ctrl-C or an error

    columns, failed = _assemble(plan, store)
    stats.update(failed=len(failed), wall_s=time.perf_counter() - t_wall,
                 parent_cpu_s=time.process_time() - cpu_parent, write_s=write_s,
                 worker_cpu_s=sum(hi - lo for lo, hi in cpu_spans.values()))
    broke = [f for f in failed if not f["error"].startswith(_INVALID)]
    if broke:  # invalid combinations were reported when planning
        warnings.warn(f"{len(broke)} of {len(plan.units)} sweep points failed (see "
                      f"SweepResult.failed): e.g. {broke[0]['error']}", UserWarning, stacklevel=2)
    return SweepResult(plan.quantity, json_ready(plan.grid), plan.seeds, plan.samples,
                       plan.options, columns, failed, stats)


# -- spec files ---------------------------------------------------------------------------------
_SPEC_KEYS = ("quantity", "grid", "seeds", "samples", "options")


def load_spec(path) -> dict:
    """A sweep's arguments from a TOML or JSON file: ``sweep(**load_spec(path))`` runs it.

    The file holds ``quantity`` and ``grid`` (required), ``seeds``, ``samples`` and ``options``
    (optional), e.g. in TOML::

        quantity = "bfa"
        seeds = [0, 1]
        samples = 4
        [grid]
        family = ["MLP", "ResNet"]
        depth = [8, 16, 32]
        width = [64]
        c = [1.0]
        [options]
        mode = "exact"

    The spec is checked as :func:`sweep` would check it (a ValueError names the file and the
    key); nothing is computed.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {path!r}")
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"path must be a .toml or .json file, got {str(p)!r}")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ValueError(f"path={str(p)!r} cannot be read: {err.strerror or err}") from None
    try:
        if suffix == ".toml":
            spec = _toml().loads(raw.decode())
        else:
            spec = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:  # TOMLDecodeError, JSONDecodeError
        raise ValueError(f"{str(p)!r} is not valid {suffix[1:].upper()}: {err}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{str(p)!r} must hold a table of {', '.join(_SPEC_KEYS)}")
    for k in spec:
        if k not in _SPEC_KEYS:
            raise ValueError(f"{str(p)!r} has the unknown key {k!r}; allowed: "
                             f"{', '.join(_SPEC_KEYS)}")
    for k in ("quantity", "grid"):
        if k not in spec:
            raise ValueError(f"{str(p)!r} needs the key {k!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid combinations warn again when it runs
            _plan(spec["quantity"], spec["grid"], spec.get("seeds", (0,)), spec.get("samples", 1),
                  spec.get("options"))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{str(p)!r}: {err}") from None
    return {k: spec[k] for k in _SPEC_KEYS if k in spec}


def _toml():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ImportError("TOML sweep specs need Python >= 3.11 or the tomli package; "
                              "or give the spec as JSON") from None
    return tomllib


# -- Dask -----------------------------------------------------------------------------------------
@contextlib.contextmanager
def dask_client(address=None, workers=None):
    """A ``distributed.Client`` for :func:`sweep`'s ``executor``, closed on exit.

    ``address``: a running scheduler (``"tcp://host:8786"``). Otherwise a new
    ``LocalCluster`` of ``workers`` processes (default: the usable cores) with one thread each,
    on the loopback interface (``127.0.0.1``), closed on exit. Needs the ``dask`` extra
    (``pip install "rmtalign[dask]"``).
    """
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a scheduler address string or None, got {address!r}")
    if workers is not None:
        workers = check_int("workers", workers, 1)
        if address is not None:
            raise ValueError("workers sizes a new local cluster; give address or workers, not both")
    try:
        import distributed
    except ImportError:
        raise ImportError("dask_client needs dask.distributed, which is not installed: "
                          'pip install "rmtalign[dask]"') from None
    if address is not None:
        with distributed.Client(address) as client:
            yield client
        return
    nanny_log = logging.getLogger("distributed.nanny")
    with contextlib.ExitStack() as stack:
        stack.callback(nanny_log.setLevel, nanny_log.level)  # restored after the cluster closed
        cluster = stack.enter_context(distributed.LocalCluster(
            n_workers=workers or _cores(), threads_per_worker=1, host="127.0.0.1",
            processes=True, dashboard_address=None))
        client = stack.enter_context(distributed.Client(cluster))
        try:
            yield client
        finally:
            # A closing LocalCluster kills its busy-waiting worker processes after 4 s and the
            # nanny warns "Worker process still alive ..., killing" on stderr: routine here.
            nanny_log.setLevel(logging.ERROR)
