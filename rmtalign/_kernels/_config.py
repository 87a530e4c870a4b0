"""numba runtime settings shared by every kernel module.

The default OpenMP/TBB pools spin after a parallel region and steal the two cores from the BLAS
call that follows (1.5-3x slower when interleaved, see DESIGN.md); the workqueue layer does not
spin. A user's explicit choice (``NUMBA_THREADING_LAYER``) wins.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"
