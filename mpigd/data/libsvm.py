"""LIBSVM / svmlight text: ``label index:value index:value ... [# comment]``, sparse.

Each rank reads only its own lines (see :mod:`mpigd.data.textio`) and parses them into a CSR
triple. ``qid:`` tokens, comment lines and trailing ``# comments`` are ignored. Indices must be
non-negative integers, strictly increasing within a line. Whether they count from 0 or 1 is
given, or detected as scikit-learn's ``load_svmlight_file`` does: zero-based when some index in
the whole file is 0. The feature count is the largest index over all ranks (plus one when
zero-based), agreed by an allreduce.
"""

from __future__ import annotations

import numpy as np

from mpigd import kernels
from mpigd.data.csr import CSRMatrix
from mpigd.data.shard import Shard
from mpigd.data.textio import (first_unparsable, line_error, line_pieces, parse_floats, piece_scratch, read_own_lines,
                               unparsable_error, unusable, value_error)
from mpigd.errors import InputError
from mpigd.partition import exclusive_prefix

_NO_INDEX = np.iinfo(np.int64).max


_NOT_INTEGER, _NOT_INCREASING, _BAD_LABEL, _BAD_VALUE = range(4)  # kinds of error, the more serious first


def _parse(path: str, block: bytes | bytearray, first_line: int, dtype: str
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, indptr, indices, values, line of each record)`` of this rank's lines; indices as
    written in the file (the base is resolved once every rank has parsed), values as ``dtype``.

    Two passes over pieces of the block (see :func:`~mpigd.data.textio.line_pieces`): the first
    checks every line and counts each record's features, so that the CSR arrays are allocated
    once; the second parses each piece into them. The cleaned text and the parsed numbers are
    held for one piece at a time. The errors are the whole block's: a malformed line anywhere
    first, then a token that is not a number, then each later kind of error, the first of its kind.
    """
    raw = np.frombuffer(block, dtype=np.uint8)
    pieces = line_pieces(block)
    clean, scratch = piece_scratch(block, pieces)  # scratch: the second pass's line slots of a piece
    slots = block.count(b"\n") + 1
    nnz = np.empty(slots, dtype=np.int64)
    line_of_record = np.empty(slots, dtype=np.int64)
    first_record = [0]
    for start, stop, lines_before in pieces:
        records = first_record[-1]
        count, bad_line, code = kernels.libsvm_scan(raw[start:stop], clean[:stop - start], nnz[records:],
                                                    line_of_record[records:])
        if bad_line >= 0:
            raise line_error(path, first_line + lines_before + bad_line, kernels.LIBSVM_PROBLEMS[code])
        line_of_record[records:records + count] += lines_before
        first_record.append(records + count)
    records = first_record[-1]
    nnz, line_of_record = nnz[:records], line_of_record[:records]
    indptr = np.zeros(records + 1, dtype=np.int64)
    np.cumsum(nnz, out=indptr[1:])
    labels = np.empty(records, dtype=np.float64)
    indices = np.empty(int(indptr[-1]), dtype=np.int64)
    values = np.empty(int(indptr[-1]), dtype=dtype)
    pending: tuple[int, InputError] | None = None
    for (start, stop, lines_before), low, high in zip(pieces, first_record, first_record[1:]):
        text, cleaned = raw[start:stop], clean[:stop - start]
        kernels.libsvm_scan(text, cleaned, scratch, scratch)  # the cleaned text again; checked and counted above
        count, piece_nnz, lines = high - low, nnz[low:high], line_of_record[low:high]
        offset, end = int(indptr[low]), int(indptr[high])
        numbers = parse_floats(cleaned, count + 2 * (end - offset))
        if numbers is None:  # the most serious error left: no need to look further
            bad = first_unparsable(text, cleaned, lines - lines_before, 1 + 2 * piece_nnz)  # the label, then pairs
            raise unparsable_error(path, first_line + lines_before, bad, "a label, index or value is not a number")
        # Record k is: label, then nnz[k] (index, value) pairs.
        row_start = indptr[low:high] - offset
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
            pending = (kind, line_error(path, first_line + int(lines[record_of[np.argmax(entry_mask)]]), problem))
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
                pending = (kind, value_error(path, first_line + int(lines[row]), numbers_found[entry], _kind_name(kind)))
                break
        if pending is None:
            labels[low:high] = piece_labels
            indices[offset:end] = piece_indices
            values[offset:end] = piece_values
    if pending is not None:
        raise pending[1]
    return labels, indptr, indices, values, line_of_record


def _kind_name(kind: int) -> str:
    return "label" if kind == _BAD_LABEL else "features"


def read(path: str, comm, dtype: str, zero_based: bool | None = None, n_features: int | None = None) -> Shard:
    """This rank's rows of the LIBSVM file ``path``, as CSR and densified. Collective.

    ``zero_based`` is ``None`` to detect the index base. ``n_features``, when given (the
    training set's count, when reading a test set), is the column count to use: a file whose
    largest index is smaller is padded with zero columns, one whose index is larger is refused.
    """
    block, offset, stats = comm.together(read_own_lines, path, comm.size, comm.rank)
    first_line = exclusive_prefix(comm.rank_values(block.count(b"\n")), comm.rank)
    labels, indptr, indices, values, lines = comm.together(_parse, path, block, first_line, dtype)
    del block
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
            "read_span": stats, "byte_offset": offset}
    y = np.ascontiguousarray(labels, dtype=dtype)
    return Shard(X, y, int(counts.sum()), exclusive_prefix(counts, comm.rank), path, counts, meta)
