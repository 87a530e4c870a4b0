"""Seeds: from the user's ``seed`` to the key of every random object, and grid points keyed by
their content.

A sampler call is keyed by ``seed`` (an int, a ``numpy.random.SeedSequence`` or None), which
becomes a 64-bit base key. Sample ``i`` of the call has the key ``derive_key(base, i)``, and every
random object of that draw (the weights of layer ``l``, the masks of layer ``l``, the probes, the
input or the batch of inputs) has a child key of its own (:func:`stream_key`): a result never depends on the thread
count, on how many samples one call draws, or on where it runs.

A grid of calls (the CLI's depth curves, :func:`rmtalign.width_limit`, sweeps) gives each point
the seed :func:`point_seed` derives from the user's seed and the point's *content* (the family's
canonical fields and the quantity sampled), never from its position: reordering, extending or
splitting a grid, or running it on another machine, leaves every point's numbers unchanged.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

from ._kernels import rng

__all__ = ["resolve_seed", "point_seed"]

# Stream kinds within a sample key (INPUTS: the frame of a drawn batch of inputs).
WEIGHT, MASK, PROBE, INPUT, INPUTS = 1, 2, 3, 4, 5


def resolve_seed(seed) -> tuple[np.random.SeedSequence, int]:
    """``(SeedSequence, 64-bit base key)`` from an int, a SeedSequence or None."""
    if isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif seed is None or (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer, a SeedSequence or None; got {seed!r}")
        ss = np.random.SeedSequence(None if seed is None else int(seed))
    else:
        raise TypeError(f"seed must be an int, a numpy.random.SeedSequence or None; got {seed!r}")
    return ss, int(ss.generate_state(1, np.uint64)[0])


def resolve_samples(samples) -> np.ndarray:
    """Sample indices from a count ``n`` (``0..n-1``) or an explicit sequence of indices."""
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples!r}")
        return np.arange(int(samples))
    try:
        idx = np.asarray(list(samples))
    except TypeError:
        raise TypeError(f"samples must be a count or a sequence of sample indices; got {samples!r}") from None
    if idx.size == 0 or idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise ValueError(f"samples must be a non-empty sequence of non-negative integers; got {samples!r}")
    return idx.astype(np.int64)


def sample_keys(seed, samples):
    """``(SeedSequence, sample indices, key of each sample)`` of a sampler call."""
    ss, base = resolve_seed(seed)
    idx = resolve_samples(samples)
    return ss, idx, [rng.derive_key(base, int(i)) for i in idx]


def stream_key(key: int, kind: int, *path: int) -> np.uint64:
    """Key of one random object of the draw keyed by ``key`` (``kind``: WEIGHT, MASK, ...)."""
    return np.uint64(rng.derive_key(key, kind, *path))


def seed_record(ss: np.random.SeedSequence) -> dict:
    """What a result records of its seed: enough to rebuild the SeedSequence."""
    return {"entropy": ss.entropy, "spawn_key": list(ss.spawn_key)}


def point_seed(seed, family, quantity: str) -> np.random.SeedSequence:
    """The seed of one grid point: a child of ``seed`` keyed by the point's content.

    The content is ``family``'s canonical fields (:meth:`rmtalign.families.Family.to_dict`) and
    ``quantity``, a string naming what is sampled (e.g. ``"bfa-exact"``). Resolve ``seed=None``
    once per grid (``resolve_seed``) and pass the SeedSequence, so that the grid's points share
    the entropy recorded in their results."""
    ss, _ = resolve_seed(seed)
    if not isinstance(quantity, str):
        raise TypeError(f"quantity must be a string, got {quantity!r}")
    content = json.dumps([family.to_dict(), quantity], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(content.encode()).digest()
    words = tuple(int(w) for w in np.frombuffer(digest[:16], dtype="<u4"))
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + words,
                                  pool_size=ss.pool_size)
