#!/usr/bin/env python
"""Benchmark: rmtalign's samplers side by side with a plain numpy peer and a torch peer.

Usage::

    python scripts/bench.py            # full sizes (several minutes on 2 cores)
    python scripts/bench.py --quick    # small sizes, under a minute
    python scripts/bench.py --case bfk_dense --case rng_normals

Each case runs in its own subprocess, so that ``peak_rss_mb`` (``ru_maxrss``, which only ever
grows within a process) belongs to that case alone. Inside the subprocess the implementations run
side by side: ours first (its own peak is recorded as ``ours_peak_rss_mb`` before any peer
allocates), then the numpy peer, then the float64 GEMM rate, then torch last, because numba's,
OpenBLAS's and torch's thread pools spin after a parallel region and slow whoever runs next
(DESIGN.md). Each implementation gets a warm-up run (which also compiles numba kernels) and is timed
as the median of several runs. One JSON object per case is printed on its own line.

The peers are the test oracles ``tests/oracles/numpy_ref.py`` (plain numpy) and
``tests/oracles/torch_ref.py`` (torch autograd + ``torch.func.jvp``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):  # the package, and the oracles (tests/oracles)
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np  # noqa: E402

CASES = ("bfa_exact_mlp", "bfa_exact_big", "bfk_dense", "jacobian_long", "rng_normals", "measure_cost",
         "bfa_batch", "sweep_overhead")

# Issue 2, section 5: the ratios each case has to reach.
TARGETS = {
    "bfa_exact_mlp": "speedup_vs_numpy >= 2 and speedup_vs_torch >= 1",
    "bfa_exact_big": "peak_rss_mb < 1536",
    "bfk_dense": "ours_gflops >= 0.7 * gemm_gflops and speedup_vs_numpy >= 10",
    "jacobian_long": "finite and ratio_to_gemm_bound <= 2",
    "rng_normals": "(no target; ours is the hot kernel of the matrix-free chains)",
    "measure_cost": "ratio <= 3 (issue 8: rmtalign.torch.measure vs one SGD training step)",
    "bfa_batch": "(issue 13: no target; a batch of n should cost far less than n single runs)",
    "sweep_overhead": "overhead_fraction < 0.05 (issue 10: scheduling vs compute, 10^4 points)",
}


# -- measurement helpers -------------------------------------------------------------------------
def _rss_mb():
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform.startswith("linux") else kb / 2**20


def _bench(fn, repeat, warmup=1, budget_s=60.0, min_runs=3):
    """Median wall time of ``fn()`` after ``warmup`` untimed calls.

    At least ``min(min_runs, repeat)`` timed runs; further runs up to ``repeat`` only while the
    total stays within ``budget_s`` (slow peers would otherwise dominate the whole benchmark).
    ``fn`` may return a dict of named phase durations; their medians are returned too.
    """
    for _ in range(warmup):
        fn()
    times, phases = [], {}
    spent = 0.0
    while len(times) < repeat:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        if isinstance(out, dict):
            for k, v in out.items():
                phases.setdefault(k, []).append(v)
        if len(times) >= min(min_runs, repeat) and spent + dt > budget_s:
            break
    return statistics.median(times), len(times), {k: statistics.median(v) for k, v in phases.items()}


def _best(fn, runs):
    """Fastest of ``runs`` calls after one warm-up: for machine bounds, not for the contenders."""
    fn()
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _gemm_gflops(n=2048, repeat=3):
    """Measured float64 GEMM rate of this process (numpy ``@``, i.e. OpenBLAS), GFLOP/s.

    Best of ``repeat``: the rate the machine reaches, the conservative yardstick for ours_gflops."""
    a = np.random.default_rng(0).standard_normal((n, n))
    b = np.random.default_rng(1).standard_normal((n, n))
    return 2.0 * n**3 / _best(lambda: a @ b, repeat) / 1e9


def _ratio(num, den):
    return None if num is None or den is None or den == 0 else num / den


def _round(x, nd=4):
    if isinstance(x, float):
        return float(f"{x:.{nd}g}") if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    return x


def _have_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_setup():
    import torch

    # torch runs last in every worker, so it may use both cores; cap it at 2 anyway so a larger
    # machine does not oversubscribe against numba's and OpenBLAS's idle-spinning pools.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return torch


def _ours(name):
    """The lead's function ``name`` from rmtalign.sampling, or (None, reason) if not there yet."""
    try:
        import rmtalign.sampling as sampling
    except Exception as err:  # noqa: BLE001  (report anything: the bench must still run the peers)
        return None, f"rmtalign.sampling unavailable ({type(err).__name__}: {err})"
    fn = getattr(sampling, name, None)
    if fn is None:
        return None, f"rmtalign.sampling.{name} not implemented yet"
    return fn, None


