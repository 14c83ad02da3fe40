"""Every allreduce strategy, at whatever rank count this runs on (``--with-mpi -m mpi``).

Each strategy must match a float64 reference sum to rounding and leave identical bits on every
rank, run after run. Assertions are agreed across ranks, so one failing rank fails them all
instead of leaving the others waiting in a collective.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from mpi4py import MPI

from mpigd.comm import allreduce, strategy_names
from mpigd.kernels import add_into

pytestmark = pytest.mark.mpi

STRATEGIES = ("native", "ring", "direct", "tree", "auto")
DTYPES = ("float32", "float64")


@pytest.fixture(scope="module")
def comm():
    # The first call of a kernel in a process loads it (about 0.4 s here). Inside the first
    # collective, on 8 ranks sharing 2 cores, the ranks that had loaded it spun in MPI while the
    # others loaded: 16 s for the first float32 ring. Loaded before any message, it is not timed
    # under the collectives.
    for dtype in DTYPES:
        add_into(np.zeros(1, dtype=dtype), np.zeros(1, dtype=dtype))
    dup = MPI.COMM_WORLD.Dup()
    yield dup
    dup.Free()


def lengths(p: int) -> list[int]:
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 1000, 2**20 + 3})


def values(rank: int, n: int, dtype: str) -> np.ndarray:
    """Rank ``rank``'s input: rounded in ``dtype``, different per rank, cheap to make anywhere."""
    i = np.arange(n, dtype=np.float64)
    return (np.sin(0.37 * i + 1.3 * rank) * (1.0 + 0.5 * rank) + 1e-3 * rank).astype(dtype)


def agree(comm, ok: bool, what: str) -> None:
    """Assert ``ok`` on every rank at once; the message names the ranks that failed."""
    flags = np.zeros(comm.Get_size(), dtype=np.int64)
    flags[comm.Get_rank()] = 0 if ok else 1
    comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.SUM)
    failed = np.flatnonzero(flags).tolist()
    assert not failed, f"{what}: failed on ranks {failed} of {comm.Get_size()}"


def bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def as_on_rank_0(comm, a: np.ndarray) -> bool:
    """Whether this rank's ``a`` has the same bits as rank 0's."""
    root = a.copy()
    if a.size:
        comm.Bcast(root, root=0)
    return np.array_equal(bits(root), bits(a))


def test_all_strategies_registered():
    assert set(STRATEGIES) <= set(strategy_names())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_sum_is_right_and_bitwise_identical(comm, strategy: str, dtype: str):
    p, rank = comm.Get_size(), comm.Get_rank()
    eps = np.finfo(dtype).eps
    for n in lengths(p):
        inputs = [values(r, n, dtype) for r in range(p)]
        reference = np.zeros(n)
        magnitude = np.zeros(n)
        for x in inputs:
            reference += x
            magnitude += np.abs(x.astype(np.float64))
        result = inputs[rank].copy()
        allreduce(result, strategy, comm)
        error = np.abs(result.astype(np.float64) - reference)
        agree(comm, bool(np.all(error <= p * eps * magnitude + 1e-300)),
              f"{strategy} {dtype} n={n}: max error {error.max(initial=0):.3g}")

        again = inputs[rank].copy()
        allreduce(again, strategy, comm)
        agree(comm, np.array_equal(bits(again), bits(result)), f"{strategy} {dtype} n={n}: not repeatable")

        agree(comm, as_on_rank_0(comm, result), f"{strategy} {dtype} n={n}: bits differ from rank 0's")


def _read_only() -> np.ndarray:
    array = np.zeros(8)
    array.flags.writeable = False
    return array


REFUSED = {"non-contiguous": lambda: np.zeros(8)[::2], "bool (was OR-ed)": lambda: np.ones(8, dtype=bool),
           "float16 (tree hung on 3 ranks)": lambda: np.ones(8, dtype=np.float16),
           "int64": lambda: np.ones(8, dtype=np.int64), "read-only": _read_only,
           # A packed record's field: mpi4py had no datatype for it (KeyError mid-sum, the others hung).
           "unaligned": lambda: np.zeros(1, dtype=[("flag", "u1"), ("grad", "f8", (8,))])[0]["grad"]}


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_buffer_that_is_not_summable_in_place_is_refused_before_any_message(comm, strategy: str, case: str):
    with pytest.raises(TypeError):
        allreduce(REFUSED[case](), strategy, comm)
    buffer = np.ones(8)  # and the strategy still works: no rank was left half-way through a sum
    allreduce(buffer, strategy, comm)
    agree(comm, bool(np.all(buffer == comm.Get_size())), f"{strategy} after refusing {case}")


