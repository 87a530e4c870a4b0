#!/usr/bin/env python
"""Benchmark case: the batch sampler's cost per input against single-input runs (issue 13).

``case(args, out)`` follows the ``_case_*`` functions of ``scripts/bench.py`` (``args.quick``,
``args.repeat``, ``args.budget``; results go into the dict ``out``). Runnable alone::

    python scripts/_bench_batch.py [--quick] [--batch 8 --batch 32]

A batch of ``n`` inputs runs the three matrix-free passes once, with ``n`` rows: each layer's
Gaussian block is generated once per pass for all of them, so the batch should cost far less
than ``n`` single-input runs. Reported per batch size ``n``: ``batch_s_<n>`` (one draw, ``n``
inputs), ``per_input_s_<n>`` and ``speedup_per_input_<n> = n single_s / batch_s_<n>`` (how much
cheaper an input is in the batch than alone). The ReLU masks of a batch keep the union of the
inputs' active columns (nearly all of them for 8 or more inputs), where a single input touches
half: the best a batch can do is about ``n / 2`` times per generated weight.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCHES = (8, 32)


def _median_time(fn, repeat, budget_s):
    """Median wall time of ``fn()`` after one warm-up call (at least 2 runs, more up to
    ``repeat`` while within ``budget_s``)."""
    fn()
    times = []
    while len(times) < repeat:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2 and sum(times) > budget_s:
            break
    return statistics.median(times), len(times)


def case(args, out):
    """Time ``sample_bfa`` on one input and on batches of ``getattr(args, "batches", (8, 32))``
    inputs (exact mode, MLP depth 64 width 512; ``--quick``: depth 16 width 256)."""
    import numpy as np

    import rmtalign as ra
    from rmtalign import MLP

    L, m = (16, 256) if args.quick else (64, 512)
    batches = tuple(getattr(args, "batches", None) or BATCHES)
    fam = MLP(L, m, in_dim=max(batches))  # drawn inputs need n <= in_dim
    out.update(L=L, m=m, in_dim=fam.in_dim, batches=list(batches), mode="exact")
    ra.sample_bfa(MLP(4, 8), inputs=2, seed=0)  # compile the kernels outside the timings
    single = lambda: ra.sample_bfa(fam, samples=1, seed=0)  # noqa: E731
    out["single_s"], out["runs_single"] = _median_time(single, args.repeat, args.budget)
    for n in batches:
        res = {}

        def batch(n=n):
            res["r"] = ra.sample_bfa(fam, samples=1, seed=0, inputs=n, input_correlation=0.5)

        t, runs = _median_time(batch, args.repeat, args.budget)
        out[f"batch_s_{n}"], out[f"runs_batch_{n}"] = t, runs
        out[f"per_input_s_{n}"] = t / n
        out[f"speedup_per_input_{n}"] = n * out["single_s"] / t
        out[f"cos_last_{n}"] = float(np.asarray(res["r"].cos)[0, -1])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (at most)")
    p.add_argument("--budget", type=float, default=30.0, help="seconds per measurement (soft)")
    p.add_argument("--batch", type=int, action="append", dest="batches",
                   help="batch size to time (repeatable; default 8 and 32)")
    args = p.parse_args(argv)
    out = {"case": "bfa_batch"}
    case(args, out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
