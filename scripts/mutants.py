#!/usr/bin/env python
"""Mutation check: break the package on purpose, one known mutant at a time, and see which tests
fail. Each mutant is a textual change to one file of ``rmtalign/``; a mutant that no test kills
marks a gap in the suite.

Usage::

    python scripts/mutants.py                 # every mutant, the whole suite minus the golden test
    python scripts/mutants.py --golden        # the golden (bit-identical) test counts too
    python scripts/mutants.py --only haar-sign,ks-half --tests tests/test_weights.py

The package and tests are copied once to a temporary folder; each mutant is applied there, the
suite is run from there (``PYTHONPATH`` puts the copy first), and the file is restored. numba's
cache lives in the copy, so only the first run and a mutated kernel compile. One line per mutant
is printed: killed or SURVIVED, and the tests that failed.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name: (file, old text, new text, what it breaks)
MUTANTS = {
    "lr-uniform-is-balanced": (
        "rmtalign/rules.py", 'if rule == "balanced":', 'if rule in ("balanced", "uniform"):',
        "the 'uniform' rule computes the balanced rates of Eq. (8)"),
    "haar-sign": (
        "rmtalign/_weights.py", "        Q *= np.sign(np.diag(R))", "        pass",
        "orthogonal weights from a QR without the sign correction (not Haar)"),
    "free-jacobian-no-masks": (
        "rmtalign/_chains.py", "active = {l: np.flatnonzero(masks[l - 1]) for l in range(start, stop)}",
        "active = {l: np.arange(m) for l in range(start, stop)}",
        "the free-mode ReLU-MLP Jacobian chain skips its masks"),
    "csv-writes-nan": (
        "rmtalign/results.py", '        if math.isnan(v):\n            return ""',
        '        if math.isnan(v):\n            return "nan"', "to_csv writes 'nan' instead of an empty cell"),
    "ks-half": (
        "rmtalign/theory/bfk.py", "return float(np.max(np.abs(emp - cdf)))",
        "return float(np.max(np.abs(emp - cdf))) / 2", "Density.kolmogorov_distance returns half the distance"),
    "json-nan": (
        "rmtalign/results.py", "        if math.isnan(value):\n            return None",
        "        if math.isnan(value):\n            return value", "to_dict keeps NaN (invalid JSON)"),
    "free-masks-all-ones": (
        "rmtalign/_passes.py", "    if p == 1:\n        return np.ones((L - 1, m))",
        "    if True:\n        return np.ones((L - 1, m))", "free mode ignores the mask probability"),
    "point-seed-ignores-quantity": (
        "rmtalign/seeds.py", "json.dumps([family.to_dict(), quantity]", "json.dumps([family.to_dict(), ''] ",
        "grid seeds ignore the quantity"),
    "runtime-overrides-user": (
        "rmtalign/_runtime.py", 'if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":',
        "if True:", "the user's numba threading layer is overridden"),
    "bfa-cos-sign": (
        "rmtalign/alignment.py", "return cos_between(np.negative(b), fdot, axis=axis)",
        "return cos_between(b, fdot, axis=axis)", "the BFA's cosine loses the minus sign of -b"),
    "depth-rate": (
        "rmtalign/theory/depth.py", '"trivial", 2 * alpha - 1,', '"trivial", 1 - alpha,',
        "the convergence rate of the trivial regime"),
    "relu-gain": (
        "rmtalign/rules.py", '"relu": Activation("relu", _relu, _relu_prime, Fraction(1, 2), Fraction(1, 2), "relu")',
        '"relu": Activation("relu", _relu, _relu_prime, Fraction(1, 2), Fraction(1, 3), "relu")',
        "the ReLU mask probability"),
}


def _run_tests(copy, golden, tests):
    env = {**os.environ, "PYTHONPATH": copy + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=no", "-rf", *tests]
    if not golden:
        cmd += ["--deselect", "tests/test_golden.py"]
    out = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    failed = sorted({m.group(1) for m in re.finditer(r"^FAILED (\S+)", out.stdout, re.M)})
    return out.returncode, failed, out.stdout.strip().splitlines()[-1:] if out.stdout else []


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", type=lambda s: s.split(","), default=None,
                        help=f"comma-separated among {','.join(MUTANTS)}")
    parser.add_argument("--golden", action="store_true", help="count the golden test too")
    parser.add_argument("--tests", nargs="+", default=[], help="test files to run (default: all)")
    args = parser.parse_args(argv)
    names = args.only or list(MUTANTS)
    bad = [n for n in names if n not in MUTANTS]
    if bad:
        parser.error(f"--only: unknown {bad}; choose among {list(MUTANTS)}")
    with tempfile.TemporaryDirectory(prefix="rmtalign-mutants-") as copy:
        for part in ("rmtalign", "tests"):
            shutil.copytree(os.path.join(ROOT, part), os.path.join(copy, part),
                            ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        shutil.copy(os.path.join(ROOT, "setup.cfg"), copy)
        rc, failed, tail = _run_tests(copy, args.golden, args.tests)
        if rc != 0:
            print(f"the unmutated suite fails ({tail}): fix that first", file=sys.stderr)
            return 1
        survived = 0
        for name in names:
            path, old, new, what = MUTANTS[name]
            target = os.path.join(copy, path)
            text = open(target).read()
            if text.count(old) != 1:
                print(f"{name}: the text to mutate is not found once in {path}; update the mutant",
                      file=sys.stderr)
                return 1
            open(target, "w").write(text.replace(old, new))
            try:
                rc, failed, _ = _run_tests(copy, args.golden, args.tests)
            finally:
                open(target, "w").write(text)
            survived += rc == 0
            verdict = "killed  " if rc != 0 else "SURVIVED"
            shown = ", ".join(failed[:4]) + (f" (+{len(failed) - 4} more)" if len(failed) > 4 else "")
            print(f"{verdict} {name:28s} ({what}): {shown or '-'}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
