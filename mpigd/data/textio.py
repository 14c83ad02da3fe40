"""Reading one rank's lines of a text file, and the line and parse errors every text reader shares.

A file of ``B`` bytes is split into ``p`` byte ranges ``block_range(B, p, r)``. A line belongs
to the rank whose range holds its first byte (the rule of Hadoop's and Spark's text inputs), so
rank ``r`` reads the byte before its range (to learn whether a line starts exactly at its first
byte), its range, and the rest of the one line that runs past its end. No rank reads the file
from the start, and the ranks' blocks of whole lines tile the file in rank order.

A rank reads its range once, front to back, in pieces of about :data:`PIECE_BYTES` cut at line
ends (:class:`RangeLines`), and the readers parse each piece into arrays that grow as the rows
come (:class:`Rows`), so a rank holds a piece of its text at a time besides its rows, never its
block. One pass rather than two (a first to count lines and records, a second to parse): a
second read of the range costs little from the page cache, but it is a second read of the file
where the page cache does not hold it (a file larger than memory, on a parallel file system),
and it doubles what ``bytes_read`` reports; growing costs little, since the room is the rows so
far projected over the range, and ``realloc`` grows and trims a large array without a copy.
What a one-pass rank cannot do is name the line of an error: that needs every earlier rank's
line count. So a parser returns its first error as a :class:`LineProblem`, its line counted
from the rank's first line, and the reader raises it once an exclusive prefix sum of the ranks'
line counts has given that line its number (every rank reaches that sum, errors or not).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from mpigd.errors import InputError
from mpigd.partition import block_range

NEWLINE = 10
TAIL_CHUNK = 1024  # read granularity past the range's end, looking for the end of the last line
PIECE_BYTES = 32 << 20  # text read and parsed at a time: the text, its cleaned copy and its numbers are of one piece
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


class RangeLines:
    """This rank's whole lines of ``path``, read in pieces of about :data:`PIECE_BYTES` bytes.

    :meth:`pieces` reads the rank's byte range front to back into one buffer of about a piece,
    cuts it after the last newline, hands out the whole lines before the cut and carries the
    partial last line to the front of the buffer for the next read: a rank holds one piece of its
    text at a time, never its block. A line longer than a piece is a piece of its own (the buffer
    grows to hold it, and stays that large). The file's last line gets a newline if it lacks one. After the pieces,
    ``offset`` is the file offset of the rank's first line, ``lines`` how many lines it handed out,
    and :meth:`stats` the range (``range_start``, ``range_stop``) and what was read of the file
    (``read_start``, ``read_stop``, ``bytes_read``), so that tests can check no rank read beyond
    its share. Every byte is read once.
    """

    def __init__(self, path: str, size: int, rank: int) -> None:
        self.total = file_size(path)
        self.path = path
        self.lo, self.hi = block_range(self.total, size, rank)
        self.first = max(self.lo - 1, 0)
        self.offset = self.first
        self.lines = 0
        self.consumed = 0  # bytes of the file read so far
        self._handle: CountingFile | None = None

    def fraction(self) -> float:
        """How much of the range has been read, in (0, 1] once a piece was handed out."""
        return min(self.consumed / max(self.hi - self.first, 1), 1.0)

    def pieces(self) -> Iterator[tuple[np.ndarray, int, int]]:
        """``(text, lines before it, lines in it)`` for each piece, ``text`` a uint8 view of the
        piece's whole lines, each ending with a newline. A view stays valid until the next piece
        is asked for."""
        piece = max(int(PIECE_BYTES), 1)
        buffer = bytearray(piece + 1)  # room for a final newline
        carry = 0  # buffer[:carry]: a line begun but not ended
        position, started, tail = self.first, self.lo == 0, False
        with CountingFile(self.path) as handle:
            self._handle = handle
            while True:
                if position < self.hi:
                    length = min(self.hi - position, piece - carry if carry < piece else carry)
                elif started and carry and position < self.total:
                    length, tail = TAIL_CHUNK, True
                else:
                    break
                if len(buffer) < carry + length + 1:
                    # A line longer than the room: a new buffer, not bytearray.extend, which a live
                    # view of the last piece would refuse.
                    grown = bytearray(max(carry + length + 1, 2 * len(buffer)))
                    grown[:carry] = memoryview(buffer)[:carry]
                    buffer = grown
                view = memoryview(buffer)
                got = handle.pread_into(position, view[carry:carry + length])
                view.release()
                if not got:
                    break
                position += got
                self.consumed = position - self.first
                end = carry + got
                if not started:
                    # A line starts at lo exactly when byte lo-1 ends the previous one.
                    newline = buffer.find(b"\n", 0, end)
                    if newline < 0:
                        self.offset = position
                        continue
                    started = True
                    self.offset = position - got + newline + 1
                    _move_front(buffer, newline + 1, end)
                    carry, end = 0, end - newline - 1
                cut = (buffer.find(b"\n", carry, end) if tail else buffer.rfind(b"\n", carry, end)) + 1
                if cut <= 0:
                    carry = end
                    continue
                yield from self._hand_out(buffer, cut)
                _move_front(buffer, cut, end)
                carry = end - cut
                if tail:
                    carry = 0
                    break
            if carry:
                # The file's last line lacks its newline. The parsers hand the text to strtod, which
                # stops only at a character that is not part of a number: at the end of the piece it
                # would read on into whatever memory follows.
                buffer[carry] = NEWLINE
                yield from self._hand_out(buffer, carry + 1)

    def _hand_out(self, buffer: bytearray, stop: int) -> Iterator[tuple[np.ndarray, int, int]]:
        lines = buffer.count(b"\n", 0, stop)
        before, self.lines = self.lines, self.lines + lines
        yield np.frombuffer(buffer, dtype=np.uint8, count=stop), before, lines

    def stats(self) -> dict[str, int]:
        """The range and what was read of the file (see the class)."""
        handle = self._handle
        low = handle.low if handle is not None and handle.low is not None else self.lo
        high = handle.high if handle is not None and handle.high is not None else self.lo
        return {"range_start": self.lo, "range_stop": self.hi, "read_start": low, "read_stop": high,
                "bytes_read": handle.bytes_read if handle is not None else 0}


def _move_front(buffer: bytearray, start: int, stop: int) -> None:
    """``buffer[start:stop]`` moved to the front in place (no copy of the piece, whose views may
    still be alive: the length of the buffer does not change)."""
    if start and stop > start:
        view = np.frombuffer(buffer, dtype=np.uint8)
        view[:stop - start] = view[start:stop]


class Rows:
    """A growing array filled at its end, one piece's rows at a time, for rows counted as they are
    parsed (a rank reads its text once, so no count comes first).

    Its room is the rows so far projected over the whole range (``fraction`` of it read), plus 2%
    (at least 1/8 more each time, so that growing stays linear): the file's own density is the
    best guess. It grows with ``ndarray.resize``, a ``realloc``, which glibc serves for a large
    array by remapping its pages, with no second array and no copy; :meth:`done` gives back the
    spare room the same way. No view of the array may outlive the :meth:`take` that made it.
    """

    def __init__(self, shape: tuple[int, ...], dtype: str | np.dtype) -> None:
        self.array = np.zeros((0, *shape), dtype=dtype)
        self.size = 0

    def take(self, count: int, fraction: float) -> np.ndarray:
        """A view of the next ``count`` rows, zeros until filled; fill it before the next call."""
        need = self.size + count
        if need > len(self.array):
            room = max(need, int(need / max(fraction, 1e-9) * 1.02) + 16, len(self.array) * 9 // 8)
            self.array.resize((room, *self.array.shape[1:]), refcheck=False)
        rows = self.array[self.size:need]
        self.size = need
        return rows

    def done(self) -> np.ndarray:
        """The rows taken, the spare room given back."""
        self.array.resize((self.size, *self.array.shape[1:]), refcheck=False)
        return self.array


def unusable(values: np.ndarray, dtype: str) -> np.ndarray:
    """Where the parsed (float64) ``values`` are NaN or Inf, or would become Inf as ``dtype``."""
    bad = ~np.isfinite(values)
    if np.dtype(dtype) == np.float32:
        bad |= np.abs(values) >= FLOAT32_OVERFLOW
    return bad


class LineProblem(NamedTuple):
    """An error on one of a rank's lines, found before the rank knows its first line's number
    (which needs every earlier rank's line count: see :meth:`error`)."""

    line: int  # 0-based among the rank's lines; -1 when no line could be located
    text: str

    def error(self, path: str, first_line: int) -> InputError:
        """The one-line error, the rank's first line being global line ``first_line`` (0-based)."""
        if self.line < 0:
            return InputError(f"{path}: {self.text}")
        return InputError(f"{path}:{first_line + self.line + 1}: {self.text}")


def value_problem(line: int, value: float, kind: str) -> LineProblem:
    """An unusable ``value`` (see :func:`unusable`) on ``line``: NaN or Inf, or a number float32
    cannot hold."""
    if np.isfinite(value):
        problem = f"{value:g} in the {kind} is too large for --dtype float32 (at most {np.finfo(np.float32).max:.3g})"
    else:
        problem = f"NaN or Inf in the {kind}"
    return LineProblem(line, problem)


def malformed(line: int, problem: str) -> LineProblem:
    """A bad line (see :func:`line_error`)."""
    return LineProblem(line, f"malformed line: {problem}")


def line_error(path: str, line: int, problem: str) -> InputError:
    """The one-line error for a bad line; ``line`` is the 0-based global line index."""
    return malformed(line, problem).error(path, 0)


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


def unparsable(first_line: int, bad: int, problem: str) -> LineProblem:
    """The problem of a piece the fast parse refused, whose first line is ``first_line``, at
    piece-local line ``bad`` from :func:`first_unparsable`; with no line number when no line was
    found (never a made-up one)."""
    if bad < 0:
        return LineProblem(-1, f"malformed data: {problem} (on a line that could not be located)")
    return malformed(first_line + bad, problem)
