#!/usr/bin/env python
"""Benchmark case ``sweep_overhead``: what :func:`rmtalign.sweep.sweep` costs on top of its points.

A grid of 10^4 small points (``--quick``: 2000), BFA of MLPs and ResNets at depths 3..52 and
widths 4..103 with one sample each (a few ms a point, mostly the sampler's own Python), runs on a
warm local process pool of one worker per core. Scheduling overhead, as a fraction of compute::

    overhead_fraction = (parent CPU + workers' CPU - CPU inside the points) / CPU inside the points

CPU seconds rather than wall seconds, because the machine may be shared (wall-clock figures are
reported too, with the load average). "Inside the points" is the quantity's call with its content
seed (``point_seed`` and ``sample_bfa``), what any content-seeded loop over the grid must do; the
rest (planning the grid, keys, batching, pickling, the pool's traffic, assembling the table) is
the sweep's. ``executor="inline"`` on part of the grid gives the in-process share of it
(``inline_overhead_fraction``), with a plain loop over the same points beside it (CPU times of
one process vary by 10-20% between runs on a loaded machine: compare within a run). Target: ``overhead_fraction < 0.05``.

``case(args, out)`` is the function ``scripts/bench.py`` runs (``args.quick``); run alone::

    python scripts/_bench_sweep.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TARGET = "overhead_fraction < 0.05"


def _grid(quick):
    depths = list(range(3, 23)) if quick else list(range(3, 53))
    return {"family": ["MLP", "ResNet"], "depth": depths, "width": list(range(4, 54 if quick else 104)),
            "c": [1.0]}


def _plain_loop(points, seed=0):
    """The points of an inline sweep, computed by hand: CPU seconds."""
    from rmtalign import sample_bfa
    from rmtalign.seeds import point_seed

    t0 = time.process_time()
    for fam in points:
        sample_bfa(fam, 1, point_seed(seed, fam, "bfa-exact"), progress=False).to_table()
    return time.process_time() - t0


def case(args, out):
    """Fill ``out`` with the overhead of a 10^4-point sweep (2000 with ``args.quick``); return
    notes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from rmtalign import sweep as S

    notes = []
    grid = _grid(getattr(args, "quick", False))
    workers = S._cores()
    threads = max(1, S._cores() // workers)

    # in-process share, on 400 points: the inline sweep's CPU outside its points' calls; and a
    # plain loop over the same points, the independent check of what those calls cost
    sub = {"family": ["MLP", "ResNet"], "depth": grid["depth"][:10], "width": grid["width"][:20],
           "c": [1.0]}
    fams = [u.family for u in S._plan("bfa", sub, (0,), 1, None).units]
    S.sweep("bfa", sub, executor="inline")  # warm (kernels loaded or compiled)
    inl = S.sweep("bfa", sub, executor="inline").stats
    out["inline_points"] = len(fams)
    out["inline_plain_loop_cpu_s"] = _plain_loop(fams)
    out["inline_sweep_cpu_s"] = inl["parent_cpu_s"]
    out["inline_points_cpu_s"] = inl["compute_cpu_s"]
    out["inline_overhead_fraction"] = inl["parent_cpu_s"] / inl["compute_cpu_s"] - 1.0

    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=S._pin_process, initargs=(threads,))
    try:
        # warm every worker: one small unit per task, more tasks than workers
        S.sweep("bfa", {"depth": [3, 4], "width": [4, 5, 6, 7]}, executor=pool, batch=1)
        out["pool_start_s"] = time.perf_counter() - t0
        out["loadavg_1m_before"] = os.getloadavg()[0]
        r = S.sweep("bfa", grid, executor=pool)
    finally:
        pool.shutdown()
    st = r.stats
    out.update(points=st["units"], tasks=st["tasks"], workers=workers, threads_per_worker=threads,
               failed=st["failed"], wall_s=st["wall_s"], compute_s=st["compute_s"],
               compute_cpu_s=st["compute_cpu_s"], parent_cpu_s=st["parent_cpu_s"],
               worker_cpu_s=st["worker_cpu_s"], loadavg_1m_after=os.getloadavg()[0])
    out["ours_s"] = st["wall_s"]
    out["ms_per_point"] = 1e3 * st["compute_cpu_s"] / st["units"]
    out["overhead_fraction"] = ((st["parent_cpu_s"] + st["worker_cpu_s"] - st["compute_cpu_s"])
                                / st["compute_cpu_s"])
    out["overhead_fraction_parent"] = st["parent_cpu_s"] / st["compute_cpu_s"]
    out["overhead_fraction_wall"] = workers * st["wall_s"] / st["compute_s"] - 1.0
    out["sweep_target"] = TARGET
    out["sweep_meets_target"] = out["overhead_fraction"] < 0.05
    notes.append("overhead_fraction: CPU seconds outside the points' own calls (parent + workers) "
                 "over CPU seconds inside them; _wall: workers x wall over the points' wall "
                 "seconds, minus 1 (inflated by other load on a shared machine)")
    return notes


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2000 points instead of 10^4")
    args = p.parse_args(argv)
    out = {"case": "sweep_overhead", "quick": args.quick}
    t0 = time.perf_counter()
    notes = case(args, out)
    out["wall_total_s"] = time.perf_counter() - t0
    if notes:
        out["note"] = "; ".join(notes)
    print(json.dumps({k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
