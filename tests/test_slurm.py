"""slurm/train.sbatch on a real one-node Slurm cluster (see slurm_cluster.py)."""

import json
import sys
import time
import warnings

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


# About 1.4 s of steps on 2 ranks of an idle 2-core VM after the first checkpoint, which the signal
# waits for (2,000 epochs left 0.5 s, little for the signal's way through Slurm on a busy machine).
PREEMPTIBLE = ["--model", "linear", "--rows", "50000", "--features", "16", "--epochs", "5000", "--quiet",
               "--checkpoint-every", "100"]


def _job_fields(slurm, job_id):
    text = slurm.command("scontrol", "show", "job", "-o", str(job_id)).stdout
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def _job_state(slurm, job_id):
    fields = _job_fields(slurm, job_id)
    return fields.get("JobState", ""), int(fields.get("Restarts", "0") or 0)


def _wait_for_the_requeued_run(slurm, job_id, restarts):
    """Release the job once it is pending after ``restarts`` restarts and wait for that run to end;
    return its final state and the (state, restarts) pairs seen on the way."""
    deadline, released, seen, ended_at = time.monotonic() + 240, False, [], None
    while True:
        state, restarts_now = _job_state(slurm, job_id)
        if not seen or seen[-1] != (state, restarts_now):
            seen.append((state, restarts_now))
        if state == "PENDING" and restarts_now >= restarts and not released:
            # Slurm holds a requeued job back for a while (BeginTime); the hold is not under test.
            released = slurm.command("scontrol", "update", f"JobId={job_id}", "StartTime=now").returncode == 0
        ended = state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL") and restarts_now >= restarts
        ended_at = (ended_at or time.monotonic()) if ended else None
        # Over once the requeued run was seen running, or the end has lasted (a short run can
        # end between two looks).
        if ended and (("RUNNING", restarts) in seen or time.monotonic() - ended_at > 5):
            return state, seen
        assert time.monotonic() < deadline, f"job {job_id} is {state} after {restarts_now} restarts; states {seen}"
        time.sleep(0.5)


def _what_slurm_says(slurm, job_id):
    """The job's Reason and ExitCode, and the daemons' last log lines that name it."""
    fields = _job_fields(slurm, job_id)
    said = [f"Reason={fields.get('Reason')} ExitCode={fields.get('ExitCode')}"]
    for name in ("slurmctld.log", "slurmd.log"):
        path = slurm.root / "log" / name
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        said += [f"{name}: {line}" for line in lines if str(job_id) in line][-8:]
    return "\n".join(said)


def test_a_preempted_job_requeues_resumes_and_matches_an_uninterrupted_run(slurm, tmp_path):
    reference = tmp_path / "reference"
    job = mpigd(2, "train", *PREEMPTIBLE, "--out", str(reference), timeout=240)
    assert job.returncode == 0, job.stderr
    out, log = tmp_path / "out", tmp_path / "job.log"
    # mpiexec inside the allocation: a requeued job released at once reuses its step ids, and the
    # MPICH wheel's UCX start-up under srun's PMI2 then failed to exchange addresses (seen here).
    slurm.env.update({"MPIGD_VENV": sys.prefix, "MPIGD_LAUNCHER": "mpiexec"})
    try:
        submitted = slurm.command("sbatch", "--parsable", f"--output={log}", f"--chdir={ROOT}",
                                  str(ROOT / "slurm" / "train.sbatch"), *PREEMPTIBLE, "--out", str(out))
    finally:
        for name in ("MPIGD_VENV", "MPIGD_LAUNCHER"):
            slurm.env.pop(name)
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.strip().split(";")[0])
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("ckpt-*.json")):  # the run is under way
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
        time.sleep(0.2)
    # What Slurm does ahead of a time limit with --signal=B:USR1@120, sent now.
    assert slurm.command("scancel", "--signal=USR1", "--batch", str(job_id)).returncode == 0
    state, seen = _wait_for_the_requeued_run(slurm, job_id, restarts=1)
    if state != "COMPLETED":
        # One CI run in some 50 saw the requeued run end FAILED with no word of its own in the log
        # (PENDING -> FAILED), which a rerun of the same commit did not repeat. Requeue it once
        # more, as a user would, and say so with what Slurm reported: the resume must still be exact.
        warnings.warn(f"job {job_id}'s requeued run ended {state} (states {seen}); requeued once more. "
                      f"{_what_slurm_says(slurm, job_id)}")
        assert slurm.command("scontrol", "requeue", str(job_id)).returncode == 0
        state, seen_again = _wait_for_the_requeued_run(slurm, job_id, restarts=2)
        seen += seen_again
    text = log.read_text()
    assert state == "COMPLETED", f"states {seen}; log:\n{text}\n{_what_slurm_says(slurm, job_id)}"
    assert "preempted" in text and "requeueing job" in text
    summary = json.loads((out / "summary.json").read_text())
    epochs = int(PREEMPTIBLE[PREEMPTIBLE.index("--epochs") + 1])
    assert summary["resumed_from_step"] is not None and summary["steps"] == epochs  # gd: a step an epoch
    assert np.array_equal(_params(out), _params(reference))  # bitwise: the resume is exact
