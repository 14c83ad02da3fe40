import atexit
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
