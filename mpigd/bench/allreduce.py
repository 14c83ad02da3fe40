"""``mpigd bench allreduce``: each strategy against the MPI library's own, per message size.

OSU-style: for every size, a warm-up round, then repeats of Barrier + timed calls with
``MPI.Wtime``; each repeat's time is the slowest rank's and the table shows the median. The
strategies take turns within each repeat, so that a burst of load on a shared machine hits
them alike, and ratios are paired: the median over repeats of the ratio within each repeat. Bus
bandwidth is ``2 (p-1)/p * bytes / time``, the traffic an optimal allreduce puts on each link,
so it is comparable across rank counts (NCCL-tests' convention). Buffers are zero so that
repeated sums neither overflow nor slow down on subnormal numbers.
"""

from __future__ import annotations

import csv
from typing import Any, Sequence

import numpy as np

from mpigd.checks import check_choice, check_choices, check_message_sizes, whole_element_sizes
from mpigd.comm.strategies.auto import CANDIDATES as BEST_OF
from mpigd.comm.timing import iterations_for, median, time_interleaved
from mpigd.config import DTYPES, STRATEGIES, TUNED_STRATEGIES
from mpigd.environment import tune_file_from_env
from mpigd.errors import UsageError, warn
from mpigd.outputs import json_text
from mpigd.wording import counted


def message_sizes(min_bytes: int = 8, max_bytes: int = 64 << 20, factor: int = 2) -> list[int]:
    """``min_bytes, min_bytes * factor, ...`` up to ``max_bytes``, which is always included: the sizes
    ``mpigd bench allreduce`` and ``mpigd tune`` time (their defaults: 8 B to 64 MiB by 2).

    A range the commands refuse (``--min-bytes`` above ``--max-bytes``, a size below one byte, a
    factor below 2) raises :class:`~mpigd.errors.UsageError` with the command's message.
    """
    if min_bytes > max_bytes:
        raise UsageError(f"--min-bytes ({min_bytes}) is larger than --max-bytes ({max_bytes})")
    if min_bytes < 1 or factor < 2:
        raise UsageError(f"message sizes need --min-bytes >= 1 and --factor >= 2; got {min_bytes} and {factor}")
    sizes = []
    size = min_bytes
    while size < max_bytes:
        sizes.append(size)
        size *= factor
    return sizes + [max_bytes]


def bus_bandwidth(nbytes: int, seconds: float, ranks: int) -> float:
    """Bus bandwidth in GB/s: ``2 (p-1)/p * bytes / seconds`` (0 on one rank)."""
    return 2 * (ranks - 1) / ranks * nbytes / seconds / 1e9 if seconds > 0 else 0.0


