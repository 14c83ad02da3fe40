"""``mpigd bench scaling``: time per training step at the current rank count, and the report that
turns several such runs (1, 2, 4... ranks) into speedup and efficiency.

One launch per rank count (``run/scaling`` locally, ``slurm/scaling.sbatch`` on a cluster): ranks
left idle in a sub-communicator would spin in MPI and steal the cores being measured.

``strong`` keeps the global row count fixed; ``weak`` keeps the rows per rank fixed. A step is one
full-batch gradient step (kernel, allreduce, update); its time is the slowest rank's, and the
figure is the median over the timed steps after warm-up steps.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import numpy as np

from mpigd.algorithms import make_algorithm
from mpigd.config import Config
from mpigd.checks import check_choice
from mpigd.errors import MpigdError, UsageError
from mpigd.outputs import json_text, parent_made


def measure(comm=None, mode: str = "strong", rows: int = 1_000_000, features: int = 32, model: str = "logistic",
            dtype: str = "float64", steps: int = 20, warmup: int = 3, strategy: str | None = None) -> dict[str, Any]:
    """Time ``steps`` gradient steps on ``comm``: ``mpigd bench scaling`` (same defaults).

    Collective: call it on every rank of ``comm`` (a :class:`mpigd.comm.Communicator`, an ``mpi4py``
    communicator, or ``None`` for every rank of the job); the record is the same on every rank.
    ``rows`` is the global row count (strong) or the rows per rank (weak). The sums use
    ``strategy`` (``--strategy``), by default the Communicator's own (``native`` for the others).
    Append the record to a JSON-lines file with :func:`append_record` (from one rank). Arguments the
    command refuses raise :class:`~mpigd.errors.UsageError` on every rank alike, before any message.
    """
    from mpigd.comm import as_communicator

    check_choice("--mode", mode, ("strong", "weak"))
    if steps < 1 or warmup < 0:
        raise UsageError(f"bench scaling needs --steps >= 1 (and warmup >= 0); got {steps} and {warmup}")
    comm = as_communicator(comm, strategy)
    global_rows = rows if mode == "strong" else rows * comm.size
    config = Config(model=model, rows=global_rows, features=features, dtype=dtype, epochs=1, quiet=True)
    # As train builds it: softmax and the mlp get the classes of the synthetic labels (3), which are
    # encoded for the model. A model made with the default 2 classes read labels past its last class.
    from mpigd.prepare import prepare

    prepared = prepare(config, comm)
    algorithm = make_algorithm(config, prepared.model, prepared.shard, comm)
    params = algorithm.gradient.model.init_params(np.dtype(dtype))
    gradient = algorithm.gradient
    if comm.size > 1:  # the message training sums: the gradient, the loss and the preemption flag
        gradient.carry_flag(lambda: False)
    for _ in range(warmup):
        algorithm.run_epoch(params, 0)
    samples = np.zeros((steps, 3))  # total, compute, communication seconds of each step
    for step in range(steps):
        comm.barrier()
        compute, communication = gradient.compute_seconds, comm.comm_seconds
        start = time.perf_counter()
        algorithm.run_epoch(params, 0)
        samples[step] = (time.perf_counter() - start, gradient.compute_seconds - compute,
                         comm.comm_seconds - communication)
    comm.allreduce_max(samples)  # each step takes as long as its slowest rank
    total, compute, communication = (statistics.median(samples[:, k]) for k in range(3))
    from mpigd.bench.allreduce import tune_file_read
    from mpigd.bench.metadata import git_commit, timestamp

    return {
        "mode": mode, "ranks": comm.size, "rows": global_rows, "rows_per_rank": global_rows / comm.size,
        "features": features, "model": model, "dtype": dtype, "steps": steps,
        "step_seconds": total, "compute_seconds": compute, "communication_seconds": communication,
        "other_seconds": max(0.0, total - compute - communication),
        "step_seconds_min": float(samples[:, 0].min()), "step_seconds_max": float(samples[:, 0].max()),
        "bytes_per_allreduce": gradient.reduced_bytes, "strategy": comm.strategy_label, "mpi_library": comm.library(),
        "oversubscribed": comm.size > (os.cpu_count() or 1),
        # Where it came from: the commit, the date, the command (the CLI's; None from Python), and
        # the tune file auto or ring read, which the command may not name ($MPIGD_TUNE_FILE, default path).
        "git_commit": git_commit(), "date": timestamp(), "command": None,
        **tune_file_read(comm.tune_file, (comm.strategy.name,), comm.size),
    }


# The fields of a record that the report, its table and its plots read, with their types.
RECORD_FIELDS = {"mode": str, "ranks": int, "rows": (int, float), "features": int, "model": str, "dtype": str,
                 "step_seconds": (int, float), "compute_seconds": (int, float),
                 "communication_seconds": (int, float), "other_seconds": (int, float), "mpi_library": str}


def append_record(path: str, record: dict[str, Any]) -> None:
    """Add one run's record to a JSON-lines file (rank 0 calls this); a write that fails is one line
    (:class:`~mpigd.errors.MpigdError`)."""
    try:
        with open(parent_made(path), "a", encoding="utf-8") as handle:
            handle.write(json_text(record) + "\n")
    except OSError as error:
        raise MpigdError(f"cannot write {path}: {error.strerror or error}") from None


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of the JSON-lines file ``path`` (blank lines skipped). A file that cannot be read,
    a line that is not such a record, or a file with none raises :class:`~mpigd.errors.UsageError`
    naming the file and the line, as ``mpigd bench scaling-report`` does."""
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    records.append(_record(line, number))
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from None
    except ValueError as error:  # a line that is not a record, named; or not UTF-8
        raise UsageError(f"{path}: {error}") from None
    if not records:
        raise UsageError(f"{path}: no scaling records (write them with 'mpigd bench scaling --output')")
    return records


