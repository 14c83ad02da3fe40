"""``mpigd plan``: the projection against its closed form, its shape, and the CLI's files. No MPI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mpigd.bench.plan import (Projection, allreduce_seconds, below_half, cost_models, find_calibration,
                              gradient_bytes, node_counts, project)
from mpigd.comm.costmodel import CostModel
from mpigd.comm.tunefile import default_path

ALPHA, BETA, GAMMA = 3e-6, 2e-10, 1e-10
MODEL = CostModel(ALPHA, BETA, GAMMA)


def _ring(n: float, p: int) -> float:
    # Written out again here, not taken from CostModel, so that a slip in either shows.
    return 0.0 if p == 1 else 2 * (p - 1) * ALPHA + 2 * (p - 1) / p * n * BETA + (p - 1) / p * n * GAMMA


def _tree(n: float, p: int) -> float:  # p a power of two
    return math.log2(p) * (ALPHA + n * BETA + n * GAMMA)


def test_node_counts_are_powers_of_two_and_the_maximum():
    assert node_counts(1) == [1]
    assert node_counts(8) == [1, 2, 4, 8]
    assert node_counts(12) == [1, 2, 4, 8, 12]
    assert node_counts(1024)[-1] == 1024 and len(node_counts(1024)) == 11


def test_gradient_bytes_are_parameters_plus_the_loss_and_the_flag():
    assert gradient_bytes("logistic", 32, "float64") == (33, 35 * 8)
    assert gradient_bytes("softmax", 10, "float32", classes=5) == (55, 57 * 4)
    n_params, nbytes = gradient_bytes("mlp", 8, "float64", classes=3, hidden=(16,))
    assert n_params == 8 * 16 + 16 + 16 * 3 + 3 and nbytes == (n_params + 2) * 8


def test_strong_projection_equals_the_closed_form():
    rows, rate, nbytes = 1_000_000, 2e6, 8_000
    spec = Projection(rows, nbytes, rate, MODEL, MODEL)
    records = project(spec, [1, 2, 4, 8])
    base = rows / rate
    for r, p in zip(records, (1, 2, 4, 8)):
        compute = rows / p / rate
        ring, tree = _ring(nbytes, p), _tree(nbytes, p)
        step = compute + min(ring, tree)
        assert r["compute_s"] == pytest.approx(compute, rel=1e-12)
        assert r["ring_s"] == pytest.approx(ring, rel=1e-12)
        assert r["tree_s"] == pytest.approx(tree, rel=1e-12)
        assert r["step_s"] == pytest.approx(step, rel=1e-12)
        assert r["speedup"] == pytest.approx(base / step, rel=1e-12)
        assert r["efficiency"] == pytest.approx(base / step / p, rel=1e-12)
    # The numbers themselves, at 8 nodes: 62.5 ms of compute plus tree's 3 (3 us + 2.4 us).
    assert records[3]["step_s"] == pytest.approx(0.0625 + 3 * (3e-6 + 8000 * 3e-10), rel=1e-12)
    assert [r["best"] for r in records] == ["-", "tree", "tree", "tree"]


def test_weak_projection_keeps_compute_and_divides_by_the_step():
    spec = Projection(100_000, 1 << 20, 1e6, MODEL, MODEL, mode="weak")
    records = project(spec, [1, 2, 4])
    for r, p in zip(records, (1, 2, 4)):
        step = 0.1 + min(_ring(1 << 20, p), _tree(1 << 20, p))
        assert r["compute_s"] == pytest.approx(0.1)
        assert r["efficiency"] == pytest.approx(0.1 / step, rel=1e-12)
        assert r["speedup"] == pytest.approx(p * 0.1 / step, rel=1e-12)


def test_hierarchical_adds_a_reduce_and_a_broadcast_inside_the_node():
    network = CostModel(2e-6, 1 / 12e9, GAMMA)
    spec = Projection(1000, 4096, 1e6, MODEL, network, ranks_per_node=4)
    inside = 2 * (ALPHA + 4096 * BETA + 4096 * GAMMA) + 2 * (ALPHA + 4096 * BETA)
    assert allreduce_seconds(spec, "ring", 8) == pytest.approx(inside + network.ring(4096, 8), rel=1e-12)
    records = project(spec, [1, 2])
    assert records[0]["ranks"] == 4 and records[0]["allreduce_s"] == pytest.approx(inside, rel=1e-12)
    assert records[1]["rows_per_rank"] == 1000 / 8


@pytest.mark.parametrize("rpn", [1, 4])
def test_strong_efficiency_never_rises_with_latency(rpn: int):
    spec = Projection(10**8, 1 << 16, 5e6, MODEL, MODEL, ranks_per_node=rpn)
    records = project(spec, node_counts(4096))
    efficiency = [r["efficiency"] for r in records]
    assert all(b <= a + 1e-15 for a, b in zip(efficiency, efficiency[1:]))
    assert efficiency[0] == 1.0 and efficiency[-1] < 1.0


def test_tree_wins_small_messages_and_ring_large_ones():
    best = {}
    for features in (10, 10_000, 1_000_000):
        _, nbytes = gradient_bytes("linear", features, "float64")
        records = project(Projection(10**7, nbytes, 1e7, MODEL, MODEL), [1, 64])
        best[features] = records[-1]["best"]
    assert best == {10: "tree", 10_000: "tree", 1_000_000: "ring"}


def test_below_half():
    records = [{"nodes": 1, "efficiency": 1.0}, {"nodes": 2, "efficiency": 0.6}, {"nodes": 4, "efficiency": 0.4}]
    assert below_half(records) == 4
    assert below_half(records[:2]) is None


def test_cost_models_say_where_each_parameter_came_from(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MPIGD_TUNE_FILE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no default tune file there
    intra, inter, sources = cost_models(None)
    assert intra == inter == CostModel() and sources["alpha"].startswith("built-in defaults")
    tune = tmp_path / "t.json"
    tune.write_text(json.dumps({"format": 1, "ranks": 2, "model": {
        "alpha_s": 1e-6, "beta_s_per_byte": 1e-10, "gamma_s_per_byte": 5e-11}, "crossover": None}))
    monkeypatch.setenv("MPIGD_TUNE_FILE", str(tune))
    intra, inter, sources = cost_models(None, network="ib100", beta=1e-9)
    assert intra == CostModel(1e-6, 1e-10, 5e-11)
    assert inter == CostModel(2e-6, 1e-9, 5e-11)
    assert "$MPIGD_TUNE_FILE" in sources["calibration"] and sources["alpha"].startswith("--network ib100")
    assert sources["beta"] == "--beta"
    with pytest.raises(ValueError):
        cost_models(str(tmp_path / "missing.json"))


def test_a_one_rank_calibration_is_refused_not_taken_for_free_messages(tmp_path: Path):
    # 'mpigd tune' on one rank sends no message and writes alpha = beta = 0: the plan projected
    # a communication time of nothing and an efficiency of 1 at every node count.
    tune = tmp_path / "t1.json"
    tune.write_text(json.dumps({"format": 1, "ranks": 1, "model": {
        "alpha_s": 0.0, "beta_s_per_byte": 0.0, "gamma_s_per_byte": 5e-11}, "crossover": None}))
    done = _plan("--features", "3", "--compute-rate", "1e6", "--tune-file", str(tune))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"mpigd: error: {tune} was made by 'mpigd tune' on 1 rank, which "
                                                "sends no message: alpha and beta are not measured; run it on 2 "
                                                "or more ranks"]


def test_a_tune_file_that_is_a_directory_is_named_as_such(tmp_path: Path):
    # It was "no such tune file" for a path that exists, as train says it ("not a file").
    done = _plan("--features", "3", "--compute-rate", "1e6", "--tune-file", str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"mpigd: error: not a file: {tmp_path}"]
    missing = tmp_path / "missing.json"
    done = _plan("--features", "3", "--compute-rate", "1e6", "--tune-file", str(missing))
    assert done.stderr.strip().splitlines() == [f"mpigd: error: no such tune file: {missing}"]


def test_the_default_path_passes_over_a_one_rank_calibration(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MPIGD_TUNE_FILE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for ranks, alpha in ((1, 0.0), (2, 1e-6), (4, 3e-6)):
        tune = default_path(ranks)
        tune.parent.mkdir(exist_ok=True)
        tune.write_text(json.dumps({"format": 1, "ranks": ranks, "model": {
            "alpha_s": alpha, "beta_s_per_byte": alpha / 1e4, "gamma_s_per_byte": 5e-11}, "crossover": None}))
    assert find_calibration(None) == (default_path(4), "default path")  # the most ranks, not 1 by name order
    # Another host's file, whose name begins with this host's name and a dash, is not this host's.
    other_host = default_path(8).with_name(default_path(8).name.replace("-8ranks", "-b-8ranks"))
    default_path(4).rename(other_host)
    assert find_calibration(None) == (default_path(2), "default path")
    other_host.unlink()
    default_path(2).unlink()
    assert find_calibration(None) == (None, "built-in defaults")  # a 1-rank file alone: none
    assert cost_models(None)[0] == CostModel()


def test_cli_writes_json_csv_and_png_without_mpi(tmp_path: Path):
    out_json, out_csv, out_png = tmp_path / "plan.json", tmp_path / "plan.csv", tmp_path / "plan.png"
    # Run in a fresh interpreter, to check that mpi4py (which would start MPI) is never imported.
    code = ("import sys; from mpigd.cli import main; "
            f"rc = main(['plan', '--nodes', '64', '--rows', '1000000', '--features', '32', '--compute-rate', '1e7', "
            f"'--json', {str(out_json)!r}, '--csv', {str(out_csv)!r}, '--plot', {str(out_png)!r}]); "
            "assert 'mpi4py' not in sys.modules, 'plan imported mpi4py'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "MODEL" in done.stdout and "--compute-rate" in done.stdout
    plan = json.loads(out_json.read_text())
    assert plan["kind"] == "model" and "MODEL" in plan["label"]
    assert [r["nodes"] for r in plan["records"]] == [1, 2, 4, 8, 16, 32, 64]
    assert plan["parameters"]["rate_rows_per_s"] == 1e7 and plan["sources"]["rate"] == "--compute-rate"
    assert set(plan["sources"]) >= {"alpha", "beta", "gamma", "rate", "calibration"}
    assert plan["bytes"] == 35 * 8 and plan["records"][0]["compute_s"] == pytest.approx(0.1)
    for r in plan["records"]:
        assert {"nodes", "ranks", "compute_s", "ring_s", "tree_s", "best", "step_s", "speedup", "efficiency"} <= set(r)
    with open(out_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 7 and {row["kind"] for row in rows} == {"model"}
    assert float(rows[-1]["efficiency"]) == pytest.approx(plan["records"][-1]["efficiency"])
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_rejects_bad_numbers():
    from mpigd.cli import main

    assert main(["plan", "--nodes", "0", "--rows", "10", "--features", "2", "--compute-rate", "1"]) != 0
    assert main(["plan", "--nodes", "4", "--rows", "10", "--features", "2", "--compute-rate", "-1"]) != 0


def _plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mpigd", "plan", "--nodes", "4", "--rows", "100", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["p.txt", "p"])
def test_the_plot_is_a_png_under_exactly_the_name_given(tmp_path: Path, name: str):
    pytest.importorskip("matplotlib")
    # matplotlib refused an unknown extension (after the work), and added .png to a name without one.
    done = _plan("--features", "3", "--compute-rate", "1e6", "--plot", str(tmp_path / "o" / name))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [name]
    assert (tmp_path / "o" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_rate_measurement_that_cannot_fit_memory_is_refused_in_one_line():
    done = _plan("--features", "1000000000")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("mpigd: error: measuring the rate on 100 rows x 1,000,000,000 features needs about")
    assert lines[0].endswith("give --compute-rate, or fewer --sample-rows")


def test_a_model_too_large_to_measure_is_refused_before_anything_is_allocated(monkeypatch):
    import mpigd.bench.plan
    import mpigd.checks
    from mpigd.errors import UsageError

    # Only the rows were counted: 12 GB of MLP weights were drawn (minutes) before the kernel's 410 GB
    # of activations failed, or Linux's OOM killer ended the process.
    monkeypatch.setattr(mpigd.checks, "physical_memory_bytes", lambda: 64 * 10**9)
    monkeypatch.setattr(mpigd.bench.plan, "measure_rate", lambda *args, **kwargs: pytest.fail("measured"))
    with pytest.raises(UsageError, match=r"^measuring the rate on 1,000 rows x 4 features with a mlp model of "
                                         r"1,500,000,010 parameters needs about 454 GB per rank"):
        mpigd.bench.plan.make_plan("mlp", 1000, 4, hidden=(10**8,))


def test_the_recorded_command_re_runs_the_plan_quoted_and_from_main_too(tmp_path: Path):
    import shlex

    from mpigd.cli import main

    # From main(argv) it recorded the interpreter's arguments (pytest's here), and it joined the words
    # unquoted: a file name with a space was two words when the command was run again.
    argv = ["plan", "--nodes", "2", "--rows", "100", "--features", "3", "--compute-rate", "1e6",
            "--json", str(tmp_path / "my plan.json")]
    assert main(argv) == 0
    command = json.loads((tmp_path / "my plan.json").read_text())["metadata"]["command"]
    assert shlex.split(command) == ["mpigd", *argv]


def test_the_plan_json_says_when_it_was_made(tmp_path: Path):
    from mpigd.cli import main

    # Versions, CPU and commit, but no date: two plans of one commit could not be told apart.
    assert main(["plan", "--nodes", "2", "--rows", "100", "--features", "3", "--compute-rate", "1e6",
                 "--json", str(tmp_path / "p.json")]) == 0
    metadata = json.loads((tmp_path / "p.json").read_text())["metadata"]
    assert metadata["date"][:2] == "20" and "T" in metadata["date"] and "git_commit" in metadata


def test_outputs_that_name_one_file_or_the_tune_file_are_refused(tmp_path: Path):
    # --json and --csv naming one file kept the CSV alone; --json naming the --tune-file replaced it.
    tune = tmp_path / "tune.json"
    tune.write_text(json.dumps({"format": 1, "ranks": 2, "model": {
        "alpha_s": 1e-6, "beta_s_per_byte": 1e-10, "gamma_s_per_byte": 1e-10}}))
    kept = tune.read_text()
    out = str(tmp_path / "out")
    for extra, words in ((["--json", out, "--csv", out], f"--csv {out}: is also the file of --json; give each its own"),
                         (["--tune-file", str(tune), "--json", str(tune)],
                          f"--json {tune}: is the --tune-file, an input; writing it would destroy it")):
        done = _plan("--features", "3", "--compute-rate", "1e6", *extra)
        assert done.returncode == 2 and done.stderr.strip() == f"mpigd: error: {words}", done.stderr
    assert tune.read_text() == kept and sorted(p.name for p in tmp_path.iterdir()) == ["tune.json"]


@pytest.mark.parametrize("name,options", [("plan", ("--nodes", "2", "--rows", "100", "--features", "2",
                                                     "--compute-rate", "1e6")),
                                          ("bench kernel", ("--rows", "64", "--features", "2", "--repeats", "1")),
                                          ("bench solvers", ("--models", "linear", "--rows", "100", "--ranks", "1"))])
def test_a_one_process_command_launched_on_several_ranks_is_refused_in_one_line(name, options):
    from mpirun import mpigd, refused_in_one_line

    # Each rank ran it whole: every table printed twice, every file written by both, kernels timed
    # while competing for the cores, and solvers' own mpiexec jobs started from inside a job.
    refused_in_one_line(mpigd(2, *name.split(), *options), f"{name} runs as one process")


def test_classes_and_hidden_that_the_model_does_not_read_are_warned_about(capsys):
    from mpigd.cli import main

    base = ["plan", "--nodes", "2", "--rows", "100", "--features", "4", "--compute-rate", "1e6"]
    assert main([*base, "--model", "logistic", "--classes", "100", "--hidden", "8"]) == 0
    err = capsys.readouterr().err
    assert "--classes is not read with --model logistic" in err and "--hidden is not read" in err
    assert main([*base, "--model", "softmax", "--classes", "100", "--hidden", "8"]) == 0
    err = capsys.readouterr().err
    assert "--classes" not in err and "--hidden is not read with --model softmax" in err
    assert main([*base, "--model", "mlp", "--classes", "100", "--hidden", "8"]) == 0
    assert main([*base, "--model", "linear"]) == 0  # defaults left alone: nothing to say
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"])
def test_each_launchers_rank_count_is_read_before_mpi_starts(monkeypatch, capsys, variable):
    from mpigd.cli import main
    from mpigd.environment import SIZE_VARIABLES, launch_size

    for name in SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_NTASKS", "4")  # a batch script's shell: still one process
    assert launch_size() == 1
    monkeypatch.setenv(variable, "3")
    assert launch_size() == 3
    assert main(["plan", "--nodes", "2", "--rows", "100", "--features", "2", "--compute-rate", "1e6"]) == 2
    assert "plan runs as one process" in capsys.readouterr().err
