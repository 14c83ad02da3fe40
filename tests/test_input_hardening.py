"""Damaged arrays, unusable saved models and dangerous --output paths: one clear line from rank 0,
exit code 2, no traceback, no hang, and nothing written (least of all over an input)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_helpers import TIMEOUT
from mpirun import mpigd, refused_in_one_line

from mpigd.comm import self_comm
from mpigd.errors import InputError, UsageError
from mpigd.predict import evaluate_file, load_model, predict

RANKS = 2


def _damage_header(path: Path, member: str | None = None) -> None:
    """Overwrite bytes 10-20 of an array's header, the start of its dict (of ``member`` in a .npz)."""
    raw = bytearray(path.read_bytes())
    start = raw.index(b"\x93NUMPY", raw.index(member.encode()) if member else 0)
    raw[start + 10:start + 20] = b"x" * 10
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A CSV data set, a .npy pair and a model trained with --standardize (so it saves a scaler)."""
    root = tmp_path_factory.mktemp("hardening")
    for fmt, name in (("csv", "d.csv"), ("npy", "dnpy")):
        done = mpigd(1, "gen", "--format", fmt, "--rows", "60", "--features", "3", "--output", str(root / name),
                     "--quiet", timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
    done = mpigd(1, "train", "--data", str(root / "d.csv"), "--epochs", "2", "--standardize", "--quiet",
                 "--out", str(root / "model"), timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    return root


def _model_copy(work: Path, target: Path, change=None) -> Path:
    """A copy of the trained model in ``target``, its params.npz arrays passed through ``change``."""
    target.mkdir()
    shutil.copy(work / "model" / "model.json", target)
    arrays = dict(np.load(work / "model" / "params.npz"))
    if change:
        change(arrays)
    np.savez(target / "params.npz", **arrays)
    return target / "params.npz"


# --- damaged or unusable training data --------------------------------------------------------

@pytest.mark.parametrize("fmt", ["npy", "npz"])
def test_a_damaged_array_header_is_one_line(tmp_path, fmt):
    X, y = np.random.default_rng(0).standard_normal((30, 3)), np.arange(30) % 2
    if fmt == "npy":
        (tmp_path / "data").mkdir()
        np.save(tmp_path / "data" / "X.npy", X)
        np.save(tmp_path / "data" / "y.npy", y)
        _damage_header(tmp_path / "data" / "X.npy")
        data, message = tmp_path / "data", "X.npy: cannot read as .npy ("
    else:
        np.savez(tmp_path / "data.npz", X=X, y=y)
        _damage_header(tmp_path / "data.npz", "X.npy")
        data, message = tmp_path / "data.npz", "data.npz: cannot read as .npz ("
    out = tmp_path / "out"
    refused_in_one_line(mpigd(RANKS, "train", "--data", str(data), "--epochs", "2", "--out", str(out), timeout=TIMEOUT),
                   message)
    assert not out.exists()


@pytest.mark.parametrize("which", ["X", "y"])
def test_complex_values_are_refused(tmp_path, which):
    rng = np.random.default_rng(0)
    arrays = {"X": rng.standard_normal((30, 3)), "y": (np.arange(30) % 2).astype(np.float64)}
    arrays[which] = arrays[which] + 1j  # the imaginary part used to be dropped with a ComplexWarning
    np.savez(tmp_path / "data.npz", **arrays)
    out = tmp_path / "out"
    done = mpigd(RANKS, "train", "--data", str(tmp_path / "data.npz"), "--epochs", "2", "--out", str(out),
                 timeout=TIMEOUT)
    refused_in_one_line(done, "X and y must hold real numbers (integer or floating point)")
    assert "complex128" in done.stderr and not out.exists()



def _csr_npz(path: Path, **changes) -> None:
    """A valid 200 x 5 CSR .npz (scipy's arrays plus y), with the arrays in ``changes`` replaced."""
    sparse = pytest.importorskip("scipy.sparse")
    X = np.random.default_rng(0).standard_normal((200, 5))
    X[X < 0.3] = 0
    matrix = sparse.csr_matrix(X)
    arrays = {"indptr": matrix.indptr, "indices": matrix.indices, "data": matrix.data, "shape": matrix.shape,
              "y": (np.arange(200) % 2).astype(np.float64)}
    arrays.update({name: change(arrays[name]) for name, change in changes.items()})
    np.savez(path, **arrays)


CSR_DAMAGE = {
    # data shorter than indices: the kernel read past its end (NaN "divergence", exit 3)
    "short data": ({"data": lambda a: a[:-5]}, "'data' and 'indices' must each hold indptr[-1] = "),
    "short indices": ({"indices": lambda a: a[:-5]}, "'data' and 'indices' must each hold indptr[-1] = "),
    "scalar shape": ({"shape": lambda a: np.array(5)}, "'shape' must be two non-negative integers"),  # TypeError
    "float shape": ({"shape": lambda a: np.array([200.0, 5.5])}, "'shape' must be two non-negative integers"),
    "negative shape": ({"shape": lambda a: np.array([200, -5])}, "'shape' must be two non-negative integers"),
    "float indices": ({"indices": lambda a: a.astype(np.float64)}, "'indices' must hold integers; got float64"),
    "bool indices": ({"indices": lambda a: a > 1}, "'indices' must hold integers; got bool"),
    "float indptr": ({"indptr": lambda a: a + 0.5}, "'indptr' must hold integers; got float64"),
}


@pytest.mark.parametrize("case", list(CSR_DAMAGE))
def test_an_inconsistent_csr_npz_is_refused(tmp_path, case):
    changes, message = CSR_DAMAGE[case]
    _csr_npz(tmp_path / "data.npz", **changes)
    out = tmp_path / "out"
    done = mpigd(RANKS, "train", "--data", str(tmp_path / "data.npz"), "--epochs", "2", "--out", str(out),
                 timeout=TIMEOUT)
    refused_in_one_line(done, f"data.npz: {message}")
    assert not out.exists()


def test_a_sound_csr_npz_still_trains(tmp_path):
    _csr_npz(tmp_path / "data.npz")
    done = mpigd(RANKS, "train", "--data", str(tmp_path / "data.npz"), "--epochs", "2", "--quiet",
                 "--out", str(tmp_path / "out"), timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


def _edit_rows_in_header(path: Path, rows: int) -> None:
    """Make every array header in ``path`` claim ``rows`` rows instead of the 200 stored (same length)."""
    raw = path.read_bytes()
    raw = raw.replace(b"'shape': (200, 5)", f"'shape': ({rows}, 5)".encode()).replace(b"(200,)", f"({rows},)".encode())
    path.write_bytes(raw)


@pytest.mark.parametrize("rows", [220, 180], ids=["more", "fewer"])
@pytest.mark.parametrize("fmt", ["npz", "npy"])
def test_an_array_header_that_disagrees_with_the_stored_bytes_is_refused(tmp_path, fmt, rows):
    # With 220 rows the .npz reader used to map the zip directory as the last 20 rows (exit 0).
    X = np.random.default_rng(0).integers(-3, 3, (200, 5)).astype(np.int8)
    y = (np.arange(200) % 2).astype(np.int8)
    if fmt == "npz":
        data = tmp_path / "data.npz"
        np.savez(data, X=X, y=y)
        _edit_rows_in_header(data, rows)
    else:
        data = tmp_path / "data"
        data.mkdir()
        np.save(data / "X.npy", X)
        np.save(data / "y.npy", y)
        _edit_rows_in_header(data / "X.npy", rows)
        _edit_rows_in_header(data / "y.npy", rows)
    out = tmp_path / "out"
    done = mpigd(RANKS, "train", "--data", str(data), "--epochs", "2", "--out", str(out), timeout=TIMEOUT)
    refused_in_one_line(done, "truncated or corrupt")
    assert not out.exists()


def _hdf5_with_a_corrupt_chunk(path: Path, chunk: int) -> None:
    """A 200 x 5 gzip-compressed HDF5 data set (chunks of 10 rows) whose X chunk ``chunk`` is garbage."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as handle:
        X = handle.create_dataset("X", data=rng.standard_normal((200, 5)), compression="gzip", chunks=(10, 5))
        handle.create_dataset("y", data=(np.arange(200) % 2).astype(np.float64))
        info = X.id.get_chunk_info(chunk)
    raw = bytearray(path.read_bytes())
    raw[info.byte_offset:info.byte_offset + info.size] = b"\xff" * info.size
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_a_corrupt_hdf5_chunk_is_one_line_on_every_rank_count(tmp_path, ranks):
    # Rows 190-199: on 2 and 3 ranks only the last rank reads the bad chunk; the others must stop too.
    _hdf5_with_a_corrupt_chunk(tmp_path / "data.h5", chunk=19)
    out = tmp_path / "out"
    done = mpigd(ranks, "train", "--data", str(tmp_path / "data.h5"), "--epochs", "2", "--out", str(out),
                 timeout=TIMEOUT)
    refused_in_one_line(done, "data.h5: cannot read dataset 'X'")
    assert not out.exists()


@pytest.mark.mpi
def test_a_corrupt_hdf5_chunk_stops_every_rank_in_process(mpi_tmp_path):
    from mpigd import Config
    from mpigd.comm import world
    from mpigd.data import load_shard

    comm = world()
    path = Path(mpi_tmp_path) / "data.h5"
    if comm.rank == 0:
        _hdf5_with_a_corrupt_chunk(path, chunk=19)
    comm.barrier()
    with pytest.raises(InputError, match="cannot read dataset 'X'"):
        load_shard(Config(data=str(path), model="logistic"), comm)

# --- saved models that cannot be used ---------------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_truncated_params_file_cannot_be_loaded(work, tmp_path, command):
    (tmp_path / "bad").mkdir()
    shutil.copy(work / "model" / "model.json", tmp_path / "bad")
    (tmp_path / "bad" / "params.npz").write_bytes((work / "model" / "params.npz").read_bytes()[:300])
    output = ["--output", str(tmp_path / "x.npy")] if command == "predict" else []
    done = mpigd(RANKS, command, "--params", str(tmp_path / "bad" / "params.npz"), "--data", str(work / "d.csv"),
                 *output, timeout=TIMEOUT)
    refused_in_one_line(done, "params.npz: cannot load the model (")
    assert not (tmp_path / "x.npy").exists()


def test_a_run_directory_for_params_is_refused_with_its_params_file_named(work):
    # It said "cannot load the model (no such file)" of a directory that was there.
    with pytest.raises(InputError, match="a directory; give the params.npz in it: ") as caught:
        load_model(str(work / "model"))
    assert str(caught.value).endswith(str(work / "model" / "params.npz") + ")")


def test_a_csv_of_another_width_names_the_column_taken_for_labels(work, tmp_path):
    # A file of 2 feature columns for a model of 3 said "1 features, but the model expects 3": the
    # last column had been taken for the labels, which the message did not say.
    from mpigd.config import Config

    np.savetxt(tmp_path / "narrow.csv", np.ones((5, 2)), delimiter=",")
    params = str(work / "model" / "params.npz")
    with pytest.raises(InputError, match=r"narrow.csv: 1 features \(and column 1 as the labels\), but the model "
                                         "expects 3"):
        predict(Config(data=str(tmp_path / "narrow.csv")), params, str(tmp_path / "p.npy"), self_comm())
    np.save(tmp_path / "narrow.npy", np.ones((5, 2)))  # no column is taken for labels here
    with pytest.raises(InputError, match="narrow.npy: 2 features, but the model expects 3$"):
        predict(Config(data=str(tmp_path / "narrow.npy")), params, str(tmp_path / "p.npy"), self_comm())


UNUSABLE = {
    "NaN coefficient": (lambda a: a["coef"].__setitem__(0, np.nan), "the parameters contain NaN or inf"),
    "inf intercept": (lambda a: a["intercept"].__setitem__(0, np.inf), "the parameters contain NaN or inf"),
    "zero scale": (lambda a: a["scaler_scale"].__setitem__(1, 0.0), "scaler scales must be finite and positive"),
    "negative scale": (lambda a: a["scaler_scale"].__setitem__(1, -2.0), "scaler scales must be finite and positive"),
    "NaN scale": (lambda a: a["scaler_scale"].__setitem__(0, np.nan), "scaler scales must be finite and positive"),
    "complex coefficients": (lambda a: a.__setitem__("coef", a["coef"] + 1j), "coef holds complex128, not real numbers"),
    "subnormal scale": (lambda a: a["scaler_scale"].__setitem__(0, 1e-320), "scaler scales must be finite and positive"),
    "inf mean": (lambda a: a["scaler_mean"].__setitem__(2, -np.inf), "scaler means contain NaN or inf"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_saved_parameters_are_refused_in_process(work, tmp_path, case):
    change, message = UNUSABLE[case]
    params = _model_copy(work, tmp_path / "bad", change)
    with pytest.raises(InputError, match="cannot load the model") as caught:
        load_model(str(params))
    assert message in str(caught.value)


@pytest.mark.parametrize("case", ["NaN coefficient", "zero scale"])
def test_unusable_saved_parameters_stop_predict_on_every_rank(work, tmp_path, case):
    change, message = UNUSABLE[case]
    params = _model_copy(work, tmp_path / "bad", change)
    output = tmp_path / "x.npy"
    done = mpigd(RANKS, "predict", "--params", str(params), "--data", str(work / "d.csv"), "--output", str(output),
                 timeout=TIMEOUT)
    refused_in_one_line(done, message)
    assert "Warning" not in done.stderr and not output.exists()


def test_a_sound_model_still_predicts(work, tmp_path):
    output = tmp_path / "new" / "dir" / "x.npy"  # missing directories are made, as before
    done = mpigd(RANKS, "predict", "--params", str(work / "model" / "params.npz"), "--data", str(work / "d.csv"),
                 "--output", str(output), timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert np.load(output).shape == (60,)
    assert os.listdir(output.parent) == ["x.npy"]  # the temporary file was renamed, not left


def test_predictions_that_cannot_be_written_leave_no_file(work, tmp_path, monkeypatch):
    """Written under a temporary name and renamed once whole: a full disk (or a killed job) part-way
    used to leave a valid-looking .npy at full size, its missing rows zero."""
    import mpigd.predict
    from mpigd import Config
    from mpigd.errors import MpigdError

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mpigd.predict, "_write_rows", full_disk)
    output = tmp_path / "out" / "x.npy"
    with pytest.raises(MpigdError, match="cannot write the predictions: No space left on device"):
        predict(Config(data=str(work / "d.csv")), str(work / "model" / "params.npz"), str(output), self_comm())
    assert os.listdir(output.parent) == []


# --- --output paths ---------------------------------------------------------------------------

def _output_cases(work: Path, tmp_path: Path) -> dict[str, tuple[str, str, str]]:
    """name: (data, --output, expected message)."""
    csv, params = str(work / "d.csv"), str(work / "model" / "params.npz")
    (tmp_path / "link.csv").symlink_to(work / "d.csv")
    (tmp_path / "a_directory").mkdir()
    return {
        "the data file": (csv, csv, "writing it would destroy the input"),
        "a link to the data file": (csv, str(tmp_path / "link.csv"), "writing it would destroy the input"),
        "the params file": (csv, params, "writing it would destroy the input"),
        "the data file by another path": (csv, str(work / "model" / ".." / "d.csv"), "would destroy the input"),
        "a file of the npy directory": (str(work / "dnpy"), str(work / "dnpy" / "y.npy"), "would destroy the input"),
        "an existing directory": (csv, str(tmp_path / "a_directory"), "a_directory: is a directory"),
        "a path under a regular file": (csv, os.path.join(csv, "x.npy"), "d.csv is not a directory"),
    }


CASE_NAMES = ["the data file", "a link to the data file", "the params file", "the data file by another path",
              "a file of the npy directory", "an existing directory", "a path under a regular file"]


def _snapshot(work: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(work.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("case", CASE_NAMES)
def test_predict_refuses_a_bad_output_and_writes_nothing(work, tmp_path, case):
    data, output, message = _output_cases(work, tmp_path)[case]
    before = _snapshot(work)
    done = mpigd(RANKS, "predict", "--params", str(work / "model" / "params.npz"), "--data", data,
                 "--output", output, timeout=TIMEOUT)
    refused_in_one_line(done, message)
    assert _snapshot(work) == before  # no input overwritten, nothing new beside them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_directory", "link.csv"]
    assert not any((tmp_path / "a_directory").iterdir())


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_output_is_refused_in_process_before_any_work(work, tmp_path, case, command):
    # In-process, so that the check in mpigd.predict is what refuses it, not one in the command line.
    from mpigd.config import Config

    data, output, message = _output_cases(work, tmp_path)[case]
    params = str(work / "model" / "params.npz")
    before = _snapshot(work)
    with pytest.raises(UsageError, match=message):
        if command == "predict":
            predict(Config(data=data), params, output, self_comm())
        else:
            evaluate_file(Config(data=data), params, self_comm(), output=output)
    assert _snapshot(work) == before
