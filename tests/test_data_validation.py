"""Bad input: one clear line from rank 0, exit code 2, no hang, and no output directory."""

from __future__ import annotations

import os

import numpy as np
import pytest

from data_helpers import TIMEOUT
from mpirun import run_mpi

ROWS, BAD = 40, 35  # the bad line is near the end, in the last rank's byte range


def _csv(lines: dict[int, str] | None = None, labels=(0, 1)) -> str:
    """A CSV file with a header; ``lines`` replaces file lines (1-based, counting the header)."""
    rng = np.random.default_rng(0)
    rows = ["a,b,c,label"] + [
        f"{rng.standard_normal():.6f},{rng.standard_normal():.6f},{rng.standard_normal():.6f},{labels[i % len(labels)]}"
        for i in range(ROWS)]
    for number, text in (lines or {}).items():
        rows[number - 1] = text
    return "\n".join(rows) + "\n"


def _libsvm(lines: dict[int, str] | None = None) -> str:
    rows = [f"{i % 2} 1:{i * 0.1:.2f} 3:{1 - i * 0.01:.2f}  # row {i}" for i in range(ROWS)]
    for number, text in (lines or {}).items():
        rows[number - 1] = text
    return "\n".join(rows) + "\n"


CASES = {
    "missing file": ({}, ["--data", "{dir}/absent.csv"], "absent.csv: no such data file"),
    "missing npy pair": ({"npy/.keep": ""}, ["--data", "{dir}/npy"], "npy/X.npy: no such data file"),
    "unknown format": ({"data.parquet": "x"}, ["--data", "{dir}/data.parquet"], "cannot tell the format"),
    "empty csv": ({"data.csv": ""}, ["--data", "{dir}/data.csv"], "data.csv: the file is empty"),
    "csv carriage returns alone": ({"data.csv": _csv().replace("\n", "\r")}, ["--data", "{dir}/data.csv"],
                                   "data.csv: lines end in a carriage return alone (classic Mac OS)"),
    "npy X of one dimension": ({"npy/X.npy": "1-d", "npy/y.npy": "1-d"}, ["--data", "{dir}/npy"],
                               "X must be 2-D, a row a sample; got shape (20,)"),
    "csv field count": ({"data.csv": _csv({BAD: "1.0,2.0,1"})}, ["--data", "{dir}/data.csv"],
                        f"data.csv:{BAD}: malformed line: wrong number of fields: expected 4, found 3"),
    "csv not a number": ({"data.csv": _csv({BAD: "1.0,2.0x,3.0,1"})}, ["--data", "{dir}/data.csv"],
                         f"data.csv:{BAD}: malformed line: a field is not a number"),
    "csv empty field": ({"data.csv": _csv({BAD: "1.0,,3.0,1"})}, ["--data", "{dir}/data.csv"],
                        f"data.csv:{BAD}: malformed line: empty field"),
    "csv NaN feature": ({"data.csv": _csv({BAD: "1.0,nan,3.0,1"})}, ["--data", "{dir}/data.csv"],
                        f"data.csv:{BAD}: NaN or Inf in the features"),
    "csv Inf label": ({"data.csv": _csv({BAD: "1.0,2.0,3.0,inf"})}, ["--data", "{dir}/data.csv"],
                      f"data.csv:{BAD}: NaN or Inf in the label"),
    "csv label name": ({"data.csv": _csv()}, ["--data", "{dir}/data.csv", "--label-column", "target"],
                       "no column named 'target' in the header (a, b, c, label)"),
    "libsvm token": ({"data.svm": _libsvm({BAD: "1 2 3:4"})}, ["--data", "{dir}/data.svm"],
                     f"data.svm:{BAD}: malformed line: a feature must be written index:value"),
    "libsvm value": ({"data.svm": _libsvm({BAD: "1 2:x"})}, ["--data", "{dir}/data.svm"],
                     f"data.svm:{BAD}: malformed line: a label, index or value is not a number"),
    # float() takes "1_0" but the block parser does not: the line finder used to miss it (":1").
    "csv token only float() reads": ({"data.csv": _csv({BAD: "1.0,1_0,3.0,1"})}, ["--data", "{dir}/data.csv"],
                                     f"data.csv:{BAD}: malformed line: a field is not a number"),
    "libsvm token only float() reads": ({"data.svm": _libsvm({BAD: "1 2:1_0 4:3"})}, ["--data", "{dir}/data.svm"],
                                        f"data.svm:{BAD}: malformed line: a label, index or value is not a number"),
    "libsvm order": ({"data.svm": _libsvm({BAD: "1 3:1 2:1"})}, ["--data", "{dir}/data.svm"],
                     f"data.svm:{BAD}: malformed line: feature indices must be strictly increasing"),
    "libsvm index": ({"data.svm": _libsvm({BAD: "1 1.5:1"})}, ["--data", "{dir}/data.svm"],
                     f"data.svm:{BAD}: malformed line: a feature index is not a non-negative integer"),
    "libsvm NaN": ({"data.svm": _libsvm({BAD: "1 2:nan"})}, ["--data", "{dir}/data.svm"],
                   f"data.svm:{BAD}: NaN or Inf in the features"),
    "npz NaN": ({"data.npz": "nan-npz"}, ["--data", "{dir}/data.npz"], "NaN or Inf in the features (first at row 7)"),
    "csv beyond float32": ({"data.csv": _csv({BAD: "1.0,1e300,3.0,1"})}, ["--data", "{dir}/data.csv", "--dtype", "float32"],
                           f"data.csv:{BAD}: 1e+300 in the features is too large for --dtype float32 (at most 3.4e+38)"),
    "csv label beyond float32": ({"data.csv": _csv({BAD: "1.0,2.0,3.0,-4e38"})},
                                 ["--data", "{dir}/data.csv", "--dtype", "float32", "--model", "linear"],
                                 f"data.csv:{BAD}: -4e+38 in the label is too large for --dtype float32 (at most 3.4e+38)"),
    "libsvm beyond float32": ({"data.svm": _libsvm({BAD: "1 2:3.5e38"})}, ["--data", "{dir}/data.svm", "--dtype", "float32"],
                              f"data.svm:{BAD}: 3.5e+38 in the features is too large for --dtype float32 (at most 3.4e+38)"),
    "libsvm label beyond float32": ({"data.svm": _libsvm({BAD: "-3.5e38 1:1"})},
                                    ["--data", "{dir}/data.svm", "--dtype", "float32", "--model", "linear"],
                                    f"data.svm:{BAD}: -3.5e+38 in the label is too large for --dtype float32 "
                                    "(at most 3.4e+38)"),
    "npz beyond float32": ({"data.npz": "big-npz"}, ["--data", "{dir}/data.npz", "--dtype", "float32"],
                           "NaN or Inf in the features (first at row 7; float32 holds at most 3.4e+38)"),
    "three classes": ({"data.csv": _csv(labels=(0, 1, 2))}, ["--data", "{dir}/data.csv"],
                      "logistic regression needs two labels (0 and 1, or two other integers such as -1 and +1); found label 2"),
    "test feature count": ({"data.csv": _csv(), "test.csv": "1,2,3,4,1\n5,6,7,8,0\n"},
                           ["--data", "{dir}/data.csv", "--test-data", "{dir}/test.csv"],
                           "test.csv: has 4 features, but the training data has 3"),
    "test libsvm wider": ({"data.svm": _libsvm(), "test.svm": "1 7:1\n"},
                          ["--data", "{dir}/data.svm", "--test-data", "{dir}/test.svm"],
                          "test.svm: has 7 features, but the training data has 3"),
}


