"""Compressed sparse row (CSR) blocks of rows: the container, row selection, and ``.npz`` input.

A :class:`CSRMatrix` is the triple ``scipy.sparse.csr_matrix`` uses (``indptr``, ``indices``,
``data``) plus its shape, with no dependency on SciPy. The ``.npz`` layout read here is
``indptr`` (int64, rows + 1), ``indices`` (integer column numbers), ``data`` (values), ``shape``
(two integers) and ``y`` (one label per row); ``scipy.sparse.save_npz`` writes the same names
(without ``y``), so ``numpy.savez(path, indptr=m.indptr, indices=m.indices, data=m.data,
shape=m.shape, y=y)`` is all it takes. Each rank maps the archive and reads only its rows'
slices of ``indices`` and ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpigd.data import npz
from mpigd.errors import InputError


@dataclass(frozen=True)
class CSRMatrix:
    """A block of rows in CSR form; ``indptr`` starts at 0 (offsets into this block's arrays)."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    @property
    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.data.nbytes

    def rows(self, start: int, stop: int) -> "CSRMatrix":
        """Rows ``[start, stop)`` as a CSR block sharing this one's memory (``indptr`` rebased)."""
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        return CSRMatrix(self.indptr[start : stop + 1] - lo, self.indices[lo:hi], self.data[lo:hi],
                         (stop - start, self.shape[1]))

    def take(self, rows: np.ndarray) -> "CSRMatrix":
        """The rows listed in ``rows`` (local indices, in that order), as a new CSR block."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.indptr[rows + 1] - self.indptr[rows]
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # Position of every kept entry in the source arrays, built without a Python loop.
        source = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return CSRMatrix(indptr, self.indices[source], self.data[source], (rows.size, self.shape[1]))

    def toarray(self) -> np.ndarray:
        """The dense ``(rows, features)`` array (for tests and small data)."""
        dense = np.zeros(self.shape, dtype=self.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        np.add.at(dense, (rows, self.indices), self.data)
        return dense

    @classmethod
    def from_dense(cls, X: np.ndarray) -> "CSRMatrix":
        """The non-zeros of a dense 2-D array."""
        rows, cols = np.nonzero(X)
        indptr = np.zeros(X.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=indptr[1:])
        return cls(indptr, cols.astype(np.int64), np.ascontiguousarray(X[rows, cols]), X.shape)


def is_csr_npz(path: str) -> bool:
    """Whether the ``.npz`` archive at ``path`` holds a CSR matrix (an ``indptr`` array)."""
    return npz.has_member(path, "indptr")


def _shape(path: str, shape: np.ndarray) -> tuple[int, int]:
    """The ``shape`` member as ``(rows, features)``: two non-negative integers, nothing else."""
    if shape.dtype.kind not in "iu" or shape.shape != (2,) or (shape < 0).any():
        raise InputError(f"{path}: 'shape' must be two non-negative integers (rows, features); "
                         f"got {np.asarray(shape).tolist()} ({shape.dtype})")
    return int(shape[0]), int(shape[1])


def read_npz_rows(path: str, start: int, stop: int, dtype: str,
                  optional_labels: bool = False) -> tuple[CSRMatrix, np.ndarray, int]:
    """Rows ``[start, stop)`` of the CSR ``.npz`` at ``path``: the block, its labels, the global row count
    (with ``optional_labels``, :func:`~mpigd.data.npz.no_labels` when the archive has no ``y``).

    Only this block's slices of ``indices`` and ``data`` are read from the memory map.
    """
    indptr_all = npz.open_member(path, "indptr")
    indices_all, data_all = npz.open_member(path, "indices"), npz.open_member(path, "data")
    shape = _shape(path, npz.open_member(path, "shape"))
    labelled = not optional_labels or npz.has_member(path, "y")
    y_all = npz.open_member(path, "y") if labelled else npz.no_labels(shape)
    # Offsets and column numbers cast to int64 without complaint from float or bool: refuse them.
    for name, array in (("indptr", indptr_all), ("indices", indices_all)):
        if array.dtype.kind not in "iu":
            raise InputError(f"{path}: {name!r} must hold integers; got {array.dtype}")
    for name, array in (("data", data_all), ("y", y_all)):
        if array.dtype.kind not in npz.REAL_KINDS:
            raise InputError(f"{path}: {name!r} must hold real numbers (integer or floating point); got {array.dtype}")
    if indptr_all.ndim != 1 or indptr_all.shape[0] != shape[0] + 1:
        raise InputError(f"{path}: indptr must hold rows + 1 = {shape[0] + 1} offsets; "
                         f"got {indptr_all.shape} for shape {shape}")
    if y_all.shape != (shape[0],):
        raise InputError(f"{path}: y must hold one label per row ({shape[0]}); got {y_all.shape}")
    if shape[0] == 0 or shape[1] == 0:
        raise InputError(f"{path}: the data set is empty ({shape})")
    # Each rank reads only its rows' slices of indices and data, so a short data array would be
    # read past its end by the kernel; the global lengths are checked here, once, on every rank.
    nnz = int(indptr_all[-1])
    if int(indptr_all[0]) != 0:
        raise InputError(f"{path}: indptr must start at 0; got {int(indptr_all[0])}")
    if indices_all.shape != (nnz,) or data_all.shape != (nnz,):
        raise InputError(f"{path}: 'data' and 'indices' must each hold indptr[-1] = {nnz} entries "
                         f"(one per non-zero); got shapes {data_all.shape} and {indices_all.shape}")
    stop = min(stop, shape[0])
    start = min(start, stop)
    bounds = np.asarray(indptr_all[start : stop + 1], dtype=np.int64)
    lo, hi = int(bounds[0]), int(bounds[-1])
    indices = np.asarray(indices_all[lo:hi], dtype=np.int64)
    data = np.ascontiguousarray(data_all[lo:hi], dtype=dtype)
    if np.any(np.diff(bounds) < 0) or indices.size != hi - lo:
        raise InputError(f"{path}: indptr is not non-decreasing within its bounds")
    if indices.size and (indices.min() < 0 or indices.max() >= shape[1]):
        raise InputError(f"{path}: a column index lies outside [0, {shape[1]})")
    block = CSRMatrix(bounds - lo, indices, data, (stop - start, shape[1]))
    return block, np.ascontiguousarray(y_all[start:stop], dtype=dtype), shape[0]
