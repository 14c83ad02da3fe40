"""The slurm/ batch scripts' own logic without a Slurm cluster: run by bash with an srun stub that
records its options and runs the command as one process (tests/test_slurm.py runs them on a real
one-node cluster)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _stub_srun(tmp_path) -> dict[str, str]:
    """An environment whose srun appends its arguments to srun.log, drops its own options (and -n N,
    -N N) and runs the command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "srun.log"}\n'
                                  'while [ $# -gt 0 ]; do\n'
                                  '  case "$1" in -n|-N) shift 2 ;; -*) shift ;; *) break ;; esac\n'
                                  'done\nexec "$@"\n')
    (bin_dir / "srun").chmod(0o755)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SLURM_", "MPIGD_"))}
    return dict(env, PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", MPIGD_VENV=sys.prefix, SLURM_NTASKS="1")


SCRIPTS = [("train.sbatch", ["--rows", "200", "--features", "3", "--epochs", "1", "--quiet"]),
           ("scaling.sbatch", ["--rows", "200", "--features", "3", "--steps", "1"])]


@pytest.mark.parametrize("script, args", SCRIPTS)
def test_a_site_python_serves_where_there_is_no_virtual_environment(tmp_path, script, args):
    # scaling.sbatch sourced $MPIGD_VENV/bin/activate unconditionally (under set -e: the job ended
    # there); train.sbatch already took MPIGD_PYTHON.
    env = dict(_stub_srun(tmp_path), MPIGD_VENV=str(tmp_path / "no-venv"), MPIGD_PYTHON=sys.executable,
               MPIGD_RESULTS=str(tmp_path / "results"), PATH=f"{tmp_path / 'bin'}{os.pathsep}/usr/bin:/bin")
    done = subprocess.run(["bash", str(ROOT / "slurm" / script), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script, args", SCRIPTS)
def test_srun_gets_the_jobs_cpus_per_task(tmp_path, script, args):
    # Since Slurm 22.05 srun no longer inherits --cpus-per-task from the job: with --cpus-per-task=4
    # the ranks ran 4 threads each (NUMBA_NUM_THREADS, OMP_NUM_THREADS) on the one CPU srun gave them.
    env = dict(_stub_srun(tmp_path), SLURM_CPUS_PER_TASK="4", MPIGD_RESULTS=str(tmp_path / "results"))
    done = subprocess.run(["bash", str(ROOT / "slurm" / script), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    launches = (tmp_path / "srun.log").read_text().splitlines()
    assert launches and all("--cpus-per-task=4" in launch.split() for launch in launches), launches


@pytest.mark.parametrize("per_node_variable", [{"SLURM_NTASKS_PER_NODE": "4"}, {}])
def test_the_scaling_sweep_fills_whole_nodes(tmp_path, per_node_variable):
    # srun -n 2 in an allocation of several nodes spreads the 2 ranks over 2 nodes: the sweep's small
    # counts measured the network, its large ones shared memory as well.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "srun.log"}\n')  # records, runs nothing
    (bin_dir / "srun").chmod(0o755)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SLURM_", "MPIGD_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", MPIGD_VENV=sys.prefix, SLURM_NTASKS="8",
               SLURM_JOB_NUM_NODES="2", MPIGD_RESULTS=str(tmp_path / "results"), **per_node_variable)
    (tmp_path / "results").mkdir()
    stale = ["records.jsonl", "report.csv", "report.json", "scaling-strong.png"]  # an earlier sweep's
    for name in stale:
        (tmp_path / "results" / name).write_text("earlier")
    done = subprocess.run(["bash", str(ROOT / "slurm" / "scaling.sbatch")], env=env, cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert done.returncode != 0  # the report fails: the stub wrote no records
    launches = [launch.split() for launch in (tmp_path / "srun.log").read_text().splitlines()]
    shapes = [(launch[launch.index("-n") + 1], launch[launch.index("-N") + 1]) for launch in launches]
    assert shapes == [("1", "1"), ("2", "1"), ("4", "1"), ("8", "2")]
    # No report of the earlier sweep is left to pass for this one's.
    assert not [name for name in stale if (tmp_path / "results" / name).exists()]


@pytest.mark.parametrize("command, status, words", [
    (["sh", "-c", "exit 3"], 3, ""),
    (["sh", "-c", "kill -9 $$"], 137, ""),  # as a shell reports a child a signal ended
    (["/nonexistent/launcher"], 127, "mpigd: cannot run /nonexistent/launcher: No such file or directory"),
    ([], 2, "usage: python -m mpigd.batchjob LAUNCHER [ARGS...]"),
])
def test_the_batch_job_supervisor_exits_as_a_shell_would(command, status, words):
    done = subprocess.run([sys.executable, "-m", "mpigd.batchjob", *command], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == status and done.stderr.strip() == words, done.stderr


def test_a_preempted_run_keeps_its_status_where_scontrol_cannot_be_run(tmp_path):
    # Exit 75 inside a job whose node has no scontrol on the PATH: the run's status stands, one line
    # says why the job was not requeued (it said "cannot run sh", the launcher's name, and 127).
    env = dict(os.environ, SLURM_JOB_ID="4242", PATH=str(tmp_path))
    (tmp_path / "sh").symlink_to("/bin/sh")
    done = subprocess.run([sys.executable, "-m", "mpigd.batchjob", "sh", "-c", "exit 75"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 75, done.stderr
    assert done.stderr.splitlines() == ["mpigd: preempted; requeueing job 4242",
                                        "mpigd: cannot requeue job 4242: scontrol: No such file or directory"]