def _raised_on_every_rank(comm, call) -> str:
    """The message of the exception ``call`` raised; agreed: it must raise on every rank."""
    try:
        call()
    except (TypeError, ValueError) as error:
        agree(comm, True, "raised")
        return f"{type(error).__name__}: {error}"
    agree(comm, False, "check=True let a mismatch through on this rank")
    return ""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_check_makes_every_rank_refuse_buffers_that_differ_between_ranks(comm, strategy: str):
    rank, p = comm.Get_rank(), comm.Get_size()
    if p < 2:
        pytest.skip("needs two ranks")
    longer = _raised_on_every_rank(comm, lambda: allreduce(np.ones(10 + (rank == p - 1)), strategy, comm, check=True))
    assert longer == "ValueError: allreduce needs the same length on every rank; lengths range from 10 to 11"
    dtype = np.float32 if rank == 1 else np.float64
    mixed = _raised_on_every_rank(comm, lambda: allreduce(np.ones(10, dtype=dtype), strategy, comm, check=True))
    assert mixed == "ValueError: allreduce needs the same dtype on every rank; some ranks have float32, others float64"
    # A bad array on some ranks: its own reason there, the ranks named everywhere else.
    bad = np.ones(8, dtype=np.int64) if rank >= 1 else np.ones(8)
    message = _raised_on_every_rank(comm, lambda: allreduce(bad, strategy, comm, check=True))
    named = "rank 1" if p == 2 else f"rank 1 (and others, up to rank {p - 1})"
    assert message == ("TypeError: allreduce sums float32 or float64 arrays; got int64" if rank else
                       f"TypeError: allreduce: the buffer of {named} is not a C-contiguous, aligned, writeable "
                       "float32 or float64 array")
    # Buffers that agree are summed as without the check, to the bit.
    checked, unchecked = values(rank, 1001, "float64"), values(rank, 1001, "float64")
    allreduce(checked, strategy, comm, check=True)
    allreduce(unchecked, strategy, comm)
    agree(comm, np.array_equal(bits(checked), bits(unchecked)), f"{strategy} with check=True")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_messages_of_the_callers_own_on_the_communicator_are_left_alone(comm, strategy: str):
    """As MPI_Allreduce's messages never match a caller's point-to-point ones, ours must not: on
    the caller's communicator itself, tree took a message rank 0 had in flight to rank 1 (tags
    21-23) for rank 0's part of the sum, ring failed (message truncated) and direct hung."""
    rank, p = comm.Get_rank(), comm.Get_size()
    if p < 2:
        pytest.skip("needs two ranks")
    tags = range(64)  # every tag a strategy could use, and more
    sent = [np.full(4, 1000.0 + tag) for tag in tags]
    requests = [comm.Isend(message, dest=1, tag=tag) for tag, message in zip(tags, sent)] if rank == 0 else []
    buffer = values(rank, 4, "float64")
    expected = sum(values(r, 4, "float64") for r in range(p))
    allreduce(buffer, strategy, comm)
    received = [np.zeros(4) for _ in tags]
    if rank == 1:
        for tag, message in zip(tags, received):
            comm.Recv(message, source=0, tag=tag)
    MPI.Request.Waitall(requests)
    intact = rank != 1 or all(np.array_equal(got, put) for got, put in zip(received, sent))
    agree(comm, intact and np.allclose(buffer, expected, rtol=1e-12), f"{strategy} beside the caller's messages")


def test_allreduce_takes_a_communicator_too(comm):
    from mpigd.comm import Communicator

    buffer = np.ones(5)
    allreduce(buffer, "ring", Communicator(comm))
    agree(comm, bool(np.all(buffer == comm.Get_size())), "allreduce over a Communicator")


