"""slurm/train.sbatch on a real one-node Slurm cluster (see slurm_cluster.py)."""

import json
import sys

import numpy as np
import pytest

from mpirun import ROOT, mpigd

pytestmark = pytest.mark.slurm
TRAIN = ["--model", "linear", "--rows", "3001", "--features", "5", "--epochs", "40", "--l2", "0.01", "--quiet"]


def _params(directory):
    with np.load(directory / "params.npz", allow_pickle=False) as saved:
        return np.append(saved["coef"], saved["intercept"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    job = mpigd(1, "train", *TRAIN, "--out", str(out))
    assert job.returncode == 0, job.stderr
    return _params(out)


def _submit(slurm, tmp_path, *sbatch_args, env=None):
    out = tmp_path / "out"
    log = tmp_path / "job.log"
    slurm.env.update({"MPIGD_VENV": sys.prefix, **(env or {})})
    job_id, done = slurm.sbatch(f"--output={log}", f"--chdir={ROOT}", *sbatch_args,
                                str(ROOT / "slurm" / "train.sbatch"), *TRAIN, "--out", str(out), cwd=tmp_path)
    for name in (env or {}):
        slurm.env.pop(name)
    return job_id, done, out, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("launcher", ["srun", "mpiexec"])
def test_train_sbatch_runs_two_ranks_and_matches_one_rank(slurm, tmp_path, reference, launcher):
    job_id, done, out, log = _submit(slurm, tmp_path, env={"MPIGD_LAUNCHER": launcher})
    assert done.returncode == 0, log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranks"] == 2
    assert np.max(np.abs(_params(out) - reference)) <= 1e-10 * np.max(np.abs(reference))


def test_a_launch_of_independent_one_rank_worlds_is_refused(slurm, tmp_path):
    job_id, done, out, log = _submit(slurm, tmp_path, env={"MPIGD_SRUN_MPI": "none"})
    assert done.returncode != 0
    assert "should have 2 ranks but MPI sees 1" in log
    assert not out.exists()


def test_scaling_sbatch_sweeps_one_and_two_ranks(slurm, tmp_path):
    results = tmp_path / "results"
    slurm.env.update({"MPIGD_VENV": sys.prefix, "MPIGD_RESULTS": str(results)})
    try:
        _, done = slurm.sbatch(f"--output={tmp_path / 'job.log'}", f"--chdir={ROOT}",
                               str(ROOT / "slurm" / "scaling.sbatch"), "--rows", "20000", "--features", "8",
                               "--steps", "3", cwd=tmp_path)
    finally:
        for name in ("MPIGD_VENV", "MPIGD_RESULTS"):
            slurm.env.pop(name)
    assert done.returncode == 0, (tmp_path / "job.log").read_text()
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert [r["ranks"] for r in records] == [1, 2]
    assert (results / "report.csv").exists() and (results / "scaling-strong.png").exists()
