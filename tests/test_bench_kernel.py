"""``mpigd bench kernel`` on tiny sizes: the records' structure, and every derived figure recomputed
from its definition (bytes read, GB/s, fraction of the streaming read, speedup over the baseline)."""

import csv
import json

import numpy as np
import pytest

from mpigd.bench import kernel
from mpigd.cli import main
from mpirun import mpigd, refused_in_one_line

ROWS, FEATURES, CLASSES, HIDDEN, DENSITY = 301, 6, 3, (4,), 0.3
MODELS = ("linear", "logistic", "softmax", "mlp")
TOLERANCE = {"float32": 1e-3, "float64": 1e-10}


@pytest.fixture(scope="module", params=["float32", "float64"])
def records(request):
    dtype = request.param
    return dtype, kernel.run(ROWS, FEATURES, dtype, repeats=1, models=MODELS, layouts=("dense", "sparse"),
                             classes=CLASSES, hidden=HIDDEN, density=DENSITY)


def test_every_model_and_layout_has_a_fused_and_a_baseline_record(records):
    dtype, results = records
    found = {(r["layout"], r["variant"]) for r in results if "skipped" not in r}
    expected = {("dense", "stream read"), ("sparse", "stream read")}
    for model, loss in (("linear", "squared"), ("logistic", "logistic"), ("softmax", "softmax"), ("mlp", "mlp")):
        expected |= {("dense", f"fused {loss}"), ("dense", f"numpy {loss}")}
        if model != "mlp":
            expected |= {("sparse", f"fused {loss}"), ("sparse", f"scipy {loss}")}
    assert found == expected and len(found) == len(results) - 1
    (skipped,) = [r for r in results if "skipped" in r]
    assert (skipped["model"], skipped["layout"]) == ("mlp", "sparse") and "dense" in skipped["skipped"]
    assert all(r["dtype"] == dtype and r["rows"] == ROWS and r["features"] == FEATURES for r in results)


def test_bytes_and_rates_follow_their_definitions(records):
    dtype, results = records
    size = np.dtype(dtype).itemsize
    stream = {r["layout"]: r for r in results if r["variant"] == "stream read"}
    nnz = stream["sparse"]["nnz"]
    assert 0 < nnz < ROWS * FEATURES
    expected_bytes = {"dense": ROWS * FEATURES * size + ROWS * size,
                      "sparse": (ROWS + 1) * 8 + nnz * 8 + nnz * size + ROWS * size}  # int64 indptr, indices
    fused = {(r["layout"], r["model"]): r for r in results if r["variant"].startswith("fused") and "skipped" not in r}
    base = {(r["layout"], r["model"]): r for r in results if r.get("baseline") in ("numpy", "scipy")}
    assert fused.keys() == base.keys()
    for r in results:
        if "skipped" in r:
            continue
        assert r["bytes"] == expected_bytes[r["layout"]]
        assert r["repeats"] == 1 and r["min_s"] <= r["median_s"] <= r["max_s"] and r["median_s"] > 0
        assert r["gb_per_s"] == pytest.approx(r["bytes"] / r["median_s"] / 1e9, rel=1e-12)
        assert r["fraction_of_stream"] == pytest.approx(stream[r["layout"]]["median_s"] / r["median_s"], rel=1e-12)
    for key, r in fused.items():
        assert r["speedup_vs_numpy"] == pytest.approx(base[key]["median_s"] / r["median_s"], rel=1e-12)
        # The baseline does the same work: same loss and gradient as the fused kernel.
        assert r["loss_rel_err"] <= TOLERANCE[dtype] and r["grad_rel_err"] <= TOLERANCE[dtype], key


def test_table_keeps_the_columns_and_names_the_skipped_case(records):
    _, results = records
    text = kernel.table(results)
    header = text.splitlines()[0].split()
    for column in ("variant", "dtype", "median", "GB/s", "of", "stream", "vs", "numpy", "model", "layout"):
        assert column in header
    assert "fused squared" in text and "numpy logistic" in text and "reads dense rows only" in text


