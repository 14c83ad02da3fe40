"""The run/ scripts' own logic (their arguments), on a copy of run/ in a stand-in environment: the
real mpigd, and an mpiexec stub that records each launch's rank count and runs one process."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stand_in(tmp_path, run_ranks="1"):
    """A copy of run/ (its scripts write beside themselves) and an environment _env.sh takes as set
    up, whose mpiexec appends its -n to ranks.log and runs the command once when -n is run_ranks."""
    copy, venv = tmp_path / "checkout", tmp_path / "venv"
    shutil.copytree(ROOT / "run", copy / "run")
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    (venv / "bin").mkdir(parents=True)
    stamp = subprocess.run(f"cat {copy / 'pyproject.toml'} | cksum", shell=True, capture_output=True, text=True)
    (venv / ".mpigd-installed").write_text(stamp.stdout)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv / "bin" / "mpiexec").write_text(f'#!/bin/sh\n[ "$1" = --version ] && exit 0\n'
                                          f'echo "$2" >> {tmp_path / "ranks.log"}\n'
                                          f'if [ "$2" = {run_ranks} ]; then shift 2; exec "$@"; fi\n')
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