def _record(line: str, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError as error:
        raise ValueError(f"line {number}: not JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"line {number}: a scaling record is a JSON object, not {_type_name(type(record))}")
    for name, kind in RECORD_FIELDS.items():
        value = record.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"line {number}: not a scaling record ({name!r} missing or not {_type_name(kind)})")
    if record["mode"] not in ("strong", "weak") or record["ranks"] < 1 or not record["step_seconds"] > 0:
        raise ValueError(f"line {number}: not a scaling record (mode {record['mode']!r}, ranks {record['ranks']}, "
                         f"step_seconds {record['step_seconds']})")
    return record


def _type_name(kind) -> str:
    """``kind`` (a JSON value's type, or RECORD_FIELDS' tuple of number types) with its article."""
    if isinstance(kind, tuple):
        return "a number"
    names = {str: "a string", int: "an integer", float: "a number", list: "an array", bool: "a boolean",
             type(None): "null"}
    return names.get(kind, f"a {kind.__name__}")


def report(records: list[dict[str, Any]] | str | os.PathLike) -> list[dict[str, Any]]:
    """Speedup and efficiency of each record against the one-rank record of the same mode.

    Strong scaling: speedup = T(1) / T(p), efficiency = speedup / p. Weak scaling: the work per
    rank is constant, so efficiency = T(1) / T(p) and speedup = p · efficiency.

    ``records``: the records, or the path of a JSON-lines file of them (``mpigd bench
    scaling-report FILE``: read with :func:`read_records`, and every refusal is then a
    :class:`~mpigd.errors.UsageError` naming the file). Records without a one-rank run of their
    mode raise ``ValueError`` (given as a list) or that UsageError (given as a file). Print the rows
    with :func:`table`, plot them with :func:`plot`. Not collective.
    """
    if isinstance(records, (str, os.PathLike)):
        path = records
        try:
            return report(read_records(path))
        except ValueError as error:
            raise UsageError(f"{path}: {error}") from None
    rows = []
    for mode in sorted({r["mode"] for r in records}):
        runs = sorted((r for r in records if r["mode"] == mode), key=lambda r: r["ranks"])
        _check_one_problem(mode, runs)
        base = next((r for r in runs if r["ranks"] == 1), None)
        if base is None:
            raise ValueError(f"no one-rank run for {mode} scaling: it is the baseline")
        for run in runs:
            ratio = base["step_seconds"] / run["step_seconds"]
            speedup = ratio if mode == "strong" else ratio * run["ranks"]
            rows.append({**run, "speedup": speedup, "efficiency": speedup / run["ranks"]})
    return rows


def _problem(record: dict[str, Any]) -> dict[str, Any]:
    """What a record measured (the fields it holds): model, features, dtype, the strategy asked for
    (``auto`` may run another at each rank count), and the rows that stay fixed across its sweep,
    all of them (strong) or each rank's (weak)."""
    problem = {name: record[name] for name in ("model", "features", "dtype") if name in record}
    if isinstance(record.get("strategy"), str):
        problem["strategy"] = record["strategy"].split("->")[0]
    if "rows" in record:
        if record["mode"] == "strong":
            problem["rows"] = record["rows"]
        else:
            problem["rows per rank"] = record["rows"] / record["ranks"]
    return problem


def _check_one_problem(mode: str, runs: list[dict[str, Any]]) -> None:
    """Refuse records of one mode that measured different problems (a file appended to by two
    sweeps): the speedup of one against the other's one-rank time means nothing, and was reported."""
    first = _problem(runs[0])
    for run in runs[1:]:
        other = _problem(run)
        differ = [name for name in first.keys() & other.keys() if first[name] != other[name]]
        if differ:
            what = ", ".join(f"{name} {first[name]} and {other[name]}" for name in sorted(differ))
            raise ValueError(f"the {mode} scaling records measure different problems ({what}): "
                             "write each sweep to its own file")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'mode':<6} {'ranks':>5} {'rows':>10} {'step ms':>9} {'compute':>8} {'allreduce':>9} "
             f"{'other':>7} {'speedup':>8} {'effic.':>7}"]
    for r in rows:
        note = "  (oversubscribed)" if r.get("oversubscribed") else ""
        lines.append(f"{r['mode']:<6} {r['ranks']:>5} {r['rows']:>10} {r['step_seconds'] * 1e3:>9.2f} "
                     f"{r['compute_seconds'] * 1e3:>8.2f} {r['communication_seconds'] * 1e3:>9.3f} "
                     f"{r['other_seconds'] * 1e3:>7.2f} {r['speedup']:>8.2f} {r['efficiency']:>7.2f}{note}")
    return "\n".join(lines)