def _time_ours(out, notes, args, name, compile_with, call, **bench_kw):
    """Time ``call(fn)`` for ``fn = rmtalign.sampling.<name>`` after ``compile_with(fn)`` (the
    kernels compiled on a tiny family); ``bench_kw`` go to :func:`_bench`. Fills ``ours_s``, ``runs_ours``, ``ours_peak_rss_mb``.

    Returns the last result, or None when ours is missing or fails: a failure of the code in
    progress becomes a note and ``ours_s = null`` instead of losing the peers' numbers.
    """
    fn, why = _ours(name)
    res = {}
    if fn is None:
        notes.append(why)
    else:
        def ours():
            res["r"] = call(fn)

        try:
            compile_with(fn)
            out["ours_s"], out["runs_ours"], _ = _bench(ours, bench_kw.pop("repeat", args.repeat),
                                                        budget_s=args.budget, **bench_kw)
        except Exception as err:  # noqa: BLE001
            notes.append(f"ours failed: {type(err).__name__}: {err}")
            res.clear()
    out["ours_peak_rss_mb"] = _rss_mb()
    return res.get("r")


def _time_torch(out, fn, args, key="torch"):
    """Time a torch peer with 2 threads and with 1, keep the faster as ``<key>_s``.

    Small matvec chains are dominated by OpenMP hand-offs: on a loaded 2-core machine torch with 2
    threads ran 10-60x slower than with 1 in our runs. Reporting the peer's best configuration
    keeps the comparison fair to torch; both numbers are kept.
    """
    torch = _torch_setup()
    time.sleep(0.5)  # let OpenBLAS's spinning workers from the numpy runs go idle first
    by = {}
    for nt in sorted({min(2, os.cpu_count() or 1), 1}):
        torch.set_num_threads(nt)
        # A configuration already 3x slower than the best one after a run is not worth the budget.
        budget, least = (args.budget, 3) if not by else (min(args.budget, 3 * min(by.values())), 1)
        by[nt], runs, ph = _bench(fn, args.repeat, budget_s=budget, min_runs=least)
        if ph:
            out[f"{key}_phases_s_{nt}t"] = ph
    best = min(by, key=by.get)
    out[f"{key}_s"], out[f"{key}_threads"] = by[best], best
    out[f"{key}_s_by_threads"] = {str(k): v for k, v in by.items()}
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    return torch


def _threads():
    info = {"cpu_count": os.cpu_count()}
    try:
        import numba

        info["numba"] = numba.get_num_threads()
        info["numba_layer"] = numba.config.THREADING_LAYER
    except Exception:  # noqa: BLE001
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()})
    except Exception:  # noqa: BLE001
        pass
    return info


