"""The experiments' grids: the default sizes (minutes on 2 cores) and ``--full`` (the issue's).

Each experiment is a list of points (:func:`rmtalign.experiments.train.train_point`) built from
a :class:`Sizes` record, then tables and plots written from the grid's records.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .models import beta_value

__all__ = ["EXPERIMENTS", "Sizes", "DEFAULT", "FULL", "TINY", "points"]

EXPERIMENTS = ("deep_mlp", "resnet", "transfer")

# Centre of each scheme's learning-rate grid (log2 of the base LR, BASE_LR_MEANING), per optimizer.
_CENTRE = {("sp", "sgd"): -4, ("sp", "adam"): -9, ("mup", "sgd"): -4, ("mup", "adam"): -9,
           ("ntk", "sgd"): -2, ("ntk", "adam"): -4, ("mfmup", "sgd"): -2, ("mfmup", "adam"): -4,
           ("fsc", "sgd"): -3, ("fsc", "adam"): -4}


@dataclass(frozen=True)
class Sizes:
    """One set of sizes for the three experiments."""

    task: str = "mnist1d"
    seeds: tuple = (0,)
    batch: int = 32
    # experiment 1: deep iid ReLU MLPs
    mlp_width: int = 128
    mlp_depths: tuple = (4, 16, 64)
    mlp_schemes: tuple = ("sp", "ntk", "mfmup", "fsc")
    mlp_optimizers: tuple = ("sgd", "adam")
    mlp_tasks: tuple = ("mnist1d",)
    curve_steps: int = 100
    curve_lrs: tuple = (-2, 0, 2)  # offsets (octaves) from the scheme's centre
    # experiment 2: ResNets
    res_width: int = 64
    res_depths: tuple = (8, 32, 128)
    res_betas: tuple = ("1", "1/sqrt(L)", "1/L")
    res_schemes: tuple = ("sp", "fsc")
    res_optimizers: tuple = ("sgd",)
    # experiment 3: transfer
    tr_optimizers: tuple = ("adam",)
    tr_schemes: tuple = ("sp", "mup", "mfmup", "fsc")
    tr_widths: tuple = (32, 512)
    tr_width_depth: int = 4
    tr_depths: tuple = (4, 64)
    tr_depth_width: int = 32
    tr_resnet_depths: tuple = (4, 64)
    tr_resnet_widths: tuple = ()  # a ResNet width sweep (at depth tr_width_depth) in --full
    tr_lrs: tuple = tuple(range(-1, 7))  # offsets from the centre: 8 octaves
    tr_steps: int = 60
    tr_seeds: tuple = (0, 1)
    base_width: int = 64


DEFAULT = Sizes()
FULL = Sizes(seeds=(0,), batch=64, mlp_width=256, mlp_depths=(4, 8, 16, 32, 64),
             mlp_tasks=("mnist1d", "digits"), curve_steps=1000, curve_lrs=(-4, -2, 0, 2, 4),
             res_width=256, res_depths=(8, 16, 32, 64, 128), res_optimizers=("sgd", "adam"),
             tr_optimizers=("sgd", "adam"), tr_widths=(64, 128, 256, 512, 1024),
             tr_width_depth=8, tr_depths=(4, 8, 16, 32, 64), tr_depth_width=256,
             tr_resnet_depths=(4, 8, 16, 32, 64, 128), tr_resnet_widths=(64, 256, 1024),
             tr_lrs=tuple(range(-6, 6)), tr_steps=500, tr_seeds=(0, 1, 2))
# The smoke test's sizes: seconds, the teacher task (numpy only).
TINY = Sizes(task="teacher", batch=16, mlp_width=16, mlp_depths=(3, 6), mlp_tasks=("teacher",),
             mlp_optimizers=("sgd",), curve_steps=6, curve_lrs=(0,), res_width=16,
             res_depths=(4,), res_betas=("1/sqrt(L)",), tr_widths=(16, 32), tr_width_depth=3,
             tr_depths=(3, 6), tr_depth_width=16, tr_resnet_depths=(4,), tr_lrs=(-1, 0, 1),
             tr_steps=4, tr_seeds=(0,), base_width=16)


def _point(sizes, **kw):
    p = {"task": sizes.task, "batch": sizes.batch, "seed": 0, "beta": None, "beta_rule": None,
         "evals": 1, "measure_at": [], "base_width": sizes.base_width}
    p.update(kw)
    return p


def points(name, sizes: Sizes) -> list:
    """The points of experiment ``name`` (one of :data:`EXPERIMENTS`) at ``sizes``."""
    s = sizes
    out = []
    if name == "deep_mlp":
        for task in s.mlp_tasks:
            for depth in s.mlp_depths:
                for scheme in s.mlp_schemes:
                    for opt in s.mlp_optimizers:
                        for off in s.curve_lrs:
                            for seed in s.seeds:
                                out.append(_point(s, task=task, arch="mlp", depth=depth,
                                                  width=s.mlp_width, scheme=scheme, optimizer=opt,
                                                  log2_lr=_CENTRE[scheme, opt] + off,
                                                  steps=s.curve_steps, seed=seed, evals=5,
                                                  measure_at=[0.0, 0.5, 1.0]))
    elif name == "resnet":
        for depth in s.res_depths:
            for rule in s.res_betas:
                for scheme in s.res_schemes:
                    for opt in s.res_optimizers:
                        for off in s.curve_lrs:
                            for seed in s.seeds:
                                out.append(_point(s, arch="resnet", depth=depth, width=s.res_width,
                                                  beta=beta_value(rule, depth), beta_rule=rule,
                                                  scheme=scheme, optimizer=opt,
                                                  log2_lr=_CENTRE[scheme, opt] + off,
                                                  steps=s.curve_steps, seed=seed, evals=5,
                                                  measure_at=[0.0, 0.5, 1.0]))
    elif name == "transfer":
        sweeps = [("width", "mlp", s.tr_width_depth, w) for w in s.tr_widths]
        sweeps += [("depth", "mlp", d, s.tr_depth_width) for d in s.tr_depths]
        sweeps += [("depth", "resnet", d, s.tr_depth_width) for d in s.tr_resnet_depths]
        sweeps += [("width", "resnet", s.tr_width_depth, w) for w in s.tr_resnet_widths]
        for sweep, arch, depth, width in sweeps:
            beta = 1.0 / math.sqrt(depth) if arch == "resnet" else None
            for scheme in s.tr_schemes:
                for opt in s.tr_optimizers:
                    for off in s.tr_lrs:
                        for seed in s.tr_seeds:
                            out.append(_point(s, sweep=sweep, arch=arch, depth=depth, width=width,
                                              beta=beta, beta_rule="1/sqrt(L)" if beta else None,
                                              scheme=scheme, optimizer=opt,
                                              log2_lr=_CENTRE[scheme, opt] + off,
                                              steps=s.tr_steps, seed=seed))
    else:
        raise ValueError(f"experiment must be one of {', '.join(map(repr, EXPERIMENTS))}; "
                         f"got {name!r}")
    return out

