"""Checkpoints: what an exact resume needs, written atomically by rank 0, verified when read.

A checkpoint of step ``S`` is two files in the checkpoint directory:

- ``ckpt-SSSSSSSSSS.npz``: the parameters (``params``) and the optimizer's arrays
  (``optimizer.NAME``), an uncompressed ``.npz`` read back with ``allow_pickle=False``;
- ``ckpt-SSSSSSSSSS.json``: the manifest, written last: format, step, epoch, the SHA-256 and size
  of the ``.npz``, the run's metadata (rank count, model, algorithm, dtype, strategy, batch size,
  data fingerprint), the hyperparameters, and every rank's algorithm state (step cursor, the
  RNG state at the start of the epoch: NumPy's PCG64 state round-trips exactly through JSON).

A checkpoint exists once its manifest does. Both files go through a temporary file, fsync,
rename and fsync of the directory, so a crash leaves the previous checkpoint whole; older ones
are removed only after the new one is committed. On resume a manifest that does not parse, a
``.npz`` whose checksum differs, or a symbolic link is skipped with a warning, falling back to
the previous checkpoint; so is one whose contents cannot be resumed from (a hand-edited manifest
whose rank states do not fit, parameters that are NaN or infinite). No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from mpigd.errors import CheckpointError
from mpigd.outputs import atomic_write, npz_bytes, unlink_if_present
from mpigd.wording import counted

FORMAT = "mpigd-checkpoint-1"
# Metadata that must be equal for a resume to continue the same run exactly.
MUST_MATCH = ("ranks", "model", "algo", "dtype", "strategy", "batch_size", "local_steps", "optimizer", "hidden",
              "activation", "rows", "features", "data_sha256")
_MANIFEST = re.compile(r"ckpt-([0-9]{10})\.json")
_LEFTOVER = re.compile(r"(\.ckpt-[0-9]{10}\.(json|npz)\.tmp[0-9]+|ckpt-[0-9]{10}\.npz)")

Warn = Callable[[str], None]


@dataclass
class Checkpoint:
    """One checkpoint as read back: the state after global step :attr:`step`."""

    step: int
    epoch: int
    params: np.ndarray
    optimizer: dict[str, np.ndarray]
    ranks: list[dict[str, Any]]
    metadata: dict[str, Any]
    hyper: dict[str, Any]
    name: str
    # The trainer's stopping state (mpigd.stopping): numbers in the manifest, arrays in the .npz.
    # Empty in a checkpoint written before it was saved.
    stopping: dict[str, Any] = field(default_factory=dict)
    stopping_arrays: dict[str, np.ndarray] = field(default_factory=dict)


def pack_arrays(params: np.ndarray, optimizer: dict[str, np.ndarray],
                stopping: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A checkpoint's arrays by their names in its ``.npz``: ``params``, ``optimizer.NAME``, ``stopping.NAME``."""
    return {"params": params, **{f"optimizer.{k}": v for k, v in optimizer.items()},
            **{f"stopping.{k}": v for k, v in stopping.items()}}


