"""CSV: numeric comma-separated columns, an optional header line, one column of labels.

Each rank reads only its own lines (see :mod:`mpigd.data.textio`). Rank 0 owns the first line,
so it alone decides whether that line is a header and which column holds the labels, and
broadcasts the decision. Blank lines are skipped; quoted fields are not supported (the data must
be numeric), except in the header, where names may be quoted.
"""

from __future__ import annotations

import codecs
import csv

import numpy as np

from mpigd import kernels
from mpigd.data.shard import Shard
from mpigd.data.textio import (first_unparsable, line_error, parse_floats, read_own_lines, unparsable_error, unusable,
                               value_error)
from mpigd.errors import InputError
from mpigd.partition import exclusive_prefix

DELIMITER = ord(",")


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# What spreadsheets and R write for a missing value: no header name, but no number either.
MISSING_MARKERS = frozenset({"", "na", "n/a", "null", "none", "?"})


def _has_header(path: str, fields: list[str], header: str) -> bool:
    """``--header auto``: a header when a field is a name. A first line whose only non-numbers are
    empty or missing-value fields could be either (a header of numbered columns over an index,
    ``,0,1,2``; a first row with a gap, ``1,,0``): refused, where a guess could drop a row unseen."""
    if header != "auto":
        return header == "yes"
    words = [field for field in fields if not _is_number(field)]
    if words and all(word.strip("\"'").lower() in MISSING_MARKERS for word in words):
        shown = ", ".join(sorted({repr(word) for word in words}))
        raise InputError(f"{path}:1: cannot tell whether the first line is a header: its fields are numbers but for "
                         f"{shown}; set `header` to yes or no")
    return bool(words)


NO_LABEL = -1  # the label index of a file without labels


def _layout(path: str, block: bytes, header: str, label_column: str | int | None,
            unlabelled_features: int | None = None) -> np.ndarray:
    """Rank 0: ``[n_fields, label index or NO_LABEL, has header]`` from the file's first line."""
    if not block:
        raise InputError(f"{path}: the file is empty")
    cut = block.find(b"\n")
    first = (block if cut < 0 else block[:cut]).rstrip(b"\r")  # not split(): that copies the block
    if not first.strip():
        raise InputError(f"{path}:1: the first line is empty (expected a header or a row of numbers)")
    # The csv module, not split(): a quoted header name may hold the delimiter ("b, c").
    line = first.decode("utf-8", errors="replace")
    try:
        fields = [field.strip() for field in next(csv.reader([line], skipinitialspace=True))]
    except csv.Error as error:  # a field over the csv module's limit (128 KiB): a binary or mislabelled file
        raise InputError(f"{path}:1: malformed first line: {error}") from None
    has_header = _has_header(path, fields, header)
    if label_column is None and len(fields) == unlabelled_features:
        return np.array([len(fields), NO_LABEL, int(has_header)], dtype=np.int64)
    if len(fields) < 2:
        raise InputError(f"{path}:1: found {len(fields)} column; CSV data needs feature columns and a label column")
    if label_column is None:
        index = len(fields) - 1
    elif isinstance(label_column, int) or label_column.lstrip("-").isdigit():
        index = int(label_column)
        if not -len(fields) <= index < len(fields):
            raise InputError(f"{path}: label column {index} is out of range (the file has {len(fields)} columns)")
        index %= len(fields)
    else:
        if not has_header:
            raise InputError(f"{path}: label column {label_column!r} is a name, but the file has no header line")
        names = [field.strip("\"'") for field in fields]
        if label_column not in names:
            raise InputError(f"{path}: no column named {label_column!r} in the header ({', '.join(names)})")
        index = names.index(label_column)
    return np.array([len(fields), index, int(has_header)], dtype=np.int64)


