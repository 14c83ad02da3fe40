"""Data readers: each rank gets only its own rows (a :class:`Shard`), validated on every rank."""

from __future__ import annotations

import os

import numpy as np

from mpigd.config import Config
from mpigd.data import csr, npz, synthetic, synthetic_models
from mpigd.data.shard import Shard
from mpigd.errors import InputError, MpigdError
from mpigd.partition import block_range

__all__ = ["Shard", "load_shard", "task_of"]


def task_of(model: str) -> str:
    """Whether a model is fitted to real-valued targets or to class labels (the mlp: see Config.task)."""
    return "regression" if model == "linear" else "classification"


def load_shard(config: Config, comm, path: str | None = None) -> Shard:
    """Read this rank's rows of ``config.data``. Collective: every rank raises if any rank fails.

    ``comm`` is an :class:`mpigd.comm.Communicator` (only its ``rank``, ``size`` and ``agree``
    are used). Errors in the data come back as one :class:`~mpigd.errors.InputError`.
    """
    shard, error = None, None
    try:
        shard = _read(config if path is None else config.replace(data=path), comm.size, comm.rank)
        _check_finite(shard)
    except MpigdError as caught:
        error = caught
    comm.agree(error)
    return shard


def _read(config: Config, size: int, rank: int) -> Shard:
    if config.synthetic:
        start, stop = block_range(config.rows, size, rank)
        return Shard(*_synthetic(config, start, stop), config.rows, start,
                     f"synthetic({config.rows}x{config.features}, seed={config.seed})")
    path = config.data
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such data file")
    if not path.endswith(".npz"):
        raise InputError(f"{path}: unknown data format (mpigd reads .npz files holding arrays X and y)")
    if csr.is_csr_npz(path):
        rows = npz.open_member(path, "indptr").shape[0] - 1
        start, stop = block_range(max(rows, 0), size, rank)
        X, y, n = csr.read_npz_rows(path, start, stop, config.dtype)
        return Shard(X, y, n, start, path)
    X_all, y_all = npz.open_member(path, "X"), npz.open_member(path, "y")
    if X_all.ndim != 2 or y_all.ndim != 1 or X_all.shape[0] != y_all.shape[0]:
        raise InputError(f"{path}: X must be 2-D and y 1-D with one label per row; got {X_all.shape} and {y_all.shape}")
    n = X_all.shape[0]
    if n == 0 or X_all.shape[1] == 0:
        raise InputError(f"{path}: the data set is empty ({X_all.shape})")
    if not (np.issubdtype(X_all.dtype, np.number) and np.issubdtype(y_all.dtype, np.number)):
        raise InputError(f"{path}: X and y must be numeric; got {X_all.dtype} and {y_all.dtype}")
    start, stop = block_range(n, size, rank)
    # Slicing the memory map reads only this rank's rows; the copy converts to the run's dtype.
    X = np.ascontiguousarray(X_all[start:stop], dtype=config.dtype)
    y = np.ascontiguousarray(y_all[start:stop], dtype=config.dtype)
    return Shard(X, y, n, start, path)


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
    features = shard.X.data if shard.sparse else shard.X
    for name, values in (("features", features), ("labels", shard.y)):
        bad = ~np.isfinite(values)
        if bad.any():
            index = int(np.argwhere(bad)[0][0])
            if shard.sparse and name == "features":  # a position in data: find its row
                index = int(np.searchsorted(shard.X.indptr, index, side="right")) - 1
            row = index + shard.row_start
            raise InputError(f"{shard.source}: NaN or Inf in the {name} (first at row {row})")
