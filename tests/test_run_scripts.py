"""The run/ scripts' own logic (their arguments), on a copy of run/ in a stand-in environment: the
real mpigd, and an mpiexec stub that records each launch's rank count and runs one process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stand_in(tmp_path, run_all=False):
    """A copy of run/ (its scripts write beside themselves) and an environment _env.sh takes as set
    up, whose mpiexec appends its -n to ranks.log and runs the command once: for -n 1, or any -n."""
    copy, venv = tmp_path / "checkout", tmp_path / "venv"
    shutil.copytree(ROOT / "run", copy / "run")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (venv / "bin").mkdir(parents=True)
    stamp = subprocess.run(f"cat {copy / 'pyproject.toml'} | cksum", shell=True, capture_output=True, text=True)
    (venv / ".mpigd-installed").write_text(stamp.stdout)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    which = "true" if run_all else '[ "$2" = 1 ]'
    (venv / "bin" / "mpiexec").write_text(f'#!/bin/sh\n[ "$1" = --version ] && exit 0\n'
                                          f'echo "$2" >> {tmp_path / "ranks.log"}\n'
                                          f'if {which}; then shift 2; exec "$@"; fi\n')
    for tool in (venv / "bin").iterdir():
        tool.chmod(0o755)
    return copy, dict(os.environ, MPIGD_VENV=str(venv))


def test_run_scaling_keeps_its_default_rank_counts_when_only_options_follow_the_mode(tmp_path):
    # run/scaling strong -- OPTIONS (its usage line) took '--' for the rank counts: one launch, of
    # 'mpiexec -n --'; run/scaling strong --rows N took '--rows'.
    copy, env = _stand_in(tmp_path)
    for args in (["strong", "--"], ["strong"], ["--"]):
        (tmp_path / "ranks.log").unlink(missing_ok=True)
        done = subprocess.run([str(copy / "run" / "scaling"), *args, "--rows", "2000", "--features", "4", "--steps", "2"],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (args, done.stderr)
        assert (tmp_path / "ranks.log").read_text().split() == ["1", "2", "4"], args
        assert (copy / "benchmarks" / "scaling-strong.csv").exists()


def test_run_scaling_refuses_a_rank_count_that_is_not_one_before_any_launch(tmp_path):
    # mpiexec -n x and -n 0 ran one process: "1 x" reported two one-rank runs as a sweep.
    copy, env = _stand_in(tmp_path)
    for counts in ("1 x", "0 2", "2 -1"):
        done = subprocess.run([str(copy / "run" / "scaling"), "strong", counts, "--rows", "2000"],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and not (tmp_path / "ranks.log").exists(), (counts, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "rank counts are integers >= 1" in done.stderr
    assert not (copy / "benchmarks").exists()


def test_a_failed_run_scaling_leaves_the_previous_results_as_they_were(tmp_path):
    # The records were removed first: a launch that failed left a jsonl of part of the sweep (or none)
    # beside the csv, json and png of the previous one.
    copy, env = _stand_in(tmp_path)
    results = copy / "benchmarks"
    results.mkdir()
    before = {f"scaling-strong.{ext}": f"previous {ext}\n" for ext in ("jsonl", "csv", "json", "png")}
    for name, text in before.items():
        (results / name).write_text(text)
    done = subprocess.run([str(copy / "run" / "scaling"), "strong", "1 2", "--rows", "0"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert {path.name: path.read_text() for path in results.iterdir()} == before


def test_run_test_with_a_file_runs_that_files_mpi_tests_only(tmp_path):
    # The MPI stages appended tests/ to the arguments: run/test tests/test_partition.py ran the whole
    # MPI suite on 2 and 4 ranks. Collected only here (the stub runs each stage as one process).
    copy, env = _stand_in(tmp_path, run_all=True)
    shutil.copytree(ROOT / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([str(copy / "run" / "test"), "tests/test_partition.py", "--collect-only", "-q"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "ranks.log").read_text().split() == ["2", "4"]
    assert done.stdout.count("(no test of this stage matches)") == 2, done.stdout
