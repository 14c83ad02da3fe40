"""The files of a run (``summary.json``, ``metrics.jsonl``, ``params.npz``), written by rank 0 alone."""

from __future__ import annotations

import io
import json
import math
import os
import re
import tempfile
from contextlib import contextmanager, suppress
from typing import Any, Iterator

import numpy as np

from mpigd.errors import MpigdError, UsageError


def check_output_file(option: str, path: str) -> None:
    """Refuse an empty file path, one that is an existing directory, or one under something that is
    not a writable directory (:class:`UsageError` naming ``option``). Directories missing above it
    are allowed: :func:`parent_made` creates them when the file is written. A device or FIFO that
    exists (``/dev/stdout``) is written directly (see :func:`written`), so only it must be writable."""
    _check_not_empty(option, path)
    if os.path.isdir(path):
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    if path.endswith(("/", os.sep)):
        raise UsageError(f"{option} {path}: ends in '/', which names a directory; give a file name")
    if os.path.exists(path) and not os.path.isfile(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path}: cannot write it (permission denied)")
        return
    _check_existing_part(option, path, os.path.dirname(os.path.normpath(path)))


def check_output_directory(option: str, path: str) -> None:
    """Refuse a directory path that exists as something else, or lies under something that is not
    a writable directory, or is empty (:class:`UsageError` naming ``option``)."""
    _check_not_empty(option, path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError(f"{option} {path}: exists and is not a directory")
    _check_existing_part(option, path, os.path.normpath(path))


def deepest_existing(path: str) -> str:
    """``path`` or its nearest ancestor that exists (the working directory for a relative path)."""
    existing = path or os.curdir
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing) or os.curdir
    return existing


def _check_not_empty(option: str, path: str) -> None:
    # An empty path is no file at all; read as "no path" it would silently write elsewhere or nothing.
    if not path:
        raise UsageError(f"{option}: the path is empty")


def _check_existing_part(option: str, path: str, directory: str) -> None:
    """Refuse ``directory`` when its deepest existing part is not a directory where a file can be
    created. ``os.access`` answers for a user; root it lets through everywhere, ``/proc`` included,
    so root tries by creating (and removing) a file. Only root: every rank runs this check, and a
    thousand ranks creating files in one directory of a parallel file system would be a metadata
    storm at start-up."""
    existing = deepest_existing(directory)
    if not os.path.isdir(existing):
        raise UsageError(f"{option} {path}: {existing} is not a directory")
    read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY
    if read_only or not os.access(existing, os.W_OK | os.X_OK):
        reason = "read-only file system" if read_only else "permission denied"
        raise UsageError(f"{option} {path}: cannot write in {existing} ({reason})")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".mpigd-probe-", dir=existing)
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot write in {existing} ({error.strerror or error})") from None
    os.close(descriptor)
    unlink_if_present(probe)


