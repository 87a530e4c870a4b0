"""A grid of families x seeds x samples, one quantity per point, locally or on Dask.

rmtalign.sweep.sweep(quantity, grid, ...): every point of the grid (the product of the values
of each --grid field: depth, width, family, branch scale or c/alpha, activation, weights, ...)
is computed independently and seeded by its content, and the results form one tidy table,
written as points finish; a rerun with the same --out resumes, skipping finished points, and a
failed point is recorded with its error without stopping the others. The grid comes from flags
or from a TOML/JSON file (--spec; flags given on the command line override its entries).
The table is OUT/sweep.csv (rewritten atomically as points finish; rerun to resume), with
OUT/sweep.json (the grid, failed points and timings). Points run in a local process pool by
default (--workers), or on Dask: --scheduler ADDRESS for
a running cluster, --dask-workers N for a local one.

examples:
  rmtalign sweep --quantity bfa --grid family=mlp,resnet --grid depth=8,16,32 --grid width=64 \\
      --seeds 0,1 --samples 4 --out sweep
  rmtalign sweep --spec grid.toml --dask-workers 2 --out sweep
"""
from __future__ import annotations

import argparse

from . import _common


def _value(text):
    """A grid value: an int, else a float, else the string (``true``/``false`` as booleans)."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _grid_entry(text):
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"expected FIELD=V1,V2,... (e.g. depth=8,16,32), got {text!r}")
    parts = values.split(",")
    if any(not v.strip() for v in parts):
        raise argparse.ArgumentTypeError(f"expected FIELD=V1,V2,... with no empty values, got {text!r}")
    key = key.strip().replace("-", "_")
    values = [_value(v.strip()) for v in parts]
    if key == "family":  # the names of --family elsewhere in the CLI, the class names in sweep()
        values = [{"mlp": "MLP", "resnet": "ResNet"}.get(str(v).lower(), v) for v in values]
    return key, values


def _option(text):
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. mode=free), got {text!r}")
    return key.strip().replace("-", "_"), _value(value.strip())


def add_arguments(p):
    g = p.add_argument_group("the grid")
    g.add_argument("--spec", default=None, metavar="FILE",
                   help="TOML or JSON file with the sweep's arguments (quantity, grid, seeds, ...)")
    g.add_argument("--quantity", default=None, help="what each point computes, e.g. bfa, bfk, jacobian, "
                   "width_limit, theory (all of them: rmtalign.sweep.QUANTITIES)")
    g.add_argument("--grid", type=_grid_entry, action="append", default=None, metavar="FIELD=V1,V2",
                   help="one field of the grid and its values (repeat the flag for more fields)")
    g.add_argument("--seeds", type=_common.list_type(_common.seed_type, "non-negative integer seeds"),
                   default=None, metavar="S[,S...]", help="seeds (default 0)")
    g.add_argument("--samples", type=_common.positive_int, default=None, help="samples per point")
    g.add_argument("--option", type=_option, action="append", default=None, metavar="KEY=VALUE",
                   help="an option of the quantity (e.g. mode=free); repeat for more")
    g = p.add_argument_group("where it runs")
    g.add_argument("--workers", type=_common.positive_int, default=None,
                   help="local worker processes (default: one per core)")
    g.add_argument("--inline", action="store_true", help="run every point in this process (no pool)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.1:8786)")
    g.add_argument("--dask-workers", type=_common.positive_int, default=None, metavar="N",
                   help="run on a local Dask cluster of N workers")
    _common.add_common_arguments(p, seed=False, out="sweep")


def sweep_arguments(args) -> dict:
    """The keyword arguments of :func:`rmtalign.sweep.sweep` from --spec and the flags (flags
    override the file's entries; --grid replaces one field of the file's grid at a time)."""
    from ..sweep import load_spec

    kwargs = load_spec(args.spec) if args.spec is not None else {}
    if args.quantity is not None:
        kwargs["quantity"] = args.quantity
    if args.grid is not None:
        grid = dict(kwargs.get("grid") or {})
        grid.update(dict(args.grid))
        kwargs["grid"] = grid
    if args.seeds is not None:
        kwargs["seeds"] = args.seeds
    if args.samples is not None:
        kwargs["samples"] = args.samples
    if args.option is not None:
        options = dict(kwargs.get("options") or {})
        options.update(dict(args.option))
        kwargs["options"] = options
    for need in ("quantity", "grid"):
        if need not in kwargs:
            raise _common.UsageError(f"--{need} is required (or a --spec file that sets {need})")
    return kwargs


def run(args) -> int:
    import contextlib

    from ..sweep import dask_client, sweep

    on_dask = args.scheduler is not None or args.dask_workers is not None
    if args.scheduler is not None and args.dask_workers is not None:
        raise _common.UsageError("give --scheduler ADDRESS (a running cluster) or --dask-workers N "
                                 "(a local one), not both")
    if on_dask and (args.workers is not None or args.inline):
        raise _common.UsageError("--workers and --inline are for local runs; on Dask use --dask-workers")
    if args.inline and args.workers is not None:
        raise _common.UsageError("--inline runs in this process: give it or --workers, not both")
    kwargs = sweep_arguments(args)
    out = _common.Output(args.out)
    table = out.path("sweep.csv")
    with (dask_client(args.scheduler, args.dask_workers) if on_dask
          else contextlib.nullcontext()) as client:
        executor = client if client is not None else ("inline" if args.inline else None)
        # sweep() rewrites the CSV atomically as points finish: an interrupted sweep resumes
        result = sweep(**kwargs, executor=executor, workers=args.workers, out=table,
                       progress=not args.quiet and None)
    out.written.append(str(table))
    out.json("sweep.json", result)
    st = result.stats
    lines = [f"sweep of {result.quantity!r}: {st.get('points')} points, {st.get('units')} units "
             f"({st.get('resumed', 0)} resumed, {st.get('computed', 0)} computed, "
             f"{len(result.failed)} failed) on {st.get('executor', 'nothing')} in "
             f"{_common.fmt(st.get('wall_s', float('nan')), '.1f')} s"]
    for f in result.failed[:5]:
        lines.append(f"  failed: {f.get('error')}")
    return _common.report(args, out, {"result": result.to_dict()}, lines)
