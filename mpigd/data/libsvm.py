"""LIBSVM / svmlight text: ``label index:value index:value ... [# comment]``, sparse.

Each rank reads only its own lines (see :mod:`mpigd.data.textio`) and parses them into a CSR
triple. ``qid:`` tokens, comment lines and trailing ``# comments`` are ignored. Indices must be
non-negative integers, strictly increasing within a line. Whether they count from 0 or 1 is
given, or detected as scikit-learn's ``load_svmlight_file`` does: zero-based when some index in
the whole file is 0. The feature count is the largest index over all ranks (plus one when
zero-based), agreed by an allreduce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from mpigd import kernels
from mpigd.data.csr import CSRMatrix
from mpigd.data.shard import Shard
from mpigd.data.textio import (LineProblem, RangeLines, Rows, first_unparsable, line_error, malformed, parse_floats,
                               unparsable, unusable, value_problem)
from mpigd.errors import InputError
from mpigd.partition import exclusive_prefix

_NO_INDEX = np.iinfo(np.int64).max


# Kinds of error, the more serious first.
_MALFORMED, _NOT_A_NUMBER, _NOT_INTEGER, _NOT_INCREASING, _BAD_LABEL, _BAD_VALUE = range(6)


def _parse(path: str, pieces: Iterable[tuple[np.ndarray, int, int]], fraction: Callable[[], float], dtype: str
           ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], LineProblem | None]:
    """``((labels, indptr, indices, values, line of each record), problem)`` of this rank's lines,
    parsed from ``pieces`` of its text (see :meth:`~mpigd.data.textio.RangeLines.pieces`;
    ``fraction()`` is how much of it was read); indices as written in the file (the base is
    resolved once every rank has parsed), values as ``dtype``, lines counted from the rank's first.

    Each piece is checked and its records' features counted, then parsed into the CSR arrays,
    which grow as the pieces come (see :class:`~mpigd.data.textio.Rows`). The cleaned text and the
    parsed numbers are held for one piece at a time. ``problem`` is the rank's error, its line
    counted from the rank's first line (the caller names it once the ranks' line counts are
    agreed): a malformed line anywhere first, then a token that is not a number, then each later
    kind of error, the first of its kind. Reading stops at a malformed line.
    """
    labels, indptr, indices, values, line_of = (Rows((), np.float64), Rows((), np.int64), Rows((), np.int64),
                                                Rows((), dtype), Rows((), np.int64))
    indptr.take(1, 1.0)
    clean, nnz, lines = np.empty(0, dtype=np.uint8), np.empty(1, dtype=np.int64), np.empty(1, dtype=np.int64)
    pending: tuple[int, LineProblem] | None = None
    stored = 0  # entries so far
    for text, lines_before, piece_lines in pieces:
        if clean.size < text.size:
            clean = np.empty(text.size, dtype=np.uint8)
        if nnz.size < piece_lines + 1:
            nnz, lines = np.empty(piece_lines + 1, dtype=np.int64), np.empty(piece_lines + 1, dtype=np.int64)
        cleaned = clean[:text.size]
        count, bad_line, code = kernels.libsvm_scan(text, cleaned, nnz, lines)
        if bad_line >= 0:
            pending = (_MALFORMED, malformed(lines_before + bad_line, kernels.LIBSVM_PROBLEMS[code]))
            break
        if pending is not None and pending[0] <= _NOT_A_NUMBER:
            continue  # only a malformed line further on could come before it
        piece_nnz = nnz[:count]
        row_start = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(piece_nnz, out=row_start[1:])
        entries = int(row_start[-1])
        numbers = parse_floats(cleaned, count + 2 * entries)
        if numbers is None:
            bad = first_unparsable(text, cleaned, lines[:count], 1 + 2 * piece_nnz)  # the label, then pairs
            pending = (_NOT_A_NUMBER, unparsable(lines_before, bad, "a label, index or value is not a number"))
            continue
        # Record k is: label, then nnz[k] (index, value) pairs.
        row_start = row_start[:-1]
        label_at = row_start * 2 + np.arange(count)
        piece_labels = numbers[label_at]
        is_pair = np.ones(numbers.size, dtype=bool)
        is_pair[label_at] = False
        pairs = numbers[is_pair]
        del numbers, is_pair
        raw_indices, piece_values = pairs[0::2], pairs[1::2]
        record_of = np.repeat(np.arange(count), piece_nnz)

        def found(kind: int, entry_mask: np.ndarray, problem: str) -> bool:
            """Keep the first entry of ``entry_mask`` as the error when none as serious is kept."""
            nonlocal pending
            if not entry_mask.any():
                return False
            pending = (kind, malformed(lines_before + int(lines[record_of[np.argmax(entry_mask)]]), problem))
            return True

        def serious(kind: int) -> bool:
            return pending is None or pending[0] > kind

        if serious(_NOT_INTEGER) and found(
                _NOT_INTEGER, (raw_indices < 0) | (raw_indices != np.floor(raw_indices)) | (raw_indices >= 2.0**53),
                "a feature index is not a non-negative integer"):
            continue
        if not serious(_NOT_INCREASING):
            continue
        piece_indices = raw_indices.astype(np.int64)
        increasing = np.ones(piece_indices.size, dtype=bool)
        increasing[1:] = piece_indices[1:] > piece_indices[:-1]
        increasing[row_start[piece_nnz > 0]] = True  # the first entry of a line follows nothing
        if found(_NOT_INCREASING, ~increasing, "feature indices must be strictly increasing"):
            continue
        for kind, numbers_found, record in ((_BAD_LABEL, piece_labels, None), (_BAD_VALUE, piece_values, record_of)):
            if not serious(kind):
                break
            bad = unusable(numbers_found, dtype)
            if bad.any():
                entry = int(np.argmax(bad))
                row = entry if record is None else int(record[entry])
                pending = (kind, value_problem(lines_before + int(lines[row]), numbers_found[entry], _kind_name(kind)))
                break
        if pending is None:
            labels.take(count, fraction())[:] = piece_labels
            indptr.take(count, fraction())[:] = row_start + piece_nnz + stored
            line_of.take(count, fraction())[:] = lines[:count] + lines_before
            indices.take(entries, fraction())[:] = piece_indices
            values.take(entries, fraction())[:] = piece_values
            stored += entries
    arrays = (labels.done(), indptr.done(), indices.done(), values.done(), line_of.done())
    return arrays, None if pending is None else pending[1]


def _kind_name(kind: int) -> str:
    return "label" if kind == _BAD_LABEL else "features"


def read(path: str, comm, dtype: str, zero_based: bool | None = None, n_features: int | None = None) -> Shard:
    """This rank's rows of the LIBSVM file ``path``, as CSR and densified. Collective.

    ``zero_based`` is ``None`` to detect the index base. ``n_features``, when given (the
    training set's count, when reading a test set), is the column count to use: a file whose
    largest index is smaller is padded with zero columns, one whose index is larger is refused.
    """
    text = comm.together(RangeLines, path, comm.size, comm.rank)
    (labels, indptr, indices, values, lines), problem = _parse(path, text.pieces(), text.fraction, dtype)
    first_line = exclusive_prefix(comm.rank_values(text.lines), comm.rank)
    comm.agree(None if problem is None else problem.error(path, first_line))
    counts = comm.rank_values(labels.size)
    if counts.sum() == 0:
        raise InputError(f"{path}: no data rows")
    extremes = np.array([indices.max(initial=-1)], dtype=np.int64)
    comm.allreduce_max(extremes)
    lowest = np.array([indices.min(initial=_NO_INDEX)], dtype=np.int64)
    comm.allreduce_min(lowest)
    if zero_based is None:
        zero_based = int(lowest[0]) == 0
    base = 0 if zero_based else 1

    def check_base() -> None:
        if not zero_based and indices.size and indices.min() == 0:
            record = int(np.searchsorted(indptr, int(np.argmin(indices)), side="right")) - 1
            raise line_error(path, first_line + int(lines[record]), "feature index 0 in a file read as one-based")

    comm.together(check_base)
    found = max(int(extremes[0]) + 1 - base, 0)
    if n_features is not None and found > n_features:
        raise InputError(f"{path}: has {found} features, but the training data has {n_features}")
    width = n_features if n_features is not None else found
    if width == 0:
        raise InputError(f"{path}: no features (every line holds a label only)")
    if base:
        indices -= base  # in place: a copy of the indices was a second one at the peak
    X = CSRMatrix(indptr, indices, values, (int(indptr.size - 1), width))
    meta = {"format": "libsvm", "zero_based": bool(zero_based), "first_line": first_line + 1,
            "read_span": text.stats(), "byte_offset": text.offset}
    y = np.ascontiguousarray(labels, dtype=dtype)
    return Shard(X, y, int(counts.sum()), exclusive_prefix(counts, comm.rank), path, counts, meta)
