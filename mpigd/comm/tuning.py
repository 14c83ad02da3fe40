"""``mpigd tune``: calibrate the cost model and the crossover of ``auto`` on this communicator.

Two kinds of measurement, both short:

* the alpha-beta-gamma parameters of :class:`~mpigd.comm.costmodel.CostModel`, from a ring of
  ``Sendrecv`` exchanges at a few sizes (alpha, beta) and the local add kernel (gamma); kept
  for projections to other rank counts and machines;
* the crossover table of ``auto``, from timing native, ring and tree at every size of a sweep
  and keeping the fastest: measured, not modelled, so ``auto`` follows what this machine does.

The result is a JSON file (:func:`default_path` unless told otherwise) that ``auto`` reads.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI

from mpigd.comm.costmodel import CostModel, Crossover, fit_alpha_beta
from mpigd.comm.strategies import make_strategy
from mpigd.comm.timing import iterations_for, median, time_calls, time_interleaved
from mpigd.environment import tune_file_from_env
from mpigd.kernels import add

FORMAT = 1
MEASURED = ("native", "ring", "tree")
_FIT_SIZES = (8, 1 << 10, 1 << 16, 1 << 20, 1 << 23)


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

    def crossover_for(self, ranks: int) -> Crossover:
        """The measured table when it was made on ``ranks`` ranks, else the model's."""
        if self.crossover is not None and self.ranks == ranks:
            return self.crossover
        return Crossover.from_model(self.model, ranks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "ranks": self.ranks, "hostname": self.hostname,
            "mpi_library": self.mpi_library, "dtype": self.dtype,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": {"alpha_s": self.model.alpha, "beta_s_per_byte": self.model.beta,
                      "gamma_s_per_byte": self.model.gamma},
            "crossover": None if self.crossover is None else self.crossover.as_list(),
            "measurements": self.measurements,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tuning":
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported tune-file format {data.get('format')!r} (want {FORMAT})")
        m = data["model"]
        table = data.get("crossover")
        return cls(int(data["ranks"]), CostModel(float(m["alpha_s"]), float(m["beta_s_per_byte"]),
                                                 float(m["gamma_s_per_byte"])),
                   None if table is None else Crossover.from_list(table),
                   data.get("mpi_library", ""), data.get("hostname", ""), data.get("dtype", "float64"),
                   data.get("measurements", {}))


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
            return Tuning.from_dict(json.load(handle))
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a tune file ({error})") from None


def save(tuning: Tuning, path: str | os.PathLike) -> None:
    """Write ``tuning`` as JSON, through a temporary name and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(tuning.as_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def calibrate(comm: MPI.Comm, sizes: list[int], dtype: str = "float64", repeats: int = 5) -> Tuning:
    """Measure this communicator: the cost model and the fastest strategy at each size. Collective.

    Every rank returns the same :class:`Tuning` (the timings are maxima over ranks).
    """
    p = comm.Get_size()
    kind = np.dtype(dtype)
    alpha, beta = _fit_exchange(comm, kind, repeats) if p > 1 else (0.0, 0.0)
    gamma = _measure_add(comm, kind, repeats)
    measurements: dict[str, Any] = {"sizes_bytes": list(sizes)}
    crossover = None
    if p > 1 and sizes:
        strategies = {name: make_strategy(name, comm) for name in MEASURED}
        seconds: dict[str, list[float]] = {name: [] for name in MEASURED}
        fastest: dict[str, list[float]] = {name: [] for name in MEASURED}
        for nbytes in sizes:
            buffer = np.zeros(max(1, nbytes // kind.itemsize), dtype=kind)
            runs = {name: (lambda s=s: s.allreduce(buffer)) for name, s in strategies.items()}
            samples, _ = time_interleaved(comm, runs, iterations_for(nbytes), repeats)
            for name in MEASURED:
                seconds[name].append(median(samples[name]))
                fastest[name].append(min(samples[name]))
        measurements["median_seconds"] = seconds
        measurements["min_seconds"] = fastest
        # Other processes only ever add time: the fastest repeat is the least disturbed
        # estimate of what each strategy can do, so it decides the crossover.
        crossover = Crossover.from_measurements(sizes, fastest)
    library = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
    return Tuning(p, CostModel(alpha, beta, gamma), crossover, library, platform.node(), dtype, measurements)


def _fit_exchange(comm: MPI.Comm, kind: np.dtype, repeats: int) -> tuple[float, float]:
    # One step of a ring: every rank sends to the right and receives from the left at once,
    # which is what both ring and recursive doubling do at each step.
    p, r = comm.Get_size(), comm.Get_rank()
    right, left = (r + 1) % p, (r - 1) % p
    times = []
    for nbytes in _FIT_SIZES:
        out = np.zeros(max(1, nbytes // kind.itemsize), dtype=kind)
        into = np.empty_like(out)
        samples = time_calls(comm, lambda: comm.Sendrecv(out, right, 31, into, left, 31),
                             iterations_for(nbytes), repeats)
        times.append(median(samples))
    return fit_alpha_beta([float(s) for s in _FIT_SIZES], times)


def _measure_add(comm: MPI.Comm, kind: np.dtype, repeats: int) -> float:
    n = (4 << 20) // kind.itemsize  # past the caches, as the large messages are
    a, b = np.ones(n, dtype=kind), np.ones(n, dtype=kind)
    samples = time_calls(comm, lambda: add(a, b, a), 1, repeats)
    return median(samples) / (n * kind.itemsize)
