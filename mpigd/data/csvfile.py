"""CSV: numeric comma-separated columns, an optional header line, one column of labels.

Each rank reads only its own lines (see :mod:`mpigd.data.textio`). Rank 0 owns the first line,
so it alone decides whether that line is a header and which column holds the labels, and
broadcasts the decision. Blank lines are skipped; quoted fields are not supported (the data must
be numeric), except in the header, where names may be quoted.
"""

from __future__ import annotations

import codecs
import csv
import itertools
from collections.abc import Callable, Iterable

import numpy as np

from mpigd import kernels
from mpigd.data.shard import Shard
from mpigd.data.textio import (NEWLINE, LineProblem, RangeLines, Rows, first_unparsable, malformed,
                               parse_floats, unparsable, unusable, value_problem)
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
_NOT_A_NUMBER, _UNUSABLE = 0, 1  # kinds of error found while parsing, the more serious first


def _layout(path: str, first: bytes | None, header: str, label_column: str | int | None,
            unlabelled_features: int | None = None) -> np.ndarray:
    """Rank 0: ``[n_fields, label index or NO_LABEL, has header]`` from the file's first line
    (``None``: the file has no line)."""
    if first is None:
        raise InputError(f"{path}: the file is empty")
    first = first.rstrip(b"\r")
    if not first.strip():
        raise InputError(f"{path}:1: the first line is empty (expected a header or a row of numbers)")
    if b"\r" in first:  # the csv module's own words would be advice for Python code
        raise InputError(f"{path}: lines end in a carriage return alone (classic Mac OS); end them in a newline, "
                         "e.g. tr '\\r' '\\n'")
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


def _parse(path: str, pieces: Iterable[tuple[np.ndarray, int, int]], fraction: Callable[[], float],
           skip_header: bool, n_fields: int, label: int, dtype: str) -> tuple[np.ndarray, np.ndarray, LineProblem | None]:
    """This rank's rows ``(X, y, problem)``, parsed from ``pieces`` of its text (see
    :meth:`~mpigd.data.textio.RangeLines.pieces`; ``fraction()`` is how much of it was read).

    X and y grow as the pieces are parsed (see :class:`~mpigd.data.textio.Rows`): the text, its
    cleaned copy and the parsed numbers are held for one piece at a time, and the label column is
    never cut out of a copy of all the values. ``problem`` is the rank's error, its line counted
    from the rank's first line (the caller names it once the ranks' line counts are agreed): a
    malformed line anywhere comes before a field that is not a number anywhere, which comes before
    a NaN, Inf or value too large, each the first of its kind. Reading stops at a malformed line.
    """
    X = Rows((n_fields if label == NO_LABEL else n_fields - 1,), dtype)
    y = Rows((), dtype)  # zeros, when the file has no labels
    clean, line_of_record = np.empty(0, dtype=np.uint8), np.empty(1, dtype=np.int64)
    pending: tuple[int, LineProblem] | None = None  # the first error of the most serious kind after a malformed line
    for raw, lines_before, lines in pieces:
        if skip_header:
            # Past the header through a view of the piece: slicing the bytes copied rank 0's whole block.
            skip_header, cut = False, int(np.argmax(raw == NEWLINE)) + 1
            raw, lines_before, lines = raw[cut:], lines_before + 1, lines - 1
        if clean.size < raw.size:
            clean = np.empty(raw.size, dtype=np.uint8)
        if line_of_record.size < lines + 1:
            line_of_record = np.empty(lines + 1, dtype=np.int64)
        cleaned = clean[:raw.size]
        count, bad_line, code = kernels.csv_scan(raw, DELIMITER, n_fields, cleaned, line_of_record)
        if bad_line >= 0:
            problem = kernels.CSV_PROBLEMS[code]
            if code == 1:
                found = raw.tobytes().split(b"\n")[bad_line].count(b",") + 1
                problem += f": expected {n_fields}, found {found}"
            return X.done(), y.done(), malformed(lines_before + bad_line, problem)
        if pending is not None and pending[0] == _NOT_A_NUMBER:
            continue  # only a malformed line further on could come before it
        values = parse_floats(cleaned, count * n_fields)
        if values is None:
            bad = first_unparsable(raw, cleaned, line_of_record[:count], np.full(count, n_fields))
            pending = (_NOT_A_NUMBER, unparsable(lines_before, bad, "a field is not a number"))
            continue
        if pending is not None:
            continue
        values = values.reshape(count, n_fields)
        bad = unusable(values, dtype)
        if bad.any():
            at, column = np.argwhere(bad)[0]
            kind = "label" if column == label else "features"
            pending = (_UNUSABLE, value_problem(lines_before + int(line_of_record[at]), values[at, column], kind))
            continue
        rows = X.take(count, fraction())
        if label == NO_LABEL:
            rows[:] = values
            y.take(count, fraction())
        else:
            rows[:, :label] = values[:, :label]
            rows[:, label:] = values[:, label + 1:]
            y.take(count, fraction())[:] = values[:, label]
        del rows
    return X.done(), y.done(), None if pending is None else pending[1]


