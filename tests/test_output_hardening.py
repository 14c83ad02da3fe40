"""Unusable output paths, hand-edited or non-finite checkpoints, non-finite plan parameters and
data sets that cannot be written: one line from rank 0, exit code 2, nothing half-written; a report
that cannot be written to the end (a full disk) is one line too, exit code 1, and leaves nothing."""

import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpigd import Config, train
from mpigd.bench.plan import Projection
from mpigd.cli.common import check_output_paths
from mpigd.comm import self_comm
from mpigd.comm.costmodel import CostModel
from mpigd.data import generate
from mpigd.errors import CheckpointError, InputError, UsageError
from mpirun import ROOT, mpigd, refused_in_one_line, run_mpi, start_mpi

PLAN = ("plan", "--nodes", "4", "--rows", "1000", "--features", "10", "--compute-rate", "1e6")


def _serial(*args: str, preexec_fn=None, **environment: str) -> subprocess.CompletedProcess:
    """``python -m mpigd ARGS`` in one process, without mpiexec (plan and the serial benchmarks), with
    ``environment`` added to ours and ``preexec_fn`` run in the child before it starts."""
    return subprocess.run([sys.executable, "-m", "mpigd", *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, preexec_fn=preexec_fn,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", **environment))


@pytest.fixture
def places(tmp_path):
    """An existing directory and an existing file, in an otherwise empty directory."""
    (tmp_path / "a_dir").mkdir()
    (tmp_path / "a_file").write_text("keep me\n")
    return tmp_path


# -- output paths ------------------------------------------------------------------------------------


def test_output_path_check_accepts_new_nested_paths_and_refuses_unusable_ones(places):
    check_output_paths({"--json": str(places / "new" / "deeper" / "r.json")},
                       {"--out": str(places / "a_dir"), "--checkpoint-dir": str(places / "x" / "y")})
    check_output_paths({"--json": None}, {"--out": None})
    for files, directories, words in (
            ({"--json": ""}, {}, "empty"),
            ({}, {"--out": ""}, "empty"),
            ({"--json": str(places / "a_dir")}, {}, "is a directory"),
            ({"--json": str(places / "new_dir") + "/"}, {}, "ends in '/', which names a directory"),
            ({"--json": str(places / "a_file" / "r.json")}, {}, "is not a directory"),
            ({"--json": str(places / "a_file" / "more" / "r.json")}, {}, "is not a directory"),
            ({}, {"--out": str(places / "a_file")}, "exists and is not a directory"),
            ({}, {"--out": str(places / "a_file" / "sub")}, "is not a directory")):
        with pytest.raises(UsageError, match=words):
            check_output_paths(files, directories)
    assert sorted(os.listdir(places)) == ["a_dir", "a_file"]  # checking creates nothing


@pytest.mark.parametrize("option", ["--json", "--csv", "--plot"])
def test_plan_refuses_an_unusable_output_before_projecting(places, option):
    refused_in_one_line(_serial(*PLAN, option, str(places / "a_dir")), "is a directory")
    refused_in_one_line(_serial(*PLAN, option, str(places / "a_file" / "p.out")), "is not a directory")
    assert sorted(os.listdir(places)) == ["a_dir", "a_file"]


def test_plan_creates_the_missing_directories_of_its_outputs(tmp_path):
    job = _serial(*PLAN, "--json", str(tmp_path / "a" / "p.json"), "--csv", str(tmp_path / "b" / "c" / "p.csv"))
    assert job.returncode == 0, job.stderr
    assert json.loads((tmp_path / "a" / "p.json").read_text())["kind"] == "model"
    assert (tmp_path / "b" / "c" / "p.csv").is_file()


@pytest.mark.parametrize("command", [("bench", "kernel", "--rows", "100", "--features", "4", "--repeats", "1"),
                                     ("bench", "sparse", "--rows", "100", "--features", "20", "--repeats", "1"),
                                     ("bench", "solvers", "--rows", "100", "--features", "4", "--repeats", "1")])
def test_serial_benchmarks_refuse_an_unusable_json_before_running(places, command):
    refused_in_one_line(_serial(*command, "--json", str(places / "a_dir")), "is a directory")
    refused_in_one_line(_serial(*command, "--json", str(places / "a_file" / "r.json")), "is not a directory")


def test_train_refuses_unusable_out_and_checkpoint_dir_once_on_two_ranks(places):
    train_args = ("train", "--rows", "200", "--features", "4", "--epochs", "2", "--quiet")
    refused_in_one_line(mpigd(2, *train_args, "--out", str(places / "a_file")), "--out")
    refused_in_one_line(mpigd(2, *train_args, "--out", str(places / "a_file" / "sub")), "is not a directory")
    refused_in_one_line(mpigd(2, *train_args, "--checkpoint-every", "1", "--checkpoint-dir", str(places / "a_file"),
                   "--out", str(places / "o")), "--checkpoint-dir")
    # --out A_FILE_DIR/..., default checkpoint directory OUT/checkpoints: a file there is refused too.
    (places / "a_dir" / "checkpoints").write_text("")
    refused_in_one_line(mpigd(2, *train_args, "--checkpoint-every", "1", "--out", str(places / "a_dir")), "checkpoints")
    assert sorted(os.listdir(places)) == ["a_dir", "a_file"]
    assert os.listdir(places / "a_dir") == ["checkpoints"]


TRAIN = ("train", "--rows", "100", "--features", "3", "--epochs", "1", "--quiet")


@pytest.mark.parametrize("ranks,command", [
    (2, (*TRAIN, "--out")),
    (2, (*TRAIN, "--checkpoint-every", "1", "--checkpoint-dir")),
    (2, ("predict", "--params", "PARAMS", "--output")),  # a params file that exists: the output is checked first
    (2, ("evaluate", "--params", "PARAMS", "--output")),
    (2, ("tune", "--max-bytes", "1K", "--repeats", "1", "--output")),
    (2, ("bench", "scaling", "--rows", "10", "--features", "2", "--steps", "2", "--output")),
    (2, ("bench", "allreduce", "--max-bytes", "64", "--repeats", "1", "--json")),
    (2, ("gen", "--rows", "10", "--features", "2", "--format", "npy", "--output")),
    (1, (*PLAN, "--plot")),
    (1, ("bench", "kernel", "--rows", "100", "--features", "4", "--repeats", "1", "--csv")),
], ids=["train-out", "checkpoint-dir", "predict", "evaluate", "tune", "scaling", "allreduce", "gen", "plan", "kernel"])
@pytest.mark.parametrize("path,words", [("", "expected a path"), ("/proc/mpigd-out/o", "cannot write in /proc")],
                         ids=["empty", "proc"])
def test_an_empty_or_uncreatable_output_path_is_refused_once_before_any_work(places, ranks, command, path, words):
    # os.access says /proc is writable (to root), and an empty path was read as "no path".
    command = tuple(str(places / "a_file") if part == "PARAMS" else part for part in command)
    refused_in_one_line(mpigd(ranks, *command, path, timeout=60), words)
    assert sorted(os.listdir(places)) == ["a_dir", "a_file"]


def test_tune_refuses_a_directory_as_output_and_leaves_no_temporary_file(places):
    refused_in_one_line(mpigd(2, "tune", "--max-bytes", "1K", "--repeats", "1", "--output", str(places / "a_dir")),
             "is a directory")
    refused_in_one_line(mpigd(2, "tune", "--max-bytes", "1K", "--repeats", "1", "--output", str(places / "a_file" / "t.json")),
             "is not a directory")
    assert sorted(os.listdir(places)) == ["a_dir", "a_file"]
    assert os.listdir(places / "a_dir") == []


@pytest.mark.parametrize("option", ["--json", "--csv", "--plot"])
def test_bench_allreduce_refuses_an_unusable_output_once_on_two_ranks(places, option):
    refused_in_one_line(mpigd(2, "bench", "allreduce", "--max-bytes", "64", "--repeats", "1", option, str(places / "a_dir")),
             "is a directory")


def test_bench_scaling_refuses_an_output_below_a_file(places):
    refused_in_one_line(mpigd(2, "bench", "scaling", "--rows", "1000", "--features", "4", "--steps", "2",
                   "--output", str(places / "a_file" / "s.jsonl")), "is not a directory")
    assert (places / "a_file").read_text() == "keep me\n"


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_missing_params_file_is_named_before_the_model_json_beside_it(tmp_path, command):
    job = mpigd(2, command, "--params", str(tmp_path / "nonexist.npz"), "--output", str(tmp_path / "o.out"))
    refused_in_one_line(job, f"{tmp_path / 'nonexist.npz'}: cannot load the model (no such file)")
    assert "model.json" not in job.stderr and os.listdir(tmp_path) == []


# -- plan parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option,value", [("--alpha", "nan"), ("--beta", "nan"), ("--gamma", "nan"),
                                          ("--alpha", "inf"), ("--compute-rate", "nan"),
                                          ("--compute-rate", "inf")])