def _parse(path: str, block: bytes, first_line: int, skip_header: bool, n_fields: int, label: int,
           dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """This rank's rows: parse ``block`` (whose first line is global line ``first_line``)."""
    skip = 0
    if skip_header:
        # A view past the header: slicing the bytes copied rank 0's whole block (a third block
        # beside the block and its cleaned copy, at the reader's peak).
        cut = block.find(b"\n")
        skip = cut + 1 if cut >= 0 else len(block)
        first_line += 1
    raw = np.frombuffer(block, dtype=np.uint8, offset=skip)
    clean = np.empty_like(raw)
    line_of_record = np.empty(block.count(b"\n", skip) + 1, dtype=np.int64)
    records, bad_line, code = kernels.csv_scan(raw, DELIMITER, n_fields, clean, line_of_record)
    if bad_line >= 0:
        block = raw.tobytes() if skip else block  # the error paths below read the rows' bytes
        problem = kernels.CSV_PROBLEMS[code]
        if code == 1:
            found = block.split(b"\n")[bad_line].count(b",") + 1
            problem += f": expected {n_fields}, found {found}"
        raise line_error(path, first_line + bad_line, problem)
    line_of_record = line_of_record[:records]
    values = parse_floats(clean, records * n_fields)
    if values is None:
        block = raw.tobytes() if skip else block
        bad = first_unparsable(block, clean, line_of_record, np.full(records, n_fields))
        raise unparsable_error(path, first_line, bad, "a field is not a number")
    values = values.reshape(records, n_fields)
    bad = unusable(values, dtype)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        kind = "label" if column == label else "features"
        raise value_error(path, first_line + int(line_of_record[row]), values[row, column], kind)
    if label == NO_LABEL:
        return np.ascontiguousarray(values, dtype=dtype), np.zeros(records, dtype=dtype)
    y = np.ascontiguousarray(values[:, label], dtype=dtype)
    X = np.ascontiguousarray(np.delete(values, label, axis=1), dtype=dtype)
    return X, y


def read(path: str, comm, dtype: str, header: str = "auto", label_column: str | int | None = None,
         unlabelled_features: int | None = None) -> Shard:
    """This rank's rows of the CSV file ``path``. Collective.

    ``header`` is ``"auto"`` (the first line is a header when one of its fields is a name, not a
    number; refused when its only non-numbers are empty or missing values), ``"yes"`` or
    ``"no"``; ``label_column`` is a column index (negative counts from the end), a header name,
    or ``None`` for the last column. A file of exactly ``unlabelled_features`` columns (``mpigd
    predict`` passes the model's feature count), with no ``label_column`` named, has no labels.
    """
    block, offset, stats = comm.together(read_own_lines, path, comm.size, comm.rank)
    if offset == 0:
        # A UTF-8 byte order mark (spreadsheets write one) is no part of the first field: left in,
        # it made a headerless first row look like a header to --header auto, and it was dropped.
        if block.startswith(codecs.BOM_UTF8):
            del block[:len(codecs.BOM_UTF8)]  # in place: removeprefix would copy a bytearray
    first_line = exclusive_prefix(comm.rank_values(block.count(b"\n")), comm.rank)
    layout = np.zeros(3, dtype=np.int64)
    if comm.rank == 0:
        layout = comm.together(_layout, path, block, header, label_column, unlabelled_features)
    else:
        comm.together(lambda: None)
    comm.broadcast(layout)
    n_fields, label, has_header = (int(v) for v in layout)
    X, y = comm.together(_parse, path, block, first_line, comm.rank == 0 and bool(has_header),
                         n_fields, label, dtype)
    counts = comm.rank_values(X.shape[0])
    if counts.sum() == 0:
        raise InputError(f"{path}: no data rows")
    meta = {"format": "csv", "header": bool(has_header), "label_column": None if label == NO_LABEL else label,
            "first_line": first_line + 1 + int(comm.rank == 0 and bool(has_header)),
            "read_span": stats, "byte_offset": offset}
    if label == NO_LABEL:
        meta["labelled"] = False
    return Shard(X, y, int(counts.sum()), exclusive_prefix(counts, comm.rank), path, counts, meta)