def _first_line(piece: tuple[np.ndarray, int, int] | None) -> bytes | None:
    """The first line of a rank's first piece (without its newline); ``None`` for no piece."""
    if piece is None:
        return None
    raw = piece[0]
    return raw[:int(np.argmax(raw == NEWLINE))].tobytes()


def read(path: str, comm, dtype: str, header: str = "auto", label_column: str | int | None = None,
         unlabelled_features: int | None = None) -> Shard:
    """This rank's rows of the CSV file ``path``. Collective.

    ``header`` is ``"auto"`` (the first line is a header when one of its fields is a name, not a
    number; refused when its only non-numbers are empty or missing values), ``"yes"`` or
    ``"no"``; ``label_column`` is a column index (negative counts from the end), a header name,
    or ``None`` for the last column. A file of exactly ``unlabelled_features`` columns (``mpigd
    predict`` passes the model's feature count), with no ``label_column`` named, has no labels.
    """
    text = comm.together(RangeLines, path, comm.size, comm.rank)
    pieces = text.pieces()
    layout = np.zeros(3, dtype=np.int64)
    if comm.rank == 0:
        first = next(pieces, None)
        if first is not None and first[0][:len(codecs.BOM_UTF8)].tobytes() == codecs.BOM_UTF8:
            # A UTF-8 byte order mark (spreadsheets write one) is no part of the first field: left in,
            # it made a headerless first row look like a header to --header auto, and it was dropped.
            first = (first[0][len(codecs.BOM_UTF8):], *first[1:])
        layout = comm.together(_layout, path, _first_line(first), header, label_column, unlabelled_features)
        if first is not None:
            pieces = itertools.chain([first], pieces)
    else:
        comm.together(lambda: None)
    comm.broadcast(layout)
    n_fields, label, has_header = (int(v) for v in layout)
    X, y, problem = _parse(path, pieces, text.fraction, comm.rank == 0 and bool(has_header), n_fields, label, dtype)
    first_line = exclusive_prefix(comm.rank_values(text.lines), comm.rank)
    comm.agree(None if problem is None else problem.error(path, first_line))
    counts = comm.rank_values(X.shape[0])
    if counts.sum() == 0:
        raise InputError(f"{path}: no data rows")
    meta = {"format": "csv", "header": bool(has_header), "label_column": None if label == NO_LABEL else label,
            "first_line": first_line + 1 + int(comm.rank == 0 and bool(has_header)),
            "read_span": text.stats(), "byte_offset": text.offset}
    if label == NO_LABEL:
        meta["labelled"] = False
    return Shard(X, y, int(counts.sum()), exclusive_prefix(counts, comm.rank), path, counts, meta)
