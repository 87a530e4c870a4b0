"""The installed console script ``rmtalign`` (entry point ``rmtalign.cli:main``), run for real."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("rmtalign")


@pytest.fixture(scope="module")
def script():
    if not SCRIPT.exists():  # pragma: no cover - rmtalign not installed beside this Python
        pytest.skip(f"no console script at {SCRIPT}")
    return str(SCRIPT)


def test_console_script_json(script, tmp_path):
    done = subprocess.run([script, "limit", "--alphas", "0.5", "--depths", "10", "--json",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["limits"][0]["regime"] == "critical" and done.stderr == ""


def test_console_script_bad_value(script, tmp_path):
    done = subprocess.run([script, "curve", "--width", "-3", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--width" in done.stderr and "Traceback" not in done.stderr
