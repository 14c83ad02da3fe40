"""A real one-node Slurm cluster on localhost for the tests: Debian's slurm-wlm and munge.

Installed with apt when missing (as root); otherwise the Slurm tests are skipped with the reason.
The daemons run from a slurm.conf in a private directory, on free ports, and are stopped by their
PID files at the end; munged is stopped only if this fixture started it.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
MUNGE_DIRS = ("/etc/munge", "/run/munge", "/var/log/munge", "/var/lib/munge")
JOB_ID = re.compile(r"Submitted batch job (\d+)")


class SlurmUnavailable(Exception):
    """Why this machine cannot run a local Slurm cluster."""


def _run(*command: str, timeout: float = 60, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=check, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_installed() -> None:
    """Install slurm-wlm and munge with apt when they are missing; raise SlurmUnavailable if we cannot."""
    if all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SlurmUnavailable("slurm-wlm and munge are not installed and this is not a root shell with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        _run("apt-get", "update", "-qq", timeout=600, env=env)
        _run("apt-get", "install", "-y", "-qq", *PACKAGES, timeout=900, env=env)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        raise SlurmUnavailable(f"apt-get could not install {' '.join(PACKAGES)}: {error}") from None


def _munge_works() -> bool:
    try:
        encoded = _run("munge", "-n", check=False, timeout=10).stdout
        return "Success" in _run("unmunge", input=encoded, check=False, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


class LocalSlurm:
    """slurmctld + slurmd for this host, configured under ``root``. Use as a context manager."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.started_munged = False

    # -- set-up ----------------------------------------------------------------------------
    def _start_munge(self) -> None:
        if _munge_works():
            return
        if os.geteuid() != 0:
            raise SlurmUnavailable("munged is not running and starting it needs root")
        for directory in MUNGE_DIRS:
            os.makedirs(directory, exist_ok=True)
            shutil.chown(directory, "munge", "munge")
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        _run("su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged")
        self.started_munged = True
        for _ in range(50):
            if _munge_works():
                return
            time.sleep(0.1)
        raise SlurmUnavailable("munged started but munge -n | unmunge does not succeed")

    def _write_conf(self) -> None:
        state = self.root / "state"
        spool = self.root / "spool"
        for directory in (state, spool, self.root / "log"):
            directory.mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        self.conf.write_text("\n".join([
            "ClusterName=mpigdtest",
            f"SlurmctldHost={self.host}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            f"StateSaveLocation={state}",
            f"SlurmdSpoolDir={spool}",
            f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'slurmd.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=pmi2",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            "KillWait=5",
            "JobRequeue=1",
            # MPICH under srun names its shared-memory segment after the job and step ids. A rank
            # killed by an earlier cluster's test leaves its segment in /dev/shm, and a job of this
            # cluster with the same ids then read it and failed MPI_Init (seen here): ids of our own.
            f"FirstJobId={random.randrange(10_000, 60_000_000)}",
            f"NodeName={self.host} CPUs={cpus} RealMemory=8000 State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
            "",
        ]))

    def start(self) -> "LocalSlurm":
        ensure_installed()
        self._start_munge()
        self._write_conf()
        _run("slurmctld", env=self.env)
        _run("slurmd", env=self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = _run("sinfo", "-h", "-o", "%T", env=self.env, check=False).stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                self._warm_up()
                return self
            time.sleep(0.5)
        raise SlurmUnavailable(f"the node did not come up idle (sinfo: {state!r}); logs in {self.root / 'log'}")

    def _warm_up(self) -> None:
        """Throw-away steps before the tests' jobs. The first steps after slurmd started failed or
        hung now and then in MPI_Init with the PyPI MPICH wheel (UCX: "failed to unpack address");
        the steps after them did not (measured here: 1 failure in the first of 8 jobs, 0 in 24
        later ones). A time limit of one minute ends a hung warm-up step."""
        script = self.root / "warm-up.sh"
        script.write_text(f"#!/bin/sh\nsrun -n 2 true\nsrun --mpi=pmi2 -n 2 {sys.executable} -c 'from mpi4py import MPI'\n")
        try:
            _run("sbatch", "--wait", "-n", "2", "--time=1", f"--output={self.root / 'warm-up.log'}", str(script),
                 env=self.env, cwd=self.root, timeout=150, check=False)
        except subprocess.TimeoutExpired:
            self.command("scancel", "--full", "--name=warm-up.sh")

    # -- use ---------------------------------------------------------------------------------
    def sbatch(self, *args: str, cwd: Path, timeout: float = 300) -> tuple[int, subprocess.CompletedProcess]:
        """Submit with ``sbatch --wait ARGS``; return the job id and the finished sbatch process."""
        done = _run("sbatch", "--wait", *args, cwd=cwd, env=self.env, timeout=timeout, check=False)
        match = JOB_ID.search(done.stdout)
        if match is None:
            raise AssertionError(f"sbatch did not submit: {done.stdout}{done.stderr}")
        return int(match.group(1)), done

    def command(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a Slurm client command (squeue, scontrol, sacct...) against this cluster."""
        return _run(*args, env=self.env, timeout=timeout, check=False)

    # -- tear-down ---------------------------------------------------------------------------
    def stop(self) -> None:
        # Jobs first: with proctrack/linuxproc, stopping the daemons would leave their steps running.
        jobs = self.command("squeue", "-h", "-o", "%i").stdout.split()
        if jobs:
            self.command("scancel", "--full", *jobs)
            deadline = time.monotonic() + 20
            while self.command("squeue", "-h", "-o", "%i").stdout.split() and time.monotonic() < deadline:
                time.sleep(0.5)
        self.command("scontrol", "shutdown")
        for name in ("slurmd.pid", "slurmctld.pid"):
            self._kill_by_pid_file(self.root / name)
        if self.started_munged:
            self._kill_by_pid_file(Path("/run/munge/munged.pid"))

    @staticmethod
    def _kill_by_pid_file(path: Path) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid = int(path.read_text().strip())
                os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - 5 else signal.SIGKILL)
            except (OSError, ValueError):
                return  # no PID file, or the process is gone
            time.sleep(0.2)

    def __enter__(self) -> "LocalSlurm":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
