import os

import pytest

from slurm_cluster import LocalSlurm, SlurmUnavailable


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