# -- cases ---------------------------------------------------------------------------------------
def _case_bfa_exact_mlp(args, out):
    from oracles import numpy_ref as ref
    from rmtalign.families import MLP

    L, m = (32, 256) if args.quick else (128, 1024)
    fam = MLP(L, m)
    out.update(L=L, m=m, samples=1)
    notes = []

    ours = _time_ours(out, notes, args, "sample_bfa", lambda f: f(MLP(4, 8), samples=1, seed=0),
                      lambda f: f(fam, samples=1, seed=0))
    if ours is not None:
        out["ours_cos_last"] = float(np.asarray(ours.cos)[0, -1])

    def numpy_peer():
        t0 = time.perf_counter()
        w = ref.gaussian_weights(fam, np.random.default_rng(0))
        t1 = time.perf_counter()
        numpy_peer.r = ref.bfa_exact(fam, w)
        return {"draw": t1 - t0, "passes": time.perf_counter() - t1}

    out["numpy_s"], out["runs_numpy"], ph = _bench(numpy_peer, args.repeat, budget_s=args.budget)
    out["numpy_phases_s"] = ph
    out["numpy_cos_last"] = float(numpy_peer.r["cos"][-1])
    del numpy_peer.r
    if ours is not None:
        # Correctness beside speed: the numpy peer on ours' own draw (sample_network) must agree.
        from rmtalign.sampling import sample_network

        x, w = sample_network(fam, seed=0)
        r = ref.bfa_exact(fam, w, x)
        del w
        ok = ~np.isnan(r["cos"])
        out["ours_vs_numpy_same_draw_max_abs_dcos"] = float(
            np.max(np.abs(np.asarray(ours.cos)[0][ok] - r["cos"][ok])))
        del ours
    out["gemm_gflops"] = _gemm_gflops()

    if _have_torch() and not args.no_torch:
        from oracles.torch_ref import bfa_exact_torch, torch_weights

        def torch_peer():
            t0 = time.perf_counter()
            w = torch_weights(fam, seed=0)
            t1 = time.perf_counter()
            torch_peer.r = bfa_exact_torch(fam, w)
            return {"draw": t1 - t0, "passes": time.perf_counter() - t1}

        _time_torch(out, torch_peer, args)
        out["torch_cos_last"] = float(torch_peer.r["cos"][-1])
        del torch_peer.r
    notes.append("every implementation draws its own weights inside the timed region (ours: "
                 "counter-based RNG; numpy: Generator.standard_normal; torch: normal_), so *_cos_last "
                 "differ by sampling noise only")
    return notes


def _case_bfa_exact_big(args, out):
    from rmtalign.families import MLP

    L, m = (128, 1024) if args.quick else (512, 2048)
    fam = MLP(L, m)
    out.update(L=L, m=m, samples=1, stored_weights_gib=round(8 * (m * m * (L - 2) + m * 11) / 2**30, 2))
    notes = ["peers store every weight matrix (would need stored_weights_gib): not run, null"]
    # Full size is slow (~L m^2 normals per pass): fewer runs, but still a median.
    runs = min(args.repeat, 3)
    ours = _time_ours(out, notes, args, "sample_bfa", lambda f: f(MLP(4, 8), samples=1, seed=0),
                      lambda f: f(fam, samples=1, seed=0), repeat=runs, warmup=0, min_runs=runs)
    if ours is not None:
        cos = np.asarray(ours.cos)
        out["ours_cos_last"] = float(cos[0, -1])
        out["ours_finite"] = bool(np.all(np.isfinite(cos[0, 1:])))
    out["gemm_gflops"] = _gemm_gflops()
    return notes


def _bfk_layers(L):
    # 8 layers spread over the depth, the deepest last; layer 1 (K_1 = 0 with W_1 frozen) excluded.
    return np.unique(np.round(np.linspace(0, L - 1, 9)[1:]).astype(int))


