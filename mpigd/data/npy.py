"""NumPy ``.npy`` files, memory-mapped: features and labels in two files, each rank slices its rows.

The convention: ``--data X.npy --labels y.npy``, or ``--data DIR`` for a directory holding
``X.npy`` and ``y.npy`` (what ``mpigd gen --format npy`` writes). Nothing is unpickled.
"""

from __future__ import annotations

import os

import numpy as np

from mpigd.data.npz import HEADER_ERRORS, HEADER_READERS, REAL_KINDS, check_stored_size, no_labels, read_error
from mpigd.data.shard import Shard
from mpigd.errors import InputError
from mpigd.partition import block_counts, block_range


def paths(data: str, labels: str | None, labels_option: str = "--labels",
          optional_labels: bool = False) -> tuple[str, str | None]:
    """The feature and label files meant by ``--data`` and ``--labels`` (``--test-data`` and
    ``--test-labels``: ``labels_option`` is the option the messages name); with ``optional_labels``,
    ``None`` for labels that are not there (a lone ``X.npy``, a directory without ``y.npy``)."""
    if os.path.isdir(data):
        if labels is not None:
            raise InputError(f"{data}: a directory holds its own y.npy; do not pass {labels_option} as well")
        y_path = os.path.join(data, "y.npy")
        return os.path.join(data, "X.npy"), None if optional_labels and not os.path.exists(y_path) else y_path
    if labels is None and not optional_labels:
        raise InputError(f"{data}: a .npy file holds the features only; pass the labels file too "
                         f"({labels_option} y.npy)")
    return data, labels


def open_array(path: str) -> np.ndarray:
    """A read-only memory map of the ``.npy`` file ``path``; a one-line error if it is no such file."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such data file")
    try:
        with open(path, "rb") as raw:
            read_header = HEADER_READERS.get(np.lib.format.read_magic(raw))
            # Version 3.0 headers (only written for non-Latin-1 field names, which are refused as
            # not real numbers anyway) are left to numpy.load.
            if read_header is not None:
                shape, _, dtype = read_header(raw)
                if not dtype.hasobject:  # numpy.load refuses those, in its own words
                    check_stored_size(path, shape, dtype, os.fstat(raw.fileno()).st_size - raw.tell())
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, *HEADER_ERRORS) as error:
        raise InputError(f"{path}: cannot read as .npy ({read_error(error)})") from None


def check_arrays(source: str, X: np.ndarray, y: np.ndarray) -> None:
    """The shape and dtype rules every array format shares."""
    if X.ndim != 2:  # y may be no file's (predict without labels): not named here
        raise InputError(f"{source}: X must be 2-D, a row a sample; got shape {X.shape}")
    if y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise InputError(f"{source}: y must be 1-D with one label per row of X; got {y.shape} for X of {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"{source}: the data set is empty ({X.shape})")
    if X.dtype.kind not in REAL_KINDS or y.dtype.kind not in REAL_KINDS:
        raise InputError(f"{source}: X and y must hold real numbers (integer or floating point); "
                         f"got {X.dtype} and {y.dtype}")


def slice_shard(source: str, X_all, y_all, size: int, rank: int, dtype: str, fmt: str,
                names: tuple[str, str] = ("X", "y"), labelled: bool = True) -> Shard:
    """This rank's block of rows of two row-indexable arrays (memory maps, HDF5 datasets).

    ``names`` name the two arrays in errors: an array that fails as its rows are read (an HDF5
    chunk that does not decompress, say) is an :class:`InputError` naming the file and array.
    Only the rank whose rows hold the damage sees it; the caller makes every rank agree.
    """
    n = X_all.shape[0]
    start, stop = block_range(n, size, rank)

    def rows(name: str, array) -> np.ndarray:
        # Slicing reads only this rank's rows. A view (of a read-only memory map, or of the labels
        # of a data set without any) is copied: it would keep the file open and could not be
        # standardized in place. An array the slicing made (h5py reads into a new one) is kept as
        # it is when it has the dtype: copied, it was held twice at once (2x the shard at its peak).
        try:
            part = array[start:stop]
            if type(part) is np.ndarray and part.base is None and part.flags.writeable:
                return np.ascontiguousarray(part, dtype=dtype)
            return np.array(part, dtype=dtype, order="C", copy=True)
        except OSError as error:
            raise InputError(f"{source}: cannot read dataset {name!r} (rows {start} to {stop - 1}): "
                             f"{read_error(error)}") from None

    X, y = rows(names[0], X_all), rows(names[1], y_all)
    meta = {"format": fmt} if labelled else {"format": fmt, "labelled": False}
    return Shard(X, y, n, start, source, block_counts(n, size), meta)


def read(data: str, labels: str | None, size: int, rank: int, dtype: str, labels_option: str = "--labels",
         optional_labels: bool = False) -> Shard:
    """This rank's rows of a ``.npy`` pair (see the module docstring); with ``optional_labels``, of
    ``X.npy`` alone when there are no labels. Local: no communication."""
    x_path, y_path = paths(data, labels, labels_option, optional_labels)
    X_all = open_array(x_path)
    y_all = no_labels(X_all.shape) if y_path is None else open_array(y_path)
    check_arrays(x_path if y_path is None else f"{x_path}, {y_path}", X_all, y_all)
    return slice_shard(x_path, X_all, y_all, size, rank, dtype, "npy", labelled=y_path is not None)