def test_plan_refuses_non_finite_parameters(option, value):
    refused_in_one_line(_serial(*PLAN, option, value), f"{option} must be a finite number")


def test_projection_refuses_a_non_finite_cost_model():
    finite = CostModel(1e-6, 1e-9, 1e-10)
    with pytest.raises(ValueError, match="finite"):
        Projection(1000, 88, 1e6, finite, CostModel(float("nan"), 1e-9, 1e-10))
    with pytest.raises(ValueError, match="finite"):
        Projection(1000, 88, float("inf"), finite, finite)


# -- checkpoints -------------------------------------------------------------------------------------


def _checkpointed(tmp_path) -> tuple[Config, str]:
    """A finished one-rank run that kept one checkpoint; the config to resume it, its manifest."""
    config = Config(model="linear", rows=300, features=4, epochs=4, lr=0.1, quiet=True, out=str(tmp_path / "run"),
                    checkpoint_every=2, keep=1)
    train(config, self_comm())
    directory = tmp_path / "run" / "checkpoints"
    (manifest,) = [name for name in os.listdir(directory) if name.endswith(".json")]
    return config.replace(resume=True, epochs=6), str(directory / manifest)


def _edit(manifest: str, change) -> None:
    with open(manifest, encoding="utf-8") as handle:
        content = json.load(handle)
    change(content)
    with open(manifest, "w", encoding="utf-8") as handle:
        json.dump(content, handle)