def unpack_arrays(arrays: dict[str, np.ndarray]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """:func:`pack_arrays` undone: the parameters, the optimizer's arrays and the stopping state's
    (``KeyError`` without parameters)."""
    stopping = {k.removeprefix("stopping."): v for k, v in arrays.items() if k.startswith("stopping.")}
    optimizer = {k.removeprefix("optimizer."): v for k, v in arrays.items()
                 if k != "params" and not k.startswith("stopping.")}
    return arrays["params"], optimizer, stopping


def data_fingerprint(X, y: np.ndarray, comm) -> str:
    """SHA-256 over every rank's SHA-256 of its rows, in rank order (hex). Collective.

    The whole data set is hashed (each rank its own block), so a changed value, row order,
    dtype or partition is caught; the result is known on rank 0 (empty string elsewhere).
    """
    from mpigd.comm.gather import gather_bytes

    digest = hashlib.sha256()
    arrays = (X.indptr, X.indices, X.data, y) if hasattr(X, "indptr") else (X, y)  # CSR or dense
    for array in arrays:
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    digests = gather_bytes(comm, digest.digest())
    return hashlib.sha256(b"".join(digests)).hexdigest() if digests is not None else ""


def mismatches(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The :data:`MUST_MATCH` entries in which a checkpoint's metadata differ from this run's."""
    # A key the checkpoint does not hold was not recorded when it was written (local_steps and
    # optimizer came later): nothing to compare.
    return [f"{key} {saved.get(key)!r} in the checkpoint, {current.get(key)!r} now"
            for key in MUST_MATCH if key in saved and saved[key] != current.get(key)]


class CheckpointStore:
    """The checkpoint directory, seen from one process (rank 0). Keeps the newest ``keep``."""

    def __init__(self, directory: str, keep: int) -> None:
        self.directory, self.keep = directory, keep

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def check(self) -> None:
        """Refuse a directory that is a symbolic link (planted, it could point anywhere)."""
        if os.path.islink(self.directory):
            raise CheckpointError(f"{self.directory}: the checkpoint directory is a symbolic link; "
                                  "give its real path with --checkpoint-dir")

    def steps(self) -> list[int]:
        """Steps of the manifests present, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted((int(m[1]) for m in map(_MANIFEST.fullmatch, names) if m), reverse=True)

    def save(self, step: int, epoch: int, params: np.ndarray, optimizer: dict[str, np.ndarray],
             ranks: list[dict[str, Any]], metadata: dict[str, Any], hyper: dict[str, Any],
             stopping: tuple[dict[str, Any], dict[str, np.ndarray]] = ({}, {})) -> str:
        """Write the checkpoint of ``step`` (``.npz`` first, manifest last), then prune; its name."""
        stem = f"ckpt-{step:010d}"
        self.check()
        os.makedirs(self.directory, exist_ok=True)
        if not self._verifies(step):  # the state after a given step is always the same: keep a good one
            numbers, arrays = stopping
            image = npz_bytes(pack_arrays(params, optimizer, arrays))
            manifest = {
                "format": FORMAT, "step": step, "epoch": epoch, "npz": stem + ".npz",
                "npz_sha256": hashlib.sha256(image).hexdigest(), "npz_bytes": len(image),
                "metadata": metadata, "hyper": hyper, "ranks": ranks, "stopping": numbers,
            }
            atomic_write(self._path(stem + ".npz"), image)
            atomic_write(self._path(stem + ".json"), (json.dumps(manifest, indent=1) + "\n").encode())
        self.prune()
        return stem

    def _verifies(self, step: int) -> bool:
        """Whether a checkpoint of ``step`` is there and reads back whole. One that does not (torn,
        corrupted, non-finite) was skipped by the resume that led here: it must be written again,
        or every later resume would skip it too and fall back to the one before."""
        if step not in self.steps():
            return False
        try:
            self.load(step)
        except CheckpointError:
            return False
        return True

    def prune(self) -> None:
        """Remove all but the newest ``keep`` checkpoints, and what crashed writers left behind."""
        steps = self.steps()
        keep = {f"ckpt-{s:010d}.npz" for s in steps[: self.keep]}
        for step in steps[self.keep :]:
            unlink_if_present(self._path(f"ckpt-{step:010d}.json"))  # the manifest first: then it is gone whole
        for name in os.listdir(self.directory):
            if _LEFTOVER.fullmatch(name) and name not in keep:
                unlink_if_present(self._path(name))

    def load(self, step: int) -> Checkpoint:
        """Read and verify the checkpoint of ``step``; :class:`CheckpointError` says what is wrong."""
        stem = f"ckpt-{step:010d}"
        try:
            manifest = json.loads(_read_regular(self._path(stem + ".json")))
        except (ValueError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{stem}.json: not a valid manifest ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("step") != step:
            raise CheckpointError(f"{stem}.json: not an {FORMAT} manifest of step {step}")
        image = _read_regular(self._path(stem + ".npz"))  # our own name: never a path from the file
        if hashlib.sha256(image).hexdigest() != manifest.get("npz_sha256"):
            raise CheckpointError(f"{stem}.npz: checksum mismatch (torn or corrupted file)")
        try:
            with np.load(io.BytesIO(image), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            params, optimizer, stopping = unpack_arrays(arrays)
            found = Checkpoint(step, int(manifest["epoch"]), params, optimizer,
                               list(manifest["ranks"]), dict(manifest["metadata"]), dict(manifest["hyper"]), stem,
                               dict(manifest.get("stopping", {})), stopping)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{stem}: incomplete checkpoint ({error})") from None
        _check_contents(found)
        return found

    def newest_valid(self, warn: Warn) -> Checkpoint | None:
        """The newest checkpoint that verifies, warning about each newer one that does not.

        ``None`` when there is none at all; :class:`CheckpointError` when there are some but
        none verifies (starting over silently would throw work away), saying what is wrong with
        the newest, in place of the warnings.
        """
        steps = self.steps()
        problems: list[CheckpointError] = []
        for step in steps:
            try:
                found = self.load(step)
            except CheckpointError as error:
                problems.append(error)
                continue
            for problem in problems:  # only now: when none verifies, the one error line says why
                warn(f"skipping checkpoint {problem}")
            return found
        if steps:
            raise CheckpointError(f"{self.directory}: no valid checkpoint among {len(steps)} (the newest: "
                                  f"{problems[0]}); move the directory away to start over")
        return None


def _check_contents(found: Checkpoint) -> None:
    """Refuse a checkpoint whose manifest parses but cannot be resumed from: the manifest may have
    been edited by hand (its checksum covers only the ``.npz``), and each rank later indexes
    ``ranks`` by its own rank, so a short list or a missing state would fail on one rank alone.
    Non-finite parameters would only be reported as a divergence after the resume."""
    stem = found.name
    if found.epoch < 1:
        raise CheckpointError(f"{stem}.json: epoch {found.epoch} is not a positive integer")
    ranks = found.metadata.get("ranks")
    if not isinstance(ranks, int) or isinstance(ranks, bool) or ranks < 1:
        raise CheckpointError(f"{stem}.json: metadata.ranks is {ranks!r}, not a positive integer")
    if len(found.ranks) != ranks:
        raise CheckpointError(f"{stem}.json: holds the state of {counted(len(found.ranks), 'rank')}, "
                              f"its metadata says {ranks}")
    if not all(isinstance(state, dict) and state for state in found.ranks):
        raise CheckpointError(f"{stem}.json: the state of some rank is missing or not an object")
    if any(state.keys() != found.ranks[0].keys() for state in found.ranks):
        raise CheckpointError(f"{stem}.json: the ranks' states do not have the same fields")
    # The ranks step together: a state whose step count or place in the epoch differs from the
    # others' (or whose loss is not a finite number) would send one rank into a different
    # collective than the rest, and the resumed job would hang.
    for field, expected in (("steps", found.step), ("cursor", found.ranks[0].get("cursor"))):
        if any(state.get(field) != expected or isinstance(state.get(field), bool) for state in found.ranks):
            raise CheckpointError(f"{stem}.json: the ranks' {field} are {[s.get(field) for s in found.ranks]}, "
                                  f"not all {expected}")
    cursor = found.ranks[0].get("cursor")
    if cursor is not None and not (isinstance(cursor, int) and cursor >= 0):
        raise CheckpointError(f"{stem}.json: cursor {cursor!r} is not a step of an epoch")
    if not all(isinstance(state.get("total", 0.0), (int, float)) and math.isfinite(state.get("total", 0.0))
               for state in found.ranks):
        raise CheckpointError(f"{stem}.json: the ranks' totals are not all finite numbers")
    for name, array in {"params": found.params, **found.optimizer, **found.stopping_arrays}.items():
        if array.dtype.kind not in "fiu":
            raise CheckpointError(f"{stem}.npz: {name} is of type {array.dtype}, not numbers")
        if not np.isfinite(array).all():
            raise CheckpointError(f"{stem}.npz: {name} holds NaN or infinite values "
                                  "(saved from a diverged or corrupted run)")


def _read_regular(path: str) -> bytes:
    """The bytes of ``path``, refusing symbolic links and anything but a regular file."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        reason = "a symbolic link" if os.path.islink(path) else error.strerror
        raise CheckpointError(f"{os.path.basename(path)}: cannot be read ({reason})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise CheckpointError(f"{os.path.basename(path)}: not a regular file")
        return handle.read()
