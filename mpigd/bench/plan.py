"""``mpigd plan``: project time per step and efficiency to many nodes. A MODEL, not a measurement.

One full-batch gradient step on ``P`` ranks costs

* compute: ``rows_per_rank / rate``, where ``rate`` (rows per second per rank) is measured here
  by timing the model's fused ``loss_grad`` kernel, or given; ``rows_per_rank`` is ``rows / P``
  (strong scaling) or ``rows`` (weak scaling);
* communication: one allreduce of the gradient buffer (``n_params + 2`` values, the loss and the
  preemption flag riding along, as :class:`~mpigd.algorithms.objective` sends it on several ranks), priced by the alpha-beta-gamma
  :class:`~mpigd.comm.costmodel.CostModel` for ring and tree; the step takes the cheaper one.

With ``ranks_per_node > 1`` the allreduce is hierarchical: a binomial-tree reduce to one leader
per node (intra-node model), the allreduce among the leaders (network model), a binomial-tree
broadcast back (intra-node model). The model ignores the parameter update, overlap of compute
and communication, contention, stragglers and memory bandwidth shared by the ranks of a node.

Nothing here imports mpi4py: ``mpigd plan`` runs as a plain process, on a login node too.
"""

from __future__ import annotations

import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpigd.checks import check_choice, check_finite, check_fits_memory
from mpigd.comm.costmodel import CostModel
from mpigd.comm.tunefile import default_path, load
from mpigd.config import DTYPES, MODELS
from mpigd.environment import TUNE_FILE_VARIABLE, tune_file_from_env
from mpigd.errors import UsageError
from mpigd.models import make_model, memory_bytes
from mpigd.wording import counted

STRATEGIES = ("ring", "tree")
# A 100 Gb/s InfiniBand-like network (EDR/HDR100): about 2 us per message through the switch and
# about 12 GB/s of the 12.5 GB/s line rate for large messages. For --network ib100.
NETWORKS = {"ib100": (2e-6, 1 / 12e9)}


@dataclass(frozen=True)
class Projection:
    """Everything the projection depends on; :func:`project` is a pure function of it.

    ``intra`` prices messages between the ranks of one node, ``inter`` between nodes. ``rows`` is
    the global row count (``strong``) or the rows per rank (``weak``); ``rate`` is rows per
    second per rank; ``nbytes`` is the gradient buffer reduced every step.
    """

    rows: int
    nbytes: int
    rate: float
    intra: CostModel
    inter: CostModel
    ranks_per_node: int = 1
    mode: str = "strong"

    def __post_init__(self) -> None:
        if self.mode not in ("strong", "weak"):
            raise ValueError(f"mode must be strong or weak, not {self.mode!r}")
        if self.rows < 1 or self.nbytes < 1 or self.rate <= 0 or self.ranks_per_node < 1:
            raise ValueError("rows, nbytes, ranks_per_node must be >= 1 and rate > 0")
        # A NaN passes every comparison above and turns the whole projection into NaN; a tune file
        # can hold one too, not only the command line.
        for where, model in (("intra-node", self.intra), ("between nodes", self.inter)):
            if not all(math.isfinite(v) and v >= 0 for v in (model.alpha, model.beta, model.gamma)):
                raise ValueError(f"the cost model {where} needs finite alpha, beta, gamma >= 0; got "
                                 f"{model.alpha}, {model.beta}, {model.gamma}")
        if not math.isfinite(self.rate):
            raise ValueError(f"the compute rate must be finite; got {self.rate}")


def node_counts(max_nodes: int) -> list[int]:
    """Powers of two from 1 to ``max_nodes``, and ``max_nodes`` itself when it is not one."""
    if max_nodes < 1:
        raise ValueError("max_nodes must be >= 1")
    counts = [1 << k for k in range(max_nodes.bit_length()) if 1 << k <= max_nodes]
    return counts if counts[-1] == max_nodes else counts + [max_nodes]


def gradient_bytes(model: str, features: int, dtype: str, classes: int = 2,
                   hidden: tuple[int, ...] = (64,)) -> tuple[int, int]:
    """``(n_params, bytes)`` of the buffer one step reduces: the parameters, the loss and the
    preemption flag (see :meth:`~mpigd.algorithms.objective.GlobalGradient.carry_flag`)."""
    n_params = make_model(model, features, classes, hidden).n_params
    return n_params, (n_params + 2) * np.dtype(dtype).itemsize


