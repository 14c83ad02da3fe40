"""Data readers: each rank gets only its own rows (a :class:`Shard`), validated on every rank.

Formats (see README "Data formats"): synthetic, ``.npz``, ``.npy`` pairs, CSV, LIBSVM and HDF5.
The format is inferred from the file name unless ``Config.format`` names it.
"""

from __future__ import annotations

import os

import numpy as np

from mpigd.config import DATA_FORMATS, Config
from mpigd.data import csr, csvfile, hdf5, libsvm, npy, npz, synthetic, synthetic_models
from mpigd.data.shard import Shard
from mpigd.environment import physical_memory_bytes
from mpigd.errors import InputError, UsageError
from mpigd.partition import block_counts, block_range

__all__ = ["FORMATS", "Shard", "infer_format", "load_shard", "synthetic_too_large", "task_of"]

FORMATS = DATA_FORMATS
SUFFIXES = {
    ".npz": "npz", ".npy": "npy", ".csv": "csv",
    ".libsvm": "libsvm", ".svm": "libsvm", ".svmlight": "libsvm",
    ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5",
}


def task_of(model: str) -> str:
    """Whether a model is fitted to real-valued targets or to class labels (the mlp: see Config.task)."""
    return "regression" if model == "linear" else "classification"


def infer_format(path: str, given: str = "auto") -> str:
    """The format of ``path``: ``given`` unless it is ``"auto"``, else from the file name (a
    directory is read as a ``.npy`` pair ``X.npy``, ``y.npy``)."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such data file")
    if given != "auto":
        return given
    if os.path.isdir(path):
        return "npy"
    suffix = os.path.splitext(path)[1].lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    known = ", ".join(sorted(SUFFIXES))
    raise InputError(f"{path}: cannot tell the format from the name (known: {known}); pass --format")


def load_shard(config: Config, comm, test: bool = False, n_features: int | None = None,
               zero_based: bool | None = None, unlabelled_features: int | None = None) -> Shard:
    """Read this rank's rows of ``config.data`` (or of ``config.test_data`` when ``test``).
    Collective: every rank raises the same :class:`~mpigd.errors.InputError` if any rank fails.

    ``comm`` is an :class:`mpigd.comm.Communicator`. ``n_features`` and ``zero_based``, given
    when reading a test set, are the training set's: a different feature count is an error,
    and a LIBSVM test file is read with the training file's index base. With
    ``unlabelled_features`` (``mpigd predict``: the model's feature count) the data may come
    without labels: ``X.npy`` alone, an ``.npz`` or HDF5 file without ``y``, a CSV file of that many
    columns; its shard's labels are zeros and ``meta["labelled"]`` is false.
    """
    path = config.test_data if test else config.data
    labels = config.test_labels if test else config.labels
    if path == "synthetic":
        comm.agree(synthetic_too_large(config, comm.size))
        shard = _synthetic_shard(config, comm.size, comm.rank)
    else:
        fmt = comm.together(infer_format, path, config.format)
        # A value too large for --dtype float32 becomes Inf as it is narrowed; _check_finite then
        # refuses it with its row, in one line, without NumPy's warning before it.
        with np.errstate(over="ignore"):
            if fmt == "csv":
                shard = csvfile.read(path, comm, config.dtype, config.header, config.label_column, unlabelled_features)
            elif fmt == "libsvm":
                shard = libsvm.read(path, comm, config.dtype, zero_based if test else config.zero_based, n_features)
            else:
                shard = comm.together(_read_array, fmt, path, labels, config, comm.size, comm.rank,
                                      "--test-labels" if test else "--labels", unlabelled_features is not None)
    comm.together(_check_finite, shard)
    if n_features is not None and shard.n_features != n_features:
        raise InputError(f"{path}: has {shard.n_features} features, but the training data has {n_features}")
    return shard


def synthetic_too_large(config: Config, size: int) -> UsageError | None:
    """An error if one rank's synthetic rows, or the arrays that make them, cannot fit this node's
    memory. Not collective: :func:`load_shard` agrees on it before making the rows."""
    memory = physical_memory_bytes()
    rows = -(-config.rows // size)
    itemsize = np.dtype(config.dtype).itemsize
    # Dense rows, or CSR: a value and a column index per non-zero.
    per_entry = config.density * (itemsize + 8) if config.density else itemsize
    # The generator also draws the true weights, features x outputs in float64, and draws each
    # block's multi-class labels from its margins, their shifted copy, its exponential and its
    # running sum: four arrays of a block of rows x outputs in float64.
    outputs = max(config.classes, 1)
    need = rows * config.features * per_entry + (config.features + 4 * synthetic.BLOCK_ROWS) * outputs * 8
    if memory is None or need <= memory:
        return None
    classes = f" with {config.classes:,} classes" if config.classes > 1 else ""
    return UsageError(f"synthetic data of {config.rows:,} x {config.features:,}{classes} needs about "
                      f"{need / 1e9:,.0f} GB per rank on {size} rank(s), more than this node's {memory / 1e9:,.0f} GB")


def _synthetic_shard(config: Config, size: int, rank: int) -> Shard:
    start, stop = block_range(config.rows, size, rank)
    X, y = _synthetic(config, start, stop)
    source = f"synthetic({config.rows}x{config.features}, seed={config.seed})"
    return Shard(X, y, config.rows, start, source, block_counts(config.rows, size), {"format": "synthetic"})


def _read_array(fmt: str, path: str, labels: str | None, config: Config, size: int, rank: int,
                labels_option: str = "--labels", optional_labels: bool = False) -> Shard:
    if fmt == "npy":  # a --test-data pair's labels come from --test-labels: its messages say so
        return npy.read(path, labels, size, rank, config.dtype, labels_option, optional_labels)
    if fmt == "hdf5":
        return hdf5.read(path, config.x_key, config.y_key, size, rank, config.dtype, optional_labels)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such data file")
    labelled = not optional_labels or npz.has_member(path, "y")
    if csr.is_csr_npz(path):
        rows = npz.open_member(path, "indptr").shape[0] - 1
        start, stop = block_range(max(rows, 0), size, rank)
        X, y, n = csr.read_npz_rows(path, start, stop, config.dtype, optional_labels)
        meta = {"format": "npz-csr"} if labelled else {"format": "npz-csr", "labelled": False}
        return Shard(X, y, n, start, path, block_counts(n, size), meta)
    X_all = npz.open_member(path, "X")
    y_all = npz.open_member(path, "y") if labelled else npz.no_labels(X_all.shape)
    npy.check_arrays(path, X_all, y_all)
    return npy.slice_shard(path, X_all, y_all, size, rank, config.dtype, "npz", labelled=labelled)


def _synthetic(config: Config, start: int, stop: int):
    """Rows ``[start, stop)`` of the synthetic data set the model calls for (dense or sparse)."""
    task, d = config.task_of_model, config.features
    classes = 2 if config.model == "logistic" or task == "regression" else (config.classes or 3)
    if config.density:
        return synthetic_models.generate_sparse(task, d, classes, config.density, config.seed, start, stop,
                                                config.dtype)
    if classes > 2:
        return synthetic_models.generate_dense(task, d, classes, config.seed, start, stop, config.dtype)
    return synthetic.generate(task, d, config.seed, start, stop, config.dtype)


def _check_finite(shard: Shard) -> None:
    # Text readers report NaN with its line number while parsing; this catches the array formats.
    features = shard.X.data if shard.sparse else shard.X
    for name, values in (("features", features), ("labels", shard.y)):
        bad = ~np.isfinite(values)
        if bad.any():
            index = int(np.argwhere(bad)[0][0])
            if shard.sparse and name == "features":  # a position in data: find its row
                index = int(np.searchsorted(shard.X.indptr, index, side="right")) - 1
            row = index + shard.row_start
            limit = f"; {values.dtype} holds at most {np.finfo(values.dtype).max:.3g}" if values.dtype == np.float32 else ""
            raise InputError(f"{shard.source}: NaN or Inf in the {name} (first at row {row}{limit})")