@pytest.mark.parametrize("ranks", [3])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_cleanly(tmp_path, case, ranks):
    files, args, message = CASES[case]
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        if text in ("nan-npz", "big-npz"):
            X = np.ones((20, 3))
            X[7, 1] = np.nan if text == "nan-npz" else -1e300
            np.savez(tmp_path / name, X=X, y=np.zeros(20))
        elif text == "1-d":
            np.save(tmp_path / name, np.arange(20.0))
        else:
            (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    argv = ["-m", "mpigd", "train", "--epochs", "2", "--out", str(out)] + [a.format(dir=tmp_path) for a in args]
    done = run_mpi(ranks, argv, timeout=TIMEOUT)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # printed once, by rank 0
    assert lines[0].startswith("mpigd: error: ")
    assert message in lines[0]
    assert not os.path.exists(out)


@pytest.mark.parametrize("ranks", [1, 2, 4])
@pytest.mark.parametrize("fmt", ["csv", "libsvm"])
def test_a_token_only_float_reads_is_reported_at_its_own_line(tmp_path, fmt, ranks):
    # The slow line finder asked float(), which takes "1_0", so it found no bad line, and the
    # error named the first line of the failing rank's block (":2" on one rank) instead.
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 5)), np.arange(200) % 2
    if fmt == "csv":
        lines = ["x0,x1,x2,x3,x4,y"] + [",".join(f"{v:.6f}" for v in row) + f",{label}" for row, label in zip(X, y)]
        lines[190] = "1,2,1_0,4,5,0"
    else:
        lines = [f"{label} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row)) for row, label in zip(X, y)]
        lines[190] = "1 2:1_0 4:3"
    path = tmp_path / f"data.{fmt}"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    done = run_mpi(ranks, ["-m", "mpigd", "train", "--epochs", "2", "--data", str(path), "--out", str(out)],
                   timeout=TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"mpigd: error: {path}:191: malformed line: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()
