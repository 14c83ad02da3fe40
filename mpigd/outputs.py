"""The files of a run (``summary.json``, ``metrics.jsonl``, ``params.npz``), written by rank 0 alone."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import numpy as np


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a
    part: a temporary file in the same directory, fsync, rename, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` image of ``arrays`` (loadable with ``allow_pickle=False``)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class RunOutputs:
    """The output directory of a run; every method does nothing unless ``active`` (rank 0)."""

    def __init__(self, directory: str | None, active: bool) -> None:
        self.directory = directory
        self.active = active and directory is not None
        self._metrics = None

    def open(self) -> None:
        """Create the directory and start ``metrics.jsonl``; call once the input is known good."""
        if not self.active:
            return
        os.makedirs(self.directory, exist_ok=True)
        self._metrics = open(os.path.join(self.directory, "metrics.jsonl"), "w", encoding="utf-8")

    def metric(self, record: dict[str, Any]) -> None:
        if self._metrics is not None:
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()

    def finish(self, summary: dict[str, Any], arrays: dict[str, np.ndarray],
               model: dict[str, Any] | None = None) -> None:
        """Write the model's description (``model.json``, what ``mpigd predict`` rebuilds the model
        from), the parameters and the summary, each atomically, and close ``metrics.jsonl``."""
        if not self.active:
            return
        self.close()
        if model is not None:
            text = json.dumps(model, indent=2, sort_keys=True) + "\n"
            atomic_write(os.path.join(self.directory, "model.json"), text.encode())
        atomic_write(os.path.join(self.directory, "params.npz"), npz_bytes(arrays))
        text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
        atomic_write(os.path.join(self.directory, "summary.json"), text.encode())

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
