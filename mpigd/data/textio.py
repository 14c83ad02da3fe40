"""Reading one rank's lines of a text file, and the line and parse errors every text reader shares.

A file of ``B`` bytes is split into ``p`` byte ranges ``block_range(B, p, r)``. A line belongs
to the rank whose range holds its first byte (the rule of Hadoop's and Spark's text inputs), so
rank ``r`` reads the byte before its range (to learn whether a line starts exactly at its first
byte), its range, and the rest of the one line that runs past its end. No rank reads the file
from the start, and the ranks' blocks of whole lines tile the file in rank order.
"""

from __future__ import annotations

import os

import numpy as np

from mpigd.errors import InputError
from mpigd.partition import block_range

NEWLINE = 10
TAIL_CHUNK = 1024  # read granularity past the range's end, looking for the end of the last line
PIECE_BYTES = 32 << 20  # text parsed at a time: the cleaned copy and the parsed numbers are of one piece, not the block
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # the smallest magnitude float32 rounds to Inf (half an ulp past its largest)


class CountingFile:
    """A raw binary file that records the lowest and highest byte offsets it was asked to read."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.low: int | None = None
        self.high: int | None = None
        self.bytes_read = 0

    def pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if data:
            self.low = offset if self.low is None else min(self.low, offset)
            self.high = max(self.high or 0, offset + len(data))
            self.bytes_read += len(data)
        return data

    def pread_into(self, offset: int, view: memoryview) -> int:
        """Read up to ``len(view)`` bytes at ``offset`` into ``view``, to its end or the file's;
        the count read."""
        done = 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                break
            done += got
        if done:
            self.low = offset if self.low is None else min(self.low, offset)
            self.high = max(self.high or 0, offset + done)
            self.bytes_read += done
        return done

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> "CountingFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_size(path: str) -> int:
    """The size of ``path`` in bytes; a one-line :class:`InputError` if it is not a readable file."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such data file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")
    return os.path.getsize(path)


def read_own_lines(path: str, size: int, rank: int) -> tuple[bytearray, int, dict[str, int]]:
    """This rank's whole lines of ``path``: ``(block, offset of block, stats)``.

    ``block`` holds every line whose first byte lies in this rank's byte range (possibly none),
    each ending with a newline (one is added to the file's last line if it lacks it). ``stats`` records the range
    (``range_start``, ``range_stop``) and the span actually read (``read_start``,
    ``read_stop``, ``bytes_read``) so that tests can check no rank read beyond its share.

    The block is read straight into one buffer, with room for the end of the last line: the
    bytes before the first line are dropped from its front and the spare room from its end in
    place (a ``bytearray`` does both without moving its bytes), so no copy of the block is ever
    made.
    """
    total = file_size(path)
    lo, hi = block_range(total, size, rank)
    with CountingFile(path) as handle:
        first = max(lo - 1, 0)
        length = max(hi - first, 0)
        block = bytearray(length + TAIL_CHUNK + 1)  # room for one tail chunk and a final newline
        view = memoryview(block)
        end = handle.pread_into(first, view[:length])
        view.release()
        if lo == 0:
            start = 0
        else:
            # A line starts at lo exactly when byte lo-1 ends the previous one.
            newline = block.find(b"\n", 0, end)
            start = end if newline < 0 else newline + 1
        if start < end and hi < total and block[end - 1] != NEWLINE:
            position = hi
            while position < total:
                if len(block) < end + TAIL_CHUNK + 1:
                    block.extend(bytes(max(TAIL_CHUNK, end - length)))  # a long last line: double the room
                view = memoryview(block)
                got = handle.pread_into(position, view[end:end + TAIL_CHUNK])
                view.release()
                if not got:
                    break
                cut = block.find(b"\n", end, end + got)
                if cut >= 0:
                    end = cut + 1
                    break
                end += got
                position += got
        if start < end and block[end - 1] != NEWLINE:
            # The file's last line lacks its newline. The parsers hand the block to strtod, which
            # stops only at a character that is not part of a number: at the end of the block it
            # would read on into whatever memory follows.
            block[end] = NEWLINE
            end += 1
        del block[max(end, start):]
        del block[:start]
        stats = {"range_start": lo, "range_stop": hi, "read_start": handle.low if handle.low is not None else lo,
                 "read_stop": handle.high if handle.high is not None else lo, "bytes_read": handle.bytes_read}
    return block, first + start, stats


def line_pieces(block: bytes | bytearray, begin: int = 0, piece: int | None = None) -> list[tuple[int, int, int]]:
    """``block[begin:]`` cut at line ends into pieces of about ``piece`` bytes (:data:`PIECE_BYTES`):
    ``(start, stop, lines before the piece)`` each. A line longer than a piece is a piece of its own."""
    piece = PIECE_BYTES if piece is None else piece
    pieces = []
    start, lines, size = begin, 0, len(block)
    while start < size:
        stop = size
        if start + piece < size:
            stop = block.rfind(b"\n", start, start + piece) + 1
            if stop <= start:
                stop = block.find(b"\n", start + piece) + 1 or size
        pieces.append((start, stop, lines))
        lines += block.count(b"\n", start, stop)
        start = stop
    return pieces


