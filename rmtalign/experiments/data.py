"""Tasks of the experiments, all made on this machine (nothing is downloaded):

* ``"mnist1d"``: MNIST-1D (Greydanus 2020), generated procedurally by
  ``mnist1d.data.make_dataset`` with the package's own arguments (``get_dataset_args()``: 4000
  train and 1000 test series of length 40, 10 classes, seed 42); cross-entropy;
* ``"digits"``: scikit-learn's 8x8 digits (the file ships inside scikit-learn), 64 inputs, 10
  classes, split 80/20 by a seeded permutation; cross-entropy;
* ``"teacher"``: regression on a random deep ReLU network (a teacher of depth 4 and width 256, He
  init) from 32 Gaussian inputs to 4 outputs, scaled to unit variance; mean squared error.

Inputs are standardised per feature with the training set's statistics.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validate import check_choice

__all__ = ["Task", "load_task", "TASKS"]

TASKS = ("mnist1d", "digits", "teacher")
_TEACHER = {"in_dim": 32, "out_dim": 4, "depth": 4, "width": 256, "train": 4000, "test": 1000,
            "seed": 0}


@dataclass(frozen=True, repr=False)
class Task:
    """A supervised task: float32 inputs ``x`` (n, d), targets ``y`` (class indices for
    ``loss == "ce"``, float32 (n, k) for ``loss == "mse"``), and their test split."""

    name: str
    loss: str
    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def in_dim(self) -> int:
        return int(self.x.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.y.max()) + 1 if self.loss == "ce" else int(self.y.shape[1])

    def __repr__(self):
        return (f"Task({self.name!r}, loss={self.loss!r}, train={self.x.shape}, "
                f"test={self.x_test.shape}, out_dim={self.out_dim})")


def _standardise(x, x_test):
    mu, sd = x.mean(0), x.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return ((x - mu) / sd).astype(np.float32), ((x_test - mu) / sd).astype(np.float32)


def _mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()  # procedural generation; its 'url' is only read by a download helper
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG: put it back
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    return d["x"], d["y"].astype(np.int64), d["x_test"], d["y_test"].astype(np.int64)


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    tr, te = perm[:cut], perm[cut:]
    return x[tr], y[tr].astype(np.int64), x[te], y[te].astype(np.int64)


def _teacher():
    t = _TEACHER
    rng = np.random.default_rng(t["seed"])
    n = t["train"] + t["test"]
    x = rng.standard_normal((n, t["in_dim"]))
    h, fan_in = x, t["in_dim"]
    for _ in range(t["depth"] - 1):
        w = rng.standard_normal((fan_in, t["width"])) * np.sqrt(2.0 / fan_in)
        h, fan_in = np.maximum(h @ w, 0.0), t["width"]
    y = h @ (rng.standard_normal((fan_in, t["out_dim"])) / np.sqrt(fan_in))
    y = ((y - y.mean(0)) / y.std(0)).astype(np.float32)
    c = t["train"]
    return x[:c], y[:c], x[c:], y[c:]


_MAKERS = {"mnist1d": (_mnist1d, "ce"), "digits": (_digits, "ce"), "teacher": (_teacher, "mse")}


def load_task(name, cache_dir=None) -> Task:
    """The task ``name`` (one of :data:`TASKS`).

    Parameters
    ----------
    name : str
    cache_dir : path, optional
        Where the generated arrays are kept (``<name>-<hash of the generator's settings>.npz``):
        MNIST-1D takes a few CPU seconds to generate, the others are instant.

    Raises
    ------
    ImportError
        ``mnist1d`` or ``scikit-learn`` missing (the ``experiments`` extra).
    """
    check_choice("task", name, TASKS)
    make, loss = _MAKERS[name]
    path = None
    if cache_dir is not None:
        tag = hashlib.sha256(json.dumps([name, _TEACHER if name == "teacher" else None, 1])
                             .encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"{name}-{tag}.npz"
        if path.exists():
            with np.load(path) as z:
                return Task(name, loss, z["x"], z["y"], z["x_test"], z["y_test"])
    x, y, x_test, y_test = make()
    x, x_test = _standardise(np.asarray(x, np.float64), np.asarray(x_test, np.float64))
    task = Task(name, loss, x, y, x_test, y_test)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=task.x, y=task.y, x_test=task.x_test, y_test=task.y_test)
        tmp.replace(path)
    return task