def parent_made(path: str) -> str:
    """``path``, once the directories it needs exist (what :func:`check_output_file` allows)."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return path


@contextmanager
def written(path: str) -> Iterator[str]:
    """The name to write the report ``path`` under: a temporary one beside it (same extension, for
    writers that go by it), renamed to ``path`` when the block ends. A write that fails, a full disk
    say, leaves neither part of a file nor the temporary, and is one line (:class:`MpigdError`).
    A path that exists and is not a regular file (``/dev/stdout``, a FIFO) is written directly."""
    if os.path.exists(path) and not os.path.isfile(path):
        target = path
    else:
        root, extension = os.path.splitext(os.path.basename(path))
        target = os.path.join(os.path.dirname(parent_made(path)), f".{root}.tmp{os.getpid()}{extension}")
    try:
        yield target
        if target != path:
            os.replace(target, path)
    except OSError as error:
        raise MpigdError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        if target != path:
            unlink_if_present(target)


def json_text(data: Any, **options: Any) -> str:
    """``data`` as standard JSON text (``json.dumps`` ``options``), NaN and Inf written as ``null``.

    JSON has no such numbers (RFC 8259): Python's ``NaN`` is refused by strict readers (JavaScript,
    Go, serde). An undefined metric, such as r2 of a constant target, is then ``null``."""
    return json.dumps(_finite_or_null(data), allow_nan=False, **options)


def _finite_or_null(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def write_json_report(path: str, data: Any) -> None:
    """``data`` as indented JSON (:func:`json_text`) in the report ``path``, through :func:`written`."""
    with written(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json_text(data, indent=2))


def partial_paths(comm, paths: list[str]) -> list[str]:
    """Where files written by every rank are made before rank 0 renames them to ``paths``: beside
    each, hidden, ending in ``.partialPID`` (rank 0's process id, the same on every rank), which no
    reader takes for data. A job killed while writing leaves nothing under the final names.
    Collective (the id is broadcast)."""
    token = np.array([os.getpid()], dtype=np.int64)
    comm.broadcast(token)
    return [os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial{int(token[0])}") for path in paths]


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a
    part: a temporary file in the same directory, fsync, rename, fsync of the directory."""
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    unlink_if_present(temporary)  # left by a crashed process; then O_EXCL never follows a planted link
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        with os.fdopen(os.open(temporary, flags, 0o644), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # replaces a link at ``path`` itself, never its target
    except BaseException:
        unlink_if_present(temporary)
        raise
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unlink_if_present(path: str) -> None:
    """Remove ``path`` (a link itself, not its target) if it exists."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` image of ``arrays`` (loadable with ``allow_pickle=False``)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


# atomic_write's temporary names of a run's files.
_TEMPORARY = re.compile(r"\.(params\.npz|summary\.json|model\.json|metrics\.jsonl)\.tmp[0-9]+")


class RunOutputs:
    """The output directory of a run; every method does nothing unless ``active`` (rank 0)."""

    def __init__(self, directory: str | None, active: bool) -> None:
        self.directory = directory
        self.active = active and directory is not None
        self._metrics = None

    def open(self, resume_epoch: int | None = None) -> None:
        """Create the directory and start ``metrics.jsonl``; call once the input is known good.

        ``params.npz``, ``model.json`` and ``summary.json`` of an earlier run are removed: they are written again
        when this run completes, so a run that fails or diverges leaves none that looks valid.
        Resuming at epoch ``resume_epoch`` (the checkpoint's) keeps the records of the epochs before
        it and appends; records from that epoch on (from a run that went on after the checkpoint)
        are dropped, since the resumed run writes them again. By epoch, not step: a checkpoint
        taken at an epoch's last step comes before that epoch's evaluation, which the resumed run
        makes again, while the one written at the end of a run comes after it.
        """
        if not self.active:
            return
        try:
            self._open(resume_epoch)
        except OSError as error:  # a full disk: one line, not rank 0's traceback
            raise MpigdError(f"cannot write {error.filename or self.directory}: {error.strerror or error}") from None

    def _open(self, resume_epoch: int | None) -> None:
        os.makedirs(self.directory, exist_ok=True)
        for name in ("params.npz", "summary.json", "model.json"):
            unlink_if_present(os.path.join(self.directory, name))
        # What a run killed while writing these left (see atomic_write): this run holds the
        # directory's lock, so no other process is writing them now.
        for name in os.listdir(self.directory):
            if _TEMPORARY.fullmatch(name):
                unlink_if_present(os.path.join(self.directory, name))
        path = os.path.join(self.directory, "metrics.jsonl")
        if resume_epoch is not None and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                kept = [line for line in handle if _epoch_of(line) < resume_epoch]
            try:
                atomic_write(path, "".join(kept).encode())
            except OSError as error:
                raise OSError(error.errno, error.strerror, path) from None  # named as the user knows it
        self._metrics = open(path, "a" if resume_epoch is not None else "w", encoding="utf-8")

    def metric(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl``. A write that fails (a full disk) is one line
        (:class:`MpigdError`, exit code 1) and leaves the records before it, whole: rank 0 alone
        writes, so call this through ``comm.together``, or the other ranks would wait for it."""
        if self._metrics is None:
            return
        path = os.path.join(self.directory, "metrics.jsonl")
        size = os.fstat(self._metrics.fileno()).st_size  # every earlier record was flushed
        try:
            self._metrics.write(json_text(record) + "\n")
            self._metrics.flush()
        except OSError as error:
            # Closing flushes the unwritten rest again, which fails again: the file is closed anyway.
            with suppress(OSError):
                self._metrics.close()
            self._metrics = None
            with suppress(OSError):
                os.truncate(path, size)  # no torn last record
            raise MpigdError(f"cannot write {path}: {error.strerror or error}") from None

    def finish(self, summary: dict[str, Any], arrays: dict[str, np.ndarray],
               model: dict[str, Any] | None = None) -> None:
        """Write the model's description (``model.json``, what ``mpigd predict`` rebuilds the model
        from), the parameters and the summary, each atomically, and close ``metrics.jsonl``. A
        write that fails (a full disk) removes all three and is one line (exit code 1)."""
        if not self.active:
            return
        self.close()
        files = {"model.json": model, "params.npz": arrays, "summary.json": summary}
        files = {name: npz_bytes(content) if name == "params.npz" else
                 (json_text(content, indent=2, sort_keys=True) + "\n").encode()
                 for name, content in files.items() if content is not None}
        try:
            for name, data in files.items():
                atomic_write(os.path.join(self.directory, name), data)
        except OSError as error:
            # All or none: a model.json without its params.npz would look like a model.
            for name in files:
                unlink_if_present(os.path.join(self.directory, name))
            raise MpigdError(f"cannot write {self.directory}: {error.strerror or error}") from None

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None


def _epoch_of(line: str) -> float:
    """The epoch of a ``metrics.jsonl`` record; a torn last line counts as after every epoch."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, KeyError, TypeError):
        return float("inf")
