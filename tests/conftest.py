import atexit
import glob
import os
import shutil
import tempfile

import pytest

from slurm_cluster import LocalSlurm, SlurmUnavailable

# A tune file in the user's cache (where `mpigd tune` writes by default) or named by
# $MPIGD_TUNE_FILE would change what ring and auto do under test: the tests, and the jobs they
# launch, see only the tune files they write themselves.
os.environ.pop("MPIGD_TUNE_FILE", None)
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="mpigd-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A one-node Slurm cluster on localhost, up for the whole session (skipped where impossible)."""
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except BaseException as reason:  # never leave daemons behind, whatever went wrong
        cluster.stop()
        if not isinstance(reason, SlurmUnavailable):
            raise
        if os.environ.get("MPIGD_REQUIRE_SLURM"):  # CI: the Slurm tests must run, not skip
            pytest.fail(f"no local Slurm cluster: {reason}")
        pytest.skip(f"no local Slurm cluster: {reason}")
    yield cluster
    cluster.stop()


SHARED_MEMORY = "/dev/shm/mpich_shm_*"


def _in_use(paths: set[str]) -> set[str]:
    """Those of ``paths`` that some process has open or mapped (from /proc)."""
    used = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as maps:
                used.update(line.split(None, 5)[-1].strip().removesuffix(" (deleted)") for line in maps
                            if "/dev/shm/" in line)
            used.update(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:  # the process ended, or is not ours to read
            continue
    return paths & used


@pytest.fixture(scope="session", autouse=True)
def no_shared_memory_left_behind(request):
    """The fault tests kill ranks on purpose; MPICH then leaves their shared-memory segments in
    /dev/shm (2-4 MB each, about 30 a run), where they add up over runs and a later job that
    happens to get the same name reads a stale one. Remove, after the session, the segments that
    appeared during it and that no process uses. Not under --with-mpi: its ranks hold their own."""
    before = set(glob.glob(SHARED_MEMORY))
    yield
    if request.config.getoption("--with-mpi", default=False):
        return
    new = set(glob.glob(SHARED_MEMORY)) - before
    for path in new - _in_use(new):
        try:
            os.unlink(path)
        except OSError:
            pass