def test_auto_does_not_keep_the_callers_buffer_alive(comm):
    import weakref

    # Above tree's persistent-request size: tree keeps the one small buffer its requests point at.
    buffer = np.ones(20_000)
    allreduce(buffer, "auto", comm)
    alive = weakref.ref(buffer)
    del buffer
    agree(comm, alive() is None, "auto held the caller's buffer after its last use")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_buffer_of_any_shape_is_summed_item_by_item(comm, strategy: str):
    """A 2-D or 3-D array (the normal solver's Gram matrix) gives the bits of the same items laid out
    flat: the ring and tree used to cut it by rows, and summed the wrong items or failed."""
    p, rank = comm.Get_size(), comm.Get_rank()
    ok = True
    for shape in ((p + 1, 7), (9, 9), (2, 3, p + 2), (1027, 1029)):
        n = int(np.prod(shape))
        flat_result = values(rank, n, "float64")
        allreduce(flat_result, strategy, comm)
        shaped = values(rank, n, "float64").reshape(shape)
        for _ in range(2):  # the same array again: a trainer's buffer
            again = shaped.copy()
            allreduce(again, strategy, comm)
            ok &= again.shape == shape and np.array_equal(bits(again.reshape(-1)), bits(flat_result))
    agree(comm, ok, f"{strategy}: shaped buffers differ from the same items laid out flat")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_repeated_calls_on_one_buffer(comm, strategy: str):
    """The same array reduced again and again (a trainer's gradient): set-ups kept between calls."""
    p, rank = comm.Get_size(), comm.Get_rank()
    ok = True
    for n in (1, 3, 1000):
        buffer = np.full(n, rank + 1.0)
        for call in range(4):
            allreduce(buffer, strategy, comm)
            ok &= bool(np.all(buffer == p ** call * p * (p + 1) / 2))
        buffer[:] = values(rank, n, "float64")  # rounded sums, same array
        allreduce(buffer, strategy, comm)
        ok &= as_on_rank_0(comm, buffer)
    agree(comm, ok, f"{strategy}: repeated calls on one buffer")


@pytest.mark.parametrize("segment_bytes", [0, 64, 4096])
def test_ring_segments(comm, segment_bytes: int):
    """Ring's pipelined path (small segments) and whole-chunk path, whatever this machine picks."""
    from mpigd.comm.strategies import make_strategy

    p, rank = comm.Get_size(), comm.Get_rank()
    ring = make_strategy("ring", comm)
    ring.segment_bytes = segment_bytes  # the same on every rank, as the constructor guarantees
    ok = True
    for n in (7, 1000, 4099, 2**16 + 3):
        inputs = [values(r, n, "float64") for r in range(p)]
        buffer = inputs[rank].copy()
        ring.allreduce(buffer)
        ok &= bool(np.allclose(buffer, np.sum(inputs, axis=0), rtol=1e-12, atol=1e-12))
        ok &= as_on_rank_0(comm, buffer)
    agree(comm, ok, f"ring with {segment_bytes}-byte segments")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_ranks_bound_to_their_own_cores_keep_ring_segments(comm):
    """Under ``mpiexec -bind-to core`` each rank sees one CPU; the node still has one per rank."""
    from mpigd.comm.strategies import make_strategy
    from mpigd.comm.strategies.ring import SEGMENT_BYTES

    p, rank = comm.Get_size(), comm.Get_rank()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < p:
        pytest.skip(f"{p} ranks on {len(cpus)} CPUs share cores")
    os.sched_setaffinity(0, {cpus[rank]})
    try:
        segment_bytes = make_strategy("ring", comm).segment_bytes
    finally:
        os.sched_setaffinity(0, cpus)
    agree(comm, segment_bytes == SEGMENT_BYTES, f"ring bound to one core each: {segment_bytes}-byte segments")


def test_ring_takes_its_segment_from_the_tune_file_of_its_rank_count(comm, tmp_path):
    """``mpigd tune`` chooses the ring's segment; only rank 0 reads the file, every rank obeys it."""
    from mpigd.comm.costmodel import CostModel
    from mpigd.comm.strategies import make_strategy
    from mpigd.comm.strategies.ring import SEGMENT_BYTES
    from mpigd.comm.tunefile import Tuning, save

    p = comm.Get_size()
    here, other = tmp_path / "here.json", tmp_path / "other.json"
    if comm.Get_rank() == 0:  # the other ranks' paths name no file: they must not be read
        save(Tuning(p, CostModel(), None, ring_segment_bytes=96 * 1024), here)
        save(Tuning(p + 1, CostModel(), None, ring_segment_bytes=96 * 1024), other)
    comm.Barrier()
    crowded = make_strategy("ring", comm).segment_bytes == 0  # whole chunks: ranks share cores
    measured = make_strategy("ring", comm, str(here)).segment_bytes
    elsewhere = make_strategy("ring", comm, str(other)).segment_bytes
    agree(comm, measured == (0 if crowded else 96 * 1024), f"ring with this rank count's file: {measured}")
    agree(comm, elsewhere == (0 if crowded else SEGMENT_BYTES), f"ring with another rank count's file: {elsewhere}")


