"""Scaling benchmark: the records of real one- and two-rank runs, and the report built from them."""

import csv
import json
import os

import pytest

from mpigd.bench.scaling import report, table
from mpirun import mpigd, refused_in_one_line


def _record(mode, ranks, seconds):
    return {"mode": mode, "ranks": ranks, "step_seconds": seconds}


def test_speedup_and_efficiency_follow_their_definitions():
    rows = report([_record("strong", 2, 0.6), _record("strong", 1, 1.0), _record("weak", 1, 1.0),
                   _record("weak", 4, 1.25)])
    strong = {r["ranks"]: r for r in rows if r["mode"] == "strong"}
    weak = {r["ranks"]: r for r in rows if r["mode"] == "weak"}
    assert strong[2]["speedup"] == pytest.approx(1 / 0.6) and strong[2]["efficiency"] == pytest.approx(1 / 1.2)
    assert weak[4]["efficiency"] == pytest.approx(0.8) and weak[4]["speedup"] == pytest.approx(3.2)
    with pytest.raises(ValueError, match="one-rank run"):
        report([_record("strong", 2, 0.5)])


DTYPE, ITEMSIZE = {"strong": "float64", "weak": "float32"}, {"strong": 8, "weak": 4}


@pytest.mark.parametrize("mode", ["strong", "weak"])
def test_sweep_at_one_and_two_ranks_writes_records_tables_and_plots(tmp_path, mode):
    records = tmp_path / "records.jsonl"
    for ranks in (1, 2):
        job = mpigd(ranks, "bench", "scaling", "--mode", mode, "--rows", "20000", "--features", "8",
                    "--steps", "3", "--dtype", DTYPE[mode], "--output", str(records))
        assert job.returncode == 0, job.stderr
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["ranks"] for r in lines] == [1, 2]
    assert [r["rows"] for r in lines] == ([20000, 20000] if mode == "strong" else [20000, 40000])
    for r in lines:
        # 8 weights, the intercept, the loss and, on several ranks as in training, the preemption flag.
        flag = 1 if r["ranks"] > 1 else 0
        assert r["step_seconds"] >= r["compute_seconds"] > 0
        assert r["bytes_per_allreduce"] == (8 + 2 + flag) * ITEMSIZE[mode]
        assert r["dtype"] == DTYPE[mode]
        assert r["rows_per_rank"] == r["rows"] / r["ranks"] and r["oversubscribed"] == (r["ranks"] > os.cpu_count())
        # Where each record came from (none of these were recorded): the command re-runs it.
        assert r["command"] == (f"mpiexec -n {r['ranks']} mpigd bench scaling --mode {mode} --rows 20000 --features 8 "
                                f"--steps 3 --dtype {DTYPE[mode]} --output {records}")
        assert r["date"] and "git_commit" in r
    job = mpigd(1, "bench", "scaling-report", str(records), "--csv", str(tmp_path / "r.csv"),
                "--plot", str(tmp_path / "plot"))
    assert job.returncode == 0, job.stderr
    with open(tmp_path / "r.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    ratio = lines[0]["step_seconds"] / lines[1]["step_seconds"]
    expected = ratio / 2 if mode == "strong" else ratio
    assert float(table[1]["efficiency"]) == pytest.approx(expected)
    png = (tmp_path / f"plot-{mode}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    # A directory for a prefix holds scaling-MODE.png (a bare "figs/" made "figs/-strong.png").
    job = mpigd(1, "bench", "scaling-report", str(records), "--plot", str(tmp_path / "figs") + os.sep)
    assert job.returncode == 0, job.stderr
    assert os.listdir(tmp_path / "figs") == [f"scaling-{mode}.png"]


@pytest.mark.parametrize("model,n_params", [("softmax", (4 + 1) * 3), ("mlp", 4 * 64 + 64 + 64 * 3 + 3)])
def test_classifiers_are_timed_with_the_classes_of_their_labels(model, n_params):
    # The synthetic labels of softmax and the mlp are 0, 1, 2 (as train sees them); the model was made
    # with 2 classes, so the kernel read labels past its last class: NaN on some runs, a wrong buffer on all.
    job = mpigd(2, "bench", "scaling", "--model", model, "--rows", "2000", "--features", "4", "--steps", "2")
    assert job.returncode == 0, job.stderr
    record = json.loads(job.stdout)
    assert record["bytes_per_allreduce"] == (n_params + 2) * 8  # the loss, and the flag training carries


def test_a_record_names_the_tune_file_auto_read(tmp_path):
    # bench scaling has no --tune-file: auto read $MPIGD_TUNE_FILE (or the default path), and the
    # record, whose command named none, did not say which calibration chose its strategy.
    from mpigd.comm.costmodel import CostModel, Crossover
    from mpigd.comm.tunefile import Tuning, save

    tune = tmp_path / "tune.json"
    save(Tuning(2, CostModel(), Crossover((), ("direct",))), tune)
    job = mpigd(2, "bench", "scaling", "--rows", "200", "--features", "2", "--steps", "1", "--strategy", "auto",
                env={"MPIGD_TUNE_FILE": str(tune)})
    assert job.returncode == 0, job.stderr
    record = json.loads(job.stdout)
    assert record["strategy"] == "auto->direct"
    assert (record["tune_file"], record["tune_file_from"]) == (str(tune), "$MPIGD_TUNE_FILE")


@pytest.mark.parametrize("content,words", [
    ('{"a": 1}\n', "records.jsonl: line 1: not a scaling record ('mode' missing"),
    ('{"mode": "strong", "ranks": "2"}\n', "records.jsonl: line 1: not a scaling record ('ranks' missing or not an integer)"),
    ("\n[1, 2]\n", "records.jsonl: line 2: a scaling record is a JSON object, not an array"),
    ("{not json\n", "records.jsonl: line 1: not JSON"),
    ("\n", "records.jsonl: no scaling records"),
], ids=["no-mode", "ranks-a-string", "list", "not-json", "empty"])
def test_a_report_from_lines_that_are_not_records_is_refused_naming_the_line(tmp_path, content, words):
    records = tmp_path / "records.jsonl"
    records.write_text(content)
    refused_in_one_line(mpigd(1, "bench", "scaling-report", str(records), "--csv", str(tmp_path / "r.csv")),
                        words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


def test_records_of_different_problems_are_refused_not_compared(tmp_path):
    # Two sweeps appended to one file: a 2-rank run of 1000 rows against a one-rank run of 200000
    # reported an efficiency of 1.55.
    records = tmp_path / "records.jsonl"
    fields = {"mode": "strong", "features": 8, "model": "logistic", "dtype": "float64", "compute_seconds": 0.001,
              "communication_seconds": 0.0, "other_seconds": 0.0, "mpi_library": "MPICH"}
    records.write_text(json.dumps({**fields, "ranks": 1, "rows": 200000, "step_seconds": 0.008}) + "\n"
                       + json.dumps({**fields, "ranks": 2, "rows": 1000, "step_seconds": 0.003}) + "\n")
    refused_in_one_line(mpigd(1, "bench", "scaling-report", str(records)),
                        "the strong scaling records measure different problems (rows 200000 and 1000)")
    weak = [{**fields, "mode": "weak", "ranks": p, "rows": 1000 * p, "step_seconds": 0.01} for p in (1, 2, 4)]
    assert [r["efficiency"] for r in report(weak)] == [1.0, 1.0, 1.0]  # the same rows per rank: one problem
    with pytest.raises(ValueError, match=r"weak scaling records measure different problems \(features 8 and 9\)"):
        report([weak[0], {**weak[1], "features": 9}])
    # A strategy asked for is part of the problem; what auto chose at each rank count is not.
    with pytest.raises(ValueError, match=r"\(strategy native and ring\)"):
        report([{**weak[0], "strategy": "native"}, {**weak[1], "strategy": "ring"}])
    assert len(report([{**weak[0], "strategy": "auto->native"}, {**weak[1], "strategy": "auto->tree"}])) == 2


def test_a_report_of_records_with_different_fields_writes_every_field(tmp_path):
    # A record with a field the first lacks (oversubscribed, strategy: another version, another
    # machine) made --csv a ValueError traceback, after --json had been written.
    records = tmp_path / "records.jsonl"
    fields = {"mode": "strong", "features": 8, "model": "logistic", "dtype": "float64", "rows": 1000,
              "compute_seconds": 0.001, "communication_seconds": 0.0, "other_seconds": 0.0, "mpi_library": "MPICH"}
    records.write_text(json.dumps({**fields, "ranks": 1, "step_seconds": 0.01}) + "\n"
                       + json.dumps({**fields, "ranks": 2, "step_seconds": 0.005, "oversubscribed": True}) + "\n")
    job = mpigd(1, "bench", "scaling-report", str(records), "--csv", str(tmp_path / "r.csv"))
    assert job.returncode == 0, job.stderr
    with open(tmp_path / "r.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["oversubscribed"] for row in rows] == ["", "True"] and rows[1]["efficiency"] == "1.0"


def test_a_report_onto_its_own_records_or_two_reports_onto_one_file_is_refused(tmp_path):
    # --json RECORDS replaced the records with the report (the next report: "not JSON"); --json and
    # --csv naming one file kept the CSV alone.
    records = tmp_path / "records.jsonl"
    fields = {"mode": "strong", "features": 8, "model": "logistic", "dtype": "float64", "rows": 1000,
              "compute_seconds": 0.001, "communication_seconds": 0.0, "other_seconds": 0.0, "mpi_library": "MPICH"}
    records.write_text(json.dumps({**fields, "ranks": 1, "step_seconds": 0.01}) + "\n")
    kept = records.read_text()
    refused_in_one_line(mpigd(1, "bench", "scaling-report", str(records), "--json", str(tmp_path / "." / records.name)),
                        "is the records file, an input; writing it would destroy it")
    refused_in_one_line(mpigd(1, "bench", "scaling-report", str(records), "--json", str(tmp_path / "r"),
                              "--csv", str(tmp_path / "r")), f"--csv {tmp_path / 'r'}: is also the file of --json")
    assert records.read_text() == kept and sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


def test_the_scaling_table_puts_each_figure_under_its_heading():
    records = [{"mode": "strong", "ranks": 1, "rows": 1000, "step_seconds": 0.010, "compute_seconds": 0.008,
                "communication_seconds": 0.0005, "other_seconds": 0.0015},
               {"mode": "strong", "ranks": 4, "rows": 1000, "step_seconds": 0.005, "compute_seconds": 0.002,
                "communication_seconds": 0.00125, "other_seconds": 0.00175, "oversubscribed": True}]
    lines = table(report(records)).splitlines()
    assert lines[0].split() == ["mode", "ranks", "rows", "step", "ms", "compute", "allreduce", "other", "speedup",
                                "effic."]
    assert lines[1].split() == ["strong", "1", "1000", "10.00", "8.00", "0.500", "1.50", "1.00", "1.00"]
    assert lines[2].split() == ["strong", "4", "1000", "5.00", "2.00", "1.250", "1.75", "2.00", "0.50",
                                "(oversubscribed)"]
