"""Runtime settings: numba's threading layer, thread limits around BLAS, the background helper,
progress bars.

Nothing here acts at import time. :func:`configure_numba` runs when a kernel is first launched
(the kernels' Python entry points call it), so ``import rmtalign`` leaves the user's numba
configuration alone until rmtalign actually computes something.

Why ``workqueue``: numba's default OpenMP/TBB pools spin after a parallel region and steal the
two cores from the BLAS call that follows (1.5-3x slower when interleaved, DESIGN.md); the
workqueue layer does not spin. It cannot be entered from several Python threads at once, so
parallel sweeps use processes. A user's own choice wins: ``NUMBA_THREADING_LAYER`` in the
environment, or any layer set in ``numba.config`` before rmtalign's first kernel.
"""
from __future__ import annotations

import os
import queue
import sys
import threading

_configured = False


def configure_numba() -> None:
    """Select the ``workqueue`` threading layer unless the user chose one. Idempotent, cheap."""
    global _configured
    if _configured:
        return
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"
    _configured = True


class single_thread:
    """Run numba kernels on the calling thread only, inside loops that alternate them with BLAS.

    OpenBLAS's worker keeps spinning on the other core for a while after each call; a parallel
    numba kernel started meanwhile puts three busy threads on two cores, and small GEMM/QR
    chains slow down several-fold (measured in scripts/bench.py, jacobian_long). On one thread
    the generator overlaps harmlessly with the spinning worker.
    """

    def __enter__(self):
        import numba

        configure_numba()
        self._saved = numba.get_num_threads()
        numba.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self._saved)
        return False


def one_blas_thread():
    """Context manager: BLAS/LAPACK on one thread (threadpoolctl), e.g. beside a helper thread."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def in_background(iterable, depth: int = 4):
    """Iterate ``iterable`` on a helper thread, ``depth`` items ahead of the caller.

    For chains that alternate generating operands (numba, GIL released) with consuming them
    (single-threaded LAPACK, GIL released): on two cores the two halves then overlap instead of
    adding up. The helper runs numba on one thread; the caller must not launch parallel numba
    kernels meanwhile (the workqueue layer serves one launching thread at a time). An exception
    in the helper is re-raised in the caller; closing the returned generator stops the helper.
    """
    import numba

    configure_numba()
    items = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def offer(item):
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        numba.set_num_threads(1)  # per thread: the caller's setting is untouched
        try:
            for item in iterable:
                if not offer((None, item)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            offer((err, None))
            return
        offer((None, done))

    worker = threading.Thread(target=produce, name="rmtalign-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            err, item = items.get()
            if err is not None:
                raise err
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()


def progress(total, enabled, desc, work):
    """A tqdm bar on stderr when asked (``True``), or when ``None`` and the job is long (``work``
    in flops above 3e8) on a terminal; None otherwise."""
    if enabled is None:
        enabled = work > 3e8 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