def test_a_named_tune_file_that_is_missing_stops_ring_on_every_rank(comm, tmp_path):
    from mpigd.comm.strategies import make_strategy
    from mpigd.errors import UsageError

    with pytest.raises(UsageError, match="cannot use the tune file for the ring strategy: ") as raised:
        make_strategy("ring", comm, str(tmp_path / "missing.json"))
    # Rank 0, which reads the file, says why; the others point to it.
    assert ("no such file" if comm.Get_rank() == 0 else "see rank 0") in str(raised.value)


def test_direct_gives_the_same_bits_with_whole_chunks_as_with_segments(comm):
    """Crowded nodes take whole chunks one peer at a time; the order of each element's sum is kept."""
    from mpigd.comm.strategies import make_strategy

    p, rank = comm.Get_size(), comm.Get_rank()
    segmented, whole = make_strategy("direct", comm), make_strategy("direct", comm)
    segmented.segment_bytes, whole.segment_bytes = 1, 0  # the same on every rank
    ok = True
    for n in (p - 1, 1000, 2**20 + 3):
        inputs = [values(r, n, "float64") for r in range(p)]
        first, second = inputs[rank].copy(), inputs[rank].copy()
        segmented.allreduce(first)
        whole.allreduce(second)
        ok &= np.array_equal(bits(first), bits(second))
        ok &= bool(np.allclose(first, np.sum(inputs, axis=0), rtol=1e-12, atol=1e-12))
    agree(comm, ok, "direct: whole chunks against segments")


def test_strategies_auto_may_swap_give_the_same_bits(comm):
    """``auto``'s trial swaps a strategy only for one that :func:`same_bits` names: check every pair.

    On 2 ranks that is all of them; on more, ring and direct (direct sums in the ring's order),
    with segments and with whole chunks, and the ring in blocks (the ring's own trial swaps those).
    """
    from mpigd.comm.strategies import make_strategy
    from mpigd.comm.strategies.auto import same_bits
    from mpigd.comm.strategies.calibration import CANDIDATES

    p, rank = comm.Get_size(), comm.Get_rank()
    strategies = {name: make_strategy(name, comm) for name in CANDIDATES}
    # The same on every rank: whole chunks (as where ranks share cores), and the ring in blocks of
    # 64 bytes (many blocks, ragged last pieces) and 64 KiB, with segments and with whole chunks.
    variants = {"whole ring": ("ring", 0, None), "whole direct": ("direct", 0, None),
                "ring, 64 B blocks": ("ring", None, 64), "ring, 64 KiB blocks": ("ring", None, 64 << 10),
                "whole ring, 64 KiB blocks": ("ring", 0, 64 << 10)}
    for label, (name, segment_bytes, block_bytes) in variants.items():
        strategy = variants[label] = make_strategy(name, comm)
        if segment_bytes is not None:
            strategy.segment_bytes = segment_bytes
        if block_bytes is not None:
            strategy.block_bytes = block_bytes
    failures = []
    for dtype in DTYPES:
        for n in (p + 1, 1000, 2**20 + 3):
            inputs = [values(r, n, dtype) for r in range(p)]
            results = {}
            for label, strategy in [*strategies.items(), *variants.items()]:
                if label == "ring, 64 B blocks" and n > 1000:
                    continue  # a million one-element blocks: minutes on 8 oversubscribed ranks
                results[label] = inputs[rank].copy()
                strategy.allreduce(results[label])
            for name in CANDIDATES:
                partners = [*same_bits(name, p)] + ([v for v in variants if v in results]
                                                    if "ring" in same_bits(name, p) else [])
                failures += [f"{name}/{other} {dtype} n={n}" for other in partners
                             if not np.array_equal(bits(results[name]), bits(results[other]))]
    agree(comm, not failures, f"different bits: {failures[:4]}")


