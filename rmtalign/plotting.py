"""matplotlib figures of sampled and theoretical results.

Every function draws on ``ax`` (a new figure when ``ax=None``) and returns ``(fig, ax)``; none
calls ``plt.show`` or touches pyplot's global state: new figures are
:class:`matplotlib.figure.Figure` objects, which save to PNG on any backend (``fig.savefig``).
Samples are drawn as markers with error bars (mean +- standard error over samples), theory as
lines; legends say which is which.

* :func:`alignment_curve`: ``cos theta_v`` (or ``theta_v``) against the layer ``v``;
* :func:`output_curve`: one layer's quantity (the output BFA, the sensitivity ...) against a
  scanned parameter (depth, branch scale, ...);
* :func:`spectrum`: BFK eigenvalue histogram at one layer against the limiting density;
* :func:`jacobian_spectrum`: squared singular values of a layer-to-layer Jacobian against theory;
* :func:`width_convergence`: sampled values across widths, their ``1/m`` fit and the width limit;
* :func:`phase_diagram`: the output ``cos theta_{L-1}`` of ResNets with ``beta = c L^-alpha``;
* :func:`depth_curves`: the two panels of ``rmtalign depth-curves``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["alignment_curve", "output_curve", "spectrum", "jacobian_spectrum",
           "width_convergence", "phase_diagram", "depth_curves", "plot_depth_curves",
           "QUANTITY_LABELS"]

#: Axis labels (mathtext) of the per-layer quantities of SampledBFA / TheoryBFA.
QUANTITY_LABELS = {
    "cos": r"$\cos\theta_v$",
    "angle_deg": r"$\theta_v$ (degrees)",
    "sensitivity": r"sensitivity $S_v$",
    "b_norm": r"$\|b_v\|$",
    "fdot_norm": r"$\|\dot f_v\|$",
    "loss_decay": r"$\dot{\mathcal{L}}_{\leq v}$",
}
_OUTPUT_LABELS = {
    "cos": r"output $\cos\theta_{L-1}$",
    "angle_deg": r"output BFA $\theta_{L-1}$ (degrees)",
    "sensitivity": r"sensitivity $S_{L-1}$",
    "b_norm": r"$\|b_{L-1}\|$",
    "fdot_norm": r"$\|\dot f_{L-1}\|$",
    "loss_decay": r"$\dot{\mathcal{L}}_{\leq L-1}$",
}


def _new_axes(ax, figsize=(5.5, 4.0)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def _as_mapping(obj, name):
    """``{label: result}`` from one result, a sequence of results or a mapping (None -> {})."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        return {_label(r, name, i): r for i, r in enumerate(obj)}
    return {_label(obj, name, 0): obj}


def _label(result, name, i):
    fam = getattr(result, "family", None)
    return getattr(fam, "label", None) or f"{name} {i}"


def _check_quantity(quantity):
    from ._validate import check_choice

    return check_choice("quantity", quantity, tuple(QUANTITY_LABELS))


def _theory_values(result, quantity):
    """Per-layer ``quantity`` of a theory result (``cos`` and ``angle_deg`` are what it has)."""
    if quantity == "angle_deg" and not hasattr(result, "angle_deg"):
        from .alignment import angle_deg

        return angle_deg(np.asarray(result.cos, float))
    if not hasattr(result, quantity):
        raise ValueError(f"theory result {type(result).__name__} has no {quantity!r}; "
                         "theory curves give 'cos' or 'angle_deg'")
    return np.asarray(getattr(result, quantity), float)


def _legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **kw)


