"""The ``rmtalign`` command: one subcommand per capability.

  curve        alignment (BFA) against layer or depth: width-limit theory and samples
  spectrum     BFK spectral density: sampled eigenvalues against the free-probability law
  jacobian     singular values of a layer-to-layer Jacobian, sampled and in the width limit
  limit        depth limits of the BFA and the (alpha, c) phase diagram of ResNets
  prescribe    init scales and learning rates (SP, NTK, MF+muP, FSC) as JSON
  sweep        a grid of families x seeds, locally or on a Dask cluster
  figures      the paper's figures (and more), theory over samples
  depth-curves the original job: sampled BFA against depth for three families

Every subcommand writes CSV/JSON (and a PNG where a picture helps) into --out, prints a summary,
or with --json prints machine-readable results on stdout. A bad flag or value exits 2 with one
line naming it; Ctrl-C exits 130 and leaves no half-written file. Set RMTALIGN_DEBUG=1 to see
the traceback behind an error. Run 'rmtalign SUBCOMMAND --help' for each one's flags and an
example.
"""
from __future__ import annotations

import os
import re
import sys

from . import _common, curve, depth_curves, figures, jacobian, limit, prescribe, spectrum, sweep
from ._common import Parser, UsageError

__all__ = ["main", "build_parser"]

SUBCOMMANDS = {"curve": curve, "spectrum": spectrum, "jacobian": jacobian, "limit": limit,
               "prescribe": prescribe, "sweep": sweep, "figures": figures,
               "depth-curves": depth_curves}

# Errors of the library that mean "bad input" (its checks raise ValueError/TypeError naming the
# argument; OSError is a file the user named; NotImplementedError a combination not supported;
# ArithmeticError an init that overflows). Anything else is a bug and keeps its traceback.
_USER_ERRORS = (ValueError, TypeError, OSError, NotImplementedError, ArithmeticError)


def build_parser() -> Parser:
    """The ``rmtalign`` argument parser with every subcommand."""
    import argparse

    parser = Parser(prog="rmtalign", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"rmtalign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True,
                                parser_class=Parser)
    for name, module in SUBCOMMANDS.items():
        _common.add_subcommand(sub, name, module)
    return parser


def _name_flags(message, parser):
    """``"branch_scale must ..."`` -> ``"--branch-scale must ..."``: the library names its
    arguments, the user typed flags."""
    flags = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                flags.setdefault(action.dest, opt)

    def flag(m):
        return flags.get(m.group(1), m.group(1))

    message = re.sub(r"^([a-z_]+)\b", flag, message)
    return re.sub(r"(?<![\w-])([a-z_]+)(?= must\b)", flag, message)


def main(argv=None) -> int:
    """Run ``rmtalign`` with ``argv`` (default ``sys.argv[1:]``); returns 0 on success.

    Bad flags and values raise ``SystemExit(2)`` after one line on stderr; an interrupted run
    raises ``SystemExit(130)``."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.error(f"give a subcommand: {', '.join(SUBCOMMANDS)}")
    if argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        parser.error(f"unrecognized argument {argv[0]}: give a subcommand first "
                     f"({', '.join(SUBCOMMANDS)})")
    args, extra = parser.parse_known_args(argv)
    prog = f"rmtalign {args.command}"
    sub = next(a for a in parser._actions if a.dest == "command").choices[args.command]
    if extra:  # reported by the subcommand's parser, which names itself and its --help
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted; no partial files were left\n")
        raise SystemExit(130) from None
    except BrokenPipeError:  # stdout closed early (e.g. piped into head): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    except _USER_ERRORS as err:
        if os.environ.get("RMTALIGN_DEBUG"):
            raise
        text = " ".join(str(err).split()) or type(err).__name__
        if not isinstance(err, UsageError):
            text = _name_flags(text, sub)
        sys.stderr.write(f"{prog}: error: {text}\n")
        raise SystemExit(2) from None
