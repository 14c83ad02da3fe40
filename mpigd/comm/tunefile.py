"""The tune file of ``mpigd tune``: what a calibration holds, where it lives, reading and writing it.

Pure Python, no MPI: ``auto`` reads it under mpiexec, and ``mpigd plan`` reads it as a plain process
(importing :mod:`mpigd.comm.tuning`, which measures, would start MPI).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mpigd.comm.costmodel import CostModel, Crossover
from mpigd.environment import tune_file_from_env
from mpigd.outputs import written

FORMAT = 1


@dataclass
class Tuning:
    """A calibration: the cost model, the measured crossover and what it was measured on."""

    ranks: int
    model: CostModel
    crossover: Crossover | None
    mpi_library: str = ""
    hostname: str = ""
    dtype: str = "float64"
    measurements: dict[str, Any] = field(default_factory=dict)
    ring_segment_bytes: int | None = None
    # Where it came from (``mpigd tune`` fills it): command, git commit, date, versions, repeats.
    metadata: dict[str, Any] = field(default_factory=dict)

    def crossover_for(self, ranks: int) -> Crossover:
        """The measured table when it was made on ``ranks`` ranks, else the model's."""
        if self.crossover is not None and self.ranks == ranks:
            return self.crossover
        return Crossover.from_model(self.model, ranks)

    def ring_segment_for(self, ranks: int) -> int | None:
        """The ring's measured segment size when made on ``ranks`` ranks, else ``None`` (the default)."""
        return self.ring_segment_bytes if self.ranks == ranks else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "ranks": self.ranks, "hostname": self.hostname,
            "mpi_library": self.mpi_library, "dtype": self.dtype,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": {"alpha_s": self.model.alpha, "beta_s_per_byte": self.model.beta,
                      "gamma_s_per_byte": self.model.gamma},
            "crossover": None if self.crossover is None else self.crossover.as_list(),
            "ring_segment_bytes": self.ring_segment_bytes,
            "measurements": self.measurements,
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tuning":
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported tune-file format {data.get('format')!r} (want {FORMAT})")
        m = data["model"]
        table = data.get("crossover")
        segment = data.get("ring_segment_bytes")  # absent from files of earlier versions
        if segment is not None and not _positive_integer(segment):
            raise ValueError(f"ring_segment_bytes must be a positive integer, got {segment!r}")
        if not _positive_integer(data["ranks"]):  # int() read 2.9 as 2, and 0 or true as one rank
            raise ValueError(f"ranks must be a positive integer, got {data['ranks']!r}")
        costs = {name: float(m[name]) for name in ("alpha_s", "beta_s_per_byte", "gamma_s_per_byte")}
        for name, value in costs.items():  # auto builds its table from them on another rank count
            if not (0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        return cls(data["ranks"], CostModel(*costs.values()),
                   None if table is None else Crossover.from_list(table),
                   data.get("mpi_library", ""), data.get("hostname", ""), data.get("dtype", "float64"),
                   data.get("measurements", {}), segment,
                   data["metadata"] if isinstance(data.get("metadata"), dict) else {})


def _positive_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def default_path(ranks: int) -> Path:
    """``$XDG_CACHE_HOME/mpigd/tune-<hostname>-<ranks>ranks.json`` (``~/.cache`` by default)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mpigd" / f"tune-{platform.node() or 'host'}-{ranks}ranks.json"


def find_tune_file(explicit: str | None, ranks: int) -> tuple[Path | None, bool]:
    """Which tune file to read: ``explicit``, else ``$MPIGD_TUNE_FILE``, else the default path.

    Returns ``(path, required)``: a path named by the user must exist; the default path is
    used only when present, and ``(None, False)`` means built-in defaults.
    """
    named = explicit or tune_file_from_env()
    if named:
        return Path(named).expanduser(), True
    path = default_path(ranks)
    return (path, False) if path.is_file() else (None, False)


def load(path: str | os.PathLike) -> Tuning:
    """Read a tune file written by :func:`save`; ``ValueError`` or ``OSError`` if unusable."""
    with open(path, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
            if not isinstance(data, dict):
                raise TypeError("its JSON is not an object")
            return Tuning.from_dict(data)
        # ValueError too: int("two") for a count did not name the file it came from.
        # OverflowError: a crossover bound of Infinity (int(inf)).
        except (AttributeError, KeyError, OverflowError, TypeError, ValueError, UnicodeDecodeError) as error:
            message = str(error)
            raise ValueError(message if message.startswith(f"{path}:") else f"{path}: not a tune file ({message})") from None


def save(tuning: Tuning, path: str | os.PathLike | None = None) -> Path:
    """Write ``tuning`` as JSON and return where: ``path``, or (``None``, as ``mpigd tune`` without
    ``--output``) :func:`default_path` for its rank count, where ``auto`` and ``ring`` look.

    Through a temporary name and a rename (:func:`mpigd.outputs.written`: a full disk leaves no half
    file and is one line). Not collective: call it on one rank (rank 0), as the command does.
    """
    target = Path(default_path(tuning.ranks) if path is None else path)
    with written(str(target)) as temporary:
        Path(temporary).write_text(json.dumps(tuning.as_dict(), indent=2) + "\n", encoding="utf-8")
    return target