def _case_bfk_dense(args, out):
    from oracles import numpy_ref as ref
    from rmtalign.families import MLP

    L, m = (16, 128) if args.quick else (64, 512)
    fam = MLP(L, m)
    layers = _bfk_layers(L)
    # Nominal (dense-equivalent) flop count of K_v = c_v I + A_v K_{v-1} A_v^T: two m^3 GEMMs a
    # layer. ours_gflops uses it, as the target does; see flops_recursion_actual below.
    flops_gemm = 4.0 * m**3 * (L - 1)
    # eigvalsh: Householder tridiagonalisation (4/3 m^3) dominates; the tridiagonal solve is O(m^2).
    flops_eig = len(layers) * 4.0 / 3.0 * m**3
    out.update(L=L, m=m, layers=layers.tolist(), flops_recursion=flops_gemm, flops_eigvalsh=flops_eig)
    notes = []

    # The case's output: every K_v, spectra at the 8 layers.
    ours = _time_ours(out, notes, args, "sample_bfk",
                      lambda f: f(MLP(4, 8), layers=[2, 3], samples=1, seed=0),
                      lambda f: f(fam, layers=layers, samples=1, seed=0, keep_kernels="all"))
    ours_eig = None if ours is None else np.asarray(ours.eigenvalues)[0]
    del ours  # the kept kernels: 8 m^2 bytes a layer

    # The case, "all layers' kernels and their spectra at 8 layers": the peer sums the
    # Jacobian products term by term for every K_v (O(v) GEMMs each), then eigvalsh at the 8.
    def numpy_peer():
        t0 = time.perf_counter()
        w = ref.gaussian_weights(fam, np.random.default_rng(0))
        t1 = time.perf_counter()
        K = ref.bfk_termwise(fam, w)["K"]
        t2 = time.perf_counter()
        [np.linalg.eigvalsh(K[v - 1]) for v in layers]
        return {"draw": t1 - t0, "kernels": t2 - t1, "eigvalsh": time.perf_counter() - t2}

    out["numpy_s"], out["runs_numpy"], out["numpy_phases_s"] = _bench(
        numpy_peer, min(args.repeat, 3), warmup=0, budget_s=args.budget, min_runs=1
    )

    # Reported beside it: the peer that builds only the 8 kernels it needs for the spectra.
    def numpy_same_layers():
        w = ref.gaussian_weights(fam, np.random.default_rng(0))
        K = ref.bfk_termwise(fam, w, layers=layers)["K"]
        [np.linalg.eigvalsh(Kv) for Kv in K]

    out["numpy_8_layers_s"], out["runs_numpy_8_layers"], _ = _bench(
        numpy_same_layers, args.repeat, budget_s=args.budget
    )
    if ours_eig is not None:
        # Correctness beside speed: the peer's spectra on ours' own draw.
        from rmtalign.sampling import sample_network

        x, w = sample_network(fam, seed=0)
        f = ref.forward(fam, w, x)
        # The flops ours really performs: bfk_step multiplies only the active columns S of W_v
        # (2 m |S|^2 + 2 m^2 |S| for an MLP, 4 m^2 |S| with a skip), so the nominal dense count
        # 4 m^3 a layer overstates its work by ~2.7x for ReLU. Both are reported.
        act = np.array([np.count_nonzero(f[v - 2] > 0) if fam.phi.has_masks else m
                        for v in range(2, L)], dtype=float)
        per = 2 * m * act**2 + 2 * m * m * act if fam.skip == 0 else 4 * m * m * act
        out["flops_recursion_actual"] = float(per.sum())
        K = ref.bfk_termwise(fam, w, x, layers=layers)["K"]
        eig = np.stack([np.linalg.eigvalsh(Kv)[::-1] for Kv in K])
        out["ours_vs_numpy_same_draw_max_rel_deig"] = float(
            np.max(np.abs(ours_eig - eig)) / np.max(np.abs(eig)))
    out["gemm_gflops"] = _gemm_gflops()
    if out.get("ours_s"):
        out["ours_gflops"] = flops_gemm / out["ours_s"] / 1e9
        out["ours_gflops_incl_eigvalsh"] = (flops_gemm + flops_eig) / out["ours_s"] / 1e9
        if "flops_recursion_actual" in out:
            out["ours_gflops_actual"] = (out["flops_recursion_actual"] + flops_eig) / out["ours_s"] / 1e9
    # The peer's GEMM count, for reading the speed-up: J_{v,l-1} = J_{vl} A_l and J J^T per term.
    first = 2  # W_1 frozen: terms l = 2..v
    out["numpy_8_layers_gemms"] = int(sum(2 * (v - first) + 1 for v in layers))
    out["numpy_gemms"] = int(sum(2 * (v - first) + 1 for v in range(first, L)))
    out["speedup_vs_numpy_8_layers"] = _ratio(out["numpy_8_layers_s"], out.get("ours_s"))
    out["recursion_gemms"] = 2 * (L - 2)
    out["torch_s"] = None
    notes.append("no torch peer for this case (torch_s null); numpy_s = term-by-term K_v at every "
                 "layer + eigvalsh at the 8, the same output as ours (keep_kernels='all'); "
                 "numpy_8_layers_s = term-by-term K_v at the 8 layers only + eigvalsh")
    return notes


