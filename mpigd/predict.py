"""``mpigd predict`` and ``mpigd evaluate``: a trained model applied to a data set, distributed like training.

The model is rebuilt from ``model.json`` (written beside ``params.npz`` by ``mpigd train``) and
its parameters from ``params.npz``, read with ``allow_pickle=False``. Each rank reads its own
rows. Predictions go to one ``.npy`` file: rank 0 writes the header and sizes the file, then
every rank writes its rows at their offset through a memory map; nothing is gathered.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Iterable, NamedTuple

import numpy as np

from mpigd.config import Config
from mpigd.data import Shard, load_shard
from mpigd.data.npz import HEADER_ERRORS, REAL_KINDS, ZIP_ERRORS, read_error
from mpigd.data.standardize import Scaler
from mpigd.errors import InputError, MpigdError, UsageError
from mpigd.evaluation import evaluate
from mpigd.models import Model, from_description
from mpigd.outputs import check_output_file, partial_paths, unlink_if_present
from mpigd.prepare import check, encode_labels, too_large


class SavedModel(NamedTuple):
    """What a training run saved: the model, its parameter buffer, the scaler of a ``--standardize``
    run (or ``None``), and the index base of the LIBSVM file it was trained on (``None`` for others)."""

    model: Model
    params: np.ndarray
    scaler: Scaler | None
    libsvm_zero_based: bool | None


def load_model(params_path: str) -> SavedModel:
    """The model described by ``model.json`` beside ``params_path``, with what was saved beside it."""
    description_path = os.path.join(os.path.dirname(os.path.abspath(params_path)), "model.json")
    if os.path.isdir(params_path):  # the run's --out, passed for its params.npz: "no such file" misled
        raise InputError(f"{params_path}: cannot load the model (a directory; give the params.npz in it: "
                         f"{os.path.join(params_path, 'params.npz')})")
    if not os.path.isfile(params_path):  # named first: model.json beside it is then missing too
        raise InputError(f"{params_path}: cannot load the model (no such file)")
    try:
        with open(description_path, encoding="utf-8") as handle:
            description = json.load(handle)
        model = from_description(description)
        zero_based = description.get("libsvm_zero_based")
        if not (zero_based is None or isinstance(zero_based, bool)):
            raise ValueError(f"model.json: libsvm_zero_based is {zero_based!r}, not true or false")
        too_big = too_large(model, np.dtype(np.float64).itemsize, description_path)
        if too_big is not None:
            raise too_big
        with np.load(params_path, allow_pickle=False) as saved:
            # arrays() lists the named arrays in buffer order: concatenating them rebuilds the buffer.
            names = list(model.arrays(np.zeros(model.n_params)).keys())
            arrays = [saved[name] for name in names]
            for name, array in zip(names, arrays):
                if array.dtype.kind not in REAL_KINDS:  # complex would lose its imaginary part
                    raise InputError(f"{params_path}: cannot load the model ({name} holds {array.dtype}, "
                                     "not real numbers)")
            params = np.concatenate([np.asarray(array, dtype=np.float64).ravel() for array in arrays])
            scaler = None
            if "scaler_mean" in saved:
                scaler = Scaler(np.asarray(saved["scaler_mean"], dtype=np.float64),
                                np.asarray(saved["scaler_scale"], dtype=np.float64))
    # The zip and header errors: a truncated or damaged params.npz.
    except (OSError, KeyError, *ZIP_ERRORS, *HEADER_ERRORS) as error:
        raise InputError(f"{params_path}: cannot load the model ({read_error(error)})") from None
    if params.size != model.n_params:
        raise InputError(f"{params_path}: {params.size} parameters, but {description} needs {model.n_params}")
    _check_usable(params_path, model, params, scaler)
    return SavedModel(model, params, scaler, zero_based)


def _check_usable(params_path: str, model: Model, params: np.ndarray, scaler: Scaler | None) -> None:
    # Training never saves these, so they mean a damaged or hand-edited file; used anyway, they
    # give NaN or constant predictions with nothing but a per-rank warning (or none) to show for it.
    if not np.isfinite(params).all():
        raise InputError(f"{params_path}: cannot load the model (the parameters contain NaN or inf)")
    if scaler is None:
        return
    expected = (model.n_features,)
    if np.shape(scaler.mean) != expected or np.shape(scaler.scale) != expected:
        raise InputError(f"{params_path}: cannot load the model (the scaler has {np.shape(scaler.mean)} means and "
                         f"{np.shape(scaler.scale)} scales for {model.n_features} features)")
    if not np.isfinite(scaler.mean).all():
        raise InputError(f"{params_path}: cannot load the model (the scaler means contain NaN or inf)")
    # Below the smallest normal float64 (a subnormal scale), dividing by it overflows.
    if not (np.isfinite(scaler.scale).all() and (scaler.scale >= np.finfo(np.float64).tiny).all()):
        raise InputError(f"{params_path}: cannot load the model (the scaler scales must be finite and positive)")


def check_output(output: str, inputs: Iterable[str]) -> None:
    """Raise :class:`UsageError` unless ``output`` names a file that can be written (directories
    missing above it are made) without overwriting any of ``inputs``. Local: no communication."""
    check_output_file("--output", output)
    target = os.path.realpath(output)
    for path in inputs:
        # realpath catches symbolic links and ../ spellings; samefile also catches hard links.
        same = os.path.realpath(path) == target or (
            os.path.exists(output) and os.path.exists(path) and os.path.samefile(output, path))
        if same:
            raise UsageError(f"--output {output}: is the input {path}; writing it would destroy the input")


def _input_files(config: Config, params_path: str) -> list[str]:
    """Every file predict or evaluate reads: the model's two files and the data (all of a directory)."""
    files = [params_path, os.path.join(os.path.dirname(os.path.abspath(params_path)), "model.json")]
    if config.data != "synthetic":
        if os.path.isdir(config.data):
            files += [entry.path for entry in os.scandir(config.data) if entry.is_file()]
        else:
            files.append(config.data)
    if config.labels:
        files.append(config.labels)
    return files


