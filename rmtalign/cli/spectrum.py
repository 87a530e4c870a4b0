"""BFK spectral density: sampled eigenvalues against the free-probability law.

Samples the dense backward-to-feature kernels K_v of --samples networks (rmtalign.sample_bfk) at
the layers --layers and compares their eigenvalues with the limiting spectral law of K_v
(rmtalign.theory.bfk_density: the free model, in the units of mean_field's c_v). The default
--mode free samples that same model, so the two sides share their units; in --mode exact the
sampled kernels use the draw's own masks and measured learning rates, which set each draw's
scale, so the shapes are compared (--normalise, default for exact mode: atom where the law has
one, as a ReLU MLP's c_v, otherwise mean; for ReLU ResNets the masks are also correlated across
depth, which the law leaves out). Reported per layer: the
Kolmogorov distance between the sampled eigenvalues and the law, the mass of the law's atoms
and the fraction of sampled eigenvalues sitting on them, and cos = M1/sqrt(M2) of both.

Writes OUT/spectrum.csv (the summary per layer), OUT/spectrum_samples.csv (every eigenvalue),
OUT/spectrum_theory.csv (the law on its grid, with its cdf), OUT/spectrum.json and
OUT/spectrum.png (histogram against the density, one panel per layer).

example:
  rmtalign spectrum --family mlp --depth 16 --width 256 --layers 4,15 --samples 4
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..results import Result
from . import _common


@dataclass(repr=False)
class SpectrumComparison(Result):
    """Sampled BFK spectra (``sampled``: :class:`rmtalign.SampledBFK`) against their limiting
    laws (``theory[i]``: :class:`rmtalign.theory.Density` of ``K_{layers[i]}``). Per layer:
    ``ks_distance`` (sup-distance of the cdfs over the law's grid, atoms included),
    ``atom_mass`` (the law's) and ``atom_mass_sampled`` (fraction of eigenvalues within
    ``1e-9`` relative of an atom), ``cos_spectrum`` of the law and ``cos_spectrum_sampled``
    (mean over samples). With ``normalise`` (``"mean"`` or ``"atom"``) the distances and atoms
    compare shapes: each draw's eigenvalues divided by their mean (or smallest value, a ReLU
    MLP's ``c_v``) and the law's ``x`` by its ``M1`` (or its atom); ``theory`` holds the laws
    rescaled so. Table: one row per layer."""

    family: object
    mode: str
    normalise: object
    layers: np.ndarray
    sampled: object
    theory: list
    ks_distance: np.ndarray
    atom_mass: np.ndarray
    atom_mass_sampled: np.ndarray
    cos_spectrum: np.ndarray
    cos_spectrum_sampled: np.ndarray

    def __repr__(self) -> str:
        return (f"SpectrumComparison({self.family.label}, mode={self.mode!r}, normalise="
                f"{self.normalise!r}, layers={list(map(int, self.layers))}, samples="
                f"{len(self.sampled.sample)}, ks_distance={np.round(self.ks_distance, 4).tolist()})")

    def _table(self):
        return {"layer": self.layers, "ks_distance": self.ks_distance, "atom_mass": self.atom_mass,
                "atom_mass_sampled": self.atom_mass_sampled, "cos_spectrum": self.cos_spectrum,
                "cos_spectrum_sampled": self.cos_spectrum_sampled}

    def samples_table(self) -> dict:
        """Every sampled eigenvalue: ``sample, layer, index`` (descending), ``eigenvalue``."""
        ev = np.asarray(self.sampled.eigenvalues)
        n, nl, m = ev.shape
        return {"sample": np.repeat(self.sampled.sample, nl * m),
                "layer": np.tile(np.repeat(self.layers, m), n),
                "index": np.tile(np.arange(m), n * nl), "eigenvalue": ev.reshape(-1),
                "eigenvalue_normalised": (ev / self._draw_scales()[:, :, None]).reshape(-1)}

    def _draw_scales(self) -> np.ndarray:
        """Each draw's unit at each layer ``(samples, layers)``: 1, its mean or its smallest
        eigenvalue."""
        ev = np.asarray(self.sampled.eigenvalues)
        if self.normalise == "mean":
            return ev.mean(axis=2)
        if self.normalise == "atom":
            return ev.min(axis=2)
        return np.ones(ev.shape[:2])

    def theory_table(self) -> dict:
        """The laws on their grids: ``layer, x, density, cdf``, then one row per atom
        (``x`` its location, ``density`` empty, ``cdf`` its mass)."""
        cols = {"layer": [], "x": [], "density": [], "cdf": [], "atom_mass": []}
        for v, d in zip(self.layers, self.theory):
            t = d.to_table()
            n = len(t["x"])
            cols["layer"] += [v] * n
            cols["x"] += list(t["x"])
            cols["density"] += list(t["density"])
            cols["cdf"] += list(t["cdf"])
            cols["atom_mass"] += [np.nan] * n
            for loc, mass in d.atoms.items():
                cols["layer"].append(v)
                cols["x"].append(loc)
                cols["density"].append(np.nan)
                cols["cdf"].append(np.nan)
                cols["atom_mass"].append(mass)
        return cols


def add_arguments(p):
    _common.add_family_arguments(p, depth=16, width=128)
    g = p.add_argument_group("what to compute")
    g.add_argument("--layers", type=_common.list_type(_common.int_type(1, what="layer indices"),
                                                      "layer indices"),
                   default=None, metavar="V[,V...]",
                   help="layers v in 1..L-1 (default: L/2 and L-1)")
    g.add_argument("--samples", type=_common.positive_int, default=4,
                   help="sampled networks (default 4; each gives m eigenvalues per layer)")
    g.add_argument("--mode", choices=("exact", "free"), default="free",
                   help="free: the random-matrix model the law describes (default); exact: the real network")
    g.add_argument("--normalise", choices=("none", "mean", "atom"), default=None,
                   help="compare shapes, each draw on its own scale: mean (divide by M1) or atom "
                        "(by the draw's smallest eigenvalue and the law's atom, a ReLU MLP's c_v); "
                        "default none in free mode, in exact mode atom where the law has one, else mean")
    _common.add_common_arguments(p)


def _layers(args, fam):
    from ..theory import mean_field

    L = fam.depth
    layers = sorted(set(args.layers or [max(2, L // 2), L - 1]))
    bad = [v for v in layers if not 1 <= v <= L - 1]
    if bad:
        raise _common.UsageError(f"--layers must lie in 1..L-1 = 1..{L - 1} (--depth {L}), got {bad[0]}")
    weights = mean_field(fam).kernel_weights
    first = next((i + 1 for i, c in enumerate(weights) if c > 0), None)
    if first is None or layers[0] < first:
        raise _common.UsageError(f"--layers: K_{layers[0]} = 0 (no trained layer up to {layers[0]}, "
                                 f"--trained {args.trained if isinstance(args.trained, str) else ','.join(map(str, args.trained))}); "
                                 f"use layers >= {first}")
    return layers


def _on_atoms(ev, atoms):
    hit = np.zeros(ev.shape, bool)
    for loc in atoms:
        hit |= np.abs(ev - loc) <= 1e-9 * max(abs(loc), np.abs(ev).max(initial=0.0), 1e-300)
    return hit


def _rescaled(d, scale):
    """The law of ``X / scale`` for ``X`` of law ``d``."""
    from ..theory import Density

    return Density(np.asarray(d.x) / scale, np.asarray(d.density) * scale,
                   {loc / scale: mass for loc, mass in d.atoms.items()},
                   tuple(t / scale for t in d.support), d.residual)


def compute(args) -> SpectrumComparison:
    from .. import theory
    from ..sampling import sample_bfk
    from ..seeds import point_seed

    fam = _common.make_family(args, args.depth)
    layers = _layers(args, fam)
    laws = [theory.bfk_density(fam, v) for v in layers]
    normalise = args.normalise
    if normalise is None:
        normalise = "none" if args.mode == "free" else \
            ("atom" if all(len(d.atoms) == 1 for d in laws) else "mean")
    if normalise == "atom":
        bad = [v for v, d in zip(layers, laws) if len(d.atoms) != 1]
        if bad:
            raise _common.UsageError(f"--normalise atom needs a law with one atom (a ReLU MLP's c_v); "
                                     f"K_{bad[0]}'s has {len(laws[layers.index(bad[0])].atoms)}: use "
                                     "--normalise mean")
    normalise = None if normalise == "none" else normalise
    smp = sample_bfk(fam, layers, args.samples, point_seed(_common.seed_of(args), fam, f"bfa-{args.mode}"),
                     mode=args.mode, progress=not args.quiet and None)
    res = SpectrumComparison(fam, args.mode, normalise, np.asarray(layers), smp, [], None, None,
                             None, None, None)
    own = res._draw_scales()
    ks, atom, atom_s = [], [], []
    for j, (v, d) in enumerate(zip(layers, laws)):
        if normalise == "mean":
            d = _rescaled(d, float(theory.bfk_moments(fam, v, 1)[0]))
        elif normalise == "atom":
            d = _rescaled(d, next(iter(d.atoms)))
        ev = (smp.eigenvalues[:, j] / own[:, j, None]).ravel()
        res.theory.append(d)
        ks.append(d.kolmogorov_distance(ev))
        atom.append(sum(d.atoms.values()))
        atom_s.append(_on_atoms(ev, d.atoms).mean())
    res.ks_distance, res.atom_mass, res.atom_mass_sampled = np.array(ks), np.array(atom), np.array(atom_s)
    res.cos_spectrum = theory.bfa(fam, mode="free").cos_spectrum[np.asarray(layers) - 1]
    res.cos_spectrum_sampled = smp.mean("cos_spectrum")
    return res


def _figure(res):
    spectrum = _common.plotting_function("spectrum")
    if spectrum is None:
        return None
    from matplotlib.figure import Figure

    n = len(res.layers)
    fig = Figure(figsize=(4.6 * n, 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, v, d in zip(axes, res.layers, res.theory):
        # res.theory is already on the normalised scale: its mean is 1 (its atom at 1)
        spectrum(res.sampled, int(v), theory=d, ax=ax, normalise=res.normalise,
                 theory_mean=1.0 if res.normalise == "mean" else None)
    fig.suptitle(f"BFK spectrum, {res.family.label}", fontsize=10)
    return fig


def run(args) -> int:
    out = _common.Output(args.out)
    res = compute(args)
    out.csv("spectrum.csv", res)
    out.csv("spectrum_samples.csv", res.samples_table())
    out.csv("spectrum_theory.csv", res.theory_table())
    out.json("spectrum.json", res)
    fig = _figure(res)
    if fig is not None:
        out.png("spectrum.png", fig)
    unit = {None: "", "mean": ", each draw / its M1", "atom": ", each draw / its c_v"}[res.normalise]
    lines = [f"{res.family.label}, {len(res.sampled.sample)} samples, {res.mode} mode{unit}: BFK "
             "spectrum against the width limit (free model)"]
    for row in zip(res.layers, res.ks_distance, res.atom_mass, res.atom_mass_sampled,
                   res.cos_spectrum, res.cos_spectrum_sampled):
        v, ks, a, a_s, c, c_s = row
        lines.append(f"  v={v:<5d} Kolmogorov distance {_common.fmt(ks)}  atom mass {_common.fmt(a)} "
                     f"(sampled {_common.fmt(a_s)})  M1/sqrt(M2) theory {_common.fmt(c)} sampled {_common.fmt(c_s)}")
    return _common.report(args, out, {"result": res.to_dict()}, lines)
