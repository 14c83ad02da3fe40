"""Whole jobs under mpiexec: the same answer on any rank count, errors reported once, no hangs."""

import json
import re
import time

import numpy as np
import pytest

from mpirun import mpigd, run_mpi


def _params(directory):
    with np.load(directory / "params.npz", allow_pickle=False) as saved:
        return np.append(saved["coef"], saved["intercept"])


@pytest.mark.parametrize("model", ["linear", "logistic"])
def test_gd_gives_the_same_parameters_on_1_2_3_and_4_ranks(tmp_path, model):
    results = {}
    for ranks in (1, 2, 3, 4):
        out = tmp_path / f"p{ranks}"
        # 1001 rows: blocks of unequal size on 2, 3 and 4 ranks.
        job = mpigd(ranks, "train", "--model", model, "--rows", "1001", "--features", "6", "--epochs", "150",
                    "--lr", "0.5", "--l2", "0.01", "--quiet", "--out", str(out))
        assert job.returncode == 0, job.stderr
        assert job.stdout == "" and job.stderr == ""  # --quiet
        results[ranks] = _params(out)
        assert json.loads((out / "summary.json").read_text())["ranks"] == ranks
    for ranks in (2, 3, 4):
        assert np.max(np.abs(results[ranks] - results[1])) <= 1e-10 * np.max(np.abs(results[1]))


@pytest.mark.parametrize("strategy", ["ring", "direct", "tree", "auto"])
def test_every_strategy_reaches_native_parameters_and_names_itself(tmp_path, strategy):
    # 3 ranks and 1001 rows: unequal blocks, and a ring of chunks that do not divide evenly.
    common = ("train", "--model", "softmax", "--classes", "4", "--rows", "1001", "--features", "40",
              "--epochs", "60", "--lr", "0.5", "--quiet")
    results = {}
    for name in ("native", strategy):
        out = tmp_path / name
        job = mpigd(3, *common, "--strategy", name, "--out", str(out))
        assert job.returncode == 0, job.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["strategy"] == name or (name == "auto" and summary["strategy"].startswith("auto->"))
        assert summary["time"]["communication_seconds"] > 0
        with np.load(out / "params.npz", allow_pickle=False) as saved:
            results[name] = np.concatenate([saved[key].ravel() for key in sorted(saved.files)])
    assert np.max(np.abs(results[strategy] - results["native"])) <= 1e-10 * np.max(np.abs(results["native"]))


def test_sgd_on_two_ranks_trains_and_reports(tmp_path):
    job = mpigd(2, "train", "--algo", "sgd", "--rows", "4000", "--features", "8", "--epochs", "2",
                "--batch-size", "100", "--lr", "0.3", "--out", str(tmp_path))
    assert job.returncode == 0, job.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 * 40 and summary["metrics"]["accuracy"] > 0.75
    assert summary["allreduce_calls"] >= summary["steps"]
    assert job.stdout.count("final loss") == 1  # rank 0 alone prints
    assert re.search(r"\(2 ranks, [\d.]+s wall, [\d.]+s allreduce by native\)", job.stdout), job.stdout
    one = mpigd(1, "train", "--rows", "500", "--features", "3", "--epochs", "1")
    assert re.search(r"\(1 rank, [\d.]+s wall", one.stdout), one.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "svm"], "invalid choice: 'svm'"),
    (["train", "--epochs", "0"], "--epochs must be an integer >= 1"),
    (["train", "--data", "/nonexistent/data.npz"], "/nonexistent/data.npz: no such data file"),
    (["train", "--algo", "sgd", "--batch-size", "2"], "--batch-size (2) must be at least the rank count (3)"),
])
def test_bad_arguments_give_one_message_and_exit_code_2(tmp_path, args, message):
    out = tmp_path / "out"
    job = mpigd(3, *args, "--out", str(out), timeout=60)
    assert job.returncode == 2, job.stderr
    assert job.stderr.count("mpigd: error:") == 1 and message in job.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["tune", "--min-bytes", "2K", "--max-bytes", "1K"], "--min-bytes (2048) is larger than --max-bytes (1024)"),
    (["bench", "allreduce", "--dtype", "float32", "--max-bytes", "4"], "--min-bytes (8) is larger than --max-bytes (4)"),
    (["bench", "allreduce", "--repeats", "0"], "argument --repeats: expected an integer >= 1; got '0'"),
    (["tune", "--repeats", "many"], "argument --repeats: expected an integer >= 1; got 'many'"),
    (["bench", "scaling", "--steps", "0"], "argument --steps: expected an integer >= 1; got '0'"),
    (["bench", "sparse", "--densities", "0.01,2"], "argument --densities: expected comma-separated fractions in (0, 1]"),
])
def test_bad_benchmark_arguments_give_one_message_and_exit_code_2(args, message):
    job = mpigd(2, *args, timeout=60)
    assert job.returncode == 2, job.stderr
    assert job.stderr.count("mpigd: error:") == 1 and message in job.stderr, job.stderr
    assert job.stdout == "" and "Traceback" not in job.stderr


@pytest.mark.parametrize("data, args, message", [
    ("0 99999999999:1.0\n1 1:2.0\n", [], "a logistic model of 100,000,000,000 parameters needs about"),
    (None, ["--features", "10000000000"], "synthetic data of 1,000 x 10,000,000,000 needs about"),
    (None, ["--model", "softmax", "--classes", "2000000000", "--features", "3"], "with 2,000,000,000 classes needs"),
])
def test_a_job_too_large_for_the_node_is_one_line_not_a_memory_error(tmp_path, data, args, message):
    if data is not None:
        (tmp_path / "huge.svm").write_text(data)
        args = ["--data", str(tmp_path / "huge.svm"), *args]
    out = tmp_path / "out"
    job = mpigd(2, "train", "--rows", "1000", "--epochs", "1", *args, "--out", str(out), timeout=60)
    assert job.returncode == 2, job.stderr
    assert job.stderr.count("mpigd: error:") == 1 and message in job.stderr and "Traceback" not in job.stderr
    assert not out.exists()


def test_an_exception_on_one_rank_ends_the_whole_job_quickly(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "from mpigd.comm import run_or_abort, world\n"
        "import numpy as np, sys\n"
        "comm = world()\n"
        "def job():\n"
        "    if comm.rank == 1:\n"
        "        raise RuntimeError('injected failure')\n"
        "    comm.allreduce(np.ones(4))  # the others wait here for rank 1\n"
        "    return 0\n"
        "sys.exit(run_or_abort(job, comm.rank))\n"
    )
    start = time.monotonic()
    job = run_mpi(3, [str(script)], timeout=60)
    assert time.monotonic() - start < 30
    assert job.returncode != 0
    assert job.stderr.count("RuntimeError: injected failure") == 1 and "rank 1 failed" in job.stderr


def test_info_names_the_mpi_library_and_rank_count():
    job = mpigd(2, "info", timeout=60)
    assert job.returncode == 0, job.stderr
    assert "mpi library" in job.stdout and "\nranks " in job.stdout and " 2\n" in job.stdout
    assert job.stdout.count("numba threading layer") == 1


def test_help_on_two_ranks_is_printed_once():
    job = mpigd(2, "train", "--help", timeout=60)
    assert job.returncode == 0, job.stderr
    assert job.stdout.count("usage: mpigd train") == 1 and "--clip-grad-norm" in job.stdout
