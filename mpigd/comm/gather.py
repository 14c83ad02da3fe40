"""Moving small byte strings (JSON, file images) between ranks with buffer calls: no pickle.

Used for control data that is not on the hot path: every rank's RNG state gathered into a
checkpoint, a checkpoint broadcast from rank 0 on resume, per-rank data digests.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm.communicator import Communicator


def gather_bytes(comm: Communicator, payload: bytes, root: int = 0) -> list[bytes] | None:
    """Every rank's ``payload``, in rank order, on ``root``; ``None`` elsewhere. Collective."""
    mine = np.frombuffer(payload, dtype=np.uint8)
    lengths = np.zeros(comm.size, dtype=np.int64) if comm.rank == root else None
    comm.mpi_comm.Gather(np.array([mine.size], dtype=np.int64), lengths, root=root)
    if comm.rank != root:
        comm.mpi_comm.Gatherv(mine, None, root=root)
        return None
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    received = np.empty(int(lengths.sum()), dtype=np.uint8)
    comm.mpi_comm.Gatherv(mine, [received, lengths, offsets, MPI.BYTE], root=root)
    return [received[o : o + n].tobytes() for o, n in zip(offsets, lengths)]


def broadcast_bytes(comm: Communicator, payload: bytes | None, root: int = 0) -> bytes:
    """``payload`` of ``root`` on every rank (other ranks pass ``None``). Collective."""
    length = np.array([len(payload) if comm.rank == root else 0], dtype=np.int64)
    comm.mpi_comm.Bcast(length, root=root)
    data = (np.frombuffer(payload, dtype=np.uint8).copy() if comm.rank == root
            else np.empty(int(length[0]), dtype=np.uint8))
    if data.size:
        comm.mpi_comm.Bcast(data, root=root)
    return data.tobytes()