def _case_jacobian_long(args, out):
    from oracles import numpy_ref as ref
    from rmtalign.families import MLP

    n_fac, m = (200, 128) if args.quick else (1000, 256)
    L = n_fac + 2  # features f_1 .. f_{L-1}: df_{L-1}/df_1 is a product of n_fac layer Jacobians
    fam = MLP(L, m)
    start, stop = 1, L - 1
    out.update(L=L, m=m, start=start, stop=stop, factors=n_fac)
    notes = []

    ours = _time_ours(out, notes, args, "sample_jacobian", lambda f: f(MLP(6, 8), 1, 5, samples=1, seed=0),
                      lambda f: f(fam, start, stop, samples=1, seed=0))
    if ours is not None:
        floats = [np.asarray(v) for v in vars(ours).values()
                  if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
        # "Finite": no NaN and no +inf; -inf is an honest log of an exactly zero singular value
        # (ReLU masks make the Jacobian rank deficient).
        out["ours_finite"] = bool(all(not np.any(np.isnan(v) | (v == np.inf)) for v in floats))
        logs = np.asarray(ours.log_sq_singular_values)
        out["ours_log10_sq_sv_max"] = float(np.max(logs) / math.log(10))

    def numpy_peer():
        t0 = time.perf_counter()
        w = ref.gaussian_weights(fam, np.random.default_rng(0))
        t1 = time.perf_counter()
        J, log_s = ref.jacobian_product(fam, w, None, start, stop, return_log_scale=True)
        s = np.linalg.svd(J, compute_uv=False)
        with np.errstate(divide="ignore"):
            numpy_peer.log_sq_sv = 2 * (np.log(s) + log_s)
        return {"draw": t1 - t0, "product_svd": time.perf_counter() - t1}

    out["numpy_s"], out["runs_numpy"], out["numpy_phases_s"] = _bench(
        numpy_peer, args.repeat, budget_s=args.budget
    )
    lsv = numpy_peer.log_sq_sv
    out["numpy_log10_sq_sv_max"] = float(lsv.max() / math.log(10))
    if ours is not None:
        # Correctness beside speed: the explicit product on ours' own draw. It keeps only the top
        # of the spectrum (the rest drowns in round-off), so compare the 4 largest log sv^2.
        from rmtalign.sampling import sample_network

        x, w = sample_network(fam, seed=0)
        J, log_s = ref.jacobian_product(fam, w, x, start, stop, return_log_scale=True)
        del w
        top = 2 * (np.log(np.linalg.svd(J, compute_uv=False)[:4]) + log_s)
        ours_top = np.sort(logs[0])[::-1][:4]
        out["ours_vs_numpy_same_draw_top4_abs_dlog_sv2"] = float(np.max(np.abs(ours_top - top)))
    out["gemm_gflops"] = _gemm_gflops()

    # The GEMM bound: the same number of m x m x m products, on resident matrices.
    a = np.random.default_rng(2).standard_normal((m, m)) / math.sqrt(m)
    b = np.random.default_rng(3).standard_normal((m, m)) / math.sqrt(m)

    def gemms():
        c = b
        for _ in range(n_fac):
            c = a @ c
            c /= np.abs(c).max()  # keep the chain finite, as any long product must

    def gemms_bare():
        for _ in range(n_fac):
            a @ b

    # A bound is what the machine can do: best of 5, not the median (small 2-thread GEMMs on a
    # shared machine lose whole time slices at their barriers). Conservative for ours.
    out["gemm_bare_s"] = _best(gemms_bare, 5)
    out["gemm_chain_s"] = _best(gemms, 5)
    # Back-to-back bare GEMMs on a loaded machine sometimes ran 100x slower than the same GEMMs
    # with a renormalisation between them (2-thread OpenBLAS barriers); the bound is the faster.
    out["gemm_bound_s"] = min(out["gemm_bare_s"], out["gemm_chain_s"])
    out["ratio_to_gemm_bound"] = _ratio(out.get("ours_s"), out["gemm_bound_s"])
    out["ours_gflops"] = _ratio(2.0 * m**3 * n_fac / 1e9, out.get("ours_s"))
    out["torch_s"] = None
    notes.append("gemm_bound_s = min(gemm_bare_s, gemm_chain_s), each the best of 5 runs of n_factors "
                 "m x m GEMMs (numpy @, resident operands; the chain adds the renormalisation a long "
                 "product needs); no torch peer")
    return notes


def _case_rng_normals(args, out):
    n = 1 << (22 if args.quick else 26)
    out.update(n=n)
    notes = []
    cols = 4096
    try:
        from rmtalign._kernels.rng import fill_normal
    except Exception as err:  # noqa: BLE001
        fill_normal = None
        notes.append(f"rmtalign._kernels.rng.fill_normal unavailable ({type(err).__name__}: {err})")
    if fill_normal is not None:
        fill_normal(np.uint64(1), np.empty((2, 8)))  # compile (or load from cache)

        def ours():
            fill_normal(np.uint64(12345), np.empty((n // cols, cols)))

        out["ours_s"], out["runs_ours"], _ = _bench(ours, args.repeat, budget_s=args.budget)
        notes.append(f"ours = fill_normal(key, out) into a fresh ({n // cols}, {cols}) array "
                     "(one counter-based stream per row, rows in parallel)")
    out["ours_peak_rss_mb"] = _rss_mb()
    rng = np.random.default_rng(0)
    out["numpy_s"], out["runs_numpy"], _ = _bench(lambda: rng.standard_normal(n), args.repeat,
                                                  budget_s=args.budget)
    out["gemm_gflops"] = _gemm_gflops()
    if _have_torch() and not args.no_torch:
        torch = _torch_setup()
        torch.manual_seed(0)
        _time_torch(out, lambda: torch.empty(n, dtype=torch.float64).normal_(), args)
        _time_torch(out, lambda: torch.empty(n, dtype=torch.float32).normal_(), args, key="torch_float32")
    for k in ("ours", "numpy", "torch", "torch_float32"):
        t = out.get(f"{k}_s")
        out[f"{k}_ns_per_normal"] = None if t is None else t / n * 1e9
    out["speedup_vs_torch_float32"] = _ratio(out.get("torch_float32_s"), out.get("ours_s"))
    return notes


def _case_measure_cost(args, out):
    """``rmtalign.torch.measure`` against one training step (forward, backward, SGD update) of
    the same model and batch: a float32 ReLU MLP of 16 layers, width 1024, batch 256."""
    if not _have_torch() or args.no_torch:
        return ["needs torch (ratio null)"]
    torch = _torch_setup()
    from torch import nn

    L, m, n, k = (8, 256, 64, 10) if args.quick else (16, 1024, 256, 10)
    out.update(L=L, m=m, batch=n, dtype="float32")
    torch.manual_seed(0)
    layers = []
    for i in range(L):
        layers += [nn.Linear(m, k if i == L - 1 else m)] + ([nn.ReLU()] if i < L - 1 else [])
    model = nn.Sequential(*layers)
    x = torch.randn(n, m)
    y = torch.randint(0, k, (n,))

    def loss_fn(output):
        return nn.functional.cross_entropy(output, y)

    trained = __import__("copy").deepcopy(model)  # the training step moves its own copy
    opt = torch.optim.SGD(trained.parameters(), lr=1e-3)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss_fn(trained(x)).backward()
        opt.step()

    notes = ["ratio = ours_s (measure, mode='jvp', lr=None: the balanced rule) / step_s (zero_grad, "
             "forward, backward, SGD step); ratio_difference the same for mode='difference'"]
    try:
        from rmtalign.torch import measure
    except Exception as err:  # noqa: BLE001
        notes.append(f"rmtalign.torch.measure unavailable ({type(err).__name__}: {err})")
        measure = None
    # Interleaved: the step and measure alternate within each timed round, so that a change of
    # load on a shared machine hits both alike; medians are compared. As for the torch peers
    # (_time_torch), with 2 threads and with 1: the headline is the configuration whose training
    # step is faster, and the ratio compares the two at the same thread count.
    rounds = max(3, args.repeat)
    by = {}
    for nt in sorted({min(2, os.cpu_count() or 1), 1}, reverse=True):
        torch.set_num_threads(nt)
        t_step, t_meas, t_diff = [], [], []
        for r in range(rounds + 1):  # round 0 is the warm-up
            t0 = time.perf_counter()
            train_step()
            t1 = time.perf_counter()
            if measure is not None:
                res = measure(model, x, loss_fn)
                t2 = time.perf_counter()
                measure(model, x, loss_fn, mode="difference")
                t3 = time.perf_counter()
            if r:
                t_step.append(t1 - t0)
                if measure is not None:
                    t_meas.append(t2 - t1)
                    t_diff.append(t3 - t2)
        by[nt] = {"step_s": statistics.median(t_step)}
        if measure is not None:
            by[nt].update(ours_s=statistics.median(t_meas), ours_difference_s=statistics.median(t_diff))
            by[nt]["ratio"] = by[nt]["ours_s"] / by[nt]["step_s"]
            by[nt]["ratio_difference"] = by[nt]["ours_difference_s"] / by[nt]["step_s"]
    best = min(by, key=lambda nt: by[nt]["step_s"])
    out.update(by[best])
    out["torch_threads"] = best
    out["by_threads"] = {str(k): v for k, v in by.items()}
    out["runs"] = rounds
    if measure is not None:
        out["blocks"] = len(res.layers)
        out["cos_last"] = float(res.cos[-1])
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out["ours_peak_rss_mb"] = _rss_mb()
    return notes


_RUNNERS = {
    "bfa_exact_mlp": _case_bfa_exact_mlp,
    "bfa_exact_big": _case_bfa_exact_big,
    "bfk_dense": _case_bfk_dense,
    "jacobian_long": _case_jacobian_long,
    "rng_normals": _case_rng_normals,
    "measure_cost": _case_measure_cost,
    # cases kept beside their subject, in scripts/_bench_<subject>.py (runnable alone too)
    "bfa_batch": lambda args, out: _run_case_module("_bench_batch", args, out),
    "sweep_overhead": lambda args, out: _run_case_module("_bench_sweep", args, out),
}


def _run_case_module(module, args, out):
    """Run ``scripts/<module>.py``'s ``case(args, out)``; its results go into ``out`` only."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    __import__(module).case(args, out)


def _meets(case, r):
    """Whether the case reaches issue 2's target (None when something needed is missing)."""
    try:
        if case == "bfa_exact_mlp":
            if r["speedup_vs_numpy"] is None:
                return None
            ok = r["speedup_vs_numpy"] >= 2
            return ok and (r["speedup_vs_torch"] is None or r["speedup_vs_torch"] >= 1)
        if case == "bfa_exact_big":
            return None if r["ours_s"] is None else r["peak_rss_mb"] < 1536
        if case == "bfk_dense":
            if r["ours_gflops"] is None:
                return None
            return r["ours_gflops"] >= 0.7 * r["gemm_gflops"] and r["speedup_vs_numpy"] >= 10
        if case == "jacobian_long":
            if r["ratio_to_gemm_bound"] is None:
                return None
            return bool(r.get("ours_finite")) and r["ratio_to_gemm_bound"] <= 2
        if case == "measure_cost":
            return None if r.get("ratio") is None else r["ratio"] <= 3
        if case == "sweep_overhead":
            f = r.get("overhead_fraction")
            return None if f is None else f < 0.05
    except (KeyError, TypeError):
        return None
    return None


def _worker(case, args):
    out = {"case": case, "quick": args.quick, "ours_s": None, "numpy_s": None, "torch_s": None,
           "gemm_gflops": None, "ours_gflops": None}
    t0 = time.perf_counter()
    out["loadavg_1m_at_start"] = os.getloadavg()[0]  # the machine may be shared: read timings with it
    notes = _RUNNERS[case](args, out)
    out["peak_rss_mb"] = _rss_mb()
    out["speedup_vs_numpy"] = _ratio(out["numpy_s"], out["ours_s"])
    out["speedup_vs_torch"] = _ratio(out["torch_s"], out["ours_s"])
    out["target"] = TARGETS[case]
    out["meets_target"] = _meets(case, out)
    out["threads"] = _threads()
    out["wall_s"] = time.perf_counter() - t0
    if notes:
        out["note"] = "; ".join(notes)
    return {k: _round(v) for k, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (under a minute in total)")
    p.add_argument("--case", action="append", choices=CASES, help="run only this case (repeatable)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed runs per implementation, median reported (default 5; 3 with --quick)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per implementation beyond the first 3 runs (default 60; 5 with --quick)")
    p.add_argument("--no-torch", action="store_true", help="skip the torch peers")
    p.add_argument("--worker", choices=CASES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = 5.0 if args.quick else 60.0
    if args.repeat is None:
        args.repeat = 3 if args.quick else 5

    if args.worker:
        print(json.dumps(_worker(args.worker, args)), flush=True)
        return 0

    cases = args.case or list(CASES)
    # Cases with torch peers last, so numba's and torch's pools never meet (they are separate
    # processes anyway: this only keeps the machine quiet for the torch-free cases).
    status = 0
    for case in cases:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", case, "--repeat", str(args.repeat),
               "--budget", str(args.budget)]
        cmd += ["--quick"] * args.quick + ["--no-torch"] * args.no_torch
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        if proc.returncode != 0 or not line.startswith("{"):
            status = 1
            err = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            print(json.dumps({"case": case, "error": f"worker exited {proc.returncode}",
                              "stderr_tail": err}), flush=True)
            continue
        print(line, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
