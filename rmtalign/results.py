"""One protocol for every result: sampled, extrapolated, or computed by the theory.

Results are plain dataclasses of numpy arrays with

* ``to_dict()``: JSON-ready (``json.dumps`` works): arrays become lists, ``NaN`` becomes
  ``null`` and ``±inf`` the strings ``"inf"``/``"-inf"`` (e.g. the log singular value of an exact
  zero), families their :meth:`~rmtalign.families.Family.to_dict`; bulky optional members (kept
  vectors or kernels) are left out;
* ``to_table()``: tidy columns of equal length, one row per observation (e.g. sample x layer);
* ``to_csv(path)``: that table as CSV, written atomically (a temporary file in the same folder,
  then a rename), with an empty cell for ``NaN`` and ``inf``/``-inf`` for infinities, every float
  written in full precision (it reads back bit for bit);
* a short ``repr`` (shapes, not values), so that a result typed in a notebook prints one line.

Per-layer quantities are called the same on every side: ``layers`` (the index ``v``), ``cos`` and
``angle_deg`` (degrees).
"""
from __future__ import annotations

import csv
import math
import os
import secrets
from dataclasses import fields
from pathlib import Path

import numpy as np

__all__ = ["Result", "SampleStatistics", "json_ready", "write_csv"]


def json_ready(value):
    """``value`` with numpy arrays, numpy scalars and non-finite floats made JSON-ready."""
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fc":
            return [json_ready(v) for v in value.tolist()] if value.ndim else json_ready(value.item())
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(json_ready(k)): json_ready(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _cell(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return v


def write_csv(path, columns: dict) -> Path:
    """Write ``columns`` (name -> equal-length sequence) as CSV at ``path``, atomically: a reader
    sees the old file or the whole new one, never a partial one. Returns the path."""
    path = Path(path)
    cols = {k: np.asarray(v) for k, v in columns.items()}
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"table columns must have equal lengths, got {lengths}")

    def write(fh):
        w = csv.writer(fh)
        w.writerow(cols)
        for row in zip(*cols.values()):
            w.writerow([_cell(v) for v in row])

    return write_atomic(path, write, "w")


def write_atomic(path, write, mode="w") -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path`` (``open(..., mode)``: ``"w"`` text,
    ``"wb"`` binary), then rename it to ``path``: a reader, or a run interrupted at any point
    (Ctrl-C included), sees the old file or the whole new one, never a partial one. The file gets
    the permissions of any new file (``0o666`` less the umask; ``mkstemp`` would give ``0o600``).
    Returns the path."""
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # another writer's temporary file: draw another name
            continue
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _summary(v):
    if hasattr(v, "label"):
        return v.label
    if isinstance(v, np.ndarray):
        if v.size <= 4 and v.ndim <= 1:
            return np.array2string(v, precision=4, separator=", ")
        if v.ndim == 1 and v.dtype.kind in "iu" and np.array_equal(v, np.arange(v[0], v[0] + v.size)):
            return f"{v[0]}..{v[-1]}"
        return f"<{v.dtype} {'x'.join(map(str, v.shape))}>"
    if isinstance(v, dict):
        return repr(v) if len(repr(v)) <= 60 else f"<{len(v)} entries>"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)) and len(v) > 4:
        return f"<{len(v)} items>"
    return repr(v)


class Result:
    """Base of every result dataclass (see the module docstring).

    Subclasses implement ``_table()`` (a dict of equal-length columns) and may name in
    ``_bulky`` the optional members ``to_dict`` leaves out."""

    _bulky: tuple = ()

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (``json.dumps(result.to_dict())`` works)."""
        return {f.name: json_ready(getattr(self, f.name)) for f in fields(self)
                if f.name not in self._bulky}

    def to_table(self) -> dict:
        """Tidy columns of equal length (name -> 1-d array)."""
        cols = {k: np.asarray(v).reshape(-1) for k, v in self._table().items()}
        if len({len(v) for v in cols.values()}) > 1:  # pragma: no cover - a bug in _table
            raise AssertionError(f"{type(self).__name__}._table has unequal columns")
        return cols

    def _table(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_csv(self, path) -> Path:
        """Write :meth:`to_table` as CSV at ``path`` (atomically; see :func:`write_csv`)."""
        return write_csv(path, self.to_table())

    def __repr__(self) -> str:
        parts = [f"{f.name}={_summary(getattr(self, f.name))}" for f in fields(self) if f.repr]
        return f"{type(self).__name__}({', '.join(parts)})"


class SampleStatistics:
    """``mean``/``sem`` over samples of the ``(samples, layers)`` arrays named in ``_per_layer``."""

    _per_layer: tuple = ()

    def _column(self, quantity):
        if quantity not in self._per_layer:
            raise ValueError(f"quantity must be one of {', '.join(self._per_layer)}; got {quantity!r}")
        return np.asarray(getattr(self, quantity), dtype=float)

    def mean(self, quantity: str = "cos") -> np.ndarray:
        """Per-layer mean over samples (NaN entries ignored)."""
        x = self._column(quantity)
        with np.errstate(invalid="ignore"):
            cnt = np.sum(np.isfinite(x), axis=0)
            return np.where(cnt > 0, np.nansum(x, axis=0) / np.maximum(cnt, 1), np.nan)

    def sem(self, quantity: str = "cos") -> np.ndarray:
        """Per-layer standard error of :meth:`mean` (NaN with fewer than 2 finite samples)."""
        x = self._column(quantity)
        cnt = np.sum(np.isfinite(x), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = self.mean(quantity)
            var = np.nansum((x - mu) ** 2, axis=0) / (cnt - 1)
            return np.where(cnt > 1, np.sqrt(var / cnt), np.nan)

    def _sample_layer_table(self) -> dict:
        n, nl = len(self.sample), len(self.layers)
        cols = {"sample": np.repeat(self.sample, nl), "layer": np.tile(self.layers, n)}
        for name in self._per_layer:
            cols[name] = np.asarray(getattr(self, name)).reshape(n * nl)
        return cols
