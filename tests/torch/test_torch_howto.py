"""docs/howto_torch.md runs: every ```python block, in order, in one namespace (the page is one
session)."""
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto_torch.md"


def blocks():
    return re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_page_has_code():
    assert len(blocks()) >= 6


def test_every_block_runs(capsys):
    namespace = {"__name__": "howto_torch"}
    for i, code in enumerate(blocks()):
        try:
            exec(compile(code, f"{PAGE.name}[block {i}]", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"block {i} of {PAGE.name} failed: {err!r}\n{code}") from err
    printed = capsys.readouterr().out
    assert "OutputMultiplier(alpha=" in printed
