"""HDF5 through h5py: two datasets (``--x-key``, ``--y-key``), each rank reading only its slice.

h5py is an optional dependency (``pip install mpigd[hdf5]``); it is imported only when an HDF5
file is read or written, and its absence is a one-line error. Reading needs no parallel HDF5:
every rank opens the file read-only and reads its own hyperslab.
"""

from __future__ import annotations

import os
from types import ModuleType

from mpigd.data.npy import check_arrays, slice_shard
from mpigd.data.npz import no_labels
from mpigd.data.shard import Shard
from mpigd.errors import InputError


def h5py_module() -> ModuleType:
    """The h5py module, or a one-line :class:`InputError` saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise InputError("reading or writing HDF5 needs h5py: pip install 'mpigd[hdf5]'") from None
    return h5py


def read(path: str, x_key: str, y_key: str, size: int, rank: int, dtype: str, optional_labels: bool = False) -> Shard:
    """This rank's rows of datasets ``x_key`` and ``y_key`` of ``path`` (with ``optional_labels``,
    of ``x_key`` alone when there is no ``y_key``). Local: no communication."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such data file")
    h5py = h5py_module()
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: cannot read as HDF5 ({error})") from None
    with handle:
        labelled = not optional_labels or y_key in handle
        datasets = []
        for key in (x_key, y_key) if labelled else (x_key,):
            item = handle.get(key)
            if not isinstance(item, h5py.Dataset):
                names = ", ".join(sorted(handle.keys()))
                raise InputError(f"{path}: no dataset {key!r} (the file holds: {names})")
            datasets.append(item)
        X_all = datasets[0]
        y_all = datasets[1] if labelled else no_labels(X_all.shape)
        check_arrays(path, X_all, y_all)
        return slice_shard(path, X_all, y_all, size, rank, dtype, "hdf5", (x_key, y_key), labelled)
