"""Shared set-up of the data-format tests: small data sets written in every format."""

from __future__ import annotations

import os

import numpy as np

from mpigd.comm import self_comm
from mpigd.data import generate, synthetic

ROWS, FEATURES, SEED, DENSITY = 700, 5, 3, 0.6
TIMEOUT = 120


def in_memory(rows: int = ROWS, task: str = "classification") -> tuple[np.ndarray, np.ndarray]:
    """The rows every written file holds."""
    return synthetic.generate(task, FEATURES, SEED, 0, rows, "float64", DENSITY)


def write_all(directory: str, rows: int = ROWS, task: str = "classification") -> dict[str, list[str]]:
    """One data set in every format; the ``mpigd train`` arguments that read each one."""
    comm = self_comm()
    paths = {"csv": "data.csv", "libsvm": "data.libsvm", "npy": "npy", "hdf5": "data.h5"}
    for fmt, name in paths.items():
        spec = generate.Spec(rows, FEATURES, task, SEED, fmt, os.path.join(directory, name), DENSITY)
        generate.write(spec, comm)
    X, y = in_memory(rows, task)
    np.savez(os.path.join(directory, "data.npz"), X=X, y=y)
    args = {fmt: ["--data", os.path.join(directory, name)] for fmt, name in paths.items()}
    args["npz"] = ["--data", os.path.join(directory, "data.npz")]
    np.save(os.path.join(directory, "X.npy"), X)
    np.save(os.path.join(directory, "y.npy"), y)
    args["npy-pair"] = ["--data", os.path.join(directory, "X.npy"), "--labels", os.path.join(directory, "y.npy")]
    return args


def load_params(out: str) -> dict[str, np.ndarray]:
    with np.load(os.path.join(out, "params.npz"), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}
