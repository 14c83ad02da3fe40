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
from mpigd.data.textio import (first_unparsable, line_error, parse_floats, read_own_lines, unparsable_error, unusable,
                               value_error)
from mpigd.errors import InputError
from mpigd.partition import exclusive_prefix

_NO_INDEX = np.iinfo(np.int64).max


def _parse(path: str, block: bytes, first_line: int, dtype: str
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, indptr, indices, values, line of each record)`` of this rank's lines; indices as
    written in the file (the base is resolved once every rank has parsed)."""
    raw = np.frombuffer(block, dtype=np.uint8)
    clean = np.empty_like(raw)
    slots = block.count(b"\n") + 1
    nnz = np.empty(slots, dtype=np.int64)
    line_of_record = np.empty(slots, dtype=np.int64)
    records, bad_line, code = kernels.libsvm_scan(raw, clean, nnz, line_of_record)
    if bad_line >= 0:
        raise line_error(path, first_line + bad_line, kernels.LIBSVM_PROBLEMS[code])
    nnz, line_of_record = nnz[:records], line_of_record[:records]
    indptr = np.zeros(records + 1, dtype=np.int64)
    np.cumsum(nnz, out=indptr[1:])
    numbers = parse_floats(clean, records + 2 * int(indptr[-1]))
    if numbers is None:
        bad = first_unparsable(block, clean, line_of_record, 1 + 2 * nnz)  # the label, then index:value pairs
        raise unparsable_error(path, first_line, bad, "a label, index or value is not a number")
    # Record k is: label, then nnz[k] (index, value) pairs.
    label_at = indptr[:-1] * 2 + np.arange(records)
    labels = numbers[label_at]
    is_pair = np.ones(numbers.size, dtype=bool)
    is_pair[label_at] = False
    pairs = numbers[is_pair]
    raw_indices, values = pairs[0::2], pairs[1::2]
    record_of = np.repeat(np.arange(records), nnz)

    def fail(entry_mask: np.ndarray, problem: str) -> None:
        if entry_mask.any():
            raise line_error(path, first_line + int(line_of_record[record_of[np.argmax(entry_mask)]]), problem)

    fail((raw_indices < 0) | (raw_indices != np.floor(raw_indices)) | (raw_indices >= 2.0**53),
         "a feature index is not a non-negative integer")
    indices = raw_indices.astype(np.int64)
    increasing = np.ones(indices.size, dtype=bool)
    increasing[1:] = indices[1:] > indices[:-1]
    increasing[indptr[:-1][nnz > 0]] = True  # the first entry of a line follows nothing
    fail(~increasing, "feature indices must be strictly increasing")
    for kind, found, record in (("label", labels, None), ("features", values, record_of)):
        bad = unusable(found, dtype)
        if bad.any():
            entry = int(np.argmax(bad))
            row = entry if record is None else int(record[entry])
            raise value_error(path, first_line + int(line_of_record[row]), found[entry], kind)
    return labels, indptr, indices, values, line_of_record


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
    X = CSRMatrix(indptr, indices - base, values.astype(dtype), (int(indptr.size - 1), width))
    meta = {"format": "libsvm", "zero_based": bool(zero_based), "first_line": first_line + 1,
            "read_span": stats, "byte_offset": offset}
    y = np.ascontiguousarray(labels, dtype=dtype)
    return Shard(X, y, int(counts.sum()), exclusive_prefix(counts, comm.rank), path, counts, meta)
