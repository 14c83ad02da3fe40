"""The strategy registry, the add kernel and the recursive-doubling plan, on one process."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mpigd.bench.allreduce import bus_bandwidth, message_sizes
from mpigd.comm import allreduce, self_comm, strategy_names
from mpigd.comm.strategies.tree import butterfly_plan
from mpigd.errors import UsageError
from mpigd.kernels import add_into


def test_unknown_strategy_names_the_known_ones():
    with pytest.raises(UsageError, match=r"unknown allreduce strategy 'rung' \(choose from auto, direct, native, ring, tree\)"):
        self_comm("rung")


def test_registry_holds_the_five():
    assert strategy_names() == ["auto", "direct", "native", "ring", "tree"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_add_kernel_matches_numpy_in_place(dtype: str, n: int):
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    expected = a + b
    add_into(a, b)
    assert np.array_equal(a, expected)


@pytest.mark.parametrize("strategy", ["native", "ring", "direct", "tree", "auto"])
def test_one_rank_leaves_the_buffer_alone(strategy: str):
    comm = self_comm(strategy)
    buffer = np.arange(5, dtype=np.float32)
    comm.allreduce(buffer)
    assert np.array_equal(buffer, np.arange(5, dtype=np.float32))
    assert comm.strategy_label.startswith(strategy)


def test_one_rank_max_and_min_leave_the_buffer_alone():
    """On one rank these return without calling MPI (a per-step call of the trainer's agreement)."""
    comm = self_comm()
    flags = np.array([15, 0, -3], dtype=np.int64)
    comm.allreduce_max(flags)
    comm.allreduce_min(flags)
    assert flags.tolist() == [15, 0, -3]
    assert comm.rank_values(7).tolist() == [7]


def test_auto_reports_what_ran():
    comm = self_comm("auto")
    assert comm.strategy_label == "auto"
    comm.allreduce(np.zeros(3))
    assert comm.strategy_label in ("auto->tree", "auto->ring", "auto->direct", "auto->native")


def test_module_allreduce_reuses_the_strategy():
    from mpigd.comm import _strategies

    buffer = np.ones(4)
    allreduce(buffer, "ring")
    allreduce(buffer, "ring")
    assert sum(1 for key in _strategies if key[0] == "ring") == 1


@pytest.mark.parametrize("size", range(1, 33))
def test_butterfly_plan_pairs_up(size: int):
    plans = [butterfly_plan(rank, size) for rank in range(size)]
    q = 1 << (size.bit_length() - 1)
    extras = [r for r, (role, _, _) in enumerate(plans) if role == "extra"]
    assert len(extras) == size - q
    for rank, (role, partner, peers) in enumerate(plans):
        if role == "extra":
            assert plans[partner][0] == "proxy" and plans[partner][1] == rank and not peers
            continue
        assert len(peers) == q.bit_length() - 1
        for step, peer in enumerate(peers):
            assert plans[peer][2][step] == rank  # the swap is mutual at every step


def test_message_sizes_and_bus_bandwidth():
    assert message_sizes(8, 64) == [8, 16, 32, 64]
    assert message_sizes(8, 100, 4) == [8, 32, 100]
    assert bus_bandwidth(1000, 1e-6, 2) == pytest.approx(1.0)
    assert bus_bandwidth(1000, 1e-6, 1) == 0.0


def test_bench_outputs(tmp_path):
    from mpigd.bench import allreduce as bench

    pytest.importorskip("matplotlib")
    rows = [{"bytes": b, "strategy": s, "latency_us": t, "busbw_gb_s": b / t / 1e3, "median_s": t * 1e-6,
             "samples_s": [t * 1e-6, 2 * t * 1e-6], "ran": s}
            for b in (8, 1024) for s, t in (("native", 2.0), ("ring", 5.0))]
    bench._add_ratios(rows)
    assert rows[1]["speedup_vs_native"] == pytest.approx(0.4) and rows[1]["best"] == "native"
    meta = {"ranks": 2, "mpi_library": "MPICH", "dtype": "float32", "git_commit": None}
    bench.write_json(str(tmp_path / "r.json"), meta, rows)
    bench.write_csv(str(tmp_path / "r.csv"), meta, rows)
    bench.plot(str(tmp_path / "r.png"), meta, rows)
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "r.csv").read_text().count("\n") == 5
    assert "native" in bench.table(rows)


