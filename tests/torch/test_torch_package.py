"""The torch bridge's package: lazy, and a clear error without PyTorch."""
import subprocess
import sys

import pytest


def test_without_torch_the_error_says_what_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import rmtalign as ra\n"
            "try:\n    ra.torch.measure\n"
            "except ModuleNotFoundError as e:\n    print(e.name, '|', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    name, message = out.stdout.split("|")
    assert name.strip() == "torch"
    assert "rmtalign.torch.measure needs PyTorch" in message and "rmtalign[torch]" in message


def test_submodules_are_attributes_of_the_package():
    import rmtalign as ra

    assert callable(ra.sweep.sweep) and ra.figures.FIGURES
    pytest.importorskip("torch")
    assert callable(ra.torch.measure)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ra.torch.nope