def _set_rank_state(key, value):
    return lambda manifest: manifest["ranks"][0].__setitem__(key, value)


@pytest.mark.parametrize("change", [
    lambda manifest: manifest.__setitem__("ranks", []),
    lambda manifest: manifest["ranks"].__setitem__(0, {}),
    lambda manifest: manifest["ranks"].__setitem__(0, "steps"),
    lambda manifest: manifest.__setitem__("epoch", 0),
    lambda manifest: manifest["metadata"].__setitem__("ranks", "one"),
    _set_rank_state("cursor", "not a number"),  # passes the manifest checks, fails applying the state
    _set_rank_state("steps", None),
], ids=["no-ranks", "empty-state", "state-not-object", "epoch-0", "ranks-not-int", "bad-cursor", "null-steps"])
def test_a_hand_edited_manifest_is_a_checkpoint_error(tmp_path, change):
    config, manifest = _checkpointed(tmp_path)
    _edit(manifest, change)
    with pytest.raises(CheckpointError):
        train(config, self_comm())


def test_a_checkpoint_with_non_finite_parameters_is_refused_at_load(tmp_path):
    config, manifest = _checkpointed(tmp_path)
    archive_path = manifest[:-len(".json")] + ".npz"
    with np.load(archive_path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["params"][0] = np.inf
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with open(archive_path, "wb") as handle:
        handle.write(buffer.getvalue())
    _edit(manifest, lambda content: content.update(npz_sha256=hashlib.sha256(buffer.getvalue()).hexdigest(),
                                                  npz_bytes=len(buffer.getvalue())))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        train(config, self_comm())


RANK1_EDITS = {  # only rank 1's state edited; the first two left the resumed job hanging
    "steps": lambda content: content["ranks"][1].__setitem__("steps", content["ranks"][1]["steps"] - 1),
    "total": lambda content: content["ranks"][1].__setitem__("total", "nan"),
    "cursor": lambda content: content["ranks"][1].__setitem__("cursor", "x"),
}


@pytest.mark.parametrize("change", ["cut", *RANK1_EDITS])
def test_a_hand_edited_manifest_stops_two_ranks_with_exit_2(tmp_path, change):
    data = tmp_path / "d.csv"
    assert mpigd(1, "gen", "--format", "csv", "--rows", "200", "--features", "4", "--output", str(data),
                 "--quiet").returncode == 0
    out = tmp_path / "ck"
    common = ("train", "--data", str(data), "--checkpoint-every", "2", "--keep", "1", "--out", str(out), "--quiet")
    assert mpigd(2, *common, "--epochs", "4").returncode == 0
    (manifest,) = (out / "checkpoints").glob("*.json")
    if change == "cut":  # rank 1 would index past the end of the list
        _edit(manifest, lambda content: content.__setitem__("ranks", content["ranks"][:1]))
    else:
        _edit(manifest, RANK1_EDITS[change])
    job = mpigd(2, *common, "--epochs", "6", "--resume", timeout=60)
    assert job.returncode == 2, job.stderr
    assert "Traceback" not in job.stderr and job.stderr.count("mpigd: error: ") == 1, job.stderr


# -- gen ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["npy", "hdf5", "csv", "libsvm"])
def test_gen_refuses_a_data_set_larger_than_the_free_space_before_creating_anything(tmp_path, fmt):
    output = tmp_path / f"huge.{fmt}"
    job = mpigd(2, "gen", "--rows", "1000000000000", "--features", "1000", "--format", fmt, "--output", str(output))
    refused_in_one_line(job, "free")
    assert os.listdir(tmp_path) == []


def test_gen_refuses_an_output_below_a_file(places):
    refused_in_one_line(mpigd(1, "gen", "--rows", "10", "--features", "2", "--format", "npy",
                   "--output", str(places / "a_file" / "g")), "is not a directory")


def _failing_on_call(real, failing_call: int):
    calls = []

    def replacement(*args, **kwargs):
        calls.append(1)
        if len(calls) == failing_call:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return replacement


def test_gen_removes_a_partly_written_text_file(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "ROUND_ROWS", 10)
    monkeypatch.setattr(generate.os, "pwrite", _failing_on_call(os.pwrite, 3))
    output = tmp_path / "g.csv"
    with pytest.raises(InputError, match="No space left"):
        generate.write(generate.Spec(100, 3, "regression", 0, "csv", str(output)), self_comm())
    assert os.listdir(tmp_path) == []


def test_gen_removes_the_npy_files_and_directory_it_created(tmp_path, monkeypatch):
    monkeypatch.setattr(np.lib.format, "open_memmap", _failing_on_call(np.lib.format.open_memmap, 2))
    with pytest.raises(InputError):
        generate.write(generate.Spec(100, 3, "regression", 0, "npy", str(tmp_path / "g")), self_comm())
    assert os.listdir(tmp_path) == []


def test_gen_removes_a_partly_written_hdf5_file(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    monkeypatch.setattr(generate.Spec, "rows_of", _failing_on_call(generate.Spec.rows_of, 1))
    with pytest.raises(InputError, match="No space left"):
        generate.write(generate.Spec(100, 3, "regression", 0, "hdf5", str(tmp_path / "g.h5")), self_comm())
    assert os.listdir(tmp_path) == []


def test_gen_keeps_an_existing_file_it_could_not_open(tmp_path, monkeypatch):
    output = tmp_path / "g.csv"
    output.write_text("someone's data\n")
    monkeypatch.setattr(generate, "_create_text", _failing_on_call(generate._create_text, 1))
    with pytest.raises(InputError):
        generate.write(generate.Spec(100, 3, "regression", 0, "csv", str(output)), self_comm())
    assert output.read_text() == "someone's data\n"


def test_a_failed_gen_keeps_the_earlier_data_set_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    output = tmp_path / "g.csv"
    output.write_text("x0,y\n1.0,0\n")  # an earlier data set under the same name
    monkeypatch.setattr(generate, "ROUND_ROWS", 10)
    monkeypatch.setattr(generate.os, "pwrite", _failing_on_call(os.pwrite, 3))
    with pytest.raises(InputError, match="No space left"):
        generate.write(generate.Spec(100, 3, "regression", 0, "csv", str(output)), self_comm())
    assert output.read_text() == "x0,y\n1.0,0\n" and os.listdir(tmp_path) == ["g.csv"]


# Sizes that take a few seconds to write on two ranks, so that the job is still writing when killed.
KILLED_GEN = {"npy": ("4000000", "25"), "hdf5": ("4000000", "25"), "csv": ("1000000", "10"),
              "libsvm": ("1000000", "10")}


@pytest.mark.parametrize("fmt", sorted(KILLED_GEN))
def test_a_gen_killed_while_writing_leaves_no_file_under_the_final_name(tmp_path, fmt):
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    rows, features = KILLED_GEN[fmt]
    output = tmp_path / "out" / "g" if fmt == "npy" else tmp_path / "out" / f"g.{fmt}"
    (tmp_path / "out").mkdir()
    job = start_mpi(2, ["-m", "mpigd", "gen", "--rows", rows, "--features", features, "--format", fmt,
                        "--output", str(output)])
    try:
        deadline = time.monotonic() + 60
        # Until a data file is being written (the output check's probe file comes and goes before).
        while (not any(".partial" in name for name in _files_under(tmp_path / "out")) and job.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.005)
        os.killpg(job.pid, signal.SIGKILL)  # as a node failure or an out-of-time job would
    finally:
        job.communicate(timeout=60)
    left = _files_under(tmp_path / "out")
    assert left, "the job ended before it wrote anything: make it larger"
    assert not output.exists() or (fmt == "npy" and not {"X.npy", "y.npy"} & set(os.listdir(output))), left
    assert all(os.path.basename(name).startswith(".") and ".partial" in name for name in left), left


def _files_under(directory) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]


@pytest.mark.parametrize("fmt", ["npy", "hdf5", "csv", "libsvm"])
def test_a_gen_leaves_only_its_data_set(tmp_path, fmt):
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    output = tmp_path / ("g" if fmt == "npy" else f"g.{fmt}")
    job = mpigd(2, "gen", "--rows", "300", "--features", "3", "--format", fmt, "--output", str(output), "--quiet")
    assert job.returncode == 0, job.stderr
    expected = [str(output / "X.npy"), str(output / "y.npy")] if fmt == "npy" else [str(output)]
    assert sorted(_files_under(tmp_path)) == expected


@pytest.mark.parametrize("fmt", ["hdf5", "csv", "libsvm"])
def test_gen_makes_the_missing_directories_above_a_file_output(tmp_path, fmt):
    # The output check lets them through (as for npy, predict and the reports); the writer used to
    # fail on them with the temporary file's name instead.
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    output = tmp_path / "new" / "sub" / f"g.{fmt}"
    written = generate.write(generate.Spec(30, 3, "regression", 0, fmt, str(output)), self_comm())
    assert written == output.stat().st_size > 0
    assert _files_under(tmp_path) == [str(output)]


@pytest.mark.parametrize("command", ["gen", "train"])
def test_gen_and_train_take_the_same_density_range(tmp_path, command):
    args = (("gen", "--rows", "50", "--features", "4", "--format", "csv", "--output", str(tmp_path / "d.csv"))
            if command == "gen" else ("train", "--rows", "50", "--features", "4", "--epochs", "1"))
    for refused in ("1", "-0.1", "1.5"):
        refused_in_one_line(mpigd(1, *args, "--density", refused, "--quiet"), "density must lie in [0, 1)")
    assert mpigd(1, *args, "--density", "0", "--quiet").returncode == 0  # 0: dense
    if command == "gen":
        values = np.loadtxt(tmp_path / "d.csv", delimiter=",", skiprows=1)[:, :-1]
        assert values.shape == (50, 4) and np.all(values != 0)


# -- reports that cannot be written to the end ---------------------------------------------------------


def _file_size_limit(nbytes: int):
    """For ``preexec_fn``: files larger than ``nbytes`` cannot be written (EFBIG), as on a full disk.
    Python ignores SIGXFSZ, so the write fails instead of the process being killed."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_a_report_that_cannot_be_written_to_the_end_leaves_nothing(tmp_path, option):
    old = tmp_path / "old.json"
    old.write_text("{}\n")  # a previous report under the same name stays as it was
    for target in (tmp_path / "new" / "report.out", old):
        job = _serial(*PLAN, option, str(target), preexec_fn=_file_size_limit(200))
        lines = job.stderr.strip().splitlines()
        assert job.returncode == 1 and len(lines) == 1, job.stderr
        assert lines[0] == f"mpigd: error: cannot write {target}: File too large", job.stderr
    assert old.read_text() == "{}\n"
    assert os.listdir(tmp_path / "new") == [] and sorted(os.listdir(tmp_path)) == ["new", "old.json"]


def test_a_scaling_plot_that_cannot_be_written_to_the_end_leaves_nothing(tmp_path):
    records = tmp_path / "scaling.jsonl"
    job = mpigd(1, "bench", "scaling", "--mode", "strong", "--rows", "2000", "--features", "4", "--steps", "2",
                "--output", str(records))
    assert job.returncode == 0, job.stderr
    # matplotlib's font cache is written on first use: make it before the file size is limited.
    matplotlib_home = str(tmp_path / "matplotlib")
    report = ("bench", "scaling-report", str(records), "--plot")
    whole = tmp_path / "whole" / "scaling"
    job = _serial(*report, str(whole), MPLCONFIGDIR=matplotlib_home)
    assert job.returncode == 0 and (tmp_path / "whole" / "scaling-strong.png").stat().st_size > 4096, job.stderr
    cut = tmp_path / "cut" / "scaling"
    job = _serial(*report, str(cut), preexec_fn=_file_size_limit(4096), MPLCONFIGDIR=matplotlib_home)
    expected = f"mpigd: error: cannot write {cut}-strong.png: File too large"
    assert job.returncode == 1 and job.stderr.strip().splitlines() == [expected], job.stderr
    assert os.listdir(tmp_path / "cut") == []


def test_a_report_to_a_device_is_written_to_it_directly():
    full = _serial(*PLAN, "--json", "/dev/full")  # a device that is always full
    assert full.returncode == 1 and full.stderr.strip() == "mpigd: error: cannot write /dev/full: No space left on device"
    tune = mpigd(2, "tune", "--max-bytes", "1K", "--repeats", "1", "--output", "/dev/full")
    assert tune.returncode == 1 and tune.stderr.strip() == "mpigd: error: cannot write /dev/full: No space left on device"
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")  # the device itself left in place
    shown = _serial(*PLAN, "--json", "/dev/stdout")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout[shown.stdout.index("\n{") + 1:shown.stdout.rindex("}") + 1])
    assert report["rows"] == 1000 and report["metadata"]["command"].endswith("--json /dev/stdout")


@pytest.mark.parametrize("failing_call", [1, 2, 3])  # model.json, params.npz, summary.json
def test_a_run_whose_outputs_cannot_be_written_leaves_none_of_them(tmp_path, monkeypatch, failing_call):
    """A full disk while the results are written: one line (exit code 1), and no model.json without
    the params.npz beside it."""
    import mpigd.outputs
    from mpigd.errors import MpigdError

    monkeypatch.setattr(mpigd.outputs, "atomic_write", _failing_on_call(mpigd.outputs.atomic_write, failing_call))
    out = tmp_path / "run"
    with pytest.raises(MpigdError, match="No space left on device") as caught:
        train(Config(model="linear", rows=200, features=3, epochs=2, quiet=True, out=str(out)), self_comm())
    assert caught.value.exit_code == 1
    assert os.listdir(out) == ["metrics.jsonl"]


def test_a_checkpoint_that_cannot_be_written_is_a_failed_write_exit_code_1(tmp_path, monkeypatch):
    """A full disk while a checkpoint is written is a write that failed (exit code 1, as for the
    results), not bad input (2, which it was); the checkpoints before it stay."""
    import mpigd.checkpoint
    from mpigd.errors import MpigdError

    monkeypatch.setattr(mpigd.checkpoint, "atomic_write", _failing_on_call(mpigd.checkpoint.atomic_write, 3))
    out = tmp_path / "run"
    with pytest.raises(MpigdError) as caught:
        train(Config(model="linear", rows=200, features=3, epochs=6, checkpoint_every=2, quiet=True, out=str(out)),
              self_comm())
    assert caught.value.exit_code == 1
    assert str(caught.value) == f"cannot write a checkpoint in {out / 'checkpoints'}: No space left on device"
    assert sorted(os.listdir(out / "checkpoints")) == ["ckpt-0000000002.json", "ckpt-0000000002.npz"]


def test_a_metrics_log_that_cannot_be_written_ends_both_ranks_in_one_line_and_keeps_whole_lines(tmp_path):
    """The disk fills while rank 0 appends to metrics.jsonl in the middle of the run: one line (exit
    code 1) on every rank, not rank 0's traceback and an abort, and the log keeps whole records."""
    out = tmp_path / "run"
    # The limit is set once MPI has started: MPICH's shared-memory segment is a file larger than it.
    limited = ("import resource, sys; from mpi4py import MPI; from mpigd.cli import main; "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000)); sys.exit(main(sys.argv[1:]))")
    job = run_mpi(2, ["-c", limited, "train", "--model", "linear", "--rows", "200", "--features", "3",
                      "--epochs", "60", "--eval-every", "1", "--quiet", "--out", str(out)])
    path = out / "metrics.jsonl"
    assert job.returncode == 1, job.stderr
    assert job.stderr.strip() == f"mpigd: error: cannot write {path}: File too large", job.stderr
    records = [json.loads(line) for line in path.read_text().splitlines()]  # no torn last line
    assert 0 < len(records) < 60 and [r["epoch"] for r in records] == list(range(1, len(records) + 1))
    assert path.read_text().endswith("\n") and sorted(os.listdir(out)) == ["metrics.jsonl"]


