"""``mpigd gen``: write a synthetic data set of any size, every rank writing its own rows.

Rows come from :mod:`mpigd.data.synthetic`, so the file is the same whatever the rank count.

* ``npy``: rank 0 creates ``X.npy`` and ``y.npy`` at full size in the output directory; after a
  barrier every rank writes its rows at their offsets through a memory map.
* ``hdf5``: rank 0 creates the datasets; then the ranks take turns (a barrier between turns),
  each writing its rows in chunks. Without a parallel HDF5 build only one process may have the
  file open for writing, and turns keep every rank's memory bounded, which gathering on rank 0
  would not.
* ``csv`` and ``libsvm``: the rows are written in rounds of at most :func:`round_rows` rows per
  rank. In each round every rank formats its rows to bytes, an exclusive prefix sum of the byte
  counts gives its offset, and it writes there with ``os.pwrite``. Floats are written with
  ``repr``, which reads back to the same bits.

Before anything is created, a data set larger than the free space of the target file system is
refused. Every file is written under a temporary name beside its final one (``.NAME.partialPID``,
which no reader takes for data) and rank 0 renames it into place only after every rank has
finished, so a gen that fails or is killed leaves no file under the final name, and an earlier data
set there stays whole until the new one replaces it. If writing fails, every rank stops at the same
point (each write step is agreed) and rank 0 removes the temporary files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from mpigd.data import synthetic
from mpigd.errors import InputError, UsageError
from mpigd.outputs import (check_output_directory, check_output_file, deepest_existing, parent_made, partial_paths,
                           unlink_if_present)
from mpigd.partition import block_range, exclusive_prefix

ROUND_ROWS = 65536
# Values (rows x (features + 1)) a rank holds per round, whatever the feature count: 32 MiB of
# float64, about 80 MB once formatted as text. Rounds of ROUND_ROWS rows alone grew with the width
# (65,536 rows of 2,048 features were a 1 GiB array per rank, and as CSV some 15 GB of strings).
ROUND_VALUES = 1 << 22
# Values formatted at a time by csv_bytes and libsvm_bytes: their Python strings (about 100 bytes
# a value) live only while one such piece is formatted; the round is kept as bytes.
FORMAT_VALUES = 1 << 16
SIZE_SAMPLE_VALUES = 100_000  # values formatted to estimate the size of a text data set


@dataclass(frozen=True)
class Spec:
    """What to generate (``mpigd gen``'s options; its defaults are ``task="classification"``,
    ``seed=0``); invalid values raise :class:`~mpigd.errors.UsageError`. ``format`` is ``npy`` (then
    ``output`` is a directory for ``X.npy`` and ``y.npy``), ``hdf5``, ``csv`` or ``libsvm``."""

    rows: int
    features: int
    task: str
    seed: int
    format: str
    output: str | os.PathLike
    density: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.output, os.PathLike):  # a pathlib.Path is as good as its text, as in Config
            object.__setattr__(self, "output", os.fspath(self.output))
        # Named as the command line names them, and as train words them: the Python twin raises
        # the command's message, which must say which option is wrong.
        for option, value, least in (("--rows", self.rows, 1), ("--features", self.features, 1), ("--seed", self.seed, 0)):
            if value < least:
                raise UsageError(f"{option} must be an integer >= {least}, got {value}")
        # The range and meaning of train's --density (Config): 0 is dense, every entry non-zero.
        if not 0.0 <= self.density < 1.0:
            raise UsageError(f"--density must lie in [0, 1), got {self.density}")
        if self.task not in ("regression", "classification"):
            raise UsageError(f"task must be regression or classification, got {self.task!r}")
        if self.format not in ("npy", "hdf5", "csv", "libsvm"):
            raise UsageError(f"gen writes npy, hdf5, csv or libsvm, not {self.format!r}")

    def rows_of(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return synthetic.generate(self.task, self.features, self.seed, start, stop, "float64", self.density or 1.0)


def round_rows(features: int) -> int:
    """Rows a rank generates and writes per round: :data:`ROUND_ROWS`, fewer for wide rows, so that
    a round holds at most :data:`ROUND_VALUES` values (at least one row)."""
    return max(1, min(ROUND_ROWS, ROUND_VALUES // (features + 1)))


def _pieces(rows: int, features: int):
    """Row slices of about :data:`FORMAT_VALUES` values, the unit of text formatting."""
    step = max(1, FORMAT_VALUES // (features + 1))
    return ((lo, min(lo + step, rows)) for lo in range(0, rows, step))


def _labels(spec: Spec, y: np.ndarray) -> list[str]:
    return ["1" if v else "0" for v in y.tolist()] if spec.task == "classification" else list(map(repr, y.tolist()))


def csv_bytes(spec: Spec, X: np.ndarray, y: np.ndarray) -> bytes:
    """Rows as CSV lines, features then the label."""
    d = X.shape[1]
    pieces = []
    for lo, hi in _pieces(X.shape[0], d):
        values = list(map(repr, X[lo:hi].ravel().tolist()))
        labels = _labels(spec, y[lo:hi])
        pieces.append("".join(",".join(values[i * d:(i + 1) * d]) + "," + labels[i] + "\n"
                              for i in range(len(labels))).encode())
    return b"".join(pieces)


def libsvm_bytes(spec: Spec, X: np.ndarray, y: np.ndarray) -> bytes:
    """Rows as LIBSVM lines with one-based indices; zeros are left out."""
    pieces = []
    for lo, hi in _pieces(X.shape[0], X.shape[1]):
        lines = []
        for label, row in zip(_labels(spec, y[lo:hi]), X[lo:hi]):
            nonzero = np.flatnonzero(row)
            lines.append(" ".join([label] + [f"{j + 1}:{v!r}"
                                             for j, v in zip(nonzero.tolist(), row[nonzero].tolist())]))
        pieces.append(("\n".join(lines) + "\n").encode())
    return b"".join(pieces)


def _csv_header(spec: Spec) -> bytes:
    return (",".join([f"x{j}" for j in range(spec.features)] + ["y"]) + "\n").encode()


def _os_step(action, *args):
    """``action(*args)``, with an OS error turned into a one-line error every rank agrees on."""
    try:
        return action(*args)
    except OSError as error:
        raise InputError(f"cannot write the data set: {error}") from None


def _create_text(spec: Spec, path: str) -> int:
    header = _csv_header(spec) if spec.format == "csv" else b""
    with open(path, "wb") as handle:
        handle.write(header)
    return len(header)


def _write_text(spec: Spec, comm, paths: list[str]) -> None:
    (path,) = paths
    base = np.zeros(1, dtype=np.int64)
    if comm.rank == 0:
        base[0] = comm.together(_os_step, _create_text, spec, path)
    else:
        comm.together(lambda: None)
    comm.broadcast(base)
    offset = int(base[0])
    fmt = csv_bytes if spec.format == "csv" else libsvm_bytes
    descriptor = comm.together(_os_step, os.open, path, os.O_WRONLY)
    try:
        per_round = round_rows(spec.features) * comm.size
        for first in range(0, spec.rows, per_round):
            count = min(per_round, spec.rows - first)
            lo, hi = block_range(count, comm.size, comm.rank)
            data = fmt(spec, *spec.rows_of(first + lo, first + hi))
            lengths = comm.rank_values(len(data))
            start = offset + exclusive_prefix(lengths, comm.rank)
            comm.together(_os_step, _pwrite_all, descriptor, data, start)
            offset += int(lengths.sum())
    finally:
        os.close(descriptor)
    comm.barrier()  # the file is whole before rank 0 renames it


def _pwrite_all(descriptor: int, data: bytes, start: int) -> None:
    written = 0
    while written < len(data):
        written += os.pwrite(descriptor, memoryview(data)[written:], start + written)


def _write_npy(spec: Spec, comm, paths: list[str]) -> None:
    shapes = (spec.rows, spec.features), (spec.rows,)

    def create() -> None:
        os.makedirs(spec.output, exist_ok=True)
        for path, shape in zip(paths, shapes):
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape).flush()

    comm.together(_os_step, create if comm.rank == 0 else (lambda: None))
    comm.barrier()
    X_all, y_all = (np.load(path, mmap_mode="r+") for path in paths)
    lo, hi = block_range(spec.rows, comm.size, comm.rank)
    step = round_rows(spec.features)
    for start in range(lo, hi, step):
        stop = min(start + step, hi)
        X_all[start:stop], y_all[start:stop] = spec.rows_of(start, stop)
    X_all.flush()
    y_all.flush()
    del X_all, y_all
    comm.barrier()


def _write_hdf5(spec: Spec, comm, paths: list[str]) -> None:
    from mpigd.data.hdf5 import h5py_module

    (path,) = paths
    h5py = comm.together(h5py_module)

    def create() -> None:
        with h5py.File(path, "w") as handle:
            handle.create_dataset("X", shape=(spec.rows, spec.features), dtype="f8")
            handle.create_dataset("y", shape=(spec.rows,), dtype="f8")

    def write_own_rows(lo: int, hi: int) -> None:
        with h5py.File(path, "r+") as handle:
            step = round_rows(spec.features)
            for start in range(lo, hi, step):
                stop = min(start + step, hi)
                handle["X"][start:stop], handle["y"][start:stop] = spec.rows_of(start, stop)

    comm.together(_hdf5_step, create if comm.rank == 0 else (lambda: None))
    lo, hi = block_range(spec.rows, comm.size, comm.rank)
    for turn in range(comm.size):
        # The agreement ends each turn as the barrier did, and stops every rank if the writer failed.
        comm.together(_hdf5_step, write_own_rows if turn == comm.rank and hi > lo else (lambda *_: None), lo, hi)


def _hdf5_step(action, *args):
    """``action(*args)``, with an HDF5 or OS error turned into a one-line error (h5py raises
    OSError, and RuntimeError or ValueError from the HDF5 library's own checks)."""
    try:
        return action(*args)
    except (OSError, RuntimeError, ValueError) as error:
        raise InputError(f"cannot write the data set: {str(error).splitlines()[0] if str(error) else error!r}") from None


def write(spec: Spec, comm=None) -> int:
    """Write the data set ``spec`` describes; return its size in bytes: ``mpigd gen``.

    Collective: call it on every rank of ``comm`` (a :class:`mpigd.comm.Communicator`, an ``mpi4py``
    communicator, or ``None`` for every rank of the job); each rank writes its own rows, and the
    file is the same whatever the rank count. Refuses (:class:`~mpigd.errors.UsageError`, on every
    rank alike, before creating anything) an output the command refuses (``--output`` under a file,
    unwritable, a directory where a file is wanted) and a data set that cannot fit in the free
    space. The files are written under temporary names and renamed into place once every rank has
    finished; on a failure rank 0 removes them, so no partial data set is left under any name.
    """
    from mpigd.comm import as_communicator

    # Checked on every rank alike before any collective, so that all raise the same error.
    if spec.format == "npy":
        check_output_directory("--output", spec.output)
    else:
        check_output_file("--output", spec.output)
    comm = as_communicator(comm)
    writer = {"csv": _write_text, "libsvm": _write_text, "npy": _write_npy, "hdf5": _write_hdf5}[spec.format]
    comm.together(check_free_space if comm.rank == 0 else (lambda _: None), spec)
    finals = _output_files(spec)
    temporaries = partial_paths(comm, finals)
    directory_existed = spec.format != "npy" or os.path.lexists(spec.output)
    if spec.format != "npy":
        # check_output_file lets directories missing above the file through: make them, as npy
        # (its own directory), predict and the reports do, before a rank opens the file there.
        comm.together(_os_step, parent_made if comm.rank == 0 else (lambda _: None), spec.output)
    try:
        writer(spec, comm, temporaries)  # returns on every rank once all have finished writing
        comm.together(_os_step, _rename_all if comm.rank == 0 else (lambda *_: None), temporaries, finals)
    except BaseException:
        if comm.rank == 0:
            _remove_partial(spec, temporaries, directory_existed)
        raise
    return sum(os.path.getsize(path) for path in finals)


def _rename_all(temporaries: list[str], finals: list[str]) -> None:
    # For npy, y.npy goes first: X.npy is what marks the directory as a data set.
    for temporary, final in reversed(list(zip(temporaries, finals))):
        os.replace(temporary, final)


def estimated_bytes(spec: Spec) -> int:
    """The size of the data set ``spec`` describes: exact for npy and hdf5 (less their small
    headers), for text formats extrapolated from the first rows (rows are independent draws)."""
    if spec.format in ("npy", "hdf5"):
        return spec.rows * (spec.features + 1) * 8
    sample = max(1, min(spec.rows, SIZE_SAMPLE_VALUES // spec.features))
    fmt = csv_bytes if spec.format == "csv" else libsvm_bytes
    text = len(fmt(spec, *spec.rows_of(0, sample)))
    header = len(_csv_header(spec)) if spec.format == "csv" else 0
    return header + text * spec.rows // sample


def check_free_space(spec: Spec) -> None:
    """Refuse, with a :class:`UsageError`, a data set larger than the free space where it goes
    (the files it replaces are removed only when the new ones are whole, so they do not count):
    failing part-way would waste the time and, for memory-mapped npy, kill the ranks with SIGBUS
    on a full disk."""
    target = spec.output if spec.format == "npy" else os.path.dirname(os.path.normpath(spec.output))
    existing = deepest_existing(target)
    try:
        stats = os.statvfs(existing)
    except OSError:  # a file system that does not say: the write itself will tell
        return
    free = stats.f_bavail * stats.f_frsize
    needed = estimated_bytes(spec)
    if needed > free:
        raise UsageError(f"the data set needs about {_human_bytes(needed)} but {existing} has "
                         f"{_human_bytes(free)} free; write fewer rows or elsewhere")


def _human_bytes(count: int) -> str:
    for unit, scale in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


def _output_files(spec: Spec) -> list[str]:
    if spec.format == "npy":
        return [os.path.join(spec.output, "X.npy"), os.path.join(spec.output, "y.npy")]
    return [spec.output]


def _remove_partial(spec: Spec, temporaries: list[str], directory_existed: bool) -> None:
    """Remove the temporary files of a failed write, and the npy directory if it was created and is
    now empty. Best effort: the write's own error is the one reported."""
    for path in temporaries:
        try:
            unlink_if_present(path)
        except OSError:
            pass
    if not directory_existed:
        try:
            os.rmdir(spec.output)
        except OSError:
            pass