def _load(config: Config, params_path: str, comm) -> tuple[Model, np.ndarray, Shard]:
    model, params, scaler, error = None, None, None, None
    try:
        model, params, scaler, zero_based = load_model(params_path)
    except MpigdError as caught:
        error = caught
    comm.agree(error)
    # Synthetic data is generated for the model's task and classes, as it was for training. A
    # LIBSVM file is read with the training file's index base unless told otherwise: detected on
    # its own, a zero-based file that never uses index 0 would shift every column by one.
    classes = int(model.describe().get("classes") or 0)
    config = config.replace(model=model.name, task=model.task if model.name == "mlp" else "",
                            classes=classes if classes > 2 else 0,
                            zero_based=zero_based if config.zero_based is None else config.zero_based)
    # Data to predict may come without labels: a CSV file of the model's feature count, X alone.
    shard = load_shard(config, comm, unlabelled_features=model.n_features)
    if shard.meta.get("format") == "libsvm" and shard.n_features < model.n_features:
        # LIBSVM states no feature count: a file whose highest index is below the model's is
        # padded with zero columns, as a --test-data file is in training.
        shard = dataclasses.replace(shard, X=dataclasses.replace(shard.X, shape=(shard.X.shape[0], model.n_features)))
    if shard.n_features != model.n_features:
        # A CSV file of another width had a column taken for the labels: "4 features" of a file of
        # 5 columns reads as a miscount unless that column is named.
        label_column = shard.meta.get("label_column") if shard.meta.get("format") == "csv" else None
        taken = "" if label_column is None else f" (and column {label_column} as the labels)"
        comm.agree(InputError(f"{shard.source}: {shard.n_features} features{taken}, but the model expects "
                              f"{model.n_features}"))
    if scaler is not None:  # the model was fitted to standardized features: scale these the same way
        if shard.sparse:
            shard = dataclasses.replace(shard, X=shard.X.toarray())
        scaler.apply(shard.X)
    return model, params.astype(shard.y.dtype), shard


