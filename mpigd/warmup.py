"""Fill Numba's on-disk cache ahead of a job: ``mpigd compile``.

A kernel compiles on its first call in a process that finds no cache entry for it, and every
rank that starts together compiles the same kernels: a first logistic step takes 10-13 s here
(the fused kernel with its inlined helpers), on every rank of a cold job, and each rank writes the
same cache files. Run once, on the rank count at hand, this command trains tiny synthetic
problems down every path training takes (each model, dense and CSR rows, every algorithm and
optimizer, L1 and clipping, the text readers, one rank and several) so that Numba compiles their
kernels into the cache; later jobs load them (about 3 ms a kernel).

The work is dealt across the ranks: the one-rank paths one rank each, the several-rank paths
(the per-step kernels and the ring's add) a pair of ranks each. An input of another kind may
still compile a kernel on first use; ``summary.json``'s ``jit`` counts the misses.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mpigd.config import DTYPES, MODELS, OPTIMIZERS, Config
from mpigd.errors import UsageError

# Small enough that a path's training is milliseconds once compiled; the CSR rows wide enough
# that a step of 2 rows touches under an eighth of the weights, as the lazy sparse paths need.
_ROWS, _FEATURES = 96, 6
_WIDE = dict(features=2048, density=0.002)


def _variants(model: str) -> list[dict[str, Any]]:
    """The option sets that select distinct kernels for ``model`` (dense rows, then CSR rows)."""
    runs: list[dict[str, Any]] = [dict(algo="gd"), dict(algo="lbfgs"),
                                  dict(algo="local-sgd", batch_size=4, local_steps=3)]
    runs += [dict(algo="sgd", batch_size=4, optimizer=name) for name in OPTIMIZERS]
    runs += [dict(algo="sgd", batch_size=4, l1=1e-3, clip_grad_norm=1.0), dict(algo="gd", l1=1e-3)]
    if model == "mlp":
        heads = [dict(activation="tanh"), dict(task="regression")]
        return runs + [dict(algo="gd", **head) for head in heads]
    runs.append(dict(algo="owlqn", l1=1e-3))
    if model == "linear":
        runs.append(dict(algo="normal"))
    sparse = [dict(algo="gd"), dict(algo="lbfgs"), dict(algo="sgd", batch_size=2),
              dict(algo="sgd", batch_size=2, optimizer="adam"), dict(algo="sgd", batch_size=2, l1=1e-3),
              dict(algo="local-sgd", batch_size=2, local_steps=3)]
    return runs + [dict(run, **_WIDE) for run in sparse]


def workloads(models: tuple[str, ...] = MODELS, dtypes: tuple[str, ...] = DTYPES) -> list[dict[str, Any]]:
    """The :class:`~mpigd.config.Config` settings of every tiny training :func:`fill_cache` runs for
    ``models`` and ``dtypes``, each on one rank and on two, where the kernels differ (one rank takes
    many steps a kernel call)."""
    for name, given, allowed in (("models", models, MODELS), ("dtypes", dtypes, DTYPES)):
        unknown = sorted(set(given) - set(allowed))
        if unknown or not given:
            raise UsageError(f"`{name}` takes some of {', '.join(allowed)}; got {', '.join(unknown) or 'none'}")
    plan = []
    for dtype in dtypes:
        for model in models:
            for variant in _variants(model):
                settings = dict(model=model, dtype=dtype, rows=_ROWS, features=_FEATURES, epochs=1, quiet=True, lr=0.01,
                                classes=3 if model in ("softmax", "mlp") else 0, hidden=(4,))
                settings.update(variant)
                if settings.get("task") == "regression":
                    settings["classes"] = 0
                plan.append(settings)
    return plan


def _text_inputs(directory: Path, dtypes: tuple[str, ...]) -> list[dict[str, Any]]:
    """Trainings on a CSV and a LIBSVM file written into ``directory``: the readers' kernels."""
    from mpigd.comm import self_comm
    from mpigd.data import generate

    plan = []
    for form in ("csv", "libsvm"):
        path = directory / f"warmup.{form}"
        generate.write(generate.Spec(_ROWS, _FEATURES, "classification", 1, form, path), self_comm())
        plan += [dict(data=str(path), model="logistic", dtype=dtype, epochs=1, quiet=True) for dtype in dtypes]
    return plan


def fill_cache(comm=None, models: tuple[str, ...] = MODELS, dtypes: tuple[str, ...] = DTYPES) -> dict[str, Any]:
    """Run :func:`workloads` (and the text readers') dealt across the ranks of ``comm`` (as for
    :func:`mpigd.train`; ``None``: every rank of the job). Collective.

    Returns, the same on every rank: ``workloads`` run, kernel compilations ``compiled`` (cache
    misses) and ``loaded`` (hits) by this call, summed over the ranks, and the ``seconds`` it took.
    """
    from mpigd.comm import as_communicator, self_comm
    from mpigd.startup import jit_cache_stats
    from mpigd.trainer import train

    plan = workloads(models, dtypes)  # a UsageError here is raised alike on every rank
    comm = as_communicator(comm)
    started = time.perf_counter()
    before = jit_cache_stats()
    alone = self_comm()
    # Pairs (0, 1), (2, 3)...; an odd last rank is a pair of one and takes none of the paired work.
    pair = comm.split(comm.rank // 2) if comm.size > 1 else None
    ran = 0
    with tempfile.TemporaryDirectory(prefix="mpigd-compile-") as directory:
        single = plan + (_text_inputs(Path(directory), dtypes) if "logistic" in models else [])
        for settings in single[comm.rank::comm.size]:
            train(Config(**settings), alone)
            ran += 1
        if pair is not None and pair.size == 2:
            for settings in plan[comm.rank // 2::comm.size // 2]:
                train(Config(**settings, strategy="ring"), pair)  # the ring's add kernel too
                ran += comm.rank % 2 == 0  # counted once a pair
    after = jit_cache_stats()
    totals = np.array([ran, after["cache_misses"] - before["cache_misses"], after["cache_hits"] - before["cache_hits"]],
                      dtype=np.float64)
    comm.allreduce(totals)
    return {"workloads": int(totals[0]), "compiled": int(totals[1]), "loaded": int(totals[2]),
            "seconds": time.perf_counter() - started, "ranks": comm.size}
