"""``mpigd tune`` under mpiexec, and ``--strategy auto`` and ``ring`` obeying the file it writes."""

from __future__ import annotations

import json
import os

import pytest

from mpirun import mpigd, refused_in_one_line

from mpigd.comm.strategies.auto import CANDIDATES
from mpigd.comm.strategies.ring import SEGMENT_CANDIDATES

MIB = 1 << 20


def test_tune_writes_a_calibration_that_auto_follows(tmp_path):
    tune = tmp_path / "tune.json"
    job = mpigd(2, "tune", "--output", str(tune), "--min-bytes", "1K", "--max-bytes", "16M", "--repeats", "2")
    assert job.returncode == 0, job.stderr
    assert f"wrote {tune}" in job.stdout and "auto on 2 ranks:" in job.stdout
    saved = json.loads(tune.read_text())
    assert saved["ranks"] == 2 and saved["model"]["beta_s_per_byte"] > 0 and saved["model"]["gamma_s_per_byte"] > 0
    sizes = [1 << k for k in range(10, 25)]  # 1 KiB to 16 MiB by factors of 2
    assert saved["measurements"]["sizes_bytes"] == sizes
    table = saved["crossover"]
    assert table[-1]["max_bytes"] is None and {row["strategy"] for row in table} <= set(CANDIDATES)
    # tree is for small messages: never chosen past 1 MiB (the switch lies below the midpoint to 2 MiB)
    tree_bounds = [row["max_bytes"] for row in table if row["strategy"] == "tree"]
    assert all(bound is not None and bound < 1.5 * MIB for bound in tree_bounds)
    if len(os.sched_getaffinity(0)) >= 2:  # a core per rank: the segment is measured at 16 MiB
        assert saved["ring_segment_bytes"] in SEGMENT_CANDIDATES
        assert saved["measurements"]["ring_segments"]["sizes_bytes"] == [16 * MIB]
    else:  # ranks share a core: the ring takes whole chunks, there is nothing to choose
        assert saved["ring_segment_bytes"] is None

    # auto runs what the file says: tree up to 64 bytes, direct beyond, so a 43-parameter
    # logistic gradient (344 bytes) goes to direct and the trainer's few-number sums to tree.
    saved["crossover"] = [{"max_bytes": 64, "strategy": "tree"}, {"max_bytes": None, "strategy": "direct"}]
    tune.write_text(json.dumps(saved))
    out = tmp_path / "run"
    job = mpigd(2, "train", "--model", "logistic", "--rows", "400", "--features", "42", "--epochs", "3",
                "--strategy", "auto", "--tune-file", str(tune), "--quiet", "--out", str(out))
    assert job.returncode == 0, job.stderr
    assert json.loads((out / "summary.json").read_text())["strategy"] == "auto->direct+tree"


def test_auto_reports_its_trial_in_the_train_summary(tmp_path):
    """A gradient from 256 KiB gets auto's trial: on 2 ranks all four strategies have the same bits."""
    out = tmp_path / "run"
    job = mpigd(2, "train", "--model", "softmax", "--classes", "110", "--rows", "300", "--features", "300",
                "--epochs", "2", "--strategy", "auto", "--quiet", "--out", str(out))
    assert job.returncode == 0, job.stderr
    summary = json.loads((out / "summary.json").read_text())
    gradient = summary["bytes_allreduced_per_step"]
    assert gradient >= 301 * 110 * 8 >= 256 * 1024  # the parameters and the loss
    trials = summary["strategy_trials"]
    assert list(trials) == [str(gradient)] and set(trials[str(gradient)]) == set(CANDIDATES)
    fastest = min(trials[str(gradient)], key=trials[str(gradient)].get)
    assert summary["strategy"].startswith(f"auto->{fastest}")  # the largest message's strategy first


@pytest.mark.parametrize("strategy, content, message", [
    ("auto", None, "no such file"),
    ("ring", "[1]", "its JSON is not an object"),  # rank 0 used to die alone here, leaving rank 1 waiting
    # Beyond int64: rank 0 failed after reading the file, outside its check, and the job hung.
    ("ring", json.dumps({"format": 1, "ranks": 2, "crossover": None, "ring_segment_bytes": 10**30,
                         "model": {"alpha_s": 1e-6, "beta_s_per_byte": 1e-10, "gamma_s_per_byte": 1e-10}}),
     "ring_segment_bytes above"),
    ("auto", json.dumps({"format": 1, "ranks": 2, "crossover": [{"max_bytes": 1e30, "strategy": "tree"},
                                                                 {"max_bytes": None, "strategy": "ring"}],
                         "model": {"alpha_s": 1e-6, "beta_s_per_byte": 1e-10, "gamma_s_per_byte": 1e-10}}),
     "a crossover bound"),
    # A 1-rank calibration measured no message (alpha = beta = 0); auto built its table from it.
    ("auto", json.dumps({"format": 1, "ranks": 1, "crossover": None,
                         "model": {"alpha_s": 0.0, "beta_s_per_byte": 0.0, "gamma_s_per_byte": 1e-10}}),
     "made by 'mpigd tune' on 1 rank, which sends no message"),
])
def test_an_unusable_tune_file_is_one_line_and_exit_code_2(tmp_path, strategy, content, message):
    tune = tmp_path / "tune.json"
    if content is not None:
        tune.write_text(content)
    job = mpigd(2, "train", "--rows", "100", "--features", "3", "--epochs", "1", "--strategy", strategy,
                "--tune-file", str(tune), "--quiet", timeout=60)
    assert job.returncode == 2
    lines = job.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot use the tune file for the {strategy} strategy: " in lines[0], job.stderr
    assert message in lines[0]


