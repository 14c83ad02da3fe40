"""``mpigd gen``: write a synthetic data set of any size, every rank writing its own rows.

Rows come from :mod:`mpigd.data.synthetic`, so the file is the same whatever the rank count.

* ``npy``: rank 0 creates ``X.npy`` and ``y.npy`` at full size in the output directory; after a
  barrier every rank writes its rows at their offsets through a memory map.
* ``hdf5``: rank 0 creates the datasets; then the ranks take turns (a barrier between turns),
  each writing its rows in chunks. Without a parallel HDF5 build only one process may have the
  file open for writing, and turns keep every rank's memory bounded, which gathering on rank 0
  would not.
* ``csv`` and ``libsvm``: the rows are written in rounds of at most :data:`ROUND_ROWS` rows per
  rank. In each round every rank formats its rows to bytes, an exclusive prefix sum of the byte
  counts gives its offset, and it writes there with ``os.pwrite``. Floats are written with
  ``repr``, which reads back to the same bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mpigd.data import synthetic
from mpigd.data.textio import exclusive_prefix, rank_values, together
from mpigd.errors import InputError, UsageError
from mpigd.partition import block_range

ROUND_ROWS = 65536


@dataclass(frozen=True)
class Spec:
    """What to generate; invalid values raise :class:`~mpigd.errors.UsageError`."""

    rows: int
    features: int
    task: str
    seed: int
    format: str
    output: str
    density: float = 1.0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.features < 1 or self.seed < 0:
            raise UsageError("gen needs rows >= 1, features >= 1 and seed >= 0")
        if not 0.0 < self.density <= 1.0:
            raise UsageError(f"density must be in (0, 1], got {self.density}")
        if self.task not in ("regression", "classification"):
            raise UsageError(f"task must be regression or classification, got {self.task!r}")
        if self.format not in ("npy", "hdf5", "csv", "libsvm"):
            raise UsageError(f"gen writes npy, hdf5, csv or libsvm, not {self.format!r}")

    def rows_of(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return synthetic.generate(self.task, self.features, self.seed, start, stop, "float64", self.density)


def _labels(spec: Spec, y: np.ndarray) -> list[str]:
    return ["1" if v else "0" for v in y.tolist()] if spec.task == "classification" else list(map(repr, y.tolist()))


def csv_bytes(spec: Spec, X: np.ndarray, y: np.ndarray) -> bytes:
    """Rows as CSV lines, features then the label."""
    d = X.shape[1]
    values = list(map(repr, X.ravel().tolist()))
    labels = _labels(spec, y)
    return "".join(",".join(values[i * d:(i + 1) * d]) + "," + labels[i] + "\n" for i in range(len(labels))).encode()


def libsvm_bytes(spec: Spec, X: np.ndarray, y: np.ndarray) -> bytes:
    """Rows as LIBSVM lines with one-based indices; zeros are left out."""
    lines = []
    for label, row in zip(_labels(spec, y), X):
        nonzero = np.flatnonzero(row)
        lines.append(" ".join([label] + [f"{j + 1}:{v!r}" for j, v in zip(nonzero.tolist(), row[nonzero].tolist())]))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _csv_header(spec: Spec) -> bytes:
    return (",".join([f"x{j}" for j in range(spec.features)] + ["y"]) + "\n").encode()


def _os_step(action, *args):
    """``action(*args)``, with an OS error turned into a one-line error every rank agrees on."""
    try:
        return action(*args)
    except OSError as error:
        raise InputError(f"cannot write the data set: {error}") from None


def _create_text(spec: Spec) -> int:
    header = _csv_header(spec) if spec.format == "csv" else b""
    with open(spec.output, "wb") as handle:
        handle.write(header)
    return len(header)


def _write_text(spec: Spec, comm) -> int:
    base = np.zeros(1, dtype=np.int64)
    if comm.rank == 0:
        base[0] = together(comm, _os_step, _create_text, spec)
    else:
        together(comm, lambda: None)
    comm.broadcast(base)
    offset = int(base[0])
    fmt = csv_bytes if spec.format == "csv" else libsvm_bytes
    descriptor = together(comm, _os_step, os.open, spec.output, os.O_WRONLY)
    try:
        per_round = ROUND_ROWS * comm.size
        for first in range(0, spec.rows, per_round):
            count = min(per_round, spec.rows - first)
            lo, hi = block_range(count, comm.size, comm.rank)
            data = fmt(spec, *spec.rows_of(first + lo, first + hi))
            lengths = rank_values(comm, len(data))
            start = offset + exclusive_prefix(lengths, comm.rank)
            written = 0
            while written < len(data):
                written += os.pwrite(descriptor, memoryview(data)[written:], start + written)
            offset += int(lengths.sum())
    finally:
        os.close(descriptor)
    comm.barrier()  # the file is whole before gen returns on any rank
    return offset


def _write_npy(spec: Spec, comm) -> int:
    paths = os.path.join(spec.output, "X.npy"), os.path.join(spec.output, "y.npy")
    shapes = (spec.rows, spec.features), (spec.rows,)

    def create() -> None:
        os.makedirs(spec.output, exist_ok=True)
        for path, shape in zip(paths, shapes):
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape).flush()

    together(comm, _os_step, create if comm.rank == 0 else (lambda: None))
    comm.barrier()
    X_all, y_all = (np.load(path, mmap_mode="r+") for path in paths)
    lo, hi = block_range(spec.rows, comm.size, comm.rank)
    for start in range(lo, hi, ROUND_ROWS):
        stop = min(start + ROUND_ROWS, hi)
        X_all[start:stop], y_all[start:stop] = spec.rows_of(start, stop)
    X_all.flush()
    y_all.flush()
    del X_all, y_all
    comm.barrier()
    return sum(os.path.getsize(path) for path in paths)


def _write_hdf5(spec: Spec, comm) -> int:
    from mpigd.data.hdf5 import h5py_module

    h5py = together(comm, h5py_module)

    def create() -> None:
        with h5py.File(spec.output, "w") as handle:
            handle.create_dataset("X", shape=(spec.rows, spec.features), dtype="f8")
            handle.create_dataset("y", shape=(spec.rows,), dtype="f8")

    together(comm, _os_step, create if comm.rank == 0 else (lambda: None))
    lo, hi = block_range(spec.rows, comm.size, comm.rank)
    for turn in range(comm.size):
        if turn == comm.rank and hi > lo:
            with h5py.File(spec.output, "r+") as handle:
                for start in range(lo, hi, ROUND_ROWS):
                    stop = min(start + ROUND_ROWS, hi)
                    handle["X"][start:stop], handle["y"][start:stop] = spec.rows_of(start, stop)
        comm.barrier()
    return os.path.getsize(spec.output)


def write(spec: Spec, comm) -> int:
    """Write the data set ``spec`` describes; return its size in bytes. Collective."""
    writer = {"csv": _write_text, "libsvm": _write_text, "npy": _write_npy, "hdf5": _write_hdf5}[spec.format]
    return writer(spec, comm)