def run(comm=None, sizes: Sequence[int] | None = None, dtype: str = "float64",
        strategies: Sequence[str] = STRATEGIES, repeats: int = 7, tune_file: str | None = None) -> list[dict[str, Any]]:
    """Time every strategy at every size; one row per (size, strategy): ``mpigd bench allreduce``.

    Collective: call it on every rank of ``comm`` (a :class:`mpigd.comm.Communicator`, an ``mpi4py``
    communicator, or ``None`` for every rank of the job); every rank returns the same rows (each
    time is the slowest rank's). ``sizes`` in bytes, from :func:`message_sizes` (default: its range,
    the command's). The strategies are built on those ranks once (``auto`` and ``ring`` with
    ``tune_file``, else the communicator's) and share one buffer, sliced to each size. Print the rows
    with :func:`table`; :func:`write_json`, :func:`write_csv` and :func:`plot` take them with
    :func:`mpigd.bench.metadata.run_metadata`. Arguments the command refuses raise
    :class:`~mpigd.errors.UsageError` on every rank alike, before any message.
    """
    from mpigd.comm import as_communicator

    check_choice("--dtype", dtype, DTYPES)
    check_choices("--strategies", strategies, STRATEGIES)
    sizes = message_sizes() if sizes is None else list(sizes)
    if repeats < 1 or not sizes:
        raise UsageError(f"bench allreduce needs --repeats >= 1 and at least one size; got {repeats} and {list(sizes)}")
    check_message_sizes(sizes)
    comm = as_communicator(comm, tune_file=tune_file)
    if tune_file is not None and not set(strategies) & set(TUNED_STRATEGIES) and comm.rank == 0:
        # As train: a file that nothing reads went unread without a word, even one that was no tune file.
        warn(f"--tune-file is for auto and ring; --strategies {','.join(strategies)} does not read it")
    kind = np.dtype(dtype)
    runners = {name: comm.with_strategy(name, tune_file) for name in strategies}
    sizes = whole_element_sizes(sizes, kind.itemsize)
    largest = np.zeros(max(sizes) // kind.itemsize, dtype=kind)
    rows = []
    for actual in sizes:
        count = actual // kind.itemsize
        buffer = largest[:count]
        buffer.fill(0)
        runs = {name: runner.strategy.allreduce for name, runner in runners.items()}
        timed, iterations = time_interleaved(comm.mpi_comm, {name: (lambda f=f: f(buffer)) for name, f in runs.items()},
                                             iterations_for(actual), repeats)
        for name, runner in runners.items():
            samples = timed[name]
            seconds = median(samples)
            choose = getattr(runner.strategy, "choose", None)
            trial = getattr(runner.strategy, "trials", {}).get(actual)
            rows.append({
                "bytes": actual, "count": count, "dtype": dtype, "strategy": name,
                "ran": f"{name}->{choose(actual)}" if choose else name,
                "iterations": iterations[name], "repeats": repeats,
                "median_s": seconds, "min_s": min(samples), "max_s": max(samples), "samples_s": samples,
                "latency_us": seconds * 1e6, "busbw_gb_s": bus_bandwidth(actual, seconds, comm.size),
                # auto's own timing of its candidates at this size, in this launch (None: no trial)
                "trial_us": {c: t * 1e6 for c, t in trial.items()} if trial else None,
            })
    _add_ratios(rows)
    return rows


def tune_file_read(tune_file: str | None, strategies: Sequence[str], ranks: int) -> dict[str, str | None]:
    """The calibration :func:`run` used, for the metadata: ``tune_file``, the path auto and ring read
    (``--tune-file``, else ``$MPIGD_TUNE_FILE``, else the default path of ``mpigd tune`` when it exists;
    ``None``: built-in defaults), and ``tune_file_from``, which of these it was. Without auto and ring
    nothing reads one: ``tune_file`` is then what was given, and ``tune_file_from`` ``None``."""
    from mpigd.comm.tunefile import find_tune_file
    from mpigd.environment import TUNE_FILE_VARIABLE

    if not set(strategies) & set(TUNED_STRATEGIES):
        return {"tune_file": tune_file, "tune_file_from": None}
    path, _ = find_tune_file(tune_file, ranks)
    if path is None:
        return {"tune_file": None, "tune_file_from": None}
    source = "--tune-file" if tune_file else f"${TUNE_FILE_VARIABLE}" if tune_file_from_env() else "default path"
    return {"tune_file": str(path), "tune_file_from": source}


def _paired(numerator: dict[str, Any], denominator: dict[str, Any]) -> float:
    """Median over repeats of the ratio of two contenders' times *in the same repeat*.

    The contenders took turns within each repeat, so a slow spell on a shared machine slows
    both sides of each ratio alike: the paired ratio is steadier than a ratio of medians.
    """
    return median([a / b for a, b in zip(numerator["samples_s"], denominator["samples_s"])])


def _add_ratios(rows: list[dict[str, Any]]) -> None:
    # speedup_vs_native > 1: faster than the library; vs_best <= 1.1 is auto's target, where
    # "best" is whichever of native, ring and tree has the lowest median at that size.
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_size.setdefault(row["bytes"], {})[row["strategy"]] = row
    for group in by_size.values():
        native = group.get("native")
        contenders = [group[s] for s in BEST_OF if s in group]
        best = min(contenders, key=lambda r: r["median_s"]) if contenders else None
        for row in group.values():
            row["speedup_vs_native"] = _paired(native, row) if native else None
            row["best"] = best["strategy"] if best else None
            row["vs_best"] = _paired(row, best) if best else None


def _human(nbytes: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale}{unit}"
    return str(nbytes)


def table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table: per size, latency (us), bus bandwidth (GB/s), speedup vs native."""
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    head = f"{'bytes':>6}" + "".join(f" | {n + ' us':>11} {'GB/s':>6} {'xnat':>5}" for n in names)
    if "auto" in names:
        head += f" | {'auto ran':<11} {'/best':>5}"
    lines = [head, "-" * len(head)]
    by_size: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_size.setdefault(row["bytes"], {})[row["strategy"]] = row
    for nbytes, group in by_size.items():
        line = f"{_human(nbytes):>6}"
        for name in names:
            r = group[name]
            ratio = f"{r['speedup_vs_native']:.2f}" if r["speedup_vs_native"] else "-"
            line += f" | {r['latency_us']:>11.1f} {r['busbw_gb_s']:>6.2f} {ratio:>5}"
        if "auto" in group:
            # What auto ran, whether or not another strategy ran beside it to compare with (/best: -).
            vs_best = group["auto"]["vs_best"]
            line += f" | {group['auto']['ran']:<11} {f'{vs_best:.2f}' if vs_best else '-':>5}"
        lines.append(line)
    return "\n".join(lines)


def write_json(path: str, metadata: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json_text({"metadata": metadata, "results": rows}, indent=2) + "\n")


def write_csv(path: str, metadata: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """One row per (size, strategy); the metadata repeated in leading columns, so rows stand alone."""
    keep = ("mpi_library", "ranks", "git_commit")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*keep, *rows[0].keys()])
        writer.writeheader()
        for row in rows:
            cells = {key: ";".join(f"{name}={us:.1f}" for name, us in value.items()) if isinstance(value, dict)
                     else value for key, value in row.items()}
            writer.writerow({**{k: metadata.get(k) for k in keep}, **cells})


def plot(path: str, metadata: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Bus bandwidth and latency against message size, one line per strategy, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise RuntimeError("--plot needs matplotlib: pip install 'mpigd[plot]'") from error
    figure, (bandwidth, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == name]
        sizes = [r["bytes"] for r in mine]
        style = "--" if name == "native" else "-"
        bandwidth.plot(sizes, [r["busbw_gb_s"] for r in mine], style, marker="o", ms=3, label=name)
        latency.plot(sizes, [r["latency_us"] for r in mine], style, marker="o", ms=3, label=name)
    for axes, label in ((bandwidth, "bus bandwidth (GB/s)"), (latency, "latency (us)")):
        axes.set_xscale("log", base=2)
        axes.set_xlabel("message size (bytes)")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend()
    latency.set_yscale("log")
    figure.suptitle(f"allreduce, {counted(metadata['ranks'], 'rank')}, {metadata.get('dtype', '')}, "
                    f"{metadata['mpi_library']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")  # PNG whatever the name says (see plan_report.plot)
    plt.close(figure)
