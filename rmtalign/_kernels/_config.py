"""numba runtime settings shared by every kernel module.

The default OpenMP/TBB pools spin after a parallel region and steal the two cores from the BLAS
call that follows (1.5-3x slower when interleaved, see DESIGN.md); the workqueue layer does not
spin. A user's explicit choice (``NUMBA_THREADING_LAYER``) wins.
"""
import os

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


class single_thread:
    """Run numba kernels on the calling thread only, inside loops that alternate them with BLAS.

    OpenBLAS's worker keeps spinning on the other core for a while after each call; a parallel
    numba kernel started meanwhile puts three busy threads on two cores, and small GEMM/QR
    chains slow down several-fold (measured in scripts/bench.py, jacobian_long). On one thread
    the generator overlaps harmlessly with the spinning worker.
    """

    def __enter__(self):
        self._saved = numba.get_num_threads()
        numba.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self._saved)
        return False