def alignment_curve(sampled=None, theory=None, ax=None, *, quantity="cos", logy=False):
    """Per-layer alignment: samples as markers with error bars, theory as lines.

    Parameters
    ----------
    sampled : SampledBFA, sequence or mapping of them, optional
        Drawn as mean +- standard error over samples at each layer ``v``. A mapping gives the
        legend labels; otherwise the family's label is used.
    theory : TheoryBFA or FiniteWidthBFA, sequence or mapping of them, optional
        Any result with ``layers`` and ``cos``, drawn as lines. A theory entry whose label matches a sampled one shares its colour.
    ax : matplotlib Axes, optional
        Where to draw (a new figure when None).
    quantity : {"cos", "angle_deg", "sensitivity", "b_norm", "fdot_norm", "loss_decay"}
        The per-layer quantity (theory results give ``cos`` and ``angle_deg``).
    logy : bool
        Logarithmic y axis (e.g. for the ``v^{-1/2}`` decay of MLPs).

    Returns
    -------
    (fig, ax)
    """
    quantity = _check_quantity(quantity)
    samples, theories = _as_mapping(sampled, "samples"), _as_mapping(theory, "theory")
    if not samples and not theories:
        raise ValueError("alignment_curve needs sampled or theory results; got neither")
    fig, ax = _new_axes(ax)
    colours = {}
    for i, (label, r) in enumerate(samples.items()):
        mu, se = r.mean(quantity), r.sem(quantity)
        n = len(np.atleast_1d(r.sample))
        every = max(1, len(r.layers) // 50)  # at most ~50 markers a curve, or they merge
        eb = ax.errorbar(r.layers, mu, yerr=se, fmt="o", ms=3, capsize=1.5, lw=0.8,
                         markevery=every, errorevery=every, color=f"C{i}",
                         label=f"{label}: samples (n={n})")
        colours[label] = eb.lines[0].get_color()
    for j, (label, r) in enumerate(theories.items()):
        colour = colours.get(label, f"C{len(samples) + j}")
        # FiniteWidthBFA (theory.finite_width) predicts the sampled width, the others its limit
        kind = "finite width" if hasattr(r, "cos_limit") else "width limit"
        ax.plot(r.layers, _theory_values(r, quantity), "-", lw=1.3, color=colour,
                label=f"{label}: theory ({kind})")
    ax.set_xlabel(r"layer $v$")
    ax.set_ylabel(QUANTITY_LABELS[quantity])
    if logy:
        ax.set_yscale("log")
    elif quantity == "angle_deg":
        ax.set_ylim(0, 90)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig, ax


def output_curve(x, sampled=None, theory=None, ax=None, *, quantity="angle_deg", layer=-1,
                 label=None, colour=None, xlabel=None, theory_x=None):
    """One layer's quantity against a scanned parameter (depth, branch scale, width ...).

    Parameters
    ----------
    x : array_like
        The scanned values, one per entry of ``sampled``.
    sampled : sequence of SampledBFA, optional
        One result per ``x``: mean +- standard error over samples of ``quantity`` at
        ``layers[layer]`` (default: the output feature ``v = L-1``), drawn as markers.
    theory : array_like, optional
        Theory values of the same quantity at ``theory_x`` (default ``x``), drawn as a line.
    ax : matplotlib Axes, optional
    quantity : str
        A per-layer quantity of SampledBFA (see :func:`alignment_curve`).
    layer : int
        Position in ``layers`` (``-1``: the output feature).
    label : str, optional
        Legend stem: ``"<label>: samples"`` and ``"<label>: theory"``.
    colour : str, optional
        One colour for both.
    xlabel : str, optional
    theory_x : array_like, optional
        The scanned values of ``theory`` (default: ``x``), e.g. a finer grid than the samples'.

    Returns
    -------
    (fig, ax)
    """
    quantity = _check_quantity(quantity)
    fig, ax = _new_axes(ax)
    x = np.asarray(x, float)
    stem = f"{label}: " if label else ""
    if sampled is not None:
        sampled = list(sampled)
        if len(sampled) != x.size:
            raise ValueError(f"sampled must hold one result per x ({x.size}), got {len(sampled)}")
        mu = np.array([r.mean(quantity)[layer] for r in sampled])
        se = np.array([r.sem(quantity)[layer] for r in sampled])
        eb = ax.errorbar(x, mu, yerr=se, fmt="o", ms=3.5, capsize=2, lw=0.9, color=colour,
                         label=f"{stem}samples")
        colour = eb.lines[0].get_color()
    if theory is not None:
        tx = x if theory_x is None else np.asarray(theory_x, float)
        ty = np.asarray(theory, float)
        if ty.shape != tx.shape:
            raise ValueError(f"theory must have one value per x ({tx.size}), got shape {ty.shape}")
        ax.plot(tx, ty, "-", lw=1.3, color=colour, label=f"{stem}theory")
    ax.set_ylabel(_OUTPUT_LABELS[quantity] if layer == -1 else QUANTITY_LABELS[quantity])
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig, ax


def _layer_position(sampled, layer):
    from ._validate import check_int

    layer = check_int("layer", layer)
    where = np.flatnonzero(np.asarray(sampled.layers) == layer)
    if where.size == 0:
        allowed = np.asarray(sampled.layers).tolist()
        raise ValueError(f"layer must be one of the sampled layers {allowed}; got {layer!r}")
    return int(where[0])


def _repeated(eigenvalues, rtol=1e-8):
    """Mask of the eigenvalues of one sample that occur more than once (to ``rtol`` of the
    largest): a sampled atom, e.g. ``c_v`` with multiplicity ``m - rank(A_v)`` in a ReLU MLP's
    BFK. A continuous law has no repeated eigenvalues."""
    e = np.asarray(eigenvalues, float)
    order = np.argsort(e)
    s = e[order]
    close = np.diff(s) <= rtol * max(float(np.max(np.abs(s))), 1e-300)
    rep = np.zeros(s.size, bool)
    rep[:-1] |= close
    rep[1:] |= close
    out = np.empty_like(rep)
    out[order] = rep
    return out


def _density_mean(theory):
    """``int x dF`` of a Density: atoms plus the trapezoidal integral of ``x p(x)``."""
    x, d = np.asarray(theory.x, float), np.asarray(theory.density, float)
    y = x * d
    return float(0.5 * np.sum((y[1:] + y[:-1]) * np.diff(x))
                 + sum(loc * w for loc, w in theory.atoms.items()))


def spectrum(sampled, layer, theory=None, ax=None, *, bins=60, log=None, normalise=None,
             theory_mean=None):
    """BFK eigenvalues of a :class:`~rmtalign.SampledBFK` at one layer against a limiting law.

    Parameters
    ----------
    sampled : SampledBFK
        Eigenvalues of every sample at ``layer`` go into one histogram (a density).
    layer : int
        The layer ``v`` (one of ``sampled.layers``).
    theory : Density, optional
        From :func:`rmtalign.theory.bfk_density` (same units: ``mean_field``'s ``c_v``). Its
        atoms (e.g. mass 1/2 at ``c_v`` for ReLU MLPs) are drawn as vertical lines, and the theory
        density is divided by the mass of its continuous part. The histogram leaves out the
        sampled atoms (eigenvalues repeated within a sample, e.g. the draw's own ``c_v``), so
        both sides show the continuous part.
    ax : matplotlib Axes, optional
    bins : int
    log : bool, optional
        Logarithmic eigenvalue axis with geometric bins (default: when the spectrum spans more
        than two decades).
    normalise : {None, "mean", "atom"}
        Compare shapes, each draw on its own scale (in exact mode the learning rates, hence the
        weights ``c_l``, are measured on the draw and fluctuate with ``|b_l|``): ``"mean"``
        divides each draw's eigenvalues by their mean ``M1`` and the theory by its mean;
        ``"atom"`` divides each draw by its repeated eigenvalue (a ReLU MLP's ``c_v``, of
        multiplicity ``m - rank``) and the theory by its atom. The BFA depends on the spectrum
        through its shape only (``M1/sqrt(M2)``). ``"mean"`` suits light tails: deep layers'
        heavy tails make a draw's mean noisy.
    theory_mean : float, optional
        The theory's ``M1`` for ``normalise="mean"`` (e.g. :func:`rmtalign.theory.bfk_moments`
        ``[0]``); default: computed from ``theory`` by quadrature.

    Returns
    -------
    (fig, ax)
    """
    from ._validate import check_choice, check_int

    bins = check_int("bins", bins, minimum=1)
    if normalise is not None:
        check_choice("normalise", normalise, ("mean", "atom"))
    pos = _layer_position(sampled, layer)
    per_sample = np.asarray(sampled.eigenvalues, float)[:, pos, :]
    repeated = np.array([_repeated(e) for e in per_sample]).reshape(per_sample.shape)
    theory_atoms = dict(getattr(theory, "atoms", {}) or {})
    scale = 1.0
    if normalise == "mean":
        per_sample = per_sample / per_sample.mean(axis=1, keepdims=True)
        if theory is not None:
            scale = float(theory_mean) if theory_mean is not None else _density_mean(theory)
    elif normalise == "atom":
        if not repeated.any(axis=1).all() or (theory is not None and len(theory_atoms) != 1):
            raise ValueError("normalise='atom' needs a repeated eigenvalue in every draw and one "
                             f"atom in the theory (a ReLU MLP's BFK); got theory atoms "
                             f"{theory_atoms}; use normalise='mean'")
        own = np.array([e[r].min() for e, r in zip(per_sample, repeated)])
        per_sample = per_sample / own[:, None]
        if theory is not None:
            scale = next(iter(theory_atoms))
    eig = per_sample.ravel()
    repeated = repeated.ravel()
    cont = eig[~repeated]
    atoms = {loc / scale: w for loc, w in theory_atoms.items()}
    fig, ax = _new_axes(ax)
    pos_cont = cont[cont > 0]
    if log is None:
        log = pos_cont.size > 1 and pos_cont.max() / pos_cont.min() > 100
    n = len(np.atleast_1d(sampled.sample))
    m = eig.size // max(n, 1)
    edges = np.geomspace(pos_cont.min(), pos_cont.max(), bins + 1) if log and pos_cont.size > 1 \
        else bins
    data = pos_cont if log else cont
    if data.size:
        ax.hist(data, bins=edges, density=True, alpha=0.45, color="C0",
                label=f"samples ({n} x m={m}, {sampled.mode} mode)")
    if theory is not None:
        mass = 1.0 - sum(atoms.values())
        x, d = np.asarray(theory.x, float) / scale, np.asarray(theory.density, float) * scale
        if mass > 0 and np.any(d > 0):
            ax.plot(x, d / mass, "-", color="C1", lw=1.4, label="theory (width limit)")
        for loc, w in atoms.items():
            ax.axvline(loc, color="C3", ls=":", lw=1.2,
                       label=f"theory atom at {loc:.3g}: mass {w:.3g} "
                             f"(samples: {np.mean(repeated):.3g} repeated)")
    if log:
        ax.set_xscale("log")
    v = int(layer)
    unit = {None: "", "mean": "/M_1", "atom": "/c_v"}[normalise]
    ax.set_xlabel(rf"eigenvalue $\lambda{unit}$ of $K_{{{v}}}$")
    ax.set_ylabel("density (continuous part)" if atoms else "density")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig, ax


def jacobian_spectrum(sampled, theory=None, ax=None, *, bins=60):
    """Squared singular values ``sigma^2`` of ``J = df_stop/df_start`` against the limiting law.

    The histogram is over ``log10 sigma^2`` (products of many layers spread over decades); exact
    zeros (ReLU MLPs: rank at most the active units) are left out and their fraction given in
    the legend.

    Parameters
    ----------
    sampled : SampledJacobian
    theory : Density, optional
        From :func:`rmtalign.theory.jacobian_density`: its density ``p(x)`` is drawn as the
        density of ``log10 x``, ``p(x) x ln 10``, over the continuous part; atoms as vertical lines.
    ax : matplotlib Axes, optional
    bins : int

    Returns
    -------
    (fig, ax)
    """
    from ._validate import check_int

    bins = check_int("bins", bins, minimum=1)
    s = np.asarray(sampled.log_sq_singular_values, float).ravel()
    finite = s[np.isfinite(s)]
    zeros = 1.0 - finite.size / max(s.size, 1)
    atoms = dict(getattr(theory, "atoms", {}) or {})
    atoms_pos = {loc: w for loc, w in atoms.items() if loc > 0}
    logx = finite / np.log(10.0)
    for loc in atoms_pos:  # sampled values at a positive atom (e.g. y^n I) are not a density
        logx = logx[np.abs(logx - np.log10(loc)) > 1e-6]
    fig, ax = _new_axes(ax)
    n, m = np.shape(sampled.log_sq_singular_values)
    note = f", {zeros:.2f} exact zeros left out" if zeros > 0 else ""
    if logx.size:
        ax.hist(logx, bins=bins, density=True, alpha=0.45, color="C0",
                label=f"samples ({n} x m={m}{note})")
    if theory is not None:
        x, d = np.asarray(theory.x, float), np.asarray(theory.density, float)
        mass = 1.0 - sum(atoms.values())
        ok = (x > 0) & np.isfinite(d)
        if mass > 0 and np.any(d[ok] > 0):
            ax.plot(np.log10(x[ok]), d[ok] * x[ok] * np.log(10.0) / mass, "-", color="C1", lw=1.4,
                    label="theory (width limit, free model)")
        for loc, w in atoms_pos.items():
            ax.axvline(np.log10(loc), color="C3", ls=":", lw=1.2,
                       label=f"theory atom at $\\sigma^2$={loc:.3g} (mass {w:.3g})")
        if atoms.get(0.0):
            ax.plot([], [], " ", label=f"theory: mass {atoms[0.0]:.3g} at $\\sigma^2 = 0$")
    if logx.size:  # the limit's lower tail runs over many decades that no finite draw reaches
        ax.set_xlim(left=max(ax.get_xlim()[0], logx.min() - 2.0))
    jac = rf"$\partial f_{{{sampled.stop}}}/\partial f_{{{sampled.start}}}$"
    ax.set_xlabel(rf"$\log_{{10}}\sigma^2$ of {jac}")
    ax.set_ylabel("density (continuous part)" if (zeros > 0 or atoms) else "density")
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig, ax


def width_convergence(limit, theory=None, ax=None, *, layer=-1, label=None, colour=None):
    """Sampled values across widths against ``1/m``, their fit and the width limit.

    Parameters
    ----------
    limit : WidthLimit
        From :func:`rmtalign.width_limit`: means +- standard errors at each width (markers), the
        fitted ``c0 + c1/m (+ c2/m^2)`` (dotted) and its ``m -> infinity`` value ``c0`` (a marker
        at ``1/m = 0``).
    theory : float, optional
        The theory's width limit of the same quantity at that layer (a star at ``1/m = 0``).
    ax : matplotlib Axes, optional
    layer : int
        Position in ``limit.layers`` (``-1``: the output feature).
    label : str, optional
        Legend stem.
    colour : str, optional

    Returns
    -------
    (fig, ax)
    """
    fig, ax = _new_axes(ax)
    inv = 1.0 / np.asarray(limit.widths, float)
    stem = f"{label}: " if label else ""
    eb = ax.errorbar(inv, limit.means[:, layer], yerr=limit.sems[:, layer], fmt="o", ms=3.5,
                     capsize=2, lw=0.9, color=colour, label=f"{stem}samples")
    colour = eb.lines[0].get_color()
    grid = np.linspace(0.0, inv.max() * 1.05, 50)
    coef = np.asarray(limit.coef)[layer]
    fit = sum(c * grid ** k for k, c in enumerate(coef))
    ax.plot(grid, fit, ":", color=colour, lw=1.0, label=f"{stem}fit in $1/m$")
    ax.errorbar([0.0], [limit.limit[layer]], yerr=[limit.limit_se[layer]], fmt="s", ms=4,
                mfc="none", color=colour, capsize=2, label=f"{stem}extrapolated ($m\\to\\infty$)")
    if theory is not None:
        ax.plot([0.0], [float(theory)], "*", ms=10, color=colour, mec="k", mew=0.5,
                label=f"{stem}theory (width limit)")
    ax.set_xlabel(r"$1/m$")
    q = getattr(limit, "quantity", "cos")
    ax.set_ylabel(_OUTPUT_LABELS.get(q, q) if layer == -1 else QUANTITY_LABELS.get(q, q))
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig, ax


def phase_diagram(diagram, ax=None, *, sampled=None):
    """Output ``cos theta_{L-1}`` of ResNets with ``beta = c L^-alpha`` against ``alpha``.

    Parameters
    ----------
    diagram : PhaseDiagram
        From :func:`rmtalign.theory.phase_diagram`: one line per finite depth ``L`` (width limit)
        and the ``L -> infinity`` limit (black squares).
    ax : matplotlib Axes, optional
    sampled : mapping, optional
        ``{depth: (alphas, [SampledBFA, ...])}``: sampled output ``cos`` (mean +- standard error)
        at some of the points, drawn as markers in the colour of that depth's line.

    Returns
    -------
    (fig, ax)
    """
    fig, ax = _new_axes(ax)
    colours = {}
    for i, (L, row) in enumerate(zip(diagram.depths, diagram.cos)):
        (line,) = ax.plot(diagram.alphas, row, "-", lw=1.2, color=f"C{i}",
                          label=f"theory, $L$ = {int(L)}")
        colours[int(L)] = line.get_color()
    # markers, not a line: the limit jumps at alpha = 1/2 (0 below, phi(c) at, 1 above)
    ax.plot(diagram.alphas, diagram.limit, "ks", ms=3.5, label=r"theory, $L\to\infty$")
    for k, (L, (alphas, results)) in enumerate((sampled or {}).items()):
        mu = np.array([r.mean("cos")[-1] for r in results])
        se = np.array([r.sem("cos")[-1] for r in results])
        m = results[0].family.width if results else 0
        ax.errorbar(alphas, mu, yerr=se, fmt="o", ms=3.5, capsize=2,
                    color=colours.get(int(L), f"C{len(colours) + k}"),
                    label=f"samples, $L$ = {int(L)}, $m$ = {m}")
    ax.axvline(0.5, color="gray", ls=":", lw=0.8)
    ax.set_xlabel(rf"$\alpha$  ($\beta = c\,L^{{-\alpha}}$, $c$ = {diagram.c:g})")
    ax.set_ylabel(r"output $\cos\theta_{L-1}$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    _legend(ax)
    return fig, ax


def depth_curves(curves, *, title=None, axes=None):
    """Two panels: the BFA along the layers of the deepest network of each family, and the
    output BFA ``theta_{L-1}`` against depth (mean +- standard error over samples).

    Parameters
    ----------
    curves : mapping
        label -> ``{"depths": (n,), "results": [SampledBFA, ...]}`` (one result per depth, same
        order), optionally with ``"theory"``: the width-limit ``cos`` per depth (arrays over
        layers, e.g. :func:`rmtalign.theory.bfa`'s ``cos``), drawn as lines.
    title : str, optional
    axes : pair of matplotlib Axes, optional

    Returns
    -------
    (fig, (ax0, ax1))
    """
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 4.2), layout="constrained")
        ax0, ax1 = fig.subplots(1, 2)
    else:
        ax0, ax1 = axes
        fig = ax0.figure
    from .alignment import angle_deg

    for i, (label, c) in enumerate(curves.items()):
        colour = f"C{i}"
        deep = c["results"][-1]
        ax0.errorbar(deep.layers, deep.mean("angle_deg"), yerr=deep.sem("angle_deg"), fmt="o",
                     ms=2, lw=0.6, capsize=0, color=colour,
                     label=f"{label}, $L$ = {deep.family.depth}: samples")
        out = np.array([r.mean("angle_deg")[-1] for r in c["results"]])
        err = np.array([r.sem("angle_deg")[-1] for r in c["results"]])
        ax1.errorbar(c["depths"], out, yerr=err, fmt="o", ms=3.5, capsize=2, color=colour,
                     label=f"{label}: samples")
        if c.get("theory") is not None:
            deg = [angle_deg(np.clip(np.asarray(t, float), -1, 1)) for t in c["theory"]]
            ax0.plot(deep.layers, deg[-1], "-", lw=1.2, color=colour, label=f"{label}: theory")
            ax1.plot(c["depths"], [d[-1] for d in deg], "-", lw=1.2, color=colour,
                     label=f"{label}: theory")
    ax0.set(xlabel=r"layer $v$", ylabel=r"BFA $\theta_v$ (degrees)", title="BFA along the network",
            ylim=(0, 90))
    ax1.set(xscale="log", xlabel=r"depth $L$", ylabel=r"output BFA $\theta_{L-1}$ (degrees)",
            title="Output BFA against depth", ylim=(0, 90))
    for ax in (ax0, ax1):
        ax.grid(alpha=0.3)
        _legend(ax)
    if title:
        fig.suptitle(title)
    return fig, (ax0, ax1)


#: The name ``rmtalign depth-curves`` has used so far.
plot_depth_curves = depth_curves
