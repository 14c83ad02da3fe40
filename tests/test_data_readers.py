"""The readers on one rank, and the byte-range rule checked rank by rank without MPI."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mpigd import Config, kernels
from mpigd.comm import self_comm
from mpigd.data import csvfile, generate, libsvm, load_shard, standardize, synthetic
from mpigd.data.csr import CSRMatrix
from mpigd.data.shard import Shard
from mpigd.data.textio import FLOAT32_OVERFLOW, TAIL_CHUNK, RangeLines, unusable
from mpigd.errors import InputError, UsageError

SVM_TEXT = b"""# a comment line
1 qid:3 0:1.5 4:-2 # trailing comment
0 qid:3 2:0.25

-1 1:1e-3 3:7
"""


def read_own_lines(path: str, size: int, rank: int) -> tuple[bytes, int, dict[str, int]]:
    """A rank's lines joined from the pieces it reads (a reader holds one piece at a time), their
    file offset, and the read statistics."""
    lines = RangeLines(path, size, rank)
    block = b"".join(text.tobytes() for text, _, _ in lines.pieces())
    return block, lines.offset, lines.stats()


def _bytes(text: bytes) -> np.ndarray:
    return np.frombuffer(text, dtype=np.uint8)


def test_csv_scan_reports_the_first_bad_line():
    text = b"1,2,3\n\n4,5,6\r\n7,8\n"
    clean = np.empty(len(text), np.uint8)
    lines = np.empty(5, np.int64)
    records, bad, code = kernels.csv_scan(_bytes(text), ord(","), 3, clean, lines)
    assert (records, bad, code) == (2, 3, 1)
    assert list(lines[:2]) == [0, 2]
    assert clean[:6].tobytes() == b"1 2 3 "
    assert kernels.csv_scan(_bytes(b"1, 2 3,4\n"), ord(","), 3, clean, lines)[1:] == (0, 3)


@pytest.mark.parametrize("text", [b"", b"\n", b"1,2\n\n \t\r\n,\n3", b" x", b"a\n\nb\n", b"\r\n\r\n", b"1,2\n3,4\n"])
def test_csv_scan_takes_the_lines_with_a_non_blank_byte_for_records(text):
    reference = sum(1 for line in text.split(b"\n") if line.strip(b" \t\r"))
    clean = np.empty(len(text), np.uint8)
    lines = np.empty(text.count(b"\n") + 1, np.int64)
    records, bad, _ = kernels.csv_scan(_bytes(text), ord(","), 1, clean, lines)
    assert bad >= 0 or records == reference


def test_libsvm_scan_skips_comments_and_qid():
    clean = np.empty(len(SVM_TEXT), np.uint8)
    nnz, lines = np.empty(6, np.int64), np.empty(6, np.int64)
    records, bad, code = kernels.libsvm_scan(_bytes(SVM_TEXT), clean, nnz, lines)
    assert (records, bad) == (3, -1)
    assert list(nnz[:3]) == [2, 1, 2] and list(lines[:3]) == [1, 2, 4]
    assert np.fromstring(clean, sep=" ").tolist() == [1, 0, 1.5, 4, -2, 0, 2, 0.25, -1, 1, 1e-3, 3, 7]


def test_libsvm_reader_matches_scikit_learn(tmp_path):
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    path = tmp_path / "data.svm"
    path.write_bytes(SVM_TEXT)
    X_ref, y_ref = sklearn_datasets.load_svmlight_file(str(path), zero_based="auto")
    shard = libsvm.read(str(path), self_comm(), "float64")
    assert shard.meta["zero_based"] is True
    np.testing.assert_array_equal(shard.X.toarray(), X_ref.toarray())
    np.testing.assert_array_equal(shard.y, y_ref)
    one_based = libsvm.read(str(tmp_path / "data.svm"), self_comm(), "float64", zero_based=None)
    assert one_based.n_features == 5


def test_libsvm_one_based_is_detected(tmp_path):
    path = tmp_path / "data.svm"
    path.write_text("1 1:2 3:4\n0 2:1\n")
    shard = libsvm.read(str(path), self_comm(), "float64")
    assert shard.meta["zero_based"] is False
    np.testing.assert_array_equal(shard.X.toarray(), [[2, 0, 4], [0, 1, 0]])
    assert isinstance(shard.X, CSRMatrix) and shard.X.indices.tolist() == [0, 2, 1]
    wide = libsvm.read(str(path), self_comm(), "float64", n_features=5)
    assert wide.X.shape == (2, 5)


@pytest.mark.parametrize("column, header, expected_label", [
    (None, "auto", 3), ("0", "auto", 0), ("-2", "auto", 2), ("b", "auto", 1), (None, "yes", 3)])
def test_csv_label_column_and_header(tmp_path, column, header, expected_label):
    table = np.arange(12, dtype=float).reshape(3, 4)
    path = tmp_path / "data.csv"
    path.write_text("a,b,c,d\n" + "".join(",".join(map(str, row)) + "\n" for row in table))
    shard = csvfile.read(str(path), self_comm(), "float64", header, column)
    np.testing.assert_array_equal(shard.y, table[:, expected_label])
    np.testing.assert_array_equal(shard.X, np.delete(table, expected_label, axis=1))


def test_csv_without_header_keeps_the_first_row(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,4,1")  # no newline at the end of the file
    shard = csvfile.read(str(path), self_comm(), "float32", "auto", None)
    assert shard.X.dtype == np.float32 and shard.y.tolist() == [0, 1] and shard.n_global == 2


def test_csv_quoted_header_names_may_hold_the_delimiter(tmp_path):
    # The header used to be split at every comma: "b, c" made two columns of a three-column file.
    path = tmp_path / "data.csv"
    path.write_text('"a","b, c","y"\n1,2,0\n3,4,1\n')
    shard = csvfile.read(str(path), self_comm(), "float64", "auto", None)
    assert shard.X.tolist() == [[1, 2], [3, 4]] and shard.y.tolist() == [0, 1]
    by_name = csvfile.read(str(path), self_comm(), "float64", "auto", "b, c")
    assert by_name.y.tolist() == [2, 4] and by_name.X.tolist() == [[1, 0], [3, 1]]


@pytest.mark.parametrize("header", ["", "a,b,y\n"], ids=["no-header", "header"])
def test_csv_utf8_bom_is_not_taken_for_a_header(tmp_path, header):
    # With --header auto a BOM before "1,2,0" made the first field non-numeric: the first row was
    # dropped as a header.
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (header + "1,2,0\n3,4,1\n").encode())
    shard = csvfile.read(str(path), self_comm(), "float64", "auto", None)
    assert shard.meta["header"] == bool(header)
    assert shard.X.tolist() == [[1, 2], [3, 4]] and shard.y.tolist() == [0, 1] and shard.n_global == 2
    if header:  # the first name is "a", not "\ufeffa"
        assert csvfile.read(str(path), self_comm(), "float64", "auto", "a").y.tolist() == [1, 3]


@pytest.mark.parametrize("first", ["a" * 200_000 + ",y", '"' + "x," * 70_000 + "y"], ids=["long", "open-quote"])
def test_csv_a_first_line_the_csv_module_refuses_is_an_input_error(tmp_path, first):
    # Over the csv module's field limit (128 KiB) its csv.Error escaped: a traceback and exit code 1.
    path = tmp_path / "data.csv"
    path.write_text(first + "\n1,0\n")
    with pytest.raises(InputError, match=r"data.csv:1: malformed first line: field larger than field limit"):
        csvfile.read(str(path), self_comm(), "float64", "auto", None)


@pytest.mark.parametrize("test_labels", [None, "y.npy"], ids=["missing", "beside-a-directory"])
def test_npy_test_data_errors_name_the_test_labels_option(tmp_path, test_labels):
    # They named --labels, which is the training data's: a user following them changed nothing.
    pair = tmp_path / "pair"
    pair.mkdir()
    np.save(pair / "X.npy", np.ones((4, 2)))
    np.save(pair / "y.npy", np.array([0.0, 1.0, 0.0, 1.0]))
    test_data = str(pair / "X.npy") if test_labels is None else str(pair)
    config = Config(data=str(pair), model="linear", test_data=test_data,
                    test_labels=None if test_labels is None else str(pair / test_labels))
    assert load_shard(config, self_comm()).n_global == 4
    with pytest.raises(InputError, match="--test-labels") as caught:
        load_shard(config, self_comm(), test=True)
    assert "--labels" not in str(caught.value)


def test_a_text_value_is_unusable_as_float32_exactly_when_numpy_narrows_it_to_inf():
    largest = float(np.finfo(np.float32).max)
    near = [largest, np.nextafter(largest, np.inf), FLOAT32_OVERFLOW, np.nextafter(FLOAT32_OVERFLOW, 0.0),
            np.nextafter(FLOAT32_OVERFLOW, np.inf), 1e300, 1.0, 0.0]
    values = np.array(near + [-v for v in near] + [np.nan, np.inf, -np.inf])
    with np.errstate(over="ignore"):
        narrowed_to_inf = ~np.isfinite(values.astype(np.float32))
    assert np.array_equal(unusable(values, "float32"), narrowed_to_inf)
    assert unusable(values, "float32")[:8].tolist() == [False, False, True, False, True, True, False, False]
    assert np.array_equal(unusable(values, "float64"), ~np.isfinite(values))


@pytest.mark.parametrize("fmt", ["csv", "libsvm"])
def test_values_beyond_float32_are_reported_at_the_first_line_that_holds_one(tmp_path, fmt):
    # Blank and comment lines before them: the line named is the file's, not the record's.
    if fmt == "csv":
        text, read = "a,b,y\n1,2,0\n\n3,4e38,1\n5,-5e38,0\n", csvfile.read
    else:
        text, read = "# data\n0 1:1\n\n1 1:4e38\n0 2:-5e38\n", libsvm.read
    path = tmp_path / f"data.{fmt}"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}:4: 4e\+38 in the features is too large for "
                                         r"--dtype float32 \(at most 3\.4e\+38\)$"):
        read(str(path), self_comm(), "float32")
    assert read(str(path), self_comm(), "float64").n_global == 3  # float64 holds them


def test_an_unparsable_block_whose_line_cannot_be_found_names_no_line(tmp_path, monkeypatch):
    # Should the fast parse fail where no single line does, the error must not make up a line.
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,4,1\n")
    monkeypatch.setattr(csvfile, "parse_floats", lambda clean, expected: None)
    with pytest.raises(InputError) as caught:
        csvfile.read(str(path), self_comm(), "float64", "no", None)
    assert str(caught.value).startswith(f"{path}: ") and "a field is not a number" in str(caught.value)
    assert f"{path}:1" not in str(caught.value) and f"{path}:2" not in str(caught.value)


# Files whose lines, blanks and errors fall on piece boundaries when pieces are a few bytes: each
# kind of error after another kind in a later piece, a line longer than a piece, CRLF, a BOM, no
# final newline, blank and comment lines, a header only.
PIECE_CASES = [
    ("csv", b"a,b,y\r\n1,2,0\r\n\r\n \t\n3,4,1\r\n\n5,6e38,0"),
    ("csv", b"\xef\xbb\xbf1,2,0\n" + b"1." + b"0" * 90 + b"1,2,1\n  \n3,4,0\n"),
    ("csv", b"a,b,y\n1,nan,0\n" + b"1,2,0\n" * 4 + b"1,1e39,0\n1,x,0\n1,y,0\n"),
    ("csv", b"a,b,y\n1,1e39,0\n1,2,0\n2,3,-inf\n"),
    ("csv", b"a,b,y\n1,x,0\n1,2,0\n\n1,2\n"),
    ("csv", b"a,b,y\n\n \n"),
    ("libsvm", b"# c\n1 qid:1 1:1 3:2\n\n0 2:1 # t 9:9\r\n-1\n1 2:1 5:3"),
    ("libsvm", b"1 1:1e39\n" + b"0 1:1\n" * 4 + b"nan 2:1\n1 3:1 2:1\n1 1.5:1\n"),
    ("libsvm", b"1 3:1 2:1\n0 1:1\n-inf 1:1\n1 1:x\n0 1:1 0:1\n"),
    ("libsvm", b"1 1:1e39\n0 1:1\nnan 2:1\n1 3:1 2:1\n"),
    ("libsvm", b"1 1:inf\n0 1:1\n1 2:3\nnan 2:1\n1 2:inf\n"),
    ("libsvm", b"1 0:1 2:2\n\n" + b"0 " + b" ".join(b"%d:1" % i for i in range(1, 40)) + b"\n1\n"),
]


def test_text_readers_give_the_same_rows_and_errors_whatever_the_piece_size(tmp_path, monkeypatch):
    # The readers read and parse a rank's text in pieces cut at line ends: the rows, and the error
    # (the first of the most serious kind among the rank's lines), must not depend on where the cuts fall.
    from mpigd.data import textio

    def outcome(path, fmt, dtype):
        try:
            shard = (csvfile if fmt == "csv" else libsvm).read(str(path), self_comm(), dtype)
        except InputError as error:
            return str(error)
        X = (shard.X.indptr, shard.X.indices, shard.X.data) if shard.sparse else (shard.X,)
        return [(a.dtype.str, a.shape, a.tobytes()) for a in (*X, shard.y)] + [shard.n_global, shard.meta]

    reads = []
    real = textio.CountingFile.pread_into

    def pread_into(handle, offset, view):
        reads.append(len(view))
        return real(handle, offset, view)

    for case, (fmt, text) in enumerate(PIECE_CASES):
        path = tmp_path / f"{case}.{fmt}"
        path.write_bytes(text)
        longest = max(len(line) + 1 for line in text.split(b"\n"))
        for dtype in ("float64", "float32"):
            expected = outcome(path, fmt, dtype)
            for piece in (1, 7, 64):
                monkeypatch.setattr(textio, "PIECE_BYTES", piece)
                monkeypatch.setattr(textio.CountingFile, "pread_into", pread_into)
                reads.clear()
                assert outcome(path, fmt, dtype) == expected, (case, dtype, piece)
                # The file is read a piece at a time too, not only parsed so: no read is longer than
                # a piece, or than the line that needs the room.
                assert len(reads) > 1 or len(text) <= piece, (case, piece, reads)
                assert max(reads) <= max(piece, longest), (case, piece, reads)
                monkeypatch.undo()


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("big") / "big.csv")
    generate.write(generate.Spec(60_000, 9, "regression", 1, "csv", path), self_comm())
    return path


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_each_rank_reads_its_range_plus_one_line(big_csv, size):
    content = open(big_csv, "rb").read()
    assert len(content) >= 10_000_000
    blocks = []
    for rank in range(size):
        block, offset, stats = read_own_lines(big_csv, size, rank)
        lo, hi = stats["range_start"], stats["range_stop"]
        # Every line of the block starts inside this rank's range ...
        assert lo <= offset <= hi and content[offset:offset + len(block)] == block
        assert offset == 0 or content[offset - 1:offset] == b"\n"
        # ... and the reads touched the byte before the range, the range, and the line that
        # runs past its end (read in chunks of TAIL_CHUNK bytes), nothing more.
        line_end = content.find(b"\n", hi - 1) + 1 if hi < len(content) else hi
        assert stats["read_start"] >= max(lo - 1, 0)
        assert stats["read_stop"] <= max(hi, line_end) + TAIL_CHUNK
        assert stats["bytes_read"] <= (hi - lo) + 1 + (line_end - hi) + TAIL_CHUNK
        blocks.append(block)
    assert b"".join(blocks) == content  # the blocks tile the file in rank order


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_every_block_ends_with_a_newline_even_where_the_file_does_not(big_csv, tmp_path, size):
    content = open(big_csv, "rb").read()
    cut = tmp_path / "cut.csv"
    cut.write_bytes(content[:-1])
    blocks = [read_own_lines(str(cut), size, rank)[0] for rank in range(size)]
    assert all(block.endswith(b"\n") for block in blocks if block)
    assert b"".join(blocks) == content


# Short lines, empty lines, CRLF ends, a one-byte line: with every rank count up to the file's
# length, a range boundary falls on every byte, so on a line's first byte, on its newline, and
# inside it; some ranges hold no line start at all.
SHORT_LINES = b"1,2,0\n\n3.5,-4,1\r\n7\n\r\n+.5,1e-3,0\n-inf,2E+2,1\n9,9,9"


@pytest.mark.parametrize("content", [SHORT_LINES, SHORT_LINES + b"\n", b"x" * (3 * TAIL_CHUNK + 17) + b"\n1\n2\n"],
                         ids=["no-final-newline", "final-newline", "line-longer-than-a-tail-chunk"])
def test_every_line_goes_to_exactly_one_rank_wherever_the_boundaries_fall(tmp_path, content):
    # The rank whose range holds a line's first byte takes the whole line, once: a line starting
    # exactly at a range's first byte, a range ending just before a newline, and a range inside
    # one line (a rank with no line) each lost or duplicated a line when the rule was off by one.
    path = tmp_path / "lines.txt"
    path.write_bytes(content)
    whole = content if content.endswith(b"\n") else content + b"\n"
    starts = [0] + [i + 1 for i in range(len(content) - 1) if content[i:i + 1] == b"\n"]
    sizes = range(1, len(content) + 2) if len(content) < 200 else [*range(1, 9), len(content) // 3, len(content)]
    for size in sizes:
        blocks = []
        for rank in range(size):
            block, offset, stats = read_own_lines(str(path), size, rank)
            lo, hi = stats["range_start"], stats["range_stop"]
            own = [start for start in starts if lo <= start < hi]
            assert (block == b"") == (not own), (size, rank)
            if own:
                assert offset == own[0] and whole[offset:offset + len(block)] == block, (size, rank)
                assert block.count(b"\n") == len(own), (size, rank)
            blocks.append(block)
        assert b"".join(blocks) == whole, size


def test_text_numbers_read_as_python_float_reads_them(tmp_path):
    # Signs, a leading '+', '.5' and '5.', exponents of either case and sign, CRLF ends, blanks
    # around fields, and a last line without its newline: each value is float() of its token.
    # A blank CRLF line, and blanks before a CRLF end, are no values.
    tokens = [["+.5", "-0.0", "1e-3"], ["5.", "-2E+2", "3 "], ["  7 ", "1.5e300", "-.25e-1"],
              ["4.9e-324", "+1", "2.2250738585072014e-308"], ["123456789012345678", "0.1", "-1E2"]]
    lines = [",".join(row) for row in tokens]
    text = "\r\n".join(lines[:2] + [""] + lines[2:])  # no newline at the end
    path = tmp_path / "numbers.csv"
    path.write_text(text, newline="")
    shard = csvfile.read(str(path), self_comm(), "float64", "no", None)
    expected = np.array([[float(token) for token in row] for row in tokens])
    assert shard.n_global == len(tokens)
    np.testing.assert_array_equal(shard.X, expected[:, :2])
    np.testing.assert_array_equal(shard.y, expected[:, 2])
    svm = tmp_path / "numbers.svm"
    svm.write_text("\r\n".join(f"{row[2]} 1:{row[0].strip()} 4:{row[1]} " for row in tokens), newline="")
    sparse = libsvm.read(str(svm), self_comm(), "float64")
    assert sparse.meta["zero_based"] is False and sparse.X.shape == (len(tokens), 4)
    np.testing.assert_array_equal(sparse.X.toarray()[:, [0, 3]], expected[:, :2])
    np.testing.assert_array_equal(sparse.y, expected[:, 2])


def test_a_header_with_numeric_names_is_still_a_header(tmp_path):
    # pandas writes integer column names: "0,1,label" is a header (one name is not a number), and
    # its first data row is data.
    path = tmp_path / "data.csv"
    path.write_text("0,1,label\n5,6,1\n7,8,0\n")
    shard = csvfile.read(str(path), self_comm(), "float64", "auto", None)
    assert shard.meta["header"] is True and shard.n_global == 2
    assert shard.X.tolist() == [[5, 6], [7, 8]] and shard.y.tolist() == [1, 0]


@pytest.mark.parametrize("first, gaps", [("1,,0", "''"), ("NA,2,0", "'NA'"), (",0,1", "''"), ("?,2,n/a", "'?', 'n/a'")])
def test_a_first_line_whose_only_non_numbers_are_gaps_needs_header_set(tmp_path, first, gaps):
    # With --header auto, "1,,0" (a first row with a missing value) was taken for a header and the row
    # dropped without a word, while the same gap on any other line is an error.
    path = tmp_path / "data.csv"
    path.write_text(first + "\n5,6,1\n7,8,0\n")
    with pytest.raises(InputError, match=re.escape(f"{path}:1: cannot tell whether the first line is a header: "
                                                   f"its fields are numbers but for {gaps}; set `header` to yes or no")):
        csvfile.read(str(path), self_comm(), "float64", "auto", None)
    assert csvfile.read(str(path), self_comm(), "float64", "yes", None).n_global == 2
    if first == ",0,1":  # pandas' header over an index column
        with pytest.raises(InputError, match=":1: malformed line: empty field"):
            csvfile.read(str(path), self_comm(), "float64", "no", None)


def test_gen_writes_one_based_libsvm_that_scikit_learn_reads_as_the_synthetic_rows(tmp_path):
    # LIBSVM indices count from 1 (libsvm's own tools, scikit-learn's default): a zero-based file
    # would read back the same here (detected) but shifted by one column everywhere else.
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    path = str(tmp_path / "g.libsvm")
    generate.write(generate.Spec(200, 5, "classification", 7, "libsvm", path, 0.5), self_comm())
    X, y = synthetic.generate("classification", 5, 7, 0, 200, "float64", 0.5)
    X_ref, y_ref = sklearn_datasets.load_svmlight_file(path, n_features=5, zero_based=False)
    np.testing.assert_array_equal(X_ref.toarray(), X)
    np.testing.assert_array_equal(y_ref, y)


def test_standardize_is_exact_for_a_large_mean():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 3)) + np.array([1e9, 0.0, 5.0])
    X[:, 2] = 5.0  # constant feature: centred, not scaled
    shard = Shard(X.copy(), np.zeros(1000), 1000, 0, "memory")
    scaler = standardize.fit(shard, self_comm())
    np.testing.assert_allclose(scaler.mean, X.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(scaler.scale[:2], X[:, :2].std(axis=0), rtol=1e-9)
    assert scaler.scale[2] == 1.0
    scaler.apply(shard.X)
    np.testing.assert_allclose(shard.X.std(axis=0)[:2], 1.0, rtol=1e-9)


def test_standardize_takes_values_near_float64s_largest_and_inexact_constants():
    X = np.column_stack([np.linspace(-1e300, 1e300, 7), np.full(7, 0.1), np.arange(7.0) * 1e200])
    shard = Shard(X.copy(), np.zeros(7), 7, 0, "memory")
    scaler = standardize.fit(shard, self_comm())
    assert np.all(np.isfinite(scaler.scale)) and np.all(np.isfinite(scaler.mean))
    np.testing.assert_allclose(scaler.scale[[0, 2]], (X[:, [0, 2]] / 1e200).std(axis=0) * 1e200, rtol=1e-13)
    assert scaler.scale[1] == 1.0  # 0.1 seven times: constant, though its summed mean is not exactly 0.1
    scaler.apply(shard.X)
    np.testing.assert_allclose(shard.X[:, [0, 2]].std(axis=0), 1.0, rtol=1e-13)
    assert np.all(np.abs(shard.X[:, 1]) < 1e-15)


def test_standardize_covers_every_row_beyond_the_first_chunk():
    # Statistics and scaling go chunk by chunk (CHUNK_ROWS rows): every chunk counts, the last,
    # partial one too, and every row comes out standardized.
    rows = 2 * standardize.CHUNK_ROWS + 5
    X = np.column_stack([np.arange(rows, dtype=np.float64), np.where(np.arange(rows) < 3, 1e3, 1.0)])
    shard = Shard(X.copy(), np.zeros(rows), rows, 0, "memory")
    scaler = standardize.fit(shard, self_comm())
    np.testing.assert_allclose(scaler.mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale, X.std(axis=0), rtol=1e-9)
    scaler.apply(shard.X)
    np.testing.assert_allclose(shard.X, (X - X.mean(axis=0)) / X.std(axis=0), rtol=1e-9, atol=1e-12)


def test_generated_sparse_rows_are_the_synthetic_rows(tmp_path):
    path = str(tmp_path / "s.libsvm")
    generate.write(generate.Spec(300, 6, "regression", 4, "libsvm", path, 0.3), self_comm())
    X, y = synthetic.generate("regression", 6, 4, 0, 300, "float64", 0.3)
    shard = load_shard(Config(data=path, model="linear"), self_comm())
    np.testing.assert_array_equal(shard.X.toarray(), X)
    np.testing.assert_array_equal(shard.y, y)
    assert 0.2 < np.count_nonzero(X) / X.size < 0.4


@pytest.mark.parametrize("changes", [{"format": "parquet"}, {"header": "maybe"}, {"test_data": "synthetic"},
                                     {"labels": "y.npy"}, {"label_column": 1.5},
                                     {"holdout": 0.2, "test_data": "test.npz"}])
def test_config_rejects_bad_data_options(changes):
    with pytest.raises(UsageError):
        Config(**changes)


def test_gen_spec_is_validated():
    for density in (1.0, -0.1):  # as train: [0, 1), 0 dense
        with pytest.raises(UsageError):
            generate.Spec(10, 2, "classification", 0, "csv", "x.csv", density=density)


@pytest.mark.parametrize("fmt", ["npy", "npz", "csr-npz", "hdf5"])
def test_each_rank_of_an_array_format_reads_the_rows_at_its_own_offset(tmp_path, fmt):
    # Rank r of p reads rows block_range(n, p, r), and says so in row_start: predict writes its
    # rows there and the held-out split hashes those indices, so a block read from another
    # rank's offset (still the same rows overall) misplaced predictions and changed the split.
    from mpigd.data import _read_array
    from mpigd.partition import block_range

    rows = 23
    dense, y = synthetic.generate("regression", 4, 9, 0, rows, "float64", 0.5)
    labels = None
    if fmt == "npy":
        path = str(tmp_path / "X.npy")
        np.save(path, dense)
        np.save(tmp_path / "y.npy", y)
        labels = str(tmp_path / "y.npy")
    elif fmt == "npz":
        path = str(tmp_path / "d.npz")
        np.savez(path, X=dense, y=y)
    elif fmt == "csr-npz":
        path = str(tmp_path / "c.npz")
        X = CSRMatrix.from_dense(dense)
        np.savez(path, indptr=X.indptr, indices=X.indices, data=X.data, shape=np.array(X.shape), y=y)
    else:
        h5py = pytest.importorskip("h5py")
        path = str(tmp_path / "d.h5")
        with h5py.File(path, "w") as handle:
            handle["X"], handle["y"] = dense, y
    config = Config(data=path, labels=labels, model="linear")
    for size in (1, 2, 3, 5):
        for rank in range(size):
            shard = _read_array(fmt.removeprefix("csr-"), path, labels, config, size, rank)
            start, stop = block_range(rows, size, rank)
            got = shard.X.toarray() if shard.sparse else shard.X
            assert (shard.row_start, shard.n_local, shard.n_global) == (start, stop - start, rows), (size, rank)
            assert np.array_equal(got, dense[start:stop]) and np.array_equal(shard.y, y[start:stop]), (size, rank)
