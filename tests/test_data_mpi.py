"""In-process MPI tests of the readers (run by run/test under mpiexec -n 2 and -n 4).

Each test works at any rank count, and every assertion is agreed across ranks first, so that a
failure on one rank fails the test everywhere instead of leaving the others in a collective.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mpigd import Config
from mpigd.data import generate, load_shard, synthetic
from mpigd.data.textio import TAIL_CHUNK
from mpigd.errors import MpigdError

ROWS, FEATURES, SEED = 55_000, 10, 5


def _all(comm, ok: bool) -> bool:
    flag = np.array([1 if ok else 0], dtype=np.int64)
    comm.allreduce_min(flag)
    return bool(flag[0])


@pytest.mark.mpi
@pytest.mark.parametrize("fmt", ["csv", "libsvm"])
def test_parallel_gen_then_read_own_byte_range(mpi_tmp_path, fmt):
    from mpigd.comm import world

    comm = world()
    path = os.path.join(str(mpi_tmp_path), f"big.{fmt}")
    written = generate.write(generate.Spec(ROWS, FEATURES, "regression", SEED, fmt, path, 0.9), comm)
    assert _all(comm, written == os.path.getsize(path) and written >= 10_000_000)
    shard = load_shard(Config(data=path, model="linear"), comm)
    X, y = synthetic.generate("regression", FEATURES, SEED, shard.row_start, shard.row_start + shard.n_local,
                              "float64", 0.9)
    span = shard.meta["read_span"]
    size = span["range_stop"] - span["range_start"]
    assert _all(comm, shard.n_global == ROWS and int(shard.counts.sum()) == ROWS)
    assert _all(comm, shard.counts[comm.rank] == shard.n_local)
    assert _all(comm, np.array_equal(shard.X.toarray() if shard.sparse else shard.X, X) and np.array_equal(shard.y, y))
    # The range, one byte before it and the one line that runs past it (read in TAIL_CHUNK pieces);
    # a line here is well under TAIL_CHUNK bytes, so that bounds it.
    assert _all(comm, span["read_start"] >= span["range_start"] - 1)
    assert _all(comm, span["bytes_read"] <= size + 1 + 2 * TAIL_CHUNK)


@pytest.mark.mpi
@pytest.mark.parametrize("fmt", ["csv", "libsvm"])
def test_a_file_whose_last_line_lacks_its_newline_reads_the_same(mpi_tmp_path, fmt):
    # The last rank's block then ended in a number, and the parser read on past the block's end:
    # 2 ranks refused a valid 200-row file ("line 102: a field is not a number").
    from mpigd.comm import world

    comm = world()
    whole = os.path.join(str(mpi_tmp_path), f"whole.{fmt}")
    cut = os.path.join(str(mpi_tmp_path), f"cut.{fmt}")
    generate.write(generate.Spec(2_000, 6, "classification", SEED, fmt, whole), comm)
    if comm.rank == 0:
        with open(whole, "rb") as source, open(cut, "wb") as target:
            target.write(source.read()[:-1])
    comm.barrier()
    expected = load_shard(Config(data=whole, model="logistic"), comm)
    shard = load_shard(Config(data=cut, model="logistic"), comm)
    dense = (lambda s: s.X.toarray()) if expected.sparse else (lambda s: s.X)
    assert _all(comm, shard.n_global == 2_000 and np.array_equal(dense(shard), dense(expected)))
    assert _all(comm, np.array_equal(shard.y, expected.y))


@pytest.mark.mpi
def test_a_csr_npz_is_split_by_rows_and_trains_as_on_one_rank(mpi_tmp_path):
    from mpigd import train
    from mpigd.comm import self_comm, world
    from mpigd.data.csr import CSRMatrix
    from mpigd.partition import block_range

    comm = world()
    rows = 301  # unequal blocks on 2 and 4 ranks
    dense, y = synthetic.generate("regression", 6, SEED, 0, rows, "float64", 0.4)
    X = CSRMatrix.from_dense(dense)
    path = os.path.join(str(mpi_tmp_path), "csr.npz")
    if comm.rank == 0:
        np.savez(path, indptr=X.indptr, indices=X.indices, data=X.data, shape=np.array(X.shape), y=y)
    comm.barrier()
    config = Config(data=path, model="linear", epochs=30, lr=0.3, l2=0.01, quiet=True)
    shard = load_shard(config, comm)
    start, stop = block_range(rows, comm.size, comm.rank)
    assert _all(comm, isinstance(shard.X, CSRMatrix) and shard.n_global == rows and shard.row_start == start)
    assert _all(comm, np.array_equal(shard.X.toarray(), dense[start:stop]) and np.array_equal(shard.y, y[start:stop]))
    got, alone = train(config, comm).params, train(config, self_comm()).params
    assert _all(comm, np.allclose(got, alone, rtol=1e-10, atol=1e-13))


@pytest.mark.mpi
@pytest.mark.parametrize("fmt", ["npy", "hdf5"])
def test_parallel_gen_of_an_array_format_holds_every_synthetic_row(mpi_tmp_path, fmt):
    # Every rank writes its own block of rows: a rank writing at another's offset (or not at all)
    # left rows of zeros, which still train, on a wrong data set.
    from mpigd.comm import world

    if fmt == "hdf5":
        h5py = pytest.importorskip("h5py")
    comm = world()
    rows = 4 * comm.size + 3  # unequal blocks
    output = os.path.join(str(mpi_tmp_path), "g" if fmt == "npy" else "g.h5")
    generate.write(generate.Spec(rows, 3, "regression", SEED, fmt, output), comm)
    ok = True
    if comm.rank == 0:
        X, y = synthetic.generate("regression", 3, SEED, 0, rows, "float64")
        if fmt == "npy":
            got_X, got_y = np.load(os.path.join(output, "X.npy")), np.load(os.path.join(output, "y.npy"))
        else:
            with h5py.File(output, "r") as handle:
                got_X, got_y = handle["X"][...], handle["y"][...]
        ok = np.array_equal(got_X, X) and np.array_equal(got_y, y)
    assert _all(comm, ok)


@pytest.mark.mpi
def test_parallel_text_gen_over_several_rounds_writes_the_rows_in_order(mpi_tmp_path):
    # Text rows are written in rounds of ROUND_ROWS rows per rank, each rank at a prefix sum of the
    # byte counts: from the second round on, a wrong offset overwrote or left gaps between rows.
    from mpigd.comm import self_comm, world

    comm = world()
    rows = generate.ROUND_ROWS * comm.size + 7
    path = os.path.join(str(mpi_tmp_path), "rounds.csv")
    generate.write(generate.Spec(rows, 1, "regression", SEED, "csv", path), comm)
    ok = True
    if comm.rank == 0:
        with open(path, "rb") as handle:
            ok = handle.readline() == b"x0,y\n"
        try:  # a damaged file must fail the test on every rank, not leave the others waiting
            shard = load_shard(Config(data=path, model="linear"), self_comm())
        except MpigdError:
            ok = False
        else:
            X, y = synthetic.generate("regression", 1, SEED, 0, rows, "float64")
            ok = ok and shard.n_global == rows and np.array_equal(shard.X, X) and np.array_equal(shard.y, y)
    assert _all(comm, ok)


@pytest.mark.mpi
def test_standardize_uses_the_global_statistics_whatever_each_ranks_magnitudes(mpi_tmp_path):
    # Each rank's rows of a feature may differ in size by orders of magnitude (rows sorted by
    # time, say); the mean and scale must still be those of the whole column, as one rank finds.
    from mpigd.comm import world
    from mpigd.data import standardize
    from mpigd.data.shard import Shard
    from mpigd.partition import block_range

    comm = world()
    rows = 10 * comm.size + 3
    index = np.arange(rows, dtype=np.float64)
    X_all = np.column_stack([10.0 ** (index // 10) + index, np.sin(index) * 1e-3, np.full(rows, 0.1)])
    start, stop = block_range(rows, comm.size, comm.rank)
    scaler = standardize.fit(Shard(X_all[start:stop].copy(), np.zeros(stop - start), rows, start, "memory"), comm)
    ok = (np.allclose(scaler.mean, X_all.mean(axis=0), rtol=1e-12)
          and np.allclose(scaler.scale[:2], X_all[:, :2].std(axis=0), rtol=1e-9) and scaler.scale[2] == 1.0)
    assert _all(comm, ok)


@pytest.mark.mpi
def test_libsvm_index_base_and_width_are_agreed_by_every_rank(mpi_tmp_path):
    # Only the first line uses index 0 and only the last uses the highest index: every rank must
    # read the file as zero-based and as wide as the whole file, as one rank does, even the ranks
    # whose own lines hold neither.
    from mpigd.comm import self_comm, world

    comm = world()
    rows = 12 * comm.size
    lines = ["1 0:0.5 2:1"] + [f"{i % 2} {1 + i % 3}:{i}.25" for i in range(1, rows - 1)] + ["0 1:2 9:3"]
    path = os.path.join(str(mpi_tmp_path), "base.svm")
    if comm.rank == 0:
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
    comm.barrier()
    shard = load_shard(Config(data=path, model="logistic"), comm)
    whole = load_shard(Config(data=path, model="logistic"), self_comm())
    rows_here = slice(shard.row_start, shard.row_start + shard.n_local)
    ok = shard.meta["zero_based"] is True and shard.X.shape[1] == whole.X.shape[1] == 10
    ok = ok and np.array_equal(shard.X.toarray(), whole.X.toarray()[rows_here])
    assert _all(comm, ok and np.array_equal(shard.y, whole.y[rows_here]))
