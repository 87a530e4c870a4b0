#!/usr/bin/env bash
# Create .venv in the checkout if missing and install rmtalign into it (editable).
# Usage: bash scripts/setup_env.sh [EXTRAS]     e.g. EXTRAS=torch,test
# torch is pinned to the 2.13.0 CPU build *before* the extra is resolved: a bare `torch`
# requirement would otherwise pull a CUDA build of several GB.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
if [[ ",$extras," == *",torch,"* ]] && ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${pip[@]}" install "torch==2.13.0"
fi
"${pip[@]}" install -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",experiments,"* ]]; then
  # mup requires torchvision, which would replace the CPU torch by a CUDA build; its code does
  # not use it (setup.cfg)
  "${pip[@]}" install --no-deps "mup==1.0.0"
fi
.venv/bin/python -c "import rmtalign" # fail here, loudly, if the install did not work
