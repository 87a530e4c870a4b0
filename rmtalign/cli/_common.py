"""What every subcommand shares: flag types, the family flags, the output folder (atomic writes),
progress bars, and the one-line errors.

Flag types raise ``argparse.ArgumentTypeError``, so a bad value exits 2 with one line naming the
flag (:class:`Parser`). Checks that need several flags at once raise :class:`UsageError` with the
flag's name in the message; :func:`rmtalign.cli.main` prints it as one line and exits 2.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


class UsageError(ValueError):
    """A bad combination of flags or values, found after parsing; the message names the flag."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr, exit status 2: the usage block
    argparse prints would push the line naming the wrong flag out of sight."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_subcommand(sub, name, module):
    """A subparser for ``module`` (its docstring: first line the help, the rest the description
    with an example); ``module.add_arguments`` fills it and ``module.run`` runs it."""
    doc = module.__doc__.strip()
    head, _, body = doc.partition("\n\n")
    p = sub.add_parser(name, help=head.rstrip("."), description=doc,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    p.set_defaults(run=module.run, command=name)
    return p


# -- flag types -----------------------------------------------------------------------------------
def int_type(minimum=None, maximum=None, what="an integer"):
    """Type for an integer flag in ``[minimum, maximum]``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}{_range(minimum, maximum)}, got {text!r}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}{_range(minimum, maximum)}, got {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


def real_type(low=None, high=None, low_open=False):
    """Type for a finite real flag in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (low is None or value > low or (value == low and not low_open)) \
            and (high is None or value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(
                f"expected a finite number{_range(low, high, low_open)}, got {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def _range(low, high, low_open=False):
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def list_type(item, what):
    """Type for a comma-separated list of ``item`` values (no empty entries, at least one)."""
    def parse(text):
        parts = text.split(",")
        if not text.strip() or any(not p.strip() for p in parts):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what} with no empty entries (e.g. 4,8,16), got {text!r}")
        try:
            return [item(p.strip()) for p in parts]
        except argparse.ArgumentTypeError as err:
            if len(parts) == 1:
                raise
            raise argparse.ArgumentTypeError(f"{err} in {text!r}") from None
    parse.__name__ = "list"
    return parse


def choice_list_type(allowed):
    """Type for a comma-separated list of names among ``allowed`` (duplicates dropped)."""
    def parse(text):
        names = [t.strip() for t in text.split(",")]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated names among {', '.join(allowed)}; got {text!r}")
        return list(dict.fromkeys(names))
    parse.__name__ = "names"
    return parse


def trained_type(text):
    """``all-but-first``, ``all`` or comma-separated layer indices (>= 1)."""
    if text in ("all-but-first", "all"):
        return text
    try:
        return tuple(list_type(int_type(1), "layer indices")(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected 'all-but-first', 'all' or comma-separated layer indices >= 1, got {text!r}") from None


positive_int = int_type(1)
seed_type = int_type(0)
depths_type = list_type(int_type(3, what="integer depths"), "integer depths >= 3")


# -- the family flags -----------------------------------------------------------------------------
def add_family_arguments(p, *, depth=None, width=128, depths=False):
    """The flags that describe a family (architecture, scales, activation, weights, training)."""
    g = p.add_argument_group("network (the family)")
    g.add_argument("--family", choices=("mlp", "resnet"), default="mlp",
                   help="architecture: iid MLP (Eq. 10) or ResNet (Eq. 12) (default mlp)")
    if depths:
        g.add_argument("--depths", "--depth", dest="depths", type=depths_type, default=depth,
                       metavar="L[,L...]", help="depth L, or comma-separated depths (>= 3; default "
                       f"{','.join(map(str, depth))})")
    else:
        g.add_argument("--depth", type=int_type(3, what="an integer depth"), default=depth,
                       metavar="L", help=f"number of weight matrices L (>= 3; default {depth})")
    g.add_argument("--width", type=positive_int, default=width, metavar="M",
                   help=f"hidden width m (default {width})")
    g.add_argument("--branch-scale", type=real_type(0.0), default=None, metavar="BETA",
                   help="ResNet branch scale beta (in [0, 1] unless --skip-scale is given); "
                        "default: beta = c L^-alpha")
    g.add_argument("--c", type=real_type(0.0), default=None, metavar="C",
                   help="ResNet: beta = c L^-alpha (default c = 1)")
    g.add_argument("--alpha", type=real_type(), default=None, metavar="ALPHA",
                   help="ResNet: beta = c L^-alpha (default alpha = 0.5)")
    g.add_argument("--skip-scale", type=real_type(), default=None, metavar="A",
                   help="ResNet skip coefficient a (default sqrt(1 - beta^2))")
    g.add_argument("--activation", choices=("relu", "linear"), default="relu",
                   help="activation phi (default relu)")
    g.add_argument("--weights", choices=("gaussian", "orthogonal"), default="gaussian",
                   help="iid Gaussian or Haar orthogonal weights (default gaussian)")
    g.add_argument("--trained", type=trained_type, default="all-but-first", metavar="WHICH",
                   help="trained layers: all-but-first (default: W_1 frozen), all, or indices 2,3,5")
    g.add_argument("--lr-rule", choices=("balanced", "uniform"), default="balanced",
                   help="learning rates: balanced (Eq. 8, default) or one uniform rate")
    g.add_argument("--input", choices=("fixed", "random"), default="fixed",
                   help="network input: all ones (default) or a Gaussian direction from the seed")
    g.add_argument("--in-dim", type=positive_int, default=10, metavar="D", help="input dimension d (default 10)")
    g.add_argument("--out-dim", type=positive_int, default=1, metavar="K", help="output dimension k (default 1)")
    return g


def make_family(args, depth):
    """The family the flags describe, at ``depth``."""
    from ..families import MLP, ResNet

    common = dict(activation=args.activation, weights=args.weights, trained=args.trained,
                  lr_rule=args.lr_rule, input=args.input, in_dim=args.in_dim, out_dim=args.out_dim)
    resnet_only = [f for f, v in (("--branch-scale", args.branch_scale), ("--c", args.c),
                                  ("--alpha", args.alpha), ("--skip-scale", args.skip_scale)) if v is not None]
    if args.family == "mlp":
        if resnet_only:
            raise UsageError(f"{resnet_only[0]} applies to --family resnet only (an MLP has beta = 1, no skip)")
        return MLP(depth, args.width, **common)
    if args.branch_scale is not None:
        if args.c is not None or args.alpha is not None:
            raise UsageError("give either --branch-scale or --c/--alpha (beta = c L^-alpha), not both")
        beta = args.branch_scale
    else:
        c = 1.0 if args.c is None else args.c
        alpha = 0.5 if args.alpha is None else args.alpha
        beta = c * depth ** (-alpha)
        if args.skip_scale is None and beta > 1.0:
            raise UsageError(f"--c {c:g} --alpha {alpha:g} give beta = c L^-alpha = {beta:.4g} > 1 at "
                             f"depth {depth}; beta must be <= 1 unless --skip-scale is given")
    if args.skip_scale is None and beta > 1.0:
        raise UsageError(f"--branch-scale must be <= 1 unless --skip-scale is given, got {beta:g}")
    return ResNet(depth, args.width, beta, skip_scale=args.skip_scale, **common)


def check_output_angle_defined(family, flag="--depth"):
    """Refuse a family whose output feature has fewer than two trained layers below it: its
    kernel is ``c I`` and its output angle is 0 by construction, which says nothing."""
    n = int(family.trained_mask[:-1].sum())
    if n < 2:
        raise UsageError(f"{flag}: at depth {family.depth} the output feature f_(L-1) has {n} trained "
                         f"layer(s) below it (--trained {_trained_text(family.trained)}), so its BFA is "
                         "0 by construction; use a depth >= 4 or train more layers")


def _trained_text(trained):
    return trained if isinstance(trained, str) else ",".join(map(str, trained))


def add_common_arguments(p, *, seed=True, out="results"):
    """``--seed``, ``--out``, ``--json``, ``--quiet``."""
    g = p.add_argument_group("output")
    if seed:
        g.add_argument("--seed", type=seed_type, default=0, help="seed (non-negative integer; default 0)")
    g.add_argument("--out", default=out, metavar="DIR",
                   help=f"output folder, created if missing (default {out}/)")
    g.add_argument("--json", action="store_true",
                   help="print the results as JSON on stdout (json.loads parses it) instead of a summary")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return g


# -- output ---------------------------------------------------------------------------------------
class Output:
    """The output folder: created and probed before any work starts (so a bad ``--out`` fails
    at once), and written atomically (temporary file in the same folder, then a rename), so an
    interrupted run leaves each file either absent, as it was, or complete."""

    def __init__(self, folder, flag="--out"):
        self.folder = Path(folder)
        self.written = []
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"{flag} must be a folder, but {str(folder)!r} is a file")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".rmtalign-probe.", dir=self.folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise UsageError(f"{flag}: cannot write to the folder {str(folder)!r} "
                             f"({err.strerror or err})") from None

    def path(self, name) -> Path:
        return self.folder / name

    def csv(self, name, table_or_result) -> Path:
        """A result's table (or a dict of columns) as CSV."""
        from ..results import write_csv

        table = table_or_result.to_table() if hasattr(table_or_result, "to_table") else table_or_result
        return self._done(write_csv(self.path(name), table))

    def json(self, name, data) -> Path:
        """JSON-ready data (or a result: its ``to_dict()``) as JSON."""
        from ..results import json_ready

        text = json.dumps(json_ready(data), indent=1, allow_nan=False)
        return self._atomic(name, lambda fh: fh.write(text + "\n"), "w")

    def text(self, name, text) -> Path:
        return self._atomic(name, lambda fh: fh.write(text), "w")

    def png(self, name, fig, dpi=130) -> Path:
        """Save a matplotlib figure as PNG."""
        return self._atomic(name, lambda fh: fig.savefig(fh, format="png", dpi=dpi), "wb")

    def _atomic(self, name, write, mode) -> Path:
        from ..results import write_atomic

        return self._done(write_atomic(self.path(name), write, mode))

    def _done(self, path):
        self.written.append(str(path))
        return Path(path)


def report(args, out, payload, lines):
    """Finish a run: with ``--json`` print ``payload`` (plus the files written) as JSON on
    stdout, otherwise the human summary ``lines``."""
    from ..results import json_ready

    if args.json:
        data = {"command": args.command, **json_ready(payload), "files": list(out.written)}
        print(json.dumps(data, allow_nan=False))
    else:
        for line in lines:
            print(line)
        if out.written:
            print("wrote " + ", ".join(out.written))
    return 0


def progress_bar(args, total, desc, unit="point"):
    """A tqdm bar on stderr, only when stderr is a terminal and ``--quiet`` is not given."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                disable=bool(args.quiet) or not sys.stderr.isatty())


def seed_of(args):
    """The grid's SeedSequence: points are seeded by their content from it."""
    from ..seeds import resolve_seed

    return resolve_seed(args.seed)[0]


def fmt(x, spec=".4f"):
    """A number for a summary line: ``nan`` shown as ``-``, infinities as ``inf``/``-inf``."""
    x = float(x)
    if np.isnan(x):
        return "-"
    return format(x, spec) if np.isfinite(x) else ("inf" if x > 0 else "-inf")


def plotting_function(name):
    """``rmtalign.plotting.<name>``, or None while the plotting module lacks it."""
    from .. import plotting

    return getattr(plotting, name, None)