def allreduce_seconds(spec: Projection, strategy: str, nodes: int) -> float:
    """Modelled seconds of one allreduce of ``spec.nbytes`` over ``nodes`` x ``ranks_per_node``.

    ``strategy`` (ring or tree) is the algorithm among nodes; inside a node a binomial reduce
    and broadcast (``ceil(log2 R)`` steps each) carry the whole buffer.
    """
    n, r = spec.nbytes, spec.ranks_per_node
    among_nodes = spec.inter.time(strategy, n, nodes)
    if r == 1:
        return among_nodes
    steps = math.ceil(math.log2(r))
    a, b, g = spec.intra.alpha, spec.intra.beta, spec.intra.gamma
    return steps * (a + n * b + n * g) + among_nodes + steps * (a + n * b)


def project(spec: Projection, nodes: list[int]) -> list[dict[str, Any]]:
    """One record per node count: compute, allreduce per strategy, best, step, speedup, efficiency.

    Speedup and efficiency are against one node (``ranks_per_node`` ranks), as
    :func:`mpigd.bench.scaling.report` defines them: strong, speedup = T(1)/T(P) and efficiency
    = speedup/P; weak, efficiency = T(1)/T(P) and speedup = P efficiency (P counts nodes).
    """
    records = []
    for count in nodes:
        ranks = count * spec.ranks_per_node
        per_rank = spec.rows / ranks if spec.mode == "strong" else float(spec.rows)
        compute = per_rank / spec.rate
        seconds = {s: allreduce_seconds(spec, s, count) for s in STRATEGIES}
        best = min(STRATEGIES, key=lambda s: seconds[s])
        step = compute + seconds[best]
        # On one node no message crosses the network: the strategies tie, and none "wins".
        records.append({"nodes": count, "ranks": ranks, "rows_per_rank": per_rank, "compute_s": compute,
                        **{f"{s}_s": seconds[s] for s in STRATEGIES}, "best": best if count > 1 else "-",
                        "allreduce_s": seconds[best], "step_s": step,
                        "comm_fraction": seconds[best] / step})
    base = next((r["step_s"] for r in records if r["nodes"] == 1), None)
    if base is None:
        raise ValueError("the node counts must include 1: it is the baseline")
    for r in records:
        ratio = base / r["step_s"]
        r["speedup"] = ratio if spec.mode == "strong" else ratio * r["nodes"]
        r["efficiency"] = r["speedup"] / r["nodes"]
    return records


def below_half(records: list[dict[str, Any]]) -> int | None:
    """The fewest nodes at which efficiency falls below 50%, or ``None`` if it never does."""
    return next((r["nodes"] for r in records if r["efficiency"] < 0.5), None)


def find_calibration(explicit: str | None) -> tuple[Path | None, str]:
    """Which tune file to read, and how it was found: ``--tune-file``, ``$MPIGD_TUNE_FILE``, the
    default path (the calibration with the most ranks on this host, of 2 or more: one made on 1 rank
    measured no message), or none (built-in defaults)."""
    if explicit:
        return Path(explicit).expanduser(), "--tune-file"
    if tune_file_from_env():
        return Path(str(tune_file_from_env())).expanduser(), f"${TUNE_FILE_VARIABLE}"
    folder = default_path(1).parent
    # Exactly this host's names: a glob on tune-HOST-* also took the files of a host named HOST-b.
    name = re.compile(re.escape(f"tune-{platform.node() or 'host'}-") + r"(\d+)ranks\.json")
    ranks = {path: int(match[1]) for path in folder.glob("tune-*ranks.json") if (match := name.fullmatch(path.name))}
    found = sorted((path for path in ranks if ranks[path] >= 2), key=ranks.get)
    return (found[-1], "default path") if found else (None, "built-in defaults")


