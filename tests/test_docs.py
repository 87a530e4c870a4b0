"""The documentation site: it builds with warnings as errors, and its code examples run.

1. ``sphinx-build -W --keep-going -b html docs <tmp>`` (skipped when sphinx, myst-parser or
   numpydoc is not installed: the ``docs`` extra).
2. Every fenced ```` ```python ```` block of every ``docs/*.md`` page runs, page by page, in
   order, in one namespace per page (later blocks use earlier ones' names), in a temporary
   working directory. Pages with a runner of their own are left to it (``OWN_RUNNER``). A block
   whose first line is ``# doc-test: skip (reason)`` is illustrative only (too costly to run):
   it is not run, and the skip is reported (a ``DocBlockSkipped`` warning in pytest's summary,
   and ``test_skipped_blocks_are_few_and_explained`` lists them). A block that imports torch is
   skipped, with the rest of its page, when torch is not installed.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Pages whose examples another test runs (with assertions of its own).
OWN_RUNNER = {"howto_torch.md": "tests/torch/test_torch_howto.py"}

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_SKIP = re.compile(r"^#\s*doc-test:\s*skip\b\s*(.*)$")
_NEEDS_TORCH = re.compile(r"^\s*(import torch\b|from torch\b|import rmtalign\.torch\b|"
                          r"from rmtalign\.torch\b|from rmtalign import torch\b)", re.M)


class DocBlockSkipped(UserWarning):
    """A documentation example that the doc test did not run."""


def _blocks(path: Path):
    """``(line, code, skip_reason)`` of every ```python block of a page, in order."""
    text = path.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        code = match.group(1)
        line = text.count("\n", 0, match.start(1)) + 1
        first = code.lstrip("\n").split("\n", 1)[0].strip()
        skip = _SKIP.match(first)
        out.append((line, code, (skip.group(1).strip() or "") if skip else None))
    return out


def _pages():
    return sorted(p.name for p in DOCS.glob("*.md"))


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


@pytest.mark.parametrize("page", _pages())
def test_examples_run(page, tmp_path, monkeypatch):
    if page in OWN_RUNNER:
        pytest.skip(f"{page}: its examples are run by {OWN_RUNNER[page]}")
    path = DOCS / page
    blocks = _blocks(path)
    if not blocks:
        pytest.skip(f"{page} has no python examples")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    skipped, torch_missing = [], None
    try:
        for line, code, reason in blocks:
            where = f"docs/{page}:{line}"
            if reason is not None:
                skipped.append(f"{where}: {reason or 'no reason given'}")
                continue
            if torch_missing or (_NEEDS_TORCH.search(code) and not _has_torch()):
                torch_missing = torch_missing or where
                skipped.append(f"{where}: needs torch (not installed)")
                continue
            try:
                exec(compile(code, where, "exec"), namespace)
            except Exception as err:
                raise AssertionError(f"the example at {where} failed: "
                                     f"{type(err).__name__}: {err}\n--- code ---\n{code}") from err
    finally:
        plt.close("all")
    for s in skipped:
        warnings.warn(s, DocBlockSkipped, stacklevel=1)
    ran = len(blocks) - len(skipped)
    print(f"{page}: ran {ran} example(s), skipped {len(skipped)}")
    if ran == 0:
        pytest.skip(f"{page}: every example skipped: " + "; ".join(skipped))


def test_skipped_blocks_are_few_and_explained():
    """Every ``# doc-test: skip`` marker gives its reason; at most a few blocks are skipped."""
    marked = []
    for page in _pages():
        for line, _code, reason in _blocks(DOCS / page):
            if reason is not None:
                assert reason, f"docs/{page}:{line}: '# doc-test: skip' needs a reason in brackets"
                marked.append(f"docs/{page}:{line} {reason}")
    print(f"{len(marked)} documentation example(s) marked 'doc-test: skip':", *marked, sep="\n  ")
    total = sum(len(_blocks(DOCS / p)) for p in _pages())
    assert len(marked) <= max(3, total // 5), marked


def test_block_parser(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```python\n# doc-test: skip (costs an hour)\nrun()\n```\n\n"
                    "    indented = 'not a block'\n\n```python\na = 1\n```\n```bash\nls\n```\n")
    assert _blocks(page) == [(3, "# doc-test: skip (costs an hour)\nrun()\n", "(costs an hour)"),
                             (10, "a = 1\n", None)]
    assert _NEEDS_TORCH.search("import numpy\nfrom rmtalign.torch import measure\n")
    assert not _NEEDS_TORCH.search("import rmtalign as ra\n# torch is optional\n")


def test_site_builds_without_warnings(tmp_path):
    for mod in ("sphinx", "myst_parser", "numpydoc"):
        pytest.importorskip(mod, reason="the docs extra is not installed")
    out = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stderr[-6000:]}"
    for page in ["index", "quickstart", "reference", "api/index", "api/torch", "api/sweep"]:
        assert (out / f"{page}.html").is_file(), page