def test_a_run_removes_the_temporaries_a_killed_run_left_in_its_out(tmp_path):
    """A run killed (SIGKILL) while rank 0 wrote its results left `.params.npz.tmpPID` there, part of
    the file; the next run in that directory removes such leftovers of its own files, nothing else."""
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [".params.npz.tmp4711", ".summary.json.tmp4711", ".model.json.tmp12", ".metrics.jsonl.tmp99"]
    for name in leftovers + [".params.npz.tmp-notes", "notes.txt"]:
        (out / name).write_bytes(b"PK\x03\x04 part of a file")
    train(Config(model="linear", rows=200, features=3, epochs=2, quiet=True, out=str(out)), self_comm())
    assert sorted(os.listdir(out)) == sorted([".params.npz.tmp-notes", "metrics.jsonl", "model.json", "notes.txt",
                                              "params.npz", "summary.json"])


def test_a_resume_whose_metrics_log_cannot_be_rewritten_ends_in_one_line(tmp_path):
    """The disk is full when a resumed run rewrites metrics.jsonl up to its checkpoint: one line
    (exit code 1) on every rank, not rank 0's traceback and an abort; the log stays as it was."""
    out = tmp_path / "run"
    args = ["train", "--model", "linear", "--rows", "200", "--features", "3", "--epochs", "30", "--eval-every", "1",
            "--checkpoint-every", "10", "--quiet", "--out", str(out)]
    assert mpigd(2, *args).returncode == 0
    for name in ("ckpt-0000000030.json", "ckpt-0000000030.npz"):
        os.unlink(out / "checkpoints" / name)  # the run was cut short after step 20's checkpoint
    before = (out / "metrics.jsonl").read_bytes()
    limited = ("import resource, sys; from mpi4py import MPI; from mpigd.cli import main; "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)); sys.exit(main(sys.argv[1:]))")
    job = run_mpi(2, ["-c", limited, *args, "--resume"])
    assert job.returncode == 1, job.stderr
    assert job.stderr.strip() == f"mpigd: error: cannot write {out / 'metrics.jsonl'}: File too large", job.stderr
    assert (out / "metrics.jsonl").read_bytes() == before
    assert sorted(os.listdir(out)) == ["checkpoints", "metrics.jsonl"]