def cost_models(tune_file: str | None, network: str | None = None, alpha: float | None = None,
                beta: float | None = None, gamma: float | None = None
                ) -> tuple[CostModel, CostModel, dict[str, str]]:
    """``(intra, inter, sources)``: the calibrated model, the network model, and where each came from.

    The calibration is intra-node (``mpigd tune`` ran on one machine); the network model is the
    same unless ``network`` (a preset of :data:`NETWORKS`) or ``alpha``/``beta`` replace its
    latency and bandwidth. ``gamma`` (the local add) overrides both, as it is a per-core cost.
    """
    path, how = find_calibration(tune_file)
    if path is None:
        calibrated, origin = CostModel(), "built-in defaults (no tune file found; run 'mpigd tune')"
    else:
        if not path.is_file():
            # A directory is there, but not a tune file: "no such" sent users looking for a typo.
            raise ValueError(f"{'not a file' if path.exists() else 'no such tune file'}: {path}")
        tuning = load(path)
        if tuning.ranks < 2:  # its alpha and beta are 0: the projection would make every message free
            raise ValueError(f"{path} was made by 'mpigd tune' on 1 rank, which sends no message: alpha and "
                             "beta are not measured; run it on 2 or more ranks")
        calibrated = tuning.model
        origin = (f"{path} ({how}; 'mpigd tune' on {counted(tuning.ranks, 'rank')} of {tuning.hostname or '?'}, "
                  f"{tuning.mpi_library or '?'}, intra-node)")
    g = calibrated.gamma if gamma is None else gamma
    intra = CostModel(calibrated.alpha, calibrated.beta, g)
    a, b = calibrated.alpha, calibrated.beta
    sources = {"calibration": origin, "alpha": origin, "beta": origin,
               "gamma": origin if gamma is None else "--gamma"}
    if network is not None:
        a, b = NETWORKS[network]
        sources["alpha"] = sources["beta"] = f"--network {network} (100 Gb/s InfiniBand-like, assumed)"
    if alpha is not None:
        a, sources["alpha"] = alpha, "--alpha"
    if beta is not None:
        b, sources["beta"] = beta, "--beta"
    return intra, CostModel(a, b, g), sources


