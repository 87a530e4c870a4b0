"""The paper's figures, and beyond: samples with the theory overlaid, as PNG + CSV.

:func:`make_figures` draws every figure named in :data:`FIGURES` into a folder: a PNG and the
tidy CSV behind it (columns ``panel, series, source, x_name, x, y_name, y, sem, samples, width,
depth``; ``source`` is ``"samples"`` (mean and standard error over ``samples`` draws) or a theory:
``"width limit"``, ``"finite width"``, ``"depth limit"``, ``"extrapolated"``, ...).

Figures of Chizat & Netrapalli (arXiv:2311.18718), with the setup of their Sec. 5 (ReLU, ``d = 10``,
``k = 1``, ``W_1`` frozen, balanced learning rates of Eq. (8), the exact first-order step):

* ``fig1a_bfa_layer``: BFA ``theta_v`` against the layer ``v`` at ``L = 200``, width 200, for an
  MLP and ResNets with ``beta = 1/2``, ``1/sqrt(L)`` and ``1/L``;
* ``fig1b_output_depth``: output BFA ``theta_{L-1}`` against depth, same networks;
* ``fig1c_output_scale``: output BFA against the normalised branch scale ``c = sqrt(L) beta``,
  with the depth limit ``phi(c)`` and the conjecture ``cos phi(c) ~ c^-1/2``;
* ``fig2a_sensitivity_mlp``: sensitivity ``S_{L-1}`` (Eq. 4) against depth for NTK, MF+muP and FSC
  MLPs (width 400; :func:`rmtalign.prescribe`);
* ``fig2b_sensitivity_resnet``: the same for FSC ResNets with ``beta = 1/sqrt(L)`` and ``1/L``;

and beyond the paper:

* ``bfk_spectra``: BFK eigenvalues at a few layers against the limiting density;
* ``jacobian_spectra``: squared singular values of layer-to-layer Jacobians against theory;
* ``phase_diagram``: output ``cos theta_{L-1}`` over ``alpha`` (``beta = c L^-alpha``) at finite
  depths and in the limit, with samples, and over the ``(alpha, c)`` plane;
* ``width_convergence``: sampled values across widths, extrapolated to ``m -> infinity``, against
  the width limit (and, for ResNets, the depth limit after it).

Every sampled point is seeded by its content (:func:`rmtalign.seeds.point_seed`), so changing the
sizes or the selection of figures leaves the other points' numbers unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from .results import write_atomic

__all__ = ["FIGURES", "make_figures", "estimated_cost"]

FIGURES = ("fig1a_bfa_layer", "fig1b_output_depth", "fig1c_output_scale", "fig2a_sensitivity_mlp",
           "fig2b_sensitivity_resnet", "bfk_spectra", "jacobian_spectra", "phase_diagram",
           "width_convergence")


@dataclass(frozen=True)
class _Sizes:
    """Every size knob of the figures (the defaults: under 2 minutes on 2 idle cores)."""

    width: int = 200                     # Fig. 1 (the paper's m)
    depth_layer: int = 200               # Fig. 1 (a) (the paper's L)
    depths: tuple = (4, 8, 16, 32, 64, 128, 256, 512, 1024)  # Fig. 1 (b)
    depth_scale: int = 200               # Fig. 1 (c)
    scales: tuple = (0.1, 0.2, 0.5, 1.0, 2.0, 4.0, 8.0)  # Fig. 1 (c): c
    samples: int = 5                     # Fig. 1 ("a few random realizations"; (c): 5 draws)
    width_sens: int = 400                # Fig. 2 (the paper's m)
    depths_sens: tuple = (4, 8, 16, 32, 64, 128, 256)
    samples_sens: int = 5
    spectrum_width: int = 200
    spectrum_depth: int = 32
    spectrum_samples: int = 4
    phase_depths: tuple = (10, 100, 1000, 10000)  # theory lines
    phase_alphas: int = 21               # theory grid over alpha in [0, 1]
    phase_map_depth: int = 1000          # the (alpha, c) map
    phase_map_points: int = 21           # its grid, per axis
    phase_sampled_depth: int = 64
    phase_width: int = 200
    phase_points: int = 9                # sampled alphas
    phase_samples: int = 4
    widths: tuple = (32, 64, 128, 256)
    width_depths: tuple = (8, 32)
    width_samples: int = 16


_PAPER = _Sizes(depths=(4, 8, 16, 32, 64, 128, 256, 512, 1024), depth_scale=400,
                scales=(0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.0, 16.0),
                samples=5, depths_sens=(4, 8, 16, 32, 64, 128, 256, 512), samples_sens=8,
                spectrum_width=400, spectrum_depth=64, spectrum_samples=8,
                phase_depths=(10, 100, 1000, 10000, 100000), phase_alphas=41,
                phase_map_points=31, phase_sampled_depth=128, phase_width=400, phase_points=17,
                phase_samples=8, widths=(50, 100, 200, 400, 800), width_depths=(8, 32, 128),
                width_samples=24)



# -- the figures' data ---------------------------------------------------------------------------
class _Table:
    """Rows of the tidy CSV behind a figure."""

    COLUMNS = ("panel", "series", "source", "x_name", "x", "y_name", "y", "sem", "samples",
               "width", "depth")

    def __init__(self):
        self.rows = {c: [] for c in self.COLUMNS}

    def add(self, panel, series, source, x_name, x, y_name, y, sem=np.nan, samples=0,
            width=np.nan, depth=np.nan):
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        n = max(x.size, y.size)
        cols = {"panel": panel, "series": series, "source": source, "x_name": x_name, "x": x,
                "y_name": y_name, "y": y, "sem": sem, "samples": samples, "width": width,
                "depth": depth}
        for k, v in cols.items():
            v = np.asarray(v, dtype=object if isinstance(v, str) else None)
            self.rows[k].extend(np.broadcast_to(v, (n,)).tolist())

    def write(self, path):
        from .results import write_csv

        return write_csv(path, {k: np.asarray(v, dtype=object) for k, v in self.rows.items()})


@dataclass
class _Point:
    """One computation of a figure: ``run()`` gives the result; ``cost`` ~ samples L m^2."""

    cost: float
    run: object


@dataclass
class _Plan:
    points: dict           # key -> _Point
    draw: object           # draw(results: key -> result) -> (fig, _Table)


def _bfa_point(grid, family, samples, mode="exact"):
    from .sampling import sample_bfa
    from .seeds import point_seed

    return _Point(float(samples) * family.depth * family.width ** 2,
                  lambda: sample_bfa(family, samples, point_seed(grid, family, f"bfa-{mode}"),
                                     mode=mode, progress=False))


def _sample_rows(table, panel, series, x_name, x, y_name, results, quantity, layer=-1):
    for xi, r in zip(np.atleast_1d(x), results):
        table.add(panel, series, "samples", x_name, xi, y_name, r.mean(quantity)[layer],
                  r.sem(quantity)[layer], len(r.sample), r.family.width, r.family.depth)


def _figure(ncols, nrows=1, size=(5.2, 4.0)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


# -- Fig. 1 --------------------------------------------------------------------------------------
def _fig1_kinds(L, m):
    """The networks of Fig. 1: (key, legend label, family)."""
    from .families import MLP, ResNet

    return [("mlp", r"MLP ($\beta$ = 1)", MLP(L, m)),
            ("resnet-0.5", r"ResNet $\beta$ = 1/2", ResNet(L, m, 0.5)),
            ("resnet-sqrt", r"ResNet $\beta = 1/\sqrt{L}$", ResNet.scaled(L, m, 1.0, 0.5)),
            ("resnet-lin", r"ResNet $\beta = 1/L$", ResNet.scaled(L, m, 1.0, 1.0))]


def _fig1a(s, grid):
    from . import plotting, theory

    kinds = _fig1_kinds(s.depth_layer, s.width)
    points = {key: _bfa_point(grid, fam, s.samples) for key, _, fam in kinds}

    def draw(res):
        table = _Table()
        fig, axes = _figure(1, size=(7.0, 5.6))
        ax = axes[0, 0]
        sampled, th = {}, {}
        for key, label, fam in kinds:
            r, t = res[key], theory.bfa(fam)
            sampled[label], th[label] = r, t
            table.add("a", key, "samples", "layer", r.layers, "angle_deg", r.mean("angle_deg"),
                      r.sem("angle_deg"), len(r.sample), fam.width, fam.depth)
            table.add("a", key, "width limit", "layer", t.layers, "angle_deg", t.angle_deg,
                      width=np.inf, depth=fam.depth)
        plotting.alignment_curve(sampled, th, ax=ax, quantity="angle_deg")
        mlp = kinds[0][2]
        fw = theory.finite_width(mlp)  # L/m ~ 1: the MLP's finite-width correction is visible
        ax.plot(fw.layers, np.degrees(np.arccos(np.clip(fw.cos, -1, 1))), "--", color="C0", lw=1.1,
                label=f"{kinds[0][1]}: theory (finite width $m$ = {mlp.width})")
        table.add("a", "mlp", "finite width", "layer", fw.layers, "angle_deg",
                  np.degrees(np.arccos(np.clip(fw.cos, -1, 1))), width=mlp.width, depth=mlp.depth)
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))
        ax.set_title(f"Fig. 1 (a): BFA against layer, $L$ = {s.depth_layer}, $m$ = {s.width}")
        return fig, table

    return _Plan(points, draw)


def _fig1b(s, grid):
    from . import plotting, theory

    depths = sorted(set(int(L) for L in s.depths))
    kinds = {L: _fig1_kinds(L, s.width) for L in depths}
    points = {(key, L): _bfa_point(grid, fam, s.samples)
              for L in depths for key, _, fam in kinds[L]}

    def draw(res):
        table = _Table()
        fig, axes = _figure(1, size=(7.0, 5.6))
        ax = axes[0, 0]
        dense = np.union1d(np.geomspace(depths[0], depths[-1], 40).astype(int), depths)
        for i, (key, label, _) in enumerate(kinds[depths[0]]):
            results = [res[(key, L)] for L in depths]
            th_fams = [_fig1_kinds(int(L), s.width)[i][2] for L in dense]
            th = np.array([theory.bfa(f).angle_deg[-1] for f in th_fams])
            plotting.output_curve(depths, results, th, ax=ax, quantity="angle_deg", label=label,
                                  colour=f"C{i}", theory_x=dense, xlabel=r"depth $L$")
            _sample_rows(table, "b", key, "depth", depths, "angle_deg", results, "angle_deg")
            table.add("b", key, "width limit", "depth", dense, "angle_deg", th, width=np.inf)
        lim = theory.depth_limit(0.5, 1.0).angle_deg
        ax.axhline(lim, color="C2", ls=":", lw=1.0,
                   label=r"ResNet $\beta = 1/\sqrt{L}$: theory ($L\to\infty$)")
        table.add("b", "resnet-sqrt", "depth limit", "depth", np.inf, "angle_deg", lim,
                  width=np.inf)
        ax.set_xscale("log")
        ax.set_ylim(0, 90)
        ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13))
        ax.set_title(f"Fig. 1 (b): output BFA against depth, $m$ = {s.width}")
        return fig, table

    return _Plan(points, draw)


def _fig1c(s, grid):
    from . import plotting, theory
    from .families import ResNet

    L, m = s.depth_scale, s.width
    cs = [float(c) for c in s.scales if c <= np.sqrt(L)]  # beta = c / sqrt(L) <= 1
    fams = [ResNet.scaled(L, m, c, 0.5) for c in cs]
    points = {c: _bfa_point(grid, f, s.samples) for c, f in zip(cs, fams)}

    def draw(res):
        table = _Table()
        fig, axes = _figure(1, size=(7.0, 4.6))
        ax = axes[0, 0]
        dense = np.union1d(np.geomspace(min(cs), max(cs), 40), cs)  # theory at the samples too
        th = np.array([theory.bfa(ResNet.scaled(L, m, c, 0.5)).angle_deg[-1] for c in dense])
        results = [res[c] for c in cs]
        plotting.output_curve(cs, results, th, ax=ax, quantity="angle_deg",
                              label=f"ResNet $L$ = {L}", colour="C2", theory_x=dense,
                              xlabel=r"normalised branch scale $c = \sqrt{L}\,\beta$")
        lim = np.array([theory.depth_limit(0.5, c).angle_deg for c in dense])
        ax.plot(dense, lim, "k--", lw=1.0, label=r"theory, $L\to\infty$: $\varphi(c)$")
        big = dense[dense >= 1]
        conj = np.degrees(np.arccos(big ** -0.5))
        ax.plot(big, conj, "k:", lw=1.0, label=r"conjecture $\cos\varphi(c) = c^{-1/2}$")
        _sample_rows(table, "c", "resnet-sqrt", "c", cs, "angle_deg", results, "angle_deg")
        table.add("c", "resnet-sqrt", "width limit", "c", dense, "angle_deg", th, width=np.inf,
                  depth=L)
        table.add("c", "resnet-sqrt", "depth limit", "c", dense, "angle_deg", lim, width=np.inf,
                  depth=np.inf)
        table.add("c", "resnet-sqrt", "conjecture c^-1/2", "c", big, "angle_deg", conj)
        ax.set_xscale("log")
        ax.set_ylim(0, 90)
        ax.legend(fontsize=7)
        ax.set_title(f"Fig. 1 (c): output BFA against the branch scale, $m$ = {m}")
        return fig, table

    return _Plan(points, draw)


# -- Fig. 2 --------------------------------------------------------------------------------------
def _sensitivity_theory(family):
    """Width-limit ``S_{L-1} = 1 / (cos theta_{L-1} sqrt(m |b_{L-1}|^2))`` (Eq. 4)."""
    from . import theory

    mf = theory.mean_field(family)
    cos = theory.bfa(family).cos[-1]
    return 1.0 / (cos * np.sqrt(family.width * mf.backward_sq[family.depth - 2]))


def _sensitivity_plan(s, grid, series, panel, title, logy):
    from . import plotting
    from .prescriptions import prescribe

    depths = sorted(set(int(L) for L in s.depths_sens))
    fams = {(key, L): prescribe(make(L, s.width_sens), scheme).family()
            for key, _, make, scheme in series for L in depths}
    points = {k: _bfa_point(grid, f, s.samples_sens) for k, f in fams.items()}

    def draw(res):
        table = _Table()
        fig, axes = _figure(1, size=(7.0, 4.6))
        ax = axes[0, 0]
        for i, (key, label, _, _) in enumerate(series):
            results = [res[(key, L)] for L in depths]
            th = np.array([_sensitivity_theory(fams[(key, L)]) for L in depths])
            plotting.output_curve(depths, results, th, ax=ax, quantity="sensitivity", label=label,
                                  colour=f"C{i}", xlabel=r"depth $L$")
            _sample_rows(table, panel, key, "depth", depths, "sensitivity", results, "sensitivity")
            table.add(panel, key, "width limit", "depth", depths, "sensitivity", th,
                      width=s.width_sens, depth=depths)
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
        ax.set_title(title)
        return fig, table

    return _Plan(points, draw)


def _fig2a(s, grid):
    from .families import MLP

    series = [(scheme, label, MLP, scheme)
              for scheme, label in (("ntk", "NTK"), ("mfmup", r"MF+$\mu$P"), ("fsc", "FSC"))]
    return _sensitivity_plan(s, grid, series, "a", f"Fig. 2 (a): sensitivity of ReLU MLPs, "
                                                   f"$m$ = {s.width_sens}", logy=True)


def _fig2b(s, grid):
    from .families import ResNet

    series = [("fsc-sqrt", r"FSC ResNet $\beta = 1/\sqrt{L}$",
               lambda L, m: ResNet.scaled(L, m, 1.0, 0.5), "fsc"),
              ("fsc-lin", r"FSC ResNet $\beta = 1/L$",
               lambda L, m: ResNet.scaled(L, m, 1.0, 1.0), "fsc")]
    return _sensitivity_plan(s, grid, series, "b", f"Fig. 2 (b): sensitivity of ReLU ResNets, "
                                                   f"$m$ = {s.width_sens}", logy=False)


# -- beyond the paper ----------------------------------------------------------------------------
def _spectrum_families(s):
    from .families import MLP, ResNet

    L, m = s.spectrum_depth, s.spectrum_width
    # The limiting laws are the free model's: ReLU ResNets' masks correlate across depth, so
    # their samples are drawn in free mode; an MLP's exact masks are asymptotically free.
    return [("mlp", "ReLU MLP", MLP(L, m), "exact"),
            ("resnet-sqrt", r"ReLU ResNet $\beta = 1/\sqrt{L}$", ResNet.scaled(L, m, 1.0, 0.5),
             "free")]


def _spectrum_layers(L):
    return sorted({3, max(3, L // 4), L - 1})


def _bfk_spectra(s, grid):
    from . import plotting, theory
    from .sampling import sample_bfk
    from .seeds import point_seed

    kinds = _spectrum_families(s)
    layers = _spectrum_layers(s.spectrum_depth)

    def point(fam, mode):
        return _Point(float(s.spectrum_samples) * fam.depth * fam.width ** 3 / 100.0,
                      lambda: sample_bfk(fam, layers, s.spectrum_samples,
                                         point_seed(grid, fam, f"bfk-{mode}"), mode=mode,
                                         progress=False))

    points = {key: point(fam, mode) for key, _, fam, mode in kinds}

    def draw(res):
        table = _Table()
        fig, axes = _figure(len(layers), len(kinds), size=(4.6, 3.6))
        for i, (key, label, fam, mode) in enumerate(kinds):
            r = res[key]
            for j, v in enumerate(layers):
                d = theory.bfk_density(fam, v)
                ax = axes[i, j]
                # An exact draw's scale is its own (learning rates measured on the draw, so its
                # c_l follow |b_l|): the MLP's draws and theory are drawn in units of their atom
                # c_v. Free-mode draws use the width-limit c_l: no rescaling.
                norm = "atom" if mode == "exact" else None
                plotting.spectrum(r, v, d, ax=ax, normalise=norm)
                ax.set_title(f"{label}, $L$ = {fam.depth}, $m$ = {fam.width}: $K_{{{v}}}$ "
                             f"({mode} mode)", fontsize=8)
                ax.legend(fontsize=6)
                e = r.eigenvalues[:, j, :]
                unit, scale = "eigenvalue", 1.0
                if norm == "atom":
                    own = [x[plotting._repeated(x)].min() for x in e]
                    e = e / np.array(own)[:, None]
                    unit, scale = "eigenvalue/c_v", next(iter(d.atoms))
                eig = np.sort(e.ravel())
                table.add(f"{key} v={v}", key, "samples", unit, eig, "ecdf",
                          np.arange(1, eig.size + 1) / eig.size, samples=len(r.sample),
                          width=fam.width, depth=fam.depth)
                table.add(f"{key} v={v}", key, "width limit", unit, d.x / scale, "density",
                          d.density * scale, width=np.inf, depth=fam.depth)
                for loc, w in d.atoms.items():
                    table.add(f"{key} v={v}", key, "width limit atom", unit, loc / scale,
                              "mass", w, width=np.inf, depth=fam.depth)
        fig.suptitle("BFK spectra: samples against the limiting density")
        return fig, table

    return _Plan(points, draw)


def _jacobian_blocks(L):
    return [(1, min(5, L - 1)), (1, L - 1)]


def _jacobian_spectra(s, grid):
    from . import plotting, theory
    from .sampling import sample_jacobian
    from .seeds import point_seed

    kinds = _spectrum_families(s)
    blocks = _jacobian_blocks(s.spectrum_depth)

    def point(fam, mode, a, b):
        return _Point(float(s.spectrum_samples) * (b - a) * fam.width ** 3 / 40.0,
                      lambda: sample_jacobian(fam, a, b, s.spectrum_samples,
                                              point_seed(grid, fam, f"jacobian-{a}-{b}-{mode}"),
                                              mode=mode, progress=False))

    points = {(key, a, b): point(fam, mode, a, b) for key, _, fam, mode in kinds
              for a, b in blocks}

    def draw(res):
        table = _Table()
        fig, axes = _figure(len(blocks), len(kinds), size=(4.8, 3.6))
        for i, (key, label, fam, mode) in enumerate(kinds):
            for j, (a, b) in enumerate(blocks):
                r = res[(key, a, b)]
                d = theory.jacobian_density(fam, a, b)
                ax = axes[i, j]
                plotting.jacobian_spectrum(r, d, ax=ax)
                ax.set_title(f"{label}, $m$ = {fam.width} ({mode} mode)", fontsize=8)
                ax.legend(fontsize=6)
                lg = np.sort(r.log_sq_singular_values.ravel()) / np.log(10.0)
                panel = f"{key} {a}->{b}"
                table.add(panel, key, "samples", "log10_sq_singular_value", lg, "ecdf",
                          np.arange(1, lg.size + 1) / lg.size, samples=len(r.sample),
                          width=fam.width, depth=fam.depth)
                table.add(panel, key, "width limit", "sq_singular_value", d.x, "density",
                          d.density, width=np.inf, depth=fam.depth)
                for loc, w in d.atoms.items():
                    table.add(panel, key, "width limit atom", "sq_singular_value", loc, "mass", w,
                              width=np.inf, depth=fam.depth)
        fig.suptitle("Jacobian spectra: samples against the limiting law")
        return fig, table

    return _Plan(points, draw)


def _phase(s, grid):
    from . import plotting, theory
    from .families import ResNet

    L, m = s.phase_sampled_depth, s.phase_width
    alphas_s = np.linspace(0.0, 1.0, s.phase_points)
    fams = [ResNet.scaled(L, m, 1.0, float(a)) for a in alphas_s]
    points = {float(a): _bfa_point(grid, f, s.phase_samples) for a, f in zip(alphas_s, fams)}

    def draw(res):
        table = _Table()
        fig, axes = _figure(2, size=(5.6, 4.4))
        depths = tuple(sorted(set(int(d) for d in s.phase_depths) | {L}))
        pd = theory.phase_diagram(np.linspace(0, 1, s.phase_alphas), c=1.0, depths=depths)
        results = [res[float(a)] for a in alphas_s]
        plotting.phase_diagram(pd, ax=axes[0, 0], sampled={L: (alphas_s, results)})
        axes[0, 0].legend(fontsize=7)
        axes[0, 0].set_title(r"output $\cos\theta_{L-1}$ at $c$ = 1: theory and samples",
                             fontsize=9)
        for Ld, row in zip(pd.depths, pd.cos):
            table.add("alpha", "resnet", "width limit", "alpha", pd.alphas, "cos", row,
                      width=np.inf, depth=Ld)
        table.add("alpha", "resnet", "depth limit", "alpha", pd.alphas, "cos", pd.limit,
                  width=np.inf, depth=np.inf)
        _sample_rows(table, "alpha", "resnet", "alpha", alphas_s, "cos", results, "cos")
        # the (alpha, c) plane at one finite depth: the band around alpha = 1/2 where the output
        # BFA is non-trivial narrows as L grows (width ~ 1/log L)
        Lm, n = s.phase_map_depth, s.phase_map_points
        al = np.linspace(0.0, 1.0, n)
        cs = np.geomspace(0.1, 10.0, n)
        cmap = np.full((n, n), np.nan)
        for i, c in enumerate(cs):
            for j, a in enumerate(al):
                if c * Lm ** (-a) <= 1.0:
                    cmap[i, j] = theory.bfa(ResNet.scaled(Lm, 1000, float(c), float(a))).cos[-1]
        ax = axes[0, 1]
        mesh = ax.pcolormesh(al, cs, cmap, shading="nearest", cmap="viridis", vmin=0, vmax=1)
        fig.colorbar(mesh, ax=ax, label=r"output $\cos\theta_{L-1}$ (width limit)")
        ax.contour(al, cs, cmap, levels=[0.1, 0.5, 0.9], colors="w", linewidths=0.8)
        ax.axvline(0.5, color="w", ls=":", lw=0.8)
        ax.set(yscale="log", xlabel=r"$\alpha$", ylabel=r"$c$  ($\beta = c\,L^{-\alpha}$)")
        ax.set_title(rf"the $(\alpha, c)$ plane at $L$ = {Lm} (theory; white: $\beta > 1$)",
                     fontsize=9)
        A, C = np.meshgrid(al, cs)
        table.add("alpha-c", "resnet", "width limit", "alpha", A.ravel(), "cos", cmap.ravel(),
                  width=np.inf, depth=Lm)
        table.add("alpha-c", "resnet", "width limit", "c", C.ravel(), "cos", cmap.ravel(),
                  width=np.inf, depth=Lm)
        fig.suptitle(r"Phase diagram of ReLU ResNets with $\beta = c\,L^{-\alpha}$")
        return fig, table

    return _Plan(points, draw)


def _width_convergence(s, grid):
    from . import plotting, theory
    from .families import MLP, ResNet
    from .sampling import width_limit

    widths = sorted(set(int(m) for m in s.widths))
    depths = sorted(set(int(L) for L in s.width_depths))
    kinds = [("mlp", "ReLU MLP", lambda L: MLP(L, widths[0])),
             ("resnet-sqrt", r"ReLU ResNet $\beta = 1/\sqrt{L}$",
              lambda L: ResNet.scaled(L, widths[0], 1.0, 0.5))]

    def point(fam):
        return _Point(float(s.width_samples) * fam.depth * sum(m * m for m in widths),
                      lambda: width_limit(fam, widths, "cos", s.width_samples, grid,
                                          progress=False))

    points = {(key, L): point(make(L)) for key, _, make in kinds for L in depths}

    def draw(res):
        table = _Table()
        fig, axes = _figure(2, size=(5.6, 4.4))
        for i, (key, label, make) in enumerate(kinds):
            ax = axes[0, i]
            for j, L in enumerate(depths):
                wl, fam = res[(key, L)], make(L)
                th = float(theory.bfa(fam).cos[-1])
                plotting.width_convergence(wl, th, ax=ax, label=f"$L$ = {L}", colour=f"C{j}")
                table.add(key, key, "samples", "width", widths, "cos", wl.means[:, -1],
                          wl.sems[:, -1], s.width_samples, widths, L)
                table.add(key, key, "extrapolated", "width", np.inf, "cos", wl.limit[-1],
                          wl.limit_se[-1], width=np.inf, depth=L)
                table.add(key, key, "width limit", "width", np.inf, "cos", th, width=np.inf,
                          depth=L)
                fw_widths = [m for m in widths if m >= 16]  # finite_width's smallest width
                if key == "mlp" and fw_widths:  # exact in depth at every width
                    fw = [float(theory.finite_width(fam.replace(width=m)).cos[-1])
                          for m in fw_widths]
                    ax.plot(1.0 / np.asarray(fw_widths, float), fw, "--", color=f"C{j}", lw=1.0,
                            label=f"$L$ = {L}: theory (finite width)")
                    table.add(key, key, "finite width", "width", fw_widths, "cos", fw,
                              width=fw_widths, depth=L)
            if key == "resnet-sqrt":
                lim = theory.depth_limit(0.5, 1.0).cos
                ax.axhline(lim, color="k", ls="--", lw=1.0, label=r"theory, $L\to\infty$ after $m$")
                table.add(key, key, "depth limit", "width", np.inf, "cos", lim, width=np.inf,
                          depth=np.inf)
            ax.legend(fontsize=6, ncol=2)
            ax.set_title(f"{label}: width, then depth", fontsize=9)
        fig.suptitle(r"Sampled output $\cos\theta_{L-1}$ across widths against the limits")
        return fig, table

    return _Plan(points, draw)


_PLANS = {"fig1a_bfa_layer": _fig1a, "fig1b_output_depth": _fig1b, "fig1c_output_scale": _fig1c,
          "fig2a_sensitivity_mlp": _fig2a, "fig2b_sensitivity_resnet": _fig2b,
          "bfk_spectra": _bfk_spectra, "jacobian_spectra": _jacobian_spectra,
          "phase_diagram": _phase, "width_convergence": _width_convergence}


# -- the front end -------------------------------------------------------------------------------
def _selection(only):
    if only is None:
        return list(FIGURES)
    names = [only] if isinstance(only, str) else list(only)
    if not names:
        raise ValueError(f"only must name at least one figure among {', '.join(FIGURES)}; got "
                         f"{only!r}")
    for n in names:
        if not isinstance(n, str) or n not in FIGURES:
            raise ValueError(f"only must hold figure names among {', '.join(FIGURES)}; got {n!r}")
    return [n for n in FIGURES if n in names]


def _resolve_sizes(paper, overrides):
    sizes = _PAPER if paper else _Sizes()
    if overrides:
        known = {f.name for f in fields(_Sizes)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"_sizes: unknown knobs {bad}; allowed: {', '.join(sorted(known))}")
        sizes = replace(sizes, **overrides)
    return sizes


def _save_png(fig, path, dpi):
    """Save ``fig`` at ``path`` atomically (a reader never sees a half-written PNG)."""
    return write_atomic(path, lambda fh: fig.savefig(fh, dpi=dpi, format="png"), "wb")


def estimated_cost(paper=False, only=None, *, _sizes=None):
    """The sampling cost of :func:`make_figures` in units of ``samples x L x m^2`` (the matrix-free
    passes; the BFK and Jacobian points are converted to the same units), per figure."""
    sizes = _resolve_sizes(paper, _sizes)
    grid = np.random.SeedSequence(0)
    return {name: sum(p.cost for p in _PLANS[name](sizes, grid).points.values())
            for name in _selection(only)}


def make_figures(out_dir, *, paper=False, only=None, progress=None, seed=0, dpi=130, _sizes=None):
    """Draw the paper's figures and the others of :data:`FIGURES` (samples with the theory
    overlaid) as PNGs, each with the CSV behind it.

    Parameters
    ----------
    out_dir : str or Path
        Folder for ``<name>.png`` and ``<name>.csv`` (created if missing). Files are written
        atomically, each figure as soon as its points are done.
    paper : bool
        The paper's sizes (Fig. 1 at width 200 with depths to 1024, Fig. 2 at width 400, larger
        samples everywhere): about 5 minutes on 2 idle cores. The default sizes keep the paper's
        widths and ``L = 200`` of Fig. 1 (a) with fewer depths and samples: under 2 minutes.
    only : str or sequence of str, optional
        Names among :data:`FIGURES` (default: all of them).
    progress : bool, optional
        A progress bar over the sampled points on stderr (None: on a terminal, for long jobs).
    seed : int, numpy.random.SeedSequence or None
        The grid's seed; each point's is :func:`rmtalign.seeds.point_seed` of it and the point's
        family, so a point's numbers do not depend on which figures or sizes were asked for.
    dpi : int
        Resolution of the PNGs.

    Returns
    -------
    list of Path
        The files written, PNG then CSV for each figure, in the order of :data:`FIGURES`.
    """
    from ._runtime import progress as _progress
    from ._validate import check_int
    from .seeds import resolve_seed

    if not isinstance(paper, bool):
        raise TypeError(f"paper must be True or False, got {paper!r}")
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    dpi = check_int("dpi", dpi, minimum=10)
    names = _selection(only)
    sizes = _resolve_sizes(paper, _sizes)
    grid, _ = resolve_seed(seed)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir must be a folder, got the file {str(out)!r}")
    out.mkdir(parents=True, exist_ok=True)

    plans = {name: _PLANS[name](sizes, grid) for name in names}
    total = sum(len(p.points) for p in plans.values())
    # flops: three matrix-vector passes (2 flops a multiply-add) per unit of cost
    work = 6.0 * sum(pt.cost for p in plans.values() for pt in p.points.values())
    bar = _progress(total, progress, "figures", work)
    written = []
    try:
        for name, plan in plans.items():
            results = {}
            for key, point in plan.points.items():
                if bar is not None:
                    bar.set_postfix_str(name)
                results[key] = point.run()
                if bar is not None:
                    bar.update(1)
            fig, table = plan.draw(results)
            written.append(_save_png(fig, out / f"{name}.png", dpi))
            written.append(table.write(out / f"{name}.csv"))
    finally:
        if bar is not None:
            bar.close()
    return written
