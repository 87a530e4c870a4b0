"""The 1/m coefficient of the BFA of a Gaussian ResNet with its own ReLU masks, computed (not fitted):
the order-parameter expansion of the exact reduction, ``rmtalign.theory._reduction.c1_expansion``
(exact mean map, Jacobian and second derivatives; neuron covariances and self-response averaged
over probe neurons, so the result carries a standard error). ``--linear`` is the check: there the
linear chain's exact ``c1`` (``theory.finite_width``) is printed beside it.

    .venv/bin/python scripts/relu_resnet_c1.py [--linear] [--depth L] [--c C] [--probes P]
                                               [--batches B] [--seed S] [--out FILE.json]

Cost O(L^4 + P L^2) (P probes); times and standard errors in ``docs/finite_width.md``.
``theory.finite_width`` gives the same ``c1`` for a ReLU ResNet (extrapolated in depth beyond
L = 64); this script computes it at any depth directly, the check of that extrapolation.
"""
import argparse
import json
import sys
import time

from tqdm import tqdm

from rmtalign import theory as T
from rmtalign.families import ResNet
from rmtalign.theory import _reduction as R


def _at_least(kind, low, strict=False):
    def parse(text):
        value = kind(text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value
    parse.__name__ = kind.__name__          # argparse names it in "invalid int value"
    return parse


def main(argv=None):
    p = argparse.ArgumentParser(description="c1 of a ReLU (or, as a check, linear) ResNet with "
                                "beta = c / sqrt(L) from the exact reduction (module docstring)")
    p.add_argument("--linear", action="store_true", help="linear activation (the exact c1 is known)")
    p.add_argument("--depth", type=_at_least(int, 4), default=32)
    p.add_argument("--c", type=_at_least(float, 0.0, strict=True), default=2.0,
                   help="branch scale beta = c / sqrt(L)")
    p.add_argument("--probes", type=_at_least(int, 1000), default=1_600_000)
    p.add_argument("--batches", type=_at_least(int, 2), default=8,
                   help="the standard error is the scatter of the batches' c1")
    p.add_argument("--seed", type=_at_least(int, 0), default=1)
    p.add_argument("--out", help="also write the per-layer result as JSON")
    args = p.parse_args(argv)
    if args.probes < 100 * args.batches:
        p.error(f"--probes must be at least 100 per batch ({100 * args.batches} for "
                f"--batches {args.batches}), got {args.probes}")
    if args.out:
        try:                                    # fail now, not after minutes of computing
            open(args.out, "a").close()
        except OSError as e:
            p.error(f"--out {args.out}: {e.strerror}")
    try:
        fam = ResNet.scaled(args.depth, 64, args.c, activation="linear" if args.linear else "relu")
    except ValueError as e:
        p.error(str(e))
    t0 = time.time()
    with tqdm(total=args.batches, desc="batches", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
        c1, se = R.c1_expansion(R.Reduction.of(fam), probes=args.probes, batches=args.batches,
                                seed=args.seed, on_batch=bar.update)
    exact = T.finite_width(fam).c1 if args.linear else None
    bfa = T.bfa(fam).cos
    print(f"{fam.label}: {args.probes} probes in {args.batches} batches, {time.time() - t0:.0f}s")
    print("| v | bfa | c1 ± se |" + (" exact c1 |" if args.linear else ""))
    L = args.depth
    for v in sorted({max(2, L // 8), max(2, L // 4), L // 2, 3 * L // 4, L - 1}):
        row = f"| {v} | {bfa[v - 1]:.4f} | {c1[v - 1]:.4f} ± {se[v - 1]:.4f} |"
        print(row + (f" {exact[v - 1]:.4f} |" if args.linear else ""))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"depth": L, "c": args.c, "activation": fam.activation, "probes": args.probes,
                       "batches": args.batches, "seed": args.seed, "c1": c1.tolist(), "se": se.tolist()}, fh)


if __name__ == "__main__":
    main()