def predict(config: Config, params_path: str | os.PathLike, output: str | os.PathLike, comm=None) -> dict[str, object]:
    """Write the prediction of every row of ``config.data`` to the ``.npy`` file ``output`` (classes as
    int64, regression values as float64). Collective over ``comm``: a
    :class:`~mpigd.comm.Communicator`, an mpi4py communicator, or ``None`` for every rank of the job."""
    comm = _communicator(comm, config)
    params_path, output = os.fspath(params_path), os.fspath(output)  # pathlib.Path too, as Config takes
    # Checked on every rank before any work and agreed: a refused output must not be created at all.
    comm.together(check_output, output, _input_files(config, params_path))
    model, params, shard = _load(config, params_path, comm)
    local = model.predict(shard.X, params)
    dtype = np.int64 if model.task == "classification" else np.float64
    # Every rank writes its rows into a file at full size from the start: under its final name, a
    # job killed part-way would leave a valid-looking .npy of zeros. So it is made under a
    # temporary name and renamed once every rank has written.
    (partial,) = partial_paths(comm, [os.path.abspath(output)])
    try:
        comm.together(_write_step, _create_npy if comm.rank == 0 else None, partial, dtype, shard.n_global)
        comm.together(_write_step, _write_rows if shard.n_local else None, partial, shard.row_start, local)
        comm.together(_write_step, os.replace if comm.rank == 0 else None, partial, output)
    except BaseException:
        if comm.rank == 0:
            unlink_if_present(partial)
        raise
    return {"rows": shard.n_global, "output": output, "model": model.describe()}


def _communicator(comm, config: Config):
    """What the caller passed, made a Communicator as :func:`mpigd.train` makes it (the README's
    Python API takes ``None`` and mpi4py communicators alike): the sums use ``config.strategy``."""
    from mpigd.comm import as_communicator

    return as_communicator(comm, config.strategy, config.tune_file)


def _write_step(action, *args) -> None:
    """``action(*args)`` (nothing for ``None``), an OS error made one line every rank agrees on
    (exit code 1, as for a report that cannot be written)."""
    try:
        if action is not None:
            action(*args)
    except OSError as error:
        raise MpigdError(f"cannot write the predictions: {error.strerror or error}") from None


def _create_npy(path: str, dtype, rows: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    created = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(rows,))
    created.flush()
    del created


def _write_rows(path: str, start: int, rows: np.ndarray) -> None:
    mapped = np.lib.format.open_memmap(path, mode="r+")
    mapped[start : start + rows.size] = rows
    mapped.flush()
    del mapped


def evaluate_file(config: Config, params_path: str | os.PathLike, comm=None,
                  output: str | os.PathLike | None = None) -> dict[str, object]:
    """The model's loss (unpenalised) and metrics over every row of ``config.data``. Collective over
    ``comm``, as for :func:`predict`.

    ``output``, the file the caller will write the result to, is checked first (see
    :func:`check_output`), so that a bad one stops the run before any work."""
    comm = _communicator(comm, config)
    params_path = os.fspath(params_path)  # pathlib.Path too, as Config takes
    output = None if output is None else os.fspath(output)
    if output:
        comm.together(check_output, output, _input_files(config, params_path))
    model, params, shard = _load(config, params_path, comm)
    if not shard.meta.get("labelled", True):  # known alike on every rank: the file's layout
        raise InputError(f"{shard.source}: no labels to evaluate against (the data holds the model's "
                         f"{model.n_features} features only); mpigd predict takes such data")
    check(model, [shard], comm)
    shard = encode_labels(model, shard)
    return {"rows": shard.n_global, "source": shard.source, **evaluate(model, shard, params, comm, penalized=False)}
