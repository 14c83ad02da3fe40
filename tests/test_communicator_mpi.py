"""The Communicator under pytest-mpi: run by run/test on 2 and 4 ranks (and skipped serially)."""

import json

import numpy as np
import pytest

from mpigd.errors import InputError, MpigdError


def _world():
    from mpigd.comm import world

    return world()


def _all(comm, ok: bool) -> bool:
    """True on every rank when ``ok`` holds on every rank: asserts agreed across ranks."""
    flag = np.array([1 if ok else 0], dtype=np.int64)
    comm.allreduce_min(flag)
    return bool(flag[0])


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_allreduce_sums_and_counts_bytes(dtype):
    comm = _world()
    buffer = np.arange(10, dtype=dtype) * (comm.rank + 1)
    comm.allreduce(buffer)
    expected = np.arange(10, dtype=dtype) * sum(range(1, comm.size + 1))
    assert _all(comm, np.array_equal(buffer, expected))
    assert comm.bytes_reduced == buffer.nbytes and comm.allreduce_calls == 1


@pytest.mark.mpi(min_size=2)
def test_allgather_hands_every_rank_every_message_and_counts_bytes():
    comm = _world()
    message = np.arange(5, dtype=np.float64) + 10 * comm.rank
    gathered = np.full((comm.size, 5), np.nan)
    comm.allgather(message, gathered)
    expected = np.arange(5) + 10 * np.arange(comm.size)[:, None]
    assert _all(comm, np.array_equal(gathered, expected))
    assert comm.bytes_gathered == comm.size * 5 * 8 and comm.bytes_reduced == 0 and comm.comm_seconds > 0


@pytest.mark.mpi(min_size=2)
def test_agree_raises_the_lowest_failing_ranks_error_everywhere():
    comm = _world()
    comm.agree(None)  # nobody failed: returns on every rank
    last = comm.size - 1
    error = InputError(f"bad rows on rank {comm.rank}") if comm.rank in (1, last) else None
    with pytest.raises(InputError, match="^bad rows on rank 1$"):
        comm.agree(error)
    with pytest.raises(MpigdError, match="plain"):
        comm.agree(MpigdError("plain") if comm.rank == last else None)


@pytest.mark.mpi(min_size=2)
def test_sub_communicator_holds_the_first_ranks():
    comm = _world()
    sub = comm.sub(comm.size - 1)
    if comm.rank == comm.size - 1:
        ok = sub is None
    else:
        ones = np.ones(3)
        sub.allreduce(ones)
        ok = sub.size == comm.size - 1 and np.all(ones == comm.size - 1)
    assert _all(comm, ok)


@pytest.mark.mpi(min_size=2)
def test_a_scaling_measurement_is_the_same_record_on_every_rank():
    """Each step's time is the slowest rank's: the record (medians, min, max) must not be this rank's own."""
    from mpigd.bench.scaling import measure

    comm = _world()
    record = measure(comm, "weak", 2000, 4, "linear", "float64", steps=3, warmup=1)
    text = json.dumps(record, sort_keys=True)
    texts = comm.mpi_comm.allgather(text)
    assert _all(comm, all(t == texts[0] for t in texts)), texts
    assert record["rows"] == 2000 * comm.size and record["rows_per_rank"] == 2000
