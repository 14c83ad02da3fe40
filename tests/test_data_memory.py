"""What a rank holds while it reads or writes data: bounded by its share, measured, not assumed.

Peaks are taken with tracemalloc, which sees NumPy's buffers as well as Python objects.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from mpigd.comm import self_comm
from mpigd.data import generate, synthetic

MB = 1 << 20


def _peak(action):
    tracemalloc.start()
    try:
        result = action()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


class BlockLines:
    """Whole lines already in memory, cut into pieces as ``textio.RangeLines`` cuts a file's: the
    parsers measured without the reading."""

    def __init__(self, block: bytes | bytearray) -> None:
        self.block = block
        self.done = 0
        self.lines = 0

    def fraction(self) -> float:
        """How much of the block has been handed out."""
        return min(self.done / max(len(self.block), 1), 1.0)

    def pieces(self) -> Iterator[tuple[np.ndarray, int, int]]:
        """``(text, lines before it, lines in it)`` for each piece, as ``RangeLines.pieces``."""
        from mpigd.data import textio

        piece = max(int(textio.PIECE_BYTES), 1)
        block, start, size = self.block, 0, len(self.block)
        raw = np.frombuffer(block, dtype=np.uint8)
        while start < size:
            stop = size
            if start + piece < size:
                stop = block.rfind(b"\n", start, start + piece) + 1
                if stop <= start:
                    stop = block.find(b"\n", start + piece) + 1 or size
            count = block.count(b"\n", start, stop)
            self.done = stop
            yield raw[start:stop], self.lines, count
            self.lines += count
            start = stop


def _csv_parse(block, *args):
    from mpigd.data import csvfile

    lines = BlockLines(block)
    X, y, problem = csvfile._parse("d.csv", lines.pieces(), lines.fraction, *args)
    assert problem is None, problem
    return X, y


def _libsvm_parse(block, dtype):
    from mpigd.data import libsvm

    lines = BlockLines(block)
    arrays, problem = libsvm._parse("d.svm", lines.pieces(), lines.fraction, dtype)
    assert problem is None, problem
    return arrays


def test_text_formatting_holds_little_more_than_its_output():
    # csv_bytes formatted a whole round as one list of Python strings, about 6 times the text it
    # made (110 MB for 18 MB of CSV); per round of 65,536 rows that grew with the width without bound.
    spec = generate.Spec(1000, 500, "regression", 0, "csv", "unused.csv")
    X, y = spec.rows_of(0, 1000)
    for fmt in (generate.csv_bytes, generate.libsvm_bytes):
        text, peak = _peak(lambda: fmt(spec, X, y))
        assert peak < 2.5 * len(text) + 16 * MB, (fmt.__name__, len(text), peak)


def test_gen_rounds_hold_a_bounded_number_of_values_whatever_the_width(tmp_path, monkeypatch):
    # Rounds were ROUND_ROWS rows whatever the feature count: 65,536 rows of 2,048 features held a
    # 1 GiB array per rank (all of a 16,384 x 2,048 data set on one rank, 360 MB resident).
    sizes = []
    real = generate.Spec.rows_of

    def rows_of(spec, start, stop):
        sizes.append((stop - start) * (spec.features + 1))
        return real(spec, start, stop)

    monkeypatch.setattr(generate.Spec, "rows_of", rows_of)
    rows, features = 2200, 2000
    output = tmp_path / "wide"
    generate.write(generate.Spec(rows, features, "regression", 0, "npy", str(output)), self_comm())
    assert len(sizes) > 1 and max(sizes) <= generate.ROUND_VALUES, sizes
    X, y = synthetic.generate("regression", features, 0, 0, rows, "float64")
    assert np.array_equal(np.load(output / "X.npy"), X) and np.array_equal(np.load(output / "y.npy"), y)


def test_an_hdf5_rank_holds_its_rows_once(tmp_path):
    # slice_shard copied the array h5py had just read for the slice: 2x the shard at the peak
    # (530 MB anon for a 272 MB shard of a 2M x 16 file on one rank; 338 MB once kept).
    h5py = pytest.importorskip("h5py")
    from mpigd.data import hdf5

    rows, features = 400_000, 8
    path = str(tmp_path / "d.h5")
    X, y = synthetic.generate("regression", features, 0, 0, rows, "float64")
    with h5py.File(path, "w") as handle:
        handle["X"], handle["y"] = X, y
    shard_bytes = X.nbytes + y.nbytes
    del X, y
    shard, peak = _peak(lambda: hdf5.read(path, "X", "y", 2, 1, "float64"))
    assert shard.X.flags.writeable and shard.X.flags.c_contiguous and shard.n_local == rows // 2
    assert peak < 0.5 * shard_bytes * 1.25, (peak, shard_bytes)
    expected = synthetic.generate("regression", features, 0, rows // 2, rows, "float64")
    assert np.array_equal(shard.X, expected[0]) and np.array_equal(shard.y, expected[1])
    assert hdf5.read(path, "X", "y", 2, 1, "float32").X.dtype == np.float32


def test_csv_parse_does_not_copy_the_block_to_skip_the_header():
    # Rank 0 sliced its block past the header line: a whole copy of its bytes, on top of the
    # block and its cleaned copy (1,305 MB anon reading a 333 MB CSV file on one rank).
    from mpigd.data import csvfile

    spec = generate.Spec(40_000, 16, "regression", 0, "csv", "unused.csv")
    X, y = spec.rows_of(0, 40_000)
    body = generate.csv_bytes(spec, X, y)
    values = X.nbytes + y.nbytes
    _csv_parse(b"x,y\n1,2\n", True, 2, 1, "float64")  # first-call allocations apart
    block = generate._csv_header(spec) + body
    (got_X, got_y), peak = _peak(lambda: _csv_parse(block, True, 17, 16, "float64"))
    assert np.array_equal(got_X, X) and np.array_equal(got_y, y)
    # The cleaned copy of the text, NumPy's parse and the values split into X and y: measured
    # 25.2 MB for 13.3 MB of text (5.4 MB of values); 38.5 MB with the copy past the header.
    assert peak < 1.6 * len(body) + 1.5 * values, (peak, len(body), values)


def test_a_holdout_split_holds_the_shard_once_plus_the_held_out_rows():
    # split copied the training rows out while the shard was still alive: 2x the shard at its peak
    # (train --holdout 0.2 on a 2M x 16 .npy on one rank: 590 MB anonymous for a 272 MB shard).
    from mpigd.comm import self_comm
    from mpigd.data.holdout import COMPACT_PIECE_BYTES, held_out, split
    from mpigd.data.shard import Shard

    rows, features, fraction = 200_000, 16, 0.2
    X, y = synthetic.generate("regression", features, 0, 0, rows, "float64")
    expected_X, expected_y = X.copy(), y.copy()
    shard = Shard(X, y, rows, 0, "memory")
    (train, test), peak = _peak(lambda: split(shard, fraction, 5, self_comm()))
    mask = held_out(5, 0, rows, fraction)
    assert np.array_equal(train.X, expected_X[~mask]) and np.array_equal(train.y, expected_y[~mask])
    assert np.array_equal(test.X, expected_X[mask]) and np.array_equal(test.y, expected_y[mask])
    assert train.X.flags.c_contiguous and train.n_global + test.n_global == rows
    # The held-out copy (a fifth), the mask and its row indices, and one piece of the compaction;
    # a copy of the training rows alone would be 0.8 of the shard.
    assert peak < (fraction + 0.2) * (X.nbytes + y.nbytes) + 2 * COMPACT_PIECE_BYTES, (peak, X.nbytes)


def test_a_rank_reads_its_lines_a_piece_at_a_time(tmp_path, monkeypatch):
    # read_own_lines read a rank's whole byte range into one buffer, which the parsers then cut into
    # pieces: a rank held its share of the file's text (316 MB of a 1M x 16 CSV file on one rank).
    from mpigd.data import textio

    path = tmp_path / "lines.txt"
    path.write_bytes(b"".join(b"%d,%d\n" % (i, i * 7) for i in range(600_000)))
    monkeypatch.setattr(textio, "PIECE_BYTES", 256 * 1024)
    for rank in range(3):
        lines = textio.RangeLines(str(path), 3, rank)
        sizes, peak = _peak(lambda: [text.size for text, _, _ in lines.pieces()])
        assert sum(sizes) > 2 * MB and max(sizes) <= textio.PIECE_BYTES
        assert peak < textio.PIECE_BYTES + 64 * 1024, (rank, peak, sum(sizes))


def _text_file(tmp_path, fmt, rows):
    path = str(tmp_path / f"d.{fmt}")
    generate.write(generate.Spec(rows, 16, "regression", 0, fmt, path), self_comm())
    return path


@pytest.mark.parametrize("fmt", ["csv", "libsvm"])
def test_a_text_reader_holds_its_rows_and_a_few_pieces_of_text_not_its_block(tmp_path, monkeypatch, fmt):
    # The readers held a rank's whole block of text while they parsed it in pieces: the block (13 MB
    # here) on top of the rows (VmHWM 664 MB for a 316 MB CSV file whose rows are 136 MB, one rank).
    from mpigd.data import csvfile, libsvm, textio

    monkeypatch.setattr(textio, "PIECE_BYTES", MB)
    path = _text_file(tmp_path, fmt, 40_000)
    read = csvfile.read if fmt == "csv" else libsvm.read
    text_bytes = os.path.getsize(path)
    (tmp_path / "warm").mkdir()
    read(_text_file(tmp_path / "warm", fmt, 10), self_comm(), "float64")  # first-call allocations apart
    for dtype in ("float64", "float32"):
        shard, peak = _peak(lambda: read(path, self_comm(), dtype))
        X = (shard.X.indptr, shard.X.indices, shard.X.data) if shard.sparse else (shard.X,)
        rows = sum(a.nbytes for a in X) + shard.y.nbytes
        # The rows (LIBSVM: and each record's line, kept for the index-base check), then one piece's
        # text and cleaned copy and its numbers, pairs and masks: measured rows + 3.6 MB (CSV) and
        # 5.6 MB (LIBSVM); with the block held, rows + 14.6 MB and 18.8 MB.
        kept = shard.n_local * 8 if shard.sparse else 0
        assert text_bytes > 12 * MB and peak < rows + kept + 6 * MB, (dtype, peak, rows, text_bytes)


def test_csv_parse_holds_its_rows_and_one_piece_of_text(monkeypatch):
    # _parse cleaned the whole block, parsed all of it into one float64 array and cut X out of that
    # with np.delete: text + cleaned text + values + X at the peak (25.2 MB for 13.3 MB of text
    # and 5.4 MB of values). X and y are now filled piece by piece.
    from mpigd.data import csvfile, textio

    monkeypatch.setattr(textio, "PIECE_BYTES", MB, raising=False)
    spec = generate.Spec(40_000, 16, "regression", 0, "csv", "unused.csv")
    X, y = spec.rows_of(0, 40_000)
    block = generate._csv_header(spec) + generate.csv_bytes(spec, X, y)
    _csv_parse(b"x,y\n1,2\n", True, 2, 1, "float64")  # first-call allocations apart
    for dtype in ("float64", "float32"):
        (got_X, got_y), peak = _peak(lambda: _csv_parse(block, True, 17, 16, dtype))
        assert np.array_equal(got_X, X.astype(dtype)) and np.array_equal(got_y, y.astype(dtype))
        shard = got_X.nbytes + got_y.nbytes
        assert peak < shard + 3 * MB, (dtype, peak, shard, len(block))


def test_libsvm_parse_holds_its_csr_arrays_and_one_piece_of_text(monkeypatch):
    # _parse cleaned the whole block and parsed all of it into one float64 array, then copied the
    # pairs out of it by a mask, the indices as float64 and int64 and the values (and read() copied
    # the indices again to rebase them and the values to cast them): 5.7x the shard at the peak.
    from mpigd.data import libsvm, textio

    monkeypatch.setattr(textio, "PIECE_BYTES", MB, raising=False)
    spec = generate.Spec(20_000, 16, "regression", 0, "libsvm", "unused.svm")
    X, y = spec.rows_of(0, 20_000)
    block = generate.libsvm_bytes(spec, X, y)
    _libsvm_parse(b"1 1:2\n", "float64")  # first-call allocations apart
    for dtype in ("float64", "float32"):
        (labels, indptr, indices, values, lines), peak = _peak(lambda: _libsvm_parse(block, dtype))
        assert np.array_equal(labels, y) and np.array_equal(values, X[X != 0].astype(dtype))
        shard = labels.nbytes + indptr.nbytes + indices.nbytes + values.nbytes + lines.nbytes
        # A piece's text, its cleaned copy, numbers and pairs.
        assert peak < shard + 5 * MB, (dtype, peak, shard, len(block))