def plot_paths(prefix: str, modes_: list[str]) -> dict[str, str]:
    """The PNG of each mode for ``--plot PREFIX``: ``PREFIX-strong.png``, ... A directory (one that
    exists, or a name ending in a slash) holds ``scaling-strong.png``, ...: a bare ``figs/`` made
    ``figs/-strong.png``."""
    if prefix.endswith(os.sep) or os.path.isdir(prefix):
        prefix = os.path.join(prefix, "scaling")
    return {mode: f"{prefix}-{mode}.png" for mode in modes_}


def modes(rows: list[dict[str, Any]]) -> list[str]:
    """The scaling modes (``strong``, ``weak``) that ``rows`` hold, one plot each."""
    return sorted({r["mode"] for r in rows})


def plot(rows: list[dict[str, Any]], mode: str, path: str) -> None:
    """A PNG of ``mode``'s rows at ``path``: speedup (with the ideal line), efficiency, and stacked
    time per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["mode"] == mode]
    ranks = [r["ranks"] for r in runs]
    figure, (ax_speed, ax_eff, ax_time) = plt.subplots(1, 3, figsize=(14, 4))
    ax_speed.plot(ranks, [r["speedup"] for r in runs], "o-", label="measured")
    ax_speed.plot(ranks, ranks, "k--", label="ideal")
    ax_speed.set(xlabel="ranks", ylabel="speedup", title=f"{mode} scaling: speedup", xticks=ranks)
    ax_speed.legend()
    ax_eff.plot(ranks, [r["efficiency"] for r in runs], "o-")
    ax_eff.axhline(1.0, color="k", linestyle="--")
    ax_eff.set(xlabel="ranks", ylabel="efficiency", ylim=(0, 1.2), title=f"{mode} scaling: efficiency",
               xticks=ranks)
    bottom = np.zeros(len(runs))
    labels = [str(r) + ("*" if run.get("oversubscribed") else "") for r, run in zip(ranks, runs)]
    for key, label in (("compute_seconds", "compute"), ("communication_seconds", "allreduce"),
                       ("other_seconds", "other")):
        values = np.array([r[key] * 1e3 for r in runs])
        ax_time.bar(labels, values, bottom=bottom, label=label)
        bottom += values
    ax_time.set(xlabel="ranks (* oversubscribed)", ylabel="ms per step", title="time per step")
    ax_time.legend()
    figure.suptitle(f"{runs[0]['model']}, {runs[0]['features']} features, {runs[0]['dtype']}, "
                    f"{runs[0]['mpi_library']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")  # PNG whatever the name says (see plan_report.plot)
    plt.close(figure)