def test_auto_times_its_interchangeable_candidates_once_per_size(comm, tmp_path):
    """From 256 KiB auto checks the table's choice in the launch, among strategies with its bits."""
    from mpigd.comm.costmodel import CostModel, Crossover
    from mpigd.comm.strategies import make_strategy
    from mpigd.comm.strategies.auto import same_bits
    from mpigd.comm.tunefile import Tuning, save

    p, rank = comm.Get_size(), comm.Get_rank()
    ok, seen = True, []
    for table_choice in ("native", "ring"):
        tune = tmp_path / f"{table_choice}.json"
        if rank == 0:
            save(Tuning(p, CostModel(), Crossover((), (table_choice,))), tune)
        comm.Barrier()
        auto = make_strategy("auto", comm, str(tune))
        small, large = values(rank, 1000, "float64"), values(rank, 300_000, "float64")  # 8 KB, 2.4 MB
        for buffer in (small, large, large, small):
            expected = buffer.copy()
            make_strategy(auto.choose(buffer.nbytes), comm).allreduce(expected)
            auto.allreduce(buffer)
            ok &= np.array_equal(bits(buffer), bits(expected))  # the user's data summed once, same bits
        expected_contenders = list(same_bits(table_choice, p)) if p > 1 else [table_choice]
        trial = auto.trials.get(large.nbytes, {})
        chosen = auto.choose(large.nbytes)
        seen.append((table_choice, trial, chosen))
        if len(expected_contenders) > 1:
            ok &= list(trial) == expected_contenders and all(s > 0 for s in trial.values())
            ok &= chosen == min(trial, key=trial.get)
            # The slowest rank's times: every rank holds rank 0's figures.
            ok &= as_on_rank_0(comm, np.array(list(trial.values())))
        else:
            ok &= not trial and chosen == table_choice
        ok &= auto.describe() == "auto->" + (chosen if chosen == table_choice else f"{chosen}+{table_choice}")
        ok &= set(auto.trials) <= {large.nbytes} and auto.choose(small.nbytes) == table_choice
    agree(comm, ok, f"auto's trial on {p} ranks: {seen}")


def test_the_ring_times_blocks_once_for_a_large_message(comm):
    """From 32 MiB the ring tries blocks (same bits) once per size: by default on 3 ranks or more
    with a core each; here on any rank count, asked to (blocks work in whole chunks too)."""
    from mpigd.comm.strategies.ring import BLOCK_CANDIDATES, BLOCK_TRIAL_MIN_BYTES, RingAllreduce

    p, rank = comm.Get_size(), comm.Get_rank()
    ring, plain = RingAllreduce(comm), RingAllreduce(comm, block_bytes=0)
    ok = ring.block_bytes == (None if p > 2 and ring.segment_bytes else 0)
    ring.block_bytes = None  # the same on every rank
    n = BLOCK_TRIAL_MIN_BYTES // 8
    first, expected = values(rank, n, "float64"), values(rank, n, "float64")
    ring.allreduce(first)
    plain.allreduce(expected)
    ok &= np.array_equal(bits(first), bits(expected))  # summed once, with the plain ring's bits
    second = values(rank + 1, n, "float64")
    ring.allreduce(second)  # the same size again: no second trial
    times = np.array(list(ring.trials.get(n * 8, {}).values()))
    if p > 1:
        ok &= list(ring.trials) == [n * 8] and list(ring.trials[n * 8]) == (
            ["no blocks"] + [f"{b >> 20} MiB blocks" for b in BLOCK_CANDIDATES])
        ok &= bool(np.all(times > 0)) and as_on_rank_0(comm, times)  # the slowest rank's, everywhere
    else:
        ok &= not ring.trials
    agree(comm, ok, f"ring's block trial on {p} ranks: {ring.block_bytes} {ring.trials}")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_numpy_subclass_is_summed_like_a_plain_array(comm, strategy: str):
    """np.matrix stays 2-D when flattened (the ring hung, tree and auto summed one item of it) and
    the Numba kernels refuse a masked array (the ring raised half-way through a sum, tree hung)."""
    p, rank = comm.Get_size(), comm.Get_rank()
    plain = values(rank, 12, "float64")
    allreduce(plain, strategy, comm)
    matrix = np.matrix(values(rank, 12, "float64").reshape(3, 4))
    allreduce(matrix, strategy, comm)
    masked = np.ma.masked_array(values(rank, 12, "float64"), mask=np.zeros(12, dtype=bool))
    allreduce(masked, strategy, comm)
    agree(comm, np.array_equal(bits(np.asarray(matrix).reshape(-1)), bits(plain)), f"{strategy}: np.matrix")
    agree(comm, np.array_equal(bits(masked.data), bits(plain)), f"{strategy}: masked array")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_intercommunicator_is_refused_on_every_rank(comm, strategy: str):
    """The ring and auto hung building themselves on one, tree returned every buffer unsummed."""
    rank, p = comm.Get_rank(), comm.Get_size()
    if p < 2:
        pytest.skip("needs two ranks")
    local = comm.Split(rank % 2, rank)
    inter = local.Create_intercomm(0, comm, 1 - rank % 2, tag=7)
    try:
        raised = False
        try:
            allreduce(np.ones(4), strategy, inter)
        except TypeError as error:
            raised = "intercommunicator" in str(error)
        agree(comm, raised, f"{strategy} on an intercommunicator")
    finally:
        inter.Free()
        local.Free()