def test_cli_writes_json_with_metadata_and_csv(tmp_path, capsys):
    out_json, out_csv = tmp_path / "k.json", tmp_path / "k.csv"
    code = main(["bench", "kernel", "--rows", "64", "--features", "4", "--models", "linear,mlp", "--layout",
                 "dense,sparse", "--dtype", "float64", "--classes", "3", "--hidden", "3", "--density", "0.5",
                 "--repeats", "3", "--json", str(out_json), "--csv", str(out_csv)])
    assert code == 0
    assert "fused squared" in capsys.readouterr().out
    document = json.loads(out_json.read_text())
    for key in ("numpy", "numba", "cpu_model", "numba_num_threads", "NUMBA_NUM_THREADS", "git_commit", "options",
                "date", "command"):  # no date before: when it was measured was not recorded
        assert key in document["metadata"]
    assert document["metadata"]["options"]["models"] == ["linear", "mlp"]
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == len(document["results"]) == 2 + 4 + 3  # 2 streams; linear: 2 layouts x 2; mlp: 2 dense + 1 skip
    assert {r["variant"] for r in rows} >= {"stream read", "fused squared", "numpy squared", "scipy squared"}
    for r in rows:  # three repeats: the median differs from the min and the max, so GB/s must use the median
        if not r["skipped"]:
            assert float(r["gb_per_s"]) == pytest.approx(int(r["bytes"]) / float(r["median_s"]) / 1e9, rel=1e-12)


def test_cli_rejects_an_unknown_model(capsys):
    assert main(["bench", "kernel", "--models", "linear,svm", "--rows", "8"]) != 0
    assert "svm" in capsys.readouterr().err


@pytest.mark.parametrize("args,words", [
    (("--hidden", "0"), "argument --hidden: expected widths >= 1"),
    (("--hidden", "8,-1"), "argument --hidden: expected widths >= 1"),
    (("--rows", "1000000000", "--features", "1000"), "1,000,000,000 rows x 1,000 features needs about"),
], ids=["hidden-0", "hidden-negative", "too-large"])
def test_cli_refuses_what_it_cannot_run_in_one_line(args, words):
    refused_in_one_line(mpigd(1, "bench", "kernel", "--rows", "100", "--features", "3", "--repeats", "1", *args),
                        words)


@pytest.mark.parametrize("name, classes, hidden, words", [
    ("mlp", 10, (10**8,), "100 rows x 4 features and a mlp model of 1,500,000,010 parameters needs about 454 GB"),
    ("softmax", 10**9, (64,), "100 rows x 4 features and a softmax model of 5,000,000,000 parameters needs about"),
])
def test_a_model_too_large_for_memory_is_refused_before_it_is_allocated(monkeypatch, name, classes, hidden, words):
    import mpigd.checks
    from mpigd.errors import UsageError

    # Only the rows were counted: the model's buffers were allocated until memory ran out.
    monkeypatch.setattr(mpigd.checks, "physical_memory_bytes", lambda: 64 * 10**9)
    with pytest.raises(UsageError, match="^" + words):
        kernel.check_arguments(100, 4, ("float64",), 1, (name,), ("dense",), classes, hidden, 0.01)


def test_the_internal_solvers_worker_is_left_out_of_the_help_but_still_runs(tmp_path):
    shown = mpigd(1, "bench", "--help")
    assert shown.returncode == 0 and "solvers," in shown.stdout and "solvers-worker" not in shown.stdout
    assert "solvers-worker" not in mpigd(1, "bench").stderr  # the usage line of a missing subcommand
    output = tmp_path / "w.json"
    job = mpigd(1, "bench", "solvers-worker", "--model", "linear", "--rows", "200", "--features", "3", "--l2",
                "0.001", "--target", "1e30", "--repeats", "1", "--output", str(output))
    assert job.returncode == 0 and isinstance(json.loads(output.read_text()), (list, dict)), job.stderr


def test_options_the_chosen_models_and_layouts_do_not_read_are_warned_about(capsys):
    base = ["bench", "kernel", "--rows", "16", "--features", "3", "--dtype", "float64", "--repeats", "1"]
    assert main([*base, "--models", "linear", "--layout", "dense", "--density", "0.5", "--classes", "3",
                 "--hidden", "4"]) == 0
    err = capsys.readouterr().err
    for option in ("--density", "--classes", "--hidden"):
        assert f"{option} is not read with --models linear and --layout dense" in err
    assert main([*base, "--models", "softmax", "--layout", "sparse", "--density", "0.5", "--classes", "3"]) == 0
    assert "warning" not in capsys.readouterr().err