@pytest.mark.parametrize("command", [("tune",), ("bench", "allreduce")])
def test_a_max_bytes_that_cannot_fit_memory_is_refused_once_before_any_rank_allocates(command):
    # It was a MemoryError on every rank, each printing its own line.
    refused_in_one_line(mpigd(2, *command, "--max-bytes", "100000G", "--repeats", "1", timeout=60),
                        "--max-bytes 107,374,182,400,000 needs about")


@pytest.mark.parametrize("choice", ["ring", "direct"])
def test_bench_allreduce_runs_auto_with_the_tune_file_it_is_given(tmp_path, choice):
    from mpigd.comm.costmodel import CostModel, Crossover
    from mpigd.comm.tunefile import Tuning, save

    tune = tmp_path / "tune.json"
    save(Tuning(2, CostModel(), Crossover((), (choice,))), tune)
    job = mpigd(2, "bench", "allreduce", "--max-bytes", "64", "--repeats", "1", "--strategies", "auto",
                "--tune-file", str(tune), "--json", str(tmp_path / "r.json"), timeout=60)
    assert job.returncode == 0, job.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metadata"]["tune_file"] == str(tune)
    assert {row["ran"] for row in report["results"]} == {f"auto->{choice}"}
    # The table says what auto ran also when no other strategy ran beside it (it printed '| -').
    rows = [line for line in job.stdout.splitlines() if line.lstrip()[:1].isdigit()]
    assert rows and all(line.split("|")[-1].split() == [f"auto->{choice}", "-"] for line in rows)


def test_bench_allreduce_records_the_tune_file_auto_read_wherever_it_was_found(tmp_path, monkeypatch):
    # Found through $MPIGD_TUNE_FILE or the default path, the file was recorded as null: the command
    # in the JSON, re-run without that environment, ran auto on the built-in model instead.
    from mpigd.comm.costmodel import CostModel, Crossover
    from mpigd.comm.tunefile import Tuning, default_path, save

    monkeypatch.delenv("MPIGD_TUNE_FILE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    named, default = tmp_path / "tune.json", default_path(2)
    for path in (named, default):
        save(Tuning(2, CostModel(), Crossover((), ("direct",))), path)
    for env, path, source in (({"MPIGD_TUNE_FILE": str(named)}, named, "$MPIGD_TUNE_FILE"),
                              ({}, default, "default path")):
        job = mpigd(2, "bench", "allreduce", "--max-bytes", "64", "--repeats", "1", "--strategies", "auto",
                    "--json", str(tmp_path / "r.json"), env=env, timeout=60)
        assert job.returncode == 0, job.stderr
        metadata = json.loads((tmp_path / "r.json").read_text())["metadata"]
        assert (metadata["tune_file"], metadata["tune_file_from"]) == (str(path), source)


def test_a_tune_file_records_the_command_commit_and_date_that_made_it(tmp_path):
    # It held the measurements but not how they were made: no command to re-run, no commit, no repeats.
    tune = tmp_path / "tune.json"
    job = mpigd(2, "tune", "--output", str(tune), "--max-bytes", "1K", "--repeats", "1", timeout=60)
    assert job.returncode == 0, job.stderr
    metadata = json.loads(tune.read_text())["metadata"]
    assert metadata["command"] == f"mpiexec -n 2 mpigd tune --output {tune} --max-bytes 1K --repeats 1"
    assert metadata["repeats"] == 1 and metadata["ranks"] == 2 and metadata["date"] and metadata["mpi_library"]
    assert "git_commit" in metadata


def test_tune_refuses_a_default_path_it_cannot_write_before_measuring(tmp_path):
    # Without --output the default path was first tried after the measurements: a traceback on rank 0
    # and an abort (exit 1), after minutes of tuning at the default sizes.
    cache = tmp_path / "cache"
    cache.write_text("a file, not a directory\n")
    job = mpigd(2, "tune", "--max-bytes", "1K", "--repeats", "1", env={"XDG_CACHE_HOME": str(cache)}, timeout=60)
    refused_in_one_line(job, f"the default tune file (set --output or $XDG_CACHE_HOME) {cache}/mpigd/")
    assert job.stdout == "" and cache.read_text() == "a file, not a directory\n"


def test_bench_allreduce_refuses_to_write_over_the_tune_file_it_reads(tmp_path):
    # --json TUNE (or --csv, --plot) wrote the results over the calibration, after the run had read it.
    from mpigd.comm.costmodel import CostModel, Crossover
    from mpigd.comm.tunefile import Tuning, save

    tune = tmp_path / "tune.json"
    save(Tuning(2, CostModel(), Crossover((), ("ring",))), tune)
    kept = tune.read_text()
    refused_in_one_line(mpigd(2, "bench", "allreduce", "--max-bytes", "64", "--repeats", "1", "--tune-file", str(tune),
                              "--csv", str(tune), timeout=60), "is the --tune-file, an input; writing it would destroy it")
    assert tune.read_text() == kept