def measure_rate(model: str, features: int, dtype: str, classes: int = 2, hidden: tuple[int, ...] = (64,),
                 rows: int = 200_000, repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Rows per second of the model's fused ``loss_grad`` on ``rows`` dense random rows, one process.

    The median of ``repeats`` timed calls after one warm-up (which also compiles the kernel). The
    kernels are single-threaded, so this is one rank's rate, as ranks run one thread each.
    """
    import numba

    from mpigd.bench.kernel import labels, make_data, start_params

    instance = make_model(model, features, classes, hidden)
    X = make_data("dense", rows, features, 1.0, dtype, seed).X
    y = labels(instance, rows, dtype, seed)
    params = start_params(instance, dtype, seed)
    grad = np.empty_like(params)
    instance.loss_grad(X, y, params, grad)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        instance.loss_grad(X, y, params, grad)
        samples.append(time.perf_counter() - start)
    median = statistics.median(samples)
    return {"rows_per_s": rows / median, "bytes_per_s": (X.nbytes + y.nbytes) / median, "sample_rows": rows,
            "repeats": repeats, "median_s": median, "min_s": min(samples), "max_s": max(samples),
            "numba_threads": numba.config.NUMBA_NUM_THREADS, "host": platform.node(),
            "cpu_count": os.cpu_count()}


def make_plan(model: str, rows: int, features: int, max_nodes: int = 1024, dtype: str = "float64", classes: int = 10,
              hidden: tuple[int, ...] = (64,), ranks_per_node: int = 1, mode: str = "strong",
              rate: float | None = None, sample_rows: int = 200_000, repeats: int = 5,
              tune_file: str | None = None, network: str | None = None, alpha: float | None = None,
              beta: float | None = None, gamma: float | None = None) -> dict[str, Any]:
    """Measure the compute rate (unless ``rate`` is given), resolve the cost model, project: ``mpigd plan``.

    Not collective, and imports no MPI. The options of ``mpigd plan`` map one to one, with the same
    defaults: ``max_nodes`` is ``--nodes``, ``rate`` is ``--compute-rate``.
    Returns what :mod:`mpigd.bench.plan_report` prints and writes: the inputs, the parameters,
    where each came from (``sources``), the records of :func:`project`, the node count where
    efficiency falls below 50%, and ``metadata`` (versions and machine). Anything the command
    refuses (a value out of range, a tune file that cannot be read, a rate measurement that cannot
    fit this node's memory) raises :class:`~mpigd.errors.UsageError` with the command's message.
    """
    _check_plan_arguments(model, rows, features, max_nodes, dtype, classes, hidden, ranks_per_node, mode, rate,
                          sample_rows, repeats, network, alpha, beta, gamma)
    try:
        plan = _make_plan(model, rows, features, max_nodes, dtype, classes, tuple(hidden), ranks_per_node, mode,
                          rate, sample_rows, repeats, tune_file, network, alpha, beta, gamma)
    except (OSError, ValueError) as error:  # an unreadable or invalid tune file, named by the error
        raise UsageError(str(error)) from None
    from mpigd.bench.metadata import describe

    plan["metadata"] = describe()
    return plan


def _check_plan_arguments(model: str, rows: int, features: int, max_nodes: int, dtype: str, classes: int,
                          hidden: tuple[int, ...], ranks_per_node: int, mode: str, rate: float | None,
                          sample_rows: int, repeats: int, network: str | None, alpha: float | None,
                          beta: float | None, gamma: float | None) -> None:
    """What ``mpigd plan`` refuses, each in one line naming its option."""
    check_choice("--model", model, MODELS)
    check_choice("--dtype", dtype, DTYPES)
    check_choice("--mode", mode, ("strong", "weak"))
    if network is not None:
        check_choice("--network", network, tuple(NETWORKS))
    if min(max_nodes, ranks_per_node, rows, features, sample_rows, repeats) < 1:
        raise UsageError("plan needs --nodes, --ranks-per-node, --rows, --features, --sample-rows, --repeats >= 1")
    if not hidden or min(hidden) < 1:
        raise UsageError(f"plan needs --hidden widths >= 1 such as 64,32; got {hidden!r}")
    if classes < 2 or any(v is not None and v < 0 for v in (alpha, beta, gamma)):
        raise UsageError("plan needs --classes >= 2 and --alpha, --beta, --gamma >= 0")
    if rate is not None and rate <= 0:
        raise UsageError("--compute-rate must be > 0")
    # float("nan") and float("inf") pass every comparison above.
    for option, value in (("--alpha", alpha), ("--beta", beta), ("--gamma", gamma), ("--compute-rate", rate)):
        check_finite(option, value)
    if rate is None:
        from mpigd.bench.kernel import data_bytes

        sample = min(rows, sample_rows)
        held = data_bytes("dense", sample, features, 1.0, dtype)
        what = f"measuring the rate on {sample:,} rows x {features:,} features"
        check_fits_memory(held, what, "give --compute-rate, or fewer --sample-rows")
        instance = make_model(model, features, classes, hidden)
        check_fits_memory(held + memory_bytes(instance, np.dtype(dtype).itemsize, training=False),
                          f"{what} with a {model} model of {instance.n_params:,} parameters", "give --compute-rate")


def _make_plan(model: str, rows: int, features: int, max_nodes: int, dtype: str, classes: int,
               hidden: tuple[int, ...], ranks_per_node: int, mode: str, rate: float | None, sample_rows: int,
               repeats: int, tune_file: str | None, network: str | None, alpha: float | None,
               beta: float | None, gamma: float | None) -> dict[str, Any]:
    n_params, nbytes = gradient_bytes(model, features, dtype, classes, hidden)
    intra, inter, sources = cost_models(tune_file, network, alpha, beta, gamma)
    measured = None
    if rate is None:
        measured = measure_rate(model, features, dtype, classes, hidden, min(rows, sample_rows), repeats)
        rate = measured["rows_per_s"]
        sources["rate"] = (f"measured (fused loss_grad, {measured['sample_rows']:,} rows, median of "
                           f"{repeats} after warm-up, one thread on {measured['host']})")
    else:
        sources["rate"] = "--compute-rate"
    spec = Projection(rows, nbytes, rate, intra, inter, ranks_per_node, mode)
    records = project(spec, node_counts(max_nodes))
    return {
        "mode": mode, "model": model, "n_params": n_params, "classes": classes if model in ("softmax", "mlp") else None,
        "hidden": list(hidden) if model == "mlp" else None, "rows": rows, "features": features, "dtype": dtype,
        "bytes": nbytes, "ranks_per_node": ranks_per_node,
        "parameters": {"network": {"alpha_s": inter.alpha, "beta_s_per_byte": inter.beta},
                       "intra_node": {"alpha_s": intra.alpha, "beta_s_per_byte": intra.beta},
                       "gamma_s_per_byte": inter.gamma, "rate_rows_per_s": rate},
        "sources": sources, "rate_measurement": measured,
        "assumptions": ("step = compute + the cheaper of ring and tree (native is modelled as that minimum); "
                        "no overlap, no update cost, no contention or stragglers; rate per rank independent of "
                        "ranks per node; ranks_per_node > 1: binomial reduce and broadcast inside a node around "
                        "the allreduce among nodes"),
        "records": records, "below_half_efficiency_nodes": below_half(records),
    }