def test_bench_allreduce_on_two_ranks_reports_what_its_samples_say(tmp_path):
    """A real two-rank run: every figure of the JSON, the CSV and the printed table follows from the
    repeats' samples by its definition (median, min, max, us, bus bandwidth, paired ratios), and
    --factor, --dtype and --repeats reach the run."""
    import statistics

    from mpirun import mpigd

    job = mpigd(2, "bench", "allreduce", "--min-bytes", "8", "--max-bytes", "128", "--factor", "4",
                "--dtype", "float32", "--repeats", "5", "--strategies", "native,ring,auto",
                "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "r.csv"), timeout=120)
    assert job.returncode == 0, job.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    meta, rows = report["metadata"], report["results"]
    assert meta["ranks"] == 2 and meta["dtype"] == "float32" and meta["repeats"] == 5
    assert [(r["bytes"], r["strategy"]) for r in rows] == [(b, s) for b in (8, 32, 128) for s in ("native", "ring", "auto")]
    by = {(r["bytes"], r["strategy"]): r for r in rows}
    for r in rows:
        samples = r["samples_s"]
        assert r["dtype"] == "float32" and r["count"] == r["bytes"] // 4 and r["repeats"] == len(samples) == 5
        assert r["median_s"] == statistics.median(samples)
        assert r["min_s"] == min(samples) and r["max_s"] == max(samples)
        assert r["latency_us"] == pytest.approx(r["median_s"] * 1e6)
        assert r["busbw_gb_s"] == pytest.approx(2 * (2 - 1) / 2 * r["bytes"] / r["median_s"] / 1e9)
        native = by[(r["bytes"], "native")]["samples_s"]
        assert r["speedup_vs_native"] == pytest.approx(statistics.median(n / s for n, s in zip(native, samples)))
        best = by[(r["bytes"], r["best"])]
        assert r["best"] in ("native", "ring") and best["median_s"] == min(
            by[(r["bytes"], s)]["median_s"] for s in ("native", "ring"))
        assert r["vs_best"] == pytest.approx(statistics.median(s / b for s, b in zip(samples, best["samples_s"])))
    with open(tmp_path / "r.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows)
    for line, r in zip(table, rows):
        assert (line["mpi_library"], line["ranks"], line["git_commit"]) == (
            meta["mpi_library"], str(meta["ranks"]), meta["git_commit"] or "")
        assert (int(line["bytes"]), line["strategy"]) == (r["bytes"], r["strategy"])
        assert float(line["median_s"]) == pytest.approx(r["median_s"])
        assert float(line["busbw_gb_s"]) == pytest.approx(r["busbw_gb_s"])
    printed = [line for line in job.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(printed) == 3
    for line, nbytes in zip(printed, (8, 32, 128)):
        cells = [cell.split() for cell in line.split(" | ")]
        assert cells[0] == [str(nbytes)]
        for cell, name in zip(cells[1:4], ("native", "ring", "auto")):
            r = by[(nbytes, name)]
            assert cell == [f"{r['latency_us']:.1f}", f"{r['busbw_gb_s']:.2f}", f"{r['speedup_vs_native']:.2f}"]
        assert cells[4] == [by[(nbytes, "auto")]["ran"], f"{by[(nbytes, 'auto')]['vs_best']:.2f}"]


def test_contenders_take_turns_in_a_rotated_order_each_round():
    # Timed in a fixed order, one contender always follows the same other one, whose aftermath it
    # pays for; rotated, each follows each other as often, and every call is still timed.
    from mpi4py import MPI

    from mpigd.comm.timing import take_turns

    calls: list[str] = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = take_turns(MPI.COMM_SELF, runs, {"a": 1, "b": 2, "c": 1}, repeats=4)
    # Each turn: one untimed call, then the timed ones.
    assert "".join(calls) == "aabbbcc" + "bbbccaa" + "ccaabbb" + "aabbbcc"
    assert {name: len(times) for name, times in samples.items()} == {"a": 4, "b": 4, "c": 4}
    assert all(t >= 0 for times in samples.values() for t in times)