def piece_scratch(block: bytes | bytearray, pieces: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The buffers a scan of one of ``pieces`` at a time needs, sized for the largest: its cleaned
    text (bytes), and one slot per line of it and one more (int64). Line counts come from the
    pieces' ``lines before``; only the last piece's lines are counted here."""
    if not pieces:
        return np.empty(0, dtype=np.uint8), np.empty(1, dtype=np.int64)
    last_start, last_stop, last_before = pieces[-1]
    ends = [before for _, _, before in pieces[1:]] + [last_before + block.count(b"\n", last_start, last_stop)]
    most_lines = max(end - before for end, (_, _, before) in zip(ends, pieces))
    largest = max(stop - start for start, stop, _ in pieces)
    return np.empty(largest, dtype=np.uint8), np.empty(most_lines + 1, dtype=np.int64)


def unusable(values: np.ndarray, dtype: str) -> np.ndarray:
    """Where the parsed (float64) ``values`` are NaN or Inf, or would become Inf as ``dtype``."""
    bad = ~np.isfinite(values)
    if np.dtype(dtype) == np.float32:
        bad |= np.abs(values) >= FLOAT32_OVERFLOW
    return bad


def value_error(path: str, line: int, value: float, kind: str) -> InputError:
    """The one-line error for an unusable ``value`` (see :func:`unusable`) on the 0-based global
    ``line``: NaN or Inf, or a number float32 cannot hold."""
    if np.isfinite(value):
        problem = f"{value:g} in the {kind} is too large for --dtype float32 (at most {np.finfo(np.float32).max:.3g})"
    else:
        problem = f"NaN or Inf in the {kind}"
    return InputError(f"{path}:{line + 1}: {problem}")


def line_error(path: str, line: int, problem: str) -> InputError:
    """The one-line error for a bad line; ``line`` is the 0-based global line index."""
    return InputError(f"{path}:{line + 1}: malformed line: {problem}")


def parse_floats(clean: np.ndarray | bytes, expected: int) -> np.ndarray | None:
    """The ``expected`` numbers of a cleaned, space-separated block, or ``None`` when some token is
    not a number or the count is off (then the caller looks for the culprit line slowly)."""
    if expected == 0:
        # numpy.fromstring returns [-1.] for an all-blank string: never ask it about one.
        return np.empty(0)
    try:
        values = np.fromstring(clean, dtype=np.float64, sep=" ")
    except ValueError:
        return None
    return values if values.size == expected else None


def first_unparsable(block: bytes, clean: np.ndarray, line_of_record: np.ndarray,
                     numbers_per_record: np.ndarray) -> int:
    """The block-local index of the first record line that :func:`parse_floats` refuses; -1 if
    none does on its own. The slow path, taken only once the fast parse of the whole block failed.

    ``clean`` is the scanner's cleaned copy of ``block`` and ``numbers_per_record`` how many
    numbers each record holds. Records are judged by the fast path's own parser on the same
    cleaned bytes (not by ``float``, which takes tokens such as ``1_0`` that NumPy refuses), and
    found by bisection: a run of records that parses is clean, so the culprit is in the other half.
    """
    newlines = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
    line_start = np.concatenate(([0], newlines + 1))
    line_stop = np.append(newlines, len(block))
    first_number = np.concatenate(([0], np.cumsum(numbers_per_record)))

    def parses(lo: int, hi: int) -> bool:  # records [lo, hi)
        # A bytes copy: its terminating NUL stops strtod, which a view's last digit would not.
        text = clean[line_start[line_of_record[lo]]:line_stop[line_of_record[hi - 1]]].tobytes()
        return parse_floats(text, int(first_number[hi] - first_number[lo])) is not None

    lo, hi = 0, len(line_of_record)
    if hi == 0 or parses(lo, hi):
        return -1
    while hi - lo > 1:  # records [lo, hi) do not parse
        middle = (lo + hi) // 2
        if parses(lo, middle):
            lo = middle
        else:
            hi = middle
    return int(line_of_record[lo]) if not parses(lo, lo + 1) else -1


def unparsable_error(path: str, first_line: int, bad: int, problem: str) -> InputError:
    """The error for a block the fast parse refused, at block-local line ``bad`` from
    :func:`first_unparsable`; with no line number when no line was found (never a made-up one)."""
    if bad < 0:
        return InputError(f"{path}: malformed data: {problem} (on a line that could not be located)")
    return line_error(path, first_line + bad, problem)
