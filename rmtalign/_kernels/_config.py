"""numba runtime settings shared by every kernel module.

The default OpenMP/TBB pools spin after a parallel region and steal the two cores from the BLAS
call that follows (1.5-3x slower when interleaved, see DESIGN.md); the workqueue layer does not
spin. A user's explicit choice (``NUMBA_THREADING_LAYER``) wins.
"""
import os
import queue
import threading

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


def in_background(iterable, depth: int = 4):
    """Iterate ``iterable`` on a helper thread, ``depth`` items ahead of the caller.

    For chains that alternate generating operands (numba, GIL released) with consuming them
    (single-threaded LAPACK, GIL released): on two cores the two halves then overlap instead of
    adding up. The helper runs numba on one thread; the caller must not launch parallel numba
    kernels meanwhile (the workqueue layer serves one launching thread at a time). An exception
    in the helper is re-raised in the caller; closing the returned generator stops the helper.
    """
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
