"""Seeded training runs and a resumable grid of them.

A *point* is a dict of plain values (task, arch, depth, width, beta, scheme, optimizer, log2_lr,
steps, batch, seed, evals, measure_at): :func:`train_point` trains it and returns its records.
Seeds are keyed by content: the init by the network, the scheme and the seed index, the batch
order by the task, the batch size and the seed index, never by the learning rate, so that the
points of one learning-rate curve share their init and batches (common random numbers: the
curve's minimum is not moved by noise between its points).

:func:`run_grid` runs points in a process pool (one torch thread each) and appends each finished
point's records to a JSON-lines file as it finishes; a rerun with the same file skips the points
it holds (a point is keyed by a hash of its content).
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import multiprocessing
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data import load_task
from .models import make_setup

__all__ = ["point_key", "train_point", "run_grid", "read_records", "default_workers"]

# A run is stopped as diverged when its training loss is not finite or exceeds this multiple of
# the loss at init (cross-entropy at chance is ~2.3: a loss 10x that is no longer training).
_DIVERGED = 10.0
_EVAL = 500  # training (and test) examples on which the losses are evaluated


def _content(*parts) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256(_content(*parts).encode()).digest()[:8], "little") >> 1


def point_key(point: dict) -> str:
    """The content key of a point (hex): its fields, sorted."""
    return hashlib.sha256(_content(point).encode()).hexdigest()[:20]


def _loss_fn(task):
    if task.loss == "ce":
        return F.cross_entropy
    return F.mse_loss


def _evaluate(model, x, y, loss, ce):
    with torch.no_grad():
        out = model(x)
        value = float(loss(out, y))
        acc = float((out.argmax(1) == y).float().mean()) if ce else float("nan")
    return value, acc


_TASKS = {}


def _task(name, cache_dir):
    if name not in _TASKS:
        _TASKS[name] = load_task(name, cache_dir)
    return _TASKS[name]


def train_point(point: dict, cache_dir=None) -> dict:
    """Train one point; returns ``{"key", "point", "final", "curve", "bfa", "seconds"}``.

    ``final``: ``train_loss`` (on the first 500 training examples; ``test_*`` on the first 500
    test examples), ``test_loss``, ``test_acc`` (NaN for
    regression), ``diverged`` (the run was stopped: a non-finite loss or gradient, or a loss above
    ``10 x`` its initial value; its losses are NaN). ``curve``: the same at ``evals + 1`` evenly
    spaced steps. ``bfa``: at the steps ``measure_at`` (fractions of ``steps``), the
    :func:`rmtalign.torch.measure` of the balanced step (Eq. 8) on one training input per layer
    (``cos``, ``fdot_rms``, ``b_norm``), beside the width-limit theory at init
    (:func:`rmtalign.theory.bfa`, ``theory_cos``).
    """
    import rmtalign as ra
    import rmtalign.torch  # noqa: F401

    t0 = time.process_time()
    p = point
    task = _task(p["task"], cache_dir)
    loss, ce = _loss_fn(task), task.loss == "ce"
    x, x_test = torch.from_numpy(task.x), torch.from_numpy(task.x_test)
    y, y_test = torch.from_numpy(task.y), torch.from_numpy(task.y_test)
    # losses are evaluated on fixed subsets: full passes would cost more than the training
    x_eval, y_eval = x[:_EVAL], y[:_EVAL]
    x_test, y_test = x_test[:_EVAL], y_test[:_EVAL]
    lr = 2.0 ** p["log2_lr"]
    order = np.random.default_rng(_seed("batches", p["task"], p["batch"], p["seed"]))
    init_seed = _seed("init", p["task"], p["arch"], p["depth"], p["width"], p["beta"],
                      p["scheme"], p["seed"])

    def batches():
        while True:
            perm = order.permutation(len(y))
            for i in range(0, len(perm) - p["batch"] + 1, p["batch"]):
                idx = torch.from_numpy(perm[i:i + p["batch"]])
                yield x[idx], y[idx]

    stream = batches()
    xb, yb = next(stream)
    setup = make_setup(p["scheme"], p["optimizer"], p["arch"], p["depth"], p["width"],
                       task.in_dim, task.out_dim, lr, beta=p["beta"], seed=init_seed,
                       probe=(xb, lambda out: loss(out, yb)), base_width=p.get("base_width", 64))
    model, opt = setup.model, setup.optimizer
    steps = p["steps"]
    evals = sorted({round(i * steps / p["evals"]) for i in range(p["evals"] + 1)})
    measure_at = sorted({round(f * steps) for f in p.get("measure_at", ())})
    theory = None
    if measure_at:
        theory = dict(zip(ra.theory.bfa(setup.family).layers.tolist(),
                          ra.theory.bfa(setup.family).cos.tolist()))
    curve, bfa = [], []
    start, _ = _evaluate(model, x_eval, y_eval, loss, ce)
    diverged = False
    for step in range(steps + 1):
        if step in measure_at:
            xp, yp = x[:1], y[:1]
            with warnings.catch_warnings():  # a vanished signal is a finding here: NaN is recorded
                warnings.filterwarnings("ignore", "measure: dL/df", RuntimeWarning)
                r = ra.torch.measure(model, xp, lambda out: loss(out, yp))
            for l, c, fd, sz, bn in zip(r.layers, r.cos, r.fdot_norm, r.size, r.b_norm):
                bfa.append({"step": step, "layer": int(l), "cos": float(c),
                            "fdot_rms": float(fd / math.sqrt(sz)), "b_norm": float(bn),
                            "theory_cos": theory.get(int(l), float("nan"))})
        if step in evals:
            tr, _ = _evaluate(model, x_eval, y_eval, loss, ce)
            te, acc = _evaluate(model, x_test, y_test, loss, ce)
            curve.append({"step": step, "train_loss": tr, "test_loss": te, "test_acc": acc})
            if not math.isfinite(tr) or tr > _DIVERGED * max(start, 1e-3):
                diverged = True
                break
        if step == steps:
            break
        if step > 0:
            xb, yb = next(stream)
        opt.zero_grad()
        value = loss(model(xb), yb)
        if not torch.isfinite(value) or float(value.detach()) > _DIVERGED * max(start, 1e-3):
            diverged = True
            break
        value.backward()
        try:
            opt.step()
        except FloatingPointError:  # FSC: a non-finite gradient norm
            diverged = True
            break
    if diverged:
        final = {"train_loss": float("nan"), "test_loss": float("nan"),
                 "test_acc": float("nan"), "diverged": True, "stopped_at": step}
    else:
        last = curve[-1]
        final = {"train_loss": last["train_loss"], "test_loss": last["test_loss"],
                 "test_acc": last["test_acc"], "diverged": False, "stopped_at": steps}
    return {"key": point_key(p), "point": p, "final": final, "curve": curve, "bfa": bfa,
            "seconds": time.process_time() - t0}


def _cost(p) -> float:
    return p["steps"] * p["batch"] * p["depth"] * p["width"] ** 2


def _init_worker():
    torch.set_num_threads(1)


def _work(point, cache_dir):
    return train_point(point, cache_dir)


def read_records(path) -> dict:
    """``{key: record}`` of a JSON-lines file written by :func:`run_grid` (a torn last line, from
    an interrupted run, is ignored)."""
    out = {}
    path = Path(path)
    if not path.exists():
        return out
    with open(path) as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[rec["key"]] = rec
    return out


def run_grid(points, path, *, workers=2, cache_dir=None, progress=None) -> list:
    """Train every point not yet in ``path`` (JSON lines), appending records as they finish;
    returns the records of ``points``, in their order.

    ``workers`` processes (spawned, one torch thread each; 1 runs in this process).
    ``progress(done, total, record)`` is called after each point.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    done = read_records(path)
    keys = [point_key(p) for p in points]
    todo = {k: p for k, p in zip(keys, points) if k not in done}
    order = sorted(todo, key=lambda k: -_cost(todo[k]))
    total, count = len(order), 0

    def record(rec):
        nonlocal count
        with open(path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        done[rec["key"]] = rec
        count += 1
        if progress is not None:
            progress(count, total, rec)

    if workers <= 1 or total <= 1:
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for k in order:
                record(train_point(todo[k], cache_dir))
        finally:
            torch.set_num_threads(torch_threads)
    elif total:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(_work, todo[k], cache_dir) for k in order]
            try:
                for fut in cf.as_completed(futures):
                    record(fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    return [done[k] for k in keys]


def default_workers() -> int:
    """Two processes, or one on a single core."""
    return max(1, min(2, os.cpu_count() or 1))
